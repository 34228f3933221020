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
            let body = try pairs.sorted { Builtins.byteOrder($0.0, $1.0) }.map { k, v in
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
    public static func quoted(_ s: String) -> String {
        var out = "\""
        var previousDollar = false
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "{" where previousDollar: out.removeLast(); out += "\\${"
            default: out.unicodeScalars.append(scalar)
            }
            previousDollar = scalar == "$"
        }
        return out + "\""
    }

    /// Reserved words; `or` is not among them where an attribute name is expected.
    private static let keywords: Set<String> = ["if", "then", "else", "assert", "with", "let", "in", "rec", "inherit"]

    /// An attribute name, quoted unless it is a plain identifier.
    public static func attrName(_ name: String) -> String {
        isIdentifier(name) && !keywords.contains(name) ? name : quoted(name)
    }

    static func isIdentifier(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic) else { return false }
        return s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_'-".unicodeScalars.contains($0)) }
    }

    // MARK: - Printed values

    /// `%g` with 6 significant digits: how Nix 2.8 prints floats.
    static func printedFloat(_ f: Double) -> String { String(format: "%g", f) }

    /// As `nix-instantiate --eval --strict` prints a value (forcing it completely).
    public static func display(_ value: Value, _ ev: Evaluator) -> String {
        (try? displayThrowing(value, ev)) ?? "«error»"
    }

    public static func displayThrowing(_ value: Value, _ ev: Evaluator) throws -> String {
        try NativeStack.run {
            var seen = Set<UInt>()
            return try display(value, slot: nil, ev, &seen)
        }
    }

    /// A non-empty set or list printed before (a cycle, or shared) is «repeated», as in Nix 2.8.
    private static func display(_ value: Value, slot: ObjectIdentifier?, _ ev: Evaluator, _ seen: inout Set<UInt>) throws -> String {
        try NativeStack.check(nil)
        if let id = value.identity(slot: slot), !seen.insert(id).inserted { return "«repeated»" }
        switch value {
        case .int(let i): return String(i)
        case .float(let f): return printedFloat(f)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .string(let s): return quoted(s)
        case .path(let p): return p
        case .list(let items):
            if items.isEmpty { return "[ ]" }
            return "[ " + (try items.map { try display(try ev.force($0), slot: ObjectIdentifier($0), ev, &seen) }).joined(separator: " ") + " ]"
        case .attrs(let attrs):
            if attrs.isEmpty { return "{ }" }
            var out = "{ "
            for key in attrs.keys.sorted(by: Builtins.byteOrder) {
                out += "\(attrName(key)) = \(try display(try ev.force(attrs[key]!), slot: ObjectIdentifier(attrs[key]!), ev, &seen)); "
            }
            return out + "}"
        case .lambda: return "<LAMBDA>"
        case .primop(_, let args): return args.isEmpty ? "<PRIMOP>" : "<PRIMOP-APP>"
        }
    }

    /// As `builtins.toJSON` and `nix-instantiate --eval --strict --json` write a value.
    public static func json(_ value: Value, _ ev: Evaluator, _ loc: SourceLocation?) throws -> String {
        try NativeStack.run { try jsonValue(value, ev, loc) }
    }

    /// No cycle check, as in Nix: a cycle ends in its stack overflow error (and no partial output).
    private static func jsonValue(_ value: Value, _ ev: Evaluator, _ loc: SourceLocation?) throws -> String {
        try NativeStack.check(loc)
        switch value {
        case .int(let i): return String(i)
        case .float(let f): return printedFloat(f)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .string(let s): return jsonString(s)
        case .path(let p): throw NixEvalError.unsupported("a path in JSON (Nix would copy '\(p)' to the store)", at: loc)
        case .list(let items):
            return "[" + (try items.map { try jsonValue(try ev.force($0), ev, loc) }).joined(separator: ",") + "]"
        case .attrs(let attrs):
            if let out = attrs["outPath"] { return try jsonValue(try ev.force(out), ev, loc) }
            return "{" + (try attrs.keys.sorted(by: Builtins.byteOrder).map {
                jsonString($0) + ":" + (try jsonValue(try ev.force(attrs[$0]!), ev, loc))
            }).joined(separator: ",") + "}"
        case .lambda, .primop:
            throw NixEvalError("cannot convert a function to JSON", at: loc)
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{8}": out += "\\b"
            case "\u{C}": out += "\\f"
            default:
                if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}
