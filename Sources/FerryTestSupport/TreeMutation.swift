import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Byte-path file operations (names need not be UTF-8).
public enum Bytes {
    public static func c<R>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) -> R) -> R {
        (path + [0]).withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) } }
    }
    public static func path(_ root: String, _ rel: [UInt8]) -> [UInt8] { Array(root.utf8) + [UInt8(ascii: "/")] + rel }

    public static func write(_ p: [UInt8], _ contents: [UInt8], mode: mode_t = 0o644) {
        let fd = c(p) { open($0, O_WRONLY | O_CREAT | O_TRUNC, mode) }
        guard fd >= 0 else { return }
        _ = contents.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    public static func removeTree(_ p: [UInt8]) {
        _ = c(p) { unlink($0) }
        if let dir = c(p, { opendir($0) }) {
            var names: [[UInt8]] = []
            while let ent = readdir(dir) {
                let n = withUnsafeBytes(of: ent.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
                if n != [46] && n != [46, 46] { names.append(n) }
            }
            closedir(dir)
            for n in names { removeTree(p + [47] + n) }
            _ = c(p) { rmdir($0) }
        }
    }

    public static func setMtime(_ p: [UInt8], seconds: Int, nanoseconds: Int) {
        var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
        _ = c(p) { utimensat(AT_FDCWD, $0, &times, AT_SYMLINK_NOFOLLOW) }
    }

    public static func stat(_ p: [UInt8]) -> Glibc.stat? {
        var st = Glibc.stat()
        return c(p, { lstat($0, &st) }) == 0 ? st : nil
    }
}

/// Random changes to a tree, one at a time, of every kind a sync must mirror: adds, rewrites,
/// same-size edits with the old mtime, deletions, chmod, type changes, renames, empty and
/// excluded directories, mtimes into the past, symlinks and FIFOs, hard names (not UTF-8, control
/// bytes, spaces).
public enum TreeMutation {
    /// Every entry below `root` (not the root), in byte order, without following symlinks.
    public static func walk(_ root: String) -> [(path: [UInt8], directory: Bool, file: Bool)] {
        var out: [(path: [UInt8], directory: Bool, file: Bool)] = []
        func visit(_ rel: [UInt8]) {
            let full = rel.isEmpty ? Array(root.utf8) : Bytes.path(root, rel)
            guard let dir = Bytes.c(full, { opendir($0) }) else { return }
            var names: [[UInt8]] = []
            while let ent = readdir(dir) {
                let n = withUnsafeBytes(of: ent.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
                if n != [46] && n != [46, 46] { names.append(n) }
            }
            closedir(dir)
            for n in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                let p = rel.isEmpty ? n : rel + [47] + n
                guard let st = Bytes.stat(Bytes.path(root, p)) else { continue }
                let type = st.st_mode & S_IFMT
                out.append((p, type == S_IFDIR, type == S_IFREG))
                if type == S_IFDIR { visit(p) }
            }
        }
        visit([])
        return out
    }

    /// One random change; returns what it did.
    public static func mutate(_ root: String, _ rng: inout FixtureRandom, allowSameSizeEdits: Bool) -> String {
        let entries = walk(root)
        let dirs = [[]] + entries.filter { $0.directory }.map(\.path)
        let files = entries.filter { $0.file }.map(\.path)
        let any = entries.map(\.path)
        func pick<T>(_ a: [T]) -> T? { a.isEmpty ? nil : a[rng.below(a.count)] }
        func newName() -> [UInt8] {
            rng.below(4) == 0 ? TreeFixture.hardNames[rng.below(TreeFixture.hardNames.count)] : Array("n\(rng.next() % 100000)".utf8)
        }
        func child(_ dir: [UInt8], _ name: [UInt8]) -> [UInt8] { dir.isEmpty ? name : dir + [47] + name }
        let full = { (p: [UInt8]) in Bytes.path(root, p) }

        switch rng.below(13) {
        case 0, 1:
            let p = child(pick(dirs)!, newName())
            Bytes.write(full(p), rng.bytes(rng.below(5000), text: false))
            return "add \(String(decoding: p, as: UTF8.self))"
        case 2:
            guard let f = pick(files) else { return "-" }
            Bytes.write(full(f), rng.bytes(rng.below(5000) + 1, text: true))
            return "rewrite \(String(decoding: f, as: UTF8.self))"
        case 3:
            guard allowSameSizeEdits, let f = pick(files), let st = Bytes.stat(full(f)), st.st_size > 0 else { return "-" }
            Bytes.write(full(f), rng.bytes(Int(st.st_size), text: false))
            Bytes.setMtime(full(f), seconds: st.st_mtim.tv_sec, nanoseconds: st.st_mtim.tv_nsec)
            return "same-size edit \(String(decoding: f, as: UTF8.self))"
        case 4:
            guard let p = pick(any) else { return "-" }
            Bytes.removeTree(full(p))
            return "delete \(String(decoding: p, as: UTF8.self))"
        case 5:
            guard let p = pick(files + dirs.filter { !$0.isEmpty }) else { return "-" }
            let mode: mode_t = [0o600, 0o755, 0o644, 0o700, 0o640, 0o750][rng.below(6)]
            _ = Bytes.c(full(p)) { chmod($0, mode) }
            return "chmod \(String(mode, radix: 8)) \(String(decoding: p, as: UTF8.self))"
        case 6:
            guard let f = pick(files) else { return "-" }
            Bytes.removeTree(full(f))
            _ = Bytes.c(full(f)) { mkdir($0, 0o755) }
            Bytes.write(full(child(f, Array("inside".utf8))), [1, 2])
            return "file→dir \(String(decoding: f, as: UTF8.self))"
        case 7:
            guard let d = pick(dirs.filter { !$0.isEmpty }) else { return "-" }
            Bytes.removeTree(full(d))
            if rng.below(2) == 0 {
                Bytes.write(full(d), [7])
                return "dir→file \(String(decoding: d, as: UTF8.self))"
            }
            _ = Bytes.c(full(d)) { p in Bytes.c(Array("f0".utf8)) { symlink($0, p) } }
            return "dir→symlink \(String(decoding: d, as: UTF8.self))"
        case 8:
            guard let f = pick(files) else { return "-" }
            let to = child(pick(dirs)!, newName())
            _ = Bytes.c(full(f)) { a in Bytes.c(full(to)) { rename(a, $0) } }
            return "rename \(String(decoding: f, as: UTF8.self)) → \(String(decoding: to, as: UTF8.self))"
        case 9:
            let p = child(pick(dirs)!, newName())
            _ = Bytes.c(full(p)) { mkdir($0, 0o755) }
            return "empty dir \(String(decoding: p, as: UTF8.self))"
        case 10:
            let d = pick(dirs)!
            let names: [[UInt8]] = [Array("__pycache__".utf8), Array("x.pyc".utf8), Array("data".utf8), Array(".env".utf8)]
            let p = child(d, names[rng.below(names.count)])
            if rng.below(2) == 0 { _ = Bytes.c(full(p)) { mkdir($0, 0o755) }; Bytes.write(full(child(p, Array("junk.pyc".utf8))), [1]) }
            else { Bytes.write(full(p), [3]) }
            return "excluded \(String(decoding: p, as: UTF8.self))"
        case 11:
            guard let p = pick(any) else { return "-" }
            Bytes.setMtime(full(p), seconds: 1_500_000_000 + rng.below(100_000_000), nanoseconds: rng.below(1_000_000_000))
            return "touch \(String(decoding: p, as: UTF8.self))"
        default:
            let p = child(pick(dirs)!, newName())
            if rng.below(2) == 0 {
                _ = Bytes.c(full(p)) { l in Bytes.c(Array("../target with space".utf8)) { symlink($0, l) } }
                return "symlink \(String(decoding: p, as: UTF8.self))"
            }
            _ = Bytes.c(full(p)) { mkfifo($0, 0o644) }
            return "fifo \(String(decoding: p, as: UTF8.self))"
        }
    }
}
