import FerrySSH
import Foundation

/// `--itemize` lines in the format rsync prints when pushing (`YXcstpoguax name`).
public enum Itemize {
    public static func line(_ item: SyncPlan.Item) -> String {
        let e = item.entry
        let type: Character
        switch e.kind {
        case .file: type = "f"
        case .directory: type = "d"
        case .symlink: type = "L"
        case .fifo: type = "S"
        }
        var name = e.path.isEmpty ? "." : DisplayText.escape(e.path)
        if e.kind == .directory { name += "/" }
        // rsync names a deleted symlink without its target.
        if e.kind == .symlink, item.change != .deleted, let target = e.linkTarget { name += " -> " + DisplayText.escape(target) }
        switch item.change {
        case .deleted:
            return "*deleting   \(name)"
        case .created:
            return "\(e.kind == .file ? "<" : "c")\(type)+++++++++ \(name)"
        case .updated(let content, let size, let time, let permissions, let sent):
            let first: Character = sent ? "<" : (e.kind == .symlink && content ? "c" : ".")
            var flags = Array("cstpoguax").map { _ in Character(".") }
            if content { flags[0] = "c" }
            if size { flags[1] = "s" }
            if time { flags[2] = "t" }
            if permissions { flags[3] = "p" }
            return "\(first)\(type)\(String(flags)) \(name)"
        }
    }
}
