"""The JAX side of the XLA-tier comparison (issue 3), and the plot.

Run through `benches/peers/run.sh`, which makes the virtual environment,
runs this for JAX, runs loopvm's side (`benches/xla.rs` in report mode) and
plots both. Subcommands:

  measure OUT.json          compile time (lower + compile) and run time per
                            step of the RNN cell tanh(h @ w + x) at each N as
                            `lax.scan` and `lax.fori_loop` under `jax.jit`,
                            the unrolled form (a Python loop under `jax.jit`)
                            at N = 10 and 100, and the per-call overhead of a
                            tiny jitted function.
  peak-mem scan|unrolled N  one lower + compile in this process; prints one
                            JSON line with VmHWM (peak RSS) before and after.
  plot DIR OUT.svg          merges the rounds in DIR (jax.K.json,
                            loopvm.K.json: best figure per point) and the
                            memory probes (peak_mem.jsonl) into
                            DIR/summary.json, prints tables, and draws
                            compile time and peak memory against N.

The programs and data are the ones `benches/xla.rs` compiles: h starts at
zeros(1, 128), w: f32[128, 128], xs: f32[N, 1, 128], the same numbers.
"""

import json
import os
import platform
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

H = 128
ROLLED_N = [10, 100, 1000, 10000]
UNROLLED_N = [10, 100]


def rnn_args(n):
    import numpy as np

    i = np.arange(H * H, dtype=np.int64)
    w = (((i * 7919) % 1000) / 1000.0 - 0.5) * 0.2
    j = np.arange(n * H, dtype=np.int64)
    xs = (((j * 104729) % 997) / 997.0 - 0.5) * 0.1
    return w.astype(np.float32).reshape(H, H), xs.astype(np.float32).reshape(n, 1, H)


def make(form):
    """A fresh function object each call, so that no JAX cache is hit."""
    import jax.numpy as jnp
    from jax import lax

    if form == "scan":

        def rnn(w, xs):
            # As in rnn_cell.lb: the body returns (h', 0) and ys is dropped.
            h, _ = lax.scan(lambda h, x: (jnp.tanh(h @ w + x), 0), jnp.zeros((1, H), jnp.float32), xs)
            return h

    elif form == "fori_loop":

        def rnn(w, xs):
            def body(i, h):
                return jnp.tanh(h @ w + lax.dynamic_index_in_dim(xs, i, keepdims=False))

            return lax.fori_loop(0, xs.shape[0], body, jnp.zeros((1, H), jnp.float32))

    elif form == "unrolled":

        def rnn(w, xs):
            h = jnp.zeros((1, H), jnp.float32)
            for t in range(xs.shape[0]):
                h = jnp.tanh(h @ w + xs[t])
            return h

    else:
        raise ValueError(form)
    return rnn


def compile_once(form, w, xs):
    """(total, trace+lower, compile) seconds and the jitted function."""
    import jax

    jax.clear_caches()
    f = jax.jit(make(form))
    t0 = time.perf_counter()
    lowered = f.lower(w, xs)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return t2 - t0, t1 - t0, t2 - t1, f


def best_mean(rounds, reps, fn):
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best


def vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def warm_up():
    """Initialise the CPU backend (first compile of the process)."""
    import jax
    import jax.numpy as jnp

    jax.jit(lambda x: x + 1.0)(jnp.ones(4, jnp.float32)).block_until_ready()


def measure(out):
    import jax
    import numpy as np

    warm_up()
    result = {
        "system": "jax",
        "jax_version": jax.__version__,
        "jaxlib_version": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "python": platform.python_version(),
        "devices": [str(d) for d in jax.devices()],
        "rolled": {},
        "unrolled": [],
    }
    for form in ["scan", "fori_loop"]:
        rows = []
        for n in ROLLED_N:
            w, xs = rnn_args(n)
            runs = [compile_once(form, w, xs) for _ in range(3)]
            total, lower, comp, f = min(runs, key=lambda r: r[0])
            wd, xd = jax.device_put(w), jax.device_put(xs)
            got = np.asarray(f(wd, xd))
            want = np.asarray(jax.jit(make("scan"))(wd, xd)) if form != "scan" else got
            assert np.allclose(got, want, rtol=1e-4, atol=1e-4), form
            reps = max(3, min(200, 20000 // n))
            run = best_mean(3, reps, lambda: f(wd, xd).block_until_ready())
            rows.append(
                {
                    "n": n,
                    "compile_s": total,
                    "lower_s": lower,
                    "xla_compile_s": comp,
                    "runs": 3,
                    "run_s": run,
                    "us_per_step": run * 1e6 / n,
                }
            )
            print(f"[jax] {form:9} N = {n:>5}: compile {total * 1e3:.1f} ms, {run * 1e6 / n:.3f} us/step", file=sys.stderr)
        result["rolled"][form] = rows
    for n in UNROLLED_N:
        w, xs = rnn_args(n)
        runs = [compile_once("unrolled", w, xs) for _ in range(3)]
        total, lower, comp, _ = min(runs, key=lambda r: r[0])
        result["unrolled"].append({"n": n, "compile_s": total, "lower_s": lower, "xla_compile_s": comp, "runs": 3})
        print(f"[jax] unrolled  N = {n:>5}: compile {total * 1e3:.1f} ms", file=sys.stderr)

    tiny = jax.jit(lambda x: x + 1.0)
    host = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    dev = jax.device_put(host)
    assert np.asarray(tiny(host)).tolist() == [2.0, 3.0, 4.0, 5.0]
    dispatch = best_mean(5, 2000, lambda: tiny(dev).block_until_ready())
    round_trip = best_mean(5, 2000, lambda: np.asarray(tiny(host)))
    result["overhead_us"] = {"dispatch": dispatch * 1e6, "round_trip": round_trip * 1e6}
    print(f"[jax] overhead: dispatch {dispatch * 1e6:.2f} us, round trip {round_trip * 1e6:.2f} us", file=sys.stderr)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


def peak_mem(form, n):
    warm_up()
    w, xs = rnn_args(n)
    before = vm_hwm_kib()
    total, _, _, _ = compile_once(form, w, xs)
    after = vm_hwm_kib()
    mode = "rolled" if form == "scan" else "unrolled"
    print(
        json.dumps(
            {"system": "jax", "mode": mode, "n": n, "hwm_before_kib": before, "hwm_after_kib": after, "compile_s": total}
        )
    )


def load_rounds(d, system):
    import glob

    rounds = []
    for path in sorted(glob.glob(os.path.join(d, f"{system}.*.json"))):
        with open(path) as f:
            rounds.append(json.load(f))
    if not rounds:
        raise SystemExit(f"no {system}.*.json in {d}")
    return rounds


def summarise(d):
    """Every round of both systems merged: for each point, the best (lowest)
    figure over the rounds (the rounds alternate between the systems, so that
    both see the same background load); unrolled N = 1000 and peak memory
    from the one-process probes. Written to DIR/summary.json."""
    jax_rounds, lv_rounds = load_rounds(d, "jax"), load_rounds(d, "loopvm")
    with open(os.path.join(d, "peak_mem.jsonl")) as f:
        peaks = [json.loads(line) for line in f if line.strip()]

    def best(rows_per_round, key):
        out = {}
        for rows in rows_per_round:
            for r in rows:
                cur = out.get(r["n"])
                if cur is None or r[key] < cur[key]:
                    out[r["n"]] = dict(r)
        return out

    series = {}
    for form in ["scan", "fori_loop"]:
        comp = best([r["rolled"][form] for r in jax_rounds], "compile_s")
        run = best([r["rolled"][form] for r in jax_rounds], "run_s")
        series[f"jax_{form}"] = {n: {"compile_s": comp[n]["compile_s"], "us_per_step": run[n]["us_per_step"]} for n in comp}
    comp = best([r["rolled"] for r in lv_rounds], "compile_s")
    run = best([r["rolled"] for r in lv_rounds], "run_s")
    series["loopvm_rolled"] = {
        n: {"compile_s": comp[n]["compile_s"], "xla_compile_s": comp[n]["xla_compile_s"], "us_per_step": run[n]["us_per_step"]}
        for n in comp
    }
    for system, rounds in [("jax", jax_rounds), ("loopvm", lv_rounds)]:
        comp = best([r["unrolled"] for r in rounds], "compile_s")
        pts = {n: {"compile_s": v["compile_s"]} for n, v in comp.items()}
        for p in peaks:
            if p["system"] == system and p["mode"] == "unrolled" and p["n"] not in pts:
                pts[p["n"]] = {"compile_s": p["compile_s"], "runs": 1}
        series[f"{system}_unrolled"] = pts
    memory = {}
    for p in peaks:
        memory.setdefault(f"{p['system']}_{p['mode']}", {})[p["n"]] = {
            "hwm_before_mib": p["hwm_before_kib"] / 1024,
            "hwm_after_mib": p["hwm_after_kib"] / 1024,
        }
    overhead = {}
    for system, rounds in [("jax", jax_rounds), ("loopvm", lv_rounds)]:
        keys = rounds[0]["overhead_us"].keys()
        overhead[system] = {k: min(r["overhead_us"][k] for r in rounds) for k in keys}
    summary = {
        "jax_version": jax_rounds[0]["jax_version"],
        "loopvm_plugin": lv_rounds[0].get("plugin"),
        "loopvm_plugin_attributes": lv_rounds[0].get("plugin_attributes"),
        "rounds": {"jax": len(jax_rounds), "loopvm": len(lv_rounds)},
        "series": series,
        "peak_memory": memory,
        "overhead_us": overhead,
    }
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    return summary


def print_tables(s):
    ser = s["series"]
    print("| N | loopvm rolled compile | JAX scan compile | JAX fori_loop compile | loopvm unrolled | JAX unrolled |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in ROLLED_N:
        def c(key):
            v = ser.get(key, {}).get(n)
            return f"{v['compile_s'] * 1e3:.0f} ms" if v else "—"
        print(f"| {n} | {c('loopvm_rolled')} | {c('jax_scan')} | {c('jax_fori_loop')} | {c('loopvm_unrolled')} | {c('jax_unrolled')} |")
    print()
    print("| N | loopvm rolled µs/step | JAX scan µs/step | JAX fori_loop µs/step |")
    print("| ---: | ---: | ---: | ---: |")
    for n in ROLLED_N:
        def r(key):
            v = ser.get(key, {}).get(n)
            return f"{v['us_per_step']:.2f}" if v else "—"
        print(f"| {n} | {r('loopvm_rolled')} | {r('jax_scan')} | {r('jax_fori_loop')} |")
    print()
    print("| N | loopvm rolled | JAX scan | loopvm unrolled | JAX unrolled |  (VmHWM after one compile, MiB; before)")
    print("| ---: | ---: | ---: | ---: | ---: |")
    mem = s["peak_memory"]
    for n in ROLLED_N:
        def m(key):
            v = mem.get(key, {}).get(n)
            return f"{v['hwm_after_mib']:.0f} ({v['hwm_before_mib']:.0f})" if v else "—"
        print(f"| {n} | {m('loopvm_rolled')} | {m('jax_rolled')} | {m('loopvm_unrolled')} | {m('jax_unrolled')} |")
    print()
    print("overhead µs:", json.dumps(s["overhead_us"]))


def plot(d, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarise(d)
    print_tables(s)
    ser, mem = s["series"], s["peak_memory"]
    fig, (ax, am) = plt.subplots(1, 2, figsize=(12, 4.8))
    lines = [
        ("loopvm rolled (--tier xla)", "loopvm_rolled", "C0", "-", "o"),
        ("loopvm unrolled (emit --unroll)", "loopvm_unrolled", "C0", "--", "s"),
        ("JAX lax.scan", "jax_scan", "C1", "-", "o"),
        ("JAX lax.fori_loop", "jax_fori_loop", "C2", "-", "^"),
        ("JAX unrolled (Python loop)", "jax_unrolled", "C1", "--", "s"),
    ]
    for label, key, color, ls, marker in lines:
        pts = {int(n): v["compile_s"] for n, v in ser.get(key, {}).items()}
        ns = sorted(pts)
        ax.plot(ns, [pts[n] for n in ns], color=color, linestyle=ls, marker=marker, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trip count N")
    ax.set_ylabel("compile time, source to executable (s)")
    ax.set_title("RNN cell tanh(h @ w + x), h: f32[1,128], w: f32[128,128]", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    for label, key, color, ls, marker in [
        ("loopvm rolled", "loopvm_rolled", "C0", "-", "o"),
        ("loopvm unrolled", "loopvm_unrolled", "C0", "--", "s"),
        ("JAX lax.scan", "jax_rolled", "C1", "-", "o"),
        ("JAX unrolled", "jax_unrolled", "C1", "--", "s"),
    ]:
        pts = {int(n): v["hwm_after_mib"] for n, v in mem.get(key, {}).items()}
        ns = sorted(pts)
        am.plot(ns, [pts[n] for n in ns], color=color, linestyle=ls, marker=marker, label=label)
    am.set_xscale("log")
    am.set_xlabel("trip count N")
    am.set_ylabel("peak RSS (VmHWM) of a process that compiles once (MiB)")
    am.set_title("Peak memory, one process per point", fontsize=10)
    am.grid(True, which="both", alpha=0.3)
    am.legend(fontsize=8)
    fig.suptitle(f"loopvm (xla-cpu-pjrt plugin, PJRT C API 0.81) vs JAX {s['jax_version']}, CPU", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, metadata={"Date": None} if out.endswith(".svg") else None)
    print(f"wrote {out}", file=sys.stderr)


def main(argv):
    if len(argv) >= 2 and argv[0] == "measure":
        return measure(argv[1])
    if len(argv) >= 3 and argv[0] == "peak-mem":
        return peak_mem(argv[1], int(argv[2]))
    if len(argv) >= 3 and argv[0] == "plot":
        return plot(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
