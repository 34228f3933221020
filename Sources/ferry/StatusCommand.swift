import ArgumentParser
import FerryDeploy
import FerrySSH
import FerrySync
import FerryTarget
import Foundation

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each host's last deploy, its lock, its running system and what changed in its trees since.",
        discussion: """
        Read-only: takes no lock and changes nothing. Changes are found against the manifest the \
        deploy left on the host (every path's type, mode, size, mtime and SHA-256): files added, \
        changed (content, type, mode or link target) or removed since. A running system other than \
        the one the deploy recorded means a manual rebuild or a rollback since.
        """
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("Host names, globs or @tags (default: every host).", valueName: "TARGETS"))
    var targets: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these hosts (repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    @Flag(help: "Print the last deploy's rebuild output from its start and follow it until the rebuild ends (one host; after an \"unknown\" outcome, say). Exit status: 0 succeeded, 1 failed, 3 contact lost again.")
    var follow = false

    @Flag(help: "Also list the newest 20 deploys, newest first, with their results.")
    var history = false

    @Option(name: .customLong("reconnect-timeout"), help: ArgumentHelp("With --follow: keep reconnecting this long when the link drops.", valueName: "SECONDS"))
    var reconnectTimeout: Double = 600

    @OptionGroup var jobs: JobsOption

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var sudo: SudoOptions

    func run() throws {
        let fleet = try inventory.load()
        let hosts = try InventoryOption.select(fleet, targets, skip: skip, command: "status")
        if follow && hosts.count != 1 {
            throw Failure.usage("--follow follows one host; the selection has \(hosts.count)", command: "status")
        }
        // Interrupts: see SignalRelay (following stops the follower; reading ends at once).
        let cancel = follow ? try SignalRelay.cancelling().cancel : nil
        if !follow { SignalRelay.cut() }
        let connector = try connection.connector(for: hosts, in: fleet, cancel: cancel)
        try sudo.grant(connector)
        if let cancel { return try followRebuild(hosts[0], connector, cancel: cancel) }
        // Read in parallel, shown in inventory order.
        let results = HostRunner(jobs: jobs.value).run(HostStatus.Reading(fleet: fleet, hosts: hosts, connector: connector, history: history),
                                                       hosts: hosts.count)
        var failures: [any Error] = []
        for (host, result) in zip(hosts, results) {
            switch result! {
            case .success(let status):
                for line in Self.describe(status) { print("\(host.name) | " + DisplayText.escape(line)) }
            case .failure(let error):
                printError("ferry: \(host.name): \(error)")
                failures.append(error)
            }
        }
        if let code = ExitStatus.forFailures(failures, selected: hosts.count) { throw Failure(code: code, message: "") }
    }

    func followRebuild(_ host: Fleet.Host, _ connector: HostConnector, cancel: CancellationToken) throws {
        let outcome: (id: String, result: DeployResult)?
        do {
            let session = try connector.shell(for: host)
            defer { session.close() }
            outcome = try HostStatus.follow(shell: session, reconnectTimeout: reconnectTimeout, cancel: cancel,
                                            reopen: { try connector.shell(for: host) },
                                            openFresh: { try connector.shell(for: host, port: host.confirm.port) },
                                            gatingChecks: host.revertOnCheckFailure && !host.checks.isEmpty
                                                ? HealthChecks(host.checks, ferryVersion: Ferry.version, cancel: cancel) : nil) { event in
                print("\(host.name) | " + DisplayText.escape(DeployEventText.line(event)))
                fflush(nil)  // live, also into a file or a pipe
            }
        } catch SSHError.cancelled {
            printError("ferry: \(host.name): stopped following; the rebuild goes on on the host")
            throw Failure.interrupted()
        } catch let error as SSHError {
            throw Failure.connection(error, host: host.name)
        } catch {
            throw Failure(code: 1, message: "\(host.name): \(error)")
        }
        guard let (id, result) = outcome else {
            print("\(host.name) | never deployed by ferry: nothing to follow")
            return
        }
        print("\(host.name) | rebuild of deploy \(id): \(result.summary)")
        switch result {
        case .succeeded, .syncOnly, .secretsOnly, .skipped: return
        case .rebuildFailed, .reverted, .checksFailed: throw Failure(code: 1, message: "")
        case .unknown: throw Failure(code: 3, message: "")
        }
    }

    static func describe(_ s: HostStatus) -> [String] {
        var lines: [String] = []
        func record(_ read: DeployRecord.Read, _ what: String) {
            switch read {
            case .none: break
            case .unreadable(let file, let reason): lines.append("\(what): the record \(file) is unreadable: \(reason)")
            case .record(let r):
                var line = "\(what) \(r.id) by \(r.operator_), \(r.operation): "
                if let o = r.outcome {
                    line += "\(o.result.rawValue)" + (o.exitStatus.map { o.result == .failed ? " (exit status \($0))" : "" } ?? "")
                        + ", \(r.startedAt) → \(o.finishedAt)"
                } else {
                    line += "started \(r.startedAt), no result recorded"
                }
                lines.append(line)
                if let o = r.outcome {
                    if let generation = o.generation { lines.append("generation \(generation): \(o.generationPath ?? "?")") }
                    if o.systemBefore != nil || o.profileBefore != nil {
                        lines.append("before it: system \(o.systemBefore ?? "?"), profile \(o.profileBefore ?? "?")")
                    }
                }
                if let checks = r.checks {
                    let failed = checks.filter { !$0.passed }
                    lines.append(failed.isEmpty ? "health checks: \(checks.count) passed" : HealthChecks.failureSummary(checks))
                }
                for (name, state) in r.sources.sorted(by: { $0.key < $1.key }) {
                    if let commit = state.commit { lines.append("\(name): commit \(commit)" + (state.dirty == true ? " (with uncommitted changes)" : "")) }
                }
            }
        }
        if s.rebuild == .none && s.sync == .none {
            lines.append("never deployed by ferry")
        }
        record(s.rebuild, "last deploy")
        // Shown when it came after the last rebuild (ids sort by time).
        if let sync = s.sync.record, sync.id > (s.rebuild.record?.id ?? "") {
            record(s.sync, sync.outcome?.result == .skipped ? "last deploy (rebuild skipped, same inputs as \(sync.sameAs ?? "?"))" : "last sync-only deploy")
        }
        if case .unreadable = s.sync { record(s.sync, "last sync-only deploy") }
        switch s.lock {
        case .free: lines.append("lock: free")
        case .held(let h): lines.append("lock: held by " + (h.map { "\($0)" } ?? "a deploy"))
        case .rebuildRunning(let h): lines.append("lock: rebuild running (" + (h.map { "\($0)" } ?? "a deploy") + ")")
        case .heldByOther: lines.append("lock: held by " + LockHolder.notFerrys)
        }
        let system = s.currentSystem.isEmpty ? "(not a symlink)" : s.currentSystem
        if s.systemChanged {
            lines.append("system: \(system), CHANGED since the deploy, which left \(s.rebuild.record?.outcome?.currentSystem ?? "?") (a manual rebuild or a rollback)")
        } else {
            lines.append("system: \(system)")
        }
        if !s.history.isEmpty { lines.append("history (newest first):") }
        for (id, read) in s.history {
            switch read {
            case .none: break
            case .unreadable(_, let reason): lines.append("  \(id): the record is unreadable: \(reason)")
            case .record(let r):
                let result = r.outcome.map { o in o.result.rawValue + (o.result == .failed ? o.exitStatus.map { " (exit status \($0))" } ?? "" : "") } ?? "no result"
                lines.append("  \(id) \(r.operation) \(result), \(r.startedAt) → \(r.outcome?.finishedAt ?? "?")"
                             + (r.outcome?.generation.map { ", generation \($0)" } ?? "") + ", by \(r.operator_)")
            }
        }
        for d in s.drift {
            guard d.recorded else { lines.append("\(d.source): no manifest on the host to compare with"); continue }
            if d.isEmpty { lines.append("\(d.source): unchanged since the deploy"); continue }
            lines.append("\(d.source): \(d.added.count) added, \(d.changed.count) changed, \(d.removed.count) removed since the deploy")
            for (mark, paths) in [("+", d.added), ("~", d.changed), ("-", d.removed)] {
                for p in paths { lines.append("  \(mark) \(d.source)/\(DisplayText.escape(p))") }
            }
        }
        for (name, change) in s.secretDrift {
            switch change {
            case .new: lines.append("secret \(name): never written by ferry")
            case .missingOnHost: lines.append("secret \(name): missing on the host (ferry wrote it; it is gone)")
            default: lines.append("secret \(name): changed on the host since ferry wrote it")
            }
        }
        return lines
    }
}

struct Unlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Free a host's deploy lock whose holder is gone.",
        discussion: "Refuses, naming the holder, while a deploy or its rebuild holds the lock; --force sends the holder SIGTERM (a rebuild stopped that way may leave an activation half-done)."
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("The host's name.", valueName: "HOST"))
    var host: String

    @Flag(help: "Stop the holder, even a running rebuild.")
    var force = false

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var sudo: SudoOptions

    func run() throws {
        let fleet = try inventory.load()
        let host = try InventoryOption.selectOne(fleet, self.host, command: "unlock")
        SignalRelay.cut()
        let connector = try connection.connector(for: [host], in: fleet)
        try sudo.grant(connector)
        // One host (a forced unlock of a selection would be one slip from stopping a fleet's rebuilds).
        switch HostRunner(jobs: 1).run(HostStatus.Unlocking(hosts: [host], connector: connector, force: force), hosts: 1)[0]! {
        case .success(.wasFree):
            print("\(host.name) | the lock is free")
        case .success(.forced(let holder, let rebuild)):
            printError("ferry: \(host.name): warning: stopped " + (rebuild ? "a running rebuild" : "a deploy") + (holder.map { " (\($0))" } ?? "") + " to free the lock")
            print("\(host.name) | the lock is free")
        case .failure(let error):
            printError("ferry: \(host.name): \(error)")
            throw Failure(code: ExitStatus.forFailures([error], selected: 1)!, message: "")
        }
    }
}
