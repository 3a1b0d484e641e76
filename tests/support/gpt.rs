//! The tiny GPT's `init` (`benches/peers/gpt_jax.py`'s configuration:
//! V = 16, T = 8, D = 16, H = 2, E = 8, F = 32, L = 2), shared by the tests
//! that append it to `examples/gpt/gpt.lb`'s model.

/// `init(k)`: the parameters drawn from key `k`, as gpt_jax.py's `init`.
pub const INIT: &str = r#"
fn init(k: u32[2]) {
    let ks = split(k, 8);
    let depth = rsqrt(2.0 * 2.0);
    let layers = (ones(f32, [2, 16]), zeros(f32, [2, 16]),
                  0.02 * normal(ks[2], f32, [2, 2, 16, 8]),
                  0.02 * normal(ks[3], f32, [2, 2, 16, 8]),
                  0.02 * normal(ks[4], f32, [2, 2, 16, 8]),
                  0.02 * depth * normal(ks[5], f32, [2, 2, 8, 16]),
                  ones(f32, [2, 16]), zeros(f32, [2, 16]),
                  0.02 * normal(ks[6], f32, [2, 16, 32]), zeros(f32, [2, 32]),
                  0.02 * depth * normal(ks[7], f32, [2, 32, 16]), zeros(f32, [2, 16]));
    (0.02 * normal(ks[0], f32, [16, 16]), 0.02 * normal(ks[1], f32, [8, 16]), layers,
     ones(f32, [16]), zeros(f32, [16]))
}
"#;
