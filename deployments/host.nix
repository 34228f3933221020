# The host configuration, written once for the whole fleet. ferry's generated configuration.nix
# calls it with the fleet's shared values, the host's domain and the host's name and vars.
{ shared, domain, host }:
{ config, lib, pkgs, ... }:
{
  imports = [
    ./config/lnbits.nix
    (import ./modules/example-service.nix { inherit domain; })
  ] ++ lib.optional (builtins.pathExists /etc/nixos/hardware-configuration.nix) /etc/nixos/hardware-configuration.nix;

  networking.hostName = host.name;
  networking.domain = domain;

  services.ferry-lnbits.port = host.vars.lnbitsPort or 5000;
  services.ferry-lnbits.openFirewall = host.vars.openFirewall or false;

  time.timeZone = host.vars.timeZone or "UTC";
  users.users.root.openssh.authorizedKeys.keys = host.vars.adminKeys or [ ];
  services.openssh.enable = true;
  networking.firewall.allowedTCPPorts = [ shared.ports.http shared.ports.https ];

  system.stateVersion = shared.stateVersion;
}
