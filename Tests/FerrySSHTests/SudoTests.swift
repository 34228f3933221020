import FerryXCTestSupport
import Foundation
import XCTest

/// `Sudo` against real sudo on a test host: the probe's answers, commands run as root with the
/// login's PATH, stdin after the password, and a cancelled command's root processes stopped.
final class SudoTests: HostTestCase {
    static let password = "pw for sudo tests"

    override class var hostUsers: [TestUser] {
        [TestUser(name: "nopw", uid: 4251, sudo: true), TestUser(name: "withpw", uid: 4252, sudo: true, password: password),
         TestUser(name: "nosudo", uid: 4253, sudo: false)]
    }

    func sudoSession(_ user: String, password: String?) throws -> SSHSession {
        let session = try connect(user: user)
        session.sudo = try Sudo.probe(session, password: try password.map { try SudoPassword(Array($0.utf8)) })
        return session
    }

    func testCommandsRunAsRootWithTheLoginsPathAndTheirOwnStdin() throws {
        for (user, password) in [("nopw", nil), ("withpw", Self.password)] {
            let session = try sudoSession(user, password: password)
            defer { session.close() }
            XCTAssertEqual(try run(session, ["id", "-u"]).stdout, "0\n", user)
            XCTAssertEqual(try run(session, ["sh", "-c", "command -v nixos-rebuild"]).stdout, "/run/current-system/sw/bin/nixos-rebuild\n", user)
            XCTAssertEqual(try run(session, ["cat"], stdin: Array("data\nmore".utf8)).stdout, "data\nmore", "\(user): stdin after the password is the command's")
            XCTAssertEqual(try run(session, ["cat"]).stdout, "", "\(user): no stdin is end of input")
        }
    }

    func testProbeAnswers() throws {
        func probe(_ user: String, _ password: String?) throws -> SudoError? {
            let session = try connect(user: user)
            defer { session.close() }
            do {
                _ = try Sudo.probe(session, password: try password.map { try SudoPassword(Array($0.utf8)) })
                return nil
            } catch let error as SudoError {
                return error
            }
        }
        let name = { (user: String) in "\(user)@127.0.0.1:\(try! self.host.port)" }
        XCTAssertNil(try probe("nopw", nil))
        XCTAssertNil(try probe("nopw", "unused"), "a passwordless rule wins; the password is not sent")
        XCTAssertNil(try probe("withpw", Self.password))
        XCTAssertEqual(try probe("withpw", nil), .passwordRequired(target: name("withpw")))
        XCTAssertEqual(try probe("withpw", "wrong"), .passwordRejected(target: name("withpw")))
        guard case .notAllowed(let target, let reason)? = try probe("nosudo", nil) else { return XCTFail("nosudo may not use sudo") }
        XCTAssertEqual(target, name("nosudo"))
        XCTAssertTrue(reason.contains("may not run sudo"), reason)
        XCTAssertThrowsError(try SudoPassword(Array("two\nlines".utf8))) { XCTAssertEqual($0 as? SudoError, .unusablePassword) }
        XCTAssertEqual("\(try SudoPassword(Array("x".utf8)))", "(hidden)")
    }

    /// A host whose sudo speaks another language: the probe reads it in the C locale.
    func testProbeReadsSudoInTheCLocale() throws {
        let h = try host
        try h.setTool("sudo", script: """
            #!/bin/sh
            # Test double: real sudo, its messages in German unless LC_ALL=C.
            [ "$LC_ALL" = C ] && exec /usr/bin/sudo "$@"
            exec 4>&1
            rc=$( { { /usr/bin/sudo "$@" 2>&1 1>&4 4>&-; echo $? >&5; } | sed -e 's/a password is required/ein Passwort ist notwendig/' \\
                -e 's/incorrect password attempt/falscher Passwortversuch/' -e 's/Sorry, try again/Tut mir leid, bitte erneut versuchen/' >&2; } 5>&1 )
            exit "$rc"
            """)
        defer { try? h.setTool("sudo", script: nil) }
        let session = try connect(user: "withpw")
        defer { session.close() }
        XCTAssertTrue(try run(session, ["sudo", "-k", "-n", "true"]).stderr.contains("ein Passwort ist notwendig"), "the double speaks German")
        func probe(_ password: String?) throws -> SudoError? {
            do { _ = try Sudo.probe(session, password: try password.map { try SudoPassword(Array($0.utf8)) }) } catch let error as SudoError { return error }
            return nil
        }
        XCTAssertEqual(try probe(nil), .passwordRequired(target: session.target.description))
        XCTAssertEqual(try probe("wrong"), .passwordRejected(target: session.target.description))
        XCTAssertNoThrow(try Sudo.probe(session, password: try SudoPassword(Array(Self.password.utf8))))
    }

    func testCancelStopsTheRootProcessesToo() throws {
        for (user, password) in [("nopw", nil), ("withpw", Self.password)] {
            let marker = "29.\(Int.random(in: 100_000...999_999))"
            let session = try sudoSession(user, password: password)
            defer { session.close() }
            let cancel = try CancellationToken()
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { cancel.cancel() }
            // A pipeline: sudo relays a signal only to its child, so the stop must reach the group.
            XCTAssertThrowsError(try session.exec(RemoteCommand(["sh", "-c", "sleep \(marker) | cat"]), cancel: cancel, stdout: { _ in }, stderr: { _ in })) {
                XCTAssertEqual($0 as? SSHError, .cancelled)
            }
            var left = ""
            for _ in 0..<50 {
                left = try Command.run(["pgrep", "-f", "sleep \(marker)"]).output
                if left.isEmpty { break }
                usleep(100_000)
            }
            XCTAssertEqual(left, "", "\(user): nothing left running")
        }
    }
}

