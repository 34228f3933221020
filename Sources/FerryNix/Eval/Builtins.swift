import Foundation

/// The built-in functions ferry's evaluator supports, and the ones it names as unsupported.
enum Builtins {
    /// The names visible without `builtins.` (as in Nix 2.8), plus `builtins` and `__name` aliases.
    static func globals(_ ev: Evaluator) -> [String: Thunk] {
        var builtinsSet = table()
        builtinsSet["true"] = Thunk(value: .bool(true))
        builtinsSet["false"] = Thunk(value: .bool(false))
        builtinsSet["null"] = Thunk(value: .null)
        builtinsSet["nixVersion"] = Thunk(value: .string("2.8.0"))
        builtinsSet["langVersion"] = Thunk(value: .int(6))
        let builtinsThunk = Thunk(value: .null)
        builtinsSet["builtins"] = builtinsThunk
        builtinsThunk.state = .done(.attrs(builtinsSet))  // builtins.builtins is builtins

        // The names Nix binds at top level, the same list the parser's scope check uses.
        var globals: [String: Thunk] = [:]
        for name in ScopeCheck.globals { globals[name] = builtinsSet[NixString(name)] }
        for (name, t) in builtinsSet where !["true", "false", "null", "builtins"].contains(name) {
            globals["__" + name.description] = t
        }
        return globals
    }

    private static func op(_ name: String, _ arity: Int, _ f: @escaping (Evaluator, [Thunk], SourceLocation) throws -> Value) -> (String, Thunk) {
        (name, Thunk(value: .primop(PrimOp(name: name, arity: arity, apply: f), [])))
    }

    private static func unsupported(_ name: String, _ arity: Int, _ why: String = "") -> (String, Thunk) {
        op(name, arity) { _, _, loc in throw NixEvalError.unsupported("builtins.\(name)\(why)", at: loc) }
    }

    /// A value (not a function) that cannot be had without a real Nix.
    private static func unsupportedValue(_ name: String) -> (String, Thunk) {
        (name, Thunk { throw NixEvalError.unsupported("builtins.\(name)", at: nil) })
    }

    static func table() -> [NixString: Thunk] {
        var t: [NixString: Thunk] = [:]
        func add(_ pair: (String, Thunk)) { t[NixString(pair.0)] = pair.1 }

        for name in ["derivation", "derivationStrict", "fetchGit", "fetchMercurial", "fetchTarball", "fetchTree", "fetchurl",
                     "getFlake", "toFile", "filterSource", "path", "storePath", "placeholder", "scopedImport", "fromTOML",
                     "getEnv", "hashFile", "readDir", "findFile", "match", "split", "fromJSON", "hashString"] {
            add(unsupported(name, 1))
        }
        add(unsupported("pathExists", 1, " (it would look at this machine, not the target)"))
        add(unsupported("readFile", 1, " (it would read this machine's files into the configuration)"))
        for name in ["currentSystem", "currentTime", "storeDir", "nixPath"] { add(unsupportedValue(name)) }

        add(op("import", 1) { ev, a, loc in try ev.importFile(try ev.force(a[0]), loc) })
        add(op("abort", 1) { ev, a, loc in throw NixEvalError("evaluation aborted with the following error message: '\(try ev.string(a[0], loc))'", at: loc) })
        add(op("throw", 1) { ev, a, loc in throw NixEvalError(try ev.string(a[0], loc).description, at: loc) })
        add(op("trace", 2) { ev, a, loc in
            let v = try ev.deepForce(try ev.force(a[0]))
            ev.traceHandler(NixWriter.display(v, ev))
            return try ev.force(a[1])
        })
        add(op("seq", 2) { ev, a, _ in _ = try ev.force(a[0]); return try ev.force(a[1]) })
        add(op("deepSeq", 2) { ev, a, _ in _ = try ev.deepForce(try ev.force(a[0])); return try ev.force(a[1]) })
        add(op("tryEval", 1) { ev, a, _ in
            do {
                let v = try ev.force(a[0])
                return .attrs(["success": Thunk(value: .bool(true)), "value": Thunk(value: v)])
            } catch let e as NixEvalError where !e.message.hasPrefix("not supported") && !e.message.hasPrefix("evaluation aborted") {
                return .attrs(["success": Thunk(value: .bool(false)), "value": Thunk(value: .bool(false))])
            }
        })

        add(op("toString", 1) { ev, a, loc in .string(try ev.coerceToString(try ev.force(a[0]), loc, more: true)) })
        add(op("typeOf", 1) { ev, a, _ in .string(NixString(try ev.force(a[0]).typeName)) })
        for (name, type) in [("isNull", "null"), ("isString", "string"), ("isInt", "int"), ("isFloat", "float"),
                             ("isBool", "bool"), ("isList", "list"), ("isAttrs", "set"), ("isFunction", "lambda"), ("isPath", "path")] {
            add(op(name, 1) { ev, a, _ in .bool(try ev.force(a[0]).typeName == type) })
        }

        // Lists
        add(op("length", 1) { ev, a, loc in .int(try ev.list(a[0], loc).count) })
        add(op("head", 1) { ev, a, loc in
            guard let first = try ev.list(a[0], loc).first else { throw NixEvalError("list index 0 is out of bounds", at: loc) }
            return try ev.force(first)
        })
        add(op("tail", 1) { ev, a, loc in
            let l = try ev.list(a[0], loc)
            guard !l.isEmpty else { throw NixEvalError("'tail' called on an empty list", at: loc) }
            return .list(Array(l.dropFirst()))
        })
        add(op("elemAt", 2) { ev, a, loc in
            let l = try ev.list(a[0], loc), i = try ev.int(a[1], loc)
            guard i >= 0 && i < l.count else { throw NixEvalError("list index \(i) is out of bounds", at: loc) }
            return try ev.force(l[i])
        })
        add(op("map", 2) { ev, a, loc in
            let f = try ev.force(a[0])
            return .list(try ev.list(a[1], loc).map { item in Thunk { try ev.call(f, item, loc) } })
        })
        add(op("filter", 2) { ev, a, loc in
            let f = try ev.force(a[0])
            return .list(try ev.list(a[1], loc).filter { try ev.bool(Thunk(value: try ev.call(f, $0, loc)), loc) })
        })
        add(op("elem", 2) { ev, a, loc in
            for t in try ev.list(a[1], loc) where try ev.equal(try ev.force(a[0]), try ev.force(t), loc) { return .bool(true) }
            return .bool(false)
        })
        add(op("concatLists", 1) { ev, a, loc in .list(try ev.list(a[0], loc).flatMap { try ev.list($0, loc) }) })
        add(op("concatMap", 2) { ev, a, loc in
            let f = try ev.force(a[0])
            return .list(try ev.list(a[1], loc).flatMap { try ev.list(Thunk(value: try ev.call(f, $0, loc)), loc) })
        })
        add(op("foldl'", 3) { ev, a, loc in
            let f = try ev.force(a[0])
            var acc = try ev.force(a[1])
            for item in try ev.list(a[2], loc) {
                acc = try ev.call(try ev.call(f, Thunk(value: acc), loc), item, loc)
            }
            return acc
        })
        add(op("genList", 2) { ev, a, loc in
            let f = try ev.force(a[0]), n = try ev.int(a[1], loc)
            guard n >= 0 else { throw NixEvalError("cannot create list of size \(n)", at: loc) }
            guard n <= 1 << 26 else { throw NixEvalError.unsupported("a list of \(n) elements (ferry's limit is 67108864)", at: loc) }
            return .list((0..<n).map { i in Thunk { try ev.call(f, Thunk(value: .int(i)), loc) } })
        })
        add(op("all", 2) { ev, a, loc in
            let f = try ev.force(a[0])
            for t in try ev.list(a[1], loc) where !(try ev.bool(Thunk(value: try ev.call(f, t, loc)), loc)) { return .bool(false) }
            return .bool(true)
        })
        add(op("any", 2) { ev, a, loc in
            let f = try ev.force(a[0])
            for t in try ev.list(a[1], loc) where try ev.bool(Thunk(value: try ev.call(f, t, loc)), loc) { return .bool(true) }
            return .bool(false)
        })
        add(op("sort", 2) { ev, a, loc in
            let f = try ev.force(a[0])
            let items = try ev.list(a[1], loc)
            return .list(try stableSort(items) { x, y in try ev.bool(Thunk(value: try ev.call(try ev.call(f, x, loc), y, loc)), loc) })
        })

        // Attribute sets
        add(op("attrNames", 1) { ev, a, loc in .list(try ev.attrs(a[0], loc).keys.sorted().map { Thunk(value: .string($0)) }) })
        add(op("attrValues", 1) { ev, a, loc in
            let s = try ev.attrs(a[0], loc)
            return .list(s.keys.sorted().map { s[$0]! })
        })
        add(op("hasAttr", 2) { ev, a, loc in .bool(try ev.attrs(a[1], loc)[try ev.string(a[0], loc)] != nil) })
        add(op("getAttr", 2) { ev, a, loc in
            let name = try ev.string(a[0], loc)
            guard let v = try ev.attrs(a[1], loc)[name] else { throw NixEvalError("attribute '\(name)' missing", at: loc) }
            return try ev.force(v)
        })
        add(op("removeAttrs", 2) { ev, a, loc in
            var s = try ev.attrs(a[0], loc)
            for t in try ev.list(a[1], loc) { s[try ev.string(t, loc)] = nil }
            return .attrs(s)
        })
        add(op("intersectAttrs", 2) { ev, a, loc in
            let x = try ev.attrs(a[0], loc), y = try ev.attrs(a[1], loc)
            return .attrs(y.filter { x[$0.key] != nil })
        })
        add(op("listToAttrs", 1) { ev, a, loc in
            var s: [NixString: Thunk] = [:]
            for t in try ev.list(a[0], loc) {
                let item = try ev.attrs(t, loc)
                guard let n = item["name"] else { throw NixEvalError("attribute 'name' missing", at: loc) }
                guard let v = item["value"] else { throw NixEvalError("attribute 'value' missing", at: loc) }
                let name = try ev.string(n, loc)
                if s[name] == nil { s[name] = v }  // the first one wins
            }
            return .attrs(s)
        })
        add(op("mapAttrs", 2) { ev, a, loc in
            let f = try ev.force(a[0])
            var s: [NixString: Thunk] = [:]
            for (k, v) in try ev.attrs(a[1], loc) {
                s[k] = Thunk { try ev.call(try ev.call(f, Thunk(value: .string(k)), loc), v, loc) }
            }
            return .attrs(s)
        })
        add(op("catAttrs", 2) { ev, a, loc in
            let name = try ev.string(a[0], loc)
            return .list(try ev.list(a[1], loc).compactMap { try ev.attrs($0, loc)[name] })
        })
        add(op("functionArgs", 1) { ev, a, loc in
            switch try ev.force(a[0]) {
            case .lambda(let l, _):
                var s: [NixString: Thunk] = [:]
                for f in l.formals ?? [] { s[NixString(f.name)] = Thunk(value: .bool(f.defaultValue != nil)) }
                return .attrs(s)
            case .primop: return .attrs([:])
            case let v: throw NixEvalError("value is \(v.article) while a function was expected", at: loc)
            }
        })

        // Strings
        add(op("stringLength", 1) { ev, a, loc in .int(try ev.coerceToString(try ev.force(a[0]), loc, more: false).count) })
        add(op("substring", 3) { ev, a, loc in
            let start = try ev.int(a[0], loc), len = try ev.int(a[1], loc)
            let s = try ev.coerceToString(try ev.force(a[2]), loc, more: false).bytes
            guard start >= 0 else { throw NixEvalError("negative start position in 'substring'", at: loc) }
            guard start < s.count else { return .string("") }
            let end = len < 0 || len >= s.count - start ? s.count : start + len
            return .string(NixString(bytes: s[start..<end]))
        })
        add(op("concatStringsSep", 2) { ev, a, loc in
            let sep = try ev.string(a[0], loc)
            let parts = try ev.list(a[1], loc).map { try ev.coerceToString(try ev.force($0), loc, more: false).bytes }
            return .string(NixString(Array(parts.joined(separator: sep.bytes))))
        })
        add(op("replaceStrings", 3) { ev, a, loc in
            let from = try ev.list(a[0], loc).map { try ev.string($0, loc).bytes }
            let to = try ev.list(a[1], loc).map { try ev.string($0, loc).bytes }
            guard from.count == to.count else { throw NixEvalError("'from' and 'to' arguments to 'replaceStrings' have different lengths", at: loc) }
            return .string(replaceStrings(try ev.string(a[2], loc).bytes, from, to))
        })
        add(op("toJSON", 1) { ev, a, loc in .string(NixString(try NixWriter.jsonBytes(try ev.force(a[0]), ev, loc))) })
        add(op("baseNameOf", 1) { ev, a, loc in
            var s = try ev.coerceToString(try ev.force(a[0]), loc, more: false).bytes
            if s.last == UInt8(ascii: "/") { s.removeLast() }
            return .string(NixString(bytes: s.lastIndex(of: UInt8(ascii: "/")).map { s[($0 + 1)...] } ?? s[...]))
        })
        add(op("dirOf", 1) { ev, a, loc in
            let v = try ev.force(a[0])
            let s = try ev.coerceToString(v, loc, more: true).bytes
            guard let slash = s.lastIndex(of: UInt8(ascii: "/")) else { return .string(".") }
            let dir = slash == 0 ? [UInt8(ascii: "/")] : Array(s[..<slash])
            if case .path = v { return .path(String(decoding: dir, as: UTF8.self)) }
            return .string(NixString(dir))
        })

        // Arithmetic
        for (name, opr) in [("add", BinaryOperator.add), ("sub", .subtract), ("mul", .multiply), ("div", .divide)] {
            add(op(name, 2) { ev, a, loc in try ev.arithmetic(opr, try ev.force(a[0]), try ev.force(a[1]), loc) })
        }
        for (name, rule) in [("floor", FloatingPointRoundingRule.down), ("ceil", .up)] {
            add(op(name, 1) { ev, a, loc in
                let v = try ev.force(a[0])
                guard let d = Builtins.double(v) else { throw NixEvalError("value is \(v.article) while a float was expected", at: loc) }
                // Out of range (and NaN) Nix 2.8's C++ conversion gives INT64_MIN on x86-64.
                let r = d.rounded(rule)
                return .int(r.isFinite && r >= -9.223372036854775808e18 && r < 9.223372036854775808e18 ? Int(r) : Int.min)
            })
        }
        add(op("lessThan", 2) { ev, a, loc in .bool(try ev.lessThan(try ev.force(a[0]), try ev.force(a[1]), loc)) })
        add(op("bitAnd", 2) { ev, a, loc in .int(try ev.int(a[0], loc) & ev.int(a[1], loc)) })
        add(op("bitOr", 2) { ev, a, loc in .int(try ev.int(a[0], loc) | ev.int(a[1], loc)) })
        add(op("bitXor", 2) { ev, a, loc in .int(try ev.int(a[0], loc) ^ ev.int(a[1], loc)) })
        return t
    }


    static func double(_ v: Value) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .float(let f): return f
        default: return nil
        }
    }

    /// Nix's replaceStrings: at each position the first matching `from` wins; an empty `from`
    /// matches between every character.
    static func replaceStrings(_ s: [UInt8], _ from: [[UInt8]], _ to: [[UInt8]]) -> NixString {
        var out: [UInt8] = []
        var i = 0
        while i <= s.count {
            var matched = false
            for (k, pattern) in from.enumerated() where i + pattern.count <= s.count && Array(s[i..<i + pattern.count]) == pattern {
                out += to[k]
                matched = true
                if pattern.isEmpty {
                    if i < s.count { out.append(s[i]) }
                    i += 1
                } else {
                    i += pattern.count
                }
                break
            }
            if !matched {
                if i < s.count { out.append(s[i]) }
                i += 1
            }
        }
        return NixString(out)
    }

    static func stableSort(_ items: [Thunk], _ less: (Thunk, Thunk) throws -> Bool) throws -> [Thunk] {
        guard items.count > 1 else { return items }
        let mid = items.count / 2
        let l = try stableSort(Array(items[..<mid]), less), r = try stableSort(Array(items[mid...]), less)
        var out: [Thunk] = []
        out.reserveCapacity(items.count)
        var i = 0, j = 0
        while i < l.count && j < r.count {
            if try less(r[j], l[i]) { out.append(r[j]); j += 1 } else { out.append(l[i]); i += 1 }
        }
        return out + l[i...] + r[j...]
    }
}

extension Evaluator {
    func list(_ t: Thunk, _ loc: SourceLocation) throws -> [Thunk] {
        let v = try force(t)
        guard case .list(let l) = v else { throw NixEvalError("value is \(v.article) while a list was expected", at: loc) }
        return l
    }

    func attrs(_ t: Thunk, _ loc: SourceLocation) throws -> [NixString: Thunk] {
        let v = try force(t)
        guard case .attrs(let s) = v else { throw NixEvalError("value is \(v.article) while a set was expected", at: loc) }
        return s
    }

    func string(_ t: Thunk, _ loc: SourceLocation) throws -> NixString {
        let v = try force(t)
        guard case .string(let s) = v else { throw NixEvalError("value is \(v.article) while a string was expected", at: loc) }
        return s
    }

    func int(_ t: Thunk, _ loc: SourceLocation) throws -> Int {
        let v = try force(t)
        guard case .int(let i) = v else { throw NixEvalError("value is \(v.article) while an integer was expected", at: loc) }
        return i
    }

    func bool(_ t: Thunk, _ loc: SourceLocation) throws -> Bool {
        let v = try force(t)
        guard case .bool(let b) = v else { throw NixEvalError("value is \(v.article) while a Boolean was expected", at: loc) }
        return b
    }
}
