/// What it takes to make the destination equal the source, decided locally from two manifests,
/// with rsync -rlptD --delete's rules.
public struct SyncPlan {
    public struct Options: Sendable {
        public var excludes: ExcludeRules
        /// Also delete excluded paths on the target.
        public var deleteExcluded: Bool
        /// Compare contents (hashes) instead of size and mtime.
        public var checksum: Bool

        public init(excludes: ExcludeRules = ExcludeRules(), deleteExcluded: Bool = false, checksum: Bool = false) {
            self.excludes = excludes
            self.deleteExcluded = deleteExcluded
            self.checksum = checksum
        }
    }

    /// One line of `--itemize`, in rsync's terms.
    public struct Item: Equatable {
        public enum Change: Equatable {
            case created
            /// Flags from rsync's "cstp" columns (checksum, size, time, permissions).
            case updated(content: Bool, size: Bool, time: Bool, permissions: Bool, sent: Bool)
            case deleted
        }

        public var entry: FileEntry
        public var change: Change
    }

    /// Remote paths removed first (extraneous, or in the way of a different kind of entry);
    /// none is inside another.
    public internal(set) var deletions: [[UInt8]] = []
    /// Directories to create.
    public internal(set) var newDirectories: [[UInt8]] = []
    /// Files, symlinks and FIFOs written to staging and renamed into place.
    public internal(set) var sends: [FileEntry] = []
    /// Directories whose mode and mtime are (re)applied last.
    public internal(set) var directoryUpdates: [FileEntry] = []
    /// Everything that changes, in path order, for --itemize and --dry-run.
    public internal(set) var items: [Item] = []

    public var isEmpty: Bool { items.isEmpty && directoryUpdates.isEmpty && deletions.isEmpty }
    public var bytesToSend: Int64 { sends.reduce(0) { $0 + $1.size } }

    public init(source: Manifest, destination: Manifest, options: Options) {
        var touchedParents = Set<[UInt8]>()
        func parent(_ p: [UInt8]) -> [UInt8] {
            p.lastIndex(of: UInt8(ascii: "/")).map { Array(p[..<$0]) } ?? []
        }

        // Deletions: remote entries with no local counterpart, unless protected by an exclude.
        var deletedDirs: [[UInt8]] = []
        var deletedSet = Set<[UInt8]>()
        for path in destination.sortedPaths where !path.isEmpty {
            let remote = destination[path]!
            if let d = deletedDirs.last, path.starts(with: d + [UInt8(ascii: "/")]) {
                // Removed with its directory; listed like rsync lists it.
                items.append(Item(entry: remote, change: .deleted))
                continue
            }
            let local = source[path]
            let excluded = options.excludes.excludes(path, isDirectory: remote.kind == .directory)
            let typeChanged = local != nil && local!.kind != remote.kind
            if local == nil && excluded && !options.deleteExcluded { continue }
            guard local == nil || typeChanged else { continue }
            deletions.append(path)
            deletedSet.insert(path)
            touchedParents.insert(parent(path))
            if remote.kind == .directory { deletedDirs.append(path) }
            if !typeChanged { items.append(Item(entry: remote, change: .deleted)) }
        }

        for path in source.sortedPaths {
            let local = source[path]!
            var remote = destination[path]
            if deletedSet.contains(path) || deletedDirs.contains(where: { path.starts(with: $0 + [UInt8(ascii: "/")]) }) {
                remote = nil
            }
            guard let remote else {
                if local.kind == .directory {
                    if !path.isEmpty { newDirectories.append(path) }
                    directoryUpdates.append(local)
                } else {
                    sends.append(local)
                }
                if !path.isEmpty { touchedParents.insert(parent(path)) }
                items.append(Item(entry: local, change: .created))
                continue
            }
            let timeDiffers = local.mtime != remote.mtime
            let permsDiffer = local.mode != remote.mode && local.kind != .symlink
            switch local.kind {
            case .directory:
                if timeDiffers || permsDiffer {
                    directoryUpdates.append(local)
                    items.append(Item(entry: local, change: .updated(content: false, size: false, time: timeDiffers, permissions: permsDiffer, sent: false)))
                }
            case .file:
                let sizeDiffers = local.size != remote.size
                let contentDiffers = options.checksum ? (sizeDiffers || local.checksum != remote.checksum) : (sizeDiffers || timeDiffers)
                if contentDiffers || timeDiffers || permsDiffer {
                    sends.append(local)
                    touchedParents.insert(parent(path))
                    items.append(Item(entry: local, change: .updated(
                        content: options.checksum && contentDiffers, size: sizeDiffers, time: timeDiffers,
                        permissions: permsDiffer, sent: contentDiffers)))
                }
            case .symlink:
                let targetDiffers = local.linkTarget != remote.linkTarget
                if targetDiffers || timeDiffers {
                    sends.append(local)
                    touchedParents.insert(parent(path))
                    items.append(Item(entry: local, change: .updated(content: targetDiffers, size: false, time: timeDiffers, permissions: false, sent: false)))
                }
            case .fifo:
                if timeDiffers || permsDiffer {
                    sends.append(local)
                    touchedParents.insert(parent(path))
                    items.append(Item(entry: local, change: .updated(content: false, size: false, time: timeDiffers, permissions: permsDiffer, sent: false)))
                }
            }
        }

        // Directories whose contents change get their mtime back last.
        let updated = Set(directoryUpdates.map(\.path))
        for p in touchedParents where !updated.contains(p) {
            if let dir = source[p] { directoryUpdates.append(dir) }
        }
        directoryUpdates.sort { $0.path.lexicographicallyPrecedes($1.path) }
        items.sort { a, b in
            if a.change == .deleted && b.change != .deleted { return true }
            if a.change != .deleted && b.change == .deleted { return false }
            return a.entry.path.lexicographicallyPrecedes(b.entry.path)
        }
    }
}
