import FerryNix
import Foundation

/// What `/var/src/nixos-config` receives for one host: the fleet's folder less fleet.toml,
/// plus the generated configuration.nix.
public struct RenderedConfig {
    public static let entryPoint = "configuration.nix"

    public let host: String
    /// Relative path → contents, sorted by path.
    public let files: [(path: String, contents: Data)]

    public init(host: Fleet.Host, fleet: Fleet, skipping skipped: [String] = []) throws {
        self.host = host.name
        var files: [(String, Data)] = []
        let root = URL(fileURLWithPath: fleet.directory).standardizedFileURL.path
        let fileName = (fleet.file as NSString).lastPathComponent
        guard let walker = FileManager.default.enumerator(atPath: root) else {
            throw InventoryError(file: fleet.file, key: nil, problem: "cannot read the folder \(root)")
        }
        while let relative = walker.nextObject() as? String {
            let full = root + "/" + relative
            if skipped.contains(where: { full == $0 || full.hasPrefix($0 + "/") }) { walker.skipDescendants(); continue }
            if relative == fileName { continue }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue else { continue }
            if relative == RenderedConfig.entryPoint {
                throw InventoryError(file: full, key: nil, problem: "ferry generates \(RenderedConfig.entryPoint) for each host; remove this file (host.nix is where the configuration goes)")
            }
            guard let data = FileManager.default.contents(atPath: full) else {
                throw InventoryError(file: full, key: nil, problem: "cannot read the file")
            }
            files.append((relative, data))
        }
        let entry: String
        do { entry = try ConfigurationRenderer.render(host.rendererHost) } catch {
            throw InventoryError(file: fleet.file, key: "hosts.\(host.name).vars", problem: "\(error)")
        }
        files.append((RenderedConfig.entryPoint, Data(entry.utf8)))
        self.files = files.sorted { $0.0 < $1.0 }
    }

    public var configuration: String {
        String(decoding: files.first { $0.path == RenderedConfig.entryPoint }!.contents, as: UTF8.self)
    }

    /// Writes the tree to `directory`, replacing what was there only once the new tree is complete.
    public func write(to directory: String) throws {
        let fm = FileManager.default
        let parent = (directory as NSString).deletingLastPathComponent
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let staging = parent + "/.\((directory as NSString).lastPathComponent).ferry-tmp-\(getpid())"
        try? fm.removeItem(atPath: staging)
        for file in files {
            let path = staging + "/" + file.path
            try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try file.contents.write(to: URL(fileURLWithPath: path))
        }
        if fm.fileExists(atPath: directory) { try fm.removeItem(atPath: directory) }
        try fm.moveItem(atPath: staging, toPath: directory)
    }
}
