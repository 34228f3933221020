/// A place in a Nix source: file, 1-based line and column.
public struct SourceLocation: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// One piece of a string literal: text, or an interpolated expression's tokens.
enum StringPart {
    case text([UInt8])
    case interpolation([Token], SourceLocation)
}

enum TokenKind: Equatable {
    case identifier(String)
    case integer(Int)
    case float(Double)
    case path(String)
    case homePath(String)
    case searchPath(String)
    case uri(String)
    case string
    case keyword(String)
    case symbol(String)
    case end

    var display: String {
        switch self {
        case .identifier(let s): return "identifier '\(s)'"
        case .integer(let i): return "integer \(i)"
        case .float(let f): return "float \(f)"
        case .path(let p), .homePath(let p): return "path '\(p)'"
        case .searchPath(let p): return "search path <\(p)>"
        case .uri(let u): return "URI '\(u)'"
        case .string: return "string"
        case .keyword(let k): return "'\(k)'"
        case .symbol(let s): return "'\(s)'"
        case .end: return "end of input"
        }
    }
}

struct Token {
    var kind: TokenKind
    var location: SourceLocation
    /// For `.string`: the parts, already unescaped (and, for '' strings, with indentation stripped).
    var parts: [StringPart] = []
}

/// A syntax error at a place, saying what was expected.
public struct NixSyntaxError: Error, Equatable, CustomStringConvertible {
    public let location: SourceLocation
    public let message: String

    public var description: String { "\(location): syntax error: \(message)" }
}
