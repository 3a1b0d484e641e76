//! Compiled programs and running them.

use crate::error::{Error, ErrorKind};
use crate::value::Value;
use loopvm_runtime::Tensor;
use loopvm_vm::{BlockId, FuncId, Interpreter, LoopStats, Module, RunOptions};
use std::path::Path;
use std::time::Duration;

/// Which tier runs a program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tier {
    /// The best tier available for each loop (today: the interpreter).
    #[default]
    Auto,
    /// The eager bytecode interpreter, op by op.
    Interp,
    /// The interpreter with hot loops promoted to Cranelift native code.
    Jit,
    /// Loops compiled to XLA `While` executables through a PJRT plugin.
    Xla,
}

impl Tier {
    /// Parses `auto`, `interp`, `jit` or `xla`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "auto" => Some(Tier::Auto),
            "interp" => Some(Tier::Interp),
            "jit" => Some(Tier::Jit),
            "xla" => Some(Tier::Xla),
            _ => None,
        }
    }
    /// The tier's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Auto => "auto",
            Tier::Interp => "interp",
            Tier::Jit => "jit",
            Tier::Xla => "xla",
        }
    }
}

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    /// The tier.
    pub tier: Tier,
    /// Trace every op to stderr.
    pub trace: bool,
    /// Stop after this many loop iterations.
    pub max_steps: Option<u64>,
    /// Collect the output of `print` into [`RunOutput::printed`] instead of stdout.
    pub capture_print: bool,
}

/// One loop's counts in a run.
#[derive(Clone, Debug)]
pub struct LoopReport {
    /// The function holding the loop.
    pub func: String,
    /// The loop's body block (its identity within the function).
    pub body: BlockId,
    /// The loop kind (`fori_loop`, `while_loop`, `scan`).
    pub kind: &'static str,
    /// The tier that ran it.
    pub tier: Tier,
    /// Entries and iterations.
    pub stats: LoopStats,
}

/// The result of a run and its statistics.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The function's result.
    pub value: Value,
    /// Every loop that ran.
    pub loops: Vec<LoopReport>,
    /// Instructions executed.
    pub ops: u64,
    /// Loop iterations.
    pub loop_iterations: u64,
    /// Time spent running.
    pub elapsed: Duration,
    /// What `print` wrote, when captured.
    pub printed: String,
}

/// A compiled, verified program. `Send + Sync`: one program can be run from
/// many threads at once; each run has its own interpreter state.
#[derive(Clone, Debug)]
pub struct Program {
    module: Module,
}

impl Program {
    /// Compiles `.lb` source; `file` names it in diagnostics.
    pub fn from_source(src: &str, file: &str) -> Result<Program, Error> {
        let module = loopvm_frontend::compile(src, file).map_err(|e| Error::new(ErrorKind::Compile(e.render(src))))?;
        loopvm_vm::verify(&module)
            .map_err(|e| Error::new(ErrorKind::Bytecode(format!("internal compiler error: {e}"))))?;
        Ok(Program { module })
    }

    /// Loads a serialised module (`.lbc`), rejecting malformed bytecode.
    pub fn from_bytecode(bytes: &[u8]) -> Result<Program, Error> {
        let module = Module::from_bytes(bytes).map_err(|e| Error::new(ErrorKind::Bytecode(e.to_string())))?;
        loopvm_vm::verify(&module).map_err(|e| Error::new(ErrorKind::Bytecode(e.to_string())))?;
        Ok(Program { module })
    }

    /// Loads a `.lb` or `.lbc` file (told apart by the bytecode magic number).
    pub fn from_path(path: &Path) -> Result<Program, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}: {e}", path.display())))?;
        if bytes.starts_with(&loopvm_vm::module::MAGIC) {
            return Program::from_bytecode(&bytes);
        }
        let src = String::from_utf8(bytes)
            .map_err(|_| Error::io(format!("{} is neither UTF-8 source nor loopvm bytecode", path.display())))?;
        Program::from_source(&src, &path.display().to_string())
    }

    /// The serialised module.
    pub fn to_bytecode(&self) -> Vec<u8> {
        self.module.to_bytes()
    }

    /// The bytecode module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The disassembly.
    pub fn disassemble(&self) -> String {
        loopvm_vm::disassemble(&self.module)
    }

    /// The id of `main`, or an error.
    pub fn main(&self) -> Result<FuncId, Error> {
        self.module.main.ok_or_else(|| Error::arg("the program has no `main` function"))
    }

    /// Runs `main` with flattened argument tensors.
    pub fn run(&self, args: &[Tensor], cfg: &RunConfig) -> Result<RunOutput, Error> {
        self.call_id(self.main()?, args, cfg)
    }

    /// Calls the function named `name` with flattened argument tensors.
    pub fn call(&self, name: &str, args: &[Tensor], cfg: &RunConfig) -> Result<RunOutput, Error> {
        let f = self.module.func_by_name(name).ok_or_else(|| Error::arg(format!("no function named `{name}`")))?;
        self.call_id(f, args, cfg)
    }

    fn call_id(&self, f: FuncId, args: &[Tensor], cfg: &RunConfig) -> Result<RunOutput, Error> {
        match cfg.tier {
            Tier::Auto | Tier::Interp => {}
            Tier::Jit => {
                return Err(Error::new(ErrorKind::Tier(
                    "the jit tier (Cranelift) is not built yet; use --tier interp or --tier auto".into(),
                )))
            }
            Tier::Xla => {
                return Err(Error::new(ErrorKind::Tier(
                    "the xla tier (StableHLO through PJRT) is not built yet; use --tier interp or --tier auto".into(),
                )))
            }
        }
        let opts = RunOptions { trace: cfg.trace, max_steps: cfg.max_steps };
        let mut printed = Vec::new();
        let (results, profile, stats) = {
            let mut it = Interpreter::new(&self.module, opts);
            if cfg.capture_print {
                it.set_output(Box::new(&mut printed));
            }
            let r = it.call(f, args);
            (r, it.profile.clone(), it.stats)
        };
        let results = results.map_err(|e| match e {
            loopvm_vm::ExecError::BadArgument(m) => Error::arg(m),
            e => Error::new(ErrorKind::Runtime(e.to_string())),
        })?;
        let func = self.module.func(f);
        let value = Value::from_leaves(&func.result, &mut results.into_iter())
            .ok_or_else(|| Error::new(ErrorKind::Runtime("result count does not match the signature".into())))?;
        let loops = profile
            .entries()
            .into_iter()
            .map(|(fid, body, stats)| LoopReport {
                func: self.module.func(fid).name.clone(),
                body,
                kind: loop_kind(&self.module, fid, body),
                tier: Tier::Interp,
                stats,
            })
            .collect();
        Ok(RunOutput {
            value,
            loops,
            ops: stats.ops,
            loop_iterations: stats.loop_iterations,
            elapsed: stats.elapsed,
            printed: String::from_utf8_lossy(&printed).into_owned(),
        })
    }
}

/// The kind of the loop instruction whose body is `body`.
fn loop_kind(m: &Module, f: FuncId, body: BlockId) -> &'static str {
    use loopvm_vm::Inst;
    for b in &m.func(f).blocks {
        for i in &b.code {
            match i {
                Inst::Fori { body: x, .. } if *x == body => return "fori_loop",
                Inst::While { body: x, .. } if *x == body => return "while_loop",
                Inst::Scan { body: x, .. } if *x == body => return "scan",
                _ => {}
            }
        }
    }
    "loop"
}

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn program_is_send_sync() {
        assert_send_sync::<super::Program>();
    }
}
