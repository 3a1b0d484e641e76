//! Values as the source sees them: tensors and (nested) tuples.

use loopvm_runtime::Tensor;
use loopvm_vm::TypeTree;
use std::fmt;

/// A tensor or a tuple of values.
#[derive(Clone, Debug)]
pub enum Value {
    /// One tensor.
    Tensor(Tensor),
    /// A tuple (empty for "nothing").
    Tuple(Vec<Value>),
}

impl Value {
    /// Rebuilds the tuple structure of `ty` from flattened tensors.
    pub fn from_leaves(ty: &TypeTree, leaves: &mut impl Iterator<Item = Tensor>) -> Option<Value> {
        Some(match ty {
            TypeTree::Tensor(_) => Value::Tensor(leaves.next()?),
            TypeTree::Tuple(ts) => {
                Value::Tuple(ts.iter().map(|t| Value::from_leaves(t, leaves)).collect::<Option<_>>()?)
            }
        })
    }

    /// The tensors, depth-first.
    pub fn leaves(&self) -> Vec<&Tensor> {
        match self {
            Value::Tensor(t) => vec![t],
            Value::Tuple(vs) => vs.iter().flat_map(|v| v.leaves()).collect(),
        }
    }

    /// The tensor, when this is one.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            Value::Tuple(_) => None,
        }
    }

    /// The JSON form: `{"dtype": "i32", "shape": [1], "data": [51]}` for a
    /// tensor (NaN and infinities as strings) and an array for a tuple.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Value as J};
        match self {
            Value::Tensor(t) => {
                let data: Vec<J> = match t.buffer() {
                    loopvm_runtime::Buffer::Bool(v) => v.iter().map(|b| J::Bool(*b)).collect(),
                    loopvm_runtime::Buffer::I32(v) => v.iter().map(|x| json!(x)).collect(),
                    loopvm_runtime::Buffer::I64(v) => v.iter().map(|x| json!(x)).collect(),
                    loopvm_runtime::Buffer::U32(v) => v.iter().map(|x| json!(x)).collect(),
                    loopvm_runtime::Buffer::U8(v) => v.iter().map(|x| json!(x)).collect(),
                    loopvm_runtime::Buffer::F32(v) => v.iter().map(|x| float_json(f64::from(*x))).collect(),
                    loopvm_runtime::Buffer::F64(v) => v.iter().map(|x| float_json(*x)).collect(),
                    loopvm_runtime::Buffer::BF16(v) => v.iter().map(|x| float_json(x.to_f64())).collect(),
                    loopvm_runtime::Buffer::F16(v) => v.iter().map(|x| float_json(x.to_f64())).collect(),
                };
                json!({"dtype": t.dtype().as_str(), "shape": t.shape(), "data": data})
            }
            Value::Tuple(vs) => J::Array(vs.iter().map(Value::to_json).collect()),
        }
    }
}

fn float_json(x: f64) -> serde_json::Value {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Tensor(t) => write!(f, "{t}"),
            Value::Tuple(vs) => {
                f.write_str("(")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                if vs.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
        }
    }
}
