import ArgumentParser

@main
struct Ferry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Push deployer for NixOS machines: sync sources, render configs, run nixos-rebuild over SSH.",
        subcommands: [Sync.self, Render.self, Eval.self, Exec.self]
    )
}
