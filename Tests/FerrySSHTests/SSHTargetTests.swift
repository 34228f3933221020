import FerryXCTestSupport
import XCTest

final class SSHTargetTests: XCTestCase {
    func testAcceptedForms() throws {
        let cases: [(String, String, String, Int)] = [
            ("host", "root", "host", 22),
            ("deploy@host", "deploy", "host", 22),
            ("host:2222", "root", "host", 2222),
            ("deploy@10.0.0.1:2222", "deploy", "10.0.0.1", 2222),
            ("[::1]:2222", "root", "::1", 2222),
            ("u@[fe80::1]:22", "u", "fe80::1", 22),
            ("[::1]", "root", "::1", 22),
            ("::1", "root", "::1", 22),
            ("ssh://host", "root", "host", 22),
            ("ssh://deploy@host:2200", "deploy", "host", 2200),
            ("ssh://deploy@[2001:db8::2]:2200/", "deploy", "2001:db8::2", 2200),
        ]
        for (text, user, host, port) in cases {
            let t = try SSHTarget(parsing: text)
            XCTAssertEqual([t.user, t.host, String(t.port)], [user, host, String(port)], text)
        }
    }

    func testRejectedFormsSayWhy() {
        let cases: [(String, String)] = [
            ("", "no host name"), ("@host", "user before '@' is empty"), ("host:0", "port '0'"),
            ("host:70000", "port '70000'"), ("host:ssh", "port 'ssh'"), ("[::1:22", "'[' without ']'"),
            ("[::1]x", "expected [user@]host"), ("ho st", "not a host name"), ("user@", "no host name"),
        ]
        for (text, fragment) in cases {
            XCTAssertThrowsError(try SSHTarget(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(text): \(error)")
                XCTAssertTrue("\(error)".contains("'\(text)'"), "names the input: \(error)")
            }
        }
    }

    func testKnownHostsNameFollowsOpenSSH() throws {
        XCTAssertEqual(try SSHTarget(parsing: "h").knownHostsName, "h")
        XCTAssertEqual(try SSHTarget(parsing: "h:2222").knownHostsName, "[h]:2222")
        XCTAssertEqual(try SSHTarget(parsing: "[::1]:2222").knownHostsName, "[::1]:2222")
    }
}
