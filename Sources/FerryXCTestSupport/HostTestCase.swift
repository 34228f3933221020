@_exported import FerrySSH
@_exported import FerryTestSupport
import Foundation
import XCTest

/// Base for tests against real sshd hosts: one harness and host per test class, stopped after it.
/// A missing prerequisite skips locally and fails under CI=true.
open class HostTestCase: XCTestCase {
    private nonisolated(unsafe) static var shared: [String: (TestHostHarness, TestHost)] = [:]

    /// Login users besides root on the class's host.
    open class var hostUsers: [TestUser] { [] }

    public var harness: TestHostHarness { get throws { try sharedPair().0 } }
    public var host: TestHost { get throws { try sharedPair().1 } }

    private func sharedPair() throws -> (TestHostHarness, TestHost) {
        let key = String(describing: type(of: self))
        if let pair = Self.shared[key] { return pair }
        let harness = try Self.makeHarness()
        let pair = (harness, try harness.startHost(users: Self.hostUsers))
        Self.shared[key] = pair
        return pair
    }

    override open class func tearDown() {
        shared.removeValue(forKey: String(describing: self))?.0.shutdown()
        super.tearDown()
    }

    public static func makeHarness() throws -> TestHostHarness {
        do {
            return try TestHostHarness()
        } catch let error as TestHostError {
            if case .missingPrerequisite = error, ProcessInfo.processInfo.environment["CI"] != "true" {
                throw XCTSkip("\(error)")
            }
            throw error
        }
    }

    public func connect(user: String = "root", key: TestHostHarness.ClientKey = .ed25519,
                 _ adjust: (inout SSHConfiguration) -> Void = { _ in }) throws -> SSHSession {
        var config = try harness.configuration(for: try host, user: user, key: key)
        adjust(&config)
        return try SSHSession(connecting: config)
    }

    public func run(_ session: SSHSession, _ argv: [String], stdin: [UInt8]? = nil) throws -> (status: ExitStatus, stdout: String, stderr: String) {
        let r = try session.run(RemoteCommand(argv), stdin: stdin)
        return (r.status, String(decoding: r.stdout, as: UTF8.self), String(decoding: r.stderr, as: UTF8.self))
    }

    /// Expects `body` to throw an SSHError and returns it.
    public func expectSSHError(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> SSHError? {
        do {
            try body()
            XCTFail("expected an SSHError", file: file, line: line)
        } catch let error as SSHError {
            return error
        } catch {
            XCTFail("expected an SSHError, got \(error)", file: file, line: line)
        }
        return nil
    }

    /// A fresh ed25519 public key as a known_hosts line has it ("ssh-ed25519 AAAA…"): a key that
    /// is not the host's.
    public func impostorHostKey() throws -> String {
        let path = NSTemporaryDirectory() + "ferry-impostor-\(UUID().uuidString)"
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path])
        defer { for p in [path, path + ".pub"] { try? FileManager.default.removeItem(atPath: p) } }
        return try String(contentsOfFile: path + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
    }

    public func temporaryFile(_ contents: String = "") -> String {
        let path = NSTemporaryDirectory() + "ferry-test-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(contents.utf8))
        addTeardownBlock {
            for p in [path, path + ".old"] { try? FileManager.default.removeItem(atPath: p) }  // ssh-keygen -H leaves .old
        }
        return path
    }
}
