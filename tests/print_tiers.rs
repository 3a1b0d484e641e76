//! `print` inside loops prints the same lines, in the same order, with the
//! same formatting on every tier: loops with prints, nested loops, `scan`
//! bodies and `if` branches. On the jit tier the loops run as native code
//! (the print calls back into the host); on the xla tier a print becomes a
//! host callback (`stablehlo.custom_call @loopvm_print` with a handler
//! registered through the PJRT FFI extension), except where XLA could
//! reorder two prints: that region runs in the interpreter.

use loopvm::{Program, RunConfig, Tier};

const PROGRAMS: &[(&str, &str)] = &[
    (
        "loop",
        "fn main() -> i32 {
            let (s, t) = fori_loop(0, 6, |i, (s, t)| { print((i, s * 2, t)); (s + i, t * 1.5) }, (0, 0.5));
            s
        }",
    ),
    (
        "nested",
        "fn main() -> i32 {
            fori_loop(0, 3, |i, a| {
                let b = fori_loop(0, 2, |j, b| { print((i, j, b)); b + j }, a);
                print(b);
                b + i
            }, 0)
        }",
    ),
    (
        "scan",
        "fn main(xs: f32[4, 2]) -> f32[2] {
            let (c, ys) = scan(|c, x| { print(c + x); (c + x, x * 2.0) }, zeros(f32, [2]), xs);
            print(ys);
            c
        }",
    ),
    (
        "if",
        "fn main() -> i64 {
            let n: i64 = 0;
            fori_loop(0, 7, |i, n| {
                if i % 3 == 0 { print(i > 2) } else { print((i, n)) }
                let m = if i % 2 == 0 { print(-i); n + 1 } else { n };
                m
            }, n)
        }",
    ),
    (
        "while_cond",
        "fn main() -> i32 {
            let (k, x) = while_loop(|(k, x)| { print(k); k < 3 }, |(k, x)| (k + 1, x * 2), (0, 1));
            x
        }",
    ),
    (
        "while",
        "fn main() -> (i32, bool) {
            let (k, f) = while_loop(|(k, f)| k < 5, |(k, f)| { print([k, k * k]); (k + 1, !f) }, (0, false));
            (k, f)
        }",
    ),
];

fn args(name: &str) -> Vec<loopvm::Tensor> {
    if name == "scan" {
        vec![loopvm::Tensor::from_vec(&[4, 2], vec![1.0f32, 2.0, -0.5, 0.25, 3.0, 1e-3, -7.0, 8.5]).expect("xs")]
    } else {
        Vec::new()
    }
}

fn run(p: &Program, name: &str, tier: Tier) -> loopvm::RunOutput {
    let cfg = RunConfig { tier, capture_print: true, jit_threshold: Some(0), ..RunConfig::default() };
    p.run(&args(name), &cfg).unwrap_or_else(|e| panic!("{name} on {}: {e}", tier.as_str()))
}

#[test]
fn printed_lines_are_identical_on_interp_and_jit() {
    for (name, src) in PROGRAMS {
        let p = Program::from_source(src, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = run(&p, name, Tier::Interp);
        assert!(!want.printed.is_empty(), "{name} prints");
        let jit = run(&p, name, Tier::Jit);
        assert_eq!(jit.printed, want.printed, "{name}: jit");
        assert_eq!(jit.value.to_string(), want.value.to_string(), "{name}: jit result");
        assert!(jit.loops.iter().any(|l| l.tier == Tier::Jit), "{name}: a loop ran natively: {:?}", jit.notes);
        let auto = run(&p, name, Tier::Auto);
        assert_eq!(auto.printed, want.printed, "{name}: auto");
    }
}

#[test]
fn printed_lines_are_identical_on_xla() {
    for (name, src) in PROGRAMS {
        let p = Program::from_source(src, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = run(&p, name, Tier::Interp);
        let xla = run(&p, name, Tier::Xla);
        assert_eq!(xla.printed, want.printed, "{name}: xla");
        assert_eq!(xla.value.to_string(), want.value.to_string(), "{name}: xla result");
    }
}

#[test]
fn diff_compares_printed_output() {
    for (name, src) in PROGRAMS {
        let p = Program::from_source(src, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let results = loopvm::diff::diff(&p, &args(name), &[Tier::Jit, Tier::Xla]).expect("diff");
        for r in results {
            assert!(!r.disagrees(), "{name}: {}: {:?}", r.tier.as_str(), r.mismatch);
        }
    }
}

#[test]
fn a_loop_with_a_print_runs_on_xla_as_one_while() {
    let src = "fn main(xs: f32[6, 2]) -> f32[2] {
        let (c, _) = scan(|c, x| {
            if c[0] > -0.5 { print((c, x)) } else { print(x) }
            (c * 0.5 + x, 0)
        }, zeros(f32, [2]), xs, unroll: 3);
        c
    }";
    let p = Program::from_source(src, "t.lb").expect("compiles");
    let xs = loopvm::Tensor::from_vec(&[6, 2], (0..12).map(|k| k as f32 * 0.25 - 1.0).collect()).expect("xs");
    let cfg = |tier| RunConfig { tier, capture_print: true, no_cache: true, ..RunConfig::default() };
    let want = p.run(std::slice::from_ref(&xs), &cfg(Tier::Interp)).expect("interp");
    let got = p.run(std::slice::from_ref(&xs), &cfg(Tier::Xla)).expect("xla");
    assert_eq!(got.printed, want.printed);
    assert_eq!(got.value.to_string(), want.value.to_string());
    if got.notes.iter().any(|n| n.contains("xla: print: host callbacks")) {
        assert!(got.fallbacks.is_empty(), "{:?}", got.notes);
        assert!(got.xla_executions > 0);
        // Each loop stays one rolled `stablehlo.while` (the scan's `unroll`
        // is dropped: copies of a body could print out of order).
        let m = p.module();
        let main = m.main.expect("main");
        let types = vec![(loopvm::DType::F32, vec![6, 2])];
        let opts = loopvm_jit::hlo::EmitOptions { host_print: true, ..Default::default() };
        let l = loopvm_jit::hlo::lower_function(m, main, &types, &opts).expect("lowers");
        assert_eq!(l.whiles, 1, "{}", l.text);
        assert_eq!(l.text.matches("@loopvm_print(").count(), 2, "{}", l.text);
    } else {
        eprintln!("the plugin has no host callbacks: {:?}", got.notes);
    }
}

#[test]
fn printing_siblings_run_in_one_xla_execution_in_order() {
    // Prints side by side (two prints, a loop that prints beside a print,
    // an `if` whose branch prints twice): XLA orders only what data orders,
    // so the emitter chains the prints through one value, and `main` runs
    // as one executable that prints in program order.
    let src = "fn main() -> i32 {
        print(7);
        let a = fori_loop(0, 3, |i, a| { print(a); print(-a); a + i }, 1);
        print((a, 8));
        let b = fori_loop(0, 2, |i, b| { if i == 0 { print(b); print(b + 1) } else { print(-b) } b * 2 }, a);
        print(b);
        b
    }";
    let p = Program::from_source(src, "t.lb").expect("compiles");
    let cfg = |tier| RunConfig { tier, capture_print: true, no_cache: true, ..RunConfig::default() };
    let want = p.run(&[], &cfg(Tier::Interp)).expect("interp");
    assert_eq!(want.printed.lines().count(), 12, "{}", want.printed);
    let got = p.run(&[], &cfg(Tier::Xla)).expect("xla");
    assert_eq!(got.printed, want.printed);
    assert_eq!(got.value.to_string(), want.value.to_string());
    if got.notes.iter().any(|n| n.contains("xla: print: host callbacks")) {
        assert!(got.fallbacks.is_empty(), "{:?}", got.notes);
        assert_eq!(got.xla_executions, 1, "{:?}", got.notes);
    } else {
        eprintln!("the plugin has no host callbacks: {:?}", got.notes);
    }
    // The chain: every print takes the value the print before it (or the
    // loop or `if` holding it) made, and the loops carry it.
    let m = p.module();
    let main = m.main.expect("main");
    let opts = loopvm_jit::hlo::EmitOptions { host_print: true, ..Default::default() };
    let l = loopvm_jit::hlo::lower_function(m, main, &[], &opts).expect("lowers");
    let prints: Vec<&str> = l.text.lines().filter(|t| t.contains("@loopvm_print(")).collect();
    assert_eq!(prints.len(), 8, "{}", l.text);
    let result = |line: &str| line.trim().split(' ').next().unwrap_or_default().to_string();
    let first_operand = |line: &str| {
        let args = &line[line.find("@loopvm_print(").unwrap_or(0) + "@loopvm_print(".len()..];
        args.split([',', ')']).next().unwrap_or_default().trim().to_string()
    };
    // Straight-line neighbours inside one body: the second takes the first's result.
    assert_eq!(first_operand(prints[2]), result(prints[1]), "{}", l.text);
    assert_eq!(first_operand(prints[5]), result(prints[4]), "{}", l.text);
    // Every print's result is used (by the next print, a loop's state or an `if`'s result).
    for p in &prints[..prints.len() - 1] {
        let r = result(p);
        let uses = l.text.split(|c: char| !(c.is_alphanumeric() || c == '%' || c == '_')).filter(|t| *t == r).count();
        assert!(uses > 1, "{r} unused:\n{}", l.text);
    }
    assert_eq!(l.whiles, 2, "{}", l.text);
}

/// A builtin that expands into several ops (`take_along_axis`, `softmax`,
/// `logsumexp`, `gelu`, the random draws, `einsum`, `one_hot`, ...) evaluates
/// each operand once: a `print` inside an operand prints once, on every tier.
#[test]
fn an_operand_of_an_expanding_builtin_prints_once() {
    let src = "fn main(x: f32[2, 3]) -> (f32[2, 1], f32[2, 3], f32, f32[2, 3], f32[2, 3], i32[2], f32[2, 3], f32[2, 2],
                                  (f32[2, 3], f32[1, 2], f32[6], f32[2, 3])) {
        let p = |v| { print(0); v };
        (take_along_axis(p(x), p([[1], [0]]), axis: 1), softmax(p(x)), logsumexp(p(x)), gelu(p(x)),
         log_softmax(p(x), axis: 0), categorical(p(key(3)), p(x)), uniform(p(key(1)), f32, [2, 3], minval: p(-1.0), maxval: p(x)),
         einsum(\"ij,kj->ik\", p(x), p(x)),
         (one_hot(p([2, 0]), 3), dynamic_slice(p(x), [p(0), p(1)], [1, 2]), cumsum(p(x)), take(p(x), p([1, 0]), axis: 0)))
    }";
    let p = Program::from_source(src, "once.lb").expect("compiles");
    let x = loopvm::Tensor::from_vec(&[2, 3], vec![0.5f32, -1.0, 2.0, 3.0, 0.25, -4.0]).expect("x");
    for tier in [Tier::Interp, Tier::Jit, Tier::Xla] {
        let cfg = RunConfig { tier, capture_print: true, ..RunConfig::default() };
        let out = p.run(std::slice::from_ref(&x), &cfg).unwrap_or_else(|e| panic!("{}: {e}", tier.as_str()));
        assert_eq!(out.printed.lines().count(), 20, "{}: {}", tier.as_str(), out.printed);
    }
}
