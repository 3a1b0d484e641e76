//! A corpus of hostile inputs fed to the `loopvm` command line: each must end
//! with an error message and a non-zero status, never a panic (status 101,
//! "panicked" on stderr), a signal (an abort, a stack overflow) or a hang.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `loopvm args...`, killing it after `limit`.
fn loopvm_within(args: &[&str], limit: Duration) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopvm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loopvm");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loopvm {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Outcome { code: status.code(), stdout, stderr }
}

fn loopvm(args: &[&str]) -> Outcome {
    loopvm_within(args, Duration::from_secs(120))
}

/// A scratch folder, removed when the test that made it ends.
struct Tmp(PathBuf);

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(name: &str) -> Tmp {
    let d = std::env::temp_dir().join(format!("loopvm-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    Tmp(d)
}

/// A clean failure: an exit status (no signal), not 0, not 101, an error
/// message and no panic.
#[track_caller]
fn assert_clean_failure(what: &str, o: &Outcome) {
    let head: String = o.stderr.chars().take(600).collect();
    match o.code {
        None => panic!("{what}: killed by a signal (crash or abort); stderr: {head}"),
        Some(0) => panic!("{what}: succeeded; stdout: {}", o.stdout.chars().take(300).collect::<String>()),
        Some(101) => panic!("{what}: panicked: {head}"),
        Some(_) => {}
    }
    assert!(
        !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
        "{what}: panic reached the user: {head}"
    );
    assert!(o.stderr.contains("error"), "{what}: no error message: {head}");
}

/// Either outcome is acceptable, but never a crash.
#[track_caller]
fn assert_no_crash(what: &str, o: &Outcome) {
    let head: String = o.stderr.chars().take(600).collect();
    assert!(o.code.is_some(), "{what}: killed by a signal; stderr: {head}");
    assert_ne!(o.code, Some(101), "{what}: panicked: {head}");
    assert!(!o.stderr.contains("panicked"), "{what}: panic reached the user: {head}");
    if o.code != Some(0) {
        assert!(o.stderr.contains("error"), "{what}: failed without an error message: {head}");
    }
}

/// Writes `bytes` to a file and runs every subcommand that reads a program on it.
fn feed(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    let f = p.to_str().expect("utf-8 path");
    let o = loopvm(&["run", f, "--tier", "interp"]);
    if MAY_SUCCEED.contains(&name) {
        assert_no_crash(&format!("{name}: run"), &o);
    } else {
        assert_clean_failure(&format!("{name}: run"), &o);
    }
    // A program without `main` checks and disassembles fine; none may crash.
    // (The big inputs only through `run` and `check`, to keep the test quick.)
    let cmds: &[&[&str]] =
        if bytes.len() > 1 << 20 { &[&["check", f]] } else { &[&["check", f], &["dis", f], &["emit", f]] };
    for cmd in cmds {
        let o = loopvm(cmd);
        assert_no_crash(&format!("{name}: {}", cmd[0]), &o);
    }
}

/// Hostile but valid: extreme slice bounds clip to an empty slice.
/// So is a long chain of `let`s.
const MAY_SUCCEED: &[&str] = &["slice_huge.lb", "let_chain.lb"];

fn source_cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        ("empty.lb", Vec::new()),
        ("spaces.lb", b"   \n\t\n  # only a comment\n".to_vec()),
        ("garbage.bin", (0..65536u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect()),
        ("nul.lb", b"fn main() -> i32 { 1\0 }".to_vec()),
        ("bad_utf8_comment.lb", b"# \xff\xfe\nfn main() -> i32 { 1 }".to_vec()),
        ("unicode.lb", "fn main() -> i32 { let é = 1; é }".as_bytes().to_vec()),
        ("no_main.lb", b"fn f() -> i32 { 1 }".to_vec()),
        ("recursion.lb", b"fn f() -> i32 { f() }\nfn main() -> i32 { f() }".to_vec()),
        ("recursion_unit.lb", b"fn f() { f() }\nfn main() { f() }".to_vec()),
        (
            "mutual.lb",
            b"fn f(x: i32) -> i32 { g(x) }\nfn g(x: i32) -> i32 { h(x) + 1 }\nfn h(x: i32) -> i32 { f(x) }\nfn main() -> i32 { f(1) }"
                .to_vec(),
        ),
        ("recursion_in_loop.lb", b"fn f(x: i32) -> i32 { fori_loop(0, 3, |i, a| f(a), x) }\nfn main() -> i32 { f(1) }".to_vec()),
        ("huge_int.lb", format!("fn main() -> i64 {{ {}i64 }}", "9".repeat(100_000)).into_bytes()),
        ("huge_float.lb", format!("fn main() -> f64 {{ 1{}.0 }}", "0".repeat(100_000)).into_bytes()),
        ("long_ident.lb", format!("fn main() -> i32 {{ {} }}", "x".repeat(1_000_000)).into_bytes()),
        ("unterminated.lb", b"fn main() -> i32 { (((1 + ".to_vec()),
        ("usize_shape.lb", b"fn main() -> f32 { sum(zeros(f32, [4294967296, 4294967296, 4294967296])) }".to_vec()),
        ("u64_shape.lb", b"fn main() -> f32 { sum(zeros(f32, [18446744073709551615, 18446744073709551615])) }".to_vec()),
        ("too_big_shape.lb", b"fn main() -> f32 { sum(zeros(f32, [99999999999999999999])) }".to_vec()),
        ("param_shape.lb", b"fn main(x: f32[18446744073709551615, 18446744073709551615]) -> f32 { sum(x) }".to_vec()),
        ("negative_shape.lb", b"fn main() -> f32 { sum(zeros(f32, [-3, 2])) }".to_vec()),
        ("broadcast_huge.lb", b"fn main() -> f32 { sum(broadcast(1.0, [4294967296, 4294967296, 16])) }".to_vec()),
        ("iota_huge.lb", b"fn main() -> i32 { sum(iota(i32, 9223372036854775807)) }".to_vec()),
        ("reshape_huge.lb", b"fn main() -> f32 { sum(reshape([1.0, 2.0], [4294967296, 4294967296, 0, -1])) }".to_vec()),
        ("matmul_huge.lb", b"fn main() -> f32 { sum(zeros(f32, [4000000000, 0]) @ zeros(f32, [0, 4000000000])) }".to_vec()),
        (
            "scan_huge_ys.lb",
            b"fn main() -> i32 { let (_, ys) = scan(|c, _| (c, c), 0, length: 4611686018427387904); sum(ys) }".to_vec(),
        ),
        ("static_index.lb", b"fn main() -> i32 { [1, 2][9223372036854775807] }".to_vec()),
        ("slice_huge.lb", b"fn main() -> i32 { sum([1, 2][-9223372036854775808:9223372036854775807:-9223372036854775808]) }".to_vec()),
        ("axis_huge.lb", b"fn main() -> i32 { sum([1, 2], axis: 9223372036854775807) }".to_vec()),
        ("unroll_huge.lb", b"fn main() -> i32 { fori_loop(0, 4, |i, a| a + i, 0, unroll: 4294967297) }".to_vec()),
        ("transpose_bad.lb", b"fn main() -> f32 { sum(transpose(zeros(f32, [2, 2]), [0, 0])) }".to_vec()),
        ("infinite_while.lb", b"fn main() -> i32 { while_loop(|x| true, |x| x + 1, 0) }".to_vec()),
        // Valid programs whose tensors do not fit in memory (40 GB, 400 TB).
        ("oom_40gb.lb", b"fn main() -> f32 { sum(zeros(f32, [100000, 100000])) }".to_vec()),
        ("oom_400tb.lb", b"fn main() -> f32 { sum(zeros(f32, [1000000000, 100000])) }".to_vec()),
        (
            "oom_in_loop.lb",
            b"fn main() -> f32 { fori_loop(0, 3, |i, a| a + sum(zeros(f32, [1000000000, 100000])), 0.0) }".to_vec(),
        ),
    ];
    // 10 MB of nested brackets of each kind, and deep nesting of each construct.
    let n = 5 * 1024 * 1024;
    v.push(("parens_10mb.lb", format!("fn main() -> i32 {{ {}1{} }}", "(".repeat(n), ")".repeat(n)).into_bytes()));
    v.push(("lists_10mb.lb", format!("fn main() -> i32 {{ sum({}1{}) }}", "[".repeat(n), "]".repeat(n)).into_bytes()));
    v.push(("blocks_10mb.lb", format!("fn main() -> i32 {{ {}1{} }}", "{".repeat(n), "}".repeat(n)).into_bytes()));
    v.push(("open_10mb.lb", "fn main() -> i32 { ".bytes().chain(std::iter::repeat_n(b'(', 2 * n)).collect()));
    v.push(("neg_chain.lb", format!("fn main() -> i32 {{ {}1 }}", "-".repeat(1_000_000)).into_bytes()));
    v.push(("not_chain.lb", format!("fn main() -> bool {{ {}true }}", "!".repeat(1_000_000)).into_bytes()));
    v.push(("pow_chain.lb", format!("fn main() -> i32 {{ 1{} }}", " ** 1".repeat(200_000)).into_bytes()));
    v.push(("add_chain.lb", format!("fn main() -> i32 {{ 1{} }}", " + 1".repeat(1_000_000)).into_bytes()));
    v.push((
        "if_chain.lb",
        format!("fn main() -> i32 {{ {}1{} }}", "if true { ".repeat(100_000), " } else { 0 }".repeat(100_000))
            .into_bytes(),
    ));
    v.push(("index_chain.lb", format!("fn main() -> i32 {{ [1]{} }}", "[0]".repeat(100_000)).into_bytes()));
    v.push((
        "call_chain.lb",
        format!("fn main() -> f32 {{ {}1.0{} }}", "exp(".repeat(100_000), ")".repeat(100_000)).into_bytes(),
    ));
    v.push((
        "lambda_chain.lb",
        format!("fn main() -> i32 {{ {}0{} }}", "fori_loop(0, 1, |i, a| ".repeat(10_000), ", 0)".repeat(10_000))
            .into_bytes(),
    ));
    v.push((
        "let_chain.lb",
        format!(
            "fn main() -> i32 {{ {} x0 }}",
            (0..50_000).map(|i| format!("let x{} = {};", i, i)).collect::<String>()
        )
        .into_bytes(),
    ));
    // Lambda inlining that explodes: each level calls the previous lambda twice.
    let mut s = String::from("fn main() -> i32 { let f0 = |x| x + 1;");
    for i in 1..64 {
        s.push_str(&format!(" let f{i} = |x| f{}(f{}(x));", i - 1, i - 1));
    }
    s.push_str(" f63(0) }");
    v.push(("lambda_bomb.lb", s.into_bytes()));
    // Huge literal lists.
    let ones = vec!["1"; 2_000_000].join(", ");
    v.push(("list_2m.lb", format!("fn main() -> i32 {{ sum([{ones}]) + [1, 2] }}").into_bytes()));
    let ragged = format!("[[{}], [1]]", vec!["1"; 100_000].join(", "));
    v.push(("ragged.lb", format!("fn main() -> i32 {{ sum({ragged}) }}").into_bytes()));
    v.push(("many_fns.lb", {
        let mut s: String = (0..50_000).map(|i| format!("fn f{i}() -> i32 {{ {i} }}\n")).collect();
        s.push_str("fn main() -> i32 { f0() + f0 }");
        s.into_bytes()
    }));
    v.push(("dup_fns.lb", b"fn main() -> i32 { 1 }\nfn main() -> i32 { 2 }".to_vec()));
    v
}

/// Every source case fails cleanly on every subcommand that reads a program.
#[test]
fn hostile_sources_fail_cleanly() {
    let d = tmp("src");
    for (name, bytes) in source_cases() {
        if name == "infinite_while.lb" || name.ends_with("huge_ys.lb") || name.starts_with("oom_") {
            continue; // these compile; they are run under limits below
        }
        feed(&d, name, &bytes);
    }
}

/// Programs that compile but cannot finish or cannot fit end under the limits.
#[test]
fn runaway_programs_stop_at_the_limits() {
    let d = tmp("limits");
    let cases = source_cases();
    for (name, flags) in [
        ("infinite_while.lb", &["--max-steps", "100000"][..]),
        ("infinite_while.lb", &["--timeout", "0.5"][..]),
        ("scan_huge_ys.lb", &["--max-memory", "1G"][..]),
        ("scan_huge_ys.lb", &[][..]),
        ("lambda_bomb.lb", &[][..]),
    ] {
        let bytes = &cases.iter().find(|c| c.0 == name).expect("case").1;
        let p = d.join(name);
        std::fs::write(&p, bytes).expect("write");
        let mut a = vec!["run", p.to_str().expect("path"), "--tier", "interp"];
        a.extend(flags);
        assert_clean_failure(&format!("{name} {flags:?}"), &loopvm(&a));
    }
}

/// The machine's memory in bytes (`MemTotal`), if it can be read.
fn physical_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A tensor larger than the machine's memory is an out-of-memory error on
/// every tier (exit status 1, a message naming the op, the shape and the
/// bytes), not an abort with "memory allocation of N bytes failed" and a
/// backtrace, nor an OOM kill after Linux overcommitted the allocation.
#[test]
fn out_of_memory_is_an_error() {
    let d = tmp("oom");
    let cases = source_cases();
    for name in ["oom_40gb.lb", "oom_400tb.lb", "oom_in_loop.lb"] {
        if name == "oom_40gb.lb" && physical_memory().is_none_or(|m| m >= 40_000_000_000) {
            eprintln!("{name}: skipped, this machine has room for 40 GB (or its memory is unknown)");
            continue;
        }
        let bytes = &cases.iter().find(|c| c.0 == name).expect("case").1;
        let p = d.join(name);
        std::fs::write(&p, bytes).expect("write");
        let f = p.to_str().expect("path");
        for tier in [&[][..], &["--tier", "interp"][..], &["--tier", "jit"][..]] {
            let mut a = vec!["run", f];
            a.extend(tier);
            let o = loopvm(&a);
            let what = format!("{name} {tier:?}");
            assert_clean_failure(&what, &o);
            assert!(matches!(o.code, Some(1 | 2)), "{what}: exit status {:?}", o.code);
            let want = if name == "oom_40gb.lb" {
                "f32[100000, 100000] needs 40000000000 bytes"
            } else {
                "needs 400000000000000 bytes"
            };
            assert!(o.stderr.contains("error: out of memory in ") && o.stderr.contains(want), "{what}: {}", o.stderr);
            assert!(!o.stderr.contains("memory allocation of"), "{what}: {}", o.stderr);
        }
    }
}

/// `.npy` arguments that lie.
#[test]
fn hostile_npy_arguments_fail_cleanly() {
    let d = tmp("npy");
    let prog = d.join("sum.lb");
    std::fs::write(&prog, "fn main(x: f32[N]) -> f32 { sum(x) }\n").expect("write");
    let header = |dict: &str, version: u8| -> Vec<u8> {
        let mut h = dict.as_bytes().to_vec();
        let pre = if version == 1 { 10 } else { 12 };
        while !(pre + h.len() + 1).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.push(version);
        out.push(0);
        if version == 1 {
            out.extend((h.len() as u16).to_le_bytes());
        } else {
            out.extend((h.len() as u32).to_le_bytes());
        }
        out.extend(h);
        out
    };
    let with_data = |mut h: Vec<u8>, n: usize| {
        h.extend(std::iter::repeat_n(0u8, n));
        h
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.npy", Vec::new()),
        ("magic_only.npy", b"\x93NUMPY".to_vec()),
        (
            "lies_about_size.npy",
            with_data(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }", 1), 8),
        ),
        (
            "overflow_shape.npy",
            with_data(
                header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", 1),
                8,
            ),
        ),
        (
            "u64_shape.npy",
            with_data(header("{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615,), }", 1), 8),
        ),
        ("negative_shape.npy", with_data(header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 1), 8)),
        ("short_data.npy", with_data(header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 1), 11)),
        ("long_data.npy", with_data(header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 1), 13)),
        ("header_len_lies.npy", {
            let mut h = header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 2);
            h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
            h
        }),
        (
            "nested_header.npy",
            with_data(
                header(&format!("{{'descr': '<f4', 'shape': {}2,{} }}", "(".repeat(10_000), ")".repeat(10_000)), 1),
                8,
            ),
        ),
        ("no_shape.npy", with_data(header("{'descr': '<f4', 'fortran_order': False}", 1), 8)),
        ("bad_dtype.npy", with_data(header("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", 1), 16)),
        ("big_endian.npy", with_data(header("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 1), 8)),
        ("fortran.npy", with_data(header("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 1), 8)),
        ("wrong_dtype.npy", with_data(header("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", 1), 16)),
        ("wrong_rank.npy", with_data(header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 1), 16)),
        (
            "bad_utf8.npy",
            with_data(
                header("{'descr': '<f4', 'shape': (2,), 'x': '\u{fffd}'}", 1)
                    .into_iter()
                    .map(|b| if b == 0xbd { 0xff } else { b })
                    .collect(),
                8,
            ),
        ),
        ("version9.npy", with_data(header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 9), 8)),
        ("garbage.npy", (0..10_000u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect()),
    ];
    let p = prog.to_str().expect("path");
    for (name, bytes) in cases {
        let f = d.join(name);
        std::fs::write(&f, &bytes).expect("write");
        let arg = format!("x=@{}", f.display());
        assert_clean_failure(name, &loopvm(&["run", p, "--tier", "interp", "--arg", &arg]));
    }
}

/// `--arg` literals that are too deep, too big or not numbers.
#[test]
fn hostile_arguments_fail_cleanly() {
    let d = tmp("args");
    let prog = d.join("sum.lb");
    std::fs::write(&prog, "fn main(x: f32[N]) -> f32 { sum(x) }\n").expect("write");
    let p = prog.to_str().expect("path");
    // (One command-line argument is at most 128 KiB on Linux.)
    let deep = format!("x={}1{}", "[".repeat(60_000), "]".repeat(60_000));
    let open = format!("x={}", "[".repeat(120_000));
    for arg in [deep.as_str(), open.as_str(), "x=1e999999", "x=[1, 2", "x=[[1], [2]]", "x=", "=1", "x=[]", "x=\u{1}"] {
        let what: String = arg.chars().take(40).collect();
        assert_clean_failure(&what, &loopvm(&["run", p, "--tier", "interp", "--arg", arg]));
    }
}

/// Bytecode: a valid module with bytes flipped, cut and spliced at many
/// places; every variant is rejected cleanly or runs (under a step limit).
#[test]
fn mutated_bytecode_never_crashes() {
    let d = tmp("lbc");
    let src = d.join("p.lb");
    std::fs::write(
        &src,
        "fn g(x: f32[3]) -> f32 { sum(x * x) }\n\
         fn main() -> (f32, i32) {\n\
             let (c, ys) = scan(|c, x| (c + x, c), 0.0, [1.0, 2.0, 3.0], reverse: true);\n\
             let n = while_loop(|k| k < 5, |k| k + 1, 0);\n\
             (c + g(ys) + [1.0, 2.0][n], fori_loop(0, n, |i, a| a + i, 0))\n\
         }\n",
    )
    .expect("write");
    let lbc = d.join("p.lbc");
    let o = loopvm(&["compile", src.to_str().expect("path"), "-o", lbc.to_str().expect("path")]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let good = std::fs::read(&lbc).expect("read");
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let n = good.len();
    for k in 0..120 {
        let mut b = good.clone();
        match k % 4 {
            0 => {
                let i = (next() as usize) % n;
                b[i] ^= 1 << (next() % 8);
            }
            1 => {
                for _ in 0..4 {
                    let i = (next() as usize) % n;
                    b[i] = next() as u8;
                }
            }
            2 => b.truncate((next() as usize) % n),
            _ => {
                let i = 8 + (next() as usize) % (n - 8);
                let v = [0xFFu8, 0x7F, 0x80, 0x00][(next() % 4) as usize];
                for x in b.iter_mut().skip(i).take(4) {
                    *x = v;
                }
            }
        }
        let f = d.join(format!("m{k}.lbc"));
        std::fs::write(&f, &b).expect("write");
        let o = loopvm_within(
            &["run", f.to_str().expect("path"), "--tier", "interp", "--max-steps", "100000", "--max-memory", "256M"],
            Duration::from_secs(60),
        );
        assert_no_crash(&format!("mutation {k}"), &o);
    }
}
