/// Nix resolves names when it parses: a name bound nowhere (and under no `with`) is an error even
/// in a branch never evaluated. This pass does the same, so ferry rejects what Nix rejects.
enum ScopeCheck {
    /// The names Nix 2.8 binds at top level.
    static let globals: Set<String> = [
        "builtins", "true", "false", "null", "abort", "baseNameOf", "derivation", "derivationStrict", "dirOf",
        "fetchGit", "fetchMercurial", "fetchTarball", "fetchTree", "fromTOML", "import", "isNull", "map",
        "placeholder", "removeAttrs", "scopedImport", "throw", "toString",
    ]

    static func check(_ expr: Expr, _ scope: Set<String>, underWith: Bool) throws {
        if NativeStack.exhausted { throw NativeStack.overflow(expr.location) }
        func go(_ e: Expr, _ s: Set<String> = scope, _ w: Bool = underWith) throws { try check(e, s, underWith: w) }
        switch expr {
        case .int, .float, .path, .searchPath: return
        case .string(let parts):
            for case .expr(let e, _) in parts { try go(e) }
        case .variable(let name, let loc):
            if !underWith && !scope.contains(name) && !(name.hasPrefix("__") && name.count > 2) {
                throw NixSyntaxError(location: loc, message: "undefined variable '\(name)'")
            }
        case .select(let base, let path, let fallback, _):
            try go(base)
            for case .dynamic(let e, _) in path { try go(e) }
            if let fallback { try go(fallback) }
        case .hasAttr(let base, let path, _):
            try go(base)
            for case .dynamic(let e, _) in path { try go(e) }
        case .list(let items):
            for item in items { try go(item) }
        case .attrs(let b, _):
            try bindings(b, scope, underWith, inner: b.recursive ? scope.union(b.order.map(\.description)) : scope)
        case .letIn(let b, let body, _):
            let inner = scope.union(b.order.map(\.description))
            try bindings(b, scope, underWith, inner: inner)
            try go(body, inner)
        case .lambda(let l):
            var inner = scope
            if let a = l.argument { inner.insert(a) }
            for f in l.formals ?? [] { inner.insert(f.name) }
            for f in l.formals ?? [] { if let d = f.defaultValue { try go(d, inner) } }
            try go(l.body, inner)
        case .call(let f, let a, _): try go(f); try go(a)
        case .with(let s, let body, _): try go(s); try go(body, scope, true)
        case .assert(let c, let body, _): try go(c); try go(body)
        case .ifThenElse(let c, let t, let e, _): try go(c); try go(t); try go(e)
        case .not(let e, _), .negate(let e, _): try go(e)
        case .binary(_, let l, let r, _): try go(l); try go(r)
        }
    }

    private static func bindings(_ b: Bindings, _ outer: Set<String>, _ w: Bool, inner: Set<String>) throws {
        for name in b.order {
            switch b.named[name]!.value {
            case .expr(let e): try check(e, inner, underWith: w)
            case .inherit(let loc):
                if !w && !outer.contains(name.description) { throw NixSyntaxError(location: loc, message: "undefined variable '\(name)'") }
            case .inheritFrom(let source, _): try check(source, inner, underWith: w)
            }
        }
        for d in b.dynamic {
            try check(d.key, inner, underWith: w)
            try check(d.value, inner, underWith: w)
        }
    }
}
