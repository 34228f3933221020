import FerrySSH
import Foundation

/// The detached `nixos-rebuild` on the target: its command line, the job that runs it and
/// writes its status and the record, and the follower that streams its log.
enum Rebuild {
    /// Absolute path (sudo's secure_path and odd PATHs), `--no-flake` (an /etc/nixos/flake.nix would
    /// otherwise win over `-I nixos-config`), `extra-` features so the host's own stay.
    static func commandLine(operation: Fleet.Operation, root: String, renderedSource: String, extra: [String]) -> [String] {
        ["/run/current-system/sw/bin/nixos-rebuild", operation.rawValue, "--no-flake",
         "-I", "nixos-config=\(root)/\(renderedSource)/\(RenderedConfig.entryPoint)", "-I", root,
         "--option", "extra-experimental-features", "nix-command flakes"] + extra
    }

    /// The job's script. It gets the locked open file on stdin and keeps it (fd 9) until its
    /// status is written; the record is written before the status, so a follower that sees the
    /// status finds the record final.
    static func jobScript(directory: String, root: String, command: [String]) -> String {
        let q = { (s: String) in ShellQuote.quote(s) }
        return """
        #!/bin/sh
        # ferry deploy job: nixos-rebuild, detached from ferry's SSH channel.
        exec 9<&0 </dev/null
        # The job's own files are root's alone; nixos-rebuild runs with a root's usual umask.
        umask 077
        d=\(q(directory)) record=\(q(TargetState(root: root).rebuildRecord))
        cd "$d" || exit 1
        echo $$ > pid.tmp && mv -f pid.tmp pid
        start=$(date +%s)
        (umask 022 && exec \(command.map(q).joined(separator: " "))) >> log 2>&1
        rc=$?
        end=$(date +%s)
        # The outcome line (DeployRecord.Outcome): words and numbers only, a store path or "-".
        system=$(readlink /run/current-system 2>/dev/null)
        case $system in /nix/store/*) case $system in *[!-+._?=/0-9A-Za-z]*) system=- ;; esac ;; *) system=- ;; esac
        if [ "$rc" = 0 ]; then result=success; else result=failed; fi
        { cat record-base.json && printf '\\nfinished %s %s %s %s %s\\n' "$result" "$rc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((end - start))" "$system"; } \\
          > "$record.tmp" && mv -f "$record.tmp" "$record"
        echo "$rc" > status.tmp && mv -f status.tmp status

        """
    }

    /// Writes the deploy's folder (job, record base, empty log) and the rebuild record's first
    /// line (started, no result), and keeps the newest 20 deploy folders. $1 folder, $2 job
    /// script, $3 record base (one line of JSON), $4 the rebuild record, $5 the deploys folder.
    static let prepareScript = #"""
    d=$1 record=$4
    mkdir -p "$d" && cd "$d" || exit 1
    printf '%s' "$2" > job.sh && printf '%s' "$3" > record-base.json && : > log || exit 1
    printf '%s\n' "$3" > "$record.tmp" && mv -f "$record.tmp" "$record" || exit 1
    cd "$5" && ls -1 | sort | head -n -20 | while IFS= read -r old; do [ "$old" = "${d##*/}" ] || rm -rf -- "$old"; done
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

/// Splits a byte stream into lines (a final partial line is kept until `flush`). A line longer
/// than `longestLine` is passed on in pieces of that size: a target printing without newlines
/// (`cat /dev/zero`) must neither grow ferry's memory without bound nor be scanned over and over.
public struct LineSplitter {
    public static let longestLine = 1 << 20
    private var pending: [UInt8] = []

    public init() {}

    public mutating func feed(_ chunk: UnsafeRawBufferPointer, _ line: ([UInt8]) -> Void) {
        // What is pending holds no newline: only the new bytes are searched.
        var from = pending.count
        pending.append(contentsOf: chunk)
        var start = 0
        while true {
            let limit = min(pending.count, start + Self.longestLine)
            if let newline = pending[max(from, start)..<limit].firstIndex(of: UInt8(ascii: "\n")) {
                line(Array(pending[start..<newline]))
                start = newline + 1
            } else if limit - start == Self.longestLine {
                line(Array(pending[start..<limit]))
                start = limit
            } else {
                break
            }
            from = start
        }
        pending.removeFirst(start)
    }

    public mutating func flush(_ line: ([UInt8]) -> Void) {
        if !pending.isEmpty { line(pending) }
        pending = []
    }
}
