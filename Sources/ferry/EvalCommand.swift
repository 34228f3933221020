import ArgumentParser
import FerryNix
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a Nix file with ferry's own evaluator (no Nix needed), strictly.",
        discussion: "Prints the value as `nix-instantiate --eval --strict` does, or with --json as `--json` does."
    )

    @Argument(help: "The Nix file.")
    var file: String

    @Option(help: ArgumentHelp("Select part of the result as nix-instantiate -A does: networking.domain, a.\"quoted.name\", list.0.", valueName: "a.b"))
    var attr: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let (file, attr, json) = (self.file, self.attr, self.json)
        do {
            // All on the evaluator's large stack, so even a huge value is freed there.
            let text = try NativeStack.run { () throws -> [UInt8] in
                let evaluator = Evaluator()
                evaluator.traceHandler = { printError("trace: \($0)") }
                var value = try evaluator.evaluate(file: file)
                if let attr {
                    value = try evaluator.select(value, attrPath: attr)
                }
                value = try evaluator.deepForce(value)
                return json ? try NixWriter.jsonBytes(value, evaluator, nil) : try NixWriter.displayBytes(value, evaluator)
            }
            // The bytes as they are: Nix strings need not be UTF-8.
            (text + [0x0A]).withUnsafeBytes { writeAll(1, $0) }
        } catch let error as NixSyntaxError {
            printError("ferry: \(error)")
            throw ExitCode(1)
        } catch let error as NixEvalError {
            printError("ferry: \(error)")
            throw ExitCode(1)
        }
    }
}
