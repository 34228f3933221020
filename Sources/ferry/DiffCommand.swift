import ArgumentParser
import FerryDeploy
import FerrySSH
import FerrySync
import FerryTarget
import Foundation
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
        let changed = try Self.show(fleet: fleet, hosts: hosts, format: format, connection: connection, sudo: sudo, command: "diff") { _ in [] }
        if exitCode && changed { throw Failure(code: 1, message: "") }
    }

    /// Diffs `hosts` (`FleetDiff`) and prints them in inventory order; `extra` adds lines after
    /// each host's diff (deploy --dry-run's command line). Returns whether anything would change;
    /// throws the exit status when a host could not be diffed.
    static func show(fleet: Fleet, hosts: [Fleet.Host], format: DiffFormat, connection: ConnectionOptions, sudo: SudoOptions,
                     operation: Fleet.Operation? = nil, rebuildArguments: [String] = [], command: String,
                     extra: (HostDiff) -> [String]) throws -> Bool {
        // Read-only from the start (the local scan included): an interrupt exits at once.
        SignalRelay.cut()
        if let source = format.source {
            guard fleet.sources.contains(where: { $0.name == source }) else {
                throw Failure.usage("no source named '\(source)' (sources: \(fleet.sources.map(\.name).joined(separator: ", ")))", command: command)
            }
        }
        let connector = try connection.connector(for: hosts, in: fleet)
        var options = Ferry.deployOptions(connector)
        options.operation = operation
        options.extraArguments = rebuildArguments
        options.checksum = format.checksum
        options.force = format.force
        var diffOptions = FleetDiff.Options()
        diffOptions.source = format.source
        diffOptions.patch = format.patch
        diffOptions.maxPatchBytes = format.maxPatchBytes
        let diff: FleetDiff
        do {
            diff = try FleetDiff(fleet: fleet, hosts: hosts, deploy: options, options: diffOptions)
        } catch DeployError.localCheck(let text) {
            throw Failure(code: ExitStatus.usage, message: text)
        }
        for warning in diff.warnings { printError("ferry: warning: \(warning)") }
        try sudo.grant(connector)
        let all = HostRunner(jobs: format.jobs.value).run(diff, hosts: hosts.count).map { $0! }

        let out = DiffOutput(format: format, sources: fleet.sources.map(\.name), several: hosts.count > 1)
        for (host, r) in zip(hosts, all) {
            if let note = r.note { printError("ferry: \(host.name): note: \(note)") }
            for warning in r.diff?.warnings ?? [] { printError("ferry: warning: \(warning)") }
            if let error = r.error {
                printError("ferry: \(host.name): \(error)")
                if format.json { print(JSONLines.line(JSONLines.Diff(host: host.name, error: "\(error)"))) }
                continue
            }
            out.show(r.diff!, extra: extra(r.diff!))
        }
        let failed = zip(hosts, all).filter { $0.1.error != nil }.map(\.0.name)
        let code = ExitStatus.forFailures(all.compactMap(\.error), selected: hosts.count)
        let changed = all.contains { $0.diff.map { !$0.isEmpty } ?? false }
        if format.json {
            let words = all.map { $0.error != nil ? "failed" : ($0.diff!.isEmpty ? "unchanged" : "changed") }
            print(JSONLines.line(JSONLines.Summary(hosts: hosts.count, counting: ["changed", "unchanged", "failed"], found: words,
                                                   exitStatus: code ?? 0, failedHosts: failed)))
        }
        if let code { throw Failure(code: code, message: "") }
        return changed
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
}

/// Prints diffs in the chosen format.
struct DiffOutput {
    let format: DiffFormat
    let sources: [String]
    let several: Bool

    func show(_ diff: HostDiff, extra: [String]) {
        let host = diff.host
        func say(_ line: String) { print((several ? "\(host) | " : "") + DisplayText.escape(line)) }
        let shown = sources.filter { format.source == nil || $0 == format.source }
        if format.json {
            print(JSONLines.line(JSONLines.Diff(diff, notes: extra)))
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
        for (name, change) in diff.secrets { say("secret \(name): " + (change?.text ?? "its owner does not exist yet (written after the activation)")) }
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
}
