# shellcheck shell=bash
# A cached Python virtualenv of pinned PyPI packages, for the real clients the tests drive
# (scripts/fetch-grpcio.sh, scripts/fetch-mcp.sh); source this file.
#
# pyvenv NAME DIR "PKG==V ..." CHECK: make DIR a venv on Debian's python3 (python3-venv)
# holding exactly those packages (binary wheels from PyPI) unless it already does and
# `python3 -c CHECK` succeeds there, one installer at a time (flock on DIR.lock), and print
# its python. Messages go to stderr prefixed with NAME.

pyvenv() {
    local name=$1 dir=$2 pkgs=$3 check=$4
    local py="$dir/bin/python3" base=/usr/bin/python3
    _pyvenv_log() { printf '%s: %s\n' "$name" "$*" >&2; }
    _pyvenv_ready() {
        [ -x "$py" ] && [ "$(cat "$dir/.kcore-installed" 2>/dev/null)" = "$pkgs" ] \
            && "$py" -c "$check" 2>/dev/null
    }
    if _pyvenv_ready; then
        echo "$py"
        return 0
    fi
    [ -x "$base" ] || { _pyvenv_log "$base not found: apt-get install python3 python3-venv"; return 1; }
    "$base" -c 'import venv, ensurepip' 2>/dev/null \
        || { _pyvenv_log "$base cannot make a venv: apt-get install python3-venv"; return 1; }

    # One installer at a time: concurrent test runs may fetch at once.
    mkdir -p "$(dirname "$dir")"
    exec 9>"$dir.lock"
    flock 9
    if _pyvenv_ready; then
        echo "$py"
        return 0
    fi
    rm -rf "$dir"
    _pyvenv_log "creating $dir with $pkgs from PyPI"
    "$base" -m venv "$dir"
    # shellcheck disable=SC2086 # pkgs is a list of words
    "$py" -m pip install --quiet --disable-pip-version-check --only-binary :all: $pkgs >&2 \
        || { rm -rf "$dir"; _pyvenv_log "pip install $pkgs failed (is PyPI reachable?)"; return 1; }
    echo "$pkgs" > "$dir/.kcore-installed"
    _pyvenv_ready || { _pyvenv_log "$dir does not pass: python3 -c '$check'"; return 1; }
    echo "$py"
}
