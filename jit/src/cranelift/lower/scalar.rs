//! Scalar semantics: one element of an op as Cranelift instructions (or a
//! libcall), with the interpreter's integer and NaN rules.

use super::*;

impl Lowerer<'_, '_> {
    // ---- scalar semantics ----------------------------------------------------

    /// Wrapping `x * y`; by 3, 5 or 9, `x + (x << k)`, which x86 computes
    /// with one `lea` (a cycle, where `imul` takes three). Example:
    /// Collatz's `3 * x + 1` becomes `lea 1(x, x, 2)`.
    pub(super) fn imul(&mut self, x: Value, y: Value) -> Value {
        let (v, c) = match (self.const_int(x), self.const_int(y)) {
            (_, Some(c)) => (x, c),
            (Some(c), _) => (y, c),
            _ => return self.b.ins().imul(x, y),
        };
        let shift = match c {
            3 => 1,
            5 => 2,
            9 => 3,
            _ => return self.b.ins().imul(x, y),
        };
        let k = self.iconst(types::I8, shift);
        let sh = self.b.ins().ishl(v, k);
        self.b.ins().iadd(v, sh)
    }

    /// `x / y` with XLA's rules: `x / 0 = -1`, `MIN / -1 = MIN`; never traps.
    pub(super) fn sdiv(&mut self, ty: Type, x: Value, y: Value) -> Value {
        if let Some(d) = self.const_int(y) {
            return match d {
                0 => self.iconst(ty, -1),
                -1 => self.b.ins().ineg(x),
                _ => self.b.ins().sdiv(x, y),
            };
        }
        let (zero, one, m1) = (self.iconst(ty, 0), self.iconst(ty, 1), self.iconst(ty, -1));
        let min = self.iconst(ty, if ty == types::I64 { i64::MIN } else { i64::from(i32::MIN) });
        let y0 = self.b.ins().icmp(IntCC::Equal, y, zero);
        let xmin = self.b.ins().icmp(IntCC::Equal, x, min);
        let ym1 = self.b.ins().icmp(IntCC::Equal, y, m1);
        let ovf = self.b.ins().band(xmin, ym1);
        let bad = self.b.ins().bor(y0, ovf);
        let safe = self.b.ins().select(bad, one, y);
        // With the divisor replaced by 1, `MIN / 1 = MIN` is already right.
        let q = self.b.ins().sdiv(x, safe);
        self.b.ins().select(y0, m1, q)
    }

    /// `x % y` with XLA's rules: `x % 0 = x`, `MIN % -1 = 0`; never traps.
    pub(super) fn srem(&mut self, ty: Type, x: Value, y: Value) -> Value {
        if let Some(d) = self.const_int(y) {
            return match d {
                0 => x,
                -1 => self.iconst(ty, 0),
                _ => self.b.ins().srem(x, y),
            };
        }
        let (zero, one, m1) = (self.iconst(ty, 0), self.iconst(ty, 1), self.iconst(ty, -1));
        let y0 = self.b.ins().icmp(IntCC::Equal, y, zero);
        let ym1 = self.b.ins().icmp(IntCC::Equal, y, m1);
        let bad = self.b.ins().bor(y0, ym1);
        // `x % 1 = 0 = x % -1`.
        let safe = self.b.ins().select(bad, one, y);
        let r = self.b.ins().srem(x, safe);
        self.b.ins().select(y0, x, r)
    }

    /// Unsigned `x / y` (`x / 0` is all ones) or `x % y` (`x % 0 = x`); never traps.
    pub(super) fn udiv_rem(&mut self, div: bool, ty: Type, x: Value, y: Value) -> Value {
        if let Some(d) = self.const_int(y) {
            return match (d, div) {
                (0, true) => self.iconst(ty, -1),
                (0, false) => x,
                (_, true) => self.b.ins().udiv(x, y),
                (_, false) => self.b.ins().urem(x, y),
            };
        }
        let (zero, one) = (self.iconst(ty, 0), self.iconst(ty, 1));
        let y0 = self.b.ins().icmp(IntCC::Equal, y, zero);
        let safe = self.b.ins().select(y0, one, y);
        if div {
            let q = self.b.ins().udiv(x, safe);
            let all = self.iconst(ty, -1);
            self.b.ins().select(y0, all, q)
        } else {
            let r = self.b.ins().urem(x, safe);
            self.b.ins().select(y0, x, r)
        }
    }

    /// XLA's shifts (the `Int` kernels'): the amount read as unsigned; at or
    /// above the bit width, 0, or the sign for an arithmetic right shift.
    pub(super) fn shift(&mut self, op: BinaryOp, d: DType, x: Value, y: Value) -> Value {
        let ty = clif_type(d);
        let bits = self.iconst(ty, i64::from(ty.bits()));
        let over = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, y, bits);
        // Cranelift masks the amount to the bit width; `over` picks the fill.
        let (r, fill) = match op {
            BinaryOp::Shl => (self.b.ins().ishl(x, y), self.iconst(ty, 0)),
            _ if d.is_unsigned() => (self.b.ins().ushr(x, y), self.iconst(ty, 0)),
            _ => {
                let top = self.iconst(ty, i64::from(ty.bits()) - 1);
                (self.b.ins().sshr(x, y), self.b.ins().sshr(x, top))
            }
        };
        self.b.ins().select(over, fill, r)
    }

    /// The kernels' `max_nan(a, b)`: `a` if `a` is NaN or `b <= a`, else `b`.
    pub(super) fn max_nan(&mut self, d: DType, a: Value, b: Value) -> Value {
        if d.is_float() {
            let a_nan = self.b.ins().fcmp(FloatCC::Unordered, a, a);
            let le = self.b.ins().fcmp(FloatCC::LessThanOrEqual, b, a);
            let c = self.b.ins().bor(a_nan, le);
            self.b.ins().select(c, a, b)
        } else {
            let cc = if d.is_unsigned() { IntCC::UnsignedLessThanOrEqual } else { IntCC::SignedLessThanOrEqual };
            let le = self.b.ins().icmp(cc, b, a);
            self.b.ins().select(le, a, b)
        }
    }

    /// The kernels' `min_nan(a, b)`: `a` if `a` is NaN or `b >= a`, else `b`.
    pub(super) fn min_nan(&mut self, d: DType, a: Value, b: Value) -> Value {
        if d.is_float() {
            let a_nan = self.b.ins().fcmp(FloatCC::Unordered, a, a);
            let ge = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, b, a);
            let c = self.b.ins().bor(a_nan, ge);
            self.b.ins().select(c, a, b)
        } else {
            let cc = if d.is_unsigned() { IntCC::UnsignedGreaterThanOrEqual } else { IntCC::SignedGreaterThanOrEqual };
            let ge = self.b.ins().icmp(cc, b, a);
            self.b.ins().select(ge, a, b)
        }
    }

    pub(super) fn binary_scalar(&mut self, op: BinaryOp, d: DType, x: Value, y: Value) -> Result<Value, CompileError> {
        let ty = clif_type(d);
        Ok(match d {
            DType::BF16 | DType::F16 => return super::no_half(d).map(|()| x),
            DType::Bool => match op {
                BinaryOp::And | BinaryOp::Min => self.b.ins().band(x, y),
                BinaryOp::Or | BinaryOp::Max => self.b.ins().bor(x, y),
                BinaryOp::Xor => self.b.ins().bxor(x, y),
                BinaryOp::Eq => self.b.ins().icmp(IntCC::Equal, x, y),
                BinaryOp::Ne => self.b.ins().icmp(IntCC::NotEqual, x, y),
                BinaryOp::Lt => self.b.ins().icmp(IntCC::UnsignedLessThan, x, y),
                BinaryOp::Le => self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, x, y),
                BinaryOp::Gt => self.b.ins().icmp(IntCC::UnsignedGreaterThan, x, y),
                BinaryOp::Ge => self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, x, y),
                _ => return unsupported!("{op} of bool operands (the interpreter reports the error)"),
            },
            DType::U32 | DType::U8 => match op {
                BinaryOp::Add => self.b.ins().iadd(x, y),
                BinaryOp::Sub => self.b.ins().isub(x, y),
                BinaryOp::Mul => self.imul(x, y),
                BinaryOp::Div => self.udiv_rem(true, ty, x, y),
                BinaryOp::Rem => self.udiv_rem(false, ty, x, y),
                BinaryOp::Max => self.max_nan(d, x, y),
                BinaryOp::Min => self.min_nan(d, x, y),
                BinaryOp::Eq => self.b.ins().icmp(IntCC::Equal, x, y),
                BinaryOp::Ne => self.b.ins().icmp(IntCC::NotEqual, x, y),
                BinaryOp::Lt => self.b.ins().icmp(IntCC::UnsignedLessThan, x, y),
                BinaryOp::Le => self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, x, y),
                BinaryOp::Gt => self.b.ins().icmp(IntCC::UnsignedGreaterThan, x, y),
                BinaryOp::Ge => self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, x, y),
                BinaryOp::And => self.b.ins().band(x, y),
                BinaryOp::Or => self.b.ins().bor(x, y),
                BinaryOp::Xor => self.b.ins().bxor(x, y),
                BinaryOp::Shl | BinaryOp::Shr => self.shift(op, d, x, y),
                BinaryOp::Pow => match libcalls::binary(op, d) {
                    Some(f) => self.call(f, &[ty, ty], ty, &[x, y]),
                    None => return unsupported!("{op} on {d}"),
                },
            },
            DType::I32 | DType::I64 => match op {
                BinaryOp::Eq | BinaryOp::Ne if self.is_rem_pow2_test(x, y).is_some() => {
                    let (v, mask) = self.is_rem_pow2_test(x, y).unwrap_or((x, 0));
                    let m = self.iconst(ty, mask);
                    let low = self.b.ins().band(v, m);
                    let z = self.iconst(ty, 0);
                    let cc = if op == BinaryOp::Eq { IntCC::Equal } else { IntCC::NotEqual };
                    self.b.ins().icmp(cc, low, z)
                }
                BinaryOp::Add => self.b.ins().iadd(x, y),
                BinaryOp::Sub => self.b.ins().isub(x, y),
                BinaryOp::Mul => self.imul(x, y),
                BinaryOp::Div => self.sdiv(ty, x, y),
                BinaryOp::Rem => self.srem(ty, x, y),
                BinaryOp::Max => self.max_nan(d, x, y),
                BinaryOp::Min => self.min_nan(d, x, y),
                BinaryOp::Eq => self.b.ins().icmp(IntCC::Equal, x, y),
                BinaryOp::Ne => self.b.ins().icmp(IntCC::NotEqual, x, y),
                BinaryOp::Lt => self.b.ins().icmp(IntCC::SignedLessThan, x, y),
                BinaryOp::Le => self.b.ins().icmp(IntCC::SignedLessThanOrEqual, x, y),
                BinaryOp::Gt => self.b.ins().icmp(IntCC::SignedGreaterThan, x, y),
                BinaryOp::Ge => self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, x, y),
                BinaryOp::Pow => match libcalls::binary(op, d) {
                    Some(f) => self.call(f, &[ty, ty], ty, &[x, y]),
                    None => return unsupported!("{op} on {d}"),
                },
                BinaryOp::And => self.b.ins().band(x, y),
                BinaryOp::Or => self.b.ins().bor(x, y),
                BinaryOp::Xor => self.b.ins().bxor(x, y),
                BinaryOp::Shl | BinaryOp::Shr => self.shift(op, d, x, y),
            },
            DType::F32 | DType::F64 => match op {
                BinaryOp::Add => self.b.ins().fadd(x, y),
                BinaryOp::Sub => self.b.ins().fsub(x, y),
                BinaryOp::Mul => self.b.ins().fmul(x, y),
                BinaryOp::Div => self.b.ins().fdiv(x, y),
                BinaryOp::Max => self.max_nan(d, x, y),
                BinaryOp::Min => self.min_nan(d, x, y),
                BinaryOp::Eq => self.b.ins().fcmp(FloatCC::Equal, x, y),
                BinaryOp::Ne => self.b.ins().fcmp(FloatCC::NotEqual, x, y),
                BinaryOp::Lt => self.b.ins().fcmp(FloatCC::LessThan, x, y),
                BinaryOp::Le => self.b.ins().fcmp(FloatCC::LessThanOrEqual, x, y),
                BinaryOp::Gt => self.b.ins().fcmp(FloatCC::GreaterThan, x, y),
                BinaryOp::Ge => self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, y),
                BinaryOp::Rem | BinaryOp::Pow => match libcalls::binary(op, d) {
                    Some(f) => self.call(f, &[ty, ty], ty, &[x, y]),
                    None => return unsupported!("{op} on {d}"),
                },
                BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Shl | BinaryOp::Shr => {
                    return unsupported!("{op} of {d} operands (the interpreter reports the error)")
                }
            },
        })
    }

    pub(super) fn unary_scalar(&mut self, op: UnaryOp, d: DType, x: Value) -> Result<Value, CompileError> {
        let bad = || unsupported!("{op} of a {d} operand (the interpreter reports the error)");
        Ok(match (d, op) {
            (DType::Bool, UnaryOp::Not) => {
                let one = self.iconst(types::I8, 1);
                self.b.ins().bxor(x, one)
            }
            (DType::Bool, _) => return bad(),
            (DType::I32 | DType::I64 | DType::U32 | DType::U8, UnaryOp::Not) => self.b.ins().bnot(x),
            (_, UnaryOp::Not) => return bad(),
            (DType::I32 | DType::I64 | DType::U32 | DType::U8, UnaryOp::Neg) => self.b.ins().ineg(x),
            (DType::U32 | DType::U8, UnaryOp::Abs | UnaryOp::Relu) => x,
            (DType::I32 | DType::I64, UnaryOp::Abs) => {
                let z = self.zero(d);
                let neg = self.b.ins().icmp(IntCC::SignedLessThan, x, z);
                let n = self.b.ins().ineg(x);
                self.b.ins().select(neg, n, x)
            }
            (_, UnaryOp::Relu) => {
                let z = self.zero(d);
                self.max_nan(d, x, z)
            }
            (DType::I32 | DType::I64 | DType::U32 | DType::U8, _) => return bad(),
            (_, UnaryOp::Neg) => self.b.ins().fneg(x),
            (_, UnaryOp::Abs) => self.b.ins().fabs(x),
            (_, UnaryOp::Sqrt) => self.b.ins().sqrt(x),
            (_, UnaryOp::Rsqrt) => {
                // Two correctly rounded operations, as the kernel computes it.
                let s = self.b.ins().sqrt(x);
                let one = match d {
                    DType::F32 => self.b.ins().f32const(1.0),
                    _ => self.b.ins().f64const(1.0),
                };
                self.b.ins().fdiv(one, s)
            }
            // Everything else is a call of the kernel's scalar function.
            (_, _) => {
                let ty = clif_type(d);
                match libcalls::unary(op, d) {
                    Some(f) => self.call(f, &[ty], ty, &[x]),
                    None => return bad(),
                }
            }
        })
    }

    /// `x as to`, as the `cast` kernel converts one element.
    pub(super) fn cast_scalar(&mut self, from: DType, to: DType, x: Value) -> Value {
        let tt = clif_type(to);
        match (from, to) {
            _ if from == to => x,
            // `u8` and `bool` are both an `I8` (0 or 1 for a bool).
            (DType::Bool, DType::U8) => x,
            (DType::U8, DType::Bool) => {
                let z = self.zero(from);
                self.b.ins().icmp(IntCC::NotEqual, x, z)
            }
            (DType::U8, DType::I32 | DType::I64 | DType::U32) => self.b.ins().uextend(tt, x),
            (DType::I32 | DType::I64 | DType::U32, DType::U8) => self.b.ins().ireduce(tt, x),
            (DType::U8, _) => {
                let w = self.b.ins().uextend(types::I32, x);
                self.b.ins().fcvt_from_sint(tt, w)
            }
            (_, DType::U8) => {
                // Saturate through i32 (NaN gives 0), then clamp into [0, 255].
                let w = self.b.ins().fcvt_to_sint_sat(types::I32, x);
                let (lo, hi) = (self.iconst(types::I32, 0), self.iconst(types::I32, 255));
                let w = self.b.ins().smax(w, lo);
                let w = self.b.ins().smin(w, hi);
                self.b.ins().ireduce(tt, w)
            }
            (DType::Bool, DType::I32 | DType::I64 | DType::U32) => self.b.ins().uextend(tt, x),
            (DType::Bool, _) => {
                let w = self.b.ins().uextend(types::I32, x);
                self.b.ins().fcvt_from_sint(tt, w)
            }
            (DType::I32 | DType::I64 | DType::U32, DType::Bool) => {
                let z = self.zero(from);
                self.b.ins().icmp(IntCC::NotEqual, x, z)
            }
            (DType::F32 | DType::F64, DType::Bool) => {
                let z = self.zero(from);
                self.b.ins().fcmp(FloatCC::NotEqual, x, z)
            }
            (DType::I32, DType::U32) | (DType::U32, DType::I32) => x,
            (DType::I32, DType::I64) => self.b.ins().sextend(tt, x),
            (DType::U32, DType::I64) => self.b.ins().uextend(tt, x),
            (DType::I64, DType::I32 | DType::U32) => self.b.ins().ireduce(tt, x),
            (DType::U32, _) => self.b.ins().fcvt_from_uint(tt, x),
            (DType::I32 | DType::I64, _) => self.b.ins().fcvt_from_sint(tt, x),
            (DType::F32, DType::F64) => self.b.ins().fpromote(tt, x),
            (DType::F64, DType::F32) => self.b.ins().fdemote(tt, x),
            (_, DType::U32) => self.b.ins().fcvt_to_uint_sat(tt, x),
            (_, _) => self.b.ins().fcvt_to_sint_sat(tt, x),
        }
    }
}
