import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14: connections cut at seeded points spread over the whole byte range of a deploy (a
/// first deploy and an update). After each cut: every file under its final name is the old or the
/// new version, no lock outlives the deploy, and the next deploy converges. CI runs
/// `FERRY_DEPLOY_CUTS` (default 6) points; `scripts/faults deploy` runs 100.
extension DeployCommandTests {
    static let deployCuts = ProcessInfo.processInfo.environment["FERRY_DEPLOY_CUTS"].flatMap { Int($0) } ?? 6

    /// Every regular file under `root`, by relative path.
    func files(_ root: String) -> [String: Data] {
        var out: [String: Data] = [:]
        let walker = FileManager.default.enumerator(atPath: root)
        while let rel = walker?.nextObject() as? String {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue,
                  (try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/" + rel)) == nil else { continue }
            out[rel] = FileManager.default.contents(atPath: root + "/" + rel)
        }
        return out
    }

    func emptyVarSrc() throws { try host.clearVarSrc() }

    func testSeededCutsDuringDeploys() throws {
        print("deploy cut points: \(Self.deployCuts) (FERRY_DEPLOY_CUTS)")
        let work = try makeWork()
        let h = try host
        var rng = FixtureRandom(seed: 0xDE9C)
        let oldVersion = files(work.lnbits)
        let oldTree = work.root + "/old-lnbits", newTree = work.root + "/new-lnbits"
        try FileManager.default.copyItem(atPath: work.lnbits, toPath: oldTree)
        // The new version: a few mutations inside lnbits/ (the required files stay).
        for _ in 0..<6 { _ = TreeMutation.mutate(work.lnbits + "/lnbits", &rng, allowSameSizeEdits: false) }
        let newVersion = files(work.lnbits)
        try FileManager.default.moveItem(atPath: work.lnbits, toPath: newTree)
        /// Puts `tree` in place as the checkout.
        func checkout(_ tree: String) throws {
            try? FileManager.default.removeItem(atPath: work.lnbits)
            try FileManager.default.copyItem(atPath: tree, toPath: work.lnbits)
        }
        // The byte range of each kind of deploy of the new version: the most any one connection
        // sent, uncut.
        func measure() throws -> Int {
            let proxy = try LinkProxy(to: h.port)
            defer { proxy.stop() }
            let r = try FerryBinary.run(["deploy", "-f", try fleet(work, through: proxy), "alpha"])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            return proxy.upstreamBytes.max() ?? 0
        }
        try emptyVarSrc()
        try checkout(newTree)
        let firstBytes = try measure()
        try emptyVarSrc()
        try checkout(oldTree)
        XCTAssertEqual(try deploy(work).status, 0)
        try checkout(newTree)
        let updateBytes = try measure()

        for k in 0..<Self.deployCuts {
            let update = k % 2 == 1
            try emptyVarSrc()
            if update {
                try checkout(oldTree)
                XCTAssertEqual(try deploy(work, ["--lock-timeout", "30"]).status, 0)
            }
            try checkout(newTree)
            let total = update ? updateBytes : firstBytes
            let slot = k / 2, slots = max(1, (Self.deployCuts + 1) / 2)
            let cut = max(1, (total * slot + rng.below(max(1, total / slots))) / slots)
            let label = "\(update ? "update" : "first deploy") cut at \(cut) of \(total) bytes"
            let proxy = try LinkProxy(to: h.port, shape: LinkProxy.Shape(cutAfter: cut))
            let cutRun = try FerryBinary.run(["deploy", "-f", try fleet(work, through: proxy), "alpha", "--connect-timeout", "3", "--reconnect-timeout", "2"])
            proxy.stop()
            XCTAssertTrue([0, 1, 3, 255].contains(cutRun.status), "\(label): exit \(cutRun.status)")
            print("\(label): ferry exited \(cutRun.status)")
            for (rel, data) in files(h.varSrc + "/lnbits-src") {
                XCTAssertTrue(data == newVersion[rel] || data == oldVersion[rel], "\(label): \(rel) is partial")
            }
            // No lock outlives its deploy: a rebuild that started finishes and frees it within the wait.
            let next = try deploy(work, ["--lock-timeout", "40"])
            XCTAssertEqual(next.status, 0, "\(label): " + next.stdout + next.stderr)
            XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "", label)
            if testRun?.failureCount ?? 0 > 0 { break }
        }
    }
}
