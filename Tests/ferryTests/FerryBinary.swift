import Foundation
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `ferry` and `ferry-sandbox` executables, as an operator would.
enum FerryBinary {
    static var productsDirectory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    static func path(_ name: String = "ferry") -> String {
        productsDirectory.appendingPathComponent(name).path
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static func run(_ arguments: [String], input: String? = nil) throws -> Result {
        try run(executable: path(), arguments, input: input)
    }

    /// Starts ferry with its output discarded, sends `signal` after `microseconds`, and waits for it.
    static func interrupted(_ arguments: [String], after microseconds: UInt32, signal: Int32 = SIGINT) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path())
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        usleep(microseconds)
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return process
    }

    /// Runs any program, reading stdout and stderr at once (either may exceed a pipe's 64 KiB).
    static func run(executable: String, _ arguments: [String], input: String? = nil, environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try process.run()
        if let input {
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try inPipe.fileHandleForWriting.close()
        }
        let errBox = Mutex(Data())
        let errDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let data = err.fileHandleForReading.readDataToEndOfFile()
            errBox.withLock { $0 = data }
            errDone.signal()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        let errData = errBox.withLock { $0 }
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}
