import Foundation

/// What ferry can tell about a private key file without decrypting it.
struct IdentityFile {
    enum KeyType: Equatable { case ed25519, ecdsa, rsa, other(String) }

    let path: String
    let type: KeyType
    let encrypted: Bool
    /// The public key (wire format) from `PATH.pub` or the OpenSSH private key's clear header.
    private(set) var publicKeyBlob: [UInt8]?

    init(path: String) throws {
        self.path = path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SSHError.identityFile(path: path, reason: FileManager.default.fileExists(atPath: path) ? "not readable" : "no such file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SSHError.identityFile(path: path, reason: "not a PEM or OpenSSH private key")
        }
        if let pub = FileManager.default.contents(atPath: path + ".pub").flatMap({ String(data: $0, encoding: .utf8) }) {
            let fields = pub.split(whereSeparator: { $0 == " " || $0 == "\n" })
            if fields.count >= 2 { publicKeyBlob = Data(base64Encoded: String(fields[1])).map(Array.init) }
        }
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
            let parsed = try IdentityFile.parseOpenSSH(text, path: path)
            (type, encrypted) = (parsed.0, parsed.1)
            if publicKeyBlob == nil { publicKeyBlob = parsed.2 }
        } else if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
            type = .rsa
            encrypted = text.contains("ENCRYPTED")
        } else if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            type = .ecdsa
            encrypted = text.contains("ENCRYPTED")
        } else if text.contains("PRIVATE KEY-----") {
            type = .other("PKCS#8")
            encrypted = text.contains("ENCRYPTED")
        } else {
            throw SSHError.identityFile(path: path, reason: "not a PEM or OpenSSH private key")
        }
    }

    /// openssh-key-v1: magic, cipher name, kdf name, kdf options, key count, first public key.
    private static func parseOpenSSH(_ text: String, path: String) throws -> (KeyType, Bool, [UInt8]) {
        let body = text.split(separator: "\n")
            .filter { !$0.hasPrefix("-----") }
            .joined()
        guard let blob = Data(base64Encoded: body, options: .ignoreUnknownCharacters).map(Array.init) else {
            throw SSHError.identityFile(path: path, reason: "damaged OpenSSH private key (bad base64)")
        }
        var reader = WireReader(blob)
        let magic = Array("openssh-key-v1\0".utf8)
        guard blob.starts(with: magic) else { throw SSHError.identityFile(path: path, reason: "damaged OpenSSH private key") }
        reader.skip(magic.count)
        guard let cipher = reader.string(), reader.string() != nil, reader.string() != nil,
              reader.uint32() != nil, let pub = reader.string()
        else { throw SSHError.identityFile(path: path, reason: "damaged OpenSSH private key") }
        var pubReader = WireReader(pub)
        let name = pubReader.string().map { String(decoding: $0, as: UTF8.self) } ?? "?"
        let type: KeyType
        switch name {
        case "ssh-ed25519": type = .ed25519
        case let n where n.hasPrefix("ecdsa-sha2-"): type = .ecdsa
        case "ssh-rsa": type = .rsa
        default: type = .other(name)
        }
        return (type, String(decoding: cipher, as: UTF8.self) != "none", pub)
    }
}

struct WireReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func skip(_ n: Int) { offset += n }

    mutating func uint32() -> UInt32? {
        guard offset + 4 <= bytes.count else { return nil }
        defer { offset += 4 }
        return bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func string() -> [UInt8]? {
        guard let n = uint32(), offset + Int(n) <= bytes.count else { return nil }
        defer { offset += Int(n) }
        return Array(bytes[offset..<offset + Int(n)])
    }
}
