import FerrySSH
import Synchronization

/// Root on the hosts whose login user is not root: one sudo password (or none) for a whole fleet,
/// and what each host's sudo made of it. Each host is probed once, on its first session; its
/// later sessions (reconnects while following a rebuild) reuse the answer, and a host that
/// rejected the password fails again without another try.
public final class SudoAccess: Sendable {
    public let password: SudoPassword?
    private let hosts = Mutex<[String: Entry]>([:])

    private final class Entry: Sendable {
        let state = Mutex<Result<Sudo, SudoError>?>(nil)
    }

    public init(password: SudoPassword?) { self.password = password }

    /// Whether a login as `user` needs sudo for ferry's commands (anyone but root).
    public static func needed(user: String) -> Bool { user != "root" }

    /// Sets `session` up to run every command as root. Throws `SudoError` (or the probe's
    /// connection error, which is not remembered).
    public func apply(to session: SSHSession, host: Fleet.Host) throws {
        guard Self.needed(user: session.target.user) else { return }
        let entry = hosts.withLock { hosts in
            if let known = hosts[host.name] { return known }
            let made = Entry()
            hosts[host.name] = made
            return made
        }
        let password = self.password
        // Held while probing: another session to the host waits for the first one's answer.
        let sudo = try entry.state.withLock { state throws -> Sudo in
            if let state { return try state.get() }
            do {
                let sudo = try Sudo.probe(session, password: password)
                state = .success(sudo)
                return sudo
            } catch let error as SudoError {
                state = .failure(error)
                throw error
            }
        }
        session.sudo = sudo
    }
}
