import FerryTOML
import FerryXCTestSupport
import Foundation
import XCTest

/// ferry's TOML reader against Python's tomllib: the same documents accepted, the same values,
/// the same documents refused; and no input crashes it.
final class TOMLDifferentialTests: XCTestCase {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["FERRY_TOML_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0x70_3170

    /// The inputs that aborted TOMLKit's bundled toml++ (issue 8, 5a).
    static let crashers = [
        "exclude = [\".env\", }data/\"]", "a = [}", "[&", "[@web]", "[ä]", "[#]",
    ]

    static let corpus: [String] = crashers + [
        // keys and tables
        "a = 1\nb.c = 2\nb.d = 3", "[a]\nx = 1\n[a.b]\ny = 2", "[a.b]\n[a]\nx = 1", "[a]\n[a]", "[a]\nb.c = 1\n[a.b]",
        "[a]\nb.c = 1\n[a.b.d]\ne = 1", "[a.b]\nx = 1\n[a]\nb.y = 2", "a = {x = 1}\n[a]", "a = {x = 1}\na.y = 2",
        "a = [1]\n[[a]]", "[[a]]\nx = 1\n[[a]]\nx = 2\n[a.b]\ny = 3", "[[a]]\n[a]", "[a]\n[[a]]", "a.b = 1\na.b.c = 2",
        "\"quoted key\" = 1\n'literal key' = 2\n\"\" = 3", "a . b . c = 1", "[ a . b ]\nx = 1", "1 = 2\n- = 3\n_ = 4",
        "a = 1\na = 2", "a = {b = {c = 1}, d = 2}", "a = {b.c = 1, b.d = 2}", "a = {b = 1, b = 2}", "a = {b = {}, b.c = 1}",
        "a = {}", "a = {,}", "a = {b = 1,}", "a = {b = 1\n}", "a = [ 1, 2, ]", "a = [ ,]", "a = [\n1, # c\n2\n]",
        // strings
        "a = \"tab\\there \\u00e9 \\U0001F600 \\\\ \\\"\"", "a = \"bad \\x escape\"", "a = \"\\uD800\"", "a = 'lit\\eral'",
        "a = \"\"\"\nline1\nline2\\\n   continued\"\"\"", "a = '''\nraw\\n'''", "a = \"\"\"five\"\"\"\"\"", "a = \"\"\"six\"\"\"\"\"\"",
        "a = '''x''''", "a = \"unterminated", "a = \"new\nline\"", "a = \"\"\"a\\  \n  b\"\"\"", "a = \"\"\"a\\ b\"\"\"",
        "a = \"\\u0000\"", "a = \"ctrl \u{1}\"", "a = 'ctrl \u{7f}'", "# comment \u{1}\na = 1", "a = 1 # é comment",
        // numbers
        "a = 0x_1", "a = 0xDEAD_beef", "a = 0o17", "a = 0b101", "a = +0x1", "a = 01", "a = 1_000", "a = 1__0", "a = 1_",
        "a = 9223372036854775807", "a = -9223372036854775808", "a = 1.5e3", "a = 1e400", "a = -0.0", "a = 1.", "a = .5",
        "a = 1e", "a = inf\nb = -inf\nc = nan\nd = +nan", "a = infinity", "a = 3.14_15", "a = 1e1_0", "a = 0.1e+2",
        // booleans, dates
        "a = true\nb = false", "a = truex", "a = 1979-05-27T07:32:00Z", "a = 1979-05-27 07:32:00.999999-07:00",
        "a = 1979-05-27T07:32:00", "a = 1979-05-27", "a = 07:32:00", "a = 07:32", "a = 1979-02-29", "a = 1980-02-29",
        "a = 1979-13-01", "a = 0000-01-01", "a = 1979-05-27T25:00:00", "a = 1979-05-27 ", "a = 1979-05-27T07:32:00+24:00",
        // whitespace and structure
        "a = 1\r\nb = 2", "a = 1\rb = 2", "\n\n  a = 1  \n", "a=1", "a = 1 b = 2", "= 1", "a =", "[a", "[[a]", "[a]]", "[]",
        "a = [[1], [\"x\"], [{b = 1}]]", "[x.y.z]\n[x]\n[x.y]", "\u{feff}a = 1",
    ]

    func testAgreesWithTomllib() throws {
        var rng = FixtureRandom(seed: Self.seed)
        var documents = Self.corpus
        let cases = ProcessInfo.processInfo.environment["FERRY_TOML_CASES"].flatMap { Int($0) } ?? 1_500
        for _ in 0..<cases { documents.append(Self.generate(&rng)) }
        let oracle = try Tomllib.run(documents.map { Array($0.utf8) })
        var disagreements: [String] = []
        for (doc, python) in zip(documents, oracle) {
            let ferry: Any
            do { ferry = Tomllib.canonical(.table(try TOMLReader.parse(doc))) } catch { ferry = "error" }
            // TOML lets a reader refuse integers beyond 64 bits; tomllib keeps them.
            if ferry as? String == "error", Tomllib.hasBigInteger(python) { continue }
            if !Tomllib.same(ferry, python) {
                disagreements.append("\(doc.debugDescription): ferry \(ferry), tomllib \(python)")
            }
        }
        print("TOML differential: \(documents.count) documents, seed \(String(Self.seed, radix: 16)) (FERRY_TOML_SEED replays another)")
        XCTAssertEqual(disagreements, [], "\n" + disagreements.prefix(20).joined(separator: "\n"))
    }

    func testCrashersAreSyntaxErrorsWithAPlace() {
        for doc in Self.crashers {
            XCTAssertThrowsError(try TOMLReader.parse(doc)) { error in
                guard let e = error as? TOMLError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.line, 1, doc)
            }
        }
    }

    func testInvalidUTF8AndDeepNestingAreRefused() {
        XCTAssertThrowsError(try TOMLReader.parse([0x61, 0x20, 0x3D, 0x20, 0x22, 0xFF, 0x22])) {
            XCTAssertTrue("\($0)".contains("not valid UTF-8"), "\($0)")
        }
        let deep = "a = " + String(repeating: "[", count: 100_000)
        XCTAssertThrowsError(try TOMLReader.parse(deep)) { XCTAssertTrue("\($0)".contains("nested more than"), "\($0)") }
        let dotted = (0..<3_000).map { "k\($0)" }.joined(separator: ".") + " = 1"
        XCTAssertNoThrow(try TOMLReader.parse(dotted))
    }

    /// The README's bound, exactly: 256 levels of arrays or inline tables read, 257 refused.
    func testNestingBoundIsTheREADMEs() {
        func arrays(_ n: Int) -> String { "a = " + String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        func tables(_ n: Int) -> String { "a = " + String(repeating: "{b = ", count: n) + "1" + String(repeating: "}", count: n) }
        for make in [arrays, tables] {
            XCTAssertNoThrow(try TOMLReader.parse(make(TOMLReader.maximumDepth)))
            XCTAssertThrowsError(try TOMLReader.parse(make(TOMLReader.maximumDepth + 1))) { XCTAssertTrue("\($0)".contains("nested more than 256"), "\($0)") }
        }
    }

    /// Random documents: mostly valid shapes, a third of them with a few bytes changed.
    static func generate(_ rng: inout FixtureRandom) -> String {
        func key() -> String {
            switch rng.below(6) {
            case 0: return "\"k \(rng.below(5))\""
            case 1: return "'q\(rng.below(5))'"
            case 2: return "a\(rng.below(3)).b\(rng.below(3))"
            default: return ["a", "b", "c", "x-y", "_z", "1"][rng.below(6)]
            }
        }
        func value(_ depth: Int) -> String {
            switch rng.below(depth > 2 ? 9 : 12) {
            case 0: return String(Int(rng.next() % 2_000_000) - 1_000_000)
            case 1: return ["0x1F", "0o7", "0b11", "1_000", "+5", "-0"][rng.below(6)]
            case 2: return ["1.5", "-2e-3", "6.02e23", "inf", "-nan", "0.0"][rng.below(6)]
            case 3: return rng.below(2) == 0 ? "true" : "false"
            case 4: return ["\"s\\n\\t\\u00e9\"", "'lit'", "\"\"\"\nml \\\n  x\"\"\"", "'''raw\n'''", "\"\""][rng.below(5)]
            case 5: return ["1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", "1979-05-27 07:32:00.5"][rng.below(4)]
            case 6: return "\"é \(rng.below(100))\""
            case 7: return "\(rng.below(10))"
            case 8: return "'\(rng.below(10))'"
            case 9: return "[" + (0..<rng.below(4)).map { _ in value(depth + 1) }.joined(separator: rng.below(2) == 0 ? ", " : ",\n") + (rng.below(3) == 0 ? "," : "") + "]"
            default: return "{" + (0..<rng.below(3)).map { _ in "\(key()) = \(value(depth + 1))" }.joined(separator: ", ") + "}"
            }
        }
        var lines: [String] = []
        for _ in 0..<(1 + rng.below(8)) {
            switch rng.below(10) {
            case 0: lines.append("[\(key())]")
            case 1: lines.append("[[\(key())]]")
            case 2: lines.append("# comment \(rng.below(9))")
            case 3: lines.append("")
            default: lines.append("\(key()) = \(value(0))" + (rng.below(5) == 0 ? " # trailing" : ""))
            }
        }
        var bytes = Array(lines.joined(separator: "\n").utf8)
        if rng.below(3) == 0 && !bytes.isEmpty {
            let pieces = Array("[]{}=,.\"'#\n \\_-+:x0".utf8)
            for _ in 0..<(1 + rng.below(3)) {
                let at = rng.below(bytes.count)
                switch rng.below(3) {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(pieces[rng.below(pieces.count)], at: at)
                default: bytes[at] = pieces[rng.below(pieces.count)]
                }
                if bytes.isEmpty { break }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

struct OracleMissing: Error, CustomStringConvertible {
    let reason: String
    var description: String { "python3 with tomllib (the TOML oracle) failed: \(reason)" }
}

/// Python's tomllib over many documents in one process.
enum Tomllib {
    static let script = #"""
import base64, json, sys, tomllib, struct, datetime
def canon(v):
    if isinstance(v, bool): return ["bool", v]
    if isinstance(v, int): return ["int", str(v)]
    if isinstance(v, float): return ["float", "nan" if v != v else struct.pack("<d", v).hex()]
    if isinstance(v, str): return ["str", v]
    if isinstance(v, datetime.datetime): return ["odt" if v.tzinfo is not None else "ldt"]
    if isinstance(v, datetime.date): return ["ld"]
    if isinstance(v, datetime.time): return ["lt"]
    if isinstance(v, list): return ["arr", [canon(x) for x in v]]
    if isinstance(v, dict): return ["tab", {k: canon(x) for k, x in v.items()}]
    raise TypeError(type(v))
out = []
for doc in json.load(sys.stdin):
    try:
        out.append(canon(tomllib.loads(base64.b64decode(doc).decode("utf-8"))))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        out.append("error")
json.dump(out, sys.stdout)
"""#

    static func run(_ documents: [[UInt8]]) throws -> [Any] {
        let input = try JSONSerialization.data(withJSONObject: documents.map { Data($0).base64EncodedString() })
        let file = NSTemporaryDirectory() + "ferry-toml-\(UUID().uuidString).json"
        try input.write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try Command.run(["sh", "-c", "python3 -c \"$1\" < \"$2\"", "sh", script, file])
        guard r.status == 0, let array = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [Any] else {
            // No silent skips under CI: the oracle is a prerequisite there.
            if ProcessInfo.processInfo.environment["CI"] == "true" { throw OracleMissing(reason: r.errorOutput) }
            throw XCTSkip("python3 with tomllib failed: \(r.errorOutput)")
        }
        return array
    }

    static func canonical(_ v: TOMLValue) -> Any {
        switch v {
        case .boolean(let b): return ["bool", b]
        case .integer(let i): return ["int", String(i)]
        case .float(let d):
            if d.isNaN { return ["float", "nan"] }
            return ["float", withUnsafeBytes(of: d.bitPattern.littleEndian) { $0.map { String(format: "%02x", $0) }.joined() }]
        case .string(let s): return ["str", s]
        case .offsetDateTime: return ["odt"]
        case .localDateTime: return ["ldt"]
        case .localDate: return ["ld"]
        case .localTime: return ["lt"]
        case .array(let items): return ["arr", items.map(canonical)]
        case .table(let t): return ["tab", Dictionary(uniqueKeysWithValues: t.keys.map { ($0, canonical(t[$0]!)) })]
        }
    }

    static func same(_ a: Any, _ b: Any) -> Bool {
        if let x = a as? String, let y = b as? String { return x == y }
        if let x = a as? Bool, let y = b as? Bool { return x == y }
        if let x = a as? [Any], let y = b as? [Any] { return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) } }
        if let x = a as? [String: Any], let y = b as? [String: Any] {
            return x.count == y.count && x.allSatisfy { k, v in y[k].map { same(v, $0) } ?? false }
        }
        return false
    }

    static func hasBigInteger(_ v: Any) -> Bool {
        if let pair = v as? [Any], pair.first as? String == "int", let text = pair.last as? String { return Int(text) == nil }
        if let pair = v as? [Any], let inner = pair.last as? [Any], pair.first as? String == "arr" { return inner.contains(where: hasBigInteger) }
        if let pair = v as? [Any], let inner = pair.last as? [String: Any] { return inner.values.contains(where: hasBigInteger) }
        return false
    }
}
