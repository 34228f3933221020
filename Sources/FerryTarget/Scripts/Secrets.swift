import FerrySSH

extension TargetState {
    /// The secrets ferry writes on the host (`.ferry/secrets`, root's alone): a random per-host
    /// `key`, and per secret `NAME.state` (`SecretState`): the keyed digest of what was written
    /// and the file's inode and ctime right after. ferry reads both, compares the digest of its
    /// own copy (computed on the operator's side: the key never goes into an argv), and writes a
    /// secret only when it differs or the file changed on the host.
    package enum Secrets {
        package static func folder(_ state: TargetState) -> String { state.directory + "/secrets" }

        /// One line: `v1 DIGEST INODE CTIME` (CTIME as `stat -c %.9Z` prints it).
        package struct State: Equatable, Sendable {
            package var digest: String
            package var inode: String
            package var ctime: String

            package init?(line: Substring) {
                let f = line.split(separator: " ")
                guard f.count == 4, f[0] == "v1", f[1].count == 64, f[1].allSatisfy(\.isHexDigit), f[2].allSatisfy(\.isNumber),
                      f[3].allSatisfy({ $0.isNumber || $0 == "." }) else { return nil }
                (digest, inode, ctime) = (String(f[1]), String(f[2]), String(f[3]))
            }
        }

        /// What the host has of one secret.
        package struct Found: Equatable, Sendable {
            package enum File: Equatable, Sendable {
                case missing, symlink, other
                case file(inode: String, ctime: String)
            }

            package var state: State?
            package var file: File
            /// The owner exists (its uid), and the group the file would get (nil: missing).
            package var ownerExists: Bool
            package var group: String?

            /// The file is what ferry wrote: nothing changed it since.
            package var untouched: Bool {
                guard let state, case .file(let inode, let ctime) = file else { return false }
                return inode == state.inode && ctime == state.ctime
            }
        }

        /// The answer to `query`: the key (nil: none yet, or not made) and each secret's `Found`.
        package struct Answer: Equatable, Sendable {
            package var key: [UInt8]?
            package var secrets: [Found]

            /// Nil: not the query's shape (a key that is not 64 hex digits reads as none).
            package init?(_ bytes: [UInt8], count: Int) {
                let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                guard lines.count >= 1 + 4 * count, lines[0].hasPrefix("key ") else { return nil }
                let hex = lines[0].dropFirst(4)
                key = hex == "-" ? nil : Self.bytes(hex)
                secrets = []
                for i in 0..<count {
                    let l = lines[(1 + 4 * i)...]
                    let (s, f, o, g) = (l[l.startIndex], l[l.startIndex + 1], l[l.startIndex + 2], l[l.startIndex + 3])
                    guard s.hasPrefix("state "), f.hasPrefix("file "), o.hasPrefix("owner "), g.hasPrefix("group ") else { return nil }
                    let fields = f.dropFirst(5).split(separator: " ")
                    let file: Found.File
                    switch fields.first {
                    case "missing": file = .missing
                    case "symlink": file = .symlink
                    case "file" where fields.count == 3: file = .file(inode: String(fields[1]), ctime: String(fields[2]))
                    default: file = .other
                    }
                    let group = g.dropFirst(6)
                    secrets.append(Found(state: State(line: s.dropFirst(6)), file: file, ownerExists: o.dropFirst(6) != "-",
                                         group: group == "-" || group.isEmpty ? nil : String(group)))
                }
            }

            static func bytes(_ hex: Substring) -> [UInt8]? {
                let chars = Array(hex.utf8)
                guard chars.count == 64 else { return nil }
                var out: [UInt8] = []
                for i in stride(from: 0, to: 64, by: 2) {
                    guard let b = UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
                    out.append(b)
                }
                return out
            }
        }

        /// What each named secret is on the host, and the key (made, 32 random bytes, when `create`
        /// and there is none). Each secret: NAME, DEST, OWNER, GROUP ("-": the owner's).
        package static func query(_ state: TargetState, create: Bool, secrets: [(name: String, dest: String, owner: String, group: String?)]) -> RemoteCommand {
            .script(queryScript, arguments: ([folder(state), create ? "1" : "0"] + secrets.flatMap { [$0.name, $0.dest, $0.owner, $0.group ?? "-"] }).map { Array($0.utf8) })
        }

        static let queryScript = #"""
        umask 077
        dir=$1 create=$2
        shift 2
        if [ "$create" = 1 ] && [ ! -s "$dir/key" ]; then
          mkdir -p -m 0700 "$dir" && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$dir/key.tmp" && mv -f "$dir/key.tmp" "$dir/key" || exit 1
        fi
        k=$(cat "$dir/key" 2>/dev/null) || k=
        printf 'key %s\n' "${k:--}"
        while [ "$#" -ge 4 ]; do
          name=$1 dest=$2 owner=$3 group=$4
          shift 4
          s=$(sed -n 1p "$dir/$name.state" 2>/dev/null) || s=
          printf 'state %s\n' "${s:--}"
          if [ -L "$dest" ]; then echo "file symlink"
          elif [ -f "$dest" ]; then printf 'file file %s\n' "$(stat -c '%i %.9Z' -- "$dest")"
          elif [ -e "$dest" ]; then echo "file other"
          else echo "file missing"; fi
          printf 'owner %s\n' "$(id -u -- "$owner" 2>/dev/null || echo -)"
          if [ "$group" = - ]; then g=$(id -gn -- "$owner" 2>/dev/null) || g=-
          elif getent group -- "$group" > /dev/null 2>&1; then g=$group
          else g=-; fi
          printf 'group %s\n' "$g"
        done
        """#

        /// Writes one secret (its bytes on stdin) to DEST: into a new file of a random name beside
        /// it, made by `install` (O_EXCL, owner, group and mode set on the open file, NUL bytes
        /// kept), then renamed over DEST (`mv -fT`: a symlink there is replaced, never followed),
        /// and records its digest, inode and ctime. A missing folder is made 0750, group GROUP.
        package static func write(_ state: TargetState, name: String, dest: String, mode: String, owner: String, group: String, digest: String) -> RemoteCommand {
            .script(writeScript, arguments: [folder(state), name, dest, mode, owner, group, digest].map { Array($0.utf8) })
        }

        static let writeScript = #"""
        umask 077
        dir=$1 name=$2 dest=$3 mode=$4 owner=$5 group=$6 digest=$7
        folder=${dest%/*}
        [ -n "$folder" ] || folder=/
        if [ ! -d "$folder" ]; then install -d -m 0750 -g "$group" -- "$folder" || exit 1; fi
        mkdir -p -m 0700 "$dir" || exit 1
        tmp=$folder/.${dest##*/}.ferry-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
        if ! install -m "$mode" -o "$owner" -g "$group" /dev/stdin "$tmp"; then rm -f -- "$tmp"; exit 1; fi
        if ! mv -fT -- "$tmp" "$dest"; then rm -f -- "$tmp"; exit 1; fi
        st=$(stat -c '%i %.9Z' -- "$dest") || exit 1
        printf 'v1 %s %s\n' "$digest" "$st" > "$dir/$name.state.tmp" && mv -f "$dir/$name.state.tmp" "$dir/$name.state"
        """#
    }
}

extension TargetState.Secrets {
    /// Restarts `units` now, once each (`ferry deploy --secrets-only`: no job, no activation).
    package static func restart(_ units: [String]) -> RemoteCommand {
        .script(#"""
        PATH=$PATH:/run/current-system/sw/bin
        failed=
        for u in "$@"; do systemctl restart -- "$u" || failed="$failed $u"; done
        [ -z "$failed" ] || { echo "restarting failed:$failed" >&2; exit 1; }
        """#, arguments: units.map { Array($0.utf8) })
    }
}
