//! Builtin calls: binding a builtin's arguments, dispatching to its rule, and
//! the rules of the tensor builtins (creation, elementwise, reductions, shapes).
//!
//! Each builtin (or family sharing one rule, such as the elementwise unary
//! ops of [`UnaryOp`]'s table) has one `check_*` method; [`Checker::builtin`]
//! binds the arguments once and dispatches on [`Builtin`]. The loop builtins'
//! rules are in [`super::loops`].

use super::expr::fold_stack;
use super::literals::{coerce, int_lit, lit, unify_literals};
use super::{boxed, broadcast_error, dtype_of, mk, tensor_ty, Checker, Env, FnCtx};
use crate::ast::{self, ExprKind as A, LitValue};
use crate::build::Build;
use crate::builtins::{Builtin, BuiltinInfo};
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed as t;
use crate::types::{broadcast_dims, broadcasts_to, Dim, TensorTy, Type};
use loopvm_runtime::rules::{self, JoinError, ReshapeError};
use loopvm_runtime::{Accepts, BinaryOp, DType, ReduceOp, UnaryOp};

/// Normalises a possibly negative axis against `rank`.
pub(super) fn norm_axis(axis: i128, rank: usize, ty: &dyn std::fmt::Display, span: Span) -> DResult<u32> {
    let r = rank as i128;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return err(format!("axis {axis} is out of range for {ty} (rank {rank})"), span);
    }
    Ok(a as u32)
}

/// The arguments of one builtin call, bound against its [`BuiltinInfo`]:
/// positional arguments in order, named ones by name.
pub(super) struct BuiltinCall<'a> {
    /// The builtin's static facts.
    pub(super) info: &'a BuiltinInfo,
    /// The positional arguments.
    pos: Vec<&'a ast::Expr>,
    /// The named arguments, each accepted by the builtin and given once.
    named: Vec<(&'a ast::Ident, &'a ast::Expr)>,
    /// The span of the whole call.
    pub(super) span: Span,
}

impl<'a> BuiltinCall<'a> {
    /// Binds `args` against `info`: positional before named, only the named
    /// arguments the builtin accepts, each once, and the positional arity.
    fn bind(info: &'a BuiltinInfo, args: &'a [ast::Arg], span: Span) -> DResult<Self> {
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
            } else if info.max_args == usize::MAX {
                format!("at least {}", info.min_args)
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
        Ok(BuiltinCall { info, pos, named, span })
    }

    /// The builtin's name.
    pub(super) fn name(&self) -> &'static str {
        self.info.name
    }

    /// Positional argument `i`, which the arity check guarantees.
    pub(super) fn arg(&self, i: usize) -> DResult<&'a ast::Expr> {
        self.pos
            .get(i)
            .copied()
            .ok_or_else(|| boxed(Diagnostic::new(format!("missing argument of `{}`", self.name()), self.span)))
    }

    /// Positional argument `i`, if given (an optional one).
    pub(super) fn opt_arg(&self, i: usize) -> Option<&'a ast::Expr> {
        self.pos.get(i).copied()
    }

    /// The named argument `n`, if given.
    pub(super) fn named_arg(&self, n: &str) -> Option<&'a ast::Expr> {
        self.named.iter().find(|(m, _)| m.name == n).map(|(_, e)| *e)
    }

    /// The named `true`/`false` literal `n` (`default` when not given).
    pub(super) fn flag(&self, n: &str, default: bool) -> DResult<bool> {
        match self.named_arg(n) {
            None => Ok(default),
            Some(e) => match &e.kind {
                A::Lit(LitValue::Bool(b), _) => Ok(*b),
                _ => err(format!("`{n}` must be `true` or `false`"), e.span),
            },
        }
    }

    /// The literal `axis:` of a tensor of type `xt`, normalised (negative
    /// counts from the end); `default` when not given.
    pub(super) fn axis(&self, xt: &TensorTy, default: Option<i128>) -> DResult<Option<u32>> {
        let (a, span) = match self.named_arg("axis") {
            None => match default {
                None => return Ok(None),
                Some(a) => (a, self.span),
            },
            Some(e) => match int_lit(e) {
                Some(a) => (a, e.span),
                None => return err("`axis` must be an integer literal", e.span),
            },
        };
        norm_axis(a, xt.rank(), xt, span).map(Some)
    }
}

/// A tensor of `shape` holding `value` (a scalar or a tensor that broadcasts
/// to it): `value` itself when it already has that type.
fn filled(value: t::Expr, d: DType, shape: Vec<u64>, span: Span) -> t::Expr {
    let ty = tensor_ty(TensorTy::known(d, &shape));
    if value.ty == ty {
        return mk(value.kind, ty, span);
    }
    mk(t::ExprKind::Broadcast(Box::new(value), shape), ty, span)
}

impl<'a> Checker<'a> {
    /// Checks a call of the builtin `info`: binds its arguments, then applies
    /// the builtin's rule.
    pub(super) fn builtin(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        info: &'a BuiltinInfo,
        args: &'a [ast::Arg],
        span: Span,
    ) -> DResult<t::Expr> {
        let c = BuiltinCall::bind(info, args, span)?;
        match info.builtin {
            Builtin::Zeros => self.check_zeros_ones(cx, env, &c, false),
            Builtin::Ones => self.check_zeros_ones(cx, env, &c, true),
            Builtin::Full => self.check_full(cx, env, &c),
            Builtin::Iota => self.check_iota(cx, env, &c),
            Builtin::Unary(op) => self.check_unary(cx, env, &c, op),
            Builtin::Maximum => self.check_max_min(cx, env, &c, BinaryOp::Max),
            Builtin::Minimum => self.check_max_min(cx, env, &c, BinaryOp::Min),
            Builtin::Where => self.check_where(cx, env, &c),
            Builtin::Reduce(op) => self.check_reduce(cx, env, &c, op),
            Builtin::Reshape => self.check_reshape(cx, env, &c),
            Builtin::Transpose => self.check_transpose(cx, env, &c),
            Builtin::Broadcast => self.check_broadcast(cx, env, &c),
            Builtin::Concat => self.check_concat(cx, env, &c),
            Builtin::Stack => self.check_stack(cx, env, &c),
            Builtin::Einsum => self.check_einsum(cx, env, &c),
            Builtin::Take => self.check_take(cx, env, &c),
            Builtin::TakeAlongAxis => self.check_take_along_axis(cx, env, &c),
            Builtin::OneHot => self.check_one_hot(cx, env, &c),
            Builtin::DynamicSlice => self.check_dynamic_slice(cx, env, &c),
            Builtin::DynamicUpdateSlice => self.check_dynamic_update_slice(cx, env, &c),
            Builtin::Cumsum => self.check_cumsum(cx, env, &c),
            Builtin::Print => self.check_print(cx, env, &c),
            Builtin::Shape => self.check_shape(cx, env, &c),
            Builtin::Bitcast => self.check_bitcast(cx, env, &c),
            Builtin::Shard => self.check_shard(cx, env, &c),
            Builtin::ForiLoop => self.check_fori_loop(cx, env, &c),
            Builtin::WhileLoop => self.check_while_loop(cx, env, &c),
            Builtin::Scan => self.check_scan(cx, env, &c),
            Builtin::Grad | Builtin::ValueAndGrad | Builtin::Vmap => check_grad_value(&c),
            Builtin::Softmax => self.check_softmax(cx, env, &c, false),
            Builtin::LogSoftmax => self.check_softmax(cx, env, &c, true),
            Builtin::Logsumexp => self.check_logsumexp(cx, env, &c),
            Builtin::Gelu => self.check_gelu(cx, env, &c),
            Builtin::StopGradient => self.check_stop_gradient(cx, env, &c),
            Builtin::TreeMap => self.check_tree_map(cx, env, &c),
            Builtin::Key => self.check_key(cx, env, &c),
            Builtin::Split => self.check_split(cx, env, &c),
            Builtin::FoldIn => self.check_fold_in(cx, env, &c),
            Builtin::RandomBits => self.check_random_bits(cx, env, &c),
            Builtin::Uniform => self.check_uniform(cx, env, &c, false),
            Builtin::Normal => self.check_uniform(cx, env, &c, true),
            Builtin::Bernoulli => self.check_bernoulli(cx, env, &c),
            Builtin::Categorical => self.check_categorical(cx, env, &c),
        }
    }

    // -----------------------------------------------------------------------
    // Creation

    /// The `dtype, [dims]` arguments of `zeros`, `ones` and `full`.
    fn creation_dtype_shape(&self, cx: &FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<(DType, Vec<u64>)> {
        let d = self.dtype_arg(c.arg(0)?)?;
        let shape = self.shape_arg(cx, env, c.arg(1)?, false)?;
        let shape: Vec<u64> = shape.into_iter().map(|x| x as u64).collect();
        Ok((d, shape))
    }

    /// `zeros(dtype, [dims])` and `ones(dtype, [dims])`.
    fn check_zeros_ones(&self, cx: &FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>, one: bool) -> DResult<t::Expr> {
        let span = c.span;
        let (d, shape) = self.creation_dtype_shape(cx, env, c)?;
        let value = if one {
            lit(if d == DType::Bool { LitValue::Bool(true) } else { LitValue::Int(1) }, d, span)?
        } else {
            lit(if d == DType::Bool { LitValue::Bool(false) } else { LitValue::Int(0) }, d, span)?
        };
        Ok(filled(value, d, shape, span))
    }

    /// `full(dtype, [dims], value)`: the value has the dtype and broadcasts to the shape.
    fn check_full(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = c.span;
        let (d, shape) = self.creation_dtype_shape(cx, env, c)?;
        let va = c.arg(2)?;
        let v = self.expr_as(cx, env, va, d)?;
        let v = coerce(Some(va), v, d)?;
        let vt = self.tensor(&v, "`full`")?.clone();
        if vt.dtype != d {
            return err(format!("the value of `full` has type {vt} but the dtype is {d}"), va.span);
        }
        if !broadcasts_to(&vt.dims, &shape.iter().map(|x| Dim::Known(*x)).collect::<Vec<_>>()) {
            return err(format!("the value {vt} does not broadcast to the shape {shape:?}"), va.span);
        }
        Ok(filled(v, d, shape, span))
    }

    /// `iota(dtype, n)`: a numeric dtype and a static length.
    fn check_iota(&self, cx: &FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let d = self.dtype_arg(c.arg(0)?)?;
        if d == DType::Bool {
            return err("`iota` needs a numeric dtype", c.arg(0)?.span);
        }
        let n = self.static_uint(cx, env, c.arg(1)?, "the length of `iota`")?;
        Ok(mk(t::ExprKind::Iota(d, n), tensor_ty(TensorTy::known(d, &[n])), c.span))
    }

    // -----------------------------------------------------------------------
    // Elementwise

    /// `exp(x)` and every other elementwise unary builtin: one rule driven by
    /// the op's row in [`UnaryOp`]'s table (which dtypes it accepts).
    fn check_unary(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>, op: UnaryOp) -> DResult<t::Expr> {
        let name = c.name();
        let xa = c.arg(0)?;
        let mut x = self.expr(cx, env, xa)?;
        let accepts = op.accepts();
        if accepts == Accepts::Float {
            x = coerce(Some(xa), x, DType::F32)?;
        }
        let xt = self.tensor(&x, &format!("`{name}`"))?.clone();
        if !accepts.accepts(xt.dtype) {
            let mut d = Diagnostic::new(format!("`{name}` requires {}, got {xt}", accepts.requirement()), xa.span);
            if accepts == Accepts::Float {
                d = d.with_note("convert it with `as f32`");
            }
            return Err(boxed(d));
        }
        Ok(mk(t::ExprKind::Unary(op, Box::new(x)), tensor_ty(xt), c.span))
    }

    /// `maximum(a, b)` and `minimum(a, b)` (`op` is [`BinaryOp::Max`] or
    /// [`BinaryOp::Min`]): one dtype, broadcast shapes.
    fn check_max_min(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>, op: BinaryOp) -> DResult<t::Expr> {
        let (name, span) = (c.name(), c.span);
        let (aa, ba) = (c.arg(0)?, c.arg(1)?);
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
        Ok(mk(t::ExprKind::Binary(op, Box::new(a), Box::new(b)), tensor_ty(TensorTy { dtype: at.dtype, dims }), span))
    }

    /// `where(cond, a, b)`: a bool condition, one dtype for the branches, all
    /// three shapes broadcast together.
    fn check_where(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = c.span;
        let (ca, aa, ba) = (c.arg(0)?, c.arg(1)?, c.arg(2)?);
        let cond = self.expr(cx, env, ca)?;
        let ct = self.tensor(&cond, "`where`")?.clone();
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
        let dims = broadcast_dims(&at.dims, &bt.dims).map_err(|c| broadcast_error("where", &at, &bt, c, span))?;
        let tmp = TensorTy { dtype: at.dtype, dims };
        let dims = broadcast_dims(&ct.dims, &tmp.dims).map_err(|c| broadcast_error("where", &ct, &tmp, c, span))?;
        Ok(mk(
            t::ExprKind::Select(Box::new(cond), Box::new(a), Box::new(b)),
            tensor_ty(TensorTy { dtype: at.dtype, dims }),
            span,
        ))
    }

    // -----------------------------------------------------------------------
    // Reductions

    /// `sum(x, axis: k)` and the other reductions of [`ReduceOp`]: over every
    /// axis, or over the literal axis `k`.
    fn check_reduce(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>, op: ReduceOp) -> DResult<t::Expr> {
        let name = c.name();
        let xa = c.arg(0)?;
        let x = self.expr(cx, env, xa)?;
        let xt = self.tensor(&x, &format!("`{name}`"))?.clone();
        let axis = c.axis(&xt, None)?;
        let keepdims = c.flag("keepdims", false)?;
        if op == ReduceOp::Argmax && xt.dims.contains(&Dim::Known(0)) {
            return err(format!("`argmax` of an empty tensor {xt}"), xa.span);
        }
        let b = Build { span: c.span };
        Ok(if keepdims { b.reduce_keep(op, x, axis) } else { b.reduce(op, x, axis) })
    }

    // -----------------------------------------------------------------------
    // Shapes

    /// `reshape(x, [dims])`: at most one `-1`, the same number of elements.
    /// A dim may be a product of shape variables and integers (`B * T`);
    /// with symbolic dims the element counts are compared as monomials
    /// (`[B, T, D]` has `B*T*D` elements): equal ones fit, a `-1` is their
    /// quotient (which must be a monomial), and counts that only the run
    /// time can compare (`f32[N]` to `[B, T]`) are checked when it runs. A
    /// result of static shape is a `Reshape`; one with shape variables a
    /// `ReshapeAs`, which reads its shape from its type.
    fn check_reshape(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let xa = c.arg(0)?;
        let x = self.expr(cx, env, xa)?;
        let xt = self.tensor(&x, "`reshape`")?.clone();
        let sa = c.arg(1)?;
        let target = self.reshape_dims(cx, env, sa)?;
        let statics: Option<Vec<Option<u64>>> =
            target.iter().map(|d| d.as_ref().map_or(Some(None), |d| d.known().map(Some))).collect();
        let written = || {
            let ds: Vec<String> =
                target.iter().map(|d| d.as_ref().map_or("-1".to_string(), |d| d.to_string())).collect();
            format!("[{}]", ds.join(", "))
        };
        if let (Some(to), true) = (&statics, xt.known_dims().is_some()) {
            let hole = match rules::reshape(&xt.dims, to) {
                Ok(hole) => hole,
                Err(ReshapeError::Symbolic) => {
                    return err(format!("cannot reshape {xt}: its shape is symbolic"), xa.span)
                }
                Err(ReshapeError::TooLarge) => return err("tensor too large", xa.span),
                Err(ReshapeError::Holes) => return err("`reshape` accepts at most one -1", sa.span),
                Err(ReshapeError::Mismatch { count }) => {
                    return err(format!("cannot reshape {xt} ({count} elements) to {}", written()), sa.span)
                }
            };
            let out: Vec<u64> = to.iter().map(|d| d.or(hole).unwrap_or(0)).collect();
            return Ok(mk(
                t::ExprKind::Reshape(Box::new(x), out.clone()),
                tensor_ty(TensorTy::known(xt.dtype, &out)),
                c.span,
            ));
        }
        // Symbolic: compare the element counts as monomials.
        if target.iter().filter(|d| d.is_none()).count() > 1 {
            return err("`reshape` accepts at most one -1", sa.span);
        }
        let too_large = || err("tensor too large", sa.span);
        let Some((kf, vf)) = Dim::product(&xt.dims) else { return too_large() };
        let Some((kt, vt)) = Dim::product(target.iter().flatten()) else { return too_large() };
        let count = |k: u64, v: &[String]| Dim::monomial(k, v.to_vec()).to_string();
        let hole = if target.contains(&None) {
            let mut rest = vf.clone();
            let divides = vt.iter().all(|v| rest.iter().position(|r| r == v).map(|i| rest.remove(i)).is_some());
            if kt == 0 || kf % kt != 0 || !divides {
                return Err(boxed(
                    Diagnostic::new(
                        format!(
                            "cannot infer the -1 of `reshape`: {xt} has {} elements, not a multiple of {}",
                            count(kf, &vf),
                            count(kt, &vt)
                        ),
                        sa.span,
                    )
                    .with_note("write the size instead of -1"),
                ));
            }
            Some(Dim::monomial(kf / kt, rest))
        } else {
            if vf == vt && kf != kt {
                return err(
                    format!(
                        "cannot reshape {xt} ({} elements) to {} ({} elements)",
                        count(kf, &vf),
                        written(),
                        count(kt, &vt)
                    ),
                    sa.span,
                );
            }
            None
        };
        let dims: Vec<Dim> = target.into_iter().map(|d| d.or_else(|| hole.clone()).unwrap_or(Dim::Known(0))).collect();
        let ty = TensorTy { dtype: xt.dtype, dims };
        Ok(Build { span: c.span }.reshape_to(x, ty))
    }

    /// The shape list of `reshape`: a list (or one item) of dims, each an
    /// integer literal, a shape variable, or a product of them (`B * T`,
    /// `2 * H`, parenthesised freely), or `-1` alone (`None`: the hole).
    fn reshape_dims(&self, cx: &FnCtx, env: &Env<'a>, e: &ast::Expr) -> DResult<Vec<Option<Dim>>> {
        let items: Vec<&ast::Expr> = match &e.kind {
            A::List(xs) => xs.iter().collect(),
            _ => vec![e],
        };
        items
            .into_iter()
            .map(|x| match int_lit(x) {
                Some(-1) => Ok(None),
                _ => self.dim_expr(cx, env, x).map(Some),
            })
            .collect()
    }

    /// One dim of a shape list: see [`Checker::reshape_dims`].
    fn dim_expr(&self, cx: &FnCtx, env: &Env<'a>, e: &ast::Expr) -> DResult<Dim> {
        match &e.kind {
            A::Paren(x) => self.dim_expr(cx, env, x),
            A::Binary(ast::BinOp::Mul, a, b) => {
                let (a, b) = (self.dim_expr(cx, env, a)?, self.dim_expr(cx, env, b)?);
                let Some((k, v)) = Dim::product([&a, &b]) else { return err("size too large", e.span) };
                Ok(Dim::monomial(k, v))
            }
            A::Name(n) if env.get(n).is_none() && cx.shapes.contains_key(n) => Ok(cx.shapes[n].clone()),
            _ => {
                let v = self.static_int(cx, env, e).map_err(|d| {
                    boxed(Diagnostic::new(d.message.clone(), e.span).with_note(
                        "a dim of `reshape` is an integer, a shape variable, or a product of them (`B * T`)",
                    ))
                })?;
                if v < 0 {
                    return err(format!("a size must not be negative, got {v}"), e.span);
                }
                Ok(Dim::Known(u64::try_from(v).or_else(|_| err("size too large", e.span))?))
            }
        }
    }

    /// `transpose(x)` (reversed axes) and `transpose(x, [perm])`.
    fn check_transpose(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let xa = c.arg(0)?;
        let x = self.expr(cx, env, xa)?;
        let xt = self.tensor(&x, "`transpose`")?.clone();
        let (perm, dims) = match c.opt_arg(1) {
            None => (None, xt.dims.iter().rev().cloned().collect()),
            Some(pa) => {
                let p = self.shape_arg(cx, env, pa, false)?;
                let axes: Vec<usize> = p.iter().map(|&a| usize::try_from(a).unwrap_or(usize::MAX)).collect();
                let Ok(perm) = rules::permutation(xt.rank(), Some(&axes)) else {
                    return err(format!("{p:?} is not a permutation of the axes of {xt}"), pa.span);
                };
                let dims = rules::permute(&xt.dims, &perm);
                (Some(perm.iter().map(|&a| a as u32).collect()), dims)
            }
        };
        Ok(mk(t::ExprKind::Transpose(Box::new(x), perm), tensor_ty(TensorTy { dtype: xt.dtype, dims }), c.span))
    }

    /// `broadcast(x, [dims])`: `x` broadcasts to the static shape.
    fn check_broadcast(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let xa = c.arg(0)?;
        let x = self.expr(cx, env, xa)?;
        let xt = self.tensor(&x, "`broadcast`")?.clone();
        let shape: Vec<u64> = self.shape_arg(cx, env, c.arg(1)?, false)?.into_iter().map(|d| d as u64).collect();
        let to = TensorTy::known(xt.dtype, &shape);
        if !broadcasts_to(&xt.dims, &to.dims) {
            return err(format!("cannot broadcast {xt} to {to}"), c.span);
        }
        Ok(mk(t::ExprKind::Broadcast(Box::new(x), shape), tensor_ty(to), c.span))
    }

    /// The operands of `concat` and `stack`: a non-empty list literal of
    /// tensors of one dtype and rank, and the literal `axis:` (0 if not
    /// given) with the span to blame for it.
    fn joined_operands(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        c: &BuiltinCall<'a>,
    ) -> DResult<(Joined<'a>, i128, Span)> {
        let (name, span) = (c.name(), c.span);
        let la = c.arg(0)?;
        let A::List(items) = &la.kind else {
            return err(format!("`{name}` takes a list literal of tensors: {}", c.info.signature), la.span);
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
                return err(format!("`{name}` of tensors of different dtypes or ranks: {first} and {xt}"), it.span);
            }
        }
        let axis_lit = match c.named_arg("axis") {
            None => 0,
            Some(e) => int_lit(e).ok_or_else(|| boxed(Diagnostic::new("`axis` must be an integer literal", e.span)))?,
        };
        let axis_span = c.named_arg("axis").map_or(span, |e| e.span);
        Ok((Joined { list: la, items, xs, first }, axis_lit, axis_span))
    }

    /// `stack([a, b, ...], axis: k)`: tensors of one type, a new axis `k`.
    fn check_stack(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = c.span;
        let (Joined { items, xs, first, .. }, axis_lit, axis_span) = self.joined_operands(cx, env, c)?;
        let axis = norm_axis(axis_lit, first.rank() + 1, &first, axis_span);
        let tys: Vec<&TensorTy> = xs.iter().filter_map(|x| x.ty.tensor()).collect();
        // A shape that differs is reported before a bad axis.
        let at = axis.as_ref().map_or(0, |&a| a as usize);
        let dims = match rules::stack(tys.iter().map(|t| ((), t.dims.as_slice())), at) {
            Ok(dims) => dims,
            Err(JoinError::Shape(i)) => {
                let (it, x) = (items.get(i).map_or(span, |it| it.span), xs.get(i).map(|x| &x.ty));
                let x = x.map(|t| t.to_string()).unwrap_or_default();
                return err(format!("`stack` of tensors of different types: {first} and {x}"), it);
            }
            Err(e) => return err(format!("internal error: `stack` of {first}: {e:?}"), span),
        };
        let axis = axis?;
        if let (0, Some(c)) = (axis, fold_stack(&xs)) {
            return Ok(mk(t::ExprKind::Const(c), tensor_ty(TensorTy { dtype: first.dtype, dims }), span));
        }
        Ok(mk(t::ExprKind::Stack(xs, axis), tensor_ty(TensorTy { dtype: first.dtype, dims }), span))
    }

    /// `concat([a, b, ...], axis: k)`: tensors of rank 1 or more that agree
    /// on every dim but `k`.
    fn check_concat(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = c.span;
        let (Joined { list: la, items, xs, first }, axis_lit, axis_span) = self.joined_operands(cx, env, c)?;
        if first.rank() == 0 {
            return err("`concat` needs tensors of rank 1 or more; use `stack` for scalars", la.span);
        }
        let axis = norm_axis(axis_lit, first.rank(), &first, axis_span)?;
        let tys: Vec<&TensorTy> = xs.iter().filter_map(|x| x.ty.tensor()).collect();
        let dims = match rules::concat(tys.iter().map(|t| ((), t.dims.as_slice())), axis as usize) {
            Ok(dims) => dims,
            Err(JoinError::Shape(i)) => {
                let it = items.get(i).map_or(span, |it| it.span);
                let xt = tys.get(i).map(|t| t.to_string()).unwrap_or_default();
                return err(format!("`concat` along axis {axis} of {first} and {xt}: the other dims differ"), it);
            }
            Err(_) => return err("cannot concatenate along an axis of symbolic size", la.span),
        };
        Ok(mk(t::ExprKind::Concat(xs, axis), tensor_ty(TensorTy { dtype: first.dtype, dims }), span))
    }

    // -----------------------------------------------------------------------
    // Effects and metadata

    /// `print(x)`: any value, the unit result.
    fn check_print(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let x = self.expr(cx, env, c.arg(0)?)?;
        Ok(mk(t::ExprKind::Print(Box::new(x)), Type::unit(), c.span))
    }

    /// `shape(x)`: the dims of a tensor as an `i32[rank]`.
    fn check_shape(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let x = self.expr(cx, env, c.arg(0)?)?;
        let xt = self.tensor(&x, "`shape`")?.clone();
        Ok(mk(t::ExprKind::ShapeOf(Box::new(x)), tensor_ty(TensorTy::known(DType::I32, &[xt.rank() as u64])), c.span))
    }

    /// `bitcast(x, dtype)`: `lax.bitcast_convert_type` between number
    /// dtypes of one element width.
    fn check_bitcast(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let x = self.expr(cx, env, c.arg(0)?)?;
        let xt = self.tensor(&x, "`bitcast`")?.clone();
        let to = self.dtype_arg(c.arg(1)?)?;
        if !xt.dtype.can_bitcast(to) {
            return Err(boxed(
                Diagnostic::new(format!("cannot bitcast {xt} to {to}"), c.span)
                    .with_note("bitcast needs two number dtypes of one element width: u32, i32 and f32; i64 and f64"),
            ));
        }
        if xt.dtype == to {
            return Ok(x);
        }
        Ok(mk(t::ExprKind::Bitcast(Box::new(x), to), tensor_ty(xt.with_dtype(to)), c.span))
    }

    // -----------------------------------------------------------------------
    // Static arguments

    /// A dtype name such as `f32`.
    pub(super) fn dtype_arg(&self, e: &ast::Expr) -> DResult<DType> {
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

    /// A static integer that must not be negative; `what` names it in the error.
    pub(super) fn static_uint(&self, cx: &FnCtx, env: &Env<'a>, e: &ast::Expr, what: &str) -> DResult<u64> {
        let v = self.static_int(cx, env, e)?;
        u64::try_from(v).or_else(|_| err(format!("{what} must not be negative"), e.span))
    }

    /// A static list of integers `[2, 3]` (or a single integer). `-1` is
    /// accepted only when `allow_hole`.
    pub(super) fn shape_arg(&self, cx: &FnCtx, env: &Env<'a>, e: &ast::Expr, allow_hole: bool) -> DResult<Vec<i64>> {
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

/// The checked operands of `concat` or `stack`.
struct Joined<'a> {
    /// The list literal.
    list: &'a ast::Expr,
    /// Its items, as written.
    items: &'a [ast::Expr],
    /// Its items, checked.
    xs: Vec<t::Expr>,
    /// The type of the first item (every item has its dtype and rank).
    first: TensorTy,
}

/// `grad(f)` and `value_and_grad(f)` not called at once (the called form is
/// [`Checker::grad_call`]): always an error.
fn check_grad_value(c: &BuiltinCall<'_>) -> DResult<t::Expr> {
    let (name, span) = (c.name(), c.span);
    Err(boxed(
        Diagnostic::new(format!("`{name}(f)` must be called at once, as in `{name}(f)(x, ...)`"), span).with_note(
            "the transformed function is not a value: it cannot be bound with `let`, returned or passed to a loop",
        ),
    ))
}
