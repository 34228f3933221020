import FerryTarget
/// What it takes to make the destination equal the source, decided locally from two manifests,
/// with rsync -rlptD --delete's rules.
public struct SyncPlan: Sendable {
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
    public struct Item: Equatable, Sendable {
        public enum Change: Equatable, Sendable {
            case created
            /// Flags from rsync's "cstp" columns (checksum, size, time, permissions).
            case updated(content: Bool, size: Bool, time: Bool, permissions: Bool, sent: Bool)
            case deleted
        }

        public var entry: FileEntry
        public var change: Change

        public init(entry: FileEntry, change: Change) {
            self.entry = entry
            self.change = change
        }
    }

    /// Remote paths removed first (extraneous, or in the way of a different kind of entry);
    /// none is inside another.
    public internal(set) var deletions: [[UInt8]] = []
    /// Directories to create.
    public internal(set) var newDirectories: [[UInt8]] = []
    /// Files, symlinks and FIFOs written to staging and renamed into place.
    public internal(set) var sends: [FileEntry] = []
    /// Files whose contents are already right on the target: only their mode and mtime are set.
    public internal(set) var metadataOnly: [FileEntry] = []
    /// Directories whose mode and mtime are (re)applied last.
    public internal(set) var directoryUpdates: [FileEntry] = []
    /// Everything that changes, in path order, for --itemize and --dry-run.
    public internal(set) var items: [Item] = []
    /// Remote directories that are gone from the source but stay, because they hold excluded
    /// entries that are not deleted without --delete-excluded (rsync: "cannot delete non-empty directory").
    public internal(set) var keptDirectories: [[UInt8]] = []
    /// Source entries that cannot be created, because a remote directory kept for its excluded
    /// entries is in the way (rsync: "could not make way for new …").
    public internal(set) var blocked: [[UInt8]] = []

    /// Paths inside a subtree to be deleted that stay: entries the rules exclude (with
    /// everything below them) and every directory above them.
    static func protected(in subtree: ArraySlice<FileEntry>, excludes: ExcludeRules) -> Set<[UInt8]> {
        guard !excludes.isEmpty else { return [] }
        var kept = Set<[UInt8]>()
        var protectedRoot: [UInt8]?
        for e in subtree.dropFirst() {
            if let p = protectedRoot, Manifest.isInside(e.path, p) {
                kept.insert(e.path)
                continue
            }
            protectedRoot = nil
            guard excludes.matches(e.path, isDirectory: e.kind == .directory) else { continue }
            protectedRoot = e.path
            var p = e.path
            kept.insert(p)
            while let slash = p.lastIndex(of: UInt8(ascii: "/")) {
                p = Array(p[..<slash])
                if !kept.insert(p).inserted { break }
            }
        }
        return kept
    }

    public var isEmpty: Bool { items.isEmpty && directoryUpdates.isEmpty && deletions.isEmpty }
    public var bytesToSend: Int64 { sends.reduce(0) { $0 + $1.size } }

    /// Files sent only because their mtime (or mode) differs, with the same size: candidates for
    /// a content check instead of a transfer.
    public func sameSizeSends(comparedWith destination: Manifest) -> [FileEntry] {
        sends.filter { e in
            guard e.kind == .file, let r = destination[e.path], r.kind == .file else { return false }
            return r.size == e.size
        }
    }

    /// Turns sends whose contents are known to match into metadata-only updates.
    mutating func markUnchangedContents(_ paths: Set<[UInt8]>) {
        guard !paths.isEmpty else { return }
        metadataOnly += sends.filter { paths.contains($0.path) }
        sends.removeAll { paths.contains($0.path) }
    }

    public init(source: Manifest, destination: Manifest, options: Options) {
        var touchedParents = Set<[UInt8]>()
        func parent(_ p: [UInt8]) -> [UInt8] {
            p.lastIndex(of: UInt8(ascii: "/")).map { Array(p[..<$0]) } ?? []
        }
        var deletedItems: [Item] = []
        var changedItems: [Item] = []

        // Both manifests are in tree order: walk them together.
        let local = source.entries, remote = destination.entries
        var i = 0, j = 0
        while i < local.count || j < remote.count {
            let l: FileEntry?, r: FileEntry?
            if j == remote.count || (i < local.count && Manifest.treeOrder(local[i].path, remote[j].path)) {
                l = local[i]; r = nil; i += 1
            } else if i == local.count || Manifest.treeOrder(remote[j].path, local[i].path) {
                l = nil; r = remote[j]; j += 1
            } else {
                l = local[i]; r = remote[j]; i += 1; j += 1
            }
            let path = (l ?? r)!.path

            var target = r
            if let r, !path.isEmpty, l == nil || l!.kind != r.kind {
                let excluded = l == nil && options.excludes.excludes(path, isDirectory: r.kind == .directory)
                if !(excluded && !options.deleteExcluded) {
                    target = nil
                    touchedParents.insert(parent(path))
                    if r.kind != .directory {
                        deletions.append(path)
                        if l == nil { deletedItems.append(Item(entry: r, change: .deleted)) }
                    } else {
                        // The whole remote subtree goes, except excluded entries (without
                        // --delete-excluded) and the directories that hold them, as rsync leaves them.
                        var end = j
                        while end < remote.count && Manifest.isInside(remote[end].path, path) { end += 1 }
                        let subtree = remote[(j - 1)..<end]
                        j = end
                        let kept = options.deleteExcluded ? [] : SyncPlan.protected(in: subtree, excludes: options.excludes)
                        if kept.isEmpty {
                            deletions.append(path)
                            deletedItems += subtree.filter { l == nil || $0.path != path }.map { Item(entry: $0, change: .deleted) }
                        } else {
                            for e in subtree.dropFirst() where !kept.contains(e.path) {
                                deletedItems.append(Item(entry: e, change: .deleted))
                                if kept.contains(parent(e.path)) { deletions.append(e.path) }
                            }
                            keptDirectories += subtree.filter { $0.kind == .directory && kept.contains($0.path) && !options.excludes.matches($0.path, isDirectory: true) }.map(\.path)
                            if let l {
                                blocked.append(l.path)
                                continue
                            }
                        }
                    }
                }
            }
            guard let l else { continue }

            guard let remote = target else {
                if l.kind == .directory {
                    if !path.isEmpty { newDirectories.append(path) }
                    directoryUpdates.append(l)
                } else {
                    sends.append(l)
                }
                if !path.isEmpty { touchedParents.insert(parent(path)) }
                changedItems.append(Item(entry: l, change: .created))
                continue
            }
            let timeDiffers = l.mtime != remote.mtime
            let permsDiffer = l.mode != remote.mode && l.kind != .symlink
            switch l.kind {
            case .directory:
                if timeDiffers || permsDiffer {
                    directoryUpdates.append(l)
                    changedItems.append(Item(entry: l, change: .updated(content: false, size: false, time: timeDiffers, permissions: permsDiffer, sent: false)))
                }
            case .file:
                let sizeDiffers = l.size != remote.size
                let contentDiffers = options.checksum ? (sizeDiffers || l.checksum != remote.checksum) : (sizeDiffers || timeDiffers)
                if contentDiffers || timeDiffers || permsDiffer {
                    sends.append(l)
                    touchedParents.insert(parent(path))
                    changedItems.append(Item(entry: l, change: .updated(
                        content: options.checksum && contentDiffers, size: sizeDiffers, time: timeDiffers,
                        permissions: permsDiffer, sent: contentDiffers)))
                }
            case .symlink:
                let targetDiffers = l.linkTarget != remote.linkTarget
                if targetDiffers || timeDiffers {
                    sends.append(l)
                    touchedParents.insert(parent(path))
                    changedItems.append(Item(entry: l, change: .updated(content: targetDiffers, size: false, time: timeDiffers, permissions: false, sent: false)))
                }
            case .fifo:
                if timeDiffers || permsDiffer {
                    sends.append(l)
                    touchedParents.insert(parent(path))
                    changedItems.append(Item(entry: l, change: .updated(content: false, size: false, time: timeDiffers, permissions: permsDiffer, sent: false)))
                }
            }
        }

        // Directories whose contents change get their mode and mtime back last.
        let updated = Set(directoryUpdates.map(\.path))
        for p in touchedParents where !updated.contains(p) {
            if let dir = source[p] { directoryUpdates.append(dir) }
        }
        directoryUpdates.sort { Manifest.treeOrder($0.path, $1.path) }
        items = deletedItems + changedItems
    }
}
