//! The checker: name resolution, dtype and shape inference, lambda inlining
//! and monomorphisation, from the [`crate::ast`] to the [`crate::typed`] IR.
//!
//! Each `fn` is checked once per distinct binding of its shape variables
//! (the types of its arguments at a call); `main` and functions that nothing
//! calls are checked with their shape variables left symbolic. Lambdas are
//! compile-time closures: a `let`-bound lambda remembers the scope it was
//! written in and is inlined, with that scope, wherever it is called.

use crate::ast::{self, BinOp, ExprKind as A, IndexItem, LitValue, UnOp};
use crate::builtins::{self, Builtin, BuiltinInfo};
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, ConstData, ConstValues, FuncId, StaticIndex, VarId, VarInfo};
use crate::types::{broadcast_dims, broadcasts_to, Dim, TensorTy, Type};
use loopvm_runtime::{Accepts, BinaryOp, DType, ReduceOp, UnaryOp, UpdateMode};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Deepest expression nesting the checker accepts (inlined lambdas included).
pub const MAX_DEPTH: usize = 256;
/// Most typed expressions one program may produce (bounds lambda inlining).
pub const MAX_NODES: usize = 2_000_000;

/// Checks a parsed program and produces the typed IR.
pub fn check_program(prog: &ast::Program) -> DResult<t::Program> {
    let mut fn_by_name: HashMap<&str, usize> = HashMap::new();
    for (i, f) in prog.fns.iter().enumerate() {
        if let Some(&j) = fn_by_name.get(f.name.name.as_str()) {
            let first = prog.fns.get(j).map_or(f.name.span, |g| g.name.span);
            let d = Diagnostic::new(format!("function `{}` is defined twice", f.name.name), f.name.span)
                .with_label(first, "first defined here");
            return Err(Box::new(d));
        }
        fn_by_name.insert(f.name.name.as_str(), i);
    }
    let mut c = Checker {
        prog,
        fn_by_name,
        funcs: Vec::new(),
        instances: HashMap::new(),
        instantiated: vec![false; prog.fns.len()],
        stack: Vec::new(),
        nodes: 0,
        grad_instances: HashMap::new(),
    };
    let mut main = None;
    if let Some(&m) = c.fn_by_name.get("main") {
        main = Some(c.instantiate_symbolic(m)?);
    }
    for i in 0..prog.fns.len() {
        if !c.instantiated.get(i).copied().unwrap_or(true) {
            c.instantiate_symbolic(i)?;
        }
    }
    Ok(t::Program { funcs: c.funcs, main })
}

// ---------------------------------------------------------------------------
// Scopes

/// A persistent scope: a linked list of bindings, cheap to capture.
#[derive(Clone, Default)]
struct Env<'a>(Option<Rc<EnvNode<'a>>>);

struct EnvNode<'a> {
    name: &'a str,
    bind: Binding<'a>,
    next: Env<'a>,
}

impl Drop for EnvNode<'_> {
    // Unlinks iteratively so that a long scope cannot overflow the stack.
    fn drop(&mut self) {
        let mut next = self.next.0.take();
        while let Some(rc) = next {
            match Rc::try_unwrap(rc) {
                Ok(mut node) => next = node.next.0.take(),
                Err(_) => break,
            }
        }
    }
}

#[derive(Clone)]
enum Binding<'a> {
    Value(VarId, Type),
    Lambda(Rc<Closure<'a>>),
    Fn(usize),
}

/// A lambda and the scope it was written in.
struct Closure<'a> {
    params: &'a [ast::Pattern],
    body: &'a ast::Expr,
    env: Env<'a>,
    span: Span,
}

impl<'a> Env<'a> {
    fn bind(&self, name: &'a str, bind: Binding<'a>) -> Env<'a> {
        Env(Some(Rc::new(EnvNode { name, bind, next: self.clone() })))
    }
    fn get(&self, name: &str) -> Option<&Binding<'a>> {
        let mut cur = self.0.as_ref();
        while let Some(n) = cur {
            if n.name == name {
                return Some(&n.bind);
            }
            cur = n.next.0.as_ref();
        }
        None
    }
}

#[derive(Clone)]
enum Callable<'a> {
    Lambda(Rc<Closure<'a>>),
    Fn(usize),
}

/// Per function instance state.
struct FnCtx {
    vars: Vec<VarInfo>,
    shapes: BTreeMap<String, Dim>,
    depth: usize,
}

impl FnCtx {
    fn new_var(&mut self, name: &str, ty: Type) -> VarId {
        let id = VarId(u32::try_from(self.vars.len()).unwrap_or(u32::MAX));
        self.vars.push(VarInfo { name: name.to_string(), ty });
        id
    }
}

/// An argument of a function call, checked.
struct ArgIn<'a> {
    value: t::Expr,
    ast: Option<&'a ast::Expr>,
    name: Option<&'a ast::Ident>,
    span: Span,
}

struct Checker<'a> {
    prog: &'a ast::Program,
    fn_by_name: HashMap<&'a str, usize>,
    funcs: Vec<t::Func>,
    instances: HashMap<(usize, Vec<Type>), FuncId>,
    instantiated: Vec<bool>,
    stack: Vec<usize>,
    nodes: usize,
    grad_instances: HashMap<(FuncId, Vec<usize>), FuncId>,
}

// ---------------------------------------------------------------------------
// Small helpers

fn boxed(d: Diagnostic) -> Box<Diagnostic> {
    Box::new(d)
}

fn mk(kind: t::ExprKind, ty: Type, span: Span) -> t::Expr {
    t::Expr { kind, ty, span }
}

fn tensor_ty(t: TensorTy) -> Type {
    Type::Tensor(t)
}

fn unit(span: Span) -> t::Expr {
    mk(t::ExprKind::Tuple(Vec::new()), Type::unit(), span)
}

/// The value of an untyped numeric literal (looking through parentheses,
/// negation and expression-only blocks): the literals that adopt the dtype of
/// the other operand.
fn weak_lit(e: &ast::Expr) -> Option<LitValue> {
    match &e.kind {
        A::Lit(v @ (LitValue::Int(_) | LitValue::Float(_)), None) => Some(*v),
        A::Paren(x) => weak_lit(x),
        A::Block(stmts, Some(r)) if stmts.is_empty() => weak_lit(r),
        A::Unary(UnOp::Neg, x) => match weak_lit(x)? {
            LitValue::Int(i) => Some(LitValue::Int(-i)),
            LitValue::Float(f) => Some(LitValue::Float(-f)),
            b => Some(b),
        },
        _ => None,
    }
}

/// An integer literal (with or without suffix, possibly negated).
fn int_lit(e: &ast::Expr) -> Option<i128> {
    match &e.kind {
        A::Lit(LitValue::Int(i), s) if s.is_none_or(|d| d.is_int()) => Some(*i),
        A::Paren(x) => int_lit(x),
        A::Unary(UnOp::Neg, x) => int_lit(x).map(|i| -i),
        _ => None,
    }
}

/// The span of the value an expression produces (the tail of a block).
fn tail_span(e: &ast::Expr) -> Span {
    match &e.kind {
        A::Block(_, Some(r)) => tail_span(r),
        A::Lambda(_, body) => tail_span(body),
        A::Paren(x) => tail_span(x),
        _ => e.span,
    }
}

fn lit_text(v: LitValue) -> String {
    match v {
        LitValue::Int(i) => i.to_string(),
        LitValue::Float(f) => format!("{f:?}"),
        LitValue::Bool(b) => b.to_string(),
    }
}

/// A scalar constant of `dtype` from a literal, range-checked.
fn lit(v: LitValue, dtype: DType, span: Span) -> DResult<t::Expr> {
    let values = match (v, dtype) {
        (LitValue::Bool(b), DType::Bool) => ConstValues::Bool(vec![b]),
        (LitValue::Bool(b), d) => return err(format!("cannot use bool literal {b} as {d}"), span),
        (LitValue::Int(i), DType::Bool) => return err(format!("cannot use integer literal {i} as bool"), span),
        (LitValue::Int(i), DType::I32) => match i32::try_from(i) {
            Ok(x) => ConstValues::Int(vec![i64::from(x)]),
            Err(_) => {
                let mut d = Diagnostic::new(format!("integer literal {i} does not fit in i32"), span);
                if i64::try_from(i).is_ok() {
                    d = d.with_note(format!("write `{i}i64` for an i64"));
                }
                return Err(boxed(d));
            }
        },
        (LitValue::Int(i), DType::I64) => match i64::try_from(i) {
            Ok(x) => ConstValues::Int(vec![x]),
            Err(_) => return err(format!("integer literal {i} does not fit in i64"), span),
        },
        (LitValue::Int(i), _) => ConstValues::Float(vec![i as f64]),
        (LitValue::Float(f), DType::F32) => {
            // Out of range only if it rounds to infinity: `3.4028235e38` (the
            // shortest spelling of f32::MAX) is above f32::MAX as an f64.
            if f.is_finite() && (f as f32).is_infinite() {
                return err(format!("float literal {} is out of range for f32", lit_text(v)), span);
            }
            ConstValues::Float(vec![f])
        }
        (LitValue::Float(f), DType::F64) => ConstValues::Float(vec![f]),
        (LitValue::Float(_), d) => {
            return Err(boxed(
                Diagnostic::new(format!("cannot use float literal {} as {d}", lit_text(v)), span)
                    .with_note("use an integer literal, or give the other operand a float dtype with `as`"),
            ))
        }
    };
    Ok(mk(t::ExprKind::Const(ConstData { dtype, shape: Vec::new(), values }), Type::scalar(dtype), span))
}

fn default_dtype(v: LitValue) -> DType {
    match v {
        LitValue::Int(_) => DType::I32,
        LitValue::Float(_) => DType::F32,
        LitValue::Bool(_) => DType::Bool,
    }
}

/// Converts a weak literal to `dtype` (other expressions are returned as they are).
fn coerce(ast: Option<&ast::Expr>, e: t::Expr, dtype: DType) -> DResult<t::Expr> {
    match ast.and_then(weak_lit) {
        Some(v) if e.ty.tensor().is_some_and(|t| t.dtype != dtype && t.is_scalar()) => lit(v, dtype, e.span),
        _ => Ok(e),
    }
}

/// Applies the scalar-literal rule to two operands.
fn unify_literals(la: &ast::Expr, l: t::Expr, ra: &ast::Expr, r: t::Expr) -> DResult<(t::Expr, t::Expr)> {
    let ld = l.ty.tensor().map(|t| t.dtype);
    let rd = r.ty.tensor().map(|t| t.dtype);
    match (weak_lit(la), weak_lit(ra), ld, rd) {
        (Some(_), None, _, Some(d)) => Ok((coerce(Some(la), l, d)?, r)),
        (None, Some(_), Some(d), _) => Ok((l, coerce(Some(ra), r, d)?)),
        (Some(_), Some(_), Some(a), Some(b)) if a != b => {
            Ok((coerce(Some(la), l, DType::F32)?, coerce(Some(ra), r, DType::F32)?))
        }
        _ => Ok((l, r)),
    }
}

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
        BinOp::And => BinaryOp::And,
        BinOp::Or => BinaryOp::Or,
        BinOp::MatMul => return None,
    })
}

fn dtype_of(id: &ast::Ident) -> DResult<DType> {
    DType::parse(&id.name).ok_or_else(|| {
        boxed(
            Diagnostic::new(format!("unknown dtype `{}`", id.name), id.span)
                .with_note("the dtypes are bool, i32, i64, f32 and f64"),
        )
    })
}

fn broadcast_error(
    what: &str,
    a: &TensorTy,
    b: &TensorTy,
    conflict: crate::types::BroadcastConflict,
    span: Span,
) -> Box<Diagnostic> {
    let mut d = Diagnostic::new(
        format!(
            "shapes do not broadcast in {what}: lhs {a}, rhs {b}: cannot broadcast {} with {}",
            conflict.a, conflict.b
        ),
        span,
    );
    if matches!(conflict.a, Dim::Var(_)) || matches!(conflict.b, Dim::Var(_)) {
        d = d.with_note("a shape variable broadcasts only with itself or 1");
    } else {
        d = d.with_note("NumPy broadcasting: aligned from the right, each pair of dims must be equal or one of them 1");
    }
    boxed(d)
}

/// Normalises a possibly negative axis against `rank`.
fn norm_axis(axis: i128, rank: usize, ty: &dyn std::fmt::Display, span: Span) -> DResult<u32> {
    let r = rank as i128;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return err(format!("axis {axis} is out of range for {ty} (rank {rank})"), span);
    }
    Ok(a as u32)
}

/// Number of elements of Python slice `start:stop:step` over a dim of size `n`.
fn slice_len(n: i128, start: Option<i128>, stop: Option<i128>, step: i128) -> u64 {
    let norm = |v: i128, lo: i128, hi: i128| {
        let v = if v < 0 { v + n } else { v };
        v.clamp(lo, hi)
    };
    let len = if step > 0 {
        let a = start.map_or(0, |v| norm(v, 0, n));
        let b = stop.map_or(n, |v| norm(v, 0, n));
        if b > a {
            (b - a + step - 1) / step
        } else {
            0
        }
    } else {
        let a = start.map_or(n - 1, |v| norm(v, -1, n - 1));
        let b = stop.map_or(-1, |v| norm(v, -1, n - 1));
        if a > b {
            (a - b + (-step) - 1) / (-step)
        } else {
            0
        }
    };
    u64::try_from(len).unwrap_or(0)
}

fn i64_of(v: i128, span: Span) -> DResult<i64> {
    i64::try_from(v).or_else(|_| err(format!("index {v} is too large"), span))
}

// ---------------------------------------------------------------------------
// Functions and instances

impl<'a> Checker<'a> {
    fn item(&self, idx: usize) -> DResult<&'a ast::FnItem> {
        self.prog
            .fns
            .get(idx)
            .ok_or_else(|| boxed(Diagnostic::new("internal error: bad function index", Span::default())))
    }

    /// Instantiates function `idx` with its shape variables left symbolic.
    fn instantiate_symbolic(&mut self, idx: usize) -> DResult<FuncId> {
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
        let name = if symbolic || bindings.is_empty() {
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
    fn resolve_type(&self, cx: &FnCtx, te: &ast::TypeExpr) -> DResult<Type> {
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
    fn call_fn(&mut self, idx: usize, args: Vec<ArgIn<'a>>, span: Span) -> DResult<t::Expr> {
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

    // -----------------------------------------------------------------------
    // Expressions

    fn expr(&mut self, cx: &mut FnCtx, env: &Env<'a>, e: &'a ast::Expr) -> DResult<t::Expr> {
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

    fn expr_inner(&mut self, cx: &mut FnCtx, env: &Env<'a>, e: &'a ast::Expr) -> DResult<t::Expr> {
        let span = e.span;
        match &e.kind {
            A::Lit(v, suffix) => lit(*v, suffix.unwrap_or(default_dtype(*v)), span),
            A::Name(n) => self.name(env, n, span),
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
                let tt = self.tensor(&v, if *op == UnOp::Neg { "negation" } else { "`!`" })?;
                let (uop, ok) = match op {
                    UnOp::Neg => (UnaryOp::Neg, tt.dtype != DType::Bool),
                    UnOp::Not => (UnaryOp::Not, tt.dtype == DType::Bool),
                };
                if !ok {
                    let what = if *op == UnOp::Neg { "negation needs a number" } else { "`!` needs a bool" };
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

    fn tensor<'e>(&self, v: &'e t::Expr, what: &str) -> DResult<&'e TensorTy> {
        match &v.ty {
            Type::Tensor(t) => Ok(t),
            ty => err(format!("{what} needs a tensor, got a tuple {ty}"), v.span),
        }
    }

    fn name(&self, env: &Env<'a>, n: &str, span: Span) -> DResult<t::Expr> {
        match env.get(n) {
            Some(Binding::Value(v, ty)) => Ok(mk(t::ExprKind::Var(*v), ty.clone(), span)),
            Some(Binding::Lambda(_)) | Some(Binding::Fn(_)) => {
                err(format!("`{n}` is a function: call it, or pass it to a loop"), span)
            }
            None if self.fn_by_name.contains_key(n) || builtins::lookup(n).is_some() => {
                err(format!("`{n}` is a function: call it, or pass it to a loop"), span)
            }
            None if DType::parse(n).is_some() => err(format!("the dtype `{n}` is not a value"), span),
            None => err(format!("unknown name `{n}`"), span),
        }
    }

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
                    let mut v = self.expr(cx, &env, value)?;
                    if let Some(te) = ty {
                        let want = self.resolve_type(cx, te)?;
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
    fn as_callable(&self, env: &Env<'a>, e: &'a ast::Expr) -> Option<Callable<'a>> {
        match &e.kind {
            A::Lambda(params, body) => {
                Some(Callable::Lambda(Rc::new(Closure { params, body, env: env.clone(), span: e.span })))
            }
            A::Paren(x) => self.as_callable(env, x),
            A::Name(n) => match env.get(n) {
                Some(Binding::Lambda(c)) => Some(Callable::Lambda(c.clone())),
                Some(Binding::Fn(i)) => Some(Callable::Fn(*i)),
                Some(Binding::Value(..)) => None,
                None => self.fn_by_name.get(n.as_str()).map(|i| Callable::Fn(*i)),
            },
            _ => None,
        }
    }

    /// Applies a callable to parameters of the given types: the parameter
    /// patterns and the body (for a loop body or an inlined call).
    fn apply(
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
                    if !self.fn_by_name.contains_key(n.as_str()) {
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
                if matches!(n.as_str(), "grad" | "value_and_grad")
                    && env.get(n).is_none()
                    && !self.fn_by_name.contains_key(n.as_str())
                {
                    return self.grad_call(cx, env, n == "value_and_grad", callee, gargs, args, span);
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
                if cl.params.len() != args.len() {
                    let d = Diagnostic::new(
                        format!(
                            "this lambda takes {} argument{} but {} {} given",
                            cl.params.len(),
                            if cl.params.len() == 1 { "" } else { "s" },
                            args.len(),
                            if args.len() == 1 { "was" } else { "were" }
                        ),
                        span,
                    )
                    .with_label(cl.span, "the lambda");
                    return Err(boxed(d));
                }
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

    fn binary(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        op: BinOp,
        la: &'a ast::Expr,
        ra: &'a ast::Expr,
        span: Span,
    ) -> DResult<t::Expr> {
        let l = self.expr(cx, env, la)?;
        let r = self.expr(cx, env, ra)?;
        let (l, r) = unify_literals(la, l, ra, r)?;
        let what = format!("`{}`", op.symbol());
        let lt = self.tensor(&l, &what)?.clone();
        let rt = self.tensor(&r, &what)?.clone();
        let Some(bop) = binary_op(op) else {
            return self.matmul(l, lt, r, rt, span);
        };
        let name = bop.as_str();
        if bop.is_logic() {
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
            if !bop.is_compare() && lt.dtype == DType::Bool {
                return err(format!("`{}` is not defined on bool: lhs {lt}, rhs {rt}", op.symbol()), span);
            }
        }
        let dims = broadcast_dims(&lt.dims, &rt.dims).map_err(|c| broadcast_error(name, &lt, &rt, c, span))?;
        let dtype = if bop.is_compare() { DType::Bool } else { lt.dtype };
        Ok(mk(t::ExprKind::Binary(bop, Box::new(l), Box::new(r)), tensor_ty(TensorTy { dtype, dims }), span))
    }

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
        let (k1, k2, dims) = match (lt.dims.as_slice(), rt.dims.as_slice()) {
            ([k], [k2]) => (k, k2, vec![]),
            ([m, k], [k2]) => (k, k2, vec![m.clone()]),
            ([k], [k2, n]) => (k, k2, vec![n.clone()]),
            ([m, k], [k2, n]) => (k, k2, vec![m.clone(), n.clone()]),
            _ => return err(format!("matmul needs rank-1 or rank-2 operands, got lhs {lt}, rhs {rt}"), span),
        };
        if k1 != k2 {
            return err(format!("matmul dimensions do not match: lhs {lt}, rhs {rt} (inner dims {k1} and {k2})"), span);
        }
        Ok(mk(t::ExprKind::MatMul(Box::new(l), Box::new(r)), tensor_ty(TensorTy { dtype: lt.dtype, dims }), span))
    }

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

    // -----------------------------------------------------------------------
    // Indexing

    fn index(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        base_a: &'a ast::Expr,
        items: &'a [IndexItem],
        span: Span,
    ) -> DResult<t::Expr> {
        let base = self.expr(cx, env, base_a)?;
        let bt = match &base.ty {
            Type::Tensor(t) => t.clone(),
            ty => {
                return err(format!("cannot index a tuple {ty}; destructure it with `let (a, b) = ...`"), base_a.span)
            }
        };
        if items.len() > bt.rank() {
            return err(format!("too many indices for {bt}: {} given", items.len()), span);
        }
        enum It {
            Static(i128, Span),
            Dyn(t::Expr),
            Range(Option<i128>, Option<i128>, i128, Span),
        }
        let mut its = Vec::new();
        for item in items {
            its.push(match item {
                IndexItem::At(e) => match int_lit(e) {
                    Some(i) => It::Static(i, e.span),
                    None => It::Dyn(self.index_value(cx, env, e)?),
                },
                IndexItem::Slice { start, stop, step, span } => {
                    let part = |p: &Option<Box<ast::Expr>>| -> DResult<Option<i128>> {
                        match p {
                            None => Ok(None),
                            Some(e) => match int_lit(e) {
                                Some(i) => Ok(Some(i)),
                                None => err("slice bounds must be integer literals (use a dynamic index `x[i]` for runtime positions)", e.span),
                            },
                        }
                    };
                    let st = part(step)?.unwrap_or(1);
                    if st == 0 {
                        return err("slice step cannot be zero", *span);
                    }
                    It::Range(part(start)?, part(stop)?, st, *span)
                }
            });
        }
        let last_dyn = its.iter().rposition(|i| matches!(i, It::Dyn(_)));
        let mut cur = base;
        let mut cur_dims = bt.dims.clone();
        let mut rest_start = 0;
        if let Some(p) = last_dyn {
            let idx_dtype = its.iter().find_map(|i| match i {
                It::Dyn(e) => e.ty.tensor().map(|t| t.dtype),
                _ => None,
            });
            let mut idx = Vec::new();
            for (axis, it) in its.iter().take(p + 1).enumerate() {
                match it {
                    It::Dyn(e) => idx.push(e.clone()),
                    It::Static(i, s) => {
                        self.check_static_index(*i, bt.dims.get(axis), axis, *s)?;
                        let v = lit(LitValue::Int(*i), idx_dtype.unwrap_or(DType::I32), *s)?;
                        idx.push(v);
                    }
                    It::Range(.., s) => {
                        return Err(boxed(
                            Diagnostic::new("dynamic index after a slice is not supported", *s)
                                .with_note("put the dynamic indices first (`x[i, 1:3]`), or index in two steps"),
                        ))
                    }
                }
            }
            cur_dims = bt.dims.get(p + 1..).map(<[Dim]>::to_vec).unwrap_or_default();
            let ty = tensor_ty(TensorTy { dtype: bt.dtype, dims: cur_dims.clone() });
            cur = mk(t::ExprKind::Index(Box::new(cur), idx), ty, span);
            rest_start = p + 1;
        }
        let mut specs = Vec::new();
        let mut out_dims = Vec::new();
        let mut trivial = true;
        for (k, it) in its.iter().enumerate().skip(rest_start) {
            let axis = k - rest_start;
            let dim = cur_dims.get(axis).cloned().unwrap_or(Dim::Known(0));
            match it {
                It::Static(i, s) => {
                    self.check_static_index(*i, Some(&dim), k, *s)?;
                    specs.push(StaticIndex::At(i64_of(*i, *s)?));
                    trivial = false;
                }
                It::Range(a, b, st, s) => {
                    let full = a.is_none() && b.is_none();
                    match &dim {
                        Dim::Known(n) => out_dims.push(Dim::Known(slice_len(i128::from(*n), *a, *b, *st))),
                        Dim::Var(v) => {
                            if !(full && (*st == 1 || *st == -1)) {
                                return err(
                                    format!("cannot slice axis {k} of symbolic size {v} with static bounds"),
                                    *s,
                                );
                            }
                            out_dims.push(dim.clone());
                        }
                    }
                    if !(full && *st == 1) {
                        trivial = false;
                    }
                    specs.push(StaticIndex::Range {
                        start: a.map(|x| i64_of(x, *s)).transpose()?,
                        stop: b.map(|x| i64_of(x, *s)).transpose()?,
                        step: i64_of(*st, *s)?,
                    });
                }
                It::Dyn(_) => {}
            }
        }
        if trivial {
            return Ok(cur);
        }
        let n_specs = specs.len();
        out_dims.extend(cur_dims.iter().skip(n_specs).cloned());
        let ty = tensor_ty(TensorTy { dtype: bt.dtype, dims: out_dims });
        Ok(mk(t::ExprKind::Slice(Box::new(cur), specs), ty, span))
    }

    fn check_static_index(&self, i: i128, dim: Option<&Dim>, axis: usize, span: Span) -> DResult<()> {
        if let Some(Dim::Known(n)) = dim {
            let n = i128::from(*n);
            if i < -n || i >= n {
                return err(format!("index {i} is out of bounds for axis {axis} with size {n}"), span);
            }
        }
        Ok(())
    }

    /// A dynamic index: an integer scalar.
    fn index_value(&mut self, cx: &mut FnCtx, env: &Env<'a>, e: &'a ast::Expr) -> DResult<t::Expr> {
        let v = self.expr(cx, env, e)?;
        match v.ty.tensor() {
            Some(t) if t.dtype.is_int() && t.is_scalar() => Ok(v),
            _ => err(format!("an index must be an integer scalar, got {}", v.ty), e.span),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn at_update(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        base_a: &'a ast::Expr,
        items: &'a [IndexItem],
        method: &ast::Ident,
        args: &'a [ast::Arg],
        span: Span,
    ) -> DResult<t::Expr> {
        let mode = match method.name.as_str() {
            "set" => UpdateMode::Set,
            "add" => UpdateMode::Add,
            m => return err(format!("unknown update `.{m}`: use `.set(v)` or `.add(v)`"), method.span),
        };
        let base = self.expr(cx, env, base_a)?;
        let bt = match &base.ty {
            Type::Tensor(t) => t.clone(),
            ty => return err(format!("`.at[...]` needs a tensor, got a tuple {ty}"), base_a.span),
        };
        if items.len() > bt.rank() {
            return err(format!("too many indices for {bt}: {} given", items.len()), span);
        }
        if items.is_empty() {
            return err("`.at[...]` needs at least one index", span);
        }
        let mut idx = Vec::new();
        for (axis, it) in items.iter().enumerate() {
            match it {
                IndexItem::At(e) => match int_lit(e) {
                    Some(i) => {
                        self.check_static_index(i, bt.dims.get(axis), axis, e.span)?;
                        idx.push(lit(LitValue::Int(i), DType::I32, e.span)?);
                    }
                    None => idx.push(self.index_value(cx, env, e)?),
                },
                IndexItem::Slice { span, .. } => {
                    return err("slices in `.at[...]` are not supported; index with integers", *span)
                }
            }
        }
        // Indices of one dtype: literal indices follow the first dynamic one.
        if let Some(d) = idx
            .iter()
            .zip(items)
            .find(|(_, it)| matches!(it, IndexItem::At(e) if int_lit(e).is_none()))
            .and_then(|(v, _)| v.ty.tensor().map(|t| t.dtype))
        {
            for (v, it) in idx.iter_mut().zip(items) {
                if let IndexItem::At(e) = it {
                    if let Some(i) = int_lit(e) {
                        *v = lit(LitValue::Int(i), d, e.span)?;
                    }
                }
            }
        }
        if args.len() != 1 || args.iter().any(|a| a.name.is_some()) {
            return err(format!("`.at[...].{}` takes one value", method.name), span);
        }
        let Some(arg) = args.first() else {
            return err("missing value", span);
        };
        let v = self.expr(cx, env, &arg.value)?;
        let v = coerce(Some(&arg.value), v, bt.dtype)?;
        let slot =
            TensorTy { dtype: bt.dtype, dims: bt.dims.get(items.len()..).map(<[Dim]>::to_vec).unwrap_or_default() };
        let vt = match &v.ty {
            Type::Tensor(t) => t.clone(),
            ty => {
                return err(
                    format!("the value of `.{}` must be a tensor, got a tuple {ty}", method.name),
                    arg.value.span,
                )
            }
        };
        if vt.dtype != bt.dtype {
            return err(
                format!("dtype mismatch in `.at[...].{}`: the tensor is {bt}, the value is {vt}", method.name),
                arg.value.span,
            );
        }
        let v = if vt.dims == slot.dims {
            v
        } else if broadcasts_to(&vt.dims, &slot.dims) {
            let Some(known) = slot.known_dims() else {
                return err(format!("cannot broadcast {vt} to the symbolic slot {slot}"), arg.value.span);
            };
            let sp = v.span;
            mk(t::ExprKind::Broadcast(Box::new(v), known), tensor_ty(slot.clone()), sp)
        } else {
            return err(format!("a value of type {vt} does not fit the slot {slot} of `.at[...]`"), arg.value.span);
        };
        let ty = base.ty.clone();
        Ok(mk(t::ExprKind::Update { mode, base: Box::new(base), idx, value: Box::new(v) }, ty, span))
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
fn fold_stack(items: &[t::Expr]) -> Option<ConstData> {
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

// ---------------------------------------------------------------------------
// Builtins

impl<'a> Checker<'a> {
    fn builtin(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        info: &BuiltinInfo,
        args: &'a [ast::Arg],
        span: Span,
    ) -> DResult<t::Expr> {
        let name = info.name;
        let mut pos: Vec<&'a ast::Expr> = Vec::new();
        let mut named: Vec<(&'a ast::Ident, &'a ast::Expr)> = Vec::new();
        for a in args {
            match &a.name {
                None => {
                    if let Some((n, _)) = named.first() {
                        return err(format!("positional argument after the named argument `{}`", n.name), a.value.span);
                    }
                    pos.push(&a.value);
                }
                Some(n) => {
                    if !info.named.contains(&n.name.as_str()) {
                        let mut d = Diagnostic::new(format!("`{name}` has no argument named `{}`", n.name), n.span);
                        d = d.with_note(format!("usage: {}", info.signature));
                        return Err(boxed(d));
                    }
                    if named.iter().any(|(m, _)| m.name == n.name) {
                        return err(format!("argument `{}` is given twice", n.name), n.span);
                    }
                    named.push((n, &a.value));
                }
            }
        }
        if pos.len() < info.min_args || pos.len() > info.max_args {
            let want = if info.min_args == info.max_args {
                format!("{}", info.min_args)
            } else {
                format!("{} to {}", info.min_args, info.max_args)
            };
            let d = Diagnostic::new(
                format!(
                    "`{name}` takes {want} positional argument{} but {} {} given",
                    if info.max_args == 1 { "" } else { "s" },
                    pos.len(),
                    if pos.len() == 1 { "was" } else { "were" }
                ),
                span,
            )
            .with_note(format!("usage: {}", info.signature));
            return Err(boxed(d));
        }
        let arg = |i: usize| -> DResult<&'a ast::Expr> {
            pos.get(i).copied().ok_or_else(|| boxed(Diagnostic::new(format!("missing argument of `{name}`"), span)))
        };
        let named_arg = |n: &str| named.iter().find(|(m, _)| m.name == n).map(|(_, e)| *e);
        match info.builtin {
            Builtin::Zeros | Builtin::Ones | Builtin::Full => {
                let d = self.dtype_arg(arg(0)?)?;
                let shape = self.shape_arg(cx, env, arg(1)?, false)?;
                let shape: Vec<u64> = shape.into_iter().map(|x| x as u64).collect();
                let value = match info.builtin {
                    Builtin::Zeros => {
                        lit(if d == DType::Bool { LitValue::Bool(false) } else { LitValue::Int(0) }, d, span)?
                    }
                    Builtin::Ones => {
                        lit(if d == DType::Bool { LitValue::Bool(true) } else { LitValue::Int(1) }, d, span)?
                    }
                    _ => {
                        let va = arg(2)?;
                        let v = self.expr(cx, env, va)?;
                        let v = coerce(Some(va), v, d)?;
                        let vt = self.tensor(&v, "`full`")?.clone();
                        if vt.dtype != d {
                            return err(format!("the value of `full` has type {vt} but the dtype is {d}"), va.span);
                        }
                        if !broadcasts_to(&vt.dims, &shape.iter().map(|x| Dim::Known(*x)).collect::<Vec<_>>()) {
                            return err(format!("the value {vt} does not broadcast to the shape {shape:?}"), va.span);
                        }
                        v
                    }
                };
                let ty = tensor_ty(TensorTy::known(d, &shape));
                if value.ty == ty {
                    return Ok(mk(value.kind, ty, span));
                }
                Ok(mk(t::ExprKind::Broadcast(Box::new(value), shape), ty, span))
            }
            Builtin::Iota => {
                let d = self.dtype_arg(arg(0)?)?;
                if d == DType::Bool {
                    return err("`iota` needs a numeric dtype", arg(0)?.span);
                }
                let n = self.static_uint(cx, env, arg(1)?, "the length of `iota`")?;
                Ok(mk(t::ExprKind::Iota(d, n), tensor_ty(TensorTy::known(d, &[n])), span))
            }
            Builtin::Unary(op) => {
                let xa = arg(0)?;
                let mut x = self.expr(cx, env, xa)?;
                let accepts = op.accepts();
                if accepts == Accepts::Float {
                    x = coerce(Some(xa), x, DType::F32)?;
                }
                let xt = self.tensor(&x, &format!("`{name}`"))?.clone();
                if !accepts.accepts(xt.dtype) {
                    let mut d =
                        Diagnostic::new(format!("`{name}` requires {}, got {xt}", accepts.requirement()), xa.span);
                    if accepts == Accepts::Float {
                        d = d.with_note("convert it with `as f32`");
                    }
                    return Err(boxed(d));
                }
                Ok(mk(t::ExprKind::Unary(op, Box::new(x)), tensor_ty(xt), span))
            }
            Builtin::Maximum | Builtin::Minimum => {
                let (aa, ba) = (arg(0)?, arg(1)?);
                let a = self.expr(cx, env, aa)?;
                let b = self.expr(cx, env, ba)?;
                let (a, b) = unify_literals(aa, a, ba, b)?;
                let at = self.tensor(&a, &format!("`{name}`"))?.clone();
                let bt = self.tensor(&b, &format!("`{name}`"))?.clone();
                if at.dtype != bt.dtype {
                    return Err(boxed(
                        Diagnostic::new(format!("dtype mismatch in {name}: lhs {at}, rhs {bt}"), span)
                            .with_note(format!("convert one side with `as`, e.g. `(...) as {}`", at.dtype)),
                    ));
                }
                let dims = broadcast_dims(&at.dims, &bt.dims).map_err(|c| broadcast_error(name, &at, &bt, c, span))?;
                let op = if info.builtin == Builtin::Maximum { BinaryOp::Max } else { BinaryOp::Min };
                Ok(mk(
                    t::ExprKind::Binary(op, Box::new(a), Box::new(b)),
                    tensor_ty(TensorTy { dtype: at.dtype, dims }),
                    span,
                ))
            }
            Builtin::Where => {
                let (ca, aa, ba) = (arg(0)?, arg(1)?, arg(2)?);
                let c = self.expr(cx, env, ca)?;
                let ct = self.tensor(&c, "`where`")?.clone();
                if ct.dtype != DType::Bool {
                    return err(format!("the condition of `where` must be bool, got {ct}"), ca.span);
                }
                let a = self.expr(cx, env, aa)?;
                let b = self.expr(cx, env, ba)?;
                let (a, b) = unify_literals(aa, a, ba, b)?;
                let at = self.tensor(&a, "`where`")?.clone();
                let bt = self.tensor(&b, "`where`")?.clone();
                if at.dtype != bt.dtype {
                    return err(format!("dtype mismatch in where: lhs {at}, rhs {bt}"), span);
                }
                let dims =
                    broadcast_dims(&at.dims, &bt.dims).map_err(|c| broadcast_error("where", &at, &bt, c, span))?;
                let tmp = TensorTy { dtype: at.dtype, dims };
                let dims =
                    broadcast_dims(&ct.dims, &tmp.dims).map_err(|c| broadcast_error("where", &ct, &tmp, c, span))?;
                Ok(mk(
                    t::ExprKind::Select(Box::new(c), Box::new(a), Box::new(b)),
                    tensor_ty(TensorTy { dtype: at.dtype, dims }),
                    span,
                ))
            }
            Builtin::Reduce(op) => {
                let xa = arg(0)?;
                let x = self.expr(cx, env, xa)?;
                let xt = self.tensor(&x, &format!("`{name}`"))?.clone();
                let axis = match named_arg("axis") {
                    None => None,
                    Some(e) => {
                        let Some(a) = int_lit(e) else {
                            return err("`axis` must be an integer literal", e.span);
                        };
                        Some(norm_axis(a, xt.rank(), &xt, e.span)?)
                    }
                };
                let dtype = op.result_dtype(xt.dtype);
                let dims = match axis {
                    None => Vec::new(),
                    Some(a) => {
                        xt.dims.iter().enumerate().filter(|(i, _)| *i != a as usize).map(|(_, d)| d.clone()).collect()
                    }
                };
                if op == ReduceOp::Argmax && xt.dims.contains(&Dim::Known(0)) {
                    return err(format!("`argmax` of an empty tensor {xt}"), xa.span);
                }
                Ok(mk(t::ExprKind::Reduce(op, Box::new(x), axis), tensor_ty(TensorTy { dtype, dims }), span))
            }
            Builtin::Reshape => {
                let xa = arg(0)?;
                let x = self.expr(cx, env, xa)?;
                let xt = self.tensor(&x, "`reshape`")?.clone();
                let target = self.shape_arg(cx, env, arg(1)?, true)?;
                let Some(known) = xt.known_dims() else {
                    return err(format!("cannot reshape {xt}: its shape is symbolic"), xa.span);
                };
                let numel = known.iter().try_fold(1u64, |a, b| a.checked_mul(*b));
                let Some(numel) = numel else {
                    return err("tensor too large", xa.span);
                };
                let holes = target.iter().filter(|d| **d < 0).count();
                let prod = target
                    .iter()
                    .filter(|d| **d >= 0)
                    .try_fold(1u64, |a, b| a.checked_mul(*b as u64))
                    .unwrap_or(u64::MAX);
                let mut out: Vec<u64> = Vec::new();
                if holes > 1 {
                    return err("`reshape` accepts at most one -1", arg(1)?.span);
                }
                for d in &target {
                    if *d < 0 {
                        if prod == 0 || numel % prod != 0 {
                            return err(format!("cannot reshape {xt} ({numel} elements) to {target:?}"), arg(1)?.span);
                        }
                        out.push(numel / prod);
                    } else {
                        out.push(*d as u64);
                    }
                }
                if holes == 0 && prod != numel {
                    return err(format!("cannot reshape {xt} ({numel} elements) to {target:?}"), arg(1)?.span);
                }
                Ok(mk(t::ExprKind::Reshape(Box::new(x), out.clone()), tensor_ty(TensorTy::known(xt.dtype, &out)), span))
            }
            Builtin::Transpose => {
                let xa = arg(0)?;
                let x = self.expr(cx, env, xa)?;
                let xt = self.tensor(&x, "`transpose`")?.clone();
                let (perm, dims) = match pos.get(1) {
                    None => (None, xt.dims.iter().rev().cloned().collect()),
                    Some(pa) => {
                        let p = self.shape_arg(cx, env, pa, false)?;
                        let mut seen = vec![false; xt.rank()];
                        for a in &p {
                            match seen.get_mut(*a as usize) {
                                Some(s @ false) => *s = true,
                                _ => return err(format!("{p:?} is not a permutation of the axes of {xt}"), pa.span),
                            }
                        }
                        if p.len() != xt.rank() {
                            return err(format!("{p:?} is not a permutation of the axes of {xt}"), pa.span);
                        }
                        let dims = p.iter().filter_map(|a| xt.dims.get(*a as usize).cloned()).collect();
                        (Some(p.iter().map(|a| *a as u32).collect()), dims)
                    }
                };
                Ok(mk(t::ExprKind::Transpose(Box::new(x), perm), tensor_ty(TensorTy { dtype: xt.dtype, dims }), span))
            }
            Builtin::Broadcast => {
                let xa = arg(0)?;
                let x = self.expr(cx, env, xa)?;
                let xt = self.tensor(&x, "`broadcast`")?.clone();
                let shape: Vec<u64> = self.shape_arg(cx, env, arg(1)?, false)?.into_iter().map(|d| d as u64).collect();
                let to = TensorTy::known(xt.dtype, &shape);
                if !broadcasts_to(&xt.dims, &to.dims) {
                    return err(format!("cannot broadcast {xt} to {to}"), span);
                }
                Ok(mk(t::ExprKind::Broadcast(Box::new(x), shape), tensor_ty(to), span))
            }
            Builtin::Concat | Builtin::Stack => {
                let la = arg(0)?;
                let A::List(items) = &la.kind else {
                    return err(format!("`{name}` takes a list literal of tensors: {}", info.signature), la.span);
                };
                if items.is_empty() {
                    return err(format!("`{name}` needs at least one tensor"), la.span);
                }
                let mut xs = Vec::new();
                for it in items {
                    xs.push(self.expr(cx, env, it)?);
                }
                let first = self
                    .tensor(xs.first().ok_or_else(|| boxed(Diagnostic::new("empty", la.span)))?, &format!("`{name}`"))?
                    .clone();
                for (it, x) in items.iter().zip(&xs) {
                    let xt = self.tensor(x, &format!("`{name}`"))?;
                    if xt.dtype != first.dtype || xt.rank() != first.rank() {
                        return err(
                            format!("`{name}` of tensors of different dtypes or ranks: {first} and {xt}"),
                            it.span,
                        );
                    }
                }
                let axis_lit = match named_arg("axis") {
                    None => 0,
                    Some(e) => {
                        int_lit(e).ok_or_else(|| boxed(Diagnostic::new("`axis` must be an integer literal", e.span)))?
                    }
                };
                let axis_span = named_arg("axis").map_or(span, |e| e.span);
                if info.builtin == Builtin::Stack {
                    for (it, x) in items.iter().zip(&xs) {
                        if x.ty != tensor_ty(first.clone()) {
                            return err(
                                format!("`stack` of tensors of different types: {first} and {}", x.ty),
                                it.span,
                            );
                        }
                    }
                    let axis = norm_axis(axis_lit, first.rank() + 1, &first, axis_span)?;
                    let mut dims = first.dims.clone();
                    dims.insert(axis as usize, Dim::Known(xs.len() as u64));
                    if let (0, Some(c)) = (axis, fold_stack(&xs)) {
                        return Ok(mk(t::ExprKind::Const(c), tensor_ty(TensorTy { dtype: first.dtype, dims }), span));
                    }
                    return Ok(mk(
                        t::ExprKind::Stack(xs, axis),
                        tensor_ty(TensorTy { dtype: first.dtype, dims }),
                        span,
                    ));
                }
                if first.rank() == 0 {
                    return err("`concat` needs tensors of rank 1 or more; use `stack` for scalars", la.span);
                }
                let axis = norm_axis(axis_lit, first.rank(), &first, axis_span)?;
                let a = axis as usize;
                let mut total: Option<u64> = Some(0);
                for (it, x) in items.iter().zip(&xs) {
                    let xt = self.tensor(x, "`concat`")?;
                    for (i, (d1, d2)) in first.dims.iter().zip(&xt.dims).enumerate() {
                        if i != a && d1 != d2 {
                            return err(
                                format!("`concat` along axis {axis} of {first} and {xt}: the other dims differ"),
                                it.span,
                            );
                        }
                    }
                    total = match (total, xt.dims.get(a).and_then(Dim::known)) {
                        (Some(s), Some(n)) => s.checked_add(n),
                        _ => None,
                    };
                }
                let mut dims = first.dims.clone();
                let new = match total {
                    Some(n) => Dim::Known(n),
                    None if xs.len() == 1 => first.dims.get(a).cloned().unwrap_or(Dim::Known(0)),
                    None => return err("cannot concatenate along an axis of symbolic size", la.span),
                };
                if let Some(slot) = dims.get_mut(a) {
                    *slot = new;
                }
                Ok(mk(t::ExprKind::Concat(xs, axis), tensor_ty(TensorTy { dtype: first.dtype, dims }), span))
            }
            Builtin::Print => {
                let x = self.expr(cx, env, arg(0)?)?;
                Ok(mk(t::ExprKind::Print(Box::new(x)), Type::unit(), span))
            }
            Builtin::Shape => {
                let x = self.expr(cx, env, arg(0)?)?;
                let xt = self.tensor(&x, "`shape`")?.clone();
                Ok(mk(
                    t::ExprKind::ShapeOf(Box::new(x)),
                    tensor_ty(TensorTy::known(DType::I32, &[xt.rank() as u64])),
                    span,
                ))
            }
            Builtin::ForiLoop => {
                let (loa, hia, ba, ia) = (arg(0)?, arg(1)?, arg(2)?, arg(3)?);
                let lo = self.expr(cx, env, loa)?;
                let hi = self.expr(cx, env, hia)?;
                let (lo, hi) = unify_literals(loa, lo, hia, hi)?;
                let mut bound = None;
                for (e, a) in [(&lo, loa), (&hi, hia)] {
                    match e.ty.tensor() {
                        Some(tt) if tt.is_scalar() && tt.dtype.is_int() => {
                            if bound.is_some_and(|d| d != tt.dtype) {
                                return err(
                                    format!(
                                        "`fori_loop` bounds have different dtypes: lower {}, upper {}",
                                        lo.ty, hi.ty
                                    ),
                                    span,
                                );
                            }
                            bound = Some(tt.dtype);
                        }
                        _ => {
                            return err(format!("`fori_loop` bounds must be i32 or i64 scalars, got {}", e.ty), a.span)
                        }
                    }
                }
                let d = bound.unwrap_or(DType::I32);
                let unroll = self.unroll_arg(named_arg("unroll"))?;
                let init = self.expr(cx, env, ia)?;
                let body = self.loop_body(env, ba, "fori_loop")?;
                let (params, b) = self.apply(
                    cx,
                    &body,
                    &[Type::scalar(d), init.ty.clone()],
                    "the body of `fori_loop` (i, carry)",
                    ba.span,
                )?;
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
            Builtin::WhileLoop => {
                let (ca, ba, ia) = (arg(0)?, arg(1)?, arg(2)?);
                let init = self.expr(cx, env, ia)?;
                let cond = self.loop_body(env, ca, "while_loop")?;
                let body = self.loop_body(env, ba, "while_loop")?;
                let (cparams, c) = self.apply(
                    cx,
                    &cond,
                    std::slice::from_ref(&init.ty),
                    "the condition of `while_loop` (carry)",
                    ca.span,
                )?;
                match c.ty.tensor() {
                    Some(tt) if tt.dtype == DType::Bool && tt.is_scalar() => {}
                    _ => {
                        return Err(boxed(
                            Diagnostic::new(
                                format!("`while_loop` condition must return a bool scalar, got {}", c.ty),
                                tail_span(ca),
                            )
                            .with_note(
                                if c.ty.tensor().is_some_and(|t| t.dtype == DType::Bool) {
                                    "select one element with an index (`c[0]`)"
                                } else {
                                    "compare it, e.g. `x > 0`, to get a bool"
                                },
                            ),
                        ))
                    }
                }
                let (bparams, b) =
                    self.apply(cx, &body, std::slice::from_ref(&init.ty), "the body of `while_loop` (carry)", ba.span)?;
                check_carry(&b.ty, &init.ty, ba, ia)?;
                let max_iters = match named_arg("max_iters") {
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
            Builtin::Scan => {
                let (ba, ia) = (arg(0)?, arg(1)?);
                let init = self.expr(cx, env, ia)?;
                let xs = match pos.get(2) {
                    Some(xa) => Some((self.expr(cx, env, xa)?, *xa)),
                    None => None,
                };
                let length = match named_arg("length") {
                    Some(e) => Some(self.static_uint(cx, env, e, "`length`")?),
                    None => None,
                };
                let reverse = match named_arg("reverse") {
                    None => false,
                    Some(e) => match &e.kind {
                        A::Lit(LitValue::Bool(b), _) => *b,
                        _ => return err("`reverse` must be `true` or `false`", e.span),
                    },
                };
                let unroll = self.unroll_arg(named_arg("unroll"))?;
                let checkpoint = match named_arg("checkpoint") {
                    None => false,
                    Some(e) => match &e.kind {
                        A::Lit(LitValue::Bool(b), _) => *b,
                        _ => return err("`checkpoint` must be `true` or `false`", e.span),
                    },
                };
                let (x_ty, n) = match &xs {
                    Some((x, xa)) => {
                        let mut n: Option<Dim> = None;
                        for leaf in x.ty.leaves() {
                            let Some(d0) = leaf.dims.first() else {
                                return err(
                                    format!(
                                        "`scan` over a scalar: every leaf of xs needs a leading axis, got {}",
                                        x.ty
                                    ),
                                    xa.span,
                                );
                            };
                            if let Some(prev) = &n {
                                if prev != d0 {
                                    return err(
                                        format!("`scan` inputs have different lengths: {prev} and {d0}"),
                                        xa.span,
                                    );
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
                let (params, b) =
                    self.apply(cx, &body, &[init.ty.clone(), x_ty], "the body of `scan` (carry, x)", ba.span)?;
                let (c_ty, y_ty) = match &b.ty {
                    Type::Tuple(v) if v.len() == 2 => {
                        (v.first().cloned().unwrap_or_else(Type::unit), v.get(1).cloned().unwrap_or_else(Type::unit))
                    }
                    other => {
                        return err(
                            format!("the body of `scan` must return a pair (new_carry, y), got {other}"),
                            tail_span(ba),
                        )
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
            Builtin::Grad | Builtin::ValueAndGrad => Err(boxed(
                Diagnostic::new(format!("`{name}(f)` must be called at once, as in `{name}(f)(x, ...)`"), span)
                    .with_note(
                        "the derivative is not a value: it cannot be bound with `let`, returned or passed to a loop",
                    ),
            )),
        }
    }

    fn loop_body(&self, env: &Env<'a>, e: &'a ast::Expr, what: &str) -> DResult<Callable<'a>> {
        self.as_callable(env, e).ok_or_else(|| {
            boxed(
                Diagnostic::new(format!("`{what}` needs a lambda or a function here"), e.span)
                    .with_note("for example `|i, carry| carry + 1`"),
            )
        })
    }

    fn unroll_arg(&self, e: Option<&ast::Expr>) -> DResult<u32> {
        match e {
            None => Ok(1),
            Some(e) => match int_lit(e).and_then(|v| u32::try_from(v).ok()) {
                Some(v) if v >= 1 => Ok(v),
                _ => err("`unroll` must be a positive integer literal", e.span),
            },
        }
    }

    fn dtype_arg(&self, e: &ast::Expr) -> DResult<DType> {
        match &e.kind {
            A::Name(n) => dtype_of(&ast::Ident { name: n.clone(), span: e.span }),
            _ => err("expected a dtype such as `f32`", e.span),
        }
    }

    /// A static integer: a literal, or a shape variable known in this instance.
    fn static_int(&self, cx: &FnCtx, env: &Env<'a>, e: &ast::Expr) -> DResult<i128> {
        if let Some(i) = int_lit(e) {
            return Ok(i);
        }
        if let A::Name(n) = &e.kind {
            if env.get(n).is_none() {
                match cx.shapes.get(n) {
                    Some(Dim::Known(k)) => return Ok(i128::from(*k)),
                    Some(Dim::Var(v)) => {
                        return err(
                            format!("`{n}` is the symbolic shape variable {v} here; a static size is needed"),
                            e.span,
                        )
                    }
                    None => {}
                }
            }
        }
        err("expected an integer literal (a static size)", e.span)
    }

    fn static_uint(&self, cx: &FnCtx, env: &Env<'a>, e: &ast::Expr, what: &str) -> DResult<u64> {
        let v = self.static_int(cx, env, e)?;
        u64::try_from(v).or_else(|_| err(format!("{what} must not be negative"), e.span))
    }

    /// A static list of integers `[2, 3]` (or a single integer). `-1` is
    /// accepted only when `allow_hole`.
    fn shape_arg(&self, cx: &FnCtx, env: &Env<'a>, e: &ast::Expr, allow_hole: bool) -> DResult<Vec<i64>> {
        let items: Vec<&ast::Expr> = match &e.kind {
            A::List(xs) => xs.iter().collect(),
            _ => vec![e],
        };
        let mut out = Vec::new();
        for x in items {
            let v = self.static_int(cx, env, x)?;
            if v < 0 && !(allow_hole && v == -1) {
                return err(format!("a size must not be negative, got {v}"), x.span);
            }
            out.push(i64::try_from(v).or_else(|_| err("size too large", x.span))?);
        }
        Ok(out)
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

// ---------------------------------------------------------------------------
// Derivatives

impl<'a> Checker<'a> {
    /// `grad(f, argnums: ...)(args)` and `value_and_grad(f, ...)(args)`.
    #[allow(clippy::too_many_arguments)]
    fn grad_call(
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
                if cl.params.len() != args.len() {
                    let d = Diagnostic::new(
                        format!(
                            "this lambda takes {} argument{} but {} {} given",
                            cl.params.len(),
                            if cl.params.len() == 1 { "" } else { "s" },
                            args.len(),
                            if args.len() == 1 { "was" } else { "were" }
                        ),
                        span,
                    )
                    .with_label(cl.span, "the lambda");
                    return Err(boxed(d));
                }
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
