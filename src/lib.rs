//! loopvm: tensor loop programs compiled as loops.
//!
//! A `.lb` program is compiled by the frontend into bytecode, which the
//! interpreter runs op by op (the reference semantics); hot loops go to the
//! JIT tiers. This crate is the embedding API (re-exported from
//! `loopvm-api`, `api/`) and the `loopvm` command line (whose `fuzz`
//! command is the `loopvm-fuzzgen` crate, `fuzzgen/`).
//!
//! ```
//! use loopvm::{Program, RunConfig, Value};
//! let src = "fn main() -> i32[1] { fori_loop(0, 10, |i, acc| acc + ones(i32, [1]), zeros(i32, [1])) }";
//! let prog = Program::from_source(src, "ten.lb").unwrap();
//! let out = prog.run(&[], &RunConfig::default()).unwrap();
//! assert_eq!(out.value.to_string(), "i32[1] [10]");
//! ```

#![deny(missing_docs)]

pub use loopvm_api::{diff, embed, heap, shard};
pub use loopvm_api::{
    parse_arg_literal, parse_args, BlockId, DType, Element, Error, ErrorKind, ExecError, Fallback, FuncId, LoopReport,
    LoopStats, Mesh, MeshAxis, Module, Program, RunConfig, RunOutput, RuntimeError, RuntimeErrorKind, ShardArg,
    ShardSpec, Tensor, Tier, TierFallback, Value,
};
