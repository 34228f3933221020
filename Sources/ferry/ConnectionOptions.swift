import ArgumentParser
import FerryDeploy
import FerrySSH
#if canImport(Glibc)
import Glibc
#endif

/// The SSH options every subcommand that talks to a target shares.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .customShort("i"), help: ArgumentHelp("Identity file (private key); may be repeated.", valueName: "KEY"))
    var identity: [String] = []

    @Option(name: .customLong("known-hosts"), help: ArgumentHelp("known_hosts file.", valueName: "FILE"))
    var knownHosts: String?

    @Option(name: .customLong("host-key-policy"), help: "strict (refuse unknown keys; the default) or accept-new (record unknown keys). Changed keys are always refused.")
    var hostKeyPolicy: HostKeyPolicy?

    @Option(name: .customLong("connect-timeout"), help: ArgumentHelp("Seconds allowed for TCP connect and SSH handshake (default: ssh_config's ConnectTimeout, else 10).", valueName: "SECONDS"))
    var connectTimeout: Double?

    @Option(name: .customShort("F"), help: ArgumentHelp("OpenSSH client config to read instead of $HOME/.ssh/config and /etc/ssh/ssh_config (none: read none).", valueName: "FILE"))
    var sshConfigFile: String?

    @Option(name: .customLong("jump"), help: ArgumentHelp("Jump hosts ([user@]host[:port], comma-separated; none: direct), like ssh -J.", valueName: "HOSTS"))
    var jump: String?

    var flags: ConnectionFlags {
        ConnectionFlags(identity: identity, knownHosts: knownHosts, hostKeyPolicy: hostKeyPolicy, connectTimeout: connectTimeout, jump: jump)
    }

    /// The ssh_config in effect (nil: `-F none`).
    var sshConfig: SSHClientConfig? {
        if sshConfigFile == "none" { return nil }
        let home = SSHConfiguration.homeDirectory
        // As ssh: the user's file, then the system's; -F FILE alone.
        return SSHClientConfig(file: sshConfigFile ?? home + "/.ssh/config", systemFile: sshConfigFile == nil ? "/etc/ssh/ssh_config" : nil,
                               home: home, localUser: SSHConfiguration.localUserName)
    }

    /// Every selected host's connection, checked before the first one is opened (exit 2 on a
    /// bad ssh_config, a bad name or two hosts at one address); ssh_config warnings printed once.
    func connections(for hosts: [Fleet.Host], in fleet: Fleet) throws -> [String: HostConnection] {
        do {
            var all = try fleet.connections(for: hosts, flags: flags, sshConfig: sshConfig)
            for warning in Set(all.values.flatMap(\.warnings)).sorted() { printError("ferry: warning: \(warning)") }
            for (name, c) in all { all[name] = try c.checkingIdentityFiles(host: name) }
            return all
        } catch let error as ConnectionError {
            throw Failure(code: 2, message: "\(error)")
        }
    }

    /// A host named on the command line (`[user@]host[:port]`): ssh_config applies to its host
    /// part as to an inventory address; a user or port written in the target wins.
    func connection(forTarget written: String) throws -> HostConnection {
        do {
            let c = try Fleet.connection(forTarget: written, flags: flags, sshConfig: sshConfig)
            for warning in c.warnings { printError("ferry: warning: \(warning)") }
            return try c.checkingIdentityFiles(host: written)
        } catch {
            throw Failure(code: 2, message: "\(error)")  // a bad target or ssh_config: nothing contacted
        }
    }

    /// The sessions to `hosts`, their connections resolved and checked (see `connections`);
    /// `cancel` stops one being opened.
    func connector(for hosts: [Fleet.Host], in fleet: Fleet, cancel: CancellationToken? = nil) throws -> HostConnector {
        HostConnector(connections: try connections(for: hosts, in: fleet), cancel: cancel, notice: Self.notice)
    }

    /// A session's words for the operator (a host key recorded), on stderr.
    static let notice: @Sendable (String, String) -> Void = { target, text in printError("ferry: \(target): \(text)") }

    func validate() throws {
        if let connectTimeout { guard connectTimeout > 0 else { throw ValidationError("--connect-timeout must be positive") } }
        if let jump, jump.lowercased() != "none", (try? ProxyJump(jump)) == nil {
            throw ValidationError("--jump: '\(jump)' is not [user@]host[:port], comma-separated, or none")
        }
    }
}

/// How ferry gets root on hosts whose login user is not root (every command goes through sudo).
struct SudoOptions: ParsableArguments {
    @Flag(name: .customLong("ask-sudo-password"), help: "Ask once on the terminal for the sudo password of the selected hosts whose user is not root.")
    var askSudoPassword = false

    @Option(name: .customLong("sudo-password-fd"), help: ArgumentHelp("Read that sudo password from descriptor N (its first line), for scripts and CI.", valueName: "N"))
    var sudoPasswordFD: Int32?

    func validate() throws {
        if askSudoPassword && sudoPasswordFD != nil { throw ValidationError("--ask-sudo-password and --sudo-password-fd exclude each other") }
        if let fd = sudoPasswordFD, fd < 0 { throw ValidationError("--sudo-password-fd must be a descriptor number (0 or more)") }
    }

    /// Gives `connector` the fleet's sudo access, reading the password only when a selected host
    /// logs in as someone other than root. Call after the local checks and before the first
    /// connection.
    func grant(_ connector: HostConnector) throws {
        connector.grant(try access(users: connector.sudoUsers))
    }

    private func access(users: [String]) throws -> SudoAccess {
        guard !users.isEmpty else { return SudoAccess(password: nil) }
        var line: [UInt8]?
        if let fd = sudoPasswordFD {
            line = try Self.readLine(fd)
        } else if askSudoPassword {
            guard let answer = TerminalPrompt.secret("[ferry] sudo password for \(users.joined(separator: ", ")): ") else {
                throw Failure(code: 2, message: "--ask-sudo-password needs a terminal (/dev/tty); without one use --sudo-password-fd N")
            }
            line = answer
        }
        do {
            return SudoAccess(password: try line.map(SudoPassword.init))
        } catch {
            throw Failure(code: 2, message: "\(error)")
        }
    }

    /// The first line of `fd`, read a byte at a time so nothing after it is consumed.
    static func readLine(_ fd: Int32) throws -> [UInt8] {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Failure(code: 2, message: "--sudo-password-fd \(fd): cannot read: \(String(cString: strerror(errno)))") }
            if n == 0 || byte == 0x0A { break }
            line.append(byte)
        }
        if line.last == 0x0D { line.removeLast() }
        return line
    }
}

extension HostKeyPolicy: ExpressibleByArgument {}
