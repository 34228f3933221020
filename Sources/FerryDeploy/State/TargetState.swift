/// Where ferry keeps its state on a target: `ROOT/.ferry` (ROOT is `/var/src`). Every path under
/// it is named here, and the source names it reserves follow from them.
public struct TargetState: Sendable {
    public let root: String

    public init(root: String = "/var/src") { self.root = root }

    public var directory: String { root + "/.ferry" }
    /// `flock`ed by a deploy (and a sync into `ROOT/NAME`) for as long as it runs.
    public var lock: String { directory + "/lock" }
    /// The holder's `LockHolder` line and its deploy id.
    public var lockInfo: String { directory + "/lock-info" }
    /// The holder's pid (emptied when it ends).
    public var lockPid: String { directory + "/lock-pid" }
    /// Touched by the holder at every heartbeat; `heartbeat.N` are its watchdog's marks.
    public var heartbeat: String { directory + "/heartbeat" }
    /// One folder per deploy that rebuilt: job.sh, record-base.json, log, pid, status.
    public var deploys: String { directory + "/deploys" }
    public func deploy(_ id: String) -> String { deploys + "/" + id }
    /// The last deploy that ran nixos-rebuild: its record (see `DeployRecord`).
    public var rebuildRecord: String { directory + "/" + Self.rebuildRecordName }
    /// The last `--sync-only` deploy: its record. Kept apart, so that it never hides what the last
    /// rebuild left (its system, the trees it built from).
    public var syncRecord: String { directory + "/" + Self.syncRecordName }
    /// Before records were kept apart: one JSON record for both (read, never written).
    public var legacyRecord: String { directory + "/last-deploy.json" }
    /// Per source: the manifest of the tree the last deploy left, its sync's lock and stage.
    public func source(_ name: String) -> String { directory + "/" + name }
    public func manifest(_ source: String) -> String { self.source(source) + "/manifest" }

    static let rebuildRecordName = "last-rebuild.record"
    static let syncRecordName = "last-sync.record"

    /// Names under `.ferry` that a source's folder (`.ferry/NAME`) would collide with; their
    /// `.SUFFIX` forms too (`heartbeat.0`, `lock-info.tmp`).
    public static let reservedNames = ["deploys", "lock", "lock-info", "lock-pid", "heartbeat", "last-deploy.json",
                                       rebuildRecordName, syncRecordName]
}

extension TargetState {
    /// Who holds the deploy lock — one answer for deploy, status and unlock alike. A shell
    /// function (`$state` the state folder) that sets `held`: `free`; `running` (a deploy's
    /// detached rebuild holds it); `held` (a live holder: a deploy, or a sync into ROOT/NAME);
    /// `other` (something that is not ferry's flocks it) — and `info`, `hid`, `hpid`, `jpid`: the
    /// holder's line and deploy id (lock-info), its pid, its job's pid. It changes nothing, but
    /// `flock -n` holds a free lock for an instant (the deploy's holder allows for that).
    static let lockQuery = #"""
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
      elif [ -n "$hpid" ] && kill -0 "$hpid" 2>/dev/null; then
        held=held
      else
        info= hid=
      fi
      return 0
    }

    """#
}
