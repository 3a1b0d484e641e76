//! Rolled and partially unrolled loops (issue 8): the `stablehlo.while`s of
//! `fori_loop`, `while_loop` and `scan`, with the body repeated `k` times per
//! trip where [`UnrollOptions`](super::UnrollOptions) says so.
//!
//! Exactness, loop by loop (the body is emitted `k + 1` times at most, so the
//! text does not grow with the trip count):
//!
//! - `fori_loop(lo, hi)` by `k`: a main while carrying `(b, nb, i,
//!   carry..., invariants...)`: `nb = max(hi - lo, 0) / k` full blocks
//!   (computed in the unsigned type of the bounds' width, so that no span
//!   overflows), condition `b < nb`, body `k` copies with counters `i, i +
//!   1, ..., i + k - 1`, then `b += 1`, `i += k` (a step-1 block counter:
//!   XLA's trip count analysis miscounts `i < lim; i += k`); then
//!   the rolled loop (`i < hi`, body once) from the main loop's `i` for the
//!   0 to `k - 1` iterations left. With static bounds, a main loop that would
//!   never run and a remainder loop that would never run are left out.
//! - `while_loop` by `k`: one while whose condition is the program's; its
//!   body runs copy 1, then for each further copy evaluates the condition on
//!   the current carry and runs the copy under `stablehlo.if` (else passes
//!   the carry through), so the condition is checked before every copy, as
//!   the interpreter does.
//! - `scan` of `n` steps by `k` (`k <= n`): a main while over the
//!   `n / k * k` first steps, each trip one `dynamic_slice` of `k` rows of
//!   every `xs` (static slices give each copy its row), `k` copies, and one
//!   `dynamic_update_slice` of `k` rows into every `ys` (rows in reverse
//!   order for `reverse: true`); then the rolled loop over the `n % k` steps
//!   left, continuing the same step counter.

use super::{bind_params, loose, Emitter, Env, Lit, Result, Threaded, Val};
use crate::hlo::policy::{LoopUnroll, UnrollWhy};
use crate::hlo::EmitError;
use loopvm_runtime::DType;
use loopvm_vm::{BlockId, Func, FuncId, Inst, Reg};

/// Deepest chain of calls [`holds_loop`] follows.
const MAX_LOOK: usize = 64;

/// What the emission of one `fori_loop` needs.
pub(super) struct ForiCtx<'a> {
    pub func: &'a Func,
    pub body: BlockId,
    /// The body's counter parameter.
    pub ireg: Reg,
    /// The body's carry parameters.
    pub carry: &'a [Reg],
    pub cap_regs: &'a [Reg],
    pub cap_vals: &'a [Val],
    /// The counter's dtype as the body sees it (`lo`'s).
    pub idt: DType,
    /// The counter's dtype in the loop (`i64` if either bound is).
    pub cdt: DType,
}

/// What the emission of one `scan` needs.
pub(super) struct ScanCtx<'a> {
    pub func: &'a Func,
    pub body: BlockId,
    pub cparams: &'a [Reg],
    pub xparams: &'a [Reg],
    pub cap_regs: &'a [Reg],
    pub cap_vals: &'a [Val],
    pub xs: &'a [Val],
    /// The number of steps (at least 1 here).
    pub n: usize,
    pub reverse: bool,
    /// Carry and ys counts.
    pub nc: usize,
    pub ny: usize,
    /// The step counter's dtype.
    pub ct: DType,
}

/// The environment of a `while_loop` block: captures bound to the loop's
/// invariants, parameters to `cur`.
pub(super) fn while_env(cap_regs: &[Reg], inv: &[Val], params: &[Reg], cur: &[Val]) -> Env {
    let mut env = Env::new();
    bind_params(&mut env, cap_regs, inv);
    bind_params(&mut env, params, cur);
    env
}

/// `true` when `blocks` of `func` (nested blocks and called functions
/// included) hold a `fori_loop`, `while_loop` or `scan`.
pub(super) fn holds_loop(m: &loopvm_vm::Module, func: &Func, blocks: &[BlockId], depth: usize) -> bool {
    let mut stack: Vec<BlockId> = blocks.to_vec();
    let mut seen = vec![false; func.blocks.len()];
    while let Some(b) = stack.pop() {
        let Some(blk) = func.blocks.get(b.0 as usize) else { continue };
        if std::mem::replace(&mut seen[b.0 as usize], true) {
            continue;
        }
        for i in &blk.code {
            match i {
                Inst::Fori { .. } | Inst::While { .. } | Inst::Scan { .. } => return true,
                Inst::Call { func: FuncId(f), .. } => {
                    let Some(cf) = m.funcs.get(*f as usize) else { continue };
                    // Too deep to look: assume a loop (the policy then keeps
                    // the program's own factor).
                    if depth >= MAX_LOOK || holds_loop(m, cf, &[cf.body], depth + 1) {
                        return true;
                    }
                }
                _ => stack.extend(i.blocks()),
            }
        }
    }
    false
}

impl Emitter<'_> {
    /// Picks the unroll factor of a loop over `blocks` (its body, and its
    /// condition for a `while_loop`), records it, and writes it as a comment
    /// before the loop. `measure` emits one copy of the body (into a buffer
    /// thrown away) when the policy needs the body's size; it is only asked
    /// to when the blocks hold no loop, so measuring costs one emission of a
    /// loop-free body.
    pub(super) fn pick_unroll(
        &mut self,
        kind: &'static str,
        func: &Func,
        blocks: &[BlockId],
        source: u32,
        trip: Option<u64>,
        measure: impl FnOnce(&mut Self) -> Result<Vec<Val>>,
    ) -> Result<u32> {
        if self.fuel.is_some() {
            // Metered: every iteration is counted on its own.
            return Ok(1);
        }
        let has_loop = holds_loop(self.m, func, blocks, 0);
        let body_ops = if self.unroll.wants_body_size() && !has_loop {
            let whiles = self.whiles;
            let (text, _) = self.region(measure)?;
            self.whiles = whiles;
            Some(text.lines().count())
        } else {
            None
        };
        // Copies of a body that prints would print in an order XLA may
        // change: such a loop stays rolled (the other loops of the module
        // keep their factors).
        let prints = self.blocks_print(func, blocks);
        let (k, why) =
            if prints { (1, UnrollWhy::Prints) } else { self.unroll.choose(source, trip, body_ops, has_loop) };
        let rec = LoopUnroll { kind, unroll: k, why, trip, body_ops };
        self.line(&rec.comment());
        self.unrolls.push(rec);
        Ok(k)
    }

    /// Emits one copy of `body` in `env` and returns its `expect` results,
    /// whose first ones must have the types of `cur` (the carry they
    /// replace).
    pub(super) fn copy(
        &mut self,
        func: &Func,
        body: BlockId,
        mut env: Env,
        cur: &[Val],
        expect: usize,
        what: &str,
    ) -> Result<Vec<Val>> {
        self.block(func, body, &mut env)?;
        let res = Self::results(func, body, &env, what)?;
        let res = self.settle_yields(cur, res);
        if res.len() != expect {
            return Err(EmitError::new(what, format!("the body returns {} values, expected {expect}", res.len())));
        }
        for (k, (a, b)) in cur.iter().zip(&res).enumerate() {
            if a.dtype != b.dtype || a.shape != b.shape {
                return Err(EmitError::new(
                    what,
                    format!("carry {k} changes type from {} to {} in the body", a.ty(), b.ty()),
                ));
            }
        }
        Ok(res)
    }

    /// Emits a `while_loop`'s condition on `cur`; returns it as a `tensor<i1>`.
    pub(super) fn while_cond(
        &mut self,
        func: &Func,
        cond_b: BlockId,
        cap_regs: &[Reg],
        inv: &[Val],
        cur: &[Val],
    ) -> Result<Val> {
        let what = "while";
        let cb = func.blocks.get(cond_b.0 as usize).ok_or_else(|| EmitError::new(what, "no condition block"))?;
        let mut cenv = while_env(cap_regs, inv, &cb.params, cur);
        self.block(func, cond_b, &mut cenv)?;
        let rs = Self::results(func, cond_b, &cenv, what)?;
        let c = rs.first().ok_or_else(|| EmitError::new(what, "while_loop condition without a result"))?;
        if c.dtype != DType::Bool || c.numel() != 1 {
            return Err(EmitError::new(what, format!("while_loop condition is not a bool scalar, got {}", c.ty())));
        }
        Ok(self.reshape(c, &[]))
    }

    /// `if c { <then_text>; then_res } else { otherwise }`: a `stablehlo.if`
    /// whose else branch returns `otherwise` unchanged. `then_res` and
    /// `otherwise` have one type each (the caller checked).
    pub(super) fn write_if(&mut self, c: &Val, then_text: &str, then_res: &[Val], otherwise: &[Val]) -> Vec<Val> {
        let n = otherwise.len();
        let types = otherwise.iter().map(Val::ty).collect::<Vec<_>>().join(", ");
        let names = |rs: &[Val]| rs.iter().take(n).map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        let base = self.fresh();
        let head = if n == 1 { base.clone() } else { format!("{base}:{n}") };
        self.line(&format!("{head} = \"stablehlo.if\"({}) ({{", c.name));
        self.out.push_str(then_text);
        self.indent += 1;
        self.line(&format!("stablehlo.return {} : {types}", names(then_res)));
        self.indent -= 1;
        self.line("}, {");
        self.indent += 1;
        self.line(&format!("stablehlo.return {} : {types}", names(otherwise)));
        self.indent -= 1;
        let res_ty = if n == 1 { types.clone() } else { format!("({types})") };
        self.line(&format!("}}) : (tensor<i1>) -> {res_ty}"));
        let outs: Vec<Val> = otherwise
            .iter()
            .enumerate()
            .map(|(k, v)| Val {
                name: if n == 1 { base.clone() } else { format!("{base}#{k}") },
                dtype: v.dtype,
                shape: v.shape.clone(),
                konst: None,
            })
            .collect();
        for (k, out) in outs.iter().enumerate() {
            if self.is_loose(&otherwise[k]) || then_res.get(k).is_some_and(|v| self.is_loose(v)) {
                self.mark_loose(out);
            }
        }
        outs
    }

    // ------------------------------------------------------------ fori_loop

    /// A `fori_loop` from `lo` to `hi` (counters of `ctx.cdt`), partially
    /// unrolled as the options say; returns the final carry.
    pub(super) fn fori_partial(
        &mut self,
        ctx: &ForiCtx<'_>,
        source: u32,
        trip: Option<u64>,
        lo: &Val,
        hi: &Val,
        init: &[Val],
    ) -> Result<Vec<Val>> {
        let k = self.pick_unroll("fori_loop", ctx.func, &[ctx.body], source, trip, |e| {
            let i = Val { name: "%measure".into(), dtype: ctx.cdt, shape: vec![], konst: None };
            e.fori_copy(ctx, &i, ctx.cap_vals, init)
        })?;
        let main = k > 1 && trip.is_none_or(|n| n >= u64::from(k));
        let (mut i, mut cur) = (lo.clone(), init.to_vec());
        if main {
            (i, cur) = self.fori_unrolled(ctx, k, &i, hi, &cur)?;
        }
        if !main || trip.is_none_or(|n| !n.is_multiple_of(u64::from(k))) {
            (_, cur) = self.fori_rolled(ctx, &i, hi, &cur)?;
        }
        Ok(cur)
    }

    /// One copy of a `fori_loop` body with counter `i` (of `ctx.cdt`).
    fn fori_copy(&mut self, ctx: &ForiCtx<'_>, i: &Val, inv: &[Val], cur: &[Val]) -> Result<Vec<Val>> {
        let mut env = Env::new();
        bind_params(&mut env, ctx.cap_regs, inv);
        let iv = self.convert(i, ctx.idt);
        env.insert(ctx.ireg, iv);
        bind_params(&mut env, ctx.carry, cur);
        self.copy(ctx.func, ctx.body, env, cur, cur.len(), "fori")
    }

    /// The state of a `fori_loop` while: `(i, bound, carry..., invariants...)`.
    fn fori_state(
        &mut self,
        ctx: &ForiCtx<'_>,
        i: &Val,
        bound: &Val,
        init: &[Val],
    ) -> (Vec<Val>, Vec<String>, Vec<Val>) {
        let mut all = vec![i.clone(), bound.clone()];
        all.extend_from_slice(init);
        all.extend(ctx.cap_vals.iter().cloned());
        let mut inv = vec![false, true];
        inv.extend(init.iter().map(|_| false));
        inv.extend(ctx.cap_vals.iter().map(|_| true));
        let mut hint = vec![false, false];
        hint.extend(loose::loose_yields(self.m, ctx.func, ctx.body, init.len()));
        let (names, vals) = self.iter_vals(&all, &inv, &hint);
        (all, names, vals)
    }

    /// The rolled `fori_loop` from `lo` to `hi`: returns the final counter and carry.
    fn fori_rolled(&mut self, ctx: &ForiCtx<'_>, lo: &Val, hi: &Val, init: &[Val]) -> Result<(Val, Vec<Val>)> {
        let nc = init.len();
        let (all, names, vals) = self.fori_state(ctx, lo, hi, init);
        let cs = self.chain_state(ctx.func, &[ctx.body]);
        let cs = cs.as_ref();
        let fs = self.fuel_state();
        let fs = fs.as_ref();
        let (cond_text, cond) = self.region(|e| {
            let c = e.cmp("LT", &vals[0], &vals[1]);
            Ok(e.fuel_cond(c, fs))
        })?;
        let (body_text, next, ()) = self.body_region(cs, fs, |e| {
            let res = e.fori_copy(ctx, &vals[0], &vals[2 + nc..], &vals[2..2 + nc])?;
            let one = e.splat(ctx.cdt, &[], Lit::I(1));
            let i1 = e.bin("add", &vals[0], &one);
            let mut next = vec![i1, vals[1].clone()];
            next.extend(res);
            next.extend(vals[2 + nc..].iter().cloned());
            Ok((next, ()))
        })?;
        let outs = self.write_while("fori", &all, &names, cs, fs, &cond_text, &cond, &body_text, &next)?;
        self.fuel_settle(fs, &outs, |e| Ok(e.cmp("LT", &outs[0], &outs[1])))?;
        Ok((outs[0].clone(), outs[2..2 + nc].to_vec()))
    }

    /// The main loop of a `fori_loop` unrolled by `k`: runs the full blocks
    /// of `k` iterations from `lo`; returns the counter after the last block
    /// and the carry.
    ///
    /// The while counts blocks (`b` from 0 while `b < nb`, step 1) and
    /// carries the counter `i` (step `k`) beside: XLA's trip count analysis
    /// of a `i < lim; i += k` loop whose span is not a multiple of `k`
    /// miscounts (a loop of one block was dropped), a step-1 count it gets
    /// right.
    fn fori_unrolled(
        &mut self,
        ctx: &ForiCtx<'_>,
        k: u32,
        lo: &Val,
        hi: &Val,
        init: &[Val],
    ) -> Result<(Val, Vec<Val>)> {
        let cdt = ctx.cdt;
        let nb = match (lo.konst, hi.konst) {
            (Some(l), Some(h)) => {
                let n = (i128::from(h) - i128::from(l)).max(0) / i128::from(k);
                self.splat(cdt, &[], Lit::I(n as i64))
            }
            _ => self.full_blocks(cdt, lo, hi, k),
        };
        let zero = self.splat(cdt, &[], Lit::I(0));
        let nc = init.len();
        // State: (b, nb, i, carry..., invariants...).
        let mut all = vec![zero, nb, lo.clone()];
        all.extend_from_slice(init);
        all.extend(ctx.cap_vals.iter().cloned());
        let mut inv = vec![false, true, false];
        inv.extend(init.iter().map(|_| false));
        inv.extend(ctx.cap_vals.iter().map(|_| true));
        let mut hint = vec![false, false, false];
        hint.extend(loose::loose_yields(self.m, ctx.func, ctx.body, nc));
        let (names, vals) = self.iter_vals(&all, &inv, &hint);
        let (cond_text, cond) = self.region(|e| Ok(e.cmp("LT", &vals[0], &vals[1])))?;
        let (body_text, next) = self.region(|e| {
            let inv = &vals[3 + nc..];
            let mut cur = vals[3..3 + nc].to_vec();
            for j in 0..k {
                let i = if j == 0 {
                    vals[2].clone()
                } else {
                    let jv = e.splat(cdt, &[], Lit::I(i64::from(j)));
                    e.bin("add", &vals[2], &jv)
                };
                cur = e.fori_copy(ctx, &i, inv, &cur)?;
            }
            let one = e.splat(cdt, &[], Lit::I(1));
            let b1 = e.bin("add", &vals[0], &one);
            let kv = e.splat(cdt, &[], Lit::I(i64::from(k)));
            let ik = e.bin("add", &vals[2], &kv);
            let mut next = vec![b1, vals[1].clone(), ik];
            next.extend(cur);
            next.extend(inv.iter().cloned());
            Ok(next)
        })?;
        let outs = self.write_while("fori", &all, &names, None, None, &cond_text, &cond, &body_text, &next)?;
        Ok((outs[2].clone(), outs[3..3 + nc].to_vec()))
    }

    /// `max(hi - lo, 0) / k` for runtime bounds of `dtype`, without
    /// overflow: the span is computed in the unsigned type of the same
    /// width (exact whenever `hi > lo`), and a quotient by `k >= 2` fits the
    /// signed type again.
    fn full_blocks(&mut self, dtype: DType, lo: &Val, hi: &Val, k: u32) -> Val {
        let sty = lo.ty();
        let uty = sty.replace("<i", "<ui");
        let bits = |e: &mut Self, v: &Val| {
            let n = e.fresh();
            e.line(&format!("{n} = stablehlo.bitcast_convert {} : ({sty}) -> {uty}", v.name));
            n
        };
        let (lu, hu) = (bits(self, lo), bits(self, hi));
        let span = self.fresh();
        self.line(&format!("{span} = stablehlo.subtract {hu}, {lu} : {uty}"));
        let kv = self.fresh();
        self.line(&format!("{kv} = stablehlo.constant dense<{k}> : {uty}"));
        let q = self.fresh();
        self.line(&format!("{q} = stablehlo.divide {span}, {kv} : {uty}"));
        let nb = self.fresh();
        self.line(&format!("{nb} = stablehlo.bitcast_convert {q} : ({uty}) -> {sty}"));
        let nb = Val { name: nb, dtype, shape: vec![], konst: None };
        let some = self.cmp("GT", hi, lo);
        let zero = self.splat(dtype, &[], Lit::I(0));
        self.select(&some, &nb, &zero)
    }

    // ----------------------------------------------------------------- scan

    /// A `scan` of `ctx.n >= 1` steps, partially unrolled as the options
    /// say; returns the final carry and the ys.
    pub(super) fn scan_partial(&mut self, ctx: &ScanCtx<'_>, source: u32, init: &[Val]) -> Result<Vec<Val>> {
        let n = ctx.n;
        let k = self.pick_unroll("scan", ctx.func, &[ctx.body], source, Some(n as u64), |e| {
            let rows: Vec<Val> = ctx
                .xs
                .iter()
                .map(|x| Val { name: "%measure".into(), dtype: x.dtype, shape: x.shape[1..].to_vec(), konst: None })
                .collect();
            e.scan_copy(ctx, ctx.cap_vals, init, &rows)
        })? as usize;
        if k > 1 && n / k > 0 {
            let r = self.scan_unrolled(ctx, k, init)?;
            if n.is_multiple_of(k) {
                return Ok(r);
            }
            let (c, y) = r.split_at(ctx.nc);
            return self.scan_rolled(ctx, n / k * k, c, Some(y));
        }
        self.scan_rolled(ctx, 0, init, None)
    }

    /// One copy of a `scan` body on rows `x` of the xs.
    fn scan_copy(&mut self, ctx: &ScanCtx<'_>, inv: &[Val], cur: &[Val], x: &[Val]) -> Result<Vec<Val>> {
        let mut env = Env::new();
        bind_params(&mut env, ctx.cap_regs, inv);
        bind_params(&mut env, ctx.cparams, cur);
        bind_params(&mut env, ctx.xparams, x);
        self.copy(ctx.func, ctx.body, env, cur, ctx.nc + ctx.ny, "scan")
    }

    /// Names and values of a scan while's state `(t, carry..., ys...,
    /// xs..., invariants...)`, the ys' types not yet known.
    #[allow(clippy::type_complexity)]
    fn scan_state(
        &mut self,
        ctx: &ScanCtx<'_>,
        init: &[Val],
    ) -> (Vec<String>, Val, Vec<Val>, Vec<String>, Vec<Val>, Vec<Val>) {
        let ct = ctx.ct;
        let t_name = self.fresh_named("iterArg");
        let c_names: Vec<String> = init.iter().map(|_| self.fresh_named("iterArg")).collect();
        let y_names: Vec<String> = (0..ctx.ny).map(|_| self.fresh_named("iterArg")).collect();
        let x_names: Vec<String> = ctx.xs.iter().map(|_| self.fresh_named("iterArg")).collect();
        let i_names: Vec<String> = ctx.cap_vals.iter().map(|_| self.fresh_named("iterArg")).collect();
        let like = |name: &String, v: &Val, keep: bool| Val {
            name: name.clone(),
            dtype: v.dtype,
            shape: v.shape.clone(),
            konst: if keep { v.konst } else { None },
        };
        let t_val = Val { name: t_name.clone(), dtype: ct, shape: vec![], konst: None };
        let c_vals: Vec<Val> = c_names.iter().zip(init).map(|(nm, v)| like(nm, v, false)).collect();
        let x_vals: Vec<Val> = x_names.iter().zip(ctx.xs).map(|(nm, v)| like(nm, v, true)).collect();
        let i_vals: Vec<Val> = i_names.iter().zip(ctx.cap_vals).map(|(nm, v)| like(nm, v, true)).collect();
        // XLA sinks constant loop invariants into the loop body.
        for (nm, v) in x_names.iter().zip(ctx.xs).chain(i_names.iter().zip(ctx.cap_vals)) {
            if self.is_folded(v) {
                self.folds.insert(nm.clone());
            }
        }
        let mut names = vec![t_name];
        names.extend(c_names);
        let first_y = names.len();
        names.extend(y_names);
        names.extend(x_names);
        names.extend(i_names);
        let y_names = names[first_y..first_y + ctx.ny].to_vec();
        (names, t_val, c_vals, y_names, x_vals, i_vals)
    }

    /// Writes a scan's while: `t` from `t0`, the ys from `ys0` (zeros of the
    /// body's ys types when `None`), then `chain` (a body that prints) and
    /// `fuel` (metered); returns the whole state after the loop: `(t,
    /// carry..., ys..., xs..., invariants...[, chain][, fuel])`.
    #[allow(clippy::too_many_arguments)]
    fn scan_while(
        &mut self,
        ctx: &ScanCtx<'_>,
        t0: usize,
        init: &[Val],
        ys0: Option<&[Val]>,
        names: Vec<String>,
        cond: (String, Val),
        body: (String, Vec<Val>, Vec<Val>),
        chain: Option<&Threaded>,
        fuel: Option<&Threaded>,
    ) -> Result<Vec<Val>> {
        let (body_text, next, y_vals) = body;
        let t0 = self.splat(ctx.ct, &[], Lit::I(t0 as i64));
        let mut all = vec![t0];
        all.extend(init.iter().cloned());
        match ys0 {
            Some(ys) => all.extend(ys.iter().cloned()),
            None => {
                for y in &y_vals {
                    let z = self.zero(y.dtype, &y.shape);
                    all.push(z);
                }
            }
        }
        all.extend(ctx.xs.iter().cloned());
        all.extend(ctx.cap_vals.iter().cloned());
        self.write_while("scan", &all, &names, chain, fuel, &cond.0, &cond.1, &body_text, &next)
    }

    /// `ys` values with names `y_names` for body results `y` (one row each).
    fn ys_vals(&self, ctx: &ScanCtx<'_>, y_names: &[String], y: &[Val]) -> Vec<Val> {
        y_names
            .iter()
            .zip(y)
            .map(|(nm, v)| {
                let mut shape = vec![ctx.n];
                shape.extend_from_slice(&v.shape);
                Val { name: nm.clone(), dtype: v.dtype, shape, konst: None }
            })
            .collect()
    }

    /// The rolled scan over steps `t0..n`.
    fn scan_rolled(&mut self, ctx: &ScanCtx<'_>, t0: usize, init: &[Val], ys0: Option<&[Val]>) -> Result<Vec<Val>> {
        let (ct, n) = (ctx.ct, ctx.n);
        let (names, t_val, c_vals, y_names, x_vals, i_vals) = self.scan_state(ctx, init);
        let cs = self.chain_state(ctx.func, &[ctx.body]);
        let cs = cs.as_ref();
        let fs = self.fuel_state();
        let fs = fs.as_ref();
        let cond = self.region(|e| {
            let nv = e.splat(ct, &[], Lit::I(n as i64));
            let c = e.cmp("LT", &t_val, &nv);
            Ok(e.fuel_cond(c, fs))
        })?;
        let (body_text, next, y_vals) = self.body_region(cs, fs, |e| {
            let pos = if ctx.reverse {
                let last = e.splat(ct, &[], Lit::I(n as i64 - 1));
                e.bin("subtract", &last, &t_val)
            } else {
                t_val.clone()
            };
            let mut rows = Vec::new();
            for x in &x_vals {
                let s = e.row_block(x, &pos, 1);
                rows.push(e.reshape(&s, &x.shape[1..]));
            }
            let res = e.scan_copy(ctx, &i_vals, &c_vals, &rows)?;
            let (c, y) = res.split_at(ctx.nc);
            let y_vals = e.ys_vals(ctx, &y_names, y);
            let one = e.splat(ct, &[], Lit::I(1));
            let mut next = vec![e.bin("add", &t_val, &one)];
            next.extend(c.iter().cloned());
            for (ys, v) in y_vals.iter().zip(y) {
                let mut one_shape = vec![1];
                one_shape.extend_from_slice(&v.shape);
                let row = e.reshape(v, &one_shape);
                let u = e.update_rows(ys, &row, &pos);
                next.push(u);
            }
            next.extend(x_vals.iter().cloned());
            next.extend(i_vals.iter().cloned());
            Ok((next, y_vals))
        })?;
        let outs = self.scan_while(ctx, t0, init, ys0, names, cond, (body_text, next, y_vals), cs, fs)?;
        self.fuel_settle(fs, &outs, |e| {
            let nv = e.splat(ct, &[], Lit::I(n as i64));
            Ok(e.cmp("LT", &outs[0], &nv))
        })?;
        Ok(outs[1..1 + ctx.nc + ctx.ny].to_vec())
    }

    /// The main loop of a scan unrolled by `k`: the first `n / k * k` steps.
    fn scan_unrolled(&mut self, ctx: &ScanCtx<'_>, k: usize, init: &[Val]) -> Result<Vec<Val>> {
        let (ct, n) = (ctx.ct, ctx.n);
        let full = n / k * k;
        let (names, t_val, c_vals, y_names, x_vals, i_vals) = self.scan_state(ctx, init);
        let cond = self.region(|e| {
            let nv = e.splat(ct, &[], Lit::I(full as i64));
            Ok(e.cmp("LT", &t_val, &nv))
        })?;
        let (body_text, (next, y_vals)) = self.region(|e| {
            // Steps t..t+k read rows t..t+k (forward) or n-k-t..n-t (reverse,
            // the last row first).
            let base = if ctx.reverse {
                let last = e.splat(ct, &[], Lit::I((n - k) as i64));
                e.bin("subtract", &last, &t_val)
            } else {
                t_val.clone()
            };
            let blocks: Vec<Val> = x_vals.iter().map(|x| e.row_block(x, &base, k)).collect();
            let mut cur = c_vals.clone();
            let mut rows: Vec<Vec<Val>> = vec![Vec::new(); ctx.ny];
            let mut y_types: Vec<Val> = Vec::new();
            for j in 0..k {
                let r = if ctx.reverse { k - 1 - j } else { j };
                let xr: Vec<Val> = blocks.iter().map(|b| e.static_row(b, r)).collect();
                let res = e.scan_copy(ctx, &i_vals, &cur, &xr)?;
                let (c, y) = res.split_at(ctx.nc);
                cur = c.to_vec();
                for (row, v) in rows.iter_mut().zip(y) {
                    row.push(v.clone());
                }
                y_types = y.to_vec();
            }
            let y_vals = e.ys_vals(ctx, &y_names, &y_types);
            let kv = e.splat(ct, &[], Lit::I(k as i64));
            let mut next = vec![e.bin("add", &t_val, &kv)];
            next.extend(cur);
            for ((ys, mut row), y) in y_vals.iter().zip(rows).zip(&y_types) {
                if ctx.reverse {
                    row.reverse();
                }
                let mut one = vec![1];
                one.extend_from_slice(&y.shape);
                let parts: Vec<Val> = row.iter().map(|v| e.reshape(v, &one)).collect();
                let mut blk_shape = vec![k];
                blk_shape.extend_from_slice(&y.shape);
                let blk = e.concat_raw(&parts, 0, &blk_shape);
                let u = e.update_rows(ys, &blk, &base);
                next.push(u);
            }
            next.extend(x_vals.iter().cloned());
            next.extend(i_vals.iter().cloned());
            Ok((next, y_vals))
        })?;
        let outs = self.scan_while(ctx, 0, init, None, names, cond, (body_text, next, y_vals), None, None)?;
        Ok(outs[1..1 + ctx.nc + ctx.ny].to_vec())
    }

    /// `rows` rows of `x` from row `start` (a scalar of the counter's dtype).
    fn row_block(&mut self, x: &Val, start: &Val, rows: usize) -> Val {
        let mut starts = vec![start.clone()];
        for _ in 1..x.shape.len() {
            let z = self.splat(start.dtype, &[], Lit::I(0));
            starts.push(z);
        }
        let mut sizes = vec![rows];
        sizes.extend_from_slice(&x.shape[1..]);
        self.dynamic_slice(x, &starts, &sizes)
    }

    /// Row `r` of `b` (static), without its leading axis.
    fn static_row(&mut self, b: &Val, r: usize) -> Val {
        let rank = b.shape.len();
        let mut start = vec![0i64; rank];
        let mut limit: Vec<i64> = b.shape.iter().map(|&d| d as i64).collect();
        start[0] = r as i64;
        limit[0] = r as i64 + 1;
        let mut one = vec![1];
        one.extend_from_slice(&b.shape[1..]);
        let s = self.op(
            b.dtype,
            &one,
            format!(
                "\"stablehlo.slice\"({}) {{start_indices = {}, limit_indices = {}, strides = {}}} : ({}) -> {}",
                b.name,
                super::i64_array(&start),
                super::i64_array(&limit),
                super::i64_array(&vec![1; rank]),
                b.ty(),
                super::tensor_type(b.dtype, &one)
            ),
        );
        self.reshape(&s, &b.shape[1..])
    }

    /// `ys` with `rows` (leading axis) written from row `start`.
    fn update_rows(&mut self, ys: &Val, rows: &Val, start: &Val) -> Val {
        let mut starts = vec![start.clone()];
        for _ in 1..ys.shape.len() {
            let z = self.splat(start.dtype, &[], Lit::I(0));
            starts.push(z);
        }
        self.dynamic_update_slice(ys, rows, &starts)
    }
}
