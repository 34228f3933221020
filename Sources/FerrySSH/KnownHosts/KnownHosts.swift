import CLibSSH2
import Foundation

/// An OpenSSH known_hosts file, read through libssh2 (plain, hashed and `[host]:port` entries).
final class KnownHosts {
    enum Verdict { case match, mismatch, notFound }

    let path: String
    private let handle: OpaquePointer

    init(path: String, session: OpaquePointer) throws {
        self.path = path
        guard let handle = libssh2_knownhost_init(session) else {
            throw SSHError.knownHostsFile(path: path, reason: "libssh2 could not allocate a known-hosts list")
        }
        self.handle = handle
        if FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.isReadableFile(atPath: path) else {
                libssh2_knownhost_free(handle)
                throw SSHError.knownHostsFile(path: path, reason: "not readable")
            }
            // libssh2 skips lines it cannot parse (e.g. @cert-authority), as OpenSSH ignores unknown ones.
            _ = libssh2_knownhost_readfile(handle, path, LIBSSH2_KNOWNHOST_FILE_OPENSSH)
        }
    }

    func free() { libssh2_knownhost_free(handle) }

    func check(host: String, port: Int, key: [UInt8], type: HostKeyType) -> Verdict {
        let mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | type.knownHostMask
        let rc = key.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { chars in
                libssh2_knownhost_checkp(handle, host, Int32(port), chars.baseAddress, chars.count, mask, nil)
            }
        }
        switch rc {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH: return .match
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH: return .mismatch
        default: return .notFound
        }
    }

    /// Key types recorded for this host: a probe key that matches nothing reports "mismatch"
    /// exactly when an entry of that type exists (this works for hashed entries too).
    func recordedKeyTypes(host: String, port: Int) -> [HostKeyType] {
        HostKeyType.allCases.filter { check(host: host, port: port, key: Array("ferry-probe".utf8), type: $0) == .mismatch }
    }

    /// Appends one `host keytype base64` line, leaving the rest of the file untouched.
    static func append(path: String, hostName: String, key: [UInt8]) throws {
        guard let keyType = wireKeyType(key) else {
            throw SSHError.knownHostsFile(path: path, reason: "cannot record a host key of unknown format")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o600)
        guard fd >= 0 else { throw SSHError.knownHostsFile(path: path, reason: "cannot open for appending: \(errnoText())") }
        defer { close(fd) }
        var line = "\(hostName) \(keyType) \(Data(key).base64EncodedString())\n"
        if needsLeadingNewline(path) { line = "\n" + line }
        let bytes = Array(line.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw SSHError.knownHostsFile(path: path, reason: "cannot append the new key: \(errnoText())")
        }
    }

    private static func needsLeadingNewline(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let end = try? handle.seekToEnd(), end > 0 else { return false }
        try? handle.seek(toOffset: end - 1)
        return handle.readData(ofLength: 1) != Data([0x0A])
    }

    /// The key type name at the start of an SSH wire-format public key.
    static func wireKeyType(_ key: [UInt8]) -> String? {
        guard key.count >= 4 else { return nil }
        let n = Int(key[0]) << 24 | Int(key[1]) << 16 | Int(key[2]) << 8 | Int(key[3])
        guard n > 0, n < 64, key.count >= 4 + n else { return nil }
        return String(bytes: key[4..<4 + n], encoding: .utf8)
    }
}

extension SSHSession {
    /// Puts the host key algorithms of types already recorded for this host first, as OpenSSH does;
    /// otherwise a host known by its ed25519 key that offers ecdsa first would look unknown.
    func preferHostKeyTypes(_ recorded: [HostKeyType]) {
        var supported = Set<String>()
        var algs: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        let count = libssh2_session_supported_algs(raw, LIBSSH2_METHOD_HOSTKEY, &algs)
        if count > 0, let algs {
            for i in 0..<Int(count) { if let p = algs[i] { supported.insert(String(cString: p)) } }
            libssh2_free(raw, algs)
        }
        let defaults = HostKeyType.allCases
        let ordered = recorded + defaults.filter { !recorded.contains($0) }
        let names = ordered.flatMap(\.methodNames).filter { supported.isEmpty || supported.contains($0) }
        if !names.isEmpty {
            _ = libssh2_session_method_pref(raw, LIBSSH2_METHOD_HOSTKEY, names.joined(separator: ","))
        }
    }

    func verifyHostKey(_ knownHosts: KnownHosts) throws {
        var length = 0
        var type: Int32 = 0
        guard let keyPointer = libssh2_session_hostkey(raw, &length, &type), length > 0 else {
            throw SSHError.handshake(host: target.host, port: target.port, reason: "the server sent no host key")
        }
        let key = Array(UnsafeRawBufferPointer(start: keyPointer, count: length))
        guard let keyType = HostKeyType(libssh2HostKeyType: type) else {
            throw SSHError.handshake(host: target.host, port: target.port, reason: "unsupported host key type \(type)")
        }
        let fingerprint = hostKeyFingerprint()
        let name = target.knownHostsName
        switch knownHosts.check(host: target.host, port: target.port, key: key, type: keyType) {
        case .match:
            return
        case .mismatch:
            throw SSHError.hostKeyChanged(host: name, keyType: keyType.displayName, fingerprint: fingerprint, knownHosts: knownHosts.path)
        case .notFound:
            guard configuration.hostKeyPolicy == .acceptNew else {
                throw SSHError.hostKeyUnknown(host: name, keyType: keyType.displayName, fingerprint: fingerprint, knownHosts: knownHosts.path)
            }
            try KnownHosts.append(path: knownHosts.path, hostName: name, key: key)
            FileHandle.standardError.write(Data("Permanently added '\(name)' (\(keyType.displayName), \(fingerprint)) to \(knownHosts.path).\n".utf8))
        }
    }

    /// `SHA256:` + unpadded base64, as OpenSSH prints fingerprints.
    public func hostKeyFingerprint() -> String {
        guard let hash = libssh2_hostkey_hash(raw, LIBSSH2_HOSTKEY_HASH_SHA256) else { return "SHA256:?" }
        let bytes = Data(UnsafeRawBufferPointer(start: hash, count: 32))
        var b64 = bytes.base64EncodedString()
        while b64.hasSuffix("=") { b64.removeLast() }
        return "SHA256:" + b64
    }
}
