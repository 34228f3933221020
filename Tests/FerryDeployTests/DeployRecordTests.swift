@testable import FerryDeploy
import FerryTarget
import Foundation
import XCTest

/// The record's two lines (ferry's base, the job's outcome), the earlier JSON record, and what is
/// refused: every unreadable record says why, none reads as "never deployed".
final class DeployRecordTests: XCTestCase {
    let base = DeployRecord(id: "20261207T120000Z-0a1b", host: "alpha", startedAt: "2026-12-07T12:00:00Z", operator_: "root@laptop",
                            ferryVersion: "0.4.0", operation: "switch", sources: ["lnbits-src": .init(digest: "sha256:00", commit: "abc", dirty: false)])
    let store = "/nix/store/" + String(repeating: "0", count: 32) + "-nixos-system-alpha-24.05"

    func read(_ text: String) -> DeployRecord.Read { DeployRecord.read(Array(text.utf8), file: "F") }

    func testTwoLinesReadBackAsTheOneType() {
        var finished = base
        finished.outcome = .init(result: .success, exitStatus: 0, finishedAt: "2026-12-07T12:01:00Z", durationSeconds: 60, currentSystem: store)
        XCTAssertEqual(read(finished.fileText), .record(finished))
        XCTAssertEqual(read(base.fileText), .record(base), "started, no result")
        var synced = base
        synced.outcome = .init(result: .syncOnly, finishedAt: "2026-12-07T12:01:00Z")
        XCTAssertTrue(synced.fileText.hasSuffix("\nfinished sync-only - 2026-12-07T12:01:00Z - - - - - -\n"), synced.fileText)
        XCTAssertEqual(read(synced.fileText), .record(synced))
        XCTAssertEqual(read(""), .none)
    }

    func testTheJobsLineIsCheckedFieldByField() {
        let good = "finished failed 1 2026-12-07T12:01:00Z 5 \(store)"
        XCTAssertNotNil(DeployRecord.Outcome(line: Substring(good)))
        for bad in ["finished failed 1 2026-12-07T12:01:00Z 5 /nix/store/short-name", "finished failed 1 2026-12-07T12:01:00Z 5 /etc/passwd",
                    "finished weird 1 2026-12-07T12:01:00Z 5 -", "finished failed x 2026-12-07T12:01:00Z 5 -", "finished failed 1 yesterday 5 -",
                    "finished failed 1 2026-12-07T12:01:00Z 5", "finished failed 1 2026-12-07T12:01:00Z 5 - extra",
                    "finished failed 1 2026-12-07T12:01:00Z 5 /nix/store/" + String(repeating: "A", count: 32) + "-x",
                    "started", "finished failed ١ 2026-12-07T12:01:00Z 5 -"] {
            XCTAssertNil(DeployRecord.Outcome(line: Substring(bad)), bad)
            XCTAssertEqual(read(base.json + "\n" + bad + "\n"), .unreadable(file: "F", reason: "its second line is not a deploy's outcome"), bad)
        }
    }

    /// The generations a rebuild leaves: what ran before it (a revert's target) and the
    /// generation it made; a line of an earlier version (six fields) still reads.
    func testGenerationsReadBack() {
        let before = "/nix/store/" + String(repeating: "1", count: 32) + "-nixos-system-alpha-24.05"
        var switched = base
        switched.outcome = .init(result: .success, exitStatus: 0, finishedAt: "2026-12-07T12:01:00Z", durationSeconds: 60, currentSystem: store,
                                 systemBefore: before, profileBefore: before, generation: 42, generationPath: store)
        XCTAssertEqual(read(switched.fileText), .record(switched))
        XCTAssertTrue(switched.fileText.hasSuffix(" \(store) \(before) \(before) 42 \(store)\n"), switched.fileText)
        let old = DeployRecord.Outcome(line: Substring("finished success 0 2026-12-07T12:01:00Z 60 \(store)"))
        XCTAssertEqual(old?.currentSystem, store)
        XCTAssertNil(old?.generation)
        for bad in ["finished success 0 2026-12-07T12:01:00Z 60 \(store) \(before) \(before) -1 \(store)",
                    "finished success 0 2026-12-07T12:01:00Z 60 \(store) /etc \(before) 42 \(store)",
                    "finished success 0 2026-12-07T12:01:00Z 60 \(store) \(before) \(before) 42",
                    "finished success 0 2026-12-07T12:01:00Z 60 \(store) \(before) \(before) 4x2 \(store)"] {
            XCTAssertNil(DeployRecord.Outcome(line: Substring(bad)), bad)
        }
    }

    /// A reverted outcome ends with its reason; no other outcome has one. A rollback's base names
    /// the deploy it returned to and the system it activated.
    func testRevertsAndRollbacksReadBack() {
        let before = "/nix/store/" + String(repeating: "1", count: 32) + "-nixos-system-alpha-24.05"
        var reverted = base
        reverted.outcome = .init(result: .reverted, exitStatus: 1, finishedAt: "2026-12-07T12:01:00Z", durationSeconds: 40, currentSystem: before,
                                 systemBefore: before, profileBefore: before, reason: .noConfirmation)
        XCTAssertEqual(read(reverted.fileText), .record(reverted))
        XCTAssertTrue(reverted.fileText.hasSuffix(" - - no-confirmation\n"), reverted.fileText)
        for reason in DeployRecord.Outcome.RevertReason.allCases {
            XCTAssertEqual(DeployRecord.Outcome(line: Substring("finished reverted 1 2026-12-07T12:01:00Z 4 - - - - - \(reason.rawValue)"))?.reason, reason)
        }
        for bad in ["finished reverted 1 2026-12-07T12:01:00Z 4 - - - - -", "finished success 0 2026-12-07T12:01:00Z 4 - - - - - no-confirmation",
                    "finished reverted 1 2026-12-07T12:01:00Z 4 - - - - - because"] {
            XCTAssertNil(DeployRecord.Outcome(line: Substring(bad)), bad)
        }
        var rollback = base
        rollback.operation = DeployRecord.rollbackOperation
        rollback.returnedTo = "20261207T000000Z-0000"
        rollback.system = before
        rollback.outcome = .init(result: .success, exitStatus: 0, finishedAt: "2026-12-07T12:01:00Z", durationSeconds: 2, currentSystem: before)
        XCTAssertEqual(read(rollback.fileText), .record(rollback))
        XCTAssertTrue(rollback.json.contains("\"returned_to\":\"20261207T000000Z-0000\""), rollback.json)
        XCTAssertEqual(rollback.deployedSystem, before)
    }

    /// The health checks' line follows the outcome; the script that adds it touches only a
    /// finished record of the same deploy, once.
    func testHealthChecksReadBackAndAreAddedOnce() throws {
        var finished = base
        finished.outcome = .init(result: .success, exitStatus: 0, finishedAt: "2026-12-07T12:01:00Z", durationSeconds: 2)
        let checks = [DeployRecord.CheckResult(check: "systemctl is-active lnbits", passed: true, tries: 1, seconds: 0.05, detail: "exit status 0"),
                      DeployRecord.CheckResult(check: "http://127.0.0.1:5000/", passed: false, tries: 3, seconds: 4.5, detail: "HTTP 500 \"x\" \\ é")]
        var checked = finished
        checked.checks = checks
        XCTAssertEqual(read(checked.fileText), .record(checked))
        XCTAssertEqual(checked.fileText.split(separator: "\n").count, 3)

        let folder = NSTemporaryDirectory() + "ferry-record-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let state = TargetState(root: folder)
        try FileManager.default.createDirectory(atPath: state.deploy(base.id), withIntermediateDirectories: true)
        try finished.fileText.write(toFile: state.deploy(base.id) + "/record", atomically: true, encoding: .utf8)
        var other = finished
        other.id = "20261207T000000Z-ffff"
        try other.fileText.write(toFile: state.rebuildRecord, atomically: true, encoding: .utf8)
        let command = TargetState.Job.recordChecks(state, id: base.id, checks: checks)
        for _ in 0..<2 {
            // The command line as the target's shell gets it.
            let shell = Process()
            shell.executableURL = URL(fileURLWithPath: "/bin/sh")
            shell.arguments = ["-c", String(decoding: command.bytes, as: UTF8.self)]
            try shell.run()
            shell.waitUntilExit()
            XCTAssertEqual(shell.terminationStatus, 0)
        }
        XCTAssertEqual(read(try String(contentsOfFile: state.deploy(base.id) + "/record", encoding: .utf8)), .record(checked))
        XCTAssertEqual(try String(contentsOfFile: state.rebuildRecord, encoding: .utf8), other.fileText, "another deploy's record is left alone")
    }

    func testUnreadableRecordsSayWhy() {
        XCTAssertEqual(read(String(base.fileText.dropLast(9))), .unreadable(file: "F", reason: "it is cut short (no line end)"))
        XCTAssertEqual(read("{\"id\":\n"), .unreadable(file: "F", reason: "its first line is not a deploy's record"))
        XCTAssertEqual(read(base.json + "\na\nb\nc\n"), .unreadable(file: "F", reason: "it has more than three lines"))
        var finished = base
        finished.outcome = .init(result: .success, exitStatus: 0, finishedAt: "2026-12-07T12:01:00Z", durationSeconds: 2)
        XCTAssertEqual(read(finished.fileText + "{\"checks\":3}\n"), .unreadable(file: "F", reason: "its third line is not the deploy's health checks"))
    }

    func testTheEarlierJSONRecordIsRead() {
        let json = String(base.json.dropLast())
        var expected = base
        XCTAssertEqual(read(json + ",\"state\":\"started\"}\n"), .record(expected))
        expected.outcome = .init(result: .success, exitStatus: 0, finishedAt: "2026-12-07T12:01:00Z", durationSeconds: 7, currentSystem: "/nix/store/x")
        XCTAssertEqual(read(json + ",\"state\":\"finished\",\"result\":\"success\",\"exit_status\":0,\"finished_at\":\"2026-12-07T12:01:00Z\",\"duration_seconds\":7,\"current_system\":\"/nix/store/x\"}\n"),
                       .record(expected))
        XCTAssertEqual(read(json + ",\"state\":\"finished\",\"result\":\"odd\"}\n"), .unreadable(file: "F", reason: "its result is not one ferry writes"))
    }
}

/// A secret's value on the operator's side: a command's stdout exactly, its failure with stderr.
final class SecretValueTests: XCTestCase {
    func testACommandsOutputAndFailure() throws {
        let value = try SecretValue.read(.command(["printf", "a\\000b"]), directory: "/")
        XCTAssertEqual(value.withBytes { Array($0) }, [0x61, 0, 0x62])
        XCTAssertEqual("\(value)", "(a secret of 3 bytes)")
        XCTAssertThrowsError(try SecretValue.read(.command(["cat", "no-such-file"]), directory: "/")) { error in
            XCTAssertEqual("\(error)", "cat no-such-file: exit status 1\ncat: no-such-file: No such file or directory")
        }
        XCTAssertThrowsError(try SecretValue.read(.file("/no/such/file"), directory: "/")) { error in
            XCTAssertEqual("\(error)", "/no/such/file: No such file or directory")
        }
    }
}

/// What a skipped rebuild is compared with: only a successful rebuild of the same operation that
/// recorded its inputs, with the running system still its own.
final class InputComparisonTests: XCTestCase {
    let system = "/nix/store/" + String(repeating: "a", count: 32) + "-nixos-system-alpha"

    func base(inputs: [String: String]? = ["file:/etc/nix/nix.conf": "00"], result: DeployRecord.Outcome.Result = .success, operation: String = "switch") -> DeployRecord.Read {
        var r = DeployRecord(id: "20261208T000000Z-0001", host: "alpha", startedAt: "2026-12-08T00:00:00Z", operator_: "op", ferryVersion: "0", operation: operation,
                             sources: ["lnbits-src": .init(digest: "sha256:d", content: "sha256:c")])
        r.inputs = inputs
        r.outcome = .init(result: result, finishedAt: "2026-12-08T00:00:01Z", currentSystem: system)
        return .record(r)
    }

    func compare(_ last: DeployRecord.Read, inputs: [String: String]? = nil, sources: [String: String] = ["lnbits-src": "sha256:c"], synced: [String] = [],
                 operation: String = "switch") -> InputComparison {
        InputComparison.compare(last: last, operation: operation, sources: sources,
                                inputs: inputs ?? ["file:/etc/nix/nix.conf": "00", "system": system], syncChanged: synced)
    }

    /// A fleet records the digest of the manifest it hashed; a lone deploy, of the one it decoded:
    /// the same tree must give the same digest either way, and only mtimes may differ unnoticed.
    func testTheContentDigestSurvivesEncodingAndIgnoresOnlyMtimes() throws {
        let sum = Array("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".utf8)
        let entries = [FileEntry(path: Array("lnbits".utf8), kind: .directory, mode: 0o755, size: 0, mtime: Timestamp(seconds: 1, nanoseconds: 2)),
                       FileEntry(path: Array("lnbits/app.py".utf8), kind: .file, mode: 0o644, size: 0, mtime: Timestamp(seconds: 3, nanoseconds: 4), checksum: sum),
                       FileEntry(path: Array("link".utf8), kind: .symlink, mode: 0o777, size: 6, mtime: Timestamp(seconds: 5, nanoseconds: 6), linkTarget: Array("lnbits".utf8))]
        let manifest = Manifest(entries)
        let digest = ManifestFile.contentDigest(manifest)
        XCTAssertEqual(ManifestFile.contentDigest(try ManifestFile.decode(ManifestFile.encode(manifest), target: "t")), digest)
        var touched = entries
        touched[1].mtime = Timestamp(seconds: 99, nanoseconds: 0)
        XCTAssertEqual(ManifestFile.contentDigest(Manifest(touched)), digest, "mtimes are not content")
        var chmodded = entries
        chmodded[1].mode = 0o755
        XCTAssertNotEqual(ManifestFile.contentDigest(Manifest(chmodded)), digest)
    }

    func testOnlyTheSameEverythingSkips() {
        XCTAssertTrue(compare(base()).same)
        XCTAssertEqual(compare(base()).line, "unchanged: rebuild skipped (same inputs as deploy 20261208T000000Z-0001)")
        XCTAssertEqual(compare(.none).changed, ["no rebuild recorded on the host"])
        XCTAssertEqual(compare(base(result: .failed)).changed, ["the last rebuild (20261208T000000Z-0001) did not succeed"])
        XCTAssertEqual(compare(base(result: .reverted)).same, false)
        XCTAssertEqual(compare(base(operation: "test")).changed, ["the last rebuild (20261208T000000Z-0001) was a test"])
        XCTAssertEqual(compare(base(inputs: nil)).changed, ["no inputs recorded by deploy 20261208T000000Z-0001"])
        XCTAssertEqual(compare(base(), sources: ["lnbits-src": "sha256:x"]).changed, ["source lnbits-src"])
        XCTAssertEqual(compare(base(), sources: ["lnbits-src": "sha256:c", "new": "sha256:n"]).changed, ["source new"])
        XCTAssertEqual(compare(base(), synced: ["lnbits-src"]).changed, ["source lnbits-src (the sync changed it on the host)"])
        XCTAssertEqual(compare(base(), inputs: ["file:/etc/nix/nix.conf": "01", "system": system]).changed, ["file:/etc/nix/nix.conf"])
        XCTAssertEqual(compare(base(), inputs: ["file:/etc/nix/nix.conf": "00", "file:/x": "missing", "system": system]).changed, ["file:/x"])
        XCTAssertEqual(compare(base(inputs: ["file:/x": "unreadable"]), inputs: ["file:/x": "unreadable", "system": system]).changed, ["file:/x (unreadable)"])
        XCTAssertEqual(compare(base(), inputs: ["file:/etc/nix/nix.conf": "00", "system": "/nix/store/other"]).changed,
                       ["the running system (not deploy 20261208T000000Z-0001's)"])
    }
}
