import ArgumentParser
import FerryDeploy
import FerrySSH
import Foundation

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the hosts' health checks (fleet.toml's checks) now, without deploying.",
        discussion: """
        Changes nothing and takes no lock. Every check of a host runs at once, each retried every \
        `period` seconds until it passes or its `deadline` has passed. `command` checks run on the \
        host as a deploy's commands do; `http` checks are made from the host's side, through the \
        SSH connection. Exit status: 0 every check passed; 1 a check failed (or a host could not be \
        checked, with several hosts); 255 the only host could not be reached.
        """
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("Host names, globs or @tags (default: every host).", valueName: "TARGETS"))
    var targets: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these hosts (repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    @OptionGroup var jobs: JobsOption

    @Flag(help: "JSON Lines on stdout (events, one result per host, a summary); schema: docs/events.schema.json.")
    var json = false

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var sudo: SudoOptions

    func run() throws {
        let fleet = try inventory.load()
        let hosts = try InventoryOption.select(fleet, targets, skip: skip, command: "check")
        let unchecked = hosts.filter { $0.checks.isEmpty }.map(\.name)
        guard unchecked.count < hosts.count else {
            throw Failure.usage("no health checks for \(hosts.count == 1 ? hosts[0].name : "these hosts"): add [[defaults.checks]] or [[hosts.NAME.checks]] to \(fleet.file)", command: "check")
        }
        // Interrupts: stop the checks (a command being checked is sent SIGTERM), start no host.
        let cancel = try SignalRelay.cancelling().cancel
        let selected = hosts.filter { !$0.checks.isEmpty }
        let connector = try connection.connector(for: selected, in: fleet, cancel: cancel)
        try sudo.grant(connector)
        let view = FleetView(json: json, stats: false)
        for name in unchecked { view.show(name, .warning("no health checks in \(fleet.file)")) }
        let operation = FleetCheck(hosts: selected, connector: connector, ferryVersion: Ferry.version, cancel: cancel)
        let outcomes = HostRunner(jobs: jobs.value, stop: cancel).run(operation, hosts: selected.count) { event in
            switch event {
            case .started: break
            case .event(let i, let e): view.show(selected[i].name, e)
            case .finished(let i, let outcome): view.checkFinished(selected[i].name, outcome)
            }
        }
        if cancel.isCancelled { throw Failure.interrupted() }
        let failures = outcomes.compactMap { $0 }.filter { !$0.passed }.map(\.error)
        let code = ExitStatus.forFailures(failures, selected: selected.count) ?? 0
        view.checkSummary(selected.map(\.name), outcomes, exitStatus: code)
        for (host, outcome) in zip(selected, outcomes) where outcome?.error != nil {
            printError("ferry: \(host.name): \(outcome!.error!)")
        }
        if code != 0 { throw Failure(code: code, message: "") }
    }
}
