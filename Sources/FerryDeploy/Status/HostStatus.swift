import FerrySSH
import FerrySync
import Foundation

/// What a host says about its deploys, read without taking its lock: the last record, who holds
/// the lock, whether a rebuild runs, the running system, and what changed in each synced tree
/// since (against the manifest the deploy left in `/var/src/.ferry/NAME/manifest`).
public struct HostStatus {
    public enum Lock: Equatable, Sendable {
        case free
        /// A deploy holds it (its holder process is alive), or a sync into `/var/src/NAME`.
        case held(LockHolder?)
        /// A detached rebuild holds it.
        case rebuildRunning(LockHolder?)
        /// Something that is not ferry's flocks it (no live holder is recorded).
        case heldByOther

        /// From `TargetState.lockQuery`'s word and the holder's line.
        init(word: String, info: [UInt8]) {
            var holder = try? JSONDecoder().decode(LockHolder.self, from: Data(info))
            switch word {
            case "running": holder?.rebuildRunning = true; self = .rebuildRunning(holder)
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

    public struct Drift: Equatable {
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
    public var lock: Lock
    /// `readlink /run/current-system` now.
    public var currentSystem: String
    public var drift: [Drift]

    /// The running system differs from the one the last rebuild recorded (a manual rebuild or a
    /// rollback since).
    public var systemChanged: Bool {
        guard let recorded = rebuild.record?.outcome?.currentSystem else { return false }
        return recorded != currentSystem
    }

    /// $1 root, $2… the record files. NUL-separated: current system, lock state, lock info, each
    /// record file (empty when there is none).
    static let script = #"""
    state=$1/.ferry
    shift
    printf '%s\0' "$(readlink /run/current-system 2>/dev/null)"
    \#(TargetState.lockQuery)
    lock_state
    printf '%s\0%s\0' "$held" "$info"
    for f in "$@"; do tr -d '\0' < "$f" 2>/dev/null; printf '\0'; done
    """#

    struct Basics {
        var rebuild: DeployRecord.Read
        var sync: DeployRecord.Read
        var lock: Lock
        var currentSystem: String
    }

    /// The records, the lock and the running system, in one command (no manifests, no drift).
    static func basics(shell: any RemoteShell, root: String) throws -> Basics {
        let state = TargetState(root: root)
        let files = [state.rebuildRecord, state.syncRecord, state.legacyRecord]
        let (status, out, err) = try shell.run(.script(script, arguments: ([root] + files).map { Array($0.utf8) }))
        guard status == .exited(0) else {
            throw DeployError.remote(target: shell.name, step: "reading the status", detail: "\(status): \(String(decoding: err, as: UTF8.self))")
        }
        let fields = out.split(separator: 0, omittingEmptySubsequences: false).map { Array($0) }
        guard fields.count >= 6 else { throw DeployError.remote(target: shell.name, step: "reading the status", detail: "a short answer") }
        let lock = Lock(word: String(decoding: fields[1], as: UTF8.self), info: fields[2])
        var rebuild = DeployRecord.read(fields[3], file: files[0]), sync = DeployRecord.read(fields[4], file: files[1])
        if rebuild == .none && sync == .none {
            // A host last deployed by a ferry that kept one record for both.
            let legacy = DeployRecord.read(fields[5], file: files[2])
            if legacy.record?.outcome?.result == .syncOnly { sync = legacy } else { rebuild = legacy }
        }
        return Basics(rebuild: rebuild, sync: sync, lock: lock, currentSystem: String(decoding: fields[0], as: UTF8.self))
    }

    /// Who holds the host's deploy lock, read without touching it.
    public static func lock(shell: any RemoteShell, root: String = "/var/src") throws -> Lock {
        try basics(shell: shell, root: root).lock
    }

    public static func read(fleet: Fleet, host: Fleet.Host, shell: any RemoteShell, root: String = "/var/src") throws -> HostStatus {
        let basics = try basics(shell: shell, root: root)
        let state = TargetState(root: root)

        var drift: [Drift] = []
        for source in fleet.sources {
            let destination = root + "/" + source.name
            let manifestPath = state.manifest(source.name)
            let (s, bytes, _) = try shell.run(RemoteCommand(["cat", manifestPath]))
            guard s == .exited(0) else { drift.append(Drift(source: source.name, recorded: false)); continue }
            let recorded = try ManifestFile.decode(bytes, target: shell.name)
            let current = try Syncer.listing(of: destination, over: shell) ?? Manifest()
            let changes = ManifestFile.drift(recorded: recorded, current: current, excludes: source.rendered ? ExcludeRules() : ExcludeRules(source.exclude))
            drift.append(Drift(source: source.name, recorded: true, added: changes.added, changed: changes.changed, removed: changes.removed))
        }
        return HostStatus(rebuild: basics.rebuild, sync: basics.sync, lock: basics.lock, currentSystem: basics.currentSystem, drift: drift)
    }

    /// The last deploy's rebuild output from its start, followed until the job ends (re-attaching
    /// after a deploy whose outcome was unknown); reconnects like a deploy. Nil: never deployed.
    public static func follow(shell: any RemoteShell, root: String = "/var/src", reconnectTimeout: Double, cancel: CancellationToken?,
                              reopen: @escaping () throws -> any RemoteShell, report: (DeployEvent) -> Void) throws -> (id: String, result: DeployResult)? {
        let basics = try basics(shell: shell, root: root)
        if case .unreadable(let file, let reason) = basics.rebuild {
            throw DeployError.remote(target: shell.name, step: "reading the last rebuild's record", detail: "\(file) is unreadable: \(reason)")
        }
        guard let record = basics.rebuild.record, !record.id.isEmpty, !record.id.contains("/"), record.id != ".." else { return nil }
        // A deploy holding the lock may be about to start its job; with the lock free, a job
        // without a pid never started.
        let follower = RebuildFollower(directory: TargetState(root: root).deploy(record.id), operation: record.operation, reconnectTimeout: reconnectTimeout,
                                       waitForStart: basics.lock != .free, stop: cancel, cancel: cancel, reopen: reopen)
        return (record.id, try follower.follow(first: shell, report: report))
    }

    /// $1 root, $2 "1" to force. Frees a lock whose holder is gone (clearing its notes); refuses
    /// (exit 75, the holder's info on stdout) while a deploy or rebuild holds it, unless forced:
    /// then the holder's process group is sent SIGTERM, and a rebuild stopped that way gets its
    /// outcome in its record ("stopped"), which its job, killed, never writes.
    static let unlockScript = #"""
    umask 077
    state=$1/.ferry force=$2 record=$1/.ferry/\#(TargetState.rebuildRecordName)
    [ -e "$state/lock" ] || { echo free; exit 0; }
    exec 9>>"$state/lock" || exit 1
    \#(TargetState.lockQuery)
    lock_state
    if [ "$held" = free ] && flock -n 9; then rm -f "$state/lock-pid"; echo free; exit 0; fi
    what=$held
    printf '%s %s\n' "$what" "$info"
    # Nothing of ferry's to stop: the holder is not known.
    [ "$what" != other ] || exit 76
    [ "$force" = 1 ] || exit 75
    if [ "$what" = running ]; then kill -TERM "-$jpid" 2>/dev/null || kill -TERM "$jpid"; fi
    [ -z "$hpid" ] || kill -TERM "-$hpid" 2>/dev/null || kill -TERM "$hpid" 2>/dev/null
    flock -w 10 9 || { echo "the lock is still held 10 s after SIGTERM to its holder" >&2; exit 1; }
    rm -f "$state/lock-pid"
    if [ "$what" = running ]; then
      base= outcome=
      { IFS= read -r base; IFS= read -r outcome; } 2>/dev/null < "$record"
      case $base in
        *"\"id\":\"$hid\""*)
          [ -n "$outcome" ] || { printf '%s\nfinished stopped - %s - -\n' "$base" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$record.tmp" &&
            mv -f "$record.tmp" "$record"; } ;;
      esac
    fi
    echo forced
    """#

    public enum UnlockResult: Equatable {
        case wasFree
        /// Forced: the holder (a deploy, or a running rebuild when `rebuild`) was sent SIGTERM.
        case forced(holder: LockHolder?, rebuild: Bool)
    }

    /// Frees the host's deploy lock. Throws `DeployError.lockHeld` naming the holder while a deploy
    /// or a rebuild holds it, unless `force`.
    public static func unlock(shell: any RemoteShell, root: String = "/var/src", force: Bool) throws -> UnlockResult {
        let (status, out, err) = try shell.run(.script(unlockScript, arguments: [root, force ? "1" : "0"].map { Array($0.utf8) }))
        let text = String(decoding: out, as: UTF8.self)
        let first = text.split(separator: "\n").first.map(String.init) ?? ""
        let parts = first.split(separator: " ", maxSplits: 1).map(String.init)
        let lock = Lock(word: parts.first ?? "", info: Array((parts.count == 2 ? parts[1] : "").utf8))
        let holder = lock.holder
        let rebuild = if case .rebuildRunning = lock { true } else { false }
        switch status {
        case .exited(0) where text.hasPrefix("free"): return .wasFree
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
