@testable import FerryDeploy
import FerrySync
import FerryXCTestSupport
import Foundation
import XCTest

/// What a source must not carry: real keys made by ssh-keygen and openssl are found, certificates,
/// public keys and encrypted files are not; the files fleet.toml names stay home.
final class SourceSecretsTests: XCTestCase {
    var fixture: FleetFixture!
    var lnbits: String { fixture.directory + "/lnbits" }

    override func setUpWithError() throws {
        for tool in ["ssh-keygen", "openssl"] {
            do { _ = try Command.which(tool) } catch {
                if ProcessInfo.processInfo.environment["CI"] == "true" { throw error }
                throw XCTSkip("\(error)")
            }
        }
        try requireNix()
        fixture = try FleetFixture()
        var tree = TreeFixture(seed: 5)
        try tree.makeLNBitsTree(at: lnbits)
        let toml = try String(contentsOfFile: fixture.fleetFile, encoding: .utf8).replacingOccurrences(of: "path = \"../lnbits\"", with: "path = \"lnbits\"")
        try fixture.write("fleet.toml", toml)
    }

    override func tearDown() { fixture?.remove() }

    func isKey(_ path: String) throws -> Bool {
        SourceSecrets.isPrivateKey(ArraySlice(try XCTUnwrap(FileManager.default.contents(atPath: path)).prefix(512)))
    }

    func testRealKeysAreFoundAndCertificatesPublicKeysAndCiphertextAreNot() throws {
        let dir = fixture.directory + "/keys"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var keys: [String] = []
        for (name, args) in [("ed25519", ["-t", "ed25519"]), ("ecdsa", ["-t", "ecdsa"]), ("rsa-pem", ["-t", "rsa", "-b", "1024", "-m", "PEM"]),
                             ("rsa-pkcs8", ["-t", "rsa", "-b", "1024", "-m", "PKCS8"]), ("encrypted", ["-t", "ed25519", "-N", "pass phrase"])] {
            let path = dir + "/" + name
            try Command.check(["ssh-keygen", "-q", "-f", path, "-C", "test"] + args + (args.contains("-N") ? [] : ["-N", ""]))
            keys.append(path)
            XCTAssertFalse(try isKey(path + ".pub"), "\(name).pub")
        }
        try Command.check(["openssl", "genpkey", "-algorithm", "ed25519", "-out", dir + "/pkcs8.pem"])
        try Command.check(["openssl", "genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:x", "-out", dir + "/pkcs8-enc.pem"])
        try Command.check(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", dir + "/ec.pem"])
        try Command.check(["openssl", "req", "-x509", "-key", dir + "/pkcs8.pem", "-subj", "/CN=t", "-days", "1", "-out", dir + "/cert.pem"])
        keys += [dir + "/pkcs8.pem", dir + "/pkcs8-enc.pem", dir + "/ec.pem"]
        for key in keys { XCTAssertTrue(try isKey(key), key) }
        let puttyKey = "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: t\nPublic-Lines: 2\n"
        let notKeys = [
            "age-encryption.org/v1\n-> X25519 abc\n", "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n",
            "db_password: ENC[AES256_GCM,data:abc,iv:def,tag:x,type:str]\nsops:\n  version: 3.8.1\n",
            "# a comment naming -----BEGIN OPENSSH PRIVATE KEY----- is no key\n",
            "PRIVATE = \"-----BEGIN PRIVATE KEY-----\"\n",
        ]
        XCTAssertTrue(SourceSecrets.isPrivateKey(ArraySlice(Array(puttyKey.utf8))))
        XCTAssertTrue(SourceSecrets.isPrivateKey(ArraySlice(Array("\u{FEFF}\n  -----BEGIN RSA PRIVATE KEY-----\r\nMII\r\n".utf8))))
        for text in notKeys { XCTAssertFalse(SourceSecrets.isPrivateKey(ArraySlice(Array(text.utf8))), text) }
        XCTAssertFalse(try isKey(dir + "/cert.pem"))
    }

    func prepare(_ fleet: Fleet) throws -> FleetDeployment {
        let d = FleetDeployment(fleet: fleet, hosts: [fleet.hosts[0]], options: .init(deploy: Deployment.Options { _ in LocalShell(name: "local") }))
        try d.prepare(manifests: false)
        return d
    }

    func testAKeyInASourceStopsTheDeployUnlessAllowedAndNamedFilesStayHome() throws {
        // The operator's key and known_hosts inside the fleet folder, named in fleet.toml: never sent.
        try FileManager.default.createDirectory(atPath: fixture.directory + "/keys", withIntermediateDirectories: true)
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", fixture.directory + "/keys/deploy"])
        try fixture.write("keys/known_hosts", "example.org ssh-ed25519 AAAA\n")
        var toml = try String(contentsOfFile: fixture.fleetFile, encoding: .utf8)
        toml = toml.replacingOccurrences(of: "[defaults]\n", with: "[defaults]\nidentity = \"keys/deploy\"\nknown_hosts = \"keys/known_hosts\"\n")
        try fixture.write("fleet.toml", toml)
        var fleet = try fixture.load()
        XCTAssertEqual(fleet.defaults.identity, [fixture.directory + "/keys/deploy"], "the test edits [defaults]")
        let rendered = try RenderedConfig(host: fleet.hosts[0], fleet: fleet)
        XCTAssertFalse(rendered.files.contains { $0.path.hasPrefix("keys/deploy") && !$0.path.hasSuffix(".pub") || $0.path == "keys/known_hosts" },
                       "\(rendered.files.map(\.path))")
        XCTAssertNoThrow(try prepare(fleet))

        // Any other key, in any source: an error naming it, before any connection.
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", lnbits + "/lnbits/static/stray"])
        XCTAssertThrowsError(try prepare(fleet)) { error in
            guard case DeployError.localCheck(let text) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains("\(lnbits)/lnbits/static/stray: a private key"), text)
            XCTAssertTrue(text.contains("sources.lnbits-src.allow (\"lnbits/static/stray\")"), text)
        }
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", fixture.directory + "/modules/other"])
        fleet = try fixture.load()
        XCTAssertThrowsError(try RenderedConfig(host: fleet.hosts[0], fleet: fleet)) { error in
            XCTAssertTrue("\(error)".contains("\(fixture.directory)/modules/other: a private key"), "\(error)")
        }
        try FileManager.default.removeItem(atPath: fixture.directory + "/modules/other")
        toml = try String(contentsOfFile: fixture.fleetFile, encoding: .utf8)
        try fixture.write("fleet.toml", toml.replacingOccurrences(of: "[sources.lnbits-src]\n", with: "[sources.lnbits-src]\nallow = [\"lnbits/static/stray\"]\n"))
        fleet = try fixture.load()
        XCTAssertNoThrow(try prepare(fleet))

        // .env anywhere warns unless excluded; templates do not.
        toml = try String(contentsOfFile: fixture.fleetFile, encoding: .utf8)
        try fixture.write("fleet.toml", toml.replacingOccurrences(of: "exclude = [\".git\", \".env\", ", with: "exclude = [\".git\", \"/.env\", "))
        fleet = try fixture.load()
        XCTAssertEqual(fleet.sources[0].exclude.prefix(2), [".git", "/.env"], "the test edits the excludes")
        try fixture.write("lnbits/lnbits/extensions/.env", "K=v\n")
        try fixture.write("lnbits/lnbits/.env.production", "K=v\n")
        try fixture.write("lnbits/.env.example", "K=\n")
        try fixture.write("lnbits/lnbits/.env.sample", "K=\n")
        let warnings = try prepare(fleet).warnings.joined(separator: "\n")
        XCTAssertTrue(warnings.contains("\(lnbits)/lnbits/extensions/.env would be pushed"), warnings)
        XCTAssertTrue(warnings.contains("\(lnbits)/lnbits/.env.production would be pushed"), warnings)
        XCTAssertFalse(warnings.contains(".example"), warnings)
        XCTAssertFalse(warnings.contains(".sample"), warnings)
    }

    /// The cache of files found clean: a second look reads only what changed (size or mtime), so
    /// a key written over a clean file is still found.
    func testTheCacheRemembersCleanFilesOnlyWhileTheyAreUnchanged() throws {
        let cache = SourceSecrets.Cache(directory: fixture.directory + "-cache")
        defer { try? FileManager.default.removeItem(atPath: cache.directory) }
        func look() throws -> SourceSecrets.Findings {
            let scanned = try LocalScanner(root: lnbits, excludes: ExcludeRules()).scanAll()
            return SourceSecrets.inspect(root: lnbits, manifest: scanned.manifest, allow: [], cache: cache)
        }
        XCTAssertEqual(try look().privateKeys, [])
        let known = cache.load(root: lnbits)
        XCTAssertGreaterThan(known.count, 10, "the clean files are remembered")
        XCTAssertEqual(try look().privateKeys, [])
        XCTAssertEqual(cache.load(root: lnbits), known)
        // A clean file becomes a key: new size and mtime, read again, found.
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", fixture.directory + "/k"])
        try FileManager.default.removeItem(atPath: lnbits + "/README.md")
        try FileManager.default.copyItem(atPath: fixture.directory + "/k", toPath: lnbits + "/README.md")
        XCTAssertEqual(try look().privateKeys, ["README.md"])
        XCTAssertEqual(try look().privateKeys, ["README.md"], "a key is never remembered as clean")
        // An unreadable cache is only a slower look.
        try "garbage".write(toFile: cache.file(root: lnbits), atomically: false, encoding: .utf8)
        XCTAssertEqual(cache.load(root: lnbits), [])
        XCTAssertEqual(try look().privateKeys, ["README.md"])
    }

    func testAllowMustNameAFileInsideTheSource() throws {
        let toml = try String(contentsOfFile: fixture.fleetFile, encoding: .utf8)
        for bad in ["/etc/key", "../key", "dir/"] {
            try fixture.write("fleet.toml", toml.replacingOccurrences(of: "[sources.lnbits-src]\n", with: "[sources.lnbits-src]\nallow = [\"\(bad)\"]\n"))
            XCTAssertThrowsError(try fixture.load()) { XCTAssertTrue("\($0)".contains("sources.lnbits-src.allow[0]"), "\($0)") }
        }
    }
}
