//! The table of builtin functions: name, arity, named arguments, signature.

use loopvm_runtime::{ReduceOp, UnaryOp};

/// Which builtin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `zeros(dtype, [dims])`
    Zeros,
    /// `ones(dtype, [dims])`
    Ones,
    /// `full(dtype, [dims], value)`
    Full,
    /// `iota(dtype, n)`
    Iota,
    /// `exp(x)` and the other elementwise functions.
    Unary(UnaryOp),
    /// `maximum(a, b)`
    Maximum,
    /// `minimum(a, b)`
    Minimum,
    /// `where(c, a, b)`
    Where,
    /// `sum(x, axis: k)` and the other reductions.
    Reduce(ReduceOp),
    /// `reshape(x, [dims])`
    Reshape,
    /// `transpose(x)`, `transpose(x, [perm])`
    Transpose,
    /// `broadcast(x, [dims])`
    Broadcast,
    /// `concat([a, b], axis: k)`
    Concat,
    /// `stack([a, b], axis: k)`
    Stack,
    /// `einsum("ij,jk->ik", a, b)`, one or two operands
    Einsum,
    /// `take(x, ids, axis: k)`
    Take,
    /// `take_along_axis(x, idx, axis: k)`
    TakeAlongAxis,
    /// `one_hot(ids, n, dtype: d)`
    OneHot,
    /// `dynamic_slice(x, [starts], [sizes])`
    DynamicSlice,
    /// `dynamic_update_slice(x, u, [starts])`
    DynamicUpdateSlice,
    /// `cumsum(x, axis: k, reverse: b)`
    Cumsum,
    /// `print(x)`
    Print,
    /// `shape(x)`
    Shape,
    /// `bitcast(x, dtype)`
    Bitcast,
    /// `shard(x, axis: k, mesh_axis: "data")`
    Shard,
    /// `fori_loop(lo, hi, body, init)`
    ForiLoop,
    /// `while_loop(cond, body, init)`
    WhileLoop,
    /// `scan(body, init, xs)`
    Scan,
    /// `grad(f)`: called at once, `grad(f)(args)`.
    Grad,
    /// `value_and_grad(f)`: called at once, `value_and_grad(f)(args)`.
    ValueAndGrad,
    /// `vmap(f)`: called at once, `vmap(f)(args)`.
    Vmap,
    /// `softmax(x, axis: k)`
    Softmax,
    /// `log_softmax(x, axis: k)`
    LogSoftmax,
    /// `logsumexp(x, axis: k, keepdims: b)`
    Logsumexp,
    /// `gelu(x, approximate: b)`
    Gelu,
    /// `stop_gradient(x)`
    StopGradient,
    /// `tree_map(f, t1, t2, ...)`
    TreeMap,
    /// `key(seed)`: a PRNG key, `u32[2]`.
    Key,
    /// `split(k, n)`
    Split,
    /// `fold_in(k, x)`
    FoldIn,
    /// `random_bits(k, [dims])`
    RandomBits,
    /// `uniform(k, dtype, [dims], minval: a, maxval: b)`
    Uniform,
    /// `normal(k, dtype, [dims])`
    Normal,
    /// `bernoulli(k, p, [dims])`
    Bernoulli,
    /// `categorical(k, logits, axis: k)`
    Categorical,
}

/// Static facts about a builtin.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinInfo {
    /// The name.
    pub name: &'static str,
    /// Which builtin.
    pub builtin: Builtin,
    /// Fewest positional arguments.
    pub min_args: usize,
    /// Most positional arguments.
    pub max_args: usize,
    /// Accepted named arguments.
    pub named: &'static [&'static str],
    /// The signature shown in arity errors.
    pub signature: &'static str,
}

const fn b(
    name: &'static str,
    builtin: Builtin,
    min_args: usize,
    max_args: usize,
    named: &'static [&'static str],
    signature: &'static str,
) -> BuiltinInfo {
    BuiltinInfo { name, builtin, min_args, max_args, named, signature }
}

const AXIS: &[&str] = &["axis"];

/// Every builtin.
pub const BUILTINS: &[BuiltinInfo] = &[
    b("zeros", Builtin::Zeros, 2, 2, &[], "zeros(dtype, [dims])"),
    b("ones", Builtin::Ones, 2, 2, &[], "ones(dtype, [dims])"),
    b("full", Builtin::Full, 3, 3, &[], "full(dtype, [dims], value)"),
    b("iota", Builtin::Iota, 2, 2, &[], "iota(dtype, n)"),
    b("maximum", Builtin::Maximum, 2, 2, &[], "maximum(a, b)"),
    b("minimum", Builtin::Minimum, 2, 2, &[], "minimum(a, b)"),
    b("where", Builtin::Where, 3, 3, &[], "where(cond, a, b)"),
    b("reshape", Builtin::Reshape, 2, 2, &[], "reshape(x, [dims])"),
    b("transpose", Builtin::Transpose, 1, 2, &[], "transpose(x, [perm])"),
    b("broadcast", Builtin::Broadcast, 2, 2, &[], "broadcast(x, [dims])"),
    b("concat", Builtin::Concat, 1, 1, AXIS, "concat([a, b, ...], axis: k)"),
    b("stack", Builtin::Stack, 1, 1, AXIS, "stack([a, b, ...], axis: k)"),
    b("einsum", Builtin::Einsum, 2, 3, &[], "einsum(\"ij,jk->ik\", a, b)"),
    b("take", Builtin::Take, 2, 2, AXIS, "take(x, ids, axis: k)"),
    b("take_along_axis", Builtin::TakeAlongAxis, 2, 2, AXIS, "take_along_axis(x, idx, axis: k)"),
    b("one_hot", Builtin::OneHot, 2, 2, &["dtype"], "one_hot(ids, n, dtype: f32)"),
    b("dynamic_slice", Builtin::DynamicSlice, 3, 3, &[], "dynamic_slice(x, [starts], [sizes])"),
    b("dynamic_update_slice", Builtin::DynamicUpdateSlice, 3, 3, &[], "dynamic_update_slice(x, u, [starts])"),
    b("cumsum", Builtin::Cumsum, 1, 1, &["axis", "reverse"], "cumsum(x, axis: k, reverse: false)"),
    b("print", Builtin::Print, 1, 1, &[], "print(x)"),
    b("shape", Builtin::Shape, 1, 1, &[], "shape(x)"),
    b("bitcast", Builtin::Bitcast, 2, 2, &[], "bitcast(x, dtype)"),
    b("shard", Builtin::Shard, 1, 1, &["axis", "mesh_axis"], "shard(x, axis: k, mesh_axis: \"data\")"),
    b("fori_loop", Builtin::ForiLoop, 4, 4, &["unroll"], "fori_loop(lower, upper, |i, carry| new_carry, init)"),
    b(
        "while_loop",
        Builtin::WhileLoop,
        3,
        3,
        &["max_iters"],
        "while_loop(|carry| keep_going, |carry| new_carry, init, max_iters: k)",
    ),
    b(
        "scan",
        Builtin::Scan,
        2,
        3,
        &["length", "reverse", "unroll", "checkpoint"],
        "scan(|carry, x| (new_carry, y), init, xs)",
    ),
    b("grad", Builtin::Grad, 1, 1, &["argnums"], "grad(f, argnums: [i, ...])"),
    b("value_and_grad", Builtin::ValueAndGrad, 1, 1, &["argnums"], "value_and_grad(f, argnums: [i, ...])"),
    b("vmap", Builtin::Vmap, 1, 1, &["in_axes", "out_axes"], "vmap(f, in_axes: [0, none, ...], out_axes: k)"),
    b("softmax", Builtin::Softmax, 1, 1, AXIS, "softmax(x, axis: k)"),
    b("log_softmax", Builtin::LogSoftmax, 1, 1, AXIS, "log_softmax(x, axis: k)"),
    b("logsumexp", Builtin::Logsumexp, 1, 1, &["axis", "keepdims"], "logsumexp(x, axis: k, keepdims: b)"),
    b("gelu", Builtin::Gelu, 1, 1, &["approximate"], "gelu(x, approximate: b)"),
    b("stop_gradient", Builtin::StopGradient, 1, 1, &[], "stop_gradient(x)"),
    b("tree_map", Builtin::TreeMap, 2, usize::MAX, &[], "tree_map(|a, b, ...| leaf, tree_a, tree_b, ...)"),
    b("key", Builtin::Key, 1, 1, &[], "key(seed)"),
    b("split", Builtin::Split, 1, 2, &[], "split(key, n)"),
    b("fold_in", Builtin::FoldIn, 2, 2, &[], "fold_in(key, x)"),
    b("random_bits", Builtin::RandomBits, 2, 2, &[], "random_bits(key, [dims])"),
    b("uniform", Builtin::Uniform, 3, 3, &["minval", "maxval"], "uniform(key, dtype, [dims], minval: a, maxval: b)"),
    b("normal", Builtin::Normal, 3, 3, &[], "normal(key, dtype, [dims])"),
    b("bernoulli", Builtin::Bernoulli, 2, 3, &[], "bernoulli(key, p, [dims])"),
    b("categorical", Builtin::Categorical, 2, 2, AXIS, "categorical(key, logits, axis: k)"),
];

/// The builtins that are rows of an op table: the elementwise unary ones,
/// one per [`UnaryOp`] row that is not an operator (`-x`, `!x`): `exp(x)`,
/// `log(x)`, ...; and the reductions, one per [`ReduceOp`] row: `sum(x,
/// axis: k)`, ...
fn table_builtins() -> &'static [BuiltinInfo] {
    static TABLE: std::sync::OnceLock<Vec<BuiltinInfo>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let unary = UnaryOp::ALL.iter().filter(|op| !matches!(op, UnaryOp::Neg | UnaryOp::Not)).map(|&op| {
            let signature: &'static str = Box::leak(format!("{op}(x)").into_boxed_str());
            b(op.as_str(), Builtin::Unary(op), 1, 1, &[], signature)
        });
        let reduce = ReduceOp::ALL.iter().map(|&op| {
            let signature: &'static str = Box::leak(format!("{op}(x, axis: k, keepdims: b)").into_boxed_str());
            b(op.as_str(), Builtin::Reduce(op), 1, 1, &["axis", "keepdims"], signature)
        });
        unary.chain(reduce).collect()
    })
}

/// The builtin called `name`, if any.
pub fn lookup(name: &str) -> Option<&'static BuiltinInfo> {
    BUILTINS.iter().chain(table_builtins()).find(|b| b.name == name)
}
