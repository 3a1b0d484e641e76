//! Contractions beyond rank-2 `@`: `a @ b` with a batch rank (NumPy's
//! `matmul` rules) and `einsum("bqd,bkd->bqk", a, b)`. Both become one
//! [`t::ExprKind::DotGeneral`] (StableHLO's `dot_general`) with the
//! reductions, squeezes and transposes around it, never loops of rank-2
//! products, so the derivative and every back end see one contraction.

use super::builtin_rules::BuiltinCall;
use super::{boxed, mk, tensor_ty, Checker, Env, FnCtx};
use crate::ast::{self, ExprKind as A};
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, StaticIndex};
use crate::types::{Dim, TensorTy};
use loopvm_runtime::rules::{self, DotDims, DotGeneralError};
use loopvm_runtime::{DType, ReduceOp};

/// `dot_general(a, b, dims)` as a typed expression (the shape rule is the
/// runtime's; the callers have checked that it holds).
pub(crate) fn dot_general(a: t::Expr, b: t::Expr, dims: DotDims, span: Span) -> DResult<t::Expr> {
    let (at, bt) = (tensor_of(&a)?, tensor_of(&b)?);
    let g = rules::dot_general(&at.dims, &bt.dims, &dims).map_err(|e| {
        boxed(Diagnostic::new(format!("internal error: dot_general of {at} and {bt} with {dims:?}: {e:?}"), span))
    })?;
    let ty = TensorTy { dtype: at.dtype, dims: g.dims() };
    Ok(mk(t::ExprKind::DotGeneral(Box::new(a), Box::new(b), dims), tensor_ty(ty), span))
}

fn tensor_of(e: &t::Expr) -> DResult<TensorTy> {
    e.ty.tensor().cloned().ok_or_else(|| boxed(Diagnostic::new("internal error: a tuple in a contraction", e.span)))
}

/// `x` with its axes permuted (`out.dims[i] = x.dims[perm[i]]`); `x` itself
/// for the identity.
fn permuted(x: t::Expr, perm: &[usize], span: Span) -> DResult<t::Expr> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x);
    }
    let xt = tensor_of(&x)?;
    let dims = perm.iter().map(|&p| xt.dims[p].clone()).collect();
    let perm = perm.iter().map(|&p| p as u32).collect();
    Ok(mk(t::ExprKind::Transpose(Box::new(x), Some(perm)), tensor_ty(TensorTy { dtype: xt.dtype, dims }), span))
}

/// `x` summed over `axes` (any order), the highest axis first.
fn summed(mut x: t::Expr, axes: &[usize], span: Span) -> DResult<t::Expr> {
    let mut axes = axes.to_vec();
    axes.sort_unstable_by(|a, b| b.cmp(a));
    for a in axes {
        let mut xt = tensor_of(&x)?;
        xt.dims.remove(a);
        xt.dtype = ReduceOp::Sum.result_dtype(xt.dtype);
        x = mk(t::ExprKind::Reduce(ReduceOp::Sum, Box::new(x), Some(a as u32)), tensor_ty(xt), span);
    }
    Ok(x)
}

/// `x` without its leading axes marked in `drop` (each of size 1): a static
/// index 0 on each, a full slice on the others.
fn squeezed(x: t::Expr, drop: &[bool], span: Span) -> DResult<t::Expr> {
    let Some(last) = drop.iter().rposition(|&d| d) else {
        return Ok(x);
    };
    let xt = tensor_of(&x)?;
    let items: Vec<StaticIndex> = drop[..=last]
        .iter()
        .map(|&d| if d { StaticIndex::At(0) } else { StaticIndex::Range { start: None, stop: None, step: 1 } })
        .collect();
    let dims =
        xt.dims.iter().enumerate().filter(|(i, _)| !drop.get(*i).copied().unwrap_or(false)).map(|(_, d)| d.clone());
    let ty = TensorTy { dtype: xt.dtype, dims: dims.collect() };
    Ok(mk(t::ExprKind::Slice(Box::new(x), items), tensor_ty(ty), span))
}

/// Where one result batch axis of a batched `@` comes from.
#[derive(Clone, Copy)]
enum BatchAxis {
    /// A batch pair: lhs axis, rhs axis (equal sizes).
    Both(usize, usize),
    /// Only the lhs has it (the rhs's is missing or 1): a free lhs axis.
    Lhs,
    /// Only the rhs has it.
    Rhs,
}

/// `a @ b` with an operand of rank 3 or more (the other of rank 1 or more),
/// NumPy's `matmul`: the last two axes multiply, the leading (batch) axes
/// broadcast; a rank-1 operand contracts with the other's matrix axis. One
/// `dot_general`: batch pairs for the batch axes both operands have, free
/// axes for those only one has (the other's size-1 axes squeezed), then a
/// transpose into NumPy's order when that differs.
pub(super) fn batched_matmul(l: t::Expr, lt: &TensorTy, r: t::Expr, rt: &TensorTy, span: Span) -> DResult<t::Expr> {
    let (ra, rb) = (lt.rank(), rt.rank());
    let inner = |k1: &Dim, k2: &Dim| -> DResult<()> {
        if k1 != k2 {
            return err(format!("matmul dimensions do not match: lhs {lt}, rhs {rt} (inner dims {k1} and {k2})"), span);
        }
        Ok(())
    };
    let dims = |lc: usize, rc: usize| DotDims {
        lhs_batch: vec![],
        rhs_batch: vec![],
        lhs_contract: vec![lc as u32],
        rhs_contract: vec![rc as u32],
    };
    if ra == 0 || rb == 0 {
        return err(format!("matmul needs operands of rank 1 or more, got lhs {lt}, rhs {rt}"), span);
    }
    if rb <= 2 {
        // [B..., m, k] @ [k] or [k, n]: the lhs's leading axes are free.
        inner(&lt.dims[ra - 1], &rt.dims[0])?;
        return dot_general(l, r, dims(ra - 1, 0), span);
    }
    if ra == 1 {
        // [k] @ [B..., k, n]: the rhs's other axes are free.
        inner(&lt.dims[0], &rt.dims[rb - 2])?;
        return dot_general(l, r, dims(0, rb - 2), span);
    }
    if ra == 2 {
        // [m, k] @ [B..., k, n] gives [m, B..., n]: m moves behind B.
        inner(&lt.dims[1], &rt.dims[rb - 2])?;
        let d = dot_general(l, r, dims(1, rb - 2), span)?;
        let nb = rb - 2;
        let perm: Vec<usize> = (1..=nb).chain([0, nb + 1]).collect();
        return permuted(d, &perm, span);
    }
    inner(&lt.dims[ra - 1], &rt.dims[rb - 2])?;
    let (na, nbb) = (ra - 2, rb - 2);
    let n = na.max(nbb);
    let mut axes = Vec::with_capacity(n);
    let (mut drop_a, mut drop_b) = (vec![false; na], vec![false; nbb]);
    for i in 0..n {
        let ia = (i + na).checked_sub(n);
        let ib = (i + nbb).checked_sub(n);
        axes.push(match (ia, ib) {
            (Some(x), Some(y)) => {
                let (da, db) = (&lt.dims[x], &rt.dims[y]);
                if da == db {
                    BatchAxis::Both(x, y)
                } else if db.known() == Some(1) {
                    drop_b[y] = true;
                    BatchAxis::Lhs
                } else if da.known() == Some(1) {
                    drop_a[x] = true;
                    BatchAxis::Rhs
                } else {
                    return err(
                        format!(
                            "matmul batch dimensions do not broadcast: lhs {lt}, rhs {rt} (batch dims {da} and {db})"
                        ),
                        span,
                    );
                }
            }
            (Some(_), None) => BatchAxis::Lhs,
            (None, Some(_)) => BatchAxis::Rhs,
            (None, None) => return err("internal error: a batch axis of neither operand", span),
        });
    }
    // Axis numbers after squeezing: each kept axis moves down by the dropped ones before it.
    let renumber = |drop: &[bool], x: usize| x - drop[..x].iter().filter(|&&d| d).count();
    let (ra2, rb2) = (ra - drop_a.iter().filter(|&&d| d).count(), rb - drop_b.iter().filter(|&&d| d).count());
    let mut dd =
        DotDims { lhs_contract: vec![(ra2 - 1) as u32], rhs_contract: vec![(rb2 - 2) as u32], ..Default::default() };
    for a in &axes {
        if let BatchAxis::Both(x, y) = *a {
            dd.lhs_batch.push(renumber(&drop_a, x) as u32);
            dd.rhs_batch.push(renumber(&drop_b, y) as u32);
        }
    }
    // The dot's result: the pairs, the lhs's free axes (its lhs-only batch
    // axes in order, then m), the rhs's (its rhs-only batch axes, then n).
    let np = dd.lhs_batch.len();
    let nl = axes.iter().filter(|a| matches!(a, BatchAxis::Lhs)).count();
    let nr = axes.iter().filter(|a| matches!(a, BatchAxis::Rhs)).count();
    let (mut p, mut li, mut ri) = (0, 0, 0);
    let mut perm = Vec::with_capacity(n + 2);
    for a in &axes {
        perm.push(match a {
            BatchAxis::Both(..) => {
                p += 1;
                p - 1
            }
            BatchAxis::Lhs => {
                li += 1;
                np + li - 1
            }
            BatchAxis::Rhs => {
                ri += 1;
                np + nl + 1 + ri - 1
            }
        });
    }
    perm.push(np + nl);
    perm.push(np + nl + 1 + nr);
    let l = squeezed(l, &drop_a, span)?;
    let r = squeezed(r, &drop_b, span)?;
    let d = dot_general(l, r, dd, span)?;
    permuted(d, &perm, span)
}

/// One operand's subscripts: its letters and where each is in the source.
struct Term {
    letters: Vec<(char, Span)>,
}

impl Term {
    fn has(&self, c: char) -> bool {
        self.letters.iter().any(|&(l, _)| l == c)
    }
    fn axis(&self, c: char) -> Option<usize> {
        self.letters.iter().position(|&(l, _)| l == c)
    }
}

/// Parses `einsum`'s subscripts: comma-separated terms of ASCII letters,
/// then optionally `->` and the output's letters. No letter twice in one
/// term. `at` is the span of the string literal (its opening quote).
fn parse_subscripts(text: &str, at: Span) -> DResult<(Vec<Term>, Option<Term>)> {
    let base = at.start as usize + 1;
    let pos = |i: usize, len: usize| Span::new(base + i, base + i + len);
    let (inputs, output, out_at) = match text.find("->") {
        Some(k) => (&text[..k], Some(&text[k + 2..]), k + 2),
        None => (text, None, 0),
    };
    let term = |s: &str, off: usize, what: &str| -> DResult<Term> {
        let mut letters: Vec<(char, Span)> = Vec::new();
        for (i, c) in s.char_indices() {
            let sp = pos(off + i, c.len_utf8());
            if c == ' ' {
                continue;
            }
            if !c.is_ascii_alphabetic() {
                let d = Diagnostic::new(format!("`{}` is not a subscript letter of `einsum`", c.escape_debug()), sp)
                    .with_note("subscripts are ASCII letters; `...` (ellipsis) is not supported");
                return Err(boxed(d));
            }
            if let Some(&(_, first)) = letters.iter().find(|&&(l, _)| l == c) {
                let d = Diagnostic::new(format!("the letter `{c}` appears twice in {what}"), sp)
                    .with_label(first, "first here")
                    .with_note("`einsum` takes no diagonals or traces: each letter once per operand");
                return Err(boxed(d));
            }
            letters.push((c, sp));
        }
        Ok(Term { letters })
    };
    let mut terms = Vec::new();
    let mut off = 0;
    for (i, s) in inputs.split(',').enumerate() {
        terms.push(term(s, off, &format!("the subscripts of operand {}", i + 1))?);
        off += s.len() + 1;
    }
    let output = match output {
        Some(o) => {
            if o.contains("->") {
                return err("`->` appears twice in the subscripts of `einsum`", pos(out_at, o.len()));
            }
            Some(term(o, out_at, "the output subscripts")?)
        }
        None => None,
    };
    Ok((terms, output))
}

impl<'a> Checker<'a> {
    /// `einsum("subscripts", a)` or `einsum("subscripts", a, b)`: the
    /// subscripts a string literal checked here (letters, one per axis,
    /// sizes that agree, output letters from the inputs); without `->` the
    /// output is the letters used once, in alphabetical order (NumPy's
    /// implicit mode). Letters of one operand that are neither in the other
    /// nor in the output are summed first; then one `dot_general` (batch:
    /// letters of both operands and the output; contracted: of both but not
    /// the output) and a transpose into the output's order.
    pub(super) fn check_einsum(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let span = c.span;
        let sa = c.arg(0)?;
        let A::Str(text) = &sa.kind else {
            return err("the first argument of `einsum` must be a string literal such as \"ij,jk->ik\"", sa.span);
        };
        let (terms, output) = parse_subscripts(text, sa.span)?;
        let operands: Vec<&'a ast::Expr> = (1..3).filter_map(|i| c.opt_arg(i)).collect();
        if terms.len() != operands.len() {
            return err(
                format!(
                    "the subscripts of `einsum` name {} operand{} but {} {} given",
                    terms.len(),
                    if terms.len() == 1 { "" } else { "s" },
                    operands.len(),
                    if operands.len() == 1 { "is" } else { "are" }
                ),
                sa.span,
            );
        }
        let mut xs = Vec::new();
        let mut tys = Vec::new();
        for (i, (oa, term)) in operands.iter().zip(&terms).enumerate() {
            let x = self.expr(cx, env, oa)?;
            let xt = self.tensor(&x, "`einsum`")?.clone();
            if xt.dtype == DType::Bool {
                return err(format!("`einsum` is not defined on bool: operand {} is {xt}", i + 1), oa.span);
            }
            if let Some(t0) = tys.first().map(|t: &TensorTy| t.dtype) {
                if t0 != xt.dtype {
                    let d = Diagnostic::new(
                        format!("dtype mismatch in einsum: operand 2 is {xt}, operand 1 is {t0}"),
                        oa.span,
                    )
                    .with_note(format!("convert one side with `as`, e.g. `(...) as {t0}`"));
                    return Err(boxed(d));
                }
            }
            if term.letters.len() != xt.rank() {
                let d = Diagnostic::new(
                    format!(
                        "the subscripts of operand {} have {} letter{} but the operand is {xt} (rank {})",
                        i + 1,
                        term.letters.len(),
                        if term.letters.len() == 1 { "" } else { "s" },
                        xt.rank()
                    ),
                    oa.span,
                )
                .with_label(sa.span, "subscripts here");
                return Err(boxed(d));
            }
            xs.push(x);
            tys.push(xt);
        }
        // Every letter's size agrees across the operands.
        for (j, term) in terms.iter().enumerate().skip(1) {
            for (k, &(ch, sp)) in term.letters.iter().enumerate() {
                if let Some(i) = terms[0].axis(ch) {
                    let (d0, d1) = (&tys[0].dims[i], &tys[j].dims[k]);
                    if d0 != d1 {
                        let d = Diagnostic::new(
                            format!(
                                "the letter `{ch}` has size {d0} in operand 1 ({}) but {d1} in operand 2 ({})",
                                tys[0], tys[j]
                            ),
                            sp,
                        )
                        .with_label(operands[j].span, format!("{}", tys[j]));
                        return Err(boxed(d));
                    }
                }
            }
        }
        let out: Vec<char> = match &output {
            Some(o) => {
                for &(ch, sp) in &o.letters {
                    if !terms.iter().any(|t| t.has(ch)) {
                        return err(format!("the output letter `{ch}` is in no operand's subscripts"), sp);
                    }
                }
                o.letters.iter().map(|&(l, _)| l).collect()
            }
            None => {
                let mut once: Vec<char> = terms
                    .iter()
                    .flat_map(|t| t.letters.iter().map(|&(l, _)| l))
                    .filter(|&l| terms.iter().filter(|t| t.has(l)).count() == 1)
                    .collect();
                once.sort_unstable();
                once
            }
        };
        // Sum each operand's letters that appear nowhere else.
        let mut letters: Vec<Vec<char>> = Vec::new();
        let mut summed_xs = Vec::new();
        for (i, (x, term)) in xs.into_iter().zip(&terms).enumerate() {
            let elsewhere = |ch: char| out.contains(&ch) || terms.iter().enumerate().any(|(j, t)| j != i && t.has(ch));
            let gone: Vec<usize> =
                term.letters.iter().enumerate().filter(|(_, &(l, _))| !elsewhere(l)).map(|(k, _)| k).collect();
            summed_xs.push(summed(x, &gone, span)?);
            letters.push(term.letters.iter().map(|&(l, _)| l).filter(|&l| elsewhere(l)).collect());
        }
        let (result, have): (t::Expr, Vec<char>) = if summed_xs.len() == 1 {
            let x = summed_xs.pop().ok_or_else(|| boxed(Diagnostic::new("internal error: no operand", span)))?;
            (x, letters.pop().unwrap_or_default())
        } else {
            let b = summed_xs.pop().ok_or_else(|| boxed(Diagnostic::new("internal error: no operand", span)))?;
            let a = summed_xs.pop().ok_or_else(|| boxed(Diagnostic::new("internal error: no operand", span)))?;
            let (la, lb) = (&letters[0], &letters[1]);
            let pos = |l: &[char], ch: char| l.iter().position(|&x| x == ch).unwrap_or(0) as u32;
            let batch: Vec<char> = out.iter().copied().filter(|c| la.contains(c) && lb.contains(c)).collect();
            let contract: Vec<char> = la.iter().copied().filter(|c| lb.contains(c) && !out.contains(c)).collect();
            let dims = DotDims {
                lhs_batch: batch.iter().map(|&c| pos(la, c)).collect(),
                rhs_batch: batch.iter().map(|&c| pos(lb, c)).collect(),
                lhs_contract: contract.iter().map(|&c| pos(la, c)).collect(),
                rhs_contract: contract.iter().map(|&c| pos(lb, c)).collect(),
            };
            let free = |l: &[char], other: &[char]| -> Vec<char> {
                l.iter().copied().filter(|c| !other.contains(c)).collect()
            };
            let have: Vec<char> = batch.iter().copied().chain(free(la, lb)).chain(free(lb, la)).collect();
            let (at, bt) = (tensor_of(&a)?, tensor_of(&b)?);
            if let Err(e) = rules::dot_general(&at.dims, &bt.dims, &dims) {
                let what = match e {
                    DotGeneralError::Size { a, b, .. } => format!("sizes {a} and {b} differ"),
                    e => format!("{e:?}"),
                };
                return err(format!("`einsum` operands do not contract: {what}"), span);
            }
            (dot_general(a, b, dims, span)?, have)
        };
        let perm: Vec<usize> = out.iter().map(|c| have.iter().position(|h| h == c).unwrap_or(0)).collect();
        if perm.len() != have.len() {
            return err("internal error: einsum letters lost", span);
        }
        permuted(result, &perm, span)
    }
}
