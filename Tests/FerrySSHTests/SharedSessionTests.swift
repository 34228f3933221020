import Crypto
import FerryXCTestSupport
import FerrySSH
import Foundation
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Several threads running commands on one session at once, as a deploy's lock holder runs beside
/// its sync: every byte arrives where it belongs, and no thread sleeps on data another took.
final class SharedSessionTests: HostTestCase {
    /// Runs `bodies` on threads of their own; fails (instead of hanging) past `limit` seconds.
    @discardableResult
    private func together(limit: Double, _ bodies: [@Sendable () throws -> Void]) -> Bool {
        let failures = Mutex<[String]>([])
        let group = DispatchGroup()
        for (i, body) in bodies.enumerated() {
            group.enter()
            Thread {
                do { try body() } catch { failures.withLock { $0.append("thread \(i): \(error)") } }
                group.leave()
            }.start()
        }
        guard group.wait(timeout: .now() + limit) == .success else {
            XCTFail("the threads did not finish within \(limit) s")
            return false
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        return true
    }

    private static func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

    /// Two 16 MB streams both ways, a command printing lines slowly and a run of short commands,
    /// all at once on one session: bulk writes on one channel fill the socket while others send
    /// their small packets (libssh2 refuses a second packet while one is half-sent).
    /// A 16 KB send buffer makes libssh2's sends go out in parts all the time.
    func testCommandsOnSeveralThreadsAtOnceKeepTheirBytes() throws {
        let config = try harness.configuration(for: try host, user: "root", key: .ed25519)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var size: Int32 = 16 * 1024
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(config.target.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(connected, 0, String(cString: strerror(errno)))
        let session = try SSHSession(socket: fd, configuration: config)
        let streams: [@Sendable () throws -> Void] = (0..<2).map { n in {
            var generator = SeededGenerator(seed: UInt64(n + 1))
            let input = (0..<(16 << 20) / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }
            var echoed = SHA256()
            var count = 0
            var stderr: [UInt8] = []
            let status = try session.exec(.script(#"f=$(mktemp) && tee "$f" && sha256sum < "$f" >&2; rm -f "$f""#), stdin: BytesInput(input),
                                          stdout: { echoed.update(bufferPointer: $0); count += $0.count }, stderr: { stderr.append(contentsOf: $0) })
            let sent = Self.hex(SHA256.hash(data: input))
            guard status == .exited(0), count == input.count, Self.hex(echoed.finalize()) == sent,
                  String(decoding: stderr, as: UTF8.self).hasPrefix(sent) else {
                throw TestFailure("stream \(n): \(status), \(count) bytes back, stderr \(String(decoding: stderr, as: UTF8.self))")
            }
        } }
        let slow: @Sendable () throws -> Void = {
            let r = try session.run(.script("i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo line $i; sleep 0.01; done"))
            let expected = (1...100).map { "line \($0)\n" }.joined()
            guard r.status == .exited(0), String(decoding: r.stdout, as: UTF8.self) == expected else { throw TestFailure("slow: \(r.status)") }
        }
        let short: @Sendable () throws -> Void = {
            for i in 0..<40 {
                let r = try session.run(RemoteCommand(["sh", "-c", "echo $0; exit $(( $0 % 3 ))", "\(i)"]))
                guard r.status == .exited(Int32(i % 3)), r.stdout == Array("\(i)\n".utf8) else { throw TestFailure("short \(i): \(r.status)") }
            }
        }
        // Threads still running past the limit keep the session (never closed under them).
        guard together(limit: 120, streams + [slow, short]) else { return }
        XCTAssertEqual(try run(session, ["echo", "still", "usable"]).stdout, "still usable\n")
        session.close()
    }

    /// Two threads of back-to-back short commands: each command waits on the socket several times,
    /// so a reply taken off the socket by the other thread must wake its owner. Without the
    /// wake-up each such miss sleeps until the next keepalive (30 s here).
    func testARepliesTakenByAnotherThreadWakesItsOwner() throws {
        let session = try connect { $0.keepaliveInterval = 30 }
        let loop: @Sendable () throws -> Void = {
            for i in 0..<60 {
                let r = try session.run(RemoteCommand(["echo", "\(i)"]))
                guard r.status == .exited(0), r.stdout == Array("\(i)\n".utf8) else { throw TestFailure("command \(i): \(r.status)") }
            }
        }
        guard together(limit: 25, [loop, loop, loop]) else { return }
        session.close()
    }
}

private struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// splitmix64: a fixed stream per seed.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
