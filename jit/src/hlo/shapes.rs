//! Shape rules of the kernels, restated for the emitter (the runtime keeps
//! its own private), all returning `None` instead of failing.

use loopvm_runtime::checked_numel;

/// The NumPy broadcast of two shapes, or `None` when they do not broadcast
/// or the result is too large.
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    checked_numel(&out).ok()?;
    Some(out)
}

/// `true` when `shape` broadcasts to exactly `target` (NumPy rules).
pub(crate) fn broadcasts_to(shape: &[usize], target: &[usize]) -> bool {
    shape.len() <= target.len() && shape.iter().rev().zip(target.iter().rev()).all(|(&s, &t)| s == t || s == 1)
}

/// Python's `slice(start, stop, step).indices(len)` reduced to the first
/// position and the number of positions; `None` when `step` is 0.
pub(crate) fn python_range(len: i128, start: Option<i64>, stop: Option<i64>, step: i64) -> Option<(i128, usize)> {
    if step == 0 {
        return None;
    }
    let step = step as i128;
    let clip = |v: i64, lo: i128, hi: i128| {
        let v = v as i128;
        let v = if v < 0 { v + len } else { v };
        v.clamp(lo, hi)
    };
    let (first, count) = if step > 0 {
        let b = start.map_or(0, |v| clip(v, 0, len));
        let e = stop.map_or(len, |v| clip(v, 0, len));
        (b, if e > b { (e - b + step - 1) / step } else { 0 })
    } else {
        let b = start.map_or(len - 1, |v| clip(v, -1, len - 1));
        let e = stop.map_or(-1, |v| clip(v, -1, len - 1));
        (b, if b > e { (b - e - step - 1) / -step } else { 0 })
    };
    Some((first, usize::try_from(count).ok()?))
}

/// The element count of `shape`, or `None` when it overflows.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    checked_numel(shape).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(broadcast(&[3, 1], &[4]), Some(vec![3, 4]));
        assert_eq!(broadcast(&[], &[2, 2]), Some(vec![2, 2]));
        assert_eq!(broadcast(&[3], &[4]), None);
        assert!(broadcasts_to(&[1, 3], &[2, 2, 3]));
        assert!(!broadcasts_to(&[2, 3], &[3]));
        assert_eq!(python_range(5, None, None, -1), Some((4, 5)));
        assert_eq!(python_range(5, Some(1), None, 2), Some((1, 2)));
        assert_eq!(python_range(5, Some(9), None, 1), Some((5, 0)));
        assert_eq!(python_range(5, None, None, 0), None);
    }
}
