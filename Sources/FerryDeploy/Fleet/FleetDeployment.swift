import FerrySSH
import FerrySync
import FerryTarget
import Foundation
import Synchronization

/// Deploys many hosts, `jobs` at a time, each by its own `Deployment` on a `HostRunner` thread (a
/// libssh2 session blocks in poll; cooperative tasks would starve on 2 cores). Every host is checked
/// locally before the first connection; each shared source is scanned once for all hosts.
public final class FleetDeployment {
    public struct Options: Sendable {
        public var jobs = 8
        /// Start every host whatever fails; by default no new host starts after a failure.
        public var keepGoing = false
        /// The per-host options (`scans` is filled in here).
        public var deploy: Deployment.Options

        public init(deploy: Deployment.Options) { self.deploy = deploy }
    }

    /// How one host ended.
    public struct HostOutcome: Sendable {
        public enum State: Equatable, Sendable {
            case succeeded, syncOnly
            /// Nothing the rebuild reads had changed: it did not run (`--skip-unchanged`).
            case unchanged
            /// The rebuild failed, or another step did (`phase` says which).
            case failed
            /// Contact lost during the rebuild, or ferry stopped following it: it may still run.
            case unknown
            case interrupted
            /// Never started: an earlier host failed (or ferry was interrupted) first.
            case notStarted
        }

        public var host: String
        public var state: State
        /// The phase it was in when it ended (for a failure: where).
        public var phase: DeployPhase?
        /// One line: why it failed, or the rebuild's result.
        public var cause: String?
        public var filesSent = 0
        public var bytesSent: Int64 = 0
        public var seconds: Double = 0
        public var logFile: String?
        public var deployID: String?
        public var operation: String?
        /// The end of a failed rebuild's output.
        public var lastLines: [String] = []
        /// The job confirms or reverts its activation (a switch or test, confirm on).
        public var confirms = false
        /// The error, for callers that map it to an exit status.
        public var error: Error?

        public init(host: String, state: State) {
            self.host = host
            self.state = state
        }
    }

    public let fleet: Fleet
    public let hosts: [Fleet.Host]
    public let options: Options
    /// One per host, after `prepare`.
    public private(set) var deployments: [Deployment] = []
    /// What `prepare` found worth telling the operator (`.env` files a source would push).
    public private(set) var warnings: [String] = []

    public init(fleet: Fleet, hosts: [Fleet.Host], options: Options) {
        self.fleet = fleet
        self.hosts = hosts
        self.options = options
    }

    /// Checks every host locally (sources, required files, each render) and scans each shared
    /// source once, before any connection: for what it must not carry (`SourceSecrets`), and for
    /// every host's sync (`manifests`: hashed too, for the manifests a deploy leaves; a diff needs
    /// none). Throws `DeployError.localCheck` naming the host; nothing is contacted.
    /// `scanning: false` (one host's diff, which sends nothing): the sources are scanned by the
    /// host's dry run, overlapping its listing, and checked there (`HostDiff`).
    public func prepare(scanning: Bool = true, manifests: Bool = true) throws {
        var deploy = options.deploy
        warnings = []
        if !deploy.noSync && scanning {
            for source in fleet.sources where !source.rendered {
                // Only a folder that passed the checks is scanned; the checks below name what is wrong.
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: source.path, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
                let scanned: LocalScanner.Scanned
                do {
                    scanned = try Syncer.scan(source.path, options: Deployment.syncOptions(for: source, deploy))
                    deploy.scans[source.name] = scanned
                    if manifests {
                        let hashed = try ManifestFile.withChecksums(scanned.manifest, root: source.path)
                        deploy.manifests[source.name] = ManifestFile.encode(hashed)
                        deploy.contents[source.name] = ManifestFile.contentDigest(hashed)
                    }
                } catch {
                    throw DeployError.localCheck("\(source.path): cannot scan sources.\(source.name): \(error)")
                }
                do {
                    warnings += try SourceSecrets.check(source, root: source.path, manifest: scanned.manifest, fleet: fleet, cache: deploy.keyCheckCache)
                } catch let error as InventoryError {
                    throw DeployError.localCheck("\(error)")
                }
            }
        }
        deployments = try hosts.map { host in
            let deployment = Deployment(fleet: fleet, host: host, options: deploy)
            do { try deployment.checkLocally() } catch DeployError.localCheck(let text) {
                throw DeployError.localCheck("\(host.name): \(text)")
            }
            return deployment
        }
        if let first = deployments.first, !deploy.noSync { warnings += (try? first.check().renderedWarnings) ?? [] }
    }

    /// Runs the deploys (after `prepare`). `events` hears every host's start, events and outcome,
    /// from the hosts' threads (one at a time per host). Returns one outcome per host, in
    /// inventory order (`notStarted` for hosts the failure policy or an interrupt kept from
    /// starting).
    public func run(events: @escaping @Sendable (RunnerEvent<HostDeploy>) -> Void = { _ in }) -> [HostOutcome] {
        precondition(deployments.count == hosts.count, "prepare() first")
        let runner = HostRunner(jobs: options.jobs, stop: options.deploy.stop ?? options.deploy.cancel, stopAfterFailure: !options.keepGoing)
        let outcomes = runner.run(HostDeploy(deployments: deployments), hosts: deployments.count, events: events)
        return zip(hosts, outcomes).map { host, outcome in outcome ?? HostOutcome(host: host.name, state: .notStarted) }
    }

    /// One host's deploy, as the runner runs it.
    public struct HostDeploy: HostOperation {
        public let deployments: [Deployment]

        public func run(host index: Int, emit: @escaping @Sendable (DeployEvent) -> Void) -> HostOutcome {
            FleetDeployment.deploy(deployments[index], emit: emit)
        }

        public func failed(_ outcome: HostOutcome) -> Bool { ![.succeeded, .syncOnly, .unchanged].contains(outcome.state) }

        public func error(_ outcome: HostOutcome) -> (any Error)? { outcome.error }
    }

    static func deploy(_ deployment: Deployment, emit: @escaping @Sendable (DeployEvent) -> Void) -> HostOutcome {
        var o = outcome(host: deployment.host.name, id: deployment.id, operation: deployment.options.syncOnly ? "sync-only" : deployment.options.secretsOnly ? "secrets-only" : deployment.operation.rawValue,
                        logFile: deployment.logFile, emit: emit) { try deployment.run($0).result }
        o.confirms = deployment.confirm != nil
        return o
    }

    /// A host's outcome from its work (a deploy, a rollback): the phase it ended in, what it
    /// sent, and its result or error.
    static func outcome(host name: String, id: String, operation: String, logFile: String?, emit: @escaping @Sendable (DeployEvent) -> Void,
                        _ work: (@escaping (DeployEvent) -> Void) throws -> DeployResult) -> HostOutcome {
        var outcome = HostOutcome(host: name, state: .failed)
        outcome.logFile = logFile
        outcome.deployID = id
        outcome.operation = operation
        let start = Date()
        var phase: DeployPhase = .check
        do {
            let result = try work { event in
                switch event {
                case .phaseStarted(let p, _): phase = p
                case .sourceSynced(_, let r):
                    outcome.filesSent += r.plan.sends.count
                    outcome.bytesSent += r.plan.bytesToSend
                default: break
                }
                emit(event)
            }
            switch result {
            case .succeeded: outcome.state = .succeeded
            case .syncOnly, .secretsOnly: outcome.state = .syncOnly
            case .skipped:
                outcome.state = .unchanged
                outcome.cause = result.summary
            case .rebuildFailed(let status, let lines):
                outcome.state = .failed
                outcome.cause = (operation == DeployRecord.rollbackOperation ? "the rollback failed: " : "nixos-rebuild \(operation) failed: ") + status
                outcome.lastLines = lines
            case .unknown:
                outcome.state = .unknown
                outcome.cause = result.summary
            case .checksFailed:
                outcome.state = .failed
                outcome.cause = result.summary
            case .reverted(_, let lines):
                // A revert is a failed deploy: the host runs what it ran before.
                outcome.state = .failed
                outcome.cause = result.summary
                outcome.lastLines = lines
            }
        } catch SSHError.cancelled {
            let detached = phase == .rebuild || phase == .confirm
            outcome.state = detached ? .unknown : .interrupted
            outcome.cause = phase == .confirm ? "interrupted before the switch was confirmed: the host reverts at its deadline (ferry status \(name))"
                : detached ? "\(operation == DeployRecord.rollbackOperation ? "rollback" : "rebuild") continues (ferry status \(name))" : "interrupted"
            outcome.error = SSHError.cancelled
        } catch {
            outcome.state = .failed
            outcome.cause = "\(error)"
            outcome.error = error
        }
        outcome.phase = phase
        outcome.seconds = Date().timeIntervalSince(start)
        return outcome
    }
}
