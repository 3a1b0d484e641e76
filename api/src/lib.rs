//! The embedding API of loopvm: a `.lb` program compiled by the frontend
//! into bytecode ([`Program`]), run on a tier ([`RunConfig`], [`Tier`]):
//! the interpreter (the reference semantics) or the JIT tiers.
//!
//! The `loopvm` crate re-exports all of it (`loopvm::Program`, ...) and adds
//! the command line; this crate is separate so that crates under the
//! command line (the fuzzer, `loopvm-fuzzgen`) and the C API (`loopvm-capi`)
//! can use the API without depending on the command line.
//!
//! ```
//! use loopvm_api::{Program, RunConfig, Value};
//! let src = "fn main() -> i32[1] { fori_loop(0, 10, |i, acc| acc + ones(i32, [1]), zeros(i32, [1])) }";
//! let prog = Program::from_source(src, "ten.lb").unwrap();
//! let out = prog.run(&[], &RunConfig::default()).unwrap();
//! assert_eq!(out.value.to_string(), "i32[1] [10]");
//! ```

#![deny(missing_docs)]

mod args;
pub mod diff;
pub mod embed;
mod error;
pub mod heap;
mod program;
pub mod shard;
mod value;

pub use args::{parse_arg_literal, parse_args};
pub use error::{Error, ErrorKind};
pub use loopvm_runtime::{DType, Element, RuntimeError, RuntimeErrorKind, Tensor};
pub use loopvm_vm::{BlockId, ExecError, Fallback, FuncId, LoopStats, Module};
pub use program::{LoopReport, Program, RunConfig, RunOutput, Tier, TierFallback};
pub use shard::{Mesh, MeshAxis, ShardArg, ShardSpec};
pub use value::Value;
