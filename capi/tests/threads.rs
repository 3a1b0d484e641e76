//! Many threads calling one compiled program at once get exactly what
//! sequential calls get: through the C API (the extern functions, called
//! from Rust) and through the Rust API (`loopvm::Program`, shared by `&`).

use loopvm::{Program, RunConfig, Tensor};
use loopvm_capi::*;
use std::ffi::{c_void, CStr, CString};
use std::ptr;

const SOURCE: &str = include_str!("../../examples/embed/decay.lb");
const THREADS: usize = 8;
const CALLS: usize = 12;

/// The inputs of call `k`: `xs: f32[T, 3]` with T depending on `k`, and `decay`.
fn inputs(k: usize) -> (Vec<usize>, Vec<f32>, f32) {
    let t = 5 + k % 7;
    let xs = (0..t * 3).map(|i| ((i * 7 + k * 13) % 17) as f32 * 0.25 - 2.0).collect();
    (vec![t, 3], xs, 0.5 + (k % 5) as f32 * 0.125)
}

/// A C-API program handle that may be shared between threads (the API
/// documents `loopvm_program` as immutable and safe to call concurrently).
struct Shared(*const loopvm_program);
// SAFETY: the C API documents that a program may be used from many threads at once.
unsafe impl Sync for Shared {}

fn check(st: loopvm_status, err: *mut loopvm_error) {
    if st != loopvm_status::LOOPVM_OK {
        // SAFETY: on failure `err` is a live error made by the call.
        let msg = unsafe { CStr::from_ptr(loopvm_error_message(err)) }.to_string_lossy().into_owned();
        // SAFETY: the error is live and freed once.
        unsafe { loopvm_error_free(err) };
        panic!("{st:?}: {msg}");
    }
}

/// One call through the C API; returns the result tensors as (dtype, shape, bytes).
fn c_call(prog: *const loopvm_program, k: usize) -> Vec<(i32, Vec<usize>, Vec<u8>)> {
    let (shape, xs, decay) = inputs(k);
    let mut err = ptr::null_mut();
    let (mut a, mut b) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: shape, data and sizes match; out-parameters point to locals.
    let st = unsafe {
        loopvm_tensor_new(3, 2, shape.as_ptr(), xs.as_ptr().cast::<c_void>(), xs.len() * 4, &mut a, &mut err)
    };
    check(st, err);
    // SAFETY: as above, a rank-0 tensor of one f32.
    let st = unsafe { loopvm_tensor_new(3, 0, ptr::null(), (&decay as *const f32).cast(), 4, &mut b, &mut err) };
    check(st, err);
    let args = [a as *const loopvm_tensor, b as *const loopvm_tensor];
    let name = CString::new("main").expect("name");
    let mut opts = loopvm_call_options_default();
    opts.tier = loopvm_tier::LOOPVM_TIER_INTERP as i32;
    let mut res = ptr::null_mut();
    // SAFETY: live program and tensors, valid options and out-parameters.
    let st = unsafe { loopvm_call(prog, name.as_ptr(), args.as_ptr(), 2, &opts, &mut res, &mut err) };
    check(st, err);
    let mut out = Vec::new();
    // SAFETY: `res` is a live result; the tensors it lends and their shapes live as long as it; `bytes` holds
    // exactly nbytes writable bytes; everything is freed once, at the end.
    unsafe {
        for i in 0..loopvm_result_count(res) {
            let t = loopvm_result_get(res, i);
            let rank = loopvm_tensor_rank(t);
            let dims =
                if rank == 0 { vec![] } else { std::slice::from_raw_parts(loopvm_tensor_shape(t), rank).to_vec() };
            let mut bytes = vec![0u8; loopvm_tensor_nbytes(t)];
            let st = loopvm_tensor_copy_data(t, bytes.as_mut_ptr().cast(), bytes.len(), &mut err);
            check(st, err);
            out.push((loopvm_tensor_dtype(t), dims, bytes));
        }
        loopvm_result_free(res);
        loopvm_tensor_free(a);
        loopvm_tensor_free(b);
    }
    out
}

#[test]
fn c_api_concurrent_calls_match_sequential_calls() {
    let src = CString::new(SOURCE).expect("source");
    let mut prog = ptr::null_mut();
    let mut err = ptr::null_mut();
    // SAFETY: a NUL-terminated source and out-parameters pointing to locals.
    check(unsafe { loopvm_program_compile(src.as_ptr(), ptr::null(), &mut prog, &mut err) }, err);
    let expected: Vec<_> = (0..THREADS * CALLS).map(|k| c_call(prog, k)).collect();
    let shared = Shared(prog);
    let got: Vec<Vec<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let shared = &shared;
                s.spawn(move || (0..CALLS).map(|c| c_call(shared.0, c * THREADS + t)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (t, calls) in got.iter().enumerate() {
        for (c, r) in calls.iter().enumerate() {
            assert_eq!(r, &expected[c * THREADS + t], "thread {t}, call {c}");
        }
    }
    // SAFETY: no thread uses the program any more.
    unsafe { loopvm_program_free(prog) };
}

#[test]
fn rust_api_concurrent_calls_match_sequential_calls() {
    let prog = Program::from_source(SOURCE, "decay.lb").expect("compile");
    let call = |k: usize| {
        let (shape, xs, decay) = inputs(k);
        let args = [Tensor::from_vec(&shape, xs).expect("xs"), Tensor::scalar(decay)];
        let out = prog.call("main", &args, &RunConfig::default()).expect("call");
        (out.value.to_string(), out.loop_iterations)
    };
    let expected: Vec<_> = (0..THREADS * CALLS).map(call).collect();
    let got: Vec<Vec<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| s.spawn(move || (0..CALLS).map(|c| call(c * THREADS + t)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (t, calls) in got.iter().enumerate() {
        for (c, r) in calls.iter().enumerate() {
            assert_eq!(r, &expected[c * THREADS + t], "thread {t}, call {c}");
        }
    }
}

#[test]
fn rust_api_types_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Program>();
    both::<Tensor>();
    both::<loopvm::RunOutput>();
    both::<loopvm::Value>();
    both::<loopvm::Error>();
    both::<RunConfig>();
}

#[test]
fn results_and_tensors_outlive_nothing_they_borrow() {
    // A cloned result tensor stays valid after the result and the program are freed.
    let src = CString::new(SOURCE).expect("source");
    let (mut prog, mut err) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: a NUL-terminated source and out-parameters pointing to locals.
    check(unsafe { loopvm_program_compile(src.as_ptr(), ptr::null(), &mut prog, &mut err) }, err);
    let n = 7i32;
    let mut a = ptr::null_mut();
    // SAFETY: one i32, rank 0.
    check(unsafe { loopvm_tensor_new(1, 0, ptr::null(), (&n as *const i32).cast(), 4, &mut a, &mut err) }, err);
    let name = CString::new("count").expect("name");
    let args = [a as *const loopvm_tensor];
    let mut res = ptr::null_mut();
    // SAFETY: live program and tensor; NULL options mean the defaults.
    check(unsafe { loopvm_call(prog, name.as_ptr(), args.as_ptr(), 1, ptr::null(), &mut res, &mut err) }, err);
    // SAFETY: live handles, each freed once; `kept` is a live i32 scalar whose data is one aligned i32.
    unsafe {
        assert_eq!(loopvm_result_count(res), 1);
        assert_eq!(loopvm_result_loop_iterations(res), 7);
        assert!(loopvm_result_get(res, 1).is_null());
        let kept = loopvm_tensor_clone(loopvm_result_get(res, 0));
        loopvm_result_free(res);
        loopvm_program_free(prog);
        loopvm_tensor_free(a);
        assert_eq!(loopvm_tensor_dtype(kept), loopvm_dtype::LOOPVM_I32 as i32);
        assert_eq!(loopvm_tensor_rank(kept), 0);
        assert!(loopvm_tensor_shape(kept).is_null());
        assert_eq!(*loopvm_tensor_data(kept).cast::<i32>(), 7);
        loopvm_tensor_free(kept);
    }
}

#[test]
fn bytecode_round_trip_and_function_listing() {
    let prog = Program::from_source(SOURCE, "decay.lb").expect("compile");
    let bytes = prog.to_bytecode();
    let (mut p, mut err) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: `bytes` is readable for its length; out-parameters point to locals.
    check(unsafe { loopvm_program_from_bytecode(bytes.as_ptr(), bytes.len(), &mut p, &mut err) }, err);
    // SAFETY: `p` is live until freed at the end; the names and signatures are NUL-terminated while it lives.
    unsafe {
        assert_eq!(loopvm_program_function_count(p), 2);
        let name = |i| CStr::from_ptr(loopvm_program_function_name(p, i)).to_str().expect("UTF-8").to_string();
        assert_eq!((name(0), name(1)), ("main".to_string(), "count".to_string()));
        let sig = CStr::from_ptr(loopvm_program_function_signature(p, 1)).to_str().expect("UTF-8");
        assert_eq!(sig, "fn count(n: i32) -> i32");
        assert!(loopvm_program_function_name(p, 2).is_null());
        loopvm_program_free(p);
    }
}

#[test]
fn npy_in_and_out() {
    let dir = std::env::temp_dir().join(format!("loopvm-capi-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = CString::new(dir.join("x.npy").display().to_string()).expect("path");
    let data = [1.5f64, -2.0, 3.25, 4.0];
    let shape = [2usize, 2];
    let (mut t, mut back, mut err) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    // SAFETY: shape and data match; out-parameters point to locals.
    check(unsafe { loopvm_tensor_new(4, 2, shape.as_ptr(), data.as_ptr().cast(), 32, &mut t, &mut err) }, err);
    // SAFETY: live tensor, NUL-terminated path.
    check(unsafe { loopvm_tensor_save_npy(t, path.as_ptr(), &mut err) }, err);
    // SAFETY: NUL-terminated path, out-parameters point to locals.
    check(unsafe { loopvm_tensor_load_npy(path.as_ptr(), &mut back, &mut err) }, err);
    let mut out = [0f64; 4];
    // SAFETY: `out` holds 32 writable bytes.
    check(unsafe { loopvm_tensor_copy_data(back, out.as_mut_ptr().cast(), 32, &mut err) }, err);
    assert_eq!(out, data);
    let mut small = [0f64; 3];
    // SAFETY: `small` holds 24 writable bytes, which the call must refuse to overrun.
    let st = unsafe { loopvm_tensor_copy_data(back, small.as_mut_ptr().cast(), 24, &mut err) };
    assert_eq!(st, loopvm_status::LOOPVM_ERR_INVALID);
    // SAFETY: live handles, each freed once.
    unsafe {
        assert_eq!(loopvm_error_code(err), loopvm_status::LOOPVM_ERR_INVALID);
        loopvm_error_free(err);
        loopvm_tensor_free(t);
        loopvm_tensor_free(back);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Rust example of docs/embedding.md, as written there (but for the path).
#[test]
fn docs_rust_example() -> Result<(), loopvm::Error> {
    use loopvm::Tier;
    use std::path::Path;
    let prog = Program::from_path(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/embed/decay.lb")))?;
    let xs = Tensor::from_vec(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let decay = Tensor::scalar(0.5f32);
    let cfg = RunConfig { tier: Tier::Auto, max_steps: Some(1_000_000), capture_print: true, ..Default::default() };
    let out = prog.call("main", &[xs, decay], &cfg)?;
    println!("{}", out.value);
    let last = out.value.leaves()[0].as_slice::<f32>().unwrap();
    assert_eq!(last, &[4.5, 6.0, 7.5]);
    println!("{} ops, {} loop iterations in {:?}", out.ops, out.loop_iterations, out.elapsed);
    Ok(())
}
