//! The XLA tier's link to XLA: a binding of the PJRT C API ([`pjrt`]) and
//! discovery and installation of PJRT plugins ([`plugin`]). Host data moves
//! as raw bytes ([`Client::buffer_from_host`], [`Buffer::to_host`]) or as
//! loopvm tensors ([`Client::buffer_from_tensor`], [`Buffer::to_tensor`]).
//!
//! ```no_run
//! use loopvm_jit::xla::{plugin, Client, ElementType, Plugin};
//! # fn main() -> Result<(), loopvm_jit::xla::XlaError> {
//! let plugin = Plugin::load(plugin::find_or_install_cpu()?)?;
//! let client = Client::new(plugin)?;
//! let exe = client.compile(
//!     "module @m { func.func public @main(%x: tensor<f32>) -> tensor<f32> {
//!        %0 = stablehlo.add %x, %x : tensor<f32>
//!        return %0 : tensor<f32> } }",
//! )?;
//! let x = client.buffer_from_host(&2.0f32.to_ne_bytes(), &[], ElementType::F32)?;
//! let out = exe.execute(&[&x])?;
//! assert_eq!(out[0].to_host()?, 4.0f32.to_ne_bytes());
//! # Ok(()) }
//! ```

pub mod disk_cache;
mod error;
pub(crate) mod ffi;
pub mod host_print;
pub mod pjrt;
pub mod plugin;
mod tensor;
pub mod tier;

pub use disk_cache::DiskCache;
pub use error::{ErrorCode, XlaError};
pub use ffi::{HEADER_API_MAJOR, HEADER_API_MINOR, STRUCT_SIZES};
pub use pjrt::{ApiVersion, Buffer, Client, DeviceInfo, ElementType, Executable, Plugin};
pub use plugin::{PluginKind, PluginSource};

/// Result type of the XLA tier.
pub type Result<T, E = XlaError> = std::result::Result<T, E>;
