import ArgumentParser
import FerryTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Local sandbox targets and fixture trees for the demo and the benchmarks.
@main
struct Sandbox: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-sandbox",
        abstract: "Throwaway local test hosts and generated source trees (for the demo and benchmarks).",
        subcommands: [Run.self, Fixture.self, Touch.self, Proxy.self],
        defaultSubcommand: Run.self
    )
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command against throwaway local test hosts (real sshd on 127.0.0.1, private /var/src).",
        discussion: """
        The command sees FERRY_SANDBOX_TARGETS (space-separated root@127.0.0.1:PORT), FERRY_SANDBOX_TARGET \
        (the first), FERRY_SANDBOX_KEY (an ed25519 identity), FERRY_SANDBOX_KNOWN_HOSTS, and \
        FERRY_SANDBOX_DIRS (each host's private directory; /var/src is var-src inside it). Must run as root.
        """
    )

    @Option(help: "How many hosts to start.")
    var hosts: Int = 1

    @Argument(parsing: .postTerminator, help: "The command to run, after --.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the command after --") }
        guard (1...128).contains(hosts) else { throw ValidationError("--hosts must be 1 to 128") }
    }

    func run() throws {
        let harness = try TestHostHarness()
        defer { harness.shutdown() }
        // rsync too: the benchmarks compare with it by hand.
        let started = try (0..<hosts).map { _ in try harness.startHost(tools: ["rsync"]) }
        let targets = started.map { "root@\($0.address):\($0.port)" }
        // The command dies with the sandbox too (setpriv --pdeathsig), as the hosts do.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Command.which("setpriv"))
        process.arguments = ["--pdeathsig", "KILL", "--", try Command.which(command[0])] + command.dropFirst()
        process.environment = ProcessInfo.processInfo.environment.merging([
            "FERRY_SANDBOX_TARGETS": targets.joined(separator: " "),
            "FERRY_SANDBOX_TARGET": targets[0],
            "FERRY_SANDBOX_KEY": harness.clientKey(.ed25519),
            "FERRY_SANDBOX_KNOWN_HOSTS": harness.knownHostsFile,
            "FERRY_SANDBOX_DIRS": started.map(\.directory).joined(separator: " "),
        ]) { $1 }
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 { throw ExitCode(process.terminationStatus) }
    }
}

struct Fixture: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a source tree: lnbits (≈580 entries, 15 MB) or large (40,000 files, ≈250 MB).")

    @Argument(help: "lnbits or large")
    var kind: String

    @Argument(help: "Directory to create.")
    var directory: String

    @Option(help: "Seed.")
    var seed: UInt64 = 1

    func run() throws {
        var fixture = TreeFixture(seed: seed)
        switch kind {
        case "lnbits": try fixture.makeLNBitsTree(at: directory)
        case "large": try fixture.makeLargeTree(at: directory)
        default: throw ValidationError("kind must be lnbits or large")
        }
    }
}

struct Touch: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set a new mtime on COUNT regular files of a tree (chosen by seed; the time is now less 1 + 1,000 × seed seconds).")

    @Argument(help: "The tree.")
    var directory: String

    @Option(help: "How many files.")
    var count: Int = 2000

    @Option(help: "Seed.")
    var seed: UInt64 = 1

    func run() throws {
        var files: [String] = []
        let walker = FileManager.default.enumerator(atPath: directory)!
        while let rel = walker.nextObject() as? String {
            if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular { files.append(rel) }
        }
        files.sort()
        var rng = FixtureRandom(seed: seed)
        var chosen = Set<Int>()
        while chosen.count < min(count, files.count) { chosen.insert(rng.below(files.count)) }
        // Whole seconds (rsync compares only those by default), 1,000 s apart per seed: touches
        // with other seeds made within minutes of each other never set the same time, so each
        // changes every file it chooses (with plain "now", a small tree's second touch within
        // the same second changed nothing).
        let stamp = Int(Date().timeIntervalSince1970) - 1 - 1000 * Int(seed % 10_000)
        for i in chosen {
            var times = [timespec(tv_sec: stamp, tv_nsec: 0), timespec(tv_sec: stamp, tv_nsec: 0)]
            _ = utimensat(AT_FDCWD, directory + "/" + files[i], &times, 0)
        }
    }
}

struct Proxy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forward 127.0.0.1:PORT (printed) to 127.0.0.1:--to with a one-way delay and a bandwidth cap, until killed.")

    @Option(help: "The port to forward to.")
    var to: Int

    @Option(help: "One-way delay in milliseconds (the round trip grows by twice this).")
    var delayMs: Double = 0

    @Option(help: "Bandwidth cap per direction in KiB/s (0: none).")
    var kibPerSecond: Int = 0

    func run() throws {
        let proxy = try LinkProxy(to: to, shape: .init(delay: delayMs / 1000, bytesPerSecond: kibPerSecond * 1024))
        print(proxy.port)
        fflush(nil)
        while true { sleep(3600) }
    }
}
