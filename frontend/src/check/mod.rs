//! The checker's entry point, scopes and state: the checker does name
//! resolution, dtype and shape inference, lambda inlining and
//! monomorphisation, from the [`crate::ast`] to the [`crate::typed`] IR.
//!
//! Each `fn` is checked once per distinct binding of its shape variables
//! (the types of its arguments at a call); `main` and functions that nothing
//! calls are checked with their shape variables left symbolic. Lambdas are
//! compile-time closures: a `let`-bound lambda remembers the scope it was
//! written in and is inlined, with that scope, wherever it is called.
//!
//! One file per phase: `instances` (functions and their instances), `expr`
//! (expressions, blocks, calls, `if`, lists), `index` (indexing and
//! `.at[...]` updates), `literals` (the scalar-literal rule), `builtin_rules`
//! (builtin arguments, dispatch and the tensor builtins' rules), `contract`
//! (batched `@` and `einsum` as one `dot_general`), `gather` (gathers,
//! windows and `cumsum`), `loops` (the loop builtins), `nn` (the composite
//! builtins: `softmax`, `gelu`, `tree_map`, ...), `vmap` (batching, expanded by [`crate::vmap`]), `random` (JAX's random
//! numbers, which call the standard library's `.lb` functions:
//! [`prelude`]) and `grad` (derivatives).

mod builtin_rules;
mod contract;
mod expr;
mod gather;
mod grad;
mod index;
mod instances;
mod literals;
mod loops;
mod nn;
mod random;
mod vmap;

use crate::ast::{self, ExprKind as A};
use crate::diag::{DResult, Diagnostic, Span};
use crate::typed::{self as t, FuncId, VarId, VarInfo};
use crate::types::{Dim, TensorTy, Type};
use loopvm_runtime::DType;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Deepest expression nesting the checker accepts (inlined lambdas included).
pub const MAX_DEPTH: usize = 256;
/// Most typed expressions one program may produce (bounds lambda inlining).
pub const MAX_NODES: usize = 2_000_000;

/// The standard library: `fn` items written in `.lb`
/// (`frontend/src/prelude/*.lb`) that builtins expand into calls of, parsed
/// once. Their function indices follow the program's own; only code of the
/// standard library can name them, and an instance is named `std.f`.
pub fn prelude() -> &'static [ast::FnItem] {
    static PRELUDE: std::sync::OnceLock<Vec<ast::FnItem>> = std::sync::OnceLock::new();
    PRELUDE
        .get_or_init(|| crate::parser::parse(include_str!("../prelude/random.lb")).map(|p| p.fns).unwrap_or_default())
}

/// Checks a parsed program and produces the typed IR.
pub fn check_program(prog: &ast::Program) -> DResult<t::Program> {
    let mut fn_by_name: HashMap<&str, usize> = HashMap::new();
    for (i, f) in prog.fns.iter().enumerate() {
        if let Some(&j) = fn_by_name.get(f.name.name.as_str()) {
            let first = prog.fns.get(j).map_or(f.name.span, |g| g.name.span);
            let d = Diagnostic::new(format!("function `{}` is defined twice", f.name.name), f.name.span)
                .with_label(first, "first defined here");
            return Err(Box::new(d));
        }
        fn_by_name.insert(f.name.name.as_str(), i);
    }
    let mut c = Checker {
        prog,
        fn_by_name,
        prelude: prelude(),
        funcs: Vec::new(),
        instances: HashMap::new(),
        instantiated: vec![false; prog.fns.len()],
        stack: Vec::new(),
        nodes: 0,
        grad_instances: HashMap::new(),
        vmap_instances: HashMap::new(),
    };
    let mut main = None;
    if let Some(&m) = c.fn_by_name.get("main") {
        main = Some(c.instantiate_symbolic(m)?);
    }
    for i in 0..prog.fns.len() {
        if !c.instantiated.get(i).copied().unwrap_or(true) {
            c.instantiate_symbolic(i)?;
        }
    }
    Ok(t::Program { funcs: c.funcs, main })
}

// ---------------------------------------------------------------------------
// Scopes

/// A persistent scope: a linked list of bindings, cheap to capture.
#[derive(Clone, Default)]
struct Env<'a>(Option<Rc<EnvNode<'a>>>);

struct EnvNode<'a> {
    name: &'a str,
    bind: Binding<'a>,
    next: Env<'a>,
}

impl Drop for EnvNode<'_> {
    // Unlinks iteratively so that a long scope cannot overflow the stack.
    fn drop(&mut self) {
        let mut next = self.next.0.take();
        while let Some(rc) = next {
            match Rc::try_unwrap(rc) {
                Ok(mut node) => next = node.next.0.take(),
                Err(_) => break,
            }
        }
    }
}

#[derive(Clone)]
enum Binding<'a> {
    Value(VarId, Type),
    Lambda(Rc<Closure<'a>>),
    Fn(usize),
}

/// A lambda and the scope it was written in.
struct Closure<'a> {
    params: &'a [ast::Pattern],
    body: &'a ast::Expr,
    env: Env<'a>,
    span: Span,
}

impl Closure<'_> {
    /// An error at `span` unless the lambda takes `n` arguments.
    fn check_arity(&self, n: usize, span: Span) -> DResult<()> {
        if self.params.len() == n {
            return Ok(());
        }
        let d = Diagnostic::new(
            format!(
                "this lambda takes {} argument{} but {n} {} given",
                self.params.len(),
                if self.params.len() == 1 { "" } else { "s" },
                if n == 1 { "was" } else { "were" }
            ),
            span,
        )
        .with_label(self.span, "the lambda");
        Err(boxed(d))
    }
}

impl<'a> Env<'a> {
    fn bind(&self, name: &'a str, bind: Binding<'a>) -> Env<'a> {
        Env(Some(Rc::new(EnvNode { name, bind, next: self.clone() })))
    }
    fn get(&self, name: &str) -> Option<&Binding<'a>> {
        let mut cur = self.0.as_ref();
        while let Some(n) = cur {
            if n.name == name {
                return Some(&n.bind);
            }
            cur = n.next.0.as_ref();
        }
        None
    }
}

#[derive(Clone)]
enum Callable<'a> {
    Lambda(Rc<Closure<'a>>),
    Fn(usize),
}

/// Per function instance state.
struct FnCtx {
    vars: Vec<VarInfo>,
    shapes: BTreeMap<String, Dim>,
    depth: usize,
}

impl FnCtx {
    fn new_var(&mut self, name: &str, ty: Type) -> VarId {
        let id = VarId(u32::try_from(self.vars.len()).unwrap_or(u32::MAX));
        self.vars.push(VarInfo { name: name.to_string(), ty });
        id
    }
}

/// An argument of a function call, checked.
struct ArgIn<'a> {
    value: t::Expr,
    ast: Option<&'a ast::Expr>,
    name: Option<&'a ast::Ident>,
    span: Span,
}

/// The checker's state over one program.
struct Checker<'a> {
    prog: &'a ast::Program,
    fn_by_name: HashMap<&'a str, usize>,
    /// The standard library's `fn` items ([`prelude`]): index `i` is
    /// function `prog.fns.len() + i`.
    prelude: &'static [ast::FnItem],
    funcs: Vec<t::Func>,
    instances: HashMap<(usize, Vec<Type>), FuncId>,
    instantiated: Vec<bool>,
    stack: Vec<usize>,
    nodes: usize,
    grad_instances: HashMap<(FuncId, Vec<usize>), FuncId>,
    vmap_instances: crate::vmap::Instances,
}

// ---------------------------------------------------------------------------
// Small helpers

/// A diagnostic, boxed as [`DResult`] carries it.
fn boxed(d: Diagnostic) -> Box<Diagnostic> {
    Box::new(d)
}

/// A typed expression.
fn mk(kind: t::ExprKind, ty: Type, span: Span) -> t::Expr {
    t::Expr { kind, ty, span }
}

/// The type of a tensor.
fn tensor_ty(t: TensorTy) -> Type {
    Type::Tensor(t)
}

/// The unit value `()` at `span`.
fn unit(span: Span) -> t::Expr {
    mk(t::ExprKind::Tuple(Vec::new()), Type::unit(), span)
}

/// The span of the value an expression produces (the tail of a block).
fn tail_span(e: &ast::Expr) -> Span {
    match &e.kind {
        A::Block(_, Some(r)) => tail_span(r),
        A::Lambda(_, body) => tail_span(body),
        A::Paren(x) => tail_span(x),
        _ => e.span,
    }
}

/// The dtype a name spells, such as `f32`.
fn dtype_of(id: &ast::Ident) -> DResult<DType> {
    DType::parse(&id.name).ok_or_else(|| {
        boxed(Diagnostic::new(format!("unknown dtype `{}`", id.name), id.span).with_note(format!(
            "the dtypes are {}",
            DType::ALL.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
        )))
    })
}

/// The error for two shapes that do not broadcast in `what`.
fn broadcast_error(
    what: &str,
    a: &TensorTy,
    b: &TensorTy,
    conflict: crate::types::BroadcastConflict,
    span: Span,
) -> Box<Diagnostic> {
    let mut d = Diagnostic::new(
        format!(
            "shapes do not broadcast in {what}: lhs {a}, rhs {b}: cannot broadcast {} with {}",
            conflict.a, conflict.b
        ),
        span,
    );
    if matches!(conflict.a, Dim::Var(_)) || matches!(conflict.b, Dim::Var(_)) {
        d = d.with_note("a shape variable broadcasts only with itself or 1");
    } else {
        d = d.with_note("NumPy broadcasting: aligned from the right, each pair of dims must be equal or one of them 1");
    }
    boxed(d)
}

#[cfg(test)]
mod tests {
    /// The standard library parses, and has the functions the random
    /// builtins call.
    #[test]
    fn the_prelude_parses() {
        let names: Vec<&str> = super::prelude().iter().map(|f| f.name.name.as_str()).collect();
        for f in ["threefry2x32", "split", "fold_in", "bits32", "bits64", "unit32", "unit64"] {
            assert!(names.contains(&f), "no `{f}` in the standard library: {names:?}");
        }
    }
}
