//! Values of more than [`MAX_ELEMS`] elements: buffers in the compiled
//! loop's scratch memory, computed by the runtime's buffer kernels
//! ([`loopvm_runtime::kernels::native`]: the interpreter's loops and scalar
//! functions, so the floats are the interpreter's).
//!
//! Every instruction that makes such a value owns one buffer, handed out
//! when it is lowered and written each time it runs: a loop reuses its
//! buffers on every iteration and nothing is allocated while the code runs.
//! A value lives until its instruction runs again, which in a loop is the
//! next iteration; what outlives an iteration is a carry, and a carry of
//! more than [`MAX_ELEMS`] elements has a buffer of its own that takes the
//! body's result by a copy at the end of each iteration (`write_vars`).
//! Scratch memory belongs to the compiled code (`NativeLoop`), which hands
//! its address to the code through `NativeMeter::scratch`.

use super::*;

/// The most scratch memory one region may use.
const MAX_SCRATCH: usize = 1 << 26;

/// The alignment of every buffer.
const ALIGN: usize = 64;

fn unsupported_kernel(e: String) -> CompileError {
    CompileError::Unsupported(e)
}

impl Lowerer<'_, '_> {
    /// A fresh buffer of `bytes` in scratch memory: its address.
    pub(super) fn scratch(&mut self, bytes: usize) -> Result<Value, CompileError> {
        if !self.buffers {
            return unsupported!("a value of more than {MAX_ELEMS} elements is computed (buffers are off)");
        }
        let off = self.scratch_size.next_multiple_of(ALIGN);
        let Some(end) = off.checked_add(bytes).filter(|&e| e <= MAX_SCRATCH) else {
            return unsupported!("the region's buffers need more than {} MiB", MAX_SCRATCH >> 20);
        };
        self.scratch_size = end;
        let k = self.iconst(self.ptr, off as i64);
        let p = self.b.ins().iadd(self.scratch_base, k);
        self.rw.insert(p);
        Ok(p)
    }

    /// The address of `v`'s elements: where it is, or a fresh buffer they
    /// are stored into.
    pub(super) fn addr_of(&mut self, v: &Val) -> Result<Value, CompileError> {
        match &v.repr {
            Repr::Mem(p) => Ok(*p),
            Repr::Elems(xs) => {
                let xs = xs.clone();
                let p = self.scratch(xs.len() * v.dtype.size_in_bytes())?;
                self.store_elems(v.dtype, p, 0, &xs);
                Ok(p)
            }
        }
    }

    /// The value of `dtype` and `shape` at `p`: loaded into registers when
    /// it has at most [`MAX_ELEMS`] elements.
    pub(super) fn val_at(&mut self, dtype: DType, shape: Vec<usize>, p: Value) -> Val {
        let n: usize = shape.iter().product();
        if n <= MAX_ELEMS {
            let xs = self.load_elems(dtype, p, 0, n);
            Val::elems(dtype, shape, xs)
        } else {
            Val { dtype, shape, repr: Repr::Mem(p) }
        }
    }

    /// Calls buffer kernel `k` on the operands at `args` into a fresh
    /// buffer: its address.
    pub(super) fn kernel(&mut self, k: BufferKernel, args: &[Value]) -> Result<Value, CompileError> {
        if args.len() != k.arity() {
            return unsupported!("a buffer kernel of {} operands given {}", k.arity(), args.len());
        }
        let out = self.scratch(k.result_len() * k.result_dtype().size_in_bytes())?;
        self.owned.insert(out);
        let kb = Box::new(k);
        let kaddr = &*kb as *const BufferKernel as usize;
        self.kernels.push(kb);
        let kv = self.iconst(self.ptr, kaddr as i64);
        let a = args[0];
        let b = args.get(1).copied().unwrap_or(a);
        self.call_void(libcalls::buffer_kernel_addr(), &[self.ptr; 4], &[kv, a, b, out]);
        Ok(out)
    }

    /// Copies the elements of a value of `v`'s type from `src` to `dst`.
    pub(super) fn copy_value(&mut self, v: &Val, dst: Value, src: Value) {
        let n = self.iconst(self.ptr, (v.numel() * v.dtype.size_in_bytes()) as i64);
        self.call_void(libcalls::copy_addr(), &[self.ptr; 3], &[dst, src, n]);
    }

    fn call_void(&mut self, addr: usize, params: &[Type], args: &[Value]) {
        let mut sig = ir::Signature::new(self.call_conv);
        sig.params.extend(params.iter().map(|t| AbiParam::new(*t)));
        let sref = self.b.import_signature(sig);
        let callee = self.iconst(self.ptr, addr as i64);
        self.b.ins().call_indirect(sref, callee, args);
    }

    // ---- ops on buffers -------------------------------------------------------

    /// `op(a)`: in registers, or by the buffer kernel when `a` is in memory.
    pub(super) fn unary_any(&mut self, op: UnaryOp, a: &Val) -> Result<Val, CompileError> {
        if !matches!(a.repr, Repr::Mem(_)) {
            return self.unary(op, a);
        }
        let k = BufferKernel::unary(op, a.dtype, a.numel()).map_err(unsupported_kernel)?;
        let p = self.addr_of(a)?;
        let out = self.kernel(k, &[p])?;
        Ok(self.val_at(a.dtype, a.shape.clone(), out))
    }

    /// `op(a, b)`: in registers, or by the buffer kernel when an operand is
    /// in memory or the result has more than [`MAX_ELEMS`] elements.
    pub(super) fn binary_any(&mut self, op: BinaryOp, a: &Val, b: &Val) -> Result<Val, CompileError> {
        let shape = broadcast_shapes(&a.shape, &b.shape);
        let small = shape.as_ref().is_some_and(|s| s.iter().product::<usize>() <= MAX_ELEMS);
        let in_regs = matches!((&a.repr, &b.repr), (Repr::Elems(_), Repr::Elems(_)));
        if (small && in_regs) || a.dtype != b.dtype {
            return self.binary(op, a, b);
        }
        let Some(shape) = shape else { return self.binary(op, a, b) };
        let k = BufferKernel::binary(op, a.dtype, &a.shape, &b.shape).map_err(unsupported_kernel)?;
        let (pa, pb) = (self.addr_of(a)?, self.addr_of(b)?);
        let out = self.kernel(k, &[pa, pb])?;
        Ok(self.val_at(op.result_dtype(a.dtype), shape, out))
    }

    /// `a` broadcast to `shape`: in registers when small, else by the
    /// buffer kernel.
    pub(super) fn broadcast(&mut self, a: &Val, shape: Vec<usize>) -> Result<Val, CompileError> {
        if !broadcasts_to(&a.shape, &shape) {
            return unsupported!("cannot broadcast {} to shape {shape:?}", a.type_string());
        }
        let n = rules::product(&shape);
        if matches!(a.repr, Repr::Elems(_)) && n.is_some_and(|n| n <= MAX_ELEMS) {
            let n = self.check_size("broadcast", &shape)?;
            let pos: Vec<usize> = (0..n).map(|i| src_index(&a.shape, &shape, i)).collect();
            let xs = self.gather(a, &pos);
            return Ok(Val::elems(a.dtype, shape, xs));
        }
        if a.shape == shape {
            return Ok(Val { shape, ..a.clone() });
        }
        let k = BufferKernel::broadcast(a.dtype, &a.shape, &shape).map_err(unsupported_kernel)?;
        let p = self.addr_of(a)?;
        let out = self.kernel(k, &[p])?;
        Ok(self.val_at(a.dtype, shape, out))
    }

    /// `a @ b` by the buffer kernel (the interpreter's GEMM), whatever the sizes.
    pub(super) fn matmul(&mut self, a: &Val, b: &Val) -> Result<Val, CompileError> {
        if a.dtype != b.dtype {
            return unsupported!("dtype mismatch in matmul, lhs: {}, rhs: {}", a.type_string(), b.type_string());
        }
        let k = BufferKernel::matmul(a.dtype, &a.shape, &b.shape).map_err(unsupported_kernel)?;
        let Ok(mm) = rules::matmul(&a.shape, &b.shape) else {
            return unsupported!("matmul of {} and {}", a.type_string(), b.type_string());
        };
        let shape: Vec<usize> = mm.dims();
        let (pa, pb) = (self.addr_of(a)?, self.addr_of(b)?);
        let out = self.kernel(k, &[pa, pb])?;
        Ok(self.val_at(a.dtype, shape, out))
    }

    /// `a` converted to `to`: in registers, or by the buffer kernel when `a`
    /// is in memory.
    pub(super) fn cast_any(&mut self, a: &Val, to: DType) -> Result<Val, CompileError> {
        if !matches!(a.repr, Repr::Mem(_)) || a.dtype == to {
            return self.cast(a, to);
        }
        let p = self.addr_of(a)?;
        let out = self.kernel(BufferKernel::cast(a.dtype, to, a.numel()), &[p])?;
        Ok(self.val_at(to, a.shape.clone(), out))
    }

    /// Reduction `op` of `a` over `axis`: in registers, or by the buffer
    /// kernel when `a` is in memory.
    pub(super) fn reduce_any(&mut self, op: ReduceOp, a: &Val, axis: Option<u32>) -> Result<Val, CompileError> {
        if !matches!(a.repr, Repr::Mem(_)) {
            return self.reduce(op, a, axis);
        }
        let axis = axis.map(|x| x as usize);
        let k = BufferKernel::reduce(op, a.dtype, &a.shape, axis).map_err(unsupported_kernel)?;
        let Ok(shape) = rules::reduce::<usize, Vec<usize>>(&a.shape, axis) else {
            return unsupported!("{op}: axis {axis:?} is out of range for {}", a.type_string());
        };
        let p = self.addr_of(a)?;
        let out = self.kernel(k, &[p])?;
        Ok(self.val_at(op.result_dtype(a.dtype), shape, out))
    }
}
