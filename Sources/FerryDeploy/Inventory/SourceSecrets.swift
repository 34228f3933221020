import FerrySync
import FerryTarget
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a source must not carry to its hosts unnoticed. A `path:` flake copies the whole tree
/// into the world-readable Nix store, and every host of the fleet receives it: a private key
/// there is a leak (an inventory error unless the source lists it in `allow`), a `.env` one
/// worth a warning.
public enum SourceSecrets {
    public struct Findings: Equatable, Sendable {
        /// Relative paths of regular files whose content is a private key, not allowed.
        public var privateKeys: [String] = []
        /// Relative paths of `.env` and `.env.*` files (not `*.example`, `*.sample`).
        public var envFiles: [String] = []
    }

    /// Files outside these sizes are not keys (an ed25519 PKCS#8 PEM is 119 bytes, an RSA
    /// 16384-bit PEM ≈ 12 kB).
    static let smallestKey: Int64 = 100
    static let largestKey: Int64 = 64 * 1024

    /// Looks at every file of `manifest` under `root`: the first bytes of each regular file small
    /// enough to be a key (read on every core: a 40,000-file tree is 40,000 opens) that `cache`
    /// does not know as read before with the same size and mtime, and every name.
    public static func inspect(root: String, manifest: Manifest, allow: [String], cache: Cache? = nil) -> Findings {
        var findings = Findings()
        let known = cache?.load(root: root) ?? []
        var current = Set<UInt64>()
        var candidates: [(path: String, key: UInt64)] = []
        for entry in manifest.entries where entry.kind == .file || entry.kind == .symlink {
            let path = entry.displayPath
            let name = entry.path.split(separator: UInt8(ascii: "/")).last.map { String(decoding: $0, as: UTF8.self) } ?? path
            if isEnvFile(name) { findings.envFiles.append(path) }
            guard entry.kind == .file, (smallestKey...largestKey).contains(entry.size), !allow.contains(path) else { continue }
            let key = Cache.key(entry)
            current.insert(key)
            if !known.contains(key) { candidates.append((path, key)) }
        }
        let chunks = stride(from: 0, to: candidates.count, by: 256).map { candidates[$0..<min($0 + 256, candidates.count)] }
        let found = Mutex([[(path: String, key: UInt64)]](repeating: [], count: chunks.count))
        DispatchQueue.concurrentPerform(iterations: chunks.count) { i in
            var head = [UInt8](repeating: 0, count: 512)
            var keys: [(path: String, key: UInt64)] = []
            for candidate in chunks[i] {
                let fd = open(root + "/" + candidate.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else { continue }
                let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                close(fd)
                if n > 0 && isPrivateKey(head[0..<n]) { keys.append(candidate) }
            }
            found.withLock { $0[i] = keys }
        }
        let keys = found.withLock { $0.flatMap { $0 } }
        findings.privateKeys = keys.map(\.path)
        // What is known clean now: the files seen, less the keys (a file that could not be
        // opened counts as read: it cannot be sent either).
        let clean = current.subtracting(keys.map(\.key))
        if clean != known { cache?.store(clean, root: root) }
        return findings
    }

    /// Files read before and found to be no key, by path, size and mtime (as rsync's quick check
    /// tells a changed file): a deploy or diff reads only what changed since. One file per source
    /// folder; only ever a shortcut — an unreadable or missing file means reading everything.
    public struct Cache: Sendable {
        public let directory: String

        public init(directory: String) { self.directory = directory }

        static let magic = Array("ferry-key-check 1\n".utf8)

        /// FNV-1a: stable from run to run (Swift's Hasher is not).
        static func fnv1a(_ h: inout UInt64, _ bytes: some Sequence<UInt8>) {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        static let fnvOffset: UInt64 = 0xcbf2_9ce4_8422_2325

        /// The path, size and mtime.
        static func key(_ entry: FileEntry) -> UInt64 {
            var h = fnvOffset
            fnv1a(&h, entry.path)
            fnv1a(&h, [0])
            for value in [entry.size, entry.mtime.seconds, entry.mtime.nanoseconds] { withUnsafeBytes(of: value.littleEndian) { fnv1a(&h, $0) } }
            return h
        }

        func file(root: String) -> String {
            var h = Self.fnvOffset
            Self.fnv1a(&h, root.utf8)
            return directory + "/" + String(h, radix: 16)
        }

        func load(root: String) -> Set<UInt64> {
            guard let data = FileManager.default.contents(atPath: file(root: root)), data.count >= Self.magic.count,
                  Array(data.prefix(Self.magic.count)) == Self.magic, (data.count - Self.magic.count) % 8 == 0 else { return [] }
            let body = data.dropFirst(Self.magic.count)
            var set = Set<UInt64>(minimumCapacity: body.count / 8)
            body.withUnsafeBytes { raw in
                for i in stride(from: 0, to: raw.count, by: 8) { set.insert(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))) }
            }
            return set
        }

        /// Best effort, written whole under a temporary name and renamed.
        func store(_ set: Set<UInt64>, root: String) {
            guard (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)) != nil else { return }
            var bytes = Self.magic
            bytes.reserveCapacity(Self.magic.count + set.count * 8)
            for key in set { withUnsafeBytes(of: key.littleEndian) { bytes += $0 } }
            let path = file(root: root), temporary = path + ".\(getpid()).tmp"
            guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)), rename(temporary, path) == 0 else {
                unlink(temporary)
                return
            }
        }
    }

    /// `.env`, `.env.production`…, but not the templates projects ship (`.env.example`).
    public static func isEnvFile(_ name: String) -> Bool {
        (name == ".env" || name.hasPrefix(".env.")) && !name.hasSuffix(".example") && !name.hasSuffix(".sample")
    }

    /// A file that starts (after blank space) with a PEM private-key armour line (PKCS#1, PKCS#8,
    /// encrypted PKCS#8, OpenSSH, EC, DSA) or a PuTTY key's header. Certificates, public keys
    /// and sops/age ciphertext do not.
    public static func isPrivateKey(_ bytes: ArraySlice<UInt8>) -> Bool {
        var rest = bytes
        if rest.starts(with: [0xEF, 0xBB, 0xBF]) { rest = rest.dropFirst(3) }
        rest = rest.drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        if rest.starts(with: Array("PuTTY-User-Key-File-".utf8)) { return true }
        guard rest.starts(with: Array("-----BEGIN ".utf8)) else { return false }
        var line = rest.prefix { $0 != 0x0A }
        while let last = line.last, last == 0x0D || last == 0x20 || last == 0x09 { line = line.dropLast() }
        return line.count <= 80 && line.reversed().starts(with: Array("PRIVATE KEY-----".utf8).reversed())
    }
}

extension SourceSecrets {
    /// `inspect` for one source of `fleet`: throws an `InventoryError` naming every private key;
    /// returns a warning for each `.env` file.
    static func check(_ source: Fleet.Source, root: String, manifest: Manifest, fleet: Fleet, cache: Cache? = nil) throws -> [String] {
        let found = inspect(root: root, manifest: manifest, allow: source.allow, cache: cache)
        if !found.privateKeys.isEmpty {
            let files = found.privateKeys.map { "\(root)/\($0)" }.joined(separator: ", ")
            throw InventoryError(file: fleet.file, key: "sources.\(source.name)", problem: "\(files): "
                + (found.privateKeys.count == 1 ? "a private key" : "private keys")
                + " that every host would receive (and a path: flake copies the tree into the world-readable Nix store); "
                + "exclude it, move it out of the source, or list it in sources.\(source.name).allow (\(found.privateKeys.map { "\"\($0)\"" }.joined(separator: ", ")))")
        }
        return found.envFiles.map {
            "\(fleet.file): sources.\(source.name): \(root)/\($0) would be pushed; a path: flake copies the whole tree into the world-readable Nix store. Add it to exclude."
        }
    }
}
