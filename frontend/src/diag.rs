//! Source spans and diagnostics.
//!
//! Every error the frontend reports is a [`Diagnostic`]: a message, a primary
//! span (rendered with carets), optional secondary labels and notes. A
//! [`CompileError`] carries them with the file name and renders them with
//! `codespan-reporting`, without colour.

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files;
use codespan_reporting::term;
use std::fmt;
use std::ops::Range;

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
    ///
    /// A source line longer than [`MAX_LINE_CHARS`] characters is shown as a
    /// window around the span labelled on it, with `…` where it is cut; the
    /// file, line and column stay those of the whole source.
    pub fn render(&self, source: &str) -> String {
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
            let primary = clamp(d.span);
            let secondary: Vec<Range<usize>> = d.labels.iter().map(|l| clamp(l.span)).collect();
            let mut focus = vec![primary.clone()];
            focus.extend(secondary.iter().cloned());
            let file = Excerpt::new(&self.file_name, source, &focus);
            let mut labels =
                vec![cs::Label::primary((), file.map_range(&primary)).with_message(d.primary_label.clone())];
            for (l, r) in d.labels.iter().zip(&secondary) {
                labels.push(cs::Label::secondary((), file.map_range(r)).with_message(l.message.clone()));
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

/// The widest source line a rendered diagnostic shows, in characters; a
/// longer one is cut to a window around its label, `…` included.
pub const MAX_LINE_CHARS: usize = 120;

/// The text that marks where a long line is cut.
const CUT: &str = "…";

/// How one long line of the source is shown: the original bytes `from..to`
/// (a window of the line), with a `…` before it when `lead` and after it
/// when `trail`.
#[derive(Clone, Copy, Debug)]
struct Cut {
    from: usize,
    to: usize,
    lead: bool,
    trail: bool,
}

impl Cut {
    fn lead_len(&self) -> usize {
        if self.lead {
            CUT.len()
        } else {
            0
        }
    }
}

/// The source as a diagnostic shows it: long lines cut to windows (one line
/// of the excerpt per line of the source). It reports the lines and columns
/// of the original source, so `file:line:col` stays right.
struct Excerpt<'a> {
    name: &'a str,
    orig: &'a str,
    /// Line starts in `orig`.
    orig_starts: Vec<usize>,
    /// The text shown.
    text: String,
    /// Line starts in `text`.
    starts: Vec<usize>,
    /// The cut of each line, `None` when it is shown whole.
    cuts: Vec<Option<Cut>>,
}

impl<'a> Excerpt<'a> {
    /// Cuts each line of `source` longer than [`MAX_LINE_CHARS`] around the
    /// first of the `focus` ranges (the primary label first) that starts or
    /// ends on it.
    fn new(name: &'a str, source: &'a str, focus: &[Range<usize>]) -> Excerpt<'a> {
        let orig_starts: Vec<usize> = files::line_starts(source).collect();
        let mut text = String::with_capacity(source.len().min(1 << 20));
        let mut starts = Vec::with_capacity(orig_starts.len());
        let mut cuts = Vec::with_capacity(orig_starts.len());
        for (i, &ls) in orig_starts.iter().enumerate() {
            let le = orig_starts.get(i + 1).copied().unwrap_or(source.len());
            let line = &source[ls..le];
            let content = line.trim_end_matches('\n').trim_end_matches('\r');
            let ce = ls + content.len();
            starts.push(text.len());
            // Cheap test first: a line of at most MAX_LINE_CHARS bytes is short.
            if content.len() <= MAX_LINE_CHARS || content.chars().count() <= MAX_LINE_CHARS {
                text.push_str(line);
                cuts.push(None);
                continue;
            }
            // The part of the line to keep in view, as byte offsets in `source`.
            let on_line = |b: usize| (ls..=ce).contains(&b);
            let (fs, fe) = focus
                .iter()
                .find_map(|r| {
                    if on_line(r.start) {
                        Some((r.start, r.end.min(ce)))
                    } else if on_line(r.end) {
                        Some((r.start.max(ls), r.end))
                    } else {
                        None
                    }
                })
                .unwrap_or((ls, ls));
            let cut = window(content, ls, fs, fe);
            if cut.lead {
                text.push_str(CUT);
            }
            text.push_str(&source[cut.from..cut.to]);
            if cut.trail {
                text.push_str(CUT);
            }
            text.push_str(&source[ce..le]);
            cuts.push(Some(cut));
        }
        Excerpt { name, orig: source, orig_starts, text, starts, cuts }
    }

    /// The line of byte `b` of the original source.
    fn orig_line(&self, b: usize) -> usize {
        self.orig_starts.binary_search(&b).unwrap_or_else(|next| next - 1)
    }

    /// Where byte `b` of the original source is in the excerpt; a byte cut
    /// away maps onto the `…` that stands for it (`end`: just after it).
    fn map(&self, b: usize, end: bool) -> usize {
        let i = self.orig_line(b);
        let (ls, ts) = (self.orig_starts[i], self.starts[i]);
        let Some(cut) = self.cuts[i] else { return ts + (b - ls) };
        let kept = ts + cut.lead_len();
        if b < cut.from {
            return if end { kept } else { ts };
        }
        if b <= cut.to {
            return kept + (b - cut.from);
        }
        let after = kept + (cut.to - cut.from);
        if cut.trail {
            after + if end { CUT.len() } else { 0 }
        } else {
            after + (b - cut.to)
        }
    }

    /// A range of the original source as a range of the excerpt.
    fn map_range(&self, r: &Range<usize>) -> Range<usize> {
        let a = self.map(r.start, false);
        let b = self.map(r.end, r.end > r.start).max(a);
        a..b
    }

    /// Where byte `t` of the excerpt's line `line` is in the original source.
    fn unmap(&self, line: usize, t: usize) -> usize {
        let (Some(&ls), Some(&ts)) = (self.orig_starts.get(line), self.starts.get(line)) else {
            return self.orig.len();
        };
        let r = t.saturating_sub(ts);
        let Some(cut) = self.cuts[line] else { return (ls + r).min(self.orig.len()) };
        let Some(r) = r.checked_sub(cut.lead_len()) else { return cut.from };
        let kept = cut.to - cut.from;
        if r <= kept {
            cut.from + r
        } else if cut.trail {
            cut.to
        } else {
            (cut.to + (r - kept)).min(self.orig.len())
        }
    }

    fn range_of(starts: &[usize], len: usize, line: usize) -> Result<Range<usize>, files::Error> {
        let start = match line.cmp(&starts.len()) {
            std::cmp::Ordering::Less => starts[line],
            std::cmp::Ordering::Equal => len,
            std::cmp::Ordering::Greater => {
                return Err(files::Error::LineTooLarge { given: line, max: starts.len().saturating_sub(1) })
            }
        };
        let end = starts.get(line + 1).copied().unwrap_or(len);
        Ok(start..end)
    }
}

impl<'f> files::Files<'f> for Excerpt<'_> {
    type FileId = ();
    type Name = &'f str;
    type Source = &'f str;

    fn name(&'f self, (): ()) -> Result<&'f str, files::Error> {
        Ok(self.name)
    }

    fn source(&'f self, (): ()) -> Result<&'f str, files::Error> {
        Ok(&self.text)
    }

    fn line_index(&'f self, (): (), byte_index: usize) -> Result<usize, files::Error> {
        Ok(self.starts.binary_search(&byte_index).unwrap_or_else(|next| next - 1))
    }

    fn line_range(&'f self, (): (), line_index: usize) -> Result<Range<usize>, files::Error> {
        Excerpt::range_of(&self.starts, self.text.len(), line_index)
    }

    /// The column in the original line, not in the cut one.
    fn column_number(&'f self, (): (), line_index: usize, byte_index: usize) -> Result<usize, files::Error> {
        let orig_range = Excerpt::range_of(&self.orig_starts, self.orig.len(), line_index)?;
        let b = self.unmap(line_index, byte_index);
        Ok(files::column_index(self.orig, orig_range, b) + 1)
    }
}

/// The window of a long line (`content`, starting at byte `ls` of the
/// source) that keeps the focus `fs..fe` in view, with context on both sides:
/// at most `MAX_LINE_CHARS` characters with the `…` marks.
fn window(content: &str, ls: usize, fs: usize, fe: usize) -> Cut {
    // Character offsets in the line of every char boundary, by byte.
    let n = content.chars().count();
    let char_of = |b: usize| content[..(b - ls).min(content.len())].chars().count();
    let byte_of = |c: usize| ls + content.char_indices().nth(c).map_or(content.len(), |(i, _)| i);
    let width = MAX_LINE_CHARS - 2;
    let (cs, ce) = (char_of(fs), char_of(fe).max(char_of(fs)));
    let len = ce - cs;
    let mut left = if len + 20 <= width { cs.saturating_sub((width - len) / 2) } else { cs.saturating_sub(10) };
    let right = (left + width).min(n);
    left = left.min(right.saturating_sub(width));
    Cut { from: byte_of(left), to: byte_of(right), lead: left > 0, trail: right < n }
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
