import ArgumentParser
import FerryDeploy
import FerrySSH
import FerrySync
import FerryTarget
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a deploy would change on each host; change nothing.",
        discussion: """
        Uses the deploy's own read-only steps (scan, list, plan, verify by hash), so diff and deploy \
        agree: per source, + added, ~ changed, - deleted, m mtime only (same size and contents), \
        t type or symlink target, p mode; then the rendered configuration as diff -u prints it. \
        Takes no lock and writes nothing on the host (unlike --op dry-activate, which syncs and \
        builds there); a deploy in progress is noted. Exit status: 1 when a host could not be \
        diffed (the others are still shown; 255 when it was the only one and could not be reached \
        or logged in to); with --exit-code, 0 nothing would change, 1 something would (a failure \
        wins: its host is named on stderr).
        """
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("Host names, globs or @tags (default: every host).", valueName: "TARGETS"))
    var targets: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these hosts (repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    @OptionGroup var format: DiffFormat

    @Flag(help: "Exit 1 when something would change, 0 when nothing would.")
    var exitCode = false

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var sudo: SudoOptions

    func run() throws {
        let fleet = try inventory.load()
        let hosts = try InventoryOption.select(fleet, targets, skip: skip, command: "diff")
        let changed = try format.run(fleet: fleet, hosts: hosts, connection: connection, sudo: sudo, command: "diff") { _ in [] }
        if exitCode && changed { throw Failure(code: 1, message: "") }
    }
}

/// The diff's formats and the options shared by `ferry diff` and `ferry deploy --dry-run`.
struct DiffFormat: ParsableArguments {
    @Option(name: .customLong("source"), help: ArgumentHelp("Only this source; --name-only paths are then relative to its root.", valueName: "NAME"))
    var source: String?

    @Flag(help: "One SOURCE/PATH per line.")
    var nameOnly = false

    @Flag(help: "Counts and bytes to send per top-level directory of each source, and in total.")
    var stat = false

    @Flag(help: "Also the unified diffs of changed files (the host's copies fetched; binary files named).")
    var patch = false

    @Option(name: .customLong("max-patch-bytes"), help: ArgumentHelp("Cap on --patch output per host (files beyond it are named).", valueName: "BYTES"))
    var maxPatchBytes = 1 << 20

    @Flag(name: .customShort("z"), help: "With the list or --name-only: raw path bytes, each entry ended by NUL (several hosts: HOST and a tab first).")
    var nulTerminated = false

    @Flag(help: "JSON Lines: one \"diff\" object per host, then a summary (schema: docs/events.schema.json).")
    var json = false

    @Flag(help: "Compare file contents (SHA-256 on both ends), not size and mtime.")
    var checksum = false

    @Flag(help: "Show what taking over a /var/src/NAME that ferry never synced would change (deploy --force would do it).")
    var force = false

    @OptionGroup var jobs: JobsOption

    func validate() throws {
        guard maxPatchBytes >= 0 else { throw ValidationError("--max-patch-bytes must be 0 or more") }
        if json && (nameOnly || stat || patch || nulTerminated) { throw ValidationError("--json is a format of its own: drop --name-only, --stat, --patch and -z") }
        if nameOnly && (stat || patch) { throw ValidationError("--name-only lists paths only: drop --stat and --patch") }
        if nulTerminated && (stat || patch) { throw ValidationError("-z goes with the list or --name-only") }
    }

    /// One host's outcome, printed in inventory order.
    struct HostResult {
        var diff: HostDiff?
        var note: String?
        var error: (any Error)?
    }

    /// Diffs `hosts`, `jobs` at a time, and prints them in inventory order; `extra` adds lines
    /// after each host's diff (deploy --dry-run's command line). Returns whether anything would
    /// change; throws exit 2 when a host could not be diffed.
    func run(fleet: Fleet, hosts: [Fleet.Host], connection: ConnectionOptions, sudo sudoOptions: SudoOptions,
             options base: Deployment.Options? = nil, command: String, extra: (HostDiff) -> [String]) throws -> Bool {
        if let source {
            guard fleet.sources.contains(where: { $0.name == source }) else {
                throw Failure.usage("no source named '\(source)' (sources: \(fleet.sources.map(\.name).joined(separator: ", ")))", command: command)
            }
        }
        let connections = try connection.connections(for: hosts, in: fleet)
        let access = Mutex<SudoAccess?>(nil)
        var options = base ?? Deployment.Options { _ in throw DeployError.local("unused") }
        options.open = { h in try ConnectionOptions.shell(for: h, connections[h.name]!, sudo: access.withLock { $0! }) }
        options.checksum = checksum
        options.force = force
        options.listingCache = Ferry.listingCache
        options.keyCheckCache = Ferry.keyCheckCache
        // The shared trees are scanned once for several hosts, before connecting, as a deploy
        // does; for one, the scan overlaps the host's listing.
        let prepared = FleetDeployment(fleet: fleet, hosts: hosts, options: FleetDeployment.Options(deploy: options))
        do {
            try prepared.prepare(scanning: hosts.count > 1, manifests: false)
        } catch DeployError.localCheck(let text) {
            throw Failure(code: 2, message: text)
        }
        for warning in prepared.warnings { printError("ferry: warning: \(warning)") }
        let sudoAccess = try sudoOptions.access(for: Array(connections.values))
        access.withLock { $0 = sudoAccess }
        let deployments = prepared.deployments

        let (source, patch, maxPatchBytes) = (self.source, self.patch, self.maxPatchBytes)
        let all = HostRunner(jobs: jobs.value).run(deployments.count) { i in
            let d = deployments[i]
            var result = HostResult()
            do {
                let session = try d.options.open(d.host)
                defer { session.close() }
                switch try HostStatus.lock(shell: session) {
                case .free: break
                case .held(let who), .rebuildRunning(let who):
                    result.note = "a deploy is in progress (\(who.map { "\($0)" } ?? "the lock is held")); this diff is against the tree as it is now"
                case .heldByOther:
                    result.note = "the deploy lock is held by \(LockHolder.notFerrys); this diff is against the tree as it is now"
                }
                result.diff = try HostDiff.compute(d, over: session, only: source, patch: patch, maxPatchBytes: maxPatchBytes)
            } catch {
                result.error = error
            }
            return result
        }.map { $0! }

        let several = hosts.count > 1
        let out = DiffOutput(format: self, sources: fleet.sources.map(\.name), several: several)
        for (d, r) in zip(deployments, all) {
            if let note = r.note { printError("ferry: \(d.host.name): note: \(note)") }
            for warning in r.diff?.warnings ?? [] { printError("ferry: warning: \(warning)") }
            if let error = r.error {
                printError("ferry: \(d.host.name): \(error)")
                if json { out.json(["type": "diff", "host": d.host.name, "error": "\(error)"]) }
                continue
            }
            out.show(r.diff!, extra: extra(r.diff!))
        }
        let failed = zip(deployments, all).filter { $0.1.error != nil }.map(\.0.host.name)
        let code = ExitStatus.forFailures(all.filter { $0.error != nil }.map(\.error), selected: hosts.count)
        let changed = all.contains { $0.diff.map { !$0.isEmpty } ?? false }
        if json {
            let counts = ["changed": all.filter { $0.diff.map { !$0.isEmpty } ?? false }.count,
                          "unchanged": all.filter { $0.diff?.isEmpty ?? false }.count, "failed": failed.count]
            out.json(["type": "summary", "hosts": hosts.count, "results": counts, "exit_status": code ?? 0, "failed_hosts": failed])
        }
        if let code { throw Failure(code: code, message: "") }
        return changed
    }
}

/// Prints diffs in the chosen format.
struct DiffOutput {
    let format: DiffFormat
    let sources: [String]
    let several: Bool

    func json(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        print(String(decoding: data, as: UTF8.self))
    }

    func show(_ diff: HostDiff, extra: [String]) {
        let host = diff.host
        func say(_ line: String) { print((several ? "\(host) | " : "") + DisplayText.escape(line)) }
        let shown = sources.filter { format.source == nil || $0 == format.source }
        if format.json {
            json(Self.object(diff, extra: extra))
            return
        }
        if format.nulTerminated {
            var bytes: [UInt8] = []
            for e in diff.entries {
                if several { bytes += Array(host.utf8) + [0x09] }
                if !format.nameOnly { bytes += Array(e.kind.rawValue.utf8) + [0x20] }
                // The source's root is "." within the source, as the list and rsync name it.
                bytes += (format.source != nil ? (e.path.isEmpty ? [0x2E] : e.path) : Array(e.source.utf8) + (e.path.isEmpty ? [] : [0x2F] + e.path)) + [0]
            }
            bytes.withUnsafeBytes { writeAll(1, $0) }
            return
        }
        if format.nameOnly {
            for e in diff.entries { say(format.source != nil ? Self.name(e.path) : "\(e.source)/\(Self.name(e.path))") }
            return
        }
        if format.stat {
            for line in Self.stat(diff.entries, sources: shown) { say(line) }
        } else {
            for name in shown {
                let entries = diff.entries.filter { $0.source == name }
                guard !entries.isEmpty else { say("\(name): no changes"); continue }
                say("\(name): \(Self.counts(entries))")
                for e in entries { say("  \(e.kind.rawValue) \(Self.name(e.path))") }
            }
        }
        for line in Self.lines(diff.configDiff) { say(line) }
        if format.patch {
            for line in Self.lines(diff.patch) { say(line) }
            if !diff.patchOmitted.isEmpty {
                say("(--max-patch-bytes \(format.maxPatchBytes): no patch for \(diff.patchOmitted.count) more: " +
                    diff.patchOmitted.prefix(5).map { "\($0.source)/\(Self.name($0.path))" }.joined(separator: ", ") + (diff.patchOmitted.count > 5 ? ", …)" : ")"))
            }
        }
        for line in extra { say(line) }
        if !format.stat { say("total: \(diff.entries.count) \(diff.entries.count == 1 ? "change" : "changes")") }
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    /// A path as rsync's --itemize shows it (`\#ooo` escapes); the tree's root is ".".
    static func name(_ path: [UInt8]) -> String { path.isEmpty ? "." : DisplayText.escape(path) }

    static let kinds: [HostDiff.Kind] = [.added, .changed, .deleted, .mtimeOnly, .type, .mode]

    static func word(_ kind: HostDiff.Kind) -> String {
        switch kind {
        case .added: return "added"
        case .changed: return "changed"
        case .deleted: return "deleted"
        case .mtimeOnly: return "mtime only"
        case .type: return "type or target changed"
        case .mode: return "mode changed"
        }
    }

    static func counts(_ entries: [HostDiff.Entry]) -> String {
        kinds.compactMap { k -> String? in
            let n = entries.filter { $0.kind == k }.count
            return n == 0 ? nil : "\(n) \(word(k))"
        }.joined(separator: ", ")
    }

    /// Bytes a deploy would send for an entry: an added, changed or replaced file's new size.
    static func bytes(_ e: HostDiff.Entry) -> Int64 {
        guard [.added, .changed, .type].contains(e.kind), let new = e.new, new.kind == .file else { return 0 }
        return new.size
    }

    /// `git diff --stat`-like: per SOURCE/top-level entry, the count by kind and the bytes to send.
    static func stat(_ entries: [HostDiff.Entry], sources: [String]) -> [String] {
        var groups: [(key: String, entries: [HostDiff.Entry])] = []
        for source in sources {
            var order: [[UInt8]] = []
            var byTop: [[UInt8]: [HostDiff.Entry]] = [:]
            for e in entries where e.source == source {
                let top = Array(e.path.split(separator: UInt8(ascii: "/"), maxSplits: 1, omittingEmptySubsequences: false).first ?? [])
                if byTop[top] == nil { order.append(top) }
                byTop[top, default: []].append(e)
            }
            for top in order { groups.append((source + (top.isEmpty ? "" : "/" + name(top)), byTop[top]!)) }
        }
        let width = groups.map(\.key.count).max() ?? 0
        var lines = groups.map { g in
            "\(g.key.padding(toLength: width, withPad: " ", startingAt: 0)) | \(g.entries.count) (\(counts(g.entries))), \(human(g.entries.reduce(0) { $0 + bytes($1) }))"
        }
        let total = entries.filter { e in sources.contains(e.source) }
        lines.append("\(total.count) \(total.count == 1 ? "change" : "changes")" + (total.isEmpty ? "" : " (\(counts(total)))") +
                     ", \(human(total.reduce(0) { $0 + bytes($1) })) to send")
        return lines
    }

    static func human(_ bytes: Int64) -> String {
        if bytes < 1024 { return "\(bytes) B" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return String(format: "%.1f %@", value, units[unit])
    }

    static func object(_ diff: HostDiff, extra: [String]) -> [String: Any] {
        func meta(_ e: FileEntry?) -> Any? {
            guard let e else { return nil }
            var o: [String: Any] = ["type": "\(e.kind)", "size": e.size, "mode": String(format: "0%o", e.mode),
                                    "mtime": e.mtime.seconds, "mtime_nsec": e.mtime.nanoseconds]
            if let target = e.linkTarget {
                if let text = String(bytes: target, encoding: .utf8) { o["target"] = text } else { o["target_b64"] = Data(target).base64EncodedString() }
            }
            return o
        }
        let entries: [[String: Any]] = diff.entries.map { e in
            var o: [String: Any] = ["source": e.source, "kind": jsonKind(e.kind)]
            if let text = String(bytes: e.path, encoding: .utf8) { o["path"] = text } else { o["path_b64"] = Data(e.path).base64EncodedString() }
            if let old = meta(e.old) { o["old"] = old }
            if let new = meta(e.new) { o["new"] = new }
            return o
        }
        var o: [String: Any] = ["type": "diff", "host": diff.host, "changes": diff.entries.count, "entries": entries,
                                "config_diff": diff.configDiff, "rebuild_command": diff.rebuildCommand]
        if !extra.isEmpty { o["notes"] = extra }
        return o
    }

    static func jsonKind(_ kind: HostDiff.Kind) -> String {
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
