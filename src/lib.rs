//! loopvm: tensor loop programs compiled as loops.
//!
//! A `.lb` program is compiled by the frontend into bytecode, which the
//! interpreter runs op by op (the reference semantics); hot loops go to the
//! JIT tiers. This crate is the embedding API and the `loopvm` command line.
//!
//! ```
//! use loopvm::{Program, RunConfig, Value};
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
pub mod fuzz;
pub mod heap;
mod program;
mod value;

pub use args::{parse_arg_literal, parse_args};
pub use error::{Error, ErrorKind};
pub use loopvm_runtime::{DType, Element, RuntimeError, RuntimeErrorKind, Tensor};
pub use loopvm_vm::{BlockId, ExecError, Fallback, FuncId, LoopStats, Module};
pub use program::{LoopReport, Program, RunConfig, RunOutput, Tier, TierFallback};
pub use value::Value;
