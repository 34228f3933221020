import FerryNix
import FerrySync
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `/var/src/<rendered source>` receives for one host: the fleet's folder (less fleet.toml,
/// `.ferry/`, the render output, other sources inside it and the source's excludes), plus the
/// generated configuration.nix. Modes, mtimes and symlinks are the folder's own; the generated
/// file carries fleet.toml's mtime. Deploys compare it by content, so a same-length edit is sent.
public struct RenderedConfig {
    public static let entryPoint = "configuration.nix"
    /// `ferry render`'s default output folder: never part of a rendered tree.
    public static let defaultOutput = "ferry-rendered"

    public let host: String
    /// The fleet's folder.
    public let root: String
    /// The folder's entries that go (configuration.nix not among them).
    public let scanned: Manifest
    public let configuration: String
    let configurationMtime: Timestamp
    /// Warnings for `.env` files the tree would carry.
    public let warnings: [String]

    /// `skipping`: absolute paths left out besides the fixed ones (a render's output folder).
    public init(host: Fleet.Host, fleet: Fleet, skipping skipped: [String] = []) throws {
        self.host = host.name
        root = URL(fileURLWithPath: fleet.directory).standardizedFileURL.path
        let source = fleet.renderedSource
        // The operator's keys and known_hosts go nowhere, even when they live in the folder.
        var left = [root + "/.ferry", fleet.file, root + "/" + Self.defaultOutput] + skipped + fleet.operatorFiles
        left += fleet.sources.filter { !$0.rendered }.map(\.path)
        let root = self.root
        let inside = left.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            .filter { $0.hasPrefix(root + "/") }.map { Array($0.utf8.dropFirst(root.utf8.count + 1)) }
        // Fixed rules first (the first matching rule decides), then the source's own.
        var rules = ExcludeRules(inside.map { "- /" + Self.escapingWildcards($0) })
        for rule in source?.exclude ?? Fleet.Source.renderedExcludes { try? rules.add(rule) }
        var scanner = LocalScanner(root: root, excludes: rules)
        let all: Manifest
        do { all = try scanner.scan() } catch {
            throw InventoryError(file: fleet.file, key: source.map { "sources.\($0.name)" }, problem: "cannot read the fleet's folder: \(error)")
        }
        // A lone "!" in the source's rules clears the fixed ones: they are enforced here again.
        scanned = Manifest(all.entries.filter { e in
            !inside.contains { e.path == $0 || (e.path.starts(with: $0) && e.path.count > $0.count && e.path[$0.count] == UInt8(ascii: "/")) }
        })
        if let source {
            warnings = try SourceSecrets.check(source, root: root, manifest: scanned, fleet: fleet)
        } else {
            warnings = []
        }
        if scanned[Array(Self.entryPoint.utf8)] != nil {
            throw InventoryError(file: root + "/" + Self.entryPoint, key: nil, problem: "ferry generates \(Self.entryPoint) for each host; remove this file (host.nix is where the configuration goes)")
        }
        do { configuration = try ConfigurationRenderer.render(host.rendererHost, shared: fleet.sharedRelativePath) } catch {
            throw InventoryError(file: fleet.file, key: "hosts.\(host.name).vars", problem: "\(error)")
        }
        var st = stat()
        configurationMtime = stat(fleet.file, &st) == 0 ? Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int64(st.st_mtim.tv_nsec)) : Timestamp(seconds: 0, nanoseconds: 0)
    }

    static func escapingWildcards(_ path: [UInt8]) -> String {
        var out: [UInt8] = []
        for b in path {
            if "*?[\\".utf8.contains(b) { out.append(UInt8(ascii: "\\")) }
            out.append(b)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Relative path → contents of every regular file, configuration.nix included, sorted by path.
    public var files: [(path: String, contents: Data)] {
        var list = scanned.entries.filter { $0.kind == .file }.map { e in
            (e.displayPath, FileManager.default.contents(atPath: root + "/" + e.displayPath) ?? Data())
        }
        list.append((Self.entryPoint, Data(configuration.utf8)))
        return list.sorted { $0.0 < $1.0 }
    }

    /// The tree as a deploy syncs it, without writing it anywhere: the fleet's folder, read in
    /// place, plus the generated file from memory.
    public var tree: (root: String, scanned: LocalScanner.Scanned, generated: [[UInt8]: [UInt8]]) {
        let path = Array(Self.entryPoint.utf8)
        let bytes = Array(configuration.utf8)
        let entry = FileEntry(path: path, kind: .file, mode: 0o644, size: Int64(bytes.count), mtime: configurationMtime)
        return (root, LocalScanner.Scanned(manifest: Manifest(scanned.entries + [entry])), [path: bytes])
    }

    /// Writes the tree to `directory` (modes, mtimes and symlinks kept), replacing what was
    /// there only once the new tree is complete.
    public func write(to directory: String) throws {
        let fm = FileManager.default
        let parent = (directory as NSString).deletingLastPathComponent
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let staging = parent + "/.\((directory as NSString).lastPathComponent).ferry-tmp-\(getpid())"
        try? fm.removeItem(atPath: staging)
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
        func setTime(_ path: String, _ t: Timestamp) throws {
            var times = [timespec(tv_sec: time_t(t.seconds), tv_nsec: Int(t.nanoseconds)),
                         timespec(tv_sec: time_t(t.seconds), tv_nsec: Int(t.nanoseconds))]
            guard utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
        for e in scanned.entries where !e.path.isEmpty {
            let path = staging + "/" + e.displayPath
            switch e.kind {
            case .directory: try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
            case .symlink: try fm.createSymbolicLink(atPath: path, withDestinationPath: String(decoding: e.linkTarget ?? [], as: UTF8.self))
            case .file: try fm.copyItem(atPath: root + "/" + e.displayPath, toPath: path)
            case .fifo: guard mkfifo(path, mode_t(e.mode)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            }
        }
        let entry = staging + "/" + Self.entryPoint
        try Data(configuration.utf8).write(to: URL(fileURLWithPath: entry))
        chmod(entry, 0o644)
        try setTime(entry, configurationMtime)
        // Modes and times last, deepest first, so writing into a directory cannot change its mtime.
        for e in scanned.entries.reversed() {
            let path = e.path.isEmpty ? staging : staging + "/" + e.displayPath
            if e.kind != .symlink { chmod(path, mode_t(e.mode)) }
            try setTime(path, e.mtime)
        }
        if fm.fileExists(atPath: directory) { try fm.removeItem(atPath: directory) }
        try fm.moveItem(atPath: staging, toPath: directory)
    }
}
