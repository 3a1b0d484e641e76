//! Source spans and diagnostics.
//!
//! Every error the frontend reports is a [`Diagnostic`]: a message, a primary
//! span (rendered with carets), optional secondary labels and notes. A
//! [`CompileError`] carries them with the file name and renders them with
//! `codespan-reporting`, without colour.

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;
use std::fmt;

/// A byte range `start..end` in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        let s = u32::try_from(start).unwrap_or(u32::MAX);
        let e = u32::try_from(end).unwrap_or(u32::MAX);
        Span { start: s, end: e.max(s) }
    }
    /// The smallest span covering `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
    /// An empty span at the end of `self`.
    pub fn end_point(self) -> Span {
        Span { start: self.end, end: self.end }
    }
}

/// A secondary label: a span with a short message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What.
    pub message: String,
}

/// One error: a message, the place it points at, labels and notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The headline (`dtype mismatch in add: lhs f32[4], rhs i32[4]`).
    pub message: String,
    /// The primary place.
    pub span: Span,
    /// Text under the primary carets (may be empty).
    pub primary_label: String,
    /// Secondary places.
    pub labels: Vec<Label>,
    /// Notes and suggestions printed after the source excerpt.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic with a message at `span`.
    pub fn new(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
            primary_label: String::new(),
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }
    /// Sets the text under the primary carets.
    pub fn with_primary(mut self, label: impl Into<String>) -> Diagnostic {
        self.primary_label = label.into();
        self
    }
    /// Adds a secondary label.
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into() });
        self
    }
    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}

/// The result type used inside the frontend.
pub type DResult<T> = Result<T, Box<Diagnostic>>;

/// Builds an `Err` holding one diagnostic.
pub fn err<T>(message: impl Into<String>, span: Span) -> DResult<T> {
    Err(Box::new(Diagnostic::new(message, span)))
}

/// A failed compilation: the diagnostics, with the file name and positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// The file name given to [`crate::compile`].
    pub file_name: String,
    /// The diagnostics (at least one).
    pub diagnostics: Vec<Diagnostic>,
    /// 1-based (line, column) of each diagnostic's primary span, in order.
    locations: Vec<(usize, usize)>,
}

impl CompileError {
    /// Builds an error from diagnostics, computing their line and column in `source`.
    pub fn new(file_name: &str, source: &str, diagnostics: Vec<Diagnostic>) -> CompileError {
        let locations = diagnostics.iter().map(|d| line_col(source, d.span.start as usize)).collect();
        CompileError { file_name: file_name.to_string(), diagnostics, locations }
    }

    /// The first diagnostic's message.
    pub fn message(&self) -> &str {
        self.diagnostics.first().map_or("compilation failed", |d| d.message.as_str())
    }

    /// 1-based line and column of the first diagnostic.
    pub fn first_location(&self) -> Option<(usize, usize)> {
        self.locations.first().copied()
    }

    /// Renders every diagnostic as `error: ...` with the file, line, column,
    /// the source line and carets (plain text, no colour).
    pub fn render(&self, source: &str) -> String {
        let file = SimpleFile::new(self.file_name.as_str(), source);
        let config = term::Config::default();
        let mut out = String::new();
        for (i, d) in self.diagnostics.iter().enumerate() {
            let clamp = |s: Span| {
                let n = source.len();
                let mut a = (s.start as usize).min(n);
                let mut b = (s.end as usize).min(n).max(a);
                while a > 0 && !source.is_char_boundary(a) {
                    a -= 1;
                }
                while b < n && !source.is_char_boundary(b) {
                    b += 1;
                }
                a..b
            };
            let mut labels = vec![cs::Label::primary((), clamp(d.span)).with_message(d.primary_label.clone())];
            for l in &d.labels {
                labels.push(cs::Label::secondary((), clamp(l.span)).with_message(l.message.clone()));
            }
            let diag =
                cs::Diagnostic::error().with_message(d.message.clone()).with_labels(labels).with_notes(d.notes.clone());
            match term::emit_into_string(&config, &file, &diag) {
                Ok(s) => out.push_str(&s),
                Err(_) => {
                    let (l, c) = self.locations.get(i).copied().unwrap_or((1, 1));
                    out.push_str(&format!("error: {}\n  --> {}:{}:{}\n", d.message, self.file_name, l, c));
                }
            }
        }
        out
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first_location() {
            Some((l, c)) => write!(f, "{}:{}:{}: {}", self.file_name, l, c, self.message()),
            None => write!(f, "{}: {}", self.file_name, self.message()),
        }
    }
}

impl std::error::Error for CompileError {}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, ch) in source.char_indices() {
        if i >= offset {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}
