//! Text building: types, literals and dense constants as StableHLO text, and
//! the emitter's one-op builders (`un`, `bin`, `select`, `reshape`, ...).

use super::*;

/// `tensor<2x3xf32>`, `tensor<i1>`.
pub(crate) fn tensor_type(dtype: DType, shape: &[usize]) -> String {
    let mut s = String::from("tensor<");
    for d in shape {
        let _ = write!(s, "{d}x");
    }
    s.push_str(dtype.stablehlo());
    s.push('>');
    s
}

pub(super) fn int_min(d: DType) -> i64 {
    match d {
        DType::I64 => i64::MIN,
        DType::U32 | DType::U8 => 0,
        _ => i64::from(i32::MIN),
    }
}

pub(super) fn int_max(d: DType) -> i64 {
    match d {
        DType::I64 => i64::MAX,
        DType::U32 => i64::from(u32::MAX),
        DType::U8 => i64::from(u8::MAX),
        _ => i64::from(i32::MAX),
    }
}

pub(super) fn fmt_f32(x: f32) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e7 {
        format!("{x:.1}")
    } else {
        format!("0x{:08X}", x.to_bits())
    }
}

pub(super) fn fmt_f64(x: f64) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("0x{:016X}", x.to_bits())
    }
}

/// A scalar literal of `dtype`, exact.
pub(super) fn lit_text(dtype: DType, v: Lit) -> String {
    match (dtype, v) {
        (DType::Bool, Lit::B(b)) => b.to_string(),
        (DType::Bool, Lit::I(i)) => (i != 0).to_string(),
        (DType::Bool, Lit::F(f)) => (f != 0.0).to_string(),
        (DType::I32, Lit::I(i)) => (i as i32).to_string(),
        (DType::I64, Lit::I(i)) => i.to_string(),
        (DType::U32, Lit::I(i)) => (i as u32).to_string(),
        (DType::U8, Lit::I(i)) => (i as u8).to_string(),
        (DType::I32 | DType::I64 | DType::U32 | DType::U8, Lit::B(b)) => i32::from(b).to_string(),
        (DType::U32, Lit::F(f)) => (f as u32).to_string(),
        (DType::U8, Lit::F(f)) => (f as u8).to_string(),
        (DType::I32, Lit::F(f)) => (f as i32).to_string(),
        (DType::I64, Lit::F(f)) => (f as i64).to_string(),
        (DType::F32, Lit::F(f)) => fmt_f32(f as f32),
        (DType::F32, Lit::I(i)) => fmt_f32(i as f32),
        (DType::F32, Lit::B(b)) => fmt_f32(f32::from(u8::from(b))),
        (DType::F64, Lit::F(f)) => fmt_f64(f),
        (DType::F64, Lit::I(i)) => fmt_f64(i as f64),
        (DType::F64, Lit::B(b)) => fmt_f64(f64::from(u8::from(b))),
        (DType::BF16, v) => fmt_half(loopvm_runtime::bf16::from_f64(lit_f64(v)).to_bits()),
        (DType::F16, v) => fmt_half(loopvm_runtime::f16::from_f64(lit_f64(v)).to_bits()),
    }
}

/// A literal's value as `f64` (for the half floats, rounded from it once).
fn lit_f64(v: Lit) -> f64 {
    match v {
        Lit::B(b) => f64::from(u8::from(b)),
        Lit::I(i) => i as f64,
        Lit::F(f) => f,
    }
}

/// A half float (`bf16`, `f16`) literal: its 16 bits in hex, which MLIR
/// reads as the bit pattern of a 16-bit float (exact, NaN and inf too).
pub(super) fn fmt_half(bits: u16) -> String {
    format!("0x{bits:04X}")
}

/// The elements of a constant as literal texts.
pub(super) fn elements(t: &Tensor) -> Vec<String> {
    match t.buffer() {
        Buffer::Bool(v) => v.iter().map(|b| b.to_string()).collect(),
        Buffer::I32(v) => v.iter().map(|x| x.to_string()).collect(),
        Buffer::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        Buffer::U32(v) => v.iter().map(|x| x.to_string()).collect(),
        Buffer::U8(v) => v.iter().map(|x| x.to_string()).collect(),
        Buffer::F32(v) => v.iter().map(|x| fmt_f32(*x)).collect(),
        Buffer::F64(v) => v.iter().map(|x| fmt_f64(*x)).collect(),
        Buffer::BF16(v) => v.iter().map(|x| fmt_half(x.to_bits())).collect(),
        Buffer::F16(v) => v.iter().map(|x| fmt_half(x.to_bits())).collect(),
    }
}

/// Raw little-endian bytes of a numeric constant as `"0x..."`.
pub(super) fn hex_bytes(t: &Tensor) -> Option<String> {
    let mut s = String::from("\"0x");
    let mut put = |b: &[u8]| {
        b.iter().for_each(|x| {
            let _ = write!(s, "{x:02X}");
        })
    };
    match t.buffer() {
        Buffer::Bool(_) => return None,
        Buffer::I32(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
        Buffer::I64(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
        Buffer::U32(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
        Buffer::U8(v) => put(v),
        Buffer::F32(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
        Buffer::F64(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
        Buffer::BF16(v) => v.iter().for_each(|x| put(&x.to_bits().to_le_bytes())),
        Buffer::F16(v) => v.iter().for_each(|x| put(&x.to_bits().to_le_bytes())),
    }
    s.push('"');
    Some(s)
}

/// Nests `items` (row-major) into `[[...], [...]]` by `shape`.
pub(super) fn nest(items: &[String], shape: &[usize], out: &mut String) {
    match shape.split_first() {
        None => out.push_str(items.first().map_or("0", |s| s.as_str())),
        Some((&d, rest)) => {
            let inner: usize = rest.iter().product();
            out.push('[');
            for i in 0..d {
                if i > 0 {
                    out.push_str(", ");
                }
                let lo = (i * inner).min(items.len());
                let hi = ((i + 1) * inner).min(items.len());
                nest(&items[lo..hi], rest, out);
            }
            out.push(']');
        }
    }
}

/// The `dense<...>` body of a constant tensor.
pub(super) fn dense(t: &Tensor) -> String {
    if t.numel() == 0 {
        return lit_text(t.dtype(), Lit::I(0));
    }
    let items = elements(t);
    if items.iter().all(|s| *s == items[0]) {
        return items[0].clone();
    }
    if items.len() > 256 {
        if let Some(h) = hex_bytes(t) {
            return h;
        }
    }
    let mut s = String::new();
    nest(&items, t.shape(), &mut s);
    s
}

pub(super) fn cmp_type(d: DType) -> &'static str {
    match d {
        DType::Bool | DType::U32 | DType::U8 => "UNSIGNED",
        DType::I32 | DType::I64 => "SIGNED",
        DType::F32 | DType::F64 | DType::BF16 | DType::F16 => "FLOAT",
    }
}

pub(super) fn dims_list(d: &[usize]) -> String {
    let v: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    format!("[{}]", v.join(", "))
}

pub(super) fn i64_array(d: &[i64]) -> String {
    let v: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    format!("array<i64: {}>", v.join(", "))
}

pub(super) fn op_name(inst: &Inst) -> String {
    let base = inst.opcode().info().name.to_lowercase();
    match inst {
        Inst::Unary { op, .. } => format!("{base} {op}"),
        Inst::Binary { op, .. } | Inst::BinaryK { op, .. } | Inst::KBinary { op, .. } => format!("{base} {op}"),
        Inst::Reduce { op, .. } => format!("{base} {op}"),
        Inst::Update { mode, .. } => format!("{base} {mode}"),
        _ => base,
    }
}

pub(super) fn sanitize(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() {
        "f".into()
    } else {
        s
    }
}

impl Emitter<'_> {
    /// `a` and `b` flushed ([`Emitter::flushed`]) when both are floats that
    /// may be constants, else as they are: LLVM folds an op on two
    /// constants exactly, reading a subnormal as itself, where every tier
    /// reads it as zero when it runs (`0 / 9.2e-41` is NaN,
    /// `bitcast(10u32, f32) <= 0.0` true: fuzz seeds 2026120618-19).
    pub(super) fn flushed_constants(&mut self, a: &Val, b: &Val) -> (Val, Val) {
        if a.dtype.is_float() && self.is_const(a) && self.is_const(b) {
            (self.flushed(a), self.flushed(b))
        } else {
            (a.clone(), b.clone())
        }
    }

    /// A float `v` with subnormal elements made (signed) zeros, whatever
    /// code XLA picks for the op that reads or made it.
    pub(super) fn flushed(&mut self, v: &Val) -> Val {
        let min = match v.dtype {
            // bf16 has f32's exponent range, and its ops compute in f32.
            DType::F32 | DType::BF16 => f64::from(f32::MIN_POSITIVE),
            DType::F64 => f64::MIN_POSITIVE,
            // f16's subnormals are normal f32 values: kept on every tier.
            _ => return v.clone(),
        };
        let m = self.splat(v.dtype, &v.shape, Lit::F(min));
        let a = self.un("abs", v);
        let tiny = self.cmp("LT", &a, &m);
        let z = self.zero(v.dtype, &v.shape);
        let signed_zero = self.bin("multiply", v, &z);
        self.select(&tiny, &signed_zero, v)
    }

    /// A float divisor XLA must not see as a constant: its simplifier turns
    /// `x / c` into `x * (1 / c)`, which is not correctly rounded (`10 / 3`
    /// is one ulp off) and is wrong where `1 / c` is subnormal and flushed
    /// (`inf / -3.4e38` gives NaN). The interpreter divides.
    ///
    /// A divisor is hidden whether or not the emitter sees it as a constant:
    /// XLA folds more than the emitter tracks (a `maximum` of constants
    /// inside an inlined call was one), and a barrier costs nothing at run
    /// time (XLA removes barriers before fusion). Only under a constant
    /// dividend is it left to XLA's folder (`float_bin` flushes a subnormal
    /// quotient).
    pub(super) fn opaque_divisor(&mut self, a: &Val, b: &Val) -> Val {
        if !b.dtype.is_float() || self.is_folded(a) {
            return b.clone();
        }
        self.barrier(b)
    }

    /// A same-type elementwise op.
    pub(super) fn un(&mut self, name: &str, a: &Val) -> Val {
        let r = self.op(a.dtype, &a.shape, format!("stablehlo.{name} {} : {}", a.name, a.ty()));
        self.fold_from(r, &[a])
    }

    /// A same-type elementwise binary op; `a` and `b` have one type.
    pub(super) fn bin(&mut self, name: &str, a: &Val, b: &Val) -> Val {
        let r = self.op(a.dtype, &a.shape, format!("stablehlo.{name} {}, {} : {}", a.name, b.name, a.ty()));
        self.fold_from(r, &[a, b])
    }

    pub(super) fn cmp(&mut self, dir: &str, a: &Val, b: &Val) -> Val {
        let r = self.op(
            DType::Bool,
            &a.shape,
            format!(
                "stablehlo.compare {dir}, {}, {}, {} : ({}, {}) -> {}",
                a.name,
                b.name,
                cmp_type(a.dtype),
                a.ty(),
                b.ty(),
                tensor_type(DType::Bool, &a.shape)
            ),
        );
        self.fold_from(r, &[a, b])
    }

    /// `where(c, a, b)`, all of one shape.
    pub(super) fn select(&mut self, c: &Val, a: &Val, b: &Val) -> Val {
        let r = self.op(
            a.dtype,
            &a.shape,
            format!("stablehlo.select {}, {}, {} : {}, {}", c.name, a.name, b.name, c.ty(), a.ty()),
        );
        self.fold_from(r, &[c, a, b])
    }

    /// `bitcast(a, to)`: `stablehlo.bitcast_convert` (same element width).
    pub(super) fn bitcast_convert(&mut self, a: &Val, to: DType) -> Val {
        if a.dtype == to {
            return a.clone();
        }
        let r = self.op(
            to,
            &a.shape,
            format!("stablehlo.bitcast_convert {} : ({}) -> {}", a.name, a.ty(), tensor_type(to, &a.shape)),
        );
        self.fold_from(r, &[a])
    }

    pub(super) fn convert(&mut self, a: &Val, to: DType) -> Val {
        if a.dtype == to {
            return a.clone();
        }
        let r = self.op(
            to,
            &a.shape,
            format!("stablehlo.convert {} : ({}) -> {}", a.name, a.ty(), tensor_type(to, &a.shape)),
        );
        self.fold_from(r, &[a])
    }

    pub(super) fn reshape(&mut self, a: &Val, shape: &[usize]) -> Val {
        if a.shape == shape {
            return a.clone();
        }
        let mut r = self.op(
            a.dtype,
            shape,
            format!("stablehlo.reshape {} : ({}) -> {}", a.name, a.ty(), tensor_type(a.dtype, shape)),
        );
        if numel(shape) == Some(1) {
            r.konst = a.konst;
        }
        self.carry_maker(&r, a);
        self.fold_from(r, &[a])
    }

    /// `a` broadcast to `shape` (NumPy rules; the caller checked them).
    pub(super) fn broadcast_to(&mut self, a: &Val, shape: &[usize]) -> Val {
        if a.shape == shape {
            return a.clone();
        }
        let lead = shape.len() - a.shape.len();
        let dims: Vec<usize> = (lead..shape.len()).collect();
        // Stretched axes (1 → n) are expressed by broadcast_in_dim directly.
        let r = self.op(
            a.dtype,
            shape,
            format!(
                "stablehlo.broadcast_in_dim {}, dims = {} : ({}) -> {}",
                a.name,
                dims_list(&dims),
                a.ty(),
                tensor_type(a.dtype, shape)
            ),
        );
        self.carry_maker(&r, a);
        self.spreads.insert(r.name.clone(), Spread::Broadcast(a.clone()));
        self.fold_from(r, &[a])
    }

    /// A scalar (one-element) integer or bool value as a rank-0 index of `to`.
    pub(super) fn scalar_index(&mut self, what: &str, a: &Val, to: DType) -> Result<Val> {
        if a.numel() != 1 {
            return Err(EmitError::new(what, format!("index is not a scalar, got {}", a.ty())));
        }
        if a.dtype.is_float() {
            return Err(EmitError::new(what, format!("index is not an integer, got {}", a.ty())));
        }
        // The wrap of a negative index compares it with 0: XLA must not
        // take an `abs` or a square for non-negative (see `shield`).
        let a = if self.may_be_non_negative_int(a) { self.barrier(a) } else { a.clone() };
        let s = self.reshape(&a, &[]);
        let mut c = self.convert(&s, to);
        c.konst = s.konst;
        Ok(c)
    }

    /// NaN-propagating `maximum` (`is_max`) or `minimum` of floats, exactly
    /// as the kernels: `a` if `a` is NaN or wins (ties keep `a`), else `b`.
    pub(super) fn max_min_float(&mut self, is_max: bool, a: &Val, b: &Val) -> Val {
        let a_nan = self.cmp("NE", a, a);
        let wins = self.cmp(if is_max { "LE" } else { "GE" }, b, a);
        let keep = self.bin("or", &a_nan, &wins);
        let r = self.select(&keep, a, b);
        self.made(&r, Made::Select);
        r
    }
}
