import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An OpenSSH client configuration (`~/.ssh/config` then `/etc/ssh/ssh_config`, or `-F FILE`
/// alone), read with OpenSSH 9's rules for the keywords ferry honours: `Host` patterns (`*`, `?`,
/// `!`, lists), the first value obtained wins across both files (IdentityFile accumulates),
/// `Include` (globs; relative to `~/.ssh`, or in the system file to its folder), `Match host`,
/// `originalhost`, `user`, `all`. Other OpenSSH keywords are accepted and ignored; an unknown
/// keyword or a malformed line is an error naming the file and line. `~` is the home folder given
/// (ferry passes `$HOME`; OpenSSH uses the password database's, the same for nearly everyone).
public struct SSHClientConfig: Sendable {
    /// A value and where it was set.
    public struct Setting<Value: Sendable>: Sendable {
        public var value: Value
        public var file: String
        public var line: Int
        public var origin: String { "\(file):\(line)" }

        public init(value: Value, file: String, line: Int) {
            self.value = value
            self.file = file
            self.line = line
        }
    }

    /// What the configuration sets for one host (nil: not set).
    public struct Resolved: Sendable {
        /// `HostName`, `%h` expanded.
        public var hostName: Setting<String>?
        public var user: Setting<String>?
        public var port: Setting<Int>?
        /// `IdentityFile` lines as written (see `expand`), in order, duplicates within the user's
        /// or the system file's chain dropped.
        public var identityFiles: [Setting<String>] = []
        public var identitiesOnly: Setting<Bool>?
        public var identityAgent: Setting<String>?
        /// `UserKnownHostsFile` as written (one line: several files).
        public var userKnownHostsFiles: Setting<[String]>?
        /// `yes`, `accept-new`, `no` or `ask` (`true`, `false`, `off` are folded in).
        public var strictHostKeyChecking: Setting<String>?
        /// `ProxyJump` as written: `none`, or hops separated by commas.
        public var proxyJump: Setting<String>?
        /// Seconds (nil value: `none`).
        public var connectTimeout: Setting<Int?>?
        public var serverAliveInterval: Setting<Int>?
        public var serverAliveCountMax: Setting<Int>?
        /// Lines ferry read but does not act on (unsupported `Match` criteria), named.
        public var warnings: [String] = []

        public init() {}
    }

    public let file: String
    /// Read after `file`, as OpenSSH reads `/etc/ssh/ssh_config` (nil: none, as with `-F`).
    public let systemFile: String?
    public let home: String
    public let localUser: String

    public init(file: String, systemFile: String? = nil, home: String, localUser: String) {
        self.file = file
        self.systemFile = systemFile
        self.home = home
        self.localUser = localUser
    }

    /// The settings for `host` as given on the command line (or a fleet.toml `address`).
    /// A missing top-level file sets nothing. Throws `SSHConfigError`.
    public func resolve(_ host: String) throws -> Resolved {
        var state = State(originalHost: host)
        if FileManager.default.fileExists(atPath: file) {
            var active = true
            try read(file, state: &state, active: &active, neverMatch: false, depth: 0)
        }
        if let systemFile, FileManager.default.fileExists(atPath: systemFile) {
            state.includeBase = .system(folder: (systemFile as NSString).deletingLastPathComponent)
            state.identityChainStart = state.resolved.identityFiles.count
            var active = true
            try read(systemFile, state: &state, active: &active, neverMatch: false, depth: 0)
        }
        return state.resolved
    }

    /// The same for a configuration given as bytes, read as `file` (`Include` lines are checked
    /// but not followed: the fuzz target's entry point).
    package func resolve(_ host: String, contents: [UInt8]) throws -> Resolved {
        var state = State(originalHost: host)
        state.followIncludes = false
        var active = true
        try process(contents, file: file, state: &state, active: &active, neverMatch: false, depth: 0)
        return state.resolved
    }

    // MARK: - Reading

    private struct State {
        let originalHost: String
        var resolved = Resolved()
        var ignoreUnknown: String?
        var followIncludes = true
        /// Where a relative `Include` path points: the user's file reads from `~/.ssh`, the system
        /// file from its own folder (OpenSSH: /etc/ssh), where a `~` path is an error.
        var includeBase = IncludeBase.user
        /// IdentityFile lines before this index came from the user's file. OpenSSH drops a repeated
        /// one only within one file's chain: one named by both files is tried twice.
        var identityChainStart = 0
        init(originalHost: String) { self.originalHost = originalHost }
    }

    private enum IncludeBase { case user, system(folder: String) }

    private static let maxDepth = 16
    /// Larger than any real ssh_config: a bigger one (or /proc/kcore named by an Include) is refused.
    static let maxFileSize = 1 << 20

    private func read(_ path: String, state: inout State, active: inout Bool, neverMatch: Bool, depth: Int) throws {
        guard depth <= Self.maxDepth else { throw SSHConfigError.malformed(file: path, line: 0, reason: "more than \(Self.maxDepth) nested Include levels") }
        var st = stat()
        guard stat(path, &st) == 0 else { throw SSHConfigError.unreadable(file: path, reason: String(cString: strerror(errno))) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw SSHConfigError.unreadable(file: path, reason: "not a regular file") }
        guard st.st_size <= Self.maxFileSize else { throw SSHConfigError.unreadable(file: path, reason: "larger than \(Self.maxFileSize) bytes") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SSHConfigError.unreadable(file: path, reason: String(cString: strerror(errno)))
        }
        try process(Array(data.prefix(Self.maxFileSize)), file: path, state: &state, active: &active, neverMatch: neverMatch, depth: depth)
    }

    private func process(_ bytes: [UInt8], file path: String, state: inout State, active: inout Bool, neverMatch: Bool, depth: Int) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        var number = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            try line(String(raw), file: path, number: number, state: &state, active: &active, neverMatch: neverMatch, depth: depth)
        }
    }

    private func line(_ raw: String, file: String, number: Int, state: inout State, active: inout Bool, neverMatch: Bool, depth: Int) throws {
        func bad(_ reason: String) -> SSHConfigError { .malformed(file: file, line: number, reason: reason) }
        // OpenSSH: trailing whitespace (and form feeds) go; the keyword ends at whitespace, a quote
        // or one "="; the rest is split like a shell word list, a word starting "#" ends it.
        var text = Substring(raw)
        while let last = text.last, " \t\r\n\u{0C}".contains(last) { text.removeLast() }
        text = text.drop { $0 == " " || $0 == "\t" }
        guard !text.isEmpty, !text.hasPrefix("#") else { return }
        guard let end = text.firstIndex(where: { " \t=\"".contains($0) }) else {
            throw bad("no argument after keyword \"\(text.lowercased())\"")
        }
        let keyword = text[..<end].lowercased()
        var rest = text[end...]
        rest = rest.drop { $0 == " " || $0 == "\t" }
        if rest.first == "=" { rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" } }
        guard !rest.isEmpty else { throw bad("no argument after keyword \"\(keyword)\"") }
        guard let args = Self.words(rest) else { throw bad("invalid quotes") }
        let apply = active && !neverMatch
        var resolved = state.resolved
        defer { state.resolved = resolved }

        func one() throws -> String {
            guard args.count == 1 else { throw bad(args.isEmpty ? "\(keyword): missing argument" : "\(keyword): garbage at end of line") }
            return args[0]
        }
        func set<T>(_ slot: inout Setting<T>?, _ value: T) { if apply && slot == nil { slot = Setting(value: value, file: file, line: number) } }

        switch keyword {
        case "host":
            active = false
            for pattern in args {
                guard !pattern.isEmpty else { throw bad("keyword host empty argument") }
                if neverMatch { break }
                let negated = pattern.hasPrefix("!")
                if Self.glob(negated ? String(pattern.dropFirst()) : pattern, state.originalHost) {
                    if negated { active = false; break }
                    active = true
                }
            }
        case "match":
            let result = try match(rest, state: state, file: file, number: number, warnings: &resolved.warnings)
            active = neverMatch ? false : result
        case "include":
            for pattern in args {
                let path: String
                switch state.includeBase {
                case .user: path = tilde(pattern.hasPrefix("/") || pattern.hasPrefix("~") ? pattern : "~/.ssh/" + pattern)
                case .system(let folder):
                    guard !pattern.hasPrefix("~") else { throw bad("bad include path \(pattern)") }
                    path = pattern.hasPrefix("/") ? pattern : folder + "/" + pattern
                }
                let was = active
                guard state.followIncludes else { continue }
                for found in Self.glob(path) {
                    if let st = Self.lstatOwner(found), st.uid != 0 && st.uid != getuid() || (st.mode & 0o022) != 0 {
                        throw bad("bad owner or permissions on \(found)")
                    }
                    state.resolved = resolved
                    try read(found, state: &state, active: &active, neverMatch: neverMatch || !was, depth: depth + 1)
                    resolved = state.resolved
                    // Match blocks in an included file do not change the including file's state.
                    active = was
                }
            }
        case "hostname":
            let value = try one()
            set(&resolved.hostName, try Self.expand(value, tokens: ["h": state.originalHost], file: file, line: number))
        case "user":
            set(&resolved.user, try one())
        case "port":
            let value = try one()
            guard let port = Int(value), (1...65535).contains(port) else { throw bad("bad port '\(value)'") }
            set(&resolved.port, port)
        case "identityfile", "identityfile2":
            let value = try one()
            if apply {
                guard resolved.identityFiles.count < 100 else { throw bad("too many identity files (max 100)") }
                if !resolved.identityFiles[state.identityChainStart...].contains(where: { $0.value == value }) {
                    resolved.identityFiles.append(Setting(value: value, file: file, line: number))
                }
            }
        case "identitiesonly":
            let value = try one()
            guard let flag = Self.flag(value) else { throw bad("unsupported option \"\(value)\" for IdentitiesOnly") }
            set(&resolved.identitiesOnly, flag)
        case "identityagent":
            set(&resolved.identityAgent, try one())
        case "userknownhostsfile":
            guard !args.isEmpty, args.count <= 16 else { throw bad("UserKnownHostsFile takes 1 to 16 files") }
            set(&resolved.userKnownHostsFiles, args)
        case "stricthostkeychecking":
            let value = try one().lowercased()
            let folded = ["yes": "yes", "true": "yes", "no": "no", "false": "no", "off": "no", "ask": "ask", "accept-new": "accept-new"][value]
            guard let folded else { throw bad("unsupported option \"\(value)\" for StrictHostKeyChecking") }
            set(&resolved.strictHostKeyChecking, folded)
        case "proxyjump":
            // OpenSSH reads the rest of the line up to a "#", not split into words.
            var value = String(rest)
            if let hash = value.firstIndex(of: "#") { value = String(value[..<hash]) }
            while let last = value.last, last == " " || last == "\t" { value.removeLast() }
            guard value.lowercased() == "none" || ((try? ProxyJump(value)) != nil) else { throw bad("invalid ProxyJump \"\(value)\"") }
            set(&resolved.proxyJump, value)
        case "connecttimeout":
            let value = try one()
            if value.lowercased() == "none" { set(&resolved.connectTimeout, nil) } else {
                guard let seconds = Self.duration(value) else { throw bad("invalid time value '\(value)'") }
                set(&resolved.connectTimeout, seconds)
            }
        case "serveraliveinterval":
            let value = try one()
            guard let seconds = Self.duration(value) else { throw bad("invalid time value '\(value)'") }
            set(&resolved.serverAliveInterval, seconds)
        case "serveralivecountmax":
            let value = try one()
            guard let count = Int(value), count >= 0 else { throw bad("integer value \(value) is invalid") }
            set(&resolved.serverAliveCountMax, count)
        case "ignoreunknown":
            if apply && state.ignoreUnknown == nil { state.ignoreUnknown = try one() }
        default:
            guard Self.openSSHKeywords.contains(keyword) || state.ignoreUnknown.map({ Self.patternList(keyword, $0, lowercase: true) == 1 }) == true else {
                throw bad("Bad configuration option: \(keyword)")
            }
        }
    }

    /// A `Match` line; unsupported criteria warn and never match.
    private func match(_ condition: Substring, state: State, file: String, number: Int, warnings: inout [String]) throws -> Bool {
        func bad(_ reason: String) -> SSHConfigError { .malformed(file: file, line: number, reason: reason) }
        var words = condition.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if let comment = words.firstIndex(where: { $0.hasPrefix("#") }) { words.removeSubrange(comment...) }
        let host = state.resolved.hostName?.value ?? state.originalHost
        let user = state.resolved.user?.value ?? localUser
        var result = true
        var attributes = 0
        var i = 0
        while i < words.count {
            var attribute = words[i].lowercased()
            let negate = attribute.hasPrefix("!")
            if negate { attribute.removeFirst() }
            i += 1
            if attribute == "all" {
                guard attributes == 0, i == words.count else { throw bad("'all' cannot be combined with other Match attributes") }
                return negate ? false : result
            }
            attributes += 1
            if attribute == "canonical" || attribute == "final" {
                warnings.append("\(file):\(number): Match \(attribute) is not supported by ferry; this Match block is skipped")
                result = false
                continue
            }
            guard i < words.count else { throw bad("missing Match criteria for \(attribute)") }
            let argument = words[i]
            i += 1
            let matched: Bool
            switch attribute {
            case "host": matched = Self.patternList(host, argument, lowercase: true) == 1
            case "originalhost": matched = Self.patternList(state.originalHost, argument, lowercase: true) == 1
            case "user": matched = Self.patternList(user, argument, lowercase: false) == 1
            case "localuser", "exec", "localnetwork":
                warnings.append("\(file):\(number): Match \(attribute) is not supported by ferry; this Match block is skipped")
                matched = negate
            default:
                throw bad("unsupported Match attribute \(attribute)")
            }
            if matched == negate { result = false }
        }
        guard attributes > 0 else { throw bad("one or more attributes required for Match") }
        return result
    }

    // MARK: - Values

    /// `%h %p %r %u %n %d %%` (those given in `tokens`, plus `%%`); another token is an error.
    public static func expand(_ text: String, tokens: [Character: String], file: String = "", line: Int = 0) throws -> String {
        var out = ""
        var chars = text.makeIterator()
        while let c = chars.next() {
            guard c == "%" else { out.append(c); continue }
            guard let key = chars.next() else { throw SSHConfigError.malformed(file: file, line: line, reason: "invalid %-token at the end of \"\(text)\"") }
            if key == "%" { out.append("%"); continue }
            guard let value = tokens[key] else { throw SSHConfigError.malformed(file: file, line: line, reason: "unknown or unsupported token %\(key) in \"\(text)\"") }
            out += value
        }
        return out
    }

    /// `~` and `~/…` from the home folder given.
    public func tilde(_ path: String) -> String {
        if path == "~" { return home }
        if path.hasPrefix("~/") {
            let rest = path.dropFirst(2).drop { $0 == "/" }
            return (home.hasSuffix("/") ? home : home + "/") + rest
        }
        return path
    }

    /// OpenSSH's time format: seconds, or numbers with s, m, h, d, w (`1h30m`); as OpenSSH's
    /// convtime, more than INT_MAX seconds is invalid (and nothing may overflow on the way).
    static func duration(_ text: String) -> Int? {
        guard !text.isEmpty else { return nil }
        var total = 0
        var number = ""
        func add(_ digits: String, _ unit: Int) -> Bool {
            guard let n = Int(digits) else { return false }
            let (scaled, o1) = n.multipliedReportingOverflow(by: unit)
            let (sum, o2) = total.addingReportingOverflow(scaled)
            guard !o1, !o2, sum <= Int(Int32.max) else { return false }
            total = sum
            return true
        }
        for c in text {
            if c.isASCII && c.isNumber { number.append(c); continue }
            let unit: Int
            switch c.lowercased() {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            case "w": unit = 604_800
            default: return nil
            }
            guard add(number, unit) else { return nil }
            number = ""
        }
        if !number.isEmpty { guard add(number, 1) else { return nil } }
        return total
    }

    static func flag(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "yes", "true": return true
        case "no", "false": return false
        default: return nil
        }
    }

    /// The line's words, as OpenSSH's argv_split makes them: quotes ("…", '…') and the escapes
    /// \" \' \\ and "\ ", a word starting with "#" ends the line. Nil: an unclosed quote.
    static func words(_ text: Substring) -> [String]? {
        var words: [String] = []
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            if chars[i] == " " || chars[i] == "\t" { i += 1; continue }
            if chars[i] == "#" { break }
            var word = ""
            var quote: Character?
            while i < chars.count {
                let c = chars[i]
                if c == "\\", i + 1 < chars.count, "'\"\\".contains(chars[i + 1]) || (quote == nil && chars[i + 1] == " ") {
                    word.append(chars[i + 1])
                    i += 2
                    continue
                }
                if quote == nil && (c == " " || c == "\t") { break }
                if quote == nil && (c == "\"" || c == "'") { quote = c }
                else if let q = quote, c == q { quote = nil }
                else { word.append(c) }
                i += 1
            }
            if quote != nil { return nil }
            words.append(word)
        }
        return words
    }

    /// OpenSSH's match_pattern: `*` and `?`, the whole string, case-sensitive.
    public static func glob(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8), t = Array(text.utf8)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) { pi += 1; ti += 1 }
            else if pi < p.count && p[pi] == UInt8(ascii: "*") { star = pi; mark = ti; pi += 1 }
            else if star >= 0 { pi = star + 1; mark += 1; ti = mark }
            else { return false }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// OpenSSH's match_pattern_list: 1 when a pattern of the comma list matches, -1 when a
    /// negated one does (which wins), 0 otherwise.
    static func patternList(_ text: String, _ list: String, lowercase: Bool) -> Int {
        let subject = lowercase ? text.lowercased() : text
        var got = 0
        for raw in list.split(separator: ",", omittingEmptySubsequences: false) {
            var pattern = String(raw)
            let negated = pattern.hasPrefix("!")
            if negated { pattern.removeFirst() }
            if lowercase { pattern = pattern.lowercased() }
            if glob(pattern, subject) {
                if negated { return -1 }
                got = 1
            }
        }
        return got
    }

    /// Files matching a glob, sorted (glob(3)).
    static func glob(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }

    static func lstatOwner(_ path: String) -> (uid: uid_t, mode: mode_t)? {
        var st = stat()
        return stat(path, &st) == 0 ? (st.st_uid, st.st_mode) : nil
    }

    /// Every keyword OpenSSH 9.2's ssh_config accepts (ferry ignores those it does not honour).
    static let openSSHKeywords: Set<String> = [
        "protocol", "cipher", "fallbacktorsh", "globalknownhostsfile2", "rhostsauthentication", "userknownhostsfile2", "useroaming", "usersh",
        "useprivilegedport", "afstokenpassing", "kerberosauthentication", "kerberostgtpassing", "rsaauthentication", "rhostsrsaauthentication",
        "compressionlevel", "gssapiauthentication", "gssapidelegatecredentials", "smartcarddevice", "pkcs11provider", "forwardagent",
        "exitonforwardfailure", "xauthlocation", "gatewayports", "passwordauthentication", "kbdinteractiveauthentication",
        "kbdinteractivedevices", "challengeresponseauthentication", "skeyauthentication", "tisauthentication", "pubkeyauthentication",
        "dsaauthentication", "hostbasedauthentication", "identityfile2", "certificatefile", "addkeystoagent", "hostkeyalias",
        "proxycommand", "ciphers", "macs", "remoteforward", "localforward", "permitremoteopen", "escapechar", "globalknownhostsfile",
        "connectionattempts", "batchmode", "checkhostip", "compression", "tcpkeepalive", "keepalive", "numberofpasswordprompts",
        "syslogfacility", "loglevel", "logverbose", "dynamicforward", "preferredauthentications", "hostkeyalgorithms",
        "casignaturealgorithms", "bindaddress", "bindinterface", "clearallforwardings", "enablesshkeysign", "verifyhostkeydns",
        "nohostauthenticationforlocalhost", "rekeylimit", "addressfamily", "sendenv", "setenv", "controlpath", "controlmaster",
        "controlpersist", "hashknownhosts", "tunnel", "tunneldevice", "localcommand", "permitlocalcommand", "remotecommand",
        "visualhostkey", "kexalgorithms", "ipqos", "requesttty", "sessiontype", "stdinnull", "forkafterauthentication",
        "proxyusefdpass", "canonicaldomains", "canonicalizefallbacklocal", "canonicalizehostname", "canonicalizemaxdots",
        "canonicalizepermittedcnames", "streamlocalbindmask", "streamlocalbindunlink", "revokedhostkeys", "fingerprinthash",
        "updatehostkeys", "hostbasedacceptedalgorithms", "hostbasedkeytypes", "pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes",
        "securitykeyprovider", "knownhostscommand", "requiredrsasize", "enableescapecommandline",
    ]
}

/// A `ProxyJump` chain: hops in the order they are connected through.
public struct ProxyJump: Sendable, Equatable, CustomStringConvertible {
    public struct Hop: Sendable, Equatable {
        public var user: String?
        public var host: String
        public var port: Int?
    }

    public var hops: [Hop]

    /// `[user@]host[:port]` or `ssh://[user@]host[:port]`, comma-separated; IPv6 in brackets.
    public init(_ text: String) throws {
        hops = try text.split(separator: ",", omittingEmptySubsequences: false).map { try Self.hop(String($0)) }
    }

    static func hop(_ text: String) throws -> Hop {
        guard let parts = try? SSHTarget.parts(of: text) else { throw SSHConfigError.badJump(text) }
        return Hop(user: parts.user, host: parts.host, port: parts.port)
    }

    /// The last hop is the target itself (OpenSSH: "jumphost loop"); missing user and port
    /// default to the target's.
    public func loops(host: String, port: Int, user: String) -> Bool {
        guard let last = hops.last else { return false }
        return last.host == host && (last.port ?? 22) == port && (last.user ?? user) == user
    }

    /// As `ssh -G` prints it: the hops before the last as written, the last one normalised.
    public func openSSHForm(written: String) -> String {
        guard let last = hops.last else { return written }
        let numeric = last.host.contains(":") || last.host.allSatisfy { "0123456789.".contains($0) }
        var tail = (last.user.map { $0 + "@" } ?? "") + (numeric ? "[\(last.host)]" : last.host)
        if let port = last.port { tail += ":\(port)" }
        guard let comma = written.lastIndex(of: ","), comma != written.startIndex else { return tail }
        return String(written[..<comma]) + "," + tail
    }

    public var description: String {
        hops.map { h in (h.user.map { $0 + "@" } ?? "") + (h.host.contains(":") ? "[\(h.host)]" : h.host) + (h.port.map { ":\($0)" } ?? "") }.joined(separator: ",")
    }
}

public enum SSHConfigError: Error, Equatable, CustomStringConvertible {
    case malformed(file: String, line: Int, reason: String)
    case unreadable(file: String, reason: String)
    case badJump(String)

    public var description: String {
        switch self {
        case .malformed(let file, let line, let reason): return "\(file) line \(line): \(reason)"
        case .unreadable(let file, let reason): return "cannot read \(file): \(reason)"
        case .badJump(let text): return "invalid ProxyJump hop \"\(text)\" (want [user@]host[:port])"
        }
    }
}
