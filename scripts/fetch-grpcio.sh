#!/usr/bin/env bash
# Make a Python virtualenv with grpcio and grpcio-tools from PyPI for the tests, in DIR
# (default /var/cache/kcore/tools/grpcio-venv), on Debian's python3 (python3-venv).
# PyPI's grpcio, not Debian's python3-grpcio: the tests use the client as people install it
# (since 1.57 it sends the socket path as :authority on unix sockets).
# Cached: does nothing when DIR already has these versions. Prints the venv's python.
#   scripts/fetch-grpcio.sh [DIR]
set -euo pipefail

GRPCIO=1.85.1
PKGS="grpcio==$GRPCIO grpcio-tools==$GRPCIO"

log() { printf 'fetch-grpcio: %s\n' "$*" >&2; }

dir=${1:-/var/cache/kcore/tools/grpcio-venv}
py="$dir/bin/python3"
ready() {
    [ -x "$py" ] && [ "$(cat "$dir/.kcore-installed" 2>/dev/null)" = "$PKGS" ] \
        && "$py" -c 'import grpc, grpc_tools.protoc' 2>/dev/null
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
"$py" -c 'import grpc; print("grpcio", grpc.__version__)' >&2
echo "$py"
