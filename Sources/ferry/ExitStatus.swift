import FerryDeploy
import FerrySSH
import FerryTarget

/// The README's exit-code table, one for every command. Precedence, highest first: interrupted
/// (130, 143); a usage, inventory or local error (2, before any connection); the only selected
/// host could not be reached or logged in to (255); a failure on a target (1; with several hosts,
/// any host that failed, each named on stderr); a rebuild whose outcome is unknown (3, deploy);
/// `diff --exit-code` finding changes (1). `ferry exec` to one host exits with the remote
/// command's status instead.
enum ExitStatus {
    static let failure: Int32 = 1
    static let usage: Int32 = 2
    static let unknownOutcome: Int32 = 3
    static let connection: Int32 = 255

    /// Whether `error` is the connection or the login failing (what ssh exits 255 for).
    static func isConnectionFailure(_ error: any Error) -> Bool {
        if let e = error as? SSHError { return e != .cancelled }
        if case SyncError.transport(_, let e) = error { return e != .cancelled }
        return false
    }

    /// The code for hosts that failed (`failed`: each one's error, where it is known), of
    /// `selected` hosts: 2 for a local check, 255 when the only one could not be reached, else 1;
    /// nil: none failed.
    static func forFailures(_ failed: [(any Error)?], selected: Int) -> Int32? {
        guard !failed.isEmpty else { return nil }
        // A local check that only a host's run could make (one host's diff checks the scan it
        // listed with) is still a local error.
        if failed.contains(where: { if case DeployError.localCheck? = $0 { true } else { false } }) { return usage }
        if selected == 1, failed.count == 1, let error = failed[0], isConnectionFailure(error) { return connection }
        return failure
    }
}
