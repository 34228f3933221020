import Crypto
import FerrySSH
import FerryTarget
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Makes a directory on the target identical to a local one, as `rsync -rlptD --delete` would.
/// A real sync is one remote command that locks the destination, lists it, and then applies
/// the plan from one tar stream; a touched file costs one more command (both ends hash it).
public struct Syncer {
    public struct Options: Sendable {
        public var plan: SyncPlan.Options
        public var dryRun: Bool
        /// Take over a non-empty destination ferry never synced.
        public var force: Bool
        /// Stops the sync (the remote side is ended and cleans up after itself).
        public var cancel: CancellationToken?
        /// Seconds to wait for the destination's lock (0 or 1: refuse after a second). A deploy,
        /// which holds the host's deploy lock already, waits for a killed predecessor's sync to
        /// wind down.
        public var lockWait = 0
        /// Where what the destination held is kept between runs, so that the target lists only
        /// what changed since (none: every listing is a full one).
        public var listingCache: ListingCache?
        /// Files made in memory (a rendered configuration), by relative path: sent and hashed from
        /// these bytes, never read from the local folder. The `scanned` manifest lists them.
        public var generated: [[UInt8]: [UInt8]] = [:]
        /// How many tar streams carry the files (nil: by the size of the send, see `ExtraStreams`).
        package var streams: Int?
        /// Keep a snapshot of the tree as the sync leaves it (a deploy that rebuilds).
        package var snapshot: TargetState.Tree.Snapshot?

        public init(plan: SyncPlan.Options = .init(), dryRun: Bool = false, force: Bool = false, cancel: CancellationToken? = nil) {
            self.plan = plan
            self.dryRun = dryRun
            self.force = force
            self.cancel = cancel
        }
    }

    public struct Result: Sendable {
        public var plan: SyncPlan
        /// The local tree as scanned (what the target now mirrors when the sync is complete).
        public var scannedManifest = Manifest()
        /// The destination as listed before the sync (what a dry run compared with).
        public var destinationManifest = Manifest()
        /// For an incremental listing, how many entries the target listed (nil: a full listing).
        public var listedChanges: Int?
        /// Where the destination really is, when a folder above it is a symlink (the target
        /// resolves those once and works there).
        public var resolvedDestination: String?
        public var filesScanned: Int
        public var bytesScanned: Int64
        public var bytesSent: Int64
        public var seconds: Double
        /// Time to the plan (scan and listing in parallel, then planning), and applying it.
        public var planSeconds: Double = 0
        public var applySeconds: Double = 0
        /// Local device files and sockets that were skipped.
        public var skipped: [String]
        /// Local paths longer than PATH_MAX, skipped as rsync skips them.
        public var tooLong: [String] = []
        /// Local files that vanished between the listing of their directory and their transfer.
        public var vanished: [String] = []
        /// Local files that changed size while being sent: not moved into place (the next sync sends them).
        public var changedDuringSend: [String] = []
        /// Local files that could not be read: the target keeps its old copy. The sync failed for them.
        public var unreadable: [(path: String, reason: String)] = []

        /// Whether everything the source holds reached the target.
        public var complete: Bool { unreadable.isEmpty && plan.blocked.isEmpty }
    }

    /// Where ferry keeps its sentinel, lock and staging for `destination`: beside it, never inside.
    public static func stateDirectory(for destination: String) -> String {
        let (state, name) = TargetState.forDestination(destination)
        return state.source(name)
    }

    public static func validate(destination: String) throws {
        guard destination.hasPrefix("/") else { throw SyncError.badDestination("the destination '\(destination)' must be an absolute path") }
        let parts = destination.split(separator: "/")
        guard !parts.isEmpty, !parts.contains("..") , !parts.contains(".") else {
            throw SyncError.badDestination("the destination '\(destination)' must be an absolute path below /, without . or ..")
        }
    }

    /// The plan's excludes and the staging folder inside a mount-point destination.
    static func excludes(_ options: Options) throws -> ExcludeRules {
        var rules = options.plan.excludes
        try rules.add("/" + TargetState.Tree.inTreeStage)
        return rules
    }

    /// Scans `local` as `sync` would (for a scan shared by many targets: pass it as `scanned`).
    public static func scan(_ local: String, options: Options) throws -> LocalScanner.Scanned {
        try LocalScanner(root: local, excludes: excludes(options)).scanAll()
    }

    /// Starts scanning `local` as `sync` would, on another thread: started before connecting, the
    /// scan overlaps the handshake instead of following it.
    public static func beginScan(_ local: String, options: Options) -> PendingScan {
        do { return PendingScan(ScanTask(root: local, excludes: try excludes(options))) } catch { return PendingScan(failed: error) }
    }

    /// `scanned`: a scan of `local` made earlier (a fleet scans a shared source once); `pending`:
    /// one still running (`beginScan`); neither: scan now.
    public static func sync(from local: String, to destination: String, over session: any RemoteShell, options: Options,
                            scanned: LocalScanner.Scanned? = nil, pending: PendingScan? = nil) throws -> Result {
        guard !local.isEmpty else { throw SyncError.localRead(path: "''", reason: "the local directory's path is empty") }
        try validate(destination: destination)
        let destination = "/" + destination.split(separator: "/").joined(separator: "/")
        // Only size-and-mtime listings are incremental (a checksum listing hashes every file anyway).
        let cache = options.plan.checksum ? nil : options.listingCache
        // The generation is read now (the command names it); the rest is decoded while the target lists.
        if let cache, let known = cache.open(target: session.name, destination: destination) {
            do {
                return try run(from: local, to: destination, over: session, options: options, scanned: scanned, pending: pending, cache: cache, known: known)
            } catch is ListingCache.Unusable {
                cache.remove(target: session.name, destination: destination)
            }
        }
        return try run(from: local, to: destination, over: session, options: options, scanned: scanned, pending: pending, cache: cache, known: nil)
    }

    private static func run(from local: String, to destination: String, over session: any RemoteShell, options: Options,
                            scanned: LocalScanner.Scanned?, pending: PendingScan?, cache: ListingCache?, known: ListingCache.Pending?) throws -> Result {
        let start = Date()
        var planOptions = options.plan
        planOptions.excludes = try excludes(options)

        let scan = pending?.task ?? ScanTask(root: local, excludes: planOptions.excludes, done: scanned)
        // Never leave the scan thread running past a return or a throw.
        defer { _ = try? scan.wait() }
        let collector = ListingCollector()
        let generation = ListingCache.newGeneration()
        var committing = false
        var err: [UInt8] = []
        var prepared: (plan: SyncPlan, scanned: LocalScanner.Scanned, listing: TargetState.Tree.Listing)?
        var stream: TarStream?
        var extras: ExtraStreams?
        // Never leave an extra stream running past a throw.
        defer { extras?.cancelAndWait() }
        let target = session.name
        func command(_ mode: TargetState.Tree.Request.Mode) -> RemoteCommand {
            TargetState.Tree.Request(destination: destination, mode: mode, checksum: planOptions.checksum, lockWait: options.lockWait,
                                     known: known?.generation, snapshot: mode == .apply ? options.snapshot : nil).command
        }
        func prepare() throws -> (TargetState.Tree.Listing, SyncPlan, LocalScanner.Scanned) {
            var base: Manifest?
            if let known {
                guard let manifest = known.manifest() else { throw ListingCache.Unusable() }
                base = manifest
            }
            var listing = try TargetState.Tree.parse(collector.bytes, target: target, base: base)
            var scanned = try scan.wait()
            let plan = try makePlan(&scanned.manifest, root: local, listing: &listing, destination: destination,
                                    session: session, options: options, planOptions: planOptions)
            prepared = (plan, scanned, listing)
            return (listing, plan, scanned)
        }

        var step: String { prepared == nil ? "listing \(destination)" : "applying the changes to \(destination)" }
        let status: ExitStatus
        do {
            if options.dryRun {
                status = try session.exec(command(.list), stdin: nil, cancel: options.cancel, stdout: collector.feed, stderr: { err.append(contentsOf: $0) })
                if status == .exited(0) { _ = try prepare() }
            } else {
                let input = DeferredInput(ready: { collector.complete }) {
                    let (listing, plan, _) = try prepare()
                    // A new generation is committed with what this run saw, unless nothing changed
                    // since the last one (then the target writes nothing). A first copy commits
                    // none: all it wrote would be listed back (the next run lists it whole anyway),
                    // which would raise a large tree's peak memory. (A checksum run has no cache.)
                    let fresh = listing.manifest.count <= 1
                    committing = cache != nil && !fresh && (listing.changes != 0 || !plan.isEmpty || !listing.syncedBefore)
                    let commit = committing ? " " + generation : ""
                    if plan.isEmpty && listing.syncedBefore {
                        // Nothing to apply, commit or snapshot: the target only ends; not waiting
                        // for that saves a round trip.
                        let quiet = !committing && (options.snapshot == nil || listing.snapshotPresent)
                        return quiet ? LastWordInput(Array("done\n".utf8)) : BytesInput(Array("done\(commit)\n".utf8))
                    }
                    let all = members(for: plan, root: local, generated: options.generated, fresh: fresh)
                    let count = max(1, options.streams ?? ExtraStreams.count(bytes: plan.sends.reduce(0) { $0 + ($1.kind == .file ? $1.size : 0) }))
                    let groups = ExtraStreams.split(all, count: count)
                    let tar = TarStream(groups[0])
                    stream = tar
                    let line = Array("apply \(committing ? generation : "-") \(groups.count)\n".utf8)
                    guard groups.count > 1 else { return PrefixedInput(line, then: tar) }
                    let more = try ExtraStreams(Array(groups.dropFirst()))
                    extras = more
                    return PrefixedInput(line, then: GatedInput(tar, until: more))
                }
                status = try session.exec(command(.apply), stdin: input, cancel: options.cancel, stdout: collector.feed, stderr: { chunk in
                    err.append(contentsOf: chunk)
                    if let more = extras, !more.started, let stage = ExtraStreams.takeMarker(&err) {
                        // Only where this sync stages (the destination as the target resolved it).
                        let resolved = prepared?.listing.resolvedDestination ?? destination
                        let expected = TargetState.Tree.stagingFolders(destination: resolved).map { Array($0.utf8) }
                        if expected.contains(stage) { more.start(stage: stage, over: session) } else { more.refuse(stage) }
                    }
                })
            }
        } catch let error as SSHError where error != .cancelled {
            throw SyncError.transport(step: step, error: error)
        }
        // After a success they have ended (the command waited for them); after a failure they stop.
        extras?.cancelAndWait()
        guard status == .exited(0) || status == .notAwaited, let (plan, scanned, listing) = prepared else {
            var text = String(decoding: err, as: UTF8.self)
            if let failures = extras?.failureText, !failures.isEmpty { text += (text.isEmpty ? "" : "\n") + failures }
            throw SyncError.remote(target: target, step: step, status: "\(status)", stderr: text)
        }
        let streams = [stream].compactMap { $0 } + (extras?.streams ?? [])
        let destinationManifest = listing.manifest
        if let cache, committing {
            // The target listed what changed since the listing's reference (this run's writes, and
            // anyone else's): the destination as of the new sentinel.
            if let after = try? TargetState.Tree.parseChanges(collector.takeTail(), target: target) {
                cache.store(destinationManifest.applying(changes: after), generation: generation, target: target, destination: destination)
            } else {
                cache.remove(target: target, destination: destination)
            }
        } else if let cache, let known, listing.changes != nil, listing.learnedHashes {
            // A run that commits nothing (a dry run, say) still keeps the hashes it was given: the
            // next diff or deploy asks the target only for files changed since.
            cache.store(destinationManifest, generation: known.generation, target: target, destination: destination)
        }

        var result = Result(plan: plan, filesScanned: scanned.manifest.count,
                            bytesScanned: scanned.manifest.entries.reduce(0) { $0 + $1.size },
                            bytesSent: streams.reduce(0) { $0 + $1.bytesProduced }, seconds: 0, skipped: scanned.skipped)
        result.scannedManifest = scanned.manifest
        result.destinationManifest = destinationManifest
        result.listedChanges = listing.changes
        if listing.resolvedDestination != destination { result.resolvedDestination = listing.resolvedDestination }
        result.tooLong = scanned.tooLong
        result.vanished = scanned.vanished + streams.flatMap(\.vanished)
        result.changedDuringSend = streams.flatMap(\.changedDuringSend)
        result.unreadable = streams.flatMap(\.unreadable)
        result.seconds = Date().timeIntervalSince(start)
        result.planSeconds = collector.completedAt.map { $0.timeIntervalSince(start) } ?? result.seconds
        result.applySeconds = result.seconds - result.planSeconds
        return result
    }

    /// Checks the destination, plans, and turns same-size files whose contents already match
    /// into metadata-only updates (hashing both ends), for real runs and dry runs alike, so a
    /// dry run predicts exactly what the real run does.
    /// Hashes the target gives are kept in `listing`'s manifest (the listing cache keeps them).
    static func makePlan(_ source: inout Manifest, root: String, listing: inout TargetState.Tree.Listing, destination: String,
                         session: any RemoteShell, options: Options, planOptions: SyncPlan.Options) throws -> SyncPlan {
        let target = session.name
        if listing.kind == .link {
            throw SyncError.badDestination("\(target): \(destination) is a symbolic link; ferry never writes through one: remove it, or sync to the folder it points to")
        }
        if listing.exists && !listing.isDirectory {
            throw SyncError.badDestination("\(target): \(destination) exists and is not a directory")
        }
        if listing.exists && !listing.syncedBefore && listing.manifest.count > 1 && !options.force {
            throw SyncError.refusingUnknownDestination(target: target, path: destination)
        }
        if planOptions.checksum { try hashFiles(&source, root: root, generated: options.generated, comparedWith: listing.manifest) }
        var plan = SyncPlan(source: source, destination: listing.manifest, options: planOptions)
        // A file with the same size but another mtime is often only touched: compare contents
        // (one more command, a few ms) and rewrite only what really differs.
        let candidates = plan.sameSizeSends(comparedWith: listing.manifest)
        if !candidates.isEmpty {
            // With --checksum both sides were hashed already; else both ends hash at once, except
            // where the listing cache holds the target's hash of a file unchanged since.
            let local = planOptions.checksum ? nil : LocalHashes(candidates.map(\.path), root: root, generated: options.generated)
            var remoteHashes = Dictionary(candidates.compactMap { e in listing.manifest[e.path]?.checksum.map { (e.path, $0) } },
                                          uniquingKeysWith: { a, _ in a })
            let missing = candidates.map(\.path).filter { remoteHashes[$0] == nil }
            if !planOptions.checksum && !missing.isEmpty {
                for (path, hash) in try TargetState.Tree.hashes(session, destination: destination, paths: missing, cancel: options.cancel) {
                    remoteHashes[path] = hash
                    listing.manifest.setChecksum(hash, at: path)
                }
                listing.learnedHashes = true
            }
            let localHashes = try local?.wait() ?? candidates.map(\.checksum)
            let same = zip(candidates, localHashes).filter { e, h in h != nil && h == remoteHashes[e.path] }.map { $0.0.path }
            plan.markUnchangedContents(Set(same))
        }
        return plan
    }

    /// Local files hashed on other threads while the caller waits on the target.
    final class LocalHashes: Sendable {
        private let result = Mutex<Swift.Result<[[UInt8]?], any Error>?>(nil)
        private let group = DispatchGroup()

        init(_ paths: [[UInt8]], root: String, generated: [[UInt8]: [UInt8]]) {
            DispatchQueue.global().async(group: group) { [self] in
                let r = Swift.Result { try Syncer.sha256(paths, root: root, generated: generated) }
                result.withLock { $0 = r }
            }
        }

        func wait() throws -> [[UInt8]?] {
            group.wait()
            return try result.withLock { $0! }.get()
        }
    }

    /// SHA-256 of the local files whose size matches a remote file (the others differ anyway).
    static func hashFiles(_ manifest: inout Manifest, root: String, generated: [[UInt8]: [UInt8]], comparedWith remote: Manifest) throws {
        let candidates = manifest.entries.filter { $0.kind == .file && remote[$0.path]?.kind == .file && remote[$0.path]?.size == $0.size }.map(\.path)
        for (path, hash) in zip(candidates, try sha256(candidates, root: root, generated: generated)) { if let hash { manifest.setChecksum(hash, at: path) } }
    }

    /// Hex SHA-256 of local files, on all cores (`generated` ones from their bytes).
    static func sha256(_ paths: [[UInt8]], root: String, generated: [[UInt8]: [UInt8]] = [:]) throws -> [[UInt8]?] {
        let hashes = Mutex([[UInt8]?](repeating: nil, count: paths.count))
        let failure = Mutex<(any Error)?>(nil)
        let rootBytes = Array(root.utf8)
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            do {
                let hash = try generated[paths[i]].map(hex) ?? sha256Hex(rootBytes + [UInt8(ascii: "/")] + paths[i])
                hashes.withLock { $0[i] = hash }
            } catch {
                failure.withLock { $0 = error }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return hashes.withLock { $0 }
    }

    /// nil when the file cannot be read whole: it is then sent, and the send reports why.
    static func sha256Hex(_ path: [UInt8]) throws -> [UInt8]? {
        let fd = path.withCString { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return hex(hasher.finalize())
    }

    static func hex(_ bytes: [UInt8]) -> [UInt8] { hex(SHA256.hash(data: bytes)) }

    static func hex(_ digest: SHA256.Digest) -> [UInt8] { Array(digest.map { String(format: "%02x", $0) }.joined().utf8) }

    /// `filesOnTarget`: regular files are not sent but named in a `links` list, taken on the
    /// target from a snapshot of the tree (a restore).
    static func members(for plan: SyncPlan, root: String, generated: [[UInt8]: [UInt8]] = [:], fresh: Bool, filesOnTarget: Bool = false) -> [TarMember] {
        let rootBytes = Array(root.utf8)
        var members: [TarMember] = []
        var links: [[UInt8]] = []
        let now = Timestamp(seconds: Int64(Date().timeIntervalSince1970), nanoseconds: 0)
        if fresh {
            // A first copy's folders are made by tar (the target runs no mkdir); their modes and
            // times come with directories.tar at the end.
            for d in plan.newDirectories {
                members.append(.headerOnly(TarHeader(name: Array("data/".utf8) + d, type: .directory, mode: 0o755, size: 0, mtime: now)))
            }
        }
        for e in plan.sends {
            let name = Array("data/".utf8) + e.path
            switch e.kind {
            case .file where filesOnTarget:
                links.append(e.path)
            case .file:
                let header = TarHeader(name: name, type: .file, mode: e.mode, size: e.size, mtime: e.mtime)
                if let contents = generated[e.path] {
                    members.append(.bytes(header: header, contents: contents))
                } else {
                    members.append(.file(header: header, source: rootBytes + [UInt8(ascii: "/")] + e.path))
                }
            case .symlink:
                members.append(.headerOnly(TarHeader(name: name, type: .symlink, mode: 0o777, size: 0, mtime: e.mtime, linkTarget: e.linkTarget ?? [])))
            case .fifo:
                members.append(.headerOnly(TarHeader(name: name, type: .fifo, mode: e.mode, size: 0, mtime: e.mtime)))
            case .directory:
                break
            }
        }
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
        if filesOnTarget { members.append(list("links", links)) }
        members.append(list("deletions", plan.deletions))
        members.append(list("directories", plan.newDirectories))
        members.append(.archive(name: Array("directories.tar".utf8), mtime: now, entries: plan.directoryUpdates.map {
            TarHeader(name: $0.path.isEmpty ? [UInt8(ascii: ".")] : $0.path, type: .directory, mode: $0.mode, size: 0, mtime: $0.mtime)
        }))
        return members
    }
}

/// A local scan started ahead of the connection (`Syncer.beginScan`).
public struct PendingScan: Sendable {
    let task: ScanTask

    init(_ task: ScanTask) { self.task = task }
    init(failed error: Error) { task = ScanTask(failed: error) }
}

/// The local scan, run while the target lists its side.
final class ScanTask: Sendable {
    private let result = Mutex<Swift.Result<LocalScanner.Scanned, Error>?>(nil)
    private let group = DispatchGroup()

    init(failed error: Error) {
        result.withLock { $0 = .failure(error) }
    }

    init(root: String, excludes: ExcludeRules, done: LocalScanner.Scanned? = nil) {
        if let done { result.withLock { $0 = .success(done) }; return }
        group.enter()
        DispatchQueue.global().async {
            let scanned = Swift.Result { try LocalScanner(root: root, excludes: excludes).scanAll() }
            self.result.withLock { $0 = scanned }
            self.group.leave()
        }
    }

    func wait() throws -> LocalScanner.Scanned {
        group.wait()
        return try result.withLock { $0! }.get()
    }
}

/// Collects the listing from stdout and notices its end marker (an `E` field where a record
/// starts), so the plan can be made while the same remote command waits for the stream.
final class ListingCollector {
    private(set) var bytes: [UInt8] = []
    /// What the command printed after the listing (after an apply: the changes it made).
    private(set) var tail: [UInt8] = []
    private(set) var complete = false
    private(set) var completedAt: Date?
    private var scanned = 0
    private var fieldStart = 0
    private var fieldIndex = 0
    private var checksumSection = false

    func takeTail() -> [UInt8] {
        defer { tail = [] }
        return tail
    }

    func feed(_ chunk: UnsafeRawBufferPointer) {
        guard !complete else { return tail.append(contentsOf: chunk) }
        bytes.append(contentsOf: chunk)
        while let nul = bytes[scanned...].firstIndex(of: 0) {
            let length = nul - fieldStart
            let first = length > 0 ? bytes[fieldStart] : 0
            // The header's fields first; then entries of six fields each.
            let header = TargetState.Tree.headerFields
            if fieldIndex >= header && (checksumSection || (fieldIndex - header) % 6 == 0) {
                if length == 1 && first == UInt8(ascii: "E") {
                    complete = true
                    completedAt = Date()
                    tail = Array(bytes[(nul + 1)...])
                    bytes.removeSubrange((nul + 1)...)
                    return
                }
                if !checksumSection && length == 9 && bytes[fieldStart..<nul].elementsEqual("checksums".utf8) { checksumSection = true }
            }
            fieldIndex += 1
            fieldStart = nul + 1
            scanned = nul + 1
        }
        scanned = bytes.count
    }
}

/// Stdin that becomes available once `ready` says so; `prepare` then makes it (and may fail,
/// which ends the remote command: it sees the end of its input).
final class DeferredInput: ExecInput {
    private let ready: () -> Bool
    private let prepare: () throws -> ExecInput
    private var inner: ExecInput?

    init(ready: @escaping () -> Bool, prepare: @escaping () throws -> ExecInput) {
        self.ready = ready
        self.prepare = prepare
    }

    var pollDescriptor: Int32? { inner?.pollDescriptor }
    var awaitsExit: Bool { inner?.awaitsExit ?? true }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk {
        if inner == nil {
            guard ready() else { return .wouldBlock }
            inner = try prepare()
        }
        return try inner!.read(into: buffer)
    }
}

extension Syncer {
    /// A restore of `destination` (as listed, with its files' hashes) to a snapshot of the tree
    /// whose manifest is `snapshot`, with the sync's rules: the plan, and the archive the target's
    /// restore reads — the plan's lists and metadata, no file contents (those are the snapshot's).
    public static func restorePlan(snapshot: Manifest, destination: Manifest, options: SyncPlan.Options) throws -> (plan: SyncPlan, archive: [UInt8]) {
        var planOptions = options
        planOptions.checksum = true
        try planOptions.excludes.add("/" + TargetState.Tree.inTreeStage)
        let plan = SyncPlan(source: snapshot, destination: destination, options: planOptions)
        let stream = TarStream(members(for: plan, root: "", fresh: false, filesOnTarget: true))
        var archive: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let chunk = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            guard case .bytes(let n) = chunk else { break }
            archive += buffer[..<n]
        }
        return (plan, archive)
    }
}

extension Syncer.Result {
    /// The destination as this complete sync left it: `local` (the source's manifest, with its
    /// hashes), and the entries the destination keeps that the source does not have (excluded
    /// ones the sync leaves alone).
    public func treeAfter(_ local: Manifest) -> Manifest {
        var entries = local.entries
        for e in destinationManifest.entries where local[e.path] == nil
            && !plan.deletions.contains(where: { $0 == e.path || Manifest.isInside(e.path, $0) }) {
            entries.append(e)
        }
        return Manifest(entries)
    }
}
