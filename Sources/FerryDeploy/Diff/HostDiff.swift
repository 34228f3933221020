import FerrySSH
import FerrySync
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
    }

    public var host: String
    public var entries: [Entry]
    /// `diff -u` of the rendered configuration's text files (host's → new), empty when equal.
    public var configDiff: String

    public var isEmpty: Bool { entries.isEmpty && configDiff.isEmpty }

    /// Classifies a dry run's plan: created over deleted is a type change, a file whose contents
    /// matched (hashed on both ends) is mtime- or mode-only.
    public static func classify(_ plan: SyncPlan, source: String) -> [Entry] {
        let deleted = Set(plan.items.filter { $0.change == .deleted }.map(\.entry.path))
        let created = Set(plan.items.filter { $0.change == .created }.map(\.entry.path))
        let sameContents = Set(plan.metadataOnly.map(\.path))
        let sent = Set(plan.sends.map(\.path))
        var entries: [Entry] = []
        for item in plan.items {
            let path = item.entry.path
            switch item.change {
            case .created:
                entries.append(Entry(source: source, path: path, kind: deleted.contains(path) ? .type : .added))
            case .deleted where created.contains(path):
                continue
            case .deleted:
                entries.append(Entry(source: source, path: path, kind: .deleted))
            case .updated(let content, let size, _, let permissions, _):
                let kind: Kind
                if item.entry.kind == .symlink {
                    kind = .type
                } else if item.entry.kind == .file && !sameContents.contains(path) && (content || size || sent.contains(path)) {
                    kind = .changed
                } else {
                    kind = permissions ? .mode : .mtimeOnly
                }
                entries.append(Entry(source: source, path: path, kind: kind))
            }
        }
        return entries.sorted { Manifest.treeOrder($0.path, $1.path) }
    }

    /// The diff for `deployment`'s host over `shell` (`only`: one source): nothing on the host changes.
    public static func compute(_ deployment: Deployment, over shell: any RemoteShell, only: String? = nil) throws -> HostDiff {
        let prepared = try deployment.check()
        var entries: [Entry] = []
        var configDiff = ""
        for source in deployment.fleet.sources where only == nil || source.name == only {
            let local = source.rendered ? prepared.renderedTree : source.path
            var options = Deployment.syncOptions(for: source, deployment.options)
            options.dryRun = true
            let destination = deployment.options.root + "/" + source.name
            let result = try Syncer.sync(from: local, to: destination, over: shell, options: options,
                                         scanned: source.rendered ? nil : deployment.options.scans[source.name])
            let found = classify(result.plan, source: source.name)
            entries += found
            if source.rendered {
                configDiff = try unifiedDiff(found.filter { $0.kind == .added || $0.kind == .changed || $0.kind == .deleted || $0.kind == .type },
                                             local: local, remote: destination, shell: shell)
            }
        }
        return HostDiff(host: deployment.host.name, entries: entries, configDiff: configDiff)
    }

    /// `diff -u --label a/PATH --label b/PATH` of each changed text file (the host's copy fetched).
    static func unifiedDiff(_ changed: [Entry], local: String, remote: String, shell: any RemoteShell) throws -> String {
        guard !changed.isEmpty else { return "" }
        let work = NSTemporaryDirectory() + "ferry-diff-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        var text = ""
        for (n, entry) in changed.enumerated() {
            let path = String(decoding: entry.path, as: UTF8.self)
            var isDirectory: ObjCBool = false
            let newPath = local + "/" + path
            let newExists = FileManager.default.fileExists(atPath: newPath, isDirectory: &isDirectory)
            if isDirectory.boolValue { continue }
            var oldPath = "/dev/null"
            if entry.kind != .added {
                let (status, bytes, _) = try shell.run(.script(#"[ -f "$1" ] && [ ! -L "$1" ] && cat -- "$1""#, arguments: [Array((remote + "/" + path).utf8)]))
                if status == .exited(0) {
                    oldPath = work + "/old-\(n)"
                    _ = FileManager.default.createFile(atPath: oldPath, contents: Data(bytes))
                }
            }
            let r = try run(["diff", "-u", "--label", "a/" + path, "--label", "b/" + path, oldPath, newExists ? newPath : "/dev/null"])
            text += r
        }
        return text
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
