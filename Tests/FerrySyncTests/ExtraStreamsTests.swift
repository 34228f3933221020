import FerrySSH
@testable import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A large send goes in several tar streams, each on a channel of its own (`ExtraStreams`).
/// (`RandomizedSyncTests` runs its rounds with one to four streams against the rsync oracle.)
final class ExtraStreamsTests: SyncTestCase {
    func testTheSplitSendsEveryMemberOnceAndSpreadsTheBytes() {
        var members: [TarMember] = []
        for d in 0..<7 {
            for f in 0..<(3 + d * 5) {
                let name = Array("data/d\(d)/f\(f)".utf8)
                members.append(.file(header: TarHeader(name: name, type: .file, mode: 0o644, size: Int64(50_000 * (1 + f % 4)), mtime: .init(seconds: 0, nanoseconds: 0)),
                                     source: name))
            }
        }
        members.append(.headerOnly(TarHeader(name: Array("data/link".utf8), type: .symlink, mode: 0o777, size: 0, mtime: .init(seconds: 0, nanoseconds: 0), linkTarget: Array("d0".utf8))))
        members.append(.bytes(header: TarHeader(name: Array("deletions".utf8), type: .file, mode: 0o600, size: 0, mtime: .init(seconds: 0, nanoseconds: 0)), contents: []))
        func name(_ m: TarMember) -> String {
            switch m {
            case .file(let h, _), .bytes(let h, _), .headerOnly(let h): return String(decoding: h.name, as: UTF8.self)
            case .archive(let n, _, _): return String(decoding: n, as: UTF8.self)
            }
        }
        func bytes(_ group: [TarMember]) -> Int64 {
            group.reduce(0) { if case .file(let h, _) = $1 { return $0 + h.size } else { return $0 } }
        }
        func isFolder(_ m: TarMember) -> Bool { if case .headerOnly(let h) = m { return h.type == .directory } else { return false } }
        for count in 1...4 {
            let groups = ExtraStreams.split(members, count: count)
            XCTAssertEqual(groups.count, count)
            XCTAssertEqual(groups.flatMap { $0 }.filter { !isFolder($0) }.map(name).sorted(), members.map(name).sorted(), "\(count) streams: every member once")
            // With several streams each makes its folders first (two tars racing to make one fail).
            for group in groups where count > 1 {
                var made: Set<String> = ["data"]
                for m in group {
                    let n = name(m)
                    guard n.hasPrefix("data/") else { continue }
                    XCTAssertTrue(made.contains(String(n[..<n.lastIndex(of: "/")!])), "\(n): its folder comes first")
                    if isFolder(m) { made.insert(n) }
                }
            }
            XCTAssertTrue(groups[0].map(name).contains("data/link") && groups[0].map(name).contains("deletions"), "the rest goes with the sync's own stream")
            let loads = groups.map(bytes)
            XCTAssertEqual(loads.reduce(0, +), bytes(members))
            XCTAssertLessThanOrEqual(loads.max()! - loads.min()!, 1 << 20, "\(count) streams: \(loads)")
        }
        // Too few files for the streams asked for: no empty stream.
        XCTAssertEqual(ExtraStreams.split(Array(members.prefix(2)), count: 4).count, 1)
    }

    /// Four tars make the same folders at once: each stream makes its folders before its files
    /// (GNU tar gives up on a file whose missing folder another tar made meanwhile). Ten first
    /// copies of a tree whose every folder is shared by several streams.
    func testStreamsSharingFoldersNeverTripOverEachOther() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 43)
        for top in 0..<6 {
            for sub in 0..<12 {
                let dir = "\(src)/t\(top)/s\(sub)/deep"
                try fixture.mkdir(dir)
                for f in 0..<2 { try fixture.write("\(dir)/f\(f)", size: 3000, text: true) }
                try fixture.write("\(src)/t\(top)/s\(sub)/g", size: 3000, text: true)
            }
        }
        let session = try connect()
        for run in 0..<10 {
            try sync(src, "shared\(run)", session: session, streams: 4)
            XCTAssertEqual(try oracle(src, "shared\(run)"), "", "run \(run)")
        }
    }

    /// Several streams through a jump host: every extra channel rides the one relayed connection.
    /// (The host is its own jump host: its sshd forwards to its own port.)
    func testSeveralStreamsThroughAJumpHost() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 44)
        for d in 0..<8 {
            try fixture.mkdir("\(src)/d\(d)")
            for f in 0..<6 { try fixture.write("\(src)/d\(d)/f\(f)", size: 150_000 + 10_000 * f, text: f % 2 == 0) }
        }
        let config = try harness.configuration(for: try host)
        let jump = try JumpHost(session: try SSHSession(connecting: config))
        defer { jump.close() }
        let session = try SSHSession(socket: try jump.connect(host: "127.0.0.1", port: try host.port, timeout: 10), configuration: config)
        defer { session.close() }
        try sync(src, "jumped", session: session, streams: 4)
        XCTAssertEqual(try oracle(src, "jumped"), "")
        for d in 0..<8 { try fixture.write("\(src)/d\(d)/f\(d % 6)", size: 200_000, text: false) }
        try FileManager.default.removeItem(atPath: "\(src)/d3")
        try sync(src, "jumped", session: session, streams: 3)
        XCTAssertEqual(try oracle(src, "jumped"), "")
    }

    /// An extra stream that fails leaves the destination as it was: the sync's command finds its
    /// stream incomplete before anything moves into place, and clears the staging folder.
    func testAFailedExtraStreamFailsTheSyncAndChangesNothing() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 41)
        for d in ["a", "b", "c", "d"] {
            try fixture.mkdir(src + "/" + d)
            for f in 0..<5 { try fixture.write("\(src)/\(d)/f\(f)", size: 20_000, text: true) }
        }
        try sync(src, "extras")
        let dest = try host.varSrc + "/extras"
        let before = snapshot(dest)
        for d in ["a", "b", "c", "d"] {
            for f in 0..<5 { try fixture.write("\(src)/\(d)/f\(f)", size: 30_000, text: true) }
            try fixture.write("\(src)/\(d)/new", size: 1000, text: true)
        }
        let shell = FailingExtraStreams(try connect())
        var options = Syncer.Options()
        options.streams = 3
        XCTAssertThrowsError(try Syncer.sync(from: src, to: "/var/src/extras", over: shell, options: options)) { error in
            XCTAssertTrue("\(error)".contains("extra stream"), "\(error)")
            XCTAssertTrue("\(error)".contains("stream 1: exit status 1") || "\(error)".contains("stream 2: exit status 1"), "\(error)")
        }
        XCTAssertEqual(shell.failed, 2, "both extra streams were started")
        XCTAssertEqual(snapshot(dest), before, "nothing moved into place")
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/.ferry/extras/stage"), "no staging folder left")

        try sync(src, "extras", streams: 3)
        try assertInSync(src, "extras")
    }

    /// Files that cannot be read whole keep their old copies whichever stream carried them (each
    /// stream names its own in a `discard.N` member).
    func testFilesThatCannotBeSentKeepTheirOldCopiesInEveryStream() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 42)
        let dirs = ["a", "b", "c", "d", "e", "f"]
        for d in dirs {
            try fixture.mkdir(src + "/" + d)
            for f in ["shrinks", "fine"] { try fixture.write("\(src)/\(d)/\(f)", size: 200_000, text: false) }
        }
        try sync(src, "discards")
        let dest = try host.varSrc + "/discards"
        let old = snapshot(dest)
        for d in dirs { for f in ["shrinks", "fine"] { try fixture.write("\(src)/\(d)/\(f)", size: 300_000, text: false) } }
        let scanned = try LocalScanner(root: src, excludes: ExcludeRules()).scanAll()
        for d in dirs { truncate("\(src)/\(d)/shrinks", 1000) }
        var options = Syncer.Options()
        options.streams = 3
        let result = try Syncer.sync(from: src, to: "/var/src/discards", over: try connect(), options: options, scanned: scanned)
        XCTAssertEqual(result.changedDuringSend.sorted(), dirs.map { "\(src)/\($0)/shrinks" })
        let now = snapshot(dest)
        for d in dirs {
            XCTAssertEqual(now["\(d)/shrinks"], old["\(d)/shrinks"], "\(d)/shrinks keeps its old copy")
            XCTAssertEqual(now["\(d)/fine"], FileManager.default.contents(atPath: "\(src)/\(d)/fine"))
        }
        try sync(src, "discards")
        try assertInSync(src, "discards")
    }
}

/// The real session, except that every extra stream's command fails at once. Unchecked Sendable:
/// `count` is touched only under `lock`; the session is Sendable.
final class FailingExtraStreams: RemoteShell, @unchecked Sendable {
    let inner: SSHSession
    private let lock = NSLock()
    private var count = 0
    var failed: Int { lock.withLock { count } }

    init(_ inner: SSHSession) { self.inner = inner }

    var name: String { inner.name }
    var onRemoteProcessGroup: ((Int32) -> Void)? {
        get { inner.onRemoteProcessGroup }
        set { inner.onRemoteProcessGroup = newValue }
    }

    func exec(_ command: RemoteCommand, stdin: ExecInput?, cancel: CancellationToken?,
              stdout: (UnsafeRawBufferPointer) -> Void, stderr: (UnsafeRawBufferPointer) -> Void) throws -> ExitStatus {
        if command.bytes.firstRange(of: Array(": > \"stream.$n.done\"".utf8)) != nil {
            lock.withLock { count += 1 }
            return .exited(1)
        }
        return try inner.exec(command, stdin: stdin, cancel: cancel, stdout: stdout, stderr: stderr)
    }

    func close() { inner.close() }
}
