import Foundation

/// `--itemize` lines in the format rsync prints when pushing (`YXcstpoguax name`).
public enum Itemize {
    public static func line(_ item: SyncPlan.Item) -> String {
        let e = item.entry
        let type: Character
        switch e.kind {
        case .file: type = "f"
        case .directory: type = "d"
        case .symlink: type = "L"
        case .fifo: type = "S"
        }
        var name = e.path.isEmpty ? "." : escape(e.path)
        if e.kind == .directory { name += "/" }
        if e.kind == .symlink, let target = e.linkTarget { name += " -> " + escape(target) }
        switch item.change {
        case .deleted:
            return "*deleting   \(name)"
        case .created:
            return "\(e.kind == .file ? "<" : "c")\(type)+++++++++ \(name)"
        case .updated(let content, let size, let time, let permissions, let sent):
            let first: Character = sent ? "<" : (e.kind == .symlink && content ? "c" : ".")
            var flags = Array("cstpoguax").map { _ in Character(".") }
            if content { flags[0] = "c" }
            if size { flags[1] = "s" }
            if time { flags[2] = "t" }
            if permissions { flags[3] = "p" }
            return "\(first)\(type)\(String(flags)) \(name)"
        }
    }

    /// rsync's escaping of names under a UTF-8 locale: control bytes (but tab) and bytes that are
    /// not valid UTF-8 become `\#ooo`; printable characters stay.
    public static func escape(_ bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        func octal(_ b: UInt8) { let o = String(b, radix: 8); out += "\\#" + String(repeating: "0", count: 3 - o.count) + o }
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x80 {
                if b < 0x20 && b != 0x09 { octal(b) } else { out.unicodeScalars.append(Unicode.Scalar(b)) }
                i += 1
                continue
            }
            let length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0
            if length > 0, i + length <= bytes.count,
               let s = String(bytes: bytes[i..<i + length], encoding: .utf8), let scalar = s.unicodeScalars.first,
               s.unicodeScalars.count == 1, scalar.value >= 0xA0 {
                out += s
                i += length
            } else {
                octal(b)
                i += 1
            }
        }
        return out
    }
}
