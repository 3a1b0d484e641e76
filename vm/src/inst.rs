//! The instruction enum and everything generated from the opcode table
//! ([`crate::for_each_op!`]).

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;
use crate::op::{OpFlags, OpInfo};
#[allow(unused_imports)]
use crate::operand::{
    Axis, BlockId, ConstId, Dims, DotDims, FuncId, Operand, OptAxes, OptAxis, OptLen, Reg, RegList, Slices,
};
#[allow(unused_imports)]
use loopvm_runtime::{BinaryOp, DType, ReduceOp, UnaryOp, UpdateMode};

macro_rules! role_visit {
    (use, $field:ident, $f:ident) => {
        $field.visit_regs($f)
    };
    (def, $field:ident, $f:ident) => {};
    (attr, $field:ident, $f:ident) => {};
}

macro_rules! role_def {
    (def, $field:ident, $f:ident) => {
        $field.visit_regs($f)
    };
    (use, $field:ident, $f:ident) => {};
    (attr, $field:ident, $f:ident) => {};
}

macro_rules! define_insts {
    ($(
        $(#[doc = $doc:literal])*
        $code:literal $name:ident { $($role:ident $field:ident : $ty:ty),* $(,)? } [$($flag:ident)|*] $noxla:literal;
    )*) => {
        /// One bytecode instruction. Generated from the opcode table.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Inst {
            $(
                $(#[doc = $doc])*
                #[allow(missing_docs)]
                $name { $($field: $ty),* },
            )*
        }

        /// The opcode of an instruction.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Opcode {
            $(
                $(#[doc = $doc])*
                $name = $code,
            )*
        }

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name,)*];

            /// Static facts about this opcode.
            pub const fn info(self) -> OpInfo {
                match self {
                    $(Opcode::$name => OpInfo {
                        code: $code,
                        name: stringify!($name),
                        doc: concat!($($doc),*),
                        flags: OpFlags(0 $(| OpFlags::$flag.0)*),
                        no_xla: $noxla,
                    },)*
                }
            }

            /// The opcode with byte `b`, if any.
            pub fn from_u8(b: u8) -> Option<Opcode> {
                match b {
                    $($code => Some(Opcode::$name),)*
                    _ => None,
                }
            }
        }

        impl Inst {
            /// The opcode.
            pub fn opcode(&self) -> Opcode {
                match self {
                    $(Inst::$name { .. } => Opcode::$name,)*
                }
            }

            /// Appends the encoding: the opcode byte, then each operand.
            pub fn encode(&self, w: &mut Writer) {
                match self {
                    $(Inst::$name { $($field),* } => {
                        w.u8($code);
                        $($field.encode(w);)*
                    })*
                }
            }

            /// Decodes one instruction.
            pub fn decode(r: &mut Reader<'_>) -> Result<Inst, DecodeError> {
                let at = r.pos();
                let b = r.u8()?;
                match b {
                    $($code => Ok(Inst::$name { $($field: <$ty as Operand>::decode(r)?),* }),)*
                    _ => Err(DecodeError { offset: at, message: format!("unknown opcode 0x{b:02x}") }),
                }
            }

            /// Calls `f` for every register the instruction reads.
            #[allow(unused_variables)]
            pub fn visit_uses(&self, f: &mut dyn FnMut(Reg)) {
                match self {
                    $(Inst::$name { $($field),* } => { $(role_visit!($role, $field, f);)* })*
                }
            }

            /// Calls `f` for every register the instruction writes.
            #[allow(unused_variables)]
            pub fn visit_defs(&self, f: &mut dyn FnMut(Reg)) {
                match self {
                    $(Inst::$name { $($field),* } => { $(role_def!($role, $field, f);)* })*
                }
            }

            /// The operands in disassembly form: `dst = name op a, b`.
            pub fn dis_operands(&self) -> Vec<(&'static str, String)> {
                match self {
                    $(Inst::$name { $($field),* } => vec![$((stringify!($field), { let mut s = String::new(); $field.dis(&mut s); s })),*],)*
                }
            }
        }
    };
}

crate::for_each_op!(define_insts);

impl Inst {
    /// The blocks an instruction owns (for `If` and the loops).
    pub fn blocks(&self) -> Vec<BlockId> {
        match self {
            Inst::If { then_, else_, .. } => vec![*then_, *else_],
            Inst::Fori { body, .. } | Inst::Scan { body, .. } => vec![*body],
            Inst::While { cond, body, .. } => vec![*cond, *body],
            _ => Vec::new(),
        }
    }
}
