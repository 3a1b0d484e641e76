//! `--max-steps`, `--timeout` and `--max-memory` on every tier: a runaway
//! loop ends with the same clear error whether the interpreter, Cranelift
//! code or an XLA executable runs it, a step limit means the same count of
//! loop iterations everywhere, and an oversized result is refused before it
//! is allocated. (That native code and XLA executables, not the
//! interpreter, stop the loops is checked in `jit/tests/cranelift_tier.rs`
//! and `jit/tests/xla_tier.rs`; here, the finite runs check where loops ran.)

use loopvm::{DType, Program, RunConfig, Tensor, Tier};
use std::time::{Duration, Instant};

const TIERS: [Tier; 4] = [Tier::Interp, Tier::Jit, Tier::Xla, Tier::Auto];

fn prog(src: &str) -> Program {
    Program::from_source(src, "limits.lb").unwrap()
}

/// A run on `tier` with loops going native at once.
fn cfg(tier: Tier) -> RunConfig {
    RunConfig { tier, jit_threshold: Some(0), ..RunConfig::default() }
}

fn err(p: &Program, args: &[Tensor], c: &RunConfig) -> String {
    match p.run(args, c) {
        Ok(o) => panic!("{:?}: expected an error, got {}", c.tier, o.value),
        Err(e) => e.to_string(),
    }
}

const SCALAR_FOREVER: &str = "fn main(n: i32) -> i32 {
    let (i, a) = while_loop(|(i, a)| i >= 0, |(i, a)| (i + n - n, a + 1), (0, 0));
    a
}";

const TENSOR_FOREVER: &str = "fn main(x: f32[64]) -> f32[64] {
    let (i, y) = while_loop(|(i, y)| i >= 0, |(i, y)| (i + 1 - 1, tanh(y) + 0.5), (0, x));
    y
}";

/// Nested loops: 100 outer iterations of 10 inner ones, 1100 steps.
const NESTED: &str = "fn main(n: i32) -> i32 {
    fori_loop(0, n, |i, a| fori_loop(0, 10, |j, b| b + j, a), 0)
}";

/// The runaway programs with their arguments.
fn runaways() -> [(Program, Vec<Tensor>); 2] {
    [
        (prog(SCALAR_FOREVER), vec![Tensor::scalar(100i32)]),
        (prog(TENSOR_FOREVER), vec![Tensor::zeros(DType::F32, &[64]).unwrap()]),
    ]
}

#[test]
fn a_runaway_loop_stops_at_the_step_limit_on_every_tier() {
    for (p, args) in runaways() {
        for tier in TIERS {
            let c = RunConfig { max_steps: Some(5000), ..cfg(tier) };
            let e = err(&p, &args, &c);
            assert!(e.contains("step limit exceeded: more than 5000 loop iterations (--max-steps)"), "{tier:?}: {e}");
        }
    }
}

#[test]
fn a_step_limit_counts_the_same_iterations_on_every_tier() {
    let p = prog(NESTED);
    let n = [Tensor::scalar(100i32)];
    for tier in TIERS {
        let ok = p.run(&n, &RunConfig { max_steps: Some(1100), ..cfg(tier) }).unwrap();
        assert_eq!(ok.value.to_string(), "i32 4500", "{tier:?}");
        // Where it ran: native code and XLA count, not the interpreter.
        match tier {
            Tier::Jit => assert!(ok.loops.iter().any(|l| l.tier == Tier::Jit), "{tier:?}: {:?}", ok.notes),
            Tier::Xla => assert!(ok.notes.iter().any(|s| s.contains("1 executions")), "{tier:?}: {:?}", ok.notes),
            _ => {}
        }
        let e = err(&p, &n, &RunConfig { max_steps: Some(1099), ..cfg(tier) });
        assert!(e.contains("more than 1099 loop iterations"), "{tier:?}: {e}");
    }
    // A loop whose condition still holds when the budget is spent fails;
    // one that ends on the last step passes.
    let p = prog("fn main(n: i32) -> i32 { while_loop(|i| i < n, |i| i + 1, 0) }");
    for tier in TIERS {
        let n = [Tensor::scalar(3000i32)];
        assert!(p.run(&n, &RunConfig { max_steps: Some(3000), ..cfg(tier) }).is_ok(), "{tier:?}");
        let e = err(&p, &n, &RunConfig { max_steps: Some(2999), ..cfg(tier) });
        assert!(e.contains("more than 2999"), "{tier:?}: {e}");
    }
}

#[test]
fn a_runaway_loop_stops_at_the_deadline_on_every_tier() {
    for (p, args) in runaways() {
        for tier in TIERS {
            let c = RunConfig { timeout: Some(Duration::from_millis(300)), ..cfg(tier) };
            let t = Instant::now();
            let e = err(&p, &args, &c);
            assert!(e.contains("time limit exceeded: the run took more than 300ms (--timeout)"), "{tier:?}: {e}");
            // It stops; how soon after the deadline is a benchmark's business.
            assert!(t.elapsed() < Duration::from_secs(60), "{tier:?}");
        }
    }
}

#[test]
fn a_runaway_loop_stops_when_its_cancel_flag_is_set_on_every_tier() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    for (p, args) in runaways() {
        for tier in TIERS {
            let flag = Arc::new(AtomicBool::new(false));
            let c = RunConfig { cancel: Some(flag.clone()), ..cfg(tier) };
            let setter = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                flag.store(true, Ordering::Relaxed);
            });
            let t = Instant::now();
            let e = err(&p, &args, &c);
            assert_eq!(e, "error: interrupted", "{tier:?}");
            assert!(t.elapsed() >= Duration::from_millis(300), "{tier:?}: stopped before the flag was set");
            assert!(t.elapsed() < Duration::from_secs(60), "{tier:?}");
            let _ = setter.join();
        }
    }
}

#[test]
fn a_finite_loop_under_a_deadline_gives_its_result_on_every_tier() {
    // 3 * 10^6 iterations: on XLA more than the first budget, so the
    // region is run again with more.
    let p = prog("fn main(n: i32) -> i32 { fori_loop(0, n, |i, a| a + (i % 3), 0) }");
    let n = [Tensor::scalar(3_000_000i32)];
    for tier in TIERS {
        let c = RunConfig { timeout: Some(Duration::from_secs(600)), ..cfg(tier) };
        let out = p.run(&n, &c).unwrap();
        assert_eq!(out.value.to_string(), "i32 3000000", "{tier:?}");
        if tier == Tier::Xla {
            // 2^20 iterations were not enough; 2^22 were.
            assert!(out.notes.iter().any(|s| s.contains("2 executions")), "{:?}", out.notes);
        }
    }
}

#[test]
fn an_oversized_tensor_is_refused_before_it_is_allocated_on_every_tier() {
    // A 4 MB zeros inside a loop body.
    let big = prog("fn main(n: i32) -> f32 { fori_loop(0, n, |i, a| a + sum(zeros(f32, [1000000])), 0.0) }");
    // A scan whose ys (i32[10^6], 4 MB) are refused: scalar rows, so the
    // jit tier compiles the loop and checks its results.
    let ys = prog("fn main(n: i32) -> i32[1000000] { let (c, ys) = scan(|c, _| (c + n, c), 0, length: 1000000); ys }");
    // A take whose result (f32[1000, 1000], 4 MB) is far larger than its operands.
    let take = prog(
        "fn main(n: i32) -> f32 { sum(take(broadcast(iota(f32, 1000), [2, 1000]), iota(i32, 1000) % n, axis: 0)) }",
    );
    let n = [Tensor::scalar(3i32)];
    for tier in TIERS {
        for p in [&big, &ys, &take] {
            let e = err(p, &n, &RunConfig { max_memory: Some(1 << 20), ..cfg(tier) });
            assert!(e.contains("memory limit exceeded") && e.contains("(--max-memory)"), "{tier:?}: {e}");
            assert!(p.run(&n, &RunConfig { max_memory: Some(64 << 20), ..cfg(tier) }).is_ok(), "{tier:?}");
        }
    }
}
