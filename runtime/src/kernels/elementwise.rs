//! Elementwise kernels: unary, binary (NumPy broadcasting), select, cast,
//! iota and full.
//!
//! The dtype and the op are matched once per call; the loops are
//! monomorphised per element type and op. Binary ops have three fast paths
//! (equal shapes, which includes scalar ⊕ scalar; tensor ⊕ scalar; scalar ⊕
//! tensor) before the general strided broadcast.

use super::num::{float_unary, max_nan, min_nan, Conv, Float, FloatUnaryVisitor, Int, Num};
use super::{broadcast_copy, broadcast_shapes, broadcast_strides, elems, for_each_row, PAR_THRESHOLD};
use crate::{checked_numel, out_buffer, BinaryOp, DType, Element, RuntimeError, Tensor, UnaryOp};
use rayon::prelude::*;

/// Elements per task when a kernel runs on the rayon pool.
const PAR_CHUNK: usize = 4096;

/// Applies `f` to every element of `src`, writing `dst` (same length).
#[inline]
pub(crate) fn map_into<T: Copy + Send + Sync, U: Send>(src: &[T], dst: &mut [U], f: impl Fn(T) -> U + Send + Sync) {
    if dst.len() > PAR_THRESHOLD {
        // The workers compute in the caller's floating-point mode.
        let mode = crate::fpmode::current();
        dst.par_chunks_mut(PAR_CHUNK).zip(src.par_chunks(PAR_CHUNK)).for_each(|(o, s)| {
            crate::fpmode::with_mode(mode, || {
                for (o, &x) in o.iter_mut().zip(s) {
                    *o = f(x);
                }
            })
        });
    } else {
        for (o, &x) in dst.iter_mut().zip(src) {
            *o = f(x);
        }
    }
}

/// `out := f(a)` elementwise, `a` of element type `T`.
#[inline]
fn map1<T: Element, U: Element>(
    op: &'static str,
    a: &Tensor,
    out: &mut Option<Tensor>,
    f: impl Fn(T) -> U + Send + Sync,
) -> Result<(), RuntimeError> {
    let xa = elems::<T>(op, a)?;
    let o = out_buffer::<U>(out, a.shape());
    map_into(xa, o, f);
    Ok(())
}

/// Applies the elementwise unary `op` to `a`.
///
/// The dtypes each op takes are its row's [`UnaryOp::accepts`] (integers
/// wrap: `abs(MIN) = MIN`). The result has `a`'s dtype and shape.
pub fn unary(op: UnaryOp, a: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if !op.accepts().accepts(a.dtype()) {
        return Err(unary_type_error(op, a));
    }
    match a.dtype() {
        DType::Bool => match op {
            UnaryOp::Not => map1::<bool, bool>(op.as_str(), a, out, |x| !x),
            _ => Err(unary_type_error(op, a)),
        },
        DType::I32 => unary_int::<i32>(op, a, out),
        DType::I64 => unary_int::<i64>(op, a, out),
        DType::U32 => unary_int::<u32>(op, a, out),
        DType::U8 => unary_int::<u8>(op, a, out),
        DType::F32 => unary_float::<f32>(op, a, out),
        DType::F64 => unary_float::<f64>(op, a, out),
        DType::BF16 => unary_float::<half::bf16>(op, a, out),
        DType::F16 => unary_float::<half::f16>(op, a, out),
    }
}

#[cold]
fn unary_type_error(op: UnaryOp, a: &Tensor) -> RuntimeError {
    let want = op.accepts().requirement();
    RuntimeError::new(op.as_str(), format!("{} requires {want}, got {}", op.as_str(), a.type_string()))
}

fn unary_int<T: Int>(op: UnaryOp, a: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    unbox(int_unary::<T, _>(op, Map1 { name: op.as_str(), a, out }), || unary_type_error(op, a))
}

fn unary_float<T: Float>(op: UnaryOp, a: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    unbox(float_unary::<T, _>(op, Map1 { name: op.as_str(), a, out }), || unary_type_error(op, a))
}

/// What the tensor kernels' visitors ([`Map1`], [`Zip2`]) give back: the
/// error boxed, so that the common `Ok` (and the op table's `None`) comes
/// back in registers. A `RuntimeError` by value is seven words, returned
/// through memory and copied out again by each caller, and that copy reads
/// the tag the callee just stored as part of a wider load, which stalls
/// (about a third of a small-tensor op's time).
type Fallible = Result<(), Box<RuntimeError>>;

/// A visitor's result (`None`: the op takes no operands of this dtype,
/// the error `or`) as a kernel's.
#[inline(always)]
fn unbox(r: Option<Fallible>, or: impl FnOnce() -> RuntimeError) -> Result<(), RuntimeError> {
    match r {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(*e),
        None => Err(or()),
    }
}

/// The tensor kernels' visitor for unary ops: maps `a` into `out`.
struct Map1<'a, 'o> {
    name: &'static str,
    a: &'a Tensor,
    out: &'o mut Option<Tensor>,
}

impl<T: Element> FloatUnaryVisitor<T> for Map1<'_, '_> {
    type Out = Fallible;
    fn apply<F: Fn(T) -> T + Copy + Send + Sync>(self, f: F) -> Self::Out {
        map1::<T, T>(self.name, self.a, self.out, f).map_err(Box::new)
    }
}

/// The one place that says which scalar function computes integer unary
/// `op` (the visitor trait is the float ops'); `None` for an op that takes
/// no integer. The tensor kernel and native code's buffer kernel
/// ([`super::native`]) both come here.
pub(crate) fn int_unary<T: Int, V: FloatUnaryVisitor<T>>(op: UnaryOp, v: V) -> Option<V::Out> {
    Some(match op {
        UnaryOp::Neg => v.apply(T::neg),
        UnaryOp::Not => v.apply(T::not),
        UnaryOp::Abs => v.apply(T::abs),
        UnaryOp::Relu => v.apply(|x| max_nan(x, T::ZERO)),
        _ => return None,
    })
}

/// Applies the elementwise binary `op` to `a` and `b` with NumPy
/// broadcasting.
///
/// Both operands must have the same dtype. Arithmetic (`add` … `pow`) takes
/// integers and floats with XLA semantics (see [`BinaryOp`]); `maximum` and
/// `minimum` also take bools; comparisons take any dtype and give `bool`;
/// `and` / `or` take bools.
#[inline]
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    let dtype = a.dtype();
    if dtype != b.dtype() {
        return Err(binary_error(op.as_str(), "dtype mismatch in", a, b));
    }
    if !op.accepts().accepts(dtype) {
        return Err(binary_dtype_error(op, a, b));
    }
    match dtype {
        DType::Bool => binary_bool(op, a, b, out),
        DType::I32 => binary_int::<i32>(op, a, b, out),
        DType::I64 => binary_int::<i64>(op, a, b, out),
        DType::U32 => binary_int::<u32>(op, a, b, out),
        DType::U8 => binary_int::<u8>(op, a, b, out),
        DType::F32 => binary_num::<f32>(op, a, b, out),
        DType::F64 => binary_num::<f64>(op, a, b, out),
        DType::BF16 => binary_num::<half::bf16>(op, a, b, out),
        DType::F16 => binary_num::<half::f16>(op, a, b, out),
    }
}

/// `"numeric operands required in {op}, lhs: {a}, rhs: {b}"` (the row's class).
#[cold]
fn binary_dtype_error(op: BinaryOp, a: &Tensor, b: &Tensor) -> RuntimeError {
    binary_error(op.as_str(), &format!("{} required in", op.accepts().operands()), a, b)
}

/// `"{what} {op}, lhs: {a}, rhs: {b}"`.
#[cold]
fn binary_error(op: &'static str, what: &str, a: &Tensor, b: &Tensor) -> RuntimeError {
    RuntimeError::new(op, format!("{what} {op}, lhs: {}, rhs: {}", a.type_string(), b.type_string()))
}

/// Receives the scalar function of a binary op from [`num_binary`],
/// [`int_binary`] or [`bool_binary`], statically (each op's function is its
/// own type, so a kernel's loop inlines it).
pub(crate) trait BinaryVisitor<T> {
    /// What the visitor makes of the function.
    type Out;
    /// Called once with the op's scalar function, whose result is `U`
    /// (`T`, or `bool` for a comparison).
    fn apply<U: Element, F: Fn(T, T) -> U + Copy + Send + Sync>(self, f: F) -> Self::Out;
}

/// The one place that says which scalar function computes binary `op` on
/// numbers: hands it to `v`; `None` for an op that takes no numbers of
/// this kind. The tensor kernel and native code's buffer kernel
/// ([`super::native`]) both come here.
pub(crate) fn num_binary<T: Num, V: BinaryVisitor<T>>(op: BinaryOp, v: V) -> Option<V::Out> {
    Some(match op {
        BinaryOp::Add => v.apply(T::add),
        BinaryOp::Sub => v.apply(T::sub),
        BinaryOp::Mul => v.apply(T::mul),
        BinaryOp::Div => v.apply(T::div),
        BinaryOp::Rem => v.apply(T::rem),
        BinaryOp::Pow => v.apply(T::pow),
        BinaryOp::Max => v.apply(max_nan::<T>),
        BinaryOp::Min => v.apply(min_nan::<T>),
        BinaryOp::Eq => v.apply(|x: T, y: T| T::ord(x) == T::ord(y)),
        BinaryOp::Ne => v.apply(|x: T, y: T| T::ord(x) != T::ord(y)),
        BinaryOp::Lt => v.apply(|x: T, y: T| T::ord(x) < T::ord(y)),
        BinaryOp::Le => v.apply(|x: T, y: T| T::ord(x) <= T::ord(y)),
        BinaryOp::Gt => v.apply(|x: T, y: T| T::ord(x) > T::ord(y)),
        BinaryOp::Ge => v.apply(|x: T, y: T| T::ord(x) >= T::ord(y)),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Shl | BinaryOp::Shr => return None,
    })
}

/// An integer binary op: the bit ops here, the arithmetic in [`num_binary`].
pub(crate) fn int_binary<T: Int, V: BinaryVisitor<T>>(op: BinaryOp, v: V) -> Option<V::Out> {
    Some(match op {
        BinaryOp::And => v.apply(T::and),
        BinaryOp::Or => v.apply(T::or),
        BinaryOp::Xor => v.apply(T::xor),
        BinaryOp::Shl => v.apply(T::shl),
        BinaryOp::Shr => v.apply(T::shr),
        _ => return num_binary::<T, V>(op, v),
    })
}

/// A binary op on bools.
#[allow(clippy::bool_comparison)]
pub(crate) fn bool_binary<V: BinaryVisitor<bool>>(op: BinaryOp, v: V) -> Option<V::Out> {
    Some(match op {
        BinaryOp::And | BinaryOp::Min => v.apply(|x: bool, y: bool| x & y),
        BinaryOp::Or | BinaryOp::Max => v.apply(|x: bool, y: bool| x | y),
        BinaryOp::Xor => v.apply(|x: bool, y: bool| x ^ y),
        BinaryOp::Eq => v.apply(|x: bool, y: bool| x == y),
        BinaryOp::Ne => v.apply(|x: bool, y: bool| x != y),
        BinaryOp::Lt => v.apply(|x: bool, y: bool| x < y),
        BinaryOp::Le => v.apply(|x: bool, y: bool| x <= y),
        BinaryOp::Gt => v.apply(|x: bool, y: bool| x > y),
        BinaryOp::Ge => v.apply(|x: bool, y: bool| x >= y),
        _ => return None,
    })
}

/// The tensor kernel's visitor for binary ops: zips `a` and `b` into `out`.
struct Zip2<'a, 'o> {
    name: &'static str,
    a: &'a Tensor,
    b: &'a Tensor,
    out: &'o mut Option<Tensor>,
}

impl<T: Element> BinaryVisitor<T> for Zip2<'_, '_> {
    type Out = Fallible;
    fn apply<U: Element, F: Fn(T, T) -> U + Copy + Send + Sync>(self, f: F) -> Self::Out {
        zip2::<T, U>(self.name, self.a, self.b, self.out, f).map_err(Box::new)
    }
}

fn binary_num<T: Num>(op: BinaryOp, a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    unbox(num_binary::<T, _>(op, Zip2 { name: op.as_str(), a, b, out }), || binary_dtype_error(op, a, b))
}

fn binary_int<T: Int>(op: BinaryOp, a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    unbox(int_binary::<T, _>(op, Zip2 { name: op.as_str(), a, b, out }), || binary_dtype_error(op, a, b))
}

fn binary_bool(op: BinaryOp, a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    unbox(bool_binary(op, Zip2 { name: op.as_str(), a, b, out }), || binary_dtype_error(op, a, b))
}

/// `out := f(a, b)` elementwise with NumPy broadcasting.
#[inline]
fn zip2<T: Element, U: Element>(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    out: &mut Option<Tensor>,
    f: impl Fn(T, T) -> U + Copy + Send + Sync,
) -> Result<(), RuntimeError> {
    let (xa, xb) = (elems::<T>(op, a)?, elems::<T>(op, b)?);
    let (sa, sb) = (a.shape(), b.shape());
    if crate::tensor::same_shape(sa, sb) {
        // Equal shapes (the interpreter's small tensors): one shape compare,
        // not a second one in `zip_into`.
        let o = out_buffer::<U>(out, sa);
        if o.len() <= PAR_THRESHOLD {
            for ((o, &x), &y) in o.iter_mut().zip(xa).zip(xb) {
                *o = f(x, y);
            }
        } else {
            zip_into(xa, sa, xb, sb, sa, o, f);
        }
        return Ok(());
    }
    let general;
    let shape: &[usize] = if sa == sb || (xb.len() == 1 && sb.len() <= sa.len()) {
        sa
    } else if xa.len() == 1 && sa.len() <= sb.len() {
        sb
    } else {
        let Some(s) = broadcast_shapes(sa, sb) else {
            return Err(RuntimeError::new(
                op,
                format!("shapes do not broadcast, lhs: {}, rhs: {}", a.type_string(), b.type_string()),
            ));
        };
        general = s;
        &general
    };
    zip_into(xa, sa, xb, sb, shape, out_buffer::<U>(out, shape), f);
    Ok(())
}

/// `o := f(xa, xb)` elementwise, `xa` of shape `sa` and `xb` of shape `sb`
/// broadcast to `shape` (which `o` has): the loops of the binary kernel,
/// shared by the tensor kernel and native code's buffer kernel. Three fast
/// paths (equal shapes; tensor ⊕ one element; one element ⊕ tensor) come
/// before the general strided broadcast.
#[inline]
pub(crate) fn zip_into<T: Element, U: Element>(
    xa: &[T],
    sa: &[usize],
    xb: &[T],
    sb: &[usize],
    shape: &[usize],
    o: &mut [U],
    f: impl Fn(T, T) -> U + Copy + Send + Sync,
) {
    if sa == sb {
        if o.len() > PAR_THRESHOLD {
            let mode = crate::fpmode::current();
            o.par_chunks_mut(PAR_CHUNK).zip(xa.par_chunks(PAR_CHUNK).zip(xb.par_chunks(PAR_CHUNK))).for_each(
                |(o, (xa, xb))| {
                    crate::fpmode::with_mode(mode, || {
                        for ((o, &x), &y) in o.iter_mut().zip(xa).zip(xb) {
                            *o = f(x, y);
                        }
                    })
                },
            );
        } else {
            for ((o, &x), &y) in o.iter_mut().zip(xa).zip(xb) {
                *o = f(x, y);
            }
        }
    } else if let ([y], true) = (xb, sb.len() <= sa.len()) {
        let y = *y;
        map_into(xa, o, move |x| f(x, y));
    } else if let ([x], true) = (xa, sa.len() <= sb.len()) {
        let x = *x;
        map_into(xb, o, move |y| f(x, y));
    } else {
        let (ta, tb) = (broadcast_strides(sa, shape), broadcast_strides(sb, shape));
        let inner = shape.last().copied().unwrap_or(1);
        let (ia, ib) = (ta.last().copied().unwrap_or(0), tb.last().copied().unwrap_or(0));
        for_each_row(shape, [&ta, &tb], |d, [oa, ob]| {
            let row = &mut o[d..d + inner];
            let (oa, ob) = (oa as usize, ob as usize);
            match (ia, ib) {
                (1, 1) => {
                    for ((o, &x), &y) in row.iter_mut().zip(&xa[oa..oa + inner]).zip(&xb[ob..ob + inner]) {
                        *o = f(x, y);
                    }
                }
                (1, 0) => {
                    let y = xb[ob];
                    for (o, &x) in row.iter_mut().zip(&xa[oa..oa + inner]) {
                        *o = f(x, y);
                    }
                }
                (0, 1) => {
                    let x = xa[oa];
                    for (o, &y) in row.iter_mut().zip(&xb[ob..ob + inner]) {
                        *o = f(x, y);
                    }
                }
                _ => {
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = f(xa[oa + j * ia as usize], xb[ob + j * ib as usize]);
                    }
                }
            }
        });
    }
}

/// `where(c, a, b)`: elementwise `c ? a : b` with three-way NumPy
/// broadcasting. `c` must be `bool`; `a` and `b` share a dtype, which is the
/// result's.
pub fn select(c: &Tensor, a: &Tensor, b: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    let types = || format!("cond: {}, lhs: {}, rhs: {}", c.type_string(), a.type_string(), b.type_string());
    if c.dtype() != DType::Bool {
        return Err(RuntimeError::new("select", format!("condition must be bool, {}", types())));
    }
    if a.dtype() != b.dtype() {
        return Err(RuntimeError::new("select", format!("dtype mismatch in select, {}", types())));
    }
    let Some(shape) = broadcast_shapes(a.shape(), b.shape()).and_then(|s| broadcast_shapes(c.shape(), &s)) else {
        return Err(RuntimeError::new("select", format!("shapes do not broadcast, {}", types())));
    };
    crate::with_dtype!(a.dtype(), T => select_typed::<T>(c, a, b, &shape, out))
}

fn select_typed<T: Element>(
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    out: &mut Option<Tensor>,
) -> Result<(), RuntimeError> {
    let (xc, xa, xb) = (elems::<bool>("select", c)?, elems::<T>("select", a)?, elems::<T>("select", b)?);
    if let [cond] = xc {
        // One condition picks a whole operand.
        let (src, src_t) = if *cond { (xa, a) } else { (xb, b) };
        broadcast_copy(src, src_t.shape(), shape, out_buffer::<T>(out, shape));
        return Ok(());
    }
    let o = out_buffer::<T>(out, shape);
    if c.shape() == shape && a.shape() == shape && b.shape() == shape {
        for (((o, &k), &x), &y) in o.iter_mut().zip(xc).zip(xa).zip(xb) {
            *o = if k { x } else { y };
        }
        return Ok(());
    }
    let (tc, ta, tb) =
        (broadcast_strides(c.shape(), shape), broadcast_strides(a.shape(), shape), broadcast_strides(b.shape(), shape));
    let inner = shape.last().copied().unwrap_or(1);
    let last = |s: &[isize]| s.last().copied().unwrap_or(0) as usize;
    let (ic, ia, ib) = (last(&tc), last(&ta), last(&tb));
    for_each_row(shape, [&tc, &ta, &tb], |d, [oc, oa, ob]| {
        let (oc, oa, ob) = (oc as usize, oa as usize, ob as usize);
        for (j, o) in o[d..d + inner].iter_mut().enumerate() {
            *o = if xc[oc + j * ic] { xa[oa + j * ia] } else { xb[ob + j * ib] };
        }
    });
    Ok(())
}

/// Converts `a` to dtype `to` (`astype`): floats saturate into integers with
/// NaN giving 0, integers wrap into narrower integers, numbers become bools
/// as `x != 0`, bools become 0 or 1. Casting to `a`'s own dtype shares its
/// buffer.
pub fn cast(a: &Tensor, to: DType, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    if a.dtype() == to {
        *out = Some(a.clone());
        return Ok(());
    }
    crate::with_dtype!(a.dtype(), S => crate::with_dtype!(to, D => map1::<S, D>("cast", a, out, Conv::<D>::conv)))
}

/// `a` converted to `f32` (a new tensor; exact for the half floats).
pub(crate) fn to_f32(a: &Tensor) -> Result<Tensor, RuntimeError> {
    let mut o = None;
    cast(a, DType::F32, &mut o)?;
    o.ok_or_else(|| RuntimeError::new("cast", format!("internal error: no f32 copy of {}", a.type_string())))
}

/// The bits of an element, for [`bitcast`]: every number type, zero-extended
/// to 64 bits.
trait Bits: Element {
    fn to_bits(self) -> u64;
    fn from_bits(b: u64) -> Self;
}

macro_rules! bits {
    ($($t:ty => |$x:ident| $to:expr, |$b:ident| $from:expr;)*) => {
        $(impl Bits for $t {
            #[inline]
            fn to_bits(self) -> u64 {
                let $x = self;
                $to
            }
            #[inline]
            fn from_bits($b: u64) -> Self {
                $from
            }
        })*
    };
}

bits! {
    i32 => |x| u64::from(x as u32), |b| b as u32 as i32;
    i64 => |x| x as u64, |b| b as i64;
    u32 => |x| u64::from(x), |b| b as u32;
    u8 => |x| u64::from(x), |b| b as u8;
    f32 => |x| u64::from(if x.is_nan() { CANONICAL_NAN_F32 } else { x.to_bits() }), |b| f32::from_bits(b as u32);
    f64 => |x| if x.is_nan() { CANONICAL_NAN_F64 } else { x.to_bits() }, |b| f64::from_bits(b);
    half::bf16 => |x| u64::from(if x.is_nan() { CANONICAL_NAN_BF16 } else { x.to_bits() }), |b| half::bf16::from_bits(b as u16);
    half::f16 => |x| u64::from(if x.is_nan() { CANONICAL_NAN_F16 } else { x.to_bits() }), |b| half::f16::from_bits(b as u16);
}

/// The bits `bitcast` gives for any NaN `f32`: the positive quiet NaN. A
/// NaN's sign and payload depend on where it was made (x86's `0.0 / 0.0` is
/// negative, the same quotient folded by XLA positive), so one NaN stands
/// for all, on every tier.
pub const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;
/// The bits `bitcast` gives for any NaN `f64` (see [`CANONICAL_NAN_F32`]).
pub const CANONICAL_NAN_F64: u64 = 0x7ff8_0000_0000_0000;
/// The bits `bitcast` gives for any NaN `bf16` (see [`CANONICAL_NAN_F32`]).
pub const CANONICAL_NAN_BF16: u16 = 0x7fc0;
/// The bits `bitcast` gives for any NaN `f16` (see [`CANONICAL_NAN_F32`]).
pub const CANONICAL_NAN_F16: u16 = 0x7e00;

/// `bitcast(a, to)` (`lax.bitcast_convert_type`): the bits of every element
/// read as dtype `to`, which must have the element width of `a`'s dtype
/// ([`DType::can_bitcast`]; no bool); a NaN gives the bits of the positive
/// quiet NaN ([`CANONICAL_NAN_F32`]). Bitcasting to `a`'s own dtype shares
/// its buffer.
pub fn bitcast(a: &Tensor, to: DType, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    fn go<S: Bits, D: Bits>(a: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
        map1::<S, D>("bitcast", a, out, |x| D::from_bits(x.to_bits()))
    }
    fn into<S: Bits>(a: &Tensor, to: DType, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
        match to {
            DType::I32 => go::<S, i32>(a, out),
            DType::I64 => go::<S, i64>(a, out),
            DType::U32 => go::<S, u32>(a, out),
            DType::U8 => go::<S, u8>(a, out),
            DType::BF16 => go::<S, half::bf16>(a, out),
            DType::F16 => go::<S, half::f16>(a, out),
            DType::F32 => go::<S, f32>(a, out),
            DType::F64 => go::<S, f64>(a, out),
            DType::Bool => Err(bitcast_error(a, DType::Bool)),
        }
    }
    if !a.dtype().can_bitcast(to) {
        return Err(bitcast_error(a, to));
    }
    if a.dtype() == to {
        *out = Some(a.clone());
        return Ok(());
    }
    match a.dtype() {
        DType::I32 => into::<i32>(a, to, out),
        DType::I64 => into::<i64>(a, to, out),
        DType::U32 => into::<u32>(a, to, out),
        DType::U8 => into::<u8>(a, to, out),
        DType::BF16 => into::<half::bf16>(a, to, out),
        DType::F16 => into::<half::f16>(a, to, out),
        DType::F32 => into::<f32>(a, to, out),
        DType::F64 => into::<f64>(a, to, out),
        DType::Bool => Err(bitcast_error(a, to)),
    }
}

#[cold]
fn bitcast_error(a: &Tensor, to: DType) -> RuntimeError {
    RuntimeError::new(
        "bitcast",
        format!("bitcast of {} to {to} needs two number dtypes of one element width", a.type_string()),
    )
}

/// `[0, 1, …, n-1]` as a rank-1 tensor of `dtype` (an integer or float
/// dtype; for `i32`, `n - 1` must fit).
pub fn iota(dtype: DType, n: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    fn fill<T: Num>(n: usize, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
        for (i, o) in out_buffer::<T>(out, &[n]).iter_mut().enumerate() {
            *o = T::from_usize(i);
        }
        Ok(())
    }
    match dtype {
        DType::Bool => Err(RuntimeError::new("iota", format!("iota of bool[{n}] is not defined"))),
        DType::I32 if n > i32::MAX as usize + 1 => {
            Err(RuntimeError::new("iota", format!("iota of i32[{n}] overflows i32")))
        }
        DType::I32 => fill::<i32>(n, out),
        DType::I64 => fill::<i64>(n, out),
        DType::U32 if n > u32::MAX as usize + 1 => {
            Err(RuntimeError::new("iota", format!("iota of u32[{n}] overflows u32")))
        }
        DType::U32 => fill::<u32>(n, out),
        DType::U8 if n > u8::MAX as usize + 1 => {
            Err(RuntimeError::new("iota", format!("iota of u8[{n}] overflows u8")))
        }
        DType::U8 => fill::<u8>(n, out),
        DType::F32 => fill::<f32>(n, out),
        DType::F64 => fill::<f64>(n, out),
        DType::BF16 => fill::<half::bf16>(n, out),
        DType::F16 => fill::<half::f16>(n, out),
    }
}

/// A tensor of `dtype` and `shape` whose every element is `value` (a
/// one-element tensor of any dtype, converted as by [`cast`]).
pub fn full(dtype: DType, shape: &[usize], value: &Tensor, out: &mut Option<Tensor>) -> Result<(), RuntimeError> {
    checked_numel(shape).map_err(|e| RuntimeError::new("full", e.message))?;
    if value.numel() != 1 {
        return Err(RuntimeError::new(
            "full",
            format!("fill value must have one element, got {}", value.type_string()),
        ));
    }
    crate::with_dtype!(value.dtype(), S => {
        let v: S = elems::<S>("full", value)?[0];
        crate::with_dtype!(dtype, D => out_buffer::<D>(out, shape).fill(Conv::<D>::conv(v)))
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Element;

    fn t<T: Element>(shape: &[usize], v: Vec<T>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }

    fn bin(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, RuntimeError> {
        let mut out = None;
        binary(op, a, b, &mut out)?;
        Ok(out.unwrap())
    }

    fn un(op: UnaryOp, a: &Tensor) -> Result<Tensor, RuntimeError> {
        let mut out = None;
        unary(op, a, &mut out)?;
        Ok(out.unwrap())
    }

    #[test]
    fn unary_ops() {
        let a = t(&[4], vec![-2.0f32, 0.0, 1.5, f32::NAN]);
        let r = un(UnaryOp::Relu, &a).unwrap();
        let r = r.as_slice::<f32>().unwrap();
        assert_eq!(&r[..3], &[0.0, 0.0, 1.5]);
        assert!(r[3].is_nan());
        let s = un(UnaryOp::Sigmoid, &Tensor::scalar(0.0f64)).unwrap();
        assert_eq!(s.scalar_f64(), Some(0.5));
        let e = un(UnaryOp::Exp, &t(&[2], vec![0.0f64, 1.0])).unwrap();
        assert_eq!(e.as_slice::<f64>().unwrap(), &[1.0, std::f64::consts::E]);
        let i = t(&[3], vec![i32::MIN, -3, 4]);
        assert_eq!(un(UnaryOp::Abs, &i).unwrap().as_slice::<i32>().unwrap(), &[i32::MIN, 3, 4]);
        assert_eq!(un(UnaryOp::Neg, &i).unwrap().as_slice::<i32>().unwrap(), &[i32::MIN, 3, -4]);
        assert_eq!(un(UnaryOp::Relu, &i).unwrap().as_slice::<i32>().unwrap(), &[0, 0, 4]);
        let b = t(&[2], vec![true, false]);
        assert_eq!(un(UnaryOp::Not, &b).unwrap().as_slice::<bool>().unwrap(), &[false, true]);
        assert_eq!(un(UnaryOp::Not, &i).unwrap().as_slice::<i32>().unwrap(), &[i32::MAX, 2, -5]);
        let f = t(&[1], vec![1.0f32]);
        assert_eq!(un(UnaryOp::Not, &f).unwrap_err().message, "not requires an integer or bool operand, got f32[1]");
        assert_eq!(un(UnaryOp::Exp, &i).unwrap_err().message, "exp requires a float operand, got i32[3]");
        assert!(un(UnaryOp::Neg, &b).is_err());
        assert_eq!(un(UnaryOp::Sqrt, &Tensor::scalar(9.0f32)).unwrap().shape(), &[] as &[usize]);
    }

    #[test]
    fn binary_same_shape_and_scalar() {
        let a = t(&[3], vec![1i32, 2, 3]);
        let b = t(&[3], vec![10i32, 20, 30]);
        assert_eq!(bin(BinaryOp::Add, &a, &b).unwrap().as_slice::<i32>().unwrap(), &[11, 22, 33]);
        assert_eq!(bin(BinaryOp::Sub, &a, &Tensor::scalar(1i32)).unwrap().as_slice::<i32>().unwrap(), &[0, 1, 2]);
        assert_eq!(bin(BinaryOp::Sub, &Tensor::scalar(1i32), &a).unwrap().as_slice::<i32>().unwrap(), &[0, -1, -2]);
        let s = bin(BinaryOp::Mul, &Tensor::scalar(6i64), &Tensor::scalar(7i64)).unwrap();
        assert_eq!((s.shape(), s.scalar_i64()), (&[] as &[usize], Some(42)));
        let w = bin(BinaryOp::Add, &Tensor::scalar(i32::MAX), &Tensor::scalar(1i32)).unwrap();
        assert_eq!(w.scalar_i64(), Some(i32::MIN as i64));
        // A [1, 1] scalar against a rank-1 tensor broadcasts to rank 2.
        let one = t(&[1, 1], vec![5i32]);
        let r = bin(BinaryOp::Add, &a, &one).unwrap();
        assert_eq!((r.shape(), r.as_slice::<i32>().unwrap()), (&[1, 3][..], &[6, 7, 8][..]));
    }

    #[test]
    fn binary_xla_int_division() {
        let a = t(&[5], vec![7i32, -7, 5, i32::MIN, i32::MIN]);
        let b = t(&[5], vec![-2i32, 2, 0, -1, 0]);
        assert_eq!(bin(BinaryOp::Div, &a, &b).unwrap().as_slice::<i32>().unwrap(), &[-3, -3, -1, i32::MIN, -1]);
        assert_eq!(bin(BinaryOp::Rem, &a, &b).unwrap().as_slice::<i32>().unwrap(), &[1, -1, 5, 0, i32::MIN]);
        let a = t(&[2], vec![i64::MIN, 9]);
        let b = t(&[2], vec![-1i64, 0]);
        assert_eq!(bin(BinaryOp::Div, &a, &b).unwrap().as_slice::<i64>().unwrap(), &[i64::MIN, -1]);
        assert_eq!(bin(BinaryOp::Rem, &a, &b).unwrap().as_slice::<i64>().unwrap(), &[0, 9]);
        let p = bin(BinaryOp::Pow, &t(&[3], vec![2i32, -1, 3]), &t(&[3], vec![10i32, -3, -1])).unwrap();
        assert_eq!(p.as_slice::<i32>().unwrap(), &[1024, -1, 0]);
    }

    #[test]
    fn binary_float_nan_rules() {
        let a = t(&[3], vec![1.0f32, f32::NAN, 3.0]);
        let b = t(&[3], vec![f32::NAN, 2.0, 2.0]);
        let m = bin(BinaryOp::Max, &a, &b).unwrap();
        let m = m.as_slice::<f32>().unwrap();
        assert!(m[0].is_nan() && m[1].is_nan() && m[2] == 3.0);
        let m = bin(BinaryOp::Min, &a, &b).unwrap();
        let m = m.as_slice::<f32>().unwrap();
        assert!(m[0].is_nan() && m[1].is_nan() && m[2] == 2.0);
        for (op, want) in [
            (BinaryOp::Eq, [false, false, false]),
            (BinaryOp::Ne, [true, true, true]),
            (BinaryOp::Lt, [false, false, false]),
            (BinaryOp::Ge, [false, false, true]),
        ] {
            assert_eq!(bin(op, &a, &b).unwrap().as_slice::<bool>().unwrap(), &want, "{op}");
        }
        let d = bin(BinaryOp::Div, &t(&[2], vec![1.0f64, -1.0]), &Tensor::scalar(0.0f64)).unwrap();
        assert_eq!(d.as_slice::<f64>().unwrap(), &[f64::INFINITY, f64::NEG_INFINITY]);
    }

    #[test]
    fn binary_general_broadcast() {
        let a = t(&[2, 1], vec![1.0f32, 2.0]);
        let b = t(&[3], vec![10.0f32, 20.0, 30.0]);
        let r = bin(BinaryOp::Add, &a, &b).unwrap();
        assert_eq!(r.shape(), &[2, 3]);
        assert_eq!(r.as_slice::<f32>().unwrap(), &[11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
        let r = bin(BinaryOp::Sub, &b, &a).unwrap();
        assert_eq!(r.as_slice::<f32>().unwrap(), &[9.0, 19.0, 29.0, 8.0, 18.0, 28.0]);
        // Both operands stretched along the inner axis in different ways.
        let c = t(&[2, 3, 1], (0..6).collect::<Vec<i32>>());
        let d = t(&[1, 4], vec![0i32, 100, 200, 300]);
        let r = bin(BinaryOp::Add, &c, &d).unwrap();
        assert_eq!(r.shape(), &[2, 3, 4]);
        let want: Vec<i32> = (0..24).map(|i| (i / 4) + (i % 4) * 100).collect();
        assert_eq!(r.as_slice::<i32>().unwrap(), &want[..]);
        // Zero-size broadcast.
        let z = bin(BinaryOp::Add, &t(&[0, 1], Vec::<f32>::new()), &b).unwrap();
        assert_eq!((z.shape(), z.numel()), (&[0, 3][..], 0));
        let e = bin(BinaryOp::Add, &t(&[3], vec![1.0f32; 3]), &t(&[4], vec![1.0f32; 4])).unwrap_err();
        assert_eq!((e.op, e.message.as_str()), ("add", "shapes do not broadcast, lhs: f32[3], rhs: f32[4]"));
    }

    #[test]
    fn binary_dtype_rules() {
        let e = bin(BinaryOp::Add, &t(&[4], vec![0.0f32; 4]), &t(&[4], vec![0i32; 4])).unwrap_err();
        assert_eq!(e.message, "dtype mismatch in add, lhs: f32[4], rhs: i32[4]");
        let bt = t(&[2], vec![true, false]);
        let bf = t(&[2], vec![true, true]);
        assert_eq!(bin(BinaryOp::And, &bt, &bf).unwrap().as_slice::<bool>().unwrap(), &[true, false]);
        assert_eq!(bin(BinaryOp::Or, &bt, &bf).unwrap().as_slice::<bool>().unwrap(), &[true, true]);
        assert!(bin(BinaryOp::Add, &bt, &bf).is_err());
        assert_eq!(bin(BinaryOp::And, &Tensor::scalar(6i32), &Tensor::scalar(3i32)).unwrap().scalar_i64(), Some(2));
        assert!(bin(BinaryOp::Xor, &Tensor::scalar(1.0f32), &Tensor::scalar(1.0f32)).is_err());
        assert!(bin(BinaryOp::Shl, &bt, &bf).is_err());
        let u = t(&[3], vec![u32::MAX, 7, 0x8000_0000]);
        let s = t(&[3], vec![4u32, 32, 31]);
        assert_eq!(bin(BinaryOp::Shr, &u, &s).unwrap().as_slice::<u32>().unwrap(), &[0x0fff_ffff, 0, 1]);
        assert_eq!(bin(BinaryOp::Shl, &u, &s).unwrap().as_slice::<u32>().unwrap(), &[0xffff_fff0, 0, 0]);
        assert_eq!(bin(BinaryOp::Xor, &u, &s).unwrap().as_slice::<u32>().unwrap(), &[!4u32, 39, 0x8000_001f]);
        assert_eq!(bin(BinaryOp::Lt, &u, &s).unwrap().as_slice::<bool>().unwrap(), &[false, true, false]);
        assert_eq!(
            bin(BinaryOp::Div, &u, &t(&[3], vec![2u32, 0, 3])).unwrap().as_slice::<u32>().unwrap(),
            &[0x7fff_ffff, u32::MAX, 0x2aaa_aaaa]
        );
        assert_eq!(bin(BinaryOp::Lt, &bt, &bf).unwrap().as_slice::<bool>().unwrap(), &[false, true]);
    }

    #[test]
    fn binary_reuses_unique_out_buffer() {
        let a = t(&[4], vec![1.0f32, 2.0, 3.0, 4.0]);
        let b = Tensor::scalar(1.0f32);
        let mut out = None;
        binary(BinaryOp::Add, &a, &b, &mut out).unwrap();
        let p = out.as_ref().unwrap().as_slice::<f32>().unwrap().as_ptr();
        for _ in 0..3 {
            binary(BinaryOp::Mul, &a, &a, &mut out).unwrap();
            assert_eq!(out.as_ref().unwrap().as_slice::<f32>().unwrap().as_ptr(), p);
        }
        assert_eq!(out.as_ref().unwrap().as_slice::<f32>().unwrap(), &[1.0, 4.0, 9.0, 16.0]);
        // A shared out buffer is not written through.
        let keep = out.clone().unwrap();
        binary(BinaryOp::Add, &a, &a, &mut out).unwrap();
        assert_eq!(keep.as_slice::<f32>().unwrap(), &[1.0, 4.0, 9.0, 16.0]);
        assert!(!keep.shares_buffer(out.as_ref().unwrap()));
        // Scalars too.
        let mut s = None;
        binary(BinaryOp::Add, &b, &b, &mut s).unwrap();
        let p = s.as_ref().unwrap().as_slice::<f32>().unwrap().as_ptr();
        binary(BinaryOp::Sub, &b, &b, &mut s).unwrap();
        assert_eq!(s.as_ref().unwrap().as_slice::<f32>().unwrap().as_ptr(), p);
    }

    #[test]
    fn large_binary_runs_parallel_and_correct() {
        let n = PAR_THRESHOLD * 2 + 3;
        let a = t(&[n], (0..n as i64).collect::<Vec<_>>());
        let r = bin(BinaryOp::Mul, &a, &a).unwrap();
        assert!(r.as_slice::<i64>().unwrap().iter().enumerate().all(|(i, &x)| x == (i * i) as i64));
        let r = bin(BinaryOp::Add, &a, &Tensor::scalar(1i64)).unwrap();
        assert_eq!(r.as_slice::<i64>().unwrap()[n - 1], n as i64);
    }

    #[test]
    fn select_broadcasts() {
        let c = t(&[2, 1], vec![true, false]);
        let a = t(&[3], vec![1i32, 2, 3]);
        let b = Tensor::scalar(0i32);
        let mut out = None;
        select(&c, &a, &b, &mut out).unwrap();
        let r = out.unwrap();
        assert_eq!((r.shape(), r.as_slice::<i32>().unwrap()), (&[2, 3][..], &[1, 2, 3, 0, 0, 0][..]));
        let mut out = None;
        select(&Tensor::scalar(false), &a, &b, &mut out).unwrap();
        assert_eq!(out.unwrap().as_slice::<i32>().unwrap(), &[0, 0, 0]);
        let mut out = None;
        let c = t(&[3], vec![true, false, true]);
        select(&c, &a, &t(&[3], vec![7i32, 8, 9]), &mut out).unwrap();
        assert_eq!(out.unwrap().as_slice::<i32>().unwrap(), &[1, 8, 3]);
        let mut out = None;
        assert!(select(&a, &a, &a, &mut out).is_err());
        assert!(select(&c, &a, &Tensor::scalar(0.0f32), &mut out).is_err());
        assert!(select(&t(&[2], vec![true, true]), &a, &a, &mut out).is_err());
    }

    #[test]
    fn casts() {
        let f = t(&[5], vec![f32::NAN, 1e20, -1e20, -2.7, 0.0]);
        let mut out = None;
        cast(&f, DType::I32, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<i32>().unwrap(), &[0, i32::MAX, i32::MIN, -2, 0]);
        cast(&f, DType::Bool, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<bool>().unwrap(), &[true, true, true, true, false]);
        cast(&t(&[2], vec![true, false]), DType::F64, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<f64>().unwrap(), &[1.0, 0.0]);
        cast(&t(&[1], vec![i64::MAX]), DType::I32, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<i32>().unwrap(), &[-1]);
        cast(&f, DType::F32, &mut out).unwrap();
        assert!(out.as_ref().unwrap().shares_buffer(&f));
    }

    #[test]
    fn bitcasts() {
        let mut out = None;
        bitcast(&t(&[3], vec![1.0f32, -0.0, f32::INFINITY]), DType::U32, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<u32>().unwrap(), &[0x3f80_0000, 0x8000_0000, 0x7f80_0000]);
        bitcast(&t(&[2], vec![u32::MAX, 0x3f80_0000]), DType::I32, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<i32>().unwrap(), &[-1, 0x3f80_0000]);
        bitcast(&t(&[2], vec![-f32::NAN, f32::from_bits(0x7f80_0001)]), DType::U32, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<u32>().unwrap(), &[CANONICAL_NAN_F32; 2]);
        bitcast(&t(&[1], vec![-1i64]), DType::F64, &mut out).unwrap();
        assert!(out.as_ref().unwrap().as_slice::<f64>().unwrap()[0].is_nan());
        let e = bitcast(&t(&[1], vec![1i64]), DType::F32, &mut out).unwrap_err();
        assert_eq!(e.message, "bitcast of i64[1] to f32 needs two number dtypes of one element width");
        assert!(bitcast(&t(&[1], vec![true]), DType::Bool, &mut out).is_err());
    }

    #[test]
    fn iota_and_full() {
        let mut out = None;
        iota(DType::I32, 4, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<i32>().unwrap(), &[0, 1, 2, 3]);
        iota(DType::F64, 3, &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().as_slice::<f64>().unwrap(), &[0.0, 1.0, 2.0]);
        assert!(iota(DType::Bool, 3, &mut out).is_err());
        assert!(iota(DType::I32, usize::MAX, &mut out).is_err());
        full(DType::F32, &[2, 2], &Tensor::scalar(1i32), &mut out).unwrap();
        let r = out.as_ref().unwrap();
        assert_eq!((r.shape(), r.as_slice::<f32>().unwrap()), (&[2, 2][..], &[1.0f32; 4][..]));
        full(DType::Bool, &[], &Tensor::scalar(2.5f64), &mut out).unwrap();
        assert_eq!(out.as_ref().unwrap().scalar_bool(), Some(true));
        assert!(full(DType::F32, &[usize::MAX, 2], &Tensor::scalar(1i32), &mut out).is_err());
        assert!(full(DType::F32, &[2], &t(&[2], vec![1i32, 2]), &mut out).is_err());
    }
}
