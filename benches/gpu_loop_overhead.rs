//! Per-iteration cost of a rolled loop against a partially unrolled one
//! (issue 8): on a GPU XLA pays for every trip of a `stablehlo.while` (the
//! condition goes back to the host, every body op is a launch), so the
//! emitter repeats small bodies `k` times per trip.
//!
//! Two workloads, each lowered by loopvm's emitter and run through PJRT:
//!
//! - `small`: a loop of 10^4 iterations whose body adds 1 to an `i32` and
//!   0.5 to an `f32[4]`, with the body once (k = 1), 8 and 32 times per trip;
//! - `rnn`: the RNN cell scan of the XLA issue (`tanh(h @ w + x)`, `h:
//!   f32[1, 128]`, `w: f32[128, 128]`, T = 1000), with k = 1 and the k the
//!   GPU policy picks.
//!
//! It runs on a GPU when a CUDA plugin is found (`jax-cuda13-pjrt`, then
//! `jax-cuda12-pjrt`; `LOOPVM_PJRT_PLUGIN` names another), else on the CPU
//! plugin. On a GPU, loopvm sets `XLA_FLAGS` for command buffers before the
//! plugin starts (`docs/architecture.md`); `LOOPVM_XLA_FLAGS` adds flags.
//!
//! `cargo bench --bench gpu_loop_overhead [-- FILTER]`: criterion groups
//! `gpu_loop_overhead/small/k{1,8,32}` and `gpu_loop_overhead/rnn/{k1,
//! policy_k*}` (throughput in iterations), then one summary line per case
//! with µs per iteration (best of 5 runs); `unrolled_compile/{fori_loop,
//! scan}/N{10,320,1000000}` times XLA's compile of a loop unrolled by 32 at
//! three trip counts (the table "compile time stays flat" in
//! `docs/performance.md`).
//! JAX's figures for the same loops
//! come from `benches/peers` (see `docs/performance.md`).

use criterion::{Criterion, Throughput};
use loopvm_jit::hlo::{self, EmitOptions, Platform, UnrollOptions, ValueType};
use loopvm_jit::xla::plugin::{self, PluginKind};
use loopvm_jit::xla::{Buffer, Client, Executable, Plugin};
use loopvm_runtime::Tensor;
use std::time::{Duration, Instant};

#[path = "../tests/support/rnn.rs"]
mod rnn;
use rnn::{rnn_args, RNN};

const SMALL_N: usize = 10_000;
const SMALL_SRC: &str = "fn main() -> (i32, f32[4]) {
    fori_loop(0, 10000, |i, (a, b)| (a + 1, b + 0.5), (0, zeros(f32, [4])))
}
";

const RNN_T: usize = 1000;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("{what}: {e}")
}

/// A client on a GPU plugin when one is found, else on the CPU plugin.
fn client() -> Client {
    let gpu = plugin::from_env()
        .or_else(|| plugin::find_kind(PluginKind::Cuda13))
        .or_else(|| plugin::find_kind(PluginKind::Cuda12))
        .map(|p| p.path);
    if let Some(path) = gpu {
        match Plugin::load(&path).and_then(Client::new) {
            Ok(c) => return c,
            Err(e) => eprintln!("gpu_loop_overhead: {} unusable ({e}); using the CPU plugin", path.display()),
        }
    }
    let path = plugin::find_or_install_cpu().unwrap_or_else(|e| fail("CPU plugin", e));
    Client::new(Plugin::load(path).unwrap_or_else(|e| fail("load plugin", e))).unwrap_or_else(|e| fail("client", e))
}

/// One compiled case: its executable, its argument buffers, the
/// iterations one execution runs and the factor it was unrolled by.
struct Case {
    name: String,
    exe: Executable,
    args: Vec<Buffer>,
    iterations: usize,
    unroll: u32,
}

impl Case {
    fn new(c: &Client, name: &str, src: &str, args: &[Tensor], iterations: usize, unroll: &UnrollOptions) -> Case {
        let m = loopvm_frontend::compile(src, "gpu_loop_overhead.lb").unwrap_or_else(|e| fail("compile", e));
        let types: Vec<ValueType> = args.iter().map(hlo::value_type).collect();
        let l = hlo::lower_function_with(
            &m,
            m.main.unwrap_or_else(|| fail("main", "none")),
            &types,
            &EmitOptions::default(),
            unroll,
        )
        .unwrap_or_else(|e| fail("lower", e));
        let exe = c.compile(&l.text).unwrap_or_else(|e| fail("XLA compile", e));
        let bufs = args.iter().map(|a| c.buffer_from_tensor(a).unwrap_or_else(|e| fail("upload", e))).collect();
        let k = l.unrolls.first().map_or(1, |u| u.unroll);
        Case { name: name.replace("{k}", &k.to_string()), exe, args: bufs, iterations, unroll: k }
    }

    /// One execution, its results copied back (so that it has finished).
    fn run(&self) {
        let refs: Vec<&Buffer> = self.args.iter().collect();
        let outs = self.exe.execute(&refs).unwrap_or_else(|e| fail("execute", e));
        for o in outs {
            std::hint::black_box(o.to_tensor().unwrap_or_else(|e| fail("download", e)));
        }
    }

    /// Best of five executions, in µs per iteration.
    fn us_per_iteration(&self) -> f64 {
        self.run();
        (0..5)
            .map(|_| {
                let t = Instant::now();
                self.run();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
            * 1e6
            / self.iterations as f64
    }
}

fn main() {
    let c = client();
    let platform = c.platform_name().to_string();
    let gpu_policy = UnrollOptions { platform: Platform::Gpu, force: None };
    let mut cases = Vec::new();
    for k in [1, 8, 32] {
        cases.push(Case::new(&c, "small/k{k}", SMALL_SRC, &[], SMALL_N, &UnrollOptions::forced(k)));
    }
    let rnn = rnn_args(RNN_T);
    cases.push(Case::new(&c, "rnn/k{k}", RNN, &rnn, RNN_T, &UnrollOptions::forced(1)));
    cases.push(Case::new(&c, "rnn/policy_k{k}", RNN, &rnn, RNN_T, &gpu_policy));

    let mut crit = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(3));
    {
        let mut g = crit.benchmark_group("gpu_loop_overhead");
        for case in &cases {
            g.throughput(Throughput::Elements(case.iterations as u64));
            g.bench_function(&case.name, |b| b.iter(|| case.run()));
        }
        g.finish();
    }
    {
        // Compile time of a loop unrolled by 32 does not grow with the trip
        // count: the module of N = 10^6 is the module of N = 320.
        let mut g = crit.benchmark_group("unrolled_compile");
        g.sample_size(10);
        for n in [10u64, 320, 1_000_000] {
            let fori = format!("fn main() -> i32 {{ fori_loop(0, {n}, |i, a| a * 3 + i, 1, unroll: 32) }}");
            let scan = format!(
                "fn main(xs: f32[{n}, 4]) -> f32[4] {{ let (c, _) = scan(|c, x| {{ let h = tanh(c * 0.5 + x); (h, 0) }}, zeros(f32, [4]), xs, unroll: 32); c }}"
            );
            let xs: ValueType = (loopvm_runtime::DType::F32, vec![n as usize, 4]);
            for (kind, src, args) in [("fori_loop", fori, vec![]), ("scan", scan, vec![xs])] {
                let m = loopvm_frontend::compile(&src, "unrolled_compile.lb").unwrap_or_else(|e| fail("compile", e));
                let f = m.main.unwrap_or_else(|| fail("main", "none"));
                let l = hlo::lower_function_with(&m, f, &args, &EmitOptions::default(), &UnrollOptions::forced(32))
                    .unwrap_or_else(|e| fail("lower", e));
                g.bench_function(format!("{kind}/N{n}"), |b| {
                    b.iter(|| c.compile(&l.text).unwrap_or_else(|e| fail("XLA compile", e)))
                });
            }
        }
        g.finish();
    }
    crit.final_summary();
    for case in &cases {
        eprintln!(
            "[gpu_loop_overhead] {platform}: {:<18} unroll {:>2}: {:.4} us per iteration",
            case.name,
            case.unroll,
            case.us_per_iteration()
        );
    }
}
