//! The `auto` tier sends a hot tensor loop to XLA, a hot scalar loop to
//! Cranelift, and says so in the run's loop reports; the answer is the
//! interpreter's.

use loopvm::{Program, RunConfig, Tier};

/// An inner `fori_loop` over an `f32[64]` carry, entered 4 times by an
/// outer loop: hot (≥ `AUTO_HOT_ITERATIONS` interpreted iterations) from
/// its third entry, so `auto` offers it to XLA from then on. The scalar
/// `while_loop` goes to Cranelift.
const SRC: &str = "
fn main(x: f32[64]) -> (f32[64], i32) {
    let y = fori_loop(0, 4, |k, acc| fori_loop(0, 600, |i, v| v * 0.999 + 0.001, acc), x);
    let n = while_loop(|n| n < 5000, |n| n + 3, 0);
    (y, n)
}
";

#[test]
fn auto_sends_a_hot_tensor_loop_to_xla_and_a_scalar_loop_to_cranelift() {
    // `auto` uses an installed plugin but never installs one (it says so
    // and stays on the host tiers): on a fresh machine this test may run
    // before any other test has installed the CPU plugin, so it installs
    // it first, as `loopvm plugin install cpu` would.
    loopvm_jit::xla::plugin::find_or_install_cpu().expect("the CPU plugin");
    let p = Program::from_source(SRC, "auto.lb").unwrap();
    let x = loopvm::Tensor::from_vec(&[64], (0..64).map(|i| i as f32 / 8.0).collect()).unwrap();
    let interp = p.run(std::slice::from_ref(&x), &RunConfig { tier: Tier::Interp, ..RunConfig::default() }).unwrap();
    let auto = p
        .run(std::slice::from_ref(&x), &RunConfig { tier: Tier::Auto, jit_threshold: Some(0), ..RunConfig::default() })
        .unwrap();
    assert_eq!(loopvm::diff::compare(&interp.value, &auto.value), None, "auto disagrees with the interpreter");
    let tiers: Vec<(&str, Tier)> = auto.loops.iter().map(|l| (l.kind, l.tier)).collect();
    assert!(tiers.contains(&("fori_loop", Tier::Xla)), "no loop ran on XLA: {tiers:?}\n{:#?}", auto.notes);
    assert!(tiers.contains(&("while_loop", Tier::Jit)), "the scalar loop did not run natively: {tiers:?}");
    assert!(auto.xla_executions >= 2, "XLA ran {} times", auto.xla_executions);
    // Cranelift declines the f32[64] loops (it keeps at most 16 elements in
    // registers); XLA declines nothing.
    assert!(
        auto.fallbacks.iter().all(|f| f.tier == Tier::Jit && f.fallback.reason.contains("more than 16 elements")),
        "{:?}",
        auto.fallbacks
    );
    let inner = auto.loops.iter().find(|l| l.tier == Tier::Xla).unwrap();
    // Two entries in the interpreter (1200 iterations), then XLA's.
    assert_eq!((inner.stats.entries, inner.stats.offloaded), (4, 2), "{:?}", inner.stats);
}
