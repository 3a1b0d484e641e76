//! Differential fuzzing: random well-typed `.lb` programs, run on the
//! interpreter (the reference) and on other tiers, compared with
//! [`loopvm_api::diff::compare`], and shrunk to a small reproducer on a
//! mismatch. The `loopvm fuzz` command is [`run`].
//!
//! The generator is type-directed: it is asked for an expression of a given
//! type and picks among the productions that can give it (literals with edge
//! values, variables, arithmetic with broadcasting, comparisons, casts,
//! reductions, static and dynamic indexing in and out of range, `.at[]`
//! updates, `if`, calls of generated functions, nested `fori_loop` /
//! `while_loop` / `scan` with tuple carries of mixed dtypes). Every program
//! is deterministic given its seed ([`generate`]).
//!
//! Float results may differ between tiers within the documented tolerance,
//! and such a difference must not be amplified into an integer or bool
//! (`(sin(x) * 1e6) as i32`): the generator keeps every float value that
//! reaches a comparison, a cast to an integer, `argmax` or a float dynamic
//! path *exact* (built only from correctly rounded IEEE operations, with no
//! transcendental functions, float reductions or float matrix products).
//!
//! The phases, one module each: `generate` builds a program tree (`tree`)
//! from a seed, `print` renders it as source, `run` runs and compares it on
//! the tiers, and `shrink` simplifies a mismatch.
//!
//! ```
//! use loopvm_fuzzgen::{generate, FuzzOptions};
//! let a = generate(7, FuzzOptions::default().size);
//! assert_eq!(a.source, generate(7, FuzzOptions::default().size).source);
//! assert!(loopvm_api::Program::from_source(&a.source, "fuzz.lb").is_ok());
//! ```

#![deny(missing_docs)]

mod generate;
mod generate_ops;
mod print;
mod run;
mod shrink;
mod tree;

pub use generate::{generate, Rng};
pub use run::{program_seed, run, Finding, FuzzOptions, FuzzReport, TierCount, JIT_THRESHOLD};
pub use tree::Generated;
