//! Outcomes a host must tell apart get their own status: a run stopped by
//! its step limit is `LOOPVM_ERR_LIMIT`, a tensor that cannot be allocated
//! `LOOPVM_ERR_OOM` (not an abort), on every tier that runs the program.

use loopvm_capi::*;
use std::ffi::{CStr, CString};
use std::ptr;
#[path = "support/error.rs"]
mod error;
use error::message;

const SOURCE: &str = "\
fn spin() -> i32 { while_loop(|k| k < 1000000, |k| k + 1, 0) }
fn spin_fori() -> i32 { fori_loop(0, 1000000, |i, a| a + i, 0) }
fn huge() -> f32 { sum(zeros(f32, [1000000000, 100000])) }
fn huge_in_loop(n: i32) -> f32 { fori_loop(0, n, |i, a| a + sum(zeros(f32, [1000000000, 100000])), 0.0) }
";

fn compile() -> *mut loopvm_program {
    let src = CString::new(SOURCE).expect("source");
    let mut prog = ptr::null_mut();
    let mut err = ptr::null_mut();
    // SAFETY: a NUL-terminated source and out-parameters pointing to locals.
    let st = unsafe { loopvm_program_compile(src.as_ptr(), ptr::null(), &mut prog, &mut err) };
    assert_eq!(st, loopvm_status::LOOPVM_OK, "{}", message(err));
    prog
}

/// Calls `function` with `max_steps` on `tier`: the status and the message.
fn call(
    prog: *const loopvm_program,
    function: &str,
    args: &[i32],
    tier: loopvm_tier,
    max_steps: u64,
) -> (loopvm_status, String) {
    let name = CString::new(function).expect("name");
    let mut tensors = Vec::new();
    for a in args {
        let mut t = ptr::null_mut();
        // SAFETY: one i32 for a rank-0 tensor; out-parameters point to locals.
        let st = unsafe { loopvm_tensor_new(1, 0, ptr::null(), (a as *const i32).cast(), 4, &mut t, ptr::null_mut()) };
        assert_eq!(st, loopvm_status::LOOPVM_OK);
        tensors.push(t as *const loopvm_tensor);
    }
    let mut opts = loopvm_call_options_default();
    opts.tier = tier as i32;
    opts.max_steps = max_steps;
    let (mut res, mut err) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: a live program and tensors, valid options and out-parameters.
    let st = unsafe { loopvm_call(prog, name.as_ptr(), tensors.as_ptr(), tensors.len(), &opts, &mut res, &mut err) };
    // SAFETY: each was made above or by the call, and is freed once.
    unsafe {
        loopvm_result_free(res);
        for t in tensors {
            loopvm_tensor_free(t.cast_mut());
        }
    }
    (st, message(err))
}

#[test]
fn a_step_limited_run_is_a_limit() {
    let prog = compile();
    for tier in [loopvm_tier::LOOPVM_TIER_INTERP, loopvm_tier::LOOPVM_TIER_AUTO] {
        for f in ["spin", "spin_fori"] {
            let (st, m) = call(prog, f, &[], tier, 10);
            assert_eq!(st, loopvm_status::LOOPVM_ERR_LIMIT, "{f} on {tier:?}: {m}");
            assert!(m.contains("step limit exceeded: more than 10 loop iterations"), "{m}");
            // Without the limit it runs.
            let (st, m) = call(prog, f, &[], tier, 0);
            assert_eq!(st, loopvm_status::LOOPVM_OK, "{f} on {tier:?}: {m}");
        }
    }
    // SAFETY: made above, freed once.
    unsafe { loopvm_program_free(prog) };
    // SAFETY: a static string.
    let name = unsafe { CStr::from_ptr(loopvm_status_name(9)) };
    assert_eq!(name.to_str(), Ok("LOOPVM_ERR_LIMIT"));
}

#[test]
fn a_tensor_too_large_for_the_machine_is_out_of_memory() {
    let prog = compile();
    for tier in [loopvm_tier::LOOPVM_TIER_INTERP, loopvm_tier::LOOPVM_TIER_AUTO] {
        let (st, m) = call(prog, "huge", &[], tier, 0);
        assert_eq!(st, loopvm_status::LOOPVM_ERR_OOM, "{tier:?}: {m}");
        assert!(
            m.contains("out of memory") && m.contains("f32[1000000000, 100000] needs 400000000000000 bytes"),
            "{m}"
        );
        let (st, m) = call(prog, "huge_in_loop", &[3], tier, 0);
        assert_eq!(st, loopvm_status::LOOPVM_ERR_OOM, "{tier:?}: {m}");
    }
    // The library is still usable afterwards.
    let (st, m) = call(prog, "spin_fori", &[], loopvm_tier::LOOPVM_TIER_INTERP, 0);
    assert_eq!(st, loopvm_status::LOOPVM_OK, "{m}");
    // SAFETY: made above, freed once.
    unsafe { loopvm_program_free(prog) };
    // SAFETY: a static string.
    let name = unsafe { CStr::from_ptr(loopvm_status_name(10)) };
    assert_eq!(name.to_str(), Ok("LOOPVM_ERR_OOM"));
}
