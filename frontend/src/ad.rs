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

use crate::diag::{err, DResult, Span};
use crate::typed::{self as t, ConstData, ConstValues, ExprKind as K, Pattern, StaticIndex, VarId, VarInfo};
use crate::types::{broadcast_dims, Dim, TensorTy, Type};
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UnaryOp, UpdateMode};
use std::collections::{HashMap, HashSet};

/// Most flattened statements one differentiated function may produce.
const MAX_STMTS: usize = 2_000_000;

/// A tensor operand: a leaf variable or a constant.
#[derive(Clone, Debug)]
enum Atom {
    Var(VarId),
    Const(ConstData),
}

/// A value's tuple structure over atoms.
#[derive(Clone, Debug)]
enum Tree {
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
    fn flat(&self) -> Vec<Atom> {
        let mut v = Vec::new();
        self.atoms(&mut v);
        v
    }
}

/// A primitive tensor operation (the typed IR's tensor expression kinds).
#[derive(Clone, Debug)]
enum Op {
    Unary(UnaryOp),
    Binary(BinaryOp),
    Select,
    Cast(DType),
    MatMul,
    Reduce(ReduceOp, Option<u32>),
    Reshape(Vec<u64>),
    Transpose(Option<Vec<u32>>),
    Broadcast(Vec<u64>),
    Iota(DType, u64),
    Concat(u32),
    Stack(u32),
    Slice(Vec<StaticIndex>),
    Index,
    Update(UpdateMode),
    ShapeOf,
}

/// A flattened block: statements and result atoms.
#[derive(Debug, Default)]
struct Body {
    stmts: Vec<Stmt>,
    results: Vec<Atom>,
}

#[derive(Debug)]
enum Stmt {
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

#[derive(Debug)]
struct Scan {
    id: usize,
    carry_outs: Vec<VarId>,
    ys_outs: Vec<VarId>,
    init: Vec<Atom>,
    xs: Vec<Atom>,
    length: Option<u64>,
    n: Dim,
    reverse: bool,
    unroll: u32,
    checkpoint: bool,
    carry_p: Vec<VarId>,
    x_p: Vec<VarId>,
    /// Results: the new carry, then the ys.
    body: Body,
}

/// Where the variables of one source expression are typed.
#[derive(Clone, Copy)]
enum Src {
    Root,
    Func(usize),
}

enum ResSrc {
    /// The forward scan stacks `primal` into `stacked`.
    Stack { primal: VarId, stacked: VarId },
    /// The i-th scanned input, passed again.
    Xs(usize),
    /// Already stacked by the forward scan as one of its `ys`.
    Ys(VarId),
}

enum ScopeKind {
    /// A scan body whose values the forward pass saves.
    Residual {
        x_p: Vec<VarId>,
        /// Body results that are `ys`, and the stacked output of each.
        ys: HashMap<VarId, VarId>,
        n: Dim,
        entries: Vec<(VarId, ResSrc)>,
        map: HashMap<VarId, VarId>,
    },
    /// A region whose values the backward pass recomputes.
    Recompute { map: HashMap<VarId, VarId> },
}

struct Scope {
    defined: HashSet<VarId>,
    kind: ScopeKind,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Primal,
    Recompute,
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
        DType::I32 | DType::I64 => ConstValues::Int(vec![v as i64]),
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

/// Number of elements of the Python slice `start:stop:step` over `n`, and its first index.
fn slice_range(n: i64, start: Option<i64>, stop: Option<i64>, step: i64) -> (i64, i64) {
    let norm = |v: i64, lo: i64, hi: i64| {
        let v = if v < 0 { v.saturating_add(n) } else { v };
        v.clamp(lo, hi)
    };
    if step > 0 {
        let a = start.map_or(0, |v| norm(v, 0, n));
        let b = stop.map_or(n, |v| norm(v, 0, n));
        let len = if b > a { (b - a + step - 1) / step } else { 0 };
        (a, len)
    } else {
        let a = start.map_or(n - 1, |v| norm(v, -1, n - 1));
        let b = stop.map_or(-1, |v| norm(v, -1, n - 1));
        let s = step.saturating_neg();
        let len = if a > b { (a - b + s - 1) / s } else { 0 };
        (a, len)
    }
}

impl<'a> Ad<'a> {
    // -----------------------------------------------------------------------
    // Variables and expression builders

    fn new_var(&mut self, ty: Type) -> VarId {
        let id = VarId(u32::try_from(self.vars.len()).unwrap_or(u32::MAX));
        self.vars.push(VarInfo { name: "_".into(), ty });
        id
    }

    fn new_leaf(&mut self, ty: &TensorTy) -> VarId {
        self.new_var(Type::Tensor(ty.clone()))
    }

    fn vty(&self, v: VarId) -> TensorTy {
        match self.vars.get(v.0 as usize).map(|i| &i.ty) {
            Some(Type::Tensor(t)) => t.clone(),
            _ => TensorTy::scalar(DType::F32),
        }
    }

    fn aty(&self, a: &Atom) -> TensorTy {
        match a {
            Atom::Var(v) => self.vty(*v),
            Atom::Const(c) => TensorTy::known(c.dtype, &c.shape),
        }
    }

    fn mk(&self, kind: K, ty: TensorTy) -> t::Expr {
        t::Expr { kind, ty: Type::Tensor(ty), span: self.span }
    }

    fn ve(&self, v: VarId) -> t::Expr {
        let ty = self.vars.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone());
        t::Expr { kind: K::Var(v), ty, span: self.span }
    }

    fn ae(&self, a: &Atom) -> t::Expr {
        match a {
            Atom::Var(v) => self.ve(*v),
            Atom::Const(c) => self.mk(K::Const(c.clone()), TensorTy::known(c.dtype, &c.shape)),
        }
    }

    fn tuple(&self, xs: Vec<t::Expr>) -> t::Expr {
        let ty = Type::Tuple(xs.iter().map(|x| x.ty.clone()).collect());
        t::Expr { kind: K::Tuple(xs), ty, span: self.span }
    }

    fn cst(&self, dtype: DType, v: f64) -> t::Expr {
        self.mk(K::Const(scalar_const(dtype, v)), TensorTy::scalar(dtype))
    }

    fn et(e: &t::Expr) -> TensorTy {
        e.ty.tensor().cloned().unwrap_or_else(|| TensorTy::scalar(DType::F32))
    }

    fn bin(&self, op: BinaryOp, a: t::Expr, b: t::Expr) -> t::Expr {
        let (at, bt) = (Self::et(&a), Self::et(&b));
        let dims = broadcast_dims(&at.dims, &bt.dims).unwrap_or_else(|_| at.dims.clone());
        let dtype = if op.is_compare() { DType::Bool } else { at.dtype };
        self.mk(K::Binary(op, Box::new(a), Box::new(b)), TensorTy { dtype, dims })
    }

    fn un(&self, op: UnaryOp, a: t::Expr) -> t::Expr {
        let ty = Self::et(&a);
        self.mk(K::Unary(op, Box::new(a)), ty)
    }

    fn sel(&self, c: t::Expr, a: t::Expr, b: t::Expr) -> t::Expr {
        let (ct, at, bt) = (Self::et(&c), Self::et(&a), Self::et(&b));
        let d1 = broadcast_dims(&at.dims, &bt.dims).unwrap_or_else(|_| at.dims.clone());
        let dims = broadcast_dims(&ct.dims, &d1).unwrap_or(d1);
        self.mk(K::Select(Box::new(c), Box::new(a), Box::new(b)), TensorTy { dtype: at.dtype, dims })
    }

    fn reduce(&self, op: ReduceOp, a: t::Expr, axis: Option<u32>) -> t::Expr {
        let at = Self::et(&a);
        let dims = match axis {
            None => Vec::new(),
            Some(k) => at.dims.iter().enumerate().filter(|(i, _)| *i != k as usize).map(|(_, d)| d.clone()).collect(),
        };
        self.mk(K::Reduce(op, Box::new(a), axis), TensorTy { dtype: op.result_dtype(at.dtype), dims })
    }

    fn transpose(&self, a: t::Expr, perm: Option<Vec<u32>>) -> t::Expr {
        let at = Self::et(&a);
        let dims = match &perm {
            None => at.dims.iter().rev().cloned().collect(),
            Some(p) => p.iter().filter_map(|i| at.dims.get(*i as usize).cloned()).collect(),
        };
        self.mk(K::Transpose(Box::new(a), perm), TensorTy { dtype: at.dtype, dims })
    }

    fn matmul(&self, a: t::Expr, b: t::Expr) -> t::Expr {
        let (at, bt) = (Self::et(&a), Self::et(&b));
        let dims = match (at.dims.as_slice(), bt.dims.as_slice()) {
            ([m, _], [_, n]) => vec![m.clone(), n.clone()],
            ([m, _], [_]) => vec![m.clone()],
            ([_], [_, n]) => vec![n.clone()],
            _ => Vec::new(),
        };
        self.mk(K::MatMul(Box::new(a), Box::new(b)), TensorTy { dtype: at.dtype, dims })
    }

    /// Inserts an axis of size 1 at `k`.
    fn expand(&self, a: t::Expr, k: usize) -> t::Expr {
        let at = Self::et(&a);
        let mut dims = at.dims.clone();
        dims.insert(k.min(dims.len()), Dim::Known(1));
        let ty = TensorTy { dtype: at.dtype, dims };
        match known(&ty.dims) {
            Some(shape) => self.mk(K::Reshape(Box::new(a), shape), ty),
            None => self.mk(K::Stack(vec![a], k as u32), ty),
        }
    }

    fn slice(&self, a: t::Expr, specs: Vec<StaticIndex>) -> DResult<t::Expr> {
        let at = Self::et(&a);
        let mut dims = Vec::new();
        for (k, s) in specs.iter().enumerate() {
            let d = at.dims.get(k).cloned().unwrap_or(Dim::Known(0));
            match s {
                StaticIndex::At(_) => {}
                StaticIndex::Range { start: None, stop: None, step: 1 | -1 } => dims.push(d),
                StaticIndex::Range { start, stop, step } => match d {
                    Dim::Known(n) => {
                        let (_, len) = slice_range(n as i64, *start, *stop, *step);
                        dims.push(Dim::Known(len.max(0) as u64));
                    }
                    Dim::Var(_) => return internal("slice of a symbolic axis", self.span),
                },
            }
        }
        dims.extend(at.dims.iter().skip(specs.len()).cloned());
        Ok(self.mk(K::Slice(Box::new(a), specs), TensorTy { dtype: at.dtype, dims }))
    }

    /// Zeros of a known shape.
    fn zeros(&self, ty: &TensorTy) -> DResult<t::Expr> {
        let Some(shape) = known(&ty.dims) else {
            return err(
                format!("cannot differentiate here: a zero gradient of the symbolic type {ty} is needed"),
                self.span,
            );
        };
        let z = self.cst(ty.dtype, 0.0);
        if shape.is_empty() {
            return Ok(z);
        }
        Ok(self.mk(K::Broadcast(Box::new(z), shape), ty.clone()))
    }

    /// Zeros shaped like the primal variable `v` (as seen from the current scope).
    fn zeros_like(&mut self, v: VarId) -> t::Expr {
        let ty = self.vty(v);
        if let Ok(z) = self.zeros(&ty) {
            return z;
        }
        let p = self.use_primal(v);
        let f = self.mk(K::Const(scalar_const(DType::Bool, 0.0)), TensorTy::scalar(DType::Bool));
        let z = self.cst(ty.dtype, 0.0);
        self.sel(f, self.ve(p), z)
    }

    /// `g` (of a broadcast result) summed back to the operand type `to`.
    fn unbroadcast(&self, g: t::Expr, to: &TensorTy) -> t::Expr {
        let mut e = g;
        while Self::et(&e).rank() > to.rank() {
            e = self.reduce(ReduceOp::Sum, e, Some(0));
        }
        for (k, d) in to.dims.iter().enumerate() {
            let cur = Self::et(&e);
            if *d == Dim::Known(1) && cur.dims.get(k) != Some(&Dim::Known(1)) {
                e = self.reduce(ReduceOp::Sum, e, Some(k as u32));
                e = self.expand(e, k);
            }
        }
        e
    }

    /// `g` broadcast to `to` (`like` is a primal value of that type, for symbolic shapes).
    fn broadcast_to(&mut self, g: t::Expr, to: &TensorTy, like: &Atom) -> t::Expr {
        if Self::et(&g).dims == to.dims {
            return g;
        }
        match known(&to.dims) {
            Some(shape) => self.mk(K::Broadcast(Box::new(g), shape), to.clone()),
            None => {
                let tr = self.mk(K::Const(scalar_const(DType::Bool, 1.0)), TensorTy::scalar(DType::Bool));
                let l = self.pv(like);
                self.sel(tr, g, l)
            }
        }
    }

    fn emit(&mut self, s: t::Stmt) {
        if let Some(b) = self.buf.last_mut() {
            b.push(s);
        }
    }

    /// Binds `e` (a tensor) to a new variable.
    fn let_(&mut self, e: t::Expr) -> VarId {
        let v = self.new_var(e.ty.clone());
        self.emit(t::Stmt::Let(Pattern::Var(v), e));
        v
    }

    fn count(&mut self) -> DResult<()> {
        self.stmts += 1;
        if self.stmts > MAX_STMTS {
            return err(format!("program too large to differentiate: more than {MAX_STMTS} operations"), self.span);
        }
        Ok(())
    }

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

    // -----------------------------------------------------------------------
    // Flattening

    fn src_ty(&self, v: VarId) -> Type {
        let src = self.envs.last().map_or(Src::Root, |e| e.1);
        let table: &[VarInfo] = match src {
            Src::Root => &self.root_src,
            Src::Func(f) => self.funcs.get(f).map_or(&[], |f| f.vars.as_slice()),
        };
        table.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone())
    }

    /// Fresh leaf variables for a value of type `ty`: the tree, a pattern binding them, the leaves.
    fn fresh_tree(&mut self, ty: &Type) -> (Tree, Pattern, Vec<VarId>) {
        match ty {
            Type::Tensor(tt) => {
                let v = self.new_leaf(tt);
                (Tree::Leaf(Atom::Var(v)), Pattern::Var(v), vec![v])
            }
            Type::Tuple(ts) => {
                let mut trees = Vec::new();
                let mut pats = Vec::new();
                let mut leaves = Vec::new();
                for t in ts {
                    let (tr, p, l) = self.fresh_tree(t);
                    trees.push(tr);
                    pats.push(p);
                    leaves.extend(l);
                }
                (Tree::Node(trees), Pattern::Tuple(pats), leaves)
            }
        }
    }

    fn tree_expr(&self, tree: &Tree) -> t::Expr {
        match tree {
            Tree::Leaf(a) => self.ae(a),
            Tree::Node(ts) => self.tuple(ts.iter().map(|t| self.tree_expr(t)).collect()),
        }
    }

    fn bind(&mut self, p: &Pattern, tree: Tree) -> DResult<()> {
        match (p, tree) {
            (Pattern::Var(v), tree) => {
                if let Some(env) = self.envs.last_mut() {
                    env.0.insert(*v, tree);
                }
                Ok(())
            }
            (Pattern::Wild(_), _) => Ok(()),
            (Pattern::Tuple(ps), Tree::Node(ts)) if ps.len() == ts.len() => {
                for (p, t) in ps.iter().zip(ts) {
                    self.bind(p, t)?;
                }
                Ok(())
            }
            _ => internal("a pattern does not match its value", self.span),
        }
    }

    fn lookup(&mut self, v: VarId, out: &mut Vec<Stmt>) -> DResult<Tree> {
        if let Some(t) = self.envs.last().and_then(|e| e.0.get(&v)) {
            return Ok(t.clone());
        }
        if self.envs.len() != 1 {
            return internal("a variable of an inlined function is unbound", self.span);
        }
        // A variable from outside the differentiated expression: a constant.
        let ty = self.src_ty(v);
        let tree = match &ty {
            Type::Tensor(_) => Tree::Leaf(Atom::Var(v)),
            Type::Tuple(_) => {
                let (tree, pat, outs) = self.fresh_tree(&ty);
                let expr = t::Expr { kind: K::Var(v), ty: ty.clone(), span: self.span };
                out.push(Stmt::Opaque { outs, pat, expr, inputs: Vec::new(), what: "", span: self.span });
                tree
            }
        };
        if let Some(env) = self.envs.last_mut() {
            env.0.insert(v, tree.clone());
        }
        Ok(tree)
    }

    fn atom(&mut self, e: &t::Expr, out: &mut Vec<Stmt>) -> DResult<Atom> {
        match self.conv(e, out)? {
            Tree::Leaf(a) => Ok(a),
            Tree::Node(_) => internal("a tuple where a tensor was expected", e.span),
        }
    }

    fn prim(&mut self, op: Op, args: Vec<Atom>, ty: &Type, out: &mut Vec<Stmt>) -> DResult<Tree> {
        self.count()?;
        let Type::Tensor(tt) = ty else {
            return internal("a tensor operation with a tuple type", self.span);
        };
        let v = self.new_leaf(tt);
        out.push(Stmt::Prim { out: v, op, args });
        Ok(Tree::Leaf(Atom::Var(v)))
    }

    fn conv_body(&mut self, e: &t::Expr) -> DResult<Body> {
        let mut b = Body::default();
        let tree = self.conv(e, &mut b.stmts)?;
        b.results = tree.flat();
        Ok(b)
    }

    fn conv(&mut self, e: &t::Expr, out: &mut Vec<Stmt>) -> DResult<Tree> {
        macro_rules! a {
            ($x:expr) => {
                self.atom($x, out)?
            };
        }
        match &e.kind {
            K::Var(v) => self.lookup(*v, out),
            K::Const(c) => Ok(Tree::Leaf(Atom::Const(c.clone()))),
            K::Unary(op, x) => {
                let x = a!(x);
                self.prim(Op::Unary(*op), vec![x], &e.ty, out)
            }
            K::Binary(op, x, y) => {
                let (x, y) = (a!(x), a!(y));
                self.prim(Op::Binary(*op), vec![x, y], &e.ty, out)
            }
            K::Select(c, x, y) => {
                let (c, x, y) = (a!(c), a!(x), a!(y));
                self.prim(Op::Select, vec![c, x, y], &e.ty, out)
            }
            K::Cast(x, d) => {
                let x = a!(x);
                self.prim(Op::Cast(*d), vec![x], &e.ty, out)
            }
            K::MatMul(x, y) => {
                let (x, y) = (a!(x), a!(y));
                self.prim(Op::MatMul, vec![x, y], &e.ty, out)
            }
            K::Reduce(op, x, axis) => {
                let x = a!(x);
                self.prim(Op::Reduce(*op, *axis), vec![x], &e.ty, out)
            }
            K::Reshape(x, s) => {
                let x = a!(x);
                self.prim(Op::Reshape(s.clone()), vec![x], &e.ty, out)
            }
            K::Transpose(x, p) => {
                let x = a!(x);
                self.prim(Op::Transpose(p.clone()), vec![x], &e.ty, out)
            }
            K::Broadcast(x, s) => {
                let x = a!(x);
                self.prim(Op::Broadcast(s.clone()), vec![x], &e.ty, out)
            }
            K::Iota(d, n) => self.prim(Op::Iota(*d, *n), Vec::new(), &e.ty, out),
            K::Concat(xs, axis) | K::Stack(xs, axis) => {
                let mut args = Vec::new();
                for x in xs {
                    args.push(a!(x));
                }
                let op = if matches!(e.kind, K::Concat(..)) { Op::Concat(*axis) } else { Op::Stack(*axis) };
                self.prim(op, args, &e.ty, out)
            }
            K::Slice(x, specs) => {
                let x = a!(x);
                self.prim(Op::Slice(specs.clone()), vec![x], &e.ty, out)
            }
            K::Index(x, idx) => {
                let mut args = vec![a!(x)];
                for i in idx {
                    args.push(a!(i));
                }
                self.prim(Op::Index, args, &e.ty, out)
            }
            K::Update { mode, base, idx, value } => {
                let mut args = vec![a!(base)];
                for i in idx {
                    args.push(a!(i));
                }
                args.push(a!(value));
                self.prim(Op::Update(*mode), args, &e.ty, out)
            }
            K::ShapeOf(x) => {
                let x = a!(x);
                self.prim(Op::ShapeOf, vec![x], &e.ty, out)
            }
            K::Print(x) => {
                let tree = self.conv(x, out)?;
                out.push(Stmt::Print(tree.flat()));
                Ok(Tree::Node(Vec::new()))
            }
            K::Tuple(xs) => {
                let mut ts = Vec::new();
                for x in xs {
                    ts.push(self.conv(x, out)?);
                }
                Ok(Tree::Node(ts))
            }
            K::Block(stmts, r) => {
                for s in stmts {
                    match s {
                        t::Stmt::Let(p, v) => {
                            let tree = self.conv(v, out)?;
                            self.bind(p, tree)?;
                        }
                        t::Stmt::Expr(v) => {
                            self.conv(v, out)?;
                        }
                    }
                }
                self.conv(r, out)
            }
            K::If(c, x, y) => {
                let cond = a!(c);
                let then_ = self.conv_body(x)?;
                let else_ = self.conv_body(y)?;
                let (tree, _, outs) = self.fresh_tree(&e.ty);
                self.count()?;
                out.push(Stmt::If { outs, cond, then_, else_ });
                Ok(tree)
            }
            K::Call(fid, args) => {
                let mut trees = Vec::new();
                for x in args {
                    trees.push(self.conv(x, out)?);
                }
                let Some(f) = self.funcs.get(fid.0 as usize) else {
                    return internal("a call of an unknown function", e.span);
                };
                self.envs.push((HashMap::new(), Src::Func(fid.0 as usize)));
                for ((_, p), tree) in f.params.iter().zip(trees) {
                    self.bind(&Pattern::Var(*p), tree)?;
                }
                let r = self.conv(&f.body, out);
                self.envs.pop();
                r
            }
            K::Fori { lo, hi, init, body, unroll } => {
                let lo_a = a!(lo);
                let hi_a = a!(hi);
                match (&lo_a, &hi_a) {
                    (Atom::Const(l), Atom::Const(h)) => {
                        let (Some(l), Some(h)) = (const_int(l), const_int(h)) else {
                            return internal("non-integer loop bounds", e.span);
                        };
                        let init = self.conv(init, out)?;
                        self.static_fori(e, l, h, init, body, *unroll, out)
                    }
                    _ => self.opaque(e, "a `fori_loop` with dynamic bounds", out),
                }
            }
            K::While { init, cond, body, max_iters: Some(k) } => {
                let init = self.conv(init, out)?;
                self.bounded_while(e, init, cond, body, *k, out)
            }
            K::While { max_iters: None, .. } => self.opaque(e, "a `while_loop` without `max_iters`", out),
            K::Scan { init, xs, length, reverse, unroll, checkpoint, body } => {
                let init_t = self.conv(init, out)?;
                let init_ty = init.ty.clone();
                let (xs_t, x_ty, n) = match xs {
                    Some(x) => {
                        let tree = self.conv(x, out)?;
                        let n =
                            x.ty.leaves()
                                .first()
                                .and_then(|l| l.dims.first().cloned())
                                .unwrap_or(Dim::Known(length.unwrap_or(0)));
                        let x_ty = x.ty.map_leaves(&mut |t| TensorTy {
                            dtype: t.dtype,
                            dims: t.dims.get(1..).map(<[Dim]>::to_vec).unwrap_or_default(),
                        });
                        (Some(tree), x_ty, n)
                    }
                    None => (None, Type::unit(), Dim::Known(length.unwrap_or(0))),
                };
                let (c_tree, _, carry_p) = self.fresh_tree(&init_ty);
                let (x_tree, _, x_p) = self.fresh_tree(&x_ty);
                if let Some(p) = body.params.first() {
                    self.bind(p, c_tree)?;
                }
                if let Some(p) = body.params.get(1) {
                    self.bind(p, x_tree)?;
                }
                let mut b = Body::default();
                let r = self.conv(&body.body, &mut b.stmts)?;
                let (c_r, y_r) = match r {
                    Tree::Node(mut v) if v.len() == 2 => {
                        let y = v.pop().unwrap_or(Tree::Node(Vec::new()));
                        let c = v.pop().unwrap_or(Tree::Node(Vec::new()));
                        (c, y)
                    }
                    _ => return internal("a scan body that is not a pair", e.span),
                };
                b.results = c_r.flat();
                b.results.extend(y_r.flat());
                let (tree, _, outs) = self.fresh_tree(&e.ty);
                let nc = carry_p.len();
                let carry_outs = outs.get(..nc).map(<[VarId]>::to_vec).unwrap_or_default();
                let ys_outs = outs.get(nc..).map(<[VarId]>::to_vec).unwrap_or_default();
                let id = self.next_scan;
                self.next_scan += 1;
                self.count()?;
                out.push(Stmt::Scan(Box::new(Scan {
                    id,
                    carry_outs,
                    ys_outs,
                    init: init_t.flat(),
                    xs: xs_t.map(|t| t.flat()).unwrap_or_default(),
                    length: *length,
                    n,
                    reverse: *reverse,
                    unroll: *unroll,
                    checkpoint: *checkpoint,
                    carry_p,
                    x_p,
                    body: b,
                })));
                Ok(tree)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn static_fori(
        &mut self,
        e: &t::Expr,
        lo: i64,
        hi: i64,
        init: Tree,
        body: &t::Lambda,
        unroll: u32,
        out: &mut Vec<Stmt>,
    ) -> DResult<Tree> {
        let n = u64::try_from(hi.saturating_sub(lo)).unwrap_or(0);
        let ity = match &e.kind {
            K::Fori { lo, .. } => lo.ty.tensor().map_or(DType::I32, |t| t.dtype),
            _ => DType::I32,
        };
        let iota = self.new_leaf(&TensorTy::known(ity, &[n]));
        out.push(Stmt::Prim { out: iota, op: Op::Iota(ity, n), args: Vec::new() });
        let xs = if lo == 0 {
            iota
        } else {
            let v = self.new_leaf(&TensorTy::known(ity, &[n]));
            let lo_c = Atom::Const(scalar_const(ity, lo as f64));
            out.push(Stmt::Prim { out: v, op: Op::Binary(BinaryOp::Add), args: vec![Atom::Var(iota), lo_c] });
            v
        };
        let (c_tree, _, carry_p) = self.fresh_tree(&e.ty);
        let i_p = self.new_leaf(&TensorTy::scalar(ity));
        if let Some(p) = body.params.first() {
            self.bind(p, Tree::Leaf(Atom::Var(i_p)))?;
        }
        if let Some(p) = body.params.get(1) {
            self.bind(p, c_tree)?;
        }
        let b = self.conv_body(&body.body)?;
        let (tree, _, carry_outs) = self.fresh_tree(&e.ty);
        let id = self.next_scan;
        self.next_scan += 1;
        self.count()?;
        out.push(Stmt::Scan(Box::new(Scan {
            id,
            carry_outs,
            ys_outs: Vec::new(),
            init: init.flat(),
            xs: vec![Atom::Var(xs)],
            length: Some(n),
            n: Dim::Known(n),
            reverse: false,
            unroll,
            checkpoint: false,
            carry_p,
            x_p: vec![i_p],
            body: b,
        })));
        Ok(tree)
    }

    /// `while_loop(cond, body, init, max_iters: k)` as a scan of length k over
    /// `(carry, running)`: `running' = running && cond(carry)`,
    /// `carry' = if running' { body(carry) } else { carry }`.
    #[allow(clippy::too_many_arguments)]
    fn bounded_while(
        &mut self,
        e: &t::Expr,
        init: Tree,
        cond: &t::Lambda,
        body: &t::Lambda,
        k: u64,
        out: &mut Vec<Stmt>,
    ) -> DResult<Tree> {
        let (c_tree, _, carry_p) = self.fresh_tree(&e.ty);
        let bool_ty = TensorTy::scalar(DType::Bool);
        let go_p = self.new_leaf(&bool_ty);
        let mut b = Body::default();
        // running' = if running { cond(carry) } else { false }
        if let Some(p) = cond.params.first() {
            self.bind(p, c_tree.clone())?;
        }
        let cond_b = self.conv_body(&cond.body)?;
        let go2 = self.new_leaf(&bool_ty);
        let false_b = Body { stmts: Vec::new(), results: vec![Atom::Const(scalar_const(DType::Bool, 0.0))] };
        b.stmts.push(Stmt::If { outs: vec![go2], cond: Atom::Var(go_p), then_: cond_b, else_: false_b });
        // carry' = if running' { body(carry) } else { carry }
        if let Some(p) = body.params.first() {
            self.bind(p, c_tree.clone())?;
        }
        let body_b = self.conv_body(&body.body)?;
        let keep_b = Body { stmts: Vec::new(), results: c_tree.flat() };
        let (_, _, c2) = self.fresh_tree(&e.ty);
        b.stmts.push(Stmt::If { outs: c2.clone(), cond: Atom::Var(go2), then_: body_b, else_: keep_b });
        b.results = c2.iter().map(|v| Atom::Var(*v)).collect();
        b.results.push(Atom::Var(go2));
        let (tree, _, mut carry_outs) = self.fresh_tree(&e.ty);
        carry_outs.push(self.new_leaf(&bool_ty));
        let mut carry_p_all = carry_p;
        carry_p_all.push(go_p);
        let mut init_a = init.flat();
        init_a.push(Atom::Const(scalar_const(DType::Bool, 1.0)));
        let id = self.next_scan;
        self.next_scan += 1;
        self.count()?;
        out.push(Stmt::Scan(Box::new(Scan {
            id,
            carry_outs,
            ys_outs: Vec::new(),
            init: init_a,
            xs: Vec::new(),
            length: Some(k),
            n: Dim::Known(k),
            reverse: false,
            unroll: 1,
            checkpoint: false,
            carry_p: carry_p_all,
            x_p: Vec::new(),
            body: b,
        })));
        Ok(tree)
    }

    /// Keeps `e` whole (renamed into the output variables).
    fn opaque(&mut self, e: &t::Expr, what: &'static str, out: &mut Vec<Stmt>) -> DResult<Tree> {
        let mut bound = HashSet::new();
        let mut used = Vec::new();
        collect_vars(e, &mut bound, &mut used);
        let mut free = HashMap::new();
        let mut inputs = Vec::new();
        for v in used {
            if bound.contains(&v) || free.contains_key(&v) {
                continue;
            }
            let tree = self.lookup(v, out)?;
            for a in tree.flat() {
                if let Atom::Var(x) = a {
                    inputs.push(x);
                }
            }
            free.insert(v, self.tree_expr(&tree));
        }
        let mut renames = HashMap::new();
        let copied = self.copy_expr(e, &free, &mut renames, true)?;
        let (tree, pat, outs) = self.fresh_tree(&e.ty);
        self.count()?;
        out.push(Stmt::Opaque { outs, pat, expr: copied, inputs, what, span: e.span });
        Ok(tree)
    }

    /// Copies `e`, replacing the free variables in `free` and giving every
    /// bound variable a fresh one (typed from the source table when `from_src`).
    fn copy_expr(
        &mut self,
        e: &t::Expr,
        free: &HashMap<VarId, t::Expr>,
        ren: &mut HashMap<VarId, VarId>,
        from_src: bool,
    ) -> DResult<t::Expr> {
        macro_rules! c {
            ($x:expr) => {
                Box::new(self.copy_expr($x, free, ren, from_src)?)
            };
        }
        macro_rules! cs {
            ($xs:expr) => {{
                let mut v = Vec::new();
                for x in $xs {
                    v.push(self.copy_expr(x, free, ren, from_src)?);
                }
                v
            }};
        }
        let kind = match &e.kind {
            K::Var(v) => {
                if let Some(n) = ren.get(v) {
                    K::Var(*n)
                } else if let Some(x) = free.get(v) {
                    return Ok(x.clone());
                } else {
                    K::Var(*v)
                }
            }
            K::Const(k) => K::Const(k.clone()),
            K::Unary(op, x) => K::Unary(*op, c!(x)),
            K::Binary(op, x, y) => K::Binary(*op, c!(x), c!(y)),
            K::Select(a, x, y) => K::Select(c!(a), c!(x), c!(y)),
            K::Cast(x, d) => K::Cast(c!(x), *d),
            K::MatMul(x, y) => K::MatMul(c!(x), c!(y)),
            K::Reduce(op, x, a) => K::Reduce(*op, c!(x), *a),
            K::Reshape(x, s) => K::Reshape(c!(x), s.clone()),
            K::Transpose(x, p) => K::Transpose(c!(x), p.clone()),
            K::Broadcast(x, s) => K::Broadcast(c!(x), s.clone()),
            K::Iota(d, n) => K::Iota(*d, *n),
            K::Concat(xs, a) => K::Concat(cs!(xs), *a),
            K::Stack(xs, a) => K::Stack(cs!(xs), *a),
            K::Slice(x, s) => K::Slice(c!(x), s.clone()),
            K::Index(x, idx) => K::Index(c!(x), cs!(idx)),
            K::Update { mode, base, idx, value } => {
                K::Update { mode: *mode, base: c!(base), idx: cs!(idx), value: c!(value) }
            }
            K::ShapeOf(x) => K::ShapeOf(c!(x)),
            K::Print(x) => K::Print(c!(x)),
            K::Tuple(xs) => K::Tuple(cs!(xs)),
            K::Block(stmts, r) => {
                let mut out = Vec::new();
                for s in stmts {
                    out.push(match s {
                        t::Stmt::Let(p, v) => {
                            let v = self.copy_expr(v, free, ren, from_src)?;
                            t::Stmt::Let(self.copy_pat(p, ren, from_src), v)
                        }
                        t::Stmt::Expr(v) => t::Stmt::Expr(self.copy_expr(v, free, ren, from_src)?),
                    });
                }
                K::Block(out, c!(r))
            }
            K::If(a, x, y) => K::If(c!(a), c!(x), c!(y)),
            K::Call(f, args) => K::Call(*f, cs!(args)),
            K::Fori { lo, hi, init, body, unroll } => {
                let (lo, hi, init) = (c!(lo), c!(hi), c!(init));
                let body = self.copy_lambda(body, free, ren, from_src)?;
                K::Fori { lo, hi, init, body, unroll: *unroll }
            }
            K::While { init, cond, body, max_iters } => {
                let init = c!(init);
                let cond = self.copy_lambda(cond, free, ren, from_src)?;
                let body = self.copy_lambda(body, free, ren, from_src)?;
                K::While { init, cond, body, max_iters: *max_iters }
            }
            K::Scan { init, xs, length, reverse, unroll, checkpoint, body } => {
                let init = c!(init);
                let xs = match xs {
                    Some(x) => Some(c!(x)),
                    None => None,
                };
                let body = self.copy_lambda(body, free, ren, from_src)?;
                K::Scan { init, xs, length: *length, reverse: *reverse, unroll: *unroll, checkpoint: *checkpoint, body }
            }
        };
        Ok(t::Expr { kind, ty: e.ty.clone(), span: e.span })
    }

    fn copy_lambda(
        &mut self,
        l: &t::Lambda,
        free: &HashMap<VarId, t::Expr>,
        ren: &mut HashMap<VarId, VarId>,
        from_src: bool,
    ) -> DResult<t::Lambda> {
        let params = l.params.iter().map(|p| self.copy_pat(p, ren, from_src)).collect();
        let body = Box::new(self.copy_expr(&l.body, free, ren, from_src)?);
        Ok(t::Lambda { params, body })
    }

    fn copy_pat(&mut self, p: &Pattern, ren: &mut HashMap<VarId, VarId>, from_src: bool) -> Pattern {
        match p {
            Pattern::Var(v) => {
                let ty = if from_src {
                    self.src_ty(*v)
                } else {
                    self.vars.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone())
                };
                let n = self.new_var(ty);
                ren.insert(*v, n);
                Pattern::Var(n)
            }
            Pattern::Wild(t) => Pattern::Wild(t.clone()),
            Pattern::Tuple(ps) => Pattern::Tuple(ps.iter().map(|p| self.copy_pat(p, ren, from_src)).collect()),
        }
    }

    // -----------------------------------------------------------------------
    // Activity

    fn is_active(&self, a: &Atom) -> bool {
        matches!(a, Atom::Var(v) if self.active.contains(v))
    }

    fn mark(&mut self, v: VarId) -> bool {
        if is_float(&self.vty(v)) {
            self.active.insert(v)
        } else {
            false
        }
    }

    fn act_body(&mut self, b: &Body) -> DResult<()> {
        for s in &b.stmts {
            match s {
                Stmt::Prim { out, args, .. } => {
                    if args.iter().any(|a| self.is_active(a)) {
                        self.mark(*out);
                    }
                }
                Stmt::Print(_) => {}
                Stmt::If { outs, then_, else_, .. } => {
                    self.act_body(then_)?;
                    self.act_body(else_)?;
                    for (k, o) in outs.iter().enumerate() {
                        let act = then_.results.get(k).is_some_and(|a| self.is_active(a))
                            || else_.results.get(k).is_some_and(|a| self.is_active(a));
                        if act {
                            self.mark(*o);
                        }
                    }
                }
                Stmt::Scan(sc) => {
                    for (x, p) in sc.xs.iter().zip(&sc.x_p) {
                        if self.is_active(x) {
                            self.mark(*p);
                        }
                    }
                    for (a, p) in sc.init.iter().zip(&sc.carry_p) {
                        if self.is_active(a) {
                            self.mark(*p);
                        }
                    }
                    loop {
                        self.act_body(&sc.body)?;
                        let mut changed = false;
                        for (r, p) in sc.body.results.iter().zip(&sc.carry_p) {
                            if self.is_active(r) && self.mark(*p) {
                                changed = true;
                            }
                        }
                        if !changed {
                            break;
                        }
                    }
                    for (p, o) in sc.carry_p.iter().zip(&sc.carry_outs) {
                        if self.active.contains(p) {
                            self.mark(*o);
                        }
                    }
                    let nc = sc.carry_p.len();
                    for (r, o) in sc.body.results.iter().skip(nc).zip(&sc.ys_outs) {
                        if self.is_active(r) {
                            self.mark(*o);
                        }
                    }
                }
                Stmt::Opaque { outs, inputs, what, span, .. } => {
                    let act_in = inputs.iter().any(|v| self.active.contains(v));
                    let float_out = outs.iter().any(|v| is_float(&self.vty(*v)));
                    if act_in && float_out {
                        let hint = if what.contains("while_loop") {
                            "add `max_iters: K` (a bound on the number of iterations) to make it differentiable, or use `scan` or a `fori_loop` with static bounds"
                        } else {
                            "use literal bounds, `scan`, or a `while_loop` with `max_iters: K`"
                        };
                        return Err(Box::new(
                            crate::diag::Diagnostic::new(
                                format!("cannot differentiate through {what}: reverse mode needs a bounded loop"),
                                *span,
                            )
                            .with_label(self.span, "differentiated here")
                            .with_note(hint),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Primal values seen from the backward code

    /// The variable that holds primal value `v` where backward code is being emitted.
    fn use_primal(&mut self, v: VarId) -> VarId {
        let Some(i) = self.scopes.iter().rposition(|s| s.defined.contains(&v)) else {
            return v;
        };
        let ty = self.vars.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone());
        enum Need {
            Have(VarId),
            Recompute,
            Residual(Option<usize>, Option<VarId>, Dim),
        }
        let need = match self.scopes.get(i).map(|s| &s.kind) {
            Some(ScopeKind::Recompute { map }) => match map.get(&v) {
                Some(x) => Need::Have(*x),
                None => Need::Recompute,
            },
            Some(ScopeKind::Residual { map, x_p, ys, n, .. }) => match map.get(&v) {
                Some(x) => Need::Have(*x),
                None => Need::Residual(x_p.iter().position(|x| *x == v), ys.get(&v).copied(), n.clone()),
            },
            None => return v,
        };
        match need {
            Need::Have(x) => x,
            Need::Recompute => {
                let x = self.new_var(ty);
                if let Some(ScopeKind::Recompute { map }) = self.scopes.get_mut(i).map(|s| &mut s.kind) {
                    map.insert(v, x);
                }
                x
            }
            Need::Residual(xi, yo, n) => {
                let param = self.new_var(ty.clone());
                let src = match (xi, yo) {
                    (Some(k), _) => ResSrc::Xs(k),
                    (None, Some(y)) => ResSrc::Ys(y),
                    (None, None) => {
                        let stacked_ty = ty.map_leaves(&mut |t| {
                            let mut dims = vec![n.clone()];
                            dims.extend(t.dims.iter().cloned());
                            TensorTy { dtype: t.dtype, dims }
                        });
                        let stacked = self.new_var(stacked_ty);
                        for s in self.scopes.iter_mut().take(i) {
                            s.defined.insert(stacked);
                        }
                        ResSrc::Stack { primal: v, stacked }
                    }
                };
                if let Some(ScopeKind::Residual { map, entries, .. }) = self.scopes.get_mut(i).map(|s| &mut s.kind) {
                    map.insert(v, param);
                    entries.push((param, src));
                }
                param
            }
        }
    }

    /// A primal operand as an expression in the backward code.
    fn pv(&mut self, a: &Atom) -> t::Expr {
        match a {
            Atom::Var(v) => {
                let p = self.use_primal(*v);
                self.ve(p)
            }
            Atom::Const(_) => self.ae(a),
        }
    }

    // -----------------------------------------------------------------------
    // Backward pass

    fn adjoint(&self, v: VarId) -> Option<VarId> {
        self.adj.last().and_then(|m| m.get(&v)).copied()
    }

    fn accumulate(&mut self, a: &Atom, ct: VarId) {
        let Atom::Var(v) = a else { return };
        if !self.active.contains(v) {
            return;
        }
        let new = match self.adjoint(*v) {
            Some(old) => self.let_(self.bin(BinaryOp::Add, self.ve(old), self.ve(ct))),
            None => ct,
        };
        if let Some(m) = self.adj.last_mut() {
            m.insert(*v, new);
        }
    }

    fn backward(&mut self, b: &Body, seeds: Vec<(Atom, VarId)>) -> DResult<()> {
        for (a, ct) in seeds {
            self.accumulate(&a, ct);
        }
        for s in b.stmts.iter().rev() {
            match s {
                Stmt::Prim { out, op, args } => {
                    let Some(g) = self.adjoint(*out) else { continue };
                    let contribs = self.vjp(*out, op, args, g)?;
                    for (i, e) in contribs {
                        if let Some(a) = args.get(i) {
                            let v = self.let_(e);
                            self.accumulate(a, v);
                        }
                    }
                }
                Stmt::Print(_) | Stmt::Opaque { .. } => {}
                Stmt::If { outs, cond, then_, else_ } => self.bwd_if(outs, cond, then_, else_)?,
                Stmt::Scan(sc) => self.bwd_scan(sc)?,
            }
        }
        Ok(())
    }

    fn free_active(&self, bodies: &[&Body], extra_defs: &[VarId]) -> Vec<VarId> {
        let mut defs: HashSet<VarId> = extra_defs.iter().copied().collect();
        let mut uses = Vec::new();
        for b in bodies {
            body_vars(b, &mut defs, &mut uses);
        }
        let mut seen = HashSet::new();
        uses.into_iter().filter(|v| !defs.contains(v) && self.active.contains(v) && seen.insert(*v)).collect()
    }

    fn bwd_if(&mut self, outs: &[VarId], cond: &Atom, then_: &Body, else_: &Body) -> DResult<()> {
        let cts: Vec<(usize, VarId)> =
            outs.iter().enumerate().filter_map(|(k, o)| self.adjoint(*o).map(|g| (k, g))).collect();
        if cts.is_empty() {
            return Ok(());
        }
        let free = self.free_active(&[then_, else_], &[]);
        if free.is_empty() {
            return Ok(());
        }
        let mut branches = Vec::new();
        for b in [then_, else_] {
            let mut defined = HashSet::new();
            body_vars(b, &mut defined, &mut Vec::new());
            self.scopes.push(Scope { defined, kind: ScopeKind::Recompute { map: HashMap::new() } });
            self.buf.push(Vec::new());
            self.adj.push(HashMap::new());
            let seeds = cts.iter().filter_map(|(k, g)| b.results.get(*k).map(|a| (a.clone(), *g))).collect();
            self.backward(b, seeds)?;
            let mut res = Vec::new();
            for w in &free {
                res.push(match self.adjoint(*w) {
                    Some(g) => self.ve(g),
                    None => self.zeros_like(*w),
                });
            }
            self.adj.pop();
            let bwd = self.buf.pop().unwrap_or_default();
            self.buf.push(Vec::new());
            self.recompute(&b.stmts)?;
            let mut stmts = self.buf.pop().unwrap_or_default();
            self.scopes.pop();
            stmts.extend(bwd);
            let r = self.tuple(res);
            let ty = r.ty.clone();
            branches.push(t::Expr { kind: K::Block(stmts, Box::new(r)), ty, span: self.span });
        }
        let (Some(else_e), Some(then_e)) = (branches.pop(), branches.pop()) else {
            return internal("if branches", self.span);
        };
        let c = self.pv(cond);
        let ty = then_e.ty.clone();
        let outs_v: Vec<VarId> = free
            .iter()
            .map(|w| self.vars.get(w.0 as usize).map_or_else(Type::unit, |i| i.ty.clone()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|ty| self.new_var(ty))
            .collect();
        let pat = Pattern::Tuple(outs_v.iter().map(|v| Pattern::Var(*v)).collect());
        let e = t::Expr { kind: K::If(Box::new(c), Box::new(then_e), Box::new(else_e)), ty, span: self.span };
        self.emit(t::Stmt::Let(pat, e));
        for (w, o) in free.iter().zip(outs_v) {
            self.accumulate(&Atom::Var(*w), o);
        }
        Ok(())
    }

    fn bwd_scan(&mut self, sc: &Scan) -> DResult<()> {
        let nc = sc.carry_p.len();
        let carry_idx: Vec<usize> =
            (0..nc).filter(|j| sc.carry_p.get(*j).is_some_and(|p| self.active.contains(p))).collect();
        let ct_c: Vec<Option<VarId>> =
            carry_idx.iter().map(|j| sc.carry_outs.get(*j).and_then(|o| self.adjoint(*o))).collect();
        let ct_y: Vec<(usize, VarId)> =
            sc.ys_outs.iter().enumerate().filter_map(|(k, o)| self.adjoint(*o).map(|g| (k, g))).collect();
        if ct_c.iter().all(Option::is_none) && ct_y.is_empty() {
            return Ok(());
        }
        let mut body_defs: Vec<VarId> = sc.carry_p.clone();
        body_defs.extend(sc.x_p.iter().copied());
        let free = self.free_active(&[&sc.body], &body_defs);
        let x_idx: Vec<usize> =
            (0..sc.x_p.len()).filter(|i| sc.x_p.get(*i).is_some_and(|p| self.active.contains(p))).collect();
        // Initial cotangent carry (in the enclosing scope).
        let mut init_e = Vec::new();
        for (j, c) in carry_idx.iter().zip(&ct_c) {
            init_e.push(match c {
                Some(g) => self.ve(*g),
                None => match sc.carry_outs.get(*j) {
                    Some(o) => self.zeros_like(*o),
                    None => return internal("scan carry", self.span),
                },
            });
        }
        for w in &free {
            init_e.push(self.zeros_like(*w));
        }
        // The backward body.
        let mut defined: HashSet<VarId> = body_defs.iter().copied().collect();
        body_vars(&sc.body, &mut defined, &mut Vec::new());
        let kind = if sc.checkpoint {
            ScopeKind::Recompute { map: HashMap::new() }
        } else {
            let mut ys = HashMap::new();
            for (r, o) in sc.body.results.iter().skip(nc).zip(&sc.ys_outs) {
                if let Atom::Var(v) = r {
                    if !sc.carry_p.contains(v) && !sc.x_p.contains(v) {
                        ys.entry(*v).or_insert(*o);
                    }
                }
            }
            ScopeKind::Residual { x_p: sc.x_p.clone(), ys, n: sc.n.clone(), entries: Vec::new(), map: HashMap::new() }
        };
        self.scopes.push(Scope { defined, kind });
        self.buf.push(Vec::new());
        self.adj.push(HashMap::new());
        let mut carry_params = Vec::new();
        let mut seeds = Vec::new();
        for j in &carry_idx {
            let Some(p) = sc.carry_p.get(*j) else { continue };
            let cp = self.new_var(Type::Tensor(self.vty(*p)));
            carry_params.push(cp);
            if let Some(r) = sc.body.results.get(*j) {
                seeds.push((r.clone(), cp));
            }
        }
        for w in &free {
            let acc = self.new_var(Type::Tensor(self.vty(*w)));
            carry_params.push(acc);
            if let Some(m) = self.adj.last_mut() {
                m.insert(*w, acc);
            }
        }
        let mut cty_params = Vec::new();
        for (k, _) in &ct_y {
            let Some(r) = sc.body.results.get(nc + k) else { continue };
            let ty = self.aty(r);
            let p = self.new_leaf(&ty);
            cty_params.push(p);
            seeds.push((r.clone(), p));
        }
        self.backward(&sc.body, seeds)?;
        let mut carry_res = Vec::new();
        for j in &carry_idx {
            let Some(p) = sc.carry_p.get(*j) else { continue };
            carry_res.push(match self.adjoint(*p) {
                Some(g) => self.ve(g),
                None => self.zeros_like(*p),
            });
        }
        for w in &free {
            let Some(g) = self.adjoint(*w) else {
                return internal("lost accumulator", self.span);
            };
            carry_res.push(self.ve(g));
        }
        let mut ys_res = Vec::new();
        for i in &x_idx {
            let Some(p) = sc.x_p.get(*i) else { continue };
            ys_res.push(match self.adjoint(*p) {
                Some(g) => self.ve(g),
                None => self.zeros_like(*p),
            });
        }
        self.adj.pop();
        let bwd = self.buf.pop().unwrap_or_default();
        // Where the inputs of each backward iteration come from.
        let mut x_params: Vec<VarId> = Vec::new();
        let mut xs_src: Vec<Atom> = Vec::new(); // resolved in the enclosing scope after the pop
        let mut stmts = Vec::new();
        let mut residuals = Vec::new();
        if sc.checkpoint {
            for p in &sc.carry_p {
                let rp = self.use_primal(*p);
                let stacked_ty = self.vty(*p);
                let mut dims = vec![sc.n.clone()];
                dims.extend(stacked_ty.dims.iter().cloned());
                let stacked = self.new_leaf(&TensorTy { dtype: stacked_ty.dtype, dims });
                let depth = self.scopes.len().saturating_sub(1);
                for s in self.scopes.iter_mut().take(depth) {
                    s.defined.insert(stacked);
                }
                residuals.push((*p, stacked));
                x_params.push(rp);
                xs_src.push(Atom::Var(stacked));
            }
            for (i, p) in sc.x_p.iter().enumerate() {
                let rp = self.use_primal(*p);
                x_params.push(rp);
                if let Some(x) = sc.xs.get(i) {
                    xs_src.push(x.clone());
                }
            }
            self.buf.push(Vec::new());
            self.recompute(&sc.body.stmts)?;
            stmts = self.buf.pop().unwrap_or_default();
        }
        let scope = self.scopes.pop();
        if let Some(Scope { kind: ScopeKind::Residual { entries, .. }, .. }) = scope {
            for (param, src) in entries {
                x_params.push(param);
                match src {
                    ResSrc::Stack { primal, stacked } => {
                        residuals.push((primal, stacked));
                        xs_src.push(Atom::Var(stacked));
                    }
                    ResSrc::Xs(i) => match sc.xs.get(i) {
                        Some(x) => xs_src.push(x.clone()),
                        None => return internal("scan input", self.span),
                    },
                    ResSrc::Ys(y) => xs_src.push(Atom::Var(y)),
                }
            }
        }
        stmts.extend(bwd);
        self.residuals.insert(sc.id, residuals);
        let mut xs_e: Vec<t::Expr> = xs_src.iter().map(|a| self.pv(a)).collect();
        for (p, (_, g)) in cty_params.iter().zip(&ct_y) {
            x_params.push(*p);
            xs_e.push(self.ve(*g));
        }
        let (xs_opt, length) = if xs_e.is_empty() {
            match (&sc.n, sc.xs.first()) {
                (Dim::Known(n), _) => (None, Some(*n)),
                (Dim::Var(_), Some(x)) => {
                    let xe = self.pv(x);
                    let row = self.aty(x);
                    let dummy = self.new_leaf(&TensorTy {
                        dtype: row.dtype,
                        dims: row.dims.get(1..).map(<[Dim]>::to_vec).unwrap_or_default(),
                    });
                    x_params.push(dummy);
                    (Some(self.tuple(vec![xe])), sc.length)
                }
                (Dim::Var(_), None) => return internal("scan length", self.span),
            }
        } else {
            (Some(self.tuple(xs_e)), sc.length)
        };
        // Outputs.
        let out_carry: Vec<VarId> =
            carry_res.iter().map(|e| e.ty.clone()).collect::<Vec<_>>().into_iter().map(|ty| self.new_var(ty)).collect();
        let out_ys: Vec<VarId> = ys_res
            .iter()
            .map(|e| {
                let tt = Self::et(e);
                let mut dims = vec![sc.n.clone()];
                dims.extend(tt.dims.iter().cloned());
                TensorTy { dtype: tt.dtype, dims }
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|tt| self.new_leaf(&tt))
            .collect();
        let init = self.tuple(init_e);
        let ret = self.tuple(vec![self.tuple(carry_res), self.tuple(ys_res)]);
        let ret_ty = ret.ty.clone();
        let body_e = t::Expr { kind: K::Block(stmts, Box::new(ret)), ty: ret_ty, span: self.span };
        let lam = t::Lambda {
            params: vec![
                Pattern::Tuple(carry_params.iter().map(|v| Pattern::Var(*v)).collect()),
                Pattern::Tuple(x_params.iter().map(|v| Pattern::Var(*v)).collect()),
            ],
            body: Box::new(body_e),
        };
        let ys_ty = Type::Tuple(out_ys.iter().map(|v| Type::Tensor(self.vty(*v))).collect());
        let ty = Type::Tuple(vec![init.ty.clone(), ys_ty]);
        let scan = t::Expr {
            kind: K::Scan {
                init: Box::new(init),
                xs: xs_opt.map(Box::new),
                length,
                reverse: !sc.reverse,
                unroll: sc.unroll,
                checkpoint: false,
                body: lam,
            },
            ty,
            span: self.span,
        };
        let pat = Pattern::Tuple(vec![
            Pattern::Tuple(out_carry.iter().map(|v| Pattern::Var(*v)).collect()),
            Pattern::Tuple(out_ys.iter().map(|v| Pattern::Var(*v)).collect()),
        ]);
        self.emit(t::Stmt::Let(pat, scan));
        // Contributions.
        let mut oc = out_carry.iter();
        for j in &carry_idx {
            if let (Some(o), Some(a)) = (oc.next(), sc.init.get(*j)) {
                self.accumulate(a, *o);
            }
        }
        for w in &free {
            if let Some(o) = oc.next() {
                self.accumulate(&Atom::Var(*w), *o);
            }
        }
        for (i, o) in x_idx.iter().zip(&out_ys) {
            if let Some(a) = sc.xs.get(*i) {
                self.accumulate(a, *o);
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Forward emission

    /// Emits the statements of the innermost (recompute) scope that its backward code needs.
    fn recompute(&mut self, stmts: &[Stmt]) -> DResult<()> {
        let mut needed: HashSet<VarId> = match self.scopes.last().map(|s| &s.kind) {
            Some(ScopeKind::Recompute { map }) => map.keys().copied().collect(),
            _ => return internal("recompute outside a recompute scope", self.span),
        };
        let mut keep = vec![false; stmts.len()];
        for (i, s) in stmts.iter().enumerate().rev() {
            let mut outs = Vec::new();
            stmt_outs(s, &self.residuals, &mut outs);
            if outs.iter().any(|v| needed.contains(v)) {
                if let Some(k) = keep.get_mut(i) {
                    *k = true;
                }
                let mut defs = HashSet::new();
                let mut uses = Vec::new();
                stmt_vars(s, &mut defs, &mut uses);
                needed.extend(uses);
            }
        }
        let kept: Vec<&Stmt> = stmts.iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| s).collect();
        for s in kept {
            self.emit_stmt(s, Mode::Recompute)?;
        }
        Ok(())
    }

    fn emit_forward(&mut self, stmts: &[Stmt], mode: Mode) -> DResult<()> {
        for s in stmts {
            self.emit_stmt(s, mode)?;
        }
        Ok(())
    }

    fn r(&mut self, v: VarId, mode: Mode) -> VarId {
        match mode {
            Mode::Primal => v,
            Mode::Recompute => self.use_primal(v),
        }
    }

    fn ra(&mut self, a: &Atom, mode: Mode) -> t::Expr {
        match a {
            Atom::Var(v) => {
                let x = self.r(*v, mode);
                self.ve(x)
            }
            Atom::Const(_) => self.ae(a),
        }
    }

    fn emit_body(&mut self, b: &Body, extra: &[VarId], mode: Mode) -> DResult<(Vec<t::Stmt>, Vec<t::Expr>)> {
        self.buf.push(Vec::new());
        self.emit_forward(&b.stmts, mode)?;
        let mut res: Vec<t::Expr> = b.results.iter().map(|a| self.ra(a, mode)).collect();
        for v in extra {
            let x = self.r(*v, mode);
            res.push(self.ve(x));
        }
        Ok((self.buf.pop().unwrap_or_default(), res))
    }

    fn emit_stmt(&mut self, s: &Stmt, mode: Mode) -> DResult<()> {
        match s {
            Stmt::Prim { out, op, args } => {
                let args: Vec<t::Expr> = args.iter().map(|a| self.ra(a, mode)).collect();
                let o = self.r(*out, mode);
                let e = self.prim_expr(op, args, self.vty(o))?;
                self.emit(t::Stmt::Let(Pattern::Var(o), e));
            }
            Stmt::Print(atoms) => {
                if mode == Mode::Primal {
                    let xs = atoms.iter().map(|a| self.ae(a)).collect();
                    let x = self.tuple(xs);
                    self.emit(t::Stmt::Expr(t::Expr {
                        kind: K::Print(Box::new(x)),
                        ty: Type::unit(),
                        span: self.span,
                    }));
                }
            }
            Stmt::If { outs, cond, then_, else_ } => {
                let c = self.ra(cond, mode);
                let (ts, tr) = self.emit_body(then_, &[], mode)?;
                let (es, er) = self.emit_body(else_, &[], mode)?;
                let outs: Vec<VarId> = outs.iter().map(|v| self.r(*v, mode)).collect();
                let a = self.block(ts, tr);
                let b = self.block(es, er);
                let ty = a.ty.clone();
                let e = t::Expr { kind: K::If(Box::new(c), Box::new(a), Box::new(b)), ty, span: self.span };
                self.emit(t::Stmt::Let(Pattern::Tuple(outs.into_iter().map(Pattern::Var).collect()), e));
            }
            Stmt::Scan(sc) => {
                let res = self.residuals.get(&sc.id).cloned().unwrap_or_default();
                let init: Vec<t::Expr> = sc.init.iter().map(|a| self.ra(a, mode)).collect();
                let xs: Vec<t::Expr> = sc.xs.iter().map(|a| self.ra(a, mode)).collect();
                let cp: Vec<VarId> = sc.carry_p.iter().map(|v| self.r(*v, mode)).collect();
                let xp: Vec<VarId> = sc.x_p.iter().map(|v| self.r(*v, mode)).collect();
                let extra: Vec<VarId> = res.iter().map(|(p, _)| *p).collect();
                let (stmts, mut results) = self.emit_body(&sc.body, &extra, mode)?;
                let nc = sc.carry_p.len();
                let ys_r = results.split_off(nc.min(results.len()));
                let ret = self.tuple(vec![self.tuple(results), self.tuple(ys_r)]);
                let body = self.block(stmts, vec![ret]);
                let mut outs_c: Vec<VarId> = sc.carry_outs.iter().map(|v| self.r(*v, mode)).collect();
                outs_c.truncate(nc);
                let mut outs_y: Vec<VarId> = sc.ys_outs.iter().map(|v| self.r(*v, mode)).collect();
                for (_, st) in &res {
                    let x = self.r(*st, mode);
                    outs_y.push(x);
                }
                let init = self.tuple(init);
                let ys_ty = Type::Tuple(outs_y.iter().map(|v| Type::Tensor(self.vty(*v))).collect());
                let ty = Type::Tuple(vec![init.ty.clone(), ys_ty]);
                let (xs_opt, length) = if xs.is_empty() {
                    match sc.n {
                        Dim::Known(n) => (None, Some(n)),
                        Dim::Var(_) => return internal("scan without inputs of symbolic length", self.span),
                    }
                } else {
                    (Some(Box::new(self.tuple(xs))), sc.length)
                };
                let lam = t::Lambda {
                    params: vec![
                        Pattern::Tuple(cp.into_iter().map(Pattern::Var).collect()),
                        Pattern::Tuple(xp.into_iter().map(Pattern::Var).collect()),
                    ],
                    body: Box::new(body),
                };
                let e = t::Expr {
                    kind: K::Scan {
                        init: Box::new(init),
                        xs: xs_opt,
                        length,
                        reverse: sc.reverse,
                        unroll: sc.unroll,
                        checkpoint: false,
                        body: lam,
                    },
                    ty,
                    span: self.span,
                };
                let pat = Pattern::Tuple(vec![
                    Pattern::Tuple(outs_c.into_iter().map(Pattern::Var).collect()),
                    Pattern::Tuple(outs_y.into_iter().map(Pattern::Var).collect()),
                ]);
                self.emit(t::Stmt::Let(pat, e));
            }
            Stmt::Opaque { outs, pat, expr, inputs, .. } => match mode {
                Mode::Primal => self.emit(t::Stmt::Let(pat.clone(), expr.clone())),
                Mode::Recompute => {
                    let mut free = HashMap::new();
                    for v in inputs {
                        let x = self.use_primal(*v);
                        free.insert(*v, self.ve(x));
                    }
                    let mut ren = HashMap::new();
                    let e = self.copy_expr(expr, &free, &mut ren, false)?;
                    let mut map = HashMap::new();
                    for v in outs {
                        let x = self.use_primal(*v);
                        map.insert(*v, x);
                    }
                    let p = rename_pat(pat, &map);
                    self.emit(t::Stmt::Let(p, e));
                }
            },
        }
        Ok(())
    }

    fn block(&self, stmts: Vec<t::Stmt>, results: Vec<t::Expr>) -> t::Expr {
        let r = if results.len() == 1 {
            results.into_iter().next().unwrap_or_else(|| self.tuple(Vec::new()))
        } else {
            self.tuple(results)
        };
        let r = match &r.ty {
            Type::Tensor(_) => self.tuple(vec![r]),
            Type::Tuple(_) => r,
        };
        if stmts.is_empty() {
            return r;
        }
        let ty = r.ty.clone();
        t::Expr { kind: K::Block(stmts, Box::new(r)), ty, span: self.span }
    }

    fn prim_expr(&self, op: &Op, args: Vec<t::Expr>, ty: TensorTy) -> DResult<t::Expr> {
        let mut it = args.into_iter();
        let mut next = || it.next().map(Box::new);
        let bad = || internal::<t::Expr>("operand count", self.span);
        let kind = match op {
            Op::Unary(u) => match next() {
                Some(a) => K::Unary(*u, a),
                None => return bad(),
            },
            Op::Binary(b) => match (next(), next()) {
                (Some(a), Some(c)) => K::Binary(*b, a, c),
                _ => return bad(),
            },
            Op::Select => match (next(), next(), next()) {
                (Some(c), Some(a), Some(b)) => K::Select(c, a, b),
                _ => return bad(),
            },
            Op::Cast(d) => match next() {
                Some(a) => K::Cast(a, *d),
                None => return bad(),
            },
            Op::MatMul => match (next(), next()) {
                (Some(a), Some(b)) => K::MatMul(a, b),
                _ => return bad(),
            },
            Op::Reduce(r, ax) => match next() {
                Some(a) => K::Reduce(*r, a, *ax),
                None => return bad(),
            },
            Op::Reshape(s) => match next() {
                Some(a) => K::Reshape(a, s.clone()),
                None => return bad(),
            },
            Op::Transpose(p) => match next() {
                Some(a) => K::Transpose(a, p.clone()),
                None => return bad(),
            },
            Op::Broadcast(s) => match next() {
                Some(a) => K::Broadcast(a, s.clone()),
                None => return bad(),
            },
            Op::Iota(d, n) => K::Iota(*d, *n),
            Op::Concat(ax) => K::Concat(std::iter::from_fn(|| next().map(|b| *b)).collect(), *ax),
            Op::Stack(ax) => K::Stack(std::iter::from_fn(|| next().map(|b| *b)).collect(), *ax),
            Op::Slice(s) => match next() {
                Some(a) => K::Slice(a, s.clone()),
                None => return bad(),
            },
            Op::Index => match next() {
                Some(a) => K::Index(a, std::iter::from_fn(|| next().map(|b| *b)).collect()),
                None => return bad(),
            },
            Op::Update(mode) => {
                let Some(base) = next() else { return bad() };
                let mut rest: Vec<t::Expr> = std::iter::from_fn(|| next().map(|b| *b)).collect();
                let Some(value) = rest.pop() else { return bad() };
                K::Update { mode: *mode, base, idx: rest, value: Box::new(value) }
            }
            Op::ShapeOf => match next() {
                Some(a) => K::ShapeOf(a),
                None => return bad(),
            },
        };
        Ok(self.mk(kind, ty))
    }

    // -----------------------------------------------------------------------
    // Vector-Jacobian products

    /// The cotangent contributions of primitive `out = op(args)` given `g`,
    /// as (argument index, expression) for the active arguments.
    fn vjp(&mut self, out: VarId, op: &Op, args: &[Atom], g: VarId) -> DResult<Vec<(usize, t::Expr)>> {
        let act: Vec<bool> = args.iter().map(|a| self.is_active(a)).collect();
        let on = |i: usize| act.get(i).copied().unwrap_or(false);
        let ge = self.ve(g);
        let oty = self.vty(out);
        let dt = oty.dtype;
        let c = |s: &Self, v: f64| s.cst(dt, v);
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Atom::Const(scalar_const(dt, 0.0)));
        let aty = |s: &Self, i: usize| s.aty(&arg(i));
        let mut out_v = Vec::new();
        match op {
            Op::Unary(u) => {
                if !on(0) {
                    return Ok(out_v);
                }
                let e = match u {
                    UnaryOp::Neg => self.un(UnaryOp::Neg, ge),
                    UnaryOp::Exp => {
                        let y = self.pv(&Atom::Var(out));
                        self.bin(BinaryOp::Mul, ge, y)
                    }
                    UnaryOp::Log => {
                        let x = self.pv(&arg(0));
                        self.bin(BinaryOp::Div, ge, x)
                    }
                    UnaryOp::Sqrt => {
                        let y = self.pv(&Atom::Var(out));
                        let two_y = self.bin(BinaryOp::Mul, c(self, 2.0), y);
                        self.bin(BinaryOp::Div, ge, two_y)
                    }
                    UnaryOp::Tanh => {
                        let y = self.pv(&Atom::Var(out));
                        let yy = self.bin(BinaryOp::Mul, y.clone(), y);
                        let d = self.bin(BinaryOp::Sub, c(self, 1.0), yy);
                        self.bin(BinaryOp::Mul, ge, d)
                    }
                    UnaryOp::Sigmoid => {
                        let y = self.pv(&Atom::Var(out));
                        let om = self.bin(BinaryOp::Sub, c(self, 1.0), y.clone());
                        let d = self.bin(BinaryOp::Mul, y, om);
                        self.bin(BinaryOp::Mul, ge, d)
                    }
                    UnaryOp::Relu => {
                        let x = self.pv(&arg(0));
                        let pos = self.bin(BinaryOp::Gt, x, c(self, 0.0));
                        self.sel(pos, ge, c(self, 0.0))
                    }
                    UnaryOp::Abs => {
                        let x = self.pv(&arg(0));
                        let pos = self.bin(BinaryOp::Ge, x, c(self, 0.0));
                        let neg = self.un(UnaryOp::Neg, ge.clone());
                        self.sel(pos, ge, neg)
                    }
                    UnaryOp::Sin => {
                        let x = self.pv(&arg(0));
                        let d = self.un(UnaryOp::Cos, x);
                        self.bin(BinaryOp::Mul, ge, d)
                    }
                    UnaryOp::Cos => {
                        let x = self.pv(&arg(0));
                        let d = self.un(UnaryOp::Sin, x);
                        let d = self.un(UnaryOp::Neg, d);
                        self.bin(BinaryOp::Mul, ge, d)
                    }
                    UnaryOp::Erf => {
                        // erf'(x) = 2/√π · exp(-x²)
                        let x = self.pv(&arg(0));
                        let xx = self.bin(BinaryOp::Mul, x.clone(), x);
                        let nxx = self.un(UnaryOp::Neg, xx);
                        let e = self.un(UnaryOp::Exp, nxx);
                        let d = self.bin(BinaryOp::Mul, e, c(self, std::f64::consts::FRAC_2_SQRT_PI));
                        self.bin(BinaryOp::Mul, ge, d)
                    }
                    UnaryOp::Rsqrt => {
                        // rsqrt'(x) = -y³ / 2 with y = rsqrt(x)
                        let y = self.pv(&Atom::Var(out));
                        let yy = self.bin(BinaryOp::Mul, y.clone(), y.clone());
                        let yyy = self.bin(BinaryOp::Mul, yy, y);
                        let d = self.bin(BinaryOp::Mul, yyy, c(self, -0.5));
                        self.bin(BinaryOp::Mul, ge, d)
                    }
                    UnaryOp::Not => return Ok(out_v),
                };
                out_v.push((0, e));
            }
            Op::Binary(b) => {
                if b.is_compare() || b.is_logic() {
                    return Ok(out_v);
                }
                let (ta, tb) = (aty(self, 0), aty(self, 1));
                let (ga, gb): (Option<t::Expr>, Option<t::Expr>) = match b {
                    BinaryOp::Add => (Some(ge.clone()), Some(ge)),
                    BinaryOp::Sub => (Some(ge.clone()), Some(self.un(UnaryOp::Neg, ge))),
                    BinaryOp::Mul => {
                        let ga = if on(0) {
                            let y = self.pv(&arg(1));
                            Some(self.bin(BinaryOp::Mul, ge.clone(), y))
                        } else {
                            None
                        };
                        let gb = if on(1) {
                            let x = self.pv(&arg(0));
                            Some(self.bin(BinaryOp::Mul, ge, x))
                        } else {
                            None
                        };
                        (ga, gb)
                    }
                    BinaryOp::Div => {
                        let y = self.pv(&arg(1));
                        let ga = if on(0) { Some(self.bin(BinaryOp::Div, ge.clone(), y.clone())) } else { None };
                        let gb = if on(1) {
                            let o = self.pv(&Atom::Var(out));
                            let t = self.bin(BinaryOp::Mul, ge, o);
                            let t = self.bin(BinaryOp::Div, t, y);
                            Some(self.un(UnaryOp::Neg, t))
                        } else {
                            None
                        };
                        (ga, gb)
                    }
                    BinaryOp::Rem => {
                        let gb = if on(1) {
                            let x = self.pv(&arg(0));
                            let y = self.pv(&arg(1));
                            let o = self.pv(&Atom::Var(out));
                            let q = self.bin(BinaryOp::Sub, x, o);
                            let q = self.bin(BinaryOp::Div, q, y);
                            let t = self.bin(BinaryOp::Mul, ge.clone(), q);
                            Some(self.un(UnaryOp::Neg, t))
                        } else {
                            None
                        };
                        (Some(ge), gb)
                    }
                    BinaryOp::Pow => {
                        let ga = if on(0) {
                            let x = self.pv(&arg(0));
                            let y = self.pv(&arg(1));
                            let ym1 = self.bin(BinaryOp::Sub, y.clone(), c(self, 1.0));
                            let p = self.bin(BinaryOp::Pow, x, ym1);
                            let d = self.bin(BinaryOp::Mul, y.clone(), p);
                            let z = self.bin(BinaryOp::Eq, y, c(self, 0.0));
                            let d = self.sel(z, c(self, 0.0), d);
                            Some(self.bin(BinaryOp::Mul, ge.clone(), d))
                        } else {
                            None
                        };
                        let gb = if on(1) {
                            let x = self.pv(&arg(0));
                            let o = self.pv(&Atom::Var(out));
                            let z = self.bin(BinaryOp::Eq, x.clone(), c(self, 0.0));
                            let safe = self.sel(z, c(self, 1.0), x);
                            let l = self.un(UnaryOp::Log, safe);
                            let d = self.bin(BinaryOp::Mul, o, l);
                            Some(self.bin(BinaryOp::Mul, ge, d))
                        } else {
                            None
                        };
                        (ga, gb)
                    }
                    BinaryOp::Max | BinaryOp::Min => {
                        let x = self.pv(&arg(0));
                        let y = self.pv(&arg(1));
                        let wins = |s: &Self, p: t::Expr, q: t::Expr| {
                            let cmp = if *b == BinaryOp::Max { BinaryOp::Gt } else { BinaryOp::Lt };
                            let w = s.bin(cmp, p.clone(), q.clone());
                            let tie = s.bin(BinaryOp::Eq, p, q);
                            let half = s.sel(tie, c(s, 0.5), c(s, 0.0));
                            let f = s.sel(w, c(s, 1.0), half);
                            s.bin(BinaryOp::Mul, ge.clone(), f)
                        };
                        let ga = if on(0) { Some(wins(self, x.clone(), y.clone())) } else { None };
                        let gb = if on(1) { Some(wins(self, y, x)) } else { None };
                        (ga, gb)
                    }
                    _ => (None, None),
                };
                if let (true, Some(e)) = (on(0), ga) {
                    out_v.push((0, self.unbroadcast(e, &ta)));
                }
                if let (true, Some(e)) = (on(1), gb) {
                    out_v.push((1, self.unbroadcast(e, &tb)));
                }
            }
            Op::Select => {
                let cnd = self.pv(&arg(0));
                if on(1) {
                    let e = self.sel(cnd.clone(), ge.clone(), c(self, 0.0));
                    out_v.push((1, self.unbroadcast(e, &aty(self, 1))));
                }
                if on(2) {
                    let e = self.sel(cnd, c(self, 0.0), ge);
                    out_v.push((2, self.unbroadcast(e, &aty(self, 2))));
                }
            }
            Op::Cast(_) => {
                let at = aty(self, 0);
                if on(0) && is_float(&at) {
                    let e = if at.dtype == dt { ge } else { self.mk(K::Cast(Box::new(ge), at.dtype), at) };
                    out_v.push((0, e));
                }
            }
            Op::MatMul => {
                let (ta, tb) = (aty(self, 0), aty(self, 1));
                let x = self.pv(&arg(0));
                let y = self.pv(&arg(1));
                let (ga, gb) = match (ta.rank(), tb.rank()) {
                    (2, 2) => {
                        let ga = if on(0) { Some(self.matmul(ge.clone(), self.transpose(y, None))) } else { None };
                        let gb = if on(1) { Some(self.matmul(self.transpose(x, None), ge)) } else { None };
                        (ga, gb)
                    }
                    (1, 1) => (Some(self.bin(BinaryOp::Mul, ge.clone(), y)), Some(self.bin(BinaryOp::Mul, ge, x))),
                    (2, 1) => {
                        let ga =
                            if on(0) { Some(self.matmul(self.expand(ge.clone(), 1), self.expand(y, 0))) } else { None };
                        let gb = if on(1) { Some(self.matmul(self.transpose(x, None), ge)) } else { None };
                        (ga, gb)
                    }
                    (1, 2) => {
                        let ga = if on(0) { Some(self.matmul(y, ge.clone())) } else { None };
                        let gb = if on(1) { Some(self.matmul(self.expand(x, 1), self.expand(ge, 0))) } else { None };
                        (ga, gb)
                    }
                    _ => return internal("matmul rank", self.span),
                };
                if let (true, Some(e)) = (on(0), ga) {
                    out_v.push((0, e));
                }
                if let (true, Some(e)) = (on(1), gb) {
                    out_v.push((1, e));
                }
            }
            Op::Reduce(r, axis) => {
                if !on(0) {
                    return Ok(out_v);
                }
                let at = aty(self, 0);
                let ex = |s: &Self, e: t::Expr| match axis {
                    Some(k) => s.expand(e, *k as usize),
                    None => e,
                };
                let e = match r {
                    ReduceOp::Sum => {
                        let e = ex(self, ge);
                        self.broadcast_to(e, &at, &arg(0))
                    }
                    ReduceOp::Mean => {
                        let cnt: Option<u64> = match axis {
                            None => known(&at.dims).map(|d| d.iter().product()),
                            Some(k) => at.dims.get(*k as usize).and_then(Dim::known),
                        };
                        let cnt = match cnt {
                            Some(n) => c(self, n as f64),
                            None => {
                                let tr =
                                    self.mk(K::Const(scalar_const(DType::Bool, 1.0)), TensorTy::scalar(DType::Bool));
                                let x = self.pv(&arg(0));
                                let ones = self.sel(tr, c(self, 1.0), x);
                                self.reduce(ReduceOp::Sum, ones, *axis)
                            }
                        };
                        let q = self.bin(BinaryOp::Div, ge, cnt);
                        let e = ex(self, q);
                        self.broadcast_to(e, &at, &arg(0))
                    }
                    ReduceOp::Max | ReduceOp::Min => {
                        let x = self.pv(&arg(0));
                        let y = self.pv(&Atom::Var(out));
                        let y = ex(self, y);
                        let eq = self.bin(BinaryOp::Eq, x, y);
                        let ind = self.sel(eq, c(self, 1.0), c(self, 0.0));
                        let cnt = self.reduce(ReduceOp::Sum, ind.clone(), *axis);
                        let q = self.bin(BinaryOp::Div, ge, cnt);
                        let q = ex(self, q);
                        self.bin(BinaryOp::Mul, ind, q)
                    }
                    ReduceOp::Argmax => return Ok(out_v),
                };
                out_v.push((0, e));
            }
            Op::Reshape(_) => {
                if on(0) {
                    let at = aty(self, 0);
                    let Some(shape) = known(&at.dims) else {
                        return err(format!("cannot differentiate a reshape of the symbolic type {at}"), self.span);
                    };
                    out_v.push((0, self.mk(K::Reshape(Box::new(ge), shape), at)));
                }
            }
            Op::Transpose(perm) => {
                if on(0) {
                    let inv = perm.as_ref().map(|p| {
                        let mut inv = vec![0u32; p.len()];
                        for (i, a) in p.iter().enumerate() {
                            if let Some(slot) = inv.get_mut(*a as usize) {
                                *slot = i as u32;
                            }
                        }
                        inv
                    });
                    out_v.push((0, self.transpose(ge, inv)));
                }
            }
            Op::Broadcast(_) => {
                if on(0) {
                    out_v.push((0, self.unbroadcast(ge, &aty(self, 0))));
                }
            }
            Op::Iota(..) | Op::ShapeOf => {}
            Op::Concat(axis) => {
                let ax = *axis as usize;
                if args.len() == 1 {
                    if on(0) {
                        out_v.push((0, ge));
                    }
                    return Ok(out_v);
                }
                let mut off: i64 = 0;
                for i in 0..args.len() {
                    let at = aty(self, i);
                    let Some(len) = at.dims.get(ax).and_then(Dim::known) else {
                        return err("cannot differentiate a concat along a symbolic axis", self.span);
                    };
                    let len = len as i64;
                    if on(i) {
                        let mut specs = vec![StaticIndex::Range { start: None, stop: None, step: 1 }; ax];
                        specs.push(StaticIndex::Range { start: Some(off), stop: Some(off + len), step: 1 });
                        out_v.push((i, self.slice(ge.clone(), specs)?));
                    }
                    off += len;
                }
            }
            Op::Stack(axis) => {
                let ax = *axis as usize;
                for i in 0..args.len() {
                    if on(i) {
                        let mut specs = vec![StaticIndex::Range { start: None, stop: None, step: 1 }; ax];
                        specs.push(StaticIndex::At(i as i64));
                        out_v.push((i, self.slice(ge.clone(), specs)?));
                    }
                }
            }
            Op::Slice(specs) => {
                if on(0) {
                    let at = aty(self, 0);
                    let lead: Vec<i64> = specs
                        .iter()
                        .map_while(|s| match s {
                            StaticIndex::At(i) => Some(*i),
                            StaticIndex::Range { .. } => None,
                        })
                        .collect();
                    let rest_full = specs
                        .iter()
                        .skip(lead.len())
                        .all(|s| matches!(s, StaticIndex::Range { start: None, stop: None, step: 1 }));
                    if !lead.is_empty() && rest_full {
                        // x[i, j] (static, leading): add g into zeros at that position.
                        let z = match self.zeros(&at) {
                            Ok(z) => z,
                            Err(_) => {
                                let x = self.pv(&arg(0));
                                let f =
                                    self.mk(K::Const(scalar_const(DType::Bool, 0.0)), TensorTy::scalar(DType::Bool));
                                self.sel(f, x, c(self, 0.0))
                            }
                        };
                        let idt = if lead.iter().all(|i| i32::try_from(*i).is_ok()) { DType::I32 } else { DType::I64 };
                        let idx = lead.iter().map(|i| self.cst(idt, *i as f64)).collect();
                        let e = K::Update { mode: UpdateMode::Add, base: Box::new(z), idx, value: Box::new(ge) };
                        out_v.push((0, self.mk(e, at)));
                    } else {
                        out_v.push((0, self.slice_vjp(ge, &at, specs)?));
                    }
                }
            }
            Op::Index => {
                if on(0) {
                    let at = aty(self, 0);
                    let z = match self.zeros(&at) {
                        Ok(z) => z,
                        Err(_) => {
                            let x = self.pv(&arg(0));
                            let f = self.mk(K::Const(scalar_const(DType::Bool, 0.0)), TensorTy::scalar(DType::Bool));
                            self.sel(f, x, c(self, 0.0))
                        }
                    };
                    let idx: Vec<t::Expr> = args.iter().skip(1).map(|a| self.pv(a)).collect();
                    out_v.push((
                        0,
                        self.mk(K::Update { mode: UpdateMode::Add, base: Box::new(z), idx, value: Box::new(ge) }, at),
                    ));
                }
            }
            Op::Update(mode) => {
                let n = args.len();
                let idx: Vec<t::Expr> = args.iter().skip(1).take(n.saturating_sub(2)).map(|a| self.pv(a)).collect();
                let vi = n.saturating_sub(1);
                if on(0) {
                    let e = match mode {
                        UpdateMode::Add => ge.clone(),
                        UpdateMode::Set => {
                            let vt = aty(self, vi);
                            let z = match self.zeros(&vt) {
                                Ok(z) => z,
                                Err(_) => {
                                    let x = self.pv(&arg(vi));
                                    let f = self
                                        .mk(K::Const(scalar_const(DType::Bool, 0.0)), TensorTy::scalar(DType::Bool));
                                    self.sel(f, x, c(self, 0.0))
                                }
                            };
                            self.mk(
                                K::Update {
                                    mode: UpdateMode::Set,
                                    base: Box::new(ge.clone()),
                                    idx: idx.clone(),
                                    value: Box::new(z),
                                },
                                oty.clone(),
                            )
                        }
                    };
                    out_v.push((0, e));
                }
                if on(vi) && vi > 0 {
                    let vt = aty(self, vi);
                    out_v.push((vi, self.mk(K::Index(Box::new(ge), idx), vt)));
                }
            }
        }
        Ok(out_v)
    }

    /// The transpose of a static slice: `g` placed into zeros of type `x`.
    fn slice_vjp(&mut self, g: t::Expr, x: &TensorTy, specs: &[StaticIndex]) -> DResult<t::Expr> {
        let mut e = g;
        for k in (0..specs.len()).rev() {
            let ats = specs.iter().take(k).filter(|s| matches!(s, StaticIndex::At(_))).count();
            let p = k - ats;
            let Some(spec) = specs.get(k) else { continue };
            let dim = x.dims.get(k).cloned().unwrap_or(Dim::Known(0));
            match *spec {
                StaticIndex::At(i) => {
                    e = self.expand(e, p);
                    let Some(n) = dim.known() else {
                        return err("cannot differentiate indexing of a symbolic axis", self.span);
                    };
                    let n = n as i64;
                    let i = if i < 0 { i + n } else { i };
                    e = self.pad(e, p, i, n - i - 1)?;
                }
                StaticIndex::Range { start: None, stop: None, step: 1 } => {}
                StaticIndex::Range { start: None, stop: None, step: -1 } => {
                    let mut sp = vec![StaticIndex::Range { start: None, stop: None, step: 1 }; p];
                    sp.push(StaticIndex::Range { start: None, stop: None, step: -1 });
                    e = self.slice(e, sp)?;
                }
                StaticIndex::Range { start, stop, step } => {
                    let Some(n) = dim.known() else {
                        return err("cannot differentiate slicing of a symbolic axis", self.span);
                    };
                    let n = n as i64;
                    let (first, len) = slice_range(n, start, stop, step);
                    if len <= 0 {
                        let mut dims = Self::et(&e).dims;
                        if let Some(d) = dims.get_mut(p) {
                            *d = Dim::Known(n as u64);
                        }
                        e = self.zeros(&TensorTy { dtype: x.dtype, dims })?;
                        continue;
                    }
                    let last = first + (len - 1) * step;
                    let (lo, hi) = if step < 0 { (last, first) } else { (first, last) };
                    if step < 0 {
                        let mut sp = vec![StaticIndex::Range { start: None, stop: None, step: 1 }; p];
                        sp.push(StaticIndex::Range { start: None, stop: None, step: -1 });
                        e = self.slice(e, sp)?;
                    }
                    let s = step.saturating_abs();
                    if s > 1 && len > 1 {
                        // Interleave zeros: [.., L, ..] -> [.., L, s, ..] -> [.., L*s, ..] -> first (L-1)*s+1.
                        let et = Self::et(&e);
                        let zero = self.zeros(&et)?;
                        let mut parts = vec![e];
                        for _ in 1..s {
                            parts.push(zero.clone());
                        }
                        let mut dims = et.dims.clone();
                        dims.insert(p + 1, Dim::Known(s as u64));
                        let st =
                            self.mk(K::Stack(parts, (p + 1) as u32), TensorTy { dtype: et.dtype, dims: dims.clone() });
                        let mut rd = et.dims.clone();
                        if let Some(d) = rd.get_mut(p) {
                            *d = Dim::Known((len * s) as u64);
                        }
                        let Some(shape) = known(&rd) else {
                            return err("cannot differentiate a strided slice of a symbolic shape", self.span);
                        };
                        let r = self.mk(K::Reshape(Box::new(st), shape), TensorTy { dtype: et.dtype, dims: rd });
                        let mut sp = vec![StaticIndex::Range { start: None, stop: None, step: 1 }; p];
                        sp.push(StaticIndex::Range { start: Some(0), stop: Some((len - 1) * s + 1), step: 1 });
                        e = self.slice(r, sp)?;
                    }
                    e = self.pad(e, p, lo, n - hi - 1)?;
                }
            }
        }
        Ok(e)
    }

    /// Zeros before and after `e` along axis `p`.
    fn pad(&mut self, e: t::Expr, p: usize, before: i64, after: i64) -> DResult<t::Expr> {
        if before <= 0 && after <= 0 {
            return Ok(e);
        }
        let et = Self::et(&e);
        let zeros_n = |s: &Self, n: i64| -> DResult<t::Expr> {
            let mut dims = et.dims.clone();
            if let Some(d) = dims.get_mut(p) {
                *d = Dim::Known(n as u64);
            }
            s.zeros(&TensorTy { dtype: et.dtype, dims })
        };
        let mut parts = Vec::new();
        if before > 0 {
            parts.push(zeros_n(self, before)?);
        }
        parts.push(e);
        if after > 0 {
            parts.push(zeros_n(self, after)?);
        }
        let mut dims = et.dims.clone();
        if let Some(Dim::Known(d)) = dims.get_mut(p) {
            *d = d.saturating_add(before.max(0).saturating_add(after.max(0)) as u64);
        }
        Ok(self.mk(K::Concat(parts, p as u32), TensorTy { dtype: et.dtype, dims }))
    }
}

// ---------------------------------------------------------------------------
// Variable sets

/// Collects the variables a typed expression binds and the ones it reads.
fn collect_vars(e: &t::Expr, bound: &mut HashSet<VarId>, used: &mut Vec<VarId>) {
    fn pat(p: &Pattern, bound: &mut HashSet<VarId>) {
        match p {
            Pattern::Var(v) => {
                bound.insert(*v);
            }
            Pattern::Wild(_) => {}
            Pattern::Tuple(ps) => ps.iter().for_each(|p| pat(p, bound)),
        }
    }
    let lam = |l: &t::Lambda, bound: &mut HashSet<VarId>, used: &mut Vec<VarId>| {
        l.params.iter().for_each(|p| pat(p, bound));
        collect_vars(&l.body, bound, used);
    };
    match &e.kind {
        K::Var(v) => used.push(*v),
        K::Const(_) | K::Iota(..) => {}
        K::Unary(_, x)
        | K::Cast(x, _)
        | K::Reduce(_, x, _)
        | K::Reshape(x, _)
        | K::Transpose(x, _)
        | K::Broadcast(x, _)
        | K::Slice(x, _)
        | K::ShapeOf(x)
        | K::Print(x) => collect_vars(x, bound, used),
        K::Binary(_, x, y) | K::MatMul(x, y) => {
            collect_vars(x, bound, used);
            collect_vars(y, bound, used);
        }
        K::Select(a, x, y) | K::If(a, x, y) => {
            collect_vars(a, bound, used);
            collect_vars(x, bound, used);
            collect_vars(y, bound, used);
        }
        K::Concat(xs, _) | K::Stack(xs, _) | K::Tuple(xs) | K::Call(_, xs) => {
            xs.iter().for_each(|x| collect_vars(x, bound, used))
        }
        K::Index(x, idx) => {
            collect_vars(x, bound, used);
            idx.iter().for_each(|x| collect_vars(x, bound, used));
        }
        K::Update { base, idx, value, .. } => {
            collect_vars(base, bound, used);
            idx.iter().for_each(|x| collect_vars(x, bound, used));
            collect_vars(value, bound, used);
        }
        K::Block(stmts, r) => {
            for s in stmts {
                match s {
                    t::Stmt::Let(p, v) => {
                        collect_vars(v, bound, used);
                        pat(p, bound);
                    }
                    t::Stmt::Expr(v) => collect_vars(v, bound, used),
                }
            }
            collect_vars(r, bound, used);
        }
        K::Fori { lo, hi, init, body, .. } => {
            collect_vars(lo, bound, used);
            collect_vars(hi, bound, used);
            collect_vars(init, bound, used);
            lam(body, bound, used);
        }
        K::While { init, cond, body, .. } => {
            collect_vars(init, bound, used);
            lam(cond, bound, used);
            lam(body, bound, used);
        }
        K::Scan { init, xs, body, .. } => {
            collect_vars(init, bound, used);
            if let Some(x) = xs {
                collect_vars(x, bound, used);
            }
            lam(body, bound, used);
        }
    }
}

fn atom_use(a: &Atom, uses: &mut Vec<VarId>) {
    if let Atom::Var(v) = a {
        uses.push(*v);
    }
}

/// The variables a flattened statement defines (transitively) and reads.
fn stmt_vars(s: &Stmt, defs: &mut HashSet<VarId>, uses: &mut Vec<VarId>) {
    match s {
        Stmt::Prim { out, args, .. } => {
            defs.insert(*out);
            args.iter().for_each(|a| atom_use(a, uses));
        }
        Stmt::Print(atoms) => atoms.iter().for_each(|a| atom_use(a, uses)),
        Stmt::If { outs, cond, then_, else_ } => {
            defs.extend(outs.iter().copied());
            atom_use(cond, uses);
            body_vars(then_, defs, uses);
            body_vars(else_, defs, uses);
        }
        Stmt::Scan(sc) => {
            defs.extend(sc.carry_outs.iter().copied());
            defs.extend(sc.ys_outs.iter().copied());
            defs.extend(sc.carry_p.iter().copied());
            defs.extend(sc.x_p.iter().copied());
            sc.init.iter().for_each(|a| atom_use(a, uses));
            sc.xs.iter().for_each(|a| atom_use(a, uses));
            body_vars(&sc.body, defs, uses);
        }
        Stmt::Opaque { outs, inputs, .. } => {
            defs.extend(outs.iter().copied());
            uses.extend(inputs.iter().copied());
        }
    }
}

fn body_vars(b: &Body, defs: &mut HashSet<VarId>, uses: &mut Vec<VarId>) {
    for s in &b.stmts {
        stmt_vars(s, defs, uses);
    }
    b.results.iter().for_each(|a| atom_use(a, uses));
}

/// The variables a statement binds at its own level (scans include their residual outputs).
fn stmt_outs(s: &Stmt, residuals: &HashMap<usize, Vec<(VarId, VarId)>>, out: &mut Vec<VarId>) {
    match s {
        Stmt::Prim { out: o, .. } => out.push(*o),
        Stmt::Print(_) => {}
        Stmt::If { outs, .. } | Stmt::Opaque { outs, .. } => out.extend(outs.iter().copied()),
        Stmt::Scan(sc) => {
            out.extend(sc.carry_outs.iter().copied());
            out.extend(sc.ys_outs.iter().copied());
            if let Some(r) = residuals.get(&sc.id) {
                out.extend(r.iter().map(|(_, s)| *s));
            }
        }
    }
}

fn rename_pat(p: &Pattern, map: &HashMap<VarId, VarId>) -> Pattern {
    match p {
        Pattern::Var(v) => Pattern::Var(map.get(v).copied().unwrap_or(*v)),
        Pattern::Wild(t) => Pattern::Wild(t.clone()),
        Pattern::Tuple(ps) => Pattern::Tuple(ps.iter().map(|p| rename_pat(p, map)).collect()),
    }
}
