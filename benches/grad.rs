//! Derivative benchmarks (issue 5): one `value_and_grad` of a scan, timed on
//! the XLA tier, and the residual memory of the backward pass with and
//! without `scan(..., checkpoint: true)`.
//!
//! Workloads (`benches/workloads/grad_*.lb`, T steps, loss = sum of the final
//! carry):
//!
//! - `grad_rnn.lb`: the RNN cell `tanh(h @ w + x)`, `h: f32[1, 128]`,
//!   `w: f32[128, 128]`; d loss / d w. Inputs as in `benches/xla.rs` and
//!   `benches/peers/grad_jax.py` (the same formulas, so the same numbers).
//! - `grad_mlp.lb`: the MLP cell `tanh(tanh(h @ w1 + x) @ w2)`,
//!   `w1: f32[128, 512]`, `w2: f32[512, 128]`; d loss / d (w1, w2). Its
//!   intermediates are larger than the carry, which is where checkpointing
//!   pays (the plain cell saves about two carries per step).
//!
//! Each file has `main` (plain scan) and `main_ck` (`checkpoint: true`).
//!
//! Three ways to run it:
//!
//! - `cargo bench --profile release --bench grad [-- FILTER]`: criterion,
//!   groups `grad/xla/{rnn,rnn_ck,mlp,mlp_ck}/T` (T = 100, 1000): one
//!   `Program::run` on `Tier::Xla` (upload of the arguments, the compiled
//!   function, read back of value and gradients; compiled once, before).
//! - `grad-<hash> --report`: best-of-k means of the same, as JSON lines on
//!   stdout (what `docs/performance.md` quotes next to `grad_jax.py`).
//! - `grad-<hash> --mem`: residual memory, as JSON lines: (a) from the
//!   bytecode, the per-step bytes of the extra `ys` that the forward scan of
//!   `value_and_grad(...)` stacks beyond the primal scan's own `ys`, and (b)
//!   the peak heap (this binary's counting global allocator) of one
//!   interpreter-tier run of the forward loss, `main` and `main_ck`, above
//!   the heap live before the call (the arguments are already allocated).

use criterion::{BenchmarkId, Criterion};
use loopvm::{Module, Program, RunConfig, Tensor, Tier};
use loopvm_vm::module::{Dim, TensorType};
use loopvm_vm::Inst;
use std::time::{Duration, Instant};

/// Counts live and peak heap bytes (Rust allocations only: the XLA plugin's
/// own `malloc`s are not seen, which is why `--mem` uses the interpreter).
#[global_allocator]
static ALLOC: loopvm::heap::CountingAlloc = loopvm::heap::CountingAlloc;

const RNN_SRC: &str = include_str!("workloads/grad_rnn.lb");
const MLP_SRC: &str = include_str!("workloads/grad_mlp.lb");
const H: usize = 128;
/// The MLP cell's hidden width.
const HM: usize = 512;
const STEPS: [usize; 2] = [100, 1000];

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("{what}: {e}")
}

/// The deterministic values of `benches/xla.rs` (and `grad_jax.py`).
fn weights(n: usize, mul: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * mul % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect()
}

fn inputs(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 104729 % 997) as f32 / 997.0 - 0.5) * 0.1).collect()
}

fn tensor(dims: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(dims, v).unwrap_or_else(|e| fail("tensor", e))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cell {
    Rnn,
    Mlp,
}

impl Cell {
    fn name(self) -> &'static str {
        match self {
            Cell::Rnn => "rnn",
            Cell::Mlp => "mlp",
        }
    }
    fn src(self) -> &'static str {
        match self {
            Cell::Rnn => RNN_SRC,
            Cell::Mlp => MLP_SRC,
        }
    }
    /// `main`'s arguments for T steps.
    fn args(self, t: usize) -> Vec<Tensor> {
        match self {
            Cell::Rnn => vec![tensor(&[H, H], weights(H * H, 7919)), tensor(&[t, 1, H], inputs(t * H))],
            Cell::Mlp => vec![
                tensor(&[H, HM], weights(H * HM, 7919)),
                tensor(&[HM, H], weights(HM * H, 6007)),
                tensor(&[t, 1, HM], inputs(t * HM)),
            ],
        }
    }
    fn program(self) -> Program {
        Program::from_source(self.src(), &format!("grad_{}.lb", self.name())).unwrap_or_else(|e| fail(self.name(), e))
    }
}

fn leaves(p: &Program, f: &str, args: &[Tensor], tier: Tier) -> Vec<Tensor> {
    let cfg = RunConfig { tier, ..RunConfig::default() };
    let out = p.call(f, args, &cfg).unwrap_or_else(|e| fail(f, e));
    out.value.leaves().into_iter().cloned().collect()
}

/// `main` and `main_ck` agree (value and gradients) on `tier`.
fn check(p: &Program, args: &[Tensor], tier: Tier, what: &str) {
    let a = leaves(p, "main", args, tier);
    let b = leaves(p, "main_ck", args, tier);
    let i = leaves(p, "main", args, Tier::Interp);
    assert_eq!(a.len(), b.len());
    for (k, ((x, y), z)) in a.iter().zip(&b).zip(&i).enumerate() {
        let (x, y, z) = (
            x.as_slice::<f32>().unwrap_or_default(),
            y.as_slice::<f32>().unwrap_or_default(),
            z.as_slice::<f32>().unwrap_or_default(),
        );
        for ((p, q), r) in x.iter().zip(y).zip(z) {
            let tol = 1e-3 + 1e-3 * r.abs();
            assert!(
                (p - q).abs() <= tol && (p - r).abs() <= tol,
                "{what}: leaf {k}: main {p}, main_ck {q}, interp {r}"
            );
        }
    }
}

fn bench_xla(c: &mut Criterion) {
    for cell in [Cell::Rnn, Cell::Mlp] {
        for t in STEPS {
            let args = cell.args(t);
            let p = cell.program();
            check(&p, &args, Tier::Xla, &format!("{} T = {t}", cell.name()));
            let cfg = RunConfig { tier: Tier::Xla, ..RunConfig::default() };
            for (f, tag) in [("main", ""), ("main_ck", "_ck")] {
                let mut g = c.benchmark_group(format!("grad/xla/{}{tag}", cell.name()));
                g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
                g.bench_with_input(BenchmarkId::from_parameter(t), &t, |b, _| {
                    b.iter(|| p.call(f, &args, &cfg).unwrap_or_else(|e| fail(f, e)))
                });
                g.finish();
            }
        }
    }
}

/// Best over `rounds` of the mean of `reps` calls, and the median of all
/// single calls.
fn timing(rounds: usize, reps: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut singles = Vec::new();
    let best = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                let s = Instant::now();
                f();
                singles.push(s.elapsed());
            }
            t.elapsed() / reps as u32
        })
        .min()
        .unwrap_or_default();
    singles.sort();
    (best, singles[singles.len() / 2])
}

fn report() {
    for cell in [Cell::Rnn, Cell::Mlp] {
        for t in STEPS {
            let args = cell.args(t);
            let p = cell.program();
            let cfg = RunConfig { tier: Tier::Xla, ..RunConfig::default() };
            let t0 = Instant::now();
            check(&p, &args, Tier::Xla, &format!("{} T = {t}", cell.name()));
            let first = t0.elapsed();
            for f in ["main", "main_ck"] {
                let reps = if t >= 1000 { 10 } else { 50 };
                let (best, median) = timing(5, reps, || drop(p.call(f, &args, &cfg).unwrap_or_else(|e| fail(f, e))));
                println!(
                    "{{\"system\": \"loopvm\", \"tier\": \"xla\", \"cell\": \"{}\", \"fn\": \"{f}\", \"T\": {t}, \"best_mean_ms\": {:.4}, \"median_ms\": {:.4}, \"check_and_compile_s\": {:.3}}}",
                    cell.name(),
                    best.as_secs_f64() * 1e3,
                    median.as_secs_f64() * 1e3,
                    first.as_secs_f64()
                );
            }
        }
    }
}

fn bytes_per_step(m: &Module, ty: &TensorType) -> u64 {
    // The leading dim is the scan's T; the rest are fixed in these workloads.
    ty.dims[1..]
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Var(v) => fail("residual", format!("symbolic dim {} past the leading one", m.symbols[*v as usize])),
        })
        .product::<u64>()
        * ty.dtype.size_in_bytes() as u64
}

/// Per-step bytes of the `ys` of every forward (non-reverse) scan at the top
/// level of the function named `name`, and their types.
fn forward_ys(m: &Module, name: &str) -> (u64, Vec<String>) {
    let f = m.funcs.iter().find(|f| f.name == name).unwrap_or_else(|| fail("no function", name));
    let (mut total, mut tys) = (0, Vec::new());
    for inst in &f.block(f.body).code {
        if let Inst::Scan { dsts, init, reverse: false, .. } = inst {
            for r in &dsts[init.len()..] {
                let ty = &f.reg_types[r.0 as usize];
                total += bytes_per_step(m, ty);
                tys.push(ty.display(&m.symbols));
            }
        }
    }
    (total, tys)
}

/// Peak heap of `f`, above the heap live before it, and the heap it leaves.
fn peak_heap(f: impl FnOnce() -> Vec<Tensor>) -> usize {
    let base = loopvm::heap::live();
    loopvm::heap::reset_peak();
    let out = f();
    let peak = loopvm::heap::peak();
    drop(out);
    peak - base
}

fn mem() {
    for cell in [Cell::Rnn, Cell::Mlp] {
        let p = cell.program();
        let m = p.module();
        let vg = |ck: &str| {
            let g = if cell == Cell::Rnn { "" } else { ", argnums: [0, 1]" };
            let name = format!("value_and_grad(loss{ck}<T=T>{g})");
            if m.funcs.iter().any(|f| f.name == name) {
                name
            } else {
                format!("value_and_grad(loss{ck}{g})")
            }
        };
        // The primal loss (monomorphised as `loss<T=T>` when called first with a symbolic T).
        let loss_name = m.funcs.iter().find(|f| f.name.starts_with("loss<")).map_or("loss", |f| &f.name).to_string();
        let (primal, _) = forward_ys(m, &loss_name);
        let (plain, plain_tys) = forward_ys(m, &vg(""));
        let (ck, ck_tys) = forward_ys(m, &vg("_ck"));
        let (plain, ck) = (plain - primal, ck - primal);
        println!(
            "{{\"cell\": \"{}\", \"what\": \"bytecode\", \"residual_bytes_per_step\": {plain}, \"residual_bytes_per_step_ck\": {ck}, \"ratio\": {:.2}, \"ys\": {plain_tys:?}, \"ys_ck\": {ck_tys:?}, \"primal_ys_bytes_per_step\": {primal}}}",
            cell.name(),
            plain as f64 / ck as f64
        );
        for t in STEPS {
            let args = cell.args(t);
            // Once each first, so that lazily made things do not count.
            for f in [loss_name.as_str(), "main", "main_ck"] {
                leaves(&p, f, &args, Tier::Interp);
            }
            let fwd = peak_heap(|| leaves(&p, &loss_name, &args, Tier::Interp));
            let plain_peak = peak_heap(|| leaves(&p, "main", &args, Tier::Interp));
            let ck_peak = peak_heap(|| leaves(&p, "main_ck", &args, Tier::Interp));
            let args_bytes: usize = args.iter().map(|a| a.nbytes()).sum();
            println!(
                "{{\"cell\": \"{}\", \"what\": \"peak_heap_interp\", \"T\": {t}, \"args_bytes\": {args_bytes}, \"forward_loss\": {fwd}, \"value_and_grad\": {plain_peak}, \"value_and_grad_ck\": {ck_peak}, \"stacked_residuals_analytic\": {}, \"stacked_residuals_analytic_ck\": {}, \"ratio_peak\": {:.2}, \"ratio_peak_minus_forward\": {:.2}}}",
                cell.name(),
                plain as usize * t,
                ck as usize * t,
                plain_peak as f64 / ck_peak as f64,
                (plain_peak.saturating_sub(fwd)) as f64 / (ck_peak.saturating_sub(fwd)).max(1) as f64
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--report") => return report(),
        Some("--mem") => return mem(),
        _ => {}
    }
    let mut c = Criterion::default().configure_from_args();
    bench_xla(&mut c);
    c.final_summary();
}
