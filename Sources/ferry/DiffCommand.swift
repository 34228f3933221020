import ArgumentParser
import FerryDeploy
import FerrySSH
import FerrySync
import Foundation
import Synchronization

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a deploy would change on each host; change nothing.",
        discussion: """
        Uses the deploy's own read-only steps (scan, list, plan, verify by hash), so diff and deploy \
        agree: per source, + added, ~ changed, - deleted, m mtime only (same size and contents), \
        t type or symlink target, p mode; then the rendered configuration as diff -u prints it. \
        Takes no lock and writes nothing on the host (unlike --op dry-activate, which syncs and \
        builds there); a deploy in progress is noted. Exit status: 2 when a host could not be \
        diffed (the others are still shown); with --exit-code, 0 nothing would change, 1 something would.
        """
    )

    @OptionGroup var inventory: InventoryOption

    @Argument(help: ArgumentHelp("Host names, globs or @tags (default: every host).", valueName: "TARGETS"))
    var targets: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these hosts (repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    @Option(name: .customLong("source"), help: ArgumentHelp("Only this source; --name-only paths are then relative to its root.", valueName: "NAME"))
    var source: String?

    @Flag(help: "One SOURCE/PATH per line.")
    var nameOnly = false

    @Flag(help: "Compare file contents (SHA-256 on both ends), not size and mtime.")
    var checksum = false

    @Flag(help: "Exit 1 when something would change, 0 when nothing would.")
    var exitCode = false

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup var sudo: SudoOptions

    func run() throws {
        let fleet = try inventory.load()
        if let source {
            guard fleet.sources.contains(where: { $0.name == source }) else {
                throw Failure.usage("no source named '\(source)' (sources: \(fleet.sources.map(\.name).joined(separator: ", ")))", command: "diff")
            }
        }
        let hosts = try InventoryOption.select(fleet, targets, skip: skip)
        let connection = self.connection
        let access = Mutex<SudoAccess?>(nil)
        var options = Deployment.Options { h in
            try connection.shell(for: h, sudo: access.withLock { $0! })
        }
        options.checksum = checksum
        let deployments = hosts.map { Deployment(fleet: fleet, host: $0, options: options) }
        for d in deployments {
            do { try d.checkLocally() } catch DeployError.localCheck(let text) { throw Failure(code: 2, message: "\(d.host.name): \(text)") }
        }
        let sudoAccess = try sudo.access(for: hosts)
        access.withLock { $0 = sudoAccess }
        var changed = false
        var failed = false
        let prefix = hosts.count > 1
        for d in deployments {
            let host = d.host.name
            func say(_ line: String) { print((prefix ? "\(host) | " : "") + Terminal.escapingControls(line)) }
            do {
                let session = try options.open(d.host)
                defer { session.close() }
                switch try HostStatus.lock(shell: session) {
                case .free: break
                case .held(let who), .rebuildRunning(let who):
                    printError("ferry: \(host): note: a deploy is in progress (\(who.map { "\($0)" } ?? "the lock is held")); this diff is against the tree as it is now")
                }
                let diff = try HostDiff.compute(d, over: session, only: source)
                changed = changed || !diff.isEmpty
                if nameOnly {
                    for e in diff.entries { say(source != nil ? Self.name(e.path) : "\(e.source)/\(Self.name(e.path))") }
                    continue
                }
                for name in fleet.sources.map(\.name) where source == nil || name == source {
                    let entries = diff.entries.filter { $0.source == name }
                    guard !entries.isEmpty else { say("\(name): no changes"); continue }
                    let counts = [HostDiff.Kind.added, .changed, .deleted, .mtimeOnly, .type, .mode].compactMap { k -> String? in
                        let n = entries.filter { $0.kind == k }.count
                        return n == 0 ? nil : "\(n) \(Self.word(k))"
                    }
                    say("\(name): \(counts.joined(separator: ", "))")
                    for e in entries { say("  \(e.kind.rawValue) \(Self.name(e.path))") }
                }
                for line in diff.configDiff.split(separator: "\n", omittingEmptySubsequences: false).dropLast() { say(String(line)) }
                say("total: \(diff.entries.count) \(diff.entries.count == 1 ? "change" : "changes")")
            } catch let error as SSHError {
                printError("ferry: \(host): \(error)")
                failed = true
            } catch {
                printError("ferry: \(host): \(error)")
                failed = true
            }
        }
        if failed { throw Failure(code: 2, message: "") }
        if exitCode && changed { throw Failure(code: 1, message: "") }
    }

    /// A path as rsync's --itemize shows it (`\#ooo` escapes); the tree's root is ".".
    static func name(_ path: [UInt8]) -> String { path.isEmpty ? "." : Itemize.escape(path) }

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
}
