#if canImport(Glibc)
import Glibc
#endif

/// What to do with a host key that known_hosts does not confirm.
public enum HostKeyPolicy: String, Sendable, CaseIterable {
    /// Unknown and changed keys are refused (OpenSSH's `StrictHostKeyChecking yes`).
    case strict
    /// Unknown keys are recorded; changed keys are refused (`StrictHostKeyChecking accept-new`).
    case acceptNew = "accept-new"
}

/// Where an encrypted identity file's passphrase comes from.
public enum PassphraseSource: Sendable {
    /// `FERRY_SSH_PASSPHRASE`, else a prompt on the controlling terminal, else none.
    case environmentOrPrompt
    case fixed(String)
    case none
}

public struct SSHConfiguration: Sendable {
    public var target: SSHTarget
    /// Identity files given with `-i`; when empty, `~/.ssh/id_ed25519` and `~/.ssh/id_ecdsa` that exist.
    public var identityFiles: [String]
    public var knownHostsFile: String
    /// Read after the user's file, never written (NixOS writes `programs.ssh.knownHosts` there).
    public var globalKnownHostsFiles: [String] = ["/etc/ssh/ssh_known_hosts"]
    public var hostKeyPolicy: HostKeyPolicy
    /// Look up (and record) the host key under this name and port instead of the target's, as
    /// ssh_config's HostKeyAlias does: the same host reached on another port (a moved sshd).
    public var hostKeyAlias: SSHTarget?
    /// Bounds TCP connect plus the SSH handshake, like OpenSSH's ConnectTimeout.
    public var connectTimeout: Double
    /// Stops opening the session (TCP connect, handshake, authentication) with
    /// `SSHError.cancelled`; once it is open, each command takes its own token.
    public var cancel: CancellationToken?
    /// A peer that answers no keepalive for interval × countMax seconds is declared dead.
    public var keepaliveInterval: Int
    public var keepaliveCountMax: Int
    /// ssh-agent socket; defaults to `SSH_AUTH_SOCK`. nil: no agent.
    public var agentSocket: String?
    public var passphrase: PassphraseSource
    /// Receives what the session wants the operator to know (a host key recorded, a known_hosts
    /// line skipped). Library code never prints; nil drops them.
    public var onNotice: (@Sendable (String) -> Void)?

    func notice(_ text: String) { onNotice?(text) }

    public init(
        target: SSHTarget,
        identityFiles: [String] = [],
        knownHostsFile: String? = nil,
        hostKeyPolicy: HostKeyPolicy = .strict,
        connectTimeout: Double = 10,
        keepaliveInterval: Int = 15,
        keepaliveCountMax: Int = 3,
        agentSocket: String? = SSHConfiguration.environment("SSH_AUTH_SOCK"),
        passphrase: PassphraseSource = .environmentOrPrompt
    ) {
        self.target = target
        self.identityFiles = identityFiles
        self.knownHostsFile = knownHostsFile ?? SSHConfiguration.homeDirectory + "/.ssh/known_hosts"
        self.hostKeyPolicy = hostKeyPolicy
        self.connectTimeout = connectTimeout
        self.keepaliveInterval = keepaliveInterval
        self.keepaliveCountMax = keepaliveCountMax
        self.agentSocket = agentSocket
        self.passphrase = passphrase
    }

    /// libssh2 treats an interval of 1 as 2.
    var effectiveKeepaliveInterval: Int { max(2, keepaliveInterval) }

    /// How long a peer may stay silent, keepalives unanswered, before the connection counts as dead.
    public var deadPeerTimeout: Double { Double(effectiveKeepaliveInterval * max(1, keepaliveCountMax)) }

    public static var homeDirectory: String {
        if let home = environment("HOME"), !home.isEmpty { return home }
        if let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir { return String(cString: dir) }
        return "/"
    }

    /// The login name of the user ferry runs as (ssh_config's %u, its `Match user` default).
    public static var localUserName: String {
        getpwuid(getuid()).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? "root"
    }

    public static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let s = String(cString: value)
        return s.isEmpty ? nil : s
    }

    /// The identity files to try, in order.
    var identityCandidates: [String] {
        if !identityFiles.isEmpty { return identityFiles }
        let ssh = SSHConfiguration.homeDirectory + "/.ssh/"
        return ["id_ed25519", "id_ecdsa"].map { ssh + $0 }.filter { access($0, F_OK) == 0 }
    }
}
