//! Lowering: the typed IR to loopvm bytecode.
//!
//! Tuples are flattened depth-first: every value is a list of registers.
//! Registers are SSA (one definition per function). Nested blocks (loop
//! bodies, `if` branches) see the registers of their ancestors, which is how
//! lambda captures reach a loop body. Every block's results are registers
//! that the block's own instructions define, pairwise distinct: when a result
//! is a parameter, an outer register or a duplicate, a `Move` is appended.

use crate::diag::{err, DResult, Span};
use crate::typed::{self as t, ConstData, ConstValues, ExprKind as K, StaticIndex};
use crate::types::{Dim as TDim, TensorTy, Type};
use loopvm_runtime::kernels::SliceSpec;
use loopvm_runtime::{DType, Tensor};
use loopvm_vm::{
    Axis, Block, BlockId, ConstId, Dim, Dims, Func, FuncId, Inst, Module, OptAxes, OptAxis, OptLen, Param, Reg, Slices,
    TensorType, TypeTree,
};
use std::collections::{HashMap, HashSet};

/// Lowers a checked program to a bytecode module.
pub fn lower_program(p: &t::Program) -> DResult<Module> {
    let mut m =
        ModLower { symbols: Vec::new(), sym_index: HashMap::new(), consts: Vec::new(), scalar_consts: HashMap::new() };
    // `main`'s shape variables come first, in the order its parameters name them.
    if let Some(main) = p.main.and_then(|id| p.funcs.get(id.0 as usize)) {
        for (_, v) in &main.params {
            if let Some(ty) = main.var_type(*v) {
                m.type_tree(ty);
            }
        }
    }
    let mut funcs = Vec::new();
    for f in &p.funcs {
        funcs.push(FnLower::new(f).run(&mut m)?);
    }
    Ok(Module { symbols: m.symbols, consts: m.consts, funcs, main: p.main.map(|f| FuncId(f.0)) })
}

struct ModLower {
    symbols: Vec<String>,
    sym_index: HashMap<String, u32>,
    consts: Vec<Tensor>,
    scalar_consts: HashMap<(DType, u64), ConstId>,
}

impl ModLower {
    fn symbol(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.sym_index.get(name) {
            return i;
        }
        let i = self.symbols.len() as u32;
        self.symbols.push(name.to_string());
        self.sym_index.insert(name.to_string(), i);
        i
    }

    fn tensor_type(&mut self, t: &TensorTy) -> TensorType {
        let dims = t
            .dims
            .iter()
            .map(|d| match d {
                TDim::Known(n) => Dim::Fixed(*n),
                TDim::Var(v) => Dim::Var(self.symbol(v)),
            })
            .collect();
        TensorType { dtype: t.dtype, dims }
    }

    fn type_tree(&mut self, t: &Type) -> TypeTree {
        match t {
            Type::Tensor(x) => TypeTree::Tensor(self.tensor_type(x)),
            Type::Tuple(ts) => TypeTree::Tuple(ts.iter().map(|t| self.type_tree(t)).collect()),
        }
    }

    /// Adds a constant to the pool (scalars are shared).
    fn constant(&mut self, c: &ConstData, span: Span) -> DResult<ConstId> {
        let key = match (&c.values, c.shape.is_empty()) {
            (ConstValues::Bool(v), true) => v.first().map(|b| (c.dtype, u64::from(*b))),
            (ConstValues::Int(v), true) => v.first().map(|i| (c.dtype, *i as u64)),
            (ConstValues::Float(v), true) => v.first().map(|f| (c.dtype, f.to_bits())),
            _ => None,
        };
        if let Some(k) = key {
            if let Some(&id) = self.scalar_consts.get(&k) {
                return Ok(id);
            }
        }
        let shape: Vec<usize> = c.shape.iter().map(|d| usize::try_from(*d).unwrap_or(usize::MAX)).collect();
        let r = match (&c.values, c.dtype) {
            (ConstValues::Bool(v), DType::Bool) => Tensor::from_vec(&shape, v.clone()),
            (ConstValues::Int(v), DType::I32) => Tensor::from_vec(&shape, v.iter().map(|x| *x as i32).collect()),
            (ConstValues::Int(v), DType::I64) => Tensor::from_vec(&shape, v.clone()),
            (ConstValues::Int(v), DType::U32) => Tensor::from_vec(&shape, v.iter().map(|x| *x as u32).collect()),
            (ConstValues::Int(v), DType::U8) => Tensor::from_vec(&shape, v.iter().map(|x| *x as u8).collect()),
            (ConstValues::Float(v), DType::F32) => Tensor::from_vec(&shape, v.iter().map(|x| *x as f32).collect()),
            (ConstValues::Float(v), DType::F64) => Tensor::from_vec(&shape, v.clone()),
            (ConstValues::Float(v), DType::BF16) => {
                Tensor::from_vec(&shape, v.iter().map(|x| loopvm_runtime::bf16::from_f64(*x)).collect())
            }
            (ConstValues::Float(v), DType::F16) => {
                Tensor::from_vec(&shape, v.iter().map(|x| loopvm_runtime::f16::from_f64(*x)).collect())
            }
            _ => return err(format!("internal error: constant data does not match dtype {}", c.dtype), span),
        };
        let tensor = r.or_else(|e| err(format!("bad constant: {}", e.message), span))?;
        let id = ConstId(self.consts.len() as u32);
        self.consts.push(tensor);
        if let Some(k) = key {
            self.scalar_consts.insert(k, id);
        }
        Ok(id)
    }
}

/// A block under construction.
#[derive(Default)]
struct Builder {
    params: Vec<Reg>,
    code: Vec<Inst>,
    defs: HashSet<Reg>,
}

struct FnLower<'p> {
    f: &'p t::Func,
    reg_types: Vec<TensorType>,
    blocks: Vec<Block>,
    open: Vec<Builder>,
    vars: Vec<Option<Vec<Reg>>>,
}

fn slice_spec(s: &StaticIndex) -> SliceSpec {
    match *s {
        StaticIndex::At(i) => SliceSpec::Index(i),
        StaticIndex::Range { start, stop, step } => SliceSpec::Range { start, stop, step },
    }
}

impl<'p> FnLower<'p> {
    fn new(f: &'p t::Func) -> Self {
        FnLower { f, reg_types: Vec::new(), blocks: Vec::new(), open: Vec::new(), vars: vec![None; f.vars.len()] }
    }

    fn run(mut self, m: &mut ModLower) -> DResult<Func> {
        let f = self.f;
        self.open.push(Builder::default());
        let mut params = Vec::new();
        for (name, v) in &f.params {
            let ty = f.var_type(*v).cloned().unwrap_or_else(Type::unit);
            let regs = self.fresh_for(m, &ty);
            if let Some(b) = self.open.last_mut() {
                b.params.extend(regs.iter().copied());
            }
            self.bind_var(*v, regs);
            params.push(Param { name: name.clone(), ty: m.type_tree(&ty) });
        }
        let results = self.expr(m, &f.body)?;
        let body = self.close(results)?;
        Ok(Func {
            name: f.name.clone(),
            params,
            result: m.type_tree(&f.result),
            reg_types: self.reg_types,
            blocks: self.blocks,
            body,
        })
    }

    fn fresh(&mut self, m: &mut ModLower, t: &TensorTy) -> Reg {
        let r = Reg(self.reg_types.len() as u32);
        let tt = m.tensor_type(t);
        self.reg_types.push(tt);
        r
    }

    fn fresh_for(&mut self, m: &mut ModLower, ty: &Type) -> Vec<Reg> {
        ty.leaves().into_iter().map(|t| self.fresh(m, t)).collect()
    }

    fn emit(&mut self, inst: Inst) {
        if let Some(b) = self.open.last_mut() {
            inst.visit_defs(&mut |r| {
                b.defs.insert(r);
            });
            b.code.push(inst);
        }
    }

    /// Emits a one-result instruction built by `f` from a fresh register of type `t`.
    fn one(&mut self, m: &mut ModLower, ty: &Type, f: impl FnOnce(Reg) -> Inst) -> DResult<Vec<Reg>> {
        let Some(tt) = ty.tensor() else {
            return err("internal error: a tensor operation with a tuple type", Span::default());
        };
        let dst = self.fresh(m, tt);
        self.emit(f(dst));
        Ok(vec![dst])
    }

    /// Opens a nested block with the given params.
    fn open_block(&mut self, params: Vec<Reg>) {
        self.open.push(Builder { params, ..Builder::default() });
    }

    /// Closes the innermost block with `results`, fixing them up with moves.
    fn close(&mut self, results: Vec<Reg>) -> DResult<BlockId> {
        let mut fixed = Vec::with_capacity(results.len());
        for r in results {
            let own = self.open.last().is_some_and(|b| b.defs.contains(&r));
            if own && !fixed.contains(&r) {
                fixed.push(r);
            } else {
                let ty = self.reg_types.get(r.0 as usize).cloned();
                let Some(ty) = ty else {
                    return err("internal error: unknown register", Span::default());
                };
                let dst = Reg(self.reg_types.len() as u32);
                self.reg_types.push(ty);
                self.emit(Inst::Move { dst, src: r });
                fixed.push(dst);
            }
        }
        let Some(b) = self.open.pop() else {
            return err("internal error: no open block", Span::default());
        };
        let id = BlockId(self.blocks.len() as u32);
        self.blocks.push(Block { params: b.params, code: b.code, results: fixed });
        Ok(id)
    }

    fn bind_var(&mut self, v: t::VarId, regs: Vec<Reg>) {
        if let Some(slot) = self.vars.get_mut(v.0 as usize) {
            *slot = Some(regs);
        }
    }

    fn pattern_leaves(&self, p: &t::Pattern) -> usize {
        match p {
            t::Pattern::Var(v) => self.f.var_type(*v).map_or(0, Type::num_leaves),
            t::Pattern::Wild(ty) => ty.num_leaves(),
            t::Pattern::Tuple(ps) => ps.iter().map(|p| self.pattern_leaves(p)).sum(),
        }
    }

    fn bind(&mut self, p: &t::Pattern, regs: &[Reg]) {
        match p {
            t::Pattern::Var(v) => self.bind_var(*v, regs.to_vec()),
            t::Pattern::Wild(_) => {}
            t::Pattern::Tuple(ps) => {
                let mut at = 0;
                for p in ps {
                    let n = self.pattern_leaves(p);
                    let end = (at + n).min(regs.len());
                    let part = regs.get(at..end).unwrap_or(&[]).to_vec();
                    self.bind(p, &part);
                    at = end;
                }
            }
        }
    }

    fn single(&mut self, m: &mut ModLower, e: &t::Expr) -> DResult<Reg> {
        let regs = self.expr(m, e)?;
        match regs.as_slice() {
            [r] => Ok(*r),
            _ => err("internal error: expected one tensor", e.span),
        }
    }

    fn expr(&mut self, m: &mut ModLower, e: &t::Expr) -> DResult<Vec<Reg>> {
        let ty = &e.ty;
        match &e.kind {
            K::Var(v) => match self.vars.get(v.0 as usize) {
                Some(Some(regs)) => Ok(regs.clone()),
                _ => err("internal error: variable used before it is bound", e.span),
            },
            K::Const(c) => {
                let k = m.constant(c, e.span)?;
                self.one(m, ty, |dst| Inst::Const { dst, k })
            }
            K::Unary(op, a) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Unary { op: *op, dst, a })
            }
            // A constant operand goes into the instruction (`BinaryK`,
            // `KBinary`): no `const` per iteration in a loop body, and the
            // interpreter reads a scalar constant unboxed.
            K::Binary(op, a, b) => match (&a.kind, &b.kind) {
                (_, K::Const(c)) => {
                    let a = self.single(m, a)?;
                    let k = m.constant(c, b.span)?;
                    self.one(m, ty, |dst| Inst::BinaryK { op: *op, dst, a, k })
                }
                (K::Const(c), _) => {
                    let k = m.constant(c, a.span)?;
                    let a = self.single(m, b)?;
                    self.one(m, ty, |dst| Inst::KBinary { op: *op, dst, k, a })
                }
                _ => {
                    let a = self.single(m, a)?;
                    let b = self.single(m, b)?;
                    self.one(m, ty, |dst| Inst::Binary { op: *op, dst, a, b })
                }
            },
            K::Select(c, a, b) => {
                let c = self.single(m, c)?;
                let a = self.single(m, a)?;
                let b = self.single(m, b)?;
                self.one(m, ty, |dst| Inst::Select { dst, c, a, b })
            }
            K::Bitcast(a, to) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Bitcast { dst, a, to: *to })
            }
            K::Shard(a, axis, mesh_axis) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Shard { dst, a, axis: Axis(*axis), mesh_axis: *mesh_axis })
            }
            K::Cast(a, to) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Cast { dst, a, to: *to })
            }
            K::MatMul(a, b) => {
                let a = self.single(m, a)?;
                let b = self.single(m, b)?;
                self.one(m, ty, |dst| Inst::MatMul { dst, a, b })
            }
            K::DotGeneral(a, b, dims) => {
                let a = self.single(m, a)?;
                let b = self.single(m, b)?;
                self.one(m, ty, |dst| Inst::DotGeneral { dst, a, b, dims: dims.clone() })
            }
            K::Reduce(op, a, axis) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Reduce { op: *op, dst, a, axis: OptAxis(*axis) })
            }
            K::Reshape(a, shape) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Reshape { dst, a, shape: Dims(shape.clone()) })
            }
            K::ReshapeAs(a) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::ReshapeAs { dst, a })
            }
            K::Transpose(a, perm) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Transpose { dst, a, perm: OptAxes(perm.clone()) })
            }
            K::Broadcast(a, shape) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Broadcast { dst, a, shape: Dims(shape.clone()) })
            }
            K::Iota(dtype, n) => self.one(m, ty, |dst| Inst::Iota { dst, dtype: *dtype, n: *n }),
            K::Concat(xs, axis) => {
                let srcs = xs.iter().map(|x| self.single(m, x)).collect::<DResult<Vec<_>>>()?;
                self.one(m, ty, |dst| Inst::Concat { dst, srcs, axis: Axis(*axis) })
            }
            K::Stack(xs, axis) => {
                let srcs = xs.iter().map(|x| self.single(m, x)).collect::<DResult<Vec<_>>>()?;
                self.one(m, ty, |dst| Inst::Stack { dst, srcs, axis: Axis(*axis) })
            }
            K::Slice(a, specs) => {
                let a = self.single(m, a)?;
                let specs = Slices(specs.iter().map(slice_spec).collect());
                self.one(m, ty, |dst| Inst::Slice { dst, a, specs })
            }
            K::Index(a, idx) => {
                let a = self.single(m, a)?;
                let idx = idx.iter().map(|x| self.single(m, x)).collect::<DResult<Vec<_>>>()?;
                self.one(m, ty, |dst| Inst::Index { dst, a, idx })
            }
            K::Update { mode, base, idx, value } => {
                let a = self.single(m, base)?;
                let idx = idx.iter().map(|x| self.single(m, x)).collect::<DResult<Vec<_>>>()?;
                let v = self.single(m, value)?;
                self.one(m, ty, |dst| Inst::Update { mode: *mode, dst, a, idx, v })
            }
            K::Take(a, ids, axis) => {
                let (a, ids) = (self.single(m, a)?, self.single(m, ids)?);
                self.one(m, ty, |dst| Inst::Take { dst, a, ids, axis: Axis(*axis) })
            }
            K::ScatterAdd(a, ids, u, axis) => {
                let (a, ids, u) = (self.single(m, a)?, self.single(m, ids)?, self.single(m, u)?);
                self.one(m, ty, |dst| Inst::ScatterAdd { dst, a, ids, u, axis: Axis(*axis) })
            }
            K::DynSlice(a, starts, sizes) => {
                let a = self.single(m, a)?;
                let starts = starts.iter().map(|x| self.single(m, x)).collect::<DResult<Vec<_>>>()?;
                self.one(m, ty, |dst| Inst::DynSlice { dst, a, starts, sizes: Dims(sizes.clone()) })
            }
            K::DynUpdateSlice(a, u, starts) => {
                let (a, u) = (self.single(m, a)?, self.single(m, u)?);
                let starts = starts.iter().map(|x| self.single(m, x)).collect::<DResult<Vec<_>>>()?;
                self.one(m, ty, |dst| Inst::DynUpdateSlice { dst, a, u, starts })
            }
            K::Cumsum(a, axis, reverse) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::Cumsum { dst, a, axis: Axis(*axis), reverse: *reverse })
            }
            K::ShapeOf(a) => {
                let a = self.single(m, a)?;
                self.one(m, ty, |dst| Inst::ShapeOf { dst, a })
            }
            K::StopGradient(x) => self.expr(m, x),
            K::Print(x) => {
                let srcs = self.expr(m, x)?;
                self.emit(Inst::Print { srcs });
                Ok(Vec::new())
            }
            K::Tuple(xs) => {
                let mut out = Vec::new();
                for x in xs {
                    out.extend(self.expr(m, x)?);
                }
                Ok(out)
            }
            K::Block(stmts, r) => {
                for s in stmts {
                    match s {
                        t::Stmt::Let(p, v) => {
                            let regs = self.expr(m, v)?;
                            self.bind(p, &regs);
                        }
                        t::Stmt::Expr(v) => {
                            self.expr(m, v)?;
                        }
                    }
                }
                self.expr(m, r)
            }
            K::If(c, a, b) => {
                let c = self.single(m, c)?;
                self.open_block(Vec::new());
                let ra = self.expr(m, a)?;
                let then_ = self.close(ra)?;
                self.open_block(Vec::new());
                let rb = self.expr(m, b)?;
                let else_ = self.close(rb)?;
                let dsts = self.fresh_for(m, ty);
                self.emit(Inst::If { dsts: dsts.clone(), c, then_, else_ });
                Ok(dsts)
            }
            K::Call(fid, args) => {
                let mut regs = Vec::new();
                for a in args {
                    regs.extend(self.expr(m, a)?);
                }
                let dsts = self.fresh_for(m, ty);
                self.emit(Inst::Call { dsts: dsts.clone(), func: FuncId(fid.0), args: regs });
                Ok(dsts)
            }
            K::Fori { lo, hi, init, body, unroll } => {
                let lo_r = self.single(m, lo)?;
                let hi_r = self.single(m, hi)?;
                let init_r = self.expr(m, init)?;
                let i_ty = lo.ty.tensor().cloned().unwrap_or_else(|| TensorTy::scalar(DType::I32));
                let i = self.fresh(m, &i_ty);
                let carry = self.fresh_for(m, &init.ty);
                let mut params = vec![i];
                params.extend(carry.iter().copied());
                let body_id = self.lambda(m, body, params, &[vec![i], carry])?;
                let dsts = self.fresh_for(m, ty);
                self.emit(Inst::Fori {
                    dsts: dsts.clone(),
                    lo: lo_r,
                    hi: hi_r,
                    init: init_r,
                    body: body_id,
                    unroll: *unroll,
                });
                Ok(dsts)
            }
            K::While { init, cond, body, max_iters: Some(k) } => self.bounded_while(m, ty, init, cond, body, *k),
            K::While { init, cond, body, max_iters: None } => {
                let init_r = self.expr(m, init)?;
                let cp = self.fresh_for(m, &init.ty);
                let cond_id = self.lambda(m, cond, cp.clone(), &[cp])?;
                let bp = self.fresh_for(m, &init.ty);
                let body_id = self.lambda(m, body, bp.clone(), &[bp])?;
                let dsts = self.fresh_for(m, ty);
                self.emit(Inst::While { dsts: dsts.clone(), init: init_r, cond: cond_id, body: body_id });
                Ok(dsts)
            }
            K::Scan { init, xs, length, reverse, unroll, body, .. } => {
                let init_r = self.expr(m, init)?;
                let (xs_r, x_ty) = match xs {
                    Some(x) => {
                        let regs = self.expr(m, x)?;
                        let x_ty = x.ty.map_leaves(&mut |t| TensorTy {
                            dtype: t.dtype,
                            dims: t.dims.get(1..).map(<[TDim]>::to_vec).unwrap_or_default(),
                        });
                        (regs, x_ty)
                    }
                    None => (Vec::new(), Type::unit()),
                };
                let carry = self.fresh_for(m, &init.ty);
                let xp = self.fresh_for(m, &x_ty);
                let mut params = carry.clone();
                params.extend(xp.iter().copied());
                let body_id = self.lambda(m, body, params, &[carry, xp])?;
                let dsts = self.fresh_for(m, ty);
                self.emit(Inst::Scan {
                    dsts: dsts.clone(),
                    init: init_r,
                    xs: xs_r,
                    length: OptLen(*length),
                    reverse: *reverse,
                    unroll: *unroll,
                    body: body_id,
                });
                Ok(dsts)
            }
        }
    }

    /// `while_loop(cond, body, init, max_iters: k)`: a while loop with a
    /// counter in its carry; it stops when `cond` is false or after `k` iterations.
    fn bounded_while(
        &mut self,
        m: &mut ModLower,
        ty: &Type,
        init: &t::Expr,
        cond: &t::Lambda,
        body: &t::Lambda,
        k: u64,
    ) -> DResult<Vec<Reg>> {
        let span = init.span;
        let cty = TensorTy::scalar(DType::I64);
        let scalar = |v: i64| ConstData { dtype: DType::I64, shape: Vec::new(), values: ConstValues::Int(vec![v]) };
        let zero_k = m.constant(&scalar(0), span)?;
        let one_k = m.constant(&scalar(1), span)?;
        let max_k = m.constant(&scalar(i64::try_from(k).unwrap_or(i64::MAX)), span)?;
        let mut init_r = Vec::new();
        let c0 = self.fresh(m, &cty);
        self.emit(Inst::Const { dst: c0, k: zero_k });
        init_r.push(c0);
        init_r.extend(self.expr(m, init)?);
        // cond: counter < k && cond(carry)
        let ck = self.fresh(m, &cty);
        let cp = self.fresh_for(m, &init.ty);
        let mut params = vec![ck];
        params.extend(cp.iter().copied());
        self.open_block(params);
        if let Some(p) = cond.params.first() {
            self.bind(p, &cp);
        }
        let c = self.single(m, &cond.body)?;
        let kmax = self.fresh(m, &cty);
        self.emit(Inst::Const { dst: kmax, k: max_k });
        let b = TensorTy::scalar(DType::Bool);
        let lt = self.fresh(m, &b);
        self.emit(Inst::Binary { op: loopvm_runtime::BinaryOp::Lt, dst: lt, a: ck, b: kmax });
        let both = self.fresh(m, &b);
        self.emit(Inst::Binary { op: loopvm_runtime::BinaryOp::And, dst: both, a: lt, b: c });
        let cond_id = self.close(vec![both])?;
        // body: (counter + 1, body(carry))
        let bk = self.fresh(m, &cty);
        let bp = self.fresh_for(m, &init.ty);
        let mut params = vec![bk];
        params.extend(bp.iter().copied());
        self.open_block(params);
        if let Some(p) = body.params.first() {
            self.bind(p, &bp);
        }
        let mut results = Vec::new();
        let one = self.fresh(m, &cty);
        self.emit(Inst::Const { dst: one, k: one_k });
        let next = self.fresh(m, &cty);
        self.emit(Inst::Binary { op: loopvm_runtime::BinaryOp::Add, dst: next, a: bk, b: one });
        results.push(next);
        results.extend(self.expr(m, &body.body)?);
        let body_id = self.close(results)?;
        let kd = self.fresh(m, &cty);
        let dsts = self.fresh_for(m, ty);
        let mut all = vec![kd];
        all.extend(dsts.iter().copied());
        self.emit(Inst::While { dsts: all, init: init_r, cond: cond_id, body: body_id });
        Ok(dsts)
    }

    /// Lowers a loop body into a new block with `params`; `groups` are the
    /// registers each lambda parameter pattern binds.
    fn lambda(&mut self, m: &mut ModLower, l: &t::Lambda, params: Vec<Reg>, groups: &[Vec<Reg>]) -> DResult<BlockId> {
        self.open_block(params);
        for (p, regs) in l.params.iter().zip(groups) {
            self.bind(p, regs);
        }
        let results = self.expr(m, &l.body)?;
        self.close(results)
    }
}
