//! Compiled programs and running them.

use crate::error::{Error, ErrorKind};
use crate::value::Value;
use loopvm_jit::cranelift::CraneliftBackend;
use loopvm_jit::xla::tier::{XlaBackend, XlaMode};
use loopvm_jit::xla::DiskCache;
use loopvm_runtime::Tensor;
use loopvm_vm::{
    Backend, BlockId, ExecError, Fallback, FuncId, Interpreter, LoopSite, LoopState, LoopStats, Meter, Module,
    RunOptions,
};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Which tier runs a program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tier {
    /// The best tier for each loop: hot tensor loops to XLA (when a plugin
    /// is found), hot scalar loops to Cranelift, the rest interpreted.
    #[default]
    Auto,
    /// The eager bytecode interpreter, op by op.
    Interp,
    /// The interpreter with hot loops promoted to Cranelift native code.
    Jit,
    /// Loops compiled to XLA `While` executables through a PJRT plugin.
    Xla,
}

impl Tier {
    /// Parses `auto`, `interp`, `jit` or `xla`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "auto" => Some(Tier::Auto),
            "interp" => Some(Tier::Interp),
            "jit" => Some(Tier::Jit),
            "xla" => Some(Tier::Xla),
            _ => None,
        }
    }
    /// The tier's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Auto => "auto",
            Tier::Interp => "interp",
            Tier::Jit => "jit",
            Tier::Xla => "xla",
        }
    }
}

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    /// The tier.
    pub tier: Tier,
    /// Trace every op to stderr.
    pub trace: bool,
    /// Stop after this many loop iterations.
    pub max_steps: Option<u64>,
    /// The tensor bytes a run may hold (checked before each allocating op).
    pub max_memory: Option<usize>,
    /// Stop after this much wall-clock time.
    pub timeout: Option<Duration>,
    /// Collect the output of `print` into [`RunOutput::printed`] instead of stdout.
    pub capture_print: bool,
    /// Iterations (or entries) after which the `jit` and `auto` tiers
    /// promote a loop to native code; `None` for the default (1000).
    pub jit_threshold: Option<u64>,
    /// Bypass the persistent executable cache (`--no-cache`): compile every
    /// XLA region in this run instead of loading it from loopvm's cache
    /// folder, and store nothing there. The in-memory cache of the program
    /// is used either way.
    pub no_cache: bool,
    /// Stop the run with [`ExecError`](crate::ExecError)`::Interrupted` once
    /// this flag is set (from another thread, or a Ctrl-C handler): read every
    /// 1024 loop iterations in the interpreter, every 65 536 in native code,
    /// and between chunks of a metered XLA region.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Partition the xla tier's executables over this many devices with
    /// XLA's SPMD partitioner (`--devices`; 0 or 1: one device). The CPU
    /// plugin is asked for that many devices (`cpu_device_count`). The
    /// interpreter and the jit tier run on one device and ignore it; `auto`
    /// runs its XLA loops on one device.
    pub devices: usize,
    /// The device mesh (`--mesh 2x2`: `data × model`); `None`: a 1-D mesh
    /// `data` of [`RunConfig::devices`].
    pub mesh: Option<crate::Mesh>,
    /// Arguments of the function run to split over the mesh (`--shard
    /// NAME=AXIS[:MESH_AXIS]`); the others are replicated on every device.
    pub shard: Vec<crate::ShardArg>,
}

/// One loop's counts in a run.
#[derive(Clone, Debug)]
pub struct LoopReport {
    /// The function holding the loop.
    pub func: String,
    /// Its id.
    pub func_id: FuncId,
    /// The loop's body block (its identity within the function).
    pub body: BlockId,
    /// The loop kind (`fori_loop`, `while_loop`, `scan`).
    pub kind: &'static str,
    /// The tier that ran it: `Interp` when no back end took any entry of
    /// it, else `Jit` (Cranelift) or `Xla`; under `auto`, whichever of the
    /// two took it (XLA when it took any entry).
    pub tier: Tier,
    /// Entries and iterations.
    pub stats: LoopStats,
}

/// The result of a run and its statistics.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The function's result.
    pub value: Value,
    /// Every loop that ran.
    pub loops: Vec<LoopReport>,
    /// Instructions executed.
    pub ops: u64,
    /// Loop iterations.
    pub loop_iterations: u64,
    /// Time spent running.
    pub elapsed: Duration,
    /// What `print` wrote, when captured.
    pub printed: String,
    /// Back-end statistics and notes (what ran where, what fell back and why).
    pub notes: Vec<String>,
    /// Regions a compiling tier handed back to the interpreter in this run.
    pub fallbacks: Vec<TierFallback>,
    /// Executions of XLA executables in this run (whole functions and loops).
    pub xla_executions: u64,
}

impl RunOutput {
    /// The distinct loops (function, body) that `tier` ran, as
    /// [`LoopReport::tier`] says.
    pub fn loops_on(&self, tier: Tier) -> usize {
        self.loops.iter().filter(|l| l.tier == tier).count()
    }
}

/// A region a compiling tier ([`Tier::Jit`]: Cranelift, [`Tier::Xla`])
/// declined, so that it ran in the interpreter. `Display` is the note
/// `loopvm run --stats` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierFallback {
    /// The back end that declined it.
    pub tier: Tier,
    /// The region and the reason.
    pub fallback: Fallback,
}

impl std::fmt::Display for TierFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ran in the interpreter ({}): {}", self.tier.as_str(), self.fallback)
    }
}

/// A compiled, verified program. `Send + Sync`: one program can be run from
/// many threads at once; each run has its own interpreter state. The XLA
/// back end (its PJRT client and executable cache) is shared by the runs of
/// one program and serialises them while they hold it.
#[derive(Debug)]
pub struct Program {
    module: Module,
    xla: Mutex<XlaSlot>,
}

/// The program's XLA back end, created on first use.
#[derive(Debug, Default)]
enum XlaSlot {
    #[default]
    Untried,
    Ready(Box<XlaBackend>),
    /// No plugin was found without installing one (for `auto`).
    NotFound(String),
}

impl Clone for Program {
    fn clone(&self) -> Program {
        Program::new(self.module.clone())
    }
}

impl Program {
    fn new(module: Module) -> Program {
        Program { module, xla: Mutex::new(XlaSlot::Untried) }
    }

    /// Compiles `.lb` source; `file` names it in diagnostics.
    pub fn from_source(src: &str, file: &str) -> Result<Program, Error> {
        let module = loopvm_frontend::compile(src, file).map_err(|e| Error::new(ErrorKind::Compile(e.render(src))))?;
        loopvm_vm::verify(&module)
            .map_err(|e| Error::new(ErrorKind::Bytecode(format!("internal compiler error: {e}"))))?;
        Ok(Program::new(module))
    }

    /// Loads a serialised module (`.lbc`), rejecting malformed bytecode.
    pub fn from_bytecode(bytes: &[u8]) -> Result<Program, Error> {
        let module = Module::from_bytes(bytes).map_err(|e| Error::new(ErrorKind::Bytecode(e.to_string())))?;
        loopvm_vm::verify(&module).map_err(|e| Error::new(ErrorKind::Bytecode(e.to_string())))?;
        Ok(Program::new(module))
    }

    /// Loads a `.lb` or `.lbc` file (told apart by the bytecode magic number).
    pub fn from_path(path: &Path) -> Result<Program, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}: {e}", path.display())))?;
        if bytes.starts_with(&loopvm_vm::module::MAGIC) {
            return Program::from_bytecode(&bytes);
        }
        let src = String::from_utf8(bytes)
            .map_err(|_| Error::io(format!("{} is neither UTF-8 source nor loopvm bytecode", path.display())))?;
        Program::from_source(&src, &path.display().to_string())
    }

    /// The serialised module.
    pub fn to_bytecode(&self) -> Vec<u8> {
        self.module.to_bytes()
    }

    /// The bytecode module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The disassembly.
    pub fn disassemble(&self) -> String {
        loopvm_vm::disassemble(&self.module)
    }

    /// The id of `main`, or an error.
    pub fn main(&self) -> Result<FuncId, Error> {
        self.module.main.ok_or_else(|| Error::arg("the program has no `main` function"))
    }

    /// Runs `main` with flattened argument tensors.
    pub fn run(&self, args: &[Tensor], cfg: &RunConfig) -> Result<RunOutput, Error> {
        self.call_id(self.main()?, args, cfg)
    }

    /// Calls the function named `name` with flattened argument tensors.
    pub fn call(&self, name: &str, args: &[Tensor], cfg: &RunConfig) -> Result<RunOutput, Error> {
        let f = self.module.func_by_name(name).ok_or_else(|| Error::arg(format!("no function named `{name}`")))?;
        self.call_id(f, args, cfg)
    }

    fn call_id(&self, f: FuncId, args: &[Tensor], cfg: &RunConfig) -> Result<RunOutput, Error> {
        // One output for the interpreter's prints and the back ends': lines
        // keep their order whichever tier prints them.
        let sink = PrintSink::new(cfg.capture_print);
        let threshold = cfg.jit_threshold.unwrap_or(loopvm_jit::cranelift::DEFAULT_THRESHOLD);
        // Native code does not trace: under `--trace` loops stay in the
        // interpreter. The limits are counted on every tier (`loopvm_vm::Meter`).
        let native_ok = !cfg.trace;
        match cfg.tier {
            Tier::Interp => self.interpret(f, args, cfg, &sink, None),
            Tier::Jit => {
                if !native_ok {
                    let mut out = self.interpret(f, args, cfg, &sink, None)?;
                    out.notes.push("jit: --trace runs every loop in the interpreter".into());
                    return Ok(out);
                }
                let mut cl = CraneliftBackend::new(threshold);
                cl.set_output(Box::new(sink.clone()));
                let mut out = self.interpret(f, args, cfg, &sink, Some(&mut cl))?;
                cranelift_outcome(&cl, &mut out);
                Ok(out)
            }
            Tier::Xla => {
                let mesh = crate::shard::mesh_of(cfg.devices, cfg.mesh)?;
                let shards = crate::shard::param_shards(self.module.func(f), &cfg.shard)?;
                // A poisoned lock only means another run panicked; the cache is still usable.
                let mut slot = self.xla.lock().unwrap_or_else(|p| p.into_inner());
                let fits = matches!(&*slot, XlaSlot::Ready(b) if b.client().device_count() >= mesh.devices());
                if !fits {
                    // Forced: install the CPU plugin on first use (after a one-line notice).
                    let mut b = XlaBackend::with_found_plugin_on(XlaMode::FunctionsAndLoops, mesh)
                        .or_else(|_| XlaBackend::with_cpu_plugin_on(XlaMode::FunctionsAndLoops, mesh))
                        .map_err(|e| Error::new(ErrorKind::Tier(format!("the xla tier cannot start: {e}"))))?;
                    b.set_disk_cache(DiskCache::from_env());
                    *slot = XlaSlot::Ready(Box::new(b));
                }
                let XlaSlot::Ready(b) = &mut *slot else {
                    return Err(Error::new(ErrorKind::Tier("xla back end not initialised".into())));
                };
                b.set_mesh(mesh).map_err(|e| Error::new(ErrorKind::Tier(format!("the xla tier cannot start: {e}"))))?;
                b.set_param_shards(shards);
                b.set_disk_cache_enabled(!cfg.no_cache);
                b.set_output(Box::new(sink.clone()));
                let (fallbacks, executions) = (b.stats.fallbacks.len(), b.stats.executions);
                let mut out = self.interpret(f, args, cfg, &sink, Some(&mut **b))?;
                xla_outcome(b, fallbacks, executions, &mut out);
                Ok(out)
            }
            Tier::Auto => {
                // auto: hot tensor loops to XLA (when a plugin is present; it is
                // looked up the first time such a loop is hot), hot scalar loops
                // to Cranelift, the rest in the interpreter.
                let mut slot = self.xla.lock().unwrap_or_else(|p| p.into_inner());
                if let XlaSlot::Ready(b) = &mut *slot {
                    // `auto` runs its XLA loops on one device.
                    let _ = b.set_mesh(crate::Mesh::default());
                    b.set_param_shards(Vec::new());
                    b.set_disk_cache_enabled(!cfg.no_cache);
                    b.set_output(Box::new(sink.clone()));
                }
                let (fallbacks, executions) = match &*slot {
                    XlaSlot::Ready(b) => (b.stats.fallbacks.len(), b.stats.executions),
                    _ => (0, 0),
                };
                let mut cl = CraneliftBackend::new(threshold);
                cl.set_output(Box::new(sink.clone()));
                let mut to_xla = HashSet::new();
                let mut out = if native_ok {
                    let mut auto = AutoBackend {
                        xla: &mut slot,
                        cl: &mut cl,
                        to_xla: &mut to_xla,
                        no_cache: cfg.no_cache,
                        sink: sink.clone(),
                    };
                    self.interpret(f, args, cfg, &sink, Some(&mut auto))?
                } else {
                    self.interpret(f, args, cfg, &sink, None)?
                };
                for l in &mut out.loops {
                    if l.tier == Tier::Auto {
                        l.tier = if to_xla.contains(&(l.func_id, l.body)) { Tier::Xla } else { Tier::Jit };
                    }
                }
                match &*slot {
                    XlaSlot::Ready(b) => xla_outcome(b, fallbacks, executions, &mut out),
                    XlaSlot::NotFound(why) => out.notes.push(format!("auto: no XLA plugin found ({why})")),
                    XlaSlot::Untried => {}
                }
                cranelift_outcome(&cl, &mut out);
                if cfg.devices > 1 || cfg.mesh.is_some_and(|m| m.devices() > 1) {
                    out.notes.push("auto: runs on one device (--devices partitions the xla tier: --tier xla)".into());
                }
                Ok(out)
            }
        }
    }

    /// Runs `f` in the interpreter, offering loops and the call to `backend`.
    fn interpret(
        &self,
        f: FuncId,
        args: &[Tensor],
        cfg: &RunConfig,
        sink: &PrintSink,
        backend: Option<&mut dyn Backend>,
    ) -> Result<RunOutput, Error> {
        let opts = RunOptions {
            trace: cfg.trace,
            max_steps: cfg.max_steps,
            max_memory: cfg.max_memory,
            timeout: cfg.timeout,
            cancel: cfg.cancel.clone(),
        };
        // The tier a loop ran on when a back end took it.
        let tier = cfg.tier;
        let (results, profile, stats) = {
            let mut it = Interpreter::new(&self.module, opts);
            it.set_output(Box::new(sink.clone()));
            if let Some(b) = backend {
                it.set_backend(b);
            }
            let r = it.call(f, args);
            (r, it.profile.clone(), it.stats)
        };
        let results = results.map_err(Error::from)?;
        let func = self.module.func(f);
        let value = Value::from_leaves(&func.result, &mut results.into_iter())
            .ok_or_else(|| Error::new(ErrorKind::Runtime("result count does not match the signature".into())))?;
        let loops = profile
            .entries()
            .into_iter()
            .map(|(fid, body, stats)| LoopReport {
                func: self.module.func(fid).name.clone(),
                func_id: fid,
                body,
                kind: loop_kind(&self.module, fid, body),
                tier: if stats.offloaded > 0 { tier } else { Tier::Interp },
                stats,
            })
            .collect();
        Ok(RunOutput {
            value,
            loops,
            ops: stats.ops,
            loop_iterations: stats.loop_iterations,
            elapsed: stats.elapsed,
            printed: sink.captured(),
            notes: Vec::new(),
            fallbacks: Vec::new(),
            xla_executions: 0,
        })
    }
}

/// Where `print` goes in one run: stdout, or a buffer (`capture_print`)
/// shared by the interpreter and the back ends.
#[derive(Clone)]
struct PrintSink(Option<std::sync::Arc<Mutex<Vec<u8>>>>);

impl PrintSink {
    fn new(capture: bool) -> PrintSink {
        PrintSink(capture.then(Default::default))
    }

    /// What was captured (empty when printing to stdout).
    fn captured(&self) -> String {
        match &self.0 {
            Some(b) => String::from_utf8_lossy(&b.lock().unwrap_or_else(|p| p.into_inner())).into_owned(),
            None => String::new(),
        }
    }
}

impl std::io::Write for PrintSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(b) => {
                b.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
                Ok(buf.len())
            }
            None => std::io::stdout().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.0 {
            Some(_) => Ok(()),
            None => std::io::stdout().flush(),
        }
    }
}

/// Adds the Cranelift back end's notes and the loops it declined to `out`.
fn cranelift_outcome(cl: &CraneliftBackend, out: &mut RunOutput) {
    out.notes.extend(cl.stats_text().lines().map(str::to_string));
    for r in cl.reports() {
        if !r.is_native() {
            for why in &r.reasons {
                let fallback = Fallback {
                    region: format!("{} in `{}` (b{})", r.kind, r.func_name, r.body.0),
                    reason: why.lines().next().unwrap_or("").to_string(),
                };
                out.fallbacks.push(TierFallback { tier: Tier::Jit, fallback });
            }
        }
    }
}

/// Adds the XLA back end's notes, the regions it declined since it had
/// `fallbacks` of them, and its executions since `executions`, to `out`.
fn xla_outcome(b: &XlaBackend, fallbacks: usize, executions: u64, out: &mut RunOutput) {
    out.notes.extend(b.stats.report().lines().map(str::to_string));
    for f in &b.stats.fallbacks[fallbacks..] {
        let f = TierFallback { tier: Tier::Xla, fallback: f.clone() };
        out.notes.push(f.to_string());
        out.fallbacks.push(f);
    }
    out.xla_executions = b.stats.executions - executions;
}

/// In `auto`, a loop goes to XLA once it has run this many iterations in
/// the interpreter over its earlier entries.
pub const AUTO_HOT_ITERATIONS: u64 = 1000;

/// A loop reads a tensor of more elements than this: once hot, `auto`
/// offers it to XLA first. Until then (and when it is taken over while
/// running) Cranelift may take it only if it computes no value of more than
/// 16 elements, unless no XLA plugin is found: then Cranelift computes such
/// values with the runtime's buffer kernels.
pub const AUTO_TENSOR_ELEMENTS: usize = 16;

/// The `auto` tier's back end: hot tensor-heavy loops to XLA, others (and
/// any XLA declines) to Cranelift, which also takes over running loops.
struct AutoBackend<'a> {
    xla: &'a mut XlaSlot,
    cl: &'a mut CraneliftBackend,
    /// The loops XLA ran.
    to_xla: &'a mut HashSet<(FuncId, BlockId)>,
    /// [`RunConfig::no_cache`].
    no_cache: bool,
    /// The run's output, for prints inside XLA executables.
    sink: PrintSink,
}

impl AutoBackend<'_> {
    /// Whether Cranelift may use buffers for a loop (see
    /// [`AUTO_TENSOR_ELEMENTS`]): `false` for a tensor loop while an XLA
    /// plugin may take it (the plugin is looked up once a loop is hot).
    fn cranelift_buffers(&mut self, inputs: &[&Tensor], hot: bool) -> bool {
        if !inputs.iter().any(|t| t.numel() > AUTO_TENSOR_ELEMENTS) {
            return true;
        }
        if hot {
            self.xla();
        }
        matches!(self.xla, XlaSlot::NotFound(_))
    }

    /// The XLA back end, found (never installed) the first time it is wanted.
    fn xla(&mut self) -> Option<&mut XlaBackend> {
        if matches!(self.xla, XlaSlot::Untried) {
            *self.xla = match XlaBackend::with_found_plugin(XlaMode::Loops) {
                Ok(mut b) => {
                    b.set_disk_cache(DiskCache::from_env());
                    b.set_disk_cache_enabled(!self.no_cache);
                    b.set_output(Box::new(self.sink.clone()));
                    XlaSlot::Ready(Box::new(b))
                }
                Err(e) => XlaSlot::NotFound(e.to_string()),
            };
        }
        match self.xla {
            XlaSlot::Ready(b) => Some(&mut **b),
            _ => None,
        }
    }
}

impl Backend for AutoBackend<'_> {
    fn run_loop(
        &mut self,
        site: &LoopSite<'_>,
        inputs: &[&Tensor],
        meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        let hot = site.stats.iterations >= AUTO_HOT_ITERATIONS;
        if hot && inputs.iter().any(|t| t.numel() > AUTO_TENSOR_ELEMENTS) {
            if let Some(r) = self.xla().and_then(|x| x.run_loop(site, inputs, meter)) {
                self.to_xla.insert((site.func_id, site.body));
                return Some(r);
            }
        }
        // Hot and declined by XLA (or no plugin): Cranelift with buffers.
        let buffers = hot || self.cranelift_buffers(inputs, false);
        self.cl.set_buffers(buffers);
        self.cl.run_loop(site, inputs, meter)
    }

    fn resume_loop(
        &mut self,
        site: &LoopSite<'_>,
        inputs: &[&Tensor],
        state: &LoopState<'_>,
        meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        let buffers = self.cranelift_buffers(inputs, site.stats.iterations >= AUTO_HOT_ITERATIONS);
        self.cl.set_buffers(buffers);
        self.cl.resume_loop(site, inputs, state, meter)
    }
}

/// The kind of the loop instruction whose body is `body`.
fn loop_kind(m: &Module, f: FuncId, body: BlockId) -> &'static str {
    use loopvm_vm::Inst;
    for b in &m.func(f).blocks {
        for i in &b.code {
            match i {
                Inst::Fori { body: x, .. } if *x == body => return "fori_loop",
                Inst::While { body: x, .. } if *x == body => return "while_loop",
                Inst::Scan { body: x, .. } if *x == body => return "scan",
                _ => {}
            }
        }
    }
    "loop"
}

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn program_is_send_sync() {
        assert_send_sync::<super::Program>();
    }
}
