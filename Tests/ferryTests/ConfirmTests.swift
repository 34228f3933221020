import FerryDeploy
import FerryTarget
import FerryTestSupport
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Confirm-or-revert against hosts with real generations: after a switch the host's job waits for
/// proof over a fresh login and, without it, brings back the system, the profile and the sources
/// it had — by itself, whatever happens to ferry.
extension DeployCommandTests {
    /// The work's fleet with these lines added to `[defaults]`.
    func setDefaults(_ work: Work, _ lines: String) throws {
        let toml = try String(contentsOfFile: work.fleetFile, encoding: .utf8)
        try toml.replacingOccurrences(of: "[defaults]\n", with: "[defaults]\n" + lines + "\n").write(toFile: work.fleetFile, atomically: true, encoding: .utf8)
    }

    /// A generations host deployed once (A), its work changed for a second deploy.
    func deployedOnce(_ name: String, confirmTimeout: Int = 3, extra: String = "") throws -> (host: TestHost, work: Work, copyA: String, a: DeployRecord) {
        let g = try harness.startHost(name: name, generations: true)
        let work = try makeWork(port: g.port)
        try UUID().uuidString.write(toFile: work.lnbits + "/lnbits/unique.txt", atomically: false, encoding: .utf8)
        try setDefaults(work, "confirm_timeout = \(confirmTimeout)\n" + extra)
        let first = try deploy(work)
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        XCTAssertTrue(first.stdout.contains("confirm: confirmed by a fresh login"), first.stdout)
        let copyA = work.root + "/lnbits-a"
        try Command.check(["cp", "-a", work.lnbits, copyA])
        try "changed\n".write(toFile: work.lnbits + "/pyproject.toml", atomically: false, encoding: .utf8)
        try "new\n".write(toFile: work.lnbits + "/lnbits/added.py", atomically: false, encoding: .utf8)
        return (g, work, copyA, try record(varSrc: g.varSrc))
    }

    /// The host is back at A: its system running and in the profile, A's sources, logins working.
    func assertBackAtA(_ g: TestHost, _ copyA: String, _ a: DeployRecord, _ what: String) throws {
        XCTAssertEqual(g.runningSystem, a.outcome?.currentSystem, "\(what): A's system runs again")
        XCTAssertEqual(g.profileSystem, a.outcome?.currentSystem, "\(what): the profile points at A's system")
        try assertSame(copyA, host: g, "lnbits-src", "\(what): the sources are A's")
        let login = try FerryBinary.run(["exec", "root@127.0.0.1:\(g.port)", "-i", try harness.clientKey(.ed25519),
                                         "--known-hosts", try harness.knownHostsFile, "--", "true"])
        XCTAssertEqual(login.status, 0, "\(what): logins work again: \(login.stderr)")
    }

    func testASwitchThatBreaksLoginsRevertsByItself() throws {
        let (g, work, copyA, a) = try deployedOnce("confirm-login")
        g.standIn("break-login", true)
        defer { g.standIn("break-login", false) }
        let start = Date()
        let broken = try deploy(work)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(broken.status, 1, broken.stdout + broken.stderr)
        XCTAssertTrue(broken.stdout.contains("confirm: no fresh login: "), broken.stdout)
        XCTAssertTrue(broken.stderr.contains("alpha: reverted: no fresh login confirmed the switch in time"), broken.stderr)
        XCTAssertLessThan(seconds, 3 + 5 + 5, "reverted within confirm_timeout + 5 s of the activation")
        let r = try record(varSrc: g.varSrc)
        XCTAssertEqual(r.outcome?.result, .reverted)
        XCTAssertEqual(r.outcome?.reason, .noConfirmation)
        try assertBackAtA(g, copyA, a, "after a login-breaking switch")
        let activations = g.activations()
        XCTAssertEqual(activations.suffix(3).map { $0.split(separator: " ").first! }, ["switch", "test", "boot"], "\(activations)")
        // The status names it.
        let status = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha", "--history"])
        XCTAssertTrue(status.stdout.contains(" reverted"), status.stdout)
    }

    /// ferry killed after the activation, before it confirmed: the host reverts by itself, and a
    /// proof that comes after the deadline (while the revert runs) leaves it reverted.
    func testKillNineBeforeConfirmingRevertsAndALateProofChangesNothing() throws {
        let (g, work, copyA, a) = try deployedOnce("confirm-kill", confirmTimeout: 4)
        // The fresh login goes to a port that never answers: ferry waits on it.
        let proxy = try LinkProxy(to: g.port)
        proxy.blackhole()
        defer { proxy.stop() }
        try setDefaults(work, "confirm_port = \(proxy.port)")
        let (process, out) = try startDeploy(work)
        let deploys = g.varSrc + "/.ferry/deploys"
        var id = ""
        waitFor("the job's deadline") {
            id = ((try? FileManager.default.contentsOfDirectory(atPath: deploys)) ?? []).sorted().last ?? ""
            return !id.isEmpty && id != a.id && FileManager.default.fileExists(atPath: deploys + "/" + id + "/deadline")
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // The revert's own activation waits, so the proof below comes while the job is reverting.
        g.holdActivation(true)
        waitFor("the job to settle", seconds: 10) { FileManager.default.fileExists(atPath: deploys + "/" + id + "/settled") }
        let proof = try Command.run(["sh", "-c", String(decoding: TargetState.Job.confirm(TargetState(root: g.varSrc), id: id, wait: 1).arguments[2], as: UTF8.self),
                                     "proof", deploys + "/" + id, "1"])
        XCTAssertEqual(proof.output.trimmingCharacters(in: .whitespacesAndNewlines), "reverted", proof.errorOutput)
        g.holdActivation(false)
        waitFor("the revert to end", seconds: 30) { FileManager.default.fileExists(atPath: deploys + "/" + id + "/status") }
        let r = try record(varSrc: g.varSrc)
        XCTAssertEqual(r.id, id)
        XCTAssertEqual(r.outcome?.result, .reverted, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
        XCTAssertEqual(r.outcome?.reason, .noConfirmation)
        try assertBackAtA(g, copyA, a, "after kill -9")
    }

    /// An activation that hangs is killed at `activation_timeout` and reverted; the deploy lock is
    /// held all along ("waiting for confirmation" while the job waits).
    func testAHungActivationIsKilledAndReverted() throws {
        let (g, work, copyA, a) = try deployedOnce("confirm-hung", extra: "activation_timeout = 2")
        g.holdActivation(true)
        defer { g.holdActivation(false) }
        let (process, out) = try startDeploy(work)
        let deploys = g.varSrc + "/.ferry/deploys"
        waitFor("the watchdog", seconds: 20) {
            ((try? FileManager.default.contentsOfDirectory(atPath: deploys)) ?? []).contains {
                FileManager.default.fileExists(atPath: deploys + "/" + $0 + "/activation-timed-out")
            }
        }
        // The revert's activation is held too: the lock is still the deploy's.
        let second = try deploy(work, ["--no-confirm"])
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.stderr.contains("the deploy lock is held by deploy "), second.stderr)
        g.holdActivation(false)
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 1, text)
        XCTAssertTrue(text.contains("reverted: the activation did not end in time and was killed"), text)
        XCTAssertEqual(try record(varSrc: g.varSrc).outcome?.reason, .activationTimeout)
        try assertBackAtA(g, copyA, a, "after a hung activation")
    }

    /// Another activation holding switch-to-configuration's lock: retried, then the switch goes
    /// on (here the lock is freed after a few seconds). While the job waits for proof, a second
    /// deploy is told so.
    func testABusySwitchLockIsRetriedAndTheWaitIsShown() throws {
        let (g, work, _, _) = try deployedOnce("confirm-busy", confirmTimeout: 15)
        g.standIn("switch-lock-busy", true)
        let proxy = try LinkProxy(to: g.port, shape: .init(delay: 0.4))
        defer { proxy.stop() }
        try setDefaults(work, "confirm_port = \(proxy.port)")
        let (process, out) = try startDeploy(work)
        waitFor("a refused activation", seconds: 20) { g.activations().contains { $0.hasSuffix(" busy") } }
        usleep(2_500_000)
        g.standIn("switch-lock-busy", false)
        let deploys = g.varSrc + "/.ferry/deploys"
        waitFor("the wait for proof", seconds: 20) {
            ((try? FileManager.default.contentsOfDirectory(atPath: deploys)) ?? []).contains {
                FileManager.default.fileExists(atPath: deploys + "/" + $0 + "/deadline")
                    && !FileManager.default.fileExists(atPath: deploys + "/" + $0 + "/settled")
            }
        }
        let second = try deploy(work, ["--no-confirm"])
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.stderr.contains(", waiting for confirmation"), second.stderr)
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 0, text + jobLogs(g))
        XCTAssertTrue(text.contains("another activation holds the switch lock; trying again"), text)
        XCTAssertTrue(text.contains("confirm: confirmed by a fresh login"), text)
        XCTAssertEqual(try record(varSrc: g.varSrc).outcome?.result, .success)
    }

    /// confirm = false (or --no-confirm): nixos-rebuild switch itself, no wait.
    func testConfirmCanBeTurnedOff() throws {
        let g = try harness.startHost(name: "confirm-off", generations: true)
        let work = try makeWork(port: g.port)
        try setDefaults(work, "confirm = false")
        let r = try deploy(work)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertFalse(r.stdout.contains("confirm:"), r.stdout)
        XCTAssertTrue(g.standInCalls().last?.hasPrefix("nixos-rebuild switch ") ?? false, "\(g.standInCalls())")
        try setDefaults(work, "confirm_timeout = 0")
        let bad = try deploy(work)
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("defaults.confirm_timeout: 0: seconds from 1 to 3600"), bad.stderr)
    }
}
