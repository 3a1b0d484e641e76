//! The syntax tree produced by the parser. Every node carries its [`Span`].

use crate::diag::Span;
use loopvm_runtime::DType;

/// A name with its place.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where it is.
    pub span: Span,
}

/// A whole source file.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Program {
    /// The `fn` items, in source order.
    pub fns: Vec<FnItem>,
}

/// `fn name(params) -> ret { body }`.
#[derive(Clone, Debug, PartialEq)]
pub struct FnItem {
    /// The function's name.
    pub name: Ident,
    /// The parameters.
    pub params: Vec<FnParam>,
    /// The declared result type (`None`: inferred from the body).
    pub ret: Option<TypeExpr>,
    /// The body.
    pub body: Expr,
    /// The whole item.
    pub span: Span,
}

/// One `name: type` parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct FnParam {
    /// The name.
    pub name: Ident,
    /// The type.
    pub ty: TypeExpr,
}

/// A written type: `f32`, `f32[T, 4]`, `(A, B)`, `()`.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeExpr {
    /// A dtype with dims (none for a scalar). The dtype name is checked later.
    Tensor {
        /// The dtype name as written.
        dtype: Ident,
        /// The dimensions.
        dims: Vec<DimExpr>,
        /// The whole type.
        span: Span,
    },
    /// A tuple type.
    Tuple(Vec<TypeExpr>, Span),
}

impl TypeExpr {
    /// Where the type is written.
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Tensor { span, .. } | TypeExpr::Tuple(_, span) => *span,
        }
    }
}

/// One written dimension.
#[derive(Clone, Debug, PartialEq)]
pub enum DimExpr {
    /// A number.
    Known(u64, Span),
    /// A shape variable.
    Var(Ident),
}

/// A binding pattern: `x`, `_`, `(a, (b, _))`.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    /// Binds a name.
    Name(Ident),
    /// Discards.
    Wild(Span),
    /// Destructures a tuple.
    Tuple(Vec<Pattern>, Span),
}

impl Pattern {
    /// Where the pattern is written.
    pub fn span(&self) -> Span {
        match self {
            Pattern::Name(i) => i.span,
            Pattern::Wild(s) | Pattern::Tuple(_, s) => *s,
        }
    }
}

/// A unary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `!x`
    Not,
    /// `~x`
    BitNot,
}

/// A binary operator as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `**`
    Pow,
    /// `@`
    MatMul,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Pow => "**",
            BinOp::MatMul => "@",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
        }
    }
}

/// A literal value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LitValue {
    /// An integer (already negated when written `-3`).
    Int(i128),
    /// A float.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
}

/// One item of an index list: `x[i, 1:3, ::-1]`.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexItem {
    /// A single index (static when an integer literal).
    At(Expr),
    /// `start:stop:step`, each part optional.
    Slice {
        /// Start.
        start: Option<Box<Expr>>,
        /// Stop.
        stop: Option<Box<Expr>>,
        /// Step.
        step: Option<Box<Expr>>,
        /// The whole item.
        span: Span,
    },
}

/// A call argument, positional or `name: value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The name, for a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
}

/// A statement of a block.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `let pat (: ty)? = value;`
    Let {
        /// The pattern.
        pat: Pattern,
        /// An optional type annotation.
        ty: Option<TypeExpr>,
        /// The value.
        value: Expr,
        /// The whole statement.
        span: Span,
    },
    /// An expression evaluated for its effect (`print(x);`).
    Expr(Expr),
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A literal, with its suffix dtype if written.
    Lit(LitValue, Option<DType>),
    /// A name.
    Name(String),
    /// A string literal (only `einsum`'s subscripts take one).
    Str(String),
    /// `[a, b, c]`.
    List(Vec<Expr>),
    /// `(a, b)`, `(a,)`, `()`.
    Tuple(Vec<Expr>),
    /// `(e)`: kept so that spans and literal-ness are preserved.
    Paren(Box<Expr>),
    /// `-e`, `!e`.
    Unary(UnOp, Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `e as dtype` (the dtype name is checked later).
    Cast(Box<Expr>, Ident),
    /// `f(args)`.
    Call(Box<Expr>, Vec<Arg>),
    /// `x[items]`.
    Index(Box<Expr>, Vec<IndexItem>),
    /// `x.at[items].method(args)`.
    AtUpdate {
        /// The tensor updated.
        base: Box<Expr>,
        /// The indices.
        indices: Vec<IndexItem>,
        /// `set` or `add`.
        method: Ident,
        /// The arguments of the method.
        args: Vec<Arg>,
    },
    /// `|params| body`.
    Lambda(Vec<Pattern>, Box<Expr>),
    /// `{ stmts; result }` (no result: `()`).
    Block(Vec<Stmt>, Option<Box<Expr>>),
    /// `if c { a } else { b }`.
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}
