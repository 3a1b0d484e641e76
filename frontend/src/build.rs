//! Typed-IR expression builders: one node at a time, typed by the op's shape
//! rule. The checker's composite builtins (`softmax`, `logsumexp`, `gelu`,
//! `keepdims: true`) and the autodiff's derivative code both build with them.

use crate::diag::Span;
use crate::typed::{self as t, ConstData, ConstValues, ExprKind as K};
use crate::types::{broadcast_dims, Dim, TensorTy, Type};
use loopvm_runtime::{rules as shape_rules, BinaryOp, DType, ReduceOp, UnaryOp};

/// The dims when every one is known.
pub(crate) fn known(dims: &[Dim]) -> Option<Vec<u64>> {
    dims.iter().map(Dim::known).collect()
}

/// The scalar constant `v` as data of `dtype` (integers truncate, floats keep
/// infinities and NaN).
pub(crate) fn scalar_const(dtype: DType, v: f64) -> ConstData {
    let values = match dtype {
        DType::Bool => ConstValues::Bool(vec![v != 0.0]),
        d if d.is_float() => ConstValues::Float(vec![v]),
        _ => ConstValues::Int(vec![v as i64]),
    };
    ConstData { dtype, shape: Vec::new(), values }
}

/// Builds typed expressions at one source span.
#[derive(Clone, Copy)]
pub(crate) struct Build {
    /// The span every built expression carries.
    pub span: Span,
}

impl Build {
    /// A tensor expression of kind `kind` and type `ty`.
    pub fn mk(self, kind: K, ty: TensorTy) -> t::Expr {
        t::Expr { kind, ty: Type::Tensor(ty), span: self.span }
    }

    /// The tensor type of expression `e` (an `f32` scalar if it is a tuple).
    pub fn et(e: &t::Expr) -> TensorTy {
        e.ty.tensor().cloned().unwrap_or_else(|| TensorTy::scalar(DType::F32))
    }

    /// The scalar constant `v` of type `dtype`.
    pub fn cst(self, dtype: DType, v: f64) -> t::Expr {
        self.mk(K::Const(scalar_const(dtype, v)), TensorTy::scalar(dtype))
    }

    /// `a op b`, typed by broadcasting (comparisons give `bool`).
    pub fn bin(self, op: BinaryOp, a: t::Expr, b: t::Expr) -> t::Expr {
        let (at, bt) = (Self::et(&a), Self::et(&b));
        let dims = broadcast_dims(&at.dims, &bt.dims).unwrap_or_else(|_| at.dims.clone());
        let dtype = op.result_dtype(at.dtype);
        self.mk(K::Binary(op, Box::new(a), Box::new(b)), TensorTy { dtype, dims })
    }

    /// `op(a)`.
    pub fn un(self, op: UnaryOp, a: t::Expr) -> t::Expr {
        let ty = Self::et(&a);
        self.mk(K::Unary(op, Box::new(a)), ty)
    }

    /// `select(c, a, b)`, typed by broadcasting.
    pub fn sel(self, c: t::Expr, a: t::Expr, b: t::Expr) -> t::Expr {
        let (ct, at, bt) = (Self::et(&c), Self::et(&a), Self::et(&b));
        let d1 = broadcast_dims(&at.dims, &bt.dims).unwrap_or_else(|_| at.dims.clone());
        let dims = broadcast_dims(&ct.dims, &d1).unwrap_or(d1);
        self.mk(K::Select(Box::new(c), Box::new(a), Box::new(b)), TensorTy { dtype: at.dtype, dims })
    }

    /// The reduction `op` of `a` along `axis` (all axes when `None`).
    pub fn reduce(self, op: ReduceOp, a: t::Expr, axis: Option<u32>) -> t::Expr {
        let at = Self::et(&a);
        let dims = shape_rules::reduce(&at.dims, axis.map(|k| k as usize)).unwrap_or_else(|_| at.dims.clone());
        self.mk(K::Reduce(op, Box::new(a), axis), TensorTy { dtype: op.result_dtype(at.dtype), dims })
    }

    /// The reduction `op` of `a` along `axis` (all axes when `None`) with the
    /// reduced axes kept as size 1, as NumPy's `keepdims=True`.
    pub fn reduce_keep(self, op: ReduceOp, a: t::Expr, axis: Option<u32>) -> t::Expr {
        let rank = Self::et(&a).rank();
        let r = self.reduce(op, a, axis);
        match axis {
            Some(k) => self.expand(r, k as usize),
            None => {
                let ones = vec![1; rank];
                let ty = TensorTy::known(Self::et(&r).dtype, &ones);
                self.mk(K::Reshape(Box::new(r), ones), ty)
            }
        }
    }

    /// A block binding `lets` in order, then `result`.
    pub fn block(self, lets: Vec<(t::VarId, t::Expr)>, result: t::Expr) -> t::Expr {
        let ty = result.ty.clone();
        let stmts = lets.into_iter().map(|(v, e)| t::Stmt::Let(t::Pattern::Var(v), e)).collect();
        t::Expr { kind: K::Block(stmts, Box::new(result)), ty, span: self.span }
    }

    /// `a` reshaped to `ty`: a static `Reshape` when `ty`'s shape is known,
    /// else a `ReshapeAs` (the shape resolved when the program runs).
    pub fn reshape_to(self, a: t::Expr, ty: TensorTy) -> t::Expr {
        match ty.known_dims() {
            Some(shape) => self.mk(K::Reshape(Box::new(a), shape), ty),
            None => self.mk(K::ReshapeAs(Box::new(a)), ty),
        }
    }

    /// Inserts an axis of size 1 at `k` (a reshape when the shape is known,
    /// else a stack of one tensor).
    pub fn expand(self, a: t::Expr, k: usize) -> t::Expr {
        let at = Self::et(&a);
        let mut dims = at.dims.clone();
        dims.insert(k.min(dims.len()), Dim::Known(1));
        let ty = TensorTy { dtype: at.dtype, dims };
        match known(&ty.dims) {
            Some(shape) => self.mk(K::Reshape(Box::new(a), shape), ty),
            None => self.mk(K::Stack(vec![a], k as u32), ty),
        }
    }
}
