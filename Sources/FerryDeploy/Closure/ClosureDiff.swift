import FerryNix

/// What a switch changes in the system's closure: per package name (as Nix parses a store path's
/// name), the versions before and after, whether it was rebuilt (same versions, other store paths:
/// an LNBits code change shows here), and its closure size change. Computed from the two closures
/// themselves (`nix-store -qR` with each path's size), not from `nix store diff-closures`' text,
/// which on Nix 2.8 leaves out small same-version rebuilds and has no JSON.
public struct ClosureDiff: Sendable, Equatable {
    public struct Row: Sendable, Equatable, Codable {
        public enum Kind: String, Sendable, Codable { case added, removed, upgraded, downgraded, changed, rebuilt }

        public var name: String
        public var kind: Kind
        public var oldVersions: [String]
        public var newVersions: [String]
        public var rebuilt: Bool
        /// Bytes: the new paths' sizes less the old ones'.
        public var sizeDelta: Int64

        enum CodingKeys: String, CodingKey {
            case name, kind, oldVersions = "old_versions", newVersions = "new_versions", rebuilt, sizeDelta = "size_delta"
        }
    }

    public var rows: [Row]
    /// The new closure's size less the old one's.
    public var sizeDelta: Int64

    /// `old` and `new`: store path → its size (`nix-store -q --size`).
    public init(old: [String: Int64], new: [String: Int64]) {
        struct Side { var versions: Set<String> = []; var paths: Set<String> = []; var size: Int64 = 0 }
        var before: [String: Side] = [:], after: [String: Side] = [:]
        func add(_ paths: [String: Int64], to sides: inout [String: Side]) {
            for (path, size) in paths {
                let (name, version) = NixVersion.parseDrvName(Self.name(of: path))
                sides[name, default: Side()].versions.insert(version)
                sides[name, default: Side()].paths.insert(path)
                sides[name, default: Side()].size += size
            }
        }
        add(old, to: &before)
        add(new, to: &after)
        var rows: [Row] = []
        for name in Set(before.keys).union(after.keys).sorted() {
            let o = before[name] ?? Side(), n = after[name] ?? Side()
            guard o.paths != n.paths else { continue }
            let oldVersions = o.versions.sorted { NixVersion.compare($0, $1) < 0 }
            let newVersions = n.versions.sorted { NixVersion.compare($0, $1) < 0 }
            let kind: Row.Kind
            if o.paths.isEmpty { kind = .added }
            else if n.paths.isEmpty { kind = .removed }
            else if oldVersions == newVersions { kind = .rebuilt }
            else if oldVersions.count == 1 && newVersions.count == 1 {
                kind = NixVersion.compare(oldVersions[0], newVersions[0]) < 0 ? .upgraded : .downgraded
            } else { kind = .changed }
            rows.append(Row(name: name, kind: kind, oldVersions: oldVersions, newVersions: newVersions,
                            rebuilt: kind == .rebuilt, sizeDelta: n.size - o.size))
        }
        self.rows = rows
        sizeDelta = new.values.reduce(0, +) - old.values.reduce(0, +)
    }

    /// `/nix/store/HASH-NAME` → NAME.
    static func name(of path: String) -> String {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        guard let dash = base.firstIndex(of: "-") else { return base }
        return String(base[base.index(after: dash)...])
    }

    /// A line per row, as a table would show it: `lnbits: 1.2.0 → 1.3.0, +12.3 KiB`.
    public static func line(_ row: Row) -> String {
        func versions(_ v: [String]) -> String { v.map { $0.isEmpty ? "ε" : $0 }.joined(separator: ", ") }
        let change: String
        switch row.kind {
        case .added: change = "added \(versions(row.newVersions))"
        case .removed: change = "removed \(versions(row.oldVersions))"
        case .rebuilt: change = "rebuilt \(versions(row.newVersions))"
        default: change = "\(versions(row.oldVersions)) → \(versions(row.newVersions))"
        }
        return "\(row.name): \(change), \(size(row.sizeDelta))"
    }

    /// `+12.3 KiB`, `-1.0 MiB`, `+0 B`.
    public static func size(_ bytes: Int64) -> String {
        let sign = bytes < 0 ? "-" : "+"
        let b = Double(abs(bytes))
        if b < 1024 { return "\(sign)\(abs(bytes)) B" }
        if b < 1024 * 1024 { return sign + String(format: "%.1f KiB", b / 1024) }
        if b < 1024 * 1024 * 1024 { return sign + String(format: "%.1f MiB", b / 1024 / 1024) }
        return sign + String(format: "%.2f GiB", b / 1024 / 1024 / 1024)
    }
}
