import FerryXCTestSupport
import Foundation
import XCTest

final class SyncCommandTests: HostTestCase {
    func options() throws -> [String] {
        ["-i", try harness.clientKey(.ed25519), "--known-hosts", try harness.knownHostsFile]
    }

    func testSyncItemizeDryRunAndStats() throws {
        let src = NSTemporaryDirectory() + "ferry-cli-sync-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: src) }
        try FileManager.default.createDirectory(atPath: src + "/dir", withIntermediateDirectories: true)
        try "one".write(toFile: src + "/dir/one", atomically: false, encoding: .utf8)
        try "secret".write(toFile: src + "/.env", atomically: false, encoding: .utf8)
        let dest = "root@127.0.0.1:\(try host.port):/var/src/cli"

        let first = try FerryBinary.run(["sync", src, dest, "--exclude", ".env", "--itemize"] + (try options()))
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(first.stdout, "cd+++++++++ ./\ncd+++++++++ dir/\n<f+++++++++ dir/one\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/cli/.env"))

        let again = try FerryBinary.run(["sync", src, "ssh://root@127.0.0.1:\(try host.port)/var/src/cli", "--exclude", ".env", "--itemize"] + (try options()))
        XCTAssertEqual(again.stdout, "", "nothing to do")

        try "two".write(toFile: src + "/dir/two", atomically: false, encoding: .utf8)
        let dry = try FerryBinary.run(["sync", src, dest, "--exclude", ".env", "--dry-run"] + (try options()))
        XCTAssertTrue(dry.stdout.contains("<f+++++++++ dir/two"), dry.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/cli/dir/two"), "--dry-run changes nothing")

        let stats = try FerryBinary.run(["sync", src, dest, "--exclude", ".env", "--stats"] + (try options()))
        XCTAssertTrue(stats.stdout.contains("files sent: 1 (3 bytes of file data"), stats.stdout)
        XCTAssertTrue(stats.stdout.contains("entries scanned: 4"), stats.stdout)
    }

    func testBadDestinationsAndRefusals() throws {
        let src = NSTemporaryDirectory() + "ferry-cli-sync-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: src) }
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        for bad in ["host", "host:relative/path", "host:/var/src/../etc", "ssh://host"] {
            let r = try FerryBinary.run(["sync", src, bad])
            XCTAssertEqual(r.status, 2, bad)
            XCTAssertFalse(r.stderr.isEmpty, bad)
        }
        let foreign = try host.varSrc + "/occupied"
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
        try "x".write(toFile: foreign + "/keep", atomically: false, encoding: .utf8)
        let refused = try FerryBinary.run(["sync", src, "root@127.0.0.1:\(try host.port):/var/src/occupied"] + (try options()))
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("was never synced by ferry"), refused.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: foreign + "/keep"))
    }
}
