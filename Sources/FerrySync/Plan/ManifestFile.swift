import Crypto
import FerrySSH
import Foundation

/// What a sync left on the target, kept as `/var/src/.ferry/NAME/manifest`: one record per entry —
/// type (find's `%y` letter, as in the target's listings), mode, size, mtime, path, link target and a file's SHA-256 — NUL-separated like the
/// target's own listings (paths are bytes and may hold newlines). `ferry status` compares a host's
/// tree with it to name what changed there since.
public enum ManifestFile {
    public static func encode(_ manifest: Manifest) -> [UInt8] {
        var out: [UInt8] = []
        for e in manifest.entries {
            for field in [[e.kind.findType], Array(String(e.mode, radix: 8).utf8), Array(String(e.size).utf8), Array(e.mtime.description.utf8),
                          e.path, e.linkTarget ?? [], e.checksum ?? []] {
                out += field + [0]
            }
        }
        return out
    }

    /// The file as written on the target: a first line naming the digest of the records (so the
    /// lock holder can tell a deploy what is there without hashing), then the records.
    public static func withHeader(_ encoded: [UInt8], digest: String) -> [UInt8] {
        Array("\(header)\(digest)\n".utf8) + encoded
    }

    static let header = "ferry-manifest "

    public static func decode(_ file: [UInt8], target: String) throws -> Manifest {
        var bytes = file[...]
        // Manifests written before the header have none.
        if bytes.starts(with: header.utf8), let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) { bytes = bytes[(newline + 1)...] }
        let fields = bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast()
        guard fields.count % 7 == 0 else { throw SyncError.badRemoteListing(target: target, reason: "a manifest with a truncated record") }
        var entries: [FileEntry] = []
        var i = fields.startIndex
        while i < fields.endIndex {
            let f = Array(fields[i..<(i + 7)])
            i += 7
            func text(_ s: ArraySlice<UInt8>) -> String { String(decoding: s, as: UTF8.self) }
            guard f[0].count == 1, let mode = UInt32(text(f[1]), radix: 8), let size = Int64(text(f[2])), let mtime = Timestamp(decimal: text(f[3])),
                  f[4].isEmpty ? entries.isEmpty : RemoteTree.isSafeRelativePath(f[4]) else {
                throw SyncError.badRemoteListing(target: target, reason: "a malformed manifest record")
            }
            let kind = FileEntry.Kind(findType: f[0].first)
            entries.append(FileEntry(path: Array(f[4]), kind: kind, mode: mode, size: size, mtime: mtime,
                                     linkTarget: kind == .symlink ? Array(f[5]) : nil, checksum: f[6].isEmpty ? nil : Array(f[6])))
        }
        return Manifest(entries)
    }

    /// `manifest` with the SHA-256 of every regular file under `root` (read here, on all cores;
    /// files a `--checksum` sync hashed already are not read again).
    public static func withChecksums(_ manifest: Manifest, root: String, generated: [[UInt8]: [UInt8]] = [:]) throws -> Manifest {
        var m = manifest
        let files = manifest.entries.filter { $0.kind == .file && $0.checksum == nil }.map(\.path)
        for (path, hash) in zip(files, try Syncer.sha256(files, root: root, generated: generated)) { if let hash { m.setChecksum(hash, at: path) } }
        return m
    }

    /// "sha256:HEX" of the encoded manifest: the record's digest of a synced tree.
    public static func digest(_ encoded: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: encoded).map { String(format: "%02x", $0) }.joined()
    }

    /// Small files as a tar archive, for writing several on the target with one command.
    public static func archive(_ files: [(path: String, contents: [UInt8])]) -> [UInt8] {
        let now = Timestamp(seconds: Int64(Date().timeIntervalSince1970), nanoseconds: 0)
        return files.flatMap { file in
            TarHeader(name: Array(file.path.utf8), type: .file, mode: 0o600, size: Int64(file.contents.count), mtime: now).withContents(file.contents)
        } + [UInt8](repeating: 0, count: 1024)
    }

    /// What changed on the target since `recorded`, by path: content, type, mode or link target
    /// (mtimes alone are not drift: a path: flake's hash does not see them). `excludes`: paths the
    /// sync leaves alone on the target.
    public static func drift(recorded: Manifest, current: Manifest, excludes: ExcludeRules) -> (added: [[UInt8]], changed: [[UInt8]], removed: [[UInt8]]) {
        func excluded(_ e: FileEntry) -> Bool {
            var prefix: [UInt8] = []
            let parts = e.path.split(separator: UInt8(ascii: "/"))
            for (n, part) in parts.enumerated() {
                prefix += (prefix.isEmpty ? [] : [UInt8(ascii: "/")]) + part
                if excludes.excludes(prefix, isDirectory: n < parts.count - 1 || e.kind == .directory) { return true }
            }
            return false
        }
        var added: [[UInt8]] = [], changed: [[UInt8]] = [], removed: [[UInt8]] = []
        for e in current.entries where !e.path.isEmpty && !excluded(e) {
            guard let r = recorded[e.path] else { added.append(e.path); continue }
            if r.kind != e.kind || r.mode != e.mode || r.linkTarget != e.linkTarget
                || (e.kind == .file && (r.size != e.size || (r.checksum != nil && e.checksum != nil && r.checksum != e.checksum))) {
                changed.append(e.path)
            }
        }
        for r in recorded.entries where !r.path.isEmpty && current[r.path] == nil { removed.append(r.path) }
        return (added, changed, removed)
    }
}

extension Syncer {
    /// The destination as it is now, with every file's SHA-256 — read-only, no lock.
    public static func listing(of destination: String, over shell: any RemoteShell, cancel: CancellationToken? = nil) throws -> Manifest? {
        let state = stateDirectory(for: destination)
        var out: [UInt8] = []
        var err: [UInt8] = []
        let status = try shell.exec(.script(RemoteTree.syncScript, arguments: [destination, state, "1", "list"].map { Array($0.utf8) }),
                                    stdin: nil, cancel: cancel, stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) })
        guard status == .exited(0) else {
            throw SyncError.remote(target: shell.name, step: "listing \(destination)", status: "\(status)", stderr: String(decoding: err, as: UTF8.self))
        }
        let listing = try RemoteTree.parse(out, target: shell.name)
        return listing.exists ? listing.manifest : nil
    }
}
