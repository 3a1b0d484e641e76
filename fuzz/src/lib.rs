//! The bodies of loopvm's fuzz targets, shared by the cargo-fuzz targets
//! (`fuzz_targets/`) and the libFuzzer-free `stress` harness.
//!
//! Each target feeds its bytes to one untrusted-input entry point and checks
//! the invariants that must hold for whatever it accepts. A panic is a bug:
//! either loopvm panicked on hostile input, or an accepted input broke an
//! invariant. Each returns how deep the input got (0: rejected at once), which
//! the stress harness uses to keep inputs that reach further.

use loopvm_runtime::{npy, Tensor};
use loopvm_vm::{Dim, Interpreter, Module, RunOptions};
use std::time::Duration;

/// Limits of every run a target makes.
fn run_options() -> RunOptions {
    RunOptions {
        trace: false,
        max_steps: Some(10_000),
        max_memory: Some(16 << 20),
        timeout: Some(Duration::from_secs(2)),
        cancel: None,
    }
}

/// Runs `main` of a verified module on zero arguments (shape variables bound
/// to 2), under [`run_options`]. `true` when it ran to a result.
fn run_main(m: &Module) -> bool {
    let Some(main) = m.main else { return false };
    let f = m.func(main);
    let mut args = Vec::new();
    for p in &f.params {
        for leaf in p.ty.leaves() {
            let mut dims = Vec::new();
            for d in &leaf.dims {
                match *d {
                    Dim::Fixed(n) if n <= 64 => dims.push(n as usize),
                    Dim::Fixed(_) => return false,
                    Dim::Var(_) => dims.push(2),
                }
            }
            let Ok(t) = Tensor::zeros(leaf.dtype, &dims) else { return false };
            args.push(t);
        }
    }
    let mut it = Interpreter::new(m, run_options());
    it.set_output(Box::new(std::io::sink()));
    it.call(main, &args).is_ok()
}

/// The parser and checker (`loopvm_frontend::compile`) on arbitrary UTF-8.
/// An error must render; a module the frontend produces must pass the
/// verifier, survive serialisation, and run (or fail) without a panic.
pub fn frontend(data: &[u8]) -> u32 {
    let Ok(src) = std::str::from_utf8(data) else { return 0 };
    match loopvm_frontend::compile(src, "fuzz.lb") {
        Err(e) => {
            let r = e.render(src);
            assert!(!r.is_empty(), "empty error rendering");
            1
        }
        Ok(m) => {
            if let Err(e) = loopvm_vm::verify(&m) {
                panic!("the frontend produced a module the verifier rejects: {e}\n--- source:\n{src}");
            }
            let back = Module::from_bytes(&m.to_bytes()).expect("a compiled module decodes after serialisation");
            loopvm_vm::verify(&back).expect("a compiled module verifies after serialisation");
            2 + u32::from(run_main(&back))
        }
    }
}

/// The bytecode loader and verifier: `Module::from_bytes` then `verify`; a
/// verified module must serialise, disassemble and run (under a step,
/// memory and time limit) without a panic.
pub fn bytecode(data: &[u8]) -> u32 {
    let Ok(m) = Module::from_bytes(data) else { return 0 };
    if loopvm_vm::verify(&m).is_err() {
        return 1;
    }
    let back = Module::from_bytes(&m.to_bytes()).expect("a verified module decodes after serialisation");
    loopvm_vm::verify(&back).expect("a verified module verifies after serialisation");
    let _ = loopvm_vm::disassemble(&m);
    2 + u32::from(run_main(&m))
}

/// The `.npy` reader: whatever it accepts must write back and read again to
/// the same tensor.
pub fn npy(data: &[u8]) -> u32 {
    let Ok(t) = npy::read(data) else { return 0 };
    let bytes = npy::write(&t).expect("a tensor read from .npy writes back");
    let back = npy::read(&bytes).expect("a written .npy reads back");
    assert_eq!(back.dtype(), t.dtype());
    assert_eq!(back.shape(), t.shape());
    assert_eq!(npy::write(&back).expect("writes again"), bytes, "the .npy round trip changed the data");
    1
}
