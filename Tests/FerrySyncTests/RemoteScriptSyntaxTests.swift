import FerrySSH
@testable import FerrySync
@testable import FerryTarget
import FerryXCTestSupport
import Foundation
import XCTest

/// Every script ferry runs on a target parses, in bash (NixOS's sh) and in dash (a POSIX sh
/// without bash's extensions): a syntax slip must fail here, not hang or half-run a deploy.
final class RemoteScriptSyntaxTests: XCTestCase {
    func testEveryTargetScriptParsesInBashAndDash() throws {
        let state = TargetState(root: "/var/src")
        let record = DeployRecord(id: "20261207T000000Z-0000", host: "h", startedAt: "2026-12-07T00:00:00Z", operator_: "o",
                                  ferryVersion: "0", operation: "switch", sources: [:])
        let holder = LockHolder(id: record.id, operator_: "o", pid: 1, since: record.startedAt)
        let snapshot = TargetState.Tree.Snapshot(state: state, source: "s", digest: "sha256:" + String(repeating: "0", count: 64), keep: 10)
        let commands: [(String, RemoteCommand)] = [
            ("tree listing", TargetState.Tree.Request(destination: "/var/src/s", mode: .list, checksum: false).command),
            ("tree apply with a snapshot", TargetState.Tree.Request(destination: "/var/src/s", mode: .apply, checksum: false, snapshot: snapshot).command),
            ("extract", TargetState.Tree.extract(stage: Array("/x".utf8), stream: 1)),
            ("holder", try TargetState.Holder.command(state, id: record.id, holder: holder, wait: 0)),
            ("job prepare", TargetState.Job.prepare(state, id: record.id, manifests: ["s"], record: record, command: ["true"],
                                                     snapshots: [("s", snapshot.folder)])),
            ("sync-only record", TargetState.Job.recordSyncOnly(state, manifests: [], record: record)),
            ("follow", TargetState.Job.follow(state, id: record.id, from: 0, waitForStart: true)),
            ("status", TargetState.Status.command(state)),
            ("unlock", TargetState.Unlock.command(state, force: true)),
            ("manifest read", TargetState.ManifestRead.command(state, source: "s")),
            ("tree file", TargetState.TreeFile.command(Array("/var/src/s/x".utf8))),
            ("history", TargetState.History.command(state, count: 20)),
            ("confirm", TargetState.Job.confirm(state, id: record.id, wait: 30)),
            ("rollback history", TargetState.Rollback.history(state)),
            ("restore plan upload", TargetState.Rollback.upload(state, id: record.id)),
        ]
        let shells = try ["bash", "dash"].map { try Command.which($0) }
        for (name, command) in commands {
            XCTAssertEqual(command.arguments.prefix(2).map { String(decoding: $0, as: UTF8.self) }, ["sh", "-c"], name)
            let script = String(decoding: command.arguments[2], as: UTF8.self)
            for shell in shells {
                let r = try Command.run([shell, "-n", "-c", script])
                XCTAssertEqual(r.status, 0, "\(name) in \(shell): \(r.errorOutput)")
            }
        }
        // The job's own script (job.sh), written by prepare.
        let job = TargetState.Job.script(directory: state.deploy(record.id), record: state.rebuildRecord, command: ["nixos-rebuild", "switch"])
        for shell in shells { XCTAssertEqual(try Command.run([shell, "-n", "-c", job]).status, 0, "job.sh in \(shell)") }
        // A confirm-or-revert job, with a source to put back.
        let confirming = TargetState.Job.script(directory: state.deploy(record.id), record: state.rebuildRecord, command: ["nixos-rebuild", "build"],
                                                confirmation: .init(operation: "switch", timeout: 30, activationTimeout: 600,
                                                                    restores: [.init(source: "s", destination: "/var/src/s", snapshot: snapshot.folder)]))
        for shell in shells { XCTAssertEqual(try Command.run([shell, "-n", "-c", confirming]).status, 0, "confirming job.sh in \(shell)") }
        // A rollback's job command and the restore script it runs per source.
        let rollback = TargetState.Rollback.jobCommand(state, id: record.id, operation: "switch", system: "/nix/store/x",
                                                       restores: [.init(source: "s", destination: "/var/src/s", snapshot: snapshot.folder)])
        for (name, script) in [("rollback job", rollback[2]), ("restore", rollback[6])] {
            for shell in shells { XCTAssertEqual(try Command.run([shell, "-n", "-c", script]).status, 0, "\(name) in \(shell)") }
        }
    }
}
