import Crypto
import FerrySSH
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A secret's bytes, in memory only: one buffer of ferry's own (never a `String`, `Data` or
/// array that Swift may copy about), zeroed when it is released. It is never printed: its
/// description says only its size.
public final class SecretValue: @unchecked Sendable, CustomStringConvertible {
    private var storage: UnsafeMutableRawBufferPointer
    public private(set) var count = 0

    init() { storage = .allocate(byteCount: 4096, alignment: 16) }

    deinit {
        Self.zero(storage)
        storage.deallocate()
    }

    /// Zeroing through a volatile-like call the optimiser does not drop (the buffer is freed next).
    private static func zero(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        explicit_bzero(base, buffer.count)
    }

    /// Reads `descriptor` to its end (at most `limit` bytes), growing the buffer and zeroing each
    /// one it leaves behind. Returns false past the limit.
    fileprivate func read(from descriptor: Int32, limit: Int) throws -> Bool {
        while true {
            if count == storage.count {
                guard storage.count < limit else { return false }
                let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: min(storage.count * 2, limit + 1), alignment: 16)
                bigger.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[0..<count]))
                Self.zero(storage)
                storage.deallocate()
                storage = bigger
            }
            let n = Glibc.read(descriptor, storage.baseAddress! + count, storage.count - count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw SecretError.read(errno: errno) }
            if n == 0 { return count <= limit }
            count += n
            if count > limit { return false }
        }
    }

    /// The bytes, for the duration of `body` (which must not keep them).
    public func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// HMAC-SHA-256 under `key` of what defines the file on the host: its path, owner, group and
    /// mode, then the value. Hex.
    public func digest(key: [UInt8], dest: String, owner: String, group: String, mode: String) -> String {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: key))
        mac.update(data: Array("ferry-secret-v1\0\(dest)\0\(owner)\0\(group)\0\(mode)\0".utf8))
        withBytes { mac.update(data: $0) }
        return Data(mac.finalize()).map { String(format: "%02x", $0) }.joined()
    }

    /// The value as a command's stdin, read straight from this buffer.
    public func input() -> any ExecInput { Input(value: self) }

    private final class Input: ExecInput, @unchecked Sendable {
        let value: SecretValue
        var offset = 0
        init(value: SecretValue) { self.value = value }
        var pollDescriptor: Int32? { nil }
        func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk {
            guard offset < value.count else { return .end }
            let n = min(buffer.count, value.count - offset)
            value.withBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
            return .bytes(n)
        }
    }

    public var description: String { "(a secret of \(count) bytes)" }

    /// Secrets larger than this are refused (a `.env` or a macaroon is a few KB).
    public static let limit = 16 << 20

    /// Reads the value of `source` on the operator's machine: a command's stdout (no shell, run in
    /// `directory` — the fleet's folder, as fleet.toml's relative paths are; stdin closed; its
    /// stderr kept for the error), or a file.
    public static func read(_ source: Fleet.Secret.Source, directory: String) throws -> SecretValue {
        let value = SecretValue()
        switch source {
        case .file(let path):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SecretError.file(path: path, reason: String(cString: strerror(errno))) }
            defer { close(fd) }
            guard try value.read(from: fd, limit: limit) else { throw SecretError.file(path: path, reason: "larger than \(limit >> 20) MiB") }
        case .command(let argv):
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = argv
            process.currentDirectoryURL = URL(fileURLWithPath: directory, isDirectory: true)
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            do { try process.run() } catch {
                throw SecretError.command(argv: argv, status: "could not start: \(error)", stderr: "")
            }
            // stderr on a thread of its own: a command that fills one pipe while we read the other must not stall.
            let said = Mutex<[UInt8]>([])
            let done = DispatchSemaphore(value: 0)
            let errors = err.fileHandleForReading
            Thread {
                let data = errors.readDataToEndOfFile()
                said.withLock { $0 = Array(data.prefix(64 * 1024)) }
                done.signal()
            }.start()
            let withinLimit = try value.read(from: out.fileHandleForReading.fileDescriptor, limit: limit)
            if !withinLimit { process.terminate() }
            process.waitUntilExit()
            done.wait()
            let stderr = said.withLock { String(decoding: $0, as: UTF8.self) }
            guard withinLimit else { throw SecretError.command(argv: argv, status: "printed more than \(limit >> 20) MiB", stderr: "") }
            guard process.terminationReason == .exit, process.terminationStatus == 0 else {
                let status = process.terminationReason == .exit ? "exit status \(process.terminationStatus)" : "killed by signal \(process.terminationStatus)"
                throw SecretError.command(argv: argv, status: status, stderr: stderr)
            }
        }
        return value
    }
}

/// Why a secret's value could not be had on the operator's side. Never holds the value.
public enum SecretError: Error, Equatable, Sendable, CustomStringConvertible {
    case command(argv: [String], status: String, stderr: String)
    case file(path: String, reason: String)
    case read(errno: Int32)

    public var description: String {
        switch self {
        case .command(let argv, let status, let stderr):
            let text = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            return "\(ShellQuote.join(argv)): \(status)" + (text.isEmpty ? "" : "\n" + text)
        case .file(let path, let reason): return "\(path): \(reason)"
        case .read(let e): return "reading the secret: \(String(cString: strerror(e)))"
        }
    }
}

/// The secrets of one run, each read once however many hosts take it (a `pass` prompt once).
/// Unchecked Sendable: `values` is guarded by `lock`.
public final class SecretStore: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Fleet.Secret.Source: SecretValue] = [:]
    /// Where commands run: the fleet's folder (set by `load`).
    private var directory = FileManager.default.currentDirectoryPath

    public init() {}

    /// Reads every secret of `hosts` now (before any connection). Throws `DeployError.localCheck`
    /// naming the secret and why.
    public func load(_ hosts: [Fleet.Host], fleetFile: String) throws {
        lock.lock()
        directory = (fleetFile as NSString).deletingLastPathComponent
        lock.unlock()
        for host in hosts {
            for secret in host.secrets {
                do { _ = try value(secret) } catch {
                    throw DeployError.localCheck("\(fleetFile): secrets.\(secret.name): \(error)")
                }
            }
        }
    }

    public func value(_ secret: Fleet.Secret) throws -> SecretValue {
        lock.lock()
        defer { lock.unlock() }
        if let known = values[secret.source] { return known }
        let value = try SecretValue.read(secret.source, directory: directory)
        values[secret.source] = value
        return value
    }
}
