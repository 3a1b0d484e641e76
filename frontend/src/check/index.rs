//! Indexing: static and dynamic indices, slices, and `.at[...]` updates.

use super::literals::{coerce, int_lit, lit};
use super::{boxed, mk, tensor_ty, Checker, Env, FnCtx};
use crate::ast::{self, IndexItem, LitValue};
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, StaticIndex};
use crate::types::{broadcasts_to, Dim, TensorTy, Type};
use loopvm_runtime::{rules, DType, UpdateMode};

/// An index as an i64.
fn i64_of(v: i128, span: Span) -> DResult<i64> {
    i64::try_from(v).or_else(|_| err(format!("index {v} is too large"), span))
}

impl<'a> Checker<'a> {
    /// `x[...]`: static and dynamic indices and slices.
    pub(super) fn index(
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
            // Static indices beside dynamic ones take their dtype (a
            // negative one beside a `u32` index is an `i64`).
            let idx_dtype = its
                .iter()
                .find_map(|i| match i {
                    It::Dyn(e) => e.ty.tensor().map(|t| t.dtype),
                    _ => None,
                })
                .map(|d| if d.is_unsigned() { DType::I64 } else { d });
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
                    if let Dim::Var(v) = &dim {
                        if !(full && (*st == 1 || *st == -1)) {
                            return err(format!("cannot slice axis {k} of symbolic size {v} with static bounds"), *s);
                        }
                    }
                    let start = a.map(|x| i64_of(x, *s)).transpose()?;
                    let stop = b.map(|x| i64_of(x, *s)).transpose()?;
                    let step = i64_of(*st, *s)?;
                    out_dims.push(match &dim {
                        // The step is not 0 (checked above).
                        Dim::Known(n) => {
                            Dim::Known(rules::slice_range(*n, start, stop, step).map_or(0, |r| r.len as u64))
                        }
                        Dim::Var(_) => dim.clone(),
                    });
                    if !(full && *st == 1) {
                        trivial = false;
                    }
                    specs.push(StaticIndex::Range { start, stop, step });
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

    /// A literal index within the bounds of a known dim.
    fn check_static_index(&self, i: i128, dim: Option<&Dim>, axis: usize, span: Span) -> DResult<()> {
        if let Some(Dim::Known(n)) = dim {
            if rules::index_position(*n, i).is_none() {
                return err(format!("index {i} is out of bounds for axis {axis} with size {n}"), span);
            }
        }
        Ok(())
    }

    /// A dynamic index: an integer scalar.
    pub(super) fn index_value(&mut self, cx: &mut FnCtx, env: &Env<'a>, e: &'a ast::Expr) -> DResult<t::Expr> {
        let v = self.expr(cx, env, e)?;
        match v.ty.tensor() {
            Some(t) if t.dtype.is_int() && t.is_scalar() => Ok(v),
            _ => err(format!("an index must be an integer scalar, got {}", v.ty), e.span),
        }
    }

    /// `x.at[...].set(v)` and `x.at[...].add(v)`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn at_update(
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
        // Literal indices follow the first dynamic one's dtype (`i64`
        // beside a `u32` one, which holds no negative literal).
        if let Some(d) = idx
            .iter()
            .zip(items)
            .find(|(_, it)| matches!(it, IndexItem::At(e) if int_lit(e).is_none()))
            .and_then(|(v, _)| v.ty.tensor().map(|t| if t.dtype.is_unsigned() { DType::I64 } else { t.dtype }))
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
        let v = self.expr_as(cx, env, &arg.value, bt.dtype)?;
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
