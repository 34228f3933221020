# An nginx front for LNBits on the host's domain. Takes `domain` as an argument, so the same
# module serves the fleet's domain or a host's own.
{ domain }:
{ config, lib, pkgs, ... }:
{
  services.nginx = {
    enable = true;
    recommendedProxySettings = true;
    virtualHosts.${domain} = {
      locations."/".proxyPass = "http://127.0.0.1:${toString config.services.ferry-lnbits.port}";
    };
  };
}
