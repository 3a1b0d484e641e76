"""Reference values of the vmap specs (tests/spec/vmap/), from JAX.

Run: JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/ref_vmap.py

Prints, per spec program, the `# args:` line (JAX's values, which the program
compares its own with) or the `# expect:` line (integers, compared exactly).
Each function below mirrors its spec line by line: tests/spec/vmap/
per_example_grads.lb, collatz.lb, rnn_out_axes.lb, grad_of_vmap.lb.
JAX 0.10.2 on CPU made the lines kept in the specs.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

F32 = jnp.float32


def fmt(a):
    """A float32 array as a loopvm literal (shortest round trip per element)."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        return np.format_float_positional(np.float32(a[()]), unique=True, trim="0")
    return "[" + ", ".join(fmt(x) for x in a) + "]"


def iota(n):
    return jnp.arange(n, dtype=F32)


# per_example_grads.lb and grad_of_vmap.lb
def loss(w, x, y):
    return jnp.sum((jnp.tanh(x @ w) - y) ** 2.0)


def data():
    w = jnp.reshape(jnp.sin(iota(12) * 1.3) * 0.5, (3, 4))
    xs = jnp.reshape(jnp.sin(iota(15) * 0.7), (5, 3))
    ys = jnp.reshape(jnp.cos(iota(20) * 0.3), (5, 4))
    return w, xs, ys


def per_example_grads():
    w, xs, ys = data()
    pe = jax.vmap(lambda x, y: jax.grad(loss)(w, x, y))(xs, ys)
    print("per_example_grads.lb: # args: want=" + fmt(pe))


def grad_of_vmap():
    w, xs, ys = data()

    def batch_loss(w, xs, ys):
        return jnp.sum(jax.vmap(loss, in_axes=(None, 0, 0))(w, xs, ys))

    g = jax.grad(batch_loss)(w, xs, ys)
    print("grad_of_vmap.lb: # args: want=" + fmt(g))


# collatz.lb
def collatz(n):
    def body(c):
        x, k = c
        return (jnp.where(x % 2 == 0, x // 2, 3 * x + 1), k + 1)

    return lax.while_loop(lambda c: c[0] != 1, body, (n, jnp.int32(0)))


def collatz_spec():
    starts = jnp.array([27, 97, 1, 6, 7, 871], dtype=jnp.int32)
    x, k = jax.vmap(collatz)(starts)
    xs = ", ".join(str(int(v)) for v in x)
    ks = ", ".join(str(int(v)) for v in k)
    print(f"collatz.lb: # expect: (i32[6] [{xs}], i32[6] [{ks}])")


# rnn_out_axes.lb
def rnn(w, u, b, xs):
    def cell(h, x):
        h2 = jnp.tanh(h @ w + x @ u + b)
        return h2, h2

    return lax.scan(cell, jnp.zeros(4, F32), xs)


def rnn_spec():
    w = jnp.reshape(jnp.sin(iota(16) * 0.9) * 0.4, (4, 4))
    u = jnp.reshape(jnp.cos(iota(12) * 1.7) * 0.6, (3, 4))
    b = jnp.sin(iota(4)) * 0.1
    seqs = jnp.reshape(jnp.sin(iota(90) * 0.37), (6, 5, 3))
    h, hs = jax.vmap(rnn, in_axes=(None, None, None, 0), out_axes=1)(w, u, b, seqs)
    print(f"rnn_out_axes.lb: # args: want_h={fmt(h)} want_hs={fmt(hs)}")


if __name__ == "__main__":
    per_example_grads()
    collatz_spec()
    rnn_spec()
    grad_of_vmap()
