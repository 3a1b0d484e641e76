//! The `loopvm` command line.

use clap::{Parser, Subcommand};
use loopvm::{Error, Program, RunConfig, Tier, Value};
use loopvm_jit::xla::plugin;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Counts live and peak heap bytes for `--stats`.
#[global_allocator]
static GLOBAL: loopvm::heap::CountingAlloc = loopvm::heap::CountingAlloc;

#[derive(Parser)]
#[command(name = "loopvm", version, about = "Run tensor loop programs: interpreter, Cranelift JIT and XLA tiers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a program (`.lb` source or `.lbc` bytecode).
    Run {
        /// The program.
        file: PathBuf,
        /// auto, interp, jit or xla.
        #[arg(long, default_value = "auto")]
        tier: String,
        /// An argument of `main`: `name=value` (a scalar or nested list) or `name=@file.npy`.
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// Write the result as `.npy` (a tuple result: a folder of `0.npy`, `1.npy`, ...).
        #[arg(long)]
        out: Option<PathBuf>,
        /// `text` or `json`.
        #[arg(long, default_value = "text")]
        format: String,
        /// Print each op as it runs, and each loop iteration (to stderr).
        #[arg(long)]
        trace: bool,
        /// Print ops executed, loop iterations, peak memory and time (to stderr).
        #[arg(long)]
        stats: bool,
        /// Stop with an error after this many loop iterations.
        #[arg(long)]
        max_steps: Option<u64>,
        /// The tensor memory a run may hold, in bytes (suffixes K, M, G).
        #[arg(long, value_parser = parse_bytes)]
        max_memory: Option<usize>,
        /// Stop with an error after this many seconds.
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<std::time::Duration>,
        /// Compile every XLA region instead of loading it from the persistent
        /// executable cache (and store nothing there).
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        dev: DeviceArgs,
    },
    /// Parse and type-check a program.
    Check {
        /// The `.lb` program.
        file: PathBuf,
    },
    /// Compile a program to bytecode.
    Compile {
        /// The `.lb` program.
        file: PathBuf,
        /// The `.lbc` file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Print the bytecode of a program, loops as nested blocks.
    Dis {
        /// The `.lb` or `.lbc` program.
        file: PathBuf,
    },
    /// Print the StableHLO module `--tier xla` would compile for `main`
    /// (like `jax.jit(f).lower(x).as_text()`).
    Emit {
        /// The program.
        file: PathBuf,
        /// An argument of `main` (as for `run`); needed when `main` has shape variables.
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// Unroll every loop with a static trip count instead (for comparison only).
        #[arg(long)]
        unroll: bool,
        /// Also compile the module with the XLA plugin `--tier xla` uses
        /// (without the executable cache) and print the emit and compile
        /// times on stderr (like `jax.jit(f).lower(x).compile()`).
        #[arg(long)]
        compile: bool,
        #[command(flatten)]
        dev: DeviceArgs,
    },
    /// Run a program on every tier and compare every result with the interpreter's.
    Diff {
        /// The program.
        file: PathBuf,
        /// An argument of `main` (as for `run`).
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// The tiers to compare with the interpreter.
        #[arg(long, value_delimiter = ',', default_value = "jit,xla,auto")]
        tiers: Vec<String>,
        #[command(flatten)]
        dev: DeviceArgs,
    },
    /// Generate random well-typed programs, run each on every tier and
    /// compare; shrink and write each mismatch.
    Fuzz {
        /// The batch seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The index of the seed's first program (to split one batch over
        /// processes).
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// How many programs.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// The tiers compared with the interpreter.
        #[arg(long, value_delimiter = ',', default_value = "jit,xla,auto")]
        tiers: Vec<String>,
        /// Where reproducers are written.
        #[arg(long, default_value = "fuzz-findings")]
        out: PathBuf,
    },
    /// Find and install XLA PJRT plugins.
    Plugin {
        #[command(subcommand)]
        cmd: PluginCmd,
    },
    /// The persistent cache of compiled XLA executables
    /// (`$LOOPVM_CACHE_DIR/executables`).
    Cache {
        #[command(subcommand)]
        cmd: CacheCmd,
    },
}

/// `--devices`, `--mesh` and `--shard` (of `run`, `emit` and `diff`).
#[derive(clap::Args)]
struct DeviceArgs {
    /// Partition the xla tier's executables over this many devices (XLA's
    /// SPMD partitioner; the CPU plugin is asked for that many devices).
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// The device mesh: `4` (1-D, axis `data`) or `2x2` (`data x model`);
    /// default: `data` of `--devices`.
    #[arg(long, value_parser = parse_mesh)]
    mesh: Option<loopvm::Mesh>,
    /// Split an argument of `main` over the mesh: `NAME=AXIS` (over `data`)
    /// or `NAME=AXIS:model`; the others are replicated.
    #[arg(long = "shard", value_name = "NAME=AXIS[:MESH_AXIS]", value_parser = parse_shard)]
    shard: Vec<loopvm::ShardArg>,
}

#[derive(Subcommand)]
enum CacheCmd {
    /// Every entry, least recently used first: size, last use, region.
    List,
    /// Remove every entry.
    Clear,
    /// The folder, the number of entries, their size and the cap.
    Stats,
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Show the plugins found, their platform, API version and devices.
    List,
    /// Install a plugin wheel into loopvm's cache with pip.
    Install {
        /// cpu, cuda12, cuda13 or tpu.
        #[arg(default_value = "cpu")]
        kind: String,
    },
}

/// `loopvm emit --compile`: compiles `text` on the plugin `--tier xla`
/// would use and reports the times on stderr.
fn compile_emitted(text: &str, emitted: std::time::Duration) -> Result<(), Error> {
    use loopvm_jit::xla::tier::{XlaBackend, XlaMode};
    let tier_err = |e: loopvm_jit::xla::XlaError| Error::new(loopvm::ErrorKind::Tier(e.to_string()));
    let mut backend = XlaBackend::with_found_plugin(XlaMode::Functions)
        .or_else(|_| XlaBackend::with_cpu_plugin(XlaMode::Functions))
        .map_err(tier_err)?;
    let start = std::time::Instant::now();
    backend.compile_text(text).map_err(tier_err)?;
    eprintln!(
        "emitted {} bytes in {:.3} s; compiled by {} in {:.3} s",
        text.len(),
        emitted.as_secs_f64(),
        backend.client().platform_name(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    // A safety net: should a bug panic, say so in one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned());
        eprintln!("error: internal error (a loopvm bug, please report it): {}", msg.unwrap_or_default());
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::from(101),
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.cmd {
        Cmd::Run {
            file,
            tier,
            args,
            out,
            format,
            trace,
            stats,
            max_steps,
            max_memory,
            timeout,
            no_cache,
            dev: DeviceArgs { devices, mesh, shard },
        } => {
            let tier = Tier::parse(&tier).ok_or_else(|| {
                Error::new(loopvm::ErrorKind::Argument(format!("unknown tier `{tier}` (auto, interp, jit, xla)")))
            })?;
            if format != "text" && format != "json" {
                return Err(Error::new(loopvm::ErrorKind::Argument(format!("unknown format `{format}` (text, json)"))));
            }
            let prog = Program::from_path(&file)?;
            let main = prog.module().func(prog.main()?);
            let tensors = loopvm::parse_args(main, &prog.module().symbols, &args)?;
            let cfg = RunConfig {
                tier,
                trace,
                max_steps,
                max_memory,
                timeout,
                capture_print: false,
                jit_threshold: None,
                no_cache,
                cancel: None,
                devices,
                mesh,
                shard,
            };
            let res = prog.run(&tensors, &cfg)?;
            if let Some(path) = &out {
                write_out(path, &res.value)?;
            }
            if format == "json" {
                println!("{}", res.value.to_json());
            } else if out.is_none() {
                println!("{}", res.value);
            }
            if stats {
                eprintln!("ops executed:     {}", res.ops);
                eprintln!("loop iterations:  {}", res.loop_iterations);
                for l in &res.loops {
                    let by = if l.stats.offloaded > 0 {
                        format!(" ({} run by the {} back end)", l.stats.offloaded, l.tier.as_str())
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "  {} in `{}` (body b{}): {} entries{by}, {} iterations in the interpreter",
                        l.kind, l.func, l.body.0, l.stats.entries, l.stats.iterations
                    );
                }
                for n in &res.notes {
                    eprintln!("{n}");
                }
                eprintln!("peak memory:      {} bytes (heap, whole process)", loopvm::heap::peak());
                eprintln!("time:             {:.3} ms", res.elapsed.as_secs_f64() * 1e3);
            }
            Ok(())
        }
        Cmd::Check { file } => {
            Program::from_path(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Cmd::Compile { file, output } => {
            let prog = Program::from_path(&file)?;
            std::fs::write(&output, prog.to_bytecode()).map_err(|e| io_err(&output, e))?;
            Ok(())
        }
        Cmd::Dis { file } => {
            print!("{}", Program::from_path(&file)?.disassemble());
            Ok(())
        }
        Cmd::Emit { file, args, unroll, compile, dev: DeviceArgs { devices, mesh, shard } } => {
            use loopvm_jit::hlo;
            let start = std::time::Instant::now();
            let prog = Program::from_path(&file)?;
            let m = prog.module();
            let f = prog.main()?;
            let mesh = loopvm::shard::mesh_of(devices, mesh)?;
            let shards = loopvm::shard::param_shards(m.func(f), &shard)?;
            if compile && mesh.devices() > 1 {
                return Err(Error::new(loopvm::ErrorKind::Argument(
                    "`emit --compile` compiles for one device: leave out --devices and --mesh".into(),
                )));
            }
            // `print` as a host callback, as `--tier xla` compiles it on a
            // plugin with the PJRT FFI extension (the CPU plugin has it; on
            // several devices `print` runs in the interpreter).
            let opts =
                hlo::EmitOptions { unroll_all: unroll, host_print: mesh.devices() == 1, mesh, ..Default::default() };
            let types = if args.is_empty() {
                hlo::param_types(m, f)
            } else {
                let tensors = loopvm::parse_args(m.func(f), &m.symbols, &args)?;
                Ok(tensors.iter().map(hlo::value_type).collect())
            };
            let text = types.and_then(|types| loopvm_jit::xla::tier::emit_sharded_for(m, f, &types, &opts, &shards));
            let text =
                text.map_err(|e| Error::new(loopvm::ErrorKind::Tier(format!("cannot lower to StableHLO: {e}"))))?;
            let emitted = start.elapsed();
            print!("{text}");
            if compile {
                compile_emitted(&text, emitted)?;
            }
            Ok(())
        }
        Cmd::Diff { file, args, tiers, dev: DeviceArgs { devices, mesh, shard } } => {
            let tiers = tiers
                .iter()
                .map(|t| {
                    Tier::parse(t).ok_or_else(|| Error::new(loopvm::ErrorKind::Argument(format!("unknown tier `{t}`"))))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let prog = Program::from_path(&file)?;
            let main = prog.module().func(prog.main()?);
            let tensors = loopvm::parse_args(main, &prog.module().symbols, &args)?;
            let base = RunConfig { devices, mesh, shard, ..RunConfig::default() };
            let results = loopvm::diff::diff_with(&prog, &tensors, &tiers, &base)?;
            println!("{:<8} {:>12}  result", "tier", "time");
            let mut bad = 0;
            for r in &results {
                let what = match (&r.outcome, &r.mismatch) {
                    (Ok(v), None) if r.tier == Tier::Interp => format!("{v} (reference)"),
                    (Ok(_), None) => "agrees".to_string(),
                    (Ok(_), Some(m)) => format!("MISMATCH: {m}"),
                    (Err(e), _) if !r.disagrees() => {
                        format!("not run: {}", e.to_string().trim_start_matches("error: "))
                    }
                    (Err(e), _) => format!("FAILED: {}", e.to_string().trim_start_matches("error: ")),
                };
                bad += usize::from(r.disagrees());
                println!("{:<8} {:>9.3} ms  {what}", r.tier.as_str(), r.time.as_secs_f64() * 1e3);
            }
            if bad > 0 {
                return Err(Error::new(loopvm::ErrorKind::Runtime(format!(
                    "{bad} tier(s) disagree with the interpreter"
                ))));
            }
            Ok(())
        }
        Cmd::Fuzz { seed, start, count, tiers, out } => {
            let tiers = tiers
                .iter()
                .map(|t| {
                    Tier::parse(t).ok_or_else(|| Error::new(loopvm::ErrorKind::Argument(format!("unknown tier `{t}`"))))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let opts = loopvm_fuzzgen::FuzzOptions { seed, start, count, tiers, out: Some(out), ..Default::default() };
            let report = loopvm_fuzzgen::run(&opts, &mut std::io::stderr())?;
            print!("{}", report.summary());
            if !report.findings.is_empty() || report.generator_errors > 0 {
                return Err(Error::new(loopvm::ErrorKind::Runtime(format!(
                    "{} mismatch(es), {} generator error(s)",
                    report.findings.len(),
                    report.generator_errors
                ))));
            }
            Ok(())
        }
        Cmd::Cache { cmd } => cache_cmd(cmd),
        Cmd::Plugin { cmd: PluginCmd::List } => {
            plugin_list();
            Ok(())
        }
        Cmd::Plugin { cmd: PluginCmd::Install { kind } } => {
            let k: plugin::PluginKind = kind.parse().map_err(|_| {
                Error::new(loopvm::ErrorKind::Argument(format!(
                    "unknown plugin kind `{kind}` (cpu, cuda12, cuda13, tpu)"
                )))
            })?;
            let path = plugin::install(k).map_err(|e| Error::new(loopvm::ErrorKind::Tier(e.to_string())))?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

fn cache_cmd(cmd: CacheCmd) -> Result<(), Error> {
    use loopvm_jit::xla::disk_cache;
    let tier_err = |m: String| Error::new(loopvm::ErrorKind::Tier(m));
    let cache = disk_cache::DiskCache::from_env()
        .ok_or_else(|| tier_err("no cache folder: set LOOPVM_CACHE_DIR, XDG_CACHE_HOME or HOME".into()))?;
    let dir = cache.dir().display().to_string();
    let io = |e: std::io::Error| tier_err(format!("cannot read the executable cache {dir}: {e}"));
    match cmd {
        CacheCmd::List => {
            let now = std::time::SystemTime::now();
            for e in cache.list().map_err(io)? {
                let age = now.duration_since(e.last_used).map_or(0, |d| d.as_secs());
                let name = e.path.file_stem().map(|s| s.to_string_lossy().chars().take(16).collect::<String>());
                println!(
                    "{}  {:>10} bytes  used {age} s ago  {}",
                    name.unwrap_or_default(),
                    e.size,
                    e.label.as_deref().unwrap_or("(unreadable header)")
                );
            }
        }
        CacheCmd::Clear => {
            let (n, bytes) = cache.clear().map_err(io)?;
            println!("removed {n} entries ({bytes} bytes) from {dir}");
        }
        CacheCmd::Stats => {
            let entries = cache.list().map_err(io)?;
            let total: u64 = entries.iter().map(|e| e.size).sum();
            println!("folder:  {dir}");
            println!("entries: {}", entries.len());
            println!("size:    {total} bytes");
            println!("cap:     {} bytes ({})", cache.cap(), disk_cache::CAP_ENV);
        }
    }
    Ok(())
}

fn plugin_list() {
    let reports = plugin::list();
    if reports.is_empty() {
        println!("no PJRT plugin found.\n{}", plugin::how_to_get_a_plugin());
    }
    for r in reports {
        let kind = r.found.kind.map_or("?", |k| k.name());
        println!("{} ({kind}, from {})", r.found.path.display(), r.found.source);
        match r.status {
            plugin::PluginStatus::Ok(d) => {
                println!("  platform {} {}, PJRT API {}", d.platform_name, d.platform_version, d.api_version);
                let devs: Vec<String> = d.devices.iter().map(|x| x.description.clone()).collect();
                println!("  {} device(s): {}", devs.len(), devs.join(", "));
            }
            plugin::PluginStatus::Broken(e) => println!("  broken: {e}"),
            plugin::PluginStatus::Shadowed(p) => println!("  not loaded: {} is used for this kind", p.display()),
        }
    }
}

/// `4` or `2x2`.
fn parse_mesh(s: &str) -> Result<loopvm::Mesh, String> {
    loopvm::Mesh::parse(s).ok_or_else(|| format!("`{s}` is not a mesh (`4` or `2x2`)"))
}

/// `x=0` or `w=1:model`.
fn parse_shard(s: &str) -> Result<loopvm::ShardArg, String> {
    loopvm::ShardArg::parse(s).map_err(|e| e.to_string().trim_start_matches("error: ").to_string())
}

/// `1000`, `64K`, `16M`, `2G` (powers of 1024).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let (num, mul) = match s.trim().char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1usize << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("`{s}` is not a byte count"))
}

/// Seconds, possibly fractional (`2.5`), optionally with an `s` suffix.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim().trim_end_matches('s').parse::<f64>().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(t).map_err(|_| format!("`{s}` is not a valid duration"))
}

fn io_err(p: &Path, e: std::io::Error) -> Error {
    Error::new(loopvm::ErrorKind::Io(format!("{}: {e}", p.display())))
}

/// Writes a tensor to `path`, or a tuple's tensors to `path/0.npy`, `path/1.npy`, ...
fn write_out(path: &Path, v: &Value) -> Result<(), Error> {
    let npy_err = |e: loopvm_runtime::RuntimeError| {
        Error::new(loopvm::ErrorKind::Io(format!("{}: {}", path.display(), e.message)))
    };
    match v {
        Value::Tensor(t) => loopvm_runtime::npy::write_file(path, t).map_err(npy_err),
        Value::Tuple(_) => {
            std::fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
            for (i, t) in v.leaves().into_iter().enumerate() {
                let p = path.join(format!("{i}.npy"));
                loopvm_runtime::npy::write_file(&p, t).map_err(|e| io_err(&p, std::io::Error::other(e.message)))?;
            }
            Ok(())
        }
    }
}
