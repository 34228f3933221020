# Fleet-wide values. Must evaluate to a set with a string `domain`; every host's
# configuration.nix inherits it unless fleet.toml gives the host its own.
let
  base = "example.org";
  ports = import ./ports.nix;
in
{
  domain = "lnbits.${base}";
  inherit ports;
  stateVersion = "24.05";
}
