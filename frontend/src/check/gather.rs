//! The gather builtins (`take`, `take_along_axis`, `one_hot`), the window
//! builtins (`dynamic_slice`, `dynamic_update_slice`) and `cumsum`.
//!
//! `take`, the windows and `cumsum` are instructions of their own;
//! `take_along_axis` and `one_hot` expand here into existing ops:
//! `take_along_axis` is a `take` from the flattened operand at computed flat
//! positions, `one_hot` a comparison with an `iota`.

use super::builtin_rules::{norm_axis, BuiltinCall};
use super::literals::int_lit;
use super::{mk, tensor_ty, Checker, Env, FnCtx};
use crate::ast::{self, ExprKind as A, LitValue};
use crate::diag::{err, DResult, Span};
use crate::typed::{self as t, ConstData, ConstValues};
use crate::types::{Dim, TensorTy};
use loopvm_runtime::rules::{self, WindowError};
use loopvm_runtime::{BinaryOp, DType};

/// A scalar integer constant of dtype `d`.
fn int_const(d: DType, v: i64, span: Span) -> t::Expr {
    let data = ConstData { dtype: d, shape: Vec::new(), values: ConstValues::Int(vec![v]) };
    mk(t::ExprKind::Const(data), tensor_ty(TensorTy::scalar(d)), span)
}

/// `a op b` of one dtype, with the broadcast shape `dims`.
fn bin(op: BinaryOp, a: t::Expr, b: t::Expr, dtype: DType, dims: &[u64], span: Span) -> t::Expr {
    mk(t::ExprKind::Binary(op, Box::new(a), Box::new(b)), tensor_ty(TensorTy::known(dtype, dims)), span)
}

/// `reshape(x, dims)` (the caller keeps the element count).
fn reshape(x: t::Expr, dtype: DType, dims: &[u64], span: Span) -> t::Expr {
    mk(t::ExprKind::Reshape(Box::new(x), dims.to_vec()), tensor_ty(TensorTy::known(dtype, dims)), span)
}

/// `broadcast(x, dims)`, or `x` when it has that shape already.
fn broadcast(x: t::Expr, dtype: DType, from: &[u64], dims: &[u64], span: Span) -> t::Expr {
    if from == dims {
        return x;
    }
    mk(t::ExprKind::Broadcast(Box::new(x), dims.to_vec()), tensor_ty(TensorTy::known(dtype, dims)), span)
}

impl<'a> Checker<'a> {
    /// The literal `axis:` of `c` normalised against `xt`, or `None` when
    /// the call has none.
    fn axis_arg(&self, c: &BuiltinCall<'a>, xt: &TensorTy) -> DResult<Option<u32>> {
        match c.named_arg("axis") {
            None => Ok(None),
            Some(e) => {
                let Some(a) = int_lit(e) else {
                    return err("`axis` must be an integer literal", e.span);
                };
                Ok(Some(norm_axis(a, xt.rank(), xt, e.span)?))
            }
        }
    }

    /// `x` as a rank-1 tensor (`jnp`'s `axis=None`), which needs a known shape.
    fn flattened(&self, x: t::Expr, xt: &TensorTy, name: &str, span: Span) -> DResult<(t::Expr, TensorTy)> {
        let Some(dims) = xt.known_dims() else {
            return err(format!("`{name}` without `axis:` flattens its operand, whose type {xt} is symbolic"), span);
        };
        let n: u64 = dims.iter().product();
        let ft = TensorTy::known(xt.dtype, &[n]);
        Ok((reshape(x, xt.dtype, &[n], span), ft))
    }

    /// An integer tensor operand (ids), checked.
    fn ids_arg(&mut self, cx: &mut FnCtx, env: &Env<'a>, e: &'a ast::Expr, name: &str) -> DResult<(t::Expr, TensorTy)> {
        let ids = self.expr(cx, env, e)?;
        let it = self.tensor(&ids, &format!("`{name}`"))?.clone();
        if !it.dtype.is_int() {
            return err(format!("the ids of `{name}` must be an integer tensor, got {it}"), e.span);
        }
        Ok((ids, it))
    }

    /// `take(x, ids, axis: k)`: `jnp.take(x, ids, axis=k, mode="clip")`;
    /// without `axis:` the operand is flattened first, as in `jnp`.
    pub(super) fn check_take(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = c.span;
        let xa = c.arg(0)?;
        let x = self.expr(cx, env, xa)?;
        let xt = self.tensor(&x, "`take`")?.clone();
        let (ids, it) = self.ids_arg(cx, env, c.arg(1)?, "take")?;
        if xt.rank() == 0 {
            return err(format!("`take` needs an operand of rank 1 or more, got {xt}"), xa.span);
        }
        let (x, xt, axis) = match self.axis_arg(c, &xt)? {
            Some(a) => (x, xt, a),
            None => {
                let (x, ft) = self.flattened(x, &xt, "take", span)?;
                (x, ft, 0)
            }
        };
        if xt.dims.get(axis as usize) == Some(&Dim::Known(0)) {
            return err(format!("`take` from the empty axis {axis} of {xt}"), xa.span);
        }
        let dims: Vec<Dim> = rules::take(&xt.dims, &it.dims, axis as usize).unwrap_or_default();
        let ty = tensor_ty(TensorTy { dtype: xt.dtype, dims });
        Ok(mk(t::ExprKind::Take(Box::new(x), Box::new(ids), axis), ty, span))
    }

    /// `take_along_axis(x, idx, axis: k)`: `jnp.take_along_axis(x, idx, k,
    /// mode="clip")`: `idx` has `x`'s rank, the other axes broadcast; a
    /// negative index counts from the end once, then indices are clamped.
    /// Expanded to a `take` from the flattened (broadcast) `x` at the flat
    /// position of each element.
    pub(super) fn check_take_along_axis(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        c: &BuiltinCall<'a>,
    ) -> DResult<t::Expr> {
        const NAME: &str = "take_along_axis";
        let span = c.span;
        let xa = c.arg(0)?;
        let x = self.expr(cx, env, xa)?;
        let xt = self.tensor(&x, "`take_along_axis`")?.clone();
        let ia = c.arg(1)?;
        let (idx, it) = self.ids_arg(cx, env, ia, NAME)?;
        let Some(axis) = self.axis_arg(c, &xt)? else {
            return err("`take_along_axis` needs `axis: k`", span);
        };
        let k = axis as usize;
        if it.rank() != xt.rank() {
            return err(format!("the indices {it} of `take_along_axis` must have the rank of {xt}"), ia.span);
        }
        let (Some(xd), Some(id)) = (xt.known_dims(), it.known_dims()) else {
            return err(format!("`take_along_axis` of the symbolic types {xt} and {it}"), span);
        };
        // The result's shape: idx's length on axis k, the others broadcast.
        let mut out = Vec::with_capacity(xd.len());
        for (j, (&a, &b)) in xd.iter().zip(&id).enumerate() {
            out.push(match (j == k, a, b) {
                (true, _, b) => b,
                (false, a, b) if a == b || b == 1 => a,
                (false, 1, b) => b,
                _ => return err(format!("`take_along_axis`: {xt} and the indices {it} differ on axis {j}"), ia.span),
            });
        }
        let n = xd[k];
        if n == 0 && out.iter().product::<u64>() > 0 {
            return err(format!("`take_along_axis` from the empty axis {k} of {xt}"), xa.span);
        }
        let mut xs = out.clone();
        xs[k] = n;
        let total: u64 = xs.iter().product();
        let d = if total <= i32::MAX as u64 { it.dtype } else { DType::I64 };
        let idx = if d == it.dtype {
            idx
        } else {
            mk(t::ExprKind::Cast(Box::new(idx), d), tensor_ty(TensorTy::known(d, &id)), span)
        };
        // The operand and the indices are bound once, in source order: the
        // expansion below reads the indices three times.
        let bind = |cx: &mut FnCtx, e: t::Expr| {
            let v = cx.new_var("_", e.ty.clone());
            (t::Stmt::Let(t::Pattern::Var(v), e.clone()), mk(t::ExprKind::Var(v), e.ty, span))
        };
        let (let_x, x) = bind(cx, x);
        let (let_idx, idx) = bind(cx, broadcast(idx, d, &id, &out, span));
        // Negative indices count from the end once, then clamp into [0, n - 1].
        let zero = int_const(d, 0, span);
        let neg = mk(
            t::ExprKind::Binary(BinaryOp::Lt, Box::new(idx.clone()), Box::new(zero.clone())),
            tensor_ty(TensorTy::known(DType::Bool, &out)),
            span,
        );
        let wrapped = bin(BinaryOp::Add, idx.clone(), int_const(d, n as i64, span), d, &out, span);
        let idx = mk(
            t::ExprKind::Select(Box::new(neg), Box::new(wrapped), Box::new(idx)),
            tensor_ty(TensorTy::known(d, &out)),
            span,
        );
        let idx = bin(BinaryOp::Max, idx, zero, d, &out, span);
        let idx = bin(BinaryOp::Min, idx, int_const(d, n.saturating_sub(1) as i64, span), d, &out, span);
        // The flat position: sum over the axes of coordinate * stride.
        let mut flat: Option<t::Expr> = None;
        let mut stride = 1u64;
        for j in (0..xs.len()).rev() {
            let coord = if j == k {
                idx.clone()
            } else {
                let len = out[j];
                let io = mk(t::ExprKind::Iota(d, len), tensor_ty(TensorTy::known(d, &[len])), span);
                let mut one = vec![1u64; out.len()];
                one[j] = len;
                let io = reshape(io, d, &one, span);
                broadcast(io, d, &one, &out, span)
            };
            let term = if stride == 1 {
                coord
            } else {
                bin(BinaryOp::Mul, coord, int_const(d, stride as i64, span), d, &out, span)
            };
            flat = Some(match flat {
                None => term,
                Some(f) => bin(BinaryOp::Add, f, term, d, &out, span),
            });
            stride = stride.saturating_mul(xs[j]);
        }
        let flat = flat.unwrap_or_else(|| int_const(d, 0, span));
        let x = broadcast(x, xt.dtype, &xd, &xs, span);
        let x = reshape(x, xt.dtype, &[total], span);
        let ty = tensor_ty(TensorTy::known(xt.dtype, &out));
        let take = mk(t::ExprKind::Take(Box::new(x), Box::new(flat), 0), ty.clone(), span);
        Ok(mk(t::ExprKind::Block(vec![let_x, let_idx], Box::new(take)), ty, span))
    }

    /// `one_hot(ids, n, dtype: d)`: `jax.nn.one_hot`: a new last axis of
    /// length `n`, 1 where it equals the id (an id outside `[0, n)` gives a
    /// row of zeros); `f32` unless `dtype:` says otherwise.
    pub(super) fn check_one_hot(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = c.span;
        let ia = c.arg(0)?;
        let (ids, it) = self.ids_arg(cx, env, ia, "one_hot")?;
        let n = self.static_uint(cx, env, c.arg(1)?, "the length of `one_hot`")?;
        let d = match c.named_arg("dtype") {
            None => DType::F32,
            Some(e) => self.dtype_arg(e)?,
        };
        let Some(id) = it.known_dims() else {
            return err(format!("`one_hot` of the symbolic type {it}"), ia.span);
        };
        let mut col = id.clone();
        col.push(1);
        let mut out = id;
        out.push(n);
        let ids = reshape(ids, it.dtype, &col, span);
        let io = mk(t::ExprKind::Iota(it.dtype, n), tensor_ty(TensorTy::known(it.dtype, &[n])), span);
        let eq = bin(BinaryOp::Eq, ids, io, DType::Bool, &out, span);
        if d == DType::Bool {
            return Ok(eq);
        }
        Ok(mk(t::ExprKind::Cast(Box::new(eq), d), tensor_ty(TensorTy::known(d, &out)), span))
    }

    /// The list literal of integer scalar starts of a window into `xt`, one per axis.
    fn starts_arg(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        e: &'a ast::Expr,
        xt: &TensorTy,
        name: &str,
    ) -> DResult<Vec<t::Expr>> {
        let A::List(items) = &e.kind else {
            return err(format!("the starts of `{name}` must be a list literal `[i, j, ...]`"), e.span);
        };
        if items.len() != xt.rank() {
            return err(
                format!("`{name}` of {xt} needs {} starts, one per axis, got {}", xt.rank(), items.len()),
                e.span,
            );
        }
        items.iter().map(|it| self.index_value(cx, env, it)).collect()
    }

    /// The error of a window that does not fit `xt`.
    fn window_error(e: WindowError, xt: &TensorTy, name: &str, span: Span) -> DResult<()> {
        match e {
            WindowError::Rank { rank, got } => {
                err(format!("`{name}` of {xt} needs {rank} sizes, one per axis, got {got}"), span)
            }
            WindowError::TooLarge { axis } => {
                err(format!("the window of `{name}` is larger than {xt} along axis {axis}"), span)
            }
        }
    }

    /// `dynamic_slice(x, [starts], [sizes])`: `lax.dynamic_slice`.
    pub(super) fn check_dynamic_slice(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        c: &BuiltinCall<'a>,
    ) -> DResult<t::Expr> {
        const NAME: &str = "dynamic_slice";
        let x = self.expr(cx, env, c.arg(0)?)?;
        let xt = self.tensor(&x, "`dynamic_slice`")?.clone();
        let starts = self.starts_arg(cx, env, c.arg(1)?, &xt, NAME)?;
        let sa = c.arg(2)?;
        let sizes: Vec<u64> = self.shape_arg(cx, env, sa, false)?.into_iter().map(|d| d as u64).collect();
        if let Err(e) = rules::window(&xt.dims, &sizes) {
            Self::window_error(e, &xt, NAME, sa.span)?;
        }
        let ty = tensor_ty(TensorTy::known(xt.dtype, &sizes));
        Ok(mk(t::ExprKind::DynSlice(Box::new(x), starts, sizes), ty, c.span))
    }

    /// `dynamic_update_slice(x, u, [starts])`: `lax.dynamic_update_slice`.
    pub(super) fn check_dynamic_update_slice(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        c: &BuiltinCall<'a>,
    ) -> DResult<t::Expr> {
        const NAME: &str = "dynamic_update_slice";
        let x = self.expr(cx, env, c.arg(0)?)?;
        let xt = self.tensor(&x, "`dynamic_update_slice`")?.clone();
        let ua = c.arg(1)?;
        let u = self.expr(cx, env, ua)?;
        let u = super::literals::coerce(Some(ua), u, xt.dtype)?;
        let ut = self.tensor(&u, "`dynamic_update_slice`")?.clone();
        if ut.dtype != xt.dtype || ut.rank() != xt.rank() {
            return err(format!("the update of `{NAME}` must have the dtype and rank of {xt}, got {ut}"), ua.span);
        }
        let starts = self.starts_arg(cx, env, c.arg(2)?, &xt, NAME)?;
        if let Some(sizes) = ut.known_dims() {
            if let Err(e) = rules::window(&xt.dims, &sizes) {
                Self::window_error(e, &xt, NAME, ua.span)?;
            }
        }
        Ok(mk(t::ExprKind::DynUpdateSlice(Box::new(x), Box::new(u), starts), tensor_ty(xt), c.span))
    }

    /// `cumsum(x, axis: k, reverse: b)`: `jnp.cumsum` (the flattened operand
    /// without `axis:`), from the end with `reverse: true`.
    pub(super) fn check_cumsum(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = c.span;
        let xa = c.arg(0)?;
        let x = self.expr(cx, env, xa)?;
        let xt = self.tensor(&x, "`cumsum`")?.clone();
        if xt.dtype == DType::Bool {
            return err(format!("`cumsum` requires a numeric tensor, got {xt}"), xa.span);
        }
        let reverse = match c.named_arg("reverse") {
            None => false,
            Some(e) => match &e.kind {
                A::Lit(LitValue::Bool(b), _) => *b,
                _ => return err("`reverse` must be `true` or `false`", e.span),
            },
        };
        let (x, xt, axis) = match self.axis_arg(c, &xt)? {
            Some(a) => (x, xt, a),
            None => {
                let (x, ft) = self.flattened(x, &xt, "cumsum", span)?;
                (x, ft, 0)
            }
        };
        Ok(mk(t::ExprKind::Cumsum(Box::new(x), axis, reverse), tensor_ty(xt), span))
    }

    /// `shard(x, axis: k, mesh_axis: "data")`: `x`, constrained to be split
    /// along axis `k` over the mesh axis (`data`, the default, or `model`)
    /// when XLA partitions the program (`jax.lax.with_sharding_constraint`).
    pub(super) fn check_shard(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let x = self.expr(cx, env, c.arg(0)?)?;
        let xt = self.tensor(&x, "`shard`")?.clone();
        let Some(axis) = self.axis_arg(c, &xt)? else {
            return err("`shard` needs `axis: k`, the axis to split", c.span);
        };
        let mesh_axis = match c.named_arg("mesh_axis") {
            None => 0,
            Some(e) => match &e.kind {
                A::Str(s) if s == "data" => 0,
                A::Str(s) if s == "model" => 1,
                _ => return err("`mesh_axis` must be \"data\" or \"model\"", e.span),
            },
        };
        Ok(mk(t::ExprKind::Shard(Box::new(x), axis, mesh_axis), tensor_ty(xt), c.span))
    }
}
