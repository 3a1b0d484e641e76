//! Step 2, activity: which float variables depend on a differentiated argument.

use super::ir::{Atom, Body, Op, Stmt};
use super::{is_float, Ad};
use crate::diag::DResult;
use crate::typed::VarId;

impl Ad<'_> {
    /// Whether `a` is an active variable.
    pub(super) fn is_active(&self, a: &Atom) -> bool {
        matches!(a, Atom::Var(v) if self.active.contains(v))
    }

    fn mark(&mut self, v: VarId) -> bool {
        if is_float(&self.vty(v)) {
            self.active.insert(v)
        } else {
            false
        }
    }

    /// Marks the active variables of `b` (loop carries by fixpoint); an opaque loop with an
    /// active input and a float output is an error.
    pub(super) fn act_body(&mut self, b: &Body) -> DResult<()> {
        for s in &b.stmts {
            match s {
                Stmt::Prim { op: Op::StopGradient, .. } => {}
                Stmt::Prim { out, args, .. } => {
                    if args.iter().any(|a| self.is_active(a)) {
                        self.mark(*out);
                    }
                }
                Stmt::Print(_) => {}
                Stmt::If { outs, then_, else_, .. } => {
                    self.act_body(then_)?;
                    self.act_body(else_)?;
                    for (k, o) in outs.iter().enumerate() {
                        let act = then_.results.get(k).is_some_and(|a| self.is_active(a))
                            || else_.results.get(k).is_some_and(|a| self.is_active(a));
                        if act {
                            self.mark(*o);
                        }
                    }
                }
                Stmt::Scan(sc) => {
                    for (x, p) in sc.xs.iter().zip(&sc.x_p) {
                        if self.is_active(x) {
                            self.mark(*p);
                        }
                    }
                    for (a, p) in sc.init.iter().zip(&sc.carry_p) {
                        if self.is_active(a) {
                            self.mark(*p);
                        }
                    }
                    loop {
                        self.act_body(&sc.body)?;
                        let mut changed = false;
                        for (r, p) in sc.body.results.iter().zip(&sc.carry_p) {
                            if self.is_active(r) && self.mark(*p) {
                                changed = true;
                            }
                        }
                        if !changed {
                            break;
                        }
                    }
                    for (p, o) in sc.carry_p.iter().zip(&sc.carry_outs) {
                        if self.active.contains(p) {
                            self.mark(*o);
                        }
                    }
                    let nc = sc.carry_p.len();
                    for (r, o) in sc.body.results.iter().skip(nc).zip(&sc.ys_outs) {
                        if self.is_active(r) {
                            self.mark(*o);
                        }
                    }
                }
                Stmt::Opaque { outs, inputs, what, span, .. } => {
                    let act_in = inputs.iter().any(|v| self.active.contains(v));
                    let float_out = outs.iter().any(|v| is_float(&self.vty(*v)));
                    if act_in && float_out {
                        let hint = if what.contains("while_loop") {
                            "add `max_iters: K` (a bound on the number of iterations) to make it differentiable, or use `scan` or a `fori_loop` with static bounds"
                        } else {
                            "use literal bounds, `scan`, or a `while_loop` with `max_iters: K`"
                        };
                        return Err(Box::new(
                            crate::diag::Diagnostic::new(
                                format!("cannot differentiate through {what}: reverse mode needs a bounded loop"),
                                *span,
                            )
                            .with_label(self.span, "differentiated here")
                            .with_note(hint),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
