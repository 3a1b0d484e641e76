//! Semantic types: tensors with dims that are numbers or shape variables,
//! tuples, NumPy broadcasting.

use loopvm_runtime::{rules, DType};
use std::fmt;

/// One dimension: a known size, or a shape variable (symbolic in `main`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A number.
    Known(u64),
    /// A shape variable, by name.
    Var(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Var(v) => f.write_str(v),
        }
    }
}

impl Dim {
    /// The size, when known.
    pub fn known(&self) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Var(_) => None,
        }
    }

    /// The dim as a monomial: an integer factor and the shape variables
    /// multiplied, sorted. A product of shape variables (what `reshape(x,
    /// [B * T])` makes) is a [`Dim::Var`] whose name is the product written
    /// in this canonical form, `B*T` or `2*B*T` (a name the user cannot
    /// write, since shape variables are identifiers), so that two equal
    /// products are one dim and a function called with one binds its
    /// variable to it (`f<N=B*T>`). The bytecode keeps the name; the VM
    /// computes its value from the factors (`Module::symbol_value`).
    pub fn factors(&self) -> (u64, Vec<String>) {
        match self {
            Dim::Known(n) => (*n, Vec::new()),
            Dim::Var(v) => {
                let mut k = 1u64;
                let mut vars = Vec::new();
                for f in v.split('*') {
                    match f.parse::<u64>() {
                        Ok(n) => k = k.saturating_mul(n),
                        Err(_) => vars.push(f.to_string()),
                    }
                }
                vars.sort();
                (k, vars)
            }
        }
    }

    /// The dim of a monomial (the inverse of [`Dim::factors`]): `Known` with
    /// no variables or a zero factor, the variable itself for `1 · V`, else
    /// the canonical product.
    pub fn monomial(k: u64, mut vars: Vec<String>) -> Dim {
        vars.sort();
        if vars.is_empty() || k == 0 {
            return Dim::Known(k);
        }
        if k == 1 && vars.len() == 1 {
            return Dim::Var(vars.remove(0));
        }
        let mut name = if k == 1 { String::new() } else { format!("{k}*") };
        name.push_str(&vars.join("*"));
        Dim::Var(name)
    }

    /// The product of `dims` as a monomial (`None` if its integer factor
    /// overflows `u64`).
    pub fn product<'d>(dims: impl IntoIterator<Item = &'d Dim>) -> Option<(u64, Vec<String>)> {
        let mut k = 1u64;
        let mut vars = Vec::new();
        for d in dims {
            let (n, v) = d.factors();
            k = k.checked_mul(n)?;
            vars.extend(v);
        }
        vars.sort();
        Some((k, vars))
    }
}

/// The type of one tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorTy {
    /// The element type.
    pub dtype: DType,
    /// The shape (empty for a scalar).
    pub dims: Vec<Dim>,
}

impl TensorTy {
    /// A scalar of `dtype`.
    pub fn scalar(dtype: DType) -> TensorTy {
        TensorTy { dtype, dims: Vec::new() }
    }
    /// A tensor with known dims.
    pub fn known(dtype: DType, dims: &[u64]) -> TensorTy {
        TensorTy { dtype, dims: dims.iter().map(|d| Dim::Known(*d)).collect() }
    }
    /// The rank.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
    /// `true` for rank 0.
    pub fn is_scalar(&self) -> bool {
        self.dims.is_empty()
    }
    /// The dims as numbers, when all are known.
    pub fn known_dims(&self) -> Option<Vec<u64>> {
        self.dims.iter().map(Dim::known).collect()
    }
    /// The same shape with another dtype.
    pub fn with_dtype(&self, dtype: DType) -> TensorTy {
        TensorTy { dtype, dims: self.dims.clone() }
    }
}

impl fmt::Display for TensorTy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dtype.as_str())?;
        if !self.dims.is_empty() {
            f.write_str("[")?;
            for (i, d) in self.dims.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{d}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// The type of a value: a tensor or a (nested) tuple.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    /// One tensor.
    Tensor(TensorTy),
    /// A tuple; `()` is the unit value (of `print`, for example).
    Tuple(Vec<Type>),
}

impl Type {
    /// The unit type `()`.
    pub fn unit() -> Type {
        Type::Tuple(Vec::new())
    }
    /// A scalar of `dtype`.
    pub fn scalar(dtype: DType) -> Type {
        Type::Tensor(TensorTy::scalar(dtype))
    }
    /// The tensor type, if this is one.
    pub fn tensor(&self) -> Option<&TensorTy> {
        match self {
            Type::Tensor(t) => Some(t),
            Type::Tuple(_) => None,
        }
    }
    /// The tensor leaves, depth-first (the order registers use).
    pub fn leaves(&self) -> Vec<&TensorTy> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }
    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a TensorTy>) {
        match self {
            Type::Tensor(t) => out.push(t),
            Type::Tuple(ts) => ts.iter().for_each(|t| t.collect_leaves(out)),
        }
    }
    /// The number of tensor leaves.
    pub fn num_leaves(&self) -> usize {
        match self {
            Type::Tensor(_) => 1,
            Type::Tuple(ts) => ts.iter().map(Type::num_leaves).sum(),
        }
    }
    /// Applies `f` to every leaf, keeping the tuple structure.
    pub fn map_leaves(&self, f: &mut dyn FnMut(&TensorTy) -> TensorTy) -> Type {
        match self {
            Type::Tensor(t) => Type::Tensor(f(t)),
            Type::Tuple(ts) => Type::Tuple(ts.iter().map(|t| t.map_leaves(f)).collect()),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Tensor(t) => write!(f, "{t}"),
            Type::Tuple(ts) => {
                f.write_str("(")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                if ts.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl rules::Extent for Dim {
    fn known(&self) -> Option<u64> {
        Dim::known(self)
    }
    fn from_known(n: u64) -> Option<Dim> {
        Some(Dim::Known(n))
    }
}

/// Two dims that do not broadcast (`a` from the left shape, `b` from the right).
pub type BroadcastConflict = rules::BroadcastConflict<Dim>;

/// NumPy broadcasting of two shapes, aligned on the right ([`rules::broadcast`]).
///
/// Equal dims match; a known `1` stretches to the other dim; anything else is
/// a conflict, including a shape variable against a different variable or a
/// known size other than 1 (the sizes could differ at run time, so loopvm
/// refuses them statically).
pub fn broadcast_dims(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, BroadcastConflict> {
    rules::broadcast(a, b)
}

/// Whether `from` broadcasts to exactly `to` (NumPy `broadcast_to`; [`rules::broadcasts_to`]).
pub fn broadcasts_to(from: &[Dim], to: &[Dim]) -> bool {
    rules::broadcasts_to(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_shape_variables_are_canonical_monomials() {
        let v = |s: &str| Dim::Var(s.to_string());
        let (b, t) = (v("B"), v("T"));
        let prod = |ds: &[&Dim]| {
            let (k, vs) = Dim::product(ds.iter().copied()).unwrap();
            Dim::monomial(k, vs)
        };
        assert_eq!(prod(&[&t, &b]), v("B*T"));
        assert_eq!(prod(&[&b, &t]), prod(&[&t, &b]));
        assert_eq!(prod(&[&Dim::Known(2), &t, &b]), v("2*B*T"));
        assert_eq!(prod(&[&Dim::Known(1), &t]), t);
        assert_eq!(prod(&[&Dim::Known(2), &Dim::Known(3)]), Dim::Known(6));
        assert_eq!(prod(&[&Dim::Known(0), &t]), Dim::Known(0));
        assert_eq!(v("2*B*T").factors(), (2, vec!["B".to_string(), "T".to_string()]));
        assert_eq!(prod(&[&v("B*T"), &v("2*D")]), v("2*B*D*T"));
        assert_eq!(Dim::product([&Dim::Known(u64::MAX), &Dim::Known(2)]), None);
    }

    #[test]
    fn the_rules_on_symbolic_dims() {
        let v = |s: &str| Dim::Var(s.to_string());
        let k = Dim::Known;
        assert_eq!(broadcast_dims(&[v("N"), k(1)], &[k(3)]), Ok(vec![v("N"), k(3)]));
        assert_eq!(broadcast_dims(&[v("N")], &[v("M")]), Err(BroadcastConflict { a: v("N"), b: v("M") }));
        assert_eq!(broadcast_dims(&[k(2)], &[v("N")]), Err(BroadcastConflict { a: k(2), b: v("N") }));
        assert!(broadcasts_to(&[k(1), v("N")], &[k(4), k(1), v("N")]));
        assert!(!broadcasts_to(&[v("N")], &[k(4)]));
        let mm = rules::matmul(&[v("B"), v("N")], &[v("N"), k(2)]).unwrap();
        assert_eq!(mm.dims::<Vec<Dim>>(), vec![v("B"), k(2)]);
        assert_eq!(rules::matmul(&[v("N")], &[v("M")]), Err(rules::MatmulError::Inner(v("N"), v("M"))));
        let one = [k(3), v("N")];
        assert_eq!(rules::concat([((), &one[..])], 1), Ok(one.to_vec()));
        assert_eq!(rules::concat([((), &one[..]), ((), &one[..])], 1), Err(rules::JoinError::Symbolic));
        assert_eq!(rules::concat([((), &one[..]), ((), &one[..])], 0), Ok(vec![k(6), v("N")]));
        assert_eq!(rules::stack([((), &one[..]), ((), &one[..])], 2), Ok(vec![k(3), v("N"), k(2)]));
        assert_eq!(rules::reshape(&one, &[None]), Err(rules::ReshapeError::Symbolic));
    }
}
