import FerrySSH
import FerryXCTestSupport
import Foundation
import Synchronization
import XCTest

/// A deploying user's login shell that talks (`echo Welcome` in ~/.bashrc) or blocks (`sleep`):
/// its text is kept out of every command's output and named once; a shell that never starts the
/// command is an error after the connect timeout, while commands slow on purpose are not.
final class LoginShellTests: HostTestCase {
    var bashrc: String { (try? host.directory).map { $0 + "/root/.bashrc" } ?? "" }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: bashrc)
        super.tearDown()
    }

    func testAChattyLoginShellIsKeptOutOfTheOutputAndNamedOnce() throws {
        try "echo Welcome\necho 'to stderr' >&2\n".write(toFile: bashrc, atomically: true, encoding: .utf8)
        let notices = Mutex<[String]>([])
        let session = try connect { $0.onNotice = { text in notices.withLock { $0.append(text) } } }
        for _ in 0..<3 {
            let r = try run(session, ["sh", "-c", "echo out; echo err >&2"])
            XCTAssertEqual(r.status, .exited(0))
            XCTAssertEqual(r.stdout, "out\n")
            XCTAssertEqual(r.stderr, "err\n")
        }
        let said = notices.withLock { $0 }
        XCTAssertEqual(said.count, 1, "\(said)")
        XCTAssertTrue(said.first?.contains("the login shell printed text before ferry's command ran") ?? false, "\(said)")
        XCTAssertTrue(said.first?.contains("Welcome") ?? false, "\(said)")

        // A sync's listing reads clean too (it said "an unknown kind of destination 'Welcome⏎dir'").
        let src = NSTemporaryDirectory() + "ferry-login-shell-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: src) }
        try "x".write(toFile: src + "/d/f", atomically: false, encoding: .utf8)
        let sync = try FerryBinary.run(["sync", src, "root@127.0.0.1:\(try host.port):/var/src/chatty",
                                        "-i", try harness.clientKey(.ed25519), "--known-hosts", try harness.knownHostsFile])
        XCTAssertEqual(sync.status, 0, sync.stderr)
        XCTAssertTrue(sync.stderr.contains("warning: the login shell printed text"), sync.stderr)
        XCTAssertEqual(try String(contentsOfFile: try host.varSrc + "/chatty/d/f", encoding: .utf8), "x")
    }

    func testABlockingLoginShellIsAnErrorAfterTheConnectTimeout() throws {
        let session = try connect { $0.connectTimeout = 2 }
        // Slow on purpose, after the command started: not affected.
        XCTAssertEqual(try run(session, ["sleep", "3"]).status, .exited(0))
        try "sleep 60\n".write(toFile: bashrc, atomically: true, encoding: .utf8)
        let start = Date()
        let error = expectSSHError { _ = try self.run(session, ["true"]) }
        let took = Date().timeIntervalSince(start)
        guard case .loginShellSilent(_, let seconds)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(seconds, 2)
        XCTAssertTrue("\(error!)".contains("the login shell did not start the command within 2 s"), "\(error!)")
        XCTAssertGreaterThanOrEqual(took, 1.9)
        XCTAssertLessThan(took, 30, "a generous bound: the deadline is 2 s")
    }
}
