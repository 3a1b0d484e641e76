//! Gathers along one axis (`take` and its transpose `scatter_add`), windows
//! at run-time positions (`dynamic_slice`, `dynamic_update_slice`) and
//! running sums (`cumsum`).
//!
//! Positions follow JAX: `take` clamps each id into `[0, n - 1]`
//! (`jnp.take(..., mode="clip")`, [`rules::take_position`]); a window's start
//! has the axis length added once when negative and is then clamped so the
//! window fits (`lax.dynamic_slice`, [`rules::window_start`]).

use super::num::Accumulate;
use super::{contiguous_strides, elems, gather};
use crate::{out_buffer, rules, DType, Element, RuntimeError, Shape, Tensor};

/// The axis length before, at and after `axis` of `shape`: `(outer, n, inner)`.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// The positions `take` reads along an axis of length `n` for the integer
/// tensor `ids` (clamped), after checking the axis and the ids' dtype.
fn positions(op: &'static str, a: &Tensor, ids: &Tensor, axis: usize) -> Result<Vec<usize>, RuntimeError> {
    if axis >= a.rank() {
        return Err(RuntimeError::new(op, format!("axis {axis} is out of range for {}", a.type_string())));
    }
    let n = a.shape()[axis];
    let raw: Vec<i64> = match ids.dtype() {
        DType::I32 => elems::<i32>(op, ids)?.iter().map(|&i| i64::from(i)).collect(),
        DType::I64 => elems::<i64>(op, ids)?.to_vec(),
        DType::U32 => elems::<u32>(op, ids)?.iter().map(|&i| i64::from(i)).collect(),
        DType::U8 => elems::<u8>(op, ids)?.iter().map(|&i| i64::from(i)).collect(),
        _ => return Err(RuntimeError::new(op, format!("ids must be an integer tensor, got {}", ids.type_string()))),
    };
    if n == 0 && !raw.is_empty() {
        return Err(RuntimeError::new(op, format!("cannot take from the empty axis {axis} of {}", a.type_string())));
    }
    Ok(raw.into_iter().map(|i| rules::take_position(n as u64, i) as usize).collect())
}

/// `jnp.take(a, ids, axis, mode="clip")`: axis `axis` of `a` replaced by the
/// shape of `ids` (an integer tensor of any rank), each id clamped into
/// `[0, n - 1]`.
pub fn take(a: &Tensor, ids: &Tensor, axis: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    const OP: &str = "take";
    let pos = positions(OP, a, ids, axis)?;
    let shape: Shape = rules::take(a.shape(), ids.shape(), axis)
        .map_err(|_| RuntimeError::new(OP, format!("axis {axis} is out of range for {}", a.type_string())))?;
    rules::numel(&shape).ok_or_else(|| RuntimeError::new(OP, "the result is too large"))?;
    let (outer, n, inner) = split_at_axis(a.shape(), axis);
    let m = pos.len();
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>(OP, a)?;
        let dst = out_buffer::<T>(out, &shape);
        for o in 0..outer {
            for (j, &p) in pos.iter().enumerate() {
                let from = (o * n + p) * inner;
                let to = (o * m + j) * inner;
                dst[to..to + inner].copy_from_slice(&src[from..from + inner]);
            }
        }
    });
    Ok(())
}

/// The transpose of [`take`]: a copy of `base` to which every update of `u`
/// (of shape `take(base, ids, axis)`'s) is added at the position its id
/// reads; updates at one position accumulate in the order of `ids`
/// (row-major), as XLA's `scatter` does.
pub fn scatter_add(
    base: &Tensor,
    ids: &Tensor,
    u: &Tensor,
    axis: usize,
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    const OP: &str = "scatter_add";
    let pos = positions(OP, base, ids, axis)?;
    if base.dtype() == DType::Bool || u.dtype() != base.dtype() {
        return Err(RuntimeError::new(
            OP,
            format!("needs one numeric dtype, base: {}, updates: {}", base.type_string(), u.type_string()),
        ));
    }
    let want: Shape = rules::take(base.shape(), ids.shape(), axis)
        .map_err(|_| RuntimeError::new(OP, format!("axis {axis} is out of range for {}", base.type_string())))?;
    if u.shape() != want.as_slice() {
        return Err(RuntimeError::new(
            OP,
            format!(
                "updates {} do not have the shape {want:?} (base {}, ids {})",
                u.type_string(),
                base.type_string(),
                ids.type_string()
            ),
        ));
    }
    let (outer, n, inner) = split_at_axis(base.shape(), axis);
    let m = pos.len();
    crate::with_dtype!(base.dtype(), T => {
        let src = elems::<T>(OP, base)?;
        let up = elems::<T>(OP, u)?;
        let dst = out_buffer::<T>(out, base.shape());
        dst.copy_from_slice(src);
        for o in 0..outer {
            for (j, &p) in pos.iter().enumerate() {
                let to = (o * n + p) * inner;
                let from = (o * m + j) * inner;
                for (d, &s) in dst[to..to + inner].iter_mut().zip(&up[from..from + inner]) {
                    *d = T::accumulate(*d, s);
                }
            }
        }
    });
    Ok(())
}

/// The first position of the window of `sizes` in `a` at the run-time
/// `starts` (one per axis), and the flat offset of its first element.
fn place_window(op: &'static str, a: &Tensor, starts: &[i64], sizes: &[usize]) -> Result<usize, RuntimeError> {
    let sz: Vec<u64> = sizes.iter().map(|&s| s as u64).collect();
    match rules::window(a.shape(), &sz) {
        Ok(()) => {}
        Err(rules::WindowError::Rank { rank, got }) => {
            return Err(RuntimeError::new(
                op,
                format!("a window of rank {got} in {}, which has rank {rank}", a.type_string()),
            ))
        }
        Err(rules::WindowError::TooLarge { axis }) => {
            return Err(RuntimeError::new(
                op,
                format!("the window {sizes:?} is larger than {} along axis {axis}", a.type_string()),
            ))
        }
    }
    if starts.len() != a.rank() {
        return Err(RuntimeError::new(
            op,
            format!("{} starts for {}, which has rank {}", starts.len(), a.type_string(), a.rank()),
        ));
    }
    let strides = contiguous_strides(a.shape());
    let mut offset = 0usize;
    for (((&s, &dim), &size), &stride) in starts.iter().zip(a.shape()).zip(sizes).zip(&strides) {
        offset += rules::window_start(dim as u64, size as u64, s) as usize * stride as usize;
    }
    Ok(offset)
}

/// `lax.dynamic_slice(a, starts, sizes)`: the window of `sizes` (one per
/// axis, none longer than its axis) at `starts`, each start wrapped once when
/// negative and clamped so that the window fits.
pub fn dynamic_slice(
    a: &Tensor,
    starts: &[i64],
    sizes: &[usize],
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    const OP: &str = "dynamic_slice";
    let offset = place_window(OP, a, starts, sizes)?;
    let strides = contiguous_strides(a.shape());
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>(OP, a)?;
        let dst = out_buffer::<T>(out, sizes);
        gather(src, offset as isize, sizes, &strides, dst);
    });
    Ok(())
}

/// `lax.dynamic_update_slice(a, u, starts)`: a copy of `a` with the window of
/// `u`'s shape at `starts` (placed as in [`dynamic_slice`]) replaced by `u`.
pub fn dynamic_update_slice(
    a: &Tensor,
    u: &Tensor,
    starts: &[i64],
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    const OP: &str = "dynamic_update_slice";
    if u.dtype() != a.dtype() {
        return Err(RuntimeError::new(
            OP,
            format!("dtype mismatch, operand: {}, update: {}", a.type_string(), u.type_string()),
        ));
    }
    let offset = place_window(OP, a, starts, u.shape())?;
    let strides = contiguous_strides(a.shape());
    let sizes = u.shape().to_vec();
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>(OP, a)?;
        let up = elems::<T>(OP, u)?;
        let dst = out_buffer::<T>(out, a.shape());
        dst.copy_from_slice(src);
        let inner = sizes.last().copied().unwrap_or(1);
        let mut k = 0usize;
        super::for_each_row(&sizes, [&strides], |_, [o]| {
            let at = offset + o as usize;
            dst[at..at + inner].copy_from_slice(&up[k..k + inner]);
            k += inner;
        });
    });
    Ok(())
}

/// `jnp.cumsum(a, axis)`: the running sum along `axis`, from the end when
/// `reverse`. Each sum starts from `+0` and adds the elements one at a time
/// in the scan's direction (the order XLA's `reduce_window` adds them in).
pub fn cumsum(a: &Tensor, axis: usize, reverse: bool, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    const OP: &str = "cumsum";
    if axis >= a.rank() {
        return Err(RuntimeError::new(OP, format!("axis {axis} is out of range for {}", a.type_string())));
    }
    if a.dtype() == DType::Bool {
        return Err(RuntimeError::new(OP, format!("requires a numeric tensor, got {}", a.type_string())));
    }
    let (outer, n, inner) = split_at_axis(a.shape(), axis);
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>(OP, a)?;
        let dst = out_buffer::<T>(out, a.shape());
        for o in 0..outer {
            for k in 0..inner {
                let mut acc = T::ZERO;
                for step in 0..n {
                    let i = if reverse { n - 1 - step } else { step };
                    let at = (o * n + i) * inner + k;
                    acc = T::accumulate(acc, src[at]);
                    dst[at] = acc;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(t: &Option<Tensor>) -> Vec<f32> {
        t.as_ref().and_then(|t| t.as_slice::<f32>()).map(<[f32]>::to_vec).unwrap_or_default()
    }

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }

    #[test]
    fn take_clamps_and_keeps_the_ids_shape() {
        let x = t(&[2, 3], vec![0., 1., 2., 10., 11., 12.]);
        let ids = Tensor::from_vec(&[2, 2], vec![-1i32, 2, 7, 1]).unwrap();
        let mut out = None;
        take(&x, &ids, 1, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().shape(), &[2, 2, 2]);
        assert_eq!(f32s(&out), [0., 2., 2., 1., 10., 12., 12., 11.]);
        let mut out = None;
        take(&x, &Tensor::scalar(5i64), 0, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().shape(), &[3]);
        assert_eq!(f32s(&out), [10., 11., 12.]);
        assert!(take(&x, &Tensor::scalar(1.0f32), 0, &mut None).unwrap_err().message.contains("integer"));
        assert!(take(&x, &Tensor::scalar(1i32), 2, &mut None).is_err());
        let empty = t(&[0, 2], vec![]);
        assert!(take(&empty, &Tensor::scalar(0i32), 0, &mut None).is_err());
    }

    #[test]
    fn scatter_add_accumulates_duplicates_in_order() {
        let base = t(&[3], vec![0.; 3]);
        let ids = Tensor::from_vec(&[4], vec![0i32, 2, 0, -5]).unwrap();
        let u = t(&[4], vec![1e8, 1., 1., -1e8]);
        let mut out = None;
        scatter_add(&base, &ids, &u, 0, &mut out).unwrap();
        // ((0 + 1e8) + 1) + -1e8 in f32 is 0: the order of ids.
        assert_eq!(f32s(&out), [0., 0., 1.]);
        let bad = t(&[3], vec![1.; 3]);
        assert!(scatter_add(&base, &ids, &bad, 0, &mut None).is_err());
        let b = Tensor::from_vec(&[3], vec![true; 3]).unwrap();
        assert!(scatter_add(&b, &ids, &Tensor::from_vec(&[4], vec![true; 4]).unwrap(), 0, &mut None).is_err());
    }

    #[test]
    fn windows_are_clamped_to_fit() {
        let x = t(&[5], vec![0., 1., 2., 3., 4.]);
        for (s, want) in [(-2, [3., 4.]), (4, [3., 4.]), (-9, [0., 1.]), (1, [1., 2.])] {
            let mut out = None;
            dynamic_slice(&x, &[s], &[2], &mut out).unwrap();
            assert_eq!(f32s(&out), want, "start {s}");
        }
        assert!(dynamic_slice(&x, &[0], &[6], &mut None).is_err());
        assert!(dynamic_slice(&x, &[0, 0], &[1], &mut None).is_err());
        let m = t(&[3, 3], (0..9).map(|i| i as f32).collect());
        let mut out = None;
        dynamic_slice(&m, &[1, 7], &[2, 2], &mut out).unwrap();
        assert_eq!(f32s(&out), [4., 5., 7., 8.]);
        let mut out = None;
        dynamic_update_slice(&m, &t(&[2, 2], vec![-1.; 4]), &[9, -3], &mut out).unwrap();
        assert_eq!(f32s(&out), [0., 1., 2., -1., -1., 5., -1., -1., 8.]);
        assert!(dynamic_update_slice(&m, &t(&[4, 1], vec![0.; 4]), &[0, 0], &mut None).is_err());
    }

    #[test]
    fn cumsum_runs_from_positive_zero_in_order() {
        let x = t(&[2, 3], vec![1., 2., 3., -0., 1e8, -1e8]);
        let mut out = None;
        cumsum(&x, 1, false, &mut out).unwrap();
        let r = f32s(&out);
        assert_eq!(r, [1., 3., 6., 0., 1e8, 0.]);
        assert!(r[3].is_sign_positive());
        let mut out = None;
        cumsum(&x, 0, true, &mut out).unwrap();
        assert_eq!(f32s(&out), [1., 1e8 + 2., -1e8 + 3., 0., 1e8, -1e8]);
        let b = Tensor::from_vec(&[2], vec![true, false]).unwrap();
        assert!(cumsum(&b, 0, false, &mut None).is_err());
    }
}
