//! Errors of the bytecode layer.

use loopvm_runtime::{DType, OutOfMemory, RuntimeError, RuntimeErrorKind};
use std::fmt;
use std::time::Duration;

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

/// An error while running bytecode: one variant per outcome a host must
/// tell apart. The texts are the ones the command line prints.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// A kernel failed: `error.op` names the op and `error.kind` says how
    /// (dtype mismatch, shape mismatch, index out of range, other).
    #[error("runtime error in `{func}`: {error}")]
    Runtime {
        /// The function being run.
        func: String,
        /// The failing kernel's error (op, kind and operands).
        error: RuntimeError,
    },
    /// An argument does not fit the function's signature.
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// More than `max` loop iterations ran (`--max-steps`).
    #[error("step limit exceeded: more than {max} loop iterations (--max-steps)")]
    StepLimit {
        /// The limit.
        max: u64,
    },
    /// The run was cancelled through its cancel flag (an embedder's Ctrl-C).
    #[error("interrupted")]
    Interrupted,
    /// The run took longer than `timeout` (`--timeout`).
    #[error("time limit exceeded: the run took more than {timeout:?} (--timeout)")]
    TimeLimit {
        /// The limit.
        timeout: Duration,
    },
    /// A new tensor would have taken the run's tensors past `--max-memory`;
    /// refused before it was allocated.
    #[error(
        "memory limit exceeded: {op} needs {} bytes with {held} bytes held, the limit is {max} (--max-memory)",
        bytes_text(*bytes)
    )]
    MemoryLimit {
        /// What asked for the memory (`broadcast`, `scan ys`).
        op: String,
        /// The bytes it needed (`None`: more than `usize::MAX`).
        bytes: Option<usize>,
        /// The bytes the run held at the time.
        held: usize,
        /// The limit.
        max: usize,
    },
    /// A tensor could not be allocated: larger than the machine's memory
    /// (see `loopvm_runtime::max_tensor_bytes`), or the allocator refused it.
    #[error(
        "out of memory in {op}: {dtype}{shape:?} needs {} bytes, {}",
        bytes_text(*bytes),
        limit.map_or_else(
            || "and the allocation failed".to_string(),
            |l| format!("more than the {l} bytes of memory on this machine (the largest tensor allowed)")
        )
    )]
    OutOfMemory {
        /// The op that needed the tensor.
        op: String,
        /// The tensor's dtype.
        dtype: DType,
        /// The tensor's shape.
        shape: Vec<usize>,
        /// Its size in bytes (`None`: more than `usize::MAX`).
        bytes: Option<usize>,
        /// The ceiling it passed (`None`: the allocator failed).
        limit: Option<usize>,
    },
    /// A broken invariant: unverified bytecode, or a bug in loopvm.
    #[error("{0}")]
    Internal(String),
    /// The program failed another way (calls nested too deep, a back end's
    /// failure).
    #[error("{0}")]
    Other(String),
}

fn bytes_text(b: Option<usize>) -> String {
    b.map_or_else(|| "more than usize::MAX".to_string(), |b| b.to_string())
}

impl ExecError {
    /// The error of a kernel of `func` that failed: [`ExecError::OutOfMemory`]
    /// when it could not allocate, [`ExecError::Runtime`] otherwise.
    #[cold]
    pub fn kernel(func: &str, error: RuntimeError) -> ExecError {
        match error.kind {
            RuntimeErrorKind::OutOfMemory(oom) => {
                let OutOfMemory { dtype, shape, bytes, limit } = *oom;
                ExecError::OutOfMemory { op: error.op.to_string(), dtype, shape, bytes, limit }
            }
            _ => ExecError::Runtime { func: func.to_string(), error },
        }
    }

    /// `true` for a limit the run was given: [`ExecError::StepLimit`],
    /// [`ExecError::TimeLimit`] or [`ExecError::MemoryLimit`].
    pub fn is_limit(&self) -> bool {
        matches!(self, ExecError::StepLimit { .. } | ExecError::TimeLimit { .. } | ExecError::MemoryLimit { .. })
    }

    /// `true` for [`ExecError::OutOfMemory`].
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, ExecError::OutOfMemory { .. })
    }

    /// The kernel error, for [`ExecError::Runtime`].
    pub fn kernel_error(&self) -> Option<&RuntimeError> {
        match self {
            ExecError::Runtime { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_keep_their_kind_and_out_of_memory_its_own_variant() {
        let e = ExecError::kernel("main", RuntimeError::new("add", "dtype mismatch in add, lhs: f32[3], rhs: i32[3]"));
        assert_eq!(e.kernel_error().map(|k| &k.kind), Some(&RuntimeErrorKind::DTypeMismatch));
        assert_eq!(e.to_string(), "runtime error in `main`: in add: dtype mismatch in add, lhs: f32[3], rhs: i32[3]");
        let oom = RuntimeError::out_of_memory(
            "broadcast_to",
            DType::F32,
            &[100000, 100000],
            Some(40000000000),
            Some(1 << 34),
        );
        let want = format!("out of memory in broadcast_to: {}", oom.message.trim_start_matches("out of memory: "));
        let e = ExecError::kernel("main", oom);
        assert!(e.is_out_of_memory() && !e.is_limit());
        assert_eq!(e.to_string(), want);
        assert_eq!(
            want,
            "out of memory in broadcast_to: f32[100000, 100000] needs 40000000000 bytes, more than the 17179869184 \
             bytes of memory on this machine (the largest tensor allowed)"
        );
        let e = ExecError::kernel("main", RuntimeError::out_of_memory("exp", DType::F64, &[2], None, None));
        assert_eq!(
            e.to_string(),
            "out of memory in exp: f64[2] needs more than usize::MAX bytes, and the allocation failed"
        );
        // Small enough to return by value cheaply.
        assert!(std::mem::size_of::<ExecError>() <= 96, "{}", std::mem::size_of::<ExecError>());
    }
}
