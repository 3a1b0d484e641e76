//! Differential runs: one program on every tier, every result compared.

use crate::error::Error;
use crate::program::{Program, RunConfig, Tier};
use crate::value::Value;
use loopvm_runtime::{DType, Tensor};
use std::time::Duration;

/// Relative tolerance for `f32` results across tiers (see `docs/semantics.md`).
pub const RTOL_F32: f64 = 1e-5;
/// Relative tolerance for `f64` results across tiers.
pub const RTOL_F64: f64 = 1e-9;
/// Absolute tolerance floor for `f32` (values near zero).
pub const ATOL_F32: f64 = 1e-6;
/// Absolute tolerance floor for `f64`.
pub const ATOL_F64: f64 = 1e-12;

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

/// The first element where `b` differs from `a` beyond the tolerance, as a
/// message; `None` when they agree (exactly for integers and bools).
pub fn compare(a: &Value, b: &Value) -> Option<String> {
    let (la, lb) = (a.leaves(), b.leaves());
    if la.len() != lb.len() {
        return Some(format!("{} results against {}", la.len(), lb.len()));
    }
    for (k, (x, y)) in la.iter().zip(&lb).enumerate() {
        if let Some(m) = compare_tensors(x, y) {
            return Some(if la.len() > 1 { format!("result {k}: {m}") } else { m });
        }
    }
    None
}

fn compare_tensors(x: &Tensor, y: &Tensor) -> Option<String> {
    if x.dtype() != y.dtype() || x.shape() != y.shape() {
        return Some(format!("type {} against {}", x.type_string(), y.type_string()));
    }
    let (rtol, atol) = match x.dtype() {
        DType::F32 => (RTOL_F32, ATOL_F32),
        DType::F64 => (RTOL_F64, ATOL_F64),
        _ => (0.0, 0.0),
    };
    let (a, b) = (x.to_f64_vec(), y.to_f64_vec());
    // Elements that cancel to near zero carry the rounding error of the
    // tensor's large elements: the absolute term scales with the largest one.
    let scale = a.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
    let atol = atol + rtol * scale;
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        let same = (p.is_nan() && q.is_nan()) || p == q || (p - q).abs() <= atol + rtol * p.abs().max(q.abs());
        if !same {
            return Some(format!("element {} (flat index {i}): {p:?} against {q:?}", index_of(i, x.shape())));
        }
    }
    None
}

fn index_of(mut flat: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    for (k, d) in shape.iter().enumerate().rev() {
        if *d > 0 {
            idx[k] = flat % d;
            flat /= d;
        }
    }
    format!("{idx:?}")
}

/// Runs `main` on the interpreter (the reference) and on `tiers`, comparing
/// every result with the reference.
pub fn diff(prog: &Program, args: &[Tensor], tiers: &[Tier]) -> Result<Vec<TierResult>, Error> {
    let mut out: Vec<TierResult> = Vec::new();
    let mut reference: Option<Value> = None;
    for &tier in std::iter::once(&Tier::Interp).chain(tiers.iter().filter(|t| **t != Tier::Interp)) {
        let cfg = RunConfig { tier, capture_print: true, ..RunConfig::default() };
        let start = std::time::Instant::now();
        let outcome = prog.run(args, &cfg).map(|o| o.value);
        let time = start.elapsed();
        let mismatch = match (&reference, &outcome) {
            (Some(r), Ok(v)) => compare(r, v),
            _ => None,
        };
        if tier == Tier::Interp {
            let v = outcome?;
            reference = Some(v.clone());
            out.push(TierResult { tier, outcome: Ok(v), time, mismatch: None });
            continue;
        }
        out.push(TierResult { tier, outcome, time, mismatch });
    }
    Ok(out)
}
