//! The persistent executable cache: executables serialised by the plugin
//! (`PJRT_Executable_Serialize`) kept in files under loopvm's cache folder
//! (`<cache>/executables`, [`default_dir`]), loaded in a later process with
//! `PJRT_Executable_DeserializeAndLoad` instead of compiling again.
//!
//! An entry is keyed, like JAX's persistent compilation cache, by a SHA-256
//! of the module text, the compile options, the plugin's identity and
//! version, the device kind and the XLA flags ([`DiskCache::key`]). Its file
//! holds a header (magic, format version, the key, a hash of the plugin
//! identity, the payload's length and SHA-256, a label for `loopvm cache
//! list`) and the payload. A file that is short, corrupted, of another
//! format or of another plugin is reported as [`LoadError`] and the caller
//! compiles again; files are written to a temporary name and renamed into
//! place, so a reader never sees half an entry and several processes may
//! fill the same entry at once. The folder is kept under a size cap
//! (default 1 GiB, `LOOPVM_CACHE_MAX_BYTES`) by removing the entries least
//! recently used (an entry's modification time is set when it is loaded).
//!
//! Keeping the cap does not walk the folder at each store: a process walks
//! it (sizes and times only) at its first store into the folder, then adds
//! what it writes to a running total, and walks it again only when that
//! total passes the cap, removing entries down to nine tenths of the cap
//! ([`EVICT_TO`]), so a full folder of tens of thousands of entries costs a
//! walk every few thousand stores, not at every one. Entries other
//! processes write meanwhile are counted at this process's next walk.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// The default size cap of the executable folder, in bytes.
pub const DEFAULT_CAP: u64 = 1 << 30;
/// Overrides [`DEFAULT_CAP`] (bytes; suffixes K, M, G).
pub const CAP_ENV: &str = "LOOPVM_CACHE_MAX_BYTES";
/// The entry files' extension.
pub const EXTENSION: &str = "lbx";

const MAGIC: &[u8; 8] = b"LOOPVMX\0";
const FORMAT_VERSION: u32 = 1;
/// magic, version, key, identity, payload length, payload hash, label length.
const HEADER_LEN: usize = 8 + 4 + 32 + 32 + 8 + 32 + 4;
const MAX_LABEL: usize = 4096;
/// A store that finds the folder over its cap evicts down to this fraction
/// of the cap (numerator, denominator), so the next walk is far away.
pub const EVICT_TO: (u64, u64) = (9, 10);

/// The bytes this process believes each cache folder holds: set by a walk,
/// raised by each store ([`DiskCache::store`]).
static FOLDER_BYTES: Mutex<Option<HashMap<PathBuf, u64>>> = Mutex::new(None);

/// `<loopvm cache folder>/executables` ([`super::plugin::cache_dir`]).
pub fn default_dir() -> Option<PathBuf> {
    super::plugin::cache_dir().map(|d| d.join("executables"))
}

/// The cap from [`CAP_ENV`], else [`DEFAULT_CAP`].
pub fn cap_from_env() -> u64 {
    std::env::var(CAP_ENV).ok().and_then(|v| parse_size(&v)).unwrap_or(DEFAULT_CAP)
}

fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mul) = match v.char_indices().last()? {
        (i, 'K' | 'k') => (&v[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&v[..i], 1 << 20),
        (i, 'G' | 'g') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mul)
}

/// An entry's key: the SHA-256 of what identifies the compiled code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The hash of everything.
    pub key: [u8; 32],
    /// The hash of the plugin identity alone (kept in the entry's header).
    pub identity: [u8; 32],
}

impl CacheKey {
    /// The key in hexadecimal (the entry's file name).
    pub fn hex(&self) -> String {
        hex(&self.key)
    }
}

/// Why an entry could not be used (the caller compiles again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file is shorter than its header says, or than a header.
    Truncated,
    /// Wrong magic number, format version, key or payload checksum.
    Corrupted(&'static str),
    /// Written by another plugin (or another build of it).
    OtherPlugin,
    /// The file could not be read.
    Io(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Truncated => write!(f, "the entry is truncated"),
            LoadError::Corrupted(what) => write!(f, "the entry is corrupted ({what})"),
            LoadError::OtherPlugin => write!(f, "the entry was written by another plugin version"),
            LoadError::Io(e) => write!(f, "the entry cannot be read ({e})"),
        }
    }
}

/// One entry, for `loopvm cache list`.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written or loaded.
    pub last_used: SystemTime,
    /// The region it holds (as `--stats` names it), when the header is readable.
    pub label: Option<String>,
}

/// The persistent executable cache in one folder.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
    cap: u64,
}

impl DiskCache {
    /// The cache in `dir` (created when the first entry is written), capped
    /// at `cap` bytes.
    pub fn new(dir: impl Into<PathBuf>, cap: u64) -> DiskCache {
        DiskCache { dir: dir.into(), cap }
    }

    /// The cache in [`default_dir`] with the cap of [`cap_from_env`].
    pub fn from_env() -> Option<DiskCache> {
        default_dir().map(|d| DiskCache::new(d, cap_from_env()))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// The key of `module` compiled with `compile_options` by the plugin
    /// `identity` ([`super::Client::cache_identity`]: plugin, version,
    /// platform, device kind) under `xla_flags`.
    pub fn key(module: &str, compile_options: &[u8], identity: &str, xla_flags: &str) -> CacheKey {
        let identity_hash = sha256(identity.as_bytes());
        let mut all = Vec::with_capacity(module.len() + identity.len() + xla_flags.len() + 128);
        for part in [
            b"loopvm-executable-1".as_slice(),
            module.as_bytes(),
            compile_options,
            identity.as_bytes(),
            xla_flags.as_bytes(),
        ] {
            all.extend_from_slice(&(part.len() as u64).to_le_bytes());
            all.extend_from_slice(part);
        }
        CacheKey { key: sha256(&all), identity: identity_hash }
    }

    /// The file of `key`.
    pub fn path_of(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.{EXTENSION}", key.hex()))
    }

    /// The payload stored under `key`: `Ok(None)` when there is none, an
    /// error when the entry is unusable. A loaded entry becomes the most
    /// recently used.
    pub fn load(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, LoadError> {
        let path = self.path_of(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            // No entry, or no folder (a path through a file: the store says so).
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
            Err(e) => return Err(LoadError::Io(e.to_string())),
        };
        let payload = decode(&bytes, key)?;
        // Least recently used: a hit refreshes the time (best effort: a
        // read-only folder keeps the old one).
        if let Ok(f) = fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        Ok(Some(payload.to_vec()))
    }

    /// Stores `payload` under `key` (temporary file, then rename), then
    /// evicts the least recently used entries above the cap.
    pub fn store(&self, key: &CacheKey, label: &str, payload: &[u8]) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let bytes = encode(key, label, payload);
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            key.hex(),
            std::process::id(),
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ));
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.path_of(key))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        self.keep_cap(bytes.len() as u64);
        Ok(())
    }

    /// After a store of `added` bytes: walks the folder when this process
    /// has not yet, or when its running total passes the cap, and evicts
    /// down to [`EVICT_TO`] of the cap when it is over.
    fn keep_cap(&self, added: u64) {
        let mut guard = FOLDER_BYTES.lock().unwrap_or_else(|e| e.into_inner());
        let totals = guard.get_or_insert_with(HashMap::new);
        let known = totals.get(&self.dir).map(|t| t.saturating_add(added));
        let total = match known {
            Some(t) if t <= self.cap => t,
            _ => {
                let walked = self.walk(false).map(|e| e.iter().map(|e| e.size).sum()).unwrap_or(0u64);
                if walked > self.cap {
                    let target = self.cap / EVICT_TO.1 * EVICT_TO.0;
                    self.evict_entries(target).1
                } else {
                    walked
                }
            }
        };
        totals.insert(self.dir.clone(), total);
    }

    /// Every entry, least recently used first.
    pub fn list(&self) -> io::Result<Vec<EntryInfo>> {
        self.walk(true)
    }

    /// Every entry, least recently used first; their labels only when
    /// `labels` (reading one opens the file).
    fn walk(&self, labels: bool) -> io::Result<Vec<EntryInfo>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some(EXTENSION) {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            let label = if labels { read_label(&path) } else { None };
            out.push(EntryInfo {
                path,
                size: md.len(),
                last_used: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                label,
            });
        }
        out.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.path.cmp(&b.path)));
        Ok(out)
    }

    /// Removes every entry (and leftover temporary files); returns how many
    /// entries and bytes were removed.
    pub fn clear(&self) -> io::Result<(usize, u64)> {
        if let Some(totals) = FOLDER_BYTES.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            totals.remove(&self.dir);
        }
        let (mut n, mut bytes) = (0, 0);
        for e in self.list()? {
            if fs::remove_file(&e.path).is_ok() {
                n += 1;
                bytes += e.size;
            }
        }
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok((n, bytes))
    }

    /// Removes the least recently used entries until the folder holds at
    /// most `cap` bytes; returns how many were removed.
    pub fn evict(&self, cap: u64) -> usize {
        self.evict_entries(cap).0
    }

    /// [`DiskCache::evict`], also returning the bytes left.
    fn evict_entries(&self, cap: u64) -> (usize, u64) {
        let Ok(entries) = self.walk(false) else { return (0, 0) };
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut removed = 0;
        for e in entries {
            if total <= cap {
                break;
            }
            // Another process may have removed it already.
            let _ = fs::remove_file(&e.path);
            total = total.saturating_sub(e.size);
            removed += 1;
        }
        (removed, total)
    }
}

fn encode(key: &CacheKey, label: &str, payload: &[u8]) -> Vec<u8> {
    let label = &label.as_bytes()[..label.len().min(MAX_LABEL)];
    let mut b = Vec::with_capacity(HEADER_LEN + label.len() + payload.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&key.key);
    b.extend_from_slice(&key.identity);
    b.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut summed = label.to_vec();
    summed.extend_from_slice(payload);
    b.extend_from_slice(&sha256(&summed));
    b.extend_from_slice(&(label.len() as u32).to_le_bytes());
    b.extend_from_slice(label);
    b.extend_from_slice(payload);
    b
}

/// The header's fields: (version, key, identity, payload length, payload
/// hash of label and payload, label length), after checking the magic number.
type Header<'a> = (u32, &'a [u8], &'a [u8], u64, &'a [u8], usize);

fn header(bytes: &[u8]) -> Result<Header<'_>, LoadError> {
    if bytes.len() < HEADER_LEN {
        return Err(if MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
            LoadError::Truncated
        } else {
            LoadError::Corrupted("not a loopvm executable entry")
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(LoadError::Corrupted("not a loopvm executable entry"));
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
    Ok((u32_at(8), &bytes[12..44], &bytes[44..76], u64_at(76), &bytes[84..116], u32_at(116) as usize))
}

fn decode<'a>(bytes: &'a [u8], key: &CacheKey) -> Result<&'a [u8], LoadError> {
    let (version, k, identity, len, sum, label_len) = header(bytes)?;
    if version != FORMAT_VERSION {
        return Err(LoadError::Corrupted("another entry format"));
    }
    if identity != key.identity {
        return Err(LoadError::OtherPlugin);
    }
    if k != key.key {
        return Err(LoadError::Corrupted("the key does not match"));
    }
    if label_len > MAX_LABEL {
        return Err(LoadError::Corrupted("bad label length"));
    }
    let start = HEADER_LEN + label_len;
    let rest = bytes.len().saturating_sub(start) as u64;
    if rest < len {
        return Err(LoadError::Truncated);
    }
    if rest > len {
        return Err(LoadError::Corrupted("trailing bytes"));
    }
    let payload = &bytes[start..];
    // The checksum covers the label and the payload.
    if sha256(&bytes[HEADER_LEN..]) != sum {
        return Err(LoadError::Corrupted("checksum mismatch"));
    }
    Ok(payload)
}

fn read_label(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = fs::File::open(path).ok()?;
    let mut head = vec![0u8; HEADER_LEN + MAX_LABEL];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let head = &head[..n];
    let (_, _, _, _, _, label_len) = header(head).ok()?;
    let label = head.get(HEADER_LEN..HEADER_LEN + label_len)?;
    Some(String::from_utf8_lossy(label).into_owned())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of `data` (the `sha2` crate).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answers() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("x"), None);
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("loopvm-disk-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_faults() {
        let c = DiskCache::new(tmpdir("rt"), DEFAULT_CAP);
        let k = DiskCache::key("module", b"opts", "plugin a", "");
        assert_eq!(c.load(&k), Ok(None));
        c.store(&k, "function `main`", b"payload bytes").unwrap();
        assert_eq!(c.load(&k).unwrap().as_deref(), Some(&b"payload bytes"[..]));
        assert_eq!(c.list().unwrap()[0].label.as_deref(), Some("function `main`"));
        let path = c.path_of(&k);
        let good = fs::read(&path).unwrap();
        // Truncated anywhere.
        for n in [0, 5, HEADER_LEN - 1, good.len() - 1] {
            fs::write(&path, &good[..n]).unwrap();
            assert!(matches!(c.load(&k), Err(LoadError::Truncated | LoadError::Corrupted(_))), "cut at {n}");
        }
        // Any flipped byte.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            assert!(c.load(&k).is_err(), "byte {i} flipped");
        }
        // Another plugin's entry under the same name.
        let other = DiskCache::key("module", b"opts", "plugin b", "");
        fs::write(&path, encode(&CacheKey { key: k.key, identity: other.identity }, "x", b"p")).unwrap();
        assert_eq!(c.load(&k), Err(LoadError::OtherPlugin));
        // Keys differ by each part.
        assert_ne!(k, DiskCache::key("module2", b"opts", "plugin a", ""));
        assert_ne!(k, DiskCache::key("module", b"opts2", "plugin a", ""));
        assert_ne!(k, DiskCache::key("module", b"opts", "plugin a", "--xla_foo"));
        assert_eq!(c.clear().unwrap().0, 1);
        let _ = fs::remove_dir_all(c.dir());
    }

    #[test]
    fn stores_keep_the_cap_and_evict_the_oldest() {
        let dir = tmpdir("cap-tally");
        let entry = encode(&DiskCache::key("m", b"", "p", ""), "r", &[0; 1000]).len() as u64;
        let c = DiskCache::new(&dir, 10 * entry);
        let keys: Vec<_> = (0..25).map(|i| DiskCache::key(&format!("m{i}"), b"", "p", "")).collect();
        let t0 = SystemTime::now() - std::time::Duration::from_secs(100);
        for (i, k) in keys.iter().enumerate() {
            c.store(k, "r", &[i as u8; 1000]).unwrap();
            // Distinct times, oldest first, so the order of eviction is known.
            let f = fs::File::options().append(true).open(c.path_of(k)).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i as u64)).unwrap();
            let on_disk: u64 = c.list().unwrap().iter().map(|e| e.size).sum();
            assert!(on_disk <= 10 * entry, "after store {i}: {on_disk} bytes over the cap");
        }
        // The 11th store passed the cap and evicted down to 9 entries; the
        // 12th and 13th fit, the 14th passed it again, ...: the newest
        // entries stay, the oldest went.
        let left: Vec<_> = keys.iter().map(|k| c.load(k).unwrap().is_some()).collect();
        assert!(left[24] && left[23] && !left[0] && !left[10], "{left:?}");
        let n = left.iter().filter(|&&x| x).count();
        assert!((9..=10).contains(&n), "{n} entries left: {left:?}");
        assert_eq!(c.clear().unwrap().0, n);
        let _ = fs::remove_dir_all(c.dir());
    }

    #[test]
    fn evicts_least_recently_used() {
        let c = DiskCache::new(tmpdir("lru"), u64::MAX);
        let keys: Vec<_> = (0..4).map(|i| DiskCache::key(&format!("m{i}"), b"", "p", "")).collect();
        let t0 = SystemTime::now() - std::time::Duration::from_secs(100);
        for (i, k) in keys.iter().enumerate() {
            c.store(k, "r", &[i as u8; 1000]).unwrap();
            let f = fs::File::options().append(true).open(c.path_of(k)).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i as u64)).unwrap();
        }
        // Using the oldest makes it the newest.
        c.load(&keys[0]).unwrap().unwrap();
        let one = c.list().unwrap()[0].size;
        assert_eq!(c.evict(2 * one), 2);
        assert!(c.load(&keys[1]).unwrap().is_none());
        assert!(c.load(&keys[2]).unwrap().is_none());
        assert!(c.load(&keys[0]).unwrap().is_some());
        assert!(c.load(&keys[3]).unwrap().is_some());
        let _ = fs::remove_dir_all(c.dir());
    }
}
