//! The parser: tokens to an [`crate::ast::Program`], by recursive descent with
//! precedence climbing for binary operators.
//!
//! Precedence, loosest first: `||`, `&&`, comparisons (not chainable),
//! `+ -`, `* / % @`, `as`, unary `- !`, `**` (right-associative, tighter than
//! unary minus, so `-x ** 2` is `-(x ** 2)`), then postfix calls, indexing
//! and `.at[...]`. Nesting is limited to [`MAX_DEPTH`] levels.

use crate::ast::*;
use crate::diag::{err, DResult, Diagnostic, Span};
use crate::lexer::{lex, Tok, Token};

/// Deepest nesting of expressions, types and patterns the parser accepts.
pub const MAX_DEPTH: usize = 256;

/// Parses a whole source file.
pub fn parse(src: &str) -> DResult<Program> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let mut fns = Vec::new();
    while p.peek() != &Tok::Eof {
        fns.push(p.fn_item()?);
    }
    Ok(Program { fns })
}

/// Parses a single expression (used by tests and tools).
pub fn parse_expr(src: &str) -> DResult<Expr> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let e = p.expr()?;
    if p.peek() != &Tok::Eof {
        return p.unexpected("the end of the expression");
    }
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Binding power of a binary operator token (higher binds tighter). The
/// bit operators sit between the comparisons and `+`, as in Python:
/// `x & 1 == 0` is `(x & 1) == 0`, `a + b << 2` is `(a + b) << 2`.
fn binop(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::PipePipe => (BinOp::Or, 1),
        Tok::AmpAmp => (BinOp::And, 2),
        Tok::EqEq => (BinOp::Eq, 3),
        Tok::Ne => (BinOp::Ne, 3),
        Tok::Lt => (BinOp::Lt, 3),
        Tok::Le => (BinOp::Le, 3),
        Tok::Gt => (BinOp::Gt, 3),
        Tok::Ge => (BinOp::Ge, 3),
        Tok::Pipe => (BinOp::BitOr, 4),
        Tok::Caret => (BinOp::BitXor, 5),
        Tok::Amp => (BinOp::BitAnd, 6),
        Tok::Shl => (BinOp::Shl, 7),
        Tok::Shr => (BinOp::Shr, 7),
        Tok::Plus => (BinOp::Add, 8),
        Tok::Minus => (BinOp::Sub, 8),
        Tok::Star => (BinOp::Mul, 9),
        Tok::Slash => (BinOp::Div, 9),
        Tok::Percent => (BinOp::Rem, 9),
        Tok::At => (BinOp::MatMul, 9),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }
    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.pos + n).map_or(&Tok::Eof, |t| &t.tok)
    }
    fn span(&self) -> Span {
        self.toks.get(self.pos).or(self.toks.last()).map_or(Span::default(), |t| t.span)
    }
    fn prev_span(&self) -> Span {
        self.pos.checked_sub(1).and_then(|i| self.toks.get(i)).map_or(Span::default(), |t| t.span)
    }
    fn bump(&mut self) -> Span {
        let s = self.span();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        s
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }
    fn unexpected<T>(&self, expected: &str) -> DResult<T> {
        if self.peek() == &Tok::Eof {
            return err(format!("unexpected end of input: expected {expected}"), self.span());
        }
        err(format!("expected {expected}, found {}", self.peek().describe()), self.span())
    }
    fn expect(&mut self, t: &Tok) -> DResult<Span> {
        if self.peek() == t {
            Ok(self.bump())
        } else {
            self.unexpected(&format!("`{}`", t.text()))
        }
    }
    /// Expects a closing delimiter, pointing back at the opening one if missing.
    fn expect_close(&mut self, t: &Tok, open: Span) -> DResult<Span> {
        if self.peek() == t {
            return Ok(self.bump());
        }
        let msg = match self.peek() {
            Tok::Eof => format!("unexpected end of input: expected `{}`", t.text()),
            other => format!("expected `{}`, found {}", t.text(), other.describe()),
        };
        let d = Diagnostic::new(msg, self.span()).with_label(open, format!("unclosed `{}` opened here", open_of(t)));
        Err(Box::new(d))
    }
    fn ident(&mut self, what: &str) -> DResult<Ident> {
        if let Tok::Ident(name) = self.peek() {
            let name = name.clone();
            let span = self.bump();
            Ok(Ident { name, span })
        } else {
            self.unexpected(what)
        }
    }
    fn enter(&mut self) -> DResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(format!("expression nested too deeply (more than {MAX_DEPTH} levels)"), self.span());
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn fn_item(&mut self) -> DResult<FnItem> {
        if self.peek() != &Tok::Fn {
            return self.unexpected("`fn`");
        }
        let start = self.bump();
        let name = self.ident("a function name")?;
        let open = self.expect(&Tok::LParen)?;
        let mut params = Vec::new();
        while self.peek() != &Tok::RParen {
            let pname = self.ident("a parameter name")?;
            self.expect(&Tok::Colon)?;
            let ty = self.ty()?;
            params.push(FnParam { name: pname, ty });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect_close(&Tok::RParen, open)?;
        let ret = if self.eat(&Tok::Arrow) { Some(self.ty()?) } else { None };
        if self.peek() != &Tok::LBrace {
            return self.unexpected("`{` to start the function body");
        }
        let body = self.block()?;
        let span = start.to(body.span);
        Ok(FnItem { name, params, ret, body, span })
    }

    fn ty(&mut self) -> DResult<TypeExpr> {
        self.enter()?;
        let r = self.ty_inner();
        self.leave();
        r
    }

    fn ty_inner(&mut self) -> DResult<TypeExpr> {
        if self.peek() == &Tok::LParen {
            let open = self.bump();
            let mut items = Vec::new();
            let mut trailing_comma = false;
            while self.peek() != &Tok::RParen {
                items.push(self.ty()?);
                trailing_comma = self.eat(&Tok::Comma);
                if !trailing_comma {
                    break;
                }
            }
            let close = self.expect_close(&Tok::RParen, open)?;
            if items.len() == 1 && !trailing_comma {
                return Ok(items.remove(0));
            }
            return Ok(TypeExpr::Tuple(items, open.to(close)));
        }
        let dtype = self.ident("a type (a dtype such as `f32`, or a tuple type)")?;
        let mut dims = Vec::new();
        let mut span = dtype.span;
        if self.peek() == &Tok::LBracket {
            let open = self.bump();
            while self.peek() != &Tok::RBracket {
                match self.peek().clone() {
                    Tok::Int(n, None) => {
                        let s = self.bump();
                        dims.push(DimExpr::Known(n, s));
                    }
                    Tok::Ident(_) => dims.push(DimExpr::Var(self.ident("a dimension")?)),
                    _ => return self.unexpected("a dimension (a number or a shape variable)"),
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            span = span.to(self.expect_close(&Tok::RBracket, open)?);
        }
        Ok(TypeExpr::Tensor { dtype, dims, span })
    }

    fn pattern(&mut self) -> DResult<Pattern> {
        self.enter()?;
        let r = self.pattern_inner();
        self.leave();
        r
    }

    fn pattern_inner(&mut self) -> DResult<Pattern> {
        match self.peek() {
            Tok::Ident(n) if n == "_" => Ok(Pattern::Wild(self.bump())),
            Tok::Ident(_) => Ok(Pattern::Name(self.ident("a name")?)),
            Tok::LParen => {
                let open = self.bump();
                let mut items = Vec::new();
                let mut trailing_comma = false;
                while self.peek() != &Tok::RParen {
                    items.push(self.pattern()?);
                    trailing_comma = self.eat(&Tok::Comma);
                    if !trailing_comma {
                        break;
                    }
                }
                let close = self.expect_close(&Tok::RParen, open)?;
                if items.len() == 1 && !trailing_comma {
                    return Ok(items.remove(0));
                }
                Ok(Pattern::Tuple(items, open.to(close)))
            }
            _ => self.unexpected("a pattern (a name, `_` or a tuple pattern)"),
        }
    }

    /// A block `{ stmts; result }`; the current token is `{`.
    fn block(&mut self) -> DResult<Expr> {
        self.enter()?;
        let r = self.block_inner();
        self.leave();
        r
    }

    fn block_inner(&mut self) -> DResult<Expr> {
        let open = self.expect(&Tok::LBrace)?;
        let mut stmts = Vec::new();
        let mut result = None;
        loop {
            match self.peek() {
                Tok::RBrace => break,
                Tok::Eof => break,
                Tok::Let => {
                    let start = self.bump();
                    let pat = self.pattern()?;
                    let ty = if self.eat(&Tok::Colon) { Some(self.ty()?) } else { None };
                    self.expect(&Tok::Eq)?;
                    let value = self.expr()?;
                    let end = self.expect(&Tok::Semi)?;
                    stmts.push(Stmt::Let { pat, ty, value, span: start.to(end) });
                }
                Tok::Semi => {
                    self.bump();
                }
                Tok::If | Tok::LBrace => {
                    let e = self.block_like_stmt()?;
                    if self.eat(&Tok::Semi) {
                        stmts.push(Stmt::Expr(e));
                    } else if self.peek() == &Tok::RBrace || self.peek() == &Tok::Eof {
                        result = Some(Box::new(e));
                        break;
                    } else if matches!(e.kind, ExprKind::If(..) | ExprKind::Block(..)) {
                        // As in Rust, an `if` or a block that starts a statement
                        // ends it: what follows is the next statement.
                        if continues_expr(self.peek()) {
                            return self.operator_after_block_like(&e);
                        }
                        stmts.push(Stmt::Expr(e));
                    } else {
                        return self.unexpected("`;` or `}` after the expression");
                    }
                }
                _ => {
                    let e = self.expr()?;
                    if self.eat(&Tok::Semi) {
                        stmts.push(Stmt::Expr(e));
                    } else if self.peek() == &Tok::RBrace || self.peek() == &Tok::Eof {
                        result = Some(Box::new(e));
                        break;
                    } else {
                        return self.unexpected("`;` or `}` after the expression");
                    }
                }
            }
        }
        let close = self.expect_close(&Tok::RBrace, open)?;
        Ok(Expr { kind: ExprKind::Block(stmts, result), span: open.to(close) })
    }

    /// An expression statement that starts with `if` or `{` (the current
    /// token). As in Rust, the `if` or block is the whole statement: a
    /// following `(`, `[`, `-` or binary operator does not continue it (so
    /// `if c { print(a) }` then `(a + 1.0) * 2.0` are two statements). Only
    /// `.` continues it (`{ x }.at[0].set(1)`), and then the rest is parsed
    /// as a full expression.
    fn block_like_stmt(&mut self) -> DResult<Expr> {
        self.enter()?;
        let r = self.block_like_stmt_inner();
        self.leave();
        r
    }

    fn block_like_stmt_inner(&mut self) -> DResult<Expr> {
        let e = self.primary()?;
        if self.peek() != &Tok::Dot {
            return Ok(e);
        }
        let e = self.postfix_from(e)?;
        let e = self.power_from(e)?;
        let e = self.cast_from(e)?;
        self.binary_from(1, e)
    }

    /// The error for an operator after an `if` or block that ended a
    /// statement (`if c { a } else { b } * 2`): it cannot start the next one.
    fn operator_after_block_like<T>(&self, e: &Expr) -> DResult<T> {
        let (what, example) = if matches!(e.kind, ExprKind::If(..)) {
            ("an `if`", "(if c { a } else { b })")
        } else {
            ("a block", "({ ... })")
        };
        let op = self.peek().text();
        let d = Diagnostic::new(format!("expected an expression, found `{op}`"), self.span())
            .with_label(e.span, format!("{what} at the start of a statement ends the statement"))
            .with_note(format!("to use its value in an expression, wrap it in parentheses: `{example} {op} ...`"));
        Err(Box::new(d))
    }

    /// Parses an expression at the loosest precedence.
    fn expr(&mut self) -> DResult<Expr> {
        self.enter()?;
        let r = self.binary(1);
        self.leave();
        r
    }

    fn binary(&mut self, min: u8) -> DResult<Expr> {
        let lhs = self.cast()?;
        self.binary_from(min, lhs)
    }

    /// The rest of a binary-operator chain whose first operand is `lhs`.
    fn binary_from(&mut self, min: u8, mut lhs: Expr) -> DResult<Expr> {
        // Each operator of a chain nests the tree one level deeper.
        let saved = self.depth;
        while let Some((op, prec)) = binop(self.peek()) {
            if prec < min {
                break;
            }
            self.enter()?;
            let op_span = self.bump();
            let rhs = self.binary(prec + 1)?;
            if prec == 3 {
                if let Some((_, 3)) = binop(self.peek()) {
                    return err("comparison operators cannot be chained", self.span()).map_err(|d| {
                        Box::new(d.with_label(op_span, "first comparison").with_note("use `&&`: `a < b && b < c`"))
                    });
                }
            }
            let span = lhs.span.to(rhs.span);
            lhs = Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span };
        }
        self.depth = saved;
        Ok(lhs)
    }

    fn cast(&mut self) -> DResult<Expr> {
        let e = self.unary()?;
        self.cast_from(e)
    }

    /// The `as` casts applied to `e`.
    fn cast_from(&mut self, mut e: Expr) -> DResult<Expr> {
        let saved = self.depth;
        while self.eat(&Tok::As) {
            self.enter()?;
            let d = self.ident("a dtype after `as`")?;
            let span = e.span.to(d.span);
            e = Expr { kind: ExprKind::Cast(Box::new(e), d), span };
        }
        self.depth = saved;
        Ok(e)
    }

    fn unary(&mut self) -> DResult<Expr> {
        let op = match self.peek() {
            Tok::Minus => UnOp::Neg,
            Tok::Bang => UnOp::Not,
            Tok::Tilde => UnOp::BitNot,
            _ => return self.power(),
        };
        let start = self.bump();
        self.enter()?;
        let inner = self.unary();
        self.leave();
        let inner = inner?;
        let span = start.to(inner.span);
        if op == UnOp::Neg {
            match inner.kind {
                ExprKind::Lit(LitValue::Int(v), s) => {
                    return Ok(Expr { kind: ExprKind::Lit(LitValue::Int(-v), s), span })
                }
                ExprKind::Lit(LitValue::Float(v), s) => {
                    return Ok(Expr { kind: ExprKind::Lit(LitValue::Float(-v), s), span })
                }
                _ => {}
            }
        }
        Ok(Expr { kind: ExprKind::Unary(op, Box::new(inner)), span })
    }

    fn power(&mut self) -> DResult<Expr> {
        let base = self.postfix()?;
        self.power_from(base)
    }

    /// `base ** exponent`, or `base` itself.
    fn power_from(&mut self, base: Expr) -> DResult<Expr> {
        if self.eat(&Tok::StarStar) {
            self.enter()?;
            let exp = self.unary();
            self.leave();
            let exp = exp?;
            let span = base.span.to(exp.span);
            return Ok(Expr { kind: ExprKind::Binary(BinOp::Pow, Box::new(base), Box::new(exp)), span });
        }
        Ok(base)
    }

    fn postfix(&mut self) -> DResult<Expr> {
        let e = self.primary()?;
        self.postfix_from(e)
    }

    /// The calls, indexing and `.at[...]` updates applied to `e`.
    fn postfix_from(&mut self, mut e: Expr) -> DResult<Expr> {
        let saved = self.depth;
        loop {
            if matches!(self.peek(), Tok::LParen | Tok::LBracket | Tok::Dot) {
                self.enter()?;
            }
            match self.peek() {
                Tok::LParen => {
                    let open = self.bump();
                    let args = self.args(open)?;
                    let span = e.span.to(self.prev_span());
                    e = Expr { kind: ExprKind::Call(Box::new(e), args), span };
                }
                Tok::LBracket => {
                    let open = self.bump();
                    let items = self.index_items(open)?;
                    let span = e.span.to(self.prev_span());
                    e = Expr { kind: ExprKind::Index(Box::new(e), items), span };
                }
                Tok::Dot => {
                    self.bump();
                    let at = self.ident("`at` after `.`")?;
                    if at.name != "at" {
                        return err(format!("unknown method or field `{}`", at.name), at.span).map_err(|d| {
                            Box::new(
                                d.with_note("the only `.` form is the functional update `x.at[i].set(v)` / `.add(v)`"),
                            )
                        });
                    }
                    let open = self.expect(&Tok::LBracket)?;
                    let indices = self.index_items(open)?;
                    self.expect(&Tok::Dot)?;
                    let method = self.ident("`set` or `add`")?;
                    let open = self.expect(&Tok::LParen)?;
                    let args = self.args(open)?;
                    let span = e.span.to(self.prev_span());
                    e = Expr { kind: ExprKind::AtUpdate { base: Box::new(e), indices, method, args }, span };
                }
                _ => {
                    self.depth = saved;
                    return Ok(e);
                }
            }
        }
    }

    /// Call arguments after `(`, through `)`.
    fn args(&mut self, open: Span) -> DResult<Vec<Arg>> {
        let mut args = Vec::new();
        while self.peek() != &Tok::RParen {
            let name = if matches!(self.peek(), Tok::Ident(_)) && self.peek_at(1) == &Tok::Colon {
                let n = self.ident("a name")?;
                self.bump();
                Some(n)
            } else {
                None
            };
            let value = self.expr()?;
            args.push(Arg { name, value });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect_close(&Tok::RParen, open)?;
        Ok(args)
    }

    /// Index items after `[`, through `]`.
    fn index_items(&mut self, open: Span) -> DResult<Vec<IndexItem>> {
        let mut items = Vec::new();
        while self.peek() != &Tok::RBracket {
            let start_span = self.span();
            let start = if self.peek() == &Tok::Colon { None } else { Some(Box::new(self.expr()?)) };
            if self.eat(&Tok::Colon) {
                let ends = |t: &Tok| matches!(t, Tok::Comma | Tok::RBracket | Tok::Colon);
                let stop = if ends(self.peek()) { None } else { Some(Box::new(self.expr()?)) };
                let step = if self.eat(&Tok::Colon) {
                    if matches!(self.peek(), Tok::Comma | Tok::RBracket) {
                        None
                    } else {
                        Some(Box::new(self.expr()?))
                    }
                } else {
                    None
                };
                items.push(IndexItem::Slice { start, stop, step, span: start_span.to(self.prev_span()) });
            } else if let Some(e) = start {
                items.push(IndexItem::At(*e));
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect_close(&Tok::RBracket, open)?;
        Ok(items)
    }

    fn primary(&mut self) -> DResult<Expr> {
        let span = self.span();
        match self.peek().clone() {
            Tok::Int(v, s) => {
                self.bump();
                Ok(Expr { kind: ExprKind::Lit(LitValue::Int(i128::from(v)), s), span })
            }
            Tok::Float(v, s) => {
                self.bump();
                Ok(Expr { kind: ExprKind::Lit(LitValue::Float(v), s), span })
            }
            Tok::True | Tok::False => {
                let b = self.peek() == &Tok::True;
                self.bump();
                Ok(Expr { kind: ExprKind::Lit(LitValue::Bool(b), None), span })
            }
            Tok::Ident(name) => {
                self.bump();
                Ok(Expr { kind: ExprKind::Name(name), span })
            }
            Tok::Str(text) => {
                self.bump();
                Ok(Expr { kind: ExprKind::Str(text), span })
            }
            Tok::LParen => {
                let open = self.bump();
                let mut items = Vec::new();
                let mut trailing_comma = false;
                while self.peek() != &Tok::RParen {
                    items.push(self.expr()?);
                    trailing_comma = self.eat(&Tok::Comma);
                    if !trailing_comma {
                        break;
                    }
                }
                let close = self.expect_close(&Tok::RParen, open)?;
                let span = open.to(close);
                if items.len() == 1 && !trailing_comma {
                    let inner = items.remove(0);
                    return Ok(Expr { kind: ExprKind::Paren(Box::new(inner)), span });
                }
                Ok(Expr { kind: ExprKind::Tuple(items), span })
            }
            Tok::LBracket => {
                let open = self.bump();
                let mut items = Vec::new();
                while self.peek() != &Tok::RBracket {
                    items.push(self.expr()?);
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                let close = self.expect_close(&Tok::RBracket, open)?;
                Ok(Expr { kind: ExprKind::List(items), span: open.to(close) })
            }
            Tok::LBrace => self.block(),
            Tok::If => self.if_expr(),
            Tok::Pipe | Tok::PipePipe => self.lambda(),
            _ => self.unexpected("an expression"),
        }
    }

    fn if_expr(&mut self) -> DResult<Expr> {
        let start = self.expect(&Tok::If)?;
        let c = self.expr()?;
        if self.peek() != &Tok::LBrace {
            return self.unexpected("`{` after the `if` condition");
        }
        let then = self.block()?;
        let els = if self.eat(&Tok::Else) {
            if self.peek() == &Tok::If {
                self.enter()?;
                let e = self.if_expr();
                self.leave();
                e?
            } else if self.peek() == &Tok::LBrace {
                self.block()?
            } else {
                return self.unexpected("`{` or `if` after `else`");
            }
        } else {
            Expr { kind: ExprKind::Block(Vec::new(), None), span: then.span.end_point() }
        };
        let span = start.to(els.span).to(then.span);
        Ok(Expr { kind: ExprKind::If(Box::new(c), Box::new(then), Box::new(els)), span })
    }

    fn lambda(&mut self) -> DResult<Expr> {
        let start = self.span();
        let mut params = Vec::new();
        if !self.eat(&Tok::PipePipe) {
            self.expect(&Tok::Pipe)?;
            while self.peek() != &Tok::Pipe {
                params.push(self.pattern()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::Pipe)?;
        }
        let body = self.expr()?;
        let span = start.to(body.span);
        Ok(Expr { kind: ExprKind::Lambda(params, Box::new(body)), span })
    }
}

/// Whether `t` can only continue an expression, never start one: a binary
/// operator other than `-`, `**` or `as`. After an `if` or block that ended a
/// statement it is an error (`||` would start a lambda, which as a statement
/// is never what was meant, so it is one too).
fn continues_expr(t: &Tok) -> bool {
    matches!(t, Tok::StarStar | Tok::As) || (binop(t).is_some() && t != &Tok::Minus)
}

/// The opening delimiter of a closing one.
fn open_of(t: &Tok) -> &'static str {
    match t {
        Tok::RParen => "(",
        Tok::RBracket => "[",
        Tok::RBrace => "{",
        _ => "",
    }
}
