import FerrySSH
import Synchronization

/// Opens a run's sessions: to the connections resolved before the first one (flags, fleet.toml,
/// ssh_config), through their jump hosts, and with root through sudo where the login user is not
/// root. Every command that reaches a host opens its sessions here.
public final class HostConnector: Sendable {
    /// By host name (inventory hosts) or by the target as written (command-line targets).
    public let connections: [String: HostConnection]
    private let notice: @Sendable (_ target: String, _ text: String) -> Void
    private let cancel: CancellationToken?
    /// Bound late (`grant`): the password is asked for only after the local checks pass.
    private let sudo = Mutex<SudoAccess?>(nil)

    /// `notice` hears what a session wants the operator to know (a host key recorded), naming
    /// the target it came from (`user@host:port`, a jump host's own). `cancel` stops a session
    /// being opened (an interrupt during a slow handshake).
    public init(connections: [String: HostConnection], cancel: CancellationToken? = nil,
                notice: @escaping @Sendable (_ target: String, _ text: String) -> Void) {
        self.connections = connections
        self.cancel = cancel
        self.notice = notice
    }

    /// The login users that need sudo (anyone but root), for the password prompt.
    public var sudoUsers: [String] {
        Set(connections.values.map(\.user.value).filter(SudoAccess.needed)).sorted()
    }

    /// Binds the sudo access; call before the first `shell`.
    public func grant(_ access: SudoAccess) {
        sudo.withLock { $0 = access }
    }

    /// A session to `name`'s connection, directly or through its jump hosts (one login per jump
    /// host for the whole process); no sudo.
    public func open(_ name: String) throws -> SSHSession {
        guard let connection = connections[name] else { preconditionFailure("no connection resolved for \(name)") }
        return try Self.open(connection, cancel: cancel, notice: notice)
    }

    /// A session to an inventory host, set up to run every command as root (sudo for other users);
    /// to `port` instead of the connection's when given (the port a deploy moves sshd to).
    public func shell(for host: Fleet.Host, port: Int? = nil) throws -> SSHSession {
        guard let access = sudo.withLock({ $0 }) else { preconditionFailure("grant(_:) the sudo access before opening shells") }
        guard var connection = connections[host.name] else { preconditionFailure("no connection resolved for \(host.name)") }
        // Another port of the same host: its key is the one known for the usual port.
        let alias = port.map { _ in connection.target }
        if let port { connection.port = .init(value: port, source: "confirm_port") }
        let session = try Self.open(connection, cancel: cancel, hostKeyAlias: alias, notice: notice)
        do {
            try access.apply(to: session, host: host)
        } catch {
            session.close()
            throw error
        }
        return session
    }

    /// `hostKeyAlias`: the final hop's host key is looked up under this name and port.
    public static func open(_ connection: HostConnection, cancel: CancellationToken? = nil, hostKeyAlias: SSHTarget? = nil,
                            notice: @escaping @Sendable (_ target: String, _ text: String) -> Void) throws -> SSHSession {
        func configuration(_ c: HostConnection) -> SSHConfiguration {
            let target = "\(c.target)"
            var configuration = c.configuration { notice(target, $0) }
            configuration.cancel = cancel
            return configuration
        }
        var last = configuration(connection)
        last.hostKeyAlias = hostKeyAlias
        return try JumpRoute.session(last, through: connection.hops.map(configuration))
    }
}
