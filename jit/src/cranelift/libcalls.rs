//! Functions native code calls for what Cranelift has no instruction for:
//! transcendental functions, float remainder and power, integer power.
//!
//! Each computes exactly what the interpreter's kernel computes for one
//! element (`runtime/src/kernels/num.rs`), with the same `std` functions, so
//! both tiers agree bit for bit. They are plain `extern "C"` functions that
//! neither panic nor unwind; the lowering calls them by address.

use loopvm_runtime::{BinaryOp, DType, UnaryOp};

macro_rules! float_unary {
    ($($name:ident: $t:ty => |$x:ident| $e:expr;)*) => {
        $(
            extern "C" fn $name($x: $t) -> $t {
                $e
            }
        )*
    };
}

float_unary! {
    exp_f32: f32 => |x| x.exp();
    exp_f64: f64 => |x| x.exp();
    log_f32: f32 => |x| x.ln();
    log_f64: f64 => |x| x.ln();
    tanh_f32: f32 => |x| x.tanh();
    tanh_f64: f64 => |x| x.tanh();
    sin_f32: f32 => |x| x.sin();
    sin_f64: f64 => |x| x.sin();
    cos_f32: f32 => |x| x.cos();
    cos_f64: f64 => |x| x.cos();
    sigmoid_f32: f32 => |x| 1.0 / (1.0 + (-x).exp());
    sigmoid_f64: f64 => |x| 1.0 / (1.0 + (-x).exp());
}

extern "C" fn rem_f32(a: f32, b: f32) -> f32 {
    a % b
}
extern "C" fn rem_f64(a: f64, b: f64) -> f64 {
    a % b
}
extern "C" fn pow_f32(a: f32, b: f32) -> f32 {
    a.powf(b)
}
extern "C" fn pow_f64(a: f64, b: f64) -> f64 {
    a.powf(b)
}

macro_rules! int_pow {
    ($name:ident, $t:ty) => {
        /// XLA `power` on integers: repeated squaring, wrapping; a negative
        /// exponent gives 0 except for bases 1 and -1.
        extern "C" fn $name(a: $t, b: $t) -> $t {
            if b < 0 {
                return match a {
                    1 => 1,
                    -1 if b & 1 == 0 => 1,
                    -1 => -1,
                    _ => 0,
                };
            }
            let (mut base, mut e, mut acc): ($t, $t, $t) = (a, b, 1);
            while e > 0 {
                if e & 1 == 1 {
                    acc = acc.wrapping_mul(base);
                }
                e >>= 1;
                base = base.wrapping_mul(base);
            }
            acc
        }
    };
}
int_pow!(pow_i32, i32);
int_pow!(pow_i64, i64);

/// The address of the function computing unary `op` on one `dtype`
/// element, for the ops lowered as calls.
pub(crate) fn unary(op: UnaryOp, dtype: DType) -> Option<usize> {
    let f32s: Option<extern "C" fn(f32) -> f32> = match op {
        UnaryOp::Exp => Some(exp_f32),
        UnaryOp::Log => Some(log_f32),
        UnaryOp::Tanh => Some(tanh_f32),
        UnaryOp::Sin => Some(sin_f32),
        UnaryOp::Cos => Some(cos_f32),
        UnaryOp::Sigmoid => Some(sigmoid_f32),
        _ => None,
    };
    let f64s: Option<extern "C" fn(f64) -> f64> = match op {
        UnaryOp::Exp => Some(exp_f64),
        UnaryOp::Log => Some(log_f64),
        UnaryOp::Tanh => Some(tanh_f64),
        UnaryOp::Sin => Some(sin_f64),
        UnaryOp::Cos => Some(cos_f64),
        UnaryOp::Sigmoid => Some(sigmoid_f64),
        _ => None,
    };
    match dtype {
        DType::F32 => f32s.map(|f| f as usize),
        DType::F64 => f64s.map(|f| f as usize),
        _ => None,
    }
}

/// The address of the function computing binary `op` on two `dtype`
/// elements, for the ops lowered as calls.
pub(crate) fn binary(op: BinaryOp, dtype: DType) -> Option<usize> {
    match (op, dtype) {
        (BinaryOp::Rem, DType::F32) => Some(rem_f32 as extern "C" fn(f32, f32) -> f32 as usize),
        (BinaryOp::Rem, DType::F64) => Some(rem_f64 as extern "C" fn(f64, f64) -> f64 as usize),
        (BinaryOp::Pow, DType::F32) => Some(pow_f32 as extern "C" fn(f32, f32) -> f32 as usize),
        (BinaryOp::Pow, DType::F64) => Some(pow_f64 as extern "C" fn(f64, f64) -> f64 as usize),
        (BinaryOp::Pow, DType::I32) => Some(pow_i32 as extern "C" fn(i32, i32) -> i32 as usize),
        (BinaryOp::Pow, DType::I64) => Some(pow_i64 as extern "C" fn(i64, i64) -> i64 as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_pow_matches_xla() {
        assert_eq!(pow_i32(3, 4), 81);
        assert_eq!(pow_i32(2, 31), i32::MIN);
        assert_eq!(pow_i32(2, -1), 0);
        assert_eq!(pow_i32(-1, -5), -1);
        assert_eq!(pow_i64(-3, 3), -27);
        assert_eq!(pow_i64(0, 0), 1);
    }

    #[test]
    fn every_call_op_has_an_address() {
        for op in [UnaryOp::Exp, UnaryOp::Log, UnaryOp::Tanh, UnaryOp::Sin, UnaryOp::Cos, UnaryOp::Sigmoid] {
            assert!(unary(op, DType::F32).is_some() && unary(op, DType::F64).is_some());
        }
        assert!(unary(UnaryOp::Neg, DType::F32).is_none());
        assert!(binary(BinaryOp::Pow, DType::I64).is_some());
        assert!(binary(BinaryOp::Add, DType::I64).is_none());
    }
}
