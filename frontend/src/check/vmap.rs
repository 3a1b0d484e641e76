//! Batching: `vmap(f, in_axes: [...], out_axes: k)(args)`, checked here and
//! expanded by the transform in [`crate::vmap`].

use super::literals::int_lit;
use super::{boxed, mk, Checker, Env, FnCtx};
use crate::ast::{self, ExprKind as A};
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, Pattern, Stmt};
use crate::types::{Dim, TensorTy, Type};
use crate::vmap::{Vmap, BT};
use std::collections::HashMap;

const USAGE: &str = "usage: vmap(f, in_axes: [0, none, ...], out_axes: 0)(x, ...)";

/// An axis specification: `none`, an axis, or one per element of a tuple.
#[derive(Clone, Debug)]
enum Ax {
    None,
    At(i64, Span),
    Tuple(Vec<Ax>, Span),
}

fn parse_ax(e: &ast::Expr, what: &str) -> DResult<Ax> {
    if let Some(i) = int_lit(e) {
        return match i64::try_from(i) {
            Ok(k) => Ok(Ax::At(k, e.span)),
            Err(_) => err(format!("`{what}`: axis {i} is out of range"), e.span),
        };
    }
    match &e.kind {
        A::Name(n) if n == "none" => Ok(Ax::None),
        A::Paren(x) => parse_ax(x, what),
        A::Tuple(xs) => Ok(Ax::Tuple(xs.iter().map(|x| parse_ax(x, what)).collect::<DResult<_>>()?, e.span)),
        _ => Err(boxed(
            Diagnostic::new(format!("`{what}` entries must be integer literals, `none`, or tuples of them"), e.span)
                .with_note(USAGE),
        )),
    }
}

/// The axis of every leaf of a value of type `ty` under `ax` (`None`: unmapped).
fn leaf_axes(ax: &Ax, ty: &Type, what: &str, extra: i64, span: Span) -> DResult<Vec<Option<(usize, Span)>>> {
    match (ax, ty) {
        (Ax::None, _) => Ok(vec![None; ty.num_leaves()]),
        (Ax::At(k, sp), _) => {
            let mut out = Vec::new();
            for l in ty.leaves() {
                let r = l.rank() as i64 + extra;
                let a = if *k < 0 { k + r } else { *k };
                if a < 0 || a >= r {
                    return Err(boxed(
                        Diagnostic::new(format!("`{what}`: axis {k} is out of range for {l} (rank {r})"), *sp)
                            .with_label(span, "this value"),
                    ));
                }
                out.push(Some((a as usize, *sp)));
            }
            Ok(out)
        }
        (Ax::Tuple(xs, _), Type::Tuple(ts)) if xs.len() == ts.len() => {
            let mut out = Vec::new();
            for (x, t) in xs.iter().zip(ts) {
                out.extend(leaf_axes(x, t, what, extra, span)?);
            }
            Ok(out)
        }
        (Ax::Tuple(xs, sp), _) => Err(boxed(
            Diagnostic::new(format!("`{what}`: a tuple of {} axes for a value of type {ty}", xs.len()), *sp)
                .with_label(span, "this value"),
        )),
    }
}

/// `ty` with axis `axes[i]` of leaf `i` removed (the per-example type).
fn remove_axes(ty: &Type, axes: &[Option<(usize, Span)>]) -> Type {
    let mut i = 0;
    ty.map_leaves(&mut |l| {
        let a = axes.get(i).copied().flatten();
        i += 1;
        match a {
            Some((k, _)) => {
                let mut dims = l.dims.clone();
                if k < dims.len() {
                    dims.remove(k);
                }
                TensorTy { dtype: l.dtype, dims }
            }
            None => l.clone(),
        }
    })
}

/// The batching of a value whose leaves are mapped at `axes`.
fn bt_from(ty: &Type, axes: &mut std::slice::Iter<'_, Option<(usize, Span)>>) -> BT {
    match ty {
        Type::Tensor(_) => BT::Leaf(axes.next().copied().flatten().is_some()),
        Type::Tuple(ts) => BT::Node(ts.iter().map(|t| bt_from(t, axes)).collect()),
    }
}

impl<'a> Checker<'a> {
    /// `vmap(f, in_axes: ..., out_axes: ...)(args)`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn vmap_call(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        vcall: &'a ast::Expr,
        vargs: &'a [ast::Arg],
        args: &'a [ast::Arg],
        span: Span,
    ) -> DResult<t::Expr> {
        let mut fexpr = None;
        let mut in_e = None;
        let mut out_e = None;
        for a in vargs {
            match &a.name {
                None if fexpr.is_none() => fexpr = Some(&a.value),
                None => return Err(boxed(Diagnostic::new("`vmap` takes one function", a.value.span).with_note(USAGE))),
                Some(n) if n.name == "in_axes" && in_e.is_none() => in_e = Some(&a.value),
                Some(n) if n.name == "out_axes" && out_e.is_none() => out_e = Some(&a.value),
                Some(n) => {
                    return Err(boxed(
                        Diagnostic::new(format!("`vmap` has no argument named `{}` here", n.name), n.span)
                            .with_note(USAGE),
                    ))
                }
            }
        }
        let Some(fexpr) = fexpr else {
            return Err(boxed(Diagnostic::new("`vmap` needs a function", vcall.span).with_note(USAGE)));
        };
        let Some(callable) = self.as_callable(env, fexpr) else {
            return Err(boxed(
                Diagnostic::new("`vmap` needs a function: a `fn` name or a lambda", fexpr.span).with_note(USAGE),
            ));
        };
        if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
            return err("the arguments of `vmap(f)(...)` are positional", named.span);
        }
        // in_axes: one entry per argument, or one for all.
        let in_axes: Vec<Ax> = match in_e {
            None => vec![Ax::At(0, vcall.span); args.len()],
            Some(e) => match &e.kind {
                A::List(items) => {
                    if items.len() != args.len() {
                        return Err(boxed(
                            Diagnostic::new(
                                format!(
                                    "`in_axes` has {} entr{} but `vmap(f)` is called with {} argument{}",
                                    items.len(),
                                    if items.len() == 1 { "y" } else { "ies" },
                                    args.len(),
                                    if args.len() == 1 { "" } else { "s" }
                                ),
                                e.span,
                            )
                            .with_note(USAGE),
                        ));
                    }
                    items.iter().map(|x| parse_ax(x, "in_axes")).collect::<DResult<_>>()?
                }
                _ => vec![parse_ax(e, "in_axes")?; args.len()],
            },
        };
        let out_ax = match out_e {
            None => Ax::At(0, vcall.span),
            Some(e) => parse_ax(e, "out_axes")?,
        };
        // The arguments, their mapped axes and the batch size.
        let mut values = Vec::new();
        let mut per_types = Vec::new();
        let mut axes_all = Vec::new();
        let mut size: Option<(u64, usize, Span)> = None;
        let arg_name = |i: usize, a: &ast::Expr| match &a.kind {
            A::Name(n) => format!("argument {i} (`{n}`)"),
            _ => format!("argument {i}"),
        };
        for (i, (a, ax)) in args.iter().zip(&in_axes).enumerate() {
            let v = self.expr(cx, env, &a.value)?;
            let axes = leaf_axes(ax, &v.ty, "in_axes", 0, a.value.span)?;
            for (l, ax) in v.ty.leaves().iter().zip(&axes) {
                let Some((k, _)) = ax else { continue };
                let d = l.dims.get(*k).cloned().unwrap_or(Dim::Known(0));
                let Dim::Known(n) = d else {
                    return Err(boxed(
                        Diagnostic::new(
                            format!(
                                "vmap: {} is mapped over axis {k} of {l}, whose size `{d}` is not static",
                                arg_name(i, &a.value)
                            ),
                            a.value.span,
                        )
                        .with_note("vmap needs a static batch size"),
                    ));
                };
                match size {
                    None => size = Some((n, i, a.value.span)),
                    Some((m, j, sp)) if m != n => {
                        let first = args.get(j).map_or(String::new(), |x| arg_name(j, &x.value));
                        return Err(boxed(
                            Diagnostic::new(
                                format!(
                                    "vmap: mapped sizes differ: {first} has size {m}, {} has size {n} on axis {k}",
                                    arg_name(i, &a.value)
                                ),
                                a.value.span,
                            )
                            .with_label(sp, format!("size {m} here")),
                        ));
                    }
                    Some(_) => {}
                }
            }
            per_types.push(remove_axes(&v.ty, &axes));
            values.push(v);
            axes_all.push(axes);
        }
        let Some((b, _, _)) = size else {
            return Err(boxed(
                Diagnostic::new("vmap: no argument is mapped (every `in_axes` entry is `none`)", span).with_note(USAGE),
            ));
        };
        let (pats, body) = self.apply(cx, &callable, &per_types, "this call", span)?;
        let mut instances = std::mem::take(&mut self.vmap_instances);
        let mut vm = Vmap {
            vars: &mut cx.vars,
            funcs: &mut self.funcs,
            instances: &mut instances,
            env: HashMap::new(),
            size: b,
            span,
            per_element: false,
        };
        let r = (|| -> DResult<t::Expr> {
            let mut prologue = Vec::new();
            let mut inner = Vec::new();
            for (((v, axes), pty), p) in values.into_iter().zip(&axes_all).zip(&per_types).zip(pats) {
                let bt = bt_from(pty, &mut axes.iter());
                let vty = v.ty.clone();
                // Every mapped axis to the front.
                let ax0: Vec<Option<usize>> = axes.iter().map(|a| a.map(|(k, _)| k)).collect();
                let mut li = 0;
                let moved = vm.map_leaves(v, &vty, &bt, &mut |s, x, _, _| {
                    let k = ax0.get(li).copied().flatten();
                    li += 1;
                    Ok(match k {
                        Some(k) => s.moveaxis(x, k, 0),
                        None => x,
                    })
                })?;
                let bty = vm.bty(pty, &bt);
                let av = vm.new_var(bty.clone());
                prologue.push(Stmt::Let(Pattern::Var(av), moved));
                let pv = vm.new_var(pty.clone());
                vm.env.insert(pv, (av, bt));
                inner.push(Stmt::Let(p, mk(t::ExprKind::Var(pv), pty.clone(), span)));
            }
            let bty = body.ty.clone();
            let body_in = mk(t::ExprKind::Block(inner, Box::new(body)), bty.clone(), span);
            let (r, rb) = vm.ex(&body_in)?;
            // out_axes.
            let oaxes = leaf_axes(&out_ax, &bty, "out_axes", 1, span).map_err(|mut d| {
                d.message = format!("{} (the result of `vmap(f)`)", d.message);
                d
            })?;
            let flags = rb.flat();
            for (fl, ax) in flags.iter().zip(&oaxes) {
                if *fl && ax.is_none() {
                    return err(
                        "vmap: `out_axes` is `none` for a result that depends on the mapped arguments",
                        out_e.map_or(span, |e| e.span),
                    );
                }
            }
            let mut li = 0;
            let out = vm.map_leaves(r, &bty, &rb, &mut |s, x, pt, b| {
                let ax = oaxes.get(li).copied().flatten();
                li += 1;
                let Some((k, _)) = ax else { return Ok(x) };
                let x = if b { x } else { s.bcast(x)? };
                let k = k.min(pt.rank());
                Ok(s.moveaxis(x, 0, k))
            })?;
            let ty = out.ty.clone();
            Ok(mk(t::ExprKind::Block(prologue, Box::new(out)), ty, span))
        })();
        self.vmap_instances = instances;
        r
    }
}
