import FerrySSH

extension HostStatus {
    /// `ferry status`: each host's status, read in parallel.
    public struct Reading: ReadingOperation {
        public typealias Value = HostStatus
        public let fleet: Fleet
        public let hosts: [Fleet.Host]
        public let connector: HostConnector
        /// Also the newest deploys' records.
        public let history: Bool

        public init(fleet: Fleet, hosts: [Fleet.Host], connector: HostConnector, history: Bool = false) {
            self.fleet = fleet
            self.hosts = hosts
            self.connector = connector
            self.history = history
        }

        public func run(host index: Int, emit: @escaping @Sendable (Never) -> Void) -> Result<HostStatus, any Error> {
            Result {
                let session = try connector.shell(for: hosts[index])
                defer { session.close() }
                var status = try HostStatus.read(fleet: fleet, host: hosts[index], shell: session)
                if history { status.history = try HostStatus.history(shell: session) }
                return status
            }
        }
    }

    /// `ferry unlock`: frees each host's deploy lock (see `unlock(shell:root:force:)`).
    public struct Unlocking: ReadingOperation {
        public typealias Value = UnlockResult
        public let hosts: [Fleet.Host]
        public let connector: HostConnector
        public let force: Bool

        public init(hosts: [Fleet.Host], connector: HostConnector, force: Bool) {
            self.hosts = hosts
            self.connector = connector
            self.force = force
        }

        public func run(host index: Int, emit: @escaping @Sendable (Never) -> Void) -> Result<UnlockResult, any Error> {
            Result {
                let session = try connector.shell(for: hosts[index])
                defer { session.close() }
                return try HostStatus.unlock(shell: session, force: force)
            }
        }
    }
}
