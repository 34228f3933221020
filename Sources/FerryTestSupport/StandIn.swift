import FerrySSH

/// The `nixos-rebuild` stand-in put on each test host's PATH. These machines are not NixOS; the script
/// checks what a real nixos-rebuild would need from a ferry deploy, logs each call and can be told to fail.
enum StandIn {
    static func nixosRebuild(stateDir: String) -> String {
        """
        #!/bin/sh
        # STAND-IN for nixos-rebuild, installed by ferry's test harness. This host is not NixOS:
        # nothing is built or activated. It checks that the synced LNBits tree has the files the flake
        # needs and that the given nixos-config parses (nix-instantiate --parse), logs the call, and
        # fails on request (a file named "fail" in its state directory holds the message).
        state=\(ShellQuote.quote(stateDir))
        { printf nixos-rebuild; for a in "$@"; do printf ' %s' "$a"; done; echo; } >> "$state/calls.log"
        op=
        config=${NIXOS_CONFIG:-}
        while [ $# -gt 0 ]; do
          case $1 in
            switch|boot|test|dry-activate|build|dry-build) op=$1 ;;
            -I) shift; case ${1:-} in nixos-config=*) config=${1#nixos-config=} ;; esac ;;
            --option) shift 2 || true; continue ;;
            -*) ;;
            *) echo "nixos-rebuild (stand-in): unknown argument '$1'" >&2; exit 1 ;;
          esac
          shift
        done
        if [ -z "$op" ]; then
          echo "nixos-rebuild (stand-in): no operation given (switch, boot, test, dry-activate, build)" >&2
          exit 1
        fi
        if [ -f "$state/fail" ]; then
          cat "$state/fail" >&2
          exit 1
        fi
        for f in flake.nix pyproject.toml uv.lock; do
          if [ ! -f "/var/src/lnbits-src/$f" ]; then
            echo "error: getting status of '/var/src/lnbits-src/$f': No such file or directory (stand-in check)" >&2
            exit 1
          fi
        done
        config=${config:-/etc/nixos/configuration.nix}
        if [ ! -f "$config" ]; then
          echo "error: file '$config' was not found in the Nix search path (stand-in check)" >&2
          exit 1
        fi
        nix-instantiate --parse "$config" > /dev/null || exit 1
        echo "building the system configuration... (stand-in: nothing is built)" >&2
        case $op in
          switch|boot|test) date +%s > "$state/activated"; echo "stand-in: $op of $config done" ;;
          *) echo "stand-in: $op of $config done" ;;
        esac
        """
    }
}
