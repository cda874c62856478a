# kcore's NixOS module: services.kcore-agent (a node) and services.kcore-controller.
# Import this directory, or use the flake's nixosModules.default (which sets the package to
# the flake's own build). See docs/nixos.md.
{
  imports = [
    ./agent.nix
    ./controller.nix
  ];
}
