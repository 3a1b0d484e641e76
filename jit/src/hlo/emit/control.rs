//! Control flow: blocks and regions, `stablehlo.while` for `fori_loop`,
//! `while_loop` and `scan`, `stablehlo.if`, and inlined calls.

use super::*;

/// The registers that `blocks` (and the blocks nested in them) use but do
/// not define, in order of first use, without repeats.
pub(super) fn free_regs(func: &Func, blocks: &[BlockId]) -> Vec<Reg> {
    let n = func.reg_types.len();
    let mut defined = vec![false; n];
    let mut seen = vec![false; n];
    let mut order = Vec::new();
    let mut visited = vec![false; func.blocks.len()];
    let mut stack: Vec<BlockId> = blocks.iter().rev().copied().collect();
    while let Some(b) = stack.pop() {
        let Some(blk) = func.blocks.get(b.0 as usize) else { continue };
        if std::mem::replace(&mut visited[b.0 as usize], true) {
            continue;
        }
        order.push(b);
        for i in blk.code.iter().rev() {
            stack.extend(i.blocks().into_iter().rev());
        }
    }
    let mark = |r: Reg, v: &mut Vec<bool>| {
        if let Some(d) = v.get_mut(r.0 as usize) {
            *d = true;
        }
    };
    for b in &order {
        let blk = &func.blocks[b.0 as usize];
        blk.params.iter().for_each(|p| mark(*p, &mut defined));
        for i in &blk.code {
            i.visit_defs(&mut |r| mark(r, &mut defined));
        }
    }
    let mut out = Vec::new();
    let mut note = |r: Reg| {
        let i = r.0 as usize;
        if i < n && !defined[i] && !seen[i] {
            seen[i] = true;
            out.push(r);
        }
    };
    for b in &order {
        let blk = &func.blocks[b.0 as usize];
        for i in &blk.code {
            i.visit_uses(&mut |r| note(r));
        }
        blk.results.iter().for_each(|r| note(*r));
    }
    out
}

impl Emitter<'_> {
    // --------------------------------------------------------------- regions

    /// Emits the code of block `b` of `func`.
    pub(super) fn block(&mut self, func: &Func, b: BlockId, env: &mut Env) -> Result<()> {
        let blk = func.blocks.get(b.0 as usize).ok_or_else(|| EmitError::new("block", format!("no block b{}", b.0)))?;
        for inst in &blk.code {
            self.inst(func, inst, env)?;
        }
        Ok(())
    }

    pub(super) fn get(env: &Env, inst: &Inst, r: Reg) -> Result<Val> {
        env.get(&r)
            .cloned()
            .ok_or_else(|| EmitError::new(op_name(inst), format!("register r{} is read before it is written", r.0)))
    }

    pub(super) fn results(func: &Func, b: BlockId, env: &Env, what: &str) -> Result<Vec<Val>> {
        let blk = func.blocks.get(b.0 as usize).ok_or_else(|| EmitError::new(what, format!("no block b{}", b.0)))?;
        blk.results
            .iter()
            .map(|r| {
                env.get(r)
                    .cloned()
                    .ok_or_else(|| EmitError::new(what, format!("block result r{} is never written", r.0)))
            })
            .collect()
    }

    /// Writes a `stablehlo.while` over `init` (whose loop-side names are
    /// `iters`), then `chain` when the body prints and `fuel` when metered,
    /// with the given region texts, and returns its results (the chain and
    /// the fuel last); the chain after the loop becomes the current one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_while(
        &mut self,
        what: &str,
        init: &[Val],
        iters: &[String],
        chain: Option<&Threaded>,
        fuel: Option<&Threaded>,
        cond_text: &str,
        cond: &Val,
        body_text: &str,
        next: &[Val],
    ) -> Result<Vec<Val>> {
        let mut init = init.to_vec();
        let mut iters = iters.to_vec();
        let chain_at = chain.map(|c| {
            init.push(c.init.clone());
            iters.push(c.name.clone());
            init.len() - 1
        });
        if let Some(f) = fuel {
            init.push(f.init.clone());
            iters.push(f.name.clone());
        }
        let (init, iters) = (&init[..], &iters[..]);
        if init.is_empty() {
            return Err(EmitError::new(what, "a loop without state"));
        }
        if next.len() != init.len() {
            return Err(EmitError::new(
                what,
                format!("the body returns {} values for {} carried", next.len(), init.len()),
            ));
        }
        for (k, (a, b)) in init.iter().zip(next).enumerate() {
            if a.dtype != b.dtype || a.shape != b.shape {
                return Err(EmitError::new(
                    what,
                    format!("carry {k} changes type from {} to {} in the body", a.ty(), b.ty()),
                ));
            }
        }
        if cond.dtype != DType::Bool || !cond.shape.is_empty() {
            return Err(EmitError::new(what, format!("condition is {}, not a bool scalar", cond.ty())));
        }
        self.whiles += 1;
        let types: Vec<String> = init.iter().map(Val::ty).collect();
        let types = types.join(", ");
        let base = self.fresh();
        let head = if init.len() == 1 { base.clone() } else { format!("{base}:{}", init.len()) };
        let args: Vec<String> = iters.iter().zip(init).map(|(i, v)| format!("{i} = {}", v.name)).collect();
        self.line(&format!("{head} = stablehlo.while({}) : {types}", args.join(", ")));
        self.line("cond {");
        self.out.push_str(cond_text);
        self.indent += 1;
        self.line(&format!("stablehlo.return {} : tensor<i1>", cond.name));
        self.indent -= 1;
        self.line("} do {");
        self.out.push_str(body_text);
        self.indent += 1;
        let names: Vec<&str> = next.iter().map(|v| v.name.as_str()).collect();
        self.line(&format!("stablehlo.return {} : {types}", names.join(", ")));
        self.indent -= 1;
        self.line("}");
        let outs: Vec<Val> = init
            .iter()
            .enumerate()
            .map(|(k, v)| Val {
                name: if init.len() == 1 { base.clone() } else { format!("{base}#{k}") },
                dtype: v.dtype,
                shape: v.shape.clone(),
                konst: None,
            })
            .collect();
        // XLA removes a loop it proves runs no trip (the result is the
        // initial value) and inlines one that runs one (the result is the
        // body's): either may be a constant LLVM folds, keeping subnormals
        // (see `float_bin`).
        for (k, out) in outs.iter().enumerate() {
            if self.is_const(&init[k]) || self.is_const(&next[k]) {
                self.consts.insert(out.name.clone());
            }
            // A loose carry is loose after the loop (its body returns it
            // unsettled).
            if self.loose.contains(&iters[k]) {
                self.loose.insert(out.name.clone());
            }
        }
        if let Some(k) = chain_at {
            self.chain = Some(outs[k].clone());
        }
        Ok(outs)
    }

    /// Loop-side values for `init`: fresh names, same types; `invariant[k]`
    /// keeps the known constant value. Value `k` is loose when `init[k]` is
    /// or `loose[k]` says the body returns it loose ([`loose::loose_yields`]).
    pub(super) fn iter_vals(&mut self, init: &[Val], invariant: &[bool], loose: &[bool]) -> (Vec<String>, Vec<Val>) {
        let names: Vec<String> = init.iter().map(|_| self.fresh_named("iterArg")).collect();
        for (k, (n, v)) in names.iter().zip(init).enumerate() {
            // XLA sinks constant loop invariants into the loop body.
            if invariant.get(k).copied().unwrap_or(false) && self.is_folded(v) {
                self.folds.insert(n.clone());
            }
            if v.dtype.is_float() && (self.is_loose(v) || loose.get(k).copied().unwrap_or(false)) {
                self.loose.insert(n.clone());
            }
        }
        let vals = names
            .iter()
            .zip(init)
            .enumerate()
            .map(|(k, (n, v))| Val {
                name: n.clone(),
                dtype: v.dtype,
                shape: v.shape.clone(),
                konst: if invariant.get(k).copied().unwrap_or(false) { v.konst } else { None },
            })
            .collect();
        (names, vals)
    }

    /// The values of the registers a loop's blocks capture.
    pub(super) fn captures(&self, func: &Func, inst: &Inst, env: &Env) -> Result<(Vec<Reg>, Vec<Val>)> {
        let regs = free_regs(func, &inst.blocks());
        let vals = regs.iter().map(|r| Self::get(env, inst, *r)).collect::<Result<Vec<_>>>()?;
        Ok((regs, vals))
    }

    // ------------------------------------------------------------ control

    pub(super) fn call(&mut self, callee: FuncId, args: &[Val]) -> Result<Vec<Val>> {
        let m = self.m;
        let cf = m
            .funcs
            .get(callee.0 as usize)
            .ok_or_else(|| EmitError::new("call", format!("no function f{}", callee.0)))?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            return Err(EmitError::new("call", format!("calls nested deeper than {MAX_DEPTH}")));
        }
        let r = (|| {
            let body =
                cf.blocks.get(cf.body.0 as usize).ok_or_else(|| EmitError::new("call", "missing entry block"))?;
            if body.params.len() != args.len() {
                return Err(EmitError::new(
                    "call",
                    format!("`{}` takes {} tensors, got {}", cf.name, body.params.len(), args.len()),
                ));
            }
            let mut env: Env = body.params.iter().copied().zip(args.iter().cloned()).collect();
            self.block(cf, cf.body, &mut env)?;
            Self::results(cf, cf.body, &env, "call")
        })();
        self.depth -= 1;
        r
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn if_(
        &mut self,
        func: &Func,
        inst: &Inst,
        env: &mut Env,
        c: &Val,
        then_: BlockId,
        else_: BlockId,
        ndsts: usize,
    ) -> Result<Vec<Val>> {
        if c.dtype != DType::Bool || c.numel() != 1 {
            return Err(EmitError::new("if", format!("if condition is not a bool scalar, got {}", c.ty())));
        }
        let c = self.reshape(c, &[]);
        // Branches that print run after the current chain and return the
        // chain after them; metered, each branch returns the fuel left after
        // it, last.
        let fuel0 = self.fuel.clone();
        let chain0 = self.blocks_print(func, &[then_, else_]).then(|| self.chain_now());
        let mut branch = |e: &mut Self, b: BlockId| {
            e.region(|e| {
                e.fuel.clone_from(&fuel0);
                e.chain.clone_from(&chain0);
                e.block(func, b, env)?;
                let r = Self::results(func, b, env, "if")?;
                let mut r = e.settle_all(&r);
                if chain0.is_some() {
                    r.push(e.chain_now());
                }
                r.extend(e.fuel.clone());
                Ok(r)
            })
        };
        let (t_text, t_res) = branch(self, then_)?;
        let (e_text, e_res) = branch(self, else_)?;
        self.fuel = fuel0;
        let ndsts = ndsts + usize::from(chain0.is_some()) + usize::from(self.fuel.is_some());
        if t_res.len() != ndsts || e_res.len() != ndsts {
            return Err(EmitError::new(op_name(inst), "branches return the wrong number of values"));
        }
        for (k, (a, b)) in t_res.iter().zip(&e_res).enumerate() {
            if a.dtype != b.dtype || a.shape != b.shape {
                return Err(EmitError::new(
                    "if",
                    format!("result {k} is {} in the then branch and {} in the else branch", a.ty(), b.ty()),
                ));
            }
        }
        if ndsts == 0 {
            // A statement `if` whose branches neither print nor are metered:
            // nothing to emit.
            return Ok(Vec::new());
        }
        let types: Vec<String> = t_res.iter().map(Val::ty).collect();
        let types = types.join(", ");
        let ret = |rs: &[Val]| rs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        let base = self.fresh();
        let head = if ndsts == 1 { base.clone() } else { format!("{base}:{ndsts}") };
        self.line(&format!("{head} = \"stablehlo.if\"({}) ({{", c.name));
        self.out.push_str(&t_text);
        self.indent += 1;
        self.line(&format!("stablehlo.return {} : {types}", ret(&t_res)));
        self.indent -= 1;
        self.line("}, {");
        self.out.push_str(&e_text);
        self.indent += 1;
        self.line(&format!("stablehlo.return {} : {types}", ret(&e_res)));
        self.indent -= 1;
        let res_ty = if ndsts == 1 { types.clone() } else { format!("({types})") };
        self.line(&format!("}}) : (tensor<i1>) -> {res_ty}"));
        let mut out: Vec<Val> = t_res
            .iter()
            .enumerate()
            .map(|(k, v)| Val {
                name: if ndsts == 1 { base.clone() } else { format!("{base}#{k}") },
                dtype: v.dtype,
                shape: v.shape.clone(),
                konst: None,
            })
            .collect();
        // XLA folds an `if` whose condition it knows: a result may be a
        // constant when either branch's is (`(if false { 0 } else { s }) /
        // 0` with `s` a subnormal literal: fuzz seed 2026120621).
        for (k, o) in out.iter().enumerate() {
            if t_res.get(k).is_some_and(|v| self.is_const(v)) || e_res.get(k).is_some_and(|v| self.is_const(v)) {
                self.consts.insert(o.name.clone());
            }
        }
        if self.fuel.is_some() {
            self.fuel = out.pop();
        }
        if chain0.is_some() {
            self.chain = out.pop();
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn fori(
        &mut self,
        func: &Func,
        inst: &Inst,
        env: &Env,
        lo: &Val,
        hi: &Val,
        init: &[Val],
        body: BlockId,
    ) -> Result<Vec<Val>> {
        let what = "fori";
        for b in [lo, hi] {
            if !b.dtype.is_int() || b.numel() != 1 {
                return Err(EmitError::new(what, format!("fori_loop bound is not an integer scalar, got {}", b.ty())));
            }
        }
        let blk = func.blocks.get(body.0 as usize).ok_or_else(|| EmitError::new(what, "no body block"))?;
        let Some((&ireg, carry)) = blk.params.split_first() else {
            return Err(EmitError::new(what, "fori_loop body without a counter"));
        };
        if carry.len() != init.len() {
            return Err(EmitError::new(what, "carry and body parameters differ in number"));
        }
        let (cap_regs, cap_vals) = self.captures(func, inst, env)?;
        let idt = lo.dtype;
        let cdt = if hi.dtype == DType::I64 { DType::I64 } else { idt };
        let lo_s = self.scalar_index(what, lo, cdt)?;
        let hi_s = self.scalar_index(what, hi, cdt)?;

        if self.opts.unroll_all && self.fuel.is_none() {
            if let (Some(l), Some(h)) = (lo_s.konst, hi_s.konst) {
                if (h as i128 - l as i128) <= MAX_UNROLL as i128 {
                    let mut cur = init.to_vec();
                    let mut i = l;
                    while i < h {
                        let iv = self.splat(idt, &[], Lit::I(i));
                        let mut benv: Env = Env::new();
                        for (r, v) in cap_regs.iter().zip(&cap_vals) {
                            benv.insert(*r, v.clone());
                        }
                        benv.insert(ireg, iv);
                        for (p, v) in carry.iter().zip(&cur) {
                            benv.insert(*p, v.clone());
                        }
                        self.block(func, body, &mut benv)?;
                        cur = Self::results(func, body, &benv, what)?;
                        i += 1;
                    }
                    return Ok(cur);
                }
            }
        }

        let source = match inst {
            Inst::Fori { unroll, .. } => *unroll,
            _ => 1,
        };
        let trip = match (lo_s.konst, hi_s.konst) {
            (Some(l), Some(h)) => Some(u64::try_from((i128::from(h) - i128::from(l)).max(0)).unwrap_or(u64::MAX)),
            _ => None,
        };
        let ctx = ForiCtx { func, body, ireg, carry, cap_regs: &cap_regs, cap_vals: &cap_vals, idt, cdt };
        self.fori_partial(&ctx, source, trip, &lo_s, &hi_s, init)
    }

    pub(super) fn while_(
        &mut self,
        func: &Func,
        inst: &Inst,
        env: &Env,
        init: &[Val],
        cond_b: BlockId,
        body: BlockId,
    ) -> Result<Vec<Val>> {
        let what = "while";
        let cb = func.blocks.get(cond_b.0 as usize).ok_or_else(|| EmitError::new(what, "no condition block"))?;
        let bb = func.blocks.get(body.0 as usize).ok_or_else(|| EmitError::new(what, "no body block"))?;
        if cb.params.len() != init.len() || bb.params.len() != init.len() {
            return Err(EmitError::new(what, "carry and block parameters differ in number"));
        }
        // XLA's CPU runtime runs a while loop's condition without the
        // execution context that carries the host's print sink: a print
        // there would be dropped (fuzz program 0x84295ebe32c81c45). Such a
        // loop prints on the host.
        if self.opts.host_print && cb.code.iter().any(|i| prints_in(self.m, func, i, 0)) {
            return Err(EmitError::new(
                "print",
                "a print in a while_loop's condition: XLA runs the condition without the host callback's context, so the loop prints on the host",
            ));
        }
        let (cap_regs, cap_vals) = self.captures(func, inst, env)?;
        let nc = init.len();
        let all: Vec<Val> = init.iter().chain(&cap_vals).cloned().collect();
        let inv: Vec<bool> = (0..all.len()).map(|k| k >= nc).collect();
        let k = self.pick_unroll("while_loop", func, &[cond_b, body], 1, None, |e| {
            let benv = while_env(&cap_regs, &cap_vals, &bb.params, init);
            e.copy(func, body, benv, init, nc, what)
        })?;
        // A loop without carry has nothing to unroll.
        let k = if nc == 0 { 1 } else { k };
        let hint = loose::loose_yields(self.m, func, body, nc);
        let (names, vals) = self.iter_vals(&all, &inv, &hint);
        let cs = self.chain_state(func, &[body]);
        let cs = cs.as_ref();
        let fs = self.fuel_state();
        let fs = fs.as_ref();
        if fs.is_some() && unroll::holds_loop(self.m, func, &[cond_b], 0) {
            // Its iterations could not be counted: the condition cannot
            // update the loop's state.
            return Err(EmitError::new(what, "a loop inside a while_loop condition cannot be metered"));
        }
        let (cond_text, cond) = self.region(|e| {
            let saved = e.fuel.take();
            let c = e.while_cond(func, cond_b, &cap_regs, &vals[nc..], &vals[..nc]);
            e.fuel = saved;
            Ok(e.fuel_cond(c?, fs))
        })?;
        let (body_text, next, ()) = self.body_region(cs, fs, |e| {
            let inv = &vals[nc..];
            let first = while_env(&cap_regs, inv, &bb.params, &vals[..nc]);
            let mut cur = e.copy(func, body, first, &vals[..nc], nc, what)?;
            for _ in 1..k {
                // The condition is checked before every further copy; once it
                // fails, the carry passes through the remaining copies.
                let c = e.while_cond(func, cond_b, &cap_regs, inv, &cur)?;
                let env = while_env(&cap_regs, inv, &bb.params, &cur);
                let (text, res) = e.region(|e| e.copy(func, body, env, &cur, nc, what))?;
                cur = e.write_if(&c, &text, &res, &cur);
            }
            cur.extend(inv.iter().cloned());
            Ok((cur, ()))
        })?;
        let outs = self.write_while(what, &all, &names, cs, fs, &cond_text, &cond, &body_text, &next)?;
        self.fuel_settle(fs, &outs, |e| e.while_cond(func, cond_b, &cap_regs, &cap_vals, &outs[..nc]))?;
        Ok(outs[..nc].to_vec())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn scan(
        &mut self,
        func: &Func,
        inst: &Inst,
        env: &Env,
        init: &[Val],
        xs: &[Val],
        length: Option<u64>,
        reverse: bool,
        body: BlockId,
    ) -> Result<Vec<Val>> {
        let what = "scan";
        let blk = func.blocks.get(body.0 as usize).ok_or_else(|| EmitError::new(what, "no body block"))?;
        let nc = init.len();
        if blk.params.len() != nc + xs.len() || blk.results.len() < nc {
            return Err(EmitError::new(what, "carry, xs and body parameters differ in number"));
        }
        let (cparams, xparams) = blk.params.split_at(nc);
        let mut n: Option<usize> =
            length.map(usize::try_from).transpose().map_err(|_| EmitError::new(what, "scan length too large"))?;
        for x in xs {
            let lead =
                *x.shape.first().ok_or_else(|| EmitError::new(what, format!("scan over a scalar {}", x.ty())))?;
            match n {
                None => n = Some(lead),
                Some(k) if k != lead => {
                    return Err(EmitError::new(
                        what,
                        format!("xs have leading dimension {lead}, expected {k} (from length or the other xs)"),
                    ))
                }
                _ => {}
            }
        }
        let n = n.ok_or_else(|| EmitError::new(what, "scan needs xs or a length"))?;
        let (cap_regs, cap_vals) = self.captures(func, inst, env)?;
        // A scan's state is exact (see `loose`): its carries, xs and captures.
        let (init, xs, cap_vals) = (self.settle_all(init), self.settle_all(xs), self.settle_all(&cap_vals));
        let (init, xs) = (&init[..], &xs[..]);
        let ny = blk.results.len() - nc;
        let ys_shape = |y: &Val| {
            let mut s = vec![n];
            s.extend_from_slice(&y.shape);
            s
        };

        if n == 0 || (self.opts.unroll_all && self.fuel.is_none() && (n as u64) <= MAX_UNROLL) {
            // Unrolled (or empty: the body only gives the ys' types).
            let steps = n.max(1);
            let (fuel0, chain0) = (self.fuel.clone(), self.chain.clone());
            let saved = (n == 0).then(|| std::mem::take(&mut self.out));
            let settled0 = self.settled.clone();
            let whiles = self.whiles;
            let mut cur = init.to_vec();
            let mut rows: Vec<Vec<Val>> = vec![Vec::new(); ny];
            let mut y_types: Vec<Val> = Vec::new();
            for t in 0..steps {
                let pos = if reverse { n.saturating_sub(1 + t) } else { t };
                let mut benv = Env::new();
                for (r, v) in cap_regs.iter().zip(&cap_vals) {
                    benv.insert(*r, v.clone());
                }
                for (p, v) in cparams.iter().zip(&cur) {
                    benv.insert(*p, v.clone());
                }
                for (p, x) in xparams.iter().zip(xs) {
                    let xv = if n == 0 {
                        Val { name: "%undefined".into(), dtype: x.dtype, shape: x.shape[1..].to_vec(), konst: None }
                    } else {
                        let i = self.splat(DType::I64, &[], Lit::I(pos as i64));
                        self.index(x, &[i])?
                    };
                    benv.insert(*p, xv);
                }
                let r = self.block(func, body, &mut benv).and_then(|()| Self::results(func, body, &benv, what));
                let res = match r {
                    Ok(res) => res,
                    Err(e) => {
                        if let Some(s) = saved {
                            self.out = s;
                            self.settled = settled0;
                        }
                        return Err(e);
                    }
                };
                for (k, (a, b)) in cur.iter().zip(&res).enumerate() {
                    if a.dtype != b.dtype || a.shape != b.shape {
                        if let Some(s) = saved {
                            self.out = s;
                            self.settled = settled0;
                        }
                        return Err(EmitError::new(
                            what,
                            format!("carry {k} changes type from {} to {} in the body", a.ty(), b.ty()),
                        ));
                    }
                }
                let (c, y) = res.split_at(nc);
                cur = c.to_vec();
                y_types = y.to_vec();
                for (row, v) in rows.iter_mut().zip(y) {
                    row.push(self.settle(v));
                }
            }
            if let Some(s) = saved {
                self.out = s;
                self.settled = settled0;
                self.whiles = whiles;
                self.fuel = fuel0;
                self.chain = chain0;
                let mut outs = init.to_vec();
                for y in &y_types {
                    let z = self.zero(y.dtype, &ys_shape(y));
                    outs.push(z);
                }
                return Ok(outs);
            }
            let mut outs = cur;
            for mut row in rows {
                if reverse {
                    row.reverse();
                }
                let first = row[0].clone();
                let mut one = vec![1];
                one.extend_from_slice(&first.shape);
                let parts: Vec<Val> = row.iter().map(|v| self.reshape(v, &one)).collect();
                let ys = self.concat_raw(&parts, 0, &ys_shape(&first));
                outs.push(ys);
            }
            return Ok(outs);
        }

        let ct = if n > i32::MAX as usize { DType::I64 } else { DType::I32 };
        let source = match inst {
            Inst::Scan { unroll, .. } => *unroll,
            _ => 1,
        };
        let ctx = ScanCtx {
            func,
            body,
            cparams,
            xparams,
            cap_regs: &cap_regs,
            cap_vals: &cap_vals,
            xs,
            n,
            reverse,
            nc,
            ny,
            ct,
        };
        self.scan_partial(&ctx, source, init)
    }
}

/// Whether `inst` prints, itself or in a block or callee it runs (to depth 64).
pub(super) fn prints_in(m: &Module, func: &Func, inst: &Inst, depth: usize) -> bool {
    if depth > 64 {
        return true;
    }
    let in_block = |b: &BlockId| {
        func.blocks.get(b.0 as usize).is_some_and(|blk| blk.code.iter().any(|i| prints_in(m, func, i, depth + 1)))
    };
    match inst {
        Inst::Print { .. } => true,
        Inst::If { then_, else_, .. } => in_block(then_) || in_block(else_),
        Inst::Fori { body, .. } | Inst::Scan { body, .. } => in_block(body),
        Inst::While { cond, body, .. } => in_block(cond) || in_block(body),
        Inst::Call { func: callee, .. } => m.funcs.get(callee.0 as usize).is_some_and(|cf| {
            cf.blocks.get(cf.body.0 as usize).is_some_and(|blk| blk.code.iter().any(|i| prints_in(m, cf, i, depth + 1)))
        }),
        _ => false,
    }
}
