import ArgumentParser
import FerryDeploy
import FerrySSH
import FerrySync
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension Fleet.Operation: ExpressibleByArgument {}

struct Deploy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deploy one host: sync its sources to /var/src, push its rendered configuration, run nixos-rebuild there.",
        discussion: """
        Local checks come first (sources, required files, the render): a failure exits 2 and \
        contacts nothing. The host's deploy lock is held until the rebuild's exit status is \
        written on the target, even if ferry dies; the rebuild runs detached (systemd-run, else \
        setsid), so Ctrl-C or a dropped link never stops an activation half-way. Exit status: 0 \
        deployed; 1 a failure on the target (a failed rebuild, a held lock); 2 usage or a local \
        check; 3 contact was lost during the rebuild and its outcome is unknown; 130/143 \
        interrupted; 255 the connection or authentication failed.
        """
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("The host's name in fleet.toml.", valueName: "HOST"))
    var host: String

    @Option(name: .customLong("op"), help: "switch, boot, test, dry-activate or build (default: the host's operation, else [defaults], else switch).")
    var operation: Fleet.Operation?

    @Option(name: .customLong("lock-timeout"), help: ArgumentHelp("Seconds to wait for another deploy's lock (0: refuse at once).", valueName: "S"))
    var lockTimeout = 0

    @Option(name: .customLong("reconnect-timeout"), help: ArgumentHelp("Seconds to keep reconnecting to a running rebuild after the link drops.", valueName: "S"))
    var reconnectTimeout: Double = 600

    @Flag(help: "Sync the sources and record it; do not rebuild.")
    var syncOnly = false

    @Flag(help: "Skip the sync; rebuild what the target has.")
    var noSync = false

    @Flag(help: "Compare file contents (SHA-256 on both ends), not size and mtime.")
    var checksum = false

    @Flag(help: "Take over a /var/src/NAME that ferry never synced (one krops or a hand copy left).")
    var force = false

    @Flag(help: "Print per-source counts: entries scanned, files sent, bytes, deletions.")
    var stats = false

    @OptionGroup var connection: ConnectionOptions

    @Argument(parsing: .postTerminator, help: ArgumentHelp("Arguments for nixos-rebuild, after --.", valueName: "ARGS"))
    var extra: [String] = []

    func validate() throws {
        guard lockTimeout >= 0 else { throw ValidationError("--lock-timeout must be 0 or more") }
        guard reconnectTimeout >= 0 else { throw ValidationError("--reconnect-timeout must be 0 or more") }
        if syncOnly && noSync { throw ValidationError("--sync-only and --no-sync together would do nothing") }
    }

    func run() throws {
        let fleet = try inventory.load()
        let host: Fleet.Host
        do {
            guard let h = try fleet.select([self.host]).first else { throw ExitCode(2) }
            host = h
        } catch let error as InventoryError {
            printError("ferry: \(error)")
            throw ExitCode(2)
        }
        let cancel = try CancellationToken()
        SignalRelay.onInterrupt(cancel)
        let connection = self.connection
        var options = Deployment.Options { h in
            try SSHSession(connecting: connection.configuration(for: h.target, identity: h.identity, knownHosts: h.knownHosts, hostKeyPolicy: h.hostKeyPolicy))
        }
        options.operation = operation
        options.extraArguments = extra
        options.lockTimeout = lockTimeout
        options.reconnectTimeout = reconnectTimeout
        options.syncOnly = syncOnly
        options.noSync = noSync
        options.checksum = checksum
        options.force = force
        options.ferryVersion = Ferry.version
        options.cancel = cancel
        let deployment = Deployment(fleet: fleet, host: host, options: options)
        let view = DeployView(host: host.name, stats: stats)
        let outcome: Deployment.Outcome
        let log = deployment.logFile.map { " (log: \($0))" } ?? ""
        do {
            outcome = try deployment.run(view.show)
        } catch let error as DeployError {
            if case .localCheck(let text) = error { throw Failure(code: 2, message: "\(host.name): \(text)") }
            throw Failure(code: 1, message: "\(host.name): \(error)\(log)")
        } catch SSHError.cancelled {
            view.note("interrupted; a rebuild that had started keeps running on the target (its log: /var/src/.ferry/deploys/\(deployment.id)/log)")
            throw Failure.interrupted()
        } catch let error as SSHError {
            throw Failure(code: 255, message: "\(host.name): \(error)\(log)")
        } catch SyncError.transport(let step, let error) {
            throw Failure(code: 255, message: "\(host.name): \(step): \(error)\(log)")
        } catch let error as SyncError {
            throw Failure(code: 1, message: "\(host.name): \(error)\(log)")
        }
        switch outcome.result {
        case .succeeded:
            view.note("deployed (\(outcome.record.operation), deploy \(outcome.id))")
        case .syncOnly:
            view.note("synced (deploy \(outcome.id), no rebuild)")
        case .rebuildFailed(let status, let lines):
            for line in lines.suffix(10) { printError("ferry: \(host.name) | \(line)") }
            throw Failure(code: 1, message: "\(host.name): nixos-rebuild \(outcome.record.operation) failed: \(status)\(log)")
        case .unknown(let op):
            throw Failure(code: 3, message: "\(host.name): unknown: lost contact during \(op); the rebuild may still be running (its log on the target: /var/src/.ferry/deploys/\(outcome.id)/log)\(log)")
        }
    }
}

/// Renders a deploy's events: `HOST | ` before every line when stdout is not a terminal;
/// control sequences from the target are escaped either way (the local log keeps them raw).
final class DeployView {
    let host: String
    let stats: Bool
    let prefix: String

    init(host: String, stats: Bool) {
        self.host = host
        self.stats = stats
        prefix = isatty(1) == 1 ? "" : "\(host) | "
    }

    func show(_ event: DeployEvent) {
        switch event {
        case .phaseStarted(let phase, let detail):
            if phase == .rebuild { say("rebuild: \(detail)") }
        case .phaseFinished(let phase, let seconds, let detail):
            say("\(phase.rawValue): \(detail) (\(String(format: "%.2f", seconds)) s)")
        case .lockBusy(let holder, let waiting):
            say("lock: held by \(holder)" + (waiting > 0 ? "; waiting up to \(waiting) s" : ""))
        case .sourceSynced(let name, let result):
            let deleted = result.plan.items.filter { $0.change == .deleted }.count
            say("sync: \(name): \(result.plan.sends.count) files sent (\(result.plan.bytesToSend) bytes), \(deleted) deleted")
            if stats {
                say("  \(name): \(result.filesScanned) entries scanned (\(result.bytesScanned) bytes), \(result.bytesSent) bytes streamed, \(String(format: "%.3f", result.seconds)) s")
            }
            for warning in result.plan.keptDirectories { say("warning: kept \(name)/\(String(decoding: warning, as: UTF8.self)): it holds excluded entries") }
        case .output(let line):
            say(String(decoding: line, as: UTF8.self))
        case .warning(let text):
            say("warning: \(text)")
        case .reconnecting(let reason):
            say("rebuild: lost the link (\(reason)); reconnecting")
        }
    }

    func note(_ text: String) { say(text) }

    private func say(_ text: String) {
        let line = prefix + Terminal.escapingControls(text) + "\n"
        line.utf8CString.withUnsafeBufferPointer { buf in
            writeAll(1, UnsafeRawBufferPointer(start: buf.baseAddress, count: buf.count - 1))
        }
    }
}
