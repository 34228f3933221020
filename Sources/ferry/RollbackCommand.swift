import ArgumentParser
import FerryDeploy
import FerrySSH
import FerryTarget

struct RollbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Return hosts to an earlier deploy: its sources from the snapshots kept on the host, and its system.",
        discussion: """
        By default each host returns to the newest successful deploy before the one it is at \
        whose system is still in the store and whose source snapshots are all still there (after \
        a rollback: the one before the deploy it returned to); --to names one (ferry status HOST \
        --history lists them). Under the deploy lock, a detached job restores every source from \
        its snapshot as a sync would (nothing is sent from this machine), then sets the system \
        profile and runs the system's switch-to-configuration; it is followed like a rebuild. \
        Each snapshot is checked against its manifest first: one changed on the host since \
        (a write through a hard link it shares with the live tree) is refused unless --force. \
        Service state (/var/lib) and secrets are never rolled back: a database migrated by the \
        newer version stays migrated. Exit status as for deploy: 1 a host could not be rolled \
        back (nothing was changed on it unless its job failed).
        """
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("Host names, globs or @tags (default: every host).", valueName: "TARGETS"))
    var targets: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these hosts (name, glob or @tag; repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    @Option(name: .customLong("to"), help: ArgumentHelp("The deploy to return to (its id).", valueName: "DEPLOY_ID"))
    var to: String?

    @Option(name: .customLong("op"), help: "switch (default), boot (the next boot only) or test (not in the profile).")
    var operation: Fleet.Operation = .switch

    @Flag(help: "Restore a snapshot that changed on the host since it was made, as it is now.")
    var force = false

    @OptionGroup var jobs: JobsOption

    @Flag(help: "Start every selected host even after one failed (by default no new host starts).")
    var keepGoing = false

    @Option(name: .customLong("lock-timeout"), help: ArgumentHelp("Seconds to wait for another deploy's lock (0: refuse at once).", valueName: "S"))
    var lockTimeout = 0

    @Option(name: .customLong("reconnect-timeout"), help: ArgumentHelp("Seconds to keep reconnecting to a running rollback after the link drops.", valueName: "S"))
    var reconnectTimeout: Double = 600

    @Flag(help: "JSON Lines on stdout (events, one result per host, a summary); schema: docs/events.schema.json.")
    var json = false

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var sudo: SudoOptions

    func validate() throws {
        guard Rollback.operations.contains(operation) else {
            throw ValidationError("--op \(operation.rawValue): a rollback activates with switch, boot or test")
        }
        guard lockTimeout >= 0 else { throw ValidationError("--lock-timeout must be 0 or more") }
        guard reconnectTimeout >= 0 else { throw ValidationError("--reconnect-timeout must be 0 or more") }
        if let to, to.isEmpty || to.contains("/") || to.hasPrefix(".") {
            throw ValidationError("--to \(to): not a deploy id (ferry status HOST --history lists them)")
        }
    }

    func run() throws {
        let fleet = try inventory.load()
        let hosts = try InventoryOption.select(fleet, targets, skip: skip, command: "rollback")
        let interrupt = try SignalRelay.stopping()
        let connector = try connection.connector(for: hosts, in: fleet, cancel: interrupt.cancel)
        var options = Ferry.deployOptions(connector)
        options.operation = operation
        options.lockTimeout = lockTimeout
        options.reconnectTimeout = reconnectTimeout
        options.force = force
        options.cancel = interrupt.cancel
        options.stop = interrupt.stop
        try sudo.grant(connector)

        let view = FleetView(json: json, stats: false)
        let names = hosts.map(\.name)
        let runner = HostRunner(jobs: jobs.value, stop: interrupt.stop, stopAfterFailure: !keepGoing)
        let outcomes = runner.run(FleetRollback(fleet: fleet, hosts: hosts, options: options, to: to), hosts: hosts.count) { event in
            switch event {
            case .started: break
            case .event(let i, let e): view.show(names[i], e)
            case .finished(_, let outcome): view.finished(outcome)
            }
        }
        let all = zip(hosts, outcomes).map { host, outcome in outcome ?? FleetDeployment.HostOutcome(host: host.name, state: .notStarted) }
        try Deploy.conclude(all, view: view, interrupted: interrupt.stop.isCancelled)
    }
}
