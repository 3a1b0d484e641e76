//! Fallible tensor allocation: running out of memory is an error, not an
//! abort.
//!
//! Every tensor buffer the runtime allocates goes through [`try_zeros`] (or
//! [`try_copy`]), which first refuses a tensor larger than
//! [`max_tensor_bytes`] (the machine's memory: with Linux overcommit a huge
//! allocation may *succeed* and the process be killed when it touches the
//! pages) and then allocates with the allocator's failure reported instead
//! of aborting.
//!
//! Kernels get their result buffers from [`crate::out_buffer`], which hands
//! out a slice, not a `Result`. When it cannot allocate inside a kernel
//! called through [`crate::kernels`], it unwinds with a private payload
//! (without running the panic hook: nothing is printed) that the kernel's
//! entry point ([`catch_oom`]) turns back into an out-of-memory
//! [`RuntimeError`]. Outside such an entry point (a kernel's internals
//! called directly), it allocates infallibly as before.
//!
//! A buffer of [`HUGE_PAGE_BYTES`] or more is advised to the kernel as
//! huge-page memory before its first touch ([`advise_huge_pages`]): first
//! touching 64 MiB in 4 KiB pages costs 16 384 page faults (about 30 ms
//! here), in 2 MiB pages 32, as NumPy arranges for its large arrays.

use crate::{Element, RuntimeError};
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// The ceiling where the machine's memory cannot be read (not Linux).
pub const FALLBACK_MAX_TENSOR_BYTES: usize = 16 << 30;

/// The largest tensor, in bytes, the runtime allocates: the machine's
/// physical memory (`MemTotal` in `/proc/meminfo`), or the memory limit of
/// the cgroup the process runs in (`memory.max`, v2, or
/// `memory.limit_in_bytes`, v1) when that is lower; 16 GiB
/// ([`FALLBACK_MAX_TENSOR_BYTES`]) when neither can be read. Read once.
pub fn max_tensor_bytes() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        let mem = physical_memory();
        let cg = cgroup_limit();
        let m = match (mem, cg) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => FALLBACK_MAX_TENSOR_BYTES,
        };
        m.min(isize::MAX as usize)
    })
}

fn physical_memory() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    usize::try_from(kb.checked_mul(1024)?).ok().filter(|&b| b > 0)
}

fn cgroup_limit() -> Option<usize> {
    ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"].iter().find_map(|p| {
        // "max" (v2) means no limit; v1 reports a huge number instead.
        let v: u64 = std::fs::read_to_string(p).ok()?.trim().parse().ok()?;
        usize::try_from(v).ok().filter(|&b| b > 0)
    })
}

/// Refuses a tensor of `n` elements of `T` (shape `shape`) larger than
/// [`max_tensor_bytes`]; its size in bytes otherwise.
fn check_ceiling<T: Element>(op: &'static str, shape: &[usize], n: usize) -> Result<usize, RuntimeError> {
    let bytes = n.checked_mul(std::mem::size_of::<T>());
    let limit = max_tensor_bytes();
    match bytes {
        Some(b) if b <= limit => Ok(b),
        _ => Err(RuntimeError::out_of_memory(op, T::DTYPE, shape, bytes, Some(limit))),
    }
}

/// `n` elements of `T::ZERO` for a tensor of `shape`, or an out-of-memory
/// error for `op`. Zeroed memory comes from the allocator (`calloc`), so
/// untouched pages cost nothing, as with `vec![0; n]`.
pub fn try_zeros<T: Element>(op: &'static str, shape: &[usize], n: usize) -> Result<Vec<T>, RuntimeError> {
    let bytes = check_ceiling::<T>(op, shape, n)?;
    T::try_zeroed(n).ok_or_else(|| RuntimeError::out_of_memory(op, T::DTYPE, shape, Some(bytes), None))
}

/// Grows `v` to `n` elements (new ones `T::ZERO`), or an out-of-memory error.
pub(crate) fn try_resize<T: Element>(
    op: &'static str,
    v: &mut Vec<T>,
    shape: &[usize],
    n: usize,
) -> Result<(), RuntimeError> {
    if n > v.capacity() {
        let bytes = check_ceiling::<T>(op, shape, n)?;
        v.try_reserve_exact(n - v.len())
            .map_err(|_| RuntimeError::out_of_memory(op, T::DTYPE, shape, Some(bytes), None))?;
    }
    v.resize(n, T::ZERO);
    Ok(())
}

/// A copy of `src` (a tensor of `shape`), or an out-of-memory error.
pub fn try_copy<T: Element>(op: &'static str, src: &[T], shape: &[usize]) -> Result<Vec<T>, RuntimeError> {
    let bytes = check_ceiling::<T>(op, shape, src.len())?;
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(src.len()).map_err(|_| RuntimeError::out_of_memory(op, T::DTYPE, shape, Some(bytes), None))?;
    advise_huge_pages(v.as_mut_ptr().cast(), bytes);
    v.extend_from_slice(src);
    Ok(v)
}

/// Buffers of at least this many bytes are advised as huge-page memory.
pub const HUGE_PAGE_BYTES: usize = 4 << 20;

/// Advises the kernel to back the 2 MiB-aligned pages inside the `len`
/// bytes at `p` (a fresh, untouched allocation) with transparent huge pages,
/// when `len` is at least [`HUGE_PAGE_BYTES`] (Linux; elsewhere, and when
/// the advice is refused, nothing changes: it is only advice).
fn advise_huge_pages(p: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if len >= HUGE_PAGE_BYTES {
        const HUGE: usize = 2 << 20;
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize).saturating_add(len) / HUGE * HUGE;
        if end > start {
            // SAFETY: `[start, end)` lies inside the caller's allocation of
            // `len` bytes at `p`; `madvise(MADV_HUGEPAGE)` changes only how
            // the kernel backs those pages (their contents are kept), and
            // an error leaves them as they were.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, len);
}

thread_local! {
    /// How many [`catch_oom`] calls are running on this thread.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// The unwinding payload of an allocation failure inside [`catch_oom`].
struct AllocFailure(RuntimeError);

/// `true` when an allocation failure on this thread may unwind to a [`catch_oom`].
pub(crate) fn catching() -> bool {
    CATCHING.with(Cell::get) > 0
}

/// Unwinds to the innermost [`catch_oom`] with `e` (call only when
/// [`catching`]). The panic hook does not run: nothing is printed.
#[cold]
pub(crate) fn unwind(e: RuntimeError) -> ! {
    resume_unwind(Box::new(AllocFailure(e)))
}

/// Runs the kernel `f` for `op`; an allocation failure inside it becomes an
/// out-of-memory [`RuntimeError`] naming `op`. Other panics go on unwinding.
#[inline]
pub fn catch_oom<R>(op: &'static str, f: impl FnOnce() -> Result<R, RuntimeError>) -> Result<R, RuntimeError> {
    // `catch_unwind` stops every unwind, so the count is always restored.
    CATCHING.with(|c| c.set(c.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    match r {
        Ok(r) => r,
        Err(p) => match p.downcast::<AllocFailure>() {
            Ok(a) => {
                let mut e = a.0;
                e.op = op;
                Err(e)
            }
            Err(p) => resume_unwind(p),
        },
    }
}

/// `n` zeroed elements of a dtype whose zero is all-zero bits, from
/// `alloc_zeroed`; `None` when the allocator refuses.
///
/// # Safety
/// The all-zero bit pattern must be a valid `T`.
pub(crate) unsafe fn zeroed_vec<T>(n: usize) -> Option<Vec<T>> {
    if n == 0 {
        return Some(Vec::new());
    }
    if std::mem::size_of::<T>() == 0 {
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        // SAFETY: zero-sized elements take no memory (the capacity is
        // unbounded), and all-zero bits (here: no bits) is a valid `T` by
        // the caller's guarantee.
        unsafe { v.set_len(n) };
        return Some(v);
    }
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    // SAFETY: `layout` has a non-zero size (`n > 0`, `T` not zero-sized).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        return None;
    }
    advise_huge_pages(p.cast(), layout.size());
    // SAFETY: `p` was allocated by the global allocator with the layout of
    // `[T; n]` (so `T`'s alignment and `n * size_of::<T>()` bytes, which is
    // capacity `n`), and its `n` elements are initialised: all-zero bits,
    // a valid `T` by the caller's guarantee.
    Some(unsafe { Vec::from_raw_parts(p, n, n) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn ceiling_is_positive_and_addressable() {
        let m = max_tensor_bytes();
        assert!(m > 0 && m <= isize::MAX as usize);
    }

    #[test]
    fn huge_tensors_are_refused_not_aborted() {
        let shape = [1 << 20, 1 << 20, 1 << 10];
        let e = try_zeros::<f32>("zeros", &shape, 1 << 50).unwrap_err();
        assert!(e.is_out_of_memory(), "{e}");
        assert!(
            e.to_string().contains("out of memory: f32[1048576, 1048576, 1024] needs 4503599627370496 bytes"),
            "{e}"
        );
        let v = try_zeros::<f64>("zeros", &[3], 3).unwrap();
        assert_eq!(v, vec![0.0; 3]);
        assert_eq!(try_zeros::<bool>("zeros", &[0], 0).unwrap(), Vec::<bool>::new());
        assert_eq!(try_copy("copy", &[1i32, 2], &[2]).unwrap(), vec![1, 2]);
    }

    #[test]
    fn catch_oom_turns_the_unwind_into_an_error() {
        let r: Result<(), RuntimeError> = catch_oom("broadcast_to", || {
            assert!(catching());
            unwind(RuntimeError::out_of_memory("", DType::F32, &[2], Some(8), None))
        });
        let e = r.unwrap_err();
        assert_eq!(e.op, "broadcast_to");
        assert!(!catching());
        // Other panics go on.
        let p = std::panic::catch_unwind(|| catch_oom::<()>("x", || resume_unwind(Box::new(7u8))));
        assert_eq!(p.unwrap_err().downcast_ref::<u8>(), Some(&7));
        assert!(!catching());
    }
}

#[cfg(test)]
mod timing {
    /// Not a test: `cargo test --release -p loopvm-runtime -- --ignored
    /// --nocapture copy_64_mib` prints the cost of a 64 MiB copy into a
    /// fresh buffer with and without the huge-page advice.
    #[test]
    #[ignore]
    fn copy_64_mib() {
        let src = vec![1.5f32; 16 << 20];
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let a = super::try_copy("copy", &src, &[src.len()]).unwrap();
            let advised = t.elapsed();
            let t = std::time::Instant::now();
            let b = src.to_vec();
            let plain = t.elapsed();
            assert_eq!(a.len(), b.len());
            println!("64 MiB copy: advised {advised:?}, plain to_vec {plain:?}");
        }
    }
}
