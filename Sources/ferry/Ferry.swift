import ArgumentParser
import FerryDeploy
import FerrySSH
import FerrySync
import Foundation
#if canImport(Glibc)
import Glibc
#endif

@main
struct Ferry: ParsableCommand {
    static let version = "0.4.0"

    /// `$XDG_CACHE_HOME/ferry/listings` (else `~/.cache/ferry/listings`): what each destination
    /// held at the last sync, so the next listing asks only for what changed since.
    static var listingCache: ListingCache? { cacheDirectory.map { ListingCache(directory: $0 + "/listings") } }

    /// `$XDG_CACHE_HOME/ferry/key-check`: the source files already found to be no private key.
    static var keyCheckCache: SourceSecrets.Cache? { cacheDirectory.map { SourceSecrets.Cache(directory: $0 + "/key-check") } }

    /// A deploy's (or diff's) options with this ferry's version and caches, sessions from `connector`.
    static func deployOptions(_ connector: HostConnector) -> Deployment.Options {
        var options = Deployment.Options(connector: connector)
        options.ferryVersion = version
        options.listingCache = listingCache
        options.keyCheckCache = keyCheckCache
        return options
    }

    static var cacheDirectory: String? {
        let env = ProcessInfo.processInfo.environment
        guard let base = env["XDG_CACHE_HOME"].flatMap({ $0.hasPrefix("/") ? $0 : nil }) ?? env["HOME"].map({ $0 + "/.cache" }) else { return nil }
        return base + "/ferry"
    }

    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Push deployer for NixOS machines: sync sources, render configs, run nixos-rebuild over SSH.",
        discussion: """
        Exit status: 0 success; 1 a failure on the target or the source; 2 a usage error or a failed \
        local check (nothing was contacted); 3 (deploy) contact lost during the rebuild, outcome \
        unknown; 130 interrupted (SIGINT), 143 terminated (SIGTERM); \
        255 the connection or authentication failed. `ferry exec` exits with the remote command's \
        status (128 + N when it was killed by signal N).
        """,
        version: version,
        subcommands: [Deploy.self, Diff.self, RollbackCommand.self, Check.self, Status.self, Unlock.self, Hosts.self, Config.self, Render.self, Sync.self, Exec.self, Eval.self]
    )

    /// Parses and runs with one error style (`ferry: …`) and the README's exit codes: usage
    /// errors exit 2, not ArgumentParser's 64.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
            Glibc.exit(0)
        } catch let failure as Failure {
            if !failure.message.isEmpty { printError("ferry: " + failure.message) }
            if let hint = failure.hint { printError(hint) }
            Glibc.exit(failure.code)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            if code == .validationFailure {
                printError(fullMessage(for: error))
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// How a command ends when something fails: one message, one exit code.
struct Failure: Error {
    let code: Int32
    let message: String
    /// A line of ferry's own after the message (where to read more).
    var hint: String?

    init(code: Int32, message: String, hint: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
    }

    /// Bad arguments found while running: exit 2, with a pointer to the command's help.
    static func usage(_ message: String, command: String) -> Failure {
        Failure(code: 2, message: message, hint: "See 'ferry \(command) --help'.")
    }

    /// Exit 255, as ssh does, for connection and authentication failures (naming `host` first).
    static func connection(_ error: any Error, host: String? = nil) -> Failure {
        Failure(code: ExitStatus.connection, message: (host.map { $0 + ": " } ?? "") + "\(error)")
    }

    static func interrupted() -> Failure {
        Failure(code: SignalRelay.exitCode, message: "")
    }
}

/// The words after the command line's first `--`, as the bytes the shell passed (Swift's
/// CommandLine.arguments and ArgumentParser have already replaced bytes that are not UTF-8);
/// nil without a `--`. ArgumentParser puts them at the end of a command's positional array too.
func wordsAfterDashes() -> [[UInt8]]? {
    let argv = (0..<Int(CommandLine.argc)).map { i -> [UInt8] in
        guard let p = CommandLine.unsafeArgv[i] else { return [] }
        return Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p)))
    }
    guard let dashes = argv.firstIndex(of: Array("--".utf8)) else { return nil }
    return Array(argv[(dashes + 1)...])
}
