#!/bin/sh
# Issue 20's side-by-side: the data-parallel RNN training loop of rnn_dp.lb on
# loopvm's xla tier (1 device, 4 CPU devices with the batch split over
# `data`) and on JAX (the same, jitted; rnn_dp_jax.py). Run from the
# repository root after `cargo build --release`:  sh benches/peers/devices/run.sh
set -e
D=$(mktemp -d)
PY=${PY:-benches/peers/.venv/bin/python}
LOOPVM=${LOOPVM:-target/release/loopvm}
$PY benches/peers/devices/make_data.py "$D"
uptime
for n in 1 4; do
  shard=""
  [ "$n" -gt 1 ] && shard="--shard xs=1 --shard ys=1"
  rm -rf "$D/dump"
  $LOOPVM run benches/peers/devices/rnn_dp.lb --tier xla --no-cache --devices $n $shard \
    --arg xs=@"$D/xs.npy" --arg ys=@"$D/ys.npy" > /dev/null   # compile (warm-up)
  for k in 1 2 3; do
    XLA_FLAGS="--xla_dump_to=$D/dump --xla_dump_hlo_as_text" $LOOPVM run benches/peers/devices/rnn_dp.lb \
      --tier xla --devices $n $shard --stats --arg xs=@"$D/xs.npy" --arg ys=@"$D/ys.npy" 2>&1 \
      | grep -E "^f32|^xla: [0-9]+ regions" | sed "s/^/loopvm $n device(s): /"
  done
  f=$(ls "$D"/dump/*cpu_after_optimizations.txt | head -1)
  echo "loopvm $n device(s): whiles $(grep -c ' while(' "$f"), collectives:" \
    $(grep -oE '(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(-start)?\(' "$f" | sort | uniq -c | tr '\n' ' ')
done
XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu $PY benches/peers/devices/rnn_dp_jax.py "$D/xs.npy" "$D/ys.npy"
# JAX with the XLA flags loopvm gives the CPU plugin (hlo::policy: no FMA, no
# constant folder, no while-loop simplifier), to separate them from the rest.
echo "jax with loopvm's XLA flags:"
XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_cpu_max_isa=AVX --xla_disable_hlo_passes=constant_folding,simplify-while-loops" \
  JAX_PLATFORMS=cpu $PY benches/peers/devices/rnn_dp_jax.py "$D/xs.npy" "$D/ys.npy"
rm -rf "$D"
