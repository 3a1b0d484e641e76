//! Argument literals of spec headers (`# args: x=[[1.0, 2.0]]`) as tensors,
//! for the back ends' spec tests (included with `#[path]`; the root crate's
//! tests use `loopvm::parse_arg_literal` instead).

use loopvm_runtime::{DType, Tensor};

/// Parses a nested list of numbers or bools (`[[1.0, 2.0], [3.0, 4.0]]`, `7`).
pub fn parse_value(s: &str, dtype: DType) -> Tensor {
    fn go(s: &str, shape: &mut Vec<usize>, depth: usize, vals: &mut Vec<String>) {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            let mut parts = vec![];
            let (mut d, mut cur) = (0, String::new());
            for c in inner.chars() {
                match c {
                    '[' => d += 1,
                    ']' => d -= 1,
                    _ => {}
                }
                if c == ',' && d == 0 {
                    parts.push(std::mem::take(&mut cur));
                } else {
                    cur.push(c);
                }
            }
            if !cur.trim().is_empty() {
                parts.push(cur);
            }
            if shape.len() == depth {
                shape.push(parts.len());
            }
            for p in &parts {
                go(p, shape, depth + 1, vals);
            }
        } else {
            // A dtype suffix (`1.5f32`) goes; `inf` and `NaN` stay.
            let v = ["bf16", "f16", "f32", "f64", "i32", "i64", "u32", "u8"]
                .iter()
                .find_map(|suf| s.strip_suffix(suf))
                .unwrap_or(s);
            vals.push(v.to_string());
        }
    }
    let mut shape = vec![];
    let mut vals = vec![];
    go(s, &mut shape, 0, &mut vals);
    let num = |v: &String| v.parse::<f64>().unwrap_or_else(|_| panic!("bad number {v}"));
    match dtype {
        DType::Bool => Tensor::from_vec(&shape, vals.iter().map(|v| v == "true").collect::<Vec<_>>()),
        DType::I32 => Tensor::from_vec(&shape, vals.iter().map(|v| v.parse::<i32>().unwrap()).collect::<Vec<_>>()),
        DType::I64 => Tensor::from_vec(&shape, vals.iter().map(|v| v.parse::<i64>().unwrap()).collect::<Vec<_>>()),
        DType::U32 => Tensor::from_vec(&shape, vals.iter().map(|v| v.parse::<u32>().unwrap()).collect::<Vec<_>>()),
        DType::U8 => Tensor::from_vec(&shape, vals.iter().map(|v| v.parse::<u8>().unwrap()).collect::<Vec<_>>()),
        DType::F32 => Tensor::from_vec(&shape, vals.iter().map(|v| num(v) as f32).collect::<Vec<_>>()),
        DType::F64 => Tensor::from_vec(&shape, vals.iter().map(num).collect::<Vec<_>>()),
        DType::BF16 => {
            Tensor::from_vec(&shape, vals.iter().map(|v| loopvm_runtime::bf16::from_f64(num(v))).collect::<Vec<_>>())
        }
        DType::F16 => {
            Tensor::from_vec(&shape, vals.iter().map(|v| loopvm_runtime::f16::from_f64(num(v))).collect::<Vec<_>>())
        }
    }
    .unwrap()
}
