# The LNBits service, run from the flake's venv with templates and static files read from the
# deployed source tree. Named services.ferry-lnbits so it cannot clash with nixpkgs' services.lnbits.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.ferry-lnbits;
in
{
  options.services.ferry-lnbits = {
    enable = lib.mkEnableOption "LNBits from a deployed source tree";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The LNBits venv, e.g. the flake's packages.\${system}.lnbits.";
    };

    sourceDir = lib.mkOption {
      type = lib.types.path;
      default = "/var/src/lnbits-src";
      description = ''
        The deployed source tree: LNBITS_PATH and the working directory. Not cfg.package.src:
        a uv2nix venv has no src, and a path: flake is copied into the store, so only this
        directory holds the live templates and static files.
      '';
    };

    stateDir = lib.mkOption {
      type = lib.types.path;
      default = "/var/lib/lnbits";
      description = "Data folder (database, extensions).";
    };

    environmentFile = lib.mkOption {
      # A string, not a path: a path would be copied into the world-readable Nix store.
      type = lib.types.nullOr lib.types.str;
      default = "/var/lib/lnbits/.env";
      description = ''
        LNBits' secrets (admin keys, funding-source credentials) as KEY=value lines, read by
        systemd (EnvironmentFile) when the service starts; a missing file is skipped. Keep it
        mode 0600, owned by the service user, and never in /var/src: a path: flake copies that
        whole tree into the world-readable Nix store.
      '';
    };

    host = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1";
      description = "Address to listen on.";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 5000;
      description = "Port to listen on.";
    };

    user = lib.mkOption {
      type = lib.types.str;
      default = "lnbits";
      description = "User the service runs as.";
    };

    group = lib.mkOption {
      type = lib.types.str;
      default = "lnbits";
      description = "Group the service runs as.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the port in the firewall.";
    };
  };

  config = lib.mkIf cfg.enable {
    users.users.${cfg.user} = {
      isSystemUser = true;
      group = cfg.group;
      home = cfg.stateDir;
    };
    users.groups.${cfg.group} = { };

    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} 0750 ${cfg.user} ${cfg.group} - -"
      "d ${cfg.stateDir}/extensions 0750 ${cfg.user} ${cfg.group} - -"
    ];

    systemd.services.lnbits = {
      description = "LNBits";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      environment = {
        LNBITS_DATA_FOLDER = "${cfg.stateDir}";
        LNBITS_EXTENSIONS_PATH = "${cfg.stateDir}/extensions";
        LNBITS_PATH = "${cfg.sourceDir}";
      };
      serviceConfig = {
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = cfg.sourceDir;
        ExecStart = "${lib.getExe cfg.package} --port ${toString cfg.port} --host ${cfg.host}";
        EnvironmentFile = lib.mkIf (cfg.environmentFile != null) "-${cfg.environmentFile}";
        Restart = "always";
        RestartSec = 5;
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];
  };
}
