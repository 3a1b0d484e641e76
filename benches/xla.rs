//! XLA tier benchmarks (issue 3): compile time of the RNN-cell scan
//! (`benches/workloads/rnn_cell.lb`, `tanh(h @ w + x)`, `h: f32[1, 128]`,
//! `w: f32[128, 128]`) against the trip count N, rolled (one
//! `stablehlo.while`) and unrolled (`EmitOptions { unroll_all: true }`); its
//! run time per step (a loop body XLA cannot fold); and the overhead of one
//! call of a compiled region.
//!
//! Three ways to run it:
//!
//! - `cargo bench --bench xla [-- FILTER]`: criterion. Groups `xla/compile/
//!   rolled/N`, `xla/compile/unrolled/N` (N = 10, 100; 1000 too with
//!   `LOOPVM_BENCH_UNROLLED_1000=1`, about 10 × 10 s), `xla/run/rolled/N`
//!   (per-step throughput) and `xla/overhead/{dispatch,pjrt_round_trip,
//!   tier_call}`.
//! - `xla-<hash> --report FILE.json`: plain best-of-3 timings of the same
//!   things (unrolled for N = 10 and 100), written as JSON;
//!   `benches/peers/run.sh` uses it next to its JAX measurements.
//! - `xla-<hash> --peak-mem rolled|unrolled N`: in this process, creates a CPU
//!   client, then lowers and compiles the RNN for N once and prints one JSON
//!   line with `VmHWM` (the RSS high-water mark from `/proc/self/status`)
//!   before and after, and the compile time (the only measurement of
//!   unrolled N = 1000). One process per N, so that the marks do not mix.
//!
//! "Compile time" is source to executable: frontend (parse, check, lower to
//! bytecode), StableHLO emission, and `PJRT_Client_Compile`, like
//! `jax.jit(f).lower(...).compile()` (tracing, lowering, compiling).

use criterion::{BenchmarkId, Criterion, Throughput};
use loopvm::{DType, Program, RunConfig, Tensor, Tier};
use loopvm_jit::hlo::{self, EmitOptions, ValueType};
use loopvm_jit::xla::{plugin, Buffer, Client, ElementType, Executable, Plugin};
use std::hint::black_box;
use std::time::{Duration, Instant};

const RNN_SRC: &str = include_str!("workloads/rnn_cell.lb");
const HIDDEN: usize = 128;
/// Trip counts of the rolled RNN.
const ROLLED_N: [usize; 4] = [10, 100, 1000, 10000];

/// The tiny compiled region of the overhead benchmark.
const TINY_SRC: &str = "fn main(x: f32[4]) -> f32[4] { x + 1.0 }\n";
/// The same region as StableHLO, for the bare PJRT measurements.
const TINY_HLO: &str = "module @tiny {
  func.func public @main(%x: tensor<4xf32>) -> tensor<4xf32> {
    %one = stablehlo.constant dense<1.0> : tensor<4xf32>
    %0 = stablehlo.add %x, %one : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
";

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("{what}: {e}")
}

fn client() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let path = plugin::find_or_install_cpu().unwrap_or_else(|e| fail("CPU plugin", e));
            let plugin = Plugin::load(path).unwrap_or_else(|e| fail("load plugin", e));
            Client::new(plugin).unwrap_or_else(|e| fail("client", e))
        })
        .clone()
}

/// `w: f32[128, 128]` and `xs: f32[n, 1, 128]`, deterministic and small
/// enough that `tanh` does not saturate (so that no step is trivial).
fn rnn_args(n: usize) -> [Tensor; 2] {
    let w: Vec<f32> = (0..HIDDEN * HIDDEN).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect();
    let xs: Vec<f32> = (0..n * HIDDEN).map(|i| ((i * 104729 % 997) as f32 / 997.0 - 0.5) * 0.1).collect();
    [
        Tensor::from_vec(&[HIDDEN, HIDDEN], w).unwrap_or_else(|e| fail("w", e)),
        Tensor::from_vec(&[n, 1, HIDDEN], xs).unwrap_or_else(|e| fail("xs", e)),
    ]
}

fn rnn_types(n: usize) -> Vec<ValueType> {
    vec![(DType::F32, vec![HIDDEN, HIDDEN]), (DType::F32, vec![n, 1, HIDDEN])]
}

/// Times of one source-to-executable compile.
#[derive(Clone, Copy, Debug, Default)]
struct CompileTimes {
    frontend: Duration,
    emit: Duration,
    xla: Duration,
    text_bytes: usize,
    /// `stablehlo.while` ops in the module (1 rolled, 0 unrolled).
    whiles: usize,
}

impl CompileTimes {
    fn total(&self) -> Duration {
        self.frontend + self.emit + self.xla
    }
}

/// Frontend, StableHLO emission and PJRT compile of the RNN for `n` steps.
fn compile_rnn(client: &Client, n: usize, unroll: bool) -> (Executable, CompileTimes) {
    let t0 = Instant::now();
    let m = loopvm_frontend::compile(RNN_SRC, "rnn_cell.lb").unwrap_or_else(|e| fail("frontend", e.render(RNN_SRC)));
    let main = m.main.unwrap_or_else(|| fail("rnn_cell.lb", "no main"));
    let t1 = Instant::now();
    let lowered =
        hlo::lower_function(&m, main, &rnn_types(n), &EmitOptions { unroll_all: unroll, ..Default::default() })
            .unwrap_or_else(|e| fail("emit", e));
    let t2 = Instant::now();
    let exe = client.compile(&lowered.text).unwrap_or_else(|e| fail("PJRT compile", e));
    let t3 = Instant::now();
    let times = CompileTimes {
        frontend: t1 - t0,
        emit: t2 - t1,
        xla: t3 - t2,
        text_bytes: lowered.text.len(),
        whiles: lowered.whiles,
    };
    (exe, times)
}

/// The RNN's arguments on the device.
fn upload(client: &Client, args: &[Tensor]) -> Vec<Buffer> {
    args.iter().map(|a| client.buffer_from_tensor(a).unwrap_or_else(|e| fail("upload", e))).collect()
}

fn execute(exe: &Executable, bufs: &[Buffer]) -> Vec<Buffer> {
    let refs: Vec<&Buffer> = bufs.iter().collect();
    exe.execute(&refs).unwrap_or_else(|e| fail("execute", e))
}

/// Checks the XLA result against the interpreter's, so that no timing is of
/// a wrong program.
fn check_rnn(exe: &Executable, n: usize) {
    let args = rnn_args(n);
    let got = execute(exe, &upload(&client(), &args))[0].to_tensor().unwrap_or_else(|e| fail("read back", e));
    let p = Program::from_source(RNN_SRC, "rnn_cell.lb").unwrap_or_else(|e| fail("program", e));
    let want =
        p.run(&args, &RunConfig { tier: Tier::Interp, ..RunConfig::default() }).unwrap_or_else(|e| fail("interp", e));
    let want = want.value.as_tensor().cloned().unwrap_or_else(|| fail("interp", "no single result"));
    let (g, w) = (got.as_slice::<f32>().unwrap_or_default(), want.as_slice::<f32>().unwrap_or_default());
    assert_eq!(g.len(), w.len());
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        assert!((a - b).abs() <= 1e-4 + 1e-4 * b.abs(), "rnn n = {n}: element {i}: xla {a}, interp {b}");
    }
}

/// The pieces of the overhead benchmarks.
struct Tiny {
    client: Client,
    exe: Executable,
    host: [f32; 4],
    dev: Buffer,
    program: Program,
    tensor: Tensor,
    cfg: RunConfig,
}

impl Tiny {
    fn new() -> Tiny {
        let client = client();
        let exe = client.compile(TINY_HLO).unwrap_or_else(|e| fail("compile tiny", e));
        let host = [1.0f32, 2.0, 3.0, 4.0];
        let dev = client.buffer_from_host(bytes(&host), &[4], ElementType::F32).unwrap_or_else(|e| fail("upload", e));
        let program = Program::from_source(TINY_SRC, "tiny.lb").unwrap_or_else(|e| fail("tiny.lb", e));
        let tensor = Tensor::from_vec(&[4], host.to_vec()).unwrap_or_else(|e| fail("tensor", e));
        let cfg = RunConfig { tier: Tier::Xla, ..RunConfig::default() };
        let t = Tiny { client, exe, host, dev, program, tensor, cfg };
        // Warm up, and check the three paths agree.
        assert_eq!(t.round_trip(), [2.0, 3.0, 4.0, 5.0]);
        assert_eq!(t.dispatch().len(), 1);
        t.tier_call();
        t
    }

    /// Arguments already on the device: execute and wait.
    fn dispatch(&self) -> Vec<Buffer> {
        self.exe.execute(&[&self.dev]).unwrap_or_else(|e| fail("execute", e))
    }

    /// Upload the argument, execute, wait, copy the result back.
    fn round_trip(&self) -> [f32; 4] {
        let x =
            self.client.buffer_from_host(bytes(&self.host), &[4], ElementType::F32).unwrap_or_else(|e| fail("up", e));
        let out = self.exe.execute(&[&x]).unwrap_or_else(|e| fail("execute", e));
        let mut r = [0f32; 4];
        out[0].copy_to(bytes_mut(&mut r)).unwrap_or_else(|e| fail("read back", e));
        r
    }

    /// `Program::run` on the XLA tier: interpreter entry, executable cache,
    /// resident argument, execute, result as a host tensor.
    fn tier_call(&self) -> Tensor {
        let out = self.program.run(std::slice::from_ref(&self.tensor), &self.cfg).unwrap_or_else(|e| fail("run", e));
        out.value.as_tensor().cloned().unwrap_or_else(|| fail("run", "no single result"))
    }
}

fn bytes(v: &[f32]) -> &[u8] {
    // SAFETY: `f32` has no padding and every byte is initialised; `u8` has
    // alignment 1; the borrow keeps `v` alive.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

fn bytes_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: as in `bytes`; every bit pattern is a valid `f32`, and the
    // exclusive borrow keeps anything else from reading meanwhile.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
}

// ---------------------------------------------------------------- criterion

fn bench_compile(c: &mut Criterion) {
    let client = client();
    // The first compile of a process initialises XLA; keep it out of the figures.
    let _ = compile_rnn(&client, 10, false);
    let mut g = c.benchmark_group("xla/compile/rolled");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for n in ROLLED_N {
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| b.iter(|| compile_rnn(&client, n, false).0));
    }
    g.finish();
    let mut unrolled = vec![10usize, 100];
    if std::env::var_os("LOOPVM_BENCH_UNROLLED_1000").is_some() {
        unrolled.push(1000);
    }
    let mut g = c.benchmark_group("xla/compile/unrolled");
    g.sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_secs(5));
    for n in unrolled {
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| b.iter(|| compile_rnn(&client, n, true).0));
    }
    g.finish();
}

fn bench_run(c: &mut Criterion) {
    let client = client();
    let mut g = c.benchmark_group("xla/run/rolled");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for n in ROLLED_N {
        let (exe, _) = compile_rnn(&client, n, false);
        check_rnn(&exe, n);
        let bufs = upload(&client, &rnn_args(n));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| b.iter(|| execute(&exe, black_box(&bufs))));
    }
    g.finish();
}

fn bench_overhead(c: &mut Criterion) {
    let tiny = Tiny::new();
    let mut g = c.benchmark_group("xla/overhead");
    g.sample_size(50).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.bench_function("dispatch", |b| b.iter(|| tiny.dispatch()));
    g.bench_function("pjrt_round_trip", |b| b.iter(|| tiny.round_trip()));
    g.bench_function("tier_call", |b| b.iter(|| tiny.tier_call()));
    // The parts of a round trip.
    g.bench_function("upload_f32x4", |b| {
        b.iter(|| tiny.client.buffer_from_host(bytes(black_box(&tiny.host)), &[4], ElementType::F32))
    });
    let out = tiny.dispatch().pop().unwrap_or_else(|| fail("execute", "no result"));
    let mut r = [0f32; 4];
    g.bench_function("read_back_f32x4", |b| b.iter(|| out.copy_to(bytes_mut(black_box(&mut r)))));
    g.bench_function("read_back_through_pjrt_f32x4", |b| {
        b.iter(|| out.copy_to_through_pjrt(bytes_mut(black_box(&mut r))))
    });
    g.bench_function("to_tensor_f32x4", |b| b.iter(|| out.to_tensor()));
    g.finish();
}

// ------------------------------------------------------------- report mode

/// Mean time of `f` over batches of `reps` calls, best of `rounds` batches.
fn best_mean(rounds: usize, reps: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed() / reps as u32
        })
        .min()
        .unwrap_or_default()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn compile_json(n: usize, best: &CompileTimes, runs: usize) -> String {
    format!(
        "{{\"n\": {n}, \"compile_s\": {:.6}, \"frontend_s\": {:.6}, \"emit_s\": {:.6}, \"xla_compile_s\": {:.6}, \"text_bytes\": {}, \"whiles\": {}, \"runs\": {runs}}}",
        secs(best.total()),
        secs(best.frontend),
        secs(best.emit),
        secs(best.xla),
        best.text_bytes,
        best.whiles
    )
}

fn best_compile(client: &Client, n: usize, unroll: bool, runs: usize) -> (Executable, CompileTimes) {
    let mut best: Option<(Executable, CompileTimes)> = None;
    for _ in 0..runs {
        let (exe, t) = compile_rnn(client, n, unroll);
        if best.as_ref().is_none_or(|b| t.total() < b.1.total()) {
            best = Some((exe, t));
        }
    }
    best.unwrap_or_else(|| fail("compile", "no run"))
}

fn report(path: &str) {
    let client = client();
    let _ = compile_rnn(&client, 10, false);
    let mut rolled = Vec::new();
    for n in ROLLED_N {
        let (exe, t) = best_compile(&client, n, false, 3);
        check_rnn(&exe, n);
        let bufs = upload(&client, &rnn_args(n));
        let reps = (20_000 / n).clamp(3, 200);
        let run = best_mean(3, reps, || drop(execute(&exe, &bufs)));
        let c = compile_json(n, &t, 3);
        rolled.push(format!(
            "{}, \"run_s\": {:.9}, \"us_per_step\": {:.4}}}",
            &c[..c.len() - 1],
            secs(run),
            secs(run) * 1e6 / n as f64
        ));
        eprintln!(
            "[xla] rolled   N = {n:>5}: compile {:.1} ms, {:.3} µs/step",
            secs(t.total()) * 1e3,
            secs(run) * 1e6 / n as f64
        );
    }
    // Unrolled N = 1000 (about 20 s) is measured once, by `--peak-mem`.
    let mut unrolled = Vec::new();
    for n in [10usize, 100] {
        let (exe, t) = best_compile(&client, n, true, 3);
        check_rnn(&exe, n);
        unrolled.push(compile_json(n, &t, 3));
        eprintln!("[xla] unrolled N = {n:>5}: compile {:.1} ms", secs(t.total()) * 1e3);
    }
    let tiny = Tiny::new();
    let dispatch = best_mean(5, 2000, || drop(tiny.dispatch()));
    let round_trip = best_mean(5, 2000, || {
        black_box(tiny.round_trip());
    });
    let tier_call = best_mean(5, 2000, || drop(tiny.tier_call()));
    eprintln!(
        "[xla] overhead: dispatch {:.2} µs, round trip {:.2} µs, tier call {:.2} µs",
        secs(dispatch) * 1e6,
        secs(round_trip) * 1e6,
        secs(tier_call) * 1e6
    );
    let attributes = client
        .plugin()
        .attributes()
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k:?}: {v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let json = format!(
        "{{\n  \"system\": \"loopvm\",\n  \"plugin\": {:?},\n  \"pjrt_api\": \"{}\",\n  \"plugin_attributes\": {{{}}},\n  \"rolled\": [\n    {}\n  ],\n  \"unrolled\": [\n    {}\n  ],\n  \"overhead_us\": {{\"dispatch\": {:.3}, \"round_trip\": {:.3}, \"tier_call\": {:.3}}}\n}}\n",
        client.plugin().path().display().to_string(),
        client.plugin().api_version(),
        attributes,
        rolled.join(",\n    "),
        unrolled.join(",\n    "),
        secs(dispatch) * 1e6,
        secs(round_trip) * 1e6,
        secs(tier_call) * 1e6
    );
    std::fs::write(path, json).unwrap_or_else(|e| fail(path, e));
}

/// `VmHWM` (peak resident set) of this process in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn peak_mem(mode: &str, n: usize) {
    let client = client();
    // As the JAX probe does: one tiny compile first, so that the mark before
    // includes what any first compile of a process sets up.
    drop(client.compile(TINY_HLO).unwrap_or_else(|e| fail("compile tiny", e)));
    let before = vm_hwm_kib();
    let (_exe, t) = compile_rnn(&client, n, mode == "unrolled");
    let after = vm_hwm_kib();
    println!(
        "{{\"system\": \"loopvm\", \"mode\": \"{mode}\", \"n\": {n}, \"hwm_before_kib\": {before}, \"hwm_after_kib\": {after}, \"compile_s\": {:.6}, \"whiles\": {}}}",
        secs(t.total()),
        t.whiles
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--report") => return report(args.get(2).map_or("xla_report.json", String::as_str)),
        Some("--peak-mem") => {
            let mode = args.get(2).map_or("rolled", String::as_str);
            assert!(mode == "rolled" || mode == "unrolled", "--peak-mem rolled|unrolled N");
            let n = args.get(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| fail("--peak-mem", "give N"));
            return peak_mem(mode, n);
        }
        _ => {}
    }
    let mut c = Criterion::default().configure_from_args();
    bench_overhead(&mut c);
    bench_run(&mut c);
    bench_compile(&mut c);
    c.final_summary();
}
