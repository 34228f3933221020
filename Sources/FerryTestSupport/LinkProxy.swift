import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A userspace TCP link on 127.0.0.1 (these machines have no `tc netem`): every connection to
/// `port` is forwarded to `127.0.0.1:target` with a one-way delay and a bandwidth cap per
/// direction, and can be cut after some bytes, blackholed (accepted, never forwarded) or reset.
/// Unchecked Sendable: `blackholed` and `sockets` are touched only under `lock`.
public final class LinkProxy: @unchecked Sendable {
    public struct Shape: Sendable {
        /// Added to every byte, each way (so the round trip grows by twice this).
        public var delay: Double = 0
        /// Bytes per second each way; 0: no cap.
        public var bytesPerSecond: Int = 0
        /// Close both ends once this many bytes went client → server; nil: never.
        public var cutAfter: Int?
        public init(delay: Double = 0, bytesPerSecond: Int = 0, cutAfter: Int? = nil) {
            self.delay = delay
            self.bytesPerSecond = bytesPerSecond
            self.cutAfter = cutAfter
        }
    }

    public let port: Int
    private let target: Int
    private let shape: Shape
    private let listener: Int32
    private let lock = NSLock()
    private var blackholed = false
    private var sockets: [Int32] = []
    private var stopped = false
    private var budgets: [Budget] = []

    /// Client → server bytes forwarded so far, per connection in the order they were accepted.
    public var upstreamBytes: [Int] { lock.lock(); defer { lock.unlock() }; return budgets.map(\.taken) }

    public init(to target: Int, shape: Shape = Shape()) throws {
        (listener, port) = try Loopback.bind(backlog: 64)
        self.target = target
        self.shape = shape
        Thread { self.acceptLoop() }.start()
    }

    deinit { stop() }

    /// From now on nothing is forwarded either way, not even a close; connections stay open.
    public func blackhole() { lock.lock(); blackholed = true; lock.unlock() }

    /// Resets every connection (RST, as a crashed middlebox does).
    public func reset() {
        lock.lock(); let open = sockets; sockets.removeAll(); lock.unlock()
        for fd in open {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    public func stop() {
        lock.lock()
        guard !stopped else { lock.unlock(); return }
        stopped = true
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        reset()
    }

    private var isBlackholed: Bool { lock.lock(); defer { lock.unlock() }; return blackholed }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            guard let server = Loopback.connect(port: target) else { close(client); continue }
            for fd in [client, server] {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            lock.lock(); sockets += [client, server]; lock.unlock()
            let budget = Budget(shape.cutAfter)
            lock.lock(); budgets.append(budget); lock.unlock()
            Pipe(proxy: self, from: client, to: server, budget: budget).start()
            Pipe(proxy: self, from: server, to: client, budget: nil).start()
        }
    }

    /// Bytes client → server still allowed before the cut.
    final class Budget: Sendable {
        private let state: Mutex<(left: Int?, total: Int)>
        init(_ n: Int?) { state = Mutex((n, 0)) }
        /// How many of `n` bytes may pass; 0 once the budget is spent.
        func take(_ n: Int) -> Int {
            state.withLock { s in
                guard let l = s.left else { s.total += n; return n }
                let k = min(n, l)
                s.left = l - k
                s.total += k
                return k
            }
        }
        var taken: Int { state.withLock { $0.total } }
        var spent: Bool { state.withLock { $0.left == 0 } }
    }

    /// One direction: a reader stamps chunks with their due time, a writer delivers them then,
    /// paced to the bandwidth cap. Unchecked Sendable: `queue` and `ended` are touched only under `cond`.
    final class Pipe: @unchecked Sendable {
        let proxy: LinkProxy, from: Int32, to: Int32, budget: Budget?
        private let cond = NSCondition()
        private var queue: [(due: Double, bytes: [UInt8])] = []
        private var ended = false

        init(proxy: LinkProxy, from: Int32, to: Int32, budget: Budget?) {
            self.proxy = proxy
            self.from = from
            self.to = to
            self.budget = budget
        }

        func start() {
            Thread { self.readLoop() }.start()
            Thread { self.writeLoop() }.start()
        }

        static func now() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }

        private func readLoop() {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(from, &buffer, buffer.count)
                if n <= 0 { break }
                if proxy.isBlackholed { continue }
                var chunk = Array(buffer[0..<n])
                if let budget {
                    chunk = Array(chunk.prefix(budget.take(n)))
                    if chunk.isEmpty { break }
                }
                cond.lock()
                queue.append((Self.now() + proxy.shape.delay, chunk))
                cond.signal()
                cond.unlock()
                if budget?.spent == true { break }
            }
            cond.lock(); ended = true; cond.signal(); cond.unlock()
        }

        private func writeLoop() {
            var nextFree = Self.now()
            while true {
                cond.lock()
                while queue.isEmpty && !ended { cond.wait() }
                if queue.isEmpty { cond.unlock(); break }
                let (due, bytes) = queue.removeFirst()
                cond.unlock()
                if proxy.isBlackholed { continue }  // queued bytes are lost in the hole too
                let wait = due - Self.now()
                if wait > 0 { usleep(UInt32(wait * 1e6)) }
                if proxy.shape.bytesPerSecond > 0 {
                    // Serialisation time of this chunk on a link of that speed.
                    nextFree = max(nextFree, Self.now()) + Double(bytes.count) / Double(proxy.shape.bytesPerSecond)
                    let pace = nextFree - Self.now()
                    if pace > 0 { usleep(UInt32(pace * 1e6)) }
                }
                var offset = 0
                while offset < bytes.count {
                    let w = bytes.withUnsafeBytes { send(to, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
                    if w <= 0 { break }
                    offset += w
                }
                if offset < bytes.count { break }
            }
            // A blackhole never reports a close (stop() resets everything).
            if proxy.isBlackholed { return }
            // This direction is over: the whole link goes down, as a cut link does.
            shutdown(to, Int32(SHUT_RDWR))
            shutdown(from, Int32(SHUT_RDWR))
        }
    }
}
