import FerryXCTestSupport
import Foundation
import XCTest

/// Differential: whatever ShellQuote produces, a real `sh` must read back as the same bytes.
final class ShellQuoteTests: XCTestCase {
    static let hostile: [[UInt8]] = [
        "", " ", "'", "''", "\"", "\\", "$(reboot)", "`id`", "${HOME}", "a b", "-rf", "--", "*", "?", "~",
        "#comment", "a;b", "a&&b", "a|b", ">out", "<in", "\n", "line1\nline2", "\t", "it's", "!bang", "é€",
        "%s", "a=b", "'\"'\"'", "\\'",
    ].map { Array($0.utf8) } + [[0xFF, 0xFE, 0x80], [0x01, 0x1B, 0x7F]]

    /// Seeded random byte strings (no NUL, which no argv can carry).
    static func generated(count: Int, seed: UInt64) -> [[UInt8]] {
        var rng = SplitMix64(seed: seed)
        let alphabet: [UInt8] = Array("'\"\\$`(){}[]*?~!#;&|<> \t\n=%-_./aZ9".utf8) + [0x80, 0xC3, 0xFF, 0x01]
        return (0..<count).map { _ in
            (0..<Int(rng.next() % 12)).map { _ in
                rng.next() % 3 == 0 ? UInt8(1 + rng.next() % 255) : alphabet[Int(rng.next() % UInt64(alphabet.count))]
            }
        }
    }

    func testLocalShellReadsBackEveryArgument() throws {
        let args = Self.hostile + Self.generated(count: 400, seed: 0xFE77)
        let line = Array("printf '%s\\0'".utf8) + [0x20] + ShellQuote.join(args)
        // Non-UTF-8 bytes travel through a script file.
        let file = NSTemporaryDirectory() + "ferry-quote-\(getpid()).sh"
        _ = FileManager.default.createFile(atPath: file, contents: Data(line))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let result = try Command.check(["/bin/sh", file])
        XCTAssertEqual(split(Array(result.stdout)), args)
    }

    func testSafeArgumentsStayBare() {
        XCTAssertEqual(ShellQuote.quote("nixos-rebuild"), "nixos-rebuild")
        XCTAssertEqual(ShellQuote.quote("/var/src/lnbits-src"), "/var/src/lnbits-src")
        XCTAssertEqual(ShellQuote.quote("a b"), "'a b'")
        XCTAssertEqual(ShellQuote.quote("it's"), "'it'\\''s'")
        XCTAssertEqual(ShellQuote.quote(""), "''")
    }

    func split(_ bytes: [UInt8]) -> [[UInt8]] {
        var parts = bytes.split(separator: 0, omittingEmptySubsequences: false).map(Array.init)
        if parts.last == [] { parts.removeLast() }
        return parts
    }
}
