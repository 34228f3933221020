#if canImport(Glibc)
import Glibc
#endif

/// Plain blocking IPv4 loopback sockets for the harness and the tests.
public enum Loopback {
    /// A socket bound to 127.0.0.1 on a free port (listening when `backlog` is given).
    public static func bind(backlog: Int32? = nil) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = address(port: 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                Glibc.bind(fd, sa, len) == 0 && (backlog.map { listen(fd, $0) == 0 } ?? true) && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else {
            close(fd)
            throw TestHostError.missingPrerequisite("a loopback socket")
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// A loopback port nothing listens on (at the moment of asking).
    public static func freePort() throws -> Int {
        let (fd, port) = try bind()
        close(fd)
        return port
    }

    /// A connected socket to 127.0.0.1:port, or nil.
    public static func connect(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = address(port: port)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        if ok { return fd }
        close(fd)
        return nil
    }

    /// The first bytes the port sends within `timeoutMs` ("" when none).
    static func firstBytes(port: Int, timeoutMs: Int32) -> String {
        guard let fd = connect(port: port) else { return "" }
        defer { close(fd) }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMs) > 0 else { return "" }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buf, buf.count)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
    }

    private static func address(port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return addr
    }
}
