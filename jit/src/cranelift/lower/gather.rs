//! Gathers, windows and running sums in registers: `take`, `scatter_add`,
//! `dynamic_slice`, `dynamic_update_slice` and `cumsum` of values of at most
//! [`MAX_ELEMS`] elements. Positions are computed as the kernels compute them
//! (`runtime/src/kernels/gather.rs`); a dynamic position becomes a clamped
//! offset, read with a `select` chain (or a load from an input in memory).

use super::*;

impl Lowerer<'_, '_> {
    /// A run-time integer scalar widened to `i64`.
    fn index_i64(&mut self, v: Value, d: DType) -> Value {
        if d == DType::I32 {
            self.b.ins().sextend(types::I64, v)
        } else {
            v
        }
    }

    /// The element of `a` at the run-time flat position `flat`, which is
    /// one of `candidates` (static flat positions; the first is the default).
    fn pick(&mut self, a: &Val, flat: Value, candidates: &[usize]) -> Result<Value, CompileError> {
        match &a.repr {
            Repr::Mem(p) => {
                let addr = self.offset_addr(*p, flat, a.dtype.size_in_bytes());
                Ok(self.load_elems(a.dtype, addr, 0, 1)[0])
            }
            Repr::Elems(xs) => {
                let xs = xs.clone();
                let Some(&first) = candidates.first() else { return unsupported!("no position to read") };
                let mut out = xs[first];
                for &c in &candidates[1..] {
                    let cv = self.iconst(types::I64, c as i64);
                    let hit = self.b.ins().icmp(IntCC::Equal, flat, cv);
                    out = self.b.ins().select(hit, xs[c], out);
                }
                Ok(out)
            }
        }
    }

    /// The positions `take` reads along an axis of length `n` for the ids
    /// (each clamped into `[0, n - 1]`), as `i64` values.
    fn take_positions(&mut self, ids: &Val, n: usize) -> Result<Vec<Value>, CompileError> {
        if !ids.dtype.is_int() {
            return unsupported!("take: ids are {}", ids.type_string());
        }
        self.check_size("take ids", &ids.shape)?;
        let xs = self.elems(ids, "take")?.to_vec();
        let (z, hi) = (self.iconst(types::I64, 0), self.iconst(types::I64, n as i64 - 1));
        Ok(xs
            .into_iter()
            .map(|x| {
                let x = self.index_i64(x, ids.dtype);
                let x = self.b.ins().smax(x, z);
                self.b.ins().smin(x, hi)
            })
            .collect())
    }

    pub(super) fn take(&mut self, a: &Val, ids: &Val, axis: usize) -> Result<Val, CompileError> {
        let Ok(shape) = rules::take::<usize, Vec<usize>>(&a.shape, &ids.shape, axis) else {
            return unsupported!("take: axis {axis} of {}", a.type_string());
        };
        self.check_size("take", &shape)?;
        let n = a.shape[axis];
        if n == 0 {
            return unsupported!("take from the empty axis {axis} of {} (the interpreter reports it)", a.type_string());
        }
        let pos = self.take_positions(ids, n)?;
        let outer: usize = a.shape[..axis].iter().product();
        let inner: usize = a.shape[axis + 1..].iter().product();
        let mut out = Vec::with_capacity(outer * pos.len() * inner);
        for o in 0..outer {
            for &p in &pos {
                let row = self.iconst(types::I64, inner as i64);
                let t = self.b.ins().imul(p, row);
                for i in 0..inner {
                    let base = o * n * inner + i;
                    let k = self.iconst(types::I64, base as i64);
                    let flat = self.b.ins().iadd(t, k);
                    let cands: Vec<usize> = (0..n).map(|c| base + c * inner).collect();
                    out.push(self.pick(a, flat, &cands)?);
                }
            }
        }
        Ok(Val::elems(a.dtype, shape, out))
    }

    pub(super) fn scatter_add(&mut self, a: &Val, ids: &Val, u: &Val, axis: usize) -> Result<Val, CompileError> {
        let Ok(want) = rules::take::<usize, Vec<usize>>(&a.shape, &ids.shape, axis) else {
            return unsupported!("scatter_add: axis {axis} of {}", a.type_string());
        };
        if a.dtype == DType::Bool || u.dtype != a.dtype || u.shape != want {
            return unsupported!(
                "scatter_add of {} into {} (the interpreter reports it)",
                u.type_string(),
                a.type_string()
            );
        }
        self.check_size("scatter_add", &a.shape)?;
        let n = a.shape[axis];
        let pos = if n == 0 { Vec::new() } else { self.take_positions(ids, n)? };
        let mut out = self.elems(a, "scatter_add")?.to_vec();
        let us = self.elems(u, "scatter_add")?.to_vec();
        let outer: usize = a.shape[..axis].iter().product();
        let inner: usize = a.shape[axis + 1..].iter().product();
        let m = pos.len();
        // In the order of the ids, as the kernel and XLA's scatter add.
        for (j, &p) in pos.iter().enumerate() {
            for c in 0..n {
                let cv = self.iconst(types::I64, c as i64);
                let hit = self.b.ins().icmp(IntCC::Equal, p, cv);
                for o in 0..outer {
                    for i in 0..inner {
                        let at = (o * n + c) * inner + i;
                        let x = us[(o * m + j) * inner + i];
                        let old = out[at];
                        let new =
                            if a.dtype.is_float() { self.b.ins().fadd(old, x) } else { self.b.ins().iadd(old, x) };
                        out[at] = self.b.ins().select(hit, new, old);
                    }
                }
            }
        }
        Ok(Val::elems(a.dtype, a.shape.clone(), out))
    }

    /// The flat offset of a window of `sizes` in `a` at the run-time
    /// `starts`, each wrapped once when negative and clamped so it fits.
    fn window_offset(&mut self, a: &Val, starts: &[Val], sizes: &[usize]) -> Result<Value, CompileError> {
        if starts.len() != a.shape.len() || sizes.len() != a.shape.len() {
            return unsupported!("a window of {} starts in {}", starts.len(), a.type_string());
        }
        if a.shape.iter().zip(sizes).any(|(&d, &s)| s > d) {
            return unsupported!("the window {sizes:?} does not fit {} (the interpreter reports it)", a.type_string());
        }
        let st = strides(&a.shape);
        let mut off = self.iconst(types::I64, 0);
        for (ax, s) in starts.iter().enumerate() {
            if !s.dtype.is_int() {
                return unsupported!("a window start is {}, not an integer", s.type_string());
            }
            let x = self.scalar(s, "a window start")?;
            let x = self.index_i64(x, s.dtype);
            let (d, size) = (a.shape[ax] as i64, sizes[ax] as i64);
            let z = self.iconst(types::I64, 0);
            let dv = self.iconst(types::I64, d);
            let neg = self.b.ins().icmp(IntCC::SignedLessThan, x, z);
            let wrapped = self.b.ins().iadd(x, dv);
            let x = self.b.ins().select(neg, wrapped, x);
            let x = self.b.ins().smax(x, z);
            let hi = self.iconst(types::I64, d - size);
            let x = self.b.ins().smin(x, hi);
            let sv = self.iconst(types::I64, st[ax] as i64);
            let t = self.b.ins().imul(x, sv);
            off = self.b.ins().iadd(off, t);
        }
        Ok(off)
    }

    pub(super) fn dyn_slice(&mut self, a: &Val, starts: &[Val], sizes: &[usize]) -> Result<Val, CompileError> {
        let count = self.check_size("dynamic_slice", sizes)?;
        let off = self.window_offset(a, starts, sizes)?;
        let st = strides(&a.shape);
        let all: Vec<usize> = match &a.repr {
            Repr::Elems(xs) => (0..xs.len()).collect(),
            Repr::Mem(_) => Vec::new(),
        };
        let mut out = Vec::with_capacity(count);
        for e in 0..count {
            let rel = rel_offset(e, sizes, &st);
            let k = self.iconst(types::I64, rel as i64);
            let flat = self.b.ins().iadd(off, k);
            let cands: Vec<usize> = all.iter().copied().filter(|&c| c >= rel).collect();
            out.push(self.pick(a, flat, &cands)?);
        }
        Ok(Val::elems(a.dtype, sizes.to_vec(), out))
    }

    pub(super) fn dyn_update_slice(&mut self, a: &Val, u: &Val, starts: &[Val]) -> Result<Val, CompileError> {
        if u.dtype != a.dtype || u.shape.len() != a.shape.len() {
            return unsupported!("dynamic_update_slice of {} with {}", a.type_string(), u.type_string());
        }
        self.check_size("dynamic_update_slice", &a.shape)?;
        let off = self.window_offset(a, starts, &u.shape)?;
        let st = strides(&a.shape);
        let mut out = self.elems(a, "dynamic_update_slice")?.to_vec();
        let us = self.elems(u, "dynamic_update_slice")?.to_vec();
        for (e, &x) in us.iter().enumerate() {
            let rel = rel_offset(e, &u.shape, &st);
            for (pos, o) in out.iter_mut().enumerate().skip(rel) {
                let cv = self.iconst(types::I64, (pos - rel) as i64);
                let hit = self.b.ins().icmp(IntCC::Equal, off, cv);
                *o = self.b.ins().select(hit, x, *o);
            }
        }
        Ok(Val::elems(a.dtype, a.shape.clone(), out))
    }

    /// The running sum from `+0` in the scan's direction, as the kernel adds.
    pub(super) fn cumsum(&mut self, a: &Val, axis: usize, reverse: bool) -> Result<Val, CompileError> {
        if axis >= a.shape.len() || a.dtype == DType::Bool {
            return unsupported!("cumsum along axis {axis} of {}", a.type_string());
        }
        self.check_size("cumsum", &a.shape)?;
        let xs = self.elems(a, "cumsum")?.to_vec();
        let mut out = xs.clone();
        let outer: usize = a.shape[..axis].iter().product();
        let n = a.shape[axis];
        let inner: usize = a.shape[axis + 1..].iter().product();
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = self.zero(a.dtype);
                for step in 0..n {
                    let k = if reverse { n - 1 - step } else { step };
                    let at = (o * n + k) * inner + i;
                    acc = if a.dtype.is_float() {
                        self.b.ins().fadd(acc, xs[at])
                    } else {
                        self.b.ins().iadd(acc, xs[at])
                    };
                    out[at] = acc;
                }
            }
        }
        Ok(Val::elems(a.dtype, a.shape.clone(), out))
    }
}

/// The flat offset in a tensor of strides `st` of element `e` of a window
/// of shape `sizes` placed at the origin.
fn rel_offset(e: usize, sizes: &[usize], st: &[usize]) -> usize {
    let mut rest = e;
    let mut rel = 0;
    for ax in (0..sizes.len()).rev() {
        let s = sizes[ax].max(1);
        rel += (rest % s) * st[ax];
        rest /= s;
    }
    rel
}
