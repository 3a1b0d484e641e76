"""JAX's values for the batched `@` and `einsum` spec programs (issue 14).

Mirrors, input for input, `tests/spec/ops/batched_matmul.lb`,
`tests/spec/ops/einsum.lb` (the inputs are the programs' `iota` formulas),
`tests/spec/ops/batched_matmul_shape_vars.lb` (its `# args:` too) and
`tests/spec/grad/fd_dot_general.lb` (JAX's gradient, its `want` argument), and
prints each program's `# expect:` line as `loopvm run --tier interp` prints
it. CPU only, with the peers' virtual environment:

  JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/ref_einsum.py

The inputs are multiples of 0.5 of at most 4 in magnitude, so every product
and sum is exact in f32 and the values do not depend on summation order.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)


def t(shape, seed, dtype=jnp.float32):
    """`(reshape(iota(f32, n), shape) * seed % 7 - 3) * 0.5` (for i32: no `* 0.5`)."""
    n = int(np.prod(shape))
    x = jnp.arange(n, dtype=dtype).reshape(shape)
    x = (x * seed) % 7 - 3
    return x * 0.5 if jnp.issubdtype(dtype, jnp.floating) else x


def fmt_scalar(v, dtype):
    if dtype in (np.float32, np.float64):
        v = float(v) if dtype == np.float64 else float(np.float32(v))
        if np.isnan(v):
            return "NaN"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        r = repr(np.float32(v).item()) if dtype == np.float32 else repr(v)
        if dtype == np.float32:
            # Rust's shortest round-trip spelling of an f32.
            r = np.format_float_positional(np.float32(v), unique=True, trim="0")
            if r.endswith("."):
                r += "0"
        return r
    return str(int(v))


def fmt(x):
    x = np.asarray(x)
    name = {np.float32: "f32", np.float64: "f64", np.int32: "i32", np.int64: "i64"}[x.dtype.type]

    def rec(a):
        if a.ndim == 0:
            return fmt_scalar(a, x.dtype.type)
        return "[" + ", ".join(rec(b) for b in a) + "]"

    if x.ndim == 0:
        return f"{name} {rec(x)}"
    return f"{name}[{', '.join(str(d) for d in x.shape)}] {rec(x)}"


def expect(*xs):
    # loopvm computes every product of `@` and `einsum` as a contraction that
    # accumulates from +0 (docs/semantics.md), also one without contracted
    # letters (`i,j->ij`), where jnp.einsum multiplies and keeps -0: the one
    # place where the printed value is not JAX's own, by the sign of a zero.
    xs = [np.where(np.asarray(x) == 0, np.zeros_like(np.asarray(x)), np.asarray(x)) for x in xs]
    return "# expect: (" + ", ".join(fmt(x) for x in xs) + ")"


def batched_matmul():
    a = t([2, 3, 4], 3)
    b = t([2, 4, 5], 5)
    w = t([4, 5], 2)
    m = t([3, 4], 4)
    c = t([2, 1, 3, 4], 3)
    d = t([3, 4, 2], 5)
    e = t([1, 3, 4], 2)
    f = t([2, 4, 2], 4)
    v = t([4], 3)
    ai = t([2, 2, 3], 3, jnp.int32)
    bi = t([1, 3, 2], 5, jnp.int32)
    # A loop: h := h @ u + 1 three times over a batch of two.
    h = t([2, 2, 3], 2)
    u = t([3, 3], 5) * 0.5
    for _ in range(3):
        h = jnp.matmul(h, u) + 1.0
    return expect(
        a @ b, a @ w, m @ b, c @ d, e @ f, v @ b, a @ v, ai @ bi, h
    )


def einsum():
    a = t([2, 3], 3)
    b = t([3, 4], 5)
    q = t([2, 3, 4], 2)
    k = t([2, 5, 4], 3)
    q4 = t([2, 2, 3, 4], 5)
    k4 = t([2, 2, 5, 4], 4)
    x = t([3], 2)
    y = t([4], 5)
    s = t([2, 3, 4], 4)
    ii = t([2, 3], 3, jnp.int32)
    ji = t([3, 2], 2, jnp.int32)
    # In a loop: acc := acc + einsum("ij,jk->ik", a, b) * i for i in 0..3.
    acc = jnp.zeros([2, 4], jnp.float32)
    for i in range(3):
        acc = acc + jnp.einsum("ij,jk->ik", a, b) * i
    return expect(
        jnp.einsum("ij,jk->ik", a, b),
        jnp.einsum("bqd,bkd->bqk", q, k),
        jnp.einsum("bhqd,bhkd->bhqk", q4, k4),
        jnp.einsum("ij->ji", a),
        jnp.einsum("ij->i", a),
        jnp.einsum("i,j->ij", x, y),
        jnp.einsum("ij,jk", a, b),
        jnp.einsum("bij->", s),
        jnp.einsum("bij,k->kb", s, y),
        jnp.einsum("ij,jk->ki", ii, ji),
        acc,
    )


def shape_vars():
    """`tests/spec/ops/batched_matmul_shape_vars.lb`: `main`'s arguments
    (`# args:`) and its result."""
    a = (jnp.arange(24).reshape(2, 1, 3, 4) % 5 - 2).astype(jnp.float32)
    b = (jnp.arange(40).reshape(5, 4, 2) % 3 - 1).astype(jnp.float32)
    q = (jnp.arange(24).reshape(2, 3, 4) % 7 - 3).astype(jnp.float32)
    k = (jnp.arange(40).reshape(2, 5, 4) % 4 - 2).astype(jnp.float32)
    ga = jax.grad(lambda x: jnp.sum((x @ b) * (x @ b)))(a)
    arg = lambda name, x: f"{name}=" + fmt(x).split("] ", 1)[1].replace(" ", "")
    args = "# args: " + " ".join(arg(n, x) for n, x in [("a", a), ("b", b), ("q", q), ("k", k)])
    return expect(a @ b, jnp.einsum("btd,bsd->bts", q, k), jnp.einsum("btd->bt", q), q @ b[0], ga) + "\n" + args


if __name__ == "__main__":
    print("batched_matmul.lb")
    print(batched_matmul())
    print("einsum.lb")
    print(einsum())


def fd_dot_general_f(x):
    """`f` of `tests/spec/grad/fd_dot_general.lb`."""
    a = x[0:12].reshape(2, 3, 2)
    w = x[12:18].reshape(2, 3)
    m = x[18:24].reshape(3, 2)
    c = x[24:30].reshape(1, 2, 3)
    p = a @ w
    q = m @ c
    r = jnp.einsum("bqd,bkd->bqk", a, a * 0.5 + 1.0)
    s = jnp.einsum("ij,jk->ik", m, w)
    u = jnp.einsum("bij,k->kb", a, x[0:3])
    v = x[0:12].reshape(2, 1, 3, 2) @ x[12:24].reshape(3, 2, 2)
    z = (p + q) @ s
    return jnp.sum(jnp.sin(z)) + jnp.sum(r * p) + jnp.sum(u * u) + jnp.sum(v * v) * 0.1


def fd_dot_general():
    x = (jnp.arange(30, dtype=jnp.float64) * 7 % 11 - 5) * 0.2
    g = jax.grad(fd_dot_general_f)(x)
    return "# args: want=[" + ", ".join(repr(float(v)) for v in g) + "]"


if __name__ == "__main__":
    print("batched_matmul_shape_vars.lb")
    print(shape_vars())
    print("fd_dot_general.lb (JAX's gradient)")
    print(fd_dot_general())
