//! Differential runs: one program on every tier, every result compared.

use crate::error::Error;
use crate::program::{Program, RunConfig, Tier};
use crate::value::Value;
use loopvm_runtime::Tensor;
use std::time::Duration;

pub use loopvm_runtime::compare::{first_difference, first_difference_with, Difference, Tolerance};
use loopvm_runtime::DType;

/// The float tolerance of a run partitioned over several devices against
/// the interpreter: XLA's partitioner splits each reduction over a sharded
/// axis into per-device partial reductions and an all-reduce, a second
/// reassociation on top of XLA's own, so `f32` results get 10 times the
/// cross-tier tolerance (`rtol` 1e-4, `atol` 1e-5) and `f64` results
/// `rtol` 1e-8, `atol` 1e-11 (`docs/semantics.md`, "Several devices").
pub fn partitioned_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::F32 => Tolerance { rtol: 1e-4, atol: 1e-5 },
        DType::F64 => Tolerance { rtol: 1e-8, atol: 1e-11 },
        d => Tolerance::of(d),
    }
}

impl TierResult {
    /// `true` when this tier disagrees with the reference: a different
    /// result, or a failure that is not "this tier cannot run it".
    pub fn disagrees(&self) -> bool {
        match &self.outcome {
            Ok(_) => self.mismatch.is_some(),
            Err(e) => !matches!(e.kind(), crate::ErrorKind::Tier(_)),
        }
    }
}

/// One tier's outcome in a differential run.
#[derive(Debug)]
pub struct TierResult {
    /// The tier.
    pub tier: Tier,
    /// Its result, or why it did not run.
    pub outcome: Result<Value, Error>,
    /// Wall-clock time of the run (including compilation).
    pub time: Duration,
    /// The first difference from the reference tier, if any.
    pub mismatch: Option<String>,
}

/// The first place where `b` differs from the reference `a`, as a message;
/// `None` when they agree. The rule is [`first_difference`]'s, leaf by leaf:
/// integers and bools exactly, floats per element within [`Tolerance::of`]
/// their dtype, NaN only against NaN, an infinity only against itself.
pub fn compare(a: &Value, b: &Value) -> Option<String> {
    compare_within(a, b, Tolerance::of)
}

/// [`compare`] with the float tolerance `tol` gives each dtype.
pub fn compare_within(a: &Value, b: &Value, tol: impl Fn(DType) -> Tolerance) -> Option<String> {
    let (la, lb) = (a.leaves(), b.leaves());
    if la.len() != lb.len() {
        return Some(format!("{} results against {}", la.len(), lb.len()));
    }
    for (k, (x, y)) in la.iter().zip(&lb).enumerate() {
        if let Some(m) = first_difference_with(x, y, tol(x.dtype())) {
            return Some(if la.len() > 1 { format!("result {k}: {m}") } else { m.to_string() });
        }
    }
    None
}

/// The first line where the output of `print` differs from the reference's
/// (compared exactly: every tier prints the same values through the same
/// formatting), as a message; `None` when the outputs are identical.
pub fn compare_printed(reference: &str, got: &str) -> Option<String> {
    if reference == got {
        return None;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (reference.lines().collect(), got.lines().collect());
    for k in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(k).copied(), b.get(k).copied());
        if x != y {
            let show = |l: Option<&str>| l.map_or("(no line)".to_string(), |l| format!("`{l}`"));
            return Some(format!("printed line {}: {} against {}", k + 1, show(x), show(y)));
        }
    }
    Some("printed output differs (line endings)".into())
}

/// Runs `main` on the interpreter (the reference) and on `tiers`, comparing
/// every result, and the output of `print`, with the reference.
pub fn diff(prog: &Program, args: &[Tensor], tiers: &[Tier]) -> Result<Vec<TierResult>, Error> {
    diff_with(prog, args, tiers, &RunConfig::default())
}

/// [`diff`] with the devices, mesh and sharded arguments of `base`
/// (`loopvm diff --devices 4`): the xla tier runs partitioned, the
/// interpreter and the jit tier on one device, and floats are compared
/// within [`partitioned_tolerance`] when the run has several devices.
pub fn diff_with(prog: &Program, args: &[Tensor], tiers: &[Tier], base: &RunConfig) -> Result<Vec<TierResult>, Error> {
    let several = crate::shard::mesh_of(base.devices, base.mesh)?.devices() > 1;
    let tol = |d: DType| if several { partitioned_tolerance(d) } else { Tolerance::of(d) };
    let mut out: Vec<TierResult> = Vec::new();
    let mut reference: Option<Value> = None;
    let mut printed_ref = String::new();
    for &tier in std::iter::once(&Tier::Interp).chain(tiers.iter().filter(|t| **t != Tier::Interp)) {
        let cfg = RunConfig {
            tier,
            capture_print: true,
            devices: base.devices,
            mesh: base.mesh,
            shard: base.shard.clone(),
            ..RunConfig::default()
        };
        let start = std::time::Instant::now();
        let run = prog.run(args, &cfg);
        let time = start.elapsed();
        let printed = run.as_ref().map(|o| o.printed.clone()).unwrap_or_default();
        let outcome = run.map(|o| o.value);
        let mismatch = match (&reference, &outcome) {
            (Some(r), Ok(v)) => compare_within(r, v, tol).or_else(|| compare_printed(&printed_ref, &printed)),
            _ => None,
        };
        if tier == Tier::Interp {
            printed_ref = printed;
            let v = outcome?;
            reference = Some(v.clone());
            out.push(TierResult { tier, outcome: Ok(v), time, mismatch: None });
            continue;
        }
        out.push(TierResult { tier, outcome, time, mismatch });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<T: loopvm_runtime::Element>(v: Vec<T>) -> Value {
        Value::Tensor(Tensor::from_vec(&[v.len()], v).unwrap())
    }

    #[test]
    fn printed_output_is_compared_line_by_line() {
        assert_eq!(compare_printed("a\nb\n", "a\nb\n"), None);
        assert_eq!(compare_printed("a\nb\n", "a\nc\n").unwrap(), "printed line 2: `b` against `c`");
        assert_eq!(compare_printed("a\n", "a\nb\n").unwrap(), "printed line 2: (no line) against `b`");
    }

    #[test]
    fn an_infinity_against_a_finite_value_differs() {
        // Issue 12: the interpreter's -inf against XLA's rewritten -102.36 had passed.
        let want = t(vec![f32::NEG_INFINITY, f32::NAN, f32::NAN]);
        let got = t(vec![-102.35682f32, -0.0, -100.67]);
        assert_eq!(compare(&want, &got).unwrap(), "element [0] (flat index 0): -inf against -102.35682");
        assert!(compare(&want, &t(vec![f32::NEG_INFINITY, f32::NAN, -f32::NAN])).is_none());
    }

    #[test]
    fn i64_values_that_round_alike_differ() {
        let want = Value::Tuple(vec![t(vec![1.5f32]), t(vec![i64::MAX, 0])]);
        let got = Value::Tuple(vec![t(vec![1.5f32]), t(vec![i64::MAX - 1, 0])]);
        let m = compare(&want, &got).unwrap();
        assert_eq!(m, format!("result 1: element [0] (flat index 0): {} against {}", i64::MAX, i64::MAX - 1));
    }

    #[test]
    fn a_small_element_beside_a_large_one_is_checked() {
        assert!(compare(&t(vec![1e30f32, 1.0]), &t(vec![1e30f32, 1.5])).is_some());
        assert!(compare(&t(vec![1e30f32, 1.0]), &t(vec![1.0000001e30f32, 1.0])).is_none());
    }
}
