import Foundation
import XCTest

final class NixCommandTests: XCTestCase {
    static let deployments = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deployments").path

    func testRenderWritesEachHostsTree() throws {
        let out = NSTemporaryDirectory() + "ferry-render-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try FerryBinary.run(["render", "-f", Self.deployments + "/fleet.toml", "--out", out, "@eu"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, """
            alpha: \(out)/alpha (7 files, domain lnbits.example.org)
            gamma: \(out)/gamma (7 files, domain pay.example.net)

            """)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), ["alpha", "gamma"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/gamma/configuration.nix"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/gamma/fleet.toml"))
    }

    func testRenderErrorsNameTheFileAndKey() throws {
        let dir = NSTemporaryDirectory() + "ferry-badfleet-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{ domain = \"x.org\"; }".write(toFile: dir + "/shared.nix", atomically: true, encoding: .utf8)
        try "shared = \"shared.nix\"\n[hosts.web_1]\naddress = \"10.0.0.1\"\n".write(toFile: dir + "/fleet.toml", atomically: true, encoding: .utf8)
        let r = try FerryBinary.run(["render", "-f", dir + "/fleet.toml", "--out", dir + "/out"])
        XCTAssertEqual(r.status, 2, "an inventory error exits 2")
        XCTAssertEqual(r.stderr, "ferry: \(dir)/fleet.toml: hosts.web_1: 'web_1' is not a valid NixOS host name (letters, digits and hyphens, at most 63, no hyphen at either end)\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
    }

    /// Issue 8, item 9: --out may not be the fleet's folder, an ancestor of it or a source; a
    /// folder inside the fleet is fine and never rendered into the trees; errors in ferry's words.
    func testRenderOutIsChecked() throws {
        let dir = NSTemporaryDirectory() + "ferry-renderout-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: Self.deployments, toPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for bad in [dir, (dir as NSString).deletingLastPathComponent] {
            let r = try FerryBinary.run(["render", "-f", dir + "/fleet.toml", "--out", bad])
            XCTAssertEqual(r.status, 2, bad)
            XCTAssertTrue(r.stderr.contains("is the fleet's folder or contains it"), r.stderr)
        }
        let inside = try FerryBinary.run(["render", "-f", dir + "/fleet.toml", "--out", dir + "/ferry-rendered", "alpha"])
        XCTAssertEqual(inside.status, 0, inside.stderr)
        let again = try FerryBinary.run(["render", "-f", dir + "/fleet.toml", "--out", dir + "/ferry-rendered", "alpha"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/ferry-rendered/alpha/ferry-rendered"), "the output is left out of the render")
        try "x".write(toFile: dir + "/blocker", atomically: true, encoding: .utf8)
        let blocked = try FerryBinary.run(["render", "-f", dir + "/fleet.toml", "--out", dir + "/blocker/out", "alpha"])
        XCTAssertEqual(blocked.status, 1)
        XCTAssertTrue(blocked.stderr.hasPrefix("ferry: cannot write ") && blocked.stderr.contains("is a file, not a folder"), blocked.stderr)
        XCTAssertFalse(blocked.stderr.contains("NSError") || blocked.stderr.contains("Cocoa"), blocked.stderr)
    }

    func testEvalPrintsLikeNixInstantiate() throws {
        let shared = Self.deployments + "/shared.nix"
        XCTAssertEqual(try FerryBinary.run(["eval", shared, "--attr", "domain"]).stdout, "\"lnbits.example.org\"\n")
        XCTAssertEqual(try FerryBinary.run(["eval", shared, "--json"]).stdout,
                       "{\"domain\":\"lnbits.example.org\",\"ports\":{\"http\":80,\"https\":443},\"stateVersion\":\"24.05\"}\n")
        let bad = try FerryBinary.run(["eval", Self.deployments + "/config/lnbits.nix"])
        XCTAssertEqual(bad.status, 0, "a function evaluates to <LAMBDA>: \(bad.stderr)")
        XCTAssertEqual(bad.stdout, "<LAMBDA>\n")
        let missing = try FerryBinary.run(["eval", shared, "--attr", "nope"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("attribute 'nope' in selection path 'nope' not found"), missing.stderr)
    }
}
