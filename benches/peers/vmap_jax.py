"""JAX's side of the vmap benchmark (issue 18): the RNN cell scan over 64
sequences as jax.jit(jax.vmap(rnn, in_axes=(None, None, None, 0))), and 64
separate calls of jax.jit(rnn), on the numbers benches/vmap_rnn.rs makes.

Run: JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/vmap_jax.py
(or benches/peers/vmap_rnn.sh, which alternates it with loopvm's side).
Prints one JSON line: medians over 15 rounds in milliseconds, each timed
call with its arguments already on the device and its result blocked on, as
loopvm's `Program::run` reads its result back.
"""

import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

H, D, T, B, ROUNDS = 128, 32, 100, 64, 15


def data(n, a, m, s):
    i = np.arange(n, dtype=np.int64)
    return ((((i * a) % m) / m - 0.5) * s).astype(np.float32)


def rnn(w, u, b, xs):
    def cell(h, x):
        h2 = jnp.tanh(h @ w + x @ u + b)
        return h2, jnp.float32(0.0)

    h, _ = lax.scan(cell, jnp.zeros(H, jnp.float32), xs)
    return h


def main():
    w = jnp.asarray(data(H * H, 7919, 1000, 0.2).reshape(H, H))
    u = jnp.asarray(data(D * H, 104729, 997, 0.4).reshape(D, H))
    b = jnp.asarray(data(H, 31, 101, 0.1))
    seqs_np = data(B * T * D, 7727, 1009, 1.0).reshape(B, T, D)
    seqs = jnp.asarray(seqs_np)
    each = [jnp.asarray(seqs_np[k]) for k in range(B)]
    batched = jax.jit(jax.vmap(rnn, in_axes=(None, None, None, 0)))
    one = jax.jit(rnn)
    rb = np.asarray(batched(w, u, b, seqs))
    worst = max(float(np.max(np.abs(np.asarray(one(w, u, b, xs)) - rb[k]))) for k, xs in enumerate(each))
    tb, ts = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        batched(w, u, b, seqs).block_until_ready()
        tb.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        for xs in each:
            one(w, u, b, xs).block_until_ready()
        ts.append((time.perf_counter() - t0) * 1e3)
    mb, ms = float(np.median(tb)), float(np.median(ts))
    print(json.dumps({"system": "jax", "version": jax.__version__, "vmap_ms": round(mb, 3), "separate_ms": round(ms, 3),
                      "separate_over_vmap": round(ms / mb, 2), "max_abs_diff": worst}))


if __name__ == "__main__":
    main()
