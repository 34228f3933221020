import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Generates the source trees that tests, benchmarks and the demo sync: an LNBits-shaped
/// checkout and a large many-file tree, deterministically from a seed, plus random mutations.
public struct TreeFixture {
    public private(set) var rng: FixtureRandom

    public init(seed: UInt64) { rng = FixtureRandom(seed: seed) }

    /// ≈580 entries, ≈15 MB: flake.nix, flake.lock, pyproject.toml, a 0.5 MB uv.lock, a few 0.5–2 MB JS bundles,
    /// many small .py/.html/.js files under lnbits/.
    public mutating func makeLNBitsTree(at root: String) throws {
        try mkdir(root)
        try write(root + "/flake.nix", text: "{\n  description = \"LNBits (ferry fixture)\";\n  outputs = { self }: { };\n}\n")
        try write(root + "/flake.lock", text: "{\n  \"nodes\": { \"root\": { } },\n  \"root\": \"root\",\n  \"version\": 7\n}\n")
        try write(root + "/pyproject.toml", text: "[project]\nname = \"lnbits\"\nversion = \"1.0.0\"\n")
        try write(root + "/uv.lock", size: 512 * 1024, text: true)
        try write(root + "/README.md", size: 8 * 1024, text: true)
        try write(root + "/.env.example", text: "LNBITS_ADMIN_UI=true\n")
        let packages = ["core", "wallets", "extensions", "tasks", "db", "decorators", "helpers", "nodes", "utils"]
        for p in packages {
            let dir = "\(root)/lnbits/\(p)"
            try mkdir(dir)
            for i in 0..<(18 + rng.below(10)) { try write("\(dir)/module_\(i).py", size: 500 + rng.below(12_000), text: true) }
            try mkdir(dir + "/templates")
            for i in 0..<(6 + rng.below(6)) { try write("\(dir)/templates/page_\(i).html", size: 800 + rng.below(9_000), text: true) }
        }
        let staticDir = root + "/lnbits/static"
        for sub in ["js", "css", "images", "vendor", "i18n"] { try mkdir("\(staticDir)/\(sub)") }
        for (i, size) in [2_000_000, 1_700_000, 1_300_000, 900_000, 700_000, 520_000].enumerated() {
            try write("\(staticDir)/vendor/bundle_\(i).min.js", size: size, text: true)
        }
        for i in 0..<(120 + rng.below(20)) { try write("\(staticDir)/js/component_\(i).js", size: 300 + rng.below(30_000), text: true) }
        for i in 0..<30 { try write("\(staticDir)/i18n/lang_\(i).js", size: 2_000 + rng.below(60_000), text: true) }
        for i in 0..<40 { try write("\(staticDir)/images/icon_\(i).png", size: 200 + rng.below(120_000), text: false) }
        for i in 0..<10 { try write("\(staticDir)/css/style_\(i).css", size: 1_000 + rng.below(40_000), text: true) }
        try mkdir(root + "/tests")
        for i in 0..<60 { try write("\(root)/tests/test_\(i).py", size: 400 + rng.below(6_000), text: true) }
        try mkdir(root + "/lnbits/static/empty")
        try symlink("vendor/bundle_0.min.js", root + "/lnbits/static/bundle.js")
    }

    /// `files` files in ≈files/15 directories (nested up to 4 deep), sizes log-normal around a few KB
    /// with a long tail, ≈250 MB for 40,000 files.
    public mutating func makeLargeTree(at root: String, files: Int = 40_000, totalBytes: Int = 250_000_000) throws {
        try mkdir(root)
        let dirCount = max(1, files / 15)
        var dirs: [String] = []
        for i in 0..<dirCount {
            let parent = dirs.isEmpty || rng.below(4) == 0 ? root : dirs[rng.below(dirs.count)]
            let depth = parent.split(separator: "/").count - root.split(separator: "/").count
            let dir = "\(depth >= 4 ? root : parent)/d\(i)"
            try mkdir(dir)
            dirs.append(dir)
        }
        // Log-normal sizes, scaled so the tree totals about `totalBytes`.
        var sizes = (0..<files).map { _ in exp(8.0 + 1.6 * rng.gaussian()) }
        let scale = Double(totalBytes) / sizes.reduce(0, +)
        sizes = sizes.map { $0 * scale }
        for i in 0..<files {
            try write("\(dirs[rng.below(dirs.count)])/f\(i).dat", size: Int(sizes[i]), text: false)
        }
    }

    /// Names that must survive byte for byte.
    public static let hardNames: [[UInt8]] = [
        Array("with space".utf8), Array("quote'single".utf8), Array("quote\"double".utf8), Array("new\nline".utf8),
        Array("-leading-dash".utf8), Array("$(touch pwned)".utf8), Array("`backtick`".utf8), Array("back\\slash".utf8),
        Array("tab\there".utf8), Array("star*question?".utf8), Array("ünïcödé".utf8), [0x6C, 0x61, 0x74, 0x69, 0x6E, 0x31, 0xE9, 0xFF],
        Array(repeating: UInt8(ascii: "n"), count: 255), Array("trailing space ".utf8), Array("#hash".utf8), Array("~tilde".utf8),
    ]

    /// Creates a file whose name is raw bytes.
    public func writeFile(_ dir: String, name: [UInt8], contents: [UInt8]) throws {
        let path = Array(dir.utf8) + [UInt8(ascii: "/")] + name
        let fd = (path + [0]).withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
        }
        guard fd >= 0 else { throw FixtureError("cannot create \(String(decoding: path, as: UTF8.self)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = contents.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    // MARK: - Pieces

    public func mkdir(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public mutating func write(_ path: String, text: String) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    public mutating func write(_ path: String, size: Int, text: Bool) throws {
        guard let handle = FileHandle(forWritingAtPath: path) ?? {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            return FileHandle(forWritingAtPath: path)
        }() else { throw FixtureError("cannot create \(path)") }
        defer { try? handle.close() }
        var remaining = size
        while remaining > 0 {
            let n = min(remaining, 1 << 16)
            handle.write(Data(rng.bytes(n, text: text)))
            remaining -= n
        }
    }

    public func symlink(_ target: String, _ path: String) throws {
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
    }
}

public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Seeded randomness for fixtures (SplitMix64).
public struct FixtureRandom: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }

    public mutating func gaussian() -> Double {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-12), u2 = Double(next() >> 11) / Double(1 << 53)
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }

    private static let textAlphabet = Array("abcdefghijklmnopqrstuvwxyz     \n{}()=;:.,_-0123456789".utf8)

    public mutating func bytes(_ n: Int, text: Bool) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var word = next()
            for _ in 0..<8 where i < n {
                let b = UInt8(truncatingIfNeeded: word)
                out[i] = text ? Self.textAlphabet[Int(b) % Self.textAlphabet.count] : b
                word >>= 8
                i += 1
            }
        }
        return out
    }
}
