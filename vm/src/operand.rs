//! Typed operands of instructions: registers, ids and static attributes.
//! Each implements [`Operand`]: encoding, decoding, register visiting and
//! disassembly, so the opcode table can generate all of them.

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;
use loopvm_runtime::kernels::SliceSpec;
pub use loopvm_runtime::rules::DotDims;
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UnaryOp, UpdateMode};
use std::fmt::Write as _;

/// A register of the current frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(pub u32);
/// A block of the current function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub u32);
/// A constant of the module's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConstId(pub u32);
/// A function of the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FuncId(pub u32);
/// An axis number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Axis(pub u32);
/// An optional axis (`None`: all axes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OptAxis(pub Option<u32>);
/// An optional static length (`scan(..., length: n)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OptLen(pub Option<u64>);
/// A list of registers.
pub type RegList = Vec<Reg>;
/// A static shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dims(pub Vec<u64>);
/// An optional axis permutation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OptAxes(pub Option<Vec<u32>>);
/// Static index/slice specifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slices(pub Vec<SliceSpec>);

/// What the opcode table needs of an operand type.
pub trait Operand: Sized {
    /// Appends the encoding.
    fn encode(&self, w: &mut Writer);
    /// Reads one back.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    /// Calls `f` for each register named.
    fn visit_regs(&self, _f: &mut dyn FnMut(Reg)) {}
    /// Writes the disassembly form.
    fn dis(&self, out: &mut String);
}

impl Operand for Reg {
    fn encode(&self, w: &mut Writer) {
        w.uleb(u64::from(self.0));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Reg(r.u32()?))
    }
    fn visit_regs(&self, f: &mut dyn FnMut(Reg)) {
        f(*self)
    }
    fn dis(&self, out: &mut String) {
        let _ = write!(out, "r{}", self.0);
    }
}

impl Operand for RegList {
    fn encode(&self, w: &mut Writer) {
        w.uleb(self.len() as u64);
        for r in self {
            r.encode(w);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.len(1)?;
        (0..n).map(|_| Reg::decode(r)).collect()
    }
    fn visit_regs(&self, f: &mut dyn FnMut(Reg)) {
        for r in self {
            f(*r)
        }
    }
    fn dis(&self, out: &mut String) {
        out.push('(');
        for (i, r) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            r.dis(out);
        }
        out.push(')');
    }
}

macro_rules! id_operand {
    ($t:ident, $prefix:literal) => {
        impl Operand for $t {
            fn encode(&self, w: &mut Writer) {
                w.uleb(u64::from(self.0));
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok($t(r.u32()?))
            }
            fn dis(&self, out: &mut String) {
                let _ = write!(out, concat!($prefix, "{}"), self.0);
            }
        }
    };
}
id_operand!(BlockId, "b");
id_operand!(ConstId, "k");
id_operand!(FuncId, "f");
id_operand!(Axis, "axis=");

impl Operand for u32 {
    fn encode(&self, w: &mut Writer) {
        w.uleb(u64::from(*self));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u32()
    }
    fn dis(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Operand for u64 {
    fn encode(&self, w: &mut Writer) {
        w.uleb(*self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.uleb()
    }
    fn dis(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Operand for bool {
    fn encode(&self, w: &mut Writer) {
        w.u8(u8::from(*self));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError { offset: r.pos() - 1, message: format!("invalid bool byte {b}") }),
        }
    }
    fn dis(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Operand for OptAxis {
    fn encode(&self, w: &mut Writer) {
        w.uleb(self.0.map_or(0, |a| u64::from(a) + 1));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = r.u32()?;
        Ok(OptAxis(v.checked_sub(1)))
    }
    fn dis(&self, out: &mut String) {
        match self.0 {
            Some(a) => {
                let _ = write!(out, "axis={a}");
            }
            None => out.push_str("all"),
        }
    }
}

impl Operand for OptLen {
    fn encode(&self, w: &mut Writer) {
        match self.0 {
            Some(n) => {
                w.u8(1);
                w.uleb(n);
            }
            None => w.u8(0),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OptLen(if bool::decode(r)? { Some(r.uleb()?) } else { None }))
    }
    fn dis(&self, out: &mut String) {
        match self.0 {
            Some(n) => {
                let _ = write!(out, "length={n}");
            }
            None => out.push_str("length=xs"),
        }
    }
}

impl Operand for Dims {
    fn encode(&self, w: &mut Writer) {
        w.uleb(self.0.len() as u64);
        for d in &self.0 {
            w.uleb(*d);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.len(1)?;
        Ok(Dims((0..n).map(|_| r.uleb()).collect::<Result<_, _>>()?))
    }
    fn dis(&self, out: &mut String) {
        let _ = write!(out, "{:?}", self.0);
    }
}

impl Operand for OptAxes {
    fn encode(&self, w: &mut Writer) {
        match &self.0 {
            Some(p) => {
                w.uleb(p.len() as u64 + 1);
                for a in p {
                    w.uleb(u64::from(*a));
                }
            }
            None => w.uleb(0),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.len(1)?;
        if n == 0 {
            return Ok(OptAxes(None));
        }
        Ok(OptAxes(Some((0..n - 1).map(|_| r.u32()).collect::<Result<_, _>>()?)))
    }
    fn dis(&self, out: &mut String) {
        match &self.0 {
            Some(p) => {
                let _ = write!(out, "perm={p:?}");
            }
            None => out.push_str("perm=reversed"),
        }
    }
}

impl Operand for Slices {
    fn encode(&self, w: &mut Writer) {
        w.uleb(self.0.len() as u64);
        for s in &self.0 {
            match *s {
                SliceSpec::Index(i) => {
                    w.u8(0);
                    w.sleb(i);
                }
                SliceSpec::Range { start, stop, step } => {
                    w.u8(1 | if start.is_some() { 2 } else { 0 } | if stop.is_some() { 4 } else { 0 });
                    if let Some(s) = start {
                        w.sleb(s);
                    }
                    if let Some(s) = stop {
                        w.sleb(s);
                    }
                    w.sleb(step);
                }
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.len(2)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = r.u8()?;
            v.push(match tag {
                0 => SliceSpec::Index(r.sleb()?),
                t if t & 1 == 1 && t < 8 => {
                    let start = if t & 2 != 0 { Some(r.sleb()?) } else { None };
                    let stop = if t & 4 != 0 { Some(r.sleb()?) } else { None };
                    SliceSpec::Range { start, stop, step: r.sleb()? }
                }
                t => return Err(DecodeError { offset: r.pos() - 1, message: format!("invalid slice tag {t}") }),
            });
        }
        Ok(Slices(v))
    }
    fn dis(&self, out: &mut String) {
        out.push('[');
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match *s {
                SliceSpec::Index(i) => {
                    let _ = write!(out, "{i}");
                }
                SliceSpec::Range { start, stop, step } => {
                    if let Some(s) = start {
                        let _ = write!(out, "{s}");
                    }
                    out.push(':');
                    if let Some(s) = stop {
                        let _ = write!(out, "{s}");
                    }
                    if step != 1 {
                        let _ = write!(out, ":{step}");
                    }
                }
            }
        }
        out.push(']');
    }
}

/// The four axis lists of [`DotDims`], each a count and the axes.
impl Operand for DotDims {
    fn encode(&self, w: &mut Writer) {
        for l in [&self.lhs_batch, &self.rhs_batch, &self.lhs_contract, &self.rhs_contract] {
            w.uleb(l.len() as u64);
            for a in l {
                w.uleb(u64::from(*a));
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let list = |r: &mut Reader<'_>| -> Result<Vec<u32>, DecodeError> {
            let n = r.len(1)?;
            (0..n).map(|_| r.u32()).collect()
        };
        Ok(DotDims { lhs_batch: list(r)?, rhs_batch: list(r)?, lhs_contract: list(r)?, rhs_contract: list(r)? })
    }
    fn dis(&self, out: &mut String) {
        let _ = write!(
            out,
            "batch={:?}x{:?} contract={:?}x{:?}",
            self.lhs_batch, self.rhs_batch, self.lhs_contract, self.rhs_contract
        );
    }
}

macro_rules! enum_operand {
    ($t:ty, $what:literal) => {
        impl Operand for $t {
            fn encode(&self, w: &mut Writer) {
                w.u8(*self as u8);
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let b = r.u8()?;
                <$t>::from_tag(b).ok_or_else(|| DecodeError {
                    offset: r.pos() - 1,
                    message: format!(concat!("invalid ", $what, " tag {}"), b),
                })
            }
            fn dis(&self, out: &mut String) {
                out.push_str(self.as_str());
            }
        }
    };
}
enum_operand!(DType, "dtype");
enum_operand!(UnaryOp, "unary op");
enum_operand!(BinaryOp, "binary op");
enum_operand!(ReduceOp, "reduce op");
enum_operand!(UpdateMode, "update mode");
