import FerrySSH
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

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
        return !name.isEmpty && !name.contains("/") && name != "." && name != ".." && name != TargetState.folderName
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
/// ends itself when ferry's heartbeat stops for `TargetState.Holder.heartbeatTimeout` seconds or its channel closes,
/// which frees the lock. The rebuild job is started by that shell and inherits the locked open
/// file, so the lock stays held until the job has written its exit status, even if ferry dies.
/// Unchecked Sendable: its state is read and written only under `condition`.
final class DeployLock: @unchecked Sendable {
    static let heartbeatInterval = 5.0

    enum State { case waiting, busy(LockState), locked, started(Int32) }

    // Guarded by `condition`.
    private var state = State.waiting
    private var stdoutBuffer: [UInt8] = []
    private var stderrText: [UInt8] = []
    private let condition = NSCondition()
    private var pipeFDs: [Int32] = [-1, -1]
    private var timer: DispatchSourceTimer?
    private let thread: Thread

    /// Starts the holder on `session` and waits for the lock: `wait` seconds at most (0: refuse at
    /// once). `onBusy` hears who holds it before the wait. From here on the process group of every
    /// other command on `session` goes to the holder, which ends them if the heartbeat stops.
    init(session: any RemoteShell, root: String, id: String, info: LockHolder, wait: Int, cancel: CancellationToken?,
         inputs: [String]? = nil, onBusy: @escaping (LockHolder?) -> Void) throws {
        // The write end never blocks: a line for a holder that is gone is dropped.
        guard pipe(&pipeFDs) == 0, fcntl(pipeFDs[1], F_SETFL, O_NONBLOCK) == 0 else { throw DeployError.local("cannot create a pipe: \(String(cString: strerror(errno)))") }
        stop = try CancellationToken()
        let command = try TargetState.Holder.command(TargetState(root: root), id: id, holder: info, wait: wait, inputs: inputs)
        asked = inputs != nil
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
    private var manifestsDone = false
    private let asked: Bool
    private var inputValues: [String: String] = [:]
    private var lastRebuildFile: [UInt8]?

    /// What the rebuild's inputs on the host are now (see `TargetState.Holder.fixedInputs`) and the
    /// last rebuild's record, named while the deploy syncs; nil when not asked for, or the holder
    /// ended before naming them.
    var inputs: (values: [String: String], lastRebuild: DeployRecord.Read)? {
        condition.lock()
        defer { condition.unlock() }
        guard asked else { return nil }
        while lastRebuildFile == nil && !done { condition.wait() }
        guard let file = lastRebuildFile else { return nil }
        return (inputValues, DeployRecord.read(file, file: TargetState.rebuildRecordName))
    }

    /// Each source's manifest digest on the target when the lock was taken, by source name
    /// (waits for the holder to have named them all, which it does while the sync runs).
    var recordedManifests: [String: String] {
        condition.lock()
        defer { condition.unlock() }
        while !manifestsDone && !done { condition.wait() }
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
        send(.group(group))
    }

    /// Tells the holder to start the rebuild job; returns the job's pid on the target, or nil when
    /// the holder's link dropped after it was asked (the job may or may not have started: the
    /// follower finds out). Throws when the lock was lost before the request.
    func startRebuild() throws -> Int32? {
        condition.lock()
        defer { condition.unlock() }
        if done { throw DeployError.lockLost(target: target, detail: failure) }
        send(.rebuild)
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
        guard let text = TargetState.Holder.Order.record(record).line else { return false }
        let line = Array((text + "\n").utf8)
        guard line.count <= Int(PIPE_BUF) else { return false }
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
        send(.release)
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(5)
        while !done && Date() < deadline { _ = condition.wait(until: deadline) }
        if !done {
            stop.cancel()
            while !done { condition.wait() }
        }
    }

    private func send(_ order: TargetState.Holder.Order) {
        guard let line = order.line else { return }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(pipeFDs[1], $0.baseAddress, $0.count) }
    }

    private func heartbeat() {
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + Self.heartbeatInterval, repeating: Self.heartbeatInterval)
        t.setEventHandler { [weak self] in self?.send(.beat) }
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
            switch TargetState.Holder.Answer(line: line) {
            case .locked: state = .locked
            case .manifest(let source, let digest): manifests[source] = digest
            case .manifestsDone: manifestsDone = true
            case .recorded: recorded = true
            case .busy(let lock): lastHolder = lock.holder; state = .busy(lock)
            case .started(let pid): state = .started(pid)
            case .input(let key, let value): inputValues[key] = value
            case .inputsDone(let file): lastRebuildFile = file
            case nil: break
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
