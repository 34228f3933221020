import ArgumentParser
import FerryDeploy
import FerrySSH
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one command on targets (for debugging them).",
        discussion: """
        A TARGET is [user@]host[:port], [user@][v6addr]:port or ssh://[user@]host[:port]; when a \
        fleet file is in effect (-f, or fleet.toml / deployments/fleet.toml here) it may also be a \
        host name, a glob over names or an @tag, and no TARGET means every host. With one \
        host (an address, or a selection of one inventory host) ferry streams the command's output \
        as it is and exits with its status (128 + N when it was killed by signal N; 255 when the \
        host could not be reached); otherwise, and with --json, it runs on --jobs hosts at a time, \
        prefixes every line with `HOST | `, prints a summary and exits 0 only if the command exited \
        0 everywhere, else 1. Without a fleet file a plain name is an ssh_config Host or a DNS \
        name, as for ssh; with one, fleet names win (ssh://NAME reaches a host outside it). \
        Arguments are quoted for the remote shell one by one: `ferry exec host -- ls "a b"` lists \
        the file "a b". For shell syntax, run a shell: `ferry exec host -- sh -c 'echo $HOME'`. \
        Arguments are passed as the exact bytes given (they need not be UTF-8). On Ctrl-C the remote \
        command's process group is sent SIGTERM.
        """
    )

    @Option(name: .customShort("f"), help: ArgumentHelp("The inventory, for host names, globs and @tags (default: fleet.toml, else deployments/fleet.toml, when present).", valueName: "fleet.toml"))
    var file: String?

    // Targets, then (after "--") the command: ArgumentParser appends both to the one positional array.
    @Argument(help: ArgumentHelp("Targets, then -- and the command and its arguments.", valueName: "TARGET"))
    var words: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these inventory hosts (repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    @OptionGroup var jobs: JobsOption

    @Flag(help: "JSON Lines on stdout: one event per output line, a result per host, a summary.")
    var json = false

    @Flag(name: .customShort("n"), help: "Do not read stdin (the command gets an empty input), as ssh -n.")
    var noStdin = false

    @Flag(name: .customLong("stdin-all"), help: "With several hosts: read stdin to its end first, then send the same bytes to each (by default several hosts get no input).")
    var stdinAll = false

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard let command = wordsAfterDashes(), !command.isEmpty else {
            throw ValidationError("give the command after --, e.g. ferry exec host -- uname -a")
        }
        guard !(noStdin && stdinAll) else { throw ValidationError("-n and --stdin-all contradict each other") }
    }

    struct Resolved {
        var name: String
        var connection: HostConnection
        var target: SSHTarget { connection.target }
    }

    func run() throws {
        let command = wordsAfterDashes() ?? []
        let targets = Array(words.dropLast(min(command.count, words.count)))
        let remote: RemoteCommand
        do { remote = try RemoteCommand(validating: command) } catch { throw Failure.usage("\(error)", command: "exec") }
        let resolved = try resolve(targets)
        let cancel = try SignalRelay.cancelling().cancel
        let input = try input(forHosts: resolved.count)
        let connector = HostConnector(connections: Dictionary(resolved.map { ($0.name, $0.connection) }, uniquingKeysWith: { first, _ in first }),
                                      cancel: cancel, notice: ConnectionOptions.notice)
        let run = CommandRun(targets: resolved.map(\.name), command: remote, input: { input.make() }, connector: connector, cancel: cancel)
        if resolved.count == 1 && !json { try runOne(run) }
        try runMany(run, resolved, cancel: cancel)
    }

    /// What each host's command reads, as ssh gives it: one host gets stdin as it comes (not a
    /// terminal: no TTY is allocated remotely); several get none — cron and CI hand ferry a pipe
    /// or /dev/null, which must not be split between hosts or fail — unless `--stdin-all` asks
    /// for the same bytes everywhere.
    enum Input {
        case none
        case stream
        case bytes([UInt8])

        func make() -> ExecInput? {
            switch self {
            case .none: return nil
            case .stream: return FileDescriptorInput(descriptor: 0)
            case .bytes(let bytes): return BytesInput(bytes)
            }
        }
    }

    func input(forHosts count: Int) throws -> Input {
        if noStdin || isatty(0) != 0 { return .none }
        if count == 1 && !stdinAll { return .stream }
        guard stdinAll else { return .none }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
            if n > 0 { bytes += buffer[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Failure(code: 2, message: "cannot read stdin for --stdin-all: \(String(cString: strerror(errno)))") }
            return .bytes(bytes)
        }
    }

    /// A target that is an address, not an inventory selection: it has a user, a port, a dot or
    /// a scheme (host names have none of these; a leading "@" is a tag).
    static func looksRaw(_ target: String) -> Bool {
        !target.hasPrefix("@") && (target.contains("@") || target.contains(":") || target.contains("."))
    }

    func resolve(_ targets: [String]) throws -> [Resolved] {
        let path = file ?? InventoryOption.defaultFiles.first { FileManager.default.fileExists(atPath: $0) }
        var fleet: Fleet?
        if path != nil && (targets.isEmpty || targets.contains { !Self.looksRaw($0) } || !skip.isEmpty) {
            fleet = try InventoryOption.load(path!)
        }
        guard !targets.isEmpty || fleet != nil else {
            throw Failure.usage("name a target (no fleet file is in effect to select hosts from)", command: "exec")
        }
        guard skip.isEmpty || fleet != nil else { throw Failure.usage("--skip leaves out inventory hosts, and no fleet file is in effect", command: "exec") }
        var out: [Resolved] = []
        let inventoryTargets = targets.filter { !Self.looksRaw($0) }
        if let fleet, !(inventoryTargets.isEmpty && !targets.isEmpty) {
            // A plain name no host has may be meant for ssh_config or DNS: say how to write that.
            let plain = inventoryTargets.first { t in Fleet.isName(t) && !fleet.hosts.contains { $0.name == t } }
            let hint = plain.map { "ferry: to reach '\($0)' outside the fleet (an ssh_config Host, a DNS name), write ssh://\($0)" }
            let hosts = try InventoryOption.select(fleet, inventoryTargets, skip: skip, command: "exec", hint: hint)
            let connections = try connection.connections(for: hosts, in: fleet)
            for h in hosts {
                out.append(Resolved(name: h.name, connection: connections[h.name]!))
            }
        }
        // Without a fleet, a plain name is what ssh would take it for: an ssh_config Host or a DNS name.
        for raw in targets where Self.looksRaw(raw) || fleet == nil {
            if !Self.looksRaw(raw) && !Fleet.isName(raw) {
                throw Failure.usage("'\(raw)' selects inventory hosts, and no fleet file is in effect to find them in", command: "exec")
            }
            let target: SSHTarget
            do { target = try SSHTarget(parsing: raw, allowPath: false) } catch { throw Failure.usage("\(error)", command: "exec") }
            let resolved = try connection.connection(forTarget: raw)
            out.append(Resolved(name: target.description, connection: resolved))
        }
        return out
    }

    /// One host: the output as it comes, the remote status as ferry's.
    func runOne(_ run: CommandRun) throws -> Never {
        let name = run.targets[0]
        let outcome = HostRunner(jobs: 1).run(run, hosts: 1) { event in
            if case .event(_, .output(let stream, let bytes)) = event {
                bytes.withUnsafeBytes { writeAll(stream == .stdout ? 1 : 2, $0) }
            }
        }[0]!
        if outcome.interrupted {
            printError("ferry: \(name): interrupted; the remote command was sent SIGTERM")
            throw Failure.interrupted()
        }
        if let error = outcome.error { throw Failure.connection(error, host: name) }
        let status = outcome.status!
        if case .signaled = status { printError("ferry: \(name): remote command \(status)") }
        throw ExitCode(status.shellCode)
    }

    /// Many hosts: `jobs` at a time, every line prefixed, a summary; 0 only if all exited 0.
    func runMany(_ run: CommandRun, _ hosts: [Resolved], cancel: CancellationToken) throws -> Never {
        let view = FleetView(json: json, stats: false)
        // Each host's output split into lines as it comes (a host's events are never concurrent).
        let splitters = Mutex([Int: [CommandRun.Stream: LineSplitter]]())
        let names = run.targets
        let outcomes = HostRunner(jobs: jobs.value, stop: cancel).run(run, hosts: hosts.count) { event in
            switch event {
            case .started(let i):
                view.execStarted(names[i], target: "\(hosts[i].target)")
            case .event(let i, .output(let stream, let bytes)):
                let lines = splitters.withLock { all -> [[UInt8]] in
                    var splitter = all[i, default: [:]][stream] ?? LineSplitter()
                    var lines: [[UInt8]] = []
                    bytes.withUnsafeBytes { splitter.feed($0) { lines.append($0) } }
                    all[i, default: [:]][stream] = splitter
                    return lines
                }
                for line in lines { view.execLine(names[i], line, stream: stream) }
            case .finished(let i, let outcome):
                let rest = splitters.withLock { all -> [(CommandRun.Stream, [UInt8])] in
                    var rest: [(CommandRun.Stream, [UInt8])] = []
                    for stream in [CommandRun.Stream.stdout, .stderr] { all[i]?[stream]?.flush { rest.append((stream, $0)) } }
                    return rest
                }
                for (stream, line) in rest { view.execLine(names[i], line, stream: stream) }
                view.execFinished(names[i], outcome)
            }
        }
        let code: Int32 = cancel.isCancelled ? SignalRelay.exitCode : (outcomes.allSatisfy { $0?.status == .exited(0) } ? 0 : 1)
        view.execSummary(names, outcomes, exitStatus: code)
        // The table shows a reason's first line; the whole of it (a refused host key's
        // fingerprint and the ssh-keygen -R to run) goes to stderr, as deploy prints it.
        if !json {
            for (name, o) in zip(names, outcomes) {
                if let o, FleetView.execPhase(o) == "connect" { printError("ferry: \(name): \(FleetView.execCause(o))") }
            }
        }
        Glibc.exit(code)
    }
}
