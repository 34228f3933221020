@testable import FerryDeploy
import FerryTestSupport
import Foundation
import XCTest

/// The closure table from two real closures built offline with Debian's Nix: an upgrade, an added
/// and a removed package, a same-version rebuild whose size changed; `nix store diff-closures`
/// agrees on the version changes it prints.
final class ClosureDiffTests: XCTestCase {
    func nix(_ argv: [String]) throws -> String {
        var env = ProcessInfo.processInfo.environment
        env["NIX_CONFIG"] = "build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command"
        let r = try Command.run(argv, environment: env)
        guard r.status == 0 else { throw TestHostError.missingPrerequisite("\(argv.joined(separator: " ")): \(r.errorOutput)") }
        return r.output
    }

    /// Store path → size, for the closure of `path`.
    func closure(_ path: String) throws -> [String: Int64] {
        let paths = try nix(["nix-store", "-qR", path]).split(separator: "\n").map(String.init)
        let sizes = try nix(["nix-store", "-q", "--size"] + paths).split(separator: "\n").map { Int64($0)! }
        return Dictionary(uniqueKeysWithValues: zip(paths, sizes))
    }

    func testARealClosurePair() throws {
        do { _ = try Command.which("nix-build") } catch {
            if ProcessInfo.processInfo.environment["CI"] == "true" { throw error }
            throw XCTSkip("\(error)")
        }
        let expr = """
        { side }: let
          mk = name: text: deps: derivation {
            inherit name; system = builtins.currentSystem; builder = "/bin/sh";
            args = [ "-c" "echo '${text}' > $out; for d in ${toString deps}; do echo $d >> $out; done" ];
          };
          glibc = mk "glibc-2.37" "glibc" [];
          a = side == "a";
          lnbits = mk (if a then "lnbits-1.2.0" else "lnbits-1.3.0") "lnbits code" [ glibc ];
          webui = mk "webui-2.0" (if a then "v1" else builtins.concatStringsSep "" (builtins.genList (_: "0123456789") 1000)) [];
          extra = if a then [ (mk "oldtool-1.0" "old" []) ] else [ (mk "newtool-0.5" "new" [ glibc ]) ];
        in mk "nixos-system-alpha-24.05" side ([ lnbits webui glibc ] ++ extra)
        """
        let file = NSTemporaryDirectory() + "ferry-closure-\(UUID().uuidString).nix"
        try expr.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let a = try nix(["nix-build", "--no-out-link", "--argstr", "side", "a", file]).trimmingCharacters(in: .whitespacesAndNewlines)
        let b = try nix(["nix-build", "--no-out-link", "--argstr", "side", "b", file]).trimmingCharacters(in: .whitespacesAndNewlines)
        let old = try closure(a), new = try closure(b)
        let diff = ClosureDiff(old: old, new: new)
        let rows = Dictionary(uniqueKeysWithValues: diff.rows.map { ($0.name, $0) })
        XCTAssertEqual(Set(rows.keys), ["lnbits", "webui", "oldtool", "newtool", "nixos-system-alpha"], "\(diff.rows)")
        XCTAssertEqual(rows["lnbits"]?.kind, .upgraded)
        XCTAssertEqual(rows["lnbits"].map { [$0.oldVersions, $0.newVersions] }, [["1.2.0"], ["1.3.0"]])
        XCTAssertEqual(rows["oldtool"]?.kind, .removed)
        XCTAssertEqual(rows["newtool"]?.kind, .added)
        XCTAssertEqual(rows["webui"]?.kind, .rebuilt)
        XCTAssertEqual(rows["webui"]?.rebuilt, true)
        XCTAssertEqual(rows["nixos-system-alpha"]?.kind, .rebuilt)
        XCTAssertGreaterThan(rows["webui"]?.sizeDelta ?? 0, 5000, "the rebuilt webui grew by about 10 KB")
        XCTAssertEqual(diff.sizeDelta, new.values.reduce(0, +) - old.values.reduce(0, +))
        XCTAssertEqual(diff.rows.reduce(0) { $0 + $1.sizeDelta }, diff.sizeDelta, "unchanged paths (glibc) add nothing")
        XCTAssertEqual(ClosureDiff.line(rows["lnbits"]!), "lnbits: 1.2.0 → 1.3.0, +0 B")
        let json = String(decoding: try JSONEncoder().encode(rows["lnbits"]!), as: UTF8.self)
        XCTAssertTrue(json.contains(#""old_versions":["1.2.0"]"#) && json.contains(#""size_delta":0"#), json)
        // Nix's own view of the same pair names the version changes alike.
        let theirs = try nix(["nix", "store", "diff-closures", a, b])
        XCTAssertTrue(theirs.contains("lnbits: 1.2.0 → 1.3.0"), theirs)
        XCTAssertTrue(theirs.contains("newtool: ∅ → 0.5"), theirs)
        XCTAssertTrue(theirs.contains("oldtool: 1.0 → ∅"), theirs)
    }
}
