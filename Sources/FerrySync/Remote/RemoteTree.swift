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
        // NUL-separated fields, read in place.
        var position = 0
        func field() -> ArraySlice<UInt8>? {
            guard position < bytes.count, let end = bytes[position...].firstIndex(of: 0) else { return nil }
            defer { position = end + 1 }
            return bytes[position..<end]
        }
        func text(_ f: ArraySlice<UInt8>) -> String { String(decoding: f, as: UTF8.self) }
        guard let kind = field().map(text), let synced = field().map(text) else {
            throw SyncError.badRemoteListing(target: target, reason: "no header")
        }
        var entries: [FileEntry] = []
        var checksums: [([UInt8], [UInt8])] = []
        let marker = Array("checksums".utf8)
        while let type = field() {
            if type.elementsEqual(marker) {
                while let line = field(), line.count > 68 {
                    // "HASH  ./path"
                    checksums.append((Array(line[(line.startIndex + 68)...]), Array(line.prefix(64))))
                }
                break
            }
            guard let modeField = field(), let sizeField = field(), let timeField = field(), let pathField = field(), let linkField = field(),
                  let mode = UInt32(text(modeField), radix: 8), let size = Int64(text(sizeField)),
                  let mtime = Timestamp(decimal: text(timeField)) else {
                throw SyncError.badRemoteListing(target: target, reason: "truncated or malformed entry")
            }
            let k: FileEntry.Kind
            switch type.first {
            case UInt8(ascii: "d"): k = .directory
            case UInt8(ascii: "l"): k = .symlink
            case UInt8(ascii: "p"): k = .fifo
            default: k = .file  // sockets and devices: replaced or deleted like files
            }
            entries.append(FileEntry(path: Array(pathField), kind: k, mode: mode, size: k == .file ? size : 0,
                                     mtime: mtime, linkTarget: k == .symlink ? Array(linkField) : nil))
        }
        var listing = Listing(exists: kind != "none", isDirectory: kind == "dir", syncedBefore: synced == "synced", manifest: Manifest(entries))
        for (path, hash) in checksums { listing.manifest.setChecksum(hash, at: path) }
        return listing
    }

    /// SHA-256 of the named files (relative to `destination`), for files whose size matches.
    static func hashes(_ session: SSHSession, destination: String, paths: [[UInt8]]) throws -> [[UInt8]: [UInt8]] {
        let command = RemoteCommand.script(#"cd "$1" && xargs -0 -r sha256sum -z --"#, arguments: [Array(destination.utf8)])
        var out: [UInt8] = []
        var err: [UInt8] = []
        let status = try session.exec(command, stdin: BytesInput(paths.flatMap { $0 + [0] }),
                                      stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) })
        guard status == .exited(0) else {
            throw SyncError.remote(target: session.target.description, step: "hashing files in \(destination)", status: "\(status)", stderr: String(decoding: err, as: UTF8.self))
        }
        var result: [[UInt8]: [UInt8]] = [:]
        for line in out.split(separator: 0) where line.count > 66 {
            result[Array(line[(line.startIndex + 66)...])] = Array(line.prefix(64))  // "HASH  path"
        }
        return result
    }

    /// Reads the main tar stream into staging, then: deletions, new directories, files renamed into
    /// place (util-linux rename, one process), metadata-only fixes, directory modes and mtimes last,
    /// then the sentinel. A first copy (no or an empty destination) is staged whole and moved into
    /// place with one rename.
    static let applyScript = #"""
    set -e
    dest=$1 state=$2 stage=$2/stage
    rename=$(command -v rename.ul || command -v rename) || { echo "util-linux rename not found" >&2; exit 1; }
    rm -rf "$stage"
    mkdir -p "$stage" "${dest%/*}/"
    tar -x -f - -C "$stage" --no-same-owner --same-permissions
    mkdir -p "$stage/data"
    if [ -e "$stage/fresh" ]; then
      [ ! -d "$dest" ] || rmdir "$dest"
      mv -T "$stage/data" "$dest"
      cd "$dest"
      xargs -0 -r mkdir -p -- < "$stage/directories"
    else
      mkdir -p "$dest"
      cd "$dest"
      xargs -0 -r rm -rf -- < "$stage/deletions"
      xargs -0 -r mkdir -p -- < "$stage/directories"
      find "$stage/data" ! -type d -print0 | xargs -0 -r "$rename" -- "$stage/data" "$dest"
    fi
    # Files whose contents were already right: modes and mtimes only, one process per distinct value.
    for f in "$stage"/modes/* "$stage"/times/*; do
      [ -f "$f" ] || continue
      case $f in
        "$stage"/modes/*) xargs -0 -r chmod "${f##*/}" -- < "$f" ;;
        *) xargs -0 -r touch -m -d "@${f##*/}" -- < "$f" ;;
      esac
    done
    tar -x -f "$stage/directories.tar" -C "$dest" --no-same-owner
    rm -rf "$stage"
    touch "$state/synced"
    """#
}
