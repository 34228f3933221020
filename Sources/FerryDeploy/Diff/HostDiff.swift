import FerrySSH
import FerrySync
import FerryTarget
import Foundation

/// What a deploy would change on one host, found with the deploy's own read-only steps (scan,
/// list, plan, verify by hash — a dry run of the same sync), so diff and deploy cannot disagree.
public struct HostDiff: Sendable {
    public enum Kind: String, Sendable {
        case added = "+", changed = "~", deleted = "-"
        /// Same size and contents, another mtime (a fresh git checkout resets every mtime).
        case mtimeOnly = "m"
        /// Another type, or a symlink's target.
        case type = "t"
        /// Permission bits only.
        case mode = "p"
    }

    public struct Entry: Sendable {
        public var source: String
        public var path: [UInt8]
        public var kind: Kind
        /// The host's entry (nil: added) and the new one (nil: deleted).
        public var old: FileEntry?
        public var new: FileEntry?
    }

    public var host: String
    public var entries: [Entry]
    /// `diff -u` of the rendered configuration's text files (host's → new), empty when equal.
    public var configDiff: String
    /// With `patch`: `diff -u` of the tree sources' added, changed and deleted files, the host's
    /// copies fetched (binary files named as such), at most `maxPatchBytes` of it.
    public var patch = ""
    /// Files whose patch was left out by the cap.
    public var patchOmitted: [Entry] = []
    /// What a deploy would run on the host.
    public var rebuildCommand: String
    /// `.env` files a source would push (when the diff scanned the sources itself).
    public var warnings: [String] = []
    /// Each of the host's secrets and how the host's copy compares (never its value); nil change:
    /// its owner does not exist yet, so the activation decides.
    public var secrets: [(name: String, change: SecretChange?)] = []

    public var isEmpty: Bool { entries.isEmpty && configDiff.isEmpty && secrets.allSatisfy { $0.change == .unchanged } }

    /// Classifies a dry run's plan: created where the host has the path is a type change, a file
    /// whose contents matched (hashed on both ends) is mtime- or mode-only.
    public static func classify(_ plan: SyncPlan, destination: Manifest = Manifest(), source: String) -> [Entry] {
        let deleted = Set(plan.items.filter { $0.change == .deleted }.map(\.entry.path))
        let created = Set(plan.items.filter { $0.change == .created }.map(\.entry.path))
        let sameContents = Set(plan.metadataOnly.map(\.path))
        let sent = Set(plan.sends.map(\.path))
        var entries: [Entry] = []
        for item in plan.items {
            let path = item.entry.path
            switch item.change {
            case .created:
                // rsync itemizes a replaced entry as created (its deletion is not always listed).
                let replaced = deleted.contains(path) || destination[path] != nil
                entries.append(Entry(source: source, path: path, kind: replaced ? .type : .added, old: replaced ? destination[path] : nil, new: item.entry))
            case .deleted where created.contains(path):
                continue
            case .deleted:
                entries.append(Entry(source: source, path: path, kind: .deleted, old: destination[path] ?? item.entry, new: nil))
            case .updated(let content, let size, _, let permissions, _):
                let kind: Kind
                if item.entry.kind == .symlink {
                    // A symlink has no mode of its own: its target, or only its mtime.
                    kind = content ? .type : .mtimeOnly
                } else if item.entry.kind == .file && !sameContents.contains(path) && (content || size || sent.contains(path)) {
                    kind = .changed
                } else {
                    kind = permissions ? .mode : .mtimeOnly
                }
                entries.append(Entry(source: source, path: path, kind: kind, old: destination[path], new: item.entry))
            }
        }
        return entries.sorted { Manifest.treeOrder($0.path, $1.path) }
    }

    /// The diff for `deployment`'s host over `shell` (`only`: one source; `patch`: also the tree
    /// files' unified diffs, up to `maxPatchBytes`): nothing on the host changes.
    public static func compute(_ deployment: Deployment, over shell: any RemoteShell, only: String? = nil,
                               patch: Bool = false, maxPatchBytes: Int = 1 << 20) throws -> HostDiff {
        let prepared = try deployment.check()
        var diff = HostDiff(host: deployment.host.name, entries: [], configDiff: "", rebuildCommand: try deployment.rebuildCommandLine())
        var budget = maxPatchBytes
        for source in deployment.fleet.sources where only == nil || source.name == only {
            let (local, scanned, generated) = prepared.tree(of: source, scans: deployment.options.scans)
            var options = Deployment.syncOptions(for: source, deployment.options)
            options.dryRun = true
            options.generated = generated
            let destination = deployment.options.root + "/" + source.name
            let result = try Syncer.sync(from: local, to: destination, over: shell, options: options, scanned: scanned)
            if scanned == nil && !source.rendered {
                // Not checked before connecting (nothing is sent): what a deploy would refuse.
                do {
                    diff.warnings += try SourceSecrets.check(source, root: local, manifest: result.scannedManifest, fleet: deployment.fleet,
                                                             cache: deployment.options.keyCheckCache)
                } catch let error as InventoryError {
                    throw DeployError.localCheck("\(error)")
                }
            }
            let found = classify(result.plan, destination: result.destinationManifest, source: source.name)
            diff.entries += found
            let texts = found.filter { [.added, .changed, .deleted, .type].contains($0.kind) && ($0.old?.kind == .file || $0.new?.kind == .file) }
            if source.rendered {
                diff.configDiff = try unifiedDiff(texts, local: local, generated: generated, remote: destination, shell: shell).text
            } else if patch {
                let (text, omitted) = try unifiedDiff(texts, local: local, remote: destination, shell: shell, budget: &budget)
                diff.patch += text
                diff.patchOmitted += omitted
            }
        }
        diff.secrets = try compareSecrets(deployment, over: shell)
        return diff
    }

    /// The host's secrets against the operator's values, as a deploy compares them, making
    /// nothing on the host (no key yet: every one is new).
    static func compareSecrets(_ deployment: Deployment, over shell: any RemoteShell) throws -> [(name: String, change: SecretChange?)] {
        let secrets = deployment.secrets
        guard !secrets.isEmpty else { return [] }
        let answer = try HostSecrets.query(secrets, session: shell, state: TargetState(root: deployment.options.root), create: false)
        return try zip(secrets, answer.secrets).map { secret, found in
            guard let key = answer.key else { return (secret.name, .new) }
            guard found.ownerExists, let group = found.group else { return (secret.name, found.state == nil ? .new : nil) }
            let digest = try deployment.options.secrets.value(secret).digest(key: key, dest: secret.dest, owner: secret.owner, group: group, mode: secret.modeText)
            return (secret.name, HostSecrets.change(found, digest: digest))
        }
    }

    /// `diff -u --label a/PATH --label b/PATH` of each entry's file (the host's copy fetched;
    /// GNU diff names binary files instead), while `budget` bytes last; the rest are returned.
    static func unifiedDiff(_ changed: [Entry], local: String, generated: [[UInt8]: [UInt8]] = [:], remote: String, shell: any RemoteShell,
                            budget: inout Int) throws -> (text: String, omitted: [Entry]) {
        guard !changed.isEmpty else { return ("", []) }
        let work = NSTemporaryDirectory() + "ferry-diff-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        var text = ""
        var omitted: [Entry] = []
        for (n, entry) in changed.enumerated() {
            let size = max(entry.old?.kind == .file ? entry.old!.size : 0, entry.new?.kind == .file ? entry.new!.size : 0)
            guard budget > 0, size <= budget else { omitted.append(entry); continue }
            let path = entry.path
            var oldPath = "/dev/null"
            if entry.old?.kind == .file {
                let (status, bytes, _) = try shell.run(TargetState.TreeFile.command(Array(remote.utf8) + [UInt8(ascii: "/")] + path))
                if status == .exited(0) {
                    oldPath = work + "/old-\(n)"
                    _ = FileManager.default.createFile(atPath: oldPath, contents: Data(bytes))
                }
            }
            var newPath = entry.new?.kind == .file ? local + "/" + String(decoding: path, as: UTF8.self) : "/dev/null"
            if entry.new?.kind == .file, let contents = generated[path] {
                newPath = work + "/new-\(n)"
                _ = FileManager.default.createFile(atPath: newPath, contents: Data(contents))
            }
            let label = DisplayText.escape(path)
            let out = try run(["diff", "-u", "--label", "a/" + label, "--label", "b/" + label, oldPath, newPath])
            budget -= out.utf8.count
            text += out
        }
        return (text, omitted)
    }

    static func unifiedDiff(_ changed: [Entry], local: String, generated: [[UInt8]: [UInt8]] = [:], remote: String,
                            shell: any RemoteShell) throws -> (text: String, omitted: [Entry]) {
        var unlimited = Int.max
        return try unifiedDiff(changed, local: local, generated: generated, remote: remote, shell: shell, budget: &unlimited)
    }

    static func run(_ argv: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus <= 1 else { throw DeployError.local("diff failed on \(argv.suffix(2).joined(separator: " ")) (is diffutils installed?)") }
        return String(decoding: data, as: UTF8.self)
    }
}
