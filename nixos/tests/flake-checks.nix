# The flake's outputs, evaluated with a stand-in nixpkgs (nixpkgs' real `lib`, the
# stand-in packages of stub-pkgs.nix, and a `lib.nixosSystem` that keeps its arguments):
# the packages and what they build, the module with the flake's own kcore, the installer's
# and the example node's modules (evaluated against stub.nix). Nothing is built.
#
# Returns the names of the checks that passed, or throws with every failure.
{ lib }:
let
  inherit (lib) elem all;
  flake = import ../../flake.nix;
  stubPkgs = import ./stub-pkgs.nix { inherit lib; };
  nixpkgs = {
    outPath = "/nix/store/00000000000000000000000000000000-nixpkgs-stub";
    lib = lib // {
      nixosSystem = args: { inherit args; };
    };
    legacyPackages.x86_64-linux = stubPkgs;
  };
  self = flake.outputs { inherit self nixpkgs; } // {
    outPath = ../..;
  };
  pkgs = self.packages.x86_64-linux;
  evalStub =
    modules:
    (lib.evalModules {
      modules = [ ./stub.nix ] ++ modules;
    }).config;
  installerModules = self.nixosConfigurations.installer.args.modules;
  installer = evalStub (lib.tail installerModules);
  example = evalStub self.nixosConfigurations.example-node.args.modules;
  exampleArgv = lib.splitString " " example.systemd.services.kcore-agent.serviceConfig.ExecStart;
  withFlakeModule = evalStub [
    self.nixosModules.default
    ../examples/node.nix
  ];
  names = p: map lib.getName p;

  checks = {
    "flake: nixpkgs input is a NixOS release" = {
      ok = lib.hasPrefix "github:NixOS/nixpkgs/nixos-" flake.inputs.nixpkgs.url;
      got = flake.inputs;
    };
    "flake: packages kcored, kctl, default (both), install-to-disk, installer-iso" = {
      ok =
        all (n: pkgs ? ${n}) [
          "kcored"
          "kctl"
          "kcore"
          "default"
          "install-to-disk"
          "installer-iso"
        ]
        && pkgs.kcored.buildArgs.cargoBuildFlags == [
          "-p"
          "kcored"
        ]
        && pkgs.kctl.buildArgs.cargoBuildFlags == [
          "-p"
          "kctl"
        ]
        && pkgs.default.outPath == pkgs.kcore.outPath
        && pkgs.kcore.buildArgs.cargoBuildFlags == [
          "-p"
          "kcored"
          "-p"
          "kctl"
        ];
      got = lib.attrNames pkgs;
    };
    "flake: install-to-disk is nixos/install-to-disk.sh with its tools" = {
      ok =
        "#!/usr/bin/env bash\n" + pkgs.install-to-disk.buildArgs.text
          == builtins.readFile ../install-to-disk.sh
        && all (t: elem t (names pkgs.install-to-disk.buildArgs.runtimeInputs)) [
          "util-linux"
          "dosfstools"
          "e2fsprogs"
          "lvm2"
        ];
      got = names pkgs.install-to-disk.buildArgs.runtimeInputs;
    };
    "flake: nixosModules.default uses the flake's kcore" = {
      ok =
        withFlakeModule.services.kcore-agent.package.outPath == pkgs.kcore.outPath
        && withFlakeModule.services.kcore-controller.package.outPath == pkgs.kcore.outPath
        && lib.hasPrefix "${pkgs.kcore}/bin/kcored node " withFlakeModule.systemd.services.kcore-agent.serviceConfig.ExecStart
        && lib.isString withFlakeModule.system.build.toplevel;
      got = withFlakeModule.systemd.services.kcore-agent.serviceConfig.ExecStart;
    };
    "flake: the installer is nixpkgs' minimal ISO plus kcore, install-to-disk, kcore's flake" = {
      ok =
        lib.head installerModules == "${nixpkgs}/nixos/modules/installer/cd-dvd/installation-cd-minimal.nix"
        && elem pkgs.kcore installer.environment.systemPackages
        && elem "install-to-disk" (names installer.environment.systemPackages)
        && installer.environment.etc ? "kcore/flake"
        && elem "flakes" installer.nix.settings.experimental-features
        && !installer.services.kcore-agent.enable;
      got = names installer.environment.systemPackages;
    };
    "flake: the example node evaluates, joining 10.0.0.1:9090 as node1" = {
      ok =
        lib.isString example.system.build.toplevel
        && elem "--controller" exampleArgv
        && elem "10.0.0.1:9090" exampleArgv
        && elem "node1" exampleArgv
        && example.fileSystems."/var/lib/kcore".device == "/dev/vg0/kcore";
      got = exampleArgv;
    };
    "flake: a dev shell with the Rust toolchain and protoc; checks build kcored, kctl, the example node" =
      {
        ok =
          all (t: elem t (names self.devShells.x86_64-linux.default.buildArgs.packages)) [
            "cargo"
            "rustc"
            "protobuf"
          ]
          && all (n: self.checks.x86_64-linux ? ${n}) [
            "kcored"
            "kctl"
            "install-to-disk"
            "example-node"
          ];
        got = lib.attrNames self.checks.x86_64-linux;
      };
  };
  failed = lib.filterAttrs (_: c: !c.ok) checks;
in
if failed == { } then
  lib.attrNames checks
else
  throw (
    "kcore flake checks failed:\n"
    + lib.concatStrings (
      lib.mapAttrsToList (n: c: "- ${n}\n  found: ${lib.generators.toPretty { } c.got}\n") failed
    )
  )
