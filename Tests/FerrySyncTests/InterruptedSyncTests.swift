import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest

/// A sync cut off mid-stream leaves no partial file under a final name, and the next sync converges.
final class InterruptedSyncTests: SyncTestCase {
    func testCutConnectionsLeaveNoPartialFilesAndConverge() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 11)
        try fixture.mkdir(src + "/big")
        for i in 0..<6 { try fixture.write("\(src)/big/file\(i)", size: 700_000, text: false) }
        for i in 0..<50 { try fixture.write("\(src)/small\(i)", size: 3_000, text: true) }
        try sync(src, "cut")
        let oldContents = snapshot(try host.varSrc + "/cut")

        // New contents everywhere, then syncs cut at several points of the stream.
        for i in 0..<6 { try fixture.write("\(src)/big/file\(i)", size: 700_000 + i, text: false) }
        for i in 0..<50 { try fixture.write("\(src)/small\(i)", size: 3_100, text: true) }
        let newContents = snapshot(src)
        var rng = FixtureRandom(seed: 99)
        for attempt in 0..<5 {
            let cut = 200_000 + rng.below(3_500_000)
            let relay = try SocketRelay(port: try host.port, cutAfter: cut)
            let session = try SSHSession(socket: relay.clientSocket, configuration: try harness.configuration(for: try host))
            XCTAssertThrowsError(try sync(src, "cut", session: session), "attempt \(attempt) cut at \(cut) bytes")
            session.close()
            // Every file under its final name is whole: the old version or the new one.
            for (path, data) in snapshot(try host.varSrc + "/cut") {
                XCTAssertTrue(data == oldContents[path] || data == newContents[path], "\(path) is partial after a cut at \(cut) bytes")
            }
        }
        try sync(src, "cut")
        try assertInSync(src, "cut", "after the interrupted syncs")
        XCTAssertFalse(FileManager.default.fileExists(atPath: try host.varSrc + "/.ferry/cut/stage"), "staging is cleaned up")
    }
}
