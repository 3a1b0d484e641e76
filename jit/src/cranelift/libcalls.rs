//! Functions native code calls for what Cranelift has no instruction for:
//! transcendental functions, float remainder and power, integer power.
//!
//! Each calls the interpreter's scalar function for one element
//! (`runtime/src/kernels/num.rs`), so both tiers agree bit for bit. They
//! are plain `extern "C"` functions that neither panic nor unwind; the
//! lowering calls them by address.

use loopvm_runtime::kernels::{float_unary_scalar, Float, Num};
use loopvm_runtime::{BinaryOp, DType, Tensor, UnaryOp};
use loopvm_vm::Meter;
use std::time::Instant;

/// `extern "C"` wrappers of the kernels' scalar functions.
macro_rules! libcall {
    ($($name:ident($($a:ident),+): $t:ty => $f:expr;)*) => {
        $(
            extern "C" fn $name($($a: $t),+) -> $t {
                $f($($a),+)
            }
        )*
    };
}

libcall! {
    rem_f32(a, b): f32 => <f32 as Num>::rem;
    rem_f64(a, b): f64 => <f64 as Num>::rem;
    pow_f32(a, b): f32 => <f32 as Num>::pow;
    pow_f64(a, b): f64 => <f64 as Num>::pow;
    pow_i32(a, b): i32 => <i32 as Num>::pow;
    pow_i64(a, b): i64 => <i64 as Num>::pow;
    pow_u32(a, b): u32 => <u32 as Num>::pow;
    pow_u8(a, b): u8 => <u8 as Num>::pow;
}

/// What metered native code counts against (`lower`'s module docs): the
/// fuel it may spend (offset 0, read and written by the code) and what the
/// host needs to grant more.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct NativeMeter {
    /// Iterations the code may still run; written back on a normal return.
    pub fuel: i64,
    /// Iterations granted so far (the first grant included).
    pub granted: u64,
    /// Iterations allowed to this call before the step limit fails the run.
    pub budget: u64,
    /// When the run's time is up.
    pub deadline: Option<Instant>,
    /// The run's cancel flag.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Why the code stopped early: [`STOP_STEPS`], [`STOP_TIME`] or 0.
    pub stop: u8,
    /// Where `print` writes: a live `*mut Printer` for the duration of the
    /// call, or null (prints are dropped).
    pub printer: *mut std::ffi::c_void,
    /// The compiled loop's scratch memory (the buffers of its values of more
    /// than `MAX_ELEMS` elements), set by `NativeLoop::run`; read by the
    /// code once, on entry.
    pub scratch: *mut u8,
}

/// The offset of [`NativeMeter::scratch`], where the code reads it.
pub(crate) const SCRATCH_OFFSET: i32 = std::mem::offset_of!(NativeMeter, scratch) as i32;

/// What [`print`] needs from the host: the output (the interpreter's) and
/// the operand types of each print site of the running code.
pub(crate) struct Printer<'a> {
    pub out: &'a mut dyn std::io::Write,
    pub sites: &'a [Vec<crate::cranelift::lower::TType>],
}

/// The code ran out of steps (`budget` spent and one more iteration begun).
pub(crate) const STOP_STEPS: u8 = 1;
/// The deadline passed, or the run was cancelled.
pub(crate) const STOP_TIME: u8 = 2;

impl NativeMeter {
    /// A meter allowing `budget` iterations until `deadline`.
    pub fn new(budget: u64, deadline: Option<Instant>) -> NativeMeter {
        let first = budget.min(Meter::CHUNK);
        NativeMeter {
            fuel: first as i64,
            granted: first,
            budget,
            deadline,
            cancel: None,
            stop: 0,
            printer: std::ptr::null_mut(),
            scratch: std::ptr::null_mut(),
        }
    }

    /// Iterations the code ran (after a normal return).
    pub fn used(&self) -> u64 {
        self.granted.saturating_sub(u64::try_from(self.fuel).unwrap_or(0))
    }
}

/// Called by metered code when its fuel is spent: grants up to
/// [`Meter::CHUNK`] more iterations, or returns 0 (and says why in `stop`)
/// when the budget is spent or the deadline has passed.
extern "C" fn refuel(m: *mut NativeMeter) -> i64 {
    // SAFETY: metered code passes on the pointer `NativeLoop::run` gave it,
    // to a `NativeMeter` that the host holds mutably borrowed (and touches
    // not at all) for the duration of the call; null is checked.
    let Some(m) = (unsafe { m.as_mut() }) else { return 0 };
    if m.granted >= m.budget {
        m.stop = STOP_STEPS;
        return 0;
    }
    let cancelled = m.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed));
    if cancelled || m.deadline.is_some_and(|d| Instant::now() > d) {
        m.stop = STOP_TIME;
        return 0;
    }
    let g = (m.budget - m.granted).min(Meter::CHUNK);
    m.granted += g;
    g as i64
}

/// Called by native code for `print(...)` at print site `site`: `ptrs[k]`
/// points at the elements of operand `k`, whose type the printer's `sites`
/// give. Writes the line the interpreter would (`loopvm_vm::print_line`).
/// Returns 0; never unwinds.
extern "C" fn print(m: *mut NativeMeter, site: i64, ptrs: *const *const u8) -> i64 {
    let body = || {
        // SAFETY: native code passes on the meter pointer `NativeLoop::run`
        // gave it (null checked), whose `printer` is null or a live
        // `Printer` that the host does not touch during the call.
        let Some(m) = (unsafe { m.as_mut() }) else { return };
        // SAFETY: as above.
        let Some(p) = (unsafe { m.printer.cast::<Printer<'_>>().as_mut() }) else { return };
        let Some(types) = usize::try_from(site).ok().and_then(|s| p.sites.get(s)) else { return };
        let mut parts = Vec::with_capacity(types.len());
        for (k, t) in types.iter().enumerate() {
            // SAFETY: the code stored one pointer per operand of this site
            // in `ptrs`, each at `t.numel()` elements of `t.dtype`, live and
            // aligned (stack slots and tensor buffers) for the call.
            let tensor = unsafe {
                let src = *ptrs.add(k);
                loopvm_runtime::with_dtype!(t.dtype, T => {
                    let xs = std::slice::from_raw_parts(src.cast::<T>(), t.numel()).to_vec();
                    Tensor::from_vec(&t.shape, xs)
                })
            };
            match tensor {
                Ok(x) => parts.push(x),
                Err(_) => return,
            }
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        let mut line = loopvm_vm::print_line(&refs);
        line.push('\n');
        let _ = p.out.write_all(line.as_bytes());
    };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    0
}

/// Copies `n` bytes from `src` to `dst` (which may overlap): a loop carry
/// of more than `MAX_ELEMS` elements taking its next value.
extern "C" fn copy_bytes(dst: *mut u8, src: *const u8, n: usize) {
    if n > 0 && dst.cast_const() != src {
        // SAFETY: native code passes two buffers of at least `n` bytes (a
        // carry's scratch slot and a value of the carry's type).
        unsafe { std::ptr::copy(src, dst, n) }
    }
}

/// The address of [`copy_bytes`].
pub(crate) fn copy_addr() -> usize {
    copy_bytes as extern "C" fn(*mut u8, *const u8, usize) as usize
}

/// The address of the runtime's buffer kernels' entry
/// ([`loopvm_runtime::kernels::native::run_buffer_kernel`]).
pub(crate) fn buffer_kernel_addr() -> usize {
    use loopvm_runtime::kernels::native::{run_buffer_kernel, BufferKernel};
    run_buffer_kernel as unsafe extern "C" fn(*const BufferKernel, *const u8, *const u8, *mut u8) as usize
}

/// The address of [`print`].
pub(crate) fn print_addr() -> usize {
    print as extern "C" fn(*mut NativeMeter, i64, *const *const u8) -> i64 as usize
}

/// The address of [`refuel`].
pub(crate) fn refuel_addr() -> usize {
    refuel as extern "C" fn(*mut NativeMeter) -> i64 as usize
}

/// Float unary op number `TAG` of one element: the kernel's scalar
/// function ([`float_unary_scalar`]), the op fixed at compile time.
extern "C" fn unary_call<T: Float, const TAG: u8>(x: T) -> T {
    match UnaryOp::from_tag(TAG) {
        Some(op) => float_unary_scalar(op, x),
        None => T::NAN,
    }
}

/// One `unary_call` instance per possible tag, for `f32` and `f64`.
macro_rules! unary_calls {
    ($($tag:literal)*) => {
        const UNARY_F32: &[extern "C" fn(f32) -> f32] = &[$(unary_call::<f32, $tag>,)*];
        const UNARY_F64: &[extern "C" fn(f64) -> f64] = &[$(unary_call::<f64, $tag>,)*];
    };
}
unary_calls!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
const _: () = assert!(UnaryOp::ALL.len() <= UNARY_F32.len(), "more unary ops than `unary_calls!` instances");

/// The address of the function computing float unary `op` on one `dtype`
/// element, for the ops the lowering computes as calls (whatever Cranelift
/// has no instruction for): the kernel's own scalar function, so a new
/// op needs nothing here. `None` for a dtype that is not a float.
pub(crate) fn unary(op: UnaryOp, dtype: DType) -> Option<usize> {
    let tag = op as usize;
    match dtype {
        DType::F32 => UNARY_F32.get(tag).map(|f| *f as usize),
        DType::F64 => UNARY_F64.get(tag).map(|f| *f as usize),
        _ => None,
    }
}

/// The address of the function computing binary `op` on two `dtype`
/// elements, for the ops lowered as calls.
pub(crate) fn binary(op: BinaryOp, dtype: DType) -> Option<usize> {
    match (op, dtype) {
        (BinaryOp::Rem, DType::F32) => Some(rem_f32 as extern "C" fn(f32, f32) -> f32 as usize),
        (BinaryOp::Rem, DType::F64) => Some(rem_f64 as extern "C" fn(f64, f64) -> f64 as usize),
        (BinaryOp::Pow, DType::F32) => Some(pow_f32 as extern "C" fn(f32, f32) -> f32 as usize),
        (BinaryOp::Pow, DType::F64) => Some(pow_f64 as extern "C" fn(f64, f64) -> f64 as usize),
        (BinaryOp::Pow, DType::I32) => Some(pow_i32 as extern "C" fn(i32, i32) -> i32 as usize),
        (BinaryOp::Pow, DType::I64) => Some(pow_i64 as extern "C" fn(i64, i64) -> i64 as usize),
        (BinaryOp::Pow, DType::U32) => Some(pow_u32 as extern "C" fn(u32, u32) -> u32 as usize),
        (BinaryOp::Pow, DType::U8) => Some(pow_u8 as extern "C" fn(u8, u8) -> u8 as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuel_grants_up_to_the_budget_then_stops() {
        let mut m = NativeMeter::new(Meter::CHUNK + 5, None);
        assert_eq!(m.fuel as u64, Meter::CHUNK);
        assert_eq!(refuel(&mut m), 5);
        assert_eq!(refuel(&mut m), 0);
        assert_eq!(m.stop, STOP_STEPS);
        let past = Instant::now().checked_sub(std::time::Duration::from_millis(1));
        let mut m = NativeMeter::new(u64::MAX, past);
        assert_eq!(refuel(&mut m), 0);
        assert_eq!(m.stop, STOP_TIME);
        assert_eq!(refuel(std::ptr::null_mut()), 0);
    }

    #[test]
    fn int_pow_matches_xla() {
        assert_eq!(pow_i32(3, 4), 81);
        assert_eq!(pow_i32(2, 31), i32::MIN);
        assert_eq!(pow_i32(2, -1), 0);
        assert_eq!(pow_i32(-1, -5), -1);
        assert_eq!(pow_i64(-3, 3), -27);
        assert_eq!(pow_i64(0, 0), 1);
        assert_eq!(pow_u32(3, 21), 3u32.wrapping_pow(21));
    }

    /// Every float unary op has a call whose result is the kernel's, bit for
    /// bit (NaN for NaN), in f32 and f64; other dtypes have none.
    #[test]
    fn every_float_unary_op_calls_the_kernel() {
        let xs = [0.0, -0.0, 0.5, -0.75, 3.0, 1e-30, -1e30, f64::INFINITY, f64::NAN];
        for &op in UnaryOp::ALL.iter().filter(|op| op.accepts().accepts(DType::F32)) {
            assert!(unary(op, DType::F32).is_some() && unary(op, DType::F64).is_some(), "{op}");
            for x in xs {
                let (got, want) = (UNARY_F64[op as usize](x), <f64 as Float>::NAN);
                let want = if op == UnaryOp::Not { want } else { float_unary_scalar(op, x) };
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{op}({x}): {got} vs {want}"
                );
                let (got, want) = (UNARY_F32[op as usize](x as f32), float_unary_scalar(op, x as f32));
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{op}({x}): {got} vs {want}"
                );
            }
            assert!(unary(op, DType::I32).is_none() && unary(op, DType::Bool).is_none());
        }
        assert_eq!(UNARY_F64[UnaryOp::Erf as usize](0.5), <f64 as Float>::erf(0.5));
        assert!(UNARY_F32[UnaryOp::Not as usize](1.0).is_nan());
        assert!(binary(BinaryOp::Pow, DType::I64).is_some());
        assert!(binary(BinaryOp::Add, DType::I64).is_none());
    }
}
