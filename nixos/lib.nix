# Option types and helpers shared by kcore's NixOS modules. Addresses, pools and names are
# checked by their option types, so a typo fails evaluation (`nixos-rebuild`) with the
# option's name instead of giving a unit that fails at every start.
{ lib }:
let
  inherit (builtins) match elemAt stringLength;

  octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  ipv4 = "${octet}\\.${octet}\\.${octet}\\.${octet}";
  label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
  # Bracketed IPv6: a loose check (hex digits, colons, at least two of them, an optional
  # dotted tail); kcored parses the address itself at start.
  ipv6 = "[[]([0-9A-Fa-f]*:[0-9A-Fa-f:]*:[0-9A-Fa-f.]*)[]]";

  # "1".."65535", no sign, no leading zero.
  isPort = p: match "[1-9][0-9]{0,4}" p != null && lib.toInt p <= 65535;

  isIPv4 = s: match ipv4 s != null;

  # A DNS name whose last label is not all digits (so 10.0.0.300 is not taken for a name).
  isDnsName =
    s:
    stringLength s <= 253
    && match "${label}(\\.${label})*\\.?" s != null
    && match "(.*\\.)?[0-9]+\\.?" s == null;

  # [host, port] of "host:port" / "[v6]:port", or null.
  splitHostPort =
    s:
    let
      v6 = match "${ipv6}:([^:]*)" s;
      plain = match "([^:]*):([^:]*)" s;
    in
    if v6 != null then
      {
        host = elemAt v6 0;
        port = elemAt v6 1;
        family = "ipv6";
      }
    else if plain != null then
      {
        host = elemAt plain 0;
        port = elemAt plain 1;
        family = if isIPv4 (elemAt plain 0) then "ipv4" else "name";
      }
    else
      null;

  isHostPort =
    s:
    let
      hp = splitHostPort s;
    in
    lib.isString s
    && hp != null
    && isPort hp.port
    && (hp.family != "name" || isDnsName hp.host);

  isSocketAddr =
    s:
    let
      hp = splitHostPort s;
    in
    lib.isString s && hp != null && isPort hp.port && hp.family != "name";

  # kcored's rules (kcore-types and storage/src/name.rs, storage/src/lvm.rs).
  isNodeName = s: match "[a-z0-9][a-z0-9-]{0,62}" s != null;
  isPoolName = s: match "[a-z0-9][a-z0-9._-]{0,62}" s != null;
  isLvmName = s: match "[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}" s != null && s != "." && s != "..";
  isPoolSpec =
    s:
    let
      dir = match "dir:(/.*)" s;
      lvm = match "lvm:([^/]+)(/([^/]+))?" s;
    in
    lib.isString s
    && (
      (dir != null && match ".*(^|/)\\.\\.?(/.*|$)" (elemAt dir 0) == null)
      || (lvm != null && isLvmName (elemAt lvm 0) && (elemAt lvm 2 == null || isLvmName (elemAt lvm 2)))
    );

  strType =
    name: description: check:
    lib.mkOptionType {
      inherit name description;
      descriptionClass = "noun";
      check = x: lib.isString x && check x;
      merge = lib.options.mergeEqualOption;
    };
in
{
  inherit isPort isHostPort isSocketAddr isNodeName isPoolName isPoolSpec splitHostPort;

  types = {
    hostPort =
      strType "kcoreHostPort"
        "HOST:PORT (a DNS name, an IPv4 address or a bracketed IPv6 address, and a port from 1 to 65535)"
        isHostPort;
    socketAddr =
      strType "kcoreSocketAddr"
        "IP:PORT (an IPv4 address or a bracketed IPv6 address, and a port from 1 to 65535)"
        isSocketAddr;
    nodeName = strType "kcoreNodeName" "kcore node name ([a-z0-9][a-z0-9-]{0,62})" isNodeName;
    pools =
      lib.types.addCheck (lib.types.attrsOf (
        strType "kcorePool" "pool source (dir:/ABSOLUTE/PATH, lvm:VG or lvm:VG/THINPOOL)" isPoolSpec
      )) (ps: lib.all isPoolName (lib.attrNames ps))
      // {
        description = "attribute set of pool sources (dir:/ABSOLUTE/PATH, lvm:VG or lvm:VG/THINPOOL) named [a-z0-9][a-z0-9._-]{0,62}";
      };
    absolutePath = strType "kcoreAbsolutePath" "absolute path (a string, kept out of the Nix store)" (
      s: lib.hasPrefix "/" s
    );
  };

  # The port of a checked HOST:PORT.
  portOf = s: lib.toInt (splitHostPort s).port;

  # True for 0.0.0.0 and [::]: kcored then needs --advertise.
  isWildcard =
    s:
    let
      h = (splitHostPort s).host;
    in
    h == "0.0.0.0" || match "0*:(0*:)*0*" h != null;
}
