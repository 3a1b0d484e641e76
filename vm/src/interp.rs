//! The eager interpreter: runs bytecode op by op, the reference semantics
//! of every tier.
//!
//! A frame is one [`Val`] per register: empty, an unboxed scalar, or a
//! tensor (`vm/src/value.rs`). The elementwise ops on scalars run on the
//! unboxed values ([`loopvm_runtime::kernels::scalar`]); every other op gets
//! its scalar operands boxed first. Kernels write into their destination
//! register and reuse its buffer when they hold the only reference to it;
//! loops swap each iteration's results into their carry registers, so the
//! previous carry's buffers become the next iteration's output buffers and a
//! shape-stable loop allocates nothing in steady state.
//!
//! The loop profiler counts entries and iterations per loop instruction
//! (identified by its body block); the step counter and the fuel check sit on
//! loop back edges only.

use crate::backend::{region_inputs, Backend, LoopSite, LoopState, RESUME_INTERVAL};
use crate::error::ExecError;
use crate::inst::Inst;
use crate::meter::Meter;
use crate::module::{Dim, Func, Module, TensorType};
use crate::operand::{BlockId, ConstId, FuncId, Reg};
use crate::sblock::{self, Bank, SOp, WhileAt, WhileEnd};
use crate::value::Val;
use loopvm_runtime::kernels::{self, scalar as sk, Scalar};
use loopvm_runtime::{DType, RuntimeError, Tensor, UpdateMode};
use std::io::Write;
use std::rc::Rc;
use std::time::Instant;

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Print each op as it runs (with its result's type and a value summary)
    /// and each loop iteration, to the trace sink.
    pub trace: bool,
    /// Stop with an error after this many loop iterations in total (checked
    /// on back edges, and by back ends in the loops they run).
    pub max_steps: Option<u64>,
    /// The tensor bytes a run may hold: an op whose result would take the
    /// registers of the running function past it fails before it allocates.
    pub max_memory: Option<usize>,
    /// Stop with an error after this much wall-clock time (checked every
    /// 1024 loop iterations and at every call).
    pub timeout: Option<std::time::Duration>,
    /// Stop with [`ExecError::Interrupted`] once this flag is set (read where
    /// the deadline is: every 1024 loop iterations and at every call).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Entry and iteration counts of one loop instruction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// How many times the loop instruction ran.
    pub entries: u64,
    /// Iterations over all its entries, in the interpreter.
    pub iterations: u64,
    /// Entries a back end ran or took over mid-flight (iterations it ran
    /// are the back end's, not counted here).
    pub offloaded: u64,
}

/// The loop profiler's counts: one entry per (function, body block).
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// `loops[func][block]`: counts for the loop whose body is that block
    /// (zero for blocks that are not loop bodies).
    pub loops: Vec<Vec<LoopStats>>,
}

impl Profile {
    /// Counts of the loop whose body is `body` in `func`.
    pub fn get(&self, func: FuncId, body: BlockId) -> LoopStats {
        self.loops.get(func.0 as usize).and_then(|f| f.get(body.0 as usize)).copied().unwrap_or_default()
    }
    /// Every loop that ran, as `(func, body block, stats)`.
    pub fn entries(&self) -> Vec<(FuncId, BlockId, LoopStats)> {
        let mut v = Vec::new();
        for (f, blocks) in self.loops.iter().enumerate() {
            for (b, s) in blocks.iter().enumerate() {
                if s.entries > 0 {
                    v.push((FuncId(f as u32), BlockId(b as u32), *s));
                }
            }
        }
        v
    }
}

/// Counters of one interpreter over its lifetime.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Instructions executed (a loop instruction counts once; its body's ops count each time).
    pub ops: u64,
    /// Loop iterations, all loops together.
    pub loop_iterations: u64,
    /// Wall-clock time spent in `call`.
    pub elapsed: std::time::Duration,
}

type Frame = Vec<Val>;

/// How [`Interpreter::fori_banked`] left a loop.
enum Banked<At = usize> {
    /// The loop is finished (`Some`: a back end finished it, with these
    /// results); the carry is in the frame.
    Done(Option<Vec<Tensor>>),
    /// An op could not run on the bank: the bank is in the frame, and the
    /// current iteration goes on there from this op.
    Stopped(At),
    /// The bank does not take the loop's values (a carry that is not a
    /// scalar): the loop runs on the frame from the start.
    Declined,
}

/// The deepest chain of nested calls accepted at run time.
pub const MAX_CALL_DEPTH: usize = 256;

/// Runs the functions of one module.
pub struct Interpreter<'m> {
    m: &'m Module,
    /// The module's rank-0 constants, unboxed (`None` for the others).
    kscalars: Vec<Option<Scalar>>,
    /// `scalar_blocks[func][block]`: the block decoded for the scalar
    /// runner when it is all scalar elementwise ops ([`scalar_block`],
    /// [`crate::sblock`]); loops run it with [`Self::run_scalar_block`].
    scalar_blocks: Vec<Vec<Option<Rc<[SOp]>>>>,
    /// `banks[func][block]`: a scalar block with parameters in the form
    /// [`Self::exec_fori`] runs a whole counted loop in ([`sblock::Bank`]).
    banks: Vec<Vec<Option<Rc<Bank>>>>,
    opts: RunOptions,
    /// Bound values of the module's shape variables.
    sym: Vec<Option<u64>>,
    /// One reusable frame per function (functions do not recurse).
    frames: Vec<Option<Frame>>,
    /// Loop counts.
    pub profile: Profile,
    /// Op and iteration counts.
    pub stats: Stats,
    out: Box<dyn Write + 'm>,
    trace_out: Box<dyn Write + 'm>,
    depth: usize,
    meter: Meter,
    backend: Option<&'m mut dyn Backend>,
}

#[cold]
fn undefined(r: Reg) -> ExecError {
    ExecError::Internal(format!("register r{} read before it was written (unverified bytecode?)", r.0))
}

#[cold]
fn unboxed_err(r: Reg) -> ExecError {
    ExecError::Internal(format!("register r{} holds an unboxed scalar where a tensor was expected", r.0))
}

/// The tensor in register `r` (a scalar operand must have been boxed).
#[inline(always)]
fn get(frame: &[Val], r: Reg) -> Result<&Tensor, ExecError> {
    match frame.get(r.0 as usize) {
        Some(Val::Tensor(t)) => Ok(t),
        Some(Val::Scalar(_)) => Err(unboxed_err(r)),
        _ => Err(undefined(r)),
    }
}

/// The value in register `r`, which must have been written.
#[inline(always)]
fn val(frame: &[Val], r: Reg) -> Result<&Val, ExecError> {
    match frame.get(r.0 as usize) {
        Some(Val::Empty) | None => Err(undefined(r)),
        Some(v) => Ok(v),
    }
}

/// The value in register `r` as a tensor (a scalar is boxed into a new one).
fn owned(frame: &[Val], r: Reg) -> Result<Tensor, ExecError> {
    val(frame, r)?.to_tensor().ok_or_else(|| undefined(r))
}

/// The value in register `r` when it is a scalar (unboxed or rank 0).
#[inline(always)]
fn scalar(frame: &[Val], r: Reg) -> Option<Scalar> {
    frame.get(r.0 as usize).and_then(Val::scalar)
}

/// Boxes register `r` in place when it holds an unboxed scalar.
#[inline(always)]
fn box_reg(frame: &mut [Val], r: Reg) {
    if let Some(v) = frame.get_mut(r.0 as usize) {
        v.make_tensor();
    }
}

#[inline(always)]
fn slot(frame: &mut [Val], r: Reg) -> Result<&mut Val, ExecError> {
    frame.get_mut(r.0 as usize).ok_or_else(|| undefined(r))
}

/// Writes scalar `v` into register `r`.
#[inline(always)]
fn put(frame: &mut [Val], r: Reg, v: Scalar) -> Result<(), ExecError> {
    slot(frame, r)?.put_scalar(v);
    Ok(())
}

/// `true` for the instructions whose arms read unboxed scalar operands
/// themselves; every other instruction has its operands boxed first.
#[inline(always)]
fn reads_unboxed(inst: &Inst) -> bool {
    matches!(
        inst,
        Inst::Const { .. }
            | Inst::Move { .. }
            | Inst::Unary { .. }
            | Inst::Binary { .. }
            | Inst::BinaryK { .. }
            | Inst::KBinary { .. }
            | Inst::Select { .. }
            | Inst::Cast { .. }
            | Inst::Print { .. }
            | Inst::Call { .. }
            | Inst::If { .. }
            | Inst::Fori { .. }
            | Inst::While { .. }
            | Inst::Scan { .. }
    )
}

/// `true` when every instruction of `code` is an elementwise op, constant
/// or move whose result is a scalar: a loop body or condition the scalar
/// runner takes (`x * 1103515245i64 + 12345i64`, `k < n`).
fn scalar_block(func: &Func, code: &[Inst]) -> bool {
    let scalar = |r: &Reg| func.reg_types.get(r.0 as usize).is_some_and(|t| t.rank() == 0);
    code.iter().all(|inst| match inst {
        Inst::Const { dst, .. }
        | Inst::Move { dst, .. }
        | Inst::Unary { dst, .. }
        | Inst::Binary { dst, .. }
        | Inst::BinaryK { dst, .. }
        | Inst::KBinary { dst, .. }
        | Inst::Select { dst, .. }
        | Inst::Cast { dst, .. } => scalar(dst),
        _ => false,
    })
}

fn swap(frame: &mut [Val], a: Reg, b: Reg) -> Result<(), ExecError> {
    let (a, b) = (a.0 as usize, b.0 as usize);
    if a >= frame.len() || b >= frame.len() {
        return Err(ExecError::Internal("register out of range".into()));
    }
    frame.swap(a, b);
    Ok(())
}

/// The line `print(a, b, ...)` writes (without its newline): one value as
/// `Display` shows it, several as a tuple. Every tier prints through this.
pub fn print_line(parts: &[&Tensor]) -> String {
    let mut line = String::new();
    write_print_line(&mut line, parts);
    line
}

/// Appends [`print_line`]'s text to `out` (a host callback reuses one
/// buffer instead of allocating a line per print).
pub fn write_print_line(out: &mut String, parts: &[&Tensor]) {
    use std::fmt::Write as _;
    match parts {
        [one] => {
            let _ = write!(out, "{one}");
        }
        _ => {
            out.push('(');
            for (k, t) in parts.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{t}");
            }
            out.push(')');
        }
    }
}

impl<'m> Interpreter<'m> {
    /// An interpreter for `m`, which must have passed [`crate::verify`].
    /// `print` goes to stdout and the trace to stderr until redirected.
    pub fn new(m: &'m Module, opts: RunOptions) -> Interpreter<'m> {
        let meter = Meter::new(opts.max_steps, opts.max_memory, opts.timeout).with_cancel(opts.cancel.clone());
        let kscalars: Vec<Option<Scalar>> = m.consts.iter().map(Scalar::of).collect();
        let scalar_blocks: Vec<Vec<Option<Rc<[SOp]>>>> = m
            .funcs
            .iter()
            .map(|f| {
                f.blocks
                    .iter()
                    .map(|b| scalar_block(f, &b.code).then(|| Rc::from(sblock::decode(&b.code, &kscalars))))
                    .collect()
            })
            .collect::<Vec<Vec<Option<Rc<[SOp]>>>>>();
        let banks = m
            .funcs
            .iter()
            .zip(&scalar_blocks)
            .map(|(f, decoded)| {
                // Each `while_loop` body's condition block.
                let conds: Vec<(usize, usize)> = f
                    .blocks
                    .iter()
                    .flat_map(|b| &b.code)
                    .filter_map(|i| match i {
                        Inst::While { cond, body, .. } => Some((body.0 as usize, cond.0 as usize)),
                        _ => None,
                    })
                    .collect();
                let regs = |rs: &[Reg]| rs.iter().map(|r| r.0).collect::<Vec<u32>>();
                f.blocks
                    .iter()
                    .zip(decoded)
                    .enumerate()
                    .map(|(i, (b, ops))| {
                        let ops = ops.as_deref()?;
                        let (params, results) = (regs(&b.params), regs(&b.results));
                        match conds.iter().find(|&&(body, _)| body == i) {
                            Some(&(_, c)) => {
                                let cb = f.blocks.get(c)?;
                                let (cops, test) = (decoded.get(c)?.as_deref()?, cb.results.first()?.0);
                                Bank::new_while(cops, &regs(&cb.params), test, ops, &params, &results)
                            }
                            None => Bank::new(ops, &params, &results),
                        }
                        .map(Rc::new)
                    })
                    .collect()
            })
            .collect();
        Interpreter {
            m,
            kscalars,
            scalar_blocks,
            banks,
            opts,
            sym: vec![None; m.symbols.len()],
            frames: vec![None; m.funcs.len()],
            profile: Profile { loops: m.funcs.iter().map(|f| vec![LoopStats::default(); f.blocks.len()]).collect() },
            stats: Stats::default(),
            out: Box::new(std::io::stdout()),
            trace_out: Box::new(std::io::stderr()),
            depth: 0,
            meter,
            backend: None,
        }
    }

    /// Sends the output of `print` to `w`.
    pub fn set_output(&mut self, w: Box<dyn Write + 'm>) {
        self.out = w;
    }

    /// Offers loops and calls to `b` before running them here.
    pub fn set_backend(&mut self, b: &'m mut dyn Backend) {
        self.backend = Some(b);
    }

    /// Sends the trace to `w`.
    pub fn set_trace_output(&mut self, w: Box<dyn Write + 'm>) {
        self.trace_out = w;
    }

    /// Calls function `f` with its flattened parameters and returns its
    /// flattened results. Checks the arguments against the signature and
    /// binds the function's shape variables from them.
    ///
    /// The call runs with subnormal floats flushed to zero, as XLA runs
    /// (see [`loopvm_runtime::fpmode`]); native code it enters inherits the mode.
    pub fn call(&mut self, f: FuncId, args: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
        loopvm_runtime::fpmode::flush_subnormals(|| self.call_in_mode(f, args))
    }

    fn call_in_mode(&mut self, f: FuncId, args: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
        let start = Instant::now();
        self.meter.start();
        let func =
            self.m.funcs.get(f.0 as usize).ok_or_else(|| ExecError::Internal(format!("no function f{}", f.0)))?;
        self.bind_args(func, args)?;
        if let Some(b) = self.backend.as_mut() {
            self.meter.held = args.iter().map(Tensor::nbytes).sum();
            if let Some(r) = b.run_function(self.m, f, args, &mut self.meter) {
                self.stats.elapsed += start.elapsed();
                return r;
            }
        }
        let body =
            func.blocks.get(func.body.0 as usize).ok_or_else(|| ExecError::Internal("missing entry block".into()))?;
        let mut frame = self.frames.get_mut(f.0 as usize).and_then(Option::take).unwrap_or_default();
        frame.resize(func.num_regs(), Val::Empty);
        for (p, a) in body.params.iter().zip(args) {
            *slot(&mut frame, *p)? = Val::Tensor(a.clone());
        }
        let r = self.run_block(f, func, &mut frame, func.body);
        let results = r.and_then(|()| body.results.iter().map(|r| owned(&frame, *r)).collect::<Result<Vec<_>, _>>());
        if let Some(s) = self.frames.get_mut(f.0 as usize) {
            frame.iter_mut().for_each(|x| *x = Val::Empty);
            *s = Some(frame);
        }
        self.stats.elapsed += start.elapsed();
        results
    }

    /// Checks `args` against `func`'s parameter types and binds shape variables.
    fn bind_args(&mut self, func: &Func, args: &[Tensor]) -> Result<(), ExecError> {
        self.sym.iter_mut().for_each(|s| *s = None);
        let leaves: Vec<(&str, &TensorType)> =
            func.params.iter().flat_map(|p| p.ty.leaves().into_iter().map(move |t| (p.name.as_str(), t))).collect();
        if leaves.len() != args.len() {
            return Err(ExecError::BadArgument(format!(
                "`{}` takes {} tensors, got {}",
                func.name,
                leaves.len(),
                args.len()
            )));
        }
        for ((name, ty), a) in leaves.into_iter().zip(args) {
            let want = ty.display(&self.m.symbols);
            let bad = || ExecError::BadArgument(format!("`{name}` must be {want}, got {}", a.type_string()));
            if a.dtype() != ty.dtype || a.rank() != ty.rank() {
                return Err(bad());
            }
            for (d, &n) in ty.dims.iter().zip(a.shape()) {
                match *d {
                    Dim::Fixed(k) if k != n as u64 => return Err(bad()),
                    Dim::Var(v) => match self.sym.get_mut(v as usize) {
                        Some(s @ None) => *s = Some(n as u64),
                        Some(Some(k)) if *k == n as u64 => {}
                        Some(Some(k)) => {
                            let var = self.m.symbols.get(v as usize).map_or("?", |s| s.as_str());
                            return Err(ExecError::BadArgument(format!(
                                "`{name}` has {var} = {n}, but an earlier argument bound {var} = {k}"
                            )));
                        }
                        None => return Err(ExecError::Internal("shape variable out of range".into())),
                    },
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The concrete shape of a register type under the current binding.
    fn resolve(&self, t: &TensorType) -> Result<Vec<usize>, ExecError> {
        self.m.resolve_shape(t, &self.sym).ok_or_else(|| ExecError::Internal("unbound shape variable".into()))
    }

    /// Constant `k` of the module.
    #[inline]
    fn konst(&self, k: ConstId) -> Result<&'m Tensor, ExecError> {
        let m: &'m Module = self.m;
        m.consts.get(k.0 as usize).ok_or_else(|| ExecError::Internal(format!("no constant k{}", k.0)))
    }

    #[cold]
    fn kernel_err(&self, func: &Func, e: RuntimeError) -> ExecError {
        ExecError::kernel(&func.name, e)
    }

    #[inline(always)]
    fn back_edge(&mut self) -> Result<(), ExecError> {
        self.meter.charge(1)?;
        if self.meter.steps().is_multiple_of(1024) {
            self.check_deadline()?;
        }
        Ok(())
    }

    fn check_deadline(&self) -> Result<(), ExecError> {
        self.meter.check_deadline()
    }

    /// Fails when a new tensor of `bytes` would take the function's
    /// registers past `--max-memory`, before it is allocated.
    fn reserve(&self, frame: &[Val], op: &str, bytes: Option<usize>) -> Result<(), ExecError> {
        if self.meter.max_memory().is_none() {
            return Ok(());
        }
        self.meter.reserve(op, held_bytes(frame), bytes)
    }

    /// Before a back end runs a region: the bytes this frame holds, for
    /// `--max-memory`.
    fn note_held(&mut self, frame: &[Val]) {
        if self.meter.max_memory().is_some() {
            self.meter.held = held_bytes(frame);
        }
    }

    fn trace_iter(&mut self, what: &str, i: u64) {
        let pad = "  ".repeat(self.depth);
        let _ = writeln!(self.trace_out, "{pad}-- {what} iteration {i}");
    }

    fn trace_inst(&mut self, func: &Func, inst: &Inst, frame: &[Val]) {
        let pad = "  ".repeat(self.depth);
        let mut defs = Vec::new();
        inst.visit_defs(&mut |r| defs.push(r));
        let vals: Vec<String> = defs
            .iter()
            .map(|r| format!("r{} = {}", r.0, frame.get(r.0 as usize).map_or("-".into(), |v| v.summary(6))))
            .collect();
        let name = inst.opcode().info().name.to_lowercase();
        let sub = match inst {
            Inst::Unary { op, .. } => format!(" {op}"),
            Inst::Binary { op, .. } | Inst::BinaryK { op, .. } | Inst::KBinary { op, .. } => format!(" {op}"),
            Inst::Reduce { op, .. } => format!(" {op}"),
            Inst::Call { func: f, .. } => {
                format!(" {}", self.m.funcs.get(f.0 as usize).map_or("?", |f| f.name.as_str()))
            }
            _ => String::new(),
        };
        let _ = writeln!(self.trace_out, "{pad}[{}] {name}{sub}: {}", func.name, vals.join(", "));
    }

    /// Runs the instructions of block `b` of `func` (`fid`) in `frame`.
    fn run_block(&mut self, fid: FuncId, func: &'m Func, frame: &mut Frame, b: BlockId) -> Result<(), ExecError> {
        let block = func.blocks.get(b.0 as usize).ok_or_else(|| ExecError::Internal(format!("no block b{}", b.0)))?;
        for inst in &block.code {
            self.stats.ops += 1;
            self.exec(fid, func, frame, inst)?;
            if self.opts.trace {
                self.trace_inst(func, inst, frame);
            }
        }
        Ok(())
    }

    /// The decoded form of block `b` of function `fid` when the scalar
    /// runner takes it; loops look it up once per entry.
    fn loop_block(&self, fid: FuncId, b: BlockId) -> Option<Rc<[SOp]>> {
        self.scalar_blocks.get(fid.0 as usize).and_then(|f| f.get(b.0 as usize)).cloned().flatten()
    }

    /// The bank form of block `b` of function `fid`, when it has one.
    fn loop_bank(&self, fid: FuncId, b: BlockId) -> Option<Rc<Bank>> {
        self.banks.get(fid.0 as usize).and_then(|f| f.get(b.0 as usize)).cloned().flatten()
    }

    /// Runs a loop's body or condition block: through the scalar runner
    /// when the block is all scalar ops (`ops`, from [`Self::loop_block`]),
    /// else as any block.
    #[inline(always)]
    fn run_loop_block(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        b: BlockId,
        ops: Option<&[SOp]>,
    ) -> Result<(), ExecError> {
        match ops {
            // The whole block on unboxed operands, inline in the loop.
            Some(ops) if !self.opts.trace => {
                let done = sblock::run(ops, frame);
                self.stats.ops += done as u64;
                if done == ops.len() {
                    return Ok(());
                }
                self.run_scalar_block(fid, func, frame, b, ops, done)
            }
            Some(ops) => self.run_scalar_block(fid, func, frame, b, ops, 0),
            None => self.run_block(fid, func, frame, b),
        }
    }

    /// [`Self::run_block`] for a block of scalar ops, `ops` its decoded
    /// form, from instruction `at` on: [`sblock::run`] runs the
    /// instructions on unboxed operands in a tight loop (Lua's `ADDK` is a
    /// few machine instructions; the general dispatch's frame and spills
    /// cost more than the op), and stops at one it cannot take, which the
    /// general [`Self::exec`] runs before the decoded loop goes on. Same
    /// effects, counts, errors and trace. [`Self::run_loop_block`] runs the
    /// first stretch inline and calls this only when it stopped early.
    #[inline(never)]
    fn run_scalar_block(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        b: BlockId,
        ops: &[SOp],
        mut at: usize,
    ) -> Result<(), ExecError> {
        let block = func.blocks.get(b.0 as usize).ok_or_else(|| ExecError::Internal(format!("no block b{}", b.0)))?;
        if self.opts.trace {
            return self.run_traced(fid, func, frame, &block.code);
        }
        // `at` is where the inline stretch stopped: the general dispatch
        // runs that instruction first.
        if let Some(inst) = block.code.get(at) {
            self.stats.ops += 1;
            self.exec_outlined(fid, func, frame, inst)?;
            at += 1;
        }
        while let Some(rest) = ops.get(at..) {
            let done = sblock::run(rest, frame);
            self.stats.ops += done as u64;
            at += done;
            let Some(inst) = block.code.get(at) else { break };
            self.stats.ops += 1;
            self.exec_outlined(fid, func, frame, inst)?;
            at += 1;
        }
        Ok(())
    }

    /// The scalar runner under `--trace`: one instruction at a time, each traced.
    #[cold]
    fn run_traced(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        code: &'m [Inst],
    ) -> Result<(), ExecError> {
        for inst in code {
            self.stats.ops += 1;
            self.exec_outlined(fid, func, frame, inst)?;
            self.trace_inst(func, inst, frame);
        }
        Ok(())
    }

    /// The scalar runner's fallback: [`Self::exec`] out of line.
    #[inline(never)]
    fn exec_outlined(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        inst: &'m Inst,
    ) -> Result<(), ExecError> {
        self.exec(fid, func, frame, inst)
    }

    /// Executes one instruction: one arm per opcode.
    #[inline(always)]
    fn exec(&mut self, fid: FuncId, func: &'m Func, frame: &mut Frame, inst: &'m Inst) -> Result<(), ExecError> {
        macro_rules! kernel {
            ($dst:expr, |$out:ident| $call:expr) => {{
                let mut $out = slot(frame, $dst)?.take_tensor();
                let r = $call;
                slot(frame, $dst)?.put_slot($out);
                r.map_err(|e| self.kernel_err(func, e))
            }};
        }
        // The arms of `reads_unboxed` instructions try the scalar path
        // first and box their operands for the kernel after it.
        if !reads_unboxed(inst) {
            inst.visit_uses(&mut |r| box_reg(frame, r));
        }
        match inst {
            Inst::Const { dst, k } => {
                if let Some(Some(s)) = self.kscalars.get(k.0 as usize) {
                    return put(frame, *dst, *s);
                }
                let c = self.konst(*k)?;
                *slot(frame, *dst)? = Val::Tensor(c.clone());
                Ok(())
            }
            Inst::Move { dst, src } | Inst::Shard { dst, a: src, .. } => {
                let v = val(frame, *src)?.clone();
                *slot(frame, *dst)? = v;
                Ok(())
            }
            Inst::Unary { op, dst, a } => {
                if let Some(v) = scalar(frame, *a).and_then(|x| sk::unary(*op, x)) {
                    return put(frame, *dst, v);
                }
                box_reg(frame, *a);
                kernel!(*dst, |out| kernels::unary(*op, get(frame, *a)?, &mut out))
            }
            // Tensor operands (the common case outside scalar blocks) go
            // straight to the kernel: one tag test per operand, no boxing.
            Inst::Binary { op, dst, a, b } => {
                if let (Some(Val::Tensor(_)), Some(Val::Tensor(_))) = (frame.get(a.0 as usize), frame.get(b.0 as usize))
                {
                    return kernel!(*dst, |out| kernels::binary(*op, get(frame, *a)?, get(frame, *b)?, &mut out));
                }
                if let (Some(x), Some(y)) = (scalar(frame, *a), scalar(frame, *b)) {
                    if let Some(v) = sk::binary(*op, x, y) {
                        return put(frame, *dst, v);
                    }
                }
                box_reg(frame, *a);
                box_reg(frame, *b);
                kernel!(*dst, |out| kernels::binary(*op, get(frame, *a)?, get(frame, *b)?, &mut out))
            }
            Inst::BinaryK { op, dst, a, k } => {
                if let Some(Val::Tensor(_)) = frame.get(a.0 as usize) {
                    let c = self.konst(*k)?;
                    return kernel!(*dst, |out| kernels::binary(*op, get(frame, *a)?, c, &mut out));
                }
                if let (Some(x), Some(Some(y))) = (scalar(frame, *a), self.kscalars.get(k.0 as usize)) {
                    if let Some(v) = sk::binary(*op, x, *y) {
                        return put(frame, *dst, v);
                    }
                }
                box_reg(frame, *a);
                let c = self.konst(*k)?;
                kernel!(*dst, |out| kernels::binary(*op, get(frame, *a)?, c, &mut out))
            }
            Inst::KBinary { op, dst, k, a } => {
                if let Some(Val::Tensor(_)) = frame.get(a.0 as usize) {
                    let c = self.konst(*k)?;
                    return kernel!(*dst, |out| kernels::binary(*op, c, get(frame, *a)?, &mut out));
                }
                if let (Some(Some(x)), Some(y)) = (self.kscalars.get(k.0 as usize), scalar(frame, *a)) {
                    if let Some(v) = sk::binary(*op, *x, y) {
                        return put(frame, *dst, v);
                    }
                }
                box_reg(frame, *a);
                let c = self.konst(*k)?;
                kernel!(*dst, |out| kernels::binary(*op, c, get(frame, *a)?, &mut out))
            }
            Inst::Select { dst, c, a, b } => {
                if let (Some(k), Some(x), Some(y)) = (scalar(frame, *c), scalar(frame, *a), scalar(frame, *b)) {
                    if let Some(v) = sk::select(k, x, y) {
                        return put(frame, *dst, v);
                    }
                }
                for r in [c, a, b] {
                    box_reg(frame, *r);
                }
                kernel!(*dst, |out| kernels::select(get(frame, *c)?, get(frame, *a)?, get(frame, *b)?, &mut out))
            }
            Inst::Cast { dst, a, to } => {
                if let Some(x) = scalar(frame, *a) {
                    return put(frame, *dst, sk::cast(x, *to));
                }
                kernel!(*dst, |out| kernels::cast(get(frame, *a)?, *to, &mut out))
            }
            Inst::Bitcast { dst, a, to } => kernel!(*dst, |out| kernels::bitcast(get(frame, *a)?, *to, &mut out)),
            Inst::Iota { dst, dtype, n } => {
                let n = usize::try_from(*n).map_err(|_| ExecError::Other("iota length too large".into()))?;
                self.reserve(frame, "iota", n.checked_mul(dtype.size_in_bytes()))?;
                kernel!(*dst, |out| kernels::iota(*dtype, n, &mut out))
            }
            Inst::MatMul { dst, a, b } => {
                if self.meter.max_memory().is_some() {
                    let (x, y) = (get(frame, *a)?, get(frame, *b)?);
                    let rows = if x.rank() == 2 { x.shape()[0] } else { 1 };
                    let cols = if y.rank() == 2 { y.shape()[1] } else { 1 };
                    self.reserve(
                        frame,
                        "matmul",
                        rows.checked_mul(cols).and_then(|n| n.checked_mul(x.dtype().size_in_bytes())),
                    )?;
                }
                kernel!(*dst, |out| kernels::matmul(get(frame, *a)?, get(frame, *b)?, &mut out))
            }
            Inst::DotGeneral { dst, a, b, dims } => {
                if self.meter.max_memory().is_some() {
                    let (x, y) = (get(frame, *a)?, get(frame, *b)?);
                    if let Ok(g) = loopvm_runtime::rules::dot_general(x.shape(), y.shape(), dims) {
                        let shape: Vec<usize> = g.dims();
                        let n = shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
                        self.reserve(frame, "dot_general", n.and_then(|n| n.checked_mul(x.dtype().size_in_bytes())))?;
                    }
                }
                kernel!(*dst, |out| kernels::dot_general(get(frame, *a)?, get(frame, *b)?, dims, &mut out))
            }
            Inst::Reduce { op, dst, a, axis } => {
                kernel!(*dst, |out| kernels::reduce(*op, get(frame, *a)?, axis.0.map(|x| x as usize), &mut out))
            }
            Inst::Reshape { dst, a, shape } => {
                let s = dims(&shape.0)?;
                kernel!(*dst, |out| kernels::reshape(get(frame, *a)?, &s, &mut out))
            }
            Inst::ReshapeAs { dst, a } => {
                let t = func.reg_types.get(dst.0 as usize).ok_or_else(|| ExecError::Internal("bad register".into()))?;
                let s = self.resolve(t)?;
                kernel!(*dst, |out| kernels::reshape(get(frame, *a)?, &s, &mut out))
            }
            Inst::Transpose { dst, a, perm } => {
                let p: Option<Vec<usize>> = perm.0.as_ref().map(|p| p.iter().map(|&x| x as usize).collect());
                kernel!(*dst, |out| kernels::transpose(get(frame, *a)?, p.as_deref(), &mut out))
            }
            Inst::Broadcast { dst, a, shape } => {
                let s = dims(&shape.0)?;
                if self.meter.max_memory().is_some() {
                    let n = s.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
                    self.reserve(
                        frame,
                        "broadcast",
                        n.and_then(|n| n.checked_mul(get(frame, *a).ok()?.dtype().size_in_bytes())),
                    )?;
                }
                kernel!(*dst, |out| kernels::broadcast_to(get(frame, *a)?, &s, &mut out))
            }
            Inst::Concat { dst, srcs, axis } => {
                let owned = srcs.iter().map(|r| get(frame, *r).cloned()).collect::<Result<Vec<_>, _>>()?;
                let ts: Vec<&Tensor> = owned.iter().collect();
                if self.meter.max_memory().is_some() {
                    self.reserve(frame, "concat", ts.iter().try_fold(0usize, |acc, t| acc.checked_add(t.nbytes())))?;
                }
                kernel!(*dst, |out| kernels::concat(&ts, axis.0 as usize, &mut out))
            }
            Inst::Stack { dst, srcs, axis } => {
                let owned = srcs.iter().map(|r| get(frame, *r).cloned()).collect::<Result<Vec<_>, _>>()?;
                let ts: Vec<&Tensor> = owned.iter().collect();
                if self.meter.max_memory().is_some() {
                    self.reserve(frame, "stack", ts.iter().try_fold(0usize, |acc, t| acc.checked_add(t.nbytes())))?;
                }
                kernel!(*dst, |out| kernels::stack(&ts, axis.0 as usize, &mut out))
            }
            Inst::Slice { dst, a, specs } => kernel!(*dst, |out| kernels::slice(get(frame, *a)?, &specs.0, &mut out)),
            Inst::Index { dst, a, idx } => {
                let ix = indices(frame, idx)?;
                kernel!(*dst, |out| kernels::dynamic_index(get(frame, *a)?, &ix, &mut out))
            }
            Inst::Update { mode, dst, a, idx, v } => {
                let ix = indices(frame, idx)?;
                kernel!(*dst, |out| kernels::dynamic_update(get(frame, *a)?, &ix, get(frame, *v)?, *mode, &mut out))
            }
            Inst::Take { dst, a, ids, axis } => {
                if self.meter.max_memory().is_some() {
                    // The result can be far larger than the operands: ids × a row.
                    let (x, i) = (get(frame, *a)?, get(frame, *ids)?);
                    let n = x.shape().get(axis.0 as usize).copied().unwrap_or(1).max(1);
                    let bytes =
                        (x.numel() / n).checked_mul(i.numel()).and_then(|k| k.checked_mul(x.dtype().size_in_bytes()));
                    self.reserve(frame, "take", bytes)?;
                }
                kernel!(*dst, |out| kernels::take(get(frame, *a)?, get(frame, *ids)?, axis.0 as usize, &mut out))
            }
            Inst::ScatterAdd { dst, a, ids, u, axis } => kernel!(*dst, |out| kernels::scatter_add(
                get(frame, *a)?,
                get(frame, *ids)?,
                get(frame, *u)?,
                axis.0 as usize,
                &mut out
            )),
            Inst::DynSlice { dst, a, starts, sizes } => {
                let st = indices(frame, starts)?;
                let s = dims(&sizes.0)?;
                kernel!(*dst, |out| kernels::dynamic_slice(get(frame, *a)?, &st, &s, &mut out))
            }
            Inst::DynUpdateSlice { dst, a, u, starts } => {
                let st = indices(frame, starts)?;
                kernel!(*dst, |out| kernels::dynamic_update_slice(get(frame, *a)?, get(frame, *u)?, &st, &mut out))
            }
            Inst::Cumsum { dst, a, axis, reverse } => {
                kernel!(*dst, |out| kernels::cumsum(get(frame, *a)?, axis.0 as usize, *reverse, &mut out))
            }
            Inst::ShapeOf { dst, a } => {
                let s: Vec<i32> =
                    get(frame, *a)?.shape().iter().map(|&d| i32::try_from(d).unwrap_or(i32::MAX)).collect();
                let t = Tensor::from_vec(&[s.len()], s).map_err(|e| self.kernel_err(func, e))?;
                *slot(frame, *dst)? = Val::Tensor(t);
                Ok(())
            }
            Inst::Print { srcs } => {
                let parts = srcs.iter().map(|r| owned(frame, *r)).collect::<Result<Vec<_>, _>>()?;
                let parts: Vec<&Tensor> = parts.iter().collect();
                let _ = writeln!(self.out, "{}", print_line(&parts));
                Ok(())
            }
            Inst::Call { dsts, func: callee, args } => self.exec_call(frame, dsts, *callee, args),
            Inst::If { dsts, c, then_, else_ } => {
                let cv = scalar(frame, *c)
                    .and_then(Scalar::to_bool)
                    .ok_or_else(|| ExecError::Internal("if condition is not a bool scalar".into()))?;
                let b = if cv { *then_ } else { *else_ };
                self.depth += 1;
                let r = self.run_block(fid, func, frame, b);
                self.depth -= 1;
                r?;
                let blk = func.block(b);
                for (d, r) in dsts.iter().zip(&blk.results) {
                    let v = std::mem::take(slot(frame, *r)?);
                    *slot(frame, *d)? = v;
                }
                Ok(())
            }
            Inst::Fori { dsts, body, .. } | Inst::While { dsts, body, .. } | Inst::Scan { dsts, body, .. }
                if self.backend.is_some() && self.offer_loop(fid, func, frame, inst, dsts, *body)? =>
            {
                Ok(())
            }
            Inst::Fori { dsts, lo, hi, init, body, .. } => {
                self.exec_fori(fid, func, frame, inst, dsts, *lo, *hi, init, *body)
            }
            Inst::While { dsts, init, cond, body } => self.exec_while(fid, func, frame, inst, dsts, init, *cond, *body),
            Inst::Scan { dsts, init, xs, length, reverse, body, .. } => {
                self.exec_scan(fid, func, frame, inst, dsts, init, xs, length.0, *reverse, *body)
            }
        }
    }

    /// Offers a loop to the back end; `Ok(true)` when it ran the loop and
    /// wrote its results.
    fn offer_loop(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        inst: &'m Inst,
        dsts: &[Reg],
        body: BlockId,
    ) -> Result<bool, ExecError> {
        let inputs = region_inputs(func, inst);
        let vals = inputs.iter().map(|r| owned(frame, *r)).collect::<Result<Vec<_>, _>>()?;
        let vals: Vec<&Tensor> = vals.iter().collect();
        let site = LoopSite { module: self.m, func_id: fid, func, inst, body, stats: self.profile.get(fid, body) };
        self.note_held(frame);
        let Some(b) = self.backend.as_mut() else { return Ok(false) };
        let Some(r) = b.run_loop(&site, &vals, &mut self.meter) else { return Ok(false) };
        let outs = r?;
        if outs.len() != dsts.len() {
            return Err(ExecError::Internal(format!(
                "back end returned {} values for {} results",
                outs.len(),
                dsts.len()
            )));
        }
        for (d, v) in dsts.iter().zip(outs) {
            *slot(frame, *d)? = Val::Tensor(v);
        }
        if let Some(s) = self.profile.loops.get_mut(fid.0 as usize).and_then(|f| f.get_mut(body.0 as usize)) {
            s.entries += 1;
            s.offloaded += 1;
        }
        Ok(true)
    }

    /// Offers a running loop to the back end at an iteration boundary.
    /// `Ok(Some(results))` when the back end finished it.
    #[allow(clippy::too_many_arguments)]
    fn offer_resume(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &Frame,
        inst: &'m Inst,
        body: BlockId,
        done: u64,
        carry: &[Reg],
        ys: &[Reg],
    ) -> Result<Option<Vec<Tensor>>, ExecError> {
        let inputs = region_inputs(func, inst);
        let owned_all = |rs: &[Reg]| rs.iter().map(|r| owned(frame, *r)).collect::<Result<Vec<_>, _>>();
        let (vals, cv, yv) = (owned_all(&inputs)?, owned_all(carry)?, owned_all(ys)?);
        let (vals, cv, yv): (Vec<&Tensor>, Vec<&Tensor>, Vec<&Tensor>) =
            (vals.iter().collect(), cv.iter().collect(), yv.iter().collect());
        let mut stats = self.profile.get(fid, body);
        stats.iterations += done;
        let site = LoopSite { module: self.m, func_id: fid, func, inst, body, stats };
        let state = LoopState { done, carry: &cv, ys: &yv };
        self.note_held(frame);
        let Some(b) = self.backend.as_mut() else { return Ok(None) };
        match b.resume_loop(&site, &vals, &state, &mut self.meter) {
            None => Ok(None),
            Some(r) => {
                let vals = r?;
                if let Some(s) = self.profile.loops.get_mut(fid.0 as usize).and_then(|f| f.get_mut(body.0 as usize)) {
                    s.offloaded += 1;
                }
                Ok(Some(vals))
            }
        }
    }

    fn exec_call(&mut self, frame: &mut Frame, dsts: &[Reg], callee: FuncId, args: &[Reg]) -> Result<(), ExecError> {
        let cfunc: &'m Func =
            self.m.funcs.get(callee.0 as usize).ok_or_else(|| ExecError::Internal("no such function".into()))?;
        self.check_deadline()?;
        if self.depth >= MAX_CALL_DEPTH {
            return Err(ExecError::Other(format!("calls nested deeper than {MAX_CALL_DEPTH}")));
        }
        let body =
            cfunc.blocks.get(cfunc.body.0 as usize).ok_or_else(|| ExecError::Internal("missing entry block".into()))?;
        let mut cf = self.frames.get_mut(callee.0 as usize).and_then(Option::take).unwrap_or_default();
        cf.resize(cfunc.num_regs(), Val::Empty);
        for (p, a) in body.params.iter().zip(args) {
            *slot(&mut cf, *p)? = val(frame, *a)?.clone();
        }
        self.depth += 1;
        let r = self.run_block(callee, cfunc, &mut cf, cfunc.body);
        self.depth -= 1;
        let r = r.and_then(|()| {
            for (d, res) in dsts.iter().zip(&body.results) {
                let v = std::mem::take(slot(&mut cf, *res)?);
                *slot(frame, *d)? = v;
            }
            Ok(())
        });
        if let Some(s) = self.frames.get_mut(callee.0 as usize) {
            *s = Some(cf);
        }
        r
    }

    fn copy_in(frame: &mut Frame, params: &[Reg], init: &[Reg]) -> Result<(), ExecError> {
        for (p, r) in params.iter().zip(init) {
            let v = val(frame, *r)?.clone();
            *slot(frame, *p)? = v;
        }
        Ok(())
    }

    fn swap_results(frame: &mut Frame, params: &[Reg], results: &[Reg]) -> Result<(), ExecError> {
        for (p, r) in params.iter().zip(results) {
            swap(frame, *p, *r)?;
        }
        Ok(())
    }

    fn copy_out(frame: &mut Frame, dsts: &[Reg], params: &[Reg]) -> Result<(), ExecError> {
        for (d, p) in dsts.iter().zip(params) {
            let v = std::mem::take(slot(frame, *p)?);
            *slot(frame, *d)? = v;
        }
        Ok(())
    }

    fn count_loop(&mut self, fid: FuncId, body: BlockId, iterations: u64) {
        self.stats.loop_iterations += iterations;
        if let Some(s) = self.profile.loops.get_mut(fid.0 as usize).and_then(|f| f.get_mut(body.0 as usize)) {
            s.entries += 1;
            s.iterations += iterations;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn exec_fori(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        inst: &'m Inst,
        dsts: &[Reg],
        lo: Reg,
        hi: Reg,
        init: &[Reg],
        body: BlockId,
    ) -> Result<(), ExecError> {
        let blk = func.block(body);
        let bound =
            |r: Reg| scalar(frame, r).ok_or_else(|| ExecError::Internal("fori_loop bound is not a scalar".into()));
        let (lo_s, hi_s) = (bound(lo)?, bound(hi)?);
        let dtype = lo_s.dtype();
        let (lo_v, hi_v) = (lo_s.to_i64(), hi_s.to_i64());
        let Some((&ireg, carry)) = blk.params.split_first() else {
            return Err(ExecError::Internal("fori_loop body without a counter".into()));
        };
        Self::copy_in(frame, carry, init)?;
        let ops = self.loop_block(fid, body);
        let bank = if self.opts.trace { None } else { self.loop_bank(fid, body).filter(|b| !b.is_while()) };
        let wide = dtype == DType::I64;
        let mut i = lo_v;
        let mut n = 0u64;
        self.depth += 1;
        let r = (|| {
            // The bank first; where it stops mid-iteration (`at`), that
            // iteration and the rest run on the frame.
            let mut stopped = None;
            if let (Some(bk), true) = (bank.as_deref(), i < hi_v) {
                match self.fori_banked(fid, func, frame, inst, body, bk, carry, &mut i, hi_v, wide, &mut n)? {
                    Banked::Done(res) => return Ok(res),
                    Banked::Stopped(at) => stopped = Some(at),
                    Banked::Declined => {}
                }
            }
            while i < hi_v {
                match (stopped.take(), ops.as_deref()) {
                    (Some(at), Some(ops)) => self.run_scalar_block(fid, func, frame, body, ops, at)?,
                    _ => {
                        slot(frame, ireg)?.put_counter(i, wide);
                        if self.opts.trace {
                            self.trace_iter("fori_loop", n);
                        }
                        self.run_loop_block(fid, func, frame, body, ops.as_deref())?;
                    }
                }
                Self::swap_results(frame, carry, &blk.results)?;
                self.back_edge()?;
                i += 1;
                n += 1;
                if self.backend.is_some() && n.is_multiple_of(RESUME_INTERVAL) && i < hi_v {
                    if let Some(res) = self.offer_resume(fid, func, frame, inst, body, n, carry, &[])? {
                        return Ok(Some(res));
                    }
                }
            }
            Ok(None)
        })();
        self.depth -= 1;
        self.count_loop(fid, body, n);
        Self::finish(frame, dsts, carry, r?)
    }

    /// Runs iterations `*i..hi` of a `fori_loop` whose body has a bank
    /// form ([`sblock::Bank`]): the carry and the body's registers live in
    /// a bank of unboxed scalars on the stack, filled from the frame once
    /// and written back once. The iterations run in chunks that end where
    /// the per-iteration loop of [`Self::exec_fori`] would do something
    /// besides the body: a multiple of 1024 steps (the deadline and cancel
    /// check), the step limit plus one (so the charge fails after exactly
    /// as many bodies as it would one by one), and, with a back end, every
    /// [`RESUME_INTERVAL`] iterations (the bank is written back before the
    /// back end is offered the loop). Each chunk charges the meter once.
    /// Counts, limits, errors, profile and results are those of running
    /// the body one iteration at a time; only the meter is charged per
    /// chunk, which nothing can observe between chunks (the body is
    /// scalar ops with no effects). Where an op cannot run on the bank
    /// (an operand of another dtype, an op the scalar path does not take),
    /// the bank is written back and [`Banked::Stopped`] says where the
    /// frame must go on.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn fori_banked(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        inst: &'m Inst,
        body: BlockId,
        bk: &Bank,
        carry: &[Reg],
        i: &mut i64,
        hi: i64,
        wide: bool,
        n: &mut u64,
    ) -> Result<Banked, ExecError> {
        let mut slots: sblock::Slots = [Scalar::Bool(false); sblock::BANK_SLOTS];
        let bank = &mut slots;
        if !bk.load(frame, bank) {
            return Ok(Banked::Declined);
        }
        let mut whole = false;
        while *i < hi {
            let chunk = self.bank_chunk(*n).min(hi.wrapping_sub(*i) as u64);
            let (ran, stop) = bk.run(bank, i, chunk, wide);
            self.stats.ops += ran * bk.ops() as u64;
            *n += ran;
            whole |= ran > 0;
            if let Err(e) = self.charge_chunk(ran) {
                bk.store(bank, frame, whole, 0);
                return Err(e);
            }
            if let Some(at) = stop {
                bk.store(bank, frame, whole, at);
                self.stats.ops += at as u64;
                return Ok(Banked::Stopped(at));
            }
            if self.backend.is_some() && n.is_multiple_of(RESUME_INTERVAL) && *i < hi {
                bk.store(bank, frame, true, 0);
                if let Some(res) = self.offer_resume(fid, func, frame, inst, body, *n, carry, &[])? {
                    return Ok(Banked::Done(Some(res)));
                }
            }
        }
        bk.store(bank, frame, whole, 0);
        Ok(Banked::Done(None))
    }

    /// Writes a loop's results: the back end's, when it finished the loop,
    /// else the carry registers.
    fn finish(frame: &mut Frame, dsts: &[Reg], carry: &[Reg], resumed: Option<Vec<Tensor>>) -> Result<(), ExecError> {
        match resumed {
            Some(vals) => {
                if vals.len() != dsts.len() {
                    return Err(ExecError::Internal(format!(
                        "back end returned {} values for {} results",
                        vals.len(),
                        dsts.len()
                    )));
                }
                for (d, v) in dsts.iter().zip(vals) {
                    *slot(frame, *d)? = Val::Tensor(v);
                }
                Ok(())
            }
            None => Self::copy_out(frame, dsts, carry),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn exec_while(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        inst: &'m Inst,
        dsts: &[Reg],
        init: &[Reg],
        cond: BlockId,
        body: BlockId,
    ) -> Result<(), ExecError> {
        let (cb, bb) = (func.block(cond), func.block(body));
        let Some(&creg) = cb.results.first() else {
            return Err(ExecError::Internal("while_loop condition without a result".into()));
        };
        Self::copy_in(frame, &bb.params, init)?;
        let (cops, bops) = (self.loop_block(fid, cond), self.loop_block(fid, body));
        let bank = if self.opts.trace { None } else { self.loop_bank(fid, body).filter(|b| b.is_while()) };
        let mut n = 0u64;
        self.depth += 1;
        let r = (|| {
            // The bank first; where it stops mid-iteration (`at`), that
            // iteration and the rest run on the frame.
            let mut at = None;
            if let Some(bk) = bank.as_deref() {
                match self.while_banked(fid, func, frame, inst, body, bk, &bb.params, &mut n)? {
                    Banked::Done(res) => return Ok(res),
                    Banked::Stopped(w) => at = Some(w),
                    Banked::Declined => {}
                }
            }
            loop {
                let in_body = match at.take() {
                    Some(WhileAt::Body(i)) => Some(i),
                    Some(WhileAt::Cond(i)) => {
                        // The condition's params, as the frame's iteration
                        // copies them in, then the rest of the condition.
                        Self::copy_in(frame, &cb.params, &bb.params)?;
                        if let Some(ops) = cops.as_deref() {
                            self.run_scalar_block(fid, func, frame, cond, ops, i)?;
                        }
                        None
                    }
                    None => {
                        Self::copy_in(frame, &cb.params, &bb.params)?;
                        self.run_loop_block(fid, func, frame, cond, cops.as_deref())?;
                        None
                    }
                };
                match (in_body, bops.as_deref()) {
                    (Some(i), Some(ops)) => self.run_scalar_block(fid, func, frame, body, ops, i)?,
                    _ => {
                        let go = scalar(frame, creg)
                            .and_then(Scalar::to_bool)
                            .ok_or_else(|| ExecError::Internal("while_loop condition is not a bool scalar".into()))?;
                        // Drop the condition's references to the carry so the
                        // body's output slots stay uniquely owned.
                        for p in &cb.params {
                            *slot(frame, *p)? = Val::Empty;
                        }
                        if !go {
                            return Ok(None);
                        }
                        if self.opts.trace {
                            self.trace_iter("while_loop", n);
                        }
                        self.run_loop_block(fid, func, frame, body, bops.as_deref())?;
                    }
                }
                Self::swap_results(frame, &bb.params, &bb.results)?;
                self.back_edge()?;
                n += 1;
                if self.backend.is_some() && n.is_multiple_of(RESUME_INTERVAL) {
                    if let Some(res) = self.offer_resume(fid, func, frame, inst, body, n, &bb.params, &[])? {
                        return Ok(Some(res));
                    }
                }
            }
        })();
        self.depth -= 1;
        self.count_loop(fid, body, n);
        Self::finish(frame, dsts, &bb.params, r?)
    }

    /// The most iterations a bank may run before the loop must do what the
    /// frame's iteration does besides its ops, after `n` iterations: the
    /// deadline check at every multiple of 1024 steps, the step limit plus
    /// one (so the charge fails after exactly as many bodies as one at a
    /// time), and, with a back end, the offer every [`RESUME_INTERVAL`].
    fn bank_chunk(&self, n: u64) -> u64 {
        let steps = self.meter.steps();
        let chunk = (1024 - steps % 1024).min(self.meter.steps_left().saturating_add(1));
        if self.backend.is_some() {
            chunk.min(RESUME_INTERVAL - n % RESUME_INTERVAL)
        } else {
            chunk
        }
    }

    /// Charges the meter for `ran` iterations a bank ran, as that many
    /// [`Self::back_edge`]s would (the deadline when a multiple of 1024
    /// steps is reached: a chunk ends there).
    fn charge_chunk(&mut self, ran: u64) -> Result<(), ExecError> {
        if ran == 0 {
            return Ok(());
        }
        self.meter.charge(ran)?;
        if self.meter.steps().is_multiple_of(1024) {
            self.check_deadline()?;
        }
        Ok(())
    }

    /// Runs a `while_loop` whose condition and body have a bank form
    /// ([`sblock::Bank::new_while`]) on its bank, as [`Self::fori_banked`]
    /// runs a `fori_loop`: in chunks that end where the frame's loop does
    /// anything besides the condition and the body (the deadline check
    /// every 1024 steps, the step limit plus one, the back end's offer),
    /// the meter charged once per chunk. Counts, limits, errors, profile
    /// and results are those of running the loop one iteration at a time.
    /// Where an op cannot run on the bank, the bank is written back and
    /// [`Banked::Stopped`] says where the frame must go on.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn while_banked(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        inst: &'m Inst,
        body: BlockId,
        bk: &Bank,
        carry: &[Reg],
        n: &mut u64,
    ) -> Result<Banked<WhileAt>, ExecError> {
        let mut slots: sblock::Slots = [Scalar::Bool(false); sblock::BANK_SLOTS];
        let bank = &mut slots;
        if !bk.load(frame, bank) {
            return Ok(Banked::Declined);
        }
        let (cond_ops, ops) = (bk.cond_ops() as u64, bk.ops() as u64);
        let mut whole = false;
        loop {
            let (ran, end) = bk.run_while(bank, self.bank_chunk(*n));
            self.stats.ops += ran * ops;
            *n += ran;
            whole |= ran > 0;
            if let Err(e) = self.charge_chunk(ran) {
                bk.store(bank, frame, whole, 0);
                return Err(e);
            }
            match end {
                WhileEnd::Ran => {}
                WhileEnd::Exit => {
                    self.stats.ops += cond_ops;
                    bk.store(bank, frame, true, 0);
                    return Ok(Banked::Done(None));
                }
                WhileEnd::Stopped(at) => {
                    let ran = match at {
                        WhileAt::Cond(i) => i,
                        WhileAt::Body(i) => cond_ops as usize + i,
                    };
                    bk.store(bank, frame, whole, ran);
                    self.stats.ops += ran as u64;
                    return Ok(Banked::Stopped(at));
                }
            }
            if self.backend.is_some() && n.is_multiple_of(RESUME_INTERVAL) {
                bk.store(bank, frame, true, 0);
                if let Some(res) = self.offer_resume(fid, func, frame, inst, body, *n, carry, &[])? {
                    return Ok(Banked::Done(Some(res)));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn exec_scan(
        &mut self,
        fid: FuncId,
        func: &'m Func,
        frame: &mut Frame,
        inst: &'m Inst,
        dsts: &[Reg],
        init: &[Reg],
        xs: &[Reg],
        length: Option<u64>,
        reverse: bool,
        body: BlockId,
    ) -> Result<(), ExecError> {
        let blk = func.block(body);
        let nc = init.len();
        let (cparams, xparams) = blk.params.split_at(nc.min(blk.params.len()));
        let (cres, yres) = blk.results.split_at(nc.min(blk.results.len()));
        let (cdst, ydst) = dsts.split_at(nc.min(dsts.len()));
        // The trip count: the leading dim shared by every xs, and `length`.
        let mut n: Option<usize> = length.map(|l| l as usize);
        for x in xs {
            let t = get(frame, *x)?;
            let lead = *t
                .shape()
                .first()
                .ok_or_else(|| ExecError::Internal(format!("scan over a scalar {}", t.type_string())))?;
            match n {
                None => n = Some(lead),
                Some(k) if k != lead => {
                    return Err(ExecError::Other(format!(
                        "scan: xs have leading dimension {lead}, expected {k} (from length or the other xs)"
                    )))
                }
                _ => {}
            }
        }
        let n = n.ok_or_else(|| ExecError::Internal("scan needs xs or a length".into()))?;
        Self::copy_in(frame, cparams, init)?;
        // ys are allocated once, from the body's y types, then written row by row.
        for (d, y) in ydst.iter().zip(yres) {
            let t = func.reg_types.get(y.0 as usize).ok_or_else(|| ExecError::Internal("bad register".into()))?;
            let mut shape = vec![n];
            shape.extend(self.resolve(t)?);
            let bytes = shape.iter().try_fold(t.dtype.size_in_bytes(), |acc, d| acc.checked_mul(*d));
            self.reserve(frame, "scan ys", bytes)?;
            let z = Tensor::zeros(t.dtype, &shape).map_err(|e| self.kernel_err(func, e))?;
            *slot(frame, *d)? = Val::Tensor(z);
        }
        self.depth += 1;
        let mut done = 0u64;
        let r = (|| {
            for t in 0..n {
                let idx = [if reverse { (n - 1 - t) as i64 } else { t as i64 }];
                for (p, x) in xparams.iter().zip(xs) {
                    let mut out = slot(frame, *p)?.take_tensor();
                    let r = kernels::dynamic_index(get(frame, *x)?, &idx, &mut out);
                    *slot(frame, *p)? = Val::from_slot(out);
                    r.map_err(|e| self.kernel_err(func, e))?;
                }
                if self.opts.trace {
                    self.trace_iter("scan", t as u64);
                }
                self.run_block(fid, func, frame, body)?;
                for (d, y) in ydst.iter().zip(yres) {
                    box_reg(frame, *y);
                    let mut ys = slot(frame, *d)?.take_tensor();
                    let r = kernels::dynamic_update_in_place(&mut ys, &idx, get(frame, *y)?, UpdateMode::Set);
                    *slot(frame, *d)? = Val::from_slot(ys);
                    r.map_err(|e| self.kernel_err(func, e))?;
                }
                Self::swap_results(frame, cparams, cres)?;
                self.back_edge()?;
                done += 1;
                if self.backend.is_some() && done.is_multiple_of(RESUME_INTERVAL) && t + 1 < n {
                    if let Some(res) = self.offer_resume(fid, func, frame, inst, body, done, cparams, ydst)? {
                        return Ok(Some(res));
                    }
                }
            }
            Ok(None)
        })();
        self.depth -= 1;
        self.count_loop(fid, body, done);
        match r? {
            Some(vals) => Self::finish(frame, dsts, cparams, Some(vals)),
            None => Self::copy_out(frame, cdst, cparams),
        }
    }
}

fn held_bytes(frame: &[Val]) -> usize {
    frame.iter().map(Val::nbytes).sum()
}

fn dims(d: &[u64]) -> Result<Vec<usize>, ExecError> {
    d.iter().map(|&x| usize::try_from(x).map_err(|_| ExecError::Other("dimension too large".into()))).collect()
}

fn indices(frame: &[Val], idx: &[Reg]) -> Result<smallvec::SmallVec<[i64; 4]>, ExecError> {
    idx.iter()
        .map(|r| {
            let v = match val(frame, *r)? {
                Val::Scalar(s) => Some(s.to_i64()),
                Val::Tensor(t) => t.scalar_i64(),
                Val::Empty => None,
            };
            v.ok_or_else(|| ExecError::Internal("dynamic index is not an integer scalar".into()))
        })
        .collect()
}
