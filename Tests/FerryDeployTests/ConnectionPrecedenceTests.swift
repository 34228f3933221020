import FerryDeploy
import FerrySSH
import Foundation
import XCTest

/// Where each connection setting comes from: flags, the host's table, ssh_config, [defaults],
/// ferry's defaults — in that order; aliases resolved before names are checked.
final class ConnectionPrecedenceTests: XCTestCase {
    func fleet(_ toml: String, sshConfig: String) throws -> (Fleet, SSHClientConfig, FleetFixture) {
        let fixture = try FleetFixture(copyingExample: false)
        try fixture.write("shared.nix", "{ domain = \"example.org\"; }")
        try fixture.write("fleet.toml", "shared = \"shared.nix\"\n" + toml)
        try fixture.write("ssh_config", sshConfig)
        let config = SSHClientConfig(file: fixture.directory + "/ssh_config", home: "/home/op", localUser: "op")
        return (try fixture.load(), config, fixture)
    }

    func testPrecedenceFlagsTableSSHConfigDefaultsFerry() throws {
        let (fleet, config, fixture) = try fleet("""
            [defaults]
            user = "from-defaults"
            port = 2001
            identity = "/k/defaults"
            host_key_policy = "accept-new"
            [hosts.a]
            address = "a.example.org"
            [hosts.b]
            address = "b.example.org"
            user = "from-table"
            identity = "/k/table"
            [hosts.c]
            address = "c.example.org"

            """, sshConfig: """
            Host a.example.org b.example.org
              User from-ssh-config
              Port 2002
              IdentityFile ~/.ssh/id_%h
              StrictHostKeyChecking yes
              ProxyJump jump@bastion:2222
              ConnectTimeout 7
              ServerAliveInterval 20
            """)
        defer { fixture.remove() }
        let file = fixture.directory + "/ssh_config"
        let a = try fleet.connection(for: fleet.hosts[0], sshConfig: config)
        XCTAssertEqual(a.user.value, "from-ssh-config", "a [defaults] user never overrides an ssh_config User")
        XCTAssertEqual(a.user.source, file + ":2")
        XCTAssertEqual(a.port.value, 2002)
        XCTAssertEqual(a.identityFiles.value, ["/home/op/.ssh/id_a.example.org"])
        XCTAssertEqual(a.hostKeyPolicy.value, .strict)
        XCTAssertEqual(a.jump.value, try ProxyJump("jump@bastion:2222"))
        XCTAssertEqual(a.connectTimeout.value, 7)
        XCTAssertEqual(a.keepaliveInterval.value, 20)
        let b = try fleet.connection(for: fleet.hosts[1], sshConfig: config)
        XCTAssertEqual(b.user.value, "from-table")
        XCTAssertEqual(b.identityFiles.value, ["/k/table"])
        let c = try fleet.connection(for: fleet.hosts[2], sshConfig: config)
        XCTAssertEqual([c.user.value, String(c.port.value)], ["from-defaults", "2001"])
        XCTAssertEqual(c.identityFiles.source, "fleet.toml [defaults]")
        XCTAssertEqual(c.hostKeyPolicy.value, .acceptNew)
        XCTAssertNil(c.jump.value)
        let flagged = try fleet.connection(for: fleet.hosts[1], flags: ConnectionFlags(identity: ["/k/flag"], hostKeyPolicy: .acceptNew, connectTimeout: 3, jump: "none"), sshConfig: config)
        XCTAssertEqual(flagged.identityFiles.value, ["/k/flag"])
        XCTAssertEqual(flagged.identityFiles.source, "flag")
        XCTAssertEqual(flagged.hostKeyPolicy.value, .acceptNew)
        XCTAssertEqual(flagged.connectTimeout.value, 3)
        XCTAssertNil(flagged.jump.value)
        // Without ssh_config: ferry's defaults.
        let bare = try Fleet.connection(forTarget: "x.example.org", flags: ConnectionFlags(), sshConfig: nil)
        XCTAssertEqual([bare.user.value, String(bare.port.value), bare.hostKeyPolicy.value.rawValue], ["root", "22", "strict"])
        XCTAssertEqual(bare.user.source, "default")
    }

    func testAliasesResolveBeforeNamesAndDuplicatesAreChecked() throws {
        let (fleet, config, fixture) = try fleet("""
            [hosts.prod]
            address = "lnbits_prod"
            [hosts.same]
            address = "other_alias"
            [hosts.broken]
            address = "no_such_alias"

            """, sshConfig: """
            Host lnbits_prod other_alias
              HostName LNbits.Example.org
              StrictHostKeyChecking no
            """)
        defer { fixture.remove() }
        let prod = try fleet.connection(for: fleet.hosts[0], sshConfig: config)
        XCTAssertEqual(prod.hostName.value, "lnbits.example.org", "lowercased, as OpenSSH does")
        XCTAssertEqual(prod.warnings, [fixture.directory + "/ssh_config:3: StrictHostKeyChecking no acts as accept-new in ferry: a changed host key is always refused"])
        XCTAssertEqual(prod.hostKeyPolicy.value, .acceptNew)
        XCTAssertThrowsError(try fleet.connections(for: Array(fleet.hosts.prefix(2)), sshConfig: config)) {
            XCTAssertEqual("\($0)", "same: connects to the same address and port as prod (lnbits.example.org port 22)")
        }
        XCTAssertThrowsError(try fleet.connection(for: fleet.hosts[2], sshConfig: config)) {
            XCTAssertEqual("\($0)", "broken: 'no_such_alias' (from fleet.toml [hosts.broken]) is not a DNS name or an IPv4/IPv6 address")
        }
    }
}
