//! Unboxed scalars: one element held by value, without a tensor's shape,
//! buffer or reference count, and the elementwise ops on them.
//!
//! The interpreter keeps rank-0 values in its registers as [`Scalar`]s and
//! runs the elementwise ops on them here. Each op computes with the same
//! element functions as the tensor kernels ([`Num`], [`Int`], [`Float`]
//! through [`float_unary_scalar`], `max_nan`, `min_nan`, `Conv`), so a
//! scalar result is the kernel's result on a rank-0 tensor, bit for bit
//! (`tests::scalar_ops_agree_with_the_kernels` checks every op and dtype on
//! edge values). An op the scalar path does not take (a dtype mismatch, an
//! op the dtype does not accept) gives `None`: the caller runs the tensor
//! kernel, which reports the error.

use super::num::{float_unary_scalar, max_nan, min_nan, Conv, Float, Int, Num};
use crate::{BinaryOp, DType, Element, Tensor, UnaryOp};

/// One element of any dtype, by value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    /// A `bool`.
    Bool(bool),
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f32`.
    F32(f32),
    /// An `f64`.
    F64(f64),
    /// A `u32`.
    U32(u32),
    /// A `u8`.
    U8(u8),
    /// A `bf16`.
    BF16(half::bf16),
    /// An `f16`.
    F16(half::f16),
}

/// Calls `$body` with `$x` bound to the value of scalar `$s`, whatever its
/// dtype, and `$T` to its element type.
macro_rules! with_scalar {
    ($s:expr, $x:ident : $T:ident => $body:expr) => {
        match $s {
            Scalar::Bool($x) => {
                #[allow(dead_code)]
                type $T = bool;
                $body
            }
            Scalar::I32($x) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            Scalar::I64($x) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            Scalar::F32($x) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            Scalar::F64($x) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
            Scalar::U32($x) => {
                #[allow(dead_code)]
                type $T = u32;
                $body
            }
            Scalar::U8($x) => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            Scalar::BF16($x) => {
                #[allow(dead_code)]
                type $T = half::bf16;
                $body
            }
            Scalar::F16($x) => {
                #[allow(dead_code)]
                type $T = half::f16;
                $body
            }
        }
    };
}

/// Element types that convert to and from [`Scalar`].
pub trait ScalarElement: Element {
    /// Wraps one element.
    fn into_scalar(self) -> Scalar;
}

macro_rules! scalar_element {
    ($($t:ty => $d:ident),*) => {$(
        impl ScalarElement for $t {
            #[inline(always)]
            fn into_scalar(self) -> Scalar {
                Scalar::$d(self)
            }
        }
    )*};
}
scalar_element!(bool => Bool, i32 => I32, i64 => I64, f32 => F32, f64 => F64, u32 => U32, u8 => U8, half::bf16 => BF16, half::f16 => F16);

impl Scalar {
    /// The dtype of the element.
    #[inline]
    pub fn dtype(self) -> DType {
        with_scalar!(self, _x: T => T::DTYPE)
    }

    /// The element of a rank-0 tensor (`None` for any other rank).
    #[inline]
    pub fn of(t: &Tensor) -> Option<Scalar> {
        if t.rank() != 0 {
            return None;
        }
        crate::with_dtype!(t.dtype(), T => match t.as_slice::<T>() {
            Some([x]) => Some(x.into_scalar()),
            _ => None,
        })
    }

    /// A rank-0 tensor holding the element (allocates its buffer).
    pub fn to_tensor(self) -> Tensor {
        with_scalar!(self, x: T => Tensor::scalar(x))
    }

    /// Writes the element into `t` when `t` is a rank-0 tensor of the same
    /// dtype that holds the only reference to its buffer; `false` (and `t`
    /// untouched) otherwise.
    #[inline]
    pub fn store_into(self, t: &mut Tensor) -> bool {
        if t.rank() != 0 || t.dtype() != self.dtype() || !t.is_unique() {
            return false;
        }
        with_scalar!(self, x: T => match t.make_mut::<T>() {
            Some([o]) => {
                *o = x;
                true
            }
            _ => false,
        })
    }

    /// The value as `i64`, as [`Tensor::scalar_i64`] reads a one-element
    /// tensor (floats saturate, NaN gives 0, bools 0 or 1).
    #[inline]
    pub fn to_i64(self) -> i64 {
        with_scalar!(self, x: T => <T as Element>::to_i64(x))
    }

    /// The value of a `bool` scalar.
    #[inline]
    pub fn to_bool(self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The size of the element in bytes.
    pub fn nbytes(self) -> usize {
        self.dtype().size_in_bytes()
    }
}

/// `a op b` for two scalars of one dtype, as [`crate::kernels::binary`]
/// computes it; `None` when the dtypes differ or `op` does not take them.
#[inline(always)]
pub fn binary(op: BinaryOp, a: Scalar, b: Scalar) -> Option<Scalar> {
    use Scalar as S;
    match (a, b) {
        (S::I64(x), S::I64(y)) => int(op, x, y),
        (S::I32(x), S::I32(y)) => int(op, x, y),
        (S::F32(x), S::F32(y)) => num(op, x, y),
        (S::F64(x), S::F64(y)) => num(op, x, y),
        (S::U32(x), S::U32(y)) => int(op, x, y),
        (S::U8(x), S::U8(y)) => int(op, x, y),
        (S::BF16(x), S::BF16(y)) => num(op, x, y),
        (S::F16(x), S::F16(y)) => num(op, x, y),
        (S::Bool(x), S::Bool(y)) => boolean(op, x, y),
        _ => None,
    }
}

/// The arithmetic and comparisons (the tensor kernel's `binary_num`).
#[inline(always)]
fn num<T: Num + ScalarElement>(op: BinaryOp, x: T, y: T) -> Option<Scalar> {
    let v = |v: T| Some(v.into_scalar());
    let c = |c: bool| Some(Scalar::Bool(c));
    match op {
        BinaryOp::Add => v(T::add(x, y)),
        BinaryOp::Sub => v(T::sub(x, y)),
        BinaryOp::Mul => v(T::mul(x, y)),
        BinaryOp::Div => v(T::div(x, y)),
        BinaryOp::Rem => v(T::rem(x, y)),
        BinaryOp::Pow => v(T::pow(x, y)),
        BinaryOp::Max => v(max_nan(x, y)),
        BinaryOp::Min => v(min_nan(x, y)),
        BinaryOp::Eq => c(T::ord(x) == T::ord(y)),
        BinaryOp::Ne => c(T::ord(x) != T::ord(y)),
        BinaryOp::Lt => c(T::ord(x) < T::ord(y)),
        BinaryOp::Le => c(T::ord(x) <= T::ord(y)),
        BinaryOp::Gt => c(T::ord(x) > T::ord(y)),
        BinaryOp::Ge => c(T::ord(x) >= T::ord(y)),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Shl | BinaryOp::Shr => None,
    }
}

/// The integer bit ops, then the arithmetic (the kernel's `binary_int`).
#[inline(always)]
fn int<T: Int + ScalarElement>(op: BinaryOp, x: T, y: T) -> Option<Scalar> {
    let v = |v: T| Some(v.into_scalar());
    match op {
        BinaryOp::And => v(T::and(x, y)),
        BinaryOp::Or => v(T::or(x, y)),
        BinaryOp::Xor => v(T::xor(x, y)),
        BinaryOp::Shl => v(T::shl(x, y)),
        BinaryOp::Shr => v(T::shr(x, y)),
        _ => num(op, x, y),
    }
}

/// The ops on bools (the kernel's `binary_bool`).
#[allow(clippy::bool_comparison)]
#[inline(always)]
fn boolean(op: BinaryOp, x: bool, y: bool) -> Option<Scalar> {
    Some(Scalar::Bool(match op {
        BinaryOp::And | BinaryOp::Min => x & y,
        BinaryOp::Or | BinaryOp::Max => x | y,
        BinaryOp::Xor => x ^ y,
        BinaryOp::Eq => x == y,
        BinaryOp::Ne => x != y,
        BinaryOp::Lt => x < y,
        BinaryOp::Le => x <= y,
        BinaryOp::Gt => x > y,
        BinaryOp::Ge => x >= y,
        _ => return None,
    }))
}

/// `op a` as [`crate::kernels::unary`] computes it; `None` when `op` does
/// not take `a`'s dtype.
#[inline(always)]
pub fn unary(op: UnaryOp, a: Scalar) -> Option<Scalar> {
    if !op.accepts().accepts(a.dtype()) {
        return None;
    }
    match a {
        Scalar::Bool(x) => matches!(op, UnaryOp::Not).then_some(Scalar::Bool(!x)),
        Scalar::I32(x) => unary_int(op, x),
        Scalar::I64(x) => unary_int(op, x),
        Scalar::U32(x) => unary_int(op, x),
        Scalar::U8(x) => unary_int(op, x),
        Scalar::F32(x) => unary_float(op, x),
        Scalar::F64(x) => unary_float(op, x),
        Scalar::BF16(x) => unary_float(op, x),
        Scalar::F16(x) => unary_float(op, x),
    }
}

#[inline(always)]
fn unary_int<T: Int + ScalarElement>(op: UnaryOp, x: T) -> Option<Scalar> {
    Some(
        match op {
            UnaryOp::Neg => T::neg(x),
            UnaryOp::Not => T::not(x),
            UnaryOp::Abs => T::abs(x),
            UnaryOp::Relu => max_nan(x, T::ZERO),
            _ => return None,
        }
        .into_scalar(),
    )
}

#[inline(always)]
fn unary_float<T: Float + ScalarElement>(op: UnaryOp, x: T) -> Option<Scalar> {
    // `float_unary` is the one table of the float functions; `not` is the
    // one op it has none for, and `accepts` turned it away above.
    Some(float_unary_scalar(op, x).into_scalar())
}

/// `a` converted to `to`, as [`crate::kernels::cast`] converts.
#[inline]
pub fn cast(a: Scalar, to: DType) -> Scalar {
    with_scalar!(a, x: S => crate::with_dtype!(to, D => <S as Conv<D>>::conv(x).into_scalar()))
}

/// `where(c, a, b)` for scalars: `None` unless `c` is a bool and `a`, `b`
/// share a dtype.
#[inline]
pub fn select(c: Scalar, a: Scalar, b: Scalar) -> Option<Scalar> {
    match c {
        Scalar::Bool(k) if a.dtype() == b.dtype() => Some(if k { a } else { b }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels;

    /// Edge values of each dtype, as rank-0 tensors.
    fn values(d: DType) -> Vec<Scalar> {
        let i: &[i64] = &[0, 1, -1, 2, 3, -7, 31, 32, 63, 64, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN];
        let f: &[f64] = &[0.0, -0.0, 1.0, -1.5, 2.0, 0.5, 1e-40, 3.0e38, f64::INFINITY, -f64::INFINITY, f64::NAN];
        match d {
            DType::Bool => vec![Scalar::Bool(false), Scalar::Bool(true)],
            DType::I32 => i.iter().map(|&x| Scalar::I32(x as i32)).collect(),
            DType::I64 => i.iter().map(|&x| Scalar::I64(x)).collect(),
            DType::U32 => i.iter().map(|&x| Scalar::U32(x as u32)).collect(),
            DType::U8 => i.iter().map(|&x| Scalar::U8(x as u8)).collect(),
            DType::F32 => f.iter().map(|&x| Scalar::F32(x as f32)).collect(),
            DType::F64 => f.iter().map(|&x| Scalar::F64(x)).collect(),
            DType::BF16 => f.iter().map(|&x| Scalar::BF16(half::bf16::from_f64(x))).collect(),
            DType::F16 => f.iter().map(|&x| Scalar::F16(half::f16::from_f64(x))).collect(),
        }
    }

    /// Equal as bits (NaN equals NaN of the same payload).
    fn same(a: Option<Scalar>, b: Option<Scalar>) -> bool {
        match (a, b) {
            (Some(Scalar::F32(x)), Some(Scalar::F32(y))) => x.to_bits() == y.to_bits(),
            (Some(Scalar::F64(x)), Some(Scalar::F64(y))) => x.to_bits() == y.to_bits(),
            (Some(Scalar::BF16(x)), Some(Scalar::BF16(y))) => x.to_bits() == y.to_bits(),
            (Some(Scalar::F16(x)), Some(Scalar::F16(y))) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    fn kernel_result(r: Result<(), crate::RuntimeError>, out: Option<Tensor>) -> Option<Scalar> {
        r.ok().and(out).and_then(|t| Scalar::of(&t))
    }

    #[test]
    fn scalar_ops_agree_with_the_kernels() {
        for d in DType::ALL {
            let vs = values(d);
            for &op in BinaryOp::ALL {
                for &x in &vs {
                    for &y in &vs {
                        let mut out = None;
                        let r = kernels::binary(op, &x.to_tensor(), &y.to_tensor(), &mut out);
                        let k = kernel_result(r, out);
                        assert!(
                            same(binary(op, x, y), k),
                            "{op} {x:?} {y:?}: scalar {:?}, kernel {k:?}",
                            binary(op, x, y)
                        );
                    }
                }
            }
            for &op in UnaryOp::ALL {
                for &x in &vs {
                    let mut out = None;
                    let k = kernel_result(kernels::unary(op, &x.to_tensor(), &mut out), out);
                    assert!(same(unary(op, x), k), "{op} {x:?}: scalar {:?}, kernel {k:?}", unary(op, x));
                }
            }
            for to in DType::ALL {
                for &x in &vs {
                    let mut out = None;
                    let k = kernel_result(kernels::cast(&x.to_tensor(), to, &mut out), out);
                    assert!(same(Some(cast(x, to)), k), "{x:?} as {to}: scalar {:?}, kernel {k:?}", cast(x, to));
                }
            }
        }
    }

    #[test]
    fn a_mismatch_is_left_to_the_kernel() {
        assert_eq!(binary(BinaryOp::Add, Scalar::I32(1), Scalar::I64(1)), None);
        assert_eq!(binary(BinaryOp::Shl, Scalar::F32(1.0), Scalar::F32(1.0)), None);
        assert_eq!(unary(UnaryOp::Exp, Scalar::I32(1)), None);
        assert_eq!(select(Scalar::I32(1), Scalar::I32(1), Scalar::I32(2)), None);
        assert_eq!(select(Scalar::Bool(false), Scalar::I32(1), Scalar::I32(2)), Some(Scalar::I32(2)));
    }

    #[test]
    fn store_into_reuses_only_a_unique_rank0_buffer() {
        let mut t = Scalar::I64(1).to_tensor();
        assert!(Scalar::I64(5).store_into(&mut t));
        assert_eq!(t.scalar_i64(), Some(5));
        assert!(!Scalar::I32(5).store_into(&mut t), "another dtype");
        let shared = t.clone();
        assert!(!Scalar::I64(6).store_into(&mut t), "a shared buffer");
        assert_eq!(shared.scalar_i64(), Some(5));
    }
}
