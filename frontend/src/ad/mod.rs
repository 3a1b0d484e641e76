//! Reverse-mode differentiation of the typed IR (`grad`, `value_and_grad`).
//!
//! The transform takes a function body (a typed expression over some
//! parameters) and produces a new typed expression that computes
//! `(value, grads)` with ordinary typed IR only, so every tier runs the
//! result as plain bytecode. It works in four steps:
//!
//! 1. **Flattening** (`Ad::conv`): the body becomes a small A-normal form
//!    (a list of statements over tensor-valued leaf variables). Tuples,
//!    blocks and `let` disappear; calls of `fn` items are inlined; a static
//!    `fori_loop` becomes a `scan` over `iota`; a bounded
//!    `while_loop(..., max_iters: K)` becomes a `scan` of length K whose body
//!    is `if still_running { body } else { carry }`. Loops that cannot be
//!    differentiated (dynamic `fori_loop`, `while_loop` without `max_iters`)
//!    are kept whole as *opaque* statements.
//! 2. **Activity** (`Ad::act_body`): a float variable is active when it
//!    depends on a differentiated argument (loop carries by fixpoint).
//!    Integers, booleans and anything computed from them get no gradient, as
//!    in JAX; an opaque loop with an active input and a float output is the
//!    compile error that asks for `max_iters` or static bounds.
//! 3. **Backward pass** (`Ad::backward`): statements are visited in reverse
//!    and each emits the vector-Jacobian product of its primitive, adding
//!    into per-variable adjoints. The backward pass of a `scan` is a reverse
//!    `scan` whose carry holds the carry's cotangent and accumulators for the
//!    cotangents of the variables the body captures, and whose `xs` are the
//!    residuals the forward scan saved plus the cotangents of `ys`. Which
//!    residuals a loop saves is discovered while its backward body is built:
//!    every primal value the backward code names is resolved through a stack
//!    of scopes (`Ad::use_primal`); a value defined inside a scan body
//!    becomes a residual that the forward scan stacks as an extra `y`. In a
//!    `scan(..., checkpoint: true)` and in `if` branches the values are
//!    instead recomputed at the start of the backward body from the saved
//!    carry (`checkpoint`) or the captured operands (`if`), keeping only
//!    what the backward code needs.
//! 4. **Forward pass** (`Ad::emit_forward`): the flattened primal program
//!    is emitted again, each scan augmented with the residual outputs found
//!    in step 3, followed by the backward statements.
//!
//! The steps live in submodules: `flatten` (1, over the form of `ir`), `activity` (2),
//! `backward` (3, with `residuals` for the primal values it names) and `forward` (4); the
//! per-op vector-Jacobian products are in `rules`, the expression builders in `builders`
//! and the variable-set helpers in `vars`.

mod activity;
mod backward;
mod builders;
mod flatten;
mod forward;
mod ir;
mod residuals;
mod rules;
mod vars;

use crate::diag::{err, DResult, Span};
use crate::typed::{self as t, ConstData, ConstValues, ExprKind as K, VarId, VarInfo};
use crate::types::{Dim, TensorTy, Type};
use forward::Mode;
use ir::{Atom, Body, Tree};
use loopvm_runtime::{rules as shape_rules, DType};
use residuals::Scope;
use std::collections::{HashMap, HashSet};

/// Most flattened statements one differentiated function may produce.
const MAX_STMTS: usize = 2_000_000;

/// Where the variables of one source expression are typed.
#[derive(Clone, Copy)]
enum Src {
    Root,
    Func(usize),
}

/// Differentiates `body` (an expression over `params`, typed in `vars`) with
/// respect to the parameters at `wrt`. Returns an expression of type
/// `(value, grads)`, where `grads` is the gradient of the single parameter
/// when `single`, else a tuple with one gradient per entry of `wrt`.
/// New variables are appended to `vars`; `funcs` are the function instances
/// that calls in `body` name (they are inlined).
pub fn value_and_grad(
    vars: &mut Vec<VarInfo>,
    funcs: &[t::Func],
    params: &[VarId],
    body: &t::Expr,
    wrt: &[usize],
    single: bool,
    span: Span,
) -> DResult<t::Expr> {
    let root_src = vars.clone();
    let mut ad = Ad {
        funcs,
        vars,
        root_src,
        envs: vec![(HashMap::new(), Src::Root)],
        next_scan: 0,
        stmts: 0,
        active: HashSet::new(),
        scopes: Vec::new(),
        adj: Vec::new(),
        buf: Vec::new(),
        residuals: HashMap::new(),
        span,
    };
    ad.run(params, body, wrt, single)
}

struct Ad<'a> {
    funcs: &'a [t::Func],
    vars: &'a mut Vec<VarInfo>,
    root_src: Vec<VarInfo>,
    envs: Vec<(HashMap<VarId, Tree>, Src)>,
    next_scan: usize,
    stmts: usize,
    active: HashSet<VarId>,
    scopes: Vec<Scope>,
    adj: Vec<HashMap<VarId, VarId>>,
    buf: Vec<Vec<t::Stmt>>,
    residuals: HashMap<usize, Vec<(VarId, VarId)>>,
    span: Span,
}

fn internal<T>(what: &str, span: Span) -> DResult<T> {
    err(format!("internal error in differentiation: {what}"), span)
}

fn is_float(t: &TensorTy) -> bool {
    t.dtype.is_float()
}

fn known(dims: &[Dim]) -> Option<Vec<u64>> {
    dims.iter().map(Dim::known).collect()
}

fn scalar_const(dtype: DType, v: f64) -> ConstData {
    let values = match dtype {
        DType::Bool => ConstValues::Bool(vec![v != 0.0]),
        DType::I32 | DType::I64 | DType::U32 | DType::U8 => ConstValues::Int(vec![v as i64]),
        _ => ConstValues::Float(vec![v]),
    };
    ConstData { dtype, shape: Vec::new(), values }
}

fn const_int(c: &ConstData) -> Option<i64> {
    match (&c.values, c.shape.is_empty()) {
        (ConstValues::Int(v), true) => v.first().copied(),
        _ => None,
    }
}

/// The first index of the Python slice `start:stop:step` over `n`, and its
/// number of elements ([`shape_rules::slice_range`]; `(0, 0)` for the step 0,
/// which the checker rejects).
fn slice_range(n: i64, start: Option<i64>, stop: Option<i64>, step: i64) -> (i64, i64) {
    match shape_rules::slice_range(u64::try_from(n).unwrap_or(0), start, stop, step) {
        Ok(r) => (i64::try_from(r.first).unwrap_or(0), i64::try_from(r.len).unwrap_or(0)),
        Err(_) => (0, 0),
    }
}

impl<'a> Ad<'a> {
    // -----------------------------------------------------------------------
    // Top level

    fn run(&mut self, params: &[VarId], body: &t::Expr, wrt: &[usize], single: bool) -> DResult<t::Expr> {
        let mut prologue = Vec::new();
        let mut roots: Vec<Tree> = Vec::new();
        for &p in params {
            let ty = self.vars.get(p.0 as usize).map_or_else(Type::unit, |i| i.ty.clone());
            let tree = match &ty {
                Type::Tensor(_) => Tree::Leaf(Atom::Var(p)),
                Type::Tuple(_) => {
                    let (tree, pat, _) = self.fresh_tree(&ty);
                    prologue.push(t::Stmt::Let(pat, self.ve(p)));
                    tree
                }
            };
            if let Some(env) = self.envs.last_mut() {
                env.0.insert(p, tree.clone());
            }
            roots.push(tree);
        }
        let mut top = Body::default();
        let result = self.conv(body, &mut top.stmts)?;
        let res_atom = match result {
            Tree::Leaf(a) => a,
            Tree::Node(_) => return internal("the differentiated function returns a tuple", self.span),
        };
        top.results = vec![res_atom.clone()];
        // Activity.
        for &i in wrt {
            if let Some(tree) = roots.get(i) {
                for a in tree.flat() {
                    if let Atom::Var(v) = a {
                        if is_float(&self.vty(v)) {
                            self.active.insert(v);
                        }
                    }
                }
            }
        }
        self.act_body(&top)?;
        // Backward.
        self.buf.push(Vec::new());
        self.adj.push(HashMap::new());
        let rt = self.aty(&res_atom);
        let one = self.let_(self.cst(rt.dtype, 1.0));
        self.backward(&top, vec![(res_atom.clone(), one)])?;
        let mut grads = Vec::new();
        for &i in wrt {
            let Some(tree) = roots.get(i).cloned() else {
                return internal("argnums out of range", self.span);
            };
            grads.push(self.grad_tree(&tree));
        }
        self.adj.pop();
        let bwd = self.buf.pop().unwrap_or_default();
        // Forward.
        self.buf.push(Vec::new());
        self.emit_forward(&top.stmts, Mode::Primal)?;
        let fwd = self.buf.pop().unwrap_or_default();
        let grads = if single {
            match grads.pop() {
                Some(g) => g,
                None => return internal("no argument to differentiate", self.span),
            }
        } else {
            self.tuple(grads)
        };
        let value = self.ae(&res_atom);
        let out = self.tuple(vec![value, grads]);
        let mut stmts = prologue;
        stmts.extend(fwd);
        stmts.extend(bwd);
        let ty = out.ty.clone();
        Ok(t::Expr { kind: K::Block(stmts, Box::new(out)), ty, span: self.span })
    }

    fn grad_tree(&mut self, tree: &Tree) -> t::Expr {
        match tree {
            Tree::Leaf(Atom::Var(v)) => match self.adj.last().and_then(|m| m.get(v)).copied() {
                Some(g) => self.ve(g),
                None => self.zeros_like(*v),
            },
            Tree::Leaf(Atom::Const(c)) => {
                let ty = TensorTy::known(c.dtype, &c.shape);
                self.zeros(&ty).unwrap_or_else(|_| self.cst(c.dtype, 0.0))
            }
            Tree::Node(ts) => {
                let xs = ts.iter().map(|t| self.grad_tree(t)).collect();
                self.tuple(xs)
            }
        }
    }
}
