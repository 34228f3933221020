import Crypto
import FerryTarget
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What ferry last saw in each destination, kept on this machine so the next listing asks the
/// target only for what changed since (see `TargetState.Tree.syncScript`). One file per target and
/// destination, named by a hash of both; it holds the generation the target committed with it.
/// The cache is only ever a shortcut: any mismatch or unreadable file means a full listing.
public struct ListingCache: Sendable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// A cache file whose generation was sent but whose contents turned out malformed: the sync
    /// starts again with a full listing.
    struct Unusable: Error {}

    /// A cache file whose generation is known at once and whose manifest is decoded on another
    /// thread (nil when the file turns out malformed).
    final class Pending: Sendable {
        let generation: String
        private let decoded = Mutex<Manifest??>(nil)
        private let group = DispatchGroup()

        init(generation: String, bytes: [UInt8]) {
            self.generation = generation
            DispatchQueue.global().async(group: group) { [self] in
                let manifest = ListingCache.decode(bytes)?.manifest
                decoded.withLock { $0 = .some(manifest) }
            }
        }

        func manifest() -> Manifest? {
            group.wait()
            return decoded.withLock { $0 ?? nil }
        }
    }

    func path(target: String, destination: String) -> String {
        let key = SHA256.hash(data: Array((target + "\u{0}" + destination).utf8)).prefix(16).map { String(format: "%02x", $0) }.joined()
        return directory + "/" + key
    }

    func open(target: String, destination: String) -> Pending? {
        guard let data = FileManager.default.contents(atPath: path(target: target, destination: destination)) else { return nil }
        let bytes = [UInt8](data)
        guard let generation = Self.generation(bytes) else { return nil }
        return Pending(generation: generation, bytes: bytes)
    }

    /// Best effort: a cache that cannot be written only costs the next run a full listing.
    func store(_ manifest: Manifest, generation: String, target: String, destination: String) {
        let file = path(target: target, destination: destination)
        let temporary = file + ".\(getpid()).tmp"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
            // Written in pieces: a whole copy of a large tree's cache would raise the peak RSS.
            var failed = false
            Self.encode(manifest, generation: generation) { chunk in
                var written = 0
                while !failed && written < chunk.count {
                    let n = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { failed = true }
                    written += max(n, 0)
                }
            }
            guard close(fd) == 0, !failed, rename(temporary, file) == 0 else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            unlink(temporary)
            remove(target: target, destination: destination)
        }
    }

    func remove(target: String, destination: String) {
        unlink(path(target: target, destination: destination))
    }

    /// A fresh generation id: 128 random bits, hex.
    static func newGeneration() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<2).map { _ in String(rng.next() as UInt64, radix: 16) }.map { String(repeating: "0", count: 16 - $0.count) + $0 }.joined()
    }

    private static let magic = Array("ferry-listing 2\n".utf8)

    /// magic, generation, "\n", then per entry: kind, mode, size, seconds, nanoseconds, path
    /// length, path, link length, link, hash length, the target's SHA-256 (hex) of a file when it
    /// was asked for (integers little-endian, 8 bytes, -1 for none; kind 1 byte).
    package static func encode(_ manifest: Manifest, generation: String) -> [UInt8] {
        var all: [UInt8] = []
        encode(manifest, generation: generation) { all += $0 }
        return all
    }

    static func encode(_ manifest: Manifest, generation: String, into write: ([UInt8]) -> Void) {
        var out = magic + Array(generation.utf8) + [0x0A]
        out.reserveCapacity(1 << 16)
        func int(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        for e in manifest.entries {
            out.append(e.kind.findType)
            int(Int64(e.mode)); int(e.size); int(e.mtime.seconds); int(e.mtime.nanoseconds)
            int(Int64(e.path.count)); out += e.path
            int(Int64(e.linkTarget?.count ?? -1)); out += e.linkTarget ?? []
            int(Int64(e.checksum?.count ?? -1)); out += e.checksum ?? []
            if out.count >= 1 << 16 {
                write(out)
                out.removeAll(keepingCapacity: true)
            }
        }
        write(out)
    }

    static func generation(_ bytes: [UInt8]) -> String? {
        guard bytes.starts(with: magic), let newline = bytes[magic.count...].firstIndex(of: 0x0A) else { return nil }
        let generation = String(decoding: bytes[magic.count..<newline], as: UTF8.self)
        guard !generation.isEmpty, generation.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        return generation
    }

    /// nil for anything but a well-formed cache file in tree order.
    package static func decode(_ bytes: [UInt8]) -> (generation: String, manifest: Manifest)? {
        guard let generation = generation(bytes) else { return nil }
        var position = magic.count + generation.utf8.count + 1
        func int() -> Int64? {
            guard bytes.count - position >= 8 else { return nil }
            defer { position += 8 }
            return bytes.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: Int64.self)) }
        }
        func slice(_ n: Int64) -> [UInt8]? {
            guard n >= 0, n <= bytes.count - position else { return nil }
            defer { position += Int(n) }
            return Array(bytes[position..<(position + Int(n))])
        }
        var entries: [FileEntry] = []
        while position < bytes.count {
            let letter = bytes[position]
            position += 1
            guard [UInt8(ascii: "f"), UInt8(ascii: "d"), UInt8(ascii: "l"), UInt8(ascii: "p")].contains(letter),
                  let mode = int(), (0...0o7777).contains(mode), let size = int(), size >= 0, let seconds = int(), let ns = int(),
                  (0..<1_000_000_000).contains(ns), let pathLength = int(), let path = slice(pathLength), let linkLength = int() else { return nil }
            let kind = FileEntry.Kind(findType: letter)
            var link: [UInt8]?
            if linkLength >= 0 {
                guard kind == .symlink, let l = slice(linkLength) else { return nil }
                link = l
            } else if kind == .symlink {
                return nil
            }
            guard let hashLength = int() else { return nil }
            var hash: [UInt8]?
            if hashLength >= 0 {
                guard kind == .file, let h = slice(hashLength), TargetState.Tree.isHexHash(h[...]) else { return nil }
                hash = h
            }
            guard entries.isEmpty ? path.isEmpty && kind == .directory : TargetState.Tree.isSafeRelativePath(path[...]) && Manifest.treeOrder(entries[entries.count - 1].path, path) else { return nil }
            entries.append(FileEntry(path: path, kind: kind, mode: UInt32(mode), size: size,
                                     mtime: Timestamp(seconds: seconds, nanoseconds: ns), linkTarget: link, checksum: hash))
        }
        return entries.isEmpty ? nil : (generation, Manifest(sorted: entries))
    }
}
