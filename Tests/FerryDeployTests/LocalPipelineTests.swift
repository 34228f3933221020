@testable import FerryDeploy
import FerrySync
import FerryTarget
import FerryXCTestSupport
import Foundation
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The deploy pipeline through the `RemoteShell` seam with a local shell and a temporary remote
/// root: its logic without sshd (the sshd tests in ferryTests cover the rest, rebuild included).
final class LocalPipelineTests: XCTestCase {
    var fixture: FleetFixture!
    var root: String!
    var lnbits: String { fixture.directory + "/lnbits" }

    override func setUpWithError() throws {
        try requireNix()
        for tool in ["flock", "rsync", "timeout", "setsid"] {
            do { _ = try Command.which(tool) } catch {
                if ProcessInfo.processInfo.environment["CI"] == "true" { throw error }
                throw XCTSkip("\(error)")
            }
        }
        fixture = try FleetFixture()
        root = fixture.directory + "-root"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var tree = TreeFixture(seed: 3)
        try tree.makeLNBitsTree(at: lnbits)
        let toml = try String(contentsOfFile: fixture.fleetFile, encoding: .utf8).replacingOccurrences(of: "path = \"../lnbits\"", with: "path = \"lnbits\"")
        try fixture.write("fleet.toml", toml)
    }

    override func tearDown() {
        fixture?.remove()
        if let root { try? FileManager.default.removeItem(atPath: root) }
    }

    func syncRecord() throws -> DeployRecord {
        let file = root + "/.ferry/last-sync.record"
        let read = DeployRecord.read(Array(try Data(contentsOf: URL(fileURLWithPath: file))), file: file)
        return try XCTUnwrap(read.record, "\(read)")
    }

    /// How many shells a deployment opened.
    final class Opened: Sendable {
        let count = Mutex(0)
    }

    func deployment(_ fleet: Fleet, opened: Opened? = nil, adjust: (inout Deployment.Options) -> Void = { _ in }) -> Deployment {
        var options = Deployment.Options { _ in
            opened?.count.withLock { $0 += 1 }
            return LocalShell(name: "local")
        }
        options.root = root
        adjust(&options)
        return Deployment(fleet: fleet, host: fleet.hosts[0], options: options)
    }

    func testSyncOnlyDeployMirrorsEverySourceAndRecordsIt() throws {
        let fleet = try fixture.load()
        var events: [DeployEvent] = []
        let outcome = try deployment(fleet) { $0.syncOnly = true }.run { events.append($0) }
        XCTAssertEqual(outcome.result, .syncOnly)
        let phases = events.compactMap { e -> String? in if case .phaseFinished(let p, _, _) = e { return p.rawValue } else { return nil } }
        XCTAssertEqual(phases, ["check", "connect", "lock", "sync", "sync"])
        // lnbits-src: as rsync would leave it (the source's excludes).
        let r = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "--itemize-changes"]
                                + fleet.sources[0].exclude.map { "--exclude=\($0)" } + [lnbits + "/", root + "/lnbits-src/"])
        XCTAssertEqual(r.output, "", r.errorOutput)
        // nixos-config: the render, without the checkout that lies inside the fleet's folder.
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/nixos-config/lnbits"))
        XCTAssertEqual(try Command.run(["nix-instantiate", "--parse", root + "/nixos-config/configuration.nix"]).status, 0)
        let record = try syncRecord()
        XCTAssertEqual(record.outcome?.result, .syncOnly)
        XCTAssertEqual(record.id, outcome.id)
        let digest = record.sources["lnbits-src"]?.digest
        XCTAssertEqual(digest, outcome.record.sources["lnbits-src"]?.digest)
        XCTAssertTrue(digest?.hasPrefix("sha256:") == true)
        // The lock is free again.
        XCTAssertEqual(try Command.run(["flock", "-n", root + "/.ferry/lock", "true"]).status, 0)
    }

    /// A manifest the target holds already is not written again (its first line names its digest,
    /// which the lock holder reports), and a --sync-only deploy with nothing to write has the holder
    /// write the record as it lets go of the lock. A changed tree's manifest is written.
    /// What sources no longer in fleet.toml left under .ferry (a name starting with "-", a
    /// manifest.new that is a folder) never fails a deploy, and is left alone.
    func testLeftOverStateOfAnOldSourceNeverFailsADeploy() throws {
        for junk in ["-rf", "old/manifest.new"] {
            try FileManager.default.createDirectory(atPath: root + "/.ferry/" + junk, withIntermediateDirectories: true)
        }
        try "ferry-manifest sha256:00\n".write(toFile: root + "/.ferry/-rf/manifest.new", atomically: false, encoding: .utf8)
        let fleet = try fixture.load()
        for _ in 0..<2 {
            let outcome = try deployment(fleet) { $0.syncOnly = true }.run { _ in }
            XCTAssertEqual(outcome.result, .syncOnly)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/.ferry/lnbits-src/manifest"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/.ferry/-rf/manifest.new"), "left alone")
    }

    func testUnchangedManifestsAreKeptAndTheHolderWritesTheRecord() throws {
        let fleet = try fixture.load()
        _ = try deployment(fleet) { $0.syncOnly = true }.run { _ in }
        func identity(_ path: String) throws -> [FileAttributeKey: Any] { try FileManager.default.attributesOfItem(atPath: path) }
        let manifestPath = root + "/.ferry/lnbits-src/manifest"
        let first = try identity(manifestPath)[.systemFileNumber] as? Int
        let again = try deployment(fleet) { $0.syncOnly = true }.run { _ in }
        XCTAssertEqual(try identity(manifestPath)[.systemFileNumber] as? Int, first, "an unchanged manifest is left alone")
        let record = try syncRecord()
        XCTAssertEqual(record.id, again.id)
        XCTAssertEqual(record.outcome?.result, .syncOnly)
        XCTAssertEqual(try Command.run(["flock", "-n", root + "/.ferry/lock", "true"]).status, 0, "the lock is free")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/.ferry/last-sync.record.tmp"))

        try "print('changed')\n".write(toFile: lnbits + "/lnbits/added.py", atomically: true, encoding: .utf8)
        let changed = try deployment(try fixture.load()) { $0.syncOnly = true }.run { _ in }
        XCTAssertNotEqual(try identity(manifestPath)[.systemFileNumber] as? Int, first, "a changed tree's manifest is written")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: manifestPath)))
        let digest = changed.record.sources["lnbits-src"]?.digest ?? "none"
        XCTAssertTrue(bytes.starts(with: Array("ferry-manifest \(digest)\n".utf8)))
        let manifest = try ManifestFile.decode(bytes, target: "test")
        XCTAssertNotNil(manifest[Array("lnbits/added.py".utf8)])
        XCTAssertEqual(ManifestFile.digest(Array(bytes.drop(while: { $0 != UInt8(ascii: "\n") }).dropFirst())), digest)
    }

    /// A manifest whose records no longer match its header (changed or cut short on the host) is
    /// not taken for what the tree is: decoding it names the file and the cause, the lock holder does
    /// not report it, and the next deploy writes it again.
    func testAManifestThatDoesNotMatchItsHeaderIsRewrittenAndNamed() throws {
        let fleet = try fixture.load()
        _ = try deployment(fleet) { $0.syncOnly = true }.run { _ in }
        let manifestPath = root + "/.ferry/lnbits-src/manifest"
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: manifestPath)))
        XCTAssertNoThrow(try ManifestFile.decode(good, target: "t"))
        for bad in [Array(good.dropLast(7)), good.map { $0 == UInt8(ascii: "7") ? UInt8(ascii: "6") : $0 }] {
            XCTAssertThrowsError(try ManifestFile.decode(bad, target: "t", path: manifestPath)) { error in
                XCTAssertEqual("\(error)", "t: \(manifestPath) is unreadable: its records do not match the digest its header names (changed or cut short on the host)")
            }
            try Data(bad).write(to: URL(fileURLWithPath: manifestPath))
            let outcome = try deployment(fleet) { $0.syncOnly = true }.run { _ in }
            XCTAssertEqual(try [UInt8](Data(contentsOf: URL(fileURLWithPath: manifestPath))), good, "written again")
            XCTAssertEqual(outcome.result, .syncOnly)
        }
        XCTAssertThrowsError(try ManifestFile.decode(Array("ferry-manifest sha256:00".utf8), target: "t"))
    }

    /// Twenty deploys in one process leave no descriptor and no thread behind (lock holders,
    /// heartbeat pipes and timers, sync streams all end with their deploy).
    func testDeploysLeakNoDescriptorsOrThreads() throws {
        let fleet = try fixture.load()
        func count(_ dir: String) -> Int { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).count }
        _ = try deployment(fleet) { $0.syncOnly = true }.run { _ in }  // warm-up: lazily made threads and caches
        usleep(300_000)
        let fds = count("/proc/self/fd"), threads = count("/proc/self/task")
        for _ in 0..<20 { _ = try deployment(fleet) { $0.syncOnly = true }.run { _ in } }
        // Worker threads idle out; give them a moment before counting.
        var threadsAfter = count("/proc/self/task")
        for _ in 0..<50 where threadsAfter > threads { usleep(100_000); threadsAfter = count("/proc/self/task") }
        XCTAssertEqual(count("/proc/self/fd"), fds, "descriptors")
        XCTAssertLessThanOrEqual(threadsAfter, threads + 2, "threads (before \(threads), after \(threadsAfter))")
    }

    func testLocalChecksOpenNoShell() throws {
        let opened = Opened()
        try FileManager.default.removeItem(atPath: lnbits + "/lnbits")
        let fleet = try fixture.load()
        XCTAssertThrowsError(try deployment(fleet, opened: opened).run { _ in }) { error in
            guard case DeployError.localCheck(let text) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains("\(lnbits)/lnbits: missing; sources.lnbits-src requires lnbits/"), text)
        }
        try fixture.write("fleet.toml", try String(contentsOfFile: fixture.fleetFile, encoding: .utf8)
            .replacingOccurrences(of: "rendered = true", with: "rendered = false\npath = \"config\""))
        try FileManager.default.createDirectory(atPath: lnbits + "/lnbits", withIntermediateDirectories: true)
        XCTAssertThrowsError(try deployment(try fixture.load(), opened: opened).run { _ in }) { error in
            XCTAssertTrue("\(error)".contains("no source has rendered = true"), "\(error)")
        }
        XCTAssertEqual(opened.count.withLock { $0 }, 0, "nothing was contacted")
    }

    func testAHeldLockIsRefusedNamingItsHolder() throws {
        try FileManager.default.createDirectory(atPath: root + "/.ferry/deploys/20261127T000000Z-abcd", withIntermediateDirectories: true)
        let holder = LockHolder(id: "20261127T000000Z-abcd", operator_: "alice@laptop", pid: 4242, since: "2026-11-27T00:00:00Z")
        try (String(decoding: try JSONEncoder().encode(holder), as: UTF8.self) + "\n20261127T000000Z-abcd\n")
            .write(toFile: root + "/.ferry/lock-info", atomically: true, encoding: .utf8)
        // A "rebuild" that is alive: its pid is this shell's.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        let hold = root + "/hold"
        _ = FileManager.default.createFile(atPath: hold, contents: nil)
        process.arguments = ["-c", "echo $$ > \"$1/.ferry/deploys/20261127T000000Z-abcd/pid\"; exec flock \"$1/.ferry/lock\" sh -c 'i=0; while [ -e \"$1\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done' sh \"$1/hold\"", "sh", root]
        try process.run()
        defer { try? FileManager.default.removeItem(atPath: hold); process.waitUntilExit() }
        let deadline = Date().addingTimeInterval(5)
        while (try? Command.run(["flock", "-n", root + "/.ferry/lock", "true"]).status) == 0, Date() < deadline { usleep(20_000) }

        var busy: [LockHolder?] = []
        XCTAssertThrowsError(try deployment(try fixture.load()).run { if case .lockBusy(let who, _) = $0 { busy.append(who) } }) { error in
            guard case DeployError.lockHeld(_, let who, let waited) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(waited, 0)
            XCTAssertEqual(who?.operator_, "alice@laptop")
            XCTAssertEqual(who?.rebuildRunning, true)
            XCTAssertTrue("\(error)".contains("held by deploy 20261127T000000Z-abcd by alice@laptop (ferry pid 4242) since 2026-11-27T00:00:00Z, rebuild running"), "\(error)")
        }
        XCTAssertEqual(busy.map { $0?.id }, ["20261127T000000Z-abcd"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/lnbits-src"), "nothing was synced without the lock")
    }

    /// The record names the checkout's commit and whether it has changes, when it is a git checkout.
    func testRecordCarriesTheCheckoutsCommitAndDirtyFlag() throws {
        let git = try Command.which("git")
        for argv in [["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fixture"]] {
            let r = try Command.run([git, "-C", lnbits] + argv)
            XCTAssertEqual(r.status, 0, r.errorOutput)
        }
        let head = try Command.run([git, "-C", lnbits, "rev-parse", "HEAD"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let fleet = try fixture.load()
        var outcome = try deployment(fleet) { $0.syncOnly = true }.run { _ in }
        XCTAssertEqual(outcome.record.sources["lnbits-src"]?.commit, head)
        XCTAssertEqual(outcome.record.sources["lnbits-src"]?.dirty, false)
        XCTAssertNil(outcome.record.sources["nixos-config"]?.commit, "the rendered tree is no checkout")
        try "edit".write(toFile: lnbits + "/README.md", atomically: true, encoding: .utf8)
        outcome = try deployment(fleet) { $0.syncOnly = true }.run { _ in }
        XCTAssertEqual(outcome.record.sources["lnbits-src"]?.dirty, true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/lnbits-src/.git"), ".git is excluded")
    }
}
