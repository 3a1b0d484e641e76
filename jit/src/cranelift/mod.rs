//! The Cranelift tier: hot loops promoted to native code.
//!
//! A loop instruction (`fori_loop`, `while_loop` or `scan`) and everything
//! inside it (nested loops, `if`, calls, which are inlined) is lowered from
//! bytecode to one Cranelift function ([`lower`]), compiled into its own
//! code memory ([`native`]) and run in place of the interpreter by
//! [`CraneliftBackend`], which implements [`loopvm_vm::Backend`]:
//!
//! - a loop is promoted when it is hot (its profiler counts reach the
//!   threshold) and its region is eligible; a running loop is promoted
//!   mid-flight at an iteration boundary (on-stack replacement), since its
//!   whole state is its carry;
//! - values live in machine registers: every element of a tensor of at most
//!   [`MAX_ELEMS`] elements with a static shape (so every rank-0 value) is one
//!   native value (`bool` as `i8` 0/1, `i32`, `i64`, `f32`, `f64`); larger
//!   loop-invariant inputs stay in memory and are read where they are, larger
//!   computed values live in buffers of the code's scratch memory, written by
//!   the runtime's buffer kernels (`lower/buffers.rs`: elementwise ops,
//!   broadcasts, casts, reductions, `matmul`; no allocation per iteration);
//!   `scan`'s `ys` are written row by row into their output;
//! - the semantics are the interpreter's, exactly: wrapping integers, XLA's
//!   division and remainder (never a trap), saturating float→integer casts,
//!   NaN-propagating `maximum`/`minimum` with the kernels' tie rules, no fused
//!   multiply-add, transcendental functions through the same Rust `std`
//!   functions the kernels call ([`libcalls`]).
//!
//! A region that cannot be lowered (an op without the `JIT` flag that this
//! lowering does not handle either, a tensor too large for registers, a type
//! error the interpreter will report) is not promoted, and
//! [`CraneliftBackend::reports`] says why; a Cranelift verifier error is such
//! a reason too, with the failing function printed: the loop stays
//! interpreted.
//!
//! ```
//! use loopvm_jit::cranelift::CraneliftBackend;
//! let mut jit = CraneliftBackend::new(1000);
//! // interpreter.set_backend(&mut jit); interpreter.call(main, &args)?;
//! assert!(jit.reports().is_empty());
//! ```

mod backend;
mod libcalls;
mod lower;
mod native;

pub use backend::{CraneliftBackend, LoopReport, LoopTier, DEFAULT_THRESHOLD};
pub use lower::MAX_ELEMS;

use std::fmt;

/// Why a region was not compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    /// The region holds something this tier does not lower (the message
    /// names the op and its operands' types).
    Unsupported(String),
    /// Cranelift's verifier rejected the generated function: a bug in the
    /// lowering. The message holds the errors and the function.
    Verifier(String),
    /// Cranelift failed to set up or to compile the function.
    Codegen(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Unsupported(m) => write!(f, "not lowered: {m}"),
            CompileError::Verifier(m) => write!(f, "Cranelift verifier error (a lowering bug, please report):\n{m}"),
            CompileError::Codegen(m) => write!(f, "Cranelift code generation failed: {m}"),
        }
    }
}

impl std::error::Error for CompileError {}

/// `Err(CompileError::Unsupported(..))` from a format string.
macro_rules! unsupported {
    ($($t:tt)*) => {
        Err($crate::cranelift::CompileError::Unsupported(format!($($t)*)))
    };
}
pub(crate) use unsupported;
