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

. "$here/host.sh"
need_debian lua5.4 hyperfine
loopvm_bin "$root"
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

read -r lua vm < <(best_of "$out/lua_lcg.json" lua5.4 loopvm-interp)
python3 - "$lua" "$vm" "$steps" <<'PY'
import sys
lua, vm, steps = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"LCG, {steps:,} steps, best of each (whole process):")
print(f"  lua5.4         {lua * 1e3:8.1f} ms")
print(f"  loopvm interp  {vm * 1e3:8.1f} ms   ({vm / lua:.2f}x Lua)")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
