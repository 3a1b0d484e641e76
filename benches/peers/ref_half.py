"""Reference values for the bf16 and f16 spec programs (tests/spec/dtypes/
half_arith.lb, half_reduce_matmul.lb, half_loop.lb, half_grad.lb), computed
by JAX under `jax.jit` on CPU. Each line it prints is the `# expect:` header
of one spec, in loopvm's print format (a half float prints as the shortest
decimal of its f32 value, as Rust's `{:?}` of `f32` does; where two
shortest decimals are equally near, NumPy prints the even one and Rust the
upper, as 1.0039062 here against 1.0039063 in the spec: the same value).

JAX runs with XLA's excess precision off, as loopvm runs its XLA tier: by
default XLA CPU drops the rounding of a bf16 op whose result is converted to
f32 in the same fusion (`(a * b).astype(f32)` then gives the f32 product).
`half_grad`'s bf16 gradient is not pinned to JAX: JAX's backward pass orders
its ops otherwise and gives 0.24023438 and 0.020141602 where loopvm gives
0.23828125 and 0.020019531 (one bf16 ulp); the f32 and f16 gradients agree.

    JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/ref_half.py
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_allow_excess_precision=false").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

bf16, f16, f32, i32 = jnp.bfloat16, jnp.float16, jnp.float32, jnp.int32

NAMES = {np.dtype(ml_dtypes.bfloat16): "bf16", np.dtype(np.float16): "f16", np.dtype(np.float32): "f32",
         np.dtype(np.int32): "i32", np.dtype(np.bool_): "bool"}


def rust_f32(v):
    """Rust's `{:?}` of an f32."""
    v = np.float32(v)
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0 or 1e-4 <= abs(v) < 1e16:
        r = np.format_float_positional(v, unique=True, trim="0")
        return r if "." in r else r + ".0"
    m, e = np.format_float_scientific(v, unique=True, trim="-").split("e")
    return f"{m}e{int(e)}"


def show(x):
    x = np.asarray(x)
    name = NAMES[x.dtype]

    def el(v):
        if x.dtype == np.bool_:
            return "true" if v else "false"
        if name == "i32":
            return str(int(v))
        return rust_f32(np.float32(v))

    def nest(a):
        return el(a[()]) if a.ndim == 0 else "[" + ", ".join(nest(b) for b in a) + "]"

    dims = "" if x.ndim == 0 else "[" + ", ".join(str(d) for d in x.shape) + "]"
    return f"{name}{dims} {nest(x)}"


def expect(name, vals):
    print(f"{name}: # expect: (" + ", ".join(show(v) for v in vals) + ")")


def half_arith():
    a = jnp.array([1.5, -2.25, 100.7, 0.1], bf16)
    b = jnp.array([3.0, 0.7, -0.001, 7.9], bf16)
    f = jnp.array([1.00390625, 3.4e38, 1e-6, 65520.0, -70000.0, np.nan], f32)

    @jax.jit
    def fn(a, b, f):
        h, g = a.astype(f16), b.astype(f16)
        return (a + b, a - b, a * b, a / b, a < b, f.astype(bf16), f.astype(f16), (a * b).astype(f32),
                jnp.exp(a * bf16(0.5)) + jnp.sqrt(jnp.abs(b)), h * g + f16(1.5), jnp.tanh(h) / g,
                bf16(3.140625) * bf16(2))

    expect("half_arith", fn(a, b, f))


def half_reduce_matmul():
    x = jnp.array([[1.5, -2.25, 100.7, 0.1], [3.0, 0.7, -0.001, 7.9], [256.0, 1.0, 1.0, 1.0]], bf16)
    y = jnp.array([[1.0, 0.5], [1.0, -0.25], [1.0, 2.0], [1.0, 0.1]], bf16)
    v = jnp.array([256.0, 1.0, 1.0, 1.0, 1.0], bf16)

    @jax.jit
    def fn(x, y, v):
        w = v.astype(f16)
        return (x @ y, x.astype(f16) @ y.astype(f16), jnp.sum(x, axis=0), jnp.mean(x, axis=1), jnp.sum(v),
                jnp.sum(w), v @ v, jnp.max(x, axis=1), jnp.min(x, axis=0), jnp.argmax(x, axis=1).astype(i32),
                jnp.mean(v))

    expect("half_reduce_matmul", fn(x, y, v))


def half_loop():
    x = jnp.array([1.0, -3.5, 0.3], bf16)

    @jax.jit
    def fn(x):
        c = lax.fori_loop(0, 10, lambda i, c: c * bf16(1.0078125) + bf16(0.01), x)
        s = lax.fori_loop(0, 100, lambda i, s: s + f16(0.1), f16(0.0))
        p = lax.fori_loop(0, 5, lambda i, p: p * (x[0] + bf16(0.5)), bf16(1.0))
        return c, s, p

    expect("half_loop", fn(x))


def half_grad():
    w = jnp.array([0.5, -1.25, 2.0], bf16)
    x = jnp.array([1.5, 0.75, -0.3], bf16)

    def loss(w, x):
        h = jnp.tanh(w * x + bf16(0.5))
        return jnp.sum(h * h) / bf16(3.0)

    def ef(v):
        return jnp.sum(jnp.exp(v) * v)

    @jax.jit
    def fn(w, x):
        return (jax.grad(loss)(w, x), jax.grad(loss)(w.astype(f32), x.astype(f32)), jax.grad(ef)(x.astype(f16)))

    expect("half_grad", fn(w, x))


if __name__ == "__main__":
    half_arith()
    half_reduce_matmul()
    half_loop()
    half_grad()
