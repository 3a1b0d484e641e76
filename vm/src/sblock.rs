//! Scalar blocks in decoded form: the interpreter's fast path for loop
//! bodies and `while_loop` conditions made of scalar elementwise ops.
//!
//! When an interpreter is built, each block whose instructions are all
//! scalar elementwise ops, constants and moves (known from the register
//! types) is decoded once into a slice of [`SOp`]: register numbers as
//! plain indices, constants as unboxed [`Scalar`]s in the instruction (no
//! constant-pool lookup, no `Option` per operand), and the opcode a small
//! dense tag. [`run`] executes such a slice in a tight loop with each arm a
//! few loads, the op and a store, as wasmi's executor runs its
//! pre-resolved instructions: `x * 1103515245i64 + 12345i64` is two
//! [`SOp::BinK`]s on unboxed `i64` registers.
//!
//! [`run`] stops at the first instruction it cannot take (an operand that
//! is boxed, a dtype or op the scalar path does not accept): the
//! interpreter runs that one instruction through its general dispatch
//! (which reports any error) and resumes the slice after it, so the effects,
//! the op count and the errors are exactly those of running the block's
//! bytecode one instruction at a time.

use crate::inst::Inst;
use crate::value::Val;
use loopvm_runtime::kernels::{scalar as sk, Num, Scalar};
use loopvm_runtime::{BinaryOp, DType, UnaryOp};

/// One decoded instruction of a scalar block (`R[i]`: register `i` of the
/// frame, unboxed).
#[derive(Clone, Copy, Debug)]
pub(crate) enum SOp {
    /// R[dst] := R[a] op R[b]
    Bin { op: BinaryOp, dst: u32, a: u32, b: u32 },
    /// R[dst] := R[a] op k
    BinK { op: BinaryOp, dst: u32, a: u32, k: Scalar },
    /// [`SOp::BinK`] with an `i64` constant (the operand's dtype known
    /// when decoding, so the op's dtype dispatch folds away)
    BinKI64 { op: BinaryOp, dst: u32, a: u32, k: i64 },
    /// [`SOp::BinK`] with an `i32` constant
    BinKI32 { op: BinaryOp, dst: u32, a: u32, k: i32 },
    /// [`SOp::BinK`] with an `f32` constant
    BinKF32 { op: BinaryOp, dst: u32, a: u32, k: f32 },
    /// [`SOp::BinK`] with an `f64` constant
    BinKF64 { op: BinaryOp, dst: u32, a: u32, k: f64 },
    /// R[dst] := R[a] + k, `i64` (wrapping)
    AddKI64 { dst: u32, a: u32, k: i64 },
    /// R[dst] := R[a] * k, `i64` (wrapping)
    MulKI64 { dst: u32, a: u32, k: i64 },
    /// R[dst] := R[a] % k, `i64`, k neither 0 nor -1 (so none of `%`'s
    /// special cases, `x % 0 = x` and `MIN % -1 = 0`, can arise)
    RemKI64 { dst: u32, a: u32, k: std::num::NonZeroI64 },
    /// R[dst] := R[a] + k, `i32` (wrapping)
    AddKI32 { dst: u32, a: u32, k: i32 },
    /// R[dst] := R[a] * k, `i32` (wrapping)
    MulKI32 { dst: u32, a: u32, k: i32 },
    /// R[dst] := R[a] % k, `i32`, k neither 0 nor -1
    RemKI32 { dst: u32, a: u32, k: std::num::NonZeroI32 },
    /// R[dst] := k op R[a]
    KBin { op: BinaryOp, dst: u32, k: Scalar, a: u32 },
    /// R[dst] := op(R[a])
    Un { op: UnaryOp, dst: u32, a: u32 },
    /// R[dst] := R[a] as to
    Cast { dst: u32, a: u32, to: DType },
    /// R[dst] := R[c] ? R[a] : R[b]
    Select { dst: u32, c: u32, a: u32, b: u32 },
    /// R[dst] := k
    Const { dst: u32, k: Scalar },
    /// R[dst] := R[src]
    Move { dst: u32, src: u32 },
    /// Anything else (a tensor constant): the general dispatch runs it.
    General,
}

/// Decodes `code`, a block that [`crate::interp`]'s `scalar_block` accepted;
/// `kscalars[k]` is constant `k` unboxed (`None` when it is not rank 0).
pub(crate) fn decode(code: &[Inst], kscalars: &[Option<Scalar>]) -> Box<[SOp]> {
    let k = |c: &crate::operand::ConstId| kscalars.get(c.0 as usize).copied().flatten();
    code.iter()
        .map(|inst| match inst {
            Inst::Binary { op, dst, a, b } => SOp::Bin { op: *op, dst: dst.0, a: a.0, b: b.0 },
            Inst::BinaryK { op, dst, a, k: c } => {
                let (op, dst, a) = (*op, dst.0, a.0);
                match k(c) {
                    Some(Scalar::I64(k)) => match op {
                        BinaryOp::Add => SOp::AddKI64 { dst, a, k },
                        BinaryOp::Mul => SOp::MulKI64 { dst, a, k },
                        BinaryOp::Rem if k != -1 => match std::num::NonZeroI64::new(k) {
                            Some(k) => SOp::RemKI64 { dst, a, k },
                            None => SOp::BinKI64 { op, dst, a, k },
                        },
                        _ => SOp::BinKI64 { op, dst, a, k },
                    },
                    Some(Scalar::I32(k)) => match op {
                        BinaryOp::Add => SOp::AddKI32 { dst, a, k },
                        BinaryOp::Mul => SOp::MulKI32 { dst, a, k },
                        BinaryOp::Rem if k != -1 => match std::num::NonZeroI32::new(k) {
                            Some(k) => SOp::RemKI32 { dst, a, k },
                            None => SOp::BinKI32 { op, dst, a, k },
                        },
                        _ => SOp::BinKI32 { op, dst, a, k },
                    },
                    Some(Scalar::F32(k)) => SOp::BinKF32 { op, dst, a, k },
                    Some(Scalar::F64(k)) => SOp::BinKF64 { op, dst, a, k },
                    Some(k) => SOp::BinK { op, dst, a, k },
                    None => SOp::General,
                }
            }
            Inst::KBinary { op, dst, k: c, a } => match k(c) {
                Some(k) => SOp::KBin { op: *op, dst: dst.0, k, a: a.0 },
                None => SOp::General,
            },
            Inst::Unary { op, dst, a } => SOp::Un { op: *op, dst: dst.0, a: a.0 },
            Inst::Cast { dst, a, to } => SOp::Cast { dst: dst.0, a: a.0, to: *to },
            Inst::Select { dst, c, a, b } => SOp::Select { dst: dst.0, c: c.0, a: a.0, b: b.0 },
            Inst::Const { dst, k: c } => match k(c) {
                Some(k) => SOp::Const { dst: dst.0, k },
                None => SOp::General,
            },
            Inst::Move { dst, src } => SOp::Move { dst: dst.0, src: src.0 },
            _ => SOp::General,
        })
        .collect()
}

/// A register file the scalar runner reads and writes: a frame of [`Val`]s
/// (a register that holds no scalar, unboxed or a boxed rank-0 tensor,
/// stops the run), or a loop's bank of unboxed [`Scalar`]s ([`Bank`]),
/// where a read is a load and a write a plain store.
pub(crate) trait Regs {
    /// `R[r]` when it holds a scalar.
    fn get(&self, r: u32) -> Option<Scalar>;
    /// `R[r] := v`; `false` when `r` is out of range.
    fn put(&mut self, r: u32, v: Scalar) -> bool;
}

impl Regs for [Val] {
    #[inline(always)]
    fn get(&self, r: u32) -> Option<Scalar> {
        match <[Val]>::get(self, r as usize) {
            Some(Val::Scalar(s)) => Some(*s),
            // A boxed rank-0 value (a function's argument, a reduction's
            // result) is read as its element, not boxed again per use.
            Some(v) => v.scalar(),
            None => None,
        }
    }
    #[inline(always)]
    fn put(&mut self, r: u32, v: Scalar) -> bool {
        match self.get_mut(r as usize) {
            Some(slot) => {
                slot.put_scalar(v);
                true
            }
            None => false,
        }
    }
}

/// A loop's bank: [`BANK_SLOTS`] unboxed scalars. Slot numbers come from
/// [`Bank::new`], which gives none past the end; they are taken modulo the
/// size, so that an access is a load or store with no bounds test.
pub(crate) type Slots = [Scalar; BANK_SLOTS];

impl Regs for Slots {
    #[inline(always)]
    fn get(&self, r: u32) -> Option<Scalar> {
        Some(self[r as usize % BANK_SLOTS])
    }
    #[inline(always)]
    fn put(&mut self, r: u32, v: Scalar) -> bool {
        self[r as usize % BANK_SLOTS] = v;
        true
    }
}

/// Runs `ops` on `frame` from the first until one it cannot take; returns
/// how many it ran (`ops.len()` when all).
#[inline]
pub(crate) fn run(ops: &[SOp], frame: &mut [Val]) -> usize {
    run_on(ops, frame)
}

/// [`run`] on any register file.
#[inline(always)]
fn run_on<R: Regs + ?Sized>(ops: &[SOp], regs: &mut R) -> usize {
    let mut it = ops.iter();
    // Where the run stopped: the op just taken from `it`.
    macro_rules! stop {
        () => {
            return ops.len() - it.len() - 1
        };
    }
    // `R[dst] := v` for an `Option<Scalar>` result (`None` stops the run).
    macro_rules! put {
        ($dst:ident, $v:expr) => {
            match $v {
                Some(v) if regs.put($dst, v) => {}
                _ => stop!(),
            }
        };
    }
    // `R[a] op k` where R[a] holds an unboxed `$v` (else the op stops the
    // run): `sk::binary` inlined on known variants folds its dtype match.
    macro_rules! bin_k {
        ($op:ident, $dst:ident, $a:ident, $k:ident, $v:ident) => {
            match regs.get($a) {
                Some(Scalar::$v(x)) => put!($dst, sk::binary($op, Scalar::$v(x), Scalar::$v($k))),
                _ => stop!(),
            }
        };
    }
    // `R[a] op k` for one integer op and dtype: `$f` on the unboxed value,
    // stored straight into `R[dst]`.
    macro_rules! int_k {
        ($dst:ident, $a:ident, $v:ident, |$x:ident| $f:expr) => {
            match regs.get($a) {
                Some(Scalar::$v($x)) if regs.put($dst, Scalar::$v($f)) => {}
                _ => stop!(),
            }
        };
    }
    while let Some(op) = it.next() {
        match *op {
            SOp::AddKI64 { dst, a, k } => int_k!(dst, a, I64, |x| x.wrapping_add(k)),
            SOp::MulKI64 { dst, a, k } => int_k!(dst, a, I64, |x| x.wrapping_mul(k)),
            SOp::RemKI64 { dst, a, k } => int_k!(dst, a, I64, |x| x.wrapping_rem(k.get())),
            SOp::AddKI32 { dst, a, k } => int_k!(dst, a, I32, |x| x.wrapping_add(k)),
            SOp::MulKI32 { dst, a, k } => int_k!(dst, a, I32, |x| x.wrapping_mul(k)),
            SOp::RemKI32 { dst, a, k } => int_k!(dst, a, I32, |x| x.wrapping_rem(k.get())),
            SOp::BinKI64 { op, dst, a, k } => bin_k!(op, dst, a, k, I64),
            SOp::BinKI32 { op, dst, a, k } => bin_k!(op, dst, a, k, I32),
            SOp::BinKF32 { op, dst, a, k } => bin_k!(op, dst, a, k, F32),
            SOp::BinKF64 { op, dst, a, k } => bin_k!(op, dst, a, k, F64),
            SOp::BinK { op, dst, a, k } => put!(dst, regs.get(a).and_then(|x| sk::binary(op, x, k))),
            SOp::KBin { op, dst, k, a } => put!(dst, regs.get(a).and_then(|x| sk::binary(op, k, x))),
            // `+`, `-` and `*` of two registers of the common dtypes store
            // their result's variant directly (as the constant forms do);
            // the rest through the scalar kernel's table.
            SOp::Bin { op, dst, a, b } => match (op, regs.get(a), regs.get(b)) {
                (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul, Some(x), Some(y)) => {
                    macro_rules! arith {
                        ($($v:ident),*) => {
                            match (op, x, y) {
                                $(
                                    (BinaryOp::Add, Scalar::$v(x), Scalar::$v(y)) => regs.put(dst, Scalar::$v(Num::add(x, y))),
                                    (BinaryOp::Sub, Scalar::$v(x), Scalar::$v(y)) => regs.put(dst, Scalar::$v(Num::sub(x, y))),
                                    (BinaryOp::Mul, Scalar::$v(x), Scalar::$v(y)) => regs.put(dst, Scalar::$v(Num::mul(x, y))),
                                )*
                                _ => sk::binary(op, x, y).is_some_and(|v| regs.put(dst, v)),
                            }
                        };
                    }
                    if !arith!(I64, I32, F32, F64) {
                        stop!()
                    }
                }
                (_, x, y) => put!(dst, x.zip(y).and_then(|(x, y)| sk::binary(op, x, y))),
            },
            SOp::Un { op, dst, a } => put!(dst, regs.get(a).and_then(|x| sk::unary(op, x))),
            SOp::Cast { dst, a, to } => put!(dst, regs.get(a).map(|x| sk::cast(x, to))),
            SOp::Select { dst, c, a, b } => {
                put!(dst, regs.get(c).zip(regs.get(a)).zip(regs.get(b)).and_then(|((c, x), y)| sk::select(c, x, y)))
            }
            SOp::Const { dst, k } => put!(dst, Some(k)),
            SOp::Move { dst, src } => put!(dst, regs.get(src)),
            SOp::General => stop!(),
        }
    }
    ops.len()
}

/// The registers an op reads (up to three) and the one it writes, to
/// read or rename in place (the one list of which field is which).
fn regs_mut(op: &mut SOp) -> ([Option<&mut u32>; 3], Option<&mut u32>) {
    match op {
        SOp::Bin { dst, a, b, .. } => ([Some(a), Some(b), None], Some(dst)),
        SOp::BinK { dst, a, .. }
        | SOp::BinKI64 { dst, a, .. }
        | SOp::BinKI32 { dst, a, .. }
        | SOp::BinKF32 { dst, a, .. }
        | SOp::BinKF64 { dst, a, .. }
        | SOp::AddKI64 { dst, a, .. }
        | SOp::MulKI64 { dst, a, .. }
        | SOp::RemKI64 { dst, a, .. }
        | SOp::AddKI32 { dst, a, .. }
        | SOp::MulKI32 { dst, a, .. }
        | SOp::RemKI32 { dst, a, .. }
        | SOp::KBin { dst, a, .. }
        | SOp::Un { dst, a, .. }
        | SOp::Cast { dst, a, .. }
        | SOp::Move { dst, src: a } => ([Some(a), None, None], Some(dst)),
        SOp::Select { dst, c, a, b } => ([Some(c), Some(a), Some(b)], Some(dst)),
        SOp::Const { dst, .. } => ([None, None, None], Some(dst)),
        SOp::General => ([None, None, None], None),
    }
}

/// The registers an op reads (up to three) and the one it writes.
fn uses_def(op: &SOp) -> ([Option<u32>; 3], Option<u32>) {
    let mut op = *op;
    let (uses, def) = regs_mut(&mut op);
    (uses.map(|r| r.map(|r| *r)), def.map(|r| *r))
}

/// `op` with every register renamed by `f`.
fn rename(op: &SOp, f: impl Fn(u32) -> u32) -> SOp {
    let mut op = *op;
    let (uses, def) = regs_mut(&mut op);
    for r in uses.into_iter().flatten().chain(def) {
        *r = f(*r);
    }
    op
}

/// The most registers a [`Bank`] holds (its bank lives on the stack).
pub(crate) const BANK_SLOTS: usize = 32;

/// A `fori_loop` body, or a `while_loop`'s condition and body, of scalar
/// ops in bank form: the whole loop runs on a small array of unboxed
/// [`Scalar`]s (the bank) instead of the frame, as Lua's `FORLOOP` runs on
/// its stack slots. The registers the loop touches (a counter, the carry,
/// results, the values it reads from outside) are renumbered to slots
/// `0..regs.len()`; the bank is filled from the frame once on entry and
/// written back once on exit, so an iteration is the ops and the counter's
/// store (or the condition's test), with no tag of the frame's [`Val`]s to
/// decode and no old value to drop. A `while_loop`'s condition reads the
/// body's params where the frame copies them into its own: the two share
/// slots.
///
/// The carry is not swapped from the results into the params after each
/// iteration, as the frame does: the iterations cycle through renamed
/// copies of the loop ([`Phase`]) in which the slots trade places instead
/// (iteration `k` reads its carry where iteration `k - 1` wrote its
/// results), and the bank is put back in order once, where a run of
/// iterations ends. A swap moved each carry value through memory on the
/// loop's critical path, in a 16-byte load of a slot that the op had
/// written in two narrower stores, which the processor cannot forward
/// (about half of an LCG iteration's time).
#[derive(Debug)]
pub(crate) struct Bank {
    /// The ops on slots, in order (the first phase's): a `while_loop`'s
    /// condition's first, then the body's.
    ops: Box<[SOp]>,
    /// `None` for a `fori_loop`; for a `while_loop`, how many of `ops` are
    /// the condition's.
    cond: Option<usize>,
    /// `regs[s]`: the frame register of slot `s`.
    regs: Box<[u32]>,
    /// Slots the loop reads before it writes them (a counter aside): the
    /// loop takes the bank only when each holds a scalar on entry.
    live_in: Box<[u32]>,
    /// Slots the loop writes (a counter, the ops' results, the carry's
    /// swapped slots): written back into the frame on exit.
    out: Box<[u32]>,
    /// The counter's slot (a `fori_loop`), else the condition's result's.
    head: u32,
    /// The loop as iterations `0, 1, ...` run it, cyclically: phase `k`
    /// is the loop with slot `s` renamed to where it lives after `k`
    /// iterations.
    phases: Box<[Phase]>,
    /// `(param, result)` slots of the carry, swapped in order after each
    /// iteration, when the renaming would need more than [`MAX_PHASES`]
    /// phases (then there is one phase, the loop as it is).
    swaps: Box<[(u32, u32)]>,
}

/// The most renamed copies of a loop a [`Bank`] keeps: the carry's
/// permutation of slots has this order at most (a carry of fresh results
/// has order 2; `(a, b) -> (b, a + b)` order 3).
const MAX_PHASES: usize = 8;

/// One renamed copy of a [`Bank`]'s loop.
#[derive(Debug)]
struct Phase {
    /// The ops with every slot `s` renamed to `map[s]`.
    ops: Box<[SOp]>,
    /// [`Bank::head`], renamed.
    head: u32,
    /// `map[s]`: where slot `s` lives in this phase.
    map: Box<[u32]>,
}

/// Where a `while_loop`'s iteration stopped on its bank, for the frame to
/// go on from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhileAt {
    /// At this op of the condition; at its end when the result is not a
    /// `bool` (the frame reports that).
    Cond(usize),
    /// At this op of the body.
    Body(usize),
}

/// How [`Bank::run_while`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhileEnd {
    /// The iterations asked for ran; the loop goes on.
    Ran,
    /// The condition was false: the loop is finished.
    Exit,
    /// An op could not run on the bank.
    Stopped(WhileAt),
}

impl Bank {
    /// The bank form of a `fori_loop` body decoded as `ops`, whose block has
    /// `params` (counter first) and `results`; `None` when an op is
    /// [`SOp::General`] or the body touches more than [`BANK_SLOTS`]
    /// registers.
    pub(crate) fn new(ops: &[SOp], params: &[u32], results: &[u32]) -> Option<Bank> {
        let (&counter, carry) = params.split_first()?;
        Bank::build(None, ops, Some(counter), carry, results)
    }

    /// The bank form of a `while_loop` whose condition (`cond`, with
    /// `cond_params` and one result, `test`) and body (`ops`, `params`,
    /// `results`) are decoded scalar blocks.
    pub(crate) fn new_while(
        cond: &[SOp],
        cond_params: &[u32],
        test: u32,
        ops: &[SOp],
        params: &[u32],
        results: &[u32],
    ) -> Option<Bank> {
        if cond_params.len() != params.len() {
            return None;
        }
        // The condition reads the body's params (the frame copies them in).
        let shared = |r: u32| cond_params.iter().position(|&p| p == r).map_or(r, |i| params[i]);
        let cond: Vec<SOp> = cond.iter().map(|op| rename(op, shared)).collect();
        Bank::build(Some((&cond, shared(test))), ops, None, params, results)
    }

    /// [`Bank::new`] and [`Bank::new_while`]: `cond` the condition's ops
    /// (on the body's params) and result, `counter` a `fori_loop`'s.
    fn build(
        cond: Option<(&[SOp], u32)>,
        body: &[SOp],
        counter: Option<u32>,
        carry: &[u32],
        results: &[u32],
    ) -> Option<Bank> {
        let ops: Vec<SOp> = cond.map_or(&[][..], |(c, _)| c).iter().chain(body).copied().collect();
        if ops.iter().any(|op| matches!(op, SOp::General)) {
            return None;
        }
        let mut regs: Vec<u32> = Vec::new();
        let slot_of = |r: u32, regs: &mut Vec<u32>| match regs.iter().position(|&x| x == r) {
            Some(s) => s as u32,
            None => {
                regs.push(r);
                regs.len() as u32 - 1
            }
        };
        // Slots read before the loop writes them must hold values on entry.
        let read = |s: u32, written: &[u32], live_in: &mut Vec<u32>| {
            if !written.contains(&s) && !live_in.contains(&s) {
                live_in.push(s);
            }
        };
        let (mut written, mut live_in) = (Vec::new(), Vec::new());
        // A `fori_loop`'s counter is written before the body; a
        // `while_loop`'s condition result is read after the condition's ops.
        let mut head = 0;
        if let Some(c) = counter {
            head = slot_of(c, &mut regs);
            written.push(head);
        }
        let cond_len = cond.map(|(c, _)| c.len());
        for i in 0..=ops.len() {
            if let (Some((_, test)), true) = (cond, cond_len == Some(i)) {
                head = slot_of(test, &mut regs);
                read(head, &written, &mut live_in);
            }
            let Some(op) = ops.get(i) else { continue };
            let (uses, def) = uses_def(op);
            for r in uses.into_iter().flatten() {
                let s = slot_of(r, &mut regs);
                read(s, &written, &mut live_in);
            }
            if let Some(d) = def {
                written.push(slot_of(d, &mut regs));
            }
        }
        let swaps: Vec<(u32, u32)> =
            carry.iter().zip(results).map(|(&p, &r)| (slot_of(p, &mut regs), slot_of(r, &mut regs))).collect();
        // A result the body does not write (a carry passed through, a value
        // from outside) is read by the swap: it must hold a value too.
        for &(p, r) in &swaps {
            read(p, &written, &mut live_in);
            read(r, &written, &mut live_in);
        }
        if regs.len() > BANK_SLOTS {
            return None;
        }
        let mut out = written.clone();
        out.extend(swaps.iter().flat_map(|&(p, r)| [p, r]));
        out.sort_unstable();
        out.dedup();
        let ops: Box<[SOp]> = ops
            .iter()
            .map(|op| rename(op, |r| regs.iter().position(|&x| x == r).map_or(u32::MAX, |s| s as u32)))
            .collect();
        // What the swaps do to the slots: after them, slot `s` holds what
        // slot `perm[s]` held. After `k` iterations slot `s` lives in
        // `map_k[s]`, with `map_0` the identity and
        // `map_{k+1}[s] = map_k[perm[s]]`.
        let mut perm: Vec<u32> = (0..regs.len() as u32).collect();
        for &(p, r) in &swaps {
            perm.swap(p as usize, r as usize);
        }
        let mut maps = vec![(0..regs.len() as u32).collect::<Vec<u32>>()];
        while let Some(last) = maps.last().filter(|_| maps.len() <= MAX_PHASES) {
            let next: Vec<u32> = perm.iter().map(|&p| last[p as usize]).collect();
            if next.iter().enumerate().all(|(s, &m)| m == s as u32) {
                break;
            }
            maps.push(next);
        }
        let (maps, swaps) = if maps.len() > MAX_PHASES { (vec![maps.swap_remove(0)], swaps) } else { (maps, vec![]) };
        let phases = maps
            .into_iter()
            .map(|map| Phase {
                ops: ops.iter().map(|op| rename(op, |s| map[s as usize])).collect(),
                head: map[head as usize],
                map: map.into(),
            })
            .collect();
        Some(Bank {
            ops,
            cond: cond_len,
            regs: regs.into(),
            live_in: live_in.into(),
            out: out.into(),
            head,
            phases,
            swaps: swaps.into(),
        })
    }

    /// How many renamed copies of the body the iterations cycle through.
    #[cfg(test)]
    pub(crate) fn phases(&self) -> usize {
        self.phases.len()
    }

    /// How many slots the bank uses.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.regs.len()
    }

    /// `true` for a `while_loop`'s bank.
    pub(crate) fn is_while(&self) -> bool {
        self.cond.is_some()
    }

    /// The condition's ops (a `while_loop`'s bank).
    pub(crate) fn cond_ops(&self) -> usize {
        self.cond.unwrap_or(0)
    }

    /// Ops per iteration.
    pub(crate) fn ops(&self) -> usize {
        self.ops.len()
    }

    /// Fills `bank` from `frame`: `false` (the loop then runs on the frame)
    /// when a slot the body reads first does not hold a scalar (a boxed
    /// rank-0 tensor is read as its value). The other slots get the
    /// frame's value when it is a scalar and are written before read.
    pub(crate) fn load(&self, frame: &[Val], bank: &mut Slots) -> bool {
        for (s, &r) in self.regs.iter().enumerate() {
            let v = frame.get(r as usize).and_then(Val::scalar);
            match (v, bank.get_mut(s)) {
                (Some(v), Some(b)) => *b = v,
                (None, Some(_)) if !self.live_in.contains(&(s as u32)) => {}
                _ => return false,
            }
        }
        true
    }

    /// Writes the slots the loop wrote back into `frame`. Before the
    /// first iteration completed (`whole` false) only those that hold a
    /// value: the counter, the slots read on entry and the results of the
    /// first `ran` ops.
    pub(crate) fn store(&self, bank: &Slots, frame: &mut [Val], whole: bool, ran: usize) {
        for &s in &self.out[..] {
            let holds = whole
                || (self.cond.is_none() && s == self.head)
                || self.live_in.contains(&s)
                || self.ops.iter().take(ran).any(|op| uses_def(op).1 == Some(s));
            let r = self.regs.get(s as usize).and_then(|&r| frame.get_mut(r as usize));
            if let (true, Some(slot), Some(v)) = (holds, r, <[Scalar]>::get(bank, s as usize).copied()) {
                slot.put_scalar(v);
            }
        }
    }

    /// Runs up to `n` iterations on `bank`, the counter from `*i` (an
    /// `i64` counter when `wide`, else `i32`); returns the iterations
    /// completed, and with them the op index where the next one stopped
    /// when an op could not run on the bank (a dtype it does not take, an
    /// op outside the scalar path): the caller writes the bank back and
    /// finishes that iteration on the frame.
    #[inline(always)]
    pub(crate) fn run(&self, bank: &mut Slots, i: &mut i64, n: u64, wide: bool) -> (u64, Option<usize>) {
        if wide {
            self.run_n::<true>(bank, i, n)
        } else {
            self.run_n::<false>(bank, i, n)
        }
    }

    /// [`Bank::run`] for an `i64` (`WIDE`) or `i32` counter.
    #[inline(always)]
    fn run_n<const WIDE: bool>(&self, bank: &mut Slots, i: &mut i64, n: u64) -> (u64, Option<usize>) {
        let (phases, swaps) = (&self.phases[..], &self.swaps[..]);
        let mut c = *i;
        let mut at = 0;
        for k in 0..n {
            let Some(ph) = phases.get(at) else { break };
            bank.put(ph.head, if WIDE { Scalar::I64(c) } else { Scalar::I32(c as i32) });
            let done = run_on(&ph.ops, bank);
            if done != ph.ops.len() {
                self.settle(bank, at);
                *i = c;
                return (k, Some(done));
            }
            for &(p, r) in swaps {
                bank.swap(p as usize % BANK_SLOTS, r as usize % BANK_SLOTS);
            }
            c += 1;
            at += 1;
            if at == phases.len() {
                at = 0;
            }
        }
        self.settle(bank, at);
        *i = c;
        (n, None)
    }

    /// Runs up to `n` iterations of a `while_loop` on `bank` (each its
    /// condition, its test and its body); returns the iterations whose
    /// bodies ran, and how the run ended: the condition false (the loop is
    /// done), or where an op could not run on the bank (the caller writes
    /// the bank back and finishes that iteration on the frame).
    pub(crate) fn run_while(&self, bank: &mut Slots, n: u64) -> (u64, WhileEnd) {
        let (phases, swaps, cond) = (&self.phases[..], &self.swaps[..], self.cond.unwrap_or(0));
        let mut at = 0;
        for k in 0..n {
            let Some(ph) = phases.get(at) else { break };
            let (c, b) = ph.ops.split_at(cond.min(ph.ops.len()));
            let done = run_on(c, bank);
            let end = if done != c.len() {
                Some(WhileEnd::Stopped(WhileAt::Cond(done)))
            } else {
                match bank.get(ph.head) {
                    Some(Scalar::Bool(true)) => None,
                    Some(Scalar::Bool(false)) => Some(WhileEnd::Exit),
                    _ => Some(WhileEnd::Stopped(WhileAt::Cond(c.len()))),
                }
            };
            let end = end.or_else(|| {
                let done = run_on(b, bank);
                (done != b.len()).then_some(WhileEnd::Stopped(WhileAt::Body(done)))
            });
            if let Some(end) = end {
                self.settle(bank, at);
                return (k, end);
            }
            for &(p, r) in swaps {
                bank.swap(p as usize % BANK_SLOTS, r as usize % BANK_SLOTS);
            }
            at += 1;
            if at == phases.len() {
                at = 0;
            }
        }
        self.settle(bank, at);
        (n, WhileEnd::Ran)
    }

    /// Puts the bank back in order after iterations that ended in phase
    /// `at`: slot `s` gets the value that lives in `map[s]`.
    fn settle(&self, bank: &mut Slots, at: usize) {
        let Some(ph) = self.phases.get(at).filter(|_| at != 0) else { return };
        let held = *bank;
        for (s, &m) in ph.map.iter().enumerate() {
            if let (Some(b), Some(&v)) = (bank.get_mut(s), <[Scalar]>::get(&held, m as usize)) {
                *b = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopvm_runtime::Tensor;

    fn lcg_ops() -> Vec<SOp> {
        // r1 := r0 * 1103515245; r2 := r1 + 12345; r3 := r2 % 2^31 (the LCG)
        let ks = [Some(Scalar::I64(1_103_515_245)), Some(Scalar::I64(12_345)), Some(Scalar::I64(1 << 31))];
        let code = [
            Inst::BinaryK { op: BinaryOp::Mul, dst: Reg(1), a: Reg(0), k: ConstId(0) },
            Inst::BinaryK { op: BinaryOp::Add, dst: Reg(2), a: Reg(1), k: ConstId(1) },
            Inst::BinaryK { op: BinaryOp::Rem, dst: Reg(3), a: Reg(2), k: ConstId(2) },
        ];
        decode(&code, &ks).into_vec()
    }
    use crate::operand::{ConstId, Reg};

    #[test]
    fn decoded_ops_compute_as_the_scalar_kernels() {
        let ops = lcg_ops();
        assert!(matches!(ops[0], SOp::MulKI64 { k: 1_103_515_245, .. }));
        assert!(matches!(ops[2], SOp::RemKI64 { .. }));
        let mut frame = vec![Val::Scalar(Scalar::I64(12_345)), Val::Empty, Val::Empty, Val::Empty];
        assert_eq!(run(&ops, &mut frame), 3);
        let want = (12_345i64.wrapping_mul(1_103_515_245) + 12_345) % (1 << 31);
        assert!(matches!(frame[3], Val::Scalar(Scalar::I64(x)) if x == want), "{:?}", frame[3]);
    }

    #[test]
    fn a_vector_or_mistyped_operand_stops_the_run_before_it() {
        let ops = lcg_ops();
        // A vector operand: nothing runs, the general dispatch takes the op.
        let v = Tensor::from_vec(&[2], vec![5i64, 6]).expect("tensor");
        let mut frame = vec![Val::Tensor(v), Val::Empty, Val::Empty, Val::Empty];
        assert_eq!(run(&ops, &mut frame), 0);
        assert!(matches!(frame[1], Val::Empty));
        // A boxed rank-0 operand (an argument) is read as its element and
        // stays boxed; the results are unboxed.
        let mut frame = vec![Val::Tensor(Tensor::scalar(5i64)), Val::Empty, Val::Empty, Val::Empty];
        assert_eq!(run(&ops, &mut frame), 3);
        assert!(matches!(frame[0], Val::Tensor(_)));
        let want = (5i64 * 1_103_515_245 + 12_345) % (1 << 31);
        assert!(matches!(frame[3], Val::Scalar(Scalar::I64(x)) if x == want), "{:?}", frame[3]);
        // An operand of another dtype than the constant (unverified
        // bytecode): stops too, so the kernel reports the mismatch.
        let mut frame = vec![Val::Scalar(Scalar::I32(5)), Val::Empty, Val::Empty, Val::Empty];
        assert_eq!(run(&ops, &mut frame), 0);
        // A tensor constant is left to the general dispatch.
        let code = [Inst::Const { dst: Reg(0), k: ConstId(0) }];
        assert!(matches!(decode(&code, &[None])[..], [SOp::General]));
    }

    #[test]
    fn register_arithmetic_computes_as_the_scalar_kernel() {
        let pairs = [
            (Scalar::I64(i64::MAX), Scalar::I64(3)),
            (Scalar::I32(i32::MIN), Scalar::I32(-7)),
            (Scalar::F32(1.5e-38), Scalar::F32(0.25)),
            (Scalar::F64(-2.5), Scalar::F64(1e300)),
            (Scalar::U8(200), Scalar::U8(100)),
            (Scalar::I64(1), Scalar::I32(1)),
        ];
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Lt] {
            let ops = decode(&[Inst::Binary { op, dst: Reg(2), a: Reg(0), b: Reg(1) }], &[]);
            for (x, y) in pairs {
                let mut frame = vec![Val::Scalar(x), Val::Scalar(y), Val::Empty];
                let ran = run(&ops, &mut frame);
                match sk::binary(op, x, y) {
                    Some(want) => {
                        assert_eq!(ran, 1, "{op} {x:?} {y:?}");
                        assert!(matches!(frame[2], Val::Scalar(v) if v == want), "{op} {x:?} {y:?}: {:?}", frame[2]);
                    }
                    // Mixed dtypes: the general dispatch reports them.
                    None => assert_eq!(ran, 0, "{op} {x:?} {y:?}"),
                }
            }
        }
    }

    #[test]
    fn a_constant_modulus_of_zero_or_minus_one_keeps_the_checked_op() {
        for k in [0i64, -1] {
            let code = [Inst::BinaryK { op: BinaryOp::Rem, dst: Reg(1), a: Reg(0), k: ConstId(0) }];
            let ops = decode(&code, &[Some(Scalar::I64(k))]);
            assert!(matches!(ops[..], [SOp::BinKI64 { op: BinaryOp::Rem, .. }]), "{ops:?}");
            let mut frame = vec![Val::Scalar(Scalar::I64(i64::MIN)), Val::Empty];
            assert_eq!(run(&ops, &mut frame), 1);
            let want = if k == 0 { i64::MIN } else { 0 };
            assert!(matches!(frame[1], Val::Scalar(Scalar::I64(x)) if x == want), "{:?}", frame[1]);
        }
    }

    /// The LCG body as a `fori_loop` block: params (r4 counter, r0 carry),
    /// result r3.
    fn lcg_bank() -> Bank {
        Bank::new(&lcg_ops(), &[4, 0], &[3]).expect("bank form")
    }

    #[test]
    fn the_bank_runs_iterations_as_the_frame_does() {
        let bk = lcg_bank();
        assert_eq!((bk.len(), bk.ops()), (5, 3));
        let mut frame = vec![Val::Scalar(Scalar::I64(12_345)), Val::Empty, Val::Empty, Val::Empty, Val::Empty];
        let mut regs = [Scalar::Bool(false); BANK_SLOTS];
        let bank = &mut regs;
        assert!(bk.load(&frame, bank));
        let mut i = 0i64;
        assert_eq!(bk.run(bank, &mut i, 10, true), (10, None));
        assert_eq!(i, 10);
        bk.store(bank, &mut frame, true, 0);
        let mut x = 12_345i64;
        for _ in 0..10 {
            x = (x.wrapping_mul(1_103_515_245) + 12_345) % (1 << 31);
        }
        // The carry holds the last result; the counter the last iteration's.
        assert!(matches!(frame[0], Val::Scalar(Scalar::I64(v)) if v == x), "{:?}", frame[0]);
        assert!(matches!(frame[4], Val::Scalar(Scalar::I64(9))), "{:?}", frame[4]);
    }

    #[test]
    fn the_banks_phases_give_the_swapped_carry_after_any_number_of_iterations_and_chunks() {
        // The LCG: a fresh result swaps with the param, two phases.
        let bk = lcg_bank();
        assert_eq!(bk.phases(), 2);
        // `(a, b) -> (b, a + b)` (r1 counter, r2 a, r3 b, r4 := a + b):
        // the slots rotate, three phases.
        let fib = decode(&[Inst::Binary { op: BinaryOp::Add, dst: Reg(4), a: Reg(2), b: Reg(3) }], &[]);
        let fb = Bank::new(&fib, &[1, 2, 3], &[3, 4]).expect("bank form");
        assert_eq!(fb.phases(), 3);
        for n in 0..12u64 {
            for split in [0, 1, n / 2, n] {
                let mut frame = vec![Val::Empty; 5];
                frame[2] = Val::Scalar(Scalar::I64(0));
                frame[3] = Val::Scalar(Scalar::I64(1));
                let mut regs = [Scalar::Bool(false); BANK_SLOTS];
                assert!(fb.load(&frame, &mut regs));
                let mut i = 0i64;
                assert_eq!(fb.run(&mut regs, &mut i, split.min(n), true), (split.min(n), None));
                assert_eq!(fb.run(&mut regs, &mut i, n - split.min(n), true), (n - split.min(n), None));
                assert_eq!(i, n as i64);
                fb.store(&regs, &mut frame, n > 0, 0);
                let (mut a, mut b) = (0i64, 1i64);
                for _ in 0..n {
                    (a, b) = (b, a + b);
                }
                assert!(matches!(frame[2], Val::Scalar(Scalar::I64(v)) if v == a), "n = {n}: {:?}", frame[2]);
                assert!(matches!(frame[3], Val::Scalar(Scalar::I64(v)) if v == b), "n = {n}: {:?}", frame[3]);
            }
        }
    }

    #[test]
    fn a_while_bank_runs_its_condition_on_the_bodys_params_in_chunks_until_false() {
        // cond (r10 i, r11 x): r12 := r10 < 5; body (r1 i, r2 x):
        // r3 := r1 + 1, r4 := r2 * 3; results (r3, r4).
        let ks = [Some(Scalar::I64(5)), Some(Scalar::I64(1)), Some(Scalar::I64(3))];
        let cond = decode(&[Inst::BinaryK { op: BinaryOp::Lt, dst: Reg(12), a: Reg(10), k: ConstId(0) }], &ks);
        let body = decode(
            &[
                Inst::BinaryK { op: BinaryOp::Add, dst: Reg(3), a: Reg(1), k: ConstId(1) },
                Inst::BinaryK { op: BinaryOp::Mul, dst: Reg(4), a: Reg(2), k: ConstId(2) },
            ],
            &ks,
        );
        let bk = Bank::new_while(&cond, &[10, 11], 12, &body, &[1, 2], &[3, 4]).expect("bank form");
        assert!(bk.is_while());
        assert_eq!((bk.cond_ops(), bk.ops(), bk.phases()), (1, 3, 2));
        for chunk in [1u64, 2, 3, 100] {
            let mut frame = vec![Val::Empty; 13];
            frame[1] = Val::Scalar(Scalar::I64(0));
            frame[2] = Val::Scalar(Scalar::I64(1));
            let mut regs = [Scalar::Bool(false); BANK_SLOTS];
            assert!(bk.load(&frame, &mut regs));
            let mut total = 0;
            let end = loop {
                let (ran, end) = bk.run_while(&mut regs, chunk);
                total += ran;
                if end != WhileEnd::Ran {
                    break end;
                }
            };
            assert_eq!((total, end), (5, WhileEnd::Exit), "chunk {chunk}");
            bk.store(&regs, &mut frame, true, 0);
            assert!(matches!(frame[1], Val::Scalar(Scalar::I64(5))), "{:?}", frame[1]);
            assert!(matches!(frame[2], Val::Scalar(Scalar::I64(243))), "{:?}", frame[2]);
            assert!(matches!(frame[12], Val::Scalar(Scalar::Bool(false))), "{:?}", frame[12]);
        }
        // A condition that is a param itself (no ops): `while go { ... }`.
        let bk = Bank::new_while(&[], &[10, 11], 10, &body, &[1, 2], &[3, 4]);
        assert!(bk.is_some_and(|b| b.cond_ops() == 0));
        // A test that is not a bool stops at the condition's end.
        let bk = Bank::new_while(&[], &[10, 11], 11, &body, &[1, 2], &[3, 4]).expect("bank form");
        let mut frame = vec![Val::Empty; 13];
        frame[1] = Val::Scalar(Scalar::I64(0));
        frame[2] = Val::Scalar(Scalar::I64(1));
        let mut regs = [Scalar::Bool(false); BANK_SLOTS];
        assert!(bk.load(&frame, &mut regs));
        assert_eq!(bk.run_while(&mut regs, 10), (0, WhileEnd::Stopped(WhileAt::Cond(0))));
    }

    #[test]
    fn a_stop_in_a_later_phase_writes_back_the_carry_as_swapped() {
        // params (r1 counter, r2 a: i64, r3 b: an i32, mistyped), results
        // (r3, r4 := a + 1): the second iteration reads the i32 as `a`
        // and stops at its first op, in the second phase.
        let ks = [Some(Scalar::I64(1))];
        let code = [Inst::BinaryK { op: BinaryOp::Add, dst: Reg(4), a: Reg(2), k: ConstId(0) }];
        let bk = Bank::new(&decode(&code, &ks), &[1, 2, 3], &[3, 4]).expect("bank form");
        let mut frame = vec![Val::Empty; 5];
        frame[2] = Val::Scalar(Scalar::I64(10));
        frame[3] = Val::Scalar(Scalar::I32(7));
        let mut regs = [Scalar::Bool(false); BANK_SLOTS];
        assert!(bk.load(&frame, &mut regs));
        let mut i = 0i64;
        assert_eq!(bk.run(&mut regs, &mut i, 5, true), (1, Some(0)));
        assert_eq!(i, 1);
        bk.store(&regs, &mut frame, true, 0);
        // After one iteration's swaps: a = b, b = a + 1, r4 = a.
        assert!(matches!(frame[2], Val::Scalar(Scalar::I32(7))), "{:?}", frame[2]);
        assert!(matches!(frame[3], Val::Scalar(Scalar::I64(11))), "{:?}", frame[3]);
        assert!(matches!(frame[4], Val::Scalar(Scalar::I64(10))), "{:?}", frame[4]);
        assert!(matches!(frame[1], Val::Scalar(Scalar::I64(1))), "{:?}", frame[1]);
    }

    #[test]
    fn the_bank_declines_a_carry_that_is_not_a_scalar_and_stops_at_a_mistyped_op() {
        let bk = lcg_bank();
        let mut regs = [Scalar::Bool(false); BANK_SLOTS];
        let bank = &mut regs;
        // The carry unwritten or a vector: the loop stays on the frame.
        let frame = vec![Val::Empty, Val::Empty, Val::Empty, Val::Empty, Val::Empty];
        assert!(!bk.load(&frame, bank));
        let v = Tensor::from_vec(&[2], vec![1i64, 2]).expect("tensor");
        let frame = vec![Val::Tensor(v), Val::Empty, Val::Empty, Val::Empty, Val::Empty];
        assert!(!bk.load(&frame, bank));
        // An i32 carry (unverified bytecode): the first op stops, and the
        // frame gets back only what the bank holds (the carry, the counter).
        let mut frame = vec![Val::Scalar(Scalar::I32(7)), Val::Empty, Val::Empty, Val::Empty, Val::Empty];
        assert!(bk.load(&frame, bank));
        let mut i = 3i64;
        assert_eq!(bk.run(bank, &mut i, 5, true), (0, Some(0)));
        bk.store(bank, &mut frame, false, 0);
        assert!(matches!(frame[4], Val::Scalar(Scalar::I64(3))), "{:?}", frame[4]);
        assert!(matches!(frame[1], Val::Empty), "{:?}", frame[1]);
    }
}
