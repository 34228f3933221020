import FerrySync
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
    /// enough to be a key (read on every core: a 40,000-file tree is 40,000 opens), and every name.
    public static func inspect(root: String, manifest: Manifest, allow: [String]) -> Findings {
        var findings = Findings()
        var candidates: [String] = []
        for entry in manifest.entries where entry.kind == .file || entry.kind == .symlink {
            let path = entry.displayPath
            let name = entry.path.split(separator: UInt8(ascii: "/")).last.map { String(decoding: $0, as: UTF8.self) } ?? path
            if isEnvFile(name) { findings.envFiles.append(path) }
            if entry.kind == .file, (smallestKey...largestKey).contains(entry.size), !allow.contains(path) { candidates.append(path) }
        }
        let chunks = stride(from: 0, to: candidates.count, by: 256).map { candidates[$0..<min($0 + 256, candidates.count)] }
        let found = Mutex([[String]](repeating: [], count: chunks.count))
        DispatchQueue.concurrentPerform(iterations: chunks.count) { i in
            var head = [UInt8](repeating: 0, count: 512)
            var keys: [String] = []
            for path in chunks[i] {
                let fd = open(root + "/" + path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else { continue }
                let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                close(fd)
                if n > 0 && isPrivateKey(head[0..<n]) { keys.append(path) }
            }
            found.withLock { $0[i] = keys }
        }
        findings.privateKeys = found.withLock { $0.flatMap { $0 } }
        return findings
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
    static func check(_ source: Fleet.Source, root: String, manifest: Manifest, fleet: Fleet) throws -> [String] {
        let found = inspect(root: root, manifest: manifest, allow: source.allow)
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
