#!/bin/sh
# Trains the character-level GPT of gpt.lb on the project's own docs and
# samples text from it. A few minutes on a 2-core machine.
#
#   examples/gpt/train.sh [OUT_DIR]          (default: target/gpt)
#
# Writes OUT_DIR/data/ (ids.npy, vocab.json), OUT_DIR/params/*.npy (the
# trained weights, by name), OUT_DIR/losses.npy, OUT_DIR/loss.svg (the loss
# curve against the unigram entropy) and OUT_DIR/sample.txt. Set LOOPVM to
# use another loopvm binary (default: target/release/loopvm, built if absent).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/gpt}
loopvm=${LOOPVM:-$root/target/release/loopvm}
if [ ! -x "$loopvm" ]; then
    (cd "$root" && cargo build --release)
fi
mkdir -p "$out"

echo "== data: the project's docs/*.md as characters"
python3 "$here/prepare.py" "$out/data"
entropy=$(cat "$out/data/entropy.txt")

echo "== training (loopvm run examples/gpt/gpt.lb --tier xla): XLA compiles the whole program first"
rm -rf "$out/run" && mkdir -p "$out/run"
start=$(date +%s)
"$loopvm" run "$here/gpt.lb" --tier xla --arg "data=@$out/data/ids.npy" --out "$out/run/" |
    while read -r line; do
        # gpt.lb prints `(i32 STEP, f32 LOSS)` every 50 steps, from inside the loop.
        set -- $(echo "$line" | tr -d '(),')
        echo "step $2  loss $4  ($(( $(date +%s) - start )) s)"
    done

# The result is the parameters in init's order, then the loss curve.
names="wte wpe ln1_g ln1_b wq wk wv wo ln2_g ln2_b w1 b1 w2 b2 lnf_g lnf_b"
rm -rf "$out/params" && mkdir -p "$out/params"
i=0
for n in $names; do
    mv "$out/run/$i.npy" "$out/params/$n.npy"
    i=$((i + 1))
done
mv "$out/run/$i.npy" "$out/losses.npy"
python3 "$here/report.py" plot "$out/losses.npy" "$entropy" "$out/loss.svg"
echo "loss curve: $out/loss.svg; parameters: $out/params/"

echo "== sampling (examples/gpt/sample.lb after gpt.lb's model)"
sed '/^# ---- training/,$d' "$here/gpt.lb" | cat - "$here/sample.lb" > "$out/sample_full.lb"
newline=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).index("\n"))' "$out/data/vocab.json")
args=""
for n in $names; do
    args="$args --arg $n=@$out/params/$n.npy"
done
# shellcheck disable=SC2086
"$loopvm" run "$out/sample_full.lb" --tier xla $args --arg "start=$newline" --arg seed=1 --out "$out/sample.npy"
python3 "$here/report.py" decode "$out/sample.npy" "$out/data/vocab.json" | tee "$out/sample.txt"
python3 -c '
import sys; sys.path.insert(0, sys.argv[1])
from report import read_npy
ys = read_npy(sys.argv[2]); tail = ys[-50:]
print("== loss: %.3f at the start, %.3f over the last 50 steps; unigram entropy of the text %.3f nats"
      % (ys[0], sum(tail) / len(tail), float(sys.argv[3])))' "$here" "$out/losses.npy" "$entropy"
