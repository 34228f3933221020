import FerryNix
import FerrySSH
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The inventory: `fleet.toml` and the files beside it.
public struct Fleet: Sendable {
    /// `[defaults]`: each value applies where neither the host's table nor ssh_config sets one.
    public struct Defaults: Equatable, Sendable {
        public var user: String?
        public var port: Int?
        /// Private keys to offer (absolute paths), before the agent's.
        public var identity: [String]?
        /// A known_hosts file other than ~/.ssh/known_hosts (absolute).
        public var knownHosts: String?
        public var hostKeyPolicy: HostKeyPolicy?
        /// Jump hosts (ProxyJump syntax), or "none".
        public var jump: String?
        public var operation: Operation = .switch
        /// How many of the newest successful deploys keep their sources' snapshots (≥ 1).
        public var keepSnapshots = 10
        public var confirm = Confirm()
        /// `[[defaults.checks]]`: every host's, before its own.
        public var checks: [HealthCheck] = []
        public var revertOnCheckFailure = false
        public var skipUnchanged = false
        public var extraInputs: [String] = []
    }

    /// Is the host serving? Run after a switch or test has activated, and by `ferry check`: a
    /// command on the target (exit 0 passes) or an HTTP GET made from the target's side through
    /// the SSH connection. Each retries every `period` seconds until it passes or `deadline`.
    public struct HealthCheck: Equatable, Sendable {
        public enum Probe: Equatable, Sendable {
            /// Run on the target as the deploy's commands are (root, through sudo where needed).
            case command([String])
            case http(HTTPTarget)
        }

        /// An `http://HOST[:PORT]/PATH` URL, taken apart.
        public struct HTTPTarget: Equatable, Sendable {
            public var url: String
            /// As the target resolves it (brackets of an IPv6 literal removed).
            public var host: String
            public var port: Int
            /// The request target: path and query, "/" when the URL has none.
            public var path: String
            /// The Host header: the URL's authority.
            public var authority: String
        }

        public var probe: Probe
        /// The HTTP statuses that pass; nil: any 2xx or 3xx.
        public var status: [Int]?
        /// Seconds per try, between tries, and before giving up.
        public var timeout = 5
        public var period = 2
        public var deadline = 60

        /// The check as fleet.toml gives it: its command line, or its URL.
        public var name: String {
            switch probe {
            case .command(let argv): return argv.map { ShellQuote.quote($0) }.joined(separator: " ")
            case .http(let target): return target.url
            }
        }

        public init(probe: Probe) { self.probe = probe }

        /// Whether an HTTP status passes.
        public func passes(status code: Int) -> Bool { status.map { $0.contains(code) } ?? (200..<400).contains(code) }
    }

    /// Confirm-or-revert for a switch or test: after activating, the host's job waits `timeout`
    /// seconds for proof that the operator can still log in (a fresh connection, to `port` when
    /// set: a deploy that moves sshd), and reverts without it. `activationTimeout` bounds the
    /// activation itself.
    public struct Confirm: Equatable, Sendable {
        public var enabled = true
        public var timeout = 30
        public var activationTimeout = 600
        public var port: Int?

        public init() {}

        /// Whether a deploy with `operation` waits for proof (a switch or test changes the
        /// running system; boot and build do not).
        public func applies(to operation: Operation) -> Bool { enabled && (operation == .switch || operation == .test) }
    }

    public enum Operation: String, CaseIterable, Sendable {
        case `switch`, boot, test, dryActivate = "dry-activate", build
    }

    /// A tree pushed to `/var/src/NAME` on each target.
    public struct Source: Equatable, Sendable {
        public var name: String
        /// Absolute local path (for the rendered config: the fleet's own folder).
        public var path: String
        public var exclude: [String]
        public var deleteExcluded: Bool
        /// The per-host rendered configuration rather than a plain directory.
        public var rendered: Bool
        /// Paths (relative; a trailing "/" means a directory) that must exist before a deploy connects.
        public var require: [String]
        /// Relative paths of files that may be sent although their content is a private key.
        public var allow: [String] = []
        public var destination: String { "/var/src/\(name)" }

        /// What the LNBits flake needs to build and the service to run.
        public static let lnbitsRequirements = ["flake.nix", "flake.lock", "pyproject.toml", "uv.lock", "lnbits/"]
        /// The rendered source's excludes unless it names its own: VCS, secrets, editor litter, build links.
        public static let renderedExcludes = [".git", ".env", ".ferry/", "*~", "*.swp", ".#*", "result"]
        /// Names ferry uses itself under /var/src/.ferry.
        public static var reservedNames: [String] { TargetState.reservedNames }

        /// A reserved name, or one with a suffix after a dot (`heartbeat.0`, `lock-info.tmp`).
        public static func isReserved(_ name: String) -> Bool {
            reservedNames.contains { name == $0 || name.hasPrefix($0 + ".") }
        }
    }

    /// A `[hosts.NAME]` table. Connection values are the table's own (nil: not set there); see
    /// `connection(for:flags:sshConfig:)` for what applies after ssh_config and `[defaults]`.
    public struct Host: Sendable {
        public var name: String
        /// A DNS name, an IP address, or an ssh_config Host alias.
        public var address: String
        public var port: Int?
        public var user: String?
        public var tags: [String]
        /// A host-specific domain; nil inherits shared.nix's.
        public var domain: String?
        public var vars: [(String, NixLiteral)]
        public var identity: [String]?
        public var knownHosts: String?
        public var hostKeyPolicy: HostKeyPolicy?
        public var jump: String?
        public var operation: Operation
        /// How many of the newest successful deploys keep their sources' snapshots on the host
        /// (the running system's deploy's are kept too).
        public var keepSnapshots = 10
        public var confirm = Confirm()
        /// `[defaults]`'s checks, then the host's own.
        public var checks: [HealthCheck] = []
        /// A failed check withholds the switch's confirmation, so the host reverts (needs confirm).
        public var revertOnCheckFailure = false
        /// The fleet's secrets that name this host, and its own (which win), by name.
        public var secrets: [Secret] = []
        /// Skip the rebuild when nothing it reads changed since the last successful one.
        public var skipUnchanged = false
        /// Files on the host the configuration reads besides the ones ferry compares anyway.
        public var extraInputs: [String] = []

        public var rendererHost: ConfigurationRenderer.Host { .init(name: name, vars: vars, domain: domain) }
    }

    /// The fleet.toml file and its folder (relative paths in it are relative to the folder).
    public let file: String
    public var directory: String { (file as NSString).deletingLastPathComponent }
    public var shared: String
    /// `domain` as shared.nix sets it (evaluated by ferry).
    public var sharedDomain: String
    /// shared's path relative to the fleet's folder (the rendered configuration.nix imports it).
    public var sharedRelativePath: String {
        String(URL(fileURLWithPath: shared).standardizedFileURL.path.dropFirst(URL(fileURLWithPath: directory).standardizedFileURL.path.count + 1))
    }
    public var defaults: Defaults
    public var sources: [Source]
    public var hosts: [Host]

    public init(file: String, shared: String, sharedDomain: String, defaults: Defaults, sources: [Source], hosts: [Host]) {
        self.file = file
        self.shared = shared
        self.sharedDomain = sharedDomain
        self.defaults = defaults
        self.sources = sources
        self.hosts = hosts
    }

    public func domain(of host: Host) -> String { host.domain ?? sharedDomain }

    /// The files fleet.toml names for the operator's side (identities, known_hosts): never part
    /// of a rendered tree, wherever they are.
    public var operatorFiles: [String] {
        var files = (defaults.identity ?? []) + (defaults.knownHosts.map { [$0] } ?? [])
        for host in hosts { files += (host.identity ?? []) + (host.knownHosts.map { [$0] } ?? []) }
        return files
    }

    /// The source that carries each host's rendered configuration.
    public var renderedSource: Source? { sources.first { $0.rendered } }

    /// The hosts a selection names, in inventory order: each target is a host name, a glob over
    /// names (`web-*`, `db-[12]`) or `@tag`; none selects every host. `skip` removes hosts, in the
    /// same grammar. A target or skip that matches nothing is an error listing hosts and tags.
    /// Whether a selection's target is a glob over host names (`web-*`, `db-[12]`).
    public static func isGlob(_ target: String) -> Bool { target.contains(where: { "*?[".contains($0) }) }

    /// Whether a target names one host by name, not a tag (`@web`) or a glob.
    public static func isName(_ target: String) -> Bool { !target.hasPrefix("@") && !isGlob(target) }

    public func select(_ targets: [String], skip: [String] = []) throws -> [Host] {
        func matching(_ target: String) throws -> Set<String> {
            let found: [Host]
            if target.hasPrefix("@") {
                found = hosts.filter { $0.tags.contains(String(target.dropFirst())) }
            } else if Self.isGlob(target) {
                found = hosts.filter { fnmatch(target, $0.name, 0) == 0 }
            } else {
                found = hosts.filter { $0.name == target }
            }
            guard !found.isEmpty else {
                let tags = Set(hosts.flatMap(\.tags)).sorted().map { "@" + $0 }
                let what = target.hasPrefix("@") ? "no host has the tag '\(target.dropFirst())'" : "no host matches '\(target)'"
                throw InventoryError(file: file, key: nil, problem: "\(what) (hosts: \(hosts.map(\.name).joined(separator: ", "))"
                    + (tags.isEmpty ? ")" : "; tags: \(tags.joined(separator: ", ")))"))
            }
            return Set(found.map(\.name))
        }
        var chosen = targets.isEmpty ? Set(hosts.map(\.name)) : Set<String>()
        for target in targets { chosen.formUnion(try matching(target)) }
        for target in skip { chosen.subtract(try matching(target)) }
        return hosts.filter { chosen.contains($0.name) }
    }
}

/// A problem with the inventory, naming the file, the key and what is wrong.
public struct InventoryError: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let key: String?
    public let problem: String
    /// Further problems found in the same read, each a line of its own.
    public private(set) var more: [InventoryError] = []

    public init(file: String, key: String?, problem: String) {
        self.file = file
        self.key = key
        self.problem = problem
    }

    func with(more: [InventoryError]) -> InventoryError {
        var e = self
        e.more = more
        return e
    }

    /// This problem and the others, one line each.
    public var all: [InventoryError] { [self.with(more: [])] + more }

    public var description: String {
        key.map { "\(file): \($0): \(problem)" } ?? "\(file): \(problem)"
    }
}
