//! Variables and typed-IR expression builders shared by every phase (new variables,
//! typed constructors, zeros, (un)broadcasting, statement emission).

use super::ir::Atom;
use super::{err, internal, known, scalar_const, slice_range, Ad, MAX_STMTS};
use crate::build::Build;
use crate::diag::DResult;
use crate::typed::{self as t, ExprKind as K, Pattern, StaticIndex, VarId, VarInfo};
use crate::types::{Dim, TensorTy, Type};
use loopvm_runtime::rules::DotDims;
use loopvm_runtime::{rules as shape_rules, BinaryOp, DType, ReduceOp, Shape, UnaryOp};

impl Ad<'_> {
    /// The typed-IR builder at the differentiated span.
    pub(super) fn b(&self) -> Build {
        Build { span: self.span }
    }

    /// A fresh variable of type `ty` (appended to the variable table).
    pub(super) fn new_var(&mut self, ty: Type) -> VarId {
        let id = VarId(u32::try_from(self.vars.len()).unwrap_or(u32::MAX));
        self.vars.push(VarInfo { name: "_".into(), ty });
        id
    }

    /// A fresh tensor variable of type `ty`.
    pub(super) fn new_leaf(&mut self, ty: &TensorTy) -> VarId {
        self.new_var(Type::Tensor(ty.clone()))
    }

    /// The tensor type of variable `v` (an `f32` scalar if it is not a tensor).
    pub(super) fn vty(&self, v: VarId) -> TensorTy {
        match self.vars.get(v.0 as usize).map(|i| &i.ty) {
            Some(Type::Tensor(t)) => t.clone(),
            _ => TensorTy::scalar(DType::F32),
        }
    }

    /// The tensor type of an atom.
    pub(super) fn aty(&self, a: &Atom) -> TensorTy {
        match a {
            Atom::Var(v) => self.vty(*v),
            Atom::Const(c) => TensorTy::known(c.dtype, &c.shape),
        }
    }

    /// A tensor expression of kind `kind` and type `ty`, at the differentiated span.
    pub(super) fn mk(&self, kind: K, ty: TensorTy) -> t::Expr {
        self.b().mk(kind, ty)
    }

    /// Variable `v` as an expression.
    pub(super) fn ve(&self, v: VarId) -> t::Expr {
        let ty = self.vars.get(v.0 as usize).map_or_else(Type::unit, |i| i.ty.clone());
        t::Expr { kind: K::Var(v), ty, span: self.span }
    }

    /// An atom as an expression.
    pub(super) fn ae(&self, a: &Atom) -> t::Expr {
        match a {
            Atom::Var(v) => self.ve(*v),
            Atom::Const(c) => self.mk(K::Const(c.clone()), TensorTy::known(c.dtype, &c.shape)),
        }
    }

    /// The tuple of `xs`.
    pub(super) fn tuple(&self, xs: Vec<t::Expr>) -> t::Expr {
        let ty = Type::Tuple(xs.iter().map(|x| x.ty.clone()).collect());
        t::Expr { kind: K::Tuple(xs), ty, span: self.span }
    }

    /// The scalar constant `v` of type `dtype`.
    pub(super) fn cst(&self, dtype: DType, v: f64) -> t::Expr {
        self.b().cst(dtype, v)
    }

    /// The tensor type of expression `e` (an `f32` scalar if it is a tuple).
    pub(super) fn et(e: &t::Expr) -> TensorTy {
        Build::et(e)
    }

    /// `a op b`, typed by broadcasting (comparisons give `bool`).
    pub(super) fn bin(&self, op: BinaryOp, a: t::Expr, b: t::Expr) -> t::Expr {
        self.b().bin(op, a, b)
    }

    /// `op(a)`.
    pub(super) fn un(&self, op: UnaryOp, a: t::Expr) -> t::Expr {
        self.b().un(op, a)
    }

    /// `select(c, a, b)`, typed by broadcasting.
    pub(super) fn sel(&self, c: t::Expr, a: t::Expr, b: t::Expr) -> t::Expr {
        self.b().sel(c, a, b)
    }

    /// The reduction `op` of `a` along `axis` (all axes when `None`).
    pub(super) fn reduce(&self, op: ReduceOp, a: t::Expr, axis: Option<u32>) -> t::Expr {
        self.b().reduce(op, a, axis)
    }

    /// `a` with its axes permuted by `perm` (reversed when `None`).
    pub(super) fn transpose(&self, a: t::Expr, perm: Option<Vec<u32>>) -> t::Expr {
        let at = Self::et(&a);
        let axes: Shape = match &perm {
            None => shape_rules::permutation(at.rank(), None).unwrap_or_default(),
            Some(p) => p.iter().map(|&i| i as usize).collect(),
        };
        let dims = shape_rules::permute(&at.dims, &axes);
        self.mk(K::Transpose(Box::new(a), perm), TensorTy { dtype: at.dtype, dims })
    }

    /// The matrix product of `a` and `b` (matrix-vector and vector-vector included).
    pub(super) fn matmul(&self, a: t::Expr, b: t::Expr) -> t::Expr {
        let (at, bt) = (Self::et(&a), Self::et(&b));
        let dims = shape_rules::matmul(&at.dims, &bt.dims).map(|mm| mm.dims()).unwrap_or_default();
        self.mk(K::MatMul(Box::new(a), Box::new(b)), TensorTy { dtype: at.dtype, dims })
    }

    /// `dot_general(a, b, dims)`: batch dims, then `a`'s free dims, then `b`'s.
    pub(super) fn dot_general(&self, a: t::Expr, b: t::Expr, dims: DotDims) -> t::Expr {
        let (at, bt) = (Self::et(&a), Self::et(&b));
        let shape = shape_rules::dot_general(&at.dims, &bt.dims, &dims).map(|g| g.dims()).unwrap_or_default();
        self.mk(K::DotGeneral(Box::new(a), Box::new(b), dims), TensorTy { dtype: at.dtype, dims: shape })
    }

    /// JAX's `_dot_general_transpose_lhs`: the cotangent of `x` (rank
    /// `x_rank`) in `dot_general(x, y, d)` from the result's cotangent `g`:
    /// `g` contracted with `y` over `y`'s free axes (batch with batch), which
    /// leaves `x`'s batch, free and contracted axes (the last in `y`'s order),
    /// then transposed into `x`'s order. With `swap`, `x` is the rhs of the
    /// original product (`d` swapped by the caller), whose free dims come
    /// first in `g`.
    pub(super) fn dot_general_transpose_lhs(
        &self,
        g: t::Expr,
        y: t::Expr,
        x_rank: usize,
        d: &DotDims,
        swap: bool,
    ) -> t::Expr {
        let y_rank = Self::et(&y).rank();
        let remaining = |n: usize, a: &[u32], b: &[u32]| -> Vec<u32> {
            (0..n as u32).filter(|i| !a.contains(i) && !b.contains(i)).collect()
        };
        let x_kept = remaining(x_rank, &d.lhs_contract, &d.lhs_batch);
        let y_kept = remaining(y_rank, &d.rhs_contract, &d.rhs_batch);
        let nb = d.lhs_batch.len() as u32;
        let first_y = if swap { nb } else { nb + x_kept.len() as u32 };
        let dims = DotDims {
            lhs_batch: (0..nb).collect(),
            rhs_batch: d.rhs_batch.clone(),
            lhs_contract: (first_y..first_y + y_kept.len() as u32).collect(),
            rhs_contract: y_kept,
        };
        let mut order: Vec<usize> = (0..d.rhs_contract.len()).collect();
        order.sort_by_key(|&i| d.rhs_contract[i]);
        let layout: Vec<u32> =
            d.lhs_batch.iter().chain(&x_kept).copied().chain(order.iter().map(|&i| d.lhs_contract[i])).collect();
        let mut perm: Vec<u32> = (0..layout.len() as u32).collect();
        perm.sort_by_key(|&i| layout[i as usize]);
        let r = self.dot_general(g, y, dims);
        if perm.iter().enumerate().all(|(i, &p)| i as u32 == p) {
            r
        } else {
            self.transpose(r, Some(perm))
        }
    }

    /// Inserts an axis of size 1 at `k`.
    pub(super) fn expand(&self, a: t::Expr, k: usize) -> t::Expr {
        self.b().expand(a, k)
    }

    /// The static slice `a[specs]`.
    pub(super) fn slice(&self, a: t::Expr, specs: Vec<StaticIndex>) -> DResult<t::Expr> {
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
    pub(super) fn zeros(&self, ty: &TensorTy) -> DResult<t::Expr> {
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
    pub(super) fn zeros_like(&mut self, v: VarId) -> t::Expr {
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
    pub(super) fn unbroadcast(&self, g: t::Expr, to: &TensorTy) -> t::Expr {
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
    pub(super) fn broadcast_to(&mut self, g: t::Expr, to: &TensorTy, like: &Atom) -> t::Expr {
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

    /// Appends `s` to the innermost statement buffer.
    pub(super) fn emit(&mut self, s: t::Stmt) {
        if let Some(b) = self.buf.last_mut() {
            b.push(s);
        }
    }

    /// Binds `e` (a tensor) to a new variable.
    pub(super) fn let_(&mut self, e: t::Expr) -> VarId {
        let v = self.new_var(e.ty.clone());
        self.emit(t::Stmt::Let(Pattern::Var(v), e));
        v
    }

    /// Counts one more flattened statement against `MAX_STMTS`.
    pub(super) fn count(&mut self) -> DResult<()> {
        self.stmts += 1;
        if self.stmts > MAX_STMTS {
            return err(format!("program too large to differentiate: more than {MAX_STMTS} operations"), self.span);
        }
        Ok(())
    }
}
