//! The seam between the interpreter and the back ends.
//!
//! The interpreter does not know the back ends: it offers each loop
//! instruction (and each call of a function through [`crate::Interpreter::call`])
//! to a [`Backend`], which either runs it and returns the results or
//! declines. `jit` implements the trait; the root crate plugs it in.

use crate::error::ExecError;
use crate::inst::Inst;
use crate::interp::LoopStats;
use crate::meter::Meter;
use crate::module::{Func, Module};
use crate::operand::{BlockId, FuncId, Reg};
use loopvm_runtime::Tensor;

/// A region (a loop or a function) a back end declined, and why: it ran in
/// the interpreter instead. `Display` is `region: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The region, e.g. "fori_loop in `main` (b1) for (f32[3])".
    pub region: String,
    /// Why the back end did not compile it (first line of the emitter's or
    /// compiler's message).
    pub reason: String,
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.region, self.reason)
    }
}

/// A loop instruction offered to a back end.
#[derive(Clone, Copy, Debug)]
pub struct LoopSite<'m> {
    /// The module.
    pub module: &'m Module,
    /// The function holding the loop.
    pub func_id: FuncId,
    /// That function.
    pub func: &'m Func,
    /// The loop instruction (`Fori`, `While` or `Scan`).
    pub inst: &'m Inst,
    /// The loop's body block: with `func_id`, the loop's identity.
    pub body: BlockId,
    /// The profiler's counts for this loop before this entry.
    pub stats: LoopStats,
}

/// How often (in iterations) a running loop is offered to [`Backend::resume_loop`].
pub const RESUME_INTERVAL: u64 = 1024;

/// The whole state of a running loop at an iteration boundary.
#[derive(Clone, Copy, Debug)]
pub struct LoopState<'a> {
    /// Iterations already run in this entry of the loop. For `fori_loop`
    /// the next counter value is `lo + done`; for `scan` the next row is
    /// `done` (from the end when reversed).
    pub done: u64,
    /// The current carry (for `fori_loop`, without the counter).
    pub carry: &'a [&'a Tensor],
    /// `scan` only: the `ys` written so far (rows not yet run are zero).
    pub ys: &'a [&'a Tensor],
}

/// A back end that can run loop instructions and whole functions.
pub trait Backend {
    /// Runs the loop at `site` with `inputs` (the values of
    /// [`region_inputs`]`(site.func, site.inst)`, in that order) and returns
    /// the values of its `dsts`, or `None` to let the interpreter run it.
    ///
    /// A back end that runs the loop books every iteration it runs (nested
    /// loops included) on `meter` and fails as the interpreter would when a
    /// limit is passed ([`Meter::counts`] says whether it must count).
    fn run_loop(
        &mut self,
        site: &LoopSite<'_>,
        inputs: &[&Tensor],
        meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>>;

    /// Takes over a loop the interpreter is running, at an iteration
    /// boundary (on-stack replacement): `state` is the loop's whole state
    /// there. Returns the values of the loop's `dsts` after running the
    /// remaining iterations, or `None` to let the interpreter go on. Offered
    /// every [`RESUME_INTERVAL`] iterations of a loop while a back end is set;
    /// `meter` as for [`Backend::run_loop`].
    fn resume_loop(
        &mut self,
        _site: &LoopSite<'_>,
        _inputs: &[&Tensor],
        _state: &LoopState<'_>,
        _meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        None
    }

    /// Runs function `f` on its flattened arguments and returns its
    /// flattened results, or `None` to let the interpreter run it; `meter`
    /// as for [`Backend::run_loop`].
    fn run_function(
        &mut self,
        _m: &Module,
        _f: FuncId,
        _args: &[Tensor],
        _meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        None
    }
}

/// The registers a region instruction reads from outside itself: its own
/// operands and every register its blocks use but do not define, in order of
/// first appearance, without repeats.
pub fn region_inputs(func: &Func, inst: &Inst) -> Vec<Reg> {
    let mut defined: Vec<bool> = vec![false; func.reg_types.len()];
    let mut seen: Vec<bool> = vec![false; func.reg_types.len()];
    let mut out = Vec::new();
    let mut note = |r: Reg, defined: &Vec<bool>, out: &mut Vec<Reg>| {
        let i = r.0 as usize;
        if i < seen.len() && !defined[i] && !seen[i] {
            seen[i] = true;
            out.push(r);
        }
    };
    inst.visit_uses(&mut |r| note(r, &defined, &mut out));
    // Walk the owned blocks depth-first; every register is defined once, so
    // "defined anywhere inside" is "defined before its use" for verified code.
    let mut stack: Vec<BlockId> = inst.blocks();
    let mut order = Vec::new();
    while let Some(b) = stack.pop() {
        let Some(blk) = func.blocks.get(b.0 as usize) else { continue };
        order.push(b);
        for i in &blk.code {
            stack.extend(i.blocks());
        }
    }
    for b in &order {
        let blk = &func.blocks[b.0 as usize];
        for p in &blk.params {
            if let Some(d) = defined.get_mut(p.0 as usize) {
                *d = true;
            }
        }
        for i in &blk.code {
            i.visit_defs(&mut |r| {
                if let Some(d) = defined.get_mut(r.0 as usize) {
                    *d = true;
                }
            });
        }
    }
    for b in &order {
        let blk = &func.blocks[b.0 as usize];
        for i in &blk.code {
            i.visit_uses(&mut |r| note(r, &defined, &mut out));
        }
        for r in &blk.results {
            note(*r, &defined, &mut out);
        }
    }
    out
}
