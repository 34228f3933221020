import FerryXCTestSupport
import Foundation
import XCTest

extension DeployCommandTests {
    /// An inventory address that is an ssh_config alias: HostName, Port, User, IdentityFile and
    /// UserKnownHostsFile come from ssh_config; `ferry config` names where each came from.
    func testSSHConfigAliasSuppliesTheConnection() throws {
        let work = try makeWork()
        let h = try host
        let toml = """
        shared = "shared.nix"
        [sources.lnbits-src]
        path = "../lnbits"
        exclude = [\(Self.excludes.map { "\"\($0)\"" }.joined(separator: ", "))]
        [sources.nixos-config]
        rendered = true
        [hosts.alpha]
        address = "lnbits_prod"
        [hosts.alpha.vars]
        lnbitsPort = 5000

        """
        try toml.write(toFile: work.fleetFile, atomically: true, encoding: .utf8)
        let config = work.root + "/ssh_config"
        try """
        Host lnbits_prod
          HostName 127.0.0.1
          Port \(h.port)
          User deploy
          IdentityFile \(try harness.clientKey(.ed25519))
          UserKnownHostsFile \(try harness.knownHostsFile)
        Host *
          User never-used
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let shown = try FerryBinary.run(["config", "-f", work.fleetFile, "alpha", "-F", config])
        XCTAssertEqual(shown.status, 0, shown.stderr)
        for line in ["hostname 127.0.0.1", "# \(config):2", "user deploy", "# \(config):4", "port \(h.port)"] {
            XCTAssertTrue(shown.stdout.contains(line), "\(line): \(shown.stdout)")
        }
        let deployed = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "-F", config])
        XCTAssertEqual(deployed.status, 0, deployed.stdout + deployed.stderr)
        XCTAssertTrue(deployed.stdout.contains("connect: deploy@127.0.0.1:\(h.port)"), deployed.stdout)
        XCTAssertEqual(try oracle(work.lnbits, "lnbits-src", excludes: Self.excludes), "")
        // Without ssh_config the alias is no name to connect to: exit 2, nothing contacted.
        let none = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "-F", "none"])
        XCTAssertEqual(none.status, 2, none.stdout + none.stderr)
        XCTAssertTrue(none.stderr.contains("alpha: 'lnbits_prod' (from fleet.toml [hosts.alpha]) is not a DNS name or an IPv4/IPv6 address"), none.stderr)
        // A malformed ssh_config names its file and line.
        try "Host x\n  Port many\n".write(toFile: config, atomically: true, encoding: .utf8)
        let bad = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "-F", config])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("alpha: ssh_config: \(config) line 2: bad port 'many'"), bad.stderr)
    }

    /// Without -F, /etc/ssh/ssh_config is read after the user's file, as ssh reads it (here a
    /// folder mounted over /etc/ssh in a mount namespace of ferry's own); with -F it is not.
    func testTheSystemSSHConfigIsReadAfterTheUsersWithoutF() throws {
        let work = try makeWork()
        let h = try host
        try """
        shared = "shared.nix"
        [sources.nixos-config]
        rendered = true
        [hosts.alpha]
        address = "lnbits_prod"

        """.write(toFile: work.fleetFile, atomically: true, encoding: .utf8)
        let home = work.root + "/home", etc = work.root + "/etc-ssh"
        for dir in [home + "/.ssh", etc + "/ssh_config.d"] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try "Host lnbits_prod\n  User from-user\n".write(toFile: home + "/.ssh/config", atomically: true, encoding: .utf8)
        try "Include ssh_config.d/*.conf\nHost *\n  User from-system\n".write(toFile: etc + "/ssh_config", atomically: true, encoding: .utf8)
        try "Host lnbits_prod\n  HostName 127.0.0.1\n  Port \(h.port)\n".write(toFile: etc + "/ssh_config.d/10-lnbits.conf", atomically: true, encoding: .utf8)
        func config(_ extra: [String]) throws -> FerryBinary.Result {
            let script = "mount --bind \"$1\" /etc/ssh && shift && exec \"$@\""
            return try FerryBinary.run(executable: try Command.which("unshare"),
                                       ["--mount", "--propagation", "private", "sh", "-c", script, "sh", etc, FerryBinary.path(),
                                        "config", "-f", work.fleetFile, "alpha"] + extra, environment: ["HOME": home])
        }
        let shown = try config([])
        XCTAssertEqual(shown.status, 0, shown.stderr)
        for line in ["hostname 127.0.0.1", "# /etc/ssh/ssh_config.d/10-lnbits.conf:2", "port \(h.port)", "# /etc/ssh/ssh_config.d/10-lnbits.conf:3",
                     "user from-user", "# \(home)/.ssh/config:2"] {
            XCTAssertTrue(shown.stdout.contains(line), "\(line): \(shown.stdout)")
        }
        let onlyF = try config(["-F", home + "/.ssh/config"])
        XCTAssertEqual(onlyF.status, 2, onlyF.stdout + onlyF.stderr)
        XCTAssertTrue(onlyF.stderr.contains("'lnbits_prod' (from fleet.toml [hosts.alpha]) is not a DNS name"), onlyF.stderr)
    }
}
