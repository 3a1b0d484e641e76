//! Differential fuzzing in CI: a fixed-seed batch of generated programs on
//! every tier, held to the interpreter; and the generator's own guarantees
//! (deterministic, every program compiles and runs on the interpreter).
//!
//! `LOOPVM_FUZZ_COUNT=N` and `LOOPVM_FUZZ_SEED=S` change the batch (for a
//! longer run than CI's: `LOOPVM_FUZZ_COUNT=5000 cargo test --release --test fuzz`).

use loopvm::{Program, RunConfig, Tier};
use loopvm_fuzzgen::{self as fuzz, FuzzOptions};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The CI batch: the interpreter against xla, jit and auto, on a fixed seed
/// (the same programs every run) ...
#[test]
fn fixed_seed_batch_has_no_mismatch() {
    batch(env_u64("LOOPVM_FUZZ_SEED", 0x100b_5eed), env_u64("LOOPVM_FUZZ_COUNT", 300));
}

/// ... and on a new seed every run, printed so that a failure reproduces
/// (`loopvm fuzz --seed S --count N --tiers xla,jit,auto`).
#[test]
fn new_seed_batch_has_no_mismatch() {
    let seed = std::env::var("LOOPVM_FUZZ_NEW_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    eprintln!("fuzz: new seed {seed} (LOOPVM_FUZZ_NEW_SEED={seed} reruns this batch)");
    batch(seed, env_u64("LOOPVM_FUZZ_NEW_COUNT", 200));
}

fn batch(seed: u64, count: u64) {
    let opts = FuzzOptions {
        seed,
        count,
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
    eprintln!("seed {seed}: {}", report.summary());
    assert!(report.skipped_tiers.is_empty(), "seed {seed}: tiers that could not start: {:?}", report.skipped_tiers);
    assert_eq!(report.generator_errors, 0, "seed {seed}: generated programs that do not compile:\n{log}");
    assert_eq!(report.reference_errors, 0, "seed {seed}: generated programs the interpreter fails on:\n{log}");
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
    assert!(report.findings.is_empty(), "seed {seed}: tier mismatches:{msg}");
    for t in &report.tiers {
        assert_eq!(t.agreed, count, "seed {seed}: {} did not agree on every program: {t:?}", t.tier.as_str());
        // XLA compiles every generated program, prints included: declining one,
        // or a region of one, is a hole in the net.
        assert_eq!((t.declined, t.fell_back), (0, 0), "seed {seed}: {} declined or fell back: {t:?}", t.tier.as_str());
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
        "reshape(reshape(a",
        "transpose(",
        "concat(",
        "stack(",
        "take(",
        "take_along_axis(",
        "one_hot(",
        "dtype: ",
        "dynamic_slice(",
        "dynamic_update_slice(",
        "cumsum(",
        "iota(",
        "full(",
        "shape(",
        " @ ",
        " ** ",
        " % ",
        "::-1",
        "exp(",
        "erf(",
        "rsqrt(",
        "(0.0f32 / 0.0f32)",
        "(1.0f64 / 0.0f64)",
        "(-0.0f32)",
        "(-2147483648i32)",
        "9223372036854775807i64",
        "1e-40f32",
        "&&",
        " & ",
        " | ",
        " ^ ",
        " << ",
        " >> ",
        "(~",
        "bitcast(",
        "u32[",
        "u8[",
        "255u8",
        "4294967295u32",
        "fn f",
        "einsum(",
    ] {
        assert!(all.contains(construct), "the generator never produced `{construct}`");
    }
}
