//! Tensor loops on the Cranelift tier (issue 19), side by side in one run:
//!
//! - `rnn/{jit,interp,xla}`: the RNN cell scan of `benches/workloads/rnn_cell.lb`
//!   (`tanh(h @ w + x)`, `h: f32[1, 128]`, `w: f32[128, 128]`) for 1000
//!   steps; throughput in steps. `jit` is the interpreter with the loop
//!   compiled once (the backend is kept across iterations) and run natively
//!   through the runtime's buffer kernels; `xla` executes the rolled program
//!   compiled by the CPU PJRT plugin on arguments already on the device (as
//!   `benches/xla.rs`'s `xla/run/rolled`), and is left out when no plugin is
//!   found.
//! - `small_tensor/{jit,interp}`: four elementwise ops on an `f32[4]` carry
//!   (`benches/workloads/small_tensor.lb`), 10^6 iterations on the JIT, 10^5
//!   on the interpreter; throughput in iterations.
//!
//! Every tier's result is checked against the interpreter's before anything
//! is timed.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loopvm_jit::cranelift::CraneliftBackend;
use loopvm_jit::hlo::{self, EmitOptions};
use loopvm_jit::xla::{plugin, Client, Plugin};
use loopvm_runtime::{DType, Tensor};
use loopvm_vm::{Backend, Interpreter, Module, RunOptions};
use std::hint::black_box;
use std::path::Path;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("{what}: {e}")
}

fn load(name: &str) -> (Module, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/workloads").join(name);
    let src = std::fs::read_to_string(&p).unwrap_or_else(|e| fail(&p.display().to_string(), e));
    (loopvm_frontend::compile(&src, name).unwrap_or_else(|e| fail(name, e)), src)
}

fn run(m: &Module, backend: Option<&mut dyn Backend>, args: &[Tensor]) -> Tensor {
    let mut it = Interpreter::new(m, RunOptions::default());
    if let Some(b) = backend {
        it.set_backend(b);
    }
    let main = m.main.unwrap_or_else(|| fail("module", "no main"));
    let mut out = it.call(main, args).unwrap_or_else(|e| fail("run", e));
    out.swap_remove(0)
}

const H: usize = 128;
const T: usize = 1000;

/// `w` and `xs`, as `benches/xla.rs` makes them.
fn rnn_args() -> Vec<Tensor> {
    let w: Vec<f32> = (0..H * H).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect();
    let xs: Vec<f32> = (0..T * H).map(|i| ((i * 104729 % 997) as f32 / 997.0 - 0.5) * 0.1).collect();
    vec![
        Tensor::from_vec(&[H, H], w).unwrap_or_else(|e| fail("w", e)),
        Tensor::from_vec(&[T, 1, H], xs).unwrap_or_else(|e| fail("xs", e)),
    ]
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_slice::<f32>().unwrap_or_else(|| fail("result", "not f32")).iter().map(|x| x.to_bits()).collect()
}

fn rnn(c: &mut Criterion) {
    let (m, src) = load("rnn_cell.lb");
    let args = rnn_args();
    let want = run(&m, None, &args);
    let mut jit = CraneliftBackend::new(0);
    let got = run(&m, Some(&mut jit), &args);
    assert_eq!(bits(&got), bits(&want), "jit differs from the interpreter");
    assert!(!jit.promoted().is_empty(), "nothing promoted\n{}", jit.stats_text());

    let mut g = c.benchmark_group("jit_tensor/rnn_h128_t1000");
    g.sample_size(20);
    g.throughput(Throughput::Elements(T as u64));
    g.bench_function("jit", |b| b.iter(|| run(&m, Some(&mut jit), black_box(&args))));
    g.bench_function("interp", |b| b.iter(|| run(&m, None, black_box(&args))));
    match plugin::find_or_install_cpu().map_err(|e| e.to_string()).and_then(|p| {
        let plugin = Plugin::load(p).map_err(|e| e.to_string())?;
        Client::new(plugin).map_err(|e| e.to_string())
    }) {
        Ok(client) => {
            let main = m.main.unwrap_or_else(|| fail("module", "no main"));
            let types = vec![(DType::F32, vec![H, H]), (DType::F32, vec![T, 1, H])];
            let lowered =
                hlo::lower_function(&m, main, &types, &EmitOptions::default()).unwrap_or_else(|e| fail("emit", e));
            let exe = client.compile(&lowered.text).unwrap_or_else(|e| fail("PJRT compile", e));
            let bufs: Vec<_> =
                args.iter().map(|a| client.buffer_from_tensor(a).unwrap_or_else(|e| fail("upload", e))).collect();
            let refs: Vec<_> = bufs.iter().collect();
            let out = exe.execute(&refs).unwrap_or_else(|e| fail("execute", e));
            let x = out[0].to_tensor().unwrap_or_else(|e| fail("read back", e));
            let close = x.as_slice::<f32>().zip(want.as_slice::<f32>()).is_some_and(|(p, q)| {
                p.len() == q.len() && p.iter().zip(q).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs()))
            });
            assert!(close, "xla differs from the interpreter: {x} vs {want}");
            g.bench_function("xla", |b| {
                b.iter(|| exe.execute(black_box(&refs)).unwrap_or_else(|e| fail("execute", e)))
            });
        }
        Err(e) => eprintln!("jit_tensor: no XLA CPU plugin ({e}); xla left out"),
    }
    let _ = src;
    g.finish();
}

fn small_tensor(c: &mut Criterion) {
    let (m, _) = load("small_tensor.lb");
    let (n_jit, n_interp) = (1_000_000i32, 100_000i32);
    let mut jit = CraneliftBackend::new(0);
    for n in [10, n_interp] {
        let a = [Tensor::scalar(n)];
        assert_eq!(bits(&run(&m, Some(&mut jit), &a)), bits(&run(&m, None, &a)), "small_tensor n={n}");
    }
    let mut g = c.benchmark_group("jit_tensor/small_tensor_f32x4");
    g.sample_size(20);
    g.throughput(Throughput::Elements(n_jit as u64));
    let a = [Tensor::scalar(n_jit)];
    g.bench_function("jit_1e6", |b| b.iter(|| run(&m, Some(&mut jit), black_box(&a))));
    g.throughput(Throughput::Elements(n_interp as u64));
    let a = [Tensor::scalar(n_interp)];
    g.bench_function("interp_1e5", |b| b.iter(|| run(&m, None, black_box(&a))));
    g.finish();
}

criterion_group!(benches, rnn, small_tensor);
criterion_main!(benches);
