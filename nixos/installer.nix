# The installer ISO's additions (flake.nix: nixosConfigurations.installer, on top of
# nixpkgs' minimal installation CD): kcore itself, install-to-disk, and kcore's flake
# source at /etc/kcore/flake, which install-to-disk copies to the node and names as its
# flake input (path:/etc/kcore/flake), so the node builds the very kcore of this ISO.
{ kcoreSource }:
{ config, pkgs, ... }:
{
  environment.systemPackages = [
    config.services.kcore-agent.package
    (pkgs.callPackage ./install-to-disk.nix { })
  ];
  environment.etc."kcore/flake".source = kcoreSource;
  # install-to-disk writes a flake and nixos-install builds it.
  nix.settings.experimental-features = [
    "nix-command"
    "flakes"
  ];
  # QEMU guests need KVM on the machine being installed, not here; the ISO only installs.
}
