import CLibSSH2
#if canImport(Glibc)
import Glibc
#endif

/// One authenticated SSH connection to a target. Commands may run on it in turn or at once from
/// several threads (each its own channel): every libssh2 call is made under the session's lock.
/// `close` only when no command runs. Unchecked Sendable: the libssh2 session is reached only
/// under `io.lock`; the settable properties are set before commands start.
public final class SSHSession: @unchecked Sendable {
    public let configuration: SSHConfiguration
    /// Hears the process group of each command `exec` starts (a deploy hands them to its lock
    /// holder, which ends them if ferry's heartbeat stops).
    public var onRemoteProcessGroup: ((Int32) -> Void)?
    /// Runs every command (and the stop of a cancelled one) through sudo; see `Sudo.probe`.
    public var sudo: Sudo?
    /// The jump host this session runs through: a lost connection names its failure.
    var via: JumpHost?
    let raw: OpaquePointer
    let socket: Int32
    private var closed = false
    /// The socket as libssh2 sees it, and the lock for calls into libssh2.
    let io: SessionIO
    private var keepalivesOn = false
    /// The handshake's last step, the answer to its service request, is still to be read.
    var serviceAnswerPending = false
    /// Authentication was sent in the handshake's last round trip (see `init`).
    package private(set) var authenticationPipelined = false

    public var target: SSHTarget { configuration.target }

    /// Connects over TCP, verifies the host key and authenticates.
    public convenience init(connecting configuration: SSHConfiguration) throws {
        let target = configuration.target
        let deadline = Deadline(after: configuration.connectTimeout)
        let socket = try TCPConnect.open(host: target.host, port: target.port, timeout: configuration.connectTimeout, cancel: configuration.cancel)
        try self.init(socket: socket, configuration: configuration, handshakeDeadline: deadline)
    }

    /// Runs SSH over an already connected stream socket, which the session then owns (and closes).
    /// Any byte stream works: a TCP connection, or one end of a socketpair relayed through a jump host.
    public convenience init(socket: Int32, configuration: SSHConfiguration) throws {
        try self.init(socket: socket, configuration: configuration, handshakeDeadline: Deadline(after: configuration.connectTimeout))
    }

    private init(socket: Int32, configuration: SSHConfiguration, handshakeDeadline deadline: Deadline) throws {
        LibSSH2.initializeOnce()
        self.configuration = configuration
        self.socket = socket
        io = SessionIO(socket: socket)
        TCPConnect.setNonBlocking(socket)
        guard let session = libssh2_session_init_ex(nil, nil, nil, Unmanaged.passUnretained(io).toOpaque()) else {
            Glibc.close(socket)
            throw SSHError.handshake(host: configuration.target.host, port: configuration.target.port,
                                     reason: "libssh2 could not allocate a session")
        }
        raw = session
        libssh2_session_set_blocking(raw, 0)
        _ = libssh2_session_callback_set(raw, LIBSSH2_CALLBACK_RECV, unsafeBitCast(sessionRecv, to: UnsafeMutableRawPointer.self))
        _ = libssh2_session_callback_set(raw, LIBSSH2_CALLBACK_SEND, unsafeBitCast(sessionSend, to: UnsafeMutableRawPointer.self))
        do {
            let knownHosts = try KnownHosts(userFile: configuration.knownHostsFile, globalFiles: configuration.globalKnownHostsFiles)
            for warning in knownHosts.warnings { configuration.notice(warning) }
            let keyName = configuration.hostKeyAlias ?? target
            preferHostKeyTypes(knownHosts.recordedKeyTypes(host: keyName.host, port: keyName.port))
            // libssh2's handshake ends by asking for the ssh-userauth service and waiting a round
            // trip for the answer. Authentication starts once that request is out, in that same
            // round trip (the server handles packets in order; see `authenticationStep`). The
            // host key is checked first, as always.
            serviceAnswerPending = try !handshake(deadline: deadline, returnOnceServiceRequested: true)
            libssh2_keepalive_config(raw, 1, UInt32(configuration.effectiveKeepaliveInterval))
            io.lastInbound = Deadline.now()
            keepalivesOn = true
            try verifyHostKey(knownHosts)
            try authenticate()
            try finishPendingHandshake()
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Says goodbye to the server and frees the connection. Safe to call twice.
    public func close() {
        guard !closed else { return }
        closed = true
        io.lock.lock()
        defer { io.lock.unlock() }
        // Best effort, never blocking long: a dead peer must not hang the exit.
        _ = libssh2_session_disconnect_ex(raw, SSH_DISCONNECT_BY_APPLICATION, "bye", "")
        var tries = 0
        while io.flush() && tries < 50 {
            tries += 1
            var pfd = pollfd(fd: socket, events: Int16(POLLOUT), revents: 0)
            _ = poll(&pfd, 1, 20)
        }
        // With the socket shut, freeing channels still open cannot wait on the peer.
        shutdown(socket, Int32(SHUT_RDWR))
        tries = 0
        while libssh2_session_free(raw) == LIBSSH2_ERROR_EAGAIN && tries < 50 {
            tries += 1
            var pfd = pollfd(fd: socket, events: Int16(POLLIN | POLLOUT), revents: 0)
            _ = poll(&pfd, 1, 20)
        }
        Glibc.close(socket)
    }

    /// true: done. false (only with `returnOnceServiceRequested`): keys are set and the service
    /// request is out; its answer is still to come.
    private func handshake(deadline: Deadline, returnOnceServiceRequested: Bool = false) throws -> Bool {
        let target = self.target
        while true {
            let rc = libssh2_session_handshake(raw, socket)
            if rc == 0 { return true }
            guard rc == LIBSSH2_ERROR_EAGAIN else {
                let mismatch = io.serverKexInit?.mismatch(supported: supportedAlgorithms)
                throw SSHError.handshake(host: target.host, port: target.port, reason: mismatch ?? lastErrorMessage(rc))
            }
            if returnOnceServiceRequested && io.keyExchange.encryptedSent { return false }
            try waitSocket(deadline: deadline, onTimeout: .handshakeTimeout(
                host: target.host, port: target.port, seconds: configuration.connectTimeout), cancel: configuration.cancel)
        }
    }

    /// One libssh2 authentication call (`wouldBlock`: its result means EAGAIN). While the
    /// handshake's service answer is pending, the call only sends: reads are held, so that answer
    /// is left for the handshake to read (libssh2's handshake, once waiting, looks only at packets
    /// it reads itself, never at ones another call has queued). The handshake then ends, and the
    /// call goes on at once (what the handshake read past its answer may already be buffered).
    func authenticationStep<T>(_ wouldBlock: (T) -> Bool, _ body: () -> T) throws -> T {
        guard serviceAnswerPending else { return body() }
        io.holdingReads = true
        let result = body()
        io.holdingReads = false
        guard wouldBlock(result) else { return result }
        try finishPendingHandshake()
        return body()
    }

    /// Reads the handshake's last answer, when authentication went out before it.
    private func finishPendingHandshake() throws {
        guard serviceAnswerPending else { return }
        _ = try handshake(deadline: Deadline(after: configuration.connectTimeout))
        serviceAnswerPending = false
        authenticationPipelined = true
    }

    /// libssh2's algorithms of one kind (`LIBSSH2_METHOD_…`).
    func supportedAlgorithms(_ method: Int32) -> [String] {
        var algs: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        let count = libssh2_session_supported_algs(raw, method, &algs)
        guard count > 0, let algs else { return [] }
        defer { libssh2_free(raw, algs) }
        return (0..<Int(count)).compactMap { algs[$0].map { String(cString: $0) } }
    }

    // MARK: - Non-blocking plumbing

    /// Calls `body` (under the session's lock) until it stops answering EAGAIN, waiting on the
    /// socket in between.
    @discardableResult
    func retrying(_ operation: String, cancel: CancellationToken? = nil, waiter: SessionIO.Waiter? = nil, _ body: () -> Int32) throws -> Int32 {
        while true {
            let rc = try io.call(waiter) { () throws -> Int32 in
                let rc = body()
                if rc < 0 && rc != LIBSSH2_ERROR_EAGAIN { throw failure(operation, rc) }
                return rc
            }
            if rc != LIBSSH2_ERROR_EAGAIN { return rc }
            try waitSocket(cancel: cancel, waiter: waiter)
        }
    }

    /// Calls a libssh2 function that returns a pointer (under the session's lock), retrying
    /// while it would block.
    func retryingPointer<T>(_ operation: String, waiter: SessionIO.Waiter? = nil, _ body: () -> T?) throws -> T {
        while true {
            let value = try io.call(waiter) { () throws -> T? in
                if let value = body() { return value }
                let rc = libssh2_session_last_errno(raw)
                guard rc == LIBSSH2_ERROR_EAGAIN else { throw failure(operation, rc) }
                return nil
            }
            if let value { return value }
            try waitSocket(waiter: waiter)
        }
    }

    /// Under the session's lock (it reads libssh2's last error).
    func failure(_ operation: String, _ rc: Int32) -> SSHError {
        if io.peerClosed { return lost("the server closed the connection") }
        if io.sendFailure != 0 { return lost("send: \(String(cString: strerror(io.sendFailure)))") }
        if Self.socketErrors.contains(rc) {
            return lost("\(operation): \(lastErrorMessage(rc))")
        }
        return .protocolFailure(target: target.description, operation: operation, code: rc, message: lastErrorMessage(rc))
    }

    /// A lost connection; through a jump host that failed, its cause.
    func lost(_ reason: String) -> SSHError {
        if let via, let cause = via.failureDescription {
            return .connectionLost(target: target.description, reason: "the jump host \(via.name) failed: \(cause)")
        }
        return .connectionLost(target: target.description, reason: reason)
    }

    /// libssh2's codes for a socket that failed: the connection is gone, whatever the operation.
    static let socketErrors: Set<Int32> = [LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV,
                                           LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_TIMEOUT]

    func lastErrorMessage(_ rc: Int32) -> String {
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        libssh2_session_last_error(raw, &message, &length, 0)
        if let message, length > 0 { return String(cString: message) }
        return "error \(rc)"
    }

    /// As OpenSSH's ServerAliveInterval: a keepalive only after that long without a word from the
    /// server (libssh2 alone sends its first at once, which sshd, before authentication, logs as
    /// a protocol error on every connection). `silentFor`: seconds since the server's last word.
    /// Returns the seconds until it is worth asking again. Under the session's lock, or on the one
    /// thread that uses the session (a jump host's relay).
    func keepaliveIfSilent(for silentFor: Double) -> Int32 {
        let interval = Double(configuration.effectiveKeepaliveInterval)
        var next = Int32((interval - silentFor).rounded(.up))
        if silentFor >= interval { _ = libssh2_keepalive_send(raw, &next) }
        return max(1, next)
    }

    /// Waits until the socket can move data in the direction libssh2 is blocked on (or queued
    /// bytes can go out), sending keepalives meanwhile; throws when the peer is gone or stays
    /// silent too long, on cancel, or at `deadline` (checked on every call, so a peer that
    /// trickles bytes cannot stretch it). `waiter`: another thread's read wakes it.
    func waitSocket(deadline: Deadline? = nil, onTimeout: SSHError? = nil, cancel: CancellationToken? = nil,
                    alsoReadable input: Int32? = nil, waiter: SessionIO.Waiter? = nil) throws {
        if let deadline, deadline.expired, let onTimeout { throw onTimeout }
        let deadAfter = configuration.deadPeerTimeout
        let keepalives = keepalivesOn
        let (events, waitFor) = try io.call(waiter) { () throws -> (Int16, Int32) in
            if io.peerClosed { throw lost("the server closed the connection") }
            var events = Int16(POLLIN)
            if io.flush() || libssh2_session_block_directions(raw) & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
            if io.sendFailure != 0 { throw failure("send", LIBSSH2_ERROR_SOCKET_SEND) }
            guard keepalives else { return (events, 1000) }
            let silentFor = Deadline.now() - io.lastInbound
            // +1: libssh2 schedules keepalives in whole seconds.
            if silentFor > deadAfter + 1 {
                throw SSHError.peerUnresponsive(target: target.description, seconds: deadAfter)
            }
            let next = keepaliveIfSilent(for: silentFor)
            return (events, min(next * 1000, Int32(((deadAfter + 1 - silentFor) * 1000).rounded(.up)) + 1))
        }
        var waitMs = waitFor
        if let deadline { waitMs = min(waitMs, deadline.remainingMilliseconds) }

        // sshd leaves Nagle on for non-interactive sessions: its second small packet would wait
        // for our delayed ACK (40 ms each time). Linux clears quick-ACK mode by itself, so re-arm it.
        #if os(Linux)
        var one: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        var fds = [pollfd(fd: socket, events: events, revents: 0)]
        if let cancel { fds.append(pollfd(fd: cancel.descriptor, events: Int16(POLLIN), revents: 0)) }
        if let input { fds.append(pollfd(fd: input, events: Int16(POLLIN), revents: 0)) }
        if let waiter { fds.append(pollfd(fd: waiter.descriptor, events: Int16(POLLIN), revents: 0)) }
        let n = poll(&fds, nfds_t(fds.count), waitMs)
        if n < 0 && errno != EINTR {
            throw SSHError.protocolFailure(target: target.description, operation: "poll", code: 0, message: errnoText())
        }
        waiter?.drain()
        if let cancel, cancel.isCancelled { throw SSHError.cancelled }
        // A hung-up or failed socket is a lost connection, never activity.
        if fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(socket, SOL_SOCKET, SO_ERROR, &soError, &len)
            throw lost(soError != 0 ? String(cString: strerror(soError)) : "the connection was closed")
        }
        if let deadline, deadline.expired, let onTimeout { throw onTimeout }
    }
}

enum LibSSH2 {
    private static let initialized: Bool = {
        // Before libssh2 initialises libcrypto: no exit-time cleanup under running threads.
        _ = ferry_openssl_keep_at_exit()
        return libssh2_init(0) == 0
    }()

    /// libssh2_init once per process (Swift runs a static initializer exactly once, thread-safely).
    static func initializeOnce() { _ = initialized }
}
