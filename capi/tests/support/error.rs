//! The C API tests' reading of a `loopvm_error`.

use loopvm_capi::{loopvm_error, loopvm_error_free, loopvm_error_message};
use std::ffi::CStr;

/// The error's message, freeing it (empty for no error).
pub fn message(err: *mut loopvm_error) -> String {
    if err.is_null() {
        return String::new();
    }
    // SAFETY: `err` is a live error made by a call; its message lives as long as it; freed once.
    unsafe {
        let m = CStr::from_ptr(loopvm_error_message(err)).to_string_lossy().into_owned();
        loopvm_error_free(err);
        m
    }
}
