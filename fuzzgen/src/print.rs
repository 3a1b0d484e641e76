//! Program printing: a generated program tree as `.lb` source, its
//! `main` arguments as `--arg` strings, and scalar values as literals.

use crate::tree::{Block, CallArg, ElemType, Expr, ExprKind, FunctionDef, IndexArg, ProgramTree, ScalarValue};
use std::fmt::Write as _;

impl Expr {
    pub(crate) fn render(&self, out: &mut String, ind: usize) {
        match &self.kind {
            ExprKind::Literal { text, .. } => out.push_str(text),
            ExprKind::Variable(n) => out.push_str(n),
            ExprKind::Unary(op, a) => {
                out.push('(');
                out.push_str(op);
                a.render(out, ind);
                out.push(')');
            }
            ExprKind::Binary(op, a, b) => {
                out.push('(');
                a.render(out, ind);
                let _ = write!(out, " {op} ");
                b.render(out, ind);
                out.push(')');
            }
            ExprKind::Call(f, args) => {
                out.push_str(f);
                out.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match a {
                        CallArg::Expr(e) => e.render(out, ind),
                        CallArg::Named(n, e) => {
                            out.push_str(n);
                            out.push_str(": ");
                            e.render(out, ind);
                        }
                        CallArg::Raw(s) => out.push_str(s),
                        CallArg::List(es) => {
                            out.push('[');
                            for (i, e) in es.iter().enumerate() {
                                if i > 0 {
                                    out.push_str(", ");
                                }
                                e.render(out, ind);
                            }
                            out.push(']');
                        }
                    }
                }
                out.push(')');
            }
            ExprKind::Cast(a, dt) => {
                out.push('(');
                a.render(out, ind);
                let _ = write!(out, " as {})", dt.name());
            }
            ExprKind::Index(a, ix) => {
                out.push('(');
                a.render(out, ind);
                out.push_str(")[");
                for (i, x) in ix.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match x {
                        IndexArg::Dynamic(e) => e.render(out, ind),
                        IndexArg::Raw(s) => out.push_str(s),
                    }
                }
                out.push(']');
            }
            ExprKind::At { base, idx, add, v } => {
                out.push('(');
                base.render(out, ind);
                out.push_str(").at[");
                for (i, x) in idx.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.render(out, ind);
                }
                out.push_str(if *add { "].add(" } else { "].set(" });
                v.render(out, ind);
                out.push(')');
            }
            ExprKind::If(c, a, b) => {
                out.push_str("(if ");
                c.render(out, ind);
                out.push(' ');
                a.render(out, ind);
                out.push_str(" else ");
                b.render(out, ind);
                out.push(')');
            }
            ExprKind::Block(b) => {
                out.push('(');
                b.render(out, ind);
                out.push(')');
            }
            ExprKind::Tuple(v) => {
                out.push('(');
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    e.render(out, ind);
                }
                if v.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            ExprKind::Fori { lo, hi, i, pat, body, init, unroll } => {
                out.push_str("fori_loop(");
                lo.render(out, ind);
                out.push_str(", ");
                hi.render(out, ind);
                let _ = write!(out, ", |{i}, {}| ", pat.text());
                body.render(out, ind);
                out.push_str(", ");
                init.render(out, ind);
                if *unroll > 1 {
                    let _ = write!(out, ", unroll: {unroll}");
                }
                out.push(')');
            }
            ExprKind::While { pat, cond, body, init, max_iters } => {
                let _ = write!(out, "while_loop(|{}| ", pat.text());
                cond.render(out, ind);
                let _ = write!(out, ", |{}| ", pat.text());
                body.render(out, ind);
                out.push_str(", ");
                init.render(out, ind);
                if let Some(m) = max_iters {
                    let _ = write!(out, ", max_iters: {m}");
                }
                out.push(')');
            }
            ExprKind::Scan { cpat, xpat, body, init, xs, length, reverse, unroll } => {
                let _ = write!(out, "scan(|{}, {}| ", cpat.text(), xpat.text());
                body.render(out, ind);
                out.push_str(", ");
                init.render(out, ind);
                if let Some(xs) = xs {
                    out.push_str(", ");
                    xs.render(out, ind);
                }
                if let Some(n) = length {
                    let _ = write!(out, ", length: {n}");
                }
                if *reverse {
                    out.push_str(", reverse: true");
                }
                if *unroll > 1 {
                    let _ = write!(out, ", unroll: {unroll}");
                }
                out.push(')');
            }
            ExprKind::Vmap { params, body, args, in_axes, out_axes } => {
                let _ = write!(out, "vmap(|{}| ", params.join(", "));
                body.render(out, ind);
                let axes: Vec<String> =
                    in_axes.iter().map(|a| a.map_or_else(|| "none".to_string(), |k| k.to_string())).collect();
                let _ = write!(out, ", in_axes: [{}], out_axes: {out_axes})(", axes.join(", "));
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    a.render(out, ind);
                }
                out.push(')');
            }
        }
    }
}

impl Block {
    pub(crate) fn render(&self, out: &mut String, ind: usize) {
        let pad = "    ".repeat(ind + 1);
        out.push_str("{\n");
        for (p, e) in &self.lets {
            let _ = write!(out, "{pad}let {} = ", p.text());
            e.render(out, ind + 1);
            out.push_str(";\n");
        }
        out.push_str(&pad);
        self.ret.render(out, ind + 1);
        let _ = write!(out, "\n{}}}", "    ".repeat(ind));
    }
}

impl ProgramTree {
    pub(crate) fn render(&self) -> String {
        let mut used = Vec::new();
        self.main.body.names(&mut used);
        // Functions called (transitively) from main, in definition order.
        let mut live = vec![false; self.fns.len()];
        let mut changed = true;
        while changed {
            changed = false;
            for (i, f) in self.fns.iter().enumerate() {
                if !live[i] && used.contains(&f.name) {
                    live[i] = true;
                    changed = true;
                    f.body.names(&mut used);
                }
            }
        }
        let mut out = String::new();
        for (i, f) in self.fns.iter().enumerate() {
            if live[i] {
                render_fn(f, &mut out);
            }
        }
        let params = self
            .args
            .iter()
            .map(|a| match &a.vars {
                Some(v) => format!("{}: {}[{}]", a.name, a.tt.dt.name(), v.join(", ")),
                None => format!("{}: {}", a.name, a.tt.text()),
            })
            .collect();
        render_fn_with(&self.main, params, &mut out);
        out
    }

    pub(crate) fn arg_texts(&self) -> Vec<String> {
        self.args.iter().map(|a| format!("{}={}", a.name, a.text)).collect()
    }
}

pub(crate) fn render_fn(f: &FunctionDef, out: &mut String) {
    let params: Vec<String> = f.params.iter().map(|(n, t)| format!("{n}: {}", t.text())).collect();
    render_fn_with(f, params, out)
}

/// [`render_fn`] with the parameters written as `params`.
pub(crate) fn render_fn_with(f: &FunctionDef, params: Vec<String>, out: &mut String) {
    let _ = write!(out, "fn {}({}) -> {} ", f.name, params.join(", "), f.ret.text());
    match &f.body.kind {
        ExprKind::Block(b) => b.render(out, 0),
        _ => {
            out.push_str("{\n    ");
            f.body.render(out, 1);
            out.push_str("\n}");
        }
    }
    out.push_str("\n\n");
}

pub(crate) fn nest(dims: &[usize], leaf: &mut dyn FnMut() -> String) -> String {
    match dims.split_first() {
        None => leaf(),
        Some((&n, rest)) => {
            let items: Vec<String> = (0..n).map(|_| nest(rest, leaf)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

pub(crate) fn float_text(v: f64, dt: ElemType) -> String {
    let s = if dt == ElemType::F32 { format!("{:?}", v as f32) } else { format!("{v:?}") };
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

/// The value as a typed source expression.
pub(crate) fn val_text(v: ScalarValue, dt: ElemType) -> String {
    match v {
        ScalarValue::Bool(b) => b.to_string(),
        ScalarValue::Int(i) if i < 0 => format!("({i}{})", dt.name()),
        ScalarValue::Int(i) => format!("{i}{}", dt.name()),
        ScalarValue::Float(f) if f.is_nan() => format!("(0.0{0} / 0.0{0})", dt.name()),
        ScalarValue::Float(f) if f.is_infinite() => {
            format!("({}1.0{1} / 0.0{1})", if f < 0.0 { "-" } else { "" }, dt.name())
        }
        ScalarValue::Float(f) if f.is_sign_negative() => format!("({}{})", float_text(f, dt), dt.name()),
        ScalarValue::Float(f) => format!("{}{}", float_text(f, dt), dt.name()),
    }
}

/// The value as an `--arg` leaf.
pub(crate) fn val_arg(v: ScalarValue, dt: ElemType) -> String {
    match v {
        ScalarValue::Bool(b) => b.to_string(),
        ScalarValue::Int(i) => i.to_string(),
        ScalarValue::Float(f) if f.is_nan() => "nan".into(),
        ScalarValue::Float(f) if f.is_infinite() => if f < 0.0 { "-inf" } else { "inf" }.into(),
        ScalarValue::Float(f) => float_text(f, dt),
    }
}
