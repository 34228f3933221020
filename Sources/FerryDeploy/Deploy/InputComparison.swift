import FerryTarget

/// Whether a deploy's rebuild can be skipped: every source's tree and everything else the rebuild
/// reads on the host (`TargetState.Holder.fixedInputs`, `extra_inputs`, `NIX_PATH`) are what the
/// last rebuild read, that rebuild succeeded with the same operation, and its system still runs.
/// Anything that cannot be read counts as changed.
public struct InputComparison: Sendable, Equatable {
    /// The deploy compared with (nil: none to compare with).
    public var base: String?
    public var same: Bool
    /// What differs, in words.
    public var changed: [String]
    /// Everything compared, `WHAT VALUE` each.
    public var compared: [String]

    static func compare(last: DeployRecord.Read, operation: String, sources: [String: String], inputs: [String: String],
                        syncChanged: [String]) -> InputComparison {
        var result = InputComparison(base: nil, same: false, changed: [], compared: [])
        guard case .record(let r) = last else {
            result.changed = [last == .none ? "no rebuild recorded on the host" : "the last rebuild's record is unreadable"]
            return result
        }
        result.base = r.id
        guard r.outcome?.result == .success else { result.changed = ["the last rebuild (\(r.id)) did not succeed"]; return result }
        guard r.operation == operation else { result.changed = ["the last rebuild (\(r.id)) was a \(r.operation)"]; return result }
        for (name, digest) in sources.sorted(by: { $0.key < $1.key }) {
            result.compared.append("source \(name) \(digest)")
            if r.sources[name]?.content != digest { result.changed.append("source \(name)") }
        }
        for name in r.sources.keys.sorted() where sources[name] == nil { result.changed.append("source \(name) (not deployed now)") }
        for name in syncChanged where !result.changed.contains("source \(name)") { result.changed.append("source \(name) (the sync changed it on the host)") }
        guard let recorded = r.inputs else {
            result.changed.append("no inputs recorded by deploy \(r.id)")
            return result
        }
        let now = inputs.filter { $0.key != "system" }
        for key in Set(now.keys).union(recorded.keys).sorted() {
            let value = now[key] ?? "missing"
            result.compared.append("\(key) \(value)")
            if value == TargetState.Holder.unreadable { result.changed.append("\(key) (unreadable)") }
            else if recorded[key] != now[key] { result.changed.append(key) }
        }
        let running = inputs["system"] ?? "missing"
        result.compared.append("running system \(running)")
        if running != r.outcome?.currentSystem { result.changed.append("the running system (not deploy \(r.id)'s)") }
        result.same = result.changed.isEmpty
        return result
    }

    public var line: String {
        if same, let base { return "unchanged: rebuild skipped (same inputs as deploy \(base))" }
        return "rebuild needed: " + changed.joined(separator: ", ") + (base.map { changed.first?.contains($0) == true ? "" : " (since deploy \($0))" } ?? "")
    }
}
