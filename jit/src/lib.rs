//! loopvm JIT tiers: the XLA back end (StableHLO through PJRT) and the
//! Cranelift back end.

pub mod cranelift;
pub mod hlo;
pub mod xla;
