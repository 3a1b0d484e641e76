//! Tensor ops on small tensors, element by element: elementwise ops,
//! reductions, indexing and updates, slices, transposes and joins.

use super::*;

impl Lowerer<'_, '_> {
    // ---- tensor ops on small tensors ----------------------------------------

    pub(super) fn binary(&mut self, op: BinaryOp, a: &Val, b: &Val) -> Result<Val, CompileError> {
        if a.dtype != b.dtype {
            return unsupported!("dtype mismatch in {op}, lhs: {}, rhs: {}", a.type_string(), b.type_string());
        }
        let Some(shape) = broadcast_shapes(&a.shape, &b.shape) else {
            return unsupported!("shapes do not broadcast in {op}, lhs: {}, rhs: {}", a.type_string(), b.type_string());
        };
        let n = self.check_size(op.as_str(), &shape)?;
        let (xa, xb) = (self.elems(a, op.as_str())?.to_vec(), self.elems(b, op.as_str())?.to_vec());
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let (x, y) = (xa[src_index(&a.shape, &shape, i)], xb[src_index(&b.shape, &shape, i)]);
            out.push(self.binary_scalar(op, a.dtype, x, y)?);
        }
        let dtype = op.result_dtype(a.dtype);
        Ok(Val::elems(dtype, shape, out))
    }

    pub(super) fn unary(&mut self, op: UnaryOp, a: &Val) -> Result<Val, CompileError> {
        let xs = self.elems(a, op.as_str())?.to_vec();
        let out = xs.iter().map(|&x| self.unary_scalar(op, a.dtype, x)).collect::<Result<Vec<_>, _>>()?;
        Ok(Val::elems(a.dtype, a.shape.clone(), out))
    }

    pub(super) fn cast(&mut self, a: &Val, to: DType) -> Result<Val, CompileError> {
        if a.dtype == to {
            return Ok(a.clone());
        }
        let xs = self.elems(a, "cast")?.to_vec();
        let out = xs.iter().map(|&x| self.cast_scalar(a.dtype, to, x)).collect();
        Ok(Val::elems(to, a.shape.clone(), out))
    }

    /// `bitcast(a, to)`: each element's bits read as `to` (same width).
    pub(super) fn bitcast(&mut self, a: &Val, to: DType) -> Result<Val, CompileError> {
        if !a.dtype.can_bitcast(to) {
            return unsupported!("bitcast of {} to {to} (the interpreter reports the error)", a.type_string());
        }
        let (from_ty, to_ty) = (clif_type(a.dtype), clif_type(to));
        let xs = self.elems(a, "bitcast")?.to_vec();
        let canonical = match a.dtype {
            DType::F32 => i64::from(loopvm_runtime::kernels::CANONICAL_NAN_F32),
            _ => loopvm_runtime::kernels::CANONICAL_NAN_F64 as i64,
        };
        let mut out = Vec::with_capacity(xs.len());
        for &x in &xs {
            let bits = if from_ty == to_ty { x } else { self.b.ins().bitcast(to_ty, MemFlagsData::new(), x) };
            out.push(if a.dtype.is_float() && !to.is_float() {
                // Any NaN gives the positive quiet NaN's bits (the kernel's rule).
                let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
                let c = self.iconst(to_ty, canonical);
                self.b.ins().select(nan, c, bits)
            } else {
                bits
            });
        }
        Ok(Val::elems(to, a.shape.clone(), out))
    }

    pub(super) fn select(&mut self, c: &Val, a: &Val, b: &Val) -> Result<Val, CompileError> {
        let types = || format!("cond: {}, lhs: {}, rhs: {}", c.type_string(), a.type_string(), b.type_string());
        if c.dtype != DType::Bool || a.dtype != b.dtype {
            return unsupported!("select with {}", types());
        }
        let Some(shape) = broadcast_shapes(&a.shape, &b.shape).and_then(|s| broadcast_shapes(&c.shape, &s)) else {
            return unsupported!("shapes do not broadcast in select, {}", types());
        };
        let n = self.check_size("select", &shape)?;
        let (xc, xa, xb) =
            (self.elems(c, "select")?.to_vec(), self.elems(a, "select")?.to_vec(), self.elems(b, "select")?.to_vec());
        let out = (0..n)
            .map(|i| {
                let (k, x, y) = (
                    xc[src_index(&c.shape, &shape, i)],
                    xa[src_index(&a.shape, &shape, i)],
                    xb[src_index(&b.shape, &shape, i)],
                );
                self.b.ins().select(k, x, y)
            })
            .collect();
        Ok(Val::elems(a.dtype, shape, out))
    }

    pub(super) fn reduce(&mut self, op: ReduceOp, a: &Val, axis: Option<u32>) -> Result<Val, CompileError> {
        let name = op.as_str();
        let Ok(shape) = rules::reduce::<usize, Vec<usize>>(&a.shape, axis.map(|ax| ax as usize)) else {
            return unsupported!("{name}: axis {} is out of range for {}", axis.unwrap_or(0), a.type_string());
        };
        let (len, inner) = match axis {
            None => (a.numel(), 1),
            Some(ax) => (a.shape[ax as usize], a.shape[ax as usize + 1..].iter().product()),
        };
        if len == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::Argmax) {
            return unsupported!("{name} of an empty axis of {} (the interpreter reports the error)", a.type_string());
        }
        let n = self.check_size(name, &shape)?;
        let xs = self.elems(a, name)?.to_vec();
        let rd = op.result_dtype(a.dtype);
        let mut out = Vec::with_capacity(n);
        for o in 0..n {
            let (outer, i) = (o / inner.max(1), o % inner.max(1));
            let at = |k: usize| xs[(outer * len + k) * inner + i];
            let v = match op {
                ReduceOp::Sum | ReduceOp::Mean => {
                    // The accumulator's dtype: the result's (f32 for integer means).
                    let mut acc = self.zero(rd);
                    for k in 0..len {
                        let x = self.cast_scalar(a.dtype, rd, at(k));
                        acc = if rd.is_float() { self.b.ins().fadd(acc, x) } else { self.b.ins().iadd(acc, x) };
                    }
                    if op == ReduceOp::Mean {
                        let d = if rd == DType::F64 {
                            self.b.ins().f64const(len as f64)
                        } else {
                            self.b.ins().f32const(len as f32)
                        };
                        acc = self.b.ins().fdiv(acc, d);
                    }
                    acc
                }
                ReduceOp::Max | ReduceOp::Min => {
                    let mut acc = at(0);
                    for k in 1..len {
                        acc = match (op, a.dtype) {
                            (ReduceOp::Max, DType::Bool) => self.b.ins().bor(acc, at(k)),
                            (_, DType::Bool) => self.b.ins().band(acc, at(k)),
                            (ReduceOp::Max, _) => self.max_nan(a.dtype, acc, at(k)),
                            _ => self.min_nan(a.dtype, acc, at(k)),
                        };
                    }
                    acc
                }
                ReduceOp::Argmax => {
                    let mut best = at(0);
                    let mut idx = self.iconst(types::I32, 0);
                    for k in 1..len {
                        let x = at(k);
                        let better = match a.dtype {
                            DType::Bool => self.b.ins().icmp(IntCC::UnsignedGreaterThan, x, best),
                            DType::I32 | DType::I64 => self.b.ins().icmp(IntCC::SignedGreaterThan, x, best),
                            _ => {
                                // x > best || (x is NaN && best is not)
                                let gt = self.b.ins().fcmp(FloatCC::GreaterThan, x, best);
                                let xn = self.b.ins().fcmp(FloatCC::Unordered, x, x);
                                let bo = self.b.ins().fcmp(FloatCC::Ordered, best, best);
                                let nan = self.b.ins().band(xn, bo);
                                self.b.ins().bor(gt, nan)
                            }
                        };
                        best = self.b.ins().select(better, x, best);
                        let kv = self.iconst(types::I32, k as i64);
                        idx = self.b.ins().select(better, kv, idx);
                    }
                    idx
                }
            };
            out.push(v);
        }
        Ok(Val::elems(rd, shape, out))
    }

    /// Clamped flat offset (in elements, `i64`) of the block `idx` selects
    /// in `a`, as the `dynamic_index` kernel computes it.
    pub(super) fn dynamic_offset(&mut self, op: &str, a: &Val, idx: &[Val]) -> Result<Value, CompileError> {
        if idx.len() > a.shape.len() {
            return unsupported!("{op}: {} indices for {}", idx.len(), a.type_string());
        }
        let st = strides(&a.shape);
        let mut off = self.iconst(types::I64, 0);
        for (ax, i) in idx.iter().enumerate() {
            let d = a.shape[ax];
            if d == 0 {
                return unsupported!("{op}: cannot index empty axis {ax} of {}", a.type_string());
            }
            if !i.dtype.is_int() {
                return unsupported!("{op}: index is {}, not an integer", i.type_string());
            }
            let x = self.scalar(i, "a dynamic index")?;
            let x = match i.dtype {
                DType::I32 => self.b.ins().sextend(types::I64, x),
                DType::U32 | DType::U8 => self.b.ins().uextend(types::I64, x),
                _ => x,
            };
            let z = self.iconst(types::I64, 0);
            let dv = self.iconst(types::I64, d as i64);
            let neg = self.b.ins().icmp(IntCC::SignedLessThan, x, z);
            let wrapped = self.b.ins().iadd(x, dv);
            let x = self.b.ins().select(neg, wrapped, x);
            let x = self.b.ins().smax(x, z);
            let hi = self.iconst(types::I64, d as i64 - 1);
            let x = self.b.ins().smin(x, hi);
            let s = self.iconst(types::I64, st[ax] as i64);
            let t = self.b.ins().imul(x, s);
            off = self.b.ins().iadd(off, t);
        }
        Ok(off)
    }

    /// The block of `bs` elements at dynamic element offset `off` of `a`
    /// (a multiple of `bs`).
    pub(super) fn read_block(&mut self, a: &Val, off: Value, bs: usize) -> Result<Vec<Value>, CompileError> {
        match &a.repr {
            Repr::Mem(p) => {
                let addr = self.offset_addr(*p, off, a.dtype.size_in_bytes());
                Ok(self.load_elems(a.dtype, addr, 0, bs))
            }
            Repr::Elems(xs) => {
                let xs = xs.clone();
                let blocks = xs.len().checked_div(bs).unwrap_or(0);
                let mut out: Vec<Value> = xs.iter().take(bs).copied().collect();
                for c in 1..blocks {
                    let cv = self.iconst(types::I64, (c * bs) as i64);
                    let hit = self.b.ins().icmp(IntCC::Equal, off, cv);
                    for (e, o) in out.iter_mut().enumerate() {
                        *o = self.b.ins().select(hit, xs[c * bs + e], *o);
                    }
                }
                Ok(out)
            }
        }
    }

    pub(super) fn index(&mut self, a: &Val, idx: &[Val]) -> Result<Val, CompileError> {
        let off = self.dynamic_offset("dynamic_index", a, idx)?;
        let shape = a.shape[idx.len()..].to_vec();
        let bs = self.check_size("dynamic_index", &shape)?;
        let xs = self.read_block(a, off, bs)?;
        Ok(Val::elems(a.dtype, shape, xs))
    }

    pub(super) fn update(&mut self, mode: UpdateMode, a: &Val, idx: &[Val], v: &Val) -> Result<Val, CompileError> {
        let off = self.dynamic_offset("dynamic_update", a, idx)?;
        let slot = a.shape[idx.len()..].to_vec();
        if v.dtype != a.dtype || !broadcasts_to(&v.shape, &slot) || (mode == UpdateMode::Add && a.dtype == DType::Bool)
        {
            return unsupported!(
                "update of {} with {} (the interpreter reports the error)",
                a.type_string(),
                v.type_string()
            );
        }
        self.check_size("dynamic_update", &a.shape)?;
        let xs = self.elems(a, "dynamic_update")?.to_vec();
        let vs = self.elems(v, "dynamic_update")?.to_vec();
        let bs: usize = slot.iter().product();
        let mut out = xs.clone();
        for c in 0..xs.len().checked_div(bs).unwrap_or(0) {
            let cv = self.iconst(types::I64, (c * bs) as i64);
            let hit = self.b.ins().icmp(IntCC::Equal, off, cv);
            for e in 0..bs {
                let old = xs[c * bs + e];
                let x = vs[src_index(&v.shape, &slot, e)];
                let new = match mode {
                    UpdateMode::Set => x,
                    UpdateMode::Add if a.dtype.is_float() => self.b.ins().fadd(old, x),
                    UpdateMode::Add => self.b.ins().iadd(old, x),
                };
                out[c * bs + e] = self.b.ins().select(hit, new, old);
            }
        }
        Ok(Val::elems(a.dtype, a.shape.clone(), out))
    }

    /// Reads elements at static flat positions of `a`.
    pub(super) fn gather(&mut self, a: &Val, positions: &[usize]) -> Vec<Value> {
        match &a.repr {
            Repr::Elems(xs) => positions.iter().map(|&p| xs[p]).collect(),
            Repr::Mem(p) => {
                let (ty, sz, p) = (clif_type(a.dtype), a.dtype.size_in_bytes(), *p);
                let flags = self.load_flags(p);
                positions.iter().map(|&i| self.b.ins().load(ty, flags, p, (i * sz) as i32)).collect()
            }
        }
    }

    pub(super) fn slice(&mut self, a: &Val, specs: &[SliceSpec]) -> Result<Val, CompileError> {
        if specs.len() > a.shape.len() {
            return unsupported!("slice: {} indices for {}", specs.len(), a.type_string());
        }
        let own = strides(&a.shape);
        let mut base = 0i128;
        let mut shape = Vec::new();
        let mut st: Vec<i128> = Vec::new();
        for (ax, (&dim, &stride)) in a.shape.iter().zip(&own).enumerate() {
            let stride = stride as i128;
            match specs.get(ax) {
                None => {
                    shape.push(dim);
                    st.push(stride);
                }
                Some(&SliceSpec::Index(i)) => {
                    let Some(k) = rules::index_position(dim as u64, i128::from(i)) else {
                        return unsupported!("slice: index {i} is out of range for axis {ax} of {}", a.type_string());
                    };
                    base += i128::from(k) * stride;
                }
                Some(&SliceSpec::Range { start, stop, step }) => {
                    let Ok(r) = rules::slice_range(dim as u64, start, stop, step) else {
                        return unsupported!("slice: step 0 on axis {ax} of {}", a.type_string());
                    };
                    if r.len > 0 {
                        base += r.first * stride;
                    }
                    shape.push(r.len);
                    st.push(step as i128 * stride);
                }
            }
        }
        let n = self.check_size("slice", &shape)?;
        let mut pos = Vec::with_capacity(n);
        for flat in 0..n {
            let (mut rem, mut p) = (flat, base);
            for ax in (0..shape.len()).rev() {
                p += (rem % shape[ax]) as i128 * st[ax];
                rem /= shape[ax];
            }
            pos.push(p as usize);
        }
        let xs = self.gather(a, &pos);
        Ok(Val::elems(a.dtype, shape, xs))
    }

    pub(super) fn transpose(&mut self, a: &Val, perm: Option<&[u32]>) -> Result<Val, CompileError> {
        let rank = a.shape.len();
        let p: Option<Vec<usize>> = perm.map(|p| p.iter().map(|&x| x as usize).collect());
        let Ok(perm) = rules::permutation(rank, p.as_deref()) else {
            let perm = p.unwrap_or_default();
            return unsupported!("transpose: {perm:?} is not a permutation of the axes of {}", a.type_string());
        };
        let shape: Vec<usize> = rules::permute(&a.shape, &perm);
        let n = self.check_size("transpose", &shape)?;
        let own = strides(&a.shape);
        let pos: Vec<usize> = (0..n)
            .map(|flat| {
                let (mut rem, mut p) = (flat, 0);
                for ax in (0..rank).rev() {
                    p += (rem % shape[ax]) * own[perm[ax]];
                    rem /= shape[ax];
                }
                p
            })
            .collect();
        let xs = self.gather(a, &pos);
        Ok(Val::elems(a.dtype, shape, xs))
    }

    /// `concat` (`stack: false`) or `stack` of `vals` along `axis`.
    pub(super) fn join(&mut self, vals: &[Val], axis: usize, stack: bool) -> Result<Val, CompileError> {
        let op = if stack { "stack" } else { "concat" };
        let list = || vals.iter().map(Val::type_string).collect::<Vec<_>>().join(", ");
        let operands = vals.iter().map(|v| (v.dtype, v.shape.as_slice()));
        let shape = match if stack { rules::stack(operands, axis) } else { rules::concat(operands, axis) } {
            Ok(shape) => shape,
            Err(rules::JoinError::Empty) => return unsupported!("{op} of nothing"),
            Err(_) => {
                return unsupported!("{op} of [{}] along axis {axis} (the interpreter reports the error)", list())
            }
        };
        let Some(first) = vals.first() else { return unsupported!("{op} of nothing") };
        self.check_size(op, &shape)?;
        let outer: usize = shape[..axis].iter().product();
        let parts: Vec<Vec<Value>> =
            vals.iter().map(|v| self.elems(v, op).map(<[Value]>::to_vec)).collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for o in 0..outer {
            for (v, xs) in vals.iter().zip(&parts) {
                let chunk: usize = v.shape[axis..].iter().product();
                out.extend_from_slice(&xs[o * chunk..(o + 1) * chunk]);
            }
        }
        Ok(Val::elems(first.dtype, shape, out))
    }
}
