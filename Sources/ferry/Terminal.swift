import ArgumentParser
import FerrySSH
#if canImport(Glibc)
import Glibc
#endif

func printError(_ text: String) {
    let line = text.hasSuffix("\n") ? text : text + "\n"
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

/// Turns SIGINT into a cancellation: the running command's channel is closed and ferry exits 130.
enum SignalRelay {
    nonisolated(unsafe) private static var token: CancellationToken?

    static func onInterrupt(_ cancel: CancellationToken) {
        token = cancel
        signal(SIGINT) { _ in SignalRelay.token?.cancel() }
    }
}
