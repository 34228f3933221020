@testable import FerrySSH
import FerryXCTestSupport
import Foundation
import XCTest

/// How a connection opens, as the server sees it: authentication goes out in the handshake's last
/// round trip, with the service request (one round trip less per connection), never before the
/// host key is checked, and nothing in it makes sshd complain.
final class ConnectionOpeningTests: HostTestCase {
    /// The watch on our clear-text opening: encrypted bytes are seen only after our NEWKEYS,
    /// however the sends are cut.
    func testTheEndOfOurKeyExchangeIsSeenWhereverTheSendsAreCut() {
        func packet(_ message: UInt8, _ body: Int) -> [UInt8] {
            let padding = 4 + (8 - (5 + 1 + body + 4) % 8) % 8
            let length = 1 + 1 + body + padding
            return withUnsafeBytes(of: UInt32(length).bigEndian, Array.init) + [UInt8(padding), message]
                + [UInt8](repeating: 0x41, count: body) + [UInt8](repeating: 0, count: padding)
        }
        let clear = Array("SSH-2.0-libssh2_1.10.0\r\n".utf8) + packet(20, 900) + packet(30, 36) + packet(21, 0)
        let encrypted = [UInt8](repeating: 0xC3, count: 80)
        let all = clear + encrypted
        for cut in 0...all.count {
            var watch = ClientKeyExchangeWatch()
            all[..<cut].withUnsafeBytes { watch.sent($0) }
            XCTAssertEqual(watch.encryptedSent, cut > clear.count, "one cut at \(cut)")
            all[cut...].withUnsafeBytes { watch.sent($0) }
            XCTAssertTrue(watch.encryptedSent, "cut at \(cut)")
        }
        // Byte by byte.
        var watch = ClientKeyExchangeWatch()
        for (i, byte) in all.enumerated() {
            [byte].withUnsafeBytes { watch.sent($0) }
            XCTAssertEqual(watch.encryptedSent, i >= clear.count, "byte \(i)")
        }
        // Not an SSH opening: never "encrypted" (the session then simply does not pipeline).
        var garbage = ClientKeyExchangeWatch()
        ([UInt8]("SSH-2.0-x\r\n".utf8) + [0xFF, 0xFF, 0xFF, 0xFF, 4, 21] + encrypted).withUnsafeBytes { garbage.sent($0) }
        encrypted.withUnsafeBytes { garbage.sent($0) }
        XCTAssertFalse(garbage.encryptedSent)
    }

    /// Through a 60 ms round trip (on loopback the service's answer may already be there when the
    /// handshake looks, and then there is nothing to save): key files and the agent authenticate
    /// in the handshake's last round trip, and a refused key still gets the server's method list.
    func testKeyFilesAndTheAgentAuthenticateInTheHandshakesLastRoundTrip() throws {
        let proxy = try LinkProxy(to: try host.port, shape: .init(delay: 0.03))
        defer { proxy.stop() }
        let knownHosts = temporaryFile("[127.0.0.1]:\(proxy.port) \(try host.hostPublicKey("ed25519"))\n")
        func through(_ key: TestHostHarness.ClientKey, agent: SSHAgent? = nil) throws -> SSHSession {
            try connect(key: key) { $0.target.port = proxy.port; $0.knownHostsFile = knownHosts; $0.agentSocket = agent?.socket }
        }
        for key in [TestHostHarness.ClientKey.ed25519, .ecdsa] {
            let session = try through(key)
            XCTAssertTrue(session.authenticationPipelined, "\(key)")
            XCTAssertEqual(try run(session, ["echo", "ok"]).stdout, "ok\n")
            session.close()
        }
        let agent = try SSHAgent.start(in: try harness.directory)
        defer { agent.stop() }
        try agent.add(try harness.clientKey(.ecdsa))
        let session = try through(.unauthorized, agent: agent)
        XCTAssertTrue(session.authenticationPipelined, "agent")
        XCTAssertEqual(try run(session, ["id", "-un"]).stdout, "root\n")
        session.close()

        let error = expectSSHError { _ = try through(.unauthorized) }
        guard case .authenticationFailed(_, let tried, let methods, _) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(tried, ["\(try harness.clientKey(.unauthorized)) (refused)"])
        XCTAssertEqual(methods, "publickey")
    }

    /// A host that shows a banner (sshd `Banner`, NixOS `services.openssh.banner`) sends it
    /// between the service's answer and the answer to the first key: the pipelined opening reads
    /// past it, on loopback and through a 60 ms link.
    func testAHostWithABannerConnects() throws {
        let banner = temporaryFile("Authorized use only.\n")
        let bannered = try harness.startHost(name: "bannered", sshdOptions: ["Banner \(banner)"])
        let proxy = try LinkProxy(to: bannered.port, shape: .init(delay: 0.03))
        defer { proxy.stop() }
        let knownHosts = temporaryFile("[127.0.0.1]:\(bannered.port) \(try bannered.hostPublicKey("ed25519"))\n" +
                                       "[127.0.0.1]:\(proxy.port) \(try bannered.hostPublicKey("ed25519"))\n")
        for port in [bannered.port, proxy.port] {
            var config = try harness.configuration(for: bannered)
            config.target.port = port
            config.knownHostsFile = knownHosts
            let session = try SSHSession(connecting: config)
            if port == proxy.port { XCTAssertTrue(session.authenticationPipelined) }
            XCTAssertEqual(try run(session, ["echo", "ok"]).stdout, "ok\n", "port \(port)")
            session.close()
        }
    }

    /// sshd's lines for one connection made from a socket of our own (found by its client port),
    /// once it has ended or been let in (bounded wait), with what connecting threw.
    func connectAndReadSSHDLog(key: TestHostHarness.ClientKey, _ adjust: (inout SSHConfiguration) -> Void = { _ in },
                               then use: (SSHSession) throws -> Void = { _ in }) throws -> (SSHError?, [String]) {
        var config = try harness.configuration(for: try host, key: key)
        adjust(&config)
        let socket = try TCPConnect.open(host: "127.0.0.1", port: try host.port, timeout: 5)
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
        let port = "port \(UInt16(bigEndian: address.sin_port))"
        var error: SSHError?
        do {
            let session = try SSHSession(socket: socket, configuration: config)
            try use(session)
            session.close()
        } catch let e as SSHError { error = e }
        // sshd writes its lines as the connection ends (or is let in): wait for them (bounded).
        let ends = ["Connection closed by", "Disconnected from", "Accepted publickey"]
        let log = "\(try host.directory)/sshd.log"
        func lines() throws -> [String] {
            try String(contentsOfFile: log, encoding: .utf8).components(separatedBy: .newlines)
                .filter { $0.contains(port + " ") || $0.contains(port + ":") || $0.hasSuffix(port) }
        }
        for _ in 0..<100 {
            if try lines().contains(where: { line in ends.contains(where: line.contains) }) {
                if error == nil { Thread.sleep(forTimeInterval: 0.2) }  // a session's last lines come after "Accepted"
                return (error, try lines())
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("sshd logged no end for the connection from \(port)")
        return (error, [])
    }

    /// sshd's log tells a connection that offered a key ("authenticating user", "Accepted
    /// publickey") from one that did not: a refused host key ends the connection before any key
    /// is offered.
    func testARefusedHostKeyGetsNoAuthenticationRequest() throws {
        // The oracle: a refused key is logged as an authenticating user.
        let (refused, oracle) = try connectAndReadSSHDLog(key: .unauthorized)
        guard case .authenticationFailed = refused else { return XCTFail("\(String(describing: refused))") }
        XCTAssertTrue(oracle.contains { $0.contains("authenticating user root") }, "\(oracle)")

        let impostor = try impostorHostKey()
        let knownHosts = temporaryFile("[127.0.0.1]:\(try host.port) \(impostor)\n")
        let (changed, lines) = try connectAndReadSSHDLog(key: .ed25519) { $0.knownHostsFile = knownHosts }
        guard case .hostKeyChanged = changed else { return XCTFail("\(String(describing: changed))") }
        XCTAssertFalse(lines.isEmpty)
        XCTAssertFalse(lines.contains { $0.contains("authenticating user") || $0.contains("publickey") }, "\(lines)")
    }

    /// A ferry connection leaves sshd nothing to complain about. (libssh2 sends its first
    /// keepalive at once, which sshd, before authentication, logged as
    /// "dispatch_protocol_error: type 80" on every connection.)
    func testAConnectionLeavesNoProtocolErrorInSSHDsLog() throws {
        // Lines such as this one name no port: count them in the whole log (this class's host
        // serves one test at a time).
        let log = "\(try host.directory)/sshd.log"
        func complaints() throws -> [String] {
            try String(contentsOfFile: log, encoding: .utf8).components(separatedBy: .newlines).filter { $0.contains("error") }
        }
        let before = try complaints()
        let (error, lines) = try connectAndReadSSHDLog(key: .ed25519, then: { session in
            XCTAssertEqual(try self.run(session, ["true"]).status, .exited(0))
        })
        XCTAssertNil(error)
        XCTAssertTrue(lines.contains { $0.contains("Accepted publickey") }, "\(lines)")
        XCTAssertEqual(try complaints(), before)
    }
}
