//! The XLA tier's back end: runs whole functions and loop instructions as
//! XLA executables through a PJRT [`Client`], and declines (so that the
//! interpreter runs them) what does not lower to StableHLO.
//!
//! ```no_run
//! use loopvm_jit::xla::tier::{XlaBackend, XlaMode};
//! # fn run(m: &loopvm_vm::Module, args: &[loopvm_runtime::Tensor]) -> Result<(), Box<dyn std::error::Error>> {
//! let mut backend = XlaBackend::with_cpu_plugin(XlaMode::FunctionsAndLoops)?;
//! let main = m.main.ok_or("no main")?;
//! let mut it = loopvm_vm::Interpreter::new(m, loopvm_vm::RunOptions::default());
//! it.set_backend(&mut backend);
//! let results = it.call(main, args)?;
//! # let _ = results; Ok(()) }
//! ```
//!
//! Executables are cached by (function, region, argument dtypes and
//! shapes); what failed to lower is remembered too, so a region is emitted
//! at most once per argument types.

use super::disk_cache::DiskCache;
use super::host_print::{HostPrint, PrintOutput};
use super::{plugin, Buffer, Client, Executable, Plugin, XlaError};
use crate::hlo::{self, EmitError, EmitOptions, Lowered, Mesh, ShardDialect, ShardSpec, ValueType};
use hashbrown::HashMap;
use loopvm_runtime::Tensor;
use loopvm_vm::{Backend, BlockId, ExecError, Fallback, FuncId, Inst, LoopSite, Meter, Module};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an [`XlaBackend`] takes over from the interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XlaMode {
    /// Whole functions called through `Interpreter::call` (usually `main`),
    /// when everything in them lowers; nothing else.
    Functions,
    /// Each loop instruction whose region lowers; the rest runs in the
    /// interpreter.
    Loops,
    /// Whole functions when they lower, else their loops (the default).
    FunctionsAndLoops,
}

impl XlaMode {
    fn functions(self) -> bool {
        matches!(self, XlaMode::Functions | XlaMode::FunctionsAndLoops)
    }
    fn loops(self) -> bool {
        matches!(self, XlaMode::Loops | XlaMode::FunctionsAndLoops)
    }
}

/// The region a cached executable runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    /// A whole function.
    Function,
    /// The loop instruction whose body is this block.
    Loop(BlockId),
}

/// The cache key: function, region and argument types.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    func: FuncId,
    region: Region,
    args: Vec<ValueType>,
    /// Compiled metered (`--max-steps`, `--timeout`).
    metered: bool,
    /// How the parameters are laid out on the mesh (empty: replicated).
    shards: Vec<Option<ShardSpec>>,
}

/// A cache entry: a compiled executable, or why the region did not lower
/// (declined to the interpreter) or did not compile (an error).
enum Entry {
    /// The executable, the module's [`Lowered::peak_bytes`] and whether it
    /// prints (calls the host's `loopvm_print`).
    Ready(Arc<Executable>, usize, bool, Arc<[Option<ShardSpec>]>),
    Declined,
    Failed(String),
}

/// A compiled region: the executable, its peak bytes, whether it prints.
/// and how its results are laid out on the mesh.
type Ready = (Arc<Executable>, usize, bool, Arc<[Option<ShardSpec>]>);

/// Counters of one back end.
#[derive(Clone, Debug)]
pub struct XlaStats {
    /// Regions (functions and loops) compiled by XLA.
    pub regions_compiled: u64,
    /// Executions of compiled regions.
    pub executions: u64,
    /// Of those, whole functions.
    pub functions_run: u64,
    /// Of those, loops.
    pub loops_run: u64,
    /// Executions served by an executable compiled earlier.
    pub cache_hits: u64,
    /// Arguments copied to the device.
    pub uploads: u64,
    /// Arguments already on the device (results or arguments of an earlier
    /// execution, unchanged since), not copied again.
    pub uploads_skipped: u64,
    /// Time spent emitting StableHLO.
    pub emit_time: Duration,
    /// Time spent in `PJRT_Client_Compile`.
    pub compile_time: Duration,
    /// Time spent executing, transfers to and from the device included.
    pub execute_time: Duration,
    /// Regions handed back to the interpreter, with the reason (one line per
    /// region and argument types, the first time it is declined).
    pub fallbacks: Vec<Fallback>,
    /// The unroll factor of each loop of each compiled region (one line per
    /// region with loops).
    pub unrolls: Vec<String>,
    /// Whether the persistent executable cache was in use (set by
    /// [`XlaBackend::set_disk_cache`] and [`XlaBackend::set_disk_cache_enabled`]).
    pub disk_cache: bool,
    /// Regions loaded from the persistent executable cache instead of compiled.
    pub disk_hits: u64,
    /// Time spent looking up, reading and loading (`PJRT_Executable_DeserializeAndLoad`)
    /// entries of the persistent cache.
    pub disk_load_time: Duration,
    /// Regions serialised and written to the persistent cache.
    pub disk_stores: u64,
    /// Time spent serialising and writing entries.
    pub disk_store_time: Duration,
    /// Problems with the persistent cache (each made the region compile;
    /// only the first of a process is printed, to stderr).
    pub disk_warnings: Vec<String>,
    /// How `print` runs: `Ok` when host callbacks are registered (through
    /// the PJRT FFI extension), else why a region with a print falls back
    /// to the interpreter.
    pub host_print: Result<(), String>,
}

impl Default for XlaStats {
    fn default() -> XlaStats {
        XlaStats {
            regions_compiled: 0,
            executions: 0,
            functions_run: 0,
            loops_run: 0,
            cache_hits: 0,
            uploads: 0,
            uploads_skipped: 0,
            emit_time: Duration::ZERO,
            compile_time: Duration::ZERO,
            execute_time: Duration::ZERO,
            fallbacks: Vec::new(),
            unrolls: Vec::new(),
            disk_cache: false,
            disk_hits: 0,
            disk_load_time: Duration::ZERO,
            disk_stores: 0,
            disk_store_time: Duration::ZERO,
            disk_warnings: Vec::new(),
            host_print: Err("not set up".into()),
        }
    }
}

impl XlaStats {
    /// A few lines for `--stats`.
    pub fn report(&self) -> String {
        let mut s = format!(
            "xla: {} regions compiled in {:.3} s (emit {:.3} s), {} executions ({} functions, {} loops, {} cache hits) in {:.3} s, {} uploads ({} skipped: already on the device)",
            self.regions_compiled,
            self.compile_time.as_secs_f64(),
            self.emit_time.as_secs_f64(),
            self.executions,
            self.functions_run,
            self.loops_run,
            self.cache_hits,
            self.execute_time.as_secs_f64(),
            self.uploads,
            self.uploads_skipped
        );
        if self.disk_cache {
            s.push_str(&format!(
                "\nxla: executable cache: {} regions loaded in {:.3} s, {} stored in {:.3} s, {} problems",
                self.disk_hits,
                self.disk_load_time.as_secs_f64(),
                self.disk_stores,
                self.disk_store_time.as_secs_f64(),
                self.disk_warnings.len()
            ));
        } else {
            s.push_str("\nxla: executable cache: off");
        }
        match &self.host_print {
            Ok(()) => s.push_str("\nxla: print: host callbacks (PJRT FFI extension, custom call `loopvm_print`)"),
            Err(why) => s.push_str(&format!("\nxla: print: runs in the interpreter ({why})")),
        }
        for f in &self.fallbacks {
            s.push_str("\nxla: fallback to the interpreter: ");
            s.push_str(&f.to_string());
        }
        for u in &self.unrolls {
            s.push_str("\nxla: unroll: ");
            s.push_str(u);
        }
        s
    }
}

/// How many recent arguments and results an [`XlaBackend`] keeps on the
/// device by default.
pub const DEFAULT_RESIDENT: usize = 32;

/// A [`Backend`] that runs functions and loops on an XLA device.
///
/// Recent arguments and results stay on the device: each is remembered with
/// a host tensor sharing its buffer, and passing that same (unchanged:
/// tensors are copy-on-write) tensor to a later execution reuses the device
/// buffer instead of copying it again, so a loop's invariants (weights) and
/// the results of one XLA region feeding the next are not re-uploaded.
pub struct XlaBackend {
    client: Client,
    mode: XlaMode,
    opts: EmitOptions,
    unroll: hlo::UnrollOptions,
    hot_iterations: u64,
    cache: HashMap<Key, Entry>,
    resident: VecDeque<(Tensor, Option<ShardSpec>, Arc<DeviceValue>)>,
    resident_limit: usize,
    corrupt_next: bool,
    /// The persistent executable cache, when one is set.
    disk: Option<DiskCache>,
    disk_enabled: bool,
    /// [`Client::cache_identity`] and the XLA flags, asked once.
    identity: Option<(String, String)>,
    /// The registered `print` handler, or why there is none.
    host_print: Result<HostPrint, String>,
    /// Where `print`s inside executables go.
    print_out: PrintOutput,
    /// The device mesh executables are partitioned over (one device by
    /// default).
    mesh: Mesh,
    /// The annotations the emitter writes for a mesh.
    dialect: ShardDialect,
    /// How the parameters of functions run whole are laid out, by
    /// flattened parameter (missing: replicated).
    param_shards: Vec<Option<ShardSpec>>,
    /// Counters, readable at any time.
    pub stats: XlaStats,
}

impl std::fmt::Debug for XlaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XlaBackend")
            .field("client", &self.client)
            .field("mode", &self.mode)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl XlaBackend {
    /// A back end running on `client`'s device.
    pub fn new(client: Client, mode: XlaMode) -> XlaBackend {
        let host_print = HostPrint::register(&client);
        let stats =
            XlaStats { host_print: host_print.as_ref().map(|_| ()).map_err(|e| e.clone()), ..Default::default() };
        XlaBackend {
            host_print,
            print_out: Arc::new(std::sync::Mutex::new(Box::new(std::io::stdout()))),
            unroll: hlo::UnrollOptions::for_platform(client.platform_name()),
            client,
            mode,
            opts: EmitOptions::default(),
            hot_iterations: 0,
            cache: HashMap::new(),
            resident: VecDeque::new(),
            resident_limit: DEFAULT_RESIDENT,
            corrupt_next: false,
            disk: None,
            disk_enabled: true,
            identity: None,
            mesh: Mesh::default(),
            dialect: ShardDialect::default(),
            param_shards: Vec::new(),
            stats,
        }
    }

    /// A back end on the CPU plugin whose client has `mesh.devices()`
    /// devices (the plugin's `cpu_device_count` option), partitioning every
    /// executable over `mesh`.
    pub fn with_cpu_plugin_on(mode: XlaMode, mesh: Mesh) -> Result<XlaBackend, XlaError> {
        let plugin = Plugin::load(plugin::find_or_install_cpu()?)?;
        let mut b = XlaBackend::new(Client::with_devices(plugin, mesh.devices())?, mode);
        b.set_mesh(mesh)?;
        Ok(b)
    }

    /// [`XlaBackend::with_found_plugin`] on `mesh.devices()` devices.
    pub fn with_found_plugin_on(mode: XlaMode, mesh: Mesh) -> Result<XlaBackend, XlaError> {
        let plugin = Plugin::load(plugin::find()?.path)?;
        let mut b = XlaBackend::new(Client::with_devices(plugin, mesh.devices())?, mode);
        b.set_mesh(mesh)?;
        Ok(b)
    }

    /// Partitions every executable from now on over `mesh` (XLA's SPMD
    /// partitioner, `num_partitions = mesh.devices()`), partition `p` on the
    /// client's `p`-th device. An error when the client has fewer devices.
    /// On more than one device `print` does not lower (each partition would
    /// print), so regions that print run in the interpreter.
    pub fn set_mesh(&mut self, mesh: Mesh) -> Result<(), XlaError> {
        if mesh.devices() == 0 || mesh.devices() > self.client.device_count() {
            return Err(XlaError::InvalidArgument(format!(
                "a mesh of {} devices ({mesh}) on a {} client with {} device(s)",
                mesh.devices(),
                self.client.platform_name(),
                self.client.device_count()
            )));
        }
        if mesh != self.mesh {
            self.clear_cache();
        }
        self.mesh = mesh;
        Ok(())
    }

    /// The mesh executables are partitioned over.
    pub fn mesh(&self) -> Mesh {
        self.mesh
    }

    /// Writes GSPMD or Shardy annotations (default GSPMD).
    pub fn set_shard_dialect(&mut self, dialect: ShardDialect) {
        if dialect != self.dialect {
            self.clear_cache();
        }
        self.dialect = dialect;
    }

    /// Lays out the flattened parameters of the functions run whole (`main`)
    /// on the mesh: `shards[i]` for parameter `i` (`None` or missing:
    /// replicated on every device). Loop regions take their inputs
    /// replicated. An argument whose axis does not split evenly over its
    /// mesh axis is an error naming it and the mesh.
    pub fn set_param_shards(&mut self, shards: Vec<Option<ShardSpec>>) {
        self.param_shards = shards;
    }

    /// A back end on the CPU plugin ([`plugin::find_or_install_cpu`]: the
    /// one `LOOPVM_PJRT_PLUGIN` names, else a found one, else installed).
    pub fn with_cpu_plugin(mode: XlaMode) -> Result<XlaBackend, XlaError> {
        let plugin = Plugin::load(plugin::find_or_install_cpu()?)?;
        Ok(XlaBackend::new(Client::new(plugin)?, mode))
    }

    /// A back end on the plugin [`plugin::find`] picks (installs nothing).
    pub fn with_found_plugin(mode: XlaMode) -> Result<XlaBackend, XlaError> {
        let plugin = Plugin::load(plugin::find()?.path)?;
        Ok(XlaBackend::new(Client::new(plugin)?, mode))
    }

    /// The client the back end runs on.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// What the back end takes over.
    pub fn mode(&self) -> XlaMode {
        self.mode
    }

    /// Sets the emitter's options (for experiments: unrolled loops).
    pub fn set_emit_options(&mut self, opts: EmitOptions) {
        self.opts = opts;
    }

    /// Sets how loops are unrolled (default: the policy of the client's
    /// platform, [`hlo::UnrollOptions::for_platform`]).
    pub fn set_unroll(&mut self, unroll: hlo::UnrollOptions) {
        self.unroll = unroll;
    }

    /// Loops are taken over only once the profiler has counted at least
    /// this many iterations of them (0, the default: from their first entry).
    pub fn set_hot_iterations(&mut self, n: u64) {
        self.hot_iterations = n;
    }

    /// Test hook: the next module compiled gets a StableHLO syntax error, so
    /// that a test can check that PJRT's error surfaces as an error.
    pub fn corrupt_next_compile_for_test(&mut self) {
        self.corrupt_next = true;
    }

    /// Keeps compiled executables in `cache` across processes too (none, the
    /// default for [`XlaBackend::new`]: compile in every process).
    pub fn set_disk_cache(&mut self, cache: Option<DiskCache>) {
        self.disk = cache;
        self.stats.disk_cache = self.disk.is_some() && self.disk_enabled;
    }

    /// Bypasses the persistent cache (`--no-cache`) while `false`.
    pub fn set_disk_cache_enabled(&mut self, on: bool) {
        self.disk_enabled = on;
        self.stats.disk_cache = self.disk.is_some() && self.disk_enabled;
    }

    /// Sends the output of `print` inside executables to `w` (default:
    /// stdout). Give it the interpreter's output, so lines keep their order.
    pub fn set_output(&mut self, w: Box<dyn std::io::Write + Send>) {
        self.print_out = Arc::new(std::sync::Mutex::new(w));
    }

    /// Lowers `print` to host callbacks from now on only if `on` (and the
    /// handler is registered); off, a region with a print falls back to the
    /// interpreter. For tests and comparisons.
    pub fn set_host_print(&mut self, on: bool) {
        if !on {
            self.host_print = Err("switched off".into());
            self.stats.host_print = Err("switched off".into());
        }
    }

    /// The persistent cache, when one is set.
    pub fn disk_cache(&self) -> Option<&DiskCache> {
        self.disk.as_ref()
    }

    /// Records a problem with the persistent cache; the first of the
    /// process is printed to stderr as one line.
    fn disk_warning(&mut self, msg: String) {
        static PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !PRINTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("loopvm: warning: executable cache: {msg}");
        }
        self.stats.disk_warnings.push(msg);
    }

    /// Compiles `text`, or loads it from the persistent cache; a compiled
    /// executable is stored there. Any problem with the cache means compiling
    /// (and a warning), never an error.
    fn compile_or_load(&mut self, text: &str, label: &str) -> Result<Executable, XlaError> {
        let disk = match &self.disk {
            Some(d) if self.disk_enabled && !self.corrupt_next => d.clone(),
            _ => return self.compile_text(text),
        };
        let t = Instant::now();
        let client = self.client.clone();
        let (identity, flags) = self
            .identity
            .get_or_insert_with(|| (client.cache_identity(), std::env::var("XLA_FLAGS").unwrap_or_default()));
        let options = self.client.compile_options(self.mesh.devices(), self.dialect == ShardDialect::Shardy)?;
        let key = DiskCache::key(text, &options, identity, flags);
        let path = disk.path_of(&key);
        let loaded = match disk.load(&key) {
            Ok(Some(bytes)) => match self.client.deserialize_partitioned(&bytes, self.mesh.devices()) {
                Ok(exe) => Some(exe),
                Err(e) => {
                    self.disk_warning(format!("cannot load {} ({e}); compiling again", path.display()));
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                self.disk_warning(format!("{}: {e}; compiling again", path.display()));
                None
            }
        };
        self.stats.disk_load_time += t.elapsed();
        if let Some(exe) = loaded {
            self.stats.disk_hits += 1;
            return Ok(exe);
        }
        let exe = self.compile_text(text)?;
        let t = Instant::now();
        match exe.serialize() {
            Ok(bytes) => match disk.store(&key, label, &bytes) {
                Ok(()) => self.stats.disk_stores += 1,
                Err(e) => self.disk_warning(format!("cannot write to {} ({e}); not cached", disk.dir().display())),
            },
            Err(e) => self.disk_warning(format!("the plugin cannot serialise executables ({e}); not cached")),
        }
        self.stats.disk_store_time += t.elapsed();
        Ok(exe)
    }

    /// Drops every cached executable and remembered fallback, and every
    /// device-resident value.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
        self.resident.clear();
    }

    /// Keeps at most `n` recent arguments and results on the device (0:
    /// copy every argument for every execution).
    pub fn set_resident_limit(&mut self, n: usize) {
        self.resident_limit = n;
        self.resident.truncate(n);
    }

    /// The device buffers of `t` laid out as `spec` says (one per device of
    /// the mesh: the whole of `t` on each when `spec` is `None`, else each
    /// device's part): resident ones sharing `t`'s buffer, or fresh copies
    /// (then resident).
    fn device_value(&mut self, t: &Tensor, spec: Option<ShardSpec>) -> Result<Arc<DeviceValue>, XlaError> {
        let same = |h: &Tensor, s: &Option<ShardSpec>| {
            h.shares_buffer(t) && h.shape() == t.shape() && h.dtype() == t.dtype() && *s == spec
        };
        if let Some(k) = self.resident.iter().position(|(h, s, _)| same(h, s)) {
            self.stats.uploads_skipped += 1;
            let e = self.resident.remove(k).map(|e| e.2.clone());
            if let Some(b) = e {
                self.remember(t.clone(), spec, b.clone());
                return Ok(b);
            }
        }
        self.stats.uploads += 1;
        let mesh = self.mesh;
        let bufs = (0..mesh.devices())
            .map(|d| match spec {
                Some(s) => {
                    let parts = mesh.size(s.mesh_axis);
                    self.client.buffer_from_tensor_part(t, s.axis, parts, mesh.part_of(d, s.mesh_axis), d)
                }
                None => self.client.buffer_from_tensor_on(t, d),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let b = Arc::new(bufs);
        self.remember(t.clone(), spec, b.clone());
        Ok(b)
    }

    fn remember(&mut self, t: Tensor, spec: Option<ShardSpec>, b: Arc<DeviceValue>) {
        if self.resident_limit == 0 {
            return;
        }
        while self.resident.len() >= self.resident_limit {
            self.resident.pop_back();
        }
        self.resident.push_front((t, spec, b));
    }

    /// The number of cached entries (executables and declined regions).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Compiles StableHLO text on the back end's client (counted in the stats).
    pub fn compile_text(&mut self, text: &str) -> Result<Executable, XlaError> {
        let t = Instant::now();
        let (n, shardy) = (self.mesh.devices(), self.dialect == ShardDialect::Shardy);
        let r = if std::mem::take(&mut self.corrupt_next) {
            let broken = text.replacen("func.func public @main", "func.func public @main %%% syntax error %%%", 1);
            self.client.compile_partitioned(broken.as_bytes(), n, shardy)
        } else {
            self.client.compile_partitioned(text.as_bytes(), n, shardy)
        };
        self.stats.compile_time += t.elapsed();
        if r.is_ok() {
            self.stats.regions_compiled += 1;
        }
        r
    }

    /// Runs `exe` on `args`, counting against `meter`: a metered
    /// executable takes the iterations it may run as one more argument and
    /// returns what is left as one more result (negative: it stopped early,
    /// a loop wanting more). An execution cannot be interrupted, so under
    /// `--timeout` it runs with [`FIRST_CHUNK`] iterations, then 4 times as
    /// many each time it stops early, from the start again (regions are
    /// pure), looking at the clock in between; under `--max-steps` the
    /// iterations left are the budget, and stopping early is the limit's
    /// error. Without a limit the executable is not metered.
    fn execute_metered(
        &mut self,
        exe: &Executable,
        args: &[&Tensor],
        layout: Layout<'_>,
        metered: bool,
        prints: bool,
        meter: &mut Meter,
    ) -> Result<Vec<Tensor>, ExecError> {
        if !metered {
            return self.execute(exe, args, layout, prints);
        }
        let mut chunk = if meter.watched() { FIRST_CHUNK } else { u64::MAX };
        loop {
            let budget = meter.steps_left();
            let fuel = budget.min(chunk).min(i64::MAX as u64);
            let f = Tensor::scalar(fuel as i64);
            let mut all: Vec<&Tensor> = args.to_vec();
            all.push(&f);
            let mut outs = self.execute(exe, &all, layout, false)?;
            let left = outs
                .pop()
                .and_then(|t| t.scalar_i64())
                .ok_or_else(|| ExecError::Other("a metered XLA region returned no fuel".into()))?;
            if left >= 0 {
                meter.charge(fuel - left as u64)?;
                return Ok(outs);
            }
            if fuel == budget {
                // Every step left was spent and a loop wanted one more.
                return Err(meter.overrun());
            }
            meter.check_deadline()?;
            chunk = chunk.saturating_mul(4);
        }
    }

    /// Runs `exe` on `args` (laid out as `shards` says, on every device of
    /// the mesh) and copies its results back: a replicated one read from
    /// the first device, one split as `layout` says gathered from the
    /// devices that hold its parts.
    fn execute(
        &mut self,
        exe: &Executable,
        args: &[&Tensor],
        layout: Layout<'_>,
        prints: bool,
    ) -> Result<Vec<Tensor>, ExecError> {
        let (shards, outs_layout) = (layout.args, layout.results);
        let t = Instant::now();
        let r = (|| {
            let vals = args
                .iter()
                .enumerate()
                .map(|(i, a)| self.device_value(a, shards.get(i).copied().flatten()))
                .collect::<Result<Vec<_>, _>>()?;
            let outs = if exe.partitions() > 1 {
                let lists: Vec<Vec<&Buffer>> =
                    (0..exe.partitions()).map(|d| vals.iter().map(|v| &v[d]).collect()).collect();
                exe.execute_partitioned(&lists)?
            } else {
                let refs: Vec<&Buffer> = vals.iter().map(|v| &v[0]).collect();
                let outs = match (&self.host_print, prints) {
                    (Ok(hp), true) => {
                        let r = hp.with_context(&self.print_out, |ctx| exe.execute_in(&refs, ctx));
                        let _ = self.print_out.lock().unwrap_or_else(|p| p.into_inner()).flush();
                        r?
                    }
                    _ => exe.execute(&refs)?,
                };
                vec![outs]
            };
            // Results are replicated: every device holds each whole; read
            // the first device's, keep all of them resident.
            let n = outs.first().map_or(0, Vec::len);
            let mut per_result: Vec<Vec<Buffer>> = (0..n).map(|_| Vec::with_capacity(outs.len())).collect();
            for device in outs {
                for (k, b) in device.into_iter().enumerate() {
                    per_result[k].push(b);
                }
            }
            let mut res = Vec::with_capacity(n);
            for (k, bufs) in per_result.into_iter().enumerate() {
                let spec = outs_layout.get(k).copied().flatten().filter(|_| bufs.len() > 1);
                let t = match spec {
                    Some(s) => self.gather(&bufs, s)?,
                    None => bufs[0].to_tensor()?,
                };
                self.remember(t.clone(), spec, Arc::new(bufs));
                res.push(t);
            }
            Ok::<_, XlaError>(res)
        })();
        self.stats.execute_time += t.elapsed();
        self.stats.executions += 1;
        r.map_err(|e| match e {
            XlaError::HostMemory(e) => ExecError::kernel("", e),
            e => ExecError::Other(format!("XLA execution failed: {e}")),
        })
    }

    /// The whole of a value split as `spec` says: the parts, read from the
    /// first device holding each, joined along the split axis.
    fn gather(&self, bufs: &[Buffer], spec: ShardSpec) -> Result<Tensor, XlaError> {
        let mesh = self.mesh;
        let parts = (0..mesh.size(spec.mesh_axis))
            .map(|p| {
                let d = (0..bufs.len()).find(|&d| mesh.part_of(d, spec.mesh_axis) == p).unwrap_or(0);
                bufs[d].to_tensor()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        let mut out = None;
        loopvm_runtime::kernels::concat(&refs, spec.axis, &mut out).map_err(XlaError::HostMemory)?;
        out.ok_or_else(|| XlaError::InvalidArgument("gathering a split result gave nothing".into()))
    }

    /// The entry for `key`, lowering with `lower` and compiling on a miss.
    fn entry(
        &mut self,
        key: Key,
        what: impl Fn() -> String,
        lower: impl FnOnce(&EmitOptions) -> Result<Lowered, EmitError>,
    ) -> Option<Result<Ready, ExecError>> {
        if let Some(e) = self.cache.get(&key) {
            return match e {
                Entry::Ready(x, peak, prints, outs) => {
                    self.stats.cache_hits += 1;
                    Some(Ok((x.clone(), *peak, *prints, outs.clone())))
                }
                Entry::Declined => None,
                Entry::Failed(m) => Some(Err(ExecError::Other(m.clone()))),
            };
        }
        let t = Instant::now();
        let lowered = lower(&self.opts);
        self.stats.emit_time += t.elapsed();
        let lowered = match lowered {
            Ok(l) if !l.unrolls.is_empty() => {
                self.stats.unrolls.push(format!("{}: {}", what(), l.unroll_summary()));
                l
            }
            Ok(l) => l,
            Err(e) => {
                self.stats.fallbacks.push(Fallback { region: what(), reason: e.to_string() });
                self.cache.insert(key, Entry::Declined);
                return None;
            }
        };
        let label = what();
        match self.compile_or_load(&lowered.text, &label) {
            Ok(exe) => {
                let exe = Arc::new(exe);
                let prints = lowered.text.contains(super::host_print::TARGET);
                let outs: Arc<[Option<ShardSpec>]> = lowered.result_shards.into();
                self.cache.insert(key, Entry::Ready(exe.clone(), lowered.peak_bytes, prints, outs.clone()));
                Some(Ok((exe, lowered.peak_bytes, prints, outs)))
            }
            Err(e) => {
                let m = format!("XLA could not compile {}: {e}", what());
                self.cache.insert(key, Entry::Failed(m.clone()));
                Some(Err(ExecError::Other(m)))
            }
        }
    }
}

/// How an execution's arguments and results are laid out on the mesh
/// (missing or `None`: replicated).
#[derive(Clone, Copy)]
struct Layout<'a> {
    args: &'a [Option<ShardSpec>],
    results: &'a [Option<ShardSpec>],
}

/// One value on the devices of the mesh: one buffer per device (the whole
/// value, or the device's part of it).
type DeviceValue = Vec<Buffer>;

/// The name of flattened parameter `i` of `f` (`x`, or `x.1` for a tuple's
/// second leaf).
pub fn flat_param_name(m: &Module, f: FuncId, i: usize) -> String {
    let mut k = 0;
    if let Some(func) = m.funcs.get(f.0 as usize) {
        for p in &func.params {
            let leaves = p.ty.leaves();
            let n = leaves.len();
            if i < k + n {
                return if n == 1 && i == k { p.name.clone() } else { format!("{}.{}", p.name, i - k) };
            }
            k += n;
        }
    }
    format!("#{i}")
}

/// Checks that each sharded argument of `f` splits evenly over its mesh
/// axis; else an error naming the argument, its shape and the mesh.
fn check_split(
    m: &Module,
    f: FuncId,
    args: &[Tensor],
    shards: &[Option<ShardSpec>],
    mesh: Mesh,
) -> Result<(), ExecError> {
    for (i, (t, s)) in args.iter().zip(shards).enumerate() {
        let Some(s) = s else { continue };
        let name = flat_param_name(m, f, i);
        let parts = mesh.size(s.mesh_axis);
        match t.shape().get(s.axis) {
            None => {
                return Err(ExecError::Other(format!(
                    "argument `{name}` ({:?} {:?}) has no axis {} to shard over mesh axis `{}` (mesh {mesh})",
                    t.dtype(),
                    t.shape(),
                    s.axis,
                    s.mesh_axis.name()
                )))
            }
            Some(&n) if n % parts != 0 => {
                return Err(ExecError::Other(format!(
                    "argument `{name}` does not split evenly: its axis {} has {n} elements, not a multiple of the {parts} devices of mesh axis `{}` (mesh {mesh})",
                    s.axis,
                    s.mesh_axis.name()
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `--max-memory` before an execution: the region's largest value (or its
/// results) beside what the interpreter holds.
fn check_memory(peak: usize, what: &str, meter: &Meter) -> Result<(), ExecError> {
    meter.reserve(what, meter.held, Some(peak).filter(|&p| p != usize::MAX))
}

fn types_of<'a>(ts: impl IntoIterator<Item = &'a Tensor>) -> Vec<ValueType> {
    ts.into_iter().map(hlo::value_type).collect()
}

fn loop_kind(inst: &Inst) -> &'static str {
    match inst {
        Inst::Fori { .. } => "fori_loop",
        Inst::While { .. } => "while_loop",
        Inst::Scan { .. } => "scan",
        _ => "region",
    }
}

/// The iterations a metered execution gets first under `--timeout`.
pub const FIRST_CHUNK: u64 = 1 << 20;

impl Backend for XlaBackend {
    fn run_loop(
        &mut self,
        site: &LoopSite<'_>,
        inputs: &[&Tensor],
        meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        if !self.mode.loops() || site.stats.iterations < self.hot_iterations {
            return None;
        }
        let args = types_of(inputs.iter().copied());
        let metered = meter.counts();
        let key = Key {
            func: site.func_id,
            region: Region::Loop(site.body),
            args: args.clone(),
            metered,
            shards: Vec::new(),
        };
        let what = || format!("{} (body b{}) in `{}`", loop_kind(site.inst), site.body.0, site.func.name);
        let u = self.unroll;
        let host_print = self.host_print.is_ok() && self.mesh.devices() == 1;
        let (mesh, shard_dialect) = (self.mesh, self.dialect);
        let (exe, peak, prints, outs) = match self.entry(key, what, |o| {
            let o = EmitOptions { metered, host_print: host_print && !metered, mesh, shard_dialect, ..*o };
            hlo::lower_loop_with(site.module, site.func_id, site.inst, &args, &o, &u)
        })? {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = check_memory(peak, "an XLA loop region", meter) {
            return Some(Err(e));
        }
        let r = self.execute_metered(&exe, inputs, Layout { args: &[], results: &outs }, metered, prints, meter);
        if r.is_ok() {
            self.stats.loops_run += 1;
        }
        Some(r)
    }

    fn run_function(
        &mut self,
        m: &Module,
        f: FuncId,
        args: &[Tensor],
        meter: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        if !self.mode.functions() {
            return None;
        }
        let types = types_of(args);
        let metered = meter.counts();
        let shards = if self.mesh.devices() > 1 { self.param_shards.clone() } else { Vec::new() };
        if let Err(e) = check_split(m, f, args, &shards, self.mesh) {
            return Some(Err(e));
        }
        let key = Key { func: f, region: Region::Function, args: types.clone(), metered, shards: shards.clone() };
        let name = m.funcs.get(f.0 as usize).map_or("?", |x| x.name.as_str());
        let what = || format!("function `{name}`");
        let u = self.unroll;
        let host_print = self.host_print.is_ok() && self.mesh.devices() == 1;
        let (mesh, shard_dialect) = (self.mesh, self.dialect);
        let (exe, peak, prints, outs) = match self.entry(key, what, |o| {
            let o = EmitOptions { metered, host_print: host_print && !metered, mesh, shard_dialect, ..*o };
            hlo::lower_function_sharded(m, f, &types, &o, &u, &shards)
        })? {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = check_memory(peak, "an XLA function", meter) {
            return Some(Err(e));
        }
        let refs: Vec<&Tensor> = args.iter().collect();
        let r = self.execute_metered(&exe, &refs, Layout { args: &shards, results: &outs }, metered, prints, meter);
        if r.is_ok() {
            self.stats.functions_run += 1;
        }
        Some(r)
    }
}

/// The StableHLO module `--tier xla` would compile for function `f` of `m`
/// called with `args` (what `loopvm emit` prints).
pub fn emit_for(m: &Module, f: FuncId, args: &[Tensor], opts: &EmitOptions) -> Result<String, EmitError> {
    hlo::emit_function(m, f, &types_of(args), opts)
}

/// [`emit_for`] on a mesh ([`EmitOptions::mesh`]), `main`'s flattened
/// parameters laid out as `shards` says (what `loopvm emit --devices` prints).
pub fn emit_sharded_for(
    m: &Module,
    f: FuncId,
    args: &[ValueType],
    opts: &EmitOptions,
    shards: &[Option<ShardSpec>],
) -> Result<String, EmitError> {
    hlo::lower_function_sharded(m, f, args, opts, &hlo::UnrollOptions::default().with_env(), shards).map(|l| l.text)
}
