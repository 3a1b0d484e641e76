//! The emitter proper: one pass over the bytecode of a function (or of one
//! loop instruction), with a register → (SSA value, dtype, concrete shape)
//! map, writing StableHLO text.

use super::policy::{LoopUnroll, UnrollOptions};
use super::shapes::{broadcast, broadcasts_to, numel, python_range};
use super::{EmitError, EmitOptions, Lowered, ValueType};
use hashbrown::HashMap;
use loopvm_runtime::kernels::SliceSpec;
use loopvm_runtime::{BinaryOp, Buffer, DType, ReduceOp, Tensor, UnaryOp, UpdateMode};
use loopvm_vm::{BlockId, Func, FuncId, Inst, Module, OpFlags, Reg};
use std::fmt::Write as _;

type Result<T, E = EmitError> = std::result::Result<T, E>;

/// Deepest chain of inlined calls and nested regions accepted.
const MAX_DEPTH: usize = 256;
/// Most loop iterations [`EmitOptions::unroll_all`] unrolls in one loop.
const MAX_UNROLL: u64 = 1_000_000;

/// One SSA value: its name, dtype and concrete shape, and its value when it
/// is a scalar integer constant known at emit time (for unrolling).
#[derive(Clone, Debug)]
struct Val {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    konst: Option<i64>,
}

impl Val {
    fn ty(&self) -> String {
        tensor_type(self.dtype, &self.shape)
    }
    fn vt(&self) -> ValueType {
        (self.dtype, self.shape.clone())
    }
    /// The element count, saturating (parameters whose count overflows are
    /// rejected by [`params_of`]).
    fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }
}

/// Registers of the function being emitted → their values.
type Env = HashMap<Reg, Val>;

/// A scalar literal.
#[derive(Clone, Copy, Debug)]
enum Lit {
    B(bool),
    I(i64),
    F(f64),
}

/// `tensor<2x3xf32>`, `tensor<i1>`.
pub(crate) fn tensor_type(dtype: DType, shape: &[usize]) -> String {
    let mut s = String::from("tensor<");
    for d in shape {
        let _ = write!(s, "{d}x");
    }
    s.push_str(dtype.stablehlo());
    s.push('>');
    s
}

fn int_min(d: DType) -> i64 {
    if d == DType::I64 {
        i64::MIN
    } else {
        i64::from(i32::MIN)
    }
}

fn int_max(d: DType) -> i64 {
    if d == DType::I64 {
        i64::MAX
    } else {
        i64::from(i32::MAX)
    }
}

fn fmt_f32(x: f32) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e7 {
        format!("{x:.1}")
    } else {
        format!("0x{:08X}", x.to_bits())
    }
}

fn fmt_f64(x: f64) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("0x{:016X}", x.to_bits())
    }
}

/// A scalar literal of `dtype`, exact.
fn lit_text(dtype: DType, v: Lit) -> String {
    match (dtype, v) {
        (DType::Bool, Lit::B(b)) => b.to_string(),
        (DType::Bool, Lit::I(i)) => (i != 0).to_string(),
        (DType::Bool, Lit::F(f)) => (f != 0.0).to_string(),
        (DType::I32, Lit::I(i)) => (i as i32).to_string(),
        (DType::I64, Lit::I(i)) => i.to_string(),
        (DType::I32 | DType::I64, Lit::B(b)) => i32::from(b).to_string(),
        (DType::I32, Lit::F(f)) => (f as i32).to_string(),
        (DType::I64, Lit::F(f)) => (f as i64).to_string(),
        (DType::F32, Lit::F(f)) => fmt_f32(f as f32),
        (DType::F32, Lit::I(i)) => fmt_f32(i as f32),
        (DType::F32, Lit::B(b)) => fmt_f32(f32::from(u8::from(b))),
        (DType::F64, Lit::F(f)) => fmt_f64(f),
        (DType::F64, Lit::I(i)) => fmt_f64(i as f64),
        (DType::F64, Lit::B(b)) => fmt_f64(f64::from(u8::from(b))),
    }
}

/// The elements of a constant as literal texts.
fn elements(t: &Tensor) -> Vec<String> {
    match t.buffer() {
        Buffer::Bool(v) => v.iter().map(|b| b.to_string()).collect(),
        Buffer::I32(v) => v.iter().map(|x| x.to_string()).collect(),
        Buffer::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        Buffer::F32(v) => v.iter().map(|x| fmt_f32(*x)).collect(),
        Buffer::F64(v) => v.iter().map(|x| fmt_f64(*x)).collect(),
    }
}

/// Raw little-endian bytes of a numeric constant as `"0x..."`.
fn hex_bytes(t: &Tensor) -> Option<String> {
    let mut s = String::from("\"0x");
    let mut put = |b: &[u8]| {
        b.iter().for_each(|x| {
            let _ = write!(s, "{x:02X}");
        })
    };
    match t.buffer() {
        Buffer::Bool(_) => return None,
        Buffer::I32(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
        Buffer::I64(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
        Buffer::F32(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
        Buffer::F64(v) => v.iter().for_each(|x| put(&x.to_le_bytes())),
    }
    s.push('"');
    Some(s)
}

/// Nests `items` (row-major) into `[[...], [...]]` by `shape`.
fn nest(items: &[String], shape: &[usize], out: &mut String) {
    match shape.split_first() {
        None => out.push_str(items.first().map_or("0", |s| s.as_str())),
        Some((&d, rest)) => {
            let inner: usize = rest.iter().product();
            out.push('[');
            for i in 0..d {
                if i > 0 {
                    out.push_str(", ");
                }
                let lo = (i * inner).min(items.len());
                let hi = ((i + 1) * inner).min(items.len());
                nest(&items[lo..hi], rest, out);
            }
            out.push(']');
        }
    }
}

/// The `dense<...>` body of a constant tensor.
fn dense(t: &Tensor) -> String {
    if t.numel() == 0 {
        return lit_text(t.dtype(), Lit::I(0));
    }
    let items = elements(t);
    if items.iter().all(|s| *s == items[0]) {
        return items[0].clone();
    }
    if items.len() > 256 {
        if let Some(h) = hex_bytes(t) {
            return h;
        }
    }
    let mut s = String::new();
    nest(&items, t.shape(), &mut s);
    s
}

fn cmp_type(d: DType) -> &'static str {
    match d {
        DType::Bool => "UNSIGNED",
        DType::I32 | DType::I64 => "SIGNED",
        DType::F32 | DType::F64 => "FLOAT",
    }
}

fn dims_list(d: &[usize]) -> String {
    let v: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    format!("[{}]", v.join(", "))
}

fn i64_array(d: &[i64]) -> String {
    let v: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    format!("array<i64: {}>", v.join(", "))
}

fn op_name(inst: &Inst) -> String {
    let base = inst.opcode().info().name.to_lowercase();
    match inst {
        Inst::Unary { op, .. } => format!("{base} {op}"),
        Inst::Binary { op, .. } => format!("{base} {op}"),
        Inst::Reduce { op, .. } => format!("{base} {op}"),
        Inst::Update { mode, .. } => format!("{base} {mode}"),
        _ => base,
    }
}

fn sanitize(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() {
        "f".into()
    } else {
        s
    }
}

/// The registers that `blocks` (and the blocks nested in them) use but do
/// not define, in order of first use, without repeats.
fn free_regs(func: &Func, blocks: &[BlockId]) -> Vec<Reg> {
    let n = func.reg_types.len();
    let mut defined = vec![false; n];
    let mut seen = vec![false; n];
    let mut order = Vec::new();
    let mut visited = vec![false; func.blocks.len()];
    let mut stack: Vec<BlockId> = blocks.iter().rev().copied().collect();
    while let Some(b) = stack.pop() {
        let Some(blk) = func.blocks.get(b.0 as usize) else { continue };
        if std::mem::replace(&mut visited[b.0 as usize], true) {
            continue;
        }
        order.push(b);
        for i in blk.code.iter().rev() {
            stack.extend(i.blocks().into_iter().rev());
        }
    }
    let mark = |r: Reg, v: &mut Vec<bool>| {
        if let Some(d) = v.get_mut(r.0 as usize) {
            *d = true;
        }
    };
    for b in &order {
        let blk = &func.blocks[b.0 as usize];
        blk.params.iter().for_each(|p| mark(*p, &mut defined));
        for i in &blk.code {
            i.visit_defs(&mut |r| mark(r, &mut defined));
        }
    }
    let mut out = Vec::new();
    let mut note = |r: Reg| {
        let i = r.0 as usize;
        if i < n && !defined[i] && !seen[i] {
            seen[i] = true;
            out.push(r);
        }
    };
    for b in &order {
        let blk = &func.blocks[b.0 as usize];
        for i in &blk.code {
            i.visit_uses(&mut |r| note(r));
        }
        blk.results.iter().for_each(|r| note(*r));
    }
    out
}

#[path = "shield.rs"]
mod shield;
#[path = "unroll.rs"]
mod unroll;
use shield::Made;
use unroll::{while_env, ForiCtx, ScanCtx};

/// Binds `regs` to `vals` in `env`, pairwise.
fn bind_params(env: &mut Env, regs: &[Reg], vals: &[Val]) {
    for (r, v) in regs.iter().zip(vals) {
        env.insert(*r, v.clone());
    }
}

/// A metered loop's fuel: its value before the loop, and its loop-side
/// name and value.
pub(super) struct Fuel {
    init: Val,
    name: String,
    iter: Val,
}

/// The emitter's state.
struct Emitter<'m> {
    m: &'m Module,
    opts: EmitOptions,
    unroll: UnrollOptions,
    out: String,
    indent: usize,
    next: usize,
    depth: usize,
    whiles: usize,
    unrolls: Vec<LoopUnroll>,
    /// Names of values computed from constants only: XLA may fold them.
    folds: hashbrown::HashSet<String>,
    /// Names of values computed from constants only through barriers too:
    /// LLVM folds them once XLA has removed the barriers (keeping
    /// subnormals, which every tier flushes; see `float_bin`).
    consts: hashbrown::HashSet<String>,
    /// The op that made a value, where XLA's simplifier would rewrite its
    /// consumer (see [`shield`]).
    makers: hashbrown::HashMap<String, Made>,
    /// Metered modules: the iterations left at this point of the emission.
    fuel: Option<Val>,
    /// Bytes of the largest value emitted so far.
    peak: usize,
}

impl<'m> Emitter<'m> {
    fn new(m: &'m Module, opts: &EmitOptions, unroll: &UnrollOptions) -> Emitter<'m> {
        Emitter {
            m,
            opts: *opts,
            unroll: *unroll,
            out: String::new(),
            indent: 2,
            next: 0,
            depth: 0,
            whiles: 0,
            unrolls: Vec::new(),
            folds: hashbrown::HashSet::new(),
            consts: hashbrown::HashSet::new(),
            makers: hashbrown::HashMap::new(),
            fuel: None,
            peak: 0,
        }
    }

    fn fresh(&mut self) -> String {
        let s = format!("%{}", self.next);
        self.next += 1;
        s
    }

    fn fresh_named(&mut self, base: &str) -> String {
        let s = format!("%{base}_{}", self.next);
        self.next += 1;
        s
    }

    fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Emits `%n = <rhs>` and returns `%n` with the given type.
    fn op(&mut self, dtype: DType, shape: &[usize], rhs: String) -> Val {
        let bytes = shape.iter().fold(dtype.size_in_bytes(), |a, &d| a.saturating_mul(d));
        self.peak = self.peak.max(bytes);
        let name = self.fresh();
        self.line(&format!("{name} = {rhs}"));
        Val { name, dtype, shape: shape.to_vec(), konst: None }
    }

    /// Runs `f` with the output redirected into a fresh buffer one level
    /// deeper, and returns that buffer's text with `f`'s result.
    fn region<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<(String, R)> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            return Err(EmitError::new("region", format!("regions and calls nested deeper than {MAX_DEPTH}")));
        }
        let saved = std::mem::take(&mut self.out);
        self.indent += 1;
        let r = f(self);
        self.indent -= 1;
        self.depth -= 1;
        let text = std::mem::replace(&mut self.out, saved);
        r.map(|v| (text, v))
    }

    // ---------------------------------------------------------------- basics

    fn splat(&mut self, dtype: DType, shape: &[usize], v: Lit) -> Val {
        let konst = match (shape.is_empty(), dtype, v) {
            (true, DType::I32 | DType::I64, Lit::I(i)) => Some(i),
            _ => None,
        };
        let mut r = self.op(
            dtype,
            shape,
            format!("stablehlo.constant dense<{}> : {}", lit_text(dtype, v), tensor_type(dtype, shape)),
        );
        r.konst = konst;
        self.folds.insert(r.name.clone());
        r
    }

    fn zero(&mut self, dtype: DType, shape: &[usize]) -> Val {
        let v = if dtype.is_float() {
            Lit::F(0.0)
        } else if dtype == DType::Bool {
            Lit::B(false)
        } else {
            Lit::I(0)
        };
        self.splat(dtype, shape, v)
    }

    fn constant(&mut self, t: &Tensor) -> Val {
        let mut v = self.op(
            t.dtype(),
            t.shape(),
            format!("stablehlo.constant dense<{}> : {}", dense(t), tensor_type(t.dtype(), t.shape())),
        );
        if t.numel() == 1 && t.dtype().is_int() {
            v.konst = t.scalar_i64();
        }
        self.folds.insert(v.name.clone());
        v
    }

    /// `true` when XLA can compute `v` at compile time (it is built from
    /// constants only).
    fn is_folded(&self, v: &Val) -> bool {
        self.folds.contains(&v.name)
    }

    /// `true` when `v` is computed from constants only, XLA seeing it or
    /// not (through barriers, which are gone when LLVM compiles).
    fn is_const(&self, v: &Val) -> bool {
        self.folds.contains(&v.name) || self.consts.contains(&v.name)
    }

    /// Marks `r` as computed from constants when all of `from` are.
    fn fold_from(&mut self, r: Val, from: &[&Val]) -> Val {
        if from.iter().all(|v| self.is_folded(v)) {
            self.folds.insert(r.name.clone());
        } else if from.iter().all(|v| self.is_const(v)) {
            self.consts.insert(r.name.clone());
        }
        r
    }

    // ------------------------------------------------------------- metering

    /// Metered: the fuel of a loop about to be emitted (its state gets one
    /// more `tensor<i64>`, last).
    pub(super) fn fuel_state(&mut self) -> Option<Fuel> {
        let init = self.fuel.clone()?;
        let name = self.fresh_named("fuel");
        let iter = Val { name: name.clone(), dtype: DType::I64, shape: vec![], konst: None };
        Some(Fuel { init, name, iter })
    }

    /// A loop's condition `c`; metered, `c` and fuel left.
    pub(super) fn fuel_cond(&mut self, c: Val, fs: Option<&Fuel>) -> Val {
        let Some(f) = fs else { return c };
        let z = self.splat(DType::I64, &[], Lit::I(0));
        let pos = self.cmp("GT", &f.iter, &z);
        self.bin("and", &c, &pos)
    }

    /// A loop body's region: `f` emits one iteration and returns the next
    /// state (and anything else). Metered, the body runs on the loop-side
    /// fuel, and the fuel left after the iteration (one taken, and what its
    /// inner loops took) is appended to the state.
    pub(super) fn body_region<R>(
        &mut self,
        fs: Option<&Fuel>,
        f: impl FnOnce(&mut Self) -> Result<(Vec<Val>, R)>,
    ) -> Result<(String, Vec<Val>, R)> {
        let outer = self.fuel.clone();
        let r = self.region(|e| {
            if let Some(fs) = fs {
                e.fuel = Some(fs.iter.clone());
            }
            let (mut next, extra) = f(e)?;
            if let (Some(_), Some(left)) = (fs, e.fuel.clone()) {
                let one = e.splat(DType::I64, &[], Lit::I(1));
                next.push(e.bin("subtract", &left, &one));
            }
            Ok((next, extra))
        });
        self.fuel = outer;
        let (text, (next, extra)) = r?;
        Ok((text, next, extra))
    }

    /// After a metered loop whose state after the loop is `outs` (the fuel
    /// last): the current fuel becomes that fuel, or -1 when it ran out
    /// while the loop's condition, `still`, held (it wanted one more
    /// iteration). `still` is emitted without fuel (a condition runs no
    /// metered loop).
    pub(super) fn fuel_settle(
        &mut self,
        fs: Option<&Fuel>,
        outs: &[Val],
        still: impl FnOnce(&mut Self) -> Result<Val>,
    ) -> Result<()> {
        let (Some(_), Some(f)) = (fs, outs.last()) else { return Ok(()) };
        let saved = self.fuel.take();
        let still = still(self);
        self.fuel = saved;
        let still = still?;
        let z = self.splat(DType::I64, &[], Lit::I(0));
        let empty = self.cmp("EQ", f, &z);
        let stop = self.bin("and", &empty, &still);
        let m1 = self.splat(DType::I64, &[], Lit::I(-1));
        let r = self.select(&stop, &m1, f);
        self.fuel = Some(r);
        Ok(())
    }

    /// A float `v` with subnormal elements made (signed) zeros, whatever
    /// code XLA picks for the op that reads or made it.
    fn flushed(&mut self, v: &Val) -> Val {
        let min = match v.dtype {
            DType::F32 => f64::from(f32::MIN_POSITIVE),
            DType::F64 => f64::MIN_POSITIVE,
            _ => return v.clone(),
        };
        let m = self.splat(v.dtype, &v.shape, Lit::F(min));
        let a = self.un("abs", v);
        let tiny = self.cmp("LT", &a, &m);
        let z = self.zero(v.dtype, &v.shape);
        let signed_zero = self.bin("multiply", v, &z);
        self.select(&tiny, &signed_zero, v)
    }

    /// A float divisor XLA must not see as a constant: its simplifier turns
    /// `x / c` into `x * (1 / c)`, which is not correctly rounded (`10 / 3`
    /// is one ulp off) and is wrong where `1 / c` is subnormal and flushed
    /// (`inf / -3.4e38` gives NaN). The interpreter divides.
    ///
    /// A divisor is hidden whether or not the emitter sees it as a constant:
    /// XLA folds more than the emitter tracks (a `maximum` of constants
    /// inside an inlined call was one), and a barrier costs nothing at run
    /// time (XLA removes barriers before fusion). Only under a constant
    /// dividend is it left to XLA's folder (`float_bin` flushes a subnormal
    /// quotient).
    fn opaque_divisor(&mut self, a: &Val, b: &Val) -> Val {
        if !b.dtype.is_float() || self.is_folded(a) {
            return b.clone();
        }
        self.barrier(b)
    }

    /// A same-type elementwise op.
    fn un(&mut self, name: &str, a: &Val) -> Val {
        let r = self.op(a.dtype, &a.shape, format!("stablehlo.{name} {} : {}", a.name, a.ty()));
        self.fold_from(r, &[a])
    }

    /// A same-type elementwise binary op; `a` and `b` have one type.
    fn bin(&mut self, name: &str, a: &Val, b: &Val) -> Val {
        let r = self.op(a.dtype, &a.shape, format!("stablehlo.{name} {}, {} : {}", a.name, b.name, a.ty()));
        self.fold_from(r, &[a, b])
    }

    fn cmp(&mut self, dir: &str, a: &Val, b: &Val) -> Val {
        let r = self.op(
            DType::Bool,
            &a.shape,
            format!(
                "stablehlo.compare {dir}, {}, {}, {} : ({}, {}) -> {}",
                a.name,
                b.name,
                cmp_type(a.dtype),
                a.ty(),
                b.ty(),
                tensor_type(DType::Bool, &a.shape)
            ),
        );
        self.fold_from(r, &[a, b])
    }

    /// `where(c, a, b)`, all of one shape.
    fn select(&mut self, c: &Val, a: &Val, b: &Val) -> Val {
        let r = self.op(
            a.dtype,
            &a.shape,
            format!("stablehlo.select {}, {}, {} : {}, {}", c.name, a.name, b.name, c.ty(), a.ty()),
        );
        self.fold_from(r, &[c, a, b])
    }

    fn convert(&mut self, a: &Val, to: DType) -> Val {
        if a.dtype == to {
            return a.clone();
        }
        let r = self.op(
            to,
            &a.shape,
            format!("stablehlo.convert {} : ({}) -> {}", a.name, a.ty(), tensor_type(to, &a.shape)),
        );
        self.fold_from(r, &[a])
    }

    fn reshape(&mut self, a: &Val, shape: &[usize]) -> Val {
        if a.shape == shape {
            return a.clone();
        }
        let mut r = self.op(
            a.dtype,
            shape,
            format!("stablehlo.reshape {} : ({}) -> {}", a.name, a.ty(), tensor_type(a.dtype, shape)),
        );
        if numel(shape) == Some(1) {
            r.konst = a.konst;
        }
        self.carry_maker(&r, a);
        self.fold_from(r, &[a])
    }

    /// `a` broadcast to `shape` (NumPy rules; the caller checked them).
    fn broadcast_to(&mut self, a: &Val, shape: &[usize]) -> Val {
        if a.shape == shape {
            return a.clone();
        }
        let lead = shape.len() - a.shape.len();
        let dims: Vec<usize> = (lead..shape.len()).collect();
        // Stretched axes (1 → n) are expressed by broadcast_in_dim directly.
        let r = self.op(
            a.dtype,
            shape,
            format!(
                "stablehlo.broadcast_in_dim {}, dims = {} : ({}) -> {}",
                a.name,
                dims_list(&dims),
                a.ty(),
                tensor_type(a.dtype, shape)
            ),
        );
        self.carry_maker(&r, a);
        self.fold_from(r, &[a])
    }

    /// A scalar (one-element) integer or bool value as a rank-0 index of `to`.
    fn scalar_index(&mut self, what: &str, a: &Val, to: DType) -> Result<Val> {
        if a.numel() != 1 {
            return Err(EmitError::new(what, format!("index is not a scalar, got {}", a.ty())));
        }
        if a.dtype.is_float() {
            return Err(EmitError::new(what, format!("index is not an integer, got {}", a.ty())));
        }
        let s = self.reshape(a, &[]);
        let mut c = self.convert(&s, to);
        c.konst = s.konst;
        Ok(c)
    }

    /// NaN-propagating `maximum` (`is_max`) or `minimum` of floats, exactly
    /// as the kernels: `a` if `a` is NaN or wins (ties keep `a`), else `b`.
    fn max_min_float(&mut self, is_max: bool, a: &Val, b: &Val) -> Val {
        let a_nan = self.cmp("NE", a, a);
        let wins = self.cmp(if is_max { "LE" } else { "GE" }, b, a);
        let keep = self.bin("or", &a_nan, &wins);
        let r = self.select(&keep, a, b);
        self.made(&r, Made::Select);
        r
    }

    // --------------------------------------------------------------- regions

    /// Emits the code of block `b` of `func`.
    fn block(&mut self, func: &Func, b: BlockId, env: &mut Env) -> Result<()> {
        let blk = func.blocks.get(b.0 as usize).ok_or_else(|| EmitError::new("block", format!("no block b{}", b.0)))?;
        for inst in &blk.code {
            self.inst(func, inst, env)?;
        }
        Ok(())
    }

    fn get(env: &Env, inst: &Inst, r: Reg) -> Result<Val> {
        env.get(&r)
            .cloned()
            .ok_or_else(|| EmitError::new(op_name(inst), format!("register r{} is read before it is written", r.0)))
    }

    fn results(func: &Func, b: BlockId, env: &Env, what: &str) -> Result<Vec<Val>> {
        let blk = func.blocks.get(b.0 as usize).ok_or_else(|| EmitError::new(what, format!("no block b{}", b.0)))?;
        blk.results
            .iter()
            .map(|r| {
                env.get(r)
                    .cloned()
                    .ok_or_else(|| EmitError::new(what, format!("block result r{} is never written", r.0)))
            })
            .collect()
    }

    /// Writes a `stablehlo.while` over `init` (whose loop-side names are
    /// `iters`), then `fuel` when metered, with the given region texts, and
    /// returns its results (the fuel last).
    #[allow(clippy::too_many_arguments)]
    fn write_while(
        &mut self,
        what: &str,
        init: &[Val],
        iters: &[String],
        fuel: Option<&Fuel>,
        cond_text: &str,
        cond: &Val,
        body_text: &str,
        next: &[Val],
    ) -> Result<Vec<Val>> {
        let mut init = init.to_vec();
        let mut iters = iters.to_vec();
        if let Some(f) = fuel {
            init.push(f.init.clone());
            iters.push(f.name.clone());
        }
        let (init, iters) = (&init[..], &iters[..]);
        if init.is_empty() {
            return Err(EmitError::new(what, "a loop without state"));
        }
        if next.len() != init.len() {
            return Err(EmitError::new(
                what,
                format!("the body returns {} values for {} carried", next.len(), init.len()),
            ));
        }
        for (k, (a, b)) in init.iter().zip(next).enumerate() {
            if a.dtype != b.dtype || a.shape != b.shape {
                return Err(EmitError::new(
                    what,
                    format!("carry {k} changes type from {} to {} in the body", a.ty(), b.ty()),
                ));
            }
        }
        if cond.dtype != DType::Bool || !cond.shape.is_empty() {
            return Err(EmitError::new(what, format!("condition is {}, not a bool scalar", cond.ty())));
        }
        self.whiles += 1;
        let types: Vec<String> = init.iter().map(Val::ty).collect();
        let types = types.join(", ");
        let base = self.fresh();
        let head = if init.len() == 1 { base.clone() } else { format!("{base}:{}", init.len()) };
        let args: Vec<String> = iters.iter().zip(init).map(|(i, v)| format!("{i} = {}", v.name)).collect();
        self.line(&format!("{head} = stablehlo.while({}) : {types}", args.join(", ")));
        self.line("cond {");
        self.out.push_str(cond_text);
        self.indent += 1;
        self.line(&format!("stablehlo.return {} : tensor<i1>", cond.name));
        self.indent -= 1;
        self.line("} do {");
        self.out.push_str(body_text);
        self.indent += 1;
        let names: Vec<&str> = next.iter().map(|v| v.name.as_str()).collect();
        self.line(&format!("stablehlo.return {} : {types}", names.join(", ")));
        self.indent -= 1;
        self.line("}");
        let outs: Vec<Val> = init
            .iter()
            .enumerate()
            .map(|(k, v)| Val {
                name: if init.len() == 1 { base.clone() } else { format!("{base}#{k}") },
                dtype: v.dtype,
                shape: v.shape.clone(),
                konst: None,
            })
            .collect();
        // XLA removes a loop it proves runs no trip (the result is the
        // initial value) and inlines one that runs one (the result is the
        // body's): either may be a constant LLVM folds, keeping subnormals
        // (see `float_bin`).
        for (k, out) in outs.iter().enumerate() {
            if self.is_const(&init[k]) || self.is_const(&next[k]) {
                self.consts.insert(out.name.clone());
            }
        }
        Ok(outs)
    }

    /// Loop-side values for `init`: fresh names, same types; `invariant[k]`
    /// keeps the known constant value.
    fn iter_vals(&mut self, init: &[Val], invariant: &[bool]) -> (Vec<String>, Vec<Val>) {
        let names: Vec<String> = init.iter().map(|_| self.fresh_named("iterArg")).collect();
        for (k, (n, v)) in names.iter().zip(init).enumerate() {
            // XLA sinks constant loop invariants into the loop body.
            if invariant.get(k).copied().unwrap_or(false) && self.is_folded(v) {
                self.folds.insert(n.clone());
            }
        }
        let vals = names
            .iter()
            .zip(init)
            .enumerate()
            .map(|(k, (n, v))| Val {
                name: n.clone(),
                dtype: v.dtype,
                shape: v.shape.clone(),
                konst: if invariant.get(k).copied().unwrap_or(false) { v.konst } else { None },
            })
            .collect();
        (names, vals)
    }

    /// The values of the registers a loop's blocks capture.
    fn captures(&self, func: &Func, inst: &Inst, env: &Env) -> Result<(Vec<Reg>, Vec<Val>)> {
        let regs = free_regs(func, &inst.blocks());
        let vals = regs.iter().map(|r| Self::get(env, inst, *r)).collect::<Result<Vec<_>>>()?;
        Ok((regs, vals))
    }

    // ------------------------------------------------------------ dispatch

    fn inst(&mut self, func: &Func, inst: &Inst, env: &mut Env) -> Result<()> {
        let info = inst.opcode().info();
        if !info.flags.contains(OpFlags::XLA) {
            return Err(EmitError::new(op_name(inst), info.no_xla));
        }
        let g = |r: &Reg| Self::get(env, inst, *r);
        let name = || op_name(inst);
        let (dst, v) = match inst {
            Inst::Const { dst, k } => {
                let t = self.m.consts.get(k.0 as usize).ok_or_else(|| EmitError::new(name(), "no such constant"))?;
                (*dst, self.constant(t))
            }
            Inst::Move { dst, src } => (*dst, g(src)?),
            Inst::Unary { op, dst, a } => (*dst, self.unary(*op, &g(a)?)?),
            Inst::Binary { op, dst, a, b } => (*dst, self.binary(*op, &g(a)?, &g(b)?)?),
            Inst::Select { dst, c, a, b } => (*dst, self.where_(&g(c)?, &g(a)?, &g(b)?)?),
            Inst::Cast { dst, a, to } => (*dst, self.cast(&g(a)?, *to)),
            Inst::Iota { dst, dtype, n } => (*dst, self.iota(*dtype, *n)?),
            Inst::MatMul { dst, a, b } => (*dst, self.matmul(&g(a)?, &g(b)?)?),
            Inst::Reduce { op, dst, a, axis } => (*dst, self.reduce(*op, &g(a)?, axis.0)?),
            Inst::Reshape { dst, a, shape } => {
                let a = g(a)?;
                let s = usize_dims(&shape.0).ok_or_else(|| EmitError::new(name(), "dimension too large"))?;
                if numel(&s) != Some(a.numel()) {
                    return Err(EmitError::new(name(), format!("cannot reshape {} into shape {s:?}", a.ty())));
                }
                (*dst, self.reshape(&a, &s))
            }
            Inst::Transpose { dst, a, perm } => (*dst, self.transpose(&g(a)?, perm.0.as_deref())?),
            Inst::Broadcast { dst, a, shape } => {
                let a = g(a)?;
                let s = usize_dims(&shape.0).ok_or_else(|| EmitError::new(name(), "dimension too large"))?;
                if !broadcasts_to(&a.shape, &s) || numel(&s).is_none() {
                    return Err(EmitError::new(name(), format!("cannot broadcast {} to shape {s:?}", a.ty())));
                }
                (*dst, self.broadcast_to(&a, &s))
            }
            Inst::Concat { dst, srcs, axis } => {
                let vs = srcs.iter().map(g).collect::<Result<Vec<_>>>()?;
                (*dst, self.concat(&vs, axis.0 as usize)?)
            }
            Inst::Stack { dst, srcs, axis } => {
                let vs = srcs.iter().map(g).collect::<Result<Vec<_>>>()?;
                (*dst, self.stack(&vs, axis.0 as usize)?)
            }
            Inst::Slice { dst, a, specs } => (*dst, self.slice(&g(a)?, &specs.0)?),
            Inst::Index { dst, a, idx } => {
                let ix = idx.iter().map(g).collect::<Result<Vec<_>>>()?;
                (*dst, self.index(&g(a)?, &ix)?)
            }
            Inst::Update { mode, dst, a, idx, v } => {
                let ix = idx.iter().map(g).collect::<Result<Vec<_>>>()?;
                (*dst, self.update(*mode, &g(a)?, &ix, &g(v)?)?)
            }
            Inst::ShapeOf { dst, a } => {
                let a = g(a)?;
                let s: Vec<i32> = a.shape.iter().map(|&d| i32::try_from(d).unwrap_or(i32::MAX)).collect();
                let t = Tensor::from_vec(&[s.len()], s).map_err(|e| EmitError::new(name(), e.message))?;
                (*dst, self.constant(&t))
            }
            Inst::Print { .. } => return Err(EmitError::new(name(), info.no_xla)),
            Inst::Call { dsts, func: callee, args } => {
                let vs = args.iter().map(g).collect::<Result<Vec<_>>>()?;
                let outs = self.call(*callee, &vs)?;
                return bind(inst, env, dsts, outs);
            }
            Inst::If { dsts, c, then_, else_ } => {
                let c = g(c)?;
                let outs = self.if_(func, inst, env, &c, *then_, *else_, dsts.len())?;
                return bind(inst, env, dsts, outs);
            }
            Inst::Fori { dsts, lo, hi, init, body, .. } => {
                let (lo, hi) = (g(lo)?, g(hi)?);
                let init = init.iter().map(g).collect::<Result<Vec<_>>>()?;
                let outs = self.fori(func, inst, env, &lo, &hi, &init, *body)?;
                return bind(inst, env, dsts, outs);
            }
            Inst::While { dsts, init, cond, body } => {
                let init = init.iter().map(g).collect::<Result<Vec<_>>>()?;
                let outs = self.while_(func, inst, env, &init, *cond, *body)?;
                return bind(inst, env, dsts, outs);
            }
            Inst::Scan { dsts, init, xs, length, reverse, body, .. } => {
                let init = init.iter().map(g).collect::<Result<Vec<_>>>()?;
                let xs = xs.iter().map(g).collect::<Result<Vec<_>>>()?;
                let outs = self.scan(func, inst, env, &init, &xs, length.0, *reverse, *body)?;
                return bind(inst, env, dsts, outs);
            }
        };
        env.insert(dst, v);
        Ok(())
    }

    // ------------------------------------------------------- elementwise

    /// Elementwise unary `op`: the dtypes and the StableHLO op come from
    /// its row in the op table ([`UnaryOp::accepts`], [`UnaryOp::stablehlo`]).
    fn unary(&mut self, op: UnaryOp, a: &Val) -> Result<Val> {
        let accepts = op.accepts();
        if !accepts.accepts(a.dtype) {
            let why = format!("{op} requires {}, got {}", accepts.requirement(), a.ty());
            return Err(EmitError::new(format!("unary {op}"), why));
        }
        Ok(match op {
            UnaryOp::Neg => {
                // -(a * c1) * c2 is reassociated too: the negation carries the maker.
                let r = self.un("negate", a);
                self.carry_maker(&r, a);
                r
            }
            UnaryOp::Relu => {
                let z = self.zero(a.dtype, &a.shape);
                if a.dtype.is_float() {
                    self.max_min_float(true, a, &z)
                } else {
                    self.bin("maximum", a, &z)
                }
            }
            UnaryOp::Not | UnaryOp::Abs if !a.dtype.is_float() => self.row_un(op, a),
            UnaryOp::Not
            | UnaryOp::Abs
            | UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Sqrt
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Erf
            | UnaryOp::Rsqrt => self.float_un(op, a),
        })
    }

    /// A float unary op on `a`, spelled as its table row says, shielded
    /// from the simplifier ([`shield`]); its result recorded as made by it.
    fn float_un(&mut self, op: UnaryOp, a: &Val) -> Val {
        let a = self.shield_unary(op, a);
        let mut r = self.row_un(op, &a);
        if op == UnaryOp::Exp && !self.is_folded(&a) {
            // XLA CPU bug: its exp of a NaN that LLVM sees as a constant
            // (`exp(x + 0.0 / 0.0)`) is garbage (5.9e-13, 3.1e-41, ...),
            // while a run-time NaN gives NaN. A NaN operand is its own
            // result, chosen after the exp.
            let nan = self.cmp("NE", &a, &a);
            r = self.select(&nan, &a, &r);
        }
        self.made(&r, Made::of(op));
        r
    }

    /// Unary `op` on `a` as its table row spells it ([`UnaryOp::stablehlo`]).
    fn row_un(&mut self, op: UnaryOp, a: &Val) -> Val {
        let ty = a.ty();
        // CHLO ops (XLA decomposes them) print their result type too.
        let sig = if op.stablehlo().starts_with("chlo.") { format!("{ty} -> {ty}") } else { ty };
        let r = self.op(a.dtype, &a.shape, format!("{} {} : {sig}", op.stablehlo(), a.name));
        self.fold_from(r, &[a])
    }

    /// A float arithmetic binary op shielded from the simplifier ([`shield`]).
    fn float_bin(&mut self, name: &str, a: &Val, b: &Val) -> Val {
        // Two constants: XLA's folder (or LLVM's, for an add or subtract
        // whose second constant `shield_binary` hides) computes the op
        // exactly but keeps a subnormal result, which every tier flushes
        // when it runs (`1.2e-38 / 34.375` is 0): the result is flushed
        // explicitly.
        let constants = a.dtype.is_float() && self.is_const(a) && self.is_const(b) && name != "power";
        let (a, b) = self.shield_binary(name, a, b);
        let b = if name == "divide" { self.opaque_divisor(&a, &b) } else { b };
        let (a, b) = if name == "power" {
            // XLA's power reads a subnormal operand as zero in its
            // vector code but not in its scalar code and folder
            // (`0 ** 1e-40` is 1 or 0): flushed here, as on every tier.
            (self.flushed(&a), self.flushed(&b))
        } else {
            (a, b)
        };
        let m = self.binary_maker(name, &a, &b);
        let r = self.bin(name, &a, &b);
        let r = if constants { self.flushed(&r) } else { r };
        if let Some(m) = m {
            self.made(&r, m);
        }
        r
    }

    /// A comparison, float operands shielded from the simplifier's folds.
    fn compare(&mut self, dir: &str, a: &Val, b: &Val) -> Val {
        let (a, b) = self.shield_binary("compare", a, b);
        self.cmp(dir, &a, &b)
    }

    fn binary(&mut self, op: BinaryOp, a: &Val, b: &Val) -> Result<Val> {
        let what = format!("binary {op}");
        let types = || format!("lhs: {}, rhs: {}", a.ty(), b.ty());
        if a.dtype != b.dtype {
            return Err(EmitError::new(what, format!("dtype mismatch in {op}, {}", types())));
        }
        let shape = broadcast(&a.shape, &b.shape)
            .ok_or_else(|| EmitError::new(what.clone(), format!("shapes do not broadcast, {}", types())))?;
        let d = a.dtype;
        let numeric_only =
            matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem | BinaryOp::Pow);
        if d == DType::Bool && numeric_only {
            return Err(EmitError::new(what, format!("numeric operands required in {op}, {}", types())));
        }
        if d != DType::Bool && op.is_logic() {
            return Err(EmitError::new(what, format!("bool operands required in {op}, {}", types())));
        }
        let x = self.broadcast_to(a, &shape);
        let y = self.broadcast_to(b, &shape);
        Ok(match op {
            BinaryOp::Div | BinaryOp::Rem if d.is_int() => self.int_div_rem(op == BinaryOp::Div, &x, &y),
            BinaryOp::Pow if d.is_int() => self.int_pow(&x, &y),
            BinaryOp::Add => self.float_bin("add", &x, &y),
            BinaryOp::Sub => self.float_bin("subtract", &x, &y),
            BinaryOp::Mul => self.float_bin("multiply", &x, &y),
            BinaryOp::Div => self.float_bin("divide", &x, &y),
            BinaryOp::Rem => self.bin("remainder", &x, &y),
            BinaryOp::Pow => self.float_bin("power", &x, &y),
            BinaryOp::Max | BinaryOp::Min if d == DType::Bool => {
                self.bin(if op == BinaryOp::Max { "or" } else { "and" }, &x, &y)
            }
            BinaryOp::Max | BinaryOp::Min if d.is_float() => self.max_min_float(op == BinaryOp::Max, &x, &y),
            BinaryOp::Max => self.bin("maximum", &x, &y),
            BinaryOp::Min => self.bin("minimum", &x, &y),
            BinaryOp::Eq => self.compare("EQ", &x, &y),
            BinaryOp::Ne => self.compare("NE", &x, &y),
            BinaryOp::Lt => self.compare("LT", &x, &y),
            BinaryOp::Le => self.compare("LE", &x, &y),
            BinaryOp::Gt => self.compare("GT", &x, &y),
            BinaryOp::Ge => self.compare("GE", &x, &y),
            BinaryOp::And => self.bin("and", &x, &y),
            BinaryOp::Or => self.bin("or", &x, &y),
        })
    }

    /// Integer `/` or `%` with XLA's results for a zero divisor and for
    /// `MIN / -1`, computed with a divisor that is never 0 or -1 against
    /// MIN (XLA's constant folder traps on those).
    fn int_div_rem(&mut self, div: bool, a: &Val, b: &Val) -> Val {
        let d = a.dtype;
        let zero = self.splat(d, &a.shape, Lit::I(0));
        let one = self.splat(d, &a.shape, Lit::I(1));
        let m1 = self.splat(d, &a.shape, Lit::I(-1));
        let min = self.splat(d, &a.shape, Lit::I(int_min(d)));
        let bz = self.cmp("EQ", b, &zero);
        let am = self.cmp("EQ", a, &min);
        let bm = self.cmp("EQ", b, &m1);
        let ovf = self.bin("and", &am, &bm);
        let bad = self.bin("or", &bz, &ovf);
        let safe = self.select(&bad, &one, b);
        if div {
            let q = self.bin("divide", a, &safe);
            self.select(&bz, &m1, &q)
        } else {
            let r = self.bin("remainder", a, &safe);
            self.select(&bz, a, &r)
        }
    }

    /// Integer `a ** b` exactly as the kernel computes it: repeated squaring
    /// over every bit of the exponent, wrapping (XLA's own `power` reads only
    /// the exponent's low bits, so `2 ** 64` would be 1); a negative exponent
    /// gives 0, except `1 ** b = 1` and `(-1) ** b = ±1`.
    fn int_pow(&mut self, a: &Val, b: &Val) -> Val {
        let d = a.dtype;
        let bits = 8 * d.size_in_bytes();
        let zero = self.splat(d, &a.shape, Lit::I(0));
        let one = self.splat(d, &a.shape, Lit::I(1));
        let m1 = self.splat(d, &a.shape, Lit::I(-1));
        let neg = self.cmp("LT", b, &zero);
        let mut e = self.select(&neg, &zero, b);
        let mut base = a.clone();
        let mut p = one.clone();
        for k in 0..bits {
            let bit = self.bin("and", &e, &one);
            let set = self.cmp("NE", &bit, &zero);
            let times = self.bin("multiply", &p, &base);
            p = self.select(&set, &times, &p);
            if k + 1 < bits {
                base = self.bin("multiply", &base, &base);
                e = self.bin("shift_right_logical", &e, &one);
            }
        }
        let odd_bits = self.bin("and", b, &one);
        let odd = self.cmp("NE", &odd_bits, &zero);
        let a1 = self.cmp("EQ", a, &one);
        let am1 = self.cmp("EQ", a, &m1);
        let sign = self.select(&odd, &m1, &one);
        let c1 = self.select(&am1, &sign, &zero);
        let corr = self.select(&a1, &one, &c1);
        self.select(&neg, &corr, &p)
    }

    fn where_(&mut self, c: &Val, a: &Val, b: &Val) -> Result<Val> {
        let err =
            |why: &str| EmitError::new("select", format!("{why}, cond: {}, lhs: {}, rhs: {}", c.ty(), a.ty(), b.ty()));
        if c.dtype != DType::Bool {
            return Err(err("condition is not bool"));
        }
        if a.dtype != b.dtype {
            return Err(err("dtype mismatch"));
        }
        let s = broadcast(&a.shape, &b.shape)
            .and_then(|s| broadcast(&c.shape, &s))
            .ok_or_else(|| err("shapes do not broadcast"))?;
        let (c, a, b) = (self.broadcast_to(c, &s), self.broadcast_to(a, &s), self.broadcast_to(b, &s));
        Ok(self.select(&c, &a, &b))
    }

    fn cast(&mut self, a: &Val, to: DType) -> Val {
        let from = a.dtype;
        if from == to {
            return a.clone();
        }
        if to == DType::Bool {
            let z = self.zero(from, &a.shape);
            return self.cmp("NE", a, &z);
        }
        if from.is_float() && to.is_int() {
            // Saturate, NaN → 0 (Rust's `as`): clamp into the range where
            // `convert` is exact truncation, and pick MAX at or above 2^bits.
            let bits = if to == DType::I64 { 63 } else { 31 };
            let (lo, top, below) = if from == DType::F32 {
                let top = (2.0f32).powi(bits);
                (f64::from(-top), f64::from(top), f64::from(f32::from_bits(top.to_bits() - 1)))
            } else {
                let top = (2.0f64).powi(bits);
                (-top, top, f64::from_bits(top.to_bits() - 1))
            };
            let lo_v = self.splat(from, &a.shape, Lit::F(lo));
            let hi_v = self.splat(from, &a.shape, Lit::F(below));
            let top_v = self.splat(from, &a.shape, Lit::F(top));
            let clamped = self.op(
                from,
                &a.shape,
                format!("stablehlo.clamp {}, {}, {} : {}", lo_v.name, a.name, hi_v.name, a.ty()),
            );
            let conv = self.convert(&clamped, to);
            let max_v = self.splat(to, &a.shape, Lit::I(int_max(to)));
            let zero = self.zero(to, &a.shape);
            let big = self.cmp("GE", a, &top_v);
            let nan = self.cmp("NE", a, a);
            let r = self.select(&big, &max_v, &conv);
            return self.select(&nan, &zero, &r);
        }
        let r = self.convert(a, to);
        if from == DType::Bool && to.is_float() {
            self.made(&r, Made::FromBool);
        }
        r
    }

    fn iota(&mut self, dtype: DType, n: u64) -> Result<Val> {
        let n = usize::try_from(n).map_err(|_| EmitError::new("iota", "iota length too large"))?;
        match dtype {
            DType::Bool => Err(EmitError::new("iota", format!("iota of bool[{n}] is not defined"))),
            DType::I32 if n > i32::MAX as usize + 1 => {
                Err(EmitError::new("iota", format!("iota of i32[{n}] overflows i32")))
            }
            _ => Ok(self.op(dtype, &[n], format!("stablehlo.iota dim = 0 : {}", tensor_type(dtype, &[n])))),
        }
    }

    // ------------------------------------------------------- linear algebra

    fn matmul(&mut self, a: &Val, b: &Val) -> Result<Val> {
        let types = || format!("lhs: {}, rhs: {}", a.ty(), b.ty());
        if a.dtype != b.dtype {
            return Err(EmitError::new("matmul", format!("dtype mismatch in matmul, {}", types())));
        }
        if a.dtype == DType::Bool {
            return Err(EmitError::new("matmul", format!("matmul requires numeric operands, {}", types())));
        }
        let (k, k2, lc, shape): (usize, usize, usize, Vec<usize>) = match (a.shape.as_slice(), b.shape.as_slice()) {
            (&[k], &[k2]) => (k, k2, 0, vec![]),
            (&[m, k], &[k2]) => (k, k2, 1, vec![m]),
            (&[k], &[k2, n]) => (k, k2, 0, vec![n]),
            (&[m, k], &[k2, n]) => (k, k2, 1, vec![m, n]),
            _ => return Err(EmitError::new("matmul", format!("matmul takes operands of rank 1 or 2, {}", types()))),
        };
        if k != k2 {
            return Err(EmitError::new("matmul", format!("inner dimensions differ ({k} vs {k2}), {}", types())));
        }
        if numel(&shape).is_none() {
            return Err(EmitError::new("matmul", format!("result too large, {}", types())));
        }
        Ok(self.op(
            a.dtype,
            &shape,
            format!(
                "stablehlo.dot_general {}, {}, contracting_dims = [{lc}] x [0] : ({}, {}) -> {}",
                a.name,
                b.name,
                a.ty(),
                b.ty(),
                tensor_type(a.dtype, &shape)
            ),
        ))
    }

    // ------------------------------------------------------------ reductions

    /// A `stablehlo.reduce` of `x` over `dims` with one accumulator, whose
    /// reducer body is written by `body(self, acc, elem)`.
    fn reduce_with(
        &mut self,
        x: &Val,
        init: &Val,
        dims: &[usize],
        out_shape: &[usize],
        body: impl FnOnce(&mut Self, &Val, &Val) -> Val,
    ) -> Result<Val> {
        let st = tensor_type(x.dtype, &[]);
        let (pa, pb) = (self.fresh_named("acc"), self.fresh_named("elem"));
        let sv = |n: &str| Val { name: n.to_string(), dtype: x.dtype, shape: vec![], konst: None };
        let (va, vb) = (sv(&pa), sv(&pb));
        let (text, r) = self.region(|e| {
            e.indent += 1;
            let r = body(e, &va, &vb);
            e.line(&format!("stablehlo.return {} : {st}", r.name));
            e.indent -= 1;
            Ok(r)
        })?;
        let _ = r;
        let name = self.fresh();
        let dims_i: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.line(&format!("{name} = \"stablehlo.reduce\"({}, {}) ({{", x.name, init.name));
        self.indent += 1;
        self.line(&format!("^bb0({pa}: {st}, {pb}: {st}):"));
        self.indent -= 1;
        self.out.push_str(&text);
        let out_ty = tensor_type(x.dtype, out_shape);
        self.line(&format!("}}) {{dimensions = {}}} : ({}, {st}) -> {out_ty}", i64_array(&dims_i), x.ty()));
        Ok(Val { name, dtype: x.dtype, shape: out_shape.to_vec(), konst: None })
    }

    fn reduce(&mut self, op: ReduceOp, a: &Val, axis: Option<u32>) -> Result<Val> {
        let what = format!("reduce {op}");
        let (dims, len, out_shape): (Vec<usize>, usize, Vec<usize>) = match axis {
            None => ((0..a.shape.len()).collect(), a.numel(), vec![]),
            Some(ax) => {
                let ax = ax as usize;
                let Some(&len) = a.shape.get(ax) else {
                    return Err(EmitError::new(what, format!("axis {ax} is out of range for {}", a.ty())));
                };
                let mut s = a.shape.clone();
                s.remove(ax);
                (vec![ax], len, s)
            }
        };
        if len == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::Argmax) {
            let w = match axis {
                None => "an empty tensor".to_string(),
                Some(ax) => format!("empty axis {ax}"),
            };
            return Err(EmitError::new(what, format!("{op} of {w} is not defined, got {}", a.ty())));
        }
        match op {
            ReduceOp::Sum | ReduceOp::Mean => {
                let target = match (op, a.dtype) {
                    (ReduceOp::Sum, DType::Bool) => DType::I32,
                    (ReduceOp::Mean, d) if !d.is_float() => DType::F32,
                    (_, d) => d,
                };
                let x = self.convert(a, target);
                let s = if dims.is_empty() {
                    x
                } else {
                    let z = self.zero(target, &[]);
                    self.reduce_with(&x, &z, &dims, &out_shape, |e, p, q| e.bin("add", p, q))?
                };
                // A float sum is never -0 on the interpreter (it starts from
                // +0), but XLA rewrites a reduction over a length-1 axis as
                // a reshape (dropping the +0) and `sum(-x)` as `-sum(x)`:
                // adding a zero it cannot see makes a -0 +0 again.
                let s = if target.is_float() {
                    let z = self.zero(target, &s.shape);
                    let z = self.barrier(&z);
                    self.bin("add", &s, &z)
                } else {
                    s
                };
                if op == ReduceOp::Sum {
                    return Ok(s);
                }
                let n = self.splat(target, &out_shape, Lit::F(len as f64));
                let n = self.opaque_divisor(&s, &n);
                Ok(self.bin("divide", &s, &n))
            }
            ReduceOp::Max | ReduceOp::Min => {
                let is_max = op == ReduceOp::Max;
                if dims.is_empty() {
                    return Ok(a.clone());
                }
                let d = a.dtype;
                let init = match d {
                    DType::Bool => self.splat(d, &[], Lit::B(!is_max)),
                    DType::I32 | DType::I64 => self.splat(d, &[], Lit::I(if is_max { int_min(d) } else { int_max(d) })),
                    _ => self.splat(d, &[], Lit::F(if is_max { f64::NEG_INFINITY } else { f64::INFINITY })),
                };
                self.reduce_with(a, &init, &dims, &out_shape, |e, p, q| match d {
                    DType::Bool => e.bin(if is_max { "or" } else { "and" }, p, q),
                    DType::I32 | DType::I64 => e.bin(if is_max { "maximum" } else { "minimum" }, p, q),
                    _ => e.max_min_float(is_max, p, q),
                })
            }
            ReduceOp::Argmax => {
                if len > i32::MAX as usize + 1 {
                    return Err(EmitError::new(what, format!("argmax index overflows i32, got {}", a.ty())));
                }
                let x = if a.dtype == DType::Bool { self.convert(a, DType::I32) } else { a.clone() };
                let (x, dim) = match axis {
                    None => {
                        let n = x.numel();
                        (self.reshape(&x, &[n]), 0)
                    }
                    Some(ax) => (x, ax as usize),
                };
                self.argmax(&x, dim, &out_shape)
            }
        }
    }

    /// Index (`i32`) of the first maximum of `x` along `dim`; NaN is the maximum.
    fn argmax(&mut self, x: &Val, dim: usize, out_shape: &[usize]) -> Result<Val> {
        let d = x.dtype;
        let iota_ty = tensor_type(DType::I32, &x.shape);
        let io = self.op(DType::I32, &x.shape, format!("stablehlo.iota dim = {dim} : {iota_ty}"));
        let init_v = if d.is_float() {
            self.splat(d, &[], Lit::F(f64::NEG_INFINITY))
        } else {
            self.splat(d, &[], Lit::I(int_min(d)))
        };
        let init_i = self.splat(DType::I32, &[], Lit::I(0));
        let st = tensor_type(d, &[]);
        let it = tensor_type(DType::I32, &[]);
        let names: Vec<String> = ["va", "ia", "vb", "ib"].iter().map(|b| self.fresh_named(b)).collect();
        let sv = |n: &str, dt: DType| Val { name: n.to_string(), dtype: dt, shape: vec![], konst: None };
        let (va, ia, vb, ib) =
            (sv(&names[0], d), sv(&names[1], DType::I32), sv(&names[2], d), sv(&names[3], DType::I32));
        let (text, ()) = self.region(|e| {
            e.indent += 1;
            // a wins: a > b, or a is NaN and b is not, or a ties b (both NaN
            // counting as a tie) with a smaller index.
            let gt = e.cmp("GT", &va, &vb);
            let eq = e.cmp("EQ", &va, &vb);
            let lt_i = e.cmp("LT", &ia, &ib);
            let pick = if d.is_float() {
                let an = e.cmp("NE", &va, &va);
                let bn = e.cmp("NE", &vb, &vb);
                let not_bn = e.un("not", &bn);
                let nan_wins = e.bin("and", &an, &not_bn);
                let both_nan = e.bin("and", &an, &bn);
                let tie = e.bin("or", &eq, &both_nan);
                let tie_wins = e.bin("and", &tie, &lt_i);
                let w = e.bin("or", &gt, &nan_wins);
                e.bin("or", &w, &tie_wins)
            } else {
                let tie_wins = e.bin("and", &eq, &lt_i);
                e.bin("or", &gt, &tie_wins)
            };
            let v = e.select(&pick, &va, &vb);
            let i = e.select(&pick, &ia, &ib);
            e.line(&format!("stablehlo.return {}, {} : {st}, {it}", v.name, i.name));
            e.indent -= 1;
            Ok(())
        })?;
        let name = self.fresh();
        self.line(&format!(
            "{name}:2 = \"stablehlo.reduce\"({}, {}, {}, {}) ({{",
            x.name, io.name, init_v.name, init_i.name
        ));
        self.indent += 1;
        self.line(&format!("^bb0({}: {st}, {}: {it}, {}: {st}, {}: {it}):", va.name, ia.name, vb.name, ib.name));
        self.indent -= 1;
        self.out.push_str(&text);
        self.line(&format!(
            "}}) {{dimensions = {}}} : ({}, {iota_ty}, {st}, {it}) -> ({}, {})",
            i64_array(&[dim as i64]),
            x.ty(),
            tensor_type(d, out_shape),
            tensor_type(DType::I32, out_shape)
        ));
        Ok(Val { name: format!("{name}#1"), dtype: DType::I32, shape: out_shape.to_vec(), konst: None })
    }

    // ------------------------------------------------------------ shapes

    fn transpose(&mut self, a: &Val, perm: Option<&[u32]>) -> Result<Val> {
        let rank = a.shape.len();
        let perm: Vec<usize> = match perm {
            None => (0..rank).rev().collect(),
            Some(p) => {
                let p: Vec<usize> = p.iter().map(|&x| x as usize).collect();
                let mut seen = vec![false; rank];
                let ok = p.len() == rank
                    && p.iter().all(|&ax| match seen.get_mut(ax) {
                        Some(s) if !*s => {
                            *s = true;
                            true
                        }
                        _ => false,
                    });
                if !ok {
                    return Err(EmitError::new(
                        "transpose",
                        format!("{p:?} is not a permutation of the axes of {}", a.ty()),
                    ));
                }
                p
            }
        };
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(a.clone());
        }
        let shape: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
        Ok(self.op(
            a.dtype,
            &shape,
            format!(
                "stablehlo.transpose {}, dims = {} : ({}) -> {}",
                a.name,
                dims_list(&perm),
                a.ty(),
                tensor_type(a.dtype, &shape)
            ),
        ))
    }

    fn concat_raw(&mut self, vs: &[Val], axis: usize, shape: &[usize]) -> Val {
        if vs.len() == 1 {
            return vs[0].clone();
        }
        let names: Vec<&str> = vs.iter().map(|v| v.name.as_str()).collect();
        let types: Vec<String> = vs.iter().map(Val::ty).collect();
        let r = self.op(
            vs[0].dtype,
            shape,
            format!(
                "stablehlo.concatenate {}, dim = {axis} : ({}) -> {}",
                names.join(", "),
                types.join(", "),
                tensor_type(vs[0].dtype, shape)
            ),
        );
        let parts: Vec<&Val> = vs.iter().collect();
        self.fold_from(r, &parts)
    }

    fn concat(&mut self, vs: &[Val], axis: usize) -> Result<Val> {
        let list = || vs.iter().map(Val::ty).collect::<Vec<_>>().join(", ");
        let err = |why: &str| EmitError::new("concat", format!("{why}, got [{}]", list()));
        let first = vs.first().ok_or_else(|| err("needs at least one operand"))?;
        if axis >= first.shape.len() {
            return Err(err(&format!("axis {axis} is out of range")));
        }
        let mut total = 0usize;
        for v in vs {
            if v.dtype != first.dtype {
                return Err(err("dtype mismatch"));
            }
            if v.shape.len() != first.shape.len()
                || v.shape.iter().zip(&first.shape).enumerate().any(|(i, (a, b))| i != axis && a != b)
            {
                return Err(err(&format!("shapes differ outside axis {axis}")));
            }
            total = total.checked_add(v.shape[axis]).ok_or_else(|| err("size overflows"))?;
        }
        let mut shape = first.shape.clone();
        shape[axis] = total;
        numel(&shape).ok_or_else(|| err("size overflows"))?;
        Ok(self.concat_raw(vs, axis, &shape))
    }

    fn stack(&mut self, vs: &[Val], axis: usize) -> Result<Val> {
        let list = || vs.iter().map(Val::ty).collect::<Vec<_>>().join(", ");
        let err = |why: &str| EmitError::new("stack", format!("{why}, got [{}]", list()));
        let first = vs.first().ok_or_else(|| err("needs at least one operand"))?;
        if axis > first.shape.len() {
            return Err(err(&format!("axis {axis} is out of range")));
        }
        if vs.iter().any(|v| v.dtype != first.dtype) {
            return Err(err("dtype mismatch"));
        }
        if vs.iter().any(|v| v.shape != first.shape) {
            return Err(err("shapes differ"));
        }
        let mut one = first.shape.clone();
        one.insert(axis, 1);
        let mut shape = first.shape.clone();
        shape.insert(axis, vs.len());
        numel(&shape).ok_or_else(|| err("size overflows"))?;
        let parts: Vec<Val> = vs.iter().map(|v| self.reshape(v, &one)).collect();
        Ok(self.concat_raw(&parts, axis, &shape))
    }

    fn slice(&mut self, a: &Val, specs: &[SliceSpec]) -> Result<Val> {
        if specs.len() > a.shape.len() {
            return Err(EmitError::new(
                "slice",
                format!("{} indices for {}, which has rank {}", specs.len(), a.ty(), a.shape.len()),
            ));
        }
        let rank = a.shape.len();
        let (mut start, mut limit, mut stride) = (vec![0i64; rank], vec![0i64; rank], vec![1i64; rank]);
        let mut rev = Vec::new();
        let mut out_shape = Vec::new();
        let mut sliced = Vec::with_capacity(rank);
        for (ax, &dim) in a.shape.iter().enumerate() {
            let d = dim as i128;
            let (first, len, step): (i128, usize, i128) = match specs.get(ax) {
                None => (0, dim, 1),
                Some(&SliceSpec::Index(i)) => {
                    let k = if i < 0 { i as i128 + d } else { i as i128 };
                    if k < 0 || k >= d {
                        return Err(EmitError::new(
                            "slice",
                            format!("index {i} is out of range for axis {ax} of {}", a.ty()),
                        ));
                    }
                    (k, 1, 1)
                }
                Some(&SliceSpec::Range { start: s, stop, step }) => {
                    let (first, len) = python_range(d, s, stop, step)
                        .ok_or_else(|| EmitError::new("slice", format!("slice step 0 on axis {ax} of {}", a.ty())))?;
                    (first, len, step as i128)
                }
            };
            if !matches!(specs.get(ax), Some(SliceSpec::Index(_))) {
                out_shape.push(len);
            }
            sliced.push(len);
            // In the coordinates of an axis reversed when stepping back.
            let (first, step) = if step < 0 && len > 0 {
                rev.push(ax);
                (d - 1 - first, -step)
            } else {
                (first, step)
            };
            let step = if len <= 1 { 1 } else { step };
            let (s, l) = if len == 0 { (0, 0) } else { (first, first + (len as i128 - 1) * step + 1) };
            start[ax] = i64::try_from(s).unwrap_or(0);
            limit[ax] = i64::try_from(l).unwrap_or(0);
            stride[ax] = i64::try_from(step).unwrap_or(1);
        }
        let mut x = a.clone();
        if !rev.is_empty() {
            x = self.op(
                a.dtype,
                &a.shape,
                format!("stablehlo.reverse {}, dims = {} : {}", a.name, dims_list(&rev), a.ty()),
            );
        }
        let full = start.iter().all(|&s| s == 0)
            && stride.iter().all(|&s| s == 1)
            && limit.iter().zip(&a.shape).all(|(&l, &d)| l as u128 == d as u128);
        if !full {
            x = self.op(
                a.dtype,
                &sliced,
                format!(
                    "\"stablehlo.slice\"({}) {{start_indices = {}, limit_indices = {}, strides = {}}} : ({}) -> {}",
                    x.name,
                    i64_array(&start),
                    i64_array(&limit),
                    i64_array(&stride),
                    x.ty(),
                    tensor_type(a.dtype, &sliced)
                ),
            );
        }
        Ok(self.reshape(&x, &out_shape))
    }

    /// Normalised start indices for `dynamic_slice` / `dynamic_update_slice`
    /// of `a`: each runtime index has its dim added once when negative (the
    /// op then clamps), trailing axes start at 0.
    fn start_indices(&mut self, what: &str, a: &Val, idx: &[Val]) -> Result<Vec<Val>> {
        if idx.len() > a.shape.len() {
            return Err(EmitError::new(
                what,
                format!("{} indices for {}, which has rank {}", idx.len(), a.ty(), a.shape.len()),
            ));
        }
        let it = if idx.iter().any(|v| v.dtype == DType::I64) { DType::I64 } else { DType::I32 };
        let mut out = Vec::with_capacity(a.shape.len());
        for (ax, (v, &dim)) in idx.iter().zip(&a.shape).enumerate() {
            if dim == 0 {
                return Err(EmitError::new(what, format!("cannot index empty axis {ax} of {}", a.ty())));
            }
            let i = self.scalar_index(what, v, it)?;
            let dim_i = i64::try_from(dim).map_err(|_| EmitError::new(what, "dimension too large"))?;
            if it == DType::I32 && dim_i > i64::from(i32::MAX) {
                return Err(EmitError::new(what, format!("axis {ax} of {} is too long for an i32 index", a.ty())));
            }
            let k = match i.konst {
                Some(k) => {
                    let k = if k < 0 { k.saturating_add(dim_i) } else { k };
                    self.splat(it, &[], Lit::I(k.clamp(0, dim_i - 1)))
                }
                None => {
                    let zero = self.splat(it, &[], Lit::I(0));
                    let d = self.splat(it, &[], Lit::I(dim_i));
                    let neg = self.cmp("LT", &i, &zero);
                    let wrapped = self.bin("add", &i, &d);
                    self.select(&neg, &wrapped, &i)
                }
            };
            out.push(k);
        }
        for _ in idx.len()..a.shape.len() {
            let z = self.splat(it, &[], Lit::I(0));
            out.push(z);
        }
        Ok(out)
    }

    fn dynamic_slice(&mut self, a: &Val, starts: &[Val], sizes: &[usize]) -> Val {
        let names: Vec<&str> = starts.iter().map(|v| v.name.as_str()).collect();
        let types: Vec<String> = starts.iter().map(Val::ty).collect();
        let sep = if names.is_empty() { "" } else { ", " };
        self.op(
            a.dtype,
            sizes,
            format!(
                "stablehlo.dynamic_slice {}{sep}{}, sizes = {} : ({}{sep}{}) -> {}",
                a.name,
                names.join(", "),
                dims_list(sizes),
                a.ty(),
                types.join(", "),
                tensor_type(a.dtype, sizes)
            ),
        )
    }

    fn dynamic_update_slice(&mut self, a: &Val, upd: &Val, starts: &[Val]) -> Val {
        let names: Vec<&str> = starts.iter().map(|v| v.name.as_str()).collect();
        let types: Vec<String> = starts.iter().map(Val::ty).collect();
        let sep = if names.is_empty() { "" } else { ", " };
        self.op(
            a.dtype,
            &a.shape,
            format!(
                "stablehlo.dynamic_update_slice {}, {}{sep}{} : ({}, {}{sep}{}) -> {}",
                a.name,
                upd.name,
                names.join(", "),
                a.ty(),
                upd.ty(),
                types.join(", "),
                a.ty()
            ),
        )
    }

    fn index(&mut self, a: &Val, idx: &[Val]) -> Result<Val> {
        if idx.is_empty() {
            return Ok(a.clone());
        }
        let starts = self.start_indices("index", a, idx)?;
        let rest = a.shape[idx.len()..].to_vec();
        let mut sizes = vec![1usize; idx.len()];
        sizes.extend_from_slice(&rest);
        let s = self.dynamic_slice(a, &starts, &sizes);
        Ok(self.reshape(&s, &rest))
    }

    fn update(&mut self, mode: UpdateMode, a: &Val, idx: &[Val], v: &Val) -> Result<Val> {
        let what = format!("update {mode}");
        let starts = self.start_indices(&what, a, idx)?;
        let slot = a.shape[idx.len()..].to_vec();
        if v.dtype != a.dtype {
            return Err(EmitError::new(
                what,
                format!("dtype mismatch in update, target: {}, value: {}", a.ty(), v.ty()),
            ));
        }
        if !broadcasts_to(&v.shape, &slot) {
            return Err(EmitError::new(
                what,
                format!("value {} does not broadcast to the slot {slot:?} of {}", v.ty(), a.ty()),
            ));
        }
        if mode == UpdateMode::Add && a.dtype == DType::Bool {
            return Err(EmitError::new(what, format!("add update requires a numeric target, got {}", a.ty())));
        }
        let vb = self.broadcast_to(v, &slot);
        let mut sizes = vec![1usize; idx.len()];
        sizes.extend_from_slice(&slot);
        let upd = self.reshape(&vb, &sizes);
        let upd = match mode {
            UpdateMode::Set => upd,
            UpdateMode::Add => {
                let cur = self.dynamic_slice(a, &starts, &sizes);
                self.bin("add", &cur, &upd)
            }
        };
        Ok(self.dynamic_update_slice(a, &upd, &starts))
    }

    // ------------------------------------------------------------ control

    fn call(&mut self, callee: FuncId, args: &[Val]) -> Result<Vec<Val>> {
        let m = self.m;
        let cf = m
            .funcs
            .get(callee.0 as usize)
            .ok_or_else(|| EmitError::new("call", format!("no function f{}", callee.0)))?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            return Err(EmitError::new("call", format!("calls nested deeper than {MAX_DEPTH}")));
        }
        let r = (|| {
            let body =
                cf.blocks.get(cf.body.0 as usize).ok_or_else(|| EmitError::new("call", "missing entry block"))?;
            if body.params.len() != args.len() {
                return Err(EmitError::new(
                    "call",
                    format!("`{}` takes {} tensors, got {}", cf.name, body.params.len(), args.len()),
                ));
            }
            let mut env: Env = body.params.iter().copied().zip(args.iter().cloned()).collect();
            self.block(cf, cf.body, &mut env)?;
            Self::results(cf, cf.body, &env, "call")
        })();
        self.depth -= 1;
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn if_(
        &mut self,
        func: &Func,
        inst: &Inst,
        env: &mut Env,
        c: &Val,
        then_: BlockId,
        else_: BlockId,
        ndsts: usize,
    ) -> Result<Vec<Val>> {
        if c.dtype != DType::Bool || c.numel() != 1 {
            return Err(EmitError::new("if", format!("if condition is not a bool scalar, got {}", c.ty())));
        }
        let c = self.reshape(c, &[]);
        // Metered: each branch returns the fuel left after it, last.
        let fuel0 = self.fuel.clone();
        let mut branch = |e: &mut Self, b: BlockId| {
            e.region(|e| {
                e.fuel.clone_from(&fuel0);
                e.block(func, b, env)?;
                let mut r = Self::results(func, b, env, "if")?;
                r.extend(e.fuel.clone());
                Ok(r)
            })
        };
        let (t_text, t_res) = branch(self, then_)?;
        let (e_text, e_res) = branch(self, else_)?;
        self.fuel = fuel0;
        let ndsts = ndsts + usize::from(self.fuel.is_some());
        if t_res.len() != ndsts || e_res.len() != ndsts {
            return Err(EmitError::new(op_name(inst), "branches return the wrong number of values"));
        }
        for (k, (a, b)) in t_res.iter().zip(&e_res).enumerate() {
            if a.dtype != b.dtype || a.shape != b.shape {
                return Err(EmitError::new(
                    "if",
                    format!("result {k} is {} in the then branch and {} in the else branch", a.ty(), b.ty()),
                ));
            }
        }
        if ndsts == 0 {
            return Ok(Vec::new());
        }
        let types: Vec<String> = t_res.iter().map(Val::ty).collect();
        let types = types.join(", ");
        let ret = |rs: &[Val]| rs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        let base = self.fresh();
        let head = if ndsts == 1 { base.clone() } else { format!("{base}:{ndsts}") };
        self.line(&format!("{head} = \"stablehlo.if\"({}) ({{", c.name));
        self.out.push_str(&t_text);
        self.indent += 1;
        self.line(&format!("stablehlo.return {} : {types}", ret(&t_res)));
        self.indent -= 1;
        self.line("}, {");
        self.out.push_str(&e_text);
        self.indent += 1;
        self.line(&format!("stablehlo.return {} : {types}", ret(&e_res)));
        self.indent -= 1;
        let res_ty = if ndsts == 1 { types.clone() } else { format!("({types})") };
        self.line(&format!("}}) : (tensor<i1>) -> {res_ty}"));
        let mut out: Vec<Val> = t_res
            .iter()
            .enumerate()
            .map(|(k, v)| Val {
                name: if ndsts == 1 { base.clone() } else { format!("{base}#{k}") },
                dtype: v.dtype,
                shape: v.shape.clone(),
                konst: None,
            })
            .collect();
        if self.fuel.is_some() {
            self.fuel = out.pop();
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn fori(
        &mut self,
        func: &Func,
        inst: &Inst,
        env: &Env,
        lo: &Val,
        hi: &Val,
        init: &[Val],
        body: BlockId,
    ) -> Result<Vec<Val>> {
        let what = "fori";
        for b in [lo, hi] {
            if !b.dtype.is_int() || b.numel() != 1 {
                return Err(EmitError::new(what, format!("fori_loop bound is not an integer scalar, got {}", b.ty())));
            }
        }
        let blk = func.blocks.get(body.0 as usize).ok_or_else(|| EmitError::new(what, "no body block"))?;
        let Some((&ireg, carry)) = blk.params.split_first() else {
            return Err(EmitError::new(what, "fori_loop body without a counter"));
        };
        if carry.len() != init.len() {
            return Err(EmitError::new(what, "carry and body parameters differ in number"));
        }
        let (cap_regs, cap_vals) = self.captures(func, inst, env)?;
        let idt = lo.dtype;
        let cdt = if hi.dtype == DType::I64 { DType::I64 } else { idt };
        let lo_s = self.scalar_index(what, lo, cdt)?;
        let hi_s = self.scalar_index(what, hi, cdt)?;

        if self.opts.unroll_all && self.fuel.is_none() {
            if let (Some(l), Some(h)) = (lo_s.konst, hi_s.konst) {
                if (h as i128 - l as i128) <= MAX_UNROLL as i128 {
                    let mut cur = init.to_vec();
                    let mut i = l;
                    while i < h {
                        let iv = self.splat(idt, &[], Lit::I(i));
                        let mut benv: Env = Env::new();
                        for (r, v) in cap_regs.iter().zip(&cap_vals) {
                            benv.insert(*r, v.clone());
                        }
                        benv.insert(ireg, iv);
                        for (p, v) in carry.iter().zip(&cur) {
                            benv.insert(*p, v.clone());
                        }
                        self.block(func, body, &mut benv)?;
                        cur = Self::results(func, body, &benv, what)?;
                        i += 1;
                    }
                    return Ok(cur);
                }
            }
        }

        let source = match inst {
            Inst::Fori { unroll, .. } => *unroll,
            _ => 1,
        };
        let trip = match (lo_s.konst, hi_s.konst) {
            (Some(l), Some(h)) => Some(u64::try_from((i128::from(h) - i128::from(l)).max(0)).unwrap_or(u64::MAX)),
            _ => None,
        };
        let ctx = ForiCtx { func, body, ireg, carry, cap_regs: &cap_regs, cap_vals: &cap_vals, idt, cdt };
        self.fori_partial(&ctx, source, trip, &lo_s, &hi_s, init)
    }

    fn while_(
        &mut self,
        func: &Func,
        inst: &Inst,
        env: &Env,
        init: &[Val],
        cond_b: BlockId,
        body: BlockId,
    ) -> Result<Vec<Val>> {
        let what = "while";
        let cb = func.blocks.get(cond_b.0 as usize).ok_or_else(|| EmitError::new(what, "no condition block"))?;
        let bb = func.blocks.get(body.0 as usize).ok_or_else(|| EmitError::new(what, "no body block"))?;
        if cb.params.len() != init.len() || bb.params.len() != init.len() {
            return Err(EmitError::new(what, "carry and block parameters differ in number"));
        }
        let (cap_regs, cap_vals) = self.captures(func, inst, env)?;
        let nc = init.len();
        let all: Vec<Val> = init.iter().chain(&cap_vals).cloned().collect();
        let inv: Vec<bool> = (0..all.len()).map(|k| k >= nc).collect();
        let k = self.pick_unroll("while_loop", func, &[cond_b, body], 1, None, |e| {
            let benv = while_env(&cap_regs, &cap_vals, &bb.params, init);
            e.copy(func, body, benv, init, nc, what)
        })?;
        // A loop without carry has nothing to unroll.
        let k = if nc == 0 { 1 } else { k };
        let (names, vals) = self.iter_vals(&all, &inv);
        let fs = self.fuel_state();
        let fs = fs.as_ref();
        if fs.is_some() && unroll::holds_loop(self.m, func, &[cond_b], 0) {
            // Its iterations could not be counted: the condition cannot
            // update the loop's state.
            return Err(EmitError::new(what, "a loop inside a while_loop condition cannot be metered"));
        }
        let (cond_text, cond) = self.region(|e| {
            let saved = e.fuel.take();
            let c = e.while_cond(func, cond_b, &cap_regs, &vals[nc..], &vals[..nc]);
            e.fuel = saved;
            Ok(e.fuel_cond(c?, fs))
        })?;
        let (body_text, next, ()) = self.body_region(fs, |e| {
            let inv = &vals[nc..];
            let first = while_env(&cap_regs, inv, &bb.params, &vals[..nc]);
            let mut cur = e.copy(func, body, first, &vals[..nc], nc, what)?;
            for _ in 1..k {
                // The condition is checked before every further copy; once it
                // fails, the carry passes through the remaining copies.
                let c = e.while_cond(func, cond_b, &cap_regs, inv, &cur)?;
                let env = while_env(&cap_regs, inv, &bb.params, &cur);
                let (text, res) = e.region(|e| e.copy(func, body, env, &cur, nc, what))?;
                cur = e.write_if(&c, &text, &res, &cur);
            }
            cur.extend(inv.iter().cloned());
            Ok((cur, ()))
        })?;
        let outs = self.write_while(what, &all, &names, fs, &cond_text, &cond, &body_text, &next)?;
        self.fuel_settle(fs, &outs, |e| e.while_cond(func, cond_b, &cap_regs, &cap_vals, &outs[..nc]))?;
        Ok(outs[..nc].to_vec())
    }

    #[allow(clippy::too_many_arguments)]
    fn scan(
        &mut self,
        func: &Func,
        inst: &Inst,
        env: &Env,
        init: &[Val],
        xs: &[Val],
        length: Option<u64>,
        reverse: bool,
        body: BlockId,
    ) -> Result<Vec<Val>> {
        let what = "scan";
        let blk = func.blocks.get(body.0 as usize).ok_or_else(|| EmitError::new(what, "no body block"))?;
        let nc = init.len();
        if blk.params.len() != nc + xs.len() || blk.results.len() < nc {
            return Err(EmitError::new(what, "carry, xs and body parameters differ in number"));
        }
        let (cparams, xparams) = blk.params.split_at(nc);
        let mut n: Option<usize> =
            length.map(usize::try_from).transpose().map_err(|_| EmitError::new(what, "scan length too large"))?;
        for x in xs {
            let lead =
                *x.shape.first().ok_or_else(|| EmitError::new(what, format!("scan over a scalar {}", x.ty())))?;
            match n {
                None => n = Some(lead),
                Some(k) if k != lead => {
                    return Err(EmitError::new(
                        what,
                        format!("xs have leading dimension {lead}, expected {k} (from length or the other xs)"),
                    ))
                }
                _ => {}
            }
        }
        let n = n.ok_or_else(|| EmitError::new(what, "scan needs xs or a length"))?;
        let (cap_regs, cap_vals) = self.captures(func, inst, env)?;
        let ny = blk.results.len() - nc;
        let ys_shape = |y: &Val| {
            let mut s = vec![n];
            s.extend_from_slice(&y.shape);
            s
        };

        if n == 0 || (self.opts.unroll_all && self.fuel.is_none() && (n as u64) <= MAX_UNROLL) {
            // Unrolled (or empty: the body only gives the ys' types).
            let steps = n.max(1);
            let fuel0 = self.fuel.clone();
            let saved = (n == 0).then(|| std::mem::take(&mut self.out));
            let whiles = self.whiles;
            let mut cur = init.to_vec();
            let mut rows: Vec<Vec<Val>> = vec![Vec::new(); ny];
            let mut y_types: Vec<Val> = Vec::new();
            for t in 0..steps {
                let pos = if reverse { n.saturating_sub(1 + t) } else { t };
                let mut benv = Env::new();
                for (r, v) in cap_regs.iter().zip(&cap_vals) {
                    benv.insert(*r, v.clone());
                }
                for (p, v) in cparams.iter().zip(&cur) {
                    benv.insert(*p, v.clone());
                }
                for (p, x) in xparams.iter().zip(xs) {
                    let xv = if n == 0 {
                        Val { name: "%undefined".into(), dtype: x.dtype, shape: x.shape[1..].to_vec(), konst: None }
                    } else {
                        let i = self.splat(DType::I64, &[], Lit::I(pos as i64));
                        self.index(x, &[i])?
                    };
                    benv.insert(*p, xv);
                }
                let r = self.block(func, body, &mut benv).and_then(|()| Self::results(func, body, &benv, what));
                let res = match r {
                    Ok(res) => res,
                    Err(e) => {
                        if let Some(s) = saved {
                            self.out = s;
                        }
                        return Err(e);
                    }
                };
                for (k, (a, b)) in cur.iter().zip(&res).enumerate() {
                    if a.dtype != b.dtype || a.shape != b.shape {
                        if let Some(s) = saved {
                            self.out = s;
                        }
                        return Err(EmitError::new(
                            what,
                            format!("carry {k} changes type from {} to {} in the body", a.ty(), b.ty()),
                        ));
                    }
                }
                let (c, y) = res.split_at(nc);
                cur = c.to_vec();
                y_types = y.to_vec();
                for (row, v) in rows.iter_mut().zip(y) {
                    row.push(v.clone());
                }
            }
            if let Some(s) = saved {
                self.out = s;
                self.whiles = whiles;
                self.fuel = fuel0;
                let mut outs = init.to_vec();
                for y in &y_types {
                    let z = self.zero(y.dtype, &ys_shape(y));
                    outs.push(z);
                }
                return Ok(outs);
            }
            let mut outs = cur;
            for mut row in rows {
                if reverse {
                    row.reverse();
                }
                let first = row[0].clone();
                let mut one = vec![1];
                one.extend_from_slice(&first.shape);
                let parts: Vec<Val> = row.iter().map(|v| self.reshape(v, &one)).collect();
                let ys = self.concat_raw(&parts, 0, &ys_shape(&first));
                outs.push(ys);
            }
            return Ok(outs);
        }

        let ct = if n > i32::MAX as usize { DType::I64 } else { DType::I32 };
        let source = match inst {
            Inst::Scan { unroll, .. } => *unroll,
            _ => 1,
        };
        let ctx = ScanCtx {
            func,
            body,
            cparams,
            xparams,
            cap_regs: &cap_regs,
            cap_vals: &cap_vals,
            xs,
            n,
            reverse,
            nc,
            ny,
            ct,
        };
        self.scan_partial(&ctx, source, init)
    }
}

fn usize_dims(d: &[u64]) -> Option<Vec<usize>> {
    d.iter().map(|&x| usize::try_from(x).ok()).collect()
}

fn bind(inst: &Inst, env: &mut Env, dsts: &[Reg], outs: Vec<Val>) -> Result<()> {
    if dsts.len() != outs.len() {
        return Err(EmitError::new(op_name(inst), format!("{} results for {} destinations", outs.len(), dsts.len())));
    }
    for (d, v) in dsts.iter().zip(outs) {
        env.insert(*d, v);
    }
    Ok(())
}

/// Wraps the emitted body of `main` into a module.
fn module(name: &str, params: &[Val], body: &str, results: &[Val]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "module @{} attributes {{mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32}} {{",
        sanitize(name)
    );
    let ps: Vec<String> = params.iter().map(|p| format!("{}: {}", p.name, p.ty())).collect();
    let rts: Vec<String> = results.iter().map(Val::ty).collect();
    let _ = writeln!(s, "  func.func public @main({}) -> ({}) {{", ps.join(", "), rts.join(", "));
    s.push_str(body);
    let names: Vec<&str> = results.iter().map(|v| v.name.as_str()).collect();
    if results.is_empty() {
        s.push_str("    return\n");
    } else {
        let _ = writeln!(s, "    return {} : {}", names.join(", "), rts.join(", "));
    }
    s.push_str("  }\n}\n");
    s
}

fn params_of(args: &[ValueType]) -> Result<Vec<Val>> {
    args.iter()
        .enumerate()
        .map(|(i, (d, s))| {
            if numel(s).and_then(|n| n.checked_mul(d.size_in_bytes())).is_none() {
                return Err(EmitError::new(
                    "parameter",
                    format!("parameter {i} of type {} has more bytes than the address space", tensor_type(*d, s)),
                ));
            }
            Ok(Val { name: format!("%arg{i}"), dtype: *d, shape: s.clone(), konst: None })
        })
        .collect()
}

/// Metered modules: the fuel parameter, appended to `params`.
fn metered_param(opts: &EmitOptions, params: &mut Vec<Val>) -> Option<Val> {
    if !opts.metered {
        return None;
    }
    let f = Val { name: format!("%arg{}", params.len()), dtype: DType::I64, shape: vec![], konst: None };
    params.push(f.clone());
    Some(f)
}

fn finish(e: Emitter<'_>, name: &str, params: Vec<Val>, results: Vec<Val>) -> Lowered {
    let result_bytes = results
        .iter()
        .map(|v| v.shape.iter().fold(v.dtype.size_in_bytes(), |a, &d| a.saturating_mul(d)))
        .fold(0usize, usize::saturating_add);
    Lowered {
        peak_bytes: e.peak.max(result_bytes),
        text: module(name, &params, &e.out, &results),
        params: params.iter().map(Val::vt).collect(),
        results: results.iter().map(Val::vt).collect(),
        whiles: e.whiles,
        unrolls: e.unrolls,
    }
}

pub(crate) fn lower_function(
    m: &Module,
    f: FuncId,
    args: &[ValueType],
    opts: &EmitOptions,
    unroll: &UnrollOptions,
) -> Result<Lowered> {
    let func = m.funcs.get(f.0 as usize).ok_or_else(|| EmitError::new("function", format!("no function f{}", f.0)))?;
    let body =
        func.blocks.get(func.body.0 as usize).ok_or_else(|| EmitError::new("function", "missing entry block"))?;
    if body.params.len() != args.len() {
        return Err(EmitError::new(
            "function",
            format!("`{}` takes {} tensors, got {}", func.name, body.params.len(), args.len()),
        ));
    }
    let mut params = params_of(args)?;
    let mut env: Env = body.params.iter().copied().zip(params.iter().cloned()).collect();
    let mut e = Emitter::new(m, opts, unroll);
    e.fuel = metered_param(opts, &mut params);
    e.block(func, func.body, &mut env)?;
    let mut results = Emitter::results(func, func.body, &env, "function")?;
    results.extend(e.fuel.clone());
    Ok(finish(e, &format!("loopvm_{}", func.name), params, results))
}

pub(crate) fn lower_loop(
    m: &Module,
    f: FuncId,
    inst: &Inst,
    inputs: &[ValueType],
    opts: &EmitOptions,
    unroll: &UnrollOptions,
) -> Result<Lowered> {
    let func = m.funcs.get(f.0 as usize).ok_or_else(|| EmitError::new("loop", format!("no function f{}", f.0)))?;
    if !matches!(inst, Inst::Fori { .. } | Inst::While { .. } | Inst::Scan { .. }) {
        return Err(EmitError::new(op_name(inst), "not a loop instruction"));
    }
    let regs = loopvm_vm::region_inputs(func, inst);
    if regs.len() != inputs.len() {
        return Err(EmitError::new(
            op_name(inst),
            format!("the loop reads {} values, {} types given", regs.len(), inputs.len()),
        ));
    }
    let mut params = params_of(inputs)?;
    let mut env: Env = regs.iter().copied().zip(params.iter().cloned()).collect();
    let mut e = Emitter::new(m, opts, unroll);
    e.fuel = metered_param(opts, &mut params);
    e.inst(func, inst, &mut env)?;
    let mut dsts = Vec::new();
    inst.visit_defs(&mut |r| dsts.push(r));
    let mut results = dsts.iter().map(|r| Emitter::get(&env, inst, *r)).collect::<Result<Vec<_>>>()?;
    results.extend(e.fuel.clone());
    Ok(finish(e, &format!("loopvm_{}_loop", func.name), params, results))
}
