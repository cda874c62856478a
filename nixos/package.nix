# kcore's binaries, built from this repository with nixpkgs' Rust tooling: Cargo.lock pins
# every crate (fetched as fixed-output derivations, no network in the build itself).
# `crates` picks the binaries: kcored, kctl or both (the default, `kcore`).
{
  lib,
  rustPlatform,
  protobuf,
  crates ? [
    "kcored"
    "kctl"
  ],
  pname ? "kcore",
}:
let
  workspace = lib.importTOML ../Cargo.toml;
  # Every workspace member must be in the source (Cargo reads them all), and nothing else:
  # no target/, docs/ or nixos/, so an edit there does not rebuild kcore.
  keep = [
    "Cargo.toml"
    "Cargo.lock"
  ]
  ++ workspace.workspace.members;
  src = lib.cleanSourceWith {
    name = "kcore-source";
    src = ../.;
    filter =
      path: type:
      let
        rel = lib.removePrefix (toString ../. + "/") (toString path);
      in
      lib.cleanSourceFilter path type && lib.elem (lib.head (lib.splitString "/" rel)) keep;
  };
in
rustPlatform.buildRustPackage {
  inherit pname src;
  inherit (workspace.workspace.package) version;

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = lib.concatMap (c: [
    "-p"
    c
  ]) crates;

  # proto/build.rs compiles the .proto files with protoc.
  nativeBuildInputs = [ protobuf ];
  env.PROTOC = "${protobuf}/bin/protoc";

  # The test suite needs root, QEMU, netns and lvm2 (scripts/test.sh runs it).
  doCheck = false;

  meta = {
    description = "QEMU/KVM virtual machines without libvirt: daemon (kcored) and CLI (kctl)";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = lib.head crates;
  };
}
