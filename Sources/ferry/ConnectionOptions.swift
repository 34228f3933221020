import ArgumentParser
import FerryDeploy
import FerrySSH

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

    func validate() throws {
        guard connectTimeout > 0 else { throw ValidationError("--connect-timeout must be positive") }
    }
}

extension HostKeyPolicy: ExpressibleByArgument {}
