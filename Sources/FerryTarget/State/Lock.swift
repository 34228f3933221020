import Foundation

/// Who holds a host's deploy lock, as the holder wrote it in `/var/src/.ferry/lock-info`.
public struct LockHolder: Codable, Equatable, Sendable, CustomStringConvertible {
    public var id: String
    /// user@machine of the operator who runs ferry.
    public var operator_: String
    /// ferry's pid on the operator's machine.
    public var pid: Int32
    public var since: String
    /// What holds it: "deploy" (also when absent, as older records are), "rollback" or "sync"
    /// (`ferry sync` into `/var/src/NAME`).
    public var command: String?
    /// Set from the target's answer: the holder's rebuild job is alive (kill -0).
    public var rebuildRunning = false
    /// Set from the target's answer: the job has activated and waits for a fresh login's proof.
    public var waitingForConfirmation = false

    enum CodingKeys: String, CodingKey { case id, operator_ = "operator", pid, since, command }

    public init(id: String, operator_: String, pid: Int32, since: String, command: String? = nil) {
        self.id = id
        self.operator_ = operator_
        self.pid = pid
        self.since = since
        self.command = command
    }

    /// Who holds the lock when no live holder is recorded.
    public static let notFerrys = "a process that is not ferry's (no live holder is recorded)"

    public var description: String {
        "\(command ?? "deploy") \(id) by \(operator_) (ferry pid \(pid)) since \(since)"
            + (waitingForConfirmation ? ", waiting for confirmation"
               : rebuildRunning ? (command == DeployRecord.rollbackOperation ? ", rollback running" : ", rebuild running") : "")
    }
}

/// Who holds a host's deploy lock: `TargetState.lockQuery`'s answer, read by deploy, status and unlock alike.
public enum LockState: Equatable, Sendable {
    case free
    /// A deploy holds it (its holder process is alive), or a sync into `/var/src/NAME`.
    case held(LockHolder?)
    /// A detached rebuild holds it.
    case rebuildRunning(LockHolder?)
    /// Something that is not ferry's flocks it (no live holder is recorded).
    case heldByOther

    /// From `TargetState.lockQuery`'s word and the holder's line.
    package init(word: String, info: [UInt8]) {
        var holder = try? JSONDecoder().decode(LockHolder.self, from: Data(info))
        switch word {
        case "running": holder?.rebuildRunning = true; self = .rebuildRunning(holder)
        case "confirming": holder?.rebuildRunning = true; holder?.waitingForConfirmation = true; self = .rebuildRunning(holder)
        case "held": self = .held(holder)
        case "other": self = .heldByOther
        default: self = .free
        }
    }

    /// Who holds it, when ferry recorded a live holder.
    public var holder: LockHolder? {
        switch self {
        case .held(let who), .rebuildRunning(let who): return who
        case .free, .heldByOther: return nil
        }
    }
}

extension TargetState {
    /// Who holds the deploy lock — one answer for deploy, status and unlock alike. A shell
    /// function (`$state` the state folder) that sets `held`: `free`; `running` (a deploy's
    /// detached rebuild holds it); `held` (a live holder: a deploy, or a sync into ROOT/NAME);
    /// `other` (something that is not ferry's flocks it) — and `info`, `hid`, `hpid`, `jpid`: the
    /// holder's line and deploy id (lock-info), its pid, its job's pid; `confirming` is `running`
    /// while the job waits for proof of a fresh login. It changes nothing, but
    /// `flock -n` holds a free lock for an instant (the deploy's holder allows for that).
    package static let lockQuery = #"""
    lock_state() {
      held=free info= hid= hpid= jpid=
      [ -e "$state/lock" ] || return 0
      flock -n "$state/lock" true 2>/dev/null && return 0
      held=other
      { IFS= read -r info; IFS= read -r hid; } 2>/dev/null < "$state/lock-info"
      IFS= read -r hpid 2>/dev/null < "$state/lock-pid"
      [ -z "$hid" ] || IFS= read -r jpid 2>/dev/null < "$state/deploys/$hid/pid"
      if [ -n "$hid" ] && [ -n "$jpid" ] && [ ! -e "$state/deploys/$hid/status" ] && kill -0 "$jpid" 2>/dev/null; then
        held=running
        # Activated, and waiting for a fresh login's proof (confirm-or-revert).
        [ ! -e "$state/deploys/$hid/deadline" ] || [ -e "$state/deploys/$hid/settled" ] || held=confirming
      elif [ -n "$hpid" ] && kill -0 "$hpid" 2>/dev/null; then
        held=held
      else
        info= hid=
      fi
      return 0
    }

    """#
}
