//! Keeping XLA's algebraic simplifier from changing float results.
//!
//! XLA rewrites some float expressions into forms that are equal in real
//! arithmetic but not in IEEE arithmetic: `log(pow(a, b))` becomes
//! `b * log|a|` (`log((-1) ** 0.5)` is 0 instead of NaN, and `log(0 ** -33)`
//! is finite instead of `-inf`), `log(exp(a))` becomes `a`, `exp(a) *
//! exp(b)` becomes `exp(a + b)`, `a / exp(b)` becomes `a * exp(-b)`,
//! `sqrt(a * a)` becomes `|a|`, `(a + c1) + c2` becomes `a + (c1 + c2)`, a
//! comparison `x >= 0` of an `abs`, `exp` or `x * x` folds to `true` even for
//! NaN, and more (the list, with inputs where each one differs, is in
//! `docs/semantics.md`, Floats). loopvm's answer is the interpreter's, op by
//! op; so the emitter remembers which op made each value ([`Made`]) and,
//! where a consumer and its operand's maker (or an unknown maker) may form
//! one of those patterns, puts the operand behind
//! `stablehlo.optimization_barrier`, which the simplifier does not look
//! through. Layout ops (broadcast, reshape) carry their operand's maker, as
//! the simplifier also looks through them.
//!
//! `A / constant` is kept exact by `Emitter::opaque_divisor`; power's
//! operands are flushed by `float_bin` (XLA reads subnormal exponents as zero
//! in its vector code).

use super::{Emitter, Spread, Val};
use loopvm_runtime::UnaryOp;

/// The op that made a value, as far as the shield cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Made {
    Exp,
    Pow,
    Sqrt,
    Abs,
    Div,
    /// `a * b` with `a` and `b` different values.
    Mul,
    /// `a * a`.
    Square,
    /// `a + b` or `a - b`.
    Add,
    /// A NaN-propagating max or min, or a select (non-negative when its
    /// operands are, to the simplifier).
    Select,
    /// A bool converted to a number (`mul(convert(p), x)` becomes
    /// `select(p, x, 0)`, which drops NaN and infinities of `x`).
    FromBool,
    /// `rsqrt(a)`.
    Rsqrt,
    /// Any other float op the emitter made: not part of a pattern.
    Other,
}

impl Made {
    /// The maker of a float unary op's result.
    pub(super) fn of(op: UnaryOp) -> Made {
        match op {
            UnaryOp::Exp => Made::Exp,
            UnaryOp::Sqrt => Made::Sqrt,
            UnaryOp::Rsqrt => Made::Rsqrt,
            UnaryOp::Abs => Made::Abs,
            UnaryOp::Neg
            | UnaryOp::Not
            | UnaryOp::Log
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Relu
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Erf
            | UnaryOp::Erfc
            | UnaryOp::ErfInv
            | UnaryOp::Log1p => Made::Other,
        }
    }
}

/// Values for which the simplifier's `IsNonNegative` may hold even where
/// they are NaN.
const NON_NEGATIVE: &[Made] = &[Made::Exp, Made::Abs, Made::Square, Made::Pow, Made::Sqrt, Made::Rsqrt, Made::Select];

impl Emitter<'_> {
    /// Records that `v` was made by `m`.
    pub(super) fn made(&mut self, v: &Val, m: Made) {
        self.makers.insert(v.name.clone(), m);
    }

    /// `r`, a layout op's result (broadcast, reshape), inherits the maker of `a`.
    pub(super) fn carry_maker(&mut self, r: &Val, a: &Val) {
        if let Some(&m) = self.makers.get(&a.name) {
            self.makers.insert(r.name.clone(), m);
        }
    }

    fn maker(&self, v: &Val) -> Option<Made> {
        self.makers.get(&v.name).copied()
    }

    /// `v` behind an optimization barrier.
    ///
    /// A splat constant or a broadcast is hidden as its scalar (its
    /// operand) behind the barrier, spread out again after it: the
    /// simplifier sees through the broadcast to the barrier and no further,
    /// as it would see the barrier of the whole tensor, but XLA fuses the
    /// broadcast of a scalar into its consumers. A barrier on the whole
    /// tensor is an op of its own, which XLA hoists out of a `while` as a
    /// loop-invariant value: the broadcast is then materialised once and
    /// read from memory in every iteration (three `[4, 8, 128, 128]`
    /// tensors per causal-attention pass, `docs/performance.md`).
    pub(super) fn barrier(&mut self, v: &Val) -> Val {
        match self.spreads.get(&v.name).cloned() {
            Some(Spread::Splat(lit)) => {
                let s = self.splat(v.dtype, &[], lit);
                let h = self.barrier(&s);
                return self.broadcast_to(&h, &v.shape);
            }
            Some(Spread::Broadcast(a)) => {
                let h = self.barrier(&a);
                return self.broadcast_to(&h, &v.shape);
            }
            None => {}
        }
        let r = self.op(v.dtype, &v.shape, format!("stablehlo.optimization_barrier {} : {}", v.name, v.ty()));
        // A constant to LLVM still (XLA removes barriers before it compiles).
        if self.is_const(v) {
            self.consts.insert(r.name.clone());
        }
        r
    }

    /// `true` when `v` may be made by one of `makers` as far as XLA can
    /// see: it is, or its maker is unknown (a parameter, a loop's carry,
    /// an `if`'s result, a reduction: XLA inlines calls, folds constant
    /// conditions and unrolls short loops, so the op behind such a value
    /// may become visible). Constants are suspects too: the simplifier
    /// rewrites `log(pow(-7, 40.625))` into `40.625 * log(7)` before its
    /// folder computes it (NaN).
    fn may_be(&self, v: &Val, makers: &[Made]) -> bool {
        match self.maker(v) {
            None => true,
            Some(m) => makers.contains(&m),
        }
    }

    /// The operand of the float unary op `op`, shielded where the
    /// simplifier would rewrite the pair (`log(exp a)`, `log(pow(a, b))`,
    /// `log(sqrt a)`, `log(rsqrt a)`, `sqrt(a * a)`, `rsqrt(pow(a, -2))`,
    /// `rsqrt(1 / a)`).
    pub(super) fn shield_unary(&mut self, op: UnaryOp, a: &Val) -> Val {
        if !a.dtype.is_float() {
            // Integers too: `abs(x)` → `x` where x "is non-negative", which
            // `x * x` (or a select of one) is not when it wraps.
            return if op == UnaryOp::Abs && self.may_be_non_negative_int(a) { self.barrier(a) } else { a.clone() };
        }
        let hit = match op {
            UnaryOp::Log => self.may_be(a, &[Made::Exp, Made::Pow, Made::Sqrt, Made::Rsqrt]),
            UnaryOp::Sqrt => self.may_be(a, &[Made::Square]),
            UnaryOp::Rsqrt => self.may_be(a, &[Made::Pow, Made::Div]),
            _ => false,
        };
        if hit {
            self.barrier(a)
        } else {
            a.clone()
        }
    }

    /// The operands of the float binary op `name` (`add`, `subtract`,
    /// `multiply`, `divide`, `power`, or `compare` for any comparison),
    /// shielded where the simplifier would rewrite them. Barriers cost
    /// nothing at run time: XLA removes them before fusion, after the
    /// simplifier has run.
    pub(super) fn shield_binary(&mut self, name: &str, a: &Val, b: &Val) -> (Val, Val) {
        if !a.dtype.is_float() {
            // Integers: `x >= 0` → true (and `x < 0` → false) where x "is
            // non-negative", which `abs(MIN)` and a wrapped `x * x` are not.
            if name != "compare" {
                return (a.clone(), b.clone());
            }
            let a = if self.may_be_non_negative_int(a) { self.barrier(a) } else { a.clone() };
            let b = if self.may_be_non_negative_int(b) { self.barrier(b) } else { b.clone() };
            return (a, b);
        }
        let (fa, fb) = (self.is_folded(a), self.is_folded(b));
        // A constant beside a run-time value is hidden: the simplifier
        // reassociates constants ((a + c1) + c2 → a + (c1 + c2), (a * c1) *
        // c2, a*c + b*c → (a + b) * c), drops `a + 0` (-0 + 0 is +0) and
        // folds `x >= 0` to true for an `abs`, `exp` or `x * x` (NaN >= 0
        // is false). Of two constants added or subtracted the second is
        // hidden too: the simplifier's `a + 0 → a` and `a - 0 → a` keep a
        // -0 that IEEE turns into +0 (`(c % d) - (c % d)` with `c % d` = -0
        // gave -0). Other ops of two constants XLA folds itself; the caller
        // flushes a subnormal result of either folder.
        let hide = matches!(name, "add" | "subtract" | "multiply" | "compare");
        let both = fa && fb && matches!(name, "add" | "subtract");
        let (ha, hb) = (hide && fa && !fb, (hide && fb && !fa) || both);
        let (sa, sb) = match name {
            "multiply" => {
                // exp(a) * exp(b) → exp(a + b); sqrt(a) * sqrt(a) → a;
                // rsqrt(a) * rsqrt(a) → 1 / a.
                let pair = self.may_be(a, &[Made::Exp, Made::Sqrt, Made::Rsqrt])
                    && self.may_be(b, &[Made::Exp, Made::Sqrt, Made::Rsqrt]);
                // convert(p) * x → select(p, x, 0); (a * c1) * c2 → a * (c1
                // * c2), where c1 and c2 may be constants only XLA sees (out
                // of a loop it removed).
                let side = [Made::FromBool, Made::Mul, Made::Square];
                (self.may_be(a, &side), pair || self.may_be(b, &side))
            }
            // (a + c1) + c2 → a + (c1 + c2) and (a + s) - s → a, with
            // constants only XLA may see.
            "add" | "subtract" => (self.may_be(a, &[Made::Add]), self.may_be(b, &[Made::Add])),
            // (a / b) / c, a / (b / c), a / exp(b), exp(a) / exp(b),
            // a / pow(b, c), a / sqrt(b), a / rsqrt(b).
            "divide" => {
                let divisor = [Made::Div, Made::Exp, Made::Pow, Made::Sqrt, Made::Rsqrt];
                (self.may_be(a, &[Made::Div]), self.may_be(b, &divisor))
            }
            // pow(exp(a), b) → exp(a * b).
            "power" => (self.may_be(a, &[Made::Exp]), false),
            // x >= 0 → true (and x < 0 → false) when x "is non-negative",
            // NaN included (and the zero may be a constant XLA sees through
            // an inlined call).
            "compare" => (self.may_be(a, NON_NEGATIVE), self.may_be(b, NON_NEGATIVE)),
            // (An FMA of `a * b + c`, which LLVM forms in XLA's CPU code
            // unless told `--xla_cpu_max_isa=AVX`, is not the simplifier's:
            // barriers are gone by then; see `policy::default_xla_flags`.)
            _ => (false, false),
        };
        let (sa, sb) = (sa || ha, sb || hb);
        let a = if sa { self.barrier(a) } else { a.clone() };
        let b = if sb { self.barrier(b) } else { b.clone() };
        (a, b)
    }

    /// `true` when `v` is an integer that XLA's simplifier may take for
    /// non-negative although it can be negative: an `abs` (of `MIN`), a
    /// square (wrapping), a select of such, or what XLA may see through. Not
    /// a scalar whose value the emitter knows (a literal, which XLA reads
    /// exactly; a fori_loop's bounds stay visible as constants).
    pub(super) fn may_be_non_negative_int(&self, v: &Val) -> bool {
        v.dtype.is_int() && v.konst.is_none() && self.may_be(v, NON_NEGATIVE)
    }

    /// What a binary arithmetic op's result counts as ([`Made`]) given its
    /// operands (of integers only a square matters).
    pub(super) fn binary_maker(&self, name: &str, a: &Val, b: &Val) -> Option<Made> {
        if a.dtype.is_int() {
            return Some(if name == "multiply" && a.name == b.name { Made::Square } else { Made::Other });
        }
        if !a.dtype.is_float() {
            return None;
        }
        match name {
            "add" | "subtract" => Some(Made::Add),
            "multiply" if a.name == b.name => Some(Made::Square),
            "multiply" => Some(Made::Mul),
            "divide" => Some(Made::Div),
            "power" => Some(Made::Pow),
            _ => Some(Made::Other),
        }
    }
}
