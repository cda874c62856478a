# A stand-in for the NixOS options kcore's module sets, for evaluating the module with
# nixpkgs' `lib.evalModules` alone (full nixpkgs cannot be fetched on the machines the tests
# run on). Each option has the type NixOS gives it, or a narrower one, so a value NixOS
# would refuse is refused here too. `system.build.toplevel` fails on a failed assertion,
# as NixOS does. Packages are stand-ins too (stub-pkgs.nix).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  listOfStr = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
  ports = mkOption {
    type = types.listOf types.port;
    default = [ ];
  };
  # systemd unit settings: what NixOS's unitOption accepts.
  unitSettings = mkOption {
    type = types.attrsOf (
      types.oneOf [
        types.bool
        types.int
        types.str
        (types.listOf types.str)
      ]
    );
    default = { };
  };
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
{
  options = {
    assertions = mkOption {
      type = types.listOf (
        types.submodule {
          options.assertion = mkOption { type = types.bool; };
          options.message = mkOption { type = types.str; };
        }
      );
      default = [ ];
    };
    warnings = listOfStr;

    system.build.toplevel = mkOption {
      type = types.str;
      readOnly = true;
    };

    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    environment.variables = mkOption {
      type = types.attrsOf types.str;
      default = { };
    };
    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.source = mkOption { type = types.path; };
        }
      );
    };
    nix.settings.experimental-features = listOfStr;
    system.stateVersion = mkOption { type = types.str; };
    boot.loader.systemd-boot.enable = mkOption {
      type = types.bool;
      default = false;
    };
    boot.loader.efi.canTouchEfiVariables = mkOption {
      type = types.bool;
      default = false;
    };

    users.users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              name = mkOption {
                type = types.str;
                default = name;
              };
              uid = mkOption {
                type = types.nullOr types.int;
                default = null;
              };
              group = mkOption {
                type = types.str;
                default = "";
              };
              extraGroups = listOfStr;
              isSystemUser = mkOption {
                type = types.bool;
                default = false;
              };
              isNormalUser = mkOption {
                type = types.bool;
                default = false;
              };
              description = mkOption {
                type = types.str;
                default = "";
              };
              home = mkOption {
                type = types.str;
                default = "/var/empty";
              };
            };
          }
        )
      );
    };
    users.groups = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.gid = mkOption {
            type = types.nullOr types.int;
            default = null;
          };
          options.members = listOfStr;
        }
      );
    };

    systemd.services = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options = {
            description = mkOption {
              type = types.str;
              default = "";
            };
            wantedBy = listOfStr;
            wants = listOfStr;
            requires = listOfStr;
            after = listOfStr;
            before = listOfStr;
            path = mkOption {
              type = types.listOf (types.either types.package types.str);
              default = [ ];
            };
            environment = mkOption {
              type = types.attrsOf types.str;
              default = { };
            };
            restartIfChanged = mkOption {
              type = types.bool;
              default = true;
            };
            stopIfChanged = mkOption {
              type = types.bool;
              default = true;
            };
            unitConfig = unitSettings;
            serviceConfig = unitSettings;
          };
        }
      );
    };
    systemd.tmpfiles.rules = listOfStr;

    boot.kernelModules = listOfStr;
    boot.kernel.sysctl = mkOption {
      type = types.attrsOf (
        types.nullOr (
          types.oneOf [
            types.bool
            types.int
            types.str
          ]
        )
      );
      default = { };
    };

    fileSystems = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.device = mkOption { type = types.str; };
          options.fsType = mkOption {
            type = types.str;
            default = "auto";
          };
          options.options = listOfStr;
        }
      );
    };

    networking.hostName = mkOption {
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      default = "nixos";
    };
    networking.domain = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    networking.fqdnOrHostName = mkOption {
      type = types.str;
      readOnly = true;
      default =
        if config.networking.domain == null then
          config.networking.hostName
        else
          "${config.networking.hostName}.${config.networking.domain}";
    };
    networking.bridges = mkOption {
      default = { };
      type = types.attrsOf (types.submodule { options.interfaces = listOfStr; });
    };
    networking.firewall.allowedTCPPorts = ports;
    networking.firewall.allowedUDPPorts = ports;
    networking.firewall.interfaces = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.allowedTCPPorts = ports;
          options.allowedUDPPorts = ports;
        }
      );
    };
    networking.nftables.enable = mkOption {
      type = types.bool;
      default = false;
    };
    networking.dhcpcd.denyInterfaces = listOfStr;
    networking.networkmanager.unmanaged = listOfStr;

    services.lvm.boot.thin.enable = mkOption {
      type = types.bool;
      default = false;
    };
  };

  config = {
    _module.args.pkgs = import ./stub-pkgs.nix { inherit lib; };
    # NixOS's own checks of users (nixos/modules/config/users-groups.nix).
    assertions = lib.concatLists (
      lib.mapAttrsToList (name: u: [
        {
          assertion = u.isSystemUser != u.isNormalUser;
          message = "Exactly one of users.users.${name}.isSystemUser and users.users.${name}.isNormalUser must be set.";
        }
        {
          assertion = u.group != "" && config.users.groups ? ${u.group};
          message = "users.users.${name}.group is unset or not in users.groups.";
        }
      ]) config.users.users
    );
    # Like a system build: every value the module sets is forced, after the assertions.
    system.build.toplevel =
      if failed == [ ] then
        builtins.deepSeq [
          config.users
          config.systemd
          config.boot
          config.networking
          config.environment
          config.services.lvm
          config.fileSystems
        ] "/nix/store/00000000000000000000000000000000-nixos-system-stub"
      else
        throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}";
  };
}
