import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `ferry sync --itemize` must print what `rsync -rlptD -n -i --delete` prints for the same push
/// to the same host (over OpenSSH).
final class ItemizeTests: SyncTestCase {
    func rsyncLines(_ src: String, _ name: String) throws -> [String] {
        let h = try host
        let ssh = "ssh -F none -p \(h.port) -i \(try harness.clientKey(.ed25519)) -o IdentitiesOnly=yes -o BatchMode=yes " +
                  "-o UserKnownHostsFile=\(try harness.knownHostsFile) -o StrictHostKeyChecking=yes"
        let r = try Command.run(["rsync", "-rlptD", "-n", "-i", "--delete", "--modify-window=-1", "--rsync-path=" + (try Command.which("rsync")), "-e", ssh, src + "/", "root@127.0.0.1:/var/src/\(name)/"],
                                environment: ["LC_ALL": "C.UTF-8"])
        XCTAssertEqual(r.status, 0, r.errorOutput)
        return r.output.split(separator: "\n").map(String.init).sorted()
    }

    func ferryLines(_ src: String, _ name: String) throws -> [String] {
        try sync(src, name, dryRun: true).plan.items.map(Itemize.line).sorted()
    }

    func testItemizeMatchesRsync() throws {
        let src = scratch()
        var fixture = TreeFixture(seed: 3)
        for d in ["keep", "gone/deeper", "meta", "swap-dir"] { try fixture.mkdir(src + "/" + d) }
        for f in ["keep/same", "keep/content", "keep/time", "keep/perms", "gone/deeper/x", "gone/y", "meta/f", "swap-file", "swap-dir/z"] {
            try fixture.write(src + "/" + f, size: 100, text: true)
        }
        try fixture.symlink("same", src + "/keep/link")
        try fixture.symlink("../keep/same", src + "/gone/sym")
        try fixture.symlink("same", src + "/keep/touched-link")
        try sync(src, "itemize")
        XCTAssertEqual(try rsyncLines(src, "itemize"), [], "in sync before the changes")

        try fixture.write(src + "/keep/content", size: 150, text: true)
        Bytes.setMtime(Array((src + "/keep/time").utf8), seconds: 1_400_000_000, nanoseconds: 0)
        chmod(src + "/keep/perms", 0o600)
        chmod(src + "/meta", 0o700)
        Bytes.removeTree(Array((src + "/gone").utf8))
        try fixture.mkdir(src + "/new-dir/sub")
        try fixture.write(src + "/new-dir/sub/file", size: 10, text: true)
        try fixture.write(src + "/new file with space", size: 5, text: true)
        for name in [Array("tab\tand\nnewline".utf8), [0x6C, 0x61, 0x74, 0xE9, 0xFF], Array("back\\slash\\#x".utf8), Array("ünï".utf8), [0x7F, 0x01]] {
            try TreeFixture(seed: 0).writeFile(src, name: name, contents: [1])
        }
        try fixture.symlink("../keep/same", src + "/new-link")
        Bytes.removeTree(Array((src + "/keep/link").utf8))
        try fixture.symlink("content", src + "/keep/link")
        Bytes.setMtime(Array((src + "/keep/touched-link").utf8), seconds: 1_300_000_000, nanoseconds: 0)
        _ = mkfifo(src + "/new-fifo", 0o644)

        // One difference on purpose: ferry escapes DEL (DisplayText), which rsync prints raw.
        XCTAssertEqual(try ferryLines(src, "itemize"), try rsyncLines(src, "itemize").map { $0.replacingOccurrences(of: "\u{7F}", with: "\\#177") }.sorted())
    }
}
