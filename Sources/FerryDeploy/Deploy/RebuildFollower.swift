import FerrySSH
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Follows a detached rebuild's log on the host until the job writes its exit status: a deploy
/// right after starting it, `ferry status --follow` later. Reconnects when the link drops, for at
/// most `reconnectTimeout` seconds, after which the outcome is unknown.
struct RebuildFollower {
    var state: TargetState
    /// The deploy whose job is followed (`state.deploy(id)`).
    var id: String
    var operation: String
    var reconnectTimeout: Double
    /// Wait for the job to write its pid (a deploy that has just started it); false: a job
    /// without a pid never started.
    var waitForStart: Bool
    /// Stops following (the rebuild goes on); `cancel` too, and it also ends the reconnect wait.
    var stop: CancellationToken?
    var cancel: CancellationToken?
    var reopen: () throws -> any RemoteShell
    /// The job has activated and waits this many seconds for proof of a fresh login (its log's
    /// `Job.confirmMarker` line, which is not output).
    var onConfirm: ((Int) -> Void)?
    /// The job has activated and waits for the secrets that go after the activation
    /// (`Job.secretsMarker`, repeated while it waits: heard once).
    var onSecrets: (() -> Void)?

    func follow(first: any RemoteShell, report: (DeployEvent) -> Void) throws -> DeployResult {
        var offset = 0
        var session: (any RemoteShell)? = first
        var lostSince: Date?
        var tail: [String] = []
        defer { if let session, session !== first { session.close() } }
        // One splitter across reconnects: a line cut by a lost link goes on where it stopped.
        var splitter = LineSplitter()
        let marker = Array(TargetState.Job.confirmMarker.utf8)
        let secretsMarker = Array(TargetState.Job.secretsMarker.utf8)
        var confirming = false
        var secretsAsked = false
        func emit(_ line: [UInt8]) {
            if line == secretsMarker {
                if !secretsAsked { onSecrets?() }
                secretsAsked = true
                return
            }
            // The job repeats it while it waits: the first one counts.
            if line.starts(with: marker) {
                if !confirming { onConfirm?(Int(String(decoding: line.dropFirst(marker.count), as: UTF8.self)) ?? 0) }
                confirming = true
                return
            }
            tail.append(String(decoding: line, as: UTF8.self))
            if tail.count > 20 { tail.removeFirst() }
            report(.output(line))
        }
        while true {
            var errors: [UInt8] = []
            do {
                if session == nil { session = try reopen() }
                let command = TargetState.Job.follow(state, id: id, from: offset, waitForStart: waitForStart)
                let status = try session!.exec(command, cancel: stop ?? cancel, stdout: { chunk in
                    offset += chunk.count
                    splitter.feed(chunk, emit)
                }, stderr: { errors.append(contentsOf: $0) })
                splitter.flush(emit)
                let text = String(decoding: errors, as: UTF8.self)
                if let outcome = TargetState.Job.outcome(stderr: text), outcome.result == .reverted, let reason = outcome.reason {
                    return .reverted(reason: reason, lastLines: tail)
                }
                switch status == .exited(0) ? TargetState.Job.ending(stderr: text) : .noMarker {
                case .exited("0"): return .succeeded
                case .exited(let value): return .rebuildFailed(status: "exit status \(value)", lastLines: tail)
                case .noStatus: return .rebuildFailed(status: "the rebuild job ended without writing its exit status (killed, or the host rebooted)", lastLines: tail)
                case .noMarker:
                    throw DeployError.remote(target: first.name, step: "following the rebuild", detail: "\(status): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
                }
            } catch let error as SSHError where error != .cancelled && Self.isTransient(error) {
                if let s = session, s !== first { s.close() }
                session = nil
                let since = lostSince ?? Date()
                lostSince = since
                if Date().timeIntervalSince(since) >= reconnectTimeout {
                    splitter.flush(emit)
                    return .unknown(operation: operation)
                }
                report(.reconnecting(reason: "\(error)"))
                if cancel?.isCancelled == true || stop?.isCancelled == true { throw SSHError.cancelled }
                usleep(1_000_000)
            }
        }
    }

    /// Errors after which a reconnect may work (not a refused host key or failed login).
    static func isTransient(_ error: SSHError) -> Bool {
        switch error {
        case .connectionLost, .peerUnresponsive, .noExitStatus, .connect, .connectTimeout, .handshakeTimeout, .handshake, .protocolFailure: return true
        default: return false
        }
    }
}
