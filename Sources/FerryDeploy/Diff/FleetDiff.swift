import FerrySSH
import FerryTarget

/// `ferry diff` and `deploy --dry-run`: what a deploy would change on each host, found by the
/// deploy's own read-only steps. Takes no lock and writes nothing on the hosts.
public struct FleetDiff: HostOperation {
    public struct Options: Sendable {
        /// Only this source.
        public var source: String?
        /// Also the unified diffs of the sources' changed files, up to `maxPatchBytes` per host.
        public var patch = false
        public var maxPatchBytes = 1 << 20

        public init() {}
    }

    /// One host's diff, or why there is none; `note` says what else the operator should know
    /// (a deploy holding the lock while the tree was read).
    public struct HostResult: Sendable {
        public var diff: HostDiff?
        public var note: String?
        public var error: (any Error)?
    }

    public let deployments: [Deployment]
    /// What the local checks found worth telling (`.env` files a source would push).
    public let warnings: [String]
    public let options: Options

    /// Checks every host locally, as a deploy does (throws `DeployError.localCheck`, nothing
    /// contacted). The shared trees are scanned once for several hosts; for one, the scan
    /// overlaps the host's listing.
    public init(fleet: Fleet, hosts: [Fleet.Host], deploy: Deployment.Options, options: Options) throws {
        let prepared = FleetDeployment(fleet: fleet, hosts: hosts, options: FleetDeployment.Options(deploy: deploy))
        try prepared.prepare(scanning: hosts.count > 1, manifests: false)
        deployments = prepared.deployments
        warnings = prepared.warnings
        self.options = options
    }

    public func run(host index: Int, emit: @escaping @Sendable (Never) -> Void) -> HostResult {
        let deployment = deployments[index]
        var result = HostResult()
        do {
            let session = try deployment.options.open(deployment.host)
            defer { session.close() }
            switch try HostStatus.lock(shell: session) {
            case .free: break
            case .held(let who), .rebuildRunning(let who):
                result.note = "a deploy is in progress (\(who.map { "\($0)" } ?? "the lock is held")); this diff is against the tree as it is now"
            case .heldByOther:
                result.note = "the deploy lock is held by \(LockHolder.notFerrys); this diff is against the tree as it is now"
            }
            result.diff = try HostDiff.compute(deployment, over: session, only: options.source, patch: options.patch, maxPatchBytes: options.maxPatchBytes)
        } catch {
            result.error = error
        }
        return result
    }

    public func failed(_ outcome: HostResult) -> Bool { outcome.error != nil }

    public func error(_ outcome: HostResult) -> (any Error)? { outcome.error }
}
