//! Step 1, flattening: the typed body becomes the A-normal form of `ir`
//! (tuples, blocks and `let` removed, calls inlined, static `fori_loop` and bounded
//! `while_loop` turned into scans, undifferentiable loops kept whole as opaque statements).

use super::ir::{Atom, Body, Op, Scan, Stmt, Tree};
use super::vars::collect_vars;
use super::{const_int, internal, scalar_const, Ad, Src};
use crate::diag::DResult;
use crate::typed::{self as t, ExprKind as K, Pattern, VarId, VarInfo};
use crate::types::{Dim, TensorTy, Type};
use loopvm_runtime::{BinaryOp, DType};
use std::collections::{HashMap, HashSet};

impl Ad<'_> {
    fn src_ty(&self, v: VarId) -> Type {
        let src = self.envs.last().map_or(Src::Root, |e| e.1);
        let table: &[VarInfo] = match src {
            Src::Root => &self.root_src,
            Src::Func(f) => self.funcs.get(f).map_or(&[], |f| f.vars.as_slice()),
        };
        table.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone())
    }

    /// Fresh leaf variables for a value of type `ty`: the tree, a pattern binding them, the leaves.
    pub(super) fn fresh_tree(&mut self, ty: &Type) -> (Tree, Pattern, Vec<VarId>) {
        match ty {
            Type::Tensor(tt) => {
                let v = self.new_leaf(tt);
                (Tree::Leaf(Atom::Var(v)), Pattern::Var(v), vec![v])
            }
            Type::Tuple(ts) => {
                let mut trees = Vec::new();
                let mut pats = Vec::new();
                let mut leaves = Vec::new();
                for t in ts {
                    let (tr, p, l) = self.fresh_tree(t);
                    trees.push(tr);
                    pats.push(p);
                    leaves.extend(l);
                }
                (Tree::Node(trees), Pattern::Tuple(pats), leaves)
            }
        }
    }

    fn tree_expr(&self, tree: &Tree) -> t::Expr {
        match tree {
            Tree::Leaf(a) => self.ae(a),
            Tree::Node(ts) => self.tuple(ts.iter().map(|t| self.tree_expr(t)).collect()),
        }
    }

    fn bind(&mut self, p: &Pattern, tree: Tree) -> DResult<()> {
        match (p, tree) {
            (Pattern::Var(v), tree) => {
                if let Some(env) = self.envs.last_mut() {
                    env.0.insert(*v, tree);
                }
                Ok(())
            }
            (Pattern::Wild(_), _) => Ok(()),
            (Pattern::Tuple(ps), Tree::Node(ts)) if ps.len() == ts.len() => {
                for (p, t) in ps.iter().zip(ts) {
                    self.bind(p, t)?;
                }
                Ok(())
            }
            _ => internal("a pattern does not match its value", self.span),
        }
    }

    fn lookup(&mut self, v: VarId, out: &mut Vec<Stmt>) -> DResult<Tree> {
        if let Some(t) = self.envs.last().and_then(|e| e.0.get(&v)) {
            return Ok(t.clone());
        }
        if self.envs.len() != 1 {
            return internal("a variable of an inlined function is unbound", self.span);
        }
        // A variable from outside the differentiated expression: a constant.
        let ty = self.src_ty(v);
        let tree = match &ty {
            Type::Tensor(_) => Tree::Leaf(Atom::Var(v)),
            Type::Tuple(_) => {
                let (tree, pat, outs) = self.fresh_tree(&ty);
                let expr = t::Expr { kind: K::Var(v), ty: ty.clone(), span: self.span };
                out.push(Stmt::Opaque { outs, pat, expr, inputs: Vec::new(), what: "", span: self.span });
                tree
            }
        };
        if let Some(env) = self.envs.last_mut() {
            env.0.insert(v, tree.clone());
        }
        Ok(tree)
    }

    fn atom(&mut self, e: &t::Expr, out: &mut Vec<Stmt>) -> DResult<Atom> {
        match self.conv(e, out)? {
            Tree::Leaf(a) => Ok(a),
            Tree::Node(_) => internal("a tuple where a tensor was expected", e.span),
        }
    }

    fn prim(&mut self, op: Op, args: Vec<Atom>, ty: &Type, out: &mut Vec<Stmt>) -> DResult<Tree> {
        self.count()?;
        let Type::Tensor(tt) = ty else {
            return internal("a tensor operation with a tuple type", self.span);
        };
        let v = self.new_leaf(tt);
        out.push(Stmt::Prim { out: v, op, args });
        Ok(Tree::Leaf(Atom::Var(v)))
    }

    /// Every leaf of `tree` through `Op::StopGradient`: new variables that
    /// activity never marks.
    fn stop_gradient(&mut self, tree: Tree, out: &mut Vec<Stmt>) -> DResult<Tree> {
        match tree {
            Tree::Leaf(a) => {
                let ty = Type::Tensor(self.aty(&a));
                self.prim(Op::StopGradient, vec![a], &ty, out)
            }
            Tree::Node(ts) => {
                let mut r = Vec::new();
                for t in ts {
                    r.push(self.stop_gradient(t, out)?);
                }
                Ok(Tree::Node(r))
            }
        }
    }

    fn conv_body(&mut self, e: &t::Expr) -> DResult<Body> {
        let mut b = Body::default();
        let tree = self.conv(e, &mut b.stmts)?;
        b.results = tree.flat();
        Ok(b)
    }

    /// Flattens `e`, appending its statements to `out`; returns the tree of its value.
    pub(super) fn conv(&mut self, e: &t::Expr, out: &mut Vec<Stmt>) -> DResult<Tree> {
        macro_rules! a {
            ($x:expr) => {
                self.atom($x, out)?
            };
        }
        match &e.kind {
            K::Var(v) => self.lookup(*v, out),
            K::Const(c) => Ok(Tree::Leaf(Atom::Const(c.clone()))),
            K::Unary(op, x) => {
                let x = a!(x);
                self.prim(Op::Unary(*op), vec![x], &e.ty, out)
            }
            K::Binary(op, x, y) => {
                let (x, y) = (a!(x), a!(y));
                self.prim(Op::Binary(*op), vec![x, y], &e.ty, out)
            }
            K::Select(c, x, y) => {
                let (c, x, y) = (a!(c), a!(x), a!(y));
                self.prim(Op::Select, vec![c, x, y], &e.ty, out)
            }
            K::Cast(x, d) => {
                let x = a!(x);
                self.prim(Op::Cast(*d), vec![x], &e.ty, out)
            }
            K::Bitcast(x, d) => {
                let x = a!(x);
                self.prim(Op::Bitcast(*d), vec![x], &e.ty, out)
            }
            K::Shard(x, axis, mesh_axis) => {
                let x = a!(x);
                self.prim(Op::Shard(*axis, *mesh_axis), vec![x], &e.ty, out)
            }
            K::MatMul(x, y) => {
                let (x, y) = (a!(x), a!(y));
                self.prim(Op::MatMul, vec![x, y], &e.ty, out)
            }
            K::DotGeneral(x, y, d) => {
                let (x, y) = (a!(x), a!(y));
                self.prim(Op::DotGeneral(d.clone()), vec![x, y], &e.ty, out)
            }
            K::Reduce(op, x, axis) => {
                let x = a!(x);
                self.prim(Op::Reduce(*op, *axis), vec![x], &e.ty, out)
            }
            K::Reshape(x, s) => {
                let x = a!(x);
                self.prim(Op::Reshape(s.clone()), vec![x], &e.ty, out)
            }
            K::ReshapeAs(x) => {
                let x = a!(x);
                self.prim(Op::ReshapeAs, vec![x], &e.ty, out)
            }
            K::Transpose(x, p) => {
                let x = a!(x);
                self.prim(Op::Transpose(p.clone()), vec![x], &e.ty, out)
            }
            K::Broadcast(x, s) => {
                let x = a!(x);
                self.prim(Op::Broadcast(s.clone()), vec![x], &e.ty, out)
            }
            K::Iota(d, n) => self.prim(Op::Iota(*d, *n), Vec::new(), &e.ty, out),
            K::Concat(xs, axis) | K::Stack(xs, axis) => {
                let mut args = Vec::new();
                for x in xs {
                    args.push(a!(x));
                }
                let op = if matches!(e.kind, K::Concat(..)) { Op::Concat(*axis) } else { Op::Stack(*axis) };
                self.prim(op, args, &e.ty, out)
            }
            K::Slice(x, specs) => {
                let x = a!(x);
                self.prim(Op::Slice(specs.clone()), vec![x], &e.ty, out)
            }
            K::Index(x, idx) => {
                let mut args = vec![a!(x)];
                for i in idx {
                    args.push(a!(i));
                }
                self.prim(Op::Index, args, &e.ty, out)
            }
            K::Update { mode, base, idx, value } => {
                let mut args = vec![a!(base)];
                for i in idx {
                    args.push(a!(i));
                }
                args.push(a!(value));
                self.prim(Op::Update(*mode), args, &e.ty, out)
            }
            K::Take(x, ids, axis) => {
                let (x, ids) = (a!(x), a!(ids));
                self.prim(Op::Take(*axis), vec![x, ids], &e.ty, out)
            }
            K::ScatterAdd(x, ids, u, axis) => {
                let (x, ids, u) = (a!(x), a!(ids), a!(u));
                self.prim(Op::ScatterAdd(*axis), vec![x, ids, u], &e.ty, out)
            }
            K::DynSlice(x, starts, sizes) => {
                let mut args = vec![a!(x)];
                for s in starts {
                    args.push(a!(s));
                }
                self.prim(Op::DynSlice(sizes.clone()), args, &e.ty, out)
            }
            K::DynUpdateSlice(x, u, starts) => {
                let mut args = vec![a!(x), a!(u)];
                for s in starts {
                    args.push(a!(s));
                }
                self.prim(Op::DynUpdateSlice, args, &e.ty, out)
            }
            K::Cumsum(x, axis, reverse) => {
                let x = a!(x);
                self.prim(Op::Cumsum(*axis, *reverse), vec![x], &e.ty, out)
            }
            K::ShapeOf(x) => {
                let x = a!(x);
                self.prim(Op::ShapeOf, vec![x], &e.ty, out)
            }
            K::StopGradient(x) => {
                let tree = self.conv(x, out)?;
                self.stop_gradient(tree, out)
            }
            K::Print(x) => {
                let tree = self.conv(x, out)?;
                out.push(Stmt::Print(tree.flat()));
                Ok(Tree::Node(Vec::new()))
            }
            K::Tuple(xs) => {
                let mut ts = Vec::new();
                for x in xs {
                    ts.push(self.conv(x, out)?);
                }
                Ok(Tree::Node(ts))
            }
            K::Block(stmts, r) => {
                for s in stmts {
                    match s {
                        t::Stmt::Let(p, v) => {
                            let tree = self.conv(v, out)?;
                            self.bind(p, tree)?;
                        }
                        t::Stmt::Expr(v) => {
                            self.conv(v, out)?;
                        }
                    }
                }
                self.conv(r, out)
            }
            K::If(c, x, y) => {
                let cond = a!(c);
                let then_ = self.conv_body(x)?;
                let else_ = self.conv_body(y)?;
                let (tree, _, outs) = self.fresh_tree(&e.ty);
                self.count()?;
                out.push(Stmt::If { outs, cond, then_, else_ });
                Ok(tree)
            }
            K::Call(fid, args) => {
                let mut trees = Vec::new();
                for x in args {
                    trees.push(self.conv(x, out)?);
                }
                let Some(f) = self.funcs.get(fid.0 as usize) else {
                    return internal("a call of an unknown function", e.span);
                };
                self.envs.push((HashMap::new(), Src::Func(fid.0 as usize)));
                for ((_, p), tree) in f.params.iter().zip(trees) {
                    self.bind(&Pattern::Var(*p), tree)?;
                }
                let r = self.conv(&f.body, out);
                self.envs.pop();
                r
            }
            K::Fori { lo, hi, init, body, unroll } => {
                let lo_a = a!(lo);
                let hi_a = a!(hi);
                match (&lo_a, &hi_a) {
                    (Atom::Const(l), Atom::Const(h)) => {
                        let (Some(l), Some(h)) = (const_int(l), const_int(h)) else {
                            return internal("non-integer loop bounds", e.span);
                        };
                        let init = self.conv(init, out)?;
                        self.static_fori(e, l, h, init, body, *unroll, out)
                    }
                    _ => self.opaque(e, "a `fori_loop` with dynamic bounds", out),
                }
            }
            K::While { init, cond, body, max_iters: Some(k) } => {
                let init = self.conv(init, out)?;
                self.bounded_while(e, init, cond, body, *k, out)
            }
            K::While { max_iters: None, .. } => self.opaque(e, "a `while_loop` without `max_iters`", out),
            K::Scan { init, xs, length, reverse, unroll, checkpoint, body } => {
                let init_t = self.conv(init, out)?;
                let init_ty = init.ty.clone();
                let (xs_t, x_ty, n) = match xs {
                    Some(x) => {
                        let tree = self.conv(x, out)?;
                        let n =
                            x.ty.leaves()
                                .first()
                                .and_then(|l| l.dims.first().cloned())
                                .unwrap_or(Dim::Known(length.unwrap_or(0)));
                        let x_ty = x.ty.map_leaves(&mut |t| TensorTy {
                            dtype: t.dtype,
                            dims: t.dims.get(1..).map(<[Dim]>::to_vec).unwrap_or_default(),
                        });
                        (Some(tree), x_ty, n)
                    }
                    None => (None, Type::unit(), Dim::Known(length.unwrap_or(0))),
                };
                let (c_tree, _, carry_p) = self.fresh_tree(&init_ty);
                let (x_tree, _, x_p) = self.fresh_tree(&x_ty);
                if let Some(p) = body.params.first() {
                    self.bind(p, c_tree)?;
                }
                if let Some(p) = body.params.get(1) {
                    self.bind(p, x_tree)?;
                }
                let mut b = Body::default();
                let r = self.conv(&body.body, &mut b.stmts)?;
                let (c_r, y_r) = match r {
                    Tree::Node(mut v) if v.len() == 2 => {
                        let y = v.pop().unwrap_or(Tree::Node(Vec::new()));
                        let c = v.pop().unwrap_or(Tree::Node(Vec::new()));
                        (c, y)
                    }
                    _ => return internal("a scan body that is not a pair", e.span),
                };
                b.results = c_r.flat();
                b.results.extend(y_r.flat());
                let (tree, _, outs) = self.fresh_tree(&e.ty);
                let nc = carry_p.len();
                let carry_outs = outs.get(..nc).map(<[VarId]>::to_vec).unwrap_or_default();
                let ys_outs = outs.get(nc..).map(<[VarId]>::to_vec).unwrap_or_default();
                let id = self.next_scan;
                self.next_scan += 1;
                self.count()?;
                out.push(Stmt::Scan(Box::new(Scan {
                    id,
                    carry_outs,
                    ys_outs,
                    init: init_t.flat(),
                    xs: xs_t.map(|t| t.flat()).unwrap_or_default(),
                    length: *length,
                    n,
                    reverse: *reverse,
                    unroll: *unroll,
                    checkpoint: *checkpoint,
                    carry_p,
                    x_p,
                    body: b,
                })));
                Ok(tree)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn static_fori(
        &mut self,
        e: &t::Expr,
        lo: i64,
        hi: i64,
        init: Tree,
        body: &t::Lambda,
        unroll: u32,
        out: &mut Vec<Stmt>,
    ) -> DResult<Tree> {
        let n = u64::try_from(hi.saturating_sub(lo)).unwrap_or(0);
        let ity = match &e.kind {
            K::Fori { lo, .. } => lo.ty.tensor().map_or(DType::I32, |t| t.dtype),
            _ => DType::I32,
        };
        let iota = self.new_leaf(&TensorTy::known(ity, &[n]));
        out.push(Stmt::Prim { out: iota, op: Op::Iota(ity, n), args: Vec::new() });
        let xs = if lo == 0 {
            iota
        } else {
            let v = self.new_leaf(&TensorTy::known(ity, &[n]));
            let lo_c = Atom::Const(scalar_const(ity, lo as f64));
            out.push(Stmt::Prim { out: v, op: Op::Binary(BinaryOp::Add), args: vec![Atom::Var(iota), lo_c] });
            v
        };
        let (c_tree, _, carry_p) = self.fresh_tree(&e.ty);
        let i_p = self.new_leaf(&TensorTy::scalar(ity));
        if let Some(p) = body.params.first() {
            self.bind(p, Tree::Leaf(Atom::Var(i_p)))?;
        }
        if let Some(p) = body.params.get(1) {
            self.bind(p, c_tree)?;
        }
        let b = self.conv_body(&body.body)?;
        let (tree, _, carry_outs) = self.fresh_tree(&e.ty);
        let id = self.next_scan;
        self.next_scan += 1;
        self.count()?;
        out.push(Stmt::Scan(Box::new(Scan {
            id,
            carry_outs,
            ys_outs: Vec::new(),
            init: init.flat(),
            xs: vec![Atom::Var(xs)],
            length: Some(n),
            n: Dim::Known(n),
            reverse: false,
            unroll,
            checkpoint: false,
            carry_p,
            x_p: vec![i_p],
            body: b,
        })));
        Ok(tree)
    }

    /// `while_loop(cond, body, init, max_iters: k)` as a scan of length k over
    /// `(carry, running)`: `running' = running && cond(carry)`,
    /// `carry' = if running' { body(carry) } else { carry }`.
    #[allow(clippy::too_many_arguments)]
    fn bounded_while(
        &mut self,
        e: &t::Expr,
        init: Tree,
        cond: &t::Lambda,
        body: &t::Lambda,
        k: u64,
        out: &mut Vec<Stmt>,
    ) -> DResult<Tree> {
        let (c_tree, _, carry_p) = self.fresh_tree(&e.ty);
        let bool_ty = TensorTy::scalar(DType::Bool);
        let go_p = self.new_leaf(&bool_ty);
        let mut b = Body::default();
        // running' = if running { cond(carry) } else { false }
        if let Some(p) = cond.params.first() {
            self.bind(p, c_tree.clone())?;
        }
        let cond_b = self.conv_body(&cond.body)?;
        let go2 = self.new_leaf(&bool_ty);
        let false_b = Body { stmts: Vec::new(), results: vec![Atom::Const(scalar_const(DType::Bool, 0.0))] };
        b.stmts.push(Stmt::If { outs: vec![go2], cond: Atom::Var(go_p), then_: cond_b, else_: false_b });
        // carry' = if running' { body(carry) } else { carry }
        if let Some(p) = body.params.first() {
            self.bind(p, c_tree.clone())?;
        }
        let body_b = self.conv_body(&body.body)?;
        let keep_b = Body { stmts: Vec::new(), results: c_tree.flat() };
        let (_, _, c2) = self.fresh_tree(&e.ty);
        b.stmts.push(Stmt::If { outs: c2.clone(), cond: Atom::Var(go2), then_: body_b, else_: keep_b });
        b.results = c2.iter().map(|v| Atom::Var(*v)).collect();
        b.results.push(Atom::Var(go2));
        let (tree, _, mut carry_outs) = self.fresh_tree(&e.ty);
        carry_outs.push(self.new_leaf(&bool_ty));
        let mut carry_p_all = carry_p;
        carry_p_all.push(go_p);
        let mut init_a = init.flat();
        init_a.push(Atom::Const(scalar_const(DType::Bool, 1.0)));
        let id = self.next_scan;
        self.next_scan += 1;
        self.count()?;
        out.push(Stmt::Scan(Box::new(Scan {
            id,
            carry_outs,
            ys_outs: Vec::new(),
            init: init_a,
            xs: Vec::new(),
            length: Some(k),
            n: Dim::Known(k),
            reverse: false,
            unroll: 1,
            checkpoint: false,
            carry_p: carry_p_all,
            x_p: Vec::new(),
            body: b,
        })));
        Ok(tree)
    }

    /// Keeps `e` whole (renamed into the output variables).
    fn opaque(&mut self, e: &t::Expr, what: &'static str, out: &mut Vec<Stmt>) -> DResult<Tree> {
        let mut bound = HashSet::new();
        let mut used = Vec::new();
        collect_vars(e, &mut bound, &mut used);
        let mut free = HashMap::new();
        let mut inputs = Vec::new();
        for v in used {
            if bound.contains(&v) || free.contains_key(&v) {
                continue;
            }
            let tree = self.lookup(v, out)?;
            for a in tree.flat() {
                if let Atom::Var(x) = a {
                    inputs.push(x);
                }
            }
            free.insert(v, self.tree_expr(&tree));
        }
        let mut renames = HashMap::new();
        let copied = self.copy_expr(e, &free, &mut renames, true)?;
        let (tree, pat, outs) = self.fresh_tree(&e.ty);
        self.count()?;
        out.push(Stmt::Opaque { outs, pat, expr: copied, inputs, what, span: e.span });
        Ok(tree)
    }

    /// Copies `e`, replacing the free variables in `free` and giving every
    /// bound variable a fresh one (typed from the source table when `from_src`).
    pub(super) fn copy_expr(
        &mut self,
        e: &t::Expr,
        free: &HashMap<VarId, t::Expr>,
        ren: &mut HashMap<VarId, VarId>,
        from_src: bool,
    ) -> DResult<t::Expr> {
        macro_rules! c {
            ($x:expr) => {
                Box::new(self.copy_expr($x, free, ren, from_src)?)
            };
        }
        macro_rules! cs {
            ($xs:expr) => {{
                let mut v = Vec::new();
                for x in $xs {
                    v.push(self.copy_expr(x, free, ren, from_src)?);
                }
                v
            }};
        }
        let kind = match &e.kind {
            K::Var(v) => {
                if let Some(n) = ren.get(v) {
                    K::Var(*n)
                } else if let Some(x) = free.get(v) {
                    return Ok(x.clone());
                } else {
                    K::Var(*v)
                }
            }
            K::Const(k) => K::Const(k.clone()),
            K::Unary(op, x) => K::Unary(*op, c!(x)),
            K::Binary(op, x, y) => K::Binary(*op, c!(x), c!(y)),
            K::Select(a, x, y) => K::Select(c!(a), c!(x), c!(y)),
            K::Cast(x, d) => K::Cast(c!(x), *d),
            K::Bitcast(x, d) => K::Bitcast(c!(x), *d),
            K::Shard(x, axis, mesh_axis) => K::Shard(c!(x), *axis, *mesh_axis),
            K::MatMul(x, y) => K::MatMul(c!(x), c!(y)),
            K::DotGeneral(x, y, d) => K::DotGeneral(c!(x), c!(y), d.clone()),
            K::Reduce(op, x, a) => K::Reduce(*op, c!(x), *a),
            K::Reshape(x, s) => K::Reshape(c!(x), s.clone()),
            K::ReshapeAs(x) => K::ReshapeAs(c!(x)),
            K::Transpose(x, p) => K::Transpose(c!(x), p.clone()),
            K::Broadcast(x, s) => K::Broadcast(c!(x), s.clone()),
            K::Iota(d, n) => K::Iota(*d, *n),
            K::Concat(xs, a) => K::Concat(cs!(xs), *a),
            K::Stack(xs, a) => K::Stack(cs!(xs), *a),
            K::Slice(x, s) => K::Slice(c!(x), s.clone()),
            K::Index(x, idx) => K::Index(c!(x), cs!(idx)),
            K::Update { mode, base, idx, value } => {
                K::Update { mode: *mode, base: c!(base), idx: cs!(idx), value: c!(value) }
            }
            K::Take(x, ids, a) => K::Take(c!(x), c!(ids), *a),
            K::ScatterAdd(x, ids, u, a) => K::ScatterAdd(c!(x), c!(ids), c!(u), *a),
            K::DynSlice(x, s, sizes) => K::DynSlice(c!(x), cs!(s), sizes.clone()),
            K::DynUpdateSlice(x, u, s) => K::DynUpdateSlice(c!(x), c!(u), cs!(s)),
            K::Cumsum(x, a, r) => K::Cumsum(c!(x), *a, *r),
            K::ShapeOf(x) => K::ShapeOf(c!(x)),
            K::Print(x) => K::Print(c!(x)),
            K::StopGradient(x) => K::StopGradient(c!(x)),
            K::Tuple(xs) => K::Tuple(cs!(xs)),
            K::Block(stmts, r) => {
                let mut out = Vec::new();
                for s in stmts {
                    out.push(match s {
                        t::Stmt::Let(p, v) => {
                            let v = self.copy_expr(v, free, ren, from_src)?;
                            t::Stmt::Let(self.copy_pat(p, ren, from_src), v)
                        }
                        t::Stmt::Expr(v) => t::Stmt::Expr(self.copy_expr(v, free, ren, from_src)?),
                    });
                }
                K::Block(out, c!(r))
            }
            K::If(a, x, y) => K::If(c!(a), c!(x), c!(y)),
            K::Call(f, args) => K::Call(*f, cs!(args)),
            K::Fori { lo, hi, init, body, unroll } => {
                let (lo, hi, init) = (c!(lo), c!(hi), c!(init));
                let body = self.copy_lambda(body, free, ren, from_src)?;
                K::Fori { lo, hi, init, body, unroll: *unroll }
            }
            K::While { init, cond, body, max_iters } => {
                let init = c!(init);
                let cond = self.copy_lambda(cond, free, ren, from_src)?;
                let body = self.copy_lambda(body, free, ren, from_src)?;
                K::While { init, cond, body, max_iters: *max_iters }
            }
            K::Scan { init, xs, length, reverse, unroll, checkpoint, body } => {
                let init = c!(init);
                let xs = match xs {
                    Some(x) => Some(c!(x)),
                    None => None,
                };
                let body = self.copy_lambda(body, free, ren, from_src)?;
                K::Scan { init, xs, length: *length, reverse: *reverse, unroll: *unroll, checkpoint: *checkpoint, body }
            }
        };
        Ok(t::Expr { kind, ty: e.ty.clone(), span: e.span })
    }

    fn copy_lambda(
        &mut self,
        l: &t::Lambda,
        free: &HashMap<VarId, t::Expr>,
        ren: &mut HashMap<VarId, VarId>,
        from_src: bool,
    ) -> DResult<t::Lambda> {
        let params = l.params.iter().map(|p| self.copy_pat(p, ren, from_src)).collect();
        let body = Box::new(self.copy_expr(&l.body, free, ren, from_src)?);
        Ok(t::Lambda { params, body })
    }

    fn copy_pat(&mut self, p: &Pattern, ren: &mut HashMap<VarId, VarId>, from_src: bool) -> Pattern {
        match p {
            Pattern::Var(v) => {
                let ty = if from_src {
                    self.src_ty(*v)
                } else {
                    self.vars.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone())
                };
                let n = self.new_var(ty);
                ren.insert(*v, n);
                Pattern::Var(n)
            }
            Pattern::Wild(t) => Pattern::Wild(t.clone()),
            Pattern::Tuple(ps) => Pattern::Tuple(ps.iter().map(|p| self.copy_pat(p, ren, from_src)).collect()),
        }
    }
}
