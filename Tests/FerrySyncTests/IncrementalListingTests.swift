import FerrySync
import FerryTarget
import FerryTestSupport
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14: the incremental (ctime) listing must equal the full one, whatever happened on the
/// host since the last sync.
final class IncrementalListingTests: SyncTestCase {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["FERRY_SYNC_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0x1C_7E11
    static let rounds = ProcessInfo.processInfo.environment["FERRY_INCREMENTAL_ROUNDS"].flatMap(Int.init) ?? 24

    func entries(_ r: Syncer.Result) -> [String] {
        r.destinationManifest.entries.map { e in
            "\(e.kind) \(String(e.mode, radix: 8)) \(e.size) \(e.mtime) \(DisplayText.escape(e.path)) \(e.linkTarget.map { DisplayText.escape($0) } ?? "")"
        }
    }

    /// Seeded rounds of host-side changes, each checked two ways: a dry run over the cache (incremental)
    /// lists exactly what one without it (full) lists, and changes nothing; every other round a real
    /// sync over the cache converges (rsync oracle), and the next listing is incremental and empty.
    func testIncrementalListingEqualsTheFullOne() throws {
        print("incremental listing seed: \(String(Self.seed, radix: 16)) (set FERRY_SYNC_SEED to replay another)")
        var rng = FixtureRandom(seed: Self.seed)
        let src = scratch(), cacheDir = scratch("cache")
        let cache = ListingCache(directory: cacheDir)
        var fixture = TreeFixture(seed: Self.seed)
        for d in ["a", "a/b", "c", "c/d/e", "empty"] { try fixture.mkdir(src + "/" + d) }
        for i in 0..<40 { try fixture.write("\(src)/\(["a", "a/b", "c", "c/d/e"][i % 4])/f\(i)", size: rng.below(3000), text: true) }
        let varSrc = try host.varSrc
        let dest = varSrc + "/inc"
        // Directories made before the first sync, moved in later: their children keep old ctimes.
        let outside = varSrc + "/outside"
        for i in 0..<Self.rounds {
            try fixture.mkdir("\(outside)/moved\(i)/deep")
            try fixture.write("\(outside)/moved\(i)/deep/old", size: 10 + i, text: true)
            try fixture.write("\(outside)/moved\(i)/top", size: 5, text: true)
        }
        let session = try connect()
        XCTAssertNil(try sync(src, "inc", session: session, cache: cache).listedChanges, "the first listing is a full one")
        // Hard links from outside the tree, then a sync that takes them in: later edits through them change no path's parent.
        for f in ["a/f0", "c/f2", "a/b/f1"] { XCTAssertEqual(link(dest + "/" + f, outside + "/link-" + f.replacingOccurrences(of: "/", with: "-")), 0) }
        try sync(src, "inc", session: session, cache: cache)
        XCTAssertEqual(try sync(src, "inc", dryRun: true, session: session, cache: cache).listedChanges, 0)

        for round in 0..<Self.rounds {
            var log: [String] = []
            for _ in 0..<(1 + rng.below(4)) { log.append(hostChange(dest, outside: outside, round: round, &rng)) }
            let state = try host.varSrcSnapshot()
            let incremental = try sync(src, "inc", dryRun: true, session: session, cache: cache)
            let full = try sync(src, "inc", dryRun: true, session: session)
            XCTAssertNotNil(incremental.listedChanges, "round \(round)")
            XCTAssertNil(full.listedChanges)
            XCTAssertEqual(entries(incremental), entries(full), "round \(round): the incremental listing differs after: \(log.joined(separator: "; "))")
            XCTAssertEqual(incremental.plan.items.map(Itemize.line), full.plan.items.map(Itemize.line), "round \(round)")
            XCTAssertEqual(try host.varSrcSnapshot(), state, "round \(round): a dry run wrote on the target")
            if round % 2 == 1 {
                try sync(src, "inc", session: session, cache: cache)
                try assertInSync(src, "inc", "round \(round) after: \(log.joined(separator: "; "))")
                let next = try sync(src, "inc", dryRun: true, session: session, cache: cache)
                XCTAssertEqual(next.listedChanges, 0, "round \(round): the sync's own changes are listed again")
                XCTAssertEqual(entries(next), entries(try sync(src, "inc", dryRun: true, session: session)), "round \(round) after the sync")
            }
            if testRun?.failureCount ?? 0 > 0 { break }
        }
    }

    /// A stale, foreign or corrupt cache only costs a full listing.
    func testAnUnusableCacheFallsBackToAFullListing() throws {
        let src = scratch(), cacheDir = scratch("cache")
        let cache = ListingCache(directory: cacheDir)
        var fixture = TreeFixture(seed: 7)
        for d in 0..<3 { try fixture.mkdir("\(src)/d\(d)") }
        for i in 0..<20 { try fixture.write("\(src)/d\(i % 3)/f\(i)", size: 100 + i, text: true) }
        let session = try connect()
        try sync(src, "fall", session: session, cache: cache)
        // A first copy commits nothing (all of it would be listed back): the next run lists in full and commits.
        XCTAssertNil(try sync(src, "fall", session: session, cache: cache).listedChanges)
        XCTAssertEqual(try sync(src, "fall", session: session, cache: cache).listedChanges, 0)
        let state = try host.varSrc + "/.ferry/fall"
        let cacheFile = try XCTUnwrap(FileManager.default.contentsOfDirectory(atPath: cacheDir).first.map { cacheDir + "/" + $0 })

        // The target's generation is not the cache's: full, then incremental again.
        try "0123\n".write(toFile: state + "/generation", atomically: false, encoding: .utf8)
        XCTAssertNil(try sync(src, "fall", session: session, cache: cache).listedChanges)
        XCTAssertEqual(try sync(src, "fall", session: session, cache: cache).listedChanges, 0)
        // Another boot (or a clock set back) since the sentinel: full.
        let clock = try String(contentsOfFile: state + "/sentinel.clock", encoding: .utf8)
        try ("other-boot-id" + clock.drop(while: { $0 != " " })).write(toFile: state + "/sentinel.clock", atomically: false, encoding: .utf8)
        XCTAssertNil(try sync(src, "fall", session: session, cache: cache).listedChanges)
        XCTAssertEqual(try sync(src, "fall", session: session, cache: cache).listedChanges, 0)
        // A corrupt cache file whose generation still matches: the sync starts again with a full listing.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: cacheFile)))
        bytes.removeLast(7)
        try Data(bytes).write(to: URL(fileURLWithPath: cacheFile))
        XCTAssertNil(try sync(src, "fall", session: session, cache: cache).listedChanges)
        try assertInSync(src, "fall")
        // A half-committed generation (no generation file): full.
        unlink(state + "/generation")
        XCTAssertNil(try sync(src, "fall", session: session, cache: cache).listedChanges)
        XCTAssertEqual(try sync(src, "fall", session: session, cache: cache).listedChanges, 0)
    }

    /// The target's hashes of touched files are kept with the cached listing: a second dry run
    /// asks the target for none, and an edit on the host afterwards (same size, old mtime put back)
    /// is never hidden by a kept hash.
    func testHashesOfTouchedFilesAreKeptUntilTheFileChanges() throws {
        let src = scratch(), cacheDir = scratch("cache")
        let cache = ListingCache(directory: cacheDir)
        var fixture = TreeFixture(seed: 11)
        try fixture.mkdir(src + "/d")
        for i in 0..<6 { try fixture.write("\(src)/d/f\(i)", size: 200 + i, text: true) }
        let session = try connect()
        try sync(src, "hashes", session: session, cache: cache)
        try sync(src, "hashes", session: session, cache: cache)
        for i in 0..<6 { Bytes.setMtime(Array("\(src)/d/f\(i)".utf8), seconds: 1_500_000_000 + i, nanoseconds: 0) }
        let first = try sync(src, "hashes", dryRun: true, session: session, cache: cache)
        XCTAssertEqual(first.plan.metadataOnly.count, 6)
        XCTAssertEqual(first.plan.sends.count, 0)

        // The target cannot hash now: the kept hashes must do.
        try host.setTool("sha256sum", script: "#!/bin/sh\necho 'sha256sum: not here' >&2\nexit 1\n")
        defer { try? host.setTool("sha256sum", script: nil) }
        let second = try sync(src, "hashes", dryRun: true, session: session, cache: cache)
        XCTAssertEqual(second.listedChanges, 0)
        XCTAssertEqual(second.plan.metadataOnly.map(\.path), first.plan.metadataOnly.map(\.path))

        // Edited on the host, size and mtime kept: its ctime shows it, and the target is asked again.
        let edited = try host.varSrc + "/hashes/d/f2"
        let before = try XCTUnwrap(Bytes.stat(Array(edited.utf8)))
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: edited))
        handle.write(Data("#".utf8))
        try handle.close()
        Bytes.setMtime(Array(edited.utf8), seconds: before.st_mtim.tv_sec, nanoseconds: before.st_mtim.tv_nsec)
        XCTAssertThrowsError(try sync(src, "hashes", dryRun: true, session: session, cache: cache), "the edited file's kept hash was used") { error in
            XCTAssertTrue("\(error)".contains("hashing files"), "\(error)")
        }
        try host.setTool("sha256sum", script: nil)
        let third = try sync(src, "hashes", dryRun: true, session: session, cache: cache)
        XCTAssertEqual(third.plan.sends.map(\.displayPath), ["d/f2"])
        XCTAssertEqual(third.plan.metadataOnly.count, 5)
        try sync(src, "hashes", session: session, cache: cache)
        try assertInSync(src, "hashes")
    }

    /// One change made on the host, of a kind ctime must reveal.
    func hostChange(_ dest: String, outside: String, round: Int, _ rng: inout FixtureRandom) -> String {
        let entries = TreeMutation.walk(dest)
        let dirs = entries.filter(\.directory).map(\.path)
        let files = entries.filter(\.file).map(\.path)
        func pick(_ a: [[UInt8]]) -> [UInt8]? { a.isEmpty ? nil : a[rng.below(a.count)] }
        func name(_ p: [UInt8]) -> String { String(decoding: p, as: UTF8.self) }
        switch rng.below(9) {
        case 0:
            // A directory made before the last sync moved in: its children's ctimes are old.
            let to = (pick(dirs).map { name($0) + "/" } ?? "") + "in\(round)-\(rng.below(1000))"
            rename(outside + "/moved\(round)", dest + "/" + to)
            return "mv outside/moved\(round) \(to)"
        case 1:
            guard let d = pick(dirs), let into = pick(dirs), !into.starts(with: d) else { return "none" }
            let to = name(into) + "/r\(rng.below(1000))"
            rename(dest + "/" + name(d), dest + "/" + to)
            return "mv \(name(d)) \(to)"
        case 2:
            guard let f = pick(files) else { return "none" }
            Bytes.setMtime(Bytes.path(dest, f), seconds: 1_000_000_000 + rng.below(1000), nanoseconds: 0)
            return "touch -d past \(name(f))"
        case 3:
            guard let p = pick(files + dirs) else { return "none" }
            chmod(dest + "/" + name(p), [0o600, 0o755, 0o700, 0o640][rng.below(4)])
            return "chmod \(name(p))"
        case 4:
            // Written through a hard link from outside the tree, old mtime put back.
            let link = ["a-f0", "c-f2", "a-b-f1"][rng.below(3)]
            let path = outside + "/link-" + link
            guard let st = Bytes.stat(Array(path.utf8)), st.st_size > 0, let h = FileHandle(forUpdatingAtPath: path) else { return "none" }
            h.seekToEndOfFile()
            h.write(Data("Z".utf8))
            try? h.close()
            Bytes.setMtime(Array(path.utf8), seconds: st.st_mtim.tv_sec, nanoseconds: st.st_mtim.tv_nsec)
            return "edit through the hard link \(link)"
        case 5:
            guard let p = pick(files + dirs) else { return "none" }
            Bytes.removeTree(Bytes.path(dest, p))
            return "rm -rf \(name(p))"
        case 6:
            var r = rng
            defer { rng = r }
            return "mutate: " + TreeMutation.mutate(dest, &r, allowSameSizeEdits: false)
        case 7:
            guard let d = pick(dirs) else { return "none" }
            Bytes.setMtime(Bytes.path(dest, d), seconds: 1_100_000_000, nanoseconds: 5)
            return "touch -d past dir \(name(d))"
        default:
            guard let f = pick(files) else { return "none" }
            let to = name(f) + ".renamed"
            rename(dest + "/" + name(f), dest + "/" + to)
            return "mv \(name(f)) \(to)"
        }
    }
}
