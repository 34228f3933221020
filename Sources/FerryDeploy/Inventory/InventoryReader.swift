import FerryNix
import FerrySSH
import FerrySync
import FerryTOML
import Foundation

/// Reads and checks `fleet.toml`: every key known, every value of the right type, every host
/// reachable by a distinct address and port, and shared.nix evaluating to a set with a string domain.
public enum InventoryReader {
    public static func load(_ path: String) throws -> Fleet {
        let file = absolute(path, in: FileManager.default.currentDirectoryPath)
        guard let data = FileManager.default.contents(atPath: file) else {
            throw InventoryError(file: file, key: nil, problem: "cannot read the file (missing or not readable)")
        }
        let table: TOMLTable
        do {
            table = try TOMLReader.parse(Array(data))
        } catch let error as TOMLError {
            throw InventoryError(file: file, key: nil, problem: "TOML syntax error at \(error)")
        }
        var reader = Reader(file: file)
        return try reader.fleet(table)
    }

    static func absolute(_ path: String, in directory: String) -> String {
        let expanded = path.hasPrefix("~/") ? SSHConfiguration.homeDirectory + path.dropFirst(1) : path
        return URL(fileURLWithPath: expanded, relativeTo: URL(fileURLWithPath: directory, isDirectory: true)).standardizedFileURL.path
    }

    /// A POSIX portable user name (letters, digits, ".", "_", "-"; not starting with "-"), at most
    /// 32 bytes as useradd allows.
    public static func isValidUserName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...32).contains(bytes.count), bytes[0] != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { ($0 | 0x20) >= UInt8(ascii: "a") && ($0 | 0x20) <= UInt8(ascii: "z") || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || "._-".utf8.contains($0) }
    }

    /// An RFC 1123 domain name: dot-separated host-name labels, at most 253 bytes, not all digits.
    public static func isValidDomain(_ name: String) -> Bool {
        let bytes = name.hasSuffix(".") ? String(name.dropLast()) : name
        guard !bytes.isEmpty, bytes.utf8.count <= 253 else { return false }
        let labels = bytes.split(separator: ".", omittingEmptySubsequences: false)
        return labels.allSatisfy { isValidHostName(String($0)) } && !labels.allSatisfy { $0.allSatisfy(\.isNumber) }
    }

    /// Host names NixOS accepts: letters, digits and hyphens, at most 63, no hyphen at either end.
    public static func isValidHostName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { ($0 | 0x20) >= UInt8(ascii: "a") && ($0 | 0x20) <= UInt8(ascii: "z") || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: "-") }
    }

    /// One spelling per address: IP addresses as inet_ntop writes them, DNS names in lower case
    /// without the root's trailing dot (`2001:db8:0:0:0:0:0:5` is `2001:db8::5`).
    public static func normalizedAddress(_ address: String) -> String {
        var v4 = in_addr(), v6 = in6_addr()
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        if inet_pton(AF_INET, address, &v4) == 1, inet_ntop(AF_INET, &v4, &buffer, socklen_t(buffer.count)) != nil {
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        if inet_pton(AF_INET6, address, &v6) == 1, inet_ntop(AF_INET6, &v6, &buffer, socklen_t(buffer.count)) != nil {
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let lower = address.lowercased()
        return lower.hasSuffix(".") ? String(lower.dropLast()) : lower
    }

    /// An IPv4 or IPv6 address, or a DNS name.
    /// What may name a host before ssh_config: a word without whitespace, control characters
    /// or a leading "-" (which ssh would read as an option).
    public static func isValidAlias(_ address: String) -> Bool {
        !address.isEmpty && !address.hasPrefix("-") && address.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F }
    }

    public static func isValidAddress(_ address: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, address, &v4) == 1 || inet_pton(AF_INET6, address, &v6) == 1 { return true }
        guard !address.isEmpty, address.utf8.count <= 253 else { return false }
        let labels = address.hasSuffix(".") ? address.dropLast().split(separator: ".", omittingEmptySubsequences: false)
                                             : address.split(separator: ".", omittingEmptySubsequences: false)
        // All-numeric dotted names are malformed IPv4 addresses, not host names.
        if labels.allSatisfy({ $0.allSatisfy(\.isNumber) }) { return false }
        return labels.allSatisfy { isValidHostName(String($0)) }
    }
}

struct Reader {
    let file: String
    /// Problems found so far: a host or source with one is left out and the next one read, so
    /// that one run names them all.
    var problems: [InventoryError] = []
    var directory: String { (file as NSString).deletingLastPathComponent }

    func fail(_ key: String?, _ problem: String) -> InventoryError { InventoryError(file: file, key: key, problem: problem) }

    func checkKeys(_ table: TOMLTable, allowed: [String], at prefix: String?) throws {
        for key in table.keys where !allowed.contains(key) {
            let name = prefix.map { "\($0).\(key)" } ?? key
            throw fail(name, "unknown key (expected one of: \(allowed.joined(separator: ", ")))")
        }
    }

    func string(_ table: TOMLTable, _ key: String, at path: String) throws -> String? {
        guard let value = table[key] else { return nil }
        guard case .string(let s) = value else { throw fail(path, "expected a string, found \(value.typeName)") }
        guard !s.utf8.contains(0) else { throw fail(path, "a string with a NUL byte (Nix strings cannot hold one)") }
        return s
    }

    /// A string that must not be empty (a user, an address, a domain, a path).
    func nonEmpty(_ table: TOMLTable, _ key: String, at path: String) throws -> String? {
        guard let s = try string(table, key, at: path) else { return nil }
        guard !s.isEmpty else { throw fail(path, "must not be empty") }
        return s
    }

    /// A value's problem is recorded and reading goes on (the value counts as unset): one run
    /// names every bad value of a table.
    mutating func collecting<T>(_ read: Result<T?, any Error>) -> T? {
        switch read {
        case .success(let value): return value
        case .failure(let error):
            problems.append(error as? InventoryError ?? fail(nil, "\(error)"))
            return nil
        }
    }

    func user(_ table: TOMLTable, at path: String) throws -> String? {
        guard let u = try nonEmpty(table, "user", at: path) else { return nil }
        guard InventoryReader.isValidUserName(u) else {
            throw fail(path, "\(DisplayText.escape("\"" + u + "\"")) is not a user name (letters, digits, '.', '_' and '-', not starting with '-', at most 32)")
        }
        return u
    }

    func domain(_ table: TOMLTable, at path: String) throws -> String? {
        guard let d = try nonEmpty(table, "domain", at: path) else { return nil }
        guard InventoryReader.isValidDomain(d) else {
            throw fail(path, "\(DisplayText.escape("\"" + d + "\"")) is not a DNS name (RFC 1123: letters, digits and hyphens in dot-separated labels)")
        }
        return d
    }

    func tags(_ table: TOMLTable, at path: String) throws -> [String]? {
        guard let list = try strings(table, "tags", at: path) else { return nil }
        for (i, tag) in list.enumerated() where !InventoryReader.isValidHostName(tag) {
            throw fail("\(path)[\(i)]", "\(DisplayText.escape("\"" + tag + "\"")) is not a tag (tags are spelled as host names: letters, digits and hyphens)")
        }
        return list
    }

    func int(_ table: TOMLTable, _ key: String, at path: String) throws -> Int? {
        guard let value = table[key] else { return nil }
        guard case .integer(let i) = value else { throw fail(path, "expected an integer, found \(value.typeName)") }
        return i
    }

    func bool(_ table: TOMLTable, _ key: String, at path: String) throws -> Bool? {
        guard let value = table[key] else { return nil }
        guard case .boolean(let b) = value else { throw fail(path, "expected true or false, found \(value.typeName)") }
        return b
    }

    func strings(_ table: TOMLTable, _ key: String, at path: String) throws -> [String]? {
        guard let value = table[key] else { return nil }
        guard case .array(let array) = value else { throw fail(path, "expected an array of strings, found \(value.typeName)") }
        return try array.enumerated().map { i, item in
            guard case .string(let s) = item else { throw fail("\(path)[\(i)]", "expected a string, found \(item.typeName)") }
            guard !s.utf8.contains(0) else { throw fail("\(path)[\(i)]", "a string with a NUL byte (Nix strings cannot hold one)") }
            return s
        }
    }

    func subtable(_ table: TOMLTable, _ key: String, at path: String) throws -> TOMLTable? {
        guard let value = table[key] else { return nil }
        guard case .table(let t) = value else { throw fail(path, "expected a table, found \(value.typeName)") }
        return t
    }

    func port(_ table: TOMLTable, at path: String) throws -> Int? {
        guard let p = try int(table, "port", at: path) else { return nil }
        guard (1...65535).contains(p) else { throw fail(path, "port \(p) is not from 1 to 65535") }
        return p
    }

    mutating func fleet(_ table: TOMLTable) throws -> Fleet {
        try checkKeys(table, allowed: ["shared", "defaults", "sources", "secrets", "hosts"], at: nil)
        guard let sharedName = try nonEmpty(table, "shared", at: "shared") else {
            throw fail("shared", "missing: name the shared Nix file, e.g. shared = \"shared.nix\"")
        }
        let shared = InventoryReader.absolute(sharedName, in: directory)
        // The rendered tree is the fleet's folder: shared must be in it to be imported there.
        guard shared.hasPrefix(directory == "/" ? "/" : directory + "/") else {
            throw fail("shared", "\(shared) is outside the fleet's folder \(directory); the rendered configuration imports it from there")
        }
        let sharedDomain = try checkShared(shared)
        guard InventoryReader.isValidDomain(sharedDomain) else {
            throw fail("shared", "`domain` in \(shared) is \(DisplayText.escape("\"" + sharedDomain + "\"")): not a DNS name (RFC 1123: letters, digits and hyphens in dot-separated labels)")
        }

        var defaults = Fleet.Defaults()
        if let d = try subtable(table, "defaults", at: "defaults") {
            try checkKeys(d, allowed: ["user", "port"] + Self.connectionKeys, at: "defaults")
            defaults.user = try user(d, at: "defaults.user")
            defaults.port = try port(d, at: "defaults.port")
            defaults.identity = try identities(d, at: "defaults.identity")
            defaults.knownHosts = try nonEmpty(d, "known_hosts", at: "defaults.known_hosts").map { InventoryReader.absolute($0, in: directory) }
            defaults.hostKeyPolicy = try policy(d, at: "defaults.host_key_policy")
            defaults.jump = try jump(d, at: "defaults.jump")
            defaults.operation = try operation(d, at: "defaults.operation") ?? defaults.operation
            defaults.keepSnapshots = try keepSnapshots(d, at: "defaults.keep_snapshots") ?? defaults.keepSnapshots
            defaults.confirm = try confirm(d, at: "defaults", over: defaults.confirm)
            defaults.checks = try checks(d, at: "defaults.checks") ?? []
            defaults.revertOnCheckFailure = try bool(d, "revert_on_check_failure", at: "defaults.revert_on_check_failure") ?? false
            defaults.skipUnchanged = try bool(d, "skip_unchanged", at: "defaults.skip_unchanged") ?? false
            defaults.extraInputs = try extraInputs(d, at: "defaults.extra_inputs") ?? []
        }

        var sources: [Fleet.Source] = []
        if let s = try subtable(table, "sources", at: "sources") {
            for name in s.keys {
              do {
                let path = "sources.\(name)"
                guard let t = try subtable(s, name, at: path) else { continue }
                let plain = name.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !$0.properties.isWhitespace }
                guard !name.isEmpty, !name.contains("/"), !name.hasPrefix("."), !name.hasPrefix("-"), plain else {
                    throw fail(path, "a source name becomes /var/src/NAME: it must be a plain file name, without spaces or control characters, not starting with '.' or '-'")
                }
                guard !Fleet.Source.isReserved(name) else {
                    throw fail(path, "'\(name)' is reserved (ferry keeps \(Fleet.Source.reservedNames.joined(separator: ", ")) and their .SUFFIX variants under /var/src/.ferry)")
                }
                try checkKeys(t, allowed: ["path", "exclude", "delete_excluded", "rendered", "require", "allow"], at: path)
                let rendered = try bool(t, "rendered", at: "\(path).rendered") ?? false
                if rendered, let other = sources.first(where: \.rendered) {
                    throw fail("\(path).rendered", "sources.\(other.name) is the rendered source already; exactly one source may be")
                }
                if rendered && t["path"] != nil {
                    throw fail("\(path).path", "the rendered source is always the fleet's folder; remove path")
                }
                guard let local = try nonEmpty(t, "path", at: "\(path).path") ?? (rendered ? "." : nil) else {
                    throw fail("\(path).path", "missing: the local directory to push")
                }
                let require = try strings(t, "require", at: "\(path).require") ?? (name == "lnbits-src" ? Fleet.Source.lnbitsRequirements : [])
                for (i, r) in require.enumerated() where r.isEmpty || r.hasPrefix("/") || r.split(separator: "/").contains("..") {
                    throw fail("\(path).require[\(i)]", "'\(r)' must be a path inside the source, without ..")
                }
                let allow = try strings(t, "allow", at: "\(path).allow") ?? []
                for (i, r) in allow.enumerated() where r.isEmpty || r.hasPrefix("/") || r.hasSuffix("/") || r.split(separator: "/").contains("..") {
                    throw fail("\(path).allow[\(i)]", "'\(r)' must be the path of a file inside the source, without ..")
                }
                var source = Fleet.Source(
                    name: name, path: InventoryReader.absolute(local, in: directory),
                    exclude: try strings(t, "exclude", at: "\(path).exclude") ?? (rendered ? Fleet.Source.renderedExcludes : []),
                    deleteExcluded: try bool(t, "delete_excluded", at: "\(path).delete_excluded") ?? true,
                    rendered: rendered, require: require)
                source.allow = allow.map { $0.split(separator: "/").joined(separator: "/") }
                do { _ = try ExcludeRules(validating: source.exclude) } catch {
                    throw fail("\(path).exclude", "\(error)")
                }
                sources.append(source)
              } catch let error as InventoryError {
                problems.append(error)
              }
            }
        }

        var hosts: [Fleet.Host] = []
        var seen: [String: String] = [:]
        if let h = try subtable(table, "hosts", at: "hosts") {
            for name in h.keys {
              do {
                let path = "hosts.\(name)"
                guard let t = try subtable(h, name, at: path) else { continue }
                guard InventoryReader.isValidHostName(name) else {
                    throw fail(path, "'\(name)' is not a valid NixOS host name (letters, digits and hyphens, at most 63, no hyphen at either end)")
                }
                try checkKeys(t, allowed: ["address", "port", "user", "tags", "domain", "vars", "secrets"] + Self.connectionKeys, at: path)
                guard let address = try nonEmpty(t, "address", at: "\(path).address") else {
                    throw fail("\(path).address", "missing: the host's DNS name or IP address")
                }
                // An ssh_config alias is allowed here: the name connected to is checked once
                // ssh_config is applied (Fleet.connection).
                guard InventoryReader.isValidAlias(address) else {
                    throw fail("\(path).address", "'\(address)' is not a DNS name, an IPv4/IPv6 address or an ssh_config Host alias")
                }
                // Each of these is checked whatever the others hold: one run names them all.
                let hostUser = collecting(Result { try user(t, at: "\(path).user") })
                let hostTags = collecting(Result { try tags(t, at: "\(path).tags") })
                let hostDomain = collecting(Result { try domain(t, at: "\(path).domain") })
                var host = Fleet.Host(
                    name: name, address: address,
                    port: try port(t, at: "\(path).port"),
                    user: hostUser, tags: hostTags ?? [], domain: hostDomain,
                    vars: try vars(t, at: "\(path).vars"),
                    identity: try identities(t, at: "\(path).identity"),
                    knownHosts: try nonEmpty(t, "known_hosts", at: "\(path).known_hosts").map { InventoryReader.absolute($0, in: directory) },
                    hostKeyPolicy: try policy(t, at: "\(path).host_key_policy"),
                    jump: try jump(t, at: "\(path).jump"),
                    operation: try operation(t, at: "\(path).operation") ?? defaults.operation)
                host.keepSnapshots = try keepSnapshots(t, at: "\(path).keep_snapshots") ?? defaults.keepSnapshots
                host.confirm = try confirm(t, at: path, over: defaults.confirm)
                host.checks = defaults.checks + (try checks(t, at: "\(path).checks") ?? [])
                host.revertOnCheckFailure = try bool(t, "revert_on_check_failure", at: "\(path).revert_on_check_failure") ?? defaults.revertOnCheckFailure
                host.skipUnchanged = try bool(t, "skip_unchanged", at: "\(path).skip_unchanged") ?? defaults.skipUnchanged
                host.extraInputs = try extraInputs(t, at: "\(path).extra_inputs") ?? defaults.extraInputs
                if let own = try subtable(t, "secrets", at: "\(path).secrets") {
                    for secretName in own.keys {
                        let at = "\(path).secrets.\(secretName)"
                        guard let st = try subtable(own, secretName, at: at) else { continue }
                        let (secret, named) = try secret(st, name: secretName, at: at)
                        if named != nil { throw fail("\(at).hosts", "a host's own secret is for that host alone; hosts = [...] belongs in [secrets.\(secretName)]") }
                        host.secrets.append(secret)
                    }
                }
                // Literal addresses can be compared now; aliases once ssh_config has been applied.
                if InventoryReader.isValidAddress(address) {
                    let endpoint = "\(InventoryReader.normalizedAddress(address)) port \(host.port ?? defaults.port ?? 22)"
                    if let other = seen[endpoint] {
                        throw fail(path, "same address and port as hosts.\(other) (\(endpoint))")
                    }
                    seen[endpoint] = name
                }
                hosts.append(host)
              } catch let error as InventoryError {
                problems.append(error)
              }
            }
        }
        if let first = problems.first { throw first.with(more: Array(problems.dropFirst())) }
        var fleet = Fleet(file: file, shared: shared, sharedDomain: sharedDomain, defaults: defaults, sources: sources, hosts: hosts)
        // Each fleet-wide secret goes to the hosts it names (all by default), unless a host has its own.
        if let s = try subtable(table, "secrets", at: "secrets") {
            for name in s.keys {
                let path = "secrets.\(name)"
                guard let t = try subtable(s, name, at: path) else { continue }
                let (secret, named) = try secret(t, name: name, at: path)
                let selected: [Fleet.Host]
                do { selected = try fleet.select(named ?? []) } catch let error as InventoryError {
                    throw fail("\(path).hosts", error.problem)
                }
                for (i, host) in fleet.hosts.enumerated() where selected.contains(where: { $0.name == host.name }) && !host.secrets.contains(where: { $0.name == name }) {
                    fleet.hosts[i].secrets.append(secret)
                }
            }
        }
        for i in fleet.hosts.indices {
            fleet.hosts[i].secrets.sort { $0.name < $1.name }
            var seenDest: [String: String] = [:]
            for secret in fleet.hosts[i].secrets {
                if let other = seenDest[secret.dest] {
                    throw fail("secrets.\(secret.name).dest", "\(secret.dest) is also secrets.\(other)'s destination on host \(fleet.hosts[i].name)")
                }
                seenDest[secret.dest] = secret.name
            }
        }
        return fleet
    }

    /// Keys `[defaults]` and each host accept alike (a host's value wins).
    static let connectionKeys = ["identity", "known_hosts", "host_key_policy", "jump", "operation", "keep_snapshots",
                                 "confirm", "confirm_timeout", "confirm_port", "activation_timeout", "checks", "revert_on_check_failure",
                                 "skip_unchanged", "extra_inputs"]

    /// `extra_inputs`: absolute paths on the host, without white space or control characters.
    func extraInputs(_ table: TOMLTable, at path: String) throws -> [String]? {
        guard let list = try strings(table, "extra_inputs", at: path) else { return nil }
        for (i, p) in list.enumerated() {
            let plain = p.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !$0.properties.isWhitespace }
            guard p.hasPrefix("/"), p.count > 1, plain else { throw fail("\(path)[\(i)]", "'\(DisplayText.escape(p))' must be an absolute path on the host, without spaces or control characters") }
        }
        return list
    }

    /// `[[…checks]]`: each a `command` (argv) or an `http` URL, with `status` (http only),
    /// `timeout`, `period` and `deadline` in seconds.
    func checks(_ table: TOMLTable, at path: String) throws -> [Fleet.HealthCheck]? {
        guard let value = table["checks"] else { return nil }
        guard case .array(let items) = value else { throw fail(path, "expected an array of tables ([[…checks]]), found \(value.typeName)") }
        return try items.enumerated().map { i, item in
            let at = "\(path)[\(i)]"
            guard case .table(let t) = item else { throw fail(at, "expected a table, found \(item.typeName)") }
            try checkKeys(t, allowed: ["command", "http", "status", "timeout", "period", "deadline"], at: at)
            let command = try strings(t, "command", at: "\(at).command")
            let url = try nonEmpty(t, "http", at: "\(at).http")
            var check: Fleet.HealthCheck
            switch (command, url) {
            case (let argv?, nil):
                guard !argv.isEmpty, !argv[0].isEmpty else { throw fail("\(at).command", "empty: give the program and its arguments, e.g. [\"systemctl\", \"is-active\", \"lnbits\"]") }
                check = .init(probe: .command(argv))
                guard t["status"] == nil else { throw fail("\(at).status", "only an http check has a status") }
            case (nil, let url?):
                check = .init(probe: .http(try httpTarget(url, at: "\(at).http")))
                if let value = t["status"] {
                    guard case .array(let codes) = value, !codes.isEmpty else { throw fail("\(at).status", "expected a non-empty array of HTTP status codes, e.g. [200]") }
                    check.status = try codes.enumerated().map { j, code in
                        guard case .integer(let n) = code, (100...599).contains(n) else { throw fail("\(at).status[\(j)]", "not an HTTP status code (100-599)") }
                        return n
                    }
                }
            case (nil, nil): throw fail(at, "a check needs command = [...] or http = \"http://...\"")
            case (_?, _?): throw fail(at, "a check has either command or http, not both")
            }
            func seconds(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
                guard let n = try int(t, key, at: "\(at).\(key)") else { return nil }
                guard range.contains(n) else { throw fail("\(at).\(key)", "\(n): seconds from \(range.lowerBound) to \(range.upperBound)") }
                return n
            }
            check.timeout = try seconds("timeout", 1...3600) ?? check.timeout
            check.period = try seconds("period", 1...3600) ?? check.period
            check.deadline = try seconds("deadline", 0...3600) ?? check.deadline
            return check
        }
    }

    /// `http://HOST[:PORT][/PATH]`: plain HTTP/1.1 through the SSH connection; no https (ferry
    /// would need a TLS stack of its own for it).
    func httpTarget(_ url: String, at path: String) throws -> Fleet.HealthCheck.HTTPTarget {
        let shown = DisplayText.escape("\"" + url + "\"")
        let lower = url.lowercased()
        if lower.hasPrefix("https://") {
            throw fail(path, "\(shown): https is not supported (ferry checks over plain HTTP through the SSH connection, which is already encrypted); check the service's plain-HTTP port, or use a command check such as [\"curl\", \"-fsS\", \"\(url)\"]")
        }
        guard lower.hasPrefix("http://") else { throw fail(path, "\(shown): not an http:// URL") }
        let rest = url.dropFirst("http://".count)
        guard !rest.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else { throw fail(path, "\(shown): a URL with white space or control characters") }
        let authority = String(rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" })
        var target = String(rest.dropFirst(authority.count).prefix { $0 != "#" })
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        guard !authority.contains("@") else { throw fail(path, "\(shown): a URL with a user name or password") }
        var host = authority, port = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw fail(path, "\(shown): an unclosed [IPv6 address]") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw fail(path, "\(shown): not a port after the address") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { throw fail(path, "\(shown): the port is not from 1 to 65535") }
            port = p
        }
        guard !host.isEmpty, InventoryReader.isValidAddress(host) || InventoryReader.isValidDomain(host) else {
            throw fail(path, "\(shown): '\(DisplayText.escape(host))' is not a host name or IP address")
        }
        return .init(url: url, host: host, port: port, path: target, authority: authority)
    }

    /// `confirm`, `confirm_timeout` (seconds, 1–3600), `activation_timeout` (seconds, 1–86400),
    /// `confirm_port`, each over what `base` (the defaults) says.
    func confirm(_ table: TOMLTable, at path: String, over base: Fleet.Confirm) throws -> Fleet.Confirm {
        var c = base
        c.enabled = try bool(table, "confirm", at: "\(path).confirm") ?? c.enabled
        if let t = try int(table, "confirm_timeout", at: "\(path).confirm_timeout") {
            guard (1...3600).contains(t) else { throw fail("\(path).confirm_timeout", "\(t): seconds from 1 to 3600 (the host reverts when no fresh login confirms the switch in time)") }
            c.timeout = t
        }
        if let t = try int(table, "activation_timeout", at: "\(path).activation_timeout") {
            guard (1...86400).contains(t) else { throw fail("\(path).activation_timeout", "\(t): seconds from 1 to 86400") }
            c.activationTimeout = t
        }
        if let p = try int(table, "confirm_port", at: "\(path).confirm_port") {
            guard (1...65535).contains(p) else { throw fail("\(path).confirm_port", "\(p): not a TCP port (1-65535)") }
            c.port = p
        }
        return c
    }

    /// `keep_snapshots`: how many successful deploys keep their snapshots, at least 1.
    func keepSnapshots(_ table: TOMLTable, at path: String) throws -> Int? {
        guard let n = try int(table, "keep_snapshots", at: path) else { return nil }
        guard n >= 1 else { throw fail(path, "\(n): at least 1 (the snapshot a rollback returns to)") }
        return n
    }

    /// `jump`: ProxyJump syntax (`[user@]host[:port]`, comma-separated), or "none".
    func jump(_ table: TOMLTable, at path: String) throws -> String? {
        guard let value = try nonEmpty(table, "jump", at: path) else { return nil }
        guard value.lowercased() == "none" || (try? ProxyJump(value)) != nil else {
            throw fail(path, "'\(value)' is not a jump host list ([user@]host[:port], comma-separated) or \"none\"")
        }
        return value
    }

    /// `identity`: one path or a list of paths.
    func identities(_ table: TOMLTable, at path: String) throws -> [String]? {
        guard let value = table["identity"] else { return nil }
        let list: [String]
        if case .string = value { list = [try nonEmpty(table, "identity", at: path)!] } else {
            guard case .array = value else { throw fail(path, "expected a path or a list of paths, found \(value.typeName)") }
            list = try strings(table, "identity", at: path)!
        }
        for (i, p) in list.enumerated() where p.isEmpty { throw fail("\(path)[\(i)]", "must not be empty") }
        return list.map { InventoryReader.absolute($0, in: directory) }
    }

    func policy(_ table: TOMLTable, at path: String) throws -> HostKeyPolicy? {
        guard let text = try nonEmpty(table, "host_key_policy", at: path) else { return nil }
        guard let policy = HostKeyPolicy(rawValue: text) else {
            throw fail(path, "'\(text)' is not one of \(HostKeyPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return policy
    }

    func operation(_ table: TOMLTable, at path: String) throws -> Fleet.Operation? {
        guard let text = try nonEmpty(table, "operation", at: path) else { return nil }
        guard let op = Fleet.Operation(rawValue: text) else {
            throw fail(path, "'\(text)' is not one of \(Fleet.Operation.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return op
    }

    func vars(_ table: TOMLTable, at path: String) throws -> [(String, NixLiteral)] {
        guard let t = try subtable(table, "vars", at: path) else { return [] }
        return try t.keys.map { key in (key, try literal(t[key]!, at: "\(path).\(key)")) }
    }

    /// Values nested deeper than this render Nix that Nix's parser would refuse.
    static let maximumNesting = 64

    func literal(_ value: TOMLValue, at path: String, depth: Int = 0) throws -> NixLiteral {
        guard depth <= Self.maximumNesting else { throw fail(path, "nested more than \(Self.maximumNesting) levels deep") }
        switch value {
        case .string(let s):
            guard !s.utf8.contains(0) else { throw fail(path, "a string with a NUL byte (Nix strings cannot hold one)") }
            return .string(s)
        case .integer(let i): return .int(i)
        case .boolean(let b): return .bool(b)
        case .float(let d):
            guard d.isFinite else { throw fail(path, "\(d) has no Nix literal (Nix has no nan or inf)") }
            guard d == 0 || d.isNormal else { throw fail(path, "\(d) is subnormal: Nix 2.8 reads no literal for it") }
            return .float(d)
        case .array(let items):
            return .list(try items.enumerated().map { i, item in try literal(item, at: "\(path)[\(i)]", depth: depth + 1) })
        case .table(let t):
            return .attrs(try t.keys.map { ($0, try literal(t[$0]!, at: "\(path).\($0)", depth: depth + 1)) })
        case .offsetDateTime, .localDateTime, .localDate, .localTime:
            throw fail(path, "a TOML \(value.typeName) has no Nix literal; write it as a string")
        }
    }

    /// shared.nix must evaluate (with ferry's evaluator) to a set whose `domain` is a string.
    func checkShared(_ shared: String) throws -> String {
        guard FileManager.default.fileExists(atPath: shared) else {
            throw fail("shared", "\(shared) does not exist")
        }
        // On the evaluator's large stack, where the values are also freed.
        let outcome = try NativeStack.run { () -> Result<String, InventoryError> in
            let evaluator = Evaluator()
            defer { evaluator.tearDown() }
            let value: Value
            do {
                value = try evaluator.evaluate(file: shared)
            } catch {
                return .failure(fail("shared", "\(shared) does not evaluate: \(error)"))
            }
            guard case .attrs = value else { return .failure(fail("shared", "\(shared) must evaluate to an attribute set, not \(value.typeName)")) }
            let domain: Value
            do {
                domain = try evaluator.select(value, path: ["domain"])
            } catch {
                return .failure(fail("shared", "\(shared) must set `domain` (a string): \(error)"))
            }
            guard case .string(let d) = domain, !d.isEmpty else {
                return .failure(fail("shared", "`domain` in \(shared) must be a non-empty string, not \(domain.typeName)"))
            }
            guard let text = d.text else { return .failure(fail("shared", "`domain` in \(shared) is not valid UTF-8")) }
            return .success(text)
        }
        return try outcome.get()
    }
}
