//! Hand-built modules: the interpreter's loop machinery, the verifier's
//! rules, the module format's rejection of malformed input, and zero heap
//! allocations per iteration in steady state.

use loopvm_runtime::{BinaryOp, DType, Tensor, UnaryOp};
use loopvm_vm::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Counts allocations made by this thread while COUNTING is set.
struct CountingAlloc;
static COUNTING: AtomicBool = AtomicBool::new(false);
// Per thread: the tests that count run in parallel.
thread_local! {
    static ON: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_one() {
    if COUNTING.load(Ordering::Relaxed) && ON.try_with(|c| c.get()).unwrap_or(false) {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: CountingAlloc = CountingAlloc;

fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ON.with(|c| c.set(true));
    let before = ALLOCS.with(|n| n.get());
    COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    let n = ALLOCS.with(|n| n.get()) - before;
    ON.with(|c| c.set(false));
    (r, n)
}

fn t(dtype: DType, dims: &[u64]) -> TensorType {
    TensorType::fixed(dtype, dims)
}

/// `main(n: i32) -> f32[4]`: fori_loop(0, n, |i, acc| tanh(acc * 0.5 + 1.0), zeros).
fn fori_module() -> Module {
    let f32x4 = t(DType::F32, &[4]);
    let regs = vec![
        t(DType::I32, &[]), // r0 n (param)
        t(DType::I32, &[]), // r1 lo
        f32x4.clone(),      // r2 init
        f32x4.clone(),      // r3 dst
        t(DType::I32, &[]), // r4 i
        f32x4.clone(),      // r5 acc
        t(DType::F32, &[]), // r6 0.5
        f32x4.clone(),      // r7 acc * 0.5
        t(DType::F32, &[]), // r8 1.0
        f32x4.clone(),      // r9 + 1
        f32x4.clone(),      // r10 tanh
    ];
    let body = Block {
        params: vec![Reg(4), Reg(5)],
        code: vec![
            Inst::Const { dst: Reg(6), k: ConstId(2) },
            Inst::Binary { op: BinaryOp::Mul, dst: Reg(7), a: Reg(5), b: Reg(6) },
            Inst::Const { dst: Reg(8), k: ConstId(3) },
            Inst::Binary { op: BinaryOp::Add, dst: Reg(9), a: Reg(7), b: Reg(8) },
            Inst::Unary { op: UnaryOp::Tanh, dst: Reg(10), a: Reg(9) },
        ],
        results: vec![Reg(10)],
    };
    let entry = Block {
        params: vec![Reg(0)],
        code: vec![
            Inst::Const { dst: Reg(1), k: ConstId(0) },
            Inst::Const { dst: Reg(2), k: ConstId(1) },
            Inst::Fori { dsts: vec![Reg(3)], lo: Reg(1), hi: Reg(0), init: vec![Reg(2)], body: BlockId(1), unroll: 1 },
        ],
        results: vec![Reg(3)],
    };
    Module {
        symbols: vec![],
        consts: vec![
            Tensor::scalar(0i32),
            Tensor::zeros(DType::F32, &[4]).unwrap(),
            Tensor::scalar(0.5f32),
            Tensor::scalar(1.0f32),
        ],
        funcs: vec![Func {
            name: "main".into(),
            params: vec![Param { name: "n".into(), ty: TypeTree::Tensor(t(DType::I32, &[])) }],
            result: TypeTree::Tensor(f32x4),
            reg_types: regs,
            blocks: vec![entry, body],
            body: BlockId(0),
        }],
        main: Some(FuncId(0)),
    }
}

fn run_fori(m: &Module, n: i32) -> Vec<f32> {
    let mut it = Interpreter::new(m, RunOptions::default());
    let out = it.call(FuncId(0), &[Tensor::scalar(n)]).unwrap();
    out[0].as_slice::<f32>().unwrap().to_vec()
}

#[test]
fn fori_runs_and_profiles() {
    let m = fori_module();
    verify(&m).unwrap();
    let mut want = 0.0f32;
    for _ in 0..7 {
        want = (want * 0.5 + 1.0).tanh();
    }
    let mut it = Interpreter::new(&m, RunOptions::default());
    let out = it.call(FuncId(0), &[Tensor::scalar(7i32)]).unwrap();
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[want; 4]);
    assert_eq!(it.profile.get(FuncId(0), BlockId(1)), LoopStats { entries: 1, iterations: 7, offloaded: 0 });
    // 3 entry-block ops + 5 body ops per iteration.
    assert_eq!(it.stats.ops, 3 + 5 * 7);
}

#[test]
fn steady_state_loop_iterations_allocate_nothing() {
    let m = fori_module();
    // Warm up once so lazily initialised runtime state is not counted.
    run_fori(&m, 3);
    let (_, short) = count_allocs(|| run_fori(&m, 10));
    let (_, long) = count_allocs(|| run_fori(&m, 10_000));
    assert!(short > 0, "the run itself allocates its frame and result");
    assert_eq!(short, long, "10 and 10000 iterations made different numbers of allocations");
}

#[test]
fn bad_arguments_are_errors() {
    let m = fori_module();
    let mut it = Interpreter::new(&m, RunOptions::default());
    let e = it.call(FuncId(0), &[Tensor::scalar(1.0f32)]).unwrap_err();
    assert!(e.to_string().contains("`n` must be i32, got f32"), "{e}");
    let e = it.call(FuncId(0), &[]).unwrap_err();
    assert!(e.to_string().contains("takes 1 tensors, got 0"), "{e}");
}

#[test]
fn step_limit_stops_a_loop() {
    let m = fori_module();
    let mut it = Interpreter::new(&m, RunOptions { max_steps: Some(100), ..RunOptions::default() });
    let e = it.call(FuncId(0), &[Tensor::scalar(1000i32)]).unwrap_err();
    assert!(e.to_string().contains("step limit"), "{e}");
}

#[test]
fn module_round_trips() {
    let m = fori_module();
    let bytes = m.to_bytes();
    let back = Module::from_bytes(&bytes).unwrap();
    assert_eq!(back.funcs, m.funcs);
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(run_fori(&back, 5), run_fori(&m, 5));
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = fori_module().to_bytes();
    for n in 0..bytes.len() {
        assert!(Module::from_bytes(&bytes[..n]).is_err(), "truncated to {n} bytes was accepted");
    }
}

#[test]
fn flipped_bytes_never_panic_and_never_run_unverified() {
    let bytes = fori_module().to_bytes();
    let mut accepted = 0;
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            if let Ok(m) = Module::from_bytes(&b) {
                if verify(&m).is_ok() {
                    accepted += 1;
                    // A verified module runs to a result or an error, never a panic.
                    let mut it = Interpreter::new(&m, RunOptions { max_steps: Some(1000), ..RunOptions::default() });
                    if let Some(main) = m.main {
                        let _ = it.call(main, &[Tensor::scalar(3i32)]);
                    }
                }
            }
        }
    }
    // Some flips only change constants' values, which stay valid.
    assert!(accepted < bytes.len() * 8);
}

#[test]
fn bad_magic_and_version() {
    let mut b = fori_module().to_bytes();
    assert!(Module::from_bytes(b"hello world").unwrap_err().message.contains("magic"));
    b[4] = 99;
    assert!(Module::from_bytes(&b).unwrap_err().message.contains("version"));
}

#[test]
fn verifier_rejects_broken_structure() {
    let check = |edit: &dyn Fn(&mut Module), want: &str| {
        let mut m = fori_module();
        edit(&mut m);
        let e = verify(&m).unwrap_err().to_string();
        assert!(e.contains(want), "wanted `{want}`, got: {e}");
    };
    check(&|m| m.funcs[0].blocks[1].code.swap(0, 1), "used before it is defined");
    check(&|m| m.funcs[0].blocks[1].results = vec![Reg(5)], "not defined by the block's own instructions");
    check(&|m| m.funcs[0].blocks[1].results = vec![Reg(99)], "out of range");
    check(&|m| m.funcs[0].blocks[0].code.push(Inst::Const { dst: Reg(6), k: ConstId(2) }), "defined twice");
    check(&|m| m.funcs[0].blocks.push(Block::default()), "not owned");
    check(&|m| m.funcs[0].blocks[0].code[0] = Inst::Const { dst: Reg(1), k: ConstId(9) }, "does not exist");
    check(&|m| m.funcs[0].blocks[1].params.pop().map(|_| ()).unwrap_or(()), "fori_loop params and init");
    check(
        &|m| {
            if let Inst::Fori { body, .. } = &mut m.funcs[0].blocks[0].code[2] {
                *body = BlockId(0);
            }
        },
        "owned twice",
    );
    // The gathers, windows and cumsum: operand dtypes, ranks and axes.
    let inst = |i: Inst| move |m: &mut Module| m.funcs[0].blocks[1].code[4] = i.clone();
    let (d, a) = (Reg(10), Reg(9));
    check(&inst(Inst::Take { dst: d, a, ids: Reg(7), axis: Axis(0) }), "are not integers");
    check(&inst(Inst::Take { dst: d, a, ids: Reg(4), axis: Axis(1) }), "out of range for rank 1");
    check(&inst(Inst::Take { dst: d, a, ids: Reg(4), axis: Axis(0) }), "does not have the operand's dtype and rank 0");
    check(&inst(Inst::ScatterAdd { dst: d, a, ids: Reg(4), u: Reg(4), axis: Axis(0) }), "updates r4 do not match");
    check(&inst(Inst::DynSlice { dst: d, a, starts: vec![], sizes: Dims(vec![4]) }), "0 window starts for rank 1");
    check(&inst(Inst::DynSlice { dst: d, a, starts: vec![Reg(6)], sizes: Dims(vec![4]) }), "not an integer scalar");
    check(&inst(Inst::DynSlice { dst: d, a, starts: vec![Reg(4)], sizes: Dims(vec![]) }), "a window of 0 sizes");
    check(&inst(Inst::DynUpdateSlice { dst: d, a, u: Reg(4), starts: vec![Reg(4)] }), "update r4 does not match");
    check(&inst(Inst::Cumsum { dst: d, a, axis: Axis(1), reverse: false }), "cumsum axis 1 is out of range");
    let mut m = fori_module();
    inst(Inst::Cumsum { dst: d, a, axis: Axis(0), reverse: true })(&mut m);
    verify(&m).unwrap();
    assert_eq!(run_fori(&m, 1), [4.0, 3.0, 2.0, 1.0]);
    // `bitcast` keeps the element width and writes a register of its dtype.
    check(
        &|m| m.funcs[0].blocks[1].code[4] = Inst::Bitcast { dst: Reg(10), a: Reg(9), to: DType::I64 },
        "bitcast of r9 (f32) to i64 into r10",
    );
    check(
        &|m| m.funcs[0].blocks[1].code[4] = Inst::Bitcast { dst: Reg(10), a: Reg(9), to: DType::U32 },
        "bitcast of r9 (f32) to u32 into r10",
    );
    // A loop counter is signed.
    check(
        &|m| {
            for r in [0, 1, 4] {
                m.funcs[0].reg_types[r] = t(DType::U32, &[]);
            }
            m.funcs[0].params[0].ty = TypeTree::Tensor(t(DType::U32, &[]));
            m.consts[0] = Tensor::scalar(0u32);
        },
        "not one signed integer dtype",
    );
}

#[test]
fn a_verified_bitcast_runs() {
    let mut m = fori_module();
    // tanh(x) replaced by bitcast(bitcast(x, u32), f32): the identity.
    m.funcs[0].reg_types.push(t(DType::U32, &[4]));
    m.funcs[0].blocks[1].code[4] = Inst::Bitcast { dst: Reg(11), a: Reg(9), to: DType::U32 };
    m.funcs[0].blocks[1].code.push(Inst::Bitcast { dst: Reg(10), a: Reg(11), to: DType::F32 });
    verify(&m).unwrap();
    assert_eq!(run_fori(&m, 2), vec![1.5; 4]);
}

#[test]
fn disassembly_nests_loops_with_types() {
    let d = disassemble(&fori_module());
    assert!(d.contains("fn main(n: i32) -> f32[4]"), "{d}");
    assert!(d.contains("r3: f32[4] = fori lo=r1 hi=r0 init=(r2) unroll=1"), "{d}");
    assert!(d.contains("    body b1(r4: i32, r5: f32[4]):"), "{d}");
    assert!(d.contains("      r10: f32[4] = unary tanh a=r9"), "{d}");
}

#[test]
fn opcode_table_is_consistent() {
    for op in Opcode::ALL {
        let info = op.info();
        assert_eq!(Opcode::from_u8(info.code), Some(*op));
        assert!(!info.doc.is_empty(), "{} has no semantics line", info.name);
        assert_eq!(
            info.flags.contains(OpFlags::XLA),
            info.no_xla.is_empty(),
            "{}: xla flag and reason disagree",
            info.name
        );
    }
}

/// A back end that records what it is offered and takes over a running loop
/// by returning its current carry (stopping it early), to test the seam.
#[derive(Default)]
struct Recorder {
    entries: Vec<(FuncId, BlockId, usize)>,
    resumes: Vec<u64>,
    take_over: bool,
}

impl Backend for Recorder {
    fn run_loop(
        &mut self,
        site: &LoopSite<'_>,
        inputs: &[&Tensor],
        _m: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        self.entries.push((site.func_id, site.body, inputs.len()));
        None
    }
    fn resume_loop(
        &mut self,
        _s: &LoopSite<'_>,
        _i: &[&Tensor],
        state: &LoopState<'_>,
        _m: &mut Meter,
    ) -> Option<Result<Vec<Tensor>, ExecError>> {
        self.resumes.push(state.done);
        self.take_over.then(|| Ok(state.carry.iter().map(|t| (*t).clone()).collect()))
    }
}

#[test]
fn backend_is_offered_loops_and_running_loops() {
    let m = fori_module();
    let mut rec = Recorder::default();
    {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut rec);
        let out = it.call(FuncId(0), &[Tensor::scalar(3000i32)]).unwrap();
        assert_eq!(out[0].numel(), 4);
    }
    // Region inputs of the loop: lo, hi, init (the body's constants are its own).
    assert_eq!(rec.entries, vec![(FuncId(0), BlockId(1), 3)]);
    assert_eq!(rec.resumes, vec![RESUME_INTERVAL, 2 * RESUME_INTERVAL]);

    // Taking over at the first offer: the result is the carry after 1024 iterations.
    let mut rec = Recorder { take_over: true, ..Recorder::default() };
    let got = {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut rec);
        it.call(FuncId(0), &[Tensor::scalar(3000i32)]).unwrap()
    };
    assert_eq!(got[0].as_slice::<f32>().unwrap(), run_fori(&m, RESUME_INTERVAL as i32).as_slice());
}

/// `main(a: f32[2, 3, 4], b: f32[2, 5, 4]) -> f32[2, 3, 5]`: one
/// `DotGeneral` (attention scores, `bqd,bkd->bqk`).
fn dot_general_module(dims: DotDims, out: &[u64]) -> Module {
    let regs = vec![t(DType::F32, &[2, 3, 4]), t(DType::F32, &[2, 5, 4]), t(DType::F32, out)];
    let entry = Block {
        params: vec![Reg(0), Reg(1)],
        code: vec![Inst::DotGeneral { dst: Reg(2), a: Reg(0), b: Reg(1), dims }],
        results: vec![Reg(2)],
    };
    Module {
        symbols: vec![],
        consts: vec![],
        funcs: vec![Func {
            name: "main".into(),
            params: vec![
                Param { name: "a".into(), ty: TypeTree::Tensor(t(DType::F32, &[2, 3, 4])) },
                Param { name: "b".into(), ty: TypeTree::Tensor(t(DType::F32, &[2, 5, 4])) },
            ],
            result: TypeTree::Tensor(t(DType::F32, out)),
            reg_types: regs,
            blocks: vec![entry],
            body: BlockId(0),
        }],
        main: Some(FuncId(0)),
    }
}

fn bqd_bkd() -> DotDims {
    DotDims { lhs_batch: vec![0], rhs_batch: vec![0], lhs_contract: vec![2], rhs_contract: vec![2] }
}

#[test]
fn dot_general_round_trips_runs_and_is_verified() {
    let m = dot_general_module(bqd_bkd(), &[2, 3, 5]);
    verify(&m).unwrap();
    let back = Module::from_bytes(&m.to_bytes()).unwrap();
    assert_eq!(back.funcs[0].blocks[0].code, m.funcs[0].blocks[0].code);
    assert!(disassemble(&m).contains("dotgeneral a=r0 b=r1 batch=[0]x[0] contract=[2]x[2]"), "{}", disassemble(&m));
    let a = Tensor::from_vec(&[2, 3, 4], (0..24).map(|i| i as f32).collect()).unwrap();
    let b = Tensor::from_vec(&[2, 5, 4], (0..40).map(|i| (i % 3) as f32).collect()).unwrap();
    let out = Interpreter::new(&m, RunOptions::default()).call(FuncId(0), &[a.clone(), b.clone()]).unwrap();
    let (x, y, r) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap(), out[0].as_slice::<f32>().unwrap());
    for (bi, q, k) in (0..2).flat_map(|bi| (0..3).flat_map(move |q| (0..5).map(move |k| (bi, q, k)))) {
        let want: f32 = (0..4).map(|d| x[bi * 12 + q * 4 + d] * y[bi * 20 + k * 4 + d]).sum();
        assert_eq!(r[bi * 15 + q * 5 + k], want);
    }
    let rejects = |dims: DotDims, out: &[u64], want: &str| {
        let e = verify(&dot_general_module(dims, out)).unwrap_err().to_string();
        assert!(e.contains(want), "wanted `{want}`, got: {e}");
    };
    rejects(DotDims { lhs_contract: vec![3], ..bqd_bkd() }, &[2, 3, 5], "Axis");
    rejects(DotDims { rhs_contract: vec![1], ..bqd_bkd() }, &[2, 3, 5], "Size");
    rejects(DotDims { lhs_batch: vec![], ..bqd_bkd() }, &[2, 3, 5], "Count");
    rejects(DotDims { lhs_contract: vec![0], ..bqd_bkd() }, &[2, 3, 5], "Repeated");
    rejects(bqd_bkd(), &[2, 5, 3], "does not have the contraction's shape");
}

/// `fori_module` with its two constant operands in the binaries (`BinaryK`,
/// `KBinary`) instead of `Const` + `Binary`: the same results.
fn fori_module_k() -> Module {
    let mut m = fori_module();
    m.funcs[0].blocks[1].code = vec![
        Inst::BinaryK { op: BinaryOp::Mul, dst: Reg(7), a: Reg(5), k: ConstId(2) },
        Inst::KBinary { op: BinaryOp::Add, dst: Reg(9), k: ConstId(3), a: Reg(7) },
        Inst::Unary { op: UnaryOp::Tanh, dst: Reg(10), a: Reg(9) },
    ];
    m
}

#[test]
fn constant_operand_forms_run_round_trip_and_print() {
    let (m, k) = (fori_module(), fori_module_k());
    verify(&k).unwrap();
    assert_eq!(run_fori(&k, 7), run_fori(&m, 7));
    let back = Module::from_bytes(&k.to_bytes()).unwrap();
    assert_eq!(back.funcs[0].blocks[1].code, k.funcs[0].blocks[1].code);
    let d = disassemble(&k);
    assert!(d.contains("r7: f32[4] = binaryk mul a=r5 k=k2    ; f32 0.5"), "{d}");
    assert!(d.contains("r9: f32[4] = kbinary add k=k3 a=r7    ; f32 1.0"), "{d}");
    // Steady state allocates nothing with the constant forms either.
    let (_, short) = count_allocs(|| run_fori(&k, 10));
    let (_, long) = count_allocs(|| run_fori(&k, 10_000));
    assert_eq!(short, long);
}

#[test]
fn verifier_rejects_malformed_constant_operands() {
    let check = |i: Inst, want: &str| {
        let mut m = fori_module_k();
        m.funcs[0].blocks[1].code[0] = i;
        let e = verify(&m).unwrap_err().to_string();
        assert!(e.contains(want), "wanted `{want}`, got: {e}");
    };
    let (op, dst, a) = (BinaryOp::Mul, Reg(7), Reg(5));
    check(Inst::BinaryK { op, dst, a, k: ConstId(9) }, "constant k9 does not exist");
    check(Inst::KBinary { op, dst, k: ConstId(9), a }, "constant k9 does not exist");
    check(
        Inst::BinaryK { op, dst, a, k: ConstId(0) },
        "mul of r5 (f32) and constant k0 (i32): the operands need one dtype",
    );
    check(Inst::KBinary { op, dst, k: ConstId(0), a }, "mul of r5 (f32) and constant k0 (i32)");
    check(Inst::BinaryK { op, dst, a: Reg(99), k: ConstId(2) }, "out of range");
    // A truncated or corrupted encoding of the new forms never panics.
    let b = fori_module_k().to_bytes();
    for n in 0..b.len() {
        let _ = Module::from_bytes(&b[..n]);
    }
}

/// Scalar registers: an `i64` LCG with constant operands, a `while_loop`
/// whose condition compares scalars, and a scalar fed to a tensor op (the
/// scalar is boxed for the kernel; the box is reused, so steady state still
/// allocates nothing).
#[test]
fn unboxed_scalars_agree_with_tensors_and_allocate_nothing() {
    let i64s = t(DType::I64, &[]);
    let f32x4 = t(DType::F32, &[4]);
    // main(n: i64) -> (i64, f32[4]):
    //   fori_loop(0, n, |i, (x, v)| ((x * 1103515245 + 12345) % 2^31, v + (i as f32)), (12345, zeros))
    let regs = vec![
        i64s.clone(),       // r0 n
        i64s.clone(),       // r1 lo
        i64s.clone(),       // r2 x0
        f32x4.clone(),      // r3 v0
        i64s.clone(),       // r4 dst x
        f32x4.clone(),      // r5 dst v
        i64s.clone(),       // r6 i
        i64s.clone(),       // r7 x
        f32x4.clone(),      // r8 v
        i64s.clone(),       // r9 x * a
        i64s.clone(),       // r10 + c
        i64s.clone(),       // r11 % m
        t(DType::F32, &[]), // r12 i as f32
        f32x4.clone(),      // r13 v + r12
    ];
    let body = Block {
        params: vec![Reg(6), Reg(7), Reg(8)],
        code: vec![
            Inst::BinaryK { op: BinaryOp::Mul, dst: Reg(9), a: Reg(7), k: ConstId(1) },
            Inst::BinaryK { op: BinaryOp::Add, dst: Reg(10), a: Reg(9), k: ConstId(2) },
            Inst::BinaryK { op: BinaryOp::Rem, dst: Reg(11), a: Reg(10), k: ConstId(3) },
            Inst::Cast { dst: Reg(12), a: Reg(6), to: DType::F32 },
            Inst::Binary { op: BinaryOp::Add, dst: Reg(13), a: Reg(8), b: Reg(12) },
        ],
        results: vec![Reg(11), Reg(13)],
    };
    let entry = Block {
        params: vec![Reg(0)],
        code: vec![
            Inst::Const { dst: Reg(1), k: ConstId(0) },
            Inst::Const { dst: Reg(2), k: ConstId(4) },
            Inst::Const { dst: Reg(3), k: ConstId(5) },
            Inst::Fori {
                dsts: vec![Reg(4), Reg(5)],
                lo: Reg(1),
                hi: Reg(0),
                init: vec![Reg(2), Reg(3)],
                body: BlockId(1),
                unroll: 1,
            },
        ],
        results: vec![Reg(4), Reg(5)],
    };
    let m = Module {
        symbols: vec![],
        consts: vec![
            Tensor::scalar(0i64),
            Tensor::scalar(1103515245i64),
            Tensor::scalar(12345i64),
            Tensor::scalar(1i64 << 31),
            Tensor::scalar(12345i64),
            Tensor::zeros(DType::F32, &[4]).unwrap(),
        ],
        funcs: vec![Func {
            name: "main".into(),
            params: vec![Param { name: "n".into(), ty: TypeTree::Tensor(i64s.clone()) }],
            result: TypeTree::Tuple(vec![TypeTree::Tensor(i64s), TypeTree::Tensor(f32x4)]),
            reg_types: regs,
            blocks: vec![entry, body],
            body: BlockId(0),
        }],
        main: Some(FuncId(0)),
    };
    verify(&m).unwrap();
    let run = |n: i64| {
        let mut it = Interpreter::new(&m, RunOptions::default());
        let out = it.call(FuncId(0), &[Tensor::scalar(n)]).unwrap();
        (out[0].scalar_i64().unwrap(), out[1].as_slice::<f32>().unwrap().to_vec())
    };
    let reference = |n: i64| {
        let (mut x, mut v) = (12345i64, 0f32);
        for i in 0..n {
            x = (x * 1103515245 + 12345) % (1 << 31);
            v += i as f32;
        }
        (x, vec![v; 4])
    };
    for n in [0, 1, 2, 1000] {
        assert_eq!(run(n), reference(n), "n = {n}");
    }
    let (_, short) = count_allocs(|| run(10));
    let (_, long) = count_allocs(|| run(10_000));
    assert_eq!(short, long, "10 and 10000 iterations made different numbers of allocations");
}

/// [`fori_module`] on an `f32` scalar carry: every body op is a scalar op,
/// so the interpreter runs the loop in its bank of unboxed registers.
fn scalar_fori_module() -> Module {
    let mut m = fori_module();
    let f = &mut m.funcs[0];
    for r in [2, 3, 5, 7, 9, 10] {
        f.reg_types[r] = t(DType::F32, &[]);
    }
    f.result = TypeTree::Tensor(t(DType::F32, &[]));
    m.consts[1] = Tensor::scalar(0.0f32);
    m
}

/// The loop's value computed in Rust, with the tiers' `tanh` (XLA's
/// approximation, `runtime/src/kernels/num.rs`), not libm's.
fn scalar_want(n: usize) -> f32 {
    use loopvm_runtime::kernels::Float;
    (0..n).fold(0.0f32, |a, _| <f32 as Float>::tanh(a * 0.5 + 1.0))
}

fn run_scalar(m: &Module, n: i32, opts: RunOptions) -> (Result<f32, ExecError>, loopvm_vm::interp::Stats, LoopStats) {
    let mut it = Interpreter::new(m, opts);
    let r = it.call(FuncId(0), &[Tensor::scalar(n)]).map(|o| o[0].as_slice::<f32>().unwrap()[0]);
    (r, it.stats, it.profile.get(FuncId(0), BlockId(1)))
}

#[test]
fn a_scalar_loop_in_the_bank_counts_ops_steps_and_iterations_as_one_at_a_time() {
    let m = scalar_fori_module();
    verify(&m).unwrap();
    let traced = RunOptions { trace: true, ..RunOptions::default() };
    // 7 iterations, and 3000 (past the bank's chunks of 1024 steps).
    for n in [0usize, 7, 3000] {
        let (r, stats, lp) = run_scalar(&m, n as i32, RunOptions::default());
        assert_eq!(r.unwrap().to_bits(), scalar_want(n).to_bits(), "n = {n}");
        assert_eq!(stats.ops, 3 + 5 * n as u64);
        assert_eq!(stats.loop_iterations, n as u64);
        assert_eq!(lp, LoopStats { entries: 1, iterations: n as u64, offloaded: 0 });
        // The trace runs the frame path, one op at a time: the same counts.
        let mut it = Interpreter::new(&m, traced.clone());
        it.set_trace_output(Box::new(std::io::sink()));
        let out = it.call(FuncId(0), &[Tensor::scalar(n as i32)]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap()[0].to_bits(), scalar_want(n).to_bits());
        assert_eq!(it.stats.ops, stats.ops);
    }
    // The step limit: exactly `max` iterations pass; one more fails after
    // its body ran (the ops say how many bodies ran).
    for max in [100u64, 1023, 1024, 1025, 2999] {
        let opts = RunOptions { max_steps: Some(max), ..RunOptions::default() };
        let (r, stats, _) = run_scalar(&m, max as i32, opts.clone());
        assert_eq!(r.unwrap().to_bits(), scalar_want(max as usize).to_bits());
        assert_eq!(stats.ops, 3 + 5 * max);
        let (r, stats, _) = run_scalar(&m, 5000, opts);
        assert_eq!(r.unwrap_err(), ExecError::StepLimit { max });
        assert_eq!(stats.ops, 3 + 5 * (max + 1), "max = {max}");
    }
    // Steady state allocates nothing.
    let _ = run_scalar(&m, 3, RunOptions::default());
    let (_, short) = count_allocs(|| run_scalar(&m, 10, RunOptions::default()));
    let (_, long) = count_allocs(|| run_scalar(&m, 10_000, RunOptions::default()));
    assert_eq!(short, long);
}

#[test]
fn a_scalar_loop_in_the_bank_is_offered_to_the_back_end_and_resumed_as_before() {
    let m = scalar_fori_module();
    let mut rec = Recorder::default();
    {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut rec);
        let out = it.call(FuncId(0), &[Tensor::scalar(3000i32)]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap()[0].to_bits(), scalar_want(3000).to_bits());
    }
    assert_eq!(rec.resumes, vec![RESUME_INTERVAL, 2 * RESUME_INTERVAL]);
    // Taken over at the first offer: the carry after 1024 iterations,
    // written back from the bank before the offer.
    let mut rec = Recorder { take_over: true, ..Recorder::default() };
    let got = {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut rec);
        it.call(FuncId(0), &[Tensor::scalar(3000i32)]).unwrap()
    };
    assert_eq!(got[0].as_slice::<f32>().unwrap()[0].to_bits(), scalar_want(RESUME_INTERVAL as usize).to_bits());
}

#[test]
fn an_op_the_bank_cannot_take_fails_as_on_the_frame() {
    // Unverified: an i32 carry fed to the f32 ops. The bank stops at the
    // first op, the general dispatch reports the kernel's error, as it does
    // under the trace (which never takes the bank).
    let mut m = scalar_fori_module();
    m.consts[1] = Tensor::scalar(0i32);
    let plain = run_scalar(&m, 5, RunOptions::default()).0.unwrap_err();
    let mut it = Interpreter::new(&m, RunOptions { trace: true, ..RunOptions::default() });
    it.set_trace_output(Box::new(std::io::sink()));
    let traced = it.call(FuncId(0), &[Tensor::scalar(5i32)]).unwrap_err();
    assert_eq!(plain, traced);
    assert!(plain.to_string().contains("mul"), "{plain}");
}

/// `main(n: i64) -> i64 { while_loop(|i| i < n, |i| i + 1, 0) }`: the
/// condition compares the counter with the argument `n`, which comes in
/// boxed (a rank-0 tensor).
fn while_count_module() -> Module {
    let i64s = t(DType::I64, &[]);
    let cond = Block {
        params: vec![Reg(3)],
        code: vec![Inst::Binary { op: BinaryOp::Lt, dst: Reg(4), a: Reg(3), b: Reg(0) }],
        results: vec![Reg(4)],
    };
    let body = Block {
        params: vec![Reg(5)],
        code: vec![Inst::BinaryK { op: BinaryOp::Add, dst: Reg(6), a: Reg(5), k: ConstId(1) }],
        results: vec![Reg(6)],
    };
    let entry = Block {
        params: vec![Reg(0)],
        code: vec![
            Inst::Const { dst: Reg(1), k: ConstId(0) },
            Inst::While { dsts: vec![Reg(2)], init: vec![Reg(1)], cond: BlockId(1), body: BlockId(2) },
        ],
        results: vec![Reg(2)],
    };
    let mut reg_types = vec![i64s.clone(); 7];
    reg_types[4] = t(DType::Bool, &[]);
    Module {
        symbols: vec![],
        consts: vec![Tensor::scalar(0i64), Tensor::scalar(1i64)],
        funcs: vec![Func {
            name: "main".into(),
            params: vec![Param { name: "n".into(), ty: TypeTree::Tensor(i64s.clone()) }],
            result: TypeTree::Tensor(i64s),
            reg_types,
            blocks: vec![entry, cond, body],
            body: BlockId(0),
        }],
        main: Some(FuncId(0)),
    }
}

#[test]
fn a_scalar_while_loop_against_a_boxed_argument_counts_as_one_at_a_time_and_allocates_nothing() {
    let m = while_count_module();
    verify(&m).unwrap();
    let run = |n: i64, opts: RunOptions| {
        let mut it = Interpreter::new(&m, opts);
        let r = it.call(FuncId(0), &[Tensor::scalar(n)]).map(|o| o[0].as_slice::<i64>().unwrap()[0]);
        (r, it.stats, it.profile.get(FuncId(0), BlockId(2)))
    };
    for n in [0i64, 1, 7, 3000] {
        let (r, stats, lp) = run(n, RunOptions::default());
        assert_eq!(r.unwrap(), n);
        // The constant, the loop, n + 1 conditions and n bodies.
        assert_eq!(stats.ops, 2 + (n as u64 + 1) + n as u64, "n = {n}");
        assert_eq!(lp, LoopStats { entries: 1, iterations: n as u64, offloaded: 0 });
    }
    // The step limit: `max` iterations pass, one more fails.
    for max in [100u64, 1024, 2999] {
        let opts = RunOptions { max_steps: Some(max), ..RunOptions::default() };
        assert_eq!(run(max as i64, opts.clone()).0.unwrap(), max as i64);
        assert_eq!(run(5000, opts).0.unwrap_err(), ExecError::StepLimit { max });
    }
    let _ = run(3, RunOptions::default());
    let (_, short) = count_allocs(|| run(10, RunOptions::default()));
    let (_, long) = count_allocs(|| run(10_000, RunOptions::default()));
    assert_eq!(short, long, "10 and 10000 iterations made different numbers of allocations");
}

#[test]
fn a_scalar_while_loop_in_the_bank_runs_as_on_the_frame() {
    let m = while_count_module();
    // The trace runs the frame path, one op at a time: the same result and
    // counts as the bank.
    for n in [0i64, 5, 3000] {
        let mut plain = Interpreter::new(&m, RunOptions::default());
        let a = plain.call(FuncId(0), &[Tensor::scalar(n)]).unwrap();
        let mut traced = Interpreter::new(&m, RunOptions { trace: true, ..RunOptions::default() });
        traced.set_trace_output(Box::new(std::io::sink()));
        let b = traced.call(FuncId(0), &[Tensor::scalar(n)]).unwrap();
        assert_eq!(a[0].as_slice::<i64>(), Some(&[n][..]));
        assert_eq!(b[0].as_slice::<i64>(), Some(&[n][..]));
        assert_eq!(plain.stats.ops, traced.stats.ops, "n = {n}");
        assert_eq!(plain.stats.loop_iterations, traced.stats.loop_iterations);
    }
    // The back end is offered the running loop every RESUME_INTERVAL
    // iterations, with the carry written back from the bank.
    let mut rec = Recorder::default();
    {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut rec);
        let out = it.call(FuncId(0), &[Tensor::scalar(3000i64)]).unwrap();
        assert_eq!(out[0].as_slice::<i64>(), Some(&[3000i64][..]));
    }
    assert_eq!(rec.resumes, vec![RESUME_INTERVAL, 2 * RESUME_INTERVAL]);
    let mut rec = Recorder { take_over: true, ..Recorder::default() };
    let got = {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut rec);
        it.call(FuncId(0), &[Tensor::scalar(3000i64)]).unwrap()
    };
    assert_eq!(got[0].as_slice::<i64>(), Some(&[RESUME_INTERVAL as i64][..]));
}

#[test]
fn a_while_loop_whose_op_the_bank_cannot_take_finishes_on_the_frame() {
    // The body adds an i64 constant to the carry; the carry starts as an
    // i32 (unverified bytecode) that the condition compares with an i32
    // constant, so the bank stops at the body's op and the frame's kernel
    // reports the mismatch, as under the trace.
    let mut m = while_count_module();
    m.consts[0] = Tensor::scalar(0i32);
    m.consts.push(Tensor::scalar(10i32));
    m.funcs[0].blocks[1].code = vec![Inst::BinaryK { op: BinaryOp::Lt, dst: Reg(4), a: Reg(3), k: ConstId(2) }];
    let mut plain = Interpreter::new(&m, RunOptions::default());
    let e = plain.call(FuncId(0), &[Tensor::scalar(5i64)]).unwrap_err();
    let mut traced = Interpreter::new(&m, RunOptions { trace: true, ..RunOptions::default() });
    traced.set_trace_output(Box::new(std::io::sink()));
    assert_eq!(e, traced.call(FuncId(0), &[Tensor::scalar(5i64)]).unwrap_err());
    assert!(e.to_string().contains("add"), "{e}");
    assert_eq!(plain.stats.ops, traced.stats.ops);
    // The condition compares an i32 with the i64 argument: the bank stops
    // in the condition.
    let mut m = while_count_module();
    m.consts[0] = Tensor::scalar(0i32);
    m.funcs[0].blocks[2].code = vec![Inst::Move { dst: Reg(6), src: Reg(5) }];
    let mut plain = Interpreter::new(&m, RunOptions::default());
    let e = plain.call(FuncId(0), &[Tensor::scalar(5i64)]).unwrap_err();
    let mut traced = Interpreter::new(&m, RunOptions { trace: true, ..RunOptions::default() });
    traced.set_trace_output(Box::new(std::io::sink()));
    assert_eq!(e, traced.call(FuncId(0), &[Tensor::scalar(5i64)]).unwrap_err());
    assert!(e.to_string().contains("lt"), "{e}");
    assert_eq!(plain.stats.ops, traced.stats.ops);
}
