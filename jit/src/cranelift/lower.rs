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
//! Every value is a static-shape tensor of at most [`MAX_ELEMS`] elements,
//! one Cranelift value per element; elementwise ops, broadcasting, shape ops,
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
use loopvm_runtime::kernels::SliceSpec;
use loopvm_runtime::{BinaryOp, Buffer, DType, ReduceOp, Tensor, UnaryOp, UpdateMode};
use loopvm_vm::{BlockId, Func, FuncId, Inst, Module, OpFlags, Opcode, Reg};

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

/// The Cranelift type of one element.
pub(crate) fn clif_type(d: DType) -> Type {
    match d {
        DType::Bool => types::I8,
        DType::I32 => types::I32,
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
    };
    if r.metered {
        let fuel = lw.b.declare_var(types::I64);
        let f = lw.b.ins().load(types::I64, MemFlagsData::trusted(), meter_ptr, 0);
        lw.b.def_var(fuel, f);
        lw.meter = Some((meter_ptr, fuel));
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
        if ty.numel() > MAX_ELEMS {
            return unsupported!("carry {} has more than {MAX_ELEMS} elements", ty.display());
        }
        let p = lw.load_ptr(carry, k);
        let xs = lw.load_elems(ty.dtype, p, 0, ty.numel());
        init.push(Val { dtype: ty.dtype, shape: ty.shape.clone(), repr: Repr::Elems(xs) });
    }
    let top = Top { carry: init, start, outs };
    let results = lw.lower_loop(r.func_id, f, &mut env, r.inst, Some(&top))?;
    let mut out_types = Vec::with_capacity(results.len());
    for (k, v) in results.iter().enumerate() {
        out_types.push(TType { dtype: v.dtype, shape: v.shape.clone() });
        if let Repr::Elems(xs) = &v.repr {
            let p = lw.load_ptr(outs, k);
            lw.store_elems(v.dtype, p, 0, xs);
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
    let Lowerer { b, loops, keep, .. } = lw;
    b.finalize(cfg);
    Ok(Lowered { outs: out_types, loops, keep })
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
    /// A loop-invariant input in memory: the address of its first element.
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

/// The carry of a loop under construction: one `Variable` per element.
struct CarryVars {
    dtype: DType,
    shape: Vec<usize>,
    vars: Vec<Variable>,
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
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// NumPy broadcasting of two shapes (the kernels' rule).
fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut out = long.to_vec();
    for (o, &d) in out.iter_mut().rev().zip(short.iter().rev()) {
        if *o == 1 {
            *o = d;
        } else if d != *o && d != 1 {
            return None;
        }
    }
    numel(&out)?;
    Some(out)
}

fn broadcasts_to(shape: &[usize], target: &[usize]) -> bool {
    shape.len() <= target.len() && shape.iter().rev().zip(target.iter().rev()).all(|(&s, &t)| s == t || s == 1)
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

/// Python's `slice(start, stop, step).indices(len)` as (first, count).
fn python_range(len: i128, start: Option<i64>, stop: Option<i64>, step: i64) -> Option<(i128, usize)> {
    if step == 0 {
        return None;
    }
    let step = step as i128;
    let clip = |v: i64, lo: i128, hi: i128| {
        let v = v as i128;
        let v = if v < 0 { v + len } else { v };
        v.clamp(lo, hi)
    };
    let (first, count) = if step > 0 {
        let b = start.map_or(0, |v| clip(v, 0, len));
        let e = stop.map_or(len, |v| clip(v, 0, len));
        (b, if e > b { (e - b + step - 1) / step } else { 0 })
    } else {
        let b = start.map_or(len - 1, |v| clip(v, -1, len - 1));
        let e = stop.map_or(-1, |v| clip(v, -1, len - 1));
        (b, if b > e { (b - e - step - 1) / -step } else { 0 })
    };
    Some((first, count as usize))
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

    fn load_elems(&mut self, d: DType, p: Value, first: usize, n: usize) -> Vec<Value> {
        let (ty, sz) = (clif_type(d), d.size_in_bytes());
        (first..first + n)
            .map(|i| self.b.ins().load(ty, MemFlagsData::trusted().with_readonly(), p, (i * sz) as i32))
            .collect()
    }

    fn store_elems(&mut self, d: DType, p: Value, first: usize, xs: &[Value]) {
        let sz = d.size_in_bytes();
        for (i, x) in xs.iter().enumerate() {
            self.b.ins().store(MemFlagsData::trusted(), *x, p, ((first + i) * sz) as i32);
        }
    }

    /// `p + i * bytes` for a dynamic `i64` index.
    fn offset_addr(&mut self, p: Value, i: Value, bytes: usize) -> Value {
        let i = if self.ptr == types::I64 { i } else { self.b.ins().ireduce(self.ptr, i) };
        let k = self.iconst(self.ptr, bytes as i64);
        let off = self.b.ins().imul(i, k);
        self.b.ins().iadd(p, off)
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
                Buffer::F32(v) => v.iter().map(|&x| self.b.ins().f32const(x)).collect(),
                Buffer::F64(v) => v.iter().map(|&x| self.b.ins().f64const(x)).collect(),
            };
            return Val::elems(dtype, shape, xs);
        }
        let addr = match t.buffer() {
            Buffer::Bool(v) => v.as_ptr() as usize,
            Buffer::I32(v) => v.as_ptr() as usize,
            Buffer::I64(v) => v.as_ptr() as usize,
            Buffer::F32(v) => v.as_ptr() as usize,
            Buffer::F64(v) => v.as_ptr() as usize,
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
        match numel(shape) {
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

    // ---- scalar semantics ----------------------------------------------------

    /// Wrapping `x * y`; by 3, 5 or 9, `x + (x << k)`, which x86 computes
    /// with one `lea` (a cycle, where `imul` takes three). Example:
    /// Collatz's `3 * x + 1` becomes `lea 1(x, x, 2)`.
    fn imul(&mut self, x: Value, y: Value) -> Value {
        let (v, c) = match (self.const_int(x), self.const_int(y)) {
            (_, Some(c)) => (x, c),
            (Some(c), _) => (y, c),
            _ => return self.b.ins().imul(x, y),
        };
        let shift = match c {
            3 => 1,
            5 => 2,
            9 => 3,
            _ => return self.b.ins().imul(x, y),
        };
        let k = self.iconst(types::I8, shift);
        let sh = self.b.ins().ishl(v, k);
        self.b.ins().iadd(v, sh)
    }

    /// `x / y` with XLA's rules: `x / 0 = -1`, `MIN / -1 = MIN`; never traps.
    fn sdiv(&mut self, ty: Type, x: Value, y: Value) -> Value {
        if let Some(d) = self.const_int(y) {
            return match d {
                0 => self.iconst(ty, -1),
                -1 => self.b.ins().ineg(x),
                _ => self.b.ins().sdiv(x, y),
            };
        }
        let (zero, one, m1) = (self.iconst(ty, 0), self.iconst(ty, 1), self.iconst(ty, -1));
        let min = self.iconst(ty, if ty == types::I64 { i64::MIN } else { i64::from(i32::MIN) });
        let y0 = self.b.ins().icmp(IntCC::Equal, y, zero);
        let xmin = self.b.ins().icmp(IntCC::Equal, x, min);
        let ym1 = self.b.ins().icmp(IntCC::Equal, y, m1);
        let ovf = self.b.ins().band(xmin, ym1);
        let bad = self.b.ins().bor(y0, ovf);
        let safe = self.b.ins().select(bad, one, y);
        // With the divisor replaced by 1, `MIN / 1 = MIN` is already right.
        let q = self.b.ins().sdiv(x, safe);
        self.b.ins().select(y0, m1, q)
    }

    /// `x % y` with XLA's rules: `x % 0 = x`, `MIN % -1 = 0`; never traps.
    fn srem(&mut self, ty: Type, x: Value, y: Value) -> Value {
        if let Some(d) = self.const_int(y) {
            return match d {
                0 => x,
                -1 => self.iconst(ty, 0),
                _ => self.b.ins().srem(x, y),
            };
        }
        let (zero, one, m1) = (self.iconst(ty, 0), self.iconst(ty, 1), self.iconst(ty, -1));
        let y0 = self.b.ins().icmp(IntCC::Equal, y, zero);
        let ym1 = self.b.ins().icmp(IntCC::Equal, y, m1);
        let bad = self.b.ins().bor(y0, ym1);
        // `x % 1 = 0 = x % -1`.
        let safe = self.b.ins().select(bad, one, y);
        let r = self.b.ins().srem(x, safe);
        self.b.ins().select(y0, x, r)
    }

    /// The kernels' `max_nan(a, b)`: `a` if `a` is NaN or `b <= a`, else `b`.
    fn max_nan(&mut self, d: DType, a: Value, b: Value) -> Value {
        if d.is_float() {
            let a_nan = self.b.ins().fcmp(FloatCC::Unordered, a, a);
            let le = self.b.ins().fcmp(FloatCC::LessThanOrEqual, b, a);
            let c = self.b.ins().bor(a_nan, le);
            self.b.ins().select(c, a, b)
        } else {
            let le = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, b, a);
            self.b.ins().select(le, a, b)
        }
    }

    /// The kernels' `min_nan(a, b)`: `a` if `a` is NaN or `b >= a`, else `b`.
    fn min_nan(&mut self, d: DType, a: Value, b: Value) -> Value {
        if d.is_float() {
            let a_nan = self.b.ins().fcmp(FloatCC::Unordered, a, a);
            let ge = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, b, a);
            let c = self.b.ins().bor(a_nan, ge);
            self.b.ins().select(c, a, b)
        } else {
            let ge = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, b, a);
            self.b.ins().select(ge, a, b)
        }
    }

    fn binary_scalar(&mut self, op: BinaryOp, d: DType, x: Value, y: Value) -> Result<Value, CompileError> {
        let ty = clif_type(d);
        Ok(match d {
            DType::Bool => match op {
                BinaryOp::And | BinaryOp::Min => self.b.ins().band(x, y),
                BinaryOp::Or | BinaryOp::Max => self.b.ins().bor(x, y),
                BinaryOp::Eq => self.b.ins().icmp(IntCC::Equal, x, y),
                BinaryOp::Ne => self.b.ins().icmp(IntCC::NotEqual, x, y),
                BinaryOp::Lt => self.b.ins().icmp(IntCC::UnsignedLessThan, x, y),
                BinaryOp::Le => self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, x, y),
                BinaryOp::Gt => self.b.ins().icmp(IntCC::UnsignedGreaterThan, x, y),
                BinaryOp::Ge => self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, x, y),
                _ => return unsupported!("{op} of bool operands (the interpreter reports the error)"),
            },
            DType::I32 | DType::I64 => match op {
                BinaryOp::Eq | BinaryOp::Ne if self.is_rem_pow2_test(x, y).is_some() => {
                    let (v, mask) = self.is_rem_pow2_test(x, y).unwrap_or((x, 0));
                    let m = self.iconst(ty, mask);
                    let low = self.b.ins().band(v, m);
                    let z = self.iconst(ty, 0);
                    let cc = if op == BinaryOp::Eq { IntCC::Equal } else { IntCC::NotEqual };
                    self.b.ins().icmp(cc, low, z)
                }
                BinaryOp::Add => self.b.ins().iadd(x, y),
                BinaryOp::Sub => self.b.ins().isub(x, y),
                BinaryOp::Mul => self.imul(x, y),
                BinaryOp::Div => self.sdiv(ty, x, y),
                BinaryOp::Rem => self.srem(ty, x, y),
                BinaryOp::Max => self.max_nan(d, x, y),
                BinaryOp::Min => self.min_nan(d, x, y),
                BinaryOp::Eq => self.b.ins().icmp(IntCC::Equal, x, y),
                BinaryOp::Ne => self.b.ins().icmp(IntCC::NotEqual, x, y),
                BinaryOp::Lt => self.b.ins().icmp(IntCC::SignedLessThan, x, y),
                BinaryOp::Le => self.b.ins().icmp(IntCC::SignedLessThanOrEqual, x, y),
                BinaryOp::Gt => self.b.ins().icmp(IntCC::SignedGreaterThan, x, y),
                BinaryOp::Ge => self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, x, y),
                BinaryOp::Pow => match libcalls::binary(op, d) {
                    Some(f) => self.call(f, &[ty, ty], ty, &[x, y]),
                    None => return unsupported!("{op} on {d}"),
                },
                BinaryOp::And | BinaryOp::Or => {
                    return unsupported!("{op} of {d} operands (the interpreter reports the error)")
                }
            },
            DType::F32 | DType::F64 => match op {
                BinaryOp::Add => self.b.ins().fadd(x, y),
                BinaryOp::Sub => self.b.ins().fsub(x, y),
                BinaryOp::Mul => self.b.ins().fmul(x, y),
                BinaryOp::Div => self.b.ins().fdiv(x, y),
                BinaryOp::Max => self.max_nan(d, x, y),
                BinaryOp::Min => self.min_nan(d, x, y),
                BinaryOp::Eq => self.b.ins().fcmp(FloatCC::Equal, x, y),
                BinaryOp::Ne => self.b.ins().fcmp(FloatCC::NotEqual, x, y),
                BinaryOp::Lt => self.b.ins().fcmp(FloatCC::LessThan, x, y),
                BinaryOp::Le => self.b.ins().fcmp(FloatCC::LessThanOrEqual, x, y),
                BinaryOp::Gt => self.b.ins().fcmp(FloatCC::GreaterThan, x, y),
                BinaryOp::Ge => self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, y),
                BinaryOp::Rem | BinaryOp::Pow => match libcalls::binary(op, d) {
                    Some(f) => self.call(f, &[ty, ty], ty, &[x, y]),
                    None => return unsupported!("{op} on {d}"),
                },
                BinaryOp::And | BinaryOp::Or => {
                    return unsupported!("{op} of {d} operands (the interpreter reports the error)")
                }
            },
        })
    }

    fn unary_scalar(&mut self, op: UnaryOp, d: DType, x: Value) -> Result<Value, CompileError> {
        let bad = || unsupported!("{op} of a {d} operand (the interpreter reports the error)");
        Ok(match (d, op) {
            (DType::Bool, UnaryOp::Not) => {
                let one = self.iconst(types::I8, 1);
                self.b.ins().bxor(x, one)
            }
            (DType::Bool, _) | (_, UnaryOp::Not) => return bad(),
            (DType::I32 | DType::I64, UnaryOp::Neg) => self.b.ins().ineg(x),
            (DType::I32 | DType::I64, UnaryOp::Abs) => {
                let z = self.zero(d);
                let neg = self.b.ins().icmp(IntCC::SignedLessThan, x, z);
                let n = self.b.ins().ineg(x);
                self.b.ins().select(neg, n, x)
            }
            (_, UnaryOp::Relu) => {
                let z = self.zero(d);
                self.max_nan(d, x, z)
            }
            (DType::I32 | DType::I64, _) => return bad(),
            (_, UnaryOp::Neg) => self.b.ins().fneg(x),
            (_, UnaryOp::Abs) => self.b.ins().fabs(x),
            (_, UnaryOp::Sqrt) => self.b.ins().sqrt(x),
            (_, UnaryOp::Rsqrt) => {
                // Two correctly rounded operations, as the kernel computes it.
                let s = self.b.ins().sqrt(x);
                let one = match d {
                    DType::F32 => self.b.ins().f32const(1.0),
                    _ => self.b.ins().f64const(1.0),
                };
                self.b.ins().fdiv(one, s)
            }
            (
                _,
                UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Tanh
                | UnaryOp::Sigmoid
                | UnaryOp::Sin
                | UnaryOp::Cos
                | UnaryOp::Erf,
            ) => {
                let ty = clif_type(d);
                match libcalls::unary(op, d) {
                    Some(f) => self.call(f, &[ty], ty, &[x]),
                    None => return bad(),
                }
            }
        })
    }

    /// `x as to`, as the `cast` kernel converts one element.
    fn cast_scalar(&mut self, from: DType, to: DType, x: Value) -> Value {
        let tt = clif_type(to);
        match (from, to) {
            _ if from == to => x,
            (DType::Bool, DType::I32 | DType::I64) => self.b.ins().uextend(tt, x),
            (DType::Bool, _) => {
                let w = self.b.ins().uextend(types::I32, x);
                self.b.ins().fcvt_from_sint(tt, w)
            }
            (DType::I32 | DType::I64, DType::Bool) => {
                let z = self.zero(from);
                self.b.ins().icmp(IntCC::NotEqual, x, z)
            }
            (DType::F32 | DType::F64, DType::Bool) => {
                let z = self.zero(from);
                self.b.ins().fcmp(FloatCC::NotEqual, x, z)
            }
            (DType::I32, DType::I64) => self.b.ins().sextend(tt, x),
            (DType::I64, DType::I32) => self.b.ins().ireduce(tt, x),
            (DType::I32 | DType::I64, _) => self.b.ins().fcvt_from_sint(tt, x),
            (DType::F32, DType::F64) => self.b.ins().fpromote(tt, x),
            (DType::F64, DType::F32) => self.b.ins().fdemote(tt, x),
            (_, _) => self.b.ins().fcvt_to_sint_sat(tt, x),
        }
    }

    // ---- tensor ops on small tensors ----------------------------------------

    fn binary(&mut self, op: BinaryOp, a: &Val, b: &Val) -> Result<Val, CompileError> {
        if a.dtype != b.dtype {
            return unsupported!("dtype mismatch in {op}, lhs: {}, rhs: {}", a.type_string(), b.type_string());
        }
        let Some(shape) = broadcast_shapes(&a.shape, &b.shape) else {
            return unsupported!("shapes do not broadcast in {op}, lhs: {}, rhs: {}", a.type_string(), b.type_string());
        };
        let n = self.check_size(op.as_str(), &shape)?;
        let (xa, xb) = (self.elems(a, op.as_str())?.to_vec(), self.elems(b, op.as_str())?.to_vec());
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let (x, y) = (xa[src_index(&a.shape, &shape, i)], xb[src_index(&b.shape, &shape, i)]);
            out.push(self.binary_scalar(op, a.dtype, x, y)?);
        }
        let dtype = if op.is_compare() { DType::Bool } else { a.dtype };
        Ok(Val::elems(dtype, shape, out))
    }

    fn unary(&mut self, op: UnaryOp, a: &Val) -> Result<Val, CompileError> {
        let xs = self.elems(a, op.as_str())?.to_vec();
        let out = xs.iter().map(|&x| self.unary_scalar(op, a.dtype, x)).collect::<Result<Vec<_>, _>>()?;
        Ok(Val::elems(a.dtype, a.shape.clone(), out))
    }

    fn cast(&mut self, a: &Val, to: DType) -> Result<Val, CompileError> {
        if a.dtype == to {
            return Ok(a.clone());
        }
        let xs = self.elems(a, "cast")?.to_vec();
        let out = xs.iter().map(|&x| self.cast_scalar(a.dtype, to, x)).collect();
        Ok(Val::elems(to, a.shape.clone(), out))
    }

    fn select(&mut self, c: &Val, a: &Val, b: &Val) -> Result<Val, CompileError> {
        let types = || format!("cond: {}, lhs: {}, rhs: {}", c.type_string(), a.type_string(), b.type_string());
        if c.dtype != DType::Bool || a.dtype != b.dtype {
            return unsupported!("select with {}", types());
        }
        let Some(shape) = broadcast_shapes(&a.shape, &b.shape).and_then(|s| broadcast_shapes(&c.shape, &s)) else {
            return unsupported!("shapes do not broadcast in select, {}", types());
        };
        let n = self.check_size("select", &shape)?;
        let (xc, xa, xb) =
            (self.elems(c, "select")?.to_vec(), self.elems(a, "select")?.to_vec(), self.elems(b, "select")?.to_vec());
        let out = (0..n)
            .map(|i| {
                let (k, x, y) = (
                    xc[src_index(&c.shape, &shape, i)],
                    xa[src_index(&a.shape, &shape, i)],
                    xb[src_index(&b.shape, &shape, i)],
                );
                self.b.ins().select(k, x, y)
            })
            .collect();
        Ok(Val::elems(a.dtype, shape, out))
    }

    fn reduce(&mut self, op: ReduceOp, a: &Val, axis: Option<u32>) -> Result<Val, CompileError> {
        let name = op.as_str();
        let (len, inner, shape) = match axis {
            None => (a.numel(), 1, Vec::new()),
            Some(ax) => {
                let ax = ax as usize;
                let Some(&len) = a.shape.get(ax) else {
                    return unsupported!("{name}: axis {ax} is out of range for {}", a.type_string());
                };
                let mut shape = a.shape.clone();
                shape.remove(ax);
                (len, a.shape[ax + 1..].iter().product(), shape)
            }
        };
        if len == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::Argmax) {
            return unsupported!("{name} of an empty axis of {} (the interpreter reports the error)", a.type_string());
        }
        let n = self.check_size(name, &shape)?;
        let xs = self.elems(a, name)?.to_vec();
        let rd = op.result_dtype(a.dtype);
        let mut out = Vec::with_capacity(n);
        for o in 0..n {
            let (outer, i) = (o / inner.max(1), o % inner.max(1));
            let at = |k: usize| xs[(outer * len + k) * inner + i];
            let v = match op {
                ReduceOp::Sum | ReduceOp::Mean => {
                    // The accumulator's dtype: the result's (f32 for integer means).
                    let mut acc = self.zero(rd);
                    for k in 0..len {
                        let x = self.cast_scalar(a.dtype, rd, at(k));
                        acc = if rd.is_float() { self.b.ins().fadd(acc, x) } else { self.b.ins().iadd(acc, x) };
                    }
                    if op == ReduceOp::Mean {
                        let d = if rd == DType::F64 {
                            self.b.ins().f64const(len as f64)
                        } else {
                            self.b.ins().f32const(len as f32)
                        };
                        acc = self.b.ins().fdiv(acc, d);
                    }
                    acc
                }
                ReduceOp::Max | ReduceOp::Min => {
                    let mut acc = at(0);
                    for k in 1..len {
                        acc = match (op, a.dtype) {
                            (ReduceOp::Max, DType::Bool) => self.b.ins().bor(acc, at(k)),
                            (_, DType::Bool) => self.b.ins().band(acc, at(k)),
                            (ReduceOp::Max, _) => self.max_nan(a.dtype, acc, at(k)),
                            _ => self.min_nan(a.dtype, acc, at(k)),
                        };
                    }
                    acc
                }
                ReduceOp::Argmax => {
                    let mut best = at(0);
                    let mut idx = self.iconst(types::I32, 0);
                    for k in 1..len {
                        let x = at(k);
                        let better = match a.dtype {
                            DType::Bool => self.b.ins().icmp(IntCC::UnsignedGreaterThan, x, best),
                            DType::I32 | DType::I64 => self.b.ins().icmp(IntCC::SignedGreaterThan, x, best),
                            _ => {
                                // x > best || (x is NaN && best is not)
                                let gt = self.b.ins().fcmp(FloatCC::GreaterThan, x, best);
                                let xn = self.b.ins().fcmp(FloatCC::Unordered, x, x);
                                let bo = self.b.ins().fcmp(FloatCC::Ordered, best, best);
                                let nan = self.b.ins().band(xn, bo);
                                self.b.ins().bor(gt, nan)
                            }
                        };
                        best = self.b.ins().select(better, x, best);
                        let kv = self.iconst(types::I32, k as i64);
                        idx = self.b.ins().select(better, kv, idx);
                    }
                    idx
                }
            };
            out.push(v);
        }
        Ok(Val::elems(rd, shape, out))
    }

    /// Clamped flat offset (in elements, `i64`) of the block `idx` selects
    /// in `a`, as the `dynamic_index` kernel computes it.
    fn dynamic_offset(&mut self, op: &str, a: &Val, idx: &[Val]) -> Result<Value, CompileError> {
        if idx.len() > a.shape.len() {
            return unsupported!("{op}: {} indices for {}", idx.len(), a.type_string());
        }
        let st = strides(&a.shape);
        let mut off = self.iconst(types::I64, 0);
        for (ax, i) in idx.iter().enumerate() {
            let d = a.shape[ax];
            if d == 0 {
                return unsupported!("{op}: cannot index empty axis {ax} of {}", a.type_string());
            }
            if !i.dtype.is_int() {
                return unsupported!("{op}: index is {}, not an integer", i.type_string());
            }
            let x = self.scalar(i, "a dynamic index")?;
            let x = if i.dtype == DType::I32 { self.b.ins().sextend(types::I64, x) } else { x };
            let z = self.iconst(types::I64, 0);
            let dv = self.iconst(types::I64, d as i64);
            let neg = self.b.ins().icmp(IntCC::SignedLessThan, x, z);
            let wrapped = self.b.ins().iadd(x, dv);
            let x = self.b.ins().select(neg, wrapped, x);
            let x = self.b.ins().smax(x, z);
            let hi = self.iconst(types::I64, d as i64 - 1);
            let x = self.b.ins().smin(x, hi);
            let s = self.iconst(types::I64, st[ax] as i64);
            let t = self.b.ins().imul(x, s);
            off = self.b.ins().iadd(off, t);
        }
        Ok(off)
    }

    /// The block of `bs` elements at dynamic element offset `off` of `a`
    /// (a multiple of `bs`).
    fn read_block(&mut self, a: &Val, off: Value, bs: usize) -> Result<Vec<Value>, CompileError> {
        match &a.repr {
            Repr::Mem(p) => {
                let addr = self.offset_addr(*p, off, a.dtype.size_in_bytes());
                Ok(self.load_elems(a.dtype, addr, 0, bs))
            }
            Repr::Elems(xs) => {
                let xs = xs.clone();
                let blocks = xs.len().checked_div(bs).unwrap_or(0);
                let mut out: Vec<Value> = xs.iter().take(bs).copied().collect();
                for c in 1..blocks {
                    let cv = self.iconst(types::I64, (c * bs) as i64);
                    let hit = self.b.ins().icmp(IntCC::Equal, off, cv);
                    for (e, o) in out.iter_mut().enumerate() {
                        *o = self.b.ins().select(hit, xs[c * bs + e], *o);
                    }
                }
                Ok(out)
            }
        }
    }

    fn index(&mut self, a: &Val, idx: &[Val]) -> Result<Val, CompileError> {
        let off = self.dynamic_offset("dynamic_index", a, idx)?;
        let shape = a.shape[idx.len()..].to_vec();
        let bs = self.check_size("dynamic_index", &shape)?;
        let xs = self.read_block(a, off, bs)?;
        Ok(Val::elems(a.dtype, shape, xs))
    }

    fn update(&mut self, mode: UpdateMode, a: &Val, idx: &[Val], v: &Val) -> Result<Val, CompileError> {
        let off = self.dynamic_offset("dynamic_update", a, idx)?;
        let slot = a.shape[idx.len()..].to_vec();
        if v.dtype != a.dtype || !broadcasts_to(&v.shape, &slot) || (mode == UpdateMode::Add && a.dtype == DType::Bool)
        {
            return unsupported!(
                "update of {} with {} (the interpreter reports the error)",
                a.type_string(),
                v.type_string()
            );
        }
        self.check_size("dynamic_update", &a.shape)?;
        let xs = self.elems(a, "dynamic_update")?.to_vec();
        let vs = self.elems(v, "dynamic_update")?.to_vec();
        let bs: usize = slot.iter().product();
        let mut out = xs.clone();
        for c in 0..xs.len().checked_div(bs).unwrap_or(0) {
            let cv = self.iconst(types::I64, (c * bs) as i64);
            let hit = self.b.ins().icmp(IntCC::Equal, off, cv);
            for e in 0..bs {
                let old = xs[c * bs + e];
                let x = vs[src_index(&v.shape, &slot, e)];
                let new = match mode {
                    UpdateMode::Set => x,
                    UpdateMode::Add if a.dtype.is_float() => self.b.ins().fadd(old, x),
                    UpdateMode::Add => self.b.ins().iadd(old, x),
                };
                out[c * bs + e] = self.b.ins().select(hit, new, old);
            }
        }
        Ok(Val::elems(a.dtype, a.shape.clone(), out))
    }

    /// Reads elements at static flat positions of `a`.
    fn gather(&mut self, a: &Val, positions: &[usize]) -> Vec<Value> {
        match &a.repr {
            Repr::Elems(xs) => positions.iter().map(|&p| xs[p]).collect(),
            Repr::Mem(p) => {
                let (ty, sz, p) = (clif_type(a.dtype), a.dtype.size_in_bytes(), *p);
                positions
                    .iter()
                    .map(|&i| self.b.ins().load(ty, MemFlagsData::trusted().with_readonly(), p, (i * sz) as i32))
                    .collect()
            }
        }
    }

    fn slice(&mut self, a: &Val, specs: &[SliceSpec]) -> Result<Val, CompileError> {
        if specs.len() > a.shape.len() {
            return unsupported!("slice: {} indices for {}", specs.len(), a.type_string());
        }
        let own = strides(&a.shape);
        let mut base = 0i128;
        let mut shape = Vec::new();
        let mut st: Vec<i128> = Vec::new();
        for (ax, (&dim, &stride)) in a.shape.iter().zip(&own).enumerate() {
            let (d, stride) = (dim as i128, stride as i128);
            match specs.get(ax) {
                None => {
                    shape.push(dim);
                    st.push(stride);
                }
                Some(&SliceSpec::Index(i)) => {
                    let k = if i < 0 { i as i128 + d } else { i as i128 };
                    if k < 0 || k >= d {
                        return unsupported!("slice: index {i} is out of range for axis {ax} of {}", a.type_string());
                    }
                    base += k * stride;
                }
                Some(&SliceSpec::Range { start, stop, step }) => {
                    let Some((first, len)) = python_range(d, start, stop, step) else {
                        return unsupported!("slice: step 0 on axis {ax} of {}", a.type_string());
                    };
                    if len > 0 {
                        base += first * stride;
                    }
                    shape.push(len);
                    st.push(step as i128 * stride);
                }
            }
        }
        let n = self.check_size("slice", &shape)?;
        let mut pos = Vec::with_capacity(n);
        for flat in 0..n {
            let (mut rem, mut p) = (flat, base);
            for ax in (0..shape.len()).rev() {
                p += (rem % shape[ax]) as i128 * st[ax];
                rem /= shape[ax];
            }
            pos.push(p as usize);
        }
        let xs = self.gather(a, &pos);
        Ok(Val::elems(a.dtype, shape, xs))
    }

    fn transpose(&mut self, a: &Val, perm: Option<&[u32]>) -> Result<Val, CompileError> {
        let rank = a.shape.len();
        let perm: Vec<usize> = match perm {
            None => (0..rank).rev().collect(),
            Some(p) => p.iter().map(|&x| x as usize).collect(),
        };
        let mut seen = vec![false; rank];
        if perm.len() != rank || !perm.iter().all(|&x| x < rank && !std::mem::replace(&mut seen[x], true)) {
            return unsupported!("transpose: {perm:?} is not a permutation of the axes of {}", a.type_string());
        }
        let shape: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
        let n = self.check_size("transpose", &shape)?;
        let own = strides(&a.shape);
        let pos: Vec<usize> = (0..n)
            .map(|flat| {
                let (mut rem, mut p) = (flat, 0);
                for ax in (0..rank).rev() {
                    p += (rem % shape[ax]) * own[perm[ax]];
                    rem /= shape[ax];
                }
                p
            })
            .collect();
        let xs = self.gather(a, &pos);
        Ok(Val::elems(a.dtype, shape, xs))
    }

    /// `concat` (`stack: false`) or `stack` of `vals` along `axis`.
    fn join(&mut self, vals: &[Val], axis: usize, stack: bool) -> Result<Val, CompileError> {
        let op = if stack { "stack" } else { "concat" };
        let Some(first) = vals.first() else { return unsupported!("{op} of nothing") };
        let list = || vals.iter().map(Val::type_string).collect::<Vec<_>>().join(", ");
        let ok = vals.iter().all(|v| v.dtype == first.dtype)
            && if stack {
                axis <= first.shape.len() && vals.iter().all(|v| v.shape == first.shape)
            } else {
                axis < first.shape.len()
                    && vals.iter().all(|v| {
                        v.shape.len() == first.shape.len()
                            && v.shape.iter().zip(&first.shape).enumerate().all(|(i, (a, b))| i == axis || a == b)
                    })
            };
        if !ok {
            return unsupported!("{op} of [{}] along axis {axis} (the interpreter reports the error)", list());
        }
        let mut shape = first.shape.clone();
        if stack {
            shape.insert(axis, vals.len());
        } else {
            shape[axis] = vals.iter().map(|v| v.shape[axis]).sum();
        }
        self.check_size(op, &shape)?;
        let outer: usize = shape[..axis].iter().product();
        let parts: Vec<Vec<Value>> =
            vals.iter().map(|v| self.elems(v, op).map(<[Value]>::to_vec)).collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for o in 0..outer {
            for (v, xs) in vals.iter().zip(&parts) {
                let chunk: usize = v.shape[axis..].iter().product();
                out.extend_from_slice(&xs[o * chunk..(o + 1) * chunk]);
            }
        }
        Ok(Val::elems(first.dtype, shape, out))
    }

    // ---- instructions and blocks ---------------------------------------------

    fn lower_block(&mut self, fid: FuncId, func: &Func, env: &mut Env, b: BlockId) -> Result<(), CompileError> {
        let Some(block) = func.blocks.get(b.0 as usize) else { return unsupported!("no block b{}", b.0) };
        for inst in &block.code {
            self.lower_inst(fid, func, env, inst)?;
        }
        Ok(())
    }

    fn vals(env: &Env, regs: &[Reg]) -> Result<Vec<Val>, CompileError> {
        regs.iter().map(|r| env.get(*r).cloned()).collect()
    }

    fn lower_inst(&mut self, fid: FuncId, func: &Func, env: &mut Env, inst: &Inst) -> Result<(), CompileError> {
        let op = inst.opcode();
        if !jit_lowerable(op) {
            let info = op.info();
            let why = if info.no_xla.is_empty() { "not flagged JIT in the opcode table" } else { info.no_xla };
            return unsupported!("`{}` in `{}` ({why})", info.name.to_lowercase(), func.name);
        }
        let v = match inst {
            Inst::Const { dst, k } => {
                let Some(t) = self.m.consts.get(k.0 as usize) else { return unsupported!("no constant k{}", k.0) };
                let v = self.constant(t);
                env.set(*dst, v);
                return Ok(());
            }
            Inst::Move { dst, src } => {
                let v = env.get(*src)?.clone();
                env.set(*dst, v);
                return Ok(());
            }
            Inst::Unary { op, dst, a } => (dst, self.unary(*op, &env.get(*a)?.clone())?),
            Inst::Binary { op, dst, a, b } => {
                let (a, b) = (env.get(*a)?.clone(), env.get(*b)?.clone());
                (dst, self.binary(*op, &a, &b)?)
            }
            Inst::Select { dst, c, a, b } => {
                let (c, a, b) = (env.get(*c)?.clone(), env.get(*a)?.clone(), env.get(*b)?.clone());
                (dst, self.select(&c, &a, &b)?)
            }
            Inst::Cast { dst, a, to } => (dst, self.cast(&env.get(*a)?.clone(), *to)?),
            Inst::Iota { dst, dtype, n } => {
                let n = *n as usize;
                if n > MAX_ELEMS || *dtype == DType::Bool {
                    return unsupported!("iota of {}", type_string(*dtype, &[n]));
                }
                let xs = (0..n)
                    .map(|i| match dtype {
                        DType::F32 => self.b.ins().f32const(i as f32),
                        DType::F64 => self.b.ins().f64const(i as f64),
                        _ => self.iconst(clif_type(*dtype), i as i64),
                    })
                    .collect();
                (dst, Val::elems(*dtype, vec![n], xs))
            }
            Inst::Reduce { op, dst, a, axis } => (dst, self.reduce(*op, &env.get(*a)?.clone(), axis.0)?),
            Inst::Reshape { dst, a, shape } => {
                let a = env.get(*a)?.clone();
                let shape: Vec<usize> = shape.0.iter().map(|&d| d as usize).collect();
                if numel(&shape) != Some(a.numel()) {
                    return unsupported!("cannot reshape {} into shape {shape:?}", a.type_string());
                }
                (dst, Val { shape, ..a })
            }
            Inst::Transpose { dst, a, perm } => (dst, self.transpose(&env.get(*a)?.clone(), perm.0.as_deref())?),
            Inst::Broadcast { dst, a, shape } => {
                let a = env.get(*a)?.clone();
                let shape: Vec<usize> = shape.0.iter().map(|&d| d as usize).collect();
                if !broadcasts_to(&a.shape, &shape) {
                    return unsupported!("cannot broadcast {} to shape {shape:?}", a.type_string());
                }
                let n = self.check_size("broadcast", &shape)?;
                let pos: Vec<usize> = (0..n).map(|i| src_index(&a.shape, &shape, i)).collect();
                let xs = self.gather(&a, &pos);
                (dst, Val::elems(a.dtype, shape, xs))
            }
            Inst::Concat { dst, srcs, axis } => (dst, self.join(&Self::vals(env, srcs)?, axis.0 as usize, false)?),
            Inst::Stack { dst, srcs, axis } => (dst, self.join(&Self::vals(env, srcs)?, axis.0 as usize, true)?),
            Inst::Slice { dst, a, specs } => (dst, self.slice(&env.get(*a)?.clone(), &specs.0)?),
            Inst::Index { dst, a, idx } => (dst, self.index(&env.get(*a)?.clone(), &Self::vals(env, idx)?)?),
            Inst::Update { mode, dst, a, idx, v } => {
                let (a, v) = (env.get(*a)?.clone(), env.get(*v)?.clone());
                (dst, self.update(*mode, &a, &Self::vals(env, idx)?, &v)?)
            }
            Inst::ShapeOf { dst, a } => {
                let a = env.get(*a)?.clone();
                if a.shape.len() > MAX_ELEMS {
                    return unsupported!("shape of {}", a.type_string());
                }
                let xs = a
                    .shape
                    .iter()
                    .map(|&d| self.iconst(types::I32, i64::from(i32::try_from(d).unwrap_or(i32::MAX))))
                    .collect();
                (dst, Val::elems(DType::I32, vec![a.shape.len()], xs))
            }
            Inst::Call { dsts, func: callee, args } => {
                let vals = self.lower_call(*callee, &Self::vals(env, args)?)?;
                for (d, v) in dsts.iter().zip(vals) {
                    env.set(*d, v);
                }
                return Ok(());
            }
            Inst::If { dsts, c, then_, else_ } => {
                let c = env.get(*c)?.clone();
                let vals = self.lower_if(fid, func, env, &c, *then_, *else_)?;
                for (d, v) in dsts.iter().zip(vals) {
                    env.set(*d, v);
                }
                return Ok(());
            }
            Inst::Fori { dsts, .. } | Inst::While { dsts, .. } | Inst::Scan { dsts, .. } => {
                let vals = self.lower_loop(fid, func, env, inst, None)?;
                for (d, v) in dsts.iter().zip(vals) {
                    env.set(*d, v);
                }
                return Ok(());
            }
            Inst::MatMul { .. } | Inst::Print { .. } => {
                return unsupported!("`{}` in `{}`", op.info().name.to_lowercase(), func.name)
            }
        };
        env.set(*v.0, v.1);
        Ok(())
    }

    fn lower_call(&mut self, callee: FuncId, args: &[Val]) -> Result<Vec<Val>, CompileError> {
        if self.depth >= MAX_INLINE_DEPTH {
            return unsupported!("calls nested deeper than {MAX_INLINE_DEPTH} are not inlined");
        }
        let m = self.m;
        let Some(cf) = m.funcs.get(callee.0 as usize) else { return unsupported!("no function f{}", callee.0) };
        let Some(body) = cf.blocks.get(cf.body.0 as usize) else { return unsupported!("`{}` has no body", cf.name) };
        let mut cenv = Env::new(cf.num_regs());
        for (p, a) in body.params.iter().zip(args) {
            cenv.set(*p, a.clone());
        }
        self.depth += 1;
        let r = self.lower_block(callee, cf, &mut cenv, cf.body);
        self.depth -= 1;
        r?;
        Self::vals(&cenv, &body.results)
    }

    fn lower_if(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        c: &Val,
        then_: BlockId,
        else_: BlockId,
    ) -> Result<Vec<Val>, CompileError> {
        if c.dtype != DType::Bool {
            return unsupported!("if condition is {}, not bool", c.type_string());
        }
        let cv = self.scalar(c, "the if condition")?;
        if is_cheap(func, then_) && is_cheap(func, else_) {
            return self.lower_if_select(fid, func, env, cv, then_, else_);
        }
        let (tb, eb, merge) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().brif(cv, tb, &[], eb, &[]);
        self.b.seal_block(tb);
        self.b.seal_block(eb);
        let mut types: Vec<(DType, Vec<usize>)> = Vec::new();
        for (k, (blk, bid)) in [(tb, then_), (eb, else_)].into_iter().enumerate() {
            self.b.switch_to_block(blk);
            self.lower_block(fid, func, env, bid)?;
            let Some(block) = func.blocks.get(bid.0 as usize) else { return unsupported!("no block b{}", bid.0) };
            let vals = Self::vals(env, &block.results)?;
            let mut args = Vec::new();
            for (i, v) in vals.iter().enumerate() {
                if k == 0 {
                    types.push((v.dtype, v.shape.clone()));
                    for _ in 0..v.numel() {
                        self.b.append_block_param(merge, clif_type(v.dtype));
                    }
                } else if types.get(i) != Some(&(v.dtype, v.shape.clone())) {
                    return unsupported!("if branches give different types ({})", v.type_string());
                }
                args.extend(self.elems(v, "if")?.iter().map(|&x| ir::BlockArg::Value(x)));
            }
            if k == 1 && vals.len() != types.len() {
                return unsupported!("if branches give different numbers of values");
            }
            self.b.ins().jump(merge, &args);
        }
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        let params = self.b.block_params(merge).to_vec();
        let mut at = 0;
        Ok(types
            .into_iter()
            .map(|(dtype, shape)| {
                let n: usize = shape.iter().product();
                let xs = params[at..at + n].to_vec();
                at += n;
                Val::elems(dtype, shape, xs)
            })
            .collect())
    }

    /// If-conversion: both branches are cheap and pure (see [`is_cheap`]),
    /// so both are computed and the results picked with `select` (a
    /// conditional move): no branch to mispredict. Example: Collatz's
    /// `if x % 2 == 0 { x / 2 } else { 3 * x + 1 }`.
    fn lower_if_select(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        cv: Value,
        then_: BlockId,
        else_: BlockId,
    ) -> Result<Vec<Val>, CompileError> {
        let mut sides = Vec::with_capacity(2);
        for bid in [then_, else_] {
            self.lower_block(fid, func, env, bid)?;
            let Some(block) = func.blocks.get(bid.0 as usize) else { return unsupported!("no block b{}", bid.0) };
            sides.push(Self::vals(env, &block.results)?);
        }
        let (t, e) = (&sides[0], &sides[1]);
        if t.len() != e.len() {
            return unsupported!("if branches give different numbers of values");
        }
        let mut out = Vec::with_capacity(t.len());
        for (x, y) in t.iter().zip(e) {
            if x.dtype != y.dtype || x.shape != y.shape {
                return unsupported!("if branches give {} and {}", x.type_string(), y.type_string());
            }
            let (xs, ys) = (self.elems(x, "if")?.to_vec(), self.elems(y, "if")?.to_vec());
            let picked = xs.iter().zip(&ys).map(|(&a, &b)| self.b.ins().select(cv, a, b)).collect();
            out.push(Val::elems(x.dtype, x.shape.clone(), picked));
        }
        Ok(out)
    }

    fn carry_vars(&mut self, init: &[Val]) -> Result<Vec<CarryVars>, CompileError> {
        init.iter()
            .map(|v| {
                let xs = self.elems(v, "a loop carry")?.to_vec();
                let ty = clif_type(v.dtype);
                let vars = xs
                    .iter()
                    .map(|&x| {
                        let var = self.b.declare_var(ty);
                        self.b.def_var(var, x);
                        var
                    })
                    .collect();
                Ok(CarryVars { dtype: v.dtype, shape: v.shape.clone(), vars })
            })
            .collect()
    }

    fn read_vars(&mut self, cv: &[CarryVars]) -> Vec<Val> {
        cv.iter()
            .map(|c| {
                let xs = c.vars.iter().map(|&v| self.b.use_var(v)).collect();
                Val::elems(c.dtype, c.shape.clone(), xs)
            })
            .collect()
    }

    fn write_vars(&mut self, cv: &[CarryVars], vals: &[Val]) -> Result<(), CompileError> {
        if cv.len() != vals.len() {
            return unsupported!("loop body gives {} carry values for {}", vals.len(), cv.len());
        }
        // Read every result before defining any variable: a result may be a carry itself.
        let mut all = Vec::with_capacity(cv.len());
        for (c, v) in cv.iter().zip(vals) {
            if c.dtype != v.dtype || c.shape != v.shape {
                return unsupported!(
                    "loop carry changes type from {} to {}",
                    type_string(c.dtype, &c.shape),
                    v.type_string()
                );
            }
            all.push(self.elems(v, "a loop carry")?.to_vec());
        }
        for (c, xs) in cv.iter().zip(all) {
            for (&var, x) in c.vars.iter().zip(xs) {
                self.b.def_var(var, x);
            }
        }
        Ok(())
    }

    /// A fresh iteration counter for the loop `(fid, body)`.
    fn loop_counter(&mut self, fid: FuncId, body: BlockId) -> (usize, Variable) {
        self.loops.push((fid, body));
        let var = self.b.declare_var(types::I64);
        let z = self.iconst(types::I64, 0);
        self.b.def_var(var, z);
        (self.loops.len() - 1, var)
    }

    fn bump(&mut self, var: Variable) {
        let n = self.b.use_var(var);
        let one = self.iconst(types::I64, 1);
        let n = self.b.ins().iadd(n, one);
        self.b.def_var(var, n);
        self.tick();
    }

    /// Metered code: one iteration's fuel; when none is left, asks
    /// `libcalls::refuel` for more and returns at once when refused. The
    /// code after it continues in a new block.
    fn tick(&mut self) {
        let Some((mp, fuel)) = self.meter else { return };
        let f = self.b.use_var(fuel);
        let f1 = self.b.ins().iadd_imm_s(f, -1);
        self.b.def_var(fuel, f1);
        let empty = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, f1, 0);
        let (slow, refill, cont) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.set_cold_block(slow);
        self.b.set_cold_block(refill);
        self.b.ins().brif(empty, slow, &[], cont, &[]);
        self.b.switch_to_block(slow);
        self.b.seal_block(slow);
        let g = self.call(libcalls::refuel_addr(), &[self.ptr], types::I64, &[mp]);
        let stop = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, g, 1);
        let abort = match self.abort {
            Some(b) => b,
            None => {
                let b = self.b.create_block();
                self.abort = Some(b);
                b
            }
        };
        self.b.ins().brif(stop, abort, &[], refill, &[]);
        self.b.switch_to_block(refill);
        self.b.seal_block(refill);
        let g1 = self.b.ins().iadd_imm_s(g, -1);
        self.b.def_var(fuel, g1);
        self.b.ins().jump(cont, &[]);
        self.b.switch_to_block(cont);
        self.b.seal_block(cont);
    }

    /// Adds the counter to `counters[slot]` (in the exit block).
    fn flush_counter(&mut self, slot: usize, var: Variable) {
        let n = self.b.use_var(var);
        let off = (slot * 8) as i32;
        let old = self.b.ins().load(types::I64, MemFlagsData::trusted(), self.counters, off);
        let new = self.b.ins().iadd(old, n);
        self.b.ins().store(MemFlagsData::trusted(), new, self.counters, off);
    }

    /// Lowers a loop instruction; `top` is set for the region's own loop.
    fn lower_loop(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        inst: &Inst,
        top: Option<&Top>,
    ) -> Result<Vec<Val>, CompileError> {
        match inst {
            Inst::Fori { lo, hi, init, body, .. } => self.lower_fori(fid, func, env, *lo, *hi, init, *body, top),
            Inst::While { init, cond, body, .. } => self.lower_while(fid, func, env, init, *cond, *body, top),
            Inst::Scan { init, xs, length, reverse, body, .. } => {
                self.lower_scan(fid, func, env, init, xs, length.0, *reverse, *body, top)
            }
            _ => unsupported!("`{}` is not a loop", inst.opcode().info().name),
        }
    }

    fn initial_carry(env: &Env, init: &[Reg], top: Option<&Top>) -> Result<Vec<Val>, CompileError> {
        match top {
            Some(t) => Ok(t.carry.clone()),
            None => Self::vals(env, init),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn lower_fori(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        lo: Reg,
        hi: Reg,
        init: &[Reg],
        body: BlockId,
        top: Option<&Top>,
    ) -> Result<Vec<Val>, CompileError> {
        let (lo_v, hi_v) = (env.get(lo)?.clone(), env.get(hi)?.clone());
        if !lo_v.dtype.is_int() || !hi_v.dtype.is_int() {
            return unsupported!("fori_loop bounds {} and {}", lo_v.type_string(), hi_v.type_string());
        }
        let (lo_x, hi_x) =
            (self.scalar(&lo_v, "fori_loop's lower bound")?, self.scalar(&hi_v, "fori_loop's upper bound")?);
        // The counter runs in i64 when either bound is i64 (the interpreter
        // counts in i64 and writes the counter in lo's dtype).
        let wide = lo_v.dtype == DType::I64 || hi_v.dtype == DType::I64;
        let wt = if wide { DType::I64 } else { DType::I32 };
        let lo_w = self.cast_scalar(lo_v.dtype, wt, lo_x);
        let hi_w = self.cast_scalar(hi_v.dtype, wt, hi_x);
        let init_vals = Self::initial_carry(env, init, top)?;
        let first = match top {
            Some(t) => {
                let s = if wide { t.start } else { self.b.ins().ireduce(types::I32, t.start) };
                self.b.ins().iadd(lo_w, s)
            }
            None => lo_w,
        };
        let Some(blk) = func.blocks.get(body.0 as usize) else { return unsupported!("no block b{}", body.0) };
        let Some((&ireg, cparams)) = blk.params.split_first() else {
            return unsupported!("fori_loop body without a counter");
        };
        if cparams.len() != init_vals.len() {
            return unsupported!("fori_loop body takes {} carries, given {}", cparams.len(), init_vals.len());
        }
        let ivar = self.b.declare_var(clif_type(wt));
        self.b.def_var(ivar, first);
        let cv = self.carry_vars(&init_vals)?;
        let (slot, count) = self.loop_counter(fid, body);
        // Rotated: a guard, then the body with the test at its end, so an
        // iteration takes one branch.
        let (bb, exit) = (self.b.create_block(), self.b.create_block());
        let go = self.b.ins().icmp(IntCC::SignedLessThan, first, hi_w);
        self.b.ins().brif(go, bb, &[], exit, &[]);
        self.b.switch_to_block(bb);
        let i = self.b.use_var(ivar);
        let counter = self.cast_scalar(wt, lo_v.dtype, i);
        env.set(ireg, Val::scalar(lo_v.dtype, counter));
        for (p, v) in cparams.iter().zip(self.read_vars(&cv)) {
            env.set(*p, v);
        }
        self.lower_block(fid, func, env, body)?;
        let res = Self::vals(env, &blk.results)?;
        self.write_vars(&cv, &res)?;
        let one = self.iconst(clif_type(wt), 1);
        let next = self.b.ins().iadd(i, one);
        self.b.def_var(ivar, next);
        self.bump(count);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, next, hi_w);
        self.b.ins().brif(go, bb, &[], exit, &[]);
        self.b.seal_block(bb);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.flush_counter(slot, count);
        Ok(self.read_vars(&cv))
    }

    /// Lowers a `while_loop`'s condition block on the current carry.
    fn while_test(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        cond: BlockId,
        creg: Reg,
        cv: &[CarryVars],
    ) -> Result<Value, CompileError> {
        let Some(cb) = func.blocks.get(cond.0 as usize) else { return unsupported!("no block b{}", cond.0) };
        for (p, v) in cb.params.iter().zip(self.read_vars(cv)) {
            env.set(*p, v);
        }
        self.lower_block(fid, func, env, cond)?;
        let c = env.get(creg)?.clone();
        if c.dtype != DType::Bool {
            return unsupported!("while_loop condition is {}, not bool", c.type_string());
        }
        self.scalar(&c, "the while_loop condition")
    }

    #[allow(clippy::too_many_arguments)]
    fn lower_while(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        init: &[Reg],
        cond: BlockId,
        body: BlockId,
        top: Option<&Top>,
    ) -> Result<Vec<Val>, CompileError> {
        let init_vals = Self::initial_carry(env, init, top)?;
        let (Some(cb), Some(bb)) = (func.blocks.get(cond.0 as usize), func.blocks.get(body.0 as usize)) else {
            return unsupported!("while_loop blocks missing");
        };
        let Some(&creg) = cb.results.first() else { return unsupported!("while_loop condition without a result") };
        let cv = self.carry_vars(&init_vals)?;
        let (slot, count) = self.loop_counter(fid, body);
        // Rotated: the condition is lowered twice, as a guard and at the end
        // of the body, so an iteration takes one branch.
        let (body_b, exit) = (self.b.create_block(), self.b.create_block());
        let go = self.while_test(fid, func, env, cond, creg, &cv)?;
        self.b.ins().brif(go, body_b, &[], exit, &[]);
        self.b.switch_to_block(body_b);
        for (p, v) in bb.params.iter().zip(self.read_vars(&cv)) {
            env.set(*p, v);
        }
        self.lower_block(fid, func, env, body)?;
        let res = Self::vals(env, &bb.results)?;
        self.write_vars(&cv, &res)?;
        self.bump(count);
        let go = self.while_test(fid, func, env, cond, creg, &cv)?;
        self.b.ins().brif(go, body_b, &[], exit, &[]);
        self.b.seal_block(body_b);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.flush_counter(slot, count);
        Ok(self.read_vars(&cv))
    }

    #[allow(clippy::too_many_arguments)]
    fn lower_scan(
        &mut self,
        fid: FuncId,
        func: &Func,
        env: &mut Env,
        init: &[Reg],
        xs: &[Reg],
        length: Option<u64>,
        reverse: bool,
        body: BlockId,
        top: Option<&Top>,
    ) -> Result<Vec<Val>, CompileError> {
        let init_vals = Self::initial_carry(env, init, top)?;
        let Some(blk) = func.blocks.get(body.0 as usize) else { return unsupported!("no block b{}", body.0) };
        let nc = init.len();
        if blk.params.len() < nc || blk.results.len() < nc || init_vals.len() != nc {
            return unsupported!("scan body does not match its carry");
        }
        let (cparams, xparams) = blk.params.split_at(nc);
        let (cres, yres) = blk.results.split_at(nc);
        let xvals = Self::vals(env, xs)?;
        let mut n: Option<usize> = length.map(|l| l as usize);
        for x in &xvals {
            let Some(&lead) = x.shape.first() else { return unsupported!("scan over a scalar {}", x.type_string()) };
            match n {
                None => n = Some(lead),
                Some(k) if k != lead => return unsupported!("scan: xs have leading dimension {lead}, expected {k}"),
                _ => {}
            }
        }
        let Some(n) = n else { return unsupported!("scan needs xs or a length") };
        let cv = self.carry_vars(&init_vals)?;
        let (slot, count) = self.loop_counter(fid, body);
        // The region's own scan writes its ys straight into its outputs.
        let ybase: Vec<Value> = match top {
            Some(t) => (0..yres.len()).map(|j| self.load_ptr(t.outs, nc + j)).collect(),
            None => Vec::new(),
        };
        let tvar = self.b.declare_var(types::I64);
        let t0 = match top {
            Some(t) => t.start,
            None => self.iconst(types::I64, 0),
        };
        self.b.def_var(tvar, t0);
        // Rotated, as `fori_loop`.
        let (bb, exit) = (self.b.create_block(), self.b.create_block());
        let nv = self.iconst(types::I64, n as i64);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, t0, nv);
        self.b.ins().brif(go, bb, &[], exit, &[]);
        self.b.switch_to_block(bb);
        let t = self.b.use_var(tvar);
        let row = if reverse {
            let last = self.iconst(types::I64, n as i64 - 1);
            self.b.ins().isub(last, t)
        } else {
            t
        };
        for (p, x) in xparams.iter().zip(&xvals) {
            let shape = x.shape[1..].to_vec();
            let rn = self.check_size("a scan row", &shape)?;
            let off = if rn == 1 {
                row
            } else {
                let k = self.iconst(types::I64, rn as i64);
                self.b.ins().imul(row, k)
            };
            let elems = self.read_block(x, off, rn)?;
            env.set(*p, Val::elems(x.dtype, shape, elems));
        }
        for (p, v) in cparams.iter().zip(self.read_vars(&cv)) {
            env.set(*p, v);
        }
        self.lower_block(fid, func, env, body)?;
        let cvals = Self::vals(env, cres)?;
        let yvals = Self::vals(env, yres)?;
        // Where each y's rows go: the region's outputs, or a stack slot.
        let mut sinks = Vec::with_capacity(yvals.len());
        for (j, y) in yvals.iter().enumerate() {
            let ys = self.elems(y, "a scan y")?.to_vec();
            let mut shape = vec![n];
            shape.extend_from_slice(&y.shape);
            let rowbytes = y.numel() * y.dtype.size_in_bytes();
            let base = match ybase.get(j) {
                Some(&p) => p,
                None => {
                    self.check_size("scan ys", &shape)?;
                    let size = (n * rowbytes).max(1) as u32;
                    let ss = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, size, 3));
                    sinks.push(ss);
                    self.b.ins().stack_addr(self.ptr, ss, 0)
                }
            };
            let addr = self.offset_addr(base, row, rowbytes);
            self.store_elems(y.dtype, addr, 0, &ys);
        }
        self.write_vars(&cv, &cvals)?;
        let one = self.iconst(types::I64, 1);
        let next = self.b.ins().iadd(t, one);
        self.b.def_var(tvar, next);
        self.bump(count);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, next, nv);
        self.b.ins().brif(go, bb, &[], exit, &[]);
        self.b.seal_block(bb);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.flush_counter(slot, count);
        let mut out = self.read_vars(&cv);
        for (j, y) in yvals.iter().enumerate() {
            let mut shape = vec![n];
            shape.extend_from_slice(&y.shape);
            match (top, sinks.get(j)) {
                (Some(t), _) => out.push(Val { dtype: y.dtype, shape, repr: Repr::Mem(t.outs) }),
                (None, Some(&ss)) => {
                    let base = self.b.ins().stack_addr(self.ptr, ss, 0);
                    let total: usize = shape.iter().product();
                    let xs = self.load_elems(y.dtype, base, 0, total);
                    out.push(Val::elems(y.dtype, shape, xs));
                }
                (None, None) => return unsupported!("scan ys without storage"),
            }
        }
        Ok(out)
    }
}

/// The most instructions a branch may have to be if-converted.
const MAX_CHEAP_BRANCH: usize = 12;

/// `true` when block `b` of `func` is cheap enough to compute
/// unconditionally: a few instructions, no loops, calls or `if`s, no
/// function calls into Rust (transcendentals, `pow`, float `%`) and no
/// division by a value that is not a constant. Everything this lowering
/// emits is free of side effects and traps, so computing it is safe.
fn is_cheap(func: &Func, b: BlockId) -> bool {
    let Some(block) = func.blocks.get(b.0 as usize) else { return false };
    let const_def =
        |r: Reg| func.blocks.iter().flat_map(|b| &b.code).any(|i| matches!(i, Inst::Const { dst, .. } if *dst == r));
    let dtype = |r: Reg| func.reg_types.get(r.0 as usize).map(|t| t.dtype);
    block.code.len() <= MAX_CHEAP_BRANCH
        && block.code.iter().all(|i| match i {
            Inst::Const { .. } | Inst::Move { .. } | Inst::Select { .. } | Inst::Cast { .. } => true,
            Inst::Unary { op, .. } => matches!(op, UnaryOp::Neg | UnaryOp::Not | UnaryOp::Abs | UnaryOp::Relu),
            Inst::Binary { op: BinaryOp::Pow, .. } => false,
            Inst::Binary { op: BinaryOp::Div | BinaryOp::Rem, a, b, .. } => {
                dtype(*a).is_some_and(|d| d.is_int()) && const_def(*b)
            }
            Inst::Binary { .. } => true,
            _ => false,
        })
}

/// Verifies `func` with Cranelift's verifier; the error carries the printed function.
pub(crate) fn verify(func: &ir::Function, isa: &dyn cranelift_codegen::isa::TargetIsa) -> Result<(), CompileError> {
    cranelift_codegen::verify_function(func, isa)
        .map_err(|e| CompileError::Verifier(cranelift_codegen::print_errors::pretty_verifier_error(func, None, e)))
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
    fn python_ranges() {
        assert_eq!(python_range(5, None, None, 1), Some((0, 5)));
        assert_eq!(python_range(5, None, None, -1), Some((4, 5)));
        assert_eq!(python_range(5, Some(1), Some(-1), 2), Some((1, 2)));
        assert_eq!(python_range(5, None, None, 0), None);
    }

    #[test]
    fn the_table_drives_eligibility() {
        assert!(jit_lowerable(Opcode::Binary));
        assert!(jit_lowerable(Opcode::If));
        assert!(!jit_lowerable(Opcode::Print));
        assert!(!jit_lowerable(Opcode::MatMul));
    }
}
