import CLibSSH2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SSHSession {
    /// Runs `command` on the target, streaming stdout and stderr to the handlers as bytes arrive
    /// and feeding stdin from `stdin` (none: the command sees end of input at once).
    /// Output and input flow together, so a command that writes while it reads cannot deadlock.
    /// There is no time limit; a dead peer is caught by keepalives.
    public func exec(
        _ command: RemoteCommand,
        stdin: ExecInput? = nil,
        cancel: CancellationToken? = nil,
        stdout: (UnsafeRawBufferPointer) -> Void,
        stderr: (UnsafeRawBufferPointer) -> Void
    ) throws -> ExitStatus {
        let channel = try retryingPointer("open channel") {
            libssh2_channel_open_ex(raw, "session", 7, Self.windowSize, UInt32(LIBSSH2_CHANNEL_PACKET_DEFAULT), nil, 0)
        }
        var abandoned = false
        defer { if !abandoned { freeChannel(channel) } }
        do {
            try command.bytes.withUnsafeBufferPointer { cmd in
                try cmd.withMemoryRebound(to: CChar.self) { chars in
                    _ = try retrying("start command", cancel: cancel) {
                        libssh2_channel_process_startup(channel, "exec", 4, chars.baseAddress, UInt32(chars.count))
                    }
                }
            }
            try pump(channel, stdin: stdin, cancel: cancel, stdout: stdout, stderr: stderr)
            try retrying("close channel", cancel: cancel) { libssh2_channel_close(channel) }
            try retrying("wait for channel close", cancel: cancel) { libssh2_channel_wait_closed(channel) }
        } catch SSHError.cancelled {
            // libssh2 1.10 cannot send a signal: closing the channel is how we stop the command.
            // sshd confirms the close only once the command exits, so the channel is left for
            // session teardown instead of being waited for here.
            _ = libssh2_channel_close(channel)
            abandoned = true
            throw SSHError.cancelled
        }
        return exitStatus(channel)
    }

    /// Runs `command` and collects its output in memory (for small outputs).
    public func run(_ command: RemoteCommand, stdin: [UInt8]? = nil) throws -> (status: ExitStatus, stdout: [UInt8], stderr: [UInt8]) {
        var out: [UInt8] = []
        var err: [UInt8] = []
        let status = try exec(command, stdin: stdin.map { BytesInput($0) },
                              stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) })
        return (status, out, err)
    }

    static let windowSize: UInt32 = 4 * 1024 * 1024
    private static let bufferSize = 256 * 1024

    private func pump(
        _ channel: OpaquePointer,
        stdin: ExecInput?,
        cancel: CancellationToken?,
        stdout: (UnsafeRawBufferPointer) -> Void,
        stderr: (UnsafeRawBufferPointer) -> Void
    ) throws {
        let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 16)
        defer { readBuffer.deallocate() }
        // A pending stdin chunk stays at the same address until written: libssh2 wants the
        // same buffer back after EAGAIN.
        let writeBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 16)
        defer { writeBuffer.deallocate() }
        var pendingStart = 0
        var pendingEnd = 0
        var inputEnded = stdin == nil
        var inputDone = false

        while true {
            var progressed = false
            var drained = true
            for stream: Int32 in [0, SSH_EXTENDED_DATA_STDERR] {
                while true {
                    let n = libssh2_channel_read_ex(channel, stream, readBuffer.baseAddress, readBuffer.count)
                    if n > 0 {
                        let chunk = UnsafeRawBufferPointer(rebasing: readBuffer[0..<n])
                        stream == 0 ? stdout(chunk) : stderr(chunk)
                        progressed = true
                        lastInbound = Deadline.now()
                        continue
                    }
                    if n == Int(LIBSSH2_ERROR_EAGAIN) { drained = false }
                    else if n < 0 { throw failure("read command output", Int32(n)) }
                    break
                }
            }

            if !inputDone {
                if pendingStart == pendingEnd && !inputEnded, let stdin {
                    switch try stdin.read(into: writeBuffer) {
                    case .bytes(let n): pendingStart = 0; pendingEnd = n
                    case .end: inputEnded = true
                    case .wouldBlock: break
                    }
                }
                if pendingStart < pendingEnd {
                    let n = libssh2_channel_write_ex(channel, 0, writeBuffer.baseAddress! + pendingStart, pendingEnd - pendingStart)
                    if n > 0 {
                        pendingStart += n
                        progressed = true
                    } else if n != Int(LIBSSH2_ERROR_EAGAIN) {
                        // The command stopped reading (exited or closed stdin): drop the rest, as ssh does.
                        inputDone = true
                    }
                } else if inputEnded {
                    let rc = libssh2_channel_send_eof(channel)
                    if rc != LIBSSH2_ERROR_EAGAIN { inputDone = true; progressed = true }
                }
            }

            if drained && libssh2_channel_eof(channel) != 0 { return }
            if !progressed {
                let waitForInput = !inputDone && !inputEnded && pendingStart == pendingEnd ? stdin?.pollDescriptor : nil
                try waitSocket(cancel: cancel, alsoReadable: waitForInput)
            }
        }
    }

    /// Frees a channel, waiting a little if libssh2 still has bytes to flush (never forever).
    private func freeChannel(_ channel: OpaquePointer) {
        for _ in 0..<50 {
            guard libssh2_channel_free(channel) == LIBSSH2_ERROR_EAGAIN else { return }
            guard (try? waitSocket(deadline: Deadline(after: 0.1))) != nil else { return }
        }
    }

    private func exitStatus(_ channel: OpaquePointer) -> ExitStatus {
        var signal: UnsafeMutablePointer<CChar>?
        var signalLength = 0
        _ = libssh2_channel_get_exit_signal(channel, &signal, &signalLength, nil, nil, nil, nil)
        if let signal {
            defer { libssh2_free(raw, signal) }
            if signalLength > 0 { return .signaled(String(cString: signal)) }
        }
        return .exited(libssh2_channel_get_exit_status(channel))
    }
}
