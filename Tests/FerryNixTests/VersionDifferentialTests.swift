import FerryNix
import FerryXCTestSupport
import Foundation
import XCTest

/// `NixVersion` against `builtins.parseDrvName` and `builtins.compareVersions` of Debian's Nix, on
/// generated names and versions (seeded), in one evaluation each.
final class VersionDifferentialTests: XCTestCase {
    func testAgreesWithNix() throws {
        try NixOracle.require()
        var rng = SplitMix64(seed: 0x7e25)
        let parts = ["0", "1", "2", "10", "01", "9", "2147483647", "2147483648", "99999999999", "pre", "rc", "alpha", "a", "b", "beta2", "x86_64", "", "unstable", "git"]
        let seps = [".", "-", "", "..", "-."]
        func version() -> String {
            (0..<Int(rng.next() % 4 + 1)).map { _ in parts[Int(rng.next() % UInt64(parts.count))] + seps[Int(rng.next() % UInt64(seps.count))] }.joined()
        }
        let words = ["lnbits", "nixos-system-alpha", "python3.11-fastapi", "glibc", "hello-world", "x", "gcc-wrapper", "a-b-c"]
        var pairs: [(String, String)] = [("1.2.0", "1.3.0"), ("1.0pre1", "1.0"), ("2.3a", "2.3.1"), ("1.0", "1.0.0"), ("", "1"), ("24.05", "24.05.20240101")]
        var names: [String] = ["lnbits-1.2.0", "nixos-system-alpha-24.05", "hello", "nix-2.8.0pre", "foo--1", "foo-", "-1", "a-B-1", "gcc-wrapper-12.2.0"]
        for _ in 0..<400 {
            pairs.append((version(), version()))
            names.append(words[Int(rng.next() % UInt64(words.count))] + "-" + version())
        }
        func nixString(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "$", with: "\\$") + "\"" }
        let compareExpr = "[" + pairs.map { "(builtins.compareVersions \(nixString($0.0)) \(nixString($0.1)))" }.joined(separator: " ") + "]"
        let compared = try XCTUnwrap(try NixOracle.evalJSON(compareExpr).json)
        let expected = try JSONDecoder().decode([Int].self, from: Data(compared.utf8))
        for (pair, nix) in zip(pairs, expected) {
            XCTAssertEqual(NixVersion.compare(pair.0, pair.1), nix, "compareVersions \(pair)")
        }
        let parseExpr = "[" + names.map { "(builtins.parseDrvName \(nixString($0)))" }.joined(separator: " ") + "]"
        let parsed = try XCTUnwrap(try NixOracle.evalJSON(parseExpr).json)
        let drvs = try JSONDecoder().decode([[String: String]].self, from: Data(parsed.utf8))
        for (name, nix) in zip(names, drvs) {
            let ours = NixVersion.parseDrvName(name)
            XCTAssertEqual([ours.name, ours.version], [nix["name"], nix["version"]], name)
        }
        XCTAssertEqual(expected.count, pairs.count)
    }
}
