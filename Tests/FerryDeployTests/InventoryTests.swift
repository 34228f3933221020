@testable import FerryDeploy
import FerryNix
import Foundation
import XCTest

final class InventoryTests: XCTestCase {
    let goodShared = "{ domain = \"example.org\"; }"

    /// Loads a fleet made of `toml` (and `shared`), expecting an error that names `key` and says `problem`.
    func expectError(_ toml: String, shared: String? = nil, key: String?, _ problem: String,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let fixture = try FleetFixture(copyingExample: false)
        defer { fixture.remove() }
        try fixture.write("shared.nix", shared ?? goodShared)
        try fixture.write("fleet.toml", toml)
        XCTAssertThrowsError(try fixture.load(), file: file, line: line) { error in
            guard let e = error as? InventoryError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(e.key, key, "\(e)", file: file, line: line)
            XCTAssertTrue(e.problem.contains(problem), "\(e)", file: file, line: line)
            XCTAssertTrue("\(e)".hasPrefix(fixture.fleetFile + ": "), "names the file: \(e)", file: file, line: line)
        }
    }

    let head = "shared = \"shared.nix\"\n"

    /// Issue 8: typos that aborted TOMLKit's toml++ are syntax errors naming line and column;
    /// bytes that are not UTF-8 and NUL in strings are refused; deep recursion in shared.nix works.
    func testNoFleetFileCrashesTheReader() throws {
        for typo in ["exclude = [\".env\", }data/\"]", "a = [}", "[&", "[@web]", "[ä]", "[#]"] {
            try expectError(head + typo + "\n", key: nil, "TOML syntax error at line 2, column")
        }
        try expectError(head + "[hosts.a]\naddress = \"10.0.0.1\"\nvars.x = \"a\\u0000b\"\n", key: "hosts.a.vars.x", "NUL")
        let deepKey = (0..<3_000).map { "k\($0)" }.joined(separator: ".")
        try expectError(head + "[hosts.a]\naddress = \"10.0.0.1\"\nvars.\(deepKey) = 1\n", key: "hosts.a.vars." + (0...65).map { "k\($0)" }.joined(separator: "."), "nested more than 64 levels deep")
        let fixture = try FleetFixture(copyingExample: false)
        defer { fixture.remove() }
        try fixture.write("shared.nix", goodShared)
        try (Array((head + "a = \"").utf8) + [0xFF, 0x22, 0x0A]).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: fixture.fleetFile)) }
        XCTAssertThrowsError(try fixture.load()) { XCTAssertTrue("\($0)".contains("not valid UTF-8"), "\($0)") }
        try fixture.write("shared.nix", "let f = n: if n == 0 then { domain = \"deep.org\"; } else f (n - 1); in f 800")
        try fixture.write("fleet.toml", head)
        XCTAssertEqual(try fixture.load().sharedDomain, "deep.org")
    }

    func testMissingOrBadDomain() throws {
        try expectError(head, shared: "{ site = \"x\"; }", key: "shared", "must set `domain`")
        try expectError(head, shared: "{ domain = 42; }", key: "shared", "must be a non-empty string, not int")
        try expectError(head, shared: "[ ]", key: "shared", "must evaluate to an attribute set")
        try expectError(head, shared: "{ domain = ; }", key: "shared", "syntax error")
        try expectError(head, shared: "{ domain = builtins.getFlake \"x\"; }", key: "shared", "not supported by ferry's evaluator: builtins.getFlake")
        try expectError("shared = \"nope.nix\"\n", key: "shared", "does not exist")
        try expectError("[defaults]\n", key: "shared", "missing")
    }

    func testUnknownKeysAndWrongTypes() throws {
        try expectError(head + "sharde = 1\n", key: "sharde", "unknown key")
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\nadress = \"x\"\n", key: "hosts.a.adress", "unknown key")
        try expectError(head + "[defaults]\nusr = \"x\"\n", key: "defaults.usr", "unknown key")
        try expectError(head + "[sources.s]\npath = \".\"\nexcludes = []\n", key: "sources.s.excludes", "unknown key")
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\nport = \"22\"\n", key: "hosts.a.port", "expected an integer, found string")
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\nport = 0\n", key: "hosts.a.port", "not from 1 to 65535")
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\ntags = [\"x\", 1]\n", key: "hosts.a.tags[1]", "expected a string")
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\nvars = 3\n", key: "hosts.a.vars", "expected a table")
        try expectError(head + "[defaults]\noperation = \"deploy\"\n", key: "defaults.operation", "not one of switch, boot, test, dry-activate, build")
        try expectError(head + "[sources.s]\nexclude = []\n", key: "sources.s.path", "missing")
        try expectError(head + "shared = 1\n", key: nil, "TOML syntax error at line 2")
    }

    /// Issue 8, items 10 and 11: one address spelled two ways is one address; empty strings
    /// where a name is needed are refused.
    func testEqualSpellingsAndEmptyNames() throws {
        let pairs = [("alpha.example.org.", "alpha.example.org"), ("2001:db8:0:0:0:0:0:5", "2001:db8::5"), ("ALPHA.example.org", "alpha.example.org")]
        for (a, b) in pairs {
            try expectError(head + "[hosts.a]\naddress = \"\(a)\"\n[hosts.b]\naddress = \"\(b)\"\n", key: "hosts.b", "same address and port as hosts.a")
        }
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\ndomain = \"\"\n", key: "hosts.a.domain", "must not be empty")
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\nuser = \"\"\n", key: "hosts.a.user", "must not be empty")
        try expectError(head + "[defaults]\nuser = \"\"\n", key: "defaults.user", "must not be empty")
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\nvars.tiny = 5e-324\n", key: "hosts.a.vars.tiny", "subnormal")
    }

    /// user, domain and tags are checked, printed escaped in the error; one read names every bad
    /// value of every host and source.
    func testUsersDomainsAndTagsAreValidatedAndEveryProblemReportedAtOnce() throws {
        for bad in ["root;id", "-r", "a b", String(repeating: "u", count: 33), "\\u001b]0;T\\u0007"] {
            try expectError(head + "[hosts.a]\naddress = \"a.example\"\nuser = \"\(bad)\"\n", key: "hosts.a.user", "is not a user name")
            try expectError(head + "[defaults]\nuser = \"\(bad)\"\n", key: "defaults.user", "is not a user name")
        }
        for bad in ["a b", "a..b", "-a.example", "ex_ample.org", "1.2.3.4", "\\u001b]0;T\\u0007.org", String(repeating: "a", count: 64) + ".org"] {
            try expectError(head + "[hosts.a]\naddress = \"a.example\"\ndomain = \"\(bad)\"\n", key: "hosts.a.domain", "is not a DNS name")
        }
        for bad in ["a b", "x_y", "\\u001b]0;T\\u0007"] {
            try expectError(head + "[hosts.a]\naddress = \"a.example\"\ntags = [\"ok\", \"\(bad)\"]\n", key: "hosts.a.tags[1]", "is not a tag")
        }
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\n", shared: "{ domain = \"a b\"; }", key: "shared", "\"a b\": not a DNS name")
        for good in ["ops", "deploy.bot", "_svc", "a-b_c.d"] { XCTAssertTrue(InventoryReader.isValidUserName(good), good) }
        for good in ["example.org", "pay.example.net.", "xn--bcher-kva.example", "a1.b2"] { XCTAssertTrue(InventoryReader.isValidDomain(good), good) }

        let fixture = try FleetFixture(copyingExample: false)
        defer { fixture.remove() }
        try fixture.write("shared.nix", goodShared)
        try fixture.write("fleet.toml", head + """
            [sources."-x"]
            path = "x"
            [hosts.a]
            address = "a.example"
            user = "root;id"
            domain = "a b"
            tags = ["\\u001b[31m"]
            [hosts.b]
            address = "-b"

            """)
        XCTAssertThrowsError(try fixture.load()) { error in
            let all = (error as? InventoryError)?.all ?? []
            XCTAssertEqual(all.map(\.key), ["sources.-x", "hosts.a.user", "hosts.a.tags[0]", "hosts.a.domain", "hosts.b.address"], "\(all)")
            XCTAssertFalse("\(all)".contains("\u{1B}"), "values are escaped: \(all)")
        }
    }

    func testHostsNamesAndAddresses() throws {
        try expectError(head + "[hosts.a]\nport = 22\n", key: "hosts.a.address", "missing")
        for bad in ["bad_name", "-lead", "trail-", String(repeating: "a", count: 64), "dot.ted", "ünï"] {
            try expectError(head + "[hosts.\"\(bad)\"]\naddress = \"h.example\"\n", key: "hosts.\(bad)", "not a valid NixOS host name")
        }
        try expectError(head + "[hosts.a]\naddress = \"\"\n", key: "hosts.a.address", "must not be empty")
        for bad in ["has space", "-x.example", "tab\\there"] {
            try expectError(head + "[hosts.a]\naddress = \"\(bad)\"\n", key: "hosts.a.address", "not a DNS name, an IPv4/IPv6 address or an ssh_config Host alias")
        }
        // Aliases load; the name connected to is checked once ssh_config is applied.
        for bad in ["under_score.example", "300.1.1.1", "1.2.3", "a..b"] {
            let fixture = try FleetFixture(copyingExample: false)
            defer { fixture.remove() }
            try fixture.write("shared.nix", goodShared)
            try fixture.write("fleet.toml", head + "[hosts.a]\naddress = \"\(bad)\"\n")
            let fleet = try fixture.load()
            XCTAssertThrowsError(try fleet.connections(for: fleet.hosts, sshConfig: nil)) {
                XCTAssertEqual("\($0)", "a: '\(bad)' (from fleet.toml [hosts.a]) is not a DNS name or an IPv4/IPv6 address")
            }
        }
        try expectError(head + "[hosts.a]\naddress = \"h.example\"\n[hosts.b]\naddress = \"H.example\"\nport = 22\n",
                        key: "hosts.b", "same address and port as hosts.a")
    }

    func testValuesWithoutANixLiteral() throws {
        for (value, what) in [("1979-05-27T07:32:00Z", "date-time"), ("1979-05-27", "date"), ("07:32:00", "time"),
                              ("nan", "nan"), ("inf", "inf"), ("-inf", "inf")] {
            try expectError(head + "[hosts.a]\naddress = \"h.example\"\n[hosts.a.vars]\nx = { y = [1, \(value)] }\n",
                            key: "hosts.a.vars.x.y[1]", what)
        }
    }

    func testGoodInventoryDefaultsAndSelection() throws {
        let fixture = try FleetFixture()
        defer { fixture.remove() }
        let fleet = try fixture.load()
        XCTAssertEqual(fleet.defaults.operation, .switch)
        let gamma = fleet.hosts.first { $0.name == "gamma" }!
        XCTAssertEqual(try fleet.connection(for: gamma, sshConfig: nil).target.description, "deploy@[2001:db8::5]")
        XCTAssertEqual(try fleet.connection(for: fleet.hosts.first { $0.name == "beta" }!, sshConfig: nil).target.port, 2222)
        XCTAssertEqual(fleet.sources.map(\.name), ["lnbits-src", "nixos-config"])
        XCTAssertEqual(fleet.sources[0].destination, "/var/src/lnbits-src")
        XCTAssertEqual(fleet.sources[0].exclude, [".git", ".env", "data/", ".venv/", "node_modules/", "__pycache__/", "*.pyc"])
        XCTAssertTrue(fleet.sources[1].rendered)
        XCTAssertEqual(try fleet.select(["@eu"]).map(\.name), ["alpha", "gamma"])
        XCTAssertEqual(try fleet.select(["beta", "@web"]).map(\.name), ["alpha", "beta"], "inventory order")
        XCTAssertEqual(try fleet.select(["*a"]).map(\.name), ["alpha", "beta", "gamma"])
        XCTAssertEqual(try fleet.select(["[ab]*"], skip: ["@eu"]).map(\.name), ["beta"])
        XCTAssertEqual(try fleet.select([], skip: ["beta"]).map(\.name), ["alpha", "gamma"])
        XCTAssertThrowsError(try fleet.select(["delta"])) {
            XCTAssertTrue("\($0)".contains("no host matches 'delta' (hosts: alpha, beta, gamma; tags: @eu, @web)"), "\($0)")
        }
        XCTAssertThrowsError(try fleet.select(["@prod"])) { XCTAssertTrue("\($0)".contains("no host has the tag 'prod'"), "\($0)") }
        XCTAssertThrowsError(try fleet.select(["alpha"], skip: ["d*"])) { XCTAssertTrue("\($0)".contains("no host matches 'd*'"), "\($0)") }
    }

    func testUnexcludedEnvFileIsWarnedAbout() throws {
        let fixture = try FleetFixture(copyingExample: false)
        defer { fixture.remove() }
        try fixture.write("shared.nix", goodShared)
        try fixture.write("src/.env", "LNBITS_ADMIN_KEY=secret\n")
        func warnings() throws -> [String] {
            let d = FleetDeployment(fleet: try fixture.load(), hosts: [], options: .init(deploy: Deployment.Options { _ in throw DeployError.local("unused") }))
            try d.prepare(manifests: false)
            return d.warnings
        }
        try fixture.write("fleet.toml", head + "[sources.lnbits-src]\npath = \"src\"\n")
        XCTAssertTrue(try warnings().first?.contains(".env would be pushed") ?? false)
        try fixture.write("fleet.toml", head + "[sources.lnbits-src]\npath = \"src\"\nexclude = [\".env\"]\n")
        XCTAssertEqual(try warnings(), [])
    }

    /// Issue 9: identity (a path or a list), known_hosts, host_key_policy and operation in
    /// [defaults] and per host (the host's value wins); relative paths from fleet.toml's folder.
    func testConnectionKeysDefaultsAndHostValues() throws {
        let fixture = try FleetFixture(copyingExample: false)
        defer { fixture.remove() }
        try fixture.write("shared.nix", goodShared)
        try fixture.write("fleet.toml", head + """
            [defaults]
            identity = "keys/deploy"
            known_hosts = "known_hosts"
            host_key_policy = "accept-new"
            operation = "boot"
            [hosts.a]
            address = "a.example"
            [hosts.b]
            address = "b.example"
            identity = ["/k/one", "~/k/two"]
            known_hosts = "/etc/ferry/known_hosts"
            host_key_policy = "strict"
            operation = "dry-activate"

            """)
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        let fleet = try fixture.load()
        let a = try fleet.connection(for: fleet.hosts[0], sshConfig: nil), b = try fleet.connection(for: fleet.hosts[1], sshConfig: nil)
        let dir = URL(fileURLWithPath: fixture.directory).standardizedFileURL.path
        XCTAssertEqual(a.identityFiles.value, [dir + "/keys/deploy"])
        XCTAssertEqual(a.identityFiles.source, "fleet.toml [defaults]")
        XCTAssertEqual(a.knownHosts.value, dir + "/known_hosts")
        XCTAssertEqual(a.hostKeyPolicy.value, .acceptNew)
        XCTAssertEqual(fleet.hosts[0].operation, .boot)
        XCTAssertEqual(b.identityFiles.value, ["/k/one", home + "/k/two"])
        XCTAssertEqual(b.identityFiles.source, "fleet.toml [hosts.b]")
        XCTAssertEqual(b.knownHosts.value, "/etc/ferry/known_hosts")
        XCTAssertEqual(b.hostKeyPolicy.value, .strict)
        XCTAssertEqual(fleet.hosts[1].operation, .dryActivate)

        let host = head + "[hosts.a]\naddress = \"a.example\"\n"
        try expectError(host + "identity = 3\n", key: "hosts.a.identity", "expected a path or a list of paths")
        try expectError(host + "identity = [\"\"]\n", key: "hosts.a.identity[0]", "must not be empty")
        try expectError(host + "host_key_policy = \"yes\"\n", key: "hosts.a.host_key_policy", "not one of strict, accept-new")
        try expectError(host + "operation = \"rollback\"\n", key: "hosts.a.operation", "not one of switch, boot")
        try expectError(host + "knownhosts = \"x\"\n", key: "hosts.a.knownhosts", "unknown key")
    }

    /// `[[defaults.checks]]` come before each host's own; every bad value is named by its key.
    func testHealthChecks() throws {
        let fixture = try FleetFixture(copyingExample: false)
        defer { fixture.remove() }
        try fixture.write("shared.nix", goodShared)
        try fixture.write("fleet.toml", head + """
            [defaults]
            revert_on_check_failure = true
            [[defaults.checks]]
            command = ["systemctl", "is-active", "lnbits"]
            [hosts.a]
            address = "a.example"
            [[hosts.a.checks]]
            http = "http://lnbits.internal:5000/api/v1/health?full=1"
            status = [200, 204]
            timeout = 1
            period = 3
            deadline = 0
            [hosts.b]
            address = "b.example"
            revert_on_check_failure = false
            [[hosts.b.checks]]
            http = "http://[::1]"

            """)
        let fleet = try fixture.load()
        let a = fleet.hosts[0], b = fleet.hosts[1]
        XCTAssertEqual(a.checks.map(\.name), ["systemctl is-active lnbits", "http://lnbits.internal:5000/api/v1/health?full=1"])
        XCTAssertTrue(a.revertOnCheckFailure)
        XCTAssertFalse(b.revertOnCheckFailure)
        XCTAssertEqual(a.checks[0].timeout, 5)
        XCTAssertEqual(a.checks[0].period, 2)
        XCTAssertEqual(a.checks[0].deadline, 60)
        XCTAssertEqual(a.checks[1].probe, .http(.init(url: "http://lnbits.internal:5000/api/v1/health?full=1", host: "lnbits.internal", port: 5000,
                                                      path: "/api/v1/health?full=1", authority: "lnbits.internal:5000")))
        XCTAssertEqual([a.checks[1].timeout, a.checks[1].period, a.checks[1].deadline], [1, 3, 0])
        XCTAssertTrue(a.checks[1].passes(status: 204))
        XCTAssertFalse(a.checks[1].passes(status: 302))
        XCTAssertTrue(a.checks[0].passes(status: 302), "no status: any 2xx or 3xx")
        XCTAssertFalse(a.checks[0].passes(status: 404))
        XCTAssertEqual(b.checks.last?.probe, .http(.init(url: "http://[::1]", host: "::1", port: 80, path: "/", authority: "[::1]")))

        let host = head + "[hosts.a]\naddress = \"a.example\"\n[[hosts.a.checks]]\n"
        try expectError(host + "http = \"https://x.example/\"\n", key: "hosts.a.checks[0].http", "https is not supported")
        try expectError(host + "http = \"ftp://x.example/\"\n", key: "hosts.a.checks[0].http", "not an http:// URL")
        try expectError(host + "http = \"http://x.example:0/\"\n", key: "hosts.a.checks[0].http", "the port is not from 1 to 65535")
        try expectError(host + "http = \"http://u:p@x.example/\"\n", key: "hosts.a.checks[0].http", "a user name or password")
        try expectError(host + "http = \"http://x.example/a b\"\n", key: "hosts.a.checks[0].http", "white space")
        try expectError(host + "http = \"http://x_y/\"\n", key: "hosts.a.checks[0].http", "not a host name or IP address")
        try expectError(host + "command = []\n", key: "hosts.a.checks[0].command", "empty")
        try expectError(host + "command = [\"true\"]\nstatus = [200]\n", key: "hosts.a.checks[0].status", "only an http check")
        try expectError(host + "command = [\"true\"]\nhttp = \"http://x/\"\n", key: "hosts.a.checks[0]", "either command or http")
        try expectError(host + "timeout = 5\n", key: "hosts.a.checks[0]", "needs command")
        try expectError(host + "http = \"http://x/\"\nstatus = [99]\n", key: "hosts.a.checks[0].status[0]", "not an HTTP status code")
        try expectError(host + "command = [\"true\"]\ntimeout = 0\n", key: "hosts.a.checks[0].timeout", "seconds from 1 to 3600")
        try expectError(host + "command = [\"true\"]\nretries = 3\n", key: "hosts.a.checks[0].retries", "unknown key")
        try expectError(head + "[hosts.a]\naddress = \"a.example\"\nchecks = 3\n", key: "hosts.a.checks", "expected an array of tables")
    }

    /// `[secrets.NAME]` go to the hosts they name; a host's own wins; every bad value is named.
    func testSecrets() throws {
        let fixture = try FleetFixture(copyingExample: false)
        defer { fixture.remove() }
        try fixture.write("shared.nix", goodShared)
        try fixture.write("fleet.toml", head + """
            [secrets.lnbits-env]
            command = ["pass", "show", "lnbits/prod.env"]
            dest = "/var/lib/lnbits/.env"
            owner = "lnbits"
            mode = "0440"
            restart = ["lnbits.service"]
            hosts = ["@web"]
            [secrets.backup-key]
            file = "keys/backup"
            dest = "/var/lib/backup/key"
            upload = "after"
            [hosts.a]
            address = "a.example"
            tags = ["web"]
            [hosts.b]
            address = "b.example"
            tags = ["web"]
            [hosts.b.secrets.lnbits-env]
            file = "/home/op/b.env"
            dest = "/var/lib/lnbits/.env"
            [hosts.c]
            address = "c.example"

            """)
        let fleet = try fixture.load()
        let (a, b, c) = (fleet.hosts[0], fleet.hosts[1], fleet.hosts[2])
        XCTAssertEqual(a.secrets.map(\.name), ["backup-key", "lnbits-env"])
        XCTAssertEqual(a.secrets[1].source, .command(["pass", "show", "lnbits/prod.env"]))
        XCTAssertEqual([a.secrets[1].owner, a.secrets[1].modeText], ["lnbits", "0440"])
        XCTAssertNil(a.secrets[1].group)
        XCTAssertEqual(a.secrets[1].restart, ["lnbits.service"])
        XCTAssertEqual(a.secrets[0].source, .file(URL(fileURLWithPath: fixture.directory).standardizedFileURL.path + "/keys/backup"))
        XCTAssertEqual([a.secrets[0].owner, a.secrets[0].modeText], ["root", "0400"])
        XCTAssertEqual(a.secrets[0].upload, .after)
        XCTAssertEqual(b.secrets.first { $0.name == "lnbits-env" }?.source, .file("/home/op/b.env"), "the host's own wins")
        XCTAssertEqual(c.secrets.map(\.name), ["backup-key"], "not @web")

        let host = head + "[hosts.a]\naddress = \"a.example\"\n"
        let s = host + "[secrets.x]\n"
        try expectError(s + "dest = \"/x\"\n", key: "secrets.x", "needs command")
        try expectError(s + "command = [\"true\"]\nfile = \"f\"\ndest = \"/x\"\n", key: "secrets.x", "either command or file")
        try expectError(s + "file = \"f\"\n", key: "secrets.x.dest", "missing")
        try expectError(s + "file = \"f\"\ndest = \"x/y\"\n", key: "secrets.x.dest", "must be an absolute path")
        try expectError(s + "file = \"f\"\ndest = \"/var/lib/../src/x\"\n", key: "secrets.x.dest", "'.' or '..'")
        try expectError(s + "file = \"f\"\ndest = \"/var/src/lnbits-src/.env\"\n", key: "secrets.x.dest", "inside /var/src")
        try expectError(s + "file = \"f\"\ndest = \"/nix/store/x\"\n", key: "secrets.x.dest", "inside /nix/store")
        try expectError(s + "file = \"f\"\ndest = \"/x\"\nmode = \"0444\"\n", key: "secrets.x.mode", "lets every user")
        try expectError(s + "file = \"f\"\ndest = \"/x\"\nmode = \"0o400\"\n", key: "secrets.x.mode", "not an octal file mode")
        try expectError(s + "file = \"f\"\ndest = \"/x\"\nmode = \"4700\"\n", key: "secrets.x.mode", "not an octal file mode")
        try expectError(s + "file = \"f\"\ndest = \"/x\"\nowner = \"-x\"\n", key: "secrets.x.owner", "not a user name")
        try expectError(s + "file = \"f\"\ndest = \"/x\"\nupload = \"later\"\n", key: "secrets.x.upload", "not one of auto, before, after")
        try expectError(s + "file = \"f\"\ndest = \"/x\"\nhosts = [\"nope\"]\n", key: "secrets.x.hosts", "no host matches 'nope'")
        try expectError(s + "file = \"f\"\ndest = \"/x\"\nsecret = 1\n", key: "secrets.x.secret", "unknown key")
        try expectError(s + "file = \"f\"\ndest = \"/x\"\n[secrets.y]\nfile = \"g\"\ndest = \"/x\"\n", key: "secrets.y.dest", "also secrets.x's destination")
        try expectError(host + "[secrets.\".x\"]\nfile = \"f\"\ndest = \"/x\"\n", key: "secrets..x", "not a secret name")
        try expectError(host + "[hosts.a.secrets.x]\nfile = \"f\"\ndest = \"/x\"\nhosts = [\"a\"]\n", key: "hosts.a.secrets.x.hosts", "for that host alone")
    }

    /// Issue 9: exactly one rendered source, always the fleet's folder; reserved names; require.
    func testSourceRules() throws {
        try expectError(head + "[sources.a]\nrendered = true\n[sources.b]\nrendered = true\n", key: "sources.b.rendered", "sources.a is the rendered source already")
        try expectError(head + "[sources.a]\nrendered = true\npath = \"x\"\n", key: "sources.a.path", "always the fleet's folder")
        for name in ["deploys", "lock", "last-deploy.json", "lock-info", "lock-pid", "heartbeat", "heartbeat.0", "lock-info.tmp",
                     "last-rebuild.record", "last-sync.record", "snapshots", "staged", "secrets"] {
            try expectError(head + "[sources.\"\(name)\"]\npath = \"x\"\n", key: "sources.\(name)", "is reserved")
        }
        for name in ["-rf", "--", ".hidden"] {
            try expectError(head + "[sources.\"\(name)\"]\npath = \"x\"\n", key: "sources.\(name)", "not starting with '.' or '-'")
        }
        try expectError(head + "[sources.s]\npath = \"x\"\nrequire = [\"../etc\"]\n", key: "sources.s.require[0]", "inside the source")
        try expectError(head + "[sources.s]\npath = \"x\"\nexclude = [\"[[:nope:]]\"]\n", key: "sources.s.exclude", "nope")
        try expectError("shared = \"../shared.nix\"\n", key: "shared", "outside the fleet's folder")

        let fixture = try FleetFixture()
        defer { fixture.remove() }
        let fleet = try fixture.load()
        XCTAssertEqual(fleet.sources[0].require, ["flake.nix", "flake.lock", "pyproject.toml", "uv.lock", "lnbits/"], "lnbits-src's default")
        XCTAssertEqual(fleet.sources[1].require, [])
        XCTAssertEqual(fleet.sources[1].exclude, [".git", ".env", ".ferry/", "*~", "*.swp", ".#*", "result"])
    }
}
