//! The XLA tier against the real CPU plugin (`xla-cpu-pjrt`, installed into
//! loopvm's cache on first use): every result must equal the interpreter's
//! (exactly for integers and bools, within the documented tolerance for
//! floats), and code that should lower must actually have run on XLA.

use loopvm_jit::hlo::{self, EmitOptions};
use loopvm_jit::xla::tier::{emit_for, XlaBackend, XlaMode};
use loopvm_jit::xla::{plugin, Client, Plugin};
use loopvm_runtime::compare::first_difference;
use loopvm_runtime::{kernels, BinaryOp, DType, ReduceOp, Tensor, UnaryOp, UpdateMode};
use loopvm_vm::*;
use std::path::Path;
use std::sync::OnceLock;
#[path = "../../tests/support/arg_literal.rs"]
mod arg_literal;
#[path = "../../tests/support/rnn.rs"]
mod rnn;
#[path = "../../tests/support/spec_files.rs"]
mod spec_files;
use arg_literal::parse_value;
use rnn::{rnn_args, RNN};
use spec_files::{collect, header, split_args};

// ------------------------------------------------------------------ harness

fn client() -> Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let path = plugin::find_or_install_cpu().expect("find or install the CPU plugin");
            Client::new(Plugin::load(path).expect("load the CPU plugin")).expect("create a CPU client")
        })
        .clone()
}

fn interp(m: &Module, args: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
    let mut it = Interpreter::new(m, RunOptions::default());
    it.set_output(Box::new(std::io::sink()));
    it.call(m.main.expect("main"), args)
}

/// Runs `main` with a back end in `mode`; returns the results, the back end
/// and the loop counts the interpreter saw.
fn with_backend(m: &Module, args: &[Tensor], mode: XlaMode) -> (Result<Vec<Tensor>, ExecError>, XlaBackend, Profile) {
    let mut b = XlaBackend::new(client(), mode);
    let (r, profile) = {
        let mut it = Interpreter::new(m, RunOptions::default());
        it.set_output(Box::new(std::io::sink()));
        it.set_backend(&mut b);
        let r = it.call(m.main.expect("main"), args);
        (r, it.profile.clone())
    };
    (r, b, profile)
}

/// Compares like `loopvm diff` ([`loopvm_runtime::compare`]): exact for
/// integers and bools; floats per element within the dtype's tolerance,
/// NaN only against NaN, an infinity only against itself.
fn assert_same(want: &[Tensor], got: &[Tensor], ctx: &str) {
    assert_eq!(want.len(), got.len(), "{ctx}: number of results");
    for (k, (w, g)) in want.iter().zip(got).enumerate() {
        if let Some(d) = first_difference(w, g) {
            panic!("{ctx}: result {k}: {d}\nwant {w}\ngot  {g}");
        }
    }
}

fn has_op(m: &Module, pred: impl Fn(&Inst) -> bool) -> bool {
    m.funcs.iter().any(|f| f.blocks.iter().any(|b| b.code.iter().any(&pred)))
}

fn is_loop(i: &Inst) -> bool {
    matches!(i, Inst::Fori { .. } | Inst::While { .. } | Inst::Scan { .. })
}

/// Runs `m` in the interpreter, then with XLA taking the whole function, then
/// with XLA taking each loop; all must agree, and (unless `m` prints) all
/// must really have run on XLA. Returns the interpreter's results.
fn check(m: &Module, args: &[Tensor], ctx: &str) -> Vec<Tensor> {
    check_with(m, args, ctx, true)
}

/// [`check`]; `compare_mixed: false` skips comparing the results of the run
/// where loops run on XLA and the rest in the interpreter (for programs that
/// compare floats from the two tiers exactly), but still requires the loops
/// to have run on XLA.
fn check_with(m: &Module, args: &[Tensor], ctx: &str, compare_mixed: bool) -> Vec<Tensor> {
    verify(m).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let want = interp(m, args).unwrap_or_else(|e| panic!("{ctx}: interpreter: {e}"));
    let prints = has_op(m, |i| matches!(i, Inst::Print { .. }));

    let (got, b, _) = with_backend(m, args, XlaMode::Functions);
    let got = got.unwrap_or_else(|e| panic!("{ctx}: xla (functions): {e}"));
    assert_same(&want, &got, &format!("{ctx} (whole function)"));
    if !prints {
        assert!(
            b.stats.functions_run == 1 && b.stats.fallbacks.is_empty(),
            "{ctx}: main was not lowered: {:?}",
            b.stats.fallbacks
        );
    }

    if has_op(m, is_loop) {
        let (got, b, profile) = with_backend(m, args, XlaMode::Loops);
        let got = got.unwrap_or_else(|e| panic!("{ctx}: xla (loops): {e}"));
        if compare_mixed {
            assert_same(&want, &got, &format!("{ctx} (loops)"));
        }
        if !prints {
            assert!(b.stats.fallbacks.is_empty(), "{ctx}: a loop fell back: {:?}", b.stats.fallbacks);
            assert!(b.stats.loops_run >= 1, "{ctx}: no loop ran on XLA");
            // Every loop the interpreter met ran on XLA: none iterated here.
            for (f, blk, s) in profile.entries() {
                assert_eq!(s.iterations, 0, "{ctx}: loop b{} of f{} iterated in the interpreter", blk.0, f.0);
            }
        }
    }
    want
}

// ------------------------------------------------------ module builder

/// Builds one function; register types are inferred by running the kernels
/// on zero samples, so a test only says what each op takes.
struct Fb {
    consts: Vec<Tensor>,
    regs: Vec<TensorType>,
    blocks: Vec<Block>,
    params: Vec<Reg>,
}

fn tt(t: &Tensor) -> TensorType {
    TensorType::fixed(t.dtype(), &t.shape().iter().map(|&d| d as u64).collect::<Vec<_>>())
}

const ENTRY: BlockId = BlockId(0);

impl Fb {
    fn new(params: &[(DType, &[u64])]) -> Fb {
        let mut f = Fb { consts: vec![], regs: vec![], blocks: vec![Block::default()], params: vec![] };
        for (d, dims) in params {
            let r = f.reg(TensorType::fixed(*d, dims));
            f.params.push(r);
        }
        f.blocks[0].params = f.params.clone();
        f
    }
    fn p(&self, i: usize) -> Reg {
        self.params[i]
    }
    fn reg(&mut self, t: TensorType) -> Reg {
        self.regs.push(t);
        Reg(self.regs.len() as u32 - 1)
    }
    fn like(&mut self, t: &Tensor) -> Reg {
        self.reg(tt(t))
    }
    fn sample(&self, r: Reg) -> Tensor {
        let t = &self.regs[r.0 as usize];
        let dims: Vec<usize> = t.dims.iter().map(|d| if let Dim::Fixed(n) = d { *n as usize } else { 1 }).collect();
        Tensor::zeros(t.dtype, &dims).unwrap()
    }
    fn block(&mut self, params: Vec<Reg>) -> BlockId {
        self.blocks.push(Block { params, code: vec![], results: vec![] });
        BlockId(self.blocks.len() as u32 - 1)
    }
    fn push(&mut self, b: BlockId, i: Inst) {
        self.blocks[b.0 as usize].code.push(i);
    }
    fn konst(&mut self, b: BlockId, t: Tensor) -> Reg {
        let dst = self.like(&t);
        self.consts.push(t);
        let k = ConstId(self.consts.len() as u32 - 1);
        self.push(b, Inst::Const { dst, k });
        dst
    }
    fn out(
        &mut self,
        b: BlockId,
        r: Result<(), loopvm_runtime::RuntimeError>,
        out: Option<Tensor>,
        f: impl FnOnce(Reg) -> Inst,
    ) -> Reg {
        r.expect("builder: kernel rejects the sample operands");
        let dst = self.like(&out.expect("kernel result"));
        self.push(b, f(dst));
        dst
    }
    fn unary(&mut self, b: BlockId, op: UnaryOp, a: Reg) -> Reg {
        let mut o = None;
        let r = kernels::unary(op, &self.sample(a), &mut o);
        self.out(b, r, o, |dst| Inst::Unary { op, dst, a })
    }
    fn bin(&mut self, b: BlockId, op: BinaryOp, x: Reg, y: Reg) -> Reg {
        let mut o = None;
        let r = kernels::binary(op, &self.sample(x), &self.sample(y), &mut o);
        self.out(b, r, o, |dst| Inst::Binary { op, dst, a: x, b: y })
    }
    fn select(&mut self, b: BlockId, c: Reg, x: Reg, y: Reg) -> Reg {
        let mut o = None;
        let r = kernels::select(&self.sample(c), &self.sample(x), &self.sample(y), &mut o);
        self.out(b, r, o, |dst| Inst::Select { dst, c, a: x, b: y })
    }
    fn cast(&mut self, b: BlockId, a: Reg, to: DType) -> Reg {
        let mut o = None;
        let r = kernels::cast(&self.sample(a), to, &mut o);
        self.out(b, r, o, |dst| Inst::Cast { dst, a, to })
    }
    fn reduce(&mut self, b: BlockId, op: ReduceOp, a: Reg, axis: Option<u32>) -> Reg {
        let mut s = self.sample(a);
        // Max/min/argmax reject empty samples only when empty; samples are zeros.
        if s.numel() == 0 {
            s = Tensor::zeros(s.dtype(), &[1]).unwrap();
        }
        let mut o = None;
        let r = kernels::reduce(op, &s, axis.map(|x| x as usize), &mut o);
        self.out(b, r, o, |dst| Inst::Reduce { op, dst, a, axis: OptAxis(axis) })
    }
    fn matmul(&mut self, b: BlockId, x: Reg, y: Reg) -> Reg {
        let mut o = None;
        let r = kernels::matmul(&self.sample(x), &self.sample(y), &mut o);
        self.out(b, r, o, |dst| Inst::MatMul { dst, a: x, b: y })
    }
    fn dot_general(&mut self, b: BlockId, x: Reg, y: Reg, dims: DotDims) -> Reg {
        let mut o = None;
        let r = kernels::dot_general(&self.sample(x), &self.sample(y), &dims, &mut o);
        self.out(b, r, o, |dst| Inst::DotGeneral { dst, a: x, b: y, dims })
    }
    fn index(&mut self, b: BlockId, a: Reg, idx: &[Reg]) -> Reg {
        let mut o = None;
        let r = kernels::dynamic_index(&self.sample(a), &vec![0; idx.len()], &mut o);
        self.out(b, r, o, |dst| Inst::Index { dst, a, idx: idx.to_vec() })
    }
    fn update(&mut self, b: BlockId, mode: UpdateMode, a: Reg, idx: &[Reg], v: Reg) -> Reg {
        let t = self.regs[a.0 as usize].clone();
        let dst = self.reg(t);
        self.push(b, Inst::Update { mode, dst, a, idx: idx.to_vec(), v });
        dst
    }
    fn slice(&mut self, b: BlockId, a: Reg, specs: &[kernels::SliceSpec]) -> Reg {
        let mut o = None;
        let r = kernels::slice(&self.sample(a), specs, &mut o);
        self.out(b, r, o, |dst| Inst::Slice { dst, a, specs: Slices(specs.to_vec()) })
    }
    fn shaped(
        &mut self,
        b: BlockId,
        a: Reg,
        f: impl FnOnce(&Tensor, &mut Option<Tensor>) -> Result<(), loopvm_runtime::RuntimeError>,
        g: impl FnOnce(Reg) -> Inst,
    ) -> Reg {
        let mut o = None;
        let r = f(&self.sample(a), &mut o);
        self.out(b, r, o, g)
    }
    fn mv(&mut self, b: BlockId, src: Reg) -> Reg {
        let t = self.regs[src.0 as usize].clone();
        let dst = self.reg(t);
        self.push(b, Inst::Move { dst, src });
        dst
    }
    fn results(&mut self, b: BlockId, rs: Vec<Reg>) {
        self.blocks[b.0 as usize].results = rs;
    }
    fn types(&self, rs: &[Reg]) -> Vec<TensorType> {
        rs.iter().map(|r| self.regs[r.0 as usize].clone()).collect()
    }
    fn fresh_like(&mut self, rs: &[Reg]) -> Vec<Reg> {
        self.types(rs).into_iter().map(|t| self.reg(t)).collect()
    }

    fn fori(
        &mut self,
        b: BlockId,
        lo: Reg,
        hi: Reg,
        init: &[Reg],
        body: impl FnOnce(&mut Fb, BlockId, Reg, &[Reg]) -> Vec<Reg>,
    ) -> Vec<Reg> {
        let i = self.fresh_like(&[lo])[0];
        let carry = self.fresh_like(init);
        let mut params = vec![i];
        params.extend(&carry);
        let bb = self.block(params);
        let res = body(self, bb, i, &carry);
        self.results(bb, res);
        let dsts = self.fresh_like(init);
        self.push(b, Inst::Fori { dsts: dsts.clone(), lo, hi, init: init.to_vec(), body: bb, unroll: 1 });
        dsts
    }

    fn while_(
        &mut self,
        b: BlockId,
        init: &[Reg],
        cond: impl FnOnce(&mut Fb, BlockId, &[Reg]) -> Reg,
        body: impl FnOnce(&mut Fb, BlockId, &[Reg]) -> Vec<Reg>,
    ) -> Vec<Reg> {
        let cp = self.fresh_like(init);
        let cb = self.block(cp.clone());
        let c = cond(self, cb, &cp);
        self.results(cb, vec![c]);
        let bp = self.fresh_like(init);
        let bb = self.block(bp.clone());
        let res = body(self, bb, &bp);
        self.results(bb, res);
        let dsts = self.fresh_like(init);
        self.push(b, Inst::While { dsts: dsts.clone(), init: init.to_vec(), cond: cb, body: bb });
        dsts
    }

    #[allow(clippy::type_complexity)]
    fn scan(
        &mut self,
        b: BlockId,
        init: &[Reg],
        xs: &[Reg],
        length: Option<u64>,
        reverse: bool,
        body: impl FnOnce(&mut Fb, BlockId, &[Reg], &[Reg]) -> (Vec<Reg>, Vec<Reg>),
    ) -> (Vec<Reg>, Vec<Reg>) {
        let cp = self.fresh_like(init);
        let mut n = length;
        let xp: Vec<Reg> = xs
            .iter()
            .map(|x| {
                let mut t = self.regs[x.0 as usize].clone();
                let lead = t.dims.remove(0);
                if let Dim::Fixed(k) = lead {
                    n = Some(k);
                }
                self.reg(t)
            })
            .collect();
        let mut params = cp.clone();
        params.extend(&xp);
        let bb = self.block(params);
        let (c, y) = body(self, bb, &cp, &xp);
        let mut res = c.clone();
        res.extend(&y);
        self.results(bb, res);
        let cd = self.fresh_like(init);
        let yd: Vec<Reg> = self
            .types(&y)
            .into_iter()
            .map(|mut t| {
                t.dims.insert(0, Dim::Fixed(n.unwrap()));
                self.reg(t)
            })
            .collect();
        let mut dsts = cd.clone();
        dsts.extend(&yd);
        self.push(
            b,
            Inst::Scan {
                dsts,
                init: init.to_vec(),
                xs: xs.to_vec(),
                length: OptLen(length),
                reverse,
                unroll: 1,
                body: bb,
            },
        );
        (cd, yd)
    }

    fn if_(
        &mut self,
        b: BlockId,
        c: Reg,
        then_: impl FnOnce(&mut Fb, BlockId) -> Vec<Reg>,
        else_: impl FnOnce(&mut Fb, BlockId) -> Vec<Reg>,
    ) -> Vec<Reg> {
        let tb = self.block(vec![]);
        let tr = then_(self, tb);
        self.results(tb, tr.clone());
        let eb = self.block(vec![]);
        let er = else_(self, eb);
        self.results(eb, er);
        let dsts = self.fresh_like(&tr);
        self.push(b, Inst::If { dsts: dsts.clone(), c, then_: tb, else_: eb });
        dsts
    }

    fn func(self, name: &str, results: Vec<Reg>) -> (Func, Vec<Tensor>) {
        let Fb { consts, regs, mut blocks, params } = self;
        blocks[0].results = results.clone();
        let f = Func {
            name: name.into(),
            params: params
                .iter()
                .enumerate()
                .map(|(i, r)| Param { name: format!("p{i}"), ty: TypeTree::Tensor(regs[r.0 as usize].clone()) })
                .collect(),
            result: TypeTree::Tuple(results.iter().map(|r| TypeTree::Tensor(regs[r.0 as usize].clone())).collect()),
            reg_types: regs,
            blocks,
            body: ENTRY,
        };
        (f, consts)
    }

    fn module(self, results: Vec<Reg>) -> Module {
        let (f, consts) = self.func("main", results);
        Module { symbols: vec![], consts, funcs: vec![f], main: Some(FuncId(0)) }
    }
}

fn i32s(shape: &[usize], v: &[i32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}
fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}
fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}
fn f64s(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}
fn bools(shape: &[usize], v: &[bool]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}

fn dims_of(t: &Tensor) -> Vec<u64> {
    t.shape().iter().map(|&d| d as u64).collect()
}

/// `main(a, b) = op(a, b)` for each binary op that applies, checked with the
/// operands as arguments (run time) and as constants (XLA folds them).
fn check_binary_ops(a: &Tensor, b: &Tensor, ops: &[BinaryOp], ctx: &str) {
    for &op in ops {
        let (da, db) = (dims_of(a), dims_of(b));
        let mut f = Fb::new(&[(a.dtype(), &da), (b.dtype(), &db)]);
        let r = f.bin(ENTRY, op, f.p(0), f.p(1));
        check(&f.module(vec![r]), &[a.clone(), b.clone()], &format!("{ctx} {op} (args)"));
        let mut f = Fb::new(&[]);
        let (x, y) = (f.konst(ENTRY, a.clone()), f.konst(ENTRY, b.clone()));
        let r = f.bin(ENTRY, op, x, y);
        check(&f.module(vec![r]), &[], &format!("{ctx} {op} (constants)"));
    }
}

const ARITH: &[BinaryOp] = &[
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Rem,
    BinaryOp::Pow,
    BinaryOp::Max,
    BinaryOp::Min,
    BinaryOp::Eq,
    BinaryOp::Ne,
    BinaryOp::Lt,
    BinaryOp::Le,
    BinaryOp::Gt,
    BinaryOp::Ge,
];

// ------------------------------------------------------------ op families

#[test]
fn integer_arithmetic_edge_values() {
    let a = i32s(&[9], &[7, -7, 5, i32::MIN, i32::MIN, 0, i32::MAX, -1, 3]);
    let b = i32s(&[9], &[-2, 2, 0, -1, 0, 0, -1, -1, 40]);
    check_binary_ops(&a, &b, ARITH, "i32");
    let a = i64s(&[6], &[i64::MIN, 9, -9, i64::MAX, 2, -3]);
    let b = i64s(&[6], &[-1, 0, 4, 2, 62, 3]);
    check_binary_ops(&a, &b, ARITH, "i64");
    // Powers: negative exponents, wrapping, 0 ** 0.
    let a = i32s(&[10], &[2, -1, -1, 1, 3, 0, 2, 2, 7, -2]);
    let b = i32s(&[10], &[10, -3, -4, -5, -1, 0, 31, 32, 13, 5]);
    check_binary_ops(&a, &b, &[BinaryOp::Pow], "i32 pow");
    // Broadcasting a scalar and a row against a column.
    check_binary_ops(&i32s(&[2, 1], &[1, -9]), &i32s(&[3], &[0, 2, -4]), &[BinaryOp::Div, BinaryOp::Rem], "bcast");
}

#[test]
fn float_arithmetic_nan_and_inf() {
    let n = f32::NAN;
    let a = f32s(&[8], &[1.0, n, 3.0, n, -0.0, f32::INFINITY, -2.5, 0.1]);
    let b = f32s(&[8], &[n, 2.0, 2.0, n, 0.0, f32::INFINITY, 0.0, 3.0]);
    check_binary_ops(&a, &b, ARITH, "f32");
    let a = f64s(&[4], &[1.0, f64::NAN, -7.5, 1e300]);
    let b = f64s(&[4], &[f64::NAN, 2.0, 2.0, 1e10]);
    check_binary_ops(&a, &b, ARITH, "f64");
    let t = bools(&[4], &[true, true, false, false]);
    let u = bools(&[4], &[true, false, true, false]);
    let bool_ops = [
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
    ];
    check_binary_ops(&t, &u, &bool_ops, "bool");
}

#[test]
fn unary_ops() {
    let x = f32s(&[6], &[-2.0, -0.5, 0.0, 0.25, 1.5, f32::NAN]);
    let y = f64s(&[4], &[-3.0, 0.0, 0.5, 2.0]);
    let i = i32s(&[4], &[i32::MIN, -3, 0, 7]);
    // Every op of the table, on every dtype it accepts.
    for t in [&x, &y] {
        for &op in UnaryOp::ALL.iter().filter(|op| op.accepts().accepts(t.dtype())) {
            let mut f = Fb::new(&[(t.dtype(), &dims_of(t))]);
            let r = f.unary(ENTRY, op, f.p(0));
            check(&f.module(vec![r]), std::slice::from_ref(t), &format!("{op} {}", t.type_string()));
        }
    }
    for &op in UnaryOp::ALL.iter().filter(|op| op.accepts().accepts(DType::I32)) {
        let mut f = Fb::new(&[(DType::I32, &[4])]);
        let r = f.unary(ENTRY, op, f.p(0));
        check(&f.module(vec![r]), std::slice::from_ref(&i), &format!("{op} i32"));
    }
    let mut f = Fb::new(&[(DType::Bool, &[2])]);
    let r = f.unary(ENTRY, UnaryOp::Not, f.p(0));
    check(&f.module(vec![r]), &[bools(&[2], &[true, false])], "not");
}

/// The host tiers' f32 `tanh` (`kernels::tanh_f32`) is XLA's approximation
/// computed operation for operation: the same bits as the plugin's over a
/// sweep of every 4099th f32 (both signs, all exponents, NaNs and
/// infinities), not only within the tolerance.
#[test]
fn tanh_f32_is_xlas_bit_for_bit() {
    let mut xs: Vec<f32> = (0..=u32::MAX / 4099).map(|k| f32::from_bits(k * 4099)).collect();
    xs.extend([0.0, -0.0, 0.0004, -0.0004, 7.998_812, 20.0, -20.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    let x = f32s(&[xs.len()], &xs);
    let mut f = Fb::new(&[(DType::F32, &dims_of(&x))]);
    let r = f.unary(ENTRY, UnaryOp::Tanh, f.p(0));
    let m = f.module(vec![r]);
    let want = interp(&m, std::slice::from_ref(&x)).expect("interp");
    let (got, _, _) = with_backend(&m, std::slice::from_ref(&x), XlaMode::Functions);
    let got = got.expect("xla");
    let (w, g) = (want[0].as_slice::<f32>().expect("f32"), got[0].as_slice::<f32>().expect("f32"));
    let mut differ = 0;
    for ((&a, &b), &x) in w.iter().zip(g).zip(&xs) {
        if a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()) {
            if differ < 10 {
                eprintln!("tanh({x:e}) = {a:e} ({:#x}) here, {b:e} ({:#x}) on XLA", a.to_bits(), b.to_bits());
            }
            differ += 1;
        }
    }
    assert_eq!(differ, 0, "{differ} of {} tanh values differ from XLA's", xs.len());
}

#[test]
fn casts_saturate_and_nan_is_zero() {
    let f = f32s(&[9], &[f32::NAN, 1e20, -1e20, -2.7, 2.7, f32::INFINITY, f32::NEG_INFINITY, 2147483520.0, -0.0]);
    let d = f64s(&[7], &[f64::NAN, 1e300, -1e300, 2147483647.9, -2147483648.5, 9.3e18, -9.3e18]);
    let i = i64s(&[4], &[i64::MAX, i64::MIN, -1, 1 << 40]);
    let i3 = i32s(&[4], &[i32::MAX, i32::MIN, -1, 0]);
    let b = bools(&[2], &[true, false]);
    for t in [&f, &d, &i, &i3, &b] {
        for to in DType::ALL {
            let dims = dims_of(t);
            let mut m = Fb::new(&[(t.dtype(), &dims)]);
            let r = m.cast(ENTRY, m.p(0), to);
            check(&m.module(vec![r]), std::slice::from_ref(t), &format!("{} as {to} (arg)", t.type_string()));
            let mut m = Fb::new(&[]);
            let c = m.konst(ENTRY, t.clone());
            let r = m.cast(ENTRY, c, to);
            check(&m.module(vec![r]), &[], &format!("{} as {to} (constant)", t.type_string()));
        }
    }
}

#[test]
fn reductions_argmax_nan_and_ties() {
    let n = f32::NAN;
    let x = f32s(&[3, 4], &[1.0, 3.0, 3.0, -1.0, n, 2.0, n, 5.0, -0.5, -0.5, -0.5, -0.5]);
    let xi = i32s(&[2, 3], &[4, 9, 9, i32::MIN, i32::MIN, i32::MIN]);
    let xb = bools(&[2, 3], &[false, true, true, false, false, false]);
    let xd = f64s(&[2, 2], &[1.5, -2.0, 1e10, 3.0]);
    let ops = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::Argmax];
    for t in [&x, &xi, &xb, &xd] {
        for op in ops {
            for axis in [None, Some(0), Some(1)] {
                let mut f = Fb::new(&[(t.dtype(), &dims_of(t))]);
                let r = f.reduce(ENTRY, op, f.p(0), axis);
                check(&f.module(vec![r]), std::slice::from_ref(t), &format!("{op} axis {axis:?} of {t}"));
            }
        }
    }
    // Sums of empty tensors; a scalar's max.
    let e = Tensor::zeros(DType::F32, &[0, 3]).unwrap();
    let mut f = Fb::new(&[(DType::F32, &[0, 3])]);
    let s = f.reduce(ENTRY, ReduceOp::Sum, f.p(0), None);
    let s1 = f.reduce(ENTRY, ReduceOp::Sum, f.p(0), Some(0));
    check(&f.module(vec![s, s1]), &[e], "empty sums");
    let mut f = Fb::new(&[(DType::I64, &[])]);
    let s = f.reduce(ENTRY, ReduceOp::Max, f.p(0), None);
    let a = f.reduce(ENTRY, ReduceOp::Argmax, f.p(0), None);
    check(&f.module(vec![s, a]), &[Tensor::scalar(5i64)], "scalar max");
}

#[test]
fn matmul_rank_rules() {
    let a = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32s(&[3, 2], &[0.5, -1.0, 2.0, 0.0, 1.0, 1.0]);
    let v = f32s(&[3], &[1.0, -1.0, 2.0]);
    let w = f32s(&[2], &[3.0, 4.0]);
    for (x, y) in [(&a, &b), (&a, &v), (&w, &a), (&v, &v), (&b, &a)] {
        let mut f = Fb::new(&[(x.dtype(), &dims_of(x)), (y.dtype(), &dims_of(y))]);
        let r = f.matmul(ENTRY, f.p(0), f.p(1));
        check(&f.module(vec![r]), &[x.clone(), y.clone()], &format!("{x} @ {y}"));
    }
    let ai = i64s(&[2, 2], &[i64::MAX, 2, 3, 4]);
    let mut f = Fb::new(&[(DType::I64, &[2, 2])]);
    let r = f.matmul(ENTRY, f.p(0), f.p(0));
    check(&f.module(vec![r]), &[ai], "i64 matmul wraps");
}

#[test]
fn dot_general_edges() {
    let dd = |lb: &[u32], rb: &[u32], lc: &[u32], rc: &[u32]| DotDims {
        lhs_batch: lb.to_vec(),
        rhs_batch: rb.to_vec(),
        lhs_contract: lc.to_vec(),
        rhs_contract: rc.to_vec(),
    };
    // A length-1 contraction of 0 and a negative number: XLA makes it a
    // multiply (-0); the interpreter accumulates from +0.
    let z = f32s(&[2, 1, 2], &[0.0, -0.0, 0.0, 0.0]);
    let n = f32s(&[2, 1, 3], &[-38.25, 1.0, -2.0, -1.0, -0.0, 3.0]);
    // Batch axes not leading, contracted axes first (lhs) and last (rhs),
    // two contracted axes in another order, an empty contraction, wrapping i64.
    let a = f32s(&[3, 2, 4], &(0..24).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>());
    let b = f32s(&[2, 5, 3], &(0..30).map(|i| (i % 5) as f32 - 2.0).collect::<Vec<_>>());
    let e = f32s(&[2, 0], &[]);
    let e2 = f32s(&[0, 3], &[]);
    let ai = i64s(&[1, 2], &[i64::MAX, 2]);
    let cases: Vec<(Tensor, Tensor, DotDims, &str)> = vec![
        (z.clone(), n.clone(), dd(&[0], &[0], &[1], &[1]), "length-1 contraction keeps +0"),
        (a.clone(), b.clone(), dd(&[1], &[0], &[0], &[2]), "batch axis 1 against 0, lhs [k, b, m], rhs [b, n, k]"),
        (a.clone(), a.clone(), dd(&[], &[], &[0, 2], &[0, 2]), "two contracted axes"),
        (a.clone(), b.clone(), dd(&[], &[], &[], &[]), "outer product"),
        (e, e2, dd(&[], &[], &[1], &[0]), "empty contraction"),
        (ai.clone(), ai, dd(&[0], &[0], &[1], &[1]), "i64 wraps"),
    ];
    for (x, y, dims, what) in cases {
        let mut f = Fb::new(&[(x.dtype(), &dims_of(&x)), (y.dtype(), &dims_of(&y))]);
        let r = f.dot_general(ENTRY, f.p(0), f.p(1), dims);
        check(&f.module(vec![r]), &[x, y], what);
    }
}

#[test]
fn dynamic_indices_wrap_then_clamp() {
    let m = i32s(&[3, 2], &[0, 1, 2, 3, 4, 5]);
    for i in [0, 2, -1, -3, -10, 7, i32::MIN, i32::MAX] {
        for j in [0i64, -1, 5, i64::MIN] {
            // Runtime indices.
            let mut f = Fb::new(&[(DType::I32, &[3, 2]), (DType::I32, &[]), (DType::I64, &[])]);
            let row = f.index(ENTRY, f.p(0), &[f.p(1)]);
            let el = f.index(ENTRY, f.p(0), &[f.p(1), f.p(2)]);
            let v = f.konst(ENTRY, Tensor::scalar(100i32));
            let set = f.update(ENTRY, UpdateMode::Set, f.p(0), &[f.p(1)], v);
            let add = f.update(ENTRY, UpdateMode::Add, f.p(0), &[f.p(1), f.p(2)], v);
            let r2 = f.konst(ENTRY, i32s(&[1], &[7]));
            let setrow = f.update(ENTRY, UpdateMode::Add, f.p(0), &[f.p(1)], r2);
            let args = [m.clone(), Tensor::scalar(i), Tensor::scalar(j)];
            check(&f.module(vec![row, el, set, add, setrow]), &args, &format!("index [{i}, {j}]"));
        }
        // Constant indices.
        let mut f = Fb::new(&[(DType::I32, &[3, 2])]);
        let k = f.konst(ENTRY, Tensor::scalar(i));
        let row = f.index(ENTRY, f.p(0), &[k]);
        let v = f.konst(ENTRY, i32s(&[2], &[-5, -6]));
        let set = f.update(ENTRY, UpdateMode::Set, f.p(0), &[k], v);
        check(&f.module(vec![row, set]), std::slice::from_ref(&m), &format!("constant index {i}"));
    }
}

#[test]
fn shape_ops() {
    use kernels::SliceSpec::{Index, Range};
    let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let mut f = Fb::new(&[(DType::F32, &[2, 3])]);
    let p = f.p(0);
    let rs = f.shaped(
        ENTRY,
        p,
        |a, o| kernels::reshape(a, &[3, 2], o),
        |dst| Inst::Reshape { dst, a: p, shape: Dims(vec![3, 2]) },
    );
    let tr = f.shaped(
        ENTRY,
        p,
        |a, o| kernels::transpose(a, None, o),
        |dst| Inst::Transpose { dst, a: p, perm: OptAxes(None) },
    );
    let bc = f.shaped(
        ENTRY,
        p,
        |a, o| kernels::broadcast_to(a, &[4, 2, 3], o),
        |dst| Inst::Broadcast { dst, a: p, shape: Dims(vec![4, 2, 3]) },
    );
    let cc = {
        let t = f.regs[p.0 as usize].clone();
        let mut t = t;
        t.dims[1] = Dim::Fixed(6);
        let dst = f.reg(t);
        f.push(ENTRY, Inst::Concat { dst, srcs: vec![p, p], axis: Axis(1) });
        dst
    };
    let st = {
        let dst = f.reg(TensorType::fixed(DType::F32, &[2, 2, 3]));
        f.push(ENTRY, Inst::Stack { dst, srcs: vec![p, p], axis: Axis(1) });
        dst
    };
    let io = {
        let dst = f.reg(TensorType::fixed(DType::I64, &[5]));
        f.push(ENTRY, Inst::Iota { dst, dtype: DType::I64, n: 5 });
        dst
    };
    let so = {
        let dst = f.reg(TensorType::fixed(DType::I32, &[2]));
        f.push(ENTRY, Inst::ShapeOf { dst, a: p });
        dst
    };
    let sl1 = f.slice(ENTRY, p, &[Index(-1)]);
    let sl2 = f.slice(
        ENTRY,
        p,
        &[Range { start: None, stop: None, step: -1 }, Range { start: Some(2), stop: None, step: -2 }],
    );
    let sl3 = f.slice(ENTRY, p, &[Range { start: Some(5), stop: None, step: 1 }]);
    let sl4 = f.slice(ENTRY, p, &[Range { start: None, stop: None, step: 1 }, Index(1)]);
    let sl5 = f.slice(
        ENTRY,
        p,
        &[Range { start: Some(-1), stop: Some(-3), step: -1 }, Range { start: Some(0), stop: Some(3), step: 2 }],
    );
    let c = f.konst(ENTRY, bools(&[2, 1], &[true, false]));
    let z = f.konst(ENTRY, Tensor::scalar(0.0f32));
    let sel = f.select(ENTRY, c, p, z);
    check(&f.module(vec![rs, tr, bc, cc, st, io, so, sl1, sl2, sl3, sl4, sl5, sel]), &[x], "shape ops");
}

// ----------------------------------------------------------------- loops

/// `main(n: i32) -> f32[4]`: fori_loop(0, n, |i, acc| tanh(acc * 0.5 + 1.0), zeros).
fn fori_tanh(hi_const: Option<i32>) -> Module {
    let mut f = Fb::new(if hi_const.is_some() { &[] } else { &[(DType::I32, &[])] });
    let lo = f.konst(ENTRY, Tensor::scalar(0i32));
    let hi = match hi_const {
        Some(n) => f.konst(ENTRY, Tensor::scalar(n)),
        None => f.p(0),
    };
    let init = f.konst(ENTRY, Tensor::zeros(DType::F32, &[4]).unwrap());
    let out = f.fori(ENTRY, lo, hi, &[init], |f, b, _i, c| {
        let half = f.konst(b, Tensor::scalar(0.5f32));
        let m = f.bin(b, BinaryOp::Mul, c[0], half);
        let one = f.konst(b, Tensor::scalar(1.0f32));
        let s = f.bin(b, BinaryOp::Add, m, one);
        vec![f.unary(b, UnaryOp::Tanh, s)]
    });
    f.module(out)
}

#[test]
fn fori_dynamic_and_static_bounds() {
    let m = fori_tanh(None);
    for n in [0, 1, 5, 100, -3] {
        check(&m, &[Tensor::scalar(n)], &format!("fori n = {n}"));
    }
    check(&fori_tanh(Some(7)), &[], "fori static");
}

#[test]
fn rolled_not_unrolled() {
    let opts = EmitOptions::default();
    let t10 = hlo::emit_function(&fori_tanh(Some(10)), FuncId(0), &[], &opts).unwrap();
    let t1m = hlo::emit_function(&fori_tanh(Some(1_000_000)), FuncId(0), &[], &opts).unwrap();
    assert_eq!(t10.matches("stablehlo.while").count(), 1, "{t10}");
    assert_eq!(t1m.matches("stablehlo.while").count(), 1, "{t1m}");
    assert_eq!(t10.replace("dense<10>", "dense<N>"), t1m.replace("dense<1000000>", "dense<N>"));
    assert_eq!(t10.lines().count(), t1m.lines().count());
    // The same through the loop region entry point.
    let m = fori_tanh(Some(10));
    let inst = m.funcs[0].blocks[0].code.last().unwrap().clone();
    let inputs: Vec<hlo::ValueType> = region_inputs(&m.funcs[0], &inst)
        .iter()
        .map(|r| {
            let t = &m.funcs[0].reg_types[r.0 as usize];
            (t.dtype, t.dims.iter().map(|d| if let Dim::Fixed(n) = d { *n as usize } else { 0 }).collect())
        })
        .collect();
    let l = hlo::emit_loop(&m, FuncId(0), &inst, &inputs, &opts).unwrap();
    assert_eq!(l.matches("stablehlo.while").count(), 1);
    // Unrolled for comparison: no while, and it grows with the trip count.
    let u = hlo::emit_function(&m, FuncId(0), &[], &EmitOptions { unroll_all: true, ..Default::default() }).unwrap();
    assert_eq!(u.matches("stablehlo.while").count(), 0);
    assert!(u.matches("stablehlo.tanh").count() == 10, "{u}");
    let mut b = XlaBackend::new(client(), XlaMode::Functions);
    b.set_emit_options(EmitOptions { unroll_all: true, ..Default::default() });
    let exe = b.compile_text(&u).unwrap();
    assert_eq!(exe.num_outputs(), 1);
    // Compile time stays flat in the trip count (one executable each).
    let mut b = XlaBackend::new(client(), XlaMode::Functions);
    b.compile_text(&t10).unwrap();
    b.compile_text(&t1m).unwrap();
    assert_eq!(b.stats.regions_compiled, 2);
    check(&fori_tanh(Some(1_000_000)), &[], "a million iterations");
}

/// Collatz steps: while x != 1 { x = if x % 2 == 0 { x / 2 } else { 3x + 1 }; k += 1 }.
fn collatz() -> Module {
    let mut f = Fb::new(&[(DType::I32, &[])]);
    let zero = f.konst(ENTRY, Tensor::scalar(0i32));
    let out = f.while_(
        ENTRY,
        &[f.p(0), zero],
        |f, b, c| {
            let one = f.konst(b, Tensor::scalar(1i32));
            f.bin(b, BinaryOp::Ne, c[0], one)
        },
        |f, b, c| {
            let two = f.konst(b, Tensor::scalar(2i32));
            let r = f.bin(b, BinaryOp::Rem, c[0], two);
            let z = f.konst(b, Tensor::scalar(0i32));
            let even = f.bin(b, BinaryOp::Eq, r, z);
            let x = c[0];
            let nx = f.if_(
                b,
                even,
                |f, tb| {
                    let two = f.konst(tb, Tensor::scalar(2i32));
                    vec![f.bin(tb, BinaryOp::Div, x, two)]
                },
                |f, eb| {
                    let three = f.konst(eb, Tensor::scalar(3i32));
                    let t = f.bin(eb, BinaryOp::Mul, x, three);
                    let one = f.konst(eb, Tensor::scalar(1i32));
                    vec![f.bin(eb, BinaryOp::Add, t, one)]
                },
            );
            let one = f.konst(b, Tensor::scalar(1i32));
            vec![nx[0], f.bin(b, BinaryOp::Add, c[1], one)]
        },
    );
    f.module(out)
}

#[test]
fn while_with_if_inside() {
    let m = collatz();
    for n in [27, 1, 6] {
        let r = check(&m, &[Tensor::scalar(n)], &format!("collatz {n}"));
        if n == 27 {
            assert_eq!(r[1].scalar_i64(), Some(111));
        }
    }
}

/// scan(|c, x| (c + x * w, c * x), init, xs, reverse), `w` captured.
fn scan_module(reverse: bool, length_only: bool) -> Module {
    let mut f = Fb::new(&[(DType::F32, &[2]), (DType::F32, &[5, 2]), (DType::F32, &[])]);
    let (init, xs, w) = (f.p(0), f.p(1), f.p(2));
    let (c, ys) = if length_only {
        f.scan(ENTRY, &[init], &[], Some(4), reverse, |f, b, c, _| {
            let y = f.bin(b, BinaryOp::Mul, c[0], w);
            let s = f.bin(b, BinaryOp::Add, c[0], y);
            let k = f.konst(b, Tensor::scalar(3i64));
            (vec![s], vec![y, k])
        })
    } else {
        f.scan(ENTRY, &[init], &[xs], None, reverse, |f, b, c, x| {
            let xw = f.bin(b, BinaryOp::Mul, x[0], w);
            let s = f.bin(b, BinaryOp::Add, c[0], xw);
            let y = f.bin(b, BinaryOp::Mul, c[0], x[0]);
            let y2 = f.reduce(b, ReduceOp::Sum, y, None);
            (vec![s], vec![y, y2])
        })
    };
    let mut out = c;
    out.extend(ys);
    f.module(out)
}

#[test]
fn scans_forward_reverse_length_only() {
    let args = [
        f32s(&[2], &[1.0, -1.0]),
        f32s(&[5, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]),
        Tensor::scalar(0.5f32),
    ];
    for reverse in [false, true] {
        for length_only in [false, true] {
            let m = scan_module(reverse, length_only);
            check(&m, &args, &format!("scan reverse={reverse} length_only={length_only}"));
            let u = hlo::emit_function(
                &m,
                FuncId(0),
                &hlo_types(&args),
                &EmitOptions { unroll_all: true, ..Default::default() },
            )
            .unwrap();
            assert_eq!(u.matches("stablehlo.while").count(), 0);
            let mut b = XlaBackend::new(client(), XlaMode::Functions);
            let exe = b.compile_text(&u).unwrap();
            let bufs: Vec<_> = args.iter().map(|a| client().buffer_from_tensor(a).unwrap()).collect();
            let refs: Vec<_> = bufs.iter().collect();
            let got: Vec<Tensor> = exe.execute(&refs).unwrap().iter().map(|b| b.to_tensor().unwrap()).collect();
            assert_same(&interp(&m, &args).unwrap(), &got, "unrolled scan");
        }
    }
}

fn hlo_types(args: &[Tensor]) -> Vec<hlo::ValueType> {
    args.iter().map(hlo::value_type).collect()
}

#[test]
fn nested_loops_tuple_carries_and_captures() {
    // sum over i < n, j < i of (i + j) * k, with k captured by the inner loop,
    // and a tuple carry (acc, count).
    let mut f = Fb::new(&[(DType::I32, &[]), (DType::I64, &[])]);
    let (n, k) = (f.p(0), f.p(1));
    let zero = f.konst(ENTRY, Tensor::scalar(0i32));
    let acc0 = f.konst(ENTRY, Tensor::scalar(0i64));
    let out = f.fori(ENTRY, zero, n, &[acc0, zero], |f, b, i, c| {
        let z = f.konst(b, Tensor::scalar(0i32));
        let inner = f.fori(b, z, i, &[c[0]], |f, b2, j, c2| {
            let s = f.bin(b2, BinaryOp::Add, i, j);
            let s = f.cast(b2, s, DType::I64);
            let p = f.bin(b2, BinaryOp::Mul, s, k);
            vec![f.bin(b2, BinaryOp::Add, c2[0], p)]
        });
        let one = f.konst(b, Tensor::scalar(1i32));
        vec![inner[0], f.bin(b, BinaryOp::Add, c[1], one)]
    });
    let m = f.module(out);
    let r = check(&m, &[Tensor::scalar(10i32), Tensor::scalar(3i64)], "nested");
    assert_eq!(r[0].scalar_i64(), Some(405 * 3));
    let text =
        emit_for(&m, FuncId(0), &[Tensor::scalar(10i32), Tensor::scalar(3i64)], &EmitOptions::default()).unwrap();
    assert_eq!(text.matches("stablehlo.while").count(), 2);
}

#[test]
fn calls_are_inlined_and_loops_in_callees_run() {
    // tri(n) = fori(1, n + 1, |i, s| s + i, 0); main = fori(1, 11, |k, a| a + tri(k), 0)
    let mut g = Fb::new(&[(DType::I32, &[])]);
    let one = g.konst(ENTRY, Tensor::scalar(1i32));
    let hi = g.bin(ENTRY, BinaryOp::Add, g.p(0), one);
    let z = g.konst(ENTRY, Tensor::scalar(0i32));
    let s = g.fori(ENTRY, one, hi, &[z], |f, b, i, c| vec![f.bin(b, BinaryOp::Add, c[0], i)]);
    let (tri, gconsts) = g.func("tri", s);
    let mut f = Fb::new(&[]);
    f.consts = gconsts;
    let one = f.konst(ENTRY, Tensor::scalar(1i32));
    let eleven = f.konst(ENTRY, Tensor::scalar(11i32));
    let z = f.konst(ENTRY, Tensor::scalar(0i32));
    let out = f.fori(ENTRY, one, eleven, &[z], |f, b, k, c| {
        let t = f.reg(TensorType::fixed(DType::I32, &[]));
        f.push(b, Inst::Call { dsts: vec![t], func: FuncId(1), args: vec![k] });
        vec![f.bin(b, BinaryOp::Add, c[0], t)]
    });
    let (main, consts) = f.func("main", out);
    let m = Module { symbols: vec![], consts, funcs: vec![main, tri], main: Some(FuncId(0)) };
    let r = check(&m, &[], "calls");
    assert_eq!(r[0].scalar_i64(), Some(220));
}

#[test]
fn print_falls_back_to_the_interpreter() {
    let mut f = Fb::new(&[(DType::I32, &[])]);
    let z = f.konst(ENTRY, Tensor::scalar(0i32));
    let out = f.fori(ENTRY, z, f.p(0), &[z], |f, b, i, c| {
        f.push(b, Inst::Print { srcs: vec![i] });
        vec![f.bin(b, BinaryOp::Add, c[0], i)]
    });
    let n2 = f.fori(ENTRY, z, f.p(0), &[out[0]], |f, b, i, c| vec![f.bin(b, BinaryOp::Add, c[0], i)]);
    let m = f.module(n2);
    check(&m, &[Tensor::scalar(5i32)], "print");
    // With host callbacks (issue 17) the whole function runs on XLA and
    // prints `i32 0` .. `i32 4` into the back end's output.
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hb = XlaBackend::new(client(), XlaMode::FunctionsAndLoops);
    if hb.stats.host_print.is_ok() {
        hb.set_output(Box::new(Shared(printed.clone())));
        let r = {
            let mut it = Interpreter::new(&m, RunOptions::default());
            it.set_backend(&mut hb);
            it.call(m.main.expect("main"), &[Tensor::scalar(5i32)])
        };
        assert_eq!(r.unwrap()[0].scalar_i64(), Some(20));
        assert_eq!(hb.stats.functions_run, 1, "{:?}", hb.stats.fallbacks);
        assert_eq!(String::from_utf8_lossy(&printed.lock().unwrap()), "i32 0\ni32 1\ni32 2\ni32 3\ni32 4\n");
    }
    // Without them, the loop with the print runs in the interpreter.
    let mut b = XlaBackend::new(client(), XlaMode::FunctionsAndLoops);
    b.set_host_print(false);
    let (r, profile) = {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_output(Box::new(std::io::sink()));
        it.set_backend(&mut b);
        let r = it.call(m.main.expect("main"), &[Tensor::scalar(5i32)]);
        (r, it.profile.clone())
    };
    assert_eq!(r.unwrap()[0].scalar_i64(), Some(20));
    assert_eq!(b.stats.functions_run, 0);
    assert_eq!(b.stats.loops_run, 1, "the second loop runs on XLA");
    assert_eq!(b.stats.fallbacks.len(), 2, "{:?}", b.stats.fallbacks);
    assert!(b.stats.fallbacks.iter().all(|f| f.reason.contains("print")), "{:?}", b.stats.fallbacks);
    assert_eq!(profile.entries().iter().map(|e| e.2.iterations).sum::<u64>(), 5);
    let e = emit_for(&m, FuncId(0), &[Tensor::scalar(5i32)], &EmitOptions::default()).unwrap_err();
    assert!(e.to_string().contains("print"), "{e}");
}

#[test]
fn shape_errors_are_emit_errors_not_panics() {
    // A carry whose shape changes in the body cannot be one while loop.
    let mut f = Fb::new(&[(DType::F32, &[2])]);
    let z = f.konst(ENTRY, Tensor::scalar(0i32));
    let three = f.konst(ENTRY, Tensor::scalar(3i32));
    let out = f.fori(ENTRY, z, three, &[f.p(0)], |f, b, _, c| vec![f.mv(b, c[0])]);
    let mut m = f.module(out);
    // Break the module behind the verifier's back: reshape inside the body.
    let body = &mut m.funcs[0].blocks[1];
    let Inst::Move { dst, src } = body.code[0].clone() else { panic!() };
    body.code[0] = Inst::Reshape { dst, a: src, shape: Dims(vec![2, 1]) };
    let e = hlo::emit_function(&m, FuncId(0), &[(DType::F32, vec![2])], &EmitOptions::default()).unwrap_err();
    assert!(e.message.contains("changes type"), "{e}");
    // Wrong argument types, a bad index count, an unknown register: errors.
    let e = hlo::emit_function(&m, FuncId(0), &[], &EmitOptions::default()).unwrap_err();
    assert!(e.message.contains("takes 1 tensors"), "{e}");
    let mut f = Fb::new(&[(DType::F32, &[2])]);
    let k = f.konst(ENTRY, Tensor::scalar(0i32));
    let r = f.index(ENTRY, f.p(0), &[k]);
    let mut m = f.module(vec![r]);
    if let Inst::Index { idx, .. } = &mut m.funcs[0].blocks[0].code[1] {
        idx.push(Reg(1));
        idx.push(Reg(77));
    }
    let e = hlo::emit_function(&m, FuncId(0), &[(DType::F32, vec![2])], &EmitOptions::default()).unwrap_err();
    assert_eq!(e.op, "index");
    let e = hlo::emit_function(&m, FuncId(9), &[], &EmitOptions::default()).unwrap_err();
    assert!(e.message.contains("no function"), "{e}");
}

// --------------------------------------------------------------- errors

#[test]
fn pjrt_syntax_error_surfaces_as_an_error() {
    let m = fori_tanh(None);
    let mut b = XlaBackend::new(client(), XlaMode::Functions);
    b.corrupt_next_compile_for_test();
    let r = {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut b);
        it.call(FuncId(0), &[Tensor::scalar(3i32)])
    };
    let e = r.unwrap_err();
    let ExecError::Other(msg) = &e else { panic!("{e:?}") };
    assert!(msg.contains("could not compile") && msg.contains("PJRT"), "{msg}");
    // The failure is remembered; the hook was one-shot, so a fresh back end works.
    let mut b = XlaBackend::new(client(), XlaMode::Functions);
    let r = {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut b);
        it.call(FuncId(0), &[Tensor::scalar(3i32)])
    };
    assert!(r.is_ok());
}

#[test]
fn missing_plugin_is_an_error() {
    let e = Plugin::load("/nonexistent/loopvm/pjrt_plugin.so").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/loopvm/pjrt_plugin.so"), "{e}");
}

#[test]
fn cache_reuses_executables_per_shape() {
    let m = fori_tanh(None);
    let mut b = XlaBackend::new(client(), XlaMode::FunctionsAndLoops);
    {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut b);
        for n in 0..5 {
            it.call(FuncId(0), &[Tensor::scalar(n)]).unwrap();
        }
    }
    assert_eq!(b.stats.regions_compiled, 1);
    assert_eq!(b.stats.cache_hits, 4);
    assert_eq!(b.stats.functions_run, 5);
    assert!(b.stats.report().contains("1 regions compiled"));
}

// ---------------------------------------------------------- spec programs

/// Every spec program that compiles runs on XLA and agrees with the
/// interpreter; programs without `print` must lower as a whole and loop by
/// loop.
#[test]
fn spec_programs_agree_and_lower() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/spec");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no spec programs under {}", root.display());
    let mut ran = 0;
    let mut failures = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        if !header(&src, "error").is_empty() {
            continue;
        }
        let name = path.strip_prefix(&root).unwrap_or(path).display().to_string();
        let m = match loopvm_frontend::compile(&src, &name) {
            Ok(m) => m,
            Err(e) => {
                // Compile errors are the frontend's spec test's business.
                eprintln!("[spec] skipped {name}: does not compile:\n{e}");
                continue;
            }
        };
        let main = m.main.expect("main");
        let leaves: Vec<TensorType> =
            m.funcs[main.0 as usize].params.iter().flat_map(|p| p.ty.leaves().into_iter().cloned()).collect();
        let args: Vec<Tensor> = header(&src, "args")
            .first()
            .map(|a| split_args(a))
            .unwrap_or_default()
            .iter()
            .zip(&leaves)
            .map(|(a, t)| parse_value(a.split_once('=').map_or(a.as_str(), |x| x.1), t.dtype))
            .collect();
        // This one compares a loop's float result with the same computation
        // outside the loop exactly: with only the loop on XLA the two sides
        // come from different tiers (different summation orders in matmul).
        let exact_across_tiers = name.ends_with("while_linear.lb");
        let r = std::panic::catch_unwind(|| check_with(&m, &args, &name, !exact_across_tiers));
        match r {
            Ok(_) => ran += 1,
            Err(e) => failures.push(format!(
                "{name}: {}",
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    eprintln!("[spec] {ran} programs agree across interp and xla");
    assert!(failures.is_empty(), "{} spec programs failed:\n{}", failures.len(), failures.join("\n\n"));
}

/// `q`, `k`, `v` of `[2, 3, 8, 4]` in `[-2, 2)` and `n = 3`: the arguments
/// of the attention programs below.
fn attention_args() -> [Tensor; 4] {
    let t = |seed: u32| {
        let xs: Vec<f32> = (0..2 * 3 * 8 * 4)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        Tensor::from_vec(&[2, 3, 8, 4], xs).unwrap()
    };
    [t(1), t(2), t(3), Tensor::scalar(3i32)]
}

/// The shield hides a splat constant or a broadcast as its scalar (its
/// operand) behind `stablehlo.optimization_barrier`, broadcast after the
/// barrier: a barrier of the whole tensor is hoisted out of a `while` by
/// XLA and the broadcast materialised and read in every iteration
/// (`docs/performance.md`, causal attention). The program (causal attention
/// with a softmax, chained through a loop) still agrees with the interpreter.
#[test]
fn barriers_hide_scalars_not_broadcasts() {
    let src = r#"
fn attention(q: f32[2, 3, 8, 4], k: f32[2, 3, 8, 4], v: f32[2, 3, 8, 4]) -> f32[2, 3, 8, 4] {
    let s = einsum("bhqe,bhke->bhqk", q, k) * rsqrt(4.0) + 0.5;
    let pos = iota(i32, 8);
    let causal = reshape(pos, [8, 1]) >= pos;
    einsum("bhqk,bhke->bhqe", softmax(where(causal, s, -inf)), v) / 3.0
}

fn main(q: f32[2, 3, 8, 4], k: f32[2, 3, 8, 4], v: f32[2, 3, 8, 4], n: i32) -> f32[2, 3, 8, 4] {
    fori_loop(0, n, |_, q| attention(q, k, v), q)
}
"#;
    let m = loopvm_frontend::compile(src, "attention.lb").unwrap();
    let args = attention_args();
    check(&m, &args, "attention");
    let text = emit_for(&m, m.main.unwrap(), &args, &EmitOptions::default()).unwrap();
    // Names of the values that are a whole tensor spread from a scalar or
    // a smaller operand: non-scalar constants and broadcasts.
    let mut spread = std::collections::HashSet::new();
    let mut barriers = 0;
    for line in text.lines().map(str::trim) {
        let Some((name, rhs)) = line.split_once(" = ") else { continue };
        let non_scalar = !rhs.ends_with(": tensor<f32>") && !rhs.ends_with(": tensor<i32>");
        if rhs.starts_with("stablehlo.broadcast_in_dim") || (rhs.starts_with("stablehlo.constant") && non_scalar) {
            spread.insert(name.to_string());
        }
        if let Some(operand) = rhs.strip_prefix("stablehlo.optimization_barrier ") {
            barriers += 1;
            let operand = operand.split_whitespace().next().unwrap();
            assert!(!spread.contains(operand), "a barrier of a broadcast tensor: {line}\n{text}");
        }
    }
    assert!(barriers > 0, "the shield put no barrier in:\n{text}");
}

/// A product's hidden `+ 0` (which makes XLA's -0 the interpreter's +0) is
/// put off to where a consumer needs it (`jit/src/hlo/emit/loose.rs`):
/// attention's output, the next pass's queries, is a product read by a
/// product in the loop, so the loop returns the `dot_general` itself and
/// the `+ 0` comes once after the loop, not as a pass over the output in
/// every iteration. The program agrees with the interpreter, and a -0
/// made in the loop does not reach a result (`1 / x` after the loop).
#[test]
fn product_carried_through_loop_is_settled_after_it() {
    let src = r#"
fn attention(q: f32[2, 3, 8, 4], k: f32[2, 3, 8, 4], v: f32[2, 3, 8, 4]) -> f32[2, 3, 8, 4] {
    let s = einsum("bhqe,bhke->bhqk", q, k) * rsqrt(4.0);
    let pos = iota(i32, 8);
    let causal = reshape(pos, [8, 1]) >= pos;
    einsum("bhqk,bhke->bhqe", softmax(where(causal, s, -inf)), v)
}

fn main(q: f32[2, 3, 8, 4], k: f32[2, 3, 8, 4], v: f32[2, 3, 8, 4], n: i32) -> (f32[2, 3, 8, 4], f32[1, 1]) {
    let z = fori_loop(0, n, |_, c| c @ [[(-38.25f32)]], zeros(f32, [1, 1]));
    (fori_loop(0, n, |_, q| attention(q, k, v), q), 1.0 / z)
}
"#;
    let m = loopvm_frontend::compile(src, "attention.lb").unwrap();
    let args = attention_args();
    check(&m, &args, "attention");
    // (The comparison takes -0 for +0: the infinity tells.)
    let got = with_backend(&m, &args, XlaMode::Functions).0.unwrap();
    assert_eq!(got[1].as_slice::<f32>().unwrap(), &[f32::INFINITY], "1 / a product of +0 is +inf");
    let text = emit_for(&m, m.main.unwrap(), &args, &EmitOptions::default()).unwrap();
    let dots: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.trim().split_once(" = "))
        .filter(|(_, rhs)| rhs.starts_with("stablehlo.dot_general"))
        .map(|(name, _)| name)
        .collect();
    // The loops' bodies return their products as they are.
    let mut in_body = false;
    let mut returned = 0;
    for line in text.lines().map(str::trim) {
        if line == "} do {" {
            in_body = true;
        } else if line == "}" {
            in_body = false;
        } else if let Some(ops) = line.strip_prefix("stablehlo.return ").filter(|_| in_body) {
            let ops = ops.split(" : ").next().unwrap();
            returned += ops.split(", ").filter(|o| dots.contains(o)).count();
        }
    }
    assert_eq!(returned, 2, "each loop should return its product unsettled:\n{text}");
}

// ------------------------------------------------------------ timings

/// The rolled RNN scan agrees with the interpreter and its module is the
/// same for every N apart from the shapes and the bound.
#[test]
fn rnn_scan_is_rolled() {
    let m = loopvm_frontend::compile(RNN, "rnn.lb").unwrap();
    let main = m.main.unwrap();
    check(&m, &rnn_args(7), "rnn");
    let e = hlo::param_types(&m, main).unwrap_err();
    assert!(e.message.contains("f32[N, 1, 128]"), "{e}");
    assert_eq!(hlo::param_types(&collatz(), FuncId(0)).unwrap(), vec![(DType::I32, vec![])]);
    let t10 = emit_for(&m, main, &rnn_args(10), &EmitOptions::default()).unwrap();
    let t1k = emit_for(&m, main, &rnn_args(1000), &EmitOptions::default()).unwrap();
    assert_eq!(t10.matches("stablehlo.while").count(), 1);
    assert_eq!(t10.lines().count(), t1k.lines().count());
}

/// Compile and run times of the RNN scan against N, rolled and unrolled
/// (`cargo test -p loopvm-jit --release --test xla_tier rnn_timings -- --ignored --nocapture`).
#[test]
#[ignore]
fn rnn_timings() {
    use std::time::Instant;
    let m = loopvm_frontend::compile(RNN, "rnn.lb").unwrap();
    let main = m.main.unwrap();
    let mut rolled = vec![];
    for n in [10usize, 100, 1000, 10000] {
        let args = rnn_args(n);
        let mut b = XlaBackend::new(client(), XlaMode::Functions);
        let text = emit_for(&m, main, &args, &EmitOptions::default()).unwrap();
        // Best of three compiles (the first of all also warms XLA up).
        let mut best = f64::MAX;
        let mut exe = None;
        for _ in 0..3 {
            let t = Instant::now();
            exe = Some(b.compile_text(&text).unwrap());
            best = best.min(t.elapsed().as_secs_f64());
        }
        let exe = exe.unwrap();
        let bufs: Vec<_> = args.iter().map(|a| client().buffer_from_tensor(a).unwrap()).collect();
        let refs: Vec<_> = bufs.iter().collect();
        exe.execute(&refs).unwrap();
        let reps = if n <= 100 { 50 } else { 5 };
        let t = Instant::now();
        for _ in 0..reps {
            exe.execute(&refs).unwrap();
        }
        let run = t.elapsed().as_secs_f64() / reps as f64;
        let got = exe.execute(&refs).unwrap()[0].to_tensor().unwrap();
        let want = interp(&m, &args).unwrap();
        assert_same(&want, &[got], &format!("rnn n = {n}"));
        eprintln!(
            "[rnn rolled] N = {n:>5}: compile {:.1} ms, run {:.3} ms ({:.2} us/step), text {} lines",
            best * 1e3,
            run * 1e3,
            run * 1e6 / n as f64,
            text.lines().count()
        );
        rolled.push(best);
    }
    for n in [10usize, 100, 1000] {
        let args = rnn_args(n);
        let text = emit_for(&m, main, &args, &EmitOptions { unroll_all: true, ..Default::default() }).unwrap();
        let mut b = XlaBackend::new(client(), XlaMode::Functions);
        let t = Instant::now();
        b.compile_text(&text).unwrap();
        eprintln!(
            "[rnn unrolled] N = {n:>5}: compile {:.1} ms, text {} lines",
            t.elapsed().as_secs_f64() * 1e3,
            text.lines().count()
        );
    }
    assert!(rolled[3] < rolled[0] * 2.0 + 0.05, "rolled compile time grows with N: {rolled:?}");
}

/// Deeply nested loops lower (or are declined) without exhausting the stack.
#[test]
fn deep_nesting_does_not_crash() {
    fn nest(f: &mut Fb, b: BlockId, depth: usize, acc: Reg) -> Reg {
        let z = f.konst(b, Tensor::scalar(0i32));
        let two = f.konst(b, Tensor::scalar(2i32));
        f.fori(b, z, two, &[acc], |f, bb, i, c| {
            let s = f.bin(bb, BinaryOp::Add, c[0], i);
            if depth == 0 {
                vec![s]
            } else {
                vec![nest(f, bb, depth - 1, s)]
            }
        })[0]
    }
    for depth in [20, 250] {
        let mut f = Fb::new(&[]);
        let z = f.konst(ENTRY, Tensor::scalar(0i32));
        let r = nest(&mut f, ENTRY, depth, z);
        let m = f.module(vec![r]);
        verify(&m).unwrap();
        let r = hlo::emit_function(&m, FuncId(0), &[], &EmitOptions::default());
        let text = r.unwrap();
        assert_eq!(text.matches("stablehlo.while").count(), depth + 1);
    }
}

/// Unchanged arguments and results of earlier executions are not copied to
/// the device again.
#[test]
fn resident_buffers_skip_uploads() {
    let m = fori_tanh(None);
    let mut b = XlaBackend::new(client(), XlaMode::Functions);
    let n = Tensor::scalar(3i32);
    {
        let mut it = Interpreter::new(&m, RunOptions::default());
        it.set_backend(&mut b);
        for _ in 0..4 {
            it.call(FuncId(0), std::slice::from_ref(&n)).unwrap();
        }
    }
    assert_eq!(b.stats.uploads, 1);
    assert_eq!(b.stats.uploads_skipped, 3);
    b.set_resident_limit(0);
    let mut it = Interpreter::new(&m, RunOptions::default());
    it.set_backend(&mut b);
    let r = it.call(FuncId(0), std::slice::from_ref(&n)).unwrap();
    assert_eq!(r.len(), 1);
}

/// Cost of one call of a compiled region, transfers included
/// (`cargo test -p loopvm-jit --release --test xla_tier call_overhead -- --ignored --nocapture`).
#[test]
#[ignore]
fn call_overhead() {
    use std::time::Instant;
    let m = fori_tanh(None);
    let mut b = XlaBackend::new(client(), XlaMode::Functions);
    let n = Tensor::scalar(0i32);
    let reps = 2000;
    let mut it = Interpreter::new(&m, RunOptions::default());
    it.set_backend(&mut b);
    it.call(FuncId(0), std::slice::from_ref(&n)).unwrap();
    let t = Instant::now();
    for _ in 0..reps {
        it.call(FuncId(0), std::slice::from_ref(&n)).unwrap();
    }
    eprintln!("[overhead] one call of a compiled function (0 iterations): {:?}", t.elapsed() / reps);
    let exe =
        client().compile(&emit_for(&m, FuncId(0), std::slice::from_ref(&n), &EmitOptions::default()).unwrap()).unwrap();
    let nb = client().buffer_from_tensor(&n).unwrap();
    let t = Instant::now();
    for _ in 0..reps {
        exe.execute(&[&nb]).unwrap();
    }
    eprintln!("[overhead] bare PJRT execute of the same: {:?}", t.elapsed() / reps);
}

// ------------------------------------------------------------------ limits

/// Runs `main` with `opts` and a back end in `mode`.
fn limited(m: &Module, args: &[Tensor], mode: XlaMode, opts: RunOptions) -> (Result<Vec<Tensor>, String>, XlaBackend) {
    let mut b = XlaBackend::new(client(), mode);
    let r = {
        let mut it = Interpreter::new(m, opts);
        it.set_backend(&mut b);
        it.call(m.main.expect("main"), args).map_err(|e| e.to_string())
    };
    (r, b)
}

#[test]
fn metered_executables_count_steps_and_stop_runaway_loops() {
    let steps = |n: u64| RunOptions { max_steps: Some(n), ..RunOptions::default() };
    // Nested loops and an `if` holding a loop: 20 outer iterations, 10 inner
    // ones in the even ones, 120 steps in all (a fori_loop, a while_loop and
    // a scan each).
    let srcs = [
        "fn main() -> i32 { fori_loop(0, 20, |i, a| if i % 2 == 0 { fori_loop(0, 10, |j, b| b + j, a) } else { a + 1 }, 0) }",
        "fn main() -> i32 { let (i, a) = while_loop(|(i, a)| i < 20, |(i, a)| (i + 1, if i % 2 == 0 { while_loop(|b| b % 100 < 10, |b| b + 1, a * 100) / 100 } else { a + 1 }), (0, 0)); a }",
        "fn main() -> i32 { let (c, ys) = scan(|c, x| (if x % 2 == 0 { let (d, zs) = scan(|d, y| (d + 1, y), c, zeros(i32, [10])); d } else { c + 1 }, c), 0, iota(i32, 20)); c + sum(ys) - sum(ys) }",
    ];
    for src in srcs {
        let m = loopvm_frontend::compile(src, "metered.lb").unwrap();
        let want = interp(&m, &[]).unwrap();
        for mode in [XlaMode::FunctionsAndLoops, XlaMode::Loops] {
            let (ok, b) = limited(&m, &[], mode, steps(120));
            assert_same(&want, &ok.unwrap(), src);
            assert_eq!(b.stats.executions, 1, "{src}: {}", b.stats.report());
            let (e, b) = limited(&m, &[], mode, steps(119));
            assert!(e.unwrap_err().contains("more than 119 loop iterations"), "{src}");
            assert_eq!(b.stats.executions, 1, "{src}: ran on XLA: {}", b.stats.report());
        }
    }
    // A metered module takes the fuel and returns what is left.
    let m = loopvm_frontend::compile(srcs[0], "metered.lb").unwrap();
    let o = EmitOptions { metered: true, ..EmitOptions::default() };
    let l = hlo::lower_function(&m, m.main.unwrap(), &[], &o).unwrap();
    assert_eq!(l.params, vec![(DType::I64, vec![])]);
    assert_eq!(l.results.last(), Some(&(DType::I64, vec![])));

    // A while_loop that never ends stops on XLA, by steps and by the clock.
    let m = loopvm_frontend::compile("fn main() -> i32 { while_loop(|i| i >= 0, |i| i + 1 - 1, 0) }", "f.lb").unwrap();
    let (e, b) = limited(&m, &[], XlaMode::FunctionsAndLoops, steps(1 << 30));
    assert!(e.unwrap_err().contains("step limit exceeded"));
    assert_eq!(b.stats.executions, 1);
    let t = RunOptions { timeout: Some(std::time::Duration::from_millis(200)), ..RunOptions::default() };
    let (e, b) = limited(&m, &[], XlaMode::FunctionsAndLoops, t);
    assert!(e.unwrap_err().contains("time limit exceeded"));
    assert!(b.stats.executions >= 1, "{}", b.stats.report());
}
