//! NVRTC compilation of the kernel sets' modules to CUBIN, once per device
//! architecture, with an on-disk cache keyed per set by the SHA-256 of the
//! source, the options (the set's among them) and the NVRTC version.

use crate::error::CudaCall;
use crate::kernels::{self, KernelSet};
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};
use reef_exec::ExecError;
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether libnvrtc can be loaded (by the names cudarc searches).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by name and drops it again.
    unsafe { nvrtc_sys::is_culib_present() }
}

/// The NVRTC version (major, minor). Call only when [`nvrtc_available`].
pub fn nvrtc_version() -> Result<(i32, i32), ExecError> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both pointers are valid for writes for the call's duration.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor).result() }.call("nvrtcVersion")?;
    Ok((major, minor))
}

/// The cache key: hex SHA-256 of source, options and compiler version.
pub fn cache_key(source: &str, options: &[String], nvrtc: (i32, i32)) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    for o in options {
        h.update([0u8]);
        h.update(o.as_bytes());
    }
    h.update(format!("\0nvrtc {}.{}", nvrtc.0, nvrtc.1).as_bytes());
    hex::encode(h.finalize())
}

/// The cache folder: `$REEF_CACHE_DIR`, else `~/.cache/reef/kernels`.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("REEF_CACHE_DIR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => dirs::cache_dir().map(|d| d.join("reef").join("kernels")),
    }
}

/// Compiles `source` with `options` to CUBIN (no cache). Errors carry the log.
pub fn compile_cubin(source: &str, options: &[String]) -> Result<Vec<u8>, ExecError> {
    if !nvrtc_available() {
        return Err(ExecError::Unavailable("libnvrtc not found".into()));
    }
    let src = CString::new(source)
        .map_err(|_| ExecError::Compile("kernel source contains a NUL byte".into()))?;
    let name = c"reef_kernels.cu";
    let prog = nvrtc::create_program(&src, Some(name)).call("nvrtcCreateProgram")?;
    // SAFETY: `prog` was just created and is destroyed exactly once below;
    // `src` and `name` outlive it.
    let out = unsafe { compile_and_fetch(prog, options) };
    // SAFETY: as above; no use of `prog` follows.
    let destroyed = unsafe { nvrtc::destroy_program(prog) }.call("nvrtcDestroyProgram");
    let cubin = out?;
    destroyed?;
    Ok(cubin)
}

/// # Safety
/// `prog` must be a live NVRTC program.
unsafe fn compile_and_fetch(
    prog: nvrtc_sys::nvrtcProgram,
    options: &[String],
) -> Result<Vec<u8>, ExecError> {
    let compiled = nvrtc::compile_program(prog, options);
    let log = nvrtc::get_program_log(prog)
        .map(|l| {
            let bytes: Vec<u8> = l.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .unwrap_or_default();
    if compiled.is_err() {
        return Err(ExecError::Compile(log));
    }
    if !log.trim().is_empty() {
        tracing::debug!(log = %log, "NVRTC log");
    }
    let mut size = 0usize;
    nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size)
        .result()
        .call("nvrtcGetCUBINSize")?;
    let mut cubin = vec![0u8; size];
    nvrtc_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast())
        .result()
        .call("nvrtcGetCUBIN")?;
    Ok(cubin)
}

/// One compiled kernel set: its CUBIN and cache key.
#[derive(Debug, Clone)]
pub struct SetCubin {
    /// The set.
    pub set: KernelSet,
    /// The CUBIN image.
    pub cubin: Vec<u8>,
    /// The cache key (hex SHA-256 of source, options and NVRTC version).
    pub key: String,
    /// Whether it came from the cache (else it was compiled now).
    pub cached: bool,
}

/// The kernel modules of `sets` for compute capability `major.minor`: each
/// from the cache when present, else compiled and stored. Missing sets
/// compile at the same time on their own threads (each NVRTC program also
/// optimizes on every core), behind one progress spinner on a terminal.
/// `fresh` skips the cache reads (used after a cached image failed to
/// load). `defines` (`-DNAME=VALUE` options from the device's options) and
/// those of `REEF_NVRTC_DEFINES` join the options and the cache keys.
pub fn module_cubins(
    major: i32,
    minor: i32,
    sets: &[KernelSet],
    fresh: bool,
    defines: &[String],
) -> Result<Vec<SetCubin>, ExecError> {
    if !nvrtc_available() {
        return Err(ExecError::Unavailable("libnvrtc not found".into()));
    }
    let source = kernels::program_source();
    let mut common = kernels::nvrtc_options(major, minor);
    common.extend_from_slice(defines);
    if let Ok(v) = std::env::var(kernels::NVRTC_DEFINES_VAR) {
        common.extend(kernels::nvrtc_defines(&v).map_err(ExecError::Invalid)?);
    }
    let version = nvrtc_version()?;
    let dir = cache_dir();
    // Each set from the cache, or marked to compile: (its index, options, path).
    let mut out = Vec::with_capacity(sets.len());
    let mut missing = vec![];
    for &set in sets {
        let mut options = common.clone();
        options.push(set.define());
        let key = cache_key(&source, &options, version);
        let path = dir.as_ref().map(|d| d.join(format!("{key}.cubin")));
        let hit = match (&path, fresh) {
            (Some(p), false) => std::fs::read(p).ok().filter(|b| !b.is_empty()),
            _ => None,
        };
        match &hit {
            Some(_) => tracing::debug!(set = %set, key = %key, "kernel cache hit"),
            None => missing.push((out.len(), options, path)),
        }
        out.push(SetCubin {
            set,
            cached: hit.is_some(),
            cubin: hit.unwrap_or_default(),
            key,
        });
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let names: Vec<&str> = missing.iter().map(|m| out[m.0].set.name()).collect();
    bar.set_message(format!(
        "compiling reef CUDA kernels ({}) for sm_{major}{minor}",
        names.join(", ")
    ));
    bar.enable_steady_tick(Duration::from_millis(100));
    let compiled: Vec<Result<Vec<u8>, ExecError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = missing
            .iter()
            .map(|(i, options, path)| {
                let (set, source) = (out[*i].set, &source);
                scope
                    .spawn(move || compile_set(set, source, options, path.as_deref(), major, minor))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ExecError::Compile(
                        "a kernel compile thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    bar.finish_and_clear();
    for ((i, _, _), cubin) in missing.iter().zip(compiled) {
        out[*i].cubin = cubin?;
    }
    Ok(out)
}

/// Compiles one set and stores it at `path` (a failed store only warns).
fn compile_set(
    set: KernelSet,
    source: &str,
    options: &[String],
    path: Option<&Path>,
    major: i32,
    minor: i32,
) -> Result<Vec<u8>, ExecError> {
    let started = std::time::Instant::now();
    let cubin = compile_cubin(source, options)
        .map_err(|e| ExecError::Compile(format!("kernel set {set}: {e}")))?;
    tracing::info!(
        set = %set,
        arch = format!("sm_{major}{minor}"),
        ms = started.elapsed().as_millis() as u64,
        bytes = cubin.len(),
        "compiled CUDA kernels"
    );
    if let Some(p) = path {
        if let Err(e) = store(p, &cubin) {
            tracing::warn!(path = %p.display(), error = %e, "could not cache a kernel module");
        }
    }
    Ok(cubin)
}

/// Writes atomically (temporary file, then rename).
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_is_stable_and_sensitive() {
        let o = vec!["--a".to_string(), "--b".to_string()];
        let k = cache_key("src", &o, (13, 0));
        assert_eq!(k, cache_key("src", &o, (13, 0)));
        assert_eq!(k.len(), 64);
        assert_ne!(k, cache_key("src2", &o, (13, 0)));
        assert_ne!(k, cache_key("src", &o[..1], (13, 0)));
        assert_ne!(k, cache_key("src", &o, (13, 1)));
        // Option boundaries matter.
        assert_ne!(
            cache_key("s", &["--ab".into()], (13, 0)),
            cache_key("s", &["--a".into(), "b".into()], (13, 0))
        );
    }

    #[test]
    fn store_writes_atomically() {
        let dir = std::env::temp_dir().join(format!("reef-cuda-test-{}", std::process::id()));
        let p = dir.join("x.cubin");
        store(&p, b"abc").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
