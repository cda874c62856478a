# Evaluate kcore's NixOS module with `configuration`; returns the evaluation (`.config`,
# `._module.args.pkgs`):
#   - with `nixpkgs` (a nixpkgs source tree, e.g. <nixpkgs>): as a real NixOS system;
#   - else with nixpkgs' `lib` alone, against the stand-in options of stub.nix.
{
  lib ? null,
  nixpkgs ? null,
  configuration,
}:
if nixpkgs != null then
  let
    lib = import (nixpkgs + "/lib");
  in
  (import (nixpkgs + "/nixos/lib/eval-config.nix") {
    system = "x86_64-linux";
    modules = [
      ../default.nix
      configuration
      {
        # The least a NixOS system needs to evaluate.
        fileSystems."/" = lib.mkDefault {
          device = "/dev/vg0/root";
          fsType = "ext4";
        };
        boot.loader.grub.enable = false;
        system.stateVersion = "25.11";
      }
    ];
  })
else
  (lib.evalModules {
    modules = [
      ./stub.nix
      ../default.nix
      configuration
    ];
  })
