import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// ferry's ssh_config reader against OpenSSH's own: for hand-written and generated configs and
/// host names, the HostName, User, Port, IdentityFile list, ProxyJump and UserKnownHostsFile
/// ferry resolves equal what `ssh -G -F CONFIG HOST` prints; where the config sets nothing,
/// ferry resolves nothing (its documented defaults apply, not OpenSSH's).
final class SSHConfigDifferentialTests: XCTestCase {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["FERRY_SSHCONFIG_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0x55C0_F16

    var work: String!
    /// The password database's home, which OpenSSH uses for `~`. Never touched: ssh runs in a
    /// mount namespace of its own where `home` below is mounted over it.
    let realHome: String = getpwuid(getuid()).flatMap { $0.pointee.pw_dir.map { String(cString: $0) } } ?? "/root"
    /// A private home in the work folder: ferry is given it, ssh sees it at `realHome`.
    var home = ""
    let localUser = SSHConfiguration.localUserName
    /// Relative Includes are read from ~/.ssh: a folder there.
    var relativeDir: String!

    override func setUpWithError() throws {
        _ = try requireSSH()
        work = NSTemporaryDirectory() + "ferry-sshconfig-\(UUID().uuidString)"
        home = work + "/home"
        relativeDir = "ferry-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: home + "/.ssh/" + relativeDir, withIntermediateDirectories: true)
        chmod(home + "/.ssh", 0o700)
    }

    override func tearDown() {
        if let work { try? FileManager.default.removeItem(atPath: work) }
    }

    /// Runs `ssh -G` with `home` mounted over the real home (and `mounts` after it), in a mount
    /// namespace of its own.
    func sshG(_ arguments: [String], mounts: [(String, String)] = []) throws -> Command.Result {
        let binds = ([(home, realHome)] + mounts).enumerated().map { i, _ in "mount --bind \"$\(2 * i + 1)\" \"$\(2 * i + 2)\"" }
        let count = 2 * (mounts.count + 1)
        let script = binds.joined(separator: " && ") + " && shift \(count) && exec ssh -G \"$@\""
        let r = try Command.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
                                + ([(home, realHome)] + mounts).flatMap { [$0.0, $0.1] } + arguments)
        if r.status != 0 && (r.errorOutput.hasPrefix("unshare:") || r.errorOutput.hasPrefix("mount:")) {
            throw TestHostError.missingPrerequisite("unshare and mount (root): \(r.errorOutput)")
        }
        return r
    }

    func requireSSH() throws -> String {
        do { return try Command.which("ssh") } catch {
            if ProcessInfo.processInfo.environment["CI"] == "true" { throw error }
            throw XCTSkip("\(error)")
        }
    }

    /// What `ssh -G` printed for the compared keys, or nil when it refused the config.
    func openSSH(_ config: String, _ host: String) throws -> [String: String]? {
        parseOpenSSH(try sshG(["-F", config, host]))
    }

    /// The same without `-F`: ssh reads ~/.ssh/config and then /etc/ssh/ssh_config, here the
    /// folders given, mounted over those two in a mount namespace of its own.
    func openSSH(dotSSH: String, etcSSH: String, _ host: String) throws -> [String: String]? {
        parseOpenSSH(try sshG([host], mounts: [(dotSSH, realHome + "/.ssh"), (etcSSH, "/etc/ssh")]))
    }

    func parseOpenSSH(_ r: Command.Result) -> [String: String]? {
        guard r.status == 0 else { return nil }
        var values: [String: String] = [:]
        for line in r.output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2, ["hostname", "user", "port", "identityfile", "proxyjump", "userknownhostsfile"].contains(parts[0]) else { continue }
            // ssh names the home it sees; ferry was given the private one mounted there.
            let value = parts[1].replacingOccurrences(of: realHome + "/", with: home + "/")
            values[parts[0]] = values[parts[0]].map { $0 + "\n" + value } ?? value
        }
        return values
    }

    /// The same keys from ferry's reader, OpenSSH's defaults filled in where ferry resolved nothing.
    func ferry(_ config: String, _ host: String, systemFile: String? = nil) throws -> [String: String]? {
        let resolved: SSHClientConfig.Resolved
        do { resolved = try SSHClientConfig(file: config, systemFile: systemFile, home: home, localUser: localUser).resolve(host) } catch is SSHConfigError { return nil }
        var values: [String: String] = [:]
        let hostName = resolved.hostName?.value ?? host
        let isAddress = hostName.allSatisfy { "0123456789.".contains($0) } || hostName.contains(":")
        let finalHost = isAddress ? hostName : hostName.lowercased()
        let user = resolved.user?.value ?? localUser
        let port = resolved.port?.value ?? 22
        values["hostname"] = finalHost
        values["user"] = user
        values["port"] = String(port)
        let identities = resolved.identityFiles.map(\.value)
        values["identityfile"] = (identities.isEmpty ? ["~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk", "~/.ssh/id_ed25519", "~/.ssh/id_ed25519_sk", "~/.ssh/id_xmss", "~/.ssh/id_dsa"] : identities).joined(separator: "\n")
        let reader = SSHClientConfig(file: config, home: home, localUser: localUser)
        let tokens: [Character: String] = ["h": finalHost, "p": String(port), "r": user, "u": localUser, "n": host, "d": home]
        let files = resolved.userKnownHostsFiles?.value ?? ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"]
        do {
            values["userknownhostsfile"] = try files.map { try SSHClientConfig.expand(reader.tilde($0), tokens: tokens) }.joined(separator: " ")
        } catch { return nil }
        // "none" turns jumping off (ssh -G then prints no proxyjump line).
        if let jump = resolved.proxyJump?.value, jump.lowercased() != "none" {
            let chain = try ProxyJump(jump)
            if chain.loops(host: finalHost, port: port, user: user) { return nil }
            values["proxyjump"] = chain.openSSHForm(written: jump)
        }
        return values
    }

    func compare(_ text: String, hosts: [String], files: [String: String] = [:], _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let config = work + "/config-\(UUID().uuidString.prefix(8))"
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        for (name, contents) in files {
            let path = name.hasPrefix("/") ? name : work + "/" + name
            try contents.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o644)
        }
        for host in hosts {
            assertAgree(try ferry(config, host), try openSSH(config, host), "\(label), host \(host)", text, file: file, line: line)
        }
    }

    /// Both refuse, or both accept with the same values (and no ProxyJump where ssh -G prints none).
    func assertAgree(_ ours: [String: String]?, _ theirs: [String: String]?, _ label: String, _ text: String, file: StaticString, line: UInt) {
        XCTAssertEqual(ours == nil, theirs == nil, "\(label): ferry \(ours == nil ? "refused" : "accepted"), ssh -G \(theirs == nil ? "refused" : "accepted")\n\(text)", file: file, line: line)
        guard let ours, let theirs else { return }
        for key in theirs.keys.sorted() where ours[key] != theirs[key] {
            XCTFail("\(label), \(key): ferry \(ours[key] ?? "(unset)") ≠ ssh -G \(theirs[key]!)\n\(text)", file: file, line: line)
        }
        if theirs["proxyjump"] == nil { XCTAssertNil(ours["proxyjump"], "\(label): proxyjump", file: file, line: line) }
    }

    /// A user config and a system config, read as ssh reads them without `-F`. Files named
    /// `~/.ssh/REL/…` (relative Includes of the user file) are written where both readers see them:
    /// under the private home's .ssh for ferry, and in the folder ssh has mounted there. Names not
    /// starting with "/" go beside the system file (its relative Includes).
    func compareWithSystemFile(user: String?, system: String?, hosts: [String], files: [String: String] = [:], _ label: String,
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let dotSSH = work + "/dot-ssh-\(UUID().uuidString.prefix(8))", etcSSH = work + "/etc-ssh-\(UUID().uuidString.prefix(8))"
        for dir in [dotSSH, etcSSH] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        if let user { try user.write(toFile: dotSSH + "/config", atomically: true, encoding: .utf8) }
        if let system { try system.write(toFile: etcSSH + "/ssh_config", atomically: true, encoding: .utf8) }
        for (name, contents) in files {
            var paths = [name.hasPrefix("/") ? name : etcSSH + "/" + name]
            if name.hasPrefix(home + "/.ssh/") { paths.append(dotSSH + "/" + name.dropFirst(home.count + 6)) }
            for path in paths {
                try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try contents.write(toFile: path, atomically: true, encoding: .utf8)
                chmod(path, 0o644)
            }
        }
        let text = "~/.ssh/config:\n\(user ?? "(none)")\n/etc/ssh/ssh_config:\n\(system ?? "(none)")"
        for host in hosts {
            assertAgree(try ferry(dotSSH + "/config", host, systemFile: etcSSH + "/ssh_config"), try openSSH(dotSSH: dotSSH, etcSSH: etcSSH, host),
                        "\(label), host \(host)", text, file: file, line: line)
        }
    }

    func testTheSystemFileIsReadAfterTheUsersAsOpenSSHReadsIt() throws {
        let debian = "Include /etc/ssh/ssh_config.d/*.conf\nHost *\n    SendEnv LANG LC_*\n    HashKnownHosts yes\n    GSSAPIAuthentication yes\n"
        let cases: [(String?, String?, [String], [String: String])] = [
            (nil, "Host web\n  User from-system\n  Port 2201\n", ["web", "db"], [:]),
            ("Host web\n  User from-user\n", "Host *\n  User from-system\n  Port 2202\n", ["web", "db"], [:]),
            ("Host *\n  IdentityFile ~/.ssh/user-key\n", "Host *\n  IdentityFile /etc/ssh/system-key\n", ["x"], [:]),
            ("Host x\n  HostName real\n", "Match host real\n  User by-real-name\n", ["x", "real"], [:]),
            ("Host x\n  ProxyJump none\n", "Host *\n  ProxyJump bastion\n", ["x", "y"], [:]),
            ("Host web\n  User u\n", debian, ["web"], [:]),
            (nil, "Include ssh_config.d/*.conf\nHost *\n  User last\n", ["x", "y"],
             ["ssh_config.d/10-x.conf": "Host x\n  User from-dropin\n", "ssh_config.d/20-all.conf": "Port 2203\n"]),
            (nil, "Include ~/.ssh/nope.conf\n", ["x"], [:]),                       // both refuse a ~ path here
            ("Include \(relativeDir!)/user.conf\n", "Host *\n  Port 2204\n", ["x"],
             ["\(home)/.ssh/\(relativeDir!)/user.conf": "Host x\n  User from-user-include\n"]),
            ("IgnoreUnknown Fancy*\n", "Host *\n  FancyOption yes\n  User ignored-unknown-carries\n", ["x"], [:]),
            (nil, "Host *\n  NotAKeyword yes\n", ["x"], [:]),                    // both refuse
            ("Host *\n  Port notaport\n", "Host *\n  User u\n", ["x"], [:]),    // both refuse
            ("Host web\n  User u\n", nil, ["web"], [:]),
        ]
        for (n, c) in cases.enumerated() { try compareWithSystemFile(user: c.0, system: c.1, hosts: c.2, files: c.3, "system-file case \(n)") }
    }

    func testGeneratedUserAndSystemFiles() throws {
        var rng = FixtureRandom(seed: Self.seed ^ 0x5157)
        for n in 0..<60 {
            let user = generate(&rng, n), system = generate(&rng, 1000 + n)
            // `generate` names an Include's file by its path under ~/.ssh (a relative Include) or
            // by a bare name (an absolute one, into the work folder). A relative Include in the
            // system file reads from the system file's folder instead.
            let dotSSH = home + "/.ssh/"
            var files: [String: String] = [:]
            for (name, contents) in user.files { files[name.hasPrefix("/") ? name : work + "/" + name] = contents }
            for (name, contents) in system.files { files[name.hasPrefix(dotSSH) ? String(name.dropFirst(dotSSH.count)) : work + "/" + name] = contents }
            try compareWithSystemFile(user: rng.below(8) == 0 ? nil : user.text, system: system.text, hosts: user.hosts + system.hosts,
                                      files: files, "generated pair \(n)")
            if testRun?.failureCount ?? 0 > 0 { break }
        }
    }

    // MARK: - Hand-written

    func testHandWrittenConfigs() throws {
        let w = work!
        let rel = relativeDir!
        let cases: [(String, [String], [String: String])] = [
            ("Host web\n  HostName 10.0.0.1\n  User deploy\n  Port 2222\n", ["web", "other"], [:]),
            ("Host *\n  User everyone\nHost web\n  User web-user\n", ["web"], [:]),
            ("Host web\n  User first\nHost *\n  User second\n", ["web", "db"], [:]),
            ("Host web db\n  Port 2200\n", ["web", "db", "cache"], [:]),
            ("Host *.example.com\n  User ex\n", ["a.example.com", "example.com", "b.a.example.com"], [:]),
            ("Host web?\n  Port 1234\n", ["web1", "web12", "web"], [:]),
            ("Host * !db\n  User notdb\n", ["web", "db"], [:]),
            ("Host !db *\n  User notdb\n", ["web", "db"], [:]),
            ("Host !db\n  User only-negated\n", ["web", "db"], [:]),
            ("Host alias\n  HostName %h.internal\n", ["alias"], [:]),
            ("Host alias\n  HostName real-%h-%%\n", ["alias"], [:]),
            ("Host x\n  HostName UPPER.Example.COM\n", ["x"], [:]),
            ("Host x\n  IdentityFile ~/.ssh/a\n  IdentityFile ~/.ssh/b\n  IdentityFile ~/.ssh/a\n", ["x"], [:]),
            ("IdentityFile /k/global\nHost x\n  IdentityFile /k/x\n", ["x", "y"], [:]),
            ("Host x\n  IdentityFile ~/.ssh/id_%h_%r_%u\n", ["x"], [:]),
            ("Host x\n  UserKnownHostsFile ~/.ssh/kh1 ~/.ssh/kh2\nHost *\n  UserKnownHostsFile /other\n", ["x", "y"], [:]),
            ("Host x\n  User u1\n  UserKnownHostsFile %d/kh_%h_%p_%r_%u_%n\n  Port 2022\n", ["x"], [:]),
            ("Host x\n  HostName x.lan\n  UserKnownHostsFile /kh/%h\n", ["x"], [:]),
            ("Host x\n  ProxyJump bastion\n", ["x"], [:]),
            ("Host x\n  ProxyJump jumper@bastion:2200\n", ["x"], [:]),
            ("Host x\n  ProxyJump a,b@c:22,ssh://d@e:2222\n", ["x"], [:]),
            ("Host x\n  ProxyJump none\nHost *\n  ProxyJump bastion\n", ["x", "y"], [:]),
            ("Host x\n  ProxyJump 10.0.0.9:2222\n", ["x"], [:]),
            ("Host x\n  ProxyJump [fe80::1]:2222\n", ["x"], [:]),
            ("Host=x\n  User=equals\n  Port = 2201\n", ["x"], [:]),
            ("host x\n  USER upper-keyword\n  hOsTnAmE mixed\n", ["x"], [:]),
            ("# comment\n\n   \nHost x # trailing comment\n  User c # comment\n", ["x"], [:]),
            ("Host x\n  IdentityFile \"/path with space/key\"\n", ["x"], [:]),
            ("Host x\n  IdentityFile /path\\ with\\ escape\n", ["x"], [:]),
            ("Host x\n  User 'single'\n", ["x"], [:]),
            ("Match host x\n  User matched\n", ["x", "y"], [:]),
            ("Host alias\n  HostName real\nMatch host real\n  User by-real-name\n", ["alias", "real"], [:]),
            ("Host alias\n  HostName real\nMatch originalhost alias\n  User by-original\n", ["alias", "real"], [:]),
            ("Match user deploy\n  Port 2300\nHost *\n  User deploy\n", ["x"], [:]),
            ("Host *\n  User deploy\nMatch user deploy\n  Port 2300\n", ["x"], [:]),
            ("Match host a,b,!c\n  User list\n", ["a", "b", "c"], [:]),
            ("Match !host a\n  User not-a\n", ["a", "b"], [:]),
            ("Match all\n  User everyone\n", ["x"], [:]),
            ("Match host x user root\n  Port 2400\n", ["x"], [:]),
            ("Match host x !user root\n  Port 2400\n", ["x"], [:]),
            ("Include \(w)/inc1\nHost *\n  User after\n", ["x", "y"], ["inc1": "Host x\n  User from-include\n"]),
            ("Host x\n  Include \(w)/inc2\n", ["x", "y"], ["inc2": "User inside\nHost *\n  Port 2500\n"]),
            ("Host y\n  Include \(w)/inc3\nHost *\n  User z\n", ["x", "y"], ["inc3": "Host x\n  User never\n"]),
            ("Include \(w)/glob-*.conf\n", ["x"], ["glob-b.conf": "Host x\n  Port 2601\n", "glob-a.conf": "Host x\n  Port 2600\n"]),
            ("Include \(rel)/relative.conf\n", ["x"], ["\(home)/.ssh/\(rel)/relative.conf": "Host x\n  User relative\n"]),
            ("Include \(w)/missing-*.conf\nHost x\n  User ok\n", ["x"], [:]),
            ("Host x\n  ForwardAgent yes\n  ServerAliveInterval 10\n  ControlMaster auto\n  User ignored-keywords-around\n", ["x"], [:]),
            // Errors both refuse.
            ("Host x\n  NotAKeyword yes\n", ["x"], [:]),
            ("Host x\n  Port notanumber\n", ["x"], [:]),
            ("Host x\n  User\n", ["x"], [:]),
            ("Host x\n  User a b\n", ["x"], [:]),
            ("Host x\n  IdentityFile \"unclosed\n", ["x"], [:]),
            ("Host x\n  HostName %z\n", ["x"], [:]),
            ("IgnoreUnknown NotAKeyword\nHost x\n  NotAKeyword yes\n  User ignored-unknown\n", ["x"], [:]),
            ("Match bogus x\n  User b\n", ["x"], [:]),
            ("Match all host x\n  User b\n", ["x"], [:]),
            ("Include /dev/zero\nHost x\n  User b\n", ["x"], [:]),
            // Found by the fuzz pass: a time that overflowed trapped; OpenSSH refuses over INT_MAX.
            ("Host x\n  ConnectTimeout 2147483648\n", ["x"], [:]),
            ("Host x\n  ServerAliveInterval 3333333333333333h\n", ["x"], [:]),
            ("Host x\n  ConnectTimeout 2147483647\n", ["x"], [:]),
        ]
        XCTAssertGreaterThanOrEqual(cases.count, 40)
        for (n, c) in cases.enumerated() { try compare(c.0, hosts: c.1, files: c.2, "hand-written case \(n)") }
    }

    func testUnsupportedMatchCriteriaWarnAndSkipTheBlock() throws {
        let config = work + "/warn"
        try "Match exec \"true\"\n  User from-exec\nMatch localuser root\n  Port 2222\n".write(toFile: config, atomically: true, encoding: .utf8)
        let r = try SSHClientConfig(file: config, home: home, localUser: localUser).resolve("x")
        XCTAssertNil(r.user)
        XCTAssertNil(r.port)
        XCTAssertEqual(r.warnings, ["\(config):1: Match exec is not supported by ferry; this Match block is skipped",
                                    "\(config):3: Match localuser is not supported by ferry; this Match block is skipped"])
        // A malformed line names the file and the line.
        try "Host x\n\n  Port 0\n".write(toFile: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SSHClientConfig(file: config, home: home, localUser: localUser).resolve("x")) {
            XCTAssertEqual("\($0)", "\(config) line 3: bad port '0'")
        }
        // No file: nothing set.
        XCTAssertNil(try SSHClientConfig(file: work + "/none", home: home, localUser: localUser).resolve("x").user)
    }

    // MARK: - Generated

    func testGeneratedConfigs() throws {
        print("ssh_config seed: \(String(Self.seed, radix: 16)) (set FERRY_SSHCONFIG_SEED to replay another)")
        var rng = FixtureRandom(seed: Self.seed)
        var features: [String: Int] = [:]
        let count = 320
        for n in 0..<count {
            let generated = generate(&rng, n)
            for f in generated.features { features[f, default: 0] += 1 }
            try compare(generated.text, hosts: generated.hosts, files: generated.files, "generated case \(n)")
            if testRun?.failureCount ?? 0 > 0 { break }
        }
        for feature in ["include", "match", "negated", "token", "proxyjump-chain"] {
            XCTAssertGreaterThanOrEqual(features[feature, default: 0], count / 10, "\(feature) in at least a tenth of the cases: \(features)")
        }
    }

    struct Generated {
        var text = ""
        var hosts: [String] = []
        var files: [String: String] = [:]
        var features: Set<String> = []
    }

    static let hostPool = ["web1", "web2", "db.example.com", "cache.example.com", "bastion", "alias", "10.0.0.5", "Mixed.Case"]

    func generate(_ rng: inout FixtureRandom, _ n: Int) -> Generated {
        var g = Generated()
        func pick<T>(_ a: [T]) -> T { a[rng.below(a.count)] }
        func pattern() -> String {
            switch rng.below(6) {
            case 0: return "*"
            case 1: return "web*"
            case 2: return "*.example.com"
            case 3: return "web?"
            default: return pick(Self.hostPool)
            }
        }
        func hostLine() -> String {
            var patterns = (0..<(1 + rng.below(3))).map { _ in pattern() }
            if rng.below(3) == 0 {
                patterns.insert("!" + pick(Self.hostPool), at: rng.below(patterns.count + 1))
                g.features.insert("negated")
            }
            return (rng.below(4) == 0 ? "host " : "Host ") + patterns.joined(separator: " ")
        }
        func matchLine() -> String {
            g.features.insert("match")
            var criteria: [String] = []
            for _ in 0..<(1 + rng.below(2)) {
                let neg = rng.below(4) == 0 ? "!" : ""
                if neg == "!" { g.features.insert("negated") }
                switch rng.below(4) {
                case 0: criteria.append("\(neg)host " + (0..<(1 + rng.below(2))).map { _ in pattern() }.joined(separator: ","))
                case 1: criteria.append("\(neg)originalhost " + pattern())
                case 2: criteria.append("\(neg)user " + pick(["root", "deploy", "d*", "!root,*"]))
                default: criteria.append("\(neg)host " + pick(Self.hostPool))
                }
            }
            if rng.below(8) == 0 { return "Match all" }
            return "Match " + criteria.joined(separator: " ")
        }
        func setting() -> String {
            let sep = rng.below(5) == 0 ? "=" : " "
            switch rng.below(11) {
            case 0:
                if rng.below(2) == 0 { g.features.insert("token"); return "HostName\(sep)%h." + pick(["lan", "internal", "example.org"]) }
                return "HostName\(sep)" + pick(["10.1.2.3", "real.example.net", "db-real"])
            case 1: return "User\(sep)" + pick(["deploy", "root", "ops", "d2"])
            case 2: return "Port\(sep)" + pick(["22", "2222", "2200", "65000"])
            case 3, 4:
                if rng.below(2) == 0 { g.features.insert("token"); return "IdentityFile " + pick(["~/.ssh/id_%h", "%d/.ssh/key_%r", "/keys/%u/%n"]) }
                return "IdentityFile " + pick(["~/.ssh/deploy", "/etc/ferry/key", "~/.ssh/id_ed25519", "\"/path with space/k\""])
            case 5:
                g.features.insert("token")
                return "UserKnownHostsFile " + (0..<(1 + rng.below(2))).map { _ in pick(["~/.ssh/kh_%h", "%d/kh_%p", "/kh/%r@%h:%p", "/kh/%n_%u", "/kh/plain", "~/kh%%"]) }.joined(separator: " ")
            case 6:
                let hops = (0..<(1 + rng.below(3))).map { _ in pick(["bastion", "jump@gw", "gw:2222", "ssh://u@gw2:2022", "10.9.9.9", "ops@10.0.0.1:2200"]) }
                if hops.count > 1 { g.features.insert("proxyjump-chain") }
                return "ProxyJump " + (rng.below(10) == 0 ? "none" : hops.joined(separator: ","))
            case 7: return pick(["ForwardAgent yes", "ServerAliveInterval 15", "ControlMaster auto", "Compression yes", "SendEnv LANG"])
            case 8: return "# a comment"
            case 9: return "StrictHostKeyChecking " + pick(["yes", "accept-new", "no"])
            default: return "ConnectTimeout " + pick(["5", "1m", "none"])
            }
        }
        func block(_ depth: Int) -> String {
            var text = ""
            for _ in 0..<(1 + rng.below(4)) { text += "  " + setting() + "\n" }
            return text
        }
        var text = ""
        if rng.below(3) == 0 { text += block(0) }
        for b in 0..<(1 + rng.below(4)) {
            if rng.below(5) < 3 { text += hostLine() + "\n" } else { text += matchLine() + "\n" }
            text += block(1)
            if rng.below(6) == 0 || (n % 8 == 0 && b == 0) {
                g.features.insert("include")
                let name = "inc-\(n)-\(b)"
                var inner = ""
                if rng.below(2) == 0 { inner += block(2) }
                inner += hostLine() + "\n" + block(2)
                if rng.below(3) == 0 {
                    // Relative to ~/.ssh, as OpenSSH reads it.
                    g.files["\(home)/.ssh/\(relativeDir!)/\(name)"] = inner
                    text += "  Include \(relativeDir!)/\(name)\n"
                } else {
                    g.files[name] = inner
                    text += "  Include \(work!)/\(name)\n"
                }
            }
        }
        if rng.below(4) == 0 { text += "Host *\n" + block(1) }
        g.text = text
        g.hosts = (0..<2).map { _ in pick(Self.hostPool) }
        return g
    }
}
