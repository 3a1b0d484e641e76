//! Metering: the fuel a metered module carries through its loops (the
//! step limit on the XLA tier).

use super::*;

impl Emitter<'_> {
    // ------------------------------------------------------------- metering

    /// Metered: the fuel of a loop about to be emitted (its state gets one
    /// more `tensor<i64>`, last).
    pub(super) fn fuel_state(&mut self) -> Option<Threaded> {
        let init = self.fuel.clone()?;
        let name = self.fresh_named("fuel");
        let iter = Val { name: name.clone(), dtype: DType::I64, shape: vec![], konst: None };
        Some(Threaded { init, name, iter })
    }

    /// A loop's condition `c`; metered, `c` and fuel left.
    pub(super) fn fuel_cond(&mut self, c: Val, fs: Option<&Threaded>) -> Val {
        let Some(f) = fs else { return c };
        let z = self.splat(DType::I64, &[], Lit::I(0));
        let pos = self.cmp("GT", &f.iter, &z);
        self.bin("and", &c, &pos)
    }

    /// A loop body's region: `f` emits one iteration and returns the next
    /// state (and anything else). A body that prints runs on the loop-side
    /// chain `cs`, and the chain after the iteration is appended to the
    /// state (see [`super::order`]). Metered, the body runs on the
    /// loop-side fuel, and the fuel left after the iteration (one taken,
    /// and what its inner loops took) is appended last.
    pub(super) fn body_region<R>(
        &mut self,
        cs: Option<&Threaded>,
        fs: Option<&Threaded>,
        f: impl FnOnce(&mut Self) -> Result<(Vec<Val>, R)>,
    ) -> Result<(String, Vec<Val>, R)> {
        let outer = self.fuel.clone();
        let r = self.region(|e| {
            if let Some(fs) = fs {
                e.fuel = Some(fs.iter.clone());
            }
            if let Some(cs) = cs {
                e.chain = Some(cs.iter.clone());
            }
            let (mut next, extra) = f(e)?;
            if cs.is_some() {
                next.push(e.chain_now());
            }
            if let (Some(_), Some(left)) = (fs, e.fuel.clone()) {
                let one = e.splat(DType::I64, &[], Lit::I(1));
                next.push(e.bin("subtract", &left, &one));
            }
            Ok((next, extra))
        });
        self.fuel = outer;
        let (text, (next, extra)) = r?;
        Ok((text, next, extra))
    }

    /// After a metered loop whose state after the loop is `outs` (the fuel
    /// last): the current fuel becomes that fuel, or -1 when it ran out
    /// while the loop's condition, `still`, held (it wanted one more
    /// iteration). `still` is emitted without fuel (a condition runs no
    /// metered loop).
    pub(super) fn fuel_settle(
        &mut self,
        fs: Option<&Threaded>,
        outs: &[Val],
        still: impl FnOnce(&mut Self) -> Result<Val>,
    ) -> Result<()> {
        let (Some(_), Some(f)) = (fs, outs.last()) else { return Ok(()) };
        let saved = self.fuel.take();
        let still = still(self);
        self.fuel = saved;
        let still = still?;
        let z = self.splat(DType::I64, &[], Lit::I(0));
        let empty = self.cmp("EQ", f, &z);
        let stop = self.bin("and", &empty, &still);
        let m1 = self.splat(DType::I64, &[], Lit::I(-1));
        let r = self.select(&stop, &m1, f);
        self.fuel = Some(r);
        Ok(())
    }
}
