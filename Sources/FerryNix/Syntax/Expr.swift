/// The Nix abstract syntax tree.
public indirect enum Expr {
    case int(Int)
    case float(Double)
    case string([InterpolatedPart])
    /// An absolute, canonical path.
    case path(String)
    case searchPath(String, SourceLocation)
    case variable(String, SourceLocation)
    case select(Expr, [AttrKey], orDefault: Expr?, SourceLocation)
    case hasAttr(Expr, [AttrKey], SourceLocation)
    case list([Expr])
    case attrs(Bindings, SourceLocation)
    case letIn(Bindings, Expr, SourceLocation)
    case lambda(Lambda)
    case call(Expr, Expr, SourceLocation)
    case with(Expr, Expr, SourceLocation)
    case assert(Expr, Expr, SourceLocation)
    case ifThenElse(Expr, Expr, Expr, SourceLocation)
    case not(Expr, SourceLocation)
    case negate(Expr, SourceLocation)
    case binary(BinaryOperator, Expr, Expr, SourceLocation)
}

extension Expr {
    /// Where the expression starts, when the tree records it.
    var location: SourceLocation? {
        switch self {
        case .searchPath(_, let l), .variable(_, let l), .select(_, _, _, let l), .hasAttr(_, _, let l), .attrs(_, let l),
             .letIn(_, _, let l), .call(_, _, let l), .with(_, _, let l), .assert(_, _, let l), .ifThenElse(_, _, _, let l),
             .not(_, let l), .negate(_, let l), .binary(_, _, _, let l):
            return l
        case .lambda(let lambda): return lambda.location
        case .int, .float, .string, .path, .list: return nil
        }
    }
}

public enum InterpolatedPart {
    case text([UInt8])
    case expr(Expr, SourceLocation)
}

public enum AttrKey {
    case name(NixString)
    case dynamic(Expr, SourceLocation)
}

public enum BinaryOperator: String, Sendable {
    case implication = "->", or = "||", and = "&&", equal = "==", notEqual = "!="
    case less = "<", greater = ">", lessOrEqual = "<=", greaterOrEqual = ">="
    case update = "//", add = "+", subtract = "-", multiply = "*", divide = "/", concat = "++"
}

/// The bindings of an attribute set or `let`.
public struct Bindings {
    public enum Value {
        /// `name = expr;` — evaluated in the set's own scope when recursive, else outside.
        case expr(Expr)
        /// `inherit name;` — always looked up outside the set.
        case inherit(SourceLocation)
        /// `inherit (from) name;`
        case inheritFrom(Expr, SourceLocation)
    }

    public struct Binding {
        public var value: Value
        public var location: SourceLocation
    }

    public var recursive: Bool
    /// Static names in first-definition order.
    public var order: [NixString] = []
    public var named: [NixString: Binding] = [:]
    public var dynamic: [(key: Expr, value: Expr, location: SourceLocation)] = []
}

public struct Lambda {
    public struct Formal {
        public var name: String
        public var defaultValue: Expr?
    }

    /// `x: …`
    public var argument: String?
    /// `{ a, b ? 1, ... }: …`; nil for a plain `x:` lambda.
    public var formals: [Formal]?
    public var ellipsis: Bool
    public var body: Expr
    public var location: SourceLocation
}
