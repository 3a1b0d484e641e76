//! The RNN cell scan of the XLA issue (`tanh(h @ w + x)`, `h: f32[1, 128]`)
//! and its deterministic arguments, shared by the back ends' tests and
//! `benches/gpu_loop_overhead.rs` (included with `#[path]`).

use loopvm_runtime::Tensor;

/// The program: `T` steps of `h = tanh(h @ w + x)`.
pub const RNN: &str = "
fn main(h: f32[1, 128], w: f32[128, 128], xs: f32[N, 1, 128]) -> f32[1, 128] {
    let (last, _) = scan(|h, x| (tanh(h @ w + x), 0), h, xs);
    last
}
";

/// `h`, `w` and `xs` for `n` steps, small enough that `tanh` does not
/// saturate (so that no step is trivial).
pub fn rnn_args(n: usize) -> Vec<Tensor> {
    let h: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin() * 0.1).collect();
    let w: Vec<f32> = (0..128 * 128).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect();
    let xs: Vec<f32> = (0..n * 128).map(|i| ((i * 104729 % 997) as f32 / 997.0 - 0.5) * 0.1).collect();
    let t = |shape: &[usize], v: Vec<f32>| Tensor::from_vec(shape, v).unwrap_or_else(|e| panic!("rnn_args: {e}"));
    vec![t(&[1, 128], h), t(&[128, 128], w), t(&[n, 1, 128], xs)]
}
