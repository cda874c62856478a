# A kcore node: the configuration an operator writes (docs/nixos.md). It joins the
# controller at 10.0.0.1:9090 on its first start and runs guests from then on; br0 carries
# the host's uplink so that `kctl network create lan --mode bridge --bridge br0` can put
# guests on the LAN; /var/lib/kcore (specs, the default pool) is a volume of its own.
{
  services.kcore-agent = {
    enable = true;
    controllerAddr = "10.0.0.1:9090";
    caCertFile = "/etc/kcore/ca.crt";
    joinTokenFile = "/run/keys/kcore-join-token"; # used once, on the first start
  };
  networking.bridges.br0.interfaces = [ "enp3s0" ];
  fileSystems."/var/lib/kcore" = {
    device = "/dev/vg0/kcore";
    fsType = "ext4";
  };
}
