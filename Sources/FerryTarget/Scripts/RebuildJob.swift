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
        package static func prepare(_ state: TargetState, id: String, manifests: [String], record: DeployRecord, command: [String],
                                    snapshots: [(source: String, digest: String)] = []) -> RemoteCommand {
            let directory = state.deploy(id)
            let job = script(directory: directory, record: state.rebuildRecord, command: command)
            return .script(manifestScript + prepareScript,
                           arguments: (manifestArguments(state, manifests) + [directory, job, record.json, state.rebuildRecord, state.deploys,
                                                                              snapshotLines(snapshots), state.snapshotsFolder, state.directory]).map { Array($0.utf8) })
        }

        /// A deploy folder's `snapshots` file: "NAME HEX" per source (names hold no white space).
        package static func snapshotLines(_ snapshots: [(source: String, digest: String)]) -> String {
            snapshots.map { "\($0.source) \(TargetState.snapshotName($0.digest))\n" }.joined()
        }

        /// Puts `manifests` in place and writes a `--sync-only` deploy's record, whole.
        package static func recordSyncOnly(_ state: TargetState, manifests: [String], record: DeployRecord) -> RemoteCommand {
            .script(manifestScript + recordScript,
                    arguments: (manifestArguments(state, manifests) + [record.fileText, state.syncRecord]).map { Array($0.utf8) })
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

        private static func manifestArguments(_ state: TargetState, _ names: [String]) -> [String] {
            [String(names.count), state.directory] + names
        }

        /// $1 = N names, $2 the state folder, then the N source names: unpacks NAME/manifest.new files
        /// from stdin into $2 (N > 0) and renames each named one over NAME/manifest — only those: what
        /// a source no longer in fleet.toml left behind is never touched; then shifts its arguments
        /// away for the script that follows it.
        static let manifestScript = #"""
        umask 077
        n=$1 state=$2
        shift 2
        if [ "$n" -gt 0 ]; then
          (cd "$state" && tar -x -f - --no-same-owner) || exit 1
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
        static func script(directory: String, record: String, command: [String]) -> String {
            let q = { (s: String) in ShellQuote.quote(s) }
            return """
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
            (umask 022 && exec \(command.map(q).joined(separator: " "))) >> log 2>&1
            rc=$?
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
            if [ "$rc" = 0 ]; then result=success; else result=failed; fi
            # Kept in the deploy's folder too: the record of each deploy whose snapshots are kept.
            { cat record-base.json && printf '\\nfinished %s %s %s %s %s %s %s %s %s\\n' "$result" "$rc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((end - start))" \\
              "$system" "$before" "$profile_before" "$generation" "$generation_path"; } \\
              > record.tmp && mv -f record.tmp record && cp record "$record.tmp" && mv -f "$record.tmp" "$record"
            echo "$rc" > status.tmp && mv -f status.tmp status

            """
        }

        /// Writes the deploy's folder (job, record base, empty log, snapshots) and the rebuild
        /// record's first line (started, no result); gives each snapshot its tree's manifest (the
        /// one just put in place); keeps the newest 20 deploy folders and those whose snapshots
        /// are kept. $1 folder, $2 job script, $3 record base (one line of JSON), $4 the rebuild
        /// record, $5 the deploys folder, $6 the snapshots file, $7 the snapshots folder, $8 the
        /// state folder.
        static let prepareScript = #"""
        d=$1 record=$4 snapshots=$7 state=$8
        mkdir -p "$d" && cd "$d" || exit 1
        printf '%s' "$2" > job.sh && printf '%s' "$3" > record-base.json && printf '%s' "$6" > snapshots && : > log || exit 1
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
        printf '\036ferry-status %s\n' "$s" >&2
        """#
    }
}
