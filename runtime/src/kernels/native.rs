//! The kernels over raw buffers, for native code (the Cranelift tier's
//! loops over values of more than a few elements).
//!
//! A [`BufferKernel`] describes one call: the op, the dtype and the operand
//! shapes, checked when it is made ([`BufferKernel::binary`], ...), so that
//! running it needs nothing but the buffers. Native code calls
//! [`run_buffer_kernel`] by address with the kernel (kept alive by the
//! compiled code) and pointers to its operands' and result's elements. The
//! loops and the scalar functions are the tensor kernels' own
//! ([`super::elementwise::zip_into`], [`super::elementwise::num_binary`],
//! [`super::num::float_unary`], the matmul GEMMs), so both tiers compute the
//! same floats; nothing is allocated.

use super::elementwise::{bool_binary, int_binary, int_unary, num_binary, zip_into, BinaryVisitor};
use super::num::Conv;
use super::num::{float_unary, Float, FloatUnaryVisitor, Int};
use super::reduce::{reduce_io, Geom, ReduceIo};
use super::{broadcast_copy, broadcast_shapes};
use crate::rules::{self, MatmulError};
use crate::{BinaryOp, DType, Element, ReduceOp, RuntimeError, Shape, UnaryOp};

/// One kernel call on buffers: what it computes, with every shape checked.
#[derive(Clone, Debug)]
pub struct BufferKernel {
    op: KernelOp,
}

#[derive(Clone, Debug)]
enum KernelOp {
    Binary { op: BinaryOp, dtype: DType, sa: Shape, sb: Shape, shape: Shape },
    Unary { op: UnaryOp, dtype: DType, n: usize },
    MatMul { dtype: DType, m: usize, k: usize, n: usize },
    Broadcast { dtype: DType, src: Shape, shape: Shape },
    Cast { from: DType, to: DType, n: usize },
    Reduce { op: ReduceOp, dtype: DType, n: usize, out: usize, g: Geom },
}

fn numel(s: &[usize]) -> Option<usize> {
    rules::product(s)
}

impl BufferKernel {
    /// `op(a, b)` for operands of `dtype` and shapes `sa`, `sb` (NumPy
    /// broadcasting); the result's dtype is `op.result_dtype(dtype)`, its
    /// shape [`BufferKernel::shape`].
    pub fn binary(op: BinaryOp, dtype: DType, sa: &[usize], sb: &[usize]) -> Result<BufferKernel, String> {
        if !op.accepts().accepts(dtype) {
            return Err(format!("{op} does not take {dtype}"));
        }
        let shape =
            broadcast_shapes(sa, sb).ok_or_else(|| format!("{op}: shapes {sa:?} and {sb:?} do not broadcast"))?;
        let n = numel(&shape).ok_or("too many elements")?;
        // An operand with all the result's elements is laid out as the
        // result: give it the result's shape (the equal-shape fast path).
        let norm = |s: &[usize]| -> Shape {
            if numel(s) == Some(n) {
                shape.clone()
            } else {
                s.into()
            }
        };
        let (sa, sb) = (norm(sa), norm(sb));
        Ok(BufferKernel { op: KernelOp::Binary { op, dtype, sa, sb, shape } })
    }

    /// `op(a)` elementwise for `n` elements of `dtype`.
    pub fn unary(op: UnaryOp, dtype: DType, n: usize) -> Result<BufferKernel, String> {
        if !op.accepts().accepts(dtype) {
            return Err(format!("{op} does not take {dtype}"));
        }
        Ok(BufferKernel { op: KernelOp::Unary { op, dtype, n } })
    }

    /// `a @ b` (NumPy's rules for ranks 1 and 2) for operands of `dtype`.
    pub fn matmul(dtype: DType, sa: &[usize], sb: &[usize]) -> Result<BufferKernel, String> {
        if dtype == DType::Bool {
            return Err("matmul of bools".into());
        }
        if dtype.is_half() {
            return Err(format!("matmul of {dtype} (the interpreter's kernel accumulates in f32)"));
        }
        let mm = rules::matmul(sa, sb).map_err(|e| match e {
            MatmulError::Rank => format!("matmul of shapes {sa:?} and {sb:?}"),
            MatmulError::Inner(k, k2) => format!("matmul: inner dimensions differ ({k} vs {k2})"),
        })?;
        let (m, k, n) = (mm.m.unwrap_or(1), mm.k, mm.n.unwrap_or(1));
        m.checked_mul(n).ok_or("too many elements")?;
        Ok(BufferKernel { op: KernelOp::MatMul { dtype, m, k, n } })
    }

    /// `a` of shape `src` broadcast to `shape` (a copy).
    pub fn broadcast(dtype: DType, src: &[usize], shape: &[usize]) -> Result<BufferKernel, String> {
        if !rules::broadcasts_to(src, shape) || numel(shape).is_none() {
            return Err(format!("cannot broadcast {src:?} to {shape:?}"));
        }
        Ok(BufferKernel { op: KernelOp::Broadcast { dtype, src: src.into(), shape: shape.into() } })
    }

    /// `a` of `n` elements converted from `from` to `to` (the cast kernel's rules).
    pub fn cast(from: DType, to: DType, n: usize) -> BufferKernel {
        BufferKernel { op: KernelOp::Cast { from, to, n } }
    }

    /// The reduction `op` of `a` of `dtype` and `shape` over `axis` (`None`:
    /// all elements); its result's shape is `rules::reduce`'s.
    pub fn reduce(op: ReduceOp, dtype: DType, shape: &[usize], axis: Option<usize>) -> Result<BufferKernel, String> {
        let out: Shape = rules::reduce(shape, axis).map_err(|_| format!("{op}: axis {axis:?} out of range"))?;
        let n = numel(shape).ok_or("too many elements")?;
        let (len, inner) = match axis {
            None => (n, 1),
            Some(ax) => (shape[ax], shape[ax + 1..].iter().product()),
        };
        if len == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::Argmax) {
            return Err(format!("{op} of an empty axis"));
        }
        if op == ReduceOp::Argmax && len > i32::MAX as usize + 1 {
            return Err("argmax index overflows i32".into());
        }
        let out = out.iter().product();
        Ok(BufferKernel { op: KernelOp::Reduce { op, dtype, n, out, g: Geom { len, inner } } })
    }

    /// The number of operands [`run_buffer_kernel`] reads.
    pub fn arity(&self) -> usize {
        match &self.op {
            KernelOp::Binary { .. } | KernelOp::MatMul { .. } => 2,
            KernelOp::Unary { .. } | KernelOp::Broadcast { .. } | KernelOp::Cast { .. } | KernelOp::Reduce { .. } => 1,
        }
    }

    /// The result's dtype.
    pub fn result_dtype(&self) -> DType {
        match &self.op {
            KernelOp::Binary { op, dtype, .. } => op.result_dtype(*dtype),
            KernelOp::Unary { dtype, .. } | KernelOp::MatMul { dtype, .. } | KernelOp::Broadcast { dtype, .. } => {
                *dtype
            }
            KernelOp::Cast { to, .. } => *to,
            KernelOp::Reduce { op, dtype, .. } => op.result_dtype(*dtype),
        }
    }

    /// The result's element count.
    pub fn result_len(&self) -> usize {
        match &self.op {
            KernelOp::Binary { shape, .. } | KernelOp::Broadcast { shape, .. } => shape.iter().product(),
            KernelOp::Unary { n, .. } => *n,
            KernelOp::MatMul { m, n, .. } => m * n,
            KernelOp::Cast { n, .. } => *n,
            KernelOp::Reduce { out, .. } => *out,
        }
    }

    /// The element count operand `i` must have.
    pub fn operand_len(&self, i: usize) -> usize {
        match (&self.op, i) {
            (KernelOp::Binary { sa, .. }, 0) => sa.iter().product(),
            (KernelOp::Binary { sb, .. }, _) => sb.iter().product(),
            (KernelOp::Unary { n, .. }, _) => *n,
            (KernelOp::MatMul { m, k, .. }, 0) => m * k,
            (KernelOp::MatMul { k, n, .. }, _) => k * n,
            (KernelOp::Broadcast { src, .. }, _) => src.iter().product(),
            (KernelOp::Cast { n, .. }, _) | (KernelOp::Reduce { n, .. }, _) => *n,
        }
    }
}

/// # Safety
/// `p` points at `n` initialised elements of `T`, or `n` is 0.
unsafe fn src<'a, T>(p: *const u8, n: usize) -> &'a [T] {
    if n == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(p.cast::<T>(), n) }
    }
}

/// # Safety
/// `p` points at `n` writable elements of `T` that nothing else reads or
/// writes during the borrow, or `n` is 0.
unsafe fn dst<'a, T>(p: *mut u8, n: usize) -> &'a mut [T] {
    if n == 0 {
        &mut []
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(p.cast::<T>(), n) }
    }
}

struct RawZip<'a, T> {
    xa: &'a [T],
    sa: &'a [usize],
    xb: &'a [T],
    sb: &'a [usize],
    shape: &'a [usize],
    out: *mut u8,
}

impl<T: Element> BinaryVisitor<T> for RawZip<'_, T> {
    type Out = ();
    fn apply<U: Element, F: Fn(T, T) -> U + Copy + Send + Sync>(self, f: F) {
        let n = self.shape.iter().product();
        // SAFETY: `run_buffer_kernel`'s contract: `out` holds the result's
        // elements, of the result's dtype (`U`), disjoint from the operands.
        let o = unsafe { dst::<U>(self.out, n) };
        zip_into(self.xa, self.sa, self.xb, self.sb, self.shape, o, f);
    }
}

struct RawMap<'a, T> {
    xs: &'a [T],
    out: *mut u8,
}

impl<T: Element> FloatUnaryVisitor<T> for RawMap<'_, T> {
    type Out = ();
    fn apply<F: Fn(T) -> T + Copy + Send + Sync>(self, f: F) {
        // SAFETY: as in `RawZip::apply`; a unary result has its operand's
        // dtype and length.
        let o = unsafe { dst::<T>(self.out, self.xs.len()) };
        super::elementwise::map_into(self.xs, o, f);
    }
}

/// Runs `k` on the operands at `a` and `b` (`b` unused by one-operand
/// kernels), writing the result at `out`. A null `k` does nothing. Never
/// panics or unwinds.
///
/// # Safety
/// `k` is null or points at a live [`BufferKernel`]; `a` (and `b` when the
/// kernel takes two operands) point at [`BufferKernel::operand_len`]
/// initialised elements of the kernel's operand dtype, `out` at
/// [`BufferKernel::result_len`] writable elements of its result dtype,
/// disjoint from the operands and touched by nothing else during the call.
pub unsafe extern "C" fn run_buffer_kernel(k: *const BufferKernel, a: *const u8, b: *const u8, out: *mut u8) {
    // SAFETY: the caller's contract.
    let Some(k) = (unsafe { k.as_ref() }) else { return };
    // SAFETY: the caller's contract, for each operand's length and dtype.
    let run = || unsafe { run(k, a, b, out) };
    // The kernels do not panic on checked shapes; should one, native code
    // must not unwind: the process aborts with the message.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
        std::process::abort();
    }
}

/// # Safety
/// As [`run_buffer_kernel`].
unsafe fn run(k: &BufferKernel, a: *const u8, b: *const u8, out: *mut u8) {
    match &k.op {
        KernelOp::Binary { op, dtype, sa, sb, shape } => {
            let (na, nb) = (sa.iter().product(), sb.iter().product());
            macro_rules! zip {
                ($t:ty, $table:ident) => {{
                    // SAFETY: the caller's contract.
                    let (xa, xb) = unsafe { (src::<$t>(a, na), src::<$t>(b, nb)) };
                    $table::<$t, _>(*op, RawZip { xa, sa, xb, sb, shape, out });
                }};
            }
            match dtype {
                DType::Bool => {
                    // SAFETY: the caller's contract.
                    let (xa, xb) = unsafe { (src::<bool>(a, na), src::<bool>(b, nb)) };
                    bool_binary(*op, RawZip { xa, sa, xb, sb, shape, out });
                }
                DType::I32 => zip!(i32, int_binary),
                DType::I64 => zip!(i64, int_binary),
                DType::U32 => zip!(u32, int_binary),
                DType::U8 => zip!(u8, int_binary),
                DType::F32 => zip!(f32, num_binary),
                DType::F64 => zip!(f64, num_binary),
                DType::BF16 => zip!(half::bf16, num_binary),
                DType::F16 => zip!(half::f16, num_binary),
            }
        }
        KernelOp::Unary { op, dtype, n } => {
            fn int<T: Int>(op: UnaryOp, a: *const u8, out: *mut u8, n: usize) {
                // SAFETY: `run`'s contract.
                let xs = unsafe { src::<T>(a, n) };
                int_unary::<T, _>(op, RawMap { xs, out });
            }
            fn float<T: Float>(op: UnaryOp, a: *const u8, out: *mut u8, n: usize) {
                // SAFETY: `run`'s contract.
                let xs = unsafe { src::<T>(a, n) };
                float_unary::<T, _>(op, RawMap { xs, out });
            }
            match dtype {
                DType::Bool => {
                    // SAFETY: the caller's contract.
                    let (xs, o) = unsafe { (src::<bool>(a, *n), dst::<bool>(out, *n)) };
                    super::elementwise::map_into(xs, o, |x: bool| !x);
                }
                DType::I32 => int::<i32>(*op, a, out, *n),
                DType::I64 => int::<i64>(*op, a, out, *n),
                DType::U32 => int::<u32>(*op, a, out, *n),
                DType::U8 => int::<u8>(*op, a, out, *n),
                DType::F32 => float::<f32>(*op, a, out, *n),
                DType::F64 => float::<f64>(*op, a, out, *n),
                DType::BF16 => float::<half::bf16>(*op, a, out, *n),
                DType::F16 => float::<half::f16>(*op, a, out, *n),
            }
        }
        KernelOp::MatMul { dtype, m, k, n } => {
            let (m, k, n) = (*m, *k, *n);
            macro_rules! mm {
                ($t:ty, $f:path) => {{
                    // SAFETY: the caller's contract.
                    let (x, y, o) = unsafe { (src::<$t>(a, m * k), src::<$t>(b, k * n), dst::<$t>(out, m * n)) };
                    $f(m, k, n, x, y, o);
                }};
            }
            match dtype {
                DType::F32 => mm!(f32, super::matmul::gemm_f32),
                DType::F64 => mm!(f64, super::matmul::gemm_f64),
                DType::I32 => mm!(i32, super::matmul::int_matmul::<i32>),
                DType::I64 => mm!(i64, super::matmul::int_matmul::<i64>),
                DType::U32 => mm!(u32, super::matmul::int_matmul::<u32>),
                DType::U8 => mm!(u8, super::matmul::int_matmul::<u8>),
                // Refused when the kernel is made.
                DType::Bool | DType::BF16 | DType::F16 => {}
            }
        }
        KernelOp::Broadcast { dtype, src: s, shape } => {
            let (ns, n) = (s.iter().product(), shape.iter().product());
            crate::with_dtype!(*dtype, T => {
                // SAFETY: the caller's contract.
                let (x, o) = unsafe { (src::<T>(a, ns), dst::<T>(out, n)) };
                broadcast_copy(x, s, shape, o);
            })
        }
        KernelOp::Cast { from, to, n } => {
            crate::with_dtype!(*from, S => crate::with_dtype!(*to, D => {
                // SAFETY: the caller's contract.
                let (x, o) = unsafe { (src::<S>(a, *n), dst::<D>(out, *n)) };
                super::elementwise::map_into(x, o, Conv::<D>::conv);
            }))
        }
        KernelOp::Reduce { op, dtype, n, out: len, g } => {
            let io = RawIo { a, n: *n, out, len: *len };
            // Raw buffers give no error (the shapes were checked).
            let _ = reduce_io(*op, *dtype, *g, io);
        }
    }
}

/// A reduction's operand and result as raw buffers.
struct RawIo {
    a: *const u8,
    n: usize,
    out: *mut u8,
    len: usize,
}

impl<'a> ReduceIo<'a> for RawIo {
    fn input<T: Element>(&self) -> Result<&'a [T], RuntimeError> {
        // SAFETY: `run_buffer_kernel`'s contract: `a` holds `n` elements of
        // the operand's dtype, live for the call.
        Ok(unsafe { src::<T>(self.a, self.n) })
    }
    fn output<U: Element>(&mut self) -> &mut [U] {
        // SAFETY: as above, for the result (`len` elements of its dtype).
        unsafe { dst::<U>(self.out, self.len) }
    }
}
