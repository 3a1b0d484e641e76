//! Modules, functions, blocks and types, and the serialised module format.
//!
//! Format (`.lbc`): the magic `LBC\0`, a little-endian `u16` version, then
//! the symbol table, the constant pool, the functions and the index of
//! `main`. Integers are LEB128 varints. Every length is checked against the
//! bytes that remain before anything is allocated.

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;
use crate::inst::Inst;
use crate::operand::{BlockId, FuncId, Reg};
use loopvm_runtime::{DType, Tensor};
use std::fmt;

/// The first four bytes of every `.lbc` file.
pub const MAGIC: [u8; 4] = *b"LBC\0";
/// The module format version this build reads and writes: 2 since issue 14
/// (opcodes 0x19 to 0x1f, dtypes `u32` and `u8`, the unary and binary rows
/// `erfc`, `erf_inv`, `xor`, `shl`, `shr`), 3 since issues 19 and 20
/// (opcodes 0x20 and 0x21: binary ops with a constant operand; 0x30
/// `Shard`), 4 since issue 14's reshape across shape variables (opcode
/// 0x2c `ReshapeAs`; symbols that name a product, `B*T`); a module of
/// another version is rejected with a message.
pub const VERSION: u16 = 4;

/// One dimension of a static type: a number, or a shape variable bound per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known size.
    Fixed(u64),
    /// A shape variable: an index into [`Module::symbols`].
    Var(u32),
}

/// The type of one tensor value: a dtype and a shape whose dims may be variables.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// The element type.
    pub dtype: DType,
    /// The dimensions.
    pub dims: Vec<Dim>,
}

impl TensorType {
    /// A type with all dims known.
    pub fn fixed(dtype: DType, dims: &[u64]) -> TensorType {
        TensorType { dtype, dims: dims.iter().map(|&d| Dim::Fixed(d)).collect() }
    }
    /// The rank.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
    /// Writes `f32[T, 4]` (or `f32` for a scalar), naming variables from `symbols`.
    pub fn display(&self, symbols: &[String]) -> String {
        let mut s = self.dtype.as_str().to_string();
        if !self.dims.is_empty() {
            s.push('[');
            for (i, d) in self.dims.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                match d {
                    Dim::Fixed(n) => s.push_str(&n.to_string()),
                    Dim::Var(v) => s.push_str(symbols.get(*v as usize).map_or("?", |x| x.as_str())),
                }
            }
            s.push(']');
        }
        s
    }
}

/// A (possibly nested) tuple of tensor types: the structure of a value in source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypeTree {
    /// One tensor.
    Tensor(TensorType),
    /// A tuple (the empty tuple is "nothing", e.g. the value of `print`).
    Tuple(Vec<TypeTree>),
}

impl TypeTree {
    /// The tensor types, flattened depth-first (the order registers use).
    pub fn leaves(&self) -> Vec<&TensorType> {
        let mut v = Vec::new();
        fn go<'a>(t: &'a TypeTree, v: &mut Vec<&'a TensorType>) {
            match t {
                TypeTree::Tensor(x) => v.push(x),
                TypeTree::Tuple(ts) => ts.iter().for_each(|t| go(t, v)),
            }
        }
        go(self, &mut v);
        v
    }
    /// Writes `(f32[4], i32)` etc.
    pub fn display(&self, symbols: &[String]) -> String {
        match self {
            TypeTree::Tensor(t) => t.display(symbols),
            TypeTree::Tuple(ts) => {
                let inner: Vec<String> = ts.iter().map(|t| t.display(symbols)).collect();
                if ts.len() == 1 {
                    format!("({},)", inner[0])
                } else {
                    format!("({})", inner.join(", "))
                }
            }
        }
    }
}

/// A named parameter of a function.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The name in source.
    pub name: String,
    /// Its type.
    pub ty: TypeTree,
}

/// A straight-line sequence of instructions with parameters and results.
///
/// Rules the verifier enforces: every register is defined once in its
/// function; a use is of a register defined earlier in this block or in an
/// enclosing one; the results are registers defined by this block's own
/// instructions, all distinct (so a loop can swap them into its parameters).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Block {
    /// Registers the owner writes before running the block.
    pub params: Vec<Reg>,
    /// The instructions.
    pub code: Vec<Inst>,
    /// Registers the owner reads after running the block.
    pub results: Vec<Reg>,
}

/// A function: a signature, register types and blocks; `body` is the entry block.
#[derive(Clone, Debug, PartialEq)]
pub struct Func {
    /// The name (monomorphised copies get a suffix).
    pub name: String,
    /// The parameters as written in source.
    pub params: Vec<Param>,
    /// The result type.
    pub result: TypeTree,
    /// The type of each register.
    pub reg_types: Vec<TensorType>,
    /// All blocks of the function.
    pub blocks: Vec<Block>,
    /// The entry block: its params are the flattened parameters, its results the flattened result.
    pub body: BlockId,
}

impl Func {
    /// The block with id `b`.
    pub fn block(&self, b: BlockId) -> &Block {
        &self.blocks[b.0 as usize]
    }
    /// Number of registers in a frame.
    pub fn num_regs(&self) -> usize {
        self.reg_types.len()
    }
}

/// A compiled program.
#[derive(Clone, Debug, Default)]
pub struct Module {
    /// Shape variable names.
    pub symbols: Vec<String>,
    /// The constant pool.
    pub consts: Vec<Tensor>,
    /// The functions.
    pub funcs: Vec<Func>,
    /// The entry point, if the program has a `main`.
    pub main: Option<FuncId>,
}

impl Module {
    /// The value of shape variable `v` under `bound` (the values bound from
    /// a call's arguments, by symbol index). A symbol whose name is a product
    /// (`B*T`, `2*N`: factors that are integers or names of other symbols,
    /// joined by `*`, as the frontend writes a product of shape variables)
    /// is *derived*: unless bound itself, its value is the product of its
    /// factors'. `None` when a factor is unbound or unknown, or the product
    /// overflows.
    pub fn symbol_value(&self, v: u32, bound: &[Option<u64>]) -> Option<u64> {
        if let Some(Some(n)) = bound.get(v as usize) {
            return Some(*n);
        }
        let name = self.symbols.get(v as usize)?;
        if !name.contains('*') {
            return None;
        }
        name.split('*').try_fold(1u64, |acc, f| {
            let n = match f.parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    let i = self.symbols.iter().position(|s| s == f)?;
                    *bound.get(i)?.as_ref()?
                }
            };
            acc.checked_mul(n)
        })
    }

    /// The concrete shape of `t` under `bound` (see [`Module::symbol_value`]);
    /// `None` when a shape variable has no value.
    pub fn resolve_shape(&self, t: &TensorType, bound: &[Option<u64>]) -> Option<Vec<usize>> {
        t.dims
            .iter()
            .map(|d| match *d {
                Dim::Fixed(n) => usize::try_from(n).ok(),
                Dim::Var(v) => self.symbol_value(v, bound).and_then(|n| usize::try_from(n).ok()),
            })
            .collect()
    }

    /// Binds the shape variables of `t` (a product too: its value) from a
    /// concrete `shape` into `bound` (sized to the symbols): how a back end
    /// that compiles a region learns the binding from the types of the
    /// values it holds. `Err(v)` when symbol `v` is already bound to another
    /// value (the shape does not fit the type).
    pub fn bind_shape(&self, t: &TensorType, shape: &[usize], bound: &mut [Option<u64>]) -> Result<(), u32> {
        for (d, &n) in t.dims.iter().zip(shape) {
            if let Dim::Var(v) = *d {
                match bound.get_mut(v as usize) {
                    Some(s @ None) => *s = Some(n as u64),
                    Some(Some(k)) if *k != n as u64 => return Err(v),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The concrete shape of `t` where the binding is not at hand but values
    /// are: its shape variables bound from `values`, pairs of a register
    /// type and the concrete shape of the value it holds. How a back end
    /// compiling a region resolves a `ReshapeAs` from the region's inputs
    /// and what it computed from them; since these shapes follow from the
    /// region's input shapes, so does the result (a cache keyed by input
    /// shapes stays sound). `Err` says why (a variable no value fixes).
    pub fn shape_from_values<'t>(
        &self,
        t: &TensorType,
        values: impl IntoIterator<Item = (&'t TensorType, &'t [usize])>,
    ) -> Result<Vec<usize>, String> {
        let mut bound = vec![None; self.symbols.len()];
        for (vt, shape) in values {
            if let Err(v) = self.bind_shape(vt, shape, &mut bound) {
                let name = self.symbols.get(v as usize).map_or("?", |s| s.as_str());
                return Err(format!("the values at hand give shape variable {name} two values"));
            }
        }
        self.resolve_shape(t, &bound).ok_or_else(|| {
            format!("the shape {} is not fixed by the values the region holds", t.display(&self.symbols))
        })
    }

    /// The function with id `f`.
    pub fn func(&self, f: FuncId) -> &Func {
        &self.funcs[f.0 as usize]
    }
    /// Finds a function by name.
    pub fn func_by_name(&self, name: &str) -> Option<FuncId> {
        self.funcs.iter().position(|f| f.name == name).map(|i| FuncId(i as u32))
    }

    /// Serialises the module.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(&MAGIC);
        w.raw(&VERSION.to_le_bytes());
        w.uleb(self.symbols.len() as u64);
        for s in &self.symbols {
            w.str(s);
        }
        w.uleb(self.consts.len() as u64);
        for c in &self.consts {
            write_tensor(&mut w, c);
        }
        w.uleb(self.funcs.len() as u64);
        for f in &self.funcs {
            w.str(&f.name);
            w.uleb(f.params.len() as u64);
            for p in &f.params {
                w.str(&p.name);
                write_tree(&mut w, &p.ty);
            }
            write_tree(&mut w, &f.result);
            w.uleb(f.reg_types.len() as u64);
            for t in &f.reg_types {
                write_type(&mut w, t);
            }
            w.uleb(f.blocks.len() as u64);
            for b in &f.blocks {
                write_regs(&mut w, &b.params);
                w.uleb(b.code.len() as u64);
                for i in &b.code {
                    i.encode(&mut w);
                }
                write_regs(&mut w, &b.results);
            }
            w.uleb(u64::from(f.body.0));
        }
        w.uleb(self.main.map_or(0, |m| u64::from(m.0) + 1));
        w.bytes
    }

    /// Reads a serialised module. Structure only: run [`crate::verify`] before executing it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Module, DecodeError> {
        let mut r = Reader::new(bytes);
        let magic =
            r.raw(4).map_err(|_| DecodeError { offset: 0, message: "file too short to be a loopvm module".into() })?;
        if magic != MAGIC {
            return Err(DecodeError { offset: 0, message: "not a loopvm module (bad magic number)".into() });
        }
        let v = r.raw(2)?;
        let version = u16::from_le_bytes([v[0], v[1]]);
        if version != VERSION {
            return Err(DecodeError {
                offset: 4,
                message: format!("module format version {version}, this loopvm reads version {VERSION}"),
            });
        }
        let n = r.len(1)?;
        let symbols = (0..n).map(|_| r.str()).collect::<Result<Vec<_>, _>>()?;
        let n = r.len(2)?;
        let consts = (0..n).map(|_| read_tensor(&mut r)).collect::<Result<Vec<_>, _>>()?;
        let n = r.len(4)?;
        let mut funcs = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.str()?;
            let np = r.len(2)?;
            let mut params = Vec::with_capacity(np);
            for _ in 0..np {
                let name = r.str()?;
                params.push(Param { name, ty: read_tree(&mut r, 0)? });
            }
            let result = read_tree(&mut r, 0)?;
            let nr = r.len(2)?;
            let reg_types = (0..nr).map(|_| read_type(&mut r)).collect::<Result<Vec<_>, _>>()?;
            let nb = r.len(3)?;
            let mut blocks = Vec::with_capacity(nb);
            for _ in 0..nb {
                let params = read_regs(&mut r)?;
                let ni = r.len(1)?;
                let code = (0..ni).map(|_| Inst::decode(&mut r)).collect::<Result<Vec<_>, _>>()?;
                let results = read_regs(&mut r)?;
                blocks.push(Block { params, code, results });
            }
            let body = BlockId(r.u32()?);
            funcs.push(Func { name, params, result, reg_types, blocks, body });
        }
        let main = r.u32()?.checked_sub(1).map(FuncId);
        if r.remaining() != 0 {
            return Err(DecodeError {
                offset: r.pos(),
                message: format!("{} trailing bytes after the module", r.remaining()),
            });
        }
        Ok(Module { symbols, consts, funcs, main })
    }
}

fn write_regs(w: &mut Writer, regs: &[Reg]) {
    w.uleb(regs.len() as u64);
    for r in regs {
        w.uleb(u64::from(r.0));
    }
}

fn read_regs(r: &mut Reader<'_>) -> Result<Vec<Reg>, DecodeError> {
    let n = r.len(1)?;
    (0..n).map(|_| r.u32().map(Reg)).collect()
}

fn write_type(w: &mut Writer, t: &TensorType) {
    w.u8(t.dtype as u8);
    w.uleb(t.dims.len() as u64);
    for d in &t.dims {
        match d {
            Dim::Fixed(n) => {
                w.u8(0);
                w.uleb(*n);
            }
            Dim::Var(v) => {
                w.u8(1);
                w.uleb(u64::from(*v));
            }
        }
    }
}

fn read_dtype(r: &mut Reader<'_>) -> Result<DType, DecodeError> {
    let at = r.pos();
    let b = r.u8()?;
    DType::from_tag(b).ok_or(DecodeError { offset: at, message: format!("invalid dtype tag {b}") })
}

fn read_type(r: &mut Reader<'_>) -> Result<TensorType, DecodeError> {
    let dtype = read_dtype(r)?;
    let n = r.len(2)?;
    let mut dims = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.pos();
        dims.push(match r.u8()? {
            0 => Dim::Fixed(r.uleb()?),
            1 => Dim::Var(r.u32()?),
            b => return Err(DecodeError { offset: at, message: format!("invalid dim tag {b}") }),
        });
    }
    Ok(TensorType { dtype, dims })
}

/// Deepest tuple nesting accepted from a file (source programs never come close).
const MAX_TREE_DEPTH: usize = 64;

fn write_tree(w: &mut Writer, t: &TypeTree) {
    match t {
        TypeTree::Tensor(x) => {
            w.u8(0);
            write_type(w, x);
        }
        TypeTree::Tuple(ts) => {
            w.u8(1);
            w.uleb(ts.len() as u64);
            for t in ts {
                write_tree(w, t);
            }
        }
    }
}

fn read_tree(r: &mut Reader<'_>, depth: usize) -> Result<TypeTree, DecodeError> {
    if depth > MAX_TREE_DEPTH {
        return Err(DecodeError { offset: r.pos(), message: "type nested too deeply".into() });
    }
    let at = r.pos();
    match r.u8()? {
        0 => Ok(TypeTree::Tensor(read_type(r)?)),
        1 => {
            let n = r.len(1)?;
            Ok(TypeTree::Tuple((0..n).map(|_| read_tree(r, depth + 1)).collect::<Result<_, _>>()?))
        }
        b => Err(DecodeError { offset: at, message: format!("invalid type tag {b}") }),
    }
}

fn write_tensor(w: &mut Writer, t: &Tensor) {
    w.u8(t.dtype() as u8);
    w.uleb(t.rank() as u64);
    for d in t.shape() {
        w.uleb(*d as u64);
    }
    use loopvm_runtime::Buffer;
    match t.buffer() {
        Buffer::Bool(v) => v.iter().for_each(|x| w.u8(u8::from(*x))),
        Buffer::I32(v) => v.iter().for_each(|x| w.raw(&x.to_le_bytes())),
        Buffer::I64(v) => v.iter().for_each(|x| w.raw(&x.to_le_bytes())),
        Buffer::F32(v) => v.iter().for_each(|x| w.raw(&x.to_le_bytes())),
        Buffer::F64(v) => v.iter().for_each(|x| w.raw(&x.to_le_bytes())),
        Buffer::U32(v) => v.iter().for_each(|x| w.raw(&x.to_le_bytes())),
        Buffer::U8(v) => w.raw(v),
        Buffer::BF16(v) => v.iter().for_each(|x| w.raw(&x.to_bits().to_le_bytes())),
        Buffer::F16(v) => v.iter().for_each(|x| w.raw(&x.to_bits().to_le_bytes())),
    }
}

fn read_tensor(r: &mut Reader<'_>) -> Result<Tensor, DecodeError> {
    let at = r.pos();
    let dtype = read_dtype(r)?;
    let rank = r.len(1)?;
    let mut shape = Vec::with_capacity(rank);
    for _ in 0..rank {
        let d = r.uleb()?;
        shape.push(
            usize::try_from(d).map_err(|_| DecodeError { offset: r.pos(), message: "dimension too large".into() })?,
        );
    }
    let bad = |m: String| DecodeError { offset: at, message: m };
    let n = loopvm_runtime::checked_numel(&shape).map_err(|e| bad(e.message))?;
    let nbytes = n.checked_mul(dtype.size_in_bytes()).ok_or_else(|| bad("constant too large".into()))?;
    let raw = r.raw(nbytes)?;
    let t = match dtype {
        DType::Bool => Tensor::from_vec(&shape, raw.iter().map(|b| *b != 0).collect::<Vec<bool>>()),
        DType::I32 => Tensor::from_vec(
            &shape,
            raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        ),
        DType::F32 => Tensor::from_vec(
            &shape,
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        ),
        DType::U8 => Tensor::from_vec(&shape, raw.to_vec()),
        DType::BF16 => Tensor::from_vec(
            &shape,
            raw.chunks_exact(2).map(|c| loopvm_runtime::bf16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect(),
        ),
        DType::F16 => Tensor::from_vec(
            &shape,
            raw.chunks_exact(2).map(|c| loopvm_runtime::f16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect(),
        ),
        DType::U32 => Tensor::from_vec(
            &shape,
            raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        ),
        DType::I64 => Tensor::from_vec(
            &shape,
            raw.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
        ),
        DType::F64 => Tensor::from_vec(
            &shape,
            raw.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
        ),
    };
    t.map_err(|e| bad(e.message))
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Var(v) => write!(f, "${v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_symbol_takes_the_product_of_its_factors() {
        let m = Module { symbols: ["B", "T", "B*T", "2*B*T", "B*X"].map(String::from).to_vec(), ..Module::default() };
        let bound = [Some(3), Some(4), None, None, None];
        assert_eq!(m.symbol_value(0, &bound), Some(3));
        assert_eq!(m.symbol_value(2, &bound), Some(12));
        assert_eq!(m.symbol_value(3, &bound), Some(24));
        assert_eq!(m.symbol_value(4, &bound), None, "an unknown factor");
        assert_eq!(m.symbol_value(1, &[Some(3), None]), None, "unbound");
        let t = TensorType { dtype: loopvm_runtime::DType::F32, dims: vec![Dim::Var(3), Dim::Fixed(5)] };
        assert_eq!(m.resolve_shape(&t, &bound), Some(vec![24, 5]));
        // From values: `B*T` bound directly by a value of that type.
        let bt = TensorType { dtype: loopvm_runtime::DType::F32, dims: vec![Dim::Var(2)] };
        let b = TensorType { dtype: loopvm_runtime::DType::F32, dims: vec![Dim::Var(0), Dim::Var(1)] };
        assert_eq!(m.shape_from_values(&bt, [(&b, &[3usize, 4][..])]), Ok(vec![12]));
        assert_eq!(m.shape_from_values(&bt, [(&bt, &[7usize][..])]), Ok(vec![7]));
        assert!(m.shape_from_values(&t, [(&bt, &[7usize][..])]).unwrap_err().contains("not fixed"));
        assert!(m
            .shape_from_values(&bt, [(&bt, &[7usize][..]), (&bt, &[8usize][..])])
            .unwrap_err()
            .contains("two values"));
    }
}
