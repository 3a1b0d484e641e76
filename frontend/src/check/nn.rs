//! Composite builtins: `softmax`, `log_softmax`, `logsumexp`, `gelu`,
//! `stop_gradient` and `tree_map`. Each expands, at compile time, into the
//! typed IR of existing ops (written as `jax.nn` writes them), so every tier
//! runs it and `grad` differentiates it through its parts; `stop_gradient`
//! is the one new node, which lowering drops and the autodiff treats as a
//! constant.

use super::builtin_rules::BuiltinCall;
use super::literals::coerce;
use super::{boxed, mk, Callable, Checker, Env, FnCtx};
use crate::build::Build;
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, ExprKind as K, Pattern};
use crate::types::{TensorTy, Type};
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UnaryOp};

impl<'a> Checker<'a> {
    /// The float tensor argument `x` of a composite builtin (a weak literal
    /// becomes `f32`), bound to a new variable: its expression and type.
    fn float_operand(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        c: &BuiltinCall<'a>,
    ) -> DResult<(t::VarId, t::Expr, TensorTy)> {
        let name = c.name();
        let xa = c.arg(0)?;
        let x = self.expr(cx, env, xa)?;
        let x = coerce(Some(xa), x, DType::F32)?;
        let xt = self.tensor(&x, &format!("`{name}`"))?.clone();
        if !xt.dtype.is_float() {
            let d = Diagnostic::new(format!("`{name}` requires a float operand, got {xt}"), xa.span)
                .with_note("convert it with `as f32`");
            return Err(boxed(d));
        }
        let v = cx.new_var("_", x.ty.clone());
        Ok((v, x, xt))
    }

    /// `softmax(x, axis: k)` (`log_softmax` when `log`), default axis -1, as
    /// `jax.nn`: the maximum along the axis is subtracted first, behind
    /// `stop_gradient`, so inputs of ±1e30 stay finite.
    pub(super) fn check_softmax(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        c: &BuiltinCall<'a>,
        log: bool,
    ) -> DResult<t::Expr> {
        let (xv, x, xt) = self.float_operand(cx, env, c)?;
        let axis = c.axis(&xt, Some(-1))?;
        let b = Build { span: c.span };
        let var = |v: t::VarId| mk(K::Var(v), Type::Tensor(xt.clone()), c.span);
        let m = b.reduce_keep(ReduceOp::Max, var(xv), axis);
        let m = mk(K::StopGradient(Box::new(m.clone())), m.ty, c.span);
        let shifted = b.bin(BinaryOp::Sub, var(xv), m);
        let sv = cx.new_var("_", shifted.ty.clone());
        if log {
            let s = b.reduce_keep(ReduceOp::Sum, b.un(UnaryOp::Exp, var(sv)), axis);
            let r = b.bin(BinaryOp::Sub, var(sv), b.un(UnaryOp::Log, s));
            return Ok(b.block(vec![(xv, x), (sv, shifted)], r));
        }
        let e = b.un(UnaryOp::Exp, var(sv));
        let ev = cx.new_var("_", e.ty.clone());
        let r = b.bin(BinaryOp::Div, var(ev), b.reduce_keep(ReduceOp::Sum, var(ev), axis));
        Ok(b.block(vec![(xv, x), (sv, shifted), (ev, e)], r))
    }

    /// `logsumexp(x, axis: k, keepdims: b)`, over every axis by default, as
    /// `jax.nn.logsumexp`: `log(sum(exp(x - m))) + m` with `m` the maximum
    /// (0 where it is not finite) behind `stop_gradient`.
    pub(super) fn check_logsumexp(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let (xv, x, xt) = self.float_operand(cx, env, c)?;
        let axis = c.axis(&xt, None)?;
        let keepdims = c.flag("keepdims", false)?;
        let b = Build { span: c.span };
        let d = xt.dtype;
        let m = b.reduce_keep(ReduceOp::Max, mk(K::Var(xv), Type::Tensor(xt.clone()), c.span), axis);
        let mt = m.ty.clone();
        let mv = cx.new_var("_", mt.clone());
        let mvar = || mk(K::Var(mv), mt.clone(), c.span);
        let finite = b.bin(BinaryOp::Lt, b.un(UnaryOp::Abs, mvar()), b.cst(d, f64::INFINITY));
        let shift = b.sel(finite, mvar(), b.cst(d, 0.0));
        let shift = mk(K::StopGradient(Box::new(shift)), mt.clone(), c.span);
        let sv = cx.new_var("_", mt.clone());
        let svar = || mk(K::Var(sv), mt.clone(), c.span);
        let xvar = mk(K::Var(xv), Type::Tensor(xt.clone()), c.span);
        let e = b.un(UnaryOp::Exp, b.bin(BinaryOp::Sub, xvar, svar()));
        let s = if keepdims { b.reduce_keep(ReduceOp::Sum, e, axis) } else { b.reduce(ReduceOp::Sum, e, axis) };
        // Without `keepdims` the shift loses its kept axes: the maximum of a
        // size-1 axis is its one element.
        let shift_out = if keepdims { svar() } else { b.reduce(ReduceOp::Max, svar(), axis) };
        let r = b.bin(BinaryOp::Add, b.un(UnaryOp::Log, s), shift_out);
        Ok(b.block(vec![(xv, x), (mv, m), (sv, shift)], r))
    }

    /// `gelu(x, approximate: b)` as `jax.nn.gelu`: by default the tanh form
    /// `x · ½(1 + tanh(√(2/π)(x + 0.044715 x³)))`; `approximate: false` the
    /// exact `½x · erfc(-x/√2)`.
    pub(super) fn check_gelu(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let (xv, x, xt) = self.float_operand(cx, env, c)?;
        let approximate = c.flag("approximate", true)?;
        let b = Build { span: c.span };
        let d = xt.dtype;
        let xe = || mk(K::Var(xv), Type::Tensor(xt.clone()), c.span);
        let r = if approximate {
            let cube = b.bin(BinaryOp::Mul, b.bin(BinaryOp::Mul, xe(), xe()), xe());
            let poly = b.bin(BinaryOp::Add, xe(), b.bin(BinaryOp::Mul, b.cst(d, 0.044715), cube));
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let t = b.un(UnaryOp::Tanh, b.bin(BinaryOp::Mul, b.cst(d, k), poly));
            let cdf = b.bin(BinaryOp::Mul, b.cst(d, 0.5), b.bin(BinaryOp::Add, b.cst(d, 1.0), t));
            b.bin(BinaryOp::Mul, xe(), cdf)
        } else {
            let nx = b.bin(BinaryOp::Mul, b.un(UnaryOp::Neg, xe()), b.cst(d, std::f64::consts::FRAC_1_SQRT_2));
            let half_x = b.bin(BinaryOp::Mul, b.cst(d, 0.5), xe());
            b.bin(BinaryOp::Mul, half_x, b.un(UnaryOp::Erfc, nx))
        };
        Ok(b.block(vec![(xv, x)], r))
    }

    /// `stop_gradient(x)`: `x` (any value), a constant to `grad`.
    pub(super) fn check_stop_gradient(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        c: &BuiltinCall<'a>,
    ) -> DResult<t::Expr> {
        let x = self.expr(cx, env, c.arg(0)?)?;
        let ty = x.ty.clone();
        Ok(mk(K::StopGradient(Box::new(x)), ty, c.span))
    }

    /// `tree_map(f, t1, t2, ...)`: `f` applied leaf by leaf to trees (tuples,
    /// nested) of one structure, expanded at compile time; the result has
    /// their structure with `f`'s results as leaves.
    pub(super) fn check_tree_map(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let fa = c.arg(0)?;
        let Some(f) = self.as_callable(env, fa) else {
            return err("the first argument of `tree_map` must be a lambda or a function", fa.span);
        };
        let mut lets = Vec::new();
        let mut trees = Vec::new();
        let mut first: Option<Type> = None;
        for i in 1.. {
            let Some(ta) = c.opt_arg(i) else { break };
            let tv = self.expr(cx, env, ta)?;
            match &first {
                None => first = Some(tv.ty.clone()),
                Some(ft) => {
                    if let Some((path, want, got)) = tree_difference(ft, &tv.ty, String::new()) {
                        let d = Diagnostic::new(
                            format!(
                                "`tree_map`: tree {} differs from tree 1 at leaf {path}: {got} where tree 1 has {want}",
                                i
                            ),
                            ta.span,
                        );
                        return Err(boxed(d));
                    }
                }
            }
            let (pat, leaves) = fresh_tree(cx, &tv.ty);
            lets.push(t::Stmt::Let(pat, tv));
            trees.push(leaves);
        }
        let Some(ty) = first else {
            return err("`tree_map` needs at least one tree", c.span);
        };
        let mut leaf = 0usize;
        let result = self.map_leaves(cx, &f, &ty, &trees, &mut leaf, c.span)?;
        let rty = result.ty.clone();
        Ok(mk(K::Block(lets, Box::new(result)), rty, c.span))
    }

    /// The result of `f` on leaf `*leaf` onwards of `trees` (one list of leaf
    /// variables per tree), in the structure of `ty`.
    fn map_leaves(
        &mut self,
        cx: &mut FnCtx,
        f: &Callable<'a>,
        ty: &Type,
        trees: &[Vec<(t::VarId, Type)>],
        leaf: &mut usize,
        span: Span,
    ) -> DResult<t::Expr> {
        match ty {
            Type::Tensor(_) => {
                let args: Vec<(t::VarId, Type)> = trees.iter().filter_map(|t| t.get(*leaf).cloned()).collect();
                *leaf += 1;
                let types: Vec<Type> = args.iter().map(|(_, ty)| ty.clone()).collect();
                let (pats, body) = self.apply(cx, f, &types, "the function of `tree_map`", span)?;
                let stmts: Vec<t::Stmt> =
                    pats.into_iter().zip(args).map(|(p, (v, ty))| t::Stmt::Let(p, mk(K::Var(v), ty, span))).collect();
                let bty = body.ty.clone();
                Ok(if stmts.is_empty() { body } else { mk(K::Block(stmts, Box::new(body)), bty, span) })
            }
            Type::Tuple(items) => {
                let mut xs = Vec::new();
                for it in items {
                    xs.push(self.map_leaves(cx, f, it, trees, leaf, span)?);
                }
                let ty = Type::Tuple(xs.iter().map(|x| x.ty.clone()).collect());
                Ok(mk(K::Tuple(xs), ty, span))
            }
        }
    }
}

/// A pattern binding every leaf of a value of type `ty` to a new variable,
/// and those variables in leaf order.
fn fresh_tree(cx: &mut FnCtx, ty: &Type) -> (Pattern, Vec<(t::VarId, Type)>) {
    match ty {
        Type::Tensor(_) => {
            let v = cx.new_var("_", ty.clone());
            (Pattern::Var(v), vec![(v, ty.clone())])
        }
        Type::Tuple(items) => {
            let mut pats = Vec::new();
            let mut leaves = Vec::new();
            for it in items {
                let (p, l) = fresh_tree(cx, it);
                pats.push(p);
                leaves.extend(l);
            }
            (Pattern::Tuple(pats), leaves)
        }
    }
}

/// Where two trees first differ in structure: the path (`[1][0]`), what the
/// first has there and what the second has; `None` when they have one
/// structure (leaves may differ in type).
fn tree_difference(a: &Type, b: &Type, path: String) -> Option<(String, String, String)> {
    let shape = |t: &Type| match t {
        Type::Tensor(x) => format!("a tensor {x}"),
        Type::Tuple(xs) => format!("a tuple of {} elements", xs.len()),
    };
    match (a, b) {
        (Type::Tensor(_), Type::Tensor(_)) => None,
        (Type::Tuple(xs), Type::Tuple(ys)) if xs.len() == ys.len() => {
            xs.iter().zip(ys).enumerate().find_map(|(i, (x, y))| tree_difference(x, y, format!("{path}[{i}]")))
        }
        _ => Some((if path.is_empty() { "(the root)".into() } else { path }, shape(a), shape(b))),
    }
}
