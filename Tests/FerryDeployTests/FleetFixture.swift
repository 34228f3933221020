import FerryDeploy
import FerryNix
import FerryTestSupport
import Foundation
import XCTest

/// A copy of deployments/ (or a made-up fleet) in a temporary folder.
struct FleetFixture {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static var example: String { repository + "/deployments" }

    let directory: String

    init(copyingExample: Bool = true) throws {
        directory = NSTemporaryDirectory() + "ferry-fleet-\(UUID().uuidString)"
        if copyingExample {
            try FileManager.default.copyItem(atPath: Self.example, toPath: directory)
        } else {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    func write(_ name: String, _ text: String) throws {
        let path = directory + "/" + name
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    var fleetFile: String { directory + "/fleet.toml" }

    func load() throws -> Fleet { try InventoryReader.load(fleetFile) }

    /// Renders `host` into a temp folder and has nix-instantiate evaluate the generated file's
    /// `let` part: `{ inherit domain host; }` in place of the call of host.nix.
    func evaluateLetPart(_ host: Fleet.Host, in fleet: Fleet) throws -> Any {
        let rendered = try RenderedConfig(host: host, fleet: fleet)
        let out = directory + "-render-\(host.name)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        try rendered.write(to: out)
        let text = rendered.configuration
        let parse = try Command.run(["nix-instantiate", "--parse", out + "/configuration.nix"])
        XCTAssertEqual(parse.status, 0, parse.errorOutput)
        guard let cut = text.range(of: "\nin\nimport ./host.nix { inherit shared domain host; }") else {
            XCTFail("unexpected shape:\n\(text)")
            return [:]
        }
        try (text[..<cut.lowerBound] + "\nin { inherit domain host; }\n").write(toFile: out + "/let-part.nix", atomically: true, encoding: .utf8)
        let r = try Command.run(["nix-instantiate", "--eval", "--strict", "--json", out + "/let-part.nix"])
        XCTAssertEqual(r.status, 0, r.errorOutput)
        return try JSONSerialization.jsonObject(with: r.stdout, options: [.fragmentsAllowed])
    }
}

func requireNix() throws {
    do { _ = try Command.which("nix-instantiate") } catch {
        if ProcessInfo.processInfo.environment["CI"] == "true" { throw error }
        throw XCTSkip("\(error)")
    }
}
