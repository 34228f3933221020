import FerrySSH

extension TargetState {
    /// The target's side: one command locks and lists the destination and then applies the plan
    /// it is sent; another hashes files whose contents may match. Only POSIX sh, GNU
    /// find/tar/coreutils and util-linux (`flock`, `rename`, `mountpoint`) are needed there (all on NixOS).
    package enum Tree {
        package struct Listing {
            /// What the destination path itself is (a symbolic link is never written through).
            package enum Kind: String { case none, dir, link, other }
            package var kind: Kind
            package var exists: Bool { kind != .none }
            package var isDirectory: Bool { kind == .dir }
            package var syncedBefore: Bool
            /// The whole destination (for an incremental listing: the caller's base with the changes applied).
            package var manifest: Manifest
            /// For an incremental listing, how many records it held (0: nothing changed since the sentinel).
            package var changes: Int?
            /// The destination with the folders above it resolved (symlinks followed), as the target used it.
            package var resolvedDestination: String
            /// Whether the target was asked for file hashes (kept in `manifest`) after the listing.
            package var learnedHashes = false
            /// The requested snapshot was there already (a sync with nothing to apply then only ends).
            package var snapshotPresent = false
        }

        /// A deploy's snapshot of the tree it syncs (see `TargetState.snapshots`), made after the
        /// apply and before the listing stamp — linking changes every inode's ctime, and the
        /// next incremental listing must not see that as a change — unless one with this digest
        /// is there already. After making one, the source's others are pruned: kept are the
        /// snapshots of the newest `keep` successful deploys, the running system's deploy's, and
        /// this one. A destination on another filesystem (a mount point) gets a full copy.
        package struct Snapshot: Sendable {
            package var source: String
            /// `TargetState.snapshot(source, digest:)`.
            package var folder: String
            package var deploys: String
            package var keep: Int

            package init(state: TargetState, source: String, digest: String, keep: Int) {
                self.source = source
                folder = state.snapshot(source, digest: digest)
                deploys = state.deploys
                self.keep = keep
            }
        }

        /// A relative path as find prints it: no empty, "." or ".." component, no leading or
        /// trailing "/". Anything else in a listing is a target answering nonsense (or worse), and
        /// acting on it could reach outside the destination.
        package static func isSafeRelativePath(_ p: ArraySlice<UInt8>) -> Bool {
            guard !p.isEmpty, !p.contains(0) else { return false }
            for component in p.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
                if component.isEmpty || component.elementsEqual([0x2E]) || component.elementsEqual([0x2E, 0x2E]) { return false }
            }
            return true
        }

        package static func isHexHash(_ h: ArraySlice<UInt8>) -> Bool {
            h.count == 64 && h.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        }

        /// Lists the destination; in apply mode first takes the destination's lock (`flock` on
        /// STATE/lock, held by this process until it exits: the kernel frees it when sshd closes the
        /// channel, also after kill -9 of ferry or a cut link), then waits on stdin for "done" or
        /// "apply" and the tar stream (see `applyScript`). One channel, so nothing can change between
        /// the listing and the apply.
        ///
        /// Incremental listings: when the caller knows the destination as of the sentinel (`known`
        /// equals STATE/generation, the host has not rebooted and its clock has not gone back), only
        /// entries whose ctime is after the sentinel's mtime are listed, with the whole subtree of
        /// every such directory (a deletion shows only as its directory's ctime; a directory moved
        /// in keeps its children's old ctimes). In apply mode the op line may name a new generation:
        /// after the apply (if any) the script stamps a new sentinel, lists what changed since the
        /// old one (or, after a full listing, since a stamp made before it), ends that with another
        /// `E`, and commits the generation.
        /// One sync's command: a listing of `destination`, and in apply mode the apply that follows
        /// on the same channel. Its answer is a `Listing` (`parse`), then after an apply with a
        /// generation the changes it made (`parseChanges`).
        package struct Request: Sendable {
            package enum Mode: String, Sendable { case list, apply }
            package var destination: String
            package var mode: Mode
            /// Hash every file (a `--checksum` listing: never incremental).
            package var checksum: Bool
            /// Seconds to wait for another sync's lock on this destination.
            package var lockWait = 0
            /// The generation the caller knows the destination at (an incremental listing if it is still current).
            package var known: String?
            /// Keep a snapshot of the tree as this sync leaves it (a deploy that rebuilds).
            package var snapshot: Snapshot?

            package init(destination: String, mode: Mode, checksum: Bool, lockWait: Int = 0, known: String? = nil, snapshot: Snapshot? = nil) {
                self.destination = destination
                self.mode = mode
                self.checksum = checksum
                self.lockWait = lockWait
                self.known = known
                self.snapshot = snapshot
            }

            package var command: RemoteCommand {
                let (state, name) = TargetState.forDestination(destination)
                let snap = snapshot.map { [$0.folder, String($0.keep), $0.deploys, $0.source] } ?? ["", "0", "", ""]
                return .script(syncScript, arguments: ([destination, state.source(name), checksum ? "1" : "0", mode.rawValue, String(lockWait), known ?? ""] + snap)
                    .map { Array($0.utf8) })
            }
        }

        /// The staging folder inside a destination that is a mount point (never listed, never synced).
        package static let inTreeStage = ".ferry-stage"

        /// Where a sync into `destination` (resolved as the target resolved it) may stage.
        package static func stagingFolders(destination: String) -> [String] {
            let (state, name) = TargetState.forDestination(destination)
            return [state.source(name) + "/stage", destination + "/" + inTreeStage]
        }

        /// Extracts one extra stream (see `ExtraStreams`) into the staging folder a sync's command made.
        package static func extract(stage: [UInt8], stream n: Int) -> RemoteCommand {
            .script(extractScript, arguments: [stage, Array(String(n).utf8)])
        }

        static let syncScript = #"""
        dest=$1 state=$2 checksum=$3 mode=$4 wait=${5:-0} known=${6:-} snap=${7:-} keep=${8:-0} deploys=${9:-} name=${10:-}
        # The folders above the destination are trusted (impermanence makes /var/src a symlink into
        # /persist): resolved once, here, so the whole run works in one place; the header names it.
        # ($PWD after `cd -P` is the physical path: no subshell.)
        if cd -P "${dest%/*}/" 2>/dev/null; then
          dest=${PWD%/}/${dest##*/} state=${PWD%/}/\#(TargetState.folderName)/${dest##*/}
        fi
        # The state is root's alone; what the sync writes into the destination gets the modes it
        # is sent (tar -p, and every new folder's mode set at the end), not this umask's.
        umask 077
        rec='%y\0%m\0%s\0%T@\0%p\0%l\0'
        # Gives $1 an mtime no later change can share: waits until the file clock has moved past it.
        stamp() {
          touch "$1" && n=0 || return 1
          while [ "$n" -lt 400 ]; do
            touch "$state/tick" || return 1
            if [ -n "$(find "$state/tick" -newer "$1")" ]; then
              read -r up _ < /proc/uptime && read -r boot < /proc/sys/kernel/random/boot_id &&
                printf '%s %s %s\n' "$boot" "$(date +%s)" "${up%.*}" > "$1.clock"
              return
            fi
            n=$((n + 1)); sleep 0.005 2>/dev/null || sleep 1
          done
          return 1
        }
        # The sentinel still orders changes: same boot, and the wall clock has not gone back since.
        steady() {
          read -r b r u < "$state/sentinel.clock" && read -r up _ < /proc/uptime && read -r boot < /proc/sys/kernel/random/boot_id || return 1
          case $r$u in ''|*[!0-9]*|?????????????????????*) return 1 ;; esac  # digits, and no overflow
          [ "$b" = "$boot" ] && [ $(( $(date +%s) - r )) -ge $(( ${up%.*} - u - 2 )) ]
        }
        # Entries changed after $1's mtime, then the whole subtree of each changed directory.
        # The walk marks each changed directory on fd 3; only then (rarely on a no-op) a second walk
        # names them for the subtree listings, which run after it, never interleaved with it.
        changes() {
          exec 4>&1
          any=$(find . -path ./\#(inTreeStage) -prune -o -cnewer "$1" -printf "$rec" \( -type d -fprintf /dev/fd/3 x -prune -o -true \) 3>&1 1>&4 4>&-) || return 1
          [ -n "$any" ] || return 0
          rc=$( { { find . -path ./\#(inTreeStage) -prune -o -type d -cnewer "$1" -print0 -prune; echo "$?" >&5; } |
                  xargs -0 -r sh -c 'exec find "$@" -path ./\#(inTreeStage) -prune -o -printf "$0"' "$rec"; } 5>&1 1>&4 ) && [ "$rc" = 0 ]
        }
        # A new sentinel, then what changed since $since (this run's writes and anyone else's), so
        # the caller knows the destination as of the new sentinel. A crash between the renames
        # leaves no generation: the next listing is a full one. Best effort: without it, the next
        # listing is a full one too.
        recommit() {
          { stamp "$state/sentinel.post" && cd "$dest" && changes "$since" && printf 'E\0' &&
            rm -f "$state/generation" && mv -f "$state/sentinel.post.clock" "$state/sentinel.clock" &&
            mv -f "$state/sentinel.post" "$state/sentinel" && printf '%s\n' "$generation" > "$state/generation.new" &&
            mv -f "$state/generation.new" "$state/generation"; } || true
        }
        # The deploy's snapshot of the tree (see Tree.Snapshot): hard links, or a full copy where
        # the destination is on another filesystem than the snapshots (a mount point).
        snapshot() {
          [ -n "$snap" ] && [ ! -d "$snap/tree" ] || return 0
          mkdir -p "${snap%/*}" && rm -rf "$snap.new" && mkdir "$snap.new" || return 1
          set -- $(stat -c %d "$dest" "${snap%/*}")
          if [ "$1" = "$2" ] && ! mountpoint -q "$dest"; then cp -al "$dest" "$snap.new/tree"; else cp -a "$dest" "$snap.new/tree"; fi &&
            rm -rf "$snap" && mv "$snap.new" "$snap" || { rm -rf "$snap.new"; echo "cannot keep a snapshot of $dest in $snap" >&2; return 1; }
          # The source's others: the newest $keep successful deploys' and the running system's stay.
          # (Each assignment from a command may fail: the apply runs under set -e.)
          running=$(readlink /run/current-system 2>/dev/null) || running=
          n=0 kept=
          # Newest first by the target's clock (each deploy's record base is written as it starts).
          for id in $(ls -1t "$deploys"/*/record-base.json 2>/dev/null); do
            id=${id%/record-base.json} && id=${id##*/}
            [ -f "$deploys/$id/record" ] && [ -f "$deploys/$id/snapshots" ] || continue
            last=$(sed -n 2p "$deploys/$id/record") || continue
            case $last in "finished success "*) ;; *) continue ;; esac
            # The outcome line's sixth field is the system the deploy left running.
            set -- $last
            if [ "$n" -lt "$keep" ] || { [ -n "$running" ] && [ "$6" = "$running" ]; }; then
              [ "$6" != "$running" ] || running=
              while read -r s h; do [ "$s" != "$name" ] || kept="$kept $h"; done < "$deploys/$id/snapshots"
            fi
            n=$((n + 1))
          done
          for s in "${snap%/*}"/*; do
            case " $kept ${snap##*/} " in *" ${s##*/} "*) ;; *) [ ! -e "$s" ] || rm -rf -- "$s" ;; esac
          done
        }
        if [ "$mode" = apply ]; then
          # The state folders are root's alone (the destination keeps its own modes).
          [ -d "$state" ] || { mkdir -p "$state" && chmod 700 "${state%/*}" "$state"; } || exit 1
          exec 9>>"$state/lock" || exit 1
          # A second's grace at least: a run that ended without waiting for its command's exit (it
          # had nothing left to do) may still hold the lock for a moment.
          if [ "$wait" -gt 1 ]; then flock -w "$wait" 9; else flock -w 1 9; fi ||
            { echo "another ferry sync to $dest is running (lock $state/lock is held)" >&2; exit 75; }
        fi
        if [ -d "$dest" ] && [ ! -L "$dest" ]; then printf 'dir\0'
        elif [ -L "$dest" ]; then printf 'link\0'
        elif [ -e "$dest" ]; then printf 'other\0'
        else printf 'none\0'; fi
        if [ -e "$state/synced" ]; then printf 'synced\0'; else printf 'new\0'; fi
        if [ -n "$snap" ] && [ -d "$snap/tree" ]; then printf 'snapshot\0'; else printf -- '-\0'; fi
        listing=full
        if [ -n "$known" ] && [ "$checksum" != 1 ] && [ -d "$dest" ] && [ ! -L "$dest" ] && [ -f "$state/sentinel" ] &&
           read -r generation 2>/dev/null < "$state/generation" && [ "$generation" = "$known" ] && steady 2>/dev/null; then
          listing=incremental
        fi
        # What a commit lists changes since: the sentinel itself, or for a full listing a stamp made
        # before it. A checksum run commits nothing (its listing is never incremental); the next
        # run's incremental listing, against the old sentinel, includes what this one wrote.
        since=
        if [ "$mode" = apply ] && [ "$checksum" != 1 ]; then
          if [ "$listing" = incremental ]; then since=$state/sentinel
          # (A first copy commits no generation: no stamp.)
          elif [ -d "$dest" ] && stamp "$state/sentinel.new"; then since=$state/sentinel.new; fi
        fi
        printf '%s\0%s\0' "$listing" "$dest"
        if [ -d "$dest" ] && [ ! -L "$dest" ]; then
          cd "$dest" || exit 1
          if [ "$listing" = incremental ]; then
            changes "$state/sentinel" || exit 1
          else
            find . -path ./\#(inTreeStage) -prune -o -printf '%y\0%m\0%s\0%T@\0%P\0%l\0' || exit 1
          fi
          if [ "$checksum" = 1 ]; then
            printf 'checksums\0'
            find . -path ./\#(inTreeStage) -prune -o -type f -exec sha256sum -z {} + || exit 1
          fi
        fi
        printf 'E\0'
        [ "$mode" = apply ] || exit 0
        # "apply GENERATION STREAMS" ("-": no generation), or "done [GENERATION]".
        read -r op generation streams || exit 1
        [ "$generation" != - ] || generation=
        case $generation in *[!0-9a-f]*) exit 1 ;; esac
        case $streams in ''|*[!0-9]*) streams=1 ;; esac
        [ -n "$since" ] || generation=
        if [ "$op" = done ]; then
          snapshot || exit 1
          [ -z "$generation" ] || recommit
          exit 0
        fi
        [ "$op" = apply ] || exit 1
        \#(applyScript)
        snapshot
        [ -z "$generation" ] || recommit
        """#

        /// A listing's header: the destination's kind, synced or new, whether the requested
        /// snapshot is there, full or incremental, the destination as resolved.
        package static let headerFields = 5

        /// Parses a listing. An incremental one is applied to `base`, the destination as the caller
        /// last knew it (an incremental answer to a caller that sent no generation is refused).
        package static func parse(_ bytes: [UInt8], target: String, base: Manifest? = nil) throws -> Listing {
            var reader = FieldReader(bytes: bytes)
            guard let kind = reader.next().map(text), let synced = reader.next().map(text), let snapshot = reader.next().map(text),
                  let mode = reader.next().map(text), let resolved = reader.next().map(text) else {
                throw SyncError.badRemoteListing(target: target, reason: "no header")
            }
            guard let destination = Listing.Kind(rawValue: kind) else {
                throw SyncError.badRemoteListing(target: target, reason: "an unknown kind of destination '\(kind)'")
            }
            let incremental: Bool
            switch mode {
            case "full": incremental = false
            case "incremental" where base != nil: incremental = true
            default: throw SyncError.badRemoteListing(target: target, reason: "an unexpected kind of listing '\(mode)'")
            }
            let (entries, checksums) = try records(&reader, target: target, incremental: incremental)
            guard reader.atEnd else { throw SyncError.badRemoteListing(target: target, reason: "bytes after the end of the listing") }
            let manifest: Manifest
            if incremental {
                manifest = base!.applying(changes: entries)
            } else {
                manifest = Manifest(entries)
                if zip(manifest.entries, manifest.entries.dropFirst()).contains(where: { $0.path == $1.path }) {
                    throw SyncError.badRemoteListing(target: target, reason: "a path listed twice")
                }
            }
            var listing = Listing(kind: destination, syncedBefore: synced == "synced", manifest: manifest,
                                  changes: incremental ? entries.count : nil, resolvedDestination: resolved)
            listing.snapshotPresent = snapshot == "snapshot"
            for (path, hash) in checksums { listing.manifest.setChecksum(hash, at: path) }
            return listing
        }

        /// The records after an apply (what changed since the stamp before it), ended by `E`.
        package static func parseChanges(_ bytes: [UInt8], target: String) throws -> [FileEntry] {
            var reader = FieldReader(bytes: bytes)
            let (entries, checksums) = try records(&reader, target: target, incremental: true)
            guard reader.atEnd, checksums.isEmpty else { throw SyncError.badRemoteListing(target: target, reason: "bytes after the end of the listing") }
            return entries
        }

        private static func text(_ f: ArraySlice<UInt8>) -> String { String(decoding: f, as: UTF8.self) }

        /// NUL-separated fields, read in place.
        struct FieldReader {
            let bytes: [UInt8]
            var position = 0
            var atEnd: Bool { position == bytes.count }

            mutating func next() -> ArraySlice<UInt8>? {
                guard position < bytes.count, let end = bytes[position...].firstIndex(of: 0) else { return nil }
                defer { position = end + 1 }
                return bytes[position..<end]
            }
        }

        /// Six-field records up to `E` (and a checksum section). A full listing's paths are relative
        /// (`%P`, the destination itself first, as ""); an incremental one's start with "./" (`%p`),
        /// may come in any order, and may repeat a path (the later record wins).
        static func records(_ reader: inout FieldReader, target: String, incremental: Bool) throws -> ([FileEntry], [([UInt8], [UInt8])]) {
            var entries: [FileEntry] = []
            var checksums: [([UInt8], [UInt8])] = []
            let marker = Array("checksums".utf8)
            var complete = false
            while let type = reader.next() {
                if type.elementsEqual([UInt8(ascii: "E")]) { complete = true; break }
                if !incremental && type.elementsEqual(marker) {
                    while let line = reader.next() {
                        if line.elementsEqual([UInt8(ascii: "E")]) { complete = true; break }
                        // "HASH  ./path"
                        let s = line.startIndex
                        guard line.count > 68, isHexHash(line.prefix(64)), line[(s + 64)..<(s + 68)].elementsEqual("  ./".utf8),
                              isSafeRelativePath(line[(s + 68)...]) else {
                            throw SyncError.badRemoteListing(target: target, reason: "malformed checksum line")
                        }
                        checksums.append((Array(line[(s + 68)...]), Array(line.prefix(64))))
                    }
                    break
                }
                guard let modeField = reader.next(), let sizeField = reader.next(), let timeField = reader.next(), var pathField = reader.next(),
                      let linkField = reader.next(), let mode = UInt32(text(modeField), radix: 8), mode <= 0o7777,
                      let size = Int64(text(sizeField)), size >= 0, let mtime = Timestamp(decimal: text(timeField)) else {
                    throw SyncError.badRemoteListing(target: target, reason: "truncated or malformed entry")
                }
                let safe: Bool
                if incremental {
                    // "." is the destination itself, "./x" a path inside it.
                    if pathField.elementsEqual([0x2E]) { pathField = pathField.prefix(0); safe = true }
                    else if pathField.starts(with: [0x2E, 0x2F]) { pathField = pathField.dropFirst(2); safe = isSafeRelativePath(pathField) }
                    else { safe = false }
                } else {
                    // The first entry is the destination itself (""); every other is a path inside it.
                    safe = entries.isEmpty ? pathField.isEmpty : isSafeRelativePath(pathField)
                }
                guard safe, type.count == 1 else {
                    throw SyncError.badRemoteListing(target: target, reason: "an entry outside the destination or of no known type: '\(text(pathField))'")
                }
                let k = FileEntry.Kind(findType: type.first)
                if incremental && pathField.isEmpty && k != .directory {
                    throw SyncError.badRemoteListing(target: target, reason: "the destination listed as other than a directory")
                }
                entries.append(FileEntry(path: Array(pathField), kind: k, mode: mode, size: k == .file ? size : 0,
                                         mtime: mtime, linkTarget: k == .symlink ? Array(linkField) : nil))
            }
            guard complete else { throw SyncError.badRemoteListing(target: target, reason: "the listing ended early") }
            return (entries, checksums)
        }

        /// SHA-256 of the named files (relative to `destination`), for files whose size matches.
        package static func hashes(_ session: any RemoteShell, destination: String, paths: [[UInt8]], cancel: CancellationToken? = nil) throws -> [[UInt8]: [UInt8]] {
            let command = RemoteCommand.script(#"cd "$1" && xargs -0 -r sha256sum -z --"#, arguments: [Array(destination.utf8)])
            var out: [UInt8] = []
            var err: [UInt8] = []
            let status = try session.exec(command, stdin: BytesInput(paths.flatMap { $0 + [0] }), cancel: cancel,
                                          stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) })
            guard status == .exited(0) else {
                throw SyncError.remote(target: session.name, step: "hashing files in \(destination)", status: "\(status)", stderr: String(decoding: err, as: UTF8.self))
            }
            return try parseHashes(out, target: session.name)
        }

        /// `sha256sum -z` output: "HASH  path" records, NUL-terminated.
        package static func parseHashes(_ out: [UInt8], target: String) throws -> [[UInt8]: [UInt8]] {
            var result: [[UInt8]: [UInt8]] = [:]
            for line in out.split(separator: 0) {
                let s = line.startIndex
                guard line.count > 66, isHexHash(line.prefix(64)), line[(s + 64)..<(s + 66)].elementsEqual("  ".utf8),
                      isSafeRelativePath(line[(s + 66)...]) else {
                    throw SyncError.badRemoteListing(target: target, reason: "malformed hash answer")
                }
                result[Array(line[(s + 66)...])] = Array(line.prefix(64))
            }
            return result
        }

        /// Runs inside `syncScript`, under its lock: marks the destination as ferry's before changing
        /// anything (so a failed first sync can be re-run), reads the tar stream into staging, then:
        /// deletions, new directories, files renamed into place (util-linux rename, one process),
        /// metadata-only fixes, directory modes and mtimes last. A first copy (no or an empty
        /// destination) is staged whole and moved into place with one rename. Staging sits beside the
        /// destination, or inside it (`.ferry-stage`, never listed) when the destination is a mount
        /// point, where no rename could cross; it is removed on every exit.
        static let applyScript = applyBegin + streamsFromStdin + applyEnd

        /// The apply's start: the staging folder (emptied), the traps that remove it, the `synced`
        /// mark; `$streams` is the number of tar streams (1 when only stdin's).
        static let applyBegin = #"""
        set -e
        # Every process here is paid once per host and sync: the success path of a first copy starts
        # five (mkdir, tar, mv, tar, rm), and tests and builtins do the rest.
        # Folders above the destination that ferry makes are readable, as `mkdir -p` makes them.
        [ -d "${dest%/*}/" ] || (umask 022 && mkdir -p "${dest%/*}/")
        stage=$state/stage
        mountpoint=0
        if [ -d "$dest" ]; then
          set -- $(stat -c %d "$dest" "$state")
          if [ "$1" != "$2" ] || mountpoint -q "$dest"; then stage=$dest/\#(inTreeStage) mountpoint=1; fi
        fi
        trap 'rm -rf "$stage" "$state/rootstamp" "$state/directories.tar"' EXIT
        trap 'exit 129' HUP
        trap 'exit 130' INT
        trap 'exit 143' TERM
        : > "$state/synced"
        # Staging inside a mount point changes the root's mtime: it is put back at the end.
        [ ! -d "$dest" ] || touch -m -r "$dest" "$state/rootstamp"
        if [ -e "$stage" ] || [ -L "$stage" ]; then rm -rf "$stage"; fi
        mkdir -p "$stage/data"

        """#

        /// The sync's tar stream on stdin, and its extra streams.
        static let streamsFromStdin = #"""
        # Extra streams (ExtraStreams) extract into the same folder once ferry hears where it is.
        # ferry ends this command's input only after they have ended (tar stops at its archive's
        # end, so the end of input is awaited here), and each must have completed.
        [ "$streams" -le 1 ] || printf '\036ferry-stage %s\n' "$stage" >&2
        tar -x -f - -C "$stage" --no-same-owner --same-permissions
        n=1
        if [ "$streams" -gt 1 ]; then while IFS= read -r _; do :; done; fi
        while [ "$n" -lt "$streams" ]; do
          [ -e "$stage/stream.$n.done" ] || { echo "extra stream $n of $streams did not complete" >&2; exit 1; }
          n=$((n + 1))
        done

        """#

        /// The apply proper, once the stage holds the files (`data/`) and the plan's lists.
        static let applyEnd = #"""
        for f in "$stage"/discard*; do [ ! -s "$f" ] || (cd "$stage/data" && xargs -0 -r rm -f -- < "$f"); done
        if [ -e "$stage/fresh" ] && [ "$mountpoint" = 0 ]; then
          # A first copy's stream made every folder.
          [ ! -d "$dest" ] || rmdir "$dest"
          mv -T "$stage/data" "$dest"
          cd "$dest"
        else
          for r in rename.ul rename; do
            rename=$(command -v "$r" 2>/dev/null) || continue
            case $("$rename" --version 2>/dev/null) in *util-linux*) break ;; esac
            rename=
          done
          [ -n "$rename" ] || { echo "the util-linux rename command is missing on the target (install util-linux; a Perl rename is never used)" >&2; exit 1; }
          mkdir -p "$dest"
          cd "$dest"
          # A rename that cannot work must fail before anything is deleted (the root's mtime is kept).
          : > "$stage/.probe"
          "$rename" -- "$stage/.probe" "$dest/.ferry-probe.$$" "$stage/.probe" || { echo "cannot rename from $stage into $dest" >&2; exit 1; }
          rm -f "$dest/.ferry-probe.$$"
          [ ! -s "$stage/deletions" ] || xargs -0 -r rm -rf -- < "$stage/deletions"
          [ ! -s "$stage/directories" ] || xargs -0 -r mkdir -p -- < "$stage/directories"
          find "$stage/data" ! -type d -print0 | xargs -0 -r "$rename" -- "$stage/data" "$dest"
        fi
        # Files whose contents were already right: modes and mtimes only, one process per distinct
        # value. One with other links (a deploy's snapshot holds one) is replaced by a copy first:
        # a snapshot's files never change.
        set -- "$stage"/modes/* "$stage"/times/*
        if [ -f "$1" ] || [ -f "$2" ] || [ "$#" -gt 2 ]; then
          for f; do [ ! -f "$f" ] || cat "$f"; done | xargs -0 -r stat --printf '%h %n\0' -- | grep -zv '^1 ' | sed -z 's/^[0-9]* //' |
            xargs -0 -r sh -c 'for p; do cp -Pp -- "$p" "$0/unlinked" && mv -f -- "$0/unlinked" "$p" || exit 1; done' "$stage"
        fi
        for f in "$stage"/modes/* "$stage"/times/*; do
          [ -f "$f" ] || continue
          case $f in
            "$stage"/modes/*) xargs -0 -r chmod "${f##*/}" -- < "$f" ;;
            *) xargs -0 -r touch -m -d "@${f##*/}" -- < "$f" ;;
          esac
        done
        directories=$stage/directories.tar
        if [ "$mountpoint" = 1 ]; then
          # The stage is inside the destination: it goes before the root's times are put back.
          mv "$stage/directories.tar" "$state/directories.tar"
          rm -rf "$stage"
          directories=$state/directories.tar
        fi
        [ ! -e "$state/rootstamp" ] || touch -m -r "$state/rootstamp" "$dest"
        tar -x -f "$directories" -C "$dest" --no-same-owner
        """#

        /// An extra stream (see `ExtraStreams`): $1 the staging folder the sync's command made, $2 the
        /// stream's number. Writes nowhere else; marks its stream complete only when tar succeeded.
        static let extractScript = #"""
        stage=$1 n=$2
        umask 077
        cd "$stage" 2>/dev/null && [ -d data ] || { echo "the staging folder $stage is gone" >&2; exit 1; }
        tar -x -f - --no-same-owner --same-permissions || exit 1
        : > "stream.$n.done"
        """#
    }
}
