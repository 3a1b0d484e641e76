//! Several devices through the C API: `loopvm_call_options.devices`,
//! `mesh_model` and `shard` partition the xla tier's executable over the
//! CPU plugin's devices (4 here); the answer is the interpreter's, within
//! the partitioned tolerance; an uneven split is `LOOPVM_ERR_RUNTIME` naming
//! the argument and the mesh, a malformed `shard` `LOOPVM_ERR_ARGUMENT`.

use loopvm_capi::*;
use std::ffi::CString;
use std::ptr;
#[path = "support/error.rs"]
mod error;
use error::message;

const SOURCE: &str = "fn main(x: f32[8, 4], w: f32[4, 3]) -> f32 { sum(tanh(shard(x, axis: 0) @ w)) }";

fn tensor(dims: &[usize], v: &[f32]) -> *mut loopvm_tensor {
    let mut t = ptr::null_mut();
    // SAFETY: `v` holds the product of `dims` f32s; out-parameters point to locals.
    let st = unsafe {
        loopvm_tensor_new(
            loopvm_dtype::LOOPVM_F32 as i32,
            dims.len(),
            dims.as_ptr(),
            v.as_ptr().cast(),
            v.len() * 4,
            &mut t,
            ptr::null_mut(),
        )
    };
    assert_eq!(st, loopvm_status::LOOPVM_OK);
    t
}

/// Runs `main` with the options: the f32 result or the status and message.
fn call(devices: u32, mesh_model: u32, shard: &str, tier: loopvm_tier) -> Result<f32, (loopvm_status, String)> {
    let src = CString::new(SOURCE).unwrap();
    let (mut prog, mut err) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: a NUL-terminated source and out-parameters pointing to locals.
    let st = unsafe { loopvm_program_compile(src.as_ptr(), ptr::null(), &mut prog, &mut err) };
    assert_eq!(st, loopvm_status::LOOPVM_OK);
    let x: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin()).collect();
    let w: Vec<f32> = (0..12).map(|i| (i as f32 * 0.71).cos()).collect();
    let args = [tensor(&[8, 4], &x) as *const loopvm_tensor, tensor(&[4, 3], &w) as *const loopvm_tensor];
    let shard = CString::new(shard).unwrap();
    let mut opts = loopvm_call_options_default();
    opts.tier = tier as i32;
    opts.devices = devices;
    opts.mesh_model = mesh_model;
    opts.shard = shard.as_ptr();
    let (mut res, mut err) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: a live program and tensors, valid options (the shard text outlives the call) and out-parameters.
    let st = unsafe { loopvm_call(prog, ptr::null(), args.as_ptr(), 2, &opts, &mut res, &mut err) };
    let out = if st == loopvm_status::LOOPVM_OK {
        // SAFETY: a live result of one f32 scalar; freed once.
        unsafe {
            let v = *loopvm_tensor_data(loopvm_result_get(res, 0)).cast::<f32>();
            loopvm_result_free(res);
            Ok(v)
        }
    } else {
        Err((st, message(err)))
    };
    // SAFETY: each made above and freed once.
    unsafe {
        for a in args {
            loopvm_tensor_free(a.cast_mut());
        }
        loopvm_program_free(prog);
    }
    out
}

#[test]
fn several_devices_through_the_c_api() {
    let want = call(0, 0, "", loopvm_tier::LOOPVM_TIER_INTERP).unwrap();
    for (devices, model, shard) in [(4, 0, "x=0"), (4, 2, "x=0,w=0:model"), (4, 0, "")] {
        let got = call(devices, model, shard, loopvm_tier::LOOPVM_TIER_XLA).unwrap();
        assert!((got - want).abs() <= 1e-5 + 1e-4 * want.abs(), "{devices} {model} {shard}: {got} against {want}");
    }
    let (st, m) = call(3, 0, "x=0", loopvm_tier::LOOPVM_TIER_XLA).unwrap_err();
    assert_eq!(st, loopvm_status::LOOPVM_ERR_RUNTIME, "{m}");
    assert!(m.contains("argument `x` does not split evenly") && m.contains("mesh data=3"), "{m}");
    let (st, m) = call(4, 0, "x", loopvm_tier::LOOPVM_TIER_XLA).unwrap_err();
    assert_eq!(st, loopvm_status::LOOPVM_ERR_ARGUMENT, "{m}");
    let (st, m) = call(4, 3, "", loopvm_tier::LOOPVM_TIER_XLA).unwrap_err();
    assert_eq!(st, loopvm_status::LOOPVM_ERR_INVALID, "{m}");
}
