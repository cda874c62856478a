# install-to-disk (nixos/install-to-disk.sh) as a command, with the tools it runs.
# nixos-install and nixos-generate-config come from the installer ISO itself.
{
  lib,
  writeShellApplication,
  util-linux,
  dosfstools,
  e2fsprogs,
  lvm2,
  coreutils,
  gnugrep,
}:
writeShellApplication {
  name = "install-to-disk";
  runtimeInputs = [
    util-linux
    dosfstools
    e2fsprogs
    lvm2
    coreutils
    gnugrep
  ];
  # writeShellApplication writes its own shebang and `set -euo pipefail`.
  text = lib.removePrefix "#!/usr/bin/env bash\n" (builtins.readFile ./install-to-disk.sh);
}
