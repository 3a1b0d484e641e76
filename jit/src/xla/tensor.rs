//! Moving loopvm [`Tensor`]s between the host and a PJRT device.

use loopvm_runtime::{Buffer as HostBuffer, DType, Element, RuntimeError, Tensor};

use super::pjrt::{Buffer, Client, ElementType};
use super::{Result, XlaError};

impl From<DType> for ElementType {
    fn from(d: DType) -> ElementType {
        match d {
            DType::Bool => ElementType::Pred,
            DType::I32 => ElementType::S32,
            DType::I64 => ElementType::S64,
            DType::F32 => ElementType::F32,
            DType::F64 => ElementType::F64,
            DType::U32 => ElementType::U32,
            DType::U8 => ElementType::U8,
            DType::BF16 => ElementType::BF16,
            DType::F16 => ElementType::F16,
        }
    }
}

impl ElementType {
    /// The loopvm dtype of this element type, if loopvm has one.
    pub fn dtype(self) -> Option<DType> {
        match self {
            ElementType::Pred => Some(DType::Bool),
            ElementType::S32 => Some(DType::I32),
            ElementType::S64 => Some(DType::I64),
            ElementType::F32 => Some(DType::F32),
            ElementType::F64 => Some(DType::F64),
            ElementType::U32 => Some(DType::U32),
            ElementType::U8 => Some(DType::U8),
            ElementType::BF16 => Some(DType::BF16),
            ElementType::F16 => Some(DType::F16),
            _ => None,
        }
    }
}

/// Element types whose values are plain bytes: no padding, every byte
/// initialised. `bool` is one byte, 0 or 1.
trait Plain: Copy {}
impl Plain for bool {}
impl Plain for i32 {}
impl Plain for i64 {}
impl Plain for f32 {}
impl Plain for f64 {}
impl Plain for u32 {}
impl Plain for u8 {}
impl Plain for loopvm_runtime::bf16 {}
impl Plain for loopvm_runtime::f16 {}

/// Element types for which every bit pattern is a valid value.
trait AnyBits: Plain {}
impl AnyBits for i32 {}
impl AnyBits for i64 {}
impl AnyBits for f32 {}
impl AnyBits for f64 {}
impl AnyBits for u32 {}
impl AnyBits for u8 {}
impl AnyBits for loopvm_runtime::bf16 {}
impl AnyBits for loopvm_runtime::f16 {}

fn bytes_of<T: Plain>(v: &[T]) -> &[u8] {
    // SAFETY: `T: Plain` has no padding and all bytes initialised, so its
    // slice's memory is `size_of_val(v)` readable, initialised bytes; `u8` has
    // alignment 1, and the borrow keeps `v` alive and unmodified.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

fn bytes_of_mut<T: AnyBits>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `bytes_of`; in addition every bit pattern written through
    // the byte view is a valid `T` (`T: AnyBits`), and the exclusive borrow
    // prevents any other access meanwhile.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// The op named by an out-of-memory error while copying a result back.
const COPY_BACK: &str = "the XLA tier's result copy";

/// A zeroed host buffer for a result of `dims`, or an out-of-memory error.
fn try_zeros<T: Element>(dims: &[usize], n: usize) -> Result<Vec<T>> {
    loopvm_runtime::alloc::try_zeros::<T>(COPY_BACK, dims, n).map_err(XlaError::HostMemory)
}

impl Client {
    /// Copies a tensor to the client's device.
    pub fn buffer_from_tensor(&self, t: &Tensor) -> Result<Buffer> {
        self.buffer_from_tensor_on(t, 0)
    }

    /// Copies a tensor to the `device`-th addressable device.
    pub fn buffer_from_tensor_on(&self, t: &Tensor, device: usize) -> Result<Buffer> {
        self.buffer_from_host_on(tensor_bytes(t), t.shape(), t.dtype().into(), device)
    }

    /// Copies part `part` of `parts` equal parts of `t` along `axis` (rows
    /// `part * n / parts ..` of the `n`) to the `device`-th addressable
    /// device: one shard of a value split over a mesh axis. `n` must be a
    /// multiple of `parts` (the caller says which argument is not).
    pub fn buffer_from_tensor_part(
        &self,
        t: &Tensor,
        axis: usize,
        parts: usize,
        part: usize,
        device: usize,
    ) -> Result<Buffer> {
        let shape = t.shape();
        let n = *shape
            .get(axis)
            .ok_or_else(|| XlaError::InvalidArgument(format!("axis {axis} is out of range for shape {shape:?}")))?;
        if parts == 0 || n % parts != 0 || part >= parts {
            return Err(XlaError::InvalidArgument(format!(
                "axis {axis} of shape {shape:?} does not split into {parts} equal parts"
            )));
        }
        if parts == 1 {
            return self.buffer_from_tensor_on(t, device);
        }
        let rows = n / parts;
        let elem = t.dtype().size_in_bytes();
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product::<usize>() * elem;
        let bytes = tensor_bytes(t);
        let mut out = Vec::with_capacity(outer * rows * inner);
        for o in 0..outer {
            let start = (o * n + part * rows) * inner;
            out.extend_from_slice(&bytes[start..start + rows * inner]);
        }
        let mut dims = shape.to_vec();
        dims[axis] = rows;
        self.buffer_from_host_on(&out, &dims, t.dtype().into(), device)
    }
}

/// The elements of `t` as bytes, row-major, native byte order.
fn tensor_bytes(t: &Tensor) -> &[u8] {
    match t.buffer() {
        HostBuffer::Bool(v) => bytes_of(v.as_slice()),
        HostBuffer::I32(v) => bytes_of(v.as_slice()),
        HostBuffer::I64(v) => bytes_of(v.as_slice()),
        HostBuffer::F32(v) => bytes_of(v.as_slice()),
        HostBuffer::F64(v) => bytes_of(v.as_slice()),
        HostBuffer::U32(v) => bytes_of(v.as_slice()),
        HostBuffer::U8(v) => bytes_of(v.as_slice()),
        HostBuffer::BF16(v) => bytes_of(v.as_slice()),
        HostBuffer::F16(v) => bytes_of(v.as_slice()),
    }
}

impl Buffer {
    /// Copies the buffer to a new host tensor; an error for element types
    /// loopvm has no dtype for.
    pub fn to_tensor(&self) -> Result<Tensor> {
        let ty = self.element_type()?;
        let dtype = ty
            .dtype()
            .ok_or_else(|| XlaError::InvalidArgument(format!("a {} buffer has no loopvm dtype", ty.mlir_name())))?;
        let dims = self.dims()?;
        let n = loopvm_runtime::checked_numel(&dims).map_err(|e| XlaError::InvalidArgument(e.to_string()))?;
        let tensor = match dtype {
            DType::Bool => {
                let mut v = try_zeros::<bool>(&dims, n)?;
                let mut bytes = Vec::new();
                bytes.try_reserve_exact(n).map_err(|_| {
                    XlaError::HostMemory(RuntimeError::out_of_memory(COPY_BACK, DType::Bool, &dims, Some(n), None))
                })?;
                bytes.resize(n, 0u8);
                self.copy_to(&mut bytes)?;
                v.iter_mut().zip(bytes).for_each(|(o, b)| *o = b != 0);
                Tensor::from_vec(&dims, v)
            }
            DType::I32 => self.read_as::<i32>(&dims, n)?,
            DType::I64 => self.read_as::<i64>(&dims, n)?,
            DType::F32 => self.read_as::<f32>(&dims, n)?,
            DType::F64 => self.read_as::<f64>(&dims, n)?,
            DType::U32 => self.read_as::<u32>(&dims, n)?,
            DType::U8 => self.read_as::<u8>(&dims, n)?,
            DType::BF16 => self.read_as::<loopvm_runtime::bf16>(&dims, n)?,
            DType::F16 => self.read_as::<loopvm_runtime::f16>(&dims, n)?,
        };
        tensor.map_err(|e| XlaError::InvalidArgument(e.to_string()))
    }

    fn read_as<T: AnyBits + Element>(
        &self,
        dims: &[usize],
        n: usize,
    ) -> Result<std::result::Result<Tensor, loopvm_runtime::RuntimeError>> {
        let mut v = try_zeros::<T>(dims, n)?;
        self.copy_to(bytes_of_mut(&mut v))?;
        Ok(Tensor::from_vec(dims, v))
    }
}
