#!/usr/bin/env bash
# The XLA-tier comparison of issue 3: loopvm against JAX on the same RNN
# programs, in one run, then the plot.
#
#   benches/peers/run.sh            # everything: about 5 minutes on 2 idle
#                                   # cores, plus building the bench once
#   LOOPVM_PEERS_QUICK=1 benches/peers/run.sh   # no unrolled N = 1000
#
# Makes its own virtual environment (benches/peers/.venv, or
# $LOOPVM_PEERS_VENV) with JAX (CPU) and matplotlib, builds loopvm's
# `benches/xla.rs` (profile $LOOPVM_BENCH_PROFILE, default `release`) and
# writes:
#   benches/peers/results/jax.K.json     JAX compile and run times, overhead
#                                        (round K of $LOOPVM_PEERS_ROUNDS, 2)
#   benches/peers/results/loopvm.K.json  loopvm's, from `xla --report`
#   benches/peers/results/peak_mem.jsonl one line per process: VmHWM before
#                                        and after one compile (and the only
#                                        timing of unrolled N = 1000)
#   benches/peers/results/summary.json   best figure per point; tables.md
#   docs/compile_time.svg                the plot
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${LOOPVM_PEERS_VENV:-$here/.venv}"
out="$here/results"
profile="${LOOPVM_BENCH_PROFILE:-release}"
mkdir -p "$out"

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r "$here/requirements.txt"
py="$venv/bin/python"
export JAX_PLATFORMS=cpu

echo "== building loopvm's bench (profile $profile)"
exe="$(cd "$root" && cargo bench --profile "$profile" --bench xla --no-run --message-format=json 2>/dev/null \
    | "$py" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "xla" and m.get("executable"):
        print(m["executable"])')"
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
    echo "could not build benches/xla.rs; run: cargo bench --profile $profile --bench xla --no-run" >&2
    exit 1
fi
echo "   $exe"

unrolled_big=1000
if [ -n "${LOOPVM_PEERS_QUICK:-}" ]; then unrolled_big=""; fi

# Timing rounds alternate between the systems, so that both see the same
# background load; the summary keeps each point's best figure.
rounds="${LOOPVM_PEERS_ROUNDS:-2}"
rm -f "$out"/jax.*.json "$out"/loopvm.*.json
for r in $(seq 1 "$rounds"); do
    echo "== round $r/$rounds: JAX compile and run times"
    "$py" "$here/jax_loops.py" measure "$out/jax.$r.json"
    echo "== round $r/$rounds: loopvm compile and run times"
    "$exe" --report "$out/loopvm.$r.json"
done

echo "== peak memory, one process per point"
: > "$out/peak_mem.jsonl"
for n in 10 100 1000 10000; do
    "$exe" --peak-mem rolled "$n" >> "$out/peak_mem.jsonl"
    "$py" "$here/jax_loops.py" peak-mem scan "$n" >> "$out/peak_mem.jsonl"
done
for n in 10 100 $unrolled_big; do
    "$exe" --peak-mem unrolled "$n" >> "$out/peak_mem.jsonl"
    "$py" "$here/jax_loops.py" peak-mem unrolled "$n" >> "$out/peak_mem.jsonl"
done
cat "$out/peak_mem.jsonl"

echo "== summary and plot"
"$py" "$here/jax_loops.py" plot "$out" "$root/docs/compile_time.svg" | tee "$out/tables.md"
