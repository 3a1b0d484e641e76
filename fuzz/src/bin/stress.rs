//! A libFuzzer-free harness for the fuzz targets, for stable Rust: seeds a
//! corpus (the spec programs, their bytecode, a few `.npy` files, and any
//! `--corpus` folders, e.g. libFuzzer's), then mutates it at random for a
//! while, keeping the inputs that get deeper into the target. A panic is
//! reported and its input written under `artifacts/<target>/`.
//!
//! ```text
//! cargo run --release --no-default-features --bin stress -- <frontend|bytecode|npy> \
//!     [--secs N] [--seed S] [--corpus DIR]... [--artifacts DIR]
//! ```
//!
//! Replaying a crash: `stress <target> --replay FILE`.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens spliced into source inputs.
const TOKENS: &[&str] = &[
    "fn ",
    "main",
    "() -> ",
    "i32",
    "i64",
    "f32",
    "f64",
    "bool",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "|",
    ",",
    ";",
    "let ",
    "=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "**",
    "@",
    "==",
    "<",
    "&&",
    "||",
    "!",
    " as ",
    "if ",
    " else ",
    "true",
    "false",
    "fori_loop(",
    "while_loop(",
    "scan(",
    "max_iters: ",
    "length: ",
    "reverse: true",
    "unroll: ",
    "axis: ",
    ".at[",
    "].set(",
    "].add(",
    "zeros(",
    "ones(",
    "full(",
    "iota(",
    "reshape(",
    "broadcast(",
    "transpose(",
    "concat(",
    "stack(",
    "sum(",
    "mean(",
    "max(",
    "argmax(",
    "where(",
    "shape(",
    "print(",
    "grad(",
    "value_and_grad(",
    "argnums: ",
    "checkpoint: true",
    "2147483648",
    "-2147483648",
    "9223372036854775807",
    "1e39",
    "1e-45",
    "0.0",
    "N",
    "T",
    "::-1",
    ":",
    "_",
    "#",
    "\n",
    "x",
    "i",
    "c",
    "-1",
    "0",
    "4294967296",
];

/// Values written over integers in binary inputs.
const INTERESTING: &[u64] =
    &[0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, u64::MAX, 1 << 32];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], text: bool) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let n = input.len();
        match rng.below(if text { 9 } else { 8 }) {
            0 if n > 0 => {
                let i = rng.below(n);
                input[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                input[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(n + 1);
                let k = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..k).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            3 if n > 0 => {
                let i = rng.below(n);
                let k = 1 + rng.below((n - i).min(64));
                input.drain(i..i + k);
            }
            4 if n > 0 => {
                // Duplicate a range (deeper nesting, longer lists).
                let i = rng.below(n);
                let k = 1 + rng.below((n - i).min(64));
                let chunk = input[i..i + k].to_vec();
                let most = if rng.below(8) == 0 { 2000 } else { 4 };
                let times = 1 + rng.below(most);
                let at = rng.below(input.len() + 1);
                let rep: Vec<u8> = chunk.iter().copied().cycle().take(chunk.len() * times).collect();
                input.splice(at..at, rep);
            }
            5 if !corpus.is_empty() => {
                // Splice a piece of another input.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let k = 1 + rng.below((other.len() - i).min(256));
                    let at = rng.below(n + 1);
                    let end = (at + rng.below(k + 1)).min(n);
                    input.splice(at..end, other[i..i + k].iter().copied());
                }
            }
            6 if n >= 4 => {
                // Overwrite an integer (1, 2, 4 or 8 bytes, little-endian).
                let w = [1usize, 2, 4, 8][rng.below(4)].min(n);
                let i = rng.below(n - w + 1);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let v = if rng.below(2) == 0 { v } else { v.wrapping_neg() };
                input[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            7 if n > 0 => input.truncate(rng.below(n)),
            8 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let at = rng.below(n + 1);
                if rng.below(2) == 0 || n == 0 {
                    input.splice(at..at, t.iter().copied());
                } else {
                    let end = (at + t.len()).min(n);
                    input.splice(at..end, t.iter().copied());
                }
            }
            _ => {}
        }
    }
    input.truncate(1 << 20);
}

fn collect(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, ext, out);
        } else if ext.is_empty() || p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// The built-in seed corpus of a target.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    collect(&root.join("tests/spec"), "lb", &mut files);
    collect(&root.join("examples"), "lb", &mut files);
    collect(&root.join("benches/workloads"), "lb", &mut files);
    files.sort();
    let sources: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    match target {
        "frontend" => sources,
        "bytecode" => sources
            .iter()
            .filter_map(|s| std::str::from_utf8(s).ok())
            .filter_map(|s| loopvm_frontend::compile(s, "seed.lb").ok())
            .map(|m| m.to_bytes())
            .collect(),
        _ => {
            use loopvm_runtime::{npy, Tensor};
            let ts = [
                Tensor::from_vec(&[3], vec![1.5f32, f32::NAN, -0.0]),
                Tensor::from_vec(&[2, 2], vec![1i64, i64::MIN, i64::MAX, 0]),
                Tensor::from_vec(&[2], vec![true, false]),
                Tensor::from_vec(&[], vec![2.5f64]),
                Tensor::from_vec(&[0, 3], Vec::<i32>::new()),
            ];
            ts.into_iter().filter_map(Result::ok).filter_map(|t| npy::write(&t).ok()).collect()
        }
    }
}

fn run_target(target: &str, data: &[u8]) -> u32 {
    match target {
        "frontend" => loopvm_fuzz::frontend(data),
        "bytecode" => loopvm_fuzz::bytecode(data),
        _ => loopvm_fuzz::npy(data),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(target) = args.first().cloned().filter(|t| ["frontend", "bytecode", "npy"].contains(&t.as_str())) else {
        eprintln!("usage: stress <frontend|bytecode|npy> [--secs N] [--seed S] [--corpus DIR]... [--artifacts DIR] [--replay FILE]");
        std::process::exit(2);
    };
    let mut secs = 60u64;
    let mut seed = 1u64;
    let mut dirs = Vec::new();
    let mut artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    let mut replay = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--secs" => secs = v.parse().unwrap_or(secs),
            "--seed" => seed = v.parse().unwrap_or(seed),
            "--corpus" => dirs.push(PathBuf::from(v)),
            "--artifacts" => artifacts = PathBuf::from(v),
            "--replay" => replay = Some(PathBuf::from(v)),
            _ => {
                eprintln!("unknown option {a}");
                std::process::exit(2);
            }
        }
    }
    if let Some(f) = replay {
        let data = std::fs::read(&f).unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        println!("depth {}", run_target(&target, &data));
        return;
    }
    let mut corpus = seeds(&target);
    for d in &dirs {
        let mut files = Vec::new();
        collect(d, "", &mut files);
        corpus.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    let seeded = corpus.len();
    // Quiet panics: each is reported once, below.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(seed);
    let start = Instant::now();
    let (mut execs, mut crashes, mut kept) = (0u64, 0u64, 0u64);
    let mut depths = [0u64; 8];
    let text = target == "frontend";
    // The seeds themselves first.
    let mut queue: Vec<Vec<u8>> = corpus.clone();
    while start.elapsed() < Duration::from_secs(secs) {
        let input = match queue.pop() {
            Some(i) => i,
            None => {
                let mut i = corpus[rng.below(corpus.len())].clone();
                mutate(&mut rng, &mut i, &corpus, text);
                i
            }
        };
        execs += 1;
        match std::panic::catch_unwind(AssertUnwindSafe(|| run_target(&target, &input))) {
            Ok(depth) => {
                depths[(depth as usize).min(7)] += 1;
                // Keep inputs that get past the first check (a crude feedback).
                if depth >= 2 && corpus.len() < 20_000 && rng.below(4) == 0 {
                    corpus.push(input);
                    kept += 1;
                }
            }
            Err(p) => {
                crashes += 1;
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let dir = artifacts.join(&target);
                let _ = std::fs::create_dir_all(&dir);
                let f = dir.join(format!("crash-{execs}"));
                let _ = std::fs::write(&f, &input);
                eprintln!("CRASH #{crashes} ({}): {}", f.display(), msg.lines().next().unwrap_or(""));
            }
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "{target}: {execs} execs in {t:.0} s ({:.0}/s), {seeded} seeds, {kept} kept, {crashes} crashes; depth histogram {:?}",
        execs as f64 / t,
        &depths[..4]
    );
    if crashes > 0 {
        std::process::exit(1);
    }
}
