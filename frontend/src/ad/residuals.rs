//! Primal values seen from the backward code: a value defined inside a scan body becomes a
//! residual the forward scan saves, or, in a checkpointed scan or an `if` branch, is
//! recomputed at the start of the backward body.

use super::forward::Mode;
use super::ir::{Atom, Stmt};
use super::vars::{stmt_outs, stmt_vars};
use super::{internal, Ad};
use crate::diag::DResult;
use crate::typed::{self as t, VarId};
use crate::types::{Dim, TensorTy, Type};
use std::collections::{HashMap, HashSet};

/// Where a residual that a scan's backward body reads comes from.
pub(super) enum ResSrc {
    /// The forward scan stacks `primal` into `stacked`.
    Stack { primal: VarId, stacked: VarId },
    /// The i-th scanned input, passed again.
    Xs(usize),
    /// Already stacked by the forward scan as one of its `ys`.
    Ys(VarId),
}

/// What a scope does with the primal values defined in it.
pub(super) enum ScopeKind {
    /// A scan body whose values the forward pass saves.
    Residual {
        x_p: Vec<VarId>,
        /// Body results that are `ys`, and the stacked output of each.
        ys: HashMap<VarId, VarId>,
        n: Dim,
        entries: Vec<(VarId, ResSrc)>,
        map: HashMap<VarId, VarId>,
    },
    /// A region whose values the backward pass recomputes.
    Recompute { map: HashMap<VarId, VarId> },
}

/// A region of primal code (a scan body or an `if` branch) whose values backward code may name.
pub(super) struct Scope {
    pub(super) defined: HashSet<VarId>,
    pub(super) kind: ScopeKind,
}

impl Ad<'_> {
    /// The variable that holds primal value `v` where backward code is being emitted.
    pub(super) fn use_primal(&mut self, v: VarId) -> VarId {
        let Some(i) = self.scopes.iter().rposition(|s| s.defined.contains(&v)) else {
            return v;
        };
        let ty = self.vars.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone());
        enum Need {
            Have(VarId),
            Recompute,
            Residual(Option<usize>, Option<VarId>, Dim),
        }
        let need = match self.scopes.get(i).map(|s| &s.kind) {
            Some(ScopeKind::Recompute { map }) => match map.get(&v) {
                Some(x) => Need::Have(*x),
                None => Need::Recompute,
            },
            Some(ScopeKind::Residual { map, x_p, ys, n, .. }) => match map.get(&v) {
                Some(x) => Need::Have(*x),
                None => Need::Residual(x_p.iter().position(|x| *x == v), ys.get(&v).copied(), n.clone()),
            },
            None => return v,
        };
        match need {
            Need::Have(x) => x,
            Need::Recompute => {
                let x = self.new_var(ty);
                if let Some(ScopeKind::Recompute { map }) = self.scopes.get_mut(i).map(|s| &mut s.kind) {
                    map.insert(v, x);
                }
                x
            }
            Need::Residual(xi, yo, n) => {
                let param = self.new_var(ty.clone());
                let src = match (xi, yo) {
                    (Some(k), _) => ResSrc::Xs(k),
                    (None, Some(y)) => ResSrc::Ys(y),
                    (None, None) => {
                        let stacked_ty = ty.map_leaves(&mut |t| {
                            let mut dims = vec![n.clone()];
                            dims.extend(t.dims.iter().cloned());
                            TensorTy { dtype: t.dtype, dims }
                        });
                        let stacked = self.new_var(stacked_ty);
                        for s in self.scopes.iter_mut().take(i) {
                            s.defined.insert(stacked);
                        }
                        ResSrc::Stack { primal: v, stacked }
                    }
                };
                if let Some(ScopeKind::Residual { map, entries, .. }) = self.scopes.get_mut(i).map(|s| &mut s.kind) {
                    map.insert(v, param);
                    entries.push((param, src));
                }
                param
            }
        }
    }

    /// A primal operand as an expression in the backward code.
    pub(super) fn pv(&mut self, a: &Atom) -> t::Expr {
        match a {
            Atom::Var(v) => {
                let p = self.use_primal(*v);
                self.ve(p)
            }
            Atom::Const(_) => self.ae(a),
        }
    }

    /// Emits the statements of the innermost (recompute) scope that its backward code needs.
    pub(super) fn recompute(&mut self, stmts: &[Stmt]) -> DResult<()> {
        let mut needed: HashSet<VarId> = match self.scopes.last().map(|s| &s.kind) {
            Some(ScopeKind::Recompute { map }) => map.keys().copied().collect(),
            _ => return internal("recompute outside a recompute scope", self.span),
        };
        let mut keep = vec![false; stmts.len()];
        for (i, s) in stmts.iter().enumerate().rev() {
            let mut outs = Vec::new();
            stmt_outs(s, &self.residuals, &mut outs);
            if outs.iter().any(|v| needed.contains(v)) {
                if let Some(k) = keep.get_mut(i) {
                    *k = true;
                }
                let mut defs = HashSet::new();
                let mut uses = Vec::new();
                stmt_vars(s, &mut defs, &mut uses);
                needed.extend(uses);
            }
        }
        let kept: Vec<&Stmt> = stmts.iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| s).collect();
        for s in kept {
            self.emit_stmt(s, Mode::Recompute)?;
        }
        Ok(())
    }
}
