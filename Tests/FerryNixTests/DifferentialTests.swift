import FerryNix
import FerryXCTestSupport
import Foundation
import XCTest

/// ferry's reader and evaluator against nix-instantiate 2.8, case by case.
final class DifferentialTests: XCTestCase {
    /// Hand-written cases: every construct ferry claims. Both must agree on the JSON, or both fail.
    static let corpus: [String] = [
        // numbers and arithmetic, Nix precedences
        "1 + 2 * 3 - 4 / 2", "-7 / 2", "7 / -2", "2 - -3", "9223372036854775807 + 1", "1.5 + 2", "0.1 + 0.2",
        "[ 2.0 123456789.123 1.0e20 1.0e-7 ]", "1 / 0", "1 - 2 - 3", "6/3", "6 / 3",
        // comparisons and logic
        "[ (1 < 2) (2 <= 2) (3 > 4) (\"a\" < \"b\") ([1 2] < [1 3]) (1 == 1.0) ({ a = 1; } == { a = 1; }) ]",
        "true && false || true", "!true || true", "false -> abort \"lazy\"", "!(1 == 2)", "(x: x) == (x: x)",
        "1 < \"a\"",
        // strings
        #""a${"b"}c""#, #""tab\there\nnew \"q\" \\ \$ $$ $${x}""#, #""${toString 42}""#, #""${1}""#,
        "''\n  a\n    b\n  c\n''", "''  x\n  y''", "''\n  ''${x} '''quote''' ''\\n\n  ''", "''\n\n    a\n\n  b\n  ''",
        "''\n  a ${\"x\"}\n   b\n''", "\"multi\nline\"",
        // let, rec, inherit, with
        "let a = 1; b = a + 1; in [ a b ]", "let x = 1; in let x = 2; y = x; in y", "rec { a = 1; b = a + 1; c = b * 2; }",
        "let a = 1; in { inherit a; b = { inherit a; }; }", "let s = { x = 1; y = 2; }; in { inherit (s) x y; }",
        "let x = 3; in with { x = 4; y = 5; }; x + y", "with { a = 1; }; with { a = 2; }; a", "let { x = 1; body = x + 1; }",
        "let x = x; in x", "rec { a = b; b = a; }.a",
        // attribute sets
        "{ a.b.c = 1; a.b.d = 2; a.e = 3; }", "{ a.b = 1; a = { c = 2; }; }", "{ \"a b\" = 1; \"if\" = 2; ${\"dyn\" + \"amic\"} = 3; ${null} = 4; }",
        "{ a = 1; a = 2; }", "{ a = 1; } // { b = 2; } // { a = 3; }", "({ a = { b = 1; }; }).a.b", "{ a = 1; }.b or 7",
        "{ a = 1; } ? a", "{ a = { b = 1; }; } ? a.b", "let s = { a = 1; }; n = \"a\"; in [ s.${n} (s ? ${n}) s.\"a\" ]",
        "{ a = 1; }.b", "[ 1 2 ] ++ [ 3 ] ++ [ ]",
        // functions
        "(x: y: x - y) 10 3", "({ a, b ? a * 2, ... }@args: [ a b (args.c or 0) ]) { a = 1; c = 3; }",
        "(args@{ a }: args) { a = 1; }", "({ a }: a) { a = 1; b = 2; }", "({ a }: a) { }", "(x: x.y) { y = 1; }",
        "let f = n: if n == 0 then 1 else n * f (n - 1); in f 10", "builtins.functionArgs ({ a, b ? 1 }: a)",
        "{ __functor = self: x: x + self.n; n = 10; } 5",
        // if, assert, errors
        "if 1 == 1 then \"yes\" else \"no\"", "assert 1 == 1; 2", "assert 1 == 2; 2", "throw \"boom\"", "abort \"no\"",
        "if 1 then 2 else 3", "undefinedVariable", "1 + \"a\"", "\"a\" + 1",
        // builtins
        "builtins.map (x: x * 2) [ 1 2 3 ]", "builtins.filter (x: x > 1) [ 1 2 3 ]", "builtins.attrNames { b = 1; a = 2; \"B\" = 3; }",
        "builtins.attrValues { b = 1; a = 2; }", "[ (builtins.hasAttr \"a\" { a = 1; }) (builtins.getAttr \"a\" { a = 1; }) ]",
        "builtins.listToAttrs [ { name = \"a\"; value = 1; } { name = \"a\"; value = 2; } { name = \"b\"; value = 3; } ]",
        "[ (builtins.length [ 1 2 ]) (builtins.elem 2 [ 1 2 ]) (builtins.head [ 1 2 ]) (builtins.tail [ 1 2 ]) ]", "builtins.head [ ]",
        "builtins.concatLists [ [ 1 ] [ ] [ 2 3 ] ]", "builtins.concatStringsSep \", \" [ \"a\" \"b\" \"c\" ]",
        "builtins.replaceStrings [ \"a\" \"b\" ] [ \"b\" \"a\" ] \"aabbab\"", "builtins.replaceStrings [ \"\" ] [ \"-\" ] \"abc\"",
        "[ (builtins.substring 1 3 \"hello\") (builtins.substring 3 100 \"hello\") (builtins.substring 9 1 \"hello\") (builtins.substring 1 (-1) \"hello\") ]",
        "[ (builtins.stringLength \"héllo\") (builtins.stringLength \"\") ]",
        "map (f: f null) [ builtins.isString builtins.isAttrs builtins.isList builtins.isInt builtins.isFloat builtins.isBool builtins.isFunction builtins.isNull builtins.isPath ]",
        "map builtins.typeOf [ 1 1.0 \"s\" true null [ ] { } (x: x) ./. ]",
        "builtins.toJSON { b = [ 1 \"x\\n\" null true 2.5 ]; a = { }; }", "builtins.toJSON (x: x)",
        "[ (toString 1) (toString 1.5) (toString true) (toString false) (toString null) (toString [ 1 [ 2 ] null \"a\" ]) ]",
        "builtins.seq (throw \"forced\") 1", "builtins.seq [ (throw \"lazy\") ] 1", "builtins.deepSeq [ (throw \"deep\") ] 1",
        "builtins.trace \"msg\" 1", "builtins.foldl' (a: b: a + b) 0 [ 1 2 3 ]", "builtins.genList (i: i * i) 5",
        "builtins.sort (a: b: a < b) [ 3 1 2 ]", "builtins.tryEval (throw \"x\")", "builtins.tryEval 1",
        "builtins.removeAttrs { a = 1; b = 2; } [ \"a\" \"z\" ]", "builtins.mapAttrs (n: v: n + v) { a = \"1\"; }",
        "builtins.catAttrs \"a\" [ { a = 1; } { } { a = 2; } ]", "builtins.intersectAttrs { a = 0; } { a = 1; b = 2; }",
        "[ (builtins.add 1 2) (builtins.sub 1 2) (builtins.mul 2 3) (builtins.div 7 2) (builtins.lessThan 1 2) ]",
        "[ (builtins.bitAnd 12 10) (builtins.bitOr 12 10) (builtins.bitXor 12 10) ]", "builtins.elemAt [ 1 2 ] 5",
        "[ (builtins.any (x: x > 2) [ 1 3 ]) (builtins.all (x: x > 2) [ 1 3 ]) ]", "builtins.concatMap (x: [ x x ]) [ 1 2 ]",
        "[ (baseNameOf \"/a/b.nix\") (dirOf \"/a/b.nix\") (baseNameOf \"a/\") ]", "__head [ 1 ]", "builtins.builtins.true",
        "removeAttrs { a = 1; } [ \"a\" ]", "isNull null", "head [ 1 ]",
        // paths, URIs, comments
        "[ (builtins.typeOf ./a/b) (toString ./a/../b) ]", "x:x", "http://example.org/a?b=c", "# comment\n1 /* block */ + 2",
        // import of a relative file
        "let dir = builtins.toString ./.; in import ./ferry-import-fixture.nix",
    ]

    override func setUpWithError() throws {
        try NixOracle.require()
        try "{ x = 1; y = \"imported\"; }".write(toFile: NSTemporaryDirectory() + "/ferry-import-fixture.nix", atomically: true, encoding: .utf8)
    }

    func testCorpusAgreesWithNix() throws {
        XCTAssertGreaterThanOrEqual(Self.corpus.count, 40)
        var disagreements: [String] = []
        var evaluated = 0
        for expr in Self.corpus {
            let nix = try NixOracle.evalJSON(expr)
            let ferry = NixOracle.ferryJSON(expr)
            if nix.json != nil { evaluated += 1 }
            if nix.json != ferry.json {
                disagreements.append("\(expr)\n  nix:   \(nix.json ?? "error: " + nix.error.prefix(200))\n  ferry: \(ferry.json ?? "error: " + ferry.error)")
            }
        }
        XCTAssertEqual(disagreements, [], "\n" + disagreements.joined(separator: "\n"))
        XCTAssertGreaterThan(evaluated, Self.corpus.count * 3 / 4, "most cases evaluate; the rest check that errors agree")
        print("corpus: \(Self.corpus.count) cases, \(evaluated) evaluate, \(Self.corpus.count - evaluated) are errors in both")
    }

    /// Without --json Nix prints values its own way; `ferry eval` does the same.
    func testPrintedFormAgreesWithNix() throws {
        for expr in ["{ \"a b\" = 1; f = x: x; n = null; s = \"a\\${b}\\n$\"; x = { }; y = [ ]; z = [ 1.5 2.0 ]; p = ./foo; }",
                     "[ true false \"\\t\" 1.0e-7 ]", "builtins.map", "{ \"if\" = 1; or = 2; \"\" = 3; }"] {
            let nix = try NixOracle.evalDisplay(expr)
            let ev = Evaluator()
            let v = try ev.deepForce(try ev.evaluate(source: expr, baseDirectory: NSTemporaryDirectory()))
            XCTAssertEqual(NixWriter.display(v, ev), nix?.replacingOccurrences(of: "//", with: "/"), expr)
        }
    }

    /// Constructs outside the pure part are named as unsupported, with a location, never a wrong value.
    func testUnsupportedIsSaidWithALocation() {
        let cases = [
            ("builtins.getFlake \"path:/var/src/lnbits-src\"", "builtins.getFlake"),
            ("derivation { name = \"x\"; builder = \"b\"; system = \"s\"; }", "builtins.derivation"),
            ("<nixpkgs>", "search path <nixpkgs>"), ("builtins.currentSystem", "builtins.currentSystem"),
            ("fetchTarball \"https://x\"", "builtins.fetchTarball"), ("\"${./x}\"", "using a path in a string"),
            ("builtins.pathExists /etc/nixos/hardware-configuration.nix", "builtins.pathExists"),
            ("builtins.readFile /etc/shadow", "builtins.readFile"),
        ]
        for (expr, what) in cases {
            let r = NixOracle.ferryJSON(expr)
            XCTAssertNil(r.json, expr)
            XCTAssertTrue(r.error.contains("«test»:1:"), "location: \(r.error)")
            XCTAssertTrue(r.error.contains("not supported by ferry's evaluator: \(what)"), r.error)
        }
    }

    /// Syntax: ferry accepts exactly what nix-instantiate --parse accepts.
    func testSyntaxAcceptRejectAgreesWithNix() throws {
        let cases = [
            "1 + if true then 1 else 2", "a == b == c", "a < b < c", "a ? b ? c", "-a ? b", "f -1", "[ f x ]", "[ -1 ]",
            "{ a, b }: a", "{ a, b, }: a", "{ ... }: 1", "{ a, ... , b }: a", "{ }: 1", "{ a = 1 }", "{ a = 1; }",
            "let in 1", "let a = 1; in", "rec { }", "x: y: x", "{ a ? 1 }@x: x", "x@{ a }: x", "x@{ x }: x", "{ a, a }: a",
            "a.b.c or d", "a.\"b\".${c}", "\"unterminated", "''unterminated", "/* unterminated", "{ inherit; }",
            "{ inherit (x); }", "let ${a} = 1; in a", "{ ${a}.b = 1; }", "a: b", "!a && b", "- - 1", "1 ++ 2 ++ 3",
            "a // b // c", "a -> b -> c", "assert a; with b; c", "if a then b", "(1", "[ 1 2", "{ a.b = 1; a.b = 2; }",
            "1 2", "{ a = 1; } . a", "a.or", "<nixpkgs/lib>", "~/x", "./a/b/", "a.b or", "(x) : x", "{ or = 1; }",
        ]
        var disagreements: [String] = []
        // `nix-instantiate --parse` also resolves names: a `with` makes every free name legal.
        for expr in cases.map({ "with { }; " + $0 }) {
            let nix = try NixOracle.parses(expr)
            let ferry = (try? Parser.parse(expr, baseDirectory: "/tmp")) != nil
            if nix != ferry { disagreements.append("\(expr): nix \(nix ? "accepts" : "rejects"), ferry \(ferry ? "accepts" : "rejects")") }
        }
        XCTAssertEqual(disagreements, [], "\n" + disagreements.joined(separator: "\n"))
    }

    func testSyntaxErrorsSayWhereAndWhat() {
        XCTAssertThrowsError(try Parser.parse("{ a = 1;\n  b = ; }", file: "shared.nix", baseDirectory: "/")) { error in
            XCTAssertEqual("\(error)", "shared.nix:2:7: syntax error: unexpected ';', expected an expression")
        }
        XCTAssertThrowsError(try Parser.parse("let a = 1; in", file: "f.nix", baseDirectory: "/")) { error in
            XCTAssertEqual("\(error)", "f.nix:1:14: syntax error: unexpected end of input, expected an expression")
        }
    }
}
