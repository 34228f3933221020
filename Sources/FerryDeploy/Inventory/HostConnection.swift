import FerrySSH
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How ferry reaches one host, and where each setting came from. Precedence, highest first:
/// command-line flags, the host's fleet.toml table, ssh_config, fleet.toml `[defaults]`, ferry's
/// defaults — so a `[defaults] user` never overrides an ssh_config `User`.
public struct HostConnection: Sendable {
    public struct Value<T: Sendable>: Sendable {
        public var value: T
        /// "flag", "fleet.toml [hosts.NAME]", "FILE:LINE" (ssh_config), "fleet.toml [defaults]", "default".
        public var source: String
    }

    /// The name connected to (ssh_config HostName, else the fleet.toml address).
    public var hostName: Value<String>
    public var user: Value<String>
    public var port: Value<Int>
    /// Absolute paths; empty: ferry's default keys (`~/.ssh/id_ed25519`, `~/.ssh/id_ecdsa` that exist).
    public var identityFiles: Value<[String]>
    /// Use only `identityFiles`, not the agent's other keys (ssh_config IdentitiesOnly).
    public var identitiesOnly: Value<Bool>
    /// The agent socket; nil: none.
    public var identityAgent: Value<String?>
    public var knownHosts: Value<String>
    public var hostKeyPolicy: Value<HostKeyPolicy>
    /// Jump hosts to go through, in order (nil: direct).
    public var jump: Value<ProxyJump?>
    /// Each jump host's own connection: what the hop names, then its ssh_config Host block, then
    /// `[defaults]`; `-i`, `--known-hosts`, `--host-key-policy` and `--connect-timeout` apply too.
    public var hops: [HostConnection] = []
    public var connectTimeout: Value<Double>
    public var keepaliveInterval: Value<Int>
    public var keepaliveCountMax: Value<Int>
    /// ssh_config lines ferry read but does not act on, and settings it weakened.
    public var warnings: [String] = []

    public var target: SSHTarget { SSHTarget(user: user.value, host: hostName.value, port: port.value) }

    /// The session settings (`onNotice` hears what the session wants the operator to know).
    public func configuration(onNotice: (@Sendable (String) -> Void)? = nil) -> SSHConfiguration {
        var c = SSHConfiguration(target: target, identityFiles: identityFiles.value, knownHostsFile: knownHosts.value,
                                 hostKeyPolicy: hostKeyPolicy.value, connectTimeout: connectTimeout.value,
                                 keepaliveInterval: keepaliveInterval.value, keepaliveCountMax: keepaliveCountMax.value,
                                 agentSocket: identitiesOnly.value ? nil : identityAgent.value)
        c.onNotice = onNotice
        return c
    }
}

/// Connection values given on the command line (nil or empty: not given).
public struct ConnectionFlags: Sendable {
    public var identity: [String] = []
    public var knownHosts: String?
    public var hostKeyPolicy: HostKeyPolicy?
    public var connectTimeout: Double?
    public var jump: String?

    public init(identity: [String] = [], knownHosts: String? = nil, hostKeyPolicy: HostKeyPolicy? = nil, connectTimeout: Double? = nil, jump: String? = nil) {
        self.identity = identity
        self.knownHosts = knownHosts
        self.hostKeyPolicy = hostKeyPolicy
        self.connectTimeout = connectTimeout
        self.jump = jump
    }
}

public enum ConnectionError: Error, CustomStringConvertible {
    case sshConfig(host: String, SSHConfigError)
    case badHostName(host: String, name: String, source: String)
    case duplicate(host: String, other: String, endpoint: String)
    case jumpLoop(host: String, source: String)
    case badJump(host: String, value: String, source: String)
    indirect case jumpHost(host: String, hop: String, ConnectionError)
    case missingIdentity(host: String, path: String, source: String)

    public var description: String {
        switch self {
        case .sshConfig(let host, let error): return "\(host): ssh_config: \(error)"
        case .badHostName(let host, let name, let source):
            return "\(host): '\(name)' (from \(source)) is not a DNS name or an IPv4/IPv6 address"
        case .duplicate(let host, let other, let endpoint): return "\(host): connects to the same address and port as \(other) (\(endpoint))"
        case .jumpLoop(let host, let source): return "\(host): the last jump host (from \(source)) is the host itself"
        case .badJump(let host, let value, let source): return "\(host): '\(value)' (from \(source)) is not a jump host list ([user@]host[:port], comma-separated)"
        case .jumpHost(let host, let hop, let error): return "\(host): jump host \(hop): \(error)"
        case .missingIdentity(let host, let path, let source): return "\(host): the identity file \(path) (from \(source)) does not exist"
        }
    }
}

extension Fleet.Host {
    /// A host named outside any host table (a command-line target, a jump hop): only what was written.
    static func named(_ address: String, user: String?, port: Int?) -> Fleet.Host {
        Fleet.Host(name: address, address: address, port: port, user: user, tags: [], domain: nil, vars: [],
                   identity: nil, knownHosts: nil, hostKeyPolicy: nil, jump: nil, operation: .switch)
    }
}

extension Fleet {
    /// `host`'s connection with `flags`, the host's table, `sshConfig` (nil: none read) and
    /// `[defaults]` applied in that order.
    public func connection(for host: Host, flags: ConnectionFlags = ConnectionFlags(), sshConfig: SSHClientConfig?) throws -> HostConnection {
        try Self.connection(for: host, table: "fleet.toml [hosts.\(host.name)]", defaults: defaults, flags: flags, sshConfig: sshConfig)
    }

    /// The same for a host named on the command line (`table`: where its user and port came from).
    public static func connection(for host: Host, table: String, defaults: Defaults, flags: ConnectionFlags, sshConfig: SSHClientConfig?) throws -> HostConnection {
        let defaultsTable = "fleet.toml [defaults]"
        let ssh: SSHClientConfig.Resolved
        do { ssh = try sshConfig?.resolve(host.address) ?? SSHClientConfig.Resolved() } catch let error as SSHConfigError {
            throw ConnectionError.sshConfig(host: host.name, error)
        }
        typealias V = HostConnection.Value
        func pick<T>(_ candidates: [(T?, String)], _ fallback: T) -> V<T> {
            for (value, source) in candidates { if let value { return V(value: value, source: source) } }
            return V(value: fallback, source: "default")
        }
        let home = SSHConfiguration.homeDirectory
        let localUser = SSHConfiguration.localUserName

        let rawName = ssh.hostName.map { V(value: $0.value, source: $0.origin) } ?? V(value: host.address, source: table)
        // OpenSSH lowercases names (not addresses); known_hosts holds them that way.
        let isAddress = rawName.value.contains(":") || rawName.value.allSatisfy { "0123456789.".contains($0) }
        let hostName = V(value: isAddress ? rawName.value : rawName.value.lowercased(), source: rawName.source)
        guard InventoryReader.isValidAddress(hostName.value) else {
            throw ConnectionError.badHostName(host: host.name, name: hostName.value, source: hostName.source)
        }
        let user = pick([(host.user, table), (ssh.user?.value, ssh.user?.origin ?? ""), (defaults.user, defaultsTable)], "root")
        let port = pick([(host.port, table), (ssh.port?.value, ssh.port?.origin ?? ""), (defaults.port, defaultsTable)], 22)
        // ssh_config's tokens, as OpenSSH expands them in IdentityFile and UserKnownHostsFile.
        let tokens: [Character: String] = ["h": hostName.value, "p": String(port.value), "r": user.value, "u": localUser, "n": host.address, "d": home]
        let reader = sshConfig ?? SSHClientConfig(file: "", home: home, localUser: localUser)
        func expand(_ setting: SSHClientConfig.Setting<String>) throws -> String {
            do { return try SSHClientConfig.expand(reader.tilde(setting.value), tokens: tokens, file: setting.file, line: setting.line) } catch let error as SSHConfigError {
                throw ConnectionError.sshConfig(host: host.name, error)
            }
        }
        let sshIdentities = ssh.identityFiles.isEmpty ? nil : try ssh.identityFiles.map(expand)
        let identityFiles = pick([(flags.identity.isEmpty ? nil : flags.identity, "flag"), (host.identity, table),
                                  (sshIdentities, ssh.identityFiles.first?.origin ?? ""), (defaults.identity, defaultsTable)], [])
        let identitiesOnly = pick([(ssh.identitiesOnly?.value, ssh.identitiesOnly?.origin ?? "")], false)
        var agent = V<String?>(value: SSHConfiguration.environment("SSH_AUTH_SOCK"), source: "default (SSH_AUTH_SOCK)")
        if let setting = ssh.identityAgent {
            switch setting.value {
            case "none": agent = V(value: nil, source: setting.origin)
            case "SSH_AUTH_SOCK": agent = V(value: SSHConfiguration.environment("SSH_AUTH_SOCK"), source: setting.origin)
            default: agent = V(value: try expand(setting), source: setting.origin)
            }
        }
        let sshKnownHosts = try ssh.userKnownHostsFiles.map { files in
            try expand(SSHClientConfig.Setting(value: files.value[0], file: files.file, line: files.line))
        }
        let knownHosts = pick([(flags.knownHosts, "flag"), (host.knownHosts, table), (sshKnownHosts, ssh.userKnownHostsFiles?.origin ?? ""),
                               (defaults.knownHosts, defaultsTable)], home + "/.ssh/known_hosts")
        var warnings = ssh.warnings
        var sshPolicy: HostKeyPolicy?
        switch ssh.strictHostKeyChecking?.value {
        case "yes"?, "ask"?: sshPolicy = .strict
        case "accept-new"?: sshPolicy = .acceptNew
        case "no"?:
            sshPolicy = .acceptNew
            warnings.append("\(ssh.strictHostKeyChecking!.origin): StrictHostKeyChecking no acts as accept-new in ferry: a changed host key is always refused")
        default: break
        }
        let policy = pick([(flags.hostKeyPolicy, "flag"), (host.hostKeyPolicy, table), (sshPolicy, ssh.strictHostKeyChecking?.origin ?? ""),
                           (defaults.hostKeyPolicy, defaultsTable)], HostKeyPolicy.strict)
        let jumpText = pick([(flags.jump, "flag"), (host.jump, table), (ssh.proxyJump?.value, ssh.proxyJump?.origin ?? ""), (defaults.jump, defaultsTable)], "none")
        var jump = V<ProxyJump?>(value: nil, source: jumpText.source)
        if jumpText.value.lowercased() != "none" {
            guard let chain = try? ProxyJump(jumpText.value) else {
                throw ConnectionError.badJump(host: host.name, value: jumpText.value, source: jumpText.source)
            }
            if chain.loops(host: hostName.value, port: port.value, user: user.value) { throw ConnectionError.jumpLoop(host: host.name, source: jumpText.source) }
            jump.value = chain
        }
        var hopFlags = flags
        hopFlags.jump = "none"  // the chain is explicit: a jump host's own ProxyJump does not apply
        let hops = try (jump.value?.hops ?? []).map { hop -> HostConnection in
            let written = (hop.user.map { $0 + "@" } ?? "") + (hop.host.contains(":") ? "[\(hop.host)]" : hop.host) + (hop.port.map { ":\($0)" } ?? "")
            do {
                // [defaults] apply to jump hosts too (after their own ssh_config Host block).
                return try Self.connection(for: .named(hop.host, user: hop.user, port: hop.port), table: "the jump host \(written)",
                                           defaults: defaults, flags: hopFlags, sshConfig: sshConfig)
            } catch let error as ConnectionError {
                throw ConnectionError.jumpHost(host: host.name, hop: written, error)
            }
        }
        let timeout = ssh.connectTimeout.flatMap { s in s.value.map { V(value: Double($0), source: s.origin) } }
        return HostConnection(
            hostName: hostName, user: user, port: port, identityFiles: identityFiles, identitiesOnly: identitiesOnly, identityAgent: agent,
            knownHosts: knownHosts, hostKeyPolicy: policy, jump: jump, hops: hops,
            connectTimeout: flags.connectTimeout.map { V(value: $0, source: "flag") } ?? timeout ?? V(value: 10, source: "default"),
            keepaliveInterval: ssh.serverAliveInterval.map { V(value: $0.value, source: $0.origin) } ?? V(value: 15, source: "default"),
            keepaliveCountMax: ssh.serverAliveCountMax.map { V(value: $0.value, source: $0.origin) } ?? V(value: 3, source: "default"),
            warnings: warnings)
    }

    /// A host named on the command line (`[user@]host[:port]`): ssh_config applies to its host part
    /// as to an inventory address; a user or port written in the target wins.
    public static func connection(forTarget written: String, flags: ConnectionFlags, sshConfig: SSHClientConfig?) throws -> HostConnection {
        let parts = try SSHTarget.parts(of: written)
        return try connection(for: .named(parts.host, user: parts.user, port: parts.port), table: "the target \(written)",
                              defaults: Defaults(), flags: flags, sshConfig: sshConfig)
    }

    /// Every host's connection, checked before the first connection: names valid, no two hosts
    /// reaching the same address and port.
    public func connections(for hosts: [Host], flags: ConnectionFlags = ConnectionFlags(), sshConfig: SSHClientConfig?) throws -> [String: HostConnection] {
        var result: [String: HostConnection] = [:]
        var seen: [String: String] = [:]
        for host in hosts {
            let c = try connection(for: host, flags: flags, sshConfig: sshConfig)
            let endpoint = "\(InventoryReader.normalizedAddress(c.hostName.value)) port \(c.port.value)"
            if let other = seen[endpoint] { throw ConnectionError.duplicate(host: host.name, other: other, endpoint: endpoint) }
            seen[endpoint] = host.name
            result[host.name] = c
        }
        return result
    }
}

extension HostConnection {
    /// The connection as it will be opened, checked on this machine first: an identity file ferry
    /// was told to use (`-i`, fleet.toml) that does not exist is an error before any connection;
    /// one from ssh_config that does not exist is skipped, as OpenSSH skips it. Jump hosts too.
    public func checkingIdentityFiles(host: String) throws -> HostConnection {
        var c = self
        let exists = { (path: String) in FileManager.default.fileExists(atPath: path) }
        if identityFiles.source.hasPrefix("fleet.toml") || identityFiles.source == "flag" {
            if let missing = identityFiles.value.first(where: { !exists($0) }) {
                throw ConnectionError.missingIdentity(host: host, path: missing, source: identityFiles.source == "flag" ? "-i" : identityFiles.source)
            }
        } else {
            c.identityFiles.value = identityFiles.value.filter(exists)
        }
        c.hops = try hops.map { try $0.checkingIdentityFiles(host: host) }
        return c
    }
}
