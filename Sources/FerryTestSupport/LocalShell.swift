import FerrySSH
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A `RemoteShell` that runs each command with this machine's `/bin/sh -c`, in a session of its
/// own (as sshd starts commands): the deploy pipeline's logic, tested without sshd. Point the
/// pipeline's remote root at a temporary folder; this machine's real `/var/src` is never touched.
/// Commands may run from several threads at once, as on an SSH session.
/// Unchecked Sendable: `onRemoteProcessGroup` is set before commands run (as on `SSHSession`); the
/// list of commands is a Mutex.
public final class LocalShell: RemoteShell, @unchecked Sendable {
    public let name: String
    public var onRemoteProcessGroup: ((Int32) -> Void)?
    /// Commands run so far, as command lines.
    public var commands: [String] { ran.withLock { $0 } }
    private let ran = Mutex<[String]>([])

    public init(name: String = "local") {
        self.name = name
        signal(SIGPIPE, SIG_IGN)  // a command that exits early closes its stdin under us
    }

    public func close() {}

    public func exec(_ command: RemoteCommand, stdin: ExecInput?, cancel: CancellationToken?,
                     stdout: (UnsafeRawBufferPointer) -> Void, stderr: (UnsafeRawBufferPointer) -> Void) throws -> ExitStatus {
        ran.withLock { $0.append(command.description) }
        var fds = [Int32](repeating: -1, count: 6)  // stdin r/w, stdout r/w, stderr r/w
        for i in stride(from: 0, to: 6, by: 2) {
            guard fds.withUnsafeMutableBufferPointer({ pipe($0.baseAddress! + i) }) == 0 else { throw failure("pipe") }
        }
        defer { for fd in fds where fd >= 0 { Glibc.close(fd) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fds[3], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[5], 2)
        for fd in fds { posix_spawn_file_actions_addclose(&actions, fd) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, 0x80)  // POSIX_SPAWN_SETSID (glibc ≥ 2.26; Swift does not import the macro)
        var pid: pid_t = 0
        let argv: [[CChar]] = [Array("/bin/sh".utf8CString), Array("-c".utf8CString), command.bytes.map { CChar(bitPattern: $0) } + [0]]
        var pointers: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in pointers { free(p) } }
        guard posix_spawn(&pid, "/bin/sh", &actions, &attributes, &pointers, environ) == 0 else { throw failure("posix_spawn") }
        for i in [0, 3, 5] { Glibc.close(fds[i]); fds[i] = -1 }
        onRemoteProcessGroup?(pid)
        for i in [1, 2, 4] { _ = fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK) }

        var buffer = [UInt8](repeating: 0, count: 65536)
        var pending: [UInt8] = []
        var inputOpen = true
        if stdin == nil { Glibc.close(fds[1]); fds[1] = -1; inputOpen = false }
        var outputs = [fds[2], fds[4]]
        while !outputs.isEmpty {
            if let cancel, cancel.isCancelled {
                kill(-pid, SIGTERM)
                var status: Int32 = 0
                _ = waitpid(pid, &status, 0)
                throw SSHError.cancelled
            }
            var waitOnInput: Int32?
            if inputOpen, let input = stdin, pending.isEmpty {
                switch try buffer.withUnsafeMutableBytes({ try input.read(into: $0) }) {
                case .bytes(let n): pending = Array(buffer[0..<n])
                case .wouldBlock: waitOnInput = input.pollDescriptor
                case .end: Glibc.close(fds[1]); fds[1] = -1; inputOpen = false
                }
            }
            var polls = outputs.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if inputOpen && !pending.isEmpty { polls.append(pollfd(fd: fds[1], events: Int16(POLLOUT), revents: 0)) }
            if let fd = waitOnInput { polls.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&polls, nfds_t(polls.count), 100)
            for (index, fd) in outputs.enumerated().reversed() {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    buffer.withUnsafeBytes { chunk in
                        let part = UnsafeRawBufferPointer(rebasing: chunk[0..<n])
                        if fd == fds[2] { stdout(part) } else { stderr(part) }
                    }
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    outputs.remove(at: index)
                }
            }
            if inputOpen && !pending.isEmpty {
                let n = pending.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
                if n > 0 { pending.removeFirst(n) }
                else if n < 0 && errno != EAGAIN && errno != EINTR { Glibc.close(fds[1]); fds[1] = -1; inputOpen = false; pending = [] }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7F
        if signal == 0 { return .exited((status >> 8) & 0xFF) }
        return .signaled(Self.signalNames[signal] ?? "SIG\(signal)")
    }

    private static let signalNames: [Int32: String] = [1: "HUP", 2: "INT", 3: "QUIT", 6: "ABRT", 9: "KILL", 13: "PIPE", 14: "ALRM", 15: "TERM"]

    private func failure(_ call: String) -> SSHError {
        .protocolFailure(target: name, operation: call, code: errno, message: String(cString: strerror(errno)))
    }
}
