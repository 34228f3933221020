/// Splits Nix source into tokens, following Nix 2.8's lexer (longest match between paths, URIs,
/// numbers and identifiers; `6/3` is a path, `x:x` a URI).
struct Lexer {
    private let bytes: [UInt8]
    private let file: String
    private var index = 0
    private var line = 1
    private var column = 1

    static let keywords: Set<String> = ["if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"]

    init(_ source: [UInt8], file: String) {
        // Nix reads source as a C string: a NUL byte ends it.
        bytes = source.firstIndex(of: 0).map { Array(source[..<$0]) } ?? source
        self.file = file
    }

    static func tokenize(_ source: [UInt8], file: String) throws -> [Token] {
        var lexer = Lexer(source, file: file)
        return try lexer.tokens(untilClosingBrace: false)
    }

    private var location: SourceLocation { SourceLocation(file: file, line: line, column: column) }

    private func peek(_ offset: Int = 0) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private mutating func advance(_ n: Int = 1) {
        for _ in 0..<n {
            guard index < bytes.count else { return }
            if bytes[index] == 0x0A { line += 1; column = 1 } else if bytes[index] & 0xC0 != 0x80 { column += 1 }
            index += 1
        }
    }

    private func error(_ message: String, at loc: SourceLocation? = nil) -> NixSyntaxError {
        NixSyntaxError(location: loc ?? location, message: message)
    }

    /// Tokens up to the end (or, inside `${`, up to the matching `}`, which is consumed).
    private mutating func tokens(untilClosingBrace: Bool) throws -> [Token] {
        var out: [Token] = []
        var depth = 0
        while true {
            try skipTrivia()
            let start = location
            guard let c = peek() else {
                if untilClosingBrace { throw error("unterminated ${ … } interpolation") }
                out.append(Token(kind: .end, location: start))
                return out
            }
            if untilClosingBrace && c == UInt8(ascii: "}") && depth == 0 {
                advance()
                out.append(Token(kind: .end, location: start))
                return out
            }
            let token = try nextToken(start)
            if token.kind == .symbol("{") || token.kind == .symbol("${") { depth += 1 }
            if token.kind == .symbol("}") { depth -= 1 }
            out.append(token)
        }
    }

    private mutating func skipTrivia() throws {
        while let c = peek() {
            if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D {
                advance()
            } else if c == UInt8(ascii: "#") {
                while let d = peek(), d != 0x0A { advance() }
            } else if c == UInt8(ascii: "/") && peek(1) == UInt8(ascii: "*") {
                let start = location
                advance(2)
                while true {
                    guard let d = peek() else { throw error("unterminated /* comment", at: start) }
                    if d == UInt8(ascii: "*") && peek(1) == UInt8(ascii: "/") { advance(2); break }
                    advance()
                }
            } else {
                return
            }
        }
    }

    private mutating func nextToken(_ start: SourceLocation) throws -> Token {
        let c = peek()!
        if c == UInt8(ascii: "\"") {
            advance()
            return Token(kind: .string, location: start, parts: try doubleQuoted())
        }
        if c == UInt8(ascii: "'") && peek(1) == UInt8(ascii: "'") {
            advance(2)
            // As Nix's lexer: spaces and a newline right after the opening '' are dropped.
            let spaces = run(from: index) { $0 == 0x20 }
            if index + spaces < bytes.count, bytes[index + spaces] == 0x0A { advance(spaces + 1) }
            return Token(kind: .string, location: start, parts: try indented())
        }
        if c == UInt8(ascii: "<"), let n = matchSearchPath() {
            let text = String(decoding: bytes[index + 1..<index + n - 1], as: UTF8.self)
            advance(n)
            return Token(kind: .searchPath(text), location: start)
        }
        // Longest match among the word-like tokens; ties go to the earlier rule, as in flex.
        let candidates: [(Int, Int)] = [
            (matchIdentifier(), 0), (matchInteger(), 1), (matchFloat(), 2),
            (matchPath(), 3), (matchHomePath(), 4), (matchURI(), 5),
        ]
        let best = candidates.max { a, b in a.0 < b.0 || (a.0 == b.0 && a.1 > b.1) }!
        if best.0 > 0 {
            let text = String(decoding: bytes[index..<index + best.0], as: UTF8.self)
            if best.1 == 3 || best.1 == 4, index + best.0 + 1 < bytes.count,
               bytes[index + best.0] == UInt8(ascii: "$"), bytes[index + best.0 + 1] == UInt8(ascii: "{") {
                throw error("paths with ${…} interpolation are not supported by ferry's reader")
            }
            if (best.1 == 3 || best.1 == 4) && text.hasSuffix("/") {
                throw error("path '\(text)' has a trailing slash")
            }
            advance(best.0)
            switch best.1 {
            case 0: return Token(kind: Lexer.keywords.contains(text) ? .keyword(text) : .identifier(text), location: start)
            case 1:
                guard let v = Int(text) else { throw error("invalid integer '\(text)'", at: start) }
                return Token(kind: .integer(v), location: start)
            case 2:
                guard let v = Double(text), v.isFinite else { throw error("invalid float '\(text)'", at: start) }
                return Token(kind: .float(v), location: start)
            case 3: return Token(kind: .path(text), location: start)
            case 4: return Token(kind: .homePath(text), location: start)
            default: return Token(kind: .uri(text), location: start)
            }
        }
        for symbol in ["...", "==", "!=", "<=", ">=", "&&", "||", "->", "//", "++", "${"] {
            if matches(symbol) {
                advance(symbol.utf8.count)
                return Token(kind: .symbol(symbol), location: start)
            }
        }
        if "{}[]();:,.=?@+-*/<>!".utf8.contains(c) {
            advance()
            return Token(kind: .symbol(String(UnicodeScalar(c))), location: start)
        }
        throw error("unexpected character '\(String(decoding: [c], as: UTF8.self))'")
    }

    private func matches(_ s: String) -> Bool {
        let u = Array(s.utf8)
        return index + u.count <= bytes.count && Array(bytes[index..<index + u.count]) == u
    }

    // MARK: - Word-like tokens (lengths of the longest match at `index`, 0 for none)

    private static func isLetter(_ c: UInt8) -> Bool { (c | 0x20) >= UInt8(ascii: "a") && (c | 0x20) <= UInt8(ascii: "z") }
    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
    private static func isPathChar(_ c: UInt8) -> Bool {
        isLetter(c) || isDigit(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
    }

    private func run(from i: Int, _ pred: (UInt8) -> Bool) -> Int {
        var j = i
        while j < bytes.count && pred(bytes[j]) { j += 1 }
        return j - i
    }

    private func matchIdentifier() -> Int {
        guard let c = peek(), Lexer.isLetter(c) || c == UInt8(ascii: "_") else { return 0 }
        return 1 + run(from: index + 1) { Lexer.isLetter($0) || Lexer.isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "'") || $0 == UInt8(ascii: "-") }
    }

    private func matchInteger() -> Int { run(from: index, Lexer.isDigit) }

    private func matchFloat() -> Int {
        var i = index
        if let c = peek(), c >= UInt8(ascii: "1") && c <= UInt8(ascii: "9") {
            i += 1 + run(from: i + 1, Lexer.isDigit)
            guard i < bytes.count, bytes[i] == UInt8(ascii: ".") else { return 0 }
            i += 1
            i += run(from: i, Lexer.isDigit)
        } else {
            if peek() == UInt8(ascii: "0") { i += 1 }
            guard i < bytes.count, bytes[i] == UInt8(ascii: ".") else { return 0 }
            let digits = run(from: i + 1, Lexer.isDigit)
            guard digits > 0 else { return 0 }
            i += 1 + digits
        }
        if i < bytes.count, bytes[i] | 0x20 == UInt8(ascii: "e") {
            var j = i + 1
            if j < bytes.count, bytes[j] == UInt8(ascii: "+") || bytes[j] == UInt8(ascii: "-") { j += 1 }
            let digits = run(from: j, Lexer.isDigit)
            if digits > 0 { i = j + digits }
        }
        return i - index
    }

    /// `[path-chars]*(/[path-chars]+)+/?`
    private func matchPath(from start: Int? = nil) -> Int {
        let begin = start ?? index
        var i = begin + run(from: begin, Lexer.isPathChar)
        var segments = 0
        while i < bytes.count, bytes[i] == UInt8(ascii: "/") {
            let n = run(from: i + 1, Lexer.isPathChar)
            guard n > 0 else { break }
            i += 1 + n
            segments += 1
        }
        guard segments > 0 else { return 0 }
        if i < bytes.count, bytes[i] == UInt8(ascii: "/") { i += 1 }
        return i - (start.map { _ in begin } ?? index)
    }

    private func matchHomePath() -> Int {
        guard peek() == UInt8(ascii: "~"), peek(1) == UInt8(ascii: "/") else { return 0 }
        let n = matchPath(from: index + 1)
        return n > 0 ? 1 + n : 0
    }

    private func matchURI() -> Int {
        guard let c = peek(), Lexer.isLetter(c) else { return 0 }
        let scheme = 1 + run(from: index + 1) { Lexer.isLetter($0) || Lexer.isDigit($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
        guard index + scheme < bytes.count, bytes[index + scheme] == UInt8(ascii: ":") else { return 0 }
        let allowed = Set("%/?:@&=+$,-_.!~*'".utf8)
        let rest = run(from: index + scheme + 1) { Lexer.isLetter($0) || Lexer.isDigit($0) || allowed.contains($0) }
        return rest > 0 ? scheme + 1 + rest : 0
    }

    private func matchSearchPath() -> Int? {
        var i = index + 1
        let first = run(from: i, Lexer.isPathChar)
        guard first > 0 else { return nil }
        i += first
        while i < bytes.count, bytes[i] == UInt8(ascii: "/") {
            let n = run(from: i + 1, Lexer.isPathChar)
            guard n > 0 else { return nil }
            i += 1 + n
        }
        guard i < bytes.count, bytes[i] == UInt8(ascii: ">") else { return nil }
        return i + 1 - index
    }

    // MARK: - Strings

    private mutating func interpolation() throws -> StringPart {
        let start = location
        advance(2)  // ${
        return .interpolation(try tokens(untilClosingBrace: true), start)
    }

    private mutating func doubleQuoted() throws -> [StringPart] {
        var parts: [StringPart] = []
        var text: [UInt8] = []
        let start = location
        while true {
            guard let c = peek() else { throw error("unterminated string", at: start) }
            if c == UInt8(ascii: "\"") { advance(); break }
            if c == UInt8(ascii: "\\") {
                guard let e = peek(1) else { throw error("unterminated string", at: start) }
                switch e {
                case UInt8(ascii: "n"): text.append(0x0A)
                case UInt8(ascii: "r"): text.append(0x0D)
                case UInt8(ascii: "t"): text.append(0x09)
                default: text.append(e)
                }
                advance(2)
            } else if c == UInt8(ascii: "$") && peek(1) == UInt8(ascii: "{") {
                if !text.isEmpty { parts.append(.text(text)); text = [] }
                parts.append(try interpolation())
            } else if c == UInt8(ascii: "$") && peek(1) == UInt8(ascii: "$") {
                text += [c, c]  // "$$" keeps both, and a following "{" is plain text
                advance(2)
            } else {
                text.append(c)
                advance()
            }
        }
        if !text.isEmpty { parts.append(.text(text)) }
        return parts
    }

    /// `''…''`: escapes `'''`, `''$`, `''\x`; then Nix's indentation stripping.
    private mutating func indented() throws -> [StringPart] {
        var raw: [IndentedPiece] = []
        var text: [UInt8] = []
        let start = location
        func flush() { if !text.isEmpty { raw.append(.text(text, escaped: false)); text = [] } }
        while true {
            guard let c = peek() else { throw error("unterminated '' string", at: start) }
            if c == UInt8(ascii: "'") && peek(1) == UInt8(ascii: "'") {
                if peek(2) == UInt8(ascii: "'") { flush(); raw.append(.text(Array("''".utf8), escaped: true)); advance(3); continue }
                if peek(2) == UInt8(ascii: "$") { flush(); raw.append(.text([UInt8(ascii: "$")], escaped: true)); advance(3); continue }
                if peek(2) == UInt8(ascii: "\\") {
                    guard let e = peek(3) else { throw error("unterminated '' string", at: start) }
                    flush()
                    let v: UInt8 = e == UInt8(ascii: "n") ? 0x0A : e == UInt8(ascii: "r") ? 0x0D : e == UInt8(ascii: "t") ? 0x09 : e
                    raw.append(.text([v], escaped: true))
                    advance(4)
                    continue
                }
                advance(2)
                break
            }
            if c == UInt8(ascii: "$") && peek(1) == UInt8(ascii: "{") {
                flush()
                guard case .interpolation(let toks, let loc) = try interpolation() else { continue }
                raw.append(.interpolation(toks, loc))
                continue
            }
            if c == UInt8(ascii: "$") && peek(1) == UInt8(ascii: "$") {
                text += [c, c]
                advance(2)
                continue
            }
            text.append(c)
            advance()
        }
        flush()
        return IndentedPiece.strip(raw)
    }
}

/// A piece of a '' string before indentation stripping. Escaped text counts as content, never as indentation.
enum IndentedPiece {
    case text([UInt8], escaped: Bool)
    case interpolation([Token], SourceLocation)

    /// Nix 2.8's stripIndentation (parser.y), ported step for step. The lexer already dropped a
    /// first line of only spaces.
    static func strip(_ pieces: [IndentedPiece]) -> [StringPart] {
        var atStartOfLine = true
        var minIndent = Int.max
        var curIndent = 0
        for piece in pieces {
            guard case .text(let bytes, false) = piece else {
                // Interpolations and escapes end the start-of-line whitespace.
                if atStartOfLine { atStartOfLine = false; minIndent = min(minIndent, curIndent) }
                continue
            }
            for b in bytes {
                if atStartOfLine {
                    if b == 0x20 { curIndent += 1 }
                    else if b == 0x0A { curIndent = 0 }
                    else { atStartOfLine = false; minIndent = min(minIndent, curIndent) }
                } else if b == 0x0A {
                    atStartOfLine = true
                    curIndent = 0
                }
            }
        }

        var out: [StringPart] = []
        atStartOfLine = true
        var curDropped = 0
        for (i, piece) in pieces.enumerated() {
            switch piece {
            case .interpolation(let toks, let loc):
                atStartOfLine = false
                curDropped = 0
                out.append(.interpolation(toks, loc))
            case .text(let bytes, _):
                var s2: [UInt8] = []
                for b in bytes {
                    if atStartOfLine {
                        if b == 0x20 {
                            if curDropped >= minIndent { s2.append(b) }
                            curDropped += 1
                        } else if b == 0x0A {
                            curDropped = 0
                            s2.append(b)
                        } else {
                            atStartOfLine = false
                            curDropped = 0
                            s2.append(b)
                        }
                    } else {
                        s2.append(b)
                        if b == 0x0A { atStartOfLine = true }
                    }
                }
                if i == pieces.count - 1, let nl = s2.lastIndex(of: 0x0A), s2[(nl + 1)...].allSatisfy({ $0 == 0x20 }) {
                    s2.removeSubrange((nl + 1)...)
                }
                out.append(.text(s2))
            }
        }
        return out
    }
}
