//! JAX's random numbers (`jax.random` with its default PRNG, threefry2x32 in
//! the partitionable mode of JAX 0.10). A key is a plain `u32[2]` tensor, so
//! it goes through loops, carries and `if` like any value. Each builtin
//! checks its static arguments here and calls the standard library's `.lb`
//! functions (`frontend/src/prelude/random.lb`, [`super::prelude`]): every
//! tier runs the same u32 ops and gives JAX's bits for JAX's key.

use super::builtin_rules::BuiltinCall;
use super::literals::coerce;
use super::{boxed, mk, Checker, Env, FnCtx};
use crate::build::Build;
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, ExprKind as K};
use crate::types::{broadcasts_to, Dim, TensorTy, Type};
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UnaryOp};

/// `u32[2]`, the type of a key.
fn key_type() -> Type {
    Type::Tensor(TensorTy::known(DType::U32, &[2]))
}

impl<'a> Checker<'a> {
    /// Positional argument `i` of `c`, which must be a key (`u32[2]`).
    fn key_arg(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>, i: usize) -> DResult<t::Expr> {
        let ka = c.arg(i)?;
        let k = self.expr(cx, env, ka)?;
        if k.ty != key_type() {
            let d = Diagnostic::new(format!("`{}` takes a key u32[2], got {}", c.name(), k.ty), ka.span)
                .with_note("make one with `key(seed)`, and new ones with `split(key, n)` or `fold_in(key, x)`");
            return Err(boxed(d));
        }
        Ok(k)
    }

    /// The static shape argument `i` of `c` and its element count, as
    /// `u32` counters `[0, 1, ..., n-1]` (JAX's `iota_2x32_shape` for fewer
    /// than 2³² draws: its high words are 0).
    fn draws(&self, cx: &FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>, i: usize) -> DResult<(Vec<u64>, t::Expr)> {
        let sa = c.arg(i)?;
        let shape: Vec<u64> = self.shape_arg(cx, env, sa, false)?.into_iter().map(|d| d as u64).collect();
        Ok((shape.clone(), counters(&shape, sa.span)?))
    }

    /// `key(seed)`: an integer scalar seed as JAX's `PRNGKey`: `[0, seed]`
    /// for a seed of 32 bits or fewer (its bits, so `-1` gives
    /// 4294967295), `[high word, low word]` for an `i64`.
    pub(super) fn check_key(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let sa = c.arg(0)?;
        let seed = self.expr(cx, env, sa)?;
        let st = self.tensor(&seed, "`key`")?.clone();
        if !st.is_scalar() || st.dtype.is_float() || st.dtype == DType::Bool {
            return err(format!("`key` takes an integer scalar seed, got {st}"), sa.span);
        }
        let b = Build { span: c.span };
        let word = |e: t::Expr| mk(K::Cast(Box::new(e), DType::U32), Type::scalar(DType::U32), c.span);
        let sv = cx.new_var("_", seed.ty.clone());
        let s = || mk(K::Var(sv), Type::Tensor(st.clone()), c.span);
        let hi = if st.dtype.size_in_bytes() > 4 {
            word(b.bin(BinaryOp::Shr, s(), b.cst(st.dtype, 32.0)))
        } else {
            b.cst(DType::U32, 0.0)
        };
        let k = mk(K::Stack(vec![hi, word(s())], 0), key_type(), c.span);
        Ok(b.block(vec![(sv, seed)], k))
    }

    /// `split(key, n)` (default 2): `n` new keys, `u32[n, 2]`, as
    /// `jax.random.split`.
    pub(super) fn check_split(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let k = self.key_arg(cx, env, c, 0)?;
        let n = match c.opt_arg(1) {
            Some(e) => self.static_uint(cx, env, e, "the number of keys")?,
            None => 2,
        };
        let counts = counters(&[n], c.span)?;
        self.call_std("split", vec![k, counts], c.span)
    }

    /// `fold_in(key, x)`: a new key from a key and an integer scalar (its low
    /// 32 bits), as `jax.random.fold_in`.
    pub(super) fn check_fold_in(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let k = self.key_arg(cx, env, c, 0)?;
        let xa = c.arg(1)?;
        let x = self.expr(cx, env, xa)?;
        let xt = self.tensor(&x, "`fold_in`")?.clone();
        if !xt.is_scalar() || xt.dtype.is_float() || xt.dtype == DType::Bool {
            return err(format!("`fold_in` takes an integer scalar, got {xt}"), xa.span);
        }
        let x = mk(K::Cast(Box::new(x), DType::U32), Type::scalar(DType::U32), xa.span);
        self.call_std("fold_in", vec![k, x], c.span)
    }

    /// `random_bits(key, [dims])`: uniformly random `u32`s, as
    /// `jax.random.bits`.
    pub(super) fn check_random_bits(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let k = self.key_arg(cx, env, c, 0)?;
        let (shape, counts) = self.draws(cx, env, c, 1)?;
        let bits = self.call_std("bits32", vec![k, counts], c.span)?;
        Ok(reshape(bits, &shape, c.span))
    }

    /// `uniform(key, dtype, [dims], minval: a, maxval: b)` (default `[0, 1)`)
    /// as `jax.random.uniform`; with `normal`, `normal(key, dtype, [dims])`
    /// as `jax.random.normal`: `√2 · erf_inv(u)` of `u` uniform in
    /// `(-1, 1)`.
    pub(super) fn check_uniform(
        &mut self,
        cx: &mut FnCtx,
        env: &Env<'a>,
        c: &BuiltinCall<'a>,
        normal: bool,
    ) -> DResult<t::Expr> {
        let k = self.key_arg(cx, env, c, 0)?;
        let da = c.arg(1)?;
        let d = self.dtype_arg(da)?;
        if !matches!(d, DType::F32 | DType::F64) {
            return err(format!("`{}` draws f32 or f64, not {d}", c.name()), da.span);
        }
        let (shape, counts) = self.draws(cx, env, c, 2)?;
        let b = Build { span: c.span };
        if normal {
            let lo = if d == DType::F32 { f64::from(-1.0f32 + f32::EPSILON / 2.0) } else { -1.0 + f64::EPSILON / 2.0 };
            let u = self.uniform_of(cx, k, d, &shape, counts, b.cst(d, lo), b.cst(d, 1.0), c.span)?;
            return Ok(b.bin(BinaryOp::Mul, b.cst(d, std::f64::consts::SQRT_2), b.un(UnaryOp::ErfInv, u)));
        }
        let mut bound = |name: &str, default: f64| -> DResult<t::Expr> {
            let Some(e) = c.named_arg(name) else { return Ok(b.cst(d, default)) };
            let v = self.expr(cx, env, e)?;
            let v = coerce(Some(e), v, d)?;
            let vt = self.tensor(&v, &format!("`{name}`"))?;
            let dims: Vec<Dim> = shape.iter().map(|&n| Dim::Known(n)).collect();
            if vt.dtype != d || !broadcasts_to(&vt.dims, &dims) {
                return err(format!("`{name}` of `uniform` must be {d} and broadcast to {shape:?}, got {vt}"), e.span);
            }
            Ok(v)
        };
        let lo = bound("minval", 0.0)?;
        let hi = bound("maxval", 1.0)?;
        self.uniform_of(cx, k, d, &shape, counts, lo, hi, c.span)
    }

    /// JAX's `_uniform`: `max(lo, u · (hi - lo) + lo)` with `u` in `[0, 1)`
    /// from 23 (`f32`) or 52 (`f64`) random mantissa bits.
    #[allow(clippy::too_many_arguments)]
    fn uniform_of(
        &mut self,
        cx: &mut FnCtx,
        k: t::Expr,
        d: DType,
        shape: &[u64],
        counts: t::Expr,
        lo: t::Expr,
        hi: t::Expr,
        span: Span,
    ) -> DResult<t::Expr> {
        let b = Build { span };
        let unit = self.call_std(if d == DType::F64 { "unit64" } else { "unit32" }, vec![k, counts], span)?;
        let unit = reshape(unit, shape, span);
        let (lv, hv) = (cx.new_var("_", lo.ty.clone()), cx.new_var("_", hi.ty.clone()));
        let var = |v: t::VarId, e: &t::Expr| mk(K::Var(v), e.ty.clone(), span);
        let (l, h) = (var(lv, &lo), var(hv, &hi));
        let scaled = b.bin(BinaryOp::Add, b.bin(BinaryOp::Mul, unit, b.bin(BinaryOp::Sub, h, l.clone())), l.clone());
        let r = b.bin(BinaryOp::Max, l, scaled);
        Ok(b.block(vec![(lv, lo), (hv, hi)], r))
    }

    /// `bernoulli(key, p, [dims])`: `uniform(key, dtype of p, dims) < p`,
    /// `dims` defaulting to `p`'s shape (`jax.random.bernoulli`).
    pub(super) fn check_bernoulli(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let k = self.key_arg(cx, env, c, 0)?;
        let pa = c.arg(1)?;
        let p = self.expr(cx, env, pa)?;
        let p = coerce(Some(pa), p, DType::F32)?;
        let pt = self.tensor(&p, "`bernoulli`")?.clone();
        if !matches!(pt.dtype, DType::F32 | DType::F64) {
            return err(format!("the probability of `bernoulli` must be f32 or f64, got {pt}"), pa.span);
        }
        let (shape, counts) = match c.opt_arg(2) {
            Some(_) => self.draws(cx, env, c, 2)?,
            None => {
                let Some(s) = pt.known_dims() else {
                    return err(
                        format!("`bernoulli` of the symbolic {pt} needs its shape: `bernoulli(k, p, [dims])`"),
                        pa.span,
                    );
                };
                let counts = counters(&s, pa.span)?;
                (s, counts)
            }
        };
        let dims: Vec<Dim> = shape.iter().map(|&n| Dim::Known(n)).collect();
        if !broadcasts_to(&pt.dims, &dims) {
            return err(format!("the probability {pt} of `bernoulli` does not broadcast to {shape:?}"), pa.span);
        }
        let b = Build { span: c.span };
        let d = pt.dtype;
        let u = self.uniform_of(cx, k, d, &shape, counts, b.cst(d, 0.0), b.cst(d, 1.0), c.span)?;
        Ok(b.bin(BinaryOp::Lt, u, p))
    }

    /// `categorical(key, logits, axis: k)` (default -1): one index (`i32`)
    /// drawn with probabilities `softmax(logits)` along the axis, by the
    /// Gumbel trick as `jax.random.categorical`: `argmax(g + logits)` with
    /// `g = -log(-log(u))`, `u` uniform in `[tiny, 1)`.
    pub(super) fn check_categorical(&mut self, cx: &mut FnCtx, env: &Env<'a>, c: &BuiltinCall<'a>) -> DResult<t::Expr> {
        let k = self.key_arg(cx, env, c, 0)?;
        let la = c.arg(1)?;
        let logits = self.expr(cx, env, la)?;
        let logits = coerce(Some(la), logits, DType::F32)?;
        let lt = self.tensor(&logits, "`categorical`")?.clone();
        if !matches!(lt.dtype, DType::F32 | DType::F64) {
            return err(format!("the logits of `categorical` must be f32 or f64, got {lt}"), la.span);
        }
        let Some(shape) = lt.known_dims() else {
            return err(format!("`categorical` of logits of the symbolic type {lt}"), la.span);
        };
        let axis = c.axis(&lt, Some(-1))?;
        let counts = counters(&shape, la.span)?;
        let b = Build { span: c.span };
        let d = lt.dtype;
        let tiny = if d == DType::F32 { f64::from(f32::MIN_POSITIVE) } else { f64::MIN_POSITIVE };
        let u = self.uniform_of(cx, k, d, &shape, counts, b.cst(d, tiny), b.cst(d, 1.0), c.span)?;
        let neg_log = |e: t::Expr| b.un(UnaryOp::Neg, b.un(UnaryOp::Log, e));
        let g = neg_log(neg_log(u));
        Ok(b.reduce(ReduceOp::Argmax, b.bin(BinaryOp::Add, g, logits), axis))
    }
}

/// The counters `[0, 1, ..., n-1]` (`u32`) for the `n` elements of `shape`.
fn counters(shape: &[u64], span: Span) -> DResult<t::Expr> {
    let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).filter(|&n| n <= 1 << 32);
    let Some(n) = n else {
        return err(format!("too many random draws: {shape:?} has 2^32 elements or more"), span);
    };
    Ok(mk(K::Iota(DType::U32, n), Type::Tensor(TensorTy::known(DType::U32, &[n])), span))
}

/// `x` (rank 1) reshaped to `shape`.
fn reshape(x: t::Expr, shape: &[u64], span: Span) -> t::Expr {
    let d = x.ty.tensor().map_or(DType::U32, |t| t.dtype);
    mk(K::Reshape(Box::new(x), shape.to_vec()), Type::Tensor(TensorTy::known(d, shape)), span)
}
