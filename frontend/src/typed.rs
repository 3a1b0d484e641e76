//! The typed IR: what the checker produces and lowering consumes.
//!
//! It is structured and fully resolved: every expression carries its
//! [`Type`]; every variable is a [`VarId`] unique in its function (so lambda
//! captures are plain references to outer variables); lambdas have been
//! inlined at their call sites; calls name one monomorphised instance of a
//! function; loops keep their bodies as [`Lambda`]s whose parameters are
//! patterns over the carry. This is the form a reverse-mode transform works
//! on: each loop's carry, inputs and outputs are explicit, and every value is
//! bound once.

use crate::diag::Span;
use crate::types::Type;
use loopvm_runtime::rules::DotDims;
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UnaryOp, UpdateMode};

/// A variable of one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

/// A function instance of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FuncId(pub u32);

/// A checked program: every function instance reached, and `main`.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// Function instances (one per shape binding of a source function).
    pub funcs: Vec<Func>,
    /// The instance of `main`, when the program has one.
    pub main: Option<FuncId>,
}

/// Information about one variable.
#[derive(Clone, Debug, PartialEq)]
pub struct VarInfo {
    /// The source name (`_` for compiler temporaries).
    pub name: String,
    /// Its type.
    pub ty: Type,
}

/// One function instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Func {
    /// The instance name: `f`, or `f<T=3>` for a shape binding.
    pub name: String,
    /// The name of the source function.
    pub source_name: String,
    /// The parameters: name and variable.
    pub params: Vec<(String, VarId)>,
    /// The result type.
    pub result: Type,
    /// The body.
    pub body: Expr,
    /// Every variable of the function, indexed by [`VarId`].
    pub vars: Vec<VarInfo>,
    /// The `fn` item.
    pub span: Span,
}

impl Func {
    /// The type of variable `v`.
    pub fn var_type(&self, v: VarId) -> Option<&Type> {
        self.vars.get(v.0 as usize).map(|i| &i.ty)
    }
}

/// The data of a constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstValues {
    /// `bool` elements.
    Bool(Vec<bool>),
    /// `i32` / `i64` elements.
    Int(Vec<i64>),
    /// `f32` / `f64` elements.
    Float(Vec<f64>),
}

/// A constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstData {
    /// Its dtype.
    pub dtype: DType,
    /// Its shape.
    pub shape: Vec<u64>,
    /// Row-major elements (already range-checked for `dtype`).
    pub values: ConstValues,
}

/// A binding pattern over a value's tuple structure.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    /// Binds the whole value.
    Var(VarId),
    /// Discards a value of this type.
    Wild(Type),
    /// Destructures a tuple.
    Tuple(Vec<Pattern>),
}

/// A loop body: parameter patterns and the body expression (which may name
/// variables from enclosing scopes: its captures).
#[derive(Clone, Debug, PartialEq)]
pub struct Lambda {
    /// One pattern per parameter.
    pub params: Vec<Pattern>,
    /// The body.
    pub body: Box<Expr>,
}

/// A statement of a block.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `let pattern = value;`
    Let(Pattern, Expr),
    /// A value computed for its effect and dropped.
    Expr(Expr),
}

/// One static index item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticIndex {
    /// Selects one position (negative counts from the end); removes the axis.
    At(i64),
    /// A Python slice.
    Range {
        /// Start (None: from the beginning, or the end for negative steps).
        start: Option<i64>,
        /// Stop.
        stop: Option<i64>,
        /// Step (never 0).
        step: i64,
    },
}

/// A typed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it computes.
    pub kind: ExprKind,
    /// Its type.
    pub ty: Type,
    /// Where it comes from.
    pub span: Span,
}

/// The kinds of typed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A variable.
    Var(VarId),
    /// A constant.
    Const(ConstData),
    /// An elementwise unary op.
    Unary(UnaryOp, Box<Expr>),
    /// An elementwise binary op with broadcasting (operands of one dtype).
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `where(c, a, b)`.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `e as dtype`.
    Cast(Box<Expr>, DType),
    /// `bitcast(e, dtype)`: the bits read as `dtype` (same element width).
    Bitcast(Box<Expr>, DType),
    /// `shard(e, axis: k, mesh_axis: m)`: `e`, with a sharding constraint for
    /// XLA's partitioner (axis `k` over mesh axis `m`: 0 `data`, 1 `model`).
    Shard(Box<Expr>, u32, u32),
    /// `a @ b` (rank-1 and rank-2 operands).
    MatMul(Box<Expr>, Box<Expr>),
    /// StableHLO's `dot_general` (batched `@`, `einsum`): batch dims, then
    /// the lhs's free dims, then the rhs's.
    DotGeneral(Box<Expr>, Box<Expr>, DotDims),
    /// A reduction over all elements (`None`) or one axis.
    Reduce(ReduceOp, Box<Expr>, Option<u32>),
    /// `reshape(x, shape)` (static).
    Reshape(Box<Expr>, Vec<u64>),
    /// `reshape(x, shape)` to this expression's own type, whose shape has
    /// shape variables or products of them (`[B*T, D]`): resolved when the
    /// program runs (the `ReshapeAs` instruction). Made by
    /// [`crate::build::Build::reshape_to`].
    ReshapeAs(Box<Expr>),
    /// `transpose(x, perm)`; `None` reverses the axes.
    Transpose(Box<Expr>, Option<Vec<u32>>),
    /// `broadcast(x, shape)` (static), also used by `zeros`/`ones`/`full`.
    Broadcast(Box<Expr>, Vec<u64>),
    /// `iota(dtype, n)`.
    Iota(DType, u64),
    /// `concat([...], axis)`.
    Concat(Vec<Expr>, u32),
    /// `stack([...], axis)`, also list literals with non-literal elements.
    Stack(Vec<Expr>, u32),
    /// Static indexing and slicing of the leading axes.
    Slice(Box<Expr>, Vec<StaticIndex>),
    /// Dynamic indexing of the leading axes by integer scalars (clamped).
    Index(Box<Expr>, Vec<Expr>),
    /// `x.at[idx].set(v)` / `.add(v)`; `v` already has the slot's shape.
    Update {
        /// Set or add.
        mode: UpdateMode,
        /// The tensor updated.
        base: Box<Expr>,
        /// Integer scalar indices of the leading axes.
        idx: Vec<Expr>,
        /// The new value (or the addend).
        value: Box<Expr>,
    },
    /// `take(x, ids, axis: k)`: axis `k` replaced by the shape of the
    /// integer tensor `ids`, ids clamped into range.
    Take(Box<Expr>, Box<Expr>, u32),
    /// The transpose of `take`: `(base, ids, updates, axis)`, `base` with
    /// each update added at the position its id selects.
    ScatterAdd(Box<Expr>, Box<Expr>, Box<Expr>, u32),
    /// `dynamic_slice(x, starts, sizes)`: integer scalar starts, one per axis.
    DynSlice(Box<Expr>, Vec<Expr>, Vec<u64>),
    /// `dynamic_update_slice(x, u, starts)`.
    DynUpdateSlice(Box<Expr>, Box<Expr>, Vec<Expr>),
    /// `cumsum(x, axis: k, reverse: b)`.
    Cumsum(Box<Expr>, u32, bool),
    /// `shape(x)`.
    ShapeOf(Box<Expr>),
    /// `print(x)`: prints every leaf; its value is `()`.
    Print(Box<Expr>),
    /// `stop_gradient(x)`: `x`, through which `grad` passes no cotangent.
    StopGradient(Box<Expr>),
    /// A tuple.
    Tuple(Vec<Expr>),
    /// `{ stmts; result }`.
    Block(Vec<Stmt>, Box<Expr>),
    /// `if c { a } else { b }`.
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// A call of a function instance.
    Call(FuncId, Vec<Expr>),
    /// `fori_loop(lo, hi, |i, carry| ..., init)`.
    Fori {
        /// Lower bound (scalar, i32 or i64).
        lo: Box<Expr>,
        /// Upper bound (same dtype).
        hi: Box<Expr>,
        /// The initial carry.
        init: Box<Expr>,
        /// Params `(i, carry)`; returns the carry.
        body: Lambda,
        /// Unroll factor (1: none).
        unroll: u32,
    },
    /// `while_loop(cond, body, init)`.
    While {
        /// The initial carry.
        init: Box<Expr>,
        /// Param `carry`; returns a bool scalar.
        cond: Lambda,
        /// Param `carry`; returns the carry.
        body: Lambda,
        /// `max_iters: K`: stop after at most K iterations (differentiable).
        max_iters: Option<u64>,
    },
    /// `scan(body, init, xs)`; the value is `(carry, ys)`.
    Scan {
        /// The initial carry.
        init: Box<Expr>,
        /// The scanned inputs (`None` with `length:` only).
        xs: Option<Box<Expr>>,
        /// The static length when given.
        length: Option<u64>,
        /// Iterate from the end.
        reverse: bool,
        /// Unroll factor (1: none).
        unroll: u32,
        /// `checkpoint: true`: reverse mode keeps only the carries and recomputes the body.
        checkpoint: bool,
        /// Params `(carry, x)`; returns `(carry, y)`.
        body: Lambda,
    },
}
