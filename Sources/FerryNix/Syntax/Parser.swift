import Foundation

/// A recursive-descent parser for the whole Nix grammar, with Nix 2.8's operator precedences
/// (parser.y). Relative paths are resolved against `baseDirectory`.
public struct Parser {
    private var tokens: [Token]
    private var position = 0
    /// Nix's parser is bison's, whose stack holds 10,000 states ("memory exhausted" past
    /// that). Each nesting construct adds what it costs there, measured against
    /// nix-instantiate 2.8, so ferry accepts and refuses the same nesting depths.
    private var depth = 0
    private static let maximumDepth = 10_000
    private let baseDirectory: String
    private let file: String

    /// Parses a whole file or expression text.
    public static func parse(_ source: String, file: String = "«string»", baseDirectory: String) throws -> Expr {
        try parse(bytes: Array(source.utf8), file: file, baseDirectory: baseDirectory)
    }

    /// Source as bytes: string literals keep bytes that are not UTF-8, as Nix keeps them.
    public static func parse(bytes source: [UInt8], file: String = "«string»", baseDirectory: String) throws -> Expr {
        try NativeStack.run {
            var parser = Parser(tokens: try Lexer.tokenize(source, file: file), file: file, baseDirectory: baseDirectory)
            let expr = try parser.parseExpr()
            try parser.expectEnd()
            try ScopeCheck.check(expr, ScopeCheck.globals, underWith: false)
            return expr
        }
    }

    /// Parses what `body` parses one nesting level deeper: `cost` states, and `room` states the
    /// innermost part of this construct needs, as bison counts them.
    private mutating func nested<T>(cost: Int, room: Int, _ body: (inout Parser) throws -> T) throws -> T {
        let location = current.location
        depth += cost
        defer { depth -= cost }
        if depth + room > Self.maximumDepth || NativeStack.exhausted {
            throw NixSyntaxError(location: location, message: "memory exhausted")
        }
        return try body(&self)
    }

    private init(tokens: [Token], file: String, baseDirectory: String) {
        self.tokens = tokens
        self.file = file
        self.baseDirectory = baseDirectory
    }

    // MARK: - Token helpers

    private var current: Token { tokens[position] }
    private var kind: TokenKind { tokens[position].kind }
    private func peekKind(_ offset: Int) -> TokenKind {
        position + offset < tokens.count ? tokens[position + offset].kind : .end
    }

    private mutating func advance() -> Token {
        let t = tokens[position]
        if position < tokens.count - 1 { position += 1 }
        return t
    }

    private func isSymbol(_ s: String) -> Bool { kind == .symbol(s) }
    private func isKeyword(_ s: String) -> Bool { kind == .keyword(s) }

    private func unexpected(_ expected: String) -> NixSyntaxError {
        NixSyntaxError(location: current.location, message: "unexpected \(kind.display), expected \(expected)")
    }

    private mutating func expectSymbol(_ s: String) throws {
        guard isSymbol(s) else { throw unexpected("'\(s)'") }
        _ = advance()
    }

    private mutating func expectKeyword(_ s: String) throws {
        guard isKeyword(s) else { throw unexpected("'\(s)'") }
        _ = advance()
    }

    mutating func expectEnd() throws {
        guard kind == .end else { throw unexpected("end of input") }
    }

    // MARK: - Expressions

    mutating func parseExpr() throws -> Expr {
        let loc = current.location
        switch kind {
        case .identifier(let name) where peekKind(1) == .symbol(":"):
            _ = advance(); _ = advance()
            return .lambda(Lambda(argument: name, formals: nil, ellipsis: false, body: try nested(cost: 2, room: 4) { try $0.parseExpr() }, location: loc))
        case .identifier(let name) where peekKind(1) == .symbol("@"):
            _ = advance(); _ = advance()
            guard isSymbol("{") else { throw unexpected("'{' after '@'") }
            return try parseFormalsLambda(argument: name)
        case .symbol("{") where looksLikeFormals():
            return try parseFormalsLambda(argument: nil)
        case .keyword("assert"):
            _ = advance()
            let condition = try nested(cost: 2, room: 4) { try $0.parseExpr() }
            try expectSymbol(";")
            return .assert(condition, try nested(cost: 2, room: 4) { try $0.parseExpr() }, loc)
        case .keyword("with"):
            _ = advance()
            let scope = try nested(cost: 2, room: 4) { try $0.parseExpr() }
            try expectSymbol(";")
            return .with(scope, try nested(cost: 2, room: 4) { try $0.parseExpr() }, loc)
        case .keyword("let") where peekKind(1) != .symbol("{"):
            _ = advance()
            return try nested(cost: 4, room: 8) { p in
                let bindings = try p.parseBindings(recursive: true, inLet: true, closing: .keyword("in"))
                try p.expectKeyword("in")
                return .letIn(bindings, try p.parseExpr(), loc)
            }
        case .keyword("if"):
            _ = advance()
            return try nested(cost: 3, room: 7) { p in
                let condition = try p.parseExpr()
                try p.expectKeyword("then")
                let then = try p.parseExpr()
                try p.expectKeyword("else")
                return .ifThenElse(condition, then, try p.parseExpr(), loc)
            }
        default:
            return try parseOperators(minimum: 1)
        }
    }

    /// After `{`: a lambda's formals rather than an attribute set?
    private func looksLikeFormals() -> Bool {
        switch peekKind(1) {
        case .symbol("}"): return peekKind(2) == .symbol(":") || peekKind(2) == .symbol("@")
        case .symbol("..."): return true
        case .identifier:
            let next = peekKind(2)
            return next == .symbol(",") || next == .symbol("?") || next == .symbol("}")
        default: return false
        }
    }

    private mutating func parseFormalsLambda(argument: String?) throws -> Expr {
        let loc = current.location
        try expectSymbol("{")
        var formals: [Lambda.Formal] = []
        var ellipsis = false
        var seen = Set<String>()
        while !isSymbol("}") {
            if isSymbol("...") {
                _ = advance()
                ellipsis = true
                guard isSymbol("}") else { throw unexpected("'}' after '...'") }
                break
            }
            guard case .identifier(let name) = kind else { throw unexpected("a formal argument name") }
            let nameLoc = advance().location
            guard seen.insert(name).inserted, name != argument else {
                throw NixSyntaxError(location: nameLoc, message: "duplicate formal function argument '\(name)'")
            }
            var defaultValue: Expr?
            if isSymbol("?") {
                _ = advance()
                defaultValue = try parseExpr()
            }
            formals.append(.init(name: name, defaultValue: defaultValue))
            if isSymbol(",") { _ = advance() } else if !isSymbol("}") { throw unexpected("',' or '}'") }
        }
        try expectSymbol("}")
        var argument = argument
        if isSymbol("@") {
            guard argument == nil else { throw unexpected("':'") }
            _ = advance()
            guard case .identifier(let name) = kind else { throw unexpected("an identifier after '@'") }
            if seen.contains(name) {
                throw NixSyntaxError(location: current.location, message: "duplicate formal function argument '\(name)'")
            }
            _ = advance()
            argument = name
        }
        try expectSymbol(":")
        return .lambda(Lambda(argument: argument, formals: formals, ellipsis: ellipsis, body: try nested(cost: 2, room: 4) { try $0.parseExpr() }, location: loc))
    }

    // MARK: Operators (Nix precedences, loosest first)

    private enum Assoc: Sendable { case left, right, none }

    private static let binary: [String: (Int, Assoc, BinaryOperator)] = [
        "->": (1, .right, .implication), "||": (2, .left, .or), "&&": (3, .left, .and),
        "==": (4, .none, .equal), "!=": (4, .none, .notEqual),
        "<": (5, .none, .less), ">": (5, .none, .greater), "<=": (5, .none, .lessOrEqual), ">=": (5, .none, .greaterOrEqual),
        "//": (6, .right, .update),
        "+": (8, .left, .add), "-": (8, .left, .subtract),
        "*": (9, .left, .multiply), "/": (9, .left, .divide),
        "++": (10, .right, .concat),
    ]
    private static let notPrecedence = 7
    private static let hasAttrPrecedence = 11
    private static let negatePrecedence = 12

    private mutating func parseOperators(minimum: Int) throws -> Expr {
        var left: Expr
        let loc = current.location
        if isSymbol("!") {
            _ = advance()
            left = .not(try nested(cost: 1, room: 4) { try $0.parseOperators(minimum: Self.notPrecedence + 1) }, loc)
        } else if isSymbol("-") {
            _ = advance()
            left = .negate(try nested(cost: 1, room: 4) { try $0.parseOperators(minimum: Self.negatePrecedence + 1) }, loc)
        } else {
            left = try parseApplication()
        }
        var lastNonAssociative: Int?
        while true {
            let opLoc = current.location
            if isSymbol("?") {
                let p = Self.hasAttrPrecedence
                guard p >= minimum else { break }
                _ = advance()
                left = .hasAttr(left, try parseAttrPath(), opLoc)  // Nix 2.8 accepts `a ? b ? c`
                continue
            }
            guard case .symbol(let s) = kind, let (p, assoc, op) = Self.binary[s], p >= minimum else { break }
            if lastNonAssociative == p { throw NixSyntaxError(location: opLoc, message: "unexpected '\(s)': operators of this kind do not chain") }
            _ = advance()
            // A right-associative chain nests; a left one does not (bison's stack agrees).
            let right = assoc == .right ? try nested(cost: 2, room: 4) { try $0.parseOperators(minimum: p) }
                                        : try parseOperators(minimum: p + 1)
            left = .binary(op, left, right, opLoc)
            lastNonAssociative = assoc == .none ? p : nil
        }
        return left
    }

    private mutating func parseApplication() throws -> Expr {
        var function = try parseSelect()
        while startsSimple() {
            let loc = current.location
            function = .call(function, try parseSelect(), loc)
        }
        return function
    }

    private func startsSimple() -> Bool {
        switch kind {
        case .identifier, .integer, .float, .path, .homePath, .searchPath, .uri, .string: return true
        case .symbol(let s): return s == "(" || s == "[" || s == "{"
        case .keyword(let k): return k == "rec" || (k == "let" && peekKind(1) == .symbol("{"))
        default: return false
        }
    }

    private mutating func parseSelect() throws -> Expr {
        let base = try parseSimple()
        guard isSymbol(".") else { return base }
        let loc = current.location
        _ = advance()
        let path = try parseAttrPath()
        var fallback: Expr?
        if isKeyword("or") {
            _ = advance()
            fallback = try parseSelect()
        }
        return .select(base, path, orDefault: fallback, loc)
    }

    private mutating func parseAttrPath() throws -> [AttrKey] {
        var keys = [try parseAttrKey()]
        while isSymbol(".") {
            _ = advance()
            keys.append(try parseAttrKey())
        }
        return keys
    }

    private mutating func parseAttrKey() throws -> AttrKey {
        let loc = current.location
        switch kind {
        case .identifier(let name): _ = advance(); return .name(NixString(name))
        case .keyword("or"): _ = advance(); return .name("or")
        case .string:
            let parts = try interpolated(advance().parts)
            if parts.isEmpty { return .name("") }
            if parts.count == 1, case .text(let t) = parts[0] { return .name(NixString(t)) }
            return .dynamic(.string(parts), loc)
        case .symbol("${"):
            _ = advance()
            let e = try nested(cost: 2, room: 4) { try $0.parseExpr() }
            try expectSymbol("}")
            return .dynamic(e, loc)
        default:
            throw unexpected("an attribute name")
        }
    }

    private mutating func parseSimple() throws -> Expr {
        let token = current
        let loc = token.location
        switch token.kind {
        case .identifier(let name): _ = advance(); return .variable(name, loc)
        case .integer(let v): _ = advance(); return .int(v)
        case .float(let v): _ = advance(); return .float(v)
        case .string: _ = advance(); return .string(try interpolated(token.parts))
        case .path(let p): _ = advance(); return .path(Parser.canonical(p.hasPrefix("/") ? p : baseDirectory + "/" + p))
        case .homePath(let p):
            _ = advance()
            let home = ProcessInfo.processInfo.environment["HOME"] ?? "/"
            return .path(Parser.canonical(home + "/" + p.dropFirst(2)))
        case .searchPath(let p): _ = advance(); return .searchPath(p, loc)
        case .uri(let u): _ = advance(); return .string([.text(Array(u.utf8))])
        case .symbol("("):
            _ = advance()
            let e = try nested(cost: 1, room: 5) { try $0.parseExpr() }
            try expectSymbol(")")
            return e
        case .symbol("["):
            _ = advance()
            return try nested(cost: 2, room: 4) { p in
                var items: [Expr] = []
                while !p.isSymbol("]") {
                    guard p.startsSimple() else { throw p.unexpected("a list element or ']'") }
                    items.append(try p.parseSelect())
                }
                _ = p.advance()
                return .list(items)
            }
        case .symbol("{"):
            _ = advance()
            let b = try nested(cost: 4, room: 16) { try $0.parseBindings(recursive: false, inLet: false, closing: .symbol("}")) }
            try expectSymbol("}")
            return .attrs(b, loc)
        case .keyword("rec"):
            _ = advance()
            try expectSymbol("{")
            let b = try nested(cost: 4, room: 16) { try $0.parseBindings(recursive: true, inLet: false, closing: .symbol("}")) }
            try expectSymbol("}")
            return .attrs(b, loc)
        case .keyword("let"):
            // Old-style `let { …; body = …; }`.
            _ = advance()
            try expectSymbol("{")
            let b = try nested(cost: 4, room: 16) { try $0.parseBindings(recursive: true, inLet: false, closing: .symbol("}")) }
            try expectSymbol("}")
            return .select(.attrs(b, loc), [.name("body")], orDefault: nil, loc)
        default:
            throw unexpected("an expression")
        }
    }

    private func interpolated(_ parts: [StringPart]) throws -> [InterpolatedPart] {
        let depth = self.depth
        return try parts.map { part -> InterpolatedPart in
            switch part {
            case .text(let t): return .text(t)
            case .interpolation(let toks, let loc):
                var sub = Parser(tokens: toks, file: file, baseDirectory: baseDirectory)
                sub.depth = depth + 2
                if sub.depth + 4 > Self.maximumDepth || NativeStack.exhausted {
                    throw NixSyntaxError(location: loc, message: "memory exhausted")
                }
                let e = try sub.parseExpr()
                try sub.expectEnd()
                return .expr(e, loc)
            }
        }
    }

    // MARK: Bindings

    private mutating func parseBindings(recursive: Bool, inLet: Bool, closing: TokenKind) throws -> Bindings {
        var b = Bindings(recursive: recursive)
        while kind != closing {
            let loc = current.location
            if isKeyword("inherit") {
                _ = advance()
                var source: Expr?
                if isSymbol("(") {
                    _ = advance()
                    source = try parseExpr()
                    try expectSymbol(")")
                }
                while !isSymbol(";") {
                    let nameLoc = current.location
                    let name: NixString
                    switch kind {
                    case .identifier(let n): name = NixString(n)
                    case .keyword("or"): name = "or"
                    case .string:
                        let parts = current.parts
                        guard parts.count <= 1 else { throw NixSyntaxError(location: nameLoc, message: "dynamic attributes not allowed in inherit") }
                        if case .text(let t)? = parts.first { name = NixString(t) } else if parts.isEmpty { name = "" } else {
                            throw NixSyntaxError(location: nameLoc, message: "dynamic attributes not allowed in inherit")
                        }
                    default: throw unexpected("an attribute name or ';'")
                    }
                    _ = advance()
                    let value: Bindings.Value = source.map { .inheritFrom($0, nameLoc) } ?? .inherit(nameLoc)
                    try b.add(name, .init(value: value, location: nameLoc))
                }
                _ = advance()
                continue
            }
            let path = try parseAttrPath()
            try expectSymbol("=")
            let value = try parseExpr()
            try expectSymbol(";")
            if inLet, case .dynamic(_, let dloc) = path[0] {
                throw NixSyntaxError(location: dloc, message: "dynamic attributes not allowed in let")
            }
            try b.add(path: path, value: value, location: loc)
        }
        return b
    }

    /// Canonical absolute path: no `.`, `..`, repeated or trailing slashes.
    static func canonical(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }
}

extension Bindings {
    mutating func add(_ name: NixString, _ binding: Binding) throws {
        // `a.b = 1; a = { c = 2; };` merges, as Nix does, when both are plain (non-rec) sets.
        if let existing = named[name], case .expr(.attrs(var inner, let loc)) = existing.value, !inner.recursive,
           case .expr(.attrs(let extra, _)) = binding.value, !extra.recursive {
            for key in extra.order { try inner.add(key, extra.named[key]!) }
            inner.dynamic += extra.dynamic
            named[name] = .init(value: .expr(.attrs(inner, loc)), location: existing.location)
            return
        }
        if let existing = named[name] {
            throw NixSyntaxError(location: binding.location, message: "attribute '\(name)' already defined at \(existing.location)")
        }
        named[name] = binding
        order.append(name)
    }

    /// `a.b.c = v;` nests sets, merging with earlier `a.x = …;` or `a = { … };` definitions.
    mutating func add(path: [AttrKey], value: Expr, location: SourceLocation) throws {
        guard path.count > 1 else {
            switch path[0] {
            case .name(let n): try add(n, .init(value: .expr(value), location: location))
            case .dynamic(let e, let loc): dynamic.append((e, value, loc))
            }
            return
        }
        switch path[0] {
        case .dynamic(let e, let loc):
            var inner = Bindings(recursive: false)
            try inner.add(path: Array(path.dropFirst()), value: value, location: location)
            dynamic.append((e, .attrs(inner, location), loc))
        case .name(let n):
            if let existing = named[n] {
                guard case .expr(.attrs(var inner, let setLoc)) = existing.value, !inner.recursive else {
                    throw NixSyntaxError(location: location, message: "attribute '\(n)' already defined at \(existing.location)")
                }
                try inner.add(path: Array(path.dropFirst()), value: value, location: location)
                named[n] = .init(value: .expr(.attrs(inner, setLoc)), location: existing.location)
            } else {
                var inner = Bindings(recursive: false)
                try inner.add(path: Array(path.dropFirst()), value: value, location: location)
                try add(n, .init(value: .expr(.attrs(inner, location)), location: location))
            }
        }
    }
}
