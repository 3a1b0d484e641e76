//! bf16 and f16 tensors through the C API: their 16 bits in and out
//! (`LOOPVM_BF16`, `LOOPVM_F16`), arithmetic rounded to the type, on every
//! tier; an unknown dtype tag names the range.

use loopvm_capi::*;
use std::ffi::CString;
use std::ptr;
#[path = "support/error.rs"]
mod error;
use error::message;

/// Runs `main(x)` of `src` on a rank-1 tensor of dtype `tag` holding `bits`
/// on `tier`: the result's dtype tag and bits.
fn run(src: &str, tag: loopvm_dtype, bits: &[u16], tier: loopvm_tier) -> (i32, Vec<u16>) {
    let src = CString::new(src).expect("source");
    let (mut prog, mut err) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: a NUL-terminated source and out-parameters pointing to locals.
    let st = unsafe { loopvm_program_compile(src.as_ptr(), ptr::null(), &mut prog, &mut err) };
    assert_eq!(st, loopvm_status::LOOPVM_OK, "{}", message(err));
    let shape = [bits.len()];
    let mut t = ptr::null_mut();
    // SAFETY: `bits.len()` u16s of data for the rank-1 shape; out-parameters point to locals.
    let st = unsafe {
        loopvm_tensor_new(tag as i32, 1, shape.as_ptr(), bits.as_ptr().cast(), 2 * bits.len(), &mut t, ptr::null_mut())
    };
    assert_eq!(st, loopvm_status::LOOPVM_OK);
    let mut opts = loopvm_call_options_default();
    opts.tier = tier as i32;
    let name = CString::new("main").expect("name");
    let args = [t as *const loopvm_tensor];
    let mut res = ptr::null_mut();
    // SAFETY: a live program and tensor, valid options and out-parameters.
    let st = unsafe { loopvm_call(prog, name.as_ptr(), args.as_ptr(), 1, &opts, &mut res, &mut err) };
    assert_eq!(st, loopvm_status::LOOPVM_OK, "{}", message(err));
    // SAFETY: a live result with one tensor, whose data are `numel` 2-byte
    // elements; everything made here is freed once.
    unsafe {
        let out = loopvm_result_get(res, 0);
        let dtype = loopvm_tensor_dtype(out);
        let n = loopvm_tensor_numel(out);
        let data = std::slice::from_raw_parts(loopvm_tensor_data(out).cast::<u16>(), n).to_vec();
        loopvm_result_free(res);
        loopvm_tensor_free(t);
        loopvm_program_free(prog);
        (dtype, data)
    }
}

#[test]
fn half_floats_in_and_out_on_every_tier() {
    // bf16 1.5, 1.0078125 and -inf; times 3: 4.5, 3.03125 (a tie, to even), -inf.
    let x = [0x3fc0, 0x3f81, 0xff80];
    // f16 1.5, 65504 (the largest) and 0.1 (0x2e66); times 3: 4.5, inf, 0.2998.
    let y = [0x3e00, 0x7bff, 0x2e66];
    for tier in [loopvm_tier::LOOPVM_TIER_INTERP, loopvm_tier::LOOPVM_TIER_JIT, loopvm_tier::LOOPVM_TIER_XLA] {
        let (d, b) = run("fn main(x: bf16[3]) -> bf16[3] { x * 3.0bf16 }", loopvm_dtype::LOOPVM_BF16, &x, tier);
        assert_eq!((d, b), (loopvm_dtype::LOOPVM_BF16 as i32, vec![0x4090, 0x4042, 0xff80]), "{tier:?}");
        let (d, b) = run("fn main(x: f16[3]) -> f16[3] { x * 3.0f16 }", loopvm_dtype::LOOPVM_F16, &y, tier);
        assert_eq!((d, b), (loopvm_dtype::LOOPVM_F16 as i32, vec![0x4480, 0x7c00, 0x34cc]), "{tier:?}");
    }
}

#[test]
fn an_unknown_dtype_tag_names_the_range() {
    let (mut t, mut err) = (ptr::null_mut(), ptr::null_mut());
    let x = 0u16;
    // SAFETY: two bytes of data for a rank-0 tensor; out-parameters point to locals.
    let st = unsafe { loopvm_tensor_new(9, 0, ptr::null(), (&x as *const u16).cast(), 2, &mut t, &mut err) };
    assert_ne!(st, loopvm_status::LOOPVM_OK);
    assert!(message(err).contains("LOOPVM_BOOL .. LOOPVM_F16 are 0 .. 8"), "{}", message(err));
}
