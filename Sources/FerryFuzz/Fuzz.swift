import FerryNix
import FerrySSH
import FerrySync
import FerryTOML
import Foundation

/// The parsers, each on its real entry point, for libFuzzer (`scripts/fuzz`). One product holds
/// every target (one sanitizer build); FERRY_FUZZ_TARGET picks one. Built without `-DFUZZING` it
/// is a replayer: `ferry-fuzz TARGET FILE…` runs files through a target (the regression tests do).
enum FuzzTarget: String, CaseIterable {
    case nixParse = "nix-parse", nixEval = "nix-eval", toml, knownHosts = "known-hosts", listing, hashes, sshConfig = "ssh-config"

    func run(_ bytes: [UInt8]) {
        switch self {
        case .nixParse:
            _ = try? Parser.parse(bytes: bytes, file: "fuzz.nix", baseDirectory: "/nonexistent")
        case .nixEval:
            let ev = Evaluator()
            defer { ev.tearDown() }
            ev.stepBudget = 20_000
            ev.traceHandler = { _ in }
            guard let v = try? ev.evaluate(source: String(decoding: bytes, as: UTF8.self), file: "fuzz.nix", baseDirectory: "/nonexistent"),
                  let forced = try? ev.deepForce(v) else { return }
            _ = try? NixWriter.displayBytes(forced, ev)
            _ = try? NixWriter.jsonBytes(forced, ev, nil)
        case .toml:
            _ = try? TOMLReader.parse(bytes)
        case .knownHosts:
            _ = KnownHosts.parse(bytes)
            _ = KnownHosts.verdict(bytes, host: "127.0.0.1", port: 2222, key: Array(bytes.prefix(64)))
        case .listing:
            if let listing = try? RemoteTree.parse(bytes, target: "fuzz") {
                for e in listing.manifest.entries.dropFirst() { precondition(RemoteTree.isSafeRelativePath(e.path[...])) }
                _ = listing.manifest.entries.map { Itemize.line(SyncPlan.Item(entry: $0, change: .deleted)) }
            }
        case .hashes:
            _ = try? RemoteTree.parseHashes(bytes, target: "fuzz")
        case .sshConfig:
            let config = SSHClientConfig(file: "fuzz.conf", home: "/home/fuzz", localUser: "fuzz")
            for host in ["web1", "db.example.com", "10.0.0.5"] {
                guard let r = try? config.resolve(host, contents: bytes) else { continue }
                if let jump = r.proxyJump?.value, jump.lowercased() != "none" {
                    // A value the reader accepted is a valid chain.
                    let chain = try! ProxyJump(jump)
                    _ = chain.openSSHForm(written: jump)
                }
                let tokens: [Character: String] = ["h": host, "p": "22", "r": "fuzz", "u": "fuzz", "n": host, "d": "/home/fuzz"]
                for f in r.identityFiles { _ = try? SSHClientConfig.expand(config.tilde(f.value), tokens: tokens) }
                for f in r.userKnownHostsFiles?.value ?? [] { _ = try? SSHClientConfig.expand(config.tilde(f), tokens: tokens) }
            }
        }
    }
}

#if FUZZING
private let target: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["FERRY_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        fatalError("set FERRY_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    target.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
@main
enum Replay {
    static func main() throws {
        let args = CommandLine.arguments.dropFirst()
        guard let name = args.first, let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("usage: ferry-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE…\n".utf8))
            exit(2)
        }
        for file in args.dropFirst() {
            target.run(Array(try Data(contentsOf: URL(fileURLWithPath: file))))
        }
    }
}
#endif
