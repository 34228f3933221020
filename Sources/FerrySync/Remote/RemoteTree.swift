import FerrySSH

/// The target's side: one command lists the destination, one applies a plan. Only POSIX sh,
/// GNU find/tar/coreutils and util-linux `rename` are needed there (all on NixOS).
enum RemoteTree {
    struct Listing {
        var exists: Bool
        var isDirectory: Bool
        var syncedBefore: Bool
        var manifest: Manifest
    }

    static let listScript = #"""
    dest=$1 state=$2 checksum=$3
    if [ -d "$dest" ] && [ ! -L "$dest" ]; then printf 'dir\0'
    elif [ -e "$dest" ] || [ -L "$dest" ]; then printf 'other\0'
    else printf 'none\0'; fi
    if [ -e "$state/synced" ]; then printf 'synced\0'; else printf 'new\0'; fi
    [ -d "$dest" ] && [ ! -L "$dest" ] || exit 0
    cd "$dest" || exit 1
    find . -printf '%y\0%m\0%s\0%T@\0%P\0%l\0' || exit 1
    if [ "$checksum" = 1 ]; then
      printf 'checksums\0'
      find . -type f -print0 | xargs -0 -r sha256sum -z || exit 1
    fi
    """#

    static func list(_ session: SSHSession, destination: String, state: String, checksum: Bool) throws -> Listing {
        let command = RemoteCommand.script(listScript, arguments: [Array(destination.utf8), Array(state.utf8), Array((checksum ? "1" : "0").utf8)])
        var out: [UInt8] = []
        var err: [UInt8] = []
        let status = try session.exec(command, stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) })
        guard status == .exited(0) else {
            throw SyncError.remote(target: session.target.description, step: "listing \(destination)", status: "\(status)", stderr: String(decoding: err, as: UTF8.self))
        }
        return try parse(out, target: session.target.description)
    }

    static func parse(_ bytes: [UInt8], target: String) throws -> Listing {
        var fields = bytes.split(separator: 0, omittingEmptySubsequences: false).map { Array($0) }
        if fields.last == [] { fields.removeLast() }
        guard fields.count >= 2 else { throw SyncError.badRemoteListing(target: target, reason: "no header") }
        let kind = String(decoding: fields[0], as: UTF8.self)
        var listing = Listing(exists: kind != "none", isDirectory: kind == "dir",
                              syncedBefore: String(decoding: fields[1], as: UTF8.self) == "synced", manifest: Manifest())
        var i = 2
        var entries: [FileEntry] = []
        while i < fields.count && fields[i] != Array("checksums".utf8) {
            guard i + 6 <= fields.count else { throw SyncError.badRemoteListing(target: target, reason: "truncated entry") }
            let type = fields[i], modeText = String(decoding: fields[i + 1], as: UTF8.self)
            guard let mode = UInt32(modeText, radix: 8), let size = Int64(String(decoding: fields[i + 2], as: UTF8.self)),
                  let mtime = Timestamp(decimal: String(decoding: fields[i + 3], as: UTF8.self)) else {
                throw SyncError.badRemoteListing(target: target, reason: "bad fields for \(String(decoding: fields[i + 4], as: UTF8.self))")
            }
            let kind: FileEntry.Kind
            switch type {
            case [UInt8(ascii: "f")]: kind = .file
            case [UInt8(ascii: "d")]: kind = .directory
            case [UInt8(ascii: "l")]: kind = .symlink
            case [UInt8(ascii: "p")]: kind = .fifo
            default: kind = .file  // sockets and devices: replaced or deleted like files
            }
            entries.append(FileEntry(path: fields[i + 4], kind: kind, mode: mode, size: kind == .file ? size : 0,
                                     mtime: mtime, linkTarget: kind == .symlink ? fields[i + 5] : nil))
            i += 6
        }
        listing.manifest = Manifest(entries)
        if i < fields.count {
            for line in fields[(i + 1)...] {
                // "HASH  ./path"
                guard line.count > 68 else { continue }
                let hash = Array(line[0..<64])
                let path = Array(line[68...])
                listing.manifest.entries[path]?.checksum = hash
            }
        }
        return listing
    }

    /// Reads the main tar stream into staging, then: deletions, new directories, files renamed into
    /// place (util-linux rename, one process), directory metadata last, then the sentinel.
    static let applyScript = #"""
    set -e
    dest=$1 state=$2 stage=$2/stage
    rename=$(command -v rename.ul || command -v rename) || { echo "util-linux rename not found" >&2; exit 1; }
    rm -rf "$stage"
    mkdir -p "$stage" "$dest"
    tar -x -f - -C "$stage" --no-same-owner --same-permissions
    cd "$dest"
    xargs -0 -r rm -rf -- < "$stage/deletions"
    xargs -0 -r mkdir -p -- < "$stage/directories"
    if [ -d "$stage/data" ]; then
      find "$stage/data" ! -type d -print0 | xargs -0 -r "$rename" -- "$stage/data" "$dest"
    fi
    tar -x -f "$stage/directories.tar" -C "$dest" --no-same-owner
    rm -rf "$stage"
    touch "$state/synced"
    """#
}
