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
            for _ in 0..<(1 + rng.below(6)) { log.append(mutate(src, &rng, allowSameSizeEdits: checksum)) }
            let deleteExcluded = round % 5 == 4
            // A dry run predicts exactly what the real run then does (issue 7.16).
            let predicted = try sync(src, "random", excludes: Self.excludes, deleteExcluded: deleteExcluded, checksum: checksum,
                                     dryRun: true, session: session).plan.items.map(Itemize.line)
            let done = try sync(src, "random", excludes: Self.excludes, deleteExcluded: deleteExcluded, checksum: checksum,
                                session: session).plan.items.map(Itemize.line)
            XCTAssertEqual(predicted, done, "round \(round): --dry-run --itemize differs from the real run")
            try assertInSync(src, "random", excludes: Self.excludes, deleteExcluded: deleteExcluded, checksum: checksum,
                             "round \(round) after: \(log.joined(separator: "; "))")
            if testRun?.failureCount ?? 0 > 0 { break }
        }
    }

    /// One random change; returns what it did.
    func mutate(_ root: String, _ rng: inout FixtureRandom, allowSameSizeEdits: Bool) -> String {
        var scanner = LocalScanner(root: root, excludes: ExcludeRules())
        let entries = ((try? scanner.scan())?.entries.filter { !$0.path.isEmpty }) ?? []
        let dirs = [[]] + entries.filter { $0.kind == .directory }.map(\.path)
        let files = entries.filter { $0.kind == .file }.map(\.path)
        let any = entries.map(\.path)
        func pick<T>(_ a: [T]) -> T? { a.isEmpty ? nil : a[rng.below(a.count)] }
        func newName() -> [UInt8] {
            rng.below(4) == 0 ? TreeFixture.hardNames[rng.below(TreeFixture.hardNames.count)] : Array("n\(rng.next() % 100000)".utf8)
        }
        func child(_ dir: [UInt8], _ name: [UInt8]) -> [UInt8] { dir.isEmpty ? name : dir + [47] + name }
        let full = { (p: [UInt8]) in Bytes.path(root, p) }

        switch rng.below(13) {
        case 0, 1:
            let p = child(pick(dirs)!, newName())
            Bytes.write(full(p), rng.bytes(rng.below(5000), text: false))
            return "add \(String(decoding: p, as: UTF8.self))"
        case 2:
            guard let f = pick(files) else { return "-" }
            Bytes.write(full(f), rng.bytes(rng.below(5000) + 1, text: true))
            return "rewrite \(String(decoding: f, as: UTF8.self))"
        case 3:
            guard allowSameSizeEdits, let f = pick(files), let st = Bytes.stat(full(f)), st.st_size > 0 else { return "-" }
            Bytes.write(full(f), rng.bytes(Int(st.st_size), text: false))
            Bytes.setMtime(full(f), seconds: st.st_mtim.tv_sec, nanoseconds: st.st_mtim.tv_nsec)
            return "same-size edit \(String(decoding: f, as: UTF8.self))"
        case 4:
            guard let p = pick(any) else { return "-" }
            Bytes.removeTree(full(p))
            return "delete \(String(decoding: p, as: UTF8.self))"
        case 5:
            guard let p = pick(files + dirs.filter { !$0.isEmpty }) else { return "-" }
            let mode: mode_t = [0o600, 0o755, 0o644, 0o700, 0o640, 0o750][rng.below(6)]
            _ = Bytes.c(full(p)) { chmod($0, mode) }
            return "chmod \(String(mode, radix: 8)) \(String(decoding: p, as: UTF8.self))"
        case 6:
            guard let f = pick(files) else { return "-" }
            Bytes.removeTree(full(f))
            _ = Bytes.c(full(f)) { mkdir($0, 0o755) }
            Bytes.write(full(child(f, Array("inside".utf8))), [1, 2])
            return "file→dir \(String(decoding: f, as: UTF8.self))"
        case 7:
            guard let d = pick(dirs.filter { !$0.isEmpty }) else { return "-" }
            Bytes.removeTree(full(d))
            if rng.below(2) == 0 {
                Bytes.write(full(d), [7])
                return "dir→file \(String(decoding: d, as: UTF8.self))"
            }
            _ = Bytes.c(full(d)) { p in Bytes.c(Array("f0".utf8)) { symlink($0, p) } }
            return "dir→symlink \(String(decoding: d, as: UTF8.self))"
        case 8:
            guard let f = pick(files) else { return "-" }
            let to = child(pick(dirs)!, newName())
            _ = Bytes.c(full(f)) { a in Bytes.c(full(to)) { rename(a, $0) } }
            return "rename \(String(decoding: f, as: UTF8.self)) → \(String(decoding: to, as: UTF8.self))"
        case 9:
            let p = child(pick(dirs)!, newName())
            _ = Bytes.c(full(p)) { mkdir($0, 0o755) }
            return "empty dir \(String(decoding: p, as: UTF8.self))"
        case 10:
            let d = pick(dirs)!
            let names: [[UInt8]] = [Array("__pycache__".utf8), Array("x.pyc".utf8), Array("data".utf8), Array(".env".utf8)]
            let p = child(d, names[rng.below(names.count)])
            if rng.below(2) == 0 { _ = Bytes.c(full(p)) { mkdir($0, 0o755) }; Bytes.write(full(child(p, Array("junk.pyc".utf8))), [1]) }
            else { Bytes.write(full(p), [3]) }
            return "excluded \(String(decoding: p, as: UTF8.self))"
        case 11:
            guard let p = pick(any) else { return "-" }
            Bytes.setMtime(full(p), seconds: 1_500_000_000 + rng.below(100_000_000), nanoseconds: rng.below(1_000_000_000))
            return "touch \(String(decoding: p, as: UTF8.self))"
        default:
            let p = child(pick(dirs)!, newName())
            if rng.below(2) == 0 {
                _ = Bytes.c(full(p)) { l in Bytes.c(Array("../target with space".utf8)) { symlink($0, l) } }
                return "symlink \(String(decoding: p, as: UTF8.self))"
            }
            _ = Bytes.c(full(p)) { mkfifo($0, 0o644) }
            return "fifo \(String(decoding: p, as: UTF8.self))"
        }
    }
}
