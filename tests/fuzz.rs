//! Differential fuzzing in CI: a fixed-seed batch of generated programs on
//! every tier, held to the interpreter; and the generator's own guarantees
//! (deterministic, every program compiles and runs on the interpreter).
//!
//! `LOOPVM_FUZZ_COUNT=N` and `LOOPVM_FUZZ_SEED=S` change the batch (for a
//! longer run than CI's: `LOOPVM_FUZZ_COUNT=5000 cargo test --release --test fuzz`).

use loopvm::fuzz::{self, FuzzOptions};
use loopvm::{Program, RunConfig, Tier};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The CI batch: the interpreter against xla, jit and auto (a tier that
/// cannot start is skipped with a notice).
#[test]
fn fixed_seed_batch_has_no_mismatch() {
    let opts = FuzzOptions {
        seed: env_u64("LOOPVM_FUZZ_SEED", 0x100b_5eed),
        count: env_u64("LOOPVM_FUZZ_COUNT", 300),
        tiers: vec![Tier::Xla, Tier::Jit, Tier::Auto],
        out: std::env::var_os("LOOPVM_FUZZ_OUT").map(Into::into),
        shrink: true,
        shrink_time: std::time::Duration::from_secs(60),
        ..FuzzOptions::default()
    };
    let mut log = Vec::new();
    let report = fuzz::run(&opts, &mut log).expect("fuzz harness");
    let log = String::from_utf8_lossy(&log);
    eprintln!("{log}");
    eprintln!("{}", report.summary());
    for (tier, why) in &report.skipped_tiers {
        eprintln!("notice: tier {} skipped: {why}", tier.as_str());
    }
    assert_eq!(report.generator_errors, 0, "generated programs that do not compile:\n{log}");
    assert_eq!(report.reference_errors, 0, "generated programs the interpreter fails on:\n{log}");
    assert!(report.tiers.iter().any(|t| t.tier == Tier::Xla), "the xla tier must run in CI");
    let mut msg = String::new();
    for f in &report.findings {
        msg.push_str(&format!(
            "\n--- seed {:#x} on {}: {}\n{}",
            f.program_seed,
            f.tier.as_str(),
            f.message,
            f.reproducer
        ));
    }
    assert!(report.findings.is_empty(), "tier mismatches:{msg}");
    for t in &report.tiers {
        assert!(t.agreed > 0, "{} agreed on nothing: {t:?}", t.tier.as_str());
    }
}

/// A program is a function of its seed.
#[test]
fn generation_is_deterministic() {
    for k in 0..50 {
        let s = fuzz::program_seed(42, k);
        let (a, b) = (fuzz::generate(s, 80), fuzz::generate(s, 80));
        assert_eq!(a.source, b.source);
        assert_eq!(a.args, b.args);
    }
    assert_ne!(fuzz::generate(1, 80).source, fuzz::generate(2, 80).source);
}

/// Every generated program compiles and runs on the interpreter (a compile
/// error is a generator bug), and the generator reaches every construct.
#[test]
fn generated_programs_compile_and_cover_the_language() {
    let n = env_u64("LOOPVM_FUZZ_GEN_COUNT", 400);
    let mut failures = Vec::new();
    let mut all = String::new();
    for k in 0..n {
        let g = fuzz::generate(fuzz::program_seed(7, k), 80);
        all.push_str(&g.source);
        let prog = match Program::from_source(&g.source, "gen.lb") {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{e}\n{}", g.source));
                continue;
            }
        };
        let main = prog.module().func(prog.main().unwrap());
        let args = loopvm::parse_args(main, &prog.module().symbols, &g.args).expect("generated arguments");
        let cfg =
            RunConfig { tier: Tier::Interp, max_steps: Some(100_000), capture_print: true, ..RunConfig::default() };
        if let Err(e) = prog.run(&args, &cfg) {
            failures.push(format!("interp: {e}\n# args: {}\n{}", g.args.join(" "), g.source));
        }
    }
    for f in &failures {
        eprintln!("FAIL: {}", f.lines().next().unwrap_or(""));
    }
    assert!(failures.is_empty(), "{} of {n} generated programs failed; first:\n{}", failures.len(), failures[0]);
    for construct in [
        "fori_loop(",
        "while_loop(",
        "max_iters:",
        "scan(",
        "reverse: true",
        "length:",
        "unroll:",
        ".at[",
        ".add(",
        ".set(",
        "(if ",
        " as ",
        "sum(",
        "mean(",
        "max(",
        "argmax(",
        "axis: -",
        "where(",
        "maximum(",
        "broadcast(",
        "reshape(",
        "transpose(",
        "concat(",
        "stack(",
        "iota(",
        "full(",
        "shape(",
        " @ ",
        " ** ",
        " % ",
        "::-1",
        "exp(",
        "(0.0f32 / 0.0f32)",
        "(1.0f64 / 0.0f64)",
        "(-0.0f32)",
        "(-2147483648i32)",
        "9223372036854775807i64",
        "1e-40f32",
        "&&",
        "fn f",
    ] {
        assert!(all.contains(construct), "the generator never produced `{construct}`");
    }
}
