import Crypto
import FerrySSH
import FerryTarget
import Foundation

extension ManifestFile {
    /// `manifest` with the SHA-256 of every regular file under `root` (read here, on all cores;
    /// files a `--checksum` sync hashed already are not read again).
    public static func withChecksums(_ manifest: Manifest, root: String, generated: [[UInt8]: [UInt8]] = [:]) throws -> Manifest {
        var m = manifest
        let files = manifest.entries.filter { $0.kind == .file && $0.checksum == nil }.map(\.path)
        for (path, hash) in zip(files, try Syncer.sha256(files, root: root, generated: generated)) { if let hash { m.setChecksum(hash, at: path) } }
        return m
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
        var out: [UInt8] = []
        var err: [UInt8] = []
        let status = try shell.exec(TargetState.Tree.Request(destination: destination, mode: .list, checksum: true).command,
                                    stdin: nil, cancel: cancel, stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) })
        guard status == .exited(0) else {
            throw SyncError.remote(target: shell.name, step: "listing \(destination)", status: "\(status)", stderr: String(decoding: err, as: UTF8.self))
        }
        let listing = try TargetState.Tree.parse(out, target: shell.name)
        return listing.exists ? listing.manifest : nil
    }
}
