import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Deploys through jump hosts, in-process (no ssh binary): targets are named by names that only
/// the jump host's private /etc/hosts resolves, so a success proves the hop.
final class JumpHostTests: XCTestCase {
    nonisolated(unsafe) static var harness: TestHostHarness?
    nonisolated(unsafe) static var jump1: TestHost!
    nonisolated(unsafe) static var jump2: TestHost!
    nonisolated(unsafe) static var targets: [TestHost] = []

    var work: String!
    var fleetFile: String { work + "/deployments/fleet.toml" }
    var knownHosts: String { work + "/known_hosts" }

    override class func tearDown() {
        harness?.shutdown()
        harness = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        if Self.harness == nil {
            let harness = try HostTestCase.makeHarness()
            Self.harness = harness
            Self.targets = try (1...8).map { try harness.startHost(name: "t\($0)") }
            // jump2 is reachable only as "jump-two" from jump1; each target only as "secret-N" from
            // jump1 and as "deep-N" from jump2.
            let ports = Self.targets.enumerated()
            var names1 = Dictionary(uniqueKeysWithValues: ports.map { ("secret-\($0.offset + 1)", "127.0.0.1") })
            names1["jump-two"] = "127.0.0.1"
            Self.jump2 = try harness.startHost(name: "jump2", names: Dictionary(uniqueKeysWithValues: ports.map { ("deep-\($0.offset + 1)", "127.0.0.1") }))
            Self.jump1 = try harness.startHost(name: "jump1", names: names1)
        }
        for host in Self.targets + [Self.jump1!, Self.jump2!] { host.clearVarSrc() }
        work = NSTemporaryDirectory() + "ferry-jump-test-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: DeployCommandTests.repository + "/deployments", toPath: work + "/deployments")
        var fixture = TreeFixture(seed: 13)
        try fixture.makeLNBitsTree(at: work + "/lnbits")
        // The jump hosts by address and port; the targets by the names only the jump hosts know.
        var lines = try String(contentsOfFile: Self.harness!.knownHostsFile, encoding: .utf8)
        for (i, t) in Self.targets.enumerated() {
            let key = try t.hostPublicKey("ed25519")
            lines += "[secret-\(i + 1)]:\(t.port) \(key)\n[deep-\(i + 1)]:\(t.port) \(key)\n"
        }
        lines += "[jump-two]:\(Self.jump2.port) \(try Self.jump2.hostPublicKey("ed25519"))\n"
        try lines.write(toFile: knownHosts, atomically: true, encoding: .utf8)
    }

    override func tearDown() {
        if let work { try? FileManager.default.removeItem(atPath: work) }
    }

    func writeFleet(jump: String, names: String, count: Int) throws {
        var toml = """
        shared = "shared.nix"
        [defaults]
        identity = "\(Self.harness!.clientKey(.ed25519))"
        known_hosts = "\(knownHosts)"
        jump = "\(jump)"
        [sources.lnbits-src]
        path = "../lnbits"
        exclude = [".git"]
        [sources.nixos-config]
        rendered = true

        """
        for (i, t) in Self.targets.prefix(count).enumerated() {
            toml += "[hosts.h\(i + 1)]\naddress = \"\(names)-\(i + 1)\"\nport = \(t.port)\n"
        }
        try toml.write(toFile: fleetFile, atomically: true, encoding: .utf8)
    }

    func logins(_ host: TestHost) -> Int {
        ((try? String(contentsOfFile: host.directory + "/sshd.log", encoding: .utf8)) ?? "").components(separatedBy: "Accepted publickey").count - 1
    }

    func assertMirrored(_ host: TestHost, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "--itemize-changes", "--exclude=.git",
                                 work + "/lnbits/", host.varSrc + "/lnbits-src/"])
        XCTAssertEqual(r.output, "", "rsync oracle on \(host.name)", file: file, line: line)
    }

    func testDeployThroughOneJumpHostToANameOnlyItKnows() throws {
        try writeFleet(jump: "root@127.0.0.1:\(Self.jump1.port)", names: "secret", count: 1)
        let direct = try FerryBinary.run(["deploy", "-f", fleetFile, "h1", "--jump", "none", "--connect-timeout", "3"])
        XCTAssertNotEqual(direct.status, 0, "secret-1 does not resolve here: \(direct.stdout)")
        let before = logins(Self.jump1)
        let r = try FerryBinary.run(["deploy", "-f", fleetFile, "h1"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("h1 | connect: root@secret-1:\(Self.targets[0].port)"), r.stdout)
        try assertMirrored(Self.targets[0])
        XCTAssertEqual(logins(Self.jump1) - before, 1, "the lock and work sessions share one jump login")
        let shown = try FerryBinary.run(["config", "-f", fleetFile, "h1"])
        XCTAssertTrue(shown.stdout.contains("proxyjump root@127.0.0.1:\(Self.jump1.port)") && shown.stdout.contains("# fleet.toml [defaults]"), shown.stdout)
    }

    /// Ctrl-C while a target floods output through the jump host: exit 130, not a hang and not a
    /// death by signal (the relay may still hold data for the closed session's socket). Before
    /// 57517f8 ferry never noticed the Ctrl-C (see DeadPeerAndCancelTests).
    func testInterruptingAFloodThroughAJumpHostExits130() throws {
        try writeFleet(jump: "root@127.0.0.1:\(Self.jump1.port)", names: "secret", count: 1)
        for round in 1...5 {
            let process = try FerryBinary.interrupted(["exec", "-f", fleetFile, "h1", "--", "cat", "/dev/zero"],
                                                      after: UInt32(600_000 + round * 100_000))
            XCTAssertEqual(process.terminationReason, .exit, "round \(round): ferry died of signal \(process.terminationStatus)")
            XCTAssertEqual(process.terminationStatus, 130, "round \(round)")
        }
    }

    func testAChainOfTwoJumpHosts() throws {
        try writeFleet(jump: "root@127.0.0.1:\(Self.jump1.port),root@jump-two:\(Self.jump2.port)", names: "deep", count: 1)
        let r = try FerryBinary.run(["deploy", "-f", fleetFile, "h1", "--sync-only"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        try assertMirrored(Self.targets[0])
    }

    func testAWrongJumpHostKeyIsRefusedWithItsFingerprint() throws {
        try writeFleet(jump: "root@127.0.0.1:\(Self.jump1.port)", names: "secret", count: 1)
        // The jump host's line holds another host's key.
        var text = try String(contentsOfFile: knownHosts, encoding: .utf8)
        text = text.split(separator: "\n").filter { !$0.hasPrefix("[127.0.0.1]:\(Self.jump1.port) ") }.joined(separator: "\n") + "\n"
        text += "[127.0.0.1]:\(Self.jump1.port) \(try Self.jump2.hostPublicKey("ed25519"))\n"
        try text.write(toFile: knownHosts, atomically: true, encoding: .utf8)
        let fingerprint = try Command.check(["ssh-keygen", "-lf", Self.jump1.directory + "/etc/ssh_host_ed25519_key.pub"]).output.split(separator: " ")[1]
        let r = try FerryBinary.run(["deploy", "-f", fleetFile, "h1"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(String(fingerprint)), "names the jump host's key: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED for [127.0.0.1]:\(Self.jump1.port)"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: Self.targets[0].varSrc), [], "nothing reached the target")
    }

    /// When the jump host's session dies, what ran through it fails, naming the jump host.
    func testALostJumpHostFailsTheHostsBehindItWithItsCause() throws {
        try writeFleet(jump: "root@127.0.0.1:\(Self.jump1.port)", names: "secret", count: 2)
        let out = NSTemporaryDirectory() + "ferry-jump-out-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FerryBinary.path())
        process.arguments = ["exec", "-f", fleetFile, "h1", "h2", "--", "sleep", "29.5"]
        let handle = FileHandle(forWritingAtPath: out)!
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        // The targets' commands outlive the dropped connections (no terminal): end them.
        defer { _ = try? Command.run(["pkill", "-f", "^sleep 29.5"]) }
        let deadline = Date().addingTimeInterval(20)
        while (try Command.run(["pgrep", "-fc", "^sleep 29.5"]).output.trimmingCharacters(in: .whitespacesAndNewlines)) != "2" && Date() < deadline { usleep(50_000) }
        let started = Date()
        Self.jump1.killSessions()
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 1, text)
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "not the command's 29.5 s")
        for h in ["h1", "h2"] {
            XCTAssertTrue(text.contains("\(h) | ") && text.contains("the jump host root@127.0.0.1:\(Self.jump1.port) failed"), "\(h): \(text)")
        }
    }

    func testEightHostsBehindOneJumpHostShareOneLogin() throws {
        try writeFleet(jump: "root@127.0.0.1:\(Self.jump1.port)", names: "secret", count: 8)
        let before = logins(Self.jump1)
        let r = try FerryBinary.run(["deploy", "-f", fleetFile, "--sync-only", "--jobs", "8"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        for t in Self.targets { try assertMirrored(t) }
        XCTAssertEqual(logins(Self.jump1) - before, 1, "one jump login for the whole fleet")
    }
}
