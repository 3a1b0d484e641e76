//! The StableHLO emitter: lowers loopvm bytecode to a StableHLO module in
//! MLIR text form, for the XLA tier.
//!
//! Two entry points share one code path: [`emit_function`] lowers a whole
//! function (as `func.func public @main`), [`emit_loop`] lowers one loop
//! instruction (a module whose `main` takes the loop's
//! [`region_inputs`](loopvm_vm::region_inputs) and returns its results).
//! Both are given concrete argument types; the emitter infers every other
//! shape itself with the kernels' rules, so a shape error, a dtype error or an
//! op that does not lower (the opcode table's `XLA` flag, e.g. `print`) is an
//! [`EmitError`] naming the op and the reason, never a panic. The caller then
//! runs that code in the interpreter instead.
//!
//! Rules the output follows:
//! - every `fori_loop`, `while_loop` and `scan` becomes one rolled
//!   `stablehlo.while` whose body is emitted once, or, partially unrolled by
//!   `k` ([`UnrollOptions`], see [`policy`]), a `stablehlo.while` whose body
//!   holds `k` copies plus, where the trip count may not be a multiple of
//!   `k`, a rolled remainder `stablehlo.while` (body once): the body is
//!   emitted `k + 1` times at most, whatever the trip count (never fully
//!   unrolled, unless [`EmitOptions::unroll_all`] asks for that form for
//!   comparison); a comment `// loopvm: <loop> unroll <k> (...)` precedes
//!   each loop; values a body captures from outside enter the while as
//!   loop-invariant operands, so the regions never capture implicitly;
//! - `fori_loop` carries `(i, hi, carry..., invariants...)` with the
//!   condition `i < hi`; `scan` carries a counter, its carry, the
//!   preallocated `ys` (written with `dynamic_update_slice`), its `xs` (read
//!   with `dynamic_slice`) and the invariants;
//! - `if` becomes `stablehlo.if`; calls are inlined;
//! - the interpreter's semantics are reproduced exactly for integers and
//!   bools (see `docs/semantics.md`): integer `x / 0 = -1`, `x % 0 = x`,
//!   `MIN / -1 = MIN` (with the divisor guarded, so that XLA's constant
//!   folder never divides by zero), integer powers with negative exponents,
//!   saturating float→int casts with NaN→0, dynamic indices that wrap a
//!   negative index once and then clamp, NaN-propagating `maximum` /
//!   `minimum` and reductions, and `argmax` returning the first maximum with
//!   NaN as the maximum;
//! - constants are exact: integers in decimal, floats as decimals only when
//!   integral, otherwise as their bit patterns in hex.

mod emit;
pub mod policy;

pub use emit::shard::{gspmd_sharding, Mesh, MeshAxis, ShardDialect, ShardSpec};
pub use policy::{LoopUnroll, Platform, UnrollOptions, UnrollWhy};

use loopvm_runtime::{DType, Tensor};
use loopvm_vm::{Inst, Module};
use std::fmt;

pub use loopvm_vm::FuncId;

/// The concrete type of one value: its dtype and shape.
pub type ValueType = (DType, Vec<usize>);

/// Options of the emitter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmitOptions {
    /// Unroll every `fori_loop` whose bounds are constants and every `scan`
    /// fully instead of emitting a `stablehlo.while` (for comparison with the
    /// rolled form only: the text grows with the trip count). Loops whose
    /// trip count is not static stay rolled.
    pub unroll_all: bool,
    /// Count loop iterations (`--max-steps`, `--timeout`): the module takes
    /// one more parameter, `tensor<i64>`, the iterations it may run, and
    /// returns one more result, what is left of them, or a negative value
    /// when a loop wanted to run further (the run is over its limit). Every
    /// loop's condition also tests the fuel and every iteration takes one;
    /// loops are not unrolled.
    pub metered: bool,
    /// Lower `print` to `stablehlo.custom_call @loopvm_print` (with
    /// `has_side_effect`), for a back end that registered the host handler
    /// (`xla::host_print`); otherwise `print` does not lower.
    pub host_print: bool,
    /// The device mesh the module is partitioned over (issue 20); on more
    /// than one device, `main`'s parameters and results carry sharding
    /// annotations (parameters as [`lower_function_sharded`] is given,
    /// results replicated) and `shard` constraints lower to the
    /// partitioner's constraint op. One device (the default): no
    /// annotations, `shard` is the identity.
    pub mesh: Mesh,
    /// Which annotations: GSPMD (`mhlo.sharding`) or Shardy (`sdy`).
    pub shard_dialect: ShardDialect,
}

/// Why some code does not lower to StableHLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmitError {
    /// The op (mnemonic, with its sub-op where it has one, e.g. `binary div`).
    pub op: String,
    /// The reason.
    pub message: String,
}

impl EmitError {
    pub(crate) fn new(op: impl Into<String>, message: impl Into<String>) -> EmitError {
        EmitError { op: op.into(), message: message.into() }
    }
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` does not lower to StableHLO: {}", self.op, self.message)
    }
}

impl std::error::Error for EmitError {}

/// A lowered module: its text and facts about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lowered {
    /// The StableHLO module in MLIR text form.
    pub text: String,
    /// The types of `main`'s parameters, in order.
    pub params: Vec<ValueType>,
    /// The types of `main`'s results, in order.
    pub results: Vec<ValueType>,
    /// How many `stablehlo.while` ops the module holds.
    pub whiles: usize,
    /// The unroll factor chosen for each loop, in the order emitted.
    pub unrolls: Vec<LoopUnroll>,
    /// Bytes of the largest value the module computes, or of all its
    /// results if more (saturating): what `--max-memory` checks before it runs.
    pub peak_bytes: usize,
    /// The layout of each result on [`EmitOptions::mesh`]: split where the
    /// result is made by a `shard` constraint, else `None` (replicated).
    pub result_shards: Vec<Option<ShardSpec>>,
}

impl Lowered {
    /// One line naming each loop's unroll factor (for `--stats`), e.g.
    /// `scan unroll 16 (gpu policy, body 12 ops, 1000 iterations)`; empty
    /// without loops.
    pub fn unroll_summary(&self) -> String {
        self.unrolls.iter().map(|u| u.to_string()).collect::<Vec<_>>().join("; ")
    }
}

/// Lowers function `f` of `m` for arguments of the given types (its
/// flattened parameters) to a module whose `main` takes those arguments and
/// returns the function's flattened results. Loops are unrolled as the
/// CPU's policy says (the program's own `unroll:`), or as `LOOPVM_UNROLL`
/// says ([`UnrollOptions::with_env`]).
pub fn lower_function(m: &Module, f: FuncId, args: &[ValueType], opts: &EmitOptions) -> Result<Lowered, EmitError> {
    lower_function_with(m, f, args, opts, &UnrollOptions::default().with_env())
}

/// [`lower_function`] with the given unroll options.
pub fn lower_function_with(
    m: &Module,
    f: FuncId,
    args: &[ValueType],
    opts: &EmitOptions,
    unroll: &UnrollOptions,
) -> Result<Lowered, EmitError> {
    on_big_stack(|| emit::lower_function(m, f, args, opts, unroll, &[]))
}

/// [`lower_function_with`] with `main`'s parameters laid out on
/// [`EmitOptions::mesh`] as `shards` says (one entry per parameter, `None`
/// or missing: replicated).
pub fn lower_function_sharded(
    m: &Module,
    f: FuncId,
    args: &[ValueType],
    opts: &EmitOptions,
    unroll: &UnrollOptions,
    shards: &[Option<ShardSpec>],
) -> Result<Lowered, EmitError> {
    on_big_stack(|| emit::lower_function(m, f, args, opts, unroll, shards))
}

/// Lowers the loop instruction `inst` (a `Fori`, `While` or `Scan` of
/// function `f`) to a module whose `main` takes the loop's region inputs
/// ([`loopvm_vm::region_inputs`], in that order, of the given types) and
/// returns the values of the loop's `dsts` (unrolled as for
/// [`lower_function`]).
pub fn lower_loop(
    m: &Module,
    f: FuncId,
    inst: &Inst,
    inputs: &[ValueType],
    opts: &EmitOptions,
) -> Result<Lowered, EmitError> {
    lower_loop_with(m, f, inst, inputs, opts, &UnrollOptions::default().with_env())
}

/// [`lower_loop`] with the given unroll options.
pub fn lower_loop_with(
    m: &Module,
    f: FuncId,
    inst: &Inst,
    inputs: &[ValueType],
    opts: &EmitOptions,
    unroll: &UnrollOptions,
) -> Result<Lowered, EmitError> {
    on_big_stack(|| emit::lower_loop(m, f, inst, inputs, opts, unroll))
}

/// Stack for the emitter's recursion over nested regions and calls (the
/// verifier allows 256 levels of each; only the pages used are committed).
const EMIT_STACK: usize = 512 << 20;

/// Runs `f` on a thread with a stack deep enough for any nesting the
/// verifier accepts (or here, when no thread can be started).
fn on_big_stack<R: Send>(f: impl FnOnce() -> Result<R, EmitError> + Send) -> Result<R, EmitError> {
    let cell = std::sync::Mutex::new(Some(f));
    let run = || cell.lock().ok().and_then(|mut g| g.take()).map(|f| f());
    std::thread::scope(|s| {
        match std::thread::Builder::new().name("loopvm-emit".into()).stack_size(EMIT_STACK).spawn_scoped(s, run) {
            Ok(h) => h.join().ok().flatten(),
            Err(_) => run(),
        }
    })
    .unwrap_or_else(|| Err(EmitError::new("emitter", "internal error: the emitter panicked")))
}
/// [`lower_function`], the text only.
pub fn emit_function(m: &Module, f: FuncId, args: &[ValueType], opts: &EmitOptions) -> Result<String, EmitError> {
    lower_function(m, f, args, opts).map(|l| l.text)
}

/// [`lower_loop`], the text only.
pub fn emit_loop(
    m: &Module,
    f: FuncId,
    inst: &Inst,
    inputs: &[ValueType],
    opts: &EmitOptions,
) -> Result<String, EmitError> {
    lower_loop(m, f, inst, inputs, opts).map(|l| l.text)
}

/// The concrete types of function `f`'s flattened parameters when none of
/// them has a shape variable (so that `loopvm emit` can lower a `main`
/// without arguments); an error naming the first parameter that has one.
pub fn param_types(m: &Module, f: FuncId) -> Result<Vec<ValueType>, EmitError> {
    let func = m.funcs.get(f.0 as usize).ok_or_else(|| EmitError::new("function", format!("no function f{}", f.0)))?;
    let mut out = Vec::new();
    for p in &func.params {
        for t in p.ty.leaves() {
            let dims = t
                .dims
                .iter()
                .map(|d| match d {
                    loopvm_vm::Dim::Fixed(n) => usize::try_from(*n).ok(),
                    loopvm_vm::Dim::Var(_) => None,
                })
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    EmitError::new(
                        "function",
                        format!(
                            "parameter `{}` of `{}` has type {}: give arguments to fix its shape",
                            p.name,
                            func.name,
                            t.display(&m.symbols)
                        ),
                    )
                })?;
            out.push((t.dtype, dims));
        }
    }
    Ok(out)
}

/// The type of a tensor, as the emitter takes it.
pub fn value_type(t: &Tensor) -> ValueType {
    (t.dtype(), t.shape().to_vec())
}

/// The StableHLO tensor type of a value type, e.g. `tensor<2x3xf32>`.
pub fn tensor_type(dtype: DType, shape: &[usize]) -> String {
    emit::tensor_type(dtype, shape)
}
