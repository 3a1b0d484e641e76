//! Runtime errors: each names the op, says what kind of failure it is and
//! describes its operands.

use crate::DType;
use std::fmt;

/// What kind of failure a [`RuntimeError`] is, for hosts that must tell them
/// apart (the message says the same in words).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeErrorKind {
    /// An operand has the wrong dtype, or two operands' dtypes disagree.
    DTypeMismatch,
    /// An operand has the wrong shape or rank, or shapes do not broadcast.
    ShapeMismatch,
    /// An index, an axis or a slice bound is out of range.
    IndexOutOfRange,
    /// A tensor buffer could not be allocated: larger than the ceiling
    /// ([`crate::max_tensor_bytes`]) or refused by the allocator.
    OutOfMemory(Box<OutOfMemory>),
    /// Anything else (an overflow, an undefined op for these operands).
    Other,
}

/// The tensor an out-of-memory error could not allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfMemory {
    /// The dtype of the tensor.
    pub dtype: DType,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its size in bytes (`None`: more than `usize::MAX`).
    pub bytes: Option<usize>,
    /// The ceiling it passed, when it was refused before allocating
    /// (`None`: the allocator failed).
    pub limit: Option<usize>,
}

impl fmt::Display for OutOfMemory {
    /// `f32[100000, 100000] needs 40000000000 bytes, more than ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?} needs ", self.dtype, self.shape)?;
        match self.bytes {
            Some(b) => write!(f, "{b} bytes")?,
            None => f.write_str("more than usize::MAX bytes")?,
        }
        match self.limit {
            Some(l) => {
                write!(f, ", more than the {l} bytes of memory on this machine (the largest tensor allowed)")
            }
            None => f.write_str(", and the allocation failed"),
        }
    }
}

/// An error raised by a kernel or a tensor constructor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeError {
    /// The op that failed (`add`, `matmul`, `npy`).
    pub op: &'static str,
    /// What kind of failure it is.
    pub kind: RuntimeErrorKind,
    /// What went wrong, naming the operands (`lhs: f32[3], rhs: f32[4]`).
    pub message: String,
}

impl RuntimeError {
    /// A new error for `op`; its kind is read from the message (see
    /// [`RuntimeError::classify`]). Use [`RuntimeError::with_kind`] to say it.
    #[cold]
    pub fn new(op: &'static str, message: impl Into<String>) -> RuntimeError {
        let message = message.into();
        RuntimeError { op, kind: RuntimeError::classify(&message), message }
    }

    /// A new error of `kind` for `op`.
    #[cold]
    pub fn with_kind(op: &'static str, kind: RuntimeErrorKind, message: impl Into<String>) -> RuntimeError {
        RuntimeError { op, kind, message: message.into() }
    }

    /// An out-of-memory error: a tensor of `dtype` and `shape` (`bytes`
    /// large) passed the ceiling `limit`, or the allocator refused it (`None`).
    #[cold]
    pub fn out_of_memory(
        op: &'static str,
        dtype: DType,
        shape: &[usize],
        bytes: Option<usize>,
        limit: Option<usize>,
    ) -> RuntimeError {
        let oom = OutOfMemory { dtype, shape: shape.to_vec(), bytes, limit };
        RuntimeError {
            op,
            message: format!("out of memory: {oom}"),
            kind: RuntimeErrorKind::OutOfMemory(Box::new(oom)),
        }
    }

    /// The kind of failure a kernel's message describes, for errors made by
    /// [`RuntimeError::new`]: overflows and internal errors are
    /// [`RuntimeErrorKind::Other`]; "dtype mismatch", "requires a ...
    /// operand", "operands required", "must be bool" are dtype errors; "out of range" and "cannot index
    /// empty" index errors; "broadcast", "shape", "rank", "inner
    /// dimensions", "permutation" shape errors; anything else is
    /// [`RuntimeErrorKind::Other`].
    pub fn classify(message: &str) -> RuntimeErrorKind {
        let m = message;
        let has = |s: &str| m.contains(s);
        if has("internal error") || has("overflow") || has("too large") {
            RuntimeErrorKind::Other
        } else if has("dtype mismatch")
            || (has(" requires ") && has(" operand"))
            || has("must be bool")
            || has("requires a numeric")
            || has("operands required")
        {
            RuntimeErrorKind::DTypeMismatch
        } else if has("out of range") || has("cannot index empty") {
            RuntimeErrorKind::IndexOutOfRange
        } else if has("broadcast")
            || has("cannot reshape")
            || has("shape")
            || has("rank")
            || has("inner dimensions")
            || has("permutation")
        {
            RuntimeErrorKind::ShapeMismatch
        } else {
            RuntimeErrorKind::Other
        }
    }

    /// `true` for an out-of-memory error.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self.kind, RuntimeErrorKind::OutOfMemory(_))
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in {}: {}", self.op, self.message)
    }
}

impl std::error::Error for RuntimeError {}
