import ArgumentParser
import FerryTestSupport
import Foundation

/// Starts local sandbox targets (the test harness's real sshd hosts), runs one command with their
/// coordinates in the environment, and stops them again. Used by the demo and the benchmarks.
@main
struct Sandbox: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-sandbox",
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
        guard (1...32).contains(hosts) else { throw ValidationError("--hosts must be 1 to 32") }
    }

    func run() throws {
        let harness = try TestHostHarness()
        defer { harness.shutdown() }
        let started = try (0..<hosts).map { _ in try harness.startHost() }
        let targets = started.map { "root@\($0.address):\($0.port)" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Command.which(command[0]))
        process.arguments = Array(command.dropFirst())
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
