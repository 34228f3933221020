import CLibSSH2
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A logged-in jump host, as `ssh -J` uses one: its session belongs to one relay thread (a libssh2
/// session is single-threaded), which opens a `direct-tcpip` channel per connection asked for and
/// pumps it to one end of a socketpair; the caller runs the next SSH session over the other end.
/// Hosts behind one jump host share its one login. When its session dies, every connection through
/// it ends (their sessions see the socket close).
/// Unchecked Sendable: `session` and `links` are touched only by the relay thread; requests and
/// the failure cross threads under their Mutexes.
public final class JumpHost: @unchecked Sendable {
    public let name: String
    private let session: SSHSession
    private let requests = Mutex<[Request]>([])
    private let failure = Mutex<SSHError?>(nil)
    private let wake: [Int32]
    private var links: [Link] = []
    private var thread: Thread?

    /// Unchecked Sendable: `result` is written by the relay thread before `done` is signalled, and read after.
    private final class Request: @unchecked Sendable {
        let host: String
        let port: Int
        let done = DispatchSemaphore(value: 0)
        var result: Result<Int32, SSHError>?  // written by the relay thread before `done` is signalled
        /// The caller stopped waiting: a socket made later is closed at once.
        let abandoned = Mutex(false)
        init(host: String, port: Int) { self.host = host; self.port = port }
    }

    /// One relayed connection: a channel and our end of its socketpair, with what is in flight.
    private final class Link {
        let channel: OpaquePointer
        let fd: Int32
        var toSocket: [UInt8] = []
        var toChannel: [UInt8] = []
        var socketEOF = false
        var channelEOF = false
        init(channel: OpaquePointer, fd: Int32) { self.channel = channel; self.fd = fd }
    }

    /// Takes over `session` (logged in to the jump host) and starts its relay thread.
    public init(session: SSHSession) throws {
        self.session = session
        name = session.target.description
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw SSHError.protocolFailure(target: name, operation: "create a pipe", code: 0, message: errnoText()) }
        for fd in fds { _ = fcntl(fd, F_SETFL, O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        wake = fds
        let thread = Thread { [self] in relay() }
        thread.name = "ferry-jump \(name)"
        self.thread = thread
        thread.start()
    }

    /// Whether its session still works.
    public var isAlive: Bool { failure.withLock { $0 == nil } }

    /// Why it stopped working (nil: it works).
    var failureDescription: String? { failure.withLock { $0.map { "\($0)" } } }

    /// A connected stream socket to `host:port`, as the jump host reaches it (its resolver, its
    /// network), within `timeout` seconds. Throws when the jump host refuses the channel or its
    /// session is gone.
    public func connect(host: String, port: Int, timeout: Double) throws -> Int32 {
        if let error = failure.withLock({ $0 }) { throw error }
        let request = Request(host: host, port: port)
        requests.withLock { $0.append(request) }
        var byte: UInt8 = 1
        _ = write(wake[1], &byte, 1)
        if request.done.wait(timeout: .now() + timeout) == .timedOut {
            let late = request.abandoned.withLock { abandoned -> Bool in abandoned = true; return request.result != nil }
            if !late { throw SSHError.connectTimeout(host: host, port: port, seconds: timeout) }
            request.done.wait()
        }
        switch request.result! {
        case .success(let fd):
            return fd
        case .failure(let error):
            guard case .protocolFailure(_, let operation, _, let message) = error else { throw error }
            throw SSHError.connect(host: host, port: port, reason: "through the jump host \(name): \(operation): \(message)")
        }
    }

    /// Ends the relay (every connection through it closes) and logs out.
    public func close() {
        fail(.connectionLost(target: name, reason: "the jump host was closed"))
        var byte: UInt8 = 1
        _ = write(wake[1], &byte, 1)
    }

    private func fail(_ error: SSHError) {
        failure.withLock { if $0 == nil { $0 = error } }
    }

    // MARK: - The relay thread

    private func relay() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer {
            buffer.deallocate()
            let error = failure.withLock { $0 } ?? .connectionLost(target: name, reason: "the jump host's relay ended")
            for link in links { Glibc.close(link.fd); libssh2_channel_free(link.channel) }
            links = []
            for r in requests.withLock({ all in defer { all = [] }; return all }) { r.result = .failure(error); r.done.signal() }
            session.close()
            Glibc.close(wake[0])
            Glibc.close(wake[1])
        }
        while failure.withLock({ $0 }) == nil {
            var drain = [UInt8](repeating: 0, count: 64)
            while read(wake[0], &drain, drain.count) > 0 {}
            openRequested()
            for link in links { pump(link, buffer) }
            links.removeAll { link in
                guard link.socketEOF && (link.channelEOF || link.toChannel.isEmpty) else { return false }
                libssh2_channel_free(link.channel)
                Glibc.close(link.fd)
                return true
            }
            if session.io.peerClosed {
                fail(.connectionLost(target: name, reason: "the jump host closed the connection"))
                break
            }
            waitForWork()
        }
    }

    private func openRequested() {
        let pending = requests.withLock { $0 }
        for request in pending {
            let channel = request.host.withCString { libssh2_channel_direct_tcpip_ex(session.raw, $0, Int32(request.port), "127.0.0.1", 22) }
            if channel == nil {
                let rc = libssh2_session_last_errno(session.raw)
                if rc == LIBSSH2_ERROR_EAGAIN { continue }
                let error = session.failure("open a channel to \(request.host):\(request.port)", rc)
                finish(request, .failure(error))
                if case .connectionLost = error { fail(error) }
                continue
            }
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else {
                libssh2_channel_free(channel)
                finish(request, .failure(.protocolFailure(target: name, operation: "socketpair", code: 0, message: errnoText())))
                continue
            }
            _ = fcntl(pair[0], F_SETFL, O_NONBLOCK)
            _ = fcntl(pair[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(pair[1], F_SETFD, FD_CLOEXEC)
            links.append(Link(channel: channel!, fd: pair[0]))
            finish(request, .success(pair[1]))
        }
    }

    private func finish(_ request: Request, _ result: Result<Int32, SSHError>) {
        requests.withLock { $0.removeAll { $0 === request } }
        let abandoned = request.abandoned.withLock { abandoned -> Bool in
            if !abandoned { request.result = result }
            return abandoned
        }
        if abandoned, case .success(let fd) = result { Glibc.close(fd) }
        request.done.signal()
    }

    /// Moves what can move without blocking, both ways.
    private func pump(_ link: Link, _ buffer: UnsafeMutableRawBufferPointer) {
        // Jump host → local socket.
        while true {
            if !link.toSocket.isEmpty {
                // send, not write: a session that closed its end must not SIGPIPE ferry.
                let n = link.toSocket.withUnsafeBytes { Glibc.send(link.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 { link.toSocket.removeFirst(n); continue }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { break }
                if n < 0 { link.socketEOF = true; link.channelEOF = true; break }  // the local side is gone
            }
            guard !link.channelEOF else { break }
            let n = libssh2_channel_read_ex(link.channel, 0, buffer.baseAddress, buffer.count)
            if n > 0 { link.toSocket = Array(UnsafeRawBufferPointer(rebasing: buffer[0..<n])); continue }
            if n == Int(LIBSSH2_ERROR_EAGAIN) {
                if libssh2_channel_eof(link.channel) != 0 { link.channelEOF = true; shutdown(link.fd, Int32(SHUT_WR)) }
                break
            }
            if n == 0 && libssh2_channel_eof(link.channel) != 0 { link.channelEOF = true; shutdown(link.fd, Int32(SHUT_WR)); break }
            if n < 0 {
                let error = session.failure("relay a channel", Int32(n))
                if case .connectionLost = error { fail(error) }
                link.channelEOF = true
                link.socketEOF = true
                shutdown(link.fd, Int32(SHUT_RDWR))
            }
            break
        }
        // Local socket → jump host.
        while true {
            if !link.toChannel.isEmpty {
                let n = link.toChannel.withUnsafeBytes { libssh2_channel_write_ex(link.channel, 0, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
                if n > 0 { link.toChannel.removeFirst(n); continue }
                if n == Int(LIBSSH2_ERROR_EAGAIN) { break }
                if n < 0 { link.socketEOF = true; link.toChannel = []; break }
            }
            guard !link.socketEOF else { break }
            let n = read(link.fd, buffer.baseAddress, buffer.count)
            if n > 0 { link.toChannel = Array(UnsafeRawBufferPointer(rebasing: buffer[0..<n])); continue }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
                link.socketEOF = true
                _ = libssh2_channel_send_eof(link.channel)
                _ = libssh2_channel_close(link.channel)
            }
            break
        }
    }

    /// Sleeps until the jump host, a local socket or a request has something, sending keepalives;
    /// a jump host silent past its dead-peer time fails.
    private func waitForWork() {
        let deadAfter = session.configuration.deadPeerTimeout
        let silentFor = Deadline.now() - session.io.lastInbound
        if silentFor > deadAfter + 1 {
            fail(.peerUnresponsive(target: name, seconds: deadAfter))
            return
        }
        let next = session.keepaliveIfSilent(for: silentFor)
        let directions = libssh2_session_block_directions(session.raw)
        var events = Int16(POLLIN)
        if session.io.call(nil, { session.io.flush() }) || directions & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
        var fds = [pollfd(fd: session.socket, events: events, revents: 0), pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
        for link in links {
            var e: Int16 = 0
            if !link.toSocket.isEmpty { e |= Int16(POLLOUT) }
            if link.toChannel.isEmpty && !link.socketEOF { e |= Int16(POLLIN) }
            fds.append(pollfd(fd: link.fd, events: e, revents: 0))
        }
        // Pending channel opens and channel writes wait on the session socket; a short cap keeps
        // a window update that arrived with no socket event from stalling a link.
        let pendingWork = !requests.withLock({ $0.isEmpty }) || links.contains { !$0.toChannel.isEmpty }
        let ms = pendingWork ? 20 : min(1000, next * 1000)
        _ = poll(&fds, nfds_t(fds.count), ms)
        if fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
            fail(.connectionLost(target: name, reason: "the connection to the jump host was closed"))
        }
    }
}

/// Sessions through jump hosts. Logged-in jump hosts are kept for the process and shared: a
/// fleet behind one bastion logs in to it once. A jump host whose session died is replaced on
/// the next connection through it.
public enum JumpRoute {
    private final class Slot: Sendable {
        let host = Mutex<JumpHost?>(nil)
    }
    private static let slots = Mutex<[String: Slot]>([:])

    /// A session to `target` through `hops`, in order (the first is connected to directly).
    public static func session(_ target: SSHConfiguration, through hops: [SSHConfiguration]) throws -> SSHSession {
        guard !hops.isEmpty else { return try SSHSession(connecting: target) }
        let last = try jumpHost(hops, count: hops.count)
        let socket = try last.connect(host: target.target.host, port: target.target.port, timeout: target.connectTimeout)
        let session = try SSHSession(socket: socket, configuration: target)
        session.via = last
        return session
    }

    /// The logged-in jump host at `hops[count - 1]`, reached through the ones before it.
    static func jumpHost(_ hops: [SSHConfiguration], count: Int) throws -> JumpHost {
        let key = hops.prefix(count).map { "\($0.target.user)@\($0.target.host):\($0.target.port)" }.joined(separator: ",")
        let slot = slots.withLock { all in
            if let known = all[key] { return known }
            let made = Slot()
            all[key] = made
            return made
        }
        // Held while logging in: a second host waits and shares the login.
        return try slot.host.withLock { current throws -> JumpHost in
            if let current, current.isAlive { return current }
            let hop = hops[count - 1]
            let session: SSHSession
            if count == 1 {
                session = try SSHSession(connecting: hop)
            } else {
                let previous = try jumpHost(hops, count: count - 1)
                session = try SSHSession(socket: try previous.connect(host: hop.target.host, port: hop.target.port, timeout: hop.connectTimeout),
                                         configuration: hop)
            }
            let made = try JumpHost(session: session)
            current = made
            return made
        }
    }
}
