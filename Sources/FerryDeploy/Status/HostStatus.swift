import FerrySSH
import FerrySync
import FerryTarget
import Foundation

/// What a host says about its deploys, read without taking its lock: the last record, who holds
/// the lock, whether a rebuild runs, the running system, and what changed in each synced tree
/// since (against the manifest the deploy left in `/var/src/.ferry/NAME/manifest`).
public struct HostStatus: Sendable {
    public struct Drift: Equatable, Sendable {
        public var source: String
        /// False: no manifest on the host (never synced by this ferry, or synced before manifests).
        public var recorded: Bool
        public var added: [[UInt8]] = []
        public var changed: [[UInt8]] = []
        public var removed: [[UInt8]] = []
        public var isEmpty: Bool { added.isEmpty && changed.isEmpty && removed.isEmpty }
    }

    /// The last deploy that rebuilt, as its record on the host says.
    public var rebuild: DeployRecord.Read
    /// The last `--sync-only` deploy.
    public var sync: DeployRecord.Read
    public var lock: LockState
    /// `readlink /run/current-system` now.
    public var currentSystem: String
    public var drift: [Drift]
    /// With `history`: the newest deploys' records, newest first.
    public var history: [(id: String, record: DeployRecord.Read)] = []
    /// Each of the host's secrets that is not as ferry wrote it (changed or gone since; one ferry
    /// never wrote is `new`), told by inode and ctime: nothing on the host is read or hashed.
    public var secretDrift: [(name: String, change: SecretChange)] = []

    /// The running system differs from the one the last rebuild recorded (a manual rebuild or a
    /// rollback since).
    public var systemChanged: Bool {
        guard let recorded = rebuild.record?.outcome?.currentSystem else { return false }
        return recorded != currentSystem
    }

    /// The records, the lock and the running system, in one command (no manifests, no drift).
    static func basics(shell: any RemoteShell, root: String) throws -> TargetState.Status.Answer {
        let (status, out, err) = try shell.run(TargetState.Status.command(TargetState(root: root)))
        guard status == .exited(0) else {
            throw DeployError.remote(target: shell.name, step: "reading the status", detail: "\(status): \(String(decoding: err, as: UTF8.self))")
        }
        guard let answer = TargetState.Status.Answer(out, state: TargetState(root: root)) else {
            throw DeployError.remote(target: shell.name, step: "reading the status", detail: "a short answer")
        }
        return answer
    }

    /// Who holds the host's deploy lock, read without touching it (and without the records).
    public static func lock(shell: any RemoteShell, root: String = "/var/src") throws -> LockState {
        let (status, out, err) = try shell.run(TargetState.Status.lockCommand(TargetState(root: root)))
        guard status == .exited(0), let lock = TargetState.Status.lock(out) else {
            throw DeployError.remote(target: shell.name, step: "reading the lock", detail: "\(status): \(String(decoding: err, as: UTF8.self))")
        }
        return lock
    }

    /// The newest `count` deploys' records, newest first.
    public static func history(shell: any RemoteShell, root: String = "/var/src", count: Int = 20) throws -> [(id: String, record: DeployRecord.Read)] {
        let state = TargetState(root: root)
        let (status, out, err) = try shell.run(TargetState.History.command(state, count: count))
        guard status == .exited(0) else {
            throw DeployError.remote(target: shell.name, step: "reading the deploys' records", detail: "\(status): \(String(decoding: err, as: UTF8.self))")
        }
        return TargetState.History.parse(out, state: state)
    }

    public static func read(fleet: Fleet, host: Fleet.Host, shell: any RemoteShell, root: String = "/var/src") throws -> HostStatus {
        let basics = try basics(shell: shell, root: root)
        let state = TargetState(root: root)

        var drift: [Drift] = []
        for source in fleet.sources {
            let destination = root + "/" + source.name
            let (s, bytes, _) = try shell.run(TargetState.ManifestRead.command(state, source: source.name))
            guard s == .exited(0) else { drift.append(Drift(source: source.name, recorded: false)); continue }
            let recorded = try ManifestFile.decode(bytes, target: shell.name, path: state.manifest(source.name))
            let current = try Syncer.listing(of: destination, over: shell) ?? Manifest()
            let changes = ManifestFile.drift(recorded: recorded, current: current, excludes: source.rendered ? ExcludeRules() : ExcludeRules(source.exclude))
            drift.append(Drift(source: source.name, recorded: true, added: changes.added, changed: changes.changed, removed: changes.removed))
        }
        var status = HostStatus(rebuild: basics.rebuild, sync: basics.sync, lock: basics.lock, currentSystem: basics.currentSystem, drift: drift)
        if !host.secrets.isEmpty {
            let answer = try HostSecrets.query(host.secrets, session: shell, state: state, create: false)
            for (secret, found) in zip(host.secrets, answer.secrets) {
                if let drift = HostSecrets.drift(found) { status.secretDrift.append((secret.name, drift)) }
            }
        }
        return status
    }

    /// The last deploy's rebuild output from its start, followed until the job ends (re-attaching
    /// after a deploy whose outcome was unknown); reconnects like a deploy. Nil: never deployed.
    /// `openFresh`: a session for the proof a job waiting for confirmation asks for (a new
    /// connection): following a switch is being able to log in. `gatingChecks`: the host's health
    /// checks when a failed one reverts (`revert_on_check_failure`): they run before the proof,
    /// as the deploy would have run them.
    public static func follow(shell: any RemoteShell, root: String = "/var/src", reconnectTimeout: Double, cancel: CancellationToken?,
                              reopen: @escaping () throws -> any RemoteShell, openFresh: (@Sendable () throws -> any RemoteShell)? = nil,
                              gatingChecks: HealthChecks? = nil,
                              report: (DeployEvent) -> Void) throws -> (id: String, result: DeployResult)? {
        let basics = try basics(shell: shell, root: root)
        if case .unreadable(let file, let reason) = basics.rebuild {
            throw DeployError.remote(target: shell.name, step: "reading the last rebuild's record", detail: "\(file) is unreadable: \(reason)")
        }
        guard let record = basics.rebuild.record, !record.id.isEmpty, !record.id.contains("/"), record.id != ".." else { return nil }
        // A deploy holding the lock may be about to start its job; with the lock free, a job
        // without a pid never started.
        let proof = FreshLoginProof()
        // The follower calls it back while it follows, never after.
        return try withoutActuallyEscaping(report) { report in
            var follower = RebuildFollower(state: TargetState(root: root), id: record.id, operation: record.operation, reconnectTimeout: reconnectTimeout,
                                           waitForStart: basics.lock != .free, stop: cancel, cancel: cancel, reopen: reopen)
            if let openFresh {
                follower.onConfirm = { seconds in
                    report(FreshLoginProof.waiting(seconds))
                    proof.give(open: openFresh, state: TargetState(root: root), id: record.id, seconds: seconds,
                               checks: gatingChecks, gate: gatingChecks != nil)
                }
            }
            let result = try follower.follow(first: shell, report: report)
            for event in proof.finished() { report(event) }
            if let checks = proof.checks {
                let (status, _, err) = try shell.run(TargetState.Job.recordChecks(TargetState(root: root), id: record.id, checks: checks))
                if status != .exited(0) { report(.warning("the health checks' results are not in the host's record: \(status): \(String(decoding: err, as: UTF8.self))")) }
            }
            return (record.id, result)
        }
    }

    public enum UnlockResult: Equatable, Sendable {
        case wasFree
        /// Forced: the holder (a deploy, or a running rebuild when `rebuild`) was sent SIGTERM.
        case forced(holder: LockHolder?, rebuild: Bool)
    }

    /// Frees the host's deploy lock. Throws `DeployError.lockHeld` naming the holder while a deploy
    /// or a rebuild holds it, unless `force`.
    public static func unlock(shell: any RemoteShell, root: String = "/var/src", force: Bool) throws -> UnlockResult {
        let (status, out, err) = try shell.run(TargetState.Unlock.command(TargetState(root: root), force: force))
        let answer = TargetState.Unlock.Answer(out)
        let holder = answer.lock.holder
        let rebuild = if case .rebuildRunning = answer.lock { true } else { false }
        switch status {
        case .exited(0) where answer.wasFree: return .wasFree
        case .exited(0): return .forced(holder: holder, rebuild: rebuild)
        case .exited(76):
            throw DeployError.remote(target: shell.name, step: "unlocking", detail: "\(TargetState(root: root).lock) is held by a process that is not ferry's "
                + "(no live holder is recorded), which ferry will not stop; find it with: fuser -v \(TargetState(root: root).lock)")
        case .exited(75):
            let who = holder.map { "\($0)" } ?? "a deploy"
            throw DeployError.remote(target: shell.name, step: "unlocking", detail: rebuild
                ? "a rebuild holds the lock (\(who)); refusing. --force stops it, which may cut an activation half-way"
                : "the lock is held by \(who), which is alive; refusing. --force sends it SIGTERM")
        default:
            throw DeployError.remote(target: shell.name, step: "unlocking", detail: "\(status): \(String(decoding: err, as: UTF8.self))")
        }
    }
}
