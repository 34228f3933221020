import FerrySync
import Foundation

/// What `/var/src/.ferry/last-deploy.json` says about a deploy before its result is known; the
/// target's job appends `state`, `result`, `exit_status`, `finished_at`, `duration_seconds` and
/// `current_system`.
public struct DeployRecord: Codable, Equatable, Sendable {
    public struct SourceState: Codable, Equatable, Sendable {
        /// "sha256:…" of the tree's manifest (`/var/src/.ferry/NAME/manifest`: every path, type,
        /// mode, size, mtime, link target and file SHA-256).
        public var digest: String
        public var commit: String?
        public var dirty: Bool?
    }

    public var id: String
    public var host: String
    public var startedAt: String
    /// user@machine of the operator.
    public var operator_: String
    public var ferryVersion: String
    public var operation: String
    public var sources: [String: SourceState]

    enum CodingKeys: String, CodingKey {
        case id, host, startedAt = "started_at", operator_ = "operator", ferryVersion = "ferry_version", operation, sources
    }

    /// One line, ending in "}" (the target's scripts append fields before it).
    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The checkout's commit and whether it has changes, when it is a git checkout and git is here.
    static func gitState(of path: String) -> (commit: String, dirty: Bool)? {
        func git(_ args: [String]) -> String? {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["git", "-C", path] + args
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            guard (try? process.run()) != nil else { return nil }
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
        guard FileManager.default.fileExists(atPath: path + "/.git"),
              let head = git(["rev-parse", "HEAD"])?.trimmingCharacters(in: .whitespacesAndNewlines), !head.isEmpty,
              let status = git(["status", "--porcelain"]) else { return nil }
        return (head, !status.isEmpty)
    }

    /// `20261127T171502Z-3fa9`: sorts by time, unique enough for one host's deploys.
    static func newID(now: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: now) + "-" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }

    static func timestamp(_ date: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }
}
