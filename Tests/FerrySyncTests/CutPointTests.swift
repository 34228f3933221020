import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14 (the sync engine's part): connections cut at seeded points spread over the whole
/// byte range of a first copy and of an update. After each cut: every file under its final name
/// is the old or the new version, the destination's lock is free, and the next sync converges.
/// CI runs `FERRY_CUTS` (default 12) points; `scripts/faults` runs 100.
final class CutPointTests: SyncTestCase {
    static let cuts = ProcessInfo.processInfo.environment["FERRY_CUTS"].flatMap { Int($0) } ?? 12
    static let seed: UInt64 = ProcessInfo.processInfo.environment["FERRY_SYNC_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0xC075

    /// Client → server bytes of one uncut sync of `src` into a fresh `name`.
    func bytesOfOneSync(_ src: String, _ name: String) throws -> Int {
        let relay = try SocketRelay(port: try host.port)
        let session = try SSHSession(socket: relay.clientSocket, configuration: try harness.configuration(for: try host))
        try sync(src, name, session: session)
        session.close()
        return relay.upstreamBytes
    }

    func lockIsFree(_ name: String) throws -> Bool {
        let lock = try host.varSrc + "/.ferry/\(name)/lock"
        guard FileManager.default.fileExists(atPath: lock) else { return true }
        return try Command.run(["flock", "-n", lock, "true"]).status == 0
    }

    func testSeededCutsOverFirstCopiesAndUpdates() throws {
        var rng = FixtureRandom(seed: Self.seed)
        print("cut points: \(Self.cuts), seed \(String(Self.seed, radix: 16)) (FERRY_CUTS, FERRY_SYNC_SEED)")
        let src = scratch()
        var fixture = TreeFixture(seed: Self.seed)
        try fixture.mkdir(src + "/big")
        for i in 0..<4 { try fixture.write("\(src)/big/f\(i)", size: 400_000, text: false) }
        for i in 0..<40 { try fixture.write("\(src)/s\(i)", size: 2_000 + rng.below(3_000), text: true) }
        let oldVersion = snapshot(src)
        let firstBytes = try bytesOfOneSync(src, "cut-probe")
        for i in 0..<4 { try fixture.write("\(src)/big/f\(i)", size: 400_001 + i, text: false) }
        for i in 0..<40 where i % 2 == 0 { try fixture.write("\(src)/s\(i)", size: 2_500, text: true) }
        let newVersion = snapshot(src)
        let updateBytes = try bytesOfOneSync(src, "cut-probe")  // an update of the probe copy

        for k in 0..<Self.cuts {
            let update = k % 2 == 1
            let name = "cut-\(k)"
            if update {
                // Start from the old version, synced whole.
                let old = scratch("old")
                for (rel, data) in oldVersion {
                    try FileManager.default.createDirectory(atPath: (old + "/" + rel as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                    _ = FileManager.default.createFile(atPath: old + "/" + rel, contents: data)
                }
                try sync(old, name)
            }
            let total = update ? updateBytes : firstBytes
            let slot = k / 2, slots = max(1, (Self.cuts + 1) / 2)
            let cut = max(1, (total * slot + rng.below(max(1, total / slots))) / slots)
            let relay = try SocketRelay(port: try host.port, cutAfter: cut)
            if let session = try? SSHSession(socket: relay.clientSocket, configuration: try harness.configuration(for: try host)) {
                _ = try? sync(src, name, session: session)
                session.close()
            }
            let label = "\(update ? "update" : "first copy") cut at \(cut) of \(total) bytes"
            usleep(100_000)  // the remote side notices the cut
            for (rel, data) in snapshot(try host.varSrc + "/" + name) {
                XCTAssertTrue(data == newVersion[rel] || data == oldVersion[rel], "\(label): \(rel) is partial")
            }
            XCTAssertTrue(try lockIsFree(name), "\(label): the lock outlived the cut")
            try sync(src, name)
            try assertInSync(src, name, label)
            if testRun?.failureCount ?? 0 > 0 { break }
        }
    }
}
