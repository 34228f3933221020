import CLibSSH2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SSHSession {
    /// ssh-agent first, then identity files; fails listing every method tried.
    func authenticate() throws {
        let user = target.user
        let methodsPointer = try? retryingPointer("list auth methods") {
            libssh2_userauth_list(raw, user, UInt32(user.utf8.count))
        }
        if libssh2_userauth_authenticated(raw) != 0 { return }
        let serverMethods = methodsPointer.map { String(cString: $0) } ?? ""
        var tried: [String] = []
        var notes: [String] = []
        var triedRSA = false

        if let socket = configuration.agentSocket {
            switch try agentAuthenticate(socket: socket) {
            case .success: return
            case .failed(let description, let rsa):
                tried.append(description)
                triedRSA = triedRSA || rsa
            }
        }

        for path in configuration.identityCandidates {
            let identity = try IdentityFile(path: path)
            if identity.type == .rsa { triedRSA = true }
            var passphrase: String?
            if identity.encrypted {
                passphrase = passphraseFor(path)
                if passphrase == nil {
                    tried.append("\(path) (encrypted; no passphrase given)")
                    notes.append("Set FERRY_SSH_PASSPHRASE or run ferry from a terminal to unlock \(path).")
                    continue
                }
            }
            let rc = userauthFromFile(path: path, passphrase: passphrase)
            if rc == 0 { return }
            if rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED && identity.encrypted {
                tried.append("\(path) (could not be decrypted: wrong passphrase?)")
            } else {
                tried.append("\(path) (refused)")
            }
        }

        if triedRSA {
            notes.append("""
            RSA keys cannot work here: the libssh2 1.10 ferry uses signs with RSA only as SHA-1 (ssh-rsa), which \
            OpenSSH 8.8 and later refuse. Use an ed25519 or ecdsa key (ssh-keygen -t ed25519) and add it to the target.
            """)
        }
        throw SSHError.authenticationFailed(target: target.description, tried: tried, serverMethods: serverMethods, notes: notes)
    }

    private enum AgentResult { case success, failed(String, rsa: Bool) }

    private func agentAuthenticate(socket path: String) throws -> AgentResult {
        guard let agent = libssh2_agent_init(raw) else { return .failed("ssh-agent (could not start)", rsa: false) }
        defer {
            libssh2_agent_disconnect(agent)
            libssh2_agent_free(agent)
        }
        libssh2_agent_set_identity_path(agent, path)
        guard libssh2_agent_connect(agent) == 0 else {
            return .failed("ssh-agent at \(path) (not reachable)", rsa: false)
        }
        guard libssh2_agent_list_identities(agent) == 0 else {
            return .failed("ssh-agent at \(path) (could not list keys)", rsa: false)
        }
        var previous: UnsafeMutablePointer<libssh2_agent_publickey>?
        var count = 0
        var sawRSA = false
        while true {
            var identity: UnsafeMutablePointer<libssh2_agent_publickey>?
            let rc = libssh2_agent_get_identity(agent, &identity, previous)
            guard rc == 0, let identity else { break }
            previous = identity
            count += 1
            let blob = Array(UnsafeBufferPointer(start: identity.pointee.blob, count: Int(identity.pointee.blob_len)))
            if KnownHosts.wireKeyType(blob) == "ssh-rsa" { sawRSA = true }
            let user = target.user
            let status = try retrying("agent authentication") {
                let r = libssh2_agent_userauth(agent, user, identity)
                return r == LIBSSH2_ERROR_EAGAIN ? r : (r == 0 ? 0 : 1)
            }
            if status == 0 { return .success }
        }
        return .failed("ssh-agent (\(count) key\(count == 1 ? "" : "s") refused)", rsa: sawRSA)
    }

    private func userauthFromFile(path: String, passphrase: String?) -> Int32 {
        let user = target.user
        while true {
            let rc = libssh2_userauth_publickey_fromfile_ex(raw, user, UInt32(user.utf8.count), nil, path, passphrase)
            guard rc == LIBSSH2_ERROR_EAGAIN else { return rc }
            do { try waitSocket() } catch { return -1 }
        }
    }

    private func passphraseFor(_ path: String) -> String? {
        switch configuration.passphrase {
        case .fixed(let p): return p
        case .none: return nil
        case .environmentOrPrompt:
            if let p = SSHConfiguration.environment("FERRY_SSH_PASSPHRASE") { return p }
            return Passphrase.prompt("Enter passphrase for \(path): ")
        }
    }
}
