import FerrySSH
import Foundation

/// `ferry exec`: one command on each target, its output reported as it arrives. Targets are
/// names in the connector (inventory hosts, or targets as written); no sudo: the command runs as
/// the login user, as `ssh` runs it.
public struct CommandRun: HostOperation {
    public enum Stream: String, Sendable { case stdout, stderr }

    public enum Event: Sendable {
        /// The output as it came (not split into lines).
        case output(Stream, [UInt8])
    }

    public struct Outcome: Sendable {
        /// Nil: the command did not run to an end (`error` says why).
        public var status: ExitStatus?
        public var error: (any Error)?
        public var seconds: Double

        /// Ferry was interrupted: the remote command was sent SIGTERM.
        public var interrupted: Bool { (error as? SSHError) == .cancelled }
    }

    public let targets: [String]
    public let command: RemoteCommand
    /// Each host's input, made on its thread (nil: none).
    public let input: @Sendable () -> (any ExecInput)?
    public let connector: HostConnector
    public let cancel: CancellationToken?

    public init(targets: [String], command: RemoteCommand, input: @escaping @Sendable () -> (any ExecInput)?,
                connector: HostConnector, cancel: CancellationToken?) {
        self.targets = targets
        self.command = command
        self.input = input
        self.connector = connector
        self.cancel = cancel
    }

    public func run(host index: Int, emit: @escaping @Sendable (Event) -> Void) -> Outcome {
        let start = Date()
        var outcome = Outcome(seconds: 0)
        do {
            let session = try connector.open(targets[index])
            defer { session.close() }
            outcome.status = try session.exec(command, stdin: input(), cancel: cancel,
                                              stdout: { emit(.output(.stdout, Array($0))) },
                                              stderr: { emit(.output(.stderr, Array($0))) })
        } catch {
            outcome.error = error
        }
        outcome.seconds = Date().timeIntervalSince(start)
        return outcome
    }

    public func failed(_ outcome: Outcome) -> Bool { outcome.status != .exited(0) }

    public func error(_ outcome: Outcome) -> (any Error)? { outcome.error }
}
