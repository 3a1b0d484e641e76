//! `--arg name=value` parsing: a scalar or nested list literal converted to
//! the parameter's dtype, or `@file.npy`.

use crate::error::Error;
use loopvm_runtime::{DType, Tensor};
use loopvm_vm::{Func, TypeTree};
use std::path::Path;

/// Deepest list nesting accepted in an argument literal.
const MAX_DEPTH: usize = 32;

/// Parses a scalar or nested list literal (`3`, `[1, 2]`, `[[1.5, nan], [inf, -2]]`,
/// `true`) into a tensor of `dtype`.
pub fn parse_arg_literal(text: &str, dtype: DType) -> Result<Tensor, Error> {
    let mut p = LitParser { s: text.as_bytes(), pos: 0 };
    let lit = p.value(0).map_err(Error::arg)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(Error::arg(format!("unexpected text after the value at column {}", p.pos + 1)));
    }
    let mut shape = Vec::new();
    let mut cur = &lit;
    while let Lit::List(items) = cur {
        shape.push(items.len());
        match items.first() {
            Some(first) => cur = first,
            None => return Err(Error::arg("empty lists are not supported as arguments")),
        }
    }
    let mut leaves = Vec::new();
    flatten(&lit, &shape, &mut leaves).map_err(Error::arg)?;
    let conv = |tok: &str| -> Result<f64, Error> {
        match tok {
            "nan" | "NaN" => Ok(f64::NAN),
            "inf" | "+inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => tok.parse().map_err(|_| Error::arg(format!("`{tok}` is not a number"))),
        }
    };
    let int =
        |tok: &str| -> Result<i64, Error> { tok.parse().map_err(|_| Error::arg(format!("`{tok}` is not an integer"))) };
    let t = match dtype {
        DType::Bool => Tensor::from_vec(
            &shape,
            leaves
                .iter()
                .map(|t| match *t {
                    "true" | "1" => Ok(true),
                    "false" | "0" => Ok(false),
                    _ => Err(Error::arg(format!("`{t}` is not a bool"))),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        DType::I32 => Tensor::from_vec(
            &shape,
            leaves
                .iter()
                .map(|t| {
                    int(t).and_then(|v| i32::try_from(v).map_err(|_| Error::arg(format!("`{t}` does not fit in i32"))))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        DType::I64 => Tensor::from_vec(&shape, leaves.iter().map(|t| int(t)).collect::<Result<Vec<_>, _>>()?),
        DType::U8 => Tensor::from_vec(
            &shape,
            leaves
                .iter()
                .map(|t| {
                    int(t).and_then(|v| u8::try_from(v).map_err(|_| Error::arg(format!("`{t}` does not fit in u8"))))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        DType::U32 => Tensor::from_vec(
            &shape,
            leaves
                .iter()
                .map(|t| {
                    int(t).and_then(|v| u32::try_from(v).map_err(|_| Error::arg(format!("`{t}` does not fit in u32"))))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        DType::F32 => {
            Tensor::from_vec(&shape, leaves.iter().map(|t| conv(t).map(|v| v as f32)).collect::<Result<Vec<_>, _>>()?)
        }
        DType::F64 => Tensor::from_vec(&shape, leaves.iter().map(|t| conv(t)).collect::<Result<Vec<_>, _>>()?),
        // Rounded once, from the decimal's `f64` value, to nearest even.
        DType::BF16 => Tensor::from_vec(
            &shape,
            leaves.iter().map(|t| conv(t).map(loopvm_runtime::bf16::from_f64)).collect::<Result<Vec<_>, _>>()?,
        ),
        DType::F16 => Tensor::from_vec(
            &shape,
            leaves.iter().map(|t| conv(t).map(loopvm_runtime::f16::from_f64)).collect::<Result<Vec<_>, _>>()?,
        ),
    };
    t.map_err(|e| Error::arg(e.to_string()))
}

enum Lit<'a> {
    Leaf(&'a str),
    List(Vec<Lit<'a>>),
}

fn flatten<'a>(l: &Lit<'a>, shape: &[usize], out: &mut Vec<&'a str>) -> Result<(), String> {
    match (l, shape.split_first()) {
        (Lit::Leaf(t), None) => {
            out.push(t);
            Ok(())
        }
        (Lit::List(items), Some((&n, rest))) if items.len() == n => {
            items.iter().try_for_each(|i| flatten(i, rest, out))
        }
        _ => Err("ragged list: every row must have the same length and depth".into()),
    }
}

struct LitParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> LitParser<'a> {
    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Lit<'a>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("lists nested deeper than {MAX_DEPTH}"));
        }
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'[') {
            self.pos += 1;
            let mut items = Vec::new();
            self.skip_ws();
            if self.s.get(self.pos) == Some(&b']') {
                self.pos += 1;
                return Ok(Lit::List(items));
            }
            loop {
                items.push(self.value(depth + 1)?);
                self.skip_ws();
                match self.s.get(self.pos) {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        return Ok(Lit::List(items));
                    }
                    _ => return Err(format!("expected `,` or `]` at column {}", self.pos + 1)),
                }
            }
        }
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|c| c.is_ascii_alphanumeric() || b"+-._".contains(c)) {
            self.pos += 1;
        }
        let tok = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| "not UTF-8".to_string())?;
        if tok.is_empty() {
            return Err(format!("expected a number or `[` at column {}", self.pos + 1));
        }
        Ok(Lit::Leaf(tok))
    }
}

/// Builds the flattened argument tensors of `func` from `name=value` strings,
/// in parameter order.
pub fn parse_args(func: &Func, symbols: &[String], args: &[String]) -> Result<Vec<Tensor>, Error> {
    let mut given: Vec<(String, String)> = Vec::new();
    for a in args {
        let (k, v) = a.split_once('=').ok_or_else(|| Error::arg(format!("`{a}` is not of the form name=value")))?;
        if given.iter().any(|(n, _)| n == k) {
            return Err(Error::arg(format!("`{k}` given twice")));
        }
        given.push((k.trim().to_string(), v.to_string()));
    }
    for (k, _) in &given {
        if !func.params.iter().any(|p| &p.name == k) {
            let names: Vec<&str> = func.params.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::arg(format!(
                "`{}` has no parameter `{k}` (parameters: {})",
                func.name,
                names.join(", ")
            )));
        }
    }
    let mut out = Vec::new();
    for p in &func.params {
        let (_, text) = given
            .iter()
            .find(|(n, _)| n == &p.name)
            .ok_or_else(|| Error::arg(format!("missing `--arg {}=...` ({})", p.name, p.ty.display(symbols))))?;
        let TypeTree::Tensor(ty) = &p.ty else {
            return Err(Error::arg(format!(
                "`{}` is a tuple; tuple arguments are not supported on the command line",
                p.name
            )));
        };
        let t = if let Some(path) = text.strip_prefix('@') {
            loopvm_runtime::npy::read_file(Path::new(path))
                .map_err(|e| Error::arg(format!("`{}`: {path}: {}", p.name, e.message)))?
        } else {
            parse_arg_literal(text, ty.dtype).map_err(|e| Error::arg(format!("`{}`: {}", p.name, strip(&e))))?
        };
        out.push(t);
    }
    Ok(out)
}

fn strip(e: &Error) -> String {
    e.to_string().trim_start_matches("error: argument: ").to_string()
}
