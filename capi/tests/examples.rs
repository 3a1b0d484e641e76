//! Builds and runs the host programs of `examples/embed/` against the
//! library this package just built: the C program (with the shared and the
//! static library, under valgrind and under AddressSanitizer), the C++
//! program, and the Python script (ctypes and NumPy; NumPy is installed into
//! a virtual environment under the target directory on first use).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The profile directory (`target/debug`) holding `libloopvm_capi.{so,a}`:
/// this test binary lives in its `deps/`.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps.parent().expect("profile dir"), deps] {
        if dir.join(so_name()).exists() {
            return dir.to_path_buf();
        }
    }
    panic!("{} not found next to {}", so_name(), exe.display());
}

fn so_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libloopvm_capi.dylib"
    } else {
        "libloopvm_capi.so"
    }
}

/// Where the example binaries go.
fn out_dir() -> PathBuf {
    let d = lib_dir().join("embed-examples");
    std::fs::create_dir_all(&d).expect("create embed-examples dir");
    d
}

fn embed(file: &str) -> PathBuf {
    root().join("examples/embed").join(file)
}

fn program() -> String {
    embed("decay.lb").display().to_string()
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd.current_dir(root()).output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    eprintln!("$ {shown}\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(out.status.success(), "{shown} failed with {}", out.status);
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Compiles a host program: `compiler` is `cc` or `c++`; `extra` go first
/// (sanitizer flags), `link` last.
fn build(compiler: &str, src: &str, exe: &str, extra: &[&str], link: &[String]) -> PathBuf {
    let out = out_dir().join(exe);
    let std = if compiler == "c++" { "-std=c++17" } else { "-std=c11" };
    let mut cmd = Command::new(compiler);
    cmd.args(extra)
        .args([std, "-g", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(embed(src))
        .arg("-I")
        .arg(root().join("capi/include"))
        .arg("-o")
        .arg(&out)
        .args(link);
    run_ok(&mut cmd);
    out
}

fn dynamic_link() -> Vec<String> {
    let d = lib_dir().display().to_string();
    vec![format!("-L{d}"), "-lloopvm_capi".into(), format!("-Wl,-rpath,{d}")]
}

/// What every host prints for the two threads.
const THREAD0: &str = "thread 0: (f32[3] [4.5, 6.0, 7.5], f32[2, 3] [[1.0, 2.0, 3.0], [4.5, 6.0, 7.5]])";
const THREAD1: &str = "thread 1: (f32[3] [3.0, 3.0, 3.0], f32[2, 3] [[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]])";

fn check_threads(out: &str) {
    assert!(out.contains("fn main(xs: f32[T, 3], decay: f32) -> (f32[3], f32[T, 3])"), "{out}");
    assert!(out.contains(THREAD0), "{out}");
    assert!(out.contains(THREAD1), "{out}");
}

fn check_c_output(out: &str) {
    check_threads(out);
    for line in [
        "bad source: LOOPVM_ERR_COMPILE: error: cannot use integer literal 1 as bool",
        "broken.lb:1:20",
        "unknown function: LOOPVM_ERR_ARGUMENT: error: argument: no function named `nope`",
        "wrong dtype: LOOPVM_ERR_ARGUMENT: error: argument: `xs` must be f32[T, 3], got i32[2, 3]",
        "step limit: LOOPVM_ERR_LIMIT: error: step limit exceeded",
        "error paths: 0 unexpected",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}

fn c_host() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| build("cc", "host.c", "host_c", &[], &dynamic_link()))
}

#[test]
fn c_host_with_the_shared_library() {
    let out = run_ok(Command::new(c_host()).arg(program()));
    check_c_output(&out);
}

#[test]
fn c_host_with_the_static_library() {
    let a = lib_dir().join("libloopvm_capi.a").display().to_string();
    let exe = build("cc", "host.c", "host_c_static", &[], &[a, "-lpthread".into(), "-ldl".into(), "-lm".into()]);
    let out = run_ok(Command::new(exe).arg(program()));
    check_c_output(&out);
}

#[test]
fn cpp_host() {
    let exe = build("c++", "host.cpp", "host_cpp", &[], &dynamic_link());
    let out = run_ok(Command::new(exe).arg(program()));
    check_threads(&out);
    assert!(out.contains("unknown function: LOOPVM_ERR_ARGUMENT: error: argument: no function named `nope`"), "{out}");
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The C host (success and error paths) under valgrind's memcheck: no leak,
/// no invalid access. `examples/embed/valgrind.supp` holds the one
/// suppression, for a block of Rust's standard library (see the file).
#[test]
fn c_host_under_valgrind() {
    if !have("valgrind") {
        eprintln!("NOTICE: valgrind is not installed; skipping (c_host_under_asan still checks memory)");
        assert!(have("cc"), "neither valgrind nor a C compiler");
        return;
    }
    let supp = embed("valgrind.supp");
    let out = run(Command::new("valgrind")
        .args(["--leak-check=full", "--errors-for-leak-kinds=definite,indirect,possible", "--error-exitcode=99"])
        .arg(format!("--suppressions={}", supp.display()))
        .arg(c_host())
        .arg(program()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "valgrind found errors:\n{stderr}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(stderr.contains("definitely lost: 0 bytes") || stderr.contains("All heap blocks were freed"), "{stderr}");
    check_c_output(&String::from_utf8_lossy(&out.stdout));
}

/// The C host built with AddressSanitizer (and LeakSanitizer): no invalid
/// access, no leak.
#[test]
fn c_host_under_asan() {
    let probe = out_dir().join("asan_probe");
    let ok = Command::new("cc")
        .args(["-fsanitize=address", "-x", "c", "-", "-o"])
        .arg(&probe)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b"int main(void) { return 0; }\n")?;
            c.wait()
        })
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("NOTICE: the C compiler cannot build with -fsanitize=address (no libasan); skipping");
        assert!(have("valgrind"), "neither valgrind nor AddressSanitizer is available");
        return;
    }
    let exe = build("cc", "host.c", "host_c_asan", &["-fsanitize=address", "-fno-omit-frame-pointer"], &dynamic_link());
    let out = run(Command::new(exe).arg(program()).env("ASAN_OPTIONS", "detect_leaks=1:exitcode=99"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "AddressSanitizer found errors:\n{stderr}");
    assert!(!stderr.contains("ERROR: AddressSanitizer") && !stderr.contains("ERROR: LeakSanitizer"), "{stderr}");
    check_c_output(&String::from_utf8_lossy(&out.stdout));
}

/// A Python with NumPy: the system one if it has NumPy, else a virtual
/// environment under the target directory with NumPy installed by pip on
/// first use. Panics (the test fails) when neither can be had: a skipped
/// host is not a passed one.
fn python_with_numpy() -> PathBuf {
    let has_numpy =
        |py: &Path| Command::new(py).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    let system = PathBuf::from("python3");
    assert!(have("python3"), "python3 is not installed: the Python host cannot run");
    if has_numpy(&system) {
        return system;
    }
    let venv = lib_dir().join("embed-venv");
    let py = venv.join("bin/python");
    if py.exists() && has_numpy(&py) {
        return py;
    }
    eprintln!("NOTICE: installing NumPy into {} for the Python host (first run only)", venv.display());
    let made = run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    assert!(made.status.success(), "python3 -m venv failed:\n{}", String::from_utf8_lossy(&made.stderr));
    let pip = run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "numpy"]));
    assert!(pip.status.success(), "pip install numpy failed:\n{}", String::from_utf8_lossy(&pip.stderr));
    assert!(has_numpy(&py), "NumPy does not import in {}", py.display());
    py
}

#[test]
fn python_host() {
    let py = python_with_numpy();
    let out = run_ok(Command::new(py).arg(embed("host.py")).arg(lib_dir().join(so_name())).arg(program()));
    check_threads(&out);
    assert!(out.contains("thread 0: last = [4.5, 6.0, 7.5] states.shape = (2, 3)"), "{out}");
    assert!(out.contains("unknown function: LOOPVM_ERR_ARGUMENT: error: argument: no function named `nope`"), "{out}");
}
