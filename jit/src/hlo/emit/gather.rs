//! Gathers, windows and running sums: `take` (`stablehlo.gather`), its
//! transpose `scatter_add` (`stablehlo.scatter`), `dynamic_slice`,
//! `dynamic_update_slice` and `cumsum` (`stablehlo.reduce_window`).
//!
//! Positions are computed as the kernels compute them
//! (`runtime/src/kernels/gather.rs`): `take`'s ids are clamped into
//! `[0, n - 1]` before the gather (StableHLO's `scatter` would drop an
//! out-of-range update where the interpreter clamps it), window starts are
//! wrapped once when negative and then clamped by the op itself.

use super::*;

/// The dims lists of a gather or scatter along `axis` of an operand of rank
/// `rank` with ids of rank `q`: the result's (or updates') positions of the
/// operand's other axes, which surround the ids' dims.
fn window_dims(rank: usize, q: usize, axis: usize) -> Vec<usize> {
    (0..axis).chain(axis + q..rank - 1 + q).collect()
}

/// `name = [a, b]`, or nothing for an empty list (StableHLO's printer
/// leaves empty dims lists out).
fn dims_field(name: &str, d: &[usize]) -> Option<String> {
    (!d.is_empty()).then(|| format!("{name} = {}", dims_list(d)))
}

impl Emitter<'_> {
    /// `ids` clamped into `[0, n - 1]` for `take` from an axis of length `n`.
    fn clamped_ids(&mut self, what: &str, a: &Val, ids: &Val, axis: usize) -> Result<Val> {
        if !ids.dtype.is_int() {
            return Err(EmitError::new(what, format!("ids must be an integer tensor, got {}", ids.ty())));
        }
        let Some(&n) = a.shape.get(axis) else {
            return Err(EmitError::new(what, format!("axis {axis} is out of range for {}", a.ty())));
        };
        if n == 0 && ids.numel() > 0 {
            return Err(EmitError::new(what, format!("cannot take from the empty axis {axis} of {}", a.ty())));
        }
        // The largest id that is in range and representable in the ids' dtype.
        let most = match ids.dtype {
            DType::I32 => i32::MAX as u64,
            DType::U32 => u64::from(u32::MAX),
            DType::U8 => u64::from(u8::MAX),
            _ => u64::MAX - 1,
        };
        let top = (n as u64).min(most + 1);
        let top = i64::try_from(top.saturating_sub(1)).unwrap_or(i64::MAX);
        // XLA must not take an `abs` or a square for non-negative (`shield`).
        let ids = if self.may_be_non_negative_int(ids) { self.barrier(ids) } else { ids.clone() };
        let lo = self.splat(ids.dtype, &ids.shape, Lit::I(0));
        let hi = self.splat(ids.dtype, &ids.shape, Lit::I(top));
        let m = self.bin("maximum", &ids, &lo);
        Ok(self.bin("minimum", &m, &hi))
    }

    /// `take(a, ids, axis)`: a `stablehlo.gather` of one-element slices along
    /// `axis` at the (clamped) ids, whose dims replace the axis.
    pub(super) fn take(&mut self, a: &Val, ids: &Val, axis: usize) -> Result<Val> {
        const WHAT: &str = "take";
        let ix = self.clamped_ids(WHAT, a, ids, axis)?;
        let shape: Vec<usize> = rules::take(&a.shape, &ids.shape, axis)
            .map_err(|_| EmitError::new(WHAT, format!("axis {axis} is out of range for {}", a.ty())))?;
        numel(&shape).ok_or_else(|| EmitError::new(WHAT, "the result is too large"))?;
        if numel(&shape) == Some(0) {
            return Ok(self.zero(a.dtype, &shape));
        }
        let (rank, q) = (a.shape.len(), ids.shape.len());
        let mut sizes: Vec<i64> = a.shape.iter().map(|&d| d as i64).collect();
        sizes[axis] = 1;
        let fields: Vec<String> = [
            dims_field("offset_dims", &window_dims(rank, q, axis)),
            dims_field("collapsed_slice_dims", &[axis]),
            dims_field("start_index_map", &[axis]),
            Some(format!("index_vector_dim = {q}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let r = self.op(
            a.dtype,
            &shape,
            format!(
                "\"stablehlo.gather\"({}, {}) {{dimension_numbers = #stablehlo.gather<{}>, indices_are_sorted = false, slice_sizes = {}}} : ({}, {}) -> {}",
                a.name,
                ix.name,
                fields.join(", "),
                i64_array(&sizes),
                a.ty(),
                ix.ty(),
                tensor_type(a.dtype, &shape)
            ),
        );
        Ok(self.fold_from(r, &[a, ids]))
    }

    /// `scatter_add(a, ids, u, axis)`: a `stablehlo.scatter` adding each
    /// update at its (clamped) id; XLA applies the updates in order.
    pub(super) fn scatter_add(&mut self, a: &Val, ids: &Val, u: &Val, axis: usize) -> Result<Val> {
        const WHAT: &str = "scatter_add";
        let ix = self.clamped_ids(WHAT, a, ids, axis)?;
        let want: Vec<usize> = rules::take(&a.shape, &ids.shape, axis)
            .map_err(|_| EmitError::new(WHAT, format!("axis {axis} is out of range for {}", a.ty())))?;
        if a.dtype == DType::Bool || u.dtype != a.dtype || u.shape != want {
            return Err(EmitError::new(
                WHAT,
                format!("updates {} do not fit base {} and ids {}", u.ty(), a.ty(), ids.ty()),
            ));
        }
        if u.numel() == 0 {
            return Ok(a.clone());
        }
        let (rank, q) = (a.shape.len(), ids.shape.len());
        let fields: Vec<String> = [
            dims_field("update_window_dims", &window_dims(rank, q, axis)),
            dims_field("inserted_window_dims", &[axis]),
            dims_field("scatter_dims_to_operand_dims", &[axis]),
            Some(format!("index_vector_dim = {q}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let st = tensor_type(a.dtype, &[]);
        let (pa, pb, ps) = (self.fresh_named("old"), self.fresh_named("upd"), self.fresh_named("sum"));
        let name = self.fresh();
        self.line(&format!("{name} = \"stablehlo.scatter\"({}, {}, {}) ({{", a.name, ix.name, u.name));
        self.indent += 1;
        self.line(&format!("^bb0({pa}: {st}, {pb}: {st}):"));
        self.indent += 1;
        self.line(&format!("{ps} = stablehlo.add {pa}, {pb} : {st}"));
        self.line(&format!("stablehlo.return {ps} : {st}"));
        self.indent -= 2;
        self.line(&format!(
            "}}) {{indices_are_sorted = false, scatter_dimension_numbers = #stablehlo.scatter<{}>, unique_indices = false}} : ({}, {}, {}) -> {}",
            fields.join(", "),
            a.ty(),
            ix.ty(),
            u.ty(),
            a.ty()
        ));
        Ok(Val { name, dtype: a.dtype, shape: a.shape.clone(), konst: None })
    }

    /// Start indices of a window of `sizes` into `a` (one run-time integer
    /// scalar per axis): each wrapped once when negative; the op clamps.
    fn window_starts(&mut self, what: &str, a: &Val, starts: &[Val], sizes: &[usize]) -> Result<Vec<Val>> {
        if starts.len() != a.shape.len() || sizes.len() != a.shape.len() {
            return Err(EmitError::new(what, format!("{} starts for {}", starts.len(), a.ty())));
        }
        if let Some(ax) = a.shape.iter().zip(sizes).position(|(&d, &s)| s > d) {
            return Err(EmitError::new(
                what,
                format!("the window {sizes:?} is larger than {} along axis {ax}", a.ty()),
            ));
        }
        // Starts are compared in a signed type wide enough for every value
        // of theirs (a `u32` start is its unsigned value, as in the kernel).
        let it =
            if starts.iter().any(|v| matches!(v.dtype, DType::I64 | DType::U32)) { DType::I64 } else { DType::I32 };
        let mut out = Vec::with_capacity(starts.len());
        for (ax, ((v, &dim), &size)) in starts.iter().zip(&a.shape).zip(sizes).enumerate() {
            let i = self.scalar_index(what, v, it)?;
            let dim_i = i64::try_from(dim).map_err(|_| EmitError::new(what, "dimension too large"))?;
            if it == DType::I32 && dim_i > i64::from(i32::MAX) {
                return Err(EmitError::new(what, format!("axis {ax} of {} is too long for an i32 start", a.ty())));
            }
            out.push(match i.konst {
                Some(k) => {
                    let s = rules::window_start(dim as u64, size as u64, k);
                    self.splat(it, &[], Lit::I(s as i64))
                }
                None => {
                    let zero = self.splat(it, &[], Lit::I(0));
                    let d = self.splat(it, &[], Lit::I(dim_i));
                    let neg = self.cmp("LT", &i, &zero);
                    let wrapped = self.bin("add", &i, &d);
                    self.select(&neg, &wrapped, &i)
                }
            });
        }
        Ok(out)
    }

    /// `dynamic_slice(a, starts, sizes)`: `stablehlo.dynamic_slice`, which
    /// clamps the starts so the window fits, as `lax` does.
    pub(super) fn dyn_slice(&mut self, a: &Val, starts: &[Val], sizes: &[usize]) -> Result<Val> {
        let st = self.window_starts("dynamic_slice", a, starts, sizes)?;
        if sizes.contains(&0) {
            return Ok(self.zero(a.dtype, sizes));
        }
        Ok(self.dynamic_slice(a, &st, sizes))
    }

    /// `dynamic_update_slice(a, u, starts)`: `stablehlo.dynamic_update_slice`.
    pub(super) fn dyn_update_slice(&mut self, a: &Val, u: &Val, starts: &[Val]) -> Result<Val> {
        const WHAT: &str = "dynamic_update_slice";
        if u.dtype != a.dtype || u.shape.len() != a.shape.len() {
            return Err(EmitError::new(WHAT, format!("dtype mismatch, operand: {}, update: {}", a.ty(), u.ty())));
        }
        let st = self.window_starts(WHAT, a, starts, &u.shape)?;
        if u.numel() == 0 {
            return Ok(a.clone());
        }
        Ok(self.dynamic_update_slice(a, u, &st))
    }

    /// `cumsum(a, axis, reverse)`: a `stablehlo.reduce_window` whose window
    /// covers the axis, padded in front, from `+0`: XLA adds each window's
    /// elements in order, the interpreter's running sum's order. `reverse`
    /// reverses the axis around it (so the additions run from the end, as
    /// the interpreter's do).
    pub(super) fn cumsum(&mut self, a: &Val, axis: usize, reverse: bool) -> Result<Val> {
        const WHAT: &str = "cumsum";
        let Some(&n) = a.shape.get(axis) else {
            return Err(EmitError::new(WHAT, format!("axis {axis} is out of range for {}", a.ty())));
        };
        if a.dtype == DType::Bool {
            return Err(EmitError::new(WHAT, format!("requires a numeric tensor, got {}", a.ty())));
        }
        if a.numel() == 0 {
            return Ok(a.clone());
        }
        let rev = |e: &mut Self, x: &Val| {
            e.op(x.dtype, &x.shape, format!("stablehlo.reverse {}, dims = [{axis}] : {}", x.name, x.ty()))
        };
        let x = if reverse { rev(self, a) } else { a.clone() };
        let rank = a.shape.len();
        let mut window = vec![1i64; rank];
        window[axis] = n as i64;
        let pads: Vec<String> =
            (0..rank).map(|d| if d == axis { format!("[{}, 0]", n - 1) } else { "[0, 0]".to_string() }).collect();
        let st = tensor_type(a.dtype, &[]);
        let init = self.zero(a.dtype, &[]);
        let (pa, pb, ps) = (self.fresh_named("acc"), self.fresh_named("elem"), self.fresh_named("sum"));
        let name = self.fresh();
        self.line(&format!("{name} = \"stablehlo.reduce_window\"({}, {}) ({{", x.name, init.name));
        self.indent += 1;
        self.line(&format!("^bb0({pa}: {st}, {pb}: {st}):"));
        self.indent += 1;
        self.line(&format!("{ps} = stablehlo.add {pa}, {pb} : {st}"));
        self.line(&format!("stablehlo.return {ps} : {st}"));
        self.indent -= 2;
        self.line(&format!(
            "}}) {{padding = dense<[{}]> : tensor<{rank}x2xi64>, window_dimensions = {}, window_strides = {}}} : ({}, {st}) -> {}",
            pads.join(", "),
            i64_array(&window),
            i64_array(&vec![1i64; rank]),
            x.ty(),
            x.ty()
        ));
        let r = Val { name, dtype: a.dtype, shape: a.shape.clone(), konst: None };
        let r = if reverse { rev(self, &r) } else { r };
        // As for sums: the running sum starts from +0, which XLA drops for
        // a window of one element; a zero it cannot see keeps it.
        Ok(if a.dtype.is_float() {
            let z = self.zero(a.dtype, &a.shape);
            let z = self.barrier(&z);
            self.bin("add", &r, &z)
        } else {
            r
        })
    }
}
