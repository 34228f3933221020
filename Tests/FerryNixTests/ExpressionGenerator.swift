import FerryXCTestSupport

/// Seeded generator of well-formed Nix expressions over ints, bools, strings, lists and sets,
/// mixing unparenthesized operator chains (to test precedence) with lets, lambdas, withs,
/// interpolation, indented strings and builtins. Most evaluate; some fail (e.g. a missing attribute).
struct ExpressionGenerator {
    enum Kind: CaseIterable { case int, bool, string, list, attrs }

    private var rng: SplitMix64
    private var scope: [(String, Kind)] = []
    private var counter = 0

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func expression() -> String {
        let kind = Kind.allCases[pick(Kind.allCases.count)]
        return gen(kind, depth: 4)
    }

    private mutating func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
    private mutating func chance(_ percent: Int) -> Bool { pick(100) < percent }
    private mutating func fresh() -> String { counter += 1; return "v\(counter)" }

    private mutating func variable(_ kind: Kind) -> String? {
        let options = scope.filter { $0.1 == kind }
        return options.isEmpty ? nil : options[pick(options.count)].0
    }

    mutating func gen(_ kind: Kind, depth: Int) -> String {
        if depth > 0 && chance(18) { return binder(kind, depth: depth) }
        switch kind {
        case .int: return int(depth)
        case .bool: return bool(depth)
        case .string: return string(depth)
        case .list: return list(depth)
        case .attrs: return attrs(depth)
        }
    }

    /// let / lambda / with / if around an expression of the same kind.
    private mutating func binder(_ kind: Kind, depth: Int) -> String {
        if chance(20) { return "(if \(bool(depth - 1)) then \(gen(kind, depth: depth - 1)) else \(gen(kind, depth: depth - 1)))" }
        let name = fresh()
        let bound = Kind.allCases[pick(Kind.allCases.count)]
        let value = gen(bound, depth: depth - 1)
        scope.append((name, bound))
        defer { scope.removeLast() }
        let body = gen(kind, depth: depth - 1)
        switch pick(4) {
        case 0: return "(let \(name) = \(value); in \(body))"
        case 1: return "((\(name): \(body)) (\(value)))"
        case 2: return "(({ \(name), unused ? throw \"lazy default\", ... }: \(body)) { \(name) = \(value); extra = 1; })"
        default: return "(with { \(name) = \(value); }; \(body))"
        }
    }

    private mutating func intAtom(_ depth: Int) -> String {
        if depth > 0 && chance(30) {
            switch pick(6) {
            case 0: return "(builtins.length \(list(depth - 1)))"
            case 1: return "(builtins.stringLength \(string(depth - 1)))"
            case 2: return "(builtins.foldl' (a: b: a + b) 0 \(list(depth - 1)))"
            case 3: return "(\(attrs(depth - 1)).n or \(pick(9)))"
            case 4: return "(builtins.head ([ \(pick(9)) ] ++ \(list(depth - 1))))"
            default: return "(\(int(depth - 1)))"
            }
        }
        if chance(30), let v = variable(.int) { return v }
        let n = pick(40) - 10
        return n < 0 ? "(\(n))" : String(n)
    }

    private mutating func int(_ depth: Int) -> String {
        var out = intAtom(depth)
        for _ in 0..<pick(4) {
            let op = ["+", "-", "*", "/"][pick(4)]
            // Divisors are positive literals, so no chain divides by zero.
            out += op == "/" ? " / \(1 + pick(7))" : " \(op) \(intAtom(depth - 1))"
        }
        if chance(10) { out = "-\(intAtom(depth - 1)) + " + out }
        return out
    }

    private mutating func bool(_ depth: Int) -> String {
        func atom(_ g: inout ExpressionGenerator) -> String {
            switch g.pick(9) {
            case 0: return ["true", "false"][g.pick(2)]
            case 1: return "\(g.intAtom(depth - 1)) \(["<", "<=", ">", ">=", "==", "!="][g.pick(6)]) \(g.intAtom(depth - 1))"
            case 2: return "(\(g.string(depth - 1)) == \(g.string(depth - 1)))"
            case 3: return "(builtins.elem \(g.intAtom(depth - 1)) \(g.list(depth - 1)))"
            case 4: return "(\(g.attrs(depth - 1)) ? \(["a", "b", "n", "\"c d\""][g.pick(4)]))"
            case 5: return "(\(g.list(depth - 1)) == \(g.list(depth - 1)))"
            case 6: return "(\(g.string(depth - 1)) < \(g.string(depth - 1)))"
            case 7: if let v = g.variable(.bool) { return v }; return "true"
            default: return "!\(["true", "false"][g.pick(2)])"
            }
        }
        var out = atom(&self)
        if depth > 0 {
            for _ in 0..<pick(3) { out += " \(["&&", "||", "->"][pick(3)]) \(atom(&self))" }
        }
        return out
    }

    private static let textPieces = ["a", "b c", "é", "\\\"", "\\\\", "\\n", "\\t", "\\$", "$", "$$", "{", "}", "x-y", " ", "''"]

    private mutating func stringAtom(_ depth: Int) -> String {
        if depth > 0 && chance(40) {
            switch pick(7) {
            case 0: return "(toString \(intAtom(depth - 1)))"
            case 1: return "(builtins.concatStringsSep \"\(Self.textPieces[pick(6)])\" (map toString \(list(depth - 1))))"
            case 2: return "(builtins.replaceStrings [ \"a\" \"b\" ] [ \"\(Self.textPieces[pick(8)])\" \"\" ] \(string(depth - 1)))"
            case 3: return "(builtins.substring \(pick(4)) \(pick(6) - 1) \(string(depth - 1)))"
            case 4: return indented(depth)
            case 5: return "(builtins.concatStringsSep \",\" (builtins.attrNames \(attrs(depth - 1))))"
            default: return "(\(string(depth - 1)))"
            }
        }
        if chance(30), let v = variable(.string) { return v }
        var s = "\""
        for _ in 0..<pick(4) {
            if depth > 0 && chance(25) { s += "${\(string(depth - 1))}" } else { s += Self.textPieces[pick(Self.textPieces.count)] }
        }
        if s.hasSuffix("$") && !s.hasSuffix("\\$") { s += "x" }
        return s + "\""
    }

    private mutating func indented(_ depth: Int) -> String {
        var s = "''"
        if chance(70) { s += String(repeating: " ", count: pick(3)) + "\n" }
        for _ in 0..<(1 + pick(4)) {
            s += String(repeating: " ", count: pick(6))
            switch pick(6) {
            case 0: s += "${\(string(depth - 1))}"
            case 1: s += "''$ '''"
            case 2: s += "''\\n x"
            default: s += ["line", "a  b", "é", "$ {", "\""][pick(5)]
            }
            s += chance(85) ? "\n" : ""
        }
        s += String(repeating: " ", count: pick(4))
        return s + "''"
    }

    private mutating func string(_ depth: Int) -> String {
        var out = stringAtom(depth)
        for _ in 0..<pick(3) { out += " + \(stringAtom(depth - 1))" }
        return out
    }

    private mutating func list(_ depth: Int) -> String {
        if depth > 0 && chance(45) {
            switch pick(7) {
            case 0: return "(map (x: x * \(pick(5))) \(list(depth - 1)))"
            case 1: return "(builtins.filter (x: x > \(pick(10))) \(list(depth - 1)))"
            case 2: return "(builtins.genList (i: i + \(intAtom(depth - 1))) \(pick(5)))"
            case 3: return "(builtins.sort (a: b: a < b) \(list(depth - 1)))"
            case 4: return "(\(list(depth - 1)) ++ \(list(depth - 1)))"
            case 5: return "(builtins.attrValues (builtins.mapAttrs (n: v: v + 1) \(attrs(depth - 1))))"
            default: if let v = variable(.list) { return v }; return "[ ]"
            }
        }
        return "[ " + (0..<pick(5)).map { _ in intAtom(depth - 1) }.joined(separator: " ") + " ]"
    }

    private mutating func attrs(_ depth: Int) -> String {
        if depth > 0 && chance(40) {
            switch pick(5) {
            case 0: return "(\(attrs(depth - 1)) // \(attrs(depth - 1)))"
            case 1: return "(builtins.listToAttrs (map (x: { name = toString x; value = x; }) \(list(depth - 1))))"
            case 2: return "(rec { a = \(intAtom(depth - 1)); n = a + 1; })"
            case 3: return "(builtins.removeAttrs \(attrs(depth - 1)) [ \"a\" ])"
            default: if let v = variable(.attrs) { return v }; return "{ }"
            }
        }
        let names = ["a", "b", "n", "\"c d\"", "x.y", "${\"dyn\"}"]
        var used = Set<String>()
        var out = "{ "
        for _ in 0..<pick(4) {
            let name = names[pick(names.count)]
            let root = String(name.split(separator: ".").first!)
            guard used.insert(root).inserted else { continue }
            out += "\(name) = \(intAtom(depth - 1)); "
        }
        return out + "}"
    }
}
