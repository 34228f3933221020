import FerrySSH
import Foundation

extension TargetState {
    /// The deploy lock's holder: a shell on the deploy's session that takes `lock` and keeps it
    /// while ferry's heartbeat lasts (see `DeployLock`). It reads `Order` lines on stdin and
    /// answers `Answer` lines on stdout.
    package enum Holder {
        /// No heartbeat for this long (ferry gone, the link blackholed): the holder ends itself.
        package static let heartbeatTimeout = 30

        /// Takes the lock of `state` for deploy `id`, waiting `wait` seconds at most (0: refuse at once, exit 75).
        /// With `inputs` (nil: none asked), it also names, while the deploy syncs, what a rebuild
        /// reads besides the synced trees (`Inputs`) and the last rebuild's record.
        package static func command(_ state: TargetState, id: String, holder: LockHolder, wait: Int, inputs: [String]? = nil) throws -> RemoteCommand {
            let info = String(decoding: try JSONEncoder().encode(holder), as: UTF8.self)
            return .script(script, arguments: [state.root, id, info, String(wait), inputs == nil ? "0" : "1",
                                               (inputs ?? []).joined(separator: "\n")].map { Array($0.utf8) })
        }

        /// What a rebuild reads on the host besides the synced trees, each named by what it is
        /// now: a file's SHA-256 (`/etc/nixos/hardware-configuration.nix`, `/etc/nix/nix.conf` and
        /// the files it includes, `/etc/nix/registry.json`, the host's `extra_inputs`), each
        /// `NIX_PATH` entry's `readlink -f`, and the running system. `missing` and `unreadable`
        /// are values too (an unreadable one never matches).
        package static let fixedInputs = ["/etc/nixos/hardware-configuration.nix", "/etc/nix/nix.conf", "/etc/nix/registry.json"]
        package static let unreadable = "unreadable"

        /// What ferry sends the holder, one line each.
        package enum Order: Equatable {
            /// The heartbeat.
            case beat
            /// A process group on the target that ends with the holder (another command of the deploy).
            case group(Int32)
            /// Start the rebuild job (`deploys/ID/job.sh`), which inherits the lock.
            case rebuild
            /// Write a `--sync-only` deploy's record (its outcome set), then end.
            case record(DeployRecord)
            case release

            /// Nil: a record that does not fit one line.
            package var line: String? {
                switch self {
                case .beat: return "beat"
                case .group(let g): return "group \(g)"
                case .rebuild: return "rebuild"
                case .release: return "release"
                case .record(let r):
                    guard let outcome = r.outcome else { return nil }
                    let json = r.json
                    return json.contains("\n") ? nil : "record \(outcome.line)\t\(json)"
                }
            }
        }

        /// What the holder says, one line each.
        package enum Answer: Equatable {
            /// The lock is held by someone else (said before waiting for it).
            case busy(LockState)
            /// A source's manifest on the target (its header matches its records) and its digest.
            case manifest(source: String, digest: String)
            /// Every manifest has been named.
            case manifestsDone
            case locked
            /// The rebuild job's pid.
            case started(Int32)
            /// The sync-only record is written.
            case recorded
            /// One of the rebuild's inputs (see `fixedInputs`): its key (`file:PATH`,
            /// `nixpath:ENTRY`, `system`) and what it is now.
            case input(key: String, value: String)
            /// The last rebuild's record file (empty: none), then every input has been named.
            case inputsDone(lastRebuild: [UInt8])

            package init?(line: String) {
                let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
                switch parts[0] {
                case "locked": self = .locked
                case "recorded": self = .recorded
                case "manifests": self = .manifestsDone
                case "manifest" where parts.count == 3: self = .manifest(source: parts[2], digest: parts[1])
                case "busy": self = .busy(LockState(word: parts.count > 1 ? parts[1] : "", info: Array((parts.count == 3 ? parts[2] : "").utf8)))
                case "started" where parts.count == 2: guard let pid = Int32(parts[1]) else { return nil }; self = .started(pid)
                case "input" where parts.count == 3: self = .input(key: parts[1], value: parts[2])
                case "inputs":
                    guard let data = Data(base64Encoded: parts.count > 1 ? parts[1] : "") else { return nil }
                    self = .inputsDone(lastRebuild: Array(data))
                default: return nil
                }
            }
        }

        /// $1 root, $2 deploy id, $3 the lock-info line, $4 seconds to wait for the lock, $5 "1":
        /// name the rebuild's inputs, $6 the host's extra inputs (one path per line).
            static let script = #"""
        root=$1 id=$2 info=$3 wait=$4 inputs=$5 extra=$6
        state=$root/.ferry tab=$(printf '\t')
        # The state is root's alone (logs and records may hold what an operator would not publish);
        # the root above it, and the sources in it, stay readable for the services that use them.
        [ -d "$root" ] || (umask 022 && mkdir -p "$root") || exit 1
        umask 077
        [ -d "$state/deploys" ] || mkdir -p "$state/deploys" || exit 1
        exec 9>>"$state/lock" || exit 1
        if ! flock -n 9; then
          \#(TargetState.lockQuery)
          lock_state
          # A status or unlock asking the same question holds the lock for an instant: free now, it
          # is taken after a second's grace at most, never called busy.
          if ! { [ "$held" = free ] && flock -w 1 9; }; then
            printf 'busy %s %s\n' "$held" "$info"
            [ "$wait" -gt 0 ] && flock -w "$wait" 9 || exit 75
          fi
        fi
        # State an earlier ferry left open is closed now. Snapshot trees are left alone: their files
        # are the live trees' (hard links), whose modes are the sources'; the folders above them
        # are closed.
        find "$state" -path "$state/snapshots/*/*/tree" -prune -o ! -type l -perm /077 -exec chmod go= {} + 2>/dev/null
        # Who holds it now (line 1) and the deploy's id (line 2), for `ferry status` and `ferry unlock`.
        printf '%s\n%s\n' "$info" "$id" > "$state/lock-info.tmp" && mv -f "$state/lock-info.tmp" "$state/lock-info" || exit 1
        printf '%s\n' "$$" > "$state/lock-pid"
        hb=$state/heartbeat
        # Emptied, not removed, on the way out: no process. (The heartbeat files are reused.)
        trap ': > "$state/lock-pid"' EXIT
        echo locked
        # The first line of each manifest names its digest: a deploy that would write the same skips
        # it. Only a manifest whose records match its header is named (one sha256sum each, no copy);
        # said after "locked", while the deploy syncs, which needs them only at its end.
        for m in "$state"/*/manifest; do
          { IFS= read -r h && case $h in "\#(ManifestFile.header)sha256:"*) sum=$(sha256sum) ;; *) false ;; esac; } 2>/dev/null < "$m" || continue
          [ "sha256:${sum%% *}" = "${h#\#(ManifestFile.header)}" ] || continue
          n=${m%/manifest}; printf 'manifest %s %s\n' "${h#\#(ManifestFile.header)}" "${n##*/}"
        done
        echo manifests
        if [ "$inputs" = 1 ]; then
          sum() {
            if [ -f "$1" ] && [ -r "$1" ]; then s=$(sha256sum < "$1") && echo "${s%% *}" || echo \#(Holder.unreadable)
            elif [ -e "$1" ] || [ -L "$1" ]; then echo \#(Holder.unreadable)
            else echo missing; fi
          }
          # nix.conf and what it includes (`include F`, `!include F`; relative to the including file), five deep.
          confs=/etc/nix/nix.conf seen=
          for _ in 1 2 3 4 5; do
            next=
            for c in $confs; do
              case " $seen " in *" $c "*) continue ;; esac
              seen="$seen $c"
              [ -r "$c" ] || continue
              for f in $(sed -n 's/^[[:space:]]*!\{0,1\}include[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "$c"); do
                case $f in /*) ;; *) f=${c%/*}/$f ;; esac
                next="$next $f"
              done
            done
            confs=$next
          done
          { printf '%s\n' \#(Holder.fixedInputs.joined(separator: " ")) $seen; [ -z "$extra" ] || printf '%s\n' "$extra"; } | sort -u | while IFS= read -r f; do
            [ -n "$f" ] && printf 'input file:%s %s\n' "$f" "$(sum "$f")"
          done
          # The NIX_PATH the rebuild sees (the job gets this session's), each entry where it leads now.
          ( IFS=:
            for e in ${NIX_PATH:-}; do
              p=${e#*=}
              case $p in
                *://*|channel:*|flake:*) r=\#(Holder.unreadable) ;;
                *) r=$(readlink -f -- "$p" 2>/dev/null) || r=missing ;;
              esac
              printf 'input nixpath:%s %s\n' "$e" "${r:-missing}"
            done )
          printf 'input system %s\n' "$(readlink /run/current-system 2>/dev/null || echo missing)"
          printf 'inputs %s\n' "$(base64 -w0 < "$state/\#(TargetState.rebuildRecordName)" 2>/dev/null)"
        fi
        # No line for \#(Holder.heartbeatTimeout) s (ferry gone, the link blackholed), or the channel
        # closed: the deploy is gone. Its other commands (a sync waiting on a blackholed link) end
        # too, so nothing keeps a lock. A line costs no process: the reader touches a file, and a
        # watchdog looks every 5 s whether it is newer than a mark made \#(Holder.heartbeatTimeout) s before.
        : > "$hb"
        ( exec 9>&-
          trap 'kill $s 2>/dev/null; exit 0' TERM
          i=0
          while :; do
            m=$hb.$((i % \#(Holder.heartbeatTimeout / 5)))
            if [ $i -ge \#(Holder.heartbeatTimeout / 5) ] && ! [ "$hb" -nt "$m" ]; then kill -TERM $$; exit 0; fi
            : > "$m"
            sleep 5 & s=$!
            wait $s
            i=$((i + 1))
          done ) </dev/null >/dev/null 2>&1 &
        watchdog=$!
        groups=
        gone() { kill $watchdog 2>/dev/null; for g in $groups; do kill -TERM "-$g" 2>/dev/null; done; exit 0; }
        trap gone TERM
        while IFS= read -r line || gone; do
          : > "$hb"
          case $line in
            group\ *) groups="$groups ${line#group }" ;;
            rebuild)
              kill $watchdog 2>/dev/null
              d=$state/deploys/$id
              # The job gets the locked open file on its stdin (systemd-run --pipe passes it on).
              if [ -d /run/systemd/system ]; then
                setsid systemd-run --unit "ferry-deploy-$id" --collect --pipe --quiet \
                  --setenv=PATH="$PATH" ${NIX_PATH:+"--setenv=NIX_PATH=$NIX_PATH"} ${LOCALE_ARCHIVE:+"--setenv=LOCALE_ARCHIVE=$LOCALE_ARCHIVE"} \
                  -- /bin/sh "$d/job.sh" <&9 >/dev/null 2>&1 &
              else
                setsid /bin/sh "$d/job.sh" <&9 >/dev/null 2>&1 &
              fi
              i=0
              while [ ! -s "$d/pid" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
              [ -s "$d/pid" ] || { echo "the rebuild job did not start within 30 s" >&2; exit 1; }
              printf 'started %s\n' "$(cat "$d/pid")"
              exit 0 ;;
            # A --sync-only deploy's record (its outcome line, a tab, its base), then the end.
            record\ *)
              kill $watchdog 2>/dev/null
              r=${line#record }
              outcome=${r%%"$tab"*} base=${r#*"$tab"}
              printf '%s\n%s\n' "$base" "$outcome" > "$state/\#(TargetState.syncRecordName).tmp" &&
                mv -f "$state/\#(TargetState.syncRecordName).tmp" "$state/\#(TargetState.syncRecordName)" && echo recorded
              exit 0 ;;
            release) kill $watchdog 2>/dev/null; exit 0 ;;
          esac
        done
        """#
    }
}
