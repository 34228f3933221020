import FerryXCTestSupport
import Foundation
import XCTest

/// `direct-tcpip` channels from the target's side: what an `http` health check rides on.
final class ForwardTests: HostTestCase {
    /// The target's sshd itself answers a forwarded connection with its banner; a name only the
    /// host's /etc/hosts knows resolves there.
    func testAnExchangeReachesWhatTheTargetReaches() throws {
        let harness = try self.harness
        let inside = try harness.startHost(name: "forwarding", names: ["only-here.internal": "127.0.0.1"])
        let session = try SSHSession(connecting: try harness.configuration(for: inside))
        defer { session.close() }
        let reply = try session.exchange(host: "only-here.internal", port: inside.port, send: [], timeout: 10, cancel: nil) {
            $0.contains(0x0A)
        }
        XCTAssertEqual(reply.ending, .complete)
        XCTAssertTrue(reply.bytes.starts(with: Array("SSH-2.0-OpenSSH".utf8)), String(decoding: reply.bytes, as: UTF8.self))

        // Nothing listens there: sshd says so, distinct from a refusal to forward at all.
        let closed = try Loopback.freePort()
        let error = expectSSHError { _ = try session.exchange(host: "127.0.0.1", port: closed, send: [], timeout: 10, cancel: nil) { _ in true } }
        XCTAssertEqual(error, .channelRefused(target: session.name, destination: "127.0.0.1:\(closed)", refusal: .connectFailed))

        // A peer that never answers: the exchange ends at its timeout, and the session still works.
        let start = Date()
        let silent = try session.exchange(host: "127.0.0.1", port: inside.port, send: [], timeout: 1, cancel: nil) { $0.count > 1 << 20 }
        XCTAssertEqual(silent.ending, .timedOut)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertEqual(try run(session, ["true"]).status, .exited(0))
    }

    func testAHostThatForbidsForwardingSaysSo() throws {
        let harness = try self.harness
        let strict = try harness.startHost(name: "no-forwarding", sshdOptions: ["AllowTcpForwarding no"])
        let session = try SSHSession(connecting: try harness.configuration(for: strict))
        defer { session.close() }
        let error = expectSSHError { _ = try session.exchange(host: "127.0.0.1", port: strict.port, send: [], timeout: 10, cancel: nil) { _ in true } }
        XCTAssertEqual(error, .channelRefused(target: session.name, destination: "127.0.0.1:\(strict.port)", refusal: .prohibited))
        // The session goes on.
        XCTAssertEqual(try run(session, ["true"]).status, .exited(0))
    }
}
