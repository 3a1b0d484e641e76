//! Step 4, forward emission: the flattened primal program emitted again as typed IR, each
//! scan augmented with the residual outputs the backward pass asked for.

use super::ir::{Atom, Body, Op, Stmt};
use super::vars::rename_pat;
use super::{internal, Ad};
use crate::diag::DResult;
use crate::typed::{self as t, ExprKind as K, Pattern, VarId};
use crate::types::{Dim, TensorTy, Type};
use std::collections::HashMap;

/// How `emit_stmt` names variables: as themselves, or through the scopes (recomputation).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Mode {
    Primal,
    Recompute,
}

impl Ad<'_> {
    /// Emits the flattened statements `stmts` as typed IR (see `emit_stmt`).
    pub(super) fn emit_forward(&mut self, stmts: &[Stmt], mode: Mode) -> DResult<()> {
        for s in stmts {
            self.emit_stmt(s, mode)?;
        }
        Ok(())
    }

    fn r(&mut self, v: VarId, mode: Mode) -> VarId {
        match mode {
            Mode::Primal => v,
            Mode::Recompute => self.use_primal(v),
        }
    }

    fn ra(&mut self, a: &Atom, mode: Mode) -> t::Expr {
        match a {
            Atom::Var(v) => {
                let x = self.r(*v, mode);
                self.ve(x)
            }
            Atom::Const(_) => self.ae(a),
        }
    }

    fn emit_body(&mut self, b: &Body, extra: &[VarId], mode: Mode) -> DResult<(Vec<t::Stmt>, Vec<t::Expr>)> {
        self.buf.push(Vec::new());
        self.emit_forward(&b.stmts, mode)?;
        let mut res: Vec<t::Expr> = b.results.iter().map(|a| self.ra(a, mode)).collect();
        for v in extra {
            let x = self.r(*v, mode);
            res.push(self.ve(x));
        }
        Ok((self.buf.pop().unwrap_or_default(), res))
    }

    /// Emits one flattened statement as typed IR: the primal program (`Mode::Primal`,
    /// scans with their residual outputs) or a recomputation inside backward code
    /// (`Mode::Recompute`, variables renamed through the scopes).
    pub(super) fn emit_stmt(&mut self, s: &Stmt, mode: Mode) -> DResult<()> {
        match s {
            Stmt::Prim { out, op, args } => {
                let args: Vec<t::Expr> = args.iter().map(|a| self.ra(a, mode)).collect();
                let o = self.r(*out, mode);
                let e = self.prim_expr(op, args, self.vty(o))?;
                self.emit(t::Stmt::Let(Pattern::Var(o), e));
            }
            Stmt::Print(atoms) => {
                if mode == Mode::Primal {
                    let xs = atoms.iter().map(|a| self.ae(a)).collect();
                    let x = self.tuple(xs);
                    self.emit(t::Stmt::Expr(t::Expr {
                        kind: K::Print(Box::new(x)),
                        ty: Type::unit(),
                        span: self.span,
                    }));
                }
            }
            Stmt::If { outs, cond, then_, else_ } => {
                let c = self.ra(cond, mode);
                let (ts, tr) = self.emit_body(then_, &[], mode)?;
                let (es, er) = self.emit_body(else_, &[], mode)?;
                let outs: Vec<VarId> = outs.iter().map(|v| self.r(*v, mode)).collect();
                let a = self.block(ts, tr);
                let b = self.block(es, er);
                let ty = a.ty.clone();
                let e = t::Expr { kind: K::If(Box::new(c), Box::new(a), Box::new(b)), ty, span: self.span };
                self.emit(t::Stmt::Let(Pattern::Tuple(outs.into_iter().map(Pattern::Var).collect()), e));
            }
            Stmt::Scan(sc) => {
                let res = self.residuals.get(&sc.id).cloned().unwrap_or_default();
                let init: Vec<t::Expr> = sc.init.iter().map(|a| self.ra(a, mode)).collect();
                let xs: Vec<t::Expr> = sc.xs.iter().map(|a| self.ra(a, mode)).collect();
                let cp: Vec<VarId> = sc.carry_p.iter().map(|v| self.r(*v, mode)).collect();
                let xp: Vec<VarId> = sc.x_p.iter().map(|v| self.r(*v, mode)).collect();
                let extra: Vec<VarId> = res.iter().map(|(p, _)| *p).collect();
                let (stmts, mut results) = self.emit_body(&sc.body, &extra, mode)?;
                let nc = sc.carry_p.len();
                let ys_r = results.split_off(nc.min(results.len()));
                let ret = self.tuple(vec![self.tuple(results), self.tuple(ys_r)]);
                let body = self.block(stmts, vec![ret]);
                let mut outs_c: Vec<VarId> = sc.carry_outs.iter().map(|v| self.r(*v, mode)).collect();
                outs_c.truncate(nc);
                let mut outs_y: Vec<VarId> = sc.ys_outs.iter().map(|v| self.r(*v, mode)).collect();
                for (_, st) in &res {
                    let x = self.r(*st, mode);
                    outs_y.push(x);
                }
                let init = self.tuple(init);
                let ys_ty = Type::Tuple(outs_y.iter().map(|v| Type::Tensor(self.vty(*v))).collect());
                let ty = Type::Tuple(vec![init.ty.clone(), ys_ty]);
                let (xs_opt, length) = if xs.is_empty() {
                    match sc.n {
                        Dim::Known(n) => (None, Some(n)),
                        Dim::Var(_) => return internal("scan without inputs of symbolic length", self.span),
                    }
                } else {
                    (Some(Box::new(self.tuple(xs))), sc.length)
                };
                let lam = t::Lambda {
                    params: vec![
                        Pattern::Tuple(cp.into_iter().map(Pattern::Var).collect()),
                        Pattern::Tuple(xp.into_iter().map(Pattern::Var).collect()),
                    ],
                    body: Box::new(body),
                };
                let e = t::Expr {
                    kind: K::Scan {
                        init: Box::new(init),
                        xs: xs_opt,
                        length,
                        reverse: sc.reverse,
                        unroll: sc.unroll,
                        checkpoint: false,
                        body: lam,
                    },
                    ty,
                    span: self.span,
                };
                let pat = Pattern::Tuple(vec![
                    Pattern::Tuple(outs_c.into_iter().map(Pattern::Var).collect()),
                    Pattern::Tuple(outs_y.into_iter().map(Pattern::Var).collect()),
                ]);
                self.emit(t::Stmt::Let(pat, e));
            }
            Stmt::Opaque { outs, pat, expr, inputs, .. } => match mode {
                Mode::Primal => self.emit(t::Stmt::Let(pat.clone(), expr.clone())),
                Mode::Recompute => {
                    let mut free = HashMap::new();
                    for v in inputs {
                        let x = self.use_primal(*v);
                        free.insert(*v, self.ve(x));
                    }
                    let mut ren = HashMap::new();
                    let e = self.copy_expr(expr, &free, &mut ren, false)?;
                    let mut map = HashMap::new();
                    for v in outs {
                        let x = self.use_primal(*v);
                        map.insert(*v, x);
                    }
                    let p = rename_pat(pat, &map);
                    self.emit(t::Stmt::Let(p, e));
                }
            },
        }
        Ok(())
    }

    fn block(&self, stmts: Vec<t::Stmt>, results: Vec<t::Expr>) -> t::Expr {
        let r = if results.len() == 1 {
            results.into_iter().next().unwrap_or_else(|| self.tuple(Vec::new()))
        } else {
            self.tuple(results)
        };
        let r = match &r.ty {
            Type::Tensor(_) => self.tuple(vec![r]),
            Type::Tuple(_) => r,
        };
        if stmts.is_empty() {
            return r;
        }
        let ty = r.ty.clone();
        t::Expr { kind: K::Block(stmts, Box::new(r)), ty, span: self.span }
    }

    fn prim_expr(&self, op: &Op, args: Vec<t::Expr>, ty: TensorTy) -> DResult<t::Expr> {
        let mut it = args.into_iter();
        let mut next = || it.next().map(Box::new);
        let bad = || internal::<t::Expr>("operand count", self.span);
        let kind = match op {
            Op::Unary(u) => match next() {
                Some(a) => K::Unary(*u, a),
                None => return bad(),
            },
            Op::Binary(b) => match (next(), next()) {
                (Some(a), Some(c)) => K::Binary(*b, a, c),
                _ => return bad(),
            },
            Op::Select => match (next(), next(), next()) {
                (Some(c), Some(a), Some(b)) => K::Select(c, a, b),
                _ => return bad(),
            },
            Op::Cast(d) => match next() {
                Some(a) => K::Cast(a, *d),
                None => return bad(),
            },
            Op::Bitcast(d) => match next() {
                Some(a) => K::Bitcast(a, *d),
                None => return bad(),
            },
            Op::Shard(axis, mesh_axis) => match next() {
                Some(a) => K::Shard(a, *axis, *mesh_axis),
                None => return bad(),
            },
            Op::MatMul => match (next(), next()) {
                (Some(a), Some(b)) => K::MatMul(a, b),
                _ => return bad(),
            },
            Op::DotGeneral(d) => match (next(), next()) {
                (Some(a), Some(b)) => K::DotGeneral(a, b, d.clone()),
                _ => return bad(),
            },
            Op::Reduce(r, ax) => match next() {
                Some(a) => K::Reduce(*r, a, *ax),
                None => return bad(),
            },
            Op::Reshape(s) => match next() {
                Some(a) => K::Reshape(a, s.clone()),
                None => return bad(),
            },
            Op::ReshapeAs => match next() {
                Some(a) => K::ReshapeAs(a),
                None => return bad(),
            },
            Op::Transpose(p) => match next() {
                Some(a) => K::Transpose(a, p.clone()),
                None => return bad(),
            },
            Op::Broadcast(s) => match next() {
                Some(a) => K::Broadcast(a, s.clone()),
                None => return bad(),
            },
            Op::Iota(d, n) => K::Iota(*d, *n),
            Op::Concat(ax) => K::Concat(std::iter::from_fn(|| next().map(|b| *b)).collect(), *ax),
            Op::Stack(ax) => K::Stack(std::iter::from_fn(|| next().map(|b| *b)).collect(), *ax),
            Op::Slice(s) => match next() {
                Some(a) => K::Slice(a, s.clone()),
                None => return bad(),
            },
            Op::Index => match next() {
                Some(a) => K::Index(a, std::iter::from_fn(|| next().map(|b| *b)).collect()),
                None => return bad(),
            },
            Op::Update(mode) => {
                let Some(base) = next() else { return bad() };
                let mut rest: Vec<t::Expr> = std::iter::from_fn(|| next().map(|b| *b)).collect();
                let Some(value) = rest.pop() else { return bad() };
                K::Update { mode: *mode, base, idx: rest, value: Box::new(value) }
            }
            Op::Take(ax) => match (next(), next()) {
                (Some(a), Some(ids)) => K::Take(a, ids, *ax),
                _ => return bad(),
            },
            Op::ScatterAdd(ax) => match (next(), next(), next()) {
                (Some(a), Some(ids), Some(u)) => K::ScatterAdd(a, ids, u, *ax),
                _ => return bad(),
            },
            Op::DynSlice(sizes) => match next() {
                Some(a) => K::DynSlice(a, std::iter::from_fn(|| next().map(|b| *b)).collect(), sizes.clone()),
                None => return bad(),
            },
            Op::DynUpdateSlice => match (next(), next()) {
                (Some(a), Some(u)) => K::DynUpdateSlice(a, u, std::iter::from_fn(|| next().map(|b| *b)).collect()),
                _ => return bad(),
            },
            Op::Cumsum(ax, rev) => match next() {
                Some(a) => K::Cumsum(a, *ax, *rev),
                None => return bad(),
            },
            Op::ShapeOf => match next() {
                Some(a) => K::ShapeOf(a),
                None => return bad(),
            },
            Op::StopGradient => match next() {
                Some(a) => K::StopGradient(a),
                None => return bad(),
            },
        };
        Ok(self.mk(kind, ty))
    }
}
