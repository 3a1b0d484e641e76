//! The program tree shared by the phases: element and tensor types,
//! expressions, blocks, functions and a whole generated program, with the
//! walks over an expression's children that printing and shrinking use.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElemType {
    Bool,
    I32,
    I64,
    F32,
    F64,
    U32,
    U8,
    BF16,
    F16,
}

pub(crate) const ALL_ELEM_TYPES: [ElemType; 9] = [
    ElemType::Bool,
    ElemType::I32,
    ElemType::I64,
    ElemType::F32,
    ElemType::F64,
    ElemType::U32,
    ElemType::U8,
    ElemType::BF16,
    ElemType::F16,
];
pub(crate) const NUMERIC_ELEM_TYPES: [ElemType; 8] = [
    ElemType::I32,
    ElemType::I64,
    ElemType::F32,
    ElemType::F64,
    ElemType::U32,
    ElemType::U8,
    ElemType::BF16,
    ElemType::F16,
];

impl ElemType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ElemType::Bool => "bool",
            ElemType::I32 => "i32",
            ElemType::I64 => "i64",
            ElemType::F32 => "f32",
            ElemType::F64 => "f64",
            ElemType::U32 => "u32",
            ElemType::U8 => "u8",
            ElemType::BF16 => "bf16",
            ElemType::F16 => "f16",
        }
    }
    pub(crate) fn is_float(self) -> bool {
        matches!(self, ElemType::F32 | ElemType::F64 | ElemType::BF16 | ElemType::F16)
    }
    pub(crate) fn is_int(self) -> bool {
        matches!(self, ElemType::I32 | ElemType::I64 | ElemType::U32 | ElemType::U8)
    }
    pub(crate) fn is_unsigned(self) -> bool {
        matches!(self, ElemType::U32 | ElemType::U8)
    }
    /// Bits per element (bool: 8).
    pub(crate) fn bits(self) -> u32 {
        match self {
            ElemType::Bool | ElemType::U8 => 8,
            ElemType::I32 | ElemType::F32 | ElemType::U32 => 32,
            ElemType::I64 | ElemType::F64 => 64,
            ElemType::BF16 | ElemType::F16 => 16,
        }
    }
}

/// A tensor type: dtype and static dims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TensorType {
    pub(crate) dt: ElemType,
    pub(crate) dims: Vec<usize>,
}

impl TensorType {
    pub(crate) fn new(dt: ElemType, dims: &[usize]) -> TensorType {
        TensorType { dt, dims: dims.to_vec() }
    }
    pub(crate) fn scalar(dt: ElemType) -> TensorType {
        TensorType { dt, dims: Vec::new() }
    }
    pub(crate) fn numel(&self) -> usize {
        self.dims.iter().product()
    }
    pub(crate) fn text(&self) -> String {
        if self.dims.is_empty() {
            self.dt.name().to_string()
        } else {
            format!("{}{:?}", self.dt.name(), self.dims)
        }
    }
    pub(crate) fn dims_text(&self) -> String {
        format!("{:?}", self.dims)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    Tensor(TensorType),
    Tuple(Vec<ValueType>),
}

impl ValueType {
    pub(crate) fn text(&self) -> String {
        match self {
            ValueType::Tensor(t) => t.text(),
            ValueType::Tuple(v) if v.len() == 1 => format!("({},)", v[0].text()),
            ValueType::Tuple(v) => format!("({})", v.iter().map(ValueType::text).collect::<Vec<_>>().join(", ")),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Pattern {
    Name(String),
    Wildcard,
    Tuple(Vec<Pattern>),
}

impl Pattern {
    pub(crate) fn text(&self) -> String {
        match self {
            Pattern::Name(n) => n.clone(),
            Pattern::Wildcard => "_".into(),
            Pattern::Tuple(v) => format!("({})", v.iter().map(Pattern::text).collect::<Vec<_>>().join(", ")),
        }
    }
    pub(crate) fn names(&self, out: &mut Vec<String>) {
        match self {
            Pattern::Name(n) => out.push(n.clone()),
            Pattern::Wildcard => {}
            Pattern::Tuple(v) => v.iter().for_each(|p| p.names(out)),
        }
    }
}

/// A call argument.
#[derive(Clone, Debug)]
pub(crate) enum CallArg {
    Expr(Expr),
    /// Text printed as is (`f32`, `[2, 3]`, `axis: 1`).
    Raw(String),
    /// A list of expressions (`concat([a, b])`).
    List(Vec<Expr>),
    /// A named argument whose value is an expression (`minval: e`).
    Named(&'static str, Expr),
}

/// An index.
#[derive(Clone, Debug)]
pub(crate) enum IndexArg {
    Dynamic(Expr),
    Raw(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) lets: Vec<(Pattern, Expr)>,
    pub(crate) ret: Expr,
}

#[derive(Clone, Debug)]
pub(crate) enum ExprKind {
    /// Literal text; `simple` when it cannot be simplified further.
    Literal {
        text: String,
        simple: bool,
        weak: bool,
    },
    Variable(String),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Call(String, Vec<CallArg>),
    Cast(Box<Expr>, ElemType),
    Index(Box<Expr>, Vec<IndexArg>),
    At {
        base: Box<Expr>,
        idx: Vec<Expr>,
        add: bool,
        v: Box<Expr>,
    },
    If(Box<Expr>, Box<Block>, Box<Block>),
    Block(Box<Block>),
    Tuple(Vec<Expr>),
    Fori {
        lo: Box<Expr>,
        hi: Box<Expr>,
        i: String,
        pat: Pattern,
        body: Box<Block>,
        init: Box<Expr>,
        unroll: u32,
    },
    While {
        pat: Pattern,
        cond: Box<Expr>,
        body: Box<Block>,
        init: Box<Expr>,
        max_iters: Option<u32>,
    },
    Scan {
        cpat: Pattern,
        xpat: Pattern,
        body: Box<Block>,
        init: Box<Expr>,
        xs: Option<Box<Expr>>,
        length: Option<usize>,
        reverse: bool,
        unroll: u32,
    },
    /// `vmap(|params| body, in_axes: [...], out_axes: k)(args)`.
    Vmap {
        params: Vec<String>,
        body: Box<Block>,
        args: Vec<Expr>,
        /// Per argument: its mapped axis, or `none`.
        in_axes: Vec<Option<usize>>,
        out_axes: usize,
    },
}

/// An expression and its type.
#[derive(Clone, Debug)]
pub(crate) struct Expr {
    pub(crate) kind: ExprKind,
    pub(crate) ty: ValueType,
}

#[derive(Clone, Debug)]
pub(crate) struct FunctionDef {
    pub(crate) name: String,
    pub(crate) params: Vec<(String, TensorType)>,
    pub(crate) ret: ValueType,
    pub(crate) body: Expr,
    /// Its float results are exact when its float arguments are.
    pub(crate) exact: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct MainArg {
    pub(crate) name: String,
    pub(crate) tt: TensorType,
    pub(crate) text: String,
    pub(crate) simple: bool,
    /// The shape variables its type is written with (`x: f32[S1a, S1b]`,
    /// bound when main is called), or none for a static type.
    pub(crate) vars: Option<Vec<String>>,
}

/// A generated program.
#[derive(Clone, Debug)]
pub(crate) struct ProgramTree {
    pub(crate) fns: Vec<FunctionDef>,
    pub(crate) main: FunctionDef,
    pub(crate) args: Vec<MainArg>,
}

/// A generated program, as source and `--arg` strings.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The `.lb` source.
    pub source: String,
    /// `name=value` arguments of `main`.
    pub args: Vec<String>,
    pub(crate) prog: ProgramTree,
}

/// The children of an expression node, by shared reference, or by mutable
/// reference when the last argument is `mut`.
macro_rules! children {
    ($e:expr, $iter:ident, $unbox:path $(, $m:tt)?) => {{
        let mut v = Vec::new();
        match & $($m)? $e.kind {
            ExprKind::Literal { .. } | ExprKind::Variable(_) => {}
            ExprKind::Unary(_, a) | ExprKind::Cast(a, _) => v.push($unbox(a)),
            ExprKind::Binary(_, a, b) => {
                v.push($unbox(a));
                v.push($unbox(b));
            }
            ExprKind::Call(_, args) => {
                for a in args.$iter() {
                    match a {
                        CallArg::Expr(e) | CallArg::Named(_, e) => v.push(e),
                        CallArg::List(es) => v.extend(es.$iter()),
                        CallArg::Raw(_) => {}
                    }
                }
            }
            ExprKind::Index(a, ix) => {
                v.push($unbox(a));
                for x in ix.$iter() {
                    if let IndexArg::Dynamic(e) = x {
                        v.push(e);
                    }
                }
            }
            ExprKind::At { base, idx, v: val, .. } => {
                v.push($unbox(base));
                v.extend(idx.$iter());
                v.push($unbox(val));
            }
            ExprKind::If(c, a, b) => {
                v.push($unbox(c));
                let (a, b) = ($unbox(a), $unbox(b));
                v.extend(a.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? a.ret);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            ExprKind::Block(b) => {
                let b = $unbox(b);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            ExprKind::Tuple(es) => v.extend(es.$iter()),
            ExprKind::Fori { lo, hi, body, init, .. } => {
                v.push($unbox(init));
                v.push($unbox(lo));
                v.push($unbox(hi));
                let b = $unbox(body);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            ExprKind::While { cond, body, init, .. } => {
                v.push($unbox(init));
                v.push($unbox(cond));
                let b = $unbox(body);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            ExprKind::Scan { body, init, xs, .. } => {
                v.push($unbox(init));
                if let Some(xs) = xs {
                    v.push($unbox(xs));
                }
                let b = $unbox(body);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            ExprKind::Vmap { body, args, .. } => {
                v.extend(args.$iter());
                let b = $unbox(body);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
        }
        v
    }};
}

pub(crate) fn lit(text: impl Into<String>, ty: TensorType) -> Expr {
    Expr { kind: ExprKind::Literal { text: text.into(), simple: false, weak: false }, ty: ValueType::Tensor(ty) }
}

pub(crate) fn zeros_text(t: &TensorType) -> String {
    if t.dims.is_empty() {
        match t.dt {
            ElemType::Bool => "false".into(),
            ElemType::I32 | ElemType::I64 | ElemType::U32 | ElemType::U8 => format!("0{}", t.dt.name()),
            ElemType::F32 | ElemType::F64 | ElemType::BF16 | ElemType::F16 => format!("0.0{}", t.dt.name()),
        }
    } else {
        format!("zeros({}, {})", t.dt.name(), t.dims_text())
    }
}

pub(crate) fn simplest(ty: &ValueType) -> Expr {
    match ty {
        ValueType::Tensor(t) => {
            Expr { kind: ExprKind::Literal { text: zeros_text(t), simple: true, weak: false }, ty: ty.clone() }
        }
        ValueType::Tuple(v) => Expr { kind: ExprKind::Tuple(v.iter().map(simplest).collect()), ty: ty.clone() },
    }
}

impl Expr {
    /// The direct subexpressions, mutably (blocks' statements included).
    pub(crate) fn children_mut(&mut self) -> Vec<&mut Expr> {
        children!(self, iter_mut, Box::as_mut, mut)
    }

    /// The direct subexpressions.
    pub(crate) fn children(&self) -> Vec<&Expr> {
        children!(self, iter, Box::as_ref)
    }

    /// The block this node owns directly, if one (for dropping statements).
    pub(crate) fn blocks_mut(&mut self) -> Vec<&mut Block> {
        match &mut self.kind {
            ExprKind::If(_, a, b) => vec![&mut **a, &mut **b],
            ExprKind::Block(b) => vec![&mut **b],
            ExprKind::Fori { body, .. }
            | ExprKind::While { body, .. }
            | ExprKind::Scan { body, .. }
            | ExprKind::Vmap { body, .. } => vec![&mut **body],
            _ => Vec::new(),
        }
    }

    pub(crate) fn names(&self, out: &mut Vec<String>) {
        match &self.kind {
            ExprKind::Variable(n) => out.push(n.clone()),
            ExprKind::Call(f, _) => out.push(f.clone()),
            _ => {}
        }
        for c in self.children() {
            c.names(out);
        }
    }
}

pub(crate) fn walk(e: &mut Expr, f: &mut dyn FnMut(&mut Expr)) {
    f(e);
    for c in e.children_mut() {
        walk(c, f);
    }
}

impl ProgramTree {
    pub(crate) fn for_each_node(&mut self, f: &mut dyn FnMut(&mut Expr)) {
        for d in &mut self.fns {
            walk(&mut d.body, f);
        }
        walk(&mut self.main.body, f);
    }
}

/// A literal, possibly negated: a static index.
pub(crate) fn is_literal(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Literal { .. } => true,
        ExprKind::Unary("-", a) => is_literal(a),
        _ => false,
    }
}

pub(crate) fn is_weak(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::Literal { weak: true, .. })
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ScalarValue {
    Bool(bool),
    Int(i64),
    Float(f64),
}
