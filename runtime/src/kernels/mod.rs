//! The interpreter's kernels: the reference semantics of every tensor op.
//!
//! Every kernel takes its inputs by reference and writes its result into an
//! output slot `out: &mut Option<Tensor>` through [`out_buffer`], which reuses
//! the slot's buffer when the slot holds the only reference to a buffer of the
//! right dtype; a loop whose shapes do not change therefore allocates nothing
//! per iteration. Kernels return a [`RuntimeError`] naming the op and its
//! operands for every bad input; none panics.
//!
//! Families live in their own files: [`elementwise`](self::unary) (unary,
//! binary, select, cast, iota, full), reductions, shape ops (reshape,
//! transpose, broadcast, concat, stack), indexing (static slices, dynamic
//! index and update) and matmul.
//!
//! [`out_buffer`]: crate::out_buffer

mod elementwise;
mod index;
mod matmul;
mod num;
mod reduce;
mod shape;

pub use elementwise::{binary, cast, full, iota, select, unary};
pub use index::{dynamic_index, dynamic_update, dynamic_update_in_place, slice, SliceSpec};
pub use matmul::matmul;
pub use reduce::reduce;
pub use shape::{broadcast_to, concat, reshape, stack, transpose};

use crate::{checked_numel, Element, RuntimeError, Shape, Tensor};
use smallvec::SmallVec;

/// Elementwise kernels over more elements than this run on the rayon pool.
pub(crate) const PAR_THRESHOLD: usize = 1 << 16;

/// Per-axis element strides (signed, so that slices may step backwards).
pub(crate) type Strides = SmallVec<[isize; 4]>;

/// The elements of `t` as `T`; an error (not a panic) if the dtype disagrees,
/// which the callers rule out by dispatching on `t.dtype()` first.
#[inline]
pub(crate) fn elems<'a, T: Element>(op: &'static str, t: &'a Tensor) -> Result<&'a [T], RuntimeError> {
    match t.as_slice::<T>() {
        Some(s) => Ok(s),
        None => Err(internal_dtype(op, t)),
    }
}

#[cold]
fn internal_dtype(op: &'static str, t: &Tensor) -> RuntimeError {
    RuntimeError::new(op, format!("internal error: unexpected operand type {}", t.type_string()))
}

/// Row-major strides of a contiguous tensor of `shape`.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Strides {
    let mut s: Strides = SmallVec::from_elem(0, shape.len());
    let mut acc = 1isize;
    for (st, &d) in s.iter_mut().zip(shape).rev() {
        *st = acc;
        acc = acc.wrapping_mul(d as isize);
    }
    s
}

/// Strides that read a contiguous tensor of `shape` as if broadcast to `out`
/// (NumPy rules: right-aligned, stretched axes and missing leading axes get
/// stride 0). The caller has checked that `shape` broadcasts to `out`.
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Strides {
    let own = contiguous_strides(shape);
    let lead = out.len() - shape.len().min(out.len());
    let mut s: Strides = SmallVec::from_elem(0, out.len());
    for (i, st) in s.iter_mut().enumerate().skip(lead) {
        let k = i - lead;
        if shape.get(k) == out.get(i) {
            *st = own.get(k).copied().unwrap_or(0);
        }
    }
    s
}

/// The NumPy broadcast of two shapes, or `None` when they do not broadcast
/// or the result's element count overflows.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let rank = a.len().max(b.len());
    let mut out: Shape = SmallVec::from_elem(0, rank);
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    checked_numel(&out).ok()?;
    Some(out)
}

/// `true` when `shape` broadcasts to exactly `target` (NumPy rules).
pub(crate) fn broadcasts_to(shape: &[usize], target: &[usize]) -> bool {
    shape.len() <= target.len() && shape.iter().rev().zip(target.iter().rev()).all(|(&s, &t)| s == t || s == 1)
}

/// Visits the elements of a row-major tensor of `shape` one innermost row at
/// a time. For each row it calls `f(dst, offs)`: `dst` is the row's first
/// position in the (contiguous) output and `offs[k]` the offset of the row's
/// first element in operand `k`, whose per-axis strides are `strides[k]`
/// (each as long as `shape`). A row has `shape.last()` elements (one for a
/// rank-0 shape); nothing is visited when an axis is empty.
pub(crate) fn for_each_row<const N: usize>(
    shape: &[usize],
    strides: [&[isize]; N],
    mut f: impl FnMut(usize, [isize; N]),
) {
    if shape.contains(&0) {
        return;
    }
    let Some((&inner, outer)) = shape.split_last() else {
        f(0, [0; N]);
        return;
    };
    let mut idx: SmallVec<[usize; 4]> = SmallVec::from_elem(0, outer.len());
    let mut offs = [0isize; N];
    let mut dst = 0usize;
    loop {
        f(dst, offs);
        dst += inner;
        let mut ax = outer.len();
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            idx[ax] += 1;
            for (o, s) in offs.iter_mut().zip(strides) {
                *o += s[ax];
            }
            if idx[ax] < outer[ax] {
                break;
            }
            for (o, s) in offs.iter_mut().zip(strides) {
                *o -= s[ax] * outer[ax] as isize;
            }
            idx[ax] = 0;
        }
    }
}

/// Copies the elements of `src`, read through `strides` starting at `base`,
/// into the contiguous `dst` laid out as `shape`. The caller guarantees that
/// every visited offset lies inside `src`.
pub(crate) fn gather<T: Copy>(src: &[T], base: isize, shape: &[usize], strides: &[isize], dst: &mut [T]) {
    let inner = shape.last().copied().unwrap_or(1);
    let step = strides.last().copied().unwrap_or(0);
    for_each_row(shape, [strides], |d, [o]| {
        let start = base + o;
        let row = &mut dst[d..d + inner];
        if step == 1 {
            row.copy_from_slice(&src[start as usize..start as usize + inner]);
        } else if step == 0 {
            row.fill(src[start as usize]);
        } else {
            for (j, x) in row.iter_mut().enumerate() {
                *x = src[(start + j as isize * step) as usize];
            }
        }
    });
}

/// Copies `src` broadcast to `shape` into the contiguous `dst` (whose length
/// is the element count of `shape`). `src_shape` must broadcast to `shape`.
pub(crate) fn broadcast_copy<T: Copy>(src: &[T], src_shape: &[usize], shape: &[usize], dst: &mut [T]) {
    if src.len() == dst.len() {
        dst.copy_from_slice(src);
    } else if src.len() == 1 {
        dst.fill(src[0]);
    } else {
        let strides = broadcast_strides(src_shape, shape);
        gather(src, 0, shape, &strides, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_shape_rules() {
        assert_eq!(broadcast_shapes(&[3, 1], &[4]).as_deref(), Some(&[3, 4][..]));
        assert_eq!(broadcast_shapes(&[], &[2, 2]).as_deref(), Some(&[2, 2][..]));
        assert_eq!(broadcast_shapes(&[0], &[1]).as_deref(), Some(&[0][..]));
        assert_eq!(broadcast_shapes(&[3], &[4]), None);
        assert_eq!(broadcast_shapes(&[usize::MAX, 1], &[1, 2]), None);
        assert!(broadcasts_to(&[1, 3], &[2, 2, 3]));
        assert!(!broadcasts_to(&[2, 3], &[3]));
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]).as_slice(), &[0, 1, 0]);
    }

    #[test]
    fn rows_visit_in_order() {
        let mut seen = vec![];
        let s = contiguous_strides(&[2, 3]);
        for_each_row(&[2, 3], [&s], |d, [o]| seen.push((d, o)));
        assert_eq!(seen, vec![(0, 0), (3, 3)]);
        let mut n = 0;
        for_each_row::<1>(&[], [&[]], |_, _| n += 1);
        assert_eq!(n, 1);
        for_each_row::<1>(&[2, 0], [&[0, 0]], |_, _| n += 1);
        assert_eq!(n, 1);
    }
}
