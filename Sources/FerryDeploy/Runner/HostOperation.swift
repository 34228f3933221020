import FerrySSH

/// One command's work on one host (a deploy, a diff, a status read, an unlock, a command run),
/// as a value `HostRunner` runs for each selected host. Outcomes are values too: a host's failure
/// is in its outcome, never thrown past the runner, so the others go on and the caller can name it.
public protocol HostOperation: Sendable {
    /// What the work reports while it runs (a deploy's phases, a command's output).
    associatedtype Event: Sendable = Never
    associatedtype Outcome: Sendable

    /// Host `index`'s work, on a thread of the runner's; `emit` is this host's event stream.
    func run(host index: Int, emit: @escaping @Sendable (Event) -> Void) -> Outcome

    /// Whether `outcome` is a failure (the runner starts no new host after one when asked to).
    func failed(_ outcome: Outcome) -> Bool

    /// The error behind a failed outcome, for the exit status (nil: none known, or no failure).
    func error(_ outcome: Outcome) -> (any Error)?
}

/// What the runner reports about each host: it started, its work's events, how it ended. From
/// the host's thread; one host's events are never concurrent.
public enum RunnerEvent<Operation: HostOperation>: Sendable {
    case started(host: Int)
    case event(host: Int, Operation.Event)
    case finished(host: Int, Operation.Outcome)
}

/// A host operation whose outcome is its value or its error (status, unlock).
public protocol ReadingOperation: HostOperation where Outcome == Result<Value, any Error> {
    associatedtype Value: Sendable
}

extension ReadingOperation {
    public func failed(_ outcome: Outcome) -> Bool {
        if case .failure = outcome { return true }
        return false
    }

    public func error(_ outcome: Outcome) -> (any Error)? {
        if case .failure(let error) = outcome { return error }
        return nil
    }
}
