"""JAX's side of benches/peers/devices/run.sh: the training loop of
rnn_dp.lb (20 SGD steps of an RNN, hidden 64, batch 256, 32 time steps) jitted
whole, on 1 device and on 4 CPU devices (XLA_FLAGS=
--xla_force_host_platform_device_count=4) with the batch split over a mesh
axis `data` (NamedSharding, PartitionSpec(None, "data")); prints the median
time of 5 runs after a warm-up and the collectives in the compiled module.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \\
        python rnn_dp_jax.py xs.npy ys.npy
"""

import re
import sys
import time

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def loss(w, u, b, v, xs, ys):
    def step(h, x):
        h2 = jnp.tanh(h @ w + x @ u + b)
        return h2, h2 @ v

    _, preds = jax.lax.scan(step, jnp.zeros((256, 64), jnp.float32), xs)
    return jnp.mean((preds - ys) ** 2.0)


def train(xs, ys):
    w = jnp.reshape(jnp.sin(jnp.arange(4096, dtype=jnp.float32) * 1.37), (64, 64)) * 0.1
    u = jnp.reshape(jnp.cos(jnp.arange(128, dtype=jnp.float32) * 2.11), (2, 64)) * 0.5
    b = jnp.zeros((64,), jnp.float32)
    v = jnp.sin(jnp.arange(64, dtype=jnp.float32) * 0.73 + 0.5) * 0.2

    def body(e, state):
        (w, u, b, v), losses = state
        l, (gw, gu, gb, gv) = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(w, u, b, v, xs, ys)
        return (w - 0.1 * gw, u - 0.1 * gu, b - 0.1 * gb, v - 0.1 * gv), losses.at[e].set(l)

    _, losses = jax.lax.fori_loop(0, 20, body, ((w, u, b, v), jnp.zeros((20,), jnp.float32)))
    return losses


def collectives(text):
    ops = re.findall(r"\b(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(?:-start)?\(", text)
    return {k: ops.count(k) for k in sorted(set(ops))}


def bench(f, xs, ys, label):
    compiled = f.lower(xs, ys).compile()
    out = compiled(xs, ys)
    out.block_until_ready()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        compiled(xs, ys).block_until_ready()
        times.append(time.perf_counter() - t)
    text = compiled.as_text()
    print(f"{label}: median {np.median(times) * 1e3:.1f} ms, loss[0] {float(out[0]):.6f} loss[-1] "
          f"{float(out[-1]):.6f}, whiles {len(re.findall(r' while[(]', text))}, collectives {collectives(text)}")


def main():
    xs = np.load(sys.argv[1])
    ys = np.load(sys.argv[2])
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    bench(jax.jit(train), jnp.asarray(xs), jnp.asarray(ys), "jax 1 device")
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    sx = jax.device_put(xs, NamedSharding(mesh, P(None, "data")))
    sy = jax.device_put(ys, NamedSharding(mesh, P(None, "data")))
    f = jax.jit(train, in_shardings=(NamedSharding(mesh, P(None, "data")),) * 2,
                out_shardings=NamedSharding(mesh, P()))
    bench(f, sx, sy, "jax 4 devices")


if __name__ == "__main__":
    main()
