//! The PJRT binding against the real CPU plugin (`xla-cpu-pjrt`), installed
//! into loopvm's cache with pip on first use when it is not found.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Instant;

use loopvm_jit::xla::plugin::{self, PluginKind, PluginStatus};
use loopvm_jit::xla::{Buffer, Client, ElementType, ErrorCode, Plugin, XlaError, HEADER_API_MINOR, STRUCT_SIZES};

/// One client for the whole test binary (the plugin is loaded once anyway).
fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let t = Instant::now();
        let path = plugin::find_or_install_cpu().expect("find or install the CPU plugin");
        let found = t.elapsed();
        let t = Instant::now();
        let plugin = Plugin::load(&path).expect("load the CPU plugin");
        let loaded = t.elapsed();
        let t = Instant::now();
        let client = Client::new(plugin).expect("create a CPU client");
        eprintln!(
            "[timing] find/install {found:?}, plugin load+init {loaded:?}, client create {:?} ({}, API {})",
            t.elapsed(),
            path.display(),
            plugin.api_version()
        );
        client
    })
}

fn f32s(b: &Buffer) -> Vec<f32> {
    b.to_host().unwrap().chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().unwrap())).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// `fori_loop(0, n, lambda i, acc: acc + x * i, zeros(4))`, as JAX lowers it:
/// the captured `x` and the bound `n` travel as loop-invariant carries.
const WHILE_SUM: &str = r#"module @jit_loop attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32} {
  func.func public @main(%arg0: tensor<i32>, %arg1: tensor<4xf32>) -> (tensor<4xf32> {jax.result_info = "result"}) {
    %c = stablehlo.constant dense<0> : tensor<i32>
    %cst = stablehlo.constant dense<0.000000e+00> : tensor<4xf32>
    %0:4 = stablehlo.while(%iterArg = %c, %iterArg_0 = %arg0, %iterArg_1 = %arg1, %iterArg_2 = %cst) : tensor<i32>, tensor<i32>, tensor<4xf32>, tensor<4xf32>
    cond {
      %1 = stablehlo.compare  LT, %iterArg, %iterArg_0,  SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %1 : tensor<i1>
    } do {
      %1 = stablehlo.convert %iterArg : (tensor<i32>) -> tensor<f32>
      %2 = stablehlo.broadcast_in_dim %1, dims = [] : (tensor<f32>) -> tensor<4xf32>
      %3 = stablehlo.multiply %iterArg_1, %2 : tensor<4xf32>
      %4 = stablehlo.add %iterArg_2, %3 : tensor<4xf32>
      %c_3 = stablehlo.constant dense<1> : tensor<i32>
      %5 = stablehlo.add %iterArg, %c_3 : tensor<i32>
      stablehlo.return %5, %iterArg_0, %iterArg_1, %4 : tensor<i32>, tensor<i32>, tensor<4xf32>, tensor<4xf32>
    }
    return %0#3 : tensor<4xf32>
  }
}
"#;

/// A counter loop returning two results: the final counter and the carry.
const WHILE_TWO_RESULTS: &str = r#"module @jit_count {
  func.func public @main(%arg0: tensor<i32>) -> (tensor<i32>, tensor<2x2xf64>) {
    %c = stablehlo.constant dense<0> : tensor<i32>
    %cst = stablehlo.constant dense<1.000000e+00> : tensor<2x2xf64>
    %0:3 = stablehlo.while(%iterArg = %c, %iterArg_0 = %arg0, %iterArg_1 = %cst) : tensor<i32>, tensor<i32>, tensor<2x2xf64>
    cond {
      %1 = stablehlo.compare  LT, %iterArg, %iterArg_0,  SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %1 : tensor<i1>
    } do {
      %1 = stablehlo.add %iterArg_1, %iterArg_1 : tensor<2x2xf64>
      %c_2 = stablehlo.constant dense<1> : tensor<i32>
      %2 = stablehlo.add %iterArg, %c_2 : tensor<i32>
      stablehlo.return %2, %iterArg_0, %1 : tensor<i32>, tensor<i32>, tensor<2x2xf64>
    }
    return %0#0, %0#2 : tensor<i32>, tensor<2x2xf64>
  }
}
"#;

#[test]
fn while_loop_sums_for_n_iterations() {
    let client = client();
    let t = Instant::now();
    let exe = client.compile(WHILE_SUM).expect("compile the while loop");
    eprintln!("[timing] compile one-while module: {:?}", t.elapsed());
    assert_eq!(exe.num_outputs(), 1);
    let x = [1.0f32, -2.0, 0.5, 3.0];
    let xb = client.buffer_from_host(&f32_bytes(&x), &[4], ElementType::F32).unwrap();
    for n in [0i32, 1, 5, 1000] {
        let nb = client.buffer_from_host(&n.to_ne_bytes(), &[], ElementType::S32).unwrap();
        let t = Instant::now();
        let out = exe.execute(&[&nb, &xb]).expect("execute");
        let took = t.elapsed();
        if n == 1000 {
            eprintln!("[timing] execute (n = 1000, incl. await): {took:?}");
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].dims().unwrap(), vec![4]);
        assert_eq!(out[0].element_type().unwrap(), ElementType::F32);
        // sum_{i<n} i * x = x * n (n - 1) / 2, exact in f32 for these values.
        let tri = (n as f32) * (n as f32 - 1.0) / 2.0;
        let tri = if n == 0 { 0.0 } else { tri };
        let want: Vec<f32> = x.iter().map(|v| v * tri).collect();
        assert_eq!(f32s(&out[0]), want, "n = {n}");
    }
    // The arguments are not donated: still readable, unchanged.
    assert_eq!(f32s(&xb), x);

    // Per-call overhead of a small executable, for the record.
    let nb = client.buffer_from_host(&3i32.to_ne_bytes(), &[], ElementType::S32).unwrap();
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        exe.execute(&[&nb, &xb]).unwrap();
    }
    eprintln!("[timing] execute (n = 3) mean over {reps} calls: {:?}", t.elapsed() / reps);
}

#[test]
fn while_loop_with_two_results() {
    let client = client();
    let exe = client.compile(WHILE_TWO_RESULTS).unwrap();
    assert_eq!(exe.num_outputs(), 2);
    let nb = client.buffer_from_host(&10i32.to_ne_bytes(), &[], ElementType::S32).unwrap();
    let out = exe.execute(&[&nb]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].element_type().unwrap(), ElementType::S32);
    assert_eq!(out[0].dims().unwrap(), Vec::<usize>::new());
    assert_eq!(out[0].to_host().unwrap(), 10i32.to_ne_bytes());
    assert_eq!(out[1].element_type().unwrap(), ElementType::F64);
    assert_eq!(out[1].dims().unwrap(), vec![2, 2]);
    let got: Vec<f64> =
        out[1].to_host().unwrap().chunks_exact(8).map(|c| f64::from_ne_bytes(c.try_into().unwrap())).collect();
    assert_eq!(got, vec![1024.0; 4]);
}

/// Host bytes of `n` sample elements of `ty`.
fn sample(ty: ElementType, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| -> Vec<u8> {
            let v = i as i64 * 7 - 9;
            match ty {
                ElementType::Pred => vec![(i % 3 == 0) as u8],
                ElementType::S32 => (v as i32 * 100_003).to_ne_bytes().to_vec(),
                ElementType::S64 => (v * 1_000_000_007_000).to_ne_bytes().to_vec(),
                ElementType::F32 => (v as f32 * 0.37).to_ne_bytes().to_vec(),
                ElementType::F64 => (v as f64 * 1e-300).to_ne_bytes().to_vec(),
                other => panic!("no sample for {other:?}"),
            }
        })
        .collect()
}

#[test]
fn transfers_round_trip_for_each_dtype() {
    let client = client();
    let types = [ElementType::Pred, ElementType::S32, ElementType::S64, ElementType::F32, ElementType::F64];
    for ty in types {
        for dims in [vec![], vec![0], vec![5], vec![2, 3], vec![2, 1, 3]] {
            let n: usize = dims.iter().product();
            let data = sample(ty, n);
            let buf = client.buffer_from_host(&data, &dims, ty).unwrap();
            assert_eq!(buf.element_type().unwrap(), ty, "{ty:?} {dims:?}");
            assert_eq!(buf.dims().unwrap(), dims, "{ty:?} {dims:?}");
            assert_eq!(buf.to_host().unwrap(), data, "{ty:?} {dims:?}");
            assert!(buf.on_device_size_in_bytes().unwrap() >= data.len());
        }
        // Through a program too: the device sees the same layout.
        let t = format!("tensor<2x3x{}>", ty.mlir_name());
        let op = if ty == ElementType::Pred { "stablehlo.not %arg0" } else { "stablehlo.add %arg0, %arg0" };
        let module = format!(
            "module @m {{\n  func.func public @main(%arg0: {t}) -> {t} {{\n    %0 = {op} : {t}\n    return %0 : {t}\n  }}\n}}\n"
        );
        let exe = client.compile(&module).unwrap_or_else(|e| panic!("{ty:?}: {e}\n{module}"));
        let data = sample(ty, 6);
        let buf = client.buffer_from_host(&data, &[2, 3], ty).unwrap();
        let out = exe.execute(&[&buf]).unwrap().pop().unwrap();
        let got = out.to_host().unwrap();
        let want: Vec<u8> = match ty {
            ElementType::Pred => data.iter().map(|&b| (b == 0) as u8).collect(),
            ElementType::S32 => data
                .chunks_exact(4)
                .flat_map(|c| i32::from_ne_bytes(c.try_into().unwrap()).wrapping_mul(2).to_ne_bytes())
                .collect(),
            ElementType::S64 => data
                .chunks_exact(8)
                .flat_map(|c| i64::from_ne_bytes(c.try_into().unwrap()).wrapping_mul(2).to_ne_bytes())
                .collect(),
            ElementType::F32 => data
                .chunks_exact(4)
                .flat_map(|c| (f32::from_ne_bytes(c.try_into().unwrap()) * 2.0).to_ne_bytes())
                .collect(),
            ElementType::F64 => data
                .chunks_exact(8)
                .flat_map(|c| (f64::from_ne_bytes(c.try_into().unwrap()) * 2.0).to_ne_bytes())
                .collect(),
            _ => unreachable!(),
        };
        assert_eq!(got, want, "{ty:?} through a program");
    }
}

#[test]
fn tensors_round_trip_for_each_dtype() {
    use loopvm_runtime::{bf16, f16, DType, Tensor};
    let client = client();
    let tensors = [
        Tensor::from_vec(&[2, 2], vec![true, false, false, true]).unwrap(),
        Tensor::from_vec(&[3], vec![i32::MIN, 0, i32::MAX]).unwrap(),
        Tensor::from_vec(&[1, 3], vec![i64::MIN, -1, i64::MAX]).unwrap(),
        Tensor::from_vec(&[3], vec![0u32, 0x8000_0000, u32::MAX]).unwrap(),
        Tensor::from_vec(&[3], vec![0u8, 128, 255]).unwrap(),
        Tensor::from_vec(&[3], vec![bf16::from_f32(-1.5), bf16::INFINITY, bf16::from_bits(1)]).unwrap(),
        Tensor::from_vec(&[2, 2], vec![f16::MAX, f16::from_bits(1), f16::NEG_ZERO, f16::from_f32(0.1)]).unwrap(),
        Tensor::scalar(f32::MIN_POSITIVE),
        Tensor::from_vec(&[2, 0], Vec::<f64>::new()).unwrap(),
        Tensor::from_vec(&[2], vec![f64::NEG_INFINITY, 1e-310]).unwrap(),
    ];
    for t in tensors {
        let b = client.buffer_from_tensor(&t).unwrap();
        assert_eq!(b.element_type().unwrap(), ElementType::from(t.dtype()));
        let back = b.to_tensor().unwrap();
        assert_eq!(back.dtype(), t.dtype());
        assert_eq!(back.shape(), t.shape());
        match t.dtype() {
            DType::Bool => assert_eq!(back.as_slice::<bool>(), t.as_slice::<bool>()),
            DType::I32 => assert_eq!(back.as_slice::<i32>(), t.as_slice::<i32>()),
            DType::I64 => assert_eq!(back.as_slice::<i64>(), t.as_slice::<i64>()),
            DType::U32 => assert_eq!(back.as_slice::<u32>(), t.as_slice::<u32>()),
            DType::U8 => assert_eq!(back.as_slice::<u8>(), t.as_slice::<u8>()),
            DType::F32 => assert_eq!(back.as_slice::<f32>(), t.as_slice::<f32>()),
            DType::F64 => assert_eq!(back.as_slice::<f64>(), t.as_slice::<f64>()),
            DType::BF16 => assert_eq!(back.as_slice::<bf16>(), t.as_slice::<bf16>()),
            DType::F16 => assert_eq!(back.as_slice::<f16>(), t.as_slice::<f16>()),
        }
    }
}

#[test]
fn a_host_buffer_of_the_wrong_size_is_rejected() {
    let err = client().buffer_from_host(&[0u8; 12], &[4], ElementType::F32).unwrap_err();
    assert!(matches!(err, XlaError::InvalidArgument(_)), "{err}");
}

#[test]
fn invalid_mlir_is_an_error_with_the_plugin_message() {
    let client = client();
    let err = client.compile("module @m { this is not stablehlo }").unwrap_err();
    eprintln!("syntax error: {err}");
    let XlaError::Pjrt { op, code, message } = &err else { panic!("not a PJRT error: {err}") };
    assert_eq!(*op, "PJRT_Client_Compile");
    // The CPU plugin reports parse failures as UNKNOWN, with MLIR's
    // diagnostic (line:column) as the message.
    assert!(matches!(code, ErrorCode::Unknown | ErrorCode::InvalidArgument), "{err}");
    assert!(message.contains("error"), "{message}");
    assert!(message.contains("this"), "the diagnostic names the bad token: {message}");

    // Well-formed MLIR that does not verify (f32 + i32).
    let bad_types = "module @m {\n  func.func public @main(%arg0: tensor<f32>, %arg1: tensor<i32>) -> tensor<f32> {\n    %0 = stablehlo.add %arg0, %arg1 : (tensor<f32>, tensor<i32>) -> tensor<f32>\n    return %0 : tensor<f32>\n  }\n}\n";
    let err = client.compile(bad_types).unwrap_err();
    eprintln!("type error: {err}");
    assert!(err.code().is_some(), "{err}");

    // The client still works afterwards.
    let exe = client.compile(WHILE_SUM).unwrap();
    assert_eq!(exe.num_outputs(), 1);
}

#[test]
fn executing_with_wrong_arguments_is_an_error() {
    let client = client();
    let exe = client.compile(WHILE_SUM).unwrap();
    let nb = client.buffer_from_host(&3i32.to_ne_bytes(), &[], ElementType::S32).unwrap();
    // One argument instead of two.
    let err = exe.execute(&[&nb]).unwrap_err();
    eprintln!("wrong arity: {err}");
    assert!(err.code().is_some(), "{err}");
}

#[test]
fn a_missing_plugin_is_a_clear_error() {
    let err = Plugin::load("/nonexistent/dir/pjrt_plugin.so").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/nonexistent/dir/pjrt_plugin.so"), "{text}");
    assert!(text.contains("loopvm plugin install cpu"), "{text}");
    assert!(text.contains("LOOPVM_PJRT_PLUGIN"), "{text}");
}

#[test]
fn a_library_that_is_no_plugin_is_a_clear_error() {
    let candidates = ["/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6"];
    let Some(libm) = candidates.iter().map(Path::new).find(|p| p.is_file()) else {
        eprintln!("skipped: no libm found");
        return;
    };
    let err = Plugin::load(libm).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, XlaError::PluginLoad { .. }), "{text}");
    assert!(text.contains("GetPjrtApi"), "{text}");
    assert!(text.contains("loopvm plugin install cpu"), "{text}");
}

#[test]
fn platform_devices_and_version() {
    let client = client();
    assert_eq!(client.platform_name(), "cpu");
    let devices = client.devices().unwrap();
    assert!(!devices.is_empty());
    eprintln!("devices: {devices:?}");
    let plugin = client.plugin();
    assert_eq!(plugin.api_version().major, 0);
    eprintln!("API {}, platform version {:?}", plugin.api_version(), client.platform_version());
    let attrs = plugin.attributes().unwrap();
    eprintln!("attributes: {attrs:?}");
    // Loading the same plugin again returns the same one (no re-initialise).
    let again = Plugin::load(plugin.path()).unwrap();
    assert_eq!(again.path(), plugin.path());
}

#[test]
fn list_reports_the_cpu_plugin() {
    let path = plugin::find_or_install_cpu().unwrap();
    let _ = client();
    let reports = plugin::list();
    let canonical = path.canonicalize().unwrap();
    let report = reports
        .iter()
        .find(|r| r.found.path.canonicalize().ok().as_ref() == Some(&canonical))
        .unwrap_or_else(|| panic!("{} not listed in {reports:?}", path.display()));
    match &report.status {
        PluginStatus::Ok(d) => {
            assert_eq!(d.platform_name, "cpu");
            assert!(!d.devices.is_empty());
            eprintln!(
                "listed: {} {} API {} {:?}",
                report.found.path.display(),
                d.platform_name,
                d.api_version,
                d.devices[0]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn buffers_of_another_client_are_rejected() {
    let client = client();
    let other = Client::new(client.plugin()).unwrap();
    let exe = client.compile(WHILE_TWO_RESULTS).unwrap();
    let nb = other.buffer_from_host(&1i32.to_ne_bytes(), &[], ElementType::S32).unwrap();
    let err = exe.execute(&[&nb]).unwrap_err();
    assert!(matches!(err, XlaError::InvalidArgument(_)), "{err}");
}

#[test]
fn one_executable_runs_on_several_threads() {
    let client = client();
    let exe = Arc::new(client.compile(WHILE_TWO_RESULTS).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let exe = exe.clone();
            let client = client.clone();
            std::thread::spawn(move || {
                for n in 0..20i32 {
                    let n = n + t;
                    let nb = client.buffer_from_host(&n.to_ne_bytes(), &[], ElementType::S32).unwrap();
                    let out = exe.execute(&[&nb]).unwrap();
                    assert_eq!(out[0].to_host().unwrap(), n.to_ne_bytes());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A fresh folder under the system temp folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("loopvm-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn concurrent_installs_do_not_corrupt_the_cache() {
    let cache = TempDir::new("install-race");
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            let cache = cache.0.clone();
            std::thread::spawn(move || {
                barrier.wait();
                plugin::install_into(&cache, PluginKind::Cpu, PluginKind::Cpu.wheel())
            })
        })
        .collect();
    let paths: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap().expect("install")).collect();
    eprintln!("[timing] {threads} concurrent installs: {:?}", t.elapsed());
    let want = plugin::installed_path(&cache.0, PluginKind::Cpu);
    assert!(paths.iter().all(|p| *p == want), "{paths:?}");
    // A complete shared library, the same size as the one in use.
    let bytes = std::fs::read(&want).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    let in_use = std::fs::metadata(client().plugin().path()).unwrap().len();
    assert_eq!(bytes.len() as u64, in_use);
    // Nothing left over: only the lock and the one install folder.
    let mut entries: Vec<String> = std::fs::read_dir(cache.0.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, vec![".lock".to_string(), "cpu".to_string()]);
    // Installing again is a no-op that returns the same path.
    let t = Instant::now();
    assert_eq!(plugin::install_into(&cache.0, PluginKind::Cpu, "no-such-wheel-needed").unwrap(), want);
    assert!(t.elapsed().as_millis() < 1000);
}

#[test]
fn a_failing_pip_install_is_an_error_and_leaves_nothing_behind() {
    let cache = TempDir::new("install-fail");
    let missing_wheel = cache.0.join("no-such-plugin-0.0.0-py3-none-any.whl");
    let err = plugin::install_into(&cache.0, PluginKind::Cpu, missing_wheel.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, XlaError::Install { .. }), "{err}");
    let entries: Vec<_> = std::fs::read_dir(cache.0.join("plugins")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from(".lock")]);
}

#[test]
fn plugin_kinds_parse_and_locate() {
    for kind in PluginKind::ALL {
        assert_eq!(kind.name().parse::<PluginKind>().unwrap(), kind);
        assert_eq!(PluginKind::of_path(&Path::new("/x/site-packages").join(kind.relative_path())), Some(kind));
    }
    assert!("gpu".parse::<PluginKind>().is_err());
    assert_eq!(PluginKind::Cpu.wheel(), "xla-cpu-pjrt");
}

/// Recomputes every struct size this binding uses from the header shipped
/// in the installed CPU wheel, with the system C compiler, whatever the
/// header's version: `PJRT_STRUCT_SIZE(struct, the binding's last field)`
/// (structs only grow, so any header at least as new as the binding's
/// gives the binding's size; an older one lacks a field and fails to
/// compile, which fails the test). No header or no compiler fails it too.
#[test]
fn struct_sizes_match_the_installed_header() {
    let plugin_path = plugin::find_or_install_cpu().unwrap();
    let header = plugin_path.parent().unwrap().join("include").join("pjrt_c_api.h");
    let text = std::fs::read_to_string(&header)
        .unwrap_or_else(|e| panic!("the CPU wheel ships no header at {}: {e}", header.display()));
    let minor = text
        .lines()
        .find_map(|l| l.strip_prefix("#define PJRT_API_MINOR "))
        .and_then(|v| v.trim().parse::<i32>().ok())
        .expect("PJRT_API_MINOR in the header");
    assert!(
        minor >= HEADER_API_MINOR,
        "the installed header is API 0.{minor}, older than the binding's 0.{HEADER_API_MINOR}"
    );
    let dir = TempDir::new("struct-sizes");
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"pjrt_c_api.h\"\nint main(void) {\n");
    for (name, last, _) in STRUCT_SIZES {
        // Rust spells a keyword field `type_`; the header spells it `type`.
        let c_last = last.strip_suffix('_').unwrap_or(last);
        let expr = format!("PJRT_STRUCT_SIZE({name}, {c_last})");
        c.push_str(&format!("  printf(\"{name} %zu\\n\", (size_t)({expr}));\n"));
    }
    c.push_str("  return 0;\n}\n");
    let src = dir.0.join("sizes.c");
    let exe = dir.0.join("sizes");
    std::fs::write(&src, c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc).arg("-I").arg(header.parent().unwrap()).arg(&src).arg("-o").arg(&exe).status();
    assert!(status.as_ref().is_ok_and(|s| s.success()), "`{cc}` could not compile the size probe: {status:?}");
    let out = Command::new(&exe).output().unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let mut checked = 0;
    for line in out.lines() {
        let (name, size) = line.split_once(' ').unwrap();
        let ours = STRUCT_SIZES.iter().find(|(n, _, _)| *n == name).unwrap().2;
        assert_eq!(ours, size.parse::<usize>().unwrap(), "{name}_STRUCT_SIZE");
        checked += 1;
    }
    assert_eq!(checked, STRUCT_SIZES.len());
    eprintln!("{checked} struct sizes match {} (API 0.{minor})", header.display());
}

/// The CPU plugin's extension chain holds the PJRT FFI extension with
/// `register_handler` (48 bytes at API 0.81), which host callbacks for
/// `print` on XLA need (issue 17).
#[test]
fn cpu_plugin_has_the_ffi_extension() {
    let p = client().plugin();
    assert!(p.has_ffi_extension(), "extensions: {:?}", p.extensions());
}

/// An executable survives `PJRT_Executable_Serialize` and
/// `PJRT_Executable_DeserializeAndLoad`, and garbage is an error, not a crash.
#[test]
fn serialize_and_deserialize_an_executable() {
    let exe = client()
        .compile(
            "module @m { func.func public @main(%x: tensor<f32>) -> tensor<f32> {
               %0 = stablehlo.add %x, %x : tensor<f32>
               return %0 : tensor<f32> } }",
        )
        .expect("compile");
    let bytes = exe.serialize().expect("serialize");
    let back = client().deserialize(&bytes).expect("deserialize");
    let x = client().buffer_from_host(&2.5f32.to_ne_bytes(), &[], ElementType::F32).expect("buffer");
    assert_eq!(f32s(&back.execute(&[&x]).expect("run")[0]), vec![5.0]);
    assert!(client().deserialize(b"not an executable").is_err());
}
