//! The emitter proper: one pass over the bytecode of a function (or of one
//! loop instruction), with a register → (SSA value, dtype, concrete shape)
//! map, writing StableHLO text.

use super::policy::{LoopUnroll, UnrollOptions};
use super::{EmitError, EmitOptions, Lowered, ValueType};
use hashbrown::HashMap;
use loopvm_runtime::kernels::SliceSpec;
use loopvm_runtime::rules::{self, broadcasts_to, numel};
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

/// The NumPy broadcast of two shapes ([`rules::broadcast`]), or `None` when
/// they do not broadcast or the result is too large.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let out: Vec<usize> = rules::broadcast(a, b).ok()?;
    numel(&out)?;
    Some(out)
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

mod control;
mod elementwise;
mod gather;
mod loose;
mod meter;
mod order;
mod reduce;
mod shape_ops;
pub(crate) mod shard;
mod shield;
mod text;
mod unroll;
use shield::Made;
pub(crate) use text::tensor_type;
use text::*;
use unroll::{while_env, ForiCtx, ScanCtx};

/// Binds `regs` to `vals` in `env`, pairwise.
fn bind_params(env: &mut Env, regs: &[Reg], vals: &[Val]) {
    for (r, v) in regs.iter().zip(vals) {
        env.insert(*r, v.clone());
    }
}

/// What a value is spread out from (see [`Emitter::spreads`]).
#[derive(Clone, Debug)]
enum Spread {
    /// A constant whose elements are all this scalar.
    Splat(Lit),
    /// `broadcast_in_dim` of this value.
    Broadcast(Val),
}

/// A value a loop threads through its state (a metered loop's fuel, a
/// printing loop's chain): its value before the loop, and its loop-side
/// name and value.
pub(super) struct Threaded {
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
    /// Values that are a smaller value spread out: a splat constant (its
    /// scalar) or a `broadcast_in_dim` (its operand). A barrier goes on the
    /// smaller value, before the spread (see [`Emitter::barrier`]).
    spreads: hashbrown::HashMap<String, Spread>,
    /// Names of loose values: they may hold a -0 where the interpreter
    /// holds +0 (see [`loose`]).
    loose: hashbrown::HashSet<String>,
    /// Loose values → their exact values emitted in the current region.
    settled: hashbrown::HashMap<String, Val>,
    /// Metered modules: the iterations left at this point of the emission.
    fuel: Option<Val>,
    /// Modules that print: the value the next print waits for (see
    /// [`order`]); local to the region that made it.
    chain: Option<Val>,
    /// Bytes of the largest value emitted so far.
    peak: usize,
    /// How `main`'s parameters are laid out on [`EmitOptions::mesh`].
    param_shards: Vec<Option<shard::ShardSpec>>,
    /// Values made by a `shard` constraint on a mesh, with their layout: a
    /// result of `main` that is one keeps it (and is gathered on download).
    sharded: hashbrown::HashMap<String, shard::ShardSpec>,
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
            spreads: hashbrown::HashMap::new(),
            loose: hashbrown::HashSet::new(),
            settled: hashbrown::HashMap::new(),
            fuel: None,
            chain: None,
            peak: 0,
            param_shards: Vec::new(),
            sharded: hashbrown::HashMap::new(),
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
        let chain = self.chain.clone();
        // Exact values emitted inside the region are not visible outside it.
        let settled = self.settled.clone();
        self.indent += 1;
        let r = f(self);
        self.indent -= 1;
        self.depth -= 1;
        self.settled = settled;
        // A chain made or advanced inside the region is not visible outside
        // it: what leaves a region leaves as one of its results.
        self.chain = chain;
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
        if !shape.is_empty() {
            self.spreads.insert(r.name.clone(), Spread::Splat(v));
        }
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

    // ------------------------------------------------------------ dispatch

    /// The concrete shape of register `r`'s type (a `ReshapeAs`'s
    /// destination), its shape variables bound from the values in `env`
    /// ([`Module::shape_from_values`]).
    fn register_shape(&self, func: &Func, r: Reg, env: &Env) -> std::result::Result<Vec<usize>, String> {
        let t = func.reg_types.get(r.0 as usize).ok_or_else(|| format!("no register r{}", r.0))?;
        let values = env.iter().filter_map(|(q, v)| Some((func.reg_types.get(q.0 as usize)?, v.shape.as_slice())));
        self.m.shape_from_values(t, values)
    }

    fn inst(&mut self, func: &Func, inst: &Inst, env: &mut Env) -> Result<()> {
        let info = inst.opcode().info();
        let host_print = self.opts.host_print && matches!(inst, Inst::Print { .. });
        if !info.flags.contains(OpFlags::XLA) && !host_print {
            return Err(EmitError::new(op_name(inst), info.no_xla));
        }
        // The operands of most ops are settled first (see [`loose`]).
        let mut exact: HashMap<Reg, Val> = HashMap::new();
        if !loose::reads_loose(inst) {
            let mut uses = Vec::new();
            inst.visit_uses(&mut |r| uses.push(r));
            for r in uses {
                if let Some(v) = env.get(&r).filter(|v| self.is_loose(v)).cloned() {
                    let s = self.settle(&v);
                    exact.insert(r, s);
                }
            }
        }
        let g = |r: &Reg| exact.get(r).cloned().map_or_else(|| Self::get(env, inst, *r), Ok);
        let name = || op_name(inst);
        let (dst, v) = match inst {
            Inst::Const { dst, k } => {
                let t = self.m.consts.get(k.0 as usize).ok_or_else(|| EmitError::new(name(), "no such constant"))?;
                (*dst, self.constant(t))
            }
            Inst::Move { dst, src } => (*dst, g(src)?),
            Inst::Shard { dst, a, axis, mesh_axis } => (*dst, self.shard(&g(a)?, axis.0, *mesh_axis)?),
            Inst::Unary { op, dst, a } => (*dst, self.unary(*op, &g(a)?)?),
            Inst::Binary { op, dst, a, b } => (*dst, self.binary(*op, &g(a)?, &g(b)?)?),
            // The constant forms: the constant, then the binary.
            Inst::BinaryK { op, dst, a, k } | Inst::KBinary { op, dst, k, a } => {
                let t = self.m.consts.get(k.0 as usize).ok_or_else(|| EmitError::new(name(), "no such constant"))?;
                let (x, c) = (g(a)?, self.constant(t));
                let (l, r) = if matches!(inst, Inst::BinaryK { .. }) { (x, c) } else { (c, x) };
                (*dst, self.binary(*op, &l, &r)?)
            }
            Inst::Select { dst, c, a, b } => (*dst, self.where_(&g(c)?, &g(a)?, &g(b)?)?),
            Inst::Cast { dst, a, to } => (*dst, self.cast(&g(a)?, *to)),
            Inst::Bitcast { dst, a, to } => (*dst, self.bitcast(&g(a)?, *to)?),
            Inst::Iota { dst, dtype, n } => (*dst, self.iota(*dtype, *n)?),
            Inst::MatMul { dst, a, b } => (*dst, self.matmul(&g(a)?, &g(b)?)?),
            Inst::DotGeneral { dst, a, b, dims } => (*dst, self.dot_general(&g(a)?, &g(b)?, dims)?),
            Inst::Reduce { op, dst, a, axis } => (*dst, self.reduce(*op, &g(a)?, axis.0)?),
            Inst::Reshape { dst, a, shape } => {
                let a = g(a)?;
                let s = usize_dims(&shape.0).ok_or_else(|| EmitError::new(name(), "dimension too large"))?;
                if !rules::reshapes_to(&a.shape, &s) {
                    return Err(EmitError::new(name(), format!("cannot reshape {} into shape {s:?}", a.ty())));
                }
                let r = self.reshape(&a, &s);
                (*dst, self.loose_from(r, &a))
            }
            Inst::ReshapeAs { dst, a } => {
                let a = g(a)?;
                let s = self.register_shape(func, *dst, env).map_err(|why| EmitError::new(name(), why))?;
                if !rules::reshapes_to(&a.shape, &s) {
                    return Err(EmitError::new(name(), format!("cannot reshape {} into shape {s:?}", a.ty())));
                }
                let r = self.reshape(&a, &s);
                (*dst, self.loose_from(r, &a))
            }
            Inst::Transpose { dst, a, perm } => {
                let a = g(a)?;
                let r = self.transpose(&a, perm.0.as_deref())?;
                (*dst, self.loose_from(r, &a))
            }
            Inst::Broadcast { dst, a, shape } => {
                let a = g(a)?;
                let s = usize_dims(&shape.0).ok_or_else(|| EmitError::new(name(), "dimension too large"))?;
                if !broadcasts_to(&a.shape, &s) || numel(&s).is_none() {
                    return Err(EmitError::new(name(), format!("cannot broadcast {} to shape {s:?}", a.ty())));
                }
                let r = self.broadcast_to(&a, &s);
                (*dst, self.loose_from(r, &a))
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
            Inst::Take { dst, a, ids, axis } => (*dst, self.take(&g(a)?, &g(ids)?, axis.0 as usize)?),
            Inst::ScatterAdd { dst, a, ids, u, axis } => {
                (*dst, self.scatter_add(&g(a)?, &g(ids)?, &g(u)?, axis.0 as usize)?)
            }
            Inst::DynSlice { dst, a, starts, sizes } => {
                let st = starts.iter().map(g).collect::<Result<Vec<_>>>()?;
                let s = usize_dims(&sizes.0).ok_or_else(|| EmitError::new(name(), "dimension too large"))?;
                (*dst, self.dyn_slice(&g(a)?, &st, &s)?)
            }
            Inst::DynUpdateSlice { dst, a, u, starts } => {
                let st = starts.iter().map(g).collect::<Result<Vec<_>>>()?;
                (*dst, self.dyn_update_slice(&g(a)?, &g(u)?, &st)?)
            }
            Inst::Cumsum { dst, a, axis, reverse } => (*dst, self.cumsum(&g(a)?, axis.0 as usize, *reverse)?),
            Inst::ShapeOf { dst, a } => {
                let a = g(a)?;
                let s: Vec<i32> = a.shape.iter().map(|&d| i32::try_from(d).unwrap_or(i32::MAX)).collect();
                let t = Tensor::from_vec(&[s.len()], s).map_err(|e| EmitError::new(name(), e.message))?;
                (*dst, self.constant(&t))
            }
            Inst::Print { srcs } if host_print => {
                let vs = srcs.iter().map(g).collect::<Result<Vec<_>>>()?;
                self.host_print(&vs);
                return Ok(());
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

/// Wraps the emitted body of `main` into a module. On more than one device
/// the module says how many partitions it has, its parameters carry their
/// layouts (`shards`, replicated where missing) and its results theirs
/// (`result_shards`: a result made by a `shard` constraint stays split,
/// the others are replicated: each device holds the whole result).
fn module(
    name: &str,
    params: &[Val],
    body: &str,
    results: &[Val],
    opts: &EmitOptions,
    shards: &[Option<shard::ShardSpec>],
    result_shards: &[Option<shard::ShardSpec>],
) -> String {
    let mut s = String::new();
    let mesh = opts.mesh;
    let _ = writeln!(
        s,
        "module @{} attributes {{mhlo.num_partitions = {} : i32, mhlo.num_replicas = 1 : i32}} {{",
        sanitize(name),
        mesh.devices().max(1)
    );
    if mesh.devices() > 1 && opts.shard_dialect == shard::ShardDialect::Shardy {
        let _ = writeln!(s, "  {}", shard::sdy_mesh(mesh));
    }
    let ps: Vec<String> = params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let spec = shards.get(i).copied().flatten();
            format!("{}: {}{}", p.name, p.ty(), shard::attr(opts.shard_dialect, mesh, p.shape.len(), spec))
        })
        .collect();
    let rts: Vec<String> = results.iter().map(Val::ty).collect();
    let rattrs: Vec<String> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let spec = result_shards.get(i).copied().flatten();
            format!("{}{}", r.ty(), shard::attr(opts.shard_dialect, mesh, r.shape.len(), spec))
        })
        .collect();
    let _ = writeln!(s, "  func.func public @main({}) -> ({}) {{", ps.join(", "), rattrs.join(", "));
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
    let result_shards: Vec<Option<shard::ShardSpec>> =
        results.iter().map(|r| e.sharded.get(&r.name).copied()).collect();
    let result_bytes = results
        .iter()
        .map(|v| v.shape.iter().fold(v.dtype.size_in_bytes(), |a, &d| a.saturating_mul(d)))
        .fold(0usize, usize::saturating_add);
    Lowered {
        peak_bytes: e.peak.max(result_bytes),
        text: module(name, &params, &e.out, &results, &e.opts, &e.param_shards, &result_shards),
        result_shards,
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
    shards: &[Option<shard::ShardSpec>],
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
    e.param_shards = shards.to_vec();
    e.fuel = metered_param(opts, &mut params);
    e.block(func, func.body, &mut env)?;
    let results = Emitter::results(func, func.body, &env, "function")?;
    let mut results = e.settle_all(&results);
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
    let results = dsts.iter().map(|r| Emitter::get(&env, inst, *r)).collect::<Result<Vec<_>>>()?;
    let mut results = e.settle_all(&results);
    results.extend(e.fuel.clone());
    Ok(finish(e, &format!("loopvm_{}_loop", func.name), params, results))
}
