import CLibSSH2
import Crypto
import Foundation

/// OpenSSH's known_hosts files, read and matched as `ssh` does: the user file and the global
/// one(s) together; plain, wildcard (`*`, `?`, `!negated`) and hashed (`|1|salt|hash`) host
/// patterns; `[host]:port` names for ports other than 22 (and only those); `@revoked` keys
/// refused; `@cert-authority` lines ignored (ferry does not use certificates). A line ferry
/// cannot read is skipped with a warning, never the rest of the file after it.
package struct KnownHosts {
    enum Verdict: Equatable { case match, mismatch, revoked, notFound }

    struct Entry {
        enum Marker { case none, revoked, certAuthority }
        enum Hosts { case patterns([String]), hashed(salt: [UInt8], hash: [UInt8]) }

        var marker: Marker
        var hosts: Hosts
        var key: [UInt8]
        var keyType: String

        func matches(_ name: String) -> Bool {
            switch hosts {
            case .hashed(let salt, let hash):
                let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Array(name.utf8), using: SymmetricKey(data: salt))
                return Array(mac) == hash
            case .patterns(let patterns):
                var positive = false
                for pattern in patterns {
                    let negated = pattern.hasPrefix("!")
                    let body = negated ? String(pattern.dropFirst()) : pattern
                    if KnownHosts.glob(Array(body.lowercased().utf8)[...], Array(name.utf8)[...]) {
                        if negated { return false }
                        positive = true
                    }
                }
                return positive
            }
        }
    }

    let userFile: String
    private(set) var entries: [Entry] = []
    private(set) var warnings: [String] = []
    /// Whether the user file holds hashed names: new entries are then written hashed too.
    private(set) var userFileHashed = false

    /// A file's text, read as the user file would be (for the fuzzer): the entries and warnings.
    package static func parse(_ bytes: [UInt8]) -> (entries: Int, warnings: [String]) {
        var k = KnownHosts(empty: "fuzz")
        k.read(bytes, path: "fuzz", isUserFile: true)
        return (k.entries.count, k.warnings)
    }

    private init(empty path: String) { userFile = path }

    /// Whether `host:port` with `key` is accepted by these entries (for the fuzzer).
    package static func verdict(_ bytes: [UInt8], host: String, port: Int, key: [UInt8]) -> String {
        var k = KnownHosts(empty: "fuzz")
        k.read(bytes, path: "fuzz", isUserFile: true)
        return "\(k.check(host: host, port: port, key: key))"
    }

    init(userFile: String, globalFiles: [String]) throws {
        self.userFile = userFile
        for (i, path) in ([userFile] + globalFiles).enumerated() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            if isDirectory.boolValue { throw SSHError.knownHostsFile(path: path, reason: "is a directory, not a known_hosts file") }
            guard let data = FileManager.default.contents(atPath: path) else {
                if i > 0 { continue }  // an unreadable global file is skipped, as ssh does
                throw SSHError.knownHostsFile(path: path, reason: "not readable")
            }
            read(Array(data), path: path, isUserFile: i == 0)
        }
    }

    /// The name ssh looks up: `host`, or `[host]:port` off port 22. Lower-cased, as ssh does.
    static func lookupName(host: String, port: Int) -> String {
        SSHTarget(host: host, port: port).knownHostsName
    }

    /// As ssh: `[host]:port` decides; off port 22 a plain `host` entry with this very key also
    /// confirms it (a plain entry with another key is no mismatch there).
    func check(host: String, port: Int, key: [UInt8]) -> Verdict {
        let verdict = check(name: Self.lookupName(host: host, port: port), key: key)
        if verdict == .notFound && port != 22, check(name: Self.lookupName(host: host, port: 22), key: key) == .match {
            return .match
        }
        return verdict
    }

    private func check(name: String, key: [UInt8]) -> Verdict {
        let type = Self.wireKeyType(key)
        var verdict = Verdict.notFound
        for e in entries where e.matches(name) {
            switch e.marker {
            case .revoked where e.key == key: return .revoked
            case .revoked, .certAuthority: continue
            case .none:
                if e.key == key { verdict = .match }
                else if e.keyType == type && verdict != .match { verdict = .mismatch }
            }
        }
        return verdict
    }

    /// Key types recorded for this host, in file order (OpenSSH prefers them in the handshake).
    func recordedKeyTypes(host: String, port: Int) -> [HostKeyType] {
        let name = Self.lookupName(host: host, port: port)
        var types: [HostKeyType] = []
        for e in entries where e.marker == .none && e.matches(name) {
            if let t = HostKeyType(wireName: e.keyType), !types.contains(t) { types.append(t) }
        }
        return types
    }

    private mutating func read(_ bytes: [UInt8], path: String, isUserFile: Bool) {
        for (n, rawLine) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            var fields = rawLine.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }).map { String(decoding: $0, as: UTF8.self) }
            guard let first = fields.first, !first.hasPrefix("#") else { continue }
            var marker = Entry.Marker.none
            if first.hasPrefix("@") {
                switch first {
                case "@revoked": marker = .revoked
                case "@cert-authority": marker = .certAuthority
                default:
                    warnings.append("\(path):\(n + 1): unknown marker \(first); line ignored")
                    continue
                }
                fields.removeFirst()
            }
            guard fields.count >= 3, let key = Data(base64Encoded: fields[2]).map(Array.init),
                  let type = Self.wireKeyType(key), type == fields[1] else {
                warnings.append("\(path):\(n + 1): not a known_hosts entry ferry can read (expected: hosts keytype base64-key); line ignored")
                continue
            }
            let hosts: Entry.Hosts
            if fields[0].hasPrefix("|1|") {
                let parts = fields[0].split(separator: "|", omittingEmptySubsequences: false)
                guard parts.count == 4, let salt = Data(base64Encoded: String(parts[2])), let hash = Data(base64Encoded: String(parts[3])),
                      salt.count == 20, hash.count == 20 else {
                    warnings.append("\(path):\(n + 1): malformed hashed host name; line ignored")
                    continue
                }
                hosts = .hashed(salt: Array(salt), hash: Array(hash))
                if isUserFile { userFileHashed = true }
            } else {
                hosts = .patterns(fields[0].split(separator: ",").map(String.init))
            }
            entries.append(Entry(marker: marker, hosts: hosts, key: key, keyType: type))
        }
    }

    /// OpenSSH's match_pattern: `*` any run, `?` one character. Iterative, with one backtrack
    /// point, so a pattern of many stars cannot take exponential time (the fuzzer found one that
    /// took over a minute with the recursive form).
    static func glob(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
        let p = Array(pattern), s = Array(text)
        var pi = 0, si = 0, star = -1, mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || (p[pi] != UInt8(ascii: "*") && p[pi] == s[si])) {
                pi += 1
                si += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = si
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// The key type name at the start of an SSH wire-format public key.
    static func wireKeyType(_ key: [UInt8]) -> String? {
        guard key.count >= 4 else { return nil }
        let n = Int(key[0]) << 24 | Int(key[1]) << 16 | Int(key[2]) << 8 | Int(key[3])
        guard n > 0, n < 64, key.count >= 4 + n else { return nil }
        return String(bytes: key[4..<4 + n], encoding: .utf8)
    }

    /// Records a new key under an exclusive lock on the user file, after reading it again:
    /// parallel runners may add the same host at once. Returns the verdict found under the
    /// lock when another writer got there first.
    static func record(host: String, port: Int, key: [UInt8], userFile path: String, globalFiles: [String]) throws -> Verdict {
        guard let keyType = wireKeyType(key) else {
            throw SSHError.knownHostsFile(path: path, reason: "cannot record a host key of unknown format")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SSHError.knownHostsFile(path: path, reason: "cannot open for appending: \(errnoText())") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw SSHError.knownHostsFile(path: path, reason: "cannot lock: \(errnoText())") }
        let now = try KnownHosts(userFile: path, globalFiles: globalFiles)
        let verdict = now.check(host: host, port: port, key: key)
        guard verdict == .notFound else { return verdict }

        let name = lookupName(host: host, port: port)
        var hostField = name
        if now.userFileHashed {
            let salt = (0..<20).map { _ in UInt8.random(in: 0...255) }
            let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Array(name.utf8), using: SymmetricKey(data: salt))
            hostField = "|1|\(Data(salt).base64EncodedString())|\(Data(mac).base64EncodedString())"
        }
        var line = "\(hostField) \(keyType) \(Data(key).base64EncodedString())\n"
        let size = lseek(fd, 0, SEEK_END)
        if size > 0 {
            var last: UInt8 = 0
            if pread(fd, &last, 1, size - 1) == 1, last != 0x0A { line = "\n" + line }
        }
        let bytes = Array(line.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw SSHError.knownHostsFile(path: path, reason: "cannot append the new key: \(errnoText())")
        }
        return .notFound
    }
}

extension SSHSession {
    /// Puts the host key algorithms of types already recorded for this host first, as OpenSSH does;
    /// otherwise a host known by its ed25519 key that offers ecdsa first would look unknown.
    func preferHostKeyTypes(_ recorded: [HostKeyType]) {
        let supported = Set(supportedAlgorithms(LIBSSH2_METHOD_HOSTKEY))
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
        let target = configuration.hostKeyAlias ?? self.target
        let name = KnownHosts.lookupName(host: target.host, port: target.port)
        var verdict = knownHosts.check(host: target.host, port: target.port, key: key)
        if verdict == .notFound && configuration.hostKeyPolicy == .acceptNew {
            verdict = try KnownHosts.record(host: target.host, port: target.port, key: key, userFile: knownHosts.userFile,
                                            globalFiles: configuration.globalKnownHostsFiles)
            if verdict == .notFound {
                configuration.notice("Permanently added '\(name)' (\(keyType.displayName), \(fingerprint)) to \(knownHosts.userFile).")
                return
            }
        }
        switch verdict {
        case .match:
            return
        case .revoked:
            throw SSHError.hostKeyRevoked(host: name, keyType: keyType.displayName, fingerprint: fingerprint, knownHosts: knownHosts.userFile)
        case .mismatch:
            throw SSHError.hostKeyChanged(host: name, keyType: keyType.displayName, fingerprint: fingerprint, knownHosts: knownHosts.userFile)
        case .notFound:
            throw SSHError.hostKeyUnknown(host: name, keyType: keyType.displayName, fingerprint: fingerprint, knownHosts: knownHosts.userFile)
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
