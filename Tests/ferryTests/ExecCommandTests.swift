import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class ExecCommandTests: HostTestCase {
    func options() throws -> [String] {
        ["-i", try harness.clientKey(.ed25519), "--known-hosts", try harness.knownHostsFile]
    }

    func target() throws -> String { "root@127.0.0.1:\(try host.port)" }

    func testExitStatusAndSeparateStreams() throws {
        let r = try FerryBinary.run(["exec", try target()] + (try options()) + ["--", "sh", "-c", "echo out; echo err >&2; exit 3"])
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual(r.stdout, "out\n")
        XCTAssertEqual(r.stderr, "err\n")
    }

    func testTargetForms() throws {
        let port = try host.port
        for form in ["127.0.0.1:\(port)", "ssh://root@127.0.0.1:\(port)", "root@[127.0.0.1]:\(port)"] {
            let r = try FerryBinary.run(["exec", form] + (try options()) + ["--", "echo", "ok"])
            XCTAssertEqual(r.stdout, "ok\n", "\(form): \(r.stderr)")
        }
    }

    /// Without a fleet file a plain name is what ssh takes it for: an ssh_config Host (its
    /// HostName, Port and User apply); an IdentityFile there that does not exist is skipped, as
    /// OpenSSH skips it.
    func testAnSSHConfigAliasIsATargetWithoutAFleet() throws {
        let dir = NSTemporaryDirectory() + "ferry-alias-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        Host myalias
          HostName 127.0.0.1
          Port \(try host.port)
          User root
          IdentityFile /nonexistent/key
          IdentityFile \(try harness.clientKey(.ed25519))
          UserKnownHostsFile \(try harness.knownHostsFile)

        """.write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        let r = try FerryBinary.run(executable: "/bin/sh", ["-c", "cd \"$1\" && exec \"$2\" exec -F config myalias -- sh -c 'echo ok; exit 5'", "sh", dir, FerryBinary.path()])
        XCTAssertEqual(r.status, 5, r.stderr)
        XCTAssertEqual(r.stdout, "ok\n")
        let tag = try FerryBinary.run(executable: "/bin/sh", ["-c", "cd \"$1\" && exec \"$2\" exec @web -- true", "sh", dir, FerryBinary.path()])
        XCTAssertEqual(tag.status, 2)
        XCTAssertTrue(tag.stderr.contains("'@web' selects inventory hosts, and no fleet file is in effect"), tag.stderr)
    }

    func testArgumentsAreQuotedNotPasted() throws {
        let r = try FerryBinary.run(["exec", try target()] + (try options()) + ["--", "printf", "[%s]", "a b", "$(id)", "it's"])
        XCTAssertEqual(r.stdout, "[a b][$(id)][it's]")
    }

    func testPipedStdinIsForwarded() throws {
        let r = try FerryBinary.run(["exec", try target()] + (try options()) + ["--", "wc", "-c"], input: "twelve bytes")
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "12")
    }

    func testRemoteSignalGives128PlusSignal() throws {
        let r = try FerryBinary.run(["exec", try target()] + (try options()) + ["--", "sh", "-c", "kill -TERM $$"])
        XCTAssertEqual(r.status, 143)
        XCTAssertTrue(r.stderr.contains("remote command killed by signal TERM"), r.stderr)
    }

    func testUsageErrors() throws {
        let bad = try FerryBinary.run(["exec", "root@:22", "--", "true"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("bad target 'root@:22'"), bad.stderr)
        let noCommand = try FerryBinary.run(["exec", try target()])
        XCTAssertEqual(noCommand.status, 2)
        XCTAssertTrue(noCommand.stderr.contains("give the command after --"), noCommand.stderr)
    }

    func testConnectionFailuresExit255WithTheReason() throws {
        let emptyKnownHosts = temporaryFile()
        let unknown = try FerryBinary.run(["exec", try target(), "-i", try harness.clientKey(.ed25519),
                                           "--known-hosts", emptyKnownHosts, "--", "true"])
        XCTAssertEqual(unknown.status, 255)
        XCTAssertTrue(unknown.stderr.hasPrefix("ferry: \(try target()): host key verification failed"), unknown.stderr)
        XCTAssertTrue(unknown.stderr.contains("SHA256:"), unknown.stderr)

        let accepted = try FerryBinary.run(["exec", try target(), "-i", try harness.clientKey(.ed25519),
                                            "--known-hosts", emptyKnownHosts, "--host-key-policy", "accept-new", "--", "true"])
        XCTAssertEqual(accepted.status, 0, accepted.stderr)
        XCTAssertTrue(accepted.stderr.contains("Permanently added '[127.0.0.1]:\(try host.port)'"), accepted.stderr)

        let wrongKey = try FerryBinary.run(["exec", try target(), "-i", try harness.clientKey(.unauthorized),
                                            "--known-hosts", try harness.knownHostsFile, "--", "true"])
        XCTAssertEqual(wrongKey.status, 255)
        XCTAssertTrue(wrongKey.stderr.contains("authentication failed; tried:"), wrongKey.stderr)
    }

    func testInterruptClosesTheChannelAndExits130() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FerryBinary.path())
        process.arguments = ["exec", try target()] + (try options()) + ["--", "sleep", "30"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        usleep(700_000)
        let start = Date()
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(start), 15, "never the command's 30 s")
        XCTAssertEqual(process.terminationStatus, 130)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(stderr.contains("interrupted"), stderr)
    }
}
