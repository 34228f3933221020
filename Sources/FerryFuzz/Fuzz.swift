import FerryDeploy
import FerryNix
import FerrySSH
import FerrySync
import FerryTOML
import FerryTarget
import Foundation

/// The parsers, each on its real entry point, for libFuzzer (`scripts/fuzz`). One product holds
/// every target (one sanitizer build); FERRY_FUZZ_TARGET picks one. Built without `-DFUZZING` it
/// is a replayer: `ferry-fuzz TARGET FILE…` runs files through a target (the regression tests do).
enum FuzzTarget: String, CaseIterable {
    case nixParse = "nix-parse", nixEval = "nix-eval", toml, knownHosts = "known-hosts", listing, hashes, sshConfig = "ssh-config", plan
    case kexInit = "kexinit"

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
            // Full, and incremental over a known tree: every path stays inside, in tree order, once.
            for base in [nil, Self.listingBase] {
                guard let listing = try? TargetState.Tree.parse(bytes, target: "fuzz", base: base) else { continue }
                let entries = listing.manifest.entries
                for e in entries.dropFirst() { precondition(TargetState.Tree.isSafeRelativePath(e.path[...])) }
                if base != nil {
                    precondition(zip(entries, entries.dropFirst()).allSatisfy { Manifest.treeOrder($0.path, $1.path) }, "an incremental merge out of order")
                }
                _ = entries.map { Itemize.line(SyncPlan.Item(entry: $0, change: .deleted)) }
            }
            if let (_, manifest) = ListingCache.decode(bytes) {
                precondition(ListingCache.decode(ListingCache.encode(manifest, generation: "ab"))?.manifest.entries == manifest.entries)
            }
        case .hashes:
            _ = try? TargetState.Tree.parseHashes(bytes, target: "fuzz")
        case .plan:
            // Two valid trees made from the bytes, planned against each other, printed and classified.
            let (source, destination) = Self.trees(bytes)
            let plan = SyncPlan(source: source, destination: destination, options: SyncPlan.Options(excludes: ExcludeRules(["*.x"])))
            for item in plan.items {
                _ = Itemize.line(item)
                _ = DisplayText.escape(item.entry.path)
            }
            for e in plan.sends { precondition(source[e.path] != nil, "a send the source does not have") }
            for p in plan.deletions { precondition(destination[p] != nil, "a deletion the destination does not have") }
            let entries = HostDiff.classify(plan, destination: destination, source: "fuzz")
            for e in entries { precondition(e.old != nil || e.new != nil, "an entry with neither side") }
        case .kexInit:
            // What a server sends first; when it parses, the mismatch message against fixed lists.
            if let offer = ServerKexInit.parse(bytes) {
                _ = offer.mismatch { [["curve25519-sha256"], ["ssh-ed25519"], ["aes128-ctr"], ["aes128-ctr"], ["hmac-sha2-256"]][min(Int($0), 4)] }
            }
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

extension FuzzTarget {
    /// The tree an incremental listing is applied to.
    static let listingBase = Manifest([
        FileEntry(path: [], kind: .directory, mode: 0o755, size: 0, mtime: Timestamp(seconds: 1, nanoseconds: 0)),
        FileEntry(path: Array("a".utf8), kind: .directory, mode: 0o755, size: 0, mtime: Timestamp(seconds: 1, nanoseconds: 0)),
        FileEntry(path: Array("a/x".utf8), kind: .file, mode: 0o644, size: 3, mtime: Timestamp(seconds: 1, nanoseconds: 0)),
        FileEntry(path: Array("b".utf8), kind: .symlink, mode: 0o777, size: 0, mtime: Timestamp(seconds: 1, nanoseconds: 0), linkTarget: Array("a".utf8)),
    ])

    /// Records of 6 bytes (which trees, kind, mode, size and mtime seeds) then a path of up to
    /// three components (a length byte each); every parent becomes a directory.
    static func trees(_ bytes: [UInt8]) -> (Manifest, Manifest) {
        var a: [[UInt8]: FileEntry] = [[]: FileEntry(path: [], kind: .directory, mode: 0o755, size: 0, mtime: Timestamp(seconds: 1, nanoseconds: 0))]
        var b = a
        var i = 0
        func next() -> UInt8? { guard i < bytes.count else { return nil }; defer { i += 1 }; return bytes[i] }
        while let which = next(), let kindByte = next(), let modeByte = next(), let sizeByte = next(), let timeByte = next(), let count = next() {
            var path: [UInt8] = []
            for c in 0..<(Int(count) % 3 + 1) {
                guard let length = next() else { break }
                var component: [UInt8] = []
                for _ in 0..<(Int(length) % 4 + 1) {
                    guard let ch = next() else { break }
                    component.append(ch == 0 || ch == UInt8(ascii: "/") ? UInt8(ascii: "x") : ch)
                }
                if component.isEmpty || component == [0x2E] || component == [0x2E, 0x2E] { component = [UInt8(ascii: "d")] }
                path += (c == 0 ? [] : [UInt8(ascii: "/")]) + component
            }
            guard !path.isEmpty else { continue }
            let kinds: [FileEntry.Kind] = [.file, .directory, .symlink, .fifo]
            let kind = kinds[Int(kindByte) % 4]
            let entry = FileEntry(path: path, kind: kind, mode: UInt32(modeByte) | 0o400, size: kind == .file ? Int64(sizeByte) : 0,
                                  mtime: Timestamp(seconds: Int64(timeByte), nanoseconds: Int64(sizeByte) * 1000),
                                  linkTarget: kind == .symlink ? Array(path.suffix(3)) : nil)
            for tree in [0, 1] where which & (1 << tree) != 0 || which & 3 == 0 && tree == 0 {
                var t = tree == 0 ? a : b
                // Parents first, as directories (a file in the way becomes one).
                var cut = path.startIndex
                while let slash = path[cut...].firstIndex(of: UInt8(ascii: "/")) {
                    let parent = Array(path[..<slash])
                    if t[parent]?.kind != .directory {
                        t[parent] = FileEntry(path: parent, kind: .directory, mode: 0o755, size: 0, mtime: Timestamp(seconds: 2, nanoseconds: 0))
                    }
                    cut = slash + 1
                }
                if t[path]?.kind != .directory || kind == .directory { t[path] = entry }
                if tree == 0 { a = t } else { b = t }
            }
        }
        // A directory replaced by a non-directory loses what was below it.
        func valid(_ t: [[UInt8]: FileEntry]) -> Manifest {
            Manifest(t.values.filter { e in
                var p = e.path
                while let slash = p.lastIndex(of: UInt8(ascii: "/")) {
                    p = Array(p[..<slash])
                    if t[p]?.kind != .directory { return false }
                }
                return true
            })
        }
        return (valid(a), valid(b))
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
