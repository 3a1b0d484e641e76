#!/usr/bin/env bash
# The vmap benchmark of issue 18, side by side: loopvm's `benches/vmap_rnn.rs`
# (vmap of the RNN scan over 64 sequences on the XLA tier, and 64 separate
# calls) and JAX's `benches/peers/vmap_jax.py` (jax.jit(jax.vmap(rnn)), and
# 64 calls of jax.jit(rnn)), alternating for $LOOPVM_PEERS_ROUNDS rounds
# (default 3) so that both see the same background load. Prints one JSON
# line per system and round, and the load average before each round.
#
#   benches/peers/vmap_rnn.sh
#
# Uses benches/peers/.venv (or $LOOPVM_PEERS_VENV; made with
# requirements.txt if missing) and builds the bench with profile
# $LOOPVM_BENCH_PROFILE (default `release`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${LOOPVM_PEERS_VENV:-$here/.venv}"
profile="${LOOPVM_BENCH_PROFILE:-release}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
py="$venv/bin/python"
export JAX_PLATFORMS=cpu
exe="$(cd "$root" && cargo bench --profile "$profile" --bench vmap_rnn --no-run --message-format=json 2>/dev/null \
    | "$py" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "vmap_rnn" and m.get("executable"):
        print(m["executable"])')"
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
    echo "could not build benches/vmap_rnn.rs; run: cargo bench --profile $profile --bench vmap_rnn --no-run" >&2
    exit 1
fi
for r in $(seq 1 "${LOOPVM_PEERS_ROUNDS:-3}"); do
    echo "# round $r, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$exe"
    "$py" "$here/vmap_jax.py"
done
