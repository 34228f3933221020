import FerrySSH
import FerrySync
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One host's deploy, krops-style: check locally, connect, take the host's deploy lock, sync
/// every source to `/var/src/NAME`, run nixos-rebuild detached and follow it, record the outcome.
/// Unchecked Sendable: a Deployment is run by one thread at a time (a fleet hands each to one
/// runner); its mutable state (the prepared render, the log) is never shared between threads.
public final class Deployment: @unchecked Sendable {
    public struct Options: Sendable {
        /// The operation; nil: the host's (or `[defaults]`) `operation`.
        public var operation: Fleet.Operation?
        /// Passed to nixos-rebuild after ferry's arguments (`ferry deploy HOST -- --show-trace`).
        public var extraArguments: [String] = []
        /// Seconds to wait for another deploy's lock (0: refuse at once).
        public var lockTimeout = 0
        /// How long to keep reconnecting to follow a rebuild after the link drops.
        public var reconnectTimeout: Double = 600
        public var syncOnly = false
        public var noSync = false
        public var checksum = false
        /// Take over a `/var/src/NAME` that ferry never synced (a krops host, say).
        public var force = false
        /// Scans of the sources made once for a whole fleet (by source name); missing: scan here.
        public var scans: [String: LocalScanner.Scanned] = [:]
        /// Encoded manifests (with file hashes) of those scans, made once for a whole fleet.
        public var manifests: [String: [UInt8]] = [:]
        /// Their trees' content digests (`ManifestFile.contentDigest`), made with them.
        public var contents: [String: String] = [:]
        public var ferryVersion = "unknown"
        /// The remote root (tests may point it elsewhere).
        public var root = "/var/src"
        /// What each destination held at the last sync, so listings can be incremental.
        public var listingCache: ListingCache?
        /// Files of the sources already found to be no private key (see `SourceSecrets`).
        public var keyCheckCache: SourceSecrets.Cache?
        public var cancel: CancellationToken?
        /// Stops gently: no new step starts (a sync in progress finishes) and a rebuild is no
        /// longer followed (it goes on on the host). `cancel` stops at once; whoever trips
        /// `cancel` trips this too.
        public var stop: CancellationToken?
        /// Opens a shell on the host: an SSH session (the CLI merges its flags into the
        /// inventory's settings), or in tests a local one. Called once for the deploy (its lock
        /// holder and its work share the shell) and for each reconnect while following the rebuild.
        public var open: @Sendable (Fleet.Host) throws -> any RemoteShell
        /// Opens the session that proves a login still works after a switch: a new connection
        /// (TCP, key exchange, authentication), to the port given when there is one.
        public var openFresh: @Sendable (Fleet.Host, Int?) throws -> any RemoteShell
        /// No confirm-or-revert, whatever fleet.toml says (`--no-confirm`).
        public var noConfirm = false
        /// The run's secrets, each read once (before any connection) for every host that takes it.
        public var secrets = SecretStore()
        /// Only the secrets: write the changed ones and restart their units; no sync, no rebuild.
        public var secretsOnly = false
        /// Skip the rebuild when nothing it reads changed (nil: the host's `skip_unchanged`;
        /// `--skip-unchanged` true, `--rebuild` false).
        public var skipUnchanged: Bool?

        public init(open: @escaping @Sendable (Fleet.Host) throws -> any RemoteShell) {
            self.open = open
            openFresh = { host, _ in try open(host) }
        }

        /// Sessions from `connector`, root through sudo where the login user is not root.
        public init(connector: HostConnector) {
            self.init(open: { try connector.shell(for: $0) })
            openFresh = { try connector.shell(for: $0, port: $1) }
        }
    }

    public struct Outcome {
        public var id: String
        public var result: DeployResult
        public var record: DeployRecord
    }

    public let fleet: Fleet
    public let host: Fleet.Host
    public let options: Options
    public let id: String
    private let log: LocalLog?
    /// This deploy's local copy of everything it reported and the rebuild's full output (nil when
    /// neither log folder is writable).
    public var logFile: String? { log?.path }

    public init(fleet: Fleet, host: Fleet.Host, options: Options) {
        self.fleet = fleet
        self.host = host
        self.options = options
        id = DeployRecord.newID()
        log = LocalLog(fleet: fleet, host: host.name, id: id)
    }

    var operation: Fleet.Operation { options.operation ?? host.operation }

    /// Confirm-or-revert for this deploy (nil: none): a switch or test, unless turned off.
    var confirm: Fleet.Confirm? {
        options.noConfirm || options.syncOnly || !host.confirm.applies(to: operation) ? nil : host.confirm
    }

    /// Whether this deploy activates a system (a switch or test): checks run and units restart.
    var activates: Bool { !options.syncOnly && (operation == .switch || operation == .test) }

    /// The host's health checks when this deploy activates a system; else none.
    var healthChecks: HealthChecks {
        HealthChecks(activates ? host.checks : [], ferryVersion: options.ferryVersion, cancel: options.stop ?? options.cancel)
    }

    /// The host's secrets this deploy writes (none for `--sync-only`).
    var secrets: [Fleet.Secret] { options.syncOnly ? [] : host.secrets }

    /// A failed check reverts the switch: the checks run before the proof, which they gate.
    var checksGateConfirmation: Bool { confirm != nil && host.revertOnCheckFailure && !healthChecks.checks.isEmpty }

    private var prepared: Prepared?

    /// The local checks alone (step 1; `run` does them too): a fleet checks every host before it
    /// connects to any. Throws `DeployError.localCheck`.
    @discardableResult
    func check() throws -> Prepared {
        if let prepared { return prepared }
        // Every secret is read before anything is contacted: a failing `pass` stops the run here.
        try options.secrets.load([host].filter { _ in !options.syncOnly }, fleetFile: fleet.file)
        let checked = try checkSourcesAndRender()
        prepared = checked
        return checked
    }

    public func checkLocally() throws { try check() }

    /// The nixos-rebuild command line a deploy runs on the host, as its shell receives it.
    public func rebuildCommandLine() throws -> String {
        let command = Rebuild.commandLine(operation: confirm == nil ? operation : .build, root: options.root,
                                          renderedSource: try check().renderedSource, extra: options.extraArguments)
        return String(decoding: RemoteCommand(command).bytes, as: UTF8.self)
            + (confirm.map { ", then switch-to-configuration \(operation.rawValue) of the result, confirmed by a fresh login within \($0.timeout) s or reverted" } ?? "")
    }

    /// Runs the deploy. Throws `DeployError.localCheck` before any connection, `SSHError` for the
    /// connection, other `DeployError`s and `SyncError`s for failures on the target.
    public func run(_ emit: @escaping (DeployEvent) -> Void) throws -> Outcome {
        let log = self.log
        let report: (DeployEvent) -> Void = { event in log?.write(event); emit(event) }
        let start = Date()
        defer { log?.close() }

        // 1. Local checks: nothing is contacted when one fails.
        report(.phaseStarted(.check, detail: "sources and the rendered configuration"))
        let prepared = try check()
        report(.phaseFinished(.check, seconds: Date().timeIntervalSince(start), detail: "\(fleet.sources.count) sources, \(RenderedConfig.entryPoint) rendered"))

        // 2. Connect (one session: the lock holder runs on it beside the work) and lock.
        // A rebuild's inputs are named while the sources sync: the next deploy may skip with them.
        let (session, lock, me) = try Self.connectAndLock(host, options: options, id: id, command: nil,
                                                          inputs: activates ? host.extraInputs : nil, report: report)
        defer { session.close() }
        var released = false
        defer { if !released { lock.release() } }
        var phase = Date()
        // A check the host cannot run is found now, before anything changes.
        let checks = healthChecks
        try checks.probe(session)
        // What the host has of its secrets (one command), and which changed.
        let state = TargetState(root: options.root)
        var hostSecrets: HostSecrets?
        if !secrets.isEmpty {
            phase = Date()
            report(.phaseStarted(.secrets, detail: secrets.count == 1 ? "1 secret" : "\(secrets.count) secrets"))
            hostSecrets = try HostSecrets.read(secrets, host: host.name, session: session, state: state, store: options.secrets)
            for item in hostSecrets!.items where item.change == .unchanged { report(.secret(SecretReport(name: item.secret.name, change: .unchanged))) }
            if options.secretsOnly {
                return try writeSecretsOnly(hostSecrets!, session: session, lock: lock, released: &released, start: phase, report: report)
            }
        } else if options.secretsOnly {
            throw DeployError.localCheck("\(host.name): no secrets for this host in \(fleet.file)")
        }
        if host.revertOnCheckFailure && !checks.checks.isEmpty && !checksGateConfirmation {
            report(.warning("revert_on_check_failure is set, but this \(operation.rawValue) is not confirmed (confirm = false or --no-confirm): a failed health check fails the deploy and keeps the switch"))
        }

        // 3. Sources.
        var record = DeployRecord(id: id, host: host.name, startedAt: DeployRecord.timestamp(start), operator_: me.operator_,
                                  ferryVersion: options.ferryVersion, operation: options.syncOnly ? "sync-only" : operation.rawValue, sources: [:])
        // With --no-sync the record names no sources: what the target has was not checked.
        var manifests: [(source: String, contents: [UInt8])] = []
        // Each tree this deploy changed, as the sync left it: what a revert plans from.
        var changed: [(source: Fleet.Source, digest: String, manifest: [UInt8], result: Syncer.Result)] = []
        // The sources whose tree on the host the sync changed in what a build reads.
        var syncChanged: [String] = []
        for source in fleet.sources where !options.noSync {
            if options.stop?.isCancelled == true { throw SSHError.cancelled }
            var (local, scanned, generated) = prepared.tree(of: source, scans: options.scans)
            var state = DeployRecord.SourceState(digest: "")
            if !source.rendered, let git = DeployRecord.gitState(of: source.path) { state.commit = git.commit; state.dirty = git.dirty }
            phase = Date()
            report(.phaseStarted(.sync, detail: source.name))
            var syncOptions = Self.syncOptions(for: source, options)
            syncOptions.generated = generated
            // The tree's manifest names its snapshot: known before the sync (a fleet hashes each
            // shared tree once, before connecting; else it is scanned here).
            if options.manifests[source.name] == nil && scanned == nil { scanned = try Syncer.scan(local, options: syncOptions) }
            let manifest: [UInt8]
            var content: String?
            if let known = options.manifests[source.name] {
                (manifest, content) = (known, options.contents[source.name])
            } else {
                let hashed = try ManifestFile.withChecksums(scanned!.manifest, root: local, generated: generated)
                (manifest, content) = (ManifestFile.encode(hashed), ManifestFile.contentDigest(hashed))
            }
            state.digest = ManifestFile.digest(manifest)
            // A rebuild's record is what a later deploy compares with (`InputComparison`).
            if activates { state.content = try content ?? ManifestFile.contentDigest(ManifestFile.decode(manifest, target: "local", path: source.path)) }
            if !options.syncOnly {
                syncOptions.snapshot = .init(state: TargetState(root: options.root), source: source.name, digest: state.digest, keep: host.keepSnapshots)
            }
            let result = try Syncer.sync(from: local, to: options.root + "/" + source.name, over: session, options: syncOptions, scanned: scanned)
            if lock.recordedManifests[source.name] != state.digest {
                manifests.append((source.name, ManifestFile.withHeader(manifest, digest: state.digest)))
                changed.append((source, state.digest, manifest, result))
            }
            // What a build would read differently (not an mtime alone: Nix copies by content).
            if result.plan.items.contains(where: { item in
                if case .updated(let content, let size, _, let permissions, let sent) = item.change { return content || size || permissions || sent }
                return true
            }) { syncChanged.append(source.name) }
            report(.sourceSynced(name: source.name, result: result))
            guard result.complete else {
                throw DeployError.remote(target: session.name, step: "syncing \(source.name)",
                                         detail: "not every file reached the target (see the errors above); nothing was rebuilt")
            }
            report(.phaseFinished(.sync, seconds: Date().timeIntervalSince(phase), detail: source.name))
            record.sources[source.name] = state
        }

        // What each tree is now, for `ferry status` to compare the host with later: written by
        // the next command (the record, or the rebuild's preparation), one command less.
        let archive = manifests.isEmpty ? nil : ManifestFile.archive(manifests.map { (TargetState.Job.manifestUpload($0.source), $0.contents) })
        let written = archive == nil ? "" : "writing the manifests and "

        if options.syncOnly {
            record.outcome = DeployRecord.Outcome(result: .syncOnly, finishedAt: DeployRecord.timestamp())
            // Nothing else to write: the holder writes the record as it lets go of the lock.
            if archive == nil, try lock.finishSyncOnly(record) {
                released = true
                return Outcome(id: id, result: .syncOnly, record: record)
            }
            try Self.runChecked(session, TargetState.Job.recordSyncOnly(state, manifests: manifests.map(\.source), record: record),
                           stdin: archive, step: written + "writing the record")
            return Outcome(id: id, result: .syncOnly, record: record)
        }

        // 4. Rebuild, detached; 5. the job writes the record's result. With confirm-or-revert the
        // job builds, activates the result itself and waits for a fresh login's proof.
        if options.stop?.isCancelled == true { throw SSHError.cancelled }
        // The secrets whose owner exists go now, before the activation; the others right after it.
        var restarts: TargetState.Job.SecretRestarts?
        if let hostSecrets {
            phase = Date()
            var units: [String] = []
            for item in hostSecrets.items where item.before && item.change != .unchanged {
                let written = try HostSecrets.write(item, session: session, state: state, store: options.secrets, when: .before)
                report(.secret(written))
                units += written.restarts
            }
            let after = hostSecrets.items.contains { !$0.before }
            if activates && (!units.isEmpty || after) { restarts = .init(units: units, awaitsMore: after) }
            record.secrets = hostSecrets.items.map { item in
                let writes = !item.before || item.change != .unchanged
                return .init(name: item.secret.name, change: item.change?.rawValue, written: writes ? (item.before ? "before" : "after") : nil,
                             restart: writes && activates && !item.secret.restart.isEmpty ? item.secret.restart : nil)
            }
            report(.phaseFinished(.secrets, seconds: Date().timeIntervalSince(phase), detail: "compared" + (after ? "; the others go after the activation" : "")))
        }
        // Nothing the rebuild reads changed since the last one: no rebuild (the secrets that
        // changed are written above; their units restart now).
        if activates, let found = lock.inputs {
            record.inputs = found.values.filter { $0.key != "system" }
            if options.skipUnchanged ?? host.skipUnchanged {
                let current = Dictionary(uniqueKeysWithValues: record.sources.map { ($0.key, $0.value.content ?? $0.value.digest) })
                var comparison = InputComparison.compare(last: found.lastRebuild, operation: operation.rawValue, sources: current,
                                                         inputs: found.values, syncChanged: syncChanged)
                if comparison.same, let waiting = hostSecrets?.items.first(where: { !$0.before }) {
                    comparison.same = false
                    comparison.changed = ["secrets.\(waiting.secret.name) waits for an activation (its owner does not exist yet)"]
                }
                report(.compared(comparison))
                if comparison.same, let base = comparison.base {
                    if let units = restarts?.units.reduce(into: [String](), { if !$0.contains($1) { $0.append($1) } }), !units.isEmpty {
                        try Self.runChecked(session, TargetState.Secrets.restart(units), step: "restarting \(units.joined(separator: ", "))")
                    }
                    record.sameAs = base
                    record.outcome = DeployRecord.Outcome(result: .skipped, finishedAt: DeployRecord.timestamp())
                    if archive == nil, try lock.finishSyncOnly(record) {
                        released = true
                    } else {
                        try Self.runChecked(session, TargetState.Job.recordSyncOnly(state, manifests: manifests.map(\.source), record: record),
                                            stdin: archive, step: written + "writing the record")
                    }
                    return Outcome(id: id, result: .skipped(base: base), record: record)
                }
            }
        }
        phase = Date()
        let command = Rebuild.commandLine(operation: confirm == nil ? operation : .build, root: options.root,
                                          renderedSource: prepared.renderedSource, extra: options.extraArguments)
        report(.phaseStarted(.rebuild, detail: try rebuildCommandLine()))
        let snapshots = fleet.sources.compactMap { source in record.sources[source.name].map { (source.name, $0.digest) } }
        var files = manifests.map { (TargetState.Job.manifestUpload($0.source), $0.contents) }
        var confirmation: TargetState.Job.Confirmation?
        if let confirm {
            let restores = try revertPlans(changed, lock: lock, session: session, files: &files, report: report)
            // Checks that gate the proof lengthen the wait for it: written before the activation.
            confirmation = .init(operation: operation.rawValue, timeout: confirm.timeout + (checksGateConfirmation ? checks.longest : 0),
                                 activationTimeout: confirm.activationTimeout, restores: restores)
        }
        try Self.runChecked(session, TargetState.Job.prepare(state, id: id, manifests: manifests.map(\.source), record: record, command: command,
                                                        snapshots: snapshots, confirmation: confirmation, archive: !files.isEmpty, secrets: restarts),
                       stdin: files.isEmpty ? nil : ManifestFile.archive(files), step: written + "preparing the rebuild")
        _ = try lock.startRebuild()
        lock.release()
        released = true
        let proof = FreshLoginProof()
        let (openFresh, port, gate) = (options.openFresh, host.confirm.port, checksGateConfirmation)
        let later = AfterActivation(secrets: hostSecrets?.items.filter { !$0.before }.map(\.secret) ?? [], store: options.secrets)
        var result = try follow(id: id, first: session, report: report, onConfirm: { [host, id, state] seconds in
            report(FreshLoginProof.waiting(seconds))
            proof.give(open: { try openFresh(host, port) }, state: state, id: id, seconds: seconds, checks: checks, gate: gate)
        }, onSecrets: { [id, state] in later.start(session: session, state: state, id: id) })
        for event in proof.finished() { report(event) }
        // Secrets after an activation the job waited for; after any other operation, now.
        if !later.secrets.isEmpty {
            if !later.started && result == .succeeded { later.start(session: session, state: state, id: nil) }
            let (reports, error) = later.finish()
            for written in reports { report(.secret(written)) }
            if let error { throw error }
        }
        report(.phaseFinished(.rebuild, seconds: Date().timeIntervalSince(phase), detail: result.summary))
        var ran = proof.checks
        if ran == nil, confirm == nil, result == .succeeded, !checks.checks.isEmpty {
            let start = Date()
            let results = checks.run(on: session)
            for event in HealthChecks.events(results, seconds: Date().timeIntervalSince(start)) { report(event) }
            ran = results
        }
        if let ran {
            record.checks = ran
            recordChecks(ran, session: session, report: report)
            if result == .succeeded, !ran.allSatisfy(\.passed) { result = .checksFailed(ran) }
        }
        return Outcome(id: id, result: result, record: record)
    }

    /// Adds the checks' results to the host's record of this deploy (over a new session when the
    /// deploy's is gone); a failure to is said, never fatal: the checks have run.
    private func recordChecks(_ results: [DeployRecord.CheckResult], session: any RemoteShell, report: (DeployEvent) -> Void) {
        let command = TargetState.Job.recordChecks(TargetState(root: options.root), id: id, checks: results)
        do {
            try Self.runChecked(session, command, step: "recording the health checks")
        } catch {
            do {
                let fresh = try options.open(host)
                defer { fresh.close() }
                try Self.runChecked(fresh, command, step: "recording the health checks")
            } catch {
                report(.warning("the health checks' results are not in the host's record: \(error)"))
            }
        }
    }

    /// For each tree this deploy changed, the plan that brings back the tree before it (the
    /// snapshot the host keeps of it, found by the digest its manifest had when the lock was
    /// taken), put in `files` for the job; a tree with no such snapshot is kept, and said.
    func revertPlans(_ changed: [(source: Fleet.Source, digest: String, manifest: [UInt8], result: Syncer.Result)], lock: DeployLock,
                     session: any RemoteShell, files: inout [(String, [UInt8])], report: (DeployEvent) -> Void) throws -> [TargetState.Rollback.Restore] {
        let state = TargetState(root: options.root)
        var restores: [TargetState.Rollback.Restore] = []
        for (source, _, encoded, result) in changed {
            let destination = options.root + "/" + source.name
            guard let previous = lock.recordedManifests[source.name] else {
                report(.warning("\(source.name): ferry recorded no tree on the host before this deploy: a revert keeps this deploy's tree"))
                continue
            }
            let folder = state.snapshot(source.name, digest: previous)
            let (status, bytes, _) = try session.run(TargetState.TreeFile.command(Array((folder + "/manifest").utf8)))
            guard status == .exited(0), let before = try? ManifestFile.decode(bytes, target: session.name, path: folder + "/manifest") else {
                report(.warning("\(source.name): no snapshot of the tree before this deploy (\(folder)): a revert keeps this deploy's tree"))
                continue
            }
            let after = result.treeAfter(try ManifestFile.decode(encoded, target: session.name))
            let (_, plan) = try Syncer.restorePlan(snapshot: before, destination: after, options: Self.planRules(for: source))
            files.append((TargetState.Job.revertPlanUpload(id: id, source: source.name), plan))
            restores.append(.init(source: source.name, destination: destination, snapshot: folder))
        }
        return restores
    }

    /// Opens the host's session and takes its deploy lock there for `id` (`command`: what holds
    /// it, nil for a deploy), reporting both phases. The caller closes the session and releases
    /// the lock.
    static func connectAndLock(_ host: Fleet.Host, options: Options, id: String, command: String?, inputs: [String]? = nil,
                               report: @escaping (DeployEvent) -> Void) throws -> (session: any RemoteShell, lock: DeployLock, holder: LockHolder) {
        var phase = Date()
        report(.phaseStarted(.connect, detail: host.address))
        let session = try options.open(host)
        report(.phaseFinished(.connect, seconds: Date().timeIntervalSince(phase), detail: session.name))
        phase = Date()
        report(.phaseStarted(.lock, detail: TargetState(root: options.root).lock))
        let me = LockHolder(id: id, operator_: operatorName, pid: getpid(), since: DeployRecord.timestamp(), command: command)
        do {
            let lock = try DeployLock(session: session, root: options.root, id: id, info: me, wait: options.lockTimeout,
                                      cancel: options.stop ?? options.cancel, inputs: inputs) { holder in report(.lockBusy(holder, waiting: options.lockTimeout)) }
            report(.phaseFinished(.lock, seconds: Date().timeIntervalSince(phase), detail: "\(command ?? "deploy") \(id)"))
            return (session, lock, me)
        } catch {
            session.close()
            throw error
        }
    }

    static var operatorName: String {
        let user = getpwuid(geteuid()).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? "uid\(geteuid())"
        return user + "@" + ProcessInfo.processInfo.hostName
    }

    /// What a sync of `source` leaves alone on the target, and whether it deletes that too; a
    /// restore (rollback, revert) plans with the same rules.
    static func planRules(for source: Fleet.Source) -> SyncPlan.Options {
        SyncPlan.Options(excludes: source.rendered ? ExcludeRules() : ExcludeRules(source.exclude), deleteExcluded: source.deleteExcluded)
    }

    static func syncOptions(for source: Fleet.Source, _ options: Options) -> Syncer.Options {
        var plan = planRules(for: source)
        // The rendered tree is a few small files: always compared by content.
        plan.checksum = options.checksum || source.rendered
        var sync = Syncer.Options(plan: plan, force: options.force, cancel: options.cancel)
        sync.lockWait = 10
        sync.listingCache = options.listingCache
        return sync
    }

    struct Prepared: Sendable {
        /// The rendered source's tree: the fleet's folder plus the generated file (never written out).
        var rendered: (root: String, scanned: LocalScanner.Scanned, generated: [[UInt8]: [UInt8]])
        var renderedSource: String
        var renderedWarnings: [String] = []

        /// Where `source` is read from, its scan when one is made already, and its in-memory files.
        func tree(of source: Fleet.Source, scans: [String: LocalScanner.Scanned])
            -> (root: String, scanned: LocalScanner.Scanned?, generated: [[UInt8]: [UInt8]]) {
            source.rendered ? (rendered.root, rendered.scanned, rendered.generated) : (source.path, scans[source.name], [:])
        }
    }

    /// The inventory is loaded already; here: the sources and their required files, and the render.
    private func checkSourcesAndRender() throws -> Prepared {
        guard let rendered = fleet.renderedSource else {
            throw DeployError.localCheck("\(fleet.file): no source has rendered = true; add [sources.nixos-config] with rendered = true")
        }
        for source in fleet.sources where !source.rendered {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw DeployError.localCheck("\(fleet.file): sources.\(source.name).path: \(source.path) is not a folder (missing?)")
            }
            for required in source.require {
                let wantsDirectory = required.hasSuffix("/")
                let path = source.path + "/" + required.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !wantsDirectory || isDir.boolValue else {
                    throw DeployError.localCheck("\(path): missing; sources.\(source.name) requires \(required) (\(fleet.file))")
                }
            }
        }
        do {
            let config = try RenderedConfig(host: host, fleet: fleet)
            return Prepared(rendered: config.tree, renderedSource: rendered.name, renderedWarnings: config.warnings)
        } catch let error as InventoryError {
            throw DeployError.localCheck("\(error)")
        }
    }

    /// Runs `command`; its stdout, or `DeployError.remote` naming `step` and its stderr.
    @discardableResult
    static func runChecked(_ session: any RemoteShell, _ command: RemoteCommand, stdin: [UInt8]? = nil, step: String) throws -> [UInt8] {
        let (status, out, stderr) = try session.run(command, stdin: stdin)
        guard status == .exited(0) else {
            let text = String(decoding: stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw DeployError.remote(target: session.name, step: step, detail: text.isEmpty ? "\(status)" : "\(status): \(text)")
        }
        return out
    }

    /// Streams the job's log until its status is written (see `RebuildFollower`); `onConfirm`
    /// hears when the job waits for proof of a fresh login, `onSecrets` when it waits for the
    /// secrets that go after the activation.
    func follow(id: String, first: any RemoteShell, report: (DeployEvent) -> Void, onConfirm: ((Int) -> Void)? = nil,
                onSecrets: (() -> Void)? = nil) throws -> DeployResult {
        let open = options.open
        let host = self.host
        var follower = RebuildFollower(state: TargetState(root: options.root), id: id, operation: operation.rawValue, reconnectTimeout: options.reconnectTimeout,
                                       waitForStart: true, stop: options.stop ?? options.cancel, cancel: options.cancel) { try open(host) }
        follower.onConfirm = onConfirm
        follower.onSecrets = onSecrets
        return try follower.follow(first: first, report: report)
    }
}

/// The proof that a login still works after a switch, given on a thread of its own (a fresh
/// session) while the deploy's session follows the job. It only asks: the job settles the
/// outcome, and the answer is what the job settled. The health checks run over the same session:
/// before the proof when a failed check is to revert the switch (then a failure asks the job to
/// revert at once), else after it. Unchecked Sendable: its state is guarded by `condition`.
public final class FreshLoginProof: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<String, any Error>?
    private var started: Date?
    private var ended: Date?
    private var checkResults: [DeployRecord.CheckResult]?
    private var checkSeconds: Double = 0
    private var gated = false

    public init() {}

    /// The confirm phase's start: the job has activated and waits `seconds`.
    public static func waiting(_ seconds: Int) -> DeployEvent {
        .phaseStarted(.confirm, detail: "activated; the host reverts unless a fresh login confirms within \(seconds) s")
    }

    /// Asks deploy `id`'s job, over a session `open` makes (a new connection), to confirm; waits
    /// for what it settles on a thread of its own. `checks` run over that session too; `gate`:
    /// before the proof, which only a full pass gives.
    public func give(open: @escaping @Sendable () throws -> any RemoteShell, state: TargetState, id: String, seconds: Int,
                     checks: HealthChecks? = nil, gate: Bool = false) {
        condition.lock()
        started = Date()
        gated = gate
        condition.unlock()
        Thread {
            var ran: [DeployRecord.CheckResult]?
            var ranFor: Double = 0
            func runChecks(_ shell: any RemoteShell) {
                guard let checks, !checks.checks.isEmpty else { return }
                let start = Date()
                ran = checks.run(on: shell)
                ranFor = Date().timeIntervalSince(start)
            }
            let r = Result { () throws -> String in
                let shell = try open()
                defer { shell.close() }
                var verdict = TargetState.Job.Verdict.confirm
                if gate {
                    runChecks(shell)
                    // Interrupted: no word at all, so the host reverts at its deadline.
                    if checks?.cancel?.isCancelled == true { throw SSHError.cancelled }
                    if ran?.allSatisfy(\.passed) == false { verdict = .reject }
                }
                let (status, out, err) = try shell.run(TargetState.Job.confirm(state, id: id, wait: seconds + 30, verdict: verdict))
                guard status == .exited(0) else {
                    throw DeployError.remote(target: shell.name, step: "confirming the switch", detail: "\(status): \(String(decoding: err, as: UTF8.self))")
                }
                let said = String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                if !gate && said == "confirmed" { runChecks(shell) }
                return (verdict == .reject ? "rejected " : "") + shell.name + " " + said
            }
            self.condition.lock()
            self.result = r
            self.ended = Date()
            self.checkResults = ran
            self.checkSeconds = ranFor
            self.condition.broadcast()
            self.condition.unlock()
        }.start()
    }

    /// The health checks' results, once `finished` has returned (nil: none ran).
    public var checks: [DeployRecord.CheckResult]? {
        condition.lock()
        defer { condition.unlock() }
        return checkResults
    }

    /// The confirm phase's end and the health checks', in the order they ran, once the proof's
    /// session has ended (none: no proof was given).
    public func finished() -> [DeployEvent] {
        condition.lock()
        defer { condition.unlock() }
        guard let started else { return [] }
        while result == nil { condition.wait() }
        let detail: String
        switch result! {
        case .success(let said) where said.hasPrefix("rejected "):
            detail = "a health check failed: the host was asked to revert (\(said.split(separator: " ").last ?? ""))"
        case .success(let said) where said.hasSuffix(" confirmed"):
            detail = "confirmed by a fresh login (\(said.dropLast(" confirmed".count)))"
        case .success(let said): detail = "the fresh login's proof came too late: \(said.split(separator: " ").last ?? "")"
        case .failure(SSHError.cancelled): detail = "interrupted while checking: no proof given"
        case .failure(let error): detail = "no fresh login: \(error)"
        }
        let confirm = DeployEvent.phaseFinished(.confirm, seconds: (ended ?? Date()).timeIntervalSince(started), detail: detail)
        let health = checkResults.map { HealthChecks.events($0, seconds: checkSeconds) } ?? []
        return gated ? health + [confirm] : [confirm] + health
    }
}

/// Everything a deploy reported, kept beside fleet.toml in `.ferry/logs/HOST/` (else under
/// `$XDG_STATE_HOME/ferry/logs/HOST/` when that folder is read-only); the newest 50 per host.
final class LocalLog {
    let path: String
    /// -1 until the first write; closed for good after a failed one.
    private var descriptor: Int32 = -1
    private var failed = false

    /// Finds a writable folder now; the file is made at the first write (a host of a fleet that
    /// never starts leaves none).
    init?(fleet: Fleet, host: String, id: String) {
        let state = SSHConfiguration.environment("XDG_STATE_HOME") ?? SSHConfiguration.homeDirectory + "/.local/state"
        for base in [fleet.directory + "/.ferry/logs", state + "/ferry/logs"] {
            let folder = base + "/" + host
            guard (try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)) != nil,
                  access(folder, W_OK) == 0 else { continue }
            // A deploy's output may hold what an operator would not publish: the folders are theirs alone.
            for dir in [(base as NSString).deletingLastPathComponent, base, folder] { chmod(dir, 0o700) }
            path = folder + "/" + id + ".log"
            return
        }
        return nil
    }

    /// Appends the event's line. A log that cannot be written (a full disk) is given up quietly:
    /// it must never stop the deploy it records (FileHandle.write would trap).
    func write(_ event: DeployEvent) {
        if descriptor < 0 && !failed {
            descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { failed = true; return }
            let folder = (path as NSString).deletingLastPathComponent
            let old = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".log") }.sorted()
            for name in old.dropLast(50) { try? FileManager.default.removeItem(atPath: folder + "/" + name) }
        }
        guard !failed else { return }
        let bytes: [UInt8]
        switch event {
        case .output(let line): bytes = line + [0x0A]
        default: bytes = Array((DeployEventText.line(event) + "\n").utf8)
        }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { close(); failed = true; return }
            offset += n
        }
    }

    func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }
}

/// Plain words for events: the local log's lines, and the CLI's (which adds a host prefix and
/// escapes control characters).
public enum DeployEventText {
    public static func line(_ event: DeployEvent) -> String {
        switch event {
        case .phaseStarted(let phase, let detail): return "\(phase.rawValue): \(detail)"
        case .phaseFinished(let phase, let seconds, let detail): return "\(phase.rawValue): \(detail) (\(String(format: "%.2f", seconds)) s)"
        case .lockBusy(let holder, let waiting):
            return "lock: held by \(holder.map { "\($0)" } ?? LockHolder.notFerrys)" + (waiting > 0 ? "; waiting up to \(waiting) s" : "")
        case .sourceSynced(let name, let r):
            let deleted = r.plan.items.filter { $0.change == .deleted }.count
            return "sync: \(name): \(r.plan.sends.count) files sent (\(r.plan.bytesToSend) bytes), \(deleted) deleted"
                + (r.resolvedDestination.map { " (in \($0): a folder above it is a symlink)" } ?? "")
        case .output(let line): return String(decoding: line, as: UTF8.self)
        case .warning(let text): return "warning: \(text)"
        case .reconnecting(let reason): return "rebuild: lost the link (\(reason)); reconnecting"
        case .checked(let result): return "health: " + HealthChecks.line(result)
        case .secret(let report): return "secrets: " + report.line
        case .compared(let comparison): return comparison.line
        }
    }
}

extension DeployRecord {
    /// The checkout's commit and whether it has changes, when it is a git checkout and git is here.
    static func gitState(of path: String) -> (commit: String, dirty: Bool)? {
        func git(_ args: [String]) -> String? {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["git", "-C", path] + args
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            guard (try? process.run()) != nil else { return nil }
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
        guard FileManager.default.fileExists(atPath: path + "/.git"),
              let head = git(["rev-parse", "HEAD"])?.trimmingCharacters(in: .whitespacesAndNewlines), !head.isEmpty,
              let status = git(["status", "--porcelain"]) else { return nil }
        return (head, !status.isEmpty)
    }
}
