"""Reference values of the gather, window and cumsum specs, from JAX.

Run: JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/ref_gather.py

Prints one `# expect:` line per spec program (tests/spec/ops/take.lb,
take_large.lb, take_grad_order.lb, windows.lb, cumsum.lb, one_hot.lb), in `loopvm run`'s format; each program
below mirrors its spec line by line. JAX 0.10.2 on CPU made the lines kept in
the specs.
"""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

F32, I32, I64 = jnp.float32, jnp.int32, jnp.int64


def fmt_float(v, dt):
    """A float as Rust's `{:?}` prints it (the shortest round trip)."""
    v = dt(v)
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "-0.0" if np.signbit(v) else "0.0"
    a = abs(float(v))
    if 1e-5 <= a < 1e16:
        s = np.format_float_positional(v, unique=True, trim="-")
        return s if "." in s else s + ".0"
    s = np.format_float_scientific(v, unique=True, trim="-")
    m, e = s.split("e")
    return f"{m}e{int(e)}"


def fmt_elems(a, dt):
    if a.ndim == 0:
        x = a.item()
        if a.dtype == np.bool_:
            return "true" if x else "false"
        if np.issubdtype(a.dtype, np.integer):
            return str(int(x))
        return fmt_float(x, dt)
    return "[" + ", ".join(fmt_elems(r, dt) for r in a) + "]"


def fmt(x):
    if isinstance(x, tuple):
        return "(" + ", ".join(fmt(v) for v in x) + ")"
    a = np.asarray(x)
    name = {np.float32: "f32", np.float64: "f64", np.int32: "i32", np.int64: "i64", np.bool_: "bool"}[a.dtype.type]
    dt = a.dtype.type
    if a.ndim == 0:
        return f"{name} {fmt_elems(a, dt)}"
    dims = ", ".join(str(d) for d in a.shape)
    return f"{name}[{dims}] {fmt_elems(a, dt)}"


def take(x, ids, axis=None):
    return jnp.take(x, jnp.asarray(ids), axis=axis, mode="clip")


def spec_take():
    x = jnp.array([0.0, 10.0, 20.0, 30.0, 40.0], F32)
    m = jnp.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], F32)
    table = jnp.arange(12, dtype=F32).reshape(4, 3) * F32(0.5)

    def step(acc, t):
        e = take(table, t, axis=0)
        return acc + e, e * F32(2.0)

    acc, rows = lax.scan(step, jnp.zeros(3, F32), jnp.array([3, -2, 0, 9, 1], I32))
    return (
        take(x, jnp.array([-1, -7, 0, 4, 5, 9], I32)),
        take(m, jnp.array([[-1, 2], [7, 1]], I32), axis=1),
        take(m, jnp.array(5, I32), axis=0),
        take(jnp.array([3, 1, 4, 1, 5], I32), jnp.array([4, 0], I64)),
        take(m, jnp.array([1, 0], I32), axis=-2),
        take(m, jnp.array([5, 2, -1, 3], I32)),
        acc,
        rows,
    )


def spec_take_large():
    table = jnp.arange(60, dtype=F32).reshape(20, 3) * F32(0.25)

    def step(acc, t):
        e = take(table, t, axis=0)
        return acc + e, e - acc

    acc, rows = lax.scan(step, jnp.zeros(3, F32), jnp.array([19, -1, 7, 25, 3], I32))
    data = jnp.arange(64, dtype=F32).reshape(32, 2)
    s = lax.fori_loop(0, 12, lambda i, s: s + lax.dynamic_slice(data, (i * 3, 0), (2, 2)), jnp.zeros((2, 2), F32))
    return (acc, rows, s)


def spec_take_grad_order():
    def loss(x):
        ids = jnp.array([0, 2, 0, -5, 9], I32)
        return jnp.sum(take(x, ids) * jnp.array([1e8, 1.0, 1.0, -1e8, 4.0], F32))

    def loss2(x):
        def step(s, t):
            return s + take(x, t) * (t.astype(F32) + F32(0.5)), 0

        s, _ = lax.scan(step, F32(0.0), jnp.array([2, 0, 1, 0, 7], I32))
        return s

    x = jnp.array([1.0, 2.0, 3.0], F32)
    return (jax.grad(loss)(x), jax.grad(loss2)(x))


def spec_windows():
    x = jnp.array([0.0, 10.0, 20.0, 30.0, 40.0], F32)
    sq = jnp.arange(9, dtype=F32).reshape(3, 3)
    data = jnp.arange(12, dtype=F32).reshape(6, 2)
    k = lax.fori_loop(0, 3, lambda i, k: k - 2, jnp.int32(0))

    def batches(data):
        return lax.fori_loop(
            0, 4, lambda i, acc: acc + lax.dynamic_slice(data, (i * 2, 0), (2, 2)) * (i + 1).astype(F32),
            jnp.zeros((2, 2), F32))

    return (
        lax.dynamic_slice(x, (jnp.int32(-2),), (2,)),
        lax.dynamic_slice(x, (jnp.int32(4),), (2,)),
        lax.dynamic_slice(x, (jnp.int32(-9),), (2,)),
        lax.dynamic_slice(x, (k,), (2,)),
        lax.dynamic_slice(sq, (jnp.int32(1), jnp.int32(7)), (2, 2)),
        lax.dynamic_update_slice(sq, jnp.full((2, 2), -1.0, F32), (jnp.int32(9), jnp.int32(-3))),
        lax.dynamic_update_slice(sq, jnp.array([[7.0, 8.0]], F32), (k.astype(I64), jnp.int64(2))),
        lax.dynamic_update_slice(jnp.array([1, 2, 3, 4, 5], I32), jnp.array([9, 9], I32), (k + 8,)),
        batches(data),
    )


def spec_cumsum():
    m = jnp.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], F32)
    big = jnp.array([1e8, 1.0, -1e8, 1.0], F32)

    def body(i, w):
        v = w * F32(0.5) + F32(1.0)
        return lax.cond(i % 2 == 0, lambda v: jnp.cumsum(v[::-1], axis=0)[::-1], jnp.cumsum, v)

    w = lax.fori_loop(0, 3, body, jnp.array([1.0, 2.0, 3.0], F32))
    return (
        lax.cumsum(m, axis=1, reverse=True),
        jnp.cumsum(m, axis=0),
        jnp.cumsum(m),
        jnp.cumsum(jnp.array([2147483647, 1, 5], I32), dtype=I32),
        jnp.cumsum(big),
        lax.cumsum(jnp.array([1.0, 2.0, 4.0, -8.0], F32), axis=0, reverse=True),
        w,
    )


def spec_one_hot():
    m = jnp.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], F32)
    return (
        jax.nn.one_hot(jnp.array([-1, 0, 2, 3], I32), 3, dtype=F32),
        jax.nn.one_hot(jnp.array([[1, 0], [5, 1]], I32), 2, dtype=I32),
        jnp.take_along_axis(m, jnp.array([[-1], [5]], I32), axis=1, mode="clip"),
        jnp.take_along_axis(m, jnp.array([[2, -4]], I32), axis=1, mode="clip"),
        jnp.take_along_axis(m, jnp.array([[1, 0, 1]], I32), axis=0, mode="clip"),
    )


if __name__ == "__main__":
    for name, f in [("take", spec_take), ("take_large", spec_take_large),
                    ("take_grad_order", spec_take_grad_order), ("windows", spec_windows), ("cumsum", spec_cumsum),
                    ("one_hot", spec_one_hot)]:
        print(f"tests/spec/ops/{name}.lb")
        print(f"# expect: {fmt(f())}")
    big = jnp.array([1e8, 1.0, -1e8, 1.0], F32)
    print("tests/spec/ops/cumsum_order.lb (loopvm adds from the end; JAX's order, for the comment):")
    print(f"# JAX: {fmt(lax.cumsum(big, axis=0, reverse=True))}")
