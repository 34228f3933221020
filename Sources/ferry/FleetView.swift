import FerryDeploy
import FerrySSH
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Renders the events of one or many hosts' deploys, from the hosts' threads:
/// - plain (not a terminal): every line `HOST | …`, each written whole under one lock, so no
///   line ever mixes two hosts;
/// - terminal: the same scrolling lines, plus a live status line per running host redrawn in place
///   below them (colour unless NO_COLOR is set);
/// - JSON Lines: one object per event and a summary, and nothing else on stdout.
/// Control characters from targets are escaped in text modes (the per-host logs keep them raw).
/// Unchecked Sendable: `running`, `ticker` and `drawn` are touched only under `lock`.
final class FleetView: @unchecked Sendable {
    enum Mode { case plain, terminal, json }

    let mode: Mode
    let stats: Bool
    /// Also what a `--skip-unchanged` deploy compared.
    let verbose: Bool
    /// The terminal's lock: a passphrase prompt and the drawing never overlap.
    private let lock = TerminalPrompt.lock
    // Guarded by `lock`.
    private var running: [(host: String, status: String, since: Date, files: Int, bytes: Int64)] = []
    private var ticker: DispatchSourceTimer?
    private var drawn = 0
    private let colour: Bool

    init(json: Bool, stats: Bool, verbose: Bool = false) {
        mode = json ? .json : (isatty(1) == 1 ? .terminal : .plain)
        self.stats = stats
        self.verbose = verbose
        colour = mode == .terminal && SSHConfiguration.environment("NO_COLOR") == nil
        if mode == .terminal {
            // Elapsed times move even while a host prints nothing (a long build).
            let t = DispatchSource.makeTimerSource(queue: .global())
            t.schedule(deadline: .now() + 1, repeating: 1)
            t.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock()
                defer { self.lock.unlock() }
                if !self.running.isEmpty { self.write([]) }
            }
            t.resume()
            ticker = t
        }
    }

    deinit { ticker?.cancel() }

    func show(_ host: String, _ event: DeployEvent) {
        if mode == .json { return emitJSON(JSONLines.Event(host: host, event)) }
        // The log's words. A phase's start is a line for the rebuild only (the live line shows the rest).
        let text = DeployEventText.line(event)
        var lines = [text]
        var status: String?
        switch event {
        case .phaseStarted(let phase, let detail):
            status = "\(phase.rawValue) \(detail)"
            if phase != .rebuild { lines = [] }
        case .lockBusy: status = "waiting for the lock"
        case .reconnecting: status = "reconnecting"
        case .sourceSynced(let name, let result):
            if stats {
                lines.append("  \(name): \(result.filesScanned) entries scanned (\(result.bytesScanned) bytes), \(result.bytesSent) bytes streamed, \(String(format: "%.3f", result.seconds)) s")
            }
            for kept in result.plan.keptDirectories { lines.append("warning: kept \(name)/\(String(decoding: kept, as: UTF8.self)): it holds excluded entries") }
            if let resolved = result.resolvedDestination { lines.append("note: \(name) is in \(resolved) (a folder above it is a symlink)") }
        case .output(let line): lines = [DisplayText.escape(line)]  // from the bytes: an invalid one is shown, not replaced
        case .compared(let comparison):
            if verbose { lines += comparison.compared.map { "  compared: " + $0 } }
        case .phaseFinished, .warning, .checked, .secret: break
        }
        lock.lock()
        defer { lock.unlock() }
        if running.firstIndex(where: { $0.host == host }) == nil { running.append((host, "starting", Date(), 0, 0)) }
        let i = running.firstIndex { $0.host == host }!
        if let status { running[i].status = status }
        if case .sourceSynced(_, let r) = event {
            running[i].files += r.plan.sends.count
            running[i].bytes += r.plan.bytesToSend
        }
        write(lines.map { prefix(host) + DisplayText.escape($0) })
    }

    /// A host is done: its status line goes, its result line stays.
    func finished(_ outcome: FleetDeployment.HostOutcome) {
        if mode == .json {
            return emitJSON(JSONLines.Result(host: outcome.host, result: Self.resultName(outcome.state), phase: outcome.phase?.rawValue, error: outcome.cause,
                                             files_sent: outcome.filesSent, bytes_sent: outcome.bytesSent, seconds: outcome.seconds,
                                             log: outcome.logFile, deploy_id: outcome.deployID))
        }
        lock.lock()
        defer { lock.unlock() }
        running.removeAll { $0.host == outcome.host }
        guard outcome.state != .notStarted else { return write([]) }
        write([prefix(outcome.host) + DisplayText.escape(Self.resultText(outcome))])
    }

    /// The table at the end, always (JSON: the summary object).
    func summary(_ outcomes: [FleetDeployment.HostOutcome], exitStatus: Int32) {
        if mode == .json {
            return emitJSON(JSONLines.Summary(hosts: outcomes.count, counting: ["deployed", "synced", "unchanged", "failed", "unknown", "interrupted", "not-started"],
                                              found: outcomes.map { Self.resultName($0.state) }, exitStatus: exitStatus,
                                              failedHosts: outcomes.filter { $0.state == .failed }.map(\.host)))
        }
        table(header: ["RESULT", "FILES", "BYTES", "TIME", "DETAIL"], outcomes.map { o in
            var detail = o.cause ?? ""
            if let phase = o.phase, o.state == .failed { detail = "\(phase.rawValue): " + detail }
            if o.state == .failed || o.state == .unknown, let log = o.logFile { detail += " (log: \(log))" }
            return (o.host, [Self.stateWord(o.state), String(o.filesSent), String(o.bytesSent), String(format: "%.2f s", o.seconds), detail])
        })
    }

    // MARK: - exec

    /// A host's command is about to run on `target` (as resolved).
    func execStarted(_ host: String, target: String) {
        if mode == .json {
            var event = JSONLines.Event(host: host, phase: "exec", state: "started")
            event.detail = target
            return emitJSON(event)
        }
        execLine(host, Array(target.utf8), stream: .stdout)
    }

    /// One line of a host's command's output.
    func execLine(_ host: String, _ bytes: [UInt8], stream: CommandRun.Stream) {
        if mode == .json {
            var event = JSONLines.Event(host: host, phase: "exec", state: "output")
            event.stream = stream.rawValue
            event.line = String(decoding: bytes, as: UTF8.self)
            return emitJSON(event)
        }
        lock.lock()
        defer { lock.unlock() }
        let line = prefix(host) + DisplayText.escape(bytes) + "\n"
        if stream == .stderr {
            line.utf8CString.withUnsafeBufferPointer { writeAll(2, UnsafeRawBufferPointer(start: $0.baseAddress, count: $0.count - 1)) }
        } else {
            write([String(line.dropLast())])
        }
    }

    func execFinished(_ host: String, _ outcome: CommandRun.Outcome) {
        guard mode == .json else { return }
        let ok = outcome.status == .exited(0)
        emitJSON(JSONLines.Result(host: host, result: ok ? "ok" : (outcome.interrupted ? "interrupted" : "failed"),
                                  phase: ok ? nil : Self.execPhase(outcome), error: ok ? nil : Self.execCause(outcome),
                                  seconds: outcome.seconds, exit_status: outcome.status?.shellCode))
    }

    func execSummary(_ hosts: [String], _ outcomes: [CommandRun.Outcome?], exitStatus: Int32) {
        let words = outcomes.map { o -> String in
            guard let o else { return "not-started" }
            return o.status == .exited(0) ? "ok" : (o.interrupted ? "interrupted" : "failed")
        }
        if mode == .json {
            return emitJSON(JSONLines.Summary(hosts: hosts.count, counting: ["deployed", "synced", "failed", "unknown", "interrupted", "not-started", "ok"],
                                              found: words, exitStatus: exitStatus,
                                              failedHosts: zip(hosts, words).filter { $0.1 == "failed" }.map(\.0)))
        }
        table(header: ["RESULT", "TIME", "DETAIL"], zip(hosts, zip(outcomes, words)).map { host, row in
            let (o, word) = row
            let result = word == "ok" ? "ok" : (word == "failed" ? "FAILED" : word.replacingOccurrences(of: "-", with: " "))
            return (host, [result, String(format: "%.2f s", o?.seconds ?? 0), o.map(Self.execCause) ?? ""])
        })
    }

    /// Where a command's run ended: the command itself, or the connection under it.
    static func execPhase(_ o: CommandRun.Outcome) -> String {
        o.error != nil && !o.interrupted ? "connect" : "exec"
    }

    static func execCause(_ o: CommandRun.Outcome) -> String {
        if let status = o.status { return "\(status)" }
        if o.interrupted { return "interrupted; the remote command was sent SIGTERM" }
        return o.error.map { "\($0)" } ?? "failed"
    }

    // MARK: - check

    /// A host's checks are over: its status line goes, its result line stays (JSON: its result).
    func checkFinished(_ host: String, _ outcome: FleetCheck.Outcome) {
        if mode == .json {
            return emitJSON(JSONLines.Result(host: host, result: Self.checkWord(outcome), phase: outcome.passed ? nil : (outcome.error == nil ? "health" : "connect"),
                                               error: Self.checkCause(outcome), seconds: outcome.seconds))
        }
        let word = Self.checkWord(outcome)
        lock.lock()
        defer { lock.unlock() }
        running.removeAll { $0.host == host }
        write([prefix(host) + DisplayText.escape("health: " + (word == "passed" ? "passed" : word.uppercased() + ": " + (Self.checkCause(outcome) ?? "")))
               + String(format: " (%.2f s)", outcome.seconds)])
    }

    func checkSummary(_ hosts: [String], _ outcomes: [FleetCheck.Outcome?], exitStatus: Int32) {
        let words = outcomes.map { $0.map(Self.checkWord) ?? "not-started" }
        if mode == .json {
            return emitJSON(JSONLines.Summary(hosts: hosts.count, counting: ["passed", "failed", "unreachable", "interrupted", "not-started"],
                                                found: words, exitStatus: exitStatus,
                                                failedHosts: zip(hosts, words).filter { $0.1 == "failed" || $0.1 == "unreachable" }.map(\.0)))
        }
        table(header: ["RESULT", "TIME", "DETAIL"], zip(hosts, zip(outcomes, words)).map { host, row in
            let (o, word) = row
            return (host, [word == "passed" ? "passed" : word == "failed" ? "FAILED" : word.replacingOccurrences(of: "-", with: " "),
                           String(format: "%.2f s", o?.seconds ?? 0), o.flatMap(Self.checkCause) ?? ""])
        })
    }

    static func checkWord(_ o: FleetCheck.Outcome) -> String {
        if (o.error as? SSHError) == .cancelled { return "interrupted" }
        if o.error != nil { return "unreachable" }
        return o.passed ? "passed" : "failed"
    }

    static func checkCause(_ o: FleetCheck.Outcome) -> String? {
        if let error = o.error { return "\(error)" }
        let failed = o.results.filter { !$0.passed }
        return failed.isEmpty ? "\(o.results.count) of \(o.results.count) passed" : HealthChecks.failureSummary(o.results)
    }

    /// The summary table after the live block is gone: columns padded, the last one (the
    /// detail) as it is, its first line only, escaped.
    private func table(header: [String], _ rows: [(host: String, cells: [String])]) {
        ticker?.cancel()
        lock.lock()
        defer { lock.unlock() }
        running.removeAll()
        erase()
        let all: [(String, [String])] = [("HOST", header)] + rows.map { row in
            var cells = row.cells
            if let detail = cells.popLast() { cells.append(DisplayText.escape(detail.split(separator: "\n").first.map(String.init) ?? "")) }
            return (row.host, cells)
        }
        var widths = [Int](repeating: 0, count: header.count + 1)
        for (host, cells) in all {
            widths[0] = max(widths[0], host.count)
            for (i, cell) in cells.enumerated() { widths[i + 1] = max(widths[i + 1], cell.count) }
        }
        var text = "\n"
        for (host, cells) in all {
            var line = host.padding(toLength: widths[0], withPad: " ", startingAt: 0)
            for (i, cell) in cells.enumerated() {
                line += "  " + (i == cells.count - 1 ? cell : cell.padding(toLength: widths[i + 1], withPad: " ", startingAt: 0))
            }
            text += line.trimmingCharacters(in: CharacterSet.whitespaces) + "\n"
        }
        rawWrite(text)
    }

    static func stateWord(_ state: FleetDeployment.HostOutcome.State) -> String {
        switch state {
        case .succeeded: return "deployed"
        case .syncOnly: return "synced"
        case .unchanged: return "unchanged"
        case .failed: return "FAILED"
        case .unknown: return "unknown"
        case .interrupted: return "interrupted"
        case .notStarted: return "not started"
        }
    }

    static func resultText(_ o: FleetDeployment.HostOutcome) -> String {
        switch o.state {
        case .succeeded: return "deployed (\(o.operation ?? "?"), deploy \(o.deployID ?? "?")) in \(String(format: "%.2f", o.seconds)) s"
        case .syncOnly where o.operation == "secrets-only": return "secrets written (no sync, no rebuild) in \(String(format: "%.2f", o.seconds)) s"
        case .syncOnly: return "synced (deploy \(o.deployID ?? "?"), no rebuild) in \(String(format: "%.2f", o.seconds)) s"
        case .unchanged: return "\(o.cause ?? "unchanged") in \(String(format: "%.2f", o.seconds)) s"
        case .failed: return "FAILED in \(o.phase?.rawValue ?? "?"): \(o.cause ?? "")"
        case .unknown: return "unknown: \(o.cause ?? "")"
        case .interrupted: return "interrupted"
        case .notStarted: return "not started"
        }
    }

    // MARK: - Drawing (under `lock`)

    private func prefix(_ host: String) -> String {
        colour ? "\u{1B}[1m\(host)\u{1B}[0m | " : "\(host) | "
    }

    private func write(_ lines: [String]) {
        guard mode == .terminal else { return rawWrite(lines.map { $0 + "\n" }.joined()) }
        var text = eraseSequence()
        text += lines.map { $0 + "\n" }.joined()
        // The live block: one line per running host, cut to the terminal's width so that the
        // cursor arithmetic holds.
        let columns = Self.columns()
        let now = Date()
        for r in running {
            var line = "\(r.host): \(r.status) · \(r.files) files, \(Self.size(r.bytes)) sent · \(Int(now.timeIntervalSince(r.since))) s"
            line = DisplayText.escape(line)
            if line.count >= columns { line = String(line.prefix(max(1, columns - 1))) }
            text += (colour ? "\u{1B}[2m" + line + "\u{1B}[0m" : line) + "\n"
        }
        drawn = running.count
        rawWrite(text)
    }

    private func erase() {
        guard mode == .terminal else { return }
        rawWrite(eraseSequence())
        drawn = 0
    }

    private func eraseSequence() -> String {
        drawn > 0 ? "\u{1B}[\(drawn)A\r\u{1B}[J" : ""
    }

    private func emitJSON(_ line: some Encodable) {
        let text = JSONLines.line(line) + "\n"
        lock.lock()
        defer { lock.unlock() }
        rawWrite(text)
    }

    private func rawWrite(_ text: String) {
        text.utf8CString.withUnsafeBufferPointer { buf in
            writeAll(1, UnsafeRawBufferPointer(start: buf.baseAddress, count: buf.count - 1))
        }
    }

    static func size(_ bytes: Int64) -> String {
        bytes < 1_000_000 ? "\(bytes / 1000) kB" : String(format: "%.1f MB", Double(bytes) / 1e6)
    }

    static func columns() -> Int {
        var size = winsize()
        return ioctl(1, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 80
    }
}

extension FleetView {
    /// A deploy result's name in JSON.
    static func resultName(_ state: FleetDeployment.HostOutcome.State) -> String {
        switch state {
        case .succeeded: return "deployed"
        case .syncOnly: return "synced"
        case .unchanged: return "unchanged"
        case .failed: return "failed"
        case .unknown: return "unknown"
        case .interrupted: return "interrupted"
        case .notStarted: return "not-started"
        }
    }
}
