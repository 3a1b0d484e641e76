//! Helpers shared by the frontend's integration tests.
#![allow(dead_code)]

use loopvm_runtime::Tensor;
use loopvm_vm::{Inst, Interpreter, Module, RunOptions, TypeTree};

/// Compiles `src`, panicking with the rendered error if it fails, and verifies the module.
pub fn compile_ok(src: &str) -> Module {
    let m = match loopvm_frontend::compile(src, "test.lb") {
        Ok(m) => m,
        Err(e) => panic!("compile failed:\n{}", e.render(src)),
    };
    if let Err(e) = loopvm_vm::verify(&m) {
        panic!("verifier rejected the module: {e}\n{}", loopvm_vm::disassemble(&m));
    }
    m
}

/// Formats flattened results by the tuple structure of `ty`.
pub fn show(ty: &TypeTree, leaves: &mut std::slice::Iter<'_, Tensor>) -> String {
    match ty {
        TypeTree::Tensor(_) => leaves.next().map_or("?".into(), |t| t.to_string()),
        TypeTree::Tuple(ts) => {
            let parts: Vec<String> = ts.iter().map(|t| show(t, leaves)).collect();
            if parts.len() == 1 {
                format!("({},)", parts[0])
            } else {
                format!("({})", parts.join(", "))
            }
        }
    }
}

/// Compiles and runs `main` with flattened `args`; returns the formatted result and printed output.
pub fn run_with(src: &str, args: &[Tensor]) -> (String, String) {
    let m = compile_ok(src);
    let main = m.main.expect("no main");
    let mut out = Vec::new();
    let r = {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_output(Box::new(&mut out));
        it.call(main, args)
    };
    let r = match r {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}\n{}", loopvm_vm::disassemble(&m)),
    };
    let ty = &m.func(main).result;
    (show(ty, &mut r.iter()), String::from_utf8_lossy(&out).into_owned())
}

/// Compiles and runs `main` without arguments.
pub fn run(src: &str) -> String {
    run_with(src, &[]).0
}

/// Counts instructions of module `m` matching `f`, in every block of every function.
pub fn count(m: &Module, f: impl Fn(&Inst) -> bool) -> usize {
    m.funcs.iter().flat_map(|f| f.blocks.iter()).flat_map(|b| b.code.iter()).filter(|i| f(i)).count()
}

/// The compile error of `src`: (message, line, col).
pub fn compile_err(src: &str) -> (String, usize, usize) {
    match loopvm_frontend::compile(src, "test.lb") {
        Ok(_) => panic!("expected a compile error for:\n{src}"),
        Err(e) => {
            let (l, c) = e.first_location().expect("no location");
            (e.message().to_string(), l, c)
        }
    }
}

/// `f32` tensor helper.
pub fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}
