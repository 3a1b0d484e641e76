//! Every program of LANGUAGE.md (the design sketch) compiles, verifies and
//! runs as written; the issue's PyTorch/XLA tests give their results.

mod common;
use common::*;
use loopvm_runtime::Tensor;
use loopvm_vm::Inst;

const FIRST: &str = r#"
# The cumulative add from PyTorch/XLA's fori_loop guide: 1 + 1 * 50
fn main() -> i32[1] {
    let plus = [1];
    let init = [1];
    let (_, res) = fori_loop(2, 52, |i, (p, acc)| (p, p + acc), (plus, init));
    res
}
"#;

const ADD_TEN: &str = r#"
# a plain loop: add 1 ten times -> [10]
fn main() -> i32[1] {
    fori_loop(0, 10, |i, acc| acc + ones(i32, [1]), zeros(i32, [1]))
}
"#;

const WHILE_COUNT: &str = r#"
# while_loop: count up while limit >= x -> ([11], [10])
fn main() -> (i32[1], i32[1]) {
    let init = [0];
    let limit = [10];
    while_loop(|(x, lim)| lim[0] >= x[0], |(x, lim)| (x + 1, lim), (init, limit))
}
"#;

const GRAD: &str = r#"
fn loss(w: f32[4, 4], xs: f32[10, 4]) -> f32 {
    let (h, hs) = scan(|h, x| { let h2 = tanh(h @ w + x); (h2, h2) },
                       zeros(f32, [4]), xs);
    sum(hs * hs)
}

fn main(w: f32[4, 4], xs: f32[10, 4]) -> f32[4, 4] {
    grad(loss)(w, xs)                 # d loss / d w
}
"#;

#[test]
fn first_program() {
    assert_eq!(run(FIRST), "i32[1] [51]");
    let m = compile_ok(FIRST);
    assert_eq!(count(&m, |i| matches!(i, Inst::Fori { .. })), 1);
}

#[test]
fn seed_add_ten() {
    assert_eq!(run(ADD_TEN), "i32[1] [10]");
}

#[test]
fn seed_while_count() {
    assert_eq!(run(WHILE_COUNT), "(i32[1] [11], i32[1] [10])");
    let m = compile_ok(WHILE_COUNT);
    assert_eq!(count(&m, |i| matches!(i, Inst::While { .. })), 1);
}

#[test]
fn grad_program_compiles_to_plain_loops() {
    let m = compile_ok(GRAD);
    // the forward scan and its backward (reverse) scan
    assert_eq!(count(&m, |i| matches!(i, Inst::Scan { reverse: false, .. })), 2);
    assert_eq!(count(&m, |i| matches!(i, Inst::Scan { reverse: true, .. })), 1);
    let w = Tensor::from_vec(&[4, 4], vec![0.0f32; 16]).unwrap();
    let xs = Tensor::from_vec(&[10, 4], vec![0.5f32; 40]).unwrap();
    let (r, _) = run_with(GRAD, &[w, xs]);
    assert!(r.starts_with("f32[4, 4] [["), "{r}");
}

#[test]
fn loss_runs() {
    let src = format!(
        "{}\nfn main(w: f32[4, 4], xs: f32[10, 4]) -> f32 {{ loss(w, xs) }}",
        GRAD.split("fn main").next().unwrap()
    );
    let w = Tensor::from_vec(&[4, 4], vec![0.0f32; 16]).unwrap();
    let xs = Tensor::from_vec(&[10, 4], vec![0.5f32; 40]).unwrap();
    let (r, _) = run_with(&src, &[w, xs]);
    // h2 = tanh(0.5) each step: 10 * 4 * tanh(0.5)^2
    let want = 40.0 * 0.5f32.tanh().powi(2);
    let got: f32 = r.trim_start_matches("f32 ").parse().unwrap();
    assert!((got - want).abs() < 1e-4, "{r} vs {want}");
}

#[test]
fn sketch_values_and_types() {
    let src = r#"
fn main() -> (i32[3], f32[2, 2], f64, i64, f32[4]) {
    let a = [1, 2, 3];
    let m = [[1.0, 2.0], [3.0, 4.0]];
    let x = 0.5f64 + 2f64;
    let y = 1i64;
    let v = zeros(f32, [4]) + 1;
    (a, m, x, y, v)
}"#;
    assert_eq!(
        run(src),
        "(i32[3] [1, 2, 3], f32[2, 2] [[1.0, 2.0], [3.0, 4.0]], f64 2.5, i64 1, f32[4] [1.0, 1.0, 1.0, 1.0])"
    );
}

#[test]
fn sketch_loops() {
    let src = r#"
fn main() -> (f32[2], f32[3, 2], f32[2], f32[3, 2], (f32, f32[10])) {
    let xs = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    let (c, ys) = scan(|carry, x| (carry + x, carry + x), zeros(f32, [2]), xs);
    let (c2, ys2) = scan(|carry, x| (carry + x, carry + x), zeros(f32, [2]), xs, reverse: true, unroll: 4);
    let r = scan(|c, _| (c + 1.0, c), 0.0, length: 10);
    (c, ys, c2, ys2, r)
}"#;
    assert_eq!(
        run(src),
        "(f32[2] [9.0, 12.0], f32[3, 2] [[1.0, 2.0], [4.0, 6.0], [9.0, 12.0]], f32[2] [9.0, 12.0], \
         f32[3, 2] [[9.0, 12.0], [8.0, 10.0], [5.0, 6.0]], \
         (f32 10.0, f32[10] [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]))"
    );
}

#[test]
fn pytorch_while_i64_i32() {
    let src = r#"
fn main() -> (i64, i32) {
    while_loop(|(i, x)| i > 0, |(i, x)| (i - 1, x + 1), (10i64, 3))
}"#;
    assert_eq!(run(src), "(i64 0, i32 13)");
}

#[test]
fn pytorch_linear_captured() {
    let src = r#"
fn main(w: f32[2, 2], b: f32[2], x: f32[2, 2]) -> (f32[2, 2], f32[2, 2]) {
    let linear = |v| v @ transpose(w) + b;
    let (_, looped) = while_loop(|(i, v)| i < 10, |(i, v)| (i + 1, linear(v)), (0, x));
    let mut_free = linear(linear(linear(linear(linear(linear(linear(linear(linear(linear(x))))))))));
    (looped, mut_free)
}"#;
    let w = f32s(&[2, 2], &[0.5, -0.25, 0.125, 0.75]);
    let b = f32s(&[2], &[0.1, -0.2]);
    let x = f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let (r, _) = run_with(src, &[w, b, x]);
    let inner = r.trim_start_matches('(').trim_end_matches(')');
    let (a, b) = inner.split_at(inner.find(", f32").unwrap());
    assert_eq!(a, b.trim_start_matches(", "));
}

#[test]
fn pytorch_scan_carry_and_cumsum() {
    let src = r#"
fn main(a: f32[3, 2]) -> (f32[2], f32[3, 2]) {
    scan(|c, x| (c + x, c + x), zeros(f32, [2]), a)
}"#;
    let a = f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(run_with(src, &[a]).0, "(f32[2] [9.0, 12.0], f32[3, 2] [[1.0, 2.0], [4.0, 6.0], [9.0, 12.0]])");
    let cumsum = r#"
fn main() -> f32[3] {
    let (_, ys) = scan(|c, x| (c + x, c + x), 0.0, [1.0, 2.0, 3.0]);
    ys
}"#;
    assert_eq!(run(cumsum), "f32[3] [1.0, 3.0, 6.0]");
}

#[test]
fn loops_nest_and_call_functions_with_loops() {
    let src = r#"
fn tri(n: i32) -> i32 {
    fori_loop(0, n, |i, acc| acc + i, 0)
}
fn main() -> i32 {
    fori_loop(0, 5, |j, acc| acc + tri(j) + fori_loop(0, 3, |k, a| a + 1, 0), 0)
}"#;
    // sum of tri(j) for j < 5: 0 + 0 + 1 + 3 + 6 = 10; plus 5 * 3
    assert_eq!(run(src), "i32 25");
    let m = compile_ok(src);
    assert_eq!(count(&m, |i| matches!(i, Inst::Fori { .. })), 3);
    assert_eq!(count(&m, |i| matches!(i, Inst::Call { .. })), 1);
}

#[test]
fn builtins_of_the_sketch() {
    let src = r#"
fn main() -> (f32[2, 3], i32[1], f32[4], i32[10], f32, f32[3], f32, f32, f32, i32) {
    let x = [[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]];
    let e = exp(zeros(f32, [2])) + log(ones(f32, [2])) + sqrt(ones(f32, [2])) + tanh(zeros(f32, [2]))
        + sigmoid(zeros(f32, [2])) + relu(-ones(f32, [2])) + abs(-ones(f32, [2])) + sin(zeros(f32, [2])) + cos(zeros(f32, [2]));
    let mx = maximum(x, 0.0);
    let mn = minimum(x, 0.0);
    let w = where(x > 0.0, x, 0.0);
    print(shape(x));
    print((e, w));
    (mx + mn, ones(i32, [1]), full(f32, [4], 0.5), iota(i32, 10), sum(x), sum(x, axis: 0), mean(x), max(x), min(x), argmax(x))
}"#;
    let (r, printed) = run_with(src, &[]);
    assert_eq!(
        r,
        "(f32[2, 3] [[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], i32[1] [1], f32[4] [0.5, 0.5, 0.5, 0.5], \
         i32[10] [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], f32 5.0, f32[3] [5.0, 3.0, -3.0], f32 0.8333333, f32 5.0, f32 -6.0, i32 4)"
    );
    assert!(printed.starts_with("i32[2] [2, 3]\n"), "{printed}");
    assert!(printed.contains("f32[2] [4.5, 4.5]"), "{printed}");
}

#[test]
fn shape_builtins() {
    let src = r#"
fn main() -> (f32[6], f32[3, 2], f32[3, 2], f32[4, 3], f32[4, 3], f32[2, 3], f32[3, 2], f32[2, 3]) {
    let x = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let r = reshape(x, [6]);
    let r2 = reshape(x, [-1, 2]);
    let t = transpose(x);
    let b = broadcast([1.0, 2.0, 3.0], [4, 3]);
    let c = concat([x, x], axis: 0);
    let s = stack([x[0], x[1]]);
    let s1 = stack([x[0], x[1]], axis: 1);
    (r, r2, t, b, c, s, s1, transpose(transpose(x, [1, 0]), [1, 0]))
}"#;
    let r = run(src);
    assert!(r.starts_with("(f32[6] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], f32[3, 2] [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], f32[3, 2] [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]"), "{r}");
    assert!(r.contains("f32[4, 3] [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]"), "{r}");
    assert!(
        r.contains("f32[3, 2] [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]], f32[2, 3] [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])"),
        "{r}"
    );
}

#[test]
fn indexing_and_updates() {
    let src = r#"
fn main(i: i32) -> (f32[3], f32, f32[2, 2], f32[2], f32[3], f32[2, 3], f32[2, 3], f32, f32[2], f32[2, 3]) {
    let x = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    (x[i], x[1, 2], x[:, 1:3], x[:, 0], x[0, ::-1], x.at[0].set(0.0), x.at[i, 1].add(10.0), x[-1, -1], x[i, 1:], x.at[1].set([7.0, 8.0, 9.0]))
}"#;
    let (r, _) = run_with(src, &[Tensor::scalar(1i32)]);
    assert_eq!(
        r,
        "(f32[3] [4.0, 5.0, 6.0], f32 6.0, f32[2, 2] [[2.0, 3.0], [5.0, 6.0]], f32[2] [1.0, 4.0], f32[3] [3.0, 2.0, 1.0], \
         f32[2, 3] [[0.0, 0.0, 0.0], [4.0, 5.0, 6.0]], f32[2, 3] [[1.0, 2.0, 3.0], [4.0, 15.0, 6.0]], f32 6.0, f32[2] [5.0, 6.0], \
         f32[2, 3] [[1.0, 2.0, 3.0], [7.0, 8.0, 9.0]])"
    );
}

#[test]
fn operators_and_precedence() {
    let src = r#"
fn main() -> (i32, i32, i32, f32, bool, bool, i32, f64, i32, f32) {
    let a = -2 ** 2;          # -(2 ** 2)
    let b = 7 / 2 + 7 % 3;    # 3 + 1
    let c = -7 / 2;           # truncates: -3
    let d = 2.0 ** -1.0;
    let e = 1 < 2 && !(3 <= 2) || false;
    let f = [1, 2] == [1, 3];
    let g = 2 + 3 * 4;
    let h = 3 as f64 / 2 as f64;
    let k = (2.9 as i32) * 2;
    let m = [1.0, 2.0] @ [3.0, 4.0];
    (a, b, c, d, e, f[0] && !f[1], g, h, k, m)
}"#;
    assert_eq!(run(src), "(i32 -4, i32 4, i32 -3, f32 0.5, bool true, bool true, i32 14, f64 1.5, i32 4, f32 11.0)");
}

#[test]
fn if_and_blocks_and_tuples() {
    let src = r#"
fn pick(c: bool, a: f32[2], b: f32[2]) -> f32[2] {
    if c { a } else { b }
}
fn main(c: bool) -> (f32[2], (i32, (i32, i32)), f32[2]) {
    let v = { let t = ones(f32, [2]); t + t };
    let (a, _, (b, d)) = (1, 2, (3, 4));
    let z = if c { v } else if !c { v * 2.0 } else { v * 3.0 };
    (pick(c, v, zeros(f32, [2])), (a, (b, d)), z)
}"#;
    assert_eq!(
        run_with(src, &[Tensor::scalar(true)]).0,
        "(f32[2] [2.0, 2.0], (i32 1, (i32 3, i32 4)), f32[2] [2.0, 2.0])"
    );
    assert_eq!(
        run_with(src, &[Tensor::scalar(false)]).0,
        "(f32[2] [0.0, 0.0], (i32 1, (i32 3, i32 4)), f32[2] [4.0, 4.0])"
    );
}

#[test]
fn lambdas_capture_and_named_args() {
    let src = r#"
fn axpy(a: f32, x: f32[3], y: f32[3]) -> f32[3] { a * x + y }
fn main() -> (f32[3], f32[3], i32) {
    let k = 10.0;
    let scale = |v| v * k;
    let twice = |v| scale(scale(v));
    let pair = |(p, q), r| p + q + r;
    (twice(ones(f32, [3])), axpy(y: zeros(f32, [3]), a: 2.0, x: ones(f32, [3])), pair((1, 2), 3))
}"#;
    assert_eq!(run(src), "(f32[3] [100.0, 100.0, 100.0], f32[3] [2.0, 2.0, 2.0], i32 6)");
}

#[test]
fn shape_variables_monomorphise() {
    let src = r#"
fn total(x: f32[T]) -> f32 { sum(x) }
fn first_row(x: f32[N, K]) -> f32[K] { x[0] }
fn main() -> (f32, f32, f32[2]) {
    (total(ones(f32, [3])), total(ones(f32, [5])), first_row(ones(f32, [4, 2])))
}"#;
    assert_eq!(run(src), "(f32 3.0, f32 5.0, f32[2] [1.0, 1.0])");
    let m = compile_ok(src);
    let mut names: Vec<&str> = m.funcs.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["first_row<K=2, N=4>", "main", "total<T=3>", "total<T=5>"]);
}

#[test]
fn main_shape_variables_stay_symbolic() {
    let src = r#"
fn step(h: f32[H], x: f32[H]) -> f32[H] { tanh(h + x) }
fn main(xs: f32[T, H]) -> (f32[H], f32[T, H]) {
    let (h, hs) = scan(|h, x| { let h2 = step(h, x); (h2, h2) }, xs[0] * 0.0, xs);
    (h, hs)
}"#;
    let m = compile_ok(src);
    assert_eq!(m.symbols, ["T", "H"]);
    let main = m.func(m.main.unwrap());
    assert!(
        matches!(main.params[0].ty, loopvm_vm::TypeTree::Tensor(ref t) if t.dims == [loopvm_vm::Dim::Var(0), loopvm_vm::Dim::Var(1)])
    );
    let xs = f32s(&[2, 3], &[0.0; 6]);
    let (r, _) = run_with(src, &[xs]);
    assert!(r.starts_with("(f32[3] [0.0, 0.0, 0.0], f32[2, 3]"), "{r}");
}

#[test]
fn fori_with_function_body_and_dynamic_i64_bounds() {
    let src = r#"
fn body(i: i64, acc: i64) -> i64 { acc + i }
fn main(n: i64) -> i64 {
    fori_loop(0, n, body, 0i64, unroll: 2)
}"#;
    assert_eq!(run_with(src, &[Tensor::scalar(5i64)]).0, "i64 10");
}

#[test]
fn scan_variants() {
    let src = r#"
fn step(c: f32[H], x: f32[H]) -> (f32[H], f32[H]) { (c + x, c * 2.0) }
fn main() -> (f32, (f32[3], f32[3, 2]), (f32[2], f32[3, 2]), f32) {
    let xs = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    let (c, _) = scan(|c, x| (c + x, ()), 0.0, [1.0, 2.0, 3.0]);
    let (t, ys) = scan(|(a, b), (x, y)| ((a + x, b + y[0]), (x, y)), (0.0, 0.0), ([1.0, 2.0, 3.0], xs));
    let r = scan(step, zeros(f32, [2]), xs);
    let (k, _) = scan(|c, _| (c + 1.0, ()), 0.0, length: 4, unroll: 3);
    (c, ys, r, k + t.0_unused_free())
}"#;
    // `t.0` does not exist: projections are written with patterns.
    assert!(loopvm_frontend::compile(src, "t.lb").is_err());
    let src = src.replace("k + t.0_unused_free()", "k + { let (a, b) = t; a + b }");
    assert_eq!(
        run(&src),
        "(f32 6.0, (f32[3] [1.0, 2.0, 3.0], f32[3, 2] [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), \
         (f32[2] [9.0, 12.0], f32[3, 2] [[0.0, 0.0], [2.0, 4.0], [8.0, 12.0]]), f32 19.0)"
    );
}

#[test]
fn print_in_loops_and_unit_functions() {
    let src = r#"
fn show(x: i32) { print(x); }
fn main() -> i32 {
    let r = fori_loop(0, 3, |i, acc| { show(i); if i == 1 { print(acc); } acc + i }, 100);
    r
}"#;
    let (r, printed) = run_with(src, &[]);
    assert_eq!(r, "i32 103");
    assert_eq!(printed, "i32 0\ni32 1\ni32 100\ni32 2\n");
}

#[test]
fn captures_across_nested_loops_and_ifs() {
    let src = r#"
fn main(n: i32) -> f32[2] {
    let w = [1.0, 2.0];
    let bump = |v| v + w;
    fori_loop(0, n, |i, acc| {
        let inner = fori_loop(0, i, |j, a| if j % 2 == 0 { bump(a) } else { a }, acc);
        maximum(inner, acc)
    }, zeros(f32, [2]))
}"#;
    // i = 0: +0; i = 1: j = 0 bumps once; i = 2: j = 0 bumps; i = 3: j = 0, 2 bump.
    assert_eq!(run_with(src, &[Tensor::scalar(4i32)]).0, "f32[2] [4.0, 8.0]");
}

#[test]
fn function_aliases_and_fn_bodies() {
    let src = r#"
fn inc(i: i32, c: i32) -> i32 { c + 1 }
fn main() -> (i32, i32) {
    let g = inc;
    (g(0, 41), fori_loop(0, 5, g, 0))
}"#;
    assert_eq!(run(src), "(i32 42, i32 5)");
}

#[test]
fn literal_rule_examples() {
    let src = r#"
fn main(x: f32[4], n: i64, b: bool) -> (f32[4], i64, f32[4], f32[4], f64, i64) {
    let a = x * 2 + 1;
    let c = fori_loop(0, n, |i, acc| acc + i, 0i64);
    let d = where(x > 1, x, 0);
    let e = x.at[0].set(7);
    let f = if b { 1 } else { 2.5f64 };
    (a, c, d, e, f, -9223372036854775808i64 + n)
}"#;
    let x = f32s(&[4], &[0.0, 1.0, 2.0, 3.0]);
    let (r, _) = run_with(src, &[x, Tensor::scalar(4i64), Tensor::scalar(true)]);
    assert_eq!(
        r,
        "(f32[4] [1.0, 3.0, 5.0, 7.0], i64 6, f32[4] [0.0, 0.0, 2.0, 3.0], f32[4] [7.0, 1.0, 2.0, 3.0], f64 1.0, i64 -9223372036854775804)"
    );
}

#[test]
fn module_structure() {
    let src = r#"
fn main(xs: f32[5, 3]) -> (f32[3], i32, f32[5, 3]) {
    let s = scan(|c, x| (c + x, x * 2.0), zeros(f32, [3]), xs);
    let w = while_loop(|i| i < 10, |i| i + 3, 0);
    let (c, ys) = s;
    (c, w, ys)
}"#;
    let m = compile_ok(src);
    assert_eq!(count(&m, |i| matches!(i, Inst::Scan { .. })), 1);
    assert_eq!(count(&m, |i| matches!(i, Inst::While { .. })), 1);
    assert_eq!(count(&m, |i| matches!(i, Inst::Fori { .. })), 0);
    // Scalar constants are shared.
    let n3 = m.consts.iter().filter(|c| c.to_string() == "i32 3").count();
    assert_eq!(n3, 1);
    // The module survives serialisation.
    let back = loopvm_vm::Module::from_bytes(&m.to_bytes()).unwrap();
    loopvm_vm::verify(&back).unwrap();
}

#[test]
fn typed_ir_is_exposed() {
    let p = loopvm_frontend::check_typed("fn main(x: f32[T]) -> f32[T] { let y = x * 2.0; y }", "t.lb").unwrap();
    let main = &p.funcs[p.main.unwrap().0 as usize];
    assert_eq!(main.result.to_string(), "f32[T]");
    assert!(matches!(main.body.kind, loopvm_frontend::typed::ExprKind::Block(..)));
    let ast = loopvm_frontend::parse("fn main() -> i32 { 1 }", "t.lb").unwrap();
    assert_eq!(ast.fns[0].name.name, "main");
}

/// An `if` or block that starts a statement ends it, as in Rust: what follows
/// (`(`, `[`, unary `-` or `!`) starts the next expression; it is never read
/// as a call, an index or a subtraction of the `if`.
#[test]
fn if_statement_ends_the_statement() {
    let src = r#"
fn main(a: f32) -> f32 {
    if a > 0.0 { print(a) }
    (a + 1.0) * 2.0
}"#;
    assert_eq!(run_with(src, &[Tensor::scalar(1.5f32)]), ("f32 5.0".to_string(), "f32 1.5\n".to_string()));
    assert_eq!(run_with(src, &[Tensor::scalar(-1.0f32)]), ("f32 0.0".to_string(), String::new()));

    // `[` after the `if`: a list literal, not an index.
    let src = r#"
fn main(c: bool) -> i32[2] {
    if c { print(1) } else { print(2) }
    [3, 4]
}"#;
    assert_eq!(run_with(src, &[Tensor::scalar(true)]), ("i32[2] [3, 4]".to_string(), "i32 1\n".to_string()));
    assert_eq!(run_with(src, &[Tensor::scalar(false)]), ("i32[2] [3, 4]".to_string(), "i32 2\n".to_string()));

    // Unary `-` and `!` after the `if`, then a `let`, then more statements.
    let src = r#"
fn main(x: i32, c: bool) -> (i32, bool) {
    if c { print(x) }
    let y = if c { x } else { 0 - x };
    if !c { print(y) }
    -y;
    if c { print(0) } else if x > 0 { print(1) } else { print(2) }
    (-y, !c)
}"#;
    assert_eq!(
        run_with(src, &[Tensor::scalar(3i32), Tensor::scalar(true)]),
        ("(i32 -3, bool false)".to_string(), "i32 3\ni32 0\n".to_string())
    );
    assert_eq!(
        run_with(src, &[Tensor::scalar(3i32), Tensor::scalar(false)]),
        ("(i32 3, bool true)".to_string(), "i32 -3\ni32 1\n".to_string())
    );
    let src = r#"
fn main(a: f32) -> f32 {
    if a > 0.0 { print(a) }
    -a
}"#;
    assert_eq!(run_with(src, &[Tensor::scalar(2.0f32)]).0, "f32 -2.0");
}

#[test]
fn block_statement_ends_the_statement() {
    let src = r#"
fn main(x: i32) -> (i32, i32) {
    { print(x) }
    { let y = x * 2; print(y); }
    (x, x + 1)
}"#;
    assert_eq!(run_with(src, &[Tensor::scalar(4i32)]), ("(i32 4, i32 5)".to_string(), "i32 4\ni32 8\n".to_string()));
    let src = r#"
fn main() -> i32[2] {
    { print(7) }
    [1, 2]
}"#;
    assert_eq!(run_with(src, &[]), ("i32[2] [1, 2]".to_string(), "i32 7\n".to_string()));
    // A `.` continues it, as a method call does in Rust.
    let src = r#"
fn main() -> i32[3] {
    { zeros(i32, [3]) }.at[1].set(5) + 1
}"#;
    assert_eq!(run(src), "i32[3] [1, 6, 1]");
}

/// The `if` keeps its value where it is not at the start of a statement,
/// and as the block's tail.
#[test]
fn if_values_still_work() {
    let src = r#"
fn main(c: bool) -> (i32, i32, i32, i32) {
    let x = if c { 1 } else { 2 };
    let y = if c { 10 } else { 20 } * 3;
    let z = { let t = 5; t } - 1;
    let w = if c { x } else { y };
    if c { print(x) };
    (x, y, z, if w > 1 { w } else { 0 - w })
}
fn tail(c: bool) -> i32 {
    if c { 1 } else { 2 }
}
fn block_tail() -> i32 {
    { 3 }
}"#;
    assert_eq!(run_with(src, &[Tensor::scalar(true)]).0, "(i32 1, i32 30, i32 4, i32 -1)");
    assert_eq!(run_with(src, &[Tensor::scalar(false)]).0, "(i32 2, i32 60, i32 4, i32 60)");
    let src = r#"
fn main(c: bool) -> i32 {
    let a = 4;
    if c { print(a) }
    if c { a } else { 0 - a }
}"#;
    assert_eq!(run_with(src, &[Tensor::scalar(false)]).0, "i32 -4");
}

/// A binary operator after an `if` that ended a statement cannot start the
/// next one: the error says so and how to use the value.
#[test]
fn operator_after_if_statement_is_explained() {
    let src = "fn main(c: bool) -> i32 {\n    if c { 1 } else { 2 } * 3\n}\n";
    let e = loopvm_frontend::compile(src, "t.lb").unwrap_err();
    assert_eq!(e.to_string(), "t.lb:2:27: expected an expression, found `*`");
    let r = e.render(src);
    assert!(r.contains("an `if` at the start of a statement ends the statement"), "{r}");
    assert!(r.contains("(if c { a } else { b }) * ..."), "{r}");
    let src = "fn main() -> i32 {\n    { 1 } as i32\n}\n";
    let e = loopvm_frontend::compile(src, "t.lb").unwrap_err();
    assert_eq!(e.to_string(), "t.lb:2:11: expected an expression, found `as`");
    assert!(e.render(src).contains("a block at the start of a statement"));
    // Parenthesised, it is a value.
    assert_eq!(run("fn main() -> i32 {\n    (if true { 1 } else { 2 }) * 3\n}\n"), "i32 3");
}
