import FerrySSH
import FerryTarget
import Foundation

/// `ferry check`: each host's health checks alone, at any time — no lock, nothing changed.
public struct FleetCheck: HostOperation {
    public typealias Event = DeployEvent

    public struct Outcome: Sendable {
        public var results: [DeployRecord.CheckResult] = []
        /// The host could not be reached (or ferry was interrupted): no check ran.
        public var error: (any Error)?
        public var seconds: Double = 0

        public var passed: Bool { error == nil && results.allSatisfy(\.passed) }
    }

    public let hosts: [Fleet.Host]
    public let connector: HostConnector
    public let ferryVersion: String
    public let cancel: CancellationToken?

    public init(hosts: [Fleet.Host], connector: HostConnector, ferryVersion: String, cancel: CancellationToken?) {
        self.hosts = hosts
        self.connector = connector
        self.ferryVersion = ferryVersion
        self.cancel = cancel
    }

    public func run(host index: Int, emit: @escaping @Sendable (DeployEvent) -> Void) -> Outcome {
        let host = hosts[index]
        let start = Date()
        var outcome = Outcome()
        do {
            emit(.phaseStarted(.connect, detail: host.address))
            let shell = try connector.shell(for: host)
            defer { shell.close() }
            emit(.phaseFinished(.connect, seconds: Date().timeIntervalSince(start), detail: shell.name))
            let checks = HealthChecks(host.checks, ferryVersion: ferryVersion, cancel: cancel)
            let began = Date()
            emit(.phaseStarted(.health, detail: host.checks.count == 1 ? "1 check" : "\(host.checks.count) checks"))
            outcome.results = checks.run(on: shell) { emit(.checked($0)) }
            if cancel?.isCancelled == true { throw SSHError.cancelled }
            let failed = outcome.results.filter { !$0.passed }.count
            emit(.phaseFinished(.health, seconds: Date().timeIntervalSince(began), detail: failed == 0 ? "passed" : "\(failed) of \(outcome.results.count) failed"))
        } catch {
            outcome.error = error
        }
        outcome.seconds = Date().timeIntervalSince(start)
        return outcome
    }

    public func failed(_ outcome: Outcome) -> Bool { !outcome.passed }

    public func error(_ outcome: Outcome) -> (any Error)? { outcome.error }
}
