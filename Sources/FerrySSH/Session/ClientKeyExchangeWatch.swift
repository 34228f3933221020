/// Follows what libssh2 sends in the clear at a connection's start (its version line, then
/// unencrypted packets) to see the moment the key exchange is over on our side: the first byte
/// sent after our NEWKEYS is encrypted. In libssh2's handshake that byte can only be the
/// `ssh-userauth` service request, which the handshake then waits on for a round trip; knowing it
/// is out lets authentication start in that round trip (see `SSHSession.init`).
struct ClientKeyExchangeWatch {
    /// An encrypted packet has been sent (the key exchange is over on our side).
    private(set) var encryptedSent = false
    private var pending: [UInt8] = []
    private var versionSent = false
    private var newKeysSent = false
    /// Bytes that do not read as the SSH opening: stop looking (the session then never pipelines).
    private var lost = false

    mutating func sent(_ bytes: UnsafeRawBufferPointer) {
        guard !encryptedSent, !lost, !bytes.isEmpty else { return }
        if newKeysSent { encryptedSent = true; pending = []; return }
        pending.append(contentsOf: bytes)
        if !versionSent {
            guard let end = pending.firstIndex(of: 0x0A) else {
                if pending.count > 255 { lost = true; pending = [] }
                return
            }
            pending.removeFirst(end + 1)
            versionSent = true
        }
        // RFC 4253 6: uint32 packet_length, byte padding_length, payload (its first byte the
        // message number), padding; no MAC before the first NEWKEYS.
        while pending.count >= 6 {
            let length = pending[0..<4].reduce(0) { $0 << 8 | Int($1) }
            guard length >= 2, length <= 35_000 else { lost = true; pending = []; return }
            guard pending.count >= 4 + length else { return }
            let message = pending[5]
            pending.removeFirst(4 + length)
            if message == 21 {  // SSH_MSG_NEWKEYS
                newKeysSent = true
                encryptedSent = !pending.isEmpty
                pending = []
                return
            }
        }
    }
}
