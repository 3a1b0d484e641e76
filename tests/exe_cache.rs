//! The persistent executable cache through the CLI: cold and warm runs,
//! several processes filling one entry at once, a damaged entry (one warning
//! line, the same result), `--no-cache` and `loopvm cache list|clear|stats`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn plugin_path() -> PathBuf {
    loopvm_jit::xla::plugin::find_or_install_cpu().expect("the CPU plugin")
}

fn loopvm(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopvm"))
        .args(args)
        .env("LOOPVM_CACHE_DIR", cache)
        .env("LOOPVM_PJRT_PLUGIN", plugin_path())
        .output()
        .expect("run loopvm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loopvm-exe-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

const RUN: &[&str] = &["run", "examples/first.lb", "--tier", "xla", "--stats"];

fn entry_files(cache: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(cache.join("executables")) else { return Vec::new() };
    rd.flatten().map(|e| e.path()).collect()
}

#[test]
fn cold_then_warm_then_damaged() {
    let cache = dir("cli");
    let cold = loopvm(&cache, RUN);
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    let want = text(&cold.stdout);
    assert_eq!(want.trim(), "i32[1] [51]");
    assert!(text(&cold.stderr).contains("executable cache: 0 regions loaded"), "{}", text(&cold.stderr));
    assert!(text(&cold.stderr).contains("1 stored"), "{}", text(&cold.stderr));

    let warm = loopvm(&cache, RUN);
    assert_eq!(text(&warm.stdout), want);
    assert!(text(&warm.stderr).contains("executable cache: 1 regions loaded"), "{}", text(&warm.stderr));
    assert!(text(&warm.stderr).contains("xla: 0 regions compiled"), "{}", text(&warm.stderr));
    assert!(!text(&warm.stderr).contains("warning"));

    // --no-cache compiles and says so.
    let off = loopvm(&cache, &[RUN, &["--no-cache"]].concat());
    assert_eq!(text(&off.stdout), want);
    assert!(text(&off.stderr).contains("executable cache: off"), "{}", text(&off.stderr));
    assert!(text(&off.stderr).contains("xla: 1 regions compiled"));

    // A truncated entry: the same result, one warning line, then repaired.
    let files = entry_files(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).expect("read");
    std::fs::write(&files[0], &bytes[..bytes.len() / 3]).expect("write");
    let bad = loopvm(&cache, RUN);
    assert!(bad.status.success());
    assert_eq!(text(&bad.stdout), want);
    let warnings = text(&bad.stderr).lines().filter(|l| l.contains("warning")).count();
    assert_eq!(warnings, 1, "{}", text(&bad.stderr));
    let again = loopvm(&cache, RUN);
    assert!(text(&again.stderr).contains("1 regions loaded"), "{}", text(&again.stderr));

    // list, stats, clear.
    let list = loopvm(&cache, &["cache", "list"]);
    assert!(text(&list.stdout).contains("function `main`"), "{}", text(&list.stdout));
    let stats = loopvm(&cache, &["cache", "stats"]);
    assert!(text(&stats.stdout).contains("entries: 1"), "{}", text(&stats.stdout));
    let clear = loopvm(&cache, &["cache", "clear"]);
    assert!(text(&clear.stdout).contains("removed 1 entries"), "{}", text(&clear.stdout));
    assert!(entry_files(&cache).is_empty());
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn processes_filling_one_entry_at_once() {
    let cache = dir("procs");
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_loopvm"))
                .args(RUN)
                .env("LOOPVM_CACHE_DIR", &cache)
                .env("LOOPVM_PJRT_PLUGIN", plugin_path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "i32[1] [51]");
        assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));
    }
    let files = entry_files(&cache);
    assert_eq!(files.len(), 1, "one entry, no temporary file left: {files:?}");
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn cache_commands_on_an_empty_or_missing_folder() {
    let cache = dir("empty").join("missing");
    let stats = loopvm(&cache, &["cache", "stats"]);
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    assert!(text(&stats.stdout).contains("entries: 0"));
    let clear = loopvm(&cache, &["cache", "clear"]);
    assert!(clear.status.success());
    let list = loopvm(&cache, &["cache", "list"]);
    assert!(list.status.success());
    assert!(text(&list.stdout).is_empty());
}
