//! Variable sets: the variables typed expressions and flattened statements bind and read.

use super::ir::{Atom, Body, Stmt};
use crate::typed::{self as t, ExprKind as K, Pattern, VarId};
use std::collections::{HashMap, HashSet};

/// Collects the variables a typed expression binds and the ones it reads.
pub(super) fn collect_vars(e: &t::Expr, bound: &mut HashSet<VarId>, used: &mut Vec<VarId>) {
    fn pat(p: &Pattern, bound: &mut HashSet<VarId>) {
        match p {
            Pattern::Var(v) => {
                bound.insert(*v);
            }
            Pattern::Wild(_) => {}
            Pattern::Tuple(ps) => ps.iter().for_each(|p| pat(p, bound)),
        }
    }
    let lam = |l: &t::Lambda, bound: &mut HashSet<VarId>, used: &mut Vec<VarId>| {
        l.params.iter().for_each(|p| pat(p, bound));
        collect_vars(&l.body, bound, used);
    };
    match &e.kind {
        K::Var(v) => used.push(*v),
        K::Const(_) | K::Iota(..) => {}
        K::Unary(_, x)
        | K::Cast(x, _)
        | K::Bitcast(x, _)
        | K::Shard(x, ..)
        | K::Reduce(_, x, _)
        | K::Reshape(x, _)
        | K::ReshapeAs(x)
        | K::Transpose(x, _)
        | K::Broadcast(x, _)
        | K::Slice(x, _)
        | K::Cumsum(x, ..)
        | K::ShapeOf(x)
        | K::Print(x)
        | K::StopGradient(x) => collect_vars(x, bound, used),
        K::Binary(_, x, y) | K::MatMul(x, y) | K::DotGeneral(x, y, _) | K::Take(x, y, _) => {
            collect_vars(x, bound, used);
            collect_vars(y, bound, used);
        }
        K::Select(a, x, y) | K::If(a, x, y) | K::ScatterAdd(a, x, y, _) => {
            collect_vars(a, bound, used);
            collect_vars(x, bound, used);
            collect_vars(y, bound, used);
        }
        K::Concat(xs, _) | K::Stack(xs, _) | K::Tuple(xs) | K::Call(_, xs) => {
            xs.iter().for_each(|x| collect_vars(x, bound, used))
        }
        K::DynSlice(x, idx, _) => {
            collect_vars(x, bound, used);
            idx.iter().for_each(|x| collect_vars(x, bound, used));
        }
        K::DynUpdateSlice(x, u, idx) => {
            collect_vars(x, bound, used);
            collect_vars(u, bound, used);
            idx.iter().for_each(|x| collect_vars(x, bound, used));
        }
        K::Index(x, idx) => {
            collect_vars(x, bound, used);
            idx.iter().for_each(|x| collect_vars(x, bound, used));
        }
        K::Update { base, idx, value, .. } => {
            collect_vars(base, bound, used);
            idx.iter().for_each(|x| collect_vars(x, bound, used));
            collect_vars(value, bound, used);
        }
        K::Block(stmts, r) => {
            for s in stmts {
                match s {
                    t::Stmt::Let(p, v) => {
                        collect_vars(v, bound, used);
                        pat(p, bound);
                    }
                    t::Stmt::Expr(v) => collect_vars(v, bound, used),
                }
            }
            collect_vars(r, bound, used);
        }
        K::Fori { lo, hi, init, body, .. } => {
            collect_vars(lo, bound, used);
            collect_vars(hi, bound, used);
            collect_vars(init, bound, used);
            lam(body, bound, used);
        }
        K::While { init, cond, body, .. } => {
            collect_vars(init, bound, used);
            lam(cond, bound, used);
            lam(body, bound, used);
        }
        K::Scan { init, xs, body, .. } => {
            collect_vars(init, bound, used);
            if let Some(x) = xs {
                collect_vars(x, bound, used);
            }
            lam(body, bound, used);
        }
    }
}

fn atom_use(a: &Atom, uses: &mut Vec<VarId>) {
    if let Atom::Var(v) = a {
        uses.push(*v);
    }
}

/// The variables a flattened statement defines (transitively) and reads.
pub(super) fn stmt_vars(s: &Stmt, defs: &mut HashSet<VarId>, uses: &mut Vec<VarId>) {
    match s {
        Stmt::Prim { out, args, .. } => {
            defs.insert(*out);
            args.iter().for_each(|a| atom_use(a, uses));
        }
        Stmt::Print(atoms) => atoms.iter().for_each(|a| atom_use(a, uses)),
        Stmt::If { outs, cond, then_, else_ } => {
            defs.extend(outs.iter().copied());
            atom_use(cond, uses);
            body_vars(then_, defs, uses);
            body_vars(else_, defs, uses);
        }
        Stmt::Scan(sc) => {
            defs.extend(sc.carry_outs.iter().copied());
            defs.extend(sc.ys_outs.iter().copied());
            defs.extend(sc.carry_p.iter().copied());
            defs.extend(sc.x_p.iter().copied());
            sc.init.iter().for_each(|a| atom_use(a, uses));
            sc.xs.iter().for_each(|a| atom_use(a, uses));
            body_vars(&sc.body, defs, uses);
        }
        Stmt::Opaque { outs, inputs, .. } => {
            defs.extend(outs.iter().copied());
            uses.extend(inputs.iter().copied());
        }
    }
}

/// The variables a flattened block defines (transitively) and reads.
pub(super) fn body_vars(b: &Body, defs: &mut HashSet<VarId>, uses: &mut Vec<VarId>) {
    for s in &b.stmts {
        stmt_vars(s, defs, uses);
    }
    b.results.iter().for_each(|a| atom_use(a, uses));
}

/// The variables a statement binds at its own level (scans include their residual outputs).
pub(super) fn stmt_outs(s: &Stmt, residuals: &HashMap<usize, Vec<(VarId, VarId)>>, out: &mut Vec<VarId>) {
    match s {
        Stmt::Prim { out: o, .. } => out.push(*o),
        Stmt::Print(_) => {}
        Stmt::If { outs, .. } | Stmt::Opaque { outs, .. } => out.extend(outs.iter().copied()),
        Stmt::Scan(sc) => {
            out.extend(sc.carry_outs.iter().copied());
            out.extend(sc.ys_outs.iter().copied());
            if let Some(r) = residuals.get(&sc.id) {
                out.extend(r.iter().map(|(_, s)| *s));
            }
        }
    }
}

/// `p` with its variables renamed through `map` (the others kept).
pub(super) fn rename_pat(p: &Pattern, map: &HashMap<VarId, VarId>) -> Pattern {
    match p {
        Pattern::Var(v) => Pattern::Var(map.get(v).copied().unwrap_or(*v)),
        Pattern::Wild(t) => Pattern::Wild(t.clone()),
        Pattern::Tuple(ps) => Pattern::Tuple(ps.iter().map(|p| rename_pat(p, map)).collect()),
    }
}
