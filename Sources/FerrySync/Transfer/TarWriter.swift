import FerrySSH
import FerryTarget
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a POSIX (pax) tar stream as GNU tar reads it: names as raw bytes of any length
/// (`hdrcharset=BINARY`), nanosecond mtimes, sizes past 8 GiB. Owners are left to the extractor.
struct TarHeader {
    enum TypeFlag: UInt8 {
        case file = 0x30, symlink = 0x32, fifo = 0x36, directory = 0x35
    }

    var name: [UInt8]
    var type: TypeFlag
    var mode: UInt32
    var size: Int64
    var mtime: Timestamp
    var linkTarget: [UInt8] = []

    /// The header blocks (a pax extended header first when the ustar fields cannot hold a value).
    func blocks() -> [UInt8] {
        var pax: [(String, [UInt8])] = []
        let needsBinary = !name.allSatisfy { $0 < 0x80 } || !linkTarget.allSatisfy { $0 < 0x80 }
        if needsBinary { pax.append(("hdrcharset", Array("BINARY".utf8))) }
        if name.count > 100 || needsBinary { pax.append(("path", name)) }
        if linkTarget.count > 100 || needsBinary { pax.append(("linkpath", linkTarget)) }
        if mtime.nanoseconds != 0 || mtime.seconds < 0 || mtime.seconds > 0o77777777777 {
            pax.append(("mtime", Array(mtime.description.utf8)))
        }
        if size > 0o77777777777 { pax.append(("size", Array(String(size).utf8))) }

        var out: [UInt8] = []
        if !pax.isEmpty {
            var body: [UInt8] = []
            for (key, value) in pax {
                let payload = Array(" \(key)=".utf8) + value + [0x0A]
                // The record length counts its own digits.
                var length = payload.count + 1
                while String(length).utf8.count + payload.count != length { length += 1 }
                body += Array(String(length).utf8) + payload
            }
            out += TarHeader.ustar(name: Array("PaxHeaders/entry".utf8), type: 0x78, mode: 0o644,
                                   size: Int64(body.count), mtime: 0, link: [])
            out += body
            out += [UInt8](repeating: 0, count: TarHeader.padding(body.count))
        }
        out += TarHeader.ustar(name: Array(name.prefix(100)), type: type.rawValue, mode: mode,
                               size: size > 0o77777777777 ? 0 : size,
                               mtime: max(0, min(mtime.seconds, 0o77777777777)), link: Array(linkTarget.prefix(100)))
        return out
    }

    static func padding(_ n: Int) -> Int { (512 - n % 512) % 512 }

    /// A whole member: these header blocks, then `contents` padded to a block.
    func withContents(_ contents: [UInt8]) -> [UInt8] {
        blocks() + contents + [UInt8](repeating: 0, count: TarHeader.padding(contents.count))
    }

    private static func ustar(name: [UInt8], type: UInt8, mode: UInt32, size: Int64, mtime: Int64, link: [UInt8]) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], _ offset: Int, _ width: Int) {
            for (i, b) in bytes.prefix(width).enumerated() { h[offset + i] = b }
        }
        func octal(_ value: Int64, _ offset: Int, _ width: Int) {
            let digits = String(value, radix: 8)
            put(Array((String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits).utf8), offset, width - 1)
        }
        put(name, 0, 100)
        octal(Int64(mode), 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(size, 124, 12)
        octal(mtime, 136, 12)
        h[156] = type
        put(link, 157, 100)
        put(Array("ustar\0".utf8), 257, 6)
        put(Array("00".utf8), 263, 2)
        put(Array("root".utf8), 265, 32)
        put(Array("root".utf8), 297, 32)
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        let digits = String(sum, radix: 8)
        put(Array((String(repeating: "0", count: max(0, 6 - digits.count)) + digits).utf8), 148, 6)
        h[154] = 0
        h[155] = 0x20
        return h
    }
}

/// One member of a tar stream being produced.
enum TarMember {
    /// A local file's contents, read while streaming.
    case file(header: TarHeader, source: [UInt8])
    case bytes(header: TarHeader, contents: [UInt8])
    case headerOnly(TarHeader)
    /// A file holding a tar archive of `entries` (headers only), made block by block while
    /// streaming: a 40k-file tree's directory metadata is megabytes, and building it whole (then
    /// copying it into the stream) was the largest part of a first copy's peak memory.
    case archive(name: [UInt8], mtime: Timestamp, entries: [TarHeader])

    /// An `archive` member's header (its size is the archive's, counted header by header).
    static func archiveHeader(name: [UInt8], mtime: Timestamp, entries: [TarHeader]) -> TarHeader {
        TarHeader(name: name, type: .file, mode: 0o600, size: Int64(entries.reduce(1024) { $0 + $1.blocks().count }), mtime: mtime)
    }
}

/// A tar stream produced on demand, as the SSH channel can take it: memory stays flat however
/// large the tree. A file that cannot be read whole never reaches its final name: its member is
/// padded to the promised size and its name goes into a last member, `discard`, which the
/// target removes from staging before anything moves into place.
final class TarStream: ExecInput {
    private var members: IndexingIterator<[TarMember]>
    private var pending: [UInt8] = []
    private var pendingOffset = 0
    /// What follows `pending` of the current member, made when it is due (an archive's headers).
    private var following: AnyIterator<[UInt8]>?
    private var file: Int32 = -1
    private var filePath: [UInt8] = []
    private var fileName: [UInt8] = []
    private var fileRemaining: Int64 = 0
    private var filePadding = 0
    private var failed = false
    private var discard: [[UInt8]] = []
    private var discardSent = false
    private var finished = false
    private(set) var bytesProduced: Int64 = 0
    /// Files that changed size while being sent (rsync warns the same way); not moved into place.
    private(set) var changedDuringSend: [String] = []
    /// Files gone between the scan and the send (a warning, as in rsync).
    private(set) var vanished: [String] = []
    /// Files that could not be read, with the reason: an error; the target keeps its old copy.
    private(set) var unreadable: [(path: String, reason: String)] = []

    private let discardName: [UInt8]

    /// `discardName`: the last member's name (each of a sync's streams has its own).
    init(_ members: [TarMember], discardName: String = "discard") {
        self.members = members.makeIterator()
        self.discardName = Array(discardName.utf8)
    }

    deinit { if file >= 0 { close(file) } }

    var pollDescriptor: Int32? { nil }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> InputChunk {
        var written = 0
        while written < buffer.count {
            if pendingOffset < pending.count {
                let n = min(buffer.count - written, pending.count - pendingOffset)
                pending.withUnsafeBytes { src in
                    (buffer.baseAddress! + written).copyMemory(from: src.baseAddress! + pendingOffset, byteCount: n)
                }
                pendingOffset += n
                written += n
                continue
            }
            if let chunk = following?.next() {
                setPending(chunk)
                continue
            }
            following = nil
            if file >= 0 {
                if fileRemaining > 0 {
                    let want = Int(min(Int64(buffer.count - written), fileRemaining))
                    var n = failed ? 0 : Glibc.read(file, buffer.baseAddress! + written, want)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 {
                        if !failed {
                            failed = true
                            let display = String(decoding: filePath, as: UTF8.self)
                            if n < 0 { unreadable.append((display, String(cString: strerror(errno)))) }
                            else { changedDuringSend.append(display) }
                            discard.append(fileName)
                        }
                        // Keep the stream well-formed; the member is discarded on the target.
                        memset(buffer.baseAddress! + written, 0, want)
                        n = want
                    }
                    fileRemaining -= Int64(n)
                    written += n
                    continue
                }
                close(file)
                file = -1
                setPending([UInt8](repeating: 0, count: filePadding))
                continue
            }
            guard let member = members.next() else {
                if !discardSent {
                    discardSent = true
                    let list: [UInt8] = discard.flatMap { $0 + [0] }
                    let header = TarHeader(name: discardName, type: .file, mode: 0o600, size: Int64(list.count),
                                           mtime: Timestamp(seconds: 0, nanoseconds: 0))
                    setPending(header.withContents(list))
                    continue
                }
                if !finished {
                    finished = true
                    setPending([UInt8](repeating: 0, count: 1024))
                    continue
                }
                break
            }
            switch member {
            case .headerOnly(let h):
                setPending(h.blocks())
            case .bytes(let h, let contents):
                // Header, contents and padding one after the other, not copied into one array.
                setPending(h.blocks())
                following = AnyIterator([contents, [UInt8](repeating: 0, count: TarHeader.padding(contents.count))].makeIterator())
            case .archive(let name, let mtime, let entries):
                let h = TarMember.archiveHeader(name: name, mtime: mtime, entries: entries)
                setPending(h.blocks())
                // The archive's end (two zero blocks) fills whole blocks: no padding after it.
                var headers = entries.makeIterator()
                var ended = false
                following = AnyIterator {
                    if let entry = headers.next() { return entry.blocks() }
                    if ended { return nil }
                    ended = true
                    return [UInt8](repeating: 0, count: 1024)
                }
            case .file(let h, let source):
                let fd = source.withCString { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
                guard fd >= 0 else {
                    // No header was sent: the member is simply left out.
                    let display = String(decoding: source, as: UTF8.self)
                    if errno == ENOENT { vanished.append(display) } else { unreadable.append((display, String(cString: strerror(errno)))) }
                    continue
                }
                file = fd
                failed = false
                filePath = source
                fileName = Array(h.name.dropFirst("data/".utf8.count))
                fileRemaining = h.size
                filePadding = TarHeader.padding(Int(h.size % 512))
                setPending(h.blocks())
            }
        }
        bytesProduced += Int64(written)
        return written == 0 ? .end : .bytes(written)
    }

    private func setPending(_ bytes: [UInt8]) {
        pending = bytes
        pendingOffset = 0
    }
}
