import ArgumentParser
import FerryDeploy
import FerrySSH
import Foundation

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print how ferry connects to a host, and where each setting comes from (like ssh -G).",
        discussion: """
        Precedence, highest first: command-line flags, the host's fleet.toml table, ssh_config \
        ($HOME/.ssh/config, or -F FILE; -F none reads none), fleet.toml [defaults], ferry's defaults. \
        HOST is an inventory host or a [user@]host[:port] target. Nothing is contacted.
        """
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("An inventory host, or [user@]host[:port].", valueName: "HOST"))
    var host: String

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let resolved: HostConnection
        let path = inventory.file ?? InventoryOption.defaultFiles.first { FileManager.default.fileExists(atPath: $0) }
        if Exec.looksRaw(host) || path == nil {
            resolved = try connection.connection(forTarget: host)
        } else {
            let fleet = try InventoryOption.load(path!)
            let h = try InventoryOption.selectOne(fleet, host, command: "config")
            resolved = try connection.connections(for: [h], in: fleet)[h.name]!
        }
        for line in Self.lines(resolved) { print(line) }
    }

    static func lines(_ c: HostConnection) -> [String] {
        let rows: [(String, String, String)] = [
            ("hostname", c.hostName.value, c.hostName.source),
            ("user", c.user.value, c.user.source),
            ("port", String(c.port.value), c.port.source),
            ("identityfile", c.identityFiles.value.isEmpty ? "~/.ssh/id_ed25519 ~/.ssh/id_ecdsa (those that exist)" : c.identityFiles.value.joined(separator: " "), c.identityFiles.source),
            ("identitiesonly", c.identitiesOnly.value ? "yes" : "no", c.identitiesOnly.source),
            ("identityagent", c.identityAgent.value ?? "none", c.identityAgent.source),
            ("userknownhostsfile", c.knownHosts.value, c.knownHosts.source),
            ("hostkeypolicy", c.hostKeyPolicy.value.rawValue, c.hostKeyPolicy.source),
            ("proxyjump", c.jump.value.map { "\($0)" } ?? "none", c.jump.source),
            ("connecttimeout", String(format: "%g", c.connectTimeout.value), c.connectTimeout.source),
            ("serveraliveinterval", String(c.keepaliveInterval.value), c.keepaliveInterval.source),
            ("serveralivecountmax", String(c.keepaliveCountMax.value), c.keepaliveCountMax.source),
        ]
        let width = rows.map { $0.0.count + 1 + $0.1.count }.max() ?? 0
        return rows.map { key, value, source in
            let text = key + " " + value
            return text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) + "  # " + source
        }
    }
}
