//! Reshape across shape variables at run time (issue 14): element counts
//! that only the run time can compare (`f32[N]` to `[B, T]`) are checked
//! when the program runs, on every tier, with an error that names the op
//! and both shapes; the same program with fitting sizes gives one answer on
//! every tier (the spec programs `tests/spec/ops/reshape_shape_vars*.lb`
//! cover the values).

use loopvm::{Program, RunConfig, Tensor, Tier};

const TIERS: [Tier; 4] = [Tier::Interp, Tier::Jit, Tier::Xla, Tier::Auto];

/// `f32[N]` to `[B, T]` in `main` and in a loop body (a region the compiled
/// tiers take whole, binding `B` and `T` from the carry).
const SRC: &str = "fn main(x: f32[N], b: f32[B, T]) -> (f32[B, T], f32[B, T]) {
    let y = reshape(x, [B, T]) + b;
    let z = fori_loop(0, 3, |i, c| reshape(reshape(c, [B * T]) * 2.0, [B, T]) + reshape(x, [B, T]), b);
    (y, z)
}";

fn cfg(tier: Tier) -> RunConfig {
    RunConfig { tier, jit_threshold: Some(0), ..RunConfig::default() }
}

fn f32s(shape: &[usize], n: usize) -> Tensor {
    Tensor::from_vec(shape, (0..n).map(|i| i as f32).collect::<Vec<f32>>()).unwrap()
}

#[test]
fn a_count_mismatch_is_a_run_time_error_naming_reshape_and_the_shapes() {
    let p = Program::from_source(SRC, "reshape.lb").unwrap();
    let args = [f32s(&[5], 5), f32s(&[2, 2], 4)];
    for tier in TIERS {
        match p.run(&args, &cfg(tier)) {
            Ok(o) => panic!("{tier:?}: expected an error, got {}", o.value),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("reshape") && e.contains("cannot reshape f32[5] into shape [2, 2]"),
                    "{tier:?}: {e}"
                );
            }
        }
    }
}

#[test]
fn fitting_sizes_agree_on_every_tier() {
    let p = Program::from_source(SRC, "reshape.lb").unwrap();
    let args = [f32s(&[6], 6), f32s(&[2, 3], 6)];
    let want = p.run(&args, &cfg(Tier::Interp)).unwrap().value.to_string();
    // y = 2 * iota; z: c := 2c + x three times from c = b = x, i.e. 15 * x.
    assert_eq!(
        want,
        "(f32[2, 3] [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]], f32[2, 3] [[0.0, 15.0, 30.0], [45.0, 60.0, 75.0]])"
    );
    for tier in [Tier::Jit, Tier::Xla, Tier::Auto] {
        assert_eq!(p.run(&args, &cfg(tier)).unwrap().value.to_string(), want, "{tier:?}");
    }
}
