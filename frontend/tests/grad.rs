//! Reverse-mode derivatives: gradient checks against central finite
//! differences in f64 for every differentiable builtin and for loops, the
//! PyTorch/XLA scan test, the LANGUAGE.md program, and the errors.

mod common;
use common::*;
use loopvm_runtime::Tensor;
use loopvm_vm::{Interpreter, RunOptions};

fn t64(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}

/// Deterministic values in [lo, hi).
fn vals(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            lo + (hi - lo) * u
        })
        .collect()
}

fn rand(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    t64(shape, &vals(n, seed, -1.0, 1.0))
}

fn pos(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    t64(shape, &vals(n, seed, 0.5, 2.0))
}

/// Runs `main` and returns the flattened result tensors.
fn run_flat(src: &str, args: &[Tensor]) -> Vec<Tensor> {
    let m = compile_ok(src);
    let main = m.main.expect("no main");
    let mut it = Interpreter::new(&m, RunOptions::default());
    match it.call(main, args) {
        Ok(r) => r.to_vec(),
        Err(e) => panic!("run failed: {e}\n{}", loopvm_vm::disassemble(&m)),
    }
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.as_slice::<f64>().expect("an f64 tensor").to_vec()
}

/// Checks `value_and_grad(f, argnums: wrt)` against central differences of `f`.
/// `sig` is the parameter list of `f` (`x: f64[3], y: f64`), `names` its names.
fn fd_check(f_src: &str, sig: &str, names: &str, wrt: &[usize], args: &[Tensor]) {
    let loss_src = format!("{f_src}\nfn main({sig}) -> f64 {{ f({names}) }}\n");
    let nums: Vec<String> = wrt.iter().map(|i| i.to_string()).collect();
    let grad_src =
        format!("{f_src}\nfn main({sig}) {{ value_and_grad(f, argnums: [{}])({names}) }}\n", nums.join(", "));
    let loss = |a: &[Tensor]| -> f64 { run_flat(&loss_src, a)[0].scalar_f64().unwrap() };
    let got = run_flat(&grad_src, args);
    let v0 = loss(args);
    let gv = got[0].scalar_f64().unwrap();
    assert!((gv - v0).abs() <= 1e-12 * (1.0 + v0.abs()), "value {gv} vs {v0}");
    for (k, &i) in wrt.iter().enumerate() {
        let g = f64s(&got[1 + k]);
        let base = f64s(&args[i]);
        assert_eq!(g.len(), base.len(), "gradient {k} has the wrong size");
        for j in 0..base.len() {
            let h = 1e-6 * (1.0 + base[j].abs());
            let mut plus = args.to_vec();
            let mut minus = args.to_vec();
            let mut p = base.clone();
            p[j] += h;
            plus[i] = t64(args[i].shape(), &p);
            let mut q = base.clone();
            q[j] -= h;
            minus[i] = t64(args[i].shape(), &q);
            let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
            let tol = 1e-5 * (1.0 + fd.abs().max(g[j].abs()));
            assert!((fd - g[j]).abs() <= tol, "d f / d arg{i}[{j}]: grad {} vs finite difference {fd}\n{f_src}", g[j]);
        }
    }
}

fn check1(body: &str, shape: &[usize], x: Tensor) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let ty = if shape.is_empty() { "f64".to_string() } else { format!("f64[{}]", dims.join(", ")) };
    let src = format!("fn f(x: {ty}) -> f64 {{ {body} }}");
    fd_check(&src, &format!("x: {ty}"), "x", &[0], &[x]);
}

// ---------------------------------------------------------------------------
// Builtins

#[test]
fn unary_math() {
    let x = rand(&[5], 1);
    for body in [
        "sum(exp(x))",
        "sum(tanh(x) * x)",
        "sum(sigmoid(x * 2.0))",
        "sum(sin(x) * cos(x * 3.0))",
        "sum(-x * x)",
        "sum(relu(x) * x)",
        "sum(abs(x) * x)",
        "sum(x * x * x)",
    ] {
        check1(body, &[5], x.clone());
    }
    let p = pos(&[5], 2);
    for body in ["sum(log(x) * x)", "sum(sqrt(x))", "sum(1.0 / x)", "sum(x ** 2.5)", "sum(2.0 ** x)", "sum(x ** x)"] {
        check1(body, &[5], p.clone());
    }
}

#[test]
fn binary_broadcasting() {
    let src = "fn f(a: f64[3, 4], b: f64[4], c: f64[3, 1], s: f64) -> f64 {
        sum((a + b) * c - s / (a * a + 1.0) + maximum(a, b) * minimum(c, s) + (a - c) / (b * b + 2.0))
    }";
    fd_check(
        src,
        "a: f64[3, 4], b: f64[4], c: f64[3, 1], s: f64",
        "a, b, c, s",
        &[0, 1, 2, 3],
        &[rand(&[3, 4], 3), rand(&[4], 4), rand(&[3, 1], 5), t64(&[], &[0.3])],
    );
}

#[test]
fn rem_and_pow() {
    let src = "fn f(a: f64[4], b: f64[4]) -> f64 { sum(a % b) + sum(a ** b) }";
    let a = t64(&[4], &[2.5, 3.7, 1.2, 5.1]);
    let b = t64(&[4], &[0.7, 1.1, 0.5, 2.3]);
    fd_check(src, "a: f64[4], b: f64[4]", "a, b", &[0, 1], &[a, b]);
}

#[test]
fn where_cast_compare() {
    let src = "fn f(a: f64[6], b: f64[6]) -> f64 {
        let c = a > b;
        let i = (a * 10.0) as i32;
        sum(where(c, a * b, b * 3.0)) + sum(i as f64) + sum(where(a > 0.0, a, 0.5))
    }";
    fd_check(src, "a: f64[6], b: f64[6]", "a, b", &[0, 1], &[rand(&[6], 7), rand(&[6], 8)]);
}

#[test]
fn matmul_all_ranks() {
    let src = "fn f(m: f64[3, 4], n: f64[4, 2], v: f64[4], w: f64[3]) -> f64 {
        sum(m @ n) + sum((m @ v) * w) + sum(w @ m) + v @ v + sum(tanh(m @ n) * (m @ n))
    }";
    fd_check(
        src,
        "m: f64[3, 4], n: f64[4, 2], v: f64[4], w: f64[3]",
        "m, n, v, w",
        &[0, 1, 2, 3],
        &[rand(&[3, 4], 9), rand(&[4, 2], 10), rand(&[4], 11), rand(&[3], 12)],
    );
}

#[test]
fn batched_matmul_and_einsum() {
    // Every batched rank form of `@` and einsum with batch axes not leading,
    // contracted axes in any position and order, summed letters, an outer
    // product and one operand: JAX's dot_general transpose rules.
    let src = "fn f(a: f64[2, 3, 4], b: f64[2, 4, 3], c: f64[1, 3, 4], v: f64[4], m: f64[4, 3]) -> f64 {
        let p = a @ b;
        let q = c @ b;
        let r = (a @ v) * (v @ b);
        let s = a @ m;
        let t = m @ a;
        let e = einsum(\"bij,bjk->ik\", a, b);
        let g = einsum(\"ibj,jkb->kib\", transpose(a, [1, 0, 2]), transpose(b, [1, 2, 0]));
        let h = einsum(\"bij,k->kb\", a, v);
        let o = einsum(\"ij->ji\", m) * einsum(\"i,j->ji\", v, [1.0f64, 2.0, 3.0]);
        let w = einsum(\"xyz,zy\", c, m);
        sum(tanh(p) * q) + sum(r * r) + sum(sin(s)) + sum(t * t) + sum(e * e) + sum(g * g) + sum(h * h) + sum(o) + sum(w * w)
    }";
    fd_check(
        src,
        "a: f64[2, 3, 4], b: f64[2, 4, 3], c: f64[1, 3, 4], v: f64[4], m: f64[4, 3]",
        "a, b, c, v, m",
        &[0, 1, 2, 3, 4],
        &[rand(&[2, 3, 4], 21), rand(&[2, 4, 3], 22), rand(&[1, 3, 4], 23), rand(&[4], 24), rand(&[4, 3], 25)],
    );
}

#[test]
fn reductions() {
    let x = rand(&[3, 4], 13);
    for body in [
        "sum(x * x)",
        "sum(sum(x, axis: 0) * (sum(x, axis: 1) @ ones(f64, [3, 4])))",
        "mean(x * x)",
        "sum(mean(x, axis: 1) * mean(x, axis: 1))",
        "sum(mean(x, axis: -2) * [1.0f64, 2.0, 3.0, 4.0])",
        "max(x * 2.0)",
        "min(x) * 3.0",
        "sum(max(x, axis: 0) * [1.0f64, 2.0, 3.0, 4.0])",
        "sum(min(x, axis: 1) * [1.0f64, 2.0, 3.0])",
        "x[argmax(x, axis: 0)[0], 0] * 2.0 + sum(x)",
    ] {
        check1(body, &[3, 4], x.clone());
    }
}

#[test]
fn casts_pass_the_gradient_through() {
    let src = "fn main(x: f64[2]) -> (f64[2], f32[2]) {
        (grad(|v| sum((v as f32) * 2.0) as f64)(x), grad(|v| sum(v as f64 * v as f64))([1.0, 3.0]))
    }";
    let r = run_flat(src, &[t64(&[2], &[1.0, 2.0])]);
    assert_eq!(f64s(&r[0]), vec![2.0, 2.0]);
    assert_eq!(r[1].as_slice::<f32>().unwrap(), &[2.0, 6.0]);
}

#[test]
fn max_ties_split_the_gradient() {
    let src = "fn main(x: f64[3]) -> (f64[3], f64[3]) { (grad(|v| max(v))(x), grad(|v| sum(maximum(v, 1.0)))(x)) }";
    let r = run_flat(src, &[t64(&[3], &[1.0, 2.0, 2.0])]);
    assert_eq!(f64s(&r[0]), vec![0.0, 0.5, 0.5]);
    assert_eq!(f64s(&r[1]), vec![0.5, 1.0, 1.0]);
}

#[test]
fn shape_ops() {
    let x = rand(&[2, 3], 14);
    for body in [
        "sum(reshape(x, [3, 2]) @ [1.0f64, 2.0])",
        "sum(reshape(x, [6]) * iota(f64, 6))",
        "sum(transpose(x) @ [1.0f64, 2.0])",
        "sum(transpose(x, [1, 0]) * reshape(iota(f64, 6), [3, 2]))",
        "sum(broadcast(x, [4, 2, 3]) * x)",
        "sum(broadcast(x[0], [5, 3]) * 2.0)",
        "sum(concat([x, x * x], axis: 0) * 2.0)",
        "sum(concat([x, x * 2.0, x], axis: 1) @ ones(f64, [9]))",
        "sum(stack([x, x * x]) * 3.0)",
        "sum(stack([x, x * 2.0], axis: 2) * [1.0f64, -1.0])",
        "sum(stack([x[0, 1], x[1, 2] * 2.0]))",
    ] {
        check1(body, &[2, 3], x.clone());
    }
}

#[test]
fn slices() {
    let x = rand(&[5, 4], 15);
    for body in [
        "sum(x[1] * x[-1])",
        "sum(x[1:3] * 2.0)",
        "sum(x[:, 0] * x[:, 3])",
        "sum(x[::2] @ [1.0f64, 2.0, 3.0, 4.0])",
        "sum(x[::-1, 1:] * x[:, :3])",
        "sum(x[4:0:-2, ::3] * 3.0)",
        "sum(x[1:4:2, 2]) + x[2, 1] * x[2, 1]",
        "sum(x[-2:] * x[:2])",
        "sum(x[1:1] * 0.0) + x[0, 0]",
    ] {
        check1(body, &[5, 4], x.clone());
    }
}

#[test]
fn dynamic_index_and_update() {
    let src = "fn f(x: f64[4, 3], v: f64[3], s: f64, i: i32) -> f64 {
        let y = x.at[i].set(v * 2.0);
        let z = y.at[i + 1, 2].add(s * s);
        let w = z.at[i + 6].add(v);
        sum(w * w) + x[i] @ v + x[i, 0] * s + x[-1] @ x[i + 10]
    }";
    fd_check(
        src,
        "x: f64[4, 3], v: f64[3], s: f64, i: i32",
        "x, v, s, i",
        &[0, 1, 2],
        &[rand(&[4, 3], 16), rand(&[3], 17), t64(&[], &[0.7]), Tensor::scalar(1i32)],
    );
}

#[test]
fn if_and_calls() {
    let src = "
fn sq(a: f64[3]) -> f64[3] { a * a }
fn g(a: f64[3], b: f64) -> f64 { sum(sq(a) * b) + b * b }
fn f(x: f64[3], y: f64) -> f64 {
    let u = if sum(x) > 0.0 { x * y + sq(x) } else { x - y };
    let w = if y > 10.0 { y } else { g(u, y) };
    g(u, w) + w
}";
    fd_check(src, "x: f64[3], y: f64", "x, y", &[0, 1], &[rand(&[3], 18), t64(&[], &[0.4])]);
    fd_check(src, "x: f64[3], y: f64", "x, y", &[0, 1], &[t64(&[3], &[-1.0, -0.5, 0.2]), t64(&[], &[0.4])]);
}

#[test]
fn integer_paths_get_no_gradient() {
    let src = "fn f(x: f64[4]) -> f64 {
        let k = argmax(x);
        let n = sum(x > 0.0);
        let c = (x * 3.0) as i64;
        x[k] * (n as f64) + sum(c as f64) + sum(shape(x) as f64)
    }";
    fd_check(src, "x: f64[4]", "x", &[0], &[t64(&[4], &[0.1, -0.2, 0.9, 0.3])]);
}

// ---------------------------------------------------------------------------
// Loops

#[test]
fn scan_rnn() {
    let src = "fn f(w: f64[3, 3], u: f64[3], xs: f64[6, 3]) -> f64 {
        let (h, hs) = scan(|h, x| { let h2 = tanh(h @ w + x * u); (h2, h2 * 2.0) }, zeros(f64, [3]), xs);
        sum(hs * hs) + sum(h)
    }";
    fd_check(
        src,
        "w: f64[3, 3], u: f64[3], xs: f64[6, 3]",
        "w, u, xs",
        &[0, 1, 2],
        &[rand(&[3, 3], 19), rand(&[3], 20), rand(&[6, 3], 21)],
    );
}

#[test]
fn scan_reverse_tuple_carry_and_ys() {
    let src = "fn f(a: f64[2], xs: f64[5, 2], zs: f64[5]) -> f64 {
        let ((p, q), (ys, ws)) = scan(|(p, q), (x, z)| {
            let p2 = p * x + q * z;
            ((p2, sin(q) + p2), (p2 * q, z * p2[0]))
        }, (a, 0.5 * a), (xs, zs), reverse: true);
        sum(p) + sum(q * q) + sum(ys) + sum(ws * ws)
    }";
    fd_check(
        src,
        "a: f64[2], xs: f64[5, 2], zs: f64[5]",
        "a, xs, zs",
        &[0, 1, 2],
        &[rand(&[2], 22), rand(&[5, 2], 23), rand(&[5], 24)],
    );
}

#[test]
fn nested_scans() {
    let src = "fn f(w: f64[2, 2], xss: f64[3, 4, 2]) -> f64 {
        let (c, ys) = scan(|c, xs| {
            let (h, hs) = scan(|h, x| { let h2 = tanh(h @ w + x + c); (h2, sum(h2 * c)) }, c * 0.5, xs);
            (c + h * 0.3, sum(hs))
        }, [0.1f64, -0.2], xss);
        sum(c * c) + sum(ys * ys)
    }";
    fd_check(src, "w: f64[2, 2], xss: f64[3, 4, 2]", "w, xss", &[0, 1], &[rand(&[2, 2], 25), rand(&[3, 4, 2], 26)]);
}

#[test]
fn scan_length_only_and_unroll() {
    let src = "fn f(a: f64[3]) -> f64 {
        let (c, ys) = scan(|c, _| (c * 0.9 + sin(c), sum(c)), a, length: 7, unroll: 3);
        sum(c) + sum(ys * ys)
    }";
    fd_check(src, "a: f64[3]", "a", &[0], &[rand(&[3], 27)]);
}

#[test]
fn static_fori() {
    let src = "fn f(x: f64[3], w: f64) -> f64 {
        let (a, b) = fori_loop(2, 9, |i, (a, b)| (a * w + b * (i as f64) * 0.1, cos(a) + b * 0.5), (x, x * x));
        sum(a * b) + sum(fori_loop(0, 3, |i, acc| acc.at[i].add(acc[i] * w), x))
    }";
    fd_check(src, "x: f64[3], w: f64", "x, w", &[0, 1], &[rand(&[3], 28), t64(&[], &[0.8])]);
}

#[test]
fn bounded_while() {
    // Newton iterations for sqrt(a): stops on convergence or after 20 steps.
    let src = "fn f(a: f64, x0: f64) -> f64 {
        let (x, k) = while_loop(|(x, k)| abs(x * x - a) > 1e-3, |(x, k)| (0.5 * (x + a / x), k + 1), (x0, 0), max_iters: 20);
        x * (k as f64)
    }";
    fd_check(src, "a: f64, x0: f64", "a, x0", &[0, 1], &[t64(&[], &[2.0]), t64(&[], &[1.0])]);
    // The bound is hit: 3 iterations, the carry still changes.
    let src2 = "fn f(x: f64[2]) -> f64 {
        sum(while_loop(|v| sum(v) < 1e9, |v| v * v + 0.5, x, max_iters: 3))
    }";
    fd_check(src2, "x: f64[2]", "x", &[0], &[rand(&[2], 29)]);
    // The condition reads the differentiated value; it stops early.
    let src3 = "fn f(x: f64) -> f64 {
        let (y, n) = while_loop(|(y, n)| y < 10.0, |(y, n)| (y * 1.5 + 0.1, n + 1), (x, 0), max_iters: 100);
        y * y
    }";
    fd_check(src3, "x: f64", "x", &[0], &[t64(&[], &[0.9])]);
}

#[test]
fn bounded_while_forward_semantics() {
    let src = "fn main() -> (i32, i32) {
        let a = while_loop(|x| x < 100, |x| x + 1, 0, max_iters: 7);
        let b = while_loop(|x| x < 3, |x| x + 1, 0, max_iters: 7);
        (a, b)
    }";
    assert_eq!(run(src), "(i32 7, i32 3)");
}

#[test]
fn checkpointed_scan() {
    let src = "fn f(w: f64[3, 3], xs: f64[8, 3]) -> f64 {
        let (h, hs) = scan(|h, x| { let h2 = tanh(h @ w + x); (h2, h2 * h2) }, zeros(f64, [3]), xs, checkpoint: true);
        sum(hs) + sum(h * h)
    }";
    fd_check(src, "w: f64[3, 3], xs: f64[8, 3]", "w, xs", &[0, 1], &[rand(&[3, 3], 30), rand(&[8, 3], 31)]);
    // Checkpointed outer scan around an inner scan and an if.
    let src2 = "fn f(w: f64[2, 2], xss: f64[3, 4, 2]) -> f64 {
        let (c, ys) = scan(|c, xs| {
            let (h, hs) = scan(|h, x| (tanh(h @ w + x), sum(h)), c, xs);
            let d = if sum(h) > 0.0 { h * c } else { h - c };
            (d, sum(hs))
        }, [0.1f64, -0.2], xss, checkpoint: true);
        sum(c) + sum(ys * ys)
    }";
    fd_check(src2, "w: f64[2, 2], xss: f64[3, 4, 2]", "w, xss", &[0, 1], &[rand(&[2, 2], 32), rand(&[3, 4, 2], 33)]);
}

#[test]
fn checkpoint_keeps_only_the_carry() {
    // Without checkpointing the forward scan stacks the residuals the
    // backward pass needs; with it only the carry.
    let body = |ck: &str| {
        format!(
            "fn loss(w: f32[4, 4], xs: f32[10, 4]) -> f32 {{
                let (h, hs) = scan(|h, x| {{ let a = h @ w + x; let b = tanh(a); let c = sigmoid(b * a); (c, c) }}, zeros(f32, [4]), xs{ck});
                sum(hs)
            }}
            fn main(w: f32[4, 4], xs: f32[10, 4]) -> f32[4, 4] {{ grad(loss)(w, xs) }}"
        )
    };
    let stacked = |src: &str| {
        let m = compile_ok(src);
        let f = m.funcs.iter().find(|f| f.name.starts_with("value_and_grad")).unwrap();
        // outputs of the forward scan: carry + ys (+ residuals)
        f.blocks
            .iter()
            .flat_map(|b| b.code.iter())
            .filter_map(|i| match i {
                loopvm_vm::Inst::Scan { dsts, reverse: false, .. } => Some(dsts.len()),
                _ => None,
            })
            .max()
            .unwrap()
    };
    let plain = stacked(&body(""));
    let ck = stacked(&body(", checkpoint: true"));
    assert!(ck < plain, "checkpointed forward scan has {ck} outputs, plain {plain}");
    assert_eq!(ck, 3, "carry, ys and the stacked carry");
    let w = Tensor::from_vec(&[4, 4], vals(16, 40, -0.5, 0.5).iter().map(|v| *v as f32).collect()).unwrap();
    let xs = Tensor::from_vec(&[10, 4], vals(40, 41, -1.0, 1.0).iter().map(|v| *v as f32).collect()).unwrap();
    let a = run_flat(&body(""), &[w.clone(), xs.clone()]);
    let b = run_flat(&body(", checkpoint: true"), &[w, xs]);
    assert_eq!(a[0].as_slice::<f32>(), b[0].as_slice::<f32>());
}

#[test]
fn scan_captures_accumulate() {
    let src = "fn f(w: f64[3], b: f64, xs: f64[4, 3]) -> f64 {
        let (c, ys) = scan(|c, x| (c * w + x * b, c @ w), w * 0.5, xs);
        sum(c) + sum(ys * ys) + b
    }";
    fd_check(
        src,
        "w: f64[3], b: f64, xs: f64[4, 3]",
        "w, b, xs",
        &[0, 1, 2],
        &[rand(&[3], 34), t64(&[], &[0.6]), rand(&[4, 3], 35)],
    );
}

#[test]
fn symbolic_shapes() {
    let src = "fn f(xs: f64[T, 3], w: f64[3]) -> f64 {
        let (c, ys) = scan(|c, x| (c + x * w, sum(x * c)), zeros(f64, [3]), xs);
        sum(ys) + sum(c * c) + mean(xs * xs) + sum(xs @ w)
    }";
    fd_check(src, "xs: f64[T, 3], w: f64[3]", "xs, w", &[0, 1], &[rand(&[5, 3], 36), rand(&[3], 37)]);
}

// ---------------------------------------------------------------------------
// API forms

#[test]
fn pytorch_scan_gradients() {
    let src = "
fn loss(init: f32[2], a: f32[3, 2]) -> f32 {
    let (c, ys) = scan(|c, x| (c + x, c + x), init, a);
    sum(c) + sum(ys)
}
fn main() -> (f32[2], f32[3, 2]) {
    let a = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    grad(loss, argnums: [0, 1])(zeros(f32, [2]), a)
}";
    assert_eq!(run(src), "(f32[2] [4.0, 4.0], f32[3, 2] [[4.0, 4.0], [3.0, 3.0], [2.0, 2.0]])");
}

const LANGUAGE_GRAD: &str = r#"
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
fn language_md_program() {
    let w: Vec<f64> = vals(16, 50, -0.5, 0.5);
    let xs: Vec<f64> = vals(40, 51, -1.0, 1.0);
    let wt = Tensor::from_vec(&[4, 4], w.iter().map(|v| *v as f32).collect()).unwrap();
    let xt = Tensor::from_vec(&[10, 4], xs.iter().map(|v| *v as f32).collect()).unwrap();
    let g = run_flat(LANGUAGE_GRAD, &[wt, xt]);
    let g32 = g[0].as_slice::<f32>().unwrap().to_vec();
    // The same loss in f64, differentiated the same way.
    let src64 = LANGUAGE_GRAD.replace("f32", "f64");
    let w32: Vec<f64> = w.iter().map(|v| *v as f32 as f64).collect();
    let x32: Vec<f64> = xs.iter().map(|v| *v as f32 as f64).collect();
    let g64 = run_flat(&src64, &[t64(&[4, 4], &w32), t64(&[10, 4], &x32)]);
    for (a, b) in g32.iter().zip(f64s(&g64[0])) {
        assert!((f64::from(*a) - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let f = LANGUAGE_GRAD
        .replace("f32", "f64")
        .replace("fn loss", "fn f")
        .replace("    grad(loss)(w, xs)                 # d loss / d w\n", "");
    let f = f.split("fn main").next().unwrap().to_string();
    fd_check(&f, "w: f64[4, 4], xs: f64[10, 4]", "w, xs", &[0], &[t64(&[4, 4], &w32), t64(&[10, 4], &x32)]);
}

#[test]
fn value_and_grad_forms() {
    let src = "
fn f(x: f32[2], y: f32, n: i32) -> f32 { sum(x * x) * y + (n as f32) }
fn main() -> ((f32, f32[2]), (f32, (f32[2], f32)), f32, f32[2]) {
    let x = [1.0, 2.0];
    let a = value_and_grad(f)(x, 3.0, 4);
    let b = value_and_grad(f, argnums: [0, 1])(x, 3.0, 4);
    let c = grad(f, argnums: 1)(x, 3.0, 4);
    let d = grad(|v| sum(v * v * v))(x);
    (a, b, c, d)
}";
    assert_eq!(
        run(src),
        "((f32 19.0, f32[2] [6.0, 12.0]), (f32 19.0, (f32[2] [6.0, 12.0], f32 5.0)), f32 5.0, f32[2] [3.0, 12.0])"
    );
}

#[test]
fn lambda_captures_are_constants() {
    let src = "fn main() -> f32[3] {
        let w = [1.0, 2.0, 3.0];
        let pair = (w, 2.0);
        let (a, s) = pair;
        grad(|x| sum(x * w * a) * s)([1.0, 1.0, 1.0])
    }";
    assert_eq!(run(src), "f32[3] [2.0, 8.0, 18.0]");
}

#[test]
fn grad_in_a_training_loop() {
    let src = "
fn loss(w: f32[2], xs: f32[4, 2], ys: f32[4]) -> f32 { mean((xs @ w - ys) ** 2.0) }
fn main() -> (f32, f32, f32[2]) {
    let xs = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]];
    let ys = xs @ [2.0, -1.0];
    let w0 = zeros(f32, [2]);
    let (w, l) = fori_loop(0, 200, |i, (w, l)| {
        let (v, g) = value_and_grad(loss)(w, xs, ys);
        (w - 0.1 * g, v)
    }, (w0, 0.0));
    (loss(w0, xs, ys), l, w)
}";
    let r = run(src);
    assert!(r.contains("f32[2] [1.99999") || r.contains("f32[2] [2.0"), "{r}");
}

#[test]
fn tuple_parameters() {
    let src = "fn f(p: (f64[2], f64), x: f64[2]) -> f64 { let (w, b) = p; sum(tanh(w * x + b)) }";
    let m = "fn main(w: f64[2], b: f64, x: f64[2]) -> ((f64[2], f64), f64[2]) { grad(f, argnums: [0, 1])((w, b), x) }";
    let r = run_flat(&format!("{src}\n{m}"), &[t64(&[2], &[0.5, -0.3]), t64(&[], &[0.2]), t64(&[2], &[1.0, 2.0])]);
    let w = [0.5, -0.3];
    let x = [1.0, 2.0];
    let d: Vec<f64> = (0..2).map(|i| 1.0 - (w[i] * x[i] + 0.2f64).tanh().powi(2)).collect();
    let gw = f64s(&r[0]);
    let gb = r[1].scalar_f64().unwrap();
    let gx = f64s(&r[2]);
    for i in 0..2 {
        assert!((gw[i] - d[i] * x[i]).abs() < 1e-12);
        assert!((gx[i] - d[i] * w[i]).abs() < 1e-12);
    }
    assert!((gb - d[0] - d[1]).abs() < 1e-12);
}

#[test]
fn print_runs_once_in_the_forward_pass() {
    let src = "fn f(x: f32) -> f32 { print(x); let (c, _) = scan(|c, _| { print(c); (c * 2.0, ()) }, x, length: 2, checkpoint: true); c }
fn main() -> f32 { grad(f)(1.0) }";
    let (r, out) = run_with(src, &[]);
    assert_eq!(r, "f32 4.0");
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn non_differentiable_loops_that_are_inactive_are_fine() {
    let src = "fn f(x: f32[3], n: i32) -> f32 {
        let k = while_loop(|k| k * k < n, |k| k + 1, 0);
        let m = fori_loop(0, n, |i, a| a + i, 0);
        x[k] * (m as f32) + sum(x)
    }
    fn main() -> f32[3] { grad(f)([1.0, 2.0, 3.0], 5) }";
    assert_eq!(run(src), "f32[3] [1.0, 1.0, 11.0]");
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn errors() {
    let cases: &[(&str, &str)] = &[
        (
            "fn f(x: f32) -> f32 { while_loop(|v| v < 10.0, |v| v * 2.0, x) }\nfn main() -> f32 { grad(f)(1.0) }",
            "without `max_iters`",
        ),
        (
            "fn f(x: f32, n: i32) -> f32 { fori_loop(0, n, |i, v| v * 2.0, x) }\nfn main() -> f32 { grad(f)(1.0, 3) }",
            "dynamic bounds",
        ),
        (
            "fn f(x: f32, n: i32) -> f32 { x }\nfn main() -> i32 { grad(f, argnums: 1)(1.0, 3) }",
            "argument 1 (`n`) of type i32",
        ),
        (
            "fn f(x: f32[2]) -> f32[2] { x }\nfn main() -> f32[2] { grad(f)([1.0, 2.0]) }",
            "returns an f32 or f64 scalar, but `f` returns f32[2]",
        ),
        ("fn f(x: f32) -> i32 { 1 }\nfn main() -> f32 { grad(f)(1.0) }", "returns i32"),
        ("fn f(x: f32) -> f32 { x }\nfn main() -> f32 { let g = grad(f); 1.0 }", "must be called at once"),
        ("fn f(x: f32) -> f32 { x }\nfn main() -> f32 { grad(f, argnums: [3])(1.0) }", "`argnums` names argument 3"),
        ("fn f(x: f32) -> f32 { x }\nfn main() -> f32 { grad(f, argnums: [0, 0])(1.0) }", "appears twice"),
        ("fn main() -> f32 { grad(1.0)(1.0) }", "needs a function"),
        ("fn main() -> f32 { grad(|x| x as f32)(1) }", "argument 0 of type i32"),
        ("fn f(x: f32) -> f32 { x }\nfn main() -> f32 { grad(f, foo: 1)(1.0) }", "no argument named `foo`"),
        ("fn main() -> f32 { while_loop(|v| v < 1.0, |v| v, 0.0, max_iters: -1) }", "non-negative integer literal"),
        ("fn main() -> f32 { let (c, _) = scan(|c, x| (c, x), 0.0, [1.0], checkpoint: 1); c }", "`checkpoint` must be"),
    ];
    for (src, want) in cases {
        let (msg, _, _) = compile_err(src);
        assert!(msg.contains(want), "`{want}` not in: {msg}\n{src}");
    }
}

#[test]
fn while_error_points_at_the_loop() {
    let src =
        "fn f(x: f32) -> f32 {\n    while_loop(|v| v < 10.0, |v| v * 2.0, x)\n}\nfn main() -> f32 { grad(f)(1.0) }";
    let (msg, line, col) = compile_err(src);
    assert!(msg.contains("cannot differentiate through a `while_loop` without `max_iters`"), "{msg}");
    assert_eq!((line, col), (2, 5));
    let e = loopvm_frontend::compile(src, "t.lb").unwrap_err();
    assert!(e.render(src).contains("scan"), "{}", e.render(src));
}

// ---------------------------------------------------------------------------
// Edge cases

#[test]
fn edge_cases() {
    let cases: &[(&str, &str)] = &[
        // second order
        ("fn main() -> f32 { grad(|x| grad(|y| y * y * y)(x))(2.0) }", "f32 12.0"),
        // constant and identity results; an unused argument
        ("fn f(x: f32, y: f32) -> f32 { 1.0 }\nfn main() -> (f32, f32) { grad(f, argnums: [0, 1])(3.0, 4.0) }", "(f32 0.0, f32 0.0)"),
        ("fn f(x: f32, y: f32) -> f32 { x }\nfn main() -> (f32, f32) { grad(f, argnums: [0, 1])(3.0, 4.0) }", "(f32 1.0, f32 0.0)"),
        // an empty scan and an empty static fori
        (
            "fn f(x: f32[2]) -> f32 { let (c, ys) = scan(|c, x| (c * x, c), x, zeros(f32, [0, 2])); sum(c) + sum(ys) }\nfn main() -> f32[2] { grad(f)([1.0, 2.0]) }",
            "f32[2] [1.0, 1.0]",
        ),
        ("fn f(x: f32) -> f32 { fori_loop(5, 2, |i, c| c * x, x) }\nfn main() -> f32 { grad(f)(3.0) }", "f32 1.0"),
        // integer counters in a differentiated carry; () ys; nested tuples
        (
            "fn f(x: f32) -> f32 { let ((k, (a, b)), _) = scan(|(k, (a, b)), _| ((k + 1, (a * b, b + 1.0)), ()), (0, (x, x)), length: 3); a * (k as f32) }\nfn main() -> f32 { grad(f)(1.0) }",
            "f32 51.0",
        ),
        // max_iters: 0 and a bound that is never reached
        ("fn f(x: f32) -> f32 { while_loop(|v| v < 5.0, |v| v * 3.0, x, max_iters: 0) }\nfn main() -> f32 { grad(f)(1.0) }", "f32 1.0"),
        ("fn f(x: f32) -> f32 { while_loop(|v| v < 5.0, |v| v * 3.0, x, max_iters: 1000) }\nfn main() -> f32 { grad(f)(1.0) }", "f32 9.0"),
        // grad inside a scan body that is itself differentiated
        (
            "fn f(w: f32) -> f32 { let (c, _) = scan(|c, x| (c + grad(|v| v * v * w)(x), ()), 0.0, [1.0, 2.0]); c * w }\nfn main() -> f32 { grad(f)(3.0) }",
            "f32 36.0",
        ),
        // a checkpointed scan inside a checkpointed scan
        (
            "fn f(x: f32) -> f32 { let (c, _) = scan(|c, _| { let (d, _) = scan(|d, _| (d * x, ()), c, length: 2, checkpoint: true); (d, ()) }, 1.0, length: 2, checkpoint: true); c }\nfn main() -> f32 { grad(f)(2.0) }",
            "f32 32.0",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(run(src), *want, "{src}");
    }
}

#[test]
fn symbolic_main_calls() {
    let src = "
fn loss(w: f32[3], xs: f32[T, 3]) -> f32 {
    let (c, ys) = scan(|c, x| (c * w + x, sum(c)), zeros(f32, [3]), xs);
    sum(c) + mean(ys) + sum(xs[0] * w)
}
fn main(w: f32[3], xs: f32[T, 3]) -> (f32[3], f32[T, 3]) { grad(loss, argnums: [0, 1])(w, xs) }";
    let w = f32s(&[3], &[0.5, 1.0, -1.0]);
    let xs = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (r, _) = run_with(src, &[w, xs]);
    // c1 = x0, c2 = x0*w + x1; loss = sum(c2) + (sum(c0) + sum(c1))/2 + x0.w:
    // d/dw = 2 x0, d/dx0 = 2 w + 1/2, d/dx1 = 1
    assert_eq!(r, "(f32[3] [2.0, 4.0, 6.0], f32[2, 3] [[1.5, 2.5, -1.5], [1.0, 1.0, 1.0]])");
}

#[test]
fn no_panics_on_damaged_grad_programs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/spec/grad");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let bytes = src.as_bytes();
        let step = (bytes.len() / 60).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            // truncated, and with one character removed
            for variant in [&src[..cut.min(src.len())], &format!("{}{}", &src[..cut], &src[(cut + 1).min(src.len())..])]
            {
                if !variant.is_char_boundary(variant.len()) {
                    continue;
                }
                let r = std::panic::catch_unwind(|| loopvm_frontend::compile(variant, "t.lb").map(|_| ()));
                match r {
                    Ok(Err(e)) => assert!(!e.message().contains("internal error"), "{e}\n{variant}"),
                    Ok(Ok(())) => {}
                    Err(_) => panic!("panic compiling {} damaged at {cut}", f.display()),
                }
            }
        }
    }
}
