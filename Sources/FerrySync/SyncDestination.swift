import FerrySSH
import FerryTarget

/// `[user@]host[:port]:/abs/path` or `ssh://[user@]host[:port]/abs/path`.
public struct SyncDestination: Equatable {
    public var target: SSHTarget
    public var path: String
    /// The target as written, before the path (ssh_config decides what it leaves out).
    public var targetText: String

    public init(parsing text: String) throws {
        let split: (String, String)
        if text.hasPrefix("ssh://") {
            let rest = text.dropFirst("ssh://".count)
            // The authority ends at the first "/" outside brackets.
            var depth = 0
            guard let slash = rest.firstIndex(where: { c in
                if c == "[" { depth += 1 } else if c == "]" { depth -= 1 }
                return c == "/" && depth == 0
            }) else { throw SyncError.badDestination("'\(text)': no path after the host; expected ssh://[user@]host[:port]/abs/path") }
            split = ("ssh://" + rest[..<slash], String(rest[slash...]))
        } else {
            let searchFrom = text.firstIndex(of: "]") ?? text.startIndex
            guard let r = text[searchFrom...].range(of: ":/") else {
                throw SyncError.badDestination("'\(text)': expected [user@]host[:port]:/abs/path")
            }
            split = (String(text[..<r.lowerBound]), String(text[text.index(after: r.lowerBound)...]))
        }
        target = try SSHTarget(parsing: split.0)
        targetText = split.0
        path = split.1
        try Syncer.validate(destination: path)
    }
}
