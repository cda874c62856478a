# shellcheck shell=bash
# Helpers for the checks that use Nix (check-nix.sh, check-install.sh); source this file.
#
# nixi: nix-instantiate that works offline and leaves the host's /nix alone: a store of
# its own under $KCORE_NIX_TMP (what it copies, e.g. kcore's filtered source, goes there),
# no substituters, no build users.
#
# find_nixpkgs_lib: sets NIXPKGS_LIB to a directory holding nixpkgs' lib/ (default.nix),
# or to "" with a message saying plainly what was not found. Looked for, in order:
# $KCORE_NIXPKGS_LIB (a lib directory or a nixpkgs.lib tarball), then the development
# machines' ../shared/vendor/nixpkgs.lib-*.tar.gz next to the repository (never copied
# into it), unpacked into $KCORE_NIX_TMP.

require_nix() {
    if ! command -v nix-instantiate >/dev/null; then
        echo "nix-instantiate not found: install Debian's nix-bin (bash scripts/deps.sh does)" >&2
        exit 1
    fi
}

nixi() {
    nix-instantiate --store "local?root=$KCORE_NIX_TMP/store" --option build-users-group '' \
        --option substituters '' "$@"
}

# The elements of a JSON list of plain strings (what `nixi --eval --json` prints), one a line.
json_lines() {
    sed -e 's/^\["//' -e 's/"\]$//' -e 's/^\[\]$//' -e 's/","/\n/g'
}

find_nixpkgs_lib() {
    local repo=$1 src=${KCORE_NIXPKGS_LIB:-}
    NIXPKGS_LIB=
    if [ -z "$src" ]; then
        local found=("$repo"/../shared/vendor/nixpkgs.lib-*.tar.gz)
        [ -e "${found[0]}" ] && src=${found[-1]}
    fi
    if [ -z "$src" ]; then
        echo "nixpkgs' lib is not here (no ../shared/vendor/nixpkgs.lib-*.tar.gz next to the repository, KCORE_NIXPKGS_LIB unset)" >&2
        return 0
    fi
    if [ -f "$src" ]; then
        mkdir -p "$KCORE_NIX_TMP/nixpkgs-lib"
        tar -xzf "$src" -C "$KCORE_NIX_TMP/nixpkgs-lib"
        NIXPKGS_LIB=$(dirname "$(find "$KCORE_NIX_TMP/nixpkgs-lib" -path '*/lib/default.nix' -print -quit)")
    elif [ -f "$src/default.nix" ]; then
        NIXPKGS_LIB=$src
    elif [ -f "$src/lib/default.nix" ]; then
        NIXPKGS_LIB=$src/lib
    fi
    if [ -z "$NIXPKGS_LIB" ] || [ ! -f "$NIXPKGS_LIB/default.nix" ]; then
        echo "no nixpkgs lib in $src" >&2
        exit 1
    fi
    echo "nixpkgs' lib: $src" >&2
}
