/// Nix's own reading of package names and versions (`builtins.parseDrvName`,
/// `builtins.compareVersions`), as a closure's store paths are compared: `lnbits-1.2.0` is name
/// `lnbits`, version `1.2.0`.
public enum NixVersion {
    /// Splits a store path's name at its first `-` not followed by a letter (`nix-2.8.0` →
    /// `nix`, `2.8.0`; `nixos-system-alpha-24.05` → `nixos-system-alpha`, `24.05`). No such dash:
    /// the whole name, version "".
    public static func parseDrvName(_ s: String) -> (name: String, version: String) {
        let b = Array(s.utf8)
        for i in b.indices where b[i] == UInt8(ascii: "-") && i + 1 < b.count && !isAlpha(b[i + 1]) {
            return (String(decoding: b[..<i], as: UTF8.self), String(decoding: b[(i + 1)...], as: UTF8.self))
        }
        return (s, "")
    }

    /// -1, 0 or 1, as `builtins.compareVersions`: components are runs of digits or of other
    /// characters, split at `.` and `-`; numbers compare as numbers, `pre` sorts first, a
    /// missing component before a number, a word before a number.
    public static func compare(_ v1: String, _ v2: String) -> Int {
        let a = Array(v1.utf8), b = Array(v2.utf8)
        var p1 = 0, p2 = 0
        while p1 < a.count || p2 < b.count {
            let c1 = nextComponent(a, &p1), c2 = nextComponent(b, &p2)
            if componentsLT(c1, c2) { return -1 }
            if componentsLT(c2, c1) { return 1 }
        }
        return 0
    }

    static func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }
    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    static func nextComponent(_ s: [UInt8], _ p: inout Int) -> [UInt8] {
        while p < s.count && (s[p] == UInt8(ascii: ".") || s[p] == UInt8(ascii: "-")) { p += 1 }
        guard p < s.count else { return [] }
        let start = p
        if isDigit(s[p]) {
            while p < s.count && isDigit(s[p]) { p += 1 }
        } else {
            while p < s.count && !isDigit(s[p]) && s[p] != UInt8(ascii: ".") && s[p] != UInt8(ascii: "-") { p += 1 }
        }
        return Array(s[start..<p])
    }

    /// A component as C's `int`, when it is one (digits that fit).
    static func number(_ c: [UInt8]) -> Int32? {
        guard !c.isEmpty, c.allSatisfy(isDigit) else { return nil }
        return Int32(String(decoding: c, as: UTF8.self))
    }

    static func componentsLT(_ c1: [UInt8], _ c2: [UInt8]) -> Bool {
        let n1 = number(c1), n2 = number(c2)
        let pre = Array("pre".utf8)
        if let n1, let n2 { return n1 < n2 }
        if c1.isEmpty && n2 != nil { return true }
        if c1 == pre && c2 != pre { return true }
        if c2 == pre { return false }
        if n2 != nil { return true }
        if n1 != nil { return false }
        return c1.lexicographicallyPrecedes(c2)
    }
}
