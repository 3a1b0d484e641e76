# Sourced by the scripts that time loopvm's host tiers beside a native peer
# (lua_lcg.sh, collatz_rustc.sh, ../print_cost.sh): Debian tools installed
# when missing, the loopvm binary to time, and hyperfine's best times.
#
#   . "$(dirname "$0")/host.sh"          # or the path from ../
#   need_debian hyperfine lua5.4         # installs those that are missing
#   loopvm_bin "$root"                   # sets $bin: $LOOPVM_BIN, else a release build
#   best_of results.json name...         # prints each name's best time in seconds

need_debian() {
    local missing=() p
    for p in "$@"; do
        command -v "$p" >/dev/null || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "== installing ${missing[*]} (Debian)"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get install -y "${missing[@]}" >/dev/null
    fi
}

loopvm_bin() {
    bin="${LOOPVM_BIN:-}"
    if [ -z "$bin" ]; then
        echo "== building loopvm (release)"
        (cd "$1" && cargo build --release --bin loopvm --quiet)
        bin="${CARGO_TARGET_DIR:-$1/target}/release/loopvm"
    fi
}

best_of() {
    python3 - "$@" <<'PY'
import json, sys
r = {x["command"]: min(x["times"]) for x in json.load(open(sys.argv[1]))["results"]}
print(" ".join(str(r[n]) for n in sys.argv[2:]))
PY
}
