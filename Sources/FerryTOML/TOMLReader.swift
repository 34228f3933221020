/// A TOML 1.0 reader, written to accept and refuse exactly what Python's `tomllib` (the test
/// oracle) does, with one difference TOML allows: integers must fit in 64 bits. It never
/// crashes on any input (TOMLKit's bundled toml++ aborted on typos such as `a = [}`); nesting
/// deeper than `maximumDepth` is refused.
public enum TOMLReader {
    public static let maximumDepth = 256

    public static func parse(_ bytes: [UInt8]) throws -> TOMLTable {
        var reader = Reader(bytes)
        return try reader.document()
    }

    public static func parse(_ text: String) throws -> TOMLTable { try parse(Array(text.utf8)) }
}

private enum Flag { case frozen, explicitNest }

/// tomllib's flags: which tables were declared by a header (or dotted keys before), and which
/// values are closed (inline tables and arrays). Keyed by key path, without array indices.
private final class FlagNode {
    var flags = Set<Flag>()
    var recursive = Set<Flag>()
    var nested: [String: FlagNode] = [:]
}

private final class Flags {
    private let root = FlagNode()
    private var pending: [([String], Flag)] = []

    func addPending(_ key: [String], _ flag: Flag) { pending.append((key, flag)) }

    func finalizePending() {
        for (key, flag) in pending { set(key, flag, recursive: false) }
        pending.removeAll()
    }

    func unsetAll(_ key: [String]) {
        var node = root
        for k in key.dropLast() {
            guard let next = node.nested[k] else { return }
            node = next
        }
        node.nested[key.last!] = nil
    }

    func set(_ key: [String], _ flag: Flag, recursive: Bool) {
        var node = root
        for k in key {
            if node.nested[k] == nil { node.nested[k] = FlagNode() }
            node = node.nested[k]!
        }
        if recursive { node.recursive.insert(flag) } else { node.flags.insert(flag) }
    }

    func has(_ key: [String], _ flag: Flag) -> Bool {
        guard let stem = key.last else { return false }
        var node = root
        for k in key.dropLast() {
            guard let inner = node.nested[k] else { return false }
            if inner.recursive.contains(flag) { return true }
            node = inner
        }
        guard let inner = node.nested[stem] else { return false }
        return inner.flags.contains(flag) || inner.recursive.contains(flag)
    }
}

/// The document being built: tables are references while parsing.
private final class Table {
    enum Entry {
        case value(TOMLValue)
        case table(Table)
        case tables([Table])
    }

    var order: [String] = []
    var entries: [String: Entry] = [:]

    func set(_ key: String, _ entry: Entry) {
        if entries[key] == nil { order.append(key) }
        entries[key] = entry
    }

    /// tomllib's get_or_create_nest: walks (into the last table of an array of tables), making
    /// what is missing; nil where a value is in the way.
    func nest(_ key: [String], accessLists: Bool = true) -> Table? {
        var table = self
        for k in key {
            switch table.entries[k] {
            case nil:
                let t = Table()
                table.set(k, .table(t))
                table = t
            case .table(let t)?: table = t
            case .tables(let list)? where accessLists: table = list.last!
            default: return nil
            }
        }
        return table
    }

    var value: TOMLTable {
        var out = TOMLTable()
        for k in order {
            switch entries[k]! {
            case .value(let v): out[k] = v
            case .table(let t): out[k] = .table(t.value)
            case .tables(let list): out[k] = .array(list.map { .table($0.value) })
            }
        }
        return out
    }
}

private struct Reader {
    let src: [UInt8]
    var pos = 0
    var depth = 0

    init(_ bytes: [UInt8]) {
        // CRLF is a newline; a lone CR is an illegal control character.
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x0D, i + 1 < bytes.count, bytes[i + 1] == 0x0A { i += 1; continue }
            out.append(bytes[i])
            i += 1
        }
        src = out
    }

    // MARK: Characters

    var char: UInt8? { pos < src.count ? src[pos] : nil }

    func startsWith(_ s: String, at p: Int? = nil) -> Bool {
        let p = p ?? pos
        let b = Array(s.utf8)
        return p + b.count <= src.count && src[p..<(p + b.count)].elementsEqual(b)
    }

    static func isControl(_ c: UInt8) -> Bool { c < 0x20 || c == 0x7F }
    static func isBareKey(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F
    }
    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isHex(_ c: UInt8) -> Bool { isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) }

    func error(_ message: String, at p: Int? = nil) -> TOMLError {
        let p = min(p ?? pos, src.count)
        var line = 1, column = 1
        for b in src[0..<p] {
            if b == 0x0A { line += 1; column = 1 } else if b & 0xC0 != 0x80 { column += 1 }
        }
        return TOMLError(line: line, column: column, message: message)
    }

    mutating func skipWhitespace() { while let c = char, c == 0x20 || c == 0x09 { pos += 1 } }
    mutating func skipWhitespaceAndNewlines() { while let c = char, c == 0x20 || c == 0x09 || c == 0x0A { pos += 1 } }

    mutating func skipComment() throws {
        guard char == UInt8(ascii: "#") else { return }
        pos += 1
        while let c = char, c != 0x0A {
            if Self.isControl(c) && c != 0x09 { throw error("control character in a comment") }
            pos += 1
        }
    }

    mutating func skipCommentsAndArrayWhitespace() throws {
        while true {
            let before = pos
            skipWhitespaceAndNewlines()
            try skipComment()
            if pos == before { return }
        }
    }

    // MARK: Document

    mutating func document() throws -> TOMLTable {
        // Text that is not UTF-8 is no TOML document.
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = src.makeIterator()
        var offset = 0
        decoding: while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .emptyInput: break decoding
            case .error: throw error("the file is not valid UTF-8", at: offset)
            }
        }
        let root = Table()
        let flags = Flags()
        var header: [String] = []
        while true {
            skipWhitespace()
            guard let c = char else { break }
            if c == 0x0A { pos += 1; continue }
            if Self.isBareKey(c) || c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                try keyValue(root, flags, header)
                skipWhitespace()
            } else if c == UInt8(ascii: "[") {
                flags.finalizePending()
                header = pos + 1 < src.count && src[pos + 1] == UInt8(ascii: "[") ? try arrayOfTablesHeader(root, flags) : try tableHeader(root, flags)
                skipWhitespace()
            } else if c != UInt8(ascii: "#") {
                throw error("invalid statement")
            }
            try skipComment()
            guard let end = char else { break }
            guard end == 0x0A else { throw error("expected a newline or the end of the document after a statement") }
            pos += 1
        }
        return root.value
    }

    mutating func tableHeader(_ root: Table, _ flags: Flags) throws -> [String] {
        let start = pos
        pos += 1
        skipWhitespace()
        let key = try parseKey()
        if flags.has(key, .explicitNest) || flags.has(key, .frozen) { throw error("table [\(key.joined(separator: "."))] is defined twice", at: start) }
        flags.set(key, .explicitNest, recursive: false)
        guard root.nest(key) != nil else { throw error("[\(key.joined(separator: "."))] would overwrite a value", at: start) }
        guard char == UInt8(ascii: "]") else { throw error("expected ']' at the end of a table header") }
        pos += 1
        return key
    }

    mutating func arrayOfTablesHeader(_ root: Table, _ flags: Flags) throws -> [String] {
        let start = pos
        pos += 2
        skipWhitespace()
        let key = try parseKey()
        if flags.has(key, .frozen) { throw error("[[\(key.joined(separator: "."))]] would change a closed value", at: start) }
        flags.unsetAll(key)
        flags.set(key, .explicitNest, recursive: false)
        guard let parent = root.nest(Array(key.dropLast())) else { throw error("[[\(key.joined(separator: "."))]] would overwrite a value", at: start) }
        let stem = key.last!
        switch parent.entries[stem] {
        case nil: parent.set(stem, .tables([Table()]))
        case .tables(let list)?: parent.set(stem, .tables(list + [Table()]))
        default: throw error("[[\(key.joined(separator: "."))]] would overwrite a value", at: start)
        }
        guard startsWith("]]") else { throw error("expected ']]' at the end of an array-of-tables header") }
        pos += 2
        return key
    }

    mutating func keyValue(_ root: Table, _ flags: Flags, _ header: [String]) throws {
        let start = pos
        let (key, value) = try keyValuePair()
        let parent = Array(key.dropLast()), stem = key.last!
        for i in 1..<max(1, key.count) {
            let container = header + key[0..<i]
            if flags.has(container, .explicitNest) { throw error("dotted key '\(key.joined(separator: "."))' redefines a table", at: start) }
            flags.addPending(container, .explicitNest)
        }
        if flags.has(header + parent, .frozen) { throw error("'\(key.joined(separator: "."))' would change a closed value", at: start) }
        guard let table = root.nest(header + parent) else { throw error("'\(key.joined(separator: "."))' would overwrite a value", at: start) }
        guard table.entries[stem] == nil else { throw error("'\(key.joined(separator: "."))' is defined twice", at: start) }
        if case .array = value { flags.set(header + key, .frozen, recursive: true) }
        if case .table = value { flags.set(header + key, .frozen, recursive: true) }
        table.set(stem, .value(value))
    }

    mutating func keyValuePair() throws -> ([String], TOMLValue) {
        let key = try parseKey()
        guard char == UInt8(ascii: "=") else { throw error("expected '=' after a key") }
        pos += 1
        skipWhitespace()
        return (key, try parseValue())
    }

    mutating func parseKey() throws -> [String] {
        var key = [try parseKeyPart()]
        skipWhitespace()
        while char == UInt8(ascii: ".") {
            pos += 1
            skipWhitespace()
            key.append(try parseKeyPart())
            skipWhitespace()
        }
        return key
    }

    mutating func parseKeyPart() throws -> String {
        guard let c = char else { throw error("expected a key") }
        if Self.isBareKey(c) {
            let start = pos
            while let d = char, Self.isBareKey(d) { pos += 1 }
            return String(decoding: src[start..<pos], as: UTF8.self)
        }
        if c == UInt8(ascii: "'") { return try literalString() }
        if c == UInt8(ascii: "\"") { pos += 1; return try basicString(multiline: false) }
        throw error("invalid first character of a key")
    }

    // MARK: Values

    mutating func parseValue() throws -> TOMLValue {
        guard let c = char else { throw error("expected a value") }
        switch c {
        case UInt8(ascii: "\""):
            if startsWith("\"\"\"") { return .string(try multilineString(literal: false)) }
            pos += 1
            return .string(try basicString(multiline: false))
        case UInt8(ascii: "'"):
            if startsWith("'''") { return .string(try multilineString(literal: true)) }
            return .string(try literalString())
        case UInt8(ascii: "t") where startsWith("true"): pos += 4; return .boolean(true)
        case UInt8(ascii: "f") where startsWith("false"): pos += 5; return .boolean(false)
        case UInt8(ascii: "["): return try nested { try $0.array() }
        case UInt8(ascii: "{"): return try nested { try $0.inlineTable() }
        default: break
        }
        if let dateTime = try dateTime() { return dateTime }
        if let end = localTime(at: pos) {
            defer { pos = end }
            return .localTime(String(decoding: src[pos..<end], as: UTF8.self))
        }
        if let number = try number() { return number }
        for special in ["inf", "nan", "+inf", "-inf", "+nan", "-nan"] where startsWith(special) {
            pos += special.utf8.count
            let negative = special.hasPrefix("-")
            return .float(special.hasSuffix("inf") ? (negative ? -.infinity : .infinity) : (negative ? -.nan : .nan))
        }
        throw error("invalid value")
    }

    mutating func nested(_ body: (inout Reader) throws -> TOMLValue) throws -> TOMLValue {
        depth += 1
        defer { depth -= 1 }
        guard depth <= TOMLReader.maximumDepth else { throw error("nested more than \(TOMLReader.maximumDepth) deep") }
        return try body(&self)
    }

    mutating func array() throws -> TOMLValue {
        pos += 1
        var items: [TOMLValue] = []
        try skipCommentsAndArrayWhitespace()
        if char == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            items.append(try parseValue())
            try skipCommentsAndArrayWhitespace()
            if char == UInt8(ascii: "]") { pos += 1; return .array(items) }
            guard char == UInt8(ascii: ",") else { throw error("unclosed array: expected ',' or ']'") }
            pos += 1
            try skipCommentsAndArrayWhitespace()
            if char == UInt8(ascii: "]") { pos += 1; return .array(items) }
        }
    }

    mutating func inlineTable() throws -> TOMLValue {
        pos += 1
        let table = Table()
        let flags = Flags()
        skipWhitespace()
        if char == UInt8(ascii: "}") { pos += 1; return .table(table.value) }
        while true {
            let start = pos
            let (key, value) = try keyValuePair()
            let stem = key.last!
            if flags.has(key, .frozen) { throw error("'\(key.joined(separator: "."))' would change a closed value", at: start) }
            guard let nest = table.nest(Array(key.dropLast()), accessLists: false) else {
                throw error("'\(key.joined(separator: "."))' would overwrite a value", at: start)
            }
            guard nest.entries[stem] == nil else { throw error("duplicate key '\(stem)' in an inline table", at: start) }
            nest.set(stem, .value(value))
            skipWhitespace()
            if char == UInt8(ascii: "}") { pos += 1; return .table(table.value) }
            guard char == UInt8(ascii: ",") else { throw error("unclosed inline table: expected ',' or '}'") }
            switch value {
            case .array, .table: flags.set(key, .frozen, recursive: true)
            default: break
            }
            pos += 1
            skipWhitespace()
        }
    }

    // MARK: Strings

    mutating func literalString() throws -> String {
        pos += 1
        let start = pos
        while true {
            guard let c = char else { throw error("unterminated string") }
            if c == UInt8(ascii: "'") { break }
            if Self.isControl(c) && c != 0x09 { throw error("control character in a string") }
            pos += 1
        }
        defer { pos += 1 }
        return String(decoding: src[start..<pos], as: UTF8.self)
    }

    mutating func multilineString(literal: Bool) throws -> String {
        pos += 3
        if char == 0x0A { pos += 1 }
        var result: String
        let delimiter: UInt8 = literal ? UInt8(ascii: "'") : UInt8(ascii: "\"")
        if literal {
            let start = pos
            while !startsWith("'''") {
                guard let c = char else { throw error("unterminated string") }
                if Self.isControl(c) && c != 0x09 && c != 0x0A { throw error("control character in a string") }
                pos += 1
            }
            result = String(decoding: src[start..<pos], as: UTF8.self)
            pos += 3
        } else {
            result = try basicString(multiline: true)
        }
        // Up to two quotes may end the string right before its closing three.
        for _ in 0..<2 {
            guard char == delimiter else { break }
            result.unicodeScalars.append(Unicode.Scalar(delimiter))
            pos += 1
        }
        return result
    }

    /// After the opening quote(s); returns after the closing one(s).
    mutating func basicString(multiline: Bool) throws -> String {
        var bytes: [UInt8] = []
        while true {
            guard let c = char else { throw error("unterminated string") }
            if c == UInt8(ascii: "\"") {
                if !multiline { pos += 1; break }
                if startsWith("\"\"\"") { pos += 3; break }
                bytes.append(c)
                pos += 1
                continue
            }
            if c == UInt8(ascii: "\\") {
                try escape(into: &bytes, multiline: multiline)
                continue
            }
            if Self.isControl(c) && c != 0x09 && !(multiline && c == 0x0A) { throw error("control character in a string") }
            bytes.append(c)
            pos += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func escape(into bytes: inout [UInt8], multiline: Bool) throws {
        let start = pos
        pos += 1
        guard let e = char else { throw error("unterminated string") }
        pos += 1
        if multiline && (e == 0x20 || e == 0x09 || e == 0x0A) {
            // A line-ending backslash: the newline and the whitespace after it go.
            if e != 0x0A {
                skipWhitespace()
                guard let next = char else { return }
                guard next == 0x0A else { throw error("unescaped '\\' in a string", at: start) }
                pos += 1
            }
            skipWhitespaceAndNewlines()
            return
        }
        let simple: [UInt8: UInt8] = [UInt8(ascii: "b"): 0x08, UInt8(ascii: "t"): 0x09, UInt8(ascii: "n"): 0x0A, UInt8(ascii: "f"): 0x0C,
                                      UInt8(ascii: "r"): 0x0D, UInt8(ascii: "\""): 0x22, UInt8(ascii: "\\"): 0x5C]
        if let b = simple[e] { bytes.append(b); return }
        let length = e == UInt8(ascii: "u") ? 4 : e == UInt8(ascii: "U") ? 8 : 0
        guard length > 0 else { throw error("invalid escape in a string", at: start) }
        guard pos + length <= src.count, src[pos..<(pos + length)].allSatisfy(Self.isHex),
              let code = UInt32(String(decoding: src[pos..<(pos + length)], as: UTF8.self), radix: 16) else {
            throw error("invalid hex value in an escape", at: start)
        }
        guard let scalar = Unicode.Scalar(code) else { throw error("escaped character is not a Unicode scalar value", at: start) }
        pos += length
        bytes += Array(String(scalar).utf8)
    }

    // MARK: Dates and times

    func digits(_ n: Int, at p: Int) -> Int? {
        guard p + n <= src.count, src[p..<(p + n)].allSatisfy(Self.isDigit) else { return nil }
        return src[p..<(p + n)].reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }

    /// `HH:MM:SS[.fraction]`: the end, or nil.
    func localTime(at p: Int) -> Int? {
        guard let h = digits(2, at: p), h <= 23, p + 2 < src.count, src[p + 2] == UInt8(ascii: ":"),
              let m = digits(2, at: p + 3), m <= 59, p + 5 < src.count, src[p + 5] == UInt8(ascii: ":"),
              let s = digits(2, at: p + 6), s <= 59 else { return nil }
        var end = p + 8
        if end + 1 < src.count, src[end] == UInt8(ascii: "."), Self.isDigit(src[end + 1]) {
            end += 1
            while end < src.count, Self.isDigit(src[end]) { end += 1 }
        }
        return end
    }

    mutating func dateTime() throws -> TOMLValue? {
        let p = pos
        guard let year = digits(4, at: p), p + 4 < src.count, src[p + 4] == UInt8(ascii: "-"),
              let month = digits(2, at: p + 5), (1...12).contains(month), p + 7 < src.count, src[p + 7] == UInt8(ascii: "-"),
              let day = digits(2, at: p + 8), (1...31).contains(day) else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard year >= 1, day <= days else { throw error("invalid date or date-time") }
        var end = p + 10
        var kind = 0  // 0 date, 1 local date-time, 2 offset date-time
        if end < src.count, [UInt8(ascii: "T"), UInt8(ascii: "t"), 0x20].contains(src[end]), let timeEnd = localTime(at: end + 1) {
            end = timeEnd
            kind = 1
            if end < src.count, src[end] == UInt8(ascii: "Z") || src[end] == UInt8(ascii: "z") {
                end += 1
                kind = 2
            } else if end < src.count, src[end] == UInt8(ascii: "+") || src[end] == UInt8(ascii: "-"),
                      let h = digits(2, at: end + 1), h <= 23, end + 3 < src.count, src[end + 3] == UInt8(ascii: ":"),
                      let m = digits(2, at: end + 4), m <= 59 {
                end += 6
                kind = 2
            }
        }
        let text = String(decoding: src[p..<end], as: UTF8.self)
        pos = end
        return [TOMLValue.localDate(text), .localDateTime(text), .offsetDateTime(text)][kind]
    }

    // MARK: Numbers

    /// Digits of `isDigit` kind with single underscores between them: the end, or nil.
    func run(at p: Int, _ isDigit: (UInt8) -> Bool) -> Int? {
        guard p < src.count, isDigit(src[p]) else { return nil }
        var end = p + 1
        while end < src.count {
            if isDigit(src[end]) { end += 1; continue }
            if src[end] == UInt8(ascii: "_"), end + 1 < src.count, isDigit(src[end + 1]) { end += 2; continue }
            break
        }
        return end
    }

    mutating func number() throws -> TOMLValue? {
        let p = pos
        if char == UInt8(ascii: "0"), p + 1 < src.count {
            let radix: Int?, isRadixDigit: ((UInt8) -> Bool)?
            switch src[p + 1] {
            case UInt8(ascii: "x"): radix = 16; isRadixDigit = Self.isHex
            case UInt8(ascii: "o"): radix = 8; isRadixDigit = { $0 >= 0x30 && $0 <= 0x37 }
            case UInt8(ascii: "b"): radix = 2; isRadixDigit = { $0 == 0x30 || $0 == 0x31 }
            default: radix = nil; isRadixDigit = nil
            }
            if let radix, let isRadixDigit, let end = run(at: p + 2, isRadixDigit) {
                let text = String(decoding: src[(p + 2)..<end].filter { $0 != UInt8(ascii: "_") }, as: UTF8.self)
                guard let v = Int(text, radix: radix) else { throw error("integer does not fit in 64 bits") }
                pos = end
                return .integer(v)
            }
        }
        var q = p
        if q < src.count, src[q] == UInt8(ascii: "+") || src[q] == UInt8(ascii: "-") { q += 1 }
        guard q < src.count, Self.isDigit(src[q]) else { return nil }
        var end = src[q] == UInt8(ascii: "0") ? q + 1 : run(at: q, Self.isDigit)!
        var isFloat = false
        if end + 1 < src.count, src[end] == UInt8(ascii: "."), let f = run(at: end + 1, Self.isDigit) { end = f; isFloat = true }
        if end < src.count, src[end] == UInt8(ascii: "e") || src[end] == UInt8(ascii: "E") {
            var e = end + 1
            if e < src.count, src[e] == UInt8(ascii: "+") || src[e] == UInt8(ascii: "-") { e += 1 }
            if let x = run(at: e, Self.isDigit) { end = x; isFloat = true }
        }
        let text = String(decoding: src[p..<end].filter { $0 != UInt8(ascii: "_") }, as: UTF8.self)
        pos = end
        if isFloat {
            guard let d = Double(text) else { throw error("invalid float") }
            return .float(d)
        }
        guard let v = Int(text) else { throw error("integer does not fit in 64 bits", at: p) }
        return .integer(v)
    }
}
