# services.kcore-controller: the cluster's controller (`kcored controller`): SQLite state,
# the public API (mutual TLS) for kctl and the other clients, and the join service for
# nodes. It runs no guests.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.kcore-controller;
  agent = config.services.kcore-agent;
  klib = import ./lib.nix { inherit lib; };
  util = import ./util.nix { inherit lib; };

  # Not /run/kcore: a node agent on the same host has that one (one kcored per run dir).
  runDir = "/run/kcore-controller";

  kcoredArgs = [
    "controller"
    "--data-dir"
    cfg.dataDir
    "--run-dir"
    runDir
    "--listen"
    cfg.listen
  ]
  ++ lib.concatMap (san: [
    "--tls-san"
    san
  ]) cfg.tlsSans
  ++ cfg.extraArgs;
in
{
  options.services.kcore-controller = {
    enable = lib.mkEnableOption "the kcore controller (kcored controller)";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage <kcore>/nixos/package.nix { }";
      description = "kcore (kcored and kctl). The flake's module sets its own build.";
    };

    listen = lib.mkOption {
      type = klib.types.socketAddr;
      default = "0.0.0.0:9090";
      description = "The API's TCP address (mutual TLS only), IP:PORT.";
    };

    dataDir = lib.mkOption {
      type = klib.types.absolutePath;
      default = "/var/lib/kcore-controller";
      description = ''
        The controller's state: controller.db (SQLite), pki/ (the cluster CA, admin.crt).
        Not the node agent's dataDir: one kcored per data dir.
      '';
    };

    tlsSans = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "ctl.example.com"
        "10.0.0.1"
      ];
      description = ''
        Names and IPs for the server certificate besides localhost and the host name: every
        name nodes and clients dial (a node with `controllerAddr = "10.0.0.1:9090"` needs
        "10.0.0.1" here).
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the listen port (TCP) in the firewall for nodes and clients.";
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "--node-timeout"
        "10"
      ];
      description = "More arguments for `kcored controller`.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !agent.enable || agent.dataDir != cfg.dataDir;
        message = "services.kcore-controller.dataDir and services.kcore-agent.dataDir must differ (one kcored per data dir): both are ${cfg.dataDir}.";
      }
    ];

    environment.systemPackages = [ cfg.package ];
    # kctl on this host finds the controller's local socket (root and group kcore).
    environment.variables.KCORE_SOCKET = "${runDir}/kcore.sock";

    users.groups.kcore = { };

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall (klib.portOf cfg.listen);

    systemd.tmpfiles.rules = lib.optional (
      !lib.hasPrefix "/var/lib/" cfg.dataDir
    ) "d ${cfg.dataDir} 0711 root root -";

    systemd.services.kcore-controller = {
      description = "kcore controller";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartIfChanged = true;
      stopIfChanged = false;
      unitConfig.RequiresMountsFor = [ cfg.dataDir ];
      serviceConfig = {
        Type = "simple";
        ExecStart = util.execLine ([ "${cfg.package}/bin/kcored" ] ++ kcoredArgs);
        Restart = "on-failure";
        RestartSec = "5s";
        TimeoutStopSec = "30s";
        LimitNOFILE = 65536;
        UMask = "0077";
        RuntimeDirectory = "kcore-controller";
        RuntimeDirectoryMode = "0711";
      }
      // lib.optionalAttrs (lib.hasPrefix "/var/lib/" cfg.dataDir) {
        StateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
        StateDirectoryMode = "0711";
      };
    };
  };
}
