//! Step 3, the backward pass: adjoint accumulation, and the transposition of `if` and
//! `scan` (a reverse scan over the saved residuals, or over recomputed values when checkpointed).

use super::ir::{Atom, Body, Scan, Stmt};
use super::residuals::{ResSrc, Scope, ScopeKind};
use super::vars::body_vars;
use super::{internal, Ad};
use crate::diag::DResult;
use crate::typed::{self as t, ExprKind as K, Pattern, VarId};
use crate::types::{Dim, TensorTy, Type};
use loopvm_runtime::BinaryOp;
use std::collections::{HashMap, HashSet};

impl Ad<'_> {
    fn adjoint(&self, v: VarId) -> Option<VarId> {
        self.adj.last().and_then(|m| m.get(&v)).copied()
    }

    fn accumulate(&mut self, a: &Atom, ct: VarId) {
        let Atom::Var(v) = a else { return };
        if !self.active.contains(v) {
            return;
        }
        let new = match self.adjoint(*v) {
            Some(old) => self.let_(self.bin(BinaryOp::Add, self.ve(old), self.ve(ct))),
            None => ct,
        };
        if let Some(m) = self.adj.last_mut() {
            m.insert(*v, new);
        }
    }

    /// Adds the cotangent `seeds` into the adjoints, then emits the vector-Jacobian
    /// products of the statements of `b` in reverse order.
    pub(super) fn backward(&mut self, b: &Body, seeds: Vec<(Atom, VarId)>) -> DResult<()> {
        for (a, ct) in seeds {
            self.accumulate(&a, ct);
        }
        for s in b.stmts.iter().rev() {
            match s {
                Stmt::Prim { out, op, args } => {
                    let Some(g) = self.adjoint(*out) else { continue };
                    let contribs = self.vjp(*out, op, args, g)?;
                    for (i, e) in contribs {
                        if let Some(a) = args.get(i) {
                            let v = self.let_(e);
                            self.accumulate(a, v);
                        }
                    }
                }
                Stmt::Print(_) | Stmt::Opaque { .. } => {}
                Stmt::If { outs, cond, then_, else_ } => self.bwd_if(outs, cond, then_, else_)?,
                Stmt::Scan(sc) => self.bwd_scan(sc)?,
            }
        }
        Ok(())
    }

    fn free_active(&self, bodies: &[&Body], extra_defs: &[VarId]) -> Vec<VarId> {
        let mut defs: HashSet<VarId> = extra_defs.iter().copied().collect();
        let mut uses = Vec::new();
        for b in bodies {
            body_vars(b, &mut defs, &mut uses);
        }
        let mut seen = HashSet::new();
        uses.into_iter().filter(|v| !defs.contains(v) && self.active.contains(v) && seen.insert(*v)).collect()
    }

    fn bwd_if(&mut self, outs: &[VarId], cond: &Atom, then_: &Body, else_: &Body) -> DResult<()> {
        let cts: Vec<(usize, VarId)> =
            outs.iter().enumerate().filter_map(|(k, o)| self.adjoint(*o).map(|g| (k, g))).collect();
        if cts.is_empty() {
            return Ok(());
        }
        let free = self.free_active(&[then_, else_], &[]);
        if free.is_empty() {
            return Ok(());
        }
        let mut branches = Vec::new();
        for b in [then_, else_] {
            let mut defined = HashSet::new();
            body_vars(b, &mut defined, &mut Vec::new());
            self.scopes.push(Scope { defined, kind: ScopeKind::Recompute { map: HashMap::new() } });
            self.buf.push(Vec::new());
            self.adj.push(HashMap::new());
            let seeds = cts.iter().filter_map(|(k, g)| b.results.get(*k).map(|a| (a.clone(), *g))).collect();
            self.backward(b, seeds)?;
            let mut res = Vec::new();
            for w in &free {
                res.push(match self.adjoint(*w) {
                    Some(g) => self.ve(g),
                    None => self.zeros_like(*w),
                });
            }
            self.adj.pop();
            let bwd = self.buf.pop().unwrap_or_default();
            self.buf.push(Vec::new());
            self.recompute(&b.stmts)?;
            let mut stmts = self.buf.pop().unwrap_or_default();
            self.scopes.pop();
            stmts.extend(bwd);
            let r = self.tuple(res);
            let ty = r.ty.clone();
            branches.push(t::Expr { kind: K::Block(stmts, Box::new(r)), ty, span: self.span });
        }
        let (Some(else_e), Some(then_e)) = (branches.pop(), branches.pop()) else {
            return internal("if branches", self.span);
        };
        let c = self.pv(cond);
        let ty = then_e.ty.clone();
        let outs_v: Vec<VarId> = free
            .iter()
            .map(|w| self.vars.get(w.0 as usize).map_or_else(Type::unit, |i| i.ty.clone()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|ty| self.new_var(ty))
            .collect();
        let pat = Pattern::Tuple(outs_v.iter().map(|v| Pattern::Var(*v)).collect());
        let e = t::Expr { kind: K::If(Box::new(c), Box::new(then_e), Box::new(else_e)), ty, span: self.span };
        self.emit(t::Stmt::Let(pat, e));
        for (w, o) in free.iter().zip(outs_v) {
            self.accumulate(&Atom::Var(*w), o);
        }
        Ok(())
    }

    fn bwd_scan(&mut self, sc: &Scan) -> DResult<()> {
        let nc = sc.carry_p.len();
        let carry_idx: Vec<usize> =
            (0..nc).filter(|j| sc.carry_p.get(*j).is_some_and(|p| self.active.contains(p))).collect();
        let ct_c: Vec<Option<VarId>> =
            carry_idx.iter().map(|j| sc.carry_outs.get(*j).and_then(|o| self.adjoint(*o))).collect();
        let ct_y: Vec<(usize, VarId)> =
            sc.ys_outs.iter().enumerate().filter_map(|(k, o)| self.adjoint(*o).map(|g| (k, g))).collect();
        if ct_c.iter().all(Option::is_none) && ct_y.is_empty() {
            return Ok(());
        }
        let mut body_defs: Vec<VarId> = sc.carry_p.clone();
        body_defs.extend(sc.x_p.iter().copied());
        let free = self.free_active(&[&sc.body], &body_defs);
        let x_idx: Vec<usize> =
            (0..sc.x_p.len()).filter(|i| sc.x_p.get(*i).is_some_and(|p| self.active.contains(p))).collect();
        // Initial cotangent carry (in the enclosing scope).
        let mut init_e = Vec::new();
        for (j, c) in carry_idx.iter().zip(&ct_c) {
            init_e.push(match c {
                Some(g) => self.ve(*g),
                None => match sc.carry_outs.get(*j) {
                    Some(o) => self.zeros_like(*o),
                    None => return internal("scan carry", self.span),
                },
            });
        }
        for w in &free {
            init_e.push(self.zeros_like(*w));
        }
        // The backward body.
        let mut defined: HashSet<VarId> = body_defs.iter().copied().collect();
        body_vars(&sc.body, &mut defined, &mut Vec::new());
        let kind = if sc.checkpoint {
            ScopeKind::Recompute { map: HashMap::new() }
        } else {
            let mut ys = HashMap::new();
            for (r, o) in sc.body.results.iter().skip(nc).zip(&sc.ys_outs) {
                if let Atom::Var(v) = r {
                    if !sc.carry_p.contains(v) && !sc.x_p.contains(v) {
                        ys.entry(*v).or_insert(*o);
                    }
                }
            }
            ScopeKind::Residual { x_p: sc.x_p.clone(), ys, n: sc.n.clone(), entries: Vec::new(), map: HashMap::new() }
        };
        self.scopes.push(Scope { defined, kind });
        self.buf.push(Vec::new());
        self.adj.push(HashMap::new());
        let mut carry_params = Vec::new();
        let mut seeds = Vec::new();
        for j in &carry_idx {
            let Some(p) = sc.carry_p.get(*j) else { continue };
            let cp = self.new_var(Type::Tensor(self.vty(*p)));
            carry_params.push(cp);
            if let Some(r) = sc.body.results.get(*j) {
                seeds.push((r.clone(), cp));
            }
        }
        for w in &free {
            let acc = self.new_var(Type::Tensor(self.vty(*w)));
            carry_params.push(acc);
            if let Some(m) = self.adj.last_mut() {
                m.insert(*w, acc);
            }
        }
        let mut cty_params = Vec::new();
        for (k, _) in &ct_y {
            let Some(r) = sc.body.results.get(nc + k) else { continue };
            let ty = self.aty(r);
            let p = self.new_leaf(&ty);
            cty_params.push(p);
            seeds.push((r.clone(), p));
        }
        self.backward(&sc.body, seeds)?;
        let mut carry_res = Vec::new();
        for j in &carry_idx {
            let Some(p) = sc.carry_p.get(*j) else { continue };
            carry_res.push(match self.adjoint(*p) {
                Some(g) => self.ve(g),
                None => self.zeros_like(*p),
            });
        }
        for w in &free {
            let Some(g) = self.adjoint(*w) else {
                return internal("lost accumulator", self.span);
            };
            carry_res.push(self.ve(g));
        }
        let mut ys_res = Vec::new();
        for i in &x_idx {
            let Some(p) = sc.x_p.get(*i) else { continue };
            ys_res.push(match self.adjoint(*p) {
                Some(g) => self.ve(g),
                None => self.zeros_like(*p),
            });
        }
        self.adj.pop();
        let bwd = self.buf.pop().unwrap_or_default();
        // Where the inputs of each backward iteration come from.
        let mut x_params: Vec<VarId> = Vec::new();
        let mut xs_src: Vec<Atom> = Vec::new(); // resolved in the enclosing scope after the pop
        let mut stmts = Vec::new();
        let mut residuals = Vec::new();
        if sc.checkpoint {
            for p in &sc.carry_p {
                let rp = self.use_primal(*p);
                let stacked_ty = self.vty(*p);
                let mut dims = vec![sc.n.clone()];
                dims.extend(stacked_ty.dims.iter().cloned());
                let stacked = self.new_leaf(&TensorTy { dtype: stacked_ty.dtype, dims });
                let depth = self.scopes.len().saturating_sub(1);
                for s in self.scopes.iter_mut().take(depth) {
                    s.defined.insert(stacked);
                }
                residuals.push((*p, stacked));
                x_params.push(rp);
                xs_src.push(Atom::Var(stacked));
            }
            for (i, p) in sc.x_p.iter().enumerate() {
                let rp = self.use_primal(*p);
                x_params.push(rp);
                if let Some(x) = sc.xs.get(i) {
                    xs_src.push(x.clone());
                }
            }
            self.buf.push(Vec::new());
            self.recompute(&sc.body.stmts)?;
            stmts = self.buf.pop().unwrap_or_default();
        }
        let scope = self.scopes.pop();
        if let Some(Scope { kind: ScopeKind::Residual { entries, .. }, .. }) = scope {
            for (param, src) in entries {
                x_params.push(param);
                match src {
                    ResSrc::Stack { primal, stacked } => {
                        residuals.push((primal, stacked));
                        xs_src.push(Atom::Var(stacked));
                    }
                    ResSrc::Xs(i) => match sc.xs.get(i) {
                        Some(x) => xs_src.push(x.clone()),
                        None => return internal("scan input", self.span),
                    },
                    ResSrc::Ys(y) => xs_src.push(Atom::Var(y)),
                }
            }
        }
        stmts.extend(bwd);
        self.residuals.insert(sc.id, residuals);
        let mut xs_e: Vec<t::Expr> = xs_src.iter().map(|a| self.pv(a)).collect();
        for (p, (_, g)) in cty_params.iter().zip(&ct_y) {
            x_params.push(*p);
            xs_e.push(self.ve(*g));
        }
        let (xs_opt, length) = if xs_e.is_empty() {
            match (&sc.n, sc.xs.first()) {
                (Dim::Known(n), _) => (None, Some(*n)),
                (Dim::Var(_), Some(x)) => {
                    let xe = self.pv(x);
                    let row = self.aty(x);
                    let dummy = self.new_leaf(&TensorTy {
                        dtype: row.dtype,
                        dims: row.dims.get(1..).map(<[Dim]>::to_vec).unwrap_or_default(),
                    });
                    x_params.push(dummy);
                    (Some(self.tuple(vec![xe])), sc.length)
                }
                (Dim::Var(_), None) => return internal("scan length", self.span),
            }
        } else {
            (Some(self.tuple(xs_e)), sc.length)
        };
        // Outputs.
        let out_carry: Vec<VarId> =
            carry_res.iter().map(|e| e.ty.clone()).collect::<Vec<_>>().into_iter().map(|ty| self.new_var(ty)).collect();
        let out_ys: Vec<VarId> = ys_res
            .iter()
            .map(|e| {
                let tt = Self::et(e);
                let mut dims = vec![sc.n.clone()];
                dims.extend(tt.dims.iter().cloned());
                TensorTy { dtype: tt.dtype, dims }
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|tt| self.new_leaf(&tt))
            .collect();
        let init = self.tuple(init_e);
        let ret = self.tuple(vec![self.tuple(carry_res), self.tuple(ys_res)]);
        let ret_ty = ret.ty.clone();
        let body_e = t::Expr { kind: K::Block(stmts, Box::new(ret)), ty: ret_ty, span: self.span };
        let lam = t::Lambda {
            params: vec![
                Pattern::Tuple(carry_params.iter().map(|v| Pattern::Var(*v)).collect()),
                Pattern::Tuple(x_params.iter().map(|v| Pattern::Var(*v)).collect()),
            ],
            body: Box::new(body_e),
        };
        let ys_ty = Type::Tuple(out_ys.iter().map(|v| Type::Tensor(self.vty(*v))).collect());
        let ty = Type::Tuple(vec![init.ty.clone(), ys_ty]);
        let scan = t::Expr {
            kind: K::Scan {
                init: Box::new(init),
                xs: xs_opt.map(Box::new),
                length,
                reverse: !sc.reverse,
                unroll: sc.unroll,
                checkpoint: false,
                body: lam,
            },
            ty,
            span: self.span,
        };
        let pat = Pattern::Tuple(vec![
            Pattern::Tuple(out_carry.iter().map(|v| Pattern::Var(*v)).collect()),
            Pattern::Tuple(out_ys.iter().map(|v| Pattern::Var(*v)).collect()),
        ]);
        self.emit(t::Stmt::Let(pat, scan));
        // Contributions.
        let mut oc = out_carry.iter();
        for j in &carry_idx {
            if let (Some(o), Some(a)) = (oc.next(), sc.init.get(*j)) {
                self.accumulate(a, *o);
            }
        }
        for w in &free {
            if let Some(o) = oc.next() {
                self.accumulate(&Atom::Var(*w), *o);
            }
        }
        for (i, o) in x_idx.iter().zip(&out_ys) {
            if let Some(a) = sc.xs.get(*i) {
                self.accumulate(a, *o);
            }
        }
        Ok(())
    }
}
