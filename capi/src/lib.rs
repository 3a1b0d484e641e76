//! The C API of loopvm: compile a `.lb` program once, call its functions from
//! any number of threads, get the results back as tensors.
//!
//! The header is `capi/include/loopvm.h`, generated from this file by
//! cbindgen (`tests/header.rs` checks it for drift; `LOOPVM_BLESS=1 cargo
//! test -p loopvm-capi --test header` rewrites it). `docs/embedding.md` is the
//! guide; the conventions, in short:
//!
//! - **Handles** are opaque: [`loopvm_program`], [`loopvm_tensor`],
//!   [`loopvm_result`], [`loopvm_error`]. Whatever a function hands out as
//!   `T**` (an out-parameter) or returns as `T*` is owned by the caller and
//!   freed with the matching `loopvm_*_free` (which accepts `NULL`). Pointers
//!   returned as `const T*` are borrowed from the handle they came from and
//!   live as long as it.
//! - **Errors**: every fallible function returns a [`loopvm_status`]
//!   (`LOOPVM_OK` is 0). Its last parameter `loopvm_error** err` may be
//!   `NULL`; otherwise, on failure only, `*err` receives a new error with the
//!   code and a message (free it with [`loopvm_error_free`]). No Rust panic
//!   crosses the boundary: one is caught and reported as `LOOPVM_ERR_PANIC`.
//! - **Tensors** are copied in ([`loopvm_tensor_new`]: dtype, rank, shape,
//!   data) and out ([`loopvm_tensor_copy_data`]), or read in place
//!   ([`loopvm_tensor_data`]). Elements are native-endian and row-major;
//!   `bool` is one byte holding 0 or 1.
//! - **Threads**: a program, a tensor and a result are immutable once made,
//!   so any number of threads may use one at once (one program called from
//!   many threads, one tensor passed to many calls). Freeing must not race
//!   with a use.

#![allow(non_camel_case_types)]
#![deny(missing_docs)]

use loopvm::{DType, Error, ErrorKind, Program, RunConfig, Tensor, Tier, Value};
use loopvm_runtime::Buffer;
use loopvm_vm::TypeTree;
use std::any::Any;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

/// What a fallible function returned. `LOOPVM_OK` is 0; every other value is
/// a failure, with details in the `loopvm_error` the call produced.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum loopvm_status {
    /// Success.
    LOOPVM_OK = 0,
    /// The source did not parse or type-check (the message has file, line, column and a caret).
    LOOPVM_ERR_COMPILE = 1,
    /// A bytecode module (`.lbc`) was malformed or failed verification.
    LOOPVM_ERR_BYTECODE = 2,
    /// An argument did not fit the function: wrong count, dtype or shape; or no function of that name.
    LOOPVM_ERR_ARGUMENT = 3,
    /// The program failed while running: an op's error (a dtype or shape
    /// mismatch, an index out of range, ...).
    LOOPVM_ERR_RUNTIME = 4,
    /// The requested tier cannot run the program.
    LOOPVM_ERR_TIER = 5,
    /// Reading or writing a file failed.
    LOOPVM_ERR_IO = 6,
    /// The C API was misused: a `NULL` pointer, an unknown dtype or tier, a
    /// string that is not UTF-8, a data size that does not match the shape.
    LOOPVM_ERR_INVALID = 7,
    /// An internal error (a Rust panic, caught at the boundary). A bug: please report it.
    LOOPVM_ERR_PANIC = 8,
    /// The run hit a limit it was given: `loopvm_call_options::max_steps`.
    LOOPVM_ERR_LIMIT = 9,
    /// The run could not allocate a tensor: larger than the machine's memory,
    /// or the allocator refused it (the message names the op, the shape and
    /// the bytes).
    LOOPVM_ERR_OOM = 10,
}

/// Element types. The values are the tags that `loopvm_tensor_new` takes and
/// `loopvm_tensor_dtype` returns (as `int32_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum loopvm_dtype {
    /// `bool`: one byte, 0 or 1.
    LOOPVM_BOOL = 0,
    /// `i32`: `int32_t`.
    LOOPVM_I32 = 1,
    /// `i64`: `int64_t`.
    LOOPVM_I64 = 2,
    /// `f32`: `float`.
    LOOPVM_F32 = 3,
    /// `f64`: `double`.
    LOOPVM_F64 = 4,
    /// `u32`: `uint32_t`.
    LOOPVM_U32 = 5,
    /// `u8`: `uint8_t`.
    LOOPVM_U8 = 6,
    /// `bf16`: bfloat16, its 16 bits in a `uint16_t`.
    LOOPVM_BF16 = 7,
    /// `f16`: IEEE binary16 (`_Float16` where the compiler has it), its 16
    /// bits in a `uint16_t`.
    LOOPVM_F16 = 8,
}

/// Tiers, for [`loopvm_call_options::tier`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum loopvm_tier {
    /// The best tier available for each loop.
    LOOPVM_TIER_AUTO = 0,
    /// The bytecode interpreter (the reference semantics).
    LOOPVM_TIER_INTERP = 1,
    /// Hot loops as Cranelift native code.
    LOOPVM_TIER_JIT = 2,
    /// Loops as XLA executables through a PJRT plugin.
    LOOPVM_TIER_XLA = 3,
}

/// Options of one call. Start from [`loopvm_call_options_default`] and set
/// the fields you need; a `NULL` options pointer means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct loopvm_call_options {
    /// A `loopvm_tier` value (default `LOOPVM_TIER_AUTO`).
    pub tier: i32,
    /// Fail with `LOOPVM_ERR_LIMIT` after this many loop iterations in
    /// total; 0 (the default) means no limit.
    pub max_steps: u64,
    /// Nonzero: what the program's `print` writes is kept in the result
    /// ([`loopvm_result_printed`]) instead of going to stdout. Default 1.
    pub capture_print: i32,
    /// Nonzero: trace every op to stderr (slow; for debugging). Default 0.
    pub trace: i32,
    /// Partition the xla tier's executables over this many devices (XLA's
    /// SPMD partitioner; the CPU plugin is asked for that many). 0 or 1
    /// (the default): one device. The other tiers run on one device.
    pub devices: u32,
    /// Devices along the mesh's `model` axis (`devices / mesh_model` along
    /// `data`); 0 or 1 (the default): a 1-D mesh `data`.
    pub mesh_model: u32,
    /// `NULL` (the default), or the arguments to split over the mesh, as
    /// the command line's `--shard`, comma-separated: `"x=0,w=1:model"`.
    pub shard: *const c_char,
}

/// A compiled, verified program. Immutable: calls from many threads at once
/// are safe. Free with [`loopvm_program_free`].
pub struct loopvm_program {
    prog: Program,
    names: Vec<CString>,
    signatures: Vec<CString>,
}

/// A tensor: a dtype, a shape and its elements. Immutable once made. Free
/// the ones you own with [`loopvm_tensor_free`]; the ones a result lends
/// ([`loopvm_result_get`]) belong to the result.
pub struct loopvm_tensor {
    t: Tensor,
}

/// The outcome of a successful call: the function's result flattened into
/// tensors (a tuple depth-first), and the run's statistics. Immutable. Free
/// with [`loopvm_result_free`].
pub struct loopvm_result {
    value: Value,
    tensors: Vec<loopvm_tensor>,
    printed: CString,
    text: OnceLock<CString>,
    ops: u64,
    loop_iterations: u64,
    elapsed_ns: u64,
}

/// An error: a code and a message. Free with [`loopvm_error_free`].
pub struct loopvm_error {
    code: loopvm_status,
    message: CString,
}

/// A failure inside this crate: a code and a message.
struct Fail(loopvm_status, String);

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let code = match e.kind() {
            ErrorKind::Compile(_) => loopvm_status::LOOPVM_ERR_COMPILE,
            ErrorKind::Bytecode(_) => loopvm_status::LOOPVM_ERR_BYTECODE,
            ErrorKind::Argument(_) => loopvm_status::LOOPVM_ERR_ARGUMENT,
            ErrorKind::Exec(x) if x.is_limit() => loopvm_status::LOOPVM_ERR_LIMIT,
            ErrorKind::Exec(x) if x.is_out_of_memory() => loopvm_status::LOOPVM_ERR_OOM,
            ErrorKind::Exec(_) | ErrorKind::Runtime(_) => loopvm_status::LOOPVM_ERR_RUNTIME,
            ErrorKind::Tier(_) => loopvm_status::LOOPVM_ERR_TIER,
            ErrorKind::Io(_) => loopvm_status::LOOPVM_ERR_IO,
            _ => loopvm_status::LOOPVM_ERR_RUNTIME,
        };
        Fail(code, e.to_string())
    }
}

fn invalid(m: impl Into<String>) -> Fail {
    Fail(loopvm_status::LOOPVM_ERR_INVALID, format!("error: {}", m.into()))
}

/// A C string from `s`, with any NUL byte replaced (so that nothing is lost).
fn cstring(s: impl Into<String>) -> CString {
    let s: String = s.into();
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("error: internal error (a bug in loopvm, please report it): {what}")
}

/// Runs `f`, catching panics, and reports a failure through `err`.
fn guard(err: *mut *mut loopvm_error, f: impl FnOnce() -> Result<(), Fail>) -> loopvm_status {
    let fail = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return loopvm_status::LOOPVM_OK,
        Ok(Err(fail)) => fail,
        Err(p) => Fail(loopvm_status::LOOPVM_ERR_PANIC, panic_message(&*p)),
    };
    let code = fail.0;
    if !err.is_null() {
        // Building the error cannot panic short of allocation failure, which aborts.
        let e = Box::new(loopvm_error { code, message: cstring(fail.1) });
        // SAFETY: `err` is non-null and, by the API contract, points to writable storage for one pointer.
        unsafe { err.write(Box::into_raw(e)) };
    }
    code
}

/// Runs an infallible accessor, returning `default` if it panics.
fn quiet<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

/// Borrows a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that outlives `'a`.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| invalid(format!("{what} is not UTF-8")))
}

/// Writes `v` to the out-parameter `out`, which must not be null (checked by the caller).
fn put<T>(out: *mut *mut T, v: T) {
    // SAFETY: callers check `out` for null first; it points to storage for one pointer by this function's contract.
    unsafe { out.write(Box::into_raw(Box::new(v))) };
}

/// Clears an out-parameter so that it is NULL on failure.
fn clear<T>(out: *mut *mut T) -> Result<(), Fail> {
    if out.is_null() {
        return Err(invalid("the out-parameter is NULL"));
    }
    // SAFETY: non-null; points to storage for one pointer by this function's contract.
    unsafe { out.write(ptr::null_mut()) };
    Ok(())
}

/// Borrows a handle argument.
///
/// # Safety
/// `p` is null or a live handle of type `T` made by this library.
unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Fail> {
    // SAFETY: null or a live handle, by the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

fn dtype_arg(tag: i32) -> Result<DType, Fail> {
    u8::try_from(tag)
        .ok()
        .and_then(DType::from_tag)
        .ok_or_else(|| invalid(format!("{tag} is not a dtype (LOOPVM_BOOL .. LOOPVM_F16 are 0 .. 8)")))
}

fn tier_arg(tag: i32) -> Result<Tier, Fail> {
    Ok(match tag {
        0 => Tier::Auto,
        1 => Tier::Interp,
        2 => Tier::Jit,
        3 => Tier::Xla,
        _ => return Err(invalid(format!("{tag} is not a tier (LOOPVM_TIER_AUTO .. LOOPVM_TIER_XLA are 0 .. 3)"))),
    })
}

fn program_handle(prog: Program) -> loopvm_program {
    let m = prog.module();
    let names = m.funcs.iter().map(|f| cstring(f.name.clone())).collect();
    let signatures = m
        .funcs
        .iter()
        .map(|f| {
            let params: Vec<String> =
                f.params.iter().map(|p| format!("{}: {}", p.name, type_tree(&p.ty, &m.symbols))).collect();
            cstring(format!("fn {}({}) -> {}", f.name, params.join(", "), type_tree(&f.result, &m.symbols)))
        })
        .collect();
    loopvm_program { prog, names, signatures }
}

fn type_tree(t: &TypeTree, symbols: &[String]) -> String {
    match t {
        TypeTree::Tensor(x) => x.display(symbols),
        TypeTree::Tuple(ts) => {
            let inner: Vec<String> = ts.iter().map(|t| type_tree(t, symbols)).collect();
            if inner.len() == 1 {
                format!("({},)", inner[0])
            } else {
                format!("({})", inner.join(", "))
            }
        }
    }
}

// ---------------------------------------------------------------- library

/// The library's version, e.g. `"0.1.0"` (a static string).
#[no_mangle]
pub extern "C" fn loopvm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The name of a status code (`"LOOPVM_ERR_ARGUMENT"`), or `"LOOPVM_UNKNOWN"`
/// for a value that is not one (a static string).
#[no_mangle]
pub extern "C" fn loopvm_status_name(status: i32) -> *const c_char {
    let s: &CStr = match status {
        0 => c"LOOPVM_OK",
        1 => c"LOOPVM_ERR_COMPILE",
        2 => c"LOOPVM_ERR_BYTECODE",
        3 => c"LOOPVM_ERR_ARGUMENT",
        4 => c"LOOPVM_ERR_RUNTIME",
        5 => c"LOOPVM_ERR_TIER",
        6 => c"LOOPVM_ERR_IO",
        7 => c"LOOPVM_ERR_INVALID",
        8 => c"LOOPVM_ERR_PANIC",
        9 => c"LOOPVM_ERR_LIMIT",
        10 => c"LOOPVM_ERR_OOM",
        _ => c"LOOPVM_UNKNOWN",
    };
    s.as_ptr()
}

// ---------------------------------------------------------------- errors

/// The error's code (never `LOOPVM_OK`); `LOOPVM_ERR_INVALID` for `NULL`.
///
/// # Safety
/// `err` is `NULL` or a live error made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_error_code(err: *const loopvm_error) -> loopvm_status {
    quiet(loopvm_status::LOOPVM_ERR_PANIC, || {
        // SAFETY: null or a live error handle, by this function's contract.
        unsafe { err.as_ref() }.map_or(loopvm_status::LOOPVM_ERR_INVALID, |e| e.code)
    })
}

/// The error's message, UTF-8 and NUL-terminated, borrowed from the error
/// (valid until [`loopvm_error_free`]). Compile errors span several lines
/// (file, line, column and a caret). `""` for `NULL`.
///
/// # Safety
/// `err` is `NULL` or a live error made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_error_message(err: *const loopvm_error) -> *const c_char {
    quiet(c"".as_ptr(), || {
        // SAFETY: null or a live error handle, by this function's contract.
        unsafe { err.as_ref() }.map_or(c"".as_ptr(), |e| e.message.as_ptr())
    })
}

/// Frees an error. `NULL` is a no-op.
///
/// # Safety
/// `err` is `NULL` or a error made by this library and not freed
/// before; nothing else may be using it.
#[no_mangle]
pub unsafe extern "C" fn loopvm_error_free(err: *mut loopvm_error) {
    if !err.is_null() {
        quiet((), || {
            // SAFETY: made by `Box::into_raw` in this library and not freed before, by this function's contract.
            drop(unsafe { Box::from_raw(err) })
        });
    }
}

// ---------------------------------------------------------------- programs

/// Compiles `.lb` source (NUL-terminated UTF-8). `name` names the source in
/// error messages and may be `NULL` (`"<source>"`). On success `*out` is a
/// new program; on failure it is `NULL` and the code is
/// `LOOPVM_ERR_COMPILE` for a source error.
///
/// # Safety
/// `source` and `name` are `NULL` or NUL-terminated strings; `out` and `err`
/// are `NULL` or point to storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn loopvm_program_compile(
    source: *const c_char,
    name: *const c_char,
    out: *mut *mut loopvm_program,
    err: *mut *mut loopvm_error,
) -> loopvm_status {
    guard(err, || {
        clear(out)?;
        // SAFETY: by this function's contract.
        let src = unsafe { str_arg(source, "source") }?;
        // SAFETY: by this function's contract.
        let name = if name.is_null() { "<source>" } else { unsafe { str_arg(name, "name") }? };
        let prog = Program::from_source(src, name)?;
        put(out, program_handle(prog));
        Ok(())
    })
}

/// Loads a program from a file: `.lb` source or `.lbc` bytecode (told apart
/// by the bytecode magic number). `LOOPVM_ERR_IO` when it cannot be read.
///
/// # Safety
/// `path` is `NULL` or a NUL-terminated string; `out` and `err` are `NULL`
/// or point to storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn loopvm_program_load(
    path: *const c_char,
    out: *mut *mut loopvm_program,
    err: *mut *mut loopvm_error,
) -> loopvm_status {
    guard(err, || {
        clear(out)?;
        // SAFETY: by this function's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let prog = Program::from_path(Path::new(path))?;
        put(out, program_handle(prog));
        Ok(())
    })
}

/// Loads a program from serialised bytecode (what `loopvm compile` writes),
/// verifying it: malformed bytes give `LOOPVM_ERR_BYTECODE`, never a crash.
///
/// # Safety
/// `bytes` points to `len` readable bytes (or is anything when `len` is 0);
/// `out` and `err` are `NULL` or point to storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn loopvm_program_from_bytecode(
    bytes: *const u8,
    len: usize,
    out: *mut *mut loopvm_program,
    err: *mut *mut loopvm_error,
) -> loopvm_status {
    guard(err, || {
        clear(out)?;
        let data: &[u8] = if len == 0 {
            &[]
        } else if bytes.is_null() {
            return Err(invalid("bytes is NULL"));
        } else {
            // SAFETY: non-null and `len` readable bytes by this function's contract.
            unsafe { std::slice::from_raw_parts(bytes, len) }
        };
        put(out, program_handle(Program::from_bytecode(data)?));
        Ok(())
    })
}

/// Frees a program. `NULL` is a no-op. No call on it may be running.
///
/// # Safety
/// `prog` is `NULL` or a program made by this library and not freed
/// before; nothing else may be using it.
#[no_mangle]
pub unsafe extern "C" fn loopvm_program_free(prog: *mut loopvm_program) {
    if !prog.is_null() {
        quiet((), || {
            // SAFETY: made by `Box::into_raw` in this library and not freed before, by this function's contract.
            drop(unsafe { Box::from_raw(prog) })
        });
    }
}

/// The number of functions in the program (0 for `NULL`).
///
/// # Safety
/// `prog` is `NULL` or a live program made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_program_function_count(prog: *const loopvm_program) -> usize {
    quiet(0, || {
        // SAFETY: null or a live program handle, by this function's contract.
        unsafe { prog.as_ref() }.map_or(0, |p| p.names.len())
    })
}

/// The name of function `index` (borrowed from the program), or `NULL` when
/// out of range.
///
/// # Safety
/// `prog` is `NULL` or a live program made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_program_function_name(prog: *const loopvm_program, index: usize) -> *const c_char {
    quiet(ptr::null(), || {
        // SAFETY: null or a live program handle, by this function's contract.
        unsafe { prog.as_ref() }.and_then(|p| p.names.get(index)).map_or(ptr::null(), |s| s.as_ptr())
    })
}

/// The signature of function `index` as source writes it, e.g.
/// `"fn main(xs: f32[T, 3], decay: f32) -> (f32[3], f32[T, 3])"` (borrowed
/// from the program), or `NULL` when out of range. Arguments are passed
/// flattened: a tuple parameter as its tensors, depth-first.
///
/// # Safety
/// `prog` is `NULL` or a live program made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_program_function_signature(prog: *const loopvm_program, index: usize) -> *const c_char {
    quiet(ptr::null(), || {
        // SAFETY: null or a live program handle, by this function's contract.
        unsafe { prog.as_ref() }.and_then(|p| p.signatures.get(index)).map_or(ptr::null(), |s| s.as_ptr())
    })
}

// ---------------------------------------------------------------- tensors

/// Makes a tensor by copying `data_bytes` bytes of row-major, native-endian
/// elements. `shape` holds `rank` sizes (it may be `NULL` when `rank` is 0:
/// a scalar); `data_bytes` must equal the element count times the dtype's
/// size, or the call fails with `LOOPVM_ERR_INVALID` (nothing is read past
/// it); `data` may be `NULL` when that is 0. `bool` bytes must be 0 or 1.
/// `dtype` is a `loopvm_dtype` value. The caller keeps its buffers.
///
/// # Safety
/// `shape` points to `rank` readable `size_t`s (unless `rank` is 0); `data`
/// points to `data_bytes` readable bytes (unless it is 0); `out` and `err`
/// are `NULL` or point to storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_new(
    dtype: i32,
    rank: usize,
    shape: *const usize,
    data: *const c_void,
    data_bytes: usize,
    out: *mut *mut loopvm_tensor,
    err: *mut *mut loopvm_error,
) -> loopvm_status {
    guard(err, || {
        clear(out)?;
        let dtype = dtype_arg(dtype)?;
        if rank > 64 {
            return Err(invalid(format!("rank {rank} is larger than 64")));
        }
        let dims: &[usize] = if rank == 0 {
            &[]
        } else if shape.is_null() {
            return Err(invalid("shape is NULL but rank is not 0"));
        } else {
            // SAFETY: non-null and `rank` readable elements by this function's contract.
            unsafe { std::slice::from_raw_parts(shape, rank) }
        };
        let numel = loopvm_runtime::checked_numel(dims).map_err(|e| invalid(e.to_string()))?;
        let want =
            numel.checked_mul(dtype.size_in_bytes()).ok_or_else(|| invalid(format!("shape {dims:?} is too large")))?;
        if data_bytes != want {
            return Err(invalid(format!(
                "data_bytes is {data_bytes}, but {dtype}{dims:?} holds {numel} elements of {} bytes ({want} bytes)",
                dtype.size_in_bytes()
            )));
        }
        let bytes: &[u8] = if want == 0 {
            &[]
        } else if data.is_null() {
            return Err(invalid("data is NULL"));
        } else {
            // SAFETY: non-null and `data_bytes` (== want) readable bytes by this function's contract.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), want) }
        };
        let t = tensor_from_bytes(dtype, dims, bytes)?;
        put(out, loopvm_tensor { t });
        Ok(())
    })
}

/// Builds a tensor from native-endian bytes whose length matches the shape.
fn tensor_from_bytes(dtype: DType, dims: &[usize], bytes: &[u8]) -> Result<Tensor, Fail> {
    fn pod<T: Copy + Default, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
        bytes.chunks_exact(N).map(|c| from(c.try_into().unwrap_or([0; N]))).collect()
    }
    let r = match dtype {
        DType::Bool => {
            if let Some(i) = bytes.iter().position(|&b| b > 1) {
                return Err(invalid(format!("bool element {i} is {}, not 0 or 1", bytes[i])));
            }
            Tensor::from_vec(dims, bytes.iter().map(|&b| b == 1).collect::<Vec<bool>>())
        }
        DType::I32 => Tensor::from_vec(dims, pod(bytes, i32::from_ne_bytes)),
        DType::I64 => Tensor::from_vec(dims, pod(bytes, i64::from_ne_bytes)),
        DType::U32 => Tensor::from_vec(dims, pod(bytes, u32::from_ne_bytes)),
        DType::U8 => Tensor::from_vec(dims, bytes.to_vec()),
        DType::F32 => Tensor::from_vec(dims, pod(bytes, f32::from_ne_bytes)),
        DType::F64 => Tensor::from_vec(dims, pod(bytes, f64::from_ne_bytes)),
        DType::BF16 => Tensor::from_vec(dims, pod(bytes, |b| loopvm_runtime::bf16::from_bits(u16::from_ne_bytes(b)))),
        DType::F16 => Tensor::from_vec(dims, pod(bytes, |b| loopvm_runtime::f16::from_bits(u16::from_ne_bytes(b)))),
    };
    r.map_err(|e| invalid(e.to_string()))
}

/// The elements of `t` as bytes (row-major, native-endian; bools as 0 or 1).
fn tensor_bytes(t: &Tensor) -> &[u8] {
    fn raw<T>(v: &[T]) -> &[u8] {
        // SAFETY: `T` is bool, i32, i64, u32, u8, f32, f64, bf16 or f16 (a `u16`): no padding, every byte initialised, and u8 has alignment 1.
        unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
    }
    match t.buffer() {
        Buffer::Bool(v) => raw(v),
        Buffer::I32(v) => raw(v),
        Buffer::I64(v) => raw(v),
        Buffer::U32(v) => raw(v),
        Buffer::U8(v) => raw(v),
        Buffer::F32(v) => raw(v),
        Buffer::F64(v) => raw(v),
        Buffer::BF16(v) => raw(v),
        Buffer::F16(v) => raw(v),
    }
}

/// Reads a `.npy` file (a little-endian bool, i32, i64, u32, u8, f32 or f64
/// array in C order) into a new tensor.
///
/// # Safety
/// `path` is `NULL` or a NUL-terminated string; `out` and `err` are `NULL`
/// or point to storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_load_npy(
    path: *const c_char,
    out: *mut *mut loopvm_tensor,
    err: *mut *mut loopvm_error,
) -> loopvm_status {
    guard(err, || {
        clear(out)?;
        // SAFETY: by this function's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let t = loopvm_runtime::npy::read_file(Path::new(path))
            .map_err(|e| Fail(loopvm_status::LOOPVM_ERR_IO, format!("error: {path}: {}", e.message)))?;
        put(out, loopvm_tensor { t });
        Ok(())
    })
}

/// Writes a tensor to a `.npy` file.
///
/// # Safety
/// `tensor` is `NULL` or a live tensor; `path` is `NULL` or a NUL-terminated
/// string; `err` is `NULL` or points to storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_save_npy(
    tensor: *const loopvm_tensor,
    path: *const c_char,
    err: *mut *mut loopvm_error,
) -> loopvm_status {
    guard(err, || {
        // SAFETY: by this function's contract.
        let t = unsafe { handle(tensor, "tensor") }?;
        // SAFETY: by this function's contract.
        let path = unsafe { str_arg(path, "path") }?;
        loopvm_runtime::npy::write_file(Path::new(path), &t.t)
            .map_err(|e| Fail(loopvm_status::LOOPVM_ERR_IO, format!("error: {path}: {}", e.message)))
    })
}

/// A new handle to the same tensor (the data is shared, not copied: tensors
/// are immutable). Use it to keep a result's tensor after freeing the
/// result. `NULL` for `NULL`. Free it with [`loopvm_tensor_free`].
///
/// # Safety
/// `tensor` is `NULL` or a live tensor made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_clone(tensor: *const loopvm_tensor) -> *mut loopvm_tensor {
    quiet(ptr::null_mut(), || {
        // SAFETY: null or a live tensor handle, by this function's contract.
        match unsafe { tensor.as_ref() } {
            Some(t) => Box::into_raw(Box::new(loopvm_tensor { t: t.t.clone() })),
            None => ptr::null_mut(),
        }
    })
}

/// Frees a tensor made by [`loopvm_tensor_new`], [`loopvm_tensor_load_npy`]
/// or [`loopvm_tensor_clone`]. `NULL` is a no-op. Never pass a tensor
/// borrowed from a result.
///
/// # Safety
/// `tensor` is `NULL` or a tensor made by this library and not freed
/// before; nothing else may be using it.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_free(tensor: *mut loopvm_tensor) {
    if !tensor.is_null() {
        quiet((), || {
            // SAFETY: made by `Box::into_raw` in this library and not freed before, by this function's contract.
            drop(unsafe { Box::from_raw(tensor) })
        });
    }
}

/// The dtype (a `loopvm_dtype` value), or -1 for `NULL`.
///
/// # Safety
/// `tensor` is `NULL` or a live tensor made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_dtype(tensor: *const loopvm_tensor) -> i32 {
    quiet(-1, || {
        // SAFETY: null or a live tensor handle, by this function's contract.
        unsafe { tensor.as_ref() }.map_or(-1, |t| i32::from(t.t.dtype() as u8))
    })
}

/// The rank (number of axes; 0 for a scalar and for `NULL`).
///
/// # Safety
/// `tensor` is `NULL` or a live tensor made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_rank(tensor: *const loopvm_tensor) -> usize {
    quiet(0, || {
        // SAFETY: null or a live tensor handle, by this function's contract.
        unsafe { tensor.as_ref() }.map_or(0, |t| t.t.rank())
    })
}

/// The shape: `rank` sizes, borrowed from the tensor. Do not read it when
/// the rank is 0 (it is then `NULL`). `NULL` for `NULL`.
///
/// # Safety
/// `tensor` is `NULL` or a live tensor made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_shape(tensor: *const loopvm_tensor) -> *const usize {
    quiet(ptr::null(), || {
        // SAFETY: null or a live tensor handle, by this function's contract.
        match unsafe { tensor.as_ref() } {
            Some(t) if t.t.rank() > 0 => t.t.shape().as_ptr(),
            _ => ptr::null(),
        }
    })
}

/// The number of elements (1 for a scalar; 0 for `NULL`).
///
/// # Safety
/// `tensor` is `NULL` or a live tensor made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_numel(tensor: *const loopvm_tensor) -> usize {
    quiet(0, || {
        // SAFETY: null or a live tensor handle, by this function's contract.
        unsafe { tensor.as_ref() }.map_or(0, |t| t.t.numel())
    })
}

/// The size of the elements in bytes (0 for `NULL`).
///
/// # Safety
/// `tensor` is `NULL` or a live tensor made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_nbytes(tensor: *const loopvm_tensor) -> usize {
    quiet(0, || {
        // SAFETY: null or a live tensor handle, by this function's contract.
        unsafe { tensor.as_ref() }.map_or(0, |t| t.t.nbytes())
    })
}

/// The elements in place: `loopvm_tensor_nbytes` bytes, row-major,
/// native-endian, aligned for the dtype; read-only, borrowed from the tensor
/// (valid while it lives). `NULL` for `NULL` or an empty tensor.
///
/// # Safety
/// `tensor` is `NULL` or a live tensor made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_data(tensor: *const loopvm_tensor) -> *const c_void {
    quiet(ptr::null(), || {
        // SAFETY: null or a live tensor handle, by this function's contract.
        match unsafe { tensor.as_ref() } {
            Some(t) if t.t.numel() > 0 => tensor_bytes(&t.t).as_ptr().cast(),
            _ => ptr::null(),
        }
    })
}

/// Copies the elements out into `dst`, which holds `dst_bytes` bytes: at
/// least `loopvm_tensor_nbytes` (else `LOOPVM_ERR_INVALID` and nothing is
/// written).
///
/// # Safety
/// `tensor` is `NULL` or a live tensor; `dst` points to `dst_bytes` writable
/// bytes (unless the tensor is empty); `err` is `NULL` or points to storage
/// for one pointer.
#[no_mangle]
pub unsafe extern "C" fn loopvm_tensor_copy_data(
    tensor: *const loopvm_tensor,
    dst: *mut c_void,
    dst_bytes: usize,
    err: *mut *mut loopvm_error,
) -> loopvm_status {
    guard(err, || {
        // SAFETY: by this function's contract.
        let t = unsafe { handle(tensor, "tensor") }?;
        let src = tensor_bytes(&t.t);
        if src.is_empty() {
            return Ok(());
        }
        if dst.is_null() {
            return Err(invalid("dst is NULL"));
        }
        if dst_bytes < src.len() {
            return Err(invalid(format!("dst holds {dst_bytes} bytes; the tensor needs {}", src.len())));
        }
        // SAFETY: `dst` has at least `src.len()` writable bytes (checked above, by the contract) and cannot
        // overlap the tensor's buffer, which the caller can only read.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst.cast::<u8>(), src.len()) };
        Ok(())
    })
}

// ---------------------------------------------------------------- calls

/// The default options: `LOOPVM_TIER_AUTO`, no step limit, `print` captured, no trace.
#[no_mangle]
pub extern "C" fn loopvm_call_options_default() -> loopvm_call_options {
    loopvm_call_options {
        tier: loopvm_tier::LOOPVM_TIER_AUTO as i32,
        max_steps: 0,
        capture_print: 1,
        trace: 0,
        devices: 0,
        mesh_model: 0,
        shard: std::ptr::null(),
    }
}

/// Calls the function `function` (`NULL`: `main`) with `nargs` tensors,
/// the parameters flattened in order (a tuple parameter as its tensors,
/// depth-first). The arguments are only read, and stay the caller's. On
/// success `*out` is a new result; on failure it is `NULL`:
/// `LOOPVM_ERR_ARGUMENT` for an unknown function or arguments of the wrong
/// count, dtype or shape, `LOOPVM_ERR_RUNTIME` for a failure while running,
/// `LOOPVM_ERR_LIMIT` when the run passed the `max_steps` limit,
/// `LOOPVM_ERR_OOM` when a tensor could not be allocated, `LOOPVM_ERR_TIER`
/// when the tier cannot run it. Safe to call from many threads at once on
/// one program.
///
/// # Safety
/// `prog` is `NULL` or a live program; `function` is `NULL` or a
/// NUL-terminated string; `args` points to `nargs` pointers, each `NULL` or
/// a live tensor (it may be `NULL` when `nargs` is 0); `options` is `NULL`
/// or points to a `loopvm_call_options` (whose `shard` is `NULL` or a
/// NUL-terminated string); `out` and `err` are `NULL` or point
/// to storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn loopvm_call(
    prog: *const loopvm_program,
    function: *const c_char,
    args: *const *const loopvm_tensor,
    nargs: usize,
    options: *const loopvm_call_options,
    out: *mut *mut loopvm_result,
    err: *mut *mut loopvm_error,
) -> loopvm_status {
    guard(err, || {
        clear(out)?;
        // SAFETY: by this function's contract.
        let p = unsafe { handle(prog, "program") }?;
        // SAFETY: by this function's contract.
        let name = if function.is_null() { "main" } else { unsafe { str_arg(function, "function") }? };
        let ptrs: &[*const loopvm_tensor] = if nargs == 0 {
            &[]
        } else if args.is_null() {
            return Err(invalid(format!("args is NULL but nargs is {nargs}")));
        } else {
            // SAFETY: non-null and `nargs` readable pointers by this function's contract.
            unsafe { std::slice::from_raw_parts(args, nargs) }
        };
        let mut tensors = Vec::with_capacity(ptrs.len());
        for (i, &a) in ptrs.iter().enumerate() {
            // SAFETY: each is null or a live tensor, by this function's contract.
            let t = unsafe { handle(a, &format!("argument {i}")) }?;
            tensors.push(t.t.clone());
        }
        // SAFETY: null or a valid options struct, by this function's contract.
        let o = unsafe { options.as_ref() }.copied().unwrap_or_else(|| loopvm_call_options_default());
        let (devices, model) = (o.devices as usize, (o.mesh_model as usize).max(1));
        let mesh = if model > 1 {
            if devices % model != 0 {
                return Err(invalid(format!("{devices} devices do not form a mesh with {model} along `model`")));
            }
            Some(loopvm::Mesh { data: devices / model, model })
        } else {
            None
        };
        let shard = if o.shard.is_null() {
            Vec::new()
        } else {
            // SAFETY: non-null and NUL-terminated, by this function's contract.
            let text = unsafe { str_arg(o.shard, "shard") }?;
            text.split(',').filter(|s| !s.trim().is_empty()).map(loopvm::ShardArg::parse).collect::<Result<_, _>>()?
        };
        let cfg = RunConfig {
            tier: tier_arg(o.tier)?,
            trace: o.trace != 0,
            max_steps: (o.max_steps != 0).then_some(o.max_steps),
            capture_print: o.capture_print != 0,
            devices,
            mesh,
            shard,
            ..RunConfig::default()
        };
        let r = p.prog.call(name, &tensors, &cfg)?;
        let leaves = r.value.leaves().into_iter().map(|t| loopvm_tensor { t: t.clone() }).collect();
        put(
            out,
            loopvm_result {
                value: r.value,
                tensors: leaves,
                printed: cstring(r.printed),
                text: OnceLock::new(),
                ops: r.ops,
                loop_iterations: r.loop_iterations,
                elapsed_ns: u64::try_from(r.elapsed.as_nanos()).unwrap_or(u64::MAX),
            },
        );
        Ok(())
    })
}

/// Frees a result and the tensors it lends. `NULL` is a no-op.
///
/// # Safety
/// `result` is `NULL` or a result made by this library and not freed
/// before; nothing else may be using it.
#[no_mangle]
pub unsafe extern "C" fn loopvm_result_free(result: *mut loopvm_result) {
    if !result.is_null() {
        quiet((), || {
            // SAFETY: made by `Box::into_raw` in this library and not freed before, by this function's contract.
            drop(unsafe { Box::from_raw(result) })
        });
    }
}

/// The number of result tensors: the function's result flattened (a tuple
/// depth-first; 1 for a single tensor, 0 for `()` and for `NULL`).
///
/// # Safety
/// `result` is `NULL` or a live result made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_result_count(result: *const loopvm_result) -> usize {
    quiet(0, || {
        // SAFETY: null or a live result handle, by this function's contract.
        unsafe { result.as_ref() }.map_or(0, |r| r.tensors.len())
    })
}

/// Result tensor `index`, borrowed from the result (valid until
/// [`loopvm_result_free`]; [`loopvm_tensor_clone`] it to keep it longer).
/// `NULL` when out of range.
///
/// # Safety
/// `result` is `NULL` or a live result made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_result_get(result: *const loopvm_result, index: usize) -> *const loopvm_tensor {
    quiet(ptr::null(), || {
        // SAFETY: null or a live result handle, by this function's contract.
        unsafe { result.as_ref() }.and_then(|r| r.tensors.get(index)).map_or(ptr::null(), |t| t as *const _)
    })
}

/// The result as `loopvm run` prints it, e.g. `"(f32[3] [4.5, 6.0, 7.5], ...)"`
/// (borrowed from the result). `""` for `NULL`.
///
/// # Safety
/// `result` is `NULL` or a live result made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_result_to_string(result: *const loopvm_result) -> *const c_char {
    quiet(c"".as_ptr(), || {
        // SAFETY: null or a live result handle, by this function's contract.
        match unsafe { result.as_ref() } {
            Some(r) => r.text.get_or_init(|| cstring(r.value.to_string())).as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// What the program's `print` wrote, when the call captured it (borrowed
/// from the result; `""` otherwise and for `NULL`).
///
/// # Safety
/// `result` is `NULL` or a live result made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_result_printed(result: *const loopvm_result) -> *const c_char {
    quiet(c"".as_ptr(), || {
        // SAFETY: null or a live result handle, by this function's contract.
        unsafe { result.as_ref() }.map_or(c"".as_ptr(), |r| r.printed.as_ptr())
    })
}

/// Instructions the call executed (0 for `NULL`).
///
/// # Safety
/// `result` is `NULL` or a live result made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_result_ops(result: *const loopvm_result) -> u64 {
    quiet(0, || {
        // SAFETY: null or a live result handle, by this function's contract.
        unsafe { result.as_ref() }.map_or(0, |r| r.ops)
    })
}

/// Loop iterations the call ran, over all loops (0 for `NULL`).
///
/// # Safety
/// `result` is `NULL` or a live result made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_result_loop_iterations(result: *const loopvm_result) -> u64 {
    quiet(0, || {
        // SAFETY: null or a live result handle, by this function's contract.
        unsafe { result.as_ref() }.map_or(0, |r| r.loop_iterations)
    })
}

/// Wall time the call spent running, in nanoseconds (0 for `NULL`).
///
/// # Safety
/// `result` is `NULL` or a live result made by this library.
#[no_mangle]
pub unsafe extern "C" fn loopvm_result_elapsed_ns(result: *const loopvm_result) -> u64 {
    quiet(0, || {
        // SAFETY: null or a live result handle, by this function's contract.
        unsafe { result.as_ref() }.map_or(0, |r| r.elapsed_ns)
    })
}
