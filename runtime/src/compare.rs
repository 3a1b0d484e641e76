//! The one rule by which two results are "the same answer": `loopvm diff`,
//! the fuzzer, the spec runner and every back end's tests call
//! [`first_difference`] (see `docs/semantics.md`, "When two tiers agree").
//!
//! - dtypes and shapes must be equal;
//! - bools and integers are equal exactly, in their own dtype (an `i64` is
//!   never rounded through `f64`);
//! - floats per element: NaN matches NaN (any payload); an infinity matches
//!   only the same infinity; otherwise `|got - want| <= atol + rtol * |want|`
//!   with [`Tolerance::of`] the dtype. `-0.0` matches `0.0` (they compare
//!   equal, as in NumPy's `allclose` and JAX's test tolerances).

use crate::{Buffer, DType, Element, Tensor};
use std::fmt;

/// The float tolerance of a comparison: `|got - want| <= atol + rtol * |want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative term, a fraction of the reference element.
    pub rtol: f64,
    /// Absolute floor, for elements near zero.
    pub atol: f64,
}

impl Tolerance {
    /// Bit-for-bit up to NaN payloads and the sign of zero.
    pub const EXACT: Tolerance = Tolerance { rtol: 0.0, atol: 0.0 };
    /// `f32` across tiers: a few ulps of relative error (XLA's vectorised
    /// transcendental functions and fused reductions differ from libm and
    /// from a left-to-right sum by that much).
    pub const F32: Tolerance = Tolerance { rtol: 1e-5, atol: 1e-6 };
    /// `f64` across tiers.
    pub const F64: Tolerance = Tolerance { rtol: 1e-9, atol: 1e-12 };
    /// `bf16` across tiers: about one unit in the last place (2^-7 of the
    /// value at most). Each op rounds to nearest even on every tier, but an
    /// `f32` intermediate a few `f32` ulps apart (a transcendental function,
    /// a sum in another order) can round to the neighbouring `bf16`. JAX's
    /// own test tolerance for `bf16`.
    pub const BF16: Tolerance = Tolerance { rtol: 1e-2, atol: 1e-2 };
    /// `f16` across tiers: about one unit in the last place (2^-10 of the
    /// value at most), for the reason of [`BF16`](Self::BF16). JAX's own
    /// test tolerance for `f16`.
    pub const F16: Tolerance = Tolerance { rtol: 1e-3, atol: 1e-3 };

    /// The cross-tier tolerance of `dtype` ([`EXACT`](Self::EXACT) for bools
    /// and integers, where it is not used).
    pub const fn of(dtype: DType) -> Tolerance {
        match dtype {
            DType::F32 => Tolerance::F32,
            DType::F64 => Tolerance::F64,
            DType::BF16 => Tolerance::BF16,
            DType::F16 => Tolerance::F16,
            _ => Tolerance::EXACT,
        }
    }
}

/// Where and how `got` differs from `want`.
#[derive(Clone, Debug, PartialEq)]
pub enum Difference {
    /// Different dtype or shape (`want`, `got` as type strings).
    Type {
        /// The reference's type, e.g. `f32[3]`.
        want: String,
        /// The other's type.
        got: String,
    },
    /// The first element outside the tolerance.
    Element {
        /// Row-major flat index.
        flat: usize,
        /// The multi-index.
        index: Vec<usize>,
        /// The reference element as `{:?}` prints it.
        want: String,
        /// The other element.
        got: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Type { want, got } => write!(f, "type {want} against {got}"),
            Difference::Element { flat, index, want, got } => {
                write!(f, "element {index:?} (flat index {flat}): {want} against {got}")
            }
        }
    }
}

/// `true` when float `got` is the same answer as `want` under `tol`.
pub fn floats_agree(want: f64, got: f64, tol: Tolerance) -> bool {
    if want.is_nan() || got.is_nan() {
        want.is_nan() && got.is_nan()
    } else if want.is_infinite() || got.is_infinite() {
        want == got
    } else {
        // `==` first: equal values pass even where the bound underflows.
        want == got || (got - want).abs() <= tol.atol + tol.rtol * want.abs()
    }
}

/// The first place where `got` differs from the reference `want` under the
/// dtype's cross-tier tolerance; `None` when they agree.
pub fn first_difference(want: &Tensor, got: &Tensor) -> Option<Difference> {
    first_difference_with(want, got, Tolerance::of(want.dtype()))
}

/// [`first_difference`] with the float tolerance `tol` (integers and bools
/// are always exact).
pub fn first_difference_with(want: &Tensor, got: &Tensor, tol: Tolerance) -> Option<Difference> {
    if want.dtype() != got.dtype() || want.shape() != got.shape() {
        return Some(Difference::Type { want: want.type_string(), got: got.type_string() });
    }
    fn exact<T: Element>(a: &[T], b: &[T]) -> Option<usize> {
        a.iter().zip(b).position(|(x, y)| x != y)
    }
    fn close<T: Element>(a: &[T], b: &[T], tol: Tolerance) -> Option<usize> {
        a.iter().zip(b).position(|(x, y)| !floats_agree(x.to_f64(), y.to_f64(), tol))
    }
    fn show<T: Element>(v: &[T], i: usize) -> String {
        format!("{:?}", v[i])
    }
    let (at, w, g) = match (want.buffer(), got.buffer()) {
        (Buffer::Bool(a), Buffer::Bool(b)) => exact(a, b).map(|i| (i, show(a, i), show(b, i))),
        (Buffer::I32(a), Buffer::I32(b)) => exact(a, b).map(|i| (i, show(a, i), show(b, i))),
        (Buffer::I64(a), Buffer::I64(b)) => exact(a, b).map(|i| (i, show(a, i), show(b, i))),
        (Buffer::U32(a), Buffer::U32(b)) => exact(a, b).map(|i| (i, show(a, i), show(b, i))),
        (Buffer::U8(a), Buffer::U8(b)) => exact(a, b).map(|i| (i, show(a, i), show(b, i))),
        (Buffer::BF16(a), Buffer::BF16(b)) => close(a, b, tol).map(|i| (i, show(a, i), show(b, i))),
        (Buffer::F16(a), Buffer::F16(b)) => close(a, b, tol).map(|i| (i, show(a, i), show(b, i))),
        (Buffer::F32(a), Buffer::F32(b)) => close(a, b, tol).map(|i| (i, show(a, i), show(b, i))),
        (Buffer::F64(a), Buffer::F64(b)) => close(a, b, tol).map(|i| (i, show(a, i), show(b, i))),
        _ => unreachable!("equal dtypes hold equal buffer kinds"),
    }?;
    Some(Difference::Element { flat: at, index: unflatten(at, want.shape()), want: w, got: g })
}

/// The multi-index of row-major flat index `flat` in `shape`.
pub fn unflatten(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, d) in shape.iter().enumerate().rev() {
        if *d > 0 {
            idx[k] = flat % d;
            flat /= d;
        }
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn infinity_matches_only_itself() {
        // The case: the interpreter's -inf against XLA's -102.36.
        let want = f32s(&[f32::NEG_INFINITY, f32::NAN, f32::NAN]);
        let got = f32s(&[-102.36, -0.0, -100.67]);
        let d = first_difference(&want, &got).expect("must differ");
        assert_eq!(d.to_string(), "element [0] (flat index 0): -inf against -102.36");
        assert!(first_difference(&f32s(&[f32::INFINITY]), &f32s(&[f32::MAX])).is_some());
        assert!(first_difference(&f32s(&[f32::MAX]), &f32s(&[f32::INFINITY])).is_some());
        assert!(first_difference(&f32s(&[f32::INFINITY]), &f32s(&[f32::NEG_INFINITY])).is_some());
        assert!(first_difference(
            &f32s(&[f32::INFINITY, f32::NEG_INFINITY]),
            &f32s(&[f32::INFINITY, f32::NEG_INFINITY])
        )
        .is_none());
    }

    #[test]
    fn nan_matches_nan_only() {
        assert!(first_difference(&f32s(&[f32::NAN]), &f32s(&[-f32::NAN])).is_none());
        assert!(first_difference(&f32s(&[f32::NAN]), &f32s(&[0.0])).is_some());
        assert!(first_difference(&f32s(&[0.0]), &f32s(&[f32::NAN])).is_some());
        assert!(first_difference(&f32s(&[f32::NAN]), &f32s(&[f32::INFINITY])).is_some());
    }

    #[test]
    fn signed_zeros_agree() {
        assert!(first_difference(&f32s(&[0.0, -0.0]), &f32s(&[-0.0, 0.0])).is_none());
    }

    #[test]
    fn i64_is_exact_in_its_own_dtype() {
        // Both round to the same f64 (2^63): they must still differ.
        let a = Tensor::from_vec(&[2], vec![1i64, i64::MAX]).unwrap();
        let b = Tensor::from_vec(&[2], vec![1i64, i64::MAX - 1]).unwrap();
        assert_eq!((i64::MAX as f64), ((i64::MAX - 1) as f64));
        let d = first_difference(&a, &b).expect("must differ");
        assert_eq!(d.to_string(), format!("element [1] (flat index 1): {} against {}", i64::MAX, i64::MAX - 1));
        let i = Tensor::from_vec(&[1], vec![7i32]).unwrap();
        assert!(first_difference(&i, &Tensor::from_vec(&[1], vec![8i32]).unwrap()).is_some());
        let t = Tensor::from_vec(&[2], vec![true, false]).unwrap();
        assert!(first_difference(&t, &Tensor::from_vec(&[2], vec![true, true]).unwrap()).is_some());
        assert!(first_difference(&t, &t.clone()).is_none());
    }

    #[test]
    fn tolerance_is_per_element() {
        // A small element beside a large one is held to its own size.
        let want = f32s(&[1e6, 1.0]);
        assert!(first_difference(&want, &f32s(&[1e6, 1.0 + 1e-6])).is_none());
        let d = first_difference(&want, &f32s(&[1e6, 1.001])).expect("1.001 is not 1");
        assert!(matches!(d, Difference::Element { flat: 1, .. }), "{d}");
        // Within rtol of the reference.
        assert!(first_difference(&f32s(&[100.0]), &f32s(&[100.0009])).is_none());
        assert!(first_difference(&f32s(&[100.0]), &f32s(&[100.002])).is_some());
        // Near zero, the absolute floor.
        assert!(first_difference(&f32s(&[0.0]), &f32s(&[5e-7])).is_none());
        assert!(first_difference(&f32s(&[0.0]), &f32s(&[2e-6])).is_some());
    }

    #[test]
    fn types_must_match() {
        let a = f32s(&[1.0, 2.0]);
        let b = Tensor::from_vec(&[1, 2], vec![1.0f32, 2.0]).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap().to_string(), "type f32[2] against f32[1, 2]");
        let c = Tensor::from_vec(&[2], vec![1.0f64, 2.0]).unwrap();
        assert!(first_difference(&a, &c).is_some());
        let d = Tensor::from_vec(&[2, 2], vec![1.0f64, 2.0, 3.0, 4.0]).unwrap();
        let e = Tensor::from_vec(&[2, 2], vec![1.0f64, 2.0, 3.0, 4.5]).unwrap();
        assert_eq!(first_difference(&d, &e).unwrap().to_string(), "element [1, 1] (flat index 3): 4.0 against 4.5");
    }
}
