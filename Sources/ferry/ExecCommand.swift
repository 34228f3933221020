import ArgumentParser
import FerrySSH
#if canImport(Glibc)
import Glibc
#endif

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one command on a target and exit with its status (for debugging targets).",
        discussion: """
        Arguments are quoted for the remote shell one by one: `ferry exec host -- ls "a b"` lists the \
        file "a b". For shell syntax, run a shell: `ferry exec host -- sh -c 'echo $HOME'`.
        """
    )

    @Argument(help: ArgumentHelp("[user@]host[:port], [user@][v6addr]:port or ssh://[user@]host[:port].", valueName: "TARGET"))
    var target: String

    @OptionGroup var connection: ConnectionOptions

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "CMD"))
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the command after --, e.g. ferry exec host -- uname -a") }
    }

    func run() throws {
        let target: SSHTarget
        do { target = try SSHTarget(parsing: self.target) } catch { throw ValidationError("\(error)") }
        let cancel = CancellationToken()
        SignalRelay.onInterrupt(cancel)
        do {
            let session = try SSHSession(connecting: connection.configuration(for: target))
            defer { session.close() }
            // Forward our stdin unless it is a terminal (no TTY is allocated remotely).
            let input: ExecInput? = isatty(0) == 0 ? FileDescriptorInput(descriptor: 0) : nil
            let status = try session.exec(
                RemoteCommand(command), stdin: input, cancel: cancel,
                stdout: { writeAll(1, $0) }, stderr: { writeAll(2, $0) })
            if case .signaled = status { printError("ferry: \(target): remote command \(status)") }
            throw ExitCode(status.shellCode)
        } catch SSHError.cancelled {
            printError("ferry: interrupted; closed the channel to \(target) (the remote command may still be running)")
            throw ExitCode(130)
        } catch let error as SSHError {
            printError("ferry: \(error)")
            throw ExitCode(255)  // as ssh does for connection and authentication failures
        }
    }
}
