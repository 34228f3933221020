import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `ferry deploy` over a fleet of real sshd test hosts: selection, `--jobs`, the failure policy,
/// the summary, JSON Lines against the schema, whole lines under load, the terminal mode, Ctrl-C.
final class FleetDeployTests: XCTestCase {
    nonisolated(unsafe) static var harness: TestHostHarness?
    nonisolated(unsafe) static var hosts: [TestHost] = []

    /// Inventory order: web-1 fine, web-2 unreachable (a closed port), web-3's rebuild fails, then three fine.
    static let names = ["web-1", "web-2", "web-3", "db-1", "db-2", "db-3"]
    static let sudoPassword = "fleet sudo pw"

    var work: String!
    var fleetFile: String { work + "/deployments/fleet.toml" }

    override class func tearDown() {
        harness?.shutdown()
        harness = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        if Self.harness == nil {
            let harness = try HostTestCase.makeHarness()
            Self.harness = harness
            // db-3's sudo password differs from the others', for the one-password-per-fleet test.
            Self.hosts = try ["web-1", "web-3", "db-1", "db-2", "db-3"].map {
                try harness.startHost(name: $0, users: $0.hasPrefix("db") ? [TestUser(name: "ops", uid: 4260, sudo: true, password: $0 == "db-3" ? "other" : Self.sudoPassword)] : [])
            }
        }
        for host in Self.hosts {
            host.reset()
            try host.setStandInFailure(host.name == "web-3" ? "error: attribute 'lnbits' missing (requested by the test)" : nil)
        }
        work = NSTemporaryDirectory() + "ferry-fleet-test-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: DeployCommandTests.repository + "/deployments", toPath: work + "/deployments")
        var fixture = TreeFixture(seed: 11)
        try fixture.makeLNBitsTree(at: work + "/lnbits")
        let closed = try Loopback.freePort()
        var toml = """
        shared = "shared.nix"
        [defaults]
        identity = "\(Self.harness!.clientKey(.ed25519))"
        known_hosts = "\(Self.harness!.knownHostsFile)"
        [sources.lnbits-src]
        path = "../lnbits"
        exclude = [".git", ".env", "__pycache__/"]
        [sources.nixos-config]
        rendered = true

        """
        for name in Self.names {
            let port = Self.hosts.first { $0.name == name }?.port ?? closed
            let tags = name.hasPrefix("web") ? "[\"web\", \"prod\"]" : "[\"db\"]"
            toml += "[hosts.\(name)]\naddress = \"127.0.0.1\"\nport = \(port)\ntags = \(tags)\n[hosts.\(name).vars]\nlnbitsPort = 5000\n"
        }
        try toml.write(toFile: fleetFile, atomically: true, encoding: .utf8)
    }

    override func tearDown() {
        if let work { try? FileManager.default.removeItem(atPath: work) }
    }

    func host(_ name: String) -> TestHost { Self.hosts.first { $0.name == name }! }

    /// One exit-code table for every command (README): the only selected host unreachable is 255;
    /// several with one failed is 1, the failed one named; one inventory host's exec exits with
    /// the command's status, unprefixed; usage and inventory errors are 2 before any connection.
    func testOneExitCodeTableForEveryCommand() throws {
        let f = ["-f", fleetFile]
        for argv in [["deploy", "web-2"], ["diff", "web-2"], ["status", "web-2"], ["exec", "web-2", "--", "true"], ["unlock", "web-2"]] {
            let r = try FerryBinary.run([argv[0]] + f + argv.dropFirst())
            XCTAssertEqual(r.status, 255, "\(argv): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("web-2"), "\(argv): \(r.stderr)")
        }
        for argv in [["deploy", "web-1", "web-2", "--keep-going", "--sync-only"], ["diff", "web-1", "web-2"], ["diff", "--exit-code", "web-1", "web-2"],
                     ["status", "web-1", "web-2"], ["exec", "web-1", "web-2", "--", "true"]] {
            let r = try FerryBinary.run([argv[0]] + f + argv.dropFirst())
            XCTAssertEqual(r.status, 1, "\(argv): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("ferry: web-2: "), "\(argv): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("ferry: web-1: "), "\(argv): \(r.stderr)")
        }
        let one = try FerryBinary.run(["exec"] + f + ["web-1", "--", "sh", "-c", "echo out; echo err >&2; exit 3"])
        XCTAssertEqual(one.status, 3, one.stderr)
        XCTAssertEqual(one.stdout, "out\n")
        XCTAssertEqual(one.stderr, "err\n")
        let glob = try FerryBinary.run(["exec"] + f + ["web-[1]", "--", "sh", "-c", "exit 4"])
        XCTAssertEqual(glob.status, 4, "a selection of one host is one host: \(glob.stderr)")
        for argv in [["exec", "web-1", "--skip", "@web", "--", "true"], ["diff", "--exit-code", "web-1", "--skip", "web-1"], ["status", "--skip", "*"],
                     ["hosts", "web-1", "--skip", "web-1"], ["deploy", "@db", "--skip", "db-*"], ["render", "web-1", "--skip", "web-1"]] {
            let r = try FerryBinary.run([argv[0]] + f + argv.dropFirst())
            XCTAssertEqual(r.status, 2, "\(argv): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("ferry: the selection leaves no host\n"), "\(argv): \(r.stderr)")
        }
        for argv in [["deploy", "--jobs", "-1"], ["diff", "--jobs", "-1"], ["exec", "--jobs", "-1", "--", "true"], ["deploy", "--jobs", "0"]] {
            let r = try FerryBinary.run([argv[0]] + f + argv.dropFirst())
            XCTAssertEqual(r.status, 2, "\(argv): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--jobs must be at least 1"), "\(argv): \(r.stderr)")
        }
        let unknown = try FerryBinary.run(["exec"] + f + ["nope", "--", "true"])
        XCTAssertEqual(unknown.status, 2)
        XCTAssertTrue(unknown.stderr.contains("no host matches 'nope'"), unknown.stderr)
        XCTAssertTrue(unknown.stderr.contains("write ssh://nope"), unknown.stderr)

        // An identity ferry was told to use that does not exist: 2, before any connection.
        let logins = try String(contentsOfFile: host("web-1").directory + "/sshd.log", encoding: .utf8).components(separatedBy: "Accepted publickey").count
        let flag = try FerryBinary.run(["exec"] + f + ["web-1", "-i", "/nonexistent/key", "--", "true"])
        XCTAssertEqual(flag.status, 2, flag.stderr)
        XCTAssertEqual(flag.stderr, "ferry: web-1: the identity file /nonexistent/key (from -i) does not exist\n")
        let toml = try String(contentsOfFile: fleetFile, encoding: .utf8)
        try toml.replacingOccurrences(of: "identity = \"\(Self.harness!.clientKey(.ed25519))\"", with: "identity = \"/nonexistent/key\"")
            .write(toFile: fleetFile, atomically: true, encoding: .utf8)
        for command in ["deploy", "diff", "status", "unlock"] {
            let r = try FerryBinary.run([command] + f + ["web-1"])
            XCTAssertEqual(r.status, 2, "\(command): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("web-1: the identity file /nonexistent/key (from fleet.toml [defaults]) does not exist"), "\(command): \(r.stderr)")
        }
        let after = try String(contentsOfFile: host("web-1").directory + "/sshd.log", encoding: .utf8).components(separatedBy: "Accepted publickey").count
        XCTAssertEqual(after, logins, "no login")
    }

    /// One sudo password for the fleet: hosts that accept it deploy; one whose sudo rejects it
    /// fails before anything is sent there, and is not asked again.
    func testOneSudoPasswordForTheFleet() throws {
        let toml = try String(contentsOfFile: fleetFile, encoding: .utf8)
        try toml.replacingOccurrences(of: "tags = [\"db\"]\n", with: "tags = [\"db\"]\nuser = \"ops\"\n").write(toFile: fleetFile, atomically: true, encoding: .utf8)
        let r = try FerryBinary.run(["deploy", "-f", fleetFile, "@db", "--keep-going", "--sudo-password-fd", "0"], input: Self.sudoPassword + "\n")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        try assertMirrored("db-1")
        try assertMirrored("db-2")
        XCTAssertTrue(r.stderr.contains("ferry: db-3: sudo on ops@127.0.0.1:\(host("db-3").port) rejected the password"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: host("db-3").varSrc), [], "nothing sent to db-3")
    }

    func ferry(_ arguments: [String]) throws -> FerryBinary.Result {
        try FerryBinary.run(["deploy", "-f", fleetFile, "--connect-timeout", "3"] + arguments)
    }

    func assertMirrored(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "--itemize-changes",
                                 "--exclude=.git", "--exclude=.env", "--exclude=__pycache__/", work + "/lnbits/", host(name).varSrc + "/lnbits-src/"])
        XCTAssertEqual(r.status, 0, r.errorOutput, file: file, line: line)
        XCTAssertEqual(r.output, "", "rsync oracle on \(name)", file: file, line: line)
    }

    /// The summary table's row for a host.
    func row(_ output: String, _ name: String) -> String {
        output.split(separator: "\n").map(String.init).last { $0.hasPrefix(name + " ") } ?? ""
    }

    func testFailurePolicyStopsStartingHostsUnlessKeepGoing() throws {
        let stop = try ferry(["--jobs", "2"])
        XCTAssertEqual(stop.status, 1, stop.stdout + stop.stderr)
        XCTAssertTrue(row(stop.stdout, "web-1").contains("deployed"), stop.stdout)
        XCTAssertTrue(row(stop.stdout, "web-2").contains("FAILED"), stop.stdout)
        XCTAssertTrue(row(stop.stdout, "web-2").contains("connect: cannot connect to 127.0.0.1 port"), stop.stdout)
        for name in ["web-3", "db-1", "db-2", "db-3"] {
            XCTAssertTrue(row(stop.stdout, name).contains("not started"), "\(name): \(stop.stdout)")
            XCTAssertEqual(host(name).standInCalls(), [], name)
        }
        XCTAssertTrue(stop.stderr.contains("ferry: web-2: cannot connect to 127.0.0.1 port"), stop.stderr)

        let all = try ferry(["--jobs", "2", "--keep-going"])
        XCTAssertEqual(all.status, 1, all.stdout + all.stderr)
        XCTAssertTrue(row(all.stdout, "web-2").contains("FAILED"), all.stdout)
        let web3 = row(all.stdout, "web-3")
        XCTAssertTrue(web3.contains("FAILED") && web3.contains("rebuild: nixos-rebuild switch failed: exit status 1") && web3.contains("(log: "), all.stdout)
        XCTAssertTrue(all.stderr.contains("ferry: web-3 | error: attribute 'lnbits' missing (requested by the test)"), all.stderr)
        for name in ["web-1", "db-1", "db-2", "db-3"] {
            XCTAssertTrue(row(all.stdout, name).contains("deployed"), "\(name): \(all.stdout)")
            try assertMirrored(name)
        }
        // Every line is one host's, and says which.
        for line in all.stdout.split(separator: "\n") where line.contains(" | ") {
            XCTAssertTrue(Self.names.contains { line.hasPrefix($0 + " | ") }, String(line))
        }
    }

    /// A host whose switch reverted is a failed host: no new host starts after it.
    func testARevertedHostIsAFailure() throws {
        let toml = try String(contentsOfFile: fleetFile, encoding: .utf8)
        try toml.replacingOccurrences(of: "[defaults]\n", with: "[defaults]\nconfirm_timeout = 2\n").write(toFile: fleetFile, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ferry(["web-1"]).status, 0)
        try "changed\n".write(toFile: work + "/lnbits/pyproject.toml", atomically: false, encoding: .utf8)
        host("web-1").standIn("break-login", true)
        defer { host("web-1").standIn("break-login", false) }
        let r = try ferry(["web-1", "db-1", "--jobs", "1"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(row(r.stdout, "web-1").contains("FAILED") && row(r.stdout, "web-1").contains("reverted: no fresh login confirmed the switch in time"), r.stdout)
        XCTAssertTrue(row(r.stdout, "db-1").contains("not started"), r.stdout)
        XCTAssertEqual(host("db-1").standInCalls(), [])
    }

    func testSelectionSkipAndHosts() throws {
        let hosts = try FerryBinary.run(["hosts", "-f", fleetFile, "@web", "db-[12]", "--skip", "web-2"])
        XCTAssertEqual(hosts.status, 0, hosts.stderr)
        XCTAssertEqual(hosts.stdout.split(separator: "\n").dropFirst().map { String($0.split(separator: " ")[0]) }, ["web-1", "web-3", "db-1", "db-2"])
        let unknown = try ferry(["nope*"])
        XCTAssertEqual(unknown.status, 2)
        XCTAssertTrue(unknown.stderr.contains("no host matches 'nope*' (hosts: web-1, web-2, web-3, db-1, db-2, db-3; tags: @db, @prod, @web)"), unknown.stderr)
        // Only the selection is deployed: db-* less db-3.
        let r = try ferry(["db-*", "--skip", "db-3", "--sync-only"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        try assertMirrored("db-1")
        try assertMirrored("db-2")
        XCTAssertFalse(FileManager.default.fileExists(atPath: host("db-3").varSrc + "/lnbits-src"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: host("web-1").varSrc + "/lnbits-src"))
    }

    func testLocalCheckOfAnySelectedHostStopsTheFleetBeforeAnyConnection() throws {
        // A source folder that is missing fails every host's check; nothing is contacted.
        try (try String(contentsOfFile: fleetFile, encoding: .utf8) + "[sources.extra]\npath = \"../missing\"\n")
            .write(toFile: fleetFile, atomically: true, encoding: .utf8)
        let r = try ferry(["--keep-going"])
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("sources.extra.path"), r.stderr)
        for h in Self.hosts { XCTAssertFalse(FileManager.default.fileExists(atPath: h.varSrc + "/.ferry"), "\(h.name) was contacted") }
    }

    /// Every line validates against docs/events.schema.json; a mutated event does not.
    func testJSONLinesValidateAgainstTheSchema() throws {
        let r = try ferry(["--keep-going", "--json", "--jobs", "3"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertGreaterThan(lines.count, 20)
        let validate = """
        import json, sys, jsonschema
        schema = json.load(open(sys.argv[1]))
        validator = jsonschema.Draft7Validator(schema)
        bad = 0
        for n, line in enumerate(sys.stdin, 1):
            errors = list(validator.iter_errors(json.loads(line)))
            if errors:
                bad += 1
                print(f"line {n}: {errors[0].message}")
        sys.exit(1 if bad else 0)
        """
        let schema = DeployCommandTests.repository + "/docs/events.schema.json"
        let good = try FerryBinary.run(executable: try Command.which("python3"), ["-c", validate, schema], input: r.stdout)
        XCTAssertEqual(good.status, 0, good.stdout + good.stderr)
        let types = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }.compactMap { $0["type"] as? String }
        XCTAssertEqual(types.count, lines.count, "every line is JSON")
        XCTAssertEqual(types.last, "summary")
        XCTAssertEqual(types.filter { $0 == "result" }.count, 6)
        let summary = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as? [String: Any]
        XCTAssertEqual(summary?["failed_hosts"] as? [String], ["web-2", "web-3"])
        XCTAssertEqual(summary?["exit_status"] as? Int, 1)

        // Negative controls: an unknown field, a state the schema does not know, a missing field.
        let event = try XCTUnwrap(lines.first { $0.contains("\"type\":\"event\"") })
        for mutated in [event.replacingOccurrences(of: "{", with: "{\"extra\":1,"),
                        event.replacingOccurrences(of: "\"state\":\"", with: "\"state\":\"bogus-"),
                        lines.last!.replacingOccurrences(of: "\"exit_status\":1,", with: "")] {
            let bad = try FerryBinary.run(executable: try Command.which("python3"), ["-c", validate, schema], input: mutated + "\n")
            XCTAssertEqual(bad.status, 1, "rejected: \(mutated)\n\(bad.stdout)")
        }
        let hosts = try FerryBinary.run(["hosts", "-f", fleetFile, "--json"])
        XCTAssertEqual(try FerryBinary.run(executable: try Command.which("python3"), ["-c", validate, schema], input: hosts.stdout).status, 0)
    }

    /// Eight hosts' rebuilds printing 200,000-byte lines at once: no line mixes two hosts.
    func testLongLinesFromManyHostsNeverInterleave() throws {
        for h in Self.hosts { try h.setStandInSpew(200_000); try h.setStandInFailure(nil) }
        let r = try ferry(["--jobs", "8", "--skip", "web-2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var long = 0
        for line in r.stdout.split(separator: "\n", omittingEmptySubsequences: false) where line.contains(" | ") {
            guard let name = Self.names.first(where: { line.hasPrefix($0 + " | ") }) else { XCTFail("no host prefix: \(line.prefix(80))"); continue }
            let body = line.dropFirst(name.count + 3)
            if body.hasPrefix("xxxx") {
                long += 1
                XCTAssertEqual(body.count, 200_000, "\(name): a line of 200,000 x, whole")
                XCTAssertTrue(body.allSatisfy { $0 == "x" }, "\(name): nothing else inside")
            }
        }
        XCTAssertEqual(long, 5)
    }

    /// The terminal mode, through a pseudo-terminal: live status lines redrawn in place, then the summary.
    func testTerminalModeDrawsLiveLinesAndEndsWithTheSummary() throws {
        let script = try Command.which("script")
        let command = ([FerryBinary.path(), "deploy", "-f", fleetFile, "--skip", "web-2", "--skip", "web-3", "--jobs", "4"])
            .map { "'" + $0 + "'" }.joined(separator: " ")
        let r = try FerryBinary.run(executable: script, ["-qfec", command, "/dev/null"], environment: ["TERM": "xterm", "NO_COLOR": ""])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("\u{1B}[J"), "the live block is erased and redrawn")
        XCTAssertTrue(r.stdout.contains(": sync lnbits-src · "), "a status line per running host")
        let tail = r.stdout.components(separatedBy: "HOST ").last ?? ""
        for name in ["web-1", "db-1", "db-2", "db-3"] { XCTAssertTrue(tail.contains(name), "summary names \(name): \(tail)") }
        XCTAssertFalse(tail.contains("\u{1B}["), "the summary comes after the live block is gone")
    }

    /// One rule for interrupts (README): diff, status and unlock exit at once; exec, status
    /// --follow and deploy (SIGTERM; its first SIGINT is gentle) stop their work — here a session
    /// still being opened to a host that accepts TCP and never speaks SSH — and none waits out the
    /// connect timeout: 130 for SIGINT, 143 for SIGTERM.
    func testEveryCommandEndsAtOnceOnAnInterruptEvenWhileConnecting() throws {
        let (mute, port) = try Loopback.bind(backlog: 16)  // never accepted: no banner ever comes
        defer { close(mute) }
        let toml = try String(contentsOfFile: fleetFile, encoding: .utf8)
            .replacingOccurrences(of: "port = \(host("web-1").port)\n", with: "port = \(port)\n")
        try toml.write(toFile: fleetFile, atomically: true, encoding: .utf8)
        let slow = ["-f", fleetFile, "web-1", "--connect-timeout", "60"]
        for (argv, signal, code) in [(["diff"], SIGINT, Int32(130)), (["status"], SIGTERM, 143), (["unlock"], SIGINT, 130),
                                     (["status", "--follow"], SIGINT, 130), (["deploy"], SIGTERM, 143)] {
            let start = Date()
            let process = try FerryBinary.interrupted(argv + slow, after: 1_500_000, signal: signal)
            XCTAssertEqual(process.terminationReason, .exit, "\(argv): an exit status, not death by the signal")
            XCTAssertEqual(process.terminationStatus, code, "\(argv)")
            XCTAssertLessThan(Date().timeIntervalSince(start), 20, "\(argv) ended at the signal, not at the connect timeout")
        }
        let start = Date()
        let exec = try FerryBinary.interrupted(["exec"] + slow + ["--", "true"], after: 1_500_000)
        XCTAssertEqual(exec.terminationStatus, 130)
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }

    /// Ctrl-C mid-fleet: no new host starts, running rebuilds continue on their hosts (and keep
    /// their locks until they end), the summary is printed; afterwards nothing is stale.
    func testInterruptMidFleet() throws {
        for h in Self.hosts { h.holdRebuild(true); try h.setStandInFailure(nil) }
        let out = NSTemporaryDirectory() + "ferry-fleet-out-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FerryBinary.path())
        process.arguments = ["deploy", "-f", fleetFile, "--skip", "web-2", "--jobs", "2", "--no-confirm"]
        let handle = FileHandle(forWritingAtPath: out)!
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(30)
        while Self.hosts.filter({ !$0.standInCalls().isEmpty }).count < 2 && Date() < deadline { usleep(20_000) }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 130, text)
        XCTAssertTrue(text.contains("rebuild continues (ferry status "), text)
        XCTAssertTrue(text.contains("not started"), text)
        let started = Self.hosts.filter { !$0.standInCalls().isEmpty }
        XCTAssertEqual(started.count, 2)
        for h in Self.hosts { h.holdRebuild(false) }
        // The interrupted rebuilds finish and record; a new run deploys everything (no stale lock).
        let again = try ferry(["--skip", "web-2", "--lock-timeout", "60"])
        XCTAssertEqual(again.status, 0, again.stdout + again.stderr)
        for h in Self.hosts { try assertMirrored(h.name) }
    }

    /// SIGTERM (143, at once) and SIGINT (130, after the step in progress) at seeded moments of a
    /// fleet deploy: every file under a final name on any host is whole, no lock is left, and the
    /// next run converges.
    func testSignalsAtSeededMomentsLeaveNothingHalfWritten() throws {
        for h in Self.hosts { try h.setStandInFailure(nil) }
        var rng = SplitMix64(seed: 2026)
        var statuses: [Int32] = []
        for round in 0..<4 {
            let signal = round % 2 == 0 ? SIGTERM : SIGINT
            for h in Self.hosts { h.clearVarSrc() }
            // (No confirm-or-revert: a job left waiting for proof would hold its lock until it reverts.)
            let process = try FerryBinary.interrupted(["deploy", "-f", fleetFile, "--skip", "web-2", "--jobs", "2", "--no-confirm"],
                                                      after: UInt32(50_000 + rng.next() % 700_000), signal: signal)
            XCTAssertTrue([128 + signal, 0].contains(process.terminationStatus), "round \(round): \(process.terminationStatus)")
            statuses.append(process.terminationStatus)
            for h in Self.hosts {
                let root = h.varSrc + "/lnbits-src"
                let walker = FileManager.default.enumerator(atPath: root)
                while let rel = walker?.nextObject() as? String {
                    var isDir: ObjCBool = false
                    guard FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue,
                          (try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/" + rel)) == nil else { continue }
                    XCTAssertEqual(FileManager.default.contents(atPath: root + "/" + rel), FileManager.default.contents(atPath: work + "/lnbits/" + rel),
                                   "round \(round): \(h.name): \(rel) is partial")
                }
            }
            let again = try ferry(["--skip", "web-2", "--lock-timeout", "30", "--sync-only"])
            XCTAssertEqual(again.status, 0, "round \(round): " + again.stdout + again.stderr)
            for h in Self.hosts { try assertMirrored(h.name) }
        }
        XCTAssertTrue(statuses.contains(143) && statuses.contains(130), "rounds were cut mid-deploy by each signal: \(statuses)")
    }

    /// `ferry exec` over a selection: each resolved target printed first, every line prefixed,
    /// a summary; exit 0 only if the command exited 0 on every host.
    func testExecOverASelection() throws {
        let ok = try FerryBinary.run(["exec", "-f", fleetFile, "@db", "--", "sh", "-c", "echo hi; echo err >&2"])
        XCTAssertEqual(ok.status, 0, ok.stdout + ok.stderr)
        for name in ["db-1", "db-2", "db-3"] {
            XCTAssertTrue(ok.stdout.contains("\(name) | root@127.0.0.1:\(host(name).port)\n"), ok.stdout)
            XCTAssertTrue(ok.stdout.contains("\(name) | hi\n"), ok.stdout)
            XCTAssertTrue(ok.stderr.contains("\(name) | err\n"), ok.stderr)
            XCTAssertTrue(row(ok.stdout, name).contains("ok"), ok.stdout)
        }
        XCTAssertFalse(ok.stdout.contains("web-"), "only the selection ran")

        let mixed = try FerryBinary.run(["exec", "-f", fleetFile, "--connect-timeout", "3", "--", "sh", "-c", "test \"$(hostname)\" && exit 0"])
        XCTAssertEqual(mixed.status, 1, "web-2 is unreachable: \(mixed.stdout)")
        XCTAssertTrue(row(mixed.stdout, "web-2").contains("FAILED"), mixed.stdout)

        let failing = try FerryBinary.run(["exec", "-f", fleetFile, "db-1", "db-2", "--json", "--", "sh", "-c", "exit 3"])
        XCTAssertEqual(failing.status, 1)
        let schema = DeployCommandTests.repository + "/docs/events.schema.json"
        let check = "import json,sys,jsonschema\nv=jsonschema.Draft7Validator(json.load(open(sys.argv[1])))\nsys.exit(max([1 if list(v.iter_errors(json.loads(l))) else 0 for l in sys.stdin] or [1]))"
        let valid = try FerryBinary.run(executable: try Command.which("python3"), ["-c", check, schema], input: failing.stdout)
        XCTAssertEqual(valid.status, 0, failing.stdout)
        XCTAssertTrue(failing.stdout.contains("\"exit_status\":3"), failing.stdout)
    }

    /// Three hosts, one unreachable: the other two are shown, the failure named, exit 1.
    func testDiffOverThreeHostsWithOneUnreachable() throws {
        let r = try FerryBinary.run(["diff", "-f", fleetFile, "web-1", "web-2", "db-1", "--connect-timeout", "3"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("web-1 | total: "), r.stdout)
        XCTAssertTrue(r.stdout.contains("db-1 | total: "), r.stdout)
        XCTAssertTrue(r.stderr.contains("ferry: web-2: cannot connect to 127.0.0.1 port"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: host("web-1").varSrc + "/.ferry"), "diff wrote nothing")
    }

    /// stdin as ssh gives it: one fleet host gets it; several get none unless --stdin-all sends
    /// the same bytes to each; -n gives none to one host too.
    func testExecStdinForFleetHosts() throws {
        let one = try FerryBinary.run(["exec", "-f", fleetFile, "db-1", "--", "wc", "-c"], input: "K=v\n")
        XCTAssertEqual(one.status, 0, one.stdout + one.stderr)
        XCTAssertEqual(one.stdout, "4\n")
        let none = try FerryBinary.run(["exec", "-f", fleetFile, "db-1", "-n", "--", "wc", "-c"], input: "K=v\n")
        XCTAssertEqual(none.stdout, "0\n")
        let several = try FerryBinary.run(["exec", "-f", fleetFile, "db-1", "db-2", "--", "wc", "-c"], input: "K=v\n")
        XCTAssertEqual(several.status, 0, several.stdout + several.stderr)
        for name in ["db-1", "db-2"] { XCTAssertTrue(several.stdout.contains("\(name) | 0\n"), several.stdout) }
        let all = try FerryBinary.run(["exec", "-f", fleetFile, "@db", "--stdin-all", "--", "wc", "-c"], input: "K=v\n")
        XCTAssertEqual(all.status, 0, all.stdout + all.stderr)
        for name in ["db-1", "db-2", "db-3"] { XCTAssertTrue(all.stdout.contains("\(name) | 4\n"), all.stdout) }
        let contradiction = try FerryBinary.run(["exec", "-f", fleetFile, "db-1", "-n", "--stdin-all", "--", "true"])
        XCTAssertEqual(contradiction.status, 2, contradiction.stderr)
    }

    /// unlock and config act on one host: a selection of several is a usage error listing them,
    /// before any connection (web-2 is unreachable: a connection would fail with 255).
    func testUnlockAndConfigRefuseASelectionOfSeveral() throws {
        for (selection, names) in [("@web", "web-1, web-2, web-3"), ("*", "web-1, web-2, web-3, db-1, db-2, db-3"), ("db-[23]", "db-2, db-3")] {
            for command in [["unlock", selection, "--force"], ["config", selection]] {
                let r = try FerryBinary.run([command[0], "-f", fleetFile] + command.dropFirst())
                XCTAssertEqual(r.status, 2, "\(command): \(r.stdout) \(r.stderr)")
                XCTAssertTrue(r.stderr.contains("'\(selection)' matches \(names.split(separator: ",").count) hosts (\(names)); \(command[0]) acts on one host"), r.stderr)
                XCTAssertEqual(r.stdout, "")
            }
        }
        XCTAssertEqual(try FerryBinary.run(["unlock", "-f", fleetFile, "db-[1]"]).status, 0, "one match is fine")
    }

    /// A host whose key changed: a fleet exec's summary names it, and stderr carries the whole
    /// reason — the fingerprint and the ssh-keygen -R to run — one prefixed line each.
    func testExecOverAFleetShowsARefusedHostKeyInFull() throws {
        let key = work + "/impostor"
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
        let impostor = try String(contentsOfFile: key + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        let port = host("db-1").port
        let lines = try String(contentsOfFile: Self.harness!.knownHostsFile, encoding: .utf8).split(separator: "\n")
            .map { $0.hasPrefix("[127.0.0.1]:\(port) ") ? "[127.0.0.1]:\(port) \(impostor)" : String($0) }
        let knownHosts = work + "/known_hosts"
        try (lines.joined(separator: "\n") + "\n").write(toFile: knownHosts, atomically: true, encoding: .utf8)
        let r = try FerryBinary.run(["exec", "-f", fleetFile, "@db", "--known-hosts", knownHosts, "--", "true"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(row(r.stdout, "db-1").contains("FAILED"), r.stdout)
        XCTAssertTrue(r.stderr.contains("ferry: db-1: host key verification failed: REMOTE HOST IDENTIFICATION HAS CHANGED"), r.stderr)
        XCTAssertTrue(r.stderr.contains("ferry: db-1: The ED25519 key it sent has fingerprint SHA256:"), r.stderr)
        XCTAssertTrue(r.stderr.contains("ssh-keygen -R '[127.0.0.1]:\(port)'"), r.stderr)
        XCTAssertFalse(r.stderr.contains("db-2:"), "only the refused host: \(r.stderr)")
    }
}
