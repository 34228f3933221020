import ArgumentParser
import FerryDeploy
import Foundation

/// Where the inventory is: -f, else ./fleet.toml, else ./deployments/fleet.toml.
struct InventoryOption: ParsableArguments {
    @Option(name: .customShort("f"), help: ArgumentHelp("The inventory (default: fleet.toml, else deployments/fleet.toml).", valueName: "fleet.toml"))
    var file: String?

    func load() throws -> Fleet {
        let path = file ?? (FileManager.default.fileExists(atPath: "fleet.toml") ? "fleet.toml" : "deployments/fleet.toml")
        do {
            let fleet = try InventoryReader.load(path)
            for warning in fleet.warnings { printError("ferry: warning: \(warning)") }
            return fleet
        } catch let error as InventoryError {
            printError("ferry: \(error)")
            throw ExitCode(2)  // an inventory failure: nothing was contacted
        }
    }
}

struct Render: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write each host's /var/src/nixos-config tree (the generated configuration.nix and the fleet's Nix files).",
        discussion: "TARGETS are host names or @tag; none means every host. Nothing is sent anywhere."
    )

    @OptionGroup var inventory: InventoryOption

    @Option(help: ArgumentHelp("Folder to write HOST/ trees into.", valueName: "DIR"))
    var out = "ferry-rendered"

    @Argument(help: ArgumentHelp("Host names or @tag.", valueName: "TARGETS"))
    var targets: [String] = []

    func run() throws {
        let fleet = try inventory.load()
        let out = URL(fileURLWithPath: self.out).standardizedFileURL.path
        do {
            for host in try fleet.select(targets) {
                let rendered = try RenderedConfig(host: host, fleet: fleet, skipping: [out])
                try rendered.write(to: out + "/" + host.name)
                print("\(host.name): \(out)/\(host.name) (\(rendered.files.count) files, domain \(fleet.domain(of: host)))")
            }
        } catch let error as InventoryError {
            printError("ferry: \(error)")
            throw ExitCode(2)  // an inventory failure: nothing was contacted
        }
    }
}
