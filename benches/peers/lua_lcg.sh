#!/usr/bin/env bash
# The interpreter beside Lua 5.4 (issue 19): the LCG of
# benches/workloads/lcg31.lb (a fori_loop; Lua's numeric `for`) and of
# lcg31_while.lb (a while_loop; Lua's `while`), 10^7 steps, whole processes
# (start-up included), best of $RUNS runs each, in one hyperfine run so
# that all see the same machine load.
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
wprog="$root/benches/workloads/lcg31_while.lb"

# All must print the same final state (loopvm prints it as `i64 <x>`).
want="$(lua5.4 "$here/lcg.lua" "$steps")"
for got in "$(lua5.4 "$here/lcg_while.lua" "$steps")" \
    "$("$bin" run "$prog" --arg "n=$steps" --tier interp | awk '{print $NF}')" \
    "$("$bin" run "$wprog" --arg "n=$steps" --tier interp | awk '{print $NF}')"; do
    if [ "$want" != "$got" ]; then
        echo "one LCG printed $got, Lua's for loop $want" >&2
        exit 1
    fi
done

hyperfine -N --warmup 2 --runs "$runs" --export-json "$out/lua_lcg.json" \
    -n lua5.4 "lua5.4 $here/lcg.lua $steps" \
    -n loopvm-interp "$bin run $prog --arg n=$steps --tier interp" \
    -n lua5.4-while "lua5.4 $here/lcg_while.lua $steps" \
    -n loopvm-interp-while "$bin run $wprog --arg n=$steps --tier interp" >/dev/null

read -r lua vm wlua wvm < <(best_of "$out/lua_lcg.json" lua5.4 loopvm-interp lua5.4-while loopvm-interp-while)
python3 - "$lua" "$vm" "$wlua" "$wvm" "$steps" <<'PY'
import sys
lua, vm, wlua, wvm = map(float, sys.argv[1:5])
print(f"LCG, {int(sys.argv[5]):,} steps, best of each (whole process):")
print(f"  lua5.4 for            {lua * 1e3:8.1f} ms")
print(f"  loopvm fori_loop      {vm * 1e3:8.1f} ms   ({vm / lua:.2f}x Lua)")
print(f"  lua5.4 while          {wlua * 1e3:8.1f} ms")
print(f"  loopvm while_loop     {wvm * 1e3:8.1f} ms   ({wvm / wlua:.2f}x Lua)")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
