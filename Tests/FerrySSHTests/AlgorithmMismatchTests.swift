@testable import FerrySSH
import FerryXCTestSupport
import XCTest

/// Hosts hardened to algorithms libssh2 1.10 lacks (AEAD ciphers, encrypt-then-MAC MACs): the
/// handshake fails with a message that says which, and what to allow.
final class AlgorithmMismatchTests: HostTestCase {
    /// The parser on what a server sends first, whole, cut anywhere, and corrupted: a KEXINIT or
    /// nil, never a crash.
    func testTheServersKexInitIsReadOrNothing() {
        func list(_ names: String) -> [UInt8] { let b = Array(names.utf8); return withUnsafeBytes(of: UInt32(b.count).bigEndian, Array.init) + b }
        var payload: [UInt8] = [20] + [UInt8](repeating: 7, count: 16)
        for names in ["curve25519-sha256", "ssh-ed25519", "aes128-ctr,aes256-ctr", "aes128-ctr", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-256", "none", "none", "", ""] { payload += list(names) }
        payload += [0, 0, 0, 0, 0]
        let padding = 8 - (payload.count + 5) % 8 + 4
        let packet = withUnsafeBytes(of: UInt32(payload.count + padding + 1).bigEndian, Array.init) + [UInt8(padding)] + payload + [UInt8](repeating: 0, count: padding)
        let whole = Array("a line before\r\nSSH-2.0-OpenSSH_9.2p1\r\n".utf8) + packet
        XCTAssertEqual(ServerKexInit.parse(whole), ServerKexInit(kex: ["curve25519-sha256"], hostKeys: ["ssh-ed25519"],
                                                                 ciphers: ["aes128-ctr", "aes256-ctr"], macs: ["hmac-sha2-256-etm@openssh.com"]))
        for cut in 0..<whole.count { XCTAssertNil(ServerKexInit.parse(Array(whole.prefix(cut))), "cut at \(cut)") }
        var rng = SplitMix64(seed: 11)
        for _ in 0..<2_000 {
            var bytes = whole
            for _ in 0..<1 + rng.below(4) { bytes[rng.below(bytes.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            _ = ServerKexInit.parse(bytes)
        }
    }

    private func handshakeError(_ options: [String], name: String) throws -> String {
        let host = try harness.startHost(name: name, sshdOptions: options)
        do {
            let session = try SSHSession(connecting: try harness.configuration(for: host))
            session.close()
            return ""
        } catch {
            return "\(error)"
        }
    }

    func testAnAEADOnlyHostIsNamedAsSuch() throws {
        let message = try handshakeError(["Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"], name: "aead-only")
        XCTAssertTrue(message.contains("no cipher in common: the host offers chacha20-poly1305@openssh.com, aes256-gcm@openssh.com; ferry (libssh2 1.10.0) has "), message)
        XCTAssertTrue(message.contains("e.g. Ciphers +aes"), message)
    }

    func testAnEtmOnlyHostIsNamedAsSuch() throws {
        let message = try handshakeError(["Ciphers aes256-ctr", "MACs hmac-sha2-256-etm@openssh.com"], name: "etm-only")
        XCTAssertTrue(message.contains("no MAC in common: the host offers hmac-sha2-256-etm@openssh.com; ferry (libssh2 1.10.0) has hmac-sha2-256"), message)
        XCTAssertTrue(message.contains("e.g. MACs +hmac-sha2-256"), message)
    }
}
