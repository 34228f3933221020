import FerrySSH
import FerryTarget
import Foundation

/// The secrets that go after the activation (their owner does not exist before it, or fleet.toml
/// says `upload = "after"`): written on a thread of their own when the job asks — it waits for
/// them, then restarts their units — or, after an operation that activates nothing, once the job
/// has ended. Unchecked Sendable: its state is guarded by `condition`.
final class AfterActivation: @unchecked Sendable {
    let secrets: [Fleet.Secret]
    let store: SecretStore
    private let condition = NSCondition()
    private var running = false
    private var done = false
    private var reports: [SecretReport] = []
    private var failure: (any Error)?

    init(secrets: [Fleet.Secret], store: SecretStore) {
        self.secrets = secrets
        self.store = store
    }

    var started: Bool {
        condition.lock()
        defer { condition.unlock() }
        return running
    }

    /// Writes the changed ones over `session`; with `id`, then tells that deploy's job which
    /// units to restart (always, so that it never waits in vain).
    func start(session: any RemoteShell, state: TargetState, id: String?) {
        condition.lock()
        guard !running else { return condition.unlock() }
        running = true
        condition.unlock()
        let (secrets, store) = (self.secrets, self.store)
        Thread {
            var reports: [SecretReport] = []
            var failure: (any Error)?
            do {
                let now = try HostSecrets.read(secrets, host: session.name, session: session, state: state, store: store)
                for item in now.items {
                    guard item.found.ownerExists, item.found.group != nil else {
                        throw DeployError.remote(target: session.name, step: "secrets.\(item.secret.name)",
                                                 detail: "its owner \(item.secret.owner) or group does not exist on the host after the activation either; it was not written")
                    }
                    reports.append(try HostSecrets.write(item, session: session, state: state, store: store, when: .after))
                }
            } catch {
                failure = error
            }
            if let id {
                let units = reports.flatMap(\.restarts)
                if case .some((let status, _, let err)) = try? session.run(TargetState.Job.secretsWritten(state, id: id, units: units)), status != .exited(0), failure == nil {
                    failure = DeployError.remote(target: session.name, step: "telling the job which units to restart", detail: "\(status): \(String(decoding: err, as: UTF8.self))")
                }
            }
            self.condition.lock()
            (self.reports, self.failure, self.done) = (reports, failure, true)
            self.condition.broadcast()
            self.condition.unlock()
        }.start()
    }

    /// Waits for the writing to end: what was written, and the first error.
    func finish() -> ([SecretReport], (any Error)?) {
        condition.lock()
        defer { condition.unlock() }
        guard running else { return ([], nil) }
        while !done { condition.wait() }
        return (reports, failure)
    }
}

extension Deployment {
    /// `--secrets-only`: every changed secret written now (its owner must exist), then its units
    /// restarted, once each; nothing synced or rebuilt, no record.
    func writeSecretsOnly(_ secrets: HostSecrets, session: any RemoteShell, lock: DeployLock, released: inout Bool, start: Date,
                          report: (DeployEvent) -> Void) throws -> Outcome {
        let state = TargetState(root: options.root)
        var units: [String] = []
        for item in secrets.items where item.change != .unchanged {
            guard item.found.ownerExists, item.found.group != nil else {
                throw DeployError.remote(target: session.name, step: "secrets.\(item.secret.name)",
                                         detail: "its owner \(item.secret.owner) or group does not exist on the host; a deploy creates it (--secrets-only activates nothing)")
            }
            let written = try HostSecrets.write(item, session: session, state: state, store: options.secrets, when: .now)
            report(.secret(written))
            for unit in written.restarts where !units.contains(unit) { units.append(unit) }
        }
        if !units.isEmpty { try Self.runChecked(session, TargetState.Secrets.restart(units), step: "restarting \(units.joined(separator: ", "))") }
        report(.phaseFinished(.secrets, seconds: Date().timeIntervalSince(start), detail: units.isEmpty ? "written" : "written; restarted \(units.joined(separator: ", "))"))
        lock.release()
        released = true
        let record = DeployRecord(id: id, host: host.name, startedAt: DeployRecord.timestamp(start), operator_: Self.operatorName,
                                  ferryVersion: options.ferryVersion, operation: "secrets-only", sources: [:])
        return Outcome(id: id, result: .secretsOnly, record: record)
    }
}
