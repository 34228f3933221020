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

    @Option(name: .customLong("connect-timeout"), help: ArgumentHelp("Seconds allowed for TCP connect and SSH handshake.", valueName: "SECONDS"))
    var connectTimeout: Double = 10

    /// Flags win over the inventory's values (`identity`, `known_hosts`, `host_key_policy`).
    func configuration(for target: SSHTarget, identity inventoryIdentity: [String] = [], knownHosts inventoryKnownHosts: String? = nil,
                       hostKeyPolicy inventoryPolicy: HostKeyPolicy? = nil) -> SSHConfiguration {
        var configuration = SSHConfiguration(
            target: target,
            identityFiles: identity.isEmpty ? inventoryIdentity : identity,
            knownHostsFile: knownHosts ?? inventoryKnownHosts,
            hostKeyPolicy: hostKeyPolicy ?? inventoryPolicy ?? .strict,
            connectTimeout: connectTimeout
        )
        configuration.onNotice = { printError("ferry: \(target): \($0)") }
        return configuration
    }

    /// An inventory host's settings, these flags winning.
    func configuration(for host: Fleet.Host) -> SSHConfiguration {
        configuration(for: host.target, identity: host.identity, knownHosts: host.knownHosts, hostKeyPolicy: host.hostKeyPolicy)
    }

    /// A session to an inventory host, with sudo set up when its user is not root.
    func shell(for host: Fleet.Host, sudo: SudoAccess) throws -> SSHSession {
        try sudo.open(host, configuration: configuration(for: host))
    }

    func validate() throws {
        guard connectTimeout > 0 else { throw ValidationError("--connect-timeout must be positive") }
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

    /// The fleet's sudo access; reads the password only when a selected host logs in as someone
    /// other than root. Call after the local checks and before the first connection.
    func access(for hosts: [Fleet.Host]) throws -> SudoAccess {
        let users = Set(hosts.filter(SudoAccess.needed).map(\.user)).sorted()
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
