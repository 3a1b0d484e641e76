//! The disassembler: bytecode as a person reads it, loops as nested blocks,
//! every register with its type.

use crate::inst::Inst;
use crate::module::{Func, Module};
use crate::operand::{BlockId, Reg};
use std::fmt::Write as _;

/// Disassembles every function of `m`.
pub fn disassemble(m: &Module) -> String {
    let mut out = String::new();
    for (i, c) in m.consts.iter().enumerate() {
        let _ = writeln!(out, "const k{i}: {}", c.summary(8));
    }
    if !m.consts.is_empty() {
        out.push('\n');
    }
    for (i, f) in m.funcs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        Dis { m, f, out: &mut out }.func();
    }
    out
}

struct Dis<'a> {
    m: &'a Module,
    f: &'a Func,
    out: &'a mut String,
}

impl Dis<'_> {
    fn ty(&self, r: Reg) -> String {
        self.f.reg_types.get(r.0 as usize).map_or_else(|| "?".to_string(), |t| t.display(&self.m.symbols))
    }

    fn regs_typed(&self, regs: &[Reg]) -> String {
        regs.iter().map(|r| format!("r{}: {}", r.0, self.ty(*r))).collect::<Vec<_>>().join(", ")
    }

    fn func(&mut self) {
        let f = self.f;
        let params: Vec<String> =
            f.params.iter().map(|p| format!("{}: {}", p.name, p.ty.display(&self.m.symbols))).collect();
        let _ = writeln!(
            self.out,
            "fn {}({}) -> {}    ; {} registers, {} blocks",
            f.name,
            params.join(", "),
            f.result.display(&self.m.symbols),
            f.reg_types.len(),
            f.blocks.len()
        );
        self.block("entry", f.body, 1);
    }

    fn block(&mut self, label: &str, b: BlockId, depth: usize) {
        let Some(blk) = self.f.blocks.get(b.0 as usize) else {
            let _ = writeln!(self.out, "{}{label} b{}: <missing>", "  ".repeat(depth), b.0);
            return;
        };
        let pad = "  ".repeat(depth);
        let _ = writeln!(self.out, "{pad}{label} b{}({}):", b.0, self.regs_typed(&blk.params));
        for inst in &blk.code {
            self.inst(inst, depth + 1);
        }
        let res: Vec<String> = blk.results.iter().map(|r| format!("r{}", r.0)).collect();
        let _ = writeln!(self.out, "{pad}  yield ({})", res.join(", "));
    }

    fn inst(&mut self, inst: &Inst, depth: usize) {
        let pad = "  ".repeat(depth);
        let mut defs = Vec::new();
        inst.visit_defs(&mut |r| defs.push(r));
        let lhs = if defs.is_empty() { String::new() } else { format!("{} = ", self.regs_typed(&defs)) };
        let ops: Vec<String> = inst
            .dis_operands()
            .into_iter()
            .filter(|(name, _)| !matches!(*name, "dst" | "dsts" | "body" | "cond" | "then_" | "else_"))
            .map(|(name, v)| match name {
                "op" | "mode" | "to" | "dtype" | "axis" | "perm" | "length" | "dims" => v,
                "func" => format!("@{}", self.func_name(inst)),
                _ => format!("{name}={v}"),
            })
            .collect();
        let mut line = format!("{pad}{lhs}{} {}", inst.opcode().info().name.to_lowercase(), ops.join(" "));
        if let Inst::Const { k, .. } | Inst::BinaryK { k, .. } | Inst::KBinary { k, .. } = inst {
            if let Some(c) = self.m.consts.get(k.0 as usize) {
                let _ = write!(line, "    ; {}", c.summary(4));
            }
        }
        let _ = writeln!(self.out, "{}", line.trim_end());
        match inst {
            Inst::If { then_, else_, .. } => {
                self.block("then", *then_, depth + 1);
                self.block("else", *else_, depth + 1);
            }
            Inst::Fori { body, .. } | Inst::Scan { body, .. } => self.block("body", *body, depth + 1),
            Inst::While { cond, body, .. } => {
                self.block("cond", *cond, depth + 1);
                self.block("body", *body, depth + 1);
            }
            _ => {}
        }
    }

    fn func_name(&self, inst: &Inst) -> String {
        match inst {
            Inst::Call { func, .. } => {
                self.m.funcs.get(func.0 as usize).map_or_else(|| format!("f{}", func.0), |f| f.name.clone())
            }
            _ => String::new(),
        }
    }
}
