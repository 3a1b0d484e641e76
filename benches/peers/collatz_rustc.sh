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

. "$here/host.sh"
need_debian hyperfine
loopvm_bin "$root"
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

read -r rs vm < <(best_of "$here/results/collatz_rustc.json" rustc-O loopvm-jit)
python3 - "$rs" "$vm" "$n" <<'PY'
import sys
rs, vm, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"Collatz 1..={n:,}, best of each (whole process):")
print(f"  rustc -O     {rs * 1e3:8.1f} ms")
print(f"  loopvm jit   {vm * 1e3:8.1f} ms   ({vm / rs:.2f}x rustc -O)")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
