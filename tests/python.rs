//! The Python package (`python/`, docs/python.md) built and tested as part
//! of `cargo test --workspace`: a virtual environment under the target
//! directory gets maturin, NumPy and pytest from the package index (by
//! name, on first use), maturin builds the extension's wheel (dev profile)
//! and pip installs it there, and pytest runs `python/tests/`. Any failure
//! fails this test; so does a missing `python3` (a skipped suite is not a
//! passed one). The only test pytest may skip is the JAX one, when JAX is
//! not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn work() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python");
    std::fs::create_dir_all(&d).expect("create the Python work directory");
    d
}

/// Runs `cmd`, echoing it and its output; panics unless it succeeds.
fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "{shown} failed with {}:\n{text}", out.status);
    text
}

fn imports(py: &Path, modules: &str) -> bool {
    Command::new(py).args(["-c", &format!("import {modules}")]).output().is_ok_and(|o| o.status.success())
}

/// The venv's python, with maturin, NumPy and pytest installed.
fn venv() -> PathBuf {
    let have_python = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(have_python, "python3 is not installed: the Python package cannot be built or tested");
    let venv = work().join("venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    }
    if !imports(&py, "maturin, numpy, pytest") {
        eprintln!("NOTICE: installing maturin, numpy and pytest into {} (first run only)", venv.display());
        run(Command::new(&py).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "maturin>=1.9,<2",
            "numpy",
            "pytest",
        ]));
    }
    py
}

#[test]
fn python_package() {
    let py = venv();
    let bin = py.parent().expect("venv bin").to_path_buf();
    let wheels = work().join("wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // The dev profile: a release build would add minutes to every CI run.
    run(Command::new(bin.join("maturin"))
        .args(["build", "--quiet", "--interpreter"])
        .arg(&py)
        .arg("--out")
        .arg(&wheels)
        .current_dir(root().join("python"))
        .env("PATH", &path)
        .env("VIRTUAL_ENV", py.parent().and_then(Path::parent).expect("venv"))
        .env("CARGO_TARGET_DIR", work().join("target")));
    let wheel = std::fs::read_dir(&wheels)
        .expect("wheels dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("maturin built no wheel");
    run(Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--force-reinstall", "--no-deps"])
        .arg(&wheel));
    let out = run(Command::new(&py)
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
        .arg(root().join("python/tests"))
        .current_dir(work())
        .env("PATH", &path));
    for line in out.lines().filter(|l| l.starts_with("SKIPPED")) {
        assert!(line.contains("jax"), "pytest skipped a test that must run: {line}");
    }
    assert!(out.contains(" passed"), "pytest ran nothing:\n{out}");
}
