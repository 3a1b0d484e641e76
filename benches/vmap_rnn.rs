//! `vmap` of the RNN cell scan over 64 sequences on the XLA tier (issue 18),
//! against 64 separate calls of the one-sequence scan.
//!
//! Workload: `benches/workloads/vmap_rnn.lb` (`h: f32[128]`,
//! `w: f32[128, 128]`, `u: f32[32, 128]`, 100 steps of `x: f32[32]`, 64
//! sequences). `main` is `vmap(rnn, in_axes: [none, none, none, 0])`; the
//! separate calls run `one` (the same scan for one sequence) 64 times, one
//! `Program::run` each. Both are compiled before timing (one warm-up run);
//! every timed run uploads what changed, runs and reads the result back.
//!
//! `cargo bench --profile release --bench vmap_rnn` prints one JSON line:
//! the median (over 15 rounds) of the batched run and of the 64 separate
//! runs, in milliseconds, and their ratio; `benches/peers/vmap_jax.py` prints
//! JAX's figures for `jax.jit(jax.vmap(rnn))` and 64 calls of `jax.jit(rnn)`
//! on the same numbers (`benches/peers/vmap_rnn.sh` runs both, alternating).

use loopvm::{Program, RunConfig, Tensor, Tier};
use std::time::Instant;

const H: usize = 128;
const D: usize = 32;
const T: usize = 100;
const B: usize = 64;
const ROUNDS: usize = 15;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("vmap_rnn: {what}: {e}");
    std::process::exit(1)
}

/// `n` numbers `(((i * a) % m) / m - 0.5) * s`, as `benches/peers/vmap_jax.py` makes them.
fn data(n: usize, a: usize, m: usize, s: f64) -> Vec<f32> {
    (0..n).map(|i| ((((i * a) % m) as f64 / m as f64 - 0.5) * s) as f32).collect()
}

fn tensor(dims: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(dims, v).unwrap_or_else(|e| fail("tensor", e))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let src = include_str!("workloads/vmap_rnn.lb");
    let one_src = src.replacen("fn main(", "fn batched(", 1).replacen("fn one(", "fn main(", 1);
    let batched = Program::from_source(src, "vmap_rnn.lb").unwrap_or_else(|e| fail("compile", e));
    let one = Program::from_source(&one_src, "vmap_rnn_one.lb").unwrap_or_else(|e| fail("compile", e));
    let w = tensor(&[H, H], data(H * H, 7919, 1000, 0.2));
    let u = tensor(&[D, H], data(D * H, 104_729, 997, 0.4));
    let b = tensor(&[H], data(H, 31, 101, 0.1));
    let seq_data = data(B * T * D, 7_727, 1009, 1.0);
    let seqs = tensor(&[B, T, D], seq_data.clone());
    let each: Vec<Tensor> = (0..B).map(|k| tensor(&[T, D], seq_data[k * T * D..(k + 1) * T * D].to_vec())).collect();
    let cfg = RunConfig { tier: Tier::Xla, ..RunConfig::default() };
    let args_b = [w.clone(), u.clone(), b.clone(), seqs];
    // Warm-up (compiles), and the check that both give the same numbers.
    let rb = batched.run(&args_b, &cfg).unwrap_or_else(|e| fail("run", e)).value;
    let rb = rb.leaves().first().and_then(|t| t.as_slice::<f32>().map(<[f32]>::to_vec)).unwrap_or_default();
    let mut worst = 0f32;
    for (k, xs) in each.iter().enumerate() {
        let r = one.run(&[w.clone(), u.clone(), b.clone(), xs.clone()], &cfg).unwrap_or_else(|e| fail("run", e)).value;
        let r = r.leaves().first().and_then(|t| t.as_slice::<f32>().map(<[f32]>::to_vec)).unwrap_or_default();
        for (j, v) in r.iter().enumerate() {
            worst = worst.max((v - rb.get(k * H + j).copied().unwrap_or(f32::NAN)).abs());
        }
    }
    if worst.is_nan() || worst > 1e-4 {
        fail("check", format!("vmap and separate calls differ by {worst}"));
    }
    let mut tb = Vec::new();
    let mut ts = Vec::new();
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        batched.run(&args_b, &cfg).unwrap_or_else(|e| fail("run", e));
        tb.push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        for xs in &each {
            one.run(&[w.clone(), u.clone(), b.clone(), xs.clone()], &cfg).unwrap_or_else(|e| fail("run", e));
        }
        ts.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (mb, ms) = (median(tb), median(ts));
    println!(
        "{{\"system\": \"loopvm\", \"vmap_ms\": {mb:.3}, \"separate_ms\": {ms:.3}, \"separate_over_vmap\": {:.2}, \"max_abs_diff\": {worst:e}}}",
        ms / mb
    );
}
