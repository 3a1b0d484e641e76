//! Scalar loops on the Cranelift tier against the same algorithm compiled by
//! rustc in this benchmark: Collatz step counts (a `while_loop` nested in a
//! `fori_loop`), a linear congruential generator and Fibonacci modulo a
//! prime. Workloads are `.lb` files under `benches/workloads/`.
//!
//! Groups: `execute/jit` (compiled once, then run natively: the backend is
//! kept across iterations), `execute/rustc` (the Rust reference),
//! `execute/interp` (the interpreter, on shorter runs) and `overhead`
//! (promotion: a fresh backend compiles the loop, then runs it).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loopvm_jit::cranelift::CraneliftBackend;
use loopvm_runtime::Tensor;
use loopvm_vm::{Backend, Interpreter, Module, RunOptions};
use std::hint::black_box;
use std::path::Path;

fn load(name: &str) -> Module {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/workloads").join(name);
    let src = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    loopvm_frontend::compile(&src, name).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `main(n)` and returns its first result as an `i64`.
fn run(m: &Module, backend: Option<&mut dyn Backend>, n: i64) -> i64 {
    let mut it = Interpreter::new(m, RunOptions::default());
    if let Some(b) = backend {
        it.set_backend(b);
    }
    let main = m.main.unwrap_or_else(|| panic!("no main"));
    let out = it.call(main, &[Tensor::scalar(n)]).unwrap_or_else(|e| panic!("{e}"));
    out[0].scalar_i64().unwrap_or_else(|| panic!("not an integer"))
}

fn collatz_rust(n: i64) -> i64 {
    let mut total = 0i64;
    for i in 1..=n {
        let (mut x, mut k) = (i, 0i64);
        while x != 1 {
            x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
            k += 1;
        }
        total += k;
    }
    total
}

fn lcg_rust(n: i64) -> i64 {
    let mut x = 12345i64;
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    }
    x
}

fn fib_mod_rust(n: i64) -> i64 {
    let (mut a, mut b) = (0i64, 1i64);
    for _ in 0..n {
        (a, b) = (b, (a + b) % 1_000_000_007);
    }
    a
}

struct Workload {
    name: &'static str,
    file: &'static str,
    /// The size measured on the JIT and in Rust.
    n: i64,
    /// A smaller size for the interpreter.
    n_interp: i64,
    rust: fn(i64) -> i64,
}

const WORKLOADS: &[Workload] = &[
    Workload { name: "collatz_1e6", file: "collatz.lb", n: 1_000_000, n_interp: 10_000, rust: collatz_rust },
    Workload { name: "lcg_1e8", file: "lcg.lb", n: 100_000_000, n_interp: 1_000_000, rust: lcg_rust },
    Workload { name: "fib_mod_1e8", file: "fib_mod.lb", n: 100_000_000, n_interp: 1_000_000, rust: fib_mod_rust },
];

fn execute(c: &mut Criterion) {
    for w in WORKLOADS {
        let m = load(w.file);
        let mut jit = CraneliftBackend::new(0);
        // Same answer on every tier before anything is timed.
        let want = (w.rust)(w.n);
        assert_eq!(run(&m, Some(&mut jit), w.n), want, "{}: jit differs from rustc", w.name);
        assert!(!jit.promoted().is_empty(), "{}: nothing promoted\n{}", w.name, jit.stats_text());
        assert_eq!(run(&m, None, w.n_interp), (w.rust)(w.n_interp), "{}: interpreter differs", w.name);

        let mut g = c.benchmark_group(format!("execute/{}", w.name));
        g.sample_size(10);
        g.throughput(Throughput::Elements(w.n as u64));
        g.bench_function("jit", |b| b.iter(|| run(&m, Some(&mut jit), black_box(w.n))));
        g.bench_function("rustc", |b| b.iter(|| (w.rust)(black_box(w.n))));
        g.finish();

        let mut g = c.benchmark_group(format!("execute/{}_interp_n{}", w.name, w.n_interp));
        g.sample_size(10);
        g.throughput(Throughput::Elements(w.n_interp as u64));
        g.bench_function("interp", |b| b.iter(|| run(&m, None, black_box(w.n_interp))));
        g.finish();
    }
}

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("overhead");
    g.sample_size(20);
    for w in WORKLOADS {
        let m = load(w.file);
        // A fresh backend: compile the region and run one short entry.
        g.bench_function(format!("promote_and_run_{}", w.file.trim_end_matches(".lb")), |b| {
            b.iter(|| {
                let mut jit = CraneliftBackend::new(0);
                run(&m, Some(&mut jit), black_box(10))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, execute, overhead);
criterion_main!(benches);
