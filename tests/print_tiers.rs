//! `print` inside loops prints the same lines, in the same order, with the
//! same formatting on every tier: loops with prints, nested loops, `scan`
//! bodies and `if` branches. On the jit tier the loops run as native code
//! (the print calls back into the host); on the xla tier a region with a
//! print runs in the interpreter (no host callback through XLA yet), which
//! `--stats` reports as a fallback.

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
