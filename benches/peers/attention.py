"""Causal attention forward, [4, 8, 128, 64] in f32: loopvm `--tier xla`
against `jax.jit`, in one run (issue 14's goal: within 1.1x).

    JAX_PLATFORMS=cpu python benches/peers/attention.py [LOOPVM] [N] [ROUNDS]

LOOPVM defaults to target/release/loopvm, N to 41, ROUNDS to 5. Both sides
run benches/workloads/attention.lb's program: `n` passes chained through a
`fori_loop` (each pass's output is the next pass's queries), compiled once
with `n` a run-time argument. The time of one pass is (time at n = N - time
at n = 1) / (N - 1), so compilation, transfers and call overhead cancel;
each side's figure is the best of ROUNDS. loopvm's time is the `executions
... in T s` of `loopvm run --stats` (the persistent executable cache warm
after the first round), JAX's the compiled function's call to
`block_until_ready`. Beside the wall time it reports CPU time per pass
(loopvm: the child process's user + system time, JAX: `time.process_time`
around the call, all threads of each; the median of ROUNDS), the same
difference of n = N and n = 1: on a machine loaded by other work the wall
times of the two sides move by 2x between rounds, the CPU times by a few
percent. The script also checks that both sides' results at n = N agree.
"""
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", ".."))
PROGRAM = os.path.join(root, "benches", "workloads", "attention.lb")


def attention(q, k, v):
    s = jnp.einsum("bhqe,bhke->bhqk", q, k) * jax.lax.rsqrt(jnp.float32(64.0))
    pos = jnp.arange(128, dtype=jnp.int32)
    causal = pos.reshape(128, 1) >= pos
    return jnp.einsum("bhqk,bhke->bhqe", jax.nn.softmax(jnp.where(causal, s, -jnp.inf)), v)


@jax.jit
def program(q, k, v, n):
    return jax.lax.fori_loop(0, n, lambda _, q: attention(q, k, v), q)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def loopvm_run(loopvm, d, n):
    out = os.path.join(d, "out_%d.npy" % n)
    c = children_cpu()
    r = subprocess.run([loopvm, "run", PROGRAM, "--tier", "xla", "--stats", "--arg", "n=%d" % n,
                        "--out", out] + ["--arg=%s=@%s" % (x, os.path.join(d, x + ".npy")) for x in "qkv"],
                       capture_output=True, text=True, check=True)
    cpu = children_cpu() - c
    return float(re.search(r"executions \([^)]*\) in ([0-9.]+) s", r.stderr).group(1)), np.load(out), cpu


def main():
    loopvm = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "release", "loopvm")
    N = int(sys.argv[2]) if len(sys.argv) > 2 else 41
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((4, 8, 128, 64)).astype(np.float32) for _ in range(3))
    with tempfile.TemporaryDirectory() as d:
        for name, x in zip("qkv", (q, k, v)):
            np.save(os.path.join(d, name + ".npy"), x)
        jq, jk, jv = (jax.device_put(x) for x in (q, k, v))
        program(jq, jk, jv, 1).block_until_ready()  # compiles
        ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
        for _ in range(rounds):
            t1, _, c1 = loopvm_run(loopvm, d, 1)
            tn, ys, cn = loopvm_run(loopvm, d, N)
            ours.append((tn - t1) / (N - 1))
            ours_cpu.append((cn - c1) / (N - 1))
            t, c = time.perf_counter(), time.process_time()
            program(jq, jk, jv, 1).block_until_ready()
            j1, k1 = time.perf_counter() - t, time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            zs = program(jq, jk, jv, N).block_until_ready()
            jn, kn = time.perf_counter() - t, time.process_time() - c
            theirs.append((jn - j1) / (N - 1))
            theirs_cpu.append((kn - k1) / (N - 1))
        diff = float(np.max(np.abs(ys - np.asarray(zs))))
    flops = 2 * 2 * 4 * 8 * 128 * 128 * 64
    a, b = min(ours), min(theirs)
    ac, bc = float(np.median(ours_cpu)), float(np.median(theirs_cpu))
    print("jax %s | causal attention [4, 8, 128, 64] f32, one pass, best of %d rounds (N = %d)" % (jax.__version__, rounds, N))
    print("| | ms per pass (wall, best) | GFLOP/s (the two products) | CPU ms per pass (median) |")
    print("| --- | --- | --- | --- |")
    print("| loopvm --tier xla | %.3f | %.1f | %.3f |" % (a * 1e3, flops / a / 1e9, ac * 1e3))
    print("| jax.jit | %.3f | %.1f | %.3f |" % (b * 1e3, flops / b / 1e9, bc * 1e3))
    print("loopvm / JAX: %.2fx wall, %.2fx CPU; max |loopvm - JAX| after %d passes: %.2e" % (a / b, ac / bc, N, diff))


if __name__ == "__main__":
    main()
