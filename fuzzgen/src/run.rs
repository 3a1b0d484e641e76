//! Running and comparison: a batch of generated programs on the interpreter
//! (the reference) and the other tiers, every result compared, every
//! mismatch shrunk and written as a reproducer.

use crate::generate::{generate, Rng};
use crate::shrink::shrink;
use crate::tree::ProgramTree;
use loopvm_api::diff::compare;
use loopvm_api::{Error, ErrorKind, Program, RunConfig, RunOutput, Tensor, Tier, Value};
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What [`run`] does.
#[derive(Clone, Debug)]
pub struct FuzzOptions {
    /// The batch seed; program `k` of the batch has seed [`program_seed`]`(seed, k)`.
    pub seed: u64,
    /// The index of the first program: a batch is programs `start ..
    /// start + count` of the seed, so one seed's batch can be split over
    /// processes (`--start 0 --count 5000` and `--start 5000 --count 5000`
    /// run the same programs as `--count 10000`).
    pub start: u64,
    /// How many programs to generate.
    pub count: u64,
    /// The tiers compared with the interpreter (the interpreter is always run,
    /// as the reference). A tier that cannot start is skipped with a notice.
    pub tiers: Vec<Tier>,
    /// Where reproducers are written (created on the first finding); `None`
    /// writes nothing.
    pub out: Option<PathBuf>,
    /// Shrink a mismatching program before writing it.
    pub shrink: bool,
    /// Wall-clock budget for shrinking one finding.
    pub shrink_time: Duration,
    /// Rough size of a program (expression nodes).
    pub size: usize,
    /// Loop-iteration limit of every run (a generator bug that loops forever
    /// is an interpreter error, not a hang).
    pub max_steps: u64,
    /// Wall-clock limit of every run.
    pub timeout: Duration,
    /// Stop after this many findings (0: never).
    pub max_findings: usize,
}

impl Default for FuzzOptions {
    fn default() -> FuzzOptions {
        FuzzOptions {
            seed: 0,
            start: 0,
            count: 100,
            tiers: vec![Tier::Xla],
            out: Some(PathBuf::from("fuzz-findings")),
            shrink: true,
            shrink_time: Duration::from_secs(120),
            size: 80,
            max_steps: 1_000_000,
            timeout: Duration::from_secs(20),
            max_findings: 0,
        }
    }
}

/// Counts for one tier over a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierCount {
    /// The tier.
    pub tier: Tier,
    /// Programs it ran and agreed on.
    pub agreed: u64,
    /// Programs it disagreed on (a different value or an error).
    pub mismatched: u64,
    /// Programs it declined (a tier error: "cannot run this").
    pub declined: u64,
    /// Programs of which XLA declined some region (it ran in the
    /// interpreter instead): on the xla tier, a generated program never
    /// should (the CI batch fails on one).
    pub fell_back: u64,
}

/// One mismatch.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The program's seed ([`generate`] makes it again).
    pub program_seed: u64,
    /// The tier that disagrees with the interpreter.
    pub tier: Tier,
    /// The difference (or the tier's error), on the shrunk program.
    pub message: String,
    /// The interpreter's result on the shrunk program.
    pub reference: String,
    /// The tier's result (or error) on the shrunk program.
    pub got: String,
    /// The shrunk reproducer, a spec file with `# expect:`, `# args:` and
    /// `# tiers:` headers.
    pub reproducer: String,
    /// The program as generated.
    pub original: String,
    /// Where the reproducer was written.
    pub path: Option<PathBuf>,
}

/// What [`run`] found.
#[derive(Clone, Debug, Default)]
pub struct FuzzReport {
    /// The batch: its seed and the indices of its programs.
    pub batch: (u64, std::ops::Range<u64>),
    /// Programs generated.
    pub programs: u64,
    /// Generated programs that did not compile (generator bugs).
    pub generator_errors: u64,
    /// Generated programs the interpreter failed on (generator bugs or
    /// interpreter bugs; each is written to the output directory).
    pub reference_errors: u64,
    /// Per-tier counts, in the order of [`FuzzOptions::tiers`].
    pub tiers: Vec<TierCount>,
    /// Tiers skipped because they cannot start, with the reason.
    pub skipped_tiers: Vec<(Tier, String)>,
    /// Every mismatch, shrunk.
    pub findings: Vec<Finding>,
    /// Wall-clock time of the batch.
    pub elapsed: Duration,
}

impl FuzzReport {
    /// One line per figure, for the command line.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} programs (seed {}, programs {}..{}) in {:.1} s: {} generator errors, {} interpreter errors, {} mismatches\n",
            self.programs,
            self.batch.0,
            self.batch.1.start,
            self.batch.1.end,
            self.elapsed.as_secs_f64(),
            self.generator_errors,
            self.reference_errors,
            self.findings.len()
        );
        for t in &self.tiers {
            let _ = writeln!(
                s,
                "  {:<6} agreed {}, mismatched {}, declined {}, XLA fell back on {}",
                t.tier.as_str(),
                t.agreed,
                t.mismatched,
                t.declined,
                t.fell_back
            );
        }
        for (t, why) in &self.skipped_tiers {
            let _ = writeln!(s, "  {:<6} skipped: {why}", t.as_str());
        }
        for f in &self.findings {
            let where_ = f.path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default();
            let _ = writeln!(s, "  mismatch: seed {:#x} on {}: {}{where_}", f.program_seed, f.tier.as_str(), f.message);
        }
        s
    }
}

/// The seed of program `k` of a batch seeded with `seed`.
pub fn program_seed(seed: u64, k: u64) -> u64 {
    let mut r = Rng::new(seed ^ k.wrapping_mul(0xA076_1D64_78BD_642F));
    r.next_u64()
}

// ---------------------------------------------------------------------------
// The batch

/// Generates [`FuzzOptions::count`] programs, runs each on the interpreter
/// and on the chosen tiers, and shrinks and writes every mismatch. Progress
/// and findings go to `log`. An error only for a failure of the harness
/// itself (an output directory that cannot be written).
pub fn run(opts: &FuzzOptions, log: &mut dyn Write) -> Result<FuzzReport, Error> {
    let start = Instant::now();
    let range = opts.start..opts.start.saturating_add(opts.count);
    let mut report = FuzzReport { batch: (opts.seed, range.clone()), ..FuzzReport::default() };
    let mut tiers = Vec::new();
    for &t in &opts.tiers {
        if t == Tier::Interp || tiers.contains(&t) {
            continue;
        }
        match tier_available(t) {
            Ok(()) => tiers.push(t),
            Err(why) => {
                let _ = writeln!(log, "fuzz: skipping tier {}: {why}", t.as_str());
                report.skipped_tiers.push((t, why));
            }
        }
    }
    report.tiers =
        tiers.iter().map(|&tier| TierCount { tier, agreed: 0, mismatched: 0, declined: 0, fell_back: 0 }).collect();
    let limits = Limits { max_steps: opts.max_steps, timeout: opts.timeout };
    for k in range {
        let pseed = program_seed(opts.seed, k);
        let g = generate(pseed, opts.size);
        report.programs += 1;
        let prog = match Program::from_source(&g.source, "fuzz.lb") {
            Ok(p) => p,
            Err(e) => {
                report.generator_errors += 1;
                let _ = writeln!(log, "fuzz: generator error (seed {pseed:#x}): {}", first_line(&e.to_string()));
                write_file(opts, &format!("generator-error-{pseed:016x}.lb"), &format!("# {e}\n{}", g.source))?;
                continue;
            }
        };
        let Ok(args) = prog_args(&prog, &g.args) else {
            report.generator_errors += 1;
            let _ = writeln!(log, "fuzz: generator error (seed {pseed:#x}): bad arguments {:?}", g.args);
            continue;
        };
        let reference = match run_tier(&prog, &args, Tier::Interp, &limits) {
            Ok(o) => o,
            Err(e) => {
                report.reference_errors += 1;
                let _ = writeln!(log, "fuzz: interpreter error (seed {pseed:#x}): {}", first_line(&e.to_string()));
                write_file(
                    opts,
                    &format!("interp-error-{pseed:016x}.lb"),
                    &format!(
                        "# interpreter: {}\n# args: {}\n{}",
                        first_line(&e.to_string()),
                        g.args.join(" "),
                        g.source
                    ),
                )?;
                continue;
            }
        };
        for (ti, &tier) in tiers.iter().enumerate() {
            let outcome = run_tier(&prog, &args, tier, &limits);
            if let Some(f) = outcome.as_ref().ok().and_then(|o| o.fallbacks.iter().find(|f| f.tier == Tier::Xla)) {
                report.tiers[ti].fell_back += 1;
                let _ = writeln!(log, "fuzz: XLA fell back (seed {pseed:#x}) on {}: {f}", tier.as_str());
            }
            let verdict = judge(&reference, &outcome);
            match verdict {
                Verdict::Agree => report.tiers[ti].agreed += 1,
                Verdict::Declined => report.tiers[ti].declined += 1,
                Verdict::Differ(kind, msg) => {
                    report.tiers[ti].mismatched += 1;
                    let _ = writeln!(log, "fuzz: MISMATCH (seed {pseed:#x}) on {}: {msg}", tier.as_str());
                    let shrunk = if opts.shrink {
                        shrink(&g.prog, tier, kind, &limits, opts.shrink_time, log)
                    } else {
                        g.prog.clone()
                    };
                    let finding = describe(&shrunk, pseed, tier, &limits, &g.source).unwrap_or_else(|| {
                        describe(&g.prog, pseed, tier, &limits, &g.source).unwrap_or(Finding {
                            program_seed: pseed,
                            tier,
                            message: msg.clone(),
                            reference: reference.value.to_string(),
                            got: String::new(),
                            reproducer: g.source.clone(),
                            original: g.source.clone(),
                            path: None,
                        })
                    });
                    let name = format!("mismatch-{pseed:016x}-{}.lb", tier.as_str());
                    let path = write_file(opts, &name, &finding.reproducer)?;
                    let _ = writeln!(
                        log,
                        "fuzz: shrunk to {} lines{}:\n{}",
                        finding.reproducer.lines().count(),
                        path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default(),
                        finding.reproducer
                    );
                    report.findings.push(Finding { path, ..finding });
                }
            }
        }
        if (k + 1) % 100 == 0 {
            let _ = writeln!(
                log,
                "fuzz: {} programs, {} mismatches, {:.1} s",
                k + 1,
                report.findings.len(),
                start.elapsed().as_secs_f64()
            );
        }
        if opts.max_findings > 0 && report.findings.len() >= opts.max_findings {
            break;
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub(crate) fn write_file(opts: &FuzzOptions, name: &str, text: &str) -> Result<Option<PathBuf>, Error> {
    let Some(dir) = &opts.out else { return Ok(None) };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(ErrorKind::Io(format!("cannot create {}: {e}", dir.display()))))?;
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| Error::new(ErrorKind::Io(format!("cannot write {}: {e}", p.display()))))?;
    Ok(Some(p))
}

/// `Ok` when `tier` can run a trivial program (a tier error otherwise).
pub(crate) fn tier_available(tier: Tier) -> Result<(), String> {
    let p = Program::from_source("fn main() -> i32 { fori_loop(0, 3, |i, a| a + i, 0) }", "probe.lb")
        .map_err(|e| e.to_string())?;
    match p.run(&[], &RunConfig { tier, capture_print: true, ..RunConfig::default() }) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::Tier(_)) => Err(first_line(&e.to_string()).to_string()),
        // Any other failure is the tier's to explain: keep it, so that it shows as mismatches.
        Err(_) => Ok(()),
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_steps: u64,
    pub(crate) timeout: Duration,
}

/// Runs `prog` on `tier`. The interpreter runs under the limits (a
/// runaway program is its error, not a hang); the other tiers run as
/// `loopvm diff` runs them, without limits (a limit sends every loop of the
/// jit tier to the interpreter), and the jit promotes loops from their first
/// iteration.
pub(crate) fn run_tier(prog: &Program, args: &[Tensor], tier: Tier, l: &Limits) -> Result<RunOutput, Error> {
    let cfg = if tier == Tier::Interp {
        RunConfig {
            tier,
            capture_print: true,
            max_steps: Some(l.max_steps),
            timeout: Some(l.timeout),
            ..RunConfig::default()
        }
    } else {
        // A generated program runs once: its executables are not worth a
        // place in the persistent cache (they would evict the user's).
        RunConfig {
            tier,
            capture_print: true,
            jit_threshold: Some(JIT_THRESHOLD),
            no_cache: true,
            ..RunConfig::default()
        }
    };
    prog.run(args, &cfg)
}

/// The `jit_threshold` of fuzz runs: loops go native at once.
pub const JIT_THRESHOLD: u64 = 0;

pub(crate) fn prog_args(prog: &Program, args: &[String]) -> Result<Vec<Tensor>, Error> {
    let main = prog.module().func(prog.main()?);
    loopvm_api::parse_args(main, &prog.module().symbols, args)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiffKind {
    Value,
    Error,
}

pub(crate) enum Verdict {
    Agree,
    Declined,
    Differ(DiffKind, String),
}

/// The verdict on `outcome` against the interpreter's run: its value and
/// its printed lines.
pub(crate) fn judge(reference: &RunOutput, outcome: &Result<RunOutput, Error>) -> Verdict {
    match outcome {
        Ok(o) => match compare(&reference.value, &o.value)
            .or_else(|| loopvm_api::diff::compare_printed(&reference.printed, &o.printed))
        {
            None => Verdict::Agree,
            Some(m) => Verdict::Differ(DiffKind::Value, m),
        },
        Err(e) if matches!(e.kind(), ErrorKind::Tier(_)) => Verdict::Declined,
        Err(e) => Verdict::Differ(DiffKind::Error, format!("error: {}", first_line(&e.to_string()))),
    }
}

/// Compiles and runs `p` on the interpreter and `tier`: the kind of
/// difference, if there is one (and the interpreter succeeds).
pub(crate) fn differs(
    p: &ProgramTree,
    tier: Tier,
    l: &Limits,
) -> Option<(DiffKind, String, Value, Result<RunOutput, Error>)> {
    let src = p.render();
    let prog = Program::from_source(&src, "fuzz.lb").ok()?;
    let args = prog_args(&prog, &p.arg_texts()).ok()?;
    let reference = run_tier(&prog, &args, Tier::Interp, l).ok()?;
    let out = run_tier(&prog, &args, tier, l);
    match judge(&reference, &out) {
        Verdict::Differ(k, m) => Some((k, m, reference.value, out)),
        _ => None,
    }
}

pub(crate) fn describe(p: &ProgramTree, pseed: u64, tier: Tier, l: &Limits, original: &str) -> Option<Finding> {
    let (_, message, reference, out) = differs(p, tier, l)?;
    let got = match &out {
        Ok(o) => o.value.to_string(),
        Err(e) => format!("error: {}", first_line(&e.to_string())),
    };
    let mut head = String::new();
    let _ = writeln!(head, "# expect: {reference}");
    let args = p.arg_texts();
    if !args.is_empty() {
        let _ = writeln!(head, "# args: {}", args.join(" "));
    }
    let _ = writeln!(head, "# fuzz: seed {pseed:#x}, shrunk; {} gives {got}", tier.as_str());
    if tier != Tier::Interp {
        let _ = writeln!(head, "# (run with jit_threshold {JIT_THRESHOLD} on the jit and auto tiers)");
    }
    let _ = writeln!(head, "# {}: {message}", tier.as_str());
    Some(Finding {
        program_seed: pseed,
        tier,
        message,
        reference: reference.to_string(),
        got,
        reproducer: format!("{head}{}", p.render()),
        original: original.to_string(),
        path: None,
    })
}
