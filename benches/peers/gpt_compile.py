"""Compile time of one GPT training step against the number of layers L
(issue 15's headline): loopvm rolled (one `scan` over the stacked layers,
`--tier xla`) against JAX 0.10 with `lax.scan` over layers and with a
Python loop over layers.

    JAX_PLATFORMS=cpu python benches/peers/gpt_compile.py [LOOPVM] [L ...]

LOOPVM defaults to target/release/loopvm; L to 2 8 32 64. JAX's Python loop
runs only for L <= 32 unless GPT_COMPILE_FULL=1 (at L = 64 it takes minutes).
The model is examples/gpt/gpt.lb's code (the same file, its configuration
section replaced), sized as the issue's reference: batch 2, context 8, width
16, 2 heads, MLP 64, vocabulary 16. "One training step" is the program
`init` + one step of the training loop (value_and_grad + Adam) on both
sides; loopvm's figure is the XLA compile time `loopvm run --stats` reports
(`--no-cache`), JAX's `jax.jit(f).lower(data).compile()`.

Not measured here (left for later): loopvm unrolled (`loopvm emit
--unroll` compiled through PJRT needs a Rust driver, as benches/xla.rs does
for the RNN), peak memory, time per step.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

import importlib.util
import jax
import jax.numpy as jnp

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", ".."))
spec = importlib.util.spec_from_file_location("gpt_jax", os.path.join(here, "gpt_jax.py"))
g = importlib.util.module_from_spec(spec)
spec.loader.exec_module(g)

V, T, D, H, E, F, B = 16, 8, 16, 2, 8, 64, 2


def lb_source(L):
    src = open(os.path.join(root, "examples", "gpt", "gpt.lb")).read()
    src = src[: src.index("# ---- configuration")]
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
    train(data, init(ks[0]), zeros(f32, [1]), zeros(i32, [%(B)d, %(T)d]), ks[1], 3e-3, 1000)
}
""" % dict(L=L, V=V, T=T, D=D, H=H, E=E, F=F, B=B)


def loopvm_rolled(loopvm, L, data_path):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "gpt_L%d.lb" % L)
        open(p, "w").write(lb_source(L))
        r = subprocess.run([loopvm, "run", p, "--tier", "xla", "--no-cache", "--stats",
                            "--arg", "data=@" + data_path, "--out", os.path.join(d, "out/")],
                           capture_output=True, text=True, check=True)
    m = re.search(r"regions compiled in ([0-9.]+) s", r.stderr)
    return float(m.group(1))


def jax_program(L, python_loop):
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
        k = jax.random.split(ks[1], 2)
        x, y = g.batch(k[1], data)
        l, gr = jax.value_and_grad(loss)(params, x, y)
        return g.adam(params, gr, zero, zero, 0, 3e-3), l

    return program


def jax_compile(L, python_loop, data):
    f = jax.jit(jax_program(L, python_loop))
    t = time.perf_counter()
    f.lower(data).compile()
    return time.perf_counter() - t


def main():
    loopvm = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "release", "loopvm")
    layers = [int(a) for a in sys.argv[2:]] or [2, 8, 32, 64]
    full = os.environ.get("GPT_COMPILE_FULL") == "1"
    text = g.TEXT * 4
    data = jnp.array([ord(c) % V for c in text], jnp.int32)
    with tempfile.TemporaryDirectory() as d:
        data_path = os.path.join(d, "data.npy")
        import numpy as np
        np.save(data_path, np.asarray(data))
        print("jax", jax.__version__, "| compile time of init + one training step, seconds")
        print("| L | loopvm rolled | JAX lax.scan | JAX Python loop |")
        print("| --- | --- | --- | --- |")
        for L in layers:
            ours = loopvm_rolled(loopvm, L, data_path)
            scan = jax_compile(L, False, data)
            loop = jax_compile(L, True, data) if (L <= 32 or full) else float("nan")
            print("| %d | %.2f | %.2f | %.2f |" % (L, ours, scan, loop), flush=True)


if __name__ == "__main__":
    main()
