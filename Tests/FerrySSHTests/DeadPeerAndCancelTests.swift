import FerryXCTestSupport
import Foundation
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 7.3, 7.5, 7.12, 7.16: a dead or frozen peer ends a command within the keepalive bound
/// without spinning; a channel without an exit status is never success; a cancel kills the
/// remote command's process group and leaves the session usable; a trickling peer cannot
/// stretch the connect timeout.
final class DeadPeerAndCancelTests: HostTestCase {
    /// Zeros, forever.
    final class Endless: ExecInput {
        var pollDescriptor: Int32? { nil }
        func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk {
            memset(buffer.baseAddress!, 0, buffer.count)
            return .bytes(buffer.count)
        }
    }

    static func cpuSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Runs an endless upload or download, breaks the link after 0.5 s, and returns the error,
    /// the seconds from the break to the error, and the CPU seconds used meanwhile.
    func breakMidTransfer(upload: Bool, kill: Bool) throws -> (SSHError?, Double, Double) {
        let relay = try SocketRelay(port: try host.port)
        var config = try harness.configuration(for: try host)
        config.keepaliveInterval = 1
        config.keepaliveCountMax = 3
        let session = try SSHSession(socket: relay.clientSocket, configuration: config)
        defer { session.close() }
        let broke = Mutex((at: 0.0, cpu: 0.0))
        let target = try host
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) {
            broke.withLock { $0 = (Date().timeIntervalSince1970, Self.cpuSeconds()) }
            if kill { target.killSessions() } else { relay.blackhole() }
        }
        var caught: SSHError?
        do {
            _ = try session.exec(RemoteCommand(upload ? ["sh", "-c", "cat > /dev/null"] : ["cat", "/dev/zero"]),
                                 stdin: upload ? Endless() : nil, stdout: { _ in }, stderr: { _ in })
        } catch let error as SSHError {
            caught = error
        }
        let (at, cpu) = broke.withLock { $0 }
        return (caught, Date().timeIntervalSince1970 - at, Self.cpuSeconds() - cpu)
    }

    func testFrozenLinkFailsWithinTheKeepaliveBoundWithoutSpinning() throws {
        for upload in [true, false] {
            let (error, seconds, cpu) = try breakMidTransfer(upload: upload, kill: false)
            let label = upload ? "upload" : "download"
            guard case .peerUnresponsive = error else { return XCTFail("\(label): \(String(describing: error))") }
            XCTAssertLessThan(seconds, 6 + 1 + 2, "\(label): the dead-peer bound is 2 s × 3 (+1)")
            XCTAssertLessThan(cpu, seconds * 0.3, "\(label): \(cpu) CPU seconds in \(seconds) s: the wait must not spin")
        }
    }

    func testKilledPeerIsALostConnectionAtOnce() throws {
        for upload in [true, false] {
            let (error, seconds, cpu) = try breakMidTransfer(upload: upload, kill: true)
            let label = upload ? "upload" : "download"
            switch error {
            case .connectionLost?, .peerUnresponsive?: break
            default: XCTFail("\(label): \(String(describing: error))")
            }
            XCTAssertLessThan(seconds, 3, label)
            XCTAssertLessThan(cpu, max(0.5, seconds * 0.5), label)
        }
    }

    /// sshd's ChannelTimeout closes an idle session channel without an exit status.
    func testChannelClosedWithoutExitStatusIsAnError() throws {
        let quiet = try harness.startHost(name: "channel-timeout", sshdOptions: ["ChannelTimeout session:command=1"])
        let session = try SSHSession(connecting: try harness.configuration(for: quiet))
        defer { session.close() }
        XCTAssertThrowsError(try session.run(RemoteCommand(["sleep", "20"]))) { error in
            XCTAssertEqual(error as? SSHError, .noExitStatus(target: quiet.target().description))
        }
        XCTAssertEqual(try session.run(RemoteCommand(["sh", "-c", "exit 3"])).status, .exited(3), "real statuses still come through")
    }

    func testCancelKillsTheRemoteProcessGroupAndKeepsTheSession() throws {
        let session = try connect()
        let cancel = try CancellationToken()
        let marker = "4242.\(Int.random(in: 100...999))"
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { cancel.cancel() }
        let start = Date()
        XCTAssertThrowsError(try session.exec(RemoteCommand(["sh", "-c", "sleep 1\(marker) & sleep 2\(marker); wait"]),
                                              cancel: cancel, stdout: { _ in }, stderr: { _ in })) {
            XCTAssertEqual($0 as? SSHError, .cancelled)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 4)
        XCTAssertEqual(try run(session, ["echo", "still here"]).stdout, "still here\n", "the session stays usable")
        // The test hosts share the machine's /proc: no process of the group may be left.
        usleep(200_000)
        let left = try Command.run(["pgrep", "-f", "sleep [12]\(marker)"])
        XCTAssertEqual(left.output, "", "remote processes left running")
    }

    /// Output that comes faster than the handler takes it: a cancel must still stop the command.
    /// Before 57517f8 the read loop took chunks for as long as there were any and looked at the
    /// cancel token only between rounds: `ferry exec -f FLEET HOST -- yes` ignored Ctrl-C.
    func testCancelStopsACommandThatFloodsASlowReader() throws {
        let session = try connect()
        let cancel = try CancellationToken()
        let start = Date()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { cancel.cancel() }
        XCTAssertThrowsError(try session.exec(RemoteCommand(["yes"]), cancel: cancel, stdout: { _ in
            // Slow for a bounded time, so that a regression fails this test instead of hanging it.
            if Date().timeIntervalSince(start) < 10 { usleep(2_000) }
        }, stderr: { _ in })) {
            XCTAssertEqual($0 as? SSHError, .cancelled)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
    }

    func testTheWrapperLineNeverReachesStderr() throws {
        let session = try connect()
        let r = try run(session, ["sh", "-c", "echo one >&2; echo two >&2"])
        XCTAssertEqual(r.stderr, "one\ntwo\n")
    }

    func testTricklingPeerCannotStretchTheConnectTimeout() throws {
        let (listener, port) = try Loopback.bind(backlog: 4)
        defer { close(listener) }
        let done = DispatchSemaphore(value: 0)
        Thread {
            let client = accept(listener, nil, nil)
            defer { close(client); done.signal() }
            _ = "SSH-2.0-trickle".withCString { write(client, $0, 15) }
            for _ in 0..<60 {  // one byte every 100 ms, never a whole banner line: at most 6 s
                usleep(100_000)
                if send(client, "x", 1, Int32(MSG_NOSIGNAL)) != 1 { break }
            }
        }.start()
        let start = Date()
        let config = SSHConfiguration(target: SSHTarget(host: "127.0.0.1", port: port), connectTimeout: 1, agentSocket: nil, passphrase: .none)
        XCTAssertThrowsError(try SSHSession(connecting: config)) {
            XCTAssertEqual($0 as? SSHError, .handshakeTimeout(host: "127.0.0.1", port: port, seconds: 1))
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        close(listener)
        done.wait()
    }

    func testSignalNamesAndQuoting() throws {
        XCTAssertEqual(ExitStatus.signaled("XCPU").shellCode, 152)
        XCTAssertEqual(ExitStatus.signaled("BUS").shellCode, 135)
        XCTAssertEqual(ExitStatus.signaled("SYS").shellCode, 159)
        XCTAssertEqual(ExitStatus.signaled("TRAP").shellCode, 133)
        XCTAssertEqual(ExitStatus.signaled("PWR@openssh.com").shellCode, 158)
        let session = try connect()
        // sshd reports SIGBUS as "SIG@openssh.com", with no number: 255, as ssh exits.
        let bus = try run(session, ["sh", "-c", "kill -BUS $$"]).status
        XCTAssertEqual(bus, .signaled("SIG@openssh.com"))
        XCTAssertEqual(bus.shellCode, 255)
        XCTAssertEqual(ExitStatus.signaled("SIG@openssh.com").description, "killed by a signal sshd does not name (SIG@openssh.com)")
        // "A=1" is the program's name, not an assignment.
        XCTAssertEqual(try run(session, ["A=1", "true"]).status, .exited(127))
        XCTAssertThrowsError(try RemoteCommand(validating: [Array("a\0b".utf8)]))
    }
}
