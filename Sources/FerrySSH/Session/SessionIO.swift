import CLibSSH2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A session's socket as libssh2 uses it, and the lock that lets several threads run commands on
/// one session: every libssh2 call on the session is made under `lock` (libssh2 itself is not
/// thread-safe), and libssh2's socket callbacks run inside those calls.
/// Unchecked Sendable: every field is read and written under `lock`.
final class SessionIO: @unchecked Sendable {
    let socket: Int32
    let lock = NSLock()
    /// Held from opening a channel until its command has started. libssh2 1.10 checks that a
    /// channel-open or exec reply is for the channel waiting on it only after it stopped reading:
    /// a thread waiting for its reply that reads another channel's fails ("Failed waiting for
    /// channel success"). So one thread at a time waits for such a reply.
    let starting = NSLock()
    /// When bytes last came in (keepalive replies count, poll wake-ups do not): dead-peer detection.
    var lastInbound = Deadline.now()
    /// Bytes received so far: a call that moved it may have queued another thread's channel data.
    private(set) var received: UInt64 = 0
    /// Reads answer EAGAIN (see `SSHSession.authenticationStep`).
    var holdingReads = false
    /// A read of 0: the peer closed (libssh2 alone would only say "recv failed").
    var peerClosed = false
    /// The errno of a send that failed outside libssh2 (while flushing `outbound`).
    private(set) var sendFailure: Int32 = 0
    /// Bytes libssh2 handed over that the kernel has not taken yet. libssh2 is told every send
    /// went out in full: a packet it saw half-sent would have to be finished before any other one
    /// (another channel's data, a window adjust, a keepalive), or that other send fails (BAD_USE).
    private var outbound: [UInt8] = []
    private var outboundStart = 0
    private var waiters: [Waiter] = []
    /// Channels of commands whose exit was not waited for, until their end arrives.
    var lingering: [OpaquePointer] = []
    /// The operator was told once that the login shell prints text (see `CommandStart`).
    var loginShellNoticed = false

    /// A writer holds back while this much is queued (the channel window bounds it anyway).
    static let backlogLimit = 256 * 1024

    init(socket: Int32) { self.socket = socket }

    var backlog: Int { outbound.count - outboundStart }

    /// Runs one libssh2 call under the lock; when it read from the socket, wakes the other threads
    /// waiting on the session (what they wait for may now sit in their channel's queue).
    func call<T>(_ waiter: Waiter?, _ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        let before = received
        let result = try body()
        if received != before {
            for other in waiters where other !== waiter { other.wake() }
        }
        return result
    }

    /// A thread that runs a command on the session, registered until `leave`.
    func join() throws -> Waiter {
        let waiter = try Waiter()
        lock.lock()
        waiters.append(waiter)
        lock.unlock()
        return waiter
    }

    func leave(_ waiter: Waiter) {
        lock.lock()
        waiters.removeAll { $0 === waiter }
        lock.unlock()
    }

    // MARK: - Socket callbacks (under `lock`)

    /// What the server offered in its key exchange (read from the clear-text start), once whole.
    private(set) var serverKexInit: ServerKexInit?
    private var opening: [UInt8] = []
    private var openingDone = false

    fileprivate func received(_ buffer: UnsafeRawPointer?, _ n: Int, asked: Int) {
        if n > 0 { lastInbound = Deadline.now(); received &+= UInt64(n) }
        if n == 0 && asked > 0 { peerClosed = true }
        if n > 0, !openingDone, let buffer {
            opening.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: n))
            serverKexInit = ServerKexInit.parse(opening)
            if serverKexInit != nil || opening.count > 64 * 1024 { openingDone = true; opening = [] }
        }
    }

    /// Our side of the key exchange, read from what we send in the clear.
    private(set) var keyExchange = ClientKeyExchangeWatch()

    fileprivate func send(_ buffer: UnsafeRawPointer, _ length: Int) -> Int {
        if sendFailure != 0 { return -Int(sendFailure) }
        if !keyExchange.encryptedSent { keyExchange.sent(UnsafeRawBufferPointer(start: buffer, count: length)) }
        guard backlog == 0 else {
            outbound.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: length))
            flush()
            return length
        }
        let n = Glibc.send(socket, buffer, length, Int32(MSG_NOSIGNAL))
        if n == length { return n }
        if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { return -Int(errno) }
        let taken = max(n, 0)
        outbound.append(contentsOf: UnsafeRawBufferPointer(start: buffer + taken, count: length - taken))
        return length
    }

    /// Sends what the kernel takes of `outbound`; under `lock`. Returns whether bytes remain.
    @discardableResult
    func flush() -> Bool {
        while backlog > 0 && sendFailure == 0 {
            let n = outbound.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + outboundStart, backlog, Int32(MSG_NOSIGNAL)) }
            if n > 0 { outboundStart += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK { sendFailure = errno }
            break
        }
        if backlog == 0 {
            outbound.removeAll(keepingCapacity: outbound.count <= 4 * Self.backlogLimit)
            outboundStart = 0
        } else if outboundStart >= Self.backlogLimit {
            outbound.removeFirst(outboundStart)
            outboundStart = 0
        }
        return backlog > 0
    }

    /// A wake-up pipe for one thread.
    final class Waiter {
        let descriptor: Int32
        private let writeEnd: Int32

        init() throws {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else {
                throw SSHError.protocolFailure(target: "local", operation: "pipe", code: 0, message: String(cString: strerror(errno)))
            }
            for fd in fds {
                _ = fcntl(fd, F_SETFL, O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
            descriptor = fds[0]
            writeEnd = fds[1]
        }

        deinit {
            close(descriptor)
            close(writeEnd)
        }

        /// A full pipe already means "look again".
        func wake() {
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
        }

        func drain() {
            var buffer = [UInt8](repeating: 0, count: 64)
            while read(descriptor, &buffer, buffer.count) > 0 {}
        }
    }
}

/// Reaches the session's `SessionIO` from libssh2's abstract pointer.
private func sessionIO(_ abstract: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> SessionIO? {
    guard let pointer = abstract?.pointee else { return nil }
    return Unmanaged<SessionIO>.fromOpaque(pointer).takeUnretainedValue()
}

/// libssh2's recv, counting.
let sessionRecv: @convention(c) (libssh2_socket_t, UnsafeMutableRawPointer?, Int, Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int = {
    socket, buffer, length, flags, abstract in
    // libssh2 reads the SSH agent's socket through this callback too.
    let io = sessionIO(abstract).flatMap { $0.socket == socket ? $0 : nil }
    if let io, io.holdingReads { return -Int(EAGAIN) }
    let n = recv(socket, buffer, length, flags)
    let failure = errno
    if let io { io.received(buffer, n, asked: length) }
    return n < 0 ? -Int(failure) : n
}

/// libssh2's send, never partial (see `SessionIO.outbound`).
let sessionSend: @convention(c) (libssh2_socket_t, UnsafeRawPointer?, Int, Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int = {
    socket, buffer, length, flags, abstract in
    // libssh2 writes to the SSH agent's socket through this callback too.
    guard let io = sessionIO(abstract), io.socket == socket, let buffer else {
        let n = send(socket, buffer, length, flags | Int32(MSG_NOSIGNAL))
        return n < 0 ? -Int(errno) : n
    }
    return io.send(buffer, length)
}
