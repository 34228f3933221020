import FerryXCTestSupport
import Foundation
import XCTest

final class AuthenticationTests: HostTestCase {
    func testEd25519AndEcdsaKeyFiles() throws {
        for key in [TestHostHarness.ClientKey.ed25519, .ecdsa] {
            let session = try connect(key: key)
            XCTAssertEqual(try run(session, ["id", "-un"]).stdout, "root\n", "\(key)")
            session.close()
        }
    }

    func testEncryptedKeyWithPassphrase() throws {
        let session = try connect(key: .ed25519Encrypted) { $0.passphrase = .fixed(TestHostHarness.ClientKey.passphrase) }
        XCTAssertEqual(try run(session, ["true"]).status, .exited(0))
    }

    func testEncryptedKeyWithoutPassphraseSaysHowToGiveOne() throws {
        let error = expectSSHError { _ = try self.connect(key: .ed25519Encrypted) { $0.passphrase = .none } }
        let text = "\(error.map { "\($0)" } ?? "")"
        XCTAssertTrue(text.contains("encrypted; no passphrase given"), text)
        XCTAssertTrue(text.contains("FERRY_SSH_PASSPHRASE"), text)
    }

    func testWrongPassphraseIsNamed() throws {
        let error = expectSSHError { _ = try self.connect(key: .ed25519Encrypted) { $0.passphrase = .fixed("wrong") } }
        XCTAssertTrue("\(error!)".contains("wrong passphrase"), "\(error!)")
    }

    func testAgentAuthentication() throws {
        let agent = try SSHAgent.start(in: try harness.directory)
        defer { agent.stop() }
        try agent.add(try harness.clientKey(.ecdsa))
        // The identity file alone would be refused: success proves the agent's key was used.
        let session = try connect(key: .unauthorized) { $0.agentSocket = agent.socket }
        XCTAssertEqual(try run(session, ["id", "-un"]).stdout, "root\n")
    }

    func testWrongKeyListsTheMethodsTried() throws {
        let agent = try SSHAgent.start(in: try harness.directory)
        defer { agent.stop() }
        try agent.add(try harness.clientKey(.unauthorized))
        let keyPath = try harness.clientKey(.unauthorized)
        let error = expectSSHError { _ = try self.connect(key: .unauthorized) { $0.agentSocket = agent.socket } }
        guard case .authenticationFailed(let target, let tried, let methods, _) = error else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertEqual(target, try host.target().description)
        XCTAssertEqual(tried, ["\(keyPath) (via ssh-agent; refused)"])
        XCTAssertEqual(methods, "publickey")
        XCTAssertTrue("\(error!)".contains("authentication failed; tried: \(keyPath) (via ssh-agent; refused); the server accepts: publickey"), "\(error!)")

        let other = try SSHAgent.start(in: try harness.directory)
        defer { other.stop() }
        try other.add(try harness.clientKey(.ecdsa))
        // The named key is refused; the agent's other key then gets in.
        let session = try connect(key: .unauthorized) { $0.agentSocket = other.socket }
        XCTAssertEqual(try run(session, ["true"]).status, .exited(0))
    }

    /// Issue 7.11: the named key goes first, even when the agent holds more keys than the
    /// server's MaxAuthTries (6): OpenSSH's order (agent first) would be cut off before it.
    func testNamedKeyGoesBeforeTheAgentsKeys() throws {
        let agent = try SSHAgent.start(in: try harness.directory)
        defer { agent.stop() }
        for i in 0..<7 {
            let path = try harness.directory + "/keys/extra-\(i)-\(UUID().uuidString)"
            try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path])
            try agent.add(path)
        }
        let session = try connect(key: .ed25519) { $0.agentSocket = agent.socket }
        XCTAssertEqual(try run(session, ["id", "-un"]).stdout, "root\n")
    }

    func testOnlyAnRSAKeyExplainsSHA1() throws {
        let error = expectSSHError { _ = try self.connect(key: .rsa) }
        let text = "\(error!)"
        XCTAssertTrue(text.contains("RSA keys cannot work here"), text)
        XCTAssertTrue(text.contains("ssh-keygen -t ed25519"), text)
    }

    func testMissingIdentityFileIsNamed() throws {
        let error = expectSSHError { _ = try self.connect { $0.identityFiles = ["/nonexistent/key"] } }
        XCTAssertEqual(error, .identityFile(path: "/nonexistent/key", reason: "no such file"))
    }

    func testNonRootUsersWithAndWithoutSudo() throws {
        let harness = try self.harness
        let host = try harness.startHost(name: "users", users: [TestUser(name: "deploy", uid: 4242, sudo: true),
                                                                 TestUser(name: "plain", uid: 4243, sudo: false)])
        defer { host.stop() }
        let deploy = try SSHSession(connecting: try harness.configuration(for: host, user: "deploy"))
        XCTAssertEqual(try run(deploy, ["id", "-un"]).stdout, "deploy\n")
        XCTAssertEqual(try run(deploy, ["sudo", "-n", "id", "-un"]).stdout, "root\n")
        let plain = try SSHSession(connecting: try harness.configuration(for: host, user: "plain"))
        XCTAssertEqual(try run(plain, ["id", "-un"]).stdout, "plain\n")
        XCTAssertNotEqual(try run(plain, ["sudo", "-n", "true"]).status, .exited(0))
        // The machine's own account files are untouched.
        XCTAssertFalse(try String(contentsOfFile: "/etc/passwd", encoding: .utf8).contains("ferry test user"))
    }
}

/// A real ssh-agent for one test, tied to the test process's lifetime.
struct SSHAgent {
    let socket: String
    let process: Process

    static func start(in directory: String) throws -> SSHAgent {
        let socket = "\(directory)/agent-\(UUID().uuidString.prefix(8)).sock"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Command.which("setpriv"))
        process.arguments = ["--pdeathsig", "KILL", "--", try Command.which("ssh-agent"), "-D", "-a", socket]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { usleep(20_000) }
        return SSHAgent(socket: socket, process: process)
    }

    func add(_ key: String) throws {
        try Command.check(["ssh-add", "-q", key], environment: ["SSH_AUTH_SOCK": socket])
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}
