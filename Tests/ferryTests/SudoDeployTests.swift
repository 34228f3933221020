import FerryDeploy
import FerryXCTestSupport
import Foundation
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Deploys as a login user other than root: every command goes through sudo, and a sudo
/// password reaches sudo on stdin only.
extension DeployCommandTests {
    /// The work's fleet with host alpha logging in as `user`.
    func logIn(_ work: Work, as user: String) throws {
        let toml = try String(contentsOfFile: work.fleetFile, encoding: .utf8).replacingOccurrences(of: #"(?m)^user = .*\n"#, with: "", options: .regularExpression)
        try toml.replacingOccurrences(of: "address = \"127.0.0.1\"\n", with: "address = \"127.0.0.1\"\nuser = \"\(user)\"\n")
            .write(toFile: work.fleetFile, atomically: true, encoding: .utf8)
    }

    func testNonRootUserWithPasswordlessSudoDeploysAndReadsStatus() throws {
        let work = try makeWork()
        try logIn(work, as: "deploy")
        let result = try deploy(work)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")
        XCTAssertTrue(try record().operator_.hasPrefix("root@"))
        // State files are root's: status reads them through sudo too.
        let status = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha"])
        XCTAssertEqual(status.status, 0, status.stdout + status.stderr)
        XCTAssertTrue(status.stdout.contains("no drift") || !status.stdout.contains("drift"), status.stdout)
        XCTAssertEqual(try FerryBinary.run(["unlock", "-f", work.fleetFile, "alpha"]).status, 0)
    }

    func testSudoPasswordFromADescriptorIsFoundNowhere() throws {
        let work = try makeWork()
        try logIn(work, as: "secret")
        let h = try host
        // Sample every process's argv and environment on the machine (the target's included)
        // while the deploy runs.
        let leaks = Mutex<[String]>([])
        let running = Mutex(true)
        let needle = Array(Self.sudoPassword.utf8)
        let sampler = Thread {
            var rounds = 0
            while running.withLock({ $0 }) && rounds < 20_000 {
                rounds += 1
                for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
                    for file in ["cmdline", "environ"] {
                        if let data = FileManager.default.contents(atPath: "/proc/\(pid)/\(file)"), data.range(of: Data(needle)) != nil {
                            leaks.withLock { $0.append("/proc/\(pid)/\(file)") }
                        }
                    }
                }
                usleep(20_000)
            }
        }
        sampler.start()
        // Positive control: the sampler does see the password in a process's environment.
        let control = Process()
        control.executableURL = URL(fileURLWithPath: "/bin/sleep")
        control.arguments = ["1"]
        control.environment = ["FERRY_CONTROL": Self.sudoPassword]
        try control.run()
        waitFor("the sampler to see the control") { leaks.withLock { $0 }.contains("/proc/\(control.processIdentifier)/environ") }
        control.waitUntilExit()
        leaks.withLock { $0 = [] }
        let result = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "--sudo-password-fd", "0"], input: Self.sudoPassword + "\n")
        running.withLock { $0 = false }
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")
        XCTAssertEqual(leaks.withLock { $0 }, [])
        // Not in any file on either side: the host's sshd log, /var/src (deploy folder, record,
        // manifests), the stand-ins' logs; the local log beside fleet.toml.
        let controlFile = work.root + "/control"
        try Self.sudoPassword.write(toFile: controlFile, atomically: true, encoding: .utf8)
        XCTAssertEqual(try filesContaining(needle, under: [h.directory, work.root]), [controlFile], "only the control file")
        XCTAssertFalse((result.stdout + result.stderr).contains(Self.sudoPassword))
    }

    func testAskSudoPasswordPromptsOnceOnATerminal() throws {
        let work = try makeWork()
        try logIn(work, as: "secret")
        let command = [FerryBinary.path(), "deploy", "-f", work.fleetFile, "alpha", "--ask-sudo-password"].map(shellQuoted).joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Command.which("script"))
        process.arguments = ["-qfec", command, "/dev/null"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        addTeardownBlock { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        // Answer only once the prompt is on the terminal (echo is off by then).
        var seen = Data()
        let deadline = Date().addingTimeInterval(30)
        while !String(decoding: seen, as: UTF8.self).contains("sudo password for secret: ") && Date() < deadline {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
        }
        input.fileHandleForWriting.write(Data((Self.sudoPassword + "\n").utf8))
        seen.append(output.fileHandleForReading.readDataToEndOfFile())
        process.waitUntilExit()
        let text = String(decoding: seen, as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 0, text)
        XCTAssertEqual(text.components(separatedBy: "sudo password for").count - 1, 1, text)
        XCTAssertFalse(text.contains(Self.sudoPassword), "not echoed")
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")
    }

    func testWrongSudoPasswordMissingPasswordAndNoSudoFailBeforeAnythingIsSent() throws {
        let work = try makeWork()
        let h = try host
        try logIn(work, as: "secret")
        let wrong = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "--sudo-password-fd", "0"], input: "not it\n")
        XCTAssertEqual(wrong.status, 1, wrong.stdout + wrong.stderr)
        XCTAssertTrue(wrong.stderr.contains("sudo on secret@127.0.0.1:\(h.port) rejected the password"), wrong.stderr)
        let none = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha"])
        XCTAssertEqual(none.status, 1, none.stdout + none.stderr)
        XCTAssertTrue(none.stderr.contains("needs a password: give it with --ask-sudo-password"), none.stderr)
        try logIn(work, as: "plain")
        let plain = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha"])
        XCTAssertEqual(plain.status, 1, plain.stdout + plain.stderr)
        XCTAssertTrue(plain.stderr.contains("the login user on plain@127.0.0.1:\(h.port) cannot use sudo (Sorry, user plain may not run sudo"), plain.stderr)
        let plainWithPassword = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "--sudo-password-fd", "0"], input: "whatever\n")
        XCTAssertTrue(plainWithPassword.stderr.contains("the login user on plain@127.0.0.1:\(h.port) cannot use sudo"), plainWithPassword.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.varSrc), [], "nothing sent, no lock taken")
    }

    func filesContaining(_ needle: [UInt8], under roots: [String]) throws -> [String] {
        var found: [String] = []
        for root in roots {
            guard let walker = FileManager.default.enumerator(atPath: root) else { continue }
            while let relative = walker.nextObject() as? String {
                let path = root + "/" + relative
                var st = stat()
                guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
                if let data = FileManager.default.contents(atPath: path), data.range(of: Data(needle)) != nil { found.append(path) }
            }
        }
        return found
    }

    func shellQuoted(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// The state under /var/src/.ferry is root's alone, while the sources stay readable: a user
    /// without sudo reads /var/src/lnbits-src after a first deploy, and nothing under .ferry.
    /// State an earlier ferry left open is closed by the next deploy; local logs are private too.
    func testStateIsRootsAloneWhileSourcesStayReadable() throws {
        let work = try makeWork()
        XCTAssertEqual(try deploy(work).status, 0)
        let h = try host
        let plain = ["exec", "plain@127.0.0.1:\(h.port)", "-i", try harness.clientKey(.ed25519), "--known-hosts", try harness.knownHostsFile, "--"]
        let reads = try FerryBinary.run(plain + ["sh", "-c", "head -c 1 /var/src/lnbits-src/flake.nix >/dev/null && echo readable; ls /var/src/.ferry; cat /var/src/.ferry/last-rebuild.record"])
        XCTAssertTrue(reads.stdout.hasPrefix("readable\n"), reads.stdout + reads.stderr)
        XCTAssertTrue(reads.stderr.contains("ls: cannot open directory '/var/src/.ferry': Permission denied"), reads.stderr)
        XCTAssertTrue(reads.stderr.contains("last-rebuild.record: Permission denied"), reads.stderr)
        // A snapshot's tree holds the live tree's files (hard links), with their modes; the
        // folders above it are closed.
        func open(_ type: [String] = ["!", "-type", "l"]) throws -> String {
            try Command.check(["find", h.varSrc + "/.ferry", "-path", h.varSrc + "/.ferry/snapshots/*/*/tree", "-prune", "-o"]
                              + type + ["-perm", "/077", "-print"]).output
        }
        XCTAssertEqual(try open(["-type", "d"]), "", "no folder under .ferry is open to group or others")
        XCTAssertEqual(try open(["-type", "f"]), "", "nor any file: records, lock notes, deploy folders, each sync's own state")
        // Opened by hand (as an earlier ferry left it): the next deploy closes every folder and
        // file of it as it takes the lock.
        try Command.check(["chmod", "-R", "go+rX", h.varSrc + "/.ferry"])
        XCTAssertNotEqual(try open(), "")
        XCTAssertEqual(try deploy(work).status, 0)
        XCTAssertEqual(try open(["-type", "d"]), "")
        XCTAssertEqual(try open(["-type", "f"]), "", "every file of it is root's alone again")
        let local = work.root + "/deployments/.ferry"
        XCTAssertEqual(try Command.check(["find", local, "-perm", "/077"]).output, "", "the local logs are private")
    }
}
