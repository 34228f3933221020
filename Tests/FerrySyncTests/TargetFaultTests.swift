import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Faults on the target: each gives a clear error or is repaired, and nothing is written outside
/// `/var/src/NAME` and `/var/src/.ferry`.
final class TargetFaultTests: SyncTestCase {
    override class var hostUsers: [TestUser] { [TestUser(name: "limited", uid: 4270, sudo: false)] }

    override func setUp() {
        super.setUp()
        try? host.clearVarSrc()  // each test starts from an empty /var/src
    }

    /// Runs `script` as root inside the host's mount namespace (for its own mounts).
    func inHostNamespace(_ script: String) throws {
        let h = try host
        let pid = try Command.check(["pgrep", "-f", "-o", "sshd -D -f \(h.directory)/sshd_config"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        try Command.check(["nsenter", "-t", pid, "-m", "sh", "-c", script])
    }

    func source() throws -> String {
        let src = scratch()
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        Bytes.write(Bytes.path(src, Array("d/f".utf8)), Array("one".utf8))
        Bytes.write(Bytes.path(src, Array("top".utf8)), Array("two".utf8))
        return src
    }

    func expectFailure(_ body: () throws -> Void, containing text: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("expected a failure containing \"\(text)\"", file: file, line: line)
        } catch {
            XCTAssertTrue("\(error)".contains(text), "\(error)", file: file, line: line)
            print("fault message: \(error)")
        }
    }

    /// What is in /var/src besides the named trees and .ferry.
    func strays(_ allowed: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: try host.varSrc).filter { !allowed.contains($0) && $0 != ".ferry" }.sorted()
    }

    func testAReadOnlyVarSrcFailsClearlyAndChangesNothing() throws {
        let src = try source()
        try sync(src, "ro")
        let before = snapshot(try host.varSrc + "/ro")
        Bytes.write(Bytes.path(src, Array("top".utf8)), Array("changed".utf8))
        try inHostNamespace("mount -o remount,bind,ro /var/src")
        defer { try? inHostNamespace("mount -o remount,bind,rw /var/src") }
        expectFailure({ try sync(src, "ro") }, containing: "Read-only file system")
        expectFailure({ try sync(src, "ro-first") }, containing: "Read-only file system")
        XCTAssertEqual(snapshot(try host.varSrc + "/ro"), before)
        try inHostNamespace("mount -o remount,bind,rw /var/src")
        try sync(src, "ro")
        try assertInSync(src, "ro")
    }

    func testTheDestinationIsAFile() throws {
        let path = try host.varSrc + "/afile"
        try "not a tree".write(toFile: path, atomically: true, encoding: .utf8)
        expectFailure({ try sync(try source(), "afile") }, containing: "/var/src/afile exists and is not a directory")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "not a tree")
    }

    func testASymlinkAtTheDestinationIsRefusedAndNothingIsWrittenThroughIt() throws {
        let outside = scratch("outside")
        try FileManager.default.createSymbolicLink(atPath: try host.varSrc + "/linked", withDestinationPath: outside)
        expectFailure({ try sync(try source(), "linked") }, containing: "/var/src/linked is a symbolic link; ferry never writes through one")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outside), [], "nothing written through the link")
        XCTAssertEqual(try strays(["linked"]), [])
    }

    /// Folders above the destination are trusted (impermanence makes /var/src a symlink into
    /// /persist): resolved once by the target, synced there, and reported.
    func testASymlinkAboveTheDestinationIsResolvedOnceAndReported() throws {
        let src = try source()
        let varSrc = try host.varSrc
        try FileManager.default.createDirectory(atPath: varSrc + "/persist", withIntermediateDirectories: true)
        XCTAssertEqual(symlink("/var/src/persist", varSrc + "/link"), 0)
        let cache = ListingCache(directory: scratch("cache"))
        XCTAssertEqual(try sync(src, "link/app", cache: cache).resolvedDestination, "/var/src/persist/app")
        XCTAssertEqual(try oracle(src, "persist/app"), "")
        XCTAssertTrue(FileManager.default.fileExists(atPath: varSrc + "/persist/.ferry/app/synced"), "the state folder sits beside the real destination")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: varSrc + "/link"), "/var/src/persist")
        try sync(src, "link/app", cache: cache)
        let again = try sync(src, "link/app", dryRun: true, cache: cache)
        XCTAssertEqual(again.listedChanges, 0)
        XCTAssertEqual(again.resolvedDestination, "/var/src/persist/app")
        XCTAssertNil(try sync(src, "plain", cache: cache).resolvedDestination, "nothing to report without a symlink")
    }

    func testAStagingFolderLeftByACrashIsCleared() throws {
        let src = try source()
        try sync(src, "staged")
        let state = try host.varSrc + "/.ferry/staged"
        try FileManager.default.createDirectory(atPath: state + "/stage/data/d", withIntermediateDirectories: true)
        try "half".write(toFile: state + "/stage/data/d/f", atomically: true, encoding: .utf8)
        Bytes.write(Bytes.path(src, Array("d/f".utf8)), Array("new contents".utf8))
        try sync(src, "staged")
        try assertInSync(src, "staged")
        XCTAssertFalse(FileManager.default.fileExists(atPath: state + "/stage"), "the old stage is gone")
    }

    func testALoginWithoutRightsToVarSrcFailsClearly() throws {
        let session = try connect(user: "limited")
        defer { session.close() }
        expectFailure({ try sync(try source(), "noperm", session: session) }, containing: "Permission denied")
        XCTAssertEqual(try strays([]), [], "nothing was written")
    }
}
