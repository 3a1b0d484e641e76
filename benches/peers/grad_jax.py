"""The JAX side of the derivative comparison (issue 5), CPU only.

`jax.value_and_grad` of the same `lax.scan` losses as
`benches/workloads/grad_{rnn,mlp}.lb` (loss = sum of the final carry), with
the same inputs (the formulas of `benches/grad.rs`), jit-compiled. Uses the
virtual environment of `benches/peers/run.sh` (benches/peers/.venv):

  benches/peers/.venv/bin/python benches/peers/grad_jax.py [OUT.jsonl]

Prints one JSON line per (cell, checkpoint, T, inputs):
  inputs "device": arguments already `jax.device_put`, result waited for with
                   `block_until_ready` (JAX's best case);
  inputs "host":   NumPy arguments in, NumPy results out (what
                   `Program::run` on loopvm's xla tier does: upload, run,
                   read back).
`checkpoint` wraps the scan body in `jax.checkpoint`, JAX's counterpart of
`scan(..., checkpoint: true)`. Times: best mean over 5 rounds, and the median
of all single calls, in milliseconds.
"""

import json
import os
import platform
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

H = 128
HM = 512
STEPS = [100, 1000]


def weights(n, mul):
    import numpy as np

    i = np.arange(n, dtype=np.int64)
    return ((((i * mul) % 1000) / 1000.0 - 0.5) * 0.2).astype(np.float32)


def inputs(n):
    import numpy as np

    j = np.arange(n, dtype=np.int64)
    return ((((j * 104729) % 997) / 997.0 - 0.5) * 0.1).astype(np.float32)


def args(cell, t):
    if cell == "rnn":
        return (weights(H * H, 7919).reshape(H, H), inputs(t * H).reshape(t, 1, H))
    return (
        weights(H * HM, 7919).reshape(H, HM),
        weights(HM * H, 6007).reshape(HM, H),
        inputs(t * HM).reshape(t, 1, HM),
    )


def make(cell, ck):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def wrap(body):
        return jax.checkpoint(body) if ck else body

    if cell == "rnn":

        def loss(w, xs):
            body = wrap(lambda h, x: (jnp.tanh(h @ w + x), 0))
            h, _ = lax.scan(body, jnp.zeros((1, H), jnp.float32), xs)
            return jnp.sum(h)

        return jax.jit(jax.value_and_grad(loss))

    def loss(w1, w2, xs):
        body = wrap(lambda h, x: (jnp.tanh(jnp.tanh(h @ w1 + x) @ w2), 0))
        h, _ = lax.scan(body, jnp.zeros((1, H), jnp.float32), xs)
        return jnp.sum(h)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def timing(f, rounds, reps):
    best, singles = float("inf"), []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            s = time.perf_counter()
            f()
            singles.append(time.perf_counter() - s)
        best = min(best, (time.perf_counter() - t0) / reps)
    singles.sort()
    return best, singles[len(singles) // 2]


def main():
    import jax
    import numpy as np

    out = open(sys.argv[1], "w") if len(sys.argv) > 1 else None
    meta = {
        "system": "jax",
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", "?"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "devices": [str(d) for d in jax.devices()],
    }
    print(json.dumps(meta), flush=True)
    if out:
        out.write(json.dumps(meta) + "\n")
    for cell in ["rnn", "mlp"]:
        for t in STEPS:
            host = args(cell, t)
            for ck in [False, True]:
                f = make(cell, ck)
                t0 = time.perf_counter()
                f(*host)[0].block_until_ready()
                compile_s = time.perf_counter() - t0
                dev = [jax.device_put(a) for a in host]
                reps = 10 if t >= 1000 else 50

                def on_device():
                    jax.block_until_ready(f(*dev))

                def on_host():
                    v, g = f(*host)
                    jax.tree_util.tree_map(np.asarray, (v, g))

                for name, fn in [("device", on_device), ("host", on_host)]:
                    fn()
                    best, median = timing(fn, 5, reps)
                    row = {
                        "system": "jax",
                        "cell": cell,
                        "checkpoint": ck,
                        "T": t,
                        "inputs": name,
                        "best_mean_ms": round(best * 1e3, 4),
                        "median_ms": round(median * 1e3, 4),
                        "first_call_s": round(compile_s, 3),
                    }
                    print(json.dumps(row), flush=True)
                    if out:
                        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
