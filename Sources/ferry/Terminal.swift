import ArgumentParser
import FerrySSH
#if canImport(Glibc)
import Glibc
#endif

/// Prints one of ferry's messages on stderr. Control characters (a hostile target's file names or
/// stderr could carry terminal escapes) are shown as `\#ooo`, as rsync shows them (`DisplayText`).
/// A message of several lines (ferry's host-key texts, a target's stderr) keeps its form: each
/// further line gets the first one's `ferry: HOST: ` prefix, so no line stands unattributed.
func printError(_ text: String) {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    if lines.count > 1 && lines.last == "" { lines.removeLast() }
    let prefix = messagePrefix(lines.first ?? "")
    var out = DisplayText.escape(lines.first ?? "") + "\n"
    for line in lines.dropFirst() { out += prefix + DisplayText.escape(line) + "\n" }
    out.utf8CString.withUnsafeBufferPointer { buf in
        writeAll(2, UnsafeRawBufferPointer(start: buf.baseAddress, count: buf.count - 1))
    }
}

/// `ferry: HOST: ` when the line names a host (a word without spaces before ": "), else `ferry: `;
/// "" for a line of ArgumentParser's own.
func messagePrefix(_ line: String) -> String {
    guard line.hasPrefix("ferry: ") else { return "" }
    let rest = line.dropFirst("ferry: ".count)
    if let colon = rest.range(of: ": "), !rest[..<colon.lowerBound].contains(" "), !rest[..<colon.lowerBound].isEmpty {
        return "ferry: " + rest[..<colon.lowerBound] + ": "
    }
    return "ferry: "
}

func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
    var offset = 0
    while offset < bytes.count {
        let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n < 0 { if errno == EINTR { continue }; return }
        offset += n
    }
}

/// The cancel pipes' write ends; the handler may only call write(2) and _exit(2), so it reads
/// plain globals that are set before the handler is installed and never change after.
nonisolated(unsafe) private var interruptDescriptor: Int32 = -1
nonisolated(unsafe) private var stopDescriptor: Int32 = -1
nonisolated(unsafe) private var exitAtOnce = false
nonisolated(unsafe) private var interruptSignal: Int32 = 0
nonisolated(unsafe) private var interruptCount: Int32 = 0

/// How every command takes SIGINT and SIGTERM, by what its hosts' work changes; the exit status
/// is 130 or 143 in every case:
/// - `cut()`, short commands with nothing to stop on a host (diff and status read; unlock's one
///   script runs to its end or not at all): ferry exits at once;
/// - `cancelling()`, commands whose running work must be stopped on the host (exec, sync,
///   status --follow): the token stops it (a remote command is sent SIGTERM; a sync's staging is
///   removed) and no further host starts;
/// - `stopping()`, deploy: the first SIGINT only sets `stop` — start nothing new, finish the
///   current step, stop following rebuilds — and a second SIGINT, or SIGTERM, cancels at once.
enum SignalRelay {
    struct Tokens {
        /// Stops at once.
        let cancel: CancellationToken
        /// Starts nothing new (for `HostRunner`); `cancel` for commands without a gentle stop.
        let stop: CancellationToken
    }

    static func cut() {
        exitAtOnce = true
        install()
    }

    static func cancelling() throws -> Tokens {
        let cancel = try CancellationToken()
        interruptDescriptor = cancel.signalDescriptor
        install()
        return Tokens(cancel: cancel, stop: cancel)
    }

    static func stopping() throws -> Tokens {
        let cancel = try CancellationToken()
        let stop = try CancellationToken()
        interruptDescriptor = cancel.signalDescriptor
        stopDescriptor = stop.signalDescriptor
        install()
        return Tokens(cancel: cancel, stop: stop)
    }

    private static func install() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { number in
                if exitAtOnce { _exit(128 + number) }
                interruptSignal = number
                interruptCount += 1
                var byte: UInt8 = 1
                if stopDescriptor >= 0 { _ = write(stopDescriptor, &byte, 1) }
                if stopDescriptor < 0 || number == SIGTERM || interruptCount > 1 { _ = write(interruptDescriptor, &byte, 1) }
            }
        }
    }

    /// The exit code for the signal that cancelled the run: 130 for SIGINT, 143 for SIGTERM.
    static var exitCode: Int32 { 128 + (interruptSignal == 0 ? SIGINT : interruptSignal) }

    static var interrupted: Bool { interruptSignal != 0 }
}
