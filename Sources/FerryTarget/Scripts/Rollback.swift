import FerrySSH

extension TargetState {
    /// A rollback on the target: what it can return to (`history`), the restore plans ferry makes
    /// for it (`upload`), and its job's command (`jobCommand`), which `Job` runs detached like a
    /// rebuild: every source restored from its snapshot, then that deploy's system activated.
    package enum Rollback {
        /// Every deploy folder, newest first (by when each started on the target): the running
        /// system, then per deploy its id, its record (or record base), its snapshots with whether
        /// each is still whole ("NAME HEX kept|gone" lines), and which store paths of its outcome
        /// are still a system (`bin/switch-to-configuration` is there).
        package static func history(_ state: TargetState) -> RemoteCommand {
            .script(historyScript, arguments: [state.deploys, state.snapshotsFolder].map { Array($0.utf8) })
        }

        package struct Entry: Equatable, Sendable {
            package var id: String
            package var record: DeployRecord.Read
            /// Per source: its snapshot's folder name, and whether its tree and manifest are there.
            package var snapshots: [(source: String, name: String, kept: Bool)]
            /// Store paths named by the outcome that are still systems on the host.
            package var systems: Set<String>

            package init(id: String, record: DeployRecord.Read, snapshots: [(source: String, name: String, kept: Bool)], systems: Set<String>) {
                self.id = id
                self.record = record
                self.snapshots = snapshots
                self.systems = systems
            }

            package static func == (a: Entry, b: Entry) -> Bool {
                a.id == b.id && a.record == b.record && a.systems == b.systems
                    && a.snapshots.map { "\($0.source) \($0.name) \($0.kept)" } == b.snapshots.map { "\($0.source) \($0.name) \($0.kept)" }
            }
        }

        /// `history`'s answer: the running system and the deploys, newest first.
        package static func parse(_ bytes: [UInt8], state: TargetState) -> (running: String, entries: [Entry]) {
            let fields = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            guard let running = fields.first else { return ("", []) }
            var entries: [Entry] = []
            var i = 1
            while i + 3 < fields.count {
                let id = fields[i]
                var text = Array(fields[i + 1].utf8)
                if text.last != 0x0A && !text.isEmpty { text.append(0x0A) }
                let snapshots = fields[i + 2].split(separator: "\n").compactMap { line -> (String, String, Bool)? in
                    let w = line.split(separator: " ").map(String.init)
                    return w.count == 3 ? (w[0], w[1], w[2] == "kept") : nil
                }
                entries.append(Entry(id: id, record: DeployRecord.read(text, file: state.deploy(id) + "/record"), snapshots: snapshots,
                                     systems: Set(fields[i + 3].split(separator: " ").map(String.init))))
                i += 4
            }
            return (running, entries)
        }

        static let historyScript = #"""
        snapshots=$2
        printf '%s\0' "$(readlink /run/current-system 2>/dev/null)"
        cd "$1" 2>/dev/null || exit 0
        ls -1t -- */record-base.json 2>/dev/null | while IFS= read -r f; do
          id=${f%/record-base.json}
          [ ! -f "$id/record" ] || f=$id/record
          printf '%s\0' "$id" && cat "$f" && printf '\0'
          if [ -f "$id/snapshots" ]; then
            while read -r s h; do
              if [ -d "$snapshots/$s/$h/tree" ] && [ -f "$snapshots/$s/$h/manifest" ]; then w=kept; else w=gone; fi
              printf '%s %s %s\n' "$s" "$h" "$w"
            done < "$id/snapshots"
          fi
          printf '\0'
          last=$(sed -n 2p "$f")
          case $last in finished\ *) for p in $last; do
            case $p in /nix/store/*) [ ! -x "$p/bin/switch-to-configuration" ] || printf '%s ' "$p" ;; esac
          done ;; esac
          printf '\0'
        done
        """#

        /// Where a source's restore plan goes, in deploy `id`'s folder.
        package static func plan(_ state: TargetState, id: String, source: String) -> String {
            state.deploy(id) + "/restore/" + source + ".tar"
        }

        /// Puts the restore plans (an archive of `NAME.tar` files on stdin) in deploy `id`'s folder.
        package static func upload(_ state: TargetState, id: String) -> RemoteCommand {
            .script(#"umask 077 && mkdir -p "$1/restore" && tar -x -f - -C "$1/restore" --no-same-owner"#, arguments: [Array(state.deploy(id).utf8)])
        }

        /// One source to restore: its destination and the snapshot folder it returns to.
        package struct Restore: Sendable {
            package var source: String
            package var destination: String
            package var snapshot: String

            package init(source: String, destination: String, snapshot: String) {
                self.source = source
                self.destination = destination
                self.snapshot = snapshot
            }
        }

        /// The job's command: restores each source (its plan from `plan`), then activates `system`
        /// with `operation` (switch, boot or test; the profile is set for switch and boot).
        package static func jobCommand(_ state: TargetState, id: String, operation: String, system: String, restores: [Restore]) -> [String] {
            var arguments = ["/bin/sh", "-c", jobScript, "ferry-rollback", operation, system, restoreScript]
            for r in restores {
                let (sourceState, name) = TargetState.forDestination(r.destination)
                arguments += [r.source, r.destination, sourceState.source(name), r.snapshot, plan(state, id: id, source: r.source)]
            }
            return arguments
        }

        /// $1 operation, $2 system, $3 the restore script, then five per source: name, destination,
        /// its state folder, snapshot folder, plan. Nothing is activated unless every source is back.
        static let jobScript = #"""
        op=$1 system=$2 restore=$3
        shift 3
        PATH=$PATH:/run/current-system/sw/bin
        [ -x "$system/bin/switch-to-configuration" ] || { echo "ferry: $system is gone (garbage-collected?): nothing was changed" >&2; exit 1; }
        while [ "$#" -ge 5 ]; do
          echo "ferry: restoring $1 ($2) from snapshot ${4##*/}"
          sh -c "$restore" ferry-restore "$2" "$3" "$4" "$5" || { echo "ferry: restoring $1 failed; the system was not changed" >&2; exit 1; }
          shift 5
        done
        if [ "$op" != test ]; then
          echo "ferry: setting the system profile to $system"
          nix-env -p /nix/var/nix/profiles/system --set "$system" || exit 1
        fi
        echo "ferry: activating $system ($op)"
        "$system/bin/switch-to-configuration" "$op"
        """#

        /// Restores one tree from its snapshot through the sync's own apply, under the same lock:
        /// the plan (`Syncer`'s lists, with `links` naming the files to take from the snapshot
        /// instead of a tar stream) is extracted into the stage, the files are hard-linked from the
        /// snapshot (copied, keeping mode and mtime, across filesystems), and the apply moves them
        /// into place. Then the source's manifest is the snapshot's, and its next listing is a full
        /// one (every restored file's ctime changed). $1 destination, $2 its state folder, $3 the
        /// snapshot folder, $4 the plan.
        static let restoreScript = #"""
        dest=$1 state=$2 from=$3/tree plan=$4 streams=1
        umask 077
        [ -d "$state" ] || mkdir -p "$state" || exit 1
        exec 9>>"$state/lock" || exit 1
        flock -w 10 9 || { echo "another ferry sync to $dest is running (lock $state/lock is held)" >&2; exit 75; }
        [ -d "$from" ] && [ -f "$3/manifest" ] || { echo "the snapshot $3 is gone" >&2; exit 1; }
        \#(Tree.applyBegin)
        tar -x -f "$plan" -C "$stage" --no-same-owner
        if [ -s "$stage/links" ]; then
          link=--link
          set -- $(stat -c %d "$from" "$stage")
          [ "$1" = "$2" ] || link=
          (cd "$from" && xargs -0 -r cp -P -p --parents $link -t "$stage/data" --) < "$stage/links"
        fi
        \#(Tree.applyEnd)
        rm -f "$state/generation"
        cp "${from%/tree}/manifest" "$state/manifest.tmp" && mv -f "$state/manifest.tmp" "$state/manifest"
        """#
    }
}
