//! Reductions over all elements or along one axis.
//!
//! An axis reduction views the input as `[outer, len, inner]` (`len` the
//! reduced axis) and folds row by row into the `[outer, inner]` output, so
//! every pass reads the input contiguously.

use super::elems;
use super::num::{argmax_better, max_nan, min_nan, Conv, Num};
use crate::{out_buffer, rules, DType, Element, ReduceOp, RuntimeError, Shape, Tensor};

/// Reduces `a` with `op` over all elements (`axis = None`, a rank-0 result)
/// or along `axis` (that axis removed). The result dtype is
/// [`ReduceOp::result_dtype`]: `sum` of bools counts in `i32`, `mean` of
/// integers and bools is `f32`, `argmax` gives the `i32` index of the first
/// maximum (NaN counts as the maximum). The sum of nothing is 0 and the mean
/// of nothing NaN; `max`, `min` and `argmax` of an empty axis are errors.
pub fn reduce(op: ReduceOp, a: &Tensor, axis: Option<usize>, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    let name = op.as_str();
    let shape: Shape = rules::reduce(a.shape(), axis).map_err(|_| {
        RuntimeError::new(name, format!("axis {} is out of range for {}", axis.unwrap_or(0), a.type_string()))
    })?;
    let (len, inner) = match axis {
        None => (a.numel(), 1),
        Some(ax) => (a.shape()[ax], a.shape()[ax + 1..].iter().product()),
    };
    if len == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::Argmax) {
        let what = match axis {
            None => "an empty tensor".to_string(),
            Some(ax) => format!("empty axis {ax}"),
        };
        return Err(RuntimeError::new(name, format!("{name} of {what} is not defined, got {}", a.type_string())));
    }
    if op == ReduceOp::Argmax && len > i32::MAX as usize + 1 {
        return Err(RuntimeError::new(name, format!("argmax index overflows i32, got {}", a.type_string())));
    }
    let g = Geom { len, inner };
    reduce_io(op, a.dtype(), g, TensorIo { name, a, shape: &shape, out })
}

/// Where a reduction reads its operand and writes its result: tensors
/// here, raw buffers for native code ([`super::native`]).
pub(crate) trait ReduceIo<'a> {
    /// The operand's elements.
    fn input<T: Element>(&self) -> Result<&'a [T], RuntimeError>;
    /// The result's elements, of dtype `U`.
    fn output<U: Element>(&mut self) -> &mut [U];
}

struct TensorIo<'a, 'o> {
    name: &'static str,
    a: &'a Tensor,
    shape: &'a [usize],
    out: &'o mut Option<Tensor>,
}

impl<'a> ReduceIo<'a> for TensorIo<'a, '_> {
    fn input<T: Element>(&self) -> Result<&'a [T], RuntimeError> {
        elems::<T>(self.name, self.a)
    }
    fn output<U: Element>(&mut self) -> &mut [U] {
        out_buffer::<U>(self.out, self.shape)
    }
}

/// The `[outer, len, inner]` view of a reduction (`len` the reduced axis;
/// `outer` is implied by the lengths of the input and output).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub len: usize,
    pub inner: usize,
}

/// Reduction `op` of an operand of `dtype` viewed as `g` (checked by the
/// caller: `len > 0` for `max`, `min`, `argmax`, and `len` fits `i32` for
/// `argmax`): the loops of [`reduce`], shared with native code.
pub(crate) fn reduce_io<'a>(
    op: ReduceOp,
    dtype: DType,
    g: Geom,
    mut io: impl ReduceIo<'a>,
) -> Result<(), RuntimeError> {
    match dtype {
        DType::Bool => {
            let x = io.input::<bool>()?;
            match op {
                ReduceOp::Sum => fold(x, g, io.output::<i32>(), 0, |s, v| s.wrapping_add(v as i32)),
                ReduceOp::Mean => mean_as_f32(x, g, io.output::<f32>(), |v| f32::from(u8::from(v))),
                ReduceOp::Max => fold(x, g, io.output::<bool>(), false, |s, v| s | v),
                ReduceOp::Min => fold(x, g, io.output::<bool>(), true, |s, v| s & v),
                ReduceOp::Argmax => argmax(x, g, io.output::<i32>(), |v| v),
            }
        }
        DType::I32 => reduce_int::<i32>(op, g, io, |v| v as f32)?,
        DType::I64 => reduce_int::<i64>(op, g, io, |v| v as f32)?,
        DType::U32 => reduce_int::<u32>(op, g, io, |v| v as f32)?,
        DType::U8 => reduce_int::<u8>(op, g, io, |v| v as f32)?,
        DType::F32 => reduce_float::<f32>(op, g, io, |n| n as f32)?,
        DType::F64 => reduce_float::<f64>(op, g, io, |n| n as f64)?,
        DType::BF16 => reduce_half::<half::bf16>(op, g, io)?,
        DType::F16 => reduce_half::<half::f16>(op, g, io)?,
    }
    Ok(())
}

fn reduce_int<'a, T: Num>(
    op: ReduceOp,
    g: Geom,
    mut io: impl ReduceIo<'a>,
    to_f32: fn(T) -> f32,
) -> Result<(), RuntimeError> {
    let x = io.input::<T>()?;
    match op {
        ReduceOp::Sum => fold(x, g, io.output::<T>(), T::ZERO, T::add),
        ReduceOp::Mean => mean_as_f32(x, g, io.output::<f32>(), to_f32),
        ReduceOp::Max => fold1(x, g, io.output::<T>(), max_nan::<T>),
        ReduceOp::Min => fold1(x, g, io.output::<T>(), min_nan::<T>),
        ReduceOp::Argmax => argmax(x, g, io.output::<i32>(), T::ord),
    }
    Ok(())
}

/// A half-float reduction: `sum` and `mean` accumulate in `f32` and round
/// once to nearest even (as XLA's CPU backend, and JAX's `jnp.sum`, do);
/// `max`, `min` and `argmax` are exact in the half type.
fn reduce_half<'a, T: Num + Conv<f32>>(op: ReduceOp, g: Geom, mut io: impl ReduceIo<'a>) -> Result<(), RuntimeError>
where
    f32: Conv<T>,
{
    let x = io.input::<T>()?;
    let sum = |o: &mut [T], mean: bool| {
        let mut acc = vec![0f32; o.len()];
        fold(x, g, &mut acc, 0.0, |s, v: T| s + Conv::<f32>::conv(v));
        let n = g.len as f32;
        for (o, s) in o.iter_mut().zip(acc) {
            *o = Conv::<T>::conv(if mean { s / n } else { s });
        }
    };
    match op {
        ReduceOp::Sum => sum(io.output::<T>(), false),
        ReduceOp::Mean => sum(io.output::<T>(), true),
        ReduceOp::Max => fold1(x, g, io.output::<T>(), max_nan::<T>),
        ReduceOp::Min => fold1(x, g, io.output::<T>(), min_nan::<T>),
        ReduceOp::Argmax => argmax(x, g, io.output::<i32>(), T::ord),
    }
    Ok(())
}

fn reduce_float<'a, T: Num>(
    op: ReduceOp,
    g: Geom,
    mut io: impl ReduceIo<'a>,
    from_len: fn(usize) -> T,
) -> Result<(), RuntimeError> {
    let x = io.input::<T>()?;
    match op {
        ReduceOp::Sum => fold(x, g, io.output::<T>(), T::ZERO, T::add),
        ReduceOp::Mean => {
            let o = io.output::<T>();
            fold(x, g, o, T::ZERO, T::add);
            let n = from_len(g.len);
            o.iter_mut().for_each(|s| *s = T::div(*s, n));
        }
        ReduceOp::Max => fold1(x, g, io.output::<T>(), max_nan::<T>),
        ReduceOp::Min => fold1(x, g, io.output::<T>(), min_nan::<T>),
        ReduceOp::Argmax => argmax(x, g, io.output::<i32>(), T::ord),
    }
    Ok(())
}

/// `o[i] = f(…f(f(init, x[i, 0]), x[i, 1])…)` along the reduced axis.
fn fold<T: Copy, A: Copy>(x: &[T], g: Geom, o: &mut [A], init: A, f: impl Fn(A, T) -> A) {
    o.fill(init);
    if g.inner == 1 {
        if g.len > 0 {
            for (acc, row) in o.iter_mut().zip(x.chunks_exact(g.len)) {
                *acc = row.iter().fold(*acc, |s, &v| f(s, v));
            }
        }
        return;
    }
    if g.inner == 0 || g.len == 0 {
        return;
    }
    for (orow, block) in o.chunks_exact_mut(g.inner).zip(x.chunks_exact(g.len * g.inner)) {
        for row in block.chunks_exact(g.inner) {
            for (acc, &v) in orow.iter_mut().zip(row) {
                *acc = f(*acc, v);
            }
        }
    }
}

/// Like [`fold`], seeded with the first element of each reduced row
/// (`g.len > 0`).
fn fold1<T: Copy>(x: &[T], g: Geom, o: &mut [T], f: impl Fn(T, T) -> T) {
    if g.inner == 0 || g.len == 0 {
        return;
    }
    for (orow, block) in o.chunks_exact_mut(g.inner).zip(x.chunks_exact(g.len * g.inner)) {
        let (first, rest) = block.split_at(g.inner);
        orow.copy_from_slice(first);
        if g.inner == 1 {
            orow[0] = rest.iter().fold(orow[0], |s, &v| f(s, v));
        } else {
            for row in rest.chunks_exact(g.inner) {
                for (acc, &v) in orow.iter_mut().zip(row) {
                    *acc = f(*acc, v);
                }
            }
        }
    }
}

/// The `f32` mean of integers or bools (summed in `f32`, as XLA does).
fn mean_as_f32<T: Copy>(x: &[T], g: Geom, o: &mut [f32], to_f32: impl Fn(T) -> f32) {
    fold(x, g, o, 0.0, |s, v| s + to_f32(v));
    let n = g.len as f32;
    o.iter_mut().for_each(|s| *s /= n);
}

/// The index of the first maximum of each reduced row (`g.len > 0`, and
/// `g.len - 1` fits `i32`), elements compared as `key` reads them
/// ([`Num::ord`]).
fn argmax<T: Copy, K: PartialOrd + Copy>(x: &[T], g: Geom, o: &mut [i32], key: impl Fn(T) -> K) {
    if g.inner == 0 || g.len == 0 {
        return;
    }
    for (orow, block) in o.chunks_exact_mut(g.inner).zip(x.chunks_exact(g.len * g.inner)) {
        for (i, slot) in orow.iter_mut().enumerate() {
            let mut best = block[i];
            let mut at = 0usize;
            for (l, &v) in block.iter().skip(i).step_by(g.inner).enumerate().skip(1) {
                if argmax_better(key(v), key(best)) {
                    best = v;
                    at = l;
                }
            }
            *slot = at as i32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(op: ReduceOp, a: &Tensor, axis: Option<usize>) -> Result<Tensor, RuntimeError> {
        let mut out = None;
        reduce(op, a, axis, &mut out)?;
        Ok(out.unwrap())
    }

    /// A naive reference: reduce along `axis` of a rank-3 f64 tensor.
    fn naive(x: &[f64], shape: [usize; 3], axis: usize, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let mut res = vec![];
        let idx = |i: [usize; 3]| (i[0] * shape[1] + i[1]) * shape[2] + i[2];
        let others: Vec<usize> = (0..3).filter(|&d| d != axis).collect();
        for p in 0..shape[others[0]] {
            for q in 0..shape[others[1]] {
                let vals: Vec<f64> = (0..shape[axis])
                    .map(|r| {
                        let mut i = [0; 3];
                        i[others[0]] = p;
                        i[others[1]] = q;
                        i[axis] = r;
                        x[idx(i)]
                    })
                    .collect();
                res.push(f(&vals));
            }
        }
        res
    }

    #[test]
    fn axis_reductions_match_reference() {
        let shape = [2, 3, 4];
        let x: Vec<f64> = (0..24).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let a = Tensor::from_vec(&shape, x.clone()).unwrap();
        for axis in 0..3 {
            let s = red(ReduceOp::Sum, &a, Some(axis)).unwrap();
            assert_eq!(s.as_slice::<f64>().unwrap(), &naive(&x, shape, axis, |v| v.iter().sum())[..]);
            let m = red(ReduceOp::Max, &a, Some(axis)).unwrap();
            let want = naive(&x, shape, axis, |v| v.iter().copied().fold(f64::MIN, f64::max));
            assert_eq!(m.as_slice::<f64>().unwrap(), &want[..]);
            let m = red(ReduceOp::Min, &a, Some(axis)).unwrap();
            let want = naive(&x, shape, axis, |v| v.iter().copied().fold(f64::MAX, f64::min));
            assert_eq!(m.as_slice::<f64>().unwrap(), &want[..]);
            let am = red(ReduceOp::Argmax, &a, Some(axis)).unwrap();
            let want = naive(&x, shape, axis, |v| {
                let mx = v.iter().copied().fold(f64::MIN, f64::max);
                v.iter().position(|&e| e == mx).unwrap() as f64
            });
            assert_eq!(am.to_f64_vec(), want);
            let mut expect_shape = shape.to_vec();
            expect_shape.remove(axis);
            assert_eq!(am.shape(), &expect_shape[..]);
            assert_eq!(am.dtype(), DType::I32);
        }
        let total = red(ReduceOp::Sum, &a, None).unwrap();
        assert_eq!((total.shape(), total.scalar_f64()), (&[] as &[usize], Some(x.iter().sum())));
        let mean = red(ReduceOp::Mean, &a, Some(2)).unwrap();
        assert_eq!(mean.to_f64_vec(), naive(&x, shape, 2, |v| v.iter().sum::<f64>() / 4.0));
    }

    #[test]
    fn int_and_bool_reductions() {
        let a = Tensor::from_vec(&[2, 2], vec![i32::MAX, 1, 3, 4]).unwrap();
        assert_eq!(red(ReduceOp::Sum, &a, Some(0)).unwrap().as_slice::<i32>().unwrap(), &[i32::MIN + 2, 5]);
        let m = red(ReduceOp::Mean, &a, Some(1)).unwrap();
        assert_eq!(m.dtype(), DType::F32);
        assert_eq!(m.as_slice::<f32>().unwrap()[1], 3.5);
        let b = Tensor::from_vec(&[4], vec![true, false, true, true]).unwrap();
        let s = red(ReduceOp::Sum, &b, None).unwrap();
        assert_eq!((s.dtype(), s.scalar_i64()), (DType::I32, Some(3)));
        assert_eq!(red(ReduceOp::Max, &b, None).unwrap().scalar_bool(), Some(true));
        assert_eq!(red(ReduceOp::Min, &b, None).unwrap().scalar_bool(), Some(false));
        assert_eq!(red(ReduceOp::Argmax, &b, None).unwrap().scalar_i64(), Some(0));
        assert_eq!(red(ReduceOp::Mean, &b, None).unwrap().scalar_f64(), Some(0.75));
    }

    #[test]
    fn nan_and_empty() {
        let a = Tensor::from_vec(&[4], vec![1.0f32, f32::NAN, 5.0, f32::NAN]).unwrap();
        assert!(red(ReduceOp::Max, &a, None).unwrap().scalar_f64().unwrap().is_nan());
        assert!(red(ReduceOp::Min, &a, None).unwrap().scalar_f64().unwrap().is_nan());
        assert_eq!(red(ReduceOp::Argmax, &a, None).unwrap().scalar_i64(), Some(1));
        let tie = Tensor::from_vec(&[3], vec![2i64, 7, 7]).unwrap();
        assert_eq!(red(ReduceOp::Argmax, &tie, None).unwrap().scalar_i64(), Some(1));
        let e = Tensor::from_vec(&[0], Vec::<f32>::new()).unwrap();
        assert_eq!(red(ReduceOp::Sum, &e, None).unwrap().scalar_f64(), Some(0.0));
        assert!(red(ReduceOp::Mean, &e, None).unwrap().scalar_f64().unwrap().is_nan());
        for op in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Argmax] {
            assert!(red(op, &e, None).is_err());
        }
        let e2 = Tensor::zeros(DType::I32, &[3, 0]).unwrap();
        assert_eq!(red(ReduceOp::Sum, &e2, Some(1)).unwrap().as_slice::<i32>().unwrap(), &[0, 0, 0]);
        assert_eq!(red(ReduceOp::Max, &e2, Some(0)).unwrap().shape(), &[0]);
        assert!(red(ReduceOp::Max, &e2, Some(1)).is_err());
        let err = red(ReduceOp::Sum, &e2, Some(2)).unwrap_err();
        assert_eq!(err.message, "axis 2 is out of range for i32[3, 0]");
        let s = red(ReduceOp::Max, &Tensor::scalar(4i32), None).unwrap();
        assert_eq!(s.scalar_i64(), Some(4));
    }

    #[test]
    fn reduce_reuses_out() {
        let a = Tensor::from_vec(&[2, 3], vec![1.0f32; 6]).unwrap();
        let mut out = None;
        reduce(ReduceOp::Sum, &a, Some(1), &mut out).unwrap();
        let p = out.as_ref().unwrap().as_slice::<f32>().unwrap().as_ptr();
        reduce(ReduceOp::Max, &a, Some(1), &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<f32>().unwrap().as_ptr(), p);
        assert_eq!(out.unwrap().as_slice::<f32>().unwrap(), &[1.0, 1.0]);
    }
}
