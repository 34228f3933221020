import FerryXCTestSupport
import Foundation
import XCTest

final class HostKeyTests: HostTestCase {
    /// The fingerprint OpenSSH prints for one of the host's keys.
    func openSSHFingerprint(_ type: String) throws -> String {
        let out = try Command.check(["ssh-keygen", "-lf", "\(try host.directory)/etc/ssh_host_\(type)_key.pub"]).output
        return String(out.split(separator: " ")[1])
    }

    func testUnknownHostIsRefusedUnderStrictWithFingerprint() throws {
        let knownHosts = temporaryFile()
        let error = expectSSHError { _ = try self.connect { $0.knownHostsFile = knownHosts } }
        let name = "[127.0.0.1]:\(try host.port)"
        XCTAssertEqual(error, .hostKeyUnknown(host: name, keyType: "ED25519", fingerprint: try openSSHFingerprint("ed25519"), knownHosts: knownHosts))
        let text = "\(error!)"
        XCTAssertTrue(text.contains("--host-key-policy accept-new"), text)
        XCTAssertEqual(try String(contentsOfFile: knownHosts, encoding: .utf8), "", "strict never writes")
    }

    func testAcceptNewRecordsOneLineAndLeavesTheRestAlone() throws {
        let before = "# operator's notes\nexample.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        let knownHosts = temporaryFile(before)  // no trailing newline on purpose
        let session = try connect { $0.knownHostsFile = knownHosts; $0.hostKeyPolicy = .acceptNew }
        session.close()
        let after = try String(contentsOfFile: knownHosts, encoding: .utf8)
        XCTAssertTrue(after.hasPrefix(before + "\n"), after)
        let added = after.dropFirst(before.count + 1)
        XCTAssertEqual(added.filter { $0 == "\n" }.count, 1)
        XCTAssertTrue(added.hasPrefix("[127.0.0.1]:\(try host.port) ssh-ed25519 "), String(added))
        // OpenSSH agrees the entry is for this host, and strict now connects.
        XCTAssertEqual(try Command.run(["ssh-keygen", "-F", "[127.0.0.1]:\(try host.port)", "-f", knownHosts]).status, 0)
        let again = try connect { $0.knownHostsFile = knownHosts }
        XCTAssertEqual(try run(again, ["true"]).status, .exited(0))
        XCTAssertEqual(try String(contentsOfFile: knownHosts, encoding: .utf8), after)
    }

    func testAcceptNewCreatesAMissingFile() throws {
        let dir = NSTemporaryDirectory() + "ferry-kh-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let knownHosts = dir + "/.ssh/known_hosts"
        _ = try connect { $0.knownHostsFile = knownHosts; $0.hostKeyPolicy = .acceptNew }
        XCTAssertTrue(try String(contentsOfFile: knownHosts, encoding: .utf8).hasPrefix("[127.0.0.1]:"))
    }

    func testChangedKeyIsRefusedUnderBothPolicies() throws {
        let impostor = try impostorHostKey()
        let contents = "[127.0.0.1]:\(try host.port) \(impostor)\n"
        let knownHosts = temporaryFile(contents)
        for policy in HostKeyPolicy.allCases {
            let error = expectSSHError { _ = try self.connect { $0.knownHostsFile = knownHosts; $0.hostKeyPolicy = policy } }
            XCTAssertEqual(error, .hostKeyChanged(host: "[127.0.0.1]:\(try host.port)", keyType: "ED25519",
                                                  fingerprint: try openSSHFingerprint("ed25519"), knownHosts: knownHosts), "\(policy)")
            XCTAssertTrue("\(error!)".contains("REMOTE HOST IDENTIFICATION HAS CHANGED"))
            XCTAssertTrue("\(error!)".contains("ssh-keygen -R"))
        }
        XCTAssertEqual(try String(contentsOfFile: knownHosts, encoding: .utf8), contents)
    }

    /// A host recorded only by its ECDSA key must still verify, though ed25519 comes first by default.
    func testRecordedKeyTypeIsPreferred() throws {
        for type in ["ecdsa", "ed25519"] {
            let knownHosts = temporaryFile()
            try harness.addKnownHost(try host, keyType: type, to: knownHosts)
            let session = try connect { $0.knownHostsFile = knownHosts }
            XCTAssertEqual(session.hostKeyFingerprint(), try openSSHFingerprint(type), type)
        }
    }

    func testHashedEntriesMatch() throws {
        let knownHosts = temporaryFile()
        try harness.addKnownHost(try host, keyType: "ecdsa", to: knownHosts)
        try Command.check(["ssh-keygen", "-H", "-f", knownHosts])
        XCTAssertTrue(try String(contentsOfFile: knownHosts, encoding: .utf8).hasPrefix("|1|"))
        let session = try connect { $0.knownHostsFile = knownHosts }
        XCTAssertEqual(session.hostKeyFingerprint(), try openSSHFingerprint("ecdsa"))
    }
}
