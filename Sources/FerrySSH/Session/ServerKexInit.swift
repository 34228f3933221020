import CLibSSH2
#if canImport(Glibc)
import Glibc
#endif

/// What the server offered in its first key-exchange message, read from the clear-text start of
/// the connection. libssh2 says only "Unable to exchange encryption keys" when nothing matches;
/// with this ferry can say what the host offers, and what to allow (hosts hardened to AEAD
/// ciphers and encrypt-then-MAC MACs only are common; libssh2 1.10 has neither).
package struct ServerKexInit: Equatable {
    package var kex: [String]
    package var hostKeys: [String]
    package var ciphers: [String]
    package var macs: [String]

    /// Parses the bytes a server sent first: optional lines, its version line, then the KEXINIT
    /// packet. nil when they are not (yet) all there or are not a KEXINIT.
    package static func parse(_ bytes: [UInt8]) -> ServerKexInit? {
        // RFC 4253 4.2: lines before the version line; the version line ends with CR LF.
        var i = 0
        while true {
            guard let end = bytes[i...].firstIndex(of: 0x0A) else { return nil }
            let isVersion = bytes[i...].starts(with: Array("SSH-".utf8))
            i = end + 1
            if isVersion { break }
        }
        func uint32(_ at: Int) -> Int? {
            guard at >= 0, at + 4 <= bytes.count else { return nil }
            return bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) }
        }
        guard let length = uint32(i), length >= 2, length <= 35_000, i + 4 + length <= bytes.count else { return nil }
        let padding = Int(bytes[i + 4])
        let payloadEnd = i + 4 + length - padding
        var at = i + 5
        guard payloadEnd > at, bytes[at] == 20 else { return nil }  // SSH_MSG_KEXINIT
        at += 1 + 16  // the cookie
        var lists: [[String]] = []
        for _ in 0..<4 + 2 {  // kex, host key, ciphers c→s and s→c, MACs c→s and s→c (the rest unused)
            guard let n = uint32(at), at + 4 + n <= payloadEnd else { return nil }
            let text = String(decoding: bytes[(at + 4)..<(at + 4 + n)], as: UTF8.self)
            lists.append(text.split(separator: ",").map(String.init))
            at += 4 + n
        }
        return ServerKexInit(kex: lists[0], hostKeys: lists[1], ciphers: lists[2], macs: lists[4])
    }

    /// Why a handshake that failed had nothing in common, naming the first kind with no overlap
    /// between what the server offers and what `supported` (libssh2's lists) has; nil if each
    /// kind overlaps (the failure was something else).
    package func mismatch(supported: (Int32) -> [String]) -> String? {
        let kinds: [(String, String, [String], Int32)] = [
            ("key exchange method", "KexAlgorithms", kex, LIBSSH2_METHOD_KEX),
            ("host key type", "HostKeyAlgorithms", hostKeys, LIBSSH2_METHOD_HOSTKEY),
            ("cipher", "Ciphers", ciphers, LIBSSH2_METHOD_CRYPT_CS),
            ("MAC", "MACs", macs, LIBSSH2_METHOD_MAC_CS),
        ]
        for (what, keyword, offered, method) in kinds {
            let ours = supported(method)
            guard !ours.isEmpty, !offered.contains(where: ours.contains) else { continue }
            return "no \(what) in common: the host offers \(offered.joined(separator: ", ")); "
                + "ferry (libssh2 \(LIBSSH2_VERSION)) has \(ours.joined(separator: ", ")). "
                + "Allow one of ferry's in the host's sshd_config, e.g. \(keyword) +\(ours[0])"
        }
        return nil
    }
}
