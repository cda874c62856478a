#!/usr/bin/env bash
# Make a Python virtualenv with PyPI's prometheus-client (its Prometheus text and
# OpenMetrics parsers check kcored's /metrics in the tests), in DIR (default
# /var/cache/kcore/tools/prometheus-venv), on Debian's python3 (python3-venv).
# Cached: does nothing when DIR already has this version. Prints the venv's python.
#   scripts/fetch-prometheus-client.sh [DIR]
set -euo pipefail

PKGS="prometheus-client==0.26.0"

log() { printf 'fetch-prometheus-client: %s\n' "$*" >&2; }

dir=${1:-/var/cache/kcore/tools/prometheus-venv}
py="$dir/bin/python3"
ready() {
    [ -x "$py" ] && [ "$(cat "$dir/.kcore-installed" 2>/dev/null)" = "$PKGS" ] \
        && "$py" -c 'import prometheus_client.parser, prometheus_client.openmetrics.parser' 2>/dev/null
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
"$py" -c 'import prometheus_client; print("prometheus-client installed")' >&2
echo "$py"
