import Foundation

/// A plain data value to be written as Nix source (what the inventory gives the renderer).
public indirect enum NixLiteral: Equatable, Sendable {
    case string(String)
    case int(Int)
    case float(Double)
    case bool(Bool)
    case null
    case list([NixLiteral])
    /// Keys in the order given; written sorted, as Nix prints sets.
    case attrs([(String, NixLiteral)])

    public static func == (a: NixLiteral, b: NixLiteral) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.float(let x), .float(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.null, .null): return true
        case (.list(let x), .list(let y)): return x == y
        case (.attrs(let x), .attrs(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }
}

public enum NixWriterError: Error, Equatable, CustomStringConvertible {
    case notRepresentable(String)
    public var description: String {
        switch self { case .notRepresentable(let what): return "\(what) has no Nix literal" }
    }
}

/// Writes Nix source and Nix's two printed forms of values.
public enum NixWriter {
    // MARK: - Source literals

    /// Nix source that evaluates to exactly `value`; strings are inert (no `${`, no escapes left open).
    public static func literal(_ value: NixLiteral, indent: String = "") throws -> String {
        switch value {
        case .string(let s): return quoted(s)
        case .int(let i):
            if i == Int.min { return "(-9223372036854775807 - 1)" }
            return i < 0 ? "(\(i))" : String(i)
        case .float(let f):
            // Nix 2.8 reads floats with strtod and rejects what underflows: subnormals have no literal.
            guard f.isFinite, f == 0 || f.isNormal else { throw NixWriterError.notRepresentable("the float \(f)") }
            return f < 0 || (f == 0 && f.sign == .minus) ? "(-\(floatLiteral(-f)))" : floatLiteral(f)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .list(let items):
            if items.isEmpty { return "[ ]" }
            return "[ " + (try items.map { try literal($0, indent: indent) }).joined(separator: " ") + " ]"
        case .attrs(let pairs):
            if pairs.isEmpty { return "{ }" }
            let inner = indent + "  "
            let body = try pairs.sorted { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }.map { k, v in
                "\(inner)\(attrName(k)) = \(try literal(v, indent: inner));\n"
            }.joined()
            return "{\n\(body)\(indent)}"
        }
    }

    /// A float in a form Nix 2.8's lexer reads back exactly (it needs a '.').
    static func floatLiteral(_ f: Double) -> String {
        var s = "\(f)"  // shortest round-trip form, e.g. "1e-07", "0.1", "1e+20"
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            let mantissa = s[..<e]
            if !mantissa.contains(".") { s = mantissa + ".0" + s[e...] }
        } else if !s.contains(".") {
            s += ".0"
        }
        return s
    }

    /// A double-quoted Nix string with `"`, `\`, `${`, newlines and tabs escaped, written the way
    /// Nix prints strings (so it reads back as exactly the same bytes).
    public static func quoted(_ s: String) -> String { String(decoding: quoted(bytes: Array(s.utf8)), as: UTF8.self) }

    /// The same, byte for byte: bytes that are not UTF-8 stay as they are, as Nix prints them.
    /// Nix 2.8 escapes every `$` in attribute names (`allDollars`), only `${` in string values.
    public static func quoted(bytes s: [UInt8], allDollars: Bool = false) -> [UInt8] {
        var out: [UInt8] = [0x22]
        var previousDollar = false
        for b in s {
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case UInt8(ascii: "$") where allDollars: out += Array("\\$".utf8)
            case UInt8(ascii: "{") where previousDollar && !allDollars: out.removeLast(); out += Array("\\${".utf8)
            default: out.append(b)
            }
            previousDollar = b == UInt8(ascii: "$")
        }
        return out + [0x22]
    }

    /// Reserved words; `or` is not among them where an attribute name is expected.
    private static let keywords: Set<String> = ["if", "then", "else", "assert", "with", "let", "in", "rec", "inherit"]

    /// An attribute name, quoted unless it is a plain identifier.
    public static func attrName(_ name: String) -> String { String(decoding: attrName(NixString(name)), as: UTF8.self) }

    static func attrName(_ name: NixString) -> [UInt8] {
        isIdentifier(name.bytes) && !keywords.contains(name.description) ? name.bytes : quoted(bytes: name.bytes, allDollars: true)
    }

    static func isIdentifier(_ s: [UInt8]) -> Bool {
        func letter(_ b: UInt8) -> Bool { (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z") }
        guard let first = s.first, first == UInt8(ascii: "_") || letter(first) else { return false }
        return s.allSatisfy { letter($0) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "'") || $0 == UInt8(ascii: "-") }
    }

    // MARK: - Printed values

    /// `%g` with 6 significant digits: how Nix 2.8 prints floats.
    static func printedFloat(_ f: Double) -> String { String(format: "%g", f) }

    /// As `nix-instantiate --eval --strict` prints a value (forcing it completely).
    public static func display(_ value: Value, _ ev: Evaluator) -> String {
        (try? displayThrowing(value, ev)) ?? "«error»"
    }

    /// As text (bytes that are not UTF-8 become U+FFFD; `displayBytes` keeps them).
    public static func displayThrowing(_ value: Value, _ ev: Evaluator) throws -> String {
        String(decoding: try displayBytes(value, ev), as: UTF8.self)
    }

    public static func displayBytes(_ value: Value, _ ev: Evaluator) throws -> [UInt8] {
        try NativeStack.run {
            var seen = Set<UInt>()
            var out: [UInt8] = []
            try display(value, slot: nil, ev, &seen, into: &out)
            return out
        }
    }

    /// A non-empty set or list printed before (a cycle, or shared) is «repeated», as in Nix 2.8.
    private static func display(_ value: Value, slot: ObjectIdentifier?, _ ev: Evaluator, _ seen: inout Set<UInt>, into out: inout [UInt8]) throws {
        try NativeStack.check(nil)
        if let id = value.identity(slot: slot), !seen.insert(id).inserted { out += Array("«repeated»".utf8); return }
        switch value {
        case .int(let i): out += Array(String(i).utf8)
        case .float(let f): out += Array(printedFloat(f).utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .null: out += Array("null".utf8)
        case .string(let s): out += quoted(bytes: s.bytes)
        case .path(let p): out += Array(p.utf8)
        case .list(let items):
            if items.isEmpty { out += Array("[ ]".utf8); return }
            out += Array("[ ".utf8)
            for t in items {
                try display(try ev.force(t), slot: ObjectIdentifier(t), ev, &seen, into: &out)
                out.append(0x20)
            }
            out.append(UInt8(ascii: "]"))
        case .attrs(let attrs):
            if attrs.isEmpty { out += Array("{ }".utf8); return }
            out += Array("{ ".utf8)
            for key in attrs.keys.sorted() {
                out += attrName(key) + Array(" = ".utf8)
                try display(try ev.force(attrs[key]!), slot: ObjectIdentifier(attrs[key]!), ev, &seen, into: &out)
                out += Array("; ".utf8)
            }
            out.append(UInt8(ascii: "}"))
        case .lambda: out += Array("<LAMBDA>".utf8)
        case .primop(_, let args): out += Array((args.isEmpty ? "<PRIMOP>" : "<PRIMOP-APP>").utf8)
        }
    }

    /// As `builtins.toJSON` and `nix-instantiate --eval --strict --json` write a value, as text.
    public static func json(_ value: Value, _ ev: Evaluator, _ loc: SourceLocation?) throws -> String {
        String(decoding: try jsonBytes(value, ev, loc), as: UTF8.self)
    }

    /// The same, byte for byte (strings that are not UTF-8 are written as they are, as Nix does).
    public static func jsonBytes(_ value: Value, _ ev: Evaluator, _ loc: SourceLocation?) throws -> [UInt8] {
        try NativeStack.run {
            var out: [UInt8] = []
            try jsonValue(value, ev, loc, into: &out)
            return out
        }
    }

    /// No cycle check, as in Nix: a cycle ends in its stack overflow error (and no partial output).
    private static func jsonValue(_ value: Value, _ ev: Evaluator, _ loc: SourceLocation?, into out: inout [UInt8]) throws {
        try NativeStack.check(loc)
        switch value {
        case .int(let i): out += Array(String(i).utf8)
        case .float(let f): out += Array(printedFloat(f).utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .null: out += Array("null".utf8)
        case .string(let s): out += jsonString(bytes: s.bytes)
        case .path(let p): throw NixEvalError.unsupported("a path in JSON (Nix would copy '\(p)' to the store)", at: loc)
        case .list(let items):
            out.append(UInt8(ascii: "["))
            for (i, t) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                try jsonValue(try ev.force(t), ev, loc, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .attrs(let attrs):
            if let o = attrs["outPath"] { return try jsonValue(try ev.force(o), ev, loc, into: &out) }
            out.append(UInt8(ascii: "{"))
            for (i, key) in attrs.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out += jsonString(bytes: key.bytes) + [UInt8(ascii: ":")]
                try jsonValue(try ev.force(attrs[key]!), ev, loc, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .lambda, .primop:
            throw NixEvalError("cannot convert a function to JSON", at: loc)
        }
    }

    static func jsonString(_ s: String) -> String { String(decoding: jsonString(bytes: Array(s.utf8)), as: UTF8.self) }

    static func jsonString(bytes s: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x22]
        for b in s {
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0x08: out += [0x5C, UInt8(ascii: "b")]
            case 0x0C: out += [0x5C, UInt8(ascii: "f")]
            case 0..<0x20: out += Array(String(format: "\\u%04x", b).utf8)
            default: out.append(b)
            }
        }
        return out + [0x22]
    }
}
