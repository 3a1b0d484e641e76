//! The verifier: the structural rules a module must keep before the
//! interpreter or a back end runs it. It never panics, whatever the input.
//!
//! Rules: ids are in range; every block is owned exactly once (the entry
//! block by its function, every other block by one region instruction);
//! each register is defined once (SSA); a use names a register defined
//! earlier in its block or an enclosing one; block results are defined by
//! the block's own instructions and are distinct; region and call shapes
//! agree with their blocks; the call graph has no cycle; nesting is bounded.

use crate::error::VerifyError;
use crate::inst::Inst;
use crate::module::{Func, Module};
use crate::operand::{BlockId, Reg};
use loopvm_runtime::DType;

/// The deepest block nesting (loops in loops, if in loops) accepted.
pub const MAX_NESTING: usize = 256;

/// Checks `m`; see the module docs for the rules.
pub fn verify(m: &Module) -> Result<(), VerifyError> {
    if let Some(main) = m.main {
        if main.0 as usize >= m.funcs.len() {
            return Err(VerifyError {
                func: "<module>".into(),
                message: format!("main is function {} of {}", main.0, m.funcs.len()),
            });
        }
    }
    for f in &m.funcs {
        FuncVerifier::new(m, f).run().map_err(|message| VerifyError { func: f.name.clone(), message })?;
    }
    check_call_graph(m)
}

struct FuncVerifier<'a> {
    m: &'a Module,
    f: &'a Func,
    /// The block that defined each register, once defined.
    def_block: Vec<Option<u32>>,
    /// Whether the register is visible at the current point.
    in_scope: Vec<bool>,
    owned: Vec<bool>,
}

impl<'a> FuncVerifier<'a> {
    fn new(m: &'a Module, f: &'a Func) -> Self {
        let n = f.reg_types.len();
        FuncVerifier { m, f, def_block: vec![None; n], in_scope: vec![false; n], owned: vec![false; f.blocks.len()] }
    }

    fn run(mut self) -> Result<(), String> {
        let f = self.f;
        let body = self.take_block(f.body)?;
        let leaves = |t: &crate::TypeTree| t.leaves().len();
        let nparams: usize = f.params.iter().map(|p| leaves(&p.ty)).sum();
        if body.params.len() != nparams {
            return Err(format!("entry block has {} params, the signature {}", body.params.len(), nparams));
        }
        if body.results.len() != leaves(&f.result) {
            return Err(format!("entry block has {} results, the signature {}", body.results.len(), leaves(&f.result)));
        }
        let sig: Vec<_> = f.params.iter().flat_map(|p| p.ty.leaves()).collect();
        for (r, t) in body.params.iter().zip(sig) {
            if self.ty(*r)? != t {
                return Err(format!("param register r{} does not have its signature type", r.0));
            }
        }
        self.block(f.body, 0)?;
        if let Some(i) = self.owned.iter().position(|o| !o) {
            return Err(format!("block b{i} is not owned by any instruction"));
        }
        Ok(())
    }

    fn take_block(&mut self, b: BlockId) -> Result<&'a crate::Block, String> {
        let slot = self.owned.get_mut(b.0 as usize).ok_or_else(|| format!("block b{} does not exist", b.0))?;
        if *slot {
            return Err(format!("block b{} is owned twice", b.0));
        }
        *slot = true;
        Ok(&self.f.blocks[b.0 as usize])
    }

    fn ty(&self, r: Reg) -> Result<&'a crate::TensorType, String> {
        self.f
            .reg_types
            .get(r.0 as usize)
            .ok_or_else(|| format!("register r{} out of range ({} registers)", r.0, self.f.reg_types.len()))
    }

    fn dtype(&self, r: Reg) -> Result<DType, String> {
        Ok(self.ty(r)?.dtype)
    }

    fn define(&mut self, r: Reg, block: BlockId, by_inst: bool) -> Result<(), String> {
        self.ty(r)?;
        let i = r.0 as usize;
        if self.def_block[i].is_some() || self.in_scope[i] {
            return Err(format!("register r{} is defined twice", r.0));
        }
        self.def_block[i] = if by_inst { Some(block.0) } else { Some(u32::MAX) };
        self.in_scope[i] = true;
        Ok(())
    }

    fn use_reg(&self, r: Reg) -> Result<(), String> {
        self.ty(r)?;
        if !self.in_scope[r.0 as usize] {
            return Err(format!("register r{} is used before it is defined (or outside its block)", r.0));
        }
        Ok(())
    }

    /// Verifies block `b` (already taken), with its params defined by the owner.
    fn block(&mut self, b: BlockId, depth: usize) -> Result<(), String> {
        if depth > MAX_NESTING {
            return Err(format!("blocks nested deeper than {MAX_NESTING}"));
        }
        let blk = &self.f.blocks[b.0 as usize];
        let mut local: Vec<Reg> = Vec::new();
        for &p in &blk.params {
            self.define(p, b, false)?;
            local.push(p);
        }
        for inst in &blk.code {
            let mut err = None;
            inst.visit_uses(&mut |r| {
                if err.is_none() {
                    err = self.use_reg(r).err();
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
            self.region(inst, depth)?;
            let mut defs = Vec::new();
            inst.visit_defs(&mut |r| defs.push(r));
            for r in defs {
                self.define(r, b, true)?;
                local.push(r);
            }
            self.inst(inst)?;
        }
        for (k, r) in blk.results.iter().enumerate() {
            self.use_reg(*r)?;
            if self.def_block[r.0 as usize] != Some(b.0) {
                return Err(format!(
                    "result r{} of block b{} is not defined by the block's own instructions",
                    r.0, b.0
                ));
            }
            if blk.results[..k].contains(r) {
                return Err(format!("result r{} of block b{} appears twice", r.0, b.0));
            }
        }
        for r in local {
            self.in_scope[r.0 as usize] = false;
        }
        Ok(())
    }

    /// Checks the blocks a region instruction owns and verifies them.
    fn region(&mut self, inst: &Inst, depth: usize) -> Result<(), String> {
        let eq_types = |v: &Self, a: &[Reg], b: &[Reg], what: &str| -> Result<(), String> {
            if a.len() != b.len() {
                return Err(format!("{what}: {} registers against {}", a.len(), b.len()));
            }
            for (x, y) in a.iter().zip(b) {
                if v.dtype(*x)? != v.dtype(*y)? || v.ty(*x)?.rank() != v.ty(*y)?.rank() {
                    return Err(format!("{what}: r{} and r{} have different types", x.0, y.0));
                }
            }
            Ok(())
        };
        match inst {
            Inst::If { dsts, c, then_, else_ } => {
                if self.dtype(*c)? != DType::Bool {
                    return Err("if condition is not bool".into());
                }
                for b in [*then_, *else_] {
                    let blk = self.take_block(b)?;
                    if !blk.params.is_empty() {
                        return Err(format!("if branch b{} takes params", b.0));
                    }
                    self.block(b, depth + 1)?;
                    eq_types(self, &blk.results, dsts, "if branch results and dsts")?;
                }
            }
            Inst::Fori { dsts, lo, hi, init, body, .. } => {
                let (dl, dh) = (self.dtype(*lo)?, self.dtype(*hi)?);
                if dl != dh || !dl.is_int() || dl.is_unsigned() {
                    return Err(format!("fori_loop bounds are {dl} and {dh}, not one signed integer dtype"));
                }
                let blk = self.take_block(*body)?;
                let Some((i, carry)) = blk.params.split_first() else {
                    return Err("fori_loop body has no counter param".into());
                };
                if self.dtype(*i)? != dl {
                    return Err("fori_loop counter dtype differs from the bounds".into());
                }
                eq_types(self, carry, init, "fori_loop params and init")?;
                self.block(*body, depth + 1)?;
                eq_types(self, &blk.results, init, "fori_loop results and init")?;
                eq_types(self, dsts, init, "fori_loop dsts and init")?;
            }
            Inst::While { dsts, init, cond, body } => {
                let cb = self.take_block(*cond)?;
                eq_types(self, &cb.params, init, "while_loop cond params and init")?;
                self.block(*cond, depth + 1)?;
                match cb.results.as_slice() {
                    [c] if self.dtype(*c)? == DType::Bool && self.ty(*c)?.rank() == 0 => {}
                    _ => return Err("while_loop condition does not return one bool scalar".into()),
                }
                let bb = self.take_block(*body)?;
                eq_types(self, &bb.params, init, "while_loop body params and init")?;
                self.block(*body, depth + 1)?;
                eq_types(self, &bb.results, init, "while_loop body results and init")?;
                eq_types(self, dsts, init, "while_loop dsts and init")?;
            }
            Inst::Scan { dsts, init, xs, length, body, .. } => {
                if xs.is_empty() && length.0.is_none() {
                    return Err("scan has neither xs nor a length".into());
                }
                let blk = self.take_block(*body)?;
                let nc = init.len();
                if blk.params.len() != nc + xs.len() {
                    return Err(format!("scan body has {} params, expected {}", blk.params.len(), nc + xs.len()));
                }
                eq_types(self, &blk.params[..nc], init, "scan carry params and init")?;
                for (p, x) in blk.params[nc..].iter().zip(xs) {
                    let (pt, xt) = (self.ty(*p)?, self.ty(*x)?);
                    if pt.dtype != xt.dtype || pt.rank() + 1 != xt.rank() {
                        return Err(format!("scan x param r{} does not match a row of r{}", p.0, x.0));
                    }
                }
                self.block(*body, depth + 1)?;
                if blk.results.len() < nc || dsts.len() != blk.results.len() {
                    return Err("scan results and dsts do not match the carry".into());
                }
                eq_types(self, &blk.results[..nc], init, "scan carry results and init")?;
                eq_types(self, &dsts[..nc], init, "scan carry dsts and init")?;
                for (y, ys) in blk.results[nc..].iter().zip(&dsts[nc..]) {
                    let (yt, yst) = (self.ty(*y)?, self.ty(*ys)?);
                    if yt.dtype != yst.dtype || yt.rank() + 1 != yst.rank() {
                        return Err(format!("scan ys r{} does not stack y r{}", ys.0, y.0));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks ids and arities of non-region instructions.
    fn inst(&self, inst: &Inst) -> Result<(), String> {
        match inst {
            Inst::Const { dst, k } => {
                let c = self.m.consts.get(k.0 as usize).ok_or_else(|| format!("constant k{} does not exist", k.0))?;
                if c.dtype() != self.dtype(*dst)? {
                    return Err(format!("constant k{} is {} but r{} is {}", k.0, c.dtype(), dst.0, self.dtype(*dst)?));
                }
            }
            Inst::BinaryK { op, a, k, .. } | Inst::KBinary { op, a, k, .. } => {
                let c = self.m.consts.get(k.0 as usize).ok_or_else(|| format!("constant k{} does not exist", k.0))?;
                if c.dtype() != self.dtype(*a)? {
                    return Err(format!(
                        "{op} of r{} ({}) and constant k{} ({}): the operands need one dtype",
                        a.0,
                        self.dtype(*a)?,
                        k.0,
                        c.dtype()
                    ));
                }
            }
            Inst::Call { dsts, func, args } => {
                let callee =
                    self.m.funcs.get(func.0 as usize).ok_or_else(|| format!("function f{} does not exist", func.0))?;
                let body = callee
                    .blocks
                    .get(callee.body.0 as usize)
                    .ok_or_else(|| format!("function `{}` has no entry block", callee.name))?;
                if body.params.len() != args.len() || body.results.len() != dsts.len() {
                    return Err(format!(
                        "call of `{}` with {} args and {} results, it takes {} and gives {}",
                        callee.name,
                        args.len(),
                        dsts.len(),
                        body.params.len(),
                        body.results.len()
                    ));
                }
            }
            Inst::DotGeneral { dst, a, b, dims } => {
                let (ta, tb, td) = (self.ty(*a)?, self.ty(*b)?, self.ty(*dst)?);
                if ta.dtype != tb.dtype || ta.dtype != td.dtype || ta.dtype == DType::Bool {
                    return Err(format!(
                        "dot_general of r{} ({}) and r{} ({}) into r{} ({}): one numeric dtype needed",
                        a.0, ta.dtype, b.0, tb.dtype, dst.0, td.dtype
                    ));
                }
                let loose = |t: &crate::TensorType| t.dims.iter().map(|d| LooseDim(*d)).collect::<Vec<_>>();
                let g = loopvm_runtime::rules::dot_general(&loose(ta), &loose(tb), dims)
                    .map_err(|e| format!("dot_general of r{} and r{} with {dims:?}: {e:?}", a.0, b.0))?;
                let want: Vec<LooseDim> = g.dims();
                if want != loose(td) {
                    return Err(format!("dot_general result r{} does not have the contraction's shape", dst.0));
                }
            }
            Inst::Take { dst, a, ids, axis } | Inst::ScatterAdd { dst, a, ids, axis, .. } => {
                let (rank, ir) = (self.ty(*a)?.rank(), self.ty(*ids)?.rank());
                if !self.dtype(*ids)?.is_int() {
                    return Err(format!("take ids r{} are not integers", ids.0));
                }
                if axis.0 as usize >= rank {
                    return Err(format!("take axis {} is out of range for rank {rank}", axis.0));
                }
                let want = if matches!(inst, Inst::Take { .. }) { rank - 1 + ir } else { rank };
                if self.ty(*dst)?.rank() != want || self.dtype(*dst)? != self.dtype(*a)? {
                    return Err(format!("take result r{} does not have the operand's dtype and rank {want}", dst.0));
                }
                if let Inst::ScatterAdd { u, .. } = inst {
                    if self.ty(*u)?.rank() != rank - 1 + ir || self.dtype(*u)? != self.dtype(*a)? {
                        return Err(format!("scatter_add updates r{} do not match the operand", u.0));
                    }
                }
            }
            Inst::DynSlice { a, starts, .. } | Inst::DynUpdateSlice { a, starts, .. } => {
                let rank = self.ty(*a)?.rank();
                if starts.len() != rank {
                    return Err(format!("{} window starts for rank {rank}", starts.len()));
                }
                for r in starts.iter() {
                    if !self.dtype(*r)?.is_int() || self.ty(*r)?.rank() != 0 {
                        return Err(format!("window start r{} is not an integer scalar", r.0));
                    }
                }
                match inst {
                    Inst::DynSlice { sizes, .. } if sizes.0.len() != rank => {
                        return Err(format!("a window of {} sizes for rank {rank}", sizes.0.len()));
                    }
                    Inst::DynUpdateSlice { u, .. }
                        if self.ty(*u)?.rank() != rank || self.dtype(*u)? != self.dtype(*a)? =>
                    {
                        return Err(format!("dynamic_update_slice update r{} does not match the operand", u.0));
                    }
                    _ => {}
                }
            }
            Inst::Cumsum { a, axis, .. } if axis.0 as usize >= self.ty(*a)?.rank() => {
                return Err(format!("cumsum axis {} is out of range", axis.0));
            }
            Inst::Fori { unroll, .. } | Inst::Scan { unroll, .. } if *unroll == 0 => {
                return Err("unroll must be at least 1".into());
            }
            Inst::Bitcast { dst, a, to } => {
                let from = self.dtype(*a)?;
                if !from.can_bitcast(*to) || self.dtype(*dst)? != *to {
                    return Err(format!("bitcast of r{} ({from}) to {to} into r{}", a.0, dst.0));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Rejects a cycle in the call graph (loopvm functions do not recurse).
fn check_call_graph(m: &Module) -> Result<(), VerifyError> {
    let n = m.funcs.len();
    let callees: Vec<Vec<usize>> = m
        .funcs
        .iter()
        .map(|f| {
            let mut v = Vec::new();
            for b in &f.blocks {
                for i in &b.code {
                    if let Inst::Call { func, .. } = i {
                        v.push(func.0 as usize);
                    }
                }
            }
            v
        })
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done. Iterative DFS.
    let mut state = vec![0u8; n];
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some((f, k)) = stack.pop() {
            if let Some(&g) = callees[f].get(k) {
                stack.push((f, k + 1));
                match state.get(g) {
                    Some(0) => {
                        state[g] = 1;
                        stack.push((g, 0));
                    }
                    Some(1) => {
                        return Err(VerifyError {
                            func: m.funcs[g].name.clone(),
                            message: "recursive call cycle".into(),
                        });
                    }
                    _ => {}
                }
            } else {
                state[f] = 2;
            }
        }
    }
    Ok(())
}

/// A static dim as the verifier compares them: a shape variable matches any
/// dim (its value is known only per call; the kernel checks it then).
#[derive(Clone, Copy, Debug)]
struct LooseDim(crate::module::Dim);

impl PartialEq for LooseDim {
    fn eq(&self, other: &Self) -> bool {
        use crate::module::Dim::Fixed;
        match (self.0, other.0) {
            (Fixed(x), Fixed(y)) => x == y,
            _ => true,
        }
    }
}

impl loopvm_runtime::rules::Extent for LooseDim {
    fn known(&self) -> Option<u64> {
        match self.0 {
            crate::module::Dim::Fixed(n) => Some(n),
            crate::module::Dim::Var(_) => None,
        }
    }
    fn from_known(n: u64) -> Option<Self> {
        Some(LooseDim(crate::module::Dim::Fixed(n)))
    }
}
