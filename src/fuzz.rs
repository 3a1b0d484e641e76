//! Differential fuzzing: random well-typed `.lb` programs, run on the
//! interpreter (the reference) and on other tiers, compared with
//! [`crate::diff::compare`], and shrunk to a small reproducer on a mismatch.
//!
//! The generator is type-directed: it is asked for an expression of a given
//! type and picks among the productions that can give it (literals with edge
//! values, variables, arithmetic with broadcasting, comparisons, casts,
//! reductions, static and dynamic indexing in and out of range, `.at[]`
//! updates, `if`, calls of generated functions, nested `fori_loop` /
//! `while_loop` / `scan` with tuple carries of mixed dtypes). Every program
//! is deterministic given its seed ([`generate`]).
//!
//! Float results may differ between tiers within the documented tolerance,
//! and such a difference must not be amplified into an integer or bool
//! (`(sin(x) * 1e6) as i32`): the generator keeps every float value that
//! reaches a comparison, a cast to an integer, `argmax` or a float dynamic
//! path *exact* (built only from correctly rounded IEEE operations, with no
//! transcendental functions, float reductions or float matrix products).
//!
//! ```
//! use loopvm::fuzz::{generate, FuzzOptions};
//! let a = generate(7, FuzzOptions::default().size);
//! assert_eq!(a.source, generate(7, FuzzOptions::default().size).source);
//! assert!(loopvm::Program::from_source(&a.source, "fuzz.lb").is_ok());
//! ```

use crate::diff::compare;
use crate::error::{Error, ErrorKind};
use crate::program::{Program, RunConfig, RunOutput, Tier};
use crate::value::Value;
use loopvm_runtime::{Accepts, Tensor, UnaryOp};
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Options and report

/// What [`run`] does.
#[derive(Clone, Debug)]
pub struct FuzzOptions {
    /// The batch seed; program `k` of the batch has seed [`program_seed`]`(seed, k)`.
    pub seed: u64,
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
            "{} programs in {:.1} s: {} generator errors, {} interpreter errors, {} mismatches\n",
            self.programs,
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
    let mut report = FuzzReport::default();
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
    for k in 0..opts.count {
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
            Ok(o) => o.value,
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
            if outcome.as_ref().is_ok_and(fell_back) {
                report.tiers[ti].fell_back += 1;
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
                            reference: reference.to_string(),
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

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn write_file(opts: &FuzzOptions, name: &str, text: &str) -> Result<Option<PathBuf>, Error> {
    let Some(dir) = &opts.out else { return Ok(None) };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}: {e}", dir.display())))?;
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| Error::io(format!("cannot write {}: {e}", p.display())))?;
    Ok(Some(p))
}

/// `Ok` when `tier` can run a trivial program (a tier error otherwise).
fn tier_available(tier: Tier) -> Result<(), String> {
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
struct Limits {
    max_steps: u64,
    timeout: Duration,
}

/// Runs `prog` on `tier`. The interpreter runs under the limits (a
/// runaway program is its error, not a hang); the other tiers run as
/// `loopvm diff` runs them, without limits (a limit sends every loop of the
/// jit tier to the interpreter), and the jit promotes loops from their first
/// iteration.
fn run_tier(prog: &Program, args: &[Tensor], tier: Tier, l: &Limits) -> Result<RunOutput, Error> {
    let cfg = if tier == Tier::Interp {
        RunConfig {
            tier,
            capture_print: true,
            max_steps: Some(l.max_steps),
            timeout: Some(l.timeout),
            ..RunConfig::default()
        }
    } else {
        RunConfig { tier, capture_print: true, jit_threshold: Some(JIT_THRESHOLD), ..RunConfig::default() }
    };
    prog.run(args, &cfg)
}

/// The `jit_threshold` of fuzz runs: loops go native at once.
pub const JIT_THRESHOLD: u64 = 0;

/// `true` when XLA declined some region of the run.
fn fell_back(out: &RunOutput) -> bool {
    out.fallbacks.iter().any(|f| f.tier == Tier::Xla)
}

fn prog_args(prog: &Program, args: &[String]) -> Result<Vec<Tensor>, Error> {
    let main = prog.module().func(prog.main()?);
    crate::parse_args(main, &prog.module().symbols, args)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiffKind {
    Value,
    Error,
}

enum Verdict {
    Agree,
    Declined,
    Differ(DiffKind, String),
}

fn judge(reference: &Value, outcome: &Result<RunOutput, Error>) -> Verdict {
    match outcome {
        Ok(o) => match compare(reference, &o.value) {
            None => Verdict::Agree,
            Some(m) => Verdict::Differ(DiffKind::Value, m),
        },
        Err(e) if matches!(e.kind(), ErrorKind::Tier(_)) => Verdict::Declined,
        Err(e) => Verdict::Differ(DiffKind::Error, format!("error: {}", first_line(&e.to_string()))),
    }
}

/// Compiles and runs `p` on the interpreter and `tier`: the kind of
/// difference, if there is one (and the interpreter succeeds).
fn differs(p: &Prog, tier: Tier, l: &Limits) -> Option<(DiffKind, String, Value, Result<RunOutput, Error>)> {
    let src = p.render();
    let prog = Program::from_source(&src, "fuzz.lb").ok()?;
    let args = prog_args(&prog, &p.arg_texts()).ok()?;
    let reference = run_tier(&prog, &args, Tier::Interp, l).ok()?.value;
    let out = run_tier(&prog, &args, tier, l);
    match judge(&reference, &out) {
        Verdict::Differ(k, m) => Some((k, m, reference, out)),
        _ => None,
    }
}

fn describe(p: &Prog, pseed: u64, tier: Tier, l: &Limits, original: &str) -> Option<Finding> {
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

// ---------------------------------------------------------------------------
// Shrinking

/// One simplification of the program.
#[derive(Clone, Copy, Debug)]
enum Cand {
    /// Transform `t` of expression node `n` (preorder over every function).
    Node(usize, usize),
    /// Argument `j` of `main` to zeros.
    Arg(usize),
    /// Drop function `f` (when nothing calls it).
    DropFn(usize),
}

fn shrink(orig: &Prog, tier: Tier, kind: DiffKind, l: &Limits, budget: Duration, log: &mut dyn Write) -> Prog {
    let start = Instant::now();
    let mut best = orig.clone();
    let mut tries = 0u64;
    let mut accepted = 0u64;
    'outer: loop {
        let n = best.node_count();
        let mut cands = Vec::new();
        for j in 0..best.args.len() {
            if !best.args[j].simple {
                cands.push(Cand::Arg(j));
            }
        }
        for f in 0..best.fns.len() {
            cands.push(Cand::DropFn(f));
        }
        for node in 0..n {
            let k = best.node_transforms(node);
            for t in 0..k {
                cands.push(Cand::Node(node, t));
            }
        }
        for c in cands {
            if start.elapsed() > budget {
                break 'outer;
            }
            let Some(next) = best.apply(c) else { continue };
            tries += 1;
            if let Some((k, ..)) = differs(&next, tier, l) {
                if k == kind {
                    best = next;
                    accepted += 1;
                    continue 'outer;
                }
            }
        }
        break;
    }
    let _ =
        writeln!(log, "fuzz: shrinking: {tries} tries, {accepted} accepted, {:.1} s", start.elapsed().as_secs_f64());
    best
}

// ---------------------------------------------------------------------------
// The PRNG

/// SplitMix64: small, fast, and deterministic across platforms.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo) as u64 + 1)) as i64
    }
    /// `true` with probability `pct` percent.
    fn chance(&mut self, pct: u32) -> bool {
        self.next_u64() % 100 < u64::from(pct)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    /// An index into `weights`, chosen with those weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = (self.next_u64() % u64::from(total.max(1))) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

// ---------------------------------------------------------------------------
// Types and the program tree

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dt {
    Bool,
    I32,
    I64,
    F32,
    F64,
}

const ALL_DT: [Dt; 5] = [Dt::Bool, Dt::I32, Dt::I64, Dt::F32, Dt::F64];
const NUM_DT: [Dt; 4] = [Dt::I32, Dt::I64, Dt::F32, Dt::F64];

impl Dt {
    fn name(self) -> &'static str {
        match self {
            Dt::Bool => "bool",
            Dt::I32 => "i32",
            Dt::I64 => "i64",
            Dt::F32 => "f32",
            Dt::F64 => "f64",
        }
    }
    fn is_float(self) -> bool {
        matches!(self, Dt::F32 | Dt::F64)
    }
}

/// A tensor type: dtype and static dims.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tt {
    dt: Dt,
    dims: Vec<usize>,
}

impl Tt {
    fn new(dt: Dt, dims: &[usize]) -> Tt {
        Tt { dt, dims: dims.to_vec() }
    }
    fn scalar(dt: Dt) -> Tt {
        Tt { dt, dims: Vec::new() }
    }
    fn numel(&self) -> usize {
        self.dims.iter().product()
    }
    fn text(&self) -> String {
        if self.dims.is_empty() {
            self.dt.name().to_string()
        } else {
            format!("{}{:?}", self.dt.name(), self.dims)
        }
    }
    fn dims_text(&self) -> String {
        format!("{:?}", self.dims)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ty {
    T(Tt),
    Tup(Vec<Ty>),
}

impl Ty {
    fn text(&self) -> String {
        match self {
            Ty::T(t) => t.text(),
            Ty::Tup(v) if v.len() == 1 => format!("({},)", v[0].text()),
            Ty::Tup(v) => format!("({})", v.iter().map(Ty::text).collect::<Vec<_>>().join(", ")),
        }
    }
}

#[derive(Clone, Debug)]
enum Pat {
    Name(String),
    Wild,
    Tup(Vec<Pat>),
}

impl Pat {
    fn text(&self) -> String {
        match self {
            Pat::Name(n) => n.clone(),
            Pat::Wild => "_".into(),
            Pat::Tup(v) => format!("({})", v.iter().map(Pat::text).collect::<Vec<_>>().join(", ")),
        }
    }
    fn names(&self, out: &mut Vec<String>) {
        match self {
            Pat::Name(n) => out.push(n.clone()),
            Pat::Wild => {}
            Pat::Tup(v) => v.iter().for_each(|p| p.names(out)),
        }
    }
}

/// A call argument.
#[derive(Clone, Debug)]
enum A {
    E(Ex),
    /// Text printed as is (`f32`, `[2, 3]`, `axis: 1`).
    Raw(String),
    /// A list of expressions (`concat([a, b])`).
    List(Vec<Ex>),
}

/// An index.
#[derive(Clone, Debug)]
enum Ix {
    Dyn(Ex),
    Raw(String),
}

#[derive(Clone, Debug)]
struct Blk {
    lets: Vec<(Pat, Ex)>,
    ret: Ex,
}

#[derive(Clone, Debug)]
enum K {
    /// Literal text; `simple` when it cannot be simplified further.
    Lit {
        text: String,
        simple: bool,
        weak: bool,
    },
    Var(String),
    Un(&'static str, Box<Ex>),
    Bin(&'static str, Box<Ex>, Box<Ex>),
    Call(String, Vec<A>),
    Cast(Box<Ex>, Dt),
    Index(Box<Ex>, Vec<Ix>),
    At {
        base: Box<Ex>,
        idx: Vec<Ex>,
        add: bool,
        v: Box<Ex>,
    },
    If(Box<Ex>, Box<Blk>, Box<Blk>),
    Blk(Box<Blk>),
    Tuple(Vec<Ex>),
    Fori {
        lo: Box<Ex>,
        hi: Box<Ex>,
        i: String,
        pat: Pat,
        body: Box<Blk>,
        init: Box<Ex>,
        unroll: u32,
    },
    While {
        pat: Pat,
        cond: Box<Ex>,
        body: Box<Blk>,
        init: Box<Ex>,
        max_iters: Option<u32>,
    },
    Scan {
        cpat: Pat,
        xpat: Pat,
        body: Box<Blk>,
        init: Box<Ex>,
        xs: Option<Box<Ex>>,
        length: Option<usize>,
        reverse: bool,
        unroll: u32,
    },
}

/// An expression and its type.
#[derive(Clone, Debug)]
struct Ex {
    k: K,
    ty: Ty,
}

#[derive(Clone, Debug)]
struct FnDef {
    name: String,
    params: Vec<(String, Tt)>,
    ret: Ty,
    body: Ex,
    /// Its float results are exact when its float arguments are.
    exact: bool,
}

#[derive(Clone, Debug)]
struct Arg {
    name: String,
    tt: Tt,
    text: String,
    simple: bool,
}

/// A generated program.
#[derive(Clone, Debug)]
struct Prog {
    fns: Vec<FnDef>,
    main: FnDef,
    args: Vec<Arg>,
}

/// A generated program, as source and `--arg` strings.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The `.lb` source.
    pub source: String,
    /// `name=value` arguments of `main`.
    pub args: Vec<String>,
    prog: Prog,
}

// ---------------------------------------------------------------------------
// Rendering

/// The children of an expression node, by shared reference, or by mutable
/// reference when the last argument is `mut`.
macro_rules! children {
    ($e:expr, $iter:ident, $unbox:path $(, $m:tt)?) => {{
        let mut v = Vec::new();
        match & $($m)? $e.k {
            K::Lit { .. } | K::Var(_) => {}
            K::Un(_, a) | K::Cast(a, _) => v.push($unbox(a)),
            K::Bin(_, a, b) => {
                v.push($unbox(a));
                v.push($unbox(b));
            }
            K::Call(_, args) => {
                for a in args.$iter() {
                    match a {
                        A::E(e) => v.push(e),
                        A::List(es) => v.extend(es.$iter()),
                        A::Raw(_) => {}
                    }
                }
            }
            K::Index(a, ix) => {
                v.push($unbox(a));
                for x in ix.$iter() {
                    if let Ix::Dyn(e) = x {
                        v.push(e);
                    }
                }
            }
            K::At { base, idx, v: val, .. } => {
                v.push($unbox(base));
                v.extend(idx.$iter());
                v.push($unbox(val));
            }
            K::If(c, a, b) => {
                v.push($unbox(c));
                let (a, b) = ($unbox(a), $unbox(b));
                v.extend(a.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? a.ret);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            K::Blk(b) => {
                let b = $unbox(b);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            K::Tuple(es) => v.extend(es.$iter()),
            K::Fori { lo, hi, body, init, .. } => {
                v.push($unbox(init));
                v.push($unbox(lo));
                v.push($unbox(hi));
                let b = $unbox(body);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            K::While { cond, body, init, .. } => {
                v.push($unbox(init));
                v.push($unbox(cond));
                let b = $unbox(body);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
            K::Scan { body, init, xs, .. } => {
                v.push($unbox(init));
                if let Some(xs) = xs {
                    v.push($unbox(xs));
                }
                let b = $unbox(body);
                v.extend(b.lets.$iter().map(|(_, e)| e));
                v.push(& $($m)? b.ret);
            }
        }
        v
    }};
}

fn lit(text: impl Into<String>, ty: Tt) -> Ex {
    Ex { k: K::Lit { text: text.into(), simple: false, weak: false }, ty: Ty::T(ty) }
}

fn zeros_text(t: &Tt) -> String {
    if t.dims.is_empty() {
        match t.dt {
            Dt::Bool => "false".into(),
            Dt::I32 | Dt::I64 => format!("0{}", t.dt.name()),
            Dt::F32 | Dt::F64 => format!("0.0{}", t.dt.name()),
        }
    } else {
        format!("zeros({}, {})", t.dt.name(), t.dims_text())
    }
}

fn simplest(ty: &Ty) -> Ex {
    match ty {
        Ty::T(t) => Ex { k: K::Lit { text: zeros_text(t), simple: true, weak: false }, ty: ty.clone() },
        Ty::Tup(v) => Ex { k: K::Tuple(v.iter().map(simplest).collect()), ty: ty.clone() },
    }
}

impl Ex {
    fn render(&self, out: &mut String, ind: usize) {
        match &self.k {
            K::Lit { text, .. } => out.push_str(text),
            K::Var(n) => out.push_str(n),
            K::Un(op, a) => {
                out.push('(');
                out.push_str(op);
                a.render(out, ind);
                out.push(')');
            }
            K::Bin(op, a, b) => {
                out.push('(');
                a.render(out, ind);
                let _ = write!(out, " {op} ");
                b.render(out, ind);
                out.push(')');
            }
            K::Call(f, args) => {
                out.push_str(f);
                out.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match a {
                        A::E(e) => e.render(out, ind),
                        A::Raw(s) => out.push_str(s),
                        A::List(es) => {
                            out.push('[');
                            for (i, e) in es.iter().enumerate() {
                                if i > 0 {
                                    out.push_str(", ");
                                }
                                e.render(out, ind);
                            }
                            out.push(']');
                        }
                    }
                }
                out.push(')');
            }
            K::Cast(a, dt) => {
                out.push('(');
                a.render(out, ind);
                let _ = write!(out, " as {})", dt.name());
            }
            K::Index(a, ix) => {
                out.push('(');
                a.render(out, ind);
                out.push_str(")[");
                for (i, x) in ix.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match x {
                        Ix::Dyn(e) => e.render(out, ind),
                        Ix::Raw(s) => out.push_str(s),
                    }
                }
                out.push(']');
            }
            K::At { base, idx, add, v } => {
                out.push('(');
                base.render(out, ind);
                out.push_str(").at[");
                for (i, x) in idx.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.render(out, ind);
                }
                out.push_str(if *add { "].add(" } else { "].set(" });
                v.render(out, ind);
                out.push(')');
            }
            K::If(c, a, b) => {
                out.push_str("(if ");
                c.render(out, ind);
                out.push(' ');
                a.render(out, ind);
                out.push_str(" else ");
                b.render(out, ind);
                out.push(')');
            }
            K::Blk(b) => {
                out.push('(');
                b.render(out, ind);
                out.push(')');
            }
            K::Tuple(v) => {
                out.push('(');
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    e.render(out, ind);
                }
                if v.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            K::Fori { lo, hi, i, pat, body, init, unroll } => {
                out.push_str("fori_loop(");
                lo.render(out, ind);
                out.push_str(", ");
                hi.render(out, ind);
                let _ = write!(out, ", |{i}, {}| ", pat.text());
                body.render(out, ind);
                out.push_str(", ");
                init.render(out, ind);
                if *unroll > 1 {
                    let _ = write!(out, ", unroll: {unroll}");
                }
                out.push(')');
            }
            K::While { pat, cond, body, init, max_iters } => {
                let _ = write!(out, "while_loop(|{}| ", pat.text());
                cond.render(out, ind);
                let _ = write!(out, ", |{}| ", pat.text());
                body.render(out, ind);
                out.push_str(", ");
                init.render(out, ind);
                if let Some(m) = max_iters {
                    let _ = write!(out, ", max_iters: {m}");
                }
                out.push(')');
            }
            K::Scan { cpat, xpat, body, init, xs, length, reverse, unroll } => {
                let _ = write!(out, "scan(|{}, {}| ", cpat.text(), xpat.text());
                body.render(out, ind);
                out.push_str(", ");
                init.render(out, ind);
                if let Some(xs) = xs {
                    out.push_str(", ");
                    xs.render(out, ind);
                }
                if let Some(n) = length {
                    let _ = write!(out, ", length: {n}");
                }
                if *reverse {
                    out.push_str(", reverse: true");
                }
                if *unroll > 1 {
                    let _ = write!(out, ", unroll: {unroll}");
                }
                out.push(')');
            }
        }
    }

    /// The direct subexpressions, mutably (blocks' statements included).
    fn children_mut(&mut self) -> Vec<&mut Ex> {
        children!(self, iter_mut, Box::as_mut, mut)
    }

    /// The direct subexpressions.
    fn children(&self) -> Vec<&Ex> {
        children!(self, iter, Box::as_ref)
    }

    /// The block this node owns directly, if one (for dropping statements).
    fn blocks_mut(&mut self) -> Vec<&mut Blk> {
        match &mut self.k {
            K::If(_, a, b) => vec![&mut **a, &mut **b],
            K::Blk(b) => vec![&mut **b],
            K::Fori { body, .. } | K::While { body, .. } | K::Scan { body, .. } => vec![&mut **body],
            _ => Vec::new(),
        }
    }

    fn names(&self, out: &mut Vec<String>) {
        match &self.k {
            K::Var(n) => out.push(n.clone()),
            K::Call(f, _) => out.push(f.clone()),
            _ => {}
        }
        for c in self.children() {
            c.names(out);
        }
    }
}

impl Blk {
    fn render(&self, out: &mut String, ind: usize) {
        let pad = "    ".repeat(ind + 1);
        out.push_str("{\n");
        for (p, e) in &self.lets {
            let _ = write!(out, "{pad}let {} = ", p.text());
            e.render(out, ind + 1);
            out.push_str(";\n");
        }
        out.push_str(&pad);
        self.ret.render(out, ind + 1);
        let _ = write!(out, "\n{}}}", "    ".repeat(ind));
    }
}

fn walk(e: &mut Ex, f: &mut dyn FnMut(&mut Ex)) {
    f(e);
    for c in e.children_mut() {
        walk(c, f);
    }
}

impl Prog {
    fn render(&self) -> String {
        let mut used = Vec::new();
        self.main.body.names(&mut used);
        // Functions called (transitively) from main, in definition order.
        let mut live = vec![false; self.fns.len()];
        let mut changed = true;
        while changed {
            changed = false;
            for (i, f) in self.fns.iter().enumerate() {
                if !live[i] && used.contains(&f.name) {
                    live[i] = true;
                    changed = true;
                    f.body.names(&mut used);
                }
            }
        }
        let mut out = String::new();
        for (i, f) in self.fns.iter().enumerate() {
            if live[i] {
                render_fn(f, &mut out);
            }
        }
        render_fn(&self.main, &mut out);
        out
    }

    fn arg_texts(&self) -> Vec<String> {
        self.args.iter().map(|a| format!("{}={}", a.name, a.text)).collect()
    }

    fn for_each_node(&mut self, f: &mut dyn FnMut(&mut Ex)) {
        for d in &mut self.fns {
            walk(&mut d.body, f);
        }
        walk(&mut self.main.body, f);
    }

    fn node_count(&self) -> usize {
        let mut n = 0;
        self.clone().for_each_node(&mut |_| n += 1);
        n
    }

    fn node_transforms(&self, node: usize) -> usize {
        let mut k = 0;
        let mut count = 0;
        self.clone().for_each_node(&mut |e| {
            if k == node {
                count = transforms(e).len();
            }
            k += 1;
        });
        count
    }

    fn apply(&self, c: Cand) -> Option<Prog> {
        let mut p = self.clone();
        match c {
            Cand::Arg(j) => {
                let a = &mut p.args[j];
                a.text = arg_zeros(&a.tt);
                a.simple = true;
                Some(p)
            }
            Cand::DropFn(f) => {
                let mut used = Vec::new();
                for (i, d) in p.fns.iter().enumerate() {
                    if i != f {
                        d.body.names(&mut used);
                    }
                }
                p.main.body.names(&mut used);
                if used.contains(&p.fns[f].name) {
                    return None;
                }
                p.fns.remove(f);
                Some(p)
            }
            Cand::Node(node, t) => {
                let mut k = 0;
                let mut ok = false;
                p.for_each_node(&mut |e| {
                    if k == node {
                        ok = apply_transform(e, t);
                    }
                    k += 1;
                });
                ok.then_some(p)
            }
        }
    }
}

fn render_fn(f: &FnDef, out: &mut String) {
    let params: Vec<String> = f.params.iter().map(|(n, t)| format!("{n}: {}", t.text())).collect();
    let _ = write!(out, "fn {}({}) -> {} ", f.name, params.join(", "), f.ret.text());
    match &f.body.k {
        K::Blk(b) => b.render(out, 0),
        _ => {
            out.push_str("{\n    ");
            f.body.render(out, 1);
            out.push_str("\n}");
        }
    }
    out.push_str("\n\n");
}

#[derive(Clone, Copy, Debug)]
enum Tf {
    /// Replace by the simplest literal of the type.
    Zero,
    /// Replace by child `k` (when it has the same type).
    Child(usize),
    /// Drop statement `j` of owned block `b` (when its names are unused).
    DropLet(usize, usize),
    /// Loop options to their defaults.
    Plain,
}

fn transforms(e: &mut Ex) -> Vec<Tf> {
    let mut v = Vec::new();
    if !matches!(e.k, K::Lit { simple: true, .. }) && !is_simple_tuple(e) {
        v.push(Tf::Zero);
    }
    let ty = e.ty.clone();
    for (i, c) in e.children_mut().into_iter().enumerate() {
        if c.ty == ty && !is_weak(c) {
            v.push(Tf::Child(i));
        }
    }
    for (b, blk) in e.blocks_mut().into_iter().enumerate() {
        for j in 0..blk.lets.len() {
            v.push(Tf::DropLet(b, j));
        }
    }
    match &e.k {
        K::Fori { unroll, .. } if *unroll > 1 => v.push(Tf::Plain),
        K::Scan { reverse, unroll, .. } if *reverse || *unroll > 1 => v.push(Tf::Plain),
        K::While { max_iters: Some(_), .. } => v.push(Tf::Plain),
        _ => {}
    }
    v
}

/// A literal, possibly negated: a static index.
fn is_literal(e: &Ex) -> bool {
    match &e.k {
        K::Lit { .. } => true,
        K::Un("-", a) => is_literal(a),
        _ => false,
    }
}

fn is_weak(e: &Ex) -> bool {
    matches!(e.k, K::Lit { weak: true, .. })
}

fn is_simple_tuple(e: &Ex) -> bool {
    match &e.k {
        K::Tuple(v) => v.iter().all(|c| matches!(c.k, K::Lit { simple: true, .. }) || is_simple_tuple(c)),
        _ => false,
    }
}

fn apply_transform(e: &mut Ex, t: usize) -> bool {
    let ts = transforms(e);
    let Some(&tf) = ts.get(t) else { return false };
    match tf {
        Tf::Zero => *e = simplest(&e.ty),
        Tf::Child(i) => {
            let c = e.children_mut().into_iter().nth(i).map(|c| c.clone());
            match c {
                Some(c) => *e = c,
                None => return false,
            }
        }
        Tf::DropLet(b, j) => {
            let mut blocks = e.blocks_mut();
            let Some(blk) = blocks.get_mut(b) else { return false };
            let mut bound = Vec::new();
            blk.lets[j].0.names(&mut bound);
            let mut used = Vec::new();
            for (_, x) in &blk.lets[j + 1..] {
                x.names(&mut used);
            }
            blk.ret.names(&mut used);
            if bound.iter().any(|n| used.contains(n)) {
                return false;
            }
            blk.lets.remove(j);
        }
        Tf::Plain => match &mut e.k {
            K::Fori { unroll, .. } => *unroll = 1,
            K::Scan { reverse, unroll, .. } => {
                *reverse = false;
                *unroll = 1;
            }
            K::While { max_iters, .. } => *max_iters = None,
            _ => return false,
        },
    }
    true
}

fn arg_zeros(t: &Tt) -> String {
    let leaf = match t.dt {
        Dt::Bool => "false",
        Dt::I32 | Dt::I64 => "0",
        Dt::F32 | Dt::F64 => "0.0",
    };
    nest(&t.dims, &mut || leaf.to_string())
}

fn nest(dims: &[usize], leaf: &mut dyn FnMut() -> String) -> String {
    match dims.split_first() {
        None => leaf(),
        Some((&n, rest)) => {
            let items: Vec<String> = (0..n).map(|_| nest(rest, leaf)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

// ---------------------------------------------------------------------------
// Values

#[derive(Clone, Copy, Debug)]
enum Val {
    B(bool),
    I(i64),
    F(f64),
}

fn float_text(v: f64, dt: Dt) -> String {
    let s = if dt == Dt::F32 { format!("{:?}", v as f32) } else { format!("{v:?}") };
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

/// The value as a typed source expression.
fn val_text(v: Val, dt: Dt) -> String {
    match v {
        Val::B(b) => b.to_string(),
        Val::I(i) if i < 0 => format!("({i}{})", dt.name()),
        Val::I(i) => format!("{i}{}", dt.name()),
        Val::F(f) if f.is_nan() => format!("(0.0{0} / 0.0{0})", dt.name()),
        Val::F(f) if f.is_infinite() => format!("({}1.0{1} / 0.0{1})", if f < 0.0 { "-" } else { "" }, dt.name()),
        Val::F(f) if f.is_sign_negative() => format!("({}{})", float_text(f, dt), dt.name()),
        Val::F(f) => format!("{}{}", float_text(f, dt), dt.name()),
    }
}

/// The value as an `--arg` leaf.
fn val_arg(v: Val, dt: Dt) -> String {
    match v {
        Val::B(b) => b.to_string(),
        Val::I(i) => i.to_string(),
        Val::F(f) if f.is_nan() => "nan".into(),
        Val::F(f) if f.is_infinite() => if f < 0.0 { "-inf" } else { "inf" }.into(),
        Val::F(f) => float_text(f, dt),
    }
}

// ---------------------------------------------------------------------------
// The generator

/// Generates the program with seed `seed`; `size` is its rough number of
/// expression nodes. Nothing is steered around: every construct the
/// generator knows is generated with every operand it can pick.
pub fn generate(seed: u64, size: usize) -> Generated {
    let mut g = Gen {
        rng: Rng::new(seed),
        env: Vec::new(),
        fns: Vec::new(),
        budget: size,
        next: 0,
        loop_depth: 0,
        fn_depth: 0,
    };
    let prog = g.program();
    Generated { source: prog.render(), args: prog.arg_texts(), prog }
}

#[derive(Clone, Debug)]
struct Var {
    name: String,
    tt: Tt,
    exact: bool,
}

struct Gen {
    rng: Rng,
    env: Vec<Var>,
    fns: Vec<FnDef>,
    budget: usize,
    next: usize,
    loop_depth: u32,
    fn_depth: u32,
}

/// Deepest loop nesting generated.
const MAX_LOOP_DEPTH: u32 = 3;
/// Deepest chain of generated function calls.
const MAX_FN_DEPTH: u32 = 2;

impl Gen {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn rand_dims(&mut self, max_rank: usize) -> Vec<usize> {
        let rank = self.rng.weighted(&[4, 4, 3, 1][..=max_rank.min(3)]);
        (0..rank).map(|_| self.rng.pick(&[1, 2, 2, 3, 3, 4])).collect()
    }

    fn rand_tt(&mut self) -> Tt {
        let dt = self.rng.pick(&[Dt::Bool, Dt::I32, Dt::I32, Dt::I64, Dt::F32, Dt::F32, Dt::F64]);
        let dims = self.rand_dims(2);
        Tt { dt, dims }
    }

    fn scalar_val(&mut self, dt: Dt) -> Val {
        let edge = self.rng.chance(40);
        match dt {
            Dt::Bool => Val::B(self.rng.chance(50)),
            Dt::I32 | Dt::I64 => {
                let v = if edge {
                    let mut e = vec![0, -1, 1, i64::from(i32::MIN), i64::from(i32::MAX), i64::from(i32::MIN) + 1, 2];
                    if dt == Dt::I64 {
                        e.extend([i64::MIN, i64::MAX, i64::from(i32::MAX) + 1]);
                    }
                    self.rng.pick(&e)
                } else if self.rng.chance(80) {
                    self.rng.range(-10, 10)
                } else {
                    self.rng.range(-100_000, 100_000)
                };
                Val::I(v)
            }
            Dt::F32 | Dt::F64 => {
                let v = if edge {
                    let (max, tiny, sub) = if dt == Dt::F32 {
                        (f64::from(f32::MAX), f64::from(f32::MIN_POSITIVE), 1e-40)
                    } else {
                        (f64::MAX, f64::MIN_POSITIVE, 5e-324)
                    };
                    self.rng.pick(&[
                        0.0,
                        -0.0,
                        1.0,
                        -1.0,
                        f64::NAN,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        max,
                        -max,
                        tiny,
                        sub,
                        1e30,
                        0.5,
                    ])
                } else {
                    self.rng.range(-400, 400) as f64 / 8.0
                };
                Val::F(if dt == Dt::F32 { f64::from(v as f32) } else { v })
            }
        }
    }

    /// A literal of `tt`: a scalar, a list, or `full`/`zeros`/`ones`.
    fn literal(&mut self, tt: &Tt) -> Ex {
        if tt.dims.is_empty() {
            let v = self.scalar_val(tt.dt);
            return lit(val_text(v, tt.dt), tt.clone());
        }
        if tt.numel() > 12 || self.rng.chance(25) {
            let text = match self.rng.below(3) {
                0 => format!("zeros({}, {})", tt.dt.name(), tt.dims_text()),
                1 => format!("ones({}, {})", tt.dt.name(), tt.dims_text()),
                _ => {
                    let v = self.scalar_val(tt.dt);
                    format!("full({}, {}, {})", tt.dt.name(), tt.dims_text(), val_text(v, tt.dt))
                }
            };
            return lit(text, tt.clone());
        }
        let dt = tt.dt;
        let text = nest(&tt.dims, &mut || {
            let v = self.scalar_val(dt);
            val_text(v, dt)
        });
        lit(text, tt.clone())
    }

    /// An untyped ("weak") scalar literal that fits `dt`.
    fn weak(&mut self, dt: Dt) -> Option<Ex> {
        let text = match dt {
            Dt::Bool => return None,
            Dt::I32 | Dt::I64 => self.rng.pick(&["0", "1", "2", "(-1)", "3", "7", "(-5)"]).to_string(),
            Dt::F32 | Dt::F64 => self.rng.pick(&["0.0", "1", "0.5", "(-2.5)", "2", "(-0.0)", "1e3"]).to_string(),
        };
        Some(Ex { k: K::Lit { text, simple: false, weak: true }, ty: Ty::T(Tt::scalar(dt)) })
    }

    fn var_of(&mut self, tt: &Tt, exact: bool) -> Option<Ex> {
        let c: Vec<usize> = (0..self.env.len())
            .filter(|&i| self.env[i].tt == *tt && (self.env[i].exact || !exact || !tt.dt.is_float()))
            .collect();
        if c.is_empty() {
            return None;
        }
        // Prefer recent bindings (loop carries, the last lets).
        let i = if self.rng.chance(50) {
            c[c.len() - 1 - self.rng.below(c.len().min(3))]
        } else {
            c[self.rng.below(c.len())]
        };
        Some(Ex { k: K::Var(self.env[i].name.clone()), ty: Ty::T(tt.clone()) })
    }

    fn leaf(&mut self, tt: &Tt, exact: bool) -> Ex {
        if self.rng.chance(70) {
            if let Some(v) = self.var_of(tt, exact) {
                return v;
            }
        }
        if !tt.dims.is_empty() && self.rng.chance(30) {
            // A variable broadcast up to the shape.
            let src = Tt { dt: tt.dt, dims: self.bcast_src(&tt.dims) };
            if src != *tt {
                if let Some(v) = self.var_of(&src, exact) {
                    return call("broadcast", vec![A::E(v), A::Raw(tt.dims_text())], tt);
                }
            }
        }
        self.literal(tt)
    }

    /// A shape that broadcasts to `dims`.
    fn bcast_src(&mut self, dims: &[usize]) -> Vec<usize> {
        let drop = self.rng.below(dims.len() + 1);
        dims[drop..].iter().map(|&d| if self.rng.chance(30) { 1 } else { d }).collect()
    }

    /// An expression of a type that broadcasts to `dt[dims]`.
    fn expr_bc(&mut self, dt: Dt, dims: &[usize], d: u32, exact: bool) -> Ex {
        let dims = self.bcast_src(dims);
        self.expr(&Tt { dt, dims }, d, exact)
    }

    /// An expression of type `tt`.
    fn expr(&mut self, tt: &Tt, depth: u32, exact: bool) -> Ex {
        if depth == 0 || self.budget == 0 {
            return self.leaf(tt, exact);
        }
        self.budget -= 1;
        let d = depth - 1;
        let num = tt.dt != Dt::Bool;
        let fl = tt.dt.is_float();
        let loops = if self.loop_depth < MAX_LOOP_DEPTH { 3 } else { 0 };
        // Weights of the productions below, by index.
        let w: [u32; 23] = [
            4,                                                // 0 leaf
            if num { 6 } else { 0 },                          // 1 arithmetic
            if num { 1 } else { 2 },                          // 2 negation / not
            if num { 1 } else { 0 },                          // 3 abs, relu
            if fl && !exact { 2 } else { 0 },                 // 4 transcendental
            if num { 2 } else { 0 },                          // 5 maximum, minimum
            2,                                                // 6 where
            2,                                                // 7 cast
            2,                                                // 8 reduction
            4,                                                // 9 indexing
            2,                                                // 10 .at[]
            2,                                                // 11 if
            2,                                                // 12 block
            if self.fn_depth < MAX_FN_DEPTH { 2 } else { 0 }, // 13 call
            loops,                                            // 14 fori
            loops,                                            // 15 while
            loops,                                            // 16 scan
            if num { 1 } else { 0 },                          // 17 matmul
            2,                                                // 18 shape ops
            if num { 0 } else { 6 },                          // 19 comparison
            if num { 0 } else { 3 },                          // 20 logic
            1,                                                // 21 builders: iota, full, shape
            if fl && !exact { 3 } else { 0 },                 // 22 float chains on edge values
        ];
        for _ in 0..16 {
            let e = match self.rng.weighted(&w) {
                0 => Some(self.leaf(tt, exact)),
                1 => self.arith(tt, d, exact),
                2 => {
                    let a = self.expr(tt, d, exact);
                    Some(Ex { k: K::Un(if num { "-" } else { "!" }, Box::new(a)), ty: Ty::T(tt.clone()) })
                }
                3 => {
                    let a = self.expr(tt, d, exact);
                    Some(call(if self.rng.chance(50) { "abs" } else { "relu" }, vec![A::E(a)], tt))
                }
                4 => {
                    // Every float-only unary op of the op table.
                    let fs: Vec<&'static str> =
                        UnaryOp::ALL.iter().filter(|op| op.accepts() == Accepts::Float).map(|op| op.as_str()).collect();
                    let f = self.rng.pick(&fs);
                    let a = self.expr(tt, d, exact);
                    Some(call(f, vec![A::E(a)], tt))
                }
                5 => {
                    let a = self.expr(tt, d, exact);
                    let b = self.expr_bc(tt.dt, &tt.dims, d, exact);
                    let (a, b) = if self.rng.chance(50) { (a, b) } else { (b, a) };
                    Some(call(if self.rng.chance(50) { "maximum" } else { "minimum" }, vec![A::E(a), A::E(b)], tt))
                }
                6 => {
                    let c = self.expr_bc(Dt::Bool, &tt.dims, d, true);
                    let a = self.expr(tt, d, exact);
                    let b = self.expr_bc(tt.dt, &tt.dims, d, exact);
                    let (a, b) = if self.rng.chance(50) { (a, b) } else { (b, a) };
                    Some(call("where", vec![A::E(c), A::E(a), A::E(b)], tt))
                }
                7 => {
                    let from = self.rng.pick(&ALL_DT);
                    if from == tt.dt {
                        None
                    } else {
                        let a = self.expr(&Tt { dt: from, dims: tt.dims.clone() }, d, exact || !fl);
                        Some(Ex { k: K::Cast(Box::new(a), tt.dt), ty: Ty::T(tt.clone()) })
                    }
                }
                8 => self.reduction(tt, d, exact),
                9 => self.index(tt, d, exact),
                10 => self.at(tt, d, exact),
                11 => {
                    let c = self.expr(&Tt::scalar(Dt::Bool), d, true);
                    let a = self.block(tt, d, exact, 1);
                    let b = self.block(tt, d, exact, 1);
                    Some(Ex { k: K::If(Box::new(c), Box::new(a), Box::new(b)), ty: Ty::T(tt.clone()) })
                }
                12 => {
                    let b = self.block(tt, d, exact, 3);
                    Some(Ex { k: K::Blk(Box::new(b)), ty: Ty::T(tt.clone()) })
                }
                13 => Some(self.fn_call(tt, d, exact)),
                14 => Some(self.fori(tt, d, exact)),
                15 => Some(self.while_(tt, d, exact)),
                16 => Some(self.scan(tt, d, exact)),
                17 => self.matmul(tt, d, exact),
                18 => self.shape_op(tt, d, exact),
                19 => Some(self.comparison(tt, d)),
                20 => {
                    let a = self.expr(tt, d, true);
                    let b = self.expr_bc(Dt::Bool, &tt.dims, d, true);
                    let op = if self.rng.chance(50) { "&&" } else { "||" };
                    Some(bin(op, a, b, tt))
                }
                21 => self.builder(tt, d, exact),
                _ => Some(self.float_chain(tt, d)),
            };
            if let Some(e) = e {
                return e;
            }
        }
        self.leaf(tt, exact)
    }

    /// A float expression of a shape XLA's simplifier likes to rewrite or
    /// LLVM to fuse (`log(a ** b)`, `exp(a) * exp(b)`, `sqrt(a * a)`,
    /// `(a / b) / c`, `a * b + c`, ...), on operands that are often edge
    /// values (0, -0, subnormals, ±huge, ±inf, NaN).
    fn float_chain(&mut self, tt: &Tt, d: u32) -> Ex {
        let a = self.expr(tt, d, false);
        let mut b = self.chain_operand(tt, d, false);
        let c = self.chain_operand(tt, d, false);
        let f = |name: &str, x: Ex| call(name, vec![A::E(x)], tt);
        match self.rng.below(13) {
            0 => f("log", bin("**", a, b, tt)),
            1 => f("log", f("exp", a)),
            2 => bin("*", f("exp", a), f("exp", b), tt),
            3 => bin("/", a, f("exp", b), tt),
            4 => bin("**", f("exp", a), b, tt),
            5 => {
                let a2 = a.clone();
                f("sqrt", bin("*", a, a2, tt))
            }
            6 => bin("/", bin("/", a, b, tt), c, tt),
            7 => bin("/", a, bin("/", b, c, tt), tt),
            8 => bin("+", bin("*", a, b, tt), c, tt),
            9 => f("log", f("sqrt", a)),
            10 => {
                let a2 = a.clone();
                bin("*", f("sqrt", a), f("sqrt", a2), tt)
            }
            // Cancellations on exact operands (an ulp of a transcendental
            // function would be amplified past any tolerance).
            11 => {
                let a = self.expr(tt, d, true);
                b = self.chain_operand(tt, d, true);
                let b2 = b.clone();
                bin("-", bin("+", a, b, tt), b2, tt)
            }
            _ => {
                let a = self.expr(tt, d, true);
                b = self.chain_operand(tt, d, true);
                let (a2, b2) = (a.clone(), b.clone());
                bin("-", bin("*", a, b, tt), bin("*", a2, b2, tt), tt)
            }
        }
    }

    /// An operand of a float chain: an edge scalar, or an expression that
    /// broadcasts to `tt`.
    fn chain_operand(&mut self, tt: &Tt, d: u32, exact: bool) -> Ex {
        if !self.rng.chance(40) {
            return self.expr_bc(tt.dt, &tt.dims, d, exact);
        }
        let sfx = if tt.dt == Dt::F32 { "f32" } else { "f64" };
        let tiny = if tt.dt == Dt::F32 { "1e-40" } else { "5e-324" };
        let huge = if tt.dt == Dt::F32 { "3e38" } else { "1e308" };
        let text = match self.rng.below(11) {
            0 => format!("0.0{sfx}"),
            1 => format!("(-0.0{sfx})"),
            2 => format!("1e30{sfx}"),
            3 => format!("(-1e30{sfx})"),
            4 => format!("{huge}{sfx}"),
            5 => format!("(-{huge}{sfx})"),
            6 => format!("1e-30{sfx}"),
            7 => format!("{tiny}{sfx}"),
            8 => format!("(0.0{sfx} / 0.0{sfx})"),
            9 => format!("(1.0{sfx} / 0.0{sfx})"),
            _ => format!("(-1.0{sfx} / 0.0{sfx})"),
        };
        lit(text, Tt::scalar(tt.dt))
    }

    fn arith(&mut self, tt: &Tt, d: u32, exact: bool) -> Option<Ex> {
        let op = self.rng.pick(&["+", "+", "-", "*", "*", "/", "%", "**"]);
        if op == "**" && tt.dt.is_float() && exact {
            return None;
        }
        // Float `%` is exact but jumps at every multiple of the divisor: an
        // operand one ulp apart (a transcendental function, a reordered sum)
        // moves the result by up to the divisor, so its operands are exact.
        let exact = exact || (op == "%" && tt.dt.is_float());
        let a = self.expr(tt, d, exact);
        let b = if self.rng.chance(20) && !matches!(a.k, K::Lit { .. }) {
            self.weak(tt.dt)?
        } else {
            self.expr_bc(tt.dt, &tt.dims, d, exact)
        };
        let weak_b = is_weak(&b);
        let (a, b) = if !weak_b && op != "**" && self.rng.chance(30) { (b, a) } else { (a, b) };
        Some(bin(op, a, b, tt))
    }

    fn comparison(&mut self, tt: &Tt, d: u32) -> Ex {
        let dt = self.rng.pick(&ALL_DT);
        let ops: &[&'static str] = if dt == Dt::Bool { &["==", "!="] } else { &["==", "!=", "<", "<=", ">", ">="] };
        let op = self.rng.pick(ops);
        let a = self.expr(&Tt { dt, dims: tt.dims.clone() }, d, true);
        let b = match self.weak(dt) {
            Some(w) if self.rng.chance(20) && !matches!(a.k, K::Lit { .. }) => w,
            _ => self.expr_bc(dt, &tt.dims, d, true),
        };
        bin(op, a, b, tt)
    }

    fn reduction(&mut self, tt: &Tt, d: u32, exact: bool) -> Option<Ex> {
        let fl = tt.dt.is_float();
        // (op, source dtype)
        let (op, src) = match self.rng.below(5) {
            0 if tt.dt != Dt::Bool && (!fl || !exact) => ("sum", tt.dt),
            1 if tt.dt == Dt::I32 => ("sum", Dt::Bool),
            2 if tt.dt != Dt::Bool => (if self.rng.chance(50) { "max" } else { "min" }, tt.dt),
            3 if fl && !exact => {
                let src =
                    if tt.dt == Dt::F32 { self.rng.pick(&[Dt::F32, Dt::I32, Dt::Bool, Dt::I64]) } else { Dt::F64 };
                ("mean", src)
            }
            4 if tt.dt == Dt::I32 => ("argmax", self.rng.pick(&NUM_DT)),
            _ => return None,
        };
        if tt.dims.len() < 3 && (!tt.dims.is_empty() || self.rng.chance(50)) {
            let k = self.rng.below(tt.dims.len() + 1);
            let n = self.rng.pick(&[1, 2, 3, 4]);
            let mut dims = tt.dims.clone();
            dims.insert(k, n);
            let rank = dims.len() as i64;
            let x = self.expr(&Tt { dt: src, dims }, d, true);
            let axis = if self.rng.chance(25) { k as i64 - rank } else { k as i64 };
            Some(call(op, vec![A::E(x), A::Raw(format!("axis: {axis}"))], tt))
        } else if tt.dims.is_empty() {
            let dims = self.rand_dims(2).into_iter().collect::<Vec<_>>();
            let x = self.expr(&Tt { dt: src, dims }, d, true);
            Some(call(op, vec![A::E(x)], tt))
        } else {
            None
        }
    }

    /// An integer scalar index: in range, out of range, negative, extreme.
    fn index_expr(&mut self, d: u32) -> Ex {
        let dt = if self.rng.chance(75) { Dt::I32 } else { Dt::I64 };
        let e = self.expr(&Tt::scalar(dt), d.min(2), true);
        if is_literal(&e) {
            // A (negated) literal would be a static index, range-checked at compile time.
            let t = Tt::scalar(dt);
            return bin("+", e, lit(zeros_text(&t), t.clone()), &t);
        }
        e
    }

    fn index(&mut self, tt: &Tt, d: u32, exact: bool) -> Option<Ex> {
        let r = tt.dims.len();
        let n = self.rng.pick(&[1, 2, 3, 4]);
        let (src, ix): (Vec<usize>, Vec<Ix>) = match self.rng.below(6) {
            0 if r < 3 => {
                let k = self.rng.range(-(n as i64), n as i64 - 1);
                ([&[n][..], &tt.dims].concat(), vec![Ix::Raw(k.to_string())])
            }
            1 if r < 3 => ([&[n][..], &tt.dims].concat(), vec![Ix::Dyn(self.index_expr(d))]),
            2 if r < 2 => {
                let m = self.rng.pick(&[1, 2, 3]);
                let second = if self.rng.chance(50) {
                    Ix::Dyn(self.index_expr(d))
                } else {
                    Ix::Raw(self.rng.range(-(m as i64), m as i64 - 1).to_string())
                };
                ([&[n, m][..], &tt.dims].concat(), vec![Ix::Dyn(self.index_expr(d)), second])
            }
            3 if r >= 1 => {
                let a = tt.dims[0];
                let (b, s) = match self.rng.below(4) {
                    0 => (a, "::-1".to_string()),
                    1 => {
                        let b = 2 * a - 1 + self.rng.below(2);
                        let s = self.rng.below(b - (2 * a - 1) + 1);
                        (b, format!("{s}:{}:2", s + 2 * a - 1))
                    }
                    2 => {
                        let b = a + self.rng.below(3);
                        let s = b - a;
                        (b, format!("{s}:"))
                    }
                    _ => {
                        let b = a + self.rng.below(3);
                        let s = self.rng.below(b - a + 1);
                        if self.rng.chance(30) {
                            (b, format!("{}:{}", s as i64 - b as i64, s + a))
                        } else {
                            (b, format!("{s}:{}", s + a))
                        }
                    }
                };
                let mut src = tt.dims.clone();
                src[0] = b;
                if r < 3 && self.rng.chance(40) {
                    // A dynamic index, then the slice.
                    ([&[n][..], &src].concat(), vec![Ix::Dyn(self.index_expr(d)), Ix::Raw(s)])
                } else {
                    (src, vec![Ix::Raw(s)])
                }
            }
            4 if (1..3).contains(&r) => {
                let m = self.rng.pick(&[1, 2, 3]);
                let k = self.rng.range(-(m as i64), m as i64 - 1);
                let mut src = tt.dims.clone();
                src.insert(1, m);
                (src, vec![Ix::Raw(":".into()), Ix::Raw(k.to_string())])
            }
            _ => return None,
        };
        let x = self.expr(&Tt { dt: tt.dt, dims: src }, d, exact);
        Some(Ex { k: K::Index(Box::new(x), ix), ty: Ty::T(tt.clone()) })
    }

    fn at(&mut self, tt: &Tt, d: u32, exact: bool) -> Option<Ex> {
        if tt.dims.is_empty() {
            return None;
        }
        let add = tt.dt != Dt::Bool && self.rng.chance(40);
        let base = self.expr(tt, d, exact);
        let k = 1 + self.rng.below(tt.dims.len().min(2));
        let idx: Vec<Ex> = (0..k)
            .map(|a| {
                if self.rng.chance(30) {
                    let n = tt.dims[a] as i64;
                    let v = self.rng.range(-n, n - 1);
                    lit(if v < 0 { format!("({v})") } else { v.to_string() }, Tt::scalar(Dt::I32))
                } else {
                    self.index_expr(d)
                }
            })
            .collect();
        let slot = &tt.dims[k..];
        let v = match self.weak(tt.dt) {
            Some(w) if self.rng.chance(20) => w,
            _ => self.expr_bc(tt.dt, slot, d, exact),
        };
        Some(Ex { k: K::At { base: Box::new(base), idx, add, v: Box::new(v) }, ty: Ty::T(tt.clone()) })
    }

    fn matmul(&mut self, tt: &Tt, d: u32, exact: bool) -> Option<Ex> {
        if tt.dt.is_float() && exact {
            return None;
        }
        let k = self.rng.pick(&[1, 2, 3]);
        let (a, b) = match tt.dims[..] {
            [] => (vec![k], vec![k]),
            [m] => {
                if self.rng.chance(50) {
                    (vec![m, k], vec![k])
                } else {
                    (vec![k], vec![k, m])
                }
            }
            [m, n] => (vec![m, k], vec![k, n]),
            _ => return None,
        };
        let a = self.expr(&Tt { dt: tt.dt, dims: a }, d, exact);
        let b = self.expr(&Tt { dt: tt.dt, dims: b }, d, exact);
        Some(bin("@", a, b, tt))
    }

    fn shape_op(&mut self, tt: &Tt, d: u32, exact: bool) -> Option<Ex> {
        let r = tt.dims.len();
        match self.rng.below(5) {
            0 if r >= 1 && tt.dims[0] >= 2 => {
                let a = 1 + self.rng.below(tt.dims[0] - 1);
                let mut da = tt.dims.clone();
                da[0] = a;
                let mut db = tt.dims.clone();
                db[0] = tt.dims[0] - a;
                let x = self.expr(&Tt { dt: tt.dt, dims: da }, d, exact);
                let y = self.expr(&Tt { dt: tt.dt, dims: db }, d, exact);
                Some(call("concat", vec![A::List(vec![x, y]), A::Raw("axis: 0".into())], tt))
            }
            1 if (1..=3).contains(&r) && tt.dims[0] <= 3 => {
                let rest = Tt { dt: tt.dt, dims: tt.dims[1..].to_vec() };
                let xs: Vec<Ex> = (0..tt.dims[0]).map(|_| self.expr(&rest, d, exact)).collect();
                Some(call("stack", vec![A::List(xs)], tt))
            }
            2 if r >= 1 => {
                let n = tt.numel();
                let src = if r == 1 && n.is_multiple_of(2) && n > 2 {
                    vec![2, n / 2]
                } else if self.rng.chance(50) {
                    vec![n]
                } else {
                    vec![1, n]
                };
                let x = self.expr(&Tt { dt: tt.dt, dims: src }, d, exact);
                Some(call("reshape", vec![A::E(x), A::Raw(tt.dims_text())], tt))
            }
            3 if r == 2 => {
                let x = self.expr(&Tt::new(tt.dt, &[tt.dims[1], tt.dims[0]]), d, exact);
                Some(call("transpose", vec![A::E(x)], tt))
            }
            3 if r == 3 => {
                let x = self.expr(&Tt::new(tt.dt, &[tt.dims[2], tt.dims[0], tt.dims[1]]), d, exact);
                Some(call("transpose", vec![A::E(x), A::Raw("[1, 2, 0]".into())], tt))
            }
            4 if r >= 1 => {
                let src = self.bcast_src(&tt.dims);
                let x = self.expr(&Tt { dt: tt.dt, dims: src }, d, exact);
                Some(call("broadcast", vec![A::E(x), A::Raw(tt.dims_text())], tt))
            }
            _ => None,
        }
    }

    fn builder(&mut self, tt: &Tt, d: u32, exact: bool) -> Option<Ex> {
        match self.rng.below(3) {
            0 if tt.dims.len() == 1 && tt.dt != Dt::Bool => {
                Some(call("iota", vec![A::Raw(tt.dt.name().into()), A::Raw(tt.dims[0].to_string())], tt))
            }
            1 => {
                let v = match self.weak(tt.dt) {
                    Some(w) if self.rng.chance(30) => w,
                    _ => self.expr_bc(tt.dt, &tt.dims, d, exact),
                };
                Some(call("full", vec![A::Raw(tt.dt.name().into()), A::Raw(tt.dims_text()), A::E(v)], tt))
            }
            2 if tt.dt == Dt::I32 && tt.dims.len() == 1 && (1..=3).contains(&tt.dims[0]) => {
                let dims: Vec<usize> = (0..tt.dims[0]).map(|_| self.rng.pick(&[1, 2, 3])).collect();
                let dt = self.rng.pick(&ALL_DT);
                let x = self.expr(&Tt { dt, dims }, d, true);
                Some(call("shape", vec![A::E(x)], tt))
            }
            _ => None,
        }
    }

    /// `{ let ...; e }` with up to `max_lets` statements.
    fn block(&mut self, tt: &Tt, d: u32, exact: bool, max_lets: usize) -> Blk {
        let mark = self.env.len();
        let n = self.rng.below(max_lets + 1);
        let mut lets = Vec::new();
        for _ in 0..n {
            let t = if self.rng.chance(40) { tt.clone() } else { self.rand_tt() };
            let ex = exact || self.rng.chance(50);
            let e = self.expr(&t, d, ex);
            let name = self.fresh("v");
            lets.push((Pat::Name(name.clone()), e));
            self.env.push(Var { name, tt: t, exact: ex });
        }
        let ret = self.expr(tt, d, exact);
        self.env.truncate(mark);
        Blk { lets, ret }
    }

    fn fn_call(&mut self, tt: &Tt, d: u32, exact: bool) -> Ex {
        let reuse: Vec<usize> = (0..self.fns.len())
            .filter(|&i| self.fns[i].ret == Ty::T(tt.clone()) && (self.fns[i].exact || !exact))
            .collect();
        let fi = if !reuse.is_empty() && self.rng.chance(50) {
            reuse[self.rng.below(reuse.len())]
        } else {
            // A new function; its body sees only its parameters.
            let np = 1 + self.rng.below(3);
            let params: Vec<(String, Tt)> = (0..np)
                .map(|_| {
                    let t = if self.rng.chance(40) { tt.clone() } else { self.rand_tt() };
                    (self.fresh("p"), t)
                })
                .collect();
            let fexact = exact || self.rng.chance(50);
            let saved = std::mem::take(&mut self.env);
            let saved_loops = self.loop_depth;
            self.env = params.iter().map(|(n, t)| Var { name: n.clone(), tt: t.clone(), exact: true }).collect();
            self.fn_depth += 1;
            let body = self.block(tt, d.max(1), fexact, 3);
            self.fn_depth -= 1;
            self.env = saved;
            self.loop_depth = saved_loops;
            let name = self.fresh("f");
            self.fns.push(FnDef {
                name,
                params,
                ret: Ty::T(tt.clone()),
                body: Ex { k: K::Blk(Box::new(body)), ty: Ty::T(tt.clone()) },
                exact: fexact,
            });
            self.fns.len() - 1
        };
        let f = self.fns[fi].clone();
        let args: Vec<A> = f
            .params
            .iter()
            .map(|(_, t)| match self.weak(t.dt) {
                Some(w) if t.dims.is_empty() && self.rng.chance(15) => A::E(w),
                _ => A::E(self.expr(t, d, true)),
            })
            .collect();
        Ex { k: K::Call(f.name, args), ty: Ty::T(tt.clone()) }
    }

    /// The carry components of a loop whose result includes `tt`: the types,
    /// their exactness, and where `tt` is.
    fn carry(&mut self, tt: &Tt, exact: bool) -> (Vec<(Tt, bool)>, usize) {
        let extra = self.rng.below(3);
        let mut comps = vec![(tt.clone(), exact)];
        for _ in 0..extra {
            let t = self.rand_tt();
            comps.push((t, self.rng.chance(50)));
        }
        let at = self.rng.below(comps.len());
        comps.swap(0, at);
        (comps, at)
    }

    /// Names for a carry: the pattern and the bound variables.
    fn carry_pat(&mut self, comps: &[(Tt, bool)]) -> (Pat, Vec<Var>) {
        let vars: Vec<Var> =
            comps.iter().map(|(t, e)| Var { name: self.fresh("c"), tt: t.clone(), exact: *e }).collect();
        let pat = if vars.len() == 1 {
            Pat::Name(vars[0].name.clone())
        } else {
            Pat::Tup(vars.iter().map(|v| Pat::Name(v.name.clone())).collect())
        };
        (pat, vars)
    }

    fn carry_value(&mut self, comps: &[(Tt, bool)], d: u32) -> Ex {
        let es: Vec<Ex> = comps.iter().map(|(t, e)| self.expr(t, d, *e)).collect();
        tuple_or_single(es)
    }

    /// The loop body: statements, then the new carry (and `y` for scan).
    fn loop_body(&mut self, comps: &[(Tt, bool)], d: u32, y: Option<&(Tt, bool)>) -> Blk {
        let mark = self.env.len();
        let mut lets = Vec::new();
        for _ in 0..self.rng.below(3) {
            let t = self.rand_tt();
            let ex = self.rng.chance(50);
            let e = self.expr(&t, d, ex);
            let name = self.fresh("v");
            lets.push((Pat::Name(name.clone()), e));
            self.env.push(Var { name, tt: t, exact: ex });
        }
        let carry = self.carry_value(comps, d);
        let ret = match y {
            None => carry,
            Some((t, e)) => {
                let y = self.expr(t, d, *e);
                let ty = Ty::Tup(vec![carry.ty.clone(), y.ty.clone()]);
                Ex { k: K::Tuple(vec![carry, y]), ty }
            }
        };
        self.env.truncate(mark);
        Blk { lets, ret }
    }

    /// `{ let pat = loop; result }` where the result reads the loop's outputs.
    fn loop_result(&mut self, tt: &Tt, exact: bool, pat: Pat, vars: Vec<Var>, target: &str, lp: Ex) -> Ex {
        let mark = self.env.len();
        self.env.extend(vars);
        let ret = if self.rng.chance(75) {
            Ex { k: K::Var(target.to_string()), ty: Ty::T(tt.clone()) }
        } else {
            self.expr(tt, 1, exact)
        };
        self.env.truncate(mark);
        Ex { k: K::Blk(Box::new(Blk { lets: vec![(pat, lp)], ret })), ty: Ty::T(tt.clone()) }
    }

    fn fori(&mut self, tt: &Tt, d: u32, exact: bool) -> Ex {
        let (comps, at) = self.carry(tt, exact);
        let init = self.carry_value(&comps, d);
        let bd = if self.rng.chance(70) { Dt::I32 } else { Dt::I64 };
        let lo_v = self.rng.pick(&[0i64, 0, 1, -2, 3]);
        let n = self.rng.pick(&[-1i64, 0, 1, 2, 3, 3, 4, 5]);
        let lo = lit(val_text(Val::I(lo_v), bd), Tt::scalar(bd));
        let hi_lit = lit(val_text(Val::I(lo_v + n), bd), Tt::scalar(bd));
        let hi = if self.rng.chance(25) {
            // A runtime bound, capped.
            let e = self.expr(&Tt::scalar(bd), d.min(2), true);
            call("minimum", vec![A::E(e), A::E(hi_lit)], &Tt::scalar(bd))
        } else {
            hi_lit
        };
        self.loop_depth += 1;
        let i = self.fresh("i");
        let mark = self.env.len();
        self.env.push(Var { name: i.clone(), tt: Tt::scalar(bd), exact: true });
        let (pat, vars) = self.carry_pat(&comps);
        self.env.extend(vars);
        let body = self.loop_body(&comps, d, None);
        self.env.truncate(mark);
        self.loop_depth -= 1;
        let unroll = if self.rng.chance(15) { 2 } else { 1 };
        let ty = init.ty.clone();
        let lp = Ex {
            k: K::Fori {
                lo: Box::new(lo),
                hi: Box::new(hi),
                i,
                pat,
                body: Box::new(body),
                init: Box::new(init),
                unroll,
            },
            ty,
        };
        let (opat, ovars) = self.carry_pat(&comps);
        let target = ovars[at].name.clone();
        self.loop_result(tt, exact, opat, ovars, &target, lp)
    }

    fn while_(&mut self, tt: &Tt, d: u32, exact: bool) -> Ex {
        let (mut comps, mut at) = self.carry(tt, exact);
        // The counter that bounds the loop comes first.
        comps.insert(0, (Tt::scalar(Dt::I32), true));
        at += 1;
        let init_rest: Vec<Ex> = comps[1..].iter().map(|(t, e)| self.expr(t, d, *e)).collect();
        let k0 = self.rng.pick(&[0i64, 0, -1, 2]);
        let mut init = vec![lit(val_text(Val::I(k0), Dt::I32), Tt::scalar(Dt::I32))];
        init.extend(init_rest);
        let init = tuple_or_single(init);
        self.loop_depth += 1;
        let mark = self.env.len();
        let (pat, vars) = self.carry_pat(&comps);
        let counter = vars[0].name.clone();
        self.env.extend(vars);
        let max_iters = if self.rng.chance(25) { Some(self.rng.pick(&[0u32, 1, 2, 4])) } else { None };
        let bound = k0 + self.rng.pick(&[0i64, 1, 2, 3, 4]);
        let cv = Ex { k: K::Var(counter.clone()), ty: Ty::T(Tt::scalar(Dt::I32)) };
        let mut cond =
            bin("<", cv.clone(), lit(val_text(Val::I(bound), Dt::I32), Tt::scalar(Dt::I32)), &Tt::scalar(Dt::Bool));
        if self.rng.chance(40) || max_iters.is_some() {
            let extra = self.expr(&Tt::scalar(Dt::Bool), d.min(2), true);
            cond = if max_iters.is_some() && self.rng.chance(50) {
                extra
            } else {
                bin(if self.rng.chance(70) { "&&" } else { "||" }, cond, extra, &Tt::scalar(Dt::Bool))
            };
            if let K::Bin("||", ..) = cond.k {
                if max_iters.is_none() {
                    // `||` could keep it running: keep the counter in charge.
                    cond = bin(
                        "&&",
                        cond,
                        bin(
                            "<",
                            cv.clone(),
                            lit(val_text(Val::I(bound + 2), Dt::I32), Tt::scalar(Dt::I32)),
                            &Tt::scalar(Dt::Bool),
                        ),
                        &Tt::scalar(Dt::Bool),
                    );
                }
            }
        }
        let mut body = self.loop_body(&comps[1..], d, None);
        // Prepend the counter's step to the new carry.
        let step = bin("+", cv, lit("1i32", Tt::scalar(Dt::I32)), &Tt::scalar(Dt::I32));
        let rest = std::mem::replace(&mut body.ret, step.clone());
        let mut items = vec![step];
        match rest.k {
            K::Tuple(v) if comps.len() > 2 => items.extend(v),
            _ => items.push(rest),
        }
        body.ret = tuple_or_single(items);
        self.env.truncate(mark);
        self.loop_depth -= 1;
        let ty = init.ty.clone();
        let lp =
            Ex { k: K::While { pat, cond: Box::new(cond), body: Box::new(body), init: Box::new(init), max_iters }, ty };
        let (opat, ovars) = self.carry_pat(&comps);
        let target = ovars[at].name.clone();
        self.loop_result(tt, exact, opat, ovars, &target, lp)
    }

    fn scan(&mut self, tt: &Tt, d: u32, exact: bool) -> Ex {
        // The result is either a carry component or the stacked ys.
        let from_ys = !tt.dims.is_empty() && self.rng.chance(50);
        let (len, y) = if from_ys {
            (tt.dims[0], (Tt { dt: tt.dt, dims: tt.dims[1..].to_vec() }, exact))
        } else {
            let t = self.rand_tt();
            let t = Tt { dt: t.dt, dims: t.dims.into_iter().take(1).collect() };
            (self.rng.pick(&[1, 2, 3, 4]), (t, self.rng.chance(50)))
        };
        let (comps, at) = if from_ys {
            let t = self.rand_tt();
            let e = self.rng.chance(50);
            let (c, _) = self.carry(&t, e);
            (c, usize::MAX)
        } else {
            self.carry(tt, exact)
        };
        let init = self.carry_value(&comps, d);
        // The xs: none (length:), one tensor, or a pair.
        let nx = self.rng.pick(&[0usize, 1, 1, 2]);
        let xs_t: Vec<(Tt, bool)> = (0..nx)
            .map(|_| {
                let t = self.rand_tt();
                let dims: Vec<usize> = std::iter::once(len).chain(t.dims.into_iter().take(1)).collect();
                (Tt { dt: t.dt, dims }, self.rng.chance(50))
            })
            .collect();
        let xs_e: Vec<Ex> = xs_t.iter().map(|(t, e)| self.expr(t, d, *e)).collect();
        self.loop_depth += 1;
        let mark = self.env.len();
        let (cpat, cvars) = self.carry_pat(&comps);
        self.env.extend(cvars);
        let xvars: Vec<Var> = xs_t
            .iter()
            .map(|(t, e)| Var { name: self.fresh("x"), tt: Tt { dt: t.dt, dims: t.dims[1..].to_vec() }, exact: *e })
            .collect();
        let xpat = match xvars.len() {
            0 => Pat::Wild,
            1 => Pat::Name(xvars[0].name.clone()),
            _ => Pat::Tup(xvars.iter().map(|v| Pat::Name(v.name.clone())).collect()),
        };
        self.env.extend(xvars);
        let body = self.loop_body(&comps, d, Some(&y));
        self.env.truncate(mark);
        self.loop_depth -= 1;
        let xs = match xs_e.len() {
            0 => None,
            1 => xs_e.into_iter().next().map(Box::new),
            _ => {
                let ty = Ty::Tup(xs_e.iter().map(|e| e.ty.clone()).collect());
                Some(Box::new(Ex { k: K::Tuple(xs_e), ty }))
            }
        };
        let length = if xs.is_none() || self.rng.chance(20) { Some(len) } else { None };
        let reverse = self.rng.chance(40);
        let unroll = if self.rng.chance(15) { 3 } else { 1 };
        let ys_t = Tt { dt: y.0.dt, dims: std::iter::once(len).chain(y.0.dims.iter().copied()).collect() };
        let ty = Ty::Tup(vec![init.ty.clone(), Ty::T(ys_t.clone())]);
        let lp = Ex {
            k: K::Scan { cpat, xpat, body: Box::new(body), init: Box::new(init), xs, length, reverse, unroll },
            ty,
        };
        let (ocpat, mut ovars) = self.carry_pat(&comps);
        let ys = Var { name: self.fresh("ys"), tt: ys_t, exact: y.1 };
        let target = if from_ys { ys.name.clone() } else { ovars[at].name.clone() };
        let opat = Pat::Tup(vec![ocpat, Pat::Name(ys.name.clone())]);
        ovars.push(ys);
        self.loop_result(tt, exact, opat, ovars, &target, lp)
    }

    fn program(&mut self) -> Prog {
        // main's parameters and their values.
        let np = self.rng.below(4);
        let mut args = Vec::new();
        for _ in 0..np {
            let tt = self.rand_tt();
            let name = self.fresh("a");
            let dt = tt.dt;
            let text = nest(&tt.dims, &mut || {
                let v = self.scalar_val(dt);
                val_arg(v, dt)
            });
            self.env.push(Var { name: name.clone(), tt: tt.clone(), exact: true });
            args.push(Arg { name, tt, text, simple: false });
        }
        let nr = 1 + self.rng.below(3);
        let results: Vec<(Tt, bool)> = (0..nr).map(|_| (self.rand_tt(), self.rng.chance(50))).collect();
        let mut lets = Vec::new();
        for _ in 0..2 + self.rng.below(4) {
            let t = self.rand_tt();
            let ex = self.rng.chance(50);
            let e = self.expr(&t, 4, ex);
            let name = self.fresh("v");
            lets.push((Pat::Name(name.clone()), e));
            self.env.push(Var { name, tt: t, exact: ex });
        }
        let outs: Vec<Ex> = results.iter().map(|(t, e)| self.expr(t, 3, *e)).collect();
        let ret = tuple_or_single(outs);
        let ty = ret.ty.clone();
        let main = FnDef {
            name: "main".into(),
            params: args.iter().map(|a| (a.name.clone(), a.tt.clone())).collect(),
            ret: ty.clone(),
            body: Ex { k: K::Blk(Box::new(Blk { lets, ret })), ty },
            exact: false,
        };
        Prog { fns: std::mem::take(&mut self.fns), main, args }
    }
}

fn call(f: &str, args: Vec<A>, tt: &Tt) -> Ex {
    Ex { k: K::Call(f.to_string(), args), ty: Ty::T(tt.clone()) }
}

fn bin(op: &'static str, a: Ex, b: Ex, tt: &Tt) -> Ex {
    Ex { k: K::Bin(op, Box::new(a), Box::new(b)), ty: Ty::T(tt.clone()) }
}

fn tuple_or_single(mut es: Vec<Ex>) -> Ex {
    if es.len() == 1 {
        return es.remove(0);
    }
    let ty = Ty::Tup(es.iter().map(|e| e.ty.clone()).collect());
    Ex { k: K::Tuple(es), ty }
}
