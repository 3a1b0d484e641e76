//! Derivatives: `grad(f)(args)` and `value_and_grad(f)(args)`, checked and
//! expanded by the reverse-mode transform in [`crate::ad`].

use super::literals::int_lit;
use super::{boxed, mk, ArgIn, Callable, Checker, Env, FnCtx};
use crate::ast::{self, ExprKind as A};
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, FuncId, VarId, VarInfo};
use crate::types::Type;

impl<'a> Checker<'a> {
    /// `grad(f, argnums: ...)(args)` and `value_and_grad(f, ...)(args)`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn grad_call(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        with_value: bool,
        gcall: &'a ast::Expr,
        gargs: &'a [ast::Arg],
        args: &'a [ast::Arg],
        span: Span,
    ) -> DResult<t::Expr> {
        let name = if with_value { "value_and_grad" } else { "grad" };
        let usage = format!("usage: {name}(f, argnums: [i, ...])(x, ...)");
        let mut fexpr = None;
        let mut argnums_e = None;
        for a in gargs {
            match &a.name {
                None if fexpr.is_none() && argnums_e.is_none() => fexpr = Some(&a.value),
                None => {
                    return Err(boxed(
                        Diagnostic::new(format!("`{name}` takes one function"), a.value.span).with_note(usage),
                    ))
                }
                Some(n) if n.name == "argnums" && argnums_e.is_none() => argnums_e = Some(&a.value),
                Some(n) => {
                    return Err(boxed(
                        Diagnostic::new(format!("`{name}` has no argument named `{}` here", n.name), n.span)
                            .with_note(usage),
                    ))
                }
            }
        }
        let Some(fexpr) = fexpr else {
            return Err(boxed(Diagnostic::new(format!("`{name}` needs a function"), gcall.span).with_note(usage)));
        };
        let Some(callable) = self.as_callable(env, fexpr) else {
            return Err(boxed(
                Diagnostic::new(format!("`{name}` needs a function: a `fn` name or a lambda"), fexpr.span)
                    .with_note(usage),
            ));
        };
        // argnums: an integer, or a list of integers (a tuple of gradients).
        let (argnums, single) = match argnums_e {
            None => (vec![0usize], true),
            Some(e) => {
                let to_idx = |x: &ast::Expr| -> DResult<usize> {
                    match int_lit(x).and_then(|v| usize::try_from(v).ok()) {
                        Some(i) => Ok(i),
                        None => err("`argnums` must be non-negative integer literals", x.span),
                    }
                };
                match &e.kind {
                    A::List(items) => {
                        if items.is_empty() {
                            return err("`argnums` must name at least one argument", e.span);
                        }
                        let mut v = Vec::new();
                        for it in items {
                            let i = to_idx(it)?;
                            if v.contains(&i) {
                                return err(format!("argument {i} appears twice in `argnums`"), it.span);
                            }
                            v.push(i);
                        }
                        (v, false)
                    }
                    _ => (vec![to_idx(e)?], true),
                }
            }
        };
        if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
            return err(format!("the arguments of `{name}(f)(...)` are positional"), named.span);
        }
        let argnums_span = argnums_e.map_or(gcall.span, |e| e.span);
        let mut values = Vec::new();
        let mut arg_spans = Vec::new();
        match &callable {
            Callable::Fn(idx) => {
                let mut checked = Vec::new();
                for a in args {
                    let value = self.expr(cx, env, &a.value)?;
                    checked.push(ArgIn { value, ast: Some(&a.value), name: None, span: a.value.span });
                    arg_spans.push(a.value.span);
                }
                let call = self.call_fn(*idx, checked, span)?;
                let t::ExprKind::Call(fid, vals) = call.kind else {
                    return err("internal error: expected a call", span);
                };
                let (fname, ptypes, pnames, result) = match self.funcs.get(fid.0 as usize) {
                    Some(f) => (
                        f.source_name.clone(),
                        f.params
                            .iter()
                            .map(|(_, v)| f.var_type(*v).cloned().unwrap_or_else(Type::unit))
                            .collect::<Vec<_>>(),
                        f.params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                        f.result.clone(),
                    ),
                    None => return err("internal error: unknown function", span),
                };
                check_grad_types(name, &fname, &result, &ptypes, &pnames, &argnums, &arg_spans, argnums_span, span)?;
                let key = (fid, argnums.clone());
                let gid = match self.grad_instances.get(&key) {
                    Some(g) => *g,
                    None => {
                        let mut vars = Vec::new();
                        let mut params = Vec::new();
                        let mut pvars = Vec::new();
                        for (n, ty) in pnames.iter().zip(&ptypes) {
                            let v = VarId(vars.len() as u32);
                            vars.push(VarInfo { name: n.clone(), ty: ty.clone() });
                            params.push((n.clone(), v));
                            pvars.push(v);
                        }
                        let call_args = pvars
                            .iter()
                            .zip(&ptypes)
                            .map(|(v, ty)| mk(t::ExprKind::Var(*v), ty.clone(), span))
                            .collect();
                        let body_in = mk(t::ExprKind::Call(fid, call_args), result.clone(), span);
                        let body = crate::ad::value_and_grad(
                            &mut vars,
                            &self.funcs,
                            &pvars,
                            &body_in,
                            &argnums,
                            single,
                            span,
                        )?;
                        let inst_name = self.funcs.get(fid.0 as usize).map_or_else(String::new, |f| f.name.clone());
                        let nums: Vec<String> = argnums.iter().map(usize::to_string).collect();
                        let gname = if single && argnums == [0] {
                            format!("value_and_grad({inst_name})")
                        } else {
                            format!("value_and_grad({inst_name}, argnums: [{}])", nums.join(", "))
                        };
                        let gid = FuncId(u32::try_from(self.funcs.len()).unwrap_or(u32::MAX));
                        let item_span = self.funcs.get(fid.0 as usize).map_or(span, |f| f.span);
                        self.funcs.push(t::Func {
                            name: gname.clone(),
                            source_name: gname,
                            params,
                            result: body.ty.clone(),
                            body,
                            vars,
                            span: item_span,
                        });
                        self.grad_instances.insert(key, gid);
                        gid
                    }
                };
                let ty = self.funcs.get(gid.0 as usize).map_or_else(Type::unit, |f| f.result.clone());
                let call = mk(t::ExprKind::Call(gid, vals), ty, span);
                Ok(project_grad(cx, call, with_value, span))
            }
            Callable::Lambda(cl) => {
                cl.check_arity(args.len(), span)?;
                for a in args {
                    values.push(self.expr(cx, env, &a.value)?);
                    arg_spans.push(a.value.span);
                }
                let types: Vec<Type> = values.iter().map(|v| v.ty.clone()).collect();
                let (pats, body) = self.apply(cx, &callable, &types, "this call", span)?;
                let pnames: Vec<String> = (0..types.len()).map(|i| format!("#{i}")).collect();
                check_grad_types(name, "lambda", &body.ty, &types, &pnames, &argnums, &arg_spans, argnums_span, span)?;
                let mut prologue = Vec::new();
                let mut avars = Vec::new();
                let mut inner = Vec::new();
                for ((v, ty), p) in values.into_iter().zip(&types).zip(pats) {
                    let a = cx.new_var("_", ty.clone());
                    prologue.push(t::Stmt::Let(t::Pattern::Var(a), v));
                    inner.push(t::Stmt::Let(p, mk(t::ExprKind::Var(a), ty.clone(), span)));
                    avars.push(a);
                }
                let bty = body.ty.clone();
                let body_in =
                    if inner.is_empty() { body } else { mk(t::ExprKind::Block(inner, Box::new(body)), bty, span) };
                let vg =
                    crate::ad::value_and_grad(&mut cx.vars, &self.funcs, &avars, &body_in, &argnums, single, span)?;
                let vg_ty = vg.ty.clone();
                let whole =
                    if prologue.is_empty() { vg } else { mk(t::ExprKind::Block(prologue, Box::new(vg)), vg_ty, span) };
                Ok(project_grad(cx, whole, with_value, span))
            }
        }
    }
}

/// `(value, grads)` as it is, or just `grads`.
fn project_grad(cx: &mut FnCtx, vg: t::Expr, with_value: bool, span: Span) -> t::Expr {
    if with_value {
        return vg;
    }
    let (vt, gt) = match &vg.ty {
        Type::Tuple(ts) if ts.len() == 2 => {
            (ts.first().cloned().unwrap_or_else(Type::unit), ts.get(1).cloned().unwrap_or_else(Type::unit))
        }
        _ => return vg,
    };
    let g = cx.new_var("_", gt.clone());
    let pat = t::Pattern::Tuple(vec![t::Pattern::Wild(vt), t::Pattern::Var(g)]);
    mk(t::ExprKind::Block(vec![t::Stmt::Let(pat, vg)], Box::new(mk(t::ExprKind::Var(g), gt.clone(), span))), gt, span)
}

/// The checks on a differentiated function: a float scalar result, float arguments.
#[allow(clippy::too_many_arguments)]
fn check_grad_types(
    name: &str,
    fname: &str,
    result: &Type,
    ptypes: &[Type],
    pnames: &[String],
    argnums: &[usize],
    arg_spans: &[Span],
    argnums_span: Span,
    span: Span,
) -> DResult<()> {
    let what = if fname == "lambda" { "the lambda".to_string() } else { format!("`{fname}`") };
    match result {
        Type::Tensor(tt) if tt.is_scalar() && tt.dtype.is_float() => {}
        other => {
            return Err(boxed(
                Diagnostic::new(
                    format!("`{name}` needs a function that returns an f32 or f64 scalar, but {what} returns {other}"),
                    span,
                )
                .with_note("reduce the result to a scalar, e.g. with `sum(...)`"),
            ))
        }
    }
    for &i in argnums {
        let Some(ty) = ptypes.get(i) else {
            return err(
                format!(
                    "`argnums` names argument {i}, but {what} takes {} argument{}",
                    ptypes.len(),
                    if ptypes.len() == 1 { "" } else { "s" }
                ),
                argnums_span,
            );
        };
        if let Some(bad) = ty.leaves().into_iter().find(|l| !l.dtype.is_float()) {
            let pname = pnames.get(i).map_or(String::new(), |n| {
                if n.starts_with('#') {
                    String::new()
                } else {
                    format!(" (`{n}`)")
                }
            });
            return Err(boxed(
                Diagnostic::new(
                    format!(
                        "cannot differentiate with respect to argument {i}{pname} of type {ty}: {bad} has no gradient"
                    ),
                    arg_spans.get(i).copied().unwrap_or(span),
                )
                .with_note("only f32 and f64 values have gradients; leave integer arguments out of `argnums`"),
            ));
        }
    }
    Ok(())
}
