import FerrySync
import FerryTarget
import FerryXCTestSupport
import Foundation
import XCTest

/// Issue 14 (the part on the sync engine alone): hostile or broken answers from a target, fed
/// to the parsers directly, are clear errors — never a crash, never a path outside the destination.
final class HostileListingTests: XCTestCase {
    func listing(_ records: [[String]], header: [String] = ["dir", "synced", "-", "full", "/var/src/t"], end: Bool = true) -> [UInt8] {
        var fields = header
        for r in records { fields += r }
        if end { fields.append("E") }
        return fields.flatMap { Array($0.utf8) + [0] }
    }

    let root = ["d", "755", "4096", "1700000000.0", "", ""]

    func testAGoodListingParses() throws {
        let l = try TargetState.Tree.parse(listing([root, ["f", "644", "3", "1700000000.5", "a/b", ""]]), target: "t")
        XCTAssertEqual(l.manifest.count, 2)
        XCTAssertTrue(l.syncedBefore)
    }

    func testHostileListingsAreRefused() {
        let bad: [(String, [UInt8])] = [
            ("dot-dot", listing([root, ["f", "644", "1", "1.0", "../etc/passwd", ""]])),
            ("inner dot-dot", listing([root, ["f", "644", "1", "1.0", "a/../../x", ""]])),
            ("absolute", listing([root, ["f", "644", "1", "1.0", "/etc/passwd", ""]])),
            ("empty component", listing([root, ["f", "644", "1", "1.0", "a//b", ""]])),
            ("trailing slash", listing([root, ["d", "755", "1", "1.0", "a/", ""]])),
            ("dot", listing([root, ["f", "644", "1", "1.0", "./x", ""]])),
            ("empty path twice", listing([root, root])),
            ("duplicate", listing([root, ["f", "644", "1", "1.0", "x", ""], ["f", "644", "1", "1.0", "x", ""]])),
            ("huge size", listing([root, ["f", "644", "99999999999999999999999", "1.0", "x", ""]])),
            ("negative size", listing([root, ["f", "644", "-5", "1.0", "x", ""]])),
            ("mode out of range", listing([root, ["f", "777777", "1", "1.0", "x", ""]])),
            ("bad mtime", listing([root, ["f", "644", "1", "yesterday", "x", ""]])),
            ("long type", listing([root, ["file", "644", "1", "1.0", "x", ""]])),
            ("truncated", Array(listing([root, ["f", "644", "1", "1.0", "x", ""]]).dropLast(9))),
            ("no end marker", listing([root], end: false)),
            ("no header", []),
            ("no NUL at all", Array(String(repeating: "garbage ", count: 1000).utf8)),
            ("bad checksum line", listing([root, ["checksums", "nothex  ./x"]])),
            ("checksum path escape", listing([root, ["checksums", String(repeating: "a", count: 64) + "  ./../x"]])),
            ("bytes after the end", listing([root]) + Array("more\0".utf8)),
        ]
        for (name, bytes) in bad {
            XCTAssertThrowsError(try TargetState.Tree.parse(bytes, target: "host"), name) { error in
                XCTAssertTrue("\(error)".hasPrefix("host: unexpected listing from the target"), "\(name): \(error)")
            }
        }
    }

    /// An incremental answer ("./"-relative, any order, repeats allowed) applied to what the caller knew.
    func testIncrementalListingsApplyToTheBaseOrAreRefused() throws {
        let base = try TargetState.Tree.parse(listing([root, ["d", "755", "0", "1.0", "a", ""], ["f", "644", "3", "1.0", "a/x", ""],
                                                 ["f", "644", "3", "1.0", "b", ""]]), target: "t").manifest
        let incremental = ["dir", "synced", "-", "incremental", "/var/src/t"]
        // "a" was relisted whole (now holding only y); "b" changed; "c" is new.
        let l = try TargetState.Tree.parse(listing([["f", "644", "9", "2.0", "./b", ""], ["d", "700", "0", "2.0", "./a", ""],
                                              ["f", "600", "1", "2.0", "./a/y", ""], ["f", "644", "9", "3.0", "./b", ""],
                                              ["l", "777", "0", "2.0", "./c", "a/y"]], header: incremental), target: "t", base: base)
        XCTAssertEqual(l.changes, 5)
        XCTAssertEqual(l.manifest.entries.map(\.displayPath), ["", "a", "a/y", "b", "c"])
        XCTAssertEqual(l.manifest[Array("b".utf8)]?.mtime, Timestamp(seconds: 3, nanoseconds: 0), "the later record wins")
        XCTAssertEqual(try TargetState.Tree.parse(listing([], header: incremental), target: "t", base: base).manifest.count, base.count)
        // Nested relisted directories: everything old below the outer one goes.
        let nested = try TargetState.Tree.parse(listing([root, ["d", "755", "0", "1.0", "a", ""], ["d", "755", "0", "1.0", "a/b", ""],
                                                   ["f", "644", "1", "1.0", "a/b/x", ""], ["f", "644", "1", "1.0", "a/c", ""],
                                                   ["f", "644", "1", "1.0", "z", ""]]), target: "t").manifest
        let relisted = try TargetState.Tree.parse(listing([["d", "755", "0", "2.0", "./a/b", ""], ["d", "755", "0", "2.0", "./a", ""]],
                                                    header: incremental), target: "t", base: nested)
        XCTAssertEqual(relisted.manifest.entries.map(\.displayPath), ["", "a", "a/b", "z"])
        let bad: [(String, [UInt8], Manifest?)] = [
            ("no base", listing([["f", "644", "1", "1.0", "./x", ""]], header: incremental), nil),
            ("no ./", listing([["f", "644", "1", "1.0", "x", ""]], header: incremental), base),
            ("dot-dot", listing([["f", "644", "1", "1.0", "./../x", ""]], header: incremental), base),
            ("inner dot-dot", listing([["f", "644", "1", "1.0", "./a/../../x", ""]], header: incremental), base),
            ("absolute", listing([["f", "644", "1", "1.0", "/etc/passwd", ""]], header: incremental), base),
            ("root as a file", listing([["f", "644", "1", "1.0", ".", ""]], header: incremental), base),
            ("checksums", listing([["checksums", String(repeating: "a", count: 64) + "  ./x"]], header: incremental), base),
            ("unknown kind", listing([], header: ["dir", "synced", "-", "partial", "/var/src/t"]), base),
            ("no resolved destination", listing([], header: ["dir", "synced", "-", "full"], end: false), nil),
        ]
        for (name, bytes, base) in bad {
            XCTAssertThrowsError(try TargetState.Tree.parse(bytes, target: "host", base: base), name) { error in
                XCTAssertTrue("\(error)".hasPrefix("host: unexpected listing from the target"), "\(name): \(error)")
            }
        }
    }

    func testHostileHashAnswersAreRefused() {
        let hash = String(repeating: "0", count: 64)
        XCTAssertEqual(try TargetState.Tree.parseHashes(Array("\(hash)  a/b\0".utf8), target: "t")[Array("a/b".utf8)], Array(hash.utf8))
        for bad in ["\(hash)  ../x\0", "\(hash)  /etc/x\0", "short  x\0", "\(hash)x\0", String(repeating: "z", count: 70) + "\0"] {
            XCTAssertThrowsError(try TargetState.Tree.parseHashes(Array(bad.utf8), target: "t"), bad)
        }
    }

    /// Random bytes and random cuts of a good listing: an answer or an error, never a crash.
    /// Seeded (FERRY_LISTING_SEED=hex replays another run), so a failure can be reproduced.
    func testRandomGarbageNeverCrashes() {
        let seed = ProcessInfo.processInfo.environment["FERRY_LISTING_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0x11_5713
        print("hostile listing seed: \(String(seed, radix: 16))")
        var rng = FixtureRandom(seed: seed)
        let good = listing([root, ["f", "644", "3", "1700000000.5", "a/b", ""], ["l", "777", "0", "1.0", "a/l", "b"], ["checksums", String(repeating: "a", count: 64) + "  ./a/b"]])
        for i in 0..<3_000 {
            var bytes = good
            if i % 2 == 0 {
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
            }
            for _ in 0..<Int.random(in: 0...4, using: &rng) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = [0, 0x2E, 0x2F, 0x45, UInt8.random(in: 0...255, using: &rng)].randomElement(using: &rng)!
            }
            if let l = try? TargetState.Tree.parse(bytes, target: "t") {
                for e in l.manifest.entries.dropFirst() { XCTAssertTrue(TargetState.Tree.isSafeRelativePath(e.path[...]), "\(e.displayPath)") }
            }
        }
    }
}
