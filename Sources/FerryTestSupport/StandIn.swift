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
        # fails on request (a file named "fail" in its state directory holds the message), and waits
        # while a file named "hold" is there (at most 120 s), so tests can catch a deploy mid-rebuild.
        state=\(ShellQuote.quote(stateDir))
        { printf nixos-rebuild; for a in "$@"; do case $a in *" "*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac; done; echo; } >> "$state/calls.log"
        { echo "PATH=$PATH"; echo "NIX_PATH=${NIX_PATH:-}"; echo "cwd=$(pwd)"; } > "$state/env.log"
        # A real nixos-rebuild brings its own Nix; this one uses the machine's.
        PATH=$PATH:/usr/bin:/bin
        i=0
        while [ -e "$state/hold" ] && [ $i -lt 1200 ]; do
          [ $i -gt 0 ] || echo "stand-in: holding while $state/hold exists"
          sleep 0.1; i=$((i + 1))
        done
        op=
        config=${NIXOS_CONFIG:-}
        while [ $# -gt 0 ]; do
          case $1 in
            switch|boot|test|dry-activate|build|dry-build) op=$1 ;;
            -I) shift; case ${1:-} in nixos-config=*) config=${1#nixos-config=} ;; esac ;;
            --option) shift 3 || { echo "nixos-rebuild (stand-in): --option needs a name and a value" >&2; exit 1; }; continue ;;
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
        for f in flake.nix flake.lock pyproject.toml uv.lock lnbits; do
          if [ ! -e "/var/src/lnbits-src/$f" ]; then
            echo "error: getting status of '/var/src/lnbits-src/$f': No such file or directory (stand-in check)" >&2
            exit 1
          fi
        done
        config=${config:-/etc/nixos/configuration.nix}
        if [ ! -f "$config" ]; then
          echo "error: file '$config' was not found in the Nix search path (stand-in check)" >&2
          exit 1
        fi
        # (This machine's nix.conf may name a build users group it does not have: not the target's concern.)
        NIX_CONFIG='build-users-group =' nix-instantiate --parse "$config" > /dev/null || exit 1
        echo "building the system configuration... (stand-in: nothing is built)" >&2
        # Output as long as a file named "spew" says, in one line (Nix's progress can be that long).
        if [ -f "$state/spew" ]; then head -c "$(cat "$state/spew")" /dev/zero | tr '\\0' x; echo; fi
        # With real generations (TestHostHarness.startHost(generations:)): a small real system per
        # activation, named by the synced trees' contents (the same trees give the same system, as
        # Nix would), the system profile set with the real nix-env, and its stand-in
        # switch-to-configuration run.
        # A file named "break-login" makes the system built now one whose activation moves the
        # host's authorized keys aside (new logins fail; sshd reads them per connection); any
        # other system's activation puts them back.
        if [ -e "$state/generations" ]; then
          case $op in
            switch|boot|test|build)
              export HOME=/root NIX_CONFIG='build-users-group =
        sandbox = false
        substituters ='
              tag=$(find /var/src/lnbits-src /var/src/nixos-config -type f -exec sha256sum {} + | sort | sha256sum | cut -c1-12)
              breaks=0; [ ! -e "$state/break-login" ] || breaks=1
              system=$(nix-build --no-out-link --argstr tag "$tag" --argstr breaks "$breaks" -E "{ tag, breaks }: derivation {
                name = \\\"nixos-system-stand-in-\\${tag}\\\"; system = builtins.currentSystem; builder = \\\"/bin/sh\\\";
                args = [ $state/system-builder.sh ]; template = $state/switch-to-configuration; sw = \\\"${state%/stand-in}/current-system/sw\\\"; inherit tag breaks; }") || exit 1
              if [ "$op" = build ]; then
                ln -sfn "$system" result
              else
                [ "$op" = test ] || nix-env -p /nix/var/nix/profiles/system --set "$system" || exit 1
                "$system/bin/switch-to-configuration" "$op" || exit 1
              fi
              ;;
          esac
        fi
        case $op in
          switch|boot|test) date +%s > "$state/activated"; echo "stand-in: $op of $config done" ;;
          build) [ -e "$state/generations" ] || ln -sfn /nix/store/00000000000000000000000000000000-nixos-system-stand-in result; echo "stand-in: build of $config done" ;;
          *) echo "stand-in: $op of $config done" ;;
        esac
        """
    }

    /// Builds a stand-in system (run by nix-build, without a sandbox: `/bin` is this machine's):
    /// `bin/switch-to-configuration` from the template, `sw` pointing at the host's tools.
    static let systemBuilder = """
        /bin/mkdir -p "$out/bin"
        /bin/ln -s "$sw" "$out/sw"
        /bin/cp "$template" "$out/bin/switch-to-configuration"
        /bin/chmod 755 "$out/bin/switch-to-configuration"
        echo "$tag" > "$out/tag"
        if [ "$breaks" = 1 ]; then echo > "$out/breaks-login"; fi

        """

    /// The `switch-to-configuration` of a stand-in system.
    static func switchToConfiguration(stateDir: String) -> String {
        """
        #!/bin/sh
        # STAND-IN for switch-to-configuration, installed by ferry's test harness: logs the
        # activation and, for switch and test, points /run/current-system at this system, as a
        # real activation does (boot only installs the boot entry). On request: it waits while a
        # file named "hold-activation" is there (at most 120 s), answers as a real one does while
        # another activation holds its lock ("switch-lock-busy"), fails ("fail-activation"), and a
        # system built with "break-login" moves the host's authorized keys aside.
        state=\(ShellQuote.quote(stateDir))
        keys=${state%/stand-in}/authorized_keys
        system=$(cd "${0%/*}/.." && pwd -P)
        i=0
        while [ -e "$state/hold-activation" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
        if [ -e "$state/switch-lock-busy" ]; then
          echo "$1 $system busy" >> "$state/activations.log"
          echo "Could not acquire lock" >&2
          exit 1
        fi
        echo "$1 $system" >> "$state/activations.log"
        # A system that creates a service user (a file named "create-user" holds "NAME UID"), as
        # NixOS's users.users does, in the host's private account files only.
        accounts=${state%/stand-in}/etc
        if [ -f "$state/create-user" ] && [ -f "$accounts/passwd" ] && [ "$1" != boot ]; then
          read -r u uid < "$state/create-user"
          grep -q "^$u:" "$accounts/passwd" || { echo "$u:x:$uid:$uid:service user:/var/empty:/bin/false" >> "$accounts/passwd"; echo "$u:x:$uid:" >> "$accounts/group"; }
        fi
        case $1 in
          switch|test)
            ln -sfn "$system" /run/current-system
            if [ -e "$system/breaks-login" ]; then
              [ ! -d "$keys" ] || mv "$keys" "$keys.aside"
            elif [ -d "$keys.aside" ] && [ ! -e "$keys" ]; then
              mv "$keys.aside" "$keys"
            fi ;;
        esac
        if [ -e "$state/fail-activation" ]; then echo "stand-in: activation failed (requested by the test)" >&2; exit 1; fi

        """
    }

    /// The `systemctl` stand-in: logs each call (`restart UNIT`) and succeeds.
    static func systemctl(stateDir: String) -> String {
        """
        #!/bin/sh
        # STAND-IN for systemctl, installed by ferry's test harness (this host has no systemd): logs
        # its arguments, one call per line, and succeeds.
        state=\(ShellQuote.quote(stateDir))
        { printf systemctl; for a in "$@"; do printf ' %s' "$a"; done; echo; } >> "$state/systemctl.log"
        """
    }

    /// The `systemd-run` stand-in: these hosts have no systemd. It logs its arguments and runs the
    /// unit's command detached (setsid) with the environment a transient unit gets: only `--setenv`.
    static func systemdRun(stateDir: String) -> String {
        """
        #!/bin/sh
        # STAND-IN for systemd-run, installed by ferry's test harness (this host has no systemd):
        # logs its arguments, then runs the command after -- in a new session, with an environment
        # of only the --setenv values, as a transient unit would get. stdin/stdout/stderr are
        # passed on, as --pipe does.
        state=\(ShellQuote.quote(stateDir))
        { printf systemd-run; for a in "$@"; do printf ' %s' "$a"; done; echo; } >> "$state/systemd-run.log"
        command=0 skip=0
        for a in "$@"; do
          shift
          if [ $command = 1 ]; then set -- "$@" "$a"; continue; fi
          if [ $skip = 1 ]; then skip=0; continue; fi
          case $a in
            --setenv=*) set -- "$@" "${a#--setenv=}" ;;
            --unit|-u|--property|-p|--description) skip=1 ;;
            --) command=1 ;;
            -*) ;;
            *) echo "systemd-run (stand-in): unexpected argument '$a' before --" >&2; exit 1 ;;
          esac
        done
        exec setsid env -i "$@"
        """
    }
}
