import FerryDeploy
import FerryTarget
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Each deploy that rebuilds keeps a snapshot of every tree it synced (hard links under
/// /var/src/.ferry/snapshots), which later deploys never change, checked by the rsync oracle.
extension DeployCommandTests {
    func snapshotTree(_ source: String, digest: String, varSrc: String? = nil) throws -> String {
        TargetState(root: try varSrc ?? host.varSrc).snapshot(source, digest: digest) + "/tree"
    }

    /// Nothing differs between `local` and `remote` (contents, modes, mtimes to the nanosecond).
    func assertSame(_ local: String, _ remote: String, excludes: [String] = DeployCommandTests.excludes, _ what: String) throws {
        let r = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "--itemize-changes"]
                                + excludes.map { "--exclude=\($0)" } + [local + "/", remote + "/"])
        XCTAssertEqual(r.status, 0, r.errorOutput)
        XCTAssertEqual(r.output, "", what)
    }

    func inode(_ path: String) throws -> (ino: UInt, links: UInt) {
        var s = stat()
        guard lstat(path, &s) == 0 else { throw TestHostError.missingPrerequisite("lstat \(path)") }
        return (UInt(s.st_ino), UInt(s.st_nlink))
    }

    func testEachDeployKeepsASnapshotThatLaterDeploysNeverChange() throws {
        let work = try makeWork()
        let h = try host
        let first = try deploy(work)
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        let a = try record()
        let copyA = work.root + "/lnbits-a"
        try Command.check(["cp", "-a", work.lnbits, copyA])
        let snapA = try snapshotTree("lnbits-src", digest: a.sources["lnbits-src"]!.digest)
        try assertSame(work.lnbits, snapA, "A's snapshot is A's tree")
        XCTAssertTrue(FileManager.default.fileExists(atPath: try snapshotTree("nixos-config", digest: a.sources["nixos-config"]!.digest) + "/configuration.nix"))
        // Hard links: an unchanged file costs no space.
        let flake = try inode(h.varSrc + "/lnbits-src/flake.nix")
        XCTAssertEqual(flake.ino, try inode(snapA + "/flake.nix").ino)
        XCTAssertEqual(flake.links, 2)
        // Each snapshot keeps its tree's manifest, and its deploy's folder says which it is.
        let manifest = try Data(contentsOf: URL(fileURLWithPath: (snapA as NSString).deletingLastPathComponent + "/manifest"))
        let body = manifest[(manifest.firstIndex(of: 0x0A)! + 1)...]
        XCTAssertEqual(ManifestFile.digest(body), a.sources["lnbits-src"]!.digest, "the snapshot's manifest is its tree's")
        let folder = h.varSrc + "/.ferry/deploys/" + a.id
        let lines = try String(contentsOfFile: folder + "/snapshots", encoding: .utf8)
        XCTAssertTrue(lines.contains("lnbits-src \(TargetState.snapshotName(a.sources["lnbits-src"]!.digest))\n"), lines)
        XCTAssertTrue(try String(contentsOfFile: folder + "/record", encoding: .utf8).contains("\nfinished success "))

        // B: a content change, a mode-only and an mtime-only change, a new file and a deleted one.
        try "changed\n".write(toFile: work.lnbits + "/pyproject.toml", atomically: false, encoding: .utf8)
        XCTAssertEqual(chmod(work.lnbits + "/uv.lock", 0o600), 0)
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789)]
        XCTAssertEqual(utimensat(AT_FDCWD, work.lnbits + "/flake.nix", &times, 0), 0)
        try "new\n".write(toFile: work.lnbits + "/lnbits/added.py", atomically: false, encoding: .utf8)
        let gone = try FileManager.default.contentsOfDirectory(atPath: work.lnbits + "/lnbits").sorted().first { $0.hasSuffix(".py") }!
        try FileManager.default.removeItem(atPath: work.lnbits + "/lnbits/" + gone)
        let second = try deploy(work)
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        let b = try record()
        XCTAssertNotEqual(a.sources["lnbits-src"]!.digest, b.sources["lnbits-src"]!.digest)
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")
        try assertSame(copyA, snapA, "A's snapshot is still A's tree, modes and mtimes included")
        try assertSame(work.lnbits, try snapshotTree("lnbits-src", digest: b.sources["lnbits-src"]!.digest), "B's snapshot is B's tree")
        XCTAssertNotEqual(try inode(h.varSrc + "/lnbits-src/flake.nix").ino, flake.ino, "an mtime-only change replaced the linked file")

        // A deploy that changes nothing uses the snapshot it finds, and its sync leaves the
        // listing incremental: the snapshot's links were made before the listing's stamp.
        let third = try deploy(work)
        XCTAssertEqual(third.status, 0, third.stdout + third.stderr)
        XCTAssertEqual(try record().sources["lnbits-src"]!.digest, b.sources["lnbits-src"]!.digest)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.varSrc + "/.ferry/snapshots/lnbits-src").count, 2)
        let listing = try FerryBinary.run(["sync", work.lnbits, "root@127.0.0.1:\(h.port):/var/src/lnbits-src", "--dry-run", "--stats",
                                           "-i", try harness.clientKey(.ed25519), "--known-hosts", try harness.knownHostsFile]
                                          + Self.excludes.flatMap { ["--exclude", $0] })
        XCTAssertEqual(listing.status, 0, listing.stderr)
        XCTAssertTrue(listing.stdout.contains("listing: incremental (0 entries changed since the last sync)"), listing.stdout)
    }

    /// `keep_snapshots`: the newest N successful deploys keep theirs (and the deploy running now);
    /// older ones go when a new snapshot is made, and failed deploys count for nothing.
    func testSnapshotsArePrunedToTheNewestSuccessfulDeploys() throws {
        let work = try makeWork()
        let h = try host
        let toml = try String(contentsOfFile: work.fleetFile, encoding: .utf8)
        try toml.replacingOccurrences(of: "[defaults]\n", with: "[defaults]\nkeep_snapshots = 2\n").write(toFile: work.fleetFile, atomically: true, encoding: .utf8)
        var digests: [String] = []
        for round in 0..<4 {
            try "round \(round)\n".write(toFile: work.lnbits + "/pyproject.toml", atomically: false, encoding: .utf8)
            if round == 2 { try h.setStandInFailure("error: a failed rebuild (requested by the test)") }
            let r = try deploy(work)
            XCTAssertEqual(r.status, round == 2 ? 1 : 0, r.stdout + r.stderr)
            try h.setStandInFailure(nil)
            digests.append(TargetState.snapshotName(try record().sources["lnbits-src"]!.digest))
        }
        // Round 3's sync kept the newest two successes before it (rounds 1 and 0; 2 failed) and its own.
        let kept = Set(try FileManager.default.contentsOfDirectory(atPath: h.varSrc + "/.ferry/snapshots/lnbits-src"))
        XCTAssertEqual(kept, Set([digests[0], digests[1], digests[3]]))

        // The history lists the four, newest first, with their results.
        let history = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha", "--history"])
        XCTAssertEqual(history.status, 0, history.stderr)
        let rows = history.stdout.split(separator: "\n").filter { $0.hasPrefix("alpha |   2") }
        XCTAssertEqual(rows.map { $0.contains(" switch failed (exit status ") }, [false, true, false, false], history.stdout)
        XCTAssertEqual(rows.map { $0.contains(" switch success, ") }, [true, false, true, true], history.stdout)

        let bad = try String(contentsOfFile: work.fleetFile, encoding: .utf8).replacingOccurrences(of: "keep_snapshots = 2", with: "keep_snapshots = 0")
        try bad.write(toFile: work.fleetFile, atomically: true, encoding: .utf8)
        let refused = try FerryBinary.run(["hosts", "-f", work.fleetFile])
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.stderr.contains("defaults.keep_snapshots: 0: at least 1"), refused.stderr)
    }
}

/// Real generations (a host whose stand-in builds a small real system per activation and sets
/// the system profile with the real nix-env): the record names what ran before each rebuild and
/// the generation it made, and status shows both.
extension DeployCommandTests {
    func testTheRecordNamesTheGenerationsBeforeAndAfter() throws {
        let g = try harness.startHost(name: "generations", generations: true)
        let work = try makeWork(port: g.port)
        let first = try deploy(work)
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        let a = try record(varSrc: g.varSrc).outcome!
        XCTAssertEqual(a.generation, 1)
        let systemA = try XCTUnwrap(a.generationPath)
        XCTAssertTrue(systemA.hasPrefix("/nix/store/") && systemA.contains("-nixos-system-stand-in-"), systemA)
        XCTAssertEqual(a.currentSystem, systemA, "the switch made it the running system")
        XCTAssertNil(a.profileBefore, "no generation before the first")

        try "changed\n".write(toFile: work.lnbits + "/pyproject.toml", atomically: false, encoding: .utf8)
        let second = try deploy(work)
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        let b = try record(varSrc: g.varSrc).outcome!
        XCTAssertEqual(b.generation, 2)
        XCTAssertNotEqual(b.generationPath, systemA, "other trees, another system")
        XCTAssertEqual(b.systemBefore, systemA)
        XCTAssertEqual(b.profileBefore, systemA)

        // boot: a new generation, the running system unchanged.
        try "changed again\n".write(toFile: work.lnbits + "/pyproject.toml", atomically: false, encoding: .utf8)
        XCTAssertEqual(try deploy(work, ["--op", "boot"]).status, 0)
        let c = try record(varSrc: g.varSrc).outcome!
        XCTAssertEqual(c.generation, 3)
        XCTAssertEqual(c.currentSystem, b.generationPath, "boot leaves the running system")
        let status = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha"])
        XCTAssertTrue(status.stdout.contains("alpha | generation 3: \(c.generationPath!)"), status.stdout)
        XCTAssertTrue(status.stdout.contains("alpha | before it: system \(b.generationPath!), profile \(b.generationPath!)"), status.stdout)
        let activations = try String(contentsOfFile: g.standInState + "/activations.log", encoding: .utf8)
        XCTAssertEqual(activations.split(separator: "\n").map { $0.split(separator: " ").first! }, ["switch", "switch", "boot"])
    }
}
