import FerrySSH

extension TargetState {
    /// What `ferry status` reads in one command, without taking the lock: the running system, who
    /// holds the lock, and the records.
    package enum Status {
        package static func command(_ state: TargetState) -> RemoteCommand {
            .script(script, arguments: ([state.directory] + files(state)).map { Array($0.utf8) })
        }

        static func files(_ state: TargetState) -> [String] { [state.rebuildRecord, state.syncRecord, state.legacyRecord] }

        /// The lock's state alone (a diff notes a deploy in progress): the same script, no records.
        package static func lockCommand(_ state: TargetState) -> RemoteCommand {
            .script(script, arguments: [Array(state.directory.utf8)])
        }

        /// `lockCommand`'s answer; nil: a short one.
        package static func lock(_ out: [UInt8]) -> LockState? {
            let fields = out.split(separator: 0, omittingEmptySubsequences: false)
            guard fields.count >= 3 else { return nil }
            return LockState(word: String(decoding: fields[1], as: UTF8.self), info: Array(fields[2]))
        }

        package struct Answer: Equatable {
            /// The last deploy that rebuilt, and the last `--sync-only` deploy.
            package var rebuild: DeployRecord.Read
            package var sync: DeployRecord.Read
            package var lock: LockState
            /// `readlink /run/current-system`.
            package var currentSystem: String

            /// Nil: a short answer. The files it names are those of `state`.
            package init?(_ out: [UInt8], state: TargetState) {
                let fields = out.split(separator: 0, omittingEmptySubsequences: false).map { Array($0) }
                guard fields.count >= 6 else { return nil }
                let files = Status.files(state)
                lock = LockState(word: String(decoding: fields[1], as: UTF8.self), info: fields[2])
                rebuild = DeployRecord.read(fields[3], file: files[0])
                sync = DeployRecord.read(fields[4], file: files[1])
                currentSystem = String(decoding: fields[0], as: UTF8.self)
                if rebuild == .none && sync == .none {
                    // A host last deployed by a ferry that kept one record for both.
                    let legacy = DeployRecord.read(fields[5], file: files[2])
                    if legacy.record?.outcome?.result == .syncOnly { sync = legacy } else { rebuild = legacy }
                }
            }
        }

        /// $1 the state folder, $2… the record files. NUL-separated: current system, lock state, lock
        /// info, each record file (empty when there is none).
        static let script = #"""
        state=$1
        shift
        printf '%s\0' "$(readlink /run/current-system 2>/dev/null)"
        \#(TargetState.lockQuery)
        lock_state
        printf '%s\0%s\0' "$held" "$info"
        for f in "$@"; do tr -d '\0' < "$f" 2>/dev/null; printf '\0'; done
        """#
    }

    /// Frees the deploy lock, or stops its holder when forced (see the script).
    package enum Unlock {
        package static func command(_ state: TargetState, force: Bool) -> RemoteCommand {
            .script(script, arguments: [state.directory, force ? "1" : "0"].map { Array($0.utf8) })
        }

        /// The first line: `free`, or the lock's word and holder before anything was done.
        package struct Answer {
            package var wasFree: Bool
            package var lock: LockState

            package init(_ out: [UInt8]) {
                let first = out.split(separator: UInt8(ascii: "\n")).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
                let parts = first.split(separator: " ", maxSplits: 1).map(String.init)
                wasFree = parts.first == "free"
                lock = LockState(word: parts.first ?? "", info: Array((parts.count == 2 ? parts[1] : "").utf8))
            }
        }

        /// $1 the state folder, $2 "1" to force. Frees a lock whose holder is gone (clearing its notes); refuses
        /// (exit 75, the holder's info on stdout) while a deploy or rebuild holds it, unless forced:
        /// then the holder's process group is sent SIGTERM, and a rebuild stopped that way gets its
        /// outcome in its record ("stopped"), which its job, killed, never writes.
        static let script = #"""
        umask 077
        state=$1 force=$2 record=$1/\#(TargetState.rebuildRecordName)
        [ -e "$state/lock" ] || { echo free; exit 0; }
        exec 9>>"$state/lock" || exit 1
        \#(TargetState.lockQuery)
        lock_state
        if [ "$held" = free ] && flock -n 9; then rm -f "$state/lock-pid"; echo free; exit 0; fi
        what=$held
        printf '%s %s\n' "$what" "$info"
        # Nothing of ferry's to stop: the holder is not known.
        [ "$what" != other ] || exit 76
        [ "$force" = 1 ] || exit 75
        [ "$what" != confirming ] || what=running
        if [ "$what" = running ]; then kill -TERM "-$jpid" 2>/dev/null || kill -TERM "$jpid"; fi
        [ -z "$hpid" ] || kill -TERM "-$hpid" 2>/dev/null || kill -TERM "$hpid" 2>/dev/null
        flock -w 10 9 || { echo "the lock is still held 10 s after SIGTERM to its holder" >&2; exit 1; }
        rm -f "$state/lock-pid"
        if [ "$what" = running ]; then
          base= outcome=
          { IFS= read -r base; IFS= read -r outcome; } 2>/dev/null < "$record"
          case $base in
            *"\"id\":\"$hid\""*)
              [ -n "$outcome" ] || { printf '%s\nfinished stopped - %s - -\n' "$base" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$record.tmp" &&
                mv -f "$record.tmp" "$record"; } ;;
          esac
        fi
        echo forced
        """#
    }

    /// A source's manifest as the last deploy left it (exit 1: none; a symlink is none too).
    package enum ManifestRead {
        package static func command(_ state: TargetState, source: String) -> RemoteCommand {
            TreeFile.command(Array(state.manifest(source).utf8))
        }
    }

    /// The newest deploys' records, newest first (by when each started on the target: deploy ids
    /// come from the operators' clocks, a second apart at best): each deploy folder's `record`,
    /// or its record base while the job has written none. The answer is `ID NUL RECORD NUL` per
    /// deploy.
    package enum History {
        package static func command(_ state: TargetState, count: Int) -> RemoteCommand {
            .script(script, arguments: [state.deploys, String(count)].map { Array($0.utf8) })
        }

        static let script = #"""
        cd "$1" 2>/dev/null || exit 0
        # Newest first by the target's clock (each deploy's record base is written as it starts).
        ls -1t -- */record-base.json 2>/dev/null | head -n "$2" | while IFS= read -r f; do
          id=${f%/record-base.json}
          [ ! -f "$id/record" ] || f=$id/record
          printf '%s\0' "$id" && cat "$f" && printf '\0'
        done
        """#

        package static func parse(_ bytes: [UInt8], state: TargetState) -> [(id: String, record: DeployRecord.Read)] {
            let fields = bytes.split(separator: 0, omittingEmptySubsequences: false)
            return stride(from: 0, to: fields.count - 1, by: 2).map { i in
                let id = String(decoding: fields[i], as: UTF8.self)
                var text = Array(fields[i + 1])
                // A record base is one line without its end.
                if text.last != 0x0A && !text.isEmpty { text.append(0x0A) }
                return (id, DeployRecord.read(text, file: state.deploy(id) + "/record"))
            }
        }
    }

    /// A regular file of a synced tree, whole (exit 1: no such file, or not a regular one).
    package enum TreeFile {
        package static func command(_ path: [UInt8]) -> RemoteCommand {
            .script(#"[ -f "$1" ] && [ ! -L "$1" ] && cat -- "$1""#, arguments: [path])
        }
    }
}
