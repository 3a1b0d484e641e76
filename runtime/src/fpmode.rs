//! The floating-point mode programs run in: subnormal numbers are flushed
//! to zero, both as results (FTZ) and as operands (DAZ).
//!
//! XLA runs every CPU executable in this mode (its PJRT CPU client sets it
//! around each execution, as TensorFlow and JAX on CPU do), and GPUs flush
//! f32 subnormals too. For the tiers to agree, the interpreter and native
//! code run in the same mode: [`flush_subnormals`] sets it around a run, and
//! kernels that fan out to the rayon pool carry the caller's mode to the
//! workers ([`current`], [`with_mode`]). Only arithmetic, comparisons and
//! conversions are affected; moves, `neg` and `abs` (sign-bit operations),
//! selects and indexing keep a subnormal's bits, on every tier alike.
//!
//! The mode is a per-thread register (MXCSR on x86-64, FPCR on aarch64);
//! on other targets these functions change nothing and subnormals are kept.
//!
//! Rust code assumes the default floating-point environment; the kernels
//! only compute on run-time data, which the compiler cannot fold, so the
//! mode reaches them as it reaches XLA's and Cranelift's code.

/// `x` as an arithmetic instruction reads it in the thread's mode: a
/// subnormal becomes a signed zero when the mode flushes, else `x` is kept.
/// For functions libm computes on the bits, which the mode does not reach
/// (`fmod`, `powf`, `log`: the kernels in `kernels/num.rs`).
///
/// Only a subnormal takes the multiply, kept opaque to the optimiser
/// (which would fold `x * 1.0`), so the common case costs one compare.
#[inline]
pub fn as_flushed<T: Flushable>(x: T) -> T {
    if x.is_subnormal_value() {
        x * std::hint::black_box(T::ONE)
    } else {
        x
    }
}

/// The float types [`as_flushed`] takes.
pub trait Flushable: Copy + std::ops::Mul<Output = Self> {
    /// `1.0`.
    const ONE: Self;
    /// `true` for a subnormal (neither zero nor normal).
    fn is_subnormal_value(self) -> bool;
}

impl Flushable for f32 {
    const ONE: f32 = 1.0;
    #[inline]
    fn is_subnormal_value(self) -> bool {
        self.is_subnormal()
    }
}

impl Flushable for f64 {
    const ONE: f64 = 1.0;
    #[inline]
    fn is_subnormal_value(self) -> bool {
        self.is_subnormal()
    }
}

/// A saved floating-point control register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloatMode(u64);

#[cfg(target_arch = "x86_64")]
mod reg {
    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    pub const FLUSH: u64 = 0x8040;

    pub fn get() -> u64 {
        let mut v: u32 = 0;
        // SAFETY: `stmxcsr` stores the 32-bit MXCSR register into `v`, a
        // live, aligned local; it changes no other state.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
        u64::from(v)
    }

    pub fn set(v: u64) {
        let v = v as u32;
        // SAFETY: `ldmxcsr` loads MXCSR from `v`, a value read by `get`
        // with at most the FTZ and DAZ bits added (both valid on every
        // x86-64 CPU); no reserved bit is set, so it cannot fault.
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, preserves_flags, readonly)) };
    }
}

#[cfg(target_arch = "aarch64")]
mod reg {
    /// FPCR's flush-to-zero bit (FZ, bit 24): inputs and results.
    pub const FLUSH: u64 = 1 << 24;

    pub fn get() -> u64 {
        let v: u64;
        // SAFETY: reading FPCR has no side effect.
        unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }

    pub fn set(v: u64) {
        // SAFETY: writes FPCR with a value read by `get`, at most with FZ
        // added; FZ is defined on every aarch64 CPU.
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod reg {
    pub const FLUSH: u64 = 0;
    pub fn get() -> u64 {
        0
    }
    pub fn set(_: u64) {}
}

/// The calling thread's mode.
pub fn current() -> FloatMode {
    FloatMode(reg::get())
}

/// `true` when `m` flushes subnormals.
pub fn flushes(m: FloatMode) -> bool {
    reg::FLUSH != 0 && m.0 & reg::FLUSH == reg::FLUSH
}

/// Restores the saved register on drop (also when `f` unwinds).
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        reg::set(self.0);
    }
}

/// Runs `f` in mode `m` on this thread, then restores the thread's mode.
pub fn with_mode<R>(m: FloatMode, f: impl FnOnce() -> R) -> R {
    let saved = reg::get();
    if saved == m.0 {
        return f();
    }
    let _restore = Restore(saved);
    reg::set(m.0);
    f()
}

/// Runs `f` with subnormals flushed to zero (results and operands), then
/// restores the thread's mode.
pub fn flush_subnormals<R>(f: impl FnOnce() -> R) -> R {
    with_mode(FloatMode(reg::get() | reg::FLUSH), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_inside_and_restores_after() {
        let tiny = std::hint::black_box(1e-40f32);
        let before = current();
        let (inside, sum) = flush_subnormals(|| (flushes(current()), std::hint::black_box(tiny) + 0.0));
        assert_eq!(current(), before);
        if reg::FLUSH != 0 {
            assert!(inside);
            assert_eq!(sum, 0.0, "a subnormal operand reads as zero");
            assert!(std::hint::black_box(tiny) > 0.0, "outside, subnormals are kept");
        }
    }

    #[test]
    fn as_flushed_follows_the_mode() {
        let tiny = std::hint::black_box(1e-40f32);
        assert_eq!(as_flushed(tiny), tiny);
        assert_eq!(as_flushed(-5e-324f64), -5e-324);
        if reg::FLUSH != 0 {
            let (a, b) = flush_subnormals(|| (as_flushed(tiny), as_flushed(-5e-324f64)));
            assert_eq!(a.to_bits(), 0);
            assert_eq!(b.to_bits(), (-0.0f64).to_bits());
        }
        assert_eq!(flush_subnormals(|| as_flushed(1.5f32)), 1.5);
    }

    #[test]
    fn with_mode_carries_a_mode_to_another_thread() {
        let m = flush_subnormals(current);
        let on_worker = std::thread::spawn(move || with_mode(m, || flushes(current()))).join().unwrap();
        assert_eq!(on_worker, reg::FLUSH != 0);
    }
}
