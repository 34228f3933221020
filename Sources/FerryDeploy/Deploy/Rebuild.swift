import FerrySSH
import FerryTarget
import Foundation

/// The detached `nixos-rebuild` on the target: its command line (the job that runs it is
/// `TargetState.Job`).
enum Rebuild {
    /// Absolute path (sudo's secure_path and odd PATHs), `--no-flake` (an /etc/nixos/flake.nix would
    /// otherwise win over `-I nixos-config`), `extra-` features so the host's own stay.
    static func commandLine(operation: Fleet.Operation, root: String, renderedSource: String, extra: [String]) -> [String] {
        ["/run/current-system/sw/bin/nixos-rebuild", operation.rawValue, "--no-flake",
         "-I", "nixos-config=\(root)/\(renderedSource)/\(RenderedConfig.entryPoint)", "-I", root,
         "--option", "extra-experimental-features", "nix-command flakes"] + extra
    }
}

/// Splits a byte stream into lines (a final partial line is kept until `flush`). A line longer
/// than `longestLine` is passed on in pieces of that size: a target printing without newlines
/// (`cat /dev/zero`) must neither grow ferry's memory without bound nor be scanned over and over.
public struct LineSplitter {
    public static let longestLine = 1 << 20
    private var pending: [UInt8] = []

    public init() {}

    public mutating func feed(_ chunk: UnsafeRawBufferPointer, _ line: ([UInt8]) -> Void) {
        // What is pending holds no newline: only the new bytes are searched.
        var from = pending.count
        pending.append(contentsOf: chunk)
        var start = 0
        while true {
            let limit = min(pending.count, start + Self.longestLine)
            if let newline = pending[max(from, start)..<limit].firstIndex(of: UInt8(ascii: "\n")) {
                line(Array(pending[start..<newline]))
                start = newline + 1
            } else if limit - start == Self.longestLine {
                line(Array(pending[start..<limit]))
                start = limit
            } else {
                break
            }
            from = start
        }
        pending.removeFirst(start)
    }

    public mutating func flush(_ line: ([UInt8]) -> Void) {
        if !pending.isEmpty { line(pending) }
        pending = []
    }
}
