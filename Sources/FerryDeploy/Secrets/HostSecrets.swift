import FerrySSH
import FerryTarget
import Foundation

/// How a host's copy of a secret compares with the operator's.
public enum SecretChange: String, Sendable, Codable {
    case unchanged, new, changed
    /// The file is not what ferry wrote (its inode or ctime moved): someone changed it on the host.
    case changedOnHost = "changed-on-host"
    /// ferry wrote it once; it is gone.
    case missingOnHost = "missing-on-host"

    public var text: String { rawValue.replacingOccurrences(of: "-", with: " ") }
}

/// What happened to one secret in a deploy (an event, and the record's).
public struct SecretReport: Sendable, Equatable {
    /// Before or after the activation; `now` for `--secrets-only`, which activates nothing.
    public enum Written: String, Sendable { case before, after, now }
    public var name: String
    /// Nil: not known yet (its owner does not exist before the activation).
    public var change: SecretChange?
    /// When it was (or is to be) written; nil: not written (unchanged).
    public var written: Written?
    /// The units restarted for it.
    public var restarts: [String] = []

    public var line: String {
        var text = "\(name): " + (change?.text ?? "its owner does not exist before the activation")
        if let written { text += written == .now ? ", written" : ", written \(written.rawValue) the activation" }
        if !restarts.isEmpty { text += "; restarts \(restarts.joined(separator: ", "))" }
        return text
    }
}

/// One host's secrets in a deploy: what the host has (one command for all of them), what changed,
/// and the writing of each changed one (a command each, its value on stdin).
struct HostSecrets {
    struct Item {
        var secret: Fleet.Secret
        var found: TargetState.Secrets.Found
        var digest: String?
        var change: SecretChange?
        /// Before the activation (its owner and group exist), or after it.
        var before: Bool
    }

    var items: [Item]

    /// What the host has of `secrets` (one command; `create`: make the host's key when it has none).
    /// A deploy, a diff and a status read it alike.
    static func query(_ secrets: [Fleet.Secret], session: any RemoteShell, state: TargetState, create: Bool) throws -> TargetState.Secrets.Answer {
        let (status, out, err) = try session.run(TargetState.Secrets.query(state, create: create, secrets: secrets.map { ($0.name, $0.dest, $0.owner, $0.group) }))
        guard status == .exited(0), let answer = TargetState.Secrets.Answer(out, count: secrets.count) else {
            throw DeployError.remote(target: session.name, step: "reading the secrets' state",
                                     detail: "\(status): \(String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return answer
    }

    /// Reads what `host` has of its secrets and compares it with `store`'s values; the host's key
    /// is made on the first deploy. Throws when a secret must go before the activation and its
    /// owner or group is missing.
    static func read(_ secrets: [Fleet.Secret], host: String, session: any RemoteShell, state: TargetState, store: SecretStore) throws -> HostSecrets {
        let answer = try query(secrets, session: session, state: state, create: true)
        guard let key = answer.key else {
            throw DeployError.remote(target: session.name, step: "reading the secrets' state",
                                     detail: "\(TargetState.Secrets.folder(state))/key is damaged (not 64 hex digits); remove it: every secret is then written again")
        }
        var items: [Item] = []
        for (secret, found) in zip(secrets, answer.secrets) {
            let ready = found.ownerExists && found.group != nil
            if secret.upload == .before && !ready {
                throw DeployError.remote(target: session.name, step: "secrets.\(secret.name)",
                                         detail: found.ownerExists ? "its group \(secret.group ?? "of \(secret.owner)") does not exist on the host; upload = \"before\" needs it before the activation (\"auto\" writes it after)"
                                            : "its owner \(secret.owner) does not exist on the host; upload = \"before\" needs it before the activation (\"auto\" writes it after the activation, which creates the user)")
            }
            var item = Item(secret: secret, found: found, before: ready && secret.upload != .after)
            if ready, let group = found.group {
                let value = try store.value(secret)
                item.digest = value.digest(key: key, dest: secret.dest, owner: secret.owner, group: group, mode: secret.modeText)
                item.change = Self.change(found, digest: item.digest!)
            }
            items.append(item)
        }
        return HostSecrets(items: items)
    }

    /// How the host's file differs from what ferry last wrote there (nil: it is that file), told
    /// by the recorded inode and ctime alone.
    static func drift(_ found: TargetState.Secrets.Found) -> SecretChange? {
        guard found.state != nil else { return .new }
        guard found.untouched else { return found.file == .missing ? .missingOnHost : .changedOnHost }
        return nil
    }

    static func change(_ found: TargetState.Secrets.Found, digest: String) -> SecretChange {
        drift(found) ?? (found.state?.digest == digest ? .unchanged : .changed)
    }

    /// Writes `item`'s value when it changed. Returns its report (`written` set when it was).
    static func write(_ item: Item, session: any RemoteShell, state: TargetState, store: SecretStore, when: SecretReport.Written) throws -> SecretReport {
        var report = SecretReport(name: item.secret.name, change: item.change)
        guard let change = item.change, change != .unchanged, let digest = item.digest, let group = item.found.group else { return report }
        let secret = item.secret
        let value = try store.value(secret)
        let (status, _, err) = try session.run(TargetState.Secrets.write(state, name: secret.name, dest: secret.dest, mode: secret.modeText,
                                                                          owner: secret.owner, group: group, digest: digest), input: value.input())
        guard status == .exited(0) else {
            throw DeployError.remote(target: session.name, step: "writing secrets.\(secret.name) to \(secret.dest)",
                                     detail: "\(status): \(String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        report.written = when
        report.restarts = secret.restart
        return report
    }
}
