import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest

/// The exclude matcher against rsync itself: for each pattern set, the entries ferry's scanner keeps
/// must be the entries `rsync -r --exclude …` would send.
final class ExcludeRulesTests: XCTestCase {
    static let patternSets: [[String]] = [
        ["*.pyc"], ["__pycache__/"], ["__pycache__"], ["/data/"], ["data/"], ["data"], [".env"], ["/.env"],
        [".git", ".env", "data/", ".venv/", "node_modules/", "__pycache__/", "*.pyc"],
        ["lnbits/static/*"], ["static/*.js"], ["**/vendor"], ["lnbits/**/templates"], ["*/templates/"], ["a?c"],
        ["[ab]*"], ["[!a]*"], ["*.min.js"], ["lnbits/static/***"], ["/lnbits/core/"], ["core/*.py"], ["**.py"],
        ["*"], ["deep/**/x"], ["x/"], ["*/"], ["\\*star"], ["sub/data/file"], ["node_modules/***"],
        // POSIX classes, rule prefixes and "!" (issue 7.13).
        ["[[:upper:]]*"], ["*[[:digit:]]*"], ["[[:alpha:]][[:punct:]]c"], ["[![:lower:]]*"], ["*.[[:alnum:]][[:alnum:]]"],
        ["+ app.js", "*.js"], ["- *.pyc", "+ lnbits/", "!", "*.md"], ["+ core/", "+ lnbits/", "- lnbits/*"],
        ["- data", "+ *.sqlite"], ["+ *", "*.pyc"], ["- README.md"],
    ]

    func testMatchesRsync() throws {
        _ = try Command.which("rsync")
        let root = NSTemporaryDirectory() + "ferry-ex-\(UUID().uuidString)"
        let empty = root + "-empty"
        defer { for p in [root, empty] { try? FileManager.default.removeItem(atPath: p) } }
        var fixture = TreeFixture(seed: 5)
        for d in ["lnbits/core/templates", "lnbits/static/vendor", "lnbits/static/js", "data", "sub/data", "deep/a/b/x", "x",
                  "__pycache__", "lnbits/__pycache__", ".git/objects", ".venv/lib", "node_modules/pkg", "abc", "a-c"] {
            try fixture.mkdir(root + "/" + d)
        }
        for f in ["lnbits/core/app.py", "lnbits/core/app.pyc", "lnbits/core/templates/index.html", "lnbits/static/vendor/v.min.js",
                  "lnbits/static/js/app.js", "lnbits/static/js/app.min.js", "data/db.sqlite", "sub/data/file", "deep/a/b/x/y",
                  "deep/x", ".env", "sub/.env", "__pycache__/m.pyc", "lnbits/__pycache__/m.pyc", ".git/HEAD", ".venv/lib/site.py",
                  "node_modules/pkg/index.js", "abc/file", "axc", "*star", "bfile", "x/inner", "README.md", "flake.nix",
                  "Makefile", "lnbits/core/v2.py", "a-c/file", "lnbits/static/js/x.ts"] {
            try fixture.write(root + "/" + f, text: f)
        }
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        var disagreements: [String] = []
        for patterns in Self.patternSets {
            let r = try Command.check(["rsync", "-rn", "--out-format=%n"] + patterns.map { "--exclude=\($0)" } + [root + "/", empty + "/"])
            let rsync = Set(r.output.split(separator: "\n").map(String.init).filter { $0 != "./" })
            var scanner = LocalScanner(root: root, excludes: try ExcludeRules(validating: patterns))
            let ferry = Set(try scanner.scan().entries.filter { !$0.path.isEmpty }.map { $0.displayPath + ($0.kind == .directory ? "/" : "") })
            if rsync != ferry {
                disagreements.append("\(patterns): only rsync sends \(rsync.subtracting(ferry).sorted()), only ferry sends \(ferry.subtracting(rsync).sorted())")
            }
        }
        XCTAssertEqual(disagreements, [], "\n" + disagreements.joined(separator: "\n"))
    }

    func testExcludeFromFile() throws {
        var rules = ExcludeRules()
        try rules.add(fileContents: Array("# comment\n; also comment\n\n*.pyc\r\n/data/\n".utf8))
        XCTAssertTrue(rules.excludes(Array("a/b.pyc".utf8), isDirectory: false))
        XCTAssertTrue(rules.excludes(Array("data/x".utf8), isDirectory: false))
        XCTAssertFalse(rules.excludes(Array("sub/data/x".utf8), isDirectory: false))
        XCTAssertFalse(rules.excludes(Array("# comment".utf8), isDirectory: false))
    }

    /// rsync reads "+ "/"- " prefixes and "!" in --exclude-from files too: same tree, same result.
    func testExcludeFromFileMatchesRsync() throws {
        let root = NSTemporaryDirectory() + "ferry-exf-\(UUID().uuidString)"
        let empty = root + "-empty", file = root + ".rules"
        defer { for p in [root, empty, file] { try? FileManager.default.removeItem(atPath: p) } }
        var fixture = TreeFixture(seed: 6)
        for d in ["keep", "logs", "src"] { try fixture.mkdir(root + "/" + d) }
        for f in ["keep/a.log", "logs/b.log", "src/c.py", "src/d.pyc", "e.log", "Upper.txt"] { try fixture.write(root + "/" + f, text: f) }
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try "# rules\n+ keep/a.log\n- *.log\n*.pyc\n!\n- [[:upper:]]*\n+ src/\n- *.pyc\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try Command.check(["rsync", "-rn", "--out-format=%n", "--exclude-from=\(file)", root + "/", empty + "/"])
        let rsync = Set(r.output.split(separator: "\n").map(String.init).filter { $0 != "./" })
        var rules = ExcludeRules()
        try rules.add(fileContents: Array(try Data(contentsOf: URL(fileURLWithPath: file))))
        var scanner = LocalScanner(root: root, excludes: rules)
        let ferry = Set(try scanner.scan().entries.filter { !$0.path.isEmpty }.map { $0.displayPath + ($0.kind == .directory ? "/" : "") })
        XCTAssertEqual(ferry, rsync)
    }

    /// Many stars against a long name end quickly (rsync's abort rule), not in exponential time.
    func testManyStarsStayFast() throws {
        let rules = try ExcludeRules(validating: ["*a*a*a*a*a*a*a*a*a*a*b", "**a**a**a**a**a**a**b/"])
        let name = Array(String(repeating: "a", count: 250).utf8)
        let start = Date()
        XCTAssertFalse(rules.excludes(name, isDirectory: false))
        XCTAssertFalse(rules.excludes(Array(String(repeating: "a/", count: 100).utf8) + [UInt8(ascii: "c")], isDirectory: true))
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
    }

    func testUnknownCharacterClassIsRefused() {
        XCTAssertThrowsError(try ExcludeRules(validating: ["[[:bogus:]]"])) { error in
            XCTAssertTrue("\(error)".contains("unknown character class [:bogus:]"), "\(error)")
        }
    }
}
