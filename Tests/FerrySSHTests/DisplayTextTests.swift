import FerrySSH
import FerryXCTestSupport
import Foundation
import XCTest

/// Differential: DisplayText against Python's strict UTF-8 decoder over seeded byte strings rich
/// in controls, C1 sequences, truncated, overlong and surrogate forms.
final class DisplayTextTests: XCTestCase {
    static let oracle = ##"""
    import sys
    out = []
    for line in sys.stdin.buffer.read().split(b"\n")[:-1]:
        data = bytes.fromhex(line.decode())
        s = ""
        for ch in data.decode("utf-8", "surrogateescape"):
            c = ord(ch)
            if 0xDC80 <= c <= 0xDCFF:
                s += "\\#%03o" % (c - 0xDC00)
            elif (c < 0x20 and c != 9) or c == 0x7F or 0x80 <= c < 0xA0:
                s += "".join("\\#%03o" % b for b in ch.encode())
            else:
                s += ch
        out.append(s.encode().hex())
    sys.stdout.write("\n".join(out) + "\n")
    """##

    func testAgreesWithPythonsDecoderOnGeneratedBytes() throws {
        let python: String
        do { python = try Command.which("python3") } catch {
            if ProcessInfo.processInfo.environment["CI"] == "true" { throw error }
            throw XCTSkip("\(error)")
        }
        var rng = SplitMix64(seed: 0xD15C)
        let pieces: [[UInt8]] = [[0xC2, 0x9B], [0xC2, 0x9D], [0xC2, 0x9C], [0xC2, 0x80], [0xC2, 0x9F], [0xC2, 0xA0], Array("…".utf8), Array("é".utf8),
                                 Array("𝄞".utf8), [0xE2, 0x80], [0xF0, 0x9F], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                                 [0xF8], [0xFF], [0x80], [0x1B], [0x0A], [0x09], [0x0D], [0x7F], [0x00], Array("a\\#012".utf8), Array("x".utf8)]
        var cases: [[UInt8]] = pieces
        for _ in 0..<3000 {
            cases.append((0..<Int(rng.next() % 10)).flatMap { _ in
                rng.next() % 4 == 0 ? [UInt8(truncatingIfNeeded: rng.next())] : pieces[Int(rng.next() % UInt64(pieces.count))]
            })
        }
        let input = cases.map { $0.map { String(format: "%02x", $0) }.joined() + "\n" }.joined()
        let r = try Command.check([python, "-c", Self.oracle], input: Data(input.utf8))
        let expected = r.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { hex -> String in
            var bytes: [UInt8] = []
            var i = hex.startIndex
            while i < hex.endIndex { let j = hex.index(i, offsetBy: 2); bytes.append(UInt8(hex[i..<j], radix: 16)!); i = j }
            return String(decoding: bytes, as: UTF8.self)
        }
        XCTAssertEqual(expected.count, cases.count)
        for (bytes, want) in zip(cases, expected) {
            XCTAssertEqual(DisplayText.escape(bytes), want, "\(bytes)")
            if let text = String(validating: bytes, as: UTF8.self), !bytes.contains(0) {
                XCTAssertEqual(DisplayText.escape(text), want, "String form of \(bytes)")
            }
        }
    }

    func testOneFormForC1AndNothingElseChanges() {
        XCTAssertEqual(DisplayText.escape(Array("\u{9B}31m".utf8)), "\\#302\\#23331m")
        XCTAssertEqual(DisplayText.escape("\u{9D}0;T\u{9C}"), "\\#302\\#2350;T\\#302\\#234")
        XCTAssertEqual(DisplayText.escape("building… ünï\ttab"), "building… ünï\ttab")
        XCTAssertEqual(DisplayText.escape("two\nlines"), "two\\#012lines")
    }
}
