//! cargo-fuzz target: see `loopvm_fuzz::frontend`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    loopvm_fuzz::frontend(data);
});
