{
  description = "kcore: QEMU/KVM virtual machines without libvirt (daemon, CLI, NixOS module, installer)";

  # The Rust code needs rustc >= 1.88 (let chains): nixos-25.11 or later.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      system = "x86_64-linux";
      inherit (nixpkgs) lib;
      pkgs = nixpkgs.legacyPackages.${system};
      build =
        pname: crates:
        pkgs.callPackage ./nixos/package.nix {
          inherit pname crates;
        };
      # The flake's own source, minus build output, for the installer ISO.
      source = lib.cleanSourceWith {
        name = "kcore-flake";
        src = ./.;
        filter = path: type: lib.cleanSourceFilter path type && baseNameOf path != "target";
      };
    in
    {
      packages.${system} = rec {
        kcored = build "kcored" [ "kcored" ];
        kctl = build "kctl" [ "kctl" ];
        # The MCP server for AI agents (docs/mcp.md).
        kcore-mcp = build "kcore-mcp" [ "kcore-mcp" ];
        # Both binaries: what the NixOS module installs.
        kcore = build "kcore" [
          "kcored"
          "kctl"
        ];
        default = kcore;
        install-to-disk = pkgs.callPackage ./nixos/install-to-disk.nix { };
        installer-iso = self.nixosConfigurations.installer.config.system.build.isoImage;
      };

      # services.kcore-agent and services.kcore-controller, with this flake's kcore.
      nixosModules.default =
        { lib, pkgs, ... }:
        let
          kcore = self.packages.${pkgs.stdenv.hostPlatform.system}.kcore;
        in
        {
          imports = [ ./nixos ];
          services.kcore-agent.package = lib.mkDefault kcore;
          services.kcore-controller.package = lib.mkDefault kcore;
        };

      nixosConfigurations = {
        # nix build .#installer-iso: a bootable ISO with kcore and install-to-disk.
        installer = lib.nixosSystem {
          inherit system;
          modules = [
            "${nixpkgs}/nixos/modules/installer/cd-dvd/installation-cd-minimal.nix"
            self.nixosModules.default
            (import ./nixos/installer.nix { kcoreSource = source; })
          ];
        };
        # The node of docs/nixos.md: nixos/examples/node.nix on a machine with LVM.
        example-node = lib.nixosSystem {
          inherit system;
          modules = [
            self.nixosModules.default
            ./nixos/examples/node.nix
            {
              networking.hostName = "node1";
              fileSystems."/" = {
                device = "/dev/vg0/root";
                fsType = "ext4";
              };
              fileSystems."/boot" = {
                device = "/dev/disk/by-partlabel/ESP";
                fsType = "vfat";
              };
              boot.loader.systemd-boot.enable = true;
              system.stateVersion = "25.11";
            }
          ];
        };
      };

      devShells.${system}.default = pkgs.mkShell {
        packages = with pkgs; [
          cargo
          rustc
          clippy
          rustfmt
          protobuf
          qemu_kvm
          lvm2
          dnsmasq
          nftables
          iproute2
          shellcheck
        ];
      };

      checks.${system} = {
        inherit (self.packages.${system}) kcored kctl install-to-disk;
        example-node = self.nixosConfigurations.example-node.config.system.build.toplevel;
      };
    };
}
