import FerrySSH
import FerryTOML
import Foundation

extension Fleet {
    /// `[secrets.NAME]` (or a host's own `[hosts.HOST.secrets.NAME]`, which wins): a value taken on
    /// the operator's side — a command's output, or a file — and written to `dest` on each host it
    /// names, only when it changed there.
    public struct Secret: Equatable, Sendable {
        public enum Source: Hashable, Sendable {
            /// argv, no shell; its stdout is the value.
            case command([String])
            /// An absolute path on the operator's machine.
            case file(String)
        }

        /// When the value is written: before the activation (the service finds it when it starts),
        /// or right after it (the activation creates the service's user); `auto`: before when the
        /// owner and group exist on the host already.
        public enum Upload: String, Sendable, CaseIterable { case auto, before, after }

        public var name: String
        public var source: Source
        public var dest: String
        public var owner = "root"
        /// Nil: the owner's group, as the host knows it.
        public var group: String?
        public var mode = 0o400
        /// Units restarted when, and only when, this secret changed (after a switch or test).
        public var restart: [String] = []
        public var upload = Upload.auto

        public init(name: String, source: Source, dest: String) {
            self.name = name
            self.source = source
            self.dest = dest
        }

        /// `0400`, as fleet.toml writes it.
        public var modeText: String { "0" + String(mode, radix: 8) }
    }
}

extension Reader {
    static let secretKeys = ["command", "file", "dest", "owner", "group", "mode", "restart", "hosts", "upload"]

    /// One `[…secrets.NAME]` table, and the hosts it names (fleet-wide ones only).
    func secret(_ table: TOMLTable, name: String, at path: String) throws -> (secret: Fleet.Secret, hosts: [String]?) {
        guard name.range(of: #"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"#, options: .regularExpression) != nil else {
            throw fail(path, "'\(DisplayText.escape(name))' is not a secret name (letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64)")
        }
        try checkKeys(table, allowed: Self.secretKeys, at: path)
        let command = try strings(table, "command", at: "\(path).command")
        let file = try nonEmpty(table, "file", at: "\(path).file")
        let source: Fleet.Secret.Source
        switch (command, file) {
        case (let argv?, nil):
            guard !argv.isEmpty, !argv[0].isEmpty else { throw fail("\(path).command", "empty: give the program and its arguments, e.g. [\"pass\", \"show\", \"lnbits/prod.env\"]") }
            source = .command(argv)
        case (nil, let file?): source = .file(InventoryReader.absolute(file, in: directory))
        case (nil, nil): throw fail(path, "a secret needs command = [...] (its output is the value) or file = \"...\"")
        case (_?, _?): throw fail(path, "a secret has either command or file, not both")
        }
        guard let dest = try nonEmpty(table, "dest", at: "\(path).dest") else {
            throw fail("\(path).dest", "missing: the absolute path the secret is written to on the host")
        }
        let plain = dest.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !$0.properties.isWhitespace }
        let parts = dest.split(separator: "/", omittingEmptySubsequences: false)
        guard dest.hasPrefix("/"), dest.count > 1, !dest.hasSuffix("/"), plain, !parts.dropFirst().contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw fail("\(path).dest", "'\(DisplayText.escape(dest))' must be an absolute path to a file, without spaces, control characters, '.' or '..' parts")
        }
        for root in ["/var/src", "/nix/store"] where dest == root || dest.hasPrefix(root + "/") {
            throw fail("\(path).dest", "\(dest) is inside \(root), which \(root == "/nix/store" ? "every user can read" : "ferry syncs and snapshots"); put secrets elsewhere (e.g. /var/lib/lnbits/.env)")
        }
        var secret = Fleet.Secret(name: name, source: source, dest: dest)
        if let owner = try nonEmpty(table, "owner", at: "\(path).owner") {
            guard InventoryReader.isValidUserName(owner) else { throw fail("\(path).owner", "'\(DisplayText.escape(owner))' is not a user name") }
            secret.owner = owner
        }
        if let group = try nonEmpty(table, "group", at: "\(path).group") {
            guard InventoryReader.isValidUserName(group) else { throw fail("\(path).group", "'\(DisplayText.escape(group))' is not a group name") }
            secret.group = group
        }
        if let mode = try string(table, "mode", at: "\(path).mode") {
            guard (3...4).contains(mode.count), mode.allSatisfy({ ("0"..."7").contains($0) }), let value = Int(mode, radix: 8), value <= 0o777 else {
                throw fail("\(path).mode", "'\(DisplayText.escape(mode))' is not an octal file mode such as \"0400\" (no setuid, setgid or sticky bits)")
            }
            guard value & 0o007 == 0 else { throw fail("\(path).mode", "\(mode) lets every user of the host read or change the secret; give others nothing (e.g. \"0440\")") }
            secret.mode = value
        }
        let units = try strings(table, "restart", at: "\(path).restart") ?? []
        for (i, unit) in units.enumerated() where unit.isEmpty || unit.hasPrefix("-") || !unit.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }) {
            throw fail("\(path).restart[\(i)]", "'\(DisplayText.escape(unit))' is not a systemd unit name")
        }
        secret.restart = units
        if let upload = try string(table, "upload", at: "\(path).upload") {
            guard let value = Fleet.Secret.Upload(rawValue: upload) else {
                throw fail("\(path).upload", "'\(DisplayText.escape(upload))' is not one of \(Fleet.Secret.Upload.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            secret.upload = value
        }
        return (secret, try strings(table, "hosts", at: "\(path).hosts"))
    }
}
