//! Element types.

use std::fmt;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DType {
    /// `bool`: one byte, 0 or 1.
    Bool = 0,
    /// `i32`: 32-bit two's complement integer.
    I32 = 1,
    /// `i64`: 64-bit two's complement integer.
    I64 = 2,
    /// `f32`: IEEE-754 binary32.
    F32 = 3,
    /// `f64`: IEEE-754 binary64.
    F64 = 4,
    /// `u32`: 32-bit unsigned integer.
    U32 = 5,
    /// `u8`: 8-bit unsigned integer.
    U8 = 6,
    /// `bf16`: bfloat16 (8 exponent bits, 7 mantissa bits); arithmetic is
    /// computed in `f32` and rounded to nearest even after each op.
    BF16 = 7,
    /// `f16`: IEEE-754 binary16; arithmetic is computed in `f32` and rounded
    /// to nearest even after each op.
    F16 = 8,
}

impl DType {
    /// Every dtype, in tag order.
    pub const ALL: [DType; 9] =
        [DType::Bool, DType::I32, DType::I64, DType::F32, DType::F64, DType::U32, DType::U8, DType::BF16, DType::F16];

    /// The name used in source, disassembly and error messages (`f32`).
    pub const fn as_str(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::U32 => "u32",
            DType::U8 => "u8",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }

    /// The StableHLO element type (`i1`, `i32`, `i64`, `f32`, `f64`, `ui32`, `ui8`,
    /// `bf16`, `f16`).
    pub const fn stablehlo(self) -> &'static str {
        match self {
            DType::Bool => "i1",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::U32 => "ui32",
            DType::U8 => "ui8",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }

    /// Bytes per element.
    pub const fn size_in_bytes(self) -> usize {
        match self {
            DType::Bool | DType::U8 => 1,
            DType::BF16 | DType::F16 => 2,
            DType::I32 | DType::F32 | DType::U32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    /// `true` for the floats: `f32`, `f64` and the half floats `bf16`, `f16`.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::BF16 | DType::F16)
    }

    /// `true` for the half floats `bf16` and `f16`: stored in 16 bits,
    /// computed in `f32` and rounded to nearest even after each op (dots
    /// and reductions accumulate in `f32` and round once).
    pub const fn is_half(self) -> bool {
        matches!(self, DType::BF16 | DType::F16)
    }

    /// `true` for the integers, signed (`i32`, `i64`) and unsigned (`u32`, `u8`).
    pub const fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64 | DType::U32 | DType::U8)
    }

    /// `true` for the unsigned integers (`u32`, `u8`): their division,
    /// remainder, comparisons, `>>` and conversions read them as unsigned.
    pub const fn is_unsigned(self) -> bool {
        matches!(self, DType::U32 | DType::U8)
    }

    /// `true` when `bitcast(x, to)` of an element of `self` is defined
    /// (`lax.bitcast_convert_type` of equal widths): both numbers of one
    /// size in bytes (`u32`, `i32` and `f32`; `i64` and `f64`; `bf16` and `f16`; `u8`
    /// alone).
    pub const fn can_bitcast(self, to: DType) -> bool {
        !matches!(self, DType::Bool) && !matches!(to, DType::Bool) && self.size_in_bytes() == to.size_in_bytes()
    }

    /// Parses a dtype name as written in source (`f32`).
    pub fn parse(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The dtype with tag `t` (see the `repr(u8)` values), if any.
    pub fn from_tag(t: u8) -> Option<DType> {
        DType::ALL.get(t as usize).copied()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
