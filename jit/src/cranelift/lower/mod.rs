//! Lowering of a loop region from bytecode to Cranelift IR.
//!
//! The region is one loop instruction of a function with every block it
//! owns, transitively (nested loops, `if`s), and the bodies of the functions
//! it calls, inlined. It becomes one function
//!
//! ```text
//! fn(ins: *const *const u8, carry: *const *const u8, outs: *const *mut u8, counters: *mut u64, start: i64,
//!    meter: *mut NativeMeter)
//! ```
//!
//! - `ins[k]` points at the elements of region input `k`
//!   ([`loopvm_vm::region_inputs`] order); inputs of at most [`MAX_ELEMS`]
//!   elements are loaded into registers once, in the entry block, larger ones
//!   stay in memory (read by dynamic indexing and by `scan` rows);
//! - `carry[k]` points at the carry the loop starts from (its `init`, or the
//!   interpreter's carry when a running loop is taken over);
//! - `start` is the number of iterations already run (`fori_loop`'s counter
//!   starts at `lo + start`, `scan`'s row at `start`);
//! - `outs[k]` receives the loop's results: the final carry, then `scan`'s
//!   `ys`, which are written one row per iteration;
//! - `counters[j]` is incremented by the iterations run by the region's
//!   `j`-th loop ([`Lowered::loops`]; 0 is the region's own loop);
//! - `meter` is read only by *metered* code (compiled under `--max-steps` or
//!   `--timeout`): it holds the iterations the code may run (`fuel`, at
//!   offset 0). Every iteration of every loop takes one; when none is left
//!   the code calls `libcalls::refuel`, which grants more or stops the run
//!   (the step limit is reached, or the deadline has passed), and the code
//!   then returns at once. On a normal return it writes the fuel left.
//!
//! `meter` also carries the address of the code's scratch memory (read once,
//! on entry), where values of more than [`MAX_ELEMS`] elements live
//! (`buffers.rs`).
//!
//! Every value is a static-shape tensor; one of at most [`MAX_ELEMS`]
//! elements is one Cranelift value per element (a larger one is in memory:
//! [`Repr::Mem`], computed by buffer kernels); elementwise ops, broadcasting, shape ops,
//! static slices and reductions are resolved at compile time, dynamic indices
//! become clamped offsets and `select` chains. A loop is a `header` block that
//! tests the condition, a `body` block that jumps back to it and an `exit`
//! block; carries are `Variable`s, so the SSA form comes from
//! `cranelift_frontend`.

use super::{libcalls, unsupported, CompileError};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    self, types, AbiParam, InstBuilder, InstructionData, MemFlagsData, StackSlotData, StackSlotKind, Type, Value,
    ValueDef,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use loopvm_runtime::kernels::native::BufferKernel;
use loopvm_runtime::kernels::SliceSpec;
use loopvm_runtime::rules::{self, broadcasts_to};
use loopvm_runtime::{BinaryOp, Buffer, DType, ReduceOp, Tensor, UnaryOp, UpdateMode};
use loopvm_vm::{BlockId, Func, FuncId, Inst, Module, OpFlags, Opcode, Reg};
use std::collections::HashSet;

mod buffers;
mod control;
mod gather;
mod scalar;
mod tensor;
pub(crate) use control::verify;

/// The most elements a value may have to live in registers.
pub const MAX_ELEMS: usize = 16;

/// How deeply calls are inlined into a region.
const MAX_INLINE_DEPTH: usize = 8;

/// `true` when the Cranelift tier lowers `op`: the opcode table's `JIT` flag.
pub(crate) fn jit_lowerable(op: Opcode) -> bool {
    op.info().flags.contains(OpFlags::JIT)
}

/// A dtype and a static shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TType {
    /// The element type.
    pub dtype: DType,
    /// The dimensions.
    pub shape: Vec<usize>,
}

impl TType {
    /// The type of `t`.
    pub(crate) fn of(t: &Tensor) -> TType {
        TType { dtype: t.dtype(), shape: t.shape().to_vec() }
    }
    /// `true` when `t` has this type.
    pub(crate) fn matches(&self, t: &Tensor) -> bool {
        self.dtype == t.dtype() && self.shape == t.shape()
    }
    /// The element count.
    pub(crate) fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// `f32[2, 3]`.
    pub(crate) fn display(&self) -> String {
        type_string(self.dtype, &self.shape)
    }
}

fn type_string(dtype: DType, shape: &[usize]) -> String {
    if shape.is_empty() {
        dtype.as_str().to_string()
    } else {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        format!("{}[{}]", dtype.as_str(), dims.join(", "))
    }
}

/// Declines a value of a half-float dtype (`bf16`, `f16`): Cranelift has
/// no lowering for them, so a loop holding one stays in the interpreter
/// (`--stats` gives this reason).
pub(crate) fn no_half(d: DType) -> Result<(), CompileError> {
    if d.is_half() {
        return unsupported!("{d} values (half floats run in the interpreter)");
    }
    Ok(())
}

/// The Cranelift type of one element (a half float's 16 bits; such values
/// are declined by [`no_half`] before any code uses them).
pub(crate) fn clif_type(d: DType) -> Type {
    match d {
        DType::BF16 | DType::F16 => types::I16,
        DType::Bool | DType::U8 => types::I8,
        DType::I32 | DType::U32 => types::I32,
        DType::I64 => types::I64,
        DType::F32 => types::F32,
        DType::F64 => types::F64,
    }
}

/// What lowering found out about a region besides its code.
pub(crate) struct Lowered {
    /// The results' types (carry, then `ys`).
    pub outs: Vec<TType>,
    /// The loops of the region, as (function, body block); index 0 is the region's own.
    pub loops: Vec<(FuncId, BlockId)>,
    /// Constants the code reads by address: kept alive as long as the code.
    pub keep: Vec<Tensor>,
    /// The operand types of each `print` in the region, by site number
    /// (what `libcalls::print` is told).
    pub prints: Vec<Vec<TType>>,
    /// The bytes of scratch memory the code needs (`NativeMeter::scratch`):
    /// the buffers of its values of more than [`MAX_ELEMS`] elements.
    pub scratch_bytes: usize,
    /// The buffer kernels the code calls by address: kept alive as long as
    /// the code.
    // Boxed: the code holds their addresses.
    #[allow(clippy::vec_box)]
    pub kernels: Vec<Box<BufferKernel>>,
}

/// What to lower: a loop instruction and the types it runs with.
pub(crate) struct Region<'a> {
    /// The module.
    pub module: &'a Module,
    /// The function holding the loop.
    pub func_id: FuncId,
    /// The loop instruction.
    pub inst: &'a Inst,
    /// The registers the region reads from outside, in `ins` order.
    pub input_regs: &'a [Reg],
    /// Their types.
    pub inputs: &'a [TType],
    /// The types of the carry.
    pub carry: &'a [TType],
    /// Emit a deliberately ill-typed instruction (tests of the verifier path).
    pub fault: bool,
    /// Keep a listing of the optimised IR and the machine code.
    pub listing: bool,
    /// Count iterations against the `meter` argument (see the module docs).
    pub metered: bool,
    /// Values of more than [`MAX_ELEMS`] elements may be computed in
    /// buffers (`buffers.rs`); off, a region needing one is not lowered.
    pub buffers: bool,
}

/// The native signature of every region function.
pub(crate) fn signature(ptr: Type, call_conv: CallConv) -> ir::Signature {
    let mut sig = ir::Signature::new(call_conv);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(ptr));
    }
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(ptr));
    sig
}

/// Builds the body of `func` (whose signature is [`signature`]) for `r`.
pub(crate) fn lower_region(
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    cfg: TargetFrontendConfig,
    call_conv: CallConv,
    r: &Region<'_>,
) -> Result<Lowered, CompileError> {
    let ptr = cfg.pointer_type();
    let f =
        r.module.funcs.get(r.func_id.0 as usize).ok_or_else(|| CompileError::Unsupported("no such function".into()))?;
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (ins, carry, outs, counters, start, meter_ptr) = (p[0], p[1], p[2], p[3], p[4], p[5]);
    let mut lw = Lowerer {
        m: r.module,
        b,
        ptr,
        call_conv,
        counters,
        loops: Vec::new(),
        keep: Vec::new(),
        depth: 0,
        meter: None,
        abort: None,
        meter_ptr,
        prints: Vec::new(),
        scratch_base: meter_ptr,
        scratch_size: 0,
        rw: HashSet::new(),
        owned: HashSet::new(),
        kernels: Vec::new(),
        buffers: r.buffers,
    };
    lw.scratch_base = lw.b.ins().load(ptr, MemFlagsData::trusted(), meter_ptr, libcalls::SCRATCH_OFFSET);
    if r.metered {
        let fuel = lw.b.declare_var(types::I64);
        let f = lw.b.ins().load(types::I64, MemFlagsData::trusted(), meter_ptr, 0);
        lw.b.def_var(fuel, f);
        lw.meter = Some((meter_ptr, fuel));
    }
    for ty in r.inputs.iter().chain(r.carry) {
        no_half(ty.dtype)?;
    }
    let mut env = Env::new(f.num_regs());
    for (k, (reg, ty)) in r.input_regs.iter().zip(r.inputs).enumerate() {
        let p = lw.load_ptr(ins, k);
        let v = if ty.numel() <= MAX_ELEMS {
            let xs = lw.load_elems(ty.dtype, p, 0, ty.numel());
            Val { dtype: ty.dtype, shape: ty.shape.clone(), repr: Repr::Elems(xs) }
        } else {
            Val { dtype: ty.dtype, shape: ty.shape.clone(), repr: Repr::Mem(p) }
        };
        env.set(*reg, v);
    }
    let mut init = Vec::with_capacity(r.carry.len());
    for (k, ty) in r.carry.iter().enumerate() {
        let p = lw.load_ptr(carry, k);
        if ty.numel() > MAX_ELEMS {
            // Copied into the loop's own buffer by `carry_vars`.
            init.push(Val { dtype: ty.dtype, shape: ty.shape.clone(), repr: Repr::Mem(p) });
            continue;
        }
        let xs = lw.load_elems(ty.dtype, p, 0, ty.numel());
        init.push(Val { dtype: ty.dtype, shape: ty.shape.clone(), repr: Repr::Elems(xs) });
    }
    let top = Top { carry: init, start, outs };
    let results = lw.lower_loop(r.func_id, f, &mut env, r.inst, Some(&top))?;
    let mut out_types = Vec::with_capacity(results.len());
    for (k, v) in results.iter().enumerate() {
        out_types.push(TType { dtype: v.dtype, shape: v.shape.clone() });
        match &v.repr {
            Repr::Elems(xs) => {
                let p = lw.load_ptr(outs, k);
                lw.store_elems(v.dtype, p, 0, xs);
            }
            // A carry in a buffer (`scan`'s ys, after the carry, are written
            // in place).
            Repr::Mem(src) if k < r.carry.len() => {
                let (src, p) = (*src, lw.load_ptr(outs, k));
                lw.copy_value(v, p, src);
            }
            Repr::Mem(_) => {}
        }
    }
    if r.fault {
        // An `iadd` of an i32 and an i64: rejected by the verifier.
        let a = lw.iconst(types::I32, 1);
        let c = lw.iconst(types::I64, 1);
        lw.b.ins().iadd(a, c);
    }
    if let Some((mp, fuel)) = lw.meter {
        let f = lw.b.use_var(fuel);
        lw.b.ins().store(MemFlagsData::trusted(), f, mp, 0);
    }
    lw.b.ins().return_(&[]);
    if let Some(abort) = lw.abort {
        // Stopped by the meter: the results are not written; the host
        // reports the limit.
        lw.b.switch_to_block(abort);
        lw.b.ins().return_(&[]);
    }
    lw.b.seal_all_blocks();
    let Lowerer { b, loops, keep, prints, scratch_size, kernels, .. } = lw;
    b.finalize(cfg);
    Ok(Lowered { outs: out_types, loops, keep, prints, scratch_bytes: scratch_size, kernels })
}

/// A value at compile time: a dtype, a static shape and its elements.
#[derive(Clone, Debug)]
struct Val {
    dtype: DType,
    shape: Vec<usize>,
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    /// One Cranelift value per element, row-major.
    Elems(Vec<Value>),
    /// In memory: the address of its first element. A loop-invariant input
    /// or constant (read-only), or a buffer in the code's scratch memory
    /// (the address is in [`Lowerer::rw`]): a value of more than
    /// [`MAX_ELEMS`] elements computed by a buffer kernel, or a loop carry.
    Mem(Value),
}

impl Val {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    fn type_string(&self) -> String {
        type_string(self.dtype, &self.shape)
    }
    fn scalar(dtype: DType, v: Value) -> Val {
        Val { dtype, shape: Vec::new(), repr: Repr::Elems(vec![v]) }
    }
    fn elems(dtype: DType, shape: Vec<usize>, xs: Vec<Value>) -> Val {
        Val { dtype, shape, repr: Repr::Elems(xs) }
    }
}

/// The values of one (inlined) function's registers.
struct Env {
    regs: Vec<Option<Val>>,
}

impl Env {
    fn new(n: usize) -> Env {
        Env { regs: vec![None; n] }
    }
    fn get(&self, r: Reg) -> Result<&Val, CompileError> {
        match self.regs.get(r.0 as usize) {
            Some(Some(v)) => Ok(v),
            _ => unsupported!("register r{} is read before it is written", r.0),
        }
    }
    fn set(&mut self, r: Reg, v: Val) {
        if let Some(s) = self.regs.get_mut(r.0 as usize) {
            *s = Some(v);
        }
    }
}

/// What the region's own loop starts from.
struct Top {
    carry: Vec<Val>,
    start: Value,
    outs: Value,
}

/// The carry of a loop under construction: one `Variable` per element, or,
/// for a value of more than [`MAX_ELEMS`] elements, a buffer of its own.
struct CarryVars {
    dtype: DType,
    shape: Vec<usize>,
    vars: Vec<Variable>,
    buf: Option<Value>,
}

struct Lowerer<'a, 'f> {
    m: &'a Module,
    b: FunctionBuilder<'f>,
    ptr: Type,
    call_conv: CallConv,
    counters: Value,
    loops: Vec<(FuncId, BlockId)>,
    keep: Vec<Tensor>,
    depth: usize,
    /// Metered code: the meter pointer and the fuel variable.
    meter: Option<(Value, Variable)>,
    /// The block that returns when the meter stops the run.
    abort: Option<ir::Block>,
    /// The `meter` argument (also read by `print`).
    meter_ptr: Value,
    /// The operand types of each `print` lowered so far.
    prints: Vec<Vec<TType>>,
    /// The scratch memory's address (read on entry).
    scratch_base: Value,
    /// The scratch bytes handed out so far.
    scratch_size: usize,
    /// Addresses into scratch memory (written while the code runs, so never
    /// loaded from as read-only).
    rw: HashSet<Value>,
    /// Buffers a buffer kernel writes: each belongs to one instruction.
    owned: HashSet<Value>,
    /// [`Region::buffers`].
    buffers: bool,
    /// The buffer kernels called.
    // Boxed: the code holds their addresses.
    #[allow(clippy::vec_box)]
    kernels: Vec<Box<BufferKernel>>,
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// NumPy broadcasting of two shapes ([`rules::broadcast`]), `None` when
/// they do not broadcast or the element count overflows.
fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let out: Vec<usize> = rules::broadcast(a, b).ok()?;
    rules::product(&out)?;
    Some(out)
}

/// The flat index into a tensor of `src` shape of element `flat` of its
/// broadcast to `out`.
fn src_index(src: &[usize], out: &[usize], flat: usize) -> usize {
    let st = strides(src);
    let lead = out.len() - src.len();
    let mut rem = flat;
    let mut idx = 0;
    for ax in (0..out.len()).rev() {
        let o = rem % out[ax].max(1);
        rem /= out[ax].max(1);
        if ax >= lead {
            let s = ax - lead;
            if src[s] != 1 {
                idx += o * st[s];
            }
        }
    }
    idx
}

impl Lowerer<'_, '_> {
    // ---- constants, memory -------------------------------------------------

    fn iconst(&mut self, ty: Type, v: i64) -> Value {
        let v = if ty == types::I64 { v } else { v & ((1i64 << ty.bits()) - 1) };
        self.b.ins().iconst(ty, v)
    }

    fn zero(&mut self, d: DType) -> Value {
        match d {
            DType::F32 => self.b.ins().f32const(0.0),
            DType::F64 => self.b.ins().f64const(0.0),
            _ => self.iconst(clif_type(d), 0),
        }
    }

    /// The integer constant `v` is, if it is one.
    fn const_int(&self, v: Value) -> Option<i64> {
        let dfg = &self.b.func.dfg;
        let ValueDef::Result(inst, _) = dfg.value_def(v) else { return None };
        match dfg.insts[inst] {
            InstructionData::UnaryImm { opcode: ir::Opcode::Iconst, imm } => {
                let raw = imm.bits();
                Some(match dfg.value_type(v) {
                    types::I8 => raw as i8 as i64,
                    types::I32 => raw as i32 as i64,
                    _ => raw,
                })
            }
            _ => None,
        }
    }

    /// For `x % 2^k` compared with 0 (either way round): `(x, 2^k - 1)`, so
    /// the test becomes `x & (2^k - 1)` against 0 (the remainder is zero
    /// exactly when the low bits are, whatever the sign). Example: the
    /// parity test `x % 2 == 0` becomes `x & 1 == 0`.
    fn is_rem_pow2_test(&self, x: Value, y: Value) -> Option<(Value, i64)> {
        let (rem, zero) = if self.const_int(y) == Some(0) { (x, y) } else { (y, x) };
        if self.const_int(zero) != Some(0) {
            return None;
        }
        let dfg = &self.b.func.dfg;
        let ValueDef::Result(inst, _) = dfg.value_def(rem) else { return None };
        match dfg.insts[inst] {
            InstructionData::Binary { opcode: ir::Opcode::Srem, args: [a, d] } => {
                let d = self.const_int(d)?;
                (d > 0 && d & (d - 1) == 0).then_some((a, d - 1))
            }
            _ => None,
        }
    }

    fn load_ptr(&mut self, base: Value, k: usize) -> Value {
        let off = (k * self.ptr.bytes() as usize) as i32;
        self.b.ins().load(self.ptr, MemFlagsData::trusted(), base, off)
    }

    /// The flags of a load from `p`: read-only unless `p` is in scratch memory.
    fn load_flags(&self, p: Value) -> MemFlagsData {
        if self.rw.contains(&p) {
            MemFlagsData::trusted()
        } else {
            MemFlagsData::trusted().with_readonly()
        }
    }

    fn load_elems(&mut self, d: DType, p: Value, first: usize, n: usize) -> Vec<Value> {
        let (ty, sz, flags) = (clif_type(d), d.size_in_bytes(), self.load_flags(p));
        (first..first + n).map(|i| self.b.ins().load(ty, flags, p, (i * sz) as i32)).collect()
    }

    fn store_elems(&mut self, d: DType, p: Value, first: usize, xs: &[Value]) {
        let sz = d.size_in_bytes();
        for (i, x) in xs.iter().enumerate() {
            self.b.ins().store(MemFlagsData::trusted(), *x, p, ((first + i) * sz) as i32);
        }
    }

    /// `print(vals...)`: each value's elements in memory (a stack slot, or
    /// where an input already is), an array of their addresses, and a call
    /// of `libcalls::print` with the meter (which carries the host's
    /// printer) and this print's site number, whose operand types the host
    /// is given with the code ([`Lowered::prints`]).
    fn lower_print(&mut self, vals: &[Val]) {
        let psz = self.ptr.bytes() as usize;
        let table = (vals.len() * psz).max(1) as u32;
        let ts = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, table, 3));
        let ptrs = self.b.ins().stack_addr(self.ptr, ts, 0);
        for (k, v) in vals.iter().enumerate() {
            let p = match &v.repr {
                Repr::Mem(p) => *p,
                Repr::Elems(xs) => {
                    let size = (xs.len() * v.dtype.size_in_bytes()).max(1) as u32;
                    let ss = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, size, 3));
                    let p = self.b.ins().stack_addr(self.ptr, ss, 0);
                    self.store_elems(v.dtype, p, 0, xs);
                    p
                }
            };
            self.b.ins().store(MemFlagsData::trusted(), p, ptrs, (k * psz) as i32);
        }
        let site = self.iconst(types::I64, self.prints.len() as i64);
        self.prints.push(vals.iter().map(|v| TType { dtype: v.dtype, shape: v.shape.clone() }).collect());
        let mp = self.meter_ptr;
        self.call(libcalls::print_addr(), &[self.ptr, types::I64, self.ptr], types::I64, &[mp, site, ptrs]);
    }

    /// `p + i * bytes` for a dynamic `i64` index.
    fn offset_addr(&mut self, p: Value, i: Value, bytes: usize) -> Value {
        let i = if self.ptr == types::I64 { i } else { self.b.ins().ireduce(self.ptr, i) };
        let k = self.iconst(self.ptr, bytes as i64);
        let off = self.b.ins().imul(i, k);
        let a = self.b.ins().iadd(p, off);
        if self.rw.contains(&p) {
            self.rw.insert(a);
        }
        a
    }

    /// A constant tensor: in registers when small, else read by address
    /// (the tensor is kept alive with the code).
    fn constant(&mut self, t: &Tensor) -> Val {
        let (dtype, shape) = (t.dtype(), t.shape().to_vec());
        if t.numel() <= MAX_ELEMS {
            let xs: Vec<Value> = match t.buffer() {
                Buffer::Bool(v) => v.iter().map(|&x| self.iconst(types::I8, i64::from(x))).collect(),
                Buffer::I32(v) => v.iter().map(|&x| self.iconst(types::I32, i64::from(x))).collect(),
                Buffer::I64(v) => v.iter().map(|&x| self.iconst(types::I64, x)).collect(),
                Buffer::U32(v) => v.iter().map(|&x| self.iconst(types::I32, i64::from(x))).collect(),
                Buffer::U8(v) => v.iter().map(|&x| self.iconst(types::I8, i64::from(x))).collect(),
                Buffer::F32(v) => v.iter().map(|&x| self.b.ins().f32const(x)).collect(),
                Buffer::F64(v) => v.iter().map(|&x| self.b.ins().f64const(x)).collect(),
                Buffer::BF16(v) => v.iter().map(|&x| self.iconst(types::I16, i64::from(x.to_bits()))).collect(),
                Buffer::F16(v) => v.iter().map(|&x| self.iconst(types::I16, i64::from(x.to_bits()))).collect(),
            };
            return Val::elems(dtype, shape, xs);
        }
        let addr = match t.buffer() {
            Buffer::Bool(v) => v.as_ptr() as usize,
            Buffer::I32(v) => v.as_ptr() as usize,
            Buffer::I64(v) => v.as_ptr() as usize,
            Buffer::U32(v) => v.as_ptr() as usize,
            Buffer::U8(v) => v.as_ptr() as usize,
            Buffer::F32(v) => v.as_ptr() as usize,
            Buffer::F64(v) => v.as_ptr() as usize,
            Buffer::BF16(v) => v.as_ptr() as usize,
            Buffer::F16(v) => v.as_ptr() as usize,
        };
        self.keep.push(t.clone());
        let p = self.iconst(self.ptr, addr as i64);
        Val { dtype, shape, repr: Repr::Mem(p) }
    }

    /// The elements of `v`, which must be in registers.
    fn elems<'v>(&self, v: &'v Val, op: &str) -> Result<&'v [Value], CompileError> {
        match &v.repr {
            Repr::Elems(xs) => Ok(xs),
            Repr::Mem(_) => unsupported!(
                "{op} of {}: tensors of more than {MAX_ELEMS} elements are only indexed, not computed on",
                v.type_string()
            ),
        }
    }

    fn scalar(&self, v: &Val, what: &str) -> Result<Value, CompileError> {
        match (&v.repr, v.shape.is_empty()) {
            (Repr::Elems(xs), true) if xs.len() == 1 => Ok(xs[0]),
            _ => unsupported!("{what} is {}, not a scalar", v.type_string()),
        }
    }

    fn check_size(&self, op: &str, shape: &[usize]) -> Result<usize, CompileError> {
        match rules::product(shape) {
            Some(n) if n <= MAX_ELEMS => Ok(n),
            _ => unsupported!("{op} result {:?} has more than {MAX_ELEMS} elements", shape),
        }
    }

    fn call(&mut self, addr: usize, params: &[Type], ret: Type, args: &[Value]) -> Value {
        let mut sig = ir::Signature::new(self.call_conv);
        sig.params.extend(params.iter().map(|t| AbiParam::new(*t)));
        sig.returns.push(AbiParam::new(ret));
        let sref = self.b.import_signature(sig);
        let callee = self.iconst(self.ptr, addr as i64);
        let call = self.b.ins().call_indirect(sref, callee, args);
        self.b.inst_results(call)[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_index_arithmetic() {
        assert_eq!(broadcast_shapes(&[2, 1], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shapes(&[2], &[3]), None);
        // [2, 1] broadcast to [2, 3]: element (1, 2) reads element 1.
        assert_eq!(src_index(&[2, 1], &[2, 3], 5), 1);
        assert_eq!(src_index(&[3], &[2, 3], 4), 1);
        assert_eq!(src_index(&[], &[2, 3], 4), 0);
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
    }

    #[test]
    fn the_table_drives_eligibility() {
        assert!(jit_lowerable(Opcode::Binary));
        assert!(jit_lowerable(Opcode::If));
        assert!(jit_lowerable(Opcode::Print));
        assert!(jit_lowerable(Opcode::MatMul));
        assert!(!jit_lowerable(Opcode::DotGeneral));
    }
}
