# Imported by shared.nix: ports the fleet agrees on.
{
  http = 80;
  https = 443;
}
