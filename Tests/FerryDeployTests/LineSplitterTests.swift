import FerryDeploy
import FerryXCTestSupport
import XCTest

final class LineSplitterTests: XCTestCase {
    private func split(_ bytes: [UInt8], chunks sizes: inout FixtureRandom) -> (lines: [[UInt8]], rest: [UInt8]) {
        var splitter = LineSplitter()
        var lines: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let n = min(bytes.count - i, 1 + sizes.below(70_000))
            bytes[i..<(i + n)].withUnsafeBytes { splitter.feed($0) { lines.append($0) } }
            i += n
        }
        var rest: [UInt8] = []
        splitter.flush { rest = $0 }
        return (lines, rest)
    }

    /// Against a plain split, over random bytes cut into random chunks: every line whole and in
    /// order, a line over `longestLine` in pieces of that size.
    func testLinesMatchAPlainSplitWhateverTheChunks() {
        var rng = FixtureRandom(seed: 5)
        for round in 0..<20 {
            var bytes: [UInt8] = []
            for _ in 0..<rng.below(40) {
                let long = rng.below(12) == 0
                bytes += [UInt8](repeating: UInt8(ascii: "a") + UInt8(rng.below(26)), count: long ? LineSplitter.longestLine + rng.below(2 * LineSplitter.longestLine) : rng.below(300))
                if rng.below(10) != 0 { bytes.append(UInt8(ascii: "\n")) }
            }
            // The plain split: on newlines, then each line over the limit cut in pieces.
            var segments = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
            if bytes.last == UInt8(ascii: "\n") || bytes.isEmpty { segments.removeLast() }
            let terminated = bytes.last == UInt8(ascii: "\n") || bytes.isEmpty
            var expected: [[UInt8]] = []
            var current: [UInt8] = []
            for (k, segment) in segments.enumerated() {
                var piece = segment[...]
                while piece.count >= LineSplitter.longestLine {
                    expected.append(Array(piece.prefix(LineSplitter.longestLine)))
                    piece = piece.dropFirst(LineSplitter.longestLine)
                }
                if k < segments.count - 1 || terminated { expected.append(Array(piece)) } else { current = Array(piece) }
            }
            let (lines, rest) = split(bytes, chunks: &rng)
            XCTAssertEqual(lines.count, expected.count, "round \(round)")
            XCTAssertTrue(lines == expected, "round \(round)")
            XCTAssertEqual(rest, current, "round \(round)")
        }
    }

    /// A target printing without newlines: before 57517f8 the splitter kept it all (16 MB here)
    /// and searched it again with every chunk; `ferry exec HOST -- cat /dev/zero` then spun on
    /// the CPU and did not notice Ctrl-C.
    func testOutputWithoutNewlinesComesInBoundedPieces() {
        var rng = FixtureRandom(seed: 9)
        let (lines, rest) = split([UInt8](repeating: 0, count: 16 << 20), chunks: &rng)
        XCTAssertEqual(lines.count, 16)
        XCTAssertTrue(lines.allSatisfy { $0.count == LineSplitter.longestLine })
        XCTAssertTrue(rest.isEmpty)
    }
}
