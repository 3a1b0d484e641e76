//! Runtime errors: each names the op and describes its operands.

use std::fmt;

/// An error raised by a kernel or a tensor constructor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeError {
    /// The op that failed (`add`, `matmul`, `npy`).
    pub op: &'static str,
    /// What went wrong, naming the operands (`lhs: f32[3], rhs: f32[4]`).
    pub message: String,
}

impl RuntimeError {
    /// A new error for `op`.
    #[cold]
    pub fn new(op: &'static str, message: impl Into<String>) -> RuntimeError {
        RuntimeError { op, message: message.into() }
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in {}: {}", self.op, self.message)
    }
}

impl std::error::Error for RuntimeError {}
