//! `print` inside XLA executables: the emitter lowers `print(a, b, ...)` to
//! `%next = stablehlo.custom_call @loopvm_print(%chain, a, b, ...)` with
//! `has_side_effect` (typed FFI, `api_version = 4`), where `%chain` and
//! `%next` are `tensor<i32>` values that order the module's prints (the
//! emitter's `order` module), and [`handler`], registered with the
//! plugin through the PJRT FFI extension (`PJRT_FFI_Register_Handler`),
//! writes the line, as the interpreter would (`loopvm_vm::print_line`), to
//! the output of the run that executes it. That output reaches the handler
//! as user data of the execution's `PJRT_ExecuteContext`
//! (`PJRT_FFI_UserData_Add`, read back with `XLA_FFI_ExecutionContext_Get`
//! under a type id from `PJRT_FFI_TypeID_Register`). Like `jax.debug.print`
//! on CPU, without Python.

use super::ffi::{self, *};
use super::pjrt::Plugin;
use super::{Client, ErrorCode, Result, XlaError};
use loopvm_runtime::Tensor;
use std::collections::HashMap;
use std::ffi::c_void;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The custom call target.
pub const TARGET: &str = "loopvm_print";
const TYPE_NAME: &str = "loopvm::PrintOutput";

/// Where the prints of one execution go.
pub type PrintOutput = Arc<Mutex<Box<dyn Write + Send>>>;

/// The handler registered with a plugin, and the type id of its user data.
#[derive(Clone, Copy, Debug)]
pub struct HostPrint {
    plugin: Plugin,
    type_id: i64,
}

/// Per process and plugin: registration happens once (XLA's registry is global).
fn registrations() -> &'static Mutex<HashMap<PathBuf, std::result::Result<i64, String>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, std::result::Result<i64, String>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The type id the handler asks the execution context for (one process-wide
/// id: the handler has no other state).
static TYPE_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

impl HostPrint {
    /// Registers [`handler`] for `client`'s platform; an error says why
    /// `print` will fall back to the interpreter (no FFI extension, no
    /// execute context, a refused registration).
    pub fn register(client: &Client) -> std::result::Result<HostPrint, String> {
        let plugin = client.plugin();
        let mut regs = registrations().lock().unwrap_or_else(|p| p.into_inner());
        let r = regs
            .entry(plugin.path().to_path_buf())
            .or_insert_with(|| register_once(plugin, client.platform_name()).map_err(|e| e.to_string()))
            .clone();
        r.map(|type_id| HostPrint { plugin, type_id })
    }

    /// Runs `f` with an execute context whose user data is `out`, destroyed
    /// afterwards (the handler is done with `out` when `f` returns: the
    /// execution is awaited).
    pub(crate) fn with_context<R>(
        &self,
        out: &PrintOutput,
        f: impl FnOnce(*mut PJRT_ExecuteContext) -> Result<R>,
    ) -> Result<R> {
        let (create, destroy) = self.plugin.context_fns().ok_or_else(|| unavailable("no execute context"))?;
        let ext = self.plugin.ffi_extension().ok_or_else(|| unavailable("no FFI extension"))?;
        let mut c = PJRT_ExecuteContext_Create_Args::new();
        // SAFETY: a zeroed, sized create-args struct; `context` is an out field.
        unsafe { self.plugin.call_raw("PJRT_ExecuteContext_Create", create, &mut c)? };
        let ctx = c.context;
        let r = (|| {
            let mut add = PJRT_FFI_UserData_Add_Args::new();
            add.context = ctx;
            add.user_data = PJRT_FFI_UserData {
                type_id: self.type_id,
                data: Arc::as_ptr(out).cast_mut().cast::<c_void>(),
                deleter: None,
            };
            let f_add = ext.user_data_add.map(|p| {
                // SAFETY: the extension's `user_data_add` has this signature.
                unsafe { std::mem::transmute::<unsafe extern "C" fn(), FfiUserDataAdd>(p) }
            });
            // SAFETY: live context; the data pointer stays valid while `out`
            // (borrowed for the whole call) lives; no deleter.
            unsafe { self.plugin.call_raw("PJRT_FFI_UserData_Add", f_add.map(fn_of), &mut add)? };
            f(ctx)
        })();
        let mut d = PJRT_ExecuteContext_Destroy_Args::new();
        d.context = ctx;
        // SAFETY: the context was created above and is destroyed once.
        let _ = unsafe { self.plugin.call_raw("PJRT_ExecuteContext_Destroy", destroy, &mut d) };
        r
    }
}

/// Adapts a typed extension entry point to the binding's `Fn<A>`.
fn fn_of<A>(f: unsafe extern "C" fn(*mut A) -> *mut PJRT_Error) -> unsafe extern "C" fn(*mut A) -> *mut PJRT_Error {
    f
}

fn unavailable(why: &str) -> XlaError {
    XlaError::Pjrt { op: "PJRT_FFI_Extension", code: ErrorCode::Unimplemented, message: why.into() }
}

fn register_once(plugin: Plugin, platform: &str) -> Result<i64> {
    let ext = plugin.ffi_extension().ok_or_else(|| unavailable("the plugin has no PJRT FFI extension"))?;
    plugin.context_fns().ok_or_else(|| unavailable("the plugin has no PJRT_ExecuteContext"))?;
    // SAFETY: the extension's entry points have these signatures.
    let (tid, reg) = unsafe {
        (
            ext.type_id_register.map(|p| std::mem::transmute::<unsafe extern "C" fn(), FfiTypeIdRegister>(p)),
            ext.register_handler.map(|p| std::mem::transmute::<unsafe extern "C" fn(), FfiRegisterHandler>(p)),
        )
    };
    let mut info = PJRT_FFI_Type_Info { deleter: None, serialize: None, deserialize: None };
    let mut t = PJRT_FFI_TypeID_Register_Args::new();
    t.type_info = &mut info;
    t.type_name = TYPE_NAME.as_ptr().cast();
    t.type_name_size = TYPE_NAME.len();
    // SAFETY: the name outlives the call; `type_id` is in/out (0: assign).
    unsafe { plugin.call_raw("PJRT_FFI_TypeID_Register", tid.map(fn_of), &mut t)? };
    TYPE_ID.store(t.type_id, std::sync::atomic::Ordering::SeqCst);
    let mut r = PJRT_FFI_Register_Handler_Args::new();
    r.target_name = TARGET.as_ptr().cast();
    r.target_name_size = TARGET.len();
    r.handler = handler as ffi::XlaFfiHandler as *mut c_void;
    r.platform_name = platform.as_ptr().cast();
    r.platform_name_size = platform.len();
    // SAFETY: the strings outlive the call (XLA copies them); `handler` is
    // an `XLA_FFI_Handler` that never unwinds.
    unsafe { plugin.call_raw("PJRT_FFI_Register_Handler", reg.map(fn_of), &mut r)? };
    Ok(t.type_id)
}

thread_local! {
    /// The handler's line buffer (see [`handler`]).
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// `XLA_FFI_DataType` → loopvm dtype (the ones loopvm has).
fn dtype_of(d: i32) -> Option<loopvm_runtime::DType> {
    use loopvm_runtime::DType;
    Some(match d {
        1 => DType::Bool,
        4 => DType::I32,
        5 => DType::I64,
        6 => DType::U8,
        8 => DType::U32,
        11 => DType::F32,
        12 => DType::F64,
        _ => return None,
    })
}

/// The `XLA_FFI_Handler`: answers XLA's metadata query (API version 0.1,
/// no traits) and, at the execute stage, prints its operands after the
/// first (the chain), and writes 0 to its one result (the next chain).
/// Never unwinds; a print it cannot make is dropped.
unsafe extern "C" fn handler(frame: *mut XLA_FFI_CallFrame) -> *mut XLA_FFI_Error {
    let body = || {
        // SAFETY: XLA passes a live call frame (null checked).
        let Some(f) = (unsafe { frame.as_ref() }) else { return };
        let ext = f.extension_start;
        // SAFETY: a non-null extension starts with `XLA_FFI_Extension_Base`;
        // a metadata one is an `XLA_FFI_Metadata_Extension` whose `metadata`
        // XLA owns and lets us fill.
        unsafe {
            if !ext.is_null() && (*ext).type_ == XLA_FFI_EXTENSION_METADATA {
                let md = (*ext.cast::<XLA_FFI_Metadata_Extension>()).metadata;
                if let Some(md) = md.as_mut() {
                    md.api_version = XLA_FFI_Api_Version {
                        struct_size: XLA_FFI_API_VERSION_STRUCT_SIZE,
                        extension_start: std::ptr::null_mut(),
                        major_version: XLA_FFI_API_MAJOR,
                        minor_version: XLA_FFI_API_MINOR,
                    };
                    md.traits = 0;
                }
                return;
            }
        }
        if f.stage != XLA_FFI_EXECUTION_STAGE_EXECUTE || f.api.is_null() {
            return;
        }
        // SAFETY: `rets.types` and `rets.rets` have `size` entries; a BUFFER
        // result points at an `XLA_FFI_Buffer` whose `data` holds one `i32`
        // (the emitter declares `tensor<i32>`).
        unsafe {
            if f.rets.size == 1 && *f.rets.types == XLA_FFI_RET_TYPE_BUFFER {
                let b = &*(*f.rets.rets).cast::<XLA_FFI_Buffer>();
                if b.dtype == 4 && b.rank == 0 && !b.data.is_null() {
                    b.data.cast::<i32>().write_unaligned(0);
                }
            }
        }
        // SAFETY: `XLA_FFI_Api` holds `XLA_FFI_ExecutionContext_Get` at this
        // offset in every version (fields are only appended).
        let get =
            unsafe { f.api.cast::<u8>().add(XLA_FFI_API_CONTEXT_GET_OFFSET).cast::<Option<XlaFfiContextGet>>().read() };
        let Some(get) = get else { return };
        let mut tid = XLA_FFI_TypeId { type_id: TYPE_ID.load(std::sync::atomic::Ordering::SeqCst) };
        let mut a = XLA_FFI_ExecutionContext_Get_Args {
            struct_size: XLA_FFI_CONTEXT_GET_STRUCT_SIZE,
            extension_start: std::ptr::null_mut(),
            ctx: f.ctx,
            type_id: &mut tid,
            data: std::ptr::null_mut(),
        };
        // SAFETY: the frame's own context; `a` is sized and outlives the call.
        let err = unsafe { get(&mut a) };
        if !err.is_null() || a.data.is_null() {
            // No output for this run (an execution without our context): the
            // error is leaked rather than risk a mismatched destroy call.
            return;
        }
        // SAFETY: the data is the `PrintOutput` that `with_context` added,
        // alive until the awaited execution ends.
        let out = unsafe { &*a.data.cast::<Mutex<Box<dyn Write + Send>>>() };
        let n_args = usize::try_from(f.args.size).unwrap_or(0);
        let mut parts = Vec::with_capacity(n_args.saturating_sub(1));
        for k in 1..n_args {
            // SAFETY: `args.types` and `args.args` have `size` entries; a
            // BUFFER argument points at an `XLA_FFI_Buffer` whose `dims` has
            // `rank` entries and whose `data` holds the dense elements.
            let t = unsafe {
                if *f.args.types.add(k) != XLA_FFI_ARG_TYPE_BUFFER {
                    return;
                }
                let b = &*(*f.args.args.add(k)).cast::<XLA_FFI_Buffer>();
                let Some(dtype) = dtype_of(b.dtype) else { return };
                let rank = usize::try_from(b.rank).unwrap_or(0);
                let dims: Vec<usize> = if rank == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(b.dims, rank).iter().map(|&d| d.max(0) as usize).collect()
                };
                let n: usize = dims.iter().product();
                if n > 0 && b.data.is_null() {
                    return;
                }
                loopvm_runtime::with_dtype!(dtype, T => {
                    let xs: Vec<T> = if n == 0 {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(b.data.cast::<T>(), n).to_vec()
                    };
                    Tensor::from_vec(&dims, xs)
                })
            };
            match t {
                Ok(t) => parts.push(t),
                Err(_) => return,
            }
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        // One line buffer per thread, reused: a print in a hot loop
        // allocates no line.
        LINE.with_borrow_mut(|line| {
            line.clear();
            loopvm_vm::write_print_line(line, &refs);
            line.push('\n');
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = w.write_all(line.as_bytes());
        });
    };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    std::ptr::null_mut()
}
