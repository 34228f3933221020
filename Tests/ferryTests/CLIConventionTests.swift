import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 7: one error style, one exit-code table, raw argument bytes, escaped remote text,
/// and a killed sync whose lock goes with it.
final class CLIConventionTests: HostTestCase {
    func options() throws -> [String] {
        ["-i", try harness.clientKey(.ed25519), "--known-hosts", try harness.knownHostsFile]
    }

    func target() throws -> String { "root@127.0.0.1:\(try host.port)" }

    func scratch() -> String {
        let dir = NSTemporaryDirectory() + "ferry-cli-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func testVersionAndUsageErrorsExit2WithTheSubcommandsUsage() throws {
        let version = try FerryBinary.run(["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertFalse(version.stdout.isEmpty)
        let bad = try FerryBinary.run(["sync", "--no-such-flag", "a", "b"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("ferry sync"), bad.stderr)
        let path = try FerryBinary.run(["exec", "ssh://root@127.0.0.1:\(try host.port)/var/src", "--", "true"])
        XCTAssertEqual(path.status, 2)
        XCTAssertTrue(path.stderr.contains("exec takes a host, not a path"), path.stderr)
        XCTAssertTrue(path.stderr.hasPrefix("ferry: "), path.stderr)
        XCTAssertFalse(path.stderr.contains("SSHTargetError"), "no Swift type names: \(path.stderr)")
    }

    /// Bytes that are not UTF-8 reach the remote command as they are.
    func testNonUTF8ArgumentsArriveIntact() throws {
        let ferry = FerryBinary.path()
        let script = "exec \"$0\" exec \"$1\" -i \"$2\" --known-hosts \"$3\" -- printf %s \"$(printf '\\377\\376')\" | od -An -tx1"
        let r = try FerryBinary.run(executable: "/bin/sh", ["-c", script, ferry, try target(), try harness.clientKey(.ed25519), try harness.knownHostsFile])
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "ff fe", r.stderr)
    }

    func testExcludeValuesMayStartWithADash() throws {
        let src = scratch()
        try "x".write(toFile: src + "/-foo", atomically: false, encoding: .utf8)
        try "y".write(toFile: src + "/bar", atomically: false, encoding: .utf8)
        let r = try FerryBinary.run(["sync", src, "\(try target()):/var/src/dash", "--exclude", "-foo"] + (try options()))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/dash/-foo"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: try host.varSrc + "/dash/bar"))
    }

    /// 7.15: a hostile target's stderr cannot drive the operator's terminal.
    func testRemoteTextIsEscaped() throws {
        let src = scratch()
        try "x".write(toFile: src + "/f", atomically: false, encoding: .utf8)
        try host.setTool("tar", script: "#!/bin/sh\nprintf '\\033]0;owned\\007\\033[31mred\\n' >&2\nexit 1\n")
        defer { try? host.setTool("tar", script: nil) }
        let r = try FerryBinary.run(["sync", src, "\(try target()):/var/src/escape"] + (try options()))
        XCTAssertEqual(r.status, 1)
        XCTAssertFalse(r.stderr.contains("\u{1b}"), r.stderr)
        XCTAssertFalse(r.stderr.contains("\u{07}"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\\#033[31mred"), r.stderr)
        XCTAssertTrue(r.stderr.contains("applying the changes to /var/src/escape"), r.stderr)
    }

    func testAFloodOfErrorsIsSummarised() throws {
        let src = scratch()
        let dest = try host.varSrc + "/flood"
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        // 15 directories on the target, each holding an excluded file, each a file in the source.
        let r0 = try FerryBinary.run(["sync", src, "\(try target()):/var/src/flood"] + (try options()))
        XCTAssertEqual(r0.status, 0, r0.stderr)
        for i in 0..<15 {
            try FileManager.default.createDirectory(atPath: "\(dest)/d\(i)", withIntermediateDirectories: true)
            try "log".write(toFile: "\(dest)/d\(i)/x.log", atomically: false, encoding: .utf8)
            try "file".write(toFile: "\(src)/d\(i)", atomically: false, encoding: .utf8)
        }
        let r = try FerryBinary.run(["sync", src, "\(try target()):/var/src/flood", "--exclude", "*.log"] + (try options()))
        XCTAssertEqual(r.status, 1)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.contains("could not make way") }.count, 10, r.stderr)
        XCTAssertTrue(r.stderr.contains("… and 5 more like these"), r.stderr)
    }

    /// Starts `ferry sync SRC host:/var/src/NAME` and returns once its stream is under way (the
    /// stage exists, at most 2 s), with the stage's path.
    func startSyncAndWaitForTheStream(_ src: String, _ name: String) throws -> (Process, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FerryBinary.path())
        process.arguments = ["sync", src, "\(try target()):/var/src/\(name)"] + (try options())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let stage = try host.varSrc + "/.ferry/\(name)/stage"
        for _ in 0..<3_000 where !FileManager.default.fileExists(atPath: stage) { usleep(10_000) }
        return (process, stage)
    }

    /// 7.7: kill -9 of ferry mid-sync frees the lock (the remote holder ends with the channel);
    /// the next sync converges and no stage is left.
    func testKillNineMidSyncFreesTheLock() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 78)
        for i in 0..<40 { try fixture.write("\(src)/f\(i)", size: 1_000_000, text: false) }
        let (process, stage) = try startSyncAndWaitForTheStream(src, "killed")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let start = Date()
        var r = try FerryBinary.run(["sync", src, "\(try target()):/var/src/killed"] + (try options()))
        // The remote holder may need a moment to see the closed connection: a bounded retry.
        while r.status != 0 && r.stderr.contains("is running") && Date().timeIntervalSince(start) < 20 {
            usleep(100_000)
            r = try FerryBinary.run(["sync", src, "\(try target()):/var/src/killed"] + (try options()))
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 25)
        let oracle = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "-i", src + "/", try host.varSrc + "/killed/"])
        XCTAssertEqual(oracle.output, "")
        XCTAssertFalse(FileManager.default.fileExists(atPath: stage))
    }

    /// SIGINT and SIGTERM mid-sync: exit 130 / 143, the remote side ends and cleans up (no
    /// stage, no partial file, no lock), and the next sync converges.
    func testInterruptedSyncExits130Or143AndLeavesNothingBehind() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 79)
        for i in 0..<40 { try fixture.write("\(src)/f\(i)", size: 1_000_000, text: false) }
        for (signal, code) in [(SIGINT, Int32(130)), (SIGTERM, 143)] {
            let (process, stage) = try startSyncAndWaitForTheStream(src, "interrupted")
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, code, "signal \(signal)")
            // The remote side cleans up once its process group has the signal: polled, with a
            // generous bound for a loaded machine.
            let deadline = Date().addingTimeInterval(20)
            while FileManager.default.fileExists(atPath: stage) && Date() < deadline { usleep(20_000) }
            XCTAssertFalse(FileManager.default.fileExists(atPath: stage), "the stage is removed")
            var free = false
            while !free && Date() < deadline {
                free = try Command.run(["flock", "-n", try host.varSrc + "/.ferry/interrupted/lock", "true"]).status == 0
                if !free { usleep(20_000) }
            }
            XCTAssertTrue(free, "no lock is held")
        }
        let r = try FerryBinary.run(["sync", src, "\(try target()):/var/src/interrupted"] + (try options()))
        XCTAssertEqual(r.status, 0, r.stderr)
        let oracle = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "-i", src + "/", try host.varSrc + "/interrupted/"])
        XCTAssertEqual(oracle.output, "")
    }

    /// 7.18: a source given as a symlink to a directory is followed, as rsync follows `src/`.
    func testSourcePathEdges() throws {
        let src = scratch()
        try "x".write(toFile: src + "/f", atomically: false, encoding: .utf8)
        let link = src + "-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: src)
        defer { try? FileManager.default.removeItem(atPath: link) }
        let r = try FerryBinary.run(["sync", link, "\(try target()):/var/src/linked"] + (try options()))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: try host.varSrc + "/linked/f"))
        // A source that cannot be read is a local error: 2, and nothing is contacted or made there.
        for source in ["", "/nonexistent", src + "/f"] {
            let r = try FerryBinary.run(["sync", source, "\(try target()):/var/src/missing"] + (try options()))
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("ferry: cannot read the source folder '\(source)': "), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/.ferry/missing"))
    }

    /// Without -f in a folder that has no fleet file, the commands that need one say so plainly;
    /// a broken inventory names every problem, one line each.
    func testNoFleetFileHereAndEveryInventoryProblemOnItsOwnLine() throws {
        let dir = NSTemporaryDirectory() + "ferry-no-fleet-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for command in ["hosts", "render", "deploy", "diff", "status"] {
            let r = try FerryBinary.run(executable: "/bin/sh", ["-c", "cd \"$1\" && exec \"$2\" \(command)", "sh", dir, FerryBinary.path()])
            XCTAssertEqual(r.status, 2, "\(command): \(r.stderr)")
            XCTAssertEqual(r.stderr, "ferry: no fleet.toml or deployments/fleet.toml here; give one with -f\n", command)
        }
        try "{ domain = \"example.org\"; }".write(toFile: dir + "/shared.nix", atomically: true, encoding: .utf8)
        try "shared = \"shared.nix\"\n[hosts.a]\naddress = \"a.example\"\nuser = \"root;id\"\ntags = [\"\\u001b]0;T\\u0007\"]\n[hosts.b]\naddress = \"b.example\"\ndomain = \"a b\"\n"
            .write(toFile: dir + "/fleet.toml", atomically: true, encoding: .utf8)
        let r = try FerryBinary.run(["hosts", "-f", dir + "/fleet.toml"])
        XCTAssertEqual(r.status, 2)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 3, r.stderr)
        XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("ferry: \(dir)/fleet.toml: hosts.") }, r.stderr)
        XCTAssertTrue(r.stderr.contains("\"\\#033]0;T\\#007\" is not a tag"), r.stderr)
    }
}
