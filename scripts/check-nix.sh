#!/usr/bin/env bash
# The NixOS module, the flake and the node installer's Nix side, checked as far as these
# machines allow (no full nixpkgs; docs/nixos.md says what is and is not verified):
#   1. every .nix file in the repository parses (nix-instantiate --parse);
#   2. the installer script the ISO ships passes shellcheck;
#   3. with nixpkgs' lib (../shared/vendor on development machines and CI, or
#      KCORE_NIXPKGS_LIB): the module is evaluated with lib.evalModules against the
#      stand-in NixOS options of nixos/tests/stub.nix and the values it sets are checked
#      (nixos/tests/checks.nix), wrong values must fail evaluation naming the option
#      (nixos/tests/bad.nix), and the flake's outputs are evaluated with a stand-in nixpkgs
#      (nixos/tests/flake-checks.nix). Where <nixpkgs> is on NIX_PATH, the module checks
#      also run against a real NixOS evaluation. Without lib, it says so and only parses.
# Needs: nix-bin, shellcheck (scripts/deps.sh installs them). Takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=scripts/lib/nix.sh
. scripts/lib/nix.sh
require_nix
command -v shellcheck >/dev/null || {
    echo "shellcheck not found: apt-get install shellcheck (bash scripts/deps.sh does)" >&2
    exit 1
}
KCORE_NIX_TMP=$(mktemp -d)
trap 'rm -rf "$KCORE_NIX_TMP"' EXIT
export KCORE_NIX_TMP
log() { printf 'check-nix: %s\n' "$*" >&2; }
fail() {
    printf 'check-nix: FAIL: %s\n' "$*" >&2
    exit 1
}

# 1. Parse.
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.nix' 2>/dev/null ||
    find . -name '*.nix' -not -path './target/*')
[ "${#files[@]}" -gt 0 ] || fail "no .nix files found"
for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    nixi --parse "$f" >/dev/null 2>"$KCORE_NIX_TMP/err" || fail "$f does not parse: $(cat "$KCORE_NIX_TMP/err")"
done
log "ok: ${#files[@]} .nix files parse"

# 2. Shell scripts.
shellcheck nixos/install-to-disk.sh || fail "shellcheck"
log "ok: shellcheck nixos/install-to-disk.sh"

# 3. Evaluate.
find_nixpkgs_lib "$repo"
nixpkgs=$(nix-instantiate --find-file nixpkgs 2>/dev/null || true)
if [ -z "$NIXPKGS_LIB" ] && [ -z "$nixpkgs" ]; then
    log "NOT EVALUATED: without nixpkgs' lib (or <nixpkgs>) the module, the flake and the"
    log "installer's configuration were only parsed; their values and refusals were not checked"
    exit 0
fi

# Each way of evaluating: a Nix expression for `lib`, and for eval.nix's arguments.
modes=()
[ -z "$NIXPKGS_LIB" ] || modes+=(stub)
[ -z "$nixpkgs" ] || modes+=(nixos)
for mode in "${modes[@]}"; do
    if [ "$mode" = stub ]; then
        lib="import $NIXPKGS_LIB"
        evalargs="inherit lib;"
        what="lib.evalModules against nixos/tests/stub.nix"
    else
        lib="import <nixpkgs/lib>"
        evalargs="inherit lib; nixpkgs = <nixpkgs>;"
        what="a real NixOS evaluation (<nixpkgs> = $nixpkgs)"
    fi
    eval_fn="configuration: import $repo/nixos/tests/eval.nix { $evalargs inherit configuration; }"

    names=$(nixi --eval --read-write-mode --strict --json -E "
        let lib = $lib; in import $repo/nixos/tests/checks.nix {
          inherit lib; eval = $eval_fn; stub = \"$mode\" == \"stub\"; }" 2>"$KCORE_NIX_TMP/err") ||
        fail "module checks ($what):
$(cat "$KCORE_NIX_TMP/err")"
    while IFS= read -r n; do log "ok: $n"; done < <(json_lines <<<"$names")

    mapfile -t bad < <(nixi --eval --strict --json -E "builtins.attrNames (import $repo/nixos/tests/bad.nix)" | json_lines)
    for case in "${bad[@]}"; do
        expect=$(nixi --eval --strict --json -E "(import $repo/nixos/tests/bad.nix).$case.expect" |
            sed -e 's/^"//' -e 's/"$//' -e 's/\\"/"/g')
        if out=$(nixi --eval --strict -E "
            let lib = $lib; c = (import $repo/nixos/tests/eval.nix {
              $evalargs configuration = (import $repo/nixos/tests/bad.nix).$case.config; }).config;
            in import $repo/nixos/tests/force.nix c" 2>&1); then
            fail "bad value $case ($what): evaluation succeeded, expected: $expect"
        fi
        grep -qF -- "$expect" <<<"$out" ||
            fail "bad value $case ($what): the error does not say \"$expect\":
$out"
    done
    log "ok: ${#bad[@]} wrong configurations fail evaluation, naming the option ($what)"
done

if [ -n "$NIXPKGS_LIB" ]; then
    # Every flag the module gives kcored exists in the kcored built from this repository.
    kcored=${KCORED:-target/debug/kcored}
    if [ ! -x "$kcored" ]; then
        log "building kcored (cargo build -p kcored) to check the module's flags against it"
        PATH="$HOME/.cargo/bin:$PATH" cargo build -q --locked -p kcored
    fi
    for role in node controller; do
        help=$("$kcored" "$role" --help)
        mapfile -t flags < <(nixi --eval --strict --json -E "
            (import $repo/nixos/tests/flags.nix { lib = import $NIXPKGS_LIB;
              eval = configuration: import $repo/nixos/tests/eval.nix {
                lib = import $NIXPKGS_LIB; inherit configuration; }; }).$role" | json_lines)
        [ "${#flags[@]}" -gt 3 ] || fail "no kcored flags found for $role"
        for flag in "${flags[@]}"; do
            grep -qE -- "^ +${flag}[ ,]|alias: ${flag}\]" <<<"$help" ||
                fail "the module runs kcored $role $flag, which \`kcored $role --help\` does not list"
        done
        log "ok: the module's kcored $role flags exist (${flags[*]})"
    done

    names=$(nixi --eval --read-write-mode --strict --json -E "
        import $repo/nixos/tests/flake-checks.nix { lib = import $NIXPKGS_LIB; }" 2>"$KCORE_NIX_TMP/err") ||
        fail "flake checks:
$(cat "$KCORE_NIX_TMP/err")"
    while IFS= read -r n; do log "ok: $n"; done < <(json_lines <<<"$names")
fi
log "NOT CHECKED HERE: building kcore with nixpkgs' Rust tooling, a NixOS system build, the ISO (needs full nixpkgs)"
