import FerryXCTestSupport
import Foundation
import Synchronization
import XCTest

/// Issue 7.4: known_hosts files read and matched as OpenSSH reads them. For each file, ferry
/// connects exactly when `ssh -o BatchMode=yes` does, under both policies.
final class KnownHostsDifferentialTests: HostTestCase {
    func sshAccepts(_ knownHosts: String, policy: String) throws -> Bool {
        let h = try host
        let r = try Command.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=\(policy)",
                                 "-o", "UserKnownHostsFile=\(knownHosts)", "-o", "GlobalKnownHostsFile=/dev/null",
                                 "-o", "IdentitiesOnly=yes", "-i", try harness.clientKey(.ed25519), "-p", "\(h.port)", "root@127.0.0.1", "true"])
        return r.status == 0
    }

    func ferryAccepts(_ knownHosts: String, policy: HostKeyPolicy) throws -> (Bool, SSHError?) {
        do {
            let session = try connect { $0.knownHostsFile = knownHosts; $0.hostKeyPolicy = policy }
            session.close()
            return (true, nil)
        } catch let error as SSHError {
            return (false, error)
        }
    }

    func testAgreesWithOpenSSH() throws {
        let h = try host
        let name = "[127.0.0.1]:\(h.port)"
        let ed = try h.hostPublicKey("ed25519"), ec = try h.hostPublicKey("ecdsa")
        let imp = try impostorHostKey()
        let hashed: String = try {
            let f = temporaryFile("\(name) \(ed)\n")
            try Command.check(["ssh-keygen", "-H", "-f", f])
            return try String(contentsOfFile: f, encoding: .utf8)
        }()
        let cases: [(String, String)] = [
            ("a bad line above the entry", "this is not a known_hosts line\n\(name) \(ed)\n"),
            ("bad base64 above", "\(name) ssh-ed25519 !!!notbase64\n\(name) \(ed)\n"),
            ("changed key", "\(name) \(imp)\n"),
            ("port-22 entry with another key", "127.0.0.1 \(imp)\n"),
            ("port-22 entry with the right key", "127.0.0.1 \(ed)\n"),
            ("revoked, then listed", "@revoked \(name) \(ed)\n\(name) \(ed)\n"),
            ("revoked for every host", "@revoked * \(ed)\n\(name) \(ed)\n"),
            ("revoked below a bad line", "garbage\n@revoked * \(ed)\n\(name) \(ed)\n"),
            ("hashed", hashed),
            ("wildcard port", "[127.0.0.1]:* \(ed)\n"),
            ("negated", "!\(name),[127.0.0.1]:* \(ed)\n"),
            ("question mark", "[127.0.0.?]:\(h.port) \(ed)\n"),
            ("host list", "example.org,\(name) \(ed)\n"),
            ("upper-case pattern", "[127.0.0.1]:\(h.port),EXAMPLE.ORG \(ed)\n"),
            ("only the ecdsa key", "\(name) \(ec)\n"),
            ("impostor then the right key", "\(name) \(imp)\n\(name) \(ed)\n"),
            ("cert-authority only", "@cert-authority \(name) \(ed)\n"),
            ("unknown marker", "@bogus \(name) \(ed)\n"),
            ("comment and blank lines", "# note\n\n   \n\(name) \(ed) trailing comment\n"),
            ("other host only", "example.org \(ed)\n"),
        ]
        var disagreements: [String] = []
        for (label, contents) in cases {
            for (sshPolicy, policy) in [("yes", HostKeyPolicy.strict), ("accept-new", .acceptNew)] {
                let forSSH = temporaryFile(contents), forFerry = temporaryFile(contents)
                let ssh = try sshAccepts(forSSH, policy: sshPolicy)
                let (ferry, error) = try ferryAccepts(forFerry, policy: policy)
                if ssh != ferry {
                    disagreements.append("\(label) [\(sshPolicy)]: ssh \(ssh ? "connects" : "refuses"), ferry \(ferry ? "connects" : "refuses: \(error!)")")
                }
                if policy == .acceptNew && ferry {
                    // What accept-new recorded satisfies both ssh and ferry under strict.
                    XCTAssertTrue(try sshAccepts(forFerry, policy: "yes"), "\(label): ssh reads ferry's new entry")
                    XCTAssertTrue(try ferryAccepts(forFerry, policy: .strict).0, label)
                }
            }
        }
        XCTAssertEqual(disagreements, [], "\n" + disagreements.joined(separator: "\n"))
    }

    func testRevokedAndChangedSayWhatToDo() throws {
        let h = try host
        let name = "[127.0.0.1]:\(h.port)"
        let revoked = temporaryFile("@revoked \(name) \(try h.hostPublicKey("ed25519"))\n")
        let (_, error) = try ferryAccepts(revoked, policy: .acceptNew)
        guard case .hostKeyRevoked? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue("\(error!)".contains("@revoked"), "\(error!)")
    }

    func testSkippedLinesAreNoticed() throws {
        let h = try host
        let file = temporaryFile("garbage\n[127.0.0.1]:\(h.port) \(try h.hostPublicKey("ed25519"))\n")
        let notices = NoticeLog()
        let session = try connect { $0.knownHostsFile = file; $0.onNotice = { notices.add($0) } }
        session.close()
        XCTAssertEqual(notices.all.count, 1)
        XCTAssertTrue(notices.all.first?.contains("\(file):1:") ?? false, "\(notices.all)")
    }

    func testADirectoryIsNamedAsSuch() throws {
        let dir = NSTemporaryDirectory() + "ferry-kh-dir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (_, error) = try ferryAccepts(dir, policy: .strict)
        XCTAssertEqual(error, .knownHostsFile(path: dir, reason: "is a directory, not a known_hosts file"))
    }

    func testHashedFilesGetHashedEntries() throws {
        let file = temporaryFile("example.org \(try host.hostPublicKey("ecdsa"))\n")
        try Command.check(["ssh-keygen", "-H", "-f", file])
        XCTAssertTrue(try ferryAccepts(file, policy: .acceptNew).0)
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("|1|") }, "\(lines)")
        XCTAssertEqual(try Command.run(["ssh-keygen", "-F", "[127.0.0.1]:\(try host.port)", "-f", file]).status, 0)
    }

    func testTheGlobalFileIsRead() throws {
        let global = temporaryFile("[127.0.0.1]:\(try host.port) \(try host.hostPublicKey("ed25519"))\n")
        let user = temporaryFile("")
        let session = try connect { $0.knownHostsFile = user; $0.globalKnownHostsFiles = [global] }
        session.close()
        XCTAssertEqual(try String(contentsOfFile: user, encoding: .utf8), "", "a key known globally is not recorded again")
    }

    /// Parallel runners under accept-new record the host once.
    func testConcurrentAcceptNewAppendsOneLine() throws {
        let file = temporaryFile("")
        let configuration = try harness.configuration(for: try host)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            var c = configuration
            c.knownHostsFile = file
            c.hostKeyPolicy = .acceptNew
            _ = try? SSHSession(connecting: c)
        }
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "\(lines)")
    }
}

final class NoticeLog: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}
