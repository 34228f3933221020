import ArgumentParser
import FerrySSH
import FerrySync
import Foundation

struct Sync: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a directory on a target identical to a local one (rsync -rlptD --delete semantics, no rsync needed).",
        discussion: """
        Excluded paths on the target are left alone unless --delete-excluded is given. A non-empty \
        destination that ferry never synced is refused unless --force is given.
        """
    )

    @Argument(help: ArgumentHelp("The local directory.", valueName: "LOCAL_DIR"))
    var local: String

    @Argument(help: ArgumentHelp("[user@]host[:port]:/abs/path or ssh://[user@]host[:port]/abs/path.", valueName: "DESTINATION"))
    var destination: String

    @Option(name: .customLong("exclude"), help: ArgumentHelp("An rsync exclude pattern (repeatable).", valueName: "PATTERN"))
    var excludes: [String] = []

    @Option(name: .customLong("exclude-from"), help: ArgumentHelp("A file of exclude patterns, one per line.", valueName: "FILE"))
    var excludeFrom: [String] = []

    @Flag(inversion: .prefixedNo, help: "Also delete excluded paths on the target.")
    var deleteExcluded = false

    @Flag(help: "Compare file contents (SHA-256 on both ends), not size and mtime.")
    var checksum = false

    @Flag(help: "Show what would change; change nothing.")
    var dryRun = false

    @Flag(help: "One line per change, as rsync --itemize-changes prints them.")
    var itemize = false

    @Flag(help: "Take over a non-empty destination ferry never synced.")
    var force = false

    @Flag(help: "Print files and bytes scanned, sent and deleted, and the time taken.")
    var stats = false

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let parsed: SyncDestination
        do { parsed = try SyncDestination(parsing: destination) } catch { throw ValidationError("\(error)") }
        var rules = ExcludeRules(excludes)
        for file in excludeFrom {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read the exclude file \(file)")
            }
            rules.add(fileContents: Array(data))
        }
        let options = Syncer.Options(plan: .init(excludes: rules, deleteExcluded: deleteExcluded, checksum: checksum),
                                     dryRun: dryRun, force: force)
        do {
            let session = try SSHSession(connecting: connection.configuration(for: parsed.target))
            defer { session.close() }
            let result = try Syncer.sync(from: local, to: parsed.path, over: session, options: options)
            for path in result.skipped { printError("ferry: skipping non-regular file \"\(path)\"") }
            for path in result.changedDuringSend { printError("ferry: warning: \(path) changed while it was sent; run the sync again") }
            if itemize || dryRun {
                for item in result.plan.items { print(Itemize.line(item)) }
            }
            if stats {
                let deleted = result.plan.items.filter { $0.change == .deleted }.count
                print("""
                    entries scanned: \(result.filesScanned) (\(result.bytesScanned) bytes)
                    files sent: \(result.plan.sends.count) (\(result.plan.bytesToSend) bytes of file data, \(result.bytesSent) bytes streamed)
                    deleted: \(deleted)
                    time: \(String(format: "%.3f", result.seconds)) s (plan \(String(format: "%.3f", result.planSeconds)) s, apply \(String(format: "%.3f", result.applySeconds)) s)
                    """)
            }
        } catch let error as SSHError {
            printError("ferry: \(error)")
            throw ExitCode(255)
        } catch let error as SyncError {
            printError("ferry: \(error)")
            throw ExitCode(1)
        }
    }
}
