//! `Tensor`: a dtype, a static shape and a reference-counted, copy-on-write,
//! contiguous row-major buffer.

use crate::{DType, RuntimeError};
use smallvec::SmallVec;
use std::sync::Arc;

/// A tensor shape. Up to rank 4 lives inline (no heap allocation).
pub type Shape = SmallVec<[usize; 4]>;

/// Reference-counted storage, one variant per dtype.
#[derive(Clone, Debug)]
pub enum Buffer {
    /// `bool` elements.
    Bool(Arc<Vec<bool>>),
    /// `i32` elements.
    I32(Arc<Vec<i32>>),
    /// `i64` elements.
    I64(Arc<Vec<i64>>),
    /// `f32` elements.
    F32(Arc<Vec<f32>>),
    /// `f64` elements.
    F64(Arc<Vec<f64>>),
    /// `u32` elements.
    U32(Arc<Vec<u32>>),
    /// `u8` elements.
    U8(Arc<Vec<u8>>),
    /// `bf16` elements.
    BF16(Arc<Vec<half::bf16>>),
    /// `f16` elements.
    F16(Arc<Vec<half::f16>>),
}

impl Buffer {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            Buffer::Bool(_) => DType::Bool,
            Buffer::I32(_) => DType::I32,
            Buffer::I64(_) => DType::I64,
            Buffer::F32(_) => DType::F32,
            Buffer::F64(_) => DType::F64,
            Buffer::U32(_) => DType::U32,
            Buffer::U8(_) => DType::U8,
            Buffer::BF16(_) => DType::BF16,
            Buffer::F16(_) => DType::F16,
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Buffer::Bool(v) => v.len(),
            Buffer::I32(v) => v.len(),
            Buffer::I64(v) => v.len(),
            Buffer::F32(v) => v.len(),
            Buffer::F64(v) => v.len(),
            Buffer::U32(v) => v.len(),
            Buffer::U8(v) => v.len(),
            Buffer::BF16(v) => v.len(),
            Buffer::F16(v) => v.len(),
        }
    }
    /// `true` when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rust types that are tensor elements.
pub trait Element: Copy + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    /// The dtype of this element type.
    const DTYPE: DType;
    /// The additive identity.
    const ZERO: Self;
    /// Wraps a vector as a buffer.
    fn wrap(v: Arc<Vec<Self>>) -> Buffer;
    /// The elements, if `b` holds this type.
    fn slice(b: &Buffer) -> Option<&[Self]>;
    /// The storage, if `b` holds this type.
    fn arc_mut(b: &mut Buffer) -> Option<&mut Arc<Vec<Self>>>;
    /// Converts to `f64` (bools as 0 or 1).
    fn to_f64(self) -> f64;
    /// Converts to `i64` (floats saturate, NaN gives 0, bools 0 or 1).
    fn to_i64(self) -> i64;
    /// `n` elements of [`Element::ZERO`], or `None` when the allocator
    /// refuses. The element types of loopvm get zeroed memory from the
    /// allocator (`calloc`), as `vec![ZERO; n]` does.
    fn try_zeroed(n: usize) -> Option<Vec<Self>> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, Self::ZERO);
        Some(v)
    }
}

macro_rules! element {
    ($t:ty, $d:ident, $zero:expr, |$x:ident| $f64:expr, |$y:ident| $i64:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            const ZERO: Self = $zero;
            fn wrap(v: Arc<Vec<Self>>) -> Buffer {
                Buffer::$d(v)
            }
            fn slice(b: &Buffer) -> Option<&[Self]> {
                match b {
                    Buffer::$d(v) => Some(v.as_slice()),
                    _ => None,
                }
            }
            fn arc_mut(b: &mut Buffer) -> Option<&mut Arc<Vec<Self>>> {
                match b {
                    Buffer::$d(v) => Some(v),
                    _ => None,
                }
            }
            fn to_f64(self) -> f64 {
                let $x = self;
                $f64
            }
            fn to_i64(self) -> i64 {
                let $y = self;
                $i64
            }
            fn try_zeroed(n: usize) -> Option<Vec<Self>> {
                // SAFETY: all-zero bits is a valid value of this type (its `ZERO`).
                unsafe { crate::alloc::zeroed_vec::<$t>(n) }
            }
        }
    };
}

element!(bool, Bool, false, |x| if x { 1.0 } else { 0.0 }, |y| y as i64);
element!(i32, I32, 0, |x| x as f64, |y| y as i64);
element!(i64, I64, 0, |x| x as f64, |y| y);
element!(f32, F32, 0.0, |x| x as f64, |y| y as i64);
element!(f64, F64, 0.0, |x| x, |y| y as i64);
element!(u32, U32, 0, |x| x as f64, |y| y as i64);
element!(u8, U8, 0, |x| x as f64, |y| y as i64);
element!(half::bf16, BF16, half::bf16::ZERO, |x| x.to_f64(), |y| y.to_f32() as i64);
element!(half::f16, F16, half::f16::ZERO, |x| x.to_f64(), |y| y.to_f32() as i64);

/// Calls `$body` with `$T` bound to the Rust element type of dtype `$d`.
#[macro_export]
macro_rules! with_dtype {
    ($d:expr, $T:ident => $body:expr) => {
        match $d {
            $crate::DType::Bool => {
                type $T = bool;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::BF16 => {
                type $T = $crate::bf16;
                $body
            }
            $crate::DType::F16 => {
                type $T = $crate::f16;
                $body
            }
        }
    };
}

/// A tensor value. Cloning is cheap (the buffer is shared); writing goes
/// through copy-on-write.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Shape,
    buf: Buffer,
}

pub use crate::rules::MAX_NUMEL;

/// Number of elements of `shape`, or an error when it overflows `usize` or
/// exceeds [`MAX_NUMEL`] (the rule is [`crate::rules::numel`]).
pub fn checked_numel(shape: &[usize]) -> Result<usize, RuntimeError> {
    crate::rules::numel(shape)
        .ok_or_else(|| RuntimeError::new("shape", format!("element count of shape {shape:?} overflows")))
}

impl Tensor {
    /// A tensor from a shape and its row-major elements.
    pub fn from_vec<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Tensor, RuntimeError> {
        let n = checked_numel(shape)?;
        if n != data.len() {
            return Err(RuntimeError::new("tensor", format!("shape {shape:?} needs {n} elements, got {}", data.len())));
        }
        Ok(Tensor { shape: Shape::from_slice(shape), buf: T::wrap(Arc::new(data)) })
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Element>(v: T) -> Tensor {
        Tensor { shape: Shape::new(), buf: T::wrap(Arc::new(vec![v])) }
    }

    /// A tensor from a shape and a buffer whose length matches.
    pub fn from_buffer(shape: &[usize], buf: Buffer) -> Result<Tensor, RuntimeError> {
        let n = checked_numel(shape)?;
        if n != buf.len() {
            return Err(RuntimeError::new("tensor", format!("shape {shape:?} needs {n} elements, got {}", buf.len())));
        }
        Ok(Tensor { shape: Shape::from_slice(shape), buf })
    }

    /// A tensor of zeros (`false` for bools); an out-of-memory error (op
    /// `zeros`) when it is larger than [`crate::max_tensor_bytes`] or the
    /// allocator refuses it.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor, RuntimeError> {
        let n = checked_numel(shape)?;
        Ok(with_dtype!(dtype, T => Tensor {
            shape: Shape::from_slice(shape),
            buf: T::wrap(Arc::new(crate::alloc::try_zeros::<T>("zeros", shape, n)?)),
        }))
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.buf.dtype()
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The rank (number of axes).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.buf.len()
    }
    /// The size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype().size_in_bytes()
    }
    /// The buffer.
    pub fn buffer(&self) -> &Buffer {
        &self.buf
    }
    /// The elements, if the dtype is `T`.
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        T::slice(&self.buf)
    }
    /// `true` when both tensors share one buffer.
    pub fn shares_buffer(&self, other: &Tensor) -> bool {
        fn ptr<T>(a: &Arc<Vec<T>>) -> *const () {
            Arc::as_ptr(a) as *const ()
        }
        let p = |b: &Buffer| match b {
            Buffer::Bool(a) => ptr(a),
            Buffer::I32(a) => ptr(a),
            Buffer::I64(a) => ptr(a),
            Buffer::F32(a) => ptr(a),
            Buffer::F64(a) => ptr(a),
            Buffer::U32(a) => ptr(a),
            Buffer::U8(a) => ptr(a),
            Buffer::BF16(a) => ptr(a),
            Buffer::F16(a) => ptr(a),
        };
        p(&self.buf) == p(&other.buf)
    }
    /// The same data under another shape with the same element count.
    pub fn with_shape(&self, shape: &[usize]) -> Result<Tensor, RuntimeError> {
        Tensor::from_buffer(shape, self.buf.clone())
    }
    /// The single element of a one-element tensor as `i64` (floats saturate).
    pub fn scalar_i64(&self) -> Option<i64> {
        if self.numel() != 1 {
            return None;
        }
        Some(with_dtype!(self.dtype(), T => <T as Element>::to_i64(T::slice(&self.buf)?[0])))
    }
    /// The single element of a one-element tensor as `f64`.
    pub fn scalar_f64(&self) -> Option<f64> {
        if self.numel() != 1 {
            return None;
        }
        Some(with_dtype!(self.dtype(), T => <T as Element>::to_f64(T::slice(&self.buf)?[0])))
    }
    /// The elements for writing, if the dtype is `T`. When the buffer is
    /// shared with another tensor it is copied first (copy-on-write), so the
    /// other tensors never observe the write. A copy that cannot be
    /// allocated inside a kernel becomes that kernel's out-of-memory error
    /// (see [`crate::kernels`]).
    pub fn make_mut<T: Element>(&mut self) -> Option<&mut [T]> {
        let shape = &self.shape;
        let a = T::arc_mut(&mut self.buf)?;
        if Arc::get_mut(a).is_none() && crate::alloc::catching() {
            match crate::alloc::try_copy("copy", a.as_slice(), shape) {
                Ok(v) => *a = Arc::new(v),
                Err(e) => crate::alloc::unwind(e),
            }
        }
        Some(Arc::make_mut(a).as_mut_slice())
    }
    /// `true` when this tensor holds the only reference to its buffer, so a
    /// write through [`Tensor::make_mut`] does not copy.
    pub fn is_unique(&self) -> bool {
        fn one<T>(a: &Arc<Vec<T>>) -> bool {
            Arc::strong_count(a) == 1 && Arc::weak_count(a) == 0
        }
        match &self.buf {
            Buffer::Bool(a) => one(a),
            Buffer::I32(a) => one(a),
            Buffer::I64(a) => one(a),
            Buffer::F32(a) => one(a),
            Buffer::F64(a) => one(a),
            Buffer::U32(a) => one(a),
            Buffer::U8(a) => one(a),
            Buffer::BF16(a) => one(a),
            Buffer::F16(a) => one(a),
        }
    }
    /// The single element of a one-element `bool` tensor.
    pub fn scalar_bool(&self) -> Option<bool> {
        match self.as_slice::<bool>() {
            Some([b]) => Some(*b),
            _ => None,
        }
    }
}

/// Prepares `out` to receive a result of type `T` and `shape`, reusing its
/// buffer when `out` holds the only reference to a buffer of that dtype (so a
/// shape-stable loop allocates nothing), and returns the elements to fill.
/// The previous contents are unspecified.
///
/// A buffer larger than [`crate::max_tensor_bytes`], or one the allocator
/// refuses, fails the kernel that asked for it with an out-of-memory error
/// when the kernel was called through [`crate::kernels`] (it unwinds to the
/// kernel's entry point, see [`crate::alloc`]); elsewhere it is allocated
/// infallibly.
#[inline]
pub fn out_buffer<'a, T: Element>(out: &'a mut Option<Tensor>, shape: &[usize]) -> &'a mut [T] {
    // The steady state of a loop, inline in the kernel: `out` holds the
    // only reference to a buffer of this dtype and shape.
    if let Some(t) = out {
        if same_shape(&t.shape, shape) {
            if let Some(arc) = T::arc_mut(&mut t.buf).filter(|a| Arc::strong_count(a) == 1 && Arc::weak_count(a) == 0) {
                let n: usize = shape.iter().product();
                if arc.len() == n {
                    // SAFETY: as in `out_buffer_slow`: one strong reference,
                    // held through `out` (borrowed mutably here), and no
                    // weak ones, so no other reference exists or can be made
                    // while the returned borrow lives.
                    return unsafe { (*Arc::as_ptr(arc).cast_mut()).as_mut_slice() };
                }
            }
        }
    }
    out_buffer_slow(out, shape)
}

/// [`out_buffer`] when the slot's buffer cannot be taken as it is: a new
/// buffer, or the old one reshaped or resized.
#[inline(never)]
fn out_buffer_slow<'a, T: Element>(out: &'a mut Option<Tensor>, shape: &[usize]) -> &'a mut [T] {
    let n: usize = shape.iter().product();
    let reusable = match out {
        // Plain loads, not `Arc::get_mut` (a compare-and-swap): with one
        // strong reference, held through `out`, and no weak ones, nobody else
        // can gain a reference, so the `get_mut` below succeeds.
        Some(t) => T::arc_mut(&mut t.buf).is_some_and(|a| Arc::strong_count(a) == 1 && Arc::weak_count(a) == 0),
        None => false,
    };
    if !reusable {
        let v = if crate::alloc::catching() {
            crate::alloc::try_zeros::<T>("", shape, n).unwrap_or_else(|e| crate::alloc::unwind(e))
        } else {
            vec![T::ZERO; n]
        };
        *out = Some(Tensor { shape: Shape::from_slice(shape), buf: T::wrap(Arc::new(v)) });
    }
    let t = match out {
        Some(t) => t,
        None => unreachable!("out was filled above"),
    };
    if !same_shape(&t.shape, shape) {
        t.shape.clear();
        t.shape.extend_from_slice(shape);
    }
    let arc = match T::arc_mut(&mut t.buf) {
        Some(a) => a,
        None => unreachable!("dtype checked above"),
    };
    debug_assert!(Arc::strong_count(arc) == 1 && Arc::weak_count(arc) == 0);
    // SAFETY: `arc` is the only reference to its buffer: one strong count,
    // held through `out` (borrowed mutably here), and no weak ones, checked
    // above or made so by the fresh allocation; so no other reference can
    // exist or be made while the returned borrow lives. This is what
    // `Arc::get_mut` checks, without its compare-and-swap on the weak count
    // (a locked instruction on every kernel output: about 20 cycles an op
    // for the interpreter's small tensors).
    let v = unsafe { &mut *Arc::as_ptr(arc).cast_mut() };
    if n > v.len() && crate::alloc::catching() {
        if let Err(e) = crate::alloc::try_resize("", v, shape, n) {
            crate::alloc::unwind(e)
        }
    }
    v.resize(n, T::ZERO);
    v.as_mut_slice()
}

/// `a == b` for two shapes, as a loop: a shape has a handful of dims, and
/// the slice `==` calls `bcmp` (a library call, about 20 instructions more
/// than this loop for the interpreter's small tensors).
#[inline(always)]
pub fn same_shape(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Writes a scalar into `out`, reusing its buffer when possible.
pub fn set_scalar<T: Element>(out: &mut Option<Tensor>, v: T) {
    out_buffer::<T>(out, &[])[0] = v;
}
