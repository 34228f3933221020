/// Everything that can go wrong talking to a target, with messages an operator can act on.
public enum SSHError: Error, Equatable, CustomStringConvertible {
    case resolve(host: String, reason: String)
    case connect(host: String, port: Int, reason: String)
    case connectTimeout(host: String, port: Int, seconds: Double)
    case handshakeTimeout(host: String, port: Int, seconds: Double)
    case handshake(host: String, port: Int, reason: String)
    case hostKeyUnknown(host: String, keyType: String, fingerprint: String, knownHosts: String)
    case hostKeyChanged(host: String, keyType: String, fingerprint: String, knownHosts: String)
    case hostKeyRevoked(host: String, keyType: String, fingerprint: String, knownHosts: String)
    case knownHostsFile(path: String, reason: String)
    case authenticationFailed(target: String, tried: [String], serverMethods: String, notes: [String])
    case identityFile(path: String, reason: String)
    case peerUnresponsive(target: String, seconds: Double)
    case connectionLost(target: String, reason: String)
    /// The channel closed without an exit status or signal (as `ssh`, this is never success).
    case noExitStatus(target: String)
    /// The login shell did not run the command's wrapper in time (a blocking ~/.bashrc).
    case loginShellSilent(target: String, seconds: Double)
    case protocolFailure(target: String, operation: String, code: Int32, message: String)
    /// sshd would not open a `direct-tcpip` channel to `destination`.
    case channelRefused(target: String, destination: String, refusal: ChannelRefusal)
    case cancelled

    public var description: String {
        switch self {
        case .resolve(let host, let reason):
            return "cannot resolve host '\(host)': \(reason)"
        case .connect(let host, let port, let reason):
            return "cannot connect to \(host) port \(port): \(reason)"
        case .connectTimeout(let host, let port, let s):
            return "cannot connect to \(host) port \(port): no answer within \(format(s)) s (host down or port filtered?); raise --connect-timeout if the link is slow"
        case .handshakeTimeout(let host, let port, let s):
            return "\(host) port \(port) accepted the connection but did not complete the SSH handshake within \(format(s)) s; is an SSH server listening there?"
        case .handshake(let host, let port, let reason):
            return "SSH handshake with \(host) port \(port) failed: \(reason)"
        case .hostKeyUnknown(let host, let type, let fp, let file):
            return """
            host key verification failed: no \(type) host key is known for \(host) in \(file), and the policy is strict.
            The \(type) key fingerprint is \(fp).
            Check this fingerprint out of band, then run once with --host-key-policy accept-new (or add the key to \(file)).
            """
        case .hostKeyChanged(let host, let type, let fp, let file):
            return """
            host key verification failed: REMOTE HOST IDENTIFICATION HAS CHANGED for \(host).
            The \(type) key it sent has fingerprint \(fp), which does not match the \(type) key recorded in \(file).
            Someone could be intercepting the connection, or the host was reinstalled. If you know it was reinstalled, \
            remove the old key with: ssh-keygen -R '\(host)' -f \(file)
            """
        case .hostKeyRevoked(let host, let type, let fp, let file):
            return "host key verification failed: the \(type) key \(host) sent (\(fp)) is marked @revoked in \(file) or the global known_hosts; refusing to connect."
        case .knownHostsFile(let path, let reason):
            return "known_hosts file \(path): \(reason)"
        case .authenticationFailed(let target, let tried, let methods, let notes):
            var text = "\(target): authentication failed; tried: \(tried.isEmpty ? "nothing (no agent, no identity file)" : tried.joined(separator: ", "))"
            if !methods.isEmpty { text += "; the server accepts: \(methods)" }
            for note in notes { text += "\n\(note)" }
            return text
        case .identityFile(let path, let reason):
            return "identity file \(path): \(reason)"
        case .peerUnresponsive(let target, let s):
            return "\(target): the connection is dead (no answer to keepalives for \(format(s)) s)"
        case .connectionLost(let target, let reason):
            return "\(target): lost the connection: \(reason)"
        case .loginShellSilent(let target, let s):
            return "\(target): the login shell did not start the command within \(format(s)) s (the connect timeout): something in the deploying user's ~/.bashrc or profile blocks or waits for input; a non-interactive session must run its command at once"
        case .noExitStatus(let target):
            return "\(target): the command's channel closed without an exit status; its outcome is unknown"
        case .protocolFailure(let target, let op, let code, let message):
            return "\(target): \(op) failed: \(message) (libssh2 error \(code))"
        case .channelRefused(let target, let destination, let refusal):
            return "\(target): sshd would not forward a connection to \(destination): \(refusal)"
        case .cancelled:
            return "cancelled"
        }
    }
}

func format(_ seconds: Double) -> String {
    seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
}
