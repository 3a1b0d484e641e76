//! Compile errors: each checked for its message and its line:column, and the
//! rendering with the source line and carets.

mod common;
use common::{compile_err, run};

/// Asserts the error of `src` contains every part of `parts` and is at `at`.
fn check(src: &str, parts: &[&str], at: (usize, usize)) {
    let (msg, l, c) = compile_err(src);
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
    assert_eq!((l, c), at, "location of {msg:?}");
}

#[test]
fn unknown_name() {
    check("fn main() -> i32 {\n    y + 1\n}\n", &["unknown name `y`"], (2, 5));
}

#[test]
fn unknown_function() {
    check("fn main() -> i32 {\n    foo(1)\n}\n", &["unknown function `foo`"], (2, 5));
}

#[test]
fn wrong_arity_of_function() {
    let src = "fn f(a: i32, b: i32) -> i32 {\n    a + b\n}\nfn main() -> i32 {\n    f(1)\n}\n";
    check(src, &["function `f` takes 2 arguments but 1 was given"], (5, 5));
}

#[test]
fn wrong_arity_of_builtin_and_lambda() {
    check(
        "fn main() -> f32[2] {\n    zeros(f32, [2], 3)\n}\n",
        &["`zeros` takes 2 positional arguments but 3 were given"],
        (2, 5),
    );
    check(
        "fn main() -> i32 {\n    let f = |a, b| a + b;\n    f(1)\n}\n",
        &["this lambda takes 2 arguments but 1 was given"],
        (3, 5),
    );
    check(
        "fn main() -> i32 {\n    fori_loop(0, 3, |acc| acc, 0)\n}\n",
        &["the body of `fori_loop` (i, carry) takes 2 parameters but this lambda has 1"],
        (2, 21),
    );
}

#[test]
fn body_carry_mismatch_names_both_types() {
    let src = "fn main() -> (i32[1], i32) {\n    fori_loop(0, 3, |i, (a, b)| (a, 1.5), ([1], 0))\n}\n";
    check(src, &["loop body returns (i32[1], f32) but the carry is (i32[1], i32)"], (2, 33));
    let scan = "fn main() -> (f32, f32[3]) {\n    scan(|c, x| (x, c), 0, [1.0, 2.0, 3.0])\n}\n";
    check(scan, &["loop body returns f32 but the carry is i32"], (2, 17));
    let w = "fn main() -> i32 {\n    while_loop(|x| x < 3, |x| x + 1.0, 0)\n}\n";
    check(w, &["cannot use float literal 1.0 as i32"], (2, 35));
}

#[test]
fn while_condition_must_be_a_bool_scalar() {
    let src = "fn main() -> i32 {\n    while_loop(|x| x, |x| x - 1, 10)\n}\n";
    check(src, &["`while_loop` condition must return a bool scalar, got i32"], (2, 20));
    let src = "fn main() -> i32[1] {\n    while_loop(|x| x > 0, |x| x - 1, [10])\n}\n";
    check(src, &["got bool[1]"], (2, 20));
}

#[test]
fn shapes_that_do_not_broadcast() {
    let src = "fn main() -> f32[3] {\n    let a = zeros(f32, [3]);\n    a + zeros(f32, [4])\n}\n";
    check(src, &["shapes do not broadcast in add", "f32[3]", "f32[4]", "cannot broadcast 3 with 4"], (3, 5));
    let src = "fn f(x: f32[T]) -> f32[T] {\n    x + zeros(f32, [4])\n}\nfn main() -> i32 { 0 }\n";
    check(src, &["cannot broadcast T with 4"], (2, 5));
}

#[test]
fn matmul_inner_dims() {
    let src = "fn main() -> f32[2, 2] {\n    zeros(f32, [2, 3]) @ zeros(f32, [2, 2])\n}\n";
    check(src, &["matmul dimensions do not match", "f32[2, 3]", "f32[2, 2]"], (2, 5));
}

#[test]
fn if_branches_of_different_types() {
    let src = "fn main(c: bool) -> i32 {\n    if c { 1 } else { 2.5 }\n}\n";
    check(src, &["if branches have different types: then i32, else f32"], (2, 23));
    let src = "fn main(c: bool) -> f32[2] {\n    if c { zeros(f32, [2]) } else { zeros(f32, [3]) }\n}\n";
    check(src, &["then f32[2], else f32[3]"], (2, 37));
}

#[test]
fn if_condition_must_be_bool_scalar() {
    check(
        "fn main() -> i32 {\n    if 1 { 1 } else { 2 }\n}\n",
        &["`if` condition must be a bool scalar, got i32"],
        (2, 8),
    );
}

#[test]
fn unterminated_input_points_at_the_end() {
    let src = "fn main() -> i32 {\n    let x = 1;\n";
    check(src, &["unexpected end of input", "`}`"], (3, 1));
    check("fn main() -> i32 {\n    (1 + 2\n", &["unexpected end of input"], (3, 1));
    check("fn main(", &["unexpected end of input"], (1, 9));
    check("fn main() -> i32 { [1, 2 }", &["expected `]`, found `}`"], (1, 26));
}

#[test]
fn unknown_dtype() {
    check("fn main() -> f32 {\n    zeros(f8, [2])\n}\n", &["unknown dtype `f8`"], (2, 11));
    check("fn main(x: f8) -> i32 { 0 }", &["unknown dtype `f8`"], (1, 12));
    check("fn main() -> f32 { 1 as bf8 }", &["unknown dtype `bf8`"], (1, 25));
}

#[test]
fn dtype_mismatch_and_the_literal_rule() {
    let src = "fn main(x: f32[4], i: i32[4]) -> f32[4] {\n    x + i\n}\n";
    check(src, &["dtype mismatch in add: lhs f32[4], rhs i32[4]"], (2, 5));
    check("fn main(i: i32) -> i32 {\n    1.5 + i\n}\n", &["cannot use float literal 1.5 as i32"], (2, 5));
    check("fn main() -> i32 { 3000000000 }", &["integer literal 3000000000 does not fit in i32"], (1, 20));
    check("fn main() -> i64 { 99999999999999999999999i64 }", &["too large"], (1, 20));
    check("fn main() -> f32 { 1e39 }", &["out of range for f32"], (1, 20));
    check("fn main() -> f64 { 1e400 }", &["out of range"], (1, 20));
    // Found by the differential fuzzer: the shortest spelling of f32::MAX is
    // above f32::MAX as an f64, yet rounds to it; only what rounds to
    // infinity is out of range.
    assert_eq!(
        run("fn main() -> (f32, f32) { (3.4028235e38, -3.4028235e38f32) }"),
        "(f32 3.4028235e38, f32 -3.4028235e38)"
    );
    check("fn main() -> f32 { 3.4028236e38 }", &["out of range for f32"], (1, 20));
    check("fn main(b: bool) -> bool { b + b }", &["not defined on bool"], (1, 28));
    check("fn main(b: i32) -> bool { b && true }", &["`&&` needs bool operands"], (1, 27));
}

#[test]
fn recursion_is_rejected() {
    let src = "fn f(x: i32) -> i32 {\n    g(x)\n}\nfn g(x: i32) -> i32 {\n    f(x)\n}\nfn main() -> i32 { f(1) }\n";
    check(src, &["recursive call of `f`: loopvm functions cannot recurse; use a loop"], (5, 5));
}

#[test]
fn result_type_mismatch() {
    check(
        "fn main() -> f32[2] {\n    zeros(f32, [3])\n}\n",
        &["function `main` returns f32[2] but its body has type f32[3]"],
        (2, 5),
    );
}

#[test]
fn indexing_errors() {
    check(
        "fn main() -> f32 { let x = zeros(f32, [3]); x[5] }",
        &["index 5 is out of bounds for axis 0 with size 3"],
        (1, 47),
    );
    check("fn main() -> f32 { let x = zeros(f32, [3]); x[0, 0] }", &["too many indices"], (1, 45));
    check(
        "fn main(i: i32) -> f32 { let x = zeros(f32, [3, 3]); x[1:2, i] }",
        &["dynamic index after a slice is not supported"],
        (1, 56),
    );
    check(
        "fn main(i: f32) -> f32 { let x = zeros(f32, [3]); x[i] }",
        &["an index must be an integer scalar, got f32"],
        (1, 53),
    );
    check(
        "fn main() -> f32[3] { let x = zeros(f32, [3]); x.at[0].set(1.0f64) }",
        &["dtype mismatch in `.at[...].set`"],
        (1, 60),
    );
    check("fn main() -> f32[3] { let x = zeros(f32, [3]); x.at[0].mul(2.0) }", &["unknown update `.mul`"], (1, 56));
}

#[test]
fn misc_errors() {
    check(
        "fn main() -> i32 { let (a, b) = 1; a }",
        &["a tuple pattern of 2 elements cannot match a value of type i32"],
        (1, 24),
    );
    check("fn main() -> i32 { 1 < 2 < 3 }", &["comparison operators cannot be chained"], (1, 26));
    check("fn f() -> i32 { 1 }\nfn f() -> i32 { 2 }", &["function `f` is defined twice"], (2, 4));
    check("fn main() -> i32 { let f = |x| x; f }", &["`f` is a function"], (1, 35));
    check(
        "fn main() -> f32[3] { reshape(zeros(f32, [2, 3]), [4]) }",
        &["cannot reshape f32[2, 3] (6 elements)"],
        (1, 51),
    );
    check("fn main() -> i32 { sum([1, 2], axis: 1) }", &["axis 1 is out of range for i32[2]"], (1, 38));
    check("fn main() -> f32[2] { exp([1, 2]) }", &["`exp` requires a float operand, got i32[2]"], (1, 27));
    check("fn main() -> i32 { [[1, 2], [3]][0, 0] }", &["list elements have different types"], (1, 29));
    check("fn main() -> i32 { $ }", &["unexpected character `$`"], (1, 20));
    check("fn main() -> i32 { 1u16 }", &["invalid suffix `u16`"], (1, 21));
    check("fn main() -> f16 { 70000.0f16 }", &["float literal 70000.0 is out of range for f16"], (1, 20));
    check("fn main() -> bf16 { 1e39bf16 }", &["float literal 1e39 is out of range for bf16"], (1, 21));
    check("fn main(x: f16) -> f16 { x + 70000 }", &["integer literal 70000 is out of range for f16"], (1, 30));
    check("fn main(x: bf16) -> bf16 { x + 1.0f16 }", &["dtype mismatch in add: lhs bf16, rhs f16"], (1, 28));
    check("fn main(x: bf16) -> bf16 { x & x }", &["`&` needs integer or bool operands: lhs bf16, rhs bf16"], (1, 28));
    check("fn main(x: bf16) -> f32 { bitcast(x, f32) }", &["cannot bitcast bf16 to f32"], (1, 27));
    check("fn main(k: u32[2]) -> bf16 { uniform(k, bf16, []) }", &["`uniform` draws f32 or f64, not bf16"], (1, 41));
    check("fn main() -> u8 { 256u8 }", &["integer literal 256 does not fit in u8"], (1, 19));
    check("fn main(x: u32) -> u32 { x + -1 }", &["integer literal -1 does not fit in u32"], (1, 30));
    check("fn main(x: i32) -> i32 { x + 3000000000 }", &["integer literal 3000000000 does not fit in i32"], (1, 30));
    check("fn main(x: u32) -> u32 { !x }", &["`!` needs a bool, got u32"], (1, 27));
    check("fn main() -> (f32, f32) { scan(|c, x| c, 0.0, [1.0]) }", &["must return a pair"], (1, 39));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for depth in [300, 5000, 100_000] {
        let src = format!("fn main() -> i32 {{ {}1{} }}", "(".repeat(depth), ")".repeat(depth));
        let (msg, _, _) = compile_err(&src);
        assert!(msg.contains("nested too deeply"), "{msg}");
        let src = format!("fn main() -> i32 {{ {}1 }}", "-".repeat(depth));
        let (msg, _, _) = compile_err(&src);
        assert!(msg.contains("nested too deeply"), "{msg}");
        let src = format!("fn main() -> i32 {{ {}1{} }}", "{".repeat(depth), "}".repeat(depth));
        let (msg, _, _) = compile_err(&src);
        assert!(msg.contains("nested too deeply"), "{msg}");
    }
    // Just under the limit is fine.
    let src = format!("fn main() -> i32 {{ {}1{} }}", "(".repeat(100), ")".repeat(100));
    assert!(loopvm_frontend::compile(&src, "t.lb").is_ok());
}

#[test]
fn render_shows_file_line_and_carets() {
    let src = "fn main() -> i32 {\n    y + 1\n}\n";
    let e = loopvm_frontend::compile(src, "prog.lb").unwrap_err();
    let r = e.render(src);
    assert!(r.starts_with("error: unknown name `y`"), "{r}");
    assert!(r.contains("┌─ prog.lb:2:5"), "{r}");
    assert!(r.contains("    y + 1"), "{r}");
    assert!(r.contains("^"), "{r}");
    assert_eq!(e.to_string(), "prog.lb:2:5: unknown name `y`");
    assert_eq!(e.first_location(), Some((2, 5)));
    // check() reports the same.
    assert_eq!(loopvm_frontend::check(src, "prog.lb").unwrap_err().to_string(), "prog.lb:2:5: unknown name `y`");
    // Rendering against a shorter source does not panic.
    let _ = e.render("");
}

#[test]
fn notes_and_labels_render() {
    let src = "fn main(x: f32[4], i: i32[4]) -> f32[4] {\n    x + i\n}\n";
    let e = loopvm_frontend::compile(src, "p.lb").unwrap_err();
    let r = e.render(src);
    assert!(r.contains("= convert one side with `as`"), "{r}");
}

#[test]
fn long_chains_are_limited_not_crashing() {
    for n in [300, 200_000] {
        let src = format!("fn main() -> i32 {{ 1{} }}", " + 1".repeat(n));
        assert!(compile_err(&src).0.contains("nested too deeply"));
        let src = format!("fn main() -> i32 {{ [1]{} }}", "[0]".repeat(n));
        assert!(compile_err(&src).0.contains("nested too deeply"));
        let src = format!("fn main() -> i32 {{ 1{} }}", " as i32".repeat(n));
        assert!(compile_err(&src).0.contains("nested too deeply"));
    }
    let src = format!("fn main() -> i32 {{ 1{} }}", " + 1".repeat(200));
    assert!(loopvm_frontend::compile(&src, "t.lb").is_ok());
}

/// The rendered source line and the caret line of a report: the caret line
/// is the first line with a `^` after the line that names the file.
fn excerpt_lines(r: &str) -> (String, String) {
    let lines: Vec<&str> = r.lines().collect();
    let caret = lines.iter().position(|l| l.contains('^')).unwrap_or_else(|| panic!("no caret:\n{r}"));
    (lines[caret - 1].to_string(), lines[caret].to_string())
}

/// The character of `source_line` above the first `^` of `caret_line`.
fn char_above_caret(source_line: &str, caret_line: &str) -> char {
    let col = caret_line.chars().position(|c| c == '^').unwrap();
    source_line.chars().nth(col).unwrap_or_else(|| panic!("caret past the line:\n{source_line}\n{caret_line}"))
}

/// A diagnostic on a very long source line shows a window around the caret,
/// with `…` where the line is cut, and keeps the real line and column.
#[test]
fn long_lines_render_a_window_around_the_caret() {
    // 10 000 characters on line 2; an unknown name in the middle.
    let filler = ", 1.0".repeat(1000);
    let src = format!("fn main() -> f32 {{\n    let x = sum([1.0{filler}, y{filler}]);\n    x\n}}\n");
    let line2 = src.lines().nth(1).unwrap();
    assert!(line2.len() >= 10_000, "{}", line2.len());
    let col = line2.find('y').unwrap() + 1;
    let e = loopvm_frontend::compile(&src, "long.lb").unwrap_err();
    assert_eq!(e.to_string(), format!("long.lb:2:{col}: unknown name `y`"));
    let r = e.render(&src);
    assert!(r.len() < 1000, "{} bytes:\n{r}", r.len());
    assert!(r.lines().all(|l| l.chars().count() <= 140), "{r}");
    assert!(r.contains(&format!("┌─ long.lb:2:{col}")), "{r}");
    let (line, caret) = excerpt_lines(&r);
    assert!(line.starts_with("2 │ …") && line.ends_with('…'), "{r}");
    assert_eq!(char_above_caret(&line, &caret), 'y', "{r}");
    assert!(line.contains(", 1.0, y, 1.0,"), "{r}");

    // An error near the end of the line: the window ends with the line.
    let src = format!("fn main() -> f32 {{\n    sum([1.0{filler}{filler}]) + z }}\n");
    let col = src.lines().nth(1).unwrap().find('z').unwrap() + 1;
    let e = loopvm_frontend::compile(&src, "long.lb").unwrap_err();
    assert_eq!(e.first_location(), Some((2, col)));
    let r = e.render(&src);
    assert!(r.len() < 1000, "{} bytes:\n{r}", r.len());
    assert!(r.contains(&format!("┌─ long.lb:2:{col}")), "{r}");
    let (line, caret) = excerpt_lines(&r);
    assert!(line.starts_with("2 │ …") && line.ends_with("+ z }"), "{r}");
    assert_eq!(char_above_caret(&line, &caret), 'z', "{r}");

    // A parse error at the very end of a long last line (no newline).
    let src = format!("fn main() -> f32 {{ sum([1.0{filler}{filler}]) +");
    let e = loopvm_frontend::compile(&src, "long.lb").unwrap_err();
    let col = src.chars().count() + 1;
    assert_eq!(e.to_string(), format!("long.lb:1:{col}: unexpected end of input: expected an expression"));
    let r = e.render(&src);
    assert!(r.len() < 1000 && r.contains(&format!("long.lb:1:{col}")) && r.contains('^'), "{r}");

    // A type error whose span is longer than the window: cut on the right.
    let src = format!("fn main() -> i32 {{\n    let a = sum([1.0{filler}]) as i32;\n    a + sum([2.0{filler}])\n}}\n");
    let e = loopvm_frontend::compile(&src, "long.lb").unwrap_err();
    assert_eq!(e.first_location(), Some((3, 5)));
    let r = e.render(&src);
    assert!(r.len() < 1500 && r.contains("┌─ long.lb:3:5") && r.contains('^'), "{r}");
    let (line, caret) = excerpt_lines(&r);
    assert!(line.starts_with("3 │     a + sum([2.0, 1.0") && line.ends_with('…'), "{r}");
    assert_eq!(char_above_caret(&line, &caret), 'a', "{r}");
}

/// Short lines render as before: no cuts.
#[test]
fn short_lines_are_not_cut() {
    let pad = "x".repeat(100);
    let src = format!("fn main() -> i32 {{\n    let {pad} = 1;\n    y + {pad}\n}}\n");
    let e = loopvm_frontend::compile(&src, "p.lb").unwrap_err();
    let r = e.render(&src);
    assert!(!r.contains('…') && r.contains(&format!("    y + {pad}")), "{r}");
    // Non-ASCII text on a long line (a comment) is cut on char boundaries.
    let src = format!("fn main() -> i32 {{\n    y # {}\n}}\n", "é∈".repeat(3000));
    let e = loopvm_frontend::compile(&src, "p.lb").unwrap_err();
    let r = e.render(&src);
    assert!(r.contains("┌─ p.lb:2:5") && r.contains('…') && r.len() < 1000, "{r}");
    let (line, caret) = excerpt_lines(&r);
    assert_eq!(char_above_caret(&line, &caret), 'y', "{r}");
}

/// Two labels far apart on one long line: the window follows the primary
/// one; the other is drawn on the `…` that stands for it, with its message.
#[test]
fn long_line_with_labels_far_apart() {
    let src = format!(
        "fn main(c: bool) -> f32 {{ let k = 1; let t = 1.0; if c {{ t }} else {{ sum([k{}]) }} }}\n",
        ", k".repeat(3000)
    );
    let e = loopvm_frontend::compile(&src, "far.lb").unwrap_err();
    let (l, c) = e.first_location().unwrap();
    assert_eq!(l, 1);
    let r = e.render(&src);
    assert!(r.len() < 1500, "{} bytes:\n{r}", r.len());
    assert!(r.contains(&format!("┌─ far.lb:1:{c}")), "{r}");
    assert!(r.contains("this is f32") && r.contains("this is i32"), "{r}");
    assert!(r.lines().all(|l| l.chars().count() <= 140), "{r}");
    let (line, caret) = excerpt_lines(&r);
    assert_eq!(char_above_caret(&line, &caret), 's', "{r}");
    let dash = caret.chars().position(|c| c == '-').unwrap();
    assert_eq!(line.chars().nth(dash), Some('…'), "{r}");
}
