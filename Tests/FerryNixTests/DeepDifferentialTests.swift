import FerryNix
import FerryXCTestSupport
import Foundation
import XCTest

/// Issue 8: generated deep, long, nested, shared and cyclic expressions, each answered by ferry
/// and by nix-instantiate 2.8: the same printed value, or the same class of error.
final class DeepDifferentialTests: XCTestCase {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["FERRY_NIX_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0xDEE9

    enum Outcome: Equatable, CustomStringConvertible {
        case value(String), parse, stackOverflow, infiniteRecursion, other(String)

        init(error text: String) {
            if text.contains("memory exhausted") || text.contains("syntax error") { self = .parse }
            else if text.contains("stack overflow") { self = .stackOverflow }
            else if text.contains("infinite recursion") { self = .infiniteRecursion }
            else { self = .other(text) }
        }

        var description: String {
            switch self {
            case .value(let v): return v.count > 120 ? String(v.prefix(120)) + "…" : v
            case .parse: return "parse error"
            case .stackOverflow: return "stack overflow"
            case .infiniteRecursion: return "infinite recursion"
            case .other(let t): return "error: " + t
            }
        }
    }

    static func generate(_ rng: inout FixtureRandom) -> String {
        func n(_ max: Int) -> Int { 1 + rng.below(max) }
        switch rng.below(12) {
        case 0: return "let f = n: if n == 0 then 0 else 1 + f (n - 1); in f \(n(3000))"
        case 1: return "let f = n: acc: if n == 0 then acc else f (n - 1) (acc + 2); in f \(n(3000)) 0"
        case 2: return "rec { even = n: if n == 0 then true else odd (n - 1); odd = n: if n == 0 then false else even (n - 1); }.even \(n(2000))"
        case 3: return Array(repeating: "\(rng.below(9))", count: n(4000)).joined(separator: [" + ", " * ", " - "][rng.below(3)])
        case 4:
            let k = 4990 + rng.below(12)
            return String(repeating: "[1] ++ ", count: k) + "[]"
        case 5:
            let shapes: [(String, String, Int)] = [("(", ")", 9_995), ("[", "]", 4_998), ("{ a = ", "; }", 2_496), ("let a = ", "; in a", 2_498)]
            let (open, close, limit) = shapes[rng.below(shapes.count)]
            let k = limit - 3 + rng.below(7)
            return String(repeating: open, count: k) + "1" + String(repeating: close, count: k)
        case 6:
            let cycles = ["let a = { x = a; }; in a", "rec { a = [ b ]; b = { c = a; }; }", "let a = { x = a; y = [ a a ]; }; in a.x.y",
                          "rec { a = { b = a; c = 1; }; }", "let l = [ s ]; s = { inherit l; }; in s"]
            return cycles[rng.below(cycles.count)]
        case 7:
            let x = "{ v = \(rng.below(100)); w = [ \(rng.below(9)) ]; }"
            let uses = (0..<n(4)).map { _ in ["x", "x.w", "(x // {})", "({} // x)", "(y: y) x", "{ inherit x; }"][rng.below(6)] }
            return "let x = \(x); in [ \(uses.joined(separator: " ")) ]"
        case 8:
            return ["let x = x; in x", "let f = x: f x; in f 1", "rec { a = a; }.a", "let f = x: 1 + f x; in f 0",
                    "let a = { b = a.c; c = a.b; }; in a.b", "builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) \(n(5000)))"][rng.below(6)]
        case 9:
            return "let l = builtins.genList (x: x) \(n(3000)); in builtins.foldl' (acc: x: [ acc ]) [] l == builtins.foldl' (acc: x: [ acc ]) [] l"
        case 10:
            let depth = n(400)
            return "let build = n: if n == 0 then null else { next = build (n - 1); }; in build \(depth)"
        default:
            return "let s = builtins.genList (x: { inherit x; }) \(n(50)); in builtins.length (builtins.filter (v: v.x > \(rng.below(50))) s)"
        }
    }

    func ferry(_ source: String) -> Outcome {
        let ev = Evaluator()
        do {
            let v = try ev.deepForce(try ev.evaluate(source: source, file: "«gen»", baseDirectory: NSTemporaryDirectory()))
            return .value(try NixWriter.displayThrowing(v, ev))
        } catch {
            return Outcome(error: "\(error)")
        }
    }

    func nix(_ source: String) throws -> Outcome {
        let file = try NixOracle.write(source)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try Command.run(["nix-instantiate", "--eval", "--strict", file])
        if r.status == 0 { return .value(r.output.trimmingCharacters(in: .newlines)) }
        return Outcome(error: r.errorOutput)
    }

    func testGeneratedDeepCasesAgreeWithNix() throws {
        try NixOracle.require()
        print("deep differential seed: \(String(Self.seed, radix: 16)) (FERRY_NIX_SEED replays another)")
        var rng = FixtureRandom(seed: Self.seed)
        var counts: [String: Int] = [:]
        var disagreements: [String] = []
        for _ in 0..<120 {
            let source = Self.generate(&rng)
            let (f, x) = (ferry(source), try nix(source))
            counts["\(x)".hasPrefix("error") || x == .parse || x == .stackOverflow || x == .infiniteRecursion ? "\(x)" : "value", default: 0] += 1
            if f != x { disagreements.append("\(source.prefix(150)): ferry \(f), nix \(x)") }
        }
        print("deep differential outcomes: \(counts.sorted { $0.key < $1.key })")
        XCTAssertEqual(disagreements, [], "\n" + disagreements.joined(separator: "\n"))
    }
}
