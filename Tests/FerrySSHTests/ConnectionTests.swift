import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class ConnectionTests: HostTestCase {
    func testClosedPortFailsFast() throws {
        let harness = try self.harness
        let port = try Loopback.freePort()
        let start = Date()
        var config = try harness.configuration(for: try host)
        config.target.port = port
        let error = expectSSHError { _ = try SSHSession(connecting: config) }
        // Fast means not the connect timeout's 10 s; a loaded machine may take a while.
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertEqual(error, .connect(host: "127.0.0.1", port: port, reason: "Connection refused"))
        XCTAssertTrue("\(error!)".contains("cannot connect to 127.0.0.1 port \(port): Connection refused"))
    }

    /// A listener that accepts (the kernel completes the TCP handshake) but never speaks SSH.
    func testSilentListenerFailsWithinTheTimeout() throws {
        let harness = try self.harness
        let (fd, port) = try Self.silentListener()
        defer { close(fd) }
        var config = try harness.configuration(for: try host)
        config.target.port = port
        config.connectTimeout = 1
        let start = Date()
        let error = expectSSHError { _ = try SSHSession(connecting: config) }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(error, .handshakeTimeout(host: "127.0.0.1", port: port, seconds: 1))
        XCTAssertGreaterThanOrEqual(elapsed, 0.9)
        XCTAssertLessThan(elapsed, 6, "the 1 s timeout, with room for a loaded machine")
        XCTAssertTrue("\(error!)".contains("is an SSH server listening there?"))
    }

    func testUnresolvableHost() throws {
        var config = try harness.configuration(for: try host)
        config.target.host = "no-such-host.invalid"
        let error = expectSSHError { _ = try SSHSession(connecting: config) }
        guard case .resolve(let name, _) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(name, "no-such-host.invalid")
    }

    func testIPv6AndHostNames() throws {
        for name in ["::1", "localhost"] {
            let knownHosts = temporaryFile()
            let session = try connect {
                $0.target.host = name
                $0.knownHostsFile = knownHosts
                $0.hostKeyPolicy = .acceptNew
            }
            XCTAssertEqual(try run(session, ["true"]).status, .exited(0), name)
            XCTAssertTrue(try String(contentsOfFile: knownHosts, encoding: .utf8).hasPrefix("[\(name)]:\(try host.port) "))
        }
    }

    /// A peer that stops answering (frozen sshd, connection still open) is detected by keepalives,
    /// while a long silent command on a live peer is not cut.
    func testDeadPeerIsDetectedButSlowCommandsAreNot() throws {
        let session = try connect { $0.keepaliveInterval = 1; $0.keepaliveCountMax = 2 }
        XCTAssertEqual(session.configuration.deadPeerTimeout, 4, "libssh2 raises an interval of 1 to 2")
        XCTAssertEqual(try run(session, ["sleep", "7"]).status, .exited(0), "7 s of silence with live keepalives")
        let host = try self.host
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { host.freeze(true) }
        defer { host.freeze(false) }
        let start = Date()
        let error = expectSSHError { _ = try self.run(session, ["sleep", "30"]) }
        XCTAssertEqual(error, .peerUnresponsive(target: host.target().description, seconds: 4))
        XCTAssertLessThan(Date().timeIntervalSince(start), 20, "within a few keepalives, never the command's 30 s")
    }

    /// A listener that never accepts: the kernel completes the TCP handshake anyway.
    static func silentListener() throws -> (Int32, Int) { try Loopback.bind(backlog: 8) }
}

/// The session runs over any connected stream: here a socketpair relayed to the host by a thread,
/// the shape a jump host (direct-tcpip channel) relay takes.
final class RelayedSocketTests: HostTestCase {
    func testSessionOverARelayedSocketpair() throws {
        let relay = try SocketRelay(port: try host.port)
        let session = try SSHSession(socket: relay.clientSocket, configuration: try harness.configuration(for: try host))
        XCTAssertEqual(try run(session, ["echo", "relayed"]).stdout, "relayed\n")
        session.close()
    }
}
