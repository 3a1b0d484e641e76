//! The one error type of the embedding API and the CLI.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug)]
pub enum ErrorKind {
    /// The source did not parse or type-check; the text is rendered with file, line, column and caret.
    Compile(String),
    /// A bytecode file was malformed or failed verification.
    Bytecode(String),
    /// An argument was missing, malformed or of the wrong type.
    Argument(String),
    /// The program failed while running (names the op and its operands).
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
            ErrorKind::Runtime(m) => write!(f, "error: {m}"),
            ErrorKind::Tier(m) => write!(f, "error: {m}"),
            ErrorKind::Io(m) => write!(f, "error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    #[test]
    fn error_is_one_pointer() {
        assert_eq!(std::mem::size_of::<super::Error>(), std::mem::size_of::<usize>());
    }
}
