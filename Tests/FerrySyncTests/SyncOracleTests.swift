import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class SyncOracleTests: SyncTestCase {
    func testLNBitsTreeInitialNoopAndChange() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 7)
        try fixture.makeLNBitsTree(at: src)
        let first = try sync(src, "lnbits-src")
        XCTAssertGreaterThan(first.plan.sends.count, 500)
        try assertInSync(src, "lnbits-src", "after the initial copy")
        // The oracle does see a difference when there is one.
        let victim = try host.varSrc + "/lnbits-src/pyproject.toml"
        let saved = try Data(contentsOf: URL(fileURLWithPath: victim))
        Bytes.write(Array(victim.utf8), Array("tampered".utf8))
        XCTAssertNotEqual(try oracle(src, "lnbits-src"), "")
        try saved.write(to: URL(fileURLWithPath: victim))
        Bytes.setMtime(Array(victim.utf8), seconds: 0, nanoseconds: 0)
        XCTAssertTrue(try oracle(src, "lnbits-src").contains("pyproject.toml"))
        try sync(src, "lnbits-src")

        let noop = try sync(src, "lnbits-src")
        XCTAssertTrue(noop.plan.isEmpty)
        XCTAssertEqual(noop.bytesSent, 0, "an unchanged tree sends no file data")

        Bytes.write(Bytes.path(src, Array("lnbits/core/module_1.py".utf8)), Array("changed\n".utf8))
        Bytes.removeTree(Bytes.path(src, Array("lnbits/static/images".utf8)))
        let change = try sync(src, "lnbits-src")
        XCTAssertEqual(change.plan.sends.map(\.displayPath), ["lnbits/core/module_1.py"])
        try assertInSync(src, "lnbits-src", "after a change")
        // ferry's state lives beside the destination, never inside it.
        XCTAssertTrue(FileManager.default.fileExists(atPath: try host.varSrc + "/.ferry/lnbits-src/synced"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/lnbits-src/.ferry"))
    }

    func testHardNamesRoundTrip() throws {
        let src = scratch()
        let fixture = TreeFixture(seed: 1)
        for name in TreeFixture.hardNames {
            try fixture.writeFile(src, name: name, contents: name)
        }
        let deep = (0..<40).map { "level\($0)" }.joined(separator: "/")
        try FileManager.default.createDirectory(atPath: src + "/" + deep, withIntermediateDirectories: true)
        try fixture.writeFile(src + "/" + deep, name: TreeFixture.hardNames[12], contents: [1, 2, 3])
        try sync(src, "names")
        try assertInSync(src, "names", "with hard names")
        for name in TreeFixture.hardNames {
            XCTAssertNotNil(Bytes.stat(Bytes.path(try host.varSrc + "/names", name)), String(decoding: name, as: UTF8.self))
        }
    }

    func testTypeChangesBothWays() throws {
        let src = scratch()
        try FileManager.default.createDirectory(atPath: src + "/was-dir", withIntermediateDirectories: true)
        Bytes.write(Bytes.path(src, Array("was-dir/inner".utf8)), [1])
        Bytes.write(Bytes.path(src, Array("was-file".utf8)), [2])
        try FileManager.default.createSymbolicLink(atPath: src + "/was-link", withDestinationPath: "was-file")
        Bytes.write(Bytes.path(src, Array("becomes-link".utf8)), [3])
        try sync(src, "types")
        try assertInSync(src, "types")

        Bytes.removeTree(Bytes.path(src, Array("was-dir".utf8)))
        Bytes.write(Bytes.path(src, Array("was-dir".utf8)), [4])
        Bytes.removeTree(Bytes.path(src, Array("was-file".utf8)))
        try FileManager.default.createDirectory(atPath: src + "/was-file/sub", withIntermediateDirectories: true)
        Bytes.removeTree(Bytes.path(src, Array("was-link".utf8)))
        try FileManager.default.createDirectory(atPath: src + "/was-link", withIntermediateDirectories: true)
        Bytes.removeTree(Bytes.path(src, Array("becomes-link".utf8)))
        try FileManager.default.createSymbolicLink(atPath: src + "/becomes-link", withDestinationPath: "/etc/passwd")
        _ = mkfifo(src + "/pipe", 0o640)
        try sync(src, "types")
        try assertInSync(src, "types", "after type changes")
    }

    /// A symlink on the target where the source has a directory is replaced, never followed.
    func testNeverWritesThroughATargetSymlink() throws {
        let outside = scratch("outside")
        let src = scratch()
        try FileManager.default.createDirectory(atPath: src + "/sub", withIntermediateDirectories: true)
        Bytes.write(Bytes.path(src, Array("sub/file".utf8)), [9])
        try sync(src, "nofollow")
        let dest = try host.varSrc + "/nofollow"
        Bytes.removeTree(Bytes.path(dest, Array("sub".utf8)))
        try FileManager.default.createSymbolicLink(atPath: dest + "/sub", withDestinationPath: outside)
        try sync(src, "nofollow")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outside), [])
        try assertInSync(src, "nofollow")
    }

    func testRefusesAForeignDestinationUnlessForced() throws {
        let src = scratch()
        Bytes.write(Bytes.path(src, Array("a".utf8)), [1])
        let dest = try host.varSrc + "/foreign"
        try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
        Bytes.write(Bytes.path(dest, Array("precious".utf8)), [7])
        XCTAssertThrowsError(try sync(src, "foreign")) { error in
            XCTAssertTrue("\(error)".contains("was never synced by ferry"), "\(error)")
            XCTAssertTrue("\(error)".contains("--force"), "\(error)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dest + "/precious"))
        try sync(src, "foreign", force: true)
        try assertInSync(src, "foreign")
    }

    func testExcludesProtectTargetPathsUnlessDeleteExcluded() throws {
        let src = scratch()
        Bytes.write(Bytes.path(src, Array("keep.py".utf8)), [1])
        try FileManager.default.createDirectory(atPath: src + "/__pycache__", withIntermediateDirectories: true)
        Bytes.write(Bytes.path(src, Array("__pycache__/keep.cpython.pyc".utf8)), [2])
        Bytes.write(Bytes.path(src, Array(".env".utf8)), Array("SECRET=1".utf8))
        let excludes = [".env", "__pycache__/", "*.pyc"]
        try sync(src, "ex", excludes: excludes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/ex/.env"))
        // Excluded paths that exist on the target stay, unless --delete-excluded.
        Bytes.write(Bytes.path(try host.varSrc + "/ex", Array(".env".utf8)), Array("TARGET=1".utf8))
        try sync(src, "ex", excludes: excludes)
        XCTAssertTrue(FileManager.default.fileExists(atPath: try host.varSrc + "/ex/.env"))
        try assertInSync(src, "ex", excludes: excludes)
        try sync(src, "ex", excludes: excludes, deleteExcluded: true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/ex/.env"))
        try assertInSync(src, "ex", excludes: excludes, deleteExcluded: true)
    }

    /// Touched files (same size, same content, new mtime) get their mtime, not a rewrite.
    func testTouchedFilesAreNotResent() throws {
        let src = scratch()
        for i in 0..<20 { Bytes.write(Bytes.path(src, Array("f\(i)".utf8)), Array("content \(i)".utf8)) }
        try sync(src, "touched")
        for i in 0..<10 { Bytes.setMtime(Bytes.path(src, Array("f\(i)".utf8)), seconds: 1_700_000_000, nanoseconds: i % 3) }
        chmod(src + "/f0", 0o600)
        Bytes.write(Bytes.path(src, Array("f19".utf8)), Array("content XX".utf8))  // same size, new content
        let r = try sync(src, "touched")
        XCTAssertEqual(r.plan.sends.map(\.displayPath), ["f19"])
        XCTAssertEqual(r.plan.metadataOnly.count, 10)
        try assertInSync(src, "touched")
    }

    func testChecksumFindsSameSizeSameMtimeChanges() throws {
        let src = scratch()
        let p = Bytes.path(src, Array("data.bin".utf8))
        Bytes.write(p, Array("aaaa".utf8))
        Bytes.setMtime(p, seconds: 1_600_000_000, nanoseconds: 5)
        try sync(src, "sum")
        Bytes.write(p, Array("bbbb".utf8))
        Bytes.setMtime(p, seconds: 1_600_000_000, nanoseconds: 5)
        XCTAssertTrue(try sync(src, "sum", dryRun: true).plan.isEmpty, "size and mtime say unchanged")
        let r = try sync(src, "sum", checksum: true)
        XCTAssertEqual(r.plan.items.map(Itemize.line), ["<fc........ data.bin"])
        try assertInSync(src, "sum", checksum: true)
    }
}
