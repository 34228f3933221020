import FerryNix
import FerryTestSupport
import Foundation
import XCTest

/// Debian's `nix-instantiate` (2.8) as the oracle. Missing: skip locally, fail under CI=true.
enum NixOracle {
    static func require() throws {
        do { _ = try Command.which("nix-instantiate") } catch {
            if ProcessInfo.processInfo.environment["CI"] == "true" { throw error }
            throw XCTSkip("\(error)")
        }
    }

    /// `nix-instantiate --eval --strict --json`: the JSON text, or nil when Nix reports an error.
    static func evalJSON(_ expr: String, directory: String = NSTemporaryDirectory()) throws -> (json: String?, error: String) {
        let file = try write(expr, directory: directory)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try Command.run(["nix-instantiate", "--eval", "--strict", "--json", file])
        return (r.status == 0 ? r.output : nil, r.errorOutput)
    }

    /// `nix-instantiate --eval --strict` without --json: the printed value.
    static func evalDisplay(_ expr: String) throws -> String? {
        let file = try write(expr)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try Command.run(["nix-instantiate", "--eval", "--strict", file])
        return r.status == 0 ? r.output.trimmingCharacters(in: .newlines) : nil
    }

    static func parses(_ expr: String) throws -> Bool {
        let file = try write(expr)
        defer { try? FileManager.default.removeItem(atPath: file) }
        return try Command.run(["nix-instantiate", "--parse", file]).status == 0
    }

    static func write(_ expr: String, directory: String = NSTemporaryDirectory()) throws -> String {
        let file = directory + "/ferry-oracle-\(UUID().uuidString).nix"
        try expr.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// ferry's answer to the same question.
    static func ferryJSON(_ expr: String, directory: String = NSTemporaryDirectory()) -> (json: String?, error: String) {
        let ev = Evaluator()
        ev.traceHandler = { _ in }
        do {
            let v = try ev.deepForce(try ev.evaluate(source: expr, file: "«test»", baseDirectory: directory))
            return (try NixWriter.json(v, ev, nil), "")
        } catch {
            return (nil, "\(error)")
        }
    }
}
