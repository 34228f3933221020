import Crypto
import FerrySSH
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Makes a directory on the target identical to a local one, as `rsync -rlptD --delete` would,
/// in two remote commands (list, apply) over one SSH session.
public struct Syncer {
    public struct Options: Sendable {
        public var plan: SyncPlan.Options
        public var dryRun: Bool
        /// Take over a non-empty destination ferry never synced.
        public var force: Bool

        public init(plan: SyncPlan.Options = .init(), dryRun: Bool = false, force: Bool = false) {
            self.plan = plan
            self.dryRun = dryRun
            self.force = force
        }
    }

    public struct Result {
        public var plan: SyncPlan
        public var filesScanned: Int
        public var bytesScanned: Int64
        public var bytesSent: Int64
        public var seconds: Double
        /// Time to the plan (scan and listing in parallel, then planning), and applying it.
        public var planSeconds: Double = 0
        public var applySeconds: Double = 0
        /// Local device files and sockets that were skipped.
        public var skipped: [String]
        /// Local files that shrank while being sent (the next sync fixes them).
        public var changedDuringSend: [String] = []
    }

    /// Where ferry keeps its sentinel and staging for `destination`: beside it, never inside.
    public static func stateDirectory(for destination: String) -> String {
        let url = URL(fileURLWithPath: destination)
        return url.deletingLastPathComponent().path + "/.ferry/" + url.lastPathComponent
    }

    public static func validate(destination: String) throws {
        guard destination.hasPrefix("/") else { throw SyncError.badDestination("the destination '\(destination)' must be an absolute path") }
        let parts = destination.split(separator: "/")
        guard !parts.isEmpty, !parts.contains("..") , !parts.contains(".") else {
            throw SyncError.badDestination("the destination '\(destination)' must be an absolute path below /, without . or ..")
        }
    }

    public static func sync(from local: String, to destination: String, over session: SSHSession, options: Options) throws -> Result {
        let start = Date()
        try validate(destination: destination)
        let destination = "/" + destination.split(separator: "/").joined(separator: "/")
        let state = stateDirectory(for: destination)

        // Scan locally while the target lists its side.
        final class ScanBox: @unchecked Sendable { var result: Swift.Result<(Manifest, [String]), Error>? }
        let box = ScanBox()
        let group = DispatchGroup()
        group.enter()
        let excludes = options.plan.excludes
        DispatchQueue.global().async {
            var scanner = LocalScanner(root: local, excludes: excludes)
            box.result = Swift.Result { (try scanner.scan(), scanner.skipped) }
            group.leave()
        }
        let listing: RemoteTree.Listing
        do {
            listing = try RemoteTree.list(session, destination: destination, state: state, checksum: options.plan.checksum)
        } catch {
            group.wait()
            throw error
        }
        group.wait()
        var (source, skipped) = try box.result!.get()

        if listing.exists && !listing.isDirectory {
            throw SyncError.badDestination("\(session.target): \(destination) exists and is not a directory")
        }
        if listing.exists && !listing.syncedBefore && listing.manifest.count > 1 && !options.force {
            throw SyncError.refusingUnknownDestination(target: session.target.description, path: destination)
        }
        if options.plan.checksum { try hashFiles(&source, root: local, comparedWith: listing.manifest) }

        var plan = SyncPlan(source: source, destination: listing.manifest, options: options.plan)
        if !options.dryRun {
            // A file with the same size but another mtime is often only touched: compare contents
            // (one more command, a few ms) and rewrite only what really differs.
            let candidates = plan.sameSizeSends(comparedWith: listing.manifest)
            if !candidates.isEmpty {
                let remoteHashes: [[UInt8]: [UInt8]] = options.plan.checksum
                    ? Dictionary(candidates.compactMap { e in listing.manifest[e.path]?.checksum.map { (e.path, $0) } }, uniquingKeysWith: { a, _ in a })
                    : try RemoteTree.hashes(session, destination: destination, paths: candidates.map(\.path))
                // With --checksum both sides were hashed already.
                let localHashes = options.plan.checksum ? candidates.map(\.checksum) : try sha256(candidates.map(\.path), root: local)
                let same = zip(candidates, localHashes).filter { e, h in h != nil && h == remoteHashes[e.path] }.map { $0.0.path }
                plan.markUnchangedContents(Set(same))
            }
        }
        var result = Result(plan: plan, filesScanned: source.count, bytesScanned: source.entries.reduce(0) { $0 + $1.size },
                            bytesSent: 0, seconds: 0, skipped: skipped)
        result.planSeconds = Date().timeIntervalSince(start)
        if !options.dryRun && (!plan.isEmpty || !listing.syncedBefore) {
            // Nothing there yet: stage the whole tree and move it into place at once.
            let fresh = listing.manifest.count <= 1
            let stream = TarStream(members(for: plan, root: local, fresh: fresh))
            var err: [UInt8] = []
            let command = RemoteCommand.script(RemoteTree.applyScript, arguments: [Array(destination.utf8), Array(state.utf8)])
            let status = try session.exec(command, stdin: stream, stdout: { _ in }, stderr: { err.append(contentsOf: $0) })
            guard status == .exited(0) else {
                throw SyncError.remote(target: session.target.description, step: "applying the changes to \(destination)",
                                       status: "\(status)", stderr: String(decoding: err, as: UTF8.self))
            }
            result.bytesSent = stream.bytesProduced
            result.changedDuringSend = stream.changedDuringSend
        }
        result.seconds = Date().timeIntervalSince(start)
        result.applySeconds = result.seconds - result.planSeconds
        return result
    }

    /// SHA-256 of the local files whose size matches a remote file (the others differ anyway).
    static func hashFiles(_ manifest: inout Manifest, root: String, comparedWith remote: Manifest) throws {
        let candidates = manifest.entries.filter { $0.kind == .file && remote[$0.path]?.kind == .file && remote[$0.path]?.size == $0.size }.map(\.path)
        for (path, hash) in zip(candidates, try sha256(candidates, root: root)) { if let hash { manifest.setChecksum(hash, at: path) } }
    }

    /// Hex SHA-256 of local files, on all cores.
    static func sha256(_ paths: [[UInt8]], root: String) throws -> [[UInt8]?] {
        var hashes = [[UInt8]?](repeating: nil, count: paths.count)
        let lock = NSLock()
        var failure: Error?
        let rootBytes = Array(root.utf8)
        hashes.withUnsafeMutableBufferPointer { out in
            let buffer = out
            DispatchQueue.concurrentPerform(iterations: paths.count) { i in
                do {
                    buffer[i] = try sha256Hex(rootBytes + [UInt8(ascii: "/")] + paths[i])
                } catch {
                    lock.lock(); failure = error; lock.unlock()
                }
            }
        }
        if let failure { throw failure }
        return hashes
    }

    static func sha256Hex(_ path: [UInt8]) throws -> [UInt8] {
        let fd = path.withCString { open($0, O_RDONLY | O_NOFOLLOW) }
        guard fd >= 0 else { throw SyncError.localRead(path: String(decoding: path, as: UTF8.self), reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return Array(hasher.finalize().map { String(format: "%02x", $0) }.joined().utf8)
    }

    static func members(for plan: SyncPlan, root: String, fresh: Bool) -> [TarMember] {
        let rootBytes = Array(root.utf8)
        var members: [TarMember] = []
        for e in plan.sends {
            let name = Array("data/".utf8) + e.path
            switch e.kind {
            case .file:
                members.append(.file(header: TarHeader(name: name, type: .file, mode: e.mode, size: e.size, mtime: e.mtime),
                                     source: rootBytes + [UInt8(ascii: "/")] + e.path))
            case .symlink:
                members.append(.headerOnly(TarHeader(name: name, type: .symlink, mode: 0o777, size: 0, mtime: e.mtime, linkTarget: e.linkTarget ?? [])))
            case .fifo:
                members.append(.headerOnly(TarHeader(name: name, type: .fifo, mode: e.mode, size: 0, mtime: e.mtime)))
            case .directory:
                break
            }
        }
        let now = Timestamp(seconds: Int64(Date().timeIntervalSince1970), nanoseconds: 0)
        func list(_ name: String, _ paths: [[UInt8]]) -> TarMember {
            let bytes: [UInt8] = paths.flatMap { $0 + [UInt8(0)] }
            return .bytes(header: TarHeader(name: Array(name.utf8), type: .file, mode: 0o600, size: Int64(bytes.count), mtime: now), contents: bytes)
        }
        for (mode, entries) in Dictionary(grouping: plan.metadataOnly, by: \.mode) {
            members.append(list("modes/" + String(mode, radix: 8), entries.map(\.path)))
        }
        for (mtime, entries) in Dictionary(grouping: plan.metadataOnly, by: \.mtime.description) {
            members.append(list("times/" + mtime, entries.map(\.path)))
        }
        if fresh { members.append(list("fresh", [])) }
        members.append(list("deletions", plan.deletions))
        members.append(list("directories", plan.newDirectories))
        let dirs = tarArchive(plan.directoryUpdates.map {
            TarHeader(name: $0.path.isEmpty ? [UInt8(ascii: ".")] : $0.path, type: .directory, mode: $0.mode, size: 0, mtime: $0.mtime)
        })
        members.append(.bytes(header: TarHeader(name: Array("directories.tar".utf8), type: .file, mode: 0o600, size: Int64(dirs.count), mtime: now), contents: dirs))
        return members
    }
}
