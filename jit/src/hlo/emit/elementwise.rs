//! Elementwise ops: unary and binary ops (float ones through the shield),
//! integer division and powers, `where`, casts and `iota`.

use super::*;

impl Emitter<'_> {
    // ------------------------------------------------------- elementwise

    /// Elementwise unary `op`: the dtypes and the StableHLO op come from
    /// its row in the op table ([`UnaryOp::accepts`], [`UnaryOp::stablehlo`]).
    pub(super) fn unary(&mut self, op: UnaryOp, a: &Val) -> Result<Val> {
        let accepts = op.accepts();
        if !accepts.accepts(a.dtype) {
            let why = format!("{op} requires {}, got {}", accepts.requirement(), a.ty());
            return Err(EmitError::new(format!("unary {op}"), why));
        }
        Ok(match op {
            // StableHLO's `abs` takes no unsigned operand; it is the identity.
            UnaryOp::Abs if a.dtype.is_unsigned() => a.clone(),
            UnaryOp::Neg if a.dtype.is_unsigned() => {
                let z = self.zero(a.dtype, &a.shape);
                self.bin("subtract", &z, a)
            }
            UnaryOp::Neg => {
                // -(a * c1) * c2 is reassociated too: the negation carries the maker.
                let r = self.un("negate", a);
                self.carry_maker(&r, a);
                r
            }
            UnaryOp::Relu => {
                let z = self.zero(a.dtype, &a.shape);
                if a.dtype.is_float() {
                    self.max_min_float(true, a, &z)
                } else {
                    self.bin("maximum", a, &z)
                }
            }
            UnaryOp::Not if !a.dtype.is_float() => self.row_un(op, a),
            UnaryOp::Abs if !a.dtype.is_float() => {
                let a = self.shield_unary(op, a);
                let r = self.row_un(op, &a);
                self.made(&r, Made::Abs);
                r
            }
            // Every other op: a float op spelled as its row says (its
            // simplifier rules, if any, are `Made::of`'s, in `shield`).
            _ => self.float_un(op, a),
        })
    }

    /// A float unary op on `a`, spelled as its table row says, shielded
    /// from the simplifier ([`shield`]); its result recorded as made by it.
    pub(super) fn float_un(&mut self, op: UnaryOp, a: &Val) -> Val {
        // A constant operand: LLVM folds the op exactly, reading a
        // subnormal (a `bitcast` of an integer literal) as itself, where
        // every tier reads it as zero when it runs. For the ops whose
        // result then differs by more than a subnormal (`log(1.4e-45)` is
        // -inf, not -103.97: fuzz seed 2026120619), the operand is flushed.
        let flush = matches!(op, UnaryOp::Log | UnaryOp::Log1p | UnaryOp::Sqrt | UnaryOp::Rsqrt);
        let a = if flush && a.dtype.is_float() && self.is_const(a) { self.flushed(a) } else { a.clone() };
        let a = self.shield_unary(op, &a);
        let mut r = self.row_un(op, &a);
        let via_exp = matches!(op, UnaryOp::Exp | UnaryOp::Erfc | UnaryOp::Erf | UnaryOp::Sigmoid | UnaryOp::ErfInv);
        if via_exp && !self.is_folded(&a) {
            // XLA CPU bug: its exp of a NaN that LLVM sees as a constant
            // (`exp(x + 0.0 / 0.0)`) is garbage (5.9e-13, 3.1e-41, ...),
            // while a run-time NaN gives NaN; so is `erfc`'s, which XLA
            // computes with an exp (`gelu(..., approximate: false)` of a
            // constant NaN in bf16 gave 1.6e37: fuzz seed 2026120621),
            // and the functions XLA expands alike. A NaN operand is its
            // own result, chosen after the op.
            let nan = self.cmp("NE", &a, &a);
            r = self.select(&nan, &a, &r);
        }
        self.made(&r, Made::of(op));
        r
    }

    /// Unary `op` on `a` as its table row spells it ([`UnaryOp::stablehlo`]).
    pub(super) fn row_un(&mut self, op: UnaryOp, a: &Val) -> Val {
        let ty = a.ty();
        // CHLO ops (XLA decomposes them) print their result type too.
        let sig = if op.stablehlo().starts_with("chlo.") { format!("{ty} -> {ty}") } else { ty };
        let r = self.op(a.dtype, &a.shape, format!("{} {} : {sig}", op.stablehlo(), a.name));
        self.fold_from(r, &[a])
    }

    /// A float arithmetic binary op shielded from the simplifier ([`shield`]).
    pub(super) fn float_bin(&mut self, name: &str, a: &Val, b: &Val) -> Val {
        // Two constants: XLA's folder (or LLVM's, for an add or subtract
        // whose second constant `shield_binary` hides) computes the op
        // exactly but keeps a subnormal result, which every tier flushes
        // when it runs (`1.2e-38 / 34.375` is 0): the result is flushed
        // explicitly.
        let constants = a.dtype.is_float() && self.is_const(a) && self.is_const(b) && name != "power";
        // Two `f16` constants: XLA's LLVM module flushes subnormal results of
        // every float type when it folds (`denormal-fp-math` is
        // `preserve-sign`), where the op, run, computes in `f32` and keeps an
        // `f16` subnormal (`49.75f16 * 1.19e-7f16` is 5.96e-6, not 0: fuzz
        // seed 2026120624). The op is written in `f32`, which rounds the
        // same (24 bits hold an `f16` sum, product or quotient before its
        // one rounding) and whose result is never an `f32` subnormal.
        if constants && a.dtype == DType::F16 && matches!(name, "add" | "subtract" | "multiply" | "divide") {
            let (x, y) = (self.convert(a, DType::F32), self.convert(b, DType::F32));
            let r = self.float_bin(name, &x, &y);
            return self.convert(&r, DType::F16);
        }
        // And it reads a subnormal operand as itself: flushed first (power's
        // operands are flushed below in any case).
        let (a, b) = if name == "power" { (a.clone(), b.clone()) } else { self.flushed_constants(a, b) };
        let (a, b) = self.shield_binary(name, &a, &b);
        let b = if name == "divide" { self.opaque_divisor(&a, &b) } else { b };
        let (a, b) = if name == "power" {
            // XLA's power reads a subnormal operand as zero in its
            // vector code but not in its scalar code and folder
            // (`0 ** 1e-40` is 1 or 0): flushed here, as on every tier.
            (self.flushed(&a), self.flushed(&b))
        } else {
            (a, b)
        };
        let m = self.binary_maker(name, &a, &b);
        let r = self.bin(name, &a, &b);
        let r = if constants { self.flushed(&r) } else { r };
        if let Some(m) = m {
            self.made(&r, m);
        }
        r
    }

    /// A comparison, float operands shielded from the simplifier's folds.
    pub(super) fn compare(&mut self, dir: &str, a: &Val, b: &Val) -> Val {
        // Two constants: LLVM folds the compare exactly
        // ([`Emitter::flushed_constants`]).
        let (a, b) = self.flushed_constants(a, b);
        let (a, b) = self.shield_binary("compare", &a, &b);
        self.cmp(dir, &a, &b)
    }

    pub(super) fn binary(&mut self, op: BinaryOp, a: &Val, b: &Val) -> Result<Val> {
        let what = format!("binary {op}");
        let types = || format!("lhs: {}, rhs: {}", a.ty(), b.ty());
        if a.dtype != b.dtype {
            return Err(EmitError::new(what, format!("dtype mismatch in {op}, {}", types())));
        }
        let shape = broadcast(&a.shape, &b.shape)
            .ok_or_else(|| EmitError::new(what.clone(), format!("shapes do not broadcast, {}", types())))?;
        let d = a.dtype;
        if !op.accepts().accepts(d) {
            return Err(EmitError::new(what, format!("{} required in {op}, {}", op.accepts().operands(), types())));
        }
        let x = self.broadcast_to(a, &shape);
        let y = self.broadcast_to(b, &shape);
        Ok(match op {
            BinaryOp::Div | BinaryOp::Rem if d.is_int() => self.int_div_rem(op == BinaryOp::Div, &x, &y),
            BinaryOp::Pow if d.is_int() => self.int_pow(&x, &y),
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Pow => {
                self.float_bin(op.hlo_name(), &x, &y)
            }
            BinaryOp::Rem => {
                // XLA's float remainder is a library `fmod`, which reads a
                // subnormal operand's bits whatever the mode (`x % 1e-40`
                // is not NaN there): the operands are flushed, as every
                // tier reads them (fuzz program 0x9f2c43944e6f887e).
                let (x, y) = (self.flushed(&x), self.flushed(&y));
                self.bin(op.hlo_name(), &x, &y)
            }
            BinaryOp::Max | BinaryOp::Min if d == DType::Bool => {
                self.bin(if op == BinaryOp::Max { "or" } else { "and" }, &x, &y)
            }
            BinaryOp::Max | BinaryOp::Min if d.is_float() => self.max_min_float(op == BinaryOp::Max, &x, &y),
            BinaryOp::Max | BinaryOp::Min | BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Shl => {
                self.bin(op.hlo_name(), &x, &y)
            }
            // `>>` is logical on unsigned integers (the row names the signed one).
            BinaryOp::Shr if d.is_unsigned() => self.bin("shift_right_logical", &x, &y),
            BinaryOp::Shr => self.bin(op.hlo_name(), &x, &y),
            // The comparisons' row holds their direction.
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                self.compare(op.stablehlo(), &x, &y)
            }
        })
    }

    /// Integer `/` or `%` with XLA's results for a zero divisor and for
    /// `MIN / -1`, computed with a divisor that is never 0 or -1 against
    /// MIN (XLA's constant folder traps on those).
    pub(super) fn int_div_rem(&mut self, div: bool, a: &Val, b: &Val) -> Val {
        let d = a.dtype;
        if d.is_unsigned() {
            // `x / 0` is all ones, `x % 0 = x`; there is no overflow.
            let zero = self.splat(d, &a.shape, Lit::I(0));
            let one = self.splat(d, &a.shape, Lit::I(1));
            let bz = self.cmp("EQ", b, &zero);
            let safe = self.select(&bz, &one, b);
            return if div {
                let max = self.splat(d, &a.shape, Lit::I(int_max(d)));
                let q = self.bin("divide", a, &safe);
                self.select(&bz, &max, &q)
            } else {
                let r = self.bin("remainder", a, &safe);
                self.select(&bz, a, &r)
            };
        }
        let zero = self.splat(d, &a.shape, Lit::I(0));
        let one = self.splat(d, &a.shape, Lit::I(1));
        let m1 = self.splat(d, &a.shape, Lit::I(-1));
        let min = self.splat(d, &a.shape, Lit::I(int_min(d)));
        let bz = self.cmp("EQ", b, &zero);
        let am = self.cmp("EQ", a, &min);
        let bm = self.cmp("EQ", b, &m1);
        let ovf = self.bin("and", &am, &bm);
        let bad = self.bin("or", &bz, &ovf);
        let safe = self.select(&bad, &one, b);
        if div {
            let q = self.bin("divide", a, &safe);
            self.select(&bz, &m1, &q)
        } else {
            let r = self.bin("remainder", a, &safe);
            self.select(&bz, a, &r)
        }
    }

    /// Integer `a ** b` exactly as the kernel computes it: repeated squaring
    /// over every bit of the exponent, wrapping (XLA's own `power` reads only
    /// the exponent's low bits, so `2 ** 64` would be 1); a negative exponent
    /// gives 0, except `1 ** b = 1` and `(-1) ** b = ±1`.
    pub(super) fn int_pow(&mut self, a: &Val, b: &Val) -> Val {
        let d = a.dtype;
        let bits = 8 * d.size_in_bytes();
        let zero = self.splat(d, &a.shape, Lit::I(0));
        let one = self.splat(d, &a.shape, Lit::I(1));
        let m1 = self.splat(d, &a.shape, Lit::I(-1));
        // `b < 0` must not be folded to false for a `b` XLA takes for
        // non-negative (a wrapped square: see `shield`).
        let b = &if self.may_be_non_negative_int(b) { self.barrier(b) } else { b.clone() };
        let neg = self.cmp("LT", b, &zero);
        let mut e = self.select(&neg, &zero, b);
        let mut base = a.clone();
        let mut p = one.clone();
        for k in 0..bits {
            let bit = self.bin("and", &e, &one);
            let set = self.cmp("NE", &bit, &zero);
            let times = self.bin("multiply", &p, &base);
            p = self.select(&set, &times, &p);
            if k + 1 < bits {
                base = self.bin("multiply", &base, &base);
                e = self.bin("shift_right_logical", &e, &one);
            }
        }
        let odd_bits = self.bin("and", b, &one);
        let odd = self.cmp("NE", &odd_bits, &zero);
        let a1 = self.cmp("EQ", a, &one);
        let am1 = self.cmp("EQ", a, &m1);
        let sign = self.select(&odd, &m1, &one);
        let c1 = self.select(&am1, &sign, &zero);
        let corr = self.select(&a1, &one, &c1);
        self.select(&neg, &corr, &p)
    }

    pub(super) fn where_(&mut self, c: &Val, a: &Val, b: &Val) -> Result<Val> {
        let err =
            |why: &str| EmitError::new("select", format!("{why}, cond: {}, lhs: {}, rhs: {}", c.ty(), a.ty(), b.ty()));
        if c.dtype != DType::Bool {
            return Err(err("condition is not bool"));
        }
        if a.dtype != b.dtype {
            return Err(err("dtype mismatch"));
        }
        let s = broadcast(&a.shape, &b.shape)
            .and_then(|s| broadcast(&c.shape, &s))
            .ok_or_else(|| err("shapes do not broadcast"))?;
        let (c, a, b) = (self.broadcast_to(c, &s), self.broadcast_to(a, &s), self.broadcast_to(b, &s));
        Ok(self.select(&c, &a, &b))
    }

    pub(super) fn cast(&mut self, a: &Val, to: DType) -> Val {
        let from = a.dtype;
        if from == to {
            return a.clone();
        }
        if from.is_half() && !to.is_float() {
            // As the interpreter: by way of the half float's exact f32 value
            // (so a bf16 subnormal is read as the mode says, and the f32
            // saturation bounds below apply).
            let x = self.convert(a, DType::F32);
            return self.cast(&x, to);
        }
        if from == DType::BF16 && to == DType::F64 {
            // By way of the exact f32 value, read as the mode says (a
            // subnormal is 0, as `1e-40f32 as f64`): XLA converts bf16 to
            // f64 without the mode where it folds a constant (fuzz seed
            // 2026120618, `[12.625bf16, 9.18e-41bf16] as f64`).
            let x = self.convert(a, DType::F32);
            let x = self.flushed(&x);
            return self.convert(&x, to);
        }
        if to.is_half() && from != DType::F32 && from != DType::Bool && !from.is_half() {
            // Integers and f64 round to f32 first, then to the half float
            // (XLA's CPU backend converts f64 to bf16 this way); the barrier
            // keeps the simplifier from merging the two conversions.
            let x = self.convert(a, DType::F32);
            let x = self.barrier(&x);
            return self.convert(&x, to);
        }
        if to == DType::Bool {
            // A float is read as the mode says (a subnormal is 0), also
            // where LLVM folds the compare of a constant, such as a
            // `bitcast` of an integer literal (fuzz program 0xaf0507f02f4e45c7).
            let a = if from.is_float() { self.flushed(a) } else { a.clone() };
            let z = self.zero(from, &a.shape);
            return self.cmp("NE", &a, &z);
        }
        if from.is_float() && to.is_int() {
            // Saturate, NaN → 0 (Rust's `as`): clamp into the range where
            // `convert` is exact truncation, and pick MAX at or above 2^bits
            // (an unsigned type's range starts at 0, where negatives go).
            let bits = match to {
                DType::I64 => 63,
                DType::U32 => 32,
                DType::U8 => 8,
                _ => 31,
            };
            let (lo, top, below) = if from == DType::F32 {
                let top = (2.0f32).powi(bits);
                let lo = if to.is_unsigned() { 0.0 } else { -top };
                (f64::from(lo), f64::from(top), f64::from(f32::from_bits(top.to_bits() - 1)))
            } else {
                let top = (2.0f64).powi(bits);
                let lo = if to.is_unsigned() { 0.0 } else { -top };
                (lo, top, f64::from_bits(top.to_bits() - 1))
            };
            let lo_v = self.splat(from, &a.shape, Lit::F(lo));
            let hi_v = self.splat(from, &a.shape, Lit::F(below));
            let top_v = self.splat(from, &a.shape, Lit::F(top));
            let clamped = self.op(
                from,
                &a.shape,
                format!("stablehlo.clamp {}, {}, {} : {}", lo_v.name, a.name, hi_v.name, a.ty()),
            );
            let conv = self.convert(&clamped, to);
            let max_v = self.splat(to, &a.shape, Lit::I(int_max(to)));
            let zero = self.zero(to, &a.shape);
            let big = self.cmp("GE", a, &top_v);
            let nan = self.cmp("NE", a, a);
            let r = self.select(&big, &max_v, &conv);
            return self.select(&nan, &zero, &r);
        }
        let r = self.convert(a, to);
        if from == DType::Bool && to.is_float() {
            self.made(&r, Made::FromBool);
        }
        r
    }

    /// `bitcast(a, to)`: the bits of each element read as `to`.
    pub(super) fn bitcast(&mut self, a: &Val, to: DType) -> Result<Val> {
        if !a.dtype.can_bitcast(to) {
            let why = format!("bitcast of {} to {to} needs two number dtypes of one element width", a.ty());
            return Err(EmitError::new("bitcast", why));
        }
        if a.dtype.is_half() && a.dtype != to {
            // bf16 <-> f16: any NaN first becomes the positive quiet NaN
            // of its type (`CANONICAL_NAN_BF16`, `CANONICAL_NAN_F16`, the
            // bits of its literal), as the kernel's rule says.
            let nan = self.cmp("NE", a, a);
            let c = self.splat(a.dtype, &a.shape, Lit::F(f64::NAN));
            let x = self.select(&nan, &c, a);
            return Ok(self.bitcast_convert(&x, to));
        }
        let r = self.bitcast_convert(a, to);
        if !a.dtype.is_float() || to.is_float() {
            return Ok(r);
        }
        // Any NaN gives the positive quiet NaN's bits (the kernel's rule).
        let canonical = match a.dtype {
            DType::F32 => i64::from(loopvm_runtime::kernels::CANONICAL_NAN_F32),
            _ => loopvm_runtime::kernels::CANONICAL_NAN_F64 as i64,
        };
        let nan = self.cmp("NE", a, a);
        let c = self.splat(to, &a.shape, Lit::I(canonical));
        Ok(self.select(&nan, &c, &r))
    }

    pub(super) fn iota(&mut self, dtype: DType, n: u64) -> Result<Val> {
        let n = usize::try_from(n).map_err(|_| EmitError::new("iota", "iota length too large"))?;
        match dtype {
            DType::Bool => Err(EmitError::new("iota", format!("iota of bool[{n}] is not defined"))),
            DType::I32 if n > i32::MAX as usize + 1 => {
                Err(EmitError::new("iota", format!("iota of i32[{n}] overflows i32")))
            }
            DType::U32 if n > u32::MAX as usize + 1 => {
                Err(EmitError::new("iota", format!("iota of u32[{n}] overflows u32")))
            }
            DType::U8 if n > u8::MAX as usize + 1 => {
                Err(EmitError::new("iota", format!("iota of u8[{n}] overflows u8")))
            }
            _ => Ok(self.op(dtype, &[n], format!("stablehlo.iota dim = 0 : {}", tensor_type(dtype, &[n])))),
        }
    }
}
