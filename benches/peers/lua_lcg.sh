#!/usr/bin/env bash
# The interpreter beside Lua 5.4 (issue 19): the LCG of
# benches/workloads/lcg31.lb, 10^7 steps, whole processes (start-up
# included), best of $RUNS runs each, in one hyperfine run so that both see
# the same machine load.
#
#   benches/peers/lua_lcg.sh                   # builds target/release/loopvm
#   LOOPVM_BIN=path/to/loopvm benches/peers/lua_lcg.sh   # another build
#   LCG_STEPS=1000000 RUNS=20 benches/peers/lua_lcg.sh
#
# Installs lua5.4 and hyperfine from Debian when they are missing (apt-get,
# as root or through sudo). Writes benches/peers/results/lua_lcg.json
# (hyperfine's export) and prints each command's best time and the ratio.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
steps="${LCG_STEPS:-10000000}"
runs="${RUNS:-10}"
out="$here/results"
mkdir -p "$out"

missing=()
command -v lua5.4 >/dev/null || missing+=(lua5.4)
command -v hyperfine >/dev/null || missing+=(hyperfine)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y "${missing[@]}" >/dev/null
fi

bin="${LOOPVM_BIN:-}"
if [ -z "$bin" ]; then
    echo "== building loopvm (release)"
    (cd "$root" && cargo build --release --bin loopvm --quiet)
    bin="${CARGO_TARGET_DIR:-$root/target}/release/loopvm"
fi
prog="$root/benches/workloads/lcg31.lb"

# Both must print the same final state (loopvm prints it as `i64 <x>`).
want="$(lua5.4 "$here/lcg.lua" "$steps")"
got="$("$bin" run "$prog" --arg "n=$steps" --tier interp | awk '{print $NF}')"
if [ "$want" != "$got" ]; then
    echo "loopvm printed $got, Lua $want" >&2
    exit 1
fi

hyperfine -N --warmup 2 --runs "$runs" --export-json "$out/lua_lcg.json" \
    -n lua5.4 "lua5.4 $here/lcg.lua $steps" \
    -n loopvm-interp "$bin run $prog --arg n=$steps --tier interp" >/dev/null

python3 - "$out/lua_lcg.json" "$steps" <<'PY'
import json, sys
r = {x["command"]: min(x["times"]) for x in json.load(open(sys.argv[1]))["results"]}
lua, vm = r["lua5.4"], r["loopvm-interp"]
print(f"LCG, {int(sys.argv[2]):,} steps, best of each (whole process):")
print(f"  lua5.4         {lua * 1e3:8.1f} ms")
print(f"  loopvm interp  {vm * 1e3:8.1f} ms   ({vm / lua:.2f}x Lua)")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
