//! Scalar blocks in decoded form: the interpreter's fast path for loop
//! bodies and `while_loop` conditions made of scalar elementwise ops.
//!
//! When an interpreter is built, each block whose instructions are all
//! scalar elementwise ops, constants and moves (known from the register
//! types) is decoded once into a slice of [`SOp`]: register numbers as
//! plain indices, constants as unboxed [`Scalar`]s in the instruction (no
//! constant-pool lookup, no `Option` per operand), and the opcode a small
//! dense tag. [`run`] executes such a slice in a tight loop with each arm a
//! few loads, the op and a store, as wasmi's executor runs its
//! pre-resolved instructions: `x * 1103515245i64 + 12345i64` is two
//! [`SOp::BinK`]s on unboxed `i64` registers.
//!
//! [`run`] stops at the first instruction it cannot take (an operand that
//! is boxed, a dtype or op the scalar path does not accept): the
//! interpreter runs that one instruction through its general dispatch
//! (which reports any error) and resumes the slice after it, so the effects,
//! the op count and the errors are exactly those of running the block's
//! bytecode one instruction at a time.

use crate::inst::Inst;
use crate::value::Val;
use loopvm_runtime::kernels::{scalar as sk, Scalar};
use loopvm_runtime::{BinaryOp, DType, UnaryOp};

/// One decoded instruction of a scalar block (`R[i]`: register `i` of the
/// frame, unboxed).
#[derive(Clone, Copy, Debug)]
pub(crate) enum SOp {
    /// R[dst] := R[a] op R[b]
    Bin { op: BinaryOp, dst: u32, a: u32, b: u32 },
    /// R[dst] := R[a] op k
    BinK { op: BinaryOp, dst: u32, a: u32, k: Scalar },
    /// R[dst] := k op R[a]
    KBin { op: BinaryOp, dst: u32, k: Scalar, a: u32 },
    /// R[dst] := op(R[a])
    Un { op: UnaryOp, dst: u32, a: u32 },
    /// R[dst] := R[a] as to
    Cast { dst: u32, a: u32, to: DType },
    /// R[dst] := R[c] ? R[a] : R[b]
    Select { dst: u32, c: u32, a: u32, b: u32 },
    /// R[dst] := k
    Const { dst: u32, k: Scalar },
    /// R[dst] := R[src]
    Move { dst: u32, src: u32 },
    /// Anything else (a tensor constant): the general dispatch runs it.
    General,
}

/// Decodes `code`, a block that [`crate::interp`]'s `scalar_block` accepted;
/// `kscalars[k]` is constant `k` unboxed (`None` when it is not rank 0).
pub(crate) fn decode(code: &[Inst], kscalars: &[Option<Scalar>]) -> Box<[SOp]> {
    let k = |c: &crate::operand::ConstId| kscalars.get(c.0 as usize).copied().flatten();
    code.iter()
        .map(|inst| match inst {
            Inst::Binary { op, dst, a, b } => SOp::Bin { op: *op, dst: dst.0, a: a.0, b: b.0 },
            Inst::BinaryK { op, dst, a, k: c } => match k(c) {
                Some(k) => SOp::BinK { op: *op, dst: dst.0, a: a.0, k },
                None => SOp::General,
            },
            Inst::KBinary { op, dst, k: c, a } => match k(c) {
                Some(k) => SOp::KBin { op: *op, dst: dst.0, k, a: a.0 },
                None => SOp::General,
            },
            Inst::Unary { op, dst, a } => SOp::Un { op: *op, dst: dst.0, a: a.0 },
            Inst::Cast { dst, a, to } => SOp::Cast { dst: dst.0, a: a.0, to: *to },
            Inst::Select { dst, c, a, b } => SOp::Select { dst: dst.0, c: c.0, a: a.0, b: b.0 },
            Inst::Const { dst, k: c } => match k(c) {
                Some(k) => SOp::Const { dst: dst.0, k },
                None => SOp::General,
            },
            Inst::Move { dst, src } => SOp::Move { dst: dst.0, src: src.0 },
            _ => SOp::General,
        })
        .collect()
}

/// Runs `ops` on `frame` from the first until one it cannot take; returns
/// how many it ran (`ops.len()` when all).
#[inline]
pub(crate) fn run(ops: &[SOp], frame: &mut [Val]) -> usize {
    #[inline(always)]
    fn u(frame: &[Val], r: u32) -> Option<Scalar> {
        match frame.get(r as usize) {
            Some(Val::Scalar(s)) => Some(*s),
            _ => None,
        }
    }
    for (i, op) in ops.iter().enumerate() {
        let (dst, v) = match *op {
            SOp::BinK { op, dst, a, k } => (dst, u(frame, a).and_then(|x| sk::binary(op, x, k))),
            SOp::KBin { op, dst, k, a } => (dst, u(frame, a).and_then(|x| sk::binary(op, k, x))),
            SOp::Bin { op, dst, a, b } => (dst, u(frame, a).zip(u(frame, b)).and_then(|(x, y)| sk::binary(op, x, y))),
            SOp::Un { op, dst, a } => (dst, u(frame, a).and_then(|x| sk::unary(op, x))),
            SOp::Cast { dst, a, to } => (dst, u(frame, a).map(|x| sk::cast(x, to))),
            SOp::Select { dst, c, a, b } => {
                (dst, u(frame, c).zip(u(frame, a)).zip(u(frame, b)).and_then(|((c, x), y)| sk::select(c, x, y)))
            }
            SOp::Const { dst, k } => (dst, Some(k)),
            SOp::Move { dst, src } => (dst, u(frame, src)),
            SOp::General => return i,
        };
        match (v, frame.get_mut(dst as usize)) {
            (Some(v), Some(slot)) => slot.put_scalar(v),
            _ => return i,
        }
    }
    ops.len()
}
