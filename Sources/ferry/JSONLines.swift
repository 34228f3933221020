import FerryDeploy
import FerrySSH
import FerrySync
import FerryTarget
import Foundation

/// The JSON Lines every command's `--json` writes (schema: docs/events.schema.json): typed
/// records, one per line, each with its `type`; absent fields are left out.
enum JSONLines {
    /// One line of JSON for `value`, keys sorted, slashes as they are.
    static func line(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // The records hold strings, numbers and arrays of them: encoding cannot fail.
        guard let data = try? encoder.encode(value) else { preconditionFailure("unencodable JSON line") }
        return String(decoding: data, as: UTF8.self)
    }

    /// A step of one host's work.
    struct Event: Encodable {
        let type = "event"
        var host: String
        var phase: String?
        var state: String
        var detail: String?
        var seconds: Double?
        var waiting_seconds: Int?
        var source: String?
        var files_sent: Int?
        var bytes_sent: Int64?
        var deleted: Int?
        var line: String?
        var stream: String?
        var check: String?
        var tries: Int?
        var secret: String?
        var change: String?
        var written: String?
        var restarts: [String]?

        init(host: String, phase: String?, state: String) {
            self.host = host
            self.phase = phase
            self.state = state
        }

        init(host: String, _ event: DeployEvent) {
            switch event {
            case .phaseStarted(let phase, let detail):
                self.init(host: host, phase: phase.rawValue, state: "started")
                self.detail = detail
            case .phaseFinished(let phase, let seconds, let detail):
                self.init(host: host, phase: phase.rawValue, state: "finished")
                self.detail = detail
                self.seconds = seconds
            case .lockBusy(let holder, let waiting):
                self.init(host: host, phase: "lock", state: "busy")
                detail = holder.map { "\($0)" } ?? LockHolder.notFerrys
                waiting_seconds = waiting
            case .sourceSynced(let name, let r):
                self.init(host: host, phase: "sync", state: "synced")
                source = name
                files_sent = r.plan.sends.count
                bytes_sent = r.plan.bytesToSend
                deleted = r.plan.items.filter { $0.change == .deleted }.count
                seconds = r.seconds
            case .output(let bytes):
                self.init(host: host, phase: "rebuild", state: "output")
                line = String(decoding: bytes, as: UTF8.self)
            case .warning(let text):
                self.init(host: host, phase: nil, state: "warning")
                detail = text
            case .reconnecting(let reason):
                self.init(host: host, phase: "rebuild", state: "reconnecting")
                detail = reason
            case .secret(let report):
                self.init(host: host, phase: "secrets", state: report.written == nil ? "compared" : "written")
                secret = report.name
                change = report.change?.rawValue
                written = report.written?.rawValue
                restarts = report.restarts.isEmpty ? nil : report.restarts
            case .compared(let comparison):
                self.init(host: host, phase: "rebuild", state: comparison.same ? "skipped" : "inputs-changed")
                detail = comparison.line
            case .checked(let result):
                self.init(host: host, phase: "health", state: result.passed ? "passed" : "failed")
                check = result.check
                detail = result.detail
                tries = result.tries
                seconds = result.seconds
            }
        }
    }

    /// How one host ended.
    struct Result: Encodable {
        let type = "result"
        var host: String
        var result: String
        var phase: String?
        var error: String?
        var files_sent = 0
        var bytes_sent: Int64 = 0
        var seconds: Double
        var log: String?
        var deploy_id: String?
        var exit_status: Int32?
    }

    /// The run's end: counts by result and the exit status.
    struct Summary: Encodable {
        let type = "summary"
        var hosts: Int
        var results: [String: Int]
        var exit_status: Int32
        var failed_hosts: [String]

        /// `results` counts `names` (each with 0 when none) and any others found.
        init(hosts: Int, counting names: [String], found: [String], exitStatus: Int32, failedHosts: [String]) {
            self.hosts = hosts
            var counts = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
            for name in found { counts[name, default: 0] += 1 }
            results = counts
            exit_status = exitStatus
            failed_hosts = failedHosts
        }
    }

    /// An inventory host as `ferry hosts` resolves it.
    struct Host: Encodable {
        let type = "host"
        var name: String
        var address: String
        var port: Int
        var user: String
        var tags: [String]
        var domain: String
    }

    /// One host's diff (or why there is none).
    struct Diff: Encodable {
        let type = "diff"
        var host: String
        var changes: Int?
        var entries: [Entry]?
        var config_diff: String?
        var rebuild_command: String?
        var notes: [String]?
        var error: String?
        /// Secret name → unchanged, new, changed, changed-on-host, missing-on-host, or owner-missing.
        var secrets: [String: String]?

        struct Entry: Encodable {
            var source: String
            var kind: String
            var path: String?
            var path_b64: String?
            var old: Meta?
            var new: Meta?
        }

        struct Meta: Encodable {
            var type: String
            var size: Int64
            var mode: String
            var mtime: Int64
            var mtime_nsec: Int64
            var target: String?
            var target_b64: String?

            init(_ e: FileEntry) {
                type = "\(e.kind)"
                size = e.size
                mode = String(format: "0%o", e.mode)
                mtime = e.mtime.seconds
                mtime_nsec = e.mtime.nanoseconds
                if let target = e.linkTarget {
                    if let text = String(bytes: target, encoding: .utf8) { self.target = text } else { target_b64 = Data(target).base64EncodedString() }
                }
            }
        }

        init(host: String, error: String) {
            self.host = host
            self.error = error
        }

        init(_ diff: HostDiff, notes: [String]) {
            host = diff.host
            changes = diff.entries.count
            entries = diff.entries.map { e in
                var entry = Entry(source: e.source, kind: Self.kind(e.kind))
                if let text = String(bytes: e.path, encoding: .utf8) { entry.path = text } else { entry.path_b64 = Data(e.path).base64EncodedString() }
                entry.old = e.old.map(Meta.init)
                entry.new = e.new.map(Meta.init)
                return entry
            }
            config_diff = diff.configDiff
            rebuild_command = diff.rebuildCommand
            secrets = diff.secrets.isEmpty ? nil : Dictionary(uniqueKeysWithValues: diff.secrets.map { ($0.name, $0.change?.rawValue ?? "owner-missing") })
            self.notes = notes.isEmpty ? nil : notes
        }

        static func kind(_ kind: HostDiff.Kind) -> String {
            switch kind {
            case .added: return "added"
            case .changed: return "changed"
            case .deleted: return "deleted"
            case .mtimeOnly: return "mtime"
            case .type: return "type"
            case .mode: return "mode"
            }
        }
    }
}
