import FerryDeploy
import FerryTarget
import FerryTestSupport
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Health checks against real hosts: commands run on the host, HTTP requests made from its side
/// through the SSH connection, a host that forbids forwarding refused before anything changes, and
/// a failed check after a switch reverting it only where the inventory asks.
extension DeployCommandTests {
    /// Appends tables to the work's fleet.toml (`[[defaults.checks]]`, `[secrets.X]`: TOML lets them follow the others).
    func appendToFleet(_ work: Work, _ tables: String) throws {
        let toml = try String(contentsOfFile: work.fleetFile, encoding: .utf8)
        try (toml + "\n" + tables + "\n").write(toFile: work.fleetFile, atomically: true, encoding: .utf8)
    }

    /// The `ferry check --json` lines of a run: events by check, results by host.
    func checkLines(_ output: String) -> (checks: [String: [String: Any]], results: [[String: Any]]) {
        var checks: [String: [String: Any]] = [:], results: [[String: Any]] = []
        for line in output.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            if object["type"] as? String == "event", object["phase"] as? String == "health", let check = object["check"] as? String { checks[check] = object }
            if object["type"] as? String == "result" { results.append(object) }
        }
        return (checks, results)
    }

    func testCommandChecksPassFailAndPassLate() throws {
        let h = try host
        let work = try makeWork()
        let stamp = "/root/check-started-\(UUID().uuidString)"
        try appendToFleet(work, """
        [[defaults.checks]]
        command = ["true"]

        [[defaults.checks]]
        command = ["false"]
        period = 1
        deadline = 2

        [[defaults.checks]]
        command = ["sh", "-c", "[ -e \(stamp) ] || date +%s > \(stamp); [ $(( $(date +%s) - $(cat \(stamp)) )) -ge 3 ]"]
        period = 1
        timeout = 2
        deadline = 20
        """)
        let start = Date()
        let run = try FerryBinary.run(["check", "-f", work.fleetFile, "--json"])
        XCTAssertEqual(run.status, 1, run.stdout + run.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 15, "the checks run at once")
        let (checks, results) = checkLines(run.stdout)
        XCTAssertEqual(checks["true"]?["state"] as? String, "passed")
        XCTAssertEqual(checks["true"]?["tries"] as? Int, 1)
        XCTAssertEqual(checks["false"]?["state"] as? String, "failed")
        XCTAssertEqual(checks["false"]?["detail"] as? String, "exit status 1 (2 tries in 1 s)", "\(checks)")
        let late = try XCTUnwrap(checks.first { $0.key.hasPrefix("sh -c") }?.value, run.stdout)
        XCTAssertEqual(late["state"] as? String, "passed")
        XCTAssertGreaterThanOrEqual(late["tries"] as? Int ?? 0, 3)
        XCTAssertGreaterThanOrEqual(late["seconds"] as? Double ?? 0, 2.5)
        XCTAssertEqual(results.first?["result"] as? String, "failed")
        XCTAssertEqual(results.first?["phase"] as? String, "health")
        // Nothing changed on the host: no deploy, no lock taken.
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.varSrc + "/.ferry/deploys"))
        try validateAgainstSchema(run.stdout, "ferry check --json")

        // Plain text: one line per check, the host's result, the table.
        let plain = try FerryBinary.run(["check", "-f", work.fleetFile])
        XCTAssertEqual(plain.status, 1)
        XCTAssertTrue(plain.stdout.contains("alpha | health: true: passed: exit status 0"), plain.stdout)
        XCTAssertTrue(plain.stdout.contains("alpha | health: false: FAILED: exit status 1"), plain.stdout)
        XCTAssertTrue(plain.stdout.contains("alpha | health: FAILED: a health check failed: false: exit status 1"), plain.stdout)
    }

    func testNoChecksIsAUsageError() throws {
        let work = try makeWork()
        let run = try FerryBinary.run(["check", "-f", work.fleetFile])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.stderr.contains("no health checks for alpha: add [[defaults.checks]]"), run.stderr)
    }

    /// An HTTP server inside the host's namespace, under a name only the host's /etc/hosts
    /// resolves: 200 passes, 500 fails, silence times out, 302 passes (any 2xx or 3xx) unless
    /// `status` says otherwise.
    func testHTTPChecksGoThroughTheHost() throws {
        let g = try harness.startHost(name: "http-checks", names: ["lnbits.internal": "127.0.0.1"])
        let port = try Loopback.freePort()
        let mode = NSTemporaryDirectory() + "ferry-http-mode-\(UUID().uuidString)"
        try "200".write(toFile: mode, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: mode) }
        let server = """
        import http.server, sys, time
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                m = open(sys.argv[2]).read().strip()
                if m == "hang":
                    time.sleep(30)
                    return
                self.send_response(int(m))
                if m == "302": self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            def log_message(self, *a): pass
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
        """
        let session = try SSHSession(connecting: try harness.configuration(for: g))
        defer { session.close() }
        // Debian's (apt, as scripts/install puts it there): the host's /root is private, so a
        // python3 found under /root (pyenv) would not be there.
        let python = "/usr/bin/python3"
        let started = try session.run(RemoteCommand(["sh", "-c", "setsid \"$0\" -c \"$1\" \"$2\" \"$3\" </dev/null >\"$3.log\" 2>&1 &", python, server, String(port), mode]))
        XCTAssertEqual(started.status, .exited(0))
        waitFor("the host's HTTP server", seconds: 10) { Loopback.connect(port: port).map { close($0); return true } ?? false }
        XCTAssertEqual((try? String(contentsOfFile: mode + ".log", encoding: .utf8)) ?? "", "")
        // The name means nothing on the operator's side.
        var info: UnsafeMutablePointer<addrinfo>?
        XCTAssertNotEqual(getaddrinfo("lnbits.internal", nil, nil, &info), 0, "only the host resolves lnbits.internal")

        let work = try makeWork(port: g.port)
        try appendToFleet(work, """
        [[defaults.checks]]
        http = "http://lnbits.internal:\(port)/api/v1/health"
        timeout = 1
        deadline = 0

        [[defaults.checks]]
        http = "http://lnbits.internal:\(port)/"
        status = [200]
        timeout = 1
        deadline = 0
        """)
        let url = "http://lnbits.internal:\(port)/api/v1/health"
        func check(_ answer: String) throws -> (status: Int32, checks: [String: [String: Any]]) {
            try answer.write(toFile: mode, atomically: true, encoding: .utf8)
            let run = try FerryBinary.run(["check", "-f", work.fleetFile, "--json"])
            try validateAgainstSchema(run.stdout, "ferry check --json")
            return (run.status, checkLines(run.stdout).checks)
        }
        let ok = try check("200")
        XCTAssertEqual(ok.status, 0)
        XCTAssertEqual(ok.checks[url]?["detail"] as? String, "HTTP 200 OK")
        let failing = try check("500")
        XCTAssertEqual(failing.status, 1)
        XCTAssertEqual(failing.checks[url]?["state"] as? String, "failed")
        XCTAssertEqual(failing.checks[url]?["detail"] as? String, "HTTP 500 Internal Server Error")
        let start = Date()
        let silent = try check("hang")
        XCTAssertEqual(silent.status, 1)
        XCTAssertEqual(silent.checks[url]?["detail"] as? String, "no answer within 1 s")
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        let moved = try check("302")
        XCTAssertEqual(moved.checks[url]?["state"] as? String, "passed", "any 3xx passes by default")
        XCTAssertEqual(moved.checks["http://lnbits.internal:\(port)/"]?["detail"] as? String, "HTTP 302 Found")
        XCTAssertEqual(moved.checks["http://lnbits.internal:\(port)/"]?["state"] as? String, "failed", "status = [200] does not take a 302")
        XCTAssertEqual(moved.status, 1)
    }

    /// sshd forbids forwarding: an http check could never run, and the deploy says so before it
    /// changes anything.
    func testAHostThatForbidsForwardingFailsBeforeActivation() throws {
        let g = try harness.startHost(name: "no-forwarding", sshdOptions: ["AllowTcpForwarding no"])
        let work = try makeWork(port: g.port)
        try appendToFleet(work, """
        [[defaults.checks]]
        http = "http://127.0.0.1:5000/api/v1/health"
        """)
        let run = try deploy(work)
        XCTAssertEqual(run.status, 1, run.stdout + run.stderr)
        XCTAssertTrue(run.stderr.contains("the health check http://127.0.0.1:5000/api/v1/health goes through the SSH connection, but sshd forbids TCP forwarding"), run.stderr)
        XCTAssertTrue(run.stderr.contains("AllowTcpForwarding = true"), run.stderr)
        XCTAssertEqual(g.activations(), [], "nothing was activated")
        XCTAssertFalse(FileManager.default.fileExists(atPath: g.varSrc + "/lnbits-src"), "nothing was synced")
        // `ferry check` names the same fix as the check's failure.
        let check = try FerryBinary.run(["check", "-f", work.fleetFile])
        XCTAssertEqual(check.status, 1)
        XCTAssertTrue(check.stdout.contains("sshd forbids TCP forwarding"), check.stdout)
    }

    /// revert_on_check_failure: checks gate the proof; a passing one confirms (B), a failing one
    /// has the host revert to B at once.
    func testAFailedCheckRevertsWhereTheInventoryAsks() throws {
        let (g, work, _, _) = try deployedOnce("checks-revert", extra: "revert_on_check_failure = true")
        try appendToFleet(work, """
        [[defaults.checks]]
        command = ["sh", "-c", "test -e /root/healthy"]
        period = 1
        timeout = 2
        deadline = 2
        """)
        XCTAssertEqual(try Command.run(["touch", g.directory + "/root/healthy"]).status, 0)
        let b = try deploy(work)
        XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
        XCTAssertTrue(b.stdout.contains("health: sh -c 'test -e /root/healthy': passed"), b.stdout)
        XCTAssertTrue(b.stdout.contains("confirm: confirmed by a fresh login"), b.stdout)
        let recordB = try record(varSrc: g.varSrc)
        XCTAssertEqual(recordB.checks?.map(\.passed), [true])
        let copyB = work.root + "/lnbits-b"
        try Command.check(["cp", "-a", work.lnbits, copyB])

        try "third\n".write(toFile: work.lnbits + "/lnbits/third.py", atomically: false, encoding: .utf8)
        try FileManager.default.removeItem(atPath: g.directory + "/root/healthy")
        let start = Date()
        let c = try deploy(work)
        XCTAssertEqual(c.status, 1, c.stdout + c.stderr)
        XCTAssertTrue(c.stdout.contains("health: sh -c 'test -e /root/healthy': FAILED: exit status 1"), c.stdout)
        XCTAssertTrue(c.stderr.contains("alpha: reverted: a health check failed after the activation"), c.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 3 + 2 + 10, "reverted when the check failed, not at the deadline")
        let r = try record(varSrc: g.varSrc)
        XCTAssertEqual(r.outcome?.result, .reverted)
        XCTAssertEqual(r.outcome?.reason, .checksFailed)
        XCTAssertEqual(r.checks?.map(\.passed), [false])
        try assertBackAtA(g, copyB, recordB, "after a failed check: " + c.stdout)
        let activations = g.activations()
        XCTAssertEqual(activations.suffix(3).map { $0.split(separator: " ").first! }, ["switch", "test", "boot"], "\(activations)")
    }

    /// revert_on_check_failure off (the default): a failed check fails the deploy and the switch stays.
    func testAFailedCheckKeepsTheSwitchByDefault() throws {
        let (g, work, _, a) = try deployedOnce("checks-keep")
        try appendToFleet(work, """
        [[defaults.checks]]
        command = ["true"]

        [[defaults.checks]]
        command = ["false"]
        deadline = 0
        """)
        let run = try deploy(work)
        XCTAssertEqual(run.status, 1, run.stdout + run.stderr)
        XCTAssertTrue(run.stderr.contains("alpha: a health check failed: false: exit status 1"), run.stderr)
        let r = try record(varSrc: g.varSrc)
        XCTAssertEqual(r.outcome?.result, .success)
        XCTAssertEqual(r.checks?.map(\.check), ["true", "false"])
        XCTAssertEqual(r.checks?.map(\.passed), [true, false])
        XCTAssertNotEqual(g.runningSystem, a.outcome?.currentSystem, "the new system stays")
        XCTAssertEqual(g.runningSystem, r.outcome?.currentSystem)
        XCTAssertEqual(g.activations().last?.split(separator: " ").first, "switch", "no revert")
        // The same without confirm-or-revert: the checks run after the job.
        try "again\n".write(toFile: work.lnbits + "/lnbits/again.py", atomically: false, encoding: .utf8)
        let unconfirmed = try deploy(work, ["--no-confirm"])
        XCTAssertEqual(unconfirmed.status, 1, unconfirmed.stdout + unconfirmed.stderr)
        XCTAssertTrue(unconfirmed.stdout.contains("health: false: FAILED: exit status 1"), unconfirmed.stdout)
        XCTAssertEqual(try record(varSrc: g.varSrc).checks?.map(\.passed), [true, false])
        let status = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha"])
        XCTAssertTrue(status.stdout.contains("alpha | a health check failed: false: exit status 1"), status.stdout)
    }
}
