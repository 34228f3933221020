@testable import FerryDeploy
import FerryTarget
import XCTest

/// Which deploy a rollback returns to, from the host's history (newest first).
final class RollbackChoiceTests: XCTestCase {
    static func system(_ n: Int) -> String { "/nix/store/" + String(repeating: "a", count: 31) + "\(n)-nixos-system-x" }

    func entry(_ id: String, _ operation: String = "switch", result: DeployRecord.Outcome.Result? = .success, system n: Int,
               kept: Bool = true, stored: Bool = true, returnedTo: String? = nil) -> TargetState.Rollback.Entry {
        let outcome = result.map { DeployRecord.Outcome(result: $0, exitStatus: 0, finishedAt: "2026-12-07T00:00:00Z", currentSystem: Self.system(n)) }
        let record = DeployRecord(id: id, host: "h", startedAt: "2026-12-07T00:00:00Z", operator_: "o", ferryVersion: "0", operation: operation,
                                  sources: [:], returnedTo: returnedTo, system: operation == "rollback" ? Self.system(n) : nil, outcome: outcome)
        return .init(id: id, record: .record(record), snapshots: [(source: "s", name: "h\(n)", kept: kept)], systems: stored ? [Self.system(n)] : [])
    }

    func chosen(_ entries: [TargetState.Rollback.Entry], to: String? = nil) -> String {
        do { return try Rollback.choose(entries, to: to, target: "t").0.id } catch { return "\(error)" }
    }

    func testTheNewestGoodDeployBeforeTheOneTheHostIsAt() {
        XCTAssertEqual(chosen([entry("c", system: 3), entry("b", system: 2), entry("a", system: 1)]), "b")
        // Failed deploys and builds are passed over.
        XCTAssertEqual(chosen([entry("c", system: 3), entry("b", result: .failed, system: 2), entry("x", "build", system: 9), entry("a", system: 1)]), "a")
        // After a failed deploy (the one to undo), the last good one.
        XCTAssertEqual(chosen([entry("c", result: .failed, system: 3), entry("b", system: 2), entry("a", system: 1)]), "b")
        // After a rollback to b: the one before b.
        XCTAssertEqual(chosen([entry("r", "rollback", system: 2, returnedTo: "b"), entry("c", system: 3), entry("b", system: 2), entry("a", system: 1)]), "a")
    }

    func testWhatCannotBeReturnedToIsNamed() {
        XCTAssertTrue(chosen([entry("b", system: 2)]).contains("nothing to roll back to"))
        XCTAssertTrue(chosen([]).contains("ferry has no deploy recorded"))
        XCTAssertTrue(chosen([entry("b", system: 2), entry("a", system: 1, stored: false)]).contains("the system of deploy a is gone"))
        XCTAssertTrue(chosen([entry("b", system: 2), entry("a", system: 1, kept: false)]).contains("the snapshot of s for deploy a is gone"))
        // An older one that is whole is taken over a newer one that is not.
        XCTAssertEqual(chosen([entry("c", system: 3), entry("b", system: 2, stored: false), entry("a", system: 1)]), "a")
        XCTAssertTrue(chosen([entry("b", system: 2)], to: "zzz").contains("no deploy zzz on the host"))
        XCTAssertTrue(chosen([entry("b", system: 2), entry("a", result: .failed, system: 1)], to: "a").contains("it did not succeed (failed)"))
        XCTAssertEqual(chosen([entry("b", system: 2), entry("a", system: 1)], to: "b"), "b")
    }
}
