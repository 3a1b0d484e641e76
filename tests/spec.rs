//! Spec programs: every `tests/spec/**/*.lb` file, stamped out into one test
//! per file per tier.
//!
//! Header lines of a spec file:
//! - `# expect: <value>`: the result as `loopvm run` prints it on the
//!   interpreter; every other tier must agree with the interpreter within
//!   the tolerance of `loopvm diff` (exact for integers and bools);
//! - `# args: name=value ...`: arguments of `main` (values without spaces
//!   inside brackets are split on ` name=`);
//! - `# error: <text>` (repeatable) and `# at: LINE[:COL]`: a compile error
//!   whose message contains each text, located there;
//! - `# tiers: interp ...`: restrict the tiers (default: all built tiers);
//! - `# fallback: why`: some region is expected to run in the interpreter on
//!   the xla tier (e.g. it prints); without it a fallback fails;
//! - `# jit: N`: the loops Cranelift runs natively on the `jit` tier
//!   (threshold 0), and `# auto: xla=M jit=K`: the loops XLA and Cranelift
//!   run under `auto`. Every value spec pins both; a tier that compiles
//!   nothing (`# jit: 0`, `# auto: xla=0 jit=0`, `# xla: none`) would only
//!   compare the interpreter with itself, so its trial is reported as
//!   ignored, not passed, as is a tier excluded by `# tiers:`.
//!   `LOOPVM_SPEC_WRITE_PINS=1 cargo test --test spec` writes the pins of
//!   specs that have none, from what their jit and auto runs did.

use libtest_mimic::{Arguments, Failed, Trial};
use loopvm::{Program, RunConfig, Tier};
use std::path::Path;
#[path = "support/spec_files.rs"]
mod spec_files;
use spec_files::{collect, header, split_args};

/// The tiers every spec program runs on.
const TIERS: &[Tier] = &[Tier::Interp, Tier::Jit, Tier::Xla, Tier::Auto];

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut trials = Vec::new();
    for f in files {
        let name = f.strip_prefix(&root).unwrap_or(&f).with_extension("").display().to_string();
        let src = std::fs::read_to_string(&f).unwrap_or_default();
        for &tier in TIERS {
            let f = f.clone();
            let vacuous = vacuous(&src, tier);
            trials.push(
                Trial::test(format!("{name}::{}", tier.as_str()), move || run_spec(&f, tier))
                    .with_ignored_flag(vacuous),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// What a spec pins: the loops run natively on `jit` and under `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pins {
    jit: usize,
    auto_xla: usize,
    auto_jit: usize,
}

fn parse_pins(src: &str) -> Option<Pins> {
    let jit = header(src, "jit").first()?.parse().ok()?;
    let auto = header(src, "auto");
    let mut it = auto.first()?.split_whitespace();
    let auto_xla = it.next()?.strip_prefix("xla=")?.parse().ok()?;
    let auto_jit = it.next()?.strip_prefix("jit=")?.parse().ok()?;
    Some(Pins { jit, auto_xla, auto_jit })
}

/// `true` when `tier`'s trial of the spec `src` cannot compare anything:
/// the tier is excluded, or the spec pins that it compiles nothing there.
fn vacuous(src: &str, tier: Tier) -> bool {
    if let Some(t) = header(src, "tiers").first() {
        if !t.split_whitespace().any(|x| x == tier.as_str()) {
            return true;
        }
    }
    if !header(src, "error").is_empty() {
        return tier != Tier::Interp;
    }
    match (tier, parse_pins(src)) {
        (Tier::Jit, Some(p)) => p.jit == 0,
        (Tier::Auto, Some(p)) => p.auto_xla == 0 && p.auto_jit == 0,
        (Tier::Xla, _) => header(src, "xla").first() == Some(&"none"),
        _ => false,
    }
}

fn run_spec(path: &Path, tier: Tier) -> Result<(), Failed> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let errors = header(&src, "error");
    let file = path.display().to_string();
    let compiled = Program::from_source(&src, &file);
    if !errors.is_empty() {
        let err = match compiled {
            Ok(_) => return Err("expected a compile error, the program compiled".into()),
            Err(e) => e.to_string(),
        };
        for want in &errors {
            if !err.contains(want) {
                return Err(format!("error message lacks `{want}`:\n{err}").into());
            }
        }
        if let Some(at) = header(&src, "at").first() {
            let loc = format!("{file}:{at}");
            if !err.contains(&format!("{loc}:")) && !err.contains(&format!("{loc}\n")) {
                return Err(format!("error is not located at {loc}:\n{err}").into());
            }
        }
        if !err.contains('^') {
            return Err(format!("error has no caret:\n{err}").into());
        }
        return Ok(());
    }
    let prog = compiled.map_err(|e| format!("compile error:\n{e}"))?;
    let expect = header(&src, "expect");
    let want = expect.first().ok_or("spec has no `# expect:` line")?;
    let args = header(&src, "args").first().map(|a| split_args(a)).unwrap_or_default();
    let main = prog.module().func(prog.main().map_err(|e| e.to_string())?);
    let tensors = loopvm::parse_args(main, &prog.module().symbols, &args).map_err(|e| e.to_string())?;
    // Threshold 0: every eligible loop is promoted, so the spec programs exercise native code.
    let cfg = RunConfig { tier, capture_print: true, jit_threshold: Some(0), ..RunConfig::default() };
    let out = prog.run(&tensors, &cfg).map_err(|e| e.to_string())?;
    // On the xla tier a region that falls back to the interpreter must be
    // expected (`# fallback: why`), so that a silent fallback fails.
    let fell_back: Vec<String> = out.fallbacks.iter().filter(|f| f.tier == Tier::Xla).map(|f| f.to_string()).collect();
    if !fell_back.is_empty() && header(&src, "fallback").is_empty() {
        return Err(format!("unexpected fallback on {}: {fell_back:?}", tier.as_str()).into());
    }
    if tier == Tier::Xla && out.xla_executions == 0 {
        return Err("nothing ran on XLA (pin `# xla: none` if nothing can)".into());
    }
    // The loops that ran natively are pinned, so that a tier that silently
    // stops compiling them fails.
    if matches!(tier, Tier::Jit | Tier::Auto) {
        let pins = parse_pins(&src);
        let seen = match tier {
            Tier::Jit => pins.map(|p| Pins { jit: out.loops_on(Tier::Jit), ..p }),
            _ => pins.map(|p| Pins { auto_xla: out.loops_on(Tier::Xla), auto_jit: out.loops_on(Tier::Jit), ..p }),
        };
        match (pins, seen) {
            (Some(p), Some(s)) if p == s => {}
            (Some(p), Some(s)) => return Err(format!("native loops on {}: pinned {p:?}, ran {s:?}", tier.as_str()).into()),
            (None, _) if tier == Tier::Jit && std::env::var_os("LOOPVM_SPEC_WRITE_PINS").is_some() => {
                let auto = prog.run(&tensors, &RunConfig { tier: Tier::Auto, ..cfg.clone() }).map_err(|e| e.to_string())?;
                let pins = format!(
                    "# jit: {}\n# auto: xla={} jit={}\n",
                    out.loops_on(Tier::Jit),
                    auto.loops_on(Tier::Xla),
                    auto.loops_on(Tier::Jit)
                );
                let at = src.find('\n').map_or(src.len(), |i| i + 1);
                std::fs::write(path, format!("{}{pins}{}", &src[..at], &src[at..])).map_err(|e| e.to_string())?;
            }
            _ => {
                return Err(format!(
                    "spec pins no native loops (LOOPVM_SPEC_WRITE_PINS=1 writes them): add `# jit: N` and `# auto: xla=M jit=K` (this run: {} on {}, {} on xla)",
                    out.loops_on(Tier::Jit),
                    tier.as_str(),
                    out.loops_on(Tier::Xla)
                )
                .into())
            }
        }
    }
    let got = out.value.to_string();
    if tier == Tier::Interp {
        if got != *want {
            return Err(format!("result differs\n  want: {want}\n  got:  {got}").into());
        }
    } else {
        // Other tiers are held to the interpreter's result (which must be the
        // expected one) within the documented float tolerance (exact for
        // integers and bools): `loopvm diff`'s comparison.
        let reference = prog
            .run(&tensors, &RunConfig { tier: Tier::Interp, capture_print: true, ..RunConfig::default() })
            .map_err(|e| e.to_string())?;
        if reference.value.to_string() != *want {
            return Err(format!("interpreter result differs\n  want: {want}\n  got:  {}", reference.value).into());
        }
        // Every tier prints the same lines (issue 17).
        if let Some(m) = loopvm::diff::compare_printed(&reference.printed, &out.printed) {
            return Err(format!("{} prints differently: {m}", tier.as_str()).into());
        }
        if let Some(m) = loopvm::diff::compare(&reference.value, &out.value) {
            return Err(format!(
                "{} disagrees with the interpreter: {m}\n  interp: {want}\n  {}: {got}",
                tier.as_str(),
                tier.as_str()
            )
            .into());
        }
    }
    // The same program through bytecode: serialise, load, run.
    let again = Program::from_bytecode(&prog.to_bytecode()).map_err(|e| e.to_string())?;
    let got2 = again.run(&tensors, &cfg).map_err(|e| e.to_string())?.value.to_string();
    if got2 != got {
        return Err(format!("bytecode round trip differs: {got2}").into());
    }
    Ok(())
}
