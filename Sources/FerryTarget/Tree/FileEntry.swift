/// One entry of a tree, local or remote. Paths are bytes: names need not be UTF-8.
public struct FileEntry: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case file, directory, symlink, fifo

        /// From `find -printf %y`'s letter: sockets and devices count as files (replaced or
        /// deleted like them).
        @inlinable package init(findType letter: UInt8?) {
            switch letter {
            case UInt8(ascii: "d"): self = .directory
            case UInt8(ascii: "l"): self = .symlink
            case UInt8(ascii: "p"): self = .fifo
            default: self = .file
            }
        }

        /// `find -printf %y`'s letter for this kind.
        @inlinable package var findType: UInt8 {
            switch self {
            case .file: return UInt8(ascii: "f")
            case .directory: return UInt8(ascii: "d")
            case .symlink: return UInt8(ascii: "l")
            case .fifo: return UInt8(ascii: "p")
            }
        }
    }

    /// Relative to the tree's root, without a leading "./"; "" is the root itself.
    public var path: [UInt8]
    public var kind: Kind
    /// Permission bits (07777).
    public var mode: UInt32
    public var size: Int64
    public var mtime: Timestamp
    public var linkTarget: [UInt8]?
    /// Content hash, when asked for (--checksum).
    public var checksum: [UInt8]?

    @inlinable public init(path: [UInt8], kind: Kind, mode: UInt32, size: Int64, mtime: Timestamp, linkTarget: [UInt8]? = nil, checksum: [UInt8]? = nil) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.size = size
        self.mtime = mtime
        self.linkTarget = linkTarget
        self.checksum = checksum
    }

    public var displayPath: String { String(decoding: path, as: UTF8.self) }
}

/// Seconds and nanoseconds since the epoch.
public struct Timestamp: Equatable, Comparable, Sendable, CustomStringConvertible {
    public var seconds: Int64
    public var nanoseconds: Int64

    @inlinable public init(seconds: Int64, nanoseconds: Int64) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Parses find's `%T@` ("1700000000.1234567890"), exactly (no floating point).
    public init?(decimal text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard let s = Int64(parts[0]) else { return nil }
        var ns: Int64 = 0
        if parts.count > 1 {
            let digits = parts[1].prefix(9)
            guard let n = Int64(digits.isEmpty ? "0" : String(digits)) else { return nil }
            ns = n * Int64(pow10(9 - digits.count))
        }
        seconds = s
        nanoseconds = ns
    }

    @inlinable public static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    /// "sec.nnnnnnnnn", as touch -d @… and pax mtime records read it (also before 1970).
    public var description: String {
        func pad(_ n: Int64) -> String { let s = String(n); return String(repeating: "0", count: 9 - s.count) + s }
        if seconds < 0 && nanoseconds > 0 { return "-\(-(seconds + 1)).\(pad(1_000_000_000 - nanoseconds))" }
        return "\(seconds).\(pad(nanoseconds))"
    }
}

private func pow10(_ n: Int) -> Int { (0..<n).reduce(1) { acc, _ in acc * 10 } }

/// The entries of one tree in tree order: every directory is followed directly by everything
/// inside it (paths compare component by component), so a subtree is one contiguous run.
public struct Manifest: Sendable {
    public private(set) var entries: [FileEntry]

    public init(_ list: [FileEntry] = []) {
        entries = list.sorted { Manifest.treeOrder($0.path, $1.path) }
    }

    /// Entries already in tree order, without duplicates (a merge's or the listing cache's output).
    package init(sorted list: [FileEntry]) {
        entries = list
    }

    /// Byte order with "/" lowest, which keeps each directory's contents together.
    @inlinable public static func treeOrder(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        let n = min(a.count, b.count)
        var i = 0
        while i < n {
            let x = a[i], y = b[i]
            if x != y {
                if x == UInt8(ascii: "/") { return true }
                if y == UInt8(ascii: "/") { return false }
                return x < y
            }
            i += 1
        }
        return a.count < b.count
    }

    @inlinable package func index(of path: [UInt8]) -> Int? {
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Manifest.treeOrder(entries[mid].path, path) { lo = mid + 1 } else { hi = mid }
        }
        return lo < entries.count && entries[lo].path == path ? lo : nil
    }

    @inlinable public subscript(path: [UInt8]) -> FileEntry? { index(of: path).map { entries[$0] } }

    /// Whether `path` lies below the directory `dir` (not `dir` itself, not a sibling like "dir2").
    @inlinable package static func isInside(_ path: [UInt8], _ dir: [UInt8]) -> Bool {
        path.count > dir.count && path[dir.count] == UInt8(ascii: "/") && path.starts(with: dir)
    }

    package mutating func setChecksum(_ hash: [UInt8], at path: [UInt8]) {
        if let i = index(of: path) { entries[i].checksum = hash }
    }

    @inlinable public var count: Int { entries.count }
}

extension Manifest {
    /// This tree with a target's changed entries applied (see `TargetState.Tree.syncScript`): each
    /// entry replaces its path (the last record of a path wins), and a listed directory's subtree
    /// is exactly what the changes hold below it, since the target lists every such subtree whole.
    package func applying(changes: [FileEntry]) -> Manifest {
        guard !changes.isEmpty else { return self }
        // In tree order, the last record of each path only.
        let order = changes.indices.sorted { a, b in
            Manifest.treeOrder(changes[a].path, changes[b].path) || (changes[a].path == changes[b].path && a < b)
        }
        var added: [FileEntry] = []
        added.reserveCapacity(changes.count)
        for (n, i) in order.enumerated() where n + 1 == order.count || changes[order[n + 1]].path != changes[i].path {
            added.append(changes[i])
        }
        if added[0].path.isEmpty && added[0].kind == .directory { return Manifest(sorted: added) }
        // One walk over both, in tree order. A listed path replaces the old entry; a directory's old
        // contents give way to its listed subtree, and a path that is no directory now has none.
        var merged: [FileEntry] = []
        merged.reserveCapacity(entries.count + added.count)
        var skipped: [UInt8]?
        var j = 0
        for e in entries {
            while j < added.count && Manifest.treeOrder(added[j].path, e.path) { merged.append(added[j]); j += 1 }
            if j < added.count && added[j].path == e.path {
                let within = skipped.map { Manifest.isInside(e.path, $0) } ?? false
                if !within && (e.kind == .directory || added[j].kind == .directory) { skipped = e.path }
                merged.append(added[j])
                j += 1
                continue
            }
            if let s = skipped, Manifest.isInside(e.path, s) { continue }
            merged.append(e)
        }
        merged += added[j...]
        return Manifest(sorted: merged)
    }
}
