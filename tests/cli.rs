//! The `loopvm` command line, end to end: results, formats, files, errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn loopvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopvm")).args(args).output().expect("run loopvm")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn spec(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec").join(p).display().to_string()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loopvm-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// A failed command: non-zero exit, one `error:` message, no panic or backtrace.
fn assert_clean_failure(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(!o.status.success(), "expected failure, got success: {out}");
    assert_ne!(o.status.code(), Some(101), "panicked: {err}");
    assert!(err.contains("error"), "no error message: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic reached the user: {err}");
    err
}

#[test]
fn runs_the_first_program() {
    let o = loopvm(&["run", &spec("seed/first.lb")]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(text(&o).0, "i32[1] [51]\n");
}

#[test]
fn json_format_nests_tuples() {
    let o = loopvm(&["run", &spec("seed/while_count.lb"), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v,
        serde_json::json!([{"dtype": "i32", "shape": [1], "data": [11]}, {"dtype": "i32", "shape": [1], "data": [10]}])
    );
}

#[test]
fn json_writes_nan_and_inf_as_strings() {
    let d = tmp("nan");
    let p = d.join("nan.lb");
    std::fs::write(&p, "fn main() -> f32[3] { [0.0, 1.0, -1.0] / 0.0 }").unwrap();
    let o = loopvm(&["run", p.to_str().unwrap(), "--format", "json"]);
    assert_eq!(text(&o).0.trim(), r#"{"dtype":"f32","shape":[3],"data":["nan","inf","-inf"]}"#);
}

#[test]
fn args_from_literals_and_npy_and_out_files() {
    let d = tmp("npy");
    let out = d.join("res");
    let o = loopvm(&[
        "run",
        &spec("ops/shape_vars.lb"),
        "--arg",
        "xs=[[1, 2], [3, 4], [5, 6]]",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let a = loopvm_runtime::npy::read_file(&out.join("0.npy")).unwrap();
    assert_eq!(a.as_slice::<f32>().unwrap(), &[9.0, 12.0]);
    let b = loopvm_runtime::npy::read_file(&out.join("1.npy")).unwrap();
    assert_eq!(b.as_slice::<f32>().unwrap(), &[3.5]);
    // The result of one run fed back as an .npy argument.
    let xs = loopvm_runtime::Tensor::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let xp = d.join("xs.npy");
    loopvm_runtime::npy::write_file(&xp, &xs).unwrap();
    let o = loopvm(&["run", &spec("ops/shape_vars.lb"), "--arg", &format!("xs=@{}", xp.display())]);
    assert_eq!(text(&o).0.trim(), "(f32[2] [4.0, 6.0], f32 2.5)");
}

#[test]
fn bad_arguments_are_clean_errors() {
    let p = spec("ops/shape_vars.lb");
    for (args, want) in [
        (vec![], "missing `--arg xs=...`"),
        (vec!["--arg", "xs=[[1, 2], [3]]"], "ragged"),
        (vec!["--arg", "xs=[1, 2]"], "must be f32[T, 2]"),
        (vec!["--arg", "ys=1"], "no parameter `ys`"),
        (vec!["--arg", "xs=@/nonexistent.npy"], "nonexistent"),
        (vec!["--arg", "xs=[[1, x]]"], "not a number"),
    ] {
        let mut a = vec!["run", p.as_str()];
        a.extend(args);
        let err = assert_clean_failure(&loopvm(&a));
        assert!(err.contains(want), "wanted `{want}` in: {err}");
    }
}

#[test]
fn compile_then_run_bytecode() {
    let d = tmp("lbc");
    let lbc = d.join("w.lbc");
    let o = loopvm(&["compile", &spec("pytorch/while_linear.lb"), "-o", lbc.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    let args = ["--arg", "w=[[0.5, -0.25], [0.125, 0.75]]", "--arg", "b=[0.1, -0.2]", "--arg", "x=[[1, 2], [3, 4]]"];
    let mut a = vec!["run", lbc.to_str().unwrap()];
    a.extend(args);
    let from_lbc = loopvm(&a);
    let s = spec("pytorch/while_linear.lb");
    let mut a = vec!["run", s.as_str()];
    a.extend(args);
    let from_src = loopvm(&a);
    assert!(from_lbc.status.success(), "{:?}", text(&from_lbc));
    assert_eq!(text(&from_lbc).0, text(&from_src).0);
    assert_eq!(text(&from_lbc).0, "(bool true, f32[2, 2] [[0.4203373, -0.5397646], [0.35058537, -0.5077341]])\n");

    // Corrupted bytecode: truncated, and bytes flipped in the code.
    let bytes = std::fs::read(&lbc).unwrap();
    let cut = d.join("cut.lbc");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = assert_clean_failure(&loopvm(&["run", cut.to_str().unwrap()]));
    assert!(err.contains("bytecode"), "{err}");
    let flipped = d.join("flip.lbc");
    let mut b = bytes.clone();
    let n = b.len();
    for i in (n / 3..n).step_by(7) {
        b[i] ^= 0xA5;
    }
    std::fs::write(&flipped, &b).unwrap();
    assert_clean_failure(&loopvm(&["run", flipped.to_str().unwrap()]));
}

#[test]
fn compile_errors_are_located_with_a_caret() {
    let p = spec("errors/unknown_name.lb");
    let err = assert_clean_failure(&loopvm(&["check", &p]));
    assert!(err.contains(&format!("{p}:4:5")), "{err}");
    assert!(err.contains("unknown name `y`"), "{err}");
    assert!(err.contains('^'), "{err}");
}

#[test]
fn dis_shows_nested_loops() {
    let o = loopvm(&["dis", &spec("loops/nested.lb")]);
    let out = text(&o).0;
    assert!(o.status.success());
    assert!(out.contains("fn main() -> i32"), "{out}");
    assert_eq!(out.matches("= fori ").count(), 2, "{out}");
    assert!(out.contains("    body b"), "{out}");
}

#[test]
fn trace_and_stats() {
    let o = loopvm(&["run", &spec("seed/add_ten.lb"), "--trace", "--stats"]);
    let (out, err) = text(&o);
    assert_eq!(out, "i32[1] [10]\n");
    assert!(err.contains("-- fori_loop iteration 9"), "{err}");
    assert!(err.contains("binary add"), "{err}");
    assert!(err.contains("loop iterations:  10"), "{err}");
    assert!(err.contains("fori_loop in `main`"), "{err}");
    assert!(err.contains("peak memory:"), "{err}");
}

#[test]
fn every_tier_runs_the_first_program_and_unknown_tiers_are_errors() {
    for tier in ["interp", "jit", "xla", "auto"] {
        let o = loopvm(&["run", &spec("seed/first.lb"), "--tier", tier]);
        assert_eq!(text(&o).0, "i32[1] [51]\n", "{tier}: {}", text(&o).1);
    }
    let err = assert_clean_failure(&loopvm(&["run", &spec("seed/first.lb"), "--tier", "gpu"]));
    assert!(err.contains("unknown tier"), "{err}");
}

#[test]
fn hostile_files_are_rejected() {
    let d = tmp("hostile");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.lb", vec![]),
        ("garbage.lb", (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
        ("brackets.lb", format!("fn main() -> i32 {{ {}1{} }}", "(".repeat(100_000), ")".repeat(100_000)).into_bytes()),
        ("magic.lbc", b"LBC\0\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\x7f".to_vec()),
    ];
    for (name, bytes) in cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        assert_clean_failure(&loopvm(&["run", p.to_str().unwrap()]));
    }
    assert_clean_failure(&loopvm(&["run", "/nonexistent/prog.lb"]));
}

#[test]
fn runtime_errors_name_the_op() {
    let d = tmp("rt");
    let p = d.join("rt.lb");
    std::fs::write(&p, "fn main(a: f32[N], b: f32[M]) -> f32[N] { a + 0.0 * sum(b) + a * 0.0 }\n").unwrap();
    let o = loopvm(&["run", p.to_str().unwrap(), "--arg", "a=[1, 2]", "--arg", "b=[1, 2, 3]"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let p2 = d.join("rt2.lb");
    std::fs::write(&p2, "fn main(xs: f32[N, 2]) -> f32[2] { let (c, _) = scan(|c, x| (c + x, 0), zeros(f32, [2]), xs, length: 3); c }\n").unwrap();
    let err = assert_clean_failure(&loopvm(&["run", p2.to_str().unwrap(), "--arg", "xs=[[1, 2]]"]));
    assert!(err.contains("scan"), "{err}");
}

#[test]
fn xla_tier_runs_and_emit_prints_one_while() {
    let o = loopvm(&["run", &spec("seed/first.lb"), "--tier", "xla", "--stats"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out, "i32[1] [51]\n");
    assert!(err.contains("xla"), "{err}");
    let o = loopvm(&["emit", &spec("seed/first.lb")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.matches("stablehlo.while").count(), 1, "{out}");
    assert!(out.contains("func.func public @main"), "{out}");
    let o = loopvm(&["emit", &spec("seed/first.lb"), "--unroll"]);
    assert_eq!(text(&o).0.matches("stablehlo.while").count(), 0);
    // `--compile` compiles the printed module on the plugin and says so on stderr.
    let o = loopvm(&["emit", &spec("seed/first.lb"), "--compile"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.matches("stablehlo.while").count(), 1, "{out}");
    let bytes = format!("emitted {} bytes in ", out.len());
    assert!(err.starts_with(&bytes) && err.contains("; compiled by cpu in "), "{err}");
}

#[test]
fn diff_compares_tiers() {
    let o = loopvm(&["diff", &spec("pytorch/scan_carry_ys.lb"), "--tiers", "xla"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("interp") && out.contains("(reference)"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("xla") && l.ends_with("agrees")), "{out}");
}

/// Issue 12's program: XLA had rewritten `log(a ** b)` into `b * log|a|`
/// (-102.36 for the interpreter's -inf), and `diff` had let the infinity
/// pass. Every tier now gives the interpreter's answer.
#[test]
fn diff_holds_log_of_pow_on_every_tier() {
    let d = tmp("logpow");
    let p = d.join("p.lb");
    std::fs::write(&p, "fn main(a: f32[3], b: f32) -> f32[3] { log(a ** b) }\n").unwrap();
    let o = loopvm(&["diff", p.to_str().unwrap(), "--arg", "a=[22.5, -1.0, -21.375]", "--arg", "b=-32.875"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("[-inf, NaN, NaN] (reference)"), "{out}");
    assert_eq!(out.lines().filter(|l| l.ends_with("agrees")).count(), 3, "{out}");
}

#[test]
fn limits_stop_runaway_programs_on_the_interpreter() {
    let d = tmp("limits");
    let forever = d.join("forever.lb");
    std::fs::write(&forever, "fn main() -> i32 { while_loop(|x| x >= 0, |x| (x + 1) % 1000, 0) }\n").unwrap();
    let f = forever.to_str().unwrap();
    let err = assert_clean_failure(&loopvm(&["run", f, "--tier", "interp", "--max-steps", "5000"]));
    assert!(err.contains("step limit exceeded"), "{err}");
    let err = assert_clean_failure(&loopvm(&["run", f, "--tier", "interp", "--timeout", "0.3"]));
    assert!(err.contains("time limit exceeded"), "{err}");
    let big = d.join("big.lb");
    std::fs::write(&big, "fn main() -> f32 { sum(zeros(f32, [100000, 100000])) }\n").unwrap();
    let err = assert_clean_failure(&loopvm(&["run", big.to_str().unwrap(), "--tier", "interp", "--max-memory", "64M"]));
    assert!(err.contains("memory limit exceeded: broadcast needs 40000000000 bytes"), "{err}");
    let ys = d.join("ys.lb");
    std::fs::write(&ys, "fn main() -> f32[1000000, 1000] { let (_, ys) = scan(|c, _| (c, zeros(f32, [1000])), 0, length: 1000000); ys }\n")
        .unwrap();
    let err = assert_clean_failure(&loopvm(&["run", ys.to_str().unwrap(), "--tier", "interp", "--max-memory", "1G"]));
    assert!(err.contains("memory limit exceeded: scan ys"), "{err}");
    let err = assert_clean_failure(&loopvm(&["run", f, "--max-memory", "lots"]));
    assert!(err.contains("not a byte count"), "{err}");
}

#[test]
fn fuzz_runs_a_slice_of_a_seeds_batch() {
    let out = tmp("fuzz");
    let o = Command::new(env!("CARGO_BIN_EXE_loopvm"))
        .args(["fuzz", "--seed", "3", "--start", "5", "--count", "2", "--tiers", "jit", "--out"])
        .arg(&out)
        .output()
        .expect("run loopvm");
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.starts_with("2 programs (seed 3, programs 5..7) in "), "{:?}", text(&o));
    let _ = std::fs::remove_dir_all(&out);
}
