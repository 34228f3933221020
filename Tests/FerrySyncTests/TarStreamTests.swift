import FerrySSH
@testable import FerrySync
@testable import FerryTarget
import FerryXCTestSupport
import Foundation
import XCTest

/// The tar stream as GNU tar reads it, produced through buffers of awkward sizes.
final class TarStreamTests: XCTestCase {
    /// `directories.tar` is made header by header while streaming (before ae4bb40 it was built
    /// whole and copied into the stream: 14 MB of a 40k-file first copy's peak). Its bytes must
    /// be the same archive, and its declared size exact, or tar loses the members after it.
    func testAnArchiveMemberIsStreamedAsTheWholeArchiveWouldBe() throws {
        var rng = SplitMix64(seed: 7)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-tarstream-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("source")
        try Data((0..<1_234).map { UInt8(truncatingIfNeeded: $0) }).write(to: source)

        for round in 0..<20 {
            var entries: [TarHeader] = []
            for i in 0..<rng.below(40) {
                // Short and long names, with and without nanoseconds: one to three blocks each.
                let name: [UInt8] = Array("d\(i)/".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: rng.below(150))
                let nanoseconds: Int64 = rng.below(2) == 0 ? 0 : 123_456_789
                entries.append(TarHeader(name: name, type: .directory, mode: 0o750, size: 0,
                                         mtime: Timestamp(seconds: 1_700_000_000 + Int64(i), nanoseconds: nanoseconds)))
            }
            let small = Array("a small file\n".utf8)
            let stream = TarStream([
                .bytes(header: TarHeader(name: Array("deletions".utf8), type: .file, mode: 0o600, size: Int64(small.count), mtime: .init(seconds: 0, nanoseconds: 0)), contents: small),
                .archive(name: Array("directories.tar".utf8), mtime: .init(seconds: 0, nanoseconds: 0), entries: entries),
                .file(header: TarHeader(name: Array("data/f".utf8), type: .file, mode: 0o644, size: 1_234, mtime: .init(seconds: 0, nanoseconds: 0)),
                      source: Array(source.path.utf8)),
            ])
            var out: [UInt8] = []
            let size = 1 + rng.below(1_500)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
            defer { buffer.deallocate() }
            while case .bytes(let n) = try stream.read(into: buffer) { out += buffer[0..<n] }

            let into = dir.appendingPathComponent("x\(round)")
            try FileManager.default.createDirectory(at: into, withIntermediateDirectories: true)
            let archive = dir.appendingPathComponent("stream.tar")
            try Data(out).write(to: archive)
            let tar = Process()
            tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            tar.arguments = ["tar", "-C", into.path, "-xf", archive.path]
            try tar.run()
            tar.waitUntilExit()
            XCTAssertEqual(tar.terminationStatus, 0, "round \(round): tar reads the stream")
            let expected = entries.flatMap { $0.blocks() } + [UInt8](repeating: 0, count: 1024)
            let got = try [UInt8](Data(contentsOf: into.appendingPathComponent("directories.tar")))
            XCTAssertTrue(got == expected, "round \(round): \(got.count) bytes, expected \(expected.count)")
            XCTAssertEqual(try [UInt8](Data(contentsOf: into.appendingPathComponent("deletions"))), small)
            XCTAssertEqual(try Data(contentsOf: into.appendingPathComponent("data/f")), try Data(contentsOf: source), "the member after the archive is intact")
        }
    }
}
