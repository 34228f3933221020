import FerryXCTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `ferry diff` against `rsync -rlptDn --delete -c -i` over seeded random mutation sets: the same
/// paths with the same kinds of change, names escaped alike, raw bytes round-tripping through
/// -z and --json, the target untouched (contents, modes, mtimes, ctimes, /var/src/.ferry).
extension DeployCommandTests {
    static let diffSeed: UInt64 = ProcessInfo.processInfo.environment["FERRY_DIFF_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0xD1FF_0012

    /// rsync's view: escaped path → ferry's kind letter. `existed` tells a replaced entry (t) from a new one (+).
    func rsyncKinds(_ work: Work) throws -> [String: String] {
        let r = try Command.run(["rsync", "-rlptDn", "--delete", "-c", "--modify-window=-1", "--itemize-changes"]
                                + Self.excludes.map { "--exclude=\($0)" } + [work.lnbits + "/", try host.varSrc + "/lnbits-src/"],
                                environment: ["LC_ALL": "C"])
        XCTAssertEqual(r.status, 0, r.errorOutput)
        var kinds: [String: String] = [:]
        for line in r.output.split(separator: "\n").map(String.init) {
            let flags = String(line.prefix(11))
            var path = String(line.dropFirst(12))
            if let arrow = path.range(of: " -> ") { path = String(path[..<arrow.lowerBound]) }
            if path.hasSuffix("/") { path.removeLast() }
            if path.isEmpty { path = "." }
            let chars = Array(flags)
            let kind: String
            if flags.hasPrefix("*deleting") {
                kind = "-"
            } else if flags.dropFirst(2).allSatisfy({ $0 == "+" }) {
                let existed = Bytes.stat(Bytes.path(try host.varSrc + "/lnbits-src", Self.unescape(path))) != nil
                kind = existed || kinds[path] == "-" ? "t" : "+"
            } else if chars[1] == "L" {
                kind = chars[2] == "c" ? "t" : "m"
            } else if chars[2] == "c" || chars[3] == "s" {
                kind = "~"
            } else if chars[5] == "p" {
                kind = "p"
            } else {
                kind = "m"
            }
            // rsync may list a replaced entry's deletion and its creation: one type change.
            if let earlier = kinds[path], earlier != kind { kinds[path] = "t" } else { kinds[path] = kind }
        }
        return kinds
    }

    /// rsync's `\#ooo` escapes undone (the path as a file name).
    static func unescape(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        let u = Array(text.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 4 < u.count, u[i + 1] == UInt8(ascii: "#"), let n = UInt8(String(decoding: u[(i + 2)..<(i + 5)], as: UTF8.self), radix: 8) {
                bytes.append(n)
                i += 5
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return bytes
    }

    func testDiffAgreesWithRsyncOverSeededMutations() throws {
        print("diff differential seed: \(String(Self.diffSeed, radix: 16)) (set FERRY_DIFF_SEED to replay another)")
        let work = try makeWork()
        XCTAssertEqual(try deploy(work).status, 0)
        var rng = FixtureRandom(seed: Self.diffSeed)
        var differed = 0
        var kindsSeen = Set<String>()
        for round in 0..<12 {
            var log: [String] = []
            // Inside lnbits/: the required top-level files stay, so every round passes the local check.
            for _ in 0..<(1 + rng.below(8)) { log.append(TreeMutation.mutate(work.lnbits + "/lnbits", &rng, allowSameSizeEdits: true)) }
            let context = "round \(round): \(log.joined(separator: "; "))"
            let before = try host.varSrcSnapshot()

            let expected = try rsyncKinds(work)
            let text = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--checksum", "--source", "lnbits-src"])
            XCTAssertEqual(text.status, 0, context + text.stderr)
            var shown: [String: String] = [:]
            for line in text.stdout.split(separator: "\n") where line.hasPrefix("  ") {
                shown[String(line.dropFirst(4))] = String(line.dropFirst(2).prefix(1))
            }
            XCTAssertEqual(shown, expected, context)
            kindsSeen.formUnion(shown.values)

            // Raw names: -z and --json give the same bytes, and the text's escapes are rsync's.
            let z = try Command.run([FerryBinary.path(), "diff", "-f", work.fleetFile, "alpha", "--checksum", "--source", "lnbits-src", "--name-only", "-z"])
            let raw = Set(z.stdout.split(separator: 0, omittingEmptySubsequences: true).map { Array($0) })
            let json = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--checksum", "--source", "lnbits-src", "--json"])
            let object = try XCTUnwrap(json.stdout.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }.first { $0["type"] as? String == "diff" })
            let fromJSON = Set(((object["entries"] as? [[String: Any]]) ?? []).map { e -> [UInt8] in
                if let b64 = e["path_b64"] as? String { return Array(Data(base64Encoded: b64) ?? Data()) }
                return Array(((e["path"] as? String) ?? "").utf8)
            })
            XCTAssertEqual(raw, fromJSON, context)
            XCTAssertEqual(raw.count, expected.count, context)
            try validateAgainstSchema(json.stdout, context)

            // --exit-code, then nothing on the target changed.
            let gate = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--checksum", "--source", "lnbits-src", "--exit-code"])
            XCTAssertEqual(gate.status, expected.isEmpty ? 0 : 1, context)
            XCTAssertEqual(try host.varSrcSnapshot(), before, "the diff changed the target: " + context)
            if !expected.isEmpty { differed += 1 }

            // Every other round the host catches up; then the diff is empty.
            if round % 2 == 1 {
                XCTAssertEqual(try deploy(work, ["--sync-only", "--checksum"]).status, 0, context)  // same-size edits with the old mtime need -c
                let after = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--checksum", "--exit-code"])
                XCTAssertEqual(after.status, 0, context + "\n" + after.stdout + after.stderr)
            }
            if testRun?.failureCount ?? 0 > 0 { break }
        }
        XCTAssertGreaterThan(differed, 8, "most rounds changed something")
        XCTAssertTrue(kindsSeen.isSuperset(of: ["+", "~", "-", "m", "p", "t"]), "every kind came up: \(kindsSeen)")
    }

    func validateAgainstSchema(_ lines: String, _ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let check = "import json,sys,jsonschema\nv=jsonschema.Draft7Validator(json.load(open(sys.argv[1])))\nbad=[e.message for l in sys.stdin for e in v.iter_errors(json.loads(l))]\nprint(bad[:3])\nsys.exit(1 if bad else 0)"
        let r = try FerryBinary.run(executable: try Command.which("python3"), ["-c", check, Self.repository + "/docs/events.schema.json"], input: lines)
        XCTAssertEqual(r.status, 0, "\(context): \(r.stdout) \(r.stderr)", file: file, line: line)
    }
}

extension DeployCommandTests {
    /// --stat, --patch with its cap and binary files, deploy --dry-run's command line, and the
    /// config diff equal to `diff -u --label` of the host's rendered tree and the new one.
    func testDiffFormatsAndDeployDryRun() throws {
        let work = try makeWork()
        let h = try host
        XCTAssertEqual(try deploy(work).status, 0)
        let readme = work.lnbits + "/README.md"
        try (String(contentsOfFile: readme, encoding: .utf8) + "one more line\n").write(toFile: readme, atomically: true, encoding: .utf8)
        try Data([0x00, 0x01, 0x02, 0xFF]).write(to: URL(fileURLWithPath: work.lnbits + "/lnbits/blob.bin"))
        try FileManager.default.removeItem(atPath: work.lnbits + "/tests/test_1.py")
        try writeFleet(work, lnbitsPort: 5002)
        let before = try host.varSrcSnapshot()

        let stat = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--stat"])
        XCTAssertEqual(stat.status, 0, stat.stderr)
        let size = try FileManager.default.attributesOfItem(atPath: readme)[.size] as? Int ?? 0
        // Columns padded to the longest name; directories' new mtimes count as "mtime only".
        let squeezed = stat.stdout.replacingOccurrences(of: " +", with: " ", options: .regularExpression)
        for line in ["lnbits-src | 1 (1 mtime only), 0 B", "lnbits-src/README.md | 1 (1 changed), \(String(format: "%.1f KiB", Double(size) / 1024))",
                     "lnbits-src/lnbits | 2 (1 added, 1 mtime only), 4 B", "lnbits-src/tests | 2 (1 deleted, 1 mtime only), 0 B",
                     "nixos-config/configuration.nix | 1 (1 changed), ", "8 changes (1 added, 2 changed, 1 deleted, 4 mtime only), "] {
            XCTAssertTrue(squeezed.contains(line), "\(line): \(stat.stdout)")
        }

        let patch = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--patch"])
        for line in ["--- a/README.md", "+++ b/README.md", "Binary files a/lnbits/blob.bin and b/lnbits/blob.bin differ",
                     "--- a/tests/test_1.py", "+++ b/tests/test_1.py"] {
            XCTAssertTrue(patch.stdout.contains(line + "\n"), "\(line): \(patch.stdout)")
        }
        XCTAssertTrue(patch.stdout.contains("one more line\n"), patch.stdout)
        let capped = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--patch", "--max-patch-bytes", "0"])
        XCTAssertTrue(capped.stdout.contains("(--max-patch-bytes 0: no patch for 3 more: lnbits-src/README.md, lnbits-src/lnbits/blob.bin, lnbits-src/tests/test_1.py)"), capped.stdout)

        // The config diff is diff -u --label of the two rendered trees, file by file.
        let out = work.root + "/render-out"
        XCTAssertEqual(try FerryBinary.run(["render", "-f", work.fleetFile, "--out", out, "alpha"]).status, 0)
        var expected = ""
        let old = h.varSrc + "/nixos-config", new = out + "/alpha"
        let names = Set((FileManager.default.subpaths(atPath: old) ?? []) + (FileManager.default.subpaths(atPath: new) ?? [])).sorted()
        for name in names {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: new + "/" + name, isDirectory: &isDir), isDir.boolValue { continue }
            if FileManager.default.fileExists(atPath: old + "/" + name, isDirectory: &isDir), isDir.boolValue { continue }
            let a = FileManager.default.fileExists(atPath: old + "/" + name) ? old + "/" + name : "/dev/null"
            let b = FileManager.default.fileExists(atPath: new + "/" + name) ? new + "/" + name : "/dev/null"
            expected += try Command.run(["diff", "-u", "--label", "a/" + name, "--label", "b/" + name, a, b]).output
        }
        let json = try FerryBinary.run(["diff", "-f", work.fleetFile, "alpha", "--json"])
        let object = try XCTUnwrap(json.stdout.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }.first)
        XCTAssertFalse(expected.isEmpty)
        XCTAssertEqual(object["config_diff"] as? String, expected)
        try validateAgainstSchema(json.stdout, "diff --json")
        // A mutated line is rejected by the schema.
        let mutated = json.stdout.replacingOccurrences(of: "\"kind\":\"changed\"", with: "\"kind\":\"edited\"")
        let check = "import json,sys,jsonschema\nv=jsonschema.Draft7Validator(json.load(open(sys.argv[1])))\nsys.exit(1 if any(list(v.iter_errors(json.loads(l))) for l in sys.stdin) else 0)"
        XCTAssertEqual(try FerryBinary.run(executable: try Command.which("python3"), ["-c", check, Self.repository + "/docs/events.schema.json"], input: mutated).status, 1)

        let dry = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "--dry-run", "--op", "boot", "--", "--show-trace"])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("  ~ README.md\n") && dry.stdout.contains("+      lnbitsPort = 5002;\n"), dry.stdout)
        XCTAssertTrue(dry.stdout.contains("would run: /run/current-system/sw/bin/nixos-rebuild boot --no-flake -I 'nixos-config=/var/src/nixos-config/configuration.nix' -I /var/src --option extra-experimental-features 'nix-command flakes' --show-trace\n"), dry.stdout)
        let dryJSON = try FerryBinary.run(["deploy", "-f", work.fleetFile, "alpha", "--dry-run", "--json"])
        try validateAgainstSchema(dryJSON.stdout, "deploy --dry-run --json")
        XCTAssertEqual(try host.varSrcSnapshot(), before, "no format touched the target")
        XCTAssertEqual(h.standInCalls().count, 1, "only the first deploy rebuilt")
    }
}
