//! Errors of the bytecode layer.

use loopvm_runtime::RuntimeError;
use std::fmt;

/// Malformed bytecode: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the module file.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed bytecode at byte {}: {}", self.offset, self.message)
    }
}
impl std::error::Error for DecodeError {}

/// A module that decodes but breaks a structural rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    /// The function (name) where the problem is.
    pub func: String,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid bytecode in function `{}`: {}", self.func, self.message)
    }
}
impl std::error::Error for VerifyError {}

/// An error while running bytecode.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecError {
    /// A kernel failed.
    Runtime {
        /// The function being run.
        func: String,
        /// The failing kernel's error (op and operands).
        error: RuntimeError,
    },
    /// An argument does not fit the function's signature.
    BadArgument(String),
    /// A limit was hit or the program asked for something impossible.
    Other(String),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Runtime { func, error } => write!(f, "runtime error in `{func}`: {error}"),
            ExecError::BadArgument(m) => write!(f, "bad argument: {m}"),
            ExecError::Other(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for ExecError {}
