import ArgumentParser
import FerrySSH
#if canImport(Glibc)
import Glibc
#endif

/// Prints one of ferry's own messages on stderr, as one line. Control characters (a hostile
/// target's file names or stderr could carry terminal escapes) and newlines inside it are shown
/// as `\#ooo`, as rsync shows them (`DisplayText`).
func printError(_ text: String) {
    let line = DisplayText.escape(text.hasSuffix("\n") ? String(text.dropLast()) : text) + "\n"
    line.utf8CString.withUnsafeBufferPointer { buf in
        writeAll(2, UnsafeRawBufferPointer(start: buf.baseAddress, count: buf.count - 1))
    }
}

func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
    var offset = 0
    while offset < bytes.count {
        let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n < 0 { if errno == EINTR { continue }; return }
        offset += n
    }
}

/// The cancel pipes' write ends; the handler may only call write(2), so it reads plain globals
/// that are set before the handler is installed and never change after.
nonisolated(unsafe) private var interruptDescriptor: Int32 = -1
nonisolated(unsafe) private var stopDescriptor: Int32 = -1
nonisolated(unsafe) private var interruptSignal: Int32 = 0
nonisolated(unsafe) private var interruptCount: Int32 = 0

/// Turns SIGINT and SIGTERM into a cancellation: the running command is stopped and ferry exits
/// 130 or 143. With a `stop` token (a fleet deploy), the first SIGINT only sets that one — start
/// nothing new, finish the current step — and a second SIGINT, or SIGTERM, cancels at once.
enum SignalRelay {
    static func onInterrupt(_ cancel: CancellationToken, stop: CancellationToken? = nil) {
        interruptDescriptor = cancel.signalDescriptor
        stopDescriptor = stop?.signalDescriptor ?? -1
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { number in
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
