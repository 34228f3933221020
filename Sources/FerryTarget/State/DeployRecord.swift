import Foundation

/// A deploy's record on the target (`TargetState.rebuildRecord`, or `syncRecord` for a
/// `--sync-only` deploy). Its first line is this base, encoded by ferry; the target's job, which
/// cannot encode JSON safely, appends an `Outcome` line of fixed shape when the deploy ends. A
/// record of one line is a deploy that started and has no result yet.
public struct DeployRecord: Codable, Equatable, Sendable {
    public struct SourceState: Codable, Equatable, Sendable {
        /// "sha256:…" of the tree's manifest (`/var/src/.ferry/NAME/manifest`: every path, type,
        /// mode, size, mtime, link target and file SHA-256).
        public var digest: String
        /// The tree's content without mtimes (`ManifestFile.contentDigest`): what a rebuild reads.
        public var content: String?
        public var commit: String?
        public var dirty: Bool?

        public init(digest: String, content: String? = nil, commit: String? = nil, dirty: Bool? = nil) {
            self.digest = digest
            self.content = content
            self.commit = commit
            self.dirty = dirty
        }
    }

    /// How a deploy ended: `finished RESULT EXIT FINISHED_AT SECONDS SYSTEM BEFORE PROFILE GENERATION
    /// GENERATION_PATH [REASON]` (the reason only for `reverted`), "-" for what is not known (a sync-only deploy has no exit status or
    /// system; a deploy that made no new generation has none). Records of earlier versions end
    /// after SYSTEM.
    public struct Outcome: Equatable, Sendable {
        public enum Result: String, Sendable {
            case success, failed
            case syncOnly = "sync-only"
            /// `ferry unlock --force` stopped the running rebuild.
            case stopped
            /// The job undid its switch (`reason` says why).
            case reverted
            /// Nothing a rebuild reads had changed since `sameAs`'s: none ran.
            case skipped
        }

        /// Why a job reverted: a word in the outcome line.
        public enum RevertReason: String, Sendable, CaseIterable {
            /// No fresh login confirmed the switch before the deadline.
            case noConfirmation = "no-confirmation"
            /// The activation ran past `activation_timeout` and was killed.
            case activationTimeout = "activation-timeout"
            case activationFailed = "activation-failed"
            /// Another activation held switch-to-configuration's lock for 60 s.
            case switchLockBusy = "switch-lock-busy"
            /// A health check failed after the activation (`revert_on_check_failure`).
            case checksFailed = "checks-failed"

            public var text: String {
                switch self {
                case .noConfirmation: return "no fresh login confirmed the switch in time"
                case .activationTimeout: return "the activation did not end in time and was killed"
                case .activationFailed: return "the activation failed"
                case .switchLockBusy: return "another activation held the switch lock for 60 s (this deploy's system was never activated)"
                case .checksFailed: return "a health check failed after the activation"
                }
            }
        }

        public var result: Result
        public var exitStatus: Int?
        public var finishedAt: String
        public var durationSeconds: Int?
        /// `readlink /run/current-system` once the rebuild had ended.
        public var currentSystem: String?
        /// What a revert returns to: `readlink -f /run/current-system` and of the system profile
        /// (`/nix/var/nix/profiles/system`) just before the rebuild.
        public var systemBefore: String?
        public var profileBefore: String?
        /// The profile generation the rebuild made (switch, boot) and its store path.
        public var generation: Int?
        public var generationPath: String?
        /// A reverted deploy's reason.
        public var reason: RevertReason?

        public init(result: Result, exitStatus: Int? = nil, finishedAt: String, durationSeconds: Int? = nil, currentSystem: String? = nil,
                    systemBefore: String? = nil, profileBefore: String? = nil, generation: Int? = nil, generationPath: String? = nil,
                    reason: RevertReason? = nil) {
            self.reason = reason
            self.result = result
            self.exitStatus = exitStatus
            self.finishedAt = finishedAt
            self.durationSeconds = durationSeconds
            self.currentSystem = currentSystem
            self.systemBefore = systemBefore
            self.profileBefore = profileBefore
            self.generation = generation
            self.generationPath = generationPath
        }

        public var line: String {
            (["finished", result.rawValue, exitStatus.map(String.init) ?? "-", finishedAt, durationSeconds.map(String.init) ?? "-",
              currentSystem ?? "-", systemBefore ?? "-", profileBefore ?? "-", generation.map(String.init) ?? "-", generationPath ?? "-"]
             + (reason.map { [$0.rawValue] } ?? []))
                .joined(separator: " ")
        }

        /// The line as the job writes it; nil unless every field has its shape.
        public init?(line: Substring) {
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            guard [6, 10, 11].contains(f.count), f[0] == "finished", let result = Result(rawValue: String(f[1])) else { return nil }
            func number(_ s: Substring) -> Int?? { s == "-" ? .some(nil) : (s.allSatisfy(\.isASCII) ? Int(s).map { .some($0) } : nil) }
            func path(_ s: Substring) -> String?? { s == "-" ? .some(nil) : (Self.isStorePath(s) ? .some(String(s)) : nil) }
            guard let exit = number(f[2]), let seconds = number(f[4]), Self.isTimestamp(f[3]), let system = path(f[5]) else { return nil }
            self.init(result: result, exitStatus: exit, finishedAt: String(f[3]), durationSeconds: seconds, currentSystem: system)
            guard f.count >= 10 else { return }
            guard let before = path(f[6]), let profile = path(f[7]), let generation = number(f[8]), generation.map({ $0 >= 0 }) ?? true,
                  let generationPath = path(f[9]) else { return nil }
            (systemBefore, profileBefore, self.generation, self.generationPath) = (before, profile, generation, generationPath)
            // A reverted outcome ends with its reason; no other has one.
            guard f.count == 11 || result != .reverted else { return nil }
            guard f.count == 11 else { return }
            guard result == .reverted, let reason = RevertReason(rawValue: String(f[10])) else { return nil }
            self.reason = reason
        }

        /// `YYYY-MM-DDTHH:MM:SSZ`, as `date -u +%Y-%m-%dT%H:%M:%SZ` prints it.
        static func isTimestamp(_ s: Substring) -> Bool {
            let b = Array(s.utf8)
            guard b.count == 20 else { return false }
            for (i, c) in b.enumerated() {
                switch i {
                case 4, 7: guard c == UInt8(ascii: "-") else { return false }
                case 10: guard c == UInt8(ascii: "T") else { return false }
                case 13, 16: guard c == UInt8(ascii: ":") else { return false }
                case 19: guard c == UInt8(ascii: "Z") else { return false }
                default: guard c >= 0x30 && c <= 0x39 else { return false }
                }
            }
            return true
        }

        /// `^/nix/store/[0-9a-z]{32}-[-+._?=0-9A-Za-z]+$`.
        static func isStorePath(_ s: Substring) -> Bool {
            let b = Array(s.utf8), prefix = Array("/nix/store/".utf8)
            guard b.count > prefix.count + 33, b.starts(with: prefix), b[prefix.count + 32] == UInt8(ascii: "-") else { return false }
            let hash = b[prefix.count..<prefix.count + 32], name = b[(prefix.count + 33)...]
            return hash.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) }
                && name.allSatisfy { ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A || ($0 >= 0x30 && $0 <= 0x39) || "-+._?=".utf8.contains($0) }
        }
    }

    public var id: String
    public var host: String
    public var startedAt: String
    /// user@machine of the operator.
    public var operator_: String
    public var ferryVersion: String
    public var operation: String
    public var sources: [String: SourceState]
    /// A rollback's: the deploy it returns to, and that deploy's system, which it activates.
    public var returnedTo: String?
    public var system: String?
    /// The host's secrets as this deploy found them, and which it wrote (never their values).
    public var secrets: [SecretEntry]?
    /// What the rebuild read on the host besides the synced trees, as it was when the lock was
    /// taken (see `TargetState.Holder.fixedInputs`): a later deploy with the same skips its rebuild.
    public var inputs: [String: String]?
    /// A skipped rebuild's: the deploy whose inputs were the same.
    public var sameAs: String?

    public struct SecretEntry: Codable, Equatable, Sendable {
        public var name: String
        /// unchanged, new, changed, changed-on-host, missing-on-host; nil: not known before the
        /// activation (its owner did not exist yet).
        public var change: String?
        /// "before" or "after" the activation; nil: not written.
        public var written: String?
        /// Units the job restarts for it.
        public var restart: [String]?

        public init(name: String, change: String?, written: String?, restart: [String]?) {
            self.name = name
            self.change = change
            self.written = written
            self.restart = restart
        }
    }
    /// Nil: started, no result yet (not part of the encoded base: the job appends it).
    public var outcome: Outcome?
    /// The health checks ferry ran after the activation (a third line, `CheckLine`, that ferry
    /// appends once the job has ended); nil: none ran.
    public var checks: [CheckResult]?

    /// One health check's result.
    public struct CheckResult: Codable, Equatable, Sendable {
        /// The check as fleet.toml gives it: its command line or URL.
        public var check: String
        public var passed: Bool
        public var tries: Int
        public var seconds: Double
        /// What the last try found ("exit status 1", "HTTP 500", "no answer within 5 s").
        public var detail: String

        public init(check: String, passed: Bool, tries: Int, seconds: Double, detail: String) {
            self.check = check
            self.passed = passed
            self.tries = tries
            self.seconds = seconds
            self.detail = detail
        }
    }

    /// The record's third line.
    package struct CheckLine: Codable, Equatable {
        package var checks: [CheckResult]

        package init(checks: [CheckResult]) { self.checks = checks }

        package var json: String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
        }
    }

    public init(id: String, host: String, startedAt: String, operator_: String, ferryVersion: String, operation: String,
                sources: [String: SourceState], returnedTo: String? = nil, system: String? = nil, outcome: Outcome? = nil) {
        self.id = id
        self.host = host
        self.startedAt = startedAt
        self.operator_ = operator_
        self.ferryVersion = ferryVersion
        self.operation = operation
        self.sources = sources
        self.returnedTo = returnedTo
        self.system = system
        self.outcome = outcome
    }

    enum CodingKeys: String, CodingKey {
        case id, host, startedAt = "started_at", operator_ = "operator", ferryVersion = "ferry_version", operation, sources
        case returnedTo = "returned_to", system, secrets, inputs, sameAs = "same_inputs_as"
    }

    /// The operation a rollback records.
    public static let rollbackOperation = "rollback"

    /// The system this deploy left to return to: what a switch or test activated, what a boot
    /// put in the profile, what a rollback activated. Nil: none (a build, a failed deploy).
    public var deployedSystem: String? {
        guard let outcome, outcome.result == .success else { return nil }
        if operation == Self.rollbackOperation { return system }
        switch operation {
        case "switch", "test": return outcome.currentSystem
        case "boot": return outcome.generationPath ?? outcome.profileBefore
        default: return nil
        }
    }

    /// The base: one line of JSON.
    package var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The record file's text: the base, and the outcome when there is one.
    public var fileText: String {
        json + "\n" + (outcome.map { $0.line + "\n" } ?? "") + (outcome != nil ? checks.map { CheckLine(checks: $0).json + "\n" } ?? "" : "")
    }

    /// What a record file says, or why it cannot be read.
    public enum Read: Equatable, Sendable {
        case none
        case record(DeployRecord)
        case unreadable(file: String, reason: String)

        public var record: DeployRecord? {
            if case .record(let r) = self { return r }
            return nil
        }
    }

    /// Reads a record file's bytes (empty: no file). The record before records were kept apart
    /// (`last-deploy.json`, JSON with the outcome's fields in it) is read too.
    public static func read(_ bytes: [UInt8], file: String) -> Read {
        guard !bytes.isEmpty else { return .none }
        guard bytes.last == 0x0A else { return .unreadable(file: file, reason: "it is cut short (no line end)") }
        let lines = bytes.dropLast().split(separator: 0x0A, omittingEmptySubsequences: false)
        guard lines.count <= 3 else { return .unreadable(file: file, reason: "it has more than three lines") }
        let decoder = JSONDecoder()
        guard var record = try? decoder.decode(DeployRecord.self, from: Data(lines[0])) else {
            return .unreadable(file: file, reason: "its first line is not a deploy's record")
        }
        if lines.count >= 2 {
            guard let outcome = Outcome(line: Substring(decoding: lines[1], as: UTF8.self)) else {
                return .unreadable(file: file, reason: "its second line is not a deploy's outcome")
            }
            record.outcome = outcome
        }
        if lines.count == 3 {
            guard let line = try? decoder.decode(CheckLine.self, from: Data(lines[2])) else {
                return .unreadable(file: file, reason: "its third line is not the deploy's health checks")
            }
            record.checks = line.checks
        } else if lines.count == 1, let legacy = try? decoder.decode(Legacy.self, from: Data(lines[0])), legacy.state == "finished" {
            guard let outcome = legacy.outcome else { return .unreadable(file: file, reason: "its result is not one ferry writes") }
            record.outcome = outcome
        }
        return .record(record)
    }

    /// The fields the JSON record of earlier versions carried beside the base.
    struct Legacy: Decodable {
        var state: String?
        var result: String?
        var exitStatus: Int?
        var finishedAt: String?
        var durationSeconds: Int?
        var currentSystem: String?

        enum CodingKeys: String, CodingKey {
            case state, result, exitStatus = "exit_status", finishedAt = "finished_at", durationSeconds = "duration_seconds", currentSystem = "current_system"
        }

        var outcome: Outcome? {
            guard let result = result.flatMap(Outcome.Result.init(rawValue:)), let finishedAt else { return nil }
            return Outcome(result: result, exitStatus: exitStatus, finishedAt: finishedAt, durationSeconds: durationSeconds,
                           currentSystem: currentSystem.flatMap { $0.isEmpty ? nil : $0 })
        }
    }

    /// `20261127T171502Z-3fa9`: sorts by time, unique enough for one host's deploys.
    public static func newID(now: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: now) + "-" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }

    package static func timestamp(_ date: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }
}
