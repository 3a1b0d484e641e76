#!/usr/bin/env bash
# The Cranelift tier beside rustc -O (issue 19): benches/workloads/collatz.lb
# (total Collatz steps of 1..=n, a while_loop in a fori_loop) on --tier jit
# against the same algorithm in Rust (benches/peers/collatz.rs, as
# benches/jit_scalar.rs writes it), whole processes, best of $RUNS, in one
# hyperfine run.
#
#   benches/peers/collatz_rustc.sh                       # builds target/release/loopvm
#   LOOPVM_BIN=path/to/loopvm COLLATZ_N=1000000 RUNS=10 benches/peers/collatz_rustc.sh
#
# Installs hyperfine from Debian when it is missing. Writes
# benches/peers/results/collatz_rustc.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
n="${COLLATZ_N:-1000000}"
runs="${RUNS:-10}"
mkdir -p "$here/results"

if ! command -v hyperfine >/dev/null; then
    echo "== installing hyperfine (Debian)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y hyperfine >/dev/null
fi

bin="${LOOPVM_BIN:-}"
if [ -z "$bin" ]; then
    echo "== building loopvm (release)"
    (cd "$root" && cargo build --release --bin loopvm --quiet)
    bin="${CARGO_TARGET_DIR:-$root/target}/release/loopvm"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
rustc -O "$here/collatz.rs" -o "$tmp/collatz"
prog="$root/benches/workloads/collatz.lb"

# Both must print the same total.
want="$("$tmp/collatz" "$n")"
got="$("$bin" run "$prog" --arg "n=$n" --tier jit)"
if [ "$want" != "$got" ]; then
    echo "loopvm printed $got, rustc's build $want" >&2
    exit 1
fi

hyperfine -N --warmup 1 --runs "$runs" --export-json "$here/results/collatz_rustc.json" \
    -n rustc-O "$tmp/collatz $n" \
    -n loopvm-jit "$bin run $prog --arg n=$n --tier jit" >/dev/null

python3 - "$here/results/collatz_rustc.json" "$n" <<'PY'
import json, sys
r = {x["command"]: min(x["times"]) for x in json.load(open(sys.argv[1]))["results"]}
rs, vm = r["rustc-O"], r["loopvm-jit"]
print(f"Collatz 1..={int(sys.argv[2]):,}, best of each (whole process):")
print(f"  rustc -O     {rs * 1e3:8.1f} ms")
print(f"  loopvm jit   {vm * 1e3:8.1f} ms   ({vm / rs:.2f}x rustc -O)")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
