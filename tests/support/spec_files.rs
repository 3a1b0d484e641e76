//! Reading spec programs (`tests/spec/**/*.lb`) and their headers, shared by
//! the root crate's spec runner and the back ends' spec tests (which include
//! this file with `#[path]`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Every `.lb` file below `dir`, recursively, in no particular order.
pub fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "lb") {
            out.push(p);
        }
    }
}

/// The values of every `# key: value` header line of `src`, trimmed.
pub fn header<'a>(src: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("# {key}:");
    src.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::trim).collect()
}

/// Splits `a=[1, 2] b=3` into `["a=[1, 2]", "b=3"]`.
pub fn split_args(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ => {}
        }
        if c == ' ' && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
