"""Call overhead of ``prog.run`` and the cost of a 64 MiB array in and out.

Run with a venv where the package is installed with a release build
(``pip install ./python``) and, for the JAX column, ``jax``:

    python python/bench/overhead.py

Prints, in one run: the mean time per call of a scalar program
(``x * 2.0 + 1.0`` on an ``f32`` scalar) through ``prog.run`` on the
interpreter, through the Rust API's ``Program::run`` in the same build
(``loopvm._native._time_rust_run``: argument tensors built once, result
dropped), and through ``jax.jit`` of the same function; then a 64 MiB
``f32`` array through an identity-like program (``x + 0.0``, so the result
is a new buffer) against ``np.copy`` of the same array.
"""

import platform
import sys
import time

import numpy as np

import loopvm
from loopvm import _native

N = 20_000
ROUNDS = 7


def best(f, n=N, rounds=ROUNDS):
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            f()
        ts.append((time.perf_counter() - t) / n)
    return min(ts)


def main():
    prog = loopvm.compile("fn main(x: f32) -> f32 { x * 2.0 + 1.0 }")
    x = np.float32(3.0)
    xa = np.array(3.0, np.float32)
    assert prog.run(x, tier="interp") == 7.0
    rows = []
    py_np = best(lambda: prog.run(xa, tier="interp"))
    py_scalar = best(lambda: prog.run(3.0, tier="interp"))
    rust = min(_native._time_rust_run(prog, (xa,), N) for _ in range(ROUNDS))
    rows.append(("prog.run(0-d f32 array), interp", py_np))
    rows.append(("prog.run(3.0) (Python float), interp", py_scalar))
    rows.append(("Rust Program::run, interp (same build)", rust))
    try:
        import jax

        f = jax.jit(lambda v: v * 2.0 + 1.0)
        f(x).block_until_ready()
        jx = best(lambda: f(x).block_until_ready())
        rows.append((f"jax.jit {jax.__version__} (f(x).block_until_ready())", jx))
        jx2 = best(lambda: np.asarray(f(x)))
        rows.append(("jax.jit, result as NumPy (np.asarray(f(x)))", jx2))
    except ImportError:
        rows.append(("jax.jit (JAX not installed)", float("nan")))
    print(f"python {platform.python_version()}, numpy {np.__version__}, loopvm {loopvm.__version__}")
    print("call overhead, scalar program (best of %d x %d calls):" % (ROUNDS, N))
    for name, t in rows:
        print(f"  {name:<50} {t * 1e6:8.2f} us")
    print(f"  Python above Rust: {(py_np - rust) * 1e6:.2f} us (array), {(py_scalar - rust) * 1e6:.2f} us (float)")

    big = np.random.default_rng(0).standard_normal(16 * 1024 * 1024, dtype=np.float32)  # 64 MiB
    ident = loopvm.compile("fn main(x: f32[N]) -> f32[N] { x + 0.0 }")
    out = ident.run(big, tier="interp")
    np.testing.assert_array_equal(out, big)
    assert out.flags.owndata or out.base is not None
    copy = best(lambda: np.copy(big), n=5, rounds=5)
    run = best(lambda: ident.run(big, tier="interp"), n=5, rounds=5)
    rust_big = min(_native._time_rust_run(ident, (big,), 5) for _ in range(5))
    conv = best(lambda: _native._time_rust_run(ident, (big,), 0), n=5, rounds=5)
    print("64 MiB f32 array (best of 5 x 5):")
    print(f"  np.copy                                            {copy * 1e3:8.2f} ms")
    print(f"  prog.run(x) for x + 0.0 (in, add, out)             {run * 1e3:8.2f} ms")
    print(f"  Rust Program::run of the same (add only)           {rust_big * 1e3:8.2f} ms")
    print(f"  argument conversion alone (one copy in)            {conv * 1e3:8.2f} ms")
    print(f"  in + out beyond the add: {(run - rust_big) * 1e3:.2f} ms = {(run - rust_big) / copy:.2f} x np.copy")
    print(sys.version.split()[0], platform.machine())


if __name__ == "__main__":
    main()
