import FerrySSH
import FerryTarget
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Scans a local tree with lstat (symlinks are never followed, except a root given as a
/// symlink to a directory, as rsync follows `src/`), skipping excluded paths and the insides
/// of excluded directories. Top-level directories are scanned in parallel. A file that
/// vanishes while the tree is scanned is left out with a warning, as rsync does.
public struct LocalScanner: Sendable {
    public let root: String
    public let excludes: ExcludeRules

    /// The manifest and what was left out of it.
    public struct Scanned: Sendable {
        public var manifest: Manifest
        /// Device files and sockets (rsync -D would copy devices; ferry does not).
        public var skipped: [String] = []
        /// Entries gone between the directory listing and their lstat.
        public var vanished: [String] = []
        /// Paths longer than PATH_MAX.
        public var tooLong: [String] = []

        public init(manifest: Manifest) { self.manifest = manifest }
    }

    public init(root: String, excludes: ExcludeRules) {
        self.root = root
        self.excludes = excludes
    }

    public mutating func scan() throws -> Manifest { try scanAll().manifest }

    public func scanAll() throws -> Scanned {
        let rootBytes = Array(root.utf8)
        var st = Glibc.stat()
        guard statFollowingLinks(root, &st) == 0 else {
            throw SyncError.localRead(path: root, reason: String(cString: strerror(errno)))
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw SyncError.localRead(path: root, reason: "not a directory") }
        var top = Scanned(manifest: Manifest())
        var entries = [LocalScanner.entry(st, relative: [], target: nil, kind: .directory)]
        var topDirectories: [[UInt8]] = []
        try walk(rootBytes, relative: [], into: &entries, subdirectories: &topDirectories, notes: &top, descend: false)

        struct Collected: Sendable {
            var entries: [FileEntry]
            var top: Scanned
            var failure: (any Error)?
        }
        let shared = Mutex(Collected(entries: entries, top: top, failure: nil))
        let roots = topDirectories
        DispatchQueue.concurrentPerform(iterations: roots.count) { i in
            var local: [FileEntry] = []
            var notes = Scanned(manifest: Manifest())
            var unused: [[UInt8]] = []
            var failed: (any Error)?
            do {
                try walk(rootBytes + [UInt8(ascii: "/")] + roots[i], relative: roots[i], into: &local,
                         subdirectories: &unused, notes: &notes, descend: true)
            } catch {
                failed = error
            }
            shared.withLock { c in
                if let failed { c.failure = failed }
                c.entries += local
                c.top.skipped += notes.skipped
                c.top.vanished += notes.vanished
                c.top.tooLong += notes.tooLong
            }
        }
        let collected = shared.withLock { $0 }
        if let failure = collected.failure { throw failure }
        entries = collected.entries
        top = collected.top
        top.manifest = Manifest(entries)
        top.skipped.sort()
        top.vanished.sort()
        top.tooLong.sort()
        return top
    }

    private func walk(_ dir: [UInt8], relative: [UInt8], into entries: inout [FileEntry],
                      subdirectories: inout [[UInt8]], notes: inout Scanned, descend: Bool) throws {
        guard let handle = dir.withCString({ opendir($0) }) else {
            if errno == ENOENT && !relative.isEmpty { notes.vanished.append(String(decoding: relative, as: UTF8.self)); return }
            throw SyncError.localRead(path: String(decoding: dir, as: UTF8.self), reason: String(cString: strerror(errno)))
        }
        defer { closedir(handle) }
        var children: [([UInt8], UInt8)] = []
        while let ent = readdir(handle) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            children.append((name, ent.pointee.d_type))
        }
        let dirFD = dirfd(handle)
        for (name, type) in children {
            let rel = relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name
            let full = dir + [UInt8(ascii: "/")] + name
            // Excluded entries are never looked at (the type from readdir is enough to decide).
            if type != UInt8(DT_UNKNOWN), excludes.matches(rel, isDirectory: type == UInt8(DT_DIR)) { continue }
            if full.count >= Int(PATH_MAX) {
                notes.tooLong.append(String(decoding: rel, as: UTF8.self))
                continue
            }
            let entry: FileEntry?
            do {
                entry = try LocalScanner.stat(full, relative: rel, in: dirFD, name: name)
            } catch SyncError.localRead(_, _) where errno == ENOENT {
                notes.vanished.append(String(decoding: rel, as: UTF8.self))
                continue
            }
            guard let entry else {
                notes.skipped.append(String(decoding: rel, as: UTF8.self))
                continue
            }
            if type == UInt8(DT_UNKNOWN), excludes.matches(rel, isDirectory: entry.kind == .directory) { continue }
            entries.append(entry)
            if entry.kind == .directory {
                if descend {
                    try walk(full, relative: rel, into: &entries, subdirectories: &subdirectories, notes: &notes, descend: true)
                } else {
                    subdirectories.append(rel)
                }
            }
        }
    }

    /// lstat one path (relative to an open directory when given, which saves the kernel the
    /// walk down the whole path); nil for device files and sockets.
    static func stat(_ path: [UInt8], relative: [UInt8], in directory: Int32? = nil, name: [UInt8] = []) throws -> FileEntry? {
        var st = Glibc.stat()
        let rc = directory.map { fd in name.withCString { fstatat(fd, $0, &st, AT_SYMLINK_NOFOLLOW) } } ?? path.withCString { lstat($0, &st) }
        guard rc == 0 else {
            throw SyncError.localRead(path: String(decoding: path, as: UTF8.self), reason: String(cString: strerror(errno)))
        }
        let kind: FileEntry.Kind
        var target: [UInt8]?
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .directory
        case S_IFIFO: kind = .fifo
        case S_IFLNK:
            kind = .symlink
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = path.withCString { p in buffer.withUnsafeMutableBufferPointer { readlink(p, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count - 1) } }
            guard n >= 0 else {
                throw SyncError.localRead(path: String(decoding: path, as: UTF8.self), reason: String(cString: strerror(errno)))
            }
            target = Array(buffer[0..<n])
        default:
            return nil
        }
        return entry(st, relative: relative, target: target, kind: kind)
    }

    static func entry(_ st: Glibc.stat, relative: [UInt8], target: [UInt8]?, kind: FileEntry.Kind) -> FileEntry {
        FileEntry(path: relative, kind: kind, mode: UInt32(st.st_mode & 0o7777),
                  size: kind == .file ? Int64(st.st_size) : 0,
                  mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int64(st.st_mtim.tv_nsec)),
                  linkTarget: target)
    }
}

/// stat(2), which follows symlinks (the scanner's own `stat` does not).
private func statFollowingLinks(_ path: String, _ st: inout Glibc.stat) -> Int32 { stat(path, &st) }

extension Array where Element == UInt8 {
    func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try (self + [0]).withUnsafeBufferPointer { buf in
            try buf.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }
}
