import FerryNix
import FerryXCTestSupport
import Foundation
import XCTest

/// Issue 8, items 6 and 7: selection paths as `nix-instantiate -A` reads them, invalid floats,
/// and a NUL byte in the source.
final class NixEdgeCaseTests: XCTestCase {
    func testSelectionPathsAgreeWithNix() throws {
        try NixOracle.require()
        let source = "{ a = { \"c.d\" = 1; b = 2; }; l = [ { x = 5; } 7 ]; \"\" = 3; }"
        let file = try NixOracle.write(source)
        defer { try? FileManager.default.removeItem(atPath: file) }
        for path in ["a.\"c.d\"", "l.0", "l.0.x", "l.1", "a..b", "a.b", "\"\"", "l.5", "a.0", "l.x", "nope", "a.\"c", "a.b.c", ".a", "a."] {
            let nix = try Command.run(["nix-instantiate", "--eval", "--strict", "--json", file, "-A", path])
            let ev = Evaluator()
            var ferry: String
            do {
                let v = try ev.select(try ev.evaluate(file: file), attrPath: path)
                ferry = try NixWriter.json(try ev.deepForce(v), ev, nil)
            } catch {
                ferry = "\(error)"
            }
            if nix.status == 0 {
                XCTAssertEqual(ferry, nix.output.trimmingCharacters(in: .newlines), path)
            } else {
                let message = nix.errorOutput.split(separator: "\n").first { $0.hasPrefix("error:") }.map { String($0.dropFirst(7)) } ?? "?"
                XCTAssertTrue(ferry.contains(message), "\(path): ferry \(ferry), nix \(message)")
            }
        }
    }

    func testInvalidFloatsAndNulBytes() throws {
        try NixOracle.require()
        for source in ["1.0e400", "[ 1.0e308 ]", "0.0e-400", "1 + 2\u{0} + 3"] {
            let nix = try NixOracle.evalJSON(source)
            let ferry = NixOracle.ferryJSON(source)
            XCTAssertEqual(ferry.json, nix.json, "\(source.debugDescription): ferry \(ferry.error)")
        }
        XCTAssertTrue(NixOracle.ferryJSON("1.0e400").error.contains("invalid float '1.0e400'"))
    }
}
