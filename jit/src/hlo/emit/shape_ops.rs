//! Shape ops: transpose, concat, stack, slices, and dynamic index/update.

use super::*;

impl Emitter<'_> {
    // ------------------------------------------------------------ shapes

    pub(super) fn transpose(&mut self, a: &Val, perm: Option<&[u32]>) -> Result<Val> {
        let p: Option<Vec<usize>> = perm.map(|p| p.iter().map(|&x| x as usize).collect());
        let perm = rules::permutation(a.shape.len(), p.as_deref()).map_err(|_| {
            let p = p.clone().unwrap_or_default();
            EmitError::new("transpose", format!("{p:?} is not a permutation of the axes of {}", a.ty()))
        })?;
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(a.clone());
        }
        let shape: Vec<usize> = rules::permute(&a.shape, &perm);
        Ok(self.op(
            a.dtype,
            &shape,
            format!(
                "stablehlo.transpose {}, dims = {} : ({}) -> {}",
                a.name,
                dims_list(&perm),
                a.ty(),
                tensor_type(a.dtype, &shape)
            ),
        ))
    }

    pub(super) fn concat_raw(&mut self, vs: &[Val], axis: usize, shape: &[usize]) -> Val {
        if vs.len() == 1 {
            return vs[0].clone();
        }
        let names: Vec<&str> = vs.iter().map(|v| v.name.as_str()).collect();
        let types: Vec<String> = vs.iter().map(Val::ty).collect();
        let r = self.op(
            vs[0].dtype,
            shape,
            format!(
                "stablehlo.concatenate {}, dim = {axis} : ({}) -> {}",
                names.join(", "),
                types.join(", "),
                tensor_type(vs[0].dtype, shape)
            ),
        );
        let parts: Vec<&Val> = vs.iter().collect();
        self.fold_from(r, &parts)
    }

    pub(super) fn concat(&mut self, vs: &[Val], axis: usize) -> Result<Val> {
        let list = || vs.iter().map(Val::ty).collect::<Vec<_>>().join(", ");
        let err = |why: &str| EmitError::new("concat", format!("{why}, got [{}]", list()));
        let shape = rules::concat(vs.iter().map(|v| (v.dtype, v.shape.as_slice())), axis)
            .map_err(|e| join_error(e, axis, &format!("shapes differ outside axis {axis}"), err))?;
        numel(&shape).ok_or_else(|| err("size overflows"))?;
        Ok(self.concat_raw(vs, axis, &shape))
    }

    pub(super) fn stack(&mut self, vs: &[Val], axis: usize) -> Result<Val> {
        let list = || vs.iter().map(Val::ty).collect::<Vec<_>>().join(", ");
        let err = |why: &str| EmitError::new("stack", format!("{why}, got [{}]", list()));
        let shape = rules::stack(vs.iter().map(|v| (v.dtype, v.shape.as_slice())), axis)
            .map_err(|e| join_error(e, axis, "shapes differ", err))?;
        numel(&shape).ok_or_else(|| err("size overflows"))?;
        let mut one = shape.clone();
        one[axis] = 1;
        let parts: Vec<Val> = vs.iter().map(|v| self.reshape(v, &one)).collect();
        Ok(self.concat_raw(&parts, axis, &shape))
    }

    pub(super) fn slice(&mut self, a: &Val, specs: &[SliceSpec]) -> Result<Val> {
        if specs.len() > a.shape.len() {
            return Err(EmitError::new(
                "slice",
                format!("{} indices for {}, which has rank {}", specs.len(), a.ty(), a.shape.len()),
            ));
        }
        let rank = a.shape.len();
        let (mut start, mut limit, mut stride) = (vec![0i64; rank], vec![0i64; rank], vec![1i64; rank]);
        let mut rev = Vec::new();
        let mut out_shape = Vec::new();
        let mut sliced = Vec::with_capacity(rank);
        for (ax, &dim) in a.shape.iter().enumerate() {
            let d = dim as i128;
            let (first, len, step): (i128, usize, i128) = match specs.get(ax) {
                None => (0, dim, 1),
                Some(&SliceSpec::Index(i)) => {
                    let Some(k) = rules::index_position(dim as u64, i128::from(i)) else {
                        return Err(EmitError::new(
                            "slice",
                            format!("index {i} is out of range for axis {ax} of {}", a.ty()),
                        ));
                    };
                    (i128::from(k), 1, 1)
                }
                Some(&SliceSpec::Range { start: s, stop, step }) => {
                    let r = rules::slice_range(dim as u64, s, stop, step)
                        .map_err(|_| EmitError::new("slice", format!("slice step 0 on axis {ax} of {}", a.ty())))?;
                    (r.first, r.len, step as i128)
                }
            };
            if !matches!(specs.get(ax), Some(SliceSpec::Index(_))) {
                out_shape.push(len);
            }
            sliced.push(len);
            // In the coordinates of an axis reversed when stepping back.
            let (first, step) = if step < 0 && len > 0 {
                rev.push(ax);
                (d - 1 - first, -step)
            } else {
                (first, step)
            };
            let step = if len <= 1 { 1 } else { step };
            let (s, l) = if len == 0 { (0, 0) } else { (first, first + (len as i128 - 1) * step + 1) };
            start[ax] = i64::try_from(s).unwrap_or(0);
            limit[ax] = i64::try_from(l).unwrap_or(0);
            stride[ax] = i64::try_from(step).unwrap_or(1);
        }
        let mut x = a.clone();
        if !rev.is_empty() {
            x = self.op(
                a.dtype,
                &a.shape,
                format!("stablehlo.reverse {}, dims = {} : {}", a.name, dims_list(&rev), a.ty()),
            );
        }
        let full = start.iter().all(|&s| s == 0)
            && stride.iter().all(|&s| s == 1)
            && limit.iter().zip(&a.shape).all(|(&l, &d)| l as u128 == d as u128);
        if !full {
            x = self.op(
                a.dtype,
                &sliced,
                format!(
                    "\"stablehlo.slice\"({}) {{start_indices = {}, limit_indices = {}, strides = {}}} : ({}) -> {}",
                    x.name,
                    i64_array(&start),
                    i64_array(&limit),
                    i64_array(&stride),
                    x.ty(),
                    tensor_type(a.dtype, &sliced)
                ),
            );
        }
        Ok(self.reshape(&x, &out_shape))
    }

    /// Normalised start indices for `dynamic_slice` / `dynamic_update_slice`
    /// of `a`: each runtime index has its dim added once when negative (the
    /// op then clamps), trailing axes start at 0.
    pub(super) fn start_indices(&mut self, what: &str, a: &Val, idx: &[Val]) -> Result<Vec<Val>> {
        if idx.len() > a.shape.len() {
            return Err(EmitError::new(
                what,
                format!("{} indices for {}, which has rank {}", idx.len(), a.ty(), a.shape.len()),
            ));
        }
        // A `u32` index is read as its value: through `i64`, where it fits.
        let it = if idx.iter().any(|v| matches!(v.dtype, DType::I64 | DType::U32)) { DType::I64 } else { DType::I32 };
        let mut out = Vec::with_capacity(a.shape.len());
        for (ax, (v, &dim)) in idx.iter().zip(&a.shape).enumerate() {
            if dim == 0 {
                return Err(EmitError::new(what, format!("cannot index empty axis {ax} of {}", a.ty())));
            }
            let i = self.scalar_index(what, v, it)?;
            let dim_i = i64::try_from(dim).map_err(|_| EmitError::new(what, "dimension too large"))?;
            if it == DType::I32 && dim_i > i64::from(i32::MAX) {
                return Err(EmitError::new(what, format!("axis {ax} of {} is too long for an i32 index", a.ty())));
            }
            let k = match i.konst {
                Some(k) => {
                    let k = if k < 0 { k.saturating_add(dim_i) } else { k };
                    self.splat(it, &[], Lit::I(k.clamp(0, dim_i - 1)))
                }
                None => {
                    let zero = self.splat(it, &[], Lit::I(0));
                    let d = self.splat(it, &[], Lit::I(dim_i));
                    let neg = self.cmp("LT", &i, &zero);
                    let wrapped = self.bin("add", &i, &d);
                    self.select(&neg, &wrapped, &i)
                }
            };
            out.push(k);
        }
        for _ in idx.len()..a.shape.len() {
            let z = self.splat(it, &[], Lit::I(0));
            out.push(z);
        }
        Ok(out)
    }

    /// `starts` clamped so that a window of `sizes` fits in `a`, as the
    /// op itself clamps them. Written out because XLA's simplifier merges
    /// a slice of a slice by adding their starts and clamps only the sum,
    /// against the outer operand: `dynamic_slice(a, [k], [2])[k]` with `k`
    /// = `i64::MAX` read `a[0]`, not `a[1]` (fuzz seed 2026120619).
    fn clamped_starts(&mut self, a: &Val, starts: &[Val], sizes: &[usize]) -> Vec<Val> {
        starts
            .iter()
            .zip(a.shape.iter().zip(sizes))
            .map(|(s, (&dim, &size))| {
                let hi = i64::try_from(dim.saturating_sub(size)).unwrap_or(i64::MAX);
                match s.konst {
                    // The index and window rules clamp a constant already.
                    Some(k) if (0..=hi).contains(&k) => s.clone(),
                    Some(k) => self.splat(s.dtype, &[], Lit::I(k.clamp(0, hi))),
                    None => {
                        let lo = self.splat(s.dtype, &[], Lit::I(0));
                        let hi = self.splat(s.dtype, &[], Lit::I(hi));
                        let ty = s.ty();
                        self.op(s.dtype, &[], format!("stablehlo.clamp {}, {}, {} : {ty}", lo.name, s.name, hi.name))
                    }
                }
            })
            .collect()
    }

    pub(super) fn dynamic_slice(&mut self, a: &Val, starts: &[Val], sizes: &[usize]) -> Val {
        let starts = &self.clamped_starts(a, starts, sizes)[..];
        let names: Vec<&str> = starts.iter().map(|v| v.name.as_str()).collect();
        let types: Vec<String> = starts.iter().map(Val::ty).collect();
        let sep = if names.is_empty() { "" } else { ", " };
        self.op(
            a.dtype,
            sizes,
            format!(
                "stablehlo.dynamic_slice {}{sep}{}, sizes = {} : ({}{sep}{}) -> {}",
                a.name,
                names.join(", "),
                dims_list(sizes),
                a.ty(),
                types.join(", "),
                tensor_type(a.dtype, sizes)
            ),
        )
    }

    pub(super) fn dynamic_update_slice(&mut self, a: &Val, upd: &Val, starts: &[Val]) -> Val {
        let starts = &self.clamped_starts(a, starts, &upd.shape)[..];
        let names: Vec<&str> = starts.iter().map(|v| v.name.as_str()).collect();
        let types: Vec<String> = starts.iter().map(Val::ty).collect();
        let sep = if names.is_empty() { "" } else { ", " };
        self.op(
            a.dtype,
            &a.shape,
            format!(
                "stablehlo.dynamic_update_slice {}, {}{sep}{} : ({}, {}{sep}{}) -> {}",
                a.name,
                upd.name,
                names.join(", "),
                a.ty(),
                upd.ty(),
                types.join(", "),
                a.ty()
            ),
        )
    }

    pub(super) fn index(&mut self, a: &Val, idx: &[Val]) -> Result<Val> {
        if idx.is_empty() {
            return Ok(a.clone());
        }
        let starts = self.start_indices("index", a, idx)?;
        let rest = a.shape[idx.len()..].to_vec();
        let mut sizes = vec![1usize; idx.len()];
        sizes.extend_from_slice(&rest);
        let s = self.dynamic_slice(a, &starts, &sizes);
        Ok(self.reshape(&s, &rest))
    }

    pub(super) fn update(&mut self, mode: UpdateMode, a: &Val, idx: &[Val], v: &Val) -> Result<Val> {
        let what = format!("update {mode}");
        let starts = self.start_indices(&what, a, idx)?;
        let slot = a.shape[idx.len()..].to_vec();
        if v.dtype != a.dtype {
            return Err(EmitError::new(
                what,
                format!("dtype mismatch in update, target: {}, value: {}", a.ty(), v.ty()),
            ));
        }
        if !broadcasts_to(&v.shape, &slot) {
            return Err(EmitError::new(
                what,
                format!("value {} does not broadcast to the slot {slot:?} of {}", v.ty(), a.ty()),
            ));
        }
        if mode == UpdateMode::Add && a.dtype == DType::Bool {
            return Err(EmitError::new(what, format!("add update requires a numeric target, got {}", a.ty())));
        }
        let vb = self.broadcast_to(v, &slot);
        let mut sizes = vec![1usize; idx.len()];
        sizes.extend_from_slice(&slot);
        let upd = self.reshape(&vb, &sizes);
        let upd = match mode {
            UpdateMode::Set => upd,
            UpdateMode::Add => {
                let cur = self.dynamic_slice(a, &starts, &sizes);
                self.bin("add", &cur, &upd)
            }
        };
        Ok(self.dynamic_update_slice(a, &upd, &starts))
    }
}

/// The emitter's text for a [`rules::JoinError`] of concat or stack (`err`
/// adds the operand list; `differ` is the op's text for shapes that differ).
fn join_error(e: rules::JoinError, axis: usize, differ: &str, err: impl Fn(&str) -> EmitError) -> EmitError {
    use rules::JoinError as J;
    match e {
        J::Empty => err("needs at least one operand"),
        J::Axis => err(&format!("axis {axis} is out of range")),
        J::Kind(_) => err("dtype mismatch"),
        J::Shape(_) => err(differ),
        J::Overflow(_) | J::Symbolic => err("size overflows"),
    }
}
