//! The interpreter's registers: a value is empty, an unboxed [`Scalar`], or
//! a [`Tensor`].
//!
//! Rank-0 results of the elementwise ops (`binary`, `unary`, `cast`,
//! `select` and their constant forms), scalar constants and loop counters
//! are held as [`Val::Scalar`]: no shape, buffer or reference count, so a
//! scalar loop allocates and frees nothing and an op is a `match` and one
//! machine operation (as Lua's `TValue`). Every other op reads tensors: a
//! scalar operand is boxed in place first ([`Val::make_tensor`]). A register
//! that holds a boxed rank-0 tensor of its own stays boxed: the scalar ops
//! write into its buffer ([`Val::put_scalar`]), so a loop that feeds a
//! scalar to a tensor op allocates the box once, not every iteration. The
//! scalar paths read a boxed rank-0 operand (a function's argument, a
//! reduction's result) as its element ([`Val::scalar`]: the unboxed tag
//! first), so that a loop comparing its counter with an argument does not
//! box the counter for the tensor kernel every iteration.
//! `Val::Scalar` only ever holds a rank-0 value.

use loopvm_runtime::kernels::Scalar;
use loopvm_runtime::Tensor;

/// One register of a frame.
#[derive(Clone, Debug, Default)]
pub(crate) enum Val {
    /// Not written yet (or moved out).
    #[default]
    Empty,
    /// A rank-0 value, unboxed.
    Scalar(Scalar),
    /// A tensor of any rank.
    Tensor(Tensor),
}

impl Val {
    /// The value when it is a scalar, unboxed or a rank-0 tensor.
    #[inline(always)]
    pub(crate) fn scalar(&self) -> Option<Scalar> {
        match self {
            Val::Scalar(s) => Some(*s),
            Val::Tensor(t) => Scalar::of(t),
            Val::Empty => None,
        }
    }

    /// Writes scalar `v`: into the buffer of a boxed rank-0 tensor of `v`'s
    /// dtype that this register alone holds, else unboxed.
    #[inline(always)]
    pub(crate) fn put_scalar(&mut self, v: Scalar) {
        match self {
            // The common case: no old value to drop.
            Val::Scalar(s) => *s = v,
            Val::Tensor(t) => {
                if !v.store_into(t) {
                    *self = Val::Scalar(v);
                }
            }
            Val::Empty => *self = Val::Scalar(v),
        }
    }

    /// Writes a loop counter: `i` as an `i64` when `wide`, else as an
    /// `i32`. Into an unboxed register it is stored as the variant it is
    /// (a tag byte and the integer): a `Scalar` chosen first is built on the
    /// stack and copied in with one 16-byte load, which the processor cannot
    /// forward from those two narrower stores (a stall every iteration).
    #[inline(always)]
    pub(crate) fn put_counter(&mut self, i: i64, wide: bool) {
        match (self, wide) {
            (Val::Scalar(s), true) => *s = Scalar::I64(i),
            (Val::Scalar(s), false) => *s = Scalar::I32(i as i32),
            (v, true) => v.put_scalar(Scalar::I64(i)),
            (v, false) => v.put_scalar(Scalar::I32(i as i32)),
        }
    }

    /// Boxes an unboxed scalar in place, so that the register holds a tensor.
    #[inline]
    pub(crate) fn make_tensor(&mut self) {
        if let Val::Scalar(s) = *self {
            *self = Val::Tensor(s.to_tensor());
        }
    }

    /// The value as a tensor (boxing a scalar into a new one).
    pub(crate) fn to_tensor(&self) -> Option<Tensor> {
        match self {
            Val::Scalar(s) => Some(s.to_tensor()),
            Val::Tensor(t) => Some(t.clone()),
            Val::Empty => None,
        }
    }

    /// The tensor, moved out, for a kernel to write into (a scalar's box
    /// cannot be reused: `None`).
    #[inline]
    pub(crate) fn take_tensor(&mut self) -> Option<Tensor> {
        match std::mem::take(self) {
            Val::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// Puts a kernel's output slot back into this register, which
    /// [`Val::take_tensor`] emptied: no old value to drop (the common case
    /// is known empty, so no call to the drop glue).
    #[inline(always)]
    pub(crate) fn put_slot(&mut self, t: Option<Tensor>) {
        match (self, t) {
            // The old value is `Empty`: nothing to drop, so none is run.
            (v @ Val::Empty, Some(t)) => std::mem::forget(std::mem::replace(v, Val::Tensor(t))),
            (Val::Empty, None) => {}
            (v, t) => *v = Val::from_slot(t),
        }
    }

    /// A kernel's output slot back as a register value.
    #[inline]
    pub(crate) fn from_slot(t: Option<Tensor>) -> Val {
        match t {
            Some(t) => Val::Tensor(t),
            None => Val::Empty,
        }
    }

    /// The bytes the value holds, as `--max-memory` counts them.
    pub(crate) fn nbytes(&self) -> usize {
        match self {
            Val::Scalar(s) => s.nbytes(),
            Val::Tensor(t) => t.nbytes(),
            Val::Empty => 0,
        }
    }

    /// The value as the trace prints it.
    pub(crate) fn summary(&self, n: usize) -> String {
        self.to_tensor().map_or_else(|| "-".into(), |t| t.summary(n))
    }
}
