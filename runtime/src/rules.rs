//! The shape rules of loopvm's ops, written once.
//!
//! Every layer that reasons about shapes calls these functions: the kernels
//! (on concrete `usize` dims), the checker (on symbolic dims: numbers or
//! shape variables), the StableHLO emitter and the Cranelift lowering. The
//! rules are pure: they take dims through the small [`Extent`] trait and
//! return a rule-specific error enum, which each layer turns into its own
//! error text.
//!
//! A dim is an [`Extent`]: it can be compared for equality, may have a known
//! size, and can be made from a known size. Two symbolic dims are equal only
//! when they are the same shape variable, so a rule that asks "are these
//! dims equal?" is conservative for symbolic shapes.
//!
//! ```
//! use loopvm_runtime::rules;
//! let s: Vec<usize> = rules::broadcast(&[3usize, 1], &[4]).unwrap();
//! assert_eq!(s, [3, 4]);
//! assert!(rules::broadcasts_to(&[1usize, 3], &[2, 2, 3]));
//! let r = rules::slice_range(5, None, None, -2).unwrap();
//! assert_eq!((r.first, r.len), (4, 3));
//! ```

use crate::Shape;
use smallvec::SmallVec;

/// One dimension as the rules see it: a concrete size (`usize`) in the
/// runtime, or a number-or-shape-variable in the checker.
pub trait Extent: Clone + PartialEq {
    /// The size, when it is known.
    fn known(&self) -> Option<u64>;
    /// A dim of the known size `n`, or `None` when this kind of dim cannot
    /// hold it.
    fn from_known(n: u64) -> Option<Self>;
    /// `true` when the dim is known to be 1 (it stretches in broadcasting).
    fn is_one(&self) -> bool {
        self.known() == Some(1)
    }
}

impl Extent for usize {
    fn known(&self) -> Option<u64> {
        u64::try_from(*self).ok()
    }
    fn from_known(n: u64) -> Option<usize> {
        usize::try_from(n).ok()
    }
    fn is_one(&self) -> bool {
        *self == 1
    }
}

impl Extent for u64 {
    fn known(&self) -> Option<u64> {
        Some(*self)
    }
    fn from_known(n: u64) -> Option<u64> {
        Some(n)
    }
}

// ---------------------------------------------------------------------------
// Element counts

/// The largest element count a tensor may have: its bytes must be
/// addressable (at most `isize::MAX`) for every dtype, so allocating a
/// buffer of any valid shape cannot fail with a capacity overflow.
pub const MAX_NUMEL: usize = isize::MAX as usize / 8;

/// The exact product of `shape`, or `None` when it overflows `usize`.
pub fn product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The element count of a tensor of `shape`: its [`product`], or `None`
/// when that overflows or exceeds [`MAX_NUMEL`].
pub fn numel(shape: &[usize]) -> Option<usize> {
    product(shape).filter(|&n| n <= MAX_NUMEL)
}

/// The product of dims that are all known, in `u64`: `Ok(None)` when it
/// overflows, `Err(())` when a dim is symbolic.
fn known_product<D: Extent>(dims: &[D]) -> Result<Option<u64>, ()> {
    let mut acc = Some(1u64);
    for d in dims {
        let n = d.known().ok_or(())?;
        acc = acc.and_then(|a| a.checked_mul(n));
    }
    Ok(acc)
}

// ---------------------------------------------------------------------------
// Broadcasting

/// Two dims that do not broadcast: `a` from the left shape, `b` from the right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastConflict<D> {
    /// The left dim.
    pub a: D,
    /// The right dim.
    pub b: D,
}

/// NumPy broadcasting of two shapes, aligned on the right: equal dims match,
/// a dim of 1 stretches to the other, a missing leading dim takes the other
/// shape's; anything else is a conflict (for symbolic dims: a shape variable
/// against a different variable or a known size other than 1). The element
/// count is not checked (see [`numel`]).
pub fn broadcast<D: Extent, C: FromIterator<D>>(a: &[D], b: &[D]) -> Result<C, BroadcastConflict<D>> {
    let a_long = a.len() >= b.len();
    let (long, short) = if a_long { (a, b) } else { (b, a) };
    let off = long.len() - short.len();
    long.iter()
        .enumerate()
        .map(|(i, x)| {
            let Some(y) = i.checked_sub(off).and_then(|j| short.get(j)) else {
                return Ok(x.clone());
            };
            let (da, db) = if a_long { (x, y) } else { (y, x) };
            if da == db || db.is_one() {
                Ok(da.clone())
            } else if da.is_one() {
                Ok(db.clone())
            } else {
                Err(BroadcastConflict { a: da.clone(), b: db.clone() })
            }
        })
        .collect()
}

/// `true` when `from` broadcasts to exactly `to` (NumPy `broadcast_to`):
/// no longer, and right-aligned every dim equal or 1.
pub fn broadcasts_to<D: Extent>(from: &[D], to: &[D]) -> bool {
    from.len() <= to.len() && from.iter().rev().zip(to.iter().rev()).all(|(f, t)| f == t || f.is_one())
}

// ---------------------------------------------------------------------------
// Indexing

/// The position a static index `i` (negative counts from the end) selects
/// on an axis of length `len`, or `None` when it is out of range.
pub fn index_position(len: u64, i: i128) -> Option<u64> {
    let len = i128::from(len);
    let k = if i < 0 { i + len } else { i };
    if k < 0 || k >= len {
        return None;
    }
    u64::try_from(k).ok()
}

/// The positions a Python slice selects on one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceRange {
    /// The first position (meaningful only when `len > 0`).
    pub first: i128,
    /// The number of positions.
    pub len: usize,
}

/// Why a slice has no range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceError {
    /// The step is 0.
    StepZero,
    /// The count does not fit `usize`.
    TooLong,
}

/// Python's `slice(start, stop, step).indices(len)` reduced to the first
/// position and the number of positions: `None` bounds take Python's
/// defaults, negative bounds count from the end, bounds clip into range,
/// `step` may be negative but not zero.
pub fn slice_range(len: u64, start: Option<i64>, stop: Option<i64>, step: i64) -> Result<SliceRange, SliceError> {
    if step == 0 {
        return Err(SliceError::StepZero);
    }
    let len = i128::from(len);
    let step = i128::from(step);
    // Clip a bound into [lo, hi] after counting negatives from the end.
    let clip = |v: i64, lo: i128, hi: i128| {
        let v = i128::from(v);
        let v = if v < 0 { v + len } else { v };
        v.clamp(lo, hi)
    };
    let (first, count) = if step > 0 {
        let b = start.map_or(0, |v| clip(v, 0, len));
        let e = stop.map_or(len, |v| clip(v, 0, len));
        (b, if e > b { (e - b + step - 1) / step } else { 0 })
    } else {
        let b = start.map_or(len - 1, |v| clip(v, -1, len - 1));
        let e = stop.map_or(-1, |v| clip(v, -1, len - 1));
        (b, if b > e { (b - e - step - 1) / -step } else { 0 })
    };
    let len = usize::try_from(count).map_err(|_| SliceError::TooLong)?;
    Ok(SliceRange { first, len })
}

// ---------------------------------------------------------------------------
// Matmul

/// The shape facts of `a @ b`: `m` is present when `a` has rank 2, `n` when
/// `b` has rank 2; `k` is the contracted dim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matmul<D> {
    /// Rows of `a` (rank 2 only).
    pub m: Option<D>,
    /// The contracted dim.
    pub k: D,
    /// Columns of `b` (rank 2 only).
    pub n: Option<D>,
}

impl<D: Clone> Matmul<D> {
    /// The result shape: `[m?, n?]`.
    pub fn dims<C: FromIterator<D>>(&self) -> C {
        self.m.iter().chain(&self.n).cloned().collect()
    }
}

/// Why two shapes do not multiply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatmulError<D> {
    /// An operand has rank other than 1 or 2.
    Rank,
    /// The contracted dims differ: `a`'s last and `b`'s first.
    Inner(D, D),
}

/// `a @ b` for ranks 1 and 2, NumPy style: `(k) @ (k) -> ()`,
/// `(m, k) @ (k) -> (m)`, `(k) @ (k, n) -> (n)`, `(m, k) @ (k, n) -> (m, n)`.
pub fn matmul<D: Extent>(a: &[D], b: &[D]) -> Result<Matmul<D>, MatmulError<D>> {
    let (m, k, k2, n) = match (a, b) {
        ([k], [k2]) => (None, k, k2, None),
        ([m, k], [k2]) => (Some(m), k, k2, None),
        ([k], [k2, n]) => (None, k, k2, Some(n)),
        ([m, k], [k2, n]) => (Some(m), k, k2, Some(n)),
        _ => return Err(MatmulError::Rank),
    };
    if k != k2 {
        return Err(MatmulError::Inner(k.clone(), k2.clone()));
    }
    Ok(Matmul { m: m.cloned(), k: k.clone(), n: n.cloned() })
}

// ---------------------------------------------------------------------------
// DotGeneral

/// The dimension numbers of a general contraction (StableHLO's
/// `dot_general`): which axes of each operand are batch axes (paired in
/// order) and which are contracted (paired in order). The other axes are
/// free.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DotDims {
    /// The lhs's batch axes.
    pub lhs_batch: Vec<u32>,
    /// The rhs's batch axes (as many as the lhs's).
    pub rhs_batch: Vec<u32>,
    /// The lhs's contracting axes.
    pub lhs_contract: Vec<u32>,
    /// The rhs's contracting axes (as many as the lhs's).
    pub rhs_contract: Vec<u32>,
}

/// The shape facts of a `dot_general`: the batch, lhs-free, rhs-free and
/// contracted dims, and the free axes of each operand in order. The result
/// is `batch ++ lhs_free ++ rhs_free`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotGeneral<D> {
    /// The batch dims (the lhs's, equal to the rhs's).
    pub batch: Vec<D>,
    /// The lhs's free dims, in axis order.
    pub lhs_free: Vec<D>,
    /// The rhs's free dims, in axis order.
    pub rhs_free: Vec<D>,
    /// The contracted dims (the lhs's, equal to the rhs's).
    pub contract: Vec<D>,
    /// The lhs's free axes.
    pub lhs_free_axes: Vec<usize>,
    /// The rhs's free axes.
    pub rhs_free_axes: Vec<usize>,
}

impl<D: Clone> DotGeneral<D> {
    /// The result shape: batch, then lhs free, then rhs free dims.
    pub fn dims<C: FromIterator<D>>(&self) -> C {
        self.batch.iter().chain(&self.lhs_free).chain(&self.rhs_free).cloned().collect()
    }
}

/// Why dimension numbers do not fit two shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DotGeneralError<D> {
    /// The lhs and rhs name different numbers of batch (`true`) or
    /// contracting (`false`) axes.
    Count(bool),
    /// An axis is out of range for its operand (`lhs` says which).
    Axis {
        /// The lhs (`true`) or the rhs.
        lhs: bool,
        /// The axis.
        axis: u32,
    },
    /// An axis is named twice (as batch or contracting axis) for one operand.
    Repeated {
        /// The lhs (`true`) or the rhs.
        lhs: bool,
        /// The axis.
        axis: u32,
    },
    /// The `i`-th batch (`batch: true`) or contracting pair has different sizes.
    Size {
        /// A batch pair (else a contracting one).
        batch: bool,
        /// The lhs's dim.
        a: D,
        /// The rhs's dim.
        b: D,
    },
}

/// The shape of `dot_general(a, b, dims)`: batch pairs and contracting
/// pairs must have equal dims (no broadcasting); every axis named at most
/// once per operand.
pub fn dot_general<D: Extent>(a: &[D], b: &[D], dims: &DotDims) -> Result<DotGeneral<D>, DotGeneralError<D>> {
    if dims.lhs_batch.len() != dims.rhs_batch.len() {
        return Err(DotGeneralError::Count(true));
    }
    if dims.lhs_contract.len() != dims.rhs_contract.len() {
        return Err(DotGeneralError::Count(false));
    }
    let free = |shape: &[D], named: &[&[u32]; 2], lhs: bool| -> Result<Vec<usize>, DotGeneralError<D>> {
        let mut used = vec![false; shape.len()];
        for &axis in named.iter().flat_map(|l| l.iter()) {
            let slot = used.get_mut(axis as usize).ok_or(DotGeneralError::Axis { lhs, axis })?;
            if *slot {
                return Err(DotGeneralError::Repeated { lhs, axis });
            }
            *slot = true;
        }
        Ok((0..shape.len()).filter(|&i| !used[i]).collect())
    };
    let lhs_free_axes = free(a, &[&dims.lhs_batch, &dims.lhs_contract], true)?;
    let rhs_free_axes = free(b, &[&dims.rhs_batch, &dims.rhs_contract], false)?;
    let pairs = |la: &[u32], rb: &[u32], batch: bool| -> Result<Vec<D>, DotGeneralError<D>> {
        la.iter()
            .zip(rb)
            .map(|(&i, &j)| {
                let (x, y) = (&a[i as usize], &b[j as usize]);
                if x == y {
                    Ok(x.clone())
                } else {
                    Err(DotGeneralError::Size { batch, a: x.clone(), b: y.clone() })
                }
            })
            .collect()
    };
    let batch = pairs(&dims.lhs_batch, &dims.rhs_batch, true)?;
    let contract = pairs(&dims.lhs_contract, &dims.rhs_contract, false)?;
    Ok(DotGeneral {
        batch,
        lhs_free: lhs_free_axes.iter().map(|&i| a[i].clone()).collect(),
        rhs_free: rhs_free_axes.iter().map(|&i| b[i].clone()).collect(),
        contract,
        lhs_free_axes,
        rhs_free_axes,
    })
}

// ---------------------------------------------------------------------------
// Concat and stack

/// Why operands do not join (`concat` or `stack`). Operand positions count
/// from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// No operands.
    Empty,
    /// The axis is out of range (`concat`: `< rank`, so rank 0 never joins;
    /// `stack`: `<= rank`).
    Axis,
    /// Operand `i` has another kind (dtype) than the first.
    Kind(usize),
    /// Operand `i`'s shape differs from the first's (`concat`: outside the
    /// axis, or in rank).
    Shape(usize),
    /// The joined axis's size overflows, adding operand `i`.
    Overflow(usize),
    /// The joined axis's size is symbolic (more than one operand, one with a
    /// symbolic size on the axis).
    Symbolic,
}

/// The shape of `concat(operands, axis)`: the operands (each a kind, such as
/// a dtype, and a shape; the first one's kind and rank count) agree but on
/// `axis`, whose sizes add up. Operands are checked in order, each for its
/// kind, then its shape, then the running size; a single operand is its own
/// result.
pub fn concat<'s, D: Extent + 's, K: PartialEq>(
    operands: impl IntoIterator<Item = (K, &'s [D])>,
    axis: usize,
) -> Result<Vec<D>, JoinError> {
    let mut it = operands.into_iter();
    let (kind, first) = it.next().ok_or(JoinError::Empty)?;
    let Some(d0) = first.get(axis) else {
        return Err(JoinError::Axis);
    };
    let mut total = d0.known();
    let mut count = 1;
    for (i, (k, s)) in it.enumerate() {
        let i = i + 1;
        if k != kind {
            return Err(JoinError::Kind(i));
        }
        if s.len() != first.len() || s.iter().zip(first).enumerate().any(|(j, (a, b))| j != axis && a != b) {
            return Err(JoinError::Shape(i));
        }
        total = match (total, s[axis].known()) {
            (Some(t), Some(n)) => Some(t.checked_add(n).ok_or(JoinError::Overflow(i))?),
            _ => None,
        };
        count += 1;
    }
    let joined = if count == 1 {
        d0.clone()
    } else {
        let t = total.ok_or(JoinError::Symbolic)?;
        D::from_known(t).ok_or(JoinError::Overflow(count - 1))?
    };
    let mut dims = first.to_vec();
    dims[axis] = joined;
    Ok(dims)
}

/// The shape of `stack(operands, axis)`: operands of one kind and one shape,
/// a new axis of their count at `axis` (`0..=rank`). Every kind is checked
/// before any shape.
pub fn stack<'s, D: Extent + 's, K: PartialEq>(
    operands: impl IntoIterator<Item = (K, &'s [D])> + Clone,
    axis: usize,
) -> Result<Vec<D>, JoinError> {
    let mut it = operands.clone().into_iter();
    let (kind, first) = it.next().ok_or(JoinError::Empty)?;
    if axis > first.len() {
        return Err(JoinError::Axis);
    }
    if let Some(i) = operands.clone().into_iter().position(|(k, _)| k != kind) {
        return Err(JoinError::Kind(i));
    }
    if let Some(i) = operands.clone().into_iter().position(|(_, s)| s != first) {
        return Err(JoinError::Shape(i));
    }
    let count = operands.into_iter().count();
    let n = u64::try_from(count).ok().and_then(D::from_known).ok_or(JoinError::Overflow(count - 1))?;
    let mut dims = first.to_vec();
    dims.insert(axis, n);
    Ok(dims)
}

// ---------------------------------------------------------------------------
// Reductions, transpose, reshape

/// An axis out of range for the rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisOutOfRange;

/// The shape of a reduction over `axis` (that axis removed) or over every
/// element (`None`: a scalar).
pub fn reduce<D: Clone, C: FromIterator<D>>(dims: &[D], axis: Option<usize>) -> Result<C, AxisOutOfRange> {
    match axis {
        None => Ok(std::iter::empty().collect()),
        Some(ax) if ax < dims.len() => {
            Ok(dims.iter().enumerate().filter(|&(i, _)| i != ax).map(|(_, d)| d.clone()).collect())
        }
        Some(_) => Err(AxisOutOfRange),
    }
}

// ---------------------------------------------------------------------------
// Gathers, windows and running sums

/// The shape of `take(x, ids, axis)` (and of the updates its transpose,
/// `scatter_add`, adds): axis `axis` of `x` replaced by the dims of `ids`,
/// `x.shape[..axis] ++ ids.shape ++ x.shape[axis + 1..]`.
pub fn take<D: Clone, C: FromIterator<D>>(x: &[D], ids: &[D], axis: usize) -> Result<C, AxisOutOfRange> {
    if axis >= x.len() {
        return Err(AxisOutOfRange);
    }
    Ok(x[..axis].iter().chain(ids).chain(&x[axis + 1..]).cloned().collect())
}

/// Why a static window does not fit its operand (`dynamic_slice`,
/// `dynamic_update_slice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowError {
    /// The window has `got` dims, the operand `rank`.
    Rank {
        /// The operand's rank.
        rank: usize,
        /// The window's rank.
        got: usize,
    },
    /// The window is longer than the operand along `axis`.
    TooLarge {
        /// The first axis where it is.
        axis: usize,
    },
}

/// Checks a window of `sizes` against an operand of dims `x`: one size per
/// axis, none longer than its axis (a symbolic axis is checked at run time).
pub fn window<D: Extent>(x: &[D], sizes: &[u64]) -> Result<(), WindowError> {
    if sizes.len() != x.len() {
        return Err(WindowError::Rank { rank: x.len(), got: sizes.len() });
    }
    match x.iter().zip(sizes).position(|(d, &s)| d.known().is_some_and(|n| s > n)) {
        Some(axis) => Err(WindowError::TooLarge { axis }),
        None => Ok(()),
    }
}

/// The first position of a window of `size` along an axis of `len` starting
/// at the run-time `start`, as `lax.dynamic_slice` places it: a negative
/// start has `len` added once, then the start is clamped so that the window
/// fits, into `[0, len - size]`. The caller has checked `size <= len`.
pub fn window_start(len: u64, size: u64, start: i64) -> u64 {
    let l = i128::from(len);
    let s = i128::from(start);
    let s = if s < 0 { s + l } else { s };
    s.clamp(0, l - i128::from(size.min(len))) as u64
}

/// The position `take` reads for the run-time id `id` on an axis of `len`
/// (`len > 0`): `jnp.take(..., mode="clip")`, ids clamped into
/// `[0, len - 1]` (a negative id reads position 0, it does not wrap).
pub fn take_position(len: u64, id: i64) -> u64 {
    (id.max(0) as u64).min(len.saturating_sub(1))
}

/// `perm` is not a permutation of the axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAPermutation;

/// The permutation of a transpose of rank `rank`: `perm` when it is a
/// permutation of `0..rank`, the reversed axes when `None`.
pub fn permutation(rank: usize, perm: Option<&[usize]>) -> Result<Shape, NotAPermutation> {
    let Some(p) = perm else {
        return Ok((0..rank).rev().collect());
    };
    let mut seen: SmallVec<[bool; 8]> = SmallVec::from_elem(false, rank);
    let ok = p.len() == rank
        && p.iter().all(|&ax| match seen.get_mut(ax) {
            Some(s) if !*s => {
                *s = true;
                true
            }
            _ => false,
        });
    if ok {
        Ok(Shape::from_slice(p))
    } else {
        Err(NotAPermutation)
    }
}

/// The shape of a transpose of `dims` by `perm` (a valid [`permutation`]):
/// result axis `i` is `dims[perm[i]]`.
pub fn permute<D: Clone, C: FromIterator<D>>(dims: &[D], perm: &[usize]) -> C {
    perm.iter().filter_map(|&p| dims.get(p).cloned()).collect()
}

/// Why a reshape does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReshapeError {
    /// The source shape is symbolic.
    Symbolic,
    /// The source's element count overflows `u64`.
    TooLarge,
    /// More than one inferred dim (`-1`).
    Holes,
    /// The element counts differ (or the inferred dim does not divide);
    /// `count` is the source's.
    Mismatch {
        /// The source's element count.
        count: u64,
    },
}

/// Checks reshaping `from` to `to` (`None`: one dim to infer, NumPy's `-1`):
/// the element counts must be equal. Returns the inferred dim, if any.
pub fn reshape<D: Extent>(from: &[D], to: &[Option<u64>]) -> Result<Option<u64>, ReshapeError> {
    let count = known_product(from).map_err(|()| ReshapeError::Symbolic)?.ok_or(ReshapeError::TooLarge)?;
    let holes = to.iter().filter(|d| d.is_none()).count();
    if holes > 1 {
        return Err(ReshapeError::Holes);
    }
    let prod = to.iter().flatten().try_fold(1u64, |a, &b| a.checked_mul(b)).unwrap_or(u64::MAX);
    if holes == 1 {
        if prod == 0 || count % prod != 0 {
            return Err(ReshapeError::Mismatch { count });
        }
        return Ok(Some(count / prod));
    }
    if prod != count {
        return Err(ReshapeError::Mismatch { count });
    }
    Ok(None)
}

/// `true` when a tensor of `from` reshapes to the concrete shape `to` (the
/// same element count).
pub fn reshapes_to(from: &[usize], to: &[usize]) -> bool {
    let to: SmallVec<[Option<u64>; 4]> = to.iter().map(|&d| Some(d as u64)).collect();
    reshape(from, &to).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(numel(&[2, 3]), Some(6));
        assert_eq!(numel(&[]), Some(1));
        assert_eq!(numel(&[usize::MAX, 0]), Some(0));
        assert_eq!(numel(&[usize::MAX, 2]), None);
        assert_eq!(numel(&[MAX_NUMEL + 1]), None);
        assert_eq!(product(&[MAX_NUMEL + 1]), Some(MAX_NUMEL + 1));
    }

    #[test]
    fn broadcasting() {
        let b = |a: &[usize], b: &[usize]| broadcast::<usize, Vec<usize>>(a, b);
        assert_eq!(b(&[3, 1], &[4]), Ok(vec![3, 4]));
        assert_eq!(b(&[], &[2, 2]), Ok(vec![2, 2]));
        assert_eq!(b(&[0], &[1]), Ok(vec![0]));
        assert_eq!(b(&[1], &[0]), Ok(vec![0]));
        assert_eq!(b(&[3], &[4]), Err(BroadcastConflict { a: 3, b: 4 }));
        assert_eq!(b(&[4, 3], &[2]), Err(BroadcastConflict { a: 3, b: 2 }));
        assert_eq!(b(&[2], &[4, 3]), Err(BroadcastConflict { a: 2, b: 3 }));
        assert_eq!(b(&[2, 3], &[5, 1, 1]), Ok(vec![5, 2, 3]));
        assert!(broadcasts_to(&[1usize, 3], &[2, 2, 3]));
        assert!(broadcasts_to::<usize>(&[], &[]));
        assert!(!broadcasts_to(&[2usize, 3], &[3]));
        assert!(!broadcasts_to(&[2usize], &[1]));
    }

    #[test]
    fn gathers_and_windows() {
        assert_eq!(take::<usize, Vec<usize>>(&[2, 5, 3], &[4, 1], 1), Ok(vec![2, 4, 1, 3]));
        assert_eq!(take::<usize, Vec<usize>>(&[5], &[], 0), Ok(vec![]));
        assert_eq!(take::<usize, Vec<usize>>(&[5], &[2], 1), Err(AxisOutOfRange));
        assert_eq!(window(&[4usize, 3], &[2, 3]), Ok(()));
        assert_eq!(window(&[4usize, 3], &[2]), Err(WindowError::Rank { rank: 2, got: 1 }));
        assert_eq!(window(&[4usize, 3], &[2, 4]), Err(WindowError::TooLarge { axis: 1 }));
        assert_eq!(window_start(5, 2, -2), 3);
        assert_eq!(window_start(5, 2, -9), 0);
        assert_eq!(window_start(5, 2, 4), 3);
        assert_eq!(window_start(5, 5, i64::MAX), 0);
        assert_eq!(window_start(5, 0, 9), 5);
        assert_eq!(take_position(5, -1), 0);
        assert_eq!(take_position(5, 7), 4);
        assert_eq!(take_position(5, i64::MIN), 0);
        assert_eq!(take_position(5, 3), 3);
    }

    #[test]
    fn slices_and_indices() {
        let r = |len, start, stop, step| slice_range(len, start, stop, step).map(|r| (r.first, r.len));
        assert_eq!(r(5, None, None, 1), Ok((0, 5)));
        assert_eq!(r(5, None, None, -1), Ok((4, 5)));
        assert_eq!(r(5, Some(1), None, 2), Ok((1, 2)));
        assert_eq!(r(5, Some(1), Some(-1), 2), Ok((1, 2)));
        assert_eq!(r(5, Some(9), None, 1), Ok((5, 0)));
        assert_eq!(r(5, Some(i64::MIN), Some(i64::MAX), i64::MAX), Ok((0, 1)));
        assert_eq!(r(5, None, None, i64::MIN), Ok((4, 1)));
        assert_eq!(r(0, None, None, -1), Ok((-1, 0)));
        assert_eq!(r(5, None, None, 0), Err(SliceError::StepZero));
        assert_eq!(index_position(3, -1), Some(2));
        assert_eq!(index_position(3, 2), Some(2));
        assert_eq!(index_position(3, 3), None);
        assert_eq!(index_position(3, -4), None);
        assert_eq!(index_position(0, 0), None);
    }

    #[test]
    fn dot_general_shapes() {
        let d = |lb: &[u32], rb: &[u32], lc: &[u32], rc: &[u32]| DotDims {
            lhs_batch: lb.to_vec(),
            rhs_batch: rb.to_vec(),
            lhs_contract: lc.to_vec(),
            rhs_contract: rc.to_vec(),
        };
        let dims = |a: &[usize], b: &[usize], dd: &DotDims| dot_general(a, b, dd).map(|g| g.dims::<Vec<usize>>());
        // bqd,bkd->bqk
        assert_eq!(dims(&[2, 3, 4], &[2, 5, 4], &d(&[0], &[0], &[2], &[2])), Ok(vec![2, 3, 5]));
        // rank-3 @ rank-2 without batch axes: [b, m] free, then [n].
        assert_eq!(dims(&[2, 3, 4], &[4, 6], &d(&[], &[], &[2], &[0])), Ok(vec![2, 3, 6]));
        // outer product
        assert_eq!(dims(&[2], &[3], &d(&[], &[], &[], &[])), Ok(vec![2, 3]));
        assert_eq!(dims(&[2, 3], &[3], &d(&[0], &[], &[1], &[0])), Err(DotGeneralError::Count(true)));
        assert_eq!(dims(&[2, 3], &[3], &d(&[], &[], &[1, 0], &[0])), Err(DotGeneralError::Count(false)));
        assert_eq!(dims(&[2, 3], &[3], &d(&[], &[], &[2], &[0])), Err(DotGeneralError::Axis { lhs: true, axis: 2 }));
        assert_eq!(
            dims(&[3, 3], &[3, 3], &d(&[0], &[0], &[1], &[0])),
            Err(DotGeneralError::Repeated { lhs: false, axis: 0 })
        );
        assert_eq!(
            dims(&[2, 3], &[4, 3], &d(&[0], &[0], &[1], &[1])),
            Err(DotGeneralError::Size { batch: true, a: 2, b: 4 })
        );
        assert_eq!(
            dims(&[2, 3], &[2, 4], &d(&[0], &[0], &[1], &[1])),
            Err(DotGeneralError::Size { batch: false, a: 3, b: 4 })
        );
        let g = dot_general(&[2usize, 3, 4], &[4, 2, 5], &d(&[0], &[1], &[2], &[0])).unwrap();
        assert_eq!((g.lhs_free_axes, g.rhs_free_axes, g.contract), (vec![1], vec![2], vec![4]));
    }

    #[test]
    fn matmul_shapes() {
        let dims = |a: &[usize], b: &[usize]| matmul(a, b).map(|m| m.dims::<Vec<usize>>());
        assert_eq!(dims(&[3], &[3]), Ok(vec![]));
        assert_eq!(dims(&[2, 3], &[3]), Ok(vec![2]));
        assert_eq!(dims(&[3], &[3, 4]), Ok(vec![4]));
        assert_eq!(dims(&[2, 3], &[3, 4]), Ok(vec![2, 4]));
        assert_eq!(dims(&[2, 3], &[4, 2]), Err(MatmulError::Inner(3, 4)));
        assert_eq!(dims(&[1, 2, 3], &[3]), Err(MatmulError::Rank));
        assert_eq!(dims(&[], &[3]), Err(MatmulError::Rank));
        assert_eq!(matmul(&[2usize, 3], &[3]).unwrap(), Matmul { m: Some(2), k: 3, n: None });
    }

    #[test]
    fn joins() {
        let (a, b): (&[usize], &[usize]) = (&[2, 2], &[2, 1]);
        assert_eq!(concat([(0, a), (0, b)], 1), Ok(vec![2, 3]));
        assert_eq!(concat([(0, a), (0, b)], 0), Err(JoinError::Shape(1)));
        assert_eq!(concat([(0, a), (1, b)], 1), Err(JoinError::Kind(1)));
        assert_eq!(concat([(0, a)], 2), Err(JoinError::Axis));
        assert_eq!(concat::<usize, i32>([], 0), Err(JoinError::Empty));
        assert_eq!(concat([(0, &[] as &[usize])], 0), Err(JoinError::Axis));
        let big: &[usize] = &[usize::MAX];
        assert_eq!(concat([(0, big), (0, big)], 0), Err(JoinError::Overflow(1)));
        assert_eq!(concat([(0, big)], 0), Ok(vec![usize::MAX]));
        assert_eq!(stack([(0, a), (0, a), (0, a)], 2), Ok(vec![2, 2, 3]));
        assert_eq!(stack([(0, a), (0, b)], 0), Err(JoinError::Shape(1)));
        assert_eq!(stack([(0, a), (0, b), (1, a)], 0), Err(JoinError::Kind(2)));
        assert_eq!(stack([(0, a)], 3), Err(JoinError::Axis));
        assert_eq!(stack::<usize, i32>([], 0), Err(JoinError::Empty));
    }

    #[test]
    fn reduce_transpose_reshape() {
        assert_eq!(reduce::<usize, Vec<usize>>(&[2, 3, 4], Some(1)), Ok(vec![2, 4]));
        assert_eq!(reduce::<usize, Vec<usize>>(&[2, 3, 4], None), Ok(vec![]));
        assert_eq!(reduce::<usize, Vec<usize>>(&[2], Some(1)), Err(AxisOutOfRange));
        assert_eq!(permutation(3, None).unwrap().as_slice(), &[2, 1, 0]);
        assert_eq!(permutation(3, Some(&[1, 2, 0])).unwrap().as_slice(), &[1, 2, 0]);
        assert_eq!(permutation(3, Some(&[0, 0, 1])), Err(NotAPermutation));
        assert_eq!(permutation(3, Some(&[0, 1])), Err(NotAPermutation));
        assert_eq!(permutation(3, Some(&[0, 1, 3])), Err(NotAPermutation));
        assert_eq!(permute::<usize, Vec<usize>>(&[2, 3, 4], &[1, 2, 0]), vec![3, 4, 2]);
        assert_eq!(reshape(&[2usize, 3], &[Some(3), Some(2)]), Ok(None));
        assert_eq!(reshape(&[2usize, 3], &[None, Some(2)]), Ok(Some(3)));
        assert_eq!(reshape(&[2usize, 3], &[None, Some(4)]), Err(ReshapeError::Mismatch { count: 6 }));
        assert_eq!(reshape(&[2usize, 3], &[None, Some(0)]), Err(ReshapeError::Mismatch { count: 6 }));
        assert_eq!(reshape(&[2usize, 3], &[None, None]), Err(ReshapeError::Holes));
        assert_eq!(reshape(&[u64::MAX, 2], &[None]), Err(ReshapeError::TooLarge));
        assert!(reshapes_to(&[2, 3], &[6]));
        assert!(reshapes_to(&[], &[1, 1]));
        assert!(!reshapes_to(&[2, 3], &[4]));
        assert!(!reshapes_to(&[2, 3], &[usize::MAX, 2]));
    }
}
