import ArgumentParser
import FerryDeploy
import FerrySSH
import FerrySync
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension Fleet.Operation: ExpressibleByArgument {}

struct Deploy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deploy hosts: sync their sources to /var/src, push their rendered configuration, run nixos-rebuild there.",
        discussion: """
        TARGETS are host names, globs over names (web-*) or @tags; none means every host. Every \
        selected host is checked locally first (sources, required files, its render): a failure \
        exits 2 and contacts nothing. Each host's deploy lock is held until its rebuild's exit \
        status is written on it, even if ferry dies; rebuilds run detached (systemd-run, else \
        setsid), so Ctrl-C or a dropped link never stops an activation half-way. Exit status: 0 \
        every host deployed; 1 a host failed (or was not started after a failure); 2 usage or a \
        local check; 3 contact was lost during a rebuild and its outcome is unknown; 130/143 \
        interrupted; 255 (one host) the connection or authentication failed.
        """
    )

    @OptionGroup var inventory: InventoryOption

    // Everything after "--" lands here too (ArgumentParser allows one positional array): see `split`.
    @Argument(help: ArgumentHelp("Host names, globs or @tags (default: every host); after --, arguments for nixos-rebuild.", valueName: "TARGETS"))
    var words: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these hosts (name, glob or @tag; repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    @Option(name: .customLong("op"), help: "switch, boot, test, dry-activate or build (default: the host's operation, else [defaults], else switch).")
    var operation: Fleet.Operation?

    @OptionGroup var jobs: JobsOption

    @Flag(help: "Start every selected host even after one failed (by default no new host starts).")
    var keepGoing = false

    @Option(name: .customLong("lock-timeout"), help: ArgumentHelp("Seconds to wait for another deploy's lock (0: refuse at once).", valueName: "S"))
    var lockTimeout = 0

    @Option(name: .customLong("reconnect-timeout"), help: ArgumentHelp("Seconds to keep reconnecting to a running rebuild after the link drops.", valueName: "S"))
    var reconnectTimeout: Double = 600

    @Flag(help: "Sync the sources and record it; do not rebuild.")
    var syncOnly = false

    @Flag(help: "Skip the sync; rebuild what the target has.")
    var noSync = false

    @Flag(help: "Only the secrets: write those that changed and restart their units; no sync, no rebuild.")
    var secretsOnly = false

    @Flag(help: "Skip the rebuild of a host when nothing it reads changed since its last successful one (fleet.toml: skip_unchanged = true).")
    var skipUnchanged = false

    @Flag(help: "Rebuild even where fleet.toml says skip_unchanged = true.")
    var rebuild = false

    @Flag(help: "Also print what --skip-unchanged compared.")
    var verbose = false

    @Flag(help: "No confirm-or-revert for this run: a switch or test is not undone when no fresh login confirms it (fleet.toml: confirm = false).")
    var noConfirm = false

    @Flag(help: "Compare file contents (SHA-256 on both ends), not size and mtime.")
    var checksum = false

    @Flag(help: "Touch nothing: show what the deploy would change on each host (as ferry diff does) and the exact nixos-rebuild command it would run. Unlike --op dry-activate, which syncs and builds on the host.")
    var dryRun = false

    @Flag(help: "Take over a /var/src/NAME that ferry never synced (one krops or a hand copy left).")
    var force = false

    @Flag(help: "Print per-source counts: entries scanned, files sent, bytes, deletions.")
    var stats = false

    @Flag(help: "JSON Lines on stdout (events, one result per host, a summary); schema: docs/events.schema.json.")
    var json = false

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var sudo: SudoOptions

    /// Targets, and the nixos-rebuild arguments after the command line's first "--" (which
    /// ArgumentParser appends to the one positional array).
    var split: (targets: [String], extra: [String]) {
        let extra = (wordsAfterDashes() ?? []).map { String(decoding: $0, as: UTF8.self) }
        return (Array(words.dropLast(min(extra.count, words.count))), extra)
    }

    func validate() throws {
        guard lockTimeout >= 0 else { throw ValidationError("--lock-timeout must be 0 or more") }
        guard reconnectTimeout >= 0 else { throw ValidationError("--reconnect-timeout must be 0 or more") }
        if syncOnly && noSync { throw ValidationError("--sync-only and --no-sync together would do nothing") }
        if dryRun && noSync { throw ValidationError("--dry-run shows what the sync would change: drop --no-sync") }
        if skipUnchanged && rebuild { throw ValidationError("--skip-unchanged and --rebuild contradict each other") }
        if secretsOnly && (syncOnly || noSync || dryRun) { throw ValidationError("--secrets-only does no sync and no rebuild: drop --sync-only, --no-sync and --dry-run") }
    }

    func run() throws {
        let fleet = try inventory.load()
        let hosts = try InventoryOption.select(fleet, split.targets, skip: skip, command: "deploy")
        if dryRun { return try showDryRun(fleet: fleet, hosts: hosts) }
        let interrupt = try SignalRelay.stopping()
        let connector = try connection.connector(for: hosts, in: fleet, cancel: interrupt.cancel)
        var options = Ferry.deployOptions(connector)
        options.operation = operation
        options.extraArguments = split.extra
        options.lockTimeout = lockTimeout
        options.reconnectTimeout = reconnectTimeout
        options.syncOnly = syncOnly
        options.noSync = noSync || secretsOnly
        options.secretsOnly = secretsOnly
        options.skipUnchanged = skipUnchanged ? true : rebuild ? false : nil
        options.checksum = checksum
        options.noConfirm = noConfirm
        options.force = force
        options.cancel = interrupt.cancel
        options.stop = interrupt.stop
        var fleetOptions = FleetDeployment.Options(deploy: options)
        fleetOptions.jobs = jobs.value
        fleetOptions.keepGoing = keepGoing
        let deployment = FleetDeployment(fleet: fleet, hosts: hosts, options: fleetOptions)
        do {
            try deployment.prepare()
        } catch DeployError.localCheck(let text) {
            throw Failure(code: 2, message: text)
        }
        for warning in deployment.warnings { printError("ferry: warning: \(warning)") }
        // The password is asked for only when the local checks pass.
        try sudo.grant(connector)

        let view = FleetView(json: json, stats: stats, verbose: verbose)
        let names = hosts.map(\.name)
        let outcomes = deployment.run { event in
            switch event {
            case .started: break
            case .event(let i, let e): view.show(names[i], e)
            case .finished(_, let outcome): view.finished(outcome)
            }
        }
        try Self.conclude(outcomes, view: view, interrupted: interrupt.stop.isCancelled)
    }

    /// The summary, one line per problem on stderr (as every ferry command reports them), and
    /// the exit status: a deploy's and a rollback's alike.
    static func conclude(_ outcomes: [FleetDeployment.HostOutcome], view: FleetView, interrupted: Bool) throws {
        let code = exitStatus(outcomes, interrupted: interrupted)
        view.summary(outcomes, exitStatus: code)
        for o in outcomes {
            let log = o.logFile.map { " (log: \($0))" } ?? ""
            switch o.state {
            case .failed:
                for line in o.lastLines.suffix(10) { printError("ferry: \(o.host) | \(line)") }
                printError("ferry: \(o.host): \(o.cause ?? "failed")\(log)")
            case .unknown where o.error == nil:
                printError("ferry: \(o.host): \(o.cause ?? "unknown")\(log); see how it ends with: ferry status \(o.host) --follow")
            case .unknown:
                let job = o.operation == DeployRecord.rollbackOperation ? "rollback" : "rebuild"
                printError("ferry: \(o.host): interrupted; a \(job) that had started keeps running on the target (its log: /var/src/.ferry/deploys/\(o.deployID ?? "ID")/log)"
                           + (o.confirms ? "; the switch it activates is reverted unless a fresh login confirms it: ferry status \(o.host) --follow does" : ""))
            default: break
            }
        }
        if code != 0 { throw Failure(code: code, message: "") }
    }

    /// `--dry-run`: the diff, with this command's --op and rebuild arguments in the command line.
    func showDryRun(fleet: Fleet, hosts: [Fleet.Host]) throws {
        let format = try DiffFormat.parse(["--jobs", String(jobs.value)] + (json ? ["--json"] : []) + (checksum ? ["--checksum"] : []) + (force ? ["--force"] : []))
        let syncOnly = self.syncOnly
        _ = try Diff.show(fleet: fleet, hosts: hosts, format: format, connection: connection, sudo: sudo,
                          operation: operation, rebuildArguments: split.extra, command: "deploy") { diff in
            [syncOnly ? "would run: no rebuild (--sync-only)" : "would run: " + diff.rebuildCommand]
        }
    }

    /// `ExitStatus`'s table for a deploy's outcomes.
    static func exitStatus(_ outcomes: [FleetDeployment.HostOutcome], interrupted: Bool) -> Int32 {
        if interrupted { return SignalRelay.exitCode }
        let failed = outcomes.filter { [.failed, .notStarted, .interrupted].contains($0.state) }
        if let code = ExitStatus.forFailures(failed.map(\.error), selected: outcomes.count) { return code }
        if outcomes.contains(where: { $0.state == .unknown }) { return ExitStatus.unknownOutcome }
        return 0
    }
}
