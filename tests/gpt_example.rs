//! The GPT of `examples/gpt/gpt.lb`, made small (2 layers, width 16, 10
//! steps), trained on every tier: the losses of each step must be JAX's for
//! the same model, initial key and batches (`benches/peers/gpt_jax.py`
//! wrote the numbers kept below), to a relative 1e-4.
//!
//! The example's model code is used as it is; only its configuration
//! section (sizes, `init`, `main`) is swapped for the one below.

use loopvm::{Program, RunConfig, Tensor, Tier};
#[path = "support/gpt.rs"]
mod gpt;

/// The configuration of `benches/peers/gpt_jax.py` (`init` in
/// `support/gpt.rs`): B = 4, S = 10 steps, learning rate 3e-3.
const MAIN: &str = r#"
fn main(data: i32[N]) {
    let ks = split(key(0), 2);
    train(data, init(ks[0]), zeros(f32, [10]), zeros(i32, [4, 8]), ks[1], 3e-3, 1)
}
"#;

/// The corpus of `benches/peers/gpt_jax.py`: each character's code mod 16.
const TEXT: &str = "the quick brown fox jumps over the lazy dog; a loop compiled once, as a loop. ";

/// `JAX_PLATFORMS=cpu python benches/peers/gpt_jax.py` (JAX 0.10.2, CPU):
/// `losses: 2.7818329334259033, 2.730072259902954, 2.7072272300720215,
/// 2.6518447399139404, 2.684770107269287, 2.7170073986053467,
/// 2.632899522781372, 2.6065752506256104, 2.6578609943389893,
/// 2.6136507987976074`.
const LOSSES_JAX: [f32; 10] = [
    2.781_833,
    2.730_072_3,
    2.707_227_2,
    2.651_844_7,
    2.684_77,
    2.717_007_4,
    2.632_899_5,
    2.606_575_3,
    2.657_861,
    2.613_650_8,
];

fn program() -> Program {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gpt/gpt.lb");
    let src = std::fs::read_to_string(path).expect("examples/gpt/gpt.lb");
    let cut = src.find("# ---- configuration").expect("gpt.lb has a configuration section");
    let src = format!("{}{}{MAIN}", &src[..cut], gpt::INIT);
    Program::from_source(&src, "gpt.lb").unwrap_or_else(|e| panic!("{e}"))
}

fn corpus() -> Tensor {
    let ids: Vec<i32> = TEXT.repeat(4).bytes().map(|c| i32::from(c) % 16).collect();
    Tensor::from_vec(&[ids.len()], ids).expect("corpus")
}

fn losses(tier: Tier) -> (Vec<f32>, Vec<String>) {
    let cfg = RunConfig { tier, capture_print: true, jit_threshold: Some(0), ..RunConfig::default() };
    let out = program().run(&[corpus()], &cfg).unwrap_or_else(|e| panic!("{}: {e}", tier.as_str()));
    if tier == Tier::Xla {
        // The whole training loop is one XLA executable (nothing handed back).
        assert!(out.fallbacks.is_empty() && out.xla_executions > 0, "{:?}", out.notes);
    }
    let leaves = out.value.leaves();
    let last = leaves.last().expect("the loss curve");
    (last.as_slice::<f32>().expect("f32 losses").to_vec(), out.printed.lines().map(String::from).collect())
}

fn check(tier: Tier) {
    let (got, printed) = losses(tier);
    assert_eq!(got.len(), LOSSES_JAX.len(), "{}", tier.as_str());
    for (step, (g, w)) in got.iter().zip(LOSSES_JAX).enumerate() {
        let err = (g - w).abs() / w.abs();
        assert!(err <= 1e-4, "{}: step {step}: loss {g}, JAX {w} (relative error {err:.2e})", tier.as_str());
    }
    // `print((step, loss))` every step, from inside the training loop.
    assert_eq!(printed.len(), LOSSES_JAX.len(), "{}: {printed:?}", tier.as_str());
    assert!(printed[0].starts_with("(i32 0, f32 2.78"), "{}: {printed:?}", tier.as_str());
}

#[test]
fn gpt_losses_match_jax_on_interp() {
    check(Tier::Interp);
}

#[test]
fn gpt_losses_match_jax_on_jit() {
    check(Tier::Jit);
}

#[test]
fn gpt_losses_match_jax_on_xla() {
    check(Tier::Xla);
}
