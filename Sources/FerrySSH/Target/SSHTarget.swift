/// Where to connect: `[user@]host[:port]`, `[user@][v6addr]:port` or `ssh://[user@]host[:port]`.
public struct SSHTarget: Hashable, Sendable, CustomStringConvertible {
    public var user: String
    public var host: String
    public var port: Int

    public static let defaultUser = "root"
    public static let defaultPort = 22

    public init(user: String = SSHTarget.defaultUser, host: String, port: Int = SSHTarget.defaultPort) {
        self.user = user
        self.host = host
        self.port = port
    }

    /// Parses a target; user defaults to root, port to 22. `allowPath: false` names the mistake
    /// of giving an `ssh://host/path` where only a host is wanted.
    public init(parsing text: String, allowPath: Bool = true) throws {
        let parts = try SSHTarget.parts(of: text, allowPath: allowPath)
        self.init(user: parts.user ?? SSHTarget.defaultUser, host: parts.host, port: parts.port ?? SSHTarget.defaultPort)
    }

    /// `[user@]host[:port]`, `[user@][v6addr]:port` or `ssh://[user@]host[:port]` taken apart;
    /// nil: not written (ssh_config or a default decides).
    public static func parts(of text: String, allowPath: Bool = false) throws -> (user: String?, host: String, port: Int?) {
        var rest = Substring(text)
        if rest.hasPrefix("ssh://") {
            rest = rest.dropFirst("ssh://".count)
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            if !allowPath, let slash = rest.firstIndex(of: "/"), !rest[..<slash].contains("[") || rest[..<slash].contains("]") {
                throw SSHTargetError.pathNotAllowed(text, String(rest[slash...]))
            }
        }
        var user: String?
        if let at = rest.lastIndex(of: "@") {
            user = String(rest[..<at])
            rest = rest[rest.index(after: at)...]
            guard !user!.isEmpty else { throw SSHTargetError.emptyUser(text) }
        }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw SSHTargetError.unclosedBracket(text) }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw SSHTargetError.malformed(text) }
                portText = after.dropFirst()
            }
        } else if rest.filter({ $0 == ":" }).count > 1 {
            host = rest  // a bare IPv6 address carries no port
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw SSHTargetError.emptyHost(text) }
        guard !host.contains(where: { $0 == "/" || $0 == "@" || $0.isWhitespace || $0 == "[" || $0 == "]" }) else {
            throw SSHTargetError.badHost(text, String(host))
        }
        var port: Int?
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else {
                throw SSHTargetError.badPort(text, String(portText))
            }
            port = p
        }
        return (user, String(host), port)
    }

    /// The name OpenSSH looks up in known_hosts: `host`, or `[host]:port` off port 22, in lower
    /// case as ssh lowercases host names.
    public var knownHostsName: String {
        let h = host.lowercased()
        return port == 22 ? h : "[\(h)]:\(port)"
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 22 ? "\(user)@\(h)" : "\(user)@\(h):\(port)"
    }
}

public enum SSHTargetError: Error, Equatable, CustomStringConvertible {
    case emptyUser(String)
    case emptyHost(String)
    case unclosedBracket(String)
    case malformed(String)
    case badHost(String, String)
    case badPort(String, String)
    case pathNotAllowed(String, String)

    public var description: String {
        switch self {
        case .emptyUser(let t): return "bad target '\(t)': the user before '@' is empty"
        case .emptyHost(let t): return "bad target '\(t)': no host name; expected [user@]host[:port]"
        case .unclosedBracket(let t): return "bad target '\(t)': '[' without ']'; write IPv6 addresses as [addr]:port"
        case .malformed(let t): return "bad target '\(t)': expected [user@]host[:port], [user@][v6addr]:port or ssh://[user@]host[:port]"
        case .badHost(let t, let h): return "bad target '\(t)': '\(h)' is not a host name or address"
        case .badPort(let t, let p): return "bad target '\(t)': port '\(p)' is not a number from 1 to 65535"
        case .pathNotAllowed(let t, let p): return "bad target '\(t)': exec takes a host, not a path ('\(p)'); give the command after --"
        }
    }
}
