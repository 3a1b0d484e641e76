//! Native code: compiles a lowered region into code memory of its own, owns
//! that memory (freed when the [`NativeLoop`] is dropped) and holds the one
//! call into it, behind [`NativeLoop::run`], which checks every argument
//! against the types the code was compiled for.

use super::libcalls::NativeMeter;
use super::lower::{self, Lowered, Region, TType};
use super::CompileError;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module as _};
use loopvm_runtime::kernels::native::BufferKernel;
use loopvm_runtime::{Buffer, Tensor};
use loopvm_vm::{BlockId, FuncId};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The machine signature of a region function (see [`lower`]).
type EntryFn =
    unsafe extern "C" fn(*const *const u8, *const *const u8, *const *mut u8, *mut u64, i64, *mut NativeMeter);

/// The host ISA, with the flags every region is compiled with.
pub(crate) fn host_isa() -> Result<OwnedTargetIsa, CompileError> {
    let err = |e: &dyn std::fmt::Display| CompileError::Codegen(e.to_string());
    let mut fb = settings::builder();
    for (k, v) in [("opt_level", "speed"), ("is_pic", "false"), ("use_colocated_libcalls", "false")] {
        fb.set(k, v).map_err(|e| err(&e))?;
    }
    // `compile` runs the verifier itself, to print the function on failure.
    fb.set("enable_verifier", "false").map_err(|e| err(&e))?;
    let ib = cranelift_native::builder().map_err(|e| err(&e))?;
    ib.finish(settings::Flags::new(fb)).map_err(|e| err(&e))
}

/// A compiled region: its code memory and the types it was compiled for.
pub(crate) struct NativeLoop {
    /// The module that owns the code memory; `None` only while dropping.
    module: Option<JITModule>,
    entry: EntryFn,
    /// Types of the region inputs, in `ins` order.
    pub inputs: Vec<TType>,
    /// Types of the carry.
    pub carry: Vec<TType>,
    /// Types of the results (carry, then `ys`).
    pub outs: Vec<TType>,
    /// The loops whose iterations the code counts (index 0: the region's own).
    pub loops: Vec<(FuncId, BlockId)>,
    /// The code counts iterations against its meter.
    pub metered: bool,
    /// The optimised Cranelift IR and the machine code, when asked for.
    pub listing: Option<String>,
    /// The operand types of each `print` site ([`super::libcalls::Printer`]).
    pub prints: Vec<Vec<TType>>,
    /// Constants the code reads by address.
    _keep: Vec<Tensor>,
    /// The buffer kernels the code calls.
    // Boxed: the code holds their addresses.
    #[allow(clippy::vec_box)]
    _kernels: Vec<Box<BufferKernel>>,
    /// The code's scratch memory (its buffers; see `lower::buffers`),
    /// written only by the code, through `NativeMeter::scratch`.
    scratch: Box<[Cell<u64>]>,
}

impl Drop for NativeLoop {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the only pointer into this module's memory is `entry`,
            // which is called only from `run`, through `&self`. While `self` is
            // being dropped no such borrow exists, so no call is running and
            // none can start after the memory is freed.
            unsafe { m.free_memory() }
        }
    }
}

/// Lowers and compiles region `r`; a panic inside Cranelift is caught and
/// reported as an error, so a bug there never crashes the user's run.
pub(crate) fn compile(isa: &OwnedTargetIsa, r: &Region<'_>) -> Result<NativeLoop, CompileError> {
    match catch_unwind(AssertUnwindSafe(|| compile_inner(isa, r))) {
        Ok(res) => res,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(CompileError::Codegen(format!("Cranelift panicked: {msg}")))
        }
    }
}

/// Owns a `JITModule` until its code is handed to a [`NativeLoop`], freeing
/// it on the error paths.
struct ModuleGuard(Option<JITModule>);

impl Drop for ModuleGuard {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: no pointer to this module's code has been handed out
            // (the guard is emptied before `get_finalized_function`'s result
            // is stored anywhere), so nothing can run the freed code.
            unsafe { m.free_memory() }
        }
    }
}

fn compile_inner(isa: &OwnedTargetIsa, r: &Region<'_>) -> Result<NativeLoop, CompileError> {
    let cg = |e: &dyn std::fmt::Display| CompileError::Codegen(e.to_string());
    let mut guard = ModuleGuard(Some(JITModule::new(JITBuilder::with_isa(isa.clone(), default_libcall_names()))));
    let module = guard.0.as_mut().ok_or_else(|| CompileError::Codegen("no module".into()))?;
    let ptr = module.target_config().pointer_type();
    let cc = module.target_config().default_call_conv;
    let sig = lower::signature(ptr, cc);
    let id = module.declare_function("loopvm_region", Linkage::Local, &sig).map_err(|e| cg(&e))?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    let mut fctx = FunctionBuilderContext::new();
    let Lowered { outs, loops, keep, prints, scratch_bytes, kernels } =
        lower::lower_region(&mut ctx.func, &mut fctx, module.target_config(), cc, r)?;
    lower::verify(&ctx.func, module.isa())?;
    ctx.set_disasm(r.listing);
    module.define_function(id, &mut ctx).map_err(|e| cg(&e))?;
    let listing = r.listing.then(|| {
        let asm = ctx.compiled_code().and_then(|c| c.vcode.clone()).unwrap_or_default();
        format!("{}\n{asm}", ctx.func.display())
    });
    module.finalize_definitions().map_err(|e| cg(&e))?;
    let code = module.get_finalized_function(id);
    if code.is_null() {
        return Err(CompileError::Codegen("no code for the region function".into()));
    }
    // SAFETY: `code` is the finalized entry of a function whose Cranelift
    // signature is `lower::signature` with the host's default calling
    // convention: four pointers, an `i64` and a pointer, no results, which
    // is `EntryFn`.
    let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(code) };
    let mut cells: Vec<Cell<u64>> = Vec::new();
    let words = scratch_bytes.div_ceil(8);
    cells
        .try_reserve_exact(words)
        .map_err(|_| CompileError::Codegen(format!("no memory for the loop's {scratch_bytes} bytes of buffers")))?;
    cells.resize_with(words, || Cell::new(0));
    let scratch = cells.into_boxed_slice();
    let module = guard.0.take();
    Ok(NativeLoop {
        module,
        entry,
        inputs: r.inputs.to_vec(),
        carry: r.carry.to_vec(),
        outs,
        loops,
        metered: r.metered,
        listing,
        prints,
        _keep: keep,
        _kernels: kernels,
        scratch,
    })
}

fn data_ptr(t: &Tensor) -> *const u8 {
    match t.buffer() {
        Buffer::Bool(v) => v.as_ptr().cast(),
        Buffer::I32(v) => v.as_ptr().cast(),
        Buffer::I64(v) => v.as_ptr().cast(),
        Buffer::U32(v) => v.as_ptr().cast(),
        Buffer::U8(v) => v.as_ptr().cast(),
        Buffer::F32(v) => v.as_ptr().cast(),
        Buffer::F64(v) => v.as_ptr().cast(),
        Buffer::BF16(v) => v.as_ptr().cast(),
        Buffer::F16(v) => v.as_ptr().cast(),
    }
}

fn data_mut_ptr(t: &mut Tensor) -> Option<*mut u8> {
    loopvm_runtime::with_dtype!(t.dtype(), T => t.make_mut::<T>().map(|s| s.as_mut_ptr().cast::<u8>()))
}

impl NativeLoop {
    /// The bytes of the code's scratch memory (its buffers).
    pub(crate) fn scratch_bytes(&self) -> usize {
        self.scratch.len() * 8
    }

    /// Runs the compiled loop: `inputs` are the region inputs, `carry` the
    /// carry to start from, `start` the iterations already run; `outs`
    /// receive the results and must have the types of [`NativeLoop::outs`]
    /// (their buffers are made unique first); `counters[j]` is incremented by
    /// the iterations of loop `j`. Every type is checked before the call.
    /// Metered code counts against `meter` and may stop early (then
    /// `meter.stop` says why and `outs` are not written); other code leaves
    /// it alone.
    pub(crate) fn run(
        &self,
        inputs: &[&Tensor],
        carry: &[&Tensor],
        outs: &mut [Tensor],
        counters: &mut [u64],
        start: u64,
        meter: &mut NativeMeter,
    ) -> Result<(), String> {
        fn check<'a>(what: &str, want: &[TType], got: impl ExactSizeIterator<Item = &'a Tensor>) -> Result<(), String> {
            if want.len() != got.len() {
                return Err(format!("{what}: {} values for {}", got.len(), want.len()));
            }
            for (w, t) in want.iter().zip(got) {
                if !w.matches(t) {
                    return Err(format!("{what}: {} where the code expects {}", t.type_string(), w.display()));
                }
            }
            Ok(())
        }
        check("inputs", &self.inputs, inputs.iter().copied())?;
        check("carry", &self.carry, carry.iter().copied())?;
        check("results", &self.outs, outs.iter())?;
        if counters.len() != self.loops.len() {
            return Err(format!("{} counters for {} loops", counters.len(), self.loops.len()));
        }
        let start = i64::try_from(start).map_err(|_| format!("start {start} out of range"))?;
        meter.scratch = self.scratch.as_ptr().cast_mut().cast::<u8>();
        let ins: Vec<*const u8> = inputs.iter().map(|t| data_ptr(t)).collect();
        let cin: Vec<*const u8> = carry.iter().map(|t| data_ptr(t)).collect();
        let outp: Vec<*mut u8> =
            outs.iter_mut().map(data_mut_ptr).collect::<Option<_>>().ok_or("a result buffer has the wrong dtype")?;
        // SAFETY: `entry` is live code owned by `self.module` (freed only on
        // drop). It reads `ins[k]` and `cin[k]` as tensors of exactly the
        // types `self.inputs` / `self.carry`, and writes `outp[k]` as tensors
        // of the types `self.outs`, which were all checked above; the result
        // buffers are unique (`make_mut`) and distinct from the inputs, so the
        // writes alias nothing that is read. It adds to `counters[0..loops]`,
        // whose length was checked, and reads and writes `meter` (a live,
        // exclusive borrow) only through `fuel`, `scratch` and
        // `libcalls::refuel`. It reads and writes `self.scratch` (cells, so
        // writes through the shared borrow are allowed; no Rust code touches
        // them meanwhile and no other call of this code can run, since it
        // calls nothing that could re-enter the interpreter) at offsets below
        // its length, which the lowering sized. It
        // neither traps nor unwinds (integer division is guarded; the
        // functions it calls are total `extern "C"` Rust functions), and every
        // pointer array outlives the call.
        unsafe {
            (self.entry)(ins.as_ptr(), cin.as_ptr(), outp.as_ptr(), counters.as_mut_ptr(), start, meter as *mut _)
        };
        Ok(())
    }
}
