//! The generator's output is pinned: the same seed gives the same program,
//! release after release (a finding's seed must keep reproducing it, and
//! the CI batch in the root crate's `tests/fuzz.rs` must keep its programs).
//! A deliberate change of the generator (or of the op table it draws from:
//! `log1p` changed it, and the batched `@`, `einsum` and gather arms, u32 and u8 with the bit ops and `bitcast`, bf16 and f16, `shard`, the `vmap` arm of issue 18, reshape targets with products and `-1`, up to three prints a program, side by side, of issue 17, and main's parameters typed with shape variables, reshaped across them) updates `PINNED`.

/// FNV-1a of the sources and arguments of the first 200 programs of batch 7.
const PINNED: u64 = 0x326e_8715_361c_5159;

#[test]
fn programs_of_a_seed_are_pinned() {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for k in 0..200 {
        let g = loopvm_fuzzgen::generate(loopvm_fuzzgen::program_seed(7, k), 80);
        for b in g.source.bytes().chain(g.args.join(" ").bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    assert_eq!(h, PINNED, "the generator's programs changed (hash {h:#018x})");
}

/// Every composite builtin, random draw and named argument of issue 14 is
/// drawn: a generator arm that never fires tests nothing.
#[test]
fn the_composites_are_generated() {
    let sources: Vec<String> =
        (0..300).map(|k| loopvm_fuzzgen::generate(loopvm_fuzzgen::program_seed(7, k), 80).source).collect();
    for name in [
        "softmax(",
        "log_softmax(",
        "logsumexp(",
        "gelu(",
        "approximate: false",
        "stop_gradient(",
        "keepdims: true",
        "erfc(",
        "vmap(|",
        ", none]",
        "out_axes: 1",
        "bf16",
        "f16[",
        "as bf16",
        "as f16",
    ] {
        let n = sources.iter().filter(|s| s.contains(name)).count();
        assert!(n > 0, "no program of 300 uses `{name}`");
    }
    // Reshape targets written with a product and with a -1.
    let reshape_args = |s: &String| -> Vec<String> {
        s.match_indices("reshape(").filter_map(|(i, _)| s[i..].lines().next().map(str::to_string)).collect()
    };
    let lines: Vec<String> = sources.iter().flat_map(reshape_args).collect();
    assert!(lines.iter().any(|l| l.contains(" * ")), "no reshape target with a product");
    assert!(lines.iter().any(|l| l.contains("-1]") || l.contains("-1,")), "no reshape target with -1");
    // main's parameters typed with shape variables, reshaped across them.
    let poly: Vec<&String> = sources.iter().filter(|s| s.contains("a: ") || s.contains("[S")).collect();
    let across: Vec<&String> = lines.iter().filter(|l| l.contains("reshape(reshape(a")).collect();
    assert!(
        !poly.is_empty() && !across.is_empty(),
        "{} programs with shape variables, {} reshapes across them",
        poly.len(),
        across.len()
    );
    for form in [" * S", "-1, S"] {
        assert!(across.iter().any(|l| l.contains(form)), "no reshape across shape variables of the form `{form}`");
    }
}
