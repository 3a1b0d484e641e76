//! Several devices (issue 20): programs partitioned by XLA's SPMD
//! partitioner over the CPU plugin's devices. The tests ask the plugin for 4
//! devices through `RunConfig::devices` (the client option
//! `cpu_device_count`; one process may hold clients of 1 and 4 devices at
//! once) and compare with one device and with the interpreter, floats
//! within `diff::partitioned_tolerance`.

use loopvm::diff::{compare_within, partitioned_tolerance};
use loopvm::{Mesh, MeshAxis, Program, RunConfig, ShardArg, ShardSpec, Tensor, Tier, Value};
#[path = "support/gpt.rs"]
mod gpt;

fn shard(name: &str, axis: usize) -> ShardArg {
    ShardArg { name: name.into(), spec: ShardSpec { axis, mesh_axis: MeshAxis::Data } }
}

fn on(devices: usize, shards: Vec<ShardArg>) -> RunConfig {
    RunConfig { tier: Tier::Xla, devices, shard: shards, no_cache: true, ..RunConfig::default() }
}

fn run(p: &Program, args: &[Tensor], cfg: &RunConfig) -> Value {
    let out = p.run(args, cfg).unwrap_or_else(|e| panic!("{e}"));
    if cfg.tier == Tier::Xla {
        // The whole function ran as one (partitioned) executable.
        assert!(out.fallbacks.is_empty() && out.xla_executions == 1, "{:?}", out.notes);
    }
    out.value
}

fn f32s(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> =
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect();
    Tensor::from_vec(shape, v).unwrap()
}

fn agree(what: &str, want: &Value, got: &Value) {
    if let Some(m) = compare_within(want, got, partitioned_tolerance) {
        panic!("{what}: {m}\nwant {want}\ngot  {got}");
    }
}

/// The RNN of `examples/train_rnn.lb` (its `loss` and `init_params`), 5
/// epochs of SGD on a batch given as arguments, the batch axis (32) split
/// over 4 devices: data parallelism, the scan over time inside each step.
fn rnn_program() -> Program {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/train_rnn.lb")).unwrap();
    let cut = src.find("fn main()").expect("train_rnn.lb has a main");
    let main = r#"
fn main(xs: f32[16, 32, 2], ys: f32[16, 32]) -> f32[5] {
    let (w0, u0, b0, v0) = init_params();
    let (_, losses) = fori_loop(0, 5, |e, ((w, u, b, v), losses)| {
        let (l, (gw, gu, gb, gv)) = value_and_grad(loss, argnums: [0, 1, 2, 3])(w, u, b, v, xs, ys);
        ((w - 0.1 * gw, u - 0.1 * gu, b - 0.1 * gb, v - 0.1 * gv), losses.at[e].set(l))
    }, ((w0, u0, b0, v0), zeros(f32, [5])));
    losses
}
"#;
    Program::from_source(&format!("{}{main}", &src[..cut]), "rnn_dp.lb").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rnn_data_parallel_steps_match_one_device() {
    let p = rnn_program();
    let args = [f32s(&[16, 32, 2], 3), f32s(&[16, 32], 5)];
    let interp = run(&p, &args, &RunConfig { tier: Tier::Interp, ..RunConfig::default() });
    let one = run(&p, &args, &on(1, vec![]));
    let four = run(&p, &args, &on(4, vec![shard("xs", 1), shard("ys", 1)]));
    agree("1 device against the interpreter", &interp, &one);
    agree("4 devices against 1", &one, &four);
    agree("4 devices against the interpreter", &interp, &four);
    let l = four.leaves()[0].as_slice::<f32>().unwrap().to_vec();
    assert!(l[4] < l[0], "the loss falls: {l:?}");
}

/// The GPT of `examples/gpt/gpt.lb` (2 layers, width 16), 3 Adam steps on
/// batches of 8 windows given as arguments, split 2 per device.
fn gpt_program() -> Program {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gpt/gpt.lb")).unwrap();
    let cut = src.find("# ---- configuration").expect("gpt.lb has a configuration section");
    // The batches come as arguments: `batch` (unused, so checked with a
    // symbolic `B`) and `train` are left out.
    let (b0, b1) = (src.find("fn batch(").unwrap(), src.find("# Adam").unwrap());
    let (t0, t1) = (src.find("# `steps` steps of Adam").unwrap(), cut);
    let model = format!("{}{}{}", &src[..b0], &src[b1..t0], &src[t1..cut]);
    let config = r#"
fn main(xs: i32[3, 8, 8], ys: i32[3, 8, 8]) -> f32[3] {
    let params0 = init(key(0));
    let zero = tree_map(|p| 0.0 * p, params0);
    let (_, _, _, losses) = fori_loop(0, 3, |step, (params, m, v, losses)| {
        let (l, g) = value_and_grad(loss)(params, xs[step], ys[step]);
        let (params, m, v) = adam(params, g, m, v, step, 3e-3);
        (params, m, v, losses.at[step].set(l))
    }, (params0, zero, zero, zeros(f32, [3])));
    losses
}
"#;
    Program::from_source(&format!("{model}{}{config}", gpt::INIT), "gpt_dp.lb").unwrap_or_else(|e| panic!("{e}"))
}

/// Windows of 8 tokens (and the next tokens) of a fixed text, mod 16.
fn gpt_batches() -> [Tensor; 2] {
    let text: Vec<i32> = "the quick brown fox jumps over the lazy dog; a loop compiled once, as a loop. "
        .bytes()
        .map(|c| i32::from(c) % 16)
        .collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for s in 0..3 {
        for b in 0..8 {
            let start = (s * 17 + b * 7) % (text.len() - 9);
            x.extend_from_slice(&text[start..start + 8]);
            y.extend_from_slice(&text[start + 1..start + 9]);
        }
    }
    [Tensor::from_vec(&[3, 8, 8], x).unwrap(), Tensor::from_vec(&[3, 8, 8], y).unwrap()]
}

#[test]
fn gpt_data_parallel_steps_match_one_device() {
    let p = gpt_program();
    let args = gpt_batches();
    let one = run(&p, &args, &on(1, vec![]));
    let four = run(&p, &args, &on(4, vec![shard("xs", 1), shard("ys", 1)]));
    agree("4 devices against 1", &one, &four);
    let interp = run(&p, &args, &RunConfig { tier: Tier::Interp, ..RunConfig::default() });
    agree("4 devices against the interpreter", &interp, &four);
}

/// `shard` constraints inside a `scan` body, on a 1-D and a 2-D mesh.
const SCAN_SHARD: &str = r#"
fn main(x: f32[8, 4], w: f32[4, 4]) -> (f32[8, 4], f32[5, 8]) {
    scan(|h, t| {
        let h2 = shard(tanh(h @ w + t), axis: 0, mesh_axis: "data");
        let h3 = shard(h2, axis: 1, mesh_axis: "model");
        (h3, sum(h3, axis: 1))
    }, x, stack([x, x * 0.5, x * 0.25, x * 2.0, -x], axis: 0))
}
"#;

#[test]
fn shard_inside_a_scan_body_runs() {
    let p = Program::from_source(SCAN_SHARD, "scan_shard.lb").unwrap();
    let args = [f32s(&[8, 4], 7), f32s(&[4, 4], 11)];
    let interp = run(&p, &args, &RunConfig { tier: Tier::Interp, ..RunConfig::default() });
    agree("1 device", &interp, &run(&p, &args, &on(1, vec![])));
    agree("data=4", &interp, &run(&p, &args, &on(4, vec![shard("x", 0)])));
    let mesh = RunConfig { mesh: Some(Mesh { data: 2, model: 2 }), ..on(4, vec![shard("x", 0)]) };
    agree("data=2 x model=2", &interp, &run(&p, &args, &mesh));
    // The derivative through `shard` (the cotangent constrained alike), in
    // a scan: tests/spec/grad/shard.lb on 4 devices.
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spec/grad/shard.lb")).unwrap();
    let g = Program::from_source(&src, "grad_shard.lb").unwrap();
    let interp = run(&g, &[], &RunConfig { tier: Tier::Interp, ..RunConfig::default() });
    let mesh = RunConfig { mesh: Some(Mesh { data: 2, model: 2 }), ..on(4, vec![]) };
    agree("grad through shard, data=2 x model=2", &interp, &run(&g, &[], &mesh));
    agree("grad through shard, data=4", &interp, &run(&g, &[], &on(4, vec![])));
}

#[test]
fn an_uneven_split_is_an_error_naming_the_argument_and_the_mesh() {
    let p = Program::from_source("fn main(x: f32[6, 2]) -> f32 { sum(x) }", "uneven.lb").unwrap();
    let e = p.run(&[f32s(&[6, 2], 1)], &on(4, vec![shard("x", 0)])).unwrap_err().to_string();
    assert!(e.contains("argument `x`") && e.contains("6 elements") && e.contains("mesh data=4"), "{e}");
    let e = p.run(&[f32s(&[6, 2], 1)], &on(4, vec![shard("y", 0)])).unwrap_err().to_string();
    assert!(e.contains("no parameter `y`"), "{e}");
    let e = p.run(&[f32s(&[6, 2], 1)], &on(4, vec![shard("x", 2)])).unwrap_err().to_string();
    assert!(e.contains("rank 2"), "{e}");
    let bad_mesh = RunConfig { mesh: Some(Mesh { data: 2, model: 2 }), ..on(8, vec![]) };
    let e = p.run(&[f32s(&[6, 2], 1)], &bad_mesh).unwrap_err().to_string();
    assert!(e.contains("4 devices, but 8"), "{e}");
}

/// A scan whose state is split over `data` by a `shard` constraint.
const DP_SCAN: &str = r#"
fn main(x: f32[8, 4], w: f32[4, 4]) -> f32 {
    let (h, s) = scan(|h, t| {
        let h2 = shard(tanh(h @ w + t), axis: 0);
        (h2, sum(h2))
    }, zeros(f32, [8, 4]), stack([x, x * 0.5, -x], axis: 0));
    sum(s) + sum(h)
}
"#;

fn loopvm(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_loopvm"));
    // A cache folder of its own, and the plugin the tests use (not a second
    // install into that folder).
    let plugin = loopvm_jit::xla::plugin::find_or_install_cpu().expect("the CPU plugin");
    c.args(args)
        .env("LOOPVM_CACHE_DIR", std::env::temp_dir().join(format!("loopvm-devices-cache-{}", std::process::id())))
        .env("LOOPVM_PJRT_PLUGIN", plugin);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The command line: `run`, `emit` and `diff` with `--devices 4 --shard
/// x=0`; XLA's optimised module (dumped with `--xla_dump_to`) keeps the scan
/// as one `while` per partition and holds the all-reduce of the sums.
#[test]
fn the_command_line_partitions_and_loops_stay_rolled() {
    let dir = std::env::temp_dir().join(format!("loopvm-devices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dp.lb");
    std::fs::write(&file, DP_SCAN).unwrap();
    let file = file.to_str().unwrap();
    let x = "x=[[1,2,3,4],[0.5,0,-1,2],[1,1,1,1],[0,0,0,1],[2,1,0,-1],[3,-2,1,0],[0.25,0.5,0.75,1],[-1,-2,-3,-4]]";
    let w = "w=[[0.1,0.2,0.3,0],[0,0.1,0.2,0.3],[0.3,0,0.1,0.2],[0.2,0.3,0,0.1]]";
    let dump = dir.join("dump");
    let flags = format!("--xla_dump_to={} --xla_dump_hlo_as_text", dump.display());
    let common = ["--arg", x, "--arg", w, "--devices", "4", "--shard", "x=0"];
    let (ok, out, err) =
        loopvm(&[&["run", file, "--tier", "xla", "--no-cache"][..], &common[..]].concat(), &[("XLA_FLAGS", &flags)]);
    assert!(ok, "{err}");
    assert!(out.starts_with("f32 "), "{out}");
    assert!(!err.contains("I0000"), "XLA's info lines reach the user: {err}");
    let optimized = std::fs::read_dir(&dump)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("cpu_after_optimizations.txt"))
        .expect("XLA dumped the optimised module");
    let text = std::fs::read_to_string(optimized).unwrap();
    assert_eq!(text.matches(" while(").count(), 1, "{text}");
    assert!(text.contains("all-reduce"), "{text}");
    let (ok, emitted, err) = loopvm(&[&["emit", file][..], &common[..]].concat(), &[]);
    assert!(ok, "{err}");
    assert!(emitted.contains("mhlo.num_partitions = 4") && emitted.contains(r#"sdy.mesh @mesh = <["data"=4]>"#));
    assert!(emitted.contains(r#"%arg0: tensor<8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"data"}, {}]>}"#));
    assert!(emitted.contains("sdy.sharding_constraint"), "{emitted}");
    assert_eq!(emitted.matches("stablehlo.while").count(), 1, "{emitted}");
    let (ok, table, err) = loopvm(&[&["diff", file, "--tiers", "xla"][..], &common[..]].concat(), &[]);
    assert!(ok && table.contains("agrees"), "{table}\n{err}");
    let (ok, _, err) =
        loopvm(&["run", file, "--tier", "xla", "--arg", x, "--arg", w, "--devices", "4", "--shard", "x"], &[]);
    assert!(!ok && err.contains("NAME=AXIS"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("loopvm-devices-cache-{}", std::process::id())));
}

/// Results made by a `shard` constraint stay split on the devices (as
/// `out_shardings` in JAX) and are gathered on download; the others are
/// replicated and read from one device.
const SPLIT_RESULTS: &str = r#"
fn main(x: f32[8, 4], w: f32[4, 6]) -> (f32[8, 6], f32[8, 6], f32) {
    let y = tanh(x @ w);
    (shard(y, axis: 0), shard(y * 2.0, axis: 1, mesh_axis: "model"), sum(y))
}
"#;

#[test]
fn split_results_are_gathered_on_download() {
    let p = Program::from_source(SPLIT_RESULTS, "split_results.lb").unwrap();
    let args = [f32s(&[8, 4], 13), f32s(&[4, 6], 17)];
    let interp = run(&p, &args, &RunConfig { tier: Tier::Interp, ..RunConfig::default() });
    agree("data=4", &interp, &run(&p, &args, &on(4, vec![shard("x", 0)])));
    let mesh = RunConfig { mesh: Some(Mesh { data: 2, model: 2 }), ..on(4, vec![]) };
    agree("data=2 x model=2", &interp, &run(&p, &args, &mesh));
    // Twice: the second run reuses the resident split result buffers' layout.
    agree("data=2 x model=2, again", &interp, &run(&p, &args, &mesh));
    let m = p.module();
    let f = m.main.unwrap();
    let types: Vec<_> = args.iter().map(loopvm_jit::hlo::value_type).collect();
    let o = loopvm_jit::hlo::EmitOptions { mesh: Mesh { data: 2, model: 2 }, ..Default::default() };
    let text = loopvm_jit::xla::tier::emit_sharded_for(m, f, &types, &o, &[]).unwrap();
    let sig = text.lines().find(|l| l.contains("func.func public @main")).unwrap();
    assert!(
        sig.contains(r#"-> (tensor<8x6xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"data"}, {}]>}, tensor<8x6xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"model"}]>}, tensor<f32> {sdy.sharding = #sdy.sharding<@mesh, []>})"#),
        "{sig}"
    );
}
