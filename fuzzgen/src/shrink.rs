//! Shrinking: a mismatching program simplified step by step (statements
//! dropped, subexpressions replaced by zeros or a same-typed child, loop
//! options reset, arguments zeroed) while the tier still disagrees the same way.

use crate::print::nest;
use crate::run::{differs, DiffKind, Limits};
use crate::tree::{is_weak, simplest, ElemType, Expr, ExprKind, ProgramTree, TensorType};
use loopvm_api::Tier;
use std::io::Write;
use std::time::{Duration, Instant};

/// One simplification of the program.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Candidate {
    /// Transform `t` of expression node `n` (preorder over every function).
    Node(usize, usize),
    /// Argument `j` of `main` to zeros.
    Arg(usize),
    /// Drop function `f` (when nothing calls it).
    DropFn(usize),
}

pub(crate) fn shrink(
    orig: &ProgramTree,
    tier: Tier,
    kind: DiffKind,
    l: &Limits,
    budget: Duration,
    log: &mut dyn Write,
) -> ProgramTree {
    let start = Instant::now();
    let mut best = orig.clone();
    let mut tries = 0u64;
    let mut accepted = 0u64;
    'outer: loop {
        let n = best.node_count();
        let mut cands = Vec::new();
        for j in 0..best.args.len() {
            if !best.args[j].simple {
                cands.push(Candidate::Arg(j));
            }
        }
        for f in 0..best.fns.len() {
            cands.push(Candidate::DropFn(f));
        }
        for node in 0..n {
            let k = best.node_transforms(node);
            for t in 0..k {
                cands.push(Candidate::Node(node, t));
            }
        }
        for c in cands {
            if start.elapsed() > budget {
                break 'outer;
            }
            let Some(next) = best.apply(c) else { continue };
            tries += 1;
            if let Some((k, ..)) = differs(&next, tier, l) {
                if k == kind {
                    best = next;
                    accepted += 1;
                    continue 'outer;
                }
            }
        }
        break;
    }
    let _ =
        writeln!(log, "fuzz: shrinking: {tries} tries, {accepted} accepted, {:.1} s", start.elapsed().as_secs_f64());
    best
}

impl ProgramTree {
    pub(crate) fn node_count(&self) -> usize {
        let mut n = 0;
        self.clone().for_each_node(&mut |_| n += 1);
        n
    }

    pub(crate) fn node_transforms(&self, node: usize) -> usize {
        let mut k = 0;
        let mut count = 0;
        self.clone().for_each_node(&mut |e| {
            if k == node {
                count = transforms(e).len();
            }
            k += 1;
        });
        count
    }

    pub(crate) fn apply(&self, c: Candidate) -> Option<ProgramTree> {
        let mut p = self.clone();
        match c {
            Candidate::Arg(j) => {
                let a = &mut p.args[j];
                a.text = arg_zeros(&a.tt);
                a.simple = true;
                Some(p)
            }
            Candidate::DropFn(f) => {
                let mut used = Vec::new();
                for (i, d) in p.fns.iter().enumerate() {
                    if i != f {
                        d.body.names(&mut used);
                    }
                }
                p.main.body.names(&mut used);
                if used.contains(&p.fns[f].name) {
                    return None;
                }
                p.fns.remove(f);
                Some(p)
            }
            Candidate::Node(node, t) => {
                let mut k = 0;
                let mut ok = false;
                p.for_each_node(&mut |e| {
                    if k == node {
                        ok = apply_transform(e, t);
                    }
                    k += 1;
                });
                ok.then_some(p)
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Transform {
    /// Replace by the simplest literal of the type.
    Zero,
    /// Replace by child `k` (when it has the same type).
    Child(usize),
    /// Drop statement `j` of owned block `b` (when its names are unused).
    DropLet(usize, usize),
    /// Loop options to their defaults.
    Plain,
}

pub(crate) fn transforms(e: &mut Expr) -> Vec<Transform> {
    let mut v = Vec::new();
    if !matches!(e.kind, ExprKind::Literal { simple: true, .. }) && !is_simple_tuple(e) {
        v.push(Transform::Zero);
    }
    let ty = e.ty.clone();
    for (i, c) in e.children_mut().into_iter().enumerate() {
        if c.ty == ty && !is_weak(c) {
            v.push(Transform::Child(i));
        }
    }
    for (b, blk) in e.blocks_mut().into_iter().enumerate() {
        for j in 0..blk.lets.len() {
            v.push(Transform::DropLet(b, j));
        }
    }
    match &e.kind {
        ExprKind::Fori { unroll, .. } if *unroll > 1 => v.push(Transform::Plain),
        ExprKind::Scan { reverse, unroll, .. } if *reverse || *unroll > 1 => v.push(Transform::Plain),
        ExprKind::While { max_iters: Some(_), .. } => v.push(Transform::Plain),
        _ => {}
    }
    v
}

pub(crate) fn is_simple_tuple(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Tuple(v) => {
            v.iter().all(|c| matches!(c.kind, ExprKind::Literal { simple: true, .. }) || is_simple_tuple(c))
        }
        _ => false,
    }
}

pub(crate) fn apply_transform(e: &mut Expr, t: usize) -> bool {
    let ts = transforms(e);
    let Some(&tf) = ts.get(t) else { return false };
    match tf {
        Transform::Zero => *e = simplest(&e.ty),
        Transform::Child(i) => {
            let c = e.children_mut().into_iter().nth(i).map(|c| c.clone());
            match c {
                Some(c) => *e = c,
                None => return false,
            }
        }
        Transform::DropLet(b, j) => {
            let mut blocks = e.blocks_mut();
            let Some(blk) = blocks.get_mut(b) else { return false };
            let mut bound = Vec::new();
            blk.lets[j].0.names(&mut bound);
            let mut used = Vec::new();
            for (_, x) in &blk.lets[j + 1..] {
                x.names(&mut used);
            }
            blk.ret.names(&mut used);
            if bound.iter().any(|n| used.contains(n)) {
                return false;
            }
            blk.lets.remove(j);
        }
        Transform::Plain => match &mut e.kind {
            ExprKind::Fori { unroll, .. } => *unroll = 1,
            ExprKind::Scan { reverse, unroll, .. } => {
                *reverse = false;
                *unroll = 1;
            }
            ExprKind::While { max_iters, .. } => *max_iters = None,
            _ => return false,
        },
    }
    true
}

pub(crate) fn arg_zeros(t: &TensorType) -> String {
    let leaf = match t.dt {
        ElemType::Bool => "false",
        ElemType::I32 | ElemType::I64 | ElemType::U32 | ElemType::U8 => "0",
        ElemType::F32 | ElemType::F64 | ElemType::BF16 | ElemType::F16 => "0.0",
    };
    nest(&t.dims, &mut || leaf.to_string())
}
