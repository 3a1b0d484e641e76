//! Safe wrappers over the PJRT C API: [`Plugin`], [`Client`], [`Executable`]
//! and [`Buffer`].
//!
//! Ownership: a [`Plugin`] is loaded once per process and never unloaded
//! (PJRT plugins start threads and register process-wide state, so
//! `dlclose` is not safe; loading the same file again returns the same
//! plugin and `PJRT_Plugin_Initialize` runs once). [`Executable`]s and
//! [`Buffer`]s keep their [`Client`] alive, so every PJRT object is destroyed
//! before the client that made it, and each wrapper destroys what it created
//! in `Drop`.
//!
//! Threads: PJRT clients, loaded executables and buffers are documented as
//! thread-safe (`xla/pjrt/pjrt_client.h`: "thread-safe" methods of
//! `PjRtClient`, `PjRtLoadedExecutable`, `PjRtBuffer`; JAX calls them from
//! many Python threads at once), so [`Client`], [`Executable`] and [`Buffer`]
//! are `Send + Sync`.

use std::collections::HashMap;
use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, OnceLock};

use super::error::ErrorCode;
use super::ffi::{self, *};
use super::{Result, XlaError};

// ------------------------------- Element types -------------------------------

/// The element type of a PJRT buffer (`PJRT_Buffer_Type`), for the types
/// loopvm can move between host and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// `PRED`: a boolean, one byte (0 or 1) per element; `i1` in StableHLO.
    Pred,
    /// `S8`: `i8`.
    S8,
    /// `S16`: `i16`.
    S16,
    /// `S32`: `i32`.
    S32,
    /// `S64`: `i64`.
    S64,
    /// `U8`: `ui8`.
    U8,
    /// `U16`: `ui16`.
    U16,
    /// `U32`: `ui32`.
    U32,
    /// `U64`: `ui64`.
    U64,
    /// `F16`: IEEE binary16.
    F16,
    /// `F32`: IEEE binary32.
    F32,
    /// `F64`: IEEE binary64.
    F64,
    /// `BF16`: bfloat16.
    BF16,
    /// `C64`: complex of two `f32`.
    C64,
    /// `C128`: complex of two `f64`.
    C128,
}

impl ElementType {
    /// Every element type, in `PJRT_Buffer_Type` order.
    pub const ALL: [ElementType; 15] = [
        ElementType::Pred,
        ElementType::S8,
        ElementType::S16,
        ElementType::S32,
        ElementType::S64,
        ElementType::U8,
        ElementType::U16,
        ElementType::U32,
        ElementType::U64,
        ElementType::F16,
        ElementType::F32,
        ElementType::F64,
        ElementType::BF16,
        ElementType::C64,
        ElementType::C128,
    ];

    /// The `PJRT_Buffer_Type` value.
    pub fn to_raw(self) -> i32 {
        // PJRT_Buffer_Type_INVALID is 0, then the types in `ALL` order.
        ElementType::ALL.iter().position(|&t| t == self).unwrap_or(0) as i32 + 1
    }

    /// The element type for a `PJRT_Buffer_Type` value, if it is one of these.
    pub fn from_raw(raw: i32) -> Option<ElementType> {
        usize::try_from(raw - 1).ok().and_then(|i| ElementType::ALL.get(i).copied())
    }

    /// Bytes per element on the host.
    pub fn byte_size(self) -> usize {
        match self {
            ElementType::Pred | ElementType::S8 | ElementType::U8 => 1,
            ElementType::S16 | ElementType::U16 | ElementType::F16 | ElementType::BF16 => 2,
            ElementType::S32 | ElementType::U32 | ElementType::F32 => 4,
            ElementType::S64 | ElementType::U64 | ElementType::F64 | ElementType::C64 => 8,
            ElementType::C128 => 16,
        }
    }

    /// The StableHLO / MLIR spelling of the type, as in `tensor<4xf32>`.
    pub fn mlir_name(self) -> &'static str {
        match self {
            ElementType::Pred => "i1",
            ElementType::S8 => "i8",
            ElementType::S16 => "i16",
            ElementType::S32 => "i32",
            ElementType::S64 => "i64",
            ElementType::U8 => "ui8",
            ElementType::U16 => "ui16",
            ElementType::U32 => "ui32",
            ElementType::U64 => "ui64",
            ElementType::F16 => "f16",
            ElementType::F32 => "f32",
            ElementType::F64 => "f64",
            ElementType::BF16 => "bf16",
            ElementType::C64 => "complex<f32>",
            ElementType::C128 => "complex<f64>",
        }
    }
}

// ---------------------------------- Plugin -----------------------------------

/// The PJRT C API version a plugin implements (`PJRT_Api.pjrt_api_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// `PJRT_API_MAJOR` the plugin was built with.
    pub major: i32,
    /// `PJRT_API_MINOR` the plugin was built with.
    pub minor: i32,
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A loaded plugin: lives until the process exits.
struct LoadedPlugin {
    path: PathBuf,
    api: NonNull<PJRT_Api>,
    /// The optional entries after `api`'s prefix, when the plugin's table
    /// reaches them.
    tail: Option<NonNull<PJRT_Api_BufferTail>>,
    version: ApiVersion,
    /// Kept so the mapping stays alive; never dropped (the `LoadedPlugin` is
    /// leaked), i.e. the library is never unloaded.
    _library: libloading::Library,
}

// SAFETY: `api` (and `tail`, inside the same table) points to the plugin's
// immutable, process-lifetime function table (PJRT never mutates it after
// `GetPjrtApi`), and the library handle is only kept, never used; PJRT entry
// points may be called from any thread.
unsafe impl Send for LoadedPlugin {}
// SAFETY: as for `Send`: shared access only reads the immutable table.
unsafe impl Sync for LoadedPlugin {}

/// A PJRT plugin: a shared library exporting `GetPjrtApi`, loaded and
/// initialised. Cheap to copy; loaded at most once per process and path.
#[derive(Clone, Copy)]
pub struct Plugin {
    inner: &'static LoadedPlugin,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("path", &self.inner.path).field("api_version", &self.inner.version).finish()
    }
}

fn loaded_plugins() -> &'static Mutex<HashMap<PathBuf, &'static LoadedPlugin>> {
    static PLUGINS: OnceLock<Mutex<HashMap<PathBuf, &'static LoadedPlugin>>> = OnceLock::new();
    PLUGINS.get_or_init(Default::default)
}

impl Plugin {
    /// Loads the plugin at `path` (once per process: later calls with the
    /// same file return the same plugin), checks that its API is compatible
    /// with the header this binding follows, and runs
    /// `PJRT_Plugin_Initialize`.
    pub fn load(path: impl AsRef<Path>) -> Result<Plugin> {
        let path = path.as_ref();
        let unusable = |reason: String| XlaError::PluginLoad { path: path.to_path_buf(), reason };
        let canonical = path.canonicalize().map_err(|e| unusable(format!("cannot open it ({e})")))?;
        let mut plugins = loaded_plugins().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&inner) = plugins.get(&canonical) {
            return Ok(Plugin { inner });
        }
        // XLA_FLAGS for the plugin's platform plus LOOPVM_XLA_FLAGS (issue 8).
        crate::hlo::policy::prepare_xla_flags(&canonical);
        // XLA's info lines (`cpu_device_count set via create_options`, the
        // partitioner's choice) are not the user's business: warnings and
        // errors only, unless the user set the level.
        if std::env::var_os("TF_CPP_MIN_LOG_LEVEL").is_none() {
            std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "1");
        }

        // SAFETY: loading a shared library runs its initialisers; the file is
        // one the user or plugin discovery designated as a PJRT plugin, whose
        // initialisers only set up its own state.
        let library = unsafe { libloading::Library::new(&canonical) }
            .map_err(|e| unusable(format!("cannot load it as a shared library ({e})")))?;
        // SAFETY: `GetPjrtApi` has the C signature `const PJRT_Api*
        // GetPjrtApi(void)` in every PJRT plugin, which `GetPjrtApiFn` declares.
        let get_api = unsafe { library.get::<GetPjrtApiFn>(GET_PJRT_API_SYMBOL) }
            .map_err(|e| unusable(format!("it exports no `GetPjrtApi` ({e})")))?;
        // SAFETY: calling the plugin's exported entry point, which takes no
        // arguments and returns a pointer to its static table (or null).
        let api = NonNull::new(unsafe { get_api() }.cast_mut())
            .ok_or_else(|| unusable("`GetPjrtApi` returned null".into()))?;
        // SAFETY: `api` is non-null and points to the plugin's `PJRT_Api`;
        // every version of the table starts with `struct_size`,
        // `extension_start` and `pjrt_api_version`, which is all we read
        // before checking `struct_size`.
        let (table_size, version) = unsafe {
            let v = ptr::addr_of!((*api.as_ptr()).pjrt_api_version).read();
            (
                ptr::addr_of!((*api.as_ptr()).struct_size).read(),
                ApiVersion { major: v.major_version, minor: v.minor_version },
            )
        };
        if version.major != ffi::HEADER_API_MAJOR {
            return Err(unusable(format!(
                "it implements PJRT C API {version}, loopvm speaks {}.{} (a different major \
                 version is not compatible)",
                ffi::HEADER_API_MAJOR,
                ffi::HEADER_API_MINOR
            )));
        }
        if table_size < PJRT_Api::STRUCT_SIZE {
            return Err(unusable(format!(
                "it implements PJRT C API {version}, too old: its function table has {table_size} \
                 bytes, loopvm needs {} (written against API {}.{})",
                PJRT_Api::STRUCT_SIZE,
                ffi::HEADER_API_MAJOR,
                ffi::HEADER_API_MINOR
            )));
        }

        let tail = (table_size >= ffi::API_TAIL_END).then(|| {
            // SAFETY: the table is `table_size` bytes long, which covers
            // `API_TAIL_OFFSET..API_TAIL_END`; the offset is a multiple of the
            // pointer size, so the tail is aligned like the table.
            unsafe { NonNull::new_unchecked(api.as_ptr().cast::<u8>().add(ffi::API_TAIL_OFFSET).cast()) }
        });
        let inner: &'static LoadedPlugin =
            Box::leak(Box::new(LoadedPlugin { path: canonical.clone(), api, tail, version, _library: library }));
        let plugin = Plugin { inner };
        let mut args = PJRT_Plugin_Initialize_Args::new();
        // SAFETY: `args` is a zeroed `PJRT_Plugin_Initialize_Args` with its
        // `struct_size`; it holds no pointers.
        unsafe { plugin.call("PJRT_Plugin_Initialize", plugin.api().PJRT_Plugin_Initialize, &mut args) }
            .map_err(|e| unusable(format!("initialisation failed: {e}")))?;
        plugins.insert(canonical, inner);
        Ok(plugin)
    }

    /// The plugin file (canonical path).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The PJRT C API version the plugin implements.
    pub fn api_version(&self) -> ApiVersion {
        self.inner.version
    }

    /// The plugin's attributes (`PJRT_Plugin_Attributes`), e.g.
    /// `xla_version`, `stablehlo_current_version` or
    /// `stablehlo_minimum_version`, with values rendered as text (lists as
    /// `a.b.c`, the way StableHLO versions are written).
    pub fn attributes(&self) -> Result<Vec<(String, String)>> {
        let mut args = PJRT_Plugin_Attributes_Args::new();
        // SAFETY: `args` is a zeroed, sized `PJRT_Plugin_Attributes_Args`;
        // the plugin fills the two out fields.
        unsafe { self.call("PJRT_Plugin_Attributes", self.api().PJRT_Plugin_Attributes, &mut args)? };
        let mut out = Vec::with_capacity(args.num_attributes);
        for i in 0..args.num_attributes {
            // SAFETY: the plugin returned an array of `num_attributes` named
            // values that lives as long as the process.
            let nv = unsafe { &*args.attributes.add(i) };
            // SAFETY: `name` points to `name_size` bytes owned by the plugin.
            let name = unsafe { string_from(nv.name, nv.name_size) };
            // SAFETY: `type_` says which union member is set, and for strings
            // and lists `value_size` is the number of elements at the pointer.
            let value = unsafe {
                match nv.type_ {
                    NAMED_VALUE_STRING => string_from(nv.value.string_value, nv.value_size),
                    NAMED_VALUE_INT64 => nv.value.int64_value.to_string(),
                    NAMED_VALUE_INT64_LIST => {
                        let p = nv.value.int64_array_value;
                        let items: &[i64] = if p.is_null() || nv.value_size == 0 {
                            &[]
                        } else {
                            std::slice::from_raw_parts(p, nv.value_size)
                        };
                        items.iter().map(i64::to_string).collect::<Vec<_>>().join(".")
                    }
                    NAMED_VALUE_FLOAT => nv.value.float_value.to_string(),
                    NAMED_VALUE_BOOL => nv.value.bool_value.to_string(),
                    other => format!("<value of unknown type {other}>"),
                }
            };
            out.push((name, value));
        }
        Ok(out)
    }

    /// The plugin's extensions, as (`PJRT_Extension_Type`, `struct_size`),
    /// in chain order (at most 64: a longer or cyclic chain is cut).
    pub fn extensions(&self) -> Vec<(i32, usize)> {
        let mut out = Vec::new();
        let mut e = self.api().extension_start.cast::<ffi::PJRT_Extension_Base_Fields>();
        while !e.is_null() && out.len() < 64 {
            // SAFETY: the chain's nodes are the plugin's static extension
            // structs, each starting with `PJRT_Extension_Base`.
            let base = unsafe { &*e };
            out.push((base.type_, base.struct_size));
            e = base.next;
        }
        out
    }

    /// Whether the plugin has the PJRT FFI extension with
    /// `PJRT_FFI_Register_Handler` (what host callbacks for `print` on XLA
    /// will need).
    pub fn has_ffi_extension(&self) -> bool {
        self.extensions()
            .iter()
            .any(|&(t, size)| t == ffi::EXTENSION_TYPE_FFI && size >= ffi::FFI_EXTENSION_STRUCT_SIZE)
    }

    /// The plugin's `PJRT_FFI_Extension`, when its chain has one with
    /// `register_handler`.
    pub(crate) fn ffi_extension(&self) -> Option<&'static ffi::PJRT_FFI_Extension> {
        let mut e = self.api().extension_start.cast::<ffi::PJRT_Extension_Base_Fields>();
        let mut n = 0;
        while !e.is_null() && n < 64 {
            // SAFETY: as in `extensions`.
            let base = unsafe { &*e };
            if base.type_ == ffi::EXTENSION_TYPE_FFI && base.struct_size >= ffi::FFI_EXTENSION_STRUCT_SIZE {
                // SAFETY: an FFI node of at least `FFI_EXTENSION_STRUCT_SIZE`
                // bytes is a `PJRT_FFI_Extension`, static in the plugin.
                return Some(unsafe { &*e.cast::<ffi::PJRT_FFI_Extension>() });
            }
            e = base.next;
            n += 1;
        }
        None
    }

    /// `PJRT_ExecuteContext_Create` and `_Destroy`, when the table reaches them.
    pub(crate) fn context_fns(
        &self,
    ) -> Option<(ffi::Fn<ffi::PJRT_ExecuteContext_Create_Args>, ffi::Fn<ffi::PJRT_ExecuteContext_Destroy_Args>)> {
        // SAFETY: `struct_size` is the first field of every table version.
        let size = unsafe { ptr::addr_of!((*self.inner.api.as_ptr()).struct_size).read() };
        if size < ffi::API_CONTEXT_END {
            return None;
        }
        // SAFETY: the table is `size` bytes long, covering both entries, at
        // pointer-aligned offsets; entries are nullable function pointers.
        unsafe {
            let base = self.inner.api.as_ptr().cast::<u8>().add(ffi::API_CONTEXT_CREATE_OFFSET);
            Some((
                base.cast::<ffi::Fn<ffi::PJRT_ExecuteContext_Create_Args>>().read(),
                base.add(8).cast::<ffi::Fn<ffi::PJRT_ExecuteContext_Destroy_Args>>().read(),
            ))
        }
    }

    /// Calls a PJRT entry point, turning its error into [`XlaError`].
    ///
    /// # Safety
    /// As for `call`.
    pub(crate) unsafe fn call_raw<A>(&self, op: &'static str, f: ffi::Fn<A>, args: &mut A) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.call(op, f, args) }
    }

    fn api(&self) -> &'static PJRT_Api {
        // SAFETY: `api` is non-null, points to the plugin's table, which
        // lives as long as the process (the library is never unloaded) and is
        // never mutated; its `struct_size` was checked to cover every field of
        // our (prefix) declaration.
        unsafe { self.inner.api.as_ref() }
    }

    /// The optional entries after `PJRT_Buffer_ToHostBuffer`, if the
    /// plugin's table has them.
    fn api_tail(&self) -> Option<&'static PJRT_Api_BufferTail> {
        // SAFETY: `tail` was set only when the table's `struct_size` covers
        // it; it points into the plugin's immutable, process-lifetime table.
        self.inner.tail.map(|t| unsafe { t.as_ref() })
    }

    /// Calls the PJRT entry point `f` (named `op`) with `args` and turns a
    /// returned `PJRT_Error` into an [`XlaError`] with the plugin's message
    /// and code. A null entry is reported as `UNIMPLEMENTED`.
    ///
    /// # Safety
    /// `f` must be the table entry whose argument type is `A`, and `args`
    /// must satisfy that entry's contract: `struct_size` set, every input
    /// pointer valid (and pointing to live data of the documented length) for
    /// the duration of the call.
    unsafe fn call<A>(&self, op: &'static str, f: ffi::Fn<A>, args: &mut A) -> Result<()> {
        let f = f.ok_or(XlaError::Pjrt {
            op,
            code: ErrorCode::Unimplemented,
            message: "the plugin does not implement this entry point".into(),
        })?;
        // SAFETY: the caller upholds the entry point's contract for `args`.
        let err = unsafe { f(args) };
        match NonNull::new(err) {
            None => Ok(()),
            Some(err) => Err(self.take_error(op, err)),
        }
    }

    /// Reads the message and code of `err`, then destroys it.
    fn take_error(&self, op: &'static str, err: NonNull<PJRT_Error>) -> XlaError {
        let api = self.api();
        let mut msg = PJRT_Error_Message_Args::new();
        msg.error = err.as_ptr();
        let message = match api.PJRT_Error_Message {
            Some(f) => {
                // SAFETY: `err` is a live error returned by the plugin; the
                // message it returns lives as long as `err`, and is copied out
                // before `err` is destroyed below.
                unsafe {
                    f(&mut msg);
                    string_from(msg.message, msg.message_size)
                }
            }
            None => "(the plugin gives no error messages)".into(),
        };
        let mut code_args = PJRT_Error_GetCode_Args::new();
        code_args.error = err.as_ptr();
        let code = match api.PJRT_Error_GetCode {
            Some(f) => {
                // SAFETY: `err` is a live error; GetCode only writes `code`.
                let nested = unsafe { f(&mut code_args) };
                if nested.is_null() {
                    ErrorCode::from_raw(code_args.code)
                } else {
                    self.destroy_error(nested);
                    ErrorCode::Unknown
                }
            }
            None => ErrorCode::Unknown,
        };
        self.destroy_error(err.as_ptr());
        XlaError::Pjrt { op, code, message }
    }

    fn destroy_error(&self, err: *mut PJRT_Error) {
        if let Some(f) = self.api().PJRT_Error_Destroy {
            let mut args = PJRT_Error_Destroy_Args::new();
            args.error = err;
            // SAFETY: `err` was returned by the plugin and is destroyed once.
            unsafe { f(&mut args) };
        }
    }

    /// Waits for `event` (if not null), then destroys it; returns the
    /// event's error status.
    fn await_and_destroy(&self, op: &'static str, event: *mut PJRT_Event) -> Result<()> {
        if event.is_null() {
            return Ok(());
        }
        let mut wait = PJRT_Event_Await_Args::new();
        wait.event = event;
        // SAFETY: `event` is a live event the plugin handed to us.
        let status = unsafe { self.call(op, self.api().PJRT_Event_Await, &mut wait) };
        let mut destroy = PJRT_Event_Destroy_Args::new();
        destroy.event = event;
        // SAFETY: `event` is live and destroyed exactly once, here.
        let destroyed = unsafe { self.call("PJRT_Event_Destroy", self.api().PJRT_Event_Destroy, &mut destroy) };
        status.and(destroyed)
    }
}

/// Copies `len` bytes at `p` into a `String` (lossily; empty when null).
///
/// # Safety
/// `p` must be null or point to `len` readable bytes.
unsafe fn string_from(p: *const c_char, len: usize) -> String {
    if p.is_null() || len == 0 {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------- Client -----------------------------------

struct ClientInner {
    plugin: Plugin,
    raw: NonNull<PJRT_Client>,
    /// The first addressable device: where buffers are put and code runs.
    device: NonNull<PJRT_Device>,
    /// Every addressable device, in the client's order (the first is
    /// `device`); partition `p` of a partitioned executable runs on the
    /// `p`-th.
    devices: Vec<NonNull<PJRT_Device>>,
    platform_name: String,
}

// SAFETY: a PJRT client is thread-safe (all `PjRtClient` methods may be called
// concurrently, see the module docs); the device pointer is owned by the client
// and immutable; `plugin` is `Send + Sync`.
unsafe impl Send for ClientInner {}
// SAFETY: as for `Send`.
unsafe impl Sync for ClientInner {}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let mut args = PJRT_Client_Destroy_Args::new();
        args.client = self.raw.as_ptr();
        // SAFETY: the client is live and, since every buffer and executable
        // holds an `Arc` of this, nothing made from it is still alive.
        // Nothing can be done with an error while dropping; it is destroyed.
        let _ = unsafe { self.plugin.call("PJRT_Client_Destroy", self.plugin.api().PJRT_Client_Destroy, &mut args) };
    }
}

/// A PJRT client of one plugin; buffers live on, and programs run on, its
/// first addressable device. Cheap to clone (shared).
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

/// A device of a client, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `PJRT_DeviceDescription_Id`.
    pub id: i32,
    /// `PJRT_DeviceDescription_Kind`, e.g. `cpu` or `NVIDIA H100 80GB HBM3`.
    pub kind: String,
    /// `PJRT_DeviceDescription_ToString`, e.g. `CpuDevice(id=0)`.
    pub description: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("plugin", &self.inner.plugin)
            .field("platform", &self.inner.platform_name)
            .finish()
    }
}

/// `CompileOptionsProto { executable_build_options: ExecutableBuildOptionsProto
/// { device_ordinal: -1, num_replicas: 1, num_partitions: 1 } }`, serialised
/// by hand. Field numbers from XLA's `xla/pjrt/proto/compile_options.proto`:
/// `CompileOptionsProto.executable_build_options = 3` (a message: wire type
/// 2, tag byte `3 << 3 | 2 = 0x1a`), `ExecutableBuildOptionsProto.
/// device_ordinal = 1` (int64 varint: tag `0x08`, -1 as a ten-byte varint,
/// "not set", as `CompileOptions().ToProto()` writes it), `num_replicas = 4`
/// (tag `0x20`) and `num_partitions = 5` (tag `0x28`). An empty
/// `CompileOptionsProto` (0 replicas) crashes the CPU plugin.
pub(crate) const COMPILE_OPTIONS_PROTO: &[u8] = &[
    0x1a, 15, // executable_build_options, 15 bytes:
    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // device_ordinal = -1
    0x20, 0x01, // num_replicas = 1
    0x28, 0x01, // num_partitions = 1
];

/// The `CompileOptionsProto` for `partitions` SPMD partitions on the
/// devices `device_ids` (one per partition, one replica): as
/// [`COMPILE_OPTIONS_PROTO`], plus `use_spmd_partitioning = 6` (tag `0x30`),
/// `use_shardy_partitioner = 19` (tag `0x98 0x01`) when `shardy`, and
/// `device_assignment = 9` (tag `0x4a`), a `DeviceAssignmentProto`
/// (`xla/xla_data.proto`: `replica_count = 1`, `computation_count = 2`,
/// `computation_devices = 3`, each a `ComputationDevice` with
/// `replica_device_ids = 1`, packed). One partition gives
/// [`COMPILE_OPTIONS_PROTO`] byte for byte.
pub(crate) fn compile_options_proto(device_ids: &[i64], shardy: bool) -> Vec<u8> {
    if device_ids.len() <= 1 {
        return COMPILE_OPTIONS_PROTO.to_vec();
    }
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, tag: u64, body: &[u8]) {
        varint(out, tag);
        varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }
    let n = device_ids.len() as u64;
    let mut assignment = Vec::new();
    assignment.extend_from_slice(&[0x08, 0x01]); // replica_count = 1
    assignment.push(0x10); // computation_count = n
    varint(&mut assignment, n);
    for &id in device_ids {
        let mut ids = Vec::new();
        varint(&mut ids, id as u64);
        let mut device = Vec::new();
        field(&mut device, 0x0a, &ids); // replica_device_ids (packed)
        field(&mut assignment, 0x1a, &device); // computation_devices
    }
    let mut build = vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]; // device_ordinal = -1
    build.extend_from_slice(&[0x20, 0x01]); // num_replicas = 1
    build.push(0x28); // num_partitions = n
    varint(&mut build, n);
    build.extend_from_slice(&[0x30, 0x01]); // use_spmd_partitioning = true
    field(&mut build, 0x4a, &assignment); // device_assignment
    if shardy {
        build.extend_from_slice(&[0x98, 0x01, 0x01]); // use_shardy_partitioner = true
    }
    let mut out = Vec::new();
    field(&mut out, 0x1a, &build); // executable_build_options
    out
}

/// The name of the CPU plugin's client option that sets its number of
/// devices (`xla/pjrt/c/pjrt_c_api_cpu_internal.cc`, `PJRT_Client_Create`:
/// an `int64` named value).
pub const CPU_DEVICE_COUNT: &str = "cpu_device_count";

impl Client {
    /// Creates a client of `plugin` (`PJRT_Client_Create` with no options).
    pub fn new(plugin: Plugin) -> Result<Client> {
        Client::create(plugin, &[])
    }

    /// Creates a client with at least `n` addressable devices. `n > 1`
    /// passes the CPU plugin's [`CPU_DEVICE_COUNT`] option; should the
    /// plugin refuse it (another platform, whose device count is its
    /// hardware's), the client is created without it. Fewer than `n`
    /// addressable devices is an error saying how many there are.
    pub fn with_devices(plugin: Plugin, n: usize) -> Result<Client> {
        if n <= 1 {
            return Client::new(plugin);
        }
        let count = i64::try_from(n).map_err(|_| XlaError::InvalidArgument(format!("{n} devices")))?;
        let client = Client::create(plugin, &[(CPU_DEVICE_COUNT, count)]).or_else(|_| Client::new(plugin))?;
        let have = client.inner.devices.len();
        if have < n {
            return Err(XlaError::InvalidArgument(format!(
                "{n} devices asked for, but the {} client has {have} addressable device(s)",
                client.platform_name()
            )));
        }
        Ok(client)
    }

    /// `PJRT_Client_Create` with `int64` options.
    fn create(plugin: Plugin, options: &[(&str, i64)]) -> Result<Client> {
        let named: Vec<PJRT_NamedValue> = options
            .iter()
            .map(|(name, v)| {
                let mut o = PJRT_NamedValue::new();
                o.name = name.as_ptr().cast();
                o.name_size = name.len();
                o.type_ = NAMED_VALUE_INT64;
                o.value = PJRT_NamedValue_Value { int64_value: *v };
                o.value_size = 1;
                o
            })
            .collect();
        let mut args = PJRT_Client_Create_Args::new();
        args.create_options = if named.is_empty() { ptr::null() } else { named.as_ptr() };
        args.num_options = named.len();
        // SAFETY: a sized `PJRT_Client_Create_Args` whose options (and the
        // names they point to) outlive the call, which only reads them; no
        // key-value callbacks (null); `client` is an out field.
        unsafe { plugin.call("PJRT_Client_Create", plugin.api().PJRT_Client_Create, &mut args)? };
        let raw = NonNull::new(args.client).ok_or(XlaError::Pjrt {
            op: "PJRT_Client_Create",
            code: ErrorCode::Internal,
            message: "the plugin returned no client".into(),
        })?;
        // From here on, dropping `inner` destroys the client. The device is
        // set below; a dangling placeholder is never dereferenced.
        let mut inner =
            ClientInner { plugin, raw, device: NonNull::dangling(), devices: Vec::new(), platform_name: String::new() };
        let devices = raw_devices(&inner)?;
        inner.device = *devices.first().ok_or(XlaError::Pjrt {
            op: "PJRT_Client_AddressableDevices",
            code: ErrorCode::NotFound,
            message: "the client has no addressable device".into(),
        })?;
        inner.devices = devices;
        let mut name = PJRT_Client_PlatformName_Args::new();
        name.client = raw.as_ptr();
        // SAFETY: live client; the name it returns is owned by the client and
        // copied out at once.
        inner.platform_name = unsafe {
            plugin.call("PJRT_Client_PlatformName", plugin.api().PJRT_Client_PlatformName, &mut name)?;
            string_from(name.platform_name, name.platform_name_size)
        };
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The plugin this client belongs to.
    pub fn plugin(&self) -> Plugin {
        self.inner.plugin
    }

    /// The platform name, e.g. `cpu`, `cuda` or `tpu`.
    pub fn platform_name(&self) -> &str {
        &self.inner.platform_name
    }

    /// Platform-specific version text (e.g. the CUDA or libtpu version).
    pub fn platform_version(&self) -> Result<String> {
        let plugin = self.inner.plugin;
        let mut args = PJRT_Client_PlatformVersion_Args::new();
        args.client = self.inner.raw.as_ptr();
        // SAFETY: live client; the text is owned by the client and copied out.
        unsafe {
            plugin.call("PJRT_Client_PlatformVersion", plugin.api().PJRT_Client_PlatformVersion, &mut args)?;
            Ok(string_from(args.platform_version, args.platform_version_size))
        }
    }

    /// The client's addressable devices.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>> {
        let plugin = self.inner.plugin;
        let api = plugin.api();
        raw_devices(&self.inner)?
            .into_iter()
            .map(|device| {
                let mut get = PJRT_Device_GetDescription_Args::new();
                get.device = device.as_ptr();
                // SAFETY: `device` is one of the live client's devices.
                unsafe { plugin.call("PJRT_Device_GetDescription", api.PJRT_Device_GetDescription, &mut get)? };
                let desc = get.device_description;
                let mut id = PJRT_DeviceDescription_Id_Args::new();
                id.device_description = desc;
                // SAFETY: `desc` is the device's description, owned by the
                // client.
                unsafe { plugin.call("PJRT_DeviceDescription_Id", api.PJRT_DeviceDescription_Id, &mut id)? };
                let mut kind = PJRT_DeviceDescription_Kind_Args::new();
                kind.device_description = desc;
                // SAFETY: as above; the kind text lives as long as the device
                // and is copied out at once.
                let kind = unsafe {
                    plugin.call("PJRT_DeviceDescription_Kind", api.PJRT_DeviceDescription_Kind, &mut kind)?;
                    string_from(kind.device_kind, kind.device_kind_size)
                };
                let mut text = PJRT_DeviceDescription_ToString_Args::new();
                text.device_description = desc;
                // SAFETY: as above.
                let description = unsafe {
                    plugin.call("PJRT_DeviceDescription_ToString", api.PJRT_DeviceDescription_ToString, &mut text)?;
                    string_from(text.to_string, text.to_string_size)
                };
                Ok(DeviceInfo { id: id.id, kind, description })
            })
            .collect()
    }

    /// Compiles a StableHLO module given as MLIR text (format `"mlir"`, one
    /// replica, one partition) for the client's first device. A syntax or
    /// verification error is returned as [`XlaError::Pjrt`] with the
    /// plugin's diagnostic.
    pub fn compile(&self, mlir_text: &str) -> Result<Executable> {
        self.compile_bytes(mlir_text.as_bytes())
    }

    /// [`Client::compile`] for a module given as MLIR bytecode or text bytes.
    pub fn compile_bytes(&self, mlir: &[u8]) -> Result<Executable> {
        self.compile_partitioned(mlir, 1, false)
    }

    /// The number of addressable devices.
    pub fn device_count(&self) -> usize {
        self.inner.devices.len()
    }

    /// The serialised compile options for `partitions` SPMD partitions on
    /// the first `partitions` addressable devices (GSPMD, or Shardy when
    /// `shardy`); one partition: [`COMPILE_OPTIONS_PROTO`].
    pub fn compile_options(&self, partitions: usize, shardy: bool) -> Result<Vec<u8>> {
        if partitions > self.inner.devices.len() {
            return Err(XlaError::InvalidArgument(format!(
                "{partitions} partitions asked for, but the client has {} addressable device(s)",
                self.inner.devices.len()
            )));
        }
        let ids = self.devices()?.iter().take(partitions).map(|d| i64::from(d.id)).collect::<Vec<_>>();
        Ok(compile_options_proto(&ids, shardy))
    }

    /// Compiles a module for `partitions` SPMD partitions (XLA's
    /// partitioner splits it by the module's sharding annotations; partition
    /// `p` runs on the `p`-th addressable device). One partition is
    /// [`Client::compile_bytes`].
    pub fn compile_partitioned(&self, mlir: &[u8], partitions: usize, shardy: bool) -> Result<Executable> {
        let options = self.compile_options(partitions.max(1), shardy)?;
        let plugin = self.inner.plugin;
        let api = plugin.api();
        const FORMAT: &str = "mlir";
        let mut program = PJRT_Program::new();
        // `code` is declared `char*` but only read by `PJRT_Client_Compile`.
        program.code = mlir.as_ptr().cast::<c_char>().cast_mut();
        program.code_size = mlir.len();
        program.format = FORMAT.as_ptr().cast();
        program.format_size = FORMAT.len();
        let mut args = PJRT_Client_Compile_Args::new();
        args.client = self.inner.raw.as_ptr();
        args.program = &program;
        args.compile_options = options.as_ptr().cast();
        args.compile_options_size = options.len();
        // SAFETY: live client; `program` (and the code and format bytes it
        // points to) and the options bytes outlive the call, which only reads
        // them; `executable` is an out field.
        unsafe { plugin.call("PJRT_Client_Compile", api.PJRT_Client_Compile, &mut args)? };
        let raw = NonNull::new(args.executable).ok_or(XlaError::Pjrt {
            op: "PJRT_Client_Compile",
            code: ErrorCode::Internal,
            message: "the plugin returned no executable".into(),
        })?;
        let mut exe = Executable { client: self.inner.clone(), raw, num_outputs: 0, partitions: partitions.max(1) };
        exe.num_outputs = exe.query_num_outputs()?;
        Ok(exe)
    }

    /// Loads an executable serialised by [`Executable::serialize`]
    /// (`PJRT_Executable_DeserializeAndLoad`) onto the client's device. The
    /// bytes must come from the same plugin build; anything else is an
    /// error from the plugin (never undefined behaviour, as far as the
    /// plugin checks its input: callers verify a checksum first).
    pub fn deserialize(&self, bytes: &[u8]) -> Result<Executable> {
        self.deserialize_partitioned(bytes, 1)
    }

    /// [`Client::deserialize`] for an executable compiled for `partitions`
    /// partitions ([`Client::compile_partitioned`]).
    pub fn deserialize_partitioned(&self, bytes: &[u8], partitions: usize) -> Result<Executable> {
        let plugin = self.inner.plugin;
        let mut args = PJRT_Executable_DeserializeAndLoad_Args::new();
        args.client = self.inner.raw.as_ptr();
        args.serialized_executable = bytes.as_ptr().cast();
        args.serialized_executable_size = bytes.len();
        // SAFETY: live client; `bytes` outlives the call, which only reads
        // them; null compile options mean the executable's own;
        // `loaded_executable` is an out field.
        unsafe {
            plugin.call(
                "PJRT_Executable_DeserializeAndLoad",
                plugin.api().PJRT_Executable_DeserializeAndLoad,
                &mut args,
            )?
        };
        let raw = NonNull::new(args.loaded_executable).ok_or(XlaError::Pjrt {
            op: "PJRT_Executable_DeserializeAndLoad",
            code: ErrorCode::Internal,
            message: "the plugin returned no executable".into(),
        })?;
        let mut exe = Executable { client: self.inner.clone(), raw, num_outputs: 0, partitions: partitions.max(1) };
        exe.num_outputs = exe.query_num_outputs()?;
        Ok(exe)
    }

    /// What identifies the code this client compiles, for a persistent
    /// cache key: the plugin file (path, size, modification time), its PJRT
    /// API version and attributes (`xla_version`, ...), the platform's name
    /// and version, and the first device's kind.
    pub fn cache_identity(&self) -> String {
        let plugin = self.inner.plugin;
        let mut s = format!("plugin={}\n", plugin.path().display());
        if let Ok(md) = std::fs::metadata(plugin.path()) {
            let mtime = md.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            s.push_str(&format!("plugin_size={}\nplugin_mtime={:?}\n", md.len(), mtime));
        }
        s.push_str(&format!("api={}\n", plugin.api_version()));
        for (k, v) in plugin.attributes().unwrap_or_default() {
            s.push_str(&format!("attr.{k}={v}\n"));
        }
        s.push_str(&format!("platform={}\n", self.platform_name()));
        s.push_str(&format!("platform_version={}\n", self.platform_version().unwrap_or_default()));
        let kind = self.devices().ok().and_then(|d| d.into_iter().next()).map(|d| d.kind).unwrap_or_default();
        s.push_str(&format!("device_kind={kind}\n"));
        s
    }

    /// Copies a dense, row-major host array to the client's device.
    /// `data` holds the elements in native byte order (`Pred`: one byte, 0 or
    /// 1, per element) and its length must be the product of `dims` times
    /// the element size.
    pub fn buffer_from_host(&self, data: &[u8], dims: &[usize], ty: ElementType) -> Result<Buffer> {
        self.buffer_from_host_on(data, dims, ty, 0)
    }

    /// [`Client::buffer_from_host`] onto the `device`-th addressable device.
    pub fn buffer_from_host_on(&self, data: &[u8], dims: &[usize], ty: ElementType, device: usize) -> Result<Buffer> {
        let device = *self.inner.devices.get(device).ok_or_else(|| {
            XlaError::InvalidArgument(format!(
                "no device {device}: the client has {} addressable device(s)",
                self.inner.devices.len()
            ))
        })?;
        let expected = dims
            .iter()
            .try_fold(ty.byte_size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| XlaError::InvalidArgument(format!("shape {dims:?} is too large")))?;
        if data.len() != expected {
            return Err(XlaError::InvalidArgument(format!(
                "a {} buffer of shape {dims:?} needs {expected} bytes, got {}",
                ty.mlir_name(),
                data.len()
            )));
        }
        let dims_i64 = dims
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<std::result::Result<Vec<i64>, _>>()
            .map_err(|_| XlaError::InvalidArgument(format!("shape {dims:?} is too large")))?;
        let plugin = self.inner.plugin;
        let mut args = PJRT_Client_BufferFromHostBuffer_Args::new();
        args.client = self.inner.raw.as_ptr();
        args.data = data.as_ptr().cast();
        args.type_ = ty.to_raw();
        args.dims = dims_i64.as_ptr();
        args.num_dims = dims_i64.len();
        args.host_buffer_semantics = HOST_BUFFER_IMMUTABLE_ONLY_DURING_CALL;
        args.device = device.as_ptr();
        // SAFETY: live client and device; `data` holds exactly the bytes the
        // dense shape needs (checked above) and, with "immutable only during
        // call" semantics, is only read during the call; `dims` outlives the
        // call; null strides, memory and layout mean dense, default memory,
        // default layout.
        unsafe {
            plugin.call("PJRT_Client_BufferFromHostBuffer", plugin.api().PJRT_Client_BufferFromHostBuffer, &mut args)?
        };
        // Wrap the buffer first so that it is destroyed on any error below.
        let buffer = NonNull::new(args.buffer).map(|raw| Buffer { client: self.inner.clone(), raw });
        plugin.await_and_destroy("PJRT_Event_Await", args.done_with_host_buffer)?;
        buffer.ok_or(XlaError::Pjrt {
            op: "PJRT_Client_BufferFromHostBuffer",
            code: ErrorCode::Internal,
            message: "the plugin returned no buffer".into(),
        })
    }
}

/// The addressable devices of a client.
fn raw_devices(client: &ClientInner) -> Result<Vec<NonNull<PJRT_Device>>> {
    let plugin = client.plugin;
    let mut args = PJRT_Client_AddressableDevices_Args::new();
    args.client = client.raw.as_ptr();
    // SAFETY: live client; the returned array is owned by the client.
    unsafe { plugin.call("PJRT_Client_AddressableDevices", plugin.api().PJRT_Client_AddressableDevices, &mut args)? };
    if args.addressable_devices.is_null() || args.num_addressable_devices == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the plugin returned an array of `num_addressable_devices`
    // device pointers that lives as long as the client.
    let devices = unsafe { std::slice::from_raw_parts(args.addressable_devices, args.num_addressable_devices) };
    Ok(devices.iter().filter_map(|&d| NonNull::new(d)).collect())
}

// -------------------------------- Executable ---------------------------------

/// A compiled program, loaded on its client's device.
pub struct Executable {
    client: Arc<ClientInner>,
    raw: NonNull<PJRT_LoadedExecutable>,
    num_outputs: usize,
    /// SPMD partitions: one argument list per partition.
    partitions: usize,
}

// SAFETY: `PjRtLoadedExecutable` is thread-safe (Execute may be called from
// several threads at once); the client it keeps alive is `Send + Sync`.
unsafe impl Send for Executable {}
// SAFETY: as for `Send`.
unsafe impl Sync for Executable {}

impl std::fmt::Debug for Executable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executable").field("num_outputs", &self.num_outputs).finish_non_exhaustive()
    }
}

impl Drop for Executable {
    fn drop(&mut self) {
        let plugin = self.client.plugin;
        let mut args = PJRT_LoadedExecutable_Destroy_Args::new();
        args.executable = self.raw.as_ptr();
        // SAFETY: the executable is live and destroyed once; its client is
        // kept alive by `self.client`. An error cannot be reported from drop.
        let _ = unsafe {
            plugin.call("PJRT_LoadedExecutable_Destroy", plugin.api().PJRT_LoadedExecutable_Destroy, &mut args)
        };
    }
}

impl Executable {
    /// The number of results one execution returns (the results of `main`,
    /// untupled).
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// The number of SPMD partitions (devices) one execution runs on.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    /// Runs `f` on the executable behind this loaded one
    /// (`PJRT_LoadedExecutable_GetExecutable`), destroyed afterwards whatever
    /// `f` returns.
    fn with_executable<R>(&self, f: impl FnOnce(*mut PJRT_Executable) -> Result<R>) -> Result<R> {
        let plugin = self.client.plugin;
        let api = plugin.api();
        let mut get = PJRT_LoadedExecutable_GetExecutable_Args::new();
        get.loaded_executable = self.raw.as_ptr();
        // SAFETY: live loaded executable; `executable` is an out field whose
        // result we own and destroy below.
        unsafe {
            plugin.call("PJRT_LoadedExecutable_GetExecutable", api.PJRT_LoadedExecutable_GetExecutable, &mut get)?
        };
        let r = f(get.executable);
        let mut destroy = PJRT_Executable_Destroy_Args::new();
        destroy.executable = get.executable;
        // SAFETY: destroys the executable returned by GetExecutable, once.
        unsafe { plugin.call("PJRT_Executable_Destroy", api.PJRT_Executable_Destroy, &mut destroy)? };
        r
    }

    fn query_num_outputs(&self) -> Result<usize> {
        let plugin = self.client.plugin;
        self.with_executable(|executable| {
            let mut num = PJRT_Executable_NumOutputs_Args::new();
            num.executable = executable;
            // SAFETY: `executable` is live for this closure.
            unsafe { plugin.call("PJRT_Executable_NumOutputs", plugin.api().PJRT_Executable_NumOutputs, &mut num)? };
            Ok(num.num_outputs)
        })
    }

    /// The executable serialised by the plugin (`PJRT_Executable_Serialize`),
    /// for [`Client::deserialize`] in a later process with the same plugin.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let plugin = self.client.plugin;
        let bytes = self.with_executable(|executable| {
            let mut ser = PJRT_Executable_Serialize_Args::new();
            ser.executable = executable;
            // SAFETY: `executable` is live for this closure; the out fields
            // are filled by the plugin.
            let status =
                unsafe { plugin.call("PJRT_Executable_Serialize", plugin.api().PJRT_Executable_Serialize, &mut ser) };
            let bytes = status.map(|()| {
                if ser.serialized_bytes.is_null() {
                    Vec::new()
                } else {
                    // SAFETY: the plugin returned `serialized_bytes_size` bytes
                    // backed by `serialized_executable`, freed only below.
                    unsafe { std::slice::from_raw_parts(ser.serialized_bytes.cast::<u8>(), ser.serialized_bytes_size) }
                        .to_vec()
                }
            });
            if let (Some(del), false) = (ser.serialized_executable_deleter, ser.serialized_executable.is_null()) {
                // SAFETY: the backing object is freed once, with the plugin's
                // deleter, after its bytes were copied.
                unsafe { del(ser.serialized_executable) };
            }
            bytes
        });
        let bytes = bytes?;
        if bytes.is_empty() {
            return Err(XlaError::Pjrt {
                op: "PJRT_Executable_Serialize",
                code: ErrorCode::Internal,
                message: "the plugin returned no bytes".into(),
            });
        }
        Ok(bytes)
    }

    /// Runs the program on the client's device with `args` (which must be
    /// buffers of the same client, in the order of `main`'s parameters), waits
    /// for it to finish and returns its results. The arguments are never
    /// donated: they stay valid and unchanged.
    pub fn execute(&self, args: &[&Buffer]) -> Result<Vec<Buffer>> {
        self.execute_in(args, ptr::null_mut())
    }

    /// [`Executable::execute`] with a `PJRT_ExecuteContext` (null: none),
    /// whose user data FFI handlers read.
    pub(crate) fn execute_in(&self, args: &[&Buffer], context: *mut PJRT_ExecuteContext) -> Result<Vec<Buffer>> {
        let mut outs = self.execute_partitioned_in(&[args.to_vec()], context)?;
        Ok(outs.pop().unwrap_or_default())
    }

    /// Runs a partitioned executable: `args[p]` are partition `p`'s
    /// arguments (buffers on the `p`-th addressable device), one list per
    /// partition; returns each partition's results, in the same order.
    pub fn execute_partitioned(&self, args: &[Vec<&Buffer>]) -> Result<Vec<Vec<Buffer>>> {
        self.execute_partitioned_in(args, ptr::null_mut())
    }

    fn execute_partitioned_in(
        &self,
        args: &[Vec<&Buffer>],
        context: *mut PJRT_ExecuteContext,
    ) -> Result<Vec<Vec<Buffer>>> {
        if args.len() != self.partitions {
            return Err(XlaError::InvalidArgument(format!(
                "{} argument lists for an executable of {} partition(s)",
                args.len(),
                self.partitions
            )));
        }
        let num_args = args.first().map_or(0, Vec::len);
        for (p, list) in args.iter().enumerate() {
            if list.len() != num_args {
                return Err(XlaError::InvalidArgument(format!(
                    "partition {p} has {} arguments, partition 0 has {num_args}",
                    list.len()
                )));
            }
            if let Some(i) = list.iter().position(|b| !Arc::ptr_eq(&b.client, &self.client)) {
                return Err(XlaError::InvalidArgument(format!("argument {i} is a buffer of another PJRT client")));
            }
        }
        let plugin = self.client.plugin;
        let arg_ptrs: Vec<Vec<*mut PJRT_Buffer>> =
            args.iter().map(|l| l.iter().map(|b| b.raw.as_ptr()).collect()).collect();
        let arg_lists: Vec<*const *mut PJRT_Buffer> = arg_ptrs.iter().map(|l| l.as_ptr()).collect();
        let mut outputs: Vec<Vec<*mut PJRT_Buffer>> = vec![vec![ptr::null_mut(); self.num_outputs]; self.partitions];
        let output_lists: Vec<*mut *mut PJRT_Buffer> = outputs.iter_mut().map(|l| l.as_mut_ptr()).collect();
        let mut events: Vec<*mut PJRT_Event> = vec![ptr::null_mut(); self.partitions];
        let non_donatable: Vec<i64> = (0..num_args as i64).collect();
        let mut options = PJRT_ExecuteOptions::new();
        options.non_donatable_input_indices = non_donatable.as_ptr();
        options.num_non_donatable_input_indices = non_donatable.len();
        options.context = context;

        let mut exec = PJRT_LoadedExecutable_Execute_Args::new();
        exec.executable = self.raw.as_ptr();
        exec.options = &mut options;
        exec.argument_lists = arg_lists.as_ptr();
        exec.num_devices = self.partitions;
        exec.num_args = num_args;
        exec.output_lists = output_lists.as_ptr();
        exec.device_complete_events = events.as_mut_ptr();
        // SAFETY: live executable; `options`, the per-partition argument
        // lists (each of `num_args` live buffers of this client) and the
        // caller-allocated output lists of `num_outputs` slots and event
        // slots, one per partition, all outlive the call; null
        // `execute_device` runs on the compile-time devices.
        unsafe { plugin.call("PJRT_LoadedExecutable_Execute", plugin.api().PJRT_LoadedExecutable_Execute, &mut exec)? };
        // Own the results at once, so they are destroyed on any error below.
        let results: Vec<Vec<Buffer>> = outputs
            .iter()
            .map(|l| {
                l.iter()
                    .filter_map(|&p| NonNull::new(p))
                    .map(|raw| Buffer { client: self.client.clone(), raw })
                    .collect()
            })
            .collect();
        let mut waited = Ok(());
        for e in events {
            let r = plugin.await_and_destroy("PJRT_LoadedExecutable_Execute", e);
            if waited.is_ok() {
                waited = r;
            }
        }
        waited?;
        if let Some(l) = results.iter().find(|l| l.len() != self.num_outputs) {
            return Err(XlaError::Pjrt {
                op: "PJRT_LoadedExecutable_Execute",
                code: ErrorCode::Internal,
                message: format!("the plugin returned {} of {} results", l.len(), self.num_outputs),
            });
        }
        Ok(results)
    }
}

// ---------------------------------- Buffer -----------------------------------

/// An array on a device.
pub struct Buffer {
    client: Arc<ClientInner>,
    raw: NonNull<PJRT_Buffer>,
}

// SAFETY: `PjRtBuffer` is thread-safe (its methods may be called
// concurrently); the client it keeps alive is `Send + Sync`.
unsafe impl Send for Buffer {}
// SAFETY: as for `Send`.
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        let plugin = self.client.plugin;
        let mut args = PJRT_Buffer_Destroy_Args::new();
        args.buffer = self.raw.as_ptr();
        // SAFETY: the buffer is live and destroyed once; its client is kept
        // alive by `self.client`. An error cannot be reported from drop.
        let _ = unsafe { plugin.call("PJRT_Buffer_Destroy", plugin.api().PJRT_Buffer_Destroy, &mut args) };
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("element_type", &self.element_type().ok())
            .field("dims", &self.dims().ok())
            .finish()
    }
}

impl Buffer {
    /// The element type.
    pub fn element_type(&self) -> Result<ElementType> {
        let plugin = self.client.plugin;
        let mut args = PJRT_Buffer_ElementType_Args::new();
        args.buffer = self.raw.as_ptr();
        // SAFETY: live buffer; `type_` is an out field.
        unsafe { plugin.call("PJRT_Buffer_ElementType", plugin.api().PJRT_Buffer_ElementType, &mut args)? };
        ElementType::from_raw(args.type_).ok_or_else(|| XlaError::Pjrt {
            op: "PJRT_Buffer_ElementType",
            code: ErrorCode::Unimplemented,
            message: format!("element type {} is not supported by loopvm", args.type_),
        })
    }

    /// The dimensions (row-major, outermost first); empty for a scalar.
    pub fn dims(&self) -> Result<Vec<usize>> {
        let plugin = self.client.plugin;
        let mut args = PJRT_Buffer_Dimensions_Args::new();
        args.buffer = self.raw.as_ptr();
        // SAFETY: live buffer; the returned array lives as long as the buffer
        // and is copied out at once.
        unsafe { plugin.call("PJRT_Buffer_Dimensions", plugin.api().PJRT_Buffer_Dimensions, &mut args)? };
        if args.dims.is_null() || args.num_dims == 0 {
            return Ok(Vec::new());
        }
        // SAFETY: `dims` points to `num_dims` integers owned by the buffer.
        let dims = unsafe { std::slice::from_raw_parts(args.dims, args.num_dims) };
        Ok(dims.iter().map(|&d| d.max(0) as usize).collect())
    }

    /// Bytes the buffer occupies on the device.
    pub fn on_device_size_in_bytes(&self) -> Result<usize> {
        let plugin = self.client.plugin;
        let mut args = PJRT_Buffer_OnDeviceSizeInBytes_Args::new();
        args.buffer = self.raw.as_ptr();
        // SAFETY: live buffer; the size is an out field.
        unsafe {
            plugin.call("PJRT_Buffer_OnDeviceSizeInBytes", plugin.api().PJRT_Buffer_OnDeviceSizeInBytes, &mut args)?
        };
        Ok(args.on_device_size_in_bytes)
    }

    /// Copies the buffer to the host: dense, row-major, native byte order, in
    /// the layout [`Client::buffer_from_host`] takes.
    pub fn to_host(&self) -> Result<Vec<u8>> {
        let plugin = self.client.plugin;
        let api = plugin.api();
        let mut query = PJRT_Buffer_ToHostBuffer_Args::new();
        query.src = self.raw.as_ptr();
        // SAFETY: live buffer; a null `dst` asks only for the size needed.
        unsafe { plugin.call("PJRT_Buffer_ToHostBuffer", api.PJRT_Buffer_ToHostBuffer, &mut query)? };
        plugin.await_and_destroy("PJRT_Buffer_ToHostBuffer", query.event)?;
        let mut host = vec![0u8; query.dst_size];
        self.copy_to(&mut host)?;
        Ok(host)
    }

    /// Copies the buffer into `dst`, which must be at least as large as the
    /// buffer's host size (see [`Buffer::to_host`]).
    ///
    /// A buffer in host memory (`PJRT_Buffer_IsOnCpu`: the CPU plugin) whose
    /// on-device size is its dense size is copied with one `memcpy` from its
    /// memory, pinned meanwhile with an external reference (the way JAX gives
    /// NumPy a view of a CPU array), after waiting until it is ready: the same
    /// bytes `PJRT_Buffer_ToHostBuffer` writes (it, too, keeps the buffer's
    /// layout when given none), without the literal, the future and the
    /// thread hop that cost about 30 µs per call on the CPU plugin. Other
    /// buffers go through `PJRT_Buffer_ToHostBuffer`.
    pub fn copy_to(&self, dst: &mut [u8]) -> Result<()> {
        if self.copy_from_host_memory(dst)? {
            return Ok(());
        }
        self.copy_to_through_pjrt(dst)
    }

    /// The CPU fast path of [`Buffer::copy_to`]: `Ok(false)` when it does not
    /// apply (the plugin lacks the entries, the buffer is not in host memory,
    /// is not dense, or `dst` is too small: the slow path reports that).
    fn copy_from_host_memory(&self, dst: &mut [u8]) -> Result<bool> {
        let plugin = self.client.plugin;
        let Some(tail) = plugin.api_tail() else { return Ok(false) };
        let raw = self.raw.as_ptr();
        let mut on_cpu = PJRT_Buffer_IsOnCpu_Args::new();
        on_cpu.buffer = raw;
        // SAFETY: live buffer; `is_on_cpu` is an out field.
        unsafe { plugin.call("PJRT_Buffer_IsOnCpu", tail.PJRT_Buffer_IsOnCpu, &mut on_cpu)? };
        if !on_cpu.is_on_cpu {
            return Ok(false);
        }
        let elements = self.dims()?.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let len = elements.and_then(|n| n.checked_mul(self.element_type().ok()?.byte_size()));
        let Some(len) = len else { return Ok(false) };
        if len > dst.len() || self.on_device_size_in_bytes()? != len {
            return Ok(false);
        }
        // Wait until the buffer is defined (an execution or transfer may still
        // be writing it); its error, if it has one, is returned here.
        let mut ready = PJRT_Buffer_ReadyEvent_Args::new();
        ready.buffer = raw;
        // SAFETY: live buffer; the returned event is ours, awaited and
        // destroyed by `await_and_destroy`.
        unsafe { plugin.call("PJRT_Buffer_ReadyEvent", tail.PJRT_Buffer_ReadyEvent, &mut ready)? };
        plugin.await_and_destroy("PJRT_Buffer_ReadyEvent", ready.event)?;
        if len == 0 {
            return Ok(true);
        }
        let mut pin = PJRT_Buffer_IncreaseExternalReferenceCount_Args::new();
        pin.buffer = raw;
        // SAFETY: live buffer; balanced by the decrease below.
        unsafe {
            plugin.call(
                "PJRT_Buffer_IncreaseExternalReferenceCount",
                tail.PJRT_Buffer_IncreaseExternalReferenceCount,
                &mut pin,
            )?
        };
        let mut data = PJRT_Buffer_OpaqueDeviceMemoryDataPointer_Args::new();
        data.buffer = raw;
        // SAFETY: live buffer with an external reference, so the pointer it
        // returns stays valid until the reference is dropped.
        let copied = unsafe {
            plugin.call(
                "PJRT_Buffer_OpaqueDeviceMemoryDataPointer",
                tail.PJRT_Buffer_OpaqueDeviceMemoryDataPointer,
                &mut data,
            )
        }
        .map(|()| {
            let src = data.device_memory_ptr.cast::<u8>().cast_const();
            if src.is_null() {
                return false;
            }
            // SAFETY: the buffer is in host memory (`is_on_cpu`), ready, and
            // pinned by the external reference; its memory holds `len` bytes
            // (its on-device size), which nothing writes (buffers are never
            // donated), and `dst` has room for `len` bytes and is exclusively
            // borrowed, so the ranges do not overlap.
            unsafe { ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), len) };
            true
        });
        let mut unpin = PJRT_Buffer_DecreaseExternalReferenceCount_Args::new();
        unpin.buffer = raw;
        // SAFETY: drops the external reference taken above, once.
        let unpinned = unsafe {
            plugin.call(
                "PJRT_Buffer_DecreaseExternalReferenceCount",
                tail.PJRT_Buffer_DecreaseExternalReferenceCount,
                &mut unpin,
            )
        };
        let copied = copied?;
        unpinned?;
        Ok(copied)
    }

    /// [`Buffer::copy_to`] always through `PJRT_Buffer_ToHostBuffer` and its
    /// event, never the CPU fast path (for comparison and tests).
    pub fn copy_to_through_pjrt(&self, dst: &mut [u8]) -> Result<()> {
        let plugin = self.client.plugin;
        let mut args = PJRT_Buffer_ToHostBuffer_Args::new();
        args.src = self.raw.as_ptr();
        args.dst = dst.as_mut_ptr().cast();
        args.dst_size = dst.len();
        // SAFETY: live buffer; `dst` is writable for `dst_size` bytes and
        // stays borrowed until the copy's event has completed below (the
        // plugin rejects a `dst_size` smaller than it needs).
        unsafe { plugin.call("PJRT_Buffer_ToHostBuffer", plugin.api().PJRT_Buffer_ToHostBuffer, &mut args)? };
        plugin.await_and_destroy("PJRT_Buffer_ToHostBuffer", args.event)
    }
}

/// Compile-time check that the wrappers are `Send + Sync`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Plugin>();
    send_sync::<Client>();
    send_sync::<Executable>();
    send_sync::<Buffer>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_type_raw_values_follow_the_header() {
        assert_eq!(ElementType::Pred.to_raw(), 1);
        assert_eq!(ElementType::S32.to_raw(), 4);
        assert_eq!(ElementType::S64.to_raw(), 5);
        assert_eq!(ElementType::F32.to_raw(), 11);
        assert_eq!(ElementType::F64.to_raw(), 12);
        assert_eq!(ElementType::BF16.to_raw(), 13);
        assert_eq!(ElementType::C128.to_raw(), 15);
        for t in ElementType::ALL {
            assert_eq!(ElementType::from_raw(t.to_raw()), Some(t));
        }
        assert_eq!(ElementType::from_raw(0), None);
        assert_eq!(ElementType::from_raw(16), None);
    }

    #[test]
    fn compile_options_proto_is_well_formed() {
        // Outer: one length-delimited field 3 whose length covers the rest.
        assert_eq!(COMPILE_OPTIONS_PROTO[0], 3 << 3 | 2);
        assert_eq!(COMPILE_OPTIONS_PROTO[1] as usize, COMPILE_OPTIONS_PROTO.len() - 2);
        let inner = &COMPILE_OPTIONS_PROTO[2..];
        assert_eq!(inner[0], 1 << 3); // device_ordinal, varint
        assert_eq!(&inner[11..], &[4 << 3, 1, 5 << 3, 1]);
    }

    #[test]
    fn loading_a_missing_plugin_is_an_error() {
        let err = Plugin::load("/nonexistent/pjrt_plugin.so").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("loopvm plugin install cpu"), "{text}");
        assert!(text.contains("LOOPVM_PJRT_PLUGIN"), "{text}");
    }

    /// The CPU fast path of `copy_to` gives the bytes `PJRT_Buffer_ToHostBuffer`
    /// gives, for uploaded buffers and execution results of every loopvm
    /// dtype, scalars and empty arrays included.
    #[test]
    fn fast_and_pjrt_reads_agree() {
        let path = crate::xla::plugin::find_or_install_cpu().unwrap();
        let client = Client::new(Plugin::load(path).unwrap()).unwrap();
        assert!(client.plugin().api_tail().is_some(), "the CPU plugin's table has the fast path's entries");
        let cases: Vec<(ElementType, Vec<usize>)> = vec![
            (ElementType::F32, vec![]),
            (ElementType::F32, vec![3, 5]),
            (ElementType::F64, vec![2, 0, 4]),
            (ElementType::S32, vec![7]),
            (ElementType::S64, vec![2, 3]),
            (ElementType::Pred, vec![9]),
        ];
        for (ty, dims) in cases {
            let n: usize = dims.iter().product();
            let data: Vec<u8> = (0..n * ty.byte_size())
                .map(|i| if ty == ElementType::Pred { (i % 3 == 0) as u8 } else { (i * 37 % 251) as u8 })
                .collect();
            let buf = client.buffer_from_host(&data, &dims, ty).unwrap();
            let (mut fast, mut slow) = (vec![0xAAu8; data.len()], vec![0x55u8; data.len()]);
            assert!(buf.copy_from_host_memory(&mut fast).unwrap(), "{ty:?} {dims:?} takes the fast path");
            buf.copy_to_through_pjrt(&mut slow).unwrap();
            assert_eq!(fast, data, "{ty:?} {dims:?}");
            assert_eq!(slow, data, "{ty:?} {dims:?}");
            // A result of an execution (negation: a fresh buffer).
            if ty == ElementType::F32 && n > 0 {
                let t = format!("tensor<{}f32>", dims.iter().map(|d| format!("{d}x")).collect::<String>());
                let exe = client
                    .compile(&format!(
                        "module @m {{ func.func public @main(%x: {t}) -> {t} {{ %0 = stablehlo.negate %x : {t}\n return %0 : {t} }} }}"
                    ))
                    .unwrap();
                let out = exe.execute(&[&buf]).unwrap();
                let (mut fast, mut slow) = (vec![0u8; data.len()], vec![1u8; data.len()]);
                out[0].copy_to(&mut fast).unwrap();
                out[0].copy_to_through_pjrt(&mut slow).unwrap();
                assert_eq!(fast, slow);
                assert_ne!(fast, data);
            }
        }
        // Too small a destination is an error, not a short copy.
        let buf = client.buffer_from_host(&[0u8; 16], &[4], ElementType::F32).unwrap();
        assert!(buf.copy_to(&mut [0u8; 15]).is_err());
    }

    #[test]
    fn loading_a_file_that_is_no_library_is_an_error() {
        let path = std::env::temp_dir().join(format!("loopvm-not-a-plugin-{}.so", std::process::id()));
        std::fs::write(&path, b"not an ELF file").unwrap();
        let err = Plugin::load(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(matches!(err, XlaError::PluginLoad { .. }), "{err}");
    }
}
