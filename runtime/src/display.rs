//! Printing and comparing tensors: type strings for error messages, the
//! `Display` form the VM prints, trace summaries, and the closeness test the
//! differential tester uses.

use crate::{Buffer, Element, Tensor};
use std::fmt::{self, Write as _};

impl Tensor {
    /// The tensor's type as written in source and errors: `f32[2, 3]`, or
    /// just `f32` for rank 0.
    pub fn type_string(&self) -> String {
        let mut s = String::from(self.dtype().as_str());
        if self.rank() > 0 {
            s.push('[');
            for (i, d) in self.shape().iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{d}");
            }
            s.push(']');
        }
        s
    }

    /// The type followed by up to `max_elems` elements in row-major order,
    /// flat, with `...` when some were left out: `f32[100] [0.0, 1.0, ...]`,
    /// `i32 3` for a scalar. For the VM's `--trace`.
    pub fn summary(&self, max_elems: usize) -> String {
        let mut s = self.type_string();
        s.push(' ');
        if self.rank() == 0 {
            for_each_elem(self.buffer(), 1, |_, e| s.push_str(e));
            return s;
        }
        s.push('[');
        let n = self.numel();
        for_each_elem(self.buffer(), max_elems, |i, e| {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(e);
        });
        if n > max_elems {
            s.push_str(if max_elems > 0 { ", ..." } else { "..." });
        }
        s.push(']');
        s
    }

    /// The elements converted to `f64` (bools as 0 or 1), row-major.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        fn conv<T: Element>(v: &[T]) -> Vec<f64> {
            v.iter().map(|&x| x.to_f64()).collect()
        }
        match self.buffer() {
            Buffer::Bool(v) => conv(v),
            Buffer::I32(v) => conv(v),
            Buffer::I64(v) => conv(v),
            Buffer::F32(v) => conv(v),
            Buffer::F64(v) => conv(v),
            Buffer::U32(v) => conv(v),
            Buffer::U8(v) => conv(v),
            Buffer::BF16(v) => conv(v),
            Buffer::F16(v) => conv(v),
        }
    }

    /// `true` when both tensors have the same dtype and shape and equal
    /// elements: exactly for integers and bools; for floats within
    /// `|a - b| <= atol + rtol * |b|`, where NaN equals NaN and infinities
    /// must match exactly (the rule of [`crate::compare`], `other` the reference).
    pub fn all_close(&self, other: &Tensor, rtol: f64, atol: f64) -> bool {
        crate::compare::first_difference_with(other, self, crate::compare::Tolerance { rtol, atol }).is_none()
    }
}

/// Calls `f(i, text)` for the first `limit` elements in order, formatted
/// with `{:?}` (so floats always show a decimal point or `NaN` / `inf`).
fn for_each_elem(b: &Buffer, limit: usize, mut f: impl FnMut(usize, &str)) {
    fn go<T: Element>(v: &[T], limit: usize, f: &mut impl FnMut(usize, &str)) {
        let mut s = String::new();
        for (i, x) in v.iter().take(limit).enumerate() {
            s.clear();
            let _ = write!(s, "{x:?}");
            f(i, &s);
        }
    }
    match b {
        Buffer::Bool(v) => go(v, limit, &mut f),
        Buffer::I32(v) => go(v, limit, &mut f),
        Buffer::I64(v) => go(v, limit, &mut f),
        Buffer::F32(v) => go(v, limit, &mut f),
        Buffer::F64(v) => go(v, limit, &mut f),
        Buffer::U32(v) => go(v, limit, &mut f),
        Buffer::U8(v) => go(v, limit, &mut f),
        Buffer::BF16(v) => go(v, limit, &mut f),
        Buffer::F16(v) => go(v, limit, &mut f),
    }
}

/// Writes the elements of `v` (laid out as `shape`) as nested lists.
fn write_nested<T: Element>(f: &mut fmt::Formatter<'_>, shape: &[usize], v: &[T]) -> fmt::Result {
    let Some((&d, rest)) = shape.split_first() else {
        return match v.first() {
            Some(x) => write!(f, "{x:?}"),
            None => Ok(()),
        };
    };
    let step: usize = rest.iter().product();
    f.write_str("[")?;
    for i in 0..d {
        if i > 0 {
            f.write_str(", ")?;
        }
        let start = i.saturating_mul(step);
        let part = v.get(start..start.saturating_add(step)).unwrap_or(&[]);
        write_nested(f, rest, part)?;
    }
    f.write_str("]")
}

impl fmt::Display for Tensor {
    /// `i32[2] [1, 2]`, `f32[2, 2] [[1.0, 2.0], [3.0, 4.0]]`, `bool true`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.type_string())?;
        let shape = self.shape();
        match self.buffer() {
            Buffer::Bool(v) => write_nested(f, shape, v),
            Buffer::I32(v) => write_nested(f, shape, v),
            Buffer::I64(v) => write_nested(f, shape, v),
            Buffer::F32(v) => write_nested(f, shape, v),
            Buffer::F64(v) => write_nested(f, shape, v),
            Buffer::U32(v) => write_nested(f, shape, v),
            Buffer::U8(v) => write_nested(f, shape, v),
            Buffer::BF16(v) => write_nested(f, shape, v),
            Buffer::F16(v) => write_nested(f, shape, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    #[test]
    fn display_forms() {
        assert_eq!(Tensor::from_vec(&[1], vec![51i32]).unwrap().to_string(), "i32[1] [51]");
        let m = Tensor::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(m.to_string(), "f32[2, 2] [[1.0, 2.0], [3.0, 4.0]]");
        assert_eq!(Tensor::scalar(true).to_string(), "bool true");
        assert_eq!(Tensor::scalar(9.0f64).to_string(), "f64 9.0");
        let odd = Tensor::from_vec(&[3], vec![f32::NAN, f32::INFINITY, -0.5]).unwrap();
        assert_eq!(odd.to_string(), "f32[3] [NaN, inf, -0.5]");
        assert_eq!(Tensor::zeros(DType::I64, &[2, 0]).unwrap().to_string(), "i64[2, 0] [[], []]");
        assert_eq!(Tensor::zeros(DType::I64, &[0, 2]).unwrap().to_string(), "i64[0, 2] []");
        assert_eq!(Tensor::scalar(-3i64).type_string(), "i64");
    }

    #[test]
    fn summaries() {
        let t = Tensor::from_vec(&[2, 3], (0..6).collect::<Vec<i32>>()).unwrap();
        assert_eq!(t.summary(4), "i32[2, 3] [0, 1, 2, 3, ...]");
        assert_eq!(t.summary(6), "i32[2, 3] [0, 1, 2, 3, 4, 5]");
        assert_eq!(t.summary(0), "i32[2, 3] [...]");
        assert_eq!(Tensor::scalar(1.5f32).summary(3), "f32 1.5");
    }

    #[test]
    fn closeness() {
        let a = Tensor::from_vec(&[3], vec![1.0f32, f32::NAN, f32::INFINITY]).unwrap();
        let b = Tensor::from_vec(&[3], vec![1.0f32 + 1e-7, f32::NAN, f32::INFINITY]).unwrap();
        assert!(a.all_close(&b, 1e-5, 1e-6));
        let c = Tensor::from_vec(&[3], vec![1.1f32, f32::NAN, f32::INFINITY]).unwrap();
        assert!(!a.all_close(&c, 1e-5, 1e-6));
        let d = Tensor::from_vec(&[3], vec![1.0f32, 0.0, f32::INFINITY]).unwrap();
        assert!(!a.all_close(&d, 1e-5, 1e-6));
        let i = Tensor::from_vec(&[2], vec![1i32, 2]).unwrap();
        assert!(i.all_close(&i.clone(), 0.0, 0.0));
        assert!(!i.all_close(&Tensor::from_vec(&[2], vec![1i32, 3]).unwrap(), 1.0, 1.0));
        assert!(!i.all_close(&Tensor::from_vec(&[2], vec![1i64, 2]).unwrap(), 1.0, 1.0));
        assert!(!i.all_close(&Tensor::from_vec(&[1, 2], vec![1i32, 2]).unwrap(), 1.0, 1.0));
        assert_eq!(Tensor::scalar(true).to_f64_vec(), vec![1.0]);
    }
}
