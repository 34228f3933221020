/// Where a target's commands run: one SSH session, or (in tests) a local `sh` against a temporary
/// root. Every remote step of a sync or a deploy goes through this seam. Several threads may run
/// commands at once (a deploy's lock holder runs beside its work); set the properties before.
public protocol RemoteShell: AnyObject, Sendable {
    /// Names the target in messages (`user@host:port`).
    var name: String { get }
    /// Hears the process group of each command started (a deploy hands them to its lock holder,
    /// which ends them if ferry's heartbeat stops).
    var onRemoteProcessGroup: ((Int32) -> Void)? { get set }

    /// Runs `command`, streaming stdout and stderr as they arrive and feeding stdin from `stdin`
    /// (none: end of input at once). `cancel` stops the command and throws `SSHError.cancelled`.
    func exec(_ command: RemoteCommand, stdin: ExecInput?, cancel: CancellationToken?,
              stdout: (UnsafeRawBufferPointer) -> Void, stderr: (UnsafeRawBufferPointer) -> Void) throws -> ExitStatus

    func close()

    /// Sends `request` over a connection to `host:port` made from the target's side and reads the
    /// reply (see `SSHSession.exchange`). Shells that cannot forward throw.
    func exchange(host: String, port: Int, send request: [UInt8], timeout: Double, cancel: CancellationToken?,
                  until complete: ([UInt8]) -> Bool) throws -> ForwardedReply
}

extension RemoteShell {
    public func exchange(host: String, port: Int, send request: [UInt8], timeout: Double, cancel: CancellationToken?,
                         until complete: ([UInt8]) -> Bool) throws -> ForwardedReply {
        throw SSHError.protocolFailure(target: name, operation: "forward a connection to \(host):\(port)", code: 0,
                                       message: "this shell is not an SSH session")
    }

    public func exec(_ command: RemoteCommand, cancel: CancellationToken? = nil,
                     stdout: (UnsafeRawBufferPointer) -> Void, stderr: (UnsafeRawBufferPointer) -> Void) throws -> ExitStatus {
        try exec(command, stdin: nil, cancel: cancel, stdout: stdout, stderr: stderr)
    }

    /// Runs `command` and collects its output in memory (for small outputs).
    /// Runs `command` with `input` as its stdin (a value ferry must not copy about: a secret).
    public func run(_ command: RemoteCommand, input: any ExecInput) throws -> (status: ExitStatus, stdout: [UInt8], stderr: [UInt8]) {
        var out: [UInt8] = []
        var err: [UInt8] = []
        let status = try exec(command, stdin: input, cancel: nil, stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) })
        return (status, out, err)
    }

    public func run(_ command: RemoteCommand, stdin: [UInt8]? = nil) throws -> (status: ExitStatus, stdout: [UInt8], stderr: [UInt8]) {
        var out: [UInt8] = []
        var err: [UInt8] = []
        let status = try exec(command, stdin: stdin.map { BytesInput($0) }, cancel: nil,
                              stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) })
        return (status, out, err)
    }
}

extension SSHSession: RemoteShell {
    public var name: String { target.description }
}
