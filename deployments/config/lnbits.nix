# LNBits from the source tree ferry pushes to /var/src/lnbits-src.
{ lib, pkgs, ... }:
{
  imports = [ ../modules/lnbits-service.nix ];

  # getFlake needs these; the setting helps later evaluations, and ferry passes
  # --option extra-experimental-features 'nix-command flakes' to every nixos-rebuild.
  nix.settings.experimental-features = [ "nix-command" "flakes" ];

  services.ferry-lnbits = {
    enable = true;
    # mkDefault: an operator (or a check) can set the package without evaluating getFlake.
    package = lib.mkDefault (builtins.getFlake "path:/var/src/lnbits-src").packages.${pkgs.system}.lnbits;
  };
}
