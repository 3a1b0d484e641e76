//! `vmap`'s control flow: `if` on a batched condition, calls of `fn`
//! items (a batched instance per pattern of batched arguments), and the
//! loops, whose carry's batching is found by a fixed point as JAX's.

use super::*;

impl Vmap<'_> {
    /// `where(c, a, b)` per leaf, `c` a batched bool scalar (`[B]`).
    fn select_tree(&mut self, c: VarId, a: t::Expr, b: t::Expr, ty: &Type) -> DResult<t::Expr> {
        let (pa, la) = self.destructure(&a.ty);
        let (pb, lb) = self.destructure(&b.ty);
        let pts: Vec<TensorTy> = ty.leaves().into_iter().cloned().collect();
        let mut out = Vec::new();
        for ((x, y), pt) in la.iter().zip(&lb).zip(&pts) {
            let cv = self.var(c);
            let cl = self.lift(cv, pt.rank());
            let k = K::Select(Box::new(cl), Box::new(self.var(*x)), Box::new(self.var(*y)));
            out.push(self.mk(k, Type::Tensor(self.bt_leaf(pt))));
        }
        let r = self.rebuild(ty, &mut out.into_iter());
        let rty = r.ty.clone();
        Ok(self.mk(K::Block(vec![Stmt::Let(pa, a), Stmt::Let(pb, b)], Box::new(r)), rty))
    }

    pub(super) fn if_(&mut self, e: &t::Expr, c: &t::Expr, a: &t::Expr, b: &t::Expr) -> DResult<(t::Expr, BT)> {
        let (cs, cb) = self.ex(c)?;
        if !cb.any() {
            let (xa, ab) = self.ex(a)?;
            let (xb, bb) = self.ex(b)?;
            let j = ab.join(&bb);
            let xa = self.fix(xa, &e.ty, &ab, &j)?;
            let xb = self.fix(xb, &e.ty, &bb, &j)?;
            let ty = self.bty(&e.ty, &j);
            return Ok((self.mk(K::If(Box::new(cs), Box::new(xa), Box::new(xb)), ty), j));
        }
        let was = self.per_element;
        self.per_element = true;
        let ra = self.ex(a);
        let rb = self.ex(b);
        self.per_element = was;
        let ((xa, _), (xb, _)) = (ra?, rb?);
        let cv = self.new_var(cs.ty.clone());
        let sel = self.select_tree(cv, xa, xb, &e.ty)?;
        let ty = sel.ty.clone();
        Ok((self.mk(K::Block(vec![Stmt::Let(Pattern::Var(cv), cs)], Box::new(sel)), ty), BT::of(&e.ty, true)))
    }

    pub(super) fn call(&mut self, e: &t::Expr, fid: FuncId, args: &[t::Expr]) -> DResult<(t::Expr, BT)> {
        let mut xs = Vec::new();
        let mut bts = Vec::new();
        for a in args {
            let (x, b) = self.ex(a)?;
            xs.push(x);
            bts.push(b);
        }
        if !bts.iter().any(BT::any) && !self.per_element {
            return Ok((self.mk(K::Call(fid, xs), e.ty.clone()), BT::of(&e.ty, false)));
        }
        let key = (fid, bts.clone(), self.per_element);
        let (gid, rbt) = match self.instances.get(&key) {
            Some(r) => r.clone(),
            None => {
                let Some(f) = self.funcs.get(fid.0 as usize).cloned() else {
                    return internal("unknown function", e.span);
                };
                let mut vars = f.vars.clone();
                let mut sub = Vmap {
                    vars: &mut vars,
                    funcs: &mut *self.funcs,
                    instances: &mut *self.instances,
                    env: HashMap::new(),
                    size: self.size,
                    span: f.span,
                    per_element: self.per_element,
                };
                let mut params = Vec::new();
                for ((n, v), bt) in f.params.iter().zip(&bts) {
                    match sub.bind(&Pattern::Var(*v), bt) {
                        Pattern::Var(nv) => params.push((n.clone(), nv)),
                        _ => return internal("parameter", e.span),
                    }
                }
                let (body, rbt) = sub.ex(&f.body)?;
                let result = sub.bty(&f.result, &rbt);
                // `vmap(f)` when every argument is batched, else which are.
                let name = if bts.iter().all(|b| b.flat().iter().all(|x| *x)) {
                    format!("vmap({})", f.name)
                } else {
                    let axes: Vec<String> = bts.iter().map(axes_text).collect();
                    format!("vmap({}, in_axes: [{}])", f.name, axes.join(", "))
                };
                let name = if self.per_element { format!("{name} per element") } else { name };
                let gid = FuncId(u32::try_from(self.funcs.len()).unwrap_or(u32::MAX));
                self.funcs.push(t::Func {
                    name: name.clone(),
                    source_name: name,
                    params,
                    result,
                    body,
                    vars,
                    span: f.span,
                });
                self.instances.insert(key, (gid, rbt.clone()));
                (gid, rbt)
            }
        };
        let ty = self.bty(&e.ty, &rbt);
        Ok((self.mk(K::Call(gid, xs), ty), rbt))
    }

    /// Finds the batching of a loop carry: batched where the initial value
    /// or the body's result is, to a fixed point. `pass` transforms the body
    /// for a carry batching and returns the result's carry batching.
    fn carry_fixpoint(&mut self, start: BT, pass: &mut dyn FnMut(&mut Self, &BT) -> DResult<BT>) -> DResult<BT> {
        let mut cb = start;
        for _ in 0..1000 {
            let rb = pass(self, &cb)?;
            let j = cb.join(&rb);
            if j == cb {
                return Ok(cb);
            }
            cb = j;
        }
        internal("the carry's batching does not settle", self.span)
    }

    pub(super) fn fori(
        &mut self,
        e: &t::Expr,
        lo: &t::Expr,
        hi: &t::Expr,
        init: &t::Expr,
        body: &Lambda,
        unroll: u32,
    ) -> DResult<(t::Expr, BT)> {
        let (los, lb) = self.ex(lo)?;
        let (his, hb) = self.ex(hi)?;
        if lb.any() || hb.any() {
            return self.fori_as_while(e, lo, hi, init, body);
        }
        let (is, ib) = self.ex(init)?;
        let (Some(ip), Some(cp)) = (body.params.first(), body.params.get(1)) else {
            return internal("fori_loop parameters", e.span);
        };
        let cty = init.ty.clone();
        let cb = self.carry_fixpoint(ib.clone(), &mut |s, cb| {
            s.bind(ip, &BT::Leaf(false));
            s.bind(cp, cb);
            Ok(s.ex(&body.body)?.1)
        })?;
        let nip = self.bind(ip, &BT::Leaf(false));
        let ncp = self.bind(cp, &cb);
        let (bs, bb) = self.ex(&body.body)?;
        let bs = self.fix(bs, &cty, &bb, &cb)?;
        let is = self.fix(is, &cty, &ib, &cb)?;
        let ty = self.bty(&e.ty, &cb);
        let k = K::Fori {
            lo: Box::new(los),
            hi: Box::new(his),
            init: Box::new(is),
            body: Lambda { params: vec![nip, ncp], body: Box::new(bs) },
            unroll,
        };
        Ok((self.mk(k, ty), cb))
    }

    /// A `fori_loop` with batched bounds: as JAX, a `while_loop` over
    /// `(i, carry)` (written per example, then batched).
    fn fori_as_while(
        &mut self,
        e: &t::Expr,
        lo: &t::Expr,
        hi: &t::Expr,
        init: &t::Expr,
        body: &Lambda,
    ) -> DResult<(t::Expr, BT)> {
        let span = e.span;
        let ity = lo.ty.clone();
        let d = tt(lo).dtype;
        let cty = init.ty.clone();
        let (Some(ip), Some(cp)) = (body.params.first(), body.params.get(1)) else {
            return internal("fori_loop parameters", span);
        };
        let hv = self.new_var(ity.clone());
        let pair = Type::Tuple(vec![ity.clone(), cty.clone()]);
        // cond: |(i, _)| i < hi
        let ci = self.new_var(ity.clone());
        let cond_body = self.b().bin(BinaryOp::Lt, self.var(ci), self.var(hv));
        let cond = Lambda {
            params: vec![Pattern::Tuple(vec![Pattern::Var(ci), Pattern::Wild(cty.clone())])],
            body: Box::new(cond_body),
        };
        // body: |(i, c)| (i + 1, body(i, c))
        let bi = self.new_var(ity.clone());
        let one = self.b().cst(d, 1.0);
        let next = self.b().bin(BinaryOp::Add, self.var(bi), one);
        let inner = t::Expr {
            kind: K::Block(vec![Stmt::Let(ip.clone(), self.var(bi))], body.body.clone()),
            ty: cty.clone(),
            span,
        };
        let bbody = self.mk(K::Tuple(vec![next, inner]), pair.clone());
        let wbody = Lambda { params: vec![Pattern::Tuple(vec![Pattern::Var(bi), cp.clone()])], body: Box::new(bbody) };
        let winit = self.mk(K::Tuple(vec![lo.clone(), init.clone()]), pair.clone());
        let w = self.mk(K::While { init: Box::new(winit), cond, body: wbody, max_iters: None }, pair.clone());
        let cv = self.new_var(cty.clone());
        let res = self.var(cv);
        let whole = t::Expr {
            kind: K::Block(
                vec![
                    Stmt::Let(Pattern::Var(hv), hi.clone()),
                    Stmt::Let(Pattern::Tuple(vec![Pattern::Wild(ity), Pattern::Var(cv)]), w),
                ],
                Box::new(res),
            ),
            ty: cty,
            span,
        };
        self.ex(&whole)
    }

    pub(super) fn while_(
        &mut self,
        e: &t::Expr,
        init: &t::Expr,
        cond: &Lambda,
        body: &Lambda,
        max_iters: Option<u64>,
    ) -> DResult<(t::Expr, BT)> {
        let (is, ib) = self.ex(init)?;
        let (Some(cp), Some(bp)) = (cond.params.first(), body.params.first()) else {
            return internal("while_loop parameters", e.span);
        };
        let cty = init.ty.clone();
        let mut cb = self.carry_fixpoint(ib.clone(), &mut |s, cb| {
            s.bind(bp, cb);
            Ok(s.ex(&body.body)?.1)
        })?;
        let ncp = self.bind(cp, &cb);
        let (cs, pb) = self.ex(&cond.body)?;
        if !pb.any() {
            let nbp = self.bind(bp, &cb);
            let (bs, bb) = self.ex(&body.body)?;
            let bs = self.fix(bs, &cty, &bb, &cb)?;
            let is = self.fix(is, &cty, &ib, &cb)?;
            let ty = self.bty(&e.ty, &cb);
            let k = K::While {
                init: Box::new(is),
                cond: Lambda { params: vec![ncp], body: Box::new(cs) },
                body: Lambda { params: vec![nbp], body: Box::new(bs) },
                max_iters,
            };
            return Ok((self.mk(k, ty), cb));
        }
        // A batched condition: every leaf of the carry is batched; the loop
        // runs while any element runs, and keeps finished elements' carry.
        cb = BT::of(&cty, true);
        let bty = self.bty(&cty, &cb);
        let was = self.per_element;
        self.per_element = true;
        let parts = (|| -> DResult<_> {
            let ncp = self.bind(cp, &cb);
            let (cs, _) = self.ex(&cond.body)?;
            let cv = self.new_var(bty.clone());
            let ncp2 = self.bind(cp, &cb);
            let (cs2, _) = self.ex(&cond.body)?;
            let nbp = self.bind(bp, &cb);
            let (bs, bb) = self.ex(&body.body)?;
            let bs = self.fix(bs, &cty, &bb, &cb)?;
            Ok((ncp, cs, cv, ncp2, cs2, nbp, bs))
        })();
        self.per_element = was;
        let (ncp, cs, cv, ncp2, cs2, nbp, bs) = parts?;
        let is = self.fix(is, &cty, &ib, &cb)?;
        let any = self.b().reduce(ReduceOp::Max, cs, None);
        let pv = self.new_var(cs2.ty.clone());
        let keep = self.select_tree(pv, bs, self.var(cv), &cty)?;
        let stmts = vec![Stmt::Let(ncp2, self.var(cv)), Stmt::Let(Pattern::Var(pv), cs2), Stmt::Let(nbp, self.var(cv))];
        let wbody = self.mk(K::Block(stmts, Box::new(keep)), bty.clone());
        let k = K::While {
            init: Box::new(is),
            cond: Lambda { params: vec![ncp], body: Box::new(any) },
            body: Lambda { params: vec![Pattern::Var(cv)], body: Box::new(wbody) },
            max_iters,
        };
        Ok((self.mk(k, bty), cb))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn scan(
        &mut self,
        e: &t::Expr,
        init: &t::Expr,
        xs: Option<&t::Expr>,
        length: Option<u64>,
        reverse: bool,
        unroll: u32,
        checkpoint: bool,
        body: &Lambda,
    ) -> DResult<(t::Expr, BT)> {
        let (is, ib) = self.ex(init)?;
        let (xs2, xb) = match xs {
            Some(x) => {
                let (y, yb) = self.ex(x)?;
                // Batched leaves of xs: [B, T, ...] → [T, B, ...].
                let y =
                    self.map_leaves(y, &x.ty, &yb, &mut |s, l, _, b| Ok(if b { s.moveaxis(l, 0, 1) } else { l }))?;
                (Some(y), yb)
            }
            None => (None, BT::Leaf(false)),
        };
        let (Some(cp), Some(xp)) = (body.params.first(), body.params.get(1)) else {
            return internal("scan parameters", e.span);
        };
        let cty = init.ty.clone();
        let (Type::Tuple(rts), Type::Tuple(ets)) = (&body.body.ty, &e.ty) else {
            return internal("scan body type", e.span);
        };
        let (Some(yty), Some(ysty)) = (rts.get(1).cloned(), ets.get(1).cloned()) else {
            return internal("scan body type", e.span);
        };
        let cb = self.carry_fixpoint(ib.clone(), &mut |s, cb| {
            s.bind(cp, cb);
            s.bind(xp, &xb);
            Ok(s.ex(&body.body)?.1.child(0))
        })?;
        let ncp = self.bind(cp, &cb);
        let nxp = self.bind(xp, &xb);
        let (bs, bb) = self.ex(&body.body)?;
        let yb = bb.child(1);
        let rtype = Type::Tuple(vec![cty.clone(), yty.clone()]);
        let want = BT::Node(vec![cb.clone(), yb.clone()]);
        let bs = self.fix(bs, &rtype, &bb, &want)?;
        let is = self.fix(is, &cty, &ib, &cb)?;
        // The scan's ys: [T, B, ...] where batched.
        let tdim = ysty.leaves().first().and_then(|l| l.dims.first().cloned()).unwrap_or(Dim::Known(0));
        let ys_scan_ty = yty.map_leaves(&mut |l| l.clone());
        let flags = yb.flat();
        let mut i = 0;
        let ys_scan_ty = ys_scan_ty.map_leaves(&mut |l| {
            let b = flags.get(i).copied().unwrap_or(false);
            i += 1;
            let mut dims = vec![tdim.clone()];
            if b {
                dims.push(Dim::Known(self.size));
            }
            dims.extend(l.dims.iter().cloned());
            TensorTy { dtype: l.dtype, dims }
        });
        let sty = Type::Tuple(vec![self.bty(&cty, &cb), ys_scan_ty.clone()]);
        let k = K::Scan {
            init: Box::new(is),
            xs: xs2.map(Box::new),
            length,
            reverse,
            unroll,
            checkpoint,
            body: Lambda { params: vec![ncp, nxp], body: Box::new(bs) },
        };
        let sc = self.mk(k, sty);
        let out_bt = BT::Node(vec![cb.clone(), yb.clone()]);
        if !yb.any() {
            return Ok((sc, out_bt));
        }
        let cv = self.new_var(self.bty(&cty, &cb));
        let yv = self.new_var(ys_scan_ty);
        let ys = self.var(yv);
        let ys = self.map_leaves(ys, &ysty, &yb, &mut |s, l, _, b| Ok(if b { s.moveaxis(l, 1, 0) } else { l }))?;
        let tup = self.mk(K::Tuple(vec![self.var(cv), ys]), self.bty(&e.ty, &out_bt));
        let ty = tup.ty.clone();
        let blk =
            K::Block(vec![Stmt::Let(Pattern::Tuple(vec![Pattern::Var(cv), Pattern::Var(yv)]), sc)], Box::new(tup));
        Ok((self.mk(blk, ty), out_bt))
    }
}
