import CLibSSH2
#if canImport(Glibc)
import Glibc
#endif

extension SSHSession {
    /// Runs `command` on the target, streaming stdout and stderr to the handlers as bytes arrive
    /// and feeding stdin from `stdin` (none: the command sees end of input at once).
    /// Output and input flow together, so a command that writes while it reads cannot deadlock.
    /// There is no time limit; a dead peer is caught by keepalives. On cancel the command's
    /// process group is sent SIGTERM over a second channel, so nothing is left running.
    public func exec(
        _ command: RemoteCommand,
        stdin: ExecInput? = nil,
        cancel: CancellationToken? = nil,
        stdout: (UnsafeRawBufferPointer) -> Void,
        stderr: (UnsafeRawBufferPointer) -> Void
    ) throws -> ExitStatus {
        // sshd starts each command as a session leader, so the shell's pid is the process group
        // of everything the command starts; `exec` keeps that pid for the command itself.
        // sudo (without a pty) keeps that process group, so the pid still names every process.
        // The line goes on both streams: whatever comes before it on either was printed by the
        // login shell (a chatty ~/.bashrc), never by the command, and is kept out of its output.
        let wrapped = Array("printf '\\036ferry-pgid %s\\n' \"$$\" >&2; printf '\\036ferry-pgid %s\\n' \"$$\"; exec ".utf8)
            + (sudo?.commandLine(command) ?? command.bytes)
        let stdin = sudo.map { $0.input(stdin) } ?? stdin
        var filter = CommandStart(), outFilter = CommandStart()
        // Other threads may run commands on this session meanwhile: their reads can take this
        // channel's data off the socket, and then wake this one.
        let waiter = try io.join()
        defer { io.leave(waiter) }
        io.call(waiter) { freeEnded() }
        io.starting.lock()
        let channel: OpaquePointer
        do { channel = try openChannel(waiter) } catch { io.starting.unlock(); throw error }
        var abandoned = false
        defer { if !abandoned { freeChannel(channel, waiter) } }
        let tracking = io.call(waiter) { ExitStatusTracking(channel) }
        do {
            do {
                defer { io.starting.unlock() }
                try start(channel, wrapped, cancel: cancel, waiter: waiter)
            }
            var reported = false
            let answered = try pump(channel, stdin: stdin, cancel: cancel, waiter: waiter, stdout: { chunk in
                outFilter.feed(chunk, stdout)
            }, stderr: { chunk in
                filter.feed(chunk, stderr)
                if !reported, let group = filter.processGroup {
                    reported = true
                    onRemoteProcessGroup?(group)
                }
            }, started: { filter.processGroup != nil }, startDeadline: Deadline(after: configuration.connectTimeout))
            filter.finish(stderr)
            outFilter.finish(stdout)
            // Both streams' text, once both are read (either may come first).
            noteLoginShellText(outFilter.loginText + filter.loginText)
            guard answered else {
                // Not closed yet: on a close, sshd drops what it has not yet written to the
                // command. Freed once the command's end has arrived (see `freeEnded`).
                io.call(waiter) { io.lingering.append(channel) }
                abandoned = true
                return .notAwaited
            }
            try retrying("close channel", cancel: cancel, waiter: waiter) { libssh2_channel_close(channel) }
            try retrying("wait for channel close", cancel: cancel, waiter: waiter) { libssh2_channel_wait_closed(channel) }
        } catch SSHError.cancelled {
            abandoned = !stopRemoteCommand(channel, processGroup: filter.processGroup, waiter: waiter)
            throw SSHError.cancelled
        }
        return try io.call(waiter) { try exitStatus(channel, tracking) }
    }

    static let windowSize: UInt32 = 4 * 1024 * 1024
    private static let bufferSize = 256 * 1024

    private func openChannel(_ waiter: SessionIO.Waiter) throws -> OpaquePointer {
        try retryingPointer("open channel", waiter: waiter) {
            libssh2_channel_open_ex(raw, "session", 7, Self.windowSize, UInt32(LIBSSH2_CHANNEL_PACKET_DEFAULT), nil, 0)
        }
    }

    private func start(_ channel: OpaquePointer, _ command: [UInt8], cancel: CancellationToken?, waiter: SessionIO.Waiter) throws {
        try command.withUnsafeBufferPointer { cmd in
            try cmd.withMemoryRebound(to: CChar.self) { chars in
                _ = try retrying("start command", cancel: cancel, waiter: waiter) {
                    libssh2_channel_process_startup(channel, "exec", 4, chars.baseAddress, UInt32(chars.count))
                }
            }
        }
    }

    /// After a cancel: SIGTERM to the command's process group over a fresh channel, then wait a
    /// little for the channel to close. Returns whether the channel closed (and may be freed).
    private func stopRemoteCommand(_ channel: OpaquePointer, processGroup: Int32?, waiter: SessionIO.Waiter) -> Bool {
        guard let pgid = processGroup, pgid > 1 else {
            io.call(waiter) { _ = libssh2_channel_close(channel) }
            return false
        }
        let deadline = Deadline(after: 5)
        io.starting.lock()
        let killer = try? openChannel(waiter)
        if let killer {
            defer { freeChannel(killer, waiter) }
            // "-PGID" right after the signal: dash (Debian's sh) refuses "--" there. Through sudo
            // when the command ran through it: the login user may not signal root's processes.
            let kill = RemoteCommand(["sh", "-c", "kill -TERM -\(pgid)"])
            let command = sudo?.commandLine(kill) ?? kill.bytes
            let started = (try? start(killer, command, cancel: nil, waiter: waiter)) != nil
            io.starting.unlock()
            if started {
                _ = try? pump(killer, stdin: sudo?.input(nil), cancel: nil, waiter: waiter, stdout: { _ in }, stderr: { _ in }, deadline: deadline)
            }
        } else {
            io.starting.unlock()
        }
        // The command is gone: read what is left until sshd closes its channel.
        guard (try? pump(channel, stdin: nil, cancel: nil, waiter: waiter, stdout: { _ in }, stderr: { _ in }, deadline: deadline)) != nil else {
            io.call(waiter) { _ = libssh2_channel_close(channel) }
            return false
        }
        _ = try? retrying("close channel", waiter: waiter) { libssh2_channel_close(channel) }
        return true
    }

    /// Moves bytes until the command's output ends (true), or until its input, which ends the
    /// conversation (`awaitsExit` false), has all gone (false).
    @discardableResult
    private func pump(
        _ channel: OpaquePointer,
        stdin: ExecInput?,
        cancel: CancellationToken?,
        waiter: SessionIO.Waiter,
        stdout: (UnsafeRawBufferPointer) -> Void,
        stderr: (UnsafeRawBufferPointer) -> Void,
        deadline: Deadline? = nil,
        started: () -> Bool = { true },
        startDeadline: Deadline? = nil
    ) throws -> Bool {
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
            // A bulk transfer may never wait on the socket: look at the cancel pipe every round.
            if let cancel, cancel.isCancelled { throw SSHError.cancelled }
            var progressed = false
            var drained = true
            for stream: Int32 in [0, SSH_EXTENDED_DATA_STDERR] {
                while true {
                    let n = try io.call(waiter) { () throws -> Int in
                        let n = libssh2_channel_read_ex(channel, stream, readBuffer.baseAddress, readBuffer.count)
                        if n < 0 && n != Int(LIBSSH2_ERROR_EAGAIN) { throw failure("read command output", Int32(n)) }
                        return n
                    }
                    if n > 0 {
                        // Handlers run outside the session's lock: they may be slow, or block.
                        let chunk = UnsafeRawBufferPointer(rebasing: readBuffer[0..<n])
                        stream == 0 ? stdout(chunk) : stderr(chunk)
                        progressed = true
                        // Output faster than the handler takes it never runs dry: look here too.
                        if let cancel, cancel.isCancelled { throw SSHError.cancelled }
                        continue
                    }
                    if n == Int(LIBSSH2_ERROR_EAGAIN) { drained = false }
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
                    // Nothing is handed to libssh2 while the socket is behind (see SessionIO.outbound).
                    let n = io.call(waiter) {
                        io.backlog > SessionIO.backlogLimit ? Int(LIBSSH2_ERROR_EAGAIN)
                            : libssh2_channel_write_ex(channel, 0, writeBuffer.baseAddress! + pendingStart, pendingEnd - pendingStart)
                    }
                    if n > 0 {
                        pendingStart += n
                        progressed = true
                    } else if n == Int(LIBSSH2_ERROR_CHANNEL_CLOSED) || n == Int(LIBSSH2_ERROR_CHANNEL_EOF_SENT) {
                        // The command stopped reading (exited or closed stdin): drop the rest, as ssh does.
                        inputDone = true
                    } else if n != Int(LIBSSH2_ERROR_EAGAIN) {
                        throw io.call(waiter) { failure("send command input", Int32(n)) }
                    }
                } else if inputEnded {
                    let rc = io.call(waiter) { libssh2_channel_send_eof(channel) }
                    if rc == 0 || rc == LIBSSH2_ERROR_CHANNEL_CLOSED || rc == LIBSSH2_ERROR_CHANNEL_EOF_SENT {
                        inputDone = true
                        progressed = true
                        if rc == 0, stdin?.awaitsExit == false { return false }
                    } else if rc != LIBSSH2_ERROR_EAGAIN {
                        throw io.call(waiter) { failure("send end of input", rc) }
                    }
                }
            }

            if drained && io.call(waiter, { libssh2_channel_eof(channel) }) != 0 { return true }
            if !progressed {
                var wait = deadline
                var onTimeout = deadline.map { _ in SSHError.cancelled }
                // Until the login shell has started the command, it has as long as a connection.
                if let startDeadline, !started() {
                    if startDeadline.expired { throw SSHError.loginShellSilent(target: target.description, seconds: configuration.connectTimeout) }
                    if wait == nil || startDeadline.at < wait!.at { wait = startDeadline; onTimeout = nil }
                }
                let waitForInput = !inputDone && !inputEnded && pendingStart == pendingEnd ? stdin?.pollDescriptor : nil
                try waitSocket(deadline: wait, onTimeout: onTimeout, cancel: cancel, alsoReadable: waitForInput, waiter: waiter)
            }
        }
    }

    /// Frees the channels of commands not waited for whose end has arrived; under the session's lock.
    private func freeEnded() {
        io.lingering.removeAll { channel in
            libssh2_channel_eof(channel) != 0 && libssh2_channel_free(channel) == 0
        }
    }

    /// Frees a channel, waiting a little if libssh2 still has bytes to flush (never forever).
    func freeChannel(_ channel: OpaquePointer, _ waiter: SessionIO.Waiter) {
        for _ in 0..<50 {
            guard io.call(waiter, { libssh2_channel_free(channel) }) == LIBSSH2_ERROR_EAGAIN else { return }
            guard (try? waitSocket(deadline: Deadline(after: 0.1), waiter: waiter)) != nil else { return }
        }
    }

    /// Under the session's lock.
    private func exitStatus(_ channel: OpaquePointer, _ tracking: ExitStatusTracking) throws -> ExitStatus {
        var signal: UnsafeMutablePointer<CChar>?
        var signalLength = 0
        _ = libssh2_channel_get_exit_signal(channel, &signal, &signalLength, nil, nil, nil, nil)
        if let signal {
            defer { libssh2_free(raw, signal) }
            if signalLength > 0 { return .signaled(String(cString: signal)) }
        }
        let code = libssh2_channel_get_exit_status(channel)
        if tracking.unset(code) { throw SSHError.noExitStatus(target: target.description) }
        return .exited(code)
    }
}

/// Strips the `\036ferry-pgid N` line the command wrapper writes first on each stream, keeps N
/// (from stderr), and keeps apart what came before it: text the login shell printed.
struct CommandStart {
    private static let marker = Array("\u{1e}ferry-pgid ".utf8)
    /// More than this before the line: no line will come (a shell that does not run the wrapper).
    private static let patience = 64 * 1024
    private(set) var processGroup: Int32?
    /// What the login shell printed before the line.
    private(set) var loginText: [UInt8] = []
    private var buffer: [UInt8] = []
    private var done = false

    mutating func feed(_ chunk: UnsafeRawBufferPointer, _ out: (UnsafeRawBufferPointer) -> Void) {
        guard !done else { return out(chunk) }
        buffer += chunk
        if let start = buffer.firstRange(of: Self.marker)?.lowerBound {
            guard let newline = buffer[start...].firstIndex(of: 0x0A) else { return }
            processGroup = Int32(String(decoding: buffer[(start + Self.marker.count)..<newline], as: UTF8.self))
            loginText = Array(buffer[..<start])
            buffer.removeSubrange(...newline)
        } else if buffer.count < Self.patience {
            return
        }
        finish(out)
    }

    mutating func finish(_ out: (UnsafeRawBufferPointer) -> Void) {
        done = true
        let rest = buffer
        buffer = []
        rest.withUnsafeBytes { if $0.count > 0 { out($0) } }
    }
}

extension SSHSession {
    /// Says once per session what the login shell printed before ferry's command ran (it is left
    /// out of every command's output, but the operator should make the shell quiet).
    fileprivate func noteLoginShellText(_ loginText: [UInt8]) {
        guard !loginText.isEmpty, io.call(nil, { () -> Bool in
            defer { io.loginShellNoticed = true }
            return !io.loginShellNoticed
        }) else { return }
        let text = String(decoding: loginText.prefix(200), as: UTF8.self)
        configuration.notice("warning: the login shell printed text before ferry's command ran: \"\(text)\"\(loginText.count > 200 ? " …" : ""); "
            + "ferry left it out, but a shell must print nothing for non-interactive sessions (in ~/.bashrc, print only when [[ $- == *i* ]])")
    }
}

/// libssh2 1.10 starts a channel's exit status at 0 and has no way to ask whether one arrived.
/// On the exact layout it was built with (checked field by field), the status starts at a value
/// no server sends instead, so "no exit status" cannot read as success.
struct ExitStatusTracking {
    private static let unsetValue = Int32.min
    private let active: Bool

    init(_ channel: OpaquePointer) {
        // struct _LIBSSH2_CHANNEL { list_node (3 pointers); unsigned char *channel_type;
        // unsigned channel_type_len; int exit_status; char *exit_signal; … } on LP64.
        let base = UnsafeMutableRawPointer(channel)
        guard MemoryLayout<Int>.size == 8, String(cString: libssh2_version(0)) == "1.10.0",
              base.load(fromByteOffset: 32, as: UInt32.self) == 7,
              let type = base.load(fromByteOffset: 24, as: UnsafePointer<UInt8>?.self),
              memcmp(type, "session", 7) == 0,
              base.load(fromByteOffset: 36, as: Int32.self) == 0,
              base.load(fromByteOffset: 40, as: UnsafeRawPointer?.self) == nil
        else { active = false; return }
        base.storeBytes(of: Self.unsetValue, toByteOffset: 36, as: Int32.self)
        active = true
    }

    func unset(_ status: Int32) -> Bool { active && status == Self.unsetValue }
}
