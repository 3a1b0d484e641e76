//! `include/loopvm.h` is what cbindgen generates from `src/lib.rs`: this test
//! regenerates it and fails on any difference, so the checked-in header
//! cannot drift. `LOOPVM_BLESS=1 cargo test -p loopvm-capi --test header`
//! rewrites it.

use std::path::Path;

#[test]
fn header_matches_cbindgen() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("UTF-8 header");
    let path = dir.join("include/loopvm.h");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if fresh == checked_in {
        return;
    }
    if std::env::var_os("LOOPVM_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/loopvm.h");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let line = fresh
        .lines()
        .zip(checked_in.lines())
        .position(|(a, b)| a != b)
        .map_or_else(|| fresh.lines().count().min(checked_in.lines().count()) + 1, |i| i + 1);
    panic!(
        "{} is out of date with src/lib.rs (first difference at line {line}); \
         regenerate it with `LOOPVM_BLESS=1 cargo test -p loopvm-capi --test header`",
        path.display()
    );
}
