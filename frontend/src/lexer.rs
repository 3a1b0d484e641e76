//! The lexer: source text to tokens with spans.
//!
//! Comments run from `#` to the end of the line. Numbers may carry a dtype
//! suffix (`1i64`, `0.5f64`, `1f32`, `7u32`) and `_` separators.

use crate::diag::{err, DResult, Span};
use loopvm_runtime::DType;

/// A token kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A name.
    Ident(String),
    /// An integer literal (no sign) and its suffix, if any.
    Int(u64, Option<DType>),
    /// A float literal and its suffix, if any.
    Float(f64, Option<DType>),
    /// A string literal (`"ij,jk->ik"`), without its quotes; no escapes.
    Str(String),
    /// `fn`
    Fn,
    /// `let`
    Let,
    /// `if`
    If,
    /// `else`
    Else,
    /// `true`
    True,
    /// `false`
    False,
    /// `as`
    As,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// `:`
    Colon,
    /// `->`
    Arrow,
    /// `|`
    Pipe,
    /// `||`
    PipePipe,
    /// `&&`
    AmpAmp,
    /// `&`
    Amp,
    /// `^`
    Caret,
    /// `~`
    Tilde,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `!`
    Bang,
    /// `!=`
    Ne,
    /// `==`
    EqEq,
    /// `=`
    Eq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `**`
    StarStar,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `@`
    At,
    /// `.`
    Dot,
    /// The end of the input.
    Eof,
}

impl Tok {
    /// How the token is named in "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(v, _) => format!("number `{v}`"),
            Tok::Float(v, _) => format!("number `{v}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Eof => "end of input".to_string(),
            t => format!("`{}`", t.text()),
        }
    }

    /// The spelling of a punctuation or keyword token.
    pub fn text(&self) -> &'static str {
        match self {
            Tok::Fn => "fn",
            Tok::Let => "let",
            Tok::If => "if",
            Tok::Else => "else",
            Tok::True => "true",
            Tok::False => "false",
            Tok::As => "as",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Comma => ",",
            Tok::Semi => ";",
            Tok::Colon => ":",
            Tok::Arrow => "->",
            Tok::Pipe => "|",
            Tok::PipePipe => "||",
            Tok::AmpAmp => "&&",
            Tok::Amp => "&",
            Tok::Caret => "^",
            Tok::Tilde => "~",
            Tok::Shl => "<<",
            Tok::Shr => ">>",
            Tok::Bang => "!",
            Tok::Ne => "!=",
            Tok::EqEq => "==",
            Tok::Eq => "=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::StarStar => "**",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::At => "@",
            Tok::Dot => ".",
            Tok::Ident(_) | Tok::Int(..) | Tok::Float(..) | Tok::Str(_) | Tok::Eof => "",
        }
    }
}

/// A token and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// The kind.
    pub tok: Tok,
    /// The source range.
    pub span: Span,
}

/// Splits `src` into tokens; the last one is [`Tok::Eof`].
pub fn lex(src: &str) -> DResult<Vec<Token>> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &src[start..i];
            let tok = match word {
                "fn" => Tok::Fn,
                "let" => Tok::Let,
                "if" => Tok::If,
                "else" => Tok::Else,
                "true" => Tok::True,
                "false" => Tok::False,
                "as" => Tok::As,
                "inf" => Tok::Float(f64::INFINITY, None),
                "nan" => Tok::Float(f64::NAN, None),
                _ => Tok::Ident(word.to_string()),
            };
            out.push(Token { tok, span: Span::new(start, i) });
            continue;
        }
        if c.is_ascii_digit() {
            let (tok, end) = lex_number(src, start)?;
            i = end;
            out.push(Token { tok, span: Span::new(start, i) });
            continue;
        }
        if c == b'"' {
            // A string ends at the next quote on the same line (no escapes).
            let len = src[start + 1..].find(['"', '\n']).filter(|&n| b[start + 1 + n] == b'"');
            let Some(len) = len else {
                return err(
                    "unterminated string (strings end with `\"` on the same line)",
                    Span::new(start, start + 1),
                );
            };
            i = start + len + 2;
            out.push(Token { tok: Tok::Str(src[start + 1..start + 1 + len].to_string()), span: Span::new(start, i) });
            continue;
        }
        let two = if i + 1 < b.len() { Some(b[i + 1]) } else { None };
        let (tok, len) = match (c, two) {
            (b'-', Some(b'>')) => (Tok::Arrow, 2),
            (b'|', Some(b'|')) => (Tok::PipePipe, 2),
            (b'&', Some(b'&')) => (Tok::AmpAmp, 2),
            (b'<', Some(b'<')) => (Tok::Shl, 2),
            (b'>', Some(b'>')) => (Tok::Shr, 2),
            (b'!', Some(b'=')) => (Tok::Ne, 2),
            (b'=', Some(b'=')) => (Tok::EqEq, 2),
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'*', Some(b'*')) => (Tok::StarStar, 2),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b',', _) => (Tok::Comma, 1),
            (b';', _) => (Tok::Semi, 1),
            (b':', _) => (Tok::Colon, 1),
            (b'|', _) => (Tok::Pipe, 1),
            (b'&', _) => (Tok::Amp, 1),
            (b'^', _) => (Tok::Caret, 1),
            (b'~', _) => (Tok::Tilde, 1),
            (b'!', _) => (Tok::Bang, 1),
            (b'=', _) => (Tok::Eq, 1),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'+', _) => (Tok::Plus, 1),
            (b'-', _) => (Tok::Minus, 1),
            (b'*', _) => (Tok::Star, 1),
            (b'/', _) => (Tok::Slash, 1),
            (b'%', _) => (Tok::Percent, 1),
            (b'@', _) => (Tok::At, 1),
            (b'.', _) => (Tok::Dot, 1),
            _ => {
                let ch = src[start..].chars().next().unwrap_or('?');
                let end = start + ch.len_utf8();
                return err(format!("unexpected character `{}`", ch.escape_debug()), Span::new(start, end));
            }
        };
        i += len;
        out.push(Token { tok, span: Span::new(start, i) });
    }
    out.push(Token { tok: Tok::Eof, span: Span::new(b.len(), b.len()) });
    Ok(out)
}

/// Lexes a number starting at `start` (a digit); returns the token and the end offset.
fn lex_number(src: &str, start: usize) -> DResult<(Tok, usize)> {
    let b = src.as_bytes();
    let mut i = start;
    let digits = |i: &mut usize| {
        while *i < b.len() && (b[*i].is_ascii_digit() || b[*i] == b'_') {
            *i += 1;
        }
    };
    digits(&mut i);
    let mut is_float = false;
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        is_float = true;
        i += 1;
        digits(&mut i);
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            is_float = true;
            i = j;
            digits(&mut i);
        }
    }
    let num_end = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    let text: String = src[start..num_end].chars().filter(|c| *c != '_').collect();
    let suffix_text = &src[num_end..i];
    let span = Span::new(start, i);
    let suffix = if suffix_text.is_empty() {
        None
    } else {
        match DType::parse(suffix_text) {
            Some(d) if d != DType::Bool => Some(d),
            _ => {
                return err(format!("invalid suffix `{suffix_text}` on a number"), Span::new(num_end, i)).map_err(|d| {
                    Box::new(d.with_note("number suffixes are i32, i64, u32, u8, f32, f64, bf16 and f16"))
                })
            }
        }
    };
    if is_float || suffix.is_some_and(|d| d.is_float()) {
        if is_float && suffix.is_some_and(|d| d.is_int()) {
            return err(
                format!("a number with a fraction or exponent cannot have the integer suffix `{suffix_text}`"),
                span,
            );
        }
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok((Tok::Float(v, suffix), i)),
            _ => err(format!("float literal `{}` is out of range", &src[start..num_end]), span),
        }
    } else {
        match text.parse::<u64>() {
            Ok(v) => Ok((Tok::Int(v, suffix), i)),
            Err(_) => err(format!("integer literal `{}` is too large", &src[start..num_end]), span),
        }
    }
}
