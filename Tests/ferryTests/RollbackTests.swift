import FerryDeploy
import FerryTarget
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `ferry rollback` against hosts with real generations: the sources come back from the
/// snapshots byte for byte (the rsync oracle, mtimes to the nanosecond), the earlier system is
/// activated and the profile points at it; what cannot be restored changes nothing.
extension DeployCommandTests {
    func rollback(_ work: Work, _ extra: [String] = []) throws -> FerryBinary.Result {
        try FerryBinary.run(["rollback", "-f", work.fleetFile, "alpha"] + extra)
    }

    /// Every job log on the host (for a failure's message).
    func jobLogs(_ host: TestHost) -> String {
        let deploys = host.varSrc + "/.ferry/deploys"
        return ((try? FileManager.default.contentsOfDirectory(atPath: deploys)) ?? []).sorted().map { id in
            "== \(id)\n" + ((try? String(contentsOfFile: deploys + "/" + id + "/log", encoding: .utf8)) ?? "")
        }.joined(separator: "\n")
    }

    /// A generations host, its work deployed as A and then changed and deployed as B (content,
    /// mode-only and mtime-only changes, a file added and one deleted, a config var): the host,
    /// the work, a copy of A's tree, and both records.
    func deployAThenB(_ name: String, users: [TestUser] = []) throws -> (host: TestHost, work: Work, copyA: String, a: DeployRecord, b: DeployRecord) {
        let g = try harness.startHost(name: name, users: users, generations: true)
        let work = try makeWork(port: g.port)
        // A tree of this test's own: its systems are no other test's.
        try UUID().uuidString.write(toFile: work.lnbits + "/lnbits/unique.txt", atomically: false, encoding: .utf8)
        let first = try deploy(work)
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        let a = try record(varSrc: g.varSrc)
        let copyA = work.root + "/lnbits-a"
        try Command.check(["cp", "-a", work.lnbits, copyA])

        try "changed\n".write(toFile: work.lnbits + "/pyproject.toml", atomically: false, encoding: .utf8)
        XCTAssertEqual(chmod(work.lnbits + "/uv.lock", 0o600), 0)
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789)]
        XCTAssertEqual(utimensat(AT_FDCWD, work.lnbits + "/flake.nix", &times, 0), 0)
        try "new\n".write(toFile: work.lnbits + "/lnbits/added.py", atomically: false, encoding: .utf8)
        let gone = try FileManager.default.contentsOfDirectory(atPath: work.lnbits + "/lnbits").sorted().first { $0.hasSuffix(".py") }!
        try FileManager.default.removeItem(atPath: work.lnbits + "/lnbits/" + gone)
        try writeFleet(work, port: g.port, lnbitsPort: 5001)
        let second = try deploy(work)
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        let b = try record(varSrc: g.varSrc)
        XCTAssertNotEqual(a.outcome?.currentSystem, b.outcome?.currentSystem)
        return (g, work, copyA, a, b)
    }

    func assertSame(_ local: String, host: TestHost, _ name: String, excludes: [String] = DeployCommandTests.excludes, _ what: String) throws {
        try assertSame(local, host.varSrc + "/" + name, excludes: excludes, what)
    }

    func testRollbackReturnsTheSourcesAndTheSystemOfTheDeployBefore() throws {
        let (g, work, copyA, a, b) = try deployAThenB("rollback")
        let systemA = try XCTUnwrap(a.outcome?.currentSystem)
        let configB = try String(contentsOfFile: g.varSrc + "/nixos-config/configuration.nix", encoding: .utf8)

        let back = try rollback(work)
        XCTAssertEqual(back.status, 0, back.stdout + back.stderr + jobLogs(g))
        XCTAssertTrue(back.stdout.contains("alpha | ferry: restoring lnbits-src"), back.stdout)
        try assertSame(copyA, host: g, "lnbits-src", "the sources are A's again")
        try assertSame(copyA, try snapshotTree("lnbits-src", digest: a.sources["lnbits-src"]!.digest, varSrc: g.varSrc), "A's snapshot is unchanged")
        let configA = try String(contentsOfFile: g.varSrc + "/nixos-config/configuration.nix", encoding: .utf8)
        XCTAssertNotEqual(configA, configB)
        XCTAssertTrue(configA.contains("5000") && !configA.contains("5001"), "the rendered configuration is A's too")
        XCTAssertEqual(g.runningSystem, systemA, "A's system is running")
        XCTAssertEqual(g.profileSystem, systemA, "and the profile points at it")
        XCTAssertEqual(g.activations().last, "switch \(systemA)")
        let r = try record(varSrc: g.varSrc)
        XCTAssertEqual(r.operation, "rollback")
        XCTAssertEqual(r.returnedTo, a.id)
        XCTAssertEqual(r.system, systemA)
        XCTAssertEqual(r.outcome?.result, .success)
        XCTAssertEqual(r.outcome?.generation, 3, "the profile's new generation is A's system")
        XCTAssertEqual(r.sources["lnbits-src"]?.digest, a.sources["lnbits-src"]?.digest)

        // The host's trees are A's: a status shows no drift, and a deploy of A's tree sends nothing.
        let status = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha", "--history"])
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertTrue(status.stdout.contains(" rollback success"), status.stdout)

        // There is nothing before A: a second rollback changes nothing and says so.
        let again = try rollback(work)
        XCTAssertEqual(again.status, 1, again.stdout + again.stderr)
        XCTAssertTrue(again.stderr.contains("nothing to roll back to"), again.stderr)
        XCTAssertEqual(g.activations().count, 3)

        // --to returns to B (undoing the rollback), test only: the profile stays.
        let toB = try rollback(work, ["--to", b.id, "--op", "test"])
        XCTAssertEqual(toB.status, 0, toB.stdout + toB.stderr)
        try assertSame(work.lnbits, host: g, "lnbits-src", "the sources are B's")
        XCTAssertEqual(g.runningSystem, b.outcome?.currentSystem)
        XCTAssertEqual(g.profileSystem, systemA, "test leaves the profile")
        XCTAssertEqual(try String(contentsOfFile: g.varSrc + "/nixos-config/configuration.nix", encoding: .utf8), configB)

        // And a deploy after it starts from B's trees: nothing to send.
        let redeploy = try deploy(work, ["--op", "test"])
        XCTAssertEqual(redeploy.status, 0, redeploy.stdout + redeploy.stderr)
        XCTAssertTrue(redeploy.stdout.contains("sync: lnbits-src: 0 files sent"), redeploy.stdout)
    }

    /// A missing or damaged snapshot, a garbage-collected system: exit 1, a message naming it,
    /// and the host as it was (its trees, its system, its record).
    func testARollbackThatCannotRestoreChangesNothing() throws {
        let (g, work, copyA, a, b) = try deployAThenB("rollback-refused")
        let state = TargetState(root: g.varSrc)
        let snapshotA = state.snapshot("lnbits-src", digest: a.sources["lnbits-src"]!.digest)
        func assertUnchanged(_ what: String) throws {
            try assertSame(work.lnbits, host: g, "lnbits-src", "\(what): the sources are still B's")
            XCTAssertEqual(g.runningSystem, b.outcome?.currentSystem, what)
            XCTAssertEqual(g.activations().count, 2, what)
            XCTAssertEqual(try record(varSrc: g.varSrc).id, b.id, "\(what): no rollback was recorded")
        }

        // Damaged: a file A and B share (a hard link in both snapshots) written on the host.
        let changedInB: Set<String> = ["pyproject.toml", "uv.lock", "flake.nix"]
        let shared = try XCTUnwrap(FileManager.default.subpaths(atPath: work.lnbits)?.sorted().first { path in
            var s = stat()
            return path.hasPrefix("lnbits/") && !changedInB.contains(path) && lstat(work.lnbits + "/" + path, &s) == 0
                && (s.st_mode & S_IFMT) == S_IFREG && s.st_size > 8 && FileManager.default.fileExists(atPath: copyA + "/" + path)
        })
        let live = g.varSrc + "/lnbits-src/" + shared
        let original = try Data(contentsOf: URL(fileURLWithPath: live))
        var times = [timespec(), timespec()]
        var info = stat()
        XCTAssertEqual(stat(live, &info), 0)
        times = [info.st_atim, info.st_mtim]
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: live))
        try handle.write(contentsOf: Data("tampered".utf8))
        try handle.close()
        XCTAssertEqual(utimensat(AT_FDCWD, live, &times, 0), 0, "same size and mtime: only the content tells")
        let damaged = try rollback(work)
        XCTAssertEqual(damaged.status, 1, damaged.stdout + damaged.stderr)
        XCTAssertTrue(damaged.stderr.contains("the snapshot of lnbits-src for deploy \(a.id)"), damaged.stderr)
        XCTAssertTrue(damaged.stderr.contains("is damaged: 1 entry differs from its manifest (changed on the host since): \(shared)"), damaged.stderr)
        XCTAssertTrue(damaged.stderr.contains("--force"), damaged.stderr)
        try original.write(to: URL(fileURLWithPath: live))
        XCTAssertEqual(utimensat(AT_FDCWD, live, &times, 0), 0)
        try assertUnchanged("a damaged snapshot")

        // Missing.
        try Command.check(["mv", snapshotA, snapshotA + ".aside"])
        let missing = try rollback(work)
        XCTAssertEqual(missing.status, 1, missing.stdout + missing.stderr)
        XCTAssertTrue(missing.stderr.contains("the snapshot of lnbits-src for deploy \(a.id) is gone"), missing.stderr)
        let named = try rollback(work, ["--to", a.id])
        XCTAssertEqual(named.status, 1)
        XCTAssertTrue(named.stderr.contains("is gone"), named.stderr)
        try Command.check(["mv", snapshotA + ".aside", snapshotA])
        try assertUnchanged("a missing snapshot")

        // Garbage-collected: A's system deleted from the store (no root holds it outside the
        // host's private profiles).
        let systemA = try XCTUnwrap(a.outcome?.currentSystem)
        try Command.check(["nix-store", "--delete", systemA])
        let collected = try rollback(work)
        XCTAssertEqual(collected.status, 1, collected.stdout + collected.stderr)
        XCTAssertTrue(collected.stderr.contains("the system of deploy \(a.id) is gone from the store (garbage-collected): \(systemA)"), collected.stderr)
        try assertUnchanged("a collected system")

        // Unknown id, and a usage error.
        let unknown = try rollback(work, ["--to", "20200101T000000Z-0000"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.stderr.contains("no deploy 20200101T000000Z-0000 on the host"), unknown.stderr)
        let usage = try rollback(work, ["--op", "build"])
        XCTAssertEqual(usage.status, 2)
        XCTAssertTrue(usage.stderr.contains("a rollback activates with switch, boot or test"), usage.stderr)
        try assertUnchanged("refused")
    }

    /// The deploy lock is the rollback's until its job has activated: a deploy meanwhile is told
    /// who holds it. Through sudo, as a login that is not root.
    func testTheLockIsHeldUntilTheRollbackHasActivated() throws {
        let (g, work, copyA, a, _) = try deployAThenB("rollback-lock", users: [TestUser(name: "deploy", uid: 4242, sudo: true)])
        try logIn(work, as: "deploy")
        g.holdActivation(true)
        defer { g.holdActivation(false) }
        let (process, out) = try startDeploy(work, command: "rollback")
        waitFor("the rollback's activation") {
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("ferry: activating")
        }
        let blocked = try deploy(work)
        XCTAssertEqual(blocked.status, 1, blocked.stdout + blocked.stderr)
        XCTAssertTrue(blocked.stderr.contains("the deploy lock is held by rollback "), blocked.stderr)
        XCTAssertTrue(blocked.stderr.contains(", rollback running"), blocked.stderr)
        g.holdActivation(false)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
        try assertSame(copyA, host: g, "lnbits-src", "the sources are A's")
        XCTAssertEqual(g.runningSystem, a.outcome?.currentSystem)
        XCTAssertEqual(try record(varSrc: g.varSrc).outcome?.result, .success)
    }
}
