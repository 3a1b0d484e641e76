//! The generator: a type-directed random program from a seed, on a
//! deterministic PRNG.

use crate::print::{nest, val_arg, val_text};
use crate::tree::{
    is_literal, is_weak, lit, zeros_text, Block, CallArg, ElemType, Expr, ExprKind, FunctionDef, Generated, IndexArg,
    MainArg, Pattern, ProgramTree, ScalarValue, TensorType, ValueType, ALL_ELEM_TYPES, NUMERIC_ELEM_TYPES,
};
use loopvm_runtime::{Accepts, UnaryOp};

/// SplitMix64: small, fast, and deterministic across platforms.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo) as u64 + 1)) as i64
    }
    /// `true` with probability `pct` percent.
    pub(crate) fn chance(&mut self, pct: u32) -> bool {
        self.next_u64() % 100 < u64::from(pct)
    }
    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    /// An index into `weights`, chosen with those weights.
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = (self.next_u64() % u64::from(total.max(1))) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Generates the program with seed `seed`; `size` is its rough number of
/// expression nodes. Nothing is steered around: every construct the
/// generator knows is generated with every operand it can pick.
pub fn generate(seed: u64, size: usize) -> Generated {
    let mut g = Generator {
        rng: Rng::new(seed),
        env: Vec::new(),
        fns: Vec::new(),
        budget: size,
        next: 0,
        loop_depth: 0,
        fn_depth: 0,
        prints_left: MAX_PRINTS,
        poly: Vec::new(),
    };
    let prog = g.program();
    Generated { source: prog.render(), args: prog.arg_texts(), prog }
}

#[derive(Clone, Debug)]
pub(crate) struct Binding {
    pub(crate) name: String,
    pub(crate) tt: TensorType,
    pub(crate) exact: bool,
}

pub(crate) struct Generator {
    pub(crate) rng: Rng,
    pub(crate) env: Vec<Binding>,
    pub(crate) fns: Vec<FunctionDef>,
    pub(crate) budget: usize,
    pub(crate) next: usize,
    pub(crate) loop_depth: u32,
    pub(crate) fn_depth: u32,
    /// The prints a program may still get (at most [`MAX_PRINTS`]; the
    /// tiers must print the same lines in the same order, side by side
    /// too); 0 where a print is not allowed.
    pub(crate) prints_left: u32,
    /// main's parameters typed with shape variables (name, type, the
    /// variables): outside [`Generator::env`], since their static type is
    /// unknown to the checker; [`Generator::shape_op`] reshapes them to a
    /// static shape, often through a reshape across the variables.
    pub(crate) poly: Vec<(String, TensorType, Vec<String>)>,
}

/// Most prints generated in one program.
pub(crate) const MAX_PRINTS: u32 = 3;
/// Deepest loop nesting generated.
pub(crate) const MAX_LOOP_DEPTH: u32 = 3;
/// Deepest chain of generated function calls.
pub(crate) const MAX_FN_DEPTH: u32 = 2;

impl Generator {
    pub(crate) fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    pub(crate) fn rand_dims(&mut self, max_rank: usize) -> Vec<usize> {
        let rank = self.rng.weighted(&[4, 4, 3, 1][..=max_rank.min(3)]);
        (0..rank).map(|_| self.rng.pick(&[1, 2, 2, 3, 3, 4])).collect()
    }

    pub(crate) fn rand_tt(&mut self) -> TensorType {
        let dt = self.rng.pick(&[
            ElemType::Bool,
            ElemType::I32,
            ElemType::I32,
            ElemType::I64,
            ElemType::F32,
            ElemType::F32,
            ElemType::F64,
            ElemType::U32,
            ElemType::U8,
            ElemType::BF16,
            ElemType::F16,
        ]);
        let dims = self.rand_dims(2);
        TensorType { dt, dims }
    }

    pub(crate) fn scalar_val(&mut self, dt: ElemType) -> ScalarValue {
        let edge = self.rng.chance(40);
        match dt {
            ElemType::Bool => ScalarValue::Bool(self.rng.chance(50)),
            ElemType::I32 | ElemType::I64 => {
                let v = if edge {
                    let mut e = vec![0, -1, 1, i64::from(i32::MIN), i64::from(i32::MAX), i64::from(i32::MIN) + 1, 2];
                    if dt == ElemType::I64 {
                        e.extend([i64::MIN, i64::MAX, i64::from(i32::MAX) + 1]);
                    }
                    self.rng.pick(&e)
                } else if self.rng.chance(80) {
                    self.rng.range(-10, 10)
                } else {
                    self.rng.range(-100_000, 100_000)
                };
                ScalarValue::Int(v)
            }
            ElemType::U32 => {
                let v = if edge {
                    self.rng.pick(&[0, 1, 2, 31, 32, 33, 0x7fff_ffff, 0x8000_0000, i64::from(u32::MAX)])
                } else if self.rng.chance(80) {
                    self.rng.range(0, 20)
                } else {
                    self.rng.range(0, 4_000_000_000)
                };
                ScalarValue::Int(v)
            }
            ElemType::U8 => {
                let v = if edge { self.rng.pick(&[0, 1, 2, 7, 8, 9, 127, 128, 255]) } else { self.rng.range(0, 255) };
                ScalarValue::Int(v)
            }
            ElemType::F32 | ElemType::F64 => {
                let v = if edge {
                    let (max, tiny, sub) = if dt == ElemType::F32 {
                        (f64::from(f32::MAX), f64::from(f32::MIN_POSITIVE), 1e-40)
                    } else {
                        (f64::MAX, f64::MIN_POSITIVE, 5e-324)
                    };
                    self.rng.pick(&[
                        0.0,
                        -0.0,
                        1.0,
                        -1.0,
                        f64::NAN,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        max,
                        -max,
                        tiny,
                        sub,
                        1e30,
                        0.5,
                    ])
                } else {
                    self.rng.range(-400, 400) as f64 / 8.0
                };
                ScalarValue::Float(if dt == ElemType::F32 { f64::from(v as f32) } else { v })
            }
            ElemType::BF16 | ElemType::F16 => {
                // Edge values of the type (its largest finite value, its
                // smallest normal, a subnormal), rounded to it.
                let round = |v: f64| match dt {
                    ElemType::BF16 => loopvm_runtime::bf16::from_f64(v).to_f64(),
                    _ => loopvm_runtime::f16::from_f64(v).to_f64(),
                };
                let v = if edge {
                    let (max, tiny, sub, big) = if dt == ElemType::BF16 {
                        (loopvm_runtime::bf16::MAX.to_f64(), loopvm_runtime::bf16::MIN_POSITIVE.to_f64(), 1e-40, 1e30)
                    } else {
                        (65504.0, loopvm_runtime::f16::MIN_POSITIVE.to_f64(), 1e-7, 3e4)
                    };
                    let e =
                        [0.0, -0.0, 1.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, max, -max, tiny, sub, big];
                    self.rng.pick(&e)
                } else {
                    self.rng.range(-400, 400) as f64 / 8.0
                };
                ScalarValue::Float(round(v))
            }
        }
    }

    /// A literal of `tt`: a scalar, a list, or `full`/`zeros`/`ones`.
    pub(crate) fn literal(&mut self, tt: &TensorType) -> Expr {
        if tt.dims.is_empty() {
            let v = self.scalar_val(tt.dt);
            return lit(val_text(v, tt.dt), tt.clone());
        }
        if tt.numel() > 12 || self.rng.chance(25) {
            let text = match self.rng.below(3) {
                0 => format!("zeros({}, {})", tt.dt.name(), tt.dims_text()),
                1 => format!("ones({}, {})", tt.dt.name(), tt.dims_text()),
                _ => {
                    let v = self.scalar_val(tt.dt);
                    format!("full({}, {}, {})", tt.dt.name(), tt.dims_text(), val_text(v, tt.dt))
                }
            };
            return lit(text, tt.clone());
        }
        let dt = tt.dt;
        let text = nest(&tt.dims, &mut || {
            let v = self.scalar_val(dt);
            val_text(v, dt)
        });
        lit(text, tt.clone())
    }

    /// An untyped ("weak") scalar literal that fits `dt`.
    pub(crate) fn weak(&mut self, dt: ElemType) -> Option<Expr> {
        let text = match dt {
            ElemType::Bool => return None,
            ElemType::I32 | ElemType::I64 => self.rng.pick(&["0", "1", "2", "(-1)", "3", "7", "(-5)"]).to_string(),
            ElemType::U32 | ElemType::U8 => self.rng.pick(&["0", "1", "2", "3", "7", "31"]).to_string(),
            ElemType::F32 | ElemType::F64 | ElemType::BF16 | ElemType::F16 => {
                self.rng.pick(&["0.0", "1", "0.5", "(-2.5)", "2", "(-0.0)", "1e3"]).to_string()
            }
        };
        Some(Expr {
            kind: ExprKind::Literal { text, simple: false, weak: true },
            ty: ValueType::Tensor(TensorType::scalar(dt)),
        })
    }

    pub(crate) fn var_of(&mut self, tt: &TensorType, exact: bool) -> Option<Expr> {
        let c: Vec<usize> = (0..self.env.len())
            .filter(|&i| self.env[i].tt == *tt && (self.env[i].exact || !exact || !tt.dt.is_float()))
            .collect();
        if c.is_empty() {
            return None;
        }
        // Prefer recent bindings (loop carries, the last lets).
        let i = if self.rng.chance(50) {
            c[c.len() - 1 - self.rng.below(c.len().min(3))]
        } else {
            c[self.rng.below(c.len())]
        };
        Some(Expr { kind: ExprKind::Variable(self.env[i].name.clone()), ty: ValueType::Tensor(tt.clone()) })
    }

    pub(crate) fn leaf(&mut self, tt: &TensorType, exact: bool) -> Expr {
        if !tt.dims.is_empty()
            && self.poly.iter().any(|p| p.1.dt == tt.dt && p.1.numel() == tt.numel())
            && self.rng.chance(40)
        {
            if let Some(e) = self.poly_reshape(tt) {
                return e;
            }
        }
        if self.rng.chance(70) {
            if let Some(v) = self.var_of(tt, exact) {
                return v;
            }
        }
        if !tt.dims.is_empty() && self.rng.chance(30) {
            // A variable broadcast up to the shape.
            let src = TensorType { dt: tt.dt, dims: self.bcast_src(&tt.dims) };
            if src != *tt {
                if let Some(v) = self.var_of(&src, exact) {
                    return call("broadcast", vec![CallArg::Expr(v), CallArg::Raw(tt.dims_text())], tt);
                }
            }
        }
        self.literal(tt)
    }

    /// A shape that broadcasts to `dims`.
    pub(crate) fn bcast_src(&mut self, dims: &[usize]) -> Vec<usize> {
        let drop = self.rng.below(dims.len() + 1);
        dims[drop..].iter().map(|&d| if self.rng.chance(30) { 1 } else { d }).collect()
    }

    /// An expression of a type that broadcasts to `dt[dims]`.
    pub(crate) fn expr_bc(&mut self, dt: ElemType, dims: &[usize], d: u32, exact: bool) -> Expr {
        let dims = self.bcast_src(dims);
        self.expr(&TensorType { dt, dims }, d, exact)
    }

    /// An expression of type `tt`.
    pub(crate) fn expr(&mut self, tt: &TensorType, depth: u32, exact: bool) -> Expr {
        if depth == 0 || self.budget == 0 {
            return self.leaf(tt, exact);
        }
        self.budget -= 1;
        let d = depth - 1;
        let num = tt.dt != ElemType::Bool;
        let fl = tt.dt.is_float();
        let loops = if self.loop_depth < MAX_LOOP_DEPTH { 3 } else { 0 };
        // Weights of the productions below, by index.
        let int = tt.dt.is_int();
        let w: [u32; 31] = [
            4,                                                // 0 leaf
            if num { 6 } else { 0 },                          // 1 arithmetic
            if num { 1 } else { 2 },                          // 2 negation / not
            if num { 1 } else { 0 },                          // 3 abs, relu
            if fl && !exact { 2 } else { 0 },                 // 4 transcendental
            if num { 2 } else { 0 },                          // 5 maximum, minimum
            2,                                                // 6 where
            2,                                                // 7 cast
            2,                                                // 8 reduction
            4,                                                // 9 indexing
            2,                                                // 10 .at[]
            2,                                                // 11 if
            2,                                                // 12 block
            if self.fn_depth < MAX_FN_DEPTH { 2 } else { 0 }, // 13 call
            loops,                                            // 14 fori
            loops,                                            // 15 while
            loops,                                            // 16 scan
            if num { 1 } else { 0 },                          // 17 matmul
            2,                                                // 18 shape ops
            if num { 0 } else { 6 },                          // 19 comparison
            if num { 0 } else { 3 },                          // 20 logic
            1,                                                // 21 builders: iota, full, shape
            if fl && !exact { 3 } else { 0 },                 // 22 float chains on edge values
            if fl && !exact { 2 } else { 0 },                 // 23 softmax, logsumexp, gelu
            1,                                                // 24 stop_gradient
            if tt.dt == ElemType::I64 { 0 } else { 1 },       // 25 random draws
            if num { 1 } else { 0 },                          // 26 einsum
            2,                                                // 27 gathers, windows, cumsum
            if int {
                4
            } else if num {
                0
            } else {
                2
            }, // 28 bit ops: & | ^ << >> ~
            if num { 1 } else { 0 },                          // 29 bitcast
            if tt.dims.is_empty() { 0 } else { loops },       // 30 vmap
        ];
        for _ in 0..16 {
            let e = match self.rng.weighted(&w) {
                0 => Some(self.leaf(tt, exact)),
                1 => self.arith(tt, d, exact),
                2 => {
                    let a = self.expr(tt, d, exact);
                    if tt.dt.is_unsigned() && is_literal(&a) {
                        // `-(2u32)` is the literal -2, which u32 does not hold.
                        continue;
                    }
                    Some(Expr {
                        kind: ExprKind::Unary(if num { "-" } else { "!" }, Box::new(a)),
                        ty: ValueType::Tensor(tt.clone()),
                    })
                }
                3 => {
                    let a = self.expr(tt, d, exact);
                    Some(call(if self.rng.chance(50) { "abs" } else { "relu" }, vec![CallArg::Expr(a)], tt))
                }
                4 => {
                    // Every float-only unary op of the op table.
                    let fs: Vec<&'static str> =
                        UnaryOp::ALL.iter().filter(|op| op.accepts() == Accepts::Float).map(|op| op.as_str()).collect();
                    let f = self.rng.pick(&fs);
                    let a = self.expr(tt, d, exact);
                    Some(call(f, vec![CallArg::Expr(a)], tt))
                }
                5 => {
                    let a = self.expr(tt, d, exact);
                    let b = self.expr_bc(tt.dt, &tt.dims, d, exact);
                    let (a, b) = if self.rng.chance(50) { (a, b) } else { (b, a) };
                    Some(call(
                        if self.rng.chance(50) { "maximum" } else { "minimum" },
                        vec![CallArg::Expr(a), CallArg::Expr(b)],
                        tt,
                    ))
                }
                6 => {
                    let c = self.expr_bc(ElemType::Bool, &tt.dims, d, true);
                    let a = self.expr(tt, d, exact);
                    let b = self.expr_bc(tt.dt, &tt.dims, d, exact);
                    let (a, b) = if self.rng.chance(50) { (a, b) } else { (b, a) };
                    Some(call("where", vec![CallArg::Expr(c), CallArg::Expr(a), CallArg::Expr(b)], tt))
                }
                7 => {
                    let from = self.rng.pick(&ALL_ELEM_TYPES);
                    if from == tt.dt {
                        None
                    } else {
                        let a = self.expr(&TensorType { dt: from, dims: tt.dims.clone() }, d, exact || !fl);
                        Some(Expr { kind: ExprKind::Cast(Box::new(a), tt.dt), ty: ValueType::Tensor(tt.clone()) })
                    }
                }
                8 => self.reduction(tt, d, exact),
                9 => self.index(tt, d, exact),
                10 => self.at(tt, d, exact),
                11 => {
                    let c = self.expr(&TensorType::scalar(ElemType::Bool), d, true);
                    let a = self.block(tt, d, exact, 1);
                    let b = self.block(tt, d, exact, 1);
                    Some(Expr {
                        kind: ExprKind::If(Box::new(c), Box::new(a), Box::new(b)),
                        ty: ValueType::Tensor(tt.clone()),
                    })
                }
                12 => {
                    let b = self.block(tt, d, exact, 3);
                    Some(Expr { kind: ExprKind::Block(Box::new(b)), ty: ValueType::Tensor(tt.clone()) })
                }
                13 => Some(self.fn_call(tt, d, exact)),
                14 => Some(self.fori(tt, d, exact)),
                15 => Some(self.while_(tt, d, exact)),
                16 => Some(self.scan(tt, d, exact)),
                17 => self.matmul(tt, d, exact),
                18 => self.shape_op(tt, d, exact),
                19 => Some(self.comparison(tt, d)),
                20 => {
                    let a = self.expr(tt, d, true);
                    let b = self.expr_bc(ElemType::Bool, &tt.dims, d, true);
                    let op = if self.rng.chance(50) { "&&" } else { "||" };
                    Some(bin(op, a, b, tt))
                }
                21 => self.builder(tt, d, exact),
                22 => Some(self.float_chain(tt, d)),
                23 => self.nn(tt, d),
                24 => {
                    let a = self.expr(tt, d, exact);
                    Some(call("stop_gradient", vec![CallArg::Expr(a)], tt))
                }
                25 => self.random(tt, d),
                26 => self.einsum(tt, d, exact),
                27 => self.gather(tt, d, exact),
                28 => Some(self.bits(tt, d)),
                29 => self.bitcast(tt, d),
                _ => self.vmap(tt, d, exact),
            };
            if let Some(e) = e {
                return e;
            }
        }
        self.leaf(tt, exact)
    }

    /// A float expression of a shape XLA's simplifier likes to rewrite or
    /// LLVM to fuse (`log(a ** b)`, `exp(a) * exp(b)`, `sqrt(a * a)`,
    /// `(a / b) / c`, `a * b + c`, ...), on operands that are often edge
    /// values (0, -0, subnormals, ±huge, ±inf, NaN).
    pub(crate) fn float_chain(&mut self, tt: &TensorType, d: u32) -> Expr {
        let a = self.expr(tt, d, false);
        let mut b = self.chain_operand(tt, d, false);
        let c = self.chain_operand(tt, d, false);
        let f = |name: &str, x: Expr| call(name, vec![CallArg::Expr(x)], tt);
        match self.rng.below(13) {
            0 => f("log", bin("**", a, b, tt)),
            1 => f("log", f("exp", a)),
            2 => bin("*", f("exp", a), f("exp", b), tt),
            3 => bin("/", a, f("exp", b), tt),
            4 => bin("**", f("exp", a), b, tt),
            5 => {
                let a2 = a.clone();
                f("sqrt", bin("*", a, a2, tt))
            }
            6 => bin("/", bin("/", a, b, tt), c, tt),
            7 => bin("/", a, bin("/", b, c, tt), tt),
            8 => bin("+", bin("*", a, b, tt), c, tt),
            9 => f("log", f("sqrt", a)),
            10 => {
                let a2 = a.clone();
                bin("*", f("sqrt", a), f("sqrt", a2), tt)
            }
            // Cancellations on exact operands (an ulp of a transcendental
            // function would be amplified past any tolerance).
            11 => {
                let a = self.expr(tt, d, true);
                b = self.chain_operand(tt, d, true);
                let b2 = b.clone();
                bin("-", bin("+", a, b, tt), b2, tt)
            }
            _ => {
                let a = self.expr(tt, d, true);
                b = self.chain_operand(tt, d, true);
                let (a2, b2) = (a.clone(), b.clone());
                bin("-", bin("*", a, b, tt), bin("*", a2, b2, tt), tt)
            }
        }
    }

    /// An operand of a float chain: an edge scalar, or an expression that
    /// broadcasts to `tt`.
    pub(crate) fn chain_operand(&mut self, tt: &TensorType, d: u32, exact: bool) -> Expr {
        if !self.rng.chance(40) {
            return self.expr_bc(tt.dt, &tt.dims, d, exact);
        }
        let sfx = tt.dt.name();
        // (a subnormal, the largest finite value's order, a large value)
        let (tiny, huge, big) = match tt.dt {
            ElemType::F32 => ("1e-40", "3e38", "1e30"),
            ElemType::BF16 => ("1e-40", "3e38", "1e30"),
            ElemType::F16 => ("1e-7", "65504", "3e4"),
            _ => ("5e-324", "1e308", "1e30"),
        };
        let text = match self.rng.below(11) {
            0 => format!("0.0{sfx}"),
            1 => format!("(-0.0{sfx})"),
            2 => format!("{big}{sfx}"),
            3 => format!("(-{big}{sfx})"),
            4 => format!("{huge}{sfx}"),
            5 => format!("(-{huge}{sfx})"),
            6 => format!("1e-30{sfx}"),
            7 => format!("{tiny}{sfx}"),
            8 => format!("(0.0{sfx} / 0.0{sfx})"),
            9 => format!("(1.0{sfx} / 0.0{sfx})"),
            _ => format!("(-1.0{sfx} / 0.0{sfx})"),
        };
        lit(text, TensorType::scalar(tt.dt))
    }

    pub(crate) fn arith(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        let op = self.rng.pick(&["+", "+", "-", "*", "*", "/", "%", "**"]);
        if op == "**" && tt.dt.is_float() && exact {
            return None;
        }
        // Float `%` is exact but jumps at every multiple of the divisor: an
        // operand one ulp apart (a transcendental function, a reordered sum)
        // moves the result by up to the divisor, so its operands are exact.
        let exact = exact || (op == "%" && tt.dt.is_float());
        let a = self.expr(tt, d, exact);
        let b = if self.rng.chance(20) && !matches!(a.kind, ExprKind::Literal { .. }) {
            self.weak(tt.dt)?
        } else {
            self.expr_bc(tt.dt, &tt.dims, d, exact)
        };
        let weak_b = is_weak(&b);
        let (a, b) = if !weak_b && op != "**" && self.rng.chance(30) { (b, a) } else { (a, b) };
        Some(bin(op, a, b, tt))
    }

    /// A bit op of integers or bools: `& | ^ ~`, and on integers `<< >>`
    /// by amounts that are often at or past the bit width, or negative.
    pub(crate) fn bits(&mut self, tt: &TensorType, d: u32) -> Expr {
        let int = tt.dt.is_int();
        let a = self.expr(tt, d, true);
        let k = self.rng.below(if int { 6 } else { 4 });
        if k == 0 {
            return Expr { kind: ExprKind::Unary("~", Box::new(a)), ty: ValueType::Tensor(tt.clone()) };
        }
        let op = ["&", "|", "^", "<<", ">>", ">>"][k - 1];
        let b = if k >= 4 && self.rng.chance(50) {
            // An edge shift amount, weak (it takes the operand's dtype).
            let w = tt.dt.bits();
            let mut amounts =
                vec![0.to_string(), 1.to_string(), (w - 1).to_string(), w.to_string(), (w + 1).to_string()];
            if !tt.dt.is_unsigned() {
                amounts.push("(-1)".into());
            }
            let text = self.rng.pick(&amounts.iter().map(String::as_str).collect::<Vec<_>>()).to_string();
            Expr {
                kind: ExprKind::Literal { text, simple: false, weak: true },
                ty: ValueType::Tensor(TensorType::scalar(tt.dt)),
            }
        } else {
            self.expr_bc(tt.dt, &tt.dims, d, true)
        };
        let (a, b) = if k < 4 && self.rng.chance(30) { (b, a) } else { (a, b) };
        bin(op, a, b, tt)
    }

    /// `bitcast(x, dt)` from another dtype of the element width. Floats are
    /// never the source: the sign and payload of a NaN and the sign of a
    /// zero are not the same on every tier (`0.0 / 0.0` folded by XLA is a
    /// positive NaN, computed on x86 a negative one).
    pub(crate) fn bitcast(&mut self, tt: &TensorType, d: u32) -> Option<Expr> {
        let from = match tt.dt {
            ElemType::I32 => ElemType::U32,
            ElemType::U32 => ElemType::I32,
            ElemType::F32 => self.rng.pick(&[ElemType::I32, ElemType::U32]),
            ElemType::F64 => ElemType::I64,
            _ => return None,
        };
        let x = self.expr(&TensorType { dt: from, dims: tt.dims.clone() }, d, true);
        Some(call("bitcast", vec![CallArg::Expr(x), CallArg::Raw(tt.dt.name().to_string())], tt))
    }

    pub(crate) fn comparison(&mut self, tt: &TensorType, d: u32) -> Expr {
        let dt = self.rng.pick(&ALL_ELEM_TYPES);
        let ops: &[&'static str] =
            if dt == ElemType::Bool { &["==", "!="] } else { &["==", "!=", "<", "<=", ">", ">="] };
        let op = self.rng.pick(ops);
        let a = self.expr(&TensorType { dt, dims: tt.dims.clone() }, d, true);
        let b = match self.weak(dt) {
            Some(w) if self.rng.chance(20) && !matches!(a.kind, ExprKind::Literal { .. }) => w,
            _ => self.expr_bc(dt, &tt.dims, d, true),
        };
        bin(op, a, b, tt)
    }

    pub(crate) fn reduction(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        let fl = tt.dt.is_float();
        // (op, source dtype)
        let (op, src) = match self.rng.below(5) {
            0 if tt.dt != ElemType::Bool && (!fl || !exact) => ("sum", tt.dt),
            1 if tt.dt == ElemType::I32 => ("sum", ElemType::Bool),
            2 if tt.dt != ElemType::Bool => (if self.rng.chance(50) { "max" } else { "min" }, tt.dt),
            3 if fl && !exact => {
                let src = match tt.dt {
                    ElemType::F32 => self.rng.pick(&[ElemType::F32, ElemType::I32, ElemType::Bool, ElemType::I64]),
                    ElemType::F64 => ElemType::F64,
                    // The mean of a half float is of its type.
                    half => half,
                };
                ("mean", src)
            }
            4 if tt.dt == ElemType::I32 => ("argmax", self.rng.pick(&NUMERIC_ELEM_TYPES)),
            _ => return None,
        };
        if tt.dims.contains(&1) && op != "argmax" && self.rng.chance(20) {
            // `keepdims: true`: the reduced axis stays as size 1.
            let ones: Vec<usize> = (0..tt.dims.len()).filter(|&k| tt.dims[k] == 1).collect();
            let k = self.rng.pick(&ones);
            let mut dims = tt.dims.clone();
            dims[k] = self.rng.pick(&[1, 2, 3, 4]);
            let x = self.expr(&TensorType { dt: src, dims }, d, true);
            Some(call(op, vec![CallArg::Expr(x), CallArg::Raw(format!("axis: {k}, keepdims: true"))], tt))
        } else if tt.dims.len() < 3 && (!tt.dims.is_empty() || self.rng.chance(50)) {
            let k = self.rng.below(tt.dims.len() + 1);
            let n = self.rng.pick(&[1, 2, 3, 4]);
            let mut dims = tt.dims.clone();
            dims.insert(k, n);
            let rank = dims.len() as i64;
            let x = self.expr(&TensorType { dt: src, dims }, d, true);
            let axis = if self.rng.chance(25) { k as i64 - rank } else { k as i64 };
            Some(call(op, vec![CallArg::Expr(x), CallArg::Raw(format!("axis: {axis}"))], tt))
        } else if tt.dims.is_empty() {
            let dims = self.rand_dims(2).into_iter().collect::<Vec<_>>();
            let x = self.expr(&TensorType { dt: src, dims }, d, true);
            Some(call(op, vec![CallArg::Expr(x)], tt))
        } else {
            None
        }
    }

    /// An integer scalar index: in range, out of range, negative, extreme.
    pub(crate) fn index_expr(&mut self, d: u32) -> Expr {
        let dt =
            self.rng.pick(&[ElemType::I32, ElemType::I32, ElemType::I32, ElemType::I32, ElemType::I64, ElemType::U32]);
        let e = self.expr(&TensorType::scalar(dt), d.min(2), true);
        if is_literal(&e) {
            // A (negated) literal would be a static index, range-checked at compile time.
            let t = TensorType::scalar(dt);
            return bin("+", e, lit(zeros_text(&t), t.clone()), &t);
        }
        e
    }

    pub(crate) fn index(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        let r = tt.dims.len();
        let n = self.rng.pick(&[1, 2, 3, 4]);
        let (src, ix): (Vec<usize>, Vec<IndexArg>) = match self.rng.below(6) {
            0 if r < 3 => {
                let k = self.rng.range(-(n as i64), n as i64 - 1);
                ([&[n][..], &tt.dims].concat(), vec![IndexArg::Raw(k.to_string())])
            }
            1 if r < 3 => ([&[n][..], &tt.dims].concat(), vec![IndexArg::Dynamic(self.index_expr(d))]),
            2 if r < 2 => {
                let m = self.rng.pick(&[1, 2, 3]);
                let second = if self.rng.chance(50) {
                    IndexArg::Dynamic(self.index_expr(d))
                } else {
                    IndexArg::Raw(self.rng.range(-(m as i64), m as i64 - 1).to_string())
                };
                ([&[n, m][..], &tt.dims].concat(), vec![IndexArg::Dynamic(self.index_expr(d)), second])
            }
            3 if r >= 1 => {
                let a = tt.dims[0];
                let (b, s) = match self.rng.below(4) {
                    0 => (a, "::-1".to_string()),
                    1 => {
                        let b = 2 * a - 1 + self.rng.below(2);
                        let s = self.rng.below(b - (2 * a - 1) + 1);
                        (b, format!("{s}:{}:2", s + 2 * a - 1))
                    }
                    2 => {
                        let b = a + self.rng.below(3);
                        let s = b - a;
                        (b, format!("{s}:"))
                    }
                    _ => {
                        let b = a + self.rng.below(3);
                        let s = self.rng.below(b - a + 1);
                        if self.rng.chance(30) {
                            (b, format!("{}:{}", s as i64 - b as i64, s + a))
                        } else {
                            (b, format!("{s}:{}", s + a))
                        }
                    }
                };
                let mut src = tt.dims.clone();
                src[0] = b;
                if r < 3 && self.rng.chance(40) {
                    // A dynamic index, then the slice.
                    ([&[n][..], &src].concat(), vec![IndexArg::Dynamic(self.index_expr(d)), IndexArg::Raw(s)])
                } else {
                    (src, vec![IndexArg::Raw(s)])
                }
            }
            4 if (1..3).contains(&r) => {
                let m = self.rng.pick(&[1, 2, 3]);
                let k = self.rng.range(-(m as i64), m as i64 - 1);
                let mut src = tt.dims.clone();
                src.insert(1, m);
                (src, vec![IndexArg::Raw(":".into()), IndexArg::Raw(k.to_string())])
            }
            _ => return None,
        };
        let x = self.expr(&TensorType { dt: tt.dt, dims: src }, d, exact);
        Some(Expr { kind: ExprKind::Index(Box::new(x), ix), ty: ValueType::Tensor(tt.clone()) })
    }

    pub(crate) fn at(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        if tt.dims.is_empty() {
            return None;
        }
        let add = tt.dt != ElemType::Bool && self.rng.chance(40);
        let base = self.expr(tt, d, exact);
        let k = 1 + self.rng.below(tt.dims.len().min(2));
        let idx: Vec<Expr> = (0..k)
            .map(|a| {
                if self.rng.chance(30) {
                    let n = tt.dims[a] as i64;
                    let v = self.rng.range(-n, n - 1);
                    lit(if v < 0 { format!("({v})") } else { v.to_string() }, TensorType::scalar(ElemType::I32))
                } else {
                    self.index_expr(d)
                }
            })
            .collect();
        let slot = &tt.dims[k..];
        let v = match self.weak(tt.dt) {
            Some(w) if self.rng.chance(20) => w,
            _ => self.expr_bc(tt.dt, slot, d, exact),
        };
        Some(Expr {
            kind: ExprKind::At { base: Box::new(base), idx, add, v: Box::new(v) },
            ty: ValueType::Tensor(tt.clone()),
        })
    }

    pub(crate) fn matmul(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        if tt.dt.is_float() && exact {
            return None;
        }
        let k = self.rng.pick(&[1, 2, 3]);
        // One batch dim of the result from an operand that lacks it (or has 1).
        let one_or_none = |g: &mut Self, b: usize, rest: Vec<usize>| -> Vec<usize> {
            if g.rng.chance(50) {
                rest
            } else {
                [if g.rng.chance(50) { 1 } else { b }].into_iter().chain(rest).collect()
            }
        };
        let (a, b) = match tt.dims[..] {
            // Batched forms with rank-1 operands: [m, n] from [m, n, k] @ [k] or [k] @ [m, k, n].
            [m, n] if self.rng.chance(25) => {
                if self.rng.chance(50) {
                    (vec![m, n, k], vec![k])
                } else {
                    (vec![k], vec![m, k, n])
                }
            }
            // [b, m, n]: equal batch dims, a batch dim on one side only or of 1.
            [b, m, n] => match self.rng.below(3) {
                0 => (vec![b, m, k], vec![b, k, n]),
                1 => (vec![b, m, k], one_or_none(self, b, vec![k, n])),
                _ => (one_or_none(self, b, vec![m, k]), vec![b, k, n]),
            },
            [] => (vec![k], vec![k]),
            [m] => {
                if self.rng.chance(50) {
                    (vec![m, k], vec![k])
                } else {
                    (vec![k], vec![k, m])
                }
            }
            [m, n] => (vec![m, k], vec![k, n]),
            _ => return None,
        };
        let a = self.expr(&TensorType { dt: tt.dt, dims: a }, d, exact);
        let b = self.expr(&TensorType { dt: tt.dt, dims: b }, d, exact);
        Some(bin("@", a, b, tt))
    }

    /// A reshape's target list for `dims`: some dims written as products
    /// (`2 * 3`) and, when no dim is 0, sometimes one as `-1` (the forms of
    /// issue 14's reshape; the generated programs' shapes are static, so
    /// the products are of integers).
    fn reshape_target(&mut self, dims: &[usize], hole_ok: bool) -> String {
        let hole = if hole_ok && dims.iter().all(|&d| d > 0) && self.rng.chance(25) {
            Some(self.rng.below(dims.len()))
        } else {
            None
        };
        let mut items = Vec::with_capacity(dims.len());
        for (i, &d) in dims.iter().enumerate() {
            if Some(i) == hole {
                items.push("-1".to_string());
                continue;
            }
            match (2..d).find(|f| d % f == 0) {
                Some(f) if self.rng.chance(25) => items.push(format!("{f} * {}", d / f)),
                _ => items.push(d.to_string()),
            }
        }
        format!("[{}]", items.join(", "))
    }

    /// `tt` from one of main's parameters typed with shape variables, of
    /// `tt`'s dtype and element count: reshaped to `tt`'s static dims (the
    /// element counts compared when it runs), often after a reshape across
    /// the variables (`[S1a * S1b]`, the variables reversed, `[-1, S1a]`:
    /// a `reshapeas` in the bytecode). Not inside a generated function,
    /// whose body sees only its own parameters.
    fn poly_reshape(&mut self, tt: &TensorType) -> Option<Expr> {
        if self.fn_depth > 0 {
            return None;
        }
        let fits: Vec<usize> = (0..self.poly.len())
            .filter(|&i| self.poly[i].1.dt == tt.dt && self.poly[i].1.numel() == tt.numel())
            .collect();
        if fits.is_empty() {
            return None;
        }
        let (name, ptt, vars) = self.poly[fits[self.rng.below(fits.len())]].clone();
        let p = Expr { kind: ExprKind::Variable(name), ty: ValueType::Tensor(ptt.clone()) };
        let mid = match self.rng.below(5) {
            0 => None,
            1 => Some(vars.join(" * ")),
            2 => Some(vars.iter().rev().cloned().collect::<Vec<_>>().join(", ")),
            3 => Some(format!("-1, {}", vars[0])),
            _ => Some(format!("{}, -1", vars.join(" * "))),
        };
        // The intermediate's static type is unknown to the generator; the
        // node's type is only used for printing and shrinking, which never
        // retype it.
        let x = match mid {
            Some(m) => call("reshape", vec![CallArg::Expr(p), CallArg::Raw(format!("[{m}]"))], &ptt),
            None => p,
        };
        // No `-1`: the quotient of a count with variables stays symbolic.
        let target = self.reshape_target(&tt.dims, false);
        Some(call("reshape", vec![CallArg::Expr(x), CallArg::Raw(target)], tt))
    }

    pub(crate) fn shape_op(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        let r = tt.dims.len();
        match self.rng.below(6) {
            5 => self.poly_reshape(tt),
            0 if r >= 1 && tt.dims[0] >= 2 => {
                let a = 1 + self.rng.below(tt.dims[0] - 1);
                let mut da = tt.dims.clone();
                da[0] = a;
                let mut db = tt.dims.clone();
                db[0] = tt.dims[0] - a;
                let x = self.expr(&TensorType { dt: tt.dt, dims: da }, d, exact);
                let y = self.expr(&TensorType { dt: tt.dt, dims: db }, d, exact);
                Some(call("concat", vec![CallArg::List(vec![x, y]), CallArg::Raw("axis: 0".into())], tt))
            }
            1 if (1..=3).contains(&r) && tt.dims[0] <= 3 => {
                let rest = TensorType { dt: tt.dt, dims: tt.dims[1..].to_vec() };
                let xs: Vec<Expr> = (0..tt.dims[0]).map(|_| self.expr(&rest, d, exact)).collect();
                Some(call("stack", vec![CallArg::List(xs)], tt))
            }
            2 if r >= 1 => {
                let n = tt.numel();
                let src = if r == 1 && n.is_multiple_of(2) && n > 2 {
                    vec![2, n / 2]
                } else if self.rng.chance(50) {
                    vec![n]
                } else {
                    vec![1, n]
                };
                let x = self.expr(&TensorType { dt: tt.dt, dims: src }, d, exact);
                let target = self.reshape_target(&tt.dims, true);
                Some(call("reshape", vec![CallArg::Expr(x), CallArg::Raw(target)], tt))
            }
            3 if r == 2 => {
                let x = self.expr(&TensorType::new(tt.dt, &[tt.dims[1], tt.dims[0]]), d, exact);
                Some(call("transpose", vec![CallArg::Expr(x)], tt))
            }
            3 if r == 3 => {
                let x = self.expr(&TensorType::new(tt.dt, &[tt.dims[2], tt.dims[0], tt.dims[1]]), d, exact);
                Some(call("transpose", vec![CallArg::Expr(x), CallArg::Raw("[1, 2, 0]".into())], tt))
            }
            4 if r >= 1 => {
                let src = self.bcast_src(&tt.dims);
                let x = self.expr(&TensorType { dt: tt.dt, dims: src }, d, exact);
                Some(call("broadcast", vec![CallArg::Expr(x), CallArg::Raw(tt.dims_text())], tt))
            }
            _ => None,
        }
    }

    pub(crate) fn builder(&mut self, tt: &TensorType, d: u32, exact: bool) -> Option<Expr> {
        match self.rng.below(3) {
            0 if tt.dims.len() == 1 && tt.dt != ElemType::Bool => {
                Some(call("iota", vec![CallArg::Raw(tt.dt.name().into()), CallArg::Raw(tt.dims[0].to_string())], tt))
            }
            1 => {
                let v = match self.weak(tt.dt) {
                    Some(w) if self.rng.chance(30) => w,
                    _ => self.expr_bc(tt.dt, &tt.dims, d, exact),
                };
                Some(call(
                    "full",
                    vec![CallArg::Raw(tt.dt.name().into()), CallArg::Raw(tt.dims_text()), CallArg::Expr(v)],
                    tt,
                ))
            }
            2 if tt.dt == ElemType::I32 && tt.dims.len() == 1 && (1..=3).contains(&tt.dims[0]) => {
                let dims: Vec<usize> = (0..tt.dims[0]).map(|_| self.rng.pick(&[1, 2, 3])).collect();
                let dt = self.rng.pick(&ALL_ELEM_TYPES);
                let x = self.expr(&TensorType { dt, dims }, d, true);
                Some(call("shape", vec![CallArg::Expr(x)], tt))
            }
            _ => None,
        }
    }

    /// `{ let ...; e }` with up to `max_lets` statements.
    pub(crate) fn block(&mut self, tt: &TensorType, d: u32, exact: bool, max_lets: usize) -> Block {
        let mark = self.env.len();
        let n = self.rng.below(max_lets + 1);
        let mut lets = Vec::new();
        for _ in 0..n {
            let t = if self.rng.chance(40) { tt.clone() } else { self.rand_tt() };
            let ex = exact || self.rng.chance(50);
            let e = self.expr(&t, d, ex);
            let name = self.fresh("v");
            lets.push((Pattern::Name(name.clone()), e));
            self.env.push(Binding { name, tt: t, exact: ex });
        }
        // `print` of an integer or bool value in scope (printed the same on
        // every tier, digit for digit), in a loop body or a branch as often
        // as not: the fuzzer compares every tier's printed lines.
        let printable: Vec<String> = self
            .env
            .iter()
            .filter(|b| matches!(b.tt.dt, ElemType::Bool | ElemType::I32 | ElemType::I64))
            .map(|b| b.name.clone())
            .collect();
        if self.prints_left > 0 && self.fn_depth == 0 && !printable.is_empty() && self.rng.chance(8) {
            self.prints_left -= 1;
            let v = self.rng.pick(&printable.iter().map(String::as_str).collect::<Vec<_>>()).to_string();
            let tt = self.env.iter().find(|b| b.name == v).map(|b| b.tt.clone()).unwrap_or_else(|| tt.clone());
            let arg = Expr { kind: ExprKind::Variable(v), ty: ValueType::Tensor(tt) };
            let p =
                Expr { kind: ExprKind::Call("print".into(), vec![CallArg::Expr(arg)]), ty: ValueType::Tuple(vec![]) };
            lets.push((Pattern::Wildcard, p));
        }
        let ret = self.expr(tt, d, exact);
        self.env.truncate(mark);
        Block { lets, ret }
    }

    pub(crate) fn fn_call(&mut self, tt: &TensorType, d: u32, exact: bool) -> Expr {
        let reuse: Vec<usize> = (0..self.fns.len())
            .filter(|&i| self.fns[i].ret == ValueType::Tensor(tt.clone()) && (self.fns[i].exact || !exact))
            .collect();
        let fi = if !reuse.is_empty() && self.rng.chance(50) {
            reuse[self.rng.below(reuse.len())]
        } else {
            // A new function; its body sees only its parameters.
            let np = 1 + self.rng.below(3);
            let params: Vec<(String, TensorType)> = (0..np)
                .map(|_| {
                    let t = if self.rng.chance(40) { tt.clone() } else { self.rand_tt() };
                    (self.fresh("p"), t)
                })
                .collect();
            let fexact = exact || self.rng.chance(50);
            let saved = std::mem::take(&mut self.env);
            let saved_loops = self.loop_depth;
            self.env = params.iter().map(|(n, t)| Binding { name: n.clone(), tt: t.clone(), exact: true }).collect();
            self.fn_depth += 1;
            let body = self.block(tt, d.max(1), fexact, 3);
            self.fn_depth -= 1;
            self.env = saved;
            self.loop_depth = saved_loops;
            let name = self.fresh("f");
            self.fns.push(FunctionDef {
                name,
                params,
                ret: ValueType::Tensor(tt.clone()),
                body: Expr { kind: ExprKind::Block(Box::new(body)), ty: ValueType::Tensor(tt.clone()) },
                exact: fexact,
            });
            self.fns.len() - 1
        };
        let f = self.fns[fi].clone();
        let args: Vec<CallArg> = f
            .params
            .iter()
            .map(|(_, t)| match self.weak(t.dt) {
                Some(w) if t.dims.is_empty() && self.rng.chance(15) => CallArg::Expr(w),
                _ => CallArg::Expr(self.expr(t, d, true)),
            })
            .collect();
        Expr { kind: ExprKind::Call(f.name, args), ty: ValueType::Tensor(tt.clone()) }
    }

    /// The carry components of a loop whose result includes `tt`: the types,
    /// their exactness, and where `tt` is.
    pub(crate) fn carry(&mut self, tt: &TensorType, exact: bool) -> (Vec<(TensorType, bool)>, usize) {
        let extra = self.rng.below(3);
        let mut comps = vec![(tt.clone(), exact)];
        for _ in 0..extra {
            let t = self.rand_tt();
            comps.push((t, self.rng.chance(50)));
        }
        let at = self.rng.below(comps.len());
        comps.swap(0, at);
        (comps, at)
    }

    /// Names for a carry: the pattern and the bound variables.
    pub(crate) fn carry_pat(&mut self, comps: &[(TensorType, bool)]) -> (Pattern, Vec<Binding>) {
        let vars: Vec<Binding> =
            comps.iter().map(|(t, e)| Binding { name: self.fresh("c"), tt: t.clone(), exact: *e }).collect();
        let pat = if vars.len() == 1 {
            Pattern::Name(vars[0].name.clone())
        } else {
            Pattern::Tuple(vars.iter().map(|v| Pattern::Name(v.name.clone())).collect())
        };
        (pat, vars)
    }

    pub(crate) fn carry_value(&mut self, comps: &[(TensorType, bool)], d: u32) -> Expr {
        let es: Vec<Expr> = comps.iter().map(|(t, e)| self.expr(t, d, *e)).collect();
        tuple_or_single(es)
    }

    /// The loop body: statements, then the new carry (and `y` for scan).
    pub(crate) fn loop_body(&mut self, comps: &[(TensorType, bool)], d: u32, y: Option<&(TensorType, bool)>) -> Block {
        let mark = self.env.len();
        let mut lets = Vec::new();
        for _ in 0..self.rng.below(3) {
            let t = self.rand_tt();
            let ex = self.rng.chance(50);
            let e = self.expr(&t, d, ex);
            let name = self.fresh("v");
            lets.push((Pattern::Name(name.clone()), e));
            self.env.push(Binding { name, tt: t, exact: ex });
        }
        let carry = self.carry_value(comps, d);
        let ret = match y {
            None => carry,
            Some((t, e)) => {
                let y = self.expr(t, d, *e);
                let ty = ValueType::Tuple(vec![carry.ty.clone(), y.ty.clone()]);
                Expr { kind: ExprKind::Tuple(vec![carry, y]), ty }
            }
        };
        self.env.truncate(mark);
        Block { lets, ret }
    }

    /// `{ let pat = loop; result }` where the result reads the loop's outputs.
    pub(crate) fn loop_result(
        &mut self,
        tt: &TensorType,
        exact: bool,
        pat: Pattern,
        vars: Vec<Binding>,
        target: &str,
        lp: Expr,
    ) -> Expr {
        let mark = self.env.len();
        self.env.extend(vars);
        let ret = if self.rng.chance(75) {
            Expr { kind: ExprKind::Variable(target.to_string()), ty: ValueType::Tensor(tt.clone()) }
        } else {
            self.expr(tt, 1, exact)
        };
        self.env.truncate(mark);
        Expr {
            kind: ExprKind::Block(Box::new(Block { lets: vec![(pat, lp)], ret })),
            ty: ValueType::Tensor(tt.clone()),
        }
    }

    pub(crate) fn fori(&mut self, tt: &TensorType, d: u32, exact: bool) -> Expr {
        let (comps, at) = self.carry(tt, exact);
        let init = self.carry_value(&comps, d);
        let bd = if self.rng.chance(70) { ElemType::I32 } else { ElemType::I64 };
        let lo_v = self.rng.pick(&[0i64, 0, 1, -2, 3]);
        let n = self.rng.pick(&[-1i64, 0, 1, 2, 3, 3, 4, 5]);
        let lo = lit(val_text(ScalarValue::Int(lo_v), bd), TensorType::scalar(bd));
        let hi_lit = lit(val_text(ScalarValue::Int(lo_v + n), bd), TensorType::scalar(bd));
        let hi = if self.rng.chance(25) {
            // A runtime bound, capped.
            let e = self.expr(&TensorType::scalar(bd), d.min(2), true);
            call("minimum", vec![CallArg::Expr(e), CallArg::Expr(hi_lit)], &TensorType::scalar(bd))
        } else {
            hi_lit
        };
        self.loop_depth += 1;
        let i = self.fresh("i");
        let mark = self.env.len();
        self.env.push(Binding { name: i.clone(), tt: TensorType::scalar(bd), exact: true });
        let (pat, vars) = self.carry_pat(&comps);
        self.env.extend(vars);
        let body = self.loop_body(&comps, d, None);
        self.env.truncate(mark);
        self.loop_depth -= 1;
        let unroll = if self.rng.chance(15) { 2 } else { 1 };
        let ty = init.ty.clone();
        let lp = Expr {
            kind: ExprKind::Fori {
                lo: Box::new(lo),
                hi: Box::new(hi),
                i,
                pat,
                body: Box::new(body),
                init: Box::new(init),
                unroll,
            },
            ty,
        };
        let (opat, ovars) = self.carry_pat(&comps);
        let target = ovars[at].name.clone();
        self.loop_result(tt, exact, opat, ovars, &target, lp)
    }

    pub(crate) fn while_(&mut self, tt: &TensorType, d: u32, exact: bool) -> Expr {
        let (mut comps, mut at) = self.carry(tt, exact);
        // The counter that bounds the loop comes first.
        comps.insert(0, (TensorType::scalar(ElemType::I32), true));
        at += 1;
        let init_rest: Vec<Expr> = comps[1..].iter().map(|(t, e)| self.expr(t, d, *e)).collect();
        let k0 = self.rng.pick(&[0i64, 0, -1, 2]);
        let mut init = vec![lit(val_text(ScalarValue::Int(k0), ElemType::I32), TensorType::scalar(ElemType::I32))];
        init.extend(init_rest);
        let init = tuple_or_single(init);
        self.loop_depth += 1;
        let mark = self.env.len();
        let (pat, vars) = self.carry_pat(&comps);
        let counter = vars[0].name.clone();
        self.env.extend(vars);
        let max_iters = if self.rng.chance(25) { Some(self.rng.pick(&[0u32, 1, 2, 4])) } else { None };
        let bound = k0 + self.rng.pick(&[0i64, 1, 2, 3, 4]);
        let cv = Expr {
            kind: ExprKind::Variable(counter.clone()),
            ty: ValueType::Tensor(TensorType::scalar(ElemType::I32)),
        };
        let mut cond = bin(
            "<",
            cv.clone(),
            lit(val_text(ScalarValue::Int(bound), ElemType::I32), TensorType::scalar(ElemType::I32)),
            &TensorType::scalar(ElemType::Bool),
        );
        if self.rng.chance(40) || max_iters.is_some() {
            // No print in a condition: XLA keeps such a loop on the host
            // (it would drop the print), and the fuzzer fails on that.
            let left = std::mem::take(&mut self.prints_left);
            let extra = self.expr(&TensorType::scalar(ElemType::Bool), d.min(2), true);
            self.prints_left = left;
            cond = if max_iters.is_some() && self.rng.chance(50) {
                extra
            } else {
                bin(if self.rng.chance(70) { "&&" } else { "||" }, cond, extra, &TensorType::scalar(ElemType::Bool))
            };
            if let ExprKind::Binary("||", ..) = cond.kind {
                if max_iters.is_none() {
                    // `||` could keep it running: keep the counter in charge.
                    cond = bin(
                        "&&",
                        cond,
                        bin(
                            "<",
                            cv.clone(),
                            lit(
                                val_text(ScalarValue::Int(bound + 2), ElemType::I32),
                                TensorType::scalar(ElemType::I32),
                            ),
                            &TensorType::scalar(ElemType::Bool),
                        ),
                        &TensorType::scalar(ElemType::Bool),
                    );
                }
            }
        }
        let mut body = self.loop_body(&comps[1..], d, None);
        // Prepend the counter's step to the new carry.
        let step = bin("+", cv, lit("1i32", TensorType::scalar(ElemType::I32)), &TensorType::scalar(ElemType::I32));
        let rest = std::mem::replace(&mut body.ret, step.clone());
        let mut items = vec![step];
        match rest.kind {
            ExprKind::Tuple(v) if comps.len() > 2 => items.extend(v),
            _ => items.push(rest),
        }
        body.ret = tuple_or_single(items);
        self.env.truncate(mark);
        self.loop_depth -= 1;
        let ty = init.ty.clone();
        let lp = Expr {
            kind: ExprKind::While { pat, cond: Box::new(cond), body: Box::new(body), init: Box::new(init), max_iters },
            ty,
        };
        let (opat, ovars) = self.carry_pat(&comps);
        let target = ovars[at].name.clone();
        self.loop_result(tt, exact, opat, ovars, &target, lp)
    }

    pub(crate) fn scan(&mut self, tt: &TensorType, d: u32, exact: bool) -> Expr {
        // The result is either a carry component or the stacked ys.
        let from_ys = !tt.dims.is_empty() && self.rng.chance(50);
        let (len, y) = if from_ys {
            (tt.dims[0], (TensorType { dt: tt.dt, dims: tt.dims[1..].to_vec() }, exact))
        } else {
            let t = self.rand_tt();
            let t = TensorType { dt: t.dt, dims: t.dims.into_iter().take(1).collect() };
            (self.rng.pick(&[1, 2, 3, 4]), (t, self.rng.chance(50)))
        };
        let (comps, at) = if from_ys {
            let t = self.rand_tt();
            let e = self.rng.chance(50);
            let (c, _) = self.carry(&t, e);
            (c, usize::MAX)
        } else {
            self.carry(tt, exact)
        };
        let init = self.carry_value(&comps, d);
        // The xs: none (length:), one tensor, or a pair.
        let nx = self.rng.pick(&[0usize, 1, 1, 2]);
        let xs_t: Vec<(TensorType, bool)> = (0..nx)
            .map(|_| {
                let t = self.rand_tt();
                let dims: Vec<usize> = std::iter::once(len).chain(t.dims.into_iter().take(1)).collect();
                (TensorType { dt: t.dt, dims }, self.rng.chance(50))
            })
            .collect();
        let xs_e: Vec<Expr> = xs_t.iter().map(|(t, e)| self.expr(t, d, *e)).collect();
        self.loop_depth += 1;
        let mark = self.env.len();
        let (cpat, cvars) = self.carry_pat(&comps);
        self.env.extend(cvars);
        let xvars: Vec<Binding> = xs_t
            .iter()
            .map(|(t, e)| Binding {
                name: self.fresh("x"),
                tt: TensorType { dt: t.dt, dims: t.dims[1..].to_vec() },
                exact: *e,
            })
            .collect();
        let xpat = match xvars.len() {
            0 => Pattern::Wildcard,
            1 => Pattern::Name(xvars[0].name.clone()),
            _ => Pattern::Tuple(xvars.iter().map(|v| Pattern::Name(v.name.clone())).collect()),
        };
        self.env.extend(xvars);
        let body = self.loop_body(&comps, d, Some(&y));
        self.env.truncate(mark);
        self.loop_depth -= 1;
        let xs = match xs_e.len() {
            0 => None,
            1 => xs_e.into_iter().next().map(Box::new),
            _ => {
                let ty = ValueType::Tuple(xs_e.iter().map(|e| e.ty.clone()).collect());
                Some(Box::new(Expr { kind: ExprKind::Tuple(xs_e), ty }))
            }
        };
        let length = if xs.is_none() || self.rng.chance(20) { Some(len) } else { None };
        let reverse = self.rng.chance(40);
        let unroll = if self.rng.chance(15) { 3 } else { 1 };
        let ys_t = TensorType { dt: y.0.dt, dims: std::iter::once(len).chain(y.0.dims.iter().copied()).collect() };
        let ty = ValueType::Tuple(vec![init.ty.clone(), ValueType::Tensor(ys_t.clone())]);
        let lp = Expr {
            kind: ExprKind::Scan {
                cpat,
                xpat,
                body: Box::new(body),
                init: Box::new(init),
                xs,
                length,
                reverse,
                unroll,
            },
            ty,
        };
        let (ocpat, mut ovars) = self.carry_pat(&comps);
        let ys = Binding { name: self.fresh("ys"), tt: ys_t, exact: y.1 };
        let target = if from_ys { ys.name.clone() } else { ovars[at].name.clone() };
        let opat = Pattern::Tuple(vec![ocpat, Pattern::Name(ys.name.clone())]);
        ovars.push(ys);
        self.loop_result(tt, exact, opat, ovars, &target, lp)
    }

    pub(crate) fn program(&mut self) -> ProgramTree {
        // main's parameters and their values.
        let np = self.rng.below(4);
        let mut args = Vec::new();
        for _ in 0..np {
            let tt = self.rand_tt();
            let name = self.fresh("a");
            let dt = tt.dt;
            let text = nest(&tt.dims, &mut || {
                let v = self.scalar_val(dt);
                val_arg(v, dt)
            });
            // Some parameters are typed with shape variables (issue 14's
            // reshape across them), bound from the argument when main runs.
            let vars = if !tt.dims.is_empty() && self.rng.chance(30) {
                let vars: Vec<String> =
                    (0..tt.dims.len()).map(|i| format!("S{}{}", &name[1..], (b'a' + i as u8) as char)).collect();
                self.poly.push((name.clone(), tt.clone(), vars.clone()));
                Some(vars)
            } else {
                self.env.push(Binding { name: name.clone(), tt: tt.clone(), exact: true });
                None
            };
            args.push(MainArg { name, tt, text, simple: false, vars });
        }
        let nr = 1 + self.rng.below(3);
        let results: Vec<(TensorType, bool)> = (0..nr).map(|_| (self.rand_tt(), self.rng.chance(50))).collect();
        let mut lets = Vec::new();
        for _ in 0..2 + self.rng.below(4) {
            let t = self.rand_tt();
            let ex = self.rng.chance(50);
            let e = self.expr(&t, 4, ex);
            let name = self.fresh("v");
            lets.push((Pattern::Name(name.clone()), e));
            self.env.push(Binding { name, tt: t, exact: ex });
        }
        let outs: Vec<Expr> = results.iter().map(|(t, e)| self.expr(t, 3, *e)).collect();
        let ret = tuple_or_single(outs);
        let ty = ret.ty.clone();
        let main = FunctionDef {
            name: "main".into(),
            params: args.iter().map(|a| (a.name.clone(), a.tt.clone())).collect(),
            ret: ty.clone(),
            body: Expr { kind: ExprKind::Block(Box::new(Block { lets, ret })), ty },
            exact: false,
        };
        ProgramTree { fns: std::mem::take(&mut self.fns), main, args }
    }
}

pub(crate) fn call(f: &str, args: Vec<CallArg>, tt: &TensorType) -> Expr {
    Expr { kind: ExprKind::Call(f.to_string(), args), ty: ValueType::Tensor(tt.clone()) }
}

pub(crate) fn bin(op: &'static str, a: Expr, b: Expr, tt: &TensorType) -> Expr {
    Expr { kind: ExprKind::Binary(op, Box::new(a), Box::new(b)), ty: ValueType::Tensor(tt.clone()) }
}

pub(crate) fn tuple_or_single(mut es: Vec<Expr>) -> Expr {
    if es.len() == 1 {
        return es.remove(0);
    }
    let ty = ValueType::Tuple(es.iter().map(|e| e.ty.clone()).collect());
    Expr { kind: ExprKind::Tuple(es), ty }
}
