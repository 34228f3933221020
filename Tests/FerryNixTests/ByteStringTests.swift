import FerryNix
import FerryXCTestSupport
import Foundation
import XCTest

/// Issue 8, item 5: Nix strings and attribute names are bytes. Printed plain and as JSON,
/// ferry's output must equal nix-instantiate 2.8's byte for byte, for hand-written cases and
/// for generated ones full of bytes that are not UTF-8.
final class ByteStringTests: XCTestCase {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["FERRY_NIX_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0xB17E

    /// A Nix string literal holding exactly `bytes` (no NUL: Nix source ends there).
    static func literal(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x22]
        for b in bytes {
            if b == 0x22 || b == 0x5C || b == UInt8(ascii: "$") { out.append(0x5C) }
            out.append(b)
        }
        return out + [0x22]
    }

    static func text(_ s: String) -> [UInt8] { Array(s.utf8) }

    static let handWritten: [[UInt8]] = {
        let ff: [UInt8] = [0xFF], fe: [UInt8] = [0xFE], e1 = Array("é".utf8), e2: [UInt8] = [0x65, 0xCC, 0x81], euro = Array("€".utf8)
        return [
            text("builtins.stringLength ") + literal(ff + fe),
            literal(text("a") + ff + text("b")),
            text("builtins.substring 0 1 ") + literal(e1),
            text("{ ") + literal(ff) + text(" = 1; ") + literal(e1) + text(" = 2; ") + literal(e2) + text(" = 3; }"),
            text("builtins.attrNames { ") + literal(e1) + text(" = 2; ") + literal(e2) + text(" = 3; }"),
            literal(e1) + text(" == ") + literal(e2),
            text("builtins.stringLength (builtins.substring 1 2 ") + literal(euro) + text(")"),
            text("builtins.replaceStrings [ ") + literal(ff) + text(" ] [ \"x\" ] ") + literal(text("a") + ff + text("b")),
            text("\"${") + literal(ff) + text("}x\""),
            text("builtins.toJSON ") + literal(ff),
            text("builtins.hasAttr ") + literal(e2) + text(" { ") + literal(e1) + text(" = 1; }"),
            text("builtins.lessThan ") + literal(e1) + text(" ") + literal(e2),
            text("[ (") + literal(ff) + text(" < ") + literal(fe) + text(") (builtins.stringLength \"") + [0xC3] + text("\") ]"),
            text("''\n  ") + ff + text(" indented\n''"),
            text("builtins.concatStringsSep ") + literal(ff) + text(" [ \"a\" \"b\" ]"),
            text("builtins.baseNameOf ") + literal(text("/x/") + ff),
        ]
    }()

    /// nix-instantiate's stdout, raw, or nil on an error.
    func nix(_ source: [UInt8], json: Bool) throws -> [UInt8]? {
        let file = NSTemporaryDirectory() + "ferry-bytes-\(UUID().uuidString).nix"
        try Data(source).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try Command.run(["nix-instantiate", "--eval", "--strict"] + (json ? ["--json"] : []) + [file])
        guard r.status == 0 else { return nil }
        var out = Array(r.stdout)
        if out.last == 0x0A { out.removeLast() }
        return out
    }

    func ferry(_ source: [UInt8], json: Bool) -> [UInt8]? {
        let ev = Evaluator()
        do {
            let file = NSTemporaryDirectory() + "ferry-bytes-\(UUID().uuidString).nix"
            try Data(source).write(to: URL(fileURLWithPath: file))
            defer { try? FileManager.default.removeItem(atPath: file) }
            let value = try ev.deepForce(try ev.evaluate(file: file))
            return json ? try NixWriter.jsonBytes(value, ev, nil) : try NixWriter.displayBytes(value, ev)
        } catch {
            return nil
        }
    }

    func check(_ sources: [[UInt8]], file: StaticString = #filePath, line: UInt = #line) throws {
        var disagreements: [String] = []
        for source in sources {
            for json in [false, true] {
                let (n, f) = (try nix(source, json: json), ferry(source, json: json))
                if n != f {
                    func show(_ b: [UInt8]?) -> String { b.map { $0.map { $0 >= 0x20 && $0 < 0x7F ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined() } ?? "error" }
                    disagreements.append("\(show(source)) [\(json ? "json" : "plain")]: ferry \(show(f)), nix \(show(n))")
                }
            }
        }
        XCTAssertEqual(disagreements, [], "\n" + disagreements.prefix(15).joined(separator: "\n"), file: file, line: line)
    }

    func testHandWrittenByteStringsAgreeWithNix() throws {
        try NixOracle.require()
        try check(Self.handWritten)
    }

    func testGeneratedByteStringsAgreeWithNix() throws {
        try NixOracle.require()
        var rng = FixtureRandom(seed: Self.seed)
        func bytes() -> [UInt8] {
            let pool: [[UInt8]] = [[0xFF], [0xC3], [0xA9], Array("é".utf8), [0x65, 0xCC, 0x81], Array("a".utf8), Array("€".utf8), [0xE2, 0x82], [0x01], [0x7F], Array("\"".utf8), Array("\\".utf8), Array("$".utf8), Array("{".utf8), [0x0A]]
            return (0..<rng.below(6)).flatMap { _ in pool[rng.below(pool.count)] }
        }
        func expr(_ depth: Int) -> [UInt8] {
            switch rng.below(depth > 1 ? 3 : 9) {
            case 0, 1, 2: return Self.literal(bytes())
            case 3: return Self.text("(builtins.substring \(rng.below(4)) \(rng.below(4) - 1) ") + expr(depth + 1) + Self.text(")")
            case 4: return Self.text("(") + expr(depth + 1) + Self.text(" + ") + expr(depth + 1) + Self.text(")")
            case 5: return Self.text("(builtins.toString (builtins.stringLength ") + expr(depth + 1) + Self.text("))")
            case 6: return Self.text("(builtins.concatStringsSep ") + expr(depth + 1) + Self.text(" [ ") + expr(depth + 1) + Self.text(" ") + expr(depth + 1) + Self.text(" ])")
            case 7: return Self.text("(builtins.toJSON ") + expr(depth + 1) + Self.text(")")
            default: return Self.text("(builtins.replaceStrings [ ") + Self.literal(bytes()) + Self.text(" ] [ ") + Self.literal(bytes()) + Self.text(" ] ") + expr(depth + 1) + Self.text(")")
            }
        }
        var sources: [[UInt8]] = []
        for _ in 0..<60 {
            switch rng.below(3) {
            case 0: sources.append(expr(0))
            case 1: sources.append(Self.text("{ ") + (0..<(1 + rng.below(4))).flatMap { _ in Self.literal(bytes()) + Self.text(" = ") + expr(1) + Self.text("; ") } + Self.text("}"))
            default: sources.append(Self.text("[ (") + expr(0) + Self.text(" == ") + expr(0) + Self.text(") (") + expr(0) + Self.text(" < ") + expr(0) + Self.text(") ]"))
            }
        }
        try check(sources)
    }
}
