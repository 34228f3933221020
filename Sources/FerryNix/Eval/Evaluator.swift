import Foundation

/// Evaluates the pure part of Nix: lazily, with Nix 2.8's semantics for what it supports, and a
/// "not supported" error (never a wrong value) for the rest (derivations, fetchers, getFlake, …).
public final class Evaluator {
    private var imports: [String: Value] = [:]
    /// Files parsed once, also while their first import is still being evaluated.
    private var parsed: [String: Expr] = [:]
    private(set) var baseEnvironment: Environment!
    /// Messages from `builtins.trace` (by default none are shown: the caller decides where they go).
    public var traceHandler: (String) -> Void = { _ in }
    /// Frames filled after the thunks that point into them exist: reference cycles, which ARC
    /// never frees on its own. `tearDown()` breaks them.
    private var lazyFrames: [Environment] = []

    func lazyFrame(_ parent: Environment) -> LazyFrame {
        let frame = LazyFrame(parent: parent)
        lazyFrames.append(frame.environment)
        return frame
    }

    /// Frees what evaluation built (recursive frames, the `builtins.builtins` loop, the import
    /// cache). Values from this evaluator must not be used after. For long-running callers (a
    /// fleet run, the fuzzer); a one-shot command may simply exit.
    public func tearDown() {
        for frame in lazyFrames { frame.frame = .names([:]) }
        lazyFrames = []
        imports = [:]
        parsed = [:]
        if case .names(let names) = baseEnvironment.frame, let builtins = names["builtins"] { builtins.state = .done(.null) }
        baseEnvironment.frame = .names([:])
    }

    /// At most this many evaluation steps (for fuzzing: an evaluator may loop by design, and
    /// running out is a clean outcome there); nil: no limit.
    public var stepBudget: Int?

    public init() {
        baseEnvironment = Environment(.names(Builtins.globals(self)), parent: nil)
    }

    // MARK: - Entry points

    /// Parses and evaluates a file (a directory means its default.nix), sharing imports.
    public func evaluate(file path: String) throws -> Value {
        try NativeStack.run { try self.evaluateFile(path) }
    }

    private func evaluateFile(_ path: String) throws -> Value {
        var path = Parser.canonical(path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { path += "/default.nix" }
        if let cached = imports[path] { return cached }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NixEvalError("cannot read '\(path)': no such file or not readable", at: nil)
        }
        let expr: Expr
        if let parsed = parsed[path] {
            expr = parsed
        } else {
            expr = try Parser.parse(bytes: Array(data), file: path, baseDirectory: (path as NSString).deletingLastPathComponent)
            parsed[path] = expr
        }
        let value = try eval(expr, baseEnvironment)
        imports[path] = value
        return value
    }

    public func evaluate(source: String, file: String = "«string»", baseDirectory: String) throws -> Value {
        try NativeStack.run { try self.eval(try Parser.parse(source, file: file, baseDirectory: baseDirectory), self.baseEnvironment) }
    }

    /// `nix-instantiate -A PATH`: dot-separated names, `"quoted.names"`, and list indices;
    /// an empty path is the value itself.
    public func select(_ value: Value, attrPath text: String) throws -> Value {
        var parts: [String] = []
        var current = ""
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if c == "." {
                parts.append(current)
                current = ""
            } else if c == "\"" {
                i = text.index(after: i)
                while true {
                    guard i < text.endIndex else { throw NixEvalError("missing closing quote in selection path '\(text)'", at: nil) }
                    if text[i] == "\"" { break }
                    current.append(text[i])
                    i = text.index(after: i)
                }
            } else {
                current.append(c)
            }
            i = text.index(after: i)
        }
        if !current.isEmpty { parts.append(current) }
        return try NativeStack.run {
            var v = value
            for part in parts {
                guard !part.isEmpty else { throw NixEvalError("empty attribute name in selection path '\(text)'", at: nil) }
                if let index = UInt32(part) {
                    guard case .list(let items) = v else {
                        throw NixEvalError("the expression selected by the selection path '\(text)' should be a list but is \(v.article)", at: nil)
                    }
                    guard Int(index) < items.count else { throw NixEvalError("list index \(index) in selection path '\(text)' is out of range", at: nil) }
                    v = try self.force(items[Int(index)])
                } else {
                    guard case .attrs(let attrs) = v else {
                        throw NixEvalError("the expression selected by the selection path '\(text)' should be a set but is \(v.article)", at: nil)
                    }
                    guard let t = attrs[NixString(part)] else { throw NixEvalError("attribute '\(part)' in selection path '\(text)' not found", at: nil) }
                    v = try self.force(t)
                }
            }
            return v
        }
    }

    /// `value.a.b`.
    public func select(_ value: Value, path: [String]) throws -> Value {
        try NativeStack.run { try self.selectPath(value, path) }
    }

    private func selectPath(_ value: Value, _ path: [String]) throws -> Value {
        var v = value
        for (i, name) in path.enumerated() {
            guard case .attrs(let attrs) = v else {
                throw NixEvalError("'\(path[..<i].joined(separator: "."))' is \(v.article), not a set", at: nil)
            }
            guard let t = attrs[NixString(name)] else { throw NixEvalError("attribute '\(path[...i].joined(separator: "."))' missing", at: nil) }
            v = try force(t)
        }
        return v
    }

    // MARK: - Core

    func force(_ thunk: Thunk) throws -> Value {
        if NativeStack.exhausted, let location = thunk.location { throw NativeStack.overflow(location) }
        switch thunk.state {
        case .done(let v): return v
        case .evaluating: throw NixEvalError("infinite recursion encountered", at: nil)
        case .pending, .deferred:
            let saved = thunk.state
            thunk.state = .evaluating
            do {
                let v: Value
                switch saved {
                case .pending(let expr, let env): v = try eval(expr, env)
                case .deferred(let compute): v = try compute()
                default: fatalError("unreachable")
                }
                thunk.state = .done(v)
                return v
            } catch {
                thunk.state = saved
                throw error
            }
        }
    }

    /// Forces, giving a location to errors that have none (builtins' unsupported values).
    func force(_ thunk: Thunk, at loc: SourceLocation) throws -> Value {
        do { return try force(thunk) } catch let e as NixEvalError where e.location == nil {
            throw NixEvalError(e.message, at: loc)
        }
    }

    func thunk(_ expr: Expr, _ env: Environment) -> Thunk {
        switch expr {
        case .int(let i): return Thunk(value: .int(i))
        case .float(let f): return Thunk(value: .float(f))
        case .path(let p): return Thunk(value: .path(p))
        case .string(let parts) where parts.allSatisfy({ if case .text = $0 { return true } else { return false } }):
            return Thunk(value: .string(NixString(parts.flatMap { part -> [UInt8] in if case .text(let t) = part { return t } else { return [] } })))
        default:
            return Thunk(expr, env)
        }
    }

    /// As Nix's maybeThunk: a variable is its binding's own thunk (so a value used twice is the
    /// same value, which printing shows as «repeated»). Only where every frame is complete.
    private func sharedThunk(_ expr: Expr, _ env: Environment) -> Thunk {
        if case .variable(let name, _) = expr, let t = lexicalLookup(name, env) { return t }
        return thunk(expr, env)
    }

    private func lexicalLookup(_ name: String, _ env: Environment) -> Thunk? {
        var e: Environment? = env
        while let cur = e {
            if case .names(let names) = cur.frame, let t = names[name] { return t }
            e = cur.parent
        }
        return nil
    }

    func lookup(_ name: String, _ env: Environment, _ loc: SourceLocation) throws -> Thunk {
        if let t = lexicalLookup(name, env) { return t }
        var e: Environment? = env
        while let cur = e {
            if case .with(let scope) = cur.frame, let t = try attrs(scope, loc)[NixString(name)] { return t }
            e = cur.parent
        }
        throw NixEvalError("undefined variable '\(name)'", at: loc)
    }

    func eval(_ expr: Expr, _ env: Environment) throws -> Value {
        // Literals never recurse: the check waits for an expression that can name its place.
        if NativeStack.exhausted, let location = expr.location { throw NativeStack.overflow(location) }
        if let budget = stepBudget {
            guard budget > 0 else { throw NixEvalError("evaluation budget exhausted", at: expr.location) }
            stepBudget = budget - 1
        }
        switch expr {
        case .int(let i): return .int(i)
        case .float(let f): return .float(f)
        case .path(let p): return .path(p)
        case .searchPath(let p, let loc):
            throw NixEvalError.unsupported("search path <\(p)> (ferry does not read NIX_PATH)", at: loc)
        case .string(let parts):
            var out: [UInt8] = []
            for part in parts {
                switch part {
                case .text(let t): out += t
                case .expr(let e, let loc): out += try coerceToString(try eval(e, env), loc, more: false).bytes
                }
            }
            return .string(NixString(out))
        case .variable(let name, let loc):
            return try force(try lookup(name, env, loc), at: loc)
        case .select(let base, let path, let fallback, let loc):
            var value = try eval(base, env)
            for key in path {
                let name = try attrName(key, env)
                guard case .attrs(let attrs) = value, let t = attrs[name] else {
                    if let fallback { return try eval(fallback, env) }
                    if case .attrs = value { throw NixEvalError("attribute '\(name)' missing", at: loc) }
                    throw NixEvalError("value is \(value.article) while a set was expected", at: loc)
                }
                value = try force(t, at: loc)
            }
            return value
        case .hasAttr(let base, let path, _):
            var value = try eval(base, env)
            for (i, key) in path.enumerated() {
                let name = try attrName(key, env)
                guard case .attrs(let attrs) = value, let t = attrs[name] else { return .bool(false) }
                if i < path.count - 1 { value = try force(t) }  // the last value stays unevaluated
            }
            return .bool(true)
        case .list(let items):
            return .list(items.map { sharedThunk($0, env) })
        case .attrs(let bindings, let loc):
            return try evalAttrs(bindings, env, loc)
        case .letIn(let bindings, let body, _):
            // Bindings see each other: make the frame, then fill it with thunks pointing at it.
            var names: [String: Thunk] = [:]
            let frameEnv = lazyFrame(env)
            for name in bindings.order {
                names[name.description] = try bindingThunk(bindings.named[name]!, name: name, own: frameEnv.environment, outer: env)
            }
            frameEnv.set(names)
            return try eval(body, frameEnv.environment)
        case .lambda(let lambda):
            return .lambda(lambda, env)
        case .call(let fn, let arg, let loc):
            return try call(try eval(fn, env), sharedThunk(arg, env), loc)
        case .with(let scope, let body, _):
            return try eval(body, Environment(.with(thunk(scope, env)), parent: env))
        case .assert(let cond, let body, let loc):
            guard try evalBool(cond, env, loc, "an assertion") else { throw NixEvalError("assertion failed", at: loc) }
            return try eval(body, env)
        case .ifThenElse(let cond, let then, let otherwise, let loc):
            return try eval(try evalBool(cond, env, loc, "an if condition") ? then : otherwise, env)
        case .not(let e, let loc):
            return .bool(!(try evalBool(e, env, loc, "the operand of '!'")))
        case .negate(let e, let loc):
            return try arithmetic(.subtract, .int(0), try eval(e, env), loc)
        case .binary(let op, let l, let r, let loc):
            return try binary(op, l, r, env, loc)
        }
    }

    private func attrName(_ key: AttrKey, _ env: Environment) throws -> NixString {
        switch key {
        case .name(let n): return n
        case .dynamic(let e, let loc):
            let v = try eval(e, env)
            guard case .string(let s) = v else { throw NixEvalError("value is \(v.article) while a string was expected", at: loc) }
            return s
        }
    }

    private func bindingThunk(_ binding: Bindings.Binding, name: NixString, own: Environment, outer: Environment) throws -> Thunk {
        switch binding.value {
        case .expr(let e): return own === outer ? sharedThunk(e, own) : thunk(e, own)
        case .inherit(let loc):
            return lexicalLookup(name.description, outer) ?? Thunk(.variable(name.description, loc), outer)
        case .inheritFrom(let source, let loc):
            return Thunk(.select(source, [.name(name)], orDefault: nil, loc), own)
        }
    }

    private func evalAttrs(_ bindings: Bindings, _ env: Environment, _ loc: SourceLocation) throws -> Value {
        var values: [NixString: Thunk] = [:]
        let frame = lazyFrame(env)
        let own = bindings.recursive ? frame.environment : env
        for name in bindings.order {
            values[name] = try bindingThunk(bindings.named[name]!, name: name, own: own, outer: env)
        }
        // Variables are identifiers (ASCII): a name's text is its key in the scope.
        if bindings.recursive { frame.set(Dictionary(values.map { ($0.key.description, $0.value) }, uniquingKeysWith: { a, _ in a })) }
        for (keyExpr, valueExpr, dloc) in bindings.dynamic {
            let key = try eval(keyExpr, own)
            if case .null = key { continue }
            guard case .string(let name) = key else { throw NixEvalError("value is \(key.article) while a string was expected", at: dloc) }
            guard values[name] == nil else { throw NixEvalError("dynamic attribute '\(name)' already defined", at: dloc) }
            values[name] = thunk(valueExpr, own)
        }
        return .attrs(values)
    }

    // MARK: - Functions

    func call(_ function: Value, _ arg: Thunk, _ loc: SourceLocation) throws -> Value {
        switch function {
        case .lambda(let lambda, let env):
            var names: [String: Thunk] = [:]
            guard let formals = lambda.formals else {
                names[lambda.argument!] = arg
                return try eval(lambda.body, Environment(.names(names), parent: env))
            }
            guard case .attrs(let given) = try force(arg) else {
                throw NixEvalError("value is \(try force(arg).article) while a set was expected", at: loc)
            }
            let frame = lazyFrame(env)
            if let a = lambda.argument { names[a] = arg }
            for formal in formals {
                if let t = given[NixString(formal.name)] { names[formal.name] = t }
                else if let d = formal.defaultValue { names[formal.name] = thunk(d, frame.environment) }
                else { throw NixEvalError("function called without required argument '\(formal.name)'", at: loc) }
            }
            if !lambda.ellipsis {
                let allowed = Set(formals.map(\.name))
                if let extra = given.keys.sorted().first(where: { !allowed.contains($0.description) }) {
                    throw NixEvalError("function called with unexpected argument '\(extra)'", at: loc)
                }
            }
            frame.set(names)
            return try eval(lambda.body, frame.environment)
        case .primop(let op, let args):
            let all = args + [arg]
            if all.count < op.arity { return .primop(op, all) }
            return try op.apply(self, all, loc)
        case .attrs(let attrs):
            if let functor = attrs["__functor"] {
                return try call(try call(try force(functor), Thunk(value: function), loc), arg, loc)
            }
            fallthrough
        default:
            throw NixEvalError("attempt to call something which is not a function but \(function.article)", at: loc)
        }
    }

    // MARK: - Operators

    private func evalBool(_ e: Expr, _ env: Environment, _ loc: SourceLocation, _ what: String) throws -> Bool {
        let v = try eval(e, env)
        guard case .bool(let b) = v else { throw NixEvalError("value is \(v.article) while a Boolean was expected", at: loc) }
        return b
    }

    private func binary(_ op: BinaryOperator, _ l: Expr, _ r: Expr, _ env: Environment, _ loc: SourceLocation) throws -> Value {
        switch op {
        case .and: return .bool(try evalBool(l, env, loc, "&&") ? try evalBool(r, env, loc, "&&") : false)
        case .or: return .bool(try evalBool(l, env, loc, "||") ? true : try evalBool(r, env, loc, "||"))
        case .implication: return .bool(try evalBool(l, env, loc, "->") ? try evalBool(r, env, loc, "->") : true)
        case .equal: return .bool(try equal(try eval(l, env), try eval(r, env), loc))
        case .notEqual: return .bool(!(try equal(try eval(l, env), try eval(r, env), loc)))
        case .less: return .bool(try lessThan(try eval(l, env), try eval(r, env), loc))
        case .greater: return .bool(try lessThan(try eval(r, env), try eval(l, env), loc))
        case .lessOrEqual: return .bool(!(try lessThan(try eval(r, env), try eval(l, env), loc)))
        case .greaterOrEqual: return .bool(!(try lessThan(try eval(l, env), try eval(r, env), loc)))
        case .update:
            let a = try eval(l, env), b = try eval(r, env)
            guard case .attrs(let x) = a else { throw NixEvalError("value is \(a.article) while a set was expected", at: loc) }
            guard case .attrs(let y) = b else { throw NixEvalError("value is \(b.article) while a set was expected", at: loc) }
            // As Nix: with one side empty the other is the result itself (it prints «repeated»).
            if y.isEmpty { return a }
            if x.isEmpty { return b }
            return .attrs(x.merging(y) { $1 })
        case .concat:
            let a = try eval(l, env), b = try eval(r, env)
            guard case .list(let x) = a else { throw NixEvalError("value is \(a.article) while a list was expected", at: loc) }
            guard case .list(let y) = b else { throw NixEvalError("value is \(b.article) while a list was expected", at: loc) }
            return .list(x + y)
        case .add:
            let a = try eval(l, env), b = try eval(r, env)
            switch (a, b) {
            case (.path(let p), _):
                return .path(Parser.canonical(p + (try coerceToString(b, loc, more: false)).description))
            case (.string(let s), _):
                return .string(s + (try coerceToString(b, loc, more: false)))
            default:
                return try arithmetic(.add, a, b, loc)
            }
        case .subtract, .multiply, .divide:
            return try arithmetic(op, try eval(l, env), try eval(r, env), loc)
        }
    }

    func arithmetic(_ op: BinaryOperator, _ a: Value, _ b: Value, _ loc: SourceLocation) throws -> Value {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            switch op {
            case .add: return .int(x &+ y)
            case .subtract: return .int(x &- y)
            case .multiply: return .int(x &* y)
            default:
                guard y != 0 else { throw NixEvalError("division by zero", at: loc) }
                guard !(x == Int.min && y == -1) else { throw NixEvalError("overflow in integer division", at: loc) }
                return .int(x / y)
            }
        case (.int, .float), (.float, .int), (.float, .float):
            let x = Builtins.double(a)!, y = Builtins.double(b)!
            switch op {
            case .add: return .float(x + y)
            case .subtract: return .float(x - y)
            case .multiply: return .float(x * y)
            default:
                guard y != 0 else { throw NixEvalError("division by zero", at: loc) }
                return .float(x / y)
            }
        default:
            let bad = Builtins.double(a) == nil ? a : b
            if op == .add { throw NixEvalError("cannot add \(b.article) to \(a.article)", at: loc) }
            throw NixEvalError("value is \(bad.article) while an integer was expected", at: loc)
        }
    }

    func equal(_ a: Value, _ b: Value, _ loc: SourceLocation) throws -> Bool {
        try NativeStack.check(loc)
        switch (a, b) {
        case (.int(let x), .int(let y)): return x == y
        case (.int, .float), (.float, .int), (.float, .float): return Builtins.double(a)! == Builtins.double(b)!
        case (.bool(let x), .bool(let y)): return x == y
        case (.null, .null): return true
        case (.string(let x), .string(let y)): return x == y
        case (.path(let x), .path(let y)): return x == y
        case (.list(let x), .list(let y)):
            guard x.count == y.count else { return false }
            for (p, q) in zip(x, y) where !(try equal(try force(p), try force(q), loc)) { return false }
            return true
        case (.attrs(let x), .attrs(let y)):
            if case .string("derivation")? = try x["type"].map(force), case .string("derivation")? = try y["type"].map(force),
               let p = x["outPath"], let q = y["outPath"] {
                return try equal(try force(p), try force(q), loc)
            }
            guard x.count == y.count else { return false }
            for (k, t) in x {
                guard let u = y[k], try equal(try force(t), try force(u), loc) else { return false }
            }
            return true
        default: return false
        }
    }

    func lessThan(_ a: Value, _ b: Value, _ loc: SourceLocation) throws -> Bool {
        try NativeStack.check(loc)
        switch (a, b) {
        case (.int(let x), .int(let y)): return x < y
        case (.int, .float), (.float, .int), (.float, .float): return Builtins.double(a)! < Builtins.double(b)!
        case (.string(let x), .string(let y)): return x < y
        case (.path(let x), .path(let y)): return Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
        case (.list(let x), .list(let y)):
            for (p, q) in zip(x, y) {
                let pv = try force(p), qv = try force(q)
                if try !equal(pv, qv, loc) { return try lessThan(pv, qv, loc) }
            }
            return x.count < y.count
        default:
            throw NixEvalError("cannot compare \(a.article) with \(b.article)", at: loc)
        }
    }

    // MARK: - Coercion

    /// `"${x}"` (more: false) and `toString x` (more: true).
    func coerceToString(_ v: Value, _ loc: SourceLocation, more: Bool) throws -> NixString {
        try NativeStack.check(loc)
        switch v {
        case .string(let s): return s
        case .path(let p):
            if more { return NixString(p) }
            throw NixEvalError.unsupported("using a path in a string (Nix would copy '\(p)' to the store)", at: loc)
        case .attrs(let attrs):
            if let f = attrs["__toString"] {
                return try coerceToString(try call(try force(f), Thunk(value: v), loc), loc, more: more)
            }
            if let out = attrs["outPath"] { return try coerceToString(try force(out), loc, more: more) }
        case .int(let i) where more: return NixString(String(i))
        case .float(let f) where more: return NixString(String(format: "%f", f))
        case .bool(let b) where more: return b ? "1" : ""
        case .null where more: return ""
        case .list(let items) where more:
            var out: [[UInt8]] = []
            for t in items {
                let item = try force(t)
                out.append(try coerceToString(item, loc, more: true).bytes)
            }
            return NixString(Array(out.joined(separator: [UInt8(ascii: " ")])))
        default: break
        }
        throw NixEvalError("cannot coerce \(v.article) to a string", at: loc)
    }

    /// Forces a value completely, as `--strict` does; a set or list already forced (a cycle,
    /// or one shared) is not walked again, as in Nix.
    public func deepForce(_ v: Value) throws -> Value {
        try NativeStack.run {
            var seen = Set<UInt>()
            try self.deepForce(v, slot: nil, &seen)
            return v
        }
    }

    private func deepForce(_ v: Value, slot: ObjectIdentifier?, _ seen: inout Set<UInt>) throws {
        try NativeStack.check(nil)
        if let id = v.identity(slot: slot), !seen.insert(id).inserted { return }
        switch v {
        case .list(let items): for t in items { try deepForce(try force(t), slot: ObjectIdentifier(t), &seen) }
        case .attrs(let attrs): for (_, t) in attrs { try deepForce(try force(t), slot: ObjectIdentifier(t), &seen) }
        default: break
        }
    }

    func importFile(_ v: Value, _ loc: SourceLocation) throws -> Value {
        switch v {
        case .path(let p): return try evaluateFile(p)
        case .string(let s) where s.bytes.first == UInt8(ascii: "/"): return try evaluateFile(s.description)
        default: throw NixEvalError("cannot import \(v.article)", at: loc)
        }
    }
}

/// An environment frame whose names are filled in after the thunks that refer to it exist
/// (for `rec`, `let` and formals' defaults).
struct LazyFrame {
    let environment: Environment

    init(parent: Environment) { environment = Environment(.names([:]), parent: parent) }

    func set(_ names: [String: Thunk]) { environment.frame = .names(names) }
}
