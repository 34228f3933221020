import Foundation
import Synchronization

/// Runs local helper programs for the harness (ssh-keygen, mount, …).
public enum Command {
    public struct Result {
        public let status: Int32
        public let stdout: Data
        public let stderr: Data
        public var output: String { String(decoding: stdout, as: UTF8.self) }
        public var errorOutput: String { String(decoding: stderr, as: UTF8.self) }
    }

    /// Runs to completion, capturing output. Not for commands that outlive the call.
    @discardableResult
    public static func run(_ argv: [String], input: Data? = nil, environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try which(argv[0]))
        process.arguments = Array(argv.dropFirst())
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let inPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try process.run()
        if let input {
            inPipe.fileHandleForWriting.write(input)
            try? inPipe.fileHandleForWriting.close()
        }
        // Read both pipes concurrently so neither can fill up and stall the child.
        let errBox = Mutex(Data())
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            let data = err.fileHandleForReading.readDataToEndOfFile()
            errBox.withLock { $0 = data }
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.withLock { $0 }
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: outData, stderr: errData)
    }

    /// Runs and throws unless the exit status is 0.
    @discardableResult
    public static func check(_ argv: [String], input: Data? = nil, environment: [String: String]? = nil) throws -> Result {
        let result = try run(argv, input: input, environment: environment)
        guard result.status == 0 else {
            throw TestHostError.commandFailed(argv.joined(separator: " "), result.status, result.errorOutput)
        }
        return result
    }

    /// The absolute path of a program, searched in PATH plus the sbin directories.
    public static func which(_ name: String) throws -> String {
        if name.hasPrefix("/") { return name }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw TestHostError.missingPrerequisite("\(name) is not installed (not found in PATH or /usr/sbin)")
    }
}

public enum TestHostError: Error, CustomStringConvertible {
    case missingPrerequisite(String)
    case commandFailed(String, Int32, String)
    case hostDidNotStart(String, String)

    public var description: String {
        switch self {
        case .missingPrerequisite(let what):
            return "test hosts need \(what); run the README's install step (as root)"
        case .commandFailed(let cmd, let status, let err):
            return "`\(cmd)` exited \(status): \(err)"
        case .hostDidNotStart(let name, let log):
            return "test host \(name) did not start; sshd log:\n\(log)"
        }
    }
}
