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
        file "a b". For shell syntax, run a shell: `ferry exec host -- sh -c 'echo $HOME'`. \
        Arguments are passed as the exact bytes given (they need not be UTF-8). On Ctrl-C the remote \
        command's process group is sent SIGTERM.
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

    /// The words after `--` as the bytes the shell passed: Swift's CommandLine.arguments and
    /// ArgumentParser have already replaced bytes that are not UTF-8.
    static func rawCommandWords() -> [[UInt8]] {
        let argv = (0..<Int(CommandLine.argc)).map { i -> [UInt8] in
            guard let p = CommandLine.unsafeArgv[i] else { return [] }
            return Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p)))
        }
        guard let dashes = argv.firstIndex(of: Array("--".utf8)) else { return [] }
        return Array(argv[(dashes + 1)...])
    }

    func run() throws {
        let target: SSHTarget
        do { target = try SSHTarget(parsing: self.target, allowPath: false) } catch {
            throw Failure.usage("\(error)", command: "exec")
        }
        var words = Self.rawCommandWords()
        if words.count != command.count { words = command.map { Array($0.utf8) } }
        let remote: RemoteCommand
        do { remote = try RemoteCommand(validating: words) } catch { throw Failure.usage("\(error)", command: "exec") }
        let cancel = try CancellationToken()
        SignalRelay.onInterrupt(cancel)
        do {
            let session = try SSHSession(connecting: connection.configuration(for: target))
            defer { session.close() }
            // Forward our stdin unless it is a terminal (no TTY is allocated remotely).
            let input: ExecInput? = isatty(0) == 0 ? FileDescriptorInput(descriptor: 0) : nil
            let status = try session.exec(
                remote, stdin: input, cancel: cancel,
                stdout: { writeAll(1, $0) }, stderr: { writeAll(2, $0) })
            if case .signaled = status { printError("ferry: \(target): remote command \(status)") }
            throw ExitCode(status.shellCode)
        } catch SSHError.cancelled {
            printError("ferry: \(target): interrupted; the remote command was sent SIGTERM")
            throw Failure.interrupted()
        } catch let error as SSHError {
            throw Failure.connection(error)
        }
    }
}
