#if canImport(Glibc)
import Glibc
#endif

/// How a remote command ended.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    /// Killed by a signal, named without "SIG" as SSH reports it (e.g. "KILL").
    case signaled(String)
    /// Not waited for: the command's input was its last word (`ExecInput.awaitsExit` false), and
    /// it ends by itself; its answer would cost one more round trip and tell nothing.
    case notAwaited

    /// The exit code a local shell would give: the status, or 128 + the signal number.
    public var shellCode: Int32 {
        switch self {
        case .exited(let code): return code
        case .notAwaited: return 0
        case .signaled(let name):
            // OpenSSH names 13 signals; any other arrives as "SIG@openssh.com", without a number.
            // ssh exits 255 for every signal; ferry gives 128 + N where N is known, else 255.
            let n = ExitStatus.signalNumber(name)
            return n == 0 ? 255 : 128 + n
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .notAwaited: return "not waited for"
        case .signaled(let name):
            if ExitStatus.signalNumber(name) == 0 { return "killed by a signal sshd does not name (\(name))" }
            return "killed by signal \(name)"
        }
    }

    /// sshd names the signals RFC 4254 lists plainly and the others `NAME@openssh.com`;
    /// the numbers are Linux's (the targets are NixOS).
    static func signalNumber(_ name: String) -> Int32 {
        let bare = name.split(separator: "@").first.map(String.init) ?? name
        let plain = bare.hasPrefix("SIG") ? String(bare.dropFirst(3)) : bare
        return signalNumbers[plain] ?? 0
    }

    static let signalNumbers: [String: Int32] = [
        "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
        "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17,
        "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
        "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
    ]
}

/// What one `ExecInput.read` produced.
public enum InputChunk: Equatable {
    case bytes(Int)
    case wouldBlock
    case end
}

/// A source of bytes for a remote command's stdin, pulled as the channel can take them.
public protocol ExecInput: AnyObject {
    /// A descriptor to poll for readability when `read` says `.wouldBlock`.
    var pollDescriptor: Int32? { get }
    /// false: once all of it is sent, the command has nothing left to say and ends by itself;
    /// `exec` then returns `.notAwaited` at once. Read after `read` said `.end`.
    var awaitsExit: Bool { get }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk
}

extension ExecInput {
    public var awaitsExit: Bool { true }
}

/// Bytes held in memory.
public final class BytesInput: ExecInput {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var pollDescriptor: Int32? { nil }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk {
        let n = min(buffer.count, bytes.count - offset)
        guard n > 0 else { return .end }
        bytes.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
        }
        offset += n
        return .bytes(n)
    }
}

/// Bytes held in memory that end the conversation: the command's exit is not waited for.
public final class LastWordInput: ExecInput {
    private let bytes: BytesInput

    public init(_ bytes: [UInt8]) { self.bytes = BytesInput(bytes) }

    public var pollDescriptor: Int32? { nil }
    public var awaitsExit: Bool { false }
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk { try bytes.read(into: buffer) }
}

/// `prefix`, then whatever `rest` gives (none: end of input).
public final class PrefixedInput: ExecInput {
    private let prefix: BytesInput
    private var prefixDone = false
    private let rest: ExecInput?

    public init(_ prefix: [UInt8], then rest: ExecInput?) {
        self.prefix = BytesInput(prefix)
        self.rest = rest
    }

    public var pollDescriptor: Int32? { prefixDone ? rest?.pollDescriptor : nil }
    public var awaitsExit: Bool { rest?.awaitsExit ?? true }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk {
        if !prefixDone {
            let chunk = try prefix.read(into: buffer)
            if chunk != .end { return chunk }
            prefixDone = true
        }
        return try rest?.read(into: buffer) ?? .end
    }
}

/// A file descriptor (a pipe, file or socket), read only when poll says it is ready,
/// so a slow producer never stalls the channel's output.
public final class FileDescriptorInput: ExecInput, Sendable {
    public let descriptor: Int32

    public init(descriptor: Int32) { self.descriptor = descriptor }

    public var pollDescriptor: Int32? { descriptor }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk {
        var pfd = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 0) > 0 else { return .wouldBlock }
        let n = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
        if n > 0 { return .bytes(n) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return .wouldBlock }
        return .end
    }
}

/// Lets another thread or a signal handler stop a running command: `cancel()` wakes the poll loop.
public final class CancellationToken: Sendable {
    private let fds: [Int32]

    public init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0,
              fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0,
              fcntl(fds[1], F_SETFL, O_NONBLOCK) == 0 else {
            throw SSHError.protocolFailure(target: "local", operation: "create the cancel pipe", code: 0, message: errnoText())
        }
        self.fds = fds
    }

    deinit {
        close(fds[0])
        close(fds[1])
    }

    var descriptor: Int32 { fds[0] }

    /// The write end, for a signal handler that may call only write(2).
    public var signalDescriptor: Int32 { fds[1] }

    /// Async-signal-safe: only writes one byte to a pipe.
    public func cancel() {
        var b: UInt8 = 1
        _ = write(fds[1], &b, 1)
    }

    public var isCancelled: Bool {
        var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, 0) > 0
    }
}
