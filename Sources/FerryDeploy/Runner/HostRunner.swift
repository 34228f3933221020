import FerrySSH
import Foundation
import Synchronization

/// Runs one operation per host (`HostOperation`), `jobs` hosts at a time, each on a thread of its own: the pool
/// every command shares (deploy, diff, status, exec). Hosts start in inventory order; results come
/// back in it, nil for a host that never started (an interrupt, or a failure under
/// `stopAfterFailure`).
public struct HostRunner: Sendable {
    public var jobs: Int
    /// Once cancelled, no further host starts (those running finish their step).
    public var stop: CancellationToken?
    /// After a result that `failed` says is a failure, no further host starts (deploy without
    /// `--keep-going`).
    public var stopAfterFailure = false

    public init(jobs: Int, stop: CancellationToken? = nil, stopAfterFailure: Bool = false) {
        self.jobs = jobs
        self.stop = stop
        self.stopAfterFailure = stopAfterFailure
    }

    public func run<Result: Sendable>(_ count: Int, failed: @escaping @Sendable (Result) -> Bool = { _ in false },
                                      _ work: @escaping @Sendable (Int) -> Result) -> [Result?] {
        let shared = Mutex(Shared<Result>(results: Array(repeating: nil, count: count)))
        let (stop, stopAfterFailure) = (self.stop, self.stopAfterFailure)
        @Sendable func worker() {
            while true {
                let index: Int? = shared.withLock { s in
                    guard !s.stopStarting, s.next < count, stop?.isCancelled != true else { return nil }
                    s.next += 1
                    return s.next - 1
                }
                guard let index else { return }
                let result = work(index)
                shared.withLock { s in
                    s.results[index] = result
                    if stopAfterFailure && failed(result) { s.stopStarting = true }
                }
            }
        }
        let group = DispatchGroup()
        for _ in 0..<max(1, min(jobs, count)) {
            group.enter()
            Thread { worker(); group.leave() }.start()
        }
        group.wait()
        return shared.withLock { $0.results }
    }

    /// Runs `operation` on hosts `0..<count`; `events` hears every host's start, events and
    /// outcome. Returns the outcomes in inventory order, nil for a host that never started.
    public func run<Operation: HostOperation>(_ operation: Operation, hosts count: Int,
                                              events: @escaping @Sendable (RunnerEvent<Operation>) -> Void = { _ in }) -> [Operation.Outcome?] {
        run(count, failed: { operation.failed($0) }) { index in
            events(.started(host: index))
            let outcome = operation.run(host: index) { events(.event(host: index, $0)) }
            events(.finished(host: index, outcome))
            return outcome
        }
    }

    private struct Shared<Result: Sendable>: Sendable {
        var next = 0
        var stopStarting = false
        var results: [Result?]
    }
}
