//! loopvm's bytecode layer: the opcode table ([`for_each_op!`]), the module
//! format, the verifier, the disassembler, the eager interpreter and the
//! loop profiler.
//!
//! Bytecode is structured: a function is a set of blocks, and `if` and the
//! loops (`fori_loop`, `while_loop`, `scan`) are single instructions that own
//! their blocks. A loop's whole state is its carry, so a back end can take
//! over a running loop at any iteration boundary.

pub mod backend;
pub mod codec;
mod dis;
pub mod error;
pub mod inst;
pub mod interp;
pub mod meter;
pub mod module;
pub mod op;
pub mod operand;
mod sblock;
mod value;
mod verify;

pub use backend::{region_inputs, Backend, Fallback, LoopSite, LoopState, RESUME_INTERVAL};
pub use dis::disassemble;
pub use error::{DecodeError, ExecError, VerifyError};
pub use inst::{Inst, Opcode};
pub use interp::{print_line, write_print_line, Interpreter, LoopStats, Profile, RunOptions};
pub use meter::Meter;
pub use module::{Block, Dim, Func, Module, Param, TensorType, TypeTree};
pub use op::{OpFlags, OpInfo};
pub use operand::{Axis, BlockId, ConstId, Dims, DotDims, FuncId, OptAxes, OptAxis, OptLen, Reg, RegList, Slices};
pub use verify::verify;
