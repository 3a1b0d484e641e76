//! The opcode table: the single source of truth for loopvm's bytecode.
//!
//! Each line of [`for_each_op!`] is one instruction: its opcode byte, its
//! name, its operands with their role (`def` writes a register, `use` reads
//! registers, `attr` is a static attribute), a `///` line of semantics in
//! register notation, and property flags. The instruction enum, encoding,
//! decoding, register visiting (for the verifier), disassembly and the back
//! ends' eligibility checks are all generated from it.
//!
//! Irregular instructions (marked `REGION` in the flags) own blocks: `If`,
//! `Fori`, `While` and `Scan`. Their block shapes are checked by hand in the
//! verifier; see the doc line of each.

/// Property flags of an opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpFlags(pub u8);

impl OpFlags {
    /// No flags.
    pub const NONE: OpFlags = OpFlags(0);
    /// Lowers to StableHLO (the XLA tier can run it).
    pub const XLA: OpFlags = OpFlags(1);
    /// The Cranelift tier can compile it.
    pub const JIT: OpFlags = OpFlags(2);
    /// May raise a runtime error (shapes checked at run time, bad indices).
    pub const TRAP: OpFlags = OpFlags(4);
    /// May allocate a new tensor buffer (when its output slot cannot be reused).
    pub const ALLOC: OpFlags = OpFlags(8);
    /// Owns blocks (a structured region: `if` or a loop).
    pub const REGION: OpFlags = OpFlags(16);
    /// Has an effect besides its result (printing).
    pub const EFFECT: OpFlags = OpFlags(32);

    /// `true` when every flag of `other` is set.
    pub const fn contains(self, other: OpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of two flag sets.
    pub const fn union(self, other: OpFlags) -> OpFlags {
        OpFlags(self.0 | other.0)
    }
}

/// Static facts about one opcode, generated from the table.
#[derive(Clone, Copy, Debug)]
pub struct OpInfo {
    /// The opcode byte.
    pub code: u8,
    /// The mnemonic used by the disassembler.
    pub name: &'static str,
    /// The semantics line from the table.
    pub doc: &'static str,
    /// Property flags.
    pub flags: OpFlags,
    /// Why the op does not lower to StableHLO (empty when it does).
    pub no_xla: &'static str,
}

/// Invokes `$m!` with the whole opcode table.
#[macro_export]
macro_rules! for_each_op {
    ($m:ident) => {
        $m! {
            /// R[dst] := K[k] (the constant's buffer is shared)
            0x01 Const { def dst: Reg, attr k: ConstId } [XLA | JIT] "";
            /// R[dst] := R[src] (the buffer is shared)
            0x02 Move { def dst: Reg, use src: Reg } [XLA | JIT] "";
            /// R[dst] := op(R[a]), elementwise
            0x03 Unary { attr op: UnaryOp, def dst: Reg, use a: Reg } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := R[a] op R[b], elementwise with NumPy broadcasting
            0x04 Binary { attr op: BinaryOp, def dst: Reg, use a: Reg, use b: Reg } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := where(R[c], R[a], R[b]), broadcast
            0x05 Select { def dst: Reg, use c: Reg, use a: Reg, use b: Reg } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := R[a] as to
            0x06 Cast { def dst: Reg, use a: Reg, attr to: DType } [XLA | JIT | ALLOC] "";
            /// R[dst] := [0, 1, ..., n-1] of dtype
            0x07 Iota { def dst: Reg, attr dtype: DType, attr n: u64 } [XLA | JIT | ALLOC] "";
            /// R[dst] := R[a] @ R[b] (rank-1/rank-2 rules)
            0x08 MatMul { def dst: Reg, use a: Reg, use b: Reg } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := op(R[a]) over all elements, or along axis
            0x09 Reduce { attr op: ReduceOp, def dst: Reg, use a: Reg, attr axis: OptAxis } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := reshape(R[a], shape) (the buffer is shared)
            0x0a Reshape { def dst: Reg, use a: Reg, attr shape: Dims } [XLA | JIT | TRAP] "";
            /// R[dst] := transpose(R[a], perm) (reversed axes when perm is absent)
            0x0b Transpose { def dst: Reg, use a: Reg, attr perm: OptAxes } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := broadcast(R[a], shape), NumPy rules
            0x0c Broadcast { def dst: Reg, use a: Reg, attr shape: Dims } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := concat(R[srcs...], axis)
            0x0d Concat { def dst: Reg, use srcs: RegList, attr axis: Axis } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := stack(R[srcs...], axis) (a new axis)
            0x0e Stack { def dst: Reg, use srcs: RegList, attr axis: Axis } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := R[a][specs] (static indices and slices)
            0x0f Slice { def dst: Reg, use a: Reg, attr specs: Slices } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := R[a][R[idx]...] (dynamic; negative wraps once, then clamped)
            0x10 Index { def dst: Reg, use a: Reg, use idx: RegList } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := R[a].at[R[idx]...].mode(R[v]) (clamped like Index)
            0x11 Update { attr mode: UpdateMode, def dst: Reg, use a: Reg, use idx: RegList, use v: Reg } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := shape(R[a]) as i32[rank]
            0x12 ShapeOf { def dst: Reg, use a: Reg } [XLA | JIT | ALLOC] "";
            /// print(R[srcs...]) to the program's output
            0x13 Print { use srcs: RegList } [JIT | EFFECT] "prints on the host";
            /// R[dsts...] := funcs[func](R[args...])
            0x14 Call { def dsts: RegList, attr func: FuncId, use args: RegList } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dsts...] := if R[c] { then_ } else { else_ }; both blocks take no params and return dsts' types
            0x15 If { def dsts: RegList, use c: Reg, attr then_: BlockId, attr else_: BlockId } [XLA | JIT | TRAP | REGION] "";
            /// R[dsts...] := fori_loop(R[lo], R[hi], body, R[init...]); body params (i, carry...), results carry...
            0x16 Fori { def dsts: RegList, use lo: Reg, use hi: Reg, use init: RegList, attr body: BlockId, attr unroll: u32 } [XLA | JIT | TRAP | REGION] "";
            /// R[dsts...] := while_loop(cond, body, R[init...]); cond params carry..., result one bool; body params carry..., results carry...
            0x17 While { def dsts: RegList, use init: RegList, attr cond: BlockId, attr body: BlockId } [XLA | JIT | TRAP | REGION] "";
            /// R[dsts...] := scan(body, R[init...], R[xs...]); body params (carry..., x...), results (carry..., y...); dsts = carry ++ ys
            0x18 Scan { def dsts: RegList, use init: RegList, use xs: RegList, attr length: OptLen, attr reverse: bool, attr unroll: u32, attr body: BlockId } [XLA | JIT | TRAP | ALLOC | REGION] "";
            /// R[dst] := dot_general(R[a], R[b], dims): batch dims, then a's free dims, then b's, contracting the paired axes
            0x19 DotGeneral { def dst: Reg, use a: Reg, use b: Reg, attr dims: DotDims } [XLA | TRAP | ALLOC] "";
            /// R[dst] := take(R[a], R[ids], axis): axis replaced by R[ids]'s shape, ids clamped into [0, n-1]
            0x1a Take { def dst: Reg, use a: Reg, use ids: Reg, attr axis: Axis } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := R[a] with each row of R[u] added at the position take(R[a], R[ids], axis) reads it from
            0x1b ScatterAdd { def dst: Reg, use a: Reg, use ids: Reg, use u: Reg, attr axis: Axis } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := dynamic_slice(R[a], R[starts...], sizes): starts wrapped once, clamped so the window fits
            0x1c DynSlice { def dst: Reg, use a: Reg, use starts: RegList, attr sizes: Dims } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := dynamic_update_slice(R[a], R[u], R[starts...]): the window placed as in DynSlice
            0x1d DynUpdateSlice { def dst: Reg, use a: Reg, use u: Reg, use starts: RegList } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := cumsum(R[a], axis), from the end when reverse; each sum starts from +0
            0x1e Cumsum { def dst: Reg, use a: Reg, attr axis: Axis, attr reverse: bool } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := the bits of R[a] read as dtype to (`lax.bitcast_convert_type`; same element width, no bool)
            0x1f Bitcast { def dst: Reg, use a: Reg, attr to: DType } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := R[a] op K[k], elementwise with NumPy broadcasting: `Binary` with a constant operand (Lua's `ADDK`)
            0x20 BinaryK { attr op: BinaryOp, def dst: Reg, use a: Reg, attr k: ConstId } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := K[k] op R[a], elementwise with NumPy broadcasting: `BinaryK` with the constant on the left
            0x21 KBinary { attr op: BinaryOp, def dst: Reg, attr k: ConstId, use a: Reg } [XLA | JIT | TRAP | ALLOC] "";
            /// R[dst] := reshape(R[a], type(dst)): the destination's register type with its shape variables (products of them: `B*T`) resolved under the binding of the call (the buffer is shared)
            0x2c ReshapeAs { def dst: Reg, use a: Reg } [XLA | JIT | TRAP] "";
            /// R[dst] := R[a] (the buffer is shared); for XLA's SPMD partitioner, axis of R[a] split over mesh axis mesh_axis (0: `data`, 1: `model`), the rest replicated (`jax.lax.with_sharding_constraint`)
            0x30 Shard { def dst: Reg, use a: Reg, attr axis: Axis, attr mesh_axis: u32 } [XLA | JIT] "";
        }
    };
}
