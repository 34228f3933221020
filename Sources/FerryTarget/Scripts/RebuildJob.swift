import FerrySSH

extension TargetState {
    /// A deploy's rebuild on the target: its folder (`deploys/ID`: job.sh, record-base.json, log,
    /// pid, status), the job that runs nixos-rebuild detached from ferry's channel and writes the
    /// record's outcome, and the follower that streams its log. A `--sync-only` deploy's record is
    /// written here too. Each command first puts the manifests ferry sends on stdin in place.
    package enum Job {
        /// Where a source's new manifest goes in the archive the commands below read on stdin.
        package static func manifestUpload(_ source: String) -> String { source + "/manifest.new" }

        /// Puts `manifests` in place, writes deploy `record.id`'s folder (its job runs `command`;
        /// `snapshots` names each source's snapshot, which gets its tree's manifest) and the rebuild
        /// record's first line (started, no result), and keeps the newest 20 deploy folders and
        /// those whose snapshots are kept.
        /// With `confirmation`, `command` builds the system (`nixos-rebuild build`) and the job
        /// activates it, then waits for proof or reverts (see `Confirmation`). `archive`: the
        /// archive on stdin holds more than the manifests (revert plans, `revertPlanUpload`).
        package static func prepare(_ state: TargetState, id: String, manifests: [String], record: DeployRecord, command: [String],
                                    snapshots: [(source: String, digest: String)] = [], confirmation: Confirmation? = nil,
                                    archive: Bool = false, secrets: SecretRestarts? = nil) -> RemoteCommand {
            let directory = state.deploy(id)
            let job = script(directory: directory, record: state.rebuildRecord, command: command, confirmation: confirmation, secrets: secrets != nil)
            return .script(manifestScript + prepareScript,
                           arguments: (manifestArguments(state, manifests, archive: archive || !manifests.isEmpty)
                                       + [directory, job, record.json, state.rebuildRecord, state.deploys,
                                          snapshotLines(snapshots), state.snapshotsFolder, state.directory,
                                          confirmation.map { "\($0.operation) \($0.timeout) \($0.activationTimeout)\n" } ?? "",
                                          secrets?.rule ?? ""]).map { Array($0.utf8) })
        }

        /// After a switch or test has activated, the job restarts the units of the secrets that
        /// changed (once each) — those written before the activation, and, when `awaitsMore`, those
        /// ferry writes right after it (the job prints `secretsMarker` and waits up to 120 s for
        /// `secretsWritten`).
        package struct SecretRestarts: Sendable {
            package var units: [String]
            package var awaitsMore: Bool

            package init(units: [String], awaitsMore: Bool) {
                self.units = units
                self.awaitsMore = awaitsMore
            }

            /// The deploy folder's `secrets` file: "after 0|1", then a unit per line.
            var rule: String { "after \(awaitsMore ? 1 : 0)\n" + units.map { $0 + "\n" }.joined() }
        }

        /// The line the job writes while it waits for the secrets that go after the activation.
        package static let secretsMarker = "\u{1E}ferry-secrets"

        /// Tells deploy `id`'s job that the secrets after the activation are written, and which
        /// units they restart.
        package static func secretsWritten(_ state: TargetState, id: String, units: [String]) -> RemoteCommand {
            .script(#"""
            umask 077
            d=$1
            shift
            [ -d "$d" ] || { echo "no deploy folder $d" >&2; exit 1; }
            { for u in "$@"; do printf '%s\n' "$u"; done; } > "$d/secrets-after.tmp" && mv -f "$d/secrets-after.tmp" "$d/secrets-after"
            """#, arguments: ([state.deploy(id)] + units).map { Array($0.utf8) })
        }

        /// Confirm-or-revert (a switch or test): the job builds, activates the built system itself
        /// under a watchdog (`activationTimeout` seconds; "Could not acquire lock" from
        /// switch-to-configuration is retried for 60 s), then waits `timeout` seconds for a proof
        /// (`confirm`, over a fresh login) and settles — it alone, once — `confirmed` or
        /// `reverted`. A revert brings back the system that ran before (`R/bin/switch-to-configuration
        /// test`), for a switch the profile (`nix-env --set P`, `P/bin/switch-to-configuration boot`),
        /// and each source in `restores` from the snapshot of the tree before the deploy.
        package struct Confirmation: Sendable {
            package var operation: String
            package var timeout: Int
            package var activationTimeout: Int
            /// Each changed source and the snapshot of its tree before; its plan is `revertPlanUpload`.
            package var restores: [Rollback.Restore]

            package init(operation: String, timeout: Int, activationTimeout: Int, restores: [Rollback.Restore]) {
                self.operation = operation
                self.timeout = timeout
                self.activationTimeout = activationTimeout
                self.restores = restores
            }
        }

        /// Where a source's revert plan goes in the archive `prepare` reads (relative to the state folder).
        package static func revertPlanUpload(id: String, source: String) -> String { "deploys/\(id)/revert/\(source).tar" }

        /// What ferry tells a job that waits for proof.
        package enum Verdict: String, Sendable {
            /// A fresh login works (and, with `revert_on_check_failure`, every health check passed).
            case confirm = "confirm-request"
            /// A health check failed: revert now rather than at the deadline.
            case reject = "confirm-reject"
        }

        /// Gives deploy `id`'s waiting job `verdict`, then waits (at most `wait` seconds) for the job
        /// to settle and prints what it settled: `confirmed`, or `reverted` (a proof after the
        /// deadline changes nothing). Exit 1: no such deploy.
        package static func confirm(_ state: TargetState, id: String, wait: Int, verdict: Verdict = .confirm) -> RemoteCommand {
            .script(#"""
            umask 077
            d=$1 n=$(( $2 * 20 )) v=$3
            [ -d "$d" ] || { echo "no deploy folder $d" >&2; exit 1; }
            [ -e "$d/settled" ] || { : > "$d/$v.tmp" && mv -f "$d/$v.tmp" "$d/$v"; } || exit 1
            i=0
            while [ ! -e "$d/settled" ] && [ $i -lt "$n" ]; do sleep 0.05; i=$((i + 1)); done
            cat "$d/settled" 2>/dev/null || echo unsettled
            """#, arguments: [state.deploy(id), String(wait), verdict.rawValue].map { Array($0.utf8) })
        }

        /// Adds the health checks' line to deploy `id`'s record (in its folder, and the last
        /// rebuild's record while it is still this deploy's) once the job has written its outcome.
        package static func recordChecks(_ state: TargetState, id: String, checks: [DeployRecord.CheckResult]) -> RemoteCommand {
            .script(#"""
            umask 077
            d=$1 record=$2 line=$3 id=$4
            for f in "$d/record" "$record"; do
              [ -f "$f" ] && [ "$(wc -l < "$f")" -eq 2 ] && head -n 1 "$f" | grep -qF "\"id\":\"$id\"" || continue
              { cat "$f" && printf '%s\n' "$line"; } > "$f.tmp" && mv -f "$f.tmp" "$f" || exit 1
            done
            """#, arguments: [state.deploy(id), state.rebuildRecord, DeployRecord.CheckLine(checks: checks).json, id].map { Array($0.utf8) })
        }

        /// The line the job writes into its log once the activation has ended and it waits for
        /// proof (and again every second while it waits): the marker, then the seconds left.
        package static let confirmMarker = "\u{1E}ferry-confirm "

        /// A deploy folder's `snapshots` file: "NAME HEX" per source (names hold no white space).
        package static func snapshotLines(_ snapshots: [(source: String, digest: String)]) -> String {
            snapshots.map { "\($0.source) \(TargetState.snapshotName($0.digest))\n" }.joined()
        }

        /// Puts `manifests` in place and writes a `--sync-only` deploy's record, whole.
        package static func recordSyncOnly(_ state: TargetState, manifests: [String], record: DeployRecord) -> RemoteCommand {
            .script(manifestScript + recordScript,
                    arguments: (manifestArguments(state, manifests, archive: !manifests.isEmpty) + [record.fileText, state.syncRecord]).map { Array($0.utf8) })
        }

        /// Streams deploy `id`'s log from byte `offset` until its job ends; `waitForStart`: wait
        /// for the job's pid (a deploy that has just started it) as long as the holder does.
        package static func follow(_ state: TargetState, id: String, from offset: Int, waitForStart: Bool) -> RemoteCommand {
            .script(followScript, arguments: [state.deploy(id), String(offset), waitForStart ? "700" : "0"].map { Array($0.utf8) })
        }

        /// How the followed job ended, from the follower's stderr: its exit status, or nil when it
        /// wrote none (killed, or the host rebooted). Throws nothing: no marker is `.noMarker`.
        package enum Ending: Equatable {
            case exited(String)
            case noStatus
            case noMarker
        }

        package static func ending(stderr: String) -> Ending {
            guard let marker = stderr.range(of: statusMarker) else { return .noMarker }
            let value = String(stderr[marker.upperBound...].prefix { $0 != "\n" })
            return value == "none" ? .noStatus : .exited(value)
        }

        static let statusMarker = "\u{1E}ferry-status "
        static let outcomeMarker = "\u{1E}ferry-outcome "

        /// The job's outcome line as the follower read it after the job ended (nil: none, or not
        /// one of ferry's).
        package static func outcome(stderr: String) -> DeployRecord.Outcome? {
            guard let marker = stderr.range(of: outcomeMarker) else { return nil }
            return DeployRecord.Outcome(line: stderr[marker.upperBound...].prefix { $0 != "\n" })
        }

        private static func manifestArguments(_ state: TargetState, _ names: [String], archive: Bool) -> [String] {
            [String(names.count), state.directory, archive ? "1" : "0"] + names
        }

        /// $1 = N names, $2 the state folder, $3 "1" when stdin holds an archive, then the N source
        /// names: unpacks the archive (NAME/manifest.new files, a deploy's revert plans) into $2 and
        /// renames each named manifest over NAME/manifest — only those: what a source no longer in
        /// fleet.toml left behind is never touched; then shifts its arguments away for the script
        /// that follows it.
        static let manifestScript = #"""
        umask 077
        n=$1 state=$2 archive=$3
        shift 3
        if [ "$archive" = 1 ]; then
          (cd "$state" && tar -x -f - --no-same-owner) || exit 1
        fi
        if [ "$n" -gt 0 ]; then
          while [ "$n" -gt 0 ]; do
            f=$state/$1/manifest.new
            [ ! -f "$f" ] || mv -f -- "$f" "${f%.new}" || exit 1
            shift; n=$((n - 1))
          done
        fi

        """#

        /// The job's script. It gets the locked open file on stdin and keeps it (fd 9) until its
        /// status is written; the record is written before the status, so a follower that sees the
        /// status finds the record final.
        static func script(directory: String, record: String, command: [String], confirmation: Confirmation? = nil, secrets: Bool = false) -> String {
            let q = { (s: String) in ShellQuote.quote(s) }
            var text = """
            #!/bin/sh
            # ferry deploy job: nixos-rebuild, detached from ferry's SSH channel.
            exec 9<&0 </dev/null
            # The job's own files are root's alone; nixos-rebuild runs with a root's usual umask.
            umask 077
            d=\(q(directory)) record=\(q(record))
            cd "$d" || exit 1
            echo $$ > pid.tmp && mv -f pid.tmp pid
            # The outcome line (DeployRecord.Outcome): words and numbers only, store paths or "-".
            store() { case $1 in /nix/store/*) case $1 in *[!-+._?=/0-9A-Za-z]*) echo - ;; *) echo "$1" ;; esac ;; *) echo - ;; esac; }
            # What a revert returns to: the running system and the system profile's generation.
            profile=/nix/var/nix/profiles/system
            before=$(store "$(readlink -f /run/current-system 2>/dev/null)")
            profile_before=$(store "$(readlink -f "$profile" 2>/dev/null)")
            start=$(date +%s)
            reason=
            # After an activation: the units of the secrets that changed restart, once each (see
            # `SecretRestarts`); those written after the activation first come from ferry.
            after_activation() {
              [ -f secrets ] || return 0
              read -r _ more < secrets
              if [ "$more" = 1 ]; then
                i=0
                while [ ! -e secrets-after ] && [ $i -lt 1200 ]; do
                  [ $((i % 10)) != 0 ] || printf '\(secretsMarker)\\n'
                  sleep 0.1; i=$((i + 1))
                done
                [ -e secrets-after ] || echo "ferry: the secrets that go after the activation did not come within 120 s"
              fi
              { tail -n +2 secrets; cat secrets-after 2>/dev/null; } | sort -u | while IFS= read -r unit; do
                [ -n "$unit" ] || continue
                echo "ferry: restarting $unit (its secret changed)"
                (umask 022 && PATH=$PATH:/run/current-system/sw/bin && exec systemctl restart -- "$unit") || echo "ferry: restarting $unit failed"
              done
            }
            (umask 022 && exec \(command.map(q).joined(separator: " "))) >> log 2>&1
            rc=$?

            """
            if let c = confirmation { text += confirmScript(c) } else if secrets { text += "[ \"$rc\" != 0 ] || after_activation >> log 2>&1\n" }
            text += """
            end=$(date +%s)
            system=$(store "$(readlink /run/current-system 2>/dev/null)")
            # A new generation (switch, boot): its number and store path.
            generation=- generation_path=$(store "$(readlink -f "$profile" 2>/dev/null)")
            if [ "$generation_path" != - ] && [ "$generation_path" != "$profile_before" ]; then
              link=$(readlink "$profile" 2>/dev/null) && link=${link##*/} && link=${link#system-} && link=${link%-link}
              case $link in ''|*[!0-9]*) ;; *) generation=$link ;; esac
            else
              generation_path=-
            fi
            if [ -n "$reason" ]; then result=reverted; elif [ "$rc" = 0 ]; then result=success; else result=failed; fi
            # Kept in the deploy's folder too: the record of each deploy whose snapshots are kept.
            { cat record-base.json && printf '\\nfinished %s %s %s %s %s %s %s %s %s%s\\n' "$result" "$rc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((end - start))" \\
              "$system" "$before" "$profile_before" "$generation" "$generation_path" "${reason:+ $reason}"; } \\
              > record.tmp && mv -f record.tmp record && cp record "$record.tmp" && mv -f "$record.tmp" "$record"
            echo "$rc" > status.tmp && mv -f status.tmp status

            """
            return text
        }

        /// The confirm-or-revert part of a job (see `Confirmation`): after the build (`rc`), the
        /// activation of `result` under a watchdog, the wait for proof, the settlement, a revert.
        static func confirmScript(_ c: Confirmation) -> String {
            let q = { (s: String) in ShellQuote.quote(s) }
            var restoreArguments: [String] = []
            for r in c.restores {
                let (sourceState, name) = TargetState.forDestination(r.destination)
                restoreArguments += [r.source, r.destination, sourceState.source(name), r.snapshot, "revert/\(r.source).tar"]
            }
            return """
            op=\(q(c.operation)) confirm_timeout=\(c.timeout) activation_timeout=\(c.activationTimeout)
            restore=\(q(Rollback.restoreScript))
            PATH=$PATH:/run/current-system/sw/bin
            # Activations and the profile get a root's usual umask, as under nixos-rebuild (the
            # job's own files stay root's alone).
            sys() { (umask 022 && exec "$@"); }
            # Each source this deploy changed, back to the snapshot of its tree before the deploy.
            restore_sources() {
              set -- \(restoreArguments.map(q).joined(separator: " "))
              while [ "$#" -ge 5 ]; do
                echo "ferry: restoring $1 ($2) from snapshot ${4##*/}"
                sh -c "$restore" ferry-restore "$2" "$3" "$4" "$5" || echo "ferry: restoring $1 failed: it keeps this deploy's tree"
                shift 5
              done
            }
            # $1 the reason (DeployRecord.Outcome.RevertReason), $2 what happened; $3 "system": the
            # running system was (or may have been) changed, so the one before comes back.
            revert() {
              reason=$1
              echo "ferry: reverting: $2"
              if [ "${3:-}" = system ] && [ "$before" != - ]; then
                sys "$before/bin/switch-to-configuration" test || echo "ferry: $before/bin/switch-to-configuration test failed"
              fi
              if [ "$op" = switch ] && [ "$profile_before" != - ] && [ "$(readlink -f "$profile")" != "$profile_before" ]; then
                sys nix-env -p "$profile" --set "$profile_before" || echo "ferry: the system profile could not be set back to $profile_before"
                if [ "${3:-}" = system ]; then
                  sys "$profile_before/bin/switch-to-configuration" boot || echo "ferry: $profile_before/bin/switch-to-configuration boot failed"
                fi
              fi
              restore_sources
            }
            # Activates $new: 0, its exit status, 124 (killed by the watchdog) or 75 (the switch lock
            # stayed busy for 60 s).
            activate() {
              if [ "$op" = switch ]; then sys nix-env -p "$profile" --set "$new" || return 1; fi
              waited=0
              while :; do
                from=$(wc -c < log)
                (umask 022 && exec setsid "$new/bin/switch-to-configuration" "$op") < /dev/null &
                apid=$!
                ( trap 'kill $s 2>/dev/null; exit 0' TERM
                  sleep "$activation_timeout" & s=$!; wait $s
                  : > activation-timed-out
                  kill -TERM -"$apid" 2>/dev/null || kill -TERM "$apid" 2>/dev/null
                  sleep 5 & s=$!; wait $s
                  kill -KILL -"$apid" 2>/dev/null || kill -KILL "$apid" 2>/dev/null ) < /dev/null > /dev/null 2>&1 &
                watchdog=$!
                wait "$apid"; arc=$?
                kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null
                [ ! -e activation-timed-out ] || return 124
                [ "$arc" != 0 ] || return 0
                tail -c +$((from + 1)) log | grep -q 'Could not acquire lock' || return "$arc"
                [ "$waited" -lt 60 ] || return 75
                echo "ferry: another activation holds the switch lock; trying again in 2 s"
                sleep 2; waited=$((waited + 2))
              done
            }
            settle() { echo "$1" > settled.tmp && mv -f settled.tmp settled; }
            if [ "$rc" = 0 ]; then
              {
                new=$(store "$(readlink -f result 2>/dev/null)")
                if [ "$new" = - ] || [ ! -x "$new/bin/switch-to-configuration" ]; then
                  echo "ferry: the build left no system to activate (no result)"; rc=1
                else
                  echo "ferry: activating $new ($op)"
                  activate; rc=$?
                  case $rc in
                    0)
                      after_activation
                      deadline=$(( $(date +%s) + confirm_timeout ))
                      echo "$deadline" > deadline.tmp && mv -f deadline.tmp deadline
                      printf '\(confirmMarker)%s\\n' "$confirm_timeout"
                      # A proof is looked for every 50 ms (it is what the operator waits for);
                      # the clock every second, when the marker is written again: a follower
                      # (`tail -f`) that missed the write wakes on the next one.
                      i=0
                      while :; do
                        if [ -e confirm-request ]; then settle confirmed; break; fi
                        if [ -e confirm-reject ]; then
                          settle reverted
                          revert checks-failed "a health check failed after the activation" system; rc=1
                          break
                        fi
                        if [ $((i % 20)) = 0 ] && [ "$i" -gt 0 ]; then
                          now=$(date +%s)
                          if [ "$now" -ge "$deadline" ]; then
                            settle reverted
                            revert no-confirmation "no fresh login confirmed the switch within $confirm_timeout s" system; rc=1
                            break
                          fi
                          printf '\(confirmMarker)%s\\n' "$((deadline - now))"
                        fi
                        sleep 0.05; i=$((i + 1))
                      done ;;
                    124) settle reverted; revert activation-timeout "the activation did not end within $activation_timeout s: it was killed" system ;;
                    75) settle reverted; revert switch-lock-busy "another activation held the switch lock for 60 s; this deploy's system was never activated" ;;
                    *) settle reverted; revert activation-failed "the activation failed (exit status $rc)" system ;;
                  esac
                fi
              } >> log 2>&1
            fi

            """
        }

        /// Writes the deploy's folder (job, record base, empty log, snapshots) and the rebuild
        /// record's first line (started, no result); gives each snapshot its tree's manifest (the
        /// one just put in place); keeps the newest 20 deploy folders and those whose snapshots
        /// are kept. $1 folder, $2 job script, $3 record base (one line of JSON), $4 the rebuild
        /// record, $5 the deploys folder, $6 the snapshots file, $7 the snapshots folder, $8 the
        /// state folder, $9 the confirm rule (empty: none), $10 the secrets' restarts (empty: none).
        static let prepareScript = #"""
        d=$1 record=$4 snapshots=$7 state=$8
        mkdir -p "$d" && cd "$d" || exit 1
        printf '%s' "$2" > job.sh && printf '%s' "$3" > record-base.json && printf '%s' "$6" > snapshots && : > log || exit 1
        # The waiting marker (operation, seconds to wait for proof, activation bound): there before
        # the job starts.
        [ -z "$9" ] || printf '%s' "$9" > confirm || exit 1
        [ -z "${10}" ] || printf '%s' "${10}" > secrets || exit 1
        while read -r s h; do
          [ -d "$snapshots/$s/$h" ] && [ ! -e "$snapshots/$s/$h/manifest" ] && [ -f "$state/$s/manifest" ] || continue
          cp "$state/$s/manifest" "$snapshots/$s/$h/manifest.tmp" && mv -f "$snapshots/$s/$h/manifest.tmp" "$snapshots/$s/$h/manifest" || exit 1
        done < snapshots
        printf '%s\n' "$3" > "$record.tmp" && mv -f "$record.tmp" "$record" || exit 1
        # Beyond the newest 20 by the target's clock (and any folder without a record base).
        cd "$5" && { ls -1t -- */record-base.json 2>/dev/null | tail -n +21 | sed 's,/record-base\.json$,,'
          for x in *; do [ ! -d "$x" ] || [ -e "$x/record-base.json" ] || printf '%s\n' "$x"; done; } | while IFS= read -r old; do
          [ "$old" != "${d##*/}" ] || continue
          kept=0
          if [ -f "$old/snapshots" ]; then while read -r s h; do [ ! -d "$snapshots/$s/$h" ] || kept=1; done < "$old/snapshots"; fi
          [ "$kept" = 1 ] || rm -rf -- "$old"
        done
        exit 0
        """#

        /// A `--sync-only` deploy's record, whole. $1 the record's text, $2 the sync record.
        static let recordScript = #"""
        record=$2
        [ -d "${record%/*}" ] || mkdir -p "${record%/*}" || exit 1
        printf '%s' "$1" > "$record.tmp" && mv -f "$record.tmp" "$record"
        """#

        /// Streams the log from byte $2 until the job (pid in $1/pid, waited for $3 × 50 ms: as long as
        /// the holder waits for it to start) is gone, then reports the status on stderr.
        static let followScript = #"""
        d=$1 off=$2 waits=$3
        cd "$d" || exit 1
        i=0
        while [ ! -s pid ] && [ $i -lt "$waits" ]; do sleep 0.05; i=$((i+1)); done
        pid=$(cat pid 2>/dev/null)
        [ -n "$pid" ] || { echo "the rebuild job never started (no pid in $d)" >&2; exit 3; }
        tail -c +$((off + 1)) -s 0.2 -f --pid="$pid" log
        s=$(cat status 2>/dev/null) || s=none
        o=$(sed -n 2p record 2>/dev/null) || o=
        printf '\036ferry-outcome %s\n\036ferry-status %s\n' "$o" "$s" >&2
        """#
    }
}
