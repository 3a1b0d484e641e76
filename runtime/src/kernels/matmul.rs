//! Matrix multiplication with NumPy's rank rules for ranks 1 and 2. Floats go
//! through `matrixmultiply`'s packed GEMM; integers use a plain wrapping
//! loop.

use super::elems;
use super::num::Num;
use crate::rules::{self, MatmulError};
use crate::{checked_numel, out_buffer, DType, RuntimeError, Shape, Tensor};

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
        DType::Bool => {}
    }
    Ok(())
}

/// Rows of `a` at most this many take the row-by-row path: for a
/// vector-matrix product (an RNN step) it beats packing `b` for a GEMM.
const SMALL_M: usize = 4;

/// `c := a @ b` one row of `c` at a time, as axpys along rows of `b` (the
/// inner loop vectorises). For small `m`.
fn small_m_matmul<T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
) {
    for (i, crow) in c.chunks_exact_mut(n).enumerate().take(m) {
        crow.fill(T::default());
        for (kk, brow) in b.chunks_exact(n).enumerate().take(k) {
            let aik = a[i * k + kk];
            for (cj, bj) in crow.iter_mut().zip(brow) {
                *cj = *cj + aik * *bj;
            }
        }
    }
}

/// Defines `$name`: `c := a @ b` for row-major `a: m×k`, `b: k×n`, `c: m×n`
/// of `$t`, through `matrixmultiply::$gemm` (row-by-row for small `m`).
macro_rules! gemm {
    ($name:ident, $t:ty, $gemm:ident) => {
        fn $name(m: usize, k: usize, n: usize, a: &[$t], b: &[$t], c: &mut [$t]) {
            if m == 0 || n == 0 {
                return;
            }
            if k == 0 || a.len() != m * k || b.len() != k * n || c.len() != m * n {
                c.fill(0.0);
                return;
            }
            if m <= SMALL_M {
                small_m_matmul(m, k, n, a, b, c);
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

gemm!(gemm_f32, f32, sgemm);
gemm!(gemm_f64, f64, dgemm);

/// Wrapping integer `c := a @ b` (row-major), in i-k-j order so the inner
/// loop runs along rows of `b` and `c`.
fn int_matmul<T: Num>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
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
