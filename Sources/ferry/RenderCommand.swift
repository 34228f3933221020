import ArgumentParser
import FerryDeploy
import Foundation

/// Where the inventory is: -f, else ./fleet.toml, else ./deployments/fleet.toml.
struct InventoryOption: ParsableArguments {
    @Option(name: .customShort("f"), help: ArgumentHelp("The inventory (default: fleet.toml, else deployments/fleet.toml).", valueName: "fleet.toml"))
    var file: String?

    static let defaultFiles = ["fleet.toml", "deployments/fleet.toml"]

    func load() throws -> Fleet {
        if let file { return try Self.load(file) }
        guard let found = Self.defaultFiles.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw Failure(code: 2, message: "no fleet.toml or deployments/fleet.toml here; give one with -f")
        }
        return try Self.load(found)
    }

    static func load(_ path: String) throws -> Fleet {
        do {
            return try InventoryReader.load(path)
        } catch let error as InventoryError {
            // Every problem of the read, one line each.
            for problem in error.all { printError("ferry: \(problem)") }
            throw ExitCode(2)  // an inventory failure: nothing was contacted
        }
    }

    /// The one host `target` names, for commands that act on one (`unlock`, `config`): a glob or
    /// tag that matches several is a usage error listing them, before any connection.
    static func selectOne(_ fleet: Fleet, _ target: String, command: String) throws -> Fleet.Host {
        let hosts = try select(fleet, [target], skip: [], command: command)
        guard hosts.count == 1 else {
            throw Failure.usage("'\(target)' matches \(hosts.count) hosts (\(hosts.map(\.name).joined(separator: ", "))); \(command) acts on one host: name it", command: command)
        }
        return hosts[0]
    }

    /// The hosts `targets` and `skip` name; an unknown one exits 2 listing hosts and tags (with
    /// `hint` after it), and so does a selection that leaves no host: nothing is contacted.
    static func select(_ fleet: Fleet, _ targets: [String], skip: [String], command: String, hint: String? = nil) throws -> [Fleet.Host] {
        let hosts: [Fleet.Host]
        do {
            hosts = try fleet.select(targets, skip: skip)
        } catch let error as InventoryError {
            printError("ferry: \(error)")
            if let hint { printError(hint) }
            throw ExitCode(ExitStatus.usage)
        }
        guard !hosts.isEmpty else { throw Failure.usage("the selection leaves no host", command: command) }
        return hosts
    }
}

struct Render: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write each host's /var/src/nixos-config tree (the generated configuration.nix and the fleet's Nix files).",
        discussion: "TARGETS are host names, globs over names (web-*) or @tags; none means every host. Nothing is sent anywhere."
    )

    @OptionGroup var inventory: InventoryOption

    @Option(help: ArgumentHelp("Folder to write HOST/ trees into.", valueName: "DIR"))
    var out = "ferry-rendered"

    @Argument(help: ArgumentHelp("Host names, globs or @tags.", valueName: "TARGETS"))
    var targets: [String] = []

    @Option(name: .customLong("skip"), help: ArgumentHelp("Leave out these hosts (repeatable).", valueName: "TARGET"))
    var skip: [String] = []

    func run() throws {
        let fleet = try inventory.load()
        let out = URL(fileURLWithPath: self.out).resolvingSymlinksInPath().standardizedFileURL.path
        func within(_ path: String, _ dir: String) -> Bool { path == dir || path.hasPrefix(dir == "/" ? "/" : dir + "/") }
        let folder = URL(fileURLWithPath: fleet.file).deletingLastPathComponent().resolvingSymlinksInPath().standardizedFileURL.path
        // Writing over the inventory or a source would destroy what the render reads.
        if within(folder, out) {
            throw Failure.usage("--out \(self.out) is the fleet's folder or contains it (\(folder)); name a folder of its own", command: "render")
        }
        for source in fleet.sources {
            let path = URL(fileURLWithPath: source.path).resolvingSymlinksInPath().standardizedFileURL.path
            if within(path, out) || (!source.rendered && within(out, path)) {
                throw Failure.usage("--out \(self.out) overlaps source '\(source.name)' (\(path)); name a folder of its own", command: "render")
            }
        }
        // A file where a folder of --out should be: say so before Foundation says something vaguer.
        var prefix = ""
        for component in out.split(separator: "/") {
            prefix += "/" + component
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: prefix, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw Failure(code: 1, message: "cannot write \(out): \(prefix) is a file, not a folder")
            }
        }
        do {
            for host in try InventoryOption.select(fleet, targets, skip: skip, command: "render") {
                let rendered = try RenderedConfig(host: host, fleet: fleet, skipping: [out])
                do {
                    try rendered.write(to: out + "/" + host.name)
                } catch {
                    throw Failure(code: 1, message: "cannot write \(out)/\(host.name): \(describe(error))")
                }
                print("\(host.name): \(out)/\(host.name) (\(rendered.files.count) files, domain \(fleet.domain(of: host)))")
            }
        } catch let error as InventoryError {
            printError("ferry: \(error)")
            throw ExitCode(2)  // an inventory failure: nothing was contacted
        }
    }
}

/// A file error in plain words (the POSIX reason), not Foundation's sentence about Cocoa.
func describe(_ error: Error) -> String {
    let ns = error as NSError
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if ns.domain == NSCocoaErrorDomain {
        switch ns.code {
        case NSFileWriteNoPermissionError, NSFileReadNoPermissionError: return "permission denied"
        case NSFileWriteOutOfSpaceError: return "no space left on device"
        case NSFileWriteVolumeReadOnlyError: return "read-only file system"
        case NSFileNoSuchFileError, NSFileReadNoSuchFileError: return "no such file or directory"
        case NSFileWriteFileExistsError: return "a file is in the way"
        case NSFileWriteUnknownError: return "the folder or file could not be created"
        default: break
        }
    }
    return ns.localizedDescription
}
