import CLibSSH2
#if canImport(Glibc)
import Glibc
#endif

/// Why sshd would not open a `direct-tcpip` channel (RFC 4254 §5.1's reasons, as libssh2 says them).
public enum ChannelRefusal: Sendable, Equatable, CustomStringConvertible {
    /// `AllowTcpForwarding no`, a `PermitOpen` that leaves the destination out, `DisableForwarding`.
    case prohibited
    /// sshd could not connect to the destination (nothing listens there, or its name does not resolve).
    case connectFailed
    case other(String)

    init(message: String) {
        if message.contains("administratively prohibited") { self = .prohibited }
        else if message.contains("connect failed") { self = .connectFailed }
        else { self = .other(message) }
    }

    public var description: String {
        switch self {
        case .prohibited: return "administratively prohibited (sshd forbids forwarding: AllowTcpForwarding, PermitOpen or DisableForwarding)"
        case .connectFailed: return "connect failed (nothing answers there, as the host resolves and reaches it)"
        case .other(let message): return message
        }
    }
}

/// What came back over a forwarded connection.
public struct ForwardedReply: Sendable, Equatable {
    public enum Ending: Sendable, Equatable {
        /// The caller's `until` was satisfied.
        case complete
        /// The far end closed its side first.
        case closed
        /// Nothing conclusive before the timeout.
        case timedOut
    }

    public var bytes: [UInt8]
    public var ending: Ending
}

extension SSHSession {
    /// Opens a `direct-tcpip` channel to `host:port` as the target resolves and reaches it (so a
    /// port its firewall closes to the world can be reached), sends `request`, and reads the answer
    /// until `until` is satisfied, the far end closes, or `timeout` seconds have passed — never
    /// sending end of input, as a client that waits for its reply does not. Throws
    /// `SSHError.channelRefused` when sshd will not open the channel.
    public func exchange(host: String, port: Int, send request: [UInt8], timeout: Double, cancel: CancellationToken?,
                         until complete: ([UInt8]) -> Bool) throws -> ForwardedReply {
        let deadline = Deadline(after: timeout)
        let waiter = try io.join()
        defer { io.leave(waiter) }
        // One thread at a time waits for a channel-open reply (see `SessionIO.starting`).
        io.starting.lock()
        let channel: OpaquePointer
        do {
            defer { io.starting.unlock() }
            channel = try openForwarded(host: host, port: port, cancel: cancel, waiter: waiter)
        }
        defer { freeChannel(channel, waiter) }
        var reply: [UInt8] = []
        if complete(reply) { return ForwardedReply(bytes: reply, ending: .complete) }
        var sent = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            var progressed = false
            if sent < request.count {
                let n = io.call(waiter) {
                    request.withUnsafeBytes { libssh2_channel_write_ex(channel, 0, $0.baseAddress! + sent, $0.count - sent) }
                }
                if n > 0 { sent += n; progressed = true }
                else if n == Int(LIBSSH2_ERROR_CHANNEL_CLOSED) || n == Int(LIBSSH2_ERROR_CHANNEL_EOF_SENT) { sent = request.count }
                else if n != Int(LIBSSH2_ERROR_EAGAIN) { throw io.call(waiter) { failure("send over the forwarded connection", Int32(n)) } }
            }
            while true {
                let n = try io.call(waiter) { () throws -> Int in
                    let n = libssh2_channel_read_ex(channel, 0, buffer.baseAddress, buffer.count)
                    if n < 0 && n != Int(LIBSSH2_ERROR_EAGAIN) { throw failure("read the forwarded connection", Int32(n)) }
                    return n
                }
                guard n > 0 else { break }
                reply.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                progressed = true
                if complete(reply) { return ForwardedReply(bytes: reply, ending: .complete) }
            }
            if io.call(waiter, { libssh2_channel_eof(channel) }) != 0 { return ForwardedReply(bytes: reply, ending: .closed) }
            if deadline.expired { return ForwardedReply(bytes: reply, ending: .timedOut) }
            if !progressed { try waitSocket(deadline: deadline, cancel: cancel, waiter: waiter) }
        }
    }

    /// Under `io.starting`: the channel, once sshd has opened it.
    private func openForwarded(host: String, port: Int, cancel: CancellationToken?, waiter: SessionIO.Waiter) throws -> OpaquePointer {
        while true {
            let channel = try io.call(waiter) { () throws -> OpaquePointer? in
                if let channel = host.withCString({ libssh2_channel_direct_tcpip_ex(raw, $0, Int32(port), "127.0.0.1", 22) }) { return channel }
                let rc = libssh2_session_last_errno(raw)
                if rc == LIBSSH2_ERROR_EAGAIN { return nil }
                if rc == LIBSSH2_ERROR_CHANNEL_FAILURE {
                    throw SSHError.channelRefused(target: target.description, destination: Self.destination(host, port),
                                                  refusal: ChannelRefusal(message: lastErrorMessage(rc)))
                }
                throw failure("open a forwarded connection to \(Self.destination(host, port))", rc)
            }
            if let channel { return channel }
            try waitSocket(cancel: cancel, waiter: waiter)
        }
    }

    static func destination(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
