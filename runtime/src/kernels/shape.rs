//! Shape kernels: reshape, transpose, broadcast, concat and stack.

use super::{broadcast_copy, contiguous_strides, elems, gather, Strides};
use crate::rules::{self, JoinError};
use crate::{checked_numel, out_buffer, Element, RuntimeError, Shape, Tensor};

/// `a` under another shape with the same element count. The result shares
/// `a`'s buffer (no copy).
pub fn reshape(a: &Tensor, shape: &[usize], out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if !rules::reshapes_to(a.shape(), shape) {
        return Err(RuntimeError::new("reshape", format!("cannot reshape {} into shape {shape:?}", a.type_string())));
    }
    *out = Some(a.with_shape(shape)?);
    Ok(())
}

/// Permutes the axes of `a`: result axis `i` is `a`'s axis `perm[i]`.
/// `None` reverses the axes. `perm` must be a permutation of `0..rank`.
pub fn transpose(a: &Tensor, perm: Option<&[usize]>, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    let perm = rules::permutation(a.rank(), perm).map_err(|_| {
        let p = perm.unwrap_or_default();
        RuntimeError::new("transpose", format!("{p:?} is not a permutation of the axes of {}", a.type_string()))
    })?;
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        *out = Some(a.clone());
        return Ok(());
    }
    let own = contiguous_strides(a.shape());
    let shape: Shape = rules::permute(a.shape(), &perm);
    let strides: Strides = rules::permute(&own, &perm);
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>("transpose", a)?;
        gather(src, 0, &shape, &strides, out_buffer::<T>(out, &shape));
    });
    Ok(())
}

/// `a` broadcast to `shape` by NumPy rules (`a`'s shape right-aligned, axes
/// of size 1 stretched, missing leading axes added). Broadcasting to `a`'s
/// own shape shares its buffer.
pub fn broadcast_to(a: &Tensor, shape: &[usize], out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if !rules::broadcasts_to(a.shape(), shape) || rules::numel(shape).is_none() {
        return Err(RuntimeError::new(
            "broadcast_to",
            format!("cannot broadcast {} to shape {shape:?}", a.type_string()),
        ));
    }
    if a.shape() == shape {
        *out = Some(a.clone());
        return Ok(());
    }
    crate::with_dtype!(a.dtype(), T => {
        let src = elems::<T>("broadcast_to", a)?;
        broadcast_copy(src, a.shape(), shape, out_buffer::<T>(out, shape));
    });
    Ok(())
}

/// Lists the operands' types for error messages (`f32[2], f32[3]`).
fn list_types(inputs: &[&Tensor]) -> String {
    inputs.iter().map(|t| t.type_string()).collect::<Vec<_>>().join(", ")
}

/// Joins `inputs` along the existing `axis`. All must share the dtype and
/// rank (at least 1) and agree on every other axis.
pub fn concat(inputs: &[&Tensor], axis: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    let err = |why: &str| RuntimeError::new("concat", format!("{why}, got [{}]", list_types(inputs)));
    let shape: Shape = rules::concat(inputs.iter().map(|t| (t.dtype(), t.shape())), axis)
        .map_err(|e| join_error(e, axis, &format!("shapes differ outside axis {axis}"), err))?
        .into();
    checked_numel(&shape).map_err(|_| err("size overflows"))?;
    let outer: usize = shape[..axis].iter().product();
    join(inputs, outer, &shape, |t| t.numel() / outer.max(1), out)
}

/// Stacks `inputs` (all of one dtype and shape) along a new `axis`
/// (`0..=rank`).
pub fn stack(inputs: &[&Tensor], axis: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    let err = |why: &str| RuntimeError::new("stack", format!("{why}, got [{}]", list_types(inputs)));
    let shape: Shape = rules::stack(inputs.iter().map(|t| (t.dtype(), t.shape())), axis)
        .map_err(|e| join_error(e, axis, "shapes differ", err))?
        .into();
    checked_numel(&shape).map_err(|_| err("size overflows"))?;
    let outer: usize = shape[..axis].iter().product();
    let chunk: usize = inputs.first().map_or(0, |t| t.shape()[axis..].iter().product());
    join(inputs, outer, &shape, |_| chunk, out)
}

/// The kernels' text for a [`JoinError`] of concat or stack (`err` adds the
/// operand list).
fn join_error(e: JoinError, axis: usize, differ: &str, err: impl Fn(&str) -> RuntimeError) -> RuntimeError {
    match e {
        JoinError::Empty => err("needs at least one operand"),
        JoinError::Axis => err(&format!("axis {axis} is out of range")),
        JoinError::Kind(_) => err("dtype mismatch"),
        JoinError::Shape(_) => err(differ),
        JoinError::Overflow(_) | JoinError::Symbolic => err("size overflows"),
    }
}

/// Writes, for each of `outer` blocks, the next `chunk(t)` elements of each
/// input in turn: the common body of concat and stack.
fn join(
    inputs: &[&Tensor],
    outer: usize,
    shape: &[usize],
    chunk: impl Fn(&Tensor) -> usize,
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    let Some(first) = inputs.first() else { return Ok(()) };
    crate::with_dtype!(first.dtype(), T => join_typed::<T>(inputs, outer, shape, chunk, out))
}

fn join_typed<T: Element>(
    inputs: &[&Tensor],
    outer: usize,
    shape: &[usize],
    chunk: impl Fn(&Tensor) -> usize,
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    // Validate every input's dtype before writing anything.
    for t in inputs {
        elems::<T>("concat", t)?;
    }
    let o = out_buffer::<T>(out, shape);
    let mut pos = 0;
    for b in 0..outer {
        for t in inputs {
            let src = elems::<T>("concat", t)?;
            let c = chunk(t);
            o[pos..pos + c].copy_from_slice(&src[b * c..(b + 1) * c]);
            pos += c;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn iota_f(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec(shape, (0..n).map(|i| i as f32).collect()).unwrap()
    }

    #[test]
    fn reshape_shares_buffer() {
        let a = iota_f(&[2, 3]);
        let mut out = None;
        reshape(&a, &[3, 2], &mut out).unwrap();
        let r = out.as_ref().unwrap();
        assert_eq!(r.shape(), &[3, 2]);
        assert!(r.shares_buffer(&a));
        let e = reshape(&a, &[4], &mut out).unwrap_err();
        assert_eq!(e.message, "cannot reshape f32[2, 3] into shape [4]");
        assert!(reshape(&a, &[usize::MAX, 2], &mut out).is_err());
        reshape(&Tensor::scalar(1i32), &[1, 1], &mut out).unwrap();
        assert_eq!(out.unwrap().shape(), &[1, 1]);
    }

    #[test]
    fn transpose_perms() {
        let a = iota_f(&[2, 3]);
        let mut out = None;
        transpose(&a, None, &mut out).unwrap();
        let r = out.take().unwrap();
        assert_eq!((r.shape(), r.as_slice::<f32>().unwrap()), (&[3, 2][..], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0][..]));
        let b = iota_f(&[2, 3, 4]);
        transpose(&b, Some(&[1, 2, 0]), &mut out).unwrap();
        let r = out.take().unwrap();
        assert_eq!(r.shape(), &[3, 4, 2]);
        let src = b.as_slice::<f32>().unwrap();
        let got = r.as_slice::<f32>().unwrap();
        for i in 0..3 {
            for j in 0..4 {
                for k in 0..2 {
                    assert_eq!(got[(i * 4 + j) * 2 + k], src[(k * 3 + i) * 4 + j]);
                }
            }
        }
        transpose(&b, Some(&[0, 1, 2]), &mut out).unwrap();
        assert!(out.as_ref().unwrap().shares_buffer(&b));
        assert!(transpose(&b, Some(&[0, 0, 1]), &mut out).is_err());
        assert!(transpose(&b, Some(&[0, 1]), &mut out).is_err());
        assert!(transpose(&b, Some(&[0, 1, 3]), &mut out).is_err());
        transpose(&Tensor::scalar(1i32), None, &mut out).unwrap();
        assert_eq!(out.unwrap().scalar_i64(), Some(1));
    }

    #[test]
    fn broadcast_to_rules() {
        let a = Tensor::from_vec(&[3, 1], vec![1i64, 2, 3]).unwrap();
        let mut out = None;
        broadcast_to(&a, &[2, 3, 2], &mut out).unwrap();
        let r = out.take().unwrap();
        assert_eq!(r.shape(), &[2, 3, 2]);
        assert_eq!(r.as_slice::<i64>().unwrap(), &[1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
        broadcast_to(&Tensor::scalar(true), &[2], &mut out).unwrap();
        assert_eq!(out.take().unwrap().as_slice::<bool>().unwrap(), &[true, true]);
        let e = broadcast_to(&a, &[3, 3, 2], &mut out);
        assert!(e.is_ok());
        assert!(broadcast_to(&a, &[2, 2], &mut out).is_err());
        assert!(broadcast_to(&a, &[2], &mut out).is_err());
        assert!(broadcast_to(&a, &[usize::MAX, 3, 2], &mut out).is_err());
        broadcast_to(&a, &[3, 0], &mut out).unwrap();
        assert_eq!(out.unwrap().numel(), 0);
    }

    #[test]
    fn concat_and_stack() {
        let a = iota_f(&[2, 2]);
        let b = Tensor::from_vec(&[2, 1], vec![10.0f32, 11.0]).unwrap();
        let mut out = None;
        concat(&[&a, &b], 1, &mut out).unwrap();
        let r = out.take().unwrap();
        assert_eq!((r.shape(), r.as_slice::<f32>().unwrap()), (&[2, 3][..], &[0.0, 1.0, 10.0, 2.0, 3.0, 11.0][..]));
        concat(&[&a, &a], 0, &mut out).unwrap();
        assert_eq!(out.take().unwrap().shape(), &[4, 2]);
        assert!(concat(&[&a, &b], 0, &mut out).is_err());
        assert!(concat(&[], 0, &mut out).is_err());
        assert!(concat(&[&a, &b], 2, &mut out).is_err());
        let c = Tensor::zeros(DType::I32, &[2, 2]).unwrap();
        let e = concat(&[&a, &c], 0, &mut out).unwrap_err();
        assert_eq!(e.message, "dtype mismatch, got [f32[2, 2], i32[2, 2]]");
        assert!(concat(&[&Tensor::scalar(1.0f32)], 0, &mut out).is_err());

        stack(&[&a, &a], 0, &mut out).unwrap();
        let r = out.take().unwrap();
        assert_eq!(r.shape(), &[2, 2, 2]);
        stack(&[&a, &(iota_f(&[2, 2]))], 2, &mut out).unwrap();
        let r = out.take().unwrap();
        assert_eq!(r.shape(), &[2, 2, 2]);
        assert_eq!(r.as_slice::<f32>().unwrap(), &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        stack(&[&Tensor::scalar(1i32), &Tensor::scalar(2i32)], 0, &mut out).unwrap();
        assert_eq!(out.take().unwrap().as_slice::<i32>().unwrap(), &[1, 2]);
        assert!(stack(&[&a, &b], 0, &mut out).is_err());
        assert!(stack(&[&a], 3, &mut out).is_err());
        assert!(stack(&[], 0, &mut out).is_err());
        let z = Tensor::zeros(DType::F32, &[0, 2]).unwrap();
        stack(&[&z, &z], 1, &mut out).unwrap();
        assert_eq!(out.unwrap().shape(), &[0, 2, 2]);
    }
}
