//! Expressions: names, operators, calls of lambdas and `fn`s, blocks and
//! `let`, `if`, and list literals.

use super::literals::{coerce, default_dtype, lit, unify_literals, weak_lit};
use super::{
    boxed, broadcast_error, dtype_of, mk, tail_span, tensor_ty, unit, ArgIn, Binding, Callable, Checker, Closure, Env,
    FnCtx, MAX_DEPTH, MAX_NODES,
};
use crate::ast::{self, BinOp, ExprKind as A, LitValue, UnOp};
use crate::builtins;
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, ConstData, ConstValues};
use crate::types::{broadcast_dims, Dim, TensorTy, Type};
use loopvm_runtime::rules::{self, MatmulError};
use loopvm_runtime::{Accepts, BinaryOp, DType, UnaryOp};
use std::rc::Rc;

/// The runtime op of a binary operator (`@` has none: it is a matmul).
fn binary_op(op: BinOp) -> Option<BinaryOp> {
    Some(match op {
        BinOp::Add => BinaryOp::Add,
        BinOp::Sub => BinaryOp::Sub,
        BinOp::Mul => BinaryOp::Mul,
        BinOp::Div => BinaryOp::Div,
        BinOp::Rem => BinaryOp::Rem,
        BinOp::Pow => BinaryOp::Pow,
        BinOp::Eq => BinaryOp::Eq,
        BinOp::Ne => BinaryOp::Ne,
        BinOp::Lt => BinaryOp::Lt,
        BinOp::Le => BinaryOp::Le,
        BinOp::Gt => BinaryOp::Gt,
        BinOp::Ge => BinaryOp::Ge,
        BinOp::And | BinOp::BitAnd => BinaryOp::And,
        BinOp::Or | BinOp::BitOr => BinaryOp::Or,
        BinOp::BitXor => BinaryOp::Xor,
        BinOp::Shl => BinaryOp::Shl,
        BinOp::Shr => BinaryOp::Shr,
        BinOp::MatMul => return None,
    })
}

impl<'a> Checker<'a> {
    /// Checks an expression, within the nesting and size limits.
    pub(super) fn expr(&mut self, cx: &mut FnCtx, env: &Env<'a>, e: &'a ast::Expr) -> DResult<t::Expr> {
        cx.depth += 1;
        if cx.depth > MAX_DEPTH {
            return err(
                format!("expression nested too deeply (more than {MAX_DEPTH} levels, inlined lambdas included)"),
                e.span,
            );
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return err(format!("program too large: more than {MAX_NODES} expressions after inlining lambdas"), e.span);
        }
        let r = self.expr_inner(cx, env, e);
        cx.depth -= 1;
        r
    }

    /// Checks an expression by its kind.
    fn expr_inner(&mut self, cx: &mut FnCtx, env: &Env<'a>, e: &'a ast::Expr) -> DResult<t::Expr> {
        let span = e.span;
        match &e.kind {
            A::Lit(v, suffix) => lit(*v, suffix.unwrap_or(default_dtype(*v)), span),
            A::Name(n) => self.name(env, n, span),
            A::Str(_) => err("a string is only allowed as the subscripts of `einsum`", span),
            A::List(items) => self.list(cx, env, e, items, None),
            A::Tuple(items) => {
                let xs = items.iter().map(|x| self.expr(cx, env, x)).collect::<DResult<Vec<_>>>()?;
                let ty = Type::Tuple(xs.iter().map(|x| x.ty.clone()).collect());
                Ok(mk(t::ExprKind::Tuple(xs), ty, span))
            }
            A::Paren(x) => self.expr(cx, env, x),
            A::Unary(op, x) => {
                if let Some(v) = weak_lit(e) {
                    return lit(v, default_dtype(v), span);
                }
                let v = self.expr(cx, env, x)?;
                let what = match op {
                    UnOp::Neg => "negation",
                    UnOp::Not => "`!`",
                    UnOp::BitNot => "`~`",
                };
                let tt = self.tensor(&v, what)?;
                // `!` is logical (bools only); `~` flips every bit of an
                // integer and is `!` on bools (the row's class).
                let (uop, ok) = match op {
                    UnOp::Neg => (UnaryOp::Neg, tt.dtype != DType::Bool),
                    UnOp::Not => (UnaryOp::Not, tt.dtype == DType::Bool),
                    UnOp::BitNot => (UnaryOp::Not, UnaryOp::Not.accepts().accepts(tt.dtype)),
                };
                if !ok {
                    let what = match op {
                        UnOp::Neg => "negation needs a number".to_string(),
                        UnOp::Not => "`!` needs a bool".to_string(),
                        UnOp::BitNot => format!("`~` needs {}", UnaryOp::Not.accepts().requirement()),
                    };
                    return err(format!("{what}, got {tt}"), x.span);
                }
                let ty = v.ty.clone();
                Ok(mk(t::ExprKind::Unary(uop, Box::new(v)), ty, span))
            }
            A::Binary(op, l, r) => self.binary(cx, env, *op, l, r, span),
            A::Cast(x, d) => {
                let to = dtype_of(d)?;
                let v = self.expr(cx, env, x)?;
                let tt = self.tensor(&v, "`as`")?.clone();
                if tt.dtype == to {
                    return Ok(v);
                }
                Ok(mk(t::ExprKind::Cast(Box::new(v), to), tensor_ty(tt.with_dtype(to)), span))
            }
            A::Call(callee, args) => self.call(cx, env, callee, args, span),
            A::Index(base, items) => self.index(cx, env, base, items, span),
            A::AtUpdate { base, indices, method, args } => self.at_update(cx, env, base, indices, method, args, span),
            A::Lambda(..) => err("a lambda can only be bound with `let`, called, or passed to a loop", span),
            A::Block(stmts, result) => self.block(cx, env, stmts, result.as_deref(), span),
            A::If(c, a, b) => self.if_expr(cx, env, c, a, b, span),
        }
    }

    /// `e` as a value of `dtype` where a weak literal takes that dtype: a weak
    /// literal is range-checked in `dtype` only (`full(u32, [2],
    /// 4294967295)`), anything else is checked as usual.
    pub(super) fn expr_as(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        e: &'a ast::Expr,
        dtype: DType,
    ) -> DResult<t::Expr> {
        match weak_lit(e) {
            Some(v) => lit(v, dtype, e.span),
            None => self.expr(cx, env, e),
        }
    }

    /// The tensor type of `v`, or an error naming `what` for a tuple.
    pub(super) fn tensor<'e>(&self, v: &'e t::Expr, what: &str) -> DResult<&'e TensorTy> {
        match &v.ty {
            Type::Tensor(t) => Ok(t),
            ty => err(format!("{what} needs a tensor, got a tuple {ty}"), v.span),
        }
    }

    /// A name used as a value.
    fn name(&self, env: &Env<'a>, n: &str, span: Span) -> DResult<t::Expr> {
        match env.get(n) {
            Some(Binding::Value(v, ty)) => Ok(mk(t::ExprKind::Var(*v), ty.clone(), span)),
            Some(Binding::Lambda(_)) | Some(Binding::Fn(_)) => {
                err(format!("`{n}` is a function: call it, or pass it to a loop"), span)
            }
            None if self.fn_named(n).is_some() || builtins::lookup(n).is_some() => {
                err(format!("`{n}` is a function: call it, or pass it to a loop"), span)
            }
            None if DType::parse(n).is_some() => err(format!("the dtype `{n}` is not a value"), span),
            None => err(format!("unknown name `{n}`"), span),
        }
    }

    /// A block: its `let`s and expression statements, then its result.
    fn block(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        stmts: &'a [ast::Stmt],
        result: Option<&'a ast::Expr>,
        span: Span,
    ) -> DResult<t::Expr> {
        let mut env = env.clone();
        let mut out = Vec::new();
        for s in stmts {
            match s {
                ast::Stmt::Let { pat, ty, value, .. } => {
                    if ty.is_none() {
                        if let Some(c) = self.as_callable(&env, value) {
                            let ast::Pattern::Name(id) = pat else {
                                return err("a lambda or function must be bound to a single name", pat.span());
                            };
                            let b = match c {
                                Callable::Lambda(c) => Binding::Lambda(c),
                                Callable::Fn(i) => Binding::Fn(i),
                            };
                            env = env.bind(&id.name, b);
                            continue;
                        }
                    }
                    let want = match ty {
                        Some(te) => Some(self.resolve_type(cx, te)?),
                        None => None,
                    };
                    let mut v = match &want {
                        Some(Type::Tensor(w)) => self.expr_as(cx, &env, value, w.dtype)?,
                        _ => self.expr(cx, &env, value)?,
                    };
                    if let (Some(te), Some(want)) = (ty, want) {
                        if let Type::Tensor(w) = &want {
                            v = coerce(Some(value), v, w.dtype)?;
                        }
                        if v.ty != want {
                            let d = Diagnostic::new(
                                format!("the value has type {} but the annotation says {want}", v.ty),
                                value.span,
                            )
                            .with_label(te.span(), "annotation");
                            return Err(boxed(d));
                        }
                    }
                    let p = self.bind_pattern(cx, &mut env, pat, &v.ty)?;
                    out.push(t::Stmt::Let(p, v));
                }
                ast::Stmt::Expr(x) => {
                    let v = self.expr(cx, &env, x)?;
                    out.push(t::Stmt::Expr(v));
                }
            }
        }
        let r = match result {
            Some(r) => self.expr(cx, &env, r)?,
            None => unit(span.end_point()),
        };
        if out.is_empty() {
            return Ok(r);
        }
        let ty = r.ty.clone();
        Ok(mk(t::ExprKind::Block(out, Box::new(r)), ty, span))
    }

    /// Binds a `let` or parameter pattern to a value of type `ty`.
    fn bind_pattern(
        &mut self,
        cx: &mut FnCtx,
        env: &mut Env<'a>,
        pat: &'a ast::Pattern,
        ty: &Type,
    ) -> DResult<t::Pattern> {
        match pat {
            ast::Pattern::Name(id) => {
                let v = cx.new_var(&id.name, ty.clone());
                *env = env.bind(&id.name, Binding::Value(v, ty.clone()));
                Ok(t::Pattern::Var(v))
            }
            ast::Pattern::Wild(_) => Ok(t::Pattern::Wild(ty.clone())),
            ast::Pattern::Tuple(ps, span) => match ty {
                Type::Tuple(ts) if ts.len() == ps.len() => {
                    let mut out = Vec::new();
                    for (p, t) in ps.iter().zip(ts) {
                        out.push(self.bind_pattern(cx, env, p, t)?);
                    }
                    Ok(t::Pattern::Tuple(out))
                }
                _ => err(format!("a tuple pattern of {} elements cannot match a value of type {ty}", ps.len()), *span),
            },
        }
    }

    /// The callable an expression denotes, if it is a lambda or names one.
    pub(super) fn as_callable(&self, env: &Env<'a>, e: &'a ast::Expr) -> Option<Callable<'a>> {
        match &e.kind {
            A::Lambda(params, body) => {
                Some(Callable::Lambda(Rc::new(Closure { params, body, env: env.clone(), span: e.span })))
            }
            A::Paren(x) => self.as_callable(env, x),
            A::Name(n) => match env.get(n) {
                Some(Binding::Lambda(c)) => Some(Callable::Lambda(c.clone())),
                Some(Binding::Fn(i)) => Some(Callable::Fn(*i)),
                Some(Binding::Value(..)) => None,
                None => self.fn_named(n).map(Callable::Fn),
            },
            _ => None,
        }
    }

    /// Applies a callable to parameters of the given types: the parameter
    /// patterns and the body (for a loop body or an inlined call).
    pub(super) fn apply(
        &mut self,
        cx: &mut FnCtx,
        c: &Callable<'a>,
        types: &[Type],
        what: &str,
        at: Span,
    ) -> DResult<(Vec<t::Pattern>, t::Expr)> {
        match c {
            Callable::Lambda(cl) => {
                if cl.params.len() != types.len() {
                    return err(
                        format!(
                            "{what} takes {} parameter{} but this lambda has {}",
                            types.len(),
                            if types.len() == 1 { "" } else { "s" },
                            cl.params.len()
                        ),
                        cl.span,
                    );
                }
                let mut env = cl.env.clone();
                let mut pats = Vec::new();
                for (p, ty) in cl.params.iter().zip(types) {
                    pats.push(self.bind_pattern(cx, &mut env, p, ty)?);
                }
                let body = self.expr(cx, &env, cl.body)?;
                Ok((pats, body))
            }
            Callable::Fn(idx) => {
                let mut pats = Vec::new();
                let mut args = Vec::new();
                for ty in types {
                    let v = cx.new_var("_", ty.clone());
                    pats.push(t::Pattern::Var(v));
                    args.push(ArgIn {
                        value: mk(t::ExprKind::Var(v), ty.clone(), at),
                        ast: None,
                        name: None,
                        span: at,
                    });
                }
                let body = self.call_fn(*idx, args, at)?;
                Ok((pats, body))
            }
        }
    }

    /// A call: of a builtin, of `grad(f)`, of a `fn` or of a lambda.
    fn call(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        callee: &'a ast::Expr,
        args: &'a [ast::Arg],
        span: Span,
    ) -> DResult<t::Expr> {
        if let A::Name(n) = &callee.kind {
            match env.get(n) {
                Some(Binding::Value(_, ty)) => {
                    return err(format!("`{n}` is a value of type {ty}, not a function"), callee.span)
                }
                Some(_) => {}
                None => {
                    if self.fn_named(n).is_none() {
                        return match builtins::lookup(n) {
                            Some(info) => self.builtin(cx, env, info, args, span),
                            None => err(format!("unknown function `{n}`"), callee.span),
                        };
                    }
                }
            }
        }
        if let A::Call(inner, gargs) = &callee.kind {
            if let A::Name(n) = &inner.kind {
                if matches!(n.as_str(), "grad" | "value_and_grad") && env.get(n).is_none() && self.fn_named(n).is_none()
                {
                    return self.grad_call(cx, env, n == "value_and_grad", callee, gargs, args, span);
                }
                if n == "vmap" && env.get(n).is_none() && self.fn_named(n).is_none() {
                    return self.vmap_call(cx, env, callee, gargs, args, span);
                }
            }
        }
        let Some(c) = self.as_callable(env, callee) else {
            return err("this expression is not a function", callee.span);
        };
        match c {
            Callable::Fn(idx) => {
                let mut checked = Vec::new();
                for a in args {
                    let value = self.expr(cx, env, &a.value)?;
                    checked.push(ArgIn { value, ast: Some(&a.value), name: a.name.as_ref(), span: a.value.span });
                }
                self.call_fn(idx, checked, span)
            }
            Callable::Lambda(cl) => {
                if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
                    return err("lambdas take positional arguments only", named.span);
                }
                cl.check_arity(args.len(), span)?;
                let mut values = Vec::new();
                for a in args {
                    values.push(self.expr(cx, env, &a.value)?);
                }
                let types: Vec<Type> = values.iter().map(|v| v.ty.clone()).collect();
                let (pats, body) = self.apply(cx, &Callable::Lambda(cl), &types, "this call", span)?;
                let stmts: Vec<t::Stmt> = pats.into_iter().zip(values).map(|(p, v)| t::Stmt::Let(p, v)).collect();
                if stmts.is_empty() {
                    return Ok(body);
                }
                let ty = body.ty.clone();
                Ok(mk(t::ExprKind::Block(stmts, Box::new(body)), ty, span))
            }
        }
    }

    /// A binary operator: the literal rule, dtypes, broadcasting.
    fn binary(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        op: BinOp,
        la: &'a ast::Expr,
        ra: &'a ast::Expr,
        span: Span,
    ) -> DResult<t::Expr> {
        // A weak literal beside a typed operand is range-checked in that
        // operand's dtype only (`h ^ 2166136261` with `h: u32`).
        let typed_dtype = |e: &t::Expr| e.ty.tensor().map(|t| t.dtype);
        let (l, r) = match (weak_lit(la), weak_lit(ra)) {
            (Some(v), None) => {
                let r = self.expr(cx, env, ra)?;
                let l = match typed_dtype(&r) {
                    Some(d) => lit(v, d, la.span)?,
                    None => self.expr(cx, env, la)?,
                };
                (l, r)
            }
            (None, Some(v)) => {
                let l = self.expr(cx, env, la)?;
                let r = match typed_dtype(&l) {
                    Some(d) => lit(v, d, ra.span)?,
                    None => self.expr(cx, env, ra)?,
                };
                (l, r)
            }
            _ => {
                let l = self.expr(cx, env, la)?;
                let r = self.expr(cx, env, ra)?;
                unify_literals(la, l, ra, r)?
            }
        };
        let what = format!("`{}`", op.symbol());
        let lt = self.tensor(&l, &what)?.clone();
        let rt = self.tensor(&r, &what)?.clone();
        let Some(bop) = binary_op(op) else {
            return self.matmul(l, lt, r, rt, span);
        };
        let name = bop.as_str();
        // The dtypes come from the op's row; the texts are the checker's own.
        // `&&` and `||` are logical: bools only (their rows also take the
        // integers of `&` and `|`).
        if matches!(op, BinOp::And | BinOp::Or) {
            if lt.dtype != DType::Bool || rt.dtype != DType::Bool {
                return err(format!("`{}` needs bool operands, got lhs {lt}, rhs {rt}", op.symbol()), span);
            }
        } else {
            if lt.dtype != rt.dtype {
                let d = Diagnostic::new(format!("dtype mismatch in {name}: lhs {lt}, rhs {rt}"), span)
                    .with_label(la.span, format!("{}", lt.dtype))
                    .with_label(ra.span, format!("{}", rt.dtype))
                    .with_note(format!("convert one side with `as`, e.g. `(...) as {}`", lt.dtype));
                return Err(boxed(d));
            }
            if !bop.accepts().accepts(lt.dtype) {
                let why = if bop.accepts() == Accepts::Number {
                    "is not defined on bool".to_string()
                } else {
                    format!("needs {}", bop.accepts().operands())
                };
                return err(format!("`{}` {why}: lhs {lt}, rhs {rt}", op.symbol()), span);
            }
        }
        let dims = broadcast_dims(&lt.dims, &rt.dims).map_err(|c| broadcast_error(name, &lt, &rt, c, span))?;
        let dtype = bop.result_dtype(lt.dtype);
        Ok(mk(t::ExprKind::Binary(bop, Box::new(l), Box::new(r)), tensor_ty(TensorTy { dtype, dims }), span))
    }

    /// `a @ b`: rank-1 or rank-2 operands are one `MatMul`; an operand of
    /// rank 3 or more makes it a batched product ([`super::contract`]).
    fn matmul(&self, l: t::Expr, lt: TensorTy, r: t::Expr, rt: TensorTy, span: Span) -> DResult<t::Expr> {
        if lt.dtype != rt.dtype {
            return Err(boxed(
                Diagnostic::new(format!("dtype mismatch in matmul: lhs {lt}, rhs {rt}"), span)
                    .with_note(format!("convert one side with `as`, e.g. `(...) as {}`", lt.dtype)),
            ));
        }
        if lt.dtype == DType::Bool {
            return err(format!("matmul is not defined on bool: lhs {lt}, rhs {rt}"), span);
        }
        if lt.rank() > 2 || rt.rank() > 2 {
            return super::contract::batched_matmul(l, &lt, r, &rt, span);
        }
        let dims = match rules::matmul(&lt.dims, &rt.dims) {
            Ok(mm) => mm.dims(),
            Err(MatmulError::Rank) => {
                return err(format!("matmul needs rank-1 or rank-2 operands, got lhs {lt}, rhs {rt}"), span)
            }
            Err(MatmulError::Inner(k1, k2)) => {
                return err(
                    format!("matmul dimensions do not match: lhs {lt}, rhs {rt} (inner dims {k1} and {k2})"),
                    span,
                )
            }
        };
        Ok(mk(t::ExprKind::MatMul(Box::new(l), Box::new(r)), tensor_ty(TensorTy { dtype: lt.dtype, dims }), span))
    }

    /// `if c { a } else { b }`: a bool scalar condition, branches of one type.
    fn if_expr(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        ca: &'a ast::Expr,
        aa: &'a ast::Expr,
        ba: &'a ast::Expr,
        span: Span,
    ) -> DResult<t::Expr> {
        let c = self.expr(cx, env, ca)?;
        match c.ty.tensor() {
            Some(tt) if tt.dtype == DType::Bool && tt.is_scalar() => {}
            _ => return err(format!("`if` condition must be a bool scalar, got {}", c.ty), ca.span),
        }
        let a = self.expr(cx, env, aa)?;
        let b = self.expr(cx, env, ba)?;
        // The literal rule applies one way only: two literals of different
        // kinds (`1` and `2.5`) are a type error, as in `lax.cond`.
        let (a, b) =
            if weak_lit(aa).is_some() != weak_lit(ba).is_some() { unify_literals(aa, a, ba, b)? } else { (a, b) };
        if a.ty != b.ty {
            let d = Diagnostic::new(
                format!("if branches have different types: then {}, else {}", a.ty, b.ty),
                tail_span(ba),
            )
            .with_primary(format!("this is {}", b.ty))
            .with_label(tail_span(aa), format!("this is {}", a.ty));
            return Err(boxed(d));
        }
        let ty = a.ty.clone();
        Ok(mk(t::ExprKind::If(Box::new(c), Box::new(a), Box::new(b)), ty, span))
    }

    /// A list literal `[a, b, ...]`: a constant when every element is, else a stack.
    fn list(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        whole: &'a ast::Expr,
        items: &'a [ast::Expr],
        hint: Option<DType>,
    ) -> DResult<t::Expr> {
        let span = whole.span;
        if items.is_empty() {
            return err("an empty list has no dtype or shape; use `zeros(f32, [0])`", span);
        }
        // A nest of untyped literals with a float anywhere is a float tensor.
        let hint = hint.or_else(|| if nest_has_float(whole) && nest_all_weak(whole) { Some(DType::F32) } else { None });
        let mut vals = Vec::new();
        for x in items {
            let v = match &x.kind {
                A::List(inner) => self.list(cx, env, x, inner, hint)?,
                _ => self.expr(cx, env, x)?,
            };
            vals.push(v);
        }
        let common = items
            .iter()
            .zip(&vals)
            .find(|(a, _)| weak_lit(a).is_none())
            .and_then(|(_, v)| v.ty.tensor().map(|t| t.dtype))
            .or(hint)
            .or_else(|| {
                let any_float = items.iter().any(|a| matches!(weak_lit(a), Some(LitValue::Float(_))));
                Some(if any_float { DType::F32 } else { DType::I32 })
            });
        let mut out = Vec::new();
        for (a, v) in items.iter().zip(vals) {
            out.push(match common {
                Some(d) => coerce(Some(a), v, d)?,
                None => v,
            });
        }
        let first = out.first().map(|v| v.ty.clone()).unwrap_or_else(Type::unit);
        let Type::Tensor(ft) = &first else {
            return err(format!("list elements must be tensors, got a tuple {first}"), span);
        };
        for (a, v) in items.iter().zip(&out) {
            if v.ty != first {
                return err(
                    format!("list elements have different types: {first} and {} (lists must not be ragged)", v.ty),
                    a.span,
                );
            }
        }
        let n = out.len() as u64;
        let mut dims = vec![Dim::Known(n)];
        dims.extend(ft.dims.iter().cloned());
        let ty = tensor_ty(TensorTy { dtype: ft.dtype, dims });
        if let Some(c) = fold_stack(&out) {
            return Ok(mk(t::ExprKind::Const(c), ty, span));
        }
        Ok(mk(t::ExprKind::Stack(out, 0), ty, span))
    }
}

/// Whether a nest of lists contains an untyped float literal.
fn nest_has_float(e: &ast::Expr) -> bool {
    match &e.kind {
        A::List(xs) => xs.iter().any(nest_has_float),
        _ => matches!(weak_lit(e), Some(LitValue::Float(_))),
    }
}

/// Whether every leaf of a nest of lists is an untyped numeric literal.
fn nest_all_weak(e: &ast::Expr) -> bool {
    match &e.kind {
        A::List(xs) => xs.iter().all(nest_all_weak),
        _ => weak_lit(e).is_some(),
    }
}

/// Folds a stack of constants of one type into one constant.
pub(super) fn fold_stack(items: &[t::Expr]) -> Option<ConstData> {
    let mut dtype = None;
    let mut shape = None;
    let mut values: Option<ConstValues> = None;
    for it in items {
        let t::ExprKind::Const(c) = &it.kind else { return None };
        dtype = Some(c.dtype);
        shape = Some(c.shape.clone());
        match (&mut values, &c.values) {
            (None, v) => values = Some(v.clone()),
            (Some(ConstValues::Bool(a)), ConstValues::Bool(b)) => a.extend_from_slice(b),
            (Some(ConstValues::Int(a)), ConstValues::Int(b)) => a.extend_from_slice(b),
            (Some(ConstValues::Float(a)), ConstValues::Float(b)) => a.extend_from_slice(b),
            _ => return None,
        }
    }
    let mut s = vec![items.len() as u64];
    s.extend(shape?);
    Some(ConstData { dtype: dtype?, shape: s, values: values? })
}
