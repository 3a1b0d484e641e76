//! Interpreter benchmarks: dispatch cost per op (a scalar loop and the
//! LCG as a `fori_loop` and a `while_loop`), small-tensor ops, an RNN-cell
//! scan, and a batched matrix product.
//! Workloads are `.lb` files under `benches/workloads/`.
//! Throughput is reported in executed ops (or scan steps) per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loopvm::{Program, RunConfig, Tensor, Tier};
use std::hint::black_box;
use std::path::Path;

fn load(name: &str) -> Program {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/workloads").join(name);
    match Program::from_path(&p) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn run(p: &Program, args: &[Tensor]) -> u64 {
    // The interpreter itself: the default tier (auto) would compile the loops.
    match p.run(args, &RunConfig { tier: Tier::Interp, ..RunConfig::default() }) {
        Ok(o) => o.ops,
        Err(e) => panic!("{e}"),
    }
}

fn execute_interp(c: &mut Criterion) {
    let mut g = c.benchmark_group("execute/interp");
    g.sample_size(10);
    for (name, file) in [("scalar_fori_1e6", "scalar_fori.lb"), ("small_tensor_f32x4_1e6", "small_tensor.lb")] {
        let p = load(file);
        let args = [Tensor::scalar(1_000_000i32)];
        let ops = run(&p, &args);
        g.throughput(Throughput::Elements(ops));
        g.bench_function(name, |b| b.iter(|| run(&p, black_box(&args))));
    }
    // Issue 19's LCG: three binary ops with a constant operand per
    // iteration, and as a `while_loop` (`benches/peers/lua_lcg.sh` runs
    // both beside Lua 5.4).
    for (name, file) in [("lcg31_1e6", "lcg31.lb"), ("lcg31_while_1e6", "lcg31_while.lb")] {
        let p = load(file);
        let args = [Tensor::scalar(1_000_000i64)];
        let ops = run(&p, &args);
        g.throughput(Throughput::Elements(ops));
        g.bench_function(name, |b| b.iter(|| run(&p, black_box(&args))));
    }
    let p = load("rnn_cell.lb");
    let (h, t) = (128usize, 1000usize);
    let w: Vec<f32> = (0..h * h).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1).collect();
    let xs: Vec<f32> = (0..t * h).map(|i| ((i * 104729 % 1000) as f32 / 1000.0 - 0.5) * 0.1).collect();
    let args = [
        Tensor::from_vec(&[h, h], w).unwrap_or_else(|e| panic!("{e}")),
        Tensor::from_vec(&[t, 1, h], xs).unwrap_or_else(|e| panic!("{e}")),
    ];
    g.throughput(Throughput::Elements(t as u64));
    g.bench_function("rnn_cell_scan_h128_t1000", |b| b.iter(|| run(&p, black_box(&args))));
    g.finish();
}

/// `[8, 64, 64] @ [8, 64, 64]` in f32 on the interpreter (one `DotGeneral`);
/// throughput in floating-point operations (2 per multiply-add), so
/// criterion's "elem/s" is FLOP/s. `benches/peers/matmul_numpy.py` times
/// NumPy's `np.matmul` on the same shapes and values.
fn batched_matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("execute/interp");
    let p = load("batched_matmul.lb");
    let (nb, n) = (8usize, 64usize);
    let vals =
        |mul: usize| -> Vec<f32> { (0..nb * n * n).map(|i| ((i * mul % 1000) as f32 / 1000.0 - 0.5) * 0.1).collect() };
    let args = [
        Tensor::from_vec(&[nb, n, n], vals(7919)).unwrap_or_else(|e| panic!("{e}")),
        Tensor::from_vec(&[nb, n, n], vals(104729)).unwrap_or_else(|e| panic!("{e}")),
    ];
    g.throughput(Throughput::Elements((2 * nb * n * n * n) as u64));
    g.bench_function("batched_matmul_8x64x64_flops", |b| b.iter(|| run(&p, black_box(&args))));
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/workloads/rnn_cell.lb"))
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("frontend_rnn_cell", |b| b.iter(|| Program::from_source(black_box(&src), "rnn_cell.lb").is_ok()));
    g.finish();
}

criterion_group!(benches, execute_interp, batched_matmul, compile);
criterion_main!(benches);
