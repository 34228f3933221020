import FerryXCTestSupport
import Foundation
import XCTest

/// The userspace link the fault tests and `scripts/bench wan` use: delay, cut, blackhole, reset.
final class LinkProxyTests: HostTestCase {
    func session(through proxy: LinkProxy) throws -> SSHSession {
        let knownHosts = temporaryFile("[127.0.0.1]:\(proxy.port) \(try host.hostPublicKey("ed25519"))\n")
        var config = try harness.configuration(for: try host)
        config.target.port = proxy.port
        config.knownHostsFile = knownHosts
        config.keepaliveInterval = 1
        config.keepaliveCountMax = 3
        return try SSHSession(connecting: config)
    }

    func testDelayAddsItsRoundTrip() throws {
        let proxy = try LinkProxy(to: try host.port, shape: .init(delay: 0.03))
        defer { proxy.stop() }
        let s = try session(through: proxy)
        defer { s.close() }
        let start = Date()
        XCTAssertEqual(try run(s, ["true"]).status, .exited(0))
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.06, "an exec costs at least one 60 ms round trip")
    }

    func testCutBlackholeAndReset() throws {
        let upload = BytesInput([UInt8](repeating: 7, count: 2_000_000))
        let cut = try LinkProxy(to: try host.port, shape: .init(cutAfter: 200_000))
        defer { cut.stop() }
        let s1 = try session(through: cut)
        XCTAssertThrowsError(try s1.exec(RemoteCommand(["sh", "-c", "cat > /dev/null"]), stdin: upload, stdout: { _ in }, stderr: { _ in })) {
            guard case .connectionLost? = $0 as? SSHError else { return XCTFail("\($0)") }
        }

        let hole = try LinkProxy(to: try host.port)
        defer { hole.stop() }
        let s2 = try session(through: hole)
        hole.blackhole()
        let start = Date()
        XCTAssertThrowsError(try run(s2, ["sleep", "30"])) {
            guard case .peerUnresponsive? = $0 as? SSHError else { return XCTFail("\($0)") }
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 9)

        let reset = try LinkProxy(to: try host.port)
        defer { reset.stop() }
        let s3 = try session(through: reset)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { reset.reset() }
        XCTAssertThrowsError(try run(s3, ["sleep", "30"])) {
            guard case .connectionLost? = $0 as? SSHError else { return XCTFail("\($0)") }
        }
    }
}
