//! How far the emitter unrolls each loop, per platform, and the XLA flags
//! loopvm passes to a plugin (issue 8).
//!
//! XLA pays per trip of a `stablehlo.while`: on a GPU the condition goes back
//! to the host and every body op is a kernel launch, so a loop whose body is
//! cheap costs about 20 µs per iteration there, while XLA CPU pays a few ns.
//! The emitter therefore repeats the body `k` times per trip of one
//! `stablehlo.while` (partial unrolling, exact: see `unroll.rs`). `k` comes
//! from [`UnrollOptions`]:
//!
//! - forced ([`UnrollOptions::force`], or `LOOPVM_UNROLL=k`): every loop;
//! - on the CPU (and any platform but a GPU): the program's own `unroll:`
//!   attribute (`fori_loop(..., unroll: k)`, `scan(..., unroll: k)`; 1 for
//!   `while_loop`, which has none);
//! - on a GPU ([`Platform::Gpu`]): from the body's size in emitted ops,
//!   [`GPU_OPS_BUDGET`] / ops rounded down to a power of two, at most
//!   [`GPU_MAX_UNROLL`] (a 6-op body gets 32, a 100-op body 2, a body of
//!   more than 128 ops 1), at least the program's own `unroll:`; a body
//!   holding a loop gets the program's own `unroll:` (its inner whiles
//!   would be repeated, not saved).
//!
//! Every choice is clamped to a static trip count (no trip is wasted on a
//! block that never runs in full) and to [`MAX_UNROLL_FACTOR`].

use std::fmt;
use std::path::Path;

/// What a module is compiled for, as far as the unroll policy is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Platform {
    /// XLA CPU: a few ns per while trip; the program's own `unroll:` only.
    #[default]
    Cpu,
    /// A GPU (CUDA, ROCm): every trip syncs with the host.
    Gpu,
    /// Anything else (TPU, unknown): the program's own `unroll:` only.
    Other,
}

impl Platform {
    /// The platform of a PJRT client's platform name (`cpu`, `cuda`,
    /// `rocm`, `tpu`, ...) or of a name a user gives (`gpu`).
    pub fn from_name(name: &str) -> Platform {
        let n = name.trim().to_ascii_lowercase();
        match n.as_str() {
            "cpu" | "host" => Platform::Cpu,
            "cuda" | "rocm" | "gpu" | "sycl" | "cuda12" | "cuda13" => Platform::Gpu,
            _ if n.contains("cuda") || n.contains("rocm") || n.contains("gpu") => Platform::Gpu,
            _ => Platform::Other,
        }
    }

    /// `cpu`, `gpu`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Cpu => "cpu",
            Platform::Gpu => "gpu",
            Platform::Other => "other",
        }
    }

    /// The platform a PJRT plugin file is for, judged by its path (the
    /// wheels' layout, else `cuda` / `rocm` / `gpu` in the file name).
    pub fn of_plugin_path(path: &Path) -> Platform {
        use crate::xla::plugin::PluginKind;
        match PluginKind::of_path(path) {
            Some(PluginKind::Cpu) => Platform::Cpu,
            Some(PluginKind::Cuda12 | PluginKind::Cuda13) => Platform::Gpu,
            Some(PluginKind::Tpu) => Platform::Other,
            None => {
                let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
                if name.contains("cuda") || name.contains("rocm") || name.contains("gpu") {
                    Platform::Gpu
                } else if name.contains("cpu") {
                    Platform::Cpu
                } else {
                    Platform::Other
                }
            }
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest unroll factor the emitter uses (a program's `unroll:` or a forced
/// factor above it is clamped).
pub const MAX_UNROLL_FACTOR: u32 = 1024;
/// The GPU policy's largest factor.
pub const GPU_MAX_UNROLL: u32 = 32;
/// The GPU policy's budget of emitted ops per trip: `k` = budget / body ops.
pub const GPU_OPS_BUDGET: usize = 256;

/// How the emitter picks each loop's unroll factor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnrollOptions {
    /// The platform whose policy applies.
    pub platform: Platform,
    /// Unroll every `fori_loop`, `while_loop` and `scan` by this factor
    /// (still clamped to a static trip count); `None`: the policy.
    pub force: Option<u32>,
}

impl UnrollOptions {
    /// The policy of the platform a PJRT client names (`cpu`, `cuda`, ...),
    /// with `LOOPVM_UNROLL` applied ([`UnrollOptions::with_env`]).
    pub fn for_platform(platform_name: &str) -> UnrollOptions {
        UnrollOptions { platform: Platform::from_name(platform_name), force: None }.with_env()
    }

    /// Every loop unrolled by `k` (`k` = 1: no loop unrolled, whatever the
    /// program says).
    pub fn forced(k: u32) -> UnrollOptions {
        UnrollOptions { platform: Platform::Cpu, force: Some(k.max(1)) }
    }

    /// These options overridden by `LOOPVM_UNROLL` when it is set: a number
    /// forces that factor, a platform name (`cpu`, `gpu`, `cuda`, ...)
    /// selects that platform's policy (so that `loopvm emit` shows what a
    /// GPU would get).
    pub fn with_env(self) -> UnrollOptions {
        match std::env::var("LOOPVM_UNROLL") {
            Ok(v) => self.with_setting(&v),
            Err(_) => self,
        }
    }

    /// [`UnrollOptions::with_env`] for a given value of `LOOPVM_UNROLL`.
    pub fn with_setting(self, v: &str) -> UnrollOptions {
        let v = v.trim();
        if v.is_empty() {
            return self;
        }
        match v.parse::<u32>() {
            Ok(k) => UnrollOptions { force: Some(k.max(1)), ..self },
            Err(_) => UnrollOptions { platform: Platform::from_name(v), force: None },
        }
    }

    /// The unroll factor of one loop.
    ///
    /// `source`: the program's `unroll:` (1 for `while_loop`); `trip`: the
    /// trip count when static; `body_ops`: the body's size in emitted ops
    /// when measured (the GPU policy measures bodies without loops only);
    /// `has_loop`: the body (or the condition) holds a loop.
    pub fn choose(&self, source: u32, trip: Option<u64>, body_ops: Option<usize>, has_loop: bool) -> (u32, UnrollWhy) {
        let (k, why) = match (self.force, self.platform) {
            (Some(k), _) => (k, UnrollWhy::Forced),
            (None, Platform::Gpu) if !has_loop => match body_ops {
                Some(ops) => {
                    let by_size = (GPU_OPS_BUDGET / ops.max(1)).clamp(1, GPU_MAX_UNROLL as usize) as u32;
                    let pow2 = 1u32 << (31 - by_size.leading_zeros());
                    if pow2 > source {
                        (pow2, UnrollWhy::Policy(Platform::Gpu))
                    } else {
                        (source, UnrollWhy::Source)
                    }
                }
                None => (source, UnrollWhy::Source),
            },
            (None, _) => (source, UnrollWhy::Source),
        };
        let mut k = k.clamp(1, MAX_UNROLL_FACTOR);
        if let Some(n) = trip {
            k = k.min(u32::try_from(n).unwrap_or(u32::MAX).max(1));
        }
        (k, why)
    }

    /// `true` when [`UnrollOptions::choose`] needs the body's size.
    pub fn wants_body_size(&self) -> bool {
        self.force.is_none() && self.platform == Platform::Gpu
    }
}

/// Where a loop's unroll factor came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnrollWhy {
    /// [`UnrollOptions::force`].
    Forced,
    /// The program's own `unroll:` (1 when it has none).
    Source,
    /// The platform's policy, from the body's size.
    Policy(Platform),
    /// Rolled whatever the options say: the body prints, and copies side by
    /// side could print out of order.
    Prints,
}

/// The unroll factor chosen for one loop of a lowered module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopUnroll {
    /// `fori_loop`, `while_loop` or `scan`.
    pub kind: &'static str,
    /// Body copies per trip of the main `stablehlo.while` (1: rolled).
    pub unroll: u32,
    /// Where `unroll` came from.
    pub why: UnrollWhy,
    /// The trip count, when static.
    pub trip: Option<u64>,
    /// The body's size in emitted ops, when the policy measured it.
    pub body_ops: Option<usize>,
}

impl LoopUnroll {
    /// The comment the emitter writes before the loop: the display without
    /// the trip count (so that a module's text does not depend on it).
    pub fn comment(&self) -> String {
        let s = self.to_string();
        match s.rfind(", ") {
            Some(i) => format!("// loopvm: {})", &s[..i]),
            None => format!("// loopvm: {s}"),
        }
    }
}

impl fmt::Display for LoopUnroll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} unroll {} (", self.kind, self.unroll)?;
        match self.why {
            UnrollWhy::Forced => f.write_str("forced")?,
            UnrollWhy::Source => f.write_str("program")?,
            UnrollWhy::Policy(p) => write!(f, "{p} policy")?,
            UnrollWhy::Prints => f.write_str("body prints")?,
        }
        if let Some(ops) = self.body_ops {
            write!(f, ", body {ops} ops")?;
        }
        match self.trip {
            Some(n) => write!(f, ", {n} iterations)"),
            None => f.write_str(", dynamic trip count)"),
        }
    }
}

// ------------------------------------------------------------- XLA flags

/// XLA flags loopvm adds for a platform: on a GPU, command buffers (CUDA
/// graphs) for `WHILE` and `CONDITIONAL`, so that a trip of a while (and the
/// `stablehlo.if` guarding each copy of an unrolled `while_loop` body) is one
/// graph launch instead of one launch per op.
///
/// On the CPU, code for at most AVX: XLA's CPU compiler always lets LLVM
/// fuse a multiply into an add (`AllowFPOpFusion = Fast`), and an FMA does
/// not round the product, so `3e38 * 2 - 3e38` gave `3e38` instead of the
/// interpreter's `inf`, and `a * b - a * b` a rounding residue instead of 0.
/// AVX has no FMA instructions (FMA3 came with AVX2), so LLVM keeps `a * b`
/// and `+ c` two IEEE operations, as every other tier computes them. Dots
/// and convolutions run in XLA's precompiled libraries and are unaffected.
///
/// And without XLA's HLO constant folder: it folded
/// `select(row, maximum(max(zeros, axis: 0), transpose(c)), 0)` of constant
/// `i32` operands into the transpose of the right answer (a transpose whose
/// result XLA lays out column-major, read back as row-major; fuzz program
/// 0xb572d82e631d83d0, `regress/folded_transpose_select.lb`). LLVM still
/// folds scalar constants inside each fused kernel.
///
/// And without its while-loop simplifier (`simplify-while-loops`): on a
/// module whose dead code holds a `print` (a side-effecting custom call)
/// inside an `if` in the initial value of a `while` inside a loop, it
/// crashed the process (a segmentation fault in
/// `HloComputation::GetCallersMap`, fuzz seed 1412061414 program 218,
/// `regress/while_simplifier_print.lb`). Loop-invariant code motion and
/// the other loop passes still run.
///
/// And without excess precision (`--xla_allow_excess_precision=false`): XLA
/// computes `bf16` and `f16` elementwise ops in `f32`, and may otherwise
/// drop the rounding between two of them; loopvm rounds after each op on
/// every tier (`docs/semantics.md`, "Half floats").
pub fn default_xla_flags(platform: Platform) -> &'static str {
    match platform {
        Platform::Gpu => "--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL --xla_gpu_graph_min_graph_size=1",
        Platform::Cpu => {
            "--xla_cpu_max_isa=AVX --xla_disable_hlo_passes=constant_folding,simplify-while-loops \
             --xla_allow_excess_precision=false"
        }
        Platform::Other => "",
    }
}

/// The `XLA_FLAGS` value for a plugin of `platform`: the user's own
/// `XLA_FLAGS` (`existing`), then loopvm's defaults for the platform, then
/// `LOOPVM_XLA_FLAGS` (`user`; XLA takes the last value of a flag given
/// twice, so the user's flags win).
pub fn compose_xla_flags(existing: Option<&str>, platform: Platform, user: Option<&str>) -> String {
    let parts = [existing.unwrap_or(""), default_xla_flags(platform), user.unwrap_or("")];
    parts.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Sets `XLA_FLAGS` for the plugin at `path` before it is loaded and
/// initialised (XLA reads the variable once, when a plugin first needs its
/// debug options): [`compose_xla_flags`] of the `XLA_FLAGS` the process
/// started with, the plugin's platform ([`Platform::of_plugin_path`]) and
/// `LOOPVM_XLA_FLAGS`. Returns the value set (`None`: nothing to set).
pub fn prepare_xla_flags(path: &Path) -> Option<String> {
    use std::sync::OnceLock;
    static ORIGINAL: OnceLock<Option<String>> = OnceLock::new();
    let original = ORIGINAL.get_or_init(|| std::env::var("XLA_FLAGS").ok());
    let user = std::env::var("LOOPVM_XLA_FLAGS").ok();
    let flags = compose_xla_flags(original.as_deref(), Platform::of_plugin_path(path), user.as_deref());
    if flags.is_empty() || original.as_deref() == Some(flags.as_str()) {
        return None;
    }
    // Plugins are loaded before any thread of theirs runs; loopvm reads no
    // other variable concurrently.
    std::env::set_var("XLA_FLAGS", &flags);
    Some(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        assert_eq!(Platform::from_name("cpu"), Platform::Cpu);
        assert_eq!(Platform::from_name("cuda"), Platform::Gpu);
        assert_eq!(Platform::from_name("ROCM"), Platform::Gpu);
        assert_eq!(Platform::from_name("tpu"), Platform::Other);
        let p = Path::new("/x/jax_plugins/xla_cuda13/xla_cuda_plugin.so");
        assert_eq!(Platform::of_plugin_path(p), Platform::Gpu);
        let p = Path::new("/x/xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so");
        assert_eq!(Platform::of_plugin_path(p), Platform::Cpu);
    }

    #[test]
    fn policy() {
        let cpu = UnrollOptions::default();
        assert_eq!(cpu.choose(1, None, None, false).0, 1);
        assert_eq!(cpu.choose(4, None, None, false), (4, UnrollWhy::Source));
        assert_eq!(cpu.choose(4, Some(3), None, false).0, 3);
        assert_eq!(cpu.choose(4, Some(0), None, false).0, 1);
        let gpu = UnrollOptions { platform: Platform::Gpu, force: None };
        assert!(gpu.wants_body_size() && !cpu.wants_body_size());
        assert_eq!(gpu.choose(1, None, Some(6), false), (32, UnrollWhy::Policy(Platform::Gpu)));
        assert_eq!(gpu.choose(1, Some(10_000), Some(20), false).0, 8);
        assert_eq!(gpu.choose(1, None, Some(100), false).0, 2);
        assert_eq!(gpu.choose(1, None, Some(500), false).0, 1);
        assert_eq!(gpu.choose(1, Some(5), Some(2), false).0, 5);
        assert_eq!(gpu.choose(1, None, Some(2), true).0, 1);
        assert_eq!(gpu.choose(64, None, Some(2), false), (64, UnrollWhy::Source));
        let forced = UnrollOptions::forced(8);
        assert_eq!(forced.choose(1, None, None, true), (8, UnrollWhy::Forced));
        assert_eq!(forced.choose(1, Some(3), None, false).0, 3);
        assert_eq!(UnrollOptions::forced(1 << 30).choose(1, None, None, false).0, MAX_UNROLL_FACTOR);
        assert_eq!(cpu.with_setting("8").force, Some(8));
        assert_eq!(cpu.with_setting("cuda").platform, Platform::Gpu);
        assert_eq!(cpu.with_setting(" "), cpu);
    }

    #[test]
    fn flags() {
        assert_eq!(compose_xla_flags(None, Platform::Cpu, None), default_xla_flags(Platform::Cpu));
        assert_eq!(
            compose_xla_flags(Some("--a=1"), Platform::Cpu, Some(" --b ")),
            format!("--a=1 {} --b", default_xla_flags(Platform::Cpu))
        );
        assert_eq!(compose_xla_flags(None, Platform::Other, None), "");
        let g = compose_xla_flags(None, Platform::Gpu, Some("--xla_gpu_graph_min_graph_size=4"));
        assert!(g.starts_with("--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL"), "{g}");
        assert!(g.ends_with("--xla_gpu_graph_min_graph_size=4"), "{g}");
    }

    #[test]
    fn display() {
        let u = LoopUnroll {
            kind: "scan",
            unroll: 16,
            why: UnrollWhy::Policy(Platform::Gpu),
            trip: Some(1000),
            body_ops: Some(12),
        };
        assert_eq!(u.to_string(), "scan unroll 16 (gpu policy, body 12 ops, 1000 iterations)");
        assert_eq!(u.comment(), "// loopvm: scan unroll 16 (gpu policy, body 12 ops)");
    }
}
