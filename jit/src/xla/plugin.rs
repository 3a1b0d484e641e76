//! Finding and installing PJRT plugins.
//!
//! Where loopvm looks, in order:
//!
//! 1. `LOOPVM_PJRT_PLUGIN=/path/to/plugin.so`, when set (and not empty);
//! 2. loopvm's cache folder: `<cache>/plugins/<kind>/<file>`, where `<cache>`
//!    is `$LOOPVM_CACHE_DIR`, else `$XDG_CACHE_HOME/loopvm`, else
//!    `~/.cache/loopvm`, and plugins are pip-installed there by [`install`];
//! 3. Python's site-packages folders (asked from `python3`, or from
//!    `$LOOPVM_PYTHON`), for the files the plugin wheels install:
//!    `xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so` (`xla-cpu-pjrt`),
//!    `jax_plugins/xla_cuda12/xla_cuda_plugin.so` (`jax-cuda12-pjrt`),
//!    `jax_plugins/xla_cuda13/xla_cuda_plugin.so` (`jax-cuda13-pjrt`) and
//!    `libtpu/libtpu.so` (`libtpu`).
//!
//! [`install`] runs `python3 -m pip install --target <tmp> <wheel>` under an
//! exclusive lock on `<cache>/plugins/.lock` and renames the result into
//! place, so several processes or threads may install at once: one installs,
//! the others wait and then find it.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::OnceLock;

use super::error::HOW_TO_GET_A_PLUGIN;
use super::pjrt::{ApiVersion, Client, DeviceInfo, Plugin};
use super::{Result, XlaError};

/// The environment variable naming a plugin file, which overrides discovery.
pub const PLUGIN_ENV: &str = "LOOPVM_PJRT_PLUGIN";
/// The environment variable naming loopvm's cache folder.
pub const CACHE_ENV: &str = "LOOPVM_CACHE_DIR";
/// The environment variable naming the Python interpreter used to find
/// site-packages and to run pip (default `python3`).
pub const PYTHON_ENV: &str = "LOOPVM_PYTHON";

/// A kind of PJRT plugin loopvm knows how to find and install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// OpenXLA's CPU plugin, wheel `xla-cpu-pjrt`.
    Cpu,
    /// The CUDA 12 plugin, wheel `jax-cuda12-pjrt`.
    Cuda12,
    /// The CUDA 13 plugin, wheel `jax-cuda13-pjrt`.
    Cuda13,
    /// The TPU plugin, wheel `libtpu`.
    Tpu,
}

impl PluginKind {
    /// Every kind, in the order [`find`] prefers them (CPU first: it works
    /// on every machine).
    pub const ALL: [PluginKind; 4] = [PluginKind::Cpu, PluginKind::Cuda13, PluginKind::Cuda12, PluginKind::Tpu];

    /// The name used on the command line and in the cache folder: `cpu`,
    /// `cuda12`, `cuda13` or `tpu`.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Cpu => "cpu",
            PluginKind::Cuda12 => "cuda12",
            PluginKind::Cuda13 => "cuda13",
            PluginKind::Tpu => "tpu",
        }
    }

    /// The pip requirement that provides the plugin.
    pub fn wheel(self) -> &'static str {
        match self {
            PluginKind::Cpu => "xla-cpu-pjrt",
            PluginKind::Cuda12 => "jax-cuda12-pjrt",
            PluginKind::Cuda13 => "jax-cuda13-pjrt",
            PluginKind::Tpu => "libtpu",
        }
    }

    /// Where the wheel puts the plugin, relative to the folder it is
    /// installed into (site-packages or a `pip --target` folder).
    pub fn relative_path(self) -> &'static str {
        match self {
            PluginKind::Cpu => "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so",
            PluginKind::Cuda12 => "jax_plugins/xla_cuda12/xla_cuda_plugin.so",
            PluginKind::Cuda13 => "jax_plugins/xla_cuda13/xla_cuda_plugin.so",
            PluginKind::Tpu => "libtpu/libtpu.so",
        }
    }

    /// The kind whose wheel installs a file at `path`, judged by its path.
    pub fn of_path(path: &Path) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|k| path.ends_with(k.relative_path()))
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PluginKind {
    type Err = XlaError;

    fn from_str(s: &str) -> Result<PluginKind> {
        PluginKind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            XlaError::InvalidArgument(format!("unknown plugin kind `{s}` (expected cpu, cuda12, cuda13 or tpu)"))
        })
    }
}

/// Where a plugin was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Named by `LOOPVM_PJRT_PLUGIN`.
    Env,
    /// Installed in loopvm's cache folder.
    Cache,
    /// Installed in this Python site-packages folder.
    SitePackages(PathBuf),
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Env => write!(f, "${PLUGIN_ENV}"),
            PluginSource::Cache => f.write_str("loopvm cache"),
            PluginSource::SitePackages(dir) => write!(f, "site-packages {}", dir.display()),
        }
    }
}

/// A plugin file found on this machine (not loaded yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPlugin {
    /// The plugin file.
    pub path: PathBuf,
    /// Its kind, when known from where it was found.
    pub kind: Option<PluginKind>,
    /// Where it was found.
    pub source: PluginSource,
}

/// loopvm's cache folder: `$LOOPVM_CACHE_DIR`, else `$XDG_CACHE_HOME/loopvm`,
/// else `$HOME/.cache/loopvm`; `None` when none of these is set.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var(CACHE_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("loopvm")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("loopvm")))
}

/// The folder a plugin of `kind` is installed into under `cache`:
/// `<cache>/plugins/<kind>`.
pub fn install_dir(cache: &Path, kind: PluginKind) -> PathBuf {
    cache.join("plugins").join(kind.name())
}

/// The plugin file of `kind` once installed under `cache`.
pub fn installed_path(cache: &Path, kind: PluginKind) -> PathBuf {
    install_dir(cache, kind).join(kind.relative_path())
}

fn python() -> String {
    std::env::var(PYTHON_ENV).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_string())
}

/// Python's site-packages folders (global and user ones, then the rest of
/// `sys.path`), as the Python interpreter reports them; empty when there is
/// no Python. Asked once per process.
pub fn site_packages() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        const SCRIPT: &str = "import site, sys\n\
             dirs = list(getattr(site, 'getsitepackages', lambda: [])())\n\
             user = getattr(site, 'getusersitepackages', lambda: None)()\n\
             dirs += [user] if isinstance(user, str) else []\n\
             dirs += [p for p in sys.path if p]\n\
             print('\\n'.join(dirs))\n";
        let Ok(out) = Command::new(python()).args(["-c", SCRIPT]).output() else {
            return Vec::new();
        };
        if !out.status.success() {
            return Vec::new();
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let dir = PathBuf::from(line.trim());
            if !line.trim().is_empty() && dir.is_dir() && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    })
}

/// The plugin named by `LOOPVM_PJRT_PLUGIN`, if the variable is set and not
/// empty (whether or not the file exists).
pub fn from_env() -> Option<FoundPlugin> {
    let path = PathBuf::from(std::env::var_os(PLUGIN_ENV).filter(|v| !v.is_empty())?);
    Some(FoundPlugin { kind: PluginKind::of_path(&path), path, source: PluginSource::Env })
}

/// A plugin of `kind` in the cache folder or in site-packages (the cache
/// first), ignoring `LOOPVM_PJRT_PLUGIN`.
pub fn find_kind(kind: PluginKind) -> Option<FoundPlugin> {
    if let Some(cache) = cache_dir() {
        let path = installed_path(&cache, kind);
        if path.is_file() {
            return Some(FoundPlugin { path, kind: Some(kind), source: PluginSource::Cache });
        }
    }
    site_packages().iter().find_map(|dir| {
        let path = dir.join(kind.relative_path());
        path.is_file().then(|| FoundPlugin { path, kind: Some(kind), source: PluginSource::SitePackages(dir.clone()) })
    })
}

/// Every plugin found: `LOOPVM_PJRT_PLUGIN` (if set and the file exists),
/// then, for each kind, the cache folder's and every site-packages folder's,
/// without duplicates.
pub fn discover() -> Vec<FoundPlugin> {
    let mut found: Vec<FoundPlugin> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut push = |p: FoundPlugin| {
        let key = p.path.canonicalize().unwrap_or_else(|_| p.path.clone());
        if p.path.is_file() && !seen.contains(&key) {
            seen.push(key);
            found.push(p);
        }
    };
    if let Some(p) = from_env() {
        push(p);
    }
    let cache = cache_dir();
    for kind in PluginKind::ALL {
        if let Some(cache) = &cache {
            push(FoundPlugin { path: installed_path(cache, kind), kind: Some(kind), source: PluginSource::Cache });
        }
        for dir in site_packages() {
            push(FoundPlugin {
                path: dir.join(kind.relative_path()),
                kind: Some(kind),
                source: PluginSource::SitePackages(dir.clone()),
            });
        }
    }
    found
}

/// Where [`find`] looked, for error messages.
fn searched() -> String {
    let mut places = vec![format!("${PLUGIN_ENV} is not set")];
    match cache_dir() {
        Some(cache) => places.push(format!("nothing in {}", cache.join("plugins").display())),
        None => places.push("no cache folder (HOME is not set)".into()),
    }
    let sites = site_packages();
    if sites.is_empty() {
        places.push(format!("no Python site-packages (`{}` not found)", python()));
    } else {
        places.push(format!("nothing in {} Python site-packages folders", sites.len()));
    }
    places.join(", ")
}

/// The plugin to use when none is asked for: the one `LOOPVM_PJRT_PLUGIN`
/// names, else the first plugin found in [`PluginKind::ALL`] order (CPU
/// first; set `LOOPVM_PJRT_PLUGIN` or use [`find_kind`] for an accelerator).
/// Installs nothing.
pub fn find() -> Result<FoundPlugin> {
    if let Some(p) = from_env() {
        return check_env_plugin(p);
    }
    PluginKind::ALL.into_iter().find_map(find_kind).ok_or_else(|| XlaError::PluginNotFound { searched: searched() })
}

fn check_env_plugin(p: FoundPlugin) -> Result<FoundPlugin> {
    if p.path.is_file() {
        Ok(p)
    } else {
        Err(XlaError::PluginLoad { reason: format!("${PLUGIN_ENV} names it, but there is no such file"), path: p.path })
    }
}

/// The CPU plugin's path: `LOOPVM_PJRT_PLUGIN` if set, else the CPU plugin
/// in the cache folder or site-packages, else the CPU plugin freshly
/// installed into the cache folder by [`install`] (after a one-line notice on
/// stderr).
pub fn find_or_install_cpu() -> Result<PathBuf> {
    if let Some(p) = from_env() {
        return check_env_plugin(p).map(|p| p.path);
    }
    match find_kind(PluginKind::Cpu) {
        Some(p) => Ok(p.path),
        None => install(PluginKind::Cpu),
    }
}

/// Installs the plugin of `kind` into loopvm's cache folder with pip (from
/// its wheel, [`PluginKind::wheel`]) unless it is there already, and returns
/// the plugin file. See [`install_into`].
pub fn install(kind: PluginKind) -> Result<PathBuf> {
    let cache = cache_dir().ok_or_else(|| XlaError::Install {
        kind: kind.to_string(),
        reason: format!("no cache folder: set {CACHE_ENV} or HOME"),
    })?;
    install_into(&cache, kind, kind.wheel())
}

/// Installs `requirement` (a pip requirement or a wheel file providing the
/// plugin of `kind`) into `<cache>/plugins/<kind>` unless the plugin file is
/// there already, and returns the plugin file.
///
/// Safe to call from several threads or processes at once: the install
/// happens under an exclusive lock on `<cache>/plugins/.lock`, into a
/// temporary folder that is renamed into place when complete, and whoever
/// gets the lock second finds the plugin installed and returns it.
pub fn install_into(cache: &Path, kind: PluginKind, requirement: &str) -> Result<PathBuf> {
    let plugin = installed_path(cache, kind);
    if plugin.is_file() {
        return Ok(plugin);
    }
    let plugins = cache.join("plugins");
    fs::create_dir_all(&plugins).map_err(|e| XlaError::io(format!("creating {}", plugins.display()), e))?;
    let _lock = lock::Exclusive::acquire(&plugins.join(".lock"))?;
    if plugin.is_file() {
        return Ok(plugin);
    }
    // Holding the lock, no install is in progress: any temporary folder is a
    // leftover of an interrupted one.
    if let Ok(entries) = fs::read_dir(&plugins) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let dest = install_dir(cache, kind);
    eprintln!("loopvm: installing the PJRT {kind} plugin (pip install {requirement}) into {}", dest.display());
    let tmp = plugins.join(format!(".tmp-{kind}-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(tmp.clone());
    fs::create_dir_all(&tmp).map_err(|e| XlaError::io(format!("creating {}", tmp.display()), e))?;
    let python = python();
    let out = Command::new(&python)
        .args(["-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--quiet"])
        .arg("--target")
        .arg(&tmp)
        .arg(requirement)
        .output()
        .map_err(|e| XlaError::Install {
            kind: kind.to_string(),
            reason: format!("cannot run `{python} -m pip` ({e}); install Python 3 with pip, or set {PLUGIN_ENV}"),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(XlaError::Install {
            kind: kind.to_string(),
            reason: format!("`{python} -m pip install {requirement}` failed ({}): {}", out.status, tail.join("\n")),
        });
    }
    if !tmp.join(kind.relative_path()).is_file() {
        return Err(XlaError::Install {
            kind: kind.to_string(),
            reason: format!("pip installed {requirement}, but it has no {}", kind.relative_path()),
        });
    }
    if dest.exists() {
        // An incomplete folder (no plugin file): replace it.
        fs::remove_dir_all(&dest).map_err(|e| XlaError::io(format!("removing {}", dest.display()), e))?;
    }
    fs::rename(&tmp, &dest).map_err(|e| XlaError::io(format!("moving {} to {}", tmp.display(), dest.display()), e))?;
    Ok(plugin)
}

/// Removes a folder (if it still exists) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// What `loopvm plugin list` shows about a plugin.
#[derive(Debug)]
pub struct PluginReport {
    /// The plugin file and where it was found.
    pub found: FoundPlugin,
    /// Whether it works, and what it offers.
    pub status: PluginStatus,
}

/// The state of a found plugin.
#[derive(Debug)]
pub enum PluginStatus {
    /// It loads and makes a client.
    Ok(PluginDetails),
    /// It does not load, or makes no client.
    Broken(XlaError),
    /// Not loaded: an earlier plugin of the same kind (this path) takes
    /// precedence, and loading two copies of XLA into one process is avoided.
    Shadowed(PathBuf),
}

/// A working plugin's platform, version and devices.
#[derive(Debug, Clone)]
pub struct PluginDetails {
    /// The PJRT C API version it implements.
    pub api_version: ApiVersion,
    /// The platform name (`cpu`, `cuda`, `tpu`, ...).
    pub platform_name: String,
    /// Platform-specific version text.
    pub platform_version: String,
    /// Its addressable devices.
    pub devices: Vec<DeviceInfo>,
    /// The plugin's attributes (`xla_version`, `stablehlo_current_version`,
    /// ...).
    pub attributes: Vec<(String, String)>,
}

/// Loads `path` as a plugin, creates a client and reports what it offers.
pub fn inspect(path: &Path) -> Result<PluginDetails> {
    let plugin = Plugin::load(path)?;
    let client = Client::new(plugin)?;
    Ok(PluginDetails {
        api_version: plugin.api_version(),
        platform_name: client.platform_name().to_string(),
        platform_version: client.platform_version().unwrap_or_default(),
        devices: client.devices()?,
        attributes: plugin.attributes().unwrap_or_default(),
    })
}

/// Every plugin [`discover`] finds, in its order; the first of each kind is
/// loaded and asked for its platform, API version and devices (a broken one
/// is reported, not fatal), later ones of the same kind are
/// [`PluginStatus::Shadowed`].
pub fn list() -> Vec<PluginReport> {
    let mut first_of_kind: Vec<(PluginKind, PathBuf)> = Vec::new();
    discover()
        .into_iter()
        .map(|found| {
            let earlier = found.kind.and_then(|k| first_of_kind.iter().find(|(e, _)| *e == k));
            let status = match earlier {
                Some((_, path)) => PluginStatus::Shadowed(path.clone()),
                None => {
                    if let Some(kind) = found.kind {
                        first_of_kind.push((kind, found.path.clone()));
                    }
                    match inspect(&found.path) {
                        Ok(details) => PluginStatus::Ok(details),
                        Err(e) => PluginStatus::Broken(e),
                    }
                }
            };
            PluginReport { found, status }
        })
        .collect()
}

/// The message for "no plugin": how to get one.
pub fn how_to_get_a_plugin() -> &'static str {
    HOW_TO_GET_A_PLUGIN
}

/// An exclusive advisory lock on a file (`flock(2)` on Unix), released on
/// drop. Works between processes and between threads (each acquisition opens
/// the file anew, so each has its own open file description).
mod lock {
    use std::fs::{File, OpenOptions};
    use std::path::Path;

    use super::super::{Result, XlaError};

    pub(super) struct Exclusive {
        _file: File,
    }

    #[cfg(unix)]
    mod sys {
        use std::ffi::c_int;

        pub const LOCK_EX: c_int = 2;

        extern "C" {
            pub fn flock(fd: c_int, operation: c_int) -> c_int;
        }
    }

    impl Exclusive {
        /// Blocks until the lock on `path` (created if missing) is held.
        pub(super) fn acquire(path: &Path) -> Result<Exclusive> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| XlaError::io(format!("opening {}", path.display()), e))?;
            #[cfg(unix)]
            {
                use std::os::fd::AsRawFd;
                loop {
                    // SAFETY: `flock` on a file descriptor we own and keep
                    // open; it only changes the lock state of that file.
                    let rc = unsafe { sys::flock(file.as_raw_fd(), sys::LOCK_EX) };
                    if rc == 0 {
                        break;
                    }
                    let err = std::io::Error::last_os_error();
                    if err.kind() != std::io::ErrorKind::Interrupted {
                        return Err(XlaError::io(format!("locking {}", path.display()), err));
                    }
                }
            }
            // Closing the file (on drop) releases the lock.
            Ok(Exclusive { _file: file })
        }
    }
}
