//! Batching (`vmap`): a transform of the typed IR.
//!
//! [`Vmap::ex`] takes a per-example expression and gives the expression over
//! a batch, with every *batched* value carrying the batch as its leading axis
//! and every *unbatched* value (one that depends on no mapped argument) left
//! as it was. Which leaves of a value are batched is a [`BT`] tree beside its
//! type. Each op has a batching rule here: elementwise ops line operands up
//! (unbatched operands broadcast from the right as NumPy does), reductions
//! and axis arguments shift by one, `@` and `einsum` become one batched
//! `dot_general`, indexing with unbatched indices moves the batch axis out of
//! the way, indexing, `.at[]`, `take`, `scatter_add` and `dynamic_slice`
//! with batched positions become one gather (or select, or scatter) over the
//! batch flattened with the indexed axes, and the ops without a direct rule
//! (`dynamic_update_slice` with batched starts, and rules that need a static shape
//! on a symbolic one) run once per element in a static `fori_loop` over the
//! batch that writes each element's result into its row. Calls of `fn` items
//! get a batched instance per pattern of batched arguments.
//!
//! Loops follow JAX: the carry's batched leaves are found by a fixed point
//! (a leaf is batched when its initial value or the body's result for it
//! is), so unbatched state stays unbatched; a `fori_loop` with batched
//! bounds becomes a `while_loop`; a `while_loop` whose condition is batched
//! runs while any element runs and keeps, per element, the old carry once
//! that element's condition is false; `if` on a batched condition evaluates
//! both branches and selects per element. `print` of a batched value, or
//! inside a branch or loop that runs per element, is a compile error.

use crate::build::{known, Build};
use crate::diag::{err, DResult, Span};
use crate::typed::{self as t, ExprKind as K, FuncId, Lambda, Pattern, StaticIndex, Stmt, VarId, VarInfo};
use crate::types::{Dim, TensorTy, Type};
use loopvm_runtime::rules::DotDims;
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UpdateMode};
use std::collections::HashMap;

mod control;

/// Which leaves of a value carry the batch axis (its leading axis).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BT {
    /// A tensor: batched or not.
    Leaf(bool),
    /// A tuple.
    Node(Vec<BT>),
}

impl BT {
    /// `flag` for every leaf of `ty`.
    pub fn of(ty: &Type, flag: bool) -> BT {
        match ty {
            Type::Tensor(_) => BT::Leaf(flag),
            Type::Tuple(ts) => BT::Node(ts.iter().map(|t| BT::of(t, flag)).collect()),
        }
    }
    /// Whether any leaf is batched.
    pub fn any(&self) -> bool {
        match self {
            BT::Leaf(b) => *b,
            BT::Node(xs) => xs.iter().any(BT::any),
        }
    }
    /// Batched where either is.
    pub fn join(&self, o: &BT) -> BT {
        match (self, o) {
            (BT::Node(a), BT::Node(b)) => BT::Node(a.iter().zip(b).map(|(x, y)| x.join(y)).collect()),
            _ => BT::Leaf(self.any() || o.any()),
        }
    }
    /// The leaves in order.
    pub fn flat(&self) -> Vec<bool> {
        match self {
            BT::Leaf(b) => vec![*b],
            BT::Node(xs) => xs.iter().flat_map(BT::flat).collect(),
        }
    }
    /// Child `i` of a tuple (the leaf itself for a leaf).
    fn child(&self, i: usize) -> BT {
        match self {
            BT::Leaf(b) => BT::Leaf(*b),
            BT::Node(xs) => xs.get(i).cloned().unwrap_or(BT::Leaf(false)),
        }
    }
}

/// The batched instances of `fn` items made so far: by function, the
/// batching of its arguments and whether it runs under a per-element branch.
pub type Instances = HashMap<(FuncId, Vec<BT>, bool), (FuncId, BT)>;

/// The batching transform over one function's variables.
pub struct Vmap<'a> {
    /// The function's variables (new ones are appended).
    pub vars: &'a mut Vec<VarInfo>,
    /// Every function instance (batched instances are appended).
    pub funcs: &'a mut Vec<t::Func>,
    /// The batched instances already made.
    pub instances: &'a mut Instances,
    /// Per-example variable → its batched counterpart.
    pub env: HashMap<VarId, (VarId, BT)>,
    /// The batch size.
    pub size: u64,
    /// The `vmap` call (the span of what the transform builds).
    pub span: Span,
    /// Inside a branch or loop that runs per element (`print` is an error).
    pub per_element: bool,
}

fn internal<T>(what: &str, span: Span) -> DResult<T> {
    err(format!("internal error in vmap: {what}"), span)
}

/// The tensor type of `e`.
fn tt(e: &t::Expr) -> TensorTy {
    Build::et(e)
}

/// A batching as `in_axes` writes it (`0` batched, `none` not).
fn axes_text(b: &BT) -> String {
    match b {
        BT::Leaf(true) => "0".into(),
        BT::Leaf(false) => "none".into(),
        BT::Node(xs) => format!("({})", xs.iter().map(axes_text).collect::<Vec<_>>().join(", ")),
    }
}

/// The name of an op kind in messages.
fn kind_name(k: &K) -> &'static str {
    match k {
        K::Index(..) => "indexing with batched indices",
        K::Update { .. } => "`.at[...]` with batched indices",
        K::Take(..) => "`take`",
        K::ScatterAdd(..) => "`scatter_add`",
        K::DynSlice(..) => "`dynamic_slice`",
        K::DynUpdateSlice(..) => "`dynamic_update_slice`",
        K::Reduce(..) => "a reduction",
        _ => "this op",
    }
}

impl Vmap<'_> {
    fn b(&self) -> Build {
        Build { span: self.span }
    }

    /// A fresh variable of type `ty`.
    pub fn new_var(&mut self, ty: Type) -> VarId {
        let id = VarId(u32::try_from(self.vars.len()).unwrap_or(u32::MAX));
        self.vars.push(VarInfo { name: "_".into(), ty });
        id
    }

    fn var(&self, v: VarId) -> t::Expr {
        let ty = self.vars.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone());
        t::Expr { kind: K::Var(v), ty, span: self.span }
    }

    fn mk(&self, kind: K, ty: Type) -> t::Expr {
        t::Expr { kind, ty, span: self.span }
    }

    /// A tensor type with the batch axis in front.
    fn bt_leaf(&self, t: &TensorTy) -> TensorTy {
        let mut dims = vec![Dim::Known(self.size)];
        dims.extend(t.dims.iter().cloned());
        TensorTy { dtype: t.dtype, dims }
    }

    /// The type of a value of per-example type `ty` batched as `bt`.
    pub fn bty(&self, ty: &Type, bt: &BT) -> Type {
        match (ty, bt) {
            (Type::Tensor(t), b) => {
                if b.any() {
                    Type::Tensor(self.bt_leaf(t))
                } else {
                    ty.clone()
                }
            }
            (Type::Tuple(ts), b) => Type::Tuple(ts.iter().enumerate().map(|(i, t)| self.bty(t, &b.child(i))).collect()),
        }
    }

    /// `tensor` with axis `from` moved to `to`.
    pub fn moveaxis(&self, e: t::Expr, from: usize, to: usize) -> t::Expr {
        if from == to {
            return e;
        }
        let et = tt(&e);
        let mut perm: Vec<u32> = (0..et.rank() as u32).collect();
        let a = perm.remove(from);
        perm.insert(to, a);
        let dims = perm.iter().map(|&p| et.dims.get(p as usize).cloned().unwrap_or(Dim::Known(1))).collect();
        self.mk(K::Transpose(Box::new(e), Some(perm)), Type::Tensor(TensorTy { dtype: et.dtype, dims }))
    }

    /// An unbatched tensor broadcast along a new leading batch axis.
    pub fn bcast(&mut self, e: t::Expr) -> DResult<t::Expr> {
        let et = tt(&e);
        let bty = self.bt_leaf(&et);
        if let Some(shape) = known(&bty.dims) {
            return Ok(self.mk(K::Broadcast(Box::new(e), shape), Type::Tensor(bty)));
        }
        let v = self.new_var(e.ty.clone());
        let copies = (0..self.size).map(|_| self.var(v)).collect();
        let stack = self.mk(K::Stack(copies, 0), Type::Tensor(bty));
        Ok(self.b().block(vec![(v, e)], stack))
    }

    /// Inserts `n` axes of size 1 after the batch axis of a batched tensor.
    fn lift(&self, e: t::Expr, n: usize) -> t::Expr {
        let mut e = e;
        for _ in 0..n {
            e = self.b().expand(e, 1);
        }
        e
    }

    /// Fresh variables for every leaf of a value of (actual) type `ty`: the
    /// pattern that binds them and the leaves.
    fn destructure(&mut self, ty: &Type) -> (Pattern, Vec<VarId>) {
        match ty {
            Type::Tensor(_) => {
                let v = self.new_var(ty.clone());
                (Pattern::Var(v), vec![v])
            }
            Type::Tuple(ts) => {
                let mut pats = Vec::new();
                let mut leaves = Vec::new();
                for t in ts {
                    let (p, l) = self.destructure(t);
                    pats.push(p);
                    leaves.extend(l);
                }
                (Pattern::Tuple(pats), leaves)
            }
        }
    }

    /// Rebuilds a value of structure `ty` from its leaves.
    fn rebuild(&self, ty: &Type, leaves: &mut std::vec::IntoIter<t::Expr>) -> t::Expr {
        match ty {
            Type::Tensor(_) => leaves.next().unwrap_or_else(|| self.mk(K::Tuple(Vec::new()), Type::unit())),
            Type::Tuple(ts) => {
                let xs: Vec<t::Expr> = ts.iter().map(|t| self.rebuild(t, leaves)).collect();
                let ty = Type::Tuple(xs.iter().map(|x| x.ty.clone()).collect());
                self.mk(K::Tuple(xs), ty)
            }
        }
    }

    /// Applies `f` to every leaf of `e` (per-example type `ty`, batched as
    /// `bt`), binding a tuple's leaves first.
    pub fn map_leaves(
        &mut self,
        e: t::Expr,
        ty: &Type,
        bt: &BT,
        f: &mut dyn FnMut(&mut Self, t::Expr, &TensorTy, bool) -> DResult<t::Expr>,
    ) -> DResult<t::Expr> {
        if let Type::Tensor(pt) = ty {
            return f(self, e, pt, bt.any());
        }
        let (pat, vars) = self.destructure(&e.ty);
        let pts: Vec<TensorTy> = ty.leaves().into_iter().cloned().collect();
        let flags = bt.flat();
        let mut out = Vec::new();
        for ((v, pt), fl) in vars.iter().zip(&pts).zip(flags) {
            let x = self.var(*v);
            out.push(f(self, x, pt, fl)?);
        }
        let r = self.rebuild(ty, &mut out.into_iter());
        let rty = r.ty.clone();
        Ok(self.mk(K::Block(vec![Stmt::Let(pat, e)], Box::new(r)), rty))
    }

    /// Converts `e` (per-example type `ty`, batched as `have`) to the
    /// batching `want` (which has every leaf `have` has).
    pub fn fix(&mut self, e: t::Expr, ty: &Type, have: &BT, want: &BT) -> DResult<t::Expr> {
        if have.flat() == want.flat() {
            return Ok(e);
        }
        let flags = have.flat();
        let wants = want.flat();
        let mut i = 0;
        let mut need: Vec<bool> = Vec::new();
        for (h, w) in flags.iter().zip(&wants) {
            need.push(*w && !*h);
        }
        self.map_leaves(e, ty, have, &mut |s, x, _, _| {
            let n = need.get(i).copied().unwrap_or(false);
            i += 1;
            if n {
                s.bcast(x)
            } else {
                Ok(x)
            }
        })
    }

    /// Binds pattern `p` to a value batched as `bt`: fresh variables, with
    /// the batched type where batched.
    pub fn bind(&mut self, p: &Pattern, bt: &BT) -> Pattern {
        match p {
            Pattern::Var(v) => {
                let ty = self.vars.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone());
                let nty = self.bty(&ty, bt);
                let name = self.vars.get(v.0 as usize).map_or_else(|| "_".to_string(), |i| i.name.clone());
                let nv = self.new_var(nty);
                if let Some(info) = self.vars.get_mut(nv.0 as usize) {
                    info.name = name;
                }
                self.env.insert(*v, (nv, bt.clone()));
                Pattern::Var(nv)
            }
            Pattern::Wild(ty) => Pattern::Wild(self.bty(ty, bt)),
            Pattern::Tuple(ps) => {
                Pattern::Tuple(ps.iter().enumerate().map(|(i, p)| self.bind(p, &bt.child(i))).collect())
            }
        }
    }

    /// Batches a list of operands of an elementwise op: batched ones get
    /// unit axes after the batch so that NumPy broadcasting lines them up.
    fn align(&self, ops: Vec<(t::Expr, bool)>, rank: usize) -> Vec<t::Expr> {
        ops.into_iter()
            .map(|(x, b)| {
                if b {
                    let r = tt(&x).rank().saturating_sub(1);
                    self.lift(x, rank.saturating_sub(r))
                } else {
                    x
                }
            })
            .collect()
    }

    /// The batched result type of a tensor expression.
    fn out(&self, e: &t::Expr) -> Type {
        Type::Tensor(self.bt_leaf(&tt(e)))
    }

    /// [`Vmap::ex`] of each of `es`: the results with whether each is
    /// batched, and whether any is.
    fn ex_each(&mut self, es: &[t::Expr]) -> DResult<(Vec<(t::Expr, bool)>, bool)> {
        let mut out = Vec::with_capacity(es.len());
        let mut any = false;
        for x in es {
            let (y, yb) = self.ex(x)?;
            any |= yb.any();
            out.push((y, yb.any()));
        }
        Ok((out, any))
    }

    /// The transform of a whole expression: its batched form and batching.
    pub fn ex(&mut self, e: &t::Expr) -> DResult<(t::Expr, BT)> {
        let span = e.span;
        let un = |k: K| -> (t::Expr, BT) { (t::Expr { kind: k, ty: e.ty.clone(), span }, BT::of(&e.ty, false)) };
        match &e.kind {
            K::Var(v) => match self.env.get(v) {
                Some((nv, bt)) => Ok((self.var(*nv), bt.clone())),
                None => Ok((e.clone(), BT::of(&e.ty, false))),
            },
            K::Const(_) | K::Iota(..) => Ok((e.clone(), BT::Leaf(false))),
            K::Unary(op, x) => self.unary(e, x, |x| K::Unary(*op, x)),
            K::Cast(x, d) => self.unary(e, x, |x| K::Cast(x, *d)),
            K::Bitcast(x, d) => self.unary(e, x, |x| K::Bitcast(x, *d)),
            K::StopGradient(x) => self.unary(e, x, K::StopGradient),
            K::Cumsum(x, axis, rev) => {
                let (x, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::Cumsum(Box::new(x), *axis, *rev)));
                }
                Ok((self.mk(K::Cumsum(Box::new(x), axis + 1, *rev), self.out(e)), BT::Leaf(true)))
            }
            // The constraint keeps its axis (shifted past the batch axis,
            // which stays unconstrained, as JAX's vmap of
            // `with_sharding_constraint` without `spmd_axis_name`).
            K::Shard(x, axis, mesh_axis) => {
                let (x, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::Shard(Box::new(x), *axis, *mesh_axis)));
                }
                Ok((self.mk(K::Shard(Box::new(x), axis + 1, *mesh_axis), self.out(e)), BT::Leaf(true)))
            }
            K::Binary(op, a, b) => {
                let (a, ab) = self.ex(a)?;
                let (b, bb) = self.ex(b)?;
                if !ab.any() && !bb.any() {
                    return Ok(un(K::Binary(*op, Box::new(a), Box::new(b))));
                }
                let r = tt(e).rank();
                let mut v = self.align(vec![(a, ab.any()), (b, bb.any())], r).into_iter();
                let (Some(a), Some(b)) = (v.next(), v.next()) else { return internal("operands", span) };
                Ok((self.mk(K::Binary(*op, Box::new(a), Box::new(b)), self.out(e)), BT::Leaf(true)))
            }
            K::Select(c, a, b) => {
                let (c, cb) = self.ex(c)?;
                let (a, ab) = self.ex(a)?;
                let (b, bb) = self.ex(b)?;
                if !cb.any() && !ab.any() && !bb.any() {
                    return Ok(un(K::Select(Box::new(c), Box::new(a), Box::new(b))));
                }
                let r = tt(e).rank();
                let mut v = self.align(vec![(c, cb.any()), (a, ab.any()), (b, bb.any())], r).into_iter();
                let (Some(c), Some(a), Some(b)) = (v.next(), v.next(), v.next()) else {
                    return internal("operands", span);
                };
                Ok((self.mk(K::Select(Box::new(c), Box::new(a), Box::new(b)), self.out(e)), BT::Leaf(true)))
            }
            K::MatMul(a, b) => {
                let (ra, rb) = (tt(a).rank(), tt(b).rank());
                let (a, ab) = self.ex(a)?;
                let (b, bb) = self.ex(b)?;
                if !ab.any() && !bb.any() {
                    return Ok(un(K::MatMul(Box::new(a), Box::new(b))));
                }
                let dims = DotDims {
                    lhs_batch: vec![],
                    rhs_batch: vec![],
                    lhs_contract: vec![ra.saturating_sub(1) as u32],
                    rhs_contract: vec![0],
                };
                let _ = rb;
                Ok((self.dot(e, a, ab.any(), ra, b, bb.any(), &dims), BT::Leaf(true)))
            }
            K::DotGeneral(a, b, dims) => {
                let ra = tt(a).rank();
                let (a, ab) = self.ex(a)?;
                let (b, bb) = self.ex(b)?;
                if !ab.any() && !bb.any() {
                    return Ok(un(K::DotGeneral(Box::new(a), Box::new(b), dims.clone())));
                }
                Ok((self.dot(e, a, ab.any(), ra, b, bb.any(), dims), BT::Leaf(true)))
            }
            K::Reduce(op, x, axis) => {
                let pt = tt(x);
                let (x, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::Reduce(*op, Box::new(x), *axis)));
                }
                match axis {
                    Some(k) => Ok((self.mk(K::Reduce(*op, Box::new(x), Some(k + 1)), self.out(e)), BT::Leaf(true))),
                    None => {
                        // [batch, every element]: `B*T` elements for a symbolic shape.
                        let Some((k, vars)) = Dim::product(&pt.dims) else {
                            return err(format!("vmap: {pt} has too many elements"), span);
                        };
                        let flat =
                            TensorTy { dtype: pt.dtype, dims: vec![Dim::Known(self.size), Dim::monomial(k, vars)] };
                        let x = Build { span }.reshape_to(x, flat);
                        Ok((self.mk(K::Reduce(*op, Box::new(x), Some(1)), self.out(e)), BT::Leaf(true)))
                    }
                }
            }
            K::Reshape(x, shape) => {
                let (x, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::Reshape(Box::new(x), shape.clone())));
                }
                let mut s = vec![self.size];
                s.extend(shape);
                Ok((self.mk(K::Reshape(Box::new(x), s), self.out(e)), BT::Leaf(true)))
            }
            K::ReshapeAs(x) => {
                let (x, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::ReshapeAs(Box::new(x))));
                }
                Ok((self.mk(K::ReshapeAs(Box::new(x)), self.out(e)), BT::Leaf(true)))
            }
            K::Transpose(x, perm) => {
                let r = tt(x).rank() as u32;
                let (x, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::Transpose(Box::new(x), perm.clone())));
                }
                let p: Vec<u32> = match perm {
                    Some(p) => p.clone(),
                    None => (0..r).rev().collect(),
                };
                let mut np = vec![0];
                np.extend(p.iter().map(|a| a + 1));
                Ok((self.mk(K::Transpose(Box::new(x), Some(np)), self.out(e)), BT::Leaf(true)))
            }
            K::Broadcast(x, shape) => {
                let r = tt(x).rank();
                let (x, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::Broadcast(Box::new(x), shape.clone())));
                }
                let x = self.lift(x, shape.len().saturating_sub(r));
                let mut s = vec![self.size];
                s.extend(shape);
                Ok((self.mk(K::Broadcast(Box::new(x), s), self.out(e)), BT::Leaf(true)))
            }
            K::Concat(xs, axis) | K::Stack(xs, axis) => {
                let (items, any) = self.ex_each(xs)?;
                let is_concat = matches!(e.kind, K::Concat(..));
                if !any {
                    let ys = items.into_iter().map(|(y, _)| y).collect();
                    return Ok(un(if is_concat { K::Concat(ys, *axis) } else { K::Stack(ys, *axis) }));
                }
                let mut ys = Vec::new();
                for (y, b) in items {
                    ys.push(if b { y } else { self.bcast(y)? });
                }
                let k = if is_concat { K::Concat(ys, axis + 1) } else { K::Stack(ys, axis + 1) };
                Ok((self.mk(k, self.out(e)), BT::Leaf(true)))
            }
            K::Slice(x, idx) => {
                let (x, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::Slice(Box::new(x), idx.clone())));
                }
                let mut ni = vec![StaticIndex::Range { start: None, stop: None, step: 1 }];
                ni.extend(idx.iter().copied());
                Ok((self.mk(K::Slice(Box::new(x), ni), self.out(e)), BT::Leaf(true)))
            }
            K::Index(x, idx) => {
                let (xb_e, xb) = self.ex(x)?;
                let (is, ib) = self.ex_each(idx)?;
                if !xb.any() && !ib {
                    return Ok(un(K::Index(Box::new(xb_e), is.into_iter().map(|(j, _)| j).collect())));
                }
                if !ib {
                    // Move the batch axis behind the indexed axes.
                    let n = is.len();
                    let moved = self.moveaxis(xb_e, 0, n);
                    let k = K::Index(Box::new(moved), is.into_iter().map(|(j, _)| j).collect());
                    return Ok((self.mk(k, self.out(e)), BT::Leaf(true)));
                }
                if let Some(g) = self.gather(e, x, xb_e.clone(), xb.any(), &is) {
                    return Ok((g, BT::Leaf(true)));
                }
                let mut kids = vec![(xb_e, xb.any())];
                kids.extend(is);
                self.per_element(e, kids, &|mut v| {
                    let x = v.remove(0);
                    K::Index(Box::new(x), v)
                })
            }
            K::Update { mode, base, idx, value } => {
                let (bs, bb) = self.ex(base)?;
                let (vs, vb) = self.ex(value)?;
                let (is, ib) = self.ex_each(idx)?;
                let mode = *mode;
                if !bb.any() && !vb.any() && !ib {
                    let k = K::Update {
                        mode,
                        base: Box::new(bs),
                        idx: is.into_iter().map(|(j, _)| j).collect(),
                        value: Box::new(vs),
                    };
                    return Ok(un(k));
                }
                if !ib {
                    let n = is.len();
                    let bs = if bb.any() { bs } else { self.bcast(bs)? };
                    let vs = if vb.any() { vs } else { self.bcast(vs)? };
                    let moved = self.moveaxis(bs, 0, n);
                    let mty = moved.ty.clone();
                    let k = K::Update {
                        mode,
                        base: Box::new(moved),
                        idx: is.into_iter().map(|(j, _)| j).collect(),
                        value: Box::new(vs),
                    };
                    let upd = self.mk(k, mty);
                    return Ok((self.moveaxis(upd, n, 0), BT::Leaf(true)));
                }
                if let Some(u) = self.scatter_update(base, bs.clone(), bb.any(), vs.clone(), vb.any(), &is, mode)? {
                    return Ok((u, BT::Leaf(true)));
                }
                let mut kids = vec![(bs, bb.any()), (vs, vb.any())];
                kids.extend(is);
                self.per_element(e, kids, &|mut v| {
                    let base = v.remove(0);
                    let value = v.remove(0);
                    K::Update { mode, base: Box::new(base), idx: v, value: Box::new(value) }
                })
            }
            K::Take(x, ids, axis) => {
                let (xs, xb) = self.ex(x)?;
                let (is, ib) = self.ex(ids)?;
                if !xb.any() && !ib.any() {
                    return Ok(un(K::Take(Box::new(xs), Box::new(is), *axis)));
                }
                if !ib.any() {
                    return Ok((self.mk(K::Take(Box::new(xs), Box::new(is), axis + 1), self.out(e)), BT::Leaf(true)));
                }
                if !xb.any() {
                    // x's axis `axis` becomes ids' shape, whose first axis is the batch.
                    let pt = tt(e);
                    let mut dims = pt.dims.clone();
                    dims.insert((*axis as usize).min(dims.len()), Dim::Known(self.size));
                    let ty = Type::Tensor(TensorTy { dtype: pt.dtype, dims });
                    let take = self.mk(K::Take(Box::new(xs), Box::new(is), *axis), ty);
                    return Ok((self.moveaxis(take, *axis as usize, 0), BT::Leaf(true)));
                }
                if let Some(r) = self.take_both(x, xs.clone(), ids, is.clone(), *axis) {
                    return Ok((r, BT::Leaf(true)));
                }
                let axis = *axis;
                self.per_element(e, vec![(xs, true), (is, true)], &|mut v| {
                    let x = v.remove(0);
                    let i = v.remove(0);
                    K::Take(Box::new(x), Box::new(i), axis)
                })
            }
            K::ScatterAdd(base, ids, upd, axis) => {
                let (bs, bb) = self.ex(base)?;
                let (is, ib) = self.ex(ids)?;
                let (us, ub) = self.ex(upd)?;
                if !bb.any() && !ib.any() && !ub.any() {
                    return Ok(un(K::ScatterAdd(Box::new(bs), Box::new(is), Box::new(us), *axis)));
                }
                if !ib.any() {
                    let bs = if bb.any() { bs } else { self.bcast(bs)? };
                    let us = if ub.any() { us } else { self.bcast(us)? };
                    let k = K::ScatterAdd(Box::new(bs), Box::new(is), Box::new(us), axis + 1);
                    return Ok((self.mk(k, self.out(e)), BT::Leaf(true)));
                }
                if let Some(r) =
                    self.scatter_add_batched(base, bs.clone(), bb.any(), ids, is.clone(), us.clone(), ub.any(), *axis)?
                {
                    return Ok((r, BT::Leaf(true)));
                }
                let axis = *axis;
                self.per_element(e, vec![(bs, bb.any()), (is, true), (us, ub.any())], &|mut v| {
                    let b = v.remove(0);
                    let i = v.remove(0);
                    let u = v.remove(0);
                    K::ScatterAdd(Box::new(b), Box::new(i), Box::new(u), axis)
                })
            }
            K::DynSlice(x, starts, sizes) => {
                let (xs, xb) = self.ex(x)?;
                let (ss, sb) = self.ex_each(starts)?;
                if !xb.any() && !sb {
                    return Ok(un(K::DynSlice(Box::new(xs), ss.into_iter().map(|(j, _)| j).collect(), sizes.clone())));
                }
                if !sb {
                    let d = ss.first().map_or(DType::I32, |(j, _)| tt(j).dtype);
                    let mut st = vec![self.b().cst(d, 0.0)];
                    st.extend(ss.into_iter().map(|(j, _)| j));
                    let mut sz = vec![self.size];
                    sz.extend(sizes);
                    return Ok((self.mk(K::DynSlice(Box::new(xs), st, sz), self.out(e)), BT::Leaf(true)));
                }
                if let Some(g) = self.dyn_slice_gather(x, xs.clone(), xb.any(), &ss, sizes) {
                    return Ok((g, BT::Leaf(true)));
                }
                let sizes = sizes.clone();
                let mut kids = vec![(xs, xb.any())];
                kids.extend(ss);
                self.per_element(e, kids, &|mut v| {
                    let x = v.remove(0);
                    K::DynSlice(Box::new(x), v, sizes.clone())
                })
            }
            K::DynUpdateSlice(x, u, starts) => {
                let (xs, xb) = self.ex(x)?;
                let (us, ub) = self.ex(u)?;
                let (ss, sb) = self.ex_each(starts)?;
                if !xb.any() && !ub.any() && !sb {
                    let st = ss.into_iter().map(|(j, _)| j).collect();
                    return Ok(un(K::DynUpdateSlice(Box::new(xs), Box::new(us), st)));
                }
                if !sb {
                    let xs = if xb.any() { xs } else { self.bcast(xs)? };
                    let us = if ub.any() { us } else { self.bcast(us)? };
                    let d = ss.first().map_or(DType::I32, |(j, _)| tt(j).dtype);
                    let mut st = vec![self.b().cst(d, 0.0)];
                    st.extend(ss.into_iter().map(|(j, _)| j));
                    return Ok((
                        self.mk(K::DynUpdateSlice(Box::new(xs), Box::new(us), st), self.out(e)),
                        BT::Leaf(true),
                    ));
                }
                if let Some(s) = self.dyn_update_scatter(x, xs.clone(), xb.any(), us.clone(), ub.any(), &ss)? {
                    return Ok((s, BT::Leaf(true)));
                }
                let mut kids = vec![(xs, xb.any()), (us, ub.any())];
                kids.extend(ss);
                self.per_element(e, kids, &|mut v| {
                    let x = v.remove(0);
                    let u = v.remove(0);
                    K::DynUpdateSlice(Box::new(x), Box::new(u), v)
                })
            }
            K::ShapeOf(x) => {
                let (xs, xb) = self.ex(x)?;
                if !xb.any() {
                    return Ok(un(K::ShapeOf(Box::new(xs))));
                }
                let st = TensorTy::known(tt(e).dtype, &[tt(x).rank() as u64 + 1]);
                let s = self.mk(K::ShapeOf(Box::new(xs)), Type::Tensor(st));
                let idx = vec![StaticIndex::Range { start: Some(1), stop: None, step: 1 }];
                Ok((self.mk(K::Slice(Box::new(s), idx), e.ty.clone()), BT::Leaf(false)))
            }
            K::Print(x) => {
                let (xs, xb) = self.ex(x)?;
                if xb.any() {
                    return err(
                        "vmap: `print` of a value that depends on the mapped arguments is not supported; print the batched result outside `vmap`",
                        span,
                    );
                }
                if self.per_element {
                    return err(
                        "vmap: `print` inside a branch or loop whose condition depends on the mapped arguments is not supported (the branch runs for every element)",
                        span,
                    );
                }
                Ok(un(K::Print(Box::new(xs))))
            }
            K::Tuple(xs) => {
                let mut ys = Vec::new();
                let mut bts = Vec::new();
                for x in xs {
                    let (y, yb) = self.ex(x)?;
                    ys.push(y);
                    bts.push(yb);
                }
                let bt = BT::Node(bts);
                let ty = self.bty(&e.ty, &bt);
                Ok((self.mk(K::Tuple(ys), ty), bt))
            }
            K::Block(stmts, result) => {
                let mut out = Vec::new();
                for s in stmts {
                    match s {
                        Stmt::Let(p, x) => {
                            let (y, yb) = self.ex(x)?;
                            let p = self.bind(p, &yb);
                            out.push(Stmt::Let(p, y));
                        }
                        Stmt::Expr(x) => {
                            let (y, _) = self.ex(x)?;
                            out.push(Stmt::Expr(y));
                        }
                    }
                }
                let (r, rb) = self.ex(result)?;
                let ty = r.ty.clone();
                Ok((self.mk(K::Block(out, Box::new(r)), ty), rb))
            }
            K::If(c, a, b) => self.if_(e, c, a, b),
            K::Call(fid, args) => self.call(e, *fid, args),
            K::Fori { lo, hi, init, body, unroll } => self.fori(e, lo, hi, init, body, *unroll),
            K::While { init, cond, body, max_iters } => self.while_(e, init, cond, body, *max_iters),
            K::Scan { init, xs, length, reverse, unroll, checkpoint, body } => {
                self.scan(e, init, xs.as_deref(), *length, *reverse, *unroll, *checkpoint, body)
            }
        }
    }

    fn unary(&mut self, e: &t::Expr, x: &t::Expr, f: impl Fn(Box<t::Expr>) -> K) -> DResult<(t::Expr, BT)> {
        let (x, xb) = self.ex(x)?;
        if !xb.any() {
            return Ok((self.mk(f(Box::new(x)), e.ty.clone()), BT::Leaf(false)));
        }
        Ok((self.mk(f(Box::new(x)), self.out(e)), BT::Leaf(true)))
    }

    /// A batched `dot_general` of per-example `dims` (`ra`: the lhs's
    /// per-example rank), the batch moved to the front of the result.
    #[allow(clippy::too_many_arguments)]
    fn dot(&self, e: &t::Expr, a: t::Expr, ab: bool, ra: usize, b: t::Expr, bb: bool, dims: &DotDims) -> t::Expr {
        let sh = |v: &[u32]| v.iter().map(|x| x + 1).collect::<Vec<u32>>();
        let nb = dims.lhs_batch.len();
        let (nd, pos) = if ab && bb {
            let mut lb = vec![0];
            lb.extend(sh(&dims.lhs_batch));
            let mut rb = vec![0];
            rb.extend(sh(&dims.rhs_batch));
            (
                DotDims {
                    lhs_batch: lb,
                    rhs_batch: rb,
                    lhs_contract: sh(&dims.lhs_contract),
                    rhs_contract: sh(&dims.rhs_contract),
                },
                0,
            )
        } else if ab {
            let d = DotDims {
                lhs_batch: sh(&dims.lhs_batch),
                rhs_batch: dims.rhs_batch.clone(),
                lhs_contract: sh(&dims.lhs_contract),
                rhs_contract: dims.rhs_contract.clone(),
            };
            (d, nb)
        } else {
            let d = DotDims {
                lhs_batch: dims.lhs_batch.clone(),
                rhs_batch: sh(&dims.rhs_batch),
                lhs_contract: dims.lhs_contract.clone(),
                rhs_contract: sh(&dims.rhs_contract),
            };
            let lfree = ra.saturating_sub(nb + dims.lhs_contract.len());
            (d, nb + lfree)
        };
        let pt = tt(e);
        let mut rd = pt.dims.clone();
        rd.insert(pos.min(rd.len()), Dim::Known(self.size));
        let ty = Type::Tensor(TensorTy { dtype: pt.dtype, dims: rd });
        let d = self.mk(K::DotGeneral(Box::new(a), Box::new(b), nd), ty);
        self.moveaxis(d, pos, 0)
    }

    /// `e` as `i64`.
    fn to_i64(&self, e: t::Expr) -> t::Expr {
        let et = tt(&e);
        if et.dtype == DType::I64 {
            return e;
        }
        let ty = TensorTy { dtype: DType::I64, dims: et.dims.clone() };
        self.mk(K::Cast(Box::new(e), DType::I64), Type::Tensor(ty))
    }

    /// An index into a dimension of size `d` (`i64`), as the ops clamp it:
    /// with `wrap`, a negative index first has `d` added once (dynamic
    /// indexing and `.at[]`); then it is clamped into `[0, d - 1]`.
    fn clamp_index(&self, i: t::Expr, d: u64, wrap: bool) -> t::Expr {
        let bld = self.b();
        let i64t = DType::I64;
        let mut v = self.to_i64(i);
        if wrap {
            let neg = bld.bin(BinaryOp::Lt, v.clone(), bld.cst(i64t, 0.0));
            let wrapped = bld.bin(BinaryOp::Add, v.clone(), bld.cst(i64t, d as f64));
            v = bld.sel(neg, wrapped, v);
        }
        let v = bld.bin(BinaryOp::Max, v, bld.cst(i64t, 0.0));
        bld.bin(BinaryOp::Min, v, bld.cst(i64t, d.saturating_sub(1) as f64))
    }

    /// `b * per` for every element `b` of the batch, as `i64[B, 1, ...]`
    /// with `extra` unit axes.
    fn offsets(&self, per: u64, extra: usize) -> t::Expr {
        let bld = self.b();
        let rows = self.mk(K::Iota(DType::I64, self.size), Type::Tensor(TensorTy::known(DType::I64, &[self.size])));
        let off = bld.bin(BinaryOp::Mul, rows, bld.cst(DType::I64, per as f64));
        self.lift(off, extra)
    }

    fn reshape(&self, e: t::Expr, shape: Vec<u64>) -> t::Expr {
        let ty = TensorTy::known(tt(&e).dtype, &shape);
        self.mk(K::Reshape(Box::new(e), shape), Type::Tensor(ty))
    }

    fn permute(&self, e: t::Expr, perm: Vec<u32>) -> t::Expr {
        let et = tt(&e);
        let dims = perm.iter().map(|&p| et.dims.get(p as usize).cloned().unwrap_or(Dim::Known(1))).collect();
        self.mk(K::Transpose(Box::new(e), Some(perm)), Type::Tensor(TensorTy { dtype: et.dtype, dims }))
    }

    /// The flat positions (`i64[B]`) that indices `idx` of the leading axes
    /// `lead` select in each element (plus `b * prod(lead)` when `offset`).
    fn flat_index(&self, idx: &[(t::Expr, bool)], lead: &[u64], offset: bool) -> Option<t::Expr> {
        let bld = self.b();
        let p: u64 = lead.iter().product();
        let mut flat: Option<t::Expr> = None;
        let mut stride = p;
        for ((i, _), &d) in idx.iter().zip(lead) {
            stride /= d.max(1);
            let v = self.clamp_index(i.clone(), d, true);
            let v = if stride == 1 { v } else { bld.bin(BinaryOp::Mul, v, bld.cst(DType::I64, stride as f64)) };
            flat = Some(match flat {
                None => v,
                Some(f) => bld.bin(BinaryOp::Add, f, v),
            });
        }
        let mut flat = flat?;
        if offset {
            flat = bld.bin(BinaryOp::Add, flat, self.offsets(p, 0));
        }
        // Unbatched indices alone give a scalar: broadcast it along the batch.
        if tt(&flat).rank() == 0 {
            let ty = TensorTy::known(DType::I64, &[self.size]);
            flat = self.mk(K::Broadcast(Box::new(flat), vec![self.size]), Type::Tensor(ty));
        }
        Some(flat)
    }

    /// `x[i, j, ...]` with batched indices as one `take` from `x` with the
    /// indexed axes (and the batch, when `x` is batched) flattened into one.
    /// `None` when a dimension is symbolic or empty (the per-element rule
    /// runs instead).
    fn gather(&mut self, e: &t::Expr, x: &t::Expr, xs: t::Expr, xb: bool, idx: &[(t::Expr, bool)]) -> Option<t::Expr> {
        let dims = known(&tt(x).dims)?;
        let (lead, rest) = (dims.get(..idx.len())?, dims.get(idx.len()..)?);
        let p: u64 = lead.iter().product();
        if p == 0 {
            return None;
        }
        let flat = self.flat_index(idx, lead, xb)?;
        let mut shape = vec![if xb { self.size * p } else { p }];
        shape.extend(rest);
        let xflat = self.reshape(xs, shape);
        Some(self.mk(K::Take(Box::new(xflat), Box::new(flat), 0), self.out(e)))
    }

    /// `dynamic_slice(x, starts, sizes)` with batched starts as one `take`:
    /// each start normalised as `dynamic_slice` places its window (a negative
    /// start has the dimension added once, then it is clamped into
    /// `[0, dim - size]`), and every position of every element's window taken
    /// from `x` flattened (with the batch, when `x` is batched).
    fn dyn_slice_gather(
        &mut self,
        x: &t::Expr,
        xs: t::Expr,
        xb: bool,
        starts: &[(t::Expr, bool)],
        sizes: &[u64],
    ) -> Option<t::Expr> {
        let dims = known(&tt(x).dims)?;
        let r = dims.len();
        if starts.len() != r || sizes.len() != r {
            return None;
        }
        let p: u64 = dims.iter().product();
        if p == 0 || sizes.iter().zip(&dims).any(|(s, d)| s > d) {
            return None;
        }
        let bld = self.b();
        let i64t = DType::I64;
        let mut pos: Option<t::Expr> = if xb { Some(self.offsets(p, r)) } else { None };
        let mut stride = p;
        for (j, ((st, sb), (&d, &size))) in starts.iter().zip(dims.iter().zip(sizes)).enumerate() {
            stride /= d.max(1);
            let v = self.window_start(st, *sb, d, size, r);
            let grid = self.axis_grid(j, size, r);
            let term = bld.bin(BinaryOp::Add, v, grid);
            let term = if stride == 1 { term } else { bld.bin(BinaryOp::Mul, term, bld.cst(i64t, stride as f64)) };
            pos = Some(match pos {
                None => term,
                Some(q) => bld.bin(BinaryOp::Add, q, term),
            });
        }
        let pos = pos?;
        let n = if xb { self.size * p } else { p };
        let xflat = self.reshape(xs, vec![n]);
        let mut out = vec![self.size];
        out.extend(sizes);
        Some(self.mk(K::Take(Box::new(xflat), Box::new(pos), 0), Type::Tensor(TensorTy::known(tt(x).dtype, &out))))
    }

    /// A `dynamic_slice` start on an axis of length `d` for a window of
    /// `size`, as the op places it: wrapped once when negative, clamped into
    /// `[0, d - size]`, as `i64`; lifted to rank `r + 1` (batch first) when
    /// `batched`.
    fn window_start(&mut self, st: &t::Expr, batched: bool, d: u64, size: u64, r: usize) -> t::Expr {
        let bld = self.b();
        let i64t = DType::I64;
        let v = self.to_i64(st.clone());
        let neg = bld.bin(BinaryOp::Lt, v.clone(), bld.cst(i64t, 0.0));
        let wrapped = bld.bin(BinaryOp::Add, v.clone(), bld.cst(i64t, d as f64));
        let v = bld.sel(neg, wrapped, v);
        let v = bld.bin(BinaryOp::Max, v, bld.cst(i64t, 0.0));
        let v = bld.bin(BinaryOp::Min, v, bld.cst(i64t, (d - size) as f64));
        if batched {
            self.lift(v, r)
        } else {
            v
        }
    }

    /// `0..n` as `i64` along axis `j + 1` of a rank-`r + 1` shape of ones
    /// (axis 0 the batch).
    fn axis_grid(&mut self, j: usize, n: u64, r: usize) -> t::Expr {
        let i64t = DType::I64;
        let mut gshape = vec![1u64; r + 1];
        if let Some(g) = gshape.get_mut(j + 1) {
            *g = n;
        }
        let iota = self.mk(K::Iota(i64t, n), Type::Tensor(TensorTy::known(i64t, &[n])));
        self.reshape(iota, gshape)
    }

    /// `dynamic_update_slice(x, u, starts)` with batched starts as one
    /// scatter (JAX batches it into a `scatter` with the batch as an index
    /// dimension): over every position `(b, p)` of the batched `x`, the
    /// offset `p - start_b` (each start normalised as `dynamic_slice` places
    /// its window: wrapped once, clamped into `[0, dim - size]`) says whether
    /// the position is inside element `b`'s window and which element of
    /// `u`'s flattened batch it takes; one `take` gathers them and a
    /// `select` keeps `x` outside the windows. `None` when a shape is
    /// symbolic or empty (the per-element rule runs instead).
    #[allow(clippy::too_many_arguments)]
    fn dyn_update_scatter(
        &mut self,
        x: &t::Expr,
        xs: t::Expr,
        xb: bool,
        us: t::Expr,
        ub: bool,
        starts: &[(t::Expr, bool)],
    ) -> DResult<Option<t::Expr>> {
        let Some(dims) = known(&tt(x).dims) else { return Ok(None) };
        let ut = tt(&us);
        let Some(udims) = known(&ut.dims) else { return Ok(None) };
        let sizes: Vec<u64> = udims.iter().skip(usize::from(ub)).copied().collect();
        let r = dims.len();
        if starts.len() != r || sizes.len() != r || sizes.iter().zip(&dims).any(|(s, d)| s > d) {
            return Ok(None);
        }
        let (p, q): (u64, u64) = (dims.iter().product(), sizes.iter().product());
        if p == 0 || q == 0 {
            return Ok(None);
        }
        let xs = if xb { xs } else { self.bcast(xs)? };
        let us = if ub { us } else { self.bcast(us)? };
        let bld = self.b();
        let i64t = DType::I64;
        let mut inside: Option<t::Expr> = None;
        // Element b's rows of u start at b * |u|.
        let mut uidx = self.offsets(q, r);
        let mut ustride = q;
        for (j, ((st, sb), (&d, &size))) in starts.iter().zip(dims.iter().zip(&sizes)).enumerate() {
            ustride /= size;
            let v = self.window_start(st, *sb, d, size, r);
            let grid = self.axis_grid(j, d, r);
            let rel = bld.bin(BinaryOp::Sub, grid, v);
            let lo = bld.bin(BinaryOp::Ge, rel.clone(), bld.cst(i64t, 0.0));
            let hi = bld.bin(BinaryOp::Lt, rel.clone(), bld.cst(i64t, size as f64));
            let ok = bld.bin(BinaryOp::And, lo, hi);
            inside = Some(match inside {
                None => ok,
                Some(a) => bld.bin(BinaryOp::And, a, ok),
            });
            let rel = bld.bin(BinaryOp::Max, rel, bld.cst(i64t, 0.0));
            let rel = bld.bin(BinaryOp::Min, rel, bld.cst(i64t, (size - 1) as f64));
            let term = if ustride == 1 { rel } else { bld.bin(BinaryOp::Mul, rel, bld.cst(i64t, ustride as f64)) };
            uidx = bld.bin(BinaryOp::Add, uidx, term);
        }
        let Some(inside) = inside else { return Ok(None) };
        let mut full = vec![self.size];
        full.extend(&dims);
        // Broadcast both to the full batched shape (a start may be unbatched).
        let inside =
            self.mk(K::Broadcast(Box::new(inside), full.clone()), Type::Tensor(TensorTy::known(DType::Bool, &full)));
        let uidx = self.mk(K::Broadcast(Box::new(uidx), full.clone()), Type::Tensor(TensorTy::known(i64t, &full)));
        let uflat = self.reshape(us, vec![self.size * q]);
        let taken =
            self.mk(K::Take(Box::new(uflat), Box::new(uidx), 0), Type::Tensor(TensorTy::known(ut.dtype, &full)));
        Ok(Some(bld.sel(inside, taken, xs)))
    }

    /// `base.at[i, ...].set(v)` / `.add(v)` with batched indices, without a
    /// scatter: over the flattened batch of `base`, each row takes `v`'s row
    /// of its own element where that element's flat position is this row.
    #[allow(clippy::too_many_arguments)]
    fn scatter_update(
        &mut self,
        base: &t::Expr,
        bs: t::Expr,
        bb: bool,
        vs: t::Expr,
        vb: bool,
        idx: &[(t::Expr, bool)],
        mode: UpdateMode,
    ) -> DResult<Option<t::Expr>> {
        let Some(dims) = known(&tt(base).dims) else { return Ok(None) };
        let (Some(lead), Some(rest)) = (dims.get(..idx.len()), dims.get(idx.len()..)) else { return Ok(None) };
        let p: u64 = lead.iter().product();
        if p == 0 {
            return Ok(None);
        }
        let Some(flat) = self.flat_index(idx, lead, true) else { return Ok(None) };
        let bs = if bb { bs } else { self.bcast(bs)? };
        let vs = if vb { vs } else { self.bcast(vs)? };
        let bld = self.b();
        let n = self.size * p;
        let mut shape = vec![n];
        shape.extend(rest);
        let base_flat = self.reshape(bs, shape);
        let r = self.mk(K::Iota(DType::I64, n), Type::Tensor(TensorTy::known(DType::I64, &[n])));
        let owner = bld.bin(BinaryOp::Div, r.clone(), bld.cst(DType::I64, p as f64));
        let vt = tt(&vs);
        let mut sdims = vec![Dim::Known(n)];
        sdims.extend(vt.dims.iter().skip(1).cloned());
        let src = self.mk(
            K::Take(Box::new(vs), Box::new(owner.clone()), 0),
            Type::Tensor(TensorTy { dtype: vt.dtype, dims: sdims }),
        );
        let pos = self.mk(K::Take(Box::new(flat), Box::new(owner), 0), Type::Tensor(TensorTy::known(DType::I64, &[n])));
        let hit = bld.bin(BinaryOp::Eq, pos, r);
        let hit = self.lift(hit, rest.len());
        let new = match mode {
            UpdateMode::Set => bld.sel(hit, src, base_flat),
            UpdateMode::Add => {
                let sum = bld.bin(BinaryOp::Add, base_flat.clone(), src);
                bld.sel(hit, sum, base_flat)
            }
        };
        let mut out = vec![self.size];
        out.extend(&dims);
        Ok(Some(self.reshape(new, out)))
    }

    /// `take(x, ids, axis: k)` with `x` and `ids` both batched: one `take`
    /// from `x` with the batch and axis `k` flattened into one.
    fn take_both(&mut self, x: &t::Expr, xs: t::Expr, ids: &t::Expr, is: t::Expr, k: u32) -> Option<t::Expr> {
        let dims = known(&tt(x).dims)?;
        let k = k as usize;
        let n = *dims.get(k)?;
        let sdims = known(&tt(ids).dims)?;
        let m = sdims.len();
        if n == 0 {
            return None;
        }
        let others: Vec<u64> = dims.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, d)| *d).collect();
        let front = self.moveaxis(xs, k + 1, 1);
        let mut shape = vec![self.size * n];
        shape.extend(&others);
        let xflat = self.reshape(front, shape);
        let bld = self.b();
        let ids2 = self.clamp_index(is, n, false);
        let ids2 = bld.bin(BinaryOp::Add, ids2, self.offsets(n, m));
        let mut tdims = vec![self.size];
        tdims.extend(&sdims);
        tdims.extend(&others);
        let taken =
            self.mk(K::Take(Box::new(xflat), Box::new(ids2), 0), Type::Tensor(TensorTy::known(tt(x).dtype, &tdims)));
        // [B, S, before, after] → [B, before, S, after].
        let mut perm: Vec<u32> = vec![0];
        perm.extend((m + 1..m + 1 + k).map(|a| a as u32));
        perm.extend((1..=m).map(|a| a as u32));
        perm.extend((m + 1 + k..1 + m + others.len()).map(|a| a as u32));
        Some(self.permute(taken, perm))
    }

    /// The transpose of `take` with batched ids: one `scatter_add` into the
    /// flattened batch and axis `k` of `base`, in the order of the ids.
    #[allow(clippy::too_many_arguments)]
    fn scatter_add_batched(
        &mut self,
        base: &t::Expr,
        bs: t::Expr,
        bb: bool,
        ids: &t::Expr,
        is: t::Expr,
        us: t::Expr,
        ub: bool,
        k: u32,
    ) -> DResult<Option<t::Expr>> {
        let (Some(dims), Some(sdims)) = (known(&tt(base).dims), known(&tt(ids).dims)) else { return Ok(None) };
        let k = k as usize;
        let Some(&n) = dims.get(k) else { return Ok(None) };
        if n == 0 {
            return Ok(None);
        }
        let m = sdims.len();
        let bs = if bb { bs } else { self.bcast(bs)? };
        let us = if ub { us } else { self.bcast(us)? };
        let others: Vec<u64> = dims.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, d)| *d).collect();
        let front = self.moveaxis(bs, k + 1, 1);
        let mut shape = vec![self.size * n];
        shape.extend(&others);
        let bflat = self.reshape(front, shape.clone());
        let bld = self.b();
        let ids2 = self.clamp_index(is, n, false);
        let ids2 = bld.bin(BinaryOp::Add, ids2, self.offsets(n, m));
        let cnt: u64 = sdims.iter().product();
        let ids2 = self.reshape(ids2, vec![self.size * cnt]);
        // Updates [B, before, S, after] → [B, S, before, after] → [B * |S|, others].
        let mut perm: Vec<u32> = vec![0];
        perm.extend((1 + k..1 + k + m).map(|a| a as u32));
        perm.extend((1..1 + k).map(|a| a as u32));
        perm.extend((1 + k + m..1 + m + others.len()).map(|a| a as u32));
        let uperm = self.permute(us, perm);
        let mut ushape = vec![self.size * cnt];
        ushape.extend(&others);
        let uflat = self.reshape(uperm, ushape);
        let sc = self.mk(
            K::ScatterAdd(Box::new(bflat), Box::new(ids2), Box::new(uflat), 0),
            Type::Tensor(TensorTy::known(tt(base).dtype, &shape)),
        );
        let mut back = vec![self.size, n];
        back.extend(&others);
        let sc = self.reshape(sc, back);
        Ok(Some(self.moveaxis(sc, 1, k + 1)))
    }

    /// The rule of last resort: the op once per element, in a static
    /// `fori_loop` over the batch that writes row `b` of the result.
    fn per_element(
        &mut self,
        e: &t::Expr,
        kids: Vec<(t::Expr, bool)>,
        rebuild: &dyn Fn(Vec<t::Expr>) -> K,
    ) -> DResult<(t::Expr, BT)> {
        let pt = tt(e);
        let bt = self.bt_leaf(&pt);
        let Some(shape) = known(&bt.dims) else {
            return err(
                format!("vmap: no batching rule for {} with a symbolic result shape {pt}", kind_name(&e.kind)),
                e.span,
            );
        };
        let mut lets = Vec::new();
        let mut kvars = Vec::new();
        for (x, b) in kids {
            let v = self.new_var(x.ty.clone());
            lets.push((v, x));
            kvars.push((v, b));
        }
        let i = self.new_var(Type::scalar(DType::I32));
        let acc = self.new_var(Type::Tensor(bt.clone()));
        let mut args = Vec::new();
        for (v, b) in kvars {
            let x = self.var(v);
            if b {
                let xt = tt(&x);
                let per = TensorTy { dtype: xt.dtype, dims: xt.dims.iter().skip(1).cloned().collect() };
                args.push(self.mk(K::Index(Box::new(x), vec![self.var(i)]), Type::Tensor(per)));
            } else {
                args.push(x);
            }
        }
        let op = t::Expr { kind: rebuild(args), ty: e.ty.clone(), span: e.span };
        let upd = K::Update {
            mode: UpdateMode::Set,
            base: Box::new(self.var(acc)),
            idx: vec![self.var(i)],
            value: Box::new(op),
        };
        let upd = self.mk(upd, Type::Tensor(bt.clone()));
        let zero = self.b().cst(pt.dtype, 0.0);
        let init = self.mk(K::Broadcast(Box::new(zero), shape), Type::Tensor(bt.clone()));
        let lo = self.b().cst(DType::I32, 0.0);
        let hi = self.b().cst(DType::I32, self.size as f64);
        let fori = K::Fori {
            lo: Box::new(lo),
            hi: Box::new(hi),
            init: Box::new(init),
            body: Lambda { params: vec![Pattern::Var(i), Pattern::Var(acc)], body: Box::new(upd) },
            unroll: 1,
        };
        let fori = self.mk(fori, Type::Tensor(bt));
        Ok((self.b().block(lets, fori), BT::Leaf(true)))
    }
}
