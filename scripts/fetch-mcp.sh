#!/usr/bin/env bash
# Make a Python virtualenv with the official MCP SDK from PyPI (`mcp`), the client the
# tests drive kcore-mcp with, in DIR (default /var/cache/kcore/tools/mcp-venv), on
# Debian's python3 (python3-venv).
# Cached: does nothing when DIR already has this version. Prints the venv's python.
#   scripts/fetch-mcp.sh [DIR]
set -euo pipefail

MCP=2.3.0
PKGS="mcp==$MCP"

log() { printf 'fetch-mcp: %s\n' "$*" >&2; }

dir=${1:-/var/cache/kcore/tools/mcp-venv}
py="$dir/bin/python3"
ready() {
    [ -x "$py" ] && [ "$(cat "$dir/.kcore-installed" 2>/dev/null)" = "$PKGS" ] \
        && "$py" -c 'import mcp.client.stdio, mcp.client.streamable_http' 2>/dev/null
}
if ready; then
    echo "$py"
    exit 0
fi

base=/usr/bin/python3
[ -x "$base" ] || { log "$base not found: apt-get install python3 python3-venv"; exit 1; }
"$base" -c 'import venv, ensurepip' 2>/dev/null \
    || { log "$base cannot make a venv: apt-get install python3-venv"; exit 1; }

# One installer at a time: concurrent test runs may fetch at once.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if ready; then
    echo "$py"
    exit 0
fi
rm -rf "$dir"
log "creating $dir with $PKGS from PyPI"
"$base" -m venv "$dir"
# shellcheck disable=SC2086 # PKGS is a list of words
"$py" -m pip install --quiet --disable-pip-version-check --only-binary :all: $PKGS >&2 \
    || { rm -rf "$dir"; log "pip install $PKGS failed (is PyPI reachable?)"; exit 1; }
echo "$PKGS" > "$dir/.kcore-installed"
"$py" -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))' >&2
echo "$py"
