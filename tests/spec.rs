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
//!   the compiling tiers (e.g. it prints); without it a fallback fails.

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
        for &tier in TIERS {
            let f = f.clone();
            trials.push(Trial::test(format!("{name}::{}", tier.as_str()), move || run_spec(&f, tier)));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn run_spec(path: &Path, tier: Tier) -> Result<(), Failed> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let tiers = header(&src, "tiers");
    if let Some(t) = tiers.first() {
        if !t.split_whitespace().any(|x| x == tier.as_str()) {
            return Ok(());
        }
    }
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
    // On a compiling tier a region that falls back to the interpreter must be
    // expected (`# fallback: why`), so that a silent fallback fails.
    let fell_back: Vec<&String> = out.notes.iter().filter(|n| n.starts_with("ran in the interpreter")).collect();
    if !fell_back.is_empty() && header(&src, "fallback").is_empty() {
        return Err(format!("unexpected fallback on {}: {fell_back:?}", tier.as_str()).into());
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
