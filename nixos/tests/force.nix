# What a system build forces, as far as kcore's module goes: the failed assertions are
# thrown (as NixOS's system.build.toplevel does), then kcore's units, the kcore-qemu user
# and the firewall are evaluated in full. Works on the stand-in (stub.nix) and on a real
# NixOS evaluation alike, without building anything. Returns true.
config:
let
  failed = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  units = builtins.intersectAttrs {
    kcore-agent = null;
    kcore-controller = null;
  } config.systemd.services;
in
if failed != [ ] then
  throw "\nFailed assertions:\n- ${builtins.concatStringsSep "\n- " failed}"
else
  builtins.deepSeq [
    (builtins.mapAttrs (_: u: [
      u.serviceConfig
      u.unitConfig
      u.after
      u.wantedBy
    ]) units)
    (if config.users.users ? kcore-qemu then config.users.users.kcore-qemu.uid else null)
    (if config.users.groups ? kcore-qemu then config.users.groups.kcore-qemu.gid else null)
    config.networking.firewall.allowedTCPPorts
    config.networking.firewall.interfaces
    config.boot.kernelModules
    config.systemd.tmpfiles.rules
  ] true
