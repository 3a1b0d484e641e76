//! Indexing: static Python-style slices, and JAX-style dynamic indexing and
//! updates with XLA's clamping of out-of-range indices.

use super::num::Accumulate;
use super::{broadcast_copy, contiguous_strides, elems, gather, Strides};
use crate::{out_buffer, rules, DType, RuntimeError, Shape, Tensor, UpdateMode};

/// One axis of a static slice, as written in Python.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SliceSpec {
    /// `x[i]`: selects one position and removes the axis. Negative `i`
    /// counts from the end; out of range is an error.
    Index(i64),
    /// `x[start:stop:step]`: `None` bounds take Python's defaults, bounds
    /// clip into range, `step` may be negative but not zero.
    Range {
        /// The first position (`None`: the start, or the end when stepping back).
        start: Option<i64>,
        /// One past the last position (`None`: past the end in the step's direction).
        stop: Option<i64>,
        /// The stride, positive or negative.
        step: i64,
    },
}

/// A static slice of `a`: `specs[i]` applies to axis `i`; axes without a
/// spec are taken whole. `Index` axes are removed from the result.
pub fn slice(a: &Tensor, specs: &[SliceSpec], out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if specs.len() > a.rank() {
        return Err(RuntimeError::new(
            "slice",
            format!("{} indices for {}, which has rank {}", specs.len(), a.type_string(), a.rank()),
        ));
    }
    let own = contiguous_strides(a.shape());
    let mut base = 0isize;
    let mut shape = Shape::new();
    let mut strides = Strides::new();
    for (ax, (&dim, &stride)) in a.shape().iter().zip(&own).enumerate() {
        match specs.get(ax) {
            None => {
                shape.push(dim);
                strides.push(stride);
            }
            Some(&SliceSpec::Index(i)) => {
                let Some(k) = rules::index_position(dim as u64, i128::from(i)) else {
                    return Err(RuntimeError::new(
                        "slice",
                        format!("index {i} is out of range for axis {ax} of {}", a.type_string()),
                    ));
                };
                base += k as isize * stride;
            }
            Some(&SliceSpec::Range { start, stop, step }) => {
                let r = rules::slice_range(dim as u64, start, stop, step).map_err(|_| {
                    RuntimeError::new("slice", format!("slice step 0 on axis {ax} of {}", a.type_string()))
                })?;
                if r.len > 0 {
                    base += r.first as isize * stride;
                }
                shape.push(r.len);
                // With two or more positions |step| < dim, so this cannot overflow.
                strides.push(if r.len > 1 { step as isize * stride } else { 0 });
            }
        }
    }
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>("slice", a)?;
        gather(src, base, &shape, &strides, out_buffer::<T>(out, &shape));
    });
    Ok(())
}

/// Normalises runtime indices as XLA's `dynamic_slice` does: a negative
/// index has the dim added once, then every index is clamped into
/// `[0, dim - 1]`. Returns the flat offset of the selected block and the
/// block's shape (`a.shape[idx.len()..]`).
fn locate(op: &'static str, a: &Tensor, idx: &[i64]) -> Result<(usize, Shape), RuntimeError> {
    if idx.len() > a.rank() {
        return Err(RuntimeError::new(
            op,
            format!("{} indices for {}, which has rank {}", idx.len(), a.type_string(), a.rank()),
        ));
    }
    let own = contiguous_strides(a.shape());
    let mut offset = 0usize;
    for (ax, ((&i, &dim), &stride)) in idx.iter().zip(a.shape()).zip(&own).enumerate() {
        if dim == 0 {
            return Err(RuntimeError::new(op, format!("cannot index empty axis {ax} of {}", a.type_string())));
        }
        let d = dim as i128;
        let k = if i < 0 { i as i128 + d } else { i as i128 };
        offset += k.clamp(0, d - 1) as usize * stride as usize;
    }
    Ok((offset, Shape::from_slice(&a.shape()[idx.len()..])))
}

/// JAX `x[i]` / `x[i, j]` with runtime indices: selects along the leading
/// `idx.len()` axes, giving shape `a.shape[idx.len()..]`. Indices are
/// clamped into range as XLA's `dynamic_slice` does (a negative index has
/// the dim added once first); indexing an empty axis is an error.
pub fn dynamic_index(a: &Tensor, idx: &[i64], out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    let (offset, shape) = locate("dynamic_index", a, idx)?;
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>("dynamic_index", a)?;
        let o = out_buffer::<T>(out, &shape);
        let n = o.len();
        o.copy_from_slice(&src[offset..offset + n]);
    });
    Ok(())
}

/// Checks an update value against the slot it writes.
fn check_update(
    op: &'static str,
    a: &Tensor,
    slot: &[usize],
    v: &Tensor,
    mode: UpdateMode,
) -> Result<(), RuntimeError> {
    if v.dtype() != a.dtype() {
        return Err(RuntimeError::new(
            op,
            format!("dtype mismatch in update, target: {}, value: {}", a.type_string(), v.type_string()),
        ));
    }
    if !rules::broadcasts_to(v.shape(), slot) {
        return Err(RuntimeError::new(
            op,
            format!("value {} does not broadcast to the slot {slot:?} of {}", v.type_string(), a.type_string()),
        ));
    }
    if mode == UpdateMode::Add && a.dtype() == DType::Bool {
        return Err(RuntimeError::new(op, format!("add update requires a numeric target, got {}", a.type_string())));
    }
    Ok(())
}

/// Writes `v` (broadcast to `slot`) into `dst`, which is the slot's
/// elements, setting or adding.
fn write_slot<T: Accumulate>(
    op: &'static str,
    dst: &mut [T],
    slot: &[usize],
    v: &Tensor,
    mode: UpdateMode,
) -> Result<(), RuntimeError> {
    let src = elems::<T>(op, v)?;
    match mode {
        UpdateMode::Set => broadcast_copy(src, v.shape(), slot, dst),
        UpdateMode::Add if src.len() == dst.len() => {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d = T::accumulate(*d, s));
        }
        UpdateMode::Add => {
            let mut tmp = vec![T::ZERO; dst.len()];
            broadcast_copy(src, v.shape(), slot, &mut tmp);
            dst.iter_mut().zip(tmp).for_each(|(d, s)| *d = T::accumulate(*d, s));
        }
    }
    Ok(())
}

/// JAX `x.at[i].set(v)` / `x.at[i].add(v)`: a copy of `a` with the block
/// selected by `idx` (normalised and clamped as in [`dynamic_index`])
/// replaced by, or incremented by, `v`. `v` must have `a`'s dtype and
/// broadcast to the block's shape `a.shape[idx.len()..]`.
pub fn dynamic_update(
    a: &Tensor,
    idx: &[i64],
    v: &Tensor,
    mode: UpdateMode,
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    const OP: &str = "dynamic_update";
    let (offset, slot) = locate(OP, a, idx)?;
    check_update(OP, a, &slot, v, mode)?;
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>(OP, a)?;
        let o = out_buffer::<T>(out, a.shape());
        o.copy_from_slice(src);
        let n = slot.iter().product::<usize>();
        write_slot::<T>(OP, &mut o[offset..offset + n], &slot, v, mode)?;
    });
    Ok(())
}

/// Like [`dynamic_update`], but updates `target` in place: when its buffer
/// is not shared nothing is copied (scan writes one row of its preallocated
/// `ys` per iteration this way); a shared buffer is copied first
/// (copy-on-write), so other holders never see the write.
pub fn dynamic_update_in_place(
    target: &mut Option<Tensor>,
    idx: &[i64],
    v: &Tensor,
    mode: UpdateMode,
) -> Result<(), RuntimeError> {
    const OP: &str = "dynamic_update";
    let Some(t) = target.as_mut() else {
        return Err(RuntimeError::new(OP, "update target is empty"));
    };
    let (offset, slot) = locate(OP, t, idx)?;
    check_update(OP, t, &slot, v, mode)?;
    let dtype = t.dtype();
    crate::with_dtype!(dtype, T => {
        let n = slot.iter().product::<usize>();
        let Some(dst) = t.make_mut::<T>() else {
            return Err(RuntimeError::new(OP, format!("internal error: target is not {dtype}")));
        };
        write_slot::<T>(OP, &mut dst[offset..offset + n], &slot, v, mode)?;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota_i(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec(shape, (0..n as i32).collect()).unwrap()
    }

    fn sl(a: &Tensor, specs: &[SliceSpec]) -> Result<Tensor, RuntimeError> {
        let mut out = None;
        slice(a, specs, &mut out)?;
        Ok(out.unwrap())
    }

    fn r(start: Option<i64>, stop: Option<i64>, step: i64) -> SliceSpec {
        SliceSpec::Range { start, stop, step }
    }

    /// Python's list slicing, as the reference.
    fn py(len: i64, start: Option<i64>, stop: Option<i64>, step: i64) -> Vec<i32> {
        let norm = |v: i64, lo: i64, hi: i64| (if v < 0 { v + len } else { v }).clamp(lo, hi);
        let mut res = vec![];
        if step > 0 {
            let mut i = start.map_or(0, |v| norm(v, 0, len));
            let e = stop.map_or(len, |v| norm(v, 0, len));
            while i < e {
                res.push(i as i32);
                i += step;
            }
        } else {
            let mut i = start.map_or(len - 1, |v| norm(v, -1, len - 1));
            let e = stop.map_or(-1, |v| norm(v, -1, len - 1));
            while i > e {
                res.push(i as i32);
                i += step;
            }
        }
        res
    }

    #[test]
    fn slices_match_python() {
        for len in [0usize, 1, 5] {
            let a = iota_i(&[len]);
            let bounds = [None, Some(-7), Some(-2), Some(0), Some(1), Some(3), Some(9), Some(i64::MIN), Some(i64::MAX)];
            for start in bounds {
                for stop in bounds {
                    for step in [1, 2, 3, -1, -2, i64::MAX, i64::MIN] {
                        let got = sl(&a, &[r(start, stop, step)]).unwrap();
                        let want = py(len as i64, start, stop, step.clamp(-100, 100));
                        assert_eq!(got.as_slice::<i32>().unwrap(), &want[..], "{len} {start:?}:{stop:?}:{step}");
                        assert_eq!(got.shape(), &[want.len()]);
                    }
                }
            }
        }
    }

    #[test]
    fn slices_multi_axis() {
        let a = iota_i(&[3, 4]);
        let s = sl(&a, &[SliceSpec::Index(-1)]).unwrap();
        assert_eq!((s.shape(), s.as_slice::<i32>().unwrap()), (&[4][..], &[8, 9, 10, 11][..]));
        let s = sl(&a, &[r(None, None, -1), r(Some(1), None, 2)]).unwrap();
        assert_eq!((s.shape(), s.as_slice::<i32>().unwrap()), (&[3, 2][..], &[9, 11, 5, 7, 1, 3][..]));
        let s = sl(&a, &[r(None, None, 1), SliceSpec::Index(2)]).unwrap();
        assert_eq!((s.shape(), s.as_slice::<i32>().unwrap()), (&[3][..], &[2, 6, 10][..]));
        let s = sl(&a, &[SliceSpec::Index(1), SliceSpec::Index(-4)]).unwrap();
        assert_eq!((s.shape(), s.scalar_i64()), (&[] as &[usize], Some(4)));
        let s = sl(&a, &[r(Some(5), None, 1)]).unwrap();
        assert_eq!(s.shape(), &[0, 4]);
        assert!(sl(&a, &[SliceSpec::Index(3)]).is_err());
        assert!(sl(&a, &[SliceSpec::Index(-4)]).is_err());
        assert!(sl(&a, &[SliceSpec::Index(i64::MIN)]).is_err());
        let e = sl(&a, &[r(None, None, 0)]).unwrap_err();
        assert_eq!(e.message, "slice step 0 on axis 0 of i32[3, 4]");
        assert!(sl(&a, &[SliceSpec::Index(0); 3]).is_err());
        assert!(sl(&Tensor::scalar(1.0f32), &[]).is_ok());
    }

    #[test]
    fn dynamic_index_clamps() {
        let a = iota_i(&[3, 2]);
        let mut out = None;
        for (i, want) in [(0, [0, 1]), (2, [4, 5]), (-1, [4, 5]), (-3, [0, 1]), (-10, [0, 1]), (7, [4, 5])] {
            dynamic_index(&a, &[i], &mut out).unwrap();
            assert_eq!(out.as_ref().unwrap().as_slice::<i32>().unwrap(), &want, "index {i}");
        }
        dynamic_index(&a, &[i64::MIN, i64::MAX], &mut out).unwrap();
        let r = out.take().unwrap();
        assert_eq!((r.shape(), r.scalar_i64()), (&[] as &[usize], Some(1)));
        dynamic_index(&a, &[], &mut out).unwrap();
        assert_eq!(out.take().unwrap().shape(), &[3, 2]);
        assert!(dynamic_index(&a, &[0, 0, 0], &mut out).is_err());
        let e = Tensor::zeros(DType::F32, &[0, 2]).unwrap();
        assert!(dynamic_index(&e, &[0], &mut out).is_err());
    }

    #[test]
    fn dynamic_update_set_and_add() {
        let a = iota_i(&[3, 2]);
        let mut out = None;
        dynamic_update(&a, &[1], &Tensor::from_vec(&[2], vec![7, 8]).unwrap(), UpdateMode::Set, &mut out).unwrap();
        assert_eq!(out.take().unwrap().as_slice::<i32>().unwrap(), &[0, 1, 7, 8, 4, 5]);
        dynamic_update(&a, &[-1], &Tensor::scalar(10i32), UpdateMode::Add, &mut out).unwrap();
        assert_eq!(out.take().unwrap().as_slice::<i32>().unwrap(), &[0, 1, 2, 3, 14, 15]);
        dynamic_update(&a, &[99, -99], &Tensor::scalar(i32::MAX), UpdateMode::Add, &mut out).unwrap();
        assert_eq!(out.take().unwrap().as_slice::<i32>().unwrap(), &[0, 1, 2, 3, i32::MIN + 3, 5]);
        let row = Tensor::from_vec(&[1, 2], vec![1, 1]).unwrap();
        dynamic_update(&a, &[], &row, UpdateMode::Add, &mut out).unwrap();
        assert_eq!(out.take().unwrap().as_slice::<i32>().unwrap(), &[1, 2, 3, 4, 5, 6]);
        // The input is untouched.
        assert_eq!(a.as_slice::<i32>().unwrap(), &[0, 1, 2, 3, 4, 5]);
        let bad = Tensor::from_vec(&[3], vec![1, 2, 3]).unwrap();
        assert!(dynamic_update(&a, &[0], &bad, UpdateMode::Set, &mut out).is_err());
        let e = dynamic_update(&a, &[0], &Tensor::scalar(1.0f32), UpdateMode::Set, &mut out).unwrap_err();
        assert_eq!(e.message, "dtype mismatch in update, target: i32[3, 2], value: f32");
        let b = Tensor::zeros(DType::Bool, &[2]).unwrap();
        assert!(dynamic_update(&b, &[0], &Tensor::scalar(true), UpdateMode::Add, &mut out).is_err());
        dynamic_update(&b, &[1], &Tensor::scalar(true), UpdateMode::Set, &mut out).unwrap();
        assert_eq!(out.unwrap().as_slice::<bool>().unwrap(), &[false, true]);
        let f = Tensor::zeros(DType::F64, &[2, 2]).unwrap();
        let mut out = None;
        dynamic_update(&f, &[1], &Tensor::scalar(0.5f64), UpdateMode::Add, &mut out).unwrap();
        assert_eq!(out.unwrap().as_slice::<f64>().unwrap(), &[0.0, 0.0, 0.5, 0.5]);
    }

    #[test]
    fn in_place_update_writes_without_copying() {
        let mut ys = Some(Tensor::zeros(DType::F32, &[4, 2]).unwrap());
        let p = ys.as_ref().unwrap().as_slice::<f32>().unwrap().as_ptr();
        for i in 0..4 {
            let row = Tensor::from_vec(&[2], vec![i as f32, -(i as f32)]).unwrap();
            dynamic_update_in_place(&mut ys, &[i], &row, UpdateMode::Set).unwrap();
            assert_eq!(ys.as_ref().unwrap().as_slice::<f32>().unwrap().as_ptr(), p);
        }
        let snapshot = ys.clone().unwrap();
        dynamic_update_in_place(&mut ys, &[0, 1], &Tensor::scalar(5.0f32), UpdateMode::Add).unwrap();
        // Copy-on-write: the shared snapshot keeps its values.
        assert_eq!(snapshot.as_slice::<f32>().unwrap(), &[0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
        assert_eq!(ys.as_ref().unwrap().as_slice::<f32>().unwrap()[1], 5.0);
        assert!(!ys.as_ref().unwrap().shares_buffer(&snapshot));
        assert!(dynamic_update_in_place(&mut None, &[0], &Tensor::scalar(1.0f32), UpdateMode::Set).is_err());
        assert!(dynamic_update_in_place(&mut ys, &[0], &Tensor::scalar(1i32), UpdateMode::Set).is_err());
    }
}
