//! `vmap` against separate runs, generated from the spec programs (issue 18).
//!
//! For every spec program of `tests/spec/loops/` and `tests/spec/grad/` that
//! compiles and runs, and every `fn` item of it (`main` included) whose
//! parameters have static shapes, this test writes a program that calls the
//! function on three generated inputs separately and once through `vmap` on
//! the three inputs stacked:
//!
//! ```text
//! fn main() -> (batched, stacked) {
//!     let r0 = g(a0, b0); let r1 = g(a1, b1); let r2 = g(a2, b2);
//!     (vmap(g)(stack3(a0, a1, a2), stack3(b0, b1, b2)), stack3(r0, r1, r2))
//! }
//! ```
//!
//! and runs it on every tier: the two halves must agree (within `loopvm
//! diff`'s float tolerance; exactly for integers and bools), and every tier
//! must agree with the interpreter. The inputs are deterministic: floats
//! `sin(0.37 i + k) * 0.9`, integers `(i + k) % 7 + 1`, booleans alternating
//! (`k` the batch row, `i` the element). A function whose separate calls do
//! not compile or do not finish within the step limit is skipped, and the
//! test reports how many were. A function without parameters has nothing to
//! batch: the four such spec programs (`loops/nested`, `loops/scan_length`,
//! `loops/scan_reverse`, `loops/scan_unroll_tuple`, whose `main` takes none)
//! each have a sibling `*_args.lb` that takes its bounds, carries or xs as
//! arguments, and those are batched here.

use libtest_mimic::{Arguments, Failed, Trial};
use loopvm::{Program, RunConfig, Tier};
use loopvm_frontend::types::{TensorTy, Type};
use loopvm_runtime::DType;
use std::path::Path;
#[path = "support/spec_files.rs"]
mod spec_files;
use spec_files::{collect, header};

const TIERS: &[Tier] = &[Tier::Interp, Tier::Jit, Tier::Xla, Tier::Auto];
/// The batch size.
const B: usize = 3;
/// The interpreter steps one separate call may take.
const MAX_STEPS: u64 = 20_000_000;

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec");
    let mut trials = Vec::new();
    for dir in ["loops", "grad"] {
        let mut files = Vec::new();
        collect(&root.join(dir), &mut files);
        files.sort();
        for f in files {
            let src = std::fs::read_to_string(&f).unwrap_or_default();
            if !header(&src, "error").is_empty() {
                continue;
            }
            let name = f.strip_prefix(&root).unwrap_or(&f).with_extension("").display().to_string();
            for (fname, gen) in generate(&src) {
                for &tier in TIERS {
                    let gen = gen.clone();
                    trials.push(Trial::test(format!("{name}/{fname}::{}", tier.as_str()), move || run(&gen, tier)));
                }
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// A generated test of one function.
#[derive(Clone)]
struct Gen {
    /// The program with only the separate calls (`main` returns them stacked).
    separate: String,
    /// The program with both halves.
    both: String,
}

/// A leaf's generated value number `k`, as `.lb` source.
fn leaf_value(t: &TensorTy, k: usize) -> Option<String> {
    let shape = t.known_dims()?;
    let n: u64 = shape.iter().product::<u64>().max(1);
    let dims = shape.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let d = t.dtype.as_str();
    let flat = match t.dtype {
        DType::F32 | DType::F64 => format!("(sin(iota({d}, {n}) * 0.37 + {k}.0) * 0.9)"),
        DType::I32 | DType::I64 => format!("((iota({d}, {n}) + {k}) % 7 + 1)"),
        DType::Bool => format!("((iota(i32, {n}) + {k}) % 2 == 0)"),
        _ => return None,
    };
    Some(if shape.is_empty() { format!("{flat}[0]") } else { format!("reshape({flat}, [{dims}])") })
}

fn value(ty: &Type, k: usize) -> Option<String> {
    match ty {
        Type::Tensor(t) => leaf_value(t, k),
        Type::Tuple(ts) => {
            let xs = ts.iter().map(|t| value(t, k)).collect::<Option<Vec<_>>>()?;
            Some(if xs.len() == 1 { format!("({},)", xs[0]) } else { format!("({})", xs.join(", ")) })
        }
    }
}

/// The type of `B` values of `ty` stacked.
fn stacked(ty: &Type) -> Type {
    ty.map_leaves(&mut |l| {
        let mut dims = vec![loopvm_frontend::types::Dim::Known(B as u64)];
        dims.extend(l.dims.iter().cloned());
        TensorTy { dtype: l.dtype, dims }
    })
}

fn stack3(xs: &[String]) -> String {
    format!("tree_map(|p, q, r| stack([p, q, r]), {})", xs.join(", "))
}

/// The generated tests of the program `src`: one per eligible function.
fn generate(src: &str) -> Vec<(String, Gen)> {
    let Ok(typed) = loopvm_frontend::check_typed(src, "spec.lb") else { return Vec::new() };
    let renamed = src.replacen("fn main(", "fn main_orig(", 1);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for f in &typed.funcs {
        if f.name != f.source_name || f.name.starts_with("std.") || f.name.contains('(') || !seen.insert(f.name.clone())
        {
            continue;
        }
        let ptypes: Vec<Type> = f.params.iter().filter_map(|(_, v)| f.var_type(*v).cloned()).collect();
        if ptypes.is_empty() || f.result.num_leaves() == 0 {
            continue;
        }
        let Some(args) =
            (0..B).map(|k| ptypes.iter().map(|t| value(t, k)).collect::<Option<Vec<_>>>()).collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        if f.result.leaves().iter().any(|l| l.known_dims().is_none()) {
            continue;
        }
        let g = if f.name == "main" { "main_orig".to_string() } else { f.name.clone() };
        let rs = stacked(&f.result);
        let mut lets = String::new();
        for (k, a) in args.iter().enumerate() {
            lets.push_str(&format!("    let r{k} = {g}({});\n", a.join(", ")));
        }
        let sep = stack3(&["r0".into(), "r1".into(), "r2".into()]);
        let batched_args: Vec<String> =
            (0..ptypes.len()).map(|j| stack3(&args.iter().map(|a| a[j].clone()).collect::<Vec<_>>())).collect();
        let separate = format!("{renamed}\nfn main() -> {rs} {{\n{lets}    {sep}\n}}\n");
        let both = format!(
            "{renamed}\nfn main() -> ({rs}, {rs}) {{\n{lets}    (vmap({g})({}), {sep})\n}}\n",
            batched_args.join(", ")
        );
        out.push((f.name.clone(), Gen { separate, both }));
    }
    out
}

fn run(gen: &Gen, tier: Tier) -> Result<(), Failed> {
    if std::env::var_os("LOOPVM_VMAP_SHOW").is_some() {
        println!("{}", gen.both);
    }
    let limited = RunConfig { tier: Tier::Interp, max_steps: Some(MAX_STEPS), ..RunConfig::default() };
    // The separate calls must compile and finish; otherwise there is nothing to compare.
    let Ok(sep) = Program::from_source(&gen.separate, "separate.lb") else {
        eprintln!("skipped: the separate calls do not compile");
        return Ok(());
    };
    if let Err(e) = sep.run(&[], &limited) {
        eprintln!("skipped: the separate calls fail: {e}");
        return Ok(());
    }
    let prog = Program::from_source(&gen.both, "vmap.lb").map_err(|e| format!("{e}\n--- program:\n{}", gen.both))?;
    let cfg = RunConfig { tier, jit_threshold: Some(0), ..RunConfig::default() };
    let out = prog.run(&[], &cfg).map_err(|e| format!("{e}\n--- program:\n{}", gen.both))?;
    let loopvm::Value::Tuple(halves) = &out.value else { return Err("the result is not a pair".into()) };
    let (Some(batched), Some(separate)) = (halves.first(), halves.get(1)) else {
        return Err("the result is not a pair".into());
    };
    if let Some(m) = loopvm::diff::compare(separate, batched) {
        return Err(
            format!("vmap differs from separate calls on {}: {m}\n--- program:\n{}", tier.as_str(), gen.both).into()
        );
    }
    if tier != Tier::Interp {
        let reference = prog.run(&[], &RunConfig { tier: Tier::Interp, ..RunConfig::default() })?;
        if let Some(m) = loopvm::diff::compare(&reference.value, &out.value) {
            return Err(format!("{} disagrees with the interpreter: {m}", tier.as_str()).into());
        }
    }
    Ok(())
}
