# The kcored flags the module writes, for every option that adds one: scripts/check-nix.sh
# checks each against `kcored node --help` and `kcored controller --help` of the kcored
# built from this repository.
{ lib, eval }:
let
  argv =
    unit: c:
    lib.filter (w: lib.hasPrefix "--" w) (
      lib.splitString " " (eval c).config.systemd.services.${unit}.serviceConfig.ExecStart
    );
in
{
  node = argv "kcore-agent" {
    services.kcore-agent = {
      enable = true;
      controllerAddr = "10.0.0.1:9090";
      advertise = "n1.example.com:9091";
      caCertFile = "/etc/kcore/ca.crt";
      joinTokenFile = "/run/keys/kcore-join-token";
      pools.fast = "lvm:vg0/thin";
      importDirs = [ "/srv/kcore-import" ];
    };
  };
  controller = argv "kcore-controller" {
    services.kcore-controller = {
      enable = true;
      tlsSans = [ "ctl.example.com" ];
    };
  };
}
