import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Sync tests against a real test host, with rsync as the oracle.
class SyncTestCase: HostTestCase {
    func scratch(_ name: String = "src") -> String {
        let dir = NSTemporaryDirectory() + "ferry-sync-\(name)-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    @discardableResult
    func sync(_ source: String, _ name: String, excludes: [String] = [], deleteExcluded: Bool = false, checksum: Bool = false,
              dryRun: Bool = false, force: Bool = false, session: SSHSession? = nil, cache: ListingCache? = nil,
              streams: Int? = nil) throws -> Syncer.Result {
        let session = try session ?? connect()
        var options = Syncer.Options(plan: .init(excludes: ExcludeRules(excludes), deleteExcluded: deleteExcluded, checksum: checksum),
                                     dryRun: dryRun, force: force)
        options.listingCache = cache
        options.streams = streams
        return try Syncer.sync(from: source, to: "/var/src/\(name)", over: session, options: options)
    }

    /// `rsync -rlptDn --delete -c --itemize-changes SRC/ DEST/` over the host's private /var/src: must print nothing.
    func oracle(_ source: String, _ name: String, excludes: [String] = [], deleteExcluded: Bool = false) throws -> String {
        var argv = ["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "--itemize-changes"]
        argv += excludes.map { "--exclude=\($0)" }
        if deleteExcluded { argv.append("--delete-excluded") }
        argv += [source + "/", try host.varSrc + "/\(name)/"]
        let r = try Command.run(argv)
        XCTAssertEqual(r.status, 0, r.errorOutput)
        return r.output
    }

    /// Every regular file under `root` with its contents, by relative path.
    func snapshot(_ root: String) -> [String: Data] {
        var out: [String: Data] = [:]
        let walker = FileManager.default.enumerator(atPath: root)
        while let rel = walker?.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue {
                out[rel] = FileManager.default.contents(atPath: root + "/" + rel)
            }
        }
        return out
    }

    /// The rsync oracle run over ssh, inside the host's mount namespace (for mounts made there).
    func remoteOracle(_ source: String, _ path: String) throws -> String {
        let h = try host
        let ssh = "ssh -F none -p \(h.port) -i \(try harness.clientKey(.ed25519)) -o IdentitiesOnly=yes -o BatchMode=yes " +
                  "-o UserKnownHostsFile=\(try harness.knownHostsFile) -o StrictHostKeyChecking=yes"
        let r = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "--itemize-changes", "--rsync-path=" + (try Command.which("rsync")), "-e", ssh,
                                 source + "/", "root@127.0.0.1:\(path)/"])
        XCTAssertEqual(r.status, 0, r.errorOutput)
        return r.output
    }

    func assertInSync(_ source: String, _ name: String, excludes: [String] = [], deleteExcluded: Bool = false, checksum: Bool = false,
                      _ message: String = "", file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try oracle(source, name, excludes: excludes, deleteExcluded: deleteExcluded), "", "rsync oracle \(message)", file: file, line: line)
        let again = try sync(source, name, excludes: excludes, deleteExcluded: deleteExcluded, checksum: checksum, dryRun: true)
        XCTAssertEqual(again.plan.items.map(Itemize.line), [], "ferry --dry-run \(message)", file: file, line: line)
    }
}
