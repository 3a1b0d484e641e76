//! `loopvm._native`: the PyO3 extension behind the Python package `loopvm`
//! (see `loopvm/__init__.py` for the public names and docs/python.md).
//!
//! Every entry point converts Rust errors into the exceptions of
//! `loopvm._support` and runs programs inside `catch_unwind` with the GIL
//! released, so that no panic reaches Python and other threads run meanwhile.

use loopvm_api::{self as api, DType, ErrorKind, Tensor, Tier, Value};
use loopvm_runtime::Buffer;
use loopvm_vm::{Dim, TypeTree};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

static SUPPORT: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// `loopvm._support`: the exception classes and signature types (pure Python).
fn support(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(SUPPORT.get_or_try_init(py, || py.import("loopvm._support").map(Bound::unbind))?.bind(py))
}

fn numpy_mod(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(NUMPY.get_or_try_init(py, || py.import("numpy").map(Bound::unbind))?.bind(py))
}

/// An instance of exception class `name` of `loopvm._support`, built with `args`.
fn support_err<'py>(py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    match support(py).and_then(|m| m.getattr(name)).and_then(|c| c.call1(args)) {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

fn strip(msg: &str) -> &str {
    let m = msg.strip_prefix("error: ").unwrap_or(msg);
    m.strip_prefix("argument: ").unwrap_or(m)
}

/// The exception for an error of the embedding API.
fn api_err(py: Python<'_>, e: &api::Error) -> PyErr {
    let text = e.to_string();
    let msg = strip(&text).to_string();
    match e.kind() {
        ErrorKind::Argument(_) => PyValueError::new_err(msg),
        ErrorKind::Io(_) => PyOSError::new_err(msg),
        ErrorKind::Compile(m) => {
            support_err(py, "CompileError", (msg.clone(), None::<String>, None::<usize>, None::<usize>, m.clone()))
        }
        ErrorKind::Bytecode(_) => {
            support_err(py, "CompileError", (msg.clone(), None::<String>, None::<usize>, None::<usize>, text.clone()))
        }
        // Ctrl-C: Python's own SIGINT handler ran too and left its
        // KeyboardInterrupt pending; raise that one.
        ErrorKind::Exec(loopvm_vm::ExecError::Interrupted) => {
            py.check_signals().err().unwrap_or_else(|| PyKeyboardInterrupt::new_err("interrupted"))
        }
        _ if e.is_limit() => support_err(py, "LimitError", (msg,)),
        _ => support_err(py, "RunError", (msg,)),
    }
}

/// The flag that Ctrl-C sets: a SIGINT action registered once (on the
/// first run) beside Python's own handler, which signal-hook keeps and calls
/// too, so Python still raises `KeyboardInterrupt`. Every run reads it as
/// its cancel flag (cleared when the run starts): a program in a long loop
/// stops within 1024 iterations on the interpreter, 65 536 in native code,
/// or a metered chunk on XLA, with the GIL released all along.
fn interrupt_flag() -> Option<Arc<AtomicBool>> {
    static FLAG: OnceLock<Option<Arc<AtomicBool>>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        #[cfg(unix)]
        let registered = signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone()).is_ok();
        #[cfg(not(unix))]
        let registered = false;
        registered.then_some(flag)
    })
    .clone()
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f` with the GIL released, turning a panic into `loopvm.RunError`.
fn guarded<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, api::Error> + Send) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(api_err(py, &e)),
        Err(p) => Err(support_err(py, "RunError", (format!("internal error (panic): {}", panic_text(&*p)),))),
    }
}

/// Compiles source, raising `CompileError` with the first diagnostic's place.
fn compile_source(py: Python<'_>, src: &str, file: &str) -> PyResult<Program> {
    let r = py.detach(|| catch_unwind(AssertUnwindSafe(|| api::Program::from_source(src, file))));
    match r {
        Ok(Ok(p)) => Program::new(p),
        Ok(Err(e)) => {
            if let ErrorKind::Compile(rendered) = e.kind() {
                // The API renders the diagnostics to text; the frontend's
                // error (compiled again, only on this path) has their places.
                if let Err(ce) = loopvm_frontend::compile(src, file) {
                    let (line, col) = ce.first_location().map_or((None, None), |(l, c)| (Some(l), Some(c)));
                    return Err(support_err(
                        py,
                        "CompileError",
                        (ce.message().to_string(), Some(file.to_string()), line, col, rendered.clone()),
                    ));
                }
            }
            Err(api_err(py, &e))
        }
        Err(p) => Err(support_err(py, "RunError", (format!("internal error (panic): {}", panic_text(&*p)),))),
    }
}

/// Compiles `.lb` source into a program.
///
/// ``file`` names the source in error messages (``CompileError``'s ``str``
/// is ``file:line:col: message``).
#[pyfunction]
#[pyo3(signature = (source, file = "<string>"))]
fn compile(py: Python<'_>, source: &str, file: &str) -> PyResult<Program> {
    compile_source(py, source, file)
}

/// Loads a ``.lb`` source file or a ``.lbc`` bytecode file (told apart by
/// the bytecode magic number).
#[pyfunction]
fn load(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Program> {
    let bytes = std::fs::read(&path).map_err(|e| PyOSError::new_err(format!("cannot read {}: {e}", path.display())))?;
    if bytes.starts_with(&loopvm_vm::module::MAGIC) {
        let p = guarded(py, || api::Program::from_bytecode(&bytes))?;
        return Program::new(p);
    }
    let src = String::from_utf8(bytes).map_err(|_| {
        PyValueError::new_err(format!("{} is neither UTF-8 source nor loopvm bytecode", path.display()))
    })?;
    compile_source(py, &src, &path.display().to_string())
}

/// The PJRT plugins found, as ``loopvm plugin list`` shows them: a list of
/// dicts with ``path``, ``kind``, ``source``, ``status`` (``ok``,
/// ``broken``, ``shadowed``) and, when loaded, ``platform``,
/// ``platform_version``, ``api_version`` and ``devices``.
#[pyfunction]
fn plugins(py: Python<'_>) -> PyResult<Py<PyList>> {
    use loopvm_jit::xla::plugin;
    let reports = py.detach(plugin::list);
    let out = PyList::empty(py);
    for r in reports {
        let d = PyDict::new(py);
        d.set_item("path", r.found.path.display().to_string())?;
        d.set_item("kind", r.found.kind.map(|k| k.name()))?;
        d.set_item("source", r.found.source.to_string())?;
        match r.status {
            plugin::PluginStatus::Ok(x) => {
                d.set_item("status", "ok")?;
                d.set_item("platform", x.platform_name.clone())?;
                d.set_item("platform_version", x.platform_version.clone())?;
                d.set_item("api_version", x.api_version.to_string())?;
                let devs: Vec<String> = x.devices.iter().map(|v| v.description.clone()).collect();
                d.set_item("devices", devs)?;
            }
            plugin::PluginStatus::Broken(e) => {
                d.set_item("status", "broken")?;
                d.set_item("error", e.to_string())?;
            }
            plugin::PluginStatus::Shadowed(p) => {
                d.set_item("status", "shadowed")?;
                d.set_item("error", format!("not loaded: {} is used for this kind", p.display()))?;
            }
        }
        out.append(d)?;
    }
    Ok(out.unbind())
}

/// A value (an array, a scalar, or nested tuples of them) as ``loopvm run``
/// prints it, e.g. ``(f32[3] [4.5, 6.0, 7.5], i32 3)``.
#[pyfunction]
fn format(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(value_from_py(py, value)?.to_string())
}

/// Any array-like as a value, keeping its own dtype (for `format`).
fn value_from_py(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(t) = v.cast::<PyTuple>() {
        return Ok(Value::Tuple(t.iter().map(|x| value_from_py(py, &x)).collect::<PyResult<_>>()?));
    }
    let arr = numpy_mod(py)?.call_method1("asarray", (v,))?;
    let arr = arr.cast::<PyUntypedArray>()?;
    let dt = dtype_of(arr).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "loopvm has no dtype for {}",
            arr.dtype().str().map(|s| s.to_string()).unwrap_or_default()
        ))
    })?;
    let ty = loopvm_vm::TensorType { dtype: dt, dims: arr.shape().iter().map(|&d| Dim::Fixed(d as u64)).collect() };
    Ok(Value::Tensor(to_tensor(py, "value", &ty, &[], arr.as_any())?))
}

/// The loopvm dtype of a NumPy array, when it has one.
fn dtype_of(arr: &Bound<'_, PyUntypedArray>) -> Option<DType> {
    let py = arr.py();
    let d = arr.dtype();
    DType::ALL.into_iter().find(|&t| {
        let want = match t {
            DType::Bool => numpy::dtype::<bool>(py),
            DType::I32 => numpy::dtype::<i32>(py),
            DType::I64 => numpy::dtype::<i64>(py),
            DType::U32 => numpy::dtype::<u32>(py),
            DType::U8 => numpy::dtype::<u8>(py),
            DType::F32 => numpy::dtype::<f32>(py),
            DType::F64 => numpy::dtype::<f64>(py),
            DType::F16 => numpy::dtype::<half::f16>(py),
            // NumPy knows bfloat16 only once ml_dtypes is imported.
            DType::BF16 if bf16_ready(py) => numpy::dtype::<half::bf16>(py),
            DType::BF16 => return false,
        };
        numpy::PyArrayDescrMethods::is_equiv_to(&d, &want)
    })
}

fn numpy_name(d: DType) -> &'static str {
    match d {
        DType::Bool => "bool",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::U32 => "uint32",
        DType::U8 => "uint8",
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
    }
}

/// `true` when `ml_dtypes` (which gives NumPy its `bfloat16`) imports: the
/// bf16 element type of rust-numpy panics without it, so every bf16 array
/// goes through here first.
fn bf16_ready(py: Python<'_>) -> bool {
    py.import("ml_dtypes").is_ok()
}

#[cold]
fn no_bf16(what: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "{what}: bf16 arrays are NumPy arrays of ml_dtypes.bfloat16; install ml_dtypes (pip install ml_dtypes)"
    ))
}

/// Copies a NumPy array of element type `T` into a tensor (one copy; the
/// runtime owns its buffers).
fn read_array<T: Element + loopvm_runtime::Element + Copy>(a: &Bound<'_, PyArrayDyn<T>>) -> PyResult<Tensor> {
    let ro = a.try_readonly().map_err(|e| PyValueError::new_err(e.to_string()))?;
    let shape = ro.shape().to_vec();
    let data: Vec<T> = match ro.as_slice() {
        // The runtime's copy: fallible, and a large buffer advised as huge
        // pages before it is touched (as NumPy does for its own arrays).
        Ok(s) => {
            loopvm_runtime::alloc::try_copy("argument", s, &shape).map_err(|e| PyValueError::new_err(e.to_string()))?
        }
        Err(_) => ro.as_array().iter().copied().collect(),
    };
    Tensor::from_vec(&shape, data).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// A tensor of `ty`'s dtype from an exactly typed array, or `None`.
fn exact(ty: DType, obj: &Bound<'_, PyAny>) -> Option<PyResult<Tensor>> {
    match ty {
        DType::Bool => obj.cast::<PyArrayDyn<bool>>().ok().map(read_array),
        DType::I32 => obj.cast::<PyArrayDyn<i32>>().ok().map(read_array),
        DType::I64 => obj.cast::<PyArrayDyn<i64>>().ok().map(read_array),
        DType::U32 => obj.cast::<PyArrayDyn<u32>>().ok().map(read_array),
        DType::U8 => obj.cast::<PyArrayDyn<u8>>().ok().map(read_array),
        DType::F32 => obj.cast::<PyArrayDyn<f32>>().ok().map(read_array),
        DType::F64 => obj.cast::<PyArrayDyn<f64>>().ok().map(read_array),
        DType::F16 => obj.cast::<PyArrayDyn<half::f16>>().ok().map(read_array),
        DType::BF16 if bf16_ready(obj.py()) => obj.cast::<PyArrayDyn<half::bf16>>().ok().map(read_array),
        DType::BF16 => None,
    }
}

/// Converts one argument to a tensor of `ty`: an array of exactly its dtype
/// (also through `__array__` / `__dlpack__`), or Python scalars and nested
/// lists of a compatible kind (converted to the dtype).
fn to_tensor(
    py: Python<'_>,
    name: &str,
    ty: &loopvm_vm::TensorType,
    symbols: &[String],
    obj: &Bound<'_, PyAny>,
) -> PyResult<Tensor> {
    if let Some(t) = exact(ty.dtype, obj) {
        return t;
    }
    let want = ty.display(symbols);
    if ty.dtype == DType::BF16 && !bf16_ready(py) {
        return Err(no_bf16(&format!("`{name}` must be {want}")));
    }
    let np = numpy_mod(py)?;
    let plain = obj.is_instance_of::<PyBool>()
        || obj.is_instance_of::<PyInt>()
        || obj.is_instance_of::<PyFloat>()
        || obj.is_instance_of::<PyList>()
        || obj.is_instance_of::<PyTuple>();
    let arr = if plain {
        let guess = np
            .call_method1("asarray", (obj,))
            .map_err(|e| PyValueError::new_err(format!("`{name}`: not an array ({e})")))?;
        let kind = guess.getattr("dtype")?.getattr("kind")?.extract::<String>()?;
        let ok = matches!(
            (kind.as_str(), ty.dtype),
            ("b", DType::Bool)
                | ("i" | "u", DType::I32 | DType::I64 | DType::U32 | DType::U8)
                | ("i" | "u" | "f", DType::F32 | DType::F64 | DType::BF16 | DType::F16)
        );
        if !ok {
            let what = match kind.as_str() {
                "b" => "bool",
                "i" | "u" => "int",
                "f" => "float",
                _ => "non-numeric",
            };
            return Err(PyTypeError::new_err(format!("`{name}` must be {want}, got Python {what} values")));
        }
        np.call_method1("asarray", (obj, numpy_name(ty.dtype)))
            .map_err(|e| PyValueError::new_err(format!("`{name}` must be {want}: {e}")))?
    } else if obj.is_instance_of::<PyUntypedArray>() {
        obj.clone()
    } else if obj.hasattr("__array__")? {
        np.call_method1("asarray", (obj,))?
    } else if obj.hasattr("__dlpack__")? {
        np.call_method1("from_dlpack", (obj,))?
    } else {
        let tn = obj.get_type().name()?.to_string();
        return Err(PyTypeError::new_err(format!("`{name}` must be {want}, got an object of type {tn}")));
    };
    if let Some(t) = exact(ty.dtype, &arr) {
        return t;
    }
    let arr = arr.cast::<PyUntypedArray>()?;
    let got = match dtype_of(arr) {
        Some(d) => d.as_str().to_string(),
        None => arr.dtype().str()?.to_string(),
    };
    let dims: Vec<String> = arr.shape().iter().map(|d| d.to_string()).collect();
    Err(PyTypeError::new_err(format!(
        "`{name}` must be {want}, got an array of {got}[{}] (convert it with .astype(numpy.{}))",
        dims.join(", "),
        numpy_name(ty.dtype)
    )))
}

/// Flattens one (possibly tuple-typed) argument into `out`.
fn flatten_arg(
    py: Python<'_>,
    name: &str,
    ty: &TypeTree,
    symbols: &[String],
    obj: &Bound<'_, PyAny>,
    out: &mut Vec<Tensor>,
) -> PyResult<()> {
    match ty {
        TypeTree::Tensor(t) => {
            out.push(to_tensor(py, name, t, symbols, obj)?);
            Ok(())
        }
        TypeTree::Tuple(ts) => {
            let items: Vec<Bound<'_, PyAny>> = if let Ok(t) = obj.cast::<PyTuple>() {
                t.iter().collect()
            } else if let Ok(l) = obj.cast::<PyList>() {
                l.iter().collect()
            } else {
                return Err(PyTypeError::new_err(format!("`{name}` must be a tuple {}", ty.display(symbols))));
            };
            if items.len() != ts.len() {
                return Err(PyValueError::new_err(format!(
                    "`{name}` must be a tuple of {} values {}, got {}",
                    ts.len(),
                    ty.display(symbols),
                    items.len()
                )));
            }
            for (k, (t, o)) in ts.iter().zip(&items).enumerate() {
                flatten_arg(py, &format!("{name}[{k}]"), t, symbols, o, out)?;
            }
            Ok(())
        }
    }
}

/// A tensor as a NumPy array, handing the buffer over without a copy when
/// the tensor holds the only reference to it.
fn tensor_to_py(py: Python<'_>, t: Tensor) -> PyResult<Py<PyAny>> {
    fn give<T: Element + Clone>(py: Python<'_>, shape: &[usize], a: Arc<Vec<T>>) -> PyResult<Py<PyAny>> {
        let v = Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone());
        let arr = ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(numpy::PyArray::from_owned_array(py, arr).into_any().unbind())
    }
    let shape = t.shape().to_vec();
    let buf = t.buffer().clone();
    drop(t);
    match buf {
        Buffer::Bool(a) => give(py, &shape, a),
        Buffer::I32(a) => give(py, &shape, a),
        Buffer::I64(a) => give(py, &shape, a),
        Buffer::U32(a) => give(py, &shape, a),
        Buffer::U8(a) => give(py, &shape, a),
        Buffer::F32(a) => give(py, &shape, a),
        Buffer::F64(a) => give(py, &shape, a),
        Buffer::F16(a) => give(py, &shape, a),
        Buffer::BF16(a) if bf16_ready(py) => give(py, &shape, a),
        Buffer::BF16(_) => Err(no_bf16("a bf16 result")),
    }
}

fn value_to_py(py: Python<'_>, v: Value) -> PyResult<Py<PyAny>> {
    match v {
        Value::Tensor(t) => tensor_to_py(py, t),
        Value::Tuple(vs) => {
            let items = vs.into_iter().map(|v| value_to_py(py, v)).collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any().unbind())
        }
    }
}

fn parse_tier(tier: &str) -> PyResult<Tier> {
    Tier::parse(tier).ok_or_else(|| PyValueError::new_err(format!("unknown tier `{tier}` (auto, interp, jit, xla)")))
}

fn make_config(
    tier: &str,
    max_steps: Option<u64>,
    max_memory: Option<usize>,
    timeout: Option<f64>,
    trace: bool,
    devices: usize,
    mesh: Option<(usize, usize)>,
    shard: Option<std::collections::HashMap<String, (usize, String)>>,
) -> PyResult<api::RunConfig> {
    let mesh = match mesh {
        Some((data, model)) if data >= 1 && model >= 1 => Some(api::Mesh { data, model }),
        Some((data, model)) => return Err(PyValueError::new_err(format!("mesh ({data}, {model}) has an empty axis"))),
        None => None,
    };
    let mut shards = Vec::new();
    for (name, (axis, mesh_axis)) in shard.into_iter().flatten() {
        let mesh_axis = api::MeshAxis::parse(&mesh_axis)
            .ok_or_else(|| PyValueError::new_err(format!("mesh axis `{mesh_axis}` is neither `data` nor `model`")))?;
        shards.push(api::ShardArg { name, spec: api::ShardSpec { axis, mesh_axis } });
    }
    shards.sort_by(|a, b| a.name.cmp(&b.name));
    let timeout = match timeout {
        None => None,
        Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(PyValueError::new_err(format!("timeout must be a non-negative number of seconds, got {s}")))
        }
    };
    let cancel = interrupt_flag();
    if let Some(c) = &cancel {
        c.store(false, Ordering::Relaxed);
    }
    Ok(api::RunConfig {
        tier: parse_tier(tier)?,
        trace,
        max_steps,
        max_memory,
        timeout,
        capture_print: false,
        jit_threshold: None,
        no_cache: false,
        cancel,
        devices,
        mesh,
        shard: shards,
    })
}

/// A compiled, verified loopvm program. Thread-safe: one program may be run
/// from many threads at once (the GIL is released while it runs).
#[pyclass(frozen, module = "loopvm")]
struct Program {
    inner: api::Program,
    main: Option<api::FuncId>,
}

impl Program {
    fn new(inner: api::Program) -> PyResult<Program> {
        let main = inner.module().main;
        Ok(Program { inner, main })
    }

    fn main_func(&self) -> PyResult<&loopvm_vm::Func> {
        let f = self.main.ok_or_else(|| PyValueError::new_err("the program has no `main` function"))?;
        Ok(self.inner.module().func(f))
    }

    /// The flattened argument tensors of `main` from positional and keyword arguments.
    fn tensors(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Tensor>> {
        let f = self.main_func()?;
        let symbols = &self.inner.module().symbols;
        let n = f.params.len();
        if args.len() > n {
            return Err(PyTypeError::new_err(format!(
                "`{}` takes {n} argument(s) ({}), {} given",
                f.name,
                names(f),
                args.len()
            )));
        }
        if let Some(kw) = kwargs {
            for k in kw.keys() {
                let k: String = k.extract()?;
                match f.params.iter().position(|p| p.name == k) {
                    None => {
                        return Err(PyTypeError::new_err(format!(
                            "`{}` has no parameter `{k}` (parameters: {})",
                            f.name,
                            names(f)
                        )))
                    }
                    Some(i) if i < args.len() => {
                        return Err(PyTypeError::new_err(format!("`{k}` given both by position and by name")))
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::with_capacity(n);
        for (i, p) in f.params.iter().enumerate() {
            let obj = if i < args.len() {
                args.get_item(i)?
            } else {
                match kwargs.map(|kw| kw.get_item(&p.name)).transpose()?.flatten() {
                    Some(o) => o,
                    None => {
                        return Err(PyTypeError::new_err(format!(
                            "missing argument `{}` ({})",
                            p.name,
                            p.ty.display(symbols)
                        )))
                    }
                }
            };
            flatten_arg(py, &p.name, &p.ty, symbols, &obj, &mut out)?;
        }
        Ok(out)
    }
}

fn names(f: &loopvm_vm::Func) -> String {
    f.params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn stats_dict<'py>(py: Python<'py>, o: &api::RunOutput) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("ops", o.ops)?;
    d.set_item("loop_iterations", o.loop_iterations)?;
    d.set_item("elapsed", o.elapsed.as_secs_f64())?;
    d.set_item("xla_executions", o.xla_executions)?;
    let loops = PyList::empty(py);
    for l in &o.loops {
        let x = PyDict::new(py);
        x.set_item("func", &l.func)?;
        x.set_item("kind", l.kind)?;
        x.set_item("body", l.body.0)?;
        x.set_item("tier", l.tier.as_str())?;
        x.set_item("entries", l.stats.entries)?;
        x.set_item("iterations", l.stats.iterations)?;
        x.set_item("offloaded", l.stats.offloaded)?;
        loops.append(x)?;
    }
    d.set_item("loops", loops)?;
    d.set_item("notes", o.notes.clone())?;
    d.set_item("fallbacks", o.fallbacks.iter().map(|f| f.to_string()).collect::<Vec<_>>())?;
    Ok(d)
}

fn type_to_py<'py>(py: Python<'py>, t: &TypeTree, symbols: &[String]) -> PyResult<Bound<'py, PyAny>> {
    let s = support(py)?;
    match t {
        TypeTree::Tensor(x) => {
            let dims: Vec<Bound<'py, PyAny>> = x
                .dims
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => Ok(n.into_pyobject(py)?.into_any()),
                    Dim::Var(v) => {
                        Ok(PyString::new(py, symbols.get(*v as usize).map_or("?", |s| s.as_str())).into_any())
                    }
                })
                .collect::<PyResult<_>>()?;
            s.getattr("TensorType")?.call1((x.dtype.as_str(), PyTuple::new(py, dims)?))
        }
        TypeTree::Tuple(ts) => {
            let items = ts.iter().map(|t| type_to_py(py, t, symbols)).collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any())
        }
    }
}

#[pymethods]
impl Program {
    /// Runs ``main``. Arguments go by position or by parameter name (NumPy
    /// arrays of the parameter's dtype, anything with ``__array__`` or
    /// ``__dlpack__``, Python scalars and nested lists). Returns NumPy arrays
    /// (0-d for scalars), tuples as tuples; with ``stats=True`` a pair
    /// ``(result, stats_dict)``.
    ///
    /// ``tier``: ``"auto"`` (default), ``"interp"``, ``"jit"``, ``"xla"``.
    /// ``max_steps`` (loop iterations), ``max_memory`` (tensor bytes) and
    /// ``timeout`` (seconds) raise ``LimitError`` when exceeded; ``trace``
    /// prints every op to stderr. ``devices=4`` partitions the xla tier's
    /// executables over 4 devices (XLA's SPMD partitioner), on the mesh
    /// ``mesh=(data, model)`` (default ``(devices, 1)``), with the
    /// arguments ``shard={"x": (0, "data")}`` split along an axis over a
    /// mesh axis (the others replicated).
    #[pyo3(signature = (*args, tier = "auto", max_steps = None, max_memory = None, timeout = None, trace = false, stats = false, devices = 1, mesh = None, shard = None, **kwargs))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        tier: &str,
        max_steps: Option<u64>,
        max_memory: Option<usize>,
        timeout: Option<f64>,
        trace: bool,
        stats: bool,
        devices: usize,
        mesh: Option<(usize, usize)>,
        shard: Option<std::collections::HashMap<String, (usize, String)>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let cfg = make_config(tier, max_steps, max_memory, timeout, trace, devices, mesh, shard)?;
        let tensors = self.tensors(py, args, kwargs)?;
        let inner = &self.inner;
        let out = guarded(py, move || inner.run(&tensors, &cfg))?;
        let st = if stats { Some(stats_dict(py, &out)?) } else { None };
        let v = value_to_py(py, out.value)?;
        match st {
            Some(d) => Ok(PyTuple::new(py, [v, d.into_any().unbind()])?.into_any().unbind()),
            None => Ok(v),
        }
    }

    /// Runs ``main`` on the interpreter (the reference) and on ``tiers``
    /// (default: jit, xla, auto), comparing every result with the
    /// interpreter's. Returns a ``loopvm.DiffResult``: a dict from tier name
    /// to ``{"result", "time", "agrees", "error", "mismatch"}``, whose
    /// ``str`` is the table ``loopvm diff`` prints.
    #[pyo3(signature = (*args, tiers = None, **kwargs))]
    fn diff(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        tiers: Option<Vec<String>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let tiers = match tiers {
            None => vec![Tier::Jit, Tier::Xla, Tier::Auto],
            Some(ts) => ts.iter().map(|t| parse_tier(t)).collect::<PyResult<_>>()?,
        };
        let tensors = self.tensors(py, args, kwargs)?;
        let inner = &self.inner;
        let results = guarded(py, move || api::diff::diff(inner, &tensors, &tiers))?;
        let d = support(py)?.getattr("DiffResult")?.call0()?;
        for r in results {
            let e = PyDict::new(py);
            e.set_item("time", r.time.as_secs_f64())?;
            e.set_item("agrees", !r.disagrees() && r.outcome.is_ok())?;
            e.set_item("mismatch", r.mismatch.clone())?;
            e.set_item("reference", r.tier == Tier::Interp)?;
            e.set_item("not_run", r.outcome.is_err() && !r.disagrees())?;
            match r.outcome {
                Ok(v) => {
                    e.set_item("text", v.to_string())?;
                    e.set_item("result", value_to_py(py, v)?)?;
                    e.set_item("error", None::<String>)?;
                }
                Err(err) => {
                    e.set_item("text", None::<String>)?;
                    e.set_item("result", None::<String>)?;
                    e.set_item("error", strip(&err.to_string()).to_string())?;
                }
            }
            d.set_item(r.tier.as_str(), e)?;
        }
        Ok(d.unbind())
    }

    /// The StableHLO module the xla tier compiles for ``main`` (as
    /// ``loopvm emit``): for the declared parameter types, or, given
    /// arguments, specialised to their shapes.
    #[pyo3(signature = (*args, unroll = false, **kwargs))]
    fn emit(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        unroll: bool,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        use loopvm_jit::hlo;
        let given = !args.is_empty() || kwargs.is_some_and(|k| !k.is_empty());
        let tensors = if given { Some(self.tensors(py, args, kwargs)?) } else { None };
        let f = self.main.ok_or_else(|| PyValueError::new_err("the program has no `main` function"))?;
        let m = self.inner.module();
        guarded(py, move || {
            let opts = hlo::EmitOptions { unroll_all: unroll, ..Default::default() };
            let text = match &tensors {
                None => hlo::param_types(m, f).and_then(|types| hlo::emit_function(m, f, &types, &opts)),
                Some(ts) => loopvm_jit::xla::tier::emit_for(m, f, ts, &opts),
            };
            text.map_err(|e| api::Error::new(ErrorKind::Tier(format!("cannot lower to StableHLO: {e}"))))
        })
    }

    /// The readable bytecode (as ``loopvm dis``), loops as nested blocks.
    fn dis(&self) -> String {
        self.inner.disassemble()
    }

    /// The serialised bytecode (the contents of a ``.lbc`` file).
    fn to_bytecode<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, &self.inner.to_bytecode())
    }

    /// ``main``'s signature: ``.params`` (name and type each; a type is a
    /// ``TensorType`` with ``dtype`` and ``shape``, shape variables by name,
    /// or a tuple of types) and ``.result``; ``str`` is the source form.
    #[getter]
    fn signature<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let f = self.main_func()?;
        let symbols = &self.inner.module().symbols;
        let s = support(py)?;
        let params = f
            .params
            .iter()
            .map(|p| s.getattr("Param")?.call1((p.name.as_str(), type_to_py(py, &p.ty, symbols)?)))
            .collect::<PyResult<Vec<_>>>()?;
        s.getattr("Signature")?.call1((f.name.as_str(), PyTuple::new(py, params)?, type_to_py(py, &f.result, symbols)?))
    }

    /// The names of the program's functions.
    #[getter]
    fn functions(&self) -> Vec<String> {
        self.inner.function_names().into_iter().map(str::to_string).collect()
    }

    fn __repr__(&self) -> String {
        match self.inner.signature("main") {
            Ok(s) => format!("<loopvm.Program {s}>"),
            Err(_) => "<loopvm.Program without main>".into(),
        }
    }

    /// For ``python -m loopvm``: ``name=value`` argument strings (as the
    /// CLI's ``--arg``) parsed into arrays of ``main``'s parameters, in order.
    fn _cli_args(&self, py: Python<'_>, args: Vec<String>) -> PyResult<Vec<Py<PyAny>>> {
        let f = self.main_func()?;
        let inner = &self.inner;
        let ts = guarded(py, move || api::parse_args(f, &inner.module().symbols, &args))?;
        ts.into_iter().map(|t| tensor_to_py(py, t)).collect()
    }

    /// For ``python -m loopvm run``: runs with ``name=value`` argument
    /// strings as the CLI parses them; returns ``(result, text, json, stats)``.
    #[pyo3(signature = (args, tier = "auto", max_steps = None, max_memory = None, timeout = None, trace = false))]
    #[allow(clippy::too_many_arguments)]
    fn _run_cli(
        &self,
        py: Python<'_>,
        args: Vec<String>,
        tier: &str,
        max_steps: Option<u64>,
        max_memory: Option<usize>,
        timeout: Option<f64>,
        trace: bool,
    ) -> PyResult<(Py<PyAny>, String, String, Py<PyDict>)> {
        let cfg = make_config(tier, max_steps, max_memory, timeout, trace, 1, None, None)?;
        let f = self.main_func()?;
        let inner = &self.inner;
        let out = guarded(py, move || {
            let tensors = api::parse_args(f, &inner.module().symbols, &args)?;
            inner.run(&tensors, &cfg)
        })?;
        let d = stats_dict(py, &out)?.unbind();
        let (text, json) = (out.value.to_string(), out.value.to_json().to_string());
        Ok((value_to_py(py, out.value)?, text, json, d))
    }
}

/// For `python/bench/overhead.py`: the mean seconds per call of the Rust
/// API's `Program::run` (argument tensors already built, result dropped),
/// over `iters` calls, in this same build: the baseline the Python call
/// overhead is measured against.
#[pyfunction]
#[pyo3(signature = (prog, args, iters, tier = "interp"))]
fn _time_rust_run(py: Python<'_>, prog: &Program, args: &Bound<'_, PyTuple>, iters: u64, tier: &str) -> PyResult<f64> {
    let cfg = make_config(tier, None, None, None, false, 1, None, None)?;
    let tensors = prog.tensors(py, args, None)?;
    let inner = &prog.inner;
    guarded(py, move || {
        let t = std::time::Instant::now();
        for _ in 0..iters {
            let out = inner.run(&tensors, &cfg)?;
            std::hint::black_box(out);
        }
        Ok(t.elapsed().as_secs_f64() / iters.max(1) as f64)
    })
}

/// The native half of the `loopvm` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Program>()?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(plugins, m)?)?;
    m.add_function(wrap_pyfunction!(format, m)?)?;
    m.add_function(wrap_pyfunction!(_time_rust_run, m)?)?;
    Ok(())
}
