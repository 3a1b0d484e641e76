//! Functions and their instances: checking each `fn` once per binding of its
//! shape variables, resolving written types, and calls of `fn`s.

use super::literals::coerce;
use super::{boxed, dtype_of, mk, tail_span, tensor_ty, ArgIn, Binding, Checker, Env, FnCtx};
use crate::ast;
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, FuncId};
use crate::types::{Dim, TensorTy, Type};
use loopvm_runtime::DType;
use std::collections::BTreeMap;

impl<'a> Checker<'a> {
    /// The `fn` item `idx`: of the program, or of the standard library after it.
    fn item(&self, idx: usize) -> DResult<&'a ast::FnItem> {
        let n = self.prog.fns.len();
        let item = match idx.checked_sub(n) {
            None => self.prog.fns.get(idx),
            Some(i) => self.prelude.get(i),
        };
        item.ok_or_else(|| boxed(Diagnostic::new("internal error: bad function index", Span::default())))
    }

    /// `true` while a function of the standard library is being checked.
    fn in_prelude(&self) -> bool {
        self.stack.last().is_some_and(|&i| i >= self.prog.fns.len())
    }

    /// The `fn` item called `name` as the code being checked sees it: the
    /// program's own, or the standard library's inside the standard library.
    pub(super) fn fn_named(&self, name: &str) -> Option<usize> {
        if self.in_prelude() {
            return self.prelude.iter().position(|f| f.name.name == name).map(|i| i + self.prog.fns.len());
        }
        self.fn_by_name.get(name).copied()
    }

    /// Calls the standard library's function `name` (a builtin's expansion).
    pub(super) fn call_std(&mut self, name: &str, args: Vec<t::Expr>, span: Span) -> DResult<t::Expr> {
        let Some(i) = self.prelude.iter().position(|f| f.name.name == name) else {
            return err(format!("internal error: the standard library has no `{name}`"), span);
        };
        let args = args.into_iter().map(|value| ArgIn { value, ast: None, name: None, span }).collect();
        self.call_fn(i + self.prog.fns.len(), args, span)
    }

    /// Instantiates function `idx` with its shape variables left symbolic.
    pub(super) fn instantiate_symbolic(&mut self, idx: usize) -> DResult<FuncId> {
        let item = self.item(idx)?;
        let mut bindings = BTreeMap::new();
        fn collect(te: &ast::TypeExpr, out: &mut BTreeMap<String, Dim>) {
            match te {
                ast::TypeExpr::Tensor { dims, .. } => {
                    for d in dims {
                        if let ast::DimExpr::Var(v) = d {
                            out.insert(v.name.clone(), Dim::Var(v.name.clone()));
                        }
                    }
                }
                ast::TypeExpr::Tuple(ts, _) => ts.iter().for_each(|t| collect(t, out)),
            }
        }
        for p in &item.params {
            collect(&p.ty, &mut bindings);
        }
        let cx = FnCtx { vars: Vec::new(), shapes: bindings.clone(), depth: 0 };
        let mut types = Vec::new();
        for p in &item.params {
            types.push(self.resolve_type(&cx, &p.ty)?);
        }
        if let Some(&id) = self.instances.get(&(idx, types.clone())) {
            return Ok(id);
        }
        self.instantiate(idx, bindings, types, true)
    }

    /// Checks function `idx` under `bindings`; `types` are its parameter types.
    fn instantiate(
        &mut self,
        idx: usize,
        bindings: BTreeMap<String, Dim>,
        types: Vec<Type>,
        symbolic: bool,
    ) -> DResult<FuncId> {
        let item = self.item(idx)?;
        self.stack.push(idx);
        let mut cx = FnCtx { vars: Vec::new(), shapes: bindings.clone(), depth: 0 };
        let mut env = Env::default();
        let mut params = Vec::new();
        for (i, p) in item.params.iter().enumerate() {
            if item.params.iter().take(i).any(|q| q.name.name == p.name.name) {
                return err(format!("parameter `{}` is declared twice", p.name.name), p.name.span);
            }
            let ty = types.get(i).cloned().unwrap_or_else(Type::unit);
            let v = cx.new_var(&p.name.name, ty.clone());
            env = env.bind(&p.name.name, Binding::Value(v, ty));
            params.push((p.name.name.clone(), v));
        }
        let ret = match &item.ret {
            Some(te) => Some(self.resolve_type(&cx, te).map_err(|d| {
                if d.message.starts_with("unknown shape variable") {
                    boxed(Diagnostic::new(
                        format!(
                            "{} in the result type of `{}`: it is not bound by any parameter",
                            d.message, item.name.name
                        ),
                        d.span,
                    ))
                } else {
                    d
                }
            })?),
            None => None,
        };
        let mut body = self.expr(&mut cx, &env, &item.body)?;
        let result = match ret {
            Some(want) => {
                if let Type::Tensor(w) = &want {
                    body = coerce(Some(&item.body), body, w.dtype)?;
                }
                if body.ty != want {
                    let mut d = Diagnostic::new(
                        format!("function `{}` returns {want} but its body has type {}", item.name.name, body.ty),
                        tail_span(&item.body),
                    )
                    .with_primary(format!("this has type {}", body.ty));
                    if let Some(te) = &item.ret {
                        d = d.with_label(te.span(), "the declared result type");
                    }
                    return Err(boxed(d));
                }
                want
            }
            None => body.ty.clone(),
        };
        self.stack.pop();
        let name = if idx >= self.prog.fns.len() {
            format!("std.{}", item.name.name)
        } else if symbolic || bindings.is_empty() {
            item.name.name.clone()
        } else {
            let parts: Vec<String> = bindings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{}<{}>", item.name.name, parts.join(", "))
        };
        let id = FuncId(u32::try_from(self.funcs.len()).unwrap_or(u32::MAX));
        self.funcs.push(t::Func {
            name,
            source_name: item.name.name.clone(),
            params,
            result,
            body,
            vars: cx.vars,
            span: item.span,
        });
        self.instances.insert((idx, types), id);
        if let Some(f) = self.instantiated.get_mut(idx) {
            *f = true;
        }
        Ok(id)
    }

    /// A written type, with shape variables replaced by their bindings.
    pub(super) fn resolve_type(&self, cx: &FnCtx, te: &ast::TypeExpr) -> DResult<Type> {
        match te {
            ast::TypeExpr::Tensor { dtype, dims, .. } => {
                let d = dtype_of(dtype)?;
                let mut out = Vec::new();
                for dim in dims {
                    out.push(match dim {
                        ast::DimExpr::Known(n, _) => Dim::Known(*n),
                        ast::DimExpr::Var(v) => match cx.shapes.get(&v.name) {
                            Some(b) => b.clone(),
                            None => return err(format!("unknown shape variable `{}`", v.name), v.span),
                        },
                    });
                }
                Ok(tensor_ty(TensorTy { dtype: d, dims: out }))
            }
            ast::TypeExpr::Tuple(ts, _) => {
                Ok(Type::Tuple(ts.iter().map(|t| self.resolve_type(cx, t)).collect::<DResult<_>>()?))
            }
        }
    }

    /// Matches an argument type against a parameter's written type, binding shape variables.
    fn unify(&self, te: &ast::TypeExpr, ty: &Type, b: &mut BTreeMap<String, Dim>) -> Result<(), String> {
        match (te, ty) {
            (ast::TypeExpr::Tensor { dtype, dims, .. }, Type::Tensor(t)) => {
                let d = DType::parse(&dtype.name).ok_or_else(|| format!("unknown dtype `{}`", dtype.name))?;
                if d != t.dtype || dims.len() != t.dims.len() {
                    return Err(String::new());
                }
                for (de, got) in dims.iter().zip(&t.dims) {
                    match de {
                        ast::DimExpr::Known(n, _) => {
                            if *got != Dim::Known(*n) {
                                return Err(String::new());
                            }
                        }
                        ast::DimExpr::Var(v) => match b.get(&v.name) {
                            Some(prev) if prev != got => {
                                return Err(format!(
                                    "shape variable `{}` is {prev} from an earlier argument but {got} here",
                                    v.name
                                ));
                            }
                            Some(_) => {}
                            None => {
                                b.insert(v.name.clone(), got.clone());
                            }
                        },
                    }
                }
                Ok(())
            }
            (ast::TypeExpr::Tuple(ts, _), Type::Tuple(xs)) if ts.len() == xs.len() => {
                for (te, x) in ts.iter().zip(xs) {
                    self.unify(te, x, b)?;
                }
                Ok(())
            }
            _ => Err(String::new()),
        }
    }

    /// Calls function `idx` with checked arguments.
    pub(super) fn call_fn(&mut self, idx: usize, args: Vec<ArgIn<'a>>, span: Span) -> DResult<t::Expr> {
        let item = self.item(idx)?;
        let fname = &item.name.name;
        let n = item.params.len();
        let npos = args.iter().filter(|a| a.name.is_none()).count();
        let mut slots: Vec<Option<ArgIn<'a>>> = (0..n).map(|_| None).collect();
        let arity = |got: usize| {
            boxed(
                Diagnostic::new(
                    format!(
                        "function `{fname}` takes {n} argument{} but {got} {} given",
                        if n == 1 { "" } else { "s" },
                        if got == 1 { "was" } else { "were" }
                    ),
                    span,
                )
                .with_label(item.name.span, format!("`{fname}` is defined here")),
            )
        };
        if npos > n {
            return Err(arity(args.len()));
        }
        let total = args.len();
        for (i, a) in args.into_iter().enumerate() {
            let slot = match a.name {
                None => i,
                Some(id) => match item.params.iter().position(|p| p.name.name == id.name) {
                    Some(p) => p,
                    None => return err(format!("function `{fname}` has no parameter named `{}`", id.name), id.span),
                },
            };
            match slots.get_mut(slot) {
                Some(s @ None) => *s = Some(a),
                Some(Some(_)) => {
                    return err(
                        format!(
                            "argument `{}` of `{fname}` is given twice",
                            item.params.get(slot).map_or("?", |p| p.name.name.as_str())
                        ),
                        a.span,
                    )
                }
                None => return Err(arity(total)),
            }
        }
        let mut bindings = BTreeMap::new();
        let mut values = Vec::new();
        for (p, slot) in item.params.iter().zip(slots) {
            let Some(a) = slot else {
                if total < n {
                    return Err(arity(total));
                }
                return err(format!("missing argument `{}` in the call of `{fname}`", p.name.name), span);
            };
            let mut v = a.value;
            if let ast::TypeExpr::Tensor { dtype, dims, .. } = &p.ty {
                if dims.is_empty() {
                    if let Some(d) = DType::parse(&dtype.name) {
                        v = coerce(a.ast, v, d)?;
                    }
                }
            }
            if let Err(why) = self.unify(&p.ty, &v.ty, &mut bindings) {
                let mut d = Diagnostic::new(
                    format!(
                        "argument `{}` of `{fname}` has type {}, which does not match the parameter type",
                        p.name.name, v.ty
                    ),
                    a.span,
                )
                .with_label(p.ty.span(), "the parameter's type");
                if !why.is_empty() {
                    d = d.with_note(why);
                }
                return Err(boxed(d));
            }
            values.push(v);
        }
        if self.stack.contains(&idx) {
            return err(format!("recursive call of `{fname}`: loopvm functions cannot recurse; use a loop"), span);
        }
        let types: Vec<Type> = values.iter().map(|v| v.ty.clone()).collect();
        let id = match self.instances.get(&(idx, types.clone())) {
            Some(&id) => id,
            None => self.instantiate(idx, bindings, types, false)?,
        };
        let ty = self.funcs.get(id.0 as usize).map_or_else(Type::unit, |f| f.result.clone());
        Ok(mk(t::ExprKind::Call(id, values), ty, span))
    }
}
