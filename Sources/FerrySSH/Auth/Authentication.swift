import CLibSSH2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension SSHSession {
    /// The identity files first (signed by the agent when it holds the key, so an encrypted file
    /// needs no passphrase), then the agent's other keys; fails listing every method tried.
    /// Stricter than OpenSSH, which offers every agent key first and can exhaust the server's
    /// MaxAuthTries before reaching the key the operator named. The server's method list is asked
    /// for only when every key failed (for the error): asking first costs a round trip.
    func authenticate() throws {
        let user = target.user
        var tried: [String] = []
        var notes: [String] = []
        var triedRSA = false

        let agent = configuration.agentSocket.flatMap { AgentConnection(session: raw, socket: $0) }
        defer { agent?.close() }
        if let socket = configuration.agentSocket, agent == nil { tried.append("ssh-agent at \(socket) (not reachable)") }
        var agentKeysUsed = Set<[UInt8]>()

        for path in configuration.identityCandidates {
            let identity = try IdentityFile(path: path)
            if identity.type == .rsa { triedRSA = true }
            if let agent, let blob = identity.publicKeyBlob, let held = agent.identity(blob: blob) {
                agentKeysUsed.insert(blob)
                if try agentUserauth(agent, held) { return }
                tried.append("\(path) (via ssh-agent; refused)")
                continue
            }
            var passphrase: String?
            if identity.encrypted {
                passphrase = passphraseFor(path)
                if passphrase == nil {
                    tried.append("\(path) (encrypted; no passphrase given)")
                    notes.append("Set FERRY_SSH_PASSPHRASE, add the key to ssh-agent, or run ferry from a terminal to unlock \(path).")
                    continue
                }
            }
            let rc = try userauthFromFile(path: path, passphrase: passphrase)
            if rc == 0 { return }
            if rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED && identity.encrypted {
                tried.append("\(path) (could not be decrypted: wrong passphrase?)")
            } else {
                tried.append("\(path) (refused)")
            }
        }

        if let agent {
            var count = 0
            for held in agent.identities() where !agentKeysUsed.contains(held.blob) {
                count += 1
                if KnownHosts.wireKeyType(held.blob) == "ssh-rsa" { triedRSA = true }
                if try agentUserauth(agent, held) { return }
            }
            if count > 0 || agentKeysUsed.isEmpty { tried.append("ssh-agent (\(count) \(agentKeysUsed.isEmpty ? "" : "other ")key\(count == 1 ? "" : "s") refused)") }
        }

        if triedRSA {
            notes.append("""
            RSA keys cannot work here: the libssh2 1.10 ferry uses signs with RSA only as SHA-1 (ssh-rsa), which \
            OpenSSH 8.8 and later refuse. Use an ed25519 or ecdsa key (ssh-keygen -t ed25519) and add it to the target.
            """)
        }
        let serverMethods: String
        switch Result(catching: { try listMethods(user) }) {
        case .success(nil): return  // "none" was accepted
        case .success(let methods?): serverMethods = methods
        case .failure: serverMethods = "(not known: the server closed the connection)"
        }
        throw SSHError.authenticationFailed(target: target.description, tried: tried, serverMethods: serverMethods, notes: notes)
    }

    /// The methods the server offers, or nil when it let us in without any.
    private func listMethods(_ user: String) throws -> String? {
        while true {
            let list = try authenticationStep({ $0 == nil && libssh2_session_last_errno(raw) == LIBSSH2_ERROR_EAGAIN }) {
                libssh2_userauth_list(raw, user, UInt32(user.utf8.count))
            }
            if let p = list { return String(cString: p) }
            if libssh2_userauth_authenticated(raw) != 0 { return nil }
            let rc = libssh2_session_last_errno(raw)
            guard rc == LIBSSH2_ERROR_EAGAIN else { throw failure("list authentication methods", rc) }
            try waitSocket(cancel: configuration.cancel)
        }
    }

    /// true: accepted; false: refused. A lost connection is thrown as itself.
    private func agentUserauth(_ agent: AgentConnection, _ identity: AgentConnection.Identity) throws -> Bool {
        let user = target.user
        while true {
            let rc = try authenticationStep({ $0 == LIBSSH2_ERROR_EAGAIN }) { libssh2_agent_userauth(agent.handle, user, identity.pointer) }
            if rc == 0 { return true }
            if rc == LIBSSH2_ERROR_EAGAIN { try waitSocket(cancel: configuration.cancel); continue }
            if isConnectionError(rc) { throw failure("authentication", rc) }
            return false
        }
    }

    private func userauthFromFile(path: String, passphrase: String?) throws -> Int32 {
        let user = target.user
        while true {
            let rc = try authenticationStep({ $0 == LIBSSH2_ERROR_EAGAIN }) {
                libssh2_userauth_publickey_fromfile_ex(raw, user, UInt32(user.utf8.count), nil, path, passphrase)
            }
            if rc == LIBSSH2_ERROR_EAGAIN { try waitSocket(cancel: configuration.cancel); continue }
            if isConnectionError(rc) { throw failure("authentication", rc) }
            return rc
        }
    }

    private func isConnectionError(_ rc: Int32) -> Bool {
        io.peerClosed || Self.socketErrors.contains(rc) || rc == LIBSSH2_ERROR_TIMEOUT
    }

    private func passphraseFor(_ path: String) -> String? {
        switch configuration.passphrase {
        case .fixed(let p): return p
        case .none: return nil
        case .environmentOrPrompt:
            if let p = SSHConfiguration.environment("FERRY_SSH_PASSPHRASE") { return p }
            return Passphrase.forKey(path)
        }
    }
}

/// An ssh-agent connection and the keys it holds.
final class AgentConnection {
    struct Identity {
        let pointer: UnsafeMutablePointer<libssh2_agent_publickey>
        let blob: [UInt8]
    }

    let handle: OpaquePointer

    init?(session: OpaquePointer, socket: String) {
        guard let agent = libssh2_agent_init(session) else { return nil }
        libssh2_agent_set_identity_path(agent, socket)
        guard libssh2_agent_connect(agent) == 0, libssh2_agent_list_identities(agent) == 0 else {
            libssh2_agent_free(agent)
            return nil
        }
        handle = agent
    }

    func identities() -> [Identity] {
        var out: [Identity] = []
        var previous: UnsafeMutablePointer<libssh2_agent_publickey>?
        while true {
            var identity: UnsafeMutablePointer<libssh2_agent_publickey>?
            guard libssh2_agent_get_identity(handle, &identity, previous) == 0, let identity else { break }
            previous = identity
            out.append(Identity(pointer: identity, blob: Array(UnsafeBufferPointer(start: identity.pointee.blob, count: Int(identity.pointee.blob_len)))))
        }
        return out
    }

    func identity(blob: [UInt8]) -> Identity? { identities().first { $0.blob == blob } }

    func close() {
        libssh2_agent_disconnect(handle)
        libssh2_agent_free(handle)
    }
}
