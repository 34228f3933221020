import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// 60 rounds of random mutations of a tree, each followed by a sync and both oracles.
final class RandomizedSyncTests: SyncTestCase {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["FERRY_SYNC_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0xF3_2217
    static let excludes = ["__pycache__/", "*.pyc", "/.env", "data/"]

    func testRandomMutationRounds() throws {
        print("randomized sync seed: \(String(Self.seed, radix: 16)) (set FERRY_SYNC_SEED to replay another)")
        var rng = FixtureRandom(seed: Self.seed)
        let src = scratch()
        var fixture = TreeFixture(seed: Self.seed)
        for d in ["a", "a/b", "c", "c/d/e", "empty"] { try fixture.mkdir(src + "/" + d) }
        for i in 0..<40 { try fixture.write("\(src)/\(["a", "a/b", "c", "c/d/e"][i % 4])/f\(i)", size: rng.below(3000), text: true) }
        let session = try connect()
        try sync(src, "random", excludes: Self.excludes, session: session)

        for round in 0..<60 {
            let checksum = round % 3 == 2
            var log: [String] = []
            for _ in 0..<(1 + rng.below(6)) { log.append(TreeMutation.mutate(src, &rng, allowSameSizeEdits: checksum)) }
            let deleteExcluded = round % 5 == 4
            // A dry run predicts exactly what the real run then does (issue 7.16).
            let predicted = try sync(src, "random", excludes: Self.excludes, deleteExcluded: deleteExcluded, checksum: checksum,
                                     dryRun: true, session: session).plan.items.map(Itemize.line)
            // One to four tar streams (ExtraStreams), whatever the size of the change.
            let done = try sync(src, "random", excludes: Self.excludes, deleteExcluded: deleteExcluded, checksum: checksum,
                                session: session, streams: 1 + round % 4).plan.items.map(Itemize.line)
            XCTAssertEqual(predicted, done, "round \(round): --dry-run --itemize differs from the real run")
            try assertInSync(src, "random", excludes: Self.excludes, deleteExcluded: deleteExcluded, checksum: checksum,
                             "round \(round) after: \(log.joined(separator: "; "))")
            if testRun?.failureCount ?? 0 > 0 { break }
        }
    }
}
