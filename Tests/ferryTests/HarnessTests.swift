import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class HarnessTests: HostTestCase {
    /// Killing the process that started the hosts (even with SIGKILL) takes every sshd with it.
    func testHostsDieWithTheirOwner() throws {
        _ = try harness  // prerequisites
        let marker = temporaryFile()
        let sandbox = Process()
        sandbox.executableURL = URL(fileURLWithPath: FerryBinary.path("ferry-sandbox"))
        let duration = "60.\(Int.random(in: 1000...9999))"
        sandbox.arguments = ["--hosts", "2", "--", "sh", "-c", "echo $FERRY_SANDBOX_DIRS > \(marker); exec sleep \(duration)"]
        sandbox.standardOutput = FileHandle.nullDevice
        try sandbox.run()
        var dirs: [String] = []
        for _ in 0..<100 where dirs.isEmpty {
            usleep(100_000)
            dirs = (try? String(contentsOfFile: marker, encoding: .utf8))?.split(whereSeparator: \.isWhitespace).map(String.init) ?? []
        }
        XCTAssertEqual(dirs.count, 2)
        let before = processes(mentioning: dirs)
        XCTAssertGreaterThanOrEqual(before.count, 2, "an sshd per host")
        kill(sandbox.processIdentifier, SIGKILL)
        sandbox.waitUntilExit()
        var left = before
        for _ in 0..<50 where !left.isEmpty {
            usleep(100_000)
            left = processes(mentioning: dirs)
        }
        XCTAssertEqual(left, [], "sshd processes outlived their owner")
        let command = try Command.run(["pgrep", "-f", "^sleep \(duration)$"])
        XCTAssertEqual(command.output, "", "the sandbox's command outlived it")
        for dir in dirs { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: dir).deletingLastPathComponent().deletingLastPathComponent().path) }
    }

    func testStandInNixosRebuildChecksWhatARealOneNeeds() throws {
        let host = try self.host
        let session = try connect()
        let config = ["-I", "nixos-config=/var/src/nixos-config/configuration.nix"]
        let script = try String(contentsOfFile: host.currentSystem + "/sw/bin/nixos-rebuild", encoding: .utf8)
        XCTAssertTrue(script.contains("STAND-IN for nixos-rebuild"), "labelled as a stand-in")
        let unit = try String(contentsOfFile: host.currentSystem + "/sw/bin/systemd-run", encoding: .utf8)
        XCTAssertTrue(unit.contains("STAND-IN for systemd-run"), "labelled as a stand-in")

        let noTree = try run(session, ["nixos-rebuild", "switch"] + config)
        XCTAssertEqual(noTree.status, .exited(1))
        XCTAssertTrue(noTree.stderr.contains("/var/src/lnbits-src/flake.nix"), noTree.stderr)

        let tree = host.varSrc + "/lnbits-src"
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        for f in ["flake.nix", "flake.lock", "pyproject.toml", "uv.lock"] { _ = FileManager.default.createFile(atPath: "\(tree)/\(f)", contents: Data()) }
        let noPackage = try run(session, ["nixos-rebuild", "switch"] + config)
        XCTAssertTrue(noPackage.stderr.contains("/var/src/lnbits-src/lnbits'"), "the service reads lnbits/ at run time: \(noPackage.stderr)")
        try FileManager.default.createDirectory(atPath: tree + "/lnbits", withIntermediateDirectories: true)
        let noConfig = try run(session, ["nixos-rebuild", "switch"] + config)
        XCTAssertEqual(noConfig.status, .exited(1))
        XCTAssertTrue(noConfig.stderr.contains("configuration.nix' was not found"), noConfig.stderr)

        try FileManager.default.createDirectory(atPath: host.varSrc + "/nixos-config", withIntermediateDirectories: true)
        try "{ broken = ; }".write(toFile: host.varSrc + "/nixos-config/configuration.nix", atomically: true, encoding: .utf8)
        let broken = try run(session, ["nixos-rebuild", "switch"] + config)
        XCTAssertEqual(broken.status, .exited(1))
        XCTAssertTrue(broken.stderr.contains("syntax error"), broken.stderr)

        try "{ ... }: { networking.hostName = \"a\"; }".write(toFile: host.varSrc + "/nixos-config/configuration.nix", atomically: true, encoding: .utf8)
        for op in ["switch", "boot", "test", "dry-activate", "build"] {
            let ok = try run(session, ["nixos-rebuild", op] + config)
            XCTAssertEqual(ok.status, .exited(0), "\(op): \(ok.stderr)")
            XCTAssertTrue(ok.stdout.contains("stand-in: \(op) of /var/src/nixos-config/configuration.nix done"), ok.stdout)
        }

        try host.setStandInFailure("error: builder for '/nix/store/…-lnbits.drv' failed (requested by the test)")
        let failing = try run(session, ["nixos-rebuild", "switch"] + config)
        XCTAssertEqual(failing.status, .exited(1))
        XCTAssertTrue(failing.stderr.contains("requested by the test"))
        try host.setStandInFailure(nil)

        XCTAssertEqual(try run(session, ["nixos-rebuild"]).status, .exited(1), "no operation")
        let calls = host.standInCalls()
        XCTAssertEqual(calls.first, "nixos-rebuild switch -I nixos-config=/var/src/nixos-config/configuration.nix")
        XCTAssertEqual(calls.count, 11)
        XCTAssertEqual(calls.last, "nixos-rebuild")
    }

    private func processes(mentioning dirs: [String]) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = Int32(entry),
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let text = String(decoding: cmdline, as: UTF8.self)
            return dirs.contains { text.contains($0) } ? pid : nil
        }
    }
}
