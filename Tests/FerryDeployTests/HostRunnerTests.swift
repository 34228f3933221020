import FerryDeploy
import FerrySSH
import Foundation
import Synchronization
import XCTest

/// The pool every command runs its hosts on: inventory order in and out, at most `jobs` at once,
/// each host's events between its start and its outcome, the failure policy and the stop token.
final class HostRunnerTests: XCTestCase {
    /// Host i sleeps a little (later hosts less, so they would finish first), reports two events,
    /// and fails when `failing` holds i.
    struct Sleepy: HostOperation {
        var failing: Set<Int> = []
        let running = Running()

        final class Running: Sendable {
            let state = Mutex((now: 0, most: 0))
            func withLock<T>(_ body: (inout (now: Int, most: Int)) -> T) -> T { state.withLock { body(&$0) } }
        }

        func run(host index: Int, emit: @escaping @Sendable (String) -> Void) -> Int {
            running.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
            emit("a\(index)")
            usleep(UInt32(20_000 - index * 1_000))
            emit("b\(index)")
            running.withLock { $0.now -= 1 }
            return failing.contains(index) ? -index : index
        }

        func failed(_ outcome: Int) -> Bool { outcome < 0 }
        func error(_ outcome: Int) -> (any Error)? { nil }
    }

    func testOutcomesInInventoryOrderAndEventsBetweenStartAndEnd() {
        let op = Sleepy()
        let log = Mutex<[Int: [String]]>([:])
        let outcomes = HostRunner(jobs: 3).run(op, hosts: 10) { event in
            switch event {
            case .started(let i): log.withLock { $0[i, default: []].append("start") }
            case .event(let i, let e): log.withLock { $0[i, default: []].append(e) }
            case .finished(let i, let o): log.withLock { $0[i, default: []].append("end \(o)") }
            }
        }
        XCTAssertEqual(outcomes, Array(0..<10))
        for i in 0..<10 { XCTAssertEqual(log.withLock { $0[i] }, ["start", "a\(i)", "b\(i)", "end \(i)"]) }
        XCTAssertEqual(op.running.withLock { $0.most }, 3, "jobs bounds the hosts running at once")
    }

    func testNoHostStartsAfterAFailureWhenAskedAndAfterAStop() throws {
        let stopAfterFailure = HostRunner(jobs: 1, stopAfterFailure: true).run(Sleepy(failing: [2]), hosts: 5)
        XCTAssertEqual(stopAfterFailure, [0, 1, -2, nil, nil])
        let keepGoing = HostRunner(jobs: 1).run(Sleepy(failing: [2]), hosts: 5)
        XCTAssertEqual(keepGoing, [0, 1, -2, 3, 4])

        let stop = try CancellationToken()
        let stopped = HostRunner(jobs: 1, stop: stop).run(Sleepy(), hosts: 5) { event in
            if case .finished(1, _) = event { stop.cancel() }
        }
        XCTAssertEqual(stopped, [0, 1, nil, nil, nil])
    }
}
