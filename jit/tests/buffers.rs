//! The Cranelift tier on values of more than `MAX_ELEMS` elements: buffers
//! computed by the runtime's buffer kernels. Every program must give the
//! interpreter's results bit for bit, run natively, and allocate nothing
//! per iteration in steady state.

use loopvm_jit::cranelift::{CraneliftBackend, LoopTier};
use loopvm_runtime::{Buffer, Tensor};
use loopvm_vm::{Interpreter, Module, RunOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
#[path = "../../tests/support/rnn.rs"]
mod rnn;

/// Counts allocations made by this thread while counting is on.
struct CountingAlloc;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! { static ON: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ON.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: CountingAlloc = CountingAlloc;

fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ON.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    let r = f();
    let n = ALLOCS.load(Ordering::SeqCst) - before;
    ON.with(|c| c.set(false));
    (r, n)
}

fn compile(src: &str) -> Module {
    loopvm_frontend::compile(src, "buffers.lb").unwrap_or_else(|e| panic!("{e}"))
}

fn interp(m: &Module, args: &[Tensor]) -> Vec<Tensor> {
    let mut it = Interpreter::new(m, RunOptions::default());
    it.call(m.main.expect("main"), args).expect("interpreter run")
}

fn run_jit(m: &Module, args: &[Tensor], be: &mut CraneliftBackend) -> Vec<Tensor> {
    let mut it = Interpreter::new(m, RunOptions::default());
    it.set_backend(be);
    it.call(m.main.expect("main"), args).expect("jit run")
}

/// Bit-for-bit equality (any NaN equals any NaN).
fn assert_same(want: &[Tensor], got: &[Tensor], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}");
    for (x, y) in want.iter().zip(got) {
        let eq = x.dtype() == y.dtype()
            && x.shape() == y.shape()
            && match (x.buffer(), y.buffer()) {
                (Buffer::F32(p), Buffer::F32(q)) => {
                    p.iter().zip(q.iter()).all(|(u, v)| u.to_bits() == v.to_bits() || (u.is_nan() && v.is_nan()))
                }
                (Buffer::F64(p), Buffer::F64(q)) => {
                    p.iter().zip(q.iter()).all(|(u, v)| u.to_bits() == v.to_bits() || (u.is_nan() && v.is_nan()))
                }
                (Buffer::Bool(p), Buffer::Bool(q)) => p == q,
                (Buffer::I32(p), Buffer::I32(q)) => p == q,
                (Buffer::I64(p), Buffer::I64(q)) => p == q,
                (Buffer::U32(p), Buffer::U32(q)) => p == q,
                (Buffer::U8(p), Buffer::U8(q)) => p == q,
                _ => false,
            };
        assert!(eq, "{what}: interpreter {x}, jit {y}");
    }
}

/// Runs `src` on both tiers (threshold `threshold`), checks the results are
/// the same and that every loop ran natively.
fn check(src: &str, args: &[Tensor], threshold: u64) {
    let m = compile(src);
    let want = interp(&m, args);
    let mut be = CraneliftBackend::new(threshold);
    let got = run_jit(&m, args, &mut be);
    assert_same(&want, &got, src);
    assert!(!be.reports().is_empty(), "{src}: no loop seen");
    for r in be.reports() {
        assert!(r.tier != LoopTier::Interpreter, "{src}: {}", be.stats_text());
    }
}

fn ramp(shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * scale).collect();
    Tensor::from_vec(shape, v).unwrap()
}

#[test]
fn the_rnn_cell_runs_natively_and_agrees_bit_for_bit() {
    let args = rnn::rnn_args(50);
    check(rnn::RNN, &args, 0);
}

#[test]
fn large_values_agree() {
    let w = ramp(&[32, 32], 0.001);
    let cases: &[(&str, Vec<Tensor>)] = &[
        // Elementwise ops, broadcasting, comparisons (a bool buffer), selects by `if`.
        (
            "fn main(w: f32[32, 32]) -> f32[32, 32] {
                fori_loop(0, 7, |i, x| {
                    let y = x * 0.5 + w - 1.0;
                    let z = maximum(y, w * 2.0) / (abs(w) + 1.0);
                    if i % 2 == 0 { z } else { -z }
                }, w)
            }",
            vec![w.clone()],
        ),
        // Swapped carries: each takes the other's old value.
        (
            "fn main(w: f32[32, 32]) -> (f32[32, 32], f32[32, 32]) {
                fori_loop(0, 5, |i, (a, b)| (b, a + 1.0), (w, w * 3.0))
            }",
            vec![w.clone()],
        ),
        // A carry left unchanged and one computed; a small carry beside them.
        (
            "fn main(w: f32[32, 32]) -> (f32[32, 32], f32[32, 32], f32) {
                fori_loop(0, 5, |i, (a, b, s)| (a, b @ w + a, s + 1.0), (w, w, 0.0))
            }",
            vec![w.clone()],
        ),
        // Broadcast of a row, integer buffers, a large value reduced ... in a nested loop.
        (
            "fn main() -> i32[4, 8] {
                fori_loop(0, 3, |i, x| fori_loop(0, 2, |j, y| y * 3 + broadcast(iota(i32, 8), [4, 8]) - i, x),
                          zeros(i32, [4, 8]))
            }",
            vec![],
        ),
        // A scan whose rows and ys have more than 16 elements.
        (
            "fn main(xs: f32[6, 40]) -> (f32[40], f32[6, 40]) {
                scan(|h, x| (tanh(h + x), h * 2.0), zeros(f32, [40]), xs)
            }",
            vec![ramp(&[6, 40], 0.01)],
        ),
        // A small matmul, and a large product reduced to a small carry.
        (
            "fn main(w: f32[32, 32]) -> f32[4] {
                fori_loop(0, 4, |i, v| {
                    let m = reshape(broadcast(v, [8, 4]), [32]);
                    reshape(reshape(m @ w, [8, 4])[0], [4]) * 0.01 + v
                }, ones(f32, [4]))
            }",
            vec![w.clone()],
        ),
        // Reductions and casts of large values (a bool buffer counted, means, argmax along an axis).
        (
            "fn main(w: f32[32, 32]) -> (f32[32, 32], f32, i32[32], f32[32], i32) {
                fori_loop(0, 4, |i, (m, c, a, s, n)| {
                    let big = m > 0.0;
                    (maximum(m, w) - 0.01, c + sum(big as f32), argmax(m, axis: 1), mean(m, axis: 0) + s,
                     n + sum(big as i32) + max(argmax(w * (i as f32), axis: 0)))
                }, (w, 0.0, zeros(i32, [32]), zeros(f32, [32]), 0))
            }",
            vec![w.clone()],
        ),
        // A while_loop over a large carry (its condition lowered twice, on the carry's buffer).
        (
            "fn main(w: f32[32, 32]) -> (f32[32, 32], i32) {
                while_loop(|(x, n)| n < 5 && sum(x) < 1e30, |(x, n)| (x * 1.5 + w, n + 1), (w, 0))
            }",
            vec![w.clone()],
        ),
        // An if whose branches are not cheap: the large result flows through a block parameter.
        (
            "fn main(w: f32[32, 32]) -> f32[32, 32] {
                fori_loop(0, 6, |i, x| if i < 3 { tanh(x @ w) } else { exp(x) - x @ w }, w)
            }",
            vec![w.clone()],
        ),
    ];
    for (src, args) in cases {
        check(src, args, 0);
    }
}

#[test]
fn a_large_carry_is_taken_over_mid_flight() {
    // Hot after 1000 iterations: the interpreter's carry (and a scan's
    // partial ys) are handed over.
    check(
        "fn main(w: f32[32, 32]) -> f32[32, 32] { fori_loop(0, 5000, |i, x| tanh(x @ w + 0.5), w) }",
        &[ramp(&[32, 32], 0.001)],
        1000,
    );
    check(
        "fn main(xs: f32[3000, 20]) -> (f32[20], f32[3000, 20]) {
            scan(|h, x| (tanh(h * 0.5 + x), h + x), zeros(f32, [20]), xs)
        }",
        &[ramp(&[3000, 20], 0.001)],
        1000,
    );
}

#[test]
fn steady_state_iterations_allocate_nothing() {
    let m = compile(rnn::RNN);
    let (short, long) = (rnn::rnn_args(10), rnn::rnn_args(2000));
    let mut be = CraneliftBackend::new(0);
    // Compiles the loop; later runs reuse the code and its buffers.
    run_jit(&m, &short, &mut be);
    run_jit(&m, &long, &mut be);
    let (_, a) = count_allocs(|| run_jit(&m, &short, &mut be));
    let (_, b) = count_allocs(|| run_jit(&m, &long, &mut be));
    assert!(a > 0, "the run itself allocates its frame and result");
    assert_eq!(a, b, "10 and 2000 native iterations made different numbers of allocations");
    assert_eq!(be.reports()[0].tier, LoopTier::Cranelift, "{}", be.stats_text());
}
