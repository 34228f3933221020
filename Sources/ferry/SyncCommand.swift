import ArgumentParser
import FerryDeploy
import FerrySSH
import FerrySync
import FerryTarget
import Foundation

struct Sync: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a directory on a target identical to a local one (rsync -rlptD --delete semantics, no rsync needed).",
        discussion: """
        Excluded paths on the target are left alone unless --delete-excluded is given. A non-empty \
        destination that ferry never synced is refused unless --force is given. A sync into \
        /var/src/NAME takes the host's deploy lock, as a deploy does (refused while a deploy holds \
        it, or waits --lock-timeout seconds). Exit status: 0 done; \
        1 a failure on the target or the source (including files that could not be read); 2 usage; \
        255 the connection or authentication failed.
        """
    )

    @Argument(help: ArgumentHelp("The local directory.", valueName: "LOCAL_DIR"))
    var local: String

    @Argument(help: ArgumentHelp("[user@]host[:port]:/abs/path or ssh://[user@]host[:port]/abs/path.", valueName: "DESTINATION"))
    var destination: String

    // Values may begin with "-" (`--exclude -foo`), as rsync accepts them.
    @Option(name: .customLong("exclude"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("An rsync exclude pattern (repeatable).", valueName: "PATTERN"))
    var excludes: [String] = []

    @Option(name: .customLong("exclude-from"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("A file of exclude rules, one per line (rsync's syntax: '- ', '+ ' and '!' too).", valueName: "FILE"))
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

    @Option(name: .customLong("lock-timeout"), help: ArgumentHelp("Into /var/src/NAME: seconds to wait for the host's deploy lock (0: refuse at once).", valueName: "S"))
    var lockTimeout = 0

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard lockTimeout >= 0 else { throw ValidationError("--lock-timeout must be 0 or more") }
    }

    func run() throws {
        let parsed: SyncDestination
        do { parsed = try SyncDestination(parsing: destination) } catch { throw Failure.usage("\(error)", command: "sync") }
        var rules: ExcludeRules
        do {
            rules = try ExcludeRules(validating: excludes)
            for file in excludeFrom {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw Failure.usage("cannot read the exclude file \(file)", command: "sync")
                }
                try rules.add(fileContents: Array(data), file: file)
            }
        } catch let error as ExcludeRuleError {
            throw Failure.usage("\(error)", command: "sync")
        }
        // The source is read before anything is contacted: a missing one is a local error.
        guard let dir = opendir(local) else {
            throw Failure(code: ExitStatus.usage, message: "cannot read the source folder '\(local)': \(String(cString: strerror(errno)))")
        }
        closedir(dir)
        let cancel = try SignalRelay.cancelling().cancel
        var options = Syncer.Options(plan: .init(excludes: rules, deleteExcluded: deleteExcluded, checksum: checksum),
                                     dryRun: dryRun, force: force, cancel: cancel)
        options.listingCache = Ferry.listingCache
        let result: Syncer.Result
        do {
            let scan = Syncer.beginScan(local, options: options)
            let session = try HostConnector.open(try connection.connection(forTarget: parsed.targetText), cancel: cancel, notice: ConnectionOptions.notice)
            defer { session.close() }
            if !dryRun && SyncDeployLock.applies(to: parsed.path) {
                // Under the deploy lock a killed predecessor's sync may still be winding down.
                options.lockWait = 10
                result = try SyncDeployLock.holding(session: session, wait: lockTimeout, cancel: cancel, onBusy: { holder in
                    guard lockTimeout > 0 else { return }
                    printError("ferry: \(parsed.target): the deploy lock is held by \(holder.map { "\($0)" } ?? LockHolder.notFerrys); waiting up to \(lockTimeout) s")
                }) {
                    try Syncer.sync(from: local, to: parsed.path, over: session, options: options, pending: scan)
                }
            } else {
                result = try Syncer.sync(from: local, to: parsed.path, over: session, options: options, pending: scan)
            }
        } catch SSHError.cancelled {
            throw Failure.interrupted()
        } catch let error as SSHError {
            throw Failure.connection(error)
        } catch SyncError.transport(let step, let error) {
            throw Failure.connection(SyncError.transport(step: step, error: error), host: "\(parsed.target)")
        } catch let error as SyncError {
            throw Failure(code: 1, message: "\(error)")
        } catch let error as DeployError {
            throw Failure(code: 1, message: "\(error)")
        }
        let host = parsed.target.description
        var notes: [String] = []
        notes += result.skipped.map { "skipping non-regular file \"\($0)\"" }
        notes += result.tooLong.map { "skipping \"\($0)\": path longer than PATH_MAX" }
        notes += result.vanished.map { "file has vanished: \"\($0)\"" }
        notes += result.changedDuringSend.map { "\($0) changed while it was sent; not moved into place, run the sync again" }
        notes += result.plan.keptDirectories.map { "kept \(parsed.path)/\(String(decoding: $0, as: UTF8.self)): it holds excluded entries (--delete-excluded removes them)" }
        printSummarised(notes.map { "\(host): warning: \($0)" })
        if let resolved = result.resolvedDestination {
            printError("ferry: \(host): note: \(parsed.path) is \(resolved) (a folder above it is a symlink); synced there")
        }
        var errors = result.unreadable.map { "\(host): cannot read \($0.path): \($0.reason); the target keeps its old copy" }
        errors += result.plan.blocked.map {
            "\(host): could not make way for \(parsed.path)/\(String(decoding: $0, as: UTF8.self)): a directory holding excluded entries is there (--delete-excluded removes them)"
        }
        printSummarised(errors)
        if itemize || dryRun {
            for item in result.plan.items { print(Itemize.line(item)) }
        }
        if stats {
            let deleted = result.plan.items.filter { $0.change == .deleted }.count
            print("""
                entries scanned: \(result.filesScanned) (\(result.bytesScanned) bytes)
                files sent: \(result.plan.sends.count) (\(result.plan.bytesToSend) bytes of file data, \(result.bytesSent) bytes streamed)
                deleted: \(deleted)
                listing: \(result.listedChanges.map { "incremental (\($0) entries changed since the last sync)" } ?? "full")
                time: \(String(format: "%.3f", result.seconds)) s (plan \(String(format: "%.3f", result.planSeconds)) s, apply \(String(format: "%.3f", result.applySeconds)) s)
                """)
        }
        if !result.complete { throw Failure(code: 1, message: "") }
    }
}

/// Prints messages, but a flood only as its first 10 and a count.
func printSummarised(_ lines: [String], limit: Int = 10) {
    for line in lines.prefix(limit) { printError("ferry: " + line) }
    if lines.count > limit { printError("ferry: … and \(lines.count - limit) more like these") }
}
