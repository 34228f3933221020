import Foundation

/// Where ferry keeps its state on a target: `ROOT/.ferry` (ROOT is `/var/src` for a deploy, the
/// folder above the destination for `ferry sync`). Every path under it is named here, the source
/// names it reserves follow from them, and every script that runs on the target is an extension
/// of this type (`Scripts/`), beside the typed request it is sent and the answer it gives.
public struct TargetState: Sendable {
    public let root: String

    public init(root: String = "/var/src") { self.root = root }

    /// The state of a sync into `destination`: `PARENT/.ferry/NAME`, beside it, never inside.
    public static func forDestination(_ destination: String) -> (state: TargetState, source: String) {
        let url = URL(fileURLWithPath: destination)
        return (TargetState(root: url.deletingLastPathComponent().path), url.lastPathComponent)
    }

    public static let folderName = ".ferry"
    public var directory: String { root + "/" + Self.folderName }
    /// `flock`ed by a deploy (and a sync into `ROOT/NAME`) for as long as it runs.
    public var lock: String { directory + "/lock" }
    /// The holder's `LockHolder` line and its deploy id.
    public var lockInfo: String { directory + "/lock-info" }
    /// The holder's pid (emptied when it ends).
    public var lockPid: String { directory + "/lock-pid" }
    /// Touched by the holder at every heartbeat; `heartbeat.N` are its watchdog's marks.
    public var heartbeat: String { directory + "/heartbeat" }
    /// One folder per deploy that rebuilt: job.sh, record-base.json, log, pid, status, its record
    /// once it ends, and `snapshots` (a "NAME HEX" line per source: the snapshot it synced).
    public var deploys: String { directory + "/deploys" }
    public func deploy(_ id: String) -> String { deploys + "/" + id }
    /// The last deploy that ran nixos-rebuild: its record (see `DeployRecord`).
    public var rebuildRecord: String { directory + "/" + Self.rebuildRecordName }
    /// The last `--sync-only` deploy: its record. Kept apart, so that it never hides what the last
    /// rebuild left (its system, the trees it built from).
    public var syncRecord: String { directory + "/" + Self.syncRecordName }
    /// Before records were kept apart: one JSON record for both (read, never written).
    public var legacyRecord: String { directory + "/last-deploy.json" }
    /// Per source (`ROOT/NAME`): the manifest of the tree the last deploy left; the sync's lock,
    /// listing sentinel (`sentinel`, `sentinel.clock`, `generation`: see `Tree.Request`), `synced`
    /// mark and staging folder.
    public func source(_ name: String) -> String { directory + "/" + name }
    public func manifest(_ source: String) -> String { self.source(source) + "/manifest" }

    /// Per source, the trees deploys synced, by manifest digest (`snapshots/NAME/HEX`): `tree` (hard
    /// links into the synced tree, a full copy for a destination on another filesystem) and the
    /// tree's `manifest`. A deploy whose tree did not change uses the snapshot it finds.
    public var snapshotsFolder: String { directory + "/snapshots" }
    public func snapshots(_ source: String) -> String { snapshotsFolder + "/" + source }
    public func snapshot(_ source: String, digest: String) -> String { snapshots(source) + "/" + Self.snapshotName(digest) }
    /// The folder name of a manifest digest ("sha256:HEX" → "HEX").
    public static func snapshotName(_ digest: String) -> String {
        digest.hasPrefix("sha256:") ? String(digest.dropFirst("sha256:".count)) : digest
    }

    package static let rebuildRecordName = "last-rebuild.record"
    static let syncRecordName = "last-sync.record"

    /// Kept free beside the sources' folders for what deploys will keep next: staged copies built
    /// before a switch. (`secrets`: see `Secrets`.)
    static let plannedNames = ["staged", "secrets"]

    /// Names under `.ferry` that a source's folder (`.ferry/NAME`) would collide with; their
    /// `.SUFFIX` forms too (`heartbeat.0`, `lock-info.tmp`).
    public static let reservedNames = ["deploys", "lock", "lock-info", "lock-pid", "heartbeat", "last-deploy.json",
                                       rebuildRecordName, syncRecordName, "snapshots"] + plannedNames
}
