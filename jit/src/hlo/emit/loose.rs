//! Loose zeros: values that may hold a -0 where the interpreter holds +0.
//!
//! The interpreter's float sums and products accumulate from +0, so they
//! are never -0 (`docs/semantics.md`, Floats); XLA's are, where it
//! rewrites them (a dot over a length-1 dim becomes a multiply, `sum(-x)`
//! becomes `-sum(x)`, a sum over a length-1 axis a reshape). The emitter
//! makes such a result exact by adding a zero XLA cannot see (`r + 0`
//! turns -0 into +0 and changes nothing else). That add costs a pass over
//! memory where XLA cannot fuse it into a consumer: after a dot (XLA's CPU
//! dots are library calls, which fuse nothing) whose result is a loop's
//! carry, it is a loop of its own in every iteration.
//!
//! So the add is put off: a product's or sum's result is *loose* (the
//! interpreter's value is this value `+ 0`), and the add is emitted where a
//! consumer needs the exact value ([`Emitter::settle`], once per value and
//! region). Consumers that do not need it read the loose value:
//!
//! - a product or a sum of it: its result is loose again, and the zeros'
//!   signs of its operands change nothing but the sign of a zero result
//!   (each element is a sum of terms; a ±0 term leaves a non-zero sum as it
//!   is, and a zero sum is made +0 when the result is settled);
//! - layout ops (reshape, transpose, broadcast) and moves: their result is
//!   loose in turn;
//! - calls (inlined: the callee's ops decide) and loops: a loop's carry is
//!   loose when its initial value is, or when the body's result for it
//!   looks loose ([`loose_yields`]); the body then returns it unsettled and
//!   the value after the loop is loose, settled by its consumers there. A
//!   chain of products through a `fori_loop` (attention's output is the
//!   next pass's queries) is then settled once, after the loop.
//!
//! Every other consumer settles its operands first ([`reads_loose`] is the
//! list of those that do not), as do a function's results, an `if`'s
//! branches and a `scan`'s state, so no -0 the interpreter does not make
//! reaches a result.

use super::{Emitter, Val};
use loopvm_runtime::ReduceOp;
use loopvm_vm::{BlockId, Func, Inst, Module, Reg};

/// Deepest chain of calls and moves [`loose_yields`] follows.
const MAX_LOOK: usize = 64;

/// `true` when `inst` reads its operands loose (see the module's doc): the
/// emitter settles the operands of every other instruction.
pub(super) fn reads_loose(inst: &Inst) -> bool {
    match inst {
        Inst::Reduce { op, .. } => matches!(op, ReduceOp::Sum | ReduceOp::Mean),
        Inst::MatMul { .. }
        | Inst::DotGeneral { .. }
        | Inst::Reshape { .. }
        | Inst::ReshapeAs { .. }
        | Inst::Transpose { .. }
        | Inst::Broadcast { .. }
        | Inst::Move { .. }
        | Inst::Call { .. }
        | Inst::Fori { .. }
        | Inst::While { .. }
        | Inst::Scan { .. } => true,
        _ => false,
    }
}

/// For each of the first `n` results of block `b` of `func`: whether the
/// emitter will (probably) make it loose, a product or a float sum reached
/// through moves, layout ops and calls. A guess that steers where a loop's
/// carry is settled, never what it computes: a carry guessed loose whose
/// body returns it exact costs an add where the body and the code after
/// the loop use it; one guessed exact is settled in the body.
pub(super) fn loose_yields(m: &Module, func: &Func, b: BlockId, n: usize) -> Vec<bool> {
    let Some(blk) = func.blocks.get(b.0 as usize) else { return vec![false; n] };
    (0..n).map(|k| blk.results.get(k).is_some_and(|&r| made_loose(m, func, b, r, 0))).collect()
}

/// `true` when register `r`, as block `b` of `func` last writes it, looks
/// loose (see [`loose_yields`]).
fn made_loose(m: &Module, func: &Func, b: BlockId, r: Reg, depth: usize) -> bool {
    if depth >= MAX_LOOK {
        return false;
    }
    let Some(blk) = func.blocks.get(b.0 as usize) else { return false };
    let def = blk.code.iter().rev().find(|i| {
        let mut hit = false;
        i.visit_defs(&mut |d| hit |= d == r);
        hit
    });
    match def {
        Some(Inst::MatMul { .. } | Inst::DotGeneral { .. }) => true,
        Some(Inst::Reduce { op, .. }) => *op == ReduceOp::Sum,
        Some(
            Inst::Move { src: a, .. }
            | Inst::Reshape { a, .. }
            | Inst::ReshapeAs { a, .. }
            | Inst::Transpose { a, .. }
            | Inst::Broadcast { a, .. },
        ) => made_loose(m, func, b, *a, depth + 1),
        Some(Inst::Call { dsts, func: callee, .. }) => {
            let Some(k) = dsts.iter().position(|&d| d == r) else { return false };
            let Some(cf) = m.funcs.get(callee.0 as usize) else { return false };
            let Some(&cr) = cf.blocks.get(cf.body.0 as usize).and_then(|cb| cb.results.get(k)) else { return false };
            made_loose(m, cf, cf.body, cr, depth + 1)
        }
        _ => false,
    }
}

impl Emitter<'_> {
    /// Records that `r` is loose (a float value only).
    pub(super) fn mark_loose(&mut self, r: &Val) {
        if r.dtype.is_float() {
            self.loose.insert(r.name.clone());
        }
    }

    pub(super) fn is_loose(&self, v: &Val) -> bool {
        self.loose.contains(&v.name)
    }

    /// `r`, a layout op's result (or a value passed on) from `a`, is loose
    /// when `a` is.
    pub(super) fn loose_from(&mut self, r: Val, a: &Val) -> Val {
        if self.is_loose(a) {
            self.mark_loose(&r);
        }
        r
    }

    /// `v` exact: a loose value plus a zero XLA cannot see (emitted once per
    /// value in a region), any other value as it is.
    pub(super) fn settle(&mut self, v: &Val) -> Val {
        if !self.is_loose(v) {
            return v.clone();
        }
        if let Some(s) = self.settled.get(&v.name) {
            return s.clone();
        }
        let s = self.plus_hidden_zero(v);
        self.settled.insert(v.name.clone(), s.clone());
        s
    }

    pub(super) fn settle_all(&mut self, vs: &[Val]) -> Vec<Val> {
        vs.iter().map(|v| self.settle(v)).collect()
    }

    /// The results of a loop body's copy, `res`, for a carry that was `cur`:
    /// a carry result is settled unless its carry is loose (the body
    /// returns a value at least as exact as it got), the results after the
    /// carries (a scan's ys) always.
    pub(super) fn settle_yields(&mut self, cur: &[Val], res: Vec<Val>) -> Vec<Val> {
        res.into_iter()
            .enumerate()
            .map(|(k, v)| if cur.get(k).is_some_and(|c| self.is_loose(c)) { v } else { self.settle(&v) })
            .collect()
    }
}
