/// POSIX shell quoting: the one way ferry builds remote command lines.
public enum ShellQuote {
    /// Quotes one argument so that `sh` reads it back as exactly these bytes (NUL cannot be passed).
    public static func quote(_ argument: [UInt8]) -> [UInt8] {
        if !argument.isEmpty && argument.allSatisfy(isSafe) { return argument }
        var out: [UInt8] = [UInt8(ascii: "'")]
        out.reserveCapacity(argument.count + 2)
        for byte in argument {
            if byte == UInt8(ascii: "'") {
                out.append(contentsOf: Array("'\\''".utf8))
            } else {
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "'"))
        return out
    }

    public static func quote(_ argument: String) -> String {
        String(decoding: quote(Array(argument.utf8)), as: UTF8.self)
    }

    /// Joins quoted arguments with spaces into one command line.
    public static func join(_ arguments: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, arg) in arguments.enumerated() {
            if i > 0 { out.append(UInt8(ascii: " ")) }
            out.append(contentsOf: quote(arg))
        }
        return out
    }

    public static func join(_ arguments: [String]) -> String {
        String(decoding: join(arguments.map { Array($0.utf8) }), as: UTF8.self)
    }

    private static func isSafe(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "/"),
             UInt8(ascii: ","), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "%"),
             UInt8(ascii: "+"):
            return true
        default:
            return false
        }
    }
}

public enum ShellQuoteError: Error, Equatable, CustomStringConvertible {
    case nulByte(argument: Int)

    public var description: String {
        switch self {
        case .nulByte(let n): return "argument \(n) of the command contains a NUL byte, which no remote command can receive"
        }
    }
}

/// A command line for the remote shell. Build it from arguments; `script` is for fixed
/// shell text written by ferry itself, never for pasting in values.
public struct RemoteCommand: Sendable, CustomStringConvertible {
    /// The argument list, kept until the command is sent (a local test shell runs it without a shell).
    public let arguments: [[UInt8]]
    /// The command line the remote shell receives: each argument quoted on its own.
    public var bytes: [UInt8] { ShellQuote.join(arguments) }

    public init(_ arguments: [String]) {
        self.arguments = arguments.map { Array($0.utf8) }
    }

    public init(arguments: [[UInt8]]) {
        self.arguments = arguments
    }

    /// Arguments as raw bytes (names need not be UTF-8); a NUL cannot reach a remote command.
    public init(validating arguments: [[UInt8]]) throws {
        if let bad = arguments.firstIndex(where: { $0.contains(0) }) {
            throw ShellQuoteError.nulByte(argument: bad + 1)
        }
        self.init(arguments: arguments)
    }

    /// `sh -c SCRIPT ferry ARG…`: the script reads its values as "$1"…, never pasted in.
    public static func script(_ script: String, arguments: [[UInt8]] = []) -> RemoteCommand {
        RemoteCommand(arguments: [Array("sh".utf8), Array("-c".utf8), Array(script.utf8), Array("ferry".utf8)] + arguments)
    }

    public var description: String { String(decoding: bytes, as: UTF8.self) }
}
