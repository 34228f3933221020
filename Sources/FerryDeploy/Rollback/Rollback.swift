import FerrySSH
import FerrySync
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a host cannot be rolled back; nothing on it was changed.
public enum RollbackError: Error, Sendable, CustomStringConvertible {
    /// No earlier successful deploy whose system and snapshots are all still there.
    case nothingToReturnTo(target: String, reason: String)
    case unknownDeploy(target: String, id: String)
    /// The deploy named is not one to return to (it failed, built only, or kept no snapshot).
    case notReturnable(target: String, id: String, reason: String)
    case systemGone(target: String, id: String, system: String)
    case snapshotGone(target: String, id: String, source: String, folder: String)
    /// Files of the snapshot differ from its manifest (written through a hard link shared with
    /// the live tree), or its manifest is unreadable.
    case snapshotDamaged(target: String, id: String, source: String, folder: String, detail: String)

    public var description: String {
        switch self {
        case .nothingToReturnTo(let target, let reason):
            return "\(target): nothing to roll back to: \(reason); nothing was changed"
        case .unknownDeploy(let target, let id):
            return "\(target): no deploy \(id) on the host (ferry status \(target.split(separator: "@").last.map(String.init) ?? target) --history lists them); nothing was changed"
        case .notReturnable(let target, let id, let reason):
            return "\(target): cannot roll back to deploy \(id): \(reason); nothing was changed"
        case .systemGone(let target, let id, let system):
            return "\(target): the system of deploy \(id) is gone from the store (garbage-collected): \(system); nothing was changed"
        case .snapshotGone(let target, let id, let source, let folder):
            return "\(target): the snapshot of \(source) for deploy \(id) is gone (pruned or removed): \(folder); nothing was changed"
        case .snapshotDamaged(let target, let id, let source, let folder, let detail):
            return "\(target): the snapshot of \(source) for deploy \(id) (\(folder)) is damaged: \(detail); nothing was changed (--force restores it as it is)"
        }
    }
}

/// One host's rollback: under the deploy lock, choose the deploy to return to, check its
/// snapshots against their manifests and that its system is still in the store, plan each
/// source's restore, then a detached job (followed like a rebuild) restores the sources from the
/// snapshots and activates that system. Nothing is sent from the operator's files.
public final class Rollback: @unchecked Sendable {
    public let fleet: Fleet
    public let host: Fleet.Host
    /// The deploy's options: its connection, lock and reconnect settings, root and version;
    /// `operation` is switch (default), boot or test; `force` restores a damaged snapshot.
    public let options: Deployment.Options
    /// The deploy to return to (nil: the newest earlier one that can be).
    public let to: String?
    public let id: String
    private let log: LocalLog?
    public var logFile: String? { log?.path }

    public init(fleet: Fleet, host: Fleet.Host, options: Deployment.Options, to: String?) {
        self.fleet = fleet
        self.host = host
        self.options = options
        self.to = to
        id = DeployRecord.newID()
        log = LocalLog(fleet: fleet, host: host.name, id: id)
    }

    var operation: Fleet.Operation { options.operation ?? .switch }

    /// The operations a rollback activates with.
    public static let operations: [Fleet.Operation] = [.switch, .boot, .test]

    public func run(_ emit: @escaping (DeployEvent) -> Void) throws -> Deployment.Outcome {
        let log = self.log
        let report: (DeployEvent) -> Void = { event in log?.write(event); emit(event) }
        let start = Date()
        defer { log?.close() }
        precondition(Self.operations.contains(operation), "a rollback switches, boots or tests")

        let (session, lock, me) = try Deployment.connectAndLock(host, options: options, id: id, command: DeployRecord.rollbackOperation, report: report)
        defer { session.close() }
        var released = false
        defer { if !released { lock.release() } }
        let state = TargetState(root: options.root)

        // The deploy to return to, its snapshots checked, each source's restore planned.
        var phase = Date()
        report(.phaseStarted(.restore, detail: to.map { "to deploy \($0)" } ?? "to the last deploy before this one"))
        let out = try Deployment.runChecked(session, TargetState.Rollback.history(state), step: "reading the deploys")
        let history = TargetState.Rollback.parse(out, state: state)
        let (target, system) = try Self.choose(history.entries, to: to, target: session.name)
        var restores: [TargetState.Rollback.Restore] = []
        var plans: [(path: String, contents: [UInt8])] = []
        var sources: [String: DeployRecord.SourceState] = [:]
        var planned: [String] = []
        for snapshot in target.snapshots {
            if options.stop?.isCancelled == true { throw SSHError.cancelled }
            let folder = state.snapshots(snapshot.source) + "/" + snapshot.name
            let manifest = try verify(snapshot.source, folder: folder, name: snapshot.name, deploy: target.id, session: session)
            let destination = options.root + "/" + snapshot.source
            let listed = try Syncer.listing(of: destination, over: session, cancel: options.cancel) ?? Manifest()
            // A source no longer in fleet.toml: restored whole, nothing excluded.
            let rules = fleet.sources.first { $0.name == snapshot.source }.map(Deployment.planRules) ?? SyncPlan.Options()
            let (plan, archive) = try Syncer.restorePlan(snapshot: manifest, destination: listed, options: rules)
            for blocked in plan.blocked {
                report(.warning("\(snapshot.source)/\(String(decoding: blocked, as: UTF8.self)) is not restored: a folder kept for its excluded entries is in the way"))
            }
            plans.append((snapshot.source + ".tar", archive))
            restores.append(.init(source: snapshot.source, destination: destination, snapshot: folder))
            let was = target.record.record?.sources[snapshot.source]
            sources[snapshot.source] = DeployRecord.SourceState(digest: "sha256:" + snapshot.name, commit: was?.commit, dirty: was?.dirty)
            planned.append("\(snapshot.source) \(plan.sends.count) back, \(plan.items.filter { $0.change == .deleted }.count) deleted")
        }
        report(.phaseFinished(.restore, seconds: Date().timeIntervalSince(phase), detail: "to deploy \(target.id): " + planned.joined(separator: "; ")))
        if options.stop?.isCancelled == true { throw SSHError.cancelled }
        try Deployment.runChecked(session, TargetState.Rollback.upload(state, id: id), stdin: ManifestFile.archive(plans), step: "writing the restore plans")

        // The job restores and activates; the lock is its until it has written its status.
        phase = Date()
        let record = DeployRecord(id: id, host: host.name, startedAt: DeployRecord.timestamp(start), operator_: me.operator_,
                                  ferryVersion: options.ferryVersion, operation: DeployRecord.rollbackOperation, sources: sources,
                                  returnedTo: target.id, system: system)
        let command = TargetState.Rollback.jobCommand(state, id: id, operation: operation.rawValue, system: system, restores: restores)
        report(.phaseStarted(.rebuild, detail: "return to deploy \(target.id): restore \(restores.count) sources, then \(system)/bin/switch-to-configuration \(operation.rawValue)"))
        try Deployment.runChecked(session, TargetState.Job.prepare(state, id: id, manifests: [], record: record, command: command,
                                                     snapshots: restores.map { ($0.source, sources[$0.source]!.digest) }),
                    step: "preparing the rollback")
        _ = try lock.startRebuild()
        lock.release()
        released = true
        let follower = RebuildFollower(state: state, id: id, operation: DeployRecord.rollbackOperation, reconnectTimeout: options.reconnectTimeout,
                                       waitForStart: true, stop: options.stop ?? options.cancel, cancel: options.cancel) { [options, host] in try options.open(host) }
        let result = try follower.follow(first: session, report: report)
        report(.phaseFinished(.rebuild, seconds: Date().timeIntervalSince(phase), detail: result.summary))
        return Deployment.Outcome(id: id, result: result, record: record)
    }

    /// The deploy to return to, and its system: `to`, or the newest deploy before the one the
    /// host is at (after a rollback: before the deploy it returned to) that succeeded, left a
    /// system that is still in the store, and whose snapshots are all still there.
    static func choose(_ entries: [TargetState.Rollback.Entry], to: String?, target: String) throws -> (TargetState.Rollback.Entry, String) {
        func check(_ entry: TargetState.Rollback.Entry) -> Result<String, RollbackError> {
            guard let record = entry.record.record else {
                return .failure(.notReturnable(target: target, id: entry.id, reason: "its record is unreadable"))
            }
            guard let outcome = record.outcome else { return .failure(.notReturnable(target: target, id: entry.id, reason: "it has not finished")) }
            guard outcome.result == .success else {
                return .failure(.notReturnable(target: target, id: entry.id, reason: "it did not succeed (\(outcome.result.rawValue))"))
            }
            guard let system = record.deployedSystem else {
                return .failure(.notReturnable(target: target, id: entry.id, reason: "its operation (\(record.operation)) activated no system"))
            }
            guard !entry.snapshots.isEmpty else {
                return .failure(.notReturnable(target: target, id: entry.id, reason: "it kept no snapshot of its sources (a ferry before snapshots deployed it)"))
            }
            guard entry.systems.contains(system) else { return .failure(.systemGone(target: target, id: entry.id, system: system)) }
            if let gone = entry.snapshots.first(where: { !$0.kept }) {
                return .failure(.snapshotGone(target: target, id: entry.id, source: gone.source, folder: "\(TargetState.folderName)/snapshots/\(gone.source)/\(gone.name)"))
            }
            return .success(system)
        }
        if let to {
            guard let entry = entries.first(where: { $0.id == to }) else { throw RollbackError.unknownDeploy(target: target, id: to) }
            return (entry, try check(entry).get())
        }
        guard let newest = entries.first else {
            throw RollbackError.nothingToReturnTo(target: target, reason: "ferry has no deploy recorded on the host")
        }
        // The host is at the newest deploy, or at the one the newest rollback returned to.
        var at = newest.id
        if let record = newest.record.record, record.operation == DeployRecord.rollbackOperation, record.outcome?.result == .success,
           let returned = record.returnedTo, entries.contains(where: { $0.id == returned }) {
            at = returned
        }
        var firstProblem: RollbackError?
        for entry in entries.drop(while: { $0.id != at }).dropFirst() {
            switch check(entry) {
            case .success(let system): return (entry, system)
            case .failure(let problem):
                // A deploy that failed or only built is passed over silently; a good one that
                // lost its system or a snapshot is named if nothing older will do.
                switch problem {
                case .systemGone, .snapshotGone: if firstProblem == nil { firstProblem = problem }
                default: break
                }
            }
        }
        if let firstProblem { throw firstProblem }
        throw RollbackError.nothingToReturnTo(target: target, reason: "no successful deploy before \(at) kept its snapshots")
    }

    /// The snapshot's manifest, once its tree is checked against it (every file's content, mode,
    /// size and mtime, every link's target): a file written on the host through a link it shares
    /// with the live tree would come back changed. `--force` takes it as it is.
    func verify(_ source: String, folder: String, name: String, deploy: String, session: any RemoteShell) throws -> Manifest {
        func damaged(_ detail: String) -> RollbackError {
            .snapshotDamaged(target: session.name, id: deploy, source: source, folder: folder, detail: detail)
        }
        let (status, bytes, _) = try session.run(TargetState.TreeFile.command(Array((folder + "/manifest").utf8)))
        guard status == .exited(0) else { throw RollbackError.snapshotGone(target: session.name, id: deploy, source: source, folder: folder) }
        // Its header names the digest the snapshot is filed under.
        guard let newline = bytes.firstIndex(of: 0x0A),
              String(decoding: bytes[..<newline], as: UTF8.self) == ManifestFile.header + "sha256:" + name else {
            throw damaged("its manifest is not the one it was made with")
        }
        let manifest: Manifest
        do { manifest = try ManifestFile.decode(bytes, target: session.name, path: folder + "/manifest") } catch { throw damaged("\(error)") }
        guard let tree = try Syncer.listing(of: folder + "/tree", over: session, cancel: options.cancel) else {
            throw RollbackError.snapshotGone(target: session.name, id: deploy, source: source, folder: folder)
        }
        let changed = Self.differences(manifest, tree)
        guard changed.isEmpty || options.force else {
            let names = changed.prefix(10).map { $0.isEmpty ? "." : String(decoding: $0, as: UTF8.self) }.joined(separator: ", ")
            throw damaged("\(changed.count) entr\(changed.count == 1 ? "y differs" : "ies differ") from its manifest (changed on the host since): \(names)"
                          + (changed.count > 10 ? ", …" : ""))
        }
        return manifest
    }

    /// Paths of `manifest` that `tree` lacks or holds otherwise.
    static func differences(_ manifest: Manifest, _ tree: Manifest) -> [[UInt8]] {
        manifest.entries.compactMap { e in
            guard let t = tree[e.path], t.kind == e.kind, t.mtime == e.mtime, e.kind == .symlink || t.mode == e.mode,
                  t.linkTarget == e.linkTarget, e.kind != .file || (t.size == e.size && (e.checksum == nil || t.checksum == e.checksum)) else {
                return e.path
            }
            return nil
        }
    }
}

/// `ferry rollback`: each host's rollback, as the runner runs it; outcomes as a deploy's.
public struct FleetRollback: HostOperation {
    public let rollbacks: [Rollback]

    public init(fleet: Fleet, hosts: [Fleet.Host], options: Deployment.Options, to: String?) {
        rollbacks = hosts.map { Rollback(fleet: fleet, host: $0, options: options, to: to) }
    }

    public func run(host index: Int, emit: @escaping @Sendable (DeployEvent) -> Void) -> FleetDeployment.HostOutcome {
        let rollback = rollbacks[index]
        return FleetDeployment.outcome(host: rollback.host.name, id: rollback.id, operation: DeployRecord.rollbackOperation,
                                       logFile: rollback.logFile, emit: emit) { try rollback.run($0).result }
    }

    public func failed(_ outcome: FleetDeployment.HostOutcome) -> Bool { outcome.state != .succeeded }

    public func error(_ outcome: FleetDeployment.HostOutcome) -> (any Error)? { outcome.error }
}
