/// A Nix value. Lists and attribute values are thunks: evaluated only when needed.
public enum Value {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case null
    case string(NixString)
    case path(String)
    case list([Thunk])
    case attrs([NixString: Thunk])
    case lambda(Lambda, Environment)
    case primop(PrimOp, [Thunk])

    /// The identity Nix 2.8 prints «repeated» by: a non-empty set's bindings, and a list's
    /// element array — shared by every copy for lists of three or more, but kept inside the
    /// value's own slot for lists of one or two (so there the slot, `slot`, is the identity).
    /// Copies of a Swift dictionary or array share their storage until one is changed, and Nix
    /// values are never changed, so equal storage means the same Nix value.
    func identity(slot: ObjectIdentifier?) -> UInt? {
        switch self {
        case .attrs(let a) where !a.isEmpty:
            return withUnsafeBytes(of: a) { $0.load(as: UInt.self) }
        case .list(let l) where l.count > 2:
            return withUnsafeBytes(of: l) { $0.load(as: UInt.self) }
        case .list(let l) where !l.isEmpty:
            return slot.map { UInt(bitPattern: $0) }
        default: return nil
        }
    }

    /// The type name as `builtins.typeOf` says it.
    public var typeName: String {
        switch self {
        case .int: return "int"
        case .float: return "float"
        case .bool: return "bool"
        case .null: return "null"
        case .string: return "string"
        case .path: return "path"
        case .list: return "list"
        case .attrs: return "set"
        case .lambda, .primop: return "lambda"
        }
    }

    /// As Nix's error messages name types ("a string", "an integer", …).
    var article: String {
        switch self {
        case .int: return "an integer"
        case .float: return "a float"
        case .bool: return "a Boolean"
        case .null: return "null"
        case .string: return "a string"
        case .path: return "a path"
        case .list: return "a list"
        case .attrs: return "a set"
        case .lambda: return "a function"
        case .primop: return "a built-in function"
        }
    }
}

/// A suspended computation, evaluated at most once.
public final class Thunk {
    enum State {
        case pending(Expr, Environment)
        case deferred(() throws -> Value)
        case evaluating
        case done(Value)
    }

    var state: State

    init(_ expr: Expr, _ env: Environment) { state = .pending(expr, env) }
    init(value: Value) { state = .done(value) }
    init(_ compute: @escaping () throws -> Value) { state = .deferred(compute) }

    /// Where its expression starts, while it is still pending.
    var location: SourceLocation? {
        if case .pending(let expr, _) = state { return expr.location }
        return nil
    }
}

/// A scope: lexical names, or a `with` set whose names are seen only when no lexical one matches.
public final class Environment {
    enum Frame {
        case names([String: Thunk])
        case with(Thunk)
    }

    var frame: Frame
    let parent: Environment?

    init(_ frame: Frame, parent: Environment?) {
        self.frame = frame
        self.parent = parent
    }
}

/// A built-in function and how many arguments it takes.
public struct PrimOp {
    let name: String
    let arity: Int
    let apply: (Evaluator, [Thunk], SourceLocation) throws -> Value
}

/// An evaluation error, or a construct ferry's evaluator does not support.
public struct NixEvalError: Error, CustomStringConvertible {
    public let location: SourceLocation?
    public let message: String

    public init(_ message: String, at location: SourceLocation?) {
        self.message = message
        self.location = location
    }

    public var description: String {
        location.map { "\($0): error: \(message)" } ?? "error: \(message)"
    }

    static func unsupported(_ what: String, at location: SourceLocation?) -> NixEvalError {
        NixEvalError("not supported by ferry's evaluator: \(what)", at: location)
    }
}
