import FerryNix
import FerryXCTestSupport
import Foundation
import XCTest

/// Issue 8: no input crashes the reader or the evaluator; deep recursion, long chains, deep
/// nesting, cycles and integer edge cases get Nix 2.8's value or its error.
final class DeepEvaluationTests: XCTestCase {
    func eval(_ source: String, strict: Bool = true) throws -> String {
        let ev = Evaluator()
        var v = try ev.evaluate(source: source, file: "«test»", baseDirectory: NSTemporaryDirectory())
        if strict { v = try ev.deepForce(v) }
        return try NixWriter.displayThrowing(v, ev)
    }

    func testDeepRecursionEvaluates() throws {
        XCTAssertEqual(try eval("let f = n: if n == 0 then 0 else 1 + f (n - 1); in f 20000"), "20000")
        XCTAssertEqual(try eval("let foldr = op: nul: l: if l == [] then nul else op (builtins.head l) (foldr op nul (builtins.tail l)); in foldr (a: b: a + b) 0 (builtins.genList (x: 1) 800)"), "800")
    }

    func testRunawayRecursionIsNixsStackOverflowError() {
        XCTAssertThrowsError(try eval("let f = n: 1 + f (n + 1); in f 0")) { error in
            XCTAssertTrue("\(error)".contains("stack overflow (possible infinite recursion)"), "\(error)")
            XCTAssertTrue("\(error)".contains("«test»:1:"), "a location: \(error)")
        }
    }

    func testLongOperatorChainsEvaluate() throws {
        XCTAssertEqual(try eval(Array(repeating: "1", count: 20_000).joined(separator: " + ")), "20000")
        XCTAssertEqual(try eval("builtins.length (" + Array(repeating: "[1]", count: 3_000).joined(separator: " ++ ") + ")"), "3000")
    }

    /// Nix 2.8's parser says "memory exhausted" past its 10,000-state stack; ferry draws the line
    /// at the same depth for every nesting construct.
    func testNestingLimitsMatchNix() throws {
        try NixOracle.require()
        let shapes: [(String, (Int) -> String, Int)] = [
            ("parentheses", { String(repeating: "(", count: $0) + "1" + String(repeating: ")", count: $0) }, 9_995),
            ("lists", { String(repeating: "[", count: $0) + "1" + String(repeating: "]", count: $0) }, 4_998),
            ("sets", { String(repeating: "{ a = ", count: $0) + "1" + String(repeating: "; }", count: $0) }, 2_496),
            ("lets", { String(repeating: "let a = ", count: $0) + "1" + String(repeating: "; in a", count: $0) }, 2_498),
            ("ifs", { String(repeating: "if true then ", count: $0) + "1" + String(repeating: " else 2", count: $0) }, 3_331),
            ("negations", { String(repeating: "-", count: $0) + "1" }, 9_996),
            ("lambdas", { String(repeating: "x: ", count: $0) + "1" }, 4_998),
            ("concatenations", { String(repeating: "[1] ++ ", count: $0) + "[1]" }, 4_998),
        ]
        for (name, make, deepest) in shapes {
            for n in [deepest, deepest + 1] {
                let source = make(n)
                let nix = try NixOracle.parses(source)
                var ferry = true
                do { _ = try Parser.parse(source, baseDirectory: "/") } catch let error as NixSyntaxError {
                    ferry = false
                    XCTAssertEqual(error.message, "memory exhausted", name)
                }
                XCTAssertEqual(ferry, nix, "\(name) nested \(n) deep: nix \(nix ? "accepts" : "refuses")")
            }
        }
        XCTAssertThrowsError(try Parser.parse(String(repeating: "(", count: 100_000) + "1" + String(repeating: ")", count: 100_000), baseDirectory: "/"))
    }

    /// Shared and cyclic values print «repeated» where Nix 2.8 prints it; as JSON a cycle is
    /// Nix's stack overflow, with no partial output.
    func testRepeatedValuesPrintAsNixPrintsThem() throws {
        try NixOracle.require()
        for source in ["let a = { x = a; }; in a", "rec { a = { b = a; }; }", "let x = { a = 1; }; in [ x x ]",
                       "let l = [ 1 ]; in [ l l ]", "[ {} {} ]", "[ [] [] ]", "let x = { a = 1; }; in { p = x; q = x; }",
                       "let x = { a = 1; }; y = x; in [ x y ]", "let x = { a = 1; }; in [ x (x // {}) ]",
                       "let x = { a = 1; }; f = v: v; in [ x (f x) ]", "let x = { a = 1; }; in [ x { a = 1; } ]",
                       "let l = [ l ]; in l", "let l = [ l l l ]; in l", "let l = [ 1 2 3 ]; in [ l (builtins.tail (builtins.tail l)) l ]",
                       "let x = [ 1 2 ]; in [ x x ]", "let x = { w = [ 1 ]; }; in [ x.w x ]"] {
            XCTAssertEqual(try eval(source), try NixOracle.evalDisplay(source), source)
        }
        let (json, error) = NixOracle.ferryJSON("let a = { x = a; }; in a")
        XCTAssertNil(json)
        XCTAssertTrue(error.contains("stack overflow"), error)
    }

    func testSelfImportIsAStackOverflowNotACrash() throws {
        let dir = NSTemporaryDirectory() + "ferry-selfimport-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "import ./self.nix".write(toFile: dir + "/self.nix", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Evaluator().evaluate(file: dir + "/self.nix")) { error in
            XCTAssertTrue("\(error)".contains("stack overflow"), "\(error)")
        }
        // A lazy self-import is fine, as in Nix.
        try "{ f = n: if n == 0 then 0 else (import ./lazy.nix).f (n - 1); }".write(toFile: dir + "/lazy.nix", atomically: true, encoding: .utf8)
        try "(import ./lazy.nix).f 100".write(toFile: dir + "/main.nix", atomically: true, encoding: .utf8)
        let ev = Evaluator()
        XCTAssertEqual(try NixWriter.displayThrowing(try ev.evaluate(file: dir + "/main.nix"), ev), "0")
    }

    /// No trapping arithmetic: every case agrees with nix-instantiate, value or error.
    func testIntegerEdgesAgreeWithNix() throws {
        try NixOracle.require()
        for source in ["9223372036854775807 + 1", "(-9223372036854775807 - 1) - 1", "9223372036854775807 * 2",
                       "(-9223372036854775807 - 1) * -1", "(-9223372036854775807 - 1) / -1", "1 / 0", "0 - (-9223372036854775807 - 1)",
                       "builtins.substring 1 9223372036854775807 \"abc\"", "builtins.substring 0 (-1) \"abc\"",
                       "builtins.sub (-9223372036854775807 - 1) 1", "builtins.mul 4611686018427387904 4", "builtins.div 7 (-2)",
                       "builtins.floor 1.5", "builtins.floor (-1.5)", "builtins.ceil 1.2", "builtins.floor 3", "builtins.ceil (-0.5)",
                       "builtins.floor 1.0e30", "builtins.elemAt [ 1 ] 5", "builtins.genList (x: x) (-1)"] {
            let nix = try NixOracle.evalJSON(source)
            let ferry = NixOracle.ferryJSON(source)
            XCTAssertEqual(ferry.json, nix.json, "\(source): ferry \(ferry.error), nix \(nix.error)")
            if nix.json == nil {
                let nixMessage = nix.error.split(separator: "\n").first { $0.contains("error:") }.map { String($0.split(separator: ":").last!).trimmingCharacters(in: .whitespaces) } ?? ""
                XCTAssertTrue(ferry.error.contains(nixMessage), "\(source): ferry says \(ferry.error), nix \(nixMessage)")
            }
        }
    }
}
