"""JAX's values for the spec programs of reshape across shape variables (issue 14).

Mirrors, input for input (their `# args:`), `tests/spec/ops/reshape_shape_vars.lb`,
`tests/spec/ops/reshape_shape_vars_static.lb` and
`tests/spec/vmap/reshape_shape_vars.lb`, and prints each program's `# expect:`
line as `loopvm run --tier interp` prints it. CPU only, with the peers'
virtual environment:

  JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/ref_reshape.py

The inputs are small integers and halves, so every value is exact in f32.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ref_einsum import fmt  # noqa: E402


def expect(*xs):
    return "# expect: (" + ", ".join(fmt(np.asarray(x)) for x in xs) + ")"


def f32(v):
    return jnp.asarray(v, dtype=jnp.float32)


def ops():
    x = f32([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0], [9.0, 10.0], [11.0, 12.0]]])
    w = f32([[1.0, 0.5, -1.0], [2.0, -0.5, 1.0]])
    b, t, d = x.shape
    proj = lambda h, w: h @ w  # noqa: E731
    back = proj(x.reshape(b * t, d), w).reshape(b, t, -1)
    flat = x.reshape(-1)
    rows = x.reshape(b, t * d)

    def body(i, c):
        return (c.reshape(b * t, d) * 2.0).reshape(b, t, d)

    looped = jax.lax.fori_loop(0, 2, body, x)
    s, ys = jax.lax.scan(lambda c, r: (c + jnp.sum(r), r.reshape(t * d)), f32(0.0), x)
    g = jax.grad(lambda x: jnp.sum(proj(x.reshape(b * t, d), w) ** 2))(x)
    print("reshape_shape_vars.lb")
    print(expect(back, flat, rows, looped, s, ys, g))


def ops_static():
    x = f32([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    bb = f32([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    b, t = bb.shape
    print("reshape_shape_vars_static.lb")
    print(expect(x.reshape(b, t) + bb, x.reshape(3, 2), bb.reshape(t, b)))


def vmapped():
    x = f32([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]], [[9.0, 10.0], [11.0, 12.0]]])
    w = f32([[1.0, -1.0], [0.5, 2.0]])
    _, t, d = x.shape

    def roundtrip(r, w):
        return (r.reshape(t * d) * 2.0).reshape(t, -1) @ w

    flat = jax.vmap(lambda r: r.reshape(t * d))(x)
    rt = jax.vmap(roundtrip, in_axes=(0, None))(x, w)
    g = jax.grad(lambda w: jnp.sum(jax.vmap(roundtrip, in_axes=(0, None))(x, w) ** 2))(w)
    tot = jax.vmap(jnp.sum)(x)
    print("vmap/reshape_shape_vars.lb")
    print(expect(flat, rt, g, tot))


if __name__ == "__main__":
    ops()
    ops_static()
    vmapped()
