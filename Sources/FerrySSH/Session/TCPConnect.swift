#if canImport(Glibc)
import Glibc
#endif

/// Opens a non-blocking TCP connection to the first address of `host` that answers within `timeout`.
enum TCPConnect {
    /// `cancel` ends the wait for an answer with `SSHError.cancelled`.
    static func open(host: String, port: Int, timeout: Double, cancel: CancellationToken? = nil) throws -> Int32 {
        let deadline = Deadline(after: timeout)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        if rc != 0 {
            // AI_ADDRCONFIG hides ::1 on hosts with no IPv6 route; retry without it.
            hints.ai_flags = 0
            let again = getaddrinfo(host, String(port), &hints, &list)
            if again != 0 { throw SSHError.resolve(host: host, reason: String(cString: gai_strerror(again))) }
        }
        defer { freeaddrinfo(list) }

        var lastError: SSHError = .connect(host: host, port: port, reason: "no address")
        var node = list
        while let ai = node {
            node = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            if fd < 0 { lastError = .connect(host: host, port: port, reason: errnoText()); continue }
            setNonBlocking(fd)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return fd }
            guard errno == EINPROGRESS else {
                lastError = .connect(host: host, port: port, reason: errnoText())
                close(fd)
                continue
            }
            var fds = [pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)]
            if let cancel { fds.append(pollfd(fd: cancel.descriptor, events: Int16(POLLIN), revents: 0)) }
            var ready = poll(&fds, nfds_t(fds.count), deadline.remainingMilliseconds)
            while ready < 0 && errno == EINTR { ready = poll(&fds, nfds_t(fds.count), deadline.remainingMilliseconds) }
            if let cancel, cancel.isCancelled {
                close(fd)
                throw SSHError.cancelled
            }
            if ready <= 0 || fds[0].revents == 0 {
                close(fd)
                lastError = .connectTimeout(host: host, port: port, seconds: timeout)
                if deadline.expired { break }
                continue
            }
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
            if soError == 0 { return fd }
            lastError = .connect(host: host, port: port, reason: String(cString: strerror(soError)))
            close(fd)
        }
        throw lastError
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// A point in monotonic time.
struct Deadline {
    let at: Double

    init(after seconds: Double) { at = Deadline.now() + seconds }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    var remaining: Double { max(0, at - Deadline.now()) }
    var expired: Bool { Deadline.now() >= at }
    var remainingMilliseconds: Int32 { Int32(min(remaining * 1000, Double(Int32.max)).rounded(.up)) }
}
