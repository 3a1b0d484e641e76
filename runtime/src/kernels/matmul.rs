//! Matrix multiplication with NumPy's rank rules for ranks 1 and 2, and the
//! general contraction `dot_general` (batch and contracting axes, as
//! StableHLO's). Floats go through `matrixmultiply`'s packed GEMM; integers
//! use a plain wrapping loop.

use super::elems;
use super::num::Num;
use crate::rules::{self, DotDims, DotGeneralError, MatmulError};
use crate::{checked_numel, out_buffer, DType, RuntimeError, Shape, Tensor};
use rayon::prelude::*;

/// `a @ b` for ranks 1 and 2: `(k) @ (k) -> ()`, `(m, k) @ (k) -> (m)`,
/// `(k) @ (k, n) -> (n)`, `(m, k) @ (k, n) -> (m, n)`. Both operands share
/// an integer or float dtype, which is the result's; integers wrap.
pub fn matmul(a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    let types = || format!("lhs: {}, rhs: {}", a.type_string(), b.type_string());
    if a.dtype() != b.dtype() {
        return Err(RuntimeError::new("matmul", format!("dtype mismatch in matmul, {}", types())));
    }
    if a.dtype() == DType::Bool {
        return Err(RuntimeError::new("matmul", format!("matmul requires numeric operands, {}", types())));
    }
    let mm = rules::matmul(a.shape(), b.shape()).map_err(|e| match e {
        MatmulError::Rank => RuntimeError::new("matmul", format!("matmul takes operands of rank 1 or 2, {}", types())),
        MatmulError::Inner(k, k2) => {
            RuntimeError::new("matmul", format!("inner dimensions differ ({k} vs {k2}), {}", types()))
        }
    })?;
    let (m, k, n) = (mm.m.unwrap_or(1), mm.k, mm.n.unwrap_or(1));
    let shape: Shape = mm.dims();
    checked_numel(&shape).map_err(|_| RuntimeError::new("matmul", format!("result too large, {}", types())))?;
    if a.dtype().is_half() {
        return through_f32(a, b, out, matmul);
    }
    match a.dtype() {
        DType::F32 => {
            let (x, y) = (elems::<f32>("matmul", a)?, elems::<f32>("matmul", b)?);
            let o = out_buffer::<f32>(out, &shape);
            gemm_f32(m, k, n, x, y, o);
        }
        DType::F64 => {
            let (x, y) = (elems::<f64>("matmul", a)?, elems::<f64>("matmul", b)?);
            let o = out_buffer::<f64>(out, &shape);
            gemm_f64(m, k, n, x, y, o);
        }
        DType::I32 => int_matmul::<i32>(m, k, n, elems("matmul", a)?, elems("matmul", b)?, out_buffer(out, &shape)),
        DType::I64 => int_matmul::<i64>(m, k, n, elems("matmul", a)?, elems("matmul", b)?, out_buffer(out, &shape)),
        DType::U32 => int_matmul::<u32>(m, k, n, elems("matmul", a)?, elems("matmul", b)?, out_buffer(out, &shape)),
        DType::U8 => int_matmul::<u8>(m, k, n, elems("matmul", a)?, elems("matmul", b)?, out_buffer(out, &shape)),
        DType::Bool | DType::BF16 | DType::F16 => {}
    }
    Ok(())
}

/// StableHLO's `dot_general`: batch axes paired, contracting axes paired
/// and summed over; the result is the batch dims, then the lhs's free dims,
/// then the rhs's (each in axis order). Both operands share an integer or
/// float dtype, which is the result's; integers wrap. Each operand is copied
/// to a contiguous `[batch, M, K]` (lhs) or `[batch, K, N]` (rhs) layout
/// when its axes are not in that order already (floats also take
/// `[batch, K, M]` and `[batch, N, K]` in place), then every batch is one
/// GEMM (on the rayon pool for large products).
pub fn dot_general(a: &Tensor, b: &Tensor, dims: &DotDims, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    const OP: &str = "dot_general";
    let types = || format!("lhs: {}, rhs: {}", a.type_string(), b.type_string());
    if a.dtype() != b.dtype() {
        return Err(RuntimeError::new(OP, format!("dtype mismatch in dot_general, {}", types())));
    }
    if a.dtype() == DType::Bool {
        return Err(RuntimeError::new(OP, format!("dot_general requires numeric operands, {}", types())));
    }
    let g = rules::dot_general(a.shape(), b.shape(), dims).map_err(|e| {
        let side = |lhs: bool| if lhs { "lhs" } else { "rhs" };
        let what = |batch: bool| if batch { "batch" } else { "contracting" };
        RuntimeError::new(
            OP,
            match e {
                DotGeneralError::Count(batch) => {
                    format!("the operands name different numbers of {} axes, {}", what(batch), types())
                }
                DotGeneralError::Axis { lhs, axis } => format!("{} axis {axis} out of range, {}", side(lhs), types()),
                DotGeneralError::Repeated { lhs, axis } => {
                    format!("{} axis {axis} named twice, {}", side(lhs), types())
                }
                DotGeneralError::Size { batch, a: x, b: y } => {
                    format!("{} dimensions differ ({x} vs {y}), {}", what(batch), types())
                }
            },
        )
    })?;
    let shape: Shape = g.dims();
    checked_numel(&shape).map_err(|_| RuntimeError::new(OP, format!("result too large, {}", types())))?;
    if a.dtype().is_half() {
        return through_f32(a, b, out, |x, y, o| dot_general(x, y, dims, o));
    }
    // With a non-empty result, the batch and free dims are all non-zero, so
    // their products are at most the result's element count; the contracted
    // dims are then an operand's only other dims, so their product is at
    // most that operand's element count.
    let prod = |d: &[usize]| d.iter().product::<usize>();
    let empty = shape.contains(&0);
    let (nb, m, k, n) =
        if empty { (0, 0, 0, 0) } else { (prod(&g.batch), prod(&g.lhs_free), prod(&g.contract), prod(&g.rhs_free)) };
    let perm = |batch: &[u32], first: &[usize], second: &[usize]| -> Vec<usize> {
        batch.iter().map(|&i| i as usize).chain(first.iter().copied()).chain(second.iter().copied()).collect()
    };
    let contract = |c: &[u32]| c.iter().map(|&i| i as usize).collect::<Vec<_>>();
    let (lc, rc) = (contract(&dims.lhs_contract), contract(&dims.rhs_contract));
    let identity = |p: &[usize]| p.iter().enumerate().all(|(i, &j)| i == j);
    // Float GEMMs also read an lhs laid out [batch, K, M] and an rhs laid
    // out [batch, N, K] in place; anything else is copied into
    // [batch, M, K] and [batch, K, N].
    let float = a.dtype().is_float();
    let a_t = float
        && !identity(&perm(&dims.lhs_batch, &g.lhs_free_axes, &lc))
        && identity(&perm(&dims.lhs_batch, &lc, &g.lhs_free_axes));
    let b_t = float
        && !identity(&perm(&dims.rhs_batch, &rc, &g.rhs_free_axes))
        && identity(&perm(&dims.rhs_batch, &g.rhs_free_axes, &rc));
    let laid_out = |t: &Tensor, p: &[usize], in_place: bool| -> Result<Option<Tensor>, RuntimeError> {
        if empty || in_place || identity(p) {
            return Ok(None);
        }
        let mut o = None;
        super::shape::transpose(t, Some(p), &mut o)?;
        Ok(o)
    };
    let ta = laid_out(a, &perm(&dims.lhs_batch, &g.lhs_free_axes, &lc), a_t)?;
    let tb = laid_out(b, &perm(&dims.rhs_batch, &rc, &g.rhs_free_axes), b_t)?;
    let (x, y) = (ta.as_ref().unwrap_or(a), tb.as_ref().unwrap_or(b));
    macro_rules! batches {
        ($t:ty, |$m:ident, $k:ident, $n:ident, $xa:ident, $yb:ident, $c:ident| $call:expr) => {{
            let (x, y) = (elems::<$t>(OP, x)?, elems::<$t>(OP, y)?);
            let o = out_buffer::<$t>(out, &shape);
            let one = |(i, $c): (usize, &mut [$t])| {
                let $xa = x.get(i * m * k..(i + 1) * m * k).unwrap_or(&[]);
                let $yb = y.get(i * k * n..(i + 1) * k * n).unwrap_or(&[]);
                let ($m, $k, $n) = (m, k, n);
                $call;
            };
            if empty {
            } else if nb > 1 && m.saturating_mul(k).saturating_mul(n).saturating_mul(nb) >= PAR_MULADDS {
                // Batches are independent: each is the same GEMM on any thread.
                o.par_chunks_exact_mut(m * n).enumerate().take(nb).for_each(one);
            } else {
                o.chunks_exact_mut(m * n).enumerate().take(nb).for_each(one);
            }
        }};
    }
    match a.dtype() {
        DType::F32 => batches!(f32, |m, k, n, xa, yb, c| gemm_f32_strided(m, k, n, xa, a_t, yb, b_t, c)),
        DType::F64 => batches!(f64, |m, k, n, xa, yb, c| gemm_f64_strided(m, k, n, xa, a_t, yb, b_t, c)),
        DType::I32 => batches!(i32, |m, k, n, xa, yb, c| int_matmul::<i32>(m, k, n, xa, yb, c)),
        DType::I64 => batches!(i64, |m, k, n, xa, yb, c| int_matmul::<i64>(m, k, n, xa, yb, c)),
        DType::U32 => batches!(u32, |m, k, n, xa, yb, c| int_matmul::<u32>(m, k, n, xa, yb, c)),
        DType::U8 => batches!(u8, |m, k, n, xa, yb, c| int_matmul::<u8>(m, k, n, xa, yb, c)),
        DType::Bool | DType::BF16 | DType::F16 => {}
    }
    Ok(())
}

/// A product of half floats (`bf16`, `f16`; both operands of one dtype,
/// shapes checked): the operands converted to `f32` (exactly), the `f32`
/// product (`f32` accumulation), rounded once to nearest even. XLA's CPU
/// backend computes a half-float dot this way, and the emitter writes the
/// conversions out (see `docs/semantics.md`).
fn through_f32(
    a: &Tensor,
    b: &Tensor,
    out: &mut Option<Tensor>,
    f: impl FnOnce(&Tensor, &Tensor, &mut Option<Tensor>) -> Result<(), RuntimeError>,
) -> Result<(), RuntimeError> {
    let (x, y) = (super::elementwise::to_f32(a)?, super::elementwise::to_f32(b)?);
    let mut o = None;
    f(&x, &y, &mut o)?;
    match o {
        Some(t) => super::cast(&t, a.dtype(), out),
        None => Err(RuntimeError::new("matmul", "internal error: no f32 product".to_string())),
    }
}

/// A `dot_general` of at least this many multiply-adds (and more than one
/// batch) runs its batches on the rayon pool.
const PAR_MULADDS: usize = 1 << 20;

/// Rows of `a` at most this many take the row-by-row path: for a
/// vector-matrix product (an RNN step) it beats packing `b` for a GEMM.
const SMALL_M: usize = 4;

/// The element operations of [`small_m_matmul`].
trait MulAdd: Copy + Default + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> {}
impl<T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>> MulAdd for T {}

/// `c := a @ b` one row of `c` at a time, as axpys along rows of `b`. For
/// small `m`. Every element is `((0 + a[i,0] b[0,j]) + a[i,1] b[1,j]) + ...`
/// in order of `k` (a multiply, then an add: never fused), however the
/// loops are arranged, so every arrangement gives the same floats.
///
/// The columns go in blocks of `W` whose sums stay in registers over the
/// whole of `k` (`W` is 256 bits of elements: eight AVX registers), then
/// the remaining columns as plain axpys. On x86-64 with AVX the same code
/// is compiled for AVX (chosen at run time; no FMA, so the floats do not
/// change).
fn small_m_matmul<T: MulAdd, const W: usize>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (checked just above).
        unsafe { small_m_avx::<T, W>(m, k, n, a, b, c) };
        return;
    }
    small_m_blocks::<T, W>(m, k, n, a, b, c);
}

/// [`small_m_blocks`] compiled for AVX.
///
/// # Safety
/// The CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn small_m_avx<T: MulAdd, const W: usize>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
    small_m_blocks::<T, W>(m, k, n, a, b, c);
}

#[inline(always)]
fn small_m_blocks<T: MulAdd, const W: usize>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
    let full = n - n % W;
    for (crow, arow) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)).take(m) {
        for j0 in (0..full).step_by(W) {
            let mut acc = [T::default(); W];
            for (&aik, brow) in arow.iter().zip(b.chunks_exact(n)) {
                let bj: &[T; W] = match brow[j0..j0 + W].try_into() {
                    Ok(x) => x,
                    Err(_) => return,
                };
                for (x, &y) in acc.iter_mut().zip(bj) {
                    *x = *x + aik * y;
                }
            }
            crow[j0..j0 + W].copy_from_slice(&acc);
        }
        let tail = &mut crow[full..];
        if tail.is_empty() {
            continue;
        }
        tail.fill(T::default());
        for (&aik, brow) in arow.iter().zip(b.chunks_exact(n)) {
            for (cj, &bj) in tail.iter_mut().zip(&brow[full..]) {
                *cj = *cj + aik * bj;
            }
        }
    }
}

/// Defines `$name`: `c := a @ b` for row-major `a: m×k`, `b: k×n`, `c: m×n`
/// of `$t`, through `matrixmultiply::$gemm` (row-by-row for small `m`).
macro_rules! gemm {
    ($name:ident, $t:ty, $gemm:ident, $w:literal) => {
        pub(crate) fn $name(m: usize, k: usize, n: usize, a: &[$t], b: &[$t], c: &mut [$t]) {
            if m == 0 || n == 0 {
                return;
            }
            if k == 0 || a.len() != m * k || b.len() != k * n || c.len() != m * n {
                c.fill(0.0);
                return;
            }
            if m <= SMALL_M {
                small_m_matmul::<$t, $w>(m, k, n, a, b, c);
                return;
            }
            // SAFETY: `a`, `b` and `c` are live slices of exactly m*k, k*n and
            // m*n elements (checked above), read and written with row-major
            // strides (row stride = row length, column stride 1) that stay
            // inside them; `c` is a unique borrow so it aliases neither input,
            // and its strides do not make elements alias. Every dimension is at
            // most a slice length, so it fits `isize`. With beta = 0, `c` need
            // not be initialised.
            unsafe {
                matrixmultiply::$gemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        }
    };
}

gemm!(gemm_f32, f32, sgemm, 64);
gemm!(gemm_f64, f64, dgemm, 32);

/// Defines `$name`: `c := a @ b` like [`gemm!`]'s, for `a` stored row-major
/// as `m×k` or, with `a_t`, as `k×m` (its transpose), and `b` as `k×n` or,
/// with `b_t`, as `n×k`: `matrixmultiply` reads either through strides, so
/// `dot_general` need not copy an operand whose contracted axis comes
/// first (lhs) or last (rhs), as in `bqd,bkd->bqk`.
macro_rules! gemm_strided {
    ($name:ident, $t:ty, $gemm:ident, $plain:ident) => {
        #[allow(clippy::too_many_arguments)]
        fn $name(m: usize, k: usize, n: usize, a: &[$t], a_t: bool, b: &[$t], b_t: bool, c: &mut [$t]) {
            if !a_t && !b_t {
                return $plain(m, k, n, a, b, c);
            }
            if m == 0 || n == 0 {
                return;
            }
            if k == 0 || a.len() != m * k || b.len() != k * n || c.len() != m * n {
                c.fill(0.0);
                return;
            }
            let (rsa, csa) = if a_t { (1, m) } else { (k, 1) };
            let (rsb, csb) = if b_t { (1, k) } else { (n, 1) };
            // SAFETY: as in `gemm!`: element (i, l) of `a` is read at
            // i * rsa + l * csa, at most m*k - 1 for either layout, and (l, j)
            // of `b` at l * rsb + j * csb, at most k*n - 1; the slices have
            // exactly those lengths (checked above); `c` is a unique borrow,
            // row-major, initialised or not (beta = 0).
            unsafe {
                matrixmultiply::$gemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    rsa as isize,
                    csa as isize,
                    b.as_ptr(),
                    rsb as isize,
                    csb as isize,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        }
    };
}

gemm_strided!(gemm_f32_strided, f32, sgemm, gemm_f32);
gemm_strided!(gemm_f64_strided, f64, dgemm, gemm_f64);

/// Wrapping integer `c := a @ b` (row-major), in i-k-j order so the inner
/// loop runs along rows of `b` and `c`.
pub(crate) fn int_matmul<T: Num>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
    c.fill(T::ZERO);
    if n == 0 || k == 0 {
        return;
    }
    for (crow, arow) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)).take(m) {
        for (&x, brow) in arow.iter().zip(b.chunks_exact(n)) {
            for (o, &y) in crow.iter_mut().zip(brow) {
                *o = T::add(*o, T::mul(x, y));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Element;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    fn vals(n: usize, seed: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * 37 + seed * 11) % 17) as f64 - 8.0).collect()
    }

    fn check<T: Element>(conv: fn(f64) -> T) {
        let mut out = None;
        for (sa, sb) in [
            (vec![3], vec![3]),
            (vec![4, 3], vec![3]),
            (vec![3], vec![3, 5]),
            (vec![4, 3], vec![3, 5]),
            (vec![1, 1], vec![1, 1]),
            (vec![17, 33], vec![33, 9]),
            (vec![2, 0], vec![0, 3]),
            (vec![0, 3], vec![3, 2]),
            (vec![0], vec![0]),
        ] {
            let (m, k) = if sa.len() == 2 { (sa[0], sa[1]) } else { (1, sa[0]) };
            let n = if sb.len() == 2 { sb[1] } else { 1 };
            let (x, y) = (vals(m * k, 1), vals(k * n, 2));
            let a = Tensor::from_vec(&sa, x.iter().map(|&v| conv(v)).collect()).unwrap();
            let b = Tensor::from_vec(&sb, y.iter().map(|&v| conv(v)).collect()).unwrap();
            matmul(&a, &b, &mut out).unwrap();
            let r = out.as_ref().unwrap();
            let mut want_shape = vec![];
            if sa.len() == 2 {
                want_shape.push(m);
            }
            if sb.len() == 2 {
                want_shape.push(n);
            }
            assert_eq!(r.shape(), &want_shape[..], "{sa:?} @ {sb:?}");
            assert_eq!(r.to_f64_vec(), naive(m, k, n, &x, &y), "{sa:?} @ {sb:?}");
        }
    }

    /// `dot_general` by its definition: every result element a sum over
    /// the contracted index tuple, in f64.
    fn naive_dot_general(sa: &[usize], sb: &[usize], x: &[f64], y: &[f64], d: &DotDims) -> (Vec<usize>, Vec<f64>) {
        let g = rules::dot_general(sa, sb, d).unwrap();
        let shape: Vec<usize> = g.dims();
        let strides = |s: &[usize]| {
            let mut st = vec![1usize; s.len()];
            for i in (0..s.len().saturating_sub(1)).rev() {
                st[i] = st[i + 1] * s[i + 1];
            }
            st
        };
        let (st_a, st_b) = (strides(sa), strides(sb));
        let unravel = |mut i: usize, s: &[usize]| {
            let mut v = vec![0; s.len()];
            for j in (0..s.len()).rev() {
                v[j] = i % s[j];
                i /= s[j];
            }
            v
        };
        let n: usize = shape.iter().product();
        let kn: usize = g.contract.iter().product();
        let mut out = vec![0.0; n];
        for (o, slot) in out.iter_mut().enumerate() {
            let idx = unravel(o, &shape);
            let nbatch = g.batch.len();
            let nfa = g.lhs_free.len();
            for kk in 0..kn {
                let ki = unravel(kk, &g.contract);
                let (mut ia, mut ib) = (0, 0);
                for (j, (&la, &rb)) in d.lhs_batch.iter().zip(&d.rhs_batch).enumerate() {
                    ia += idx[j] * st_a[la as usize];
                    ib += idx[j] * st_b[rb as usize];
                }
                for (j, &ax) in g.lhs_free_axes.iter().enumerate() {
                    ia += idx[nbatch + j] * st_a[ax];
                }
                for (j, &ax) in g.rhs_free_axes.iter().enumerate() {
                    ib += idx[nbatch + nfa + j] * st_b[ax];
                }
                for (j, (&lc, &rc)) in d.lhs_contract.iter().zip(&d.rhs_contract).enumerate() {
                    ia += ki[j] * st_a[lc as usize];
                    ib += ki[j] * st_b[rc as usize];
                }
                *slot += x[ia] * y[ib];
            }
        }
        (shape, out)
    }

    fn dd(lb: &[u32], rb: &[u32], lc: &[u32], rc: &[u32]) -> DotDims {
        DotDims { lhs_batch: lb.to_vec(), rhs_batch: rb.to_vec(), lhs_contract: lc.to_vec(), rhs_contract: rc.to_vec() }
    }

    fn check_dot_general<T: Element>(conv: fn(f64) -> T) {
        let mut out = None;
        let cases: Vec<(Vec<usize>, Vec<usize>, DotDims)> = vec![
            // batched matmul, [b, m, k] x [b, k, n]
            (vec![3, 5, 4], vec![3, 4, 6], dd(&[0], &[0], &[2], &[1])),
            // attention scores bqd,bkd->bqk (rhs laid out [b, n, k])
            (vec![2, 7, 3], vec![2, 5, 3], dd(&[0], &[0], &[2], &[2])),
            // rank-3 @ rank-2 without batch axes
            (vec![2, 3, 4], vec![4, 6], dd(&[], &[], &[2], &[0])),
            // lhs laid out [b, k, m] and rhs [b, n, k] (both read in place for floats), m above SMALL_M
            (vec![2, 3, 9], vec![2, 7, 3], dd(&[0], &[0], &[1], &[2])),
            (vec![3, 9], vec![7, 3], dd(&[], &[], &[0], &[1])),
            // batch axes not leading, two contracting axes out of order
            (vec![4, 2, 3, 5], vec![3, 5, 6, 2], dd(&[1], &[3], &[2, 3], &[0, 1])),
            // outer product, no contraction
            (vec![3], vec![4], dd(&[], &[], &[], &[])),
            // inner product
            (vec![5], vec![5], dd(&[], &[], &[0], &[0])),
            // two batch axes (bhqd,bhkd->bhqk)
            (vec![2, 2, 3, 4], vec![2, 2, 5, 4], dd(&[0, 1], &[0, 1], &[3], &[3])),
            // empty contraction and empty batch
            (vec![2, 0, 3], vec![2, 0, 4], dd(&[0], &[0], &[1], &[1])),
            (vec![0, 2, 3], vec![0, 3, 4], dd(&[0], &[0], &[2], &[1])),
            (vec![2, 17, 9], vec![2, 9, 13], dd(&[0], &[0], &[2], &[1])),
            // enough multiply-adds for the batches to run on the rayon pool
            (vec![4, 64, 64], vec![4, 64, 64], dd(&[0], &[0], &[2], &[1])),
        ];
        for (sa, sb, d) in cases {
            let (na, nb): (usize, usize) = (sa.iter().product(), sb.iter().product());
            let (x, y) = (vals(na, 1), vals(nb, 2));
            let a = Tensor::from_vec(&sa, x.iter().map(|&v| conv(v)).collect()).unwrap();
            let b = Tensor::from_vec(&sb, y.iter().map(|&v| conv(v)).collect()).unwrap();
            dot_general(&a, &b, &d, &mut out).unwrap();
            let r = out.as_ref().unwrap();
            let (shape, want) = naive_dot_general(&sa, &sb, &x, &y, &d);
            assert_eq!(r.shape(), &shape[..], "{sa:?} {sb:?} {d:?}");
            assert_eq!(r.to_f64_vec(), want, "{sa:?} {sb:?} {d:?}");
        }
    }

    #[test]
    fn dot_general_matches_its_definition_for_every_dtype() {
        check_dot_general::<f32>(|v| v as f32);
        check_dot_general::<f64>(|v| v);
        check_dot_general::<i32>(|v| v as i32);
        check_dot_general::<i64>(|v| v as i64);
    }

    #[test]
    fn dot_general_errors() {
        let mut out = None;
        let a = Tensor::zeros(DType::F32, &[2, 3]).unwrap();
        let b = Tensor::zeros(DType::F32, &[4, 3]).unwrap();
        let e = dot_general(&a, &b, &dd(&[0], &[0], &[1], &[1]), &mut out).unwrap_err();
        assert_eq!(e.op, "dot_general");
        assert_eq!(e.message, "batch dimensions differ (2 vs 4), lhs: f32[2, 3], rhs: f32[4, 3]");
        let e = dot_general(&a, &b, &dd(&[], &[], &[2], &[1]), &mut out).unwrap_err();
        assert_eq!(e.message, "lhs axis 2 out of range, lhs: f32[2, 3], rhs: f32[4, 3]");
        let e = dot_general(&a, &b, &dd(&[], &[], &[1, 1], &[1, 0]), &mut out).unwrap_err();
        assert_eq!(e.message, "lhs axis 1 named twice, lhs: f32[2, 3], rhs: f32[4, 3]");
        assert!(dot_general(&a, &b, &dd(&[0], &[], &[1], &[1]), &mut out).is_err());
        assert!(
            dot_general(&a, &Tensor::zeros(DType::F64, &[4, 3]).unwrap(), &dd(&[], &[], &[1], &[1]), &mut out).is_err()
        );
        let t = Tensor::zeros(DType::Bool, &[2]).unwrap();
        assert!(dot_general(&t, &t, &dd(&[], &[], &[0], &[0]), &mut out).is_err());
        let big = Tensor::from_vec(&[1, 2], vec![i32::MAX, 1]).unwrap();
        let two = Tensor::from_vec(&[1, 2], vec![2i32, 2]).unwrap();
        dot_general(&big, &two, &dd(&[0], &[0], &[1], &[1]), &mut out).unwrap();
        assert_eq!(out.unwrap().to_f64_vec(), vec![f64::from(i32::MAX.wrapping_mul(2).wrapping_add(2))]);
    }

    /// The blocked small-`m` product (with and without AVX) gives the
    /// plain axpy order's floats bit for bit, for every tail length.
    #[test]
    fn small_m_blocks_keep_the_axpy_order() {
        fn axpy(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
            let mut c = vec![0.0f32; m * n];
            for i in 0..m {
                for kk in 0..k {
                    for j in 0..n {
                        c[i * n + j] += a[i * k + kk] * b[kk * n + j];
                    }
                }
            }
            c
        }
        let vals = |n: usize, s: usize| -> Vec<f32> {
            (0..n).map(|i| ((i * s % 1009) as f32 / 1009.0 - 0.5) * 3.7e-1 + 1e-7 * i as f32).collect()
        };
        for (m, k) in [(1, 128), (3, 7), (4, 33)] {
            for n in [1, 5, 63, 64, 65, 128, 130] {
                let (a, b) = (vals(m * k, 7919), vals(k * n, 104_729));
                let want = axpy(m, k, n, &a, &b);
                let mut c = vec![f32::NAN; m * n];
                small_m_matmul::<f32, 64>(m, k, n, &a, &b, &mut c);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&c), bits(&want), "m={m} k={k} n={n}");
                let mut c = vec![f32::NAN; m * n];
                small_m_blocks::<f32, 64>(m, k, n, &a, &b, &mut c);
                assert_eq!(bits(&c), bits(&want), "portable, m={m} k={k} n={n}");
            }
        }
    }

    #[test]
    fn matmul_matches_naive_for_every_dtype() {
        check::<f32>(|v| v as f32);
        check::<f64>(|v| v);
        check::<i32>(|v| v as i32);
        check::<i64>(|v| v as i64);
    }

    #[test]
    fn matmul_errors_and_wrapping() {
        let mut out = None;
        let a = Tensor::zeros(DType::F32, &[2, 3]).unwrap();
        let b = Tensor::zeros(DType::F32, &[4, 2]).unwrap();
        let e = matmul(&a, &b, &mut out).unwrap_err();
        assert_eq!(e.message, "inner dimensions differ (3 vs 4), lhs: f32[2, 3], rhs: f32[4, 2]");
        assert!(matmul(&a, &Tensor::zeros(DType::F64, &[3]).unwrap(), &mut out).is_err());
        assert!(matmul(&Tensor::zeros(DType::F32, &[1, 2, 3]).unwrap(), &b, &mut out).is_err());
        assert!(matmul(&Tensor::scalar(1.0f32), &b, &mut out).is_err());
        let t = Tensor::zeros(DType::Bool, &[2]).unwrap();
        assert!(matmul(&t, &t, &mut out).is_err());
        let big = Tensor::from_vec(&[2], vec![i32::MAX, 1]).unwrap();
        let two = Tensor::from_vec(&[2], vec![2i32, 2]).unwrap();
        matmul(&big, &two, &mut out).unwrap();
        assert_eq!(out.unwrap().scalar_i64(), Some(i32::MAX.wrapping_mul(2).wrapping_add(2) as i64));
    }
}
