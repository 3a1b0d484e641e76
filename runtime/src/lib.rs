//! loopvm's runtime: [`Tensor`] (a dtype, a static shape and a
//! reference-counted, copy-on-write, row-major buffer), the kernels the
//! interpreter calls, and `.npy` input/output.
//!
//! Kernels write into an `&mut Option<Tensor>` output slot and reuse its
//! buffer when they hold the only reference to it, so a loop whose shapes do
//! not change allocates nothing per iteration.
//!
//! ```
//! use loopvm_runtime::{kernels, BinaryOp, Tensor};
//! let a = Tensor::from_vec(&[2], vec![1.0f32, 2.0]).unwrap();
//! let b = Tensor::scalar(10.0f32);
//! let mut out = None;
//! kernels::binary(BinaryOp::Add, &a, &b, &mut out).unwrap();
//! assert_eq!(out.unwrap().as_slice::<f32>(), Some(&[11.0f32, 12.0][..]));
//! ```

pub mod alloc;
pub mod compare;
mod display;
mod dtype;
mod error;
pub mod fpmode;
pub mod kernels;
pub mod npy;
mod ops;
pub mod rules;
mod tensor;

pub use alloc::max_tensor_bytes;
pub use dtype::DType;
pub use error::{OutOfMemory, RuntimeError, RuntimeErrorKind};
pub use half::{bf16, f16};
pub use ops::{Accepts, BinaryOp, ReduceOp, UnaryOp, UpdateMode};
pub use tensor::{checked_numel, out_buffer, set_scalar, Buffer, Element, Shape, Tensor, MAX_NUMEL};
