//! Several devices (issue 20): the CPU plugin with 4 devices (its client
//! option `cpu_device_count`, passed by `Client::with_devices`), modules
//! partitioned by XLA's SPMD partitioner from loopvm's sharding annotations.

use loopvm_jit::hlo::{self, EmitOptions, Mesh, MeshAxis, ShardDialect, ShardSpec};
use loopvm_jit::xla::tier::{XlaBackend, XlaMode};
use loopvm_jit::xla::{plugin, Client, Plugin};
use loopvm_runtime::Tensor;
use loopvm_vm::{Interpreter, RunOptions};

fn cpu_plugin() -> Plugin {
    Plugin::load(plugin::find_or_install_cpu().expect("find or install the CPU plugin")).expect("load the CPU plugin")
}

const DATA_PARALLEL: &str = r#"
fn main(x: f32[8, 4], w: f32[4, 3]) -> (f32, f32[8, 3]) {
    let y = tanh(x @ w);
    (sum(y * y), y)
}
"#;

fn f32s(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> =
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect();
    Tensor::from_vec(shape, v).unwrap()
}

fn run_interp(src: &str, args: &[Tensor]) -> Vec<Tensor> {
    let m = loopvm_frontend::compile(src, "t.lb").unwrap();
    let mut it = Interpreter::new(&m, RunOptions::default());
    it.call(m.main.unwrap(), args).unwrap()
}

fn run_xla(
    src: &str,
    args: &[Tensor],
    mesh: Mesh,
    dialect: ShardDialect,
    shards: Vec<Option<ShardSpec>>,
) -> Result<Vec<Tensor>, String> {
    let m = loopvm_frontend::compile(src, "t.lb").unwrap();
    let mut b =
        XlaBackend::new(Client::with_devices(cpu_plugin(), mesh.devices()).unwrap(), XlaMode::FunctionsAndLoops);
    b.set_mesh(mesh).unwrap();
    b.set_shard_dialect(dialect);
    b.set_param_shards(shards);
    let mut it = Interpreter::new(&m, RunOptions::default());
    it.set_backend(&mut b);
    let r = it.call(m.main.unwrap(), args).map_err(|e| e.to_string());
    drop(it);
    assert_eq!(b.stats.functions_run, 1, "{}", b.stats.report());
    r
}

#[test]
fn the_cpu_plugin_gives_four_devices() {
    let c = Client::with_devices(cpu_plugin(), 4).unwrap();
    assert!(c.device_count() >= 4, "{:?}", c.devices());
}

/// Both annotation dialects: the CPU plugin accepts GSPMD's `mhlo.sharding`
/// and Shardy's `sdy.sharding`, and both partition the data-parallel
/// program into the interpreter's answer.
#[test]
fn gspmd_and_shardy_annotations_both_partition() {
    let args = [f32s(&[8, 4], 1), f32s(&[4, 3], 2)];
    let want = run_interp(DATA_PARALLEL, &args);
    let shards = vec![Some(ShardSpec { axis: 0, mesh_axis: MeshAxis::Data }), None];
    let tol = loopvm_runtime::compare::Tolerance { rtol: 1e-4, atol: 1e-5 };
    for d in [ShardDialect::Gspmd, ShardDialect::Shardy] {
        let got = run_xla(DATA_PARALLEL, &args, Mesh::data(4), d, shards.clone()).unwrap();
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(loopvm_runtime::compare::first_difference_with(w, g, tol), None, "{d:?}");
        }
    }
    let m = loopvm_frontend::compile(DATA_PARALLEL, "t.lb").unwrap();
    let types: Vec<_> = args.iter().map(hlo::value_type).collect();
    let text = |shard_dialect| {
        let o = EmitOptions { mesh: Mesh::data(4), shard_dialect, ..Default::default() };
        loopvm_jit::xla::tier::emit_sharded_for(&m, m.main.unwrap(), &types, &o, &shards).unwrap()
    };
    let g = text(ShardDialect::Gspmd);
    assert!(
        g.contains("mhlo.num_partitions = 4")
            && g.contains(r#"%arg0: tensor<8x4xf32> {mhlo.sharding = "{devices=[4,1]0,1,2,3}"}"#),
        "{g}"
    );
    let s = text(ShardDialect::Shardy);
    assert!(
        s.contains(r#"sdy.mesh @mesh = <["data"=4]>"#)
            && s.contains(r#"{sdy.sharding = #sdy.sharding<@mesh, [{"data"}, {}]>}"#),
        "{s}"
    );
}

/// Fewer devices than the mesh needs is an error, not a crash.
#[test]
fn a_mesh_larger_than_the_client_is_an_error() {
    let mut b = XlaBackend::new(Client::with_devices(cpu_plugin(), 2).unwrap(), XlaMode::FunctionsAndLoops);
    let e = b.set_mesh(Mesh { data: 4, model: 2 }).unwrap_err().to_string();
    assert!(e.contains("8 devices"), "{e}");
}
