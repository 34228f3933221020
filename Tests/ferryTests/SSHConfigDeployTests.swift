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
}
