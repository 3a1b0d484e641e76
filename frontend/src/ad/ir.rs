//! The flattened program the transform works on (step 1's output): atoms, tuple
//! trees of atoms, primitive ops, statements and scans.

use crate::diag::Span;
use crate::typed::{self as t, ConstData, Pattern, StaticIndex, VarId};
use crate::types::Dim;
use loopvm_runtime::rules::DotDims;
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UnaryOp, UpdateMode};

/// A tensor operand: a leaf variable or a constant.
#[derive(Clone, Debug)]
pub(super) enum Atom {
    Var(VarId),
    Const(ConstData),
}

/// A value's tuple structure over atoms.
#[derive(Clone, Debug)]
pub(super) enum Tree {
    Leaf(Atom),
    Node(Vec<Tree>),
}

impl Tree {
    fn atoms(&self, out: &mut Vec<Atom>) {
        match self {
            Tree::Leaf(a) => out.push(a.clone()),
            Tree::Node(ts) => ts.iter().for_each(|t| t.atoms(out)),
        }
    }
    pub(super) fn flat(&self) -> Vec<Atom> {
        let mut v = Vec::new();
        self.atoms(&mut v);
        v
    }
}

/// A primitive tensor operation (the typed IR's tensor expression kinds).
#[derive(Clone, Debug)]
pub(super) enum Op {
    Unary(UnaryOp),
    Binary(BinaryOp),
    Select,
    Cast(DType),
    Bitcast(DType),
    /// A sharding constraint (axis, mesh axis): the identity.
    Shard(u32, u32),
    MatMul,
    DotGeneral(DotDims),
    Reduce(ReduceOp, Option<u32>),
    Reshape(Vec<u64>),
    /// A reshape to the result's own (symbolic) type.
    ReshapeAs,
    Transpose(Option<Vec<u32>>),
    Broadcast(Vec<u64>),
    Iota(DType, u64),
    Concat(u32),
    Stack(u32),
    Slice(Vec<StaticIndex>),
    Index,
    Update(UpdateMode),
    Take(u32),
    ScatterAdd(u32),
    DynSlice(Vec<u64>),
    DynUpdateSlice,
    Cumsum(u32, bool),
    ShapeOf,
    /// `stop_gradient`: the operand, inactive.
    StopGradient,
}

/// A flattened block: statements and result atoms.
#[derive(Debug, Default)]
pub(super) struct Body {
    pub(super) stmts: Vec<Stmt>,
    pub(super) results: Vec<Atom>,
}

/// A flattened statement.
#[derive(Debug)]
pub(super) enum Stmt {
    Prim {
        out: VarId,
        op: Op,
        args: Vec<Atom>,
    },
    Print(Vec<Atom>),
    If {
        outs: Vec<VarId>,
        cond: Atom,
        then_: Body,
        else_: Body,
    },
    Scan(Box<Scan>),
    /// A construct kept whole (not differentiable): bound to `pat`.
    Opaque {
        outs: Vec<VarId>,
        pat: Pattern,
        expr: t::Expr,
        inputs: Vec<VarId>,
        what: &'static str,
        span: Span,
    },
}

/// A flattened `scan` (static `fori_loop` and bounded `while_loop` become one too).
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) id: usize,
    pub(super) carry_outs: Vec<VarId>,
    pub(super) ys_outs: Vec<VarId>,
    pub(super) init: Vec<Atom>,
    pub(super) xs: Vec<Atom>,
    pub(super) length: Option<u64>,
    pub(super) n: Dim,
    pub(super) reverse: bool,
    pub(super) unroll: u32,
    pub(super) checkpoint: bool,
    pub(super) carry_p: Vec<VarId>,
    pub(super) x_p: Vec<VarId>,
    /// Results: the new carry, then the ys.
    pub(super) body: Body,
}
