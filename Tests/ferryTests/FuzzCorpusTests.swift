import Foundation
import XCTest

/// Every committed fuzz corpus file and crash reproducer (Tests/Fuzz) replayed through its
/// target in an ordinary build: none may crash.
final class FuzzCorpusTests: XCTestCase {
    static let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz").path

    func testCorporaAndCrashReproducersReplayCleanly() throws {
        var replayed = 0
        for kind in ["corpus", "crashes"] {
            let root = Self.fuzz + "/" + kind
            for target in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
                let files = ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + target)) ?? []).map { root + "/" + target + "/" + $0 }
                guard !files.isEmpty else { continue }
                let r = try FerryBinary.run(executable: FerryBinary.path("ferry-fuzz"), [target] + files)
                XCTAssertEqual(r.status, 0, "\(kind)/\(target): \(r.stderr)")
                replayed += files.count
            }
        }
        XCTAssertGreaterThan(replayed, 6)
    }
}
