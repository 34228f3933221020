import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 7: regression tests for the sync engine's data-loss, locking and target-fault defects.
final class SyncHardeningTests: SyncTestCase {
    /// type, contents (or link target) and mode of every entry: what "the same final tree" means
    /// here (directory mtimes change with every deletion inside them, on both sides).
    func summary(_ root: String) throws -> [String: String] {
        var out: [String: String] = [:]
        var scanner = LocalScanner(root: root, excludes: ExcludeRules())
        for e in try scanner.scan().entries where !e.path.isEmpty {
            var text = "\(e.kind) \(String(e.mode, radix: 8))"
            if e.kind == .file { text += " \(Data(FileManager.default.contents(atPath: root + "/" + e.displayPath) ?? Data()).base64EncodedString()) \(e.mtime)" }
            if let t = e.linkTarget { text += " -> \(String(decoding: t, as: UTF8.self))" }
            out[e.displayPath] = text
        }
        return out
    }

    /// 7.1: without --delete-excluded, excluded entries under a directory gone from the source
    /// stay, with the directories that hold them, exactly as rsync leaves them.
    func testExcludedEntriesUnderDeletedDirectoriesStayAsRsyncLeavesThem() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 71)
        for d in ["keep", "olddir/sub", "swap", "gone"] { try fixture.mkdir(src + "/" + d) }
        for f in ["keep/a.txt", "olddir/y.txt", "olddir/sub/z.txt", "swap/r.txt", "gone/g.txt"] { try fixture.write(src + "/" + f, text: f) }
        let excludes = ["*.log"]
        try sync(src, "protect", excludes: excludes)
        let dest = try host.varSrc + "/protect"
        for d in ["olddir/keepdir", "olddir/logs.log"] { try fixture.mkdir(dest + "/" + d) }
        for f in ["olddir/x.log", "olddir/keepdir/w.log", "olddir/logs.log/inner.txt", "swap/q.log"] { try fixture.write(dest + "/" + f, text: f) }
        Bytes.removeTree(Array((src + "/olddir").utf8))
        Bytes.removeTree(Array((src + "/gone").utf8))
        Bytes.removeTree(Array((src + "/swap").utf8))
        try fixture.write(src + "/swap", text: "now a file")

        // rsync's own result on a copy of the target.
        let expected = scratch("expected")
        try Command.check(["cp", "-a", dest + "/.", expected])
        let r = try Command.run(["rsync", "-rlptD", "--delete"] + excludes.map { "--exclude=\($0)" } + [src + "/", expected + "/"])
        XCTAssertEqual(r.status, 23, "rsync reports what it could not delete: \(r.errorOutput)")

        let result = try sync(src, "protect", excludes: excludes)
        XCTAssertEqual(try summary(dest), try summary(expected))
        XCTAssertEqual(result.plan.blocked.map { String(decoding: $0, as: UTF8.self) }, ["swap"])
        XCTAssertEqual(Set(result.plan.keptDirectories.map { String(decoding: $0, as: UTF8.self) }), ["olddir", "olddir/keepdir", "swap"])
        XCTAssertFalse(result.complete)

        // With --delete-excluded everything goes and the file takes the directory's place.
        try sync(src, "protect", excludes: excludes, deleteExcluded: true)
        try assertInSync(src, "protect", excludes: excludes, deleteExcluded: true)
    }

    /// 7.2, 7.9: files that cannot be read whole never reach their final names; the target keeps
    /// the old copies, the sync says which files and why, and the next sync converges.
    func testUnreadableShrunkAndVanishedFilesKeepTheOldCopies() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 72)
        for f in ["shrinks", "unreadable", "vanishes", "fine"] { try fixture.write(src + "/" + f, size: 200_000, text: false) }
        try sync(src, "faults")
        let dest = try host.varSrc + "/faults"
        let old = try summary(dest)
        for f in ["shrinks", "unreadable", "vanishes", "fine"] { try fixture.write(src + "/" + f, size: 300_000, text: false) }
        let scanned = try LocalScanner(root: src, excludes: ExcludeRules()).scanAll()
        // Between the scan and the send: one file shrinks, one becomes unreadable (a directory
        // opens but fails every read with EISDIR), one vanishes.
        truncate(src + "/shrinks", 1000)
        try FileManager.default.removeItem(atPath: src + "/unreadable")
        try fixture.mkdir(src + "/unreadable")
        try FileManager.default.removeItem(atPath: src + "/vanishes")

        let result = try Syncer.sync(from: src, to: "/var/src/faults", over: try connect(), options: .init(), scanned: scanned)
        XCTAssertEqual(result.changedDuringSend, [src + "/shrinks"])
        XCTAssertEqual(result.unreadable.map(\.path), [src + "/unreadable"])
        XCTAssertEqual(result.unreadable.first?.reason, "Is a directory")
        XCTAssertEqual(result.vanished, [src + "/vanishes"])
        XCTAssertFalse(result.complete)
        let now = try summary(dest)
        for f in ["shrinks", "unreadable", "vanishes"] { XCTAssertEqual(now[f], old[f], "\(f) keeps its old copy") }
        XCTAssertEqual(now["fine"], try summary(src)["fine"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/.ferry/faults/stage"))

        try sync(src, "faults")
        try assertInSync(src, "faults")
    }

    /// 7.7: a second sync to a locked destination is refused at once and changes nothing; the
    /// lock goes with its holder.
    func testALockedDestinationIsRefusedAndFreedWithItsHolder() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 73)
        try fixture.write(src + "/f", size: 100, text: true)
        let holder = try connect()
        let cancel = try CancellationToken()
        let held = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? holder.exec(RemoteCommand(["sh", "-c", "mkdir -p /var/src/.ferry/locked && exec flock /var/src/.ferry/locked/lock sh -c 'echo held; exec sleep 60'"]),
                                 cancel: cancel, stdout: { _ in held.signal() }, stderr: { _ in })
            done.signal()
        }
        XCTAssertEqual(held.wait(timeout: .now() + 5), .success)
        XCTAssertThrowsError(try sync(src, "locked")) { error in
            XCTAssertTrue("\(error)".contains("another ferry sync to /var/src/locked is running"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/locked"))
        cancel.cancel()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        try sync(src, "locked")
        try assertInSync(src, "locked")
    }

    /// 7.8: a destination that is a mount point stages inside itself and syncs like any other.
    func testAMountPointDestination() throws {
        let session = try connect()
        XCTAssertEqual(try run(session, ["sh", "-c", "mkdir -p /var/src/mnt && mount -t tmpfs -o size=64m tmpfs /var/src/mnt"]).status, .exited(0))
        defer { _ = try? run(session, ["umount", "/var/src/mnt"]) }
        let src = scratch()
        var fixture = TreeFixture(seed: 74)
        for d in ["a/b", "c"] { try fixture.mkdir(src + "/" + d) }
        for i in 0..<30 { try fixture.write("\(src)/\(["a", "a/b", "c"][i % 3])/f\(i)", size: 1000 + i, text: true) }
        try sync(src, "mnt", force: true, session: session)
        XCTAssertEqual(try remoteOracle(src, "/var/src/mnt"), "")
        for i in 0..<10 { try fixture.write("\(src)/c/f\(i)-new", size: 50, text: true) }
        Bytes.removeTree(Array((src + "/a/b").utf8))
        try fixture.write(src + "/a/f0", size: 77, text: true)
        try sync(src, "mnt", session: session)
        XCTAssertEqual(try remoteOracle(src, "/var/src/mnt"), "")
        XCTAssertEqual(try run(session, ["ls", "-A", "/var/src/mnt/.ferry-stage"]).status, .exited(2), "no stage is left")
    }

    /// 7.10, 7.9: a first sync that fails after moving the tree into place can be run again
    /// without --force, and every failure removes the stage.
    func testAFailedFirstSyncCanBeRunAgain() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 75)
        for i in 0..<10 { try fixture.write("\(src)/f\(i)", size: 500, text: true) }
        try host.setTool("tar", script: "#!/bin/sh\ncase \"$*\" in *directories.tar*) echo 'injected failure' >&2; exit 1;; esac\nexec /bin/tar \"$@\"\n")
        defer { try? host.setTool("tar", script: nil) }
        XCTAssertThrowsError(try sync(src, "rerun")) { XCTAssertTrue("\($0)".contains("injected failure"), "\($0)") }
        XCTAssertTrue(FileManager.default.fileExists(atPath: try host.varSrc + "/rerun/f0"), "the failure came after the tree moved in")
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/.ferry/rerun/stage"))
        try host.setTool("tar", script: nil)
        try sync(src, "rerun")
        try assertInSync(src, "rerun")
    }

    /// 7.6: a rename that is not util-linux's (Perl's evaluates its first argument) is refused
    /// before anything changes.
    func testAPerlRenameIsNeverUsed() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 76)
        try fixture.write(src + "/f", size: 10, text: true)
        try fixture.write(src + "/g", size: 10, text: true)
        try sync(src, "perl")
        let before = try summary(try host.varSrc + "/perl")
        let perl = "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'perl rename 1.14'; exit 0; }\ntouch /var/src/perl-rename-ran\n"
        try host.setTool("rename.ul", script: perl)
        try host.setTool("rename", script: perl)
        defer { try? host.setTool("rename.ul", script: nil); try? host.setTool("rename", script: nil) }
        try FileManager.default.removeItem(atPath: src + "/g")
        try fixture.write(src + "/f", size: 20, text: true)
        XCTAssertThrowsError(try sync(src, "perl")) { XCTAssertTrue("\($0)".contains("util-linux rename"), "\($0)") }
        XCTAssertEqual(try summary(try host.varSrc + "/perl"), before, "nothing deleted or replaced")
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/perl-rename-ran"))
    }

    /// 7.14: 100 syncs that fail while streaming leave no descriptor behind.
    func testFailedSyncsLeakNoDescriptors() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 77)
        try fixture.write(src + "/big", size: 3_000_000, text: false)
        let session = try connect()
        try sync(src, "leak", session: session)
        try fixture.write(src + "/big", size: 3_000_001, text: false)
        try host.setTool("tar", script: "#!/bin/sh\nexit 1\n")
        defer { try? host.setTool("tar", script: nil) }
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
        let before = descriptors()
        for _ in 0..<100 { XCTAssertThrowsError(try sync(src, "leak", session: session)) }
        XCTAssertEqual(descriptors(), before)
    }

    /// 7.18: one local path longer than PATH_MAX is skipped with a warning, as rsync skips it.
    func testAPathOverPathMaxIsSkippedNotFatal() throws {
        let src = scratch()
        addTeardownBlock { _ = try? Command.run(["rm", "-rf", src]) }
        try "x".write(toFile: src + "/ok", atomically: false, encoding: .utf8)
        let name = String(repeating: "d", count: 250)
        var fd = open(src, O_RDONLY | O_DIRECTORY)
        for _ in 0..<17 {  // 17 levels of 251 bytes: past PATH_MAX (4096) from any root
            XCTAssertEqual(mkdirat(fd, name, 0o755), 0)
            let next = openat(fd, name, O_RDONLY | O_DIRECTORY)
            close(fd)
            fd = next
        }
        let file = openat(fd, "file", O_WRONLY | O_CREAT, 0o644)
        close(file)
        close(fd)
        let result = try sync(src, "deep")
        XCTAssertFalse(result.tooLong.isEmpty)
        XCTAssertTrue(FileManager.default.fileExists(atPath: try host.varSrc + "/deep/ok"))
        _ = try? Command.run(["rm", "-rf", try host.varSrc + "/deep"])
    }
}
