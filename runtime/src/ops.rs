//! Operation identities shared by the interpreter kernels, the Cranelift
//! lowering and the StableHLO emitter. Each op has one name (used in source,
//! disassembly and errors) and one StableHLO spelling.

use std::fmt;

macro_rules! op_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $var:ident = $tag:literal, $str:literal, $hlo:literal;)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vmeta])* $var = $tag,)* }

        impl $name {
            /// Every variant, in tag order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];
            /// The op's name in source, disassembly and error messages.
            pub const fn as_str(self) -> &'static str { match self { $($name::$var => $str,)* } }
            /// The StableHLO op (or composite) this lowers to.
            pub const fn stablehlo(self) -> &'static str { match self { $($name::$var => $hlo,)* } }
            /// The StableHLO op without its dialect: `add` for `stablehlo.add`.
            pub fn hlo_name(self) -> &'static str {
                let s = self.stablehlo();
                match s.split_once('.') { Some((_, n)) => n, None => s }
            }
            /// The op with serialised tag `t`, if any.
            pub fn from_tag(t: u8) -> Option<$name> { Self::ALL.iter().copied().find(|v| *v as u8 == t) }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

/// The dtypes an elementwise op accepts: one class per op, with one error
/// text for every layer (checker, kernels, emitter, Cranelift lowering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accepts {
    /// `bool` only.
    Bool,
    /// Integers (signed and unsigned).
    Int,
    /// Integers and bools: the bit ops.
    Bits,
    /// Integers and floats.
    Number,
    /// `f32` and `f64`.
    Float,
    /// Every dtype.
    Any,
}

impl Accepts {
    /// `true` when an operand of `d` is accepted.
    pub const fn accepts(self, d: crate::DType) -> bool {
        match self {
            Accepts::Bool => matches!(d, crate::DType::Bool),
            Accepts::Int => d.is_int(),
            Accepts::Bits => d.is_int() || matches!(d, crate::DType::Bool),
            Accepts::Number => !matches!(d, crate::DType::Bool),
            Accepts::Float => d.is_float(),
            Accepts::Any => true,
        }
    }
    /// What an operand must be, for error messages: "a float operand".
    pub const fn requirement(self) -> &'static str {
        match self {
            Accepts::Bool => "a bool operand",
            Accepts::Int => "an integer operand",
            Accepts::Bits => "an integer or bool operand",
            Accepts::Number => "an integer or float operand",
            Accepts::Float => "a float operand",
            Accepts::Any => "an operand",
        }
    }
    /// What the operands of a binary op must be, for error messages:
    /// "numeric operands".
    pub const fn operands(self) -> &'static str {
        match self {
            Accepts::Bool => "bool operands",
            Accepts::Int => "integer operands",
            Accepts::Bits => "integer or bool operands",
            Accepts::Number => "numeric operands",
            Accepts::Float => "float operands",
            Accepts::Any => "operands",
        }
    }
}

/// An op table whose rows also say which dtypes the op accepts and whether
/// `grad` differentiates through it.
macro_rules! op_table {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $var:ident = $tag:literal, $str:literal, $hlo:literal, $class:ident, $grad:literal;)* }) => {
        op_enum! {
            $(#[$meta])*
            $name { $($(#[$vmeta])* $var = $tag, $str, $hlo;)* }
        }
        impl $name {
            /// The dtypes the op accepts.
            pub const fn accepts(self) -> Accepts {
                match self { $($name::$var => Accepts::$class,)* }
            }
            /// `true` when `grad` differentiates through the op.
            pub const fn differentiable(self) -> bool {
                match self { $($name::$var => $grad,)* }
            }
        }
    };
}

op_table! {
    /// Elementwise unary operations: every fact about an op in its row (tag,
    /// name, StableHLO op, the dtypes it accepts, whether `grad` has a rule).
    /// Adding a float op: a row here; the compiler then asks for its scalar
    /// function (a method of `kernels::Float` and its arm in
    /// `kernels::float_unary`, which the interpreter and native code's
    /// library calls share), its derivative (`frontend/src/ad/rules.rs`) and
    /// its maker for XLA's simplifier (`Made::of`); the builtin, the checker,
    /// the StableHLO spelling, the fuzzer and the back ends' test lists come
    /// from the row and [`UnaryOp::ALL`] (`docs/development.md`, "Add an op").
    UnaryOp {
        /// `-x` (wrapping for integers).
        Neg = 0, "neg", "stablehlo.negate", Number, true;
        /// `!x` on bools, `~x` (every bit flipped) on integers.
        Not = 1, "not", "stablehlo.not", Bits, false;
        /// `exp(x)`.
        Exp = 2, "exp", "stablehlo.exponential", Float, true;
        /// `log(x)`.
        Log = 3, "log", "stablehlo.log", Float, true;
        /// `sqrt(x)`.
        Sqrt = 4, "sqrt", "stablehlo.sqrt", Float, true;
        /// `tanh(x)`.
        Tanh = 5, "tanh", "stablehlo.tanh", Float, true;
        /// `1 / (1 + exp(-x))`.
        Sigmoid = 6, "sigmoid", "stablehlo.logistic", Float, true;
        /// `max(x, 0)`.
        Relu = 7, "relu", "stablehlo.maximum", Number, true;
        /// `|x|` (wrapping for the minimum integer).
        Abs = 8, "abs", "stablehlo.abs", Number, true;
        /// `sin(x)`.
        Sin = 9, "sin", "stablehlo.sine", Float, true;
        /// `cos(x)`.
        Cos = 10, "cos", "stablehlo.cosine", Float, true;
        /// The error function `erf(x) = 2/√π ∫₀ˣ e^(-t²) dt`.
        Erf = 11, "erf", "chlo.erf", Float, true;
        /// `1 / sqrt(x)`.
        Rsqrt = 12, "rsqrt", "stablehlo.rsqrt", Float, true;
        /// `log(1 + x)`, accurate for small `x`.
        Log1p = 13, "log1p", "stablehlo.log_plus_one", Float, true;
        /// `erfc(x) = 1 - erf(x)`, accurate where `erf(x)` is near 1.
        Erfc = 16, "erfc", "chlo.erfc", Float, true;
        /// The inverse error function on `[-1, 1]` (`±inf` at `±1`, NaN outside).
        ErfInv = 17, "erf_inv", "chlo.erf_inv", Float, true;
    }
}

op_table! {
    /// Elementwise binary operations (NumPy broadcasting): tag, name,
    /// StableHLO op (a comparison direction for the comparisons), the dtypes
    /// both operands may have, and whether `grad` differentiates through it.
    BinaryOp {
        /// `a + b`, wrapping for integers.
        Add = 0, "add", "stablehlo.add", Number, true;
        /// `a - b`, wrapping for integers.
        Sub = 1, "sub", "stablehlo.subtract", Number, true;
        /// `a * b`, wrapping for integers.
        Mul = 2, "mul", "stablehlo.multiply", Number, true;
        /// `a / b`; integers truncate toward zero, `x / 0 = -1`, `MIN / -1 = MIN`.
        Div = 3, "div", "stablehlo.divide", Number, true;
        /// `a % b`; sign of the dividend, `x % 0 = x`, `MIN % -1 = 0`.
        Rem = 4, "rem", "stablehlo.remainder", Number, true;
        /// `a ** b`; integers by repeated squaring, negative exponents give 0 (1 and -1 excepted).
        Pow = 5, "pow", "stablehlo.power", Number, true;
        /// `maximum(a, b)`, NaN-propagating (`or` on bools).
        Max = 6, "maximum", "stablehlo.maximum", Any, true;
        /// `minimum(a, b)`, NaN-propagating (`and` on bools).
        Min = 7, "minimum", "stablehlo.minimum", Any, true;
        /// `a == b` (bool result).
        Eq = 8, "eq", "EQ", Any, false;
        /// `a != b` (bool result).
        Ne = 9, "ne", "NE", Any, false;
        /// `a < b` (bool result).
        Lt = 10, "lt", "LT", Any, false;
        /// `a <= b` (bool result).
        Le = 11, "le", "LE", Any, false;
        /// `a > b` (bool result).
        Gt = 12, "gt", "GT", Any, false;
        /// `a >= b` (bool result).
        Ge = 13, "ge", "GE", Any, false;
        /// `a && b` on bools, `a & b` bitwise on integers.
        And = 14, "and", "stablehlo.and", Bits, false;
        /// `a || b` on bools, `a | b` bitwise on integers.
        Or = 15, "or", "stablehlo.or", Bits, false;
        /// `a ^ b`: bitwise exclusive or (`!=` on bools).
        Xor = 16, "xor", "stablehlo.xor", Bits, false;
        /// `a << b`: 0 when `b`, read as unsigned, is at least the bit width.
        Shl = 17, "shl", "stablehlo.shift_left", Int, false;
        /// `a >> b`: arithmetic on signed integers, logical on unsigned ones
        /// (`stablehlo.shift_right_logical`); by the bit width or more
        /// (`b` read as unsigned) 0, or -1 for a negative signed `a`.
        Shr = 18, "shr", "stablehlo.shift_right_arithmetic", Int, false;
    }
}

impl BinaryOp {
    /// `true` for the comparisons, whose result is `bool`.
    pub const fn is_compare(self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge)
    }
    /// The result dtype for operands of `d`: `bool` for the comparisons.
    pub const fn result_dtype(self, d: crate::DType) -> crate::DType {
        if self.is_compare() {
            crate::DType::Bool
        } else {
            d
        }
    }
}

op_table! {
    /// Reductions, over all elements or along one axis: tag, name, the
    /// StableHLO op combining two elements, the dtypes accepted, and whether
    /// `grad` differentiates through it.
    ReduceOp {
        /// Sum (bools count as `i32`).
        Sum = 0, "sum", "stablehlo.add", Any, true;
        /// Arithmetic mean (integers and bools give `f32`).
        Mean = 1, "mean", "stablehlo.add", Any, true;
        /// Maximum, NaN-propagating.
        Max = 2, "max", "stablehlo.maximum", Any, true;
        /// Minimum, NaN-propagating.
        Min = 3, "min", "stablehlo.minimum", Any, true;
        /// Index (`i32`) of the first maximum; NaN counts as the maximum.
        Argmax = 4, "argmax", "argmax", Any, false;
    }
}

impl ReduceOp {
    /// The result dtype of this reduction over elements of `d`.
    pub fn result_dtype(self, d: crate::DType) -> crate::DType {
        use crate::DType;
        match self {
            ReduceOp::Sum if d == DType::Bool => DType::I32,
            ReduceOp::Mean if !d.is_float() => DType::F32,
            ReduceOp::Argmax => DType::I32,
            _ => d,
        }
    }
}

op_table! {
    /// How `x.at[i]` updates the selected element or row: tag, name,
    /// StableHLO op, the dtypes accepted, and whether `grad` differentiates
    /// through it.
    UpdateMode {
        /// `x.at[i].set(v)`.
        Set = 0, "set", "stablehlo.dynamic_update_slice", Any, true;
        /// `x.at[i].add(v)`.
        Add = 1, "add", "stablehlo.dynamic_update_slice", Any, true;
    }
}
