# Small helpers for kcore's NixOS modules.
{ lib }:
{
  # One systemd Exec line from an argv: plain words stay as they are, anything else is
  # double-quoted with systemd's escapes ("%" -> "%%" for specifiers, "$" -> "$$" for
  # variables), as nixpkgs' utils.escapeSystemdExecArgs does.
  execLine = lib.concatMapStringsSep " " (
    arg:
    if builtins.match "[][A-Za-z0-9_./:=,+@-]+" arg != null then
      arg
    else
      lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON arg)
  );
}
