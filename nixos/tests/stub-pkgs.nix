# Stand-in packages for evaluating kcore's module without nixpkgs: each is an attribute set
# that passes for a derivation (type, name, pname, outPath) and builds nothing. The Rust
# build is stood in for too: `rustPlatform.buildRustPackage` keeps its arguments in
# `buildArgs` so the tests can check what package.nix asks for (its filtered source is
# real: forcing it copies the files into the Nix store).
{ lib }:
let
  drv =
    pname: extra:
    {
      type = "derivation";
      inherit pname;
      name = "${pname}-stub";
      outPath = "/nix/store/00000000000000000000000000000000-${pname}-stub";
      outputs = [ "out" ];
    }
    // extra;
  pkgs = {
    inherit lib;
    callPackage =
      f: args:
      let
        fn = if lib.isFunction f then f else import f;
      in
      fn (builtins.intersectAttrs (lib.functionArgs fn) pkgs // args);
    rustPlatform.buildRustPackage = a: drv a.pname { buildArgs = a; };
    writeShellScript = name: text: drv name { inherit text; };
    writeShellApplication = a: drv a.name { buildArgs = a; };
    mkShell = a: drv "shell" { buildArgs = a; };
    stdenv.hostPlatform.system = "x86_64-linux";
    protobuf = drv "protobuf" { };
    qemu_kvm = drv "qemu-host-cpu-only" { };
    lvm2 = drv "lvm2" { };
    dnsmasq = drv "dnsmasq" { };
    nftables = drv "nftables" { };
    iproute2 = drv "iproute2" { };
    thin-provisioning-tools = drv "thin-provisioning-tools" { };
    OVMF = drv "OVMF" { fd = drv "OVMF-fd" { }; };
  }
  // lib.genAttrs [
    "cargo"
    "rustc"
    "clippy"
    "rustfmt"
    "shellcheck"
    "util-linux"
    "dosfstools"
    "e2fsprogs"
    "coreutils"
    "gnugrep"
  ] (name: drv name { });
in
pkgs
