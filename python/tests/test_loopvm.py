"""The Python package against the embedding API's behaviour (run by
`cargo test --workspace` through tests/python.rs, or `pytest python/tests`
in a venv where the package is installed)."""

import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import loopvm

ROOT = pathlib.Path(__file__).resolve().parents[2]
DTYPES = {
    "bool": np.bool_,
    "i32": np.int32,
    "i64": np.int64,
    "u32": np.uint32,
    "u8": np.uint8,
    "f32": np.float32,
    "f64": np.float64,
    "f16": np.float16,
}
TIERS = ["interp", "jit", "xla", "auto"]

DECAY = """fn main(xs: f32[T, 2], k: f32) -> (f32[2], f32[T, 2]) {
    scan(|c, x| (c * k + x, c * k + x), zeros(f32, [2]), xs)
}"""


@pytest.mark.parametrize("dt", list(DTYPES))
def test_every_dtype_in_and_out(dt):
    prog = loopvm.compile(f"fn main(x: {dt}[N], s: {dt}) -> ({dt}[N], {dt}) {{ (x, s) }}")
    x = np.array([1, 0, 1], dtype=DTYPES[dt])
    s = DTYPES[dt](1)
    a, b = prog.run(x, s, tier="interp")
    assert a.dtype == DTYPES[dt] and b.dtype == DTYPES[dt]
    assert a.shape == (3,) and b.shape == ()
    np.testing.assert_array_equal(a, x)
    assert b == s


@pytest.mark.parametrize("dt", ["i32", "i64", "u32", "f32", "f64"])
def test_arithmetic_results_own_their_buffer(dt):
    prog = loopvm.compile(f"fn main(x: {dt}[2, 3]) -> {dt}[2, 3] {{ x + x }}")
    x = np.arange(6, dtype=DTYPES[dt]).reshape(2, 3)
    y = prog.run(x)
    np.testing.assert_array_equal(y, 2 * x)
    assert y.flags.owndata or y.base is not None
    y[0, 0] = 7  # writable, owned by Python
    assert x[0, 0] == 0


def test_f16_rounds_each_op_like_numpy():
    prog = loopvm.compile("fn main(x: f16[3], y: f16[3]) -> (f16[3], f16) { (x * y + 1.0f16, sum(x)) }")
    x = np.array([1.0009765625, 300.0, -2.5], np.float16)
    y = np.array([1.0009765625, 300.0, 0.1], np.float16)
    for tier in TIERS:
        a, s = prog.run(x, y, tier=tier)
        assert a.dtype == np.float16 and s.dtype == np.float16
        # NumPy's float16 ops round after each op too; 300 * 300 overflows to inf.
        np.testing.assert_array_equal(a, x * y + np.float16(1.0))
        assert s == np.float16(x.astype(np.float32).sum())


def test_bf16_is_ml_dtypes_bfloat16():
    prog = loopvm.compile("fn main(x: bf16[2]) -> bf16[2] { x * 3.0bf16 }")
    try:
        import ml_dtypes
    except ImportError:
        # Without ml_dtypes NumPy has no bfloat16: a clear error, not a crash.
        with pytest.raises(TypeError, match="ml_dtypes"):
            prog.run([1.5, 2.0])
        return
    x = np.array([1.5, 1.0078125], ml_dtypes.bfloat16)
    y = prog.run(x)
    assert y.dtype == ml_dtypes.bfloat16
    # 1.0078125 * 3 = 3.0234375 lies halfway between two bf16s: to the even one.
    np.testing.assert_array_equal(y.astype(np.float32), [4.5, 3.03125])
    np.testing.assert_array_equal(y, (x.astype(np.float32) * 3).astype(ml_dtypes.bfloat16))
    np.testing.assert_array_equal(prog.run([1.5, 2.0]).astype(np.float32), [4.5, 6.0])


def test_u32_wraps_and_shifts_like_numpy():
    prog = loopvm.compile("fn main(x: u32[4], s: u32[4]) -> (u32[4], u32[4]) { (x * 3 + 1, x >> s) }")
    x = np.array([0, 1, 2**31, 2**32 - 1], dtype=np.uint32)
    s = np.array([0, 1, 31, 3], dtype=np.uint32)
    for tier in TIERS:
        a, b = prog.run(x, s, tier=tier)
        assert a.dtype == np.uint32 and b.dtype == np.uint32
        np.testing.assert_array_equal(a, x * np.uint32(3) + np.uint32(1))
        np.testing.assert_array_equal(b, x >> s)


def test_tuples_shape_variables_and_keywords():
    prog = loopvm.compile(DECAY, "decay.lb")
    xs = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    last, states = prog.run(xs, 0.5)
    np.testing.assert_allclose(last, [6.75, 8.5])
    assert states.shape == (3, 2)
    last2, _ = prog.run(k=0.5, xs=xs)
    np.testing.assert_array_equal(last, last2)
    sig = prog.signature
    assert str(sig) == "fn main(xs: f32[T, 2], k: f32) -> (f32[2], f32[T, 2])"
    assert sig.names == ("xs", "k")
    assert sig["xs"] == loopvm.TensorType("f32", ("T", 2))
    assert sig.params[1].type.shape == ()
    assert isinstance(sig.result, tuple) and sig.result[1].shape == ("T", 2)


def test_tuple_parameter_and_nested_result():
    prog = loopvm.compile("fn main(p: (i32, f64[2])) -> (i32, (f64[2],)) { let (a, b) = p; (a, (b,)) }")
    a, (b,) = prog.run((3, [1.5, 2.5]))
    assert a == 3 and a.shape == () and a.dtype == np.int32
    np.testing.assert_array_equal(b, [1.5, 2.5])


def test_scalars_lists_and_array_likes():
    prog = loopvm.compile("fn main(x: f64[2, 2], n: i64, b: bool) -> (f64[2, 2], i64, bool) { (x, n, b) }")
    x, n, b = prog.run([[1, 2], [3, 4]], 5, True)
    assert x.dtype == np.float64 and n.dtype == np.int64 and b.dtype == np.bool_

    class Like:
        def __array__(self, dtype=None, copy=None):
            return np.ones((2, 2))

    x, _, _ = prog.run(Like(), np.int64(2), np.bool_(False))
    np.testing.assert_array_equal(x, np.ones((2, 2)))
    # non-contiguous views are read in logical order
    big = np.arange(16, dtype=np.float64).reshape(4, 4)
    x, _, _ = prog.run(big[::2, ::2], 1, False)
    np.testing.assert_array_equal(x, big[::2, ::2])


def test_dlpack_input():
    prog = loopvm.compile("fn main(x: f32[3]) -> f32[3] { x * 2.0 }")

    class OnlyDlpack:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    np.testing.assert_array_equal(prog.run(OnlyDlpack(np.ones(3, np.float32))), [2, 2, 2])


def test_wrong_dtype_and_shape_name_the_parameter():
    prog = loopvm.compile(DECAY)
    with pytest.raises(TypeError, match="`xs` must be f32\\[T, 2\\], got an array of i32\\[2, 2\\]"):
        prog.run(np.zeros((2, 2), np.int32), 1.0)
    with pytest.raises(ValueError, match="`xs`"):
        prog.run(np.zeros((2, 3), np.float32), 1.0)
    with pytest.raises(TypeError, match="`k` must be f32, got Python bool"):
        prog.run(np.zeros((2, 2), np.float32), True)
    with pytest.raises(TypeError, match="missing argument `k`"):
        prog.run(np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="no parameter `q`"):
        prog.run(np.zeros((2, 2), np.float32), 1.0, q=1)
    with pytest.raises(TypeError, match="got an object of type object"):
        prog.run(object(), 1.0)
    i32 = loopvm.compile("fn main(n: i32) -> i32 { n }")
    with pytest.raises(ValueError, match="`n`"):
        i32.run(2**40)
    with pytest.raises(TypeError, match="`n` must be i32, got Python float"):
        i32.run(1.5)
    with pytest.raises(ValueError, match="unknown tier"):
        i32.run(1, tier="gpu")


@pytest.mark.parametrize("tier", TIERS)
def test_every_tier(tier):
    prog = loopvm.compile("fn main(n: i32, x: f32[64]) -> (i32, f32[64]) {\n"
                          "  (fori_loop(0, n, |i, acc| acc + 1, 0), fori_loop(0, 3, |i, a| a * 2.0, x)) }")
    (count, y), stats = prog.run(2000, np.ones(64, np.float32), tier=tier, stats=True)
    assert count == 2000
    np.testing.assert_array_equal(y, np.full(64, 8, np.float32))
    assert isinstance(stats["loops"], list) and "elapsed" in stats
    if tier != "xla":
        assert stats["ops"] > 0
    if tier == "xla":
        assert stats["xla_executions"] > 0


def test_diff_emit_dis_plugins_format():
    prog = loopvm.compile(DECAY)
    xs = np.ones((3, 2), np.float32)
    d = prog.diff(xs, 0.5)
    assert isinstance(d, dict) and d.ok
    assert set(d) == {"interp", "jit", "xla", "auto"}
    assert d["interp"]["reference"] and "(reference)" in str(d)
    hlo = prog.emit(xs, 0.5)
    assert "stablehlo" in hlo and "func.func" in hlo
    with pytest.raises(loopvm.RunError, match="give arguments to fix its shape"):
        prog.emit()
    assert "fn main" in prog.dis()
    assert prog.functions == ["main"]
    assert any(p["status"] == "ok" for p in loopvm.plugins())  # the xla tier installed the CPU plugin
    assert loopvm.format(prog.run(xs, 0.5)) == "(f32[2] [1.75, 1.75], f32[3, 2] [[1.0, 1.0], [1.5, 1.5], [1.75, 1.75]])"


def test_compile_errors_carry_line_and_column(tmp_path):
    with pytest.raises(loopvm.CompileError) as ei:
        loopvm.compile("fn main() -> bool {\n    1 }", "broken.lb")
    e = ei.value
    assert str(e) == "broken.lb:2:5: cannot use integer literal 1 as bool"
    assert (e.line, e.col) == (2, 5)
    assert "^" in e.render() and "broken.lb:2:5" in e.render()
    assert isinstance(e, loopvm.Error)
    f = tmp_path / "bad.lb"
    f.write_text("fn main() -> i32 { nope }")
    with pytest.raises(loopvm.CompileError, match=re.escape(str(f)) + ":1:20"):
        loopvm.load(str(f))
    with pytest.raises(OSError):
        loopvm.load(str(tmp_path / "missing.lb"))


def test_load_source_and_bytecode(tmp_path):
    prog = loopvm.load(ROOT / "examples/first.lb")
    np.testing.assert_array_equal(prog.run(), [51])
    lbc = tmp_path / "first.lbc"
    lbc.write_bytes(prog.to_bytecode())
    np.testing.assert_array_equal(loopvm.load(str(lbc)).run(tier="xla"), [51])
    bad = tmp_path / "bad.lbc"
    bad.write_bytes(prog.to_bytecode()[:12])
    with pytest.raises(loopvm.CompileError):
        loopvm.load(bad)


LOOP = "fn main(n: i32) -> i32 { fori_loop(0, n, |i, acc| acc + 1, 0) }"


@pytest.mark.parametrize("tier", TIERS)
def test_limits(tier):
    prog = loopvm.compile(LOOP)
    with pytest.raises(loopvm.LimitError, match="step limit"):
        prog.run(10**7, tier=tier, max_steps=1000)
    with pytest.raises(loopvm.LimitError, match="time limit"):
        prog.run(2**31 - 1, tier=tier, timeout=0.05)
    big = loopvm.compile("fn main(n: i32) -> f32[1000, 1000] { zeros(f32, [1000, 1000]) + 1.0 }")
    with pytest.raises(loopvm.LimitError, match="memory limit"):
        big.run(1, tier=tier, max_memory=1000)
    assert issubclass(loopvm.LimitError, loopvm.RunError)


@pytest.mark.parametrize("tier", TIERS)
def test_ctrl_c_interrupts_a_long_run(tier):
    """SIGINT during a run (the GIL released) stops it with KeyboardInterrupt,
    on every tier, and the next run is not disturbed."""
    import signal

    prog = loopvm.compile(LOOP)
    prog.run(10, tier=tier)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    t = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            prog.run(2**31 - 1, tier=tier)
    finally:
        timer.cancel()
    assert 0.3 <= time.perf_counter() - t < 30
    assert prog.run(1000, tier=tier) == 1000


def test_a_run_error_that_is_not_a_limit():
    """Running out of memory (an allocation the machine refuses) is a
    RunError but not a LimitError, and names the op."""
    prog = loopvm.compile("fn main(n: i32) -> f32 { sum(zeros(f32, [100000, 100000, 100]) + 1.0) }")
    with pytest.raises(loopvm.RunError, match="out of memory") as e:
        prog.run(1, tier="interp")
    assert not isinstance(e.value, loopvm.LimitError)


def test_two_threads_run_at_once():
    """The GIL is released while a program runs: two threads' runs overlap
    (on one core as on two), and on two cores take about one run's time."""
    prog = loopvm.compile(LOOP)
    # Long enough (about 0.1 s a run or more) that the threads' start skew
    # on a loaded machine is small beside a run.
    n = 2_000_000
    prog.run(1000, tier="interp")

    def one():
        t = time.perf_counter()
        prog.run(n, tier="interp")
        return time.perf_counter() - t

    single = min(one() for _ in range(2))
    spans = {}

    def worker(k):
        t0 = time.perf_counter()
        prog.run(n, tier="interp")
        spans[k] = (t0, time.perf_counter())

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    both = time.perf_counter() - t0
    (a0, a1), (b0, b1) = spans[0], spans[1]
    # Held GIL: the second run could only start after the first had ended.
    assert b0 < a1 and a0 < b1, spans
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap > 0.5 * single, (overlap, single)
    print(f"one run {single * 1e3:.1f} ms, two threads {both * 1e3:.1f} ms ({both / single:.2f}x)")
    # Two cores free: the pair takes about one run's time. On a loaded
    # machine (other builds) the wall time says nothing; the overlap above
    # still shows the GIL released.
    if (os.cpu_count() or 1) >= 2 and os.getloadavg()[0] < (os.cpu_count() or 1) - 0.5:
        assert both < 1.6 * single, (both, single)


def test_no_panic_reaches_python():
    # A deep tuple type and huge shapes go through the same guarded path;
    # every failure is a Python exception of loopvm's, never a PanicException.
    q = loopvm.compile("fn main(x: f32[N]) -> f32[N] { x }")
    np.testing.assert_array_equal(q.run(np.zeros(0, np.float32)), np.zeros(0, np.float32))
    with pytest.raises(Exception) as ei:
        q.run(np.zeros((2, 2), np.float32))
    assert type(ei.value).__name__ != "PanicException"


def test_jax_arrays_as_inputs():
    jnp = pytest.importorskip("jax.numpy")
    prog = loopvm.compile(DECAY)
    last, _ = prog.run(jnp.ones((3, 2), jnp.float32), np.float32(0.5))
    np.testing.assert_allclose(last, [1.75, 1.75])


def spec_files():
    return sorted((ROOT / "tests/spec/seed").glob("*.lb"))


def header(src, key):
    return [l.split(":", 1)[1].strip() for l in src.splitlines() if l.startswith(f"# {key}:")]


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
@pytest.mark.parametrize("tier", TIERS)
def test_spec_seed_programs_give_the_cli_values(path, tier):
    src = path.read_text()
    (expect,) = header(src, "expect")
    args = header(src, "args")
    prog = loopvm.load(path)
    arrays = prog._cli_args(args[0].split(" ") if args else [])
    got = prog.run(*arrays, tier=tier)
    if tier == "interp":
        assert loopvm.format(got) == expect
    else:
        ref = prog.run(*arrays, tier="interp")
        assert loopvm.format(got) == loopvm.format(ref)


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
def test_python_m_loopvm_run_mirrors_the_cli(path):
    (expect,) = header(path.read_text(), "expect")
    out = subprocess.run([sys.executable, "-m", "loopvm", "run", str(path), "--tier", "interp"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expect


def test_python_m_loopvm_errors_and_args(tmp_path):
    f = tmp_path / "bad.lb"
    f.write_text("fn main() -> bool {\n    1 }")
    out = subprocess.run([sys.executable, "-m", "loopvm", "run", str(f)], capture_output=True, text=True)
    assert out.returncode == 1 and "cannot use integer literal 1 as bool" in out.stderr and "^" in out.stderr
    cs = ROOT / "examples/cumsum_scan.lb"
    out = subprocess.run([sys.executable, "-m", "loopvm", "run", str(cs), "--arg", "a=[[1,2],[3,4],[5,6]]",
                          "--format", "json"], capture_output=True, text=True, check=True)
    assert '"dtype"' in out.stdout


def test_help_is_useful():
    assert "source" in loopvm.compile.__doc__
    assert "tier" in loopvm.Program.run.__doc__


DATA_PARALLEL = """fn main(x: f32[8, 4], w: f32[4, 3]) -> (f32, f32[8, 3]) {
    let y = tanh(shard(x, axis: 0) @ w);
    (sum(y * y), y)
}"""


def test_several_devices():
    # Issue 20: the xla tier partitioned over 4 CPU devices, `x` split along
    # its batch axis, against the interpreter (partitioned float tolerance).
    p = loopvm.compile(DATA_PARALLEL)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    want = p.run(x, w, tier="interp")
    meshes = [
        dict(devices=4, shard={"x": (0, "data")}),
        dict(devices=4, mesh=(2, 2), shard={"x": (0, "data"), "w": (0, "model")}),
    ]
    for kw in meshes:
        got = p.run(x, w, tier="xla", **kw)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    with pytest.raises(Exception, match=r"argument `x` does not split evenly.*mesh data=3"):
        p.run(x, w, tier="xla", devices=3, shard={"x": (0, "data")})
