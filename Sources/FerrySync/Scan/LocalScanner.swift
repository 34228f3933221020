import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum SyncError: Error, Equatable, CustomStringConvertible {
    case localRead(path: String, reason: String)
    case remote(target: String, step: String, status: String, stderr: String)
    case badRemoteListing(target: String, reason: String)
    case refusingUnknownDestination(target: String, path: String)
    case badDestination(String)

    public var description: String {
        switch self {
        case .localRead(let path, let reason): return "cannot read \(path): \(reason)"
        case .remote(let target, let step, let status, let stderr):
            return "\(target): \(step) failed (\(status))\(stderr.isEmpty ? "" : ": " + stderr.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .badRemoteListing(let target, let reason): return "\(target): unexpected listing from the target: \(reason)"
        case .refusingUnknownDestination(let target, let path):
            return "\(target): \(path) is not empty and was never synced by ferry; refusing to replace its contents. Check the path, then run again with --force to take it over."
        case .badDestination(let reason): return reason
        }
    }
}

/// Scans a local tree with lstat (symlinks are never followed), skipping excluded paths and
/// the insides of excluded directories. Top-level directories are scanned in parallel.
public struct LocalScanner {
    public let root: String
    public let excludes: ExcludeRules
    /// Device files and sockets, which are skipped (rsync -D would copy devices; ferry does not).
    public private(set) var skipped: [String] = []

    public init(root: String, excludes: ExcludeRules) {
        self.root = root
        self.excludes = excludes
    }

    public mutating func scan() throws -> Manifest {
        let rootBytes = Array(root.utf8)
        guard let rootEntry = try LocalScanner.stat(rootBytes, relative: []), rootEntry.kind == .directory else {
            throw SyncError.localRead(path: root, reason: "not a directory")
        }
        var entries = [rootEntry]
        var topDirectories: [[UInt8]] = []
        var skipped: [String] = []
        try walk(rootBytes, relative: [], into: &entries, subdirectories: &topDirectories, skipped: &skipped, descend: false)

        let lock = NSLock()
        var failure: Error?
        let roots = topDirectories
        DispatchQueue.concurrentPerform(iterations: roots.count) { i in
            var local: [FileEntry] = []
            var localSkipped: [String] = []
            var unused: [[UInt8]] = []
            do {
                try walk(rootBytes + [UInt8(ascii: "/")] + roots[i], relative: roots[i], into: &local,
                         subdirectories: &unused, skipped: &localSkipped, descend: true)
            } catch {
                lock.lock(); failure = error; lock.unlock()
            }
            lock.lock()
            entries += local
            skipped += localSkipped
            lock.unlock()
        }
        if let failure { throw failure }
        self.skipped = skipped.sorted()
        return Manifest(entries)
    }

    private func walk(_ dir: [UInt8], relative: [UInt8], into entries: inout [FileEntry],
                      subdirectories: inout [[UInt8]], skipped: inout [String], descend: Bool) throws {
        guard let handle = dir.withCString({ opendir($0) }) else {
            throw SyncError.localRead(path: String(decoding: dir, as: UTF8.self), reason: String(cString: strerror(errno)))
        }
        defer { closedir(handle) }
        var children: [[UInt8]] = []
        while let ent = readdir(handle) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            children.append(name)
        }
        let dirFD = dirfd(handle)
        for name in children {
            let rel = relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name
            let full = dir + [UInt8(ascii: "/")] + name
            guard let entry = try LocalScanner.stat(full, relative: rel, in: dirFD, name: name) else {
                skipped.append(String(decoding: rel, as: UTF8.self))
                continue
            }
            if excludes.matches(rel, isDirectory: entry.kind == .directory) { continue }
            entries.append(entry)
            if entry.kind == .directory {
                if descend {
                    try walk(full, relative: rel, into: &entries, subdirectories: &subdirectories, skipped: &skipped, descend: true)
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
        return FileEntry(path: relative, kind: kind, mode: UInt32(st.st_mode & 0o7777),
                         size: kind == .file ? Int64(st.st_size) : 0,
                         mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int64(st.st_mtim.tv_nsec)),
                         linkTarget: target)
    }
}

extension Array where Element == UInt8 {
    func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try (self + [0]).withUnsafeBufferPointer { buf in
            try buf.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }
}
