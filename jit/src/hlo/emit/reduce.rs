//! Contractions and reductions: `matmul`, `dot_general`, `sum`/`max`/... over an axis or
//! all, and `argmax`.

use super::*;

impl Emitter<'_> {
    // ------------------------------------------------------- linear algebra

    pub(super) fn matmul(&mut self, a: &Val, b: &Val) -> Result<Val> {
        let types = || format!("lhs: {}, rhs: {}", a.ty(), b.ty());
        if a.dtype != b.dtype {
            return Err(EmitError::new("matmul", format!("dtype mismatch in matmul, {}", types())));
        }
        if a.dtype == DType::Bool {
            return Err(EmitError::new("matmul", format!("matmul requires numeric operands, {}", types())));
        }
        let mm = rules::matmul(&a.shape, &b.shape).map_err(|e| match e {
            rules::MatmulError::Rank => {
                EmitError::new("matmul", format!("matmul takes operands of rank 1 or 2, {}", types()))
            }
            rules::MatmulError::Inner(k, k2) => {
                EmitError::new("matmul", format!("inner dimensions differ ({k} vs {k2}), {}", types()))
            }
        })?;
        if a.dtype.is_half() {
            return self.half_through_f32(a, b, |e, x, y| e.matmul(x, y));
        }
        // The contracted dim of `a`: its last.
        let lc = usize::from(mm.m.is_some());
        let shape: Vec<usize> = mm.dims();
        if numel(&shape).is_none() {
            return Err(EmitError::new("matmul", format!("result too large, {}", types())));
        }
        let r = self.op(
            a.dtype,
            &shape,
            format!(
                "stablehlo.dot_general {}, {}, contracting_dims = [{lc}] x [0] : ({}, {}) -> {}",
                a.name,
                b.name,
                a.ty(),
                b.ty(),
                tensor_type(a.dtype, &shape)
            ),
        );
        Ok(self.dot_plus_zero(r))
    }

    /// As for sums: the interpreter accumulates from +0, so a product is
    /// never -0, but XLA turns a dot over a length-1 dim into a multiply
    /// (`0 * -38.25` is -0): the result is loose, made +0 by adding a zero
    /// XLA cannot see where a consumer needs it ([`super::loose`]). For
    /// both `matmul` and `dot_general`.
    fn dot_plus_zero(&mut self, r: Val) -> Val {
        self.mark_loose(&r);
        r
    }

    /// `r + 0`, the zero hidden from XLA (a -0 in `r` becomes +0). The add
    /// counts as one for the shield ([`Made::Add`]), as `float_bin`'s.
    pub(super) fn plus_hidden_zero(&mut self, r: &Val) -> Val {
        // The barrier hides the scalar zero; the broadcast after it fuses.
        let z = self.zero(r.dtype, &[]);
        let z = self.barrier(&z);
        let z = self.broadcast_to(&z, &r.shape);
        let s = self.bin("add", r, &z);
        self.made(&s, Made::Add);
        s
    }

    /// StableHLO's `dot_general` itself: batch dims, then `a`'s free dims,
    /// then `b`'s (the interpreter's kernel takes the same shape rule).
    pub(super) fn dot_general(&mut self, a: &Val, b: &Val, dims: &rules::DotDims) -> Result<Val> {
        const OP: &str = "dot_general";
        let types = || format!("lhs: {}, rhs: {}", a.ty(), b.ty());
        if a.dtype != b.dtype {
            return Err(EmitError::new(OP, format!("dtype mismatch in dot_general, {}", types())));
        }
        if a.dtype == DType::Bool {
            return Err(EmitError::new(OP, format!("dot_general requires numeric operands, {}", types())));
        }
        let g = rules::dot_general(&a.shape, &b.shape, dims)
            .map_err(|e| EmitError::new(OP, format!("the dimension numbers do not fit ({e:?}), {}", types())))?;
        let shape: Vec<usize> = g.dims();
        if numel(&shape).is_none() {
            return Err(EmitError::new(OP, format!("result too large, {}", types())));
        }
        if a.dtype.is_half() {
            return self.half_through_f32(a, b, |e, x, y| e.dot_general(x, y, dims));
        }
        let list = |l: &[u32]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
        let batching = if dims.lhs_batch.is_empty() {
            String::new()
        } else {
            format!("batching_dims = [{}] x [{}], ", list(&dims.lhs_batch), list(&dims.rhs_batch))
        };
        let r = self.op(
            a.dtype,
            &shape,
            format!(
                "stablehlo.dot_general {}, {}, {batching}contracting_dims = [{}] x [{}] : ({}, {}) -> {}",
                a.name,
                b.name,
                list(&dims.lhs_contract),
                list(&dims.rhs_contract),
                a.ty(),
                b.ty(),
                tensor_type(a.dtype, &shape)
            ),
        );
        Ok(self.dot_plus_zero(r))
    }

    /// A product of half floats as the interpreter computes it: both
    /// operands converted to `f32` (exact), the `f32` product, one rounding
    /// back. Written out, so XLA's choice of accumulator does not matter.
    fn half_through_f32(
        &mut self,
        a: &Val,
        b: &Val,
        f: impl FnOnce(&mut Self, &Val, &Val) -> Result<Val>,
    ) -> Result<Val> {
        let (x, y) = (self.convert(a, DType::F32), self.convert(b, DType::F32));
        let r = f(self, &x, &y)?;
        let r = self.settle(&r);
        Ok(self.convert(&r, a.dtype))
    }

    // ------------------------------------------------------------ reductions

    /// A `stablehlo.reduce` of `x` over `dims` with one accumulator, whose
    /// reducer body is written by `body(self, acc, elem)`.
    pub(super) fn reduce_with(
        &mut self,
        x: &Val,
        init: &Val,
        dims: &[usize],
        out_shape: &[usize],
        body: impl FnOnce(&mut Self, &Val, &Val) -> Val,
    ) -> Result<Val> {
        let st = tensor_type(x.dtype, &[]);
        let (pa, pb) = (self.fresh_named("acc"), self.fresh_named("elem"));
        let sv = |n: &str| Val { name: n.to_string(), dtype: x.dtype, shape: vec![], konst: None };
        let (va, vb) = (sv(&pa), sv(&pb));
        let (text, r) = self.region(|e| {
            e.indent += 1;
            let r = body(e, &va, &vb);
            e.line(&format!("stablehlo.return {} : {st}", r.name));
            e.indent -= 1;
            Ok(r)
        })?;
        let _ = r;
        let name = self.fresh();
        let dims_i: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.line(&format!("{name} = \"stablehlo.reduce\"({}, {}) ({{", x.name, init.name));
        self.indent += 1;
        self.line(&format!("^bb0({pa}: {st}, {pb}: {st}):"));
        self.indent -= 1;
        self.out.push_str(&text);
        let out_ty = tensor_type(x.dtype, out_shape);
        self.line(&format!("}}) {{dimensions = {}}} : ({}, {st}) -> {out_ty}", i64_array(&dims_i), x.ty()));
        Ok(Val { name, dtype: x.dtype, shape: out_shape.to_vec(), konst: None })
    }

    pub(super) fn reduce(&mut self, op: ReduceOp, a: &Val, axis: Option<u32>) -> Result<Val> {
        let what = format!("reduce {op}");
        let out_shape: Vec<usize> = rules::reduce(&a.shape, axis.map(|ax| ax as usize)).map_err(|_| {
            EmitError::new(what.clone(), format!("axis {} is out of range for {}", axis.unwrap_or(0), a.ty()))
        })?;
        let (dims, len): (Vec<usize>, usize) = match axis {
            None => ((0..a.shape.len()).collect(), a.numel()),
            Some(ax) => (vec![ax as usize], a.shape[ax as usize]),
        };
        if len == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::Argmax) {
            let w = match axis {
                None => "an empty tensor".to_string(),
                Some(ax) => format!("empty axis {ax}"),
            };
            return Err(EmitError::new(what, format!("{op} of {w} is not defined, got {}", a.ty())));
        }
        match op {
            ReduceOp::Sum | ReduceOp::Mean => {
                let result = op.result_dtype(a.dtype);
                // Half floats accumulate in f32 and round once at the end,
                // as the interpreter does.
                let target = if result.is_half() { DType::F32 } else { result };
                let x = self.convert(a, target);
                // A float sum is never -0 on the interpreter (it starts from
                // +0), but XLA rewrites a reduction over a length-1 axis as
                // a reshape (dropping the +0) and `sum(-x)` as `-sum(x)`:
                // the sum is loose, made +0 by adding a zero XLA cannot see
                // where a consumer needs it ([`super::loose`]). Its operand
                // may be loose: a zero's sign changes only that of a zero sum.
                let s = if dims.is_empty() {
                    // The sum of one element is that element plus +0 (a
                    // -0 becomes +0), whether it is loose or not.
                    if target.is_float() {
                        self.plus_hidden_zero(&x)
                    } else {
                        x
                    }
                } else {
                    let z = self.zero(target, &[]);
                    let s = self.reduce_with(&x, &z, &dims, &out_shape, |e, p, q| e.bin(op.hlo_name(), p, q))?;
                    self.mark_loose(&s);
                    s
                };
                if op == ReduceOp::Sum && result == target {
                    return Ok(s);
                }
                let s = self.settle(&s);
                if op == ReduceOp::Sum {
                    return Ok(self.convert(&s, result));
                }
                let n = self.splat(target, &out_shape, Lit::F(len as f64));
                let n = self.opaque_divisor(&s, &n);
                let m = self.bin("divide", &s, &n);
                Ok(self.convert(&m, result))
            }
            ReduceOp::Max | ReduceOp::Min => {
                let is_max = op == ReduceOp::Max;
                if dims.is_empty() {
                    return Ok(a.clone());
                }
                let d = a.dtype;
                let init = match d {
                    DType::Bool => self.splat(d, &[], Lit::B(!is_max)),
                    DType::I32 | DType::I64 | DType::U32 | DType::U8 => {
                        self.splat(d, &[], Lit::I(if is_max { int_min(d) } else { int_max(d) }))
                    }
                    _ => self.splat(d, &[], Lit::F(if is_max { f64::NEG_INFINITY } else { f64::INFINITY })),
                };
                self.reduce_with(a, &init, &dims, &out_shape, |e, p, q| match d {
                    DType::Bool => e.bin(if is_max { "or" } else { "and" }, p, q),
                    DType::I32 | DType::I64 | DType::U32 | DType::U8 => {
                        e.bin(if is_max { "maximum" } else { "minimum" }, p, q)
                    }
                    _ => e.max_min_float(is_max, p, q),
                })
            }
            ReduceOp::Argmax => {
                if len > i32::MAX as usize + 1 {
                    return Err(EmitError::new(what, format!("argmax index overflows i32, got {}", a.ty())));
                }
                let x = if a.dtype == DType::Bool { self.convert(a, DType::I32) } else { a.clone() };
                let (x, dim) = match axis {
                    None => {
                        let n = x.numel();
                        (self.reshape(&x, &[n]), 0)
                    }
                    Some(ax) => (x, ax as usize),
                };
                self.argmax(&x, dim, &out_shape)
            }
        }
    }

    /// Index (`i32`) of the first maximum of `x` along `dim`; NaN is the maximum.
    pub(super) fn argmax(&mut self, x: &Val, dim: usize, out_shape: &[usize]) -> Result<Val> {
        let d = x.dtype;
        let iota_ty = tensor_type(DType::I32, &x.shape);
        let io = self.op(DType::I32, &x.shape, format!("stablehlo.iota dim = {dim} : {iota_ty}"));
        let init_v = if d.is_float() {
            self.splat(d, &[], Lit::F(f64::NEG_INFINITY))
        } else {
            self.splat(d, &[], Lit::I(int_min(d)))
        };
        let init_i = self.splat(DType::I32, &[], Lit::I(0));
        let st = tensor_type(d, &[]);
        let it = tensor_type(DType::I32, &[]);
        let names: Vec<String> = ["va", "ia", "vb", "ib"].iter().map(|b| self.fresh_named(b)).collect();
        let sv = |n: &str, dt: DType| Val { name: n.to_string(), dtype: dt, shape: vec![], konst: None };
        let (va, ia, vb, ib) =
            (sv(&names[0], d), sv(&names[1], DType::I32), sv(&names[2], d), sv(&names[3], DType::I32));
        let (text, ()) = self.region(|e| {
            e.indent += 1;
            // a wins: a > b, or a is NaN and b is not, or a ties b (both NaN
            // counting as a tie) with a smaller index.
            let gt = e.cmp("GT", &va, &vb);
            let eq = e.cmp("EQ", &va, &vb);
            let lt_i = e.cmp("LT", &ia, &ib);
            let pick = if d.is_float() {
                let an = e.cmp("NE", &va, &va);
                let bn = e.cmp("NE", &vb, &vb);
                let not_bn = e.un("not", &bn);
                let nan_wins = e.bin("and", &an, &not_bn);
                let both_nan = e.bin("and", &an, &bn);
                let tie = e.bin("or", &eq, &both_nan);
                let tie_wins = e.bin("and", &tie, &lt_i);
                let w = e.bin("or", &gt, &nan_wins);
                e.bin("or", &w, &tie_wins)
            } else {
                let tie_wins = e.bin("and", &eq, &lt_i);
                e.bin("or", &gt, &tie_wins)
            };
            let v = e.select(&pick, &va, &vb);
            let i = e.select(&pick, &ia, &ib);
            e.line(&format!("stablehlo.return {}, {} : {st}, {it}", v.name, i.name));
            e.indent -= 1;
            Ok(())
        })?;
        let name = self.fresh();
        self.line(&format!(
            "{name}:2 = \"stablehlo.reduce\"({}, {}, {}, {}) ({{",
            x.name, io.name, init_v.name, init_i.name
        ));
        self.indent += 1;
        self.line(&format!("^bb0({}: {st}, {}: {it}, {}: {st}, {}: {it}):", va.name, ia.name, vb.name, ib.name));
        self.indent -= 1;
        self.out.push_str(&text);
        self.line(&format!(
            "}}) {{dimensions = {}}} : ({}, {iota_ty}, {st}, {it}) -> ({}, {})",
            i64_array(&[dim as i64]),
            x.ty(),
            tensor_type(d, out_shape),
            tensor_type(DType::I32, out_shape)
        ));
        Ok(Val { name: format!("{name}#1"), dtype: DType::I32, shape: out_shape.to_vec(), konst: None })
    }
}
