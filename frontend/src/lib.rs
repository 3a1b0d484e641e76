//! loopvm's language frontend: `.lb` source to bytecode.
//!
//! The pipeline is [`lexer`] → [`parser`] (an [`ast`] with spans) →
//! [`check`](mod@check) (names, dtypes, shapes with shape variables, broadcasting, the
//! scalar-literal rule, lambda inlining and monomorphisation, giving the
//! [`typed`] IR; `grad` and `value_and_grad` are expanded there by the
//! reverse-mode transform in [`ad`], and `vmap` by the batching transform in [`vmap`]) → [`lower`] (a [`loopvm_vm::Module`]). Every error is a
//! [`CompileError`] whose diagnostics carry source spans and render with the
//! line and a caret.
//!
//! ```
//! let src = "fn main() -> i32[1] {\n    fori_loop(0, 10, |i, acc| acc + 1, zeros(i32, [1]))\n}\n";
//! let module = loopvm_frontend::compile(src, "ten.lb").unwrap();
//! assert!(module.main.is_some());
//!
//! let bad = "fn main() -> f32 { 1.5 + y }";
//! let e = loopvm_frontend::compile(bad, "bad.lb").unwrap_err();
//! assert_eq!(e.to_string(), "bad.lb:1:26: unknown name `y`");
//! assert!(e.render(bad).contains("^"));
//! ```

#![warn(missing_docs)]

pub mod ad;
pub mod ast;
mod build;
pub mod builtins;
pub mod check;
pub mod diag;
pub mod lexer;
pub mod lower;
pub mod parser;
pub mod typed;
pub mod types;
pub mod vmap;

pub use diag::{CompileError, Diagnostic, Label, Span};

/// Stack size of the compiler thread: recursion over deeply nested (but
/// within the depth limits) programs stays well inside it.
const COMPILE_STACK: usize = 256 * 1024 * 1024;

/// Runs `f` on a thread with a large stack (on this thread if none can be started).
fn with_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let cell = std::sync::Mutex::new(Some(f));
    let take = || cell.lock().ok().and_then(|mut g| g.take());
    let joined = std::thread::scope(|s| {
        match std::thread::Builder::new()
            .name("loopvm-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(s, || take().map(|g| g()))
        {
            Ok(h) => h.join(),
            Err(_) => Ok(None),
        }
    });
    match joined {
        Ok(Some(v)) => v,
        Ok(None) => match take() {
            Some(g) => g(),
            None => std::panic::resume_unwind(Box::new("loopvm compiler thread lost its work")),
        },
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Parses source text into the syntax tree.
pub fn parse(source: &str, file_name: &str) -> Result<ast::Program, CompileError> {
    with_stack(|| parser::parse(source)).map_err(|d| CompileError::new(file_name, source, vec![*d]))
}

/// Parses and checks source text, giving the typed IR.
pub fn check_typed(source: &str, file_name: &str) -> Result<typed::Program, CompileError> {
    with_stack(|| {
        let p = parser::parse(source)?;
        check::check_program(&p)
    })
    .map_err(|d| CompileError::new(file_name, source, vec![*d]))
}

/// Parses and checks a program without producing bytecode (`loopvm check`).
pub fn check(source: &str, file_name: &str) -> Result<(), CompileError> {
    check_typed(source, file_name).map(|_| ())
}

/// Parses, checks and lowers a whole program. `Module::main` is the `main`
/// function when there is one.
pub fn compile(source: &str, file_name: &str) -> Result<loopvm_vm::Module, CompileError> {
    with_stack(|| {
        let p = parser::parse(source)?;
        let t = check::check_program(&p)?;
        lower::lower_program(&t)
    })
    .map_err(|d| CompileError::new(file_name, source, vec![*d]))
}
