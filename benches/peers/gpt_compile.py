"""Issue 15's headline: compile time, time per step and peak memory of one
GPT training step against the number of layers L, loopvm against JAX 0.10.

    JAX_PLATFORMS=cpu python benches/peers/gpt_compile.py [LOOPVM] [L ...]

LOOPVM defaults to target/release/loopvm; L to 2 8 32 64. Environment:
GPT_UNROLLED_MAX (default 32): the largest L at which the unrolled forms
(loopvm's and JAX's Python loop) are compiled, since they grow with L (JAX's
Python loop took 270 s at L = 64 here); GPT_EMIT_UNROLL_MAX (default 8): the
largest L for `loopvm emit --unroll` (every loop unrolled, threefry's and
the training loop's too); GPT_STEPS (default 1001): the steps of the longer
run of the per-step measurement; GPT_TORCH=0 skips PyTorch/XLA; GPT_ROUNDS (default 3): runs of each
program of the per-step measurement, the best taken; GPT_SVG: where to write the plot
(default: no plot).

The model is examples/gpt/gpt.lb's code (the same file, its configuration
section replaced), sized as the issue's reference: batch 2, context 8,
width 16, 2 heads, MLP 64, vocabulary 16. "One training step" is the
program `init` + one step of the training loop (batch, value_and_grad,
Adam) on both sides. Every figure comes from a fresh child process, so the
peak memory is that process's high-water mark (`ru_maxrss` of `wait4`):

- loopvm rolled: `loopvm emit --compile` of the program (the layers in one
  `scan`); compile time is the plugin's `PJRT_Client_Compile`, emission
  (the Rust part) is given beside it.
- loopvm unrolled layers: the same with the layer `scan` given `unroll: L`
  (one copy of the body per layer, forward and backward), compiled through
  the same PJRT client, as JAX's Python loop over layers.
- loopvm emit --unroll: every loop with a static trip count unrolled.
- JAX: `jax.jit(f).lower(data).compile()`, with `lax.scan` over layers (the
  block under `jax.checkpoint`, as gpt.lb's `checkpoint: true`) and with a
  Python loop over layers.
- PyTorch/XLA (when `torch_xla` is installed in the same environment:
  `pip install -r benches/peers/requirements-torch.txt`): the same GPT as a
  `torch.nn` module on PyTorch/XLA's CPU device (`PJRT_DEVICE=CPU`), one
  step of forward, backward and `torch.optim.Adam`, the layers applied by
  `torch_xla.experimental.scan_layers` or by a Python loop; its compile
  time is XLA's `CompileTime` metric.
- Time per step: the program with S training steps in a `fori_loop` on
  both sides, run once compiled; (time at S = GPT_STEPS - time at S = 1) /
  (GPT_STEPS - 1), so compilation, init and transfers cancel; each time is
  the best of GPT_ROUNDS runs. loopvm's time is the `executions ... in T s`
  of `loopvm run --tier xla --stats` (its executable cache warm after the
  first run), JAX's the call of the compiled function to
  `block_until_ready`; the peak memory is that of loopvm's first run
  (compiling included) and of JAX's process.
"""
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", ".."))

V, T, D, H, E, F, B = 16, 8, 16, 2, 8, 64, 2
TEXT = "the quick brown fox jumps over the lazy dog; a loop compiled once, as a loop. "


def lb_source(L, steps=1, unroll_layers=False):
    src = open(os.path.join(root, "examples", "gpt", "gpt.lb")).read()
    src = src[: src.index("# ---- configuration")]
    scan = "scan(|x, w| (block(x, w), ()), x, layers, checkpoint: true)"
    assert scan in src, "gpt.lb's layer scan changed: update gpt_compile.py"
    if unroll_layers:
        src = src.replace(scan, scan[:-1] + ", unroll: %d)" % L)
    return src + """
fn init(k: u32[2]) {
    let ks = split(k, 8);
    let depth = rsqrt(2.0 * %(L)d.0);
    let layers = (ones(f32, [%(L)d, %(D)d]), zeros(f32, [%(L)d, %(D)d]),
                  0.02 * normal(ks[2], f32, [%(L)d, %(H)d, %(D)d, %(E)d]),
                  0.02 * normal(ks[3], f32, [%(L)d, %(H)d, %(D)d, %(E)d]),
                  0.02 * normal(ks[4], f32, [%(L)d, %(H)d, %(D)d, %(E)d]),
                  0.02 * depth * normal(ks[5], f32, [%(L)d, %(H)d, %(E)d, %(D)d]),
                  ones(f32, [%(L)d, %(D)d]), zeros(f32, [%(L)d, %(D)d]),
                  0.02 * normal(ks[6], f32, [%(L)d, %(D)d, %(F)d]), zeros(f32, [%(L)d, %(F)d]),
                  0.02 * depth * normal(ks[7], f32, [%(L)d, %(F)d, %(D)d]), zeros(f32, [%(L)d, %(D)d]));
    (0.02 * normal(ks[0], f32, [%(V)d, %(D)d]), 0.02 * normal(ks[1], f32, [%(T)d, %(D)d]), layers,
     ones(f32, [%(D)d]), zeros(f32, [%(D)d]))
}

fn main(data: i32[N]) {
    let ks = split(key(0), 2);
    let (_, losses) = train(data, init(ks[0]), zeros(f32, [%(S)d]), zeros(i32, [%(B)d, %(T)d]), ks[1], 3e-3,
                            1000000);
    losses
}
""" % dict(L=L, V=V, T=T, D=D, H=H, E=E, F=F, B=B, S=steps)


def child(cmd, env=None):
    """Runs `cmd`; its stdout and stderr, and its peak memory in MiB."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(), err.read().decode()
    if status != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), status, e[-2000:]))
    return o, e, usage.ru_maxrss / 1024.0


def loopvm_compile(loopvm, d, data_path, L, variant):
    p = os.path.join(d, "gpt_%s_L%d.lb" % (variant, L))
    open(p, "w").write(lb_source(L, unroll_layers=(variant == "layers")))
    cmd = [loopvm, "emit", p, "--arg", "data=@" + data_path, "--compile"]
    if variant == "all":
        cmd.append("--unroll")
    _, err, mib = child(cmd)
    m = re.search(r"emitted (\d+) bytes in ([0-9.]+) s; compiled by \S+ in ([0-9.]+) s", err)
    return float(m.group(3)), float(m.group(2)), int(m.group(1)), mib


def loopvm_run(loopvm, d, data_path, L, steps, rounds):
    """The best of `rounds` runs' execution time (the executable cache, a
    folder of its own, warm after the first), and the first run's peak
    memory (compile and run)."""
    p = os.path.join(d, "gpt_run_L%d_S%d.lb" % (L, steps))
    open(p, "w").write(lb_source(L, steps=steps))
    env = dict(os.environ, LOOPVM_CACHE_DIR=os.path.join(d, "cache"))
    best, peak = float("inf"), None
    for _ in range(rounds):
        _, err, mib = child([loopvm, "run", p, "--tier", "xla", "--stats", "--arg", "data=@" + data_path,
                             "--out", os.path.join(d, "out.npy")], env)
        best = min(best, float(re.search(r"executions \([^)]*\) in ([0-9.]+) s", err).group(1)))
        peak = mib if peak is None else peak
    return best, peak


def jax_child(args):
    o, _, mib = child([sys.executable, os.path.abspath(__file__), "--jax"] + [str(a) for a in args])
    return float(o.strip().split()[-1]), mib


# ---- the JAX side (run in a child: `gpt_compile.py --jax WHAT L [S]`) -------

def jax_programs(L, python_loop, steps):
    import jax
    import jax.numpy as jnp
    spec = importlib.util.spec_from_file_location("gpt_jax", os.path.join(here, "gpt_jax.py"))
    g = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(g)
    g.V, g.T, g.D, g.H, g.E, g.F, g.L, g.B = V, T, D, H, E, F, L, B

    def forward(params, tokens):
        wte, wpe, layers, lnf_g, lnf_b = params
        x = jnp.take(wte, tokens, axis=0) + wpe
        if python_loop:
            for l in range(L):
                x = g.block(x, tuple(w[l] for w in layers))
        else:
            x, _ = jax.lax.scan(jax.checkpoint(lambda x, w: (g.block(x, w), None)), x, layers)
        return g.layer_norm(x, lnf_g, lnf_b) @ wte.T

    def loss(params, tokens, targets):
        logp = jax.nn.log_softmax(forward(params, tokens))
        return -jnp.mean(jnp.take_along_axis(logp, targets.reshape(B, T, 1), axis=2))

    def program(data):
        ks = jax.random.split(jax.random.PRNGKey(0), 2)
        params = g.init(ks[0])
        zero = jax.tree.map(jnp.zeros_like, params)

        def step(i, c):
            params, m, v, k, losses = c
            k2 = jax.random.split(k, 2)
            x, y = g.batch(k2[1], data)
            l, gr = jax.value_and_grad(loss)(params, x, y)
            params, m, v = g.adam(params, gr, m, v, i, 3e-3)
            return params, m, v, k2[0], losses.at[i].set(l)

        c = jax.lax.fori_loop(0, steps, step, (params, zero, zero, ks[1], jnp.zeros((steps,), jnp.float32)))
        return c[4]

    return jax, jnp, program


def jax_main(what, L, steps=1, rounds=1):
    import jax
    data = None
    if what != "run":
        _, jnp, program = jax_programs(L, what == "loop", 1)
        data = jnp.array([ord(c) % V for c in TEXT * 4], jnp.int32)
        t = time.perf_counter()
        jax.jit(program).lower(data).compile()
        print("compile", time.perf_counter() - t)
        return
    best = []
    for s in (1, steps):
        _, jnp, program = jax_programs(L, False, s)
        data = jnp.array([ord(c) % V for c in TEXT * 4], jnp.int32)
        exe = jax.jit(program).lower(data).compile()
        exe(data).block_until_ready()  # the first call allocates
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            exe(data).block_until_ready()
            times.append(time.perf_counter() - t)
        best.append(min(times))
    print("step", (best[1] - best[0]) / (steps - 1))


# ---- PyTorch/XLA (a child: `gpt_compile.py --torch scan|loop L`) -------------

def torch_main(what, L):
    """One training step (forward, backward, Adam) of the same GPT in
    PyTorch/XLA on its CPU device, the layers applied by `scan_layers` or
    by a Python loop; prints XLA's compile time (the `CompileTime` metric)."""
    os.environ.setdefault("PJRT_DEVICE", "CPU")
    import torch
    import torch.nn as nn
    import torch_xla
    import torch_xla.debug.metrics as met
    from torch_xla.experimental.scan_layers import scan_layers

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.wq, self.wk, self.wv = (nn.Parameter(0.02 * torch.randn(H, D, E)) for _ in range(3))
            self.wo = nn.Parameter(0.02 * torch.randn(H, E, D))
            self.fc1, self.fc2 = nn.Linear(D, F), nn.Linear(F, D)

        def forward(self, x):
            h = self.ln1(x)
            q, k, v = (torch.einsum("btd,hde->bhte", h, w) for w in (self.wq, self.wk, self.wv))
            s = torch.einsum("bhqe,bhke->bhqk", q, k) * E ** -0.5
            causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))
            p = torch.softmax(s.masked_fill(~causal, float("-inf")), dim=-1)
            x = x + torch.einsum("bhqe,hed->bqd", torch.einsum("bhqk,bhke->bhqe", p, v), self.wo)
            return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, D), nn.Parameter(0.02 * torch.randn(T, D))
            self.blocks, self.lnf = nn.ModuleList(Block() for _ in range(L)), nn.LayerNorm(D)

        def forward(self, tokens):
            x = self.wte(tokens) + self.wpe
            if what == "scan":
                x = scan_layers(self.blocks, x)
            else:
                for b in self.blocks:
                    x = b(x)
            return self.lnf(x) @ self.wte.weight.T

    dev = torch_xla.device()
    torch.manual_seed(0)
    model = GPT().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = torch.tensor([ord(c) % V for c in TEXT * 4], dtype=torch.int64)
    starts = torch.randint(0, len(data) - T - 1, (B,))
    x = torch.stack([data[s:s + T] for s in starts]).to(dev)
    y = torch.stack([data[s + 1:s + T + 1] for s in starts]).to(dev)
    opt.zero_grad()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits.reshape(B * T, V), y.reshape(B * T))
    loss.backward()
    opt.step()
    torch_xla.sync()
    loss.item()
    _, total_ns, _ = met.metric_data("CompileTime")
    print("compile", total_ns / 1e9)


# ---- the table and the plot --------------------------------------------------

def svg(rows, path):
    """Compile time (log scale) against L, one line per column."""
    import math
    series = [("loopvm rolled", 1, "#1f77b4"), ("loopvm unrolled layers", 2, "#ff7f0e"),
              ("JAX lax.scan", 4, "#2ca02c"), ("JAX Python loop", 5, "#d62728"),
              ("PyTorch/XLA scan_layers", 6, "#9467bd"), ("PyTorch/XLA Python loop", 7, "#8c564b")]
    W, Hh, l, r, t, b = 640, 400, 70, 190, 20, 50
    xs = [row[0] for row in rows]
    vals = [v for row in rows for _, i, _ in series for v in [row[i]] if v == v and v > 0]
    lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
    X = lambda L: l + (math.log2(L) - math.log2(xs[0])) / max(math.log2(xs[-1] / xs[0]), 1) * (W - l - r)
    Y = lambda s: t + (hi - math.log10(s)) / max(hi - lo, 1) * (Hh - t - b)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="12"><rect width="100%%" height="100%%" fill="white"/>' % (W, Hh)]
    for e in range(lo, hi + 1):
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" '
                   'text-anchor="end">%s s</text>' % (l, W - r, Y(10 ** e), Y(10 ** e), l - 6, Y(10 ** e) + 4,
                                                      ("%g" % 10 ** e)))
    for L in xs:
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (X(L), Hh - b + 18, L))
    out.append('<text x="%d" y="%d" text-anchor="middle">layers L</text>' % ((l + W - r) // 2, Hh - 10))
    for k, (name, i, colour) in enumerate(series):
        pts = [(X(row[0]), Y(row[i])) for row in rows if row[i] == row[i] and row[i] > 0]
        out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                   % (colour, " ".join("%.1f,%.1f" % p for p in pts)))
        for p in pts:
            out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (p[0], p[1], colour))
        out.append('<text x="%d" y="%d" fill="%s">%s</text>' % (W - r + 10, t + 16 + 18 * k, colour, name))
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def torch_child(args):
    if os.environ.get("GPT_TORCH") == "0" or importlib.util.find_spec("torch_xla") is None:
        return float("nan"), float("nan")
    o, _, mib = child([sys.executable, os.path.abspath(__file__), "--torch"] + [str(a) for a in args])
    return float(o.strip().split()[-1]), mib


def main():
    if sys.argv[1:2] == ["--jax"]:
        jax_main(sys.argv[2], int(sys.argv[3]), *[int(a) for a in sys.argv[4:6]])
        return
    if sys.argv[1:2] == ["--torch"]:
        torch_main(sys.argv[2], int(sys.argv[3]))
        return
    import numpy as np
    loopvm = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "release", "loopvm")
    layers = [int(a) for a in sys.argv[2:]] or [2, 8, 32, 64]
    unrolled_max = int(os.environ.get("GPT_UNROLLED_MAX", "32"))
    emit_unroll_max = int(os.environ.get("GPT_EMIT_UNROLL_MAX", "8"))
    steps = int(os.environ.get("GPT_STEPS", "1001"))
    rounds = int(os.environ.get("GPT_ROUNDS", "3"))
    nan = (float("nan"), float("nan"))
    rows = []
    cell = lambda r: "-" if r[0] != r[0] else "%.2f s, %.0f MiB" % (r[0], r[1])
    with tempfile.TemporaryDirectory() as d:
        data_path = os.path.join(d, "data.npy")
        np.save(data_path, np.array([ord(c) % V for c in TEXT * 4], np.int32))
        print("compile time of init + one training step, peak memory of the compiling process; "
              "time per step after compilation, peak memory of the running process (S = %d steps)" % steps)
        print("| L | loopvm rolled | loopvm unrolled layers | loopvm emit --unroll | JAX lax.scan "
              "| JAX Python loop | PyTorch/XLA scan_layers | PyTorch/XLA Python loop | step loopvm | step JAX |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for L in layers:
            rolled, emit_s, size, rolled_mib = loopvm_compile(loopvm, d, data_path, L, "rolled")
            small = L <= unrolled_max
            lay = loopvm_compile(loopvm, d, data_path, L, "layers") if small else (nan[0], 0, 0, nan[1])
            allu = loopvm_compile(loopvm, d, data_path, L, "all") if L <= emit_unroll_max else (nan[0], 0, 0, nan[1])
            scan = jax_child(["scan", L])
            loop = jax_child(["loop", L]) if small else nan
            tscan = torch_child(["scan", L])
            tloop = torch_child(["loop", L]) if small else nan
            r1, _ = loopvm_run(loopvm, d, data_path, L, 1, rounds)
            r2, run_mib = loopvm_run(loopvm, d, data_path, L, steps, rounds)
            step_jax, jrun_mib = jax_child(["run", L, steps, rounds])
            rows.append((L, rolled, lay[0], allu[0], scan[0], loop[0], tscan[0], tloop[0]))
            print("| %d | %s (emit %.2f s, %d KB) | %s | %s | %s | %s | %s | %s | %.3f ms, %.0f MiB | %.3f ms, %.0f MiB |"
                  % (L, cell((rolled, rolled_mib)), emit_s, size // 1000, cell((lay[0], lay[3])),
                     cell((allu[0], allu[3])), cell(scan), cell(loop), cell(tscan), cell(tloop),
                     (r2 - r1) / (steps - 1) * 1e3, run_mib, step_jax * 1e3, jrun_mib), flush=True)
    if os.environ.get("GPT_SVG"):
        svg(rows, os.environ["GPT_SVG"])


if __name__ == "__main__":
    main()
