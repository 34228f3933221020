/// What a target sends (file names, a rebuild's output, stderr, error texts) made safe to show on
/// the operator's terminal, as rsync shows names: valid UTF-8 text stays as it is (Nix's `…`
/// too); C0 controls but tab, DEL, the C1 controls U+0080–U+009F (a lone `\u{9B}` is a CSI to
/// many terminals) and every byte that is not part of a valid sequence become `\#ooo`, one per
/// byte. A newline is escaped too: callers split a message into lines first where it may have
/// several (the CLI's error lines), so what stays is one line of ferry's line formats.
public enum DisplayText {
    public static func escape(_ text: String) -> String {
        // The common case costs one pass and no copy.
        guard text.utf8.contains(where: { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F || $0 == 0xC2 }) else { return text }
        return escape(Array(text.utf8))
    }

    public static func escape<Bytes: RandomAccessCollection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8, Bytes.Index == Int {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        func octal(_ b: UInt8) {
            out += [UInt8(ascii: "\\"), UInt8(ascii: "#"), 0x30 + (b >> 6), 0x30 + ((b >> 3) & 7), 0x30 + (b & 7)]
        }
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b < 0x80 {
                if (b < 0x20 && b != 0x09) || b == 0x7F { octal(b) } else { out.append(b) }
                i += 1
                continue
            }
            let length = sequenceLength(bytes, at: i)
            if length == 0 {
                octal(b)
                i += 1
            } else if b == 0xC2 && bytes[i + 1] < 0xA0 {
                octal(b)
                octal(bytes[i + 1])
                i += 2
            } else {
                out += bytes[i..<i + length]
                i += length
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The length of the well-formed UTF-8 sequence at `i` (RFC 3629: no overlong forms, no
    /// surrogates, nothing above U+10FFFF), else 0.
    static func sequenceLength<Bytes: RandomAccessCollection>(_ bytes: Bytes, at i: Int) -> Int where Bytes.Element == UInt8, Bytes.Index == Int {
        let b = bytes[i]
        let length: Int
        var second: ClosedRange<UInt8> = 0x80...0xBF
        switch b {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; second = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; second = 0x80...0x9F
        case 0xF0: length = 4; second = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; second = 0x80...0x8F
        default: return 0
        }
        guard bytes.endIndex - i >= length, second.contains(bytes[i + 1]) else { return 0 }
        for k in 2..<length where !(0x80...0xBF).contains(bytes[i + k]) { return 0 }
        return length
    }
}
