import FerryDeploy
import FerryTarget
import FerryTestSupport
import FerryXCTestSupport
import Foundation
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Secrets against real hosts: written exactly (content, owner, group, mode), only when changed,
/// their units restarted once by the job, and found nowhere but in the destination file.
extension DeployCommandTests {
    static let serviceUser = TestUser(name: "lnsvc", uid: 4310, sudo: false)

    /// A host with a service user and a work folder whose secrets live outside the fleet's folder
    /// (which is synced as the rendered source).
    func secretsWork(_ name: String, secrets: String) throws -> (host: TestHost, work: Work, dir: String) {
        let g = try harness.startHost(name: name, users: [Self.serviceUser])
        let work = try makeWork(port: g.port)
        let dir = work.root + "/secrets"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try appendToFleet(work, secrets)
        return (g, work, dir)
    }

    func lstatOf(_ path: String) -> Glibc.stat? {
        var st = Glibc.stat()
        return lstat(path, &st) == 0 ? st : nil
    }

    func testSecretsAreWrittenExactlyOnceAndOnlyWhenChanged() throws {
        let (g, work, dir) = try secretsWork("secrets-basic", secrets: """
        [secrets.lnbits-env]
        file = "../secrets/lnbits.env"
        dest = "/root/srv/lnbits/.env"
        owner = "lnsvc"
        mode = "0440"
        restart = ["lnbits.service"]

        [secrets.macaroon]
        command = ["printf", "mac\\\\000aroon\\\\001"]
        dest = "/root/srv/lnbits/admin.macaroon"
        owner = "lnsvc"
        group = "root"
        restart = ["lnbits.service", "lnd.service"]

        [secrets.big]
        file = "../secrets/big.bin"
        dest = "/root/srv/big.bin"
        """)
        let env = "LNBITS_ADMIN_USERS=abc\nLNBITS_BACKEND_WALLET_CLASS=LndRestWallet"  // no final newline
        try env.write(toFile: dir + "/lnbits.env", atomically: true, encoding: .utf8)
        var big = [UInt8](repeating: 0, count: 1 << 20)
        for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        try Data(big).write(to: URL(fileURLWithPath: dir + "/big.bin"))
        let root = g.directory + "/root"

        let first = try deploy(work, ["--json"])
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        try validateAgainstSchema(first.stdout, "deploy with secrets")
        XCTAssertEqual(try String(contentsOfFile: root + "/srv/lnbits/.env", encoding: .utf8), env)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: root + "/srv/lnbits/admin.macaroon")), Data([0x6D, 0x61, 0x63, 0, 0x61, 0x72, 0x6F, 0x6F, 0x6E, 1]))
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: root + "/srv/big.bin"))), big)
        let envStat = try XCTUnwrap(lstatOf(root + "/srv/lnbits/.env"))
        XCTAssertEqual([envStat.st_uid, envStat.st_gid], [4310, 4310], "owner lnsvc, its group")
        XCTAssertEqual(envStat.st_mode & 0o7777, 0o440)
        let macStat = try XCTUnwrap(lstatOf(root + "/srv/lnbits/admin.macaroon"))
        XCTAssertEqual([macStat.st_uid, macStat.st_gid, macStat.st_mode & 0o7777], [4310, 0, 0o400])
        let bigStat = try XCTUnwrap(lstatOf(root + "/srv/big.bin"))
        XCTAssertEqual([bigStat.st_uid, bigStat.st_gid, bigStat.st_mode & 0o7777], [0, 0, 0o400])
        XCTAssertEqual(try XCTUnwrap(lstatOf(root + "/srv/lnbits")).st_mode & 0o7777, 0o750, "a missing folder is made 0750")
        XCTAssertEqual(g.systemctlCalls(), ["restart -- lnbits.service", "restart -- lnd.service"], "each unit once")
        XCTAssertTrue(first.stdout.contains(#""change":"new","host":"alpha","phase":"secrets","restarts":["lnbits.service"],"secret":"lnbits-env","state":"written","type":"event","written":"before""#), first.stdout)
        XCTAssertEqual(try record(varSrc: g.varSrc).secrets?.map(\.written), ["before", "before", "before"])

        // Nothing changed: nothing written (same inode and times), nothing restarted.
        let again = try deploy(work)
        XCTAssertEqual(again.status, 0, again.stdout + again.stderr)
        XCTAssertTrue(again.stdout.contains("secrets: lnbits-env: unchanged"), again.stdout)
        let same = try XCTUnwrap(lstatOf(root + "/srv/lnbits/.env"))
        XCTAssertEqual([same.st_ino, UInt(same.st_mtim.tv_sec), UInt(same.st_mtim.tv_nsec), UInt(same.st_ctim.tv_nsec)],
                       [envStat.st_ino, UInt(envStat.st_mtim.tv_sec), UInt(envStat.st_mtim.tv_nsec), UInt(envStat.st_ctim.tv_nsec)])
        XCTAssertEqual(g.systemctlCalls().count, 2)
        XCTAssertEqual(try record(varSrc: g.varSrc).secrets?.map(\.change), ["unchanged", "unchanged", "unchanged"])

        // One changed: replaced (a new file renamed over it), its unit restarted once.
        try (env + "\nLNBITS_SITE_TITLE=changed").write(toFile: dir + "/lnbits.env", atomically: true, encoding: .utf8)
        let changed = try deploy(work)
        XCTAssertEqual(changed.status, 0, changed.stdout + changed.stderr)
        XCTAssertTrue(changed.stdout.contains("secrets: lnbits-env: changed, written before the activation; restarts lnbits.service"), changed.stdout)
        XCTAssertTrue(changed.stdout.contains("secrets: macaroon: unchanged"), changed.stdout)
        XCTAssertEqual(try String(contentsOfFile: root + "/srv/lnbits/.env", encoding: .utf8), env + "\nLNBITS_SITE_TITLE=changed")
        XCTAssertNotEqual(try XCTUnwrap(lstatOf(root + "/srv/lnbits/.env")).st_ino, envStat.st_ino)
        XCTAssertEqual(g.systemctlCalls(), ["restart -- lnbits.service", "restart -- lnd.service", "restart -- lnbits.service"])
        XCTAssertEqual(((try? FileManager.default.contentsOfDirectory(atPath: root + "/srv/lnbits")) ?? []).sorted(), [".env", "admin.macaroon"], "no temporary file left")

        // Changed on the host: status says so (by inode and ctime, never by reading it), the next deploy writes it again.
        XCTAssertEqual(try Command.run(["sh", "-c", "printf x >> \"$1\"", "append", root + "/srv/lnbits/.env"]).status, 0)
        let status = try FerryBinary.run(["status", "-f", work.fleetFile, "alpha"])
        XCTAssertTrue(status.stdout.contains("alpha | secret lnbits-env: changed on the host since ferry wrote it"), status.stdout)
        let diff = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha"])
        XCTAssertTrue(diff.stdout.contains("secret lnbits-env: changed on host"), diff.stdout)
        XCTAssertTrue(diff.stdout.contains("secret macaroon: unchanged"), diff.stdout)
        let repaired = try deploy(work)
        XCTAssertEqual(repaired.status, 0, repaired.stdout + repaired.stderr)
        XCTAssertTrue(repaired.stdout.contains("secrets: lnbits-env: changed on host, written before the activation"), repaired.stdout)
        XCTAssertEqual(try String(contentsOfFile: root + "/srv/lnbits/.env", encoding: .utf8), env + "\nLNBITS_SITE_TITLE=changed")
    }

    /// A destination that is a symlink is replaced, never written through; `--secrets-only`
    /// writes and restarts without a rebuild.
    func testASymlinkDestinationIsReplacedAndSecretsOnlyWritesJustThem() throws {
        let (g, work, dir) = try secretsWork("secrets-link", secrets: """
        [secrets.env]
        file = "../secrets/env"
        dest = "/root/srv/env"
        restart = ["lnbits.service"]
        """)
        let root = g.directory + "/root"
        try FileManager.default.createDirectory(atPath: root + "/srv", withIntermediateDirectories: true)
        try "target of the link\n".write(toFile: root + "/elsewhere", atomically: true, encoding: .utf8)
        XCTAssertEqual(symlink("/root/elsewhere", root + "/srv/env"), 0)
        try "A=1\n".write(toFile: dir + "/env", atomically: true, encoding: .utf8)
        let run = try deploy(work, ["--secrets-only"])
        XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
        XCTAssertTrue(run.stdout.contains("secrets written (no sync, no rebuild)"), run.stdout)
        XCTAssertEqual(try String(contentsOfFile: root + "/elsewhere", encoding: .utf8), "target of the link\n", "the link's target is untouched")
        XCTAssertEqual(try XCTUnwrap(lstatOf(root + "/srv/env")).st_mode & S_IFMT, S_IFREG)
        XCTAssertEqual(try String(contentsOfFile: root + "/srv/env", encoding: .utf8), "A=1\n")
        XCTAssertEqual(g.systemctlCalls(), ["restart -- lnbits.service"])
        XCTAssertEqual(g.activations(), [], "nothing rebuilt")
        XCTAssertFalse(FileManager.default.fileExists(atPath: g.varSrc + "/lnbits-src"), "nothing synced")
    }

    /// `upload = "auto"`: the owner does not exist before the activation, which creates it; the
    /// secret goes right after it, and its unit restarts once.
    func testASecretWhoseOwnerTheActivationCreatesGoesRightAfterIt() throws {
        let (g, work, dir) = try secretsWork("secrets-after", secrets: """
        [secrets.env]
        file = "../secrets/env"
        dest = "/root/srv/lnbits/.env"
        owner = "lnbits"
        restart = ["lnbits.service"]
        """)
        g.activationCreatesUser("lnbits", uid: 4320)
        try "B=2\n".write(toFile: dir + "/env", atomically: true, encoding: .utf8)
        let run = try deploy(work)
        XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
        XCTAssertTrue(run.stdout.contains("secrets: env: new, written after the activation; restarts lnbits.service"), run.stdout)
        let st = try XCTUnwrap(lstatOf(g.directory + "/root/srv/lnbits/.env"))
        XCTAssertEqual([st.st_uid, st.st_gid], [4320, 4320])
        XCTAssertEqual(g.systemctlCalls(), ["restart -- lnbits.service"])
        XCTAssertEqual(try record(varSrc: g.varSrc).secrets?.first?.written, "after")
        // upload = "before" with an owner that does not exist is an error naming it, before anything changes.
        try appendToFleet(work, "[hosts.alpha.secrets.other]\nfile = \"../secrets/env\"\ndest = \"/root/srv/other\"\nowner = \"nobody-here\"\nupload = \"before\"\n")
        let before = try deploy(work)
        XCTAssertEqual(before.status, 1, before.stdout + before.stderr)
        XCTAssertTrue(before.stderr.contains("secrets.other: its owner nobody-here does not exist on the host"), before.stderr)
    }

    func testAFailingSecretCommandStopsTheRunBeforeAnyConnection() throws {
        let work = try makeWork()
        try appendToFleet(work, """
        [secrets.env]
        command = ["sh", "-c", "echo 'pass: no such entry' >&2; exit 3"]
        dest = "/root/env"
        """)
        let run = try deploy(work)
        XCTAssertEqual(run.status, 2, run.stdout + run.stderr)
        XCTAssertTrue(run.stderr.contains("secrets.env: sh -c 'echo '\\''pass: no such entry'\\'' >&2; exit 3': exit status 3"), run.stderr)
        XCTAssertTrue(run.stderr.contains("pass: no such entry"), run.stderr)
        XCTAssertFalse(run.stdout.contains("connect:"), run.stdout)
    }
}

/// Forwards every command to a real session and keeps its command line: what the target's shell
/// is given, for a test that looks for a secret where it must not be.
final class RecordingShell: RemoteShell, @unchecked Sendable {
    let inner: SSHSession
    let lock = NSLock()
    var commands: [[UInt8]] = []
    var name: String { inner.name }
    var onRemoteProcessGroup: ((Int32) -> Void)? {
        get { inner.onRemoteProcessGroup }
        set { inner.onRemoteProcessGroup = newValue }
    }

    init(_ inner: SSHSession) { self.inner = inner }

    func exec(_ command: RemoteCommand, stdin: ExecInput?, cancel: CancellationToken?,
              stdout: (UnsafeRawBufferPointer) -> Void, stderr: (UnsafeRawBufferPointer) -> Void) throws -> ExitStatus {
        lock.lock()
        commands.append(command.bytes)
        lock.unlock()
        return try inner.exec(command, stdin: stdin, cancel: cancel, stdout: stdout, stderr: stderr)
    }

    func exchange(host: String, port: Int, send request: [UInt8], timeout: Double, cancel: CancellationToken?,
                  until complete: ([UInt8]) -> Bool) throws -> ForwardedReply {
        try inner.exchange(host: host, port: port, send: request, timeout: timeout, cancel: cancel, until: complete)
    }

    func close() { inner.close() }
}

extension DeployCommandTests {
    /// The secret's bytes are in the destination file and nowhere else: not in any argv or
    /// environment on the host (strace of its sshd and everything it starts, for the whole
    /// deploy), not in a command line ferry gives the target's shell, not in ferry's output, JSON,
    /// local logs, nor in anything under the host's /var/src (records, deploy logs).
    func testASecretIsFoundNowhereButItsFile() throws {
        let (g, work, dir) = try secretsWork("secrets-leak", secrets: """
        [secrets.env]
        file = "../secrets/env"
        dest = "/root/srv/lnbits/.env"
        owner = "lnsvc"
        restart = ["lnbits.service"]

        [secrets.macaroon]
        command = ["cat", "../secrets/macaroon"]
        dest = "/root/srv/lnbits/macaroon"
        """)
        let marker = "FERRY-LEAK-\(UUID().uuidString)"
        try "LNBITS_KEY=\(marker)-env".write(toFile: dir + "/env", atomically: true, encoding: .utf8)
        try "\(marker)-mac\n".write(toFile: dir + "/macaroon", atomically: true, encoding: .utf8)
        let needles = [Array(marker.utf8)]
        func holds(_ bytes: [UInt8]) -> Bool { needles.contains { n in bytes.count >= n.count && (0...(bytes.count - n.count)).contains { Array(bytes[$0..<$0 + n.count]) == n } } }

        // strace follows the listening sshd and every process it starts, with argv and environment in full.
        let trace = NSTemporaryDirectory() + "ferry-strace-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: trace) }
        let strace = Process()
        strace.executableURL = URL(fileURLWithPath: try Command.which("strace"))
        strace.arguments = ["-f", "-v", "-e", "trace=execve", "-s", "65535", "-o", trace, "-p", String(try XCTUnwrap(g.sshdPID))]
        strace.standardError = FileHandle.nullDevice
        try strace.run()
        waitFor("strace to attach", seconds: 10) { (try? String(contentsOfFile: "/proc/\(g.sshdPID!)/status", encoding: .utf8))?.contains("TracerPid:\t\(strace.processIdentifier)") ?? false }
        // ferry run from the command line: text, then JSON.
        let run = try deploy(work)
        XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
        try "LNBITS_KEY=\(marker)-env2".write(toFile: dir + "/env", atomically: true, encoding: .utf8)
        let json = try deploy(work, ["--json"])
        XCTAssertEqual(json.status, 0, json.stdout + json.stderr)
        // And in-process, through a shell that records every command line it is given.
        try "LNBITS_KEY=\(marker)-env3".write(toFile: dir + "/env", atomically: true, encoding: .utf8)
        let fleet = try InventoryReader.load(work.fleetFile)
        let configuration = try harness.configuration(for: g)
        let recorder = Mutex<[RecordingShell]>([])
        var options = Deployment.Options(open: { _ in
            let shell = RecordingShell(try SSHSession(connecting: configuration))
            recorder.withLock { $0.append(shell) }
            return shell
        })
        options.ferryVersion = "test"
        var events: [String] = []
        let outcome = try Deployment(fleet: fleet, host: fleet.hosts[0], options: options).run { events.append(DeployEventText.line($0)) }
        XCTAssertEqual(outcome.result, .succeeded, events.joined(separator: "\n"))
        strace.interrupt()
        strace.waitUntilExit()

        let traced = Array(try Data(contentsOf: URL(fileURLWithPath: trace)))
        XCTAssertTrue(String(decoding: traced, as: UTF8.self).contains("install"), "strace saw the deploy's commands")
        XCTAssertFalse(holds(traced), "no argv or environment on the host holds the secret")
        let commands = recorder.withLock { $0.flatMap(\.commands) }
        XCTAssertGreaterThan(commands.count, 5)
        XCTAssertFalse(commands.contains(where: holds), "no command line holds the secret")
        XCTAssertTrue(events.contains("secrets: env: changed, written before the activation; restarts lnbits.service"), events.joined(separator: "\n"))
        XCTAssertFalse(events.contains { holds(Array($0.utf8)) })
        for output in [run.stdout, run.stderr, json.stdout, json.stderr] { XCTAssertFalse(holds(Array(output.utf8)), output) }
        for folder in [work.root + "/deployments/.ferry", g.varSrc] {
            let files = try Command.check(["find", folder, "-type", "f"]).output.split(separator: "\n").map(String.init)
            XCTAssertGreaterThan(files.count, 2, folder)
            for file in files { XCTAssertFalse(holds(Array((try? Data(contentsOf: URL(fileURLWithPath: file))) ?? Data())), file) }
        }
        // The value is where it belongs (and the search finds it there).
        XCTAssertEqual(try String(contentsOfFile: g.directory + "/root/srv/lnbits/.env", encoding: .utf8), "LNBITS_KEY=\(marker)-env3")
        XCTAssertTrue(holds(Array(try Data(contentsOf: URL(fileURLWithPath: g.directory + "/root/srv/lnbits/macaroon")))))
    }
}

extension DeployCommandTests {
    /// Through sudo with a password: the password line goes to sudo, the secret after it to the
    /// writer, exactly; nothing of either is echoed.
    func testASecretGoesThroughSudoAfterThePassword() throws {
        let h = try host
        let work = try makeWork()
        try logIn(work, as: "secret")
        let dir = work.root + "/secrets"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let value = "S=\(UUID().uuidString)\n\u{0}tail"
        try value.write(toFile: dir + "/env", atomically: true, encoding: .utf8)
        try appendToFleet(work, """
        [secrets.env]
        file = "../secrets/env"
        dest = "/root/srv-sudo/env"
        mode = "0600"
        """)
        let result = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "--sudo-password-fd", "0", "--secrets-only"], input: Self.sudoPassword + "\n")
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: h.directory + "/root/srv-sudo/env")), Data(value.utf8))
        XCTAssertFalse((result.stdout + result.stderr).contains(Self.sudoPassword))
        XCTAssertFalse((result.stdout + result.stderr).contains(value.prefix(38)))
        var st = Glibc.stat()
        XCTAssertEqual(lstat(h.directory + "/root/srv-sudo/env", &st), 0)
        XCTAssertEqual([st.st_uid, st.st_mode & 0o7777], [0, 0o600])
    }
}
