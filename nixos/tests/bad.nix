# Configurations kcore's module must refuse: evaluating each one's system must fail with
# an error that contains `expect` (the option's name). scripts/check-nix.sh runs each in a
# nix-instantiate of its own and checks the message.
let
  node = extra: {
    imports = [
      {
        services.kcore-agent = {
          enable = true;
          controllerAddr = "10.0.0.1:9090";
        };
      }
      extra
    ];
  };
in
{
  controller-addr-without-port = {
    expect = "services.kcore-agent.controllerAddr' is not of type `HOST:PORT";
    config = node { services.kcore-agent.controllerAddr = "10.0.0.1"; };
  };
  controller-addr-port-out-of-range = {
    expect = "services.kcore-agent.controllerAddr' is not of type";
    config = node { services.kcore-agent.controllerAddr = "ctl.example.com:65536"; };
  };
  controller-addr-port-zero = {
    expect = "services.kcore-agent.controllerAddr' is not of type";
    config = node { services.kcore-agent.controllerAddr = "10.0.0.1:0"; };
  };
  controller-addr-bad-ipv4 = {
    expect = "services.kcore-agent.controllerAddr' is not of type";
    config = node { services.kcore-agent.controllerAddr = "10.0.0.300:9090"; };
  };
  controller-addr-missing = {
    expect = "services.kcore-agent.controllerAddr' was accessed but has no value defined";
    config = {
      services.kcore-agent.enable = true;
    };
  };
  accel-unknown = {
    expect = "services.kcore-agent.accel' is not of type `one of \"auto\", \"kvm\", \"tcg\"";
    config = node { services.kcore-agent.accel = "xen"; };
  };
  listen-port-out-of-range = {
    expect = "services.kcore-agent.listen' is not of type `IP:PORT";
    config = node { services.kcore-agent.listen = "0.0.0.0:70000"; };
  };
  listen-host-name = {
    expect = "services.kcore-agent.listen' is not of type `IP:PORT";
    config = node { services.kcore-agent.listen = "node1:9091"; };
  };
  controller-listen-port-zero = {
    expect = "services.kcore-controller.listen' is not of type `IP:PORT";
    config = {
      services.kcore-controller = {
        enable = true;
        listen = "0.0.0.0:0";
      };
    };
  };
  advertise-port-out-of-range = {
    expect = "services.kcore-agent.advertise' is not of type";
    config = node { services.kcore-agent.advertise = "n1.example.com:99999"; };
  };
  pool-unknown-type = {
    expect = "services.kcore-agent.pools.bulk' is not of type `pool source";
    config = node { services.kcore-agent.pools.bulk = "nfs:/srv"; };
  };
  pool-relative-dir = {
    expect = "services.kcore-agent.pools.bulk' is not of type `pool source";
    config = node { services.kcore-agent.pools.bulk = "dir:srv/kcore"; };
  };
  pool-bad-name = {
    expect = "services.kcore-agent.pools' is not of type";
    config = node { services.kcore-agent.pools.Bulk = "dir:/srv/kcore"; };
  };
  node-name-uppercase = {
    expect = "services.kcore-agent.name' is not of type `kcore node name";
    config = node { networking.hostName = "Node1"; };
  };
  qemu-uid-too-low = {
    expect = "services.kcore-agent.qemuUid' is not of type";
    config = node { services.kcore-agent.qemuUid = 1500; };
  };
  qemu-uids-hold-a-user = {
    expect = "services.kcore-agent.qemuUid: the per-VM QEMU uids 2100000001-2100004096 hold user(s) bob";
    config = node {
      users.users.bob = {
        isNormalUser = true;
        uid = 2100000007;
        group = "kcore";
      };
    };
  };
  join-token-in-nix-store = {
    expect = "services.kcore-agent.joinTokenFile must not be in the Nix store";
    config = node {
      services.kcore-agent = {
        caCertFile = "/etc/kcore/ca.crt";
        joinTokenFile = "/nix/store/00000000000000000000000000000000-token";
      };
    };
  };
  join-token-relative = {
    expect = "services.kcore-agent.joinTokenFile' is not of type";
    config = node { services.kcore-agent.joinTokenFile = "keys/token"; };
  };
  join-without-ca = {
    expect = "services.kcore-agent.caCertFile is needed to join";
    config = node { services.kcore-agent.joinTokenFile = "/run/keys/kcore-join-token"; };
  };
  same-data-dir = {
    expect = "services.kcore-controller.dataDir and services.kcore-agent.dataDir must differ";
    config = node {
      services.kcore-controller = {
        enable = true;
        dataDir = "/var/lib/kcore";
      };
    };
  };
}
