//! The persistent executable cache against the real CPU plugin: a second
//! back end loads what the first compiled; truncated, corrupted and
//! other-plugin entries, an unwritable folder and several writers at once
//! each give a recompile (at most one warning per back end) and the right
//! result; `set_disk_cache_enabled(false)` bypasses the cache.

use loopvm_jit::xla::disk_cache::DiskCache;
use loopvm_jit::xla::tier::{XlaBackend, XlaMode};
use loopvm_jit::xla::{plugin, Client, Plugin};
use loopvm_runtime::Tensor;
use loopvm_vm::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn client() -> Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let path = plugin::find_or_install_cpu().expect("find or install the CPU plugin");
            Client::new(Plugin::load(path).expect("load the CPU plugin")).expect("create a CPU client")
        })
        .clone()
}

const SRC: &str = "
fn main(x: f32[4]) -> f32[4] {
    let (_, y) = fori_loop(0, 10, |i, (a, acc)| (a, acc * 0.5 + a), (x, x));
    y
}";

fn module() -> Module {
    loopvm_frontend::compile(SRC, "t.lb").map_err(|e| e.render(SRC)).expect("compiles")
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loopvm-jit-disk-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `main` on a fresh back end with the cache in `dir` (or none);
/// returns the result and the back end.
fn run(dir: Option<&Path>, enabled: bool) -> (Vec<Vec<f32>>, XlaBackend) {
    let m = module();
    let mut b = XlaBackend::new(client(), XlaMode::FunctionsAndLoops);
    b.set_disk_cache(dir.map(|d| DiskCache::new(d, 1 << 30)));
    b.set_disk_cache_enabled(enabled);
    let x = Tensor::from_vec(&[4], vec![1.0f32, 2.0, -3.0, 0.25]).expect("tensor");
    let r = {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut b);
        it.call(m.main.expect("main"), &[x]).expect("runs")
    };
    let r = r.iter().map(|t| t.as_slice::<f32>().expect("f32").to_vec()).collect();
    assert_eq!(b.stats.executions, 1, "ran on XLA");
    (r, b)
}

fn reference() -> Vec<Vec<f32>> {
    run(None, true).0
}

fn entries(d: &Path) -> Vec<PathBuf> {
    DiskCache::new(d, 0).list().expect("list").into_iter().map(|e| e.path).collect()
}

#[test]
fn second_backend_loads_instead_of_compiling() {
    let want = reference();
    let d = dir("hit");
    let (r1, b1) = run(Some(&d), true);
    assert_eq!(r1, want);
    assert_eq!((b1.stats.regions_compiled, b1.stats.disk_hits, b1.stats.disk_stores), (1, 0, 1));
    assert_eq!(entries(&d).len(), 1);
    let (r2, b2) = run(Some(&d), true);
    assert_eq!(r2, want);
    assert_eq!((b2.stats.regions_compiled, b2.stats.disk_hits), (0, 1));
    assert!(b2.stats.disk_warnings.is_empty());
    assert!(b2.stats.report().contains("executable cache: 1 regions loaded"), "{}", b2.stats.report());
    // Bypassed: compiles, stores nothing, loads nothing.
    let (r3, b3) = run(Some(&d), false);
    assert_eq!(r3, want);
    assert_eq!((b3.stats.regions_compiled, b3.stats.disk_hits, b3.stats.disk_stores), (1, 0, 0));
    assert!(b3.stats.report().contains("executable cache: off"));
    let _ = std::fs::remove_dir_all(&d);
}

/// Damages the one entry with `damage`, then checks that a back end
/// recompiles with one warning, gives the right result and repairs the entry.
fn damaged(name: &str, damage: impl Fn(&mut Vec<u8>)) {
    let want = reference();
    let d = dir(name);
    run(Some(&d), true);
    let path = entries(&d).pop().expect("an entry");
    let mut bytes = std::fs::read(&path).expect("read");
    damage(&mut bytes);
    std::fs::write(&path, &bytes).expect("write");
    let (r, b) = run(Some(&d), true);
    assert_eq!(r, want, "{name}");
    assert_eq!(b.stats.regions_compiled, 1, "{name}: compiled again");
    assert_eq!(b.stats.disk_warnings.len(), 1, "{name}: one warning: {:?}", b.stats.disk_warnings);
    assert_eq!(b.stats.disk_stores, 1, "{name}: the entry is written again");
    let (r, b) = run(Some(&d), true);
    assert_eq!(r, want);
    assert_eq!((b.stats.disk_hits, b.stats.disk_warnings.len()), (1, 0), "{name}: repaired");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn truncated_entry_recompiles() {
    damaged("truncated", |b| b.truncate(b.len() / 2));
    damaged("truncated-header", |b| b.truncate(10));
    damaged("empty", |b| b.clear());
}

#[test]
fn corrupted_entry_recompiles() {
    // A byte of the serialised executable, and one of the header.
    damaged("corrupted-payload", |b| {
        let n = b.len();
        b[n - 100] ^= 0xff
    });
    damaged("corrupted-magic", |b| b[0] ^= 0xff);
    damaged("garbage", |b| *b = vec![0x5a; 5000]);
}

#[test]
fn other_plugin_version_recompiles() {
    // The identity hash of the header (bytes 44..76) names another plugin.
    damaged("other-plugin", |b| b[44..76].copy_from_slice(&[7; 32]));
}

#[test]
fn unwritable_folder_recompiles_with_one_warning() {
    let want = reference();
    // A "folder" under a regular file can never be created (even by root,
    // for whom permission bits do not stop writes).
    let base = dir("unwritable");
    std::fs::create_dir_all(&base).expect("mkdir");
    let file = base.join("file");
    std::fs::write(&file, b"x").expect("write");
    let d = file.join("executables");
    let (r, b) = run(Some(&d), true);
    assert_eq!(r, want);
    assert_eq!(b.stats.regions_compiled, 1);
    assert_eq!(b.stats.disk_warnings.len(), 1, "{:?}", b.stats.disk_warnings);
    assert!(b.stats.disk_warnings[0].contains("cannot write"), "{:?}", b.stats.disk_warnings);
    // A read-only folder (effective when not running as root).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = base.join("ro");
        std::fs::create_dir_all(&ro).expect("mkdir");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let (r, b) = run(Some(&ro), true);
        assert_eq!(r, want);
        assert!(b.stats.disk_warnings.len() <= 1);
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn concurrent_writers_of_one_entry() {
    let want = reference();
    let d = dir("concurrent");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6).map(|_| s.spawn(|| run(Some(&d), true))).collect();
        hs.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    for (r, b) in &results {
        assert_eq!(r, &want);
        assert!(b.stats.disk_warnings.is_empty(), "{:?}", b.stats.disk_warnings);
    }
    // One entry, no temporary file left over, and it loads.
    let names: Vec<_> = std::fs::read_dir(&d).expect("dir").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let (r, b) = run(Some(&d), true);
    assert_eq!(r, want);
    assert_eq!(b.stats.disk_hits, 1);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn size_cap_evicts() {
    let d = dir("cap");
    run(Some(&d), true);
    let size = DiskCache::new(&d, 0).list().expect("list")[0].size;
    // A cap below one entry: the entry is written, then evicted.
    let m = module();
    let mut b = XlaBackend::new(client(), XlaMode::FunctionsAndLoops);
    b.set_disk_cache(Some(DiskCache::new(&d, size - 1)));
    let mut it = Interpreter::new(&m, RunOptions::default());
    it.set_backend(&mut b);
    let x = Tensor::from_vec(&[4], vec![1.0f32, 2.0, -3.0, 0.25]).expect("tensor");
    it.call(m.main.expect("main"), &[x]).expect("runs");
    drop(it);
    assert!(DiskCache::new(&d, 0).evict(size - 1) <= 1);
    assert!(entries(&d).is_empty());
    let _ = std::fs::remove_dir_all(&d);
}
