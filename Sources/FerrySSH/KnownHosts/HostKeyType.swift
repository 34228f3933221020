import CLibSSH2

/// The host key types ferry understands, in OpenSSH's default order of preference.
enum HostKeyType: CaseIterable {
    case ed25519, ecdsa256, ecdsa384, ecdsa521, rsa

    init?(libssh2HostKeyType type: Int32) {
        switch type {
        case LIBSSH2_HOSTKEY_TYPE_ED25519: self = .ed25519
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: self = .ecdsa256
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: self = .ecdsa384
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: self = .ecdsa521
        case LIBSSH2_HOSTKEY_TYPE_RSA: self = .rsa
        default: return nil
        }
    }

    /// From the key type name in a known_hosts line or a key blob.
    init?(wireName: String) {
        guard let t = HostKeyType.allCases.first(where: { $0.methodNames.last == wireName }) else { return nil }
        self = t
    }

    /// Host key algorithm names that produce this key type.
    var methodNames: [String] {
        switch self {
        case .ed25519: return ["ssh-ed25519"]
        case .ecdsa256: return ["ecdsa-sha2-nistp256"]
        case .ecdsa384: return ["ecdsa-sha2-nistp384"]
        case .ecdsa521: return ["ecdsa-sha2-nistp521"]
        case .rsa: return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        }
    }

    /// As OpenSSH prints it: "ED25519 key fingerprint is …".
    var displayName: String {
        switch self {
        case .ed25519: return "ED25519"
        case .ecdsa256, .ecdsa384, .ecdsa521: return "ECDSA"
        case .rsa: return "RSA"
        }
    }
}
