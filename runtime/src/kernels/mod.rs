//! The interpreter's kernels: the reference semantics of every tensor op.
//!
//! Every kernel takes its inputs by reference and writes its result into an
//! output slot `out: &mut Option<Tensor>` through [`out_buffer`], which reuses
//! the slot's buffer when the slot holds the only reference to a buffer of the
//! right dtype; a loop whose shapes do not change therefore allocates nothing
//! per iteration. Kernels return a [`RuntimeError`] naming the op and its
//! operands for every bad input; none panics.
//!
//! Families live in their own files: elementwise ([`unary`], [`binary`],
//! [`select`], [`cast`], [`bitcast`], [`iota`], [`full`]), reductions ([`reduce`]), shape
//! ops ([`reshape`], [`transpose`], [`broadcast_to`], [`concat()`], [`stack`]),
//! indexing ([`slice()`], [`dynamic_index`], [`dynamic_update`],
//! [`dynamic_update_in_place`]), gathers and windows ([`take`],
//! [`scatter_add`], [`dynamic_slice`], [`dynamic_update_slice`]), running
//! sums ([`cumsum`]) and [`matmul`].
//!
//! [`out_buffer`]: crate::out_buffer

mod elementwise;
mod gather;
mod index;
mod matmul;
pub mod native;
mod num;
mod reduce;
pub mod scalar;
mod shape;

pub use elementwise::{CANONICAL_NAN_F32, CANONICAL_NAN_F64};
pub use index::SliceSpec;
pub use num::{float_unary, float_unary_scalar, Float, FloatUnaryVisitor, Int, Num};
pub use scalar::Scalar;

use crate::alloc::catch_oom;
use crate::rules::DotDims;
use crate::{rules, BinaryOp, DType, Element, ReduceOp, RuntimeError, Shape, Tensor, UnaryOp, UpdateMode};

// The entry points: each runs its family's kernel under `catch_oom`, so that
// a result buffer that cannot be allocated is an out-of-memory error naming
// the op (see `crate::alloc`), not an abort. The elementwise ones skip it
// for results of at most `SMALL` elements (bounded by their operands' sizes):
// such a buffer fails to allocate only where any small allocation of the
// process would, and the guard cost the interpreter's scalar loops 14 % of
// their instructions (`docs/performance.md`).

/// The most elements a result may have to be allocated without `catch_oom`.
const SMALL: usize = 1 << 12;

/// `true` when the product of the element counts `ns` is at most [`SMALL`]
/// (an elementwise result has at most that many elements).
#[inline]
fn small(ns: &[usize]) -> bool {
    ns.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).is_some_and(|n| n <= SMALL)
}

/// The elementwise unary `op` of `a` (`neg`, `abs`, `relu` on numbers, `not`
/// on bools, `exp`, `log`, ... on floats), of `a`'s dtype and shape.
pub fn unary(op: UnaryOp, a: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if small(&[a.numel()]) {
        return elementwise::unary(op, a, out);
    }
    catch_oom(op.as_str(), || elementwise::unary(op, a, out))
}

/// The elementwise binary `op` of `a` and `b` (one dtype), with NumPy broadcasting.
#[inline]
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if small(&[a.numel(), b.numel()]) {
        return elementwise::binary(op, a, b, out);
    }
    binary_guarded(op, a, b, out)
}

/// [`binary`] of a large result, under `catch_oom` (out of line, so that
/// [`binary`] inlines into the interpreter's dispatch).
#[inline(never)]
fn binary_guarded(op: BinaryOp, a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom(op.as_str(), || elementwise::binary(op, a, b, out))
}

/// `c ? a : b` elementwise (`c` bool; `a`, `b` one dtype), with broadcasting.
pub fn select(c: &Tensor, a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if small(&[c.numel(), a.numel(), b.numel()]) {
        return elementwise::select(c, a, b, out);
    }
    catch_oom("select", || elementwise::select(c, a, b, out))
}

/// `a` converted to dtype `to`.
pub fn cast(a: &Tensor, to: DType, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if small(&[a.numel()]) {
        return elementwise::cast(a, to, out);
    }
    catch_oom("cast", || elementwise::cast(a, to, out))
}

/// The bits of `a` read as dtype `to` (same element width).
pub fn bitcast(a: &Tensor, to: DType, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if small(&[a.numel()]) {
        return elementwise::bitcast(a, to, out);
    }
    catch_oom("bitcast", || elementwise::bitcast(a, to, out))
}

/// `[0, 1, ..., n - 1]` of an integer or float `dtype`.
pub fn iota(dtype: DType, n: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("iota", || elementwise::iota(dtype, n, out))
}

/// A tensor of `dtype` and `shape` filled with the one element of `value`.
pub fn full(dtype: DType, shape: &[usize], value: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("full", || elementwise::full(dtype, shape, value, out))
}

/// The reduction `op` of `a` over `axis` (`None`: all elements).
pub fn reduce(op: ReduceOp, a: &Tensor, axis: Option<usize>, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom(op.as_str(), || reduce::reduce(op, a, axis, out))
}

/// `a` under `shape` (same element count; the buffer is shared).
pub fn reshape(a: &Tensor, shape: &[usize], out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("reshape", || shape::reshape(a, shape, out))
}

/// `a` with its axes permuted by `perm` (`None`: reversed).
pub fn transpose(a: &Tensor, perm: Option<&[usize]>, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("transpose", || shape::transpose(a, perm, out))
}

/// `a` broadcast to `shape` (NumPy rules).
pub fn broadcast_to(a: &Tensor, shape: &[usize], out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("broadcast_to", || shape::broadcast_to(a, shape, out))
}

/// `inputs` (one dtype, equal but for `axis`) joined along `axis`.
pub fn concat(inputs: &[&Tensor], axis: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("concat", || shape::concat(inputs, axis, out))
}

/// `inputs` (one dtype and shape) stacked along a new axis `axis`.
pub fn stack(inputs: &[&Tensor], axis: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("stack", || shape::stack(inputs, axis, out))
}

/// A static slice of `a`, one [`SliceSpec`] per leading axis.
pub fn slice(a: &Tensor, specs: &[SliceSpec], out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("slice", || index::slice(a, specs, out))
}

/// The block of `a` at the dynamic indices `idx` (normalised and clamped, as JAX does).
pub fn dynamic_index(a: &Tensor, idx: &[i64], out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("dynamic_index", || index::dynamic_index(a, idx, out))
}

/// JAX `x.at[i].set(v)` / `x.at[i].add(v)`: a copy of `a` with the block at
/// `idx` replaced by, or incremented by, `v`.
pub fn dynamic_update(
    a: &Tensor,
    idx: &[i64],
    v: &Tensor,
    mode: UpdateMode,
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    catch_oom("dynamic_update", || index::dynamic_update(a, idx, v, mode, out))
}

/// Like [`dynamic_update`], but updates `target` in place (a shared buffer
/// is copied first).
pub fn dynamic_update_in_place(
    target: &mut Option<Tensor>,
    idx: &[i64],
    v: &Tensor,
    mode: UpdateMode,
) -> Result<(), RuntimeError> {
    catch_oom("dynamic_update", || index::dynamic_update_in_place(target, idx, v, mode))
}

/// StableHLO's `dot_general` of `a` and `b` (one numeric dtype): batch
/// dims, then `a`'s free dims, then `b`'s, contracting the paired axes.
pub fn dot_general(a: &Tensor, b: &Tensor, dims: &DotDims, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("dot_general", || matmul::dot_general(a, b, dims, out))
}

/// `jnp.take(a, ids, axis, mode="clip")`: axis `axis` replaced by the shape of `ids`.
pub fn take(a: &Tensor, ids: &Tensor, axis: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("take", || gather::take(a, ids, axis, out))
}

/// The transpose of [`take`]: `base` with each update of `u` added at its id's position.
pub fn scatter_add(
    base: &Tensor,
    ids: &Tensor,
    u: &Tensor,
    axis: usize,
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    catch_oom("scatter_add", || gather::scatter_add(base, ids, u, axis, out))
}

/// `lax.dynamic_slice(a, starts, sizes)` (starts wrapped once, then clamped so the window fits).
pub fn dynamic_slice(
    a: &Tensor,
    starts: &[i64],
    sizes: &[usize],
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    catch_oom("dynamic_slice", || gather::dynamic_slice(a, starts, sizes, out))
}

/// `lax.dynamic_update_slice(a, u, starts)` (the window placed as in [`dynamic_slice`]).
pub fn dynamic_update_slice(
    a: &Tensor,
    u: &Tensor,
    starts: &[i64],
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    catch_oom("dynamic_update_slice", || gather::dynamic_update_slice(a, u, starts, out))
}

/// `jnp.cumsum(a, axis)`, from the end when `reverse`.
pub fn cumsum(a: &Tensor, axis: usize, reverse: bool, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("cumsum", || gather::cumsum(a, axis, reverse, out))
}

/// The matrix product of `a` and `b` (rank 1 or 2, one numeric dtype).
pub fn matmul(a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    catch_oom("matmul", || matmul::matmul(a, b, out))
}
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
    let mut s = Strides::new();
    s.extend(std::iter::repeat_n(0, shape.len()));
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
    let mut s = Strides::new();
    s.extend(std::iter::repeat_n(0, out.len()));
    let mut acc = 1isize;
    for ((st, &o), &d) in s.iter_mut().rev().zip(out.iter().rev()).zip(shape.iter().rev()) {
        if d == o {
            *st = acc;
        }
        acc = acc.wrapping_mul(d as isize);
    }
    s
}

/// The NumPy broadcast of two shapes ([`rules::broadcast`]), or `None` when
/// they do not broadcast or the result's element count overflows.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let out: Shape = rules::broadcast(a, b).ok()?;
    rules::numel(&out)?;
    Some(out)
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
    let mut idx: SmallVec<[usize; 4]> = SmallVec::new();
    idx.extend(std::iter::repeat_n(0, outer.len()));
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

/// Every kernel on many small random operands: whatever the inputs, a
/// kernel returns `Ok` or `Err`, never panics (debug builds check overflow).
#[cfg(test)]
mod no_panic {
    use super::*;
    use crate::{BinaryOp, DType, ReduceOp, UnaryOp, UpdateMode};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn int(&mut self) -> i64 {
            const EDGES: [i64; 9] = [0, 1, -1, 2, -2, 3, i64::MIN, i64::MAX, i32::MIN as i64];
            EDGES[self.below(EDGES.len())]
        }
        fn shape(&mut self) -> Vec<usize> {
            (0..self.below(4)).map(|_| self.below(4)).collect()
        }
        fn dtype(&mut self) -> DType {
            DType::ALL[self.below(DType::ALL.len())]
        }
        fn tensor(&mut self, dtype: DType, shape: &[usize]) -> Tensor {
            let n: usize = shape.iter().product();
            let vals: Vec<i64> = (0..n).map(|_| self.int()).collect();
            let t = Tensor::from_vec(shape, vals).unwrap();
            let mut out = None;
            cast(&t, dtype, &mut out).unwrap();
            let mut t = out.unwrap();
            if dtype.is_float() && n > 0 && self.below(3) == 0 {
                let mut nan = None;
                full(dtype, shape, &Tensor::scalar(f64::NAN), &mut nan).unwrap();
                t = nan.unwrap();
            }
            t
        }
        fn any(&mut self) -> Tensor {
            let (d, s) = (self.dtype(), self.shape());
            self.tensor(d, &s)
        }
    }

    #[test]
    fn kernels_never_panic() {
        let mut r = Rng(0x5eed);
        let mut out = None;
        for _ in 0..4000 {
            let a = r.any();
            // A partner that often matches a's dtype and shape (or broadcasts).
            let b = match r.below(3) {
                0 => r.any(),
                1 => r.tensor(a.dtype(), a.shape()),
                _ => {
                    let s: Vec<usize> =
                        a.shape().iter().skip(r.below(a.rank() + 1)).map(|&d| d.min(r.below(2) + d % 2)).collect();
                    r.tensor(a.dtype(), &s)
                }
            };
            let c = if r.below(2) == 0 { r.tensor(DType::Bool, a.shape()) } else { r.any() };
            let _ = unary(UnaryOp::ALL[r.below(UnaryOp::ALL.len())], &a, &mut out);
            let _ = binary(BinaryOp::ALL[r.below(BinaryOp::ALL.len())], &a, &b, &mut out);
            let _ = select(&c, &a, &b, &mut out);
            let _ = cast(&a, r.dtype(), &mut out);
            let _ = matmul(&a, &b, &mut out);
            let axis = if r.below(3) == 0 { None } else { Some(r.below(4)) };
            let _ = reduce(ReduceOp::ALL[r.below(ReduceOp::ALL.len())], &a, axis, &mut out);
            let _ = reshape(&a, &r.shape(), &mut out);
            let perm: Vec<usize> = (0..r.below(4)).map(|_| r.below(4)).collect();
            let _ = transpose(&a, Some(&perm), &mut out);
            let _ = transpose(&a, None, &mut out);
            let _ = broadcast_to(&a, &r.shape(), &mut out);
            let _ = concat(&[&a, &b], r.below(4), &mut out);
            let _ = stack(&[&a, &b, &a], r.below(4), &mut out);
            let specs: Vec<SliceSpec> = (0..r.below(4))
                .map(|_| {
                    let opt = |r: &mut Rng| if r.below(3) == 0 { None } else { Some(r.int()) };
                    if r.below(3) == 0 {
                        SliceSpec::Index(r.int())
                    } else {
                        SliceSpec::Range { start: opt(&mut r), stop: opt(&mut r), step: r.int() }
                    }
                })
                .collect();
            let _ = slice(&a, &specs, &mut out);
            let idx: Vec<i64> = (0..r.below(4)).map(|_| r.int()).collect();
            let _ = dynamic_index(&a, &idx, &mut out);
            let mode = if r.below(2) == 0 { UpdateMode::Set } else { UpdateMode::Add };
            let _ = dynamic_update(&a, &idx, &b, mode, &mut out);
            let mut target = Some(a.clone());
            let _ = dynamic_update_in_place(&mut target, &idx, &b, mode);
            let _ = iota(r.dtype(), r.below(5), &mut out);
            let _ = full(r.dtype(), &r.shape(), &b, &mut out);
            let _ = a.to_string();
            let _ = a.summary(r.below(4));
            let _ = a.all_close(&b, 1e-6, 1e-6);
            let _ = crate::npy::read(&crate::npy::write(&a).unwrap()).unwrap();
        }
        // Shapes whose element count overflows.
        let huge = [usize::MAX / 2, 3];
        assert!(broadcast_to(&Tensor::scalar(1i32), &huge, &mut out).is_err());
        // Counts that fit usize but not an allocation are errors too.
        assert!(broadcast_to(&Tensor::scalar(1i64), &[1 << 62], &mut out).is_err());
        let m = Tensor::zeros(DType::F64, &[1 << 31, 0]).unwrap();
        assert!(matmul(&m, &m.with_shape(&[0, 1 << 31]).unwrap(), &mut out).is_err());
        assert!(reshape(&Tensor::scalar(1i32), &huge, &mut out).is_err());
        assert!(full(DType::I32, &huge, &Tensor::scalar(1i32), &mut out).is_err());
        let wide = Tensor::zeros(DType::F32, &[usize::MAX / 2, 0]).unwrap();
        let tall = Tensor::zeros(DType::F32, &[0, 3]).unwrap();
        assert!(matmul(&wide, &tall, &mut out).is_err());
        assert!(binary(BinaryOp::Add, &wide.with_shape(&[usize::MAX / 2, 0, 1]).unwrap(), &tall, &mut out).is_ok());
    }

    #[test]
    fn a_result_too_large_for_memory_is_an_error_naming_the_op() {
        use crate::RuntimeErrorKind;
        let huge = [1usize << 20, 1 << 20, 1 << 10];
        let one = Tensor::scalar(1.0f32);
        let mut out = None;
        let e = broadcast_to(&one, &huge, &mut out).unwrap_err();
        assert_eq!(e.op, "broadcast_to");
        let RuntimeErrorKind::OutOfMemory(oom) = &e.kind else { panic!("{e:?}") };
        assert_eq!((oom.dtype, oom.shape.as_slice(), oom.bytes), (DType::F32, &huge[..], Some(1 << 52)));
        assert_eq!(oom.limit, Some(crate::max_tensor_bytes()));
        assert!(out.is_none(), "the output slot is left as it was");
        let e = full(DType::F64, &huge, &one.with_shape(&[1]).unwrap(), &mut out).unwrap_err();
        assert!(e.is_out_of_memory() && e.op == "full", "{e}");
        let e = iota(DType::I64, 1 << 60, &mut out).unwrap_err();
        assert!(e.is_out_of_memory() && e.op == "iota", "{e}");
        assert!(e.to_string().starts_with("in iota: out of memory: i64[1152921504606846976] needs "), "{e}");
        // A reused slot that has to grow goes through the same check.
        let mut out = Some(Tensor::zeros(DType::F32, &[2]).unwrap());
        let e = broadcast_to(&one, &huge, &mut out).unwrap_err();
        assert!(e.is_out_of_memory(), "{e}");
        assert!(broadcast_to(&one, &[3], &mut out).is_ok());
        assert_eq!(out.unwrap().as_slice::<f32>(), Some(&[1.0f32; 3][..]));
        // The constructor, too.
        assert!(Tensor::zeros(DType::Bool, &huge).unwrap_err().is_out_of_memory());
    }

    #[test]
    fn kernel_errors_say_their_kind() {
        use crate::RuntimeErrorKind as K;
        let mut out = None;
        let f = Tensor::from_vec(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
        let i = Tensor::from_vec(&[3], vec![1i32, 2, 3]).unwrap();
        let f4 = Tensor::zeros(DType::F32, &[4]).unwrap();
        let b = Tensor::scalar(true);
        let kind = |r: Result<(), RuntimeError>| r.unwrap_err().kind;
        assert_eq!(kind(binary(BinaryOp::Add, &f, &i, &mut out)), K::DTypeMismatch);
        assert_eq!(kind(binary(BinaryOp::Add, &b, &b, &mut out)), K::DTypeMismatch);
        assert_eq!(kind(unary(UnaryOp::Exp, &i, &mut out)), K::DTypeMismatch);
        assert_eq!(kind(matmul(&f, &i, &mut out)), K::DTypeMismatch);
        assert_eq!(kind(binary(BinaryOp::Add, &f, &f4, &mut out)), K::ShapeMismatch);
        assert_eq!(kind(matmul(&f, &f4, &mut out)), K::ShapeMismatch);
        assert_eq!(kind(reshape(&f, &[2], &mut out)), K::ShapeMismatch);
        assert_eq!(kind(broadcast_to(&f, &[2], &mut out)), K::ShapeMismatch);
        assert_eq!(kind(reduce(ReduceOp::Sum, &f, Some(3), &mut out)), K::IndexOutOfRange);
        assert_eq!(kind(slice(&f, &[SliceSpec::Index(7)], &mut out)), K::IndexOutOfRange);
        assert_eq!(kind(iota(DType::Bool, 3, &mut out)), K::Other);
        assert_eq!(kind(transpose(&f, Some(&[0, 0]), &mut out)), K::ShapeMismatch);
        let e = RuntimeError::with_kind("x", K::IndexOutOfRange, "whatever");
        assert_eq!((e.to_string(), e.kind), ("in x: whatever".to_string(), K::IndexOutOfRange));
    }
}
