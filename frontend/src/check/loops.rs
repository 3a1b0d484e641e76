//! Loop builtins: `fori_loop`, `while_loop` and `scan`, their bodies and
//! carries.

use super::builtin_rules::BuiltinCall;
use super::literals::{int_lit, unify_literals};
use super::{boxed, mk, tail_span, Callable, Checker, Env, FnCtx};
use crate::ast;
use crate::diag::{err, DResult, Diagnostic};
use crate::typed as t;
use crate::types::{Dim, TensorTy, Type};
use loopvm_runtime::DType;

impl<'a> Checker<'a> {
    /// `fori_loop(lower, upper, |i, carry| new_carry, init, unroll: k)`: integer
    /// bounds of one dtype, a body from `(i, carry)` to the carry's type.
    pub(super) fn check_fori_loop(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        call: &BuiltinCall<'a>,
    ) -> DResult<t::Expr> {
        let span = call.span;
        let (loa, hia, ba, ia) = (call.arg(0)?, call.arg(1)?, call.arg(2)?, call.arg(3)?);
        let lo = self.expr(cx, env, loa)?;
        let hi = self.expr(cx, env, hia)?;
        let (lo, hi) = unify_literals(loa, lo, hia, hi)?;
        let mut bound = None;
        for (e, a) in [(&lo, loa), (&hi, hia)] {
            match e.ty.tensor() {
                Some(tt) if tt.is_scalar() && tt.dtype.is_int() && !tt.dtype.is_unsigned() => {
                    if bound.is_some_and(|d| d != tt.dtype) {
                        return err(
                            format!("`fori_loop` bounds have different dtypes: lower {}, upper {}", lo.ty, hi.ty),
                            span,
                        );
                    }
                    bound = Some(tt.dtype);
                }
                _ => return err(format!("`fori_loop` bounds must be i32 or i64 scalars, got {}", e.ty), a.span),
            }
        }
        let d = bound.unwrap_or(DType::I32);
        let unroll = self.unroll_arg(call.named_arg("unroll"))?;
        let init = self.expr(cx, env, ia)?;
        let body = self.loop_body(env, ba, "fori_loop")?;
        let (params, b) =
            self.apply(cx, &body, &[Type::scalar(d), init.ty.clone()], "the body of `fori_loop` (i, carry)", ba.span)?;
        check_carry(&b.ty, &init.ty, ba, ia)?;
        let ty = init.ty.clone();
        Ok(mk(
            t::ExprKind::Fori {
                lo: Box::new(lo),
                hi: Box::new(hi),
                init: Box::new(init),
                body: t::Lambda { params, body: Box::new(b) },
                unroll,
            },
            ty,
            span,
        ))
    }

    /// `while_loop(|carry| keep_going, |carry| new_carry, init, max_iters: k)`:
    /// a bool scalar condition, a body from the carry to its type.
    pub(super) fn check_while_loop(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        call: &BuiltinCall<'a>,
    ) -> DResult<t::Expr> {
        let span = call.span;
        let (ca, ba, ia) = (call.arg(0)?, call.arg(1)?, call.arg(2)?);
        let init = self.expr(cx, env, ia)?;
        let cond = self.loop_body(env, ca, "while_loop")?;
        let body = self.loop_body(env, ba, "while_loop")?;
        let (cparams, c) =
            self.apply(cx, &cond, std::slice::from_ref(&init.ty), "the condition of `while_loop` (carry)", ca.span)?;
        match c.ty.tensor() {
            Some(tt) if tt.dtype == DType::Bool && tt.is_scalar() => {}
            _ => {
                return Err(boxed(
                    Diagnostic::new(
                        format!("`while_loop` condition must return a bool scalar, got {}", c.ty),
                        tail_span(ca),
                    )
                    .with_note(if c.ty.tensor().is_some_and(|t| t.dtype == DType::Bool) {
                        "select one element with an index (`c[0]`)"
                    } else {
                        "compare it, e.g. `x > 0`, to get a bool"
                    }),
                ))
            }
        }
        let (bparams, b) =
            self.apply(cx, &body, std::slice::from_ref(&init.ty), "the body of `while_loop` (carry)", ba.span)?;
        check_carry(&b.ty, &init.ty, ba, ia)?;
        let max_iters = match call.named_arg("max_iters") {
            None => None,
            Some(e) => match int_lit(e).and_then(|v| u64::try_from(v).ok()) {
                Some(k) if k <= i64::MAX as u64 => Some(k),
                _ => return err("`max_iters` must be a non-negative integer literal", e.span),
            },
        };
        let ty = init.ty.clone();
        Ok(mk(
            t::ExprKind::While {
                init: Box::new(init),
                cond: t::Lambda { params: cparams, body: Box::new(c) },
                body: t::Lambda { params: bparams, body: Box::new(b) },
                max_iters,
            },
            ty,
            span,
        ))
    }

    /// `scan(|carry, x| (new_carry, y), init, xs)`: over the leading axis of
    /// every leaf of `xs` (or `length:` steps), stacking the `y`s.
    pub(super) fn check_scan(&mut self, cx: &mut FnCtx, env: &Env<'a>, call: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = call.span;
        let (ba, ia) = (call.arg(0)?, call.arg(1)?);
        let init = self.expr(cx, env, ia)?;
        let xs = match call.opt_arg(2) {
            Some(xa) => Some((self.expr(cx, env, xa)?, xa)),
            None => None,
        };
        let length = match call.named_arg("length") {
            Some(e) => Some(self.static_uint(cx, env, e, "`length`")?),
            None => None,
        };
        let reverse = call.flag("reverse", false)?;
        let unroll = self.unroll_arg(call.named_arg("unroll"))?;
        let checkpoint = call.flag("checkpoint", false)?;
        let (x_ty, n) = match &xs {
            Some((x, xa)) => {
                let mut n: Option<Dim> = None;
                for leaf in x.ty.leaves() {
                    let Some(d0) = leaf.dims.first() else {
                        return err(
                            format!("`scan` over a scalar: every leaf of xs needs a leading axis, got {}", x.ty),
                            xa.span,
                        );
                    };
                    if let Some(prev) = &n {
                        if prev != d0 {
                            return err(format!("`scan` inputs have different lengths: {prev} and {d0}"), xa.span);
                        }
                    }
                    n = Some(d0.clone());
                }
                let Some(n) = n else {
                    return err("`scan` xs has no tensors", xa.span);
                };
                if let Some(l) = length {
                    if n != Dim::Known(l) {
                        return err(format!("`length: {l}` does not match the leading axis {n} of xs"), span);
                    }
                }
                let x_ty = x.ty.map_leaves(&mut |t| TensorTy {
                    dtype: t.dtype,
                    dims: t.dims.get(1..).map(<[Dim]>::to_vec).unwrap_or_default(),
                });
                (x_ty, n)
            }
            None => match length {
                Some(l) => (Type::unit(), Dim::Known(l)),
                None => return err("`scan` needs xs or `length:`", span),
            },
        };
        let body = self.loop_body(env, ba, "scan")?;
        let (params, b) = self.apply(cx, &body, &[init.ty.clone(), x_ty], "the body of `scan` (carry, x)", ba.span)?;
        let (c_ty, y_ty) = match &b.ty {
            Type::Tuple(v) if v.len() == 2 => {
                (v.first().cloned().unwrap_or_else(Type::unit), v.get(1).cloned().unwrap_or_else(Type::unit))
            }
            other => {
                return err(format!("the body of `scan` must return a pair (new_carry, y), got {other}"), tail_span(ba))
            }
        };
        check_carry(&c_ty, &init.ty, ba, ia)?;
        let ys_ty = y_ty.map_leaves(&mut |t| {
            let mut dims = vec![n.clone()];
            dims.extend(t.dims.iter().cloned());
            TensorTy { dtype: t.dtype, dims }
        });
        let ty = Type::Tuple(vec![init.ty.clone(), ys_ty]);
        Ok(mk(
            t::ExprKind::Scan {
                init: Box::new(init),
                xs: xs.map(|(x, _)| Box::new(x)),
                length,
                reverse,
                unroll,
                checkpoint,
                body: t::Lambda { params, body: Box::new(b) },
            },
            ty,
            span,
        ))
    }

    /// The lambda or function a loop builtin runs (its body or condition).
    fn loop_body(&self, env: &Env<'a>, e: &'a ast::Expr, what: &str) -> DResult<Callable<'a>> {
        self.as_callable(env, e).ok_or_else(|| {
            boxed(
                Diagnostic::new(format!("`{what}` needs a lambda or a function here"), e.span)
                    .with_note("for example `|i, carry| carry + 1`"),
            )
        })
    }

    /// The `unroll:` factor of a loop: a positive integer literal, 1 if not given.
    fn unroll_arg(&self, e: Option<&ast::Expr>) -> DResult<u32> {
        match e {
            None => Ok(1),
            Some(e) => match int_lit(e).and_then(|v| u32::try_from(v).ok()) {
                Some(v) if v >= 1 => Ok(v),
                _ => err("`unroll` must be a positive integer literal", e.span),
            },
        }
    }
}

/// The body's result must be exactly the carry's type.
fn check_carry(got: &Type, carry: &Type, body: &ast::Expr, init: &ast::Expr) -> DResult<()> {
    if got == carry {
        return Ok(());
    }
    let d = Diagnostic::new(format!("loop body returns {got} but the carry is {carry}"), tail_span(body))
        .with_primary(format!("this is {got}"))
        .with_label(init.span, format!("the carry's type {carry} comes from the initial value"));
    Err(boxed(d))
}
