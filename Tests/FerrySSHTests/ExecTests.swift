import Crypto
import FerryXCTestSupport
import Foundation
import XCTest

final class ExecTests: HostTestCase {
    func testExitStatusAndSignal() throws {
        let session = try connect()
        XCTAssertEqual(try run(session, ["sh", "-c", "exit 42"]).status, .exited(42))
        XCTAssertEqual(try run(session, ["true"]).status, .exited(0))
        let killed = try run(session, ["sh", "-c", "kill -KILL $$"]).status
        XCTAssertEqual(killed, .signaled("KILL"))
        XCTAssertEqual(killed.shellCode, 137)
        XCTAssertEqual(try run(session, ["sh", "-c", "kill -TERM $$"]).status, .signaled("TERM"))
    }

    func testStdoutAndStderrStayApart() throws {
        let session = try connect()
        let r = try run(session, ["sh", "-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; done"])
        XCTAssertEqual(r.stdout, "out1\nout2\nout3\n")
        XCTAssertEqual(r.stderr, "err1\nerr2\nerr3\n")
    }

    func testOutputStreamsBeforeTheCommandEnds() throws {
        let session = try connect()
        var firstChunkAt: Double?
        let start = Date()
        let status = try session.exec(RemoteCommand(["sh", "-c", "echo first; sleep 4; echo second"]),
                                      stdout: { _ in if firstChunkAt == nil { firstChunkAt = Date().timeIntervalSince(start) } },
                                      stderr: { _ in })
        XCTAssertEqual(status, .exited(0))
        // The command sleeps 4 s between its lines: the first arrives well before the end,
        // with room for a loaded machine.
        XCTAssertLessThan(try XCTUnwrap(firstChunkAt), 3, "the first line must arrive while the command still runs")
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 4.0)
    }

    /// 20 MB in and 20 MB out through one exec at the same time (tee echoes while it reads).
    func testTwentyMegabytesBothWaysAtOnce() throws {
        let session = try connect()
        var rng = SystemRandomNumberGenerator()
        let input = (0..<(20 << 20) / 8).flatMap { _ in withUnsafeBytes(of: rng.next()) { Array($0) } }
        var echoed = SHA256()
        var echoedCount = 0
        var stderr: [UInt8] = []
        let command = RemoteCommand.script(
            #"f=$(mktemp) && tee "$f" && sha256sum < "$f" >&2; rm -f "$f""#)
        let status = try session.exec(command, stdin: BytesInput(input),
                                      stdout: { echoed.update(bufferPointer: $0); echoedCount += $0.count },
                                      stderr: { stderr.append(contentsOf: $0) })
        XCTAssertEqual(status, .exited(0))
        let sent = SHA256.hash(data: input).map { String(format: "%02x", $0) }.joined()
        let received = echoed.finalize().map { String(format: "%02x", $0) }.joined()
        let remote = String(decoding: stderr, as: UTF8.self).split(separator: " ").first.map(String.init)
        XCTAssertEqual(echoedCount, 20 << 20)
        XCTAssertEqual(remote, sent, "the target received exactly what was sent")
        XCTAssertEqual(received, sent, "ferry received exactly what the target echoed")
    }

    /// Input that is the command's last word: exec returns once it is sent, without the exit's
    /// round trip; the command still gets it all, and the session goes on.
    func testALastWordIsSentAndTheExitIsNotWaitedFor() throws {
        let session = try connect()
        let file = "/tmp/ferry-last-word-\(getpid())"
        let start = Date()
        let status = try session.exec(.script(#"IFS= read -r line; sleep 4; printf '%s' "$line" > "$1""#, arguments: [Array(file.utf8)]),
                                      stdin: LastWordInput(Array("done\n".utf8)), stdout: { _ in }, stderr: { _ in })
        XCTAssertEqual(status, .notAwaited)
        XCTAssertLessThan(Date().timeIntervalSince(start), 3.5, "returned before the command's exit (4 s)")
        // Polled, with a generous bound: the command writes the file once its sleep is over.
        var written = ""
        for _ in 0..<300 where written != "done" {
            usleep(50_000)
            written = try run(session, ["sh", "-c", "cat \"$0\" 2>/dev/null", file]).stdout
        }
        XCTAssertEqual(written, "done")
        _ = try run(session, ["rm", "-f", file])
    }

    func testStdinFromAPipeAndNoStdinMeansEOF() throws {
        let session = try connect()
        XCTAssertEqual(try run(session, ["cat"]).stdout, "", "no stdin: the command sees EOF at once")
        let pipe = Pipe()
        pipe.fileHandleForWriting.write(Data("via pipe\n".utf8))
        try pipe.fileHandleForWriting.close()
        var out: [UInt8] = []
        let status = try session.exec(RemoteCommand(["cat"]), stdin: FileDescriptorInput(descriptor: pipe.fileHandleForReading.fileDescriptor),
                                      stdout: { out.append(contentsOf: $0) }, stderr: { _ in })
        XCTAssertEqual(status, .exited(0))
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "via pipe\n")
    }

    func testCommandThatIgnoresStdinDoesNotHang() throws {
        let session = try connect()
        let r = try session.run(RemoteCommand(["true"]), stdin: [UInt8](repeating: 7, count: 8 << 20))
        XCTAssertEqual(r.status, .exited(0))
    }

    func testHostileArgumentsArriveIntact() throws {
        let session = try connect()
        let args = ShellQuoteTests.hostile + ShellQuoteTests.generated(count: 200, seed: 42)
        let r = try session.run(RemoteCommand(arguments: [Array("printf".utf8), Array("%s\\0".utf8)] + args))
        XCTAssertEqual(r.status, .exited(0))
        var parts = r.stdout.split(separator: 0, omittingEmptySubsequences: false).map(Array.init)
        parts.removeLast()
        XCTAssertEqual(parts, args)
    }

    func testManyCommandsOnOneSession() throws {
        let session = try connect()
        for i in 0..<50 {
            XCTAssertEqual(try run(session, ["echo", "\(i)"]).stdout, "\(i)\n")
        }
    }

    func testCancelClosesTheChannel() throws {
        let session = try connect()
        let cancel = try CancellationToken()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { cancel.cancel() }
        let start = Date()
        XCTAssertThrowsError(try session.exec(RemoteCommand(["sleep", "30"]), cancel: cancel, stdout: { _ in }, stderr: { _ in })) {
            XCTAssertEqual($0 as? SSHError, .cancelled)
        }
        // Never the command's 30 s. Usually under 1 s; the stop waits at most 5 s for the channel
        // to close after SIGTERM (one CI run took exactly that: see the session note), so the bound
        // is that deadline plus slack.
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }

    func testPrivateDirectoriesAndStandInOnPath() throws {
        let session = try connect()
        XCTAssertEqual(try run(session, ["sh", "-c", "command -v nixos-rebuild"]).stdout, "/run/current-system/sw/bin/nixos-rebuild\n")
        let marker = "marker-\(UUID().uuidString)"
        XCTAssertEqual(try run(session, ["touch", "/var/src/\(marker)"]).status, .exited(0))
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(try host.varSrc)/\(marker)"), "the host's /var/src is its private directory")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/var/src/\(marker)"), "and not the machine's")
        XCTAssertEqual(try run(session, ["sh", "-c", "echo $HOME; ls -A /root"]).stdout, "/root\n.ssh\n", "a private, empty /root")
    }
}
