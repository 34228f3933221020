import FerrySSH
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starts and owns test hosts. Every host dies with the process that started it (setpriv
/// --pdeathsig, then unshare --kill-child and the PID namespace), also when a test crashes.
public final class TestHostHarness {
    public let directory: String
    /// A known_hosts file holding every started host's ed25519 key.
    public let knownHostsFile: String
    public private(set) var hosts: [TestHost] = []

    /// Client key pairs the hosts accept (all but `.unauthorized`).
    public enum ClientKey: String, CaseIterable, Sendable {
        case ed25519, ecdsa, rsa, unauthorized
        case ed25519Encrypted = "ed25519-encrypted"

        public static let passphrase = "correct horse battery staple"
        var keygenType: String {
            switch self {
            case .ed25519, .ed25519Encrypted, .unauthorized: return "ed25519"
            case .ecdsa: return "ecdsa"
            case .rsa: return "rsa"
            }
        }
    }

    public init() throws {
        try TestHostHarness.checkPrerequisites()
        // A benchmark puts the hosts on a filesystem of its choosing (scripts/bench).
        let parent = ProcessInfo.processInfo.environment["FERRY_TESTHOSTS_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((parent + "/ferry-testhosts.XXXXXX").utf8CString)
        guard let dir = mkdtemp(&template) else { throw TestHostError.missingPrerequisite("a writable \(parent)") }
        directory = String(cString: dir)
        chmod(directory, 0o711)  // extra login users must reach their authorized_keys and home
        knownHostsFile = directory + "/known_hosts"
        _ = FileManager.default.createFile(atPath: knownHostsFile, contents: nil)
        try makeDirectory("keys")
        for key in ClientKey.allCases { try makeKey(key) }
    }

    deinit { shutdown() }

    /// Path of a client private key (the public key is beside it with `.pub`).
    public func clientKey(_ key: ClientKey) -> String {
        "\(directory)/keys/\(key.rawValue)"
    }

    /// An SSH configuration for a host with this harness's known_hosts and one identity file, no agent.
    public func configuration(for host: TestHost, user: String = "root", key: ClientKey = .ed25519) throws -> SSHConfiguration {
        var configuration = SSHConfiguration(
            target: host.target(user: user), identityFiles: [clientKey(key)],
            knownHostsFile: knownHostsFile, connectTimeout: 5, agentSocket: nil, passphrase: .none)
        configuration.globalKnownHostsFiles = []  // this machine's own file must not change a test's outcome
        return configuration
    }

    /// Fails when something a test host needs is missing (the caller decides whether that skips).
    public static func checkPrerequisites() throws {
        guard getuid() == 0 else { throw TestHostError.missingPrerequisite("root (mount namespaces and bind mounts)") }
        for tool in ["sshd", "ssh-keygen", "unshare", "setpriv", "mount", "nix-instantiate", "nix-build", "nix-env", "strace"] { _ = try Command.which(tool) }
    }

    /// Starts one host and records its ed25519 key in `knownHostsFile` (unless `recordKey` is false).
    @discardableResult
    /// `systemd`: whether the host's private `/run/systemd/system` exists (a deploy then takes the
    /// `systemd-run` path, through the labelled stand-in); without it, the `setsid` path.
    /// `names`: a private /etc/hosts (name → address) that only this host's sshd resolves with:
    /// a name known only there proves a connection went through this host (a jump host).
    /// `tools`: programs of this machine put on the host's PATH beside the minimal NixOS ones
    /// (the sandbox's hosts get rsync, for the comparisons by hand).
    /// `generations`: real NixOS generations (see `StandIn`): a private `/run` whose
    /// `current-system` is a symlink, a private `/nix/var/nix/profiles`, and a stand-in that
    /// builds a small real store path per activation and sets the system profile with the real
    /// `nix-env`.
    public func startHost(name: String? = nil, users: [TestUser] = [], recordKey: Bool = true, sshdOptions: [String] = [],
                          systemd: Bool = true, names: [String: String] = [:], tools: [String] = [], generations: Bool = true,
                          environment: [String] = []) throws -> TestHost {
        let name = name ?? "host\(hosts.count + 1)"
        let dir = "\(directory)/hosts/\(name)"
        for sub in ["var-src", "current-system/sw/bin", "root/.ssh", "stand-in", "etc", "authorized_keys", "home", "run-systemd", "etc-nix"] + (systemd ? ["run-systemd/system"] : []) {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true)
        }
        chmod("\(dir)/root", 0o700)
        for type in ["ed25519", "ecdsa"] {
            try Command.check(["ssh-keygen", "-q", "-t", type, "-N", "", "-C", "\(name)-host", "-f", "\(dir)/etc/ssh_host_\(type)_key"])
        }
        var authorized = ""
        for key in ClientKey.allCases where key != .unauthorized {
            authorized += try String(contentsOfFile: clientKey(key) + ".pub", encoding: .utf8)
        }
        for user in ["root"] + users.map(\.name) {
            try authorized.write(toFile: "\(dir)/authorized_keys/\(user)", atomically: true, encoding: .utf8)
        }
        if !users.isEmpty { try writeAccounts(users, in: dir) }
        // A private /etc/nixos (a hardware-configuration.nix, as NixOS has) and /etc/nix (this
        // machine's, copied, when it has one): what a rebuild reads besides the synced trees.
        try FileManager.default.createDirectory(atPath: "\(dir)/etc-nixos", withIntermediateDirectories: true)
        try "{ ... }: { fileSystems.\"/\".device = \"/dev/disk/by-label/nixos\"; }\n".write(toFile: "\(dir)/etc-nixos/hardware-configuration.nix", atomically: true, encoding: .utf8)
        try Command.check(["sh", "-c", "[ ! -d /etc/nix ] || cp -a /etc/nix/. \"$1\"", "copy", "\(dir)/etc-nix"])
        if !names.isEmpty {
            let text = "127.0.0.1 localhost\n" + names.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)\n" }.joined()
            try text.write(toFile: "\(dir)/etc/hosts", atomically: true, encoding: .utf8)
            chmod("\(dir)/etc/hosts", 0o644)
        }
        // NixOS has Nix's commands on its PATH (a rollback sets the system profile with nix-env).
        try Self.installMinimalNixOSTools(in: "\(dir)/current-system/sw/bin",
                                          extra: tools + (users.contains { $0.sudo } ? ["sudo"] : []) + (generations ? ["nix-env"] : []))
        let standIn = "\(dir)/current-system/sw/bin/nixos-rebuild"
        try StandIn.nixosRebuild(stateDir: "\(dir)/stand-in").write(toFile: standIn, atomically: true, encoding: .utf8)
        chmod(standIn, 0o755)
        if generations {
            for sub in ["profiles", "run/sshd"] + (systemd ? ["run/systemd/system"] : []) {
                try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true)
            }
            try FileManager.default.createSymbolicLink(atPath: "\(dir)/run/current-system", withDestinationPath: "\(dir)/current-system")
            try StandIn.systemBuilder.write(toFile: "\(dir)/stand-in/system-builder.sh", atomically: true, encoding: .utf8)
            try StandIn.switchToConfiguration(stateDir: "\(dir)/stand-in").write(toFile: "\(dir)/stand-in/switch-to-configuration", atomically: true, encoding: .utf8)
            _ = FileManager.default.createFile(atPath: "\(dir)/stand-in/generations", contents: nil)
        }
        let systemdRun = "\(dir)/current-system/sw/bin/systemd-run"
        try StandIn.systemdRun(stateDir: "\(dir)/stand-in").write(toFile: systemdRun, atomically: true, encoding: .utf8)
        chmod(systemdRun, 0o755)
        let systemctl = "\(dir)/current-system/sw/bin/systemctl"
        try StandIn.systemctl(stateDir: "\(dir)/stand-in").write(toFile: systemctl, atomically: true, encoding: .utf8)
        chmod(systemctl, 0o755)

        // A free port can be taken between our probe and sshd's bind: retry a few times.
        var lastLog = ""
        for _ in 0..<3 {
            let port = try Loopback.freePort()
            try (sshdConfig(dir: dir, port: port, environment: environment) + sshdOptions.map { $0 + "\n" }.joined()).write(toFile: "\(dir)/sshd_config", atomically: true, encoding: .utf8)
            let process = try launch(dir: dir, mountUsers: !users.isEmpty, sudo: users.contains { $0.sudo }, privateHosts: !names.isEmpty,
                                     generations: generations)
            if TestHostHarness.waitForBanner(port: port, process: process) {
                let host = TestHost(name: name, port: port, directory: dir, users: users, process: process)
                hosts.append(host)
                if recordKey { try addKnownHost(host, keyType: "ed25519") }
                return host
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            lastLog = (try? String(contentsOfFile: "\(dir)/sshd.log", encoding: .utf8)) ?? ""
        }
        throw TestHostError.hostDidNotStart(name, lastLog)
    }

    /// Appends `[127.0.0.1]:port type key` to a known_hosts file (default: the harness's).
    public func addKnownHost(_ host: TestHost, keyType: String, to file: String? = nil) throws {
        let line = "[\(host.address)]:\(host.port) \(try host.hostPublicKey(keyType))\n"
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file ?? knownHostsFile))
        defer { try? handle.close() }
        try handle.seekToEnd()
        handle.write(Data(line.utf8))
    }

    /// Stops every host and removes the harness directory.
    public func shutdown() {
        for host in hosts { host.stop() }
        hosts.removeAll()
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: - Pieces

    private func makeDirectory(_ sub: String) throws {
        try FileManager.default.createDirectory(atPath: "\(directory)/\(sub)", withIntermediateDirectories: true)
    }

    private func makeKey(_ key: ClientKey) throws {
        let path = clientKey(key)
        let passphrase = key == .ed25519Encrypted ? ClientKey.passphrase : ""
        var argv = ["ssh-keygen", "-q", "-t", key.keygenType, "-N", passphrase, "-C", "ferry-test-\(key.rawValue)", "-f", path]
        if key == .rsa { argv += ["-b", "2048"] }
        try Command.check(argv)
    }

    /// `environment`: more `NAME=VALUE`s for every session (sshd takes the first `SetEnv` only).
    private func sshdConfig(dir: String, port: Int, environment: [String] = []) -> String {
        """
        # sshd for one ferry test host
        Port \(port)
        ListenAddress 127.0.0.1
        ListenAddress [::1]
        HostKey \(dir)/etc/ssh_host_ed25519_key
        HostKey \(dir)/etc/ssh_host_ecdsa_key
        PidFile none
        UsePAM no
        UseDNS no
        StrictModes no
        PermitRootLogin prohibit-password
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        AuthorizedKeysFile \(dir)/authorized_keys/%u
        PrintMotd no
        PrintLastLog no
        MaxStartups 64
        MaxSessions 64
        SetEnv \((["PATH=/run/current-system/sw/bin"] + environment).joined(separator: " "))
        Subsystem sftp internal-sftp
        """ + "\n"
    }

    /// Extra login users live in private copies of the account files, so the machine's own stay untouched.
    private func writeAccounts(_ users: [TestUser], in dir: String) throws {
        var passwd = try String(contentsOfFile: "/etc/passwd", encoding: .utf8)
        var shadow = (try? String(contentsOfFile: "/etc/shadow", encoding: .utf8)) ?? ""
        var group = try String(contentsOfFile: "/etc/group", encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "\(dir)/etc/sudoers.d", withIntermediateDirectories: true)
        for user in users {
            let home = "\(dir)/home/\(user.name)"
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            chown(home, uid_t(user.uid), gid_t(user.uid))
            passwd += "\(user.name):x:\(user.uid):\(user.uid):ferry test user:\(home):/bin/sh\n"
            // "*": no password, not locked.
            let hash = try user.password.map { try Command.check(["openssl", "passwd", "-6", "-stdin"], input: Data($0.utf8)).output.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "*"
            shadow += "\(user.name):\(hash):19000:0:99999:7:::\n"
            group += "\(user.name):x:\(user.uid):\n"
            if user.sudo {
                let file = "\(dir)/etc/sudoers.d/\(user.name)"
                try "\(user.name) ALL=(ALL:ALL) \(user.password == nil ? "NOPASSWD: " : "")ALL\n".write(toFile: file, atomically: true, encoding: .utf8)
                chmod(file, 0o440)
            }
        }
        try passwd.write(toFile: "\(dir)/etc/passwd", atomically: true, encoding: .utf8)
        try shadow.write(toFile: "\(dir)/etc/shadow", atomically: true, encoding: .utf8)
        try group.write(toFile: "\(dir)/etc/group", atomically: true, encoding: .utf8)
        chmod("\(dir)/etc/passwd", 0o644)
        chmod("\(dir)/etc/group", 0o644)
        chmod("\(dir)/etc/shadow", 0o640)
    }

    private func launch(dir: String, mountUsers: Bool, sudo: Bool, privateHosts: Bool = false, generations: Bool = false) throws -> Process {
        // Mount points must exist on the machine; the mounts themselves stay in the namespace.
        for mountPoint in ["/var/src", "/run/current-system", "/run/sshd", "/run/systemd", "/etc/nixos", "/etc/nix"] + (generations ? ["/nix/var/nix/profiles"] : []) {
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        }
        if sudo {
            _ = try Command.which("sudo")
            guard FileManager.default.fileExists(atPath: "/etc/sudoers.d") else {
                throw TestHostError.missingPrerequisite("sudo with /etc/sudoers.d")
            }
        }
        var script = """
        set -e
        mount --bind "$1/var-src" /var/src
        mount --bind "$1/root" /root
        mount --bind "$1/etc-nixos" /etc/nixos
        mount --bind "$1/etc-nix" /etc/nix

        """
        if generations {
            script += """
            mount --bind "$1/run" /run
            mount --bind "$1/profiles" /nix/var/nix/profiles

            """
        } else {
            script += """
            mount --bind "$1/current-system" /run/current-system
            mount --bind "$1/run-systemd" /run/systemd

            """
        }
        if mountUsers {
            script += """
            for f in passwd shadow group; do mount --bind "$1/etc/$f" "/etc/$f"; done
            mount --bind "$1/etc/sudoers.d" /etc/sudoers.d

            """
        }
        if privateHosts { script += "mount --bind \"$1/etc/hosts\" /etc/hosts\n" }
        script += "exec \"$2\" -D -f \"$1/sshd_config\" -E \"$1/sshd.log\"\n"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Command.which("setpriv"))
        process.arguments = [
            "--pdeathsig", "KILL", "--",
            try Command.which("unshare"), "--mount", "--propagation", "private", "--pid", "--kill-child=KILL", "--",
            "/bin/sh", "-c", script, "testhost", dir, try Command.which("sshd"),
        ]
        process.standardInput = FileHandle.nullDevice
        let log = FileHandle(forWritingAtPath: "\(dir)/launch.log") ?? {
            _ = FileManager.default.createFile(atPath: "\(dir)/launch.log", contents: nil)
            return FileHandle(forWritingAtPath: "\(dir)/launch.log")!
        }()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        return process
    }

    /// What a minimal NixOS system has on its PATH, as the Debian packages that ship the same
    /// tools (NixOS: coreutils, findutils, util-linux, gnutar, gzip, xz, zstd, bash, sed, grep,
    /// gawk, diffutils, procps, curl, which, getent — no jq, openssl, python3 or perl). A test
    /// host's PATH is `/run/current-system/sw/bin` holding links to these alone, as on NixOS, so
    /// every remote script the suite runs fails here if it needs anything else.
    public static let minimalNixOSPackages = ["coreutils", "findutils", "util-linux", "mount", "tar", "gzip", "xz-utils", "zstd",
                                              "bash", "sed", "grep", "gawk", "diffutils", "procps", "curl"]

    /// Tool name → path on this machine: every program the packages above ship, plus `which`,
    /// `getent`, and `sh` and `awk` as NixOS names them (bash, gawk).
    static let minimalNixOSTools: Result<[String: String], Error> = Result {
        var tools: [String: String] = [:]
        for package in minimalNixOSPackages {
            let listed = try Command.check(["dpkg", "-L", package]).output.split(separator: "\n").map(String.init)
            for path in listed where ["/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/"].contains(where: { path.hasPrefix($0) }) {
                let name = (path as NSString).lastPathComponent
                guard !name.contains("/"), tools[name] == nil, access(path, X_OK) == 0 else { continue }
                var info = stat()
                guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
                tools[name] = path
            }
        }
        for name in ["which", "getent"] { tools[name] = try Command.which(name) }
        tools["sh"] = tools["bash"]
        tools["awk"] = tools["gawk"]
        for needed in ["bash", "gawk", "zstd", "curl", "flock", "tar", "find"] where tools[needed] == nil {
            throw TestHostError.missingPrerequisite("\(needed) (for a test host's minimal NixOS PATH; scripts/install installs it)")
        }
        return tools
    }

    /// Links the minimal NixOS tools into a host's `sw/bin`, and `extra` ones (with sudo users,
    /// `sudo`: NixOS has it in `/run/wrappers/bin`, also on its PATH).
    static func installMinimalNixOSTools(in bin: String, extra: [String]) throws {
        var tools = try minimalNixOSTools.get()
        for name in extra { tools[name] = try Command.which(name) }
        for (name, path) in tools {
            guard symlink(path, bin + "/" + name) == 0 || errno == EEXIST else {
                throw TestHostError.missingPrerequisite("a link to \(path) in \(bin): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Waits (at most 5 s) until the port answers with an SSH banner.
    static func waitForBanner(port: Int, process: Process) -> Bool {
        for _ in 0..<100 {
            guard process.isRunning else { return false }
            if Loopback.firstBytes(port: port, timeoutMs: 200).hasPrefix("SSH-") { return true }
            usleep(50_000)
        }
        return false
    }
}
