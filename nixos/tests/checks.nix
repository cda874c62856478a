# What kcore's NixOS module must produce, checked on evaluated systems. `eval` evaluates a
# configuration (eval.nix: against stub.nix, or as a real NixOS system);
# `stub` says which, since some checks look at stand-in packages.
#
# Returns the names of the checks that passed, or throws with every failure and what was
# found instead.
{
  lib,
  eval,
  stub ? true,
}:
let
  inherit (lib) elem all any hasPrefix hasSuffix;

  words = s: lib.filter (w: w != "") (lib.splitString " " s);
  # The value after `flag` in an argv (the first one), or null.
  flagValue =
    flag: argv:
    let
      i = lib.lists.findFirstIndex (w: w == flag) null argv;
    in
    if i == null || i + 1 >= lib.length argv then null else lib.elemAt argv (i + 1);
  flagValues =
    flag: argv:
    lib.concatLists (
      lib.imap0 (
        i: w: lib.optional (w == flag && i + 1 < lib.length argv) (lib.elemAt argv (i + 1))
      ) argv
    );

  example = import ../examples/node.nix;
  evalConfig = c: (eval c).config;
  force = import ./force.nix;
  node = evalConfig example;
  agent = node.systemd.services.kcore-agent;
  exec = words agent.serviceConfig.ExecStart;
  kcoredArgv = exec;
  pkgs = (eval example)._module.args.pkgs;
  nodeWith = extra: evalConfig { imports = [ example extra ]; };
  argvOf = c: words c.systemd.services.kcore-agent.serviceConfig.ExecStart;

  ctl = evalConfig (import ../examples/controller.nix);
  ctlUnit = ctl.systemd.services.kcore-controller;
  ctlArgv = words ctlUnit.serviceConfig.ExecStart;

  both = evalConfig {
    imports = [
      example
      ../examples/controller.nix
    ];
  };

  pooled = nodeWith {
    services.kcore-agent.pools = {
      fast = "lvm:vg0/thin";
      bulk = "dir:/srv/kcore";
      odd = "dir:/srv/a:b";
    };
  };
  noToken = evalConfig {
    services.kcore-agent = {
      enable = true;
      controllerAddr = "ctl.example.com:9090";
    };
  };
  v6 = evalConfig {
    networking.hostName = "n2";
    networking.domain = "example.com";
    services.kcore-agent = {
      enable = true;
      controllerAddr = "[fd00::1]:9090";
      listen = "[::]:9091";
      openFirewall = true;
      dataDir = "/srv/kcore state";
      uefiFirmware = false;
      extraArgs = [
        "--cpus"
        "8"
        "--import-dir"
        "/srv/50% $HOME"
      ];
    };
    networking.nftables.enable = true;
  };
  fixedAddr = nodeWith {
    services.kcore-agent.listen = "10.0.0.5:9091";
  };
  advertised = nodeWith {
    services.kcore-agent.advertise = "n1.lan:19091";
  };

  checks = {
    "agent: ExecStart runs kcored node with the example's flags" = {
      ok =
        lib.take 2 kcoredArgv == [
          "${node.services.kcore-agent.package}/bin/kcored"
          "node"
        ]
        && flagValue "--name" kcoredArgv == "nixos"
        && flagValue "--controller" kcoredArgv == "10.0.0.1:9090"
        && flagValue "--ca-cert" kcoredArgv == "/etc/kcore/ca.crt"
        && flagValue "--listen" kcoredArgv == "0.0.0.0:9091"
        && flagValue "--advertise" kcoredArgv == "nixos:9091"
        && flagValue "--data-dir" kcoredArgv == "/var/lib/kcore"
        && flagValue "--run-dir" kcoredArgv == "/run/kcore"
        && flagValue "--accel" kcoredArgv == "auto"
        && flagValue "--qemu-user" kcoredArgv == "kcore-qemu"
        && flagValue "--qemu-uids" kcoredArgv == "4096"
        && flagValue "--kernel-boot-bios" kcoredArgv
          == "${node.services.kcore-agent.qemuPackage}/share/qemu/qboot.rom"
        && !(elem "--join-token" kcoredArgv)
        && !(elem "--pool" kcoredArgv);
      got = exec;
    };
    "agent: the join token is read from its file by kcored, never on argv" = {
      ok =
        hasSuffix "/bin/kcored" (lib.head exec)
        && flagValue "--join-token-file" kcoredArgv == "/run/keys/kcore-join-token"
        && !(elem "--join-token" kcoredArgv);
      got = exec;
    };
    "agent: without joinTokenFile, ExecStart is kcored itself" = {
      ok =
        hasSuffix "/bin/kcored" (lib.head (argvOf noToken))
        && flagValue "--controller" (argvOf noToken) == "ctl.example.com:9090"
        && !(elem "--ca-cert" (argvOf noToken));
      got = argvOf noToken;
    };
    "agent: guests survive kcored's stop and restart (unit settings)" = {
      ok =
        agent.serviceConfig.KillMode == "process"
        && agent.serviceConfig.OOMPolicy == "continue"
        && agent.serviceConfig.RuntimeDirectory == "kcore"
        && agent.serviceConfig.RuntimeDirectoryPreserve == "yes"
        && agent.serviceConfig.Restart == "on-failure"
        && agent.serviceConfig.TasksMax == "infinity"
        && agent.serviceConfig.UMask == "0077"
        && agent.restartIfChanged
        && !agent.stopIfChanged
        && !(agent.serviceConfig ? Delegate)
        && !(agent.serviceConfig ? ExecStop);
      got = agent.serviceConfig // {
        inherit (agent) restartIfChanged stopIfChanged;
      };
    };
    "agent: state and run dirs 0711, data dir mounted first" = {
      ok =
        agent.serviceConfig.StateDirectory == "kcore"
        && agent.serviceConfig.StateDirectoryMode == "0711"
        && agent.serviceConfig.RuntimeDirectoryMode == "0711"
        && elem "/var/lib/kcore" agent.unitConfig.RequiresMountsFor
        && elem "multi-user.target" agent.wantedBy
        && elem "network-online.target" agent.after;
      got = agent;
    };
    "agent: kcore-qemu at uid/gid 2100000000 with kvm; group kcore" = {
      ok =
        node.users.users.kcore-qemu.uid == 2100000000
        && node.users.users.kcore-qemu.isSystemUser
        && node.users.users.kcore-qemu.group == "kcore-qemu"
        && node.users.groups.kcore-qemu.gid == 2100000000
        && elem "kvm" node.users.users.kcore-qemu.extraGroups
        && node.users.groups ? kcore;
      got = node.users;
    };
    "agent: kernel modules and forwarding" = {
      ok =
        all (m: elem m node.boot.kernelModules) [
          "kvm"
          "tun"
          "bridge"
          "vhost_net"
        ]
        && node.boot.kernel.sysctl."net.ipv4.conf.all.forwarding" == true;
      got = {
        inherit (node.boot) kernelModules;
        inherit (node.boot.kernel) sysctl;
      };
    };
    "agent: firewall closed by default, DHCP/DNS open on nat bridges (iptables names)" = {
      ok =
        node.networking.firewall.allowedTCPPorts == [ ]
        && node.networking.firewall.interfaces."kbr-+".allowedUDPPorts == [
          53
          67
        ]
        && node.networking.firewall.interfaces."kbr-+".allowedTCPPorts == [ 53 ];
      got = node.networking.firewall;
    };
    "agent: openFirewall opens the listen port; nftables names; IPv6; FQDN advertise" = {
      ok =
        v6.networking.firewall.allowedTCPPorts == [ 9091 ]
        && v6.networking.firewall.interfaces ? "kbr-*"
        && flagValue "--controller" (argvOf v6) == "[fd00::1]:9090"
        && flagValue "--listen" (argvOf v6) == "[::]:9091"
        && flagValue "--advertise" (argvOf v6) == "n2.example.com:9091"
        && flagValue "--name" (argvOf v6) == "n2";
      got = {
        argv = argvOf v6;
        inherit (v6.networking) firewall;
      };
    };
    "agent: no --advertise for a fixed listen address; an explicit one is used" = {
      ok =
        !(elem "--advertise" (argvOf fixedAddr))
        && flagValue "--listen" (argvOf fixedAddr) == "10.0.0.5:9091"
        && flagValue "--advertise" (argvOf advertised) == "n1.lan:19091";
      got = [
        (argvOf fixedAddr)
        (argvOf advertised)
      ];
    };
    "agent: systemd escapes (%, $, spaces) in ExecStart; dataDir outside /var/lib via tmpfiles" = {
      ok =
        hasSuffix ''--data-dir "/srv/kcore state" --run-dir /run/kcore'' (
          lib.head (lib.splitString " --accel" v6.systemd.services.kcore-agent.serviceConfig.ExecStart)
        )
        && hasSuffix ''--import-dir "/srv/50%% $$HOME"'' v6.systemd.services.kcore-agent.serviceConfig.ExecStart
        && elem "d /srv/kcore state 0711 root root -" v6.systemd.tmpfiles.rules
        && !(v6.systemd.services.kcore-agent.serviceConfig ? StateDirectory)
        && !(any (hasPrefix "L+ /usr/share/OVMF") v6.systemd.tmpfiles.rules);
      got = {
        exec = v6.systemd.services.kcore-agent.serviceConfig.ExecStart;
        inherit (v6.systemd.tmpfiles) rules;
      };
    };
    "agent: OVMF linked where kcored looks (/usr/share/OVMF)" = {
      ok =
        elem "L+ /usr/share/OVMF/OVMF_CODE.fd - - - - ${pkgs.OVMF.fd}/FV/OVMF_CODE.fd" node.systemd.tmpfiles.rules
        && elem "L+ /usr/share/OVMF/OVMF_VARS.fd - - - - ${pkgs.OVMF.fd}/FV/OVMF_VARS.fd" node.systemd.tmpfiles.rules;
      got = node.systemd.tmpfiles.rules;
    };
    "agent: the tools kcored runs are on the unit's PATH" = {
      ok =
        all (p: elem p agent.path) [
          node.services.kcore-agent.qemuPackage
          pkgs.lvm2
          pkgs.dnsmasq
          pkgs.nftables
          pkgs.iproute2
        ]
        && !(elem pkgs.thin-provisioning-tools agent.path);
      got = map toString agent.path;
    };
    "agent: pools become --pool flags, mount deps, thin tools" = {
      ok =
        flagValues "--pool" (argvOf pooled) == [
          "bulk=dir:/srv/kcore"
          "fast=lvm:vg0/thin"
          "odd=dir:/srv/a:b"
        ]
        && elem "/srv/kcore" pooled.systemd.services.kcore-agent.unitConfig.RequiresMountsFor
        && elem "/srv/a:b" pooled.systemd.services.kcore-agent.unitConfig.RequiresMountsFor
        && elem pkgs.thin-provisioning-tools pooled.systemd.services.kcore-agent.path
        && pooled.services.lvm.boot.thin.enable;
      got = argvOf pooled;
    };
    "agent: kcore and kctl on the system PATH; no libvirt" = {
      ok =
        elem node.services.kcore-agent.package node.environment.systemPackages
        && !(node.systemd.services ? libvirtd)
        && !(any (p: lib.hasInfix "libvirt" (toString p)) (node.environment.systemPackages ++ agent.path));
      got = map toString node.environment.systemPackages;
    };
    "agent: kcore's bridges and taps are left alone by dhcpcd and NetworkManager" = {
      ok =
        all (i: elem i node.networking.dhcpcd.denyInterfaces) [
          "kbr-*"
          "ktap-*"
        ]
        && elem "interface-name:ktap-*" node.networking.networkmanager.unmanaged;
      got = node.networking.dhcpcd.denyInterfaces;
    };
    "agent: the example node evaluates to a system (assertions hold)" = {
      ok = force node;
      got = null;
    };
    "controller: ExecStart runs kcored controller with its flags" = {
      ok =
        lib.take 2 ctlArgv == [
          "${ctl.services.kcore-controller.package}/bin/kcored"
          "controller"
        ]
        && flagValue "--data-dir" ctlArgv == "/var/lib/kcore-controller"
        && flagValue "--run-dir" ctlArgv == "/run/kcore-controller"
        && flagValue "--listen" ctlArgv == "0.0.0.0:9090"
        && flagValues "--tls-san" ctlArgv == [
          "10.0.0.1"
          "ctl.example.com"
        ];
      got = ctlArgv;
    };
    "controller: firewall, dirs, kctl's socket, restarts" = {
      ok =
        ctl.networking.firewall.allowedTCPPorts == [ 9090 ]
        && ctlUnit.serviceConfig.StateDirectory == "kcore-controller"
        && ctlUnit.serviceConfig.RuntimeDirectory == "kcore-controller"
        && ctlUnit.serviceConfig.UMask == "0077"
        && ctlUnit.serviceConfig.Restart == "on-failure"
        && ctl.environment.variables.KCORE_SOCKET == "/run/kcore-controller/kcore.sock"
        && ctl.users.groups ? kcore
        && !(ctl.systemd.services ? kcore-agent)
        && force ctl;
      got = ctlUnit.serviceConfig;
    };
    "controller and agent on one host: two units, two data and run dirs" = {
      ok =
        force both
        && both.systemd.services.kcore-agent.serviceConfig.RuntimeDirectory
          != both.systemd.services.kcore-controller.serviceConfig.RuntimeDirectory
        && both.systemd.services.kcore-agent.serviceConfig.StateDirectory
          != both.systemd.services.kcore-controller.serviceConfig.StateDirectory;
      got = null;
    };
  }
  // lib.optionalAttrs stub {
    "package: kcored and kctl from Cargo.lock; the source is the workspace and no more" =
      let
        a = node.services.kcore-agent.package.buildArgs;
        ws = lib.importTOML ../../Cargo.toml;
        # The filtered source, copied into the Nix store for real.
        top = builtins.readDir "${a.src}";
        expected = [
          "Cargo.lock"
          "Cargo.toml"
        ]
        ++ ws.workspace.members;
      in
      {
        ok =
          a.cargoBuildFlags == [
            "-p"
            "kcored"
            "-p"
            "kctl"
          ]
          && builtins.pathExists a.cargoLock.lockFile
          && a.version == ws.workspace.package.version
          && a.doCheck == false
          && lib.sort lib.lessThan (lib.attrNames top) == lib.sort lib.lessThan expected
          && builtins.pathExists "${a.src}/proto/kcore/v1/kcore.proto"
          && builtins.pathExists "${a.src}/kcored/src/main.rs";
        got = {
          inherit (a) cargoBuildFlags version;
          source = lib.attrNames top;
        };
      };
  };

  failed = lib.filterAttrs (_: c: !c.ok) checks;
in
if failed == { } then
  lib.attrNames checks
else
  throw (
    "kcore module checks failed:\n"
    + lib.concatStrings (
      lib.mapAttrsToList (n: c: "- ${n}\n  found: ${lib.generators.toPretty { } c.got}\n") failed
    )
  )
