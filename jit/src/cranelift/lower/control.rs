//! Instructions and blocks: the dispatch over opcodes, inlined calls, `if`
//! (branches or selects) and the three loops as Cranelift loops with
//! carried variables and the step meter.

use super::*;

impl Lowerer<'_, '_> {
    // ---- instructions and blocks ---------------------------------------------

    pub(super) fn lower_block(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        b: BlockId,
    ) -> Result<(), CompileError> {
        let Some(block) = func.blocks.get(b.0 as usize) else { return unsupported!("no block b{}", b.0) };
        for inst in &block.code {
            self.lower_inst(fid, func, env, inst)?;
        }
        Ok(())
    }

    pub(super) fn vals(env: &Env, regs: &[Reg]) -> Result<Vec<Val>, CompileError> {
        regs.iter().map(|r| env.get(*r).cloned()).collect()
    }

    pub(super) fn lower_inst(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        inst: &Inst,
    ) -> Result<(), CompileError> {
        let op = inst.opcode();
        if !jit_lowerable(op) {
            let info = op.info();
            let why = if info.no_xla.is_empty() { "not flagged JIT in the opcode table" } else { info.no_xla };
            return unsupported!("`{}` in `{}` ({why})", info.name.to_lowercase(), func.name);
        }
        let v = match inst {
            Inst::Const { dst, k } => {
                let Some(t) = self.m.consts.get(k.0 as usize) else { return unsupported!("no constant k{}", k.0) };
                super::no_half(t.dtype())?;
                let v = self.constant(t);
                env.set(*dst, v);
                return Ok(());
            }
            Inst::Move { dst, src } | Inst::Shard { dst, a: src, .. } => {
                let v = env.get(*src)?.clone();
                env.set(*dst, v);
                return Ok(());
            }
            Inst::Unary { op, dst, a } => (dst, self.unary_any(*op, &env.get(*a)?.clone())?),
            Inst::Binary { op, dst, a, b } => {
                let (a, b) = (env.get(*a)?.clone(), env.get(*b)?.clone());
                (dst, self.binary_any(*op, &a, &b)?)
            }
            // The constant forms: the constant, then the binary.
            Inst::BinaryK { op, dst, a, k } | Inst::KBinary { op, dst, k, a } => {
                let Some(t) = self.m.consts.get(k.0 as usize) else { return unsupported!("no constant k{}", k.0) };
                let (x, c) = (env.get(*a)?.clone(), self.constant(t));
                let (l, r) = if matches!(inst, Inst::BinaryK { .. }) { (x, c) } else { (c, x) };
                (dst, self.binary_any(*op, &l, &r)?)
            }
            Inst::Select { dst, c, a, b } => {
                let (c, a, b) = (env.get(*c)?.clone(), env.get(*a)?.clone(), env.get(*b)?.clone());
                (dst, self.select(&c, &a, &b)?)
            }
            Inst::Cast { dst, a, to } => (dst, self.cast_any(&env.get(*a)?.clone(), *to)?),
            Inst::Bitcast { dst, a, to } => (dst, self.bitcast(&env.get(*a)?.clone(), *to)?),
            Inst::Iota { dst, dtype, n } => {
                let n = *n as usize;
                if n > MAX_ELEMS || *dtype == DType::Bool {
                    return unsupported!("iota of {}", type_string(*dtype, &[n]));
                }
                let xs = (0..n)
                    .map(|i| match dtype {
                        DType::F32 => self.b.ins().f32const(i as f32),
                        DType::F64 => self.b.ins().f64const(i as f64),
                        _ => self.iconst(clif_type(*dtype), i as i64),
                    })
                    .collect();
                (dst, Val::elems(*dtype, vec![n], xs))
            }
            Inst::Reduce { op, dst, a, axis } => (dst, self.reduce_any(*op, &env.get(*a)?.clone(), axis.0)?),
            Inst::Reshape { dst, a, shape } => {
                let a = env.get(*a)?.clone();
                let shape: Vec<usize> = shape.0.iter().map(|&d| d as usize).collect();
                if !rules::reshapes_to(&a.shape, &shape) {
                    return unsupported!("cannot reshape {} into shape {shape:?}", a.type_string());
                }
                (dst, Val { shape, ..a })
            }
            Inst::ReshapeAs { dst, a } => {
                let a = env.get(*a)?.clone();
                let Some(t) = func.reg_types.get(dst.0 as usize) else { return unsupported!("no register r{}", dst.0) };
                let values = env.regs.iter().enumerate().filter_map(|(q, v)| {
                    let v = v.as_ref()?;
                    Some((func.reg_types.get(q)?, v.shape.as_slice()))
                });
                let shape = match self.m.shape_from_values(t, values) {
                    Ok(s) => s,
                    Err(why) => return unsupported!("reshape_as: {why}"),
                };
                if !rules::reshapes_to(&a.shape, &shape) {
                    return unsupported!("cannot reshape {} into shape {shape:?}", a.type_string());
                }
                (dst, Val { shape, ..a })
            }
            Inst::Transpose { dst, a, perm } => (dst, self.transpose(&env.get(*a)?.clone(), perm.0.as_deref())?),
            Inst::Broadcast { dst, a, shape } => {
                let a = env.get(*a)?.clone();
                let shape: Vec<usize> = shape.0.iter().map(|&d| d as usize).collect();
                (dst, self.broadcast(&a, shape)?)
            }
            Inst::Concat { dst, srcs, axis } => (dst, self.join(&Self::vals(env, srcs)?, axis.0 as usize, false)?),
            Inst::Stack { dst, srcs, axis } => (dst, self.join(&Self::vals(env, srcs)?, axis.0 as usize, true)?),
            Inst::Slice { dst, a, specs } => (dst, self.slice(&env.get(*a)?.clone(), &specs.0)?),
            Inst::Index { dst, a, idx } => (dst, self.index(&env.get(*a)?.clone(), &Self::vals(env, idx)?)?),
            Inst::Update { mode, dst, a, idx, v } => {
                let (a, v) = (env.get(*a)?.clone(), env.get(*v)?.clone());
                (dst, self.update(*mode, &a, &Self::vals(env, idx)?, &v)?)
            }
            Inst::Take { dst, a, ids, axis } => {
                let (a, ids) = (env.get(*a)?.clone(), env.get(*ids)?.clone());
                (dst, self.take(&a, &ids, axis.0 as usize)?)
            }
            Inst::ScatterAdd { dst, a, ids, u, axis } => {
                let (a, ids, u) = (env.get(*a)?.clone(), env.get(*ids)?.clone(), env.get(*u)?.clone());
                (dst, self.scatter_add(&a, &ids, &u, axis.0 as usize)?)
            }
            Inst::DynSlice { dst, a, starts, sizes } => {
                let sizes: Vec<usize> = sizes.0.iter().map(|&d| d as usize).collect();
                (dst, self.dyn_slice(&env.get(*a)?.clone(), &Self::vals(env, starts)?, &sizes)?)
            }
            Inst::DynUpdateSlice { dst, a, u, starts } => {
                let (a, u) = (env.get(*a)?.clone(), env.get(*u)?.clone());
                (dst, self.dyn_update_slice(&a, &u, &Self::vals(env, starts)?)?)
            }
            Inst::Cumsum { dst, a, axis, reverse } => {
                (dst, self.cumsum(&env.get(*a)?.clone(), axis.0 as usize, *reverse)?)
            }
            Inst::ShapeOf { dst, a } => {
                let a = env.get(*a)?.clone();
                if a.shape.len() > MAX_ELEMS {
                    return unsupported!("shape of {}", a.type_string());
                }
                let xs = a
                    .shape
                    .iter()
                    .map(|&d| self.iconst(types::I32, i64::from(i32::try_from(d).unwrap_or(i32::MAX))))
                    .collect();
                (dst, Val::elems(DType::I32, vec![a.shape.len()], xs))
            }
            Inst::Call { dsts, func: callee, args } => {
                let vals = self.lower_call(*callee, &Self::vals(env, args)?)?;
                for (d, v) in dsts.iter().zip(vals) {
                    env.set(*d, v);
                }
                return Ok(());
            }
            Inst::If { dsts, c, then_, else_ } => {
                let c = env.get(*c)?.clone();
                let vals = self.lower_if(fid, func, env, &c, *then_, *else_)?;
                for (d, v) in dsts.iter().zip(vals) {
                    env.set(*d, v);
                }
                return Ok(());
            }
            Inst::Fori { dsts, .. } | Inst::While { dsts, .. } | Inst::Scan { dsts, .. } => {
                let vals = self.lower_loop(fid, func, env, inst, None)?;
                for (d, v) in dsts.iter().zip(vals) {
                    env.set(*d, v);
                }
                return Ok(());
            }
            Inst::Print { srcs } => {
                let vals = srcs.iter().map(|r| env.get(*r).cloned()).collect::<Result<Vec<_>, _>>()?;
                self.lower_print(&vals);
                return Ok(());
            }
            Inst::MatMul { dst, a, b } => {
                let (a, b) = (env.get(*a)?.clone(), env.get(*b)?.clone());
                (dst, self.matmul(&a, &b)?)
            }
            Inst::DotGeneral { .. } => return unsupported!("`{}` in `{}`", op.info().name.to_lowercase(), func.name),
        };
        super::no_half(v.1.dtype)?;
        env.set(*v.0, v.1);
        Ok(())
    }

    pub(super) fn lower_call(&mut self, callee: FuncId, args: &[Val]) -> Result<Vec<Val>, CompileError> {
        if self.depth >= MAX_INLINE_DEPTH {
            return unsupported!("calls nested deeper than {MAX_INLINE_DEPTH} are not inlined");
        }
        let m = self.m;
        let Some(cf) = m.funcs.get(callee.0 as usize) else { return unsupported!("no function f{}", callee.0) };
        let Some(body) = cf.blocks.get(cf.body.0 as usize) else { return unsupported!("`{}` has no body", cf.name) };
        let mut cenv = Env::new(cf.num_regs());
        for (p, a) in body.params.iter().zip(args) {
            cenv.set(*p, a.clone());
        }
        self.depth += 1;
        let r = self.lower_block(callee, cf, &mut cenv, cf.body);
        self.depth -= 1;
        r?;
        Self::vals(&cenv, &body.results)
    }

    pub(super) fn lower_if(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        c: &Val,
        then_: BlockId,
        else_: BlockId,
    ) -> Result<Vec<Val>, CompileError> {
        if c.dtype != DType::Bool {
            return unsupported!("if condition is {}, not bool", c.type_string());
        }
        let cv = self.scalar(c, "the if condition")?;
        if is_cheap(func, then_) && is_cheap(func, else_) {
            return self.lower_if_select(fid, func, env, cv, then_, else_);
        }
        let (tb, eb, merge) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().brif(cv, tb, &[], eb, &[]);
        self.b.seal_block(tb);
        self.b.seal_block(eb);
        let mut types: Vec<(DType, Vec<usize>)> = Vec::new();
        for (k, (blk, bid)) in [(tb, then_), (eb, else_)].into_iter().enumerate() {
            self.b.switch_to_block(blk);
            self.lower_block(fid, func, env, bid)?;
            let Some(block) = func.blocks.get(bid.0 as usize) else { return unsupported!("no block b{}", bid.0) };
            let vals = Self::vals(env, &block.results)?;
            let mut args = Vec::new();
            for (i, v) in vals.iter().enumerate() {
                let big = v.numel() > MAX_ELEMS;
                if k == 0 {
                    types.push((v.dtype, v.shape.clone()));
                    if big {
                        // The address of the chosen branch's buffer.
                        self.b.append_block_param(merge, self.ptr);
                    } else {
                        for _ in 0..v.numel() {
                            self.b.append_block_param(merge, clif_type(v.dtype));
                        }
                    }
                } else if types.get(i) != Some(&(v.dtype, v.shape.clone())) {
                    return unsupported!("if branches give different types ({})", v.type_string());
                }
                if big {
                    let p = self.addr_of(v)?;
                    args.push(ir::BlockArg::Value(p));
                } else {
                    args.extend(self.elems(v, "if")?.iter().map(|&x| ir::BlockArg::Value(x)));
                }
            }
            if k == 1 && vals.len() != types.len() {
                return unsupported!("if branches give different numbers of values");
            }
            self.b.ins().jump(merge, &args);
        }
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        let params = self.b.block_params(merge).to_vec();
        let mut at = 0;
        Ok(types
            .into_iter()
            .map(|(dtype, shape)| {
                let n: usize = shape.iter().product();
                if n > MAX_ELEMS {
                    let p = params[at];
                    at += 1;
                    self.rw.insert(p);
                    return Val { dtype, shape, repr: Repr::Mem(p) };
                }
                let xs = params[at..at + n].to_vec();
                at += n;
                Val::elems(dtype, shape, xs)
            })
            .collect())
    }

    /// If-conversion: both branches are cheap and pure (see [`is_cheap`]),
    /// so both are computed and the results picked with `select` (a
    /// conditional move): no branch to mispredict. Example: Collatz's
    /// `if x % 2 == 0 { x / 2 } else { 3 * x + 1 }`.
    pub(super) fn lower_if_select(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        cv: Value,
        then_: BlockId,
        else_: BlockId,
    ) -> Result<Vec<Val>, CompileError> {
        let mut sides = Vec::with_capacity(2);
        for bid in [then_, else_] {
            self.lower_block(fid, func, env, bid)?;
            let Some(block) = func.blocks.get(bid.0 as usize) else { return unsupported!("no block b{}", bid.0) };
            sides.push(Self::vals(env, &block.results)?);
        }
        let (t, e) = (&sides[0], &sides[1]);
        if t.len() != e.len() {
            return unsupported!("if branches give different numbers of values");
        }
        let mut out = Vec::with_capacity(t.len());
        for (x, y) in t.iter().zip(e) {
            if x.dtype != y.dtype || x.shape != y.shape {
                return unsupported!("if branches give {} and {}", x.type_string(), y.type_string());
            }
            if x.numel() > MAX_ELEMS {
                // Both computed: pick the address of one's buffer.
                let (px, py) = (self.addr_of(x)?, self.addr_of(y)?);
                let p = self.b.ins().select(cv, px, py);
                if self.rw.contains(&px) || self.rw.contains(&py) {
                    self.rw.insert(p);
                }
                out.push(Val { dtype: x.dtype, shape: x.shape.clone(), repr: Repr::Mem(p) });
                continue;
            }
            let (xs, ys) = (self.elems(x, "if")?.to_vec(), self.elems(y, "if")?.to_vec());
            let picked = xs.iter().zip(&ys).map(|(&a, &b)| self.b.ins().select(cv, a, b)).collect();
            out.push(Val::elems(x.dtype, x.shape.clone(), picked));
        }
        Ok(out)
    }

    pub(super) fn carry_vars(&mut self, init: &[Val]) -> Result<Vec<CarryVars>, CompileError> {
        init.iter()
            .map(|v| {
                if v.numel() > MAX_ELEMS {
                    // A buffer of its own, starting as a copy of `init`.
                    let buf = self.scratch(v.numel() * v.dtype.size_in_bytes())?;
                    let src = self.addr_of(v)?;
                    self.copy_value(v, buf, src);
                    return Ok(CarryVars { dtype: v.dtype, shape: v.shape.clone(), vars: Vec::new(), buf: Some(buf) });
                }
                let xs = self.elems(v, "a loop carry")?.to_vec();
                let ty = clif_type(v.dtype);
                let vars = xs
                    .iter()
                    .map(|&x| {
                        let var = self.b.declare_var(ty);
                        self.b.def_var(var, x);
                        var
                    })
                    .collect();
                Ok(CarryVars { dtype: v.dtype, shape: v.shape.clone(), vars, buf: None })
            })
            .collect()
    }

    pub(super) fn read_vars(&mut self, cv: &[CarryVars]) -> Vec<Val> {
        cv.iter()
            .map(|c| match c.buf {
                Some(p) => Val { dtype: c.dtype, shape: c.shape.clone(), repr: Repr::Mem(p) },
                None => {
                    let xs = c.vars.iter().map(|&v| self.b.use_var(v)).collect();
                    Val::elems(c.dtype, c.shape.clone(), xs)
                }
            })
            .collect()
    }

    pub(super) fn write_vars(&mut self, cv: &[CarryVars], vals: &[Val]) -> Result<(), CompileError> {
        if cv.len() != vals.len() {
            return unsupported!("loop body gives {} carry values for {}", vals.len(), cv.len());
        }
        // Read every result before defining any variable: a result may be a carry itself.
        let mut all = Vec::with_capacity(cv.len());
        let mut copies = Vec::new();
        let nbufs = cv.iter().filter(|c| c.buf.is_some()).count();
        for (c, v) in cv.iter().zip(vals) {
            if c.dtype != v.dtype || c.shape != v.shape {
                return unsupported!(
                    "loop carry changes type from {} to {}",
                    type_string(c.dtype, &c.shape),
                    v.type_string()
                );
            }
            match c.buf {
                Some(buf) => {
                    let mut src = self.addr_of(v)?;
                    if src != buf && nbufs > 1 && !self.owned.contains(&src) {
                        // It may be another carry's buffer, written below:
                        // read it first.
                        let tmp = self.scratch(v.numel() * v.dtype.size_in_bytes())?;
                        self.copy_value(v, tmp, src);
                        src = tmp;
                    }
                    copies.push((buf, src, v));
                    all.push(Vec::new());
                }
                None => all.push(self.elems(v, "a loop carry")?.to_vec()),
            }
        }
        for (buf, src, v) in copies {
            if src != buf {
                self.copy_value(v, buf, src);
            }
        }
        for (c, xs) in cv.iter().zip(all) {
            for (&var, x) in c.vars.iter().zip(xs) {
                self.b.def_var(var, x);
            }
        }
        Ok(())
    }

    /// A fresh iteration counter for the loop `(fid, body)`.
    pub(super) fn loop_counter(&mut self, fid: FuncId, body: BlockId) -> (usize, Variable) {
        self.loops.push((fid, body));
        let var = self.b.declare_var(types::I64);
        let z = self.iconst(types::I64, 0);
        self.b.def_var(var, z);
        (self.loops.len() - 1, var)
    }

    pub(super) fn bump(&mut self, var: Variable) {
        let n = self.b.use_var(var);
        let one = self.iconst(types::I64, 1);
        let n = self.b.ins().iadd(n, one);
        self.b.def_var(var, n);
        self.tick();
    }

    /// Metered code: one iteration's fuel; when none is left, asks
    /// `libcalls::refuel` for more and returns at once when refused. The
    /// code after it continues in a new block.
    pub(super) fn tick(&mut self) {
        let Some((mp, fuel)) = self.meter else { return };
        let f = self.b.use_var(fuel);
        let f1 = self.b.ins().iadd_imm_s(f, -1);
        self.b.def_var(fuel, f1);
        let empty = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, f1, 0);
        let (slow, refill, cont) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.set_cold_block(slow);
        self.b.set_cold_block(refill);
        self.b.ins().brif(empty, slow, &[], cont, &[]);
        self.b.switch_to_block(slow);
        self.b.seal_block(slow);
        let g = self.call(libcalls::refuel_addr(), &[self.ptr], types::I64, &[mp]);
        let stop = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, g, 1);
        let abort = match self.abort {
            Some(b) => b,
            None => {
                let b = self.b.create_block();
                self.abort = Some(b);
                b
            }
        };
        self.b.ins().brif(stop, abort, &[], refill, &[]);
        self.b.switch_to_block(refill);
        self.b.seal_block(refill);
        let g1 = self.b.ins().iadd_imm_s(g, -1);
        self.b.def_var(fuel, g1);
        self.b.ins().jump(cont, &[]);
        self.b.switch_to_block(cont);
        self.b.seal_block(cont);
    }

    /// Adds the counter to `counters[slot]` (in the exit block).
    pub(super) fn flush_counter(&mut self, slot: usize, var: Variable) {
        let n = self.b.use_var(var);
        let off = (slot * 8) as i32;
        let old = self.b.ins().load(types::I64, MemFlagsData::trusted(), self.counters, off);
        let new = self.b.ins().iadd(old, n);
        self.b.ins().store(MemFlagsData::trusted(), new, self.counters, off);
    }

    /// Lowers a loop instruction; `top` is set for the region's own loop.
    pub(super) fn lower_loop(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        inst: &Inst,
        top: Option<&Top>,
    ) -> Result<Vec<Val>, CompileError> {
        match inst {
            Inst::Fori { lo, hi, init, body, .. } => self.lower_fori(fid, func, env, *lo, *hi, init, *body, top),
            Inst::While { init, cond, body, .. } => self.lower_while(fid, func, env, init, *cond, *body, top),
            Inst::Scan { init, xs, length, reverse, body, .. } => {
                self.lower_scan(fid, func, env, init, xs, length.0, *reverse, *body, top)
            }
            _ => unsupported!("`{}` is not a loop", inst.opcode().info().name),
        }
    }

    pub(super) fn initial_carry(env: &Env, init: &[Reg], top: Option<&Top>) -> Result<Vec<Val>, CompileError> {
        match top {
            Some(t) => Ok(t.carry.clone()),
            None => Self::vals(env, init),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn lower_fori(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        lo: Reg,
        hi: Reg,
        init: &[Reg],
        body: BlockId,
        top: Option<&Top>,
    ) -> Result<Vec<Val>, CompileError> {
        let (lo_v, hi_v) = (env.get(lo)?.clone(), env.get(hi)?.clone());
        if !lo_v.dtype.is_int() || !hi_v.dtype.is_int() {
            return unsupported!("fori_loop bounds {} and {}", lo_v.type_string(), hi_v.type_string());
        }
        let (lo_x, hi_x) =
            (self.scalar(&lo_v, "fori_loop's lower bound")?, self.scalar(&hi_v, "fori_loop's upper bound")?);
        // The counter runs in i64 when either bound is i64 (the interpreter
        // counts in i64 and writes the counter in lo's dtype).
        let wide = lo_v.dtype == DType::I64 || hi_v.dtype == DType::I64;
        let wt = if wide { DType::I64 } else { DType::I32 };
        let lo_w = self.cast_scalar(lo_v.dtype, wt, lo_x);
        let hi_w = self.cast_scalar(hi_v.dtype, wt, hi_x);
        let init_vals = Self::initial_carry(env, init, top)?;
        let first = match top {
            Some(t) => {
                let s = if wide { t.start } else { self.b.ins().ireduce(types::I32, t.start) };
                self.b.ins().iadd(lo_w, s)
            }
            None => lo_w,
        };
        let Some(blk) = func.blocks.get(body.0 as usize) else { return unsupported!("no block b{}", body.0) };
        let Some((&ireg, cparams)) = blk.params.split_first() else {
            return unsupported!("fori_loop body without a counter");
        };
        if cparams.len() != init_vals.len() {
            return unsupported!("fori_loop body takes {} carries, given {}", cparams.len(), init_vals.len());
        }
        let ivar = self.b.declare_var(clif_type(wt));
        self.b.def_var(ivar, first);
        let cv = self.carry_vars(&init_vals)?;
        let (slot, count) = self.loop_counter(fid, body);
        // Rotated: a guard, then the body with the test at its end, so an
        // iteration takes one branch.
        let (bb, exit) = (self.b.create_block(), self.b.create_block());
        let go = self.b.ins().icmp(IntCC::SignedLessThan, first, hi_w);
        self.b.ins().brif(go, bb, &[], exit, &[]);
        self.b.switch_to_block(bb);
        let i = self.b.use_var(ivar);
        let counter = self.cast_scalar(wt, lo_v.dtype, i);
        env.set(ireg, Val::scalar(lo_v.dtype, counter));
        for (p, v) in cparams.iter().zip(self.read_vars(&cv)) {
            env.set(*p, v);
        }
        self.lower_block(fid, func, env, body)?;
        let res = Self::vals(env, &blk.results)?;
        self.write_vars(&cv, &res)?;
        let one = self.iconst(clif_type(wt), 1);
        let next = self.b.ins().iadd(i, one);
        self.b.def_var(ivar, next);
        self.bump(count);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, next, hi_w);
        self.b.ins().brif(go, bb, &[], exit, &[]);
        self.b.seal_block(bb);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.flush_counter(slot, count);
        Ok(self.read_vars(&cv))
    }

    /// Lowers a `while_loop`'s condition block on the current carry.
    pub(super) fn while_test(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        cond: BlockId,
        creg: Reg,
        cv: &[CarryVars],
    ) -> Result<Value, CompileError> {
        let Some(cb) = func.blocks.get(cond.0 as usize) else { return unsupported!("no block b{}", cond.0) };
        for (p, v) in cb.params.iter().zip(self.read_vars(cv)) {
            env.set(*p, v);
        }
        self.lower_block(fid, func, env, cond)?;
        let c = env.get(creg)?.clone();
        if c.dtype != DType::Bool {
            return unsupported!("while_loop condition is {}, not bool", c.type_string());
        }
        self.scalar(&c, "the while_loop condition")
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn lower_while(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        init: &[Reg],
        cond: BlockId,
        body: BlockId,
        top: Option<&Top>,
    ) -> Result<Vec<Val>, CompileError> {
        let init_vals = Self::initial_carry(env, init, top)?;
        let (Some(cb), Some(bb)) = (func.blocks.get(cond.0 as usize), func.blocks.get(body.0 as usize)) else {
            return unsupported!("while_loop blocks missing");
        };
        let Some(&creg) = cb.results.first() else { return unsupported!("while_loop condition without a result") };
        let cv = self.carry_vars(&init_vals)?;
        let (slot, count) = self.loop_counter(fid, body);
        // Rotated: the condition is lowered twice, as a guard and at the end
        // of the body, so an iteration takes one branch.
        let (body_b, exit) = (self.b.create_block(), self.b.create_block());
        let go = self.while_test(fid, func, env, cond, creg, &cv)?;
        self.b.ins().brif(go, body_b, &[], exit, &[]);
        self.b.switch_to_block(body_b);
        for (p, v) in bb.params.iter().zip(self.read_vars(&cv)) {
            env.set(*p, v);
        }
        self.lower_block(fid, func, env, body)?;
        let res = Self::vals(env, &bb.results)?;
        self.write_vars(&cv, &res)?;
        self.bump(count);
        let go = self.while_test(fid, func, env, cond, creg, &cv)?;
        self.b.ins().brif(go, body_b, &[], exit, &[]);
        self.b.seal_block(body_b);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.flush_counter(slot, count);
        Ok(self.read_vars(&cv))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn lower_scan(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        init: &[Reg],
        xs: &[Reg],
        length: Option<u64>,
        reverse: bool,
        body: BlockId,
        top: Option<&Top>,
    ) -> Result<Vec<Val>, CompileError> {
        let init_vals = Self::initial_carry(env, init, top)?;
        let Some(blk) = func.blocks.get(body.0 as usize) else { return unsupported!("no block b{}", body.0) };
        let nc = init.len();
        if blk.params.len() < nc || blk.results.len() < nc || init_vals.len() != nc {
            return unsupported!("scan body does not match its carry");
        }
        let (cparams, xparams) = blk.params.split_at(nc);
        let (cres, yres) = blk.results.split_at(nc);
        let xvals = Self::vals(env, xs)?;
        let mut n: Option<usize> = length.map(|l| l as usize);
        for x in &xvals {
            let Some(&lead) = x.shape.first() else { return unsupported!("scan over a scalar {}", x.type_string()) };
            match n {
                None => n = Some(lead),
                Some(k) if k != lead => return unsupported!("scan: xs have leading dimension {lead}, expected {k}"),
                _ => {}
            }
        }
        let Some(n) = n else { return unsupported!("scan needs xs or a length") };
        let cv = self.carry_vars(&init_vals)?;
        let (slot, count) = self.loop_counter(fid, body);
        // The region's own scan writes its ys straight into its outputs.
        let ybase: Vec<Value> = match top {
            Some(t) => (0..yres.len()).map(|j| self.load_ptr(t.outs, nc + j)).collect(),
            None => Vec::new(),
        };
        let tvar = self.b.declare_var(types::I64);
        let t0 = match top {
            Some(t) => t.start,
            None => self.iconst(types::I64, 0),
        };
        self.b.def_var(tvar, t0);
        // Rotated, as `fori_loop`.
        let (bb, exit) = (self.b.create_block(), self.b.create_block());
        let nv = self.iconst(types::I64, n as i64);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, t0, nv);
        self.b.ins().brif(go, bb, &[], exit, &[]);
        self.b.switch_to_block(bb);
        let t = self.b.use_var(tvar);
        let row = if reverse {
            let last = self.iconst(types::I64, n as i64 - 1);
            self.b.ins().isub(last, t)
        } else {
            t
        };
        for (p, x) in xparams.iter().zip(&xvals) {
            let shape = x.shape[1..].to_vec();
            let large = rules::product(&shape).filter(|&n| n > MAX_ELEMS && self.buffers);
            if let (Repr::Mem(base), Some(rn)) = (&x.repr, large) {
                // A large row is read where it is.
                let base = *base;
                let addr = self.offset_addr(base, row, rn * x.dtype.size_in_bytes());
                env.set(*p, Val { dtype: x.dtype, shape, repr: Repr::Mem(addr) });
                continue;
            }
            let rn = self.check_size("a scan row", &shape)?;
            let off = if rn == 1 {
                row
            } else {
                let k = self.iconst(types::I64, rn as i64);
                self.b.ins().imul(row, k)
            };
            let elems = self.read_block(x, off, rn)?;
            env.set(*p, Val::elems(x.dtype, shape, elems));
        }
        for (p, v) in cparams.iter().zip(self.read_vars(&cv)) {
            env.set(*p, v);
        }
        self.lower_block(fid, func, env, body)?;
        let cvals = Self::vals(env, cres)?;
        let yvals = Self::vals(env, yres)?;
        // Where each y's rows go: the region's outputs, or a stack slot.
        let mut sinks = Vec::with_capacity(yvals.len());
        for (j, y) in yvals.iter().enumerate() {
            if let (Repr::Mem(src), Some(&base)) = (&y.repr, ybase.get(j)) {
                // A large row of the region's own scan: copied into its output.
                let src = *src;
                let rowbytes = y.numel() * y.dtype.size_in_bytes();
                let addr = self.offset_addr(base, row, rowbytes);
                self.copy_value(y, addr, src);
                continue;
            }
            let ys = self.elems(y, "a scan y")?.to_vec();
            let mut shape = vec![n];
            shape.extend_from_slice(&y.shape);
            let rowbytes = y.numel() * y.dtype.size_in_bytes();
            let base = match ybase.get(j) {
                Some(&p) => p,
                None => {
                    self.check_size("scan ys", &shape)?;
                    let size = (n * rowbytes).max(1) as u32;
                    let ss = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, size, 3));
                    sinks.push(ss);
                    self.b.ins().stack_addr(self.ptr, ss, 0)
                }
            };
            let addr = self.offset_addr(base, row, rowbytes);
            self.store_elems(y.dtype, addr, 0, &ys);
        }
        self.write_vars(&cv, &cvals)?;
        let one = self.iconst(types::I64, 1);
        let next = self.b.ins().iadd(t, one);
        self.b.def_var(tvar, next);
        self.bump(count);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, next, nv);
        self.b.ins().brif(go, bb, &[], exit, &[]);
        self.b.seal_block(bb);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.flush_counter(slot, count);
        let mut out = self.read_vars(&cv);
        for (j, y) in yvals.iter().enumerate() {
            let mut shape = vec![n];
            shape.extend_from_slice(&y.shape);
            match (top, sinks.get(j)) {
                (Some(t), _) => out.push(Val { dtype: y.dtype, shape, repr: Repr::Mem(t.outs) }),
                (None, Some(&ss)) => {
                    let base = self.b.ins().stack_addr(self.ptr, ss, 0);
                    let total: usize = shape.iter().product();
                    let xs = self.load_elems(y.dtype, base, 0, total);
                    out.push(Val::elems(y.dtype, shape, xs));
                }
                (None, None) => return unsupported!("scan ys without storage"),
            }
        }
        Ok(out)
    }
}

/// The most instructions a branch may have to be if-converted.
pub(super) const MAX_CHEAP_BRANCH: usize = 12;

/// `true` when block `b` of `func` is cheap enough to compute
/// unconditionally: a few instructions, no loops, calls or `if`s, no
/// function calls into Rust (transcendentals, `pow`, float `%`) and no
/// division by a value that is not a constant. Everything this lowering
/// emits is free of side effects and traps, so computing it is safe.
pub(super) fn is_cheap(func: &Func, b: BlockId) -> bool {
    let Some(block) = func.blocks.get(b.0 as usize) else { return false };
    let const_def =
        |r: Reg| func.blocks.iter().flat_map(|b| &b.code).any(|i| matches!(i, Inst::Const { dst, .. } if *dst == r));
    let dtype = |r: Reg| func.reg_types.get(r.0 as usize).map(|t| t.dtype);
    block.code.len() <= MAX_CHEAP_BRANCH
        && block.code.iter().all(|i| match i {
            Inst::Const { .. }
            | Inst::Move { .. }
            | Inst::Shard { .. }
            | Inst::Select { .. }
            | Inst::Cast { .. }
            | Inst::Bitcast { .. } => true,
            Inst::Unary { op, .. } => matches!(op, UnaryOp::Neg | UnaryOp::Not | UnaryOp::Abs | UnaryOp::Relu),
            Inst::Binary { op: BinaryOp::Pow, .. } => false,
            Inst::Binary { op: BinaryOp::Div | BinaryOp::Rem, a, b, .. } => {
                dtype(*a).is_some_and(|d| d.is_int()) && const_def(*b)
            }
            Inst::Binary { .. } => true,
            // A constant divisor, as `const_def` above.
            Inst::BinaryK { op: BinaryOp::Pow, .. } | Inst::KBinary { op: BinaryOp::Pow, .. } => false,
            Inst::BinaryK { op: BinaryOp::Div | BinaryOp::Rem, a, .. } => dtype(*a).is_some_and(|d| d.is_int()),
            Inst::KBinary { op: BinaryOp::Div | BinaryOp::Rem, .. } => false,
            Inst::BinaryK { .. } | Inst::KBinary { .. } => true,
            _ => false,
        })
}

/// Verifies `func` with Cranelift's verifier; the error carries the printed function.
pub(crate) fn verify(func: &ir::Function, isa: &dyn cranelift_codegen::isa::TargetIsa) -> Result<(), CompileError> {
    cranelift_codegen::verify_function(func, isa)
        .map_err(|e| CompileError::Verifier(cranelift_codegen::print_errors::pretty_verifier_error(func, None, e)))
}
