import FerryTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Relays an SSH session to a test host through a socketpair, optionally cutting the connection
/// after a number of client-to-server bytes (a link that drops mid-transfer). `blackhole()`
/// stops forwarding with both connections left open (a link that silently drops everything).
/// Unchecked Sendable: `blackholed`, `forwarded` and `sentUpstream` are touched only under `stateLock`.
public final class SocketRelay: @unchecked Sendable {
    private let stateLock = NSLock()
    private var blackholed = false
    /// Bytes forwarded so far, both ways.
    public private(set) var forwarded = 0
    /// Bytes forwarded client → server so far (what `cutAfter` counts).
    public var upstreamBytes: Int { stateLock.lock(); defer { stateLock.unlock() }; return sentUpstream }
    private var sentUpstream = 0

    public func blackhole() {
        stateLock.lock(); blackholed = true; stateLock.unlock()
    }

    /// The end to hand to `SSHSession(socket:configuration:)`.
    public let clientSocket: Int32
    private let relayEnd: Int32
    private let upstream: Int32
    private let cutAfter: Int?

    public init(port: Int, cutAfter: Int? = nil) throws {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { throw RelayError() }
        clientSocket = pair[0]
        relayEnd = pair[1]
        self.cutAfter = cutAfter
        guard let upstream = Loopback.connect(port: port) else { throw RelayError() }
        self.upstream = upstream
        Thread { self.run() }.start()
    }

    struct RelayError: Error {}

    private func run() {
        var fds = [pollfd(fd: relayEnd, events: Int16(POLLIN), revents: 0), pollfd(fd: upstream, events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 65536)
        var sent = 0
        loop: while poll(&fds, 2, 30_000) > 0 {
            stateLock.lock(); let dropping = blackholed; stateLock.unlock()
            for (from, to) in [(0, 1), (1, 0)] where fds[from].revents != 0 {
                var n = read(fds[from].fd, &buffer, buffer.count)
                if n <= 0 { break loop }
                if dropping { continue }
                stateLock.lock(); forwarded += n; if from == 0 { sentUpstream += n }; stateLock.unlock()
                if from == 0, let cut = cutAfter {
                    n = min(n, cut - sent)
                    sent += n
                }
                // send, not write: a peer gone (killSessions) must not SIGPIPE the test process.
                if n > 0 && send(fds[to].fd, buffer, n, Int32(MSG_NOSIGNAL)) != n { break loop }
                if from == 0, let cut = cutAfter, sent >= cut { break loop }
            }
        }
        // Cut both ways at once, as a dead link does.
        shutdown(relayEnd, Int32(SHUT_RDWR))
        close(relayEnd)
        close(upstream)
    }
}
