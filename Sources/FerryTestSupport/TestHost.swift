import FerrySSH
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One real OpenSSH sshd on 127.0.0.1, in its own mount and PID namespace, whose `/var/src`,
/// `/run/current-system`, `/root` (and, with extra users, `/etc/passwd`, `/etc/shadow`,
/// `/etc/group`, `/etc/sudoers.d`) are private directories under `directory`.
/// Unchecked Sendable: every stored property is a constant; `Process` is only signalled and waited on.
public final class TestHost: @unchecked Sendable {
    public let name: String
    public let port: Int
    /// Host-side paths of the private directories.
    public let directory: String
    public var varSrc: String { directory + "/var-src" }
    public var currentSystem: String { directory + "/current-system" }
    public var standInState: String { directory + "/stand-in" }
    public let users: [TestUser]
    private let process: Process

    public var address: String { "127.0.0.1" }

    public func target(user: String = "root") -> SSHTarget {
        SSHTarget(user: user, host: address, port: port)
    }

    init(name: String, port: Int, directory: String, users: [TestUser], process: Process) {
        self.name = name
        self.port = port
        self.directory = directory
        self.users = users
        self.process = process
    }

    /// The public host keys, as `type base64` lines (for known_hosts).
    public func hostPublicKey(_ type: String) throws -> String {
        try String(contentsOfFile: "\(directory)/etc/ssh_host_\(type)_key.pub", encoding: .utf8)
            .split(separator: " ").prefix(2).joined(separator: " ")
    }

    /// `nixos-rebuild` stand-in calls so far, one line each ("nixos-rebuild switch -I …").
    public func standInCalls() -> [String] {
        let text = (try? String(contentsOfFile: standInState + "/calls.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    /// `systemd-run` stand-in calls so far, one line each.
    public func systemdRunCalls() -> [String] {
        let text = (try? String(contentsOfFile: standInState + "/systemd-run.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    /// With real generations: what `/run/current-system` points at, and the system profile's
    /// store path (nil: none yet).
    public var runningSystem: String? { try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/run/current-system") }
    public var profileSystem: String? {
        guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/profiles/system") else { return nil }
        return try? FileManager.default.destinationOfSymbolicLink(atPath: link.hasPrefix("/") ? link : directory + "/profiles/" + link)
    }

    /// The activations of the stand-in systems so far ("switch /nix/store/…"), one line each.
    public func activations() -> [String] {
        let text = (try? String(contentsOfFile: standInState + "/activations.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    /// The `systemctl` stand-in's calls ("restart UNIT"), oldest first.
    public func systemctlCalls() -> [String] {
        let text = (try? String(contentsOfFile: standInState + "/systemctl.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map { String($0.dropFirst("systemctl ".count)) }
    }

    /// The next activations create the service user `name` (uid `uid`) in the host's private
    /// account files (the host must have them: started with `users`); nil: they create none.
    public func activationCreatesUser(_ name: String?, uid: Int = 4300) {
        let path = standInState + "/create-user"
        if let name { try? "\(name) \(uid)\n".write(toFile: path, atomically: true, encoding: .utf8) } else { try? FileManager.default.removeItem(atPath: path) }
    }

    /// While held, a stand-in system's switch-to-configuration waits (at most 120 s) before it
    /// activates.
    public func holdActivation(_ held: Bool) {
        let path = standInState + "/hold-activation"
        if held { _ = FileManager.default.createFile(atPath: path, contents: nil) } else { try? FileManager.default.removeItem(atPath: path) }
    }

    /// Back to how the harness made it, for the next test: no deploys in `/var/src`, no stand-in
    /// requests or logs (its installed files stay), no system activated (`/run/current-system`
    /// back at the host's tools, no profile generations), the authorized keys in place.
    public func reset() {
        let fm = FileManager.default
        let kept: Set<String> = ["generations", "system-builder.sh", "switch-to-configuration"]
        for dir in [varSrc, standInState, directory + "/profiles"] {
            for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where dir != standInState || !kept.contains(name) {
                try? fm.removeItem(atPath: dir + "/" + name)
            }
        }
        let run = directory + "/run/current-system"
        if (try? fm.destinationOfSymbolicLink(atPath: run)) != nil && (try? fm.destinationOfSymbolicLink(atPath: run)) != currentSystem {
            try? fm.removeItem(atPath: run)
            try? fm.createSymbolicLink(atPath: run, withDestinationPath: currentSystem)
        }
        let keys = directory + "/authorized_keys"
        if fm.fileExists(atPath: keys + ".aside") && !fm.fileExists(atPath: keys) { try? fm.moveItem(atPath: keys + ".aside", toPath: keys) }
    }

    /// What the stand-ins do on request (see `StandIn`): "break-login" (the next system built
    /// moves the authorized keys aside when activated), "fail-activation", "switch-lock-busy".
    public func standIn(_ flag: String, _ on: Bool) {
        let path = standInState + "/" + flag
        if on { _ = FileManager.default.createFile(atPath: path, contents: nil) } else { try? FileManager.default.removeItem(atPath: path) }
    }

    /// While held, the nixos-rebuild stand-in waits (at most 120 s) before it does its work.
    public func holdRebuild(_ held: Bool) {
        let path = standInState + "/hold"
        if held { _ = FileManager.default.createFile(atPath: path, contents: nil) } else { try? FileManager.default.removeItem(atPath: path) }
    }

    /// Makes the stand-in print one line of `bytes` bytes (nil: none).
    public func setStandInSpew(_ bytes: Int?) throws {
        let path = standInState + "/spew"
        if let bytes { try String(bytes).write(toFile: path, atomically: true, encoding: .utf8) } else { try? FileManager.default.removeItem(atPath: path) }
    }

    /// Makes the stand-in fail with `message` (nil: succeed again).
    public func setStandInFailure(_ message: String?) throws {
        let path = standInState + "/fail"
        if let message { try message.write(toFile: path, atomically: true, encoding: .utf8) }
        else { try? FileManager.default.removeItem(atPath: path) }
    }

    /// Freezes (SIGSTOP) or thaws every sshd process of this host: a frozen host keeps its TCP
    /// connections open but answers nothing, like a peer that vanished.
    public func freeze(_ frozen: Bool) {
        for pid in descendants(of: process.processIdentifier) {
            kill(pid, frozen ? SIGSTOP : SIGCONT)
        }
    }

    /// The listening sshd (every connection's sshd is forked from it): what `strace -f -p` follows.
    public var sshdPID: Int32? { descendants(of: process.processIdentifier).first }

    /// Kills (SIGKILL) the sshd processes serving connections, leaving the listener: to a
    /// client, the peer dies and its TCP connection closes.
    public func killSessions() {
        guard let master = descendants(of: process.processIdentifier).first else { return }
        for pid in descendants(of: master) { kill(pid, SIGKILL) }
    }

    /// Everything about the host's /var/src that a read-only command must leave alone: every
    /// entry's path, type, size, mtime, ctime (it catches any write or chmod), mode and link target.
    public func varSrcSnapshot() throws -> String {
        try Command.check(["sh", "-c", "cd \"$1\" && find . -printf '%p %y %s %T@ %C@ %m %l\\n' | LC_ALL=C sort", "snap", varSrc]).output
    }

    /// Empties the host's /var/src (emptied, not replaced: the host's mount is this very folder).
    public func clearVarSrc() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: varSrc)) ?? [] { try? FileManager.default.removeItem(atPath: varSrc + "/" + name) }
    }

    /// Puts an executable first on the host's PATH (`/run/current-system/sw/bin`), for faults
    /// the tests inject (a failing `tar`, a Perl-style `rename`); nil puts back what the host had.
    public func setTool(_ name: String, script: String?) throws {
        let path = currentSystem + "/sw/bin/" + name
        guard let script else {
            // Back to what the host had: the minimal NixOS tool of that name, or none.
            try? FileManager.default.removeItem(atPath: path)
            if let tool = try? TestHostHarness.minimalNixOSTools.get()[name] { symlink(tool, path) }
            return
        }
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
    }

    public var isRunning: Bool { process.isRunning }

    /// Stops sshd and everything in its PID namespace.
    public func stop() {
        guard process.isRunning else { return }
        freeze(false)
        // unshare --kill-child: killing unshare kills the namespace's init, and with it the namespace.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    private func descendants(of root: Int32) -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = Int32(fields[1]) { children[ppid, default: []].append(pid) }
        }
        var result: [Int32] = []
        var queue = children[root] ?? []
        while let pid = queue.popLast() {
            result.append(pid)
            queue += children[pid] ?? []
        }
        return result
    }
}

/// A login user on a test host besides root.
public struct TestUser: Sendable {
    public let name: String
    public let uid: Int
    /// Sudo for everything: passwordless, or (with `password`) after that password.
    public let sudo: Bool
    /// The login's real password (a SHA-512 crypt hash in the host's private /etc/shadow); sudo
    /// then asks for it (through PAM, which works although sshd runs with `UsePAM no`).
    public let password: String?

    public init(name: String, uid: Int = 4242, sudo: Bool, password: String? = nil) {
        self.name = name
        self.uid = uid
        self.sudo = sudo
        self.password = password
    }
}
