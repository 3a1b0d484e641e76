//! The frontend never panics: truncated and mutated programs give errors.

const PROGRAMS: &[&str] = &[
    r#"
fn loss(w: f32[4, 4], xs: f32[10, 4]) -> f32 {
    let (h, hs) = scan(|h, x| { let h2 = tanh(h @ w + x); (h2, h2) },
                       zeros(f32, [4]), xs);
    sum(hs * hs)
}
fn main(w: f32[4, 4], xs: f32[T, 4]) -> (f32, f32[T, 4]) {
    let plus = [1];
    let (_, res) = fori_loop(2, 52, |i, (p, acc)| (p, p + acc), (plus, [1]));
    let c = while_loop(|(x, lim)| lim[0] >= x[0], |(x, lim)| (x + 1, lim), ([0], [10]));
    let s = scan(|c, _| (c + 1.0, c), 0.0, length: 10, reverse: true, unroll: 2);
    let y = xs.at[0, 1].set(-1.5e3);
    let z = if res[0] > 3 { y[::-1] } else { y[:, 0:4] * 2.0 ** -1.0 };
    print((c, s));
    (loss(w, zeros(f32, [10, 4])), y)
}
"#,
    r#"
fn main() -> (f32[6], i32, bool) {
    let x = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let r = reshape(transpose(x, [1, 0]), [-1]);
    let k = argmax(sum(broadcast(x[0], [4, 3]), axis: -1)) as i32;
    (concat([r[0:3], r[3:]], axis: 0), k + 1i32, !(1 < 2) || true && false)
}
"#,
];

fn lcg(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn the_programs_compile() {
    for p in PROGRAMS {
        if let Err(e) = loopvm_frontend::compile(p, "p.lb") {
            panic!("{}", e.render(p));
        }
    }
}

#[test]
fn every_truncation_is_an_error_or_ok() {
    for p in PROGRAMS {
        for (i, _) in p.char_indices() {
            let src = &p[..i];
            if let Err(e) = loopvm_frontend::compile(src, "t.lb") {
                let _ = e.render(src);
                assert!(e.first_location().is_some());
            }
        }
    }
}

#[test]
fn mutations_do_not_panic() {
    const PIECES: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ";",
        ":",
        "|",
        "||",
        "-",
        "**",
        "@",
        ".",
        "as",
        "let",
        "if",
        "else",
        "fn",
        "x",
        "_",
        "0",
        "-1",
        "1e400",
        "99999999999999999999",
        "1.5",
        "true",
        "f16",
        "i64",
        "at",
        "set",
        "scan",
        "fori_loop",
        "while_loop",
        "zeros",
        "sum",
        "axis:",
        "length:",
        "T",
        "\u{e9}",
        "#",
        "\n",
        "",
    ];
    let mut st = 42u64;
    for p in PROGRAMS {
        let bytes: Vec<char> = p.chars().collect();
        for _ in 0..1500 {
            let mut s: Vec<char> = bytes.clone();
            let edits = 1 + lcg(&mut st) % 3;
            for _ in 0..edits {
                let at = (lcg(&mut st) as usize) % (s.len() + 1);
                match lcg(&mut st) % 3 {
                    0 if at < s.len() => {
                        s.remove(at);
                    }
                    _ => {
                        let piece = PIECES[(lcg(&mut st) as usize) % PIECES.len()];
                        for (k, c) in piece.chars().enumerate() {
                            s.insert((at + k).min(s.len()), c);
                        }
                    }
                }
            }
            let src: String = s.into_iter().collect();
            match loopvm_frontend::compile(&src, "m.lb") {
                Ok(m) => {
                    if let Err(e) = loopvm_vm::verify(&m) {
                        panic!("verifier rejected a compiled module: {e}\n{src}");
                    }
                }
                Err(e) => {
                    let _ = e.render(&src);
                }
            }
        }
    }
}

#[test]
fn lambda_inlining_blowup_is_bounded() {
    let mut src = String::from("fn main() -> i32 {\n let f0 = |x| x + 1;\n");
    for i in 1..40 {
        src.push_str(&format!(" let f{i} = |x| f{}(f{}(x));\n", i - 1, i - 1));
    }
    src.push_str(" f39(0)\n}\n");
    let e = loopvm_frontend::compile(&src, "b.lb").unwrap_err();
    assert!(e.message().contains("program too large") || e.message().contains("nested too deeply"), "{}", e.message());
}

#[test]
fn many_lets_are_fine() {
    let mut src = String::from("fn main() -> i32 {\n let x0 = 0;\n");
    for i in 1..20000 {
        src.push_str(&format!(" let x{i} = x{} + 1;\n", i - 1));
    }
    src.push_str(" x19999\n}\n");
    assert!(loopvm_frontend::compile(&src, "l.lb").is_ok());
}
