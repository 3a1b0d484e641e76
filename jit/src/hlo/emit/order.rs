//! The order of prints: XLA orders only what data orders, so the host
//! callbacks of a module that prints are chained through one `tensor<i32>`
//! value, the *chain*. Each `print` takes the current chain as its first
//! operand and returns the next; a loop whose body prints carries the
//! chain in its state (after the carry and the invariants, before the
//! fuel), and an `if` whose branches print returns it as a last result
//! (before the fuel). Two prints side by side, or a loop that prints
//! beside a print, then run in program order, as `jax.debug.print(...,
//! ordered=True)` threads a token. Modules that do not print never see a
//! chain, so their text is unchanged.

use super::control::prints_in;
use super::*;

impl Emitter<'_> {
    /// The current chain, made (a constant 0, in the current region) when
    /// none is live yet.
    pub(super) fn chain_now(&mut self) -> Val {
        if let Some(c) = &self.chain {
            return c.clone();
        }
        let c = self.op(DType::I32, &[], "stablehlo.constant dense<0> : tensor<i32>".into());
        self.chain = Some(c.clone());
        c
    }

    /// Whether the code of `blocks` prints through host callbacks.
    pub(super) fn blocks_print(&self, func: &Func, blocks: &[BlockId]) -> bool {
        self.opts.host_print
            && blocks.iter().any(|b| {
                func.blocks.get(b.0 as usize).is_some_and(|blk| blk.code.iter().any(|i| prints_in(self.m, func, i, 0)))
            })
    }

    /// The chain of a loop over `blocks` about to be emitted: `None` when
    /// they do not print; else its value before the loop and its loop-side
    /// name (the loop's state gets one more `tensor<i32>`).
    pub(super) fn chain_state(&mut self, func: &Func, blocks: &[BlockId]) -> Option<Threaded> {
        if !self.blocks_print(func, blocks) {
            return None;
        }
        let init = self.chain_now();
        let name = self.fresh_named("chain");
        let iter = Val { name: name.clone(), dtype: DType::I32, shape: vec![], konst: None };
        Some(Threaded { init, name, iter })
    }

    /// `print(a, b, ...)` as a host callback after the current chain.
    pub(super) fn host_print(&mut self, vs: &[Val]) {
        let chain = self.chain_now();
        let names: Vec<&str> = std::iter::once(chain.name.as_str()).chain(vs.iter().map(|v| v.name.as_str())).collect();
        let tys: Vec<String> = std::iter::once(chain.ty()).chain(vs.iter().map(Val::ty)).collect();
        let next = self.op(
            DType::I32,
            &[],
            format!(
                "stablehlo.custom_call @{}({}) {{api_version = 4 : i32, backend_config = {{}}, has_side_effect = true}} : ({}) -> tensor<i32>",
                crate::xla::host_print::TARGET,
                names.join(", "),
                tys.join(", ")
            ),
        );
        self.chain = Some(next);
    }
}
