//! [`CraneliftBackend`]: promotion policy, the cache of compiled loops and
//! the per-loop reports behind `--stats`.

use super::libcalls::{NativeMeter, Printer, STOP_STEPS, STOP_TIME};
use super::lower::{Region, TType};
use super::native::{self, NativeLoop};
use cranelift_codegen::isa::OwnedTargetIsa;
use hashbrown::HashMap;
use loopvm_runtime::Tensor;
use loopvm_vm::{
    region_inputs, Backend, BlockId, ExecError, FuncId, Inst, LoopSite, LoopState, LoopStats, Meter, Module, Reg,
};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Where a loop ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopTier {
    /// Only in the interpreter.
    Interpreter,
    /// Compiled on its own and run as native code.
    Cranelift,
    /// Run as native code inside the compiled region of an enclosing loop
    /// (given as function and body block) only.
    Inlined {
        /// The enclosing loop's function.
        func: FuncId,
        /// The enclosing loop's body block.
        body: BlockId,
    },
}

/// What happened to one loop, for `--stats`.
#[derive(Clone, Debug)]
pub struct LoopReport {
    /// The function holding the loop.
    pub func: FuncId,
    /// The loop's body block (with `func`, the loop's identity).
    pub body: BlockId,
    /// The function's name.
    pub func_name: String,
    /// `fori_loop`, `while_loop` or `scan`.
    pub kind: &'static str,
    /// Where it ran.
    pub tier: LoopTier,
    /// The profiler's iteration count when the loop first ran natively.
    pub promoted_at: Option<u64>,
    /// `true` when it was taken over while running (on-stack replacement).
    pub osr: bool,
    /// Entries of the loop run natively as the region's own loop.
    pub native_entries: u64,
    /// Iterations run natively (also inside enclosing compiled loops).
    pub native_iterations: u64,
    /// Time spent compiling it (every type signature it was compiled for).
    pub compile_time: Duration,
    /// Why it was not compiled, one line per failed attempt.
    pub reasons: Vec<String>,
    /// The optimised Cranelift IR and machine code of its last compilation,
    /// when [`CraneliftBackend::keep_listings`] is on.
    pub listing: Option<String>,
}

impl LoopReport {
    fn new(func: FuncId, body: BlockId, func_name: &str, kind: &'static str) -> LoopReport {
        LoopReport {
            func,
            body,
            func_name: func_name.to_string(),
            kind,
            tier: LoopTier::Interpreter,
            promoted_at: None,
            osr: false,
            native_entries: 0,
            native_iterations: 0,
            compile_time: Duration::ZERO,
            reasons: Vec::new(),
            listing: None,
        }
    }

    /// `true` when the loop ran as native code, on its own or inside another.
    pub fn is_native(&self) -> bool {
        self.tier != LoopTier::Interpreter
    }
}

/// A compiled loop and how to feed it.
struct Compiled {
    code: NativeLoop,
    /// Position in the region inputs of each `init` register.
    init_pos: Vec<usize>,
}

/// Input types, metered, buffers: the code, or `None` when it failed to compile.
type Variant = (Vec<TType>, bool, bool, Option<Rc<Compiled>>);

/// One loop: its report, its region inputs and its compiled variants.
struct LoopEntry {
    report: LoopReport,
    inputs: Option<Rc<[Reg]>>,
    /// Per input type signature, metering and buffers (see
    /// [`CraneliftBackend::set_buffers`]): the code, or `None` when it failed
    /// to compile.
    variants: Vec<Variant>,
}

/// The Cranelift tier as a [`Backend`]: compiles hot loops and runs them
/// natively, in place of the interpreter.
///
/// A loop is hot when the profiler has counted `threshold` iterations or
/// `threshold` entries of it (0: compile on first sight). It is promoted on
/// entry ([`Backend::run_loop`]) or, while the interpreter runs it, at the
/// next offer to [`Backend::resume_loop`] (every
/// [`loopvm_vm::RESUME_INTERVAL`] iterations), so a single long loop never
/// finishes in the interpreter. Compiled code is cached by (function, body
/// block, input types and shapes); a region that does not compile is
/// remembered too and left to the interpreter, with the reason in its
/// [`LoopReport`].
///
/// One backend serves one module: offered a loop of another module, it
/// forgets what it compiled. Under `--max-steps` or `--timeout` loops are
/// compiled *metered* (they count their iterations and look at the clock,
/// see `lower`), under `--max-memory` the results are checked before they
/// are allocated; native code does not trace: leave the backend out of
/// traced runs.
pub struct CraneliftBackend {
    threshold: u64,
    isa: Option<OwnedTargetIsa>,
    module_key: usize,
    loops: HashMap<(FuncId, BlockId), LoopEntry>,
    fault: bool,
    listings: bool,
    buffers: bool,
    /// Where native `print`s write (the interpreter's output).
    out: Box<dyn std::io::Write>,
}

/// The threshold [`CraneliftBackend::default`] uses.
pub const DEFAULT_THRESHOLD: u64 = 1000;

impl Default for CraneliftBackend {
    fn default() -> Self {
        CraneliftBackend::new(DEFAULT_THRESHOLD)
    }
}

fn loop_kind(inst: &Inst) -> &'static str {
    match inst {
        Inst::Fori { .. } => "fori_loop",
        Inst::While { .. } => "while_loop",
        Inst::Scan { .. } => "scan",
        _ => "region",
    }
}

impl CraneliftBackend {
    /// A backend promoting loops after `threshold` iterations or entries.
    pub fn new(threshold: u64) -> CraneliftBackend {
        CraneliftBackend {
            threshold,
            isa: None,
            module_key: 0,
            loops: HashMap::new(),
            fault: false,
            listings: false,
            buffers: true,
            out: Box::new(std::io::stdout()),
        }
    }

    /// Sends the output of `print` in native code to `w` (default: stdout).
    /// Give it the interpreter's output, so that lines keep their order.
    pub fn set_output(&mut self, w: Box<dyn std::io::Write>) {
        self.out = w;
    }

    /// The promotion threshold.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Every loop offered so far (or run inside a compiled one), ordered by
    /// function and body block.
    pub fn reports(&self) -> Vec<&LoopReport> {
        let mut v: Vec<&LoopReport> = self.loops.values().map(|e| &e.report).collect();
        v.sort_by_key(|r| (r.func, r.body));
        v
    }

    /// The report of the loop whose body is `body` in `func`.
    pub fn report(&self, func: FuncId, body: BlockId) -> Option<&LoopReport> {
        self.loops.get(&(func, body)).map(|e| &e.report)
    }

    /// The loops that ran natively, as (function, body block).
    pub fn promoted(&self) -> Vec<(FuncId, BlockId)> {
        self.reports().into_iter().filter(|r| r.is_native()).map(|r| (r.func, r.body)).collect()
    }

    /// One line per loop, for `--stats`: where it ran, when it was
    /// promoted, its native iterations, or why it was not compiled.
    pub fn stats_text(&self) -> String {
        let mut s = String::new();
        for r in self.reports() {
            let _ = write!(s, "{} in `{}` (b{}): ", r.kind, r.func_name, r.body.0);
            match r.tier {
                LoopTier::Interpreter => s.push_str("interpreter"),
                LoopTier::Cranelift => s.push_str("cranelift"),
                LoopTier::Inlined { func, body } => {
                    let _ = write!(s, "cranelift, inside the loop f{}:b{}", func.0, body.0);
                }
            }
            if let Some(at) = r.promoted_at {
                let how = if r.osr { "mid-flight, " } else { "" };
                let _ = write!(s, ", promoted {how}after {at} interpreted iterations");
            }
            if r.is_native() {
                let _ = write!(
                    s,
                    ", {} native iterations in {} entries, compiled in {:.2?}",
                    r.native_iterations, r.native_entries, r.compile_time
                );
            }
            for why in &r.reasons {
                let first = why.lines().next().unwrap_or("");
                let _ = write!(s, "; not compiled: {first}");
            }
            s.push('\n');
        }
        s
    }

    /// Keeps, in each [`LoopReport::listing`], the optimised Cranelift IR
    /// and the machine code of the loop's compilation (for `--dump-jit`).
    pub fn keep_listings(&mut self, on: bool) {
        self.listings = on;
    }

    /// Lets compiled loops compute values of more than
    /// [`super::MAX_ELEMS`] elements in buffers, with the runtime's buffer
    /// kernels (on by default). Off, such a loop is not compiled (as before
    /// buffers existed): `auto` turns it off for tensor loops it keeps for
    /// XLA. Code compiled either way is cached apart.
    pub fn set_buffers(&mut self, on: bool) {
        self.buffers = on;
    }

    /// Makes every compilation emit an ill-typed instruction, so that the
    /// verifier rejects it (tests of the verifier-error path).
    #[doc(hidden)]
    pub fn inject_verifier_fault(&mut self, on: bool) {
        self.fault = on;
    }

    fn hot(&self, s: &LoopStats) -> bool {
        s.iterations >= self.threshold || s.entries >= self.threshold
    }

    fn sync_module(&mut self, m: &Module) {
        let key = m as *const Module as usize;
        if key != self.module_key {
            self.loops.clear();
            self.module_key = key;
        }
    }

    fn entry(&mut self, site: &LoopSite<'_>) -> &mut LoopEntry {
        self.loops.entry((site.func_id, site.body)).or_insert_with(|| LoopEntry {
            report: LoopReport::new(site.func_id, site.body, &site.func.name, loop_kind(site.inst)),
            inputs: None,
            variants: Vec::new(),
        })
    }

    /// The compiled code for this site and these inputs, compiling it on
    /// first use; `None` when the region does not compile.
    fn code_for(&mut self, site: &LoopSite<'_>, inputs: &[&Tensor], metered: bool) -> Option<Rc<Compiled>> {
        let (fault, listing, buffers) = (self.fault, self.listings, self.buffers);
        if self.isa.is_none() {
            match native::host_isa() {
                Ok(isa) => self.isa = Some(isa),
                Err(e) => {
                    let why = e.to_string();
                    let ent = self.entry(site);
                    if !ent.report.reasons.contains(&why) {
                        ent.report.reasons.push(why);
                    }
                    return None;
                }
            }
        }
        let isa = self.isa.clone()?;
        let ent = self.entry(site);
        if let Some((_, _, _, code)) = ent.variants.iter().find(|(sig, m, bufs, _)| {
            *m == metered
                && *bufs == buffers
                && sig.len() == inputs.len()
                && sig.iter().zip(inputs).all(|(t, x)| t.matches(x))
        }) {
            return code.clone();
        }
        let regs = ent.inputs.get_or_insert_with(|| region_inputs(site.func, site.inst).into()).clone();
        let sig: Vec<TType> = inputs.iter().map(|t| TType::of(t)).collect();
        let started = Instant::now();
        let opts = CompileOpts { fault, listing, metered, buffers };
        let compiled = compile_site(&isa, site, &regs, &sig, opts);
        let ent = self.entry(site);
        ent.report.compile_time += started.elapsed();
        let code = match compiled {
            Ok(c) => {
                ent.report.listing.clone_from(&c.code.listing);
                Some(Rc::new(c))
            }
            Err(why) => {
                ent.report.reasons.push(why);
                None
            }
        };
        ent.variants.push((sig, metered, buffers, code.clone()));
        code
    }

    /// Runs `code` and books its iterations; `None` when the call was
    /// refused (a type mismatch, which `code_for` rules out).
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &mut self,
        site: &LoopSite<'_>,
        code: &Compiled,
        inputs: &[&Tensor],
        carry: &[&Tensor],
        start: u64,
        ys: &[&Tensor],
        meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        let nc = code.code.carry.len();
        if meter.max_memory().is_some() {
            // The results are allocated here (a running scan's ys are
            // copied); the code's buffers are held while it runs.
            let bytes = code.code.outs.iter().try_fold(code.code.scratch_bytes(), |acc, t| {
                acc.checked_add(t.numel().checked_mul(t.dtype.size_in_bytes())?)
            });
            if let Err(e) = meter.reserve("a native loop's results and buffers", meter.held, bytes) {
                return Some(Err(e));
            }
        }
        let mut outs = Vec::with_capacity(code.code.outs.len());
        for (k, t) in code.code.outs.iter().enumerate() {
            let y = if k >= nc { ys.get(k - nc) } else { None };
            match y {
                Some(y) => outs.push((*y).clone()),
                None => match Tensor::zeros(t.dtype, &t.shape) {
                    Ok(z) => outs.push(z),
                    Err(e) if e.is_out_of_memory() => return Some(Err(ExecError::kernel(&site.func.name, e))),
                    Err(e) => return Some(Err(ExecError::Other(e.message))),
                },
            }
        }
        let mut counters = vec![0u64; code.code.loops.len()];
        let mut nm = NativeMeter::new(meter.steps_left(), meter.deadline());
        nm.cancel = meter.cancel_flag().cloned();
        let mut printer = Printer { out: &mut *self.out, sites: &code.code.prints };
        nm.printer = (&mut printer as *mut Printer<'_>).cast();
        let ran = code.code.run(inputs, carry, &mut outs, &mut counters, start, &mut nm);
        nm.printer = std::ptr::null_mut();
        let _ = self.out.flush();
        if let Err(why) = ran {
            self.entry(site).report.reasons.push(format!("native call refused: {why}"));
            return None;
        }
        // Unmetered code runs only when no limit counts steps.
        let verdict = if !code.code.metered {
            Ok(())
        } else if nm.stop == STOP_STEPS {
            // The budget is spent and one more iteration ran.
            Err(meter.overrun())
        } else if nm.stop == STOP_TIME {
            Err(meter.timeout_error())
        } else {
            meter.charge(nm.used())
        };
        let own = (site.func_id, site.body);
        for (&(f, b), &n) in code.code.loops.iter().zip(&counters) {
            if let Some(e) = self.loops.get_mut(&(f, b)) {
                e.report.native_iterations += n;
                if e.report.tier == LoopTier::Interpreter {
                    e.report.tier = LoopTier::Inlined { func: own.0, body: own.1 };
                }
            } else if n > 0 {
                let (name, kind) = site
                    .module
                    .funcs
                    .get(f.0 as usize)
                    .map(|func| (func.name.as_str(), nested_kind(func, b)))
                    .unwrap_or(("?", "loop"));
                let mut r = LoopReport::new(f, b, name, kind);
                r.tier = LoopTier::Inlined { func: own.0, body: own.1 };
                r.native_iterations = n;
                self.loops.insert((f, b), LoopEntry { report: r, inputs: None, variants: Vec::new() });
            }
        }
        let promoted_at = site.stats.iterations;
        let r = &mut self.entry(site).report;
        r.tier = LoopTier::Cranelift;
        r.native_entries += 1;
        if r.promoted_at.is_none() {
            r.promoted_at = Some(promoted_at);
            r.osr = start > 0;
        }
        Some(verdict.map(|()| outs))
    }
}

/// The kind of the loop whose body is `body` in `func`.
fn nested_kind(func: &loopvm_vm::Func, body: BlockId) -> &'static str {
    for b in &func.blocks {
        for i in &b.code {
            match i {
                Inst::Fori { body: x, .. } | Inst::Scan { body: x, .. } | Inst::While { body: x, .. } if *x == body => {
                    return loop_kind(i)
                }
                _ => {}
            }
        }
    }
    "loop"
}

/// How a region is compiled (see [`Region`]).
#[derive(Clone, Copy)]
struct CompileOpts {
    fault: bool,
    listing: bool,
    metered: bool,
    buffers: bool,
}

fn compile_site(
    isa: &OwnedTargetIsa,
    site: &LoopSite<'_>,
    regs: &[Reg],
    sig: &[TType],
    opts: CompileOpts,
) -> Result<Compiled, String> {
    let CompileOpts { fault, listing, metered, buffers } = opts;
    if regs.len() != sig.len() {
        return Err(format!("{} inputs offered for {} region inputs", sig.len(), regs.len()));
    }
    let init: &[Reg] = match site.inst {
        Inst::Fori { init, .. } | Inst::While { init, .. } | Inst::Scan { init, .. } => init,
        _ => return Err("not a loop".into()),
    };
    let init_pos: Vec<usize> = init
        .iter()
        .map(|r| regs.iter().position(|x| x == r).ok_or_else(|| format!("init register r{} is not an input", r.0)))
        .collect::<Result<_, _>>()?;
    let carry: Vec<TType> = init_pos.iter().map(|&k| sig[k].clone()).collect();
    let region = Region {
        module: site.module,
        func_id: site.func_id,
        inst: site.inst,
        input_regs: regs,
        inputs: sig,
        carry: &carry,
        fault,
        listing,
        metered,
        buffers,
    };
    let code = native::compile(isa, &region).map_err(|e| e.to_string())?;
    Ok(Compiled { code, init_pos })
}

impl Backend for CraneliftBackend {
    fn run_loop(
        &mut self,
        site: &LoopSite<'_>,
        inputs: &[&Tensor],
        meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        self.sync_module(site.module);
        if !self.hot(&site.stats) {
            self.entry(site);
            return None;
        }
        let code = self.code_for(site, inputs, meter.counts())?;
        let carry: Vec<&Tensor> = code.init_pos.iter().filter_map(|&k| inputs.get(k).copied()).collect();
        self.execute(site, &code, inputs, &carry, 0, &[], meter)
    }

    fn resume_loop(
        &mut self,
        site: &LoopSite<'_>,
        inputs: &[&Tensor],
        state: &LoopState<'_>,
        meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        self.sync_module(site.module);
        if !self.hot(&site.stats) {
            return None;
        }
        let code = self.code_for(site, inputs, meter.counts())?;
        self.execute(site, &code, inputs, state.carry, state.done, state.ys, meter)
    }
}
