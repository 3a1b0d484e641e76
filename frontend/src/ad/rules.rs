//! Per-op derivative rules: the vector-Jacobian product of each primitive (unary, binary,
//! select, cast, matmul, reduce, shape and indexing ops).
//!
//! This is the one AD file a new elementwise op touches: add its arm to the `Op::Unary` or
//! `Op::Binary` match in `Ad::vjp`, writing the cotangent of each active operand from the
//! output cotangent `ge` and the primal values (`self.pv(&arg(i))` for an operand,
//! `self.pv(&Atom::Var(out))` for the result) with the builders of `builders.rs`.

use super::ir::{Atom, Op};
use super::{err, internal, is_float, known, scalar_const, slice_range, Ad};
use crate::diag::DResult;
use crate::typed::{self as t, ExprKind as K, StaticIndex, VarId};
use crate::types::{Dim, TensorTy};
use loopvm_runtime::rules::DotDims;
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UnaryOp, UpdateMode};

impl Ad<'_> {
    /// The cotangent contributions of primitive `out = op(args)` given `g`,
    /// as (argument index, expression) for the active arguments.
    pub(super) fn vjp(&mut self, out: VarId, op: &Op, args: &[Atom], g: VarId) -> DResult<Vec<(usize, t::Expr)>> {
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
                    UnaryOp::Erf | UnaryOp::Erfc => {
                        // erf'(x) = 2/√π · exp(-x²) = -erfc'(x)
                        let x = self.pv(&arg(0));
                        let xx = self.bin(BinaryOp::Mul, x.clone(), x);
                        let nxx = self.un(UnaryOp::Neg, xx);
                        let e = self.un(UnaryOp::Exp, nxx);
                        let k = if *u == UnaryOp::Erf { 1.0 } else { -1.0 } * std::f64::consts::FRAC_2_SQRT_PI;
                        let d = self.bin(BinaryOp::Mul, e, c(self, k));
                        self.bin(BinaryOp::Mul, ge, d)
                    }
                    UnaryOp::ErfInv => {
                        // erf_inv'(x) = √π/2 · exp(erf_inv(x)²)
                        let y = self.pv(&Atom::Var(out));
                        let yy = self.bin(BinaryOp::Mul, y.clone(), y);
                        let e = self.un(UnaryOp::Exp, yy);
                        let d = self.bin(BinaryOp::Mul, e, c(self, std::f64::consts::PI.sqrt() / 2.0));
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
                    UnaryOp::Log1p => {
                        // log1p'(x) = 1 / (1 + x)
                        let x = self.pv(&arg(0));
                        let d = self.bin(BinaryOp::Add, c(self, 1.0), x);
                        self.bin(BinaryOp::Div, ge, d)
                    }
                    UnaryOp::Not => return Ok(out_v),
                };
                out_v.push((0, e));
            }
            Op::Binary(b) => {
                if !b.differentiable() {
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
            Op::DotGeneral(d) => {
                // JAX's transpose rules of `dot_general`: each operand's
                // cotangent is a `dot_general` of `ge` with the other
                // operand, transposed into the operand's axis order.
                let (x, y) = (self.pv(&arg(0)), self.pv(&arg(1)));
                if on(0) {
                    out_v.push((
                        0,
                        self.dot_general_transpose_lhs(ge.clone(), y.clone(), aty(self, 0).rank(), d, false),
                    ));
                }
                if on(1) {
                    let swapped = DotDims {
                        lhs_batch: d.rhs_batch.clone(),
                        rhs_batch: d.lhs_batch.clone(),
                        lhs_contract: d.rhs_contract.clone(),
                        rhs_contract: d.lhs_contract.clone(),
                    };
                    out_v.push((1, self.dot_general_transpose_lhs(ge, x, aty(self, 1).rank(), &swapped, true)));
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
            Op::Reshape(_) | Op::ReshapeAs => {
                if on(0) {
                    let at = aty(self, 0);
                    out_v.push((0, self.b().reshape_to(ge, at)));
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
            // Bits carry no derivative (as integers do): `bitcast` stops the gradient.
            Op::Iota(..) | Op::ShapeOf | Op::StopGradient | Op::Bitcast(_) => {}
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
            Op::Take(axis) => {
                // take's transpose: the cotangent added into zeros at the ids.
                if on(0) {
                    let at = aty(self, 0);
                    let z = self.zeros_of(&at, &arg(0));
                    let ids = self.pv(&arg(1));
                    out_v.push((0, self.mk(K::ScatterAdd(Box::new(z), Box::new(ids), Box::new(ge), *axis), at)));
                }
            }
            Op::ScatterAdd(axis) => {
                if on(0) {
                    out_v.push((0, ge.clone()));
                }
                if on(2) {
                    let ids = self.pv(&arg(1));
                    out_v.push((2, self.mk(K::Take(Box::new(ge), Box::new(ids), *axis), aty(self, 2))));
                }
            }
            Op::DynSlice(_) => {
                // The cotangent placed into zeros at the (same, clamped) window.
                if on(0) {
                    let at = aty(self, 0);
                    let z = self.zeros_of(&at, &arg(0));
                    let starts: Vec<t::Expr> = args.iter().skip(1).map(|a| self.pv(a)).collect();
                    out_v.push((0, self.mk(K::DynUpdateSlice(Box::new(z), Box::new(ge), starts), at)));
                }
            }
            Op::DynUpdateSlice => {
                let starts: Vec<t::Expr> = args.iter().skip(2).map(|a| self.pv(a)).collect();
                if on(0) {
                    // The operand's cotangent with the overwritten window zeroed.
                    let ut = aty(self, 1);
                    let z = self.zeros_of(&ut, &arg(1));
                    let e = K::DynUpdateSlice(Box::new(ge.clone()), Box::new(z), starts.clone());
                    out_v.push((0, self.mk(e, oty.clone())));
                }
                if on(1) {
                    let ut = aty(self, 1);
                    let Some(sizes) = known(&ut.dims) else {
                        return err(
                            format!("cannot differentiate a dynamic_update_slice of the symbolic {ut}"),
                            self.span,
                        );
                    };
                    out_v.push((1, self.mk(K::DynSlice(Box::new(ge), starts, sizes), ut)));
                }
            }
            // The transpose of a sharding constraint is the same constraint
            // on the cotangent (as JAX's `with_sharding_constraint`).
            Op::Shard(axis, mesh_axis) => {
                if on(0) {
                    out_v.push((0, self.mk(K::Shard(Box::new(ge), *axis, *mesh_axis), aty(self, 0))));
                }
            }
            Op::Cumsum(axis, reverse) => {
                // The transpose of a running sum is the running sum the other way.
                if on(0) {
                    out_v.push((0, self.mk(K::Cumsum(Box::new(ge), *axis, !*reverse), aty(self, 0))));
                }
            }
        }
        Ok(out_v)
    }

    /// Zeros of type `ty` (that of the primal `like`): a constant when the
    /// shape is known, else `where(false, like, 0)`.
    fn zeros_of(&mut self, ty: &TensorTy, like: &Atom) -> t::Expr {
        match self.zeros(ty) {
            Ok(z) => z,
            Err(_) => {
                let x = self.pv(like);
                let f = self.mk(K::Const(scalar_const(DType::Bool, 0.0)), TensorTy::scalar(DType::Bool));
                let zero = self.cst(ty.dtype, 0.0);
                self.sel(f, x, zero)
            }
        }
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
                        let r = self.b().reshape_to(st, TensorTy { dtype: et.dtype, dims: rd });
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
