//! Conveniences for host applications: argument tensors from slices, `Vec`s,
//! raw bytes and `.npy`; typed access to results; the functions a program
//! offers and their signatures.
//!
//! ```
//! use loopvm_api::{embed, Program, RunConfig};
//! let src = "fn main(xs: f32[T, 2], k: f32) -> (f32[2], f32[T, 2]) {
//!     scan(|c, x| (c * k + x, c * k + x), zeros(f32, [2]), xs)
//! }";
//! let prog = Program::from_source(src, "decay.lb")?;
//! assert_eq!(prog.signature("main")?, "fn main(xs: f32[T, 2], k: f32) -> (f32[2], f32[T, 2])");
//! let xs = embed::tensor(&[3, 2], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let k = embed::tensor(&[], &[0.5f32])?;
//! let out = prog.call("main", &[xs, k], &RunConfig::default())?;
//! assert_eq!(out.get::<f32>(0)?, &[6.75, 8.5]);
//! assert_eq!(out.tensors()[1].shape(), &[3, 2]);
//! assert!(out.get::<i32>(0).is_err()); // the wrong dtype is an error, not a panic
//! # Ok::<(), loopvm_api::Error>(())
//! ```

use crate::error::Error;
use crate::program::{Program, RunOutput};
use crate::value::Value;
use loopvm_runtime::{DType, Element, Tensor};
use loopvm_vm::TypeTree;
use std::path::Path;

/// A tensor of `shape` holding a copy of `data` (row-major). An empty
/// `shape` is a scalar (one element).
pub fn tensor<T: Element>(shape: &[usize], data: &[T]) -> Result<Tensor, Error> {
    tensor_from_vec(shape, data.to_vec())
}

/// A tensor of `shape` that takes `data` (row-major) without copying it.
pub fn tensor_from_vec<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Tensor, Error> {
    Tensor::from_vec(shape, data).map_err(|e| Error::arg(e.to_string()))
}

/// A tensor of `dtype` and `shape` from native-endian, row-major bytes (the
/// layout of a C array or a C-contiguous NumPy array; `bool` is one byte,
/// 0 or 1). The length must match the shape exactly.
pub fn tensor_from_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, Error> {
    let n = loopvm_runtime::checked_numel(shape).map_err(|e| Error::arg(e.to_string()))?;
    let want =
        n.checked_mul(dtype.size_in_bytes()).ok_or_else(|| Error::arg(format!("shape {shape:?} is too large")))?;
    if bytes.len() != want {
        return Err(Error::arg(format!("{dtype}{shape:?} needs {want} bytes, got {}", bytes.len())));
    }
    fn pod<T: Element, const N: usize>(shape: &[usize], bytes: &[u8], f: fn([u8; N]) -> T) -> Result<Tensor, Error> {
        let v: Vec<T> = bytes.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect();
        tensor_from_vec(shape, v)
    }
    match dtype {
        DType::Bool => {
            if let Some(i) = bytes.iter().position(|&b| b > 1) {
                return Err(Error::arg(format!("bool element {i} is {}, not 0 or 1", bytes[i])));
            }
            tensor_from_vec(shape, bytes.iter().map(|&b| b == 1).collect::<Vec<bool>>())
        }
        DType::I32 => pod(shape, bytes, i32::from_ne_bytes),
        DType::I64 => pod(shape, bytes, i64::from_ne_bytes),
        DType::U32 => pod(shape, bytes, u32::from_ne_bytes),
        DType::U8 => pod(shape, bytes, u8::from_ne_bytes),
        DType::F32 => pod(shape, bytes, f32::from_ne_bytes),
        DType::F64 => pod(shape, bytes, f64::from_ne_bytes),
        DType::BF16 => pod(shape, bytes, |b| loopvm_runtime::bf16::from_bits(u16::from_ne_bytes(b))),
        DType::F16 => pod(shape, bytes, |b| loopvm_runtime::f16::from_bits(u16::from_ne_bytes(b))),
    }
}

/// Reads a `.npy` file (a little-endian bool, i32, i64, u32, u8, f32 or
/// f64 array in C order).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, Error> {
    let path = path.as_ref();
    loopvm_runtime::npy::read_file(path).map_err(|e| Error::io(format!("{}: {}", path.display(), e.message)))
}

/// Parses the bytes of a `.npy` file.
pub fn npy_from_bytes(bytes: &[u8]) -> Result<Tensor, Error> {
    loopvm_runtime::npy::read(bytes).map_err(|e| Error::arg(format!(".npy: {}", e.message)))
}

/// Writes a tensor as a `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, t: &Tensor) -> Result<(), Error> {
    let path = path.as_ref();
    loopvm_runtime::npy::write_file(path, t).map_err(|e| Error::io(format!("{}: {}", path.display(), e.message)))
}

/// The bytes of a `.npy` file holding `t`.
pub fn npy_to_bytes(t: &Tensor) -> Result<Vec<u8>, Error> {
    loopvm_runtime::npy::write(t).map_err(|e| Error::io(format!(".npy: {}", e.message)))
}

impl Value {
    /// The tensors, depth-first, owned (cheap: buffers are shared).
    pub fn into_leaves(self) -> Vec<Tensor> {
        match self {
            Value::Tensor(t) => vec![t],
            Value::Tuple(vs) => vs.into_iter().flat_map(Value::into_leaves).collect(),
        }
    }
}

impl RunOutput {
    /// The result's tensors, flattened depth-first (a tuple `(a, (b, c))`
    /// gives `[a, b, c]`).
    pub fn tensors(&self) -> Vec<&Tensor> {
        self.value.leaves()
    }

    /// The elements of result tensor `index` (depth-first), as `T`. An error
    /// when there is no such tensor or its dtype is not `T`.
    pub fn get<T: Element>(&self, index: usize) -> Result<&[T], Error> {
        let leaves = self.value.leaves();
        let n = leaves.len();
        let t = leaves
            .into_iter()
            .nth(index)
            .ok_or_else(|| Error::arg(format!("the result has {n} tensors; there is no tensor {index}")))?;
        t.as_slice::<T>()
            .ok_or_else(|| Error::arg(format!("result tensor {index} is {}, not {}", t.type_string(), T::DTYPE)))
    }

    /// The single element of result tensor `index`, which must hold one
    /// element of dtype `T`.
    pub fn scalar<T: Element>(&self, index: usize) -> Result<T, Error> {
        match self.get::<T>(index)? {
            [x] => Ok(*x),
            xs => Err(Error::arg(format!("result tensor {index} has {} elements, not 1", xs.len()))),
        }
    }
}

impl Program {
    /// The names of the program's functions (`main` and the others that can
    /// be [called](Program::call)), in module order.
    pub fn function_names(&self) -> Vec<&str> {
        self.module().funcs.iter().map(|f| f.name.as_str()).collect()
    }

    /// The signature of function `name` as source writes it, e.g.
    /// `fn main(xs: f32[T, 3], decay: f32) -> (f32[3], f32[T, 3])`. Calls take
    /// its parameters flattened (a tuple parameter as its tensors, depth-first).
    pub fn signature(&self, name: &str) -> Result<String, Error> {
        let m = self.module();
        let f = m.func_by_name(name).ok_or_else(|| Error::arg(format!("no function named `{name}`")))?;
        let f = m.func(f);
        let params: Vec<String> = f.params.iter().map(|p| format!("{}: {}", p.name, show(&p.ty, &m.symbols))).collect();
        Ok(format!("fn {}({}) -> {}", f.name, params.join(", "), show(&f.result, &m.symbols)))
    }
}

fn show(t: &TypeTree, symbols: &[String]) -> String {
    match t {
        TypeTree::Tensor(x) => x.display(symbols),
        TypeTree::Tuple(ts) => {
            let inner: Vec<String> = ts.iter().map(|t| show(t, symbols)).collect();
            if inner.len() == 1 {
                format!("({},)", inner[0])
            } else {
                format!("({})", inner.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_checks() {
        let xs = [1.5f32, -2.0, 3.0, 4.25];
        let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_ne_bytes()).collect();
        let t = tensor_from_bytes(DType::F32, &[2, 2], &bytes).unwrap();
        assert_eq!(t.as_slice::<f32>(), Some(&xs[..]));
        assert!(tensor_from_bytes(DType::F32, &[2, 2], &bytes[..15]).is_err());
        assert!(tensor_from_bytes(DType::Bool, &[2], &[1, 2]).is_err());
        let b = tensor_from_bytes(DType::Bool, &[2], &[1, 0]).unwrap();
        assert_eq!(b.as_slice::<bool>(), Some(&[true, false][..]));
    }

    #[test]
    fn npy_round_trip() {
        let t = tensor(&[2, 3], &[1i64, 2, 3, 4, 5, 6]).unwrap();
        let back = npy_from_bytes(&npy_to_bytes(&t).unwrap()).unwrap();
        assert_eq!(back.shape(), &[2, 3]);
        assert_eq!(back.as_slice::<i64>(), t.as_slice::<i64>());
    }

    #[test]
    fn typed_results_and_signatures() {
        let p =
            Program::from_source("fn main(n: i32) -> (i32, (f32[2],)) { (n, (zeros(f32, [2]),)) }", "t.lb").unwrap();
        assert_eq!(p.function_names(), vec!["main"]);
        assert_eq!(p.signature("main").unwrap(), "fn main(n: i32) -> (i32, (f32[2],))");
        assert!(p.signature("nope").is_err());
        let out = p.call("main", &[Tensor::scalar(7i32)], &Default::default()).unwrap();
        assert_eq!(out.scalar::<i32>(0).unwrap(), 7);
        assert_eq!(out.get::<f32>(1).unwrap(), &[0.0, 0.0]);
        assert!(out.scalar::<f32>(1).is_err());
        assert!(out.get::<f32>(2).is_err());
        assert_eq!(out.value.clone().into_leaves().len(), 2);
    }
}
