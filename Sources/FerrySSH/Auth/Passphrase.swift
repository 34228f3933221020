import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Questions ferry asks on the terminal, one at a time.
public enum TerminalPrompt {
    /// Held while a question is on the terminal. Whatever else draws on the terminal (a fleet's
    /// live display) takes it too, so a prompt is never drawn over.
    public static let lock = NSLock()

    /// Asks on /dev/tty with echo off, under the terminal's lock; nil when there is no terminal.
    public static func secret(_ message: String) -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        return Passphrase.readLine(message)
    }
}

enum Passphrase {
    private static let answers = Mutex<[String: String]>([:])

    /// One prompt per key for the whole process: a fleet's hosts share the answer (prompts are
    /// one at a time under the terminal's lock, so a second host waits for the first answer).
    static func forKey(_ path: String) -> String? {
        TerminalPrompt.lock.lock()
        defer { TerminalPrompt.lock.unlock() }
        if let known = answers.withLock({ $0[path] }) { return known }
        let answer = readLine("Enter passphrase for \(path): ").map { String(decoding: $0, as: UTF8.self) }
        if let answer { answers.withLock { $0[path] = answer } }
        return answer
    }

    /// Reads a line from /dev/tty with echo off; nil when there is no terminal.
    static func readLine(_ message: String) -> [UInt8]? {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else { return nil }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        _ = message.withCString { write(fd, $0, strlen($0)) }
        tcsetattr(fd, TCSAFLUSH, &quiet)
        defer {
            tcsetattr(fd, TCSAFLUSH, &saved)
            _ = write(fd, "\n", 1)
        }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while read(fd, &byte, 1) == 1, byte != 0x0A, byte != 0x0D { line.append(byte) }
        return line
    }
}
