#!/usr/bin/env bash
# The cost of a `print` inside a hot loop on each tier (issue 17):
# `fori_loop(0, N, |i, x| { print(x); x * 0.5 + 1.0 }, 0.0)` (an f32 scalar
# printed) against the same loop without the print, N = $STEPS iterations, stdout to
# /dev/null, whole processes, in one hyperfine run so every command sees
# the same machine load. Per printed line = (with - without) / N, from the
# medians. With CALLGRIND=1 it also counts the instructions of each run
# under valgrind (user space only; the write system call, the same on
# every tier, is not counted), which a loaded machine does not disturb.
#
#   benches/print_cost.sh                 # builds target/release/loopvm
#   LOOPVM_BIN=path/to/loopvm STEPS=200000 RUNS=15 CALLGRIND=1 benches/print_cost.sh
#
# Installs hyperfine (and valgrind for CALLGRIND=1) from Debian when
# missing. The XLA runs use a warm executable cache (a first run fills it),
# so no compilation is timed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
steps="${STEPS:-200000}"
runs="${RUNS:-15}"
. "$here/peers/host.sh"
tools=(hyperfine)
if [ "${CALLGRIND:-0}" = 1 ]; then tools+=(valgrind); fi
need_debian "${tools[@]}"
loopvm_bin "$root"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
programs() {
    printf 'fn main() -> f32 {\n    fori_loop(0, %s, |i, x| { print(x); x * 0.5 + 1.0 }, 0.0)\n}\n' "$1" > "$work/print_loop.lb"
    printf 'fn main() -> f32 {\n    fori_loop(0, %s, |i, x| { x * 0.5 + 1.0 }, 0.0)\n}\n' "$1" > "$work/plain_loop.lb"
}
programs "$steps"
tiers=(interp jit xla)
for t in "${tiers[@]}"; do "$bin" run "$work/print_loop.lb" --tier "$t" > /dev/null; "$bin" run "$work/plain_loop.lb" --tier "$t" > /dev/null; done
cmds=()
for t in "${tiers[@]}"; do
    cmds+=("$bin run $work/print_loop.lb --tier $t" "$bin run $work/plain_loop.lb --tier $t")
done
hyperfine --style none --warmup 2 --runs "$runs" --output null --export-json "$work/h.json" "${cmds[@]}" > /dev/null
python3 - "$work/h.json" "$steps" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
n = int(sys.argv[2])
med = {r["command"].split()[-1] + (" print" if "print_loop" in r["command"] else " plain"): r["median"] for r in res}
print(f"{n} iterations, median of the runs (s):")
print("| tier | with print | without | per printed line |")
print("| --- | --- | --- | --- |")
for t in ("interp", "jit", "xla"):
    w, o = med[f"{t} print"], med[f"{t} plain"]
    print(f"| `{t}` | {w * 1e3:.0f} ms | {o * 1e3:.0f} ms | {(w - o) / n * 1e6:.2f} µs |")
PY
if [ "${CALLGRIND:-0}" = 1 ]; then
    small=$((steps / 10))
    programs "$small"
    echo "instructions per printed line (callgrind, $small iterations, user space):"
    for t in "${tiers[@]}"; do
        "$bin" run "$work/print_loop.lb" --tier "$t" > /dev/null
        "$bin" run "$work/plain_loop.lb" --tier "$t" > /dev/null
        count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" run "$work/$1.lb" --tier "$t" 2>&1 >/dev/null | sed -n 's/.*Collected : //p'; }
        a=$(count print_loop); b=$(count plain_loop)
        echo "  $t: $(( (a - b) / small ))"
    done
fi
