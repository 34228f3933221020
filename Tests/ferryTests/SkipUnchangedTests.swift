import FerryDeploy
import FerryTarget
import FerryTestSupport
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `--skip-unchanged`: a host whose every rebuild input is what its last successful rebuild read
/// is not rebuilt; each input changed alone brings the rebuild back.
extension DeployCommandTests {
    func testARebuildIsSkippedOnlyWhileNothingItReadsChanged() throws {
        let g = try harness.startHost(name: "skip", environment: ["NIX_PATH=nixpkgs=/root/channels/nixos:/root/channels"])
        let root = g.directory + "/root"
        for d in ["channels", "nixpkgs-a", "nixpkgs-b"] { try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true) }
        XCTAssertEqual(symlink("/root/nixpkgs-a", root + "/channels/nixos"), 0)
        try "{ }\n".write(toFile: root + "/extra.nix", atomically: true, encoding: .utf8)
        let work = try makeWork(port: g.port)
        try setDefaults(work, "extra_inputs = [\"/root/extra.nix\"]")
        let first = try deploy(work)
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        var base = try record(varSrc: g.varSrc)
        XCTAssertEqual(base.inputs?["file:/etc/nixos/hardware-configuration.nix"]?.count, 64, "\(base.inputs ?? [:])")
        XCTAssertEqual(base.inputs?["nixpath:nixpkgs=/root/channels/nixos"], "/root/nixpkgs-a")

        func skipped(_ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let before = g.activations().count
            let run = try deploy(work, ["--skip-unchanged", "--verbose"])
            XCTAssertEqual(run.status, 0, "\(what): " + run.stdout + run.stderr, file: file, line: line)
            XCTAssertTrue(run.stdout.contains("alpha | unchanged: rebuild skipped (same inputs as deploy \(base.id))"), "\(what): " + run.stdout, file: file, line: line)
            XCTAssertEqual(g.activations().count, before, "\(what): nothing activated: " + run.stdout, file: file, line: line)
        }
        func rebuilt(_ what: String, because: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let before = g.activations().count
            let run = try deploy(work, ["--skip-unchanged"])
            XCTAssertEqual(run.status, 0, "\(what): " + run.stdout + run.stderr, file: file, line: line)
            XCTAssertTrue(run.stdout.contains("alpha | rebuild needed: \(because)"), "\(what): " + run.stdout, file: file, line: line)
            XCTAssertGreaterThan(g.activations().count, before, "\(what): rebuilt", file: file, line: line)
            base = try record(varSrc: g.varSrc)
            try skipped("after " + what, file: file, line: line)
        }

        try skipped("nothing changed")
        let verbose = try deploy(work, ["--skip-unchanged", "--verbose"])
        XCTAssertTrue(verbose.stdout.contains("alpha |   compared: file:/etc/nixos/hardware-configuration.nix "), verbose.stdout)
        XCTAssertTrue(verbose.stdout.contains("alpha |   compared: nixpath:nixpkgs=/root/channels/nixos /root/nixpkgs-a"), verbose.stdout)
        XCTAssertEqual(try record(sync: true, varSrc: g.varSrc).outcome?.result, .skipped)
        XCTAssertEqual(try record(sync: true, varSrc: g.varSrc).sameAs, base.id)
        let status = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha"])
        XCTAssertTrue(status.stdout.contains("(rebuild skipped, same inputs as \(base.id))"), status.stdout)

        try "changed\n".write(toFile: work.lnbits + "/lnbits/skip.py", atomically: false, encoding: .utf8)
        try rebuilt("a source file", because: "source lnbits-src")
        try writeFleet(work, port: g.port, lnbitsPort: 5003)
        try setDefaults(work, "extra_inputs = [\"/root/extra.nix\"]")
        try rebuilt("a config var", because: "source nixos-config")
        let earlier = try XCTUnwrap(try record(varSrc: g.varSrc).outcome?.systemBefore)
        XCTAssertEqual(try Command.run(["ln", "-sfn", earlier, g.directory + "/run/current-system"]).status, 0)
        try rebuilt("the running system switched by hand", because: "the running system")
        try "# edited\n".write(toFile: g.directory + "/etc-nixos/hardware-configuration.nix", atomically: false, encoding: .utf8)
        try rebuilt("hardware-configuration.nix", because: "file:/etc/nixos/hardware-configuration.nix")
        try "# edited\n".write(toFile: g.directory + "/etc-nix/nix.conf", atomically: false, encoding: .utf8)
        try rebuilt("nix.conf", because: "file:/etc/nix/nix.conf")
        try "!include extra.conf\n".write(toFile: g.directory + "/etc-nix/nix.conf", atomically: false, encoding: .utf8)
        try "max-jobs = 1\n".write(toFile: g.directory + "/etc-nix/extra.conf", atomically: false, encoding: .utf8)
        try rebuilt("nix.conf's include", because: "file:/etc/nix/extra.conf, file:/etc/nix/nix.conf")
        try "max-jobs = 2\n".write(toFile: g.directory + "/etc-nix/extra.conf", atomically: false, encoding: .utf8)
        try rebuilt("an included file", because: "file:/etc/nix/extra.conf")
        try "{\"flakes\":[],\"version\":2}\n".write(toFile: g.directory + "/etc-nix/registry.json", atomically: false, encoding: .utf8)
        try rebuilt("registry.json", because: "file:/etc/nix/registry.json")
        XCTAssertEqual(try Command.run(["ln", "-sfn", "/root/nixpkgs-b", root + "/channels/nixos"]).status, 0)
        try rebuilt("a channel's target", because: "nixpath:nixpkgs=/root/channels/nixos")
        try "{ x = 1; }\n".write(toFile: root + "/extra.nix", atomically: false, encoding: .utf8)
        try rebuilt("an extra_inputs file", because: "file:/root/extra.nix")

        // What cannot be read never matches: rebuilt every time.
        try FileManager.default.removeItem(atPath: root + "/extra.nix")
        try FileManager.default.createDirectory(atPath: root + "/extra.nix", withIntermediateDirectories: false)
        for _ in 0..<2 {
            let run = try deploy(work, ["--skip-unchanged"])
            XCTAssertTrue(run.stdout.contains("rebuild needed: file:/root/extra.nix (unreadable)"), run.stdout)
        }
        try FileManager.default.removeItem(atPath: root + "/extra.nix")
        let fixed = try deploy(work)
        XCTAssertEqual(fixed.status, 0)
        base = try record(varSrc: g.varSrc)
        try skipped("the extra input is a file again (missing)")

        // A failed rebuild is never a base.
        try "failing\n".write(toFile: work.lnbits + "/lnbits/fail.py", atomically: false, encoding: .utf8)
        try g.setStandInFailure("stand-in: failing on request")
        XCTAssertEqual(try deploy(work).status, 1)
        try g.setStandInFailure(nil)
        let failedID = try record(varSrc: g.varSrc).id
        try rebuilt("after a failed rebuild", because: "the last rebuild (\(failedID)) did not succeed")

        // skip_unchanged in fleet.toml (editing fleet.toml changes the rendered tree's mtime only:
        // not an input); --rebuild overrides it. JSON says "unchanged".
        try setDefaults(work, "skip_unchanged = true")
        try skipped("skip_unchanged = true")
        let json = try deploy(work, ["--json"])
        XCTAssertTrue(json.stdout.contains(#""result":"unchanged""#), json.stdout)
        XCTAssertTrue(json.stdout.contains(#""state":"skipped""#), json.stdout)
        try validateAgainstSchema(json.stdout, "a skipped deploy")
        let before = g.activations().count
        let forced = try deploy(work, ["--rebuild"])
        XCTAssertEqual(forced.status, 0, forced.stdout + forced.stderr)
        XCTAssertFalse(forced.stdout.contains("unchanged: rebuild skipped"), forced.stdout)
        XCTAssertGreaterThan(g.activations().count, before)
    }
}
