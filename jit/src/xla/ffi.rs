//! Raw declarations for the subset of the PJRT C API that loopvm uses.
//!
//! Everything here follows `pjrt_c_api.h` at **API version 0.81**
//! (`PJRT_API_MAJOR 0`, `PJRT_API_MINOR 81`), the header shipped inside the
//! `xla-cpu-pjrt` wheel as `xla_plugins/xla_cpu_pjrt/include/pjrt_c_api.h`.
//!
//! Every PJRT entry point has the shape `PJRT_Error* f(Args*)` (two of them,
//! `PJRT_Error_Destroy` and `PJRT_Error_Message`, return `void`). The argument
//! structs start with `struct_size` and `extension_start`; `struct_size` tells
//! the plugin how many fields the caller knows about, and must be the header's
//! `<name>_STRUCT_SIZE`, which is `offsetof(last field) + sizeof(last field)`
//! (not `sizeof`, which may include tail padding). [`STRUCT_SIZES`] lists the
//! value computed here for every struct, and the tests compare them with what
//! the header's macros give (recorded from a C compiler, and recomputed from
//! the installed plugin's header when a C compiler is available).
//!
//! A plugin built against a newer header accepts these structs (it reads only
//! the fields covered by `struct_size`). The function table [`PJRT_Api`] is
//! declared up to `PJRT_Buffer_ToHostBuffer`, the last entry loopvm needs; a
//! plugin whose table is shorter is rejected when it is loaded. The next six
//! entries ([`PJRT_Api_BufferTail`]) are optional: they serve a fast path for
//! reading buffers on the CPU, used when the table reaches them.
//!
//! Names follow the header exactly so that a reader can check them against it.

#![allow(non_camel_case_types, non_snake_case, dead_code)]

use std::ffi::{c_char, c_int, c_void};

/// The header's `PJRT_API_MAJOR`.
pub const HEADER_API_MAJOR: i32 = 0;
/// The header's `PJRT_API_MINOR`.
pub const HEADER_API_MINOR: i32 = 81;

/// `size_of` the field a projection closure points at; used to compute the
/// header's `PJRT_STRUCT_SIZE(struct, last_field)` in a `const`.
const fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    std::mem::size_of::<F>()
}

/// Implements `STRUCT_SIZE` (the header's `PJRT_STRUCT_SIZE`) for a struct,
/// given its last field, and lists the struct in [`STRUCT_SIZES`].
macro_rules! pjrt_structs {
    ($($name:ident => $last:ident),* $(,)?) => {
        $(
            impl $name {
                /// `offsetof(last field) + sizeof(last field)`, as the
                /// header's `PJRT_STRUCT_SIZE` computes it.
                pub(crate) const STRUCT_SIZE: usize =
                    std::mem::offset_of!($name, $last) + field_size(|s: &$name| &s.$last);

                /// All fields zero (null pointers, `None` function pointers,
                /// zero sizes), `struct_size` set to [`Self::STRUCT_SIZE`].
                pub(crate) fn new() -> Self {
                    // SAFETY: the struct is `repr(C)` and made only of raw
                    // pointers, integers, `bool`s, nullable function pointers
                    // and unions of those, for all of which all-zero bytes
                    // are a valid value (null / 0 / false / None).
                    let mut s: Self = unsafe { std::mem::zeroed() };
                    s.struct_size = Self::STRUCT_SIZE;
                    s
                }
            }
        )*
        /// `(header struct name, its last field here, STRUCT_SIZE as
        /// declared here)` for every argument struct this binding declares:
        /// any header at least as new as the binding's gives the same size
        /// for `PJRT_STRUCT_SIZE(name, last field)` (structs only grow).
        pub const STRUCT_SIZES: &[(&str, &str, usize)] = &[
            $((stringify!($name), stringify!($last), $name::STRUCT_SIZE),)*
        ];
    };
}

// ------------------------------- Opaque types -------------------------------

/// Declares opaque, plugin-owned C types (only ever used behind pointers).
macro_rules! opaque {
    ($($name:ident),* $(,)?) => {
        $(
            #[repr(C)]
            pub(crate) struct $name {
                _private: [u8; 0],
            }
        )*
    };
}

opaque!(
    PJRT_Error,
    PJRT_Event,
    PJRT_Client,
    PJRT_Device,
    PJRT_DeviceDescription,
    PJRT_Memory,
    PJRT_Executable,
    PJRT_LoadedExecutable,
    PJRT_Buffer,
    PJRT_Buffer_MemoryLayout,
    PJRT_ExecuteContext,
    PJRT_SendCallbackInfo,
    PJRT_RecvCallbackInfo,
    PJRT_Extension_Base,
    PJRT_SerializedExecutable,
);

/// `PJRT_Error_Code` (absl status codes).
pub(crate) type PJRT_Error_Code = c_int;
/// `PJRT_Buffer_Type`.
pub(crate) type PJRT_Buffer_Type = c_int;
/// `PJRT_NamedValue_Type`.
pub(crate) type PJRT_NamedValue_Type = c_int;
/// `PJRT_HostBufferSemantics`.
pub(crate) type PJRT_HostBufferSemantics = c_int;

/// `PJRT_HostBufferSemantics_kImmutableOnlyDuringCall`: the plugin copies the
/// host data before `PJRT_Client_BufferFromHostBuffer` returns.
pub(crate) const HOST_BUFFER_IMMUTABLE_ONLY_DURING_CALL: PJRT_HostBufferSemantics = 0;

pub(crate) const NAMED_VALUE_STRING: PJRT_NamedValue_Type = 0;
pub(crate) const NAMED_VALUE_INT64: PJRT_NamedValue_Type = 1;
pub(crate) const NAMED_VALUE_INT64_LIST: PJRT_NamedValue_Type = 2;
pub(crate) const NAMED_VALUE_FLOAT: PJRT_NamedValue_Type = 3;
pub(crate) const NAMED_VALUE_BOOL: PJRT_NamedValue_Type = 4;

// --------------------------------- Version ----------------------------------

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct PJRT_Api_Version {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub major_version: c_int,
    pub minor_version: c_int,
}

// ---------------------------------- Errors ----------------------------------

#[repr(C)]
pub(crate) struct PJRT_Error_Destroy_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub error: *mut PJRT_Error,
}

#[repr(C)]
pub(crate) struct PJRT_Error_Message_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub error: *const PJRT_Error,
    pub message: *const c_char,
    pub message_size: usize,
}

#[repr(C)]
pub(crate) struct PJRT_Error_GetCode_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub error: *const PJRT_Error,
    pub code: PJRT_Error_Code,
}

// ------------------------------ Named values --------------------------------

/// The anonymous union inside `PJRT_NamedValue`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union PJRT_NamedValue_Value {
    pub string_value: *const c_char,
    pub int64_value: i64,
    pub int64_array_value: *const i64,
    pub float_value: f32,
    pub bool_value: bool,
}

#[repr(C)]
pub(crate) struct PJRT_NamedValue {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub name: *const c_char,
    pub name_size: usize,
    pub type_: PJRT_NamedValue_Type,
    pub value: PJRT_NamedValue_Value,
    pub value_size: usize,
}

// --------------------------------- Plugin -----------------------------------

#[repr(C)]
pub(crate) struct PJRT_Plugin_Initialize_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
}

#[repr(C)]
pub(crate) struct PJRT_Plugin_Attributes_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub attributes: *const PJRT_NamedValue,
    pub num_attributes: usize,
}

// --------------------------------- Events -----------------------------------

#[repr(C)]
pub(crate) struct PJRT_Event_Destroy_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub event: *mut PJRT_Event,
}

#[repr(C)]
pub(crate) struct PJRT_Event_Await_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub event: *mut PJRT_Event,
}

// --------------------------------- Client -----------------------------------

/// Key-value store callbacks are never provided (single process), so their
/// function pointer types are declared only as nullable opaque pointers.
pub(crate) type OpaqueCallback = Option<unsafe extern "C" fn()>;

#[repr(C)]
pub(crate) struct PJRT_Client_Create_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub create_options: *const PJRT_NamedValue,
    pub num_options: usize,
    pub kv_get_callback: OpaqueCallback,
    pub kv_get_user_arg: *mut c_void,
    pub kv_put_callback: OpaqueCallback,
    pub kv_put_user_arg: *mut c_void,
    pub client: *mut PJRT_Client,
    pub kv_try_get_callback: OpaqueCallback,
    pub kv_try_get_user_arg: *mut c_void,
}

#[repr(C)]
pub(crate) struct PJRT_Client_Destroy_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub client: *mut PJRT_Client,
}

#[repr(C)]
pub(crate) struct PJRT_Client_PlatformName_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub client: *mut PJRT_Client,
    pub platform_name: *const c_char,
    pub platform_name_size: usize,
}

#[repr(C)]
pub(crate) struct PJRT_Client_PlatformVersion_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub client: *mut PJRT_Client,
    pub platform_version: *const c_char,
    pub platform_version_size: usize,
}

#[repr(C)]
pub(crate) struct PJRT_Client_AddressableDevices_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub client: *mut PJRT_Client,
    pub addressable_devices: *const *mut PJRT_Device,
    pub num_addressable_devices: usize,
}

#[repr(C)]
pub(crate) struct PJRT_Program {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    /// Owned by the caller; the header declares it `char*` (in/out for other
    /// entry points), `PJRT_Client_Compile` only reads it.
    pub code: *mut c_char,
    pub code_size: usize,
    pub format: *const c_char,
    pub format_size: usize,
}

#[repr(C)]
pub(crate) struct PJRT_Client_Compile_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub client: *mut PJRT_Client,
    pub program: *const PJRT_Program,
    pub compile_options: *const c_char,
    pub compile_options_size: usize,
    pub executable: *mut PJRT_LoadedExecutable,
}

#[repr(C)]
pub(crate) struct PJRT_Client_BufferFromHostBuffer_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub client: *mut PJRT_Client,
    pub data: *const c_void,
    pub type_: PJRT_Buffer_Type,
    pub dims: *const i64,
    pub num_dims: usize,
    pub byte_strides: *const i64,
    pub num_byte_strides: usize,
    pub host_buffer_semantics: PJRT_HostBufferSemantics,
    pub device: *mut PJRT_Device,
    pub memory: *mut PJRT_Memory,
    pub device_layout: *mut PJRT_Buffer_MemoryLayout,
    pub done_with_host_buffer: *mut PJRT_Event,
    pub buffer: *mut PJRT_Buffer,
}

// --------------------------- Device descriptions ----------------------------

#[repr(C)]
pub(crate) struct PJRT_DeviceDescription_Id_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub device_description: *mut PJRT_DeviceDescription,
    pub id: c_int,
}

#[repr(C)]
pub(crate) struct PJRT_DeviceDescription_Kind_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub device_description: *mut PJRT_DeviceDescription,
    pub device_kind: *const c_char,
    pub device_kind_size: usize,
}

#[repr(C)]
pub(crate) struct PJRT_DeviceDescription_ToString_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub device_description: *mut PJRT_DeviceDescription,
    pub to_string: *const c_char,
    pub to_string_size: usize,
}

#[repr(C)]
pub(crate) struct PJRT_Device_GetDescription_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub device: *mut PJRT_Device,
    pub device_description: *mut PJRT_DeviceDescription,
}

// ------------------------------- Executables --------------------------------

#[repr(C)]
pub(crate) struct PJRT_Executable_Destroy_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub executable: *mut PJRT_Executable,
}

#[repr(C)]
pub(crate) struct PJRT_Executable_NumOutputs_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub executable: *mut PJRT_Executable,
    pub num_outputs: usize,
}

#[repr(C)]
pub(crate) struct PJRT_LoadedExecutable_Destroy_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub executable: *mut PJRT_LoadedExecutable,
}

#[repr(C)]
pub(crate) struct PJRT_LoadedExecutable_GetExecutable_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub loaded_executable: *mut PJRT_LoadedExecutable,
    pub executable: *mut PJRT_Executable,
}

#[repr(C)]
pub(crate) struct PJRT_Executable_Serialize_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub executable: *const PJRT_Executable,
    /// Out: lives only as long as `serialized_executable`.
    pub serialized_bytes: *const c_char,
    pub serialized_bytes_size: usize,
    /// Out: backs `serialized_bytes`; freed once with the deleter.
    pub serialized_executable: *mut PJRT_SerializedExecutable,
    pub serialized_executable_deleter: Option<unsafe extern "C" fn(exec: *mut PJRT_SerializedExecutable)>,
}

#[repr(C)]
pub(crate) struct PJRT_Executable_DeserializeAndLoad_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub client: *mut PJRT_Client,
    pub serialized_executable: *const c_char,
    pub serialized_executable_size: usize,
    /// Out.
    pub loaded_executable: *mut PJRT_LoadedExecutable,
    /// A serialised `CompileOptionsProto`, or null (the executable's own).
    pub overridden_serialized_compile_options: *const c_char,
    pub overridden_serialized_compile_options_size: usize,
}

#[repr(C)]
pub(crate) struct PJRT_ExecuteOptions {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub send_callbacks: *mut *mut PJRT_SendCallbackInfo,
    pub recv_callbacks: *mut *mut PJRT_RecvCallbackInfo,
    pub num_send_ops: usize,
    pub num_recv_ops: usize,
    pub launch_id: c_int,
    pub non_donatable_input_indices: *const i64,
    pub num_non_donatable_input_indices: usize,
    pub context: *mut PJRT_ExecuteContext,
    pub call_location: *const c_char,
    pub num_tasks: usize,
    pub task_ids: *mut c_int,
    pub incarnation_ids: *mut i64,
}

#[repr(C)]
pub(crate) struct PJRT_LoadedExecutable_Execute_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub executable: *mut PJRT_LoadedExecutable,
    pub options: *mut PJRT_ExecuteOptions,
    /// `[num_devices][num_args]`.
    pub argument_lists: *const *const *mut PJRT_Buffer,
    pub num_devices: usize,
    pub num_args: usize,
    /// `[num_devices][num_outputs]`, allocated by the caller.
    pub output_lists: *const *mut *mut PJRT_Buffer,
    /// `[num_devices]`, allocated by the caller, or null.
    pub device_complete_events: *mut *mut PJRT_Event,
    pub execute_device: *mut PJRT_Device,
}

// --------------------------------- Buffers ----------------------------------

#[repr(C)]
pub(crate) struct PJRT_Buffer_Destroy_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_ElementType_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
    pub type_: PJRT_Buffer_Type,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_Dimensions_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
    pub dims: *const i64,
    pub num_dims: usize,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_OnDeviceSizeInBytes_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
    pub on_device_size_in_bytes: usize,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_ToHostBuffer_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub src: *mut PJRT_Buffer,
    pub host_layout: *mut PJRT_Buffer_MemoryLayout,
    pub dst: *mut c_void,
    pub dst_size: usize,
    pub event: *mut PJRT_Event,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_IsOnCpu_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
    pub is_on_cpu: bool,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_ReadyEvent_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
    /// Owned by the caller, who destroys it.
    pub event: *mut PJRT_Event,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_IncreaseExternalReferenceCount_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_DecreaseExternalReferenceCount_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
}

#[repr(C)]
pub(crate) struct PJRT_Buffer_OpaqueDeviceMemoryDataPointer_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub buffer: *mut PJRT_Buffer,
    /// Valid while the buffer's external reference count is above zero.
    pub device_memory_ptr: *mut c_void,
}

pjrt_structs! {
    PJRT_Api_Version => minor_version,
    PJRT_Error_Destroy_Args => error,
    PJRT_Error_Message_Args => message_size,
    PJRT_Error_GetCode_Args => code,
    PJRT_NamedValue => value_size,
    PJRT_Plugin_Initialize_Args => extension_start,
    PJRT_Plugin_Attributes_Args => num_attributes,
    PJRT_Event_Destroy_Args => event,
    PJRT_Event_Await_Args => event,
    PJRT_Client_Create_Args => kv_try_get_user_arg,
    PJRT_Client_Destroy_Args => client,
    PJRT_Client_PlatformName_Args => platform_name_size,
    PJRT_Client_PlatformVersion_Args => platform_version_size,
    PJRT_Client_AddressableDevices_Args => num_addressable_devices,
    PJRT_Program => format_size,
    PJRT_Client_Compile_Args => executable,
    PJRT_Client_BufferFromHostBuffer_Args => buffer,
    PJRT_DeviceDescription_Id_Args => id,
    PJRT_DeviceDescription_Kind_Args => device_kind_size,
    PJRT_DeviceDescription_ToString_Args => to_string_size,
    PJRT_Device_GetDescription_Args => device_description,
    PJRT_Executable_Destroy_Args => executable,
    PJRT_Executable_NumOutputs_Args => num_outputs,
    PJRT_LoadedExecutable_Destroy_Args => executable,
    PJRT_LoadedExecutable_GetExecutable_Args => executable,
    PJRT_Executable_Serialize_Args => serialized_executable_deleter,
    PJRT_Executable_DeserializeAndLoad_Args => overridden_serialized_compile_options_size,
    PJRT_ExecuteOptions => incarnation_ids,
    PJRT_ExecuteContext_Create_Args => context,
    PJRT_ExecuteContext_Destroy_Args => context,
    PJRT_LoadedExecutable_Execute_Args => execute_device,
    PJRT_Buffer_Destroy_Args => buffer,
    PJRT_Buffer_ElementType_Args => type_,
    PJRT_Buffer_Dimensions_Args => num_dims,
    PJRT_Buffer_OnDeviceSizeInBytes_Args => on_device_size_in_bytes,
    PJRT_Buffer_ToHostBuffer_Args => event,
    PJRT_Buffer_IsOnCpu_Args => is_on_cpu,
    PJRT_Buffer_ReadyEvent_Args => event,
    PJRT_Buffer_IncreaseExternalReferenceCount_Args => buffer,
    PJRT_Buffer_DecreaseExternalReferenceCount_Args => buffer,
    PJRT_Buffer_OpaqueDeviceMemoryDataPointer_Args => device_memory_ptr,
    PJRT_Api => PJRT_Buffer_ToHostBuffer,
}

// -------------------------------- Extensions --------------------------------

/// The header's `PJRT_Extension_Base`, read to walk a plugin's extension
/// chain (`PJRT_Api::extension_start`, then `next`). Declared apart from the
/// opaque [`PJRT_Extension_Base`] that argument structs point to.
#[repr(C)]
pub(crate) struct PJRT_Extension_Base_Fields {
    pub struct_size: usize,
    /// `PJRT_Extension_Type`.
    pub type_: c_int,
    pub next: *mut PJRT_Extension_Base_Fields,
}

/// `PJRT_Extension_Type_FFI` (`pjrt_c_api.h` 0.81: the sixth enumerator).
pub(crate) const EXTENSION_TYPE_FFI: c_int = 5;

/// `PJRT_FFI_Extension` (`pjrt_c_api_ffi_extension.h`, the version with
/// `register_handler`): the base, then three entry points, none called yet
/// (issue 17: host callbacks for `print` on XLA are not built).
#[repr(C)]
pub(crate) struct PJRT_FFI_Extension {
    pub base: PJRT_Extension_Base_Fields,
    pub type_id_register: Unused,
    pub user_data_add: Unused,
    pub register_handler: Unused,
}

/// `PJRT_STRUCT_SIZE(PJRT_FFI_Extension, register_handler)`.
pub(crate) const FFI_EXTENSION_STRUCT_SIZE: usize =
    std::mem::offset_of!(PJRT_FFI_Extension, register_handler) + std::mem::size_of::<Unused>();

/// `PJRT_FFI_Type_Info`: optional callbacks for a registered type.
#[repr(C)]
pub(crate) struct PJRT_FFI_Type_Info {
    pub deleter: Option<unsafe extern "C" fn(*mut c_void)>,
    pub serialize: Option<unsafe extern "C" fn()>,
    pub deserialize: Option<unsafe extern "C" fn()>,
}

/// `PJRT_FFI_Type_Register_Args` (the plugin at 0.81 wants its 48 bytes:
/// the `type_info` pointer after `type_id`).
#[repr(C)]
pub(crate) struct PJRT_FFI_TypeID_Register_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub type_name: *const c_char,
    pub type_name_size: usize,
    /// In/out: 0 asks XLA to assign one.
    pub type_id: i64,
    pub type_info: *mut PJRT_FFI_Type_Info,
}

/// `PJRT_FFI_UserData`.
#[repr(C)]
pub(crate) struct PJRT_FFI_UserData {
    pub type_id: i64,
    pub data: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(data: *mut c_void)>,
}

/// `PJRT_FFI_UserData_Add_Args`.
#[repr(C)]
pub(crate) struct PJRT_FFI_UserData_Add_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub context: *mut PJRT_ExecuteContext,
    pub user_data: PJRT_FFI_UserData,
}

/// `PJRT_FFI_Register_Handler_Args` (the layout with `traits`, no
/// `extension_start`: the CPU plugin at 0.81 checks `struct_size >= 52`
/// and reads `target_name` at 8, `platform_name` at 32).
#[repr(C)]
pub(crate) struct PJRT_FFI_Register_Handler_Args {
    pub struct_size: usize,
    pub target_name: *const c_char,
    pub target_name_size: usize,
    /// An `XLA_FFI_Handler*`.
    pub handler: *mut c_void,
    pub platform_name: *const c_char,
    pub platform_name_size: usize,
    /// `PJRT_FFI_Handler_TraitsBits`.
    pub traits: u32,
}

/// `STRUCT_SIZE` and `new` for the FFI extension's argument structs (not
/// in [`STRUCT_SIZES`], which lists `pjrt_c_api.h`'s).
macro_rules! sized {
    ($($name:ident => $last:ident),* $(,)?) => {$(
        impl $name {
            pub(crate) const STRUCT_SIZE: usize =
                std::mem::offset_of!($name, $last) + field_size(|s: &$name| &s.$last);
            pub(crate) fn new() -> Self {
                // SAFETY: pointers, integers and nullable function pointers:
                // all-zero bytes are valid.
                let mut s: Self = unsafe { std::mem::zeroed() };
                s.struct_size = Self::STRUCT_SIZE;
                s
            }
        }
    )*};
}

sized!(
    PJRT_FFI_TypeID_Register_Args => type_info,
    PJRT_FFI_UserData_Add_Args => user_data,
    PJRT_FFI_Register_Handler_Args => traits,
);

/// The entry points of [`PJRT_FFI_Extension`], typed.
pub(crate) type FfiTypeIdRegister = unsafe extern "C" fn(*mut PJRT_FFI_TypeID_Register_Args) -> *mut PJRT_Error;
pub(crate) type FfiUserDataAdd = unsafe extern "C" fn(*mut PJRT_FFI_UserData_Add_Args) -> *mut PJRT_Error;
pub(crate) type FfiRegisterHandler = unsafe extern "C" fn(*mut PJRT_FFI_Register_Handler_Args) -> *mut PJRT_Error;

#[repr(C)]
pub(crate) struct PJRT_ExecuteContext_Create_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub context: *mut PJRT_ExecuteContext,
}

#[repr(C)]
pub(crate) struct PJRT_ExecuteContext_Destroy_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub context: *mut PJRT_ExecuteContext,
}

/// `offsetof(PJRT_Api, PJRT_ExecuteContext_Create)` at 0.81 (gcc); `_Destroy`
/// follows. Read only when the plugin's table reaches [`API_CONTEXT_END`].
pub(crate) const API_CONTEXT_CREATE_OFFSET: usize = 824;
/// The `struct_size` a table needs for both execute-context entries.
pub(crate) const API_CONTEXT_END: usize = API_CONTEXT_CREATE_OFFSET + 16;

// ------------------------- XLA FFI C ABI (c_api.h) --------------------------
//
// `xla/ffi/api/c_api.h` at XLA FFI API 0.1, the oldest version the CPU
// plugin accepts from a handler (it supports 0.1 to 0.2: its
// `kMinSupportedApiVersion` and `kMaxSupportedApiVersion`); only the prefix
// of each struct that loopvm's handler reads.

/// `XLA_FFI_API_MAJOR` / `XLA_FFI_API_MINOR` the handler implements.
pub(crate) const XLA_FFI_API_MAJOR: c_int = 0;
pub(crate) const XLA_FFI_API_MINOR: c_int = 1;
/// `XLA_FFI_Extension_Metadata`.
pub(crate) const XLA_FFI_EXTENSION_METADATA: c_int = 1;
/// `XLA_FFI_ExecutionStage_EXECUTE`.
pub(crate) const XLA_FFI_EXECUTION_STAGE_EXECUTE: c_int = 3;
/// `XLA_FFI_ArgType_BUFFER`.
pub(crate) const XLA_FFI_ARG_TYPE_BUFFER: c_int = 1;
/// `XLA_FFI_RetType_BUFFER`.
pub(crate) const XLA_FFI_RET_TYPE_BUFFER: c_int = 1;

#[repr(C)]
pub(crate) struct XLA_FFI_Extension_Base {
    pub struct_size: usize,
    /// `XLA_FFI_Extension_Type`.
    pub type_: c_int,
    pub next: *mut XLA_FFI_Extension_Base,
}

#[repr(C)]
pub(crate) struct XLA_FFI_Api_Version {
    pub struct_size: usize,
    pub extension_start: *mut XLA_FFI_Extension_Base,
    pub major_version: c_int,
    pub minor_version: c_int,
}

#[repr(C)]
pub(crate) struct XLA_FFI_Metadata {
    pub struct_size: usize,
    pub api_version: XLA_FFI_Api_Version,
    /// `XLA_FFI_Handler_Traits`.
    pub traits: u32,
}

#[repr(C)]
pub(crate) struct XLA_FFI_Metadata_Extension {
    pub extension_base: XLA_FFI_Extension_Base,
    pub metadata: *mut XLA_FFI_Metadata,
}

#[repr(C)]
pub(crate) struct XLA_FFI_Buffer {
    pub struct_size: usize,
    pub extension_start: *mut XLA_FFI_Extension_Base,
    /// `XLA_FFI_DataType` (= `PJRT_Buffer_Type` numbering: PRED 1, S32 4, S64 5, F32 11, F64 12).
    pub dtype: c_int,
    pub data: *mut c_void,
    pub rank: i64,
    pub dims: *mut i64,
}

#[repr(C)]
pub(crate) struct XLA_FFI_Args {
    pub struct_size: usize,
    pub extension_start: *mut XLA_FFI_Extension_Base,
    pub size: i64,
    /// `XLA_FFI_ArgType*`.
    pub types: *mut c_int,
    pub args: *mut *mut c_void,
}

#[repr(C)]
pub(crate) struct XLA_FFI_Rets {
    pub struct_size: usize,
    pub extension_start: *mut XLA_FFI_Extension_Base,
    pub size: i64,
    pub types: *mut c_int,
    pub rets: *mut *mut c_void,
}

#[repr(C)]
pub(crate) struct XLA_FFI_Attrs {
    pub struct_size: usize,
    pub extension_start: *mut XLA_FFI_Extension_Base,
    pub size: i64,
    pub types: *mut c_int,
    pub names: *mut *mut c_void,
    pub attrs: *mut *mut c_void,
}

opaque!(XLA_FFI_Api, XLA_FFI_ExecutionContext, XLA_FFI_Error);

#[repr(C)]
pub(crate) struct XLA_FFI_CallFrame {
    pub struct_size: usize,
    pub extension_start: *mut XLA_FFI_Extension_Base,
    pub api: *const XLA_FFI_Api,
    pub ctx: *mut XLA_FFI_ExecutionContext,
    /// `XLA_FFI_ExecutionStage`.
    pub stage: c_int,
    pub args: XLA_FFI_Args,
    pub rets: XLA_FFI_Rets,
    pub attrs: XLA_FFI_Attrs,
}

#[repr(C)]
pub(crate) struct XLA_FFI_TypeId {
    pub type_id: i64,
}

#[repr(C)]
pub(crate) struct XLA_FFI_ExecutionContext_Get_Args {
    pub struct_size: usize,
    pub extension_start: *mut XLA_FFI_Extension_Base,
    pub ctx: *mut XLA_FFI_ExecutionContext,
    pub type_id: *mut XLA_FFI_TypeId,
    pub data: *mut c_void,
}

/// `offsetof(XLA_FFI_Api, XLA_FFI_ExecutionContext_Get)`: `struct_size`,
/// `extension_start`, `api_version` (24), `internal_api`, then
/// `Error_Create`, `Error_GetMessage`, `Error_Destroy`, `Handler_Register`,
/// `Stream_Get`, `TypeId_Register`, `ExecutionContext_Get`.
pub(crate) const XLA_FFI_API_CONTEXT_GET_OFFSET: usize = 8 + 8 + 24 + 8 + 6 * 8;

/// `XLA_FFI_Error* XLA_FFI_ExecutionContext_Get(args)`.
pub(crate) type XlaFfiContextGet = unsafe extern "C" fn(*mut XLA_FFI_ExecutionContext_Get_Args) -> *mut XLA_FFI_Error;

/// `XLA_FFI_Error* XLA_FFI_Handler(XLA_FFI_CallFrame*)`.
pub(crate) type XlaFfiHandler = unsafe extern "C" fn(*mut XLA_FFI_CallFrame) -> *mut XLA_FFI_Error;

/// `XLA_FFI_STRUCT_SIZE` of the XLA FFI structs, as the header computes it.
pub(crate) const XLA_FFI_API_VERSION_STRUCT_SIZE: usize =
    std::mem::offset_of!(XLA_FFI_Api_Version, minor_version) + std::mem::size_of::<c_int>();
pub(crate) const XLA_FFI_METADATA_STRUCT_SIZE: usize =
    std::mem::offset_of!(XLA_FFI_Metadata, traits) + std::mem::size_of::<u32>();
pub(crate) const XLA_FFI_CONTEXT_GET_STRUCT_SIZE: usize =
    std::mem::offset_of!(XLA_FFI_ExecutionContext_Get_Args, data) + std::mem::size_of::<*mut c_void>();

// -------------------------------- API table ---------------------------------

/// `PJRT_Error* f(Args*)`, nullable (a plugin may leave entries it does not
/// implement null).
pub(crate) type Fn<A> = Option<unsafe extern "C" fn(args: *mut A) -> *mut PJRT_Error>;
/// `void f(Args*)`, nullable.
pub(crate) type VoidFn<A> = Option<unsafe extern "C" fn(args: *mut A)>;
/// A table entry this binding never calls: only its slot matters.
pub(crate) type Unused = Option<unsafe extern "C" fn()>;

/// `PJRT_Api`: the header fields, then the function pointers in the header's
/// order, up to the last one used here (`PJRT_Buffer_ToHostBuffer`, entry 70).
/// Only read through a pointer the plugin returns; the plugin's own table may
/// be longer (its `struct_size` says how long), never shorter than this one.
#[repr(C)]
pub(crate) struct PJRT_Api {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub pjrt_api_version: PJRT_Api_Version,

    pub PJRT_Error_Destroy: VoidFn<PJRT_Error_Destroy_Args>,
    pub PJRT_Error_Message: VoidFn<PJRT_Error_Message_Args>,
    pub PJRT_Error_GetCode: Fn<PJRT_Error_GetCode_Args>,

    pub PJRT_Plugin_Initialize: Fn<PJRT_Plugin_Initialize_Args>,
    pub PJRT_Plugin_Attributes: Fn<PJRT_Plugin_Attributes_Args>,

    pub PJRT_Event_Destroy: Fn<PJRT_Event_Destroy_Args>,
    pub PJRT_Event_IsReady: Unused,
    pub PJRT_Event_Error: Unused,
    pub PJRT_Event_Await: Fn<PJRT_Event_Await_Args>,
    pub PJRT_Event_OnReady: Unused,

    pub PJRT_Client_Create: Fn<PJRT_Client_Create_Args>,
    pub PJRT_Client_Destroy: Fn<PJRT_Client_Destroy_Args>,
    pub PJRT_Client_PlatformName: Fn<PJRT_Client_PlatformName_Args>,
    pub PJRT_Client_ProcessIndex: Unused,
    pub PJRT_Client_PlatformVersion: Fn<PJRT_Client_PlatformVersion_Args>,
    pub PJRT_Client_Devices: Unused,
    pub PJRT_Client_AddressableDevices: Fn<PJRT_Client_AddressableDevices_Args>,
    pub PJRT_Client_LookupDevice: Unused,
    pub PJRT_Client_LookupAddressableDevice: Unused,
    pub PJRT_Client_AddressableMemories: Unused,
    pub PJRT_Client_Compile: Fn<PJRT_Client_Compile_Args>,
    pub PJRT_Client_DefaultDeviceAssignment: Unused,
    pub PJRT_Client_BufferFromHostBuffer: Fn<PJRT_Client_BufferFromHostBuffer_Args>,

    pub PJRT_DeviceDescription_Id: Fn<PJRT_DeviceDescription_Id_Args>,
    pub PJRT_DeviceDescription_ProcessIndex: Unused,
    pub PJRT_DeviceDescription_Attributes: Unused,
    pub PJRT_DeviceDescription_Kind: Fn<PJRT_DeviceDescription_Kind_Args>,
    pub PJRT_DeviceDescription_DebugString: Unused,
    pub PJRT_DeviceDescription_ToString: Fn<PJRT_DeviceDescription_ToString_Args>,

    pub PJRT_Device_GetDescription: Fn<PJRT_Device_GetDescription_Args>,
    pub PJRT_Device_IsAddressable: Unused,
    pub PJRT_Device_LocalHardwareId: Unused,
    pub PJRT_Device_AddressableMemories: Unused,
    pub PJRT_Device_DefaultMemory: Unused,
    pub PJRT_Device_MemoryStats: Unused,

    pub PJRT_Memory_Id: Unused,
    pub PJRT_Memory_Kind: Unused,
    pub PJRT_Memory_DebugString: Unused,
    pub PJRT_Memory_ToString: Unused,
    pub PJRT_Memory_AddressableByDevices: Unused,

    pub PJRT_Executable_Destroy: Fn<PJRT_Executable_Destroy_Args>,
    pub PJRT_Executable_Name: Unused,
    pub PJRT_Executable_NumReplicas: Unused,
    pub PJRT_Executable_NumPartitions: Unused,
    pub PJRT_Executable_NumOutputs: Fn<PJRT_Executable_NumOutputs_Args>,
    pub PJRT_Executable_SizeOfGeneratedCodeInBytes: Unused,
    pub PJRT_Executable_GetCostAnalysis: Unused,
    pub PJRT_Executable_OutputMemoryKinds: Unused,
    pub PJRT_Executable_OptimizedProgram: Unused,
    pub PJRT_Executable_Serialize: Fn<PJRT_Executable_Serialize_Args>,

    pub PJRT_LoadedExecutable_Destroy: Fn<PJRT_LoadedExecutable_Destroy_Args>,
    pub PJRT_LoadedExecutable_GetExecutable: Fn<PJRT_LoadedExecutable_GetExecutable_Args>,
    pub PJRT_LoadedExecutable_AddressableDevices: Unused,
    pub PJRT_LoadedExecutable_Delete: Unused,
    pub PJRT_LoadedExecutable_IsDeleted: Unused,
    pub PJRT_LoadedExecutable_Execute: Fn<PJRT_LoadedExecutable_Execute_Args>,
    pub PJRT_Executable_DeserializeAndLoad: Fn<PJRT_Executable_DeserializeAndLoad_Args>,
    pub PJRT_LoadedExecutable_Fingerprint: Unused,

    pub PJRT_Buffer_Destroy: Fn<PJRT_Buffer_Destroy_Args>,
    pub PJRT_Buffer_ElementType: Fn<PJRT_Buffer_ElementType_Args>,
    pub PJRT_Buffer_Dimensions: Fn<PJRT_Buffer_Dimensions_Args>,
    pub PJRT_Buffer_UnpaddedDimensions: Unused,
    pub PJRT_Buffer_DynamicDimensionIndices: Unused,
    pub PJRT_Buffer_GetMemoryLayout: Unused,
    pub PJRT_Buffer_OnDeviceSizeInBytes: Fn<PJRT_Buffer_OnDeviceSizeInBytes_Args>,
    pub PJRT_Buffer_Device: Unused,
    pub PJRT_Buffer_Memory: Unused,
    pub PJRT_Buffer_Delete: Unused,
    pub PJRT_Buffer_IsDeleted: Unused,
    pub PJRT_Buffer_CopyToDevice: Unused,
    pub PJRT_Buffer_ToHostBuffer: Fn<PJRT_Buffer_ToHostBuffer_Args>,
}

/// The six `PJRT_Api` entries that follow `PJRT_Buffer_ToHostBuffer` (entries
/// 71 to 76), used only for the CPU fast path of reading a buffer (see
/// `Buffer::copy_to`). Declared apart from [`PJRT_Api`] because they are
/// optional: the table's prefix up to `PJRT_Buffer_ToHostBuffer` is all a
/// plugin must have, and this part is read (at [`API_TAIL_OFFSET`]) only
/// when the plugin's `struct_size` reaches [`API_TAIL_END`].
#[repr(C)]
pub(crate) struct PJRT_Api_BufferTail {
    pub PJRT_Buffer_IsOnCpu: Fn<PJRT_Buffer_IsOnCpu_Args>,
    pub PJRT_Buffer_ReadyEvent: Fn<PJRT_Buffer_ReadyEvent_Args>,
    pub PJRT_Buffer_UnsafePointer: Unused,
    pub PJRT_Buffer_IncreaseExternalReferenceCount: Fn<PJRT_Buffer_IncreaseExternalReferenceCount_Args>,
    pub PJRT_Buffer_DecreaseExternalReferenceCount: Fn<PJRT_Buffer_DecreaseExternalReferenceCount_Args>,
    pub PJRT_Buffer_OpaqueDeviceMemoryDataPointer: Fn<PJRT_Buffer_OpaqueDeviceMemoryDataPointer_Args>,
}

/// `offsetof(PJRT_Api, PJRT_Buffer_IsOnCpu)`: the table entries are all
/// pointers, so the tail starts right after [`PJRT_Api`] (checked in the
/// tests against the header).
pub(crate) const API_TAIL_OFFSET: usize = std::mem::size_of::<PJRT_Api>();
/// `PJRT_STRUCT_SIZE(PJRT_Api, PJRT_Buffer_OpaqueDeviceMemoryDataPointer)`:
/// the `struct_size` a plugin's table needs for [`PJRT_Api_BufferTail`].
pub(crate) const API_TAIL_END: usize = API_TAIL_OFFSET + std::mem::size_of::<PJRT_Api_BufferTail>();

/// `const PJRT_Api* GetPjrtApi(void)`, the one symbol a plugin exports.
pub(crate) type GetPjrtApiFn = unsafe extern "C" fn() -> *const PJRT_Api;

/// The symbol name of [`GetPjrtApiFn`].
pub(crate) const GET_PJRT_API_SYMBOL: &[u8] = b"GetPjrtApi\0";

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// `<name>_STRUCT_SIZE` and `sizeof(<name>)` as gcc computes them from
    /// `pjrt_c_api.h` at API 0.81 on x86-64 / aarch64 Linux (LP64), printed
    /// by a C program that includes the header.
    const HEADER_0_81: &[(&str, usize, usize)] = &[
        ("PJRT_Api_Version", 24, 24),
        ("PJRT_Error_Destroy_Args", 24, 24),
        ("PJRT_Error_Message_Args", 40, 40),
        ("PJRT_Error_GetCode_Args", 28, 32),
        ("PJRT_NamedValue", 56, 56),
        ("PJRT_Plugin_Initialize_Args", 16, 16),
        ("PJRT_Plugin_Attributes_Args", 32, 32),
        ("PJRT_Event_Destroy_Args", 24, 24),
        ("PJRT_Event_Await_Args", 24, 24),
        ("PJRT_Client_Create_Args", 88, 88),
        ("PJRT_Client_Destroy_Args", 24, 24),
        ("PJRT_Client_PlatformName_Args", 40, 40),
        ("PJRT_Client_PlatformVersion_Args", 40, 40),
        ("PJRT_Client_AddressableDevices_Args", 40, 40),
        ("PJRT_Program", 48, 48),
        ("PJRT_Client_Compile_Args", 56, 56),
        ("PJRT_Client_BufferFromHostBuffer_Args", 120, 120),
        ("PJRT_DeviceDescription_Id_Args", 28, 32),
        ("PJRT_DeviceDescription_Kind_Args", 40, 40),
        ("PJRT_DeviceDescription_ToString_Args", 40, 40),
        ("PJRT_Device_GetDescription_Args", 32, 32),
        ("PJRT_Executable_Destroy_Args", 24, 24),
        ("PJRT_Executable_NumOutputs_Args", 32, 32),
        ("PJRT_LoadedExecutable_Destroy_Args", 24, 24),
        ("PJRT_LoadedExecutable_GetExecutable_Args", 32, 32),
        ("PJRT_Executable_Serialize_Args", 56, 56),
        ("PJRT_Executable_DeserializeAndLoad_Args", 64, 64),
        ("PJRT_ExecuteOptions", 112, 112),
        ("PJRT_ExecuteContext_Create_Args", 24, 24),
        ("PJRT_ExecuteContext_Destroy_Args", 24, 24),
        ("PJRT_LoadedExecutable_Execute_Args", 80, 80),
        ("PJRT_Buffer_Destroy_Args", 24, 24),
        ("PJRT_Buffer_ElementType_Args", 28, 32),
        ("PJRT_Buffer_Dimensions_Args", 40, 40),
        ("PJRT_Buffer_OnDeviceSizeInBytes_Args", 32, 32),
        ("PJRT_Buffer_ToHostBuffer_Args", 56, 56),
        ("PJRT_Buffer_IsOnCpu_Args", 25, 32),
        ("PJRT_Buffer_ReadyEvent_Args", 32, 32),
        ("PJRT_Buffer_IncreaseExternalReferenceCount_Args", 24, 24),
        ("PJRT_Buffer_DecreaseExternalReferenceCount_Args", 24, 24),
        ("PJRT_Buffer_OpaqueDeviceMemoryDataPointer_Args", 32, 32),
    ];

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn struct_sizes_match_header_0_81() {
        for &(name, struct_size, _) in HEADER_0_81 {
            let ours =
                STRUCT_SIZES.iter().find(|(n, _, _)| *n == name).unwrap_or_else(|| panic!("{name} is not declared")).2;
            assert_eq!(ours, struct_size, "{name}_STRUCT_SIZE");
        }
        // Every declared struct (except the API table, a prefix) is checked;
        // the FFI extension's, from another header, in `ffi_structs_match_headers`.
        assert_eq!(STRUCT_SIZES.len(), HEADER_0_81.len() + 1);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn size_of_matches_header_sizeof() {
        macro_rules! check {
            ($($t:ident),*) => {$(
                let want = HEADER_0_81.iter().find(|e| e.0 == stringify!($t)).unwrap().2;
                assert_eq!(size_of::<$t>(), want, "sizeof({})", stringify!($t));
            )*};
        }
        check!(
            PJRT_Api_Version,
            PJRT_Error_Destroy_Args,
            PJRT_Error_Message_Args,
            PJRT_Error_GetCode_Args,
            PJRT_NamedValue,
            PJRT_Plugin_Initialize_Args,
            PJRT_Plugin_Attributes_Args,
            PJRT_Event_Destroy_Args,
            PJRT_Event_Await_Args,
            PJRT_Client_Create_Args,
            PJRT_Client_Destroy_Args,
            PJRT_Client_PlatformName_Args,
            PJRT_Client_PlatformVersion_Args,
            PJRT_Client_AddressableDevices_Args,
            PJRT_Program,
            PJRT_Client_Compile_Args,
            PJRT_Client_BufferFromHostBuffer_Args,
            PJRT_DeviceDescription_Id_Args,
            PJRT_DeviceDescription_Kind_Args,
            PJRT_DeviceDescription_ToString_Args,
            PJRT_Device_GetDescription_Args,
            PJRT_Executable_Destroy_Args,
            PJRT_Executable_NumOutputs_Args,
            PJRT_LoadedExecutable_Destroy_Args,
            PJRT_LoadedExecutable_GetExecutable_Args,
            PJRT_Executable_Serialize_Args,
            PJRT_Executable_DeserializeAndLoad_Args,
            PJRT_ExecuteOptions,
            PJRT_ExecuteContext_Create_Args,
            PJRT_ExecuteContext_Destroy_Args,
            PJRT_LoadedExecutable_Execute_Args,
            PJRT_Buffer_Destroy_Args,
            PJRT_Buffer_ElementType_Args,
            PJRT_Buffer_Dimensions_Args,
            PJRT_Buffer_OnDeviceSizeInBytes_Args,
            PJRT_Buffer_ToHostBuffer_Args,
            PJRT_Buffer_IsOnCpu_Args,
            PJRT_Buffer_ReadyEvent_Args,
            PJRT_Buffer_IncreaseExternalReferenceCount_Args,
            PJRT_Buffer_DecreaseExternalReferenceCount_Args,
            PJRT_Buffer_OpaqueDeviceMemoryDataPointer_Args
        );
    }

    /// `pjrt_c_api_ffi_extension.h` (the version with `register_handler`)
    /// and `xla/ffi/api/c_api.h` 0.1, from gcc on LP64: `STRUCT_SIZE` and
    /// `sizeof`.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn ffi_structs_match_headers() {
        assert_eq!(PJRT_FFI_TypeID_Register_Args::STRUCT_SIZE, 48);
        assert_eq!(size_of::<PJRT_FFI_Type_Info>(), 24);
        assert_eq!(size_of::<PJRT_FFI_UserData>(), 24);
        assert_eq!(PJRT_FFI_UserData_Add_Args::STRUCT_SIZE, 48);
        assert_eq!(PJRT_FFI_Register_Handler_Args::STRUCT_SIZE, 52);
        assert_eq!(size_of::<PJRT_FFI_Register_Handler_Args>(), 56);
        assert_eq!(size_of::<XLA_FFI_Extension_Base>(), 24);
        assert_eq!(XLA_FFI_API_VERSION_STRUCT_SIZE, 24);
        assert_eq!(XLA_FFI_METADATA_STRUCT_SIZE, 36);
        assert_eq!(size_of::<XLA_FFI_Metadata_Extension>(), 32);
        assert_eq!(size_of::<XLA_FFI_Buffer>(), 48);
        assert_eq!(size_of::<XLA_FFI_Args>(), 40);
        assert_eq!(size_of::<XLA_FFI_Attrs>(), 48);
        assert_eq!(offset_of!(XLA_FFI_CallFrame, stage), 32);
        assert_eq!(offset_of!(XLA_FFI_CallFrame, args), 40);
        assert_eq!(offset_of!(XLA_FFI_CallFrame, rets), 80);
        assert_eq!(offset_of!(XLA_FFI_CallFrame, attrs), 120);
        assert_eq!(XLA_FFI_CONTEXT_GET_STRUCT_SIZE, 40);
        assert_eq!(XLA_FFI_API_CONTEXT_GET_OFFSET, 96);
    }

    /// `PJRT_Extension_Base` is 24 bytes and `PJRT_FFI_Extension` 48 (gcc,
    /// LP64; the CPU plugin's FFI extension reports `struct_size` 48).
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn extension_structs_match_header() {
        assert_eq!(size_of::<PJRT_Extension_Base_Fields>(), 24);
        assert_eq!(offset_of!(PJRT_Extension_Base_Fields, next), 16);
        assert_eq!(FFI_EXTENSION_STRUCT_SIZE, 48);
        assert_eq!(size_of::<PJRT_FFI_Extension>(), 48);
    }

    /// `offsetof(PJRT_Api, f)` from gcc at API 0.81, for the entries used.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn api_table_offsets_match_header_0_81() {
        assert_eq!(offset_of!(PJRT_Api, PJRT_Error_Destroy), 40);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Plugin_Initialize), 64);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Client_BufferFromHostBuffer), 216);
        assert_eq!(offset_of!(PJRT_Api, PJRT_DeviceDescription_ToString), 264);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Device_GetDescription), 272);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Executable_Destroy), 360);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Executable_NumOutputs), 392);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Executable_Serialize), 432);
        assert_eq!(offset_of!(PJRT_Api, PJRT_LoadedExecutable_Destroy), 440);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Executable_DeserializeAndLoad), 488);
        assert_eq!(offset_of!(PJRT_Api, PJRT_LoadedExecutable_Execute), 480);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Buffer_Destroy), 504);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Buffer_OnDeviceSizeInBytes), 552);
        assert_eq!(offset_of!(PJRT_Api, PJRT_Buffer_ToHostBuffer), 600);
        assert_eq!(PJRT_Api::STRUCT_SIZE, 608);
        assert_eq!(size_of::<PJRT_Api>(), 608);
    }

    /// `offsetof(PJRT_Api, f)` from gcc at API 0.81 for the optional tail:
    /// `PJRT_Buffer_IsOnCpu` 608, `PJRT_Buffer_ReadyEvent` 616,
    /// `PJRT_Buffer_UnsafePointer` 624, `..._IncreaseExternalReferenceCount`
    /// 632, `..._DecreaseExternalReferenceCount` 640,
    /// `PJRT_Buffer_OpaqueDeviceMemoryDataPointer` 648.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn api_tail_offsets_match_header_0_81() {
        let at = |o: usize| API_TAIL_OFFSET + o;
        assert_eq!(at(offset_of!(PJRT_Api_BufferTail, PJRT_Buffer_IsOnCpu)), 608);
        assert_eq!(at(offset_of!(PJRT_Api_BufferTail, PJRT_Buffer_ReadyEvent)), 616);
        assert_eq!(at(offset_of!(PJRT_Api_BufferTail, PJRT_Buffer_UnsafePointer)), 624);
        assert_eq!(at(offset_of!(PJRT_Api_BufferTail, PJRT_Buffer_IncreaseExternalReferenceCount)), 632);
        assert_eq!(at(offset_of!(PJRT_Api_BufferTail, PJRT_Buffer_DecreaseExternalReferenceCount)), 640);
        assert_eq!(at(offset_of!(PJRT_Api_BufferTail, PJRT_Buffer_OpaqueDeviceMemoryDataPointer)), 648);
        assert_eq!(API_TAIL_END, 656);
    }
}
