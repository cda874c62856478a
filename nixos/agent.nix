# services.kcore-agent: a kcore node (`kcored node`) on a NixOS host, joining a controller.
#
# What a node needs and nothing of libvirt: the QEMU user and its uid range, the kcore
# group, KVM/tun/bridge/vhost modules, IPv4 forwarding for nat networks, the tools kcored
# runs on the unit's PATH, its state and run directories, and unit settings under which a
# restart of kcored (`nixos-rebuild switch` with a new package, a crash) never stops a
# running guest. docs/nixos.md explains each choice.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.kcore-agent;
  klib = import ./lib.nix { inherit lib; };
  util = import ./util.nix { inherit lib; };

  runDir = "/run/kcore";
  listenPort = klib.portOf cfg.listen;

  # kcored needs --advertise when it listens on 0.0.0.0 or [::]: the host's name, unless set.
  advertise =
    if cfg.advertise != null then
      cfg.advertise
    else if klib.isWildcard cfg.listen then
      "${config.networking.fqdnOrHostName}:${toString listenPort}"
    else
      null;

  dirPoolPaths = lib.mapAttrsToList (_: lib.removePrefix "dir:") (
    lib.filterAttrs (_: lib.hasPrefix "dir:") cfg.pools
  );
  thinPools = lib.filterAttrs (_: s: lib.hasPrefix "lvm:" s && lib.hasInfix "/" s) cfg.pools;

  kcoredArgs = [
    "node"
    "--name"
    cfg.name
    "--controller"
    cfg.controllerAddr
    "--listen"
    cfg.listen
  ]
  ++ lib.optionals (advertise != null) [
    "--advertise"
    advertise
  ]
  ++ lib.optionals (cfg.caCertFile != null) [
    "--ca-cert"
    "${cfg.caCertFile}"
  ]
  # kcored reads the file only to join (no certificate yet): the token itself is never on
  # the command line, which every local user can read.
  ++ lib.optionals (cfg.joinTokenFile != null) [
    "--join-token-file"
    cfg.joinTokenFile
  ]
  ++ [
    "--data-dir"
    cfg.dataDir
    "--run-dir"
    runDir
    "--accel"
    cfg.accel
    "--qemu-user"
    "kcore-qemu"
    "--qemu-uids"
    (toString cfg.qemuUids)
    # kcored's default is Debian's /usr/share/qemu/qboot.rom.
    "--kernel-boot-bios"
    "${cfg.qemuPackage}/share/qemu/qboot.rom"
  ]
  ++ lib.concatLists (
    lib.mapAttrsToList (name: spec: [
      "--pool"
      "${name}=${spec}"
    ]) cfg.pools
  )
  ++ lib.concatMap (d: [
    "--import-dir"
    d
  ]) cfg.importDirs
  ++ cfg.extraArgs;

  execStart = util.execLine ([ "${cfg.package}/bin/kcored" ] ++ kcoredArgs);

  # Where the module puts the QEMU uids: [qemuUid + 1, qemuUid + qemuUids].
  uidClash = lib.filterAttrs (
    name: u:
    name != "kcore-qemu" && u.uid != null && u.uid > cfg.qemuUid && u.uid <= cfg.qemuUid + cfg.qemuUids
  ) config.users.users;
in
{
  options.services.kcore-agent = {
    enable = lib.mkEnableOption "the kcore node agent (kcored node): QEMU/KVM guests without libvirt";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage <kcore>/nixos/package.nix { }";
      description = "kcore (kcored and kctl). The flake's module sets its own build.";
    };

    qemuPackage = lib.mkOption {
      type = lib.types.package;
      default = pkgs.qemu_kvm;
      defaultText = lib.literalExpression "pkgs.qemu_kvm";
      description = ''
        QEMU for the guests (qemu-system-x86_64 and qemu-img), built with seccomp: kcored
        runs it with `-sandbox on`.
      '';
    };

    controllerAddr = lib.mkOption {
      type = klib.types.hostPort;
      example = "10.0.0.1:9090";
      description = ''
        The controller's TLS API address (its `--listen`), HOST:PORT. The host must be one
        of the names in the controller's certificate (`services.kcore-controller.tlsSans`).
      '';
    };

    name = lib.mkOption {
      type = klib.types.nodeName;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "This node's name in the cluster.";
    };

    listen = lib.mkOption {
      type = klib.types.socketAddr;
      default = "0.0.0.0:9091";
      description = ''
        Where the node serves the controller (mutual TLS; only the controller's certificate
        is accepted), IP:PORT.
      '';
    };

    advertise = lib.mkOption {
      type = lib.types.nullOr klib.types.hostPort;
      default = null;
      example = "node1.example.com:9091";
      description = ''
        The address the controller dials. Default: `listen`, or, when `listen` is 0.0.0.0 or
        [::], `networking.fqdnOrHostName` with the listen port (the controller must be able
        to resolve it).
      '';
    };

    caCertFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/etc/kcore/ca.crt";
      description = ''
        The cluster CA (a copy of the controller's `pki/ca.crt`), needed to join. Later
        starts use the node's own `<dataDir>/pki/ca.crt`.
      '';
    };

    joinTokenFile = lib.mkOption {
      type = lib.types.nullOr klib.types.absolutePath;
      default = null;
      example = "/run/keys/kcore-join-token";
      description = ''
        A file holding a one-time token from `kctl node join-token`, given to kcored as
        `--join-token-file`: kcored reads it only while the node has no certificate
        (`<dataDir>/pki/node.crt`), so the file may be deleted once the node has joined. A
        string, not a Nix path, so that the token never enters the world-readable Nix store.
        Tokens expire (1 h by default, `--ttl`).
      '';
    };

    dataDir = lib.mkOption {
      type = klib.types.absolutePath;
      default = "/var/lib/kcore";
      description = "Persistent state: VM specs, the default dir pool, pki/.";
    };

    accel = lib.mkOption {
      type = lib.types.enum [
        "auto"
        "kvm"
        "tcg"
      ];
      default = "auto";
      description = "auto (KVM when /dev/kvm is usable), kvm or tcg (emulation).";
    };

    pools = lib.mkOption {
      type = klib.types.pools;
      default = { };
      example = {
        fast = "lvm:vg0/thin";
        bulk = "dir:/srv/kcore";
      };
      description = ''
        Storage pools, name -> `dir:/PATH`, `lvm:VG` or `lvm:VG/THINPOOL`. Every node also
        has a dir pool `default` under `<dataDir>/pools/default` unless one is given.
      '';
    };

    importDirs = lib.mkOption {
      type = lib.types.listOf klib.types.absolutePath;
      default = [ ];
      example = [ "/srv/kcore-import" ];
      description = ''
        Directories whose files requests over TLS may name (kernels, initrds, images to
        import): kcored's `--import-dir`.
      '';
    };

    qemuUid = lib.mkOption {
      type = lib.types.ints.between 65536 (4294967294 - 65536);
      default = 2100000000;
      description = ''
        The uid (and gid) of the `kcore-qemu` user. Each VM's QEMU runs as one of the
        `qemuUids` uids right after it, which no user may own and `useradd` must never hand
        out (kcored refuses to start otherwise): keep it far above every range in use.
      '';
    };

    qemuUids = lib.mkOption {
      type = lib.types.ints.between 0 65536;
      default = 4096;
      description = "How many uids after kcore-qemu's are per-VM QEMU uids (the most VMs a node holds); 0 runs every QEMU as kcore-qemu itself.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the listen port (TCP) in the firewall for the controller.";
    };

    natBridgeFirewall = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Let guests of nat networks reach the dnsmasq kcored runs on their bridge (`kbr-*`):
        DHCP (67/udp) and DNS (53/udp, 53/tcp) in the host firewall.
      '';
    };

    uefiFirmware = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Link OVMF into /usr/share/OVMF, where kcored looks for UEFI firmware (VMs created
        with `--firmware uefi`); kcored has no option for that path yet.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "--cpus"
        "16"
      ];
      description = "More arguments for `kcored node`.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = uidClash == { };
        message = "services.kcore-agent.qemuUid: the per-VM QEMU uids ${toString (cfg.qemuUid + 1)}-${toString (cfg.qemuUid + cfg.qemuUids)} hold user(s) ${lib.concatStringsSep ", " (lib.attrNames uidClash)}; move them or kcore-qemu.";
      }
      {
        assertion = cfg.joinTokenFile == null || !lib.hasPrefix builtins.storeDir cfg.joinTokenFile;
        message = "services.kcore-agent.joinTokenFile must not be in the Nix store (it is world-readable): use e.g. /run/keys/kcore-join-token.";
      }
      {
        assertion = cfg.joinTokenFile == null || cfg.caCertFile != null;
        message = "services.kcore-agent.caCertFile is needed to join (joinTokenFile is set): a copy of the controller's pki/ca.crt.";
      }
    ];

    environment.systemPackages = [ cfg.package ];

    users.groups.kcore = { };
    users.groups.kcore-qemu.gid = cfg.qemuUid;
    users.users.kcore-qemu = {
      isSystemUser = true;
      uid = cfg.qemuUid;
      group = "kcore-qemu";
      # QEMUs get kcore-qemu's groups: /dev/kvm is group kvm.
      extraGroups = [ "kvm" ];
      description = "kcore QEMU; each VM's QEMU runs as one of the ${toString cfg.qemuUids} uids after this one";
      home = "/var/empty";
    };

    # kvm's vendor module (kvm-intel, kvm-amd) is loaded by udev from the CPU's features.
    boot.kernelModules = [
      "kvm"
      "tun"
      "bridge"
      "vhost_net"
    ];
    # nat networks route their guests' traffic (kcored also turns this on when it makes one).
    boot.kernel.sysctl."net.ipv4.conf.all.forwarding" = lib.mkDefault true;

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall listenPort;
    networking.firewall.interfaces = lib.mkIf cfg.natBridgeFirewall {
      # Interface wildcards: iptables writes kbr-+, nftables kbr-*.
      ${if config.networking.nftables.enable then "kbr-*" else "kbr-+"} = {
        allowedUDPPorts = [
          53
          67
        ];
        allowedTCPPorts = [ 53 ];
      };
    };
    # kcore's bridges and taps are kcored's: no DHCP client or NetworkManager on them.
    networking.dhcpcd.denyInterfaces = [
      "kbr-*"
      "ktap-*"
    ];
    networking.networkmanager.unmanaged = [
      "interface-name:kbr-*"
      "interface-name:ktap-*"
    ];

    # lvm2 finds thin_check and friends through lvm.conf when thin pools are in use.
    services.lvm.boot.thin.enable = lib.mkIf (thinPools != { }) (lib.mkDefault true);

    systemd.tmpfiles.rules =
      lib.optional (!lib.hasPrefix "/var/lib/" cfg.dataDir) "d ${cfg.dataDir} 0711 root root -"
      ++ lib.optionals cfg.uefiFirmware [
        "L+ /usr/share/OVMF/OVMF_CODE.fd - - - - ${pkgs.OVMF.fd}/FV/OVMF_CODE.fd"
        "L+ /usr/share/OVMF/OVMF_VARS.fd - - - - ${pkgs.OVMF.fd}/FV/OVMF_VARS.fd"
      ];

    systemd.services.kcore-agent = {
      description = "kcore node agent (QEMU/KVM guests without libvirt)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      # After the firewall and nftables: a ruleset they load (or flush) at boot must not
      # land after kcored has put in its own kcore_* tables.
      after = [
        "network-online.target"
        "firewall.service"
        "nftables.service"
      ];
      # qemu-system-x86_64 and qemu-img, lvm2, dnsmasq, nft, ip: found on PATH by kcored.
      path = [
        cfg.qemuPackage
        pkgs.lvm2
        pkgs.dnsmasq
        pkgs.nftables
        pkgs.iproute2
      ]
      ++ lib.optional (thinPools != { }) pkgs.thin-provisioning-tools;
      # A changed unit is restarted in place (no stop first); either way only kcored goes.
      restartIfChanged = true;
      stopIfChanged = false;
      unitConfig.RequiresMountsFor = [ cfg.dataDir ] ++ dirPoolPaths;
      serviceConfig = {
        Type = "simple";
        ExecStart = execStart;
        # Guests outlive the daemon: stop and restart signal kcored alone, and the QEMUs
        # (their own sessions) stay in this unit's cgroup until kcored finds them again.
        # No Delegate=: kcored makes no sub-cgroups (see docs/nixos.md).
        KillMode = "process";
        # A guest killed by the kernel's OOM killer must not stop the unit with it.
        OOMPolicy = "continue";
        Restart = "on-failure";
        RestartSec = "5s";
        TimeoutStopSec = "30s";
        # The guests' threads and descriptors count against this unit.
        TasksMax = "infinity";
        LimitNOFILE = 1048576;
        UMask = "0077";
        # /run/kcore holds the guests' QMP and console sockets and pidfiles: kept across
        # stops and restarts; a reboot empties it (that is how autostart knows).
        RuntimeDirectory = "kcore";
        RuntimeDirectoryMode = "0711";
        RuntimeDirectoryPreserve = "yes";
      }
      // lib.optionalAttrs (lib.hasPrefix "/var/lib/" cfg.dataDir) {
        StateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
        StateDirectoryMode = "0711";
      };
    };
  };
}
