import FerrySSH
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Who holds a host's deploy lock, as the holder wrote it in `/var/src/.ferry/lock-info`.
public struct LockHolder: Codable, Equatable, Sendable, CustomStringConvertible {
    public var id: String
    /// user@machine of the operator who runs ferry.
    public var operator_: String
    /// ferry's pid on the operator's machine.
    public var pid: Int32
    public var since: String
    /// What holds it: "deploy" (also when absent, as older records are) or "sync" (`ferry sync`
    /// into `/var/src/NAME`).
    public var command: String?
    /// Set from the target's answer: the holder's rebuild job is alive (kill -0).
    public var rebuildRunning = false

    enum CodingKeys: String, CodingKey { case id, operator_ = "operator", pid, since, command }

    public init(id: String, operator_: String, pid: Int32, since: String, command: String? = nil) {
        self.id = id
        self.operator_ = operator_
        self.pid = pid
        self.since = since
        self.command = command
    }

    /// Who holds the lock when no live holder is recorded.
    public static let notFerrys = "a process that is not ferry's (no live holder is recorded)"

    public var description: String {
        "\(command ?? "deploy") \(id) by \(operator_) (ferry pid \(pid)) since \(since)" + (rebuildRunning ? ", rebuild running" : "")
    }
}

/// A `ferry sync` into `ROOT/NAME` outside a deploy holds the host's deploy lock while it runs, as
/// a deploy does, so that it never replaces a tree under a running rebuild. Lock order, as in a
/// deploy: the deploy lock first, then the destination's own.
public enum SyncDeployLock {
    /// Whether a sync into `path` takes the deploy lock of `root`: `path` is one of its sources' folders.
    public static func applies(to path: String, root: String = "/var/src") -> Bool {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard p.hasPrefix(root + "/") else { return false }
        let name = p.dropFirst(root.count + 1)
        return !name.isEmpty && !name.contains("/") && name != "." && name != ".." && name != ".ferry"
    }

    /// Runs `body` holding `root`'s deploy lock on `session`: `wait` seconds at most for another
    /// holder (0: refuse at once), `onBusy` told who it is first. Throws `DeployError.lockHeld`.
    public static func holding<T>(session: any RemoteShell, root: String = "/var/src", wait: Int, cancel: CancellationToken?,
                                  onBusy: @escaping (LockHolder?) -> Void, _ body: () throws -> T) throws -> T {
        let me = LockHolder(id: DeployRecord.newID(), operator_: Deployment.operatorName, pid: getpid(),
                            since: DeployRecord.timestamp(), command: "sync")
        let lock = try DeployLock(session: session, root: root, id: me.id, info: me, wait: wait, cancel: cancel, onBusy: onBusy)
        defer { lock.release() }
        return try body()
    }
}

/// The host's deploy lock: `flock` on `/var/src/.ferry/lock`, held by a remote shell that a thread
/// of its own runs on the deploy's session, beside the deploy's other commands. The shell
/// ends itself when ferry's heartbeat stops for `heartbeatTimeout` seconds or its channel closes,
/// which frees the lock. The rebuild job is started by that shell and inherits the locked open
/// file, so the lock stays held until the job has written its exit status, even if ferry dies.
/// Unchecked Sendable: its state is read and written only under `condition`.
final class DeployLock: @unchecked Sendable {
    static let heartbeatInterval = 5.0
    static let heartbeatTimeout = 30

    enum State { case waiting, busy(HostStatus.Lock), locked, started(Int32) }

    // Guarded by `condition`.
    private var state = State.waiting
    private var stdoutBuffer: [UInt8] = []
    private var stderrText: [UInt8] = []
    private let condition = NSCondition()
    private var pipeFDs: [Int32] = [-1, -1]
    private var timer: DispatchSourceTimer?
    private let thread: Thread

    /// Holder script. $1 root, $2 deploy id, $3 the lock-info line, $4 seconds to wait for the lock.
    static let holderScript = #"""
    root=$1 id=$2 info=$3 wait=$4
    state=$root/.ferry tab=$(printf '\t')
    # The state is root's alone (logs and records may hold what an operator would not publish);
    # the root above it, and the sources in it, stay readable for the services that use them.
    [ -d "$root" ] || (umask 022 && mkdir -p "$root") || exit 1
    umask 077
    [ -d "$state/deploys" ] || mkdir -p "$state/deploys" || exit 1
    exec 9>>"$state/lock" || exit 1
    if ! flock -n 9; then
      \#(TargetState.lockQuery)
      lock_state
      # A status or unlock asking the same question holds the lock for an instant: free now, it
      # is taken after a second's grace at most, never called busy.
      if ! { [ "$held" = free ] && flock -w 1 9; }; then
        printf 'busy %s %s\n' "$held" "$info"
        [ "$wait" -gt 0 ] && flock -w "$wait" 9 || exit 75
      fi
    fi
    # State an earlier ferry left open is closed now (chmod skips what is right already).
    chmod -R go= "$state" 2>/dev/null
    # Who holds it now (line 1) and the deploy's id (line 2), for `ferry status` and `ferry unlock`.
    printf '%s\n%s\n' "$info" "$id" > "$state/lock-info.tmp" && mv -f "$state/lock-info.tmp" "$state/lock-info" || exit 1
    printf '%s\n' "$$" > "$state/lock-pid"
    hb=$state/heartbeat
    # Emptied, not removed, on the way out: no process. (The heartbeat files are reused.)
    trap ': > "$state/lock-pid"' EXIT
    # The first line of each manifest names its digest: a deploy that would write the same skips it.
    for m in "$state"/*/manifest; do
      [ -f "$m" ] && IFS= read -r h < "$m" || continue
      case $h in "ferry-manifest sha256:"*) n=${m%/manifest}; printf 'manifest %s %s\n' "${h#ferry-manifest }" "${n##*/}" ;; esac
    done
    echo locked
    # No line for \#(heartbeatTimeout) s (ferry gone, the link blackholed), or the channel
    # closed: the deploy is gone. Its other commands (a sync waiting on a blackholed link) end
    # too, so nothing keeps a lock. A line costs no process: the reader touches a file, and a
    # watchdog looks every 5 s whether it is newer than a mark made \#(heartbeatTimeout) s before.
    : > "$hb"
    ( exec 9>&-
      trap 'kill $s 2>/dev/null; exit 0' TERM
      i=0
      while :; do
        m=$hb.$((i % \#(heartbeatTimeout / 5)))
        if [ $i -ge \#(heartbeatTimeout / 5) ] && ! [ "$hb" -nt "$m" ]; then kill -TERM $$; exit 0; fi
        : > "$m"
        sleep 5 & s=$!
        wait $s
        i=$((i + 1))
      done ) </dev/null >/dev/null 2>&1 &
    watchdog=$!
    groups=
    gone() { kill $watchdog 2>/dev/null; for g in $groups; do kill -TERM "-$g" 2>/dev/null; done; exit 0; }
    trap gone TERM
    while IFS= read -r line || gone; do
      : > "$hb"
      case $line in
        group\ *) groups="$groups ${line#group }" ;;
        rebuild)
          kill $watchdog 2>/dev/null
          d=$state/deploys/$id
          # The job gets the locked open file on its stdin (systemd-run --pipe passes it on).
          if [ -d /run/systemd/system ]; then
            setsid systemd-run --unit "ferry-deploy-$id" --collect --pipe --quiet \
              --setenv=PATH="$PATH" ${NIX_PATH:+"--setenv=NIX_PATH=$NIX_PATH"} ${LOCALE_ARCHIVE:+"--setenv=LOCALE_ARCHIVE=$LOCALE_ARCHIVE"} \
              -- /bin/sh "$d/job.sh" <&9 >/dev/null 2>&1 &
          else
            setsid /bin/sh "$d/job.sh" <&9 >/dev/null 2>&1 &
          fi
          i=0
          while [ ! -s "$d/pid" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
          [ -s "$d/pid" ] || { echo "the rebuild job did not start within 30 s" >&2; exit 1; }
          printf 'started %s\n' "$(cat "$d/pid")"
          exit 0 ;;
        # A --sync-only deploy's record (its outcome line, a tab, its base), then the end.
        record\ *)
          kill $watchdog 2>/dev/null
          r=${line#record }
          outcome=${r%%"$tab"*} base=${r#*"$tab"}
          printf '%s\n%s\n' "$base" "$outcome" > "$state/\#(TargetState.syncRecordName).tmp" &&
            mv -f "$state/\#(TargetState.syncRecordName).tmp" "$state/\#(TargetState.syncRecordName)" && echo recorded
          exit 0 ;;
        release) kill $watchdog 2>/dev/null; exit 0 ;;
      esac
    done
    """#

    /// Starts the holder on `session` and waits for the lock: `wait` seconds at most (0: refuse at
    /// once). `onBusy` hears who holds it before the wait. From here on the process group of every
    /// other command on `session` goes to the holder, which ends them if the heartbeat stops.
    init(session: any RemoteShell, root: String, id: String, info: LockHolder, wait: Int, cancel: CancellationToken?,
         onBusy: @escaping (LockHolder?) -> Void) throws {
        // The write end never blocks: a line for a holder that is gone is dropped.
        guard pipe(&pipeFDs) == 0, fcntl(pipeFDs[1], F_SETFL, O_NONBLOCK) == 0 else { throw DeployError.local("cannot create a pipe: \(String(cString: strerror(errno)))") }
        stop = try CancellationToken()
        let infoLine = String(decoding: try JSONEncoder().encode(info), as: UTF8.self)
        let command = RemoteCommand.script(Self.holderScript, arguments: [root, id, infoLine, String(wait)].map { Array($0.utf8) })
        let input = FileDescriptorInput(descriptor: pipeFDs[0])
        target = session.name
        let box = Box()
        let stop = self.stop
        thread = Thread {
            let status: String
            do {
                let s = try session.exec(command, stdin: input, cancel: stop, stdout: { box.lock?.feed($0) }, stderr: { box.lock?.feedError($0) })
                status = s == .exited(75) ? "refused" : "\(s)"
            } catch {
                status = "\(error)"
            }
            box.lock?.finish(status)
        }
        box.lock = self
        // Set before the holder's thread starts, which reads it too (and is skipped: its own
        // group is the holder's).
        session.onRemoteProcessGroup = { [weak box] group in box?.lock?.noteProcessGroup(group) }
        thread.start()
        heartbeat()

        condition.lock()
        defer { condition.unlock() }
        var told = false
        while true {
            if case .locked = state { return }
            if case .busy = state, !told {
                told = true
                let who = lastHolder
                condition.unlock(); onBusy(who); condition.lock()
                continue
            }
            if done {
                condition.unlock(); defer { condition.lock() }
                if ended == "refused" { throw DeployError.lockHeld(target: target, holder: lastHolder, waited: wait) }
                throw DeployError.remote(target: target, step: "taking the deploy lock", detail: failure)
            }
            if cancel?.isCancelled == true {
                condition.unlock(); defer { condition.lock() }
                release()
                throw SSHError.cancelled
            }
            _ = condition.wait(until: Date().addingTimeInterval(0.2))
        }
    }

    private let stop: CancellationToken
    private let target: String
    private var lastHolder: LockHolder?
    private var done = false
    private var ended = ""
    private var recorded = false
    private var manifests: [String: String] = [:]

    /// Each source's manifest digest on the target when the lock was taken, by source name.
    var recordedManifests: [String: String] {
        condition.lock()
        defer { condition.unlock() }
        return manifests
    }

    private var failure: String {
        let stderr = String(decoding: stderrText, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return stderr.isEmpty ? ended : "\(ended): \(stderr)"
    }

    deinit {
        timer?.cancel()
        close(pipeFDs[1])
        close(pipeFDs[0])
    }

    /// The process group of a command this deploy runs beside the holder.
    private func noteProcessGroup(_ group: Int32) {
        guard Thread.current !== thread else { return }
        send("group \(group)")
    }

    /// Tells the holder to start the rebuild job; returns the job's pid on the target, or nil when
    /// the holder's link dropped after it was asked (the job may or may not have started: the
    /// follower finds out). Throws when the lock was lost before the request.
    func startRebuild() throws -> Int32? {
        condition.lock()
        defer { condition.unlock() }
        if done { throw DeployError.lockLost(target: target, detail: failure) }
        send("rebuild")
        while true {
            if case .started(let pid) = state { return pid }
            if done { return nil }
            condition.wait()
        }
    }

    /// Writes a `--sync-only` deploy's record (its outcome set) and ends the holder, which frees
    /// the lock: no command of its own. False when the holder could not be asked (the line is
    /// too long for one atomic write, or the pipe is full); throws when it was asked and did not
    /// write it.
    func finishSyncOnly(_ record: DeployRecord) throws -> Bool {
        guard let outcome = record.outcome else { return false }
        let line = Array("record \(outcome.line)\t\(record.json)\n".utf8)
        guard line.count <= Int(PIPE_BUF), !line.dropLast().contains(UInt8(ascii: "\n")) else { return false }
        condition.lock()
        if done { condition.unlock(); throw DeployError.lockLost(target: target, detail: failure) }
        condition.unlock()
        guard line.withUnsafeBytes({ write(pipeFDs[1], $0.baseAddress, $0.count) }) == line.count else { return false }
        timer?.cancel()
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(30)
        while !done && Date() < deadline { _ = condition.wait(until: deadline) }
        if !done {
            condition.unlock(); defer { condition.lock() }
            stop.cancel()
        }
        while !done { condition.wait() }
        guard recorded else { throw DeployError.remote(target: target, step: "writing the record", detail: failure) }
        return true
    }

    /// Ends the holder (the lock goes with it unless a rebuild job holds it) and waits until
    /// its thread is done with the session, so the caller may close it.
    func release() {
        timer?.cancel()
        send("release")
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(5)
        while !done && Date() < deadline { _ = condition.wait(until: deadline) }
        if !done {
            stop.cancel()
            while !done { condition.wait() }
        }
    }

    private func send(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(pipeFDs[1], $0.baseAddress, $0.count) }
    }

    private func heartbeat() {
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + Self.heartbeatInterval, repeating: Self.heartbeatInterval)
        t.setEventHandler { [weak self] in self?.send("beat") }
        t.resume()
        timer = t
    }

    // Called on the holder thread.
    fileprivate func feed(_ chunk: UnsafeRawBufferPointer) {
        condition.lock()
        defer { condition.unlock() }
        stdoutBuffer.append(contentsOf: chunk)
        while let newline = stdoutBuffer.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: stdoutBuffer[..<newline], as: UTF8.self)
            stdoutBuffer.removeSubrange(...newline)
            if line == "locked" {
                state = .locked
            } else if line.hasPrefix("manifest ") {
                let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
                if parts.count == 3 { manifests[parts[2]] = parts[1] }
            } else if line == "recorded" {
                recorded = true
            } else if line.hasPrefix("busy ") {
                let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
                let lock = HostStatus.Lock(word: parts.count > 1 ? parts[1] : "", info: Array((parts.count == 3 ? parts[2] : "").utf8))
                lastHolder = lock.holder
                state = .busy(lock)
            } else if line.hasPrefix("started "), let pid = Int32(line.dropFirst(8)) {
                state = .started(pid)
            }
            condition.broadcast()
        }
    }

    fileprivate func feedError(_ chunk: UnsafeRawBufferPointer) {
        condition.lock()
        stderrText.append(contentsOf: chunk.prefix(4096))
        condition.unlock()
    }

    fileprivate func finish(_ how: String) {
        condition.lock()
        ended = how
        done = true
        condition.broadcast()
        condition.unlock()
    }

    /// Lets the holder thread reach the lock without keeping it alive. Unchecked: `lock` is set
    /// before the thread starts and never written after.
    private final class Box: @unchecked Sendable { weak var lock: DeployLock? }
}
