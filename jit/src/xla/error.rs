//! Errors of the XLA tier.

use std::fmt;
use std::path::PathBuf;

/// How to get a plugin; appended to every "no plugin" / "broken plugin" error.
pub(crate) const HOW_TO_GET_A_PLUGIN: &str = "run `loopvm plugin install cpu` (or cuda12, cuda13, \
     tpu) to install one, or set LOOPVM_PJRT_PLUGIN=/path/to/pjrt_plugin.so";

/// A PJRT status code (`PJRT_Error_Code`, the absl status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `CANCELLED` (1).
    Cancelled,
    /// `UNKNOWN` (2), also used for codes this binding does not know.
    Unknown,
    /// `INVALID_ARGUMENT` (3): e.g. a StableHLO syntax or type error.
    InvalidArgument,
    /// `DEADLINE_EXCEEDED` (4).
    DeadlineExceeded,
    /// `NOT_FOUND` (5).
    NotFound,
    /// `ALREADY_EXISTS` (6).
    AlreadyExists,
    /// `PERMISSION_DENIED` (7).
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED` (8): e.g. out of device memory.
    ResourceExhausted,
    /// `FAILED_PRECONDITION` (9).
    FailedPrecondition,
    /// `ABORTED` (10).
    Aborted,
    /// `OUT_OF_RANGE` (11).
    OutOfRange,
    /// `UNIMPLEMENTED` (12), also reported when a plugin leaves an entry of its
    /// function table empty.
    Unimplemented,
    /// `INTERNAL` (13).
    Internal,
    /// `UNAVAILABLE` (14).
    Unavailable,
    /// `DATA_LOSS` (15).
    DataLoss,
    /// `UNAUTHENTICATED` (16).
    Unauthenticated,
}

impl ErrorCode {
    /// The code for a raw `PJRT_Error_Code`; unknown values (and `OK`, which
    /// never accompanies an error) map to [`ErrorCode::Unknown`].
    pub fn from_raw(code: i32) -> ErrorCode {
        match code {
            1 => ErrorCode::Cancelled,
            3 => ErrorCode::InvalidArgument,
            4 => ErrorCode::DeadlineExceeded,
            5 => ErrorCode::NotFound,
            6 => ErrorCode::AlreadyExists,
            7 => ErrorCode::PermissionDenied,
            8 => ErrorCode::ResourceExhausted,
            9 => ErrorCode::FailedPrecondition,
            10 => ErrorCode::Aborted,
            11 => ErrorCode::OutOfRange,
            12 => ErrorCode::Unimplemented,
            13 => ErrorCode::Internal,
            14 => ErrorCode::Unavailable,
            15 => ErrorCode::DataLoss,
            16 => ErrorCode::Unauthenticated,
            _ => ErrorCode::Unknown,
        }
    }

    /// The absl name of the code, e.g. `INVALID_ARGUMENT`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::Aborted => "ABORTED",
            ErrorCode::OutOfRange => "OUT_OF_RANGE",
            ErrorCode::Unimplemented => "UNIMPLEMENTED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::DataLoss => "DATA_LOSS",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error of the XLA tier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XlaError {
    /// A PJRT call failed; `message` is the plugin's own (`PJRT_Error_Message`).
    #[error("PJRT {op} failed ({code}): {message}")]
    Pjrt {
        /// The PJRT entry point that failed, e.g. `PJRT_Client_Compile`.
        op: &'static str,
        /// The plugin's status code.
        code: ErrorCode,
        /// The plugin's message.
        message: String,
    },
    /// No plugin was found where loopvm looks for one.
    #[error("no PJRT plugin found ({searched}); {HOW_TO_GET_A_PLUGIN}")]
    PluginNotFound {
        /// Where loopvm looked, for the message.
        searched: String,
    },
    /// A plugin file exists but could not be used (not loadable, no
    /// `GetPjrtApi`, an incompatible API version, or initialisation failed).
    #[error("PJRT plugin {} is unusable: {reason}; {HOW_TO_GET_A_PLUGIN}", path.display())]
    PluginLoad {
        /// The plugin file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Installing a plugin with pip failed.
    #[error("installing the PJRT {kind} plugin failed: {reason}")]
    Install {
        /// The plugin kind (`cpu`, `cuda12`, ...).
        kind: String,
        /// What went wrong, with pip's output when pip failed.
        reason: String,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An argument was rejected before reaching the plugin (e.g. a host
    /// buffer whose length does not match its shape).
    #[error("{0}")]
    InvalidArgument(String),
    /// A result could not be copied back: its host tensor could not be
    /// allocated (an out-of-memory [`loopvm_runtime::RuntimeError`]).
    #[error("{0}")]
    HostMemory(loopvm_runtime::RuntimeError),
}

impl XlaError {
    /// The PJRT status code, for errors that came from the plugin.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            XlaError::Pjrt { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> XlaError {
        XlaError::Io { context: context.into(), source }
    }
}
