//! The one error type of the embedding API and the CLI.

use loopvm_vm::ExecError;
use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The source did not parse or type-check; the text is rendered with file, line, column and caret.
    Compile(String),
    /// A bytecode file was malformed or failed verification.
    Bytecode(String),
    /// An argument was missing, malformed or of the wrong type.
    Argument(String),
    /// The program failed while running, with its typed cause: a kernel's
    /// error ([`ExecError::Runtime`]: the op and a kind, such as a dtype or
    /// shape mismatch or an index out of range), a limit
    /// ([`ExecError::StepLimit`], [`ExecError::TimeLimit`],
    /// [`ExecError::MemoryLimit`]; see [`Error::is_limit`]), out of memory
    /// ([`ExecError::OutOfMemory`]), or an internal error.
    Exec(ExecError),
    /// A failure around a run that has no typed cause (a result that does
    /// not fit the signature; tiers that disagree).
    Runtime(String),
    /// The requested tier cannot run the program.
    Tier(String),
    /// Reading or writing a file failed.
    Io(String),
}

/// A loopvm error. Boxed so that `Result<T, Error>` stays one pointer wide.
#[derive(Debug)]
pub struct Error {
    kind: Box<ErrorKind>,
}

impl Error {
    /// A new error of `kind`.
    #[cold]
    pub fn new(kind: ErrorKind) -> Error {
        Error { kind: Box::new(kind) }
    }
    /// What kind of error this is.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
    /// The typed cause of a failure while running ([`ErrorKind::Exec`]).
    pub fn exec(&self) -> Option<&ExecError> {
        match &*self.kind {
            ErrorKind::Exec(e) => Some(e),
            _ => None,
        }
    }
    /// `true` when the run hit one of its limits (`--max-steps`,
    /// `--timeout`, `--max-memory`).
    pub fn is_limit(&self) -> bool {
        self.exec().is_some_and(ExecError::is_limit)
    }
    /// `true` when the run could not allocate a tensor.
    pub fn is_out_of_memory(&self) -> bool {
        self.exec().is_some_and(ExecError::is_out_of_memory)
    }
    #[cold]
    pub(crate) fn arg(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Argument(m.into()))
    }
    #[cold]
    pub(crate) fn io(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Io(m.into()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            ErrorKind::Compile(m) => f.write_str(m.trim_end()),
            ErrorKind::Bytecode(m) => write!(f, "error: {m}"),
            ErrorKind::Argument(m) => write!(f, "error: argument: {m}"),
            ErrorKind::Exec(e) => write!(f, "error: {e}"),
            ErrorKind::Runtime(m) => write!(f, "error: {m}"),
            ErrorKind::Tier(m) => write!(f, "error: {m}"),
            ErrorKind::Io(m) => write!(f, "error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ErrorKind::Exec(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ExecError> for Error {
    /// An argument that does not fit is [`ErrorKind::Argument`]; every
    /// other failure while running is [`ErrorKind::Exec`].
    fn from(e: ExecError) -> Error {
        match e {
            ExecError::BadArgument(m) => Error::arg(m),
            e => Error::new(ErrorKind::Exec(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_one_pointer() {
        assert_eq!(std::mem::size_of::<super::Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn exec_errors_keep_their_cause() {
        let e = Error::from(ExecError::StepLimit { max: 10 });
        assert!(e.is_limit() && !e.is_out_of_memory());
        assert_eq!(e.to_string(), "error: step limit exceeded: more than 10 loop iterations (--max-steps)");
        assert!(std::error::Error::source(&e).is_some());
        let e = Error::from(ExecError::BadArgument("`x` must be f32".into()));
        assert!(matches!(e.kind(), ErrorKind::Argument(_)) && e.exec().is_none());
        let oom = ExecError::OutOfMemory {
            op: "broadcast_to".into(),
            dtype: loopvm_runtime::DType::F32,
            shape: vec![100000, 100000],
            bytes: Some(40000000000),
            limit: Some(1 << 34),
        };
        let e = Error::from(oom);
        assert!(e.is_out_of_memory() && !e.is_limit());
        assert!(
            e.to_string()
                .starts_with("error: out of memory in broadcast_to: f32[100000, 100000] needs 40000000000 bytes"),
            "{e}"
        );
    }
}
