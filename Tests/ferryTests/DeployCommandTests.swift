import FerryDeploy
import FerryTarget
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `ferry deploy HOST` end to end against a real sshd test host, from a copy of the example fleet
/// and an LNBits-shaped checkout, with the labelled systemd-run and nixos-rebuild stand-ins.
final class DeployCommandTests: HostTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let excludes = [".git", ".env", "data/", ".venv/", "node_modules/", "__pycache__/", "*.pyc"]
    static let sudoPassword = "ferry sudo pw 7Qx!"

    /// Logins for the sudo tests: passwordless sudo, sudo after a password, no sudo.
    override class var hostUsers: [TestUser] {
        [TestUser(name: "deploy", uid: 4242, sudo: true), TestUser(name: "secret", uid: 4244, sudo: true, password: sudoPassword),
         TestUser(name: "plain", uid: 4243, sudo: false)]
    }

    /// A folder with `deployments/` (the example fleet, fleet.toml rewritten for the test host)
    /// and `lnbits/` (the fixture checkout).
    struct Work {
        let root: String
        var fleetFile: String { root + "/deployments/fleet.toml" }
        var lnbits: String { root + "/lnbits" }
    }

    override func setUp() {
        super.setUp()
        // Each test starts from a host without deploys or a held or failing rebuild.
        guard let host = try? host else { return }
        // Emptied, not replaced: the host's /var/src is a bind mount of this very directory.
        host.reset()
    }

    func makeWork(port: Int? = nil, knownHosts: String? = nil, policy: String = "strict", identity: String? = nil, lnbitsPort: Int = 5000) throws -> Work {
        let root = NSTemporaryDirectory() + "ferry-deploy-test-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: Self.repository + "/deployments", toPath: root + "/deployments")
        var fixture = TreeFixture(seed: 7)
        try fixture.makeLNBitsTree(at: root + "/lnbits")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        let work = Work(root: root)
        try writeFleet(work, port: port, knownHosts: knownHosts, policy: policy, identity: identity, lnbitsPort: lnbitsPort)
        return work
    }

    func writeFleet(_ work: Work, port: Int? = nil, knownHosts: String? = nil, policy: String = "strict", identity: String? = nil, lnbitsPort: Int = 5000) throws {
        let toml = """
        shared = "shared.nix"

        [defaults]
        identity = "\(try identity ?? harness.clientKey(.ed25519))"
        known_hosts = "\(try knownHosts ?? harness.knownHostsFile)"
        host_key_policy = "\(policy)"

        [sources.lnbits-src]
        path = "../lnbits"
        exclude = [\(Self.excludes.map { "\"\($0)\"" }.joined(separator: ", "))]

        [sources.nixos-config]
        rendered = true

        [hosts.alpha]
        address = "127.0.0.1"
        port = \(try port ?? host.port)

        [hosts.alpha.vars]
        lnbitsPort = \(lnbitsPort)

        """
        try toml.write(toFile: work.fleetFile, atomically: true, encoding: .utf8)
    }

    /// A copy of the work's fleet.toml that reaches the host through `proxy` (its own known_hosts).
    func fleet(_ work: Work, through proxy: LinkProxy) throws -> String {
        let file = work.root + "/deployments/through-proxy.toml"
        try String(contentsOfFile: work.fleetFile, encoding: .utf8)
            .replacingOccurrences(of: "port = \(try host.port)", with: "port = \(proxy.port)")
            .replacingOccurrences(of: "host_key_policy = \"strict\"", with: "host_key_policy = \"accept-new\"")
            .replacingOccurrences(of: try harness.knownHostsFile, with: temporaryFile())
            .write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    func deploy(_ work: Work, _ extra: [String] = []) throws -> FerryBinary.Result {
        try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha"] + extra)
    }

    /// ferry deploy in the background, its output in files.
    func startDeploy(_ work: Work, _ extra: [String] = [], fleetFile: String? = nil, command: String = "deploy") throws -> (Process, String) {
        let out = NSTemporaryDirectory() + "ferry-deploy-out-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FerryBinary.path())
        process.arguments = [command, "-f", fleetFile ?? work.fleetFile, "alpha"] + extra
        let handle = FileHandle(forWritingAtPath: out)!
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        addTeardownBlock { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        return (process, out)
    }

    /// A deploy in the background once its rebuild has started, held there by the stand-in
    /// (`holdRebuild(false)` lets it end).
    func startDeployHeldInItsRebuild(_ work: Work) throws -> (Process, String) {
        let h = try host
        h.holdRebuild(true)
        let started = try startDeploy(work)
        waitFor("the deploy's rebuild") { h.standInCalls().count == 1 }
        return started
    }

    func waitFor(_ what: String, seconds: Double = 30, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { XCTFail("timed out waiting for \(what)"); return }
            usleep(20_000)
        }
    }

    /// The last rebuild's record on the host (or the last sync-only deploy's).
    func record(sync: Bool = false, varSrc: String? = nil) throws -> DeployRecord {
        let file = (try varSrc ?? host.varSrc) + "/.ferry/" + (sync ? "last-sync.record" : "last-rebuild.record")
        let read = DeployRecord.read(Array(try Data(contentsOf: URL(fileURLWithPath: file))), file: file)
        guard case .record(let r) = read else { throw TestHostError.missingPrerequisite("a readable record: \(read)") }
        return r
    }

    func logins() throws -> Int {
        let log = (try? String(contentsOfFile: try host.directory + "/sshd.log", encoding: .utf8)) ?? ""
        return log.components(separatedBy: "Accepted publickey").count - 1
    }

    func oracle(_ source: String, _ name: String, excludes: [String]) throws -> String {
        let r = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "--itemize-changes"]
                                + excludes.map { "--exclude=\($0)" } + [source + "/", try host.varSrc + "/\(name)/"])
        XCTAssertEqual(r.status, 0, r.errorOutput)
        return r.output
    }

    // MARK: - End to end

    func testDeployEndToEndThenNoOpThenSameLengthChange() throws {
        let work = try makeWork()
        let h = try host
        // Excluded litter in the checkout, and a file that will be gone by the second deploy.
        try "SECRET=1\n".write(toFile: work.lnbits + "/.env", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: work.lnbits + "/lnbits/__pycache__", withIntermediateDirectories: true)
        try "x".write(toFile: work.lnbits + "/lnbits/__pycache__/app.cpython-312.pyc", atomically: true, encoding: .utf8)
        try "stale".write(toFile: work.lnbits + "/stale.txt", atomically: true, encoding: .utf8)
        try "editor".write(toFile: work.root + "/deployments/host.nix~", atomically: true, encoding: .utf8)
        try "KEY=1".write(toFile: work.root + "/deployments/.env", atomically: true, encoding: .utf8)

        let first = try deploy(work, ["--stats"])
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        XCTAssertTrue(first.stdout.contains("alpha | deployed (switch, deploy "), first.stdout)
        // Confirm-or-revert (the default for a switch): the job builds, activates the result
        // itself, and a fresh login confirms it.
        XCTAssertTrue(first.stdout.contains("alpha | stand-in: build of /var/src/nixos-config/configuration.nix done"), first.stdout)
        XCTAssertTrue(first.stdout.contains("alpha | ferry: activating /nix/store/"), first.stdout)
        for phase in ["check:", "connect:", "lock:", "sync: lnbits-src", "sync: nixos-config", "confirm: confirmed by a fresh login", "rebuild: succeeded"] {
            XCTAssertTrue(first.stdout.contains("alpha | " + phase), "phase \(phase): \(first.stdout)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.varSrc + "/lnbits-src/.env"), "excluded files are not sent")
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.varSrc + "/lnbits-src/lnbits/__pycache__"))
        for litter in ["host.nix~", ".env", "fleet.toml", ".ferry"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: h.varSrc + "/nixos-config/" + litter), "\(litter) stays out of the rendered tree")
        }

        // The stand-ins saw exactly the command lines a NixOS host must get.
        let unitLine = try XCTUnwrap(h.systemdRunCalls().last)
        let id = try record().id
        XCTAssertTrue(unitLine.hasPrefix("systemd-run --unit ferry-deploy-\(id) --collect --pipe --quiet --setenv=PATH="), unitLine)
        XCTAssertTrue(unitLine.hasSuffix(" -- /bin/sh /var/src/.ferry/deploys/\(id)/job.sh"), unitLine)
        XCTAssertEqual(h.standInCalls().last, "nixos-rebuild build --no-flake -I nixos-config=/var/src/nixos-config/configuration.nix -I /var/src --option extra-experimental-features 'nix-command flakes'")
        XCTAssertEqual(h.activations().last, "switch " + (h.runningSystem ?? "?"), "the built system, activated")
        let env = try String(contentsOfFile: h.standInState + "/env.log", encoding: .utf8)
        XCTAssertTrue(env.split(separator: "\n").contains("PATH=/run/current-system/sw/bin"), "PATH came through --setenv: \(env)")
        XCTAssertTrue(env.contains("cwd=/var/src/.ferry/deploys/\(id)"), env)

        var r = try record()
        XCTAssertEqual(r.outcome?.result, .success)
        XCTAssertEqual(r.outcome?.exitStatus, 0)
        XCTAssertNotNil(r.outcome?.durationSeconds)
        XCTAssertEqual(r.outcome?.currentSystem, h.runningSystem)
        XCTAssertEqual(r.operation, "switch")
        XCTAssertEqual(r.ferryVersion, "0.4.0")
        XCTAssertNotNil(r.sources["lnbits-src"])
        XCTAssertTrue(r.operator_.hasPrefix("root@"))
        XCTAssertEqual(try String(contentsOfFile: h.varSrc + "/.ferry/deploys/\(id)/status", encoding: .utf8), "0\n")

        // The rendered configuration is the render, and parses.
        let rendered = try FerryBinary.run(["render", "-f", work.fleetFile, "--out", work.root + "/out", "alpha"])
        XCTAssertEqual(rendered.status, 0, rendered.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: h.varSrc + "/nixos-config/configuration.nix"),
                       FileManager.default.contents(atPath: work.root + "/out/alpha/configuration.nix"))
        XCTAssertEqual(try Command.run(["nix-instantiate", "--parse", h.varSrc + "/nixos-config/configuration.nix"]).status, 0)
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "", "rsync oracle")

        // No change: no file data is sent. A stale file goes.
        try FileManager.default.removeItem(atPath: work.lnbits + "/stale.txt")
        let second = try deploy(work, ["--stats"])
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        XCTAssertTrue(second.stdout.contains("sync: lnbits-src: 0 files sent (0 bytes), 1 deleted"), second.stdout)
        XCTAssertTrue(second.stdout.contains("sync: nixos-config: 0 files sent (0 bytes), 0 deleted"), second.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.varSrc + "/lnbits-src/stale.txt"))
        let third = try deploy(work, ["--stats"])
        XCTAssertTrue(third.stdout.contains("sync: lnbits-src: 0 files sent (0 bytes), 0 deleted"), third.stdout)

        // A same-length change of a var is sent.
        try writeFleet(work, lnbitsPort: 5001)
        let fourth = try deploy(work)
        XCTAssertEqual(fourth.status, 0, fourth.stderr)
        XCTAssertTrue(fourth.stdout.contains("sync: nixos-config: 1 files sent"), fourth.stdout)
        let config = try String(contentsOfFile: h.varSrc + "/nixos-config/configuration.nix", encoding: .utf8)
        XCTAssertTrue(config.contains("lnbitsPort = 5001;"), config)
        r = try record()
        XCTAssertEqual(r.outcome?.result, .success)
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")

        // The full output is kept beside fleet.toml.
        let logs = try FileManager.default.contentsOfDirectory(atPath: work.root + "/deployments/.ferry/logs/alpha")
        XCTAssertEqual(logs.count, 4, "\(logs)")
    }

    func testOperationArgumentsSyncOnlyAndTheSetsidPath() throws {
        let h2 = try harness.startHost(name: "nosystemd", systemd: false)
        defer { h2.stop() }
        let work = try makeWork(port: h2.port)
        let r = try deploy(work, ["--op", "build", "--", "--show-trace"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(h2.systemdRunCalls(), [], "without /run/systemd/system the job runs under setsid")
        XCTAssertEqual(h2.standInCalls().last, "nixos-rebuild build --no-flake -I nixos-config=/var/src/nixos-config/configuration.nix -I /var/src --option extra-experimental-features 'nix-command flakes' --show-trace")
        let id = try XCTUnwrap(r.stdout.range(of: "deploy ", options: .backwards).map { String(r.stdout[$0.upperBound...].prefix(while: { $0 != ")" })) })
        let result = try FileManager.default.destinationOfSymbolicLink(atPath: h2.varSrc + "/.ferry/deploys/\(id)/result")
        XCTAssertTrue(result.hasPrefix("/nix/store/") && result.contains("-nixos-system-stand-in-"), "build leaves ./result in the deploy's folder: \(result)")

        let syncOnly = try deploy(work, ["--sync-only"])
        XCTAssertEqual(syncOnly.status, 0, syncOnly.stderr)
        XCTAssertEqual(h2.standInCalls().count, 1, "--sync-only does not rebuild")
        XCTAssertEqual(try record(sync: true, varSrc: h2.varSrc).outcome?.result, .syncOnly)
        XCTAssertEqual(try record(varSrc: h2.varSrc).operation, "build", "the rebuild's record stays")
    }

    // MARK: - Refusals before and at connection

    func testMissingRequiredFileIsRefusedBeforeAnyLogin() throws {
        let work = try makeWork()
        try FileManager.default.removeItem(atPath: work.lnbits + "/uv.lock")
        let before = try logins()
        let r = try deploy(work)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("\(work.lnbits)/uv.lock: missing; sources.lnbits-src requires uv.lock"), r.stderr)
        usleep(200_000)
        XCTAssertEqual(try logins(), before, "no connection was opened")
        // Positive control: with the file back, the same fleet logs in.
        try "lock".write(toFile: work.lnbits + "/uv.lock", atomically: true, encoding: .utf8)
        XCTAssertEqual(try deploy(work, ["--sync-only"]).status, 0)
        usleep(200_000)
        XCTAssertGreaterThan(try logins(), before)
    }

    func testUnreachableHostAndFailedLogin() throws {
        let closed = try Loopback.freePort()
        let work = try makeWork(port: closed)
        let unreachable = try deploy(work, ["--connect-timeout", "3"])
        XCTAssertEqual(unreachable.status, 255, unreachable.stderr)
        XCTAssertTrue(unreachable.stderr.contains("ferry: alpha: cannot connect to 127.0.0.1 port \(closed)"), unreachable.stderr)

        try writeFleet(work, identity: try harness.clientKey(.unauthorized))
        let denied = try deploy(work)
        XCTAssertEqual(denied.status, 255, denied.stderr)
        XCTAssertTrue(denied.stderr.contains("authentication failed"), denied.stderr)
    }

    // MARK: - The lock

    func testHeldLockRefusesThenWaitsWithLockTimeout() throws {
        let work = try makeWork()
        let h = try host
        let (first, firstOut) = try startDeployHeldInItsRebuild(work)

        let refused = try deploy(work)
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("the deploy lock is held by deploy "), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("by root@"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("(ferry pid \(first.processIdentifier))"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains(", rebuild running"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--lock-timeout"), refused.stderr)

        let (waiter, waiterOut) = try startDeploy(work, ["--lock-timeout", "60"])
        waitFor("the waiting deploy to report the holder") {
            ((try? String(contentsOfFile: waiterOut, encoding: .utf8)) ?? "").contains("lock: held by deploy ")
        }
        h.holdRebuild(false)
        first.waitUntilExit()
        waiter.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0, (try? String(contentsOfFile: firstOut, encoding: .utf8)) ?? "")
        XCTAssertEqual(waiter.terminationStatus, 0, (try? String(contentsOfFile: waiterOut, encoding: .utf8)) ?? "")
        XCTAssertEqual(h.standInCalls().count, 2)
    }

    /// A sync into /var/src/NAME takes the host's deploy lock: it never replaces a tree under a
    /// running rebuild; with --lock-timeout it waits for the deploy and then runs.
    func testSyncIntoVarSrcTakesTheDeployLock() throws {
        let work = try makeWork()
        let h = try host
        let (first, firstOut) = try startDeployHeldInItsRebuild(work)
        let other = NSTemporaryDirectory() + "ferry-sync-other-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: other) }
        try "other".write(toFile: other + "/flake.nix", atomically: false, encoding: .utf8)
        let tree = { try Command.check(["sh", "-c", "cd \"$1\" && find . -printf '%p %y %s %T@ %m\\n' | LC_ALL=C sort", "snap", h.varSrc + "/lnbits-src"]).output }
        let before = try tree()
        let sync = ["sync", other, "root@127.0.0.1:\(h.port):/var/src/lnbits-src", "--force",
                    "-i", try harness.clientKey(.ed25519), "--known-hosts", try harness.knownHostsFile]
        let refused = try FerryBinary.run(sync)
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("the deploy lock is held by deploy "), refused.stderr)
        XCTAssertTrue(refused.stderr.contains(", rebuild running"), refused.stderr)
        XCTAssertEqual(try tree(), before, "the tree under the rebuild is untouched")

        let waiter = Process()
        waiter.executableURL = URL(fileURLWithPath: FerryBinary.path())
        waiter.arguments = sync + ["--lock-timeout", "60"]
        waiter.standardOutput = FileHandle.nullDevice
        waiter.standardError = FileHandle.nullDevice
        try waiter.run()
        addTeardownBlock { if waiter.isRunning { kill(waiter.processIdentifier, SIGKILL); waiter.waitUntilExit() } }
        usleep(500_000)
        h.holdRebuild(false)
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0, (try? String(contentsOfFile: firstOut, encoding: .utf8)) ?? "")
        waiter.waitUntilExit()
        XCTAssertEqual(waiter.terminationStatus, 0)
        XCTAssertEqual(try String(contentsOfFile: h.varSrc + "/lnbits-src/flake.nix", encoding: .utf8), "other")
    }

    /// A deploy through a 200 kB/s link, caught while it stages files (holding its lock).
    func startDeployInsideItsSync(_ work: Work) throws -> (Process, LinkProxy) {
        let proxy = try LinkProxy(to: try host.port, shape: .init(bytesPerSecond: 200_000))
        let (slow, _) = try startDeploy(work, fleetFile: try fleet(work, through: proxy))
        let h = try host
        waitFor("the slow deploy to stage files") {
            ((try? FileManager.default.contentsOfDirectory(atPath: h.varSrc + "/.ferry/lnbits-src/stage/data")) ?? []).count > 0
        }
        return (slow, proxy)
    }

    /// The lock holder shares the dead deploy's connection: sshd ends it once the connection
    /// closes, which is once the link has carried what the dead process's socket still held (at
    /// 200 kB/s here, about a second), long before the 30 s heartbeat bound.
    func testKillNineBeforeTheRebuildFreesTheLockWhenTheConnectionCloses() throws {
        // A slow link keeps the first deploy inside its sync, holding the lock.
        let work = try makeWork()
        let (slow, proxy) = try startDeployInsideItsSync(work)
        defer { proxy.stop() }
        kill(slow.processIdentifier, SIGKILL)
        slow.waitUntilExit()
        let start = Date()
        let next = try deploy(work, ["--lock-timeout", "20"])
        XCTAssertEqual(next.status, 0, next.stdout + next.stderr)
        let waited = next.stdout.components(separatedBy: "\n").first { $0.contains("| lock: deploy") }
            .flatMap { $0.split(separator: "(").last.flatMap { Double($0.prefix { $0 != " " }) } }
        XCTAssertLessThan(try XCTUnwrap(waited, next.stdout), 15, "the lock was not freed with the connection (the heartbeat's 30 s): \(next.stdout)")
        XCTAssertLessThan(Date().timeIntervalSince(start), 40)
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")
    }

    /// A blackholed link never closes: the holder ends itself (and the deploy's sync) once the
    /// heartbeat has been silent for 30 s.
    func testBlackholedLinkFreesTheLockWhenTheHeartbeatStops() throws {
        let work = try makeWork()
        let (slow, proxy) = try startDeployInsideItsSync(work)
        defer { proxy.stop() }
        proxy.blackhole()
        kill(slow.processIdentifier, SIGKILL)
        slow.waitUntilExit()
        let start = Date()
        let next = try deploy(work, ["--lock-timeout", "120"])
        let waited = Date().timeIntervalSince(start)
        XCTAssertEqual(next.status, 0, next.stdout + next.stderr)
        XCTAssertTrue(next.stdout.contains("lock: held by deploy "), next.stdout)
        XCTAssertGreaterThan(waited, 15, "the holder outlives a short silence")
        XCTAssertLessThan(waited, 90, "30 s after the last heartbeat, plus the 5 s between heartbeats, with room for a loaded machine")
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")
    }

    func testKillNineDuringTheRebuildKeepsTheLockUntilTheStatusIsWritten() throws {
        let work = try makeWork()
        // With no ferry left to confirm it, the job reverts after the wait: the lock is its until then.
        try setDefaults(work, "confirm_timeout = 2")
        let h = try host
        let (first, _) = try startDeployHeldInItsRebuild(work)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        usleep(300_000)
        let refused = try deploy(work)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains(", rebuild running"), refused.stderr)
        h.holdRebuild(false)
        let next = try deploy(work, ["--lock-timeout", "60"])
        XCTAssertEqual(next.status, 0, next.stdout + next.stderr)
        XCTAssertEqual(h.standInCalls().count, 2)
    }

    /// After ferry died (or lost contact) during the rebuild, `status --follow` re-attaches to
    /// its log from the start and reports how it ended.
    func testStatusFollowReattachesToARunningRebuild() throws {
        let work = try makeWork()
        let h = try host
        let never = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha", "--follow"])
        XCTAssertEqual(never.status, 0, never.stderr)
        XCTAssertTrue(never.stdout.contains("alpha | never deployed by ferry: nothing to follow"), never.stdout)

        let (first, _) = try startDeployHeldInItsRebuild(work)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let id = try record().id

        let out = temporaryFile()
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: FerryBinary.path())
        follower.arguments = ["status", "-f", work.fleetFile, "alpha", "--follow"]
        let handle = FileHandle(forWritingAtPath: out)
        follower.standardOutput = handle
        follower.standardError = handle
        try follower.run()
        addTeardownBlock { if follower.isRunning { kill(follower.processIdentifier, SIGKILL); follower.waitUntilExit() } }
        waitFor("the log so far") { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("stand-in: holding while") }
        XCTAssertTrue(follower.isRunning, "still following the held rebuild: " + ((try? String(contentsOfFile: out, encoding: .utf8)) ?? ""))
        h.holdRebuild(false)
        follower.waitUntilExit()
        let text = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertEqual(follower.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("alpha | stand-in: build of /var/src/nixos-config/configuration.nix done"), text)
        XCTAssertTrue(text.contains("alpha | confirm: confirmed by a fresh login"), text)
        XCTAssertTrue(text.hasSuffix("alpha | rebuild of deploy \(id): succeeded\n"), text)

        // Once it has ended: the whole log and the result, at once; a failure exits 1.
        let again = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha", "--follow"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("building the system configuration"), again.stdout)
        try h.setStandInFailure("boom")
        XCTAssertEqual(try deploy(work).status, 1)
        let failed = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha", "--follow"])
        XCTAssertEqual(failed.status, 1, failed.stdout + failed.stderr)
        XCTAssertTrue(failed.stdout.contains(": failed: exit status "), failed.stdout)
    }

    /// Ctrl-C during the rebuild stops ferry, never the activation: the job finishes and records.
    func testInterruptDuringTheRebuildLeavesItRunning() throws {
        let work = try makeWork()
        let h = try host
        let (process, out) = try startDeployHeldInItsRebuild(work)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 130, text)
        XCTAssertTrue(text.contains("interrupted; a rebuild that had started keeps running on the target"), text)
        XCTAssertNil(try record().outcome, "started, no result yet")
        XCTAssertTrue(text.contains("the switch it activates is reverted unless a fresh login confirms it: ferry status alpha --follow does"), text)
        let busy = try deploy(work)
        XCTAssertTrue(busy.stderr.contains(", rebuild running"), busy.stderr)
        h.holdRebuild(false)
        // Following it is logging in afresh: status --follow confirms the switch.
        let follow = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha", "--follow"])
        XCTAssertEqual(follow.status, 0, follow.stdout + follow.stderr)
        XCTAssertTrue(follow.stdout.contains("alpha | confirm: confirmed by a fresh login"), follow.stdout)
        XCTAssertEqual(try record().outcome?.result, .success)
        // --no-sync rebuilds what the target has; the newest 20 deploy folders are kept (by when
        // each started on the host: its record base's mtime).
        for i in 0..<25 {
            let folder = h.varSrc + "/.ferry/deploys/20200101T0000\(String(format: "%02d", i))Z-0000"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: folder + "/record-base.json", contents: Data("{}".utf8))
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_577_836_800 + Double(i))], ofItemAtPath: folder + "/record-base.json")
        }
        let again = try deploy(work, ["--no-sync"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertFalse(again.stdout.contains("sync:"), again.stdout)
        XCTAssertEqual(h.standInCalls().count, 2)
        let kept = try FileManager.default.contentsOfDirectory(atPath: h.varSrc + "/.ferry/deploys").sorted()
        XCTAssertEqual(kept.count, 20)
        XCTAssertTrue(kept.last?.hasPrefix("2026") == true, "the newest stay: \(kept)")
    }

    // MARK: - The rebuild's outcome

    func testFailedRebuildShowsStatusAndLastLinesKeepsTheLogAndRecordsFailure() throws {
        let work = try makeWork()
        let h = try host
        try h.setStandInFailure("error: attribute 'lnbits' missing\n       at /var/src/nixos-config/config/lnbits.nix:3:5")
        let r = try deploy(work)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("ferry: alpha: nixos-rebuild switch failed: exit status 1 (log: \(work.root)/deployments/.ferry/logs/alpha/"), r.stderr)
        XCTAssertTrue(r.stderr.contains("alpha | error: attribute 'lnbits' missing"), r.stderr)
        let logPath = try XCTUnwrap(r.stderr.range(of: "(log: ").map { String(r.stderr[$0.upperBound...].prefix(while: { $0 != ")" })) })
        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        XCTAssertTrue(log.contains("error: attribute 'lnbits' missing"), log)
        XCTAssertTrue(log.contains("sync: lnbits-src"), log)
        let rec = try record()
        XCTAssertEqual(rec.outcome?.result, .failed)
        XCTAssertEqual(rec.outcome?.exitStatus, 1)
    }

    /// C1 controls (CSI, OSC … ST) from the target reach the terminal escaped, in one form, on
    /// every path: rebuild output, a fleet exec's lines, errors; invalid bytes too; `…` stays.
    func testControlCharactersFromTheTargetAreEscapedInOneForm() throws {
        let work = try makeWork()
        let h = try host
        try h.setStandInFailure("error: \u{9B}31mred\u{9D}0;title\u{9C} building…")
        let r = try deploy(work)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        for text in [r.stdout, r.stderr] {
            XCTAssertFalse(text.unicodeScalars.contains { (0x80..<0xA0).contains($0.value) }, text)
        }
        XCTAssertTrue(r.stderr.contains("alpha | error: \\#302\\#23331mred\\#302\\#2350;title\\#302\\#234 building…"), r.stderr)

        // One host's exec output is its bytes, as ssh gives them (a fleet's prefixed lines are escaped).
        let raw = try FerryBinary.run(["exec", "-f", work.fleetFile, "alpha", "--", "printf", "a\\302\\233b\\377c\\n"])
        XCTAssertEqual(raw.stdout, "a\u{9B}b\u{FFFD}c\n")
    }

    func testLinkCutDuringTheRebuildReconnectsAndReportsTheRealResult() throws {
        let proxy = try LinkProxy(to: try host.port)
        defer { proxy.stop() }
        let work = try makeWork(port: proxy.port, knownHosts: temporaryFile(), policy: "accept-new")
        let h = try host
        let (process, out) = try startDeployHeldInItsRebuild(work)
        usleep(300_000)
        proxy.reset()
        waitFor("ferry to notice") { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("reconnecting") }
        h.holdRebuild(false)
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("alpha | stand-in: build of /var/src/nixos-config/configuration.nix done"), text)
        XCTAssertTrue(text.contains("alpha | confirm: confirmed by a fresh login"), text)
        XCTAssertTrue(text.contains("rebuild: succeeded"), text)
        XCTAssertEqual(text.components(separatedBy: "stand-in: holding while").count, 2, "the log is followed on from where it stopped, not repeated: \(text)")
    }

    func testOutcomeIsUnknownWhenContactIsNotRegained() throws {
        let proxy = try LinkProxy(to: try host.port)
        let work = try makeWork(port: proxy.port, knownHosts: temporaryFile(), policy: "accept-new")
        let h = try host
        h.holdRebuild(true)
        defer { h.holdRebuild(false) }
        let (process, out) = try startDeploy(work, ["--reconnect-timeout", "2", "--connect-timeout", "1"])
        waitFor("the rebuild") { h.standInCalls().count == 1 }
        proxy.stop()
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 3, text)
        XCTAssertTrue(text.contains("ferry: alpha: unknown: lost contact during switch; the rebuild may still be running"), text)
        XCTAssertTrue(text.contains("see how it ends with: ferry status alpha --follow"), text)
        // Contact regained (the host reached directly): status --follow tells the real outcome.
        try writeFleet(work)
        h.holdRebuild(false)
        let followed = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha", "--follow"])
        XCTAssertEqual(followed.status, 0, followed.stdout + followed.stderr)
        XCTAssertTrue(followed.stdout.contains(": succeeded"), followed.stdout)
    }

    // MARK: - Target faults

    func testDiskFullDuringTheSyncLeavesNoPartialFileAndTheNextDeployConverges() throws {
        let work = try makeWork()
        let session = try connect()
        defer { session.close() }
        // A small tmpfs on /var/src inside the host's mount namespace.
        XCTAssertEqual(try run(session, ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", "/var/src"]).status, .exited(0))
        let full = try deploy(work)
        XCTAssertEqual(full.status, 1, full.stdout + full.stderr)
        XCTAssertTrue(full.stderr.contains("ferry: alpha: root@127.0.0.1:\(try host.port)"), full.stderr)
        XCTAssertTrue(full.stderr.contains("/var/src/lnbits-src"), full.stderr)
        XCTAssertTrue(full.stderr.contains("No space left on device"), full.stderr)
        // Every file under a final name is whole (the source's copy).
        let listing = try run(session, ["sh", "-c", "cd /var/src/lnbits-src 2>/dev/null && find . -type f -exec sha256sum {} + || true"])
        for line in listing.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            let path = String(parts[1].dropFirst(3))
            let local = try Command.run(["sha256sum", work.lnbits + "/" + path])
            XCTAssertEqual(local.output.split(separator: " ").first, parts.first, "partial file under its final name: \(path)")
        }
        XCTAssertEqual(try run(session, ["umount", "/var/src"]).status, .exited(0))
        let roomy = try deploy(work)
        XCTAssertEqual(roomy.status, 0, roomy.stdout + roomy.stderr)
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")
    }

    // MARK: - status and unlock

    func status(_ work: Work) throws -> FerryBinary.Result {
        try FerryBinary.run(["status", "-f", work.fleetFile, "alpha"])
    }

    func testStatusNamesDriftAndAChangedSystem() throws {
        let work = try makeWork()
        let h = try host
        XCTAssertTrue(try status(work).stdout.contains("alpha | never deployed by ferry"))
        XCTAssertEqual(try deploy(work).status, 0)
        var s = try status(work)
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains("alpha | last deploy "), s.stdout)
        XCTAssertTrue(s.stdout.contains(", switch: success, "), s.stdout)
        XCTAssertTrue(s.stdout.contains("alpha | lock: free"), s.stdout)
        XCTAssertTrue(s.stdout.contains("alpha | lnbits-src: unchanged since the deploy"), s.stdout)
        XCTAssertTrue(s.stdout.contains("alpha | nixos-config: unchanged since the deploy"), s.stdout)

        // On the host: one file edited (same size), one added, one removed.
        let tree = h.varSrc + "/lnbits-src"
        var readme = try Data(contentsOf: URL(fileURLWithPath: tree + "/README.md"))
        readme[0] = readme[0] == UInt8(ascii: "x") ? UInt8(ascii: "y") : UInt8(ascii: "x")
        try readme.write(to: URL(fileURLWithPath: tree + "/README.md"))
        try "new".write(toFile: tree + "/lnbits/added.py", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: tree + "/pyproject.toml")
        s = try status(work)
        XCTAssertTrue(s.stdout.contains("alpha | lnbits-src: 1 added, 1 changed, 1 removed since the deploy"), s.stdout)
        XCTAssertTrue(s.stdout.contains("alpha |   + lnbits-src/lnbits/added.py"), s.stdout)
        XCTAssertTrue(s.stdout.contains("alpha |   ~ lnbits-src/README.md"), s.stdout)
        XCTAssertTrue(s.stdout.contains("alpha |   - lnbits-src/pyproject.toml"), s.stdout)

        // A --sync-only deploy puts things right and records it apart: nothing to report, and
        // the last rebuild's record is still the one shown.
        XCTAssertEqual(try deploy(work, ["--sync-only"]).status, 0)
        s = try status(work)
        XCTAssertTrue(s.stdout.contains("alpha | lnbits-src: unchanged since the deploy"), s.stdout)
        XCTAssertTrue(s.stdout.contains("alpha | last sync-only deploy "), s.stdout)
        XCTAssertTrue(s.stdout.contains(", switch: success, "), s.stdout)

        // A system other than the one the rebuild recorded: still named after the sync-only deploy.
        let recordPath = h.varSrc + "/.ferry/last-rebuild.record"
        let old = "/nix/store/" + String(repeating: "a", count: 32) + "-nixos-system-old"
        let text = try String(contentsOfFile: recordPath, encoding: .utf8)
        // (The outcome line's sixth field is the system the rebuild left.)
        try text.replacingOccurrences(of: #"(?m)^(finished \S+ \S+ \S+ \S+) \S+"#, with: "$1 \(old)", options: .regularExpression)
            .write(toFile: recordPath, atomically: true, encoding: .utf8)
        s = try status(work)
        XCTAssertTrue(s.stdout.contains("CHANGED since the deploy, which left \(old)"), s.stdout)

        // A record cut short is named as such, never "never deployed".
        try String(text.dropLast(5)).write(toFile: recordPath, atomically: true, encoding: .utf8)
        s = try status(work)
        XCTAssertTrue(s.stdout.contains("alpha | last deploy: the record /var/src/.ferry/last-rebuild.record is unreadable: it is cut short"), s.stdout)
        XCTAssertFalse(s.stdout.contains("never deployed"), s.stdout)
    }

    /// One answer to "who holds the lock" for deploy, status and unlock: a process that is not
    /// ferry's flocking it is named as such by all three (status said "lock: free").
    func testALockHeldByAnotherProcessIsNamedAlikeByStatusDeployAndUnlock() throws {
        let work = try makeWork()
        XCTAssertEqual(try deploy(work).status, 0)
        let h = try host
        let holder = Process()
        // One process that holds the lock until it is stopped (flock(1) would leave its command holding it).
        holder.executableURL = URL(fileURLWithPath: try Command.which("python3"))
        holder.arguments = ["-c", "import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\ntime.sleep(60)", h.varSrc + "/.ferry/lock"]
        try holder.run()
        addTeardownBlock { if holder.isRunning { holder.terminate(); holder.waitUntilExit() } }
        waitFor("the flock") { (try? Command.run(["flock", "-n", h.varSrc + "/.ferry/lock", "true"]).status) == 1 }
        XCTAssertTrue(try status(work).stdout.contains("alpha | lock: held by a process that is not ferry's (no live holder is recorded)"))
        let refused = try deploy(work)
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("the deploy lock is held by a process that is not ferry's"), refused.stderr)
        let unlock = try FerryBinary.run(["unlock", "-f", work.fleetFile, "alpha", "--force"])
        XCTAssertEqual(unlock.status, 1, unlock.stdout + unlock.stderr)
        XCTAssertTrue(unlock.stderr.contains("is held by a process that is not ferry's (no live holder is recorded), which ferry will not stop"), unlock.stderr)
        XCTAssertTrue(holder.isRunning, "unlock left it alone")
        holder.terminate()
        holder.waitUntilExit()
        XCTAssertTrue(try status(work).stdout.contains("alpha | lock: free"))
    }

    func testUnlockFreesADeadHoldersLockAndRefusesARunningRebuild() throws {
        let work = try makeWork()
        let h = try host
        let free = try FerryBinary.run(["unlock", "-f", work.fleetFile, "alpha"])
        XCTAssertEqual(free.status, 0, free.stderr)
        XCTAssertTrue(free.stdout.contains("alpha | the lock is free"), free.stdout)

        let (first, _) = try startDeployHeldInItsRebuild(work)
        let refused = try FerryBinary.run(["unlock", "-f", work.fleetFile, "alpha"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("a rebuild holds the lock (deploy "), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("rebuild running); refusing. --force"), refused.stderr)
        XCTAssertTrue(try status(work).stdout.contains("alpha | lock: rebuild running (deploy "))

        let forced = try FerryBinary.run(["unlock", "-f", work.fleetFile, "alpha", "--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertTrue(forced.stderr.contains("warning: stopped a running rebuild"), forced.stderr)
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 1, "the stopped rebuild is a failure, never success")
        XCTAssertEqual(try record().outcome?.result, .stopped, "the record says so (it said \"started, no result\" for ever)")
        XCTAssertTrue(try status(work).stdout.contains(", switch: stopped, "))
        h.holdRebuild(false)
        XCTAssertEqual(try deploy(work).status, 0)
    }

    // MARK: - diff

    /// The paths `rsync -rlptDn --delete --modify-window=-1` would touch, as diff names them.
    func rsyncWouldTouch(_ work: Work) throws -> Set<String> {
        let r = try Command.run(["rsync", "-rlptDn", "--delete", "--modify-window=-1", "--itemize-changes"]
                                + Self.excludes.map { "--exclude=\($0)" } + [work.lnbits + "/", try host.varSrc + "/lnbits-src/"])
        return Set(r.output.split(separator: "\n").map { line -> String in
            var path = String(line.dropFirst(12))
            if let arrow = path.range(of: " -> ") { path = String(path[..<arrow.lowerBound]) }
            if path.hasSuffix("/") { path.removeLast() }
            return path.isEmpty ? "." : path
        })
    }

    func testDiffShowsWhatADeployWouldChangeAndChangesNothing() throws {
        let work = try makeWork()
        let h = try host
        let fresh = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--exit-code"])
        XCTAssertEqual(fresh.status, 1, fresh.stderr)
        XCTAssertTrue(fresh.stdout.contains("+++ b/configuration.nix"), "a host never deployed shows every file as added")
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: h.varSrc)) ?? [], [], "diff wrote nothing")

        XCTAssertEqual(try deploy(work).status, 0)
        let clean = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--exit-code"])
        XCTAssertEqual(clean.status, 0, clean.stdout + clean.stderr)
        XCTAssertTrue(clean.stdout.contains("lnbits-src: no changes") && clean.stdout.contains("total: 0 changes"), clean.stdout)

        // One of each kind, and a same-length var change.
        try "x".write(toFile: work.lnbits + "/new.txt", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: work.lnbits + "/tests/test_1.py")
        let readme = work.lnbits + "/README.md"
        var data = try Data(contentsOf: URL(fileURLWithPath: readme))
        data[0] = data[0] == UInt8(ascii: "a") ? UInt8(ascii: "b") : UInt8(ascii: "a")
        try data.write(to: URL(fileURLWithPath: readme))
        try Command.check(["touch", "-d", "2001-02-03 04:05:06", work.lnbits + "/uv.lock"])
        chmod(work.lnbits + "/flake.nix", 0o755)
        try FileManager.default.removeItem(atPath: work.lnbits + "/lnbits/static/bundle.js")
        try FileManager.default.createSymbolicLink(atPath: work.lnbits + "/lnbits/static/bundle.js", withDestinationPath: "vendor/bundle_1.min.js")
        try writeFleet(work, lnbitsPort: 5001)
        let before = try Command.run(["sh", "-c", "cd '\(h.varSrc)' && find . -printf '%p %s %T@ %m\\n' | sort"]).output

        let r = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--exit-code"])
        XCTAssertEqual(r.status, 1, r.stderr)
        for line in ["  + new.txt", "  - tests/test_1.py", "  ~ README.md", "  m uv.lock", "  p flake.nix", "  t lnbits/static/bundle.js",
                     "-      lnbitsPort = 5000;", "+      lnbitsPort = 5001;", "--- a/configuration.nix", "+++ b/configuration.nix"] {
            XCTAssertTrue(r.stdout.contains(line + "\n"), "\(line): \(r.stdout)")
        }
        let names = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--name-only", "--source", "lnbits-src"])
        XCTAssertEqual(Set(names.stdout.split(separator: "\n").map(String.init)), try rsyncWouldTouch(work), "diff and rsync -n agree")
        let all = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--name-only"])
        XCTAssertTrue(all.stdout.contains("lnbits-src/new.txt\n") && all.stdout.contains("nixos-config/configuration.nix\n"), all.stdout)
        XCTAssertEqual(try Command.run(["sh", "-c", "cd '\(h.varSrc)' && find . -printf '%p %s %T@ %m\\n' | sort"]).output, before, "diff changed nothing")

        // The deploy does what the diff said; afterwards there is nothing left to show.
        XCTAssertEqual(try deploy(work).status, 0)
        XCTAssertEqual(try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--exit-code"]).status, 0)
    }

    /// A /var/src/lnbits-src that krops left: diff and deploy --dry-run refuse without --force,
    /// and with it show what the takeover would change — and change nothing.
    func testDiffForceShowsWhatATakeoverWouldChange() throws {
        let work = try makeWork()
        let h = try host
        try FileManager.default.createDirectory(atPath: h.varSrc + "/lnbits-src/old", withIntermediateDirectories: true)
        try "krops".write(toFile: h.varSrc + "/lnbits-src/old/left-by-krops.txt", atomically: false, encoding: .utf8)
        let snapshot = { try Command.run(["sh", "-c", "cd '\(h.varSrc)' && find . -printf '%p %s %T@ %m\\n' | sort"]).output }
        let before = try snapshot()
        let refused = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha"])
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("was never synced by ferry"), refused.stderr)
        let shown = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--force", "--exit-code"])
        XCTAssertEqual(shown.status, 1, shown.stdout + shown.stderr)
        XCTAssertTrue(shown.stdout.contains("  - old/left-by-krops.txt\n"), shown.stdout)
        XCTAssertTrue(shown.stdout.contains("  + flake.nix\n"), shown.stdout)
        let dry = try deploy(work, ["--dry-run", "--force"])
        XCTAssertEqual(dry.status, 0, dry.stdout + dry.stderr)
        XCTAssertTrue(dry.stdout.contains("  - old/left-by-krops.txt\n") && dry.stdout.contains("would run: "), dry.stdout)
        XCTAssertEqual(try snapshot(), before, "diff and --dry-run changed nothing")
    }

    /// A symlink whose mtime alone changed is `m`, as rsync's `.L..t`; with -z and --source the
    /// source's root is ".", as in the list.
    func testDiffNamesASymlinksMtimeAndTheRootAsRsyncDoes() throws {
        let work = try makeWork()
        try FileManager.default.createSymbolicLink(atPath: work.lnbits + "/readme-link", withDestinationPath: "README.md")
        XCTAssertEqual(try deploy(work).status, 0)
        Bytes.setMtime(Array((work.lnbits + "/readme-link").utf8), seconds: 1_300_000_000, nanoseconds: 0)
        try "x".write(toFile: work.lnbits + "/new.txt", atomically: false, encoding: .utf8)
        let r = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--source", "lnbits-src"])
        XCTAssertTrue(r.stdout.contains("  m readme-link\n"), r.stdout)
        XCTAssertEqual(Set(try rsyncKinds(work).filter { $0.key == "readme-link" }.values), ["m"])
        let z = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--source", "lnbits-src", "--name-only", "-z"])
        XCTAssertEqual(Set(z.stdout.split(separator: "\0").map(String.init)), [".", "new.txt", "readme-link"], z.stdout)
    }

    /// A full disk under the local deploy log: the deploy goes on (FileHandle.write trapped).
    func testAFullDiskUnderTheLocalLogDoesNotStopTheDeploy() throws {
        let work = try makeWork()
        let logs = work.root + "/deployments/.ferry/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try Command.check(["mount", "-t", "tmpfs", "-o", "size=64k", "ferry-full-test", logs])
        addTeardownBlock { _ = try? Command.run(["umount", "-l", logs]) }
        try FileManager.default.createDirectory(atPath: logs + "/alpha", withIntermediateDirectories: true)
        // Fill it, leaving a few bytes: the log's file is made, its lines do not fit.
        _ = try Command.run(["dd", "if=/dev/zero", "of=\(logs)/filler", "bs=1k", "count=1000"])
        let r = try deploy(work, ["--stats"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("deployed"), r.stdout)
    }

    /// A private key in the checkout: deploy refuses before connecting (exit 2, nothing on the
    /// host, no login); a one-host diff, which scans while it lists, names it too.
    func testAPrivateKeyInTheCheckoutStopsDeployAndDiff() throws {
        let work = try makeWork()
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", work.lnbits + "/lnbits/deploy_key"])
        let before = try logins()
        let deployed = try deploy(work)
        XCTAssertEqual(deployed.status, 2, deployed.stdout + deployed.stderr)
        XCTAssertTrue(deployed.stderr.contains("\(work.lnbits)/lnbits/deploy_key: a private key"), deployed.stderr)
        XCTAssertEqual(try logins(), before, "no connection")
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: try host.varSrc)) ?? [], [])
        for args in [["diff", "-f", work.fleetFile, "alpha"], ["deploy", "-f", work.fleetFile, "alpha", "--dry-run"]] {
            let r = try FerryBinary.run(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("lnbits/deploy_key: a private key"), r.stderr)
        }
    }
}
