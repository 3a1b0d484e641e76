//! The scalar-literal rule: literal values, their dtypes, and the coercion of
//! untyped literals to the dtype of the other operand.

use super::{boxed, mk};
use crate::ast::{self, ExprKind as A, LitValue, UnOp};
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::typed::{self as t, ConstData, ConstValues};
use crate::types::Type;
use loopvm_runtime::DType;

/// The value of an untyped numeric literal (looking through parentheses,
/// negation and expression-only blocks): the literals that adopt the dtype of
/// the other operand.
pub(super) fn weak_lit(e: &ast::Expr) -> Option<LitValue> {
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
pub(super) fn int_lit(e: &ast::Expr) -> Option<i128> {
    match &e.kind {
        A::Lit(LitValue::Int(i), s) if s.is_none_or(|d| d.is_int()) => Some(*i),
        A::Paren(x) => int_lit(x),
        A::Unary(UnOp::Neg, x) => int_lit(x).map(|i| -i),
        _ => None,
    }
}

/// A literal as written in messages.
fn lit_text(v: LitValue) -> String {
    match v {
        LitValue::Int(i) => i.to_string(),
        LitValue::Float(f) => format!("{f:?}"),
        LitValue::Bool(b) => b.to_string(),
    }
}

/// A scalar constant of `dtype` from a literal, range-checked.
pub(super) fn lit(v: LitValue, dtype: DType, span: Span) -> DResult<t::Expr> {
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
        (LitValue::Int(i), DType::U32) => match u32::try_from(i) {
            Ok(x) => ConstValues::Int(vec![i64::from(x)]),
            Err(_) => return err(format!("integer literal {i} does not fit in u32"), span),
        },
        (LitValue::Int(i), DType::U8) => match u8::try_from(i) {
            Ok(x) => ConstValues::Int(vec![i64::from(x)]),
            Err(_) => return err(format!("integer literal {i} does not fit in u8"), span),
        },
        (LitValue::Int(i), d) if d.is_half() && half_overflows(i as f64, d) => {
            return err(format!("integer literal {i} is out of range for {d}"), span)
        }
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
        (LitValue::Float(f), d) if d.is_half() => {
            if half_overflows(f, d) {
                return err(format!("float literal {} is out of range for {d}", lit_text(v)), span);
            }
            ConstValues::Float(vec![f])
        }
        (LitValue::Float(_), d) => {
            return Err(boxed(
                Diagnostic::new(format!("cannot use float literal {} as {d}", lit_text(v)), span)
                    .with_note("use an integer literal, or give the other operand a float dtype with `as`"),
            ))
        }
    };
    Ok(mk(t::ExprKind::Const(ConstData { dtype, shape: Vec::new(), values }), Type::scalar(dtype), span))
}

/// `true` when finite `x` rounds to infinity in half float `d` (`bf16`,
/// `f16`; nearest even, as the constant is stored).
fn half_overflows(x: f64, d: DType) -> bool {
    let r = match d {
        DType::BF16 => loopvm_runtime::bf16::from_f64(x).to_f64(),
        _ => loopvm_runtime::f16::from_f64(x).to_f64(),
    };
    x.is_finite() && r.is_infinite()
}

/// The dtype of a literal without a suffix: i32, f32 or bool.
pub(super) fn default_dtype(v: LitValue) -> DType {
    match v {
        LitValue::Int(_) => DType::I32,
        LitValue::Float(_) => DType::F32,
        LitValue::Bool(_) => DType::Bool,
    }
}

/// Converts a weak literal to `dtype` (other expressions are returned as they are).
pub(super) fn coerce(ast: Option<&ast::Expr>, e: t::Expr, dtype: DType) -> DResult<t::Expr> {
    match ast.and_then(weak_lit) {
        Some(v) if e.ty.tensor().is_some_and(|t| t.dtype != dtype && t.is_scalar()) => lit(v, dtype, e.span),
        _ => Ok(e),
    }
}

/// Applies the scalar-literal rule to two operands.
pub(super) fn unify_literals(la: &ast::Expr, l: t::Expr, ra: &ast::Expr, r: t::Expr) -> DResult<(t::Expr, t::Expr)> {
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
