#if canImport(Glibc)
import Glibc
#endif

/// rsync's `--exclude` patterns: `*` (not across "/"), `**` (across "/"), `?`, `[…]`, `\` escapes;
/// a leading "/" anchors at the root; a trailing "/" matches directories only; a pattern without
/// "/" (or "**") matches the name at any depth, one with "/" matches the end of the path;
/// `dir/***` matches the directory and everything in it; `[[:alpha:]]`-style classes. As with
/// rsync's `--exclude` and `--exclude-from`, a rule may start with `- ` (exclude) or `+ `
/// (include: the first matching rule decides), and a lone `!` clears the rules before it.
public struct ExcludeRules: Sendable {
    struct Pattern: Sendable {
        var text: [UInt8]
        var anchored: Bool
        var directoryOnly: Bool
        var wholePath: Bool
        var include: Bool
    }

    private var patterns: [Pattern] = []

    /// Patterns as given (none can fail to parse here; see `init(validating:)`).
    public init(_ patterns: [String] = []) {
        for p in patterns { try? add(p) }
    }

    /// Patterns as given, refusing what rsync would refuse (an unknown `[[:class:]]`).
    public init(validating patterns: [String]) throws {
        for p in patterns { try add(p) }
    }

    public var isEmpty: Bool { patterns.isEmpty }

    public mutating func add(_ rule: String) throws {
        var bytes = Array(rule.utf8)
        var include = false
        if bytes == [UInt8(ascii: "!")] { patterns.removeAll(); return }
        if bytes.count >= 2 && bytes[1] == UInt8(ascii: " ") && (bytes[0] == UInt8(ascii: "-") || bytes[0] == UInt8(ascii: "+")) {
            include = bytes[0] == UInt8(ascii: "+")
            bytes.removeFirst(2)
        }
        guard !bytes.isEmpty else { return }
        if let bad = Wildmatch.unknownClass(bytes[...]) {
            throw ExcludeRuleError.unknownCharacterClass(rule: rule, name: bad)
        }
        var directoryOnly = false
        var anchored = false
        if bytes.count > 1 && bytes.last == UInt8(ascii: "/") { directoryOnly = true; bytes.removeLast() }
        if bytes.first == UInt8(ascii: "/") { anchored = true; bytes.removeFirst() }
        if bytes.count >= 4 && bytes.suffix(4) == Array("/***".utf8) {
            // "dir/***": the directory itself and everything below it.
            let dir = Array(bytes.dropLast(4))
            let whole = anchored || dir.contains(UInt8(ascii: "/")) || contains(dir, "**")
            patterns.append(Pattern(text: dir, anchored: anchored, directoryOnly: true, wholePath: whole, include: include))
            bytes = dir + Array("/**".utf8)
        }
        let whole = anchored || bytes.contains(UInt8(ascii: "/")) || contains(bytes, "**")
        patterns.append(Pattern(text: bytes, anchored: anchored, directoryOnly: directoryOnly, wholePath: whole, include: include))
    }

    /// Lines of an `--exclude-from` file; blank lines and lines starting with ';' or '#' are comments.
    public mutating func add(fileContents: [UInt8], file: String = "") throws {
        for (n, line) in fileContents.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            var l = Array(line)
            if l.last == UInt8(ascii: "\r") { l.removeLast() }
            guard let first = l.first, first != UInt8(ascii: "#"), first != UInt8(ascii: ";") else { continue }
            do { try add(String(decoding: l, as: UTF8.self)) } catch let error as ExcludeRuleError {
                throw ExcludeRuleError.inFile(file: file, line: n + 1, error.description)
            }
        }
    }

    /// Whether this one entry is excluded (its parents are not looked at): the first rule that
    /// matches decides.
    public func matches(_ path: [UInt8], isDirectory: Bool) -> Bool {
        for p in patterns where !p.directoryOnly || isDirectory {
            if matches(p, path) { return !p.include }
        }
        return false
    }

    private func matches(_ p: Pattern, _ path: [UInt8]) -> Bool {
        if !p.wholePath {
            let name = path.lastIndex(of: UInt8(ascii: "/")).map { Array(path[($0 + 1)...]) } ?? path
            return Wildmatch.match(p.text[...], name[...])
        }
        if Wildmatch.match(p.text[...], path[...]) { return true }
        if p.anchored { return false }
        // Unanchored patterns with "/" may match any trailing part that starts a component.
        for (i, b) in path.enumerated() where b == UInt8(ascii: "/") {
            if Wildmatch.match(p.text[...], path[(i + 1)...]) { return true }
        }
        return false
    }

    /// Whether the entry or any directory above it is excluded (rsync never looks inside an
    /// excluded directory, on either side).
    public func excludes(_ path: [UInt8], isDirectory: Bool) -> Bool {
        guard !patterns.isEmpty else { return false }
        var i = 0
        while let slash = path[i...].firstIndex(of: UInt8(ascii: "/")) {
            if matches(Array(path[..<slash]), isDirectory: true) { return true }
            i = slash + 1
        }
        return matches(path, isDirectory: isDirectory)
    }

    private func contains(_ bytes: [UInt8], _ s: String) -> Bool {
        let n = Array(s.utf8)
        guard bytes.count >= n.count else { return false }
        return (0...(bytes.count - n.count)).contains { Array(bytes[$0..<$0 + n.count]) == n }
    }
}

public enum ExcludeRuleError: Error, Equatable, CustomStringConvertible {
    case unknownCharacterClass(rule: String, name: String)
    case inFile(file: String, line: Int, String)

    public var description: String {
        switch self {
        case .unknownCharacterClass(let rule, let name):
            return "exclude rule '\(rule)': unknown character class [:\(name):] (known: \(Wildmatch.classNames.joined(separator: ", ")))"
        case .inFile(let file, let line, let text): return "\(file):\(line): \(text)"
        }
    }
}

/// Shell-style matching as rsync's wildmatch does it.
enum Wildmatch {
    /// rsync's dowild outcomes: besides yes and no, "no, and no later start can match" (the text
    /// ran out) and "no, until a `**`" (a `*` met a `/`). They stop the search at once, which keeps
    /// a pattern of many stars from taking exponential time.
    enum Outcome { case match, noMatch, abortAll, abortToStarStar }

    static func match(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool { dowild(p, s) == .match }

    static func dowild(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Outcome {
        var pi = p.startIndex
        var si = s.startIndex
        while pi < p.endIndex {
            let c = p[pi]
            if si == s.endIndex && c != UInt8(ascii: "*") { return .abortAll }
            switch c {
            case UInt8(ascii: "*"):
                let double = pi + 1 < p.endIndex && p[pi + 1] == UInt8(ascii: "*")
                var next = pi + 1
                while next < p.endIndex && p[next] == UInt8(ascii: "*") { next += 1 }
                if next == p.endIndex { return double || !s[si...].contains(UInt8(ascii: "/")) ? .match : .noMatch }
                var k = si
                while true {
                    let r = dowild(p[next...], s[k...])
                    if r != .noMatch {
                        if !double || r != .abortToStarStar { return r }
                    } else if !double && k < s.endIndex && s[k] == UInt8(ascii: "/") {
                        return .abortToStarStar
                    }
                    if k == s.endIndex { return .abortAll }
                    k += 1
                }
            case UInt8(ascii: "?"):
                guard s[si] != UInt8(ascii: "/") else { return .noMatch }
                pi += 1; si += 1
            case UInt8(ascii: "["):
                guard s[si] != UInt8(ascii: "/"), let (matched, end) = matchClass(p, pi, s[si]) else {
                    if s[si] == c && !hasClassEnd(p, pi) { pi += 1; si += 1; continue }
                    return .noMatch
                }
                guard matched else { return .noMatch }
                pi = end; si += 1
            case UInt8(ascii: "\\") where pi + 1 < p.endIndex:
                guard s[si] == p[pi + 1] else { return .noMatch }
                pi += 2; si += 1
            default:
                guard s[si] == c else { return .noMatch }
                pi += 1; si += 1
            }
        }
        return si == s.endIndex ? .match : .noMatch
    }

    private static func hasClassEnd(_ p: ArraySlice<UInt8>, _ start: Int) -> Bool {
        var i = start + 1
        if i < p.endIndex && (p[i] == UInt8(ascii: "!") || p[i] == UInt8(ascii: "^")) { i += 1 }
        if i < p.endIndex && p[i] == UInt8(ascii: "]") { i += 1 }
        while i < p.endIndex { if p[i] == UInt8(ascii: "]") { return true }; i += 1 }
        return false
    }

    /// Matches `[...]` at `start` against `b`; returns (matched, index after the class), or nil if unterminated.
    private static func matchClass(_ p: ArraySlice<UInt8>, _ start: Int, _ b: UInt8) -> (Bool, Int)? {
        var i = start + 1
        var negate = false
        if i < p.endIndex && (p[i] == UInt8(ascii: "!") || p[i] == UInt8(ascii: "^")) { negate = true; i += 1 }
        var matched = false
        var first = true
        while i < p.endIndex {
            if p[i] == UInt8(ascii: "]") && !first { return (matched != negate, i + 1) }
            first = false
            if p[i] == UInt8(ascii: "["), i + 1 < p.endIndex, p[i + 1] == UInt8(ascii: ":"),
               let close = Wildmatch.classEnd(p, i + 2) {
                if Wildmatch.inClass(String(decoding: p[(i + 2)..<close], as: UTF8.self), b) { matched = true }
                i = close + 2
                continue
            }
            var lo = p[i]
            if lo == UInt8(ascii: "\\") && i + 1 < p.endIndex { i += 1; lo = p[i] }
            if i + 2 < p.endIndex && p[i + 1] == UInt8(ascii: "-") && p[i + 2] != UInt8(ascii: "]") {
                let hi = p[i + 2]
                if lo <= b && b <= hi { matched = true }
                i += 3
            } else {
                if lo == b { matched = true }
                i += 1
            }
        }
        return nil
    }

    static let classNames = ["alnum", "alpha", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space", "upper", "xdigit"]

    /// Index of the ':' of the ":]" that ends a class name starting at `start`.
    static func classEnd(_ p: ArraySlice<UInt8>, _ start: Int) -> Int? {
        var k = start
        while k + 1 < p.endIndex {
            if p[k] == UInt8(ascii: ":") && p[k + 1] == UInt8(ascii: "]") { return k }
            if !(UInt8(ascii: "a")...UInt8(ascii: "z")).contains(p[k]) { return nil }
            k += 1
        }
        return nil
    }

    /// The first `[:name:]` in a pattern that is not a class rsync knows.
    static func unknownClass(_ p: ArraySlice<UInt8>) -> String? {
        var i = p.startIndex
        while i + 1 < p.endIndex {
            if p[i] == UInt8(ascii: "["), p[i + 1] == UInt8(ascii: ":"), let close = classEnd(p, i + 2) {
                let name = String(decoding: p[(i + 2)..<close], as: UTF8.self)
                if !classNames.contains(name) { return name }
                i = close
            }
            i += 1
        }
        return nil
    }

    /// The C locale's classes, as rsync's wildmatch tests them (bytes above 0x7f are in none).
    static func inClass(_ name: String, _ b: UInt8) -> Bool {
        let c = Int32(b)
        guard b < 0x80 else { return false }
        switch name {
        case "alnum": return isalnum(c) != 0
        case "alpha": return isalpha(c) != 0
        case "blank": return b == 0x20 || b == 0x09
        case "cntrl": return iscntrl(c) != 0
        case "digit": return isdigit(c) != 0
        case "graph": return isgraph(c) != 0
        case "lower": return islower(c) != 0
        case "print": return isprint(c) != 0
        case "punct": return ispunct(c) != 0
        case "space": return isspace(c) != 0
        case "upper": return isupper(c) != 0
        case "xdigit": return isxdigit(c) != 0
        default: return false
        }
    }
}
