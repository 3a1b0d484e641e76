//! Scalar semantics of the elementwise ops, one impl per element type. These
//! follow XLA: integers wrap, integer division by zero gives -1, remainder by
//! zero gives the dividend, float max/min propagate NaN.
//!
//! The traits are public so that native code's library calls compute each
//! element with these very functions.

use crate::Element;

/// Numeric (non-bool) element types.
pub trait Num: Element + PartialOrd {
    /// `a + b` (wrapping).
    fn add(a: Self, b: Self) -> Self;
    /// `a - b` (wrapping).
    fn sub(a: Self, b: Self) -> Self;
    /// `a * b` (wrapping).
    fn mul(a: Self, b: Self) -> Self;
    /// `a / b` (XLA: truncating, `x / 0 = -1`, `MIN / -1 = MIN`).
    fn div(a: Self, b: Self) -> Self;
    /// `a % b` (XLA: sign of the dividend, `x % 0 = x`, `MIN % -1 = 0`).
    fn rem(a: Self, b: Self) -> Self;
    /// `a ** b`.
    fn pow(a: Self, b: Self) -> Self;
    /// `-a` (wrapping).
    fn neg(a: Self) -> Self;
    /// `|a|` (wrapping).
    fn abs(a: Self) -> Self;
    /// `n` converted (used by `iota`).
    fn from_usize(n: usize) -> Self;
    /// What comparisons order (`<`, `==`, `maximum`, `max`, `argmax`):
    /// the element itself, except that a half float compares as its `f32`
    /// value read as the mode says (a `bf16` subnormal is zero, as XLA
    /// compares it in `f32`), not by `half`'s order, which reads the bits.
    type Ord: PartialOrd + Copy;
    /// `a` as comparisons read it ([`Num::Ord`]).
    fn ord(a: Self) -> Self::Ord;
}

/// Float element types.
pub trait Float: Num {
    /// Not a number.
    const NAN: Self;
    /// `e ** a`.
    fn exp(a: Self) -> Self;
    /// The natural logarithm; a subnormal `a` is read as the mode says.
    fn ln(a: Self) -> Self;
    /// `√a`.
    fn sqrt(a: Self) -> Self;
    /// `tanh a`.
    fn tanh(a: Self) -> Self;
    /// `1 / (1 + e ** -a)`.
    fn sigmoid(a: Self) -> Self;
    /// `sin a`.
    fn sin(a: Self) -> Self;
    /// `cos a`.
    fn cos(a: Self) -> Self;
    /// The error function (libm's).
    fn erf(a: Self) -> Self;
    /// The complementary error function `1 - erf(a)`.
    fn erfc(a: Self) -> Self;
    /// The inverse error function, as XLA computes it ([`erf_inv_f32`]).
    fn erf_inv(a: Self) -> Self;
    /// `1 / √a`, two correctly rounded operations.
    fn rsqrt(a: Self) -> Self;
    /// `ln(1 + a)` (libm's).
    fn ln_1p(a: Self) -> Self;
}

macro_rules! int_num {
    ($t:ty) => {
        impl Num for $t {
            type Ord = Self;
            #[inline]
            fn ord(a: Self) -> Self {
                a
            }
            #[inline]
            fn add(a: Self, b: Self) -> Self {
                a.wrapping_add(b)
            }
            #[inline]
            fn sub(a: Self, b: Self) -> Self {
                a.wrapping_sub(b)
            }
            #[inline]
            fn mul(a: Self, b: Self) -> Self {
                a.wrapping_mul(b)
            }
            #[inline]
            fn div(a: Self, b: Self) -> Self {
                if b == 0 {
                    -1
                } else {
                    a.wrapping_div(b)
                }
            }
            #[inline]
            fn rem(a: Self, b: Self) -> Self {
                if b == 0 {
                    a
                } else {
                    a.wrapping_rem(b)
                }
            }
            #[inline]
            fn pow(a: Self, b: Self) -> Self {
                if b < 0 {
                    return match a {
                        1 => 1,
                        -1 if b & 1 == 0 => 1,
                        -1 => -1,
                        _ => 0,
                    };
                }
                let (mut base, mut e, mut acc): (Self, Self, Self) = (a, b, 1);
                while e > 0 {
                    if e & 1 == 1 {
                        acc = acc.wrapping_mul(base);
                    }
                    e >>= 1;
                    base = base.wrapping_mul(base);
                }
                acc
            }
            #[inline]
            fn neg(a: Self) -> Self {
                a.wrapping_neg()
            }
            #[inline]
            fn abs(a: Self) -> Self {
                a.wrapping_abs()
            }
            #[inline]
            fn from_usize(n: usize) -> Self {
                n as Self
            }
        }
    };
}

int_num!(i32);
int_num!(i64);

/// Unsigned integers: wrapping arithmetic, `x / 0` is the largest value
/// (all ones, as XLA gives), `x % 0 = x`, `abs` and `relu` are the identity.
macro_rules! uint_num {
    ($t:ty) => {
        impl Num for $t {
            type Ord = Self;
            #[inline]
            fn ord(a: Self) -> Self {
                a
            }
            #[inline]
            fn add(a: Self, b: Self) -> Self {
                a.wrapping_add(b)
            }
            #[inline]
            fn sub(a: Self, b: Self) -> Self {
                a.wrapping_sub(b)
            }
            #[inline]
            fn mul(a: Self, b: Self) -> Self {
                a.wrapping_mul(b)
            }
            #[inline]
            fn div(a: Self, b: Self) -> Self {
                if b == 0 {
                    <$t>::MAX
                } else {
                    a / b
                }
            }
            #[inline]
            fn rem(a: Self, b: Self) -> Self {
                if b == 0 {
                    a
                } else {
                    a % b
                }
            }
            #[inline]
            fn pow(a: Self, b: Self) -> Self {
                let (mut base, mut e, mut acc): (Self, Self, Self) = (a, b, 1);
                while e > 0 {
                    if e & 1 == 1 {
                        acc = acc.wrapping_mul(base);
                    }
                    e >>= 1;
                    base = base.wrapping_mul(base);
                }
                acc
            }
            #[inline]
            fn neg(a: Self) -> Self {
                a.wrapping_neg()
            }
            #[inline]
            fn abs(a: Self) -> Self {
                a
            }
            #[inline]
            fn from_usize(n: usize) -> Self {
                n as Self
            }
        }
    };
}

uint_num!(u32);
uint_num!(u8);

/// Integer element types: the bit ops, with XLA's shifts. A shift amount
/// is read as unsigned, so a negative one is at least the bit width; a
/// shift by the bit width or more gives 0, or -1 for a negative signed
/// value shifted right. `>>` is arithmetic on signed types, logical on
/// unsigned ones.
pub trait Int: Num {
    /// `a & b`.
    fn and(a: Self, b: Self) -> Self;
    /// `a | b`.
    fn or(a: Self, b: Self) -> Self;
    /// `a ^ b`.
    fn xor(a: Self, b: Self) -> Self;
    /// `~a`.
    fn not(a: Self) -> Self;
    /// `a << b`.
    fn shl(a: Self, b: Self) -> Self;
    /// `a >> b`.
    fn shr(a: Self, b: Self) -> Self;
}

macro_rules! int_bits {
    ($t:ty, $u:ty, |$a:ident| $fill:expr) => {
        impl Int for $t {
            #[inline]
            fn and(a: Self, b: Self) -> Self {
                a & b
            }
            #[inline]
            fn or(a: Self, b: Self) -> Self {
                a | b
            }
            #[inline]
            fn xor(a: Self, b: Self) -> Self {
                a ^ b
            }
            #[inline]
            fn not(a: Self) -> Self {
                !a
            }
            #[inline]
            fn shl(a: Self, b: Self) -> Self {
                if (b as $u) >= <$t>::BITS as $u {
                    0
                } else {
                    a << (b as $u)
                }
            }
            #[inline]
            fn shr($a: Self, b: Self) -> Self {
                if (b as $u) >= <$t>::BITS as $u {
                    $fill
                } else {
                    $a >> (b as $u)
                }
            }
        }
    };
}

// The fill of a shift right by the bit width or more: the sign.
int_bits!(i32, u32, |a| a >> 31);
int_bits!(i64, u64, |a| a >> 63);
int_bits!(u32, u32, |a| 0);
int_bits!(u8, u8, |a| 0);

macro_rules! float_num {
    ($t:ty, $erf:path, $erfc:path, $erf_inv:path, $tanh:path) => {
        impl Num for $t {
            type Ord = Self;
            #[inline]
            fn ord(a: Self) -> Self {
                a
            }
            #[inline]
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            #[inline]
            fn sub(a: Self, b: Self) -> Self {
                a - b
            }
            #[inline]
            fn mul(a: Self, b: Self) -> Self {
                a * b
            }
            #[inline]
            fn div(a: Self, b: Self) -> Self {
                a / b
            }
            #[inline]
            fn rem(a: Self, b: Self) -> Self {
                // fmod works on the bits: operands read as the mode says (XLA does).
                use crate::fpmode::as_flushed;
                as_flushed(a) % as_flushed(b)
            }
            #[inline]
            fn pow(a: Self, b: Self) -> Self {
                // libm works on the bits: operands read as the mode says.
                use crate::fpmode::as_flushed;
                as_flushed(a).powf(as_flushed(b))
            }
            #[inline]
            fn neg(a: Self) -> Self {
                -a
            }
            #[inline]
            fn abs(a: Self) -> Self {
                a.abs()
            }
            #[inline]
            fn from_usize(n: usize) -> Self {
                n as Self
            }
        }

        // libm reads a subnormal operand on the bits, which the flushing
        // mode does not reach: `ln` (like `%` and `**`) reads it as the mode
        // says, as XLA does, since `ln(0)` is far from `ln(1e-40)`. The
        // others differ from XLA at most by a subnormal result, which every
        // later arithmetic op reads as zero.
        impl Float for $t {
            const NAN: Self = <$t>::NAN;
            #[inline]
            fn exp(a: Self) -> Self {
                a.exp()
            }
            #[inline]
            fn ln(a: Self) -> Self {
                crate::fpmode::as_flushed(a).ln()
            }
            #[inline]
            fn sqrt(a: Self) -> Self {
                a.sqrt()
            }
            #[inline]
            fn tanh(a: Self) -> Self {
                $tanh(a)
            }
            #[inline]
            fn sigmoid(a: Self) -> Self {
                1.0 / (1.0 + Self::exp(-a))
            }
            #[inline]
            fn sin(a: Self) -> Self {
                a.sin()
            }
            #[inline]
            fn cos(a: Self) -> Self {
                a.cos()
            }
            #[inline]
            fn erf(a: Self) -> Self {
                $erf(a)
            }
            #[inline]
            fn erfc(a: Self) -> Self {
                $erfc(a)
            }
            #[inline]
            fn erf_inv(a: Self) -> Self {
                $erf_inv(a)
            }
            #[inline]
            fn rsqrt(a: Self) -> Self {
                1.0 / a.sqrt()
            }
            #[inline]
            fn ln_1p(a: Self) -> Self {
                a.ln_1p()
            }
        }
    };
}

float_num!(f32, libm::erff, libm::erfcf, erf_inv_f32, tanh_f32);
float_num!(f64, libm::erf, libm::erfc, erf_inv_f64, f64::tanh);

/// The half floats (`bf16`, `f16`): every op converts its operands to
/// `f32` (exactly), computes the `f32` op and rounds the result to nearest
/// even, as XLA's CPU backend computes them (it upcasts half-float
/// elementwise ops to `f32`; loopvm tells it to round after each op, see
/// `docs/semantics.md`). For `+ - * /` and `sqrt` this is the correctly
/// rounded half result: `f32` holds more than twice a half float's
/// precision plus two bits, so the double rounding is innocuous.
macro_rules! half_num {
    ($t:ty) => {
        impl Num for $t {
            type Ord = f32;
            #[inline]
            fn ord(a: Self) -> f32 {
                crate::fpmode::as_flushed(a.to_f32())
            }
            #[inline]
            fn add(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Num>::add(a.to_f32(), b.to_f32()))
            }
            #[inline]
            fn sub(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Num>::sub(a.to_f32(), b.to_f32()))
            }
            #[inline]
            fn mul(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Num>::mul(a.to_f32(), b.to_f32()))
            }
            #[inline]
            fn div(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Num>::div(a.to_f32(), b.to_f32()))
            }
            #[inline]
            fn rem(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Num>::rem(a.to_f32(), b.to_f32()))
            }
            #[inline]
            fn pow(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Num>::pow(a.to_f32(), b.to_f32()))
            }
            #[inline]
            fn neg(a: Self) -> Self {
                -a
            }
            #[inline]
            fn abs(a: Self) -> Self {
                <$t>::from_bits(a.to_bits() & 0x7fff)
            }
            #[inline]
            fn from_usize(n: usize) -> Self {
                <$t>::from_f32(n as f32)
            }
        }

        impl Float for $t {
            const NAN: Self = <$t>::NAN;
            #[inline]
            fn exp(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::exp(a.to_f32()))
            }
            #[inline]
            fn ln(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::ln(a.to_f32()))
            }
            #[inline]
            fn sqrt(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::sqrt(a.to_f32()))
            }
            #[inline]
            fn tanh(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::tanh(a.to_f32()))
            }
            #[inline]
            fn sigmoid(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::sigmoid(a.to_f32()))
            }
            #[inline]
            fn sin(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::sin(a.to_f32()))
            }
            #[inline]
            fn cos(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::cos(a.to_f32()))
            }
            #[inline]
            fn erf(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::erf(a.to_f32()))
            }
            #[inline]
            fn erfc(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::erfc(a.to_f32()))
            }
            #[inline]
            fn erf_inv(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::erf_inv(a.to_f32()))
            }
            #[inline]
            fn rsqrt(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::rsqrt(a.to_f32()))
            }
            #[inline]
            fn ln_1p(a: Self) -> Self {
                <$t>::from_f32(<f32 as Float>::ln_1p(a.to_f32()))
            }
        }

        // Conversions from a half float go through its exact `f32` value;
        // into one, from `f32` rounding to nearest even, and from every other
        // type by way of `f32` (so an `f64` rounds twice, as XLA's CPU
        // backend converts it).
        impl<U> Conv<U> for $t
        where
            f32: Conv<U>,
        {
            #[inline]
            fn conv(self) -> U {
                self.to_f32().conv()
            }
        }
        half_conv_from!($t; i32, i64, f32, f64, u32, u8, bool);
    };
}

macro_rules! half_conv_from {
    ($t:ty; $($s:ty),*) => {
        $(impl Conv<$t> for $s {
            #[inline]
            fn conv(self) -> $t {
                <$t>::from_f32(Conv::<f32>::conv(self))
            }
        })*
    };
}

half_num!(half::bf16);
half_num!(half::f16);

/// `tanh` in `f32` by the approximation XLA's CPU backend emits, operation
/// for operation, so the host tiers' `tanh` is bit for bit XLA's (the
/// plugin as loopvm starts it, without FMA: `jit/src/hlo/policy.rs`;
/// `tanh_f32_is_xlas_bit_for_bit` in `jit/tests/xla_tier.rs` checks it).
/// From OpenXLA `xla/codegen/intrinsic/tanh.cc`, `EmitFastTanh` with
/// `with_fma` (earlier `xla/service/llvm_ir/math_ops.cc`; the clamp bound is
/// Eigen's `ptanh_float`): `x` clamped to `±7.998811…` by compare-and-select
/// (a NaN passes), then the odd/even rational function `x·p(x²) / q(x²)`,
/// `p` of degree 6 and `q` of degree 3 in `x²` (Horner, each step a rounded
/// multiply then a rounded add); `x` itself where `|x| < 0.0004` (so `±0`
/// and subnormals keep their bits), `±1` where `|x| ≥ 20`. The clamp is
/// where the FMA evaluation reaches exactly 1; without FMA the result there
/// (and up to 20) is `1 - 3·2⁻²⁴`, as on XLA.
///
/// Branch-free (compares and selects), so a kernel's loop over a slice is
/// vectorised by the compiler. At most 5.9 ulps from the correctly rounded
/// `tanh` (worst near `5.82`; the dense sweep in this module's tests), never
/// beyond `±1`; libm's `tanhf`, which the tiers used before, is within 2.
#[allow(clippy::excessive_precision)] // the coefficients as XLA writes them
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.99881172180175781;
    const NUM: [f32; 7] = [
        -2.76076847742355e-16,
        2.00018790482477e-13,
        -8.60467152213735e-11,
        5.12229709037114e-08,
        1.48572235717979e-05,
        6.37261928875436e-04,
        4.89352455891786e-03,
    ];
    const DEN: [f32; 4] = [1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03];
    let ax = x.abs();
    // XLA's fast max then min: a NaN `x` passes through both.
    let lo = if x < -CLAMP { -CLAMP } else { x };
    let c = if lo > CLAMP { CLAMP } else { lo };
    let c2 = c * c;
    let mut p = NUM[0];
    for k in &NUM[1..] {
        p = c2 * p + k;
    }
    let mut q = DEN[0];
    for k in &DEN[1..] {
        q = c2 * q + k;
    }
    let r = (c * p) / q;
    let r = if ax < 0.0004 { x } else { r };
    if ax >= 20.0 {
        1.0f32.copysign(x)
    } else {
        r
    }
}

/// `erf_inv` in `f32` by the algorithm XLA's CPU backend runs (so `normal`
/// draws agree with JAX's to the ulp): Giles' single-precision
/// approximation ("Approximating the erfinv function", GPU Computing Gems,
/// 2012). With `w = -log1p(-x²)`, a degree-8 polynomial in `w - 2.5` when
/// `w < 5`, else in `√w - 3`, times `x`; `±1` give `±inf`.
#[allow(clippy::excessive_precision)] // the coefficients as published
pub fn erf_inv_f32(x: f32) -> f32 {
    const SMALL: [f32; 9] = [
        2.810_226_4e-8,
        3.432_739_4e-7,
        -3.523_387_7e-6,
        -4.391_506_5e-6,
        0.000_218_580_87,
        -0.001_253_725,
        -0.004_177_681_6,
        0.246_640_73,
        1.501_409_4,
    ];
    const LARGE: [f32; 9] = [
        -0.000_200_214_26,
        0.000_100_950_56,
        0.001_349_343_2,
        -0.003_673_428_4,
        0.005_739_507_7,
        -0.007_622_461_3,
        0.009_438_870_5,
        1.001_674_1,
        2.832_976_8,
    ];
    if x.abs() == 1.0 {
        return x * f32::INFINITY;
    }
    let w = -(-x * x).ln_1p();
    let (c, t) = if w < 5.0 { (&SMALL, w - 2.5) } else { (&LARGE, w.sqrt() - 3.0) };
    let p = c[1..].iter().fold(c[0], |p, &k| k + p * t);
    p * x
}

/// `erf_inv` in `f64`, as XLA computes it: Giles' double-precision
/// approximation, polynomials of degree 22 (`w < 6.25`, in `w - 3.125`), 18
/// (`w < 16`, in `√w - 3.25`) and 16 (in `√w - 5`), with `w = -log1p(-x²)`.
#[allow(clippy::excessive_precision)] // the coefficients as published
pub fn erf_inv_f64(x: f64) -> f64 {
    const W_6_25: [f64; 23] = [
        -3.644_412_064_017_819_7e-21,
        -1.685_059_138_182_016_6e-19,
        1.285_848_071_525_640_1e-18,
        1.115_787_767_802_518_1e-17,
        -1.333_171_662_854_620_9e-16,
        2.097_276_787_596_856_2e-17,
        6.637_638_134_358_324e-15,
        -4.054_566_272_975_207e-14,
        -8.151_934_197_605_472e-14,
        2.633_509_315_308_232_3e-12,
        -1.297_513_325_345_353_3e-11,
        -5.415_412_054_294_628e-11,
        1.051_212_273_321_532_3e-9,
        -4.112_633_980_346_983_7e-9,
        -2.907_036_995_788_200_5e-8,
        4.234_787_782_793_240_4e-7,
        -1.365_469_200_083_467_9e-6,
        -1.388_252_336_278_646_9e-5,
        0.000_186_734_208_034_057_14,
        -0.000_740_702_534_166_267,
        -0.006_033_670_871_430_149,
        0.240_158_182_425_589_62,
        1.653_654_562_683_102_7,
    ];
    const W_16: [f64; 19] = [
        2.213_737_692_177_578_7e-9,
        9.075_656_193_888_539e-8,
        -2.751_740_629_706_454_5e-7,
        1.823_962_921_438_922_8e-8,
        1.502_740_396_890_982_8e-6,
        -4.013_867_526_981_546e-6,
        2.923_444_908_995_544_6e-6,
        1.247_530_448_167_177_9e-5,
        -4.731_822_900_905_573_4e-5,
        6.828_485_145_957_317e-5,
        2.403_111_038_709_789_4e-5,
        -0.000_355_037_520_362_847_5,
        0.000_953_289_379_737_380_5,
        -0.001_688_275_556_023_504_7,
        0.002_491_442_096_107_850_8,
        -0.003_751_208_507_569_241,
        0.005_370_914_553_590_064,
        1.005_258_967_694_159_2,
        3.083_885_610_492_220_8,
    ];
    const W_MORE: [f64; 17] = [
        -2.710_992_061_643_857_3e-11,
        -2.555_641_816_996_525e-10,
        1.507_657_269_350_054_8e-9,
        -3.789_465_440_126_737e-9,
        7.615_701_208_078_339e-9,
        -1.496_002_662_714_924e-8,
        2.914_795_345_090_108e-8,
        -6.771_199_775_845_234e-8,
        2.290_048_222_802_665_5e-7,
        -9.929_827_294_231_7e-7,
        4.526_062_597_223_154e-6,
        -1.968_177_810_553_167e-5,
        7.599_527_703_001_776e-5,
        -0.000_215_030_119_300_444_78,
        -0.000_138_719_318_336_231_22,
        1.010_300_464_864_534_4,
        4.849_906_401_408_584_5,
    ];
    if x.abs() == 1.0 {
        return x * f64::INFINITY;
    }
    let w = -(-x * x).ln_1p();
    let (c, t): (&[f64], f64) = if w < 6.25 {
        (&W_6_25, w - 3.125)
    } else if w < 16.0 {
        (&W_16, w.sqrt() - 3.25)
    } else {
        (&W_MORE, w.sqrt() - 5.0)
    };
    let p = c.iter().skip(1).fold(c.first().copied().unwrap_or(0.0), |p, &k| k + p * t);
    p * x
}

/// Receives the scalar function of a float unary op from [`float_unary`],
/// statically (each op's function is its own type, so a kernel's loop
/// inlines it).
pub trait FloatUnaryVisitor<T> {
    /// What the visitor makes of the function.
    type Out;
    /// Called once with the op's scalar function.
    fn apply<F: Fn(T) -> T + Copy + Send + Sync>(self, f: F) -> Self::Out;
}

/// The one place that says which scalar function computes float unary
/// `op`: hands it to `v`. `None` for an op that takes no float (`not`).
/// The interpreter's kernel and native code's library call both come
/// here, so a new op's function is one arm below and one method of
/// [`Float`].
pub fn float_unary<T: Float, V: FloatUnaryVisitor<T>>(op: crate::UnaryOp, v: V) -> Option<V::Out> {
    use crate::UnaryOp;
    Some(match op {
        UnaryOp::Neg => v.apply(T::neg),
        UnaryOp::Abs => v.apply(T::abs),
        UnaryOp::Relu => v.apply(|x| max_nan(x, T::ZERO)),
        UnaryOp::Exp => v.apply(T::exp),
        UnaryOp::Log => v.apply(T::ln),
        UnaryOp::Sqrt => v.apply(T::sqrt),
        UnaryOp::Tanh => v.apply(T::tanh),
        UnaryOp::Sigmoid => v.apply(T::sigmoid),
        UnaryOp::Sin => v.apply(T::sin),
        UnaryOp::Cos => v.apply(T::cos),
        UnaryOp::Erf => v.apply(T::erf),
        UnaryOp::Erfc => v.apply(T::erfc),
        UnaryOp::ErfInv => v.apply(T::erf_inv),
        UnaryOp::Rsqrt => v.apply(T::rsqrt),
        UnaryOp::Log1p => v.apply(T::ln_1p),
        UnaryOp::Not => return None,
    })
}

/// Float unary `op` of one element (`NaN` for an op that takes no float):
/// what native code's library call computes.
pub fn float_unary_scalar<T: Float>(op: crate::UnaryOp, x: T) -> T {
    struct Call<T>(T);
    impl<T> FloatUnaryVisitor<T> for Call<T> {
        type Out = T;
        fn apply<F: Fn(T) -> T + Copy + Send + Sync>(self, f: F) -> T {
            f(self.0)
        }
    }
    float_unary(op, Call(x)).unwrap_or(T::NAN)
}

/// `maximum(a, b)`: NaN if either is NaN, else the larger (the first on ties).
#[inline]
#[allow(clippy::eq_op)]
pub(crate) fn max_nan<T: Num>(a: T, b: T) -> T {
    let (x, y) = (T::ord(a), T::ord(b));
    if x != x || (y == y && y <= x) {
        a
    } else {
        b
    }
}

/// `minimum(a, b)`: NaN if either is NaN, else the smaller (the first on ties).
#[inline]
#[allow(clippy::eq_op)]
pub(crate) fn min_nan<T: Num>(a: T, b: T) -> T {
    let (x, y) = (T::ord(a), T::ord(b));
    if x != x || (y == y && y >= x) {
        a
    } else {
        b
    }
}

/// `true` when `x` beats the current best `best` for argmax: larger, or NaN
/// where the best is not (the first NaN is the maximum).
#[inline]
#[allow(clippy::eq_op)]
pub(crate) fn argmax_better<T: PartialOrd + Copy>(x: T, best: T) -> bool {
    x > best || (x != x && best == best)
}

/// The `+` of `x.at[i].add(v)`: wrapping for integers, `or` for bools
/// (which the update kernels reject before adding).
pub(crate) trait Accumulate: Element {
    fn accumulate(a: Self, b: Self) -> Self;
}

macro_rules! accumulate_num {
    ($($t:ty),*) => {
        $(impl Accumulate for $t {
            #[inline]
            fn accumulate(a: Self, b: Self) -> Self {
                <$t as Num>::add(a, b)
            }
        })*
    };
}

accumulate_num!(i32, i64, f32, f64, u32, u8, half::bf16, half::f16);

impl Accumulate for bool {
    #[inline]
    fn accumulate(a: Self, b: Self) -> Self {
        a | b
    }
}

/// Elementwise conversion with `astype` semantics, as XLA converts: numbers
/// convert with Rust `as` (floats saturate into integers, NaN gives 0, so a
/// negative float gives 0 as `u32`; integers wrap), numbers become bools as
/// `x != 0`, bools become 0 or 1.
pub(crate) trait Conv<U> {
    fn conv(self) -> U;
}

macro_rules! conv_num {
    ($($s:ty),*) => {
        $(
            impl Conv<i32> for $s { #[inline] fn conv(self) -> i32 { self as i32 } }
            impl Conv<i64> for $s { #[inline] fn conv(self) -> i64 { self as i64 } }
            impl Conv<f32> for $s { #[inline] fn conv(self) -> f32 { self as f32 } }
            impl Conv<u32> for $s { #[inline] fn conv(self) -> u32 { self as u32 } }
            impl Conv<u8> for $s { #[inline] fn conv(self) -> u8 { self as u8 } }
        )*
    };
}

conv_num!(i32, i64, f32, f64, u32, u8);

macro_rules! conv_int_to {
    ($($s:ty),*) => {
        $(
            impl Conv<f64> for $s { #[inline] fn conv(self) -> f64 { self as f64 } }
            impl Conv<bool> for $s { #[inline] fn conv(self) -> bool { self != 0 } }
        )*
    };
}

conv_int_to!(i32, i64, u32, u8);

// A float is read as the mode says (`docs/semantics.md`, Floats): a
// subnormal is a (signed) zero when it becomes `f64` or `bool`. Through
// `fpmode::as_flushed` rather than left to the conversion alone: once a
// half float's conversion to `f32` (an integer shift) is inlined, LLVM may
// compile `x != 0` as an integer test of the bits and fold conversions of
// constants, neither of which reads the mode (fuzz seed 2026120618).
impl Conv<f64> for f32 {
    #[inline]
    fn conv(self) -> f64 {
        f64::from(crate::fpmode::as_flushed(self))
    }
}

impl Conv<f64> for f64 {
    #[inline]
    fn conv(self) -> f64 {
        self
    }
}

impl Conv<bool> for f32 {
    #[inline]
    #[allow(clippy::float_cmp)]
    fn conv(self) -> bool {
        crate::fpmode::as_flushed(self) != 0.0
    }
}

impl Conv<bool> for f64 {
    #[inline]
    #[allow(clippy::float_cmp)]
    fn conv(self) -> bool {
        crate::fpmode::as_flushed(self) != 0.0
    }
}

impl Conv<bool> for bool {
    #[inline]
    fn conv(self) -> bool {
        self
    }
}
impl Conv<i32> for bool {
    #[inline]
    fn conv(self) -> i32 {
        self as i32
    }
}
impl Conv<i64> for bool {
    #[inline]
    fn conv(self) -> i64 {
        self as i64
    }
}
impl Conv<u32> for bool {
    #[inline]
    fn conv(self) -> u32 {
        self as u32
    }
}
impl Conv<u8> for bool {
    #[inline]
    fn conv(self) -> u8 {
        self as u8
    }
}
impl Conv<f32> for bool {
    #[inline]
    fn conv(self) -> f32 {
        u8::from(self) as f32
    }
}
impl Conv<f64> for bool {
    #[inline]
    fn conv(self) -> f64 {
        u8::from(self) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `got`'s distance from `want` in units of the `f32` spacing at `want`.
    fn ulps_f32(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let spacing = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        (got as f64 - want).abs() / spacing
    }

    #[test]
    fn tanh_f32_is_within_6_ulps_of_tanh_over_a_dense_sweep() {
        // Every 61st positive f32 up to 24 (the sign is symmetric: checked below).
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        let mut bits = 0u32;
        while f32::from_bits(bits) < 24.0 {
            let x = f32::from_bits(bits);
            let got = tanh_f32(x);
            assert_eq!(tanh_f32(-x).to_bits(), (-got).to_bits(), "odd at {x:e}");
            assert!(got.abs() <= 1.0, "tanh({x:e}) = {got:e}");
            let e = ulps_f32(got, (x as f64).tanh());
            if e > worst {
                (worst, at) = (e, x);
            }
            bits += 61;
        }
        eprintln!("tanh_f32: max error {worst:.3} ulps at {at:e}");
        assert!(worst <= 6.0, "{worst} ulps at {at:e}");
        // libm's tanhf, for the record (its documented bound is 2 ulps).
        assert!(ulps_f32(0.5f32.tanh(), 0.5f64.tanh()) <= 2.0);
    }

    #[test]
    fn tanh_f32_special_values_as_xla() {
        let t = tanh_f32;
        assert_eq!(t(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(t(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(t(f32::INFINITY), 1.0);
        assert_eq!(t(f32::NEG_INFINITY), -1.0);
        assert!(t(f32::NAN).is_nan());
        assert!(t(-f32::NAN).is_nan());
        assert_eq!(t(f32::MAX), 1.0);
        assert_eq!(t(f32::MIN), -1.0);
        assert_eq!(t(1e30), 1.0);
        assert_eq!(t(20.0), 1.0);
        assert_eq!(t(-20.0), -1.0);
        // Between the clamp and 20, the clamp's value: XLA's clamp is
        // chosen for an FMA evaluation, which gives exactly 1 there; the
        // plugin runs without FMA and gives 3 ulps below 1 (so do we).
        let at_clamp = t(7.998_812);
        assert_eq!(at_clamp.to_bits(), 0x3f7f_fffd);
        assert_eq!(t(9.0), at_clamp);
        assert_eq!(t(19.99), at_clamp);
        assert_eq!(t(-9.0), -at_clamp);
        // Below 0.0004, x itself: subnormals keep their bits.
        let sub = f32::from_bits(1);
        assert_eq!(t(sub).to_bits(), 1);
        assert_eq!(t(-sub).to_bits(), (-sub).to_bits());
        assert_eq!(t(1e-5), 1e-5);
        assert_eq!(t(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert_eq!(t(0.000_399_9), 0.000_399_9);
        assert!(t(0.0004) < 0.0004);
        // bf16 and f16 go through it, rounded once.
        let h = half::bf16::from_f32(0.75);
        assert_eq!(<half::bf16 as Float>::tanh(h), half::bf16::from_f32(t(0.75)));
        // f64 stays libm's.
        assert_eq!(<f64 as Float>::tanh(0.75), 0.75f64.tanh());
    }

    #[test]
    fn xla_integer_division() {
        assert_eq!(<i32 as Num>::div(7, -2), -3);
        assert_eq!(<i32 as Num>::div(-7, 2), -3);
        assert_eq!(<i32 as Num>::div(5, 0), -1);
        assert_eq!(<i32 as Num>::div(i32::MIN, -1), i32::MIN);
        assert_eq!(<i64 as Num>::div(i64::MIN, -1), i64::MIN);
        assert_eq!(<i32 as Num>::rem(-7, 2), -1);
        assert_eq!(<i32 as Num>::rem(7, -2), 1);
        assert_eq!(<i32 as Num>::rem(5, 0), 5);
        assert_eq!(<i32 as Num>::rem(i32::MIN, -1), 0);
        assert_eq!(<i64 as Num>::rem(i64::MIN, -1), 0);
        assert_eq!(<f32 as Num>::rem(-7.5, 2.0), -1.5);
    }

    #[test]
    fn integer_pow() {
        assert_eq!(<i32 as Num>::pow(3, 4), 81);
        assert_eq!(<i32 as Num>::pow(0, 0), 1);
        assert_eq!(<i32 as Num>::pow(2, 31), i32::MIN);
        assert_eq!(<i32 as Num>::pow(2, 32), 0);
        assert_eq!(<i32 as Num>::pow(2, -1), 0);
        assert_eq!(<i32 as Num>::pow(1, -5), 1);
        assert_eq!(<i32 as Num>::pow(-1, -5), -1);
        assert_eq!(<i32 as Num>::pow(-1, -4), 1);
        assert_eq!(<i64 as Num>::pow(-3, 3), -27);
        assert_eq!(<i64 as Num>::pow(0, -1), 0);
    }

    #[test]
    fn unsigned_arithmetic() {
        assert_eq!(<u32 as Num>::sub(0, 1), u32::MAX);
        assert_eq!(<u32 as Num>::mul(0x8000_0000, 2), 0);
        assert_eq!(<u32 as Num>::div(u32::MAX, 2), 0x7fff_ffff);
        assert_eq!(<u32 as Num>::div(5, 0), u32::MAX);
        assert_eq!(<u32 as Num>::rem(5, 0), 5);
        assert_eq!(<u32 as Num>::rem(u32::MAX, 10), 5);
        assert_eq!(<u32 as Num>::neg(1), u32::MAX);
        assert_eq!(<u32 as Num>::abs(u32::MAX), u32::MAX);
        assert_eq!(<u32 as Num>::pow(3, 21), 3u32.wrapping_pow(21));
        assert_eq!(max_nan(u32::MAX, 1), u32::MAX);
    }

    #[test]
    fn xla_shifts() {
        // JAX 0.10.2: lax.shift_left / shift_right_arithmetic / shift_right_logical.
        let amounts = [0i32, 1, 31, 32, 33, -1, 100];
        let shl: Vec<i32> = amounts.iter().map(|&s| Int::shl(-8i32, s)).collect();
        assert_eq!(shl, [-8, -16, 0, 0, 0, 0, 0]);
        let sar: Vec<i32> = amounts.iter().map(|&s| Int::shr(-8i32, s)).collect();
        assert_eq!(sar, [-8, -4, -1, -1, -1, -1, -1]);
        let shr: Vec<u32> = amounts.iter().map(|&s| Int::shr(-8i32 as u32, s as u32)).collect();
        assert_eq!(shr, [4294967288, 2147483644, 1, 0, 0, 0, 0]);
        assert_eq!(Int::shr(8i64, 64), 0);
        assert_eq!(Int::shr(-8i64, 63), -1);
        assert_eq!(Int::shl(1i64, 63), i64::MIN);
        assert_eq!(Int::not(7u32), !7u32);
    }

    #[test]
    fn nan_max_min_argmax() {
        assert!(max_nan(f32::NAN, 1.0).is_nan());
        assert!(max_nan(1.0, f32::NAN).is_nan());
        assert!(min_nan(f64::NAN, 1.0).is_nan());
        assert!(min_nan(1.0, f64::NAN).is_nan());
        assert_eq!(max_nan(1.0f32, 2.0), 2.0);
        assert_eq!(min_nan(1.0f32, 2.0), 1.0);
        assert_eq!(max_nan(-3i32, 2), 2);
        assert!(argmax_better(f32::NAN, 5.0));
        assert!(!argmax_better(f32::NAN, f32::NAN));
        assert!(!argmax_better(5.0, f32::NAN));
        assert!(!argmax_better(5, 5));
    }

    #[test]
    fn saturating_casts() {
        assert_eq!(Conv::<i32>::conv(f32::NAN), 0);
        assert_eq!(Conv::<i32>::conv(1e20f32), i32::MAX);
        assert_eq!(Conv::<i32>::conv(-1e20f64), i32::MIN);
        assert_eq!(Conv::<i32>::conv(-2.7f32), -2);
        assert_eq!(Conv::<i32>::conv(i64::MAX), -1);
        assert!(Conv::<bool>::conv(f32::NAN));
        assert!(!Conv::<bool>::conv(-0.0f64));
        assert!(Conv::<bool>::conv(-3i64));
        assert_eq!(Conv::<f32>::conv(true), 1.0);
        // XLA's convert (JAX 0.10.2, `benches/peers/ref_dtypes.py`).
        assert_eq!(Conv::<u32>::conv(-1.0f32), 0);
        assert_eq!(Conv::<u32>::conv(4294967296.0f32), u32::MAX);
        assert_eq!(Conv::<u32>::conv(f32::NAN), 0);
        assert_eq!(Conv::<u32>::conv(f64::INFINITY), u32::MAX);
        assert_eq!(Conv::<u32>::conv(-1i32), u32::MAX);
        assert_eq!(Conv::<i32>::conv(u32::MAX), -1);
        assert_eq!(Conv::<f32>::conv(u32::MAX), 4294967296.0);
        assert_eq!(Conv::<u8>::conv(300i32), 44);
        assert_eq!(Conv::<u8>::conv(-0.5f32), 0);
        assert_eq!(Conv::<u8>::conv(1e20f64), 255);
        assert_eq!(Int::shr(200u8, 8), 0);
        assert_eq!(<u8 as Num>::div(7, 0), 255);
    }
}
