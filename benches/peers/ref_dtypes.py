"""Reference values for the u32 and bit-op spec programs (tests/spec/ops/
u32_arith.lb, int_bits.lb, u32_casts.lb, threefry.lb), computed by JAX under
`jax.jit` on CPU with 64-bit types enabled. Each line it prints is the
`# expect:` header of one spec, in loopvm's print format, followed by the
`# args:` header the spec runs with.

    JAX_PLATFORMS=cpu benches/peers/.venv/bin/python benches/peers/ref_dtypes.py
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)

u8, u32, i32, i64, f32, f64 = jnp.uint8, jnp.uint32, jnp.int32, jnp.int64, jnp.float32, jnp.float64


def show(x):
    """One value as `loopvm run` prints it."""
    x = np.asarray(x)
    name = {np.dtype(np.uint8): "u8", np.dtype(np.uint32): "u32", np.dtype(np.int32): "i32", np.dtype(np.int64): "i64",
            np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.bool_): "bool"}[x.dtype]

    def el(v):
        if x.dtype == np.bool_:
            return "true" if v else "false"
        if x.dtype.kind == "f":
            v = x.dtype.type(v)
            if np.isnan(v):
                return "NaN"
            if np.isinf(v):
                return "inf" if v > 0 else "-inf"
            r = repr(float(v)) if x.dtype == np.float64 else np.format_float_positional(v, unique=True, trim="0") if abs(v) < 1e16 and (v == 0 or abs(v) >= 1e-4) else rust_f32(v)
            return r if ("." in r or "e" in r or "inf" in r) else r + ".0"
        return str(int(v))

    def nest(a):
        if a.ndim == 0:
            return el(a[()])
        return "[" + ", ".join(nest(b) for b in a) + "]"

    dims = "" if x.ndim == 0 else "[" + ", ".join(str(d) for d in x.shape) + "]"
    return f"{name}{dims} {nest(x)}"


def rust_f32(v):
    s = np.format_float_scientific(v, unique=True, trim="-")
    m, e = s.split("e")
    return f"{m}e{int(e)}"


def expect(*vals):
    return "# expect: (" + ", ".join(show(v) for v in vals) + ")"


def u32_arith():
    a = jnp.array([0, 1, 7, 2**31, 2**32 - 1], u32)
    b = jnp.array([0, 3, 2**32 - 1, 2, 1], u32)

    @jax.jit
    def f(a, b):
        h = lax.fori_loop(0, 3, lambda i, h: (h ^ a) * u32(16777619), jnp.full(5, 2166136261, u32))
        return (a + b, a - b, a * b, lax.div(a, b), lax.rem(a, b), a < b, jnp.maximum(a, b), jnp.minimum(a, b),
                -a, jnp.sum(a, dtype=u32), jnp.max(a), jnp.argmax(a).astype(i32), a ** u32(3), h)

    print(expect(*f(a, b)))
    print("# args: a=[0, 1, 7, 2147483648, 4294967295] b=[0, 3, 4294967295, 2, 1]")


def int_bits():
    x = jnp.array([-8, 8, -1, 2**31 - 1, -2**31], i32)
    s = jnp.array([0, 1, 31, 32, -1], i32)
    y = jnp.array([-8, 8, -1, 2**40], i64)
    t = jnp.array([63, 64, -5, 3], i64)
    u = jnp.array([0xFFFFFFF8, 8, 1, 2**31, 12345], u32)
    p = jnp.array([True, True, False, False])
    q = jnp.array([True, False, True, False])

    @jax.jit
    def f(x, s, y, t, u, p, q):
        us = s.astype(u32)
        r = lax.fori_loop(0, 4, lambda i, h: lax.shift_left(h, i32(3)) ^ lax.shift_right_arithmetic(h, i32(2)) ^ x, x)
        return (lax.shift_left(x, s), lax.shift_right_arithmetic(x, s), x & s, x | s, x ^ s, ~x,
                lax.shift_left(y, t), lax.shift_right_arithmetic(y, t),
                lax.shift_left(u, us), lax.shift_right_logical(u, us),
                (~u ^ lax.shift_right_logical(u, u32(1))) | (u & u32(255)),
                p & q, p | q, p ^ q, ~p, (x & 1) == 0, r)

    print(expect(*f(x, s, y, t, u, p, q)))
    print("# args: x=[-8, 8, -1, 2147483647, -2147483648] s=[0, 1, 31, 32, -1] y=[-8, 8, -1, 1099511627776]"
          " t=[63, 64, -5, 3] u=[4294967288, 8, 1, 2147483648, 12345] p=[true, true, false, false]"
          " q=[true, false, true, false]")


def u32_casts():
    fl = [-1.0, -0.5, 0.5, 3.7, 4294967295.0, 4294967296.0, 1e20, float("nan"), float("inf"), float("-inf")]
    f = jnp.array(fl, f32)
    d = jnp.array([-1.0, 0.99, 4294967295.5, 4294967296.0, 1e300, float("nan")], f64)
    i = jnp.array([-1, -2**31, 2**31 - 1, 300], i32)
    l = jnp.array([-1, 2**40 + 5, 2**32 - 1, -2**32], i64)
    u = jnp.array([0, 1, 2**31, 2**32 - 1], u32)

    @jax.jit
    def g(f, d, i, l, u):
        bc = lambda x, t: lax.bitcast_convert_type(x, t)
        acc = lax.fori_loop(0, 2, lambda k, acc: acc + f.astype(u32) + bc(f, u32), jnp.zeros(10, u32))
        return (f.astype(u32), d.astype(u32), i.astype(u32), l.astype(u32), u.astype(i32), u.astype(i64),
                u.astype(f32), u.astype(f64), u.astype(bool), bc(f, u32), bc(u, f32), bc(u, i32), bc(d[0:4], i64), acc)

    print(expect(*g(f, d, i, l, u)))
    print("# args: f=[-1.0, -0.5, 0.5, 3.7, 4294967295.0, 4294967296.0, 1e20, nan, inf, -inf]"
          " d=[-1.0, 0.99, 4294967295.5, 4294967296.0, 1e300, nan] i=[-1, -2147483648, 2147483647, 300]"
          " l=[-1, 1099511627781, 4294967295, -4294967296] u=[0, 1, 2147483648, 4294967295]")


def u8_ops():
    a = jnp.array([0, 1, 7, 128, 200, 255], u8)
    b = jnp.array([0, 3, 255, 2, 9, 1], u8)
    f = jnp.array([-1.0, 0.5, 3.7, 255.0, 255.9, 256.0, float("nan"), float("inf")], f32)
    i = jnp.array([-1, 300, 255, -256], i32)

    @jax.jit
    def g(a, b, f, i):
        h = lax.fori_loop(0, 4, lambda k, h: (h * u8(31) + a) ^ lax.shift_right_logical(h, u8(3)), a)
        return (a + b, a - b, a * b, lax.div(a, b), lax.rem(a, b), a < b, lax.shift_right_logical(a, b),
                lax.shift_left(a, b), a ^ b, ~a, jnp.max(a), jnp.sum(a, dtype=u8), f.astype(u8), i.astype(u8),
                a.astype(i32), a.astype(f32), h)

    print(expect(*g(a, b, f, i)))
    print("# args: a=[0, 1, 7, 128, 200, 255] b=[0, 3, 255, 2, 9, 1] f=[-1.0, 0.5, 3.7, 255.0, 255.9, 256.0, nan, inf]"
          " i=[-1, 300, 255, -256]")


def threefry():
    from jax._src.random.threefry2x32 import threefry_2x32
    key = jnp.array([0, 42], u32)
    x0 = jnp.array([0, 1, 2, 3], u32)
    x1 = jnp.array([4, 5, 6, 7], u32)
    y0, y1 = jax.jit(threefry_2x32)(key, jnp.stack([x0, x1]))
    print(expect(y0, y1))
    print("# args: key=[0, 42] x0=[0, 1, 2, 3] x1=[4, 5, 6, 7]")
    k2 = jnp.array([0xDEADBEEF, 0xFFFFFFFF], u32)
    x0 = jnp.array([0xFFFFFFFF, 2**31, 12345, 0], u32)
    x1 = jnp.array([0, 0xFFFFFFFF, 678910, 1], u32)
    y0, y1 = jax.jit(threefry_2x32)(k2, jnp.stack([x0, x1]))
    print(expect(y0, y1))
    print("# args: key=[3735928559, 4294967295] x0=[4294967295, 2147483648, 12345, 0] x1=[0, 4294967295, 678910, 1]")


if __name__ == "__main__":
    print(f"# JAX {jax.__version__}")
    for f in (u32_arith, int_bits, u32_casts, u8_ops, threefry):
        print(f"## {f.__name__}")
        f()
