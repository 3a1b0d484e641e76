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
    /// [`SOp::BinK`] with an `i64` constant (the operand's dtype known
    /// when decoding, so the op's dtype dispatch folds away)
    BinKI64 { op: BinaryOp, dst: u32, a: u32, k: i64 },
    /// [`SOp::BinK`] with an `i32` constant
    BinKI32 { op: BinaryOp, dst: u32, a: u32, k: i32 },
    /// [`SOp::BinK`] with an `f32` constant
    BinKF32 { op: BinaryOp, dst: u32, a: u32, k: f32 },
    /// [`SOp::BinK`] with an `f64` constant
    BinKF64 { op: BinaryOp, dst: u32, a: u32, k: f64 },
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
            Inst::BinaryK { op, dst, a, k: c } => {
                let (op, dst, a) = (*op, dst.0, a.0);
                match k(c) {
                    Some(Scalar::I64(k)) => SOp::BinKI64 { op, dst, a, k },
                    Some(Scalar::I32(k)) => SOp::BinKI32 { op, dst, a, k },
                    Some(Scalar::F32(k)) => SOp::BinKF32 { op, dst, a, k },
                    Some(Scalar::F64(k)) => SOp::BinKF64 { op, dst, a, k },
                    Some(k) => SOp::BinK { op, dst, a, k },
                    None => SOp::General,
                }
            }
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
    // `R[a] op k` where R[a] holds an unboxed `$v` (else the op stops the
    // run): `sk::binary` inlined on known variants folds its dtype match.
    macro_rules! bin_k {
        ($i:ident, $op:ident, $dst:ident, $a:ident, $k:ident, $v:ident) => {
            match frame.get($a as usize) {
                Some(Val::Scalar(Scalar::$v(x))) => ($dst, sk::binary($op, Scalar::$v(*x), Scalar::$v($k))),
                _ => return $i,
            }
        };
    }
    for (i, op) in ops.iter().enumerate() {
        let (dst, v) = match *op {
            SOp::BinKI64 { op, dst, a, k } => bin_k!(i, op, dst, a, k, I64),
            SOp::BinKI32 { op, dst, a, k } => bin_k!(i, op, dst, a, k, I32),
            SOp::BinKF32 { op, dst, a, k } => bin_k!(i, op, dst, a, k, F32),
            SOp::BinKF64 { op, dst, a, k } => bin_k!(i, op, dst, a, k, F64),
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

#[cfg(test)]
mod tests {
    use super::*;
    use loopvm_runtime::Tensor;

    fn lcg_ops() -> Vec<SOp> {
        // r1 := r0 * 1103515245; r2 := r1 + 12345; r3 := r2 % 2^31 (the LCG)
        let ks = [Some(Scalar::I64(1_103_515_245)), Some(Scalar::I64(12_345)), Some(Scalar::I64(1 << 31))];
        let code = [
            Inst::BinaryK { op: BinaryOp::Mul, dst: Reg(1), a: Reg(0), k: ConstId(0) },
            Inst::BinaryK { op: BinaryOp::Add, dst: Reg(2), a: Reg(1), k: ConstId(1) },
            Inst::BinaryK { op: BinaryOp::Rem, dst: Reg(3), a: Reg(2), k: ConstId(2) },
        ];
        decode(&code, &ks).into_vec()
    }
    use crate::operand::{ConstId, Reg};

    #[test]
    fn decoded_ops_compute_as_the_scalar_kernels() {
        let ops = lcg_ops();
        assert!(matches!(ops[0], SOp::BinKI64 { k: 1_103_515_245, .. }));
        let mut frame = vec![Val::Scalar(Scalar::I64(12_345)), Val::Empty, Val::Empty, Val::Empty];
        assert_eq!(run(&ops, &mut frame), 3);
        let want = (12_345i64.wrapping_mul(1_103_515_245) + 12_345) % (1 << 31);
        assert!(matches!(frame[3], Val::Scalar(Scalar::I64(x)) if x == want), "{:?}", frame[3]);
    }

    #[test]
    fn a_boxed_or_mistyped_operand_stops_the_run_before_it() {
        let ops = lcg_ops();
        // A boxed operand: nothing runs, the general dispatch takes the op.
        let mut frame = vec![Val::Tensor(Tensor::scalar(5i64)), Val::Empty, Val::Empty, Val::Empty];
        assert_eq!(run(&ops, &mut frame), 0);
        assert!(matches!(frame[1], Val::Empty));
        // An operand of another dtype than the constant (unverified
        // bytecode): stops too, so the kernel reports the mismatch.
        let mut frame = vec![Val::Scalar(Scalar::I32(5)), Val::Empty, Val::Empty, Val::Empty];
        assert_eq!(run(&ops, &mut frame), 0);
        // A tensor constant is left to the general dispatch.
        let code = [Inst::Const { dst: Reg(0), k: ConstId(0) }];
        assert!(matches!(decode(&code, &[None])[..], [SOp::General]));
    }
}
