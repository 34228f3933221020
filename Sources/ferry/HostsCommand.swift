import ArgumentParser
import FerryDeploy
import Foundation

struct Hosts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the hosts a selection names (as deploy and render resolve it).",
        discussion: "TARGETS are host names, globs over names (web-*) or @tags; none means every host. Nothing is contacted."
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("Host names, globs or @tags.", valueName: "TARGETS"))
    var targets: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these hosts (repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    @Flag(help: "One JSON object per host (type \"host\"; schema: docs/events.schema.json).")
    var json = false

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let fleet = try inventory.load()
        let hosts = try InventoryOption.select(fleet, targets, skip: skip, command: "hosts")
        // User and port as they apply after ssh_config and [defaults] (see `ferry config`).
        let connections = try connection.connections(for: hosts, in: fleet)
        if json {
            for h in hosts {
                let c = connections[h.name]!
                print(JSONLines.line(JSONLines.Host(name: h.name, address: h.address, port: c.port.value, user: c.user.value,
                                                    tags: h.tags, domain: fleet.domain(of: h))))
            }
            return
        }
        let rows = [["HOST", "ADDRESS", "USER", "TAGS", "DOMAIN"]] + hosts.map { h -> [String] in
            let port = connections[h.name]!.port.value
            return [h.name, port == 22 ? h.address : (h.address.contains(":") ? "[\(h.address)]:\(port)" : "\(h.address):\(port)"),
                    connections[h.name]!.user.value, h.tags.map { "@" + $0 }.joined(separator: ","), fleet.domain(of: h)]
        }
        let widths = (0..<5).map { c in rows.map { $0[c].count }.max() ?? 0 }
        for row in rows {
            print(row.enumerated().map { c, cell in c == 4 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }
                .joined(separator: "  "))
        }
    }
}
