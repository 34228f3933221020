import FerrySSH

/// What can go wrong in a sync, on either side.
public enum SyncError: Error, Equatable, CustomStringConvertible {
    case localRead(path: String, reason: String)
    /// The connection failed during a step of the sync.
    case transport(step: String, error: SSHError)
    case remote(target: String, step: String, status: String, stderr: String)
    case badRemoteListing(target: String, reason: String)
    case unreadableManifest(target: String, file: String, reason: String)
    case refusingUnknownDestination(target: String, path: String)
    case badDestination(String)

    public var description: String {
        switch self {
        case .localRead(let path, let reason): return "cannot read \(path): \(reason)"
        case .transport(let step, let error): return "\(step): \(error)"
        case .remote(let target, let step, let status, let stderr):
            return "\(target): \(step) failed (\(status))\(stderr.isEmpty ? "" : ": " + stderr.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .badRemoteListing(let target, let reason): return "\(target): unexpected listing from the target: \(reason)"
        case .unreadableManifest(let target, let file, let reason): return "\(target): \(file) is unreadable: \(reason)"
        case .refusingUnknownDestination(let target, let path):
            return "\(target): \(path) is not empty and was never synced by ferry; refusing to replace its contents. Check the path, then run again with --force to take it over."
        case .badDestination(let reason): return reason
        }
    }
}
