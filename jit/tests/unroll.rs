//! Partial unrolling (issue 8) against the real CPU plugin: a loop whose
//! body is repeated `k` times per trip of its `stablehlo.while` must give
//! the same results as the rolled loop (`k = 1`) and as the interpreter, for
//! every spec program, and for trip counts 0, 1, k − 1, k, k + 1 (static and
//! dynamic) of `fori_loop`, `while_loop` (the condition failing inside a
//! block) and `scan` (forward and reverse, with ys); and compile time must
//! not grow with the trip count.

use loopvm_jit::hlo::{self, EmitOptions, Platform, UnrollOptions, UnrollWhy};
use loopvm_jit::xla::tier::{XlaBackend, XlaMode};
use loopvm_jit::xla::{plugin, Client, Plugin};
use loopvm_runtime::compare::{first_difference, first_difference_with, Tolerance};
use loopvm_runtime::{DType, Tensor};
use loopvm_vm::*;
use std::path::Path;
use std::sync::OnceLock;
#[path = "../../tests/support/arg_literal.rs"]
mod arg_literal;
#[path = "../../tests/support/rnn.rs"]
mod rnn;
#[path = "../../tests/support/spec_files.rs"]
mod spec_files;
use arg_literal::parse_value;
use rnn::{rnn_args, RNN};
use spec_files::{collect, header, split_args};

const FACTORS: [u32; 5] = [2, 3, 4, 8, 32];

// ------------------------------------------------------------------ harness

fn client() -> Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let path = plugin::find_or_install_cpu().expect("find or install the CPU plugin");
            Client::new(Plugin::load(path).expect("load the CPU plugin")).expect("create a CPU client")
        })
        .clone()
}

fn compile(src: &str) -> Module {
    let m = loopvm_frontend::compile(src, "unroll.lb").unwrap_or_else(|e| panic!("{e}\n{src}"));
    verify(&m).unwrap();
    m
}

fn interp(m: &Module, args: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
    let mut it = Interpreter::new(m, RunOptions::default());
    it.set_output(Box::new(std::io::sink()));
    it.call(m.main.expect("main"), args)
}

/// Runs `main` with an XLA back end in `mode`, loops unrolled as `unroll`
/// says; returns the results and the back end.
fn run_xla(m: &Module, args: &[Tensor], mode: XlaMode, unroll: UnrollOptions) -> (Vec<Tensor>, XlaBackend) {
    let mut b = XlaBackend::new(client(), mode);
    b.set_unroll(unroll);
    let r = {
        let mut it = Interpreter::new(m, RunOptions::default());
        it.set_output(Box::new(std::io::sink()));
        it.set_backend(&mut b);
        it.call(m.main.expect("main"), args)
    };
    (r.unwrap_or_else(|e| panic!("xla ({mode:?}, {unroll:?}): {e}")), b)
}

/// Exact (up to NaN payloads and the sign of zero) when `exact`, else the
/// rule of `loopvm diff` ([`loopvm_runtime::compare`]); integers and bools
/// always exactly.
fn assert_same(want: &[Tensor], got: &[Tensor], exact: bool, ctx: &str) {
    assert_eq!(want.len(), got.len(), "{ctx}: number of results");
    for (k, (w, g)) in want.iter().zip(got).enumerate() {
        let d = if exact { first_difference_with(w, g, Tolerance::EXACT) } else { first_difference(w, g) };
        if let Some(d) = d {
            panic!("{ctx}: result {k}: {d}\nwant {w}\ngot  {g}");
        }
    }
}

fn types(args: &[Tensor]) -> Vec<hlo::ValueType> {
    args.iter().map(hlo::value_type).collect()
}

/// Lowers `main` with every loop unrolled by `k`, compiles and runs it.
fn run_forced(m: &Module, args: &[Tensor], k: u32) -> (Vec<Tensor>, hlo::Lowered) {
    let main = m.main.expect("main");
    let l = hlo::lower_function_with(m, main, &types(args), &EmitOptions::default(), &UnrollOptions::forced(k))
        .unwrap_or_else(|e| panic!("k = {k}: {e}"));
    let exe = client().compile(&l.text).unwrap_or_else(|e| panic!("k = {k}: {e}\n{}", l.text));
    let bufs: Vec<_> = args.iter().map(|a| client().buffer_from_tensor(a).unwrap()).collect();
    let refs: Vec<_> = bufs.iter().collect();
    let outs = exe.execute(&refs).unwrap().into_iter().map(|b| b.to_tensor().unwrap()).collect();
    (outs, l)
}

/// `main(args)` with every loop unrolled by each of [`FACTORS`] equals the
/// interpreter's result and the rolled loop's (integers and bools exactly).
fn check_factors(m: &Module, args: &[Tensor], ctx: &str) {
    let want = interp(m, args).unwrap_or_else(|e| panic!("{ctx}: interpreter: {e}"));
    let (rolled, _) = run_forced(m, args, 1);
    assert_same(&want, &rolled, false, &format!("{ctx}, rolled"));
    for k in FACTORS {
        let (got, l) = run_forced(m, args, k);
        let c = format!("{ctx}, unroll {k}");
        assert_same(&want, &got, false, &c);
        assert_same(&rolled, &got, false, &format!("{c} against rolled"));
        assert!(l.unrolls.iter().all(|u| u.why == UnrollWhy::Forced), "{c}: {:?}", l.unrolls);
    }
}

// ------------------------------------------------------------- fori_loop

const FORI_DYNAMIC: &str = "
fn main(lo: i32, hi: i32) -> (i32, f32[4], i32) {
    fori_loop(lo, hi, |i, (a, b, c)| (a + i, b * 0.5 + 1.0, c * 3 + i), (0, zeros(f32, [4]), 1))
}
";

fn fori_static(lo: i64, hi: i64, unroll: u32) -> String {
    format!(
        "fn main() -> (i32, f32[4], i32) {{
            fori_loop({lo}, {hi}, |i, (a, b, c)| (a + i, b * 0.5 + 1.0, c * 3 + i), (0, zeros(f32, [4]), 1), unroll: {unroll})
        }}"
    )
}

#[test]
fn fori_trip_counts() {
    let dynamic = compile(FORI_DYNAMIC);
    for k in FACTORS {
        let k64 = i64::from(k);
        for n in [0, 1, k64 - 1, k64, k64 + 1, 2 * k64 + 1, -2] {
            // Dynamic bounds: one executable per k, run for every n, also at
            // the ends of the i32 range (where hi - (k - 1) underflows and
            // i + k would overflow).
            for lo in [-3i64, i64::from(i32::MIN), i64::from(i32::MAX) - n.max(0)] {
                let hi = (lo + n).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
                let args = [Tensor::scalar(lo as i32), Tensor::scalar(hi as i32)];
                let want = interp(&dynamic, &args).unwrap();
                let (got, l) = run_forced(&dynamic, &args, k);
                let ctx = format!("fori lo = {lo}, hi = {hi}, unroll {k}");
                assert_same(&want, &got, true, &ctx);
                assert_eq!(l.whiles, 2, "{ctx}: main and remainder loops");
                assert!(l.text.contains(&format!("// loopvm: fori_loop unroll {k} (forced)")), "{ctx}\n{}", l.text);
            }
            // Static bounds, unrolled through the program's own `unroll:`.
            let m = compile(&fori_static(5, 5 + n, k));
            let want = interp(&m, &[]).unwrap();
            let main = m.main.unwrap();
            let l =
                hlo::lower_function_with(&m, main, &[], &EmitOptions::default(), &UnrollOptions::default()).unwrap();
            let exe = client().compile(&l.text).unwrap();
            let got: Vec<Tensor> = exe.execute(&[]).unwrap().into_iter().map(|b| b.to_tensor().unwrap()).collect();
            let ctx = format!("fori static n = {n}, unroll: {k}");
            assert_same(&want, &got, true, &ctx);
            let n = n.max(0) as u64;
            let k_used = u64::from(k).min(n.max(1));
            assert_eq!(l.unrolls[0].unroll as u64, k_used, "{ctx}");
            assert_eq!(l.unrolls[0].why, UnrollWhy::Source, "{ctx}");
            // Only the loops that run are emitted: the main one when a full
            // block runs, the remainder when iterations are left over (or
            // when nothing runs at all, for the body's types).
            let want_whiles =
                usize::from(k_used > 1 && n >= k_used) + usize::from(k_used == 1 || !n.is_multiple_of(k_used));
            assert_eq!(l.whiles, want_whiles, "{ctx}\n{}", l.text);
            // The body is emitted at most k + 1 times.
            assert!(l.text.matches("stablehlo.multiply").count() <= 2 * (k_used as usize + 1), "{ctx}");
        }
    }
}

// ------------------------------------------------------------ while_loop

const WHILE_TRIANGLE: &str = "
fn main(limit: i32) -> (i32, i32, f32) {
    while_loop(|(i, s, x)| s < limit, |(i, s, x)| (i + 1, s + i + 1, x * 1.5 + 0.25), (0, 0, 1.0))
}
";

#[test]
fn while_stops_inside_a_block() {
    let m = compile(WHILE_TRIANGLE);
    for k in FACTORS {
        for iters in [0i32, 1, k as i32 - 1, k as i32, k as i32 + 1, 2 * k as i32 + 1] {
            // After m iterations s = m (m + 1) / 2: a limit of exactly that
            // stops the loop after m iterations, in the middle of a block.
            let limit = iters * (iters + 1) / 2;
            let args = [Tensor::scalar(limit)];
            let want = interp(&m, &args).unwrap();
            assert_eq!(want[0].scalar_i64(), Some(i64::from(iters)));
            let (got, l) = run_forced(&m, &args, k);
            let ctx = format!("while {iters} iterations, unroll {k}");
            // The integers exactly; the float within `loopvm diff`'s
            // tolerance (XLA may fuse the copies' `x * 1.5 + 0.25` into
            // multiply-adds differently from the rolled loop's).
            assert_same(&want, &got, false, &ctx);
            assert_eq!(l.whiles, 1, "{ctx}");
            assert_eq!(l.text.matches("\"stablehlo.if\"").count(), k as usize - 1, "{ctx}");
        }
    }
}

// ------------------------------------------------------------------ scan

fn scan_src(reverse: bool) -> String {
    format!(
        "fn main(xs: f32[N, 2], c0: f32[2]) -> ((f32[2], i32), (f32[N, 2], i32[N])) {{
            scan(|(c, n), x| ((c * 0.5 + x, n + 1), (c + x * 2.0, n * 3 + 1)), (c0, 0), xs, reverse: {reverse})
        }}"
    )
}

#[test]
fn scan_trip_counts() {
    for reverse in [false, true] {
        let m = compile(&scan_src(reverse));
        for k in FACTORS {
            for n in [0usize, 1, k as usize - 1, k as usize, k as usize + 1, 2 * k as usize + 1] {
                let xs = Tensor::from_vec(&[n, 2], (0..2 * n).map(|i| (i as f32 * 0.7).sin()).collect()).unwrap();
                let args = [xs, Tensor::from_vec(&[2], vec![0.5f32, -1.0]).unwrap()];
                let want = interp(&m, &args).unwrap();
                let (got, l) = run_forced(&m, &args, k);
                let ctx = format!("scan reverse = {reverse}, n = {n}, unroll {k}");
                assert_same(&want, &got, true, &ctx);
                if n > 0 {
                    let k_used = (k as usize).min(n);
                    let want_whiles = usize::from(k_used > 1) + usize::from(k_used == 1 || !n.is_multiple_of(k_used));
                    assert_eq!(l.whiles, want_whiles, "{ctx}");
                    // One dynamic_slice of k rows of xs per trip of the main loop.
                    if k_used > 1 {
                        let blk = format!("sizes = [{k_used}, 2]");
                        assert!(l.text.contains(&blk), "{ctx}\n{}", l.text);
                    }
                }
            }
        }
    }
    // Without xs (`length:`).
    let m = compile("fn main() -> (i32, i32[7]) { scan(|c, _| (c * 2 + 1, c), 1, length: 7, unroll: 3) }");
    check_factors(&m, &[], "scan length 7");
}

// ------------------------------------------------------------ spec programs

/// Every spec program that compiles gives the same results with every loop
/// unrolled by 1, 2, 3, 4, 8 and 32 as in the interpreter and as rolled on
/// XLA (integers and bools exactly, floats within `loopvm diff`'s
/// tolerance): as a whole function when it lowers, loop by loop when it
/// prints.
#[test]
fn spec_programs_unrolled_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/spec");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no spec programs under {}", root.display());
    let mut ran = 0;
    let mut failures = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        if !header(&src, "error").is_empty() {
            continue;
        }
        // Programs that list their tiers without xla (known XLA gaps).
        if header(&src, "tiers").first().is_some_and(|t| !t.split_whitespace().any(|x| x == "xla")) {
            continue;
        }
        let name = path.strip_prefix(&root).unwrap_or(path).display().to_string();
        let Ok(m) = loopvm_frontend::compile(&src, &name) else { continue };
        let main = m.main.expect("main");
        let leaves: Vec<TensorType> =
            m.funcs[main.0 as usize].params.iter().flat_map(|p| p.ty.leaves().into_iter().cloned()).collect();
        let args: Vec<Tensor> = header(&src, "args")
            .first()
            .map(|a| split_args(a))
            .unwrap_or_default()
            .iter()
            .zip(&leaves)
            .map(|(a, t)| parse_value(a.split_once('=').map_or(a.as_str(), |x| x.1), t.dtype))
            .collect();
        if std::env::var("UNROLL_SPEC").is_ok_and(|f| !name.contains(&f)) {
            continue;
        }
        let r = std::panic::catch_unwind(|| {
            let want = interp(&m, &args).unwrap_or_else(|e| panic!("interpreter: {e}"));
            // Programs that print run loop by loop (print stays in the
            // interpreter); the others as a whole.
            let (_, b) = run_xla(&m, &args, XlaMode::Functions, UnrollOptions::forced(1));
            let mode = if b.stats.functions_run == 1 { XlaMode::Functions } else { XlaMode::Loops };
            // Loop by loop, floats may differ from the interpreter's where
            // the program compares a loop's result with code outside it
            // (while_linear.lb): compare with the rolled loop there.
            let exact_tiers = name.ends_with("while_linear.lb");
            let (rolled, _) = run_xla(&m, &args, mode, UnrollOptions::forced(1));
            if !exact_tiers {
                assert_same(&want, &rolled, false, "rolled");
            }
            for k in [2, 3, 4, 8, 32] {
                let (got, b) = run_xla(&m, &args, mode, UnrollOptions::forced(k));
                assert!(b.stats.fallbacks.is_empty() || mode == XlaMode::Loops, "{:?}", b.stats.fallbacks);
                if !exact_tiers {
                    assert_same(&want, &got, false, &format!("unroll {k}"));
                }
                assert_same(&rolled, &got, false, &format!("unroll {k} against rolled"));
            }
        });
        match r {
            Ok(()) => ran += 1,
            Err(e) => failures.push(format!(
                "{name}: {}",
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    eprintln!("[unroll] {ran} spec programs agree unrolled by 2, 3, 4, 8, 32");
    assert!(failures.is_empty(), "{} spec programs failed:\n{}", failures.len(), failures.join("\n\n"));
    if std::env::var("UNROLL_SPEC").is_err() {
        assert!(ran >= 30, "only {ran} spec programs ran");
    }
}

// ------------------------------------------------------- policy, visibility

/// The GPU policy (run here on the CPU plugin) unrolls a small body by a
/// large factor, says so in the module and in the stats, and changes no
/// result; the CPU policy keeps the program's own factor.
#[test]
fn gpu_policy_is_visible_and_exact() {
    let m = compile(RNN);
    let args = rnn_args(37);
    let gpu = UnrollOptions { platform: Platform::Gpu, force: None };
    let l = hlo::lower_function_with(&m, m.main.unwrap(), &types(&args), &EmitOptions::default(), &gpu).unwrap();
    let u = &l.unrolls[0];
    assert_eq!(u.why, UnrollWhy::Policy(Platform::Gpu), "{u}");
    assert!(u.unroll >= 8 && u.body_ops.is_some(), "{u}");
    assert!(l.text.contains(&format!("// loopvm: scan unroll {} (gpu policy, body", u.unroll)), "{}", l.text);
    let want = interp(&m, &args).unwrap();
    let (rolled, _) = run_xla(&m, &args, XlaMode::Functions, UnrollOptions::forced(1));
    let (got, b) = run_xla(&m, &args, XlaMode::Functions, gpu);
    assert_same(&want, &got, false, "rnn, gpu policy");
    assert_same(&rolled, &got, false, "rnn, gpu policy against rolled");
    let report = b.stats.report();
    assert!(report.contains(&format!("xla: unroll: function `main`: scan unroll {}", u.unroll)), "{report}");
    // A body with a loop in it keeps the program's factor on a GPU too.
    let nested = compile("fn main() -> i32 { fori_loop(0, 10, |i, a| fori_loop(0, i, |j, b| b + j, a), 0) }");
    let l = hlo::lower_function_with(&nested, nested.main.unwrap(), &[], &EmitOptions::default(), &gpu).unwrap();
    assert_eq!(l.unrolls.len(), 2);
    assert_eq!((l.unrolls[0].unroll, l.unrolls[0].why), (1, UnrollWhy::Source), "{:?}", l.unrolls);
    assert_eq!(l.unrolls[1].why, UnrollWhy::Policy(Platform::Gpu), "{:?}", l.unrolls);
    // The CPU back end's default: the program's own `unroll:`.
    let src = "fn main() -> i32 { fori_loop(0, 10, |i, a| a + i, 0, unroll: 4) }";
    let m = compile(src);
    let (got, b) = run_xla(&m, &[], XlaMode::Functions, UnrollOptions::for_platform("cpu"));
    assert_eq!(got[0].scalar_i64(), Some(45));
    assert!(b.stats.report().contains("fori_loop unroll 4 (program, 10 iterations)"), "{}", b.stats.report());
    let text = hlo::emit_function(&m, FuncId(0), &[], &EmitOptions::default()).unwrap();
    assert!(text.contains("// loopvm: fori_loop unroll 4 (program)"), "{text}");
}

/// Only a loop whose body prints is kept rolled (copies side by side could
/// print out of order); the other loops of the same module keep their
/// factors, and the printed lines are the interpreter's.
#[test]
fn a_printing_loop_stays_rolled_and_its_siblings_do_not() {
    let src = "fn main() -> (i32, i32) {
        let a = fori_loop(0, 10, |i, a| a * 3 + i, 1, unroll: 4);
        let b = fori_loop(0, 3, |i, b| { print(i); b + i * a }, 0, unroll: 2);
        let c = fori_loop(0, 2, |i, c| fori_loop(0, 4, |j, d| d + j, c, unroll: 4), b);
        (b, c)
    }";
    let m = compile(src);
    let opts = EmitOptions { host_print: true, ..EmitOptions::default() };
    let l = hlo::lower_function_with(&m, m.main.unwrap(), &[], &opts, &UnrollOptions::for_platform("cpu")).unwrap();
    let why: Vec<(u32, UnrollWhy)> = l.unrolls.iter().map(|u| (u.unroll, u.why)).collect();
    assert_eq!(
        why,
        [(4, UnrollWhy::Source), (1, UnrollWhy::Prints), (1, UnrollWhy::Source), (4, UnrollWhy::Source)],
        "{:?}",
        l.unrolls
    );
    assert!(l.text.contains("// loopvm: fori_loop unroll 1 (body prints)"), "{}", l.text);
    // The lines and results are the interpreter's.
    let lines = |b: &mut dyn FnMut(Box<dyn std::io::Write + Send>) -> Vec<Tensor>| {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        struct W(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let r = b(Box::new(W(out.clone())));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        (r, text)
    };
    let (want, want_text) = lines(&mut |w| {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_output(w);
        it.call(m.main.unwrap(), &[]).unwrap()
    });
    let (got, got_text) = lines(&mut |w| {
        let mut b = XlaBackend::new(client(), XlaMode::Functions);
        b.set_host_print(true);
        b.set_output(w);
        let r = {
            let mut it = Interpreter::new(&m, RunOptions::default());
            it.set_output(Box::new(std::io::sink()));
            it.set_backend(&mut b);
            it.call(m.main.unwrap(), &[]).unwrap()
        };
        assert_eq!(b.stats.functions_run, 1, "{}", b.stats.report());
        r
    });
    assert_eq!(want_text, "i32 0\ni32 1\ni32 2\n");
    assert_eq!(got_text, want_text);
    assert_same(&want, &got, false, "printing loop beside unrolled loops");
}

// ------------------------------------------------------------- compile time

/// With `unroll: 32`, the module of a loop of 10^6 iterations is the module
/// of one of 320 (ten blocks of the same 32 copies), so what XLA compiles
/// does not grow with N: the body is emitted 33 times at most, never N
/// times. At N = 10 the factor is clamped to the trip count (10 copies, one
/// trip), and that module is no larger. (Compile times are benchmarks, not
/// test assertions: `docs/performance.md`.)
#[test]
fn unrolled_module_is_flat() {
    let fori = |n: u64| format!("fn main() -> i32 {{ fori_loop(0, {n}, |i, a| a * 3 + i, 1, unroll: 32) }}");
    let scan = |n: u64, reverse: bool| {
        format!(
            "fn main(xs: f32[{n}, 4]) -> f32[4] {{
                let (c, _) = scan(|c, x| (tanh(c * 0.5 + x), ()), zeros(f32, [4]), xs, reverse: {reverse}, unroll: 32);
                c
            }}"
        )
    };
    type Case = (&'static str, Box<dyn Fn(u64) -> String>, bool);
    let cases: [Case; 3] = [
        ("fori_loop", Box::new(fori), false),
        ("scan", Box::new(move |n| scan(n, false)), true),
        ("scan reverse", Box::new(move |n| scan(n, true)), true),
    ];
    for (what, src, has_xs) in cases {
        let lower = |n: u64| {
            let m = compile(&src(n));
            let args: Vec<hlo::ValueType> = if has_xs { vec![(DType::F32, vec![n as usize, 4])] } else { vec![] };
            hlo::lower_function_with(&m, m.main.unwrap(), &args, &EmitOptions::default(), &UnrollOptions::default())
                .unwrap()
        };
        let (l10, l64, lbig) = (lower(10), lower(320), lower(1_000_000));
        assert!(lbig.unrolls.iter().all(|u| u.unroll == 32), "{what}: {:?}", lbig.unrolls);
        assert_eq!(l64.text.lines().count(), lbig.text.lines().count(), "{what}: text grows with N");
        assert!(l10.text.lines().count() <= lbig.text.lines().count(), "{what}");
    }
    // And it runs (10^6 iterations of the fori_loop, a small scan).
    let m = compile("fn main() -> i32 { fori_loop(0, 1000000, |i, a| a * 3 + i, 1, unroll: 32) }");
    let want = interp(&m, &[]).unwrap();
    let (got, _) = run_forced(&m, &[], 32);
    assert_same(&want, &got, true, "10^6 iterations");
}
