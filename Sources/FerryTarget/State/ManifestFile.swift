import Crypto
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

    package static let header = "ferry-manifest "

    /// `path`: where the file was read, for the error that names it.
    public static func decode(_ file: [UInt8], target: String, path: String = "the manifest") throws -> Manifest {
        var bytes = file[...]
        // Manifests written before the header have none; one that has it must match it.
        if bytes.starts(with: header.utf8) {
            guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
                throw SyncError.unreadableManifest(target: target, file: path, reason: "its header is cut short")
            }
            let named = String(decoding: bytes[bytes.startIndex..<newline].dropFirst(header.utf8.count), as: UTF8.self)
            bytes = bytes[(newline + 1)...]
            guard digest(bytes) == named else {
                throw SyncError.unreadableManifest(target: target, file: path, reason: "its records do not match the digest its header names (changed or cut short on the host)")
            }
        }
        let fields = bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast()
        guard fields.count % 7 == 0 else { throw SyncError.unreadableManifest(target: target, file: path, reason: "its last record is cut short") }
        var entries: [FileEntry] = []
        var i = fields.startIndex
        while i < fields.endIndex {
            let f = Array(fields[i..<(i + 7)])
            i += 7
            func text(_ s: ArraySlice<UInt8>) -> String { String(decoding: s, as: UTF8.self) }
            guard f[0].count == 1, let mode = UInt32(text(f[1]), radix: 8), let size = Int64(text(f[2])), let mtime = Timestamp(decimal: text(f[3])),
                  f[4].isEmpty ? entries.isEmpty : TargetState.Tree.isSafeRelativePath(f[4]) else {
                throw SyncError.unreadableManifest(target: target, file: path, reason: "a record is malformed")
            }
            let kind = FileEntry.Kind(findType: f[0].first)
            entries.append(FileEntry(path: Array(f[4]), kind: kind, mode: mode, size: size, mtime: mtime,
                                     linkTarget: kind == .symlink ? Array(f[5]) : nil, checksum: f[6].isEmpty ? nil : Array(f[6])))
        }
        return Manifest(entries)
    }

    /// "sha256:HEX" of what a build reads of a tree — every path, type, permission bits, size, link
    /// target and file SHA-256 — but no mtimes: Nix copies a `path:` tree by content, so a tree
    /// that differs only in mtimes (a fresh checkout, fleet.toml edited) builds the same.
    public static func contentDigest(_ manifest: Manifest) -> String {
        var hash = SHA256()
        for e in manifest.entries {
            hash.update(data: e.path + [0, e.kind.findType] + Array("\(e.mode & 0o7777) \(e.kind == .file ? e.size : 0)".utf8) + [0]
                        + (e.linkTarget ?? []) + [0] + (e.checksum ?? []) + [0x0A])
        }
        return "sha256:" + hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// "sha256:HEX" of the encoded manifest: the record's digest of a synced tree.
    public static func digest<Bytes: DataProtocol>(_ encoded: Bytes) -> String {
        "sha256:" + SHA256.hash(data: encoded).map { String(format: "%02x", $0) }.joined()
    }
}
