import FerrySSH
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Tar streams beside the sync's own, each on a channel of its own into the same staging folder.
/// sshd gives each channel a 2 MB window, which bounds one stream to 2 MB per round trip (40 MB/s
/// at 50 ms), and one `tar` creates files on one core: a large send is split so that several of
/// each work at once. The sync's command starts extracting first and says where (a marker line
/// on stderr); it reads the end of its own stream only after every extra stream has ended, then
/// checks that each one completed before anything moves into place.
/// Unchecked Sendable: its state is written under `lock` only.
final class ExtraStreams: @unchecked Sendable {
    /// The marker the sync's command writes on stderr: the staging folder, then a newline.
    static let marker = Array("\u{1e}ferry-stage ".utf8)

    /// How many streams in all (the sync's own included) for a send of `bytes`. Below 32 MB a
    /// second stream saved nothing over a 50 ms link and cost on loopback (the LNBits tree, 15 MB:
    /// 915 vs 935 ms, and 227–330 vs 188–226 ms).
    static func count(bytes: Int64) -> Int {
        bytes < 32 << 20 ? 1 : bytes < 64 << 20 ? 2 : 4
    }

    /// Splits the data members into at most `count` groups of about equal bytes, a directory's
    /// files together in pieces (two `tar`s creating files in one directory take turns at its
    /// lock), each `tar` making the directories it needs. The first group is the sync's own
    /// stream, which also carries the symlinks, fifos and everything else. Empty groups are left out.
    static func split(_ members: [TarMember], count: Int) -> [[TarMember]] {
        guard count > 1 else { return [members] }
        // Indices, not copies: a 40k-file send's members are a few MB.
        func folder(_ name: [UInt8]) -> ArraySlice<UInt8> { name[..<(name.lastIndex(of: UInt8(ascii: "/")) ?? name.startIndex)] }
        let total = members.reduce(Int64(0)) { $0 + weight($1) }
        // Pieces small enough that one large directory still spreads over every stream. The
        // members come in tree order, so a run of files in one folder makes a piece.
        let most = max(1 << 20, total / Int64(count * 4))
        var pieces: [(bytes: Int64, members: [Int])] = []
        var rest: [Int] = []
        var last: ArraySlice<UInt8>?
        for (i, m) in members.enumerated() {
            guard case .file(let header, _) = m else { rest.append(i); continue }
            let here = folder(header.name)
            if pieces.isEmpty || last != here || pieces[pieces.count - 1].bytes >= most { pieces.append((0, [])) }
            last = here
            pieces[pieces.count - 1].bytes += weight(m)
            pieces[pieces.count - 1].members.append(i)
        }
        var groups = [[Int]](repeating: [], count: count)
        var load = [Int64](repeating: 0, count: count)
        // Largest first, each to the least loaded stream (stable: ties keep the tree's order).
        for p in pieces.indices.sorted(by: { (pieces[$0].bytes, $1) > (pieces[$1].bytes, $0) }) {
            let g = load.indices.min { load[$0] < load[$1] }!
            load[g] += pieces[p].bytes
            groups[g] += pieces[p].members
        }
        groups[0] += rest
        return ([groups[0]] + groups.dropFirst().filter { !$0.isEmpty }).map { withParents($0, of: members) }
    }

    /// The `group` of `members` after a member for each folder its entries sit in, parents first.
    /// GNU tar makes a missing parent when an open fails, but gives up when another tar made it
    /// meanwhile ("Cannot open: No such file or directory"); a folder member that exists already is fine.
    private static func withParents(_ group: [Int], of members: [TarMember]) -> [TarMember] {
        var folders = Set<[UInt8]>()
        for m in group.lazy.map({ members[$0] }) {
            let name: [UInt8]
            switch m {
            case .file(let h, _), .headerOnly(let h): name = h.name
            case .bytes, .archive: continue
            }
            guard name.starts(with: dataPrefix) else { continue }
            var end = name.endIndex
            while let slash = name[..<end].lastIndex(of: UInt8(ascii: "/")), slash > dataPrefix.count - 1 {
                guard folders.insert(Array(name[..<slash])).inserted else { break }
                end = slash
            }
        }
        let now = Timestamp(seconds: Int64(Date().timeIntervalSince1970), nanoseconds: 0)
        var out = folders.sorted { $0.count < $1.count || ($0.count == $1.count && $0.lexicographicallyPrecedes($1)) }
            .map { TarMember.headerOnly(TarHeader(name: $0, type: .directory, mode: 0o755, size: 0, mtime: now)) }
        out.reserveCapacity(out.count + group.count)
        for i in group { out.append(members[i]) }
        return out
    }

    private static let dataPrefix = Array("data/".utf8)

    /// A member's cost: its bytes and, for file creation, about a header's worth more.
    private static func weight(_ m: TarMember) -> Int64 {
        if case .file(let header, _) = m { return header.size + 4096 }
        return 512
    }

    private let groups: [[TarMember]]
    private let lock = NSLock()
    private var gate: [Int32] = [-1, -1]
    private var begun = false
    private let ended = DispatchGroup()
    private var running = 0
    private(set) var streams: [TarStream] = []
    private var failures: [String] = []
    let stop: CancellationToken

    /// `groups`: the extra streams' members (not the sync's own).
    init(_ groups: [[TarMember]]) throws {
        self.groups = groups
        stop = try CancellationToken()
        guard pipe(&gate) == 0 else { throw SyncError.localRead(path: "a pipe", reason: String(cString: strerror(errno))) }
        _ = fcntl(gate[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(gate[1], F_SETFD, FD_CLOEXEC)
    }

    deinit {
        close(gate[0])
        close(gate[1])
    }

    private var refused = false

    var started: Bool { lock.withLock { begun || refused } }

    /// Readable once every extra stream has ended.
    var gateDescriptor: Int32 { gate[0] }

    var finished: Bool { lock.withLock { refused || (begun && running == 0) } }

    /// What went wrong in the extra streams, one line each (empty: every one exited 0).
    var failureText: String { lock.withLock { failures.joined(separator: "\n") } }

    /// Starts one command per group, extracting into `stage` (once; later calls do nothing).
    func start(stage: [UInt8], over session: any RemoteShell) {
        lock.lock()
        defer { lock.unlock() }
        guard !begun, !refused else { return }
        begun = true
        running = groups.count
        for (n, group) in groups.enumerated() {
            let stream = TarStream(group, discardName: "discard.\(n + 1)")
            streams.append(stream)
            let command = TargetState.Tree.extract(stage: stage, stream: n + 1)
            let stop = self.stop
            // Only this thread reads the stream until it has ended; `streams` is read after.
            nonisolated(unsafe) let input = stream
            let thread = Thread { [self] in
                var err: [UInt8] = []
                let outcome: String?
                do {
                    let status = try session.exec(command, stdin: input, cancel: stop, stdout: { _ in }, stderr: { if err.count < 4096 { err.append(contentsOf: $0.prefix(4096)) } })
                    outcome = status == .exited(0) ? nil : "stream \(n + 1): \(status): " + String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                } catch {
                    outcome = "stream \(n + 1): \(error)"
                }
                lock.withLock {
                    if let outcome { failures.append(outcome) }
                    running -= 1
                    if running == 0 { openGate() }
                }
                ended.leave()
            }
            ended.enter()
            thread.start()
        }
    }

    /// Takes the marker line out of `stderr` once it is whole, and returns the folder it names.
    static func takeMarker(_ stderr: inout [UInt8]) -> [UInt8]? {
        guard let start = stderr.firstRange(of: marker)?.lowerBound,
              let end = stderr[start...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let stage = Array(stderr[(start + marker.count)..<end])
        stderr.removeSubrange(start...end)
        return stage
    }

    /// The command named a staging folder that is not this sync's: no stream starts, and the
    /// command, finding none complete, fails.
    func refuse(_ stage: [UInt8]) {
        lock.withLock {
            guard !begun, !refused else { return }
            refused = true
            failures.append("the target named an unexpected staging folder '\(String(decoding: stage, as: UTF8.self))'")
            openGate()
        }
    }

    /// Under `lock`: the sync's own stream may end now.
    private func openGate() {
        var b: UInt8 = 1
        _ = write(gate[1], &b, 1)
    }

    /// Ends the extra streams early (the sync's command failed, or the sync was cancelled) and
    /// waits for their threads.
    func cancelAndWait() {
        if !finished { stop.cancel() }
        ended.wait()
    }
}

/// The sync's own tar stream, whose end waits until the extra streams have ended (the command
/// reads its stream to the end, then checks theirs).
final class GatedInput: ExecInput {
    private let inner: TarStream
    private let extras: ExtraStreams
    private var innerEnded = false

    init(_ inner: TarStream, until extras: ExtraStreams) {
        self.inner = inner
        self.extras = extras
    }

    var pollDescriptor: Int32? { innerEnded ? extras.gateDescriptor : nil }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk {
        if !innerEnded {
            let chunk = try inner.read(into: buffer)
            guard chunk == .end else { return chunk }
            innerEnded = true
        }
        return extras.finished ? .end : .wouldBlock
    }
}
