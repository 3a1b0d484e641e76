//! Functions native code calls for what Cranelift has no instruction for:
//! transcendental functions, float remainder and power, integer power.
//!
//! Each calls the interpreter's scalar function for one element
//! (`runtime/src/kernels/num.rs`), so both tiers agree bit for bit. They
//! are plain `extern "C"` functions that neither panic nor unwind; the
//! lowering calls them by address.

use loopvm_runtime::kernels::{Float, Num};
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
    exp_f32(x): f32 => <f32 as Float>::exp;
    exp_f64(x): f64 => <f64 as Float>::exp;
    log_f32(x): f32 => <f32 as Float>::ln;
    log_f64(x): f64 => <f64 as Float>::ln;
    tanh_f32(x): f32 => <f32 as Float>::tanh;
    tanh_f64(x): f64 => <f64 as Float>::tanh;
    sin_f32(x): f32 => <f32 as Float>::sin;
    sin_f64(x): f64 => <f64 as Float>::sin;
    cos_f32(x): f32 => <f32 as Float>::cos;
    cos_f64(x): f64 => <f64 as Float>::cos;
    sigmoid_f32(x): f32 => <f32 as Float>::sigmoid;
    sigmoid_f64(x): f64 => <f64 as Float>::sigmoid;
    erf_f32(x): f32 => <f32 as Float>::erf;
    erf_f64(x): f64 => <f64 as Float>::erf;
    rem_f32(a, b): f32 => <f32 as Num>::rem;
    rem_f64(a, b): f64 => <f64 as Num>::rem;
    pow_f32(a, b): f32 => <f32 as Num>::pow;
    pow_f64(a, b): f64 => <f64 as Num>::pow;
    pow_i32(a, b): i32 => <i32 as Num>::pow;
    pow_i64(a, b): i64 => <i64 as Num>::pow;
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
    /// Why the code stopped early: [`STOP_STEPS`], [`STOP_TIME`] or 0.
    pub stop: u8,
    /// Where `print` writes: a live `*mut Printer` for the duration of the
    /// call, or null (prints are dropped).
    pub printer: *mut std::ffi::c_void,
}

/// What [`print`] needs from the host: the output (the interpreter's) and
/// the operand types of each print site of the running code.
pub(crate) struct Printer<'a> {
    pub out: &'a mut dyn std::io::Write,
    pub sites: &'a [Vec<crate::cranelift::lower::TType>],
}

/// The code ran out of steps (`budget` spent and one more iteration begun).
pub(crate) const STOP_STEPS: u8 = 1;
/// The deadline passed.
pub(crate) const STOP_TIME: u8 = 2;

impl NativeMeter {
    /// A meter allowing `budget` iterations until `deadline`.
    pub fn new(budget: u64, deadline: Option<Instant>) -> NativeMeter {
        let first = budget.min(Meter::CHUNK);
        NativeMeter { fuel: first as i64, granted: first, budget, deadline, stop: 0, printer: std::ptr::null_mut() }
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
    if m.deadline.is_some_and(|d| Instant::now() > d) {
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

/// The address of [`print`].
pub(crate) fn print_addr() -> usize {
    print as extern "C" fn(*mut NativeMeter, i64, *const *const u8) -> i64 as usize
}

/// The address of [`refuel`].
pub(crate) fn refuel_addr() -> usize {
    refuel as extern "C" fn(*mut NativeMeter) -> i64 as usize
}

/// The address of the function computing unary `op` on one `dtype`
/// element, for the ops lowered as calls; `None` for the ops Cranelift
/// computes with its own instructions (the match is exhaustive: a new op
/// must say which it is).
pub(crate) fn unary(op: UnaryOp, dtype: DType) -> Option<usize> {
    let (f32s, f64s): (extern "C" fn(f32) -> f32, extern "C" fn(f64) -> f64) = match op {
        UnaryOp::Exp => (exp_f32, exp_f64),
        UnaryOp::Log => (log_f32, log_f64),
        UnaryOp::Tanh => (tanh_f32, tanh_f64),
        UnaryOp::Sin => (sin_f32, sin_f64),
        UnaryOp::Cos => (cos_f32, cos_f64),
        UnaryOp::Sigmoid => (sigmoid_f32, sigmoid_f64),
        UnaryOp::Erf => (erf_f32, erf_f64),
        UnaryOp::Neg | UnaryOp::Not | UnaryOp::Sqrt | UnaryOp::Relu | UnaryOp::Abs | UnaryOp::Rsqrt => return None,
    };
    let (f32s, f64s) = (Some(f32s), Some(f64s));
    match dtype {
        DType::F32 => f32s.map(|f| f as usize),
        DType::F64 => f64s.map(|f| f as usize),
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
    }

    #[test]
    fn every_call_op_has_an_address() {
        for op in
            [UnaryOp::Exp, UnaryOp::Log, UnaryOp::Tanh, UnaryOp::Sin, UnaryOp::Cos, UnaryOp::Sigmoid, UnaryOp::Erf]
        {
            assert!(unary(op, DType::F32).is_some() && unary(op, DType::F64).is_some());
        }
        assert_eq!(erf_f64(0.5), <f64 as Float>::erf(0.5));
        assert!(unary(UnaryOp::Neg, DType::F32).is_none());
        assert!(binary(BinaryOp::Pow, DType::I64).is_some());
        assert!(binary(BinaryOp::Add, DType::I64).is_none());
    }
}
