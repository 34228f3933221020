import FerrySSH
import FerryTarget
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A host's health checks, run over one shell: all at once, each retrying every `period` until it
/// passes or its `deadline` has passed. Commands run as the deploy's do; HTTP requests go through
/// the SSH connection (a `direct-tcpip` channel), so what they reach is what the host reaches.
public struct HealthChecks: Sendable {
    public let checks: [Fleet.HealthCheck]
    public var ferryVersion: String
    public var cancel: CancellationToken?

    public init(_ checks: [Fleet.HealthCheck], ferryVersion: String = "unknown", cancel: CancellationToken? = nil) {
        self.checks = checks
        self.ferryVersion = ferryVersion
        self.cancel = cancel
    }

    /// The longest any check may take: its deadline and a last try started just before it.
    public var longest: Int { checks.map { $0.deadline + $0.timeout }.max() ?? 0 }

    /// Before anything changes on the host: an `http` check needs the host's sshd to forward
    /// connections, and one that forbids it is a configuration error now, not a failed check
    /// after the switch. A destination that does not answer yet is fine (the service may start
    /// with the switch).
    public func probe(_ shell: any RemoteShell) throws {
        for check in checks {
            guard case .http(let target) = check.probe else { continue }
            do {
                _ = try shell.exchange(host: target.host, port: target.port, send: [], timeout: Double(check.timeout), cancel: cancel) { _ in true }
            } catch SSHError.channelRefused(_, _, .prohibited) {
                throw HealthCheckError.forwardingForbidden(target: shell.name, check: check.name)
            } catch SSHError.channelRefused {
                continue
            }
        }
    }

    /// Runs every check at once; their results in `checks`' order. `onResult` hears each as it
    /// ends, one at a time.
    public func run(on shell: any RemoteShell, onResult: (@Sendable (DeployRecord.CheckResult) -> Void)? = nil) -> [DeployRecord.CheckResult] {
        let results = Mutex<[Int: DeployRecord.CheckResult]>([:])
        let serial = NSLock()
        let group = DispatchGroup()
        for (i, check) in checks.enumerated() {
            group.enter()
            let thread = Thread {
                let result = self.run(check, on: shell)
                serial.lock()
                onResult?(result)
                serial.unlock()
                results.withLock { $0[i] = result }
                group.leave()
            }
            thread.name = "ferry-check"
            thread.start()
        }
        group.wait()
        return results.withLock { all in checks.indices.map { all[$0]! } }
    }

    /// One check, tried until it passes or the next try would start after its deadline.
    func run(_ check: Fleet.HealthCheck, on shell: any RemoteShell) -> DeployRecord.CheckResult {
        let start = Date()
        var tries = 0
        while true {
            tries += 1
            let attempt = once(check, on: shell)
            let elapsed = Date().timeIntervalSince(start)
            if attempt.passed {
                return .init(check: check.name, passed: true, tries: tries, seconds: elapsed, detail: attempt.detail)
            }
            let cancelled = cancel?.isCancelled == true
            if attempt.final || cancelled || elapsed + Double(check.period) > Double(check.deadline) {
                let detail = attempt.detail + (cancelled ? " (interrupted)" : attempt.final || tries == 1 ? "" : " (\(tries) tries in \(Int(elapsed.rounded())) s)")
                return .init(check: check.name, passed: false, tries: tries, seconds: elapsed, detail: detail)
            }
            pause(Double(check.period))
        }
    }

    /// Sleeps, waking early on cancel.
    private func pause(_ seconds: Double) {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end && cancel?.isCancelled != true { usleep(50_000) }
    }

    /// One try: whether it passed, what it found, and whether trying again is pointless.
    func once(_ check: Fleet.HealthCheck, on shell: any RemoteShell) -> (passed: Bool, detail: String, final: Bool) {
        switch check.probe {
        case .command(let argv): return command(argv, timeout: check.timeout, on: shell)
        case .http(let target): return http(target, check: check, on: shell)
        }
    }

    private func command(_ argv: [String], timeout: Int, on shell: any RemoteShell) -> (passed: Bool, detail: String, final: Bool) {
        guard let token = try? CancellationToken() else { return (false, "cannot make a timer", true) }
        // Ends the try at its timeout (the command's process group gets SIGTERM) or at ferry's interrupt.
        let done = Atomic<Bool>(false)
        let outer = cancel
        Thread {
            let end = Date().addingTimeInterval(Double(timeout))
            while Date() < end && !done.load(ordering: .relaxed) && outer?.isCancelled != true { usleep(20_000) }
            if !done.load(ordering: .relaxed) { token.cancel() }
        }.start()
        defer { done.store(true, ordering: .relaxed) }
        var output: [UInt8] = []
        let keep = { (chunk: UnsafeRawBufferPointer) in
            output.append(contentsOf: chunk)
            if output.count > 4096 { output.removeFirst(output.count - 4096) }
        }
        do {
            let status = try shell.exec(RemoteCommand(argv), stdin: nil, cancel: token, stdout: keep, stderr: keep)
            if status == .exited(0) { return (true, "exit status 0", false) }
            let said = Self.lastLine(output)
            return (false, "\(status)" + (said.isEmpty ? "" : ": " + said), false)
        } catch SSHError.cancelled {
            return (false, outer?.isCancelled == true ? "interrupted" : "still running after \(timeout) s (stopped)", false)
        } catch {
            return (false, "\(error)", false)
        }
    }

    private func http(_ target: Fleet.HealthCheck.HTTPTarget, check: Fleet.HealthCheck, on shell: any RemoteShell) -> (passed: Bool, detail: String, final: Bool) {
        let request = "GET \(target.path) HTTP/1.1\r\nHost: \(target.authority)\r\nUser-Agent: ferry/\(ferryVersion)\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        do {
            let reply = try shell.exchange(host: target.host, port: target.port, send: Array(request.utf8), timeout: Double(check.timeout), cancel: cancel) {
                $0.contains(0x0A) || $0.count >= 8192
            }
            guard let status = Self.statusLine(reply.bytes) else {
                switch reply.ending {
                case .timedOut: return (false, reply.bytes.isEmpty ? "no answer within \(check.timeout) s" : "no complete HTTP status line within \(check.timeout) s", false)
                case .closed: return (false, "the connection closed without an HTTP reply", false)
                case .complete: return (false, "not an HTTP reply: \(Self.lastLine(Array(reply.bytes.prefix(80))))", false)
                }
            }
            let detail = "HTTP \(status.code)" + (status.reason.isEmpty ? "" : " \(status.reason)")
            return (check.passes(status: status.code), detail, false)
        } catch SSHError.channelRefused(_, let destination, .prohibited) {
            return (false, HealthCheckError.forwardingForbidden(target: shell.name, check: check.name).advice + " (to \(destination))", true)
        } catch SSHError.channelRefused(_, let destination, .connectFailed) {
            return (false, "connection refused: nothing answers at \(destination) as the host reaches it", false)
        } catch {
            return (false, "\(error)", false)
        }
    }

    /// The health phase's events for `results` (which took `seconds`).
    public static func events(_ results: [DeployRecord.CheckResult], seconds: Double) -> [DeployEvent] {
        let failed = results.filter { !$0.passed }.count
        return [.phaseStarted(.health, detail: results.count == 1 ? "1 check" : "\(results.count) checks")]
            + results.map { .checked($0) }
            + [.phaseFinished(.health, seconds: seconds, detail: failed == 0 ? "passed" : "\(failed) of \(results.count) failed")]
    }

    /// One line for the failed checks among `results` (nil: none failed).
    public static func failureSummary(_ results: [DeployRecord.CheckResult]) -> String {
        let failed = results.filter { !$0.passed }
        return (failed.count == 1 ? "a health check failed: " : "\(failed.count) health checks failed: ")
            + failed.map { "\($0.check): \($0.detail)" }.joined(separator: "; ")
    }

    /// One line for a check's result.
    public static func line(_ r: DeployRecord.CheckResult) -> String {
        "\(r.check): \(r.passed ? "passed" : "FAILED"): \(r.detail)"
            + (r.passed && r.tries > 1 ? " (try \(r.tries), after \(String(format: "%.1f", r.seconds)) s)" : "")
    }

    /// `HTTP/1.x NNN REASON` from the reply's first line.
    static func statusLine(_ bytes: [UInt8]) -> (code: Int, reason: String)? {
        guard let end = bytes.firstIndex(of: 0x0A) else { return nil }
        var line = String(decoding: bytes[..<end], as: UTF8.self)
        if line.hasSuffix("\r") { line.removeLast() }
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let code = Int(parts[1]), (100...599).contains(code) else { return nil }
        return (code, parts.count == 3 ? String(parts[2].prefix(80)) : "")
    }

    /// The last non-empty line of a command's output, shortened.
    static func lastLine(_ bytes: [UInt8]) -> String {
        let line = bytes.split(separator: 0x0A).last.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.count > 200 ? String(trimmed.prefix(200)) + "…" : trimmed
    }
}

public enum HealthCheckError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An `http` check on a host whose sshd will not forward connections.
    case forwardingForbidden(target: String, check: String)

    /// What to do about it.
    var advice: String {
        switch self {
        case .forwardingForbidden:
            return "sshd forbids TCP forwarding (administratively prohibited); allow it for the deploying user (NixOS: services.openssh.settings.AllowTcpForwarding = true), or make it a command check, e.g. command = [\"curl\", \"-fsS\", URL]"
        }
    }

    public var description: String {
        switch self {
        case .forwardingForbidden(let target, let check):
            return "\(target): the health check \(check) goes through the SSH connection, but \(advice); nothing was changed"
        }
    }
}
