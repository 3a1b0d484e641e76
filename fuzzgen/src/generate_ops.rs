//! The generator's arms for the model ops of issue 14: `jax.nn`'s
//! composites, random draws, gathers and windows, and `einsum`; and `vmap`
//! (issue 18). The rest of the generator is in `generate.rs`.

use crate::generate::{call, Binding, Generator};
use crate::tree::{Block, CallArg, ElemType, Expr, ExprKind, TensorType, ValueType};

impl Generator {
    /// `vmap(|a, b| body, in_axes: [k, none], out_axes: j)(x, y)`: a lambda
    /// of one or two parameters (the first mapped, the second mapped or
    /// shared), each mapped argument with the batch at a random axis, the
    /// batch put at axis `j` of the result. Its body may use the enclosing
    /// variables (unmapped captures) and prints nothing (a batched `print`
    /// is a compile error).
    pub(crate) fn vmap(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        if tt.dims.is_empty() {
            return None;
        }
        let out_axis = self.rng.below(tt.dims.len());
        let n = tt.dims[out_axis];
        let mut per = tt.dims.clone();
        per.remove(out_axis);
        let per = TensorType { dt: tt.dt, dims: per };
        let nparams = 1 + self.rng.below(2);
        let mut params = Vec::new();
        let mut args = Vec::new();
        let mut in_axes = Vec::new();
        for j in 0..nparams {
            let pt = self.rand_tt();
            let name = self.fresh("v");
            if j == 0 || self.rng.chance(60) {
                let ax = self.rng.below(pt.dims.len() + 1);
                let mut dims = pt.dims.clone();
                dims.insert(ax, n);
                args.push(self.expr(&TensorType { dt: pt.dt, dims }, d.min(2), exact));
                in_axes.push(Some(ax));
            } else {
                args.push(self.expr(&pt, d.min(2), exact));
                in_axes.push(None);
            }
            params.push((name, pt));
        }
        self.loop_depth += 1;
        let left = std::mem::take(&mut self.prints_left);
        let mark = self.env.len();
        for (name, pt) in &params {
            self.env.push(Binding { name: name.clone(), tt: pt.clone(), exact });
        }
        let ret = self.expr(&per, d, exact);
        self.env.truncate(mark);
        self.prints_left = left;
        self.loop_depth -= 1;
        Some(Expr {
            kind: ExprKind::Vmap {
                params: params.into_iter().map(|(n, _)| n).collect(),
                body: Box::new(Block { lets: Vec::new(), ret }),
                args,
                in_axes,
                out_axes: out_axis,
            },
            ty: ValueType::Tensor(tt.clone()),
        })
    }

    /// A composite of `jax.nn`: `softmax` or `log_softmax` along an axis,
    /// `logsumexp` (reducing an axis, or keeping it), `gelu` in either form.
    pub(crate) fn nn(&mut self, tt: &TensorType, d: u32) -> Option<Expr> {
        let rank = tt.dims.len() as i64;
        let axis = |g: &mut Self, rank: i64| {
            let k = g.rng.range(0, rank - 1);
            if g.rng.chance(30) {
                k - rank
            } else {
                k
            }
        };
        match self.rng.below(4) {
            0 if rank > 0 => {
                let f = if self.rng.chance(50) { "softmax" } else { "log_softmax" };
                let x = self.expr(tt, d, false);
                let k = axis(self, rank);
                let mut args = vec![CallArg::Expr(x)];
                if k != -1 || self.rng.chance(50) {
                    args.push(CallArg::Raw(format!("axis: {k}")));
                }
                Some(call(f, args, tt))
            }
            1 if rank < 3 => {
                let k = self.rng.below(tt.dims.len() + 1);
                let mut dims = tt.dims.clone();
                dims.insert(k, self.rng.pick(&[1, 2, 3, 4]));
                let x = self.expr(&TensorType { dt: tt.dt, dims }, d, false);
                Some(call("logsumexp", vec![CallArg::Expr(x), CallArg::Raw(format!("axis: {k}"))], tt))
            }
            2 if tt.dims.contains(&1) => {
                let ones: Vec<usize> = (0..tt.dims.len()).filter(|&k| tt.dims[k] == 1).collect();
                let k = self.rng.pick(&ones);
                let mut dims = tt.dims.clone();
                dims[k] = self.rng.pick(&[1, 2, 3, 4]);
                let x = self.expr(&TensorType { dt: tt.dt, dims }, d, false);
                let args = vec![CallArg::Expr(x), CallArg::Raw(format!("axis: {k}, keepdims: true"))];
                Some(call("logsumexp", args, tt))
            }
            3 => {
                let x = self.expr(tt, d, false);
                let mut args = vec![CallArg::Expr(x)];
                if self.rng.chance(50) {
                    args.push(CallArg::Raw("approximate: false".into()));
                }
                Some(call("gelu", args, tt))
            }
            _ => None,
        }
    }

    /// A key written out: `key(S)`, `fold_in(key(S), T)` or a row of
    /// `split(key(S), 3)`.
    fn key_text(&mut self) -> String {
        let s = self.rng.range(-3, 1 << 20);
        match self.rng.below(3) {
            0 => format!("key({s})"),
            1 => format!("fold_in(key({s}), {})", self.rng.range(-5, 100)),
            _ => format!("split(key({s}), 3)[{}]", self.rng.below(3)),
        }
    }

    /// A random draw of type `tt`: `uniform` (bounds that are expressions)
    /// or `normal` for floats, `bernoulli` for bools, `categorical` for
    /// `i32`.
    pub(crate) fn random(&mut self, tt: &TensorType, d: u32) -> Option<Expr> {
        let k = CallArg::Raw(self.key_text());
        let dims = CallArg::Raw(tt.dims_text());
        match tt.dt {
            ElemType::F32 | ElemType::F64 => {
                let dt = CallArg::Raw(tt.dt.name().into());
                if self.rng.chance(50) {
                    return Some(call("normal", vec![k, dt, dims], tt));
                }
                let lo = self.expr(&TensorType::scalar(tt.dt), d.min(2), true);
                let hi = self.expr_bc(tt.dt, &tt.dims, d, true);
                let (lo, hi) = (CallArg::Named("minval", lo), CallArg::Named("maxval", hi));
                Some(call("uniform", vec![k, dt, dims, lo, hi], tt))
            }
            ElemType::Bool => {
                let p = self.expr_bc(ElemType::F32, &tt.dims, d, true);
                Some(call("bernoulli", vec![k, CallArg::Expr(p), dims], tt))
            }
            ElemType::I32 if tt.dims.len() < 3 => {
                let ax = self.rng.below(tt.dims.len() + 1);
                let mut ld = tt.dims.clone();
                ld.insert(ax, self.rng.pick(&[1, 2, 3, 5]));
                let logits = self.expr(&TensorType { dt: ElemType::F32, dims: ld }, d, false);
                Some(call("categorical", vec![k, CallArg::Expr(logits), CallArg::Raw(format!("axis: {ax}"))], tt))
            }
            _ => None,
        }
    }

    /// An integer tensor of ids or indices (any values: out of range,
    /// negative, extreme) of dims `dims`.
    pub(crate) fn ids_expr(&mut self, dims: &[usize], d: u32) -> Expr {
        let dt = if self.rng.chance(75) { ElemType::I32 } else { ElemType::I64 };
        self.expr(&TensorType { dt, dims: dims.to_vec() }, d.min(2), true)
    }

    /// `take`, `take_along_axis`, `one_hot`, `dynamic_slice`,
    /// `dynamic_update_slice`, `cumsum` and `shard` (a sharding constraint,
    /// the identity on one device) giving `tt`: ids and starts in and out of
    /// range, negative axes, ids of rank 0 to 2.
    pub(crate) fn gather(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        let r = tt.dims.len();
        let n = self.rng.pick(&[1, 2, 3, 4]);
        let axis_text = |k: usize, rank: usize, neg: bool| {
            if neg {
                format!("axis: {}", k as i64 - rank as i64)
            } else {
                format!("axis: {k}")
            }
        };
        match self.rng.below(7) {
            0 => {
                // take: axis k of x replaced by ids of rank q.
                let q = self.rng.below(r.min(2) + 1);
                let k = self.rng.below(r - q + 1);
                let mut xd = tt.dims[..k].to_vec();
                xd.push(n);
                xd.extend_from_slice(&tt.dims[k + q..]);
                let x = self.expr(&TensorType { dt: tt.dt, dims: xd.clone() }, d, exact);
                let ids = self.ids_expr(&tt.dims[k..k + q], d);
                let mut args = vec![CallArg::Expr(x), CallArg::Expr(ids)];
                if xd.len() > 1 || self.rng.chance(50) {
                    args.push(CallArg::Raw(axis_text(k, xd.len(), self.rng.chance(25))));
                }
                Some(call("take", args, tt))
            }
            1 if r >= 1 => {
                // take_along_axis: idx has the result's shape; x has n on axis k,
                // and 1 (broadcast) on another axis sometimes.
                let k = self.rng.below(r);
                let mut xd = tt.dims.clone();
                xd[k] = n;
                let mut id = tt.dims.clone();
                if r >= 2 && self.rng.chance(30) {
                    let j = (k + 1) % r;
                    if self.rng.chance(50) {
                        xd[j] = 1;
                    } else {
                        id[j] = 1;
                    }
                }
                let x = self.expr(&TensorType { dt: tt.dt, dims: xd }, d, exact);
                let idx = self.ids_expr(&id, d);
                let axis = CallArg::Raw(axis_text(k, r, self.rng.chance(25)));
                Some(call("take_along_axis", vec![CallArg::Expr(x), CallArg::Expr(idx), axis], tt))
            }
            2 if r >= 1 => {
                let ids = self.ids_expr(&tt.dims[..r - 1], d);
                let mut args = vec![CallArg::Expr(ids), CallArg::Raw(tt.dims[r - 1].to_string())];
                if tt.dt != ElemType::F32 || self.rng.chance(30) {
                    args.push(CallArg::Raw(format!("dtype: {}", tt.dt.name())));
                }
                Some(call("one_hot", args, tt))
            }
            3 if r >= 1 => {
                let xd: Vec<usize> = tt.dims.iter().map(|&s| s + self.rng.below(3)).collect();
                let x = self.expr(&TensorType { dt: tt.dt, dims: xd }, d, exact);
                let starts: Vec<Expr> = (0..r).map(|_| self.index_expr(d)).collect();
                let sizes = CallArg::Raw(tt.dims_text());
                Some(call("dynamic_slice", vec![CallArg::Expr(x), CallArg::List(starts), sizes], tt))
            }
            4 if r >= 1 => {
                let x = self.expr(tt, d, exact);
                let ud: Vec<usize> = tt.dims.iter().map(|&s| s.min(1 + self.rng.below(s))).collect();
                let u = self.expr(&TensorType { dt: tt.dt, dims: ud }, d, exact);
                let starts: Vec<Expr> = (0..r).map(|_| self.index_expr(d)).collect();
                Some(call("dynamic_update_slice", vec![CallArg::Expr(x), CallArg::Expr(u), CallArg::List(starts)], tt))
            }
            5 if r >= 1 && tt.dt != ElemType::Bool && (!tt.dt.is_float() || !exact) => {
                let x = self.expr(tt, d, exact);
                let mut args = vec![CallArg::Expr(x)];
                if r > 1 || self.rng.chance(50) {
                    let k = self.rng.below(r);
                    args.push(CallArg::Raw(axis_text(k, r, self.rng.chance(25))));
                }
                if self.rng.chance(40) {
                    args.push(CallArg::Raw("reverse: true".into()));
                }
                Some(call("cumsum", args, tt))
            }
            6 if r >= 1 => {
                let x = self.expr(tt, d, exact);
                let k = self.rng.below(r);
                let mut args = vec![CallArg::Expr(x), CallArg::Raw(axis_text(k, r, self.rng.chance(25)))];
                if self.rng.chance(50) {
                    let m = if self.rng.chance(50) { "data" } else { "model" };
                    args.push(CallArg::Raw(format!("mesh_axis: \"{m}\"")));
                }
                Some(call("shard", args, tt))
            }
            _ => None,
        }
    }

    /// `einsum` giving `tt`: the output letters name `tt`'s axes; with one
    /// operand some letters are summed; with two each output letter is the
    /// lhs's, the rhs's or both's (a batch letter), some letters are
    /// contracted, and a letter of one operand only may be summed. Each
    /// operand's letters are shuffled; implicit output (no `->`) where it
    /// means the same.
    pub(crate) fn einsum(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        if tt.dt.is_float() && exact {
            return None;
        }
        let letters = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
        let out: Vec<(char, usize)> = tt.dims.iter().enumerate().map(|(i, &n)| (letters[i], n)).collect();
        let mut next = out.len();
        let mut fresh = |g: &mut Self| {
            let c = letters[next];
            next += 1;
            (c, g.rng.pick(&[1, 2, 3]))
        };
        let two = self.rng.chance(75);
        let (mut la, mut lb) = (Vec::new(), Vec::new());
        let mut batch = false;
        for &l in &out {
            match if two { self.rng.below(3) } else { 0 } {
                0 => la.push(l),
                1 => lb.push(l),
                _ => {
                    la.push(l);
                    lb.push(l);
                    batch = true;
                }
            }
        }
        let mut summed_once = false;
        for _ in 0..self.rng.below(3) {
            let l = fresh(self);
            if two && self.rng.chance(75) {
                la.push(l);
                lb.push(l);
            } else {
                summed_once = true;
                if !two || self.rng.chance(50) {
                    la.push(l)
                } else {
                    lb.push(l)
                }
            }
        }
        if la.len() > 4 || lb.len() > 4 {
            return None;
        }
        self.shuffle(&mut la);
        self.shuffle(&mut lb);
        let term = |ls: &[(char, usize)]| ls.iter().map(|l| l.0).collect::<String>();
        let implicit = !batch && !summed_once && self.rng.chance(30);
        let spec = match (two, implicit) {
            (true, true) => format!("{},{}", term(&la), term(&lb)),
            (true, false) => format!("{},{}->{}", term(&la), term(&lb), term(&out)),
            (false, true) => term(&la),
            (false, false) => format!("{}->{}", term(&la), term(&out)),
        };
        // Implicit output is the letters used once, sorted: `out`'s, in order.
        let dims = |ls: &[(char, usize)]| ls.iter().map(|l| l.1).collect::<Vec<_>>();
        let mut args = vec![CallArg::Raw(format!("\"{spec}\""))];
        args.push(CallArg::Expr(self.expr(&TensorType { dt: tt.dt, dims: dims(&la) }, d, exact)));
        if two {
            args.push(CallArg::Expr(self.expr(&TensorType { dt: tt.dt, dims: dims(&lb) }, d, exact)));
        }
        Some(call("einsum", args, tt))
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.rng.below(i + 1);
            v.swap(i, j);
        }
    }
}
