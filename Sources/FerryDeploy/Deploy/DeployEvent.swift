import FerrySSH
import FerrySync
import FerryTarget

/// The steps of a deploy, in order; a rollback's `restore` takes the place of `sync` (the
/// snapshot it returns to is checked, and the restore planned; the job restores).
public enum DeployPhase: String, Sendable, CaseIterable {
    case check, connect, lock, sync, restore, rebuild
    /// The switch is activated; the host waits for proof that a fresh login works (ferry gives it).
    case confirm
    /// The health checks, after the activation (`ferry check` runs them alone).
    case health
    /// The host's secrets: compared (before the sync), written (before or after the activation).
    case secrets
}

/// What a deploy reports as it goes; the CLI renders these (library code never prints).
public enum DeployEvent: Sendable {
    case phaseStarted(DeployPhase, detail: String)
    case phaseFinished(DeployPhase, seconds: Double, detail: String)
    /// The lock is held by another deploy (nil: by a process that is not ferry's); this one
    /// waits (or refuses, after this event).
    case lockBusy(LockHolder?, waiting: Int)
    case sourceSynced(name: String, result: Syncer.Result)
    /// One line of the rebuild's output, raw (Nix prints ANSI sequences), without its newline.
    case output([UInt8])
    case warning(String)
    /// The link dropped while following the rebuild; ferry reconnects.
    case reconnecting(reason: String)
    /// A health check passed or failed (every try is over).
    case checked(DeployRecord.CheckResult)
    /// A secret compared, or written.
    case secret(SecretReport)
    /// The rebuild's inputs compared with the last rebuild's (`--skip-unchanged`).
    case compared(InputComparison)
}

/// How a deploy ended when it did not throw.
public enum DeployResult: Equatable, Sendable {
    case succeeded
    case syncOnly
    /// The rebuild exited non-zero (or was killed); `lastLines` are its output's end.
    case rebuildFailed(status: String, lastLines: [String])
    /// Contact was lost during the rebuild and not regained within the reconnect timeout.
    case unknown(operation: String)
    /// The job undid the switch (the system before it runs again, the sources are back).
    case reverted(reason: DeployRecord.Outcome.RevertReason, lastLines: [String])
    /// The rebuild succeeded and the system stays, but a health check failed (`revert_on_check_failure` off).
    case checksFailed([DeployRecord.CheckResult])
    /// `--secrets-only`: the changed secrets written and their units restarted; nothing rebuilt.
    case secretsOnly
    /// Nothing the rebuild reads changed since deploy `base`: it did not run.
    case skipped(base: String)

    public var summary: String {
        switch self {
        case .succeeded: return "succeeded"
        case .syncOnly: return "synced, no rebuild"
        case .rebuildFailed(let status, _): return "failed: \(status)"
        case .unknown(let op): return "unknown: lost contact during \(op); the rebuild may still be running"
        case .reverted(let reason, _): return "reverted: \(reason.text)"
        case .checksFailed(let failed): return HealthChecks.failureSummary(failed)
        case .secretsOnly: return "secrets written, no rebuild"
        case .skipped(let base): return "unchanged: rebuild skipped (same inputs as deploy \(base))"
        }
    }
}

public enum DeployError: Error, Sendable, CustomStringConvertible {
    /// Before any connection: the inventory, a source or the render (exit 2).
    case localCheck(String)
    case local(String)
    case lockHeld(target: String, holder: LockHolder?, waited: Int)
    case lockLost(target: String, detail: String)
    case remote(target: String, step: String, detail: String)

    public var description: String {
        switch self {
        case .localCheck(let text), .local(let text): return text
        case .lockHeld(let target, let holder, let waited):
            let who = holder.map { "\($0)" } ?? LockHolder.notFerrys
            return "\(target): the deploy lock is held by \(who)" + (waited > 0 ? "; gave up after \(waited) s" : "; wait for it with --lock-timeout SECONDS")
        case .lockLost(let target, let detail):
            return "\(target): lost the deploy lock before the rebuild started: \(detail)"
        case .remote(let target, let step, let detail):
            return "\(target): \(step): \(detail)"
        }
    }
}
