//! Triton's system and CUDA shared memory extensions: clients register
//! POSIX shared memory objects, or device allocations exported as CUDA IPC
//! handles, as named regions, then name a region (with a byte size and an
//! optional offset) on an input, which the server reads its tensor from, or
//! on a requested output, which the server writes its result into.
//!
//! A CUDA region is mapped by the service's device
//! ([`reef_sched::Service::open_shared`]); an input in it stays on the
//! device ([`reef_sched::Input::Shared`]) and reaches the model's buffer
//! with a device-to-device copy, so the request carries no tensor bytes at
//! all. Outputs are copied into it from host memory. Region names are one
//! namespace over both kinds, as in Triton.
//!
//! reef allows no `unsafe` outside the CUDA boundary, so system regions are
//! not mapped: a region's object is opened as the file `/dev/shm/<key>` (where
//! glibc's `shm_open` puts it) and read and written with `pread` / `pwrite`
//! ([`FileExt`]), one copy each way. The file stays open while the region is
//! registered; every access re-checks its length, since a client may shrink
//! it at any time. Regions are held as `Arc`s, so unregistering one while a
//! request uses it is safe (the request finishes with its handle).
//!
//! Client access (both kinds) is off unless the server is started with
//! `--allow-client-shm` ([`crate::ServerConfig::allow_client_shm`]): a
//! client that can register system regions can make the server read and
//! write any file in `/dev/shm` it can open.
//!
//! [`ClientRegion`] is the client side of system shared memory, for
//! benchmarks and tests; [`ClientMemory`] is what clients of either kind
//! write inputs into and read outputs from.

use crate::inference::ParamValue;
use crate::request_error::RequestError;
use crate::tensor_codec::{tensor_bytes, tensor_from_reader};
use reef_model::{DType, Tensor};
use reef_sched::{HostPool, Input, Service, SharedInput, SharedRegion};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Folder where POSIX shared memory objects live on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// Parameter naming the region of an input or output.
pub const REGION_PARAM: &str = "shared_memory_region";
/// Parameter giving the byte size of the tensor's data in the region.
pub const BYTE_SIZE_PARAM: &str = "shared_memory_byte_size";
/// Parameter giving the tensor's offset in the region (default 0).
pub const OFFSET_PARAM: &str = "shared_memory_offset";

/// The error of every shared memory request on a server started without
/// client shared memory.
pub fn not_allowed() -> RequestError {
    RequestError::bad(
        "system shared memory is disabled: the server was started without --allow-client-shm",
    )
}

/// The file of a POSIX shared memory key: one optional leading '/', then a
/// name without '/' that is neither empty, "." nor "..".
pub fn key_path(key: &str) -> Result<PathBuf, RequestError> {
    let name = key.strip_prefix('/').unwrap_or(key);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(RequestError::bad(format!(
            "shared memory key '{key}' is invalid (expected an optional leading '/' and a \
             name without '/', not '.' or '..')"
        )));
    }
    Ok(PathBuf::from(SHM_DIR).join(name))
}

/// A registered region: `byte_size` bytes at `offset` in the object `key`
/// (system), or the first `byte_size` bytes of a mapped device allocation
/// (CUDA).
#[derive(Debug)]
pub struct Region {
    name: String,
    offset: u64,
    byte_size: u64,
    backing: Backing,
}

/// What a region's bytes live in.
#[derive(Debug)]
enum Backing {
    /// A POSIX shared memory object.
    File { key: String, file: File },
    /// Device memory another process exported, on device `device_id`.
    Device {
        device_id: u64,
        region: Arc<dyn SharedRegion>,
    },
}

/// The two kinds of region, for the calls that address one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// System shared memory.
    System,
    /// CUDA shared memory.
    Cuda,
}

impl Kind {
    fn of(backing: &Backing) -> Kind {
        match backing {
            Backing::File { .. } => Kind::System,
            Backing::Device { .. } => Kind::Cuda,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::System => "system",
            Kind::Cuda => "CUDA",
        }
    }
}

/// A CUDA region as the status calls report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CudaRegionStatus {
    /// Region name.
    pub name: String,
    /// Device the allocation lives on.
    pub device_id: u64,
    /// Size of the region, bytes.
    pub byte_size: u64,
}

/// A system region as the status calls report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// Shared memory key.
    pub key: String,
    /// Offset of the region in the object, bytes.
    pub offset: u64,
    /// Size of the region, bytes.
    pub byte_size: u64,
}

impl Region {
    fn key(&self) -> &str {
        match &self.backing {
            Backing::File { key, .. } => key,
            Backing::Device { .. } => "",
        }
    }

    fn status(&self) -> RegionStatus {
        RegionStatus {
            name: self.name.clone(),
            key: self.key().to_string(),
            offset: self.offset,
            byte_size: self.byte_size,
        }
    }

    fn cuda_status(&self) -> CudaRegionStatus {
        CudaRegionStatus {
            name: self.name.clone(),
            device_id: match &self.backing {
                Backing::Device { device_id, .. } => *device_id,
                Backing::File { .. } => 0,
            },
            byte_size: self.byte_size,
        }
    }

    /// Checks that `len` bytes at `at` (relative to the region) lie in the
    /// region and in the file as it is now; returns the file position.
    fn span(&self, what: &str, at: u64, len: u64) -> Result<u64, RequestError> {
        let end = at.checked_add(len).filter(|&e| e <= self.byte_size);
        if end.is_none() {
            return Err(RequestError::bad(format!(
                "{what}: offset {at} + byte size {len} exceeds shared memory region '{}' \
                 ({} bytes)",
                self.name, self.byte_size
            )));
        }
        let pos = self.offset + at;
        let Backing::File { key, file } = &self.backing else {
            return Ok(pos);
        };
        let file_len = file.metadata().map(|m| m.len()).map_err(|e| {
            RequestError::bad(format!(
                "{what}: shared memory region '{}' (key '{key}'): {e}",
                self.name
            ))
        })?;
        if pos + len > file_len {
            return Err(RequestError::bad(format!(
                "{what}: shared memory region '{}' (key '{key}') needs {} bytes but the object \
                 now has only {file_len} (was it truncated?)",
                self.name,
                pos + len
            )));
        }
        Ok(pos)
    }

    fn io_error(&self, what: &str, e: impl std::fmt::Display) -> RequestError {
        RequestError::bad(format!(
            "{what}: {} shared memory region '{}': {e}",
            Kind::of(&self.backing).label(),
            self.name
        ))
    }
}

/// The registered regions, and whether clients may use any.
#[derive(Debug, Default)]
pub struct ShmRegistry {
    allowed: bool,
    regions: RwLock<HashMap<String, Arc<Region>>>,
}

impl ShmRegistry {
    /// An empty registry; `allowed` false makes every call fail with
    /// [`not_allowed`].
    pub fn new(allowed: bool) -> Self {
        ShmRegistry {
            allowed,
            regions: RwLock::default(),
        }
    }

    fn check_allowed(&self) -> Result<(), RequestError> {
        if self.allowed {
            Ok(())
        } else {
            Err(not_allowed())
        }
    }

    fn read_table(
        &self,
    ) -> Result<std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Region>>>, RequestError> {
        self.regions
            .read()
            .map_err(|_| RequestError::internal("shared memory table lock poisoned"))
    }

    fn write_table(
        &self,
    ) -> Result<std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Region>>>, RequestError> {
        self.regions
            .write()
            .map_err(|_| RequestError::internal("shared memory table lock poisoned"))
    }

    /// Registers `byte_size` bytes at `offset` of the object `key` as
    /// region `name`. The object must exist and be large enough; names are
    /// unique.
    pub fn register(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<(), RequestError> {
        self.check_allowed()?;
        if name.is_empty() {
            return Err(RequestError::bad("shared memory region name is empty"));
        }
        let path = key_path(key)?;
        let cannot = |e: &dyn std::fmt::Display| {
            RequestError::bad(format!(
                "cannot register shared memory region '{name}': key '{key}' ({}): {e}",
                path.display()
            ))
        };
        // shm_open does not follow links; neither does this.
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(cannot(&"is a symbolic link")),
            Ok(_) => {}
            Err(e) => return Err(cannot(&e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| cannot(&e))?;
        let meta = file.metadata().map_err(|e| cannot(&e))?;
        if !meta.is_file() {
            return Err(cannot(&"not a shared memory object"));
        }
        let end = offset.checked_add(byte_size);
        if end.is_none_or(|e| e > meta.len()) {
            return Err(cannot(&format_args!(
                "offset {offset} + byte size {byte_size} exceeds the object's {} bytes",
                meta.len()
            )));
        }
        self.insert(Region {
            name: name.to_string(),
            offset,
            byte_size,
            backing: Backing::File {
                key: key.to_string(),
                file,
            },
        })
    }

    /// Registers `byte_size` bytes of the device allocation that another
    /// process exported as the CUDA IPC handle `raw_handle` on device
    /// `device_id`, mapped by `service`, as region `name`.
    pub fn register_cuda(
        &self,
        service: &dyn Service,
        name: &str,
        raw_handle: &[u8],
        device_id: i64,
        byte_size: u64,
    ) -> Result<(), RequestError> {
        self.check_allowed()?;
        if name.is_empty() {
            return Err(RequestError::bad("shared memory region name is empty"));
        }
        let cannot = |e: &dyn std::fmt::Display| {
            RequestError::bad(format!(
                "cannot register CUDA shared memory region '{name}' (device {device_id}): {e}"
            ))
        };
        if raw_handle.len() != reef_sched::IPC_HANDLE_BYTES {
            return Err(cannot(&format_args!(
                "raw_handle must be a CUDA IPC memory handle of {} bytes, got {}",
                reef_sched::IPC_HANDLE_BYTES,
                raw_handle.len()
            )));
        }
        let device = usize::try_from(device_id).map_err(|_| cannot(&"device_id is negative"))?;
        let size = usize::try_from(byte_size).map_err(|_| cannot(&"byte_size is too large"))?;
        if self.read_table()?.contains_key(name) {
            return Err(already(name));
        }
        let region = service
            .open_shared(device, raw_handle, size)
            .map_err(|e| cannot(&e))?;
        self.insert(Region {
            name: name.to_string(),
            offset: 0,
            byte_size,
            backing: Backing::Device {
                device_id: device as u64,
                region,
            },
        })
    }

    fn insert(&self, region: Region) -> Result<(), RequestError> {
        let mut table = self.write_table()?;
        if table.contains_key(&region.name) {
            return Err(already(&region.name));
        }
        table.insert(region.name.clone(), Arc::new(region));
        Ok(())
    }

    /// Unregisters region `name` of kind `kind`, or every region of that
    /// kind when `name` is `None`. Unregistering a name that is not
    /// registered (as that kind) does nothing (as Triton).
    pub fn unregister(&self, kind: Kind, name: Option<&str>) -> Result<(), RequestError> {
        self.check_allowed()?;
        let mut table = self.write_table()?;
        match name {
            Some(n) => {
                if table.get(n).is_some_and(|r| Kind::of(&r.backing) == kind) {
                    table.remove(n);
                }
            }
            None => table.retain(|_, r| Kind::of(&r.backing) != kind),
        }
        Ok(())
    }

    /// The regions of kind `kind` by name: region `name` (an error when it
    /// is not registered as that kind), or all of them when `name` is
    /// `None`.
    fn of_kind(&self, kind: Kind, name: Option<&str>) -> Result<Vec<Arc<Region>>, RequestError> {
        self.check_allowed()?;
        let table = self.read_table()?;
        match name {
            Some(n) => {
                let r = self.lookup(&table, n)?;
                if Kind::of(&r.backing) != kind {
                    return Err(RequestError::bad(format!(
                        "shared memory region '{n}' is not a {} region",
                        kind.label()
                    )));
                }
                Ok(vec![r])
            }
            None => {
                let sorted: BTreeMap<_, _> = table
                    .iter()
                    .filter(|(_, r)| Kind::of(&r.backing) == kind)
                    .collect();
                Ok(sorted.into_values().cloned().collect())
            }
        }
    }

    /// The status of system region `name` (an error when unknown), or of
    /// every system region by name when `name` is `None`.
    pub fn status(&self, name: Option<&str>) -> Result<Vec<RegionStatus>, RequestError> {
        Ok(self
            .of_kind(Kind::System, name)?
            .iter()
            .map(|r| r.status())
            .collect())
    }

    /// As [`ShmRegistry::status`], for CUDA regions.
    pub fn cuda_status(&self, name: Option<&str>) -> Result<Vec<CudaRegionStatus>, RequestError> {
        Ok(self
            .of_kind(Kind::Cuda, name)?
            .iter()
            .map(|r| r.cuda_status())
            .collect())
    }

    fn lookup(
        &self,
        table: &HashMap<String, Arc<Region>>,
        name: &str,
    ) -> Result<Arc<Region>, RequestError> {
        table.get(name).cloned().ok_or_else(|| {
            RequestError::bad(format!("shared memory region '{name}' is not registered"))
        })
    }

    /// The shared memory target of a tensor from its parameters (`get`
    /// looks one up by name): `None` when it names no region. `what` names
    /// the tensor in errors ("input 'x'").
    pub fn target(
        &self,
        what: &str,
        get: impl Fn(&str) -> Option<ParamValue>,
    ) -> Result<Option<ShmTarget>, RequestError> {
        let region = get(REGION_PARAM);
        let size = get(BYTE_SIZE_PARAM);
        let offset = get(OFFSET_PARAM);
        let (region, size) = match (region, size) {
            (None, None) => {
                if offset.is_some() {
                    return Err(RequestError::bad(format!(
                        "{what}: {OFFSET_PARAM} is given without {REGION_PARAM} and \
                         {BYTE_SIZE_PARAM}"
                    )));
                }
                return Ok(None);
            }
            (Some(r), Some(s)) => (r, s),
            (Some(_), None) | (None, Some(_)) => {
                return Err(RequestError::bad(format!(
                    "{what}: {REGION_PARAM} and {BYTE_SIZE_PARAM} must be given together"
                )))
            }
        };
        self.check_allowed()?;
        let ParamValue::Str(region) = region else {
            return Err(RequestError::bad(format!(
                "{what}: {REGION_PARAM} must be a string, got {region:?}"
            )));
        };
        let byte_size = non_negative(what, BYTE_SIZE_PARAM, &size)?;
        let offset = match offset {
            None => 0,
            Some(v) => non_negative(what, OFFSET_PARAM, &v)?,
        };
        let region = self.lookup(&*self.read_table()?, &region)?;
        region.span(what, offset, byte_size)?;
        Ok(Some(ShmTarget {
            region,
            offset,
            byte_size,
        }))
    }
}

fn already(name: &str) -> RequestError {
    RequestError::bad(format!(
        "shared memory region '{name}' is already registered (unregister it first)"
    ))
}

fn non_negative(what: &str, key: &str, v: &ParamValue) -> Result<u64, RequestError> {
    match v {
        ParamValue::Int(i) => u64::try_from(*i).ok(),
        ParamValue::Uint(u) => Some(*u),
        _ => None,
    }
    .ok_or_else(|| {
        RequestError::bad(format!(
            "{what}: {key} must be a non-negative integer, got {v:?}"
        ))
    })
}

/// Where one tensor lives: `byte_size` bytes at `offset` in a region.
#[derive(Debug, Clone)]
pub struct ShmTarget {
    region: Arc<Region>,
    offset: u64,
    byte_size: u64,
}

impl ShmTarget {
    /// The region's name.
    pub fn region(&self) -> &str {
        &self.region.name
    }

    /// The tensor's offset in the region, bytes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The byte size the request gave.
    pub fn byte_size(&self) -> u64 {
        self.byte_size
    }

    /// Input `name` of type `dtype` and shape `shape` from the region: from
    /// a system region read straight into the tensor's buffer (a pinned one
    /// of `pool` where it has room); in a CUDA region left where it is, for
    /// the device to copy. The byte size must match.
    pub fn read_input(
        &self,
        pool: Option<&HostPool>,
        name: &str,
        dtype: DType,
        shape: Vec<usize>,
    ) -> Result<Input, RequestError> {
        let what = format!("input '{name}'");
        let len = usize::try_from(self.byte_size).unwrap_or(usize::MAX);
        match &self.region.backing {
            Backing::File { file, .. } => {
                tensor_from_reader(pool, name, dtype, shape, len, |buf| {
                    let pos = self.region.span(&what, self.offset, buf.len() as u64)?;
                    file.read_exact_at(buf, pos)
                        .map_err(|e| self.region.io_error(&what, e))
                })
                .map(Input::Host)
            }
            Backing::Device { region, .. } => {
                let input = SharedInput {
                    dtype,
                    shape,
                    region: region.clone(),
                    offset: usize::try_from(self.offset).unwrap_or(usize::MAX),
                };
                let need = input.byte_len();
                if need != len {
                    return Err(RequestError::bad(format!(
                        "{what}: {BYTE_SIZE_PARAM} is {len} but {} {:?} needs {need} bytes",
                        dtype.kserve_name(),
                        input.shape
                    )));
                }
                Ok(Input::Shared(input))
            }
        }
    }

    /// Writes output `name` (raw little-endian bytes) into the region; the
    /// byte size must hold it. Returns the number of bytes written.
    pub fn write_tensor(&self, name: &str, t: &Tensor) -> Result<u64, RequestError> {
        let what = format!("output '{name}'");
        let bytes = tensor_bytes(t);
        let len = bytes.len() as u64;
        if len > self.byte_size {
            return Err(RequestError::bad(format!(
                "{what}: {BYTE_SIZE_PARAM} is {} but the output needs {len} bytes \
                 (shared memory region '{}')",
                self.byte_size, self.region.name
            )));
        }
        let pos = self.region.span(&what, self.offset, len)?;
        match &self.region.backing {
            Backing::File { file, .. } => file
                .write_all_at(&bytes, pos)
                .map_err(|e| self.region.io_error(&what, e))?,
            Backing::Device { region, .. } => region
                .write(pos as usize, &bytes)
                .map_err(|e| self.region.io_error(&what, e))?,
        }
        Ok(len)
    }
}

/// The client side: a POSIX shared memory object created (or reused) as
/// `/dev/shm/<key>`, read and written at offsets, and removed on drop.
#[derive(Debug)]
pub struct ClientRegion {
    key: String,
    path: PathBuf,
    file: File,
    byte_size: u64,
}

impl ClientRegion {
    /// Creates (or opens and resizes) the object `key` with `byte_size`
    /// bytes.
    pub fn create(key: &str, byte_size: u64) -> std::io::Result<ClientRegion> {
        let path = key_path(key)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.message))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.set_len(byte_size)?;
        Ok(ClientRegion {
            key: key.to_string(),
            path,
            file,
            byte_size,
        })
    }

    /// The key to register the object under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Size of the object, bytes.
    pub fn byte_size(&self) -> u64 {
        self.byte_size
    }

    /// Writes `bytes` at `offset`.
    pub fn write(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    /// Reads `len` bytes at `offset`.
    pub fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Reads a tensor of type `dtype` and shape `shape` at `offset`
    /// (straight into its buffer).
    pub fn read_tensor(
        &self,
        name: &str,
        dtype: DType,
        shape: Vec<usize>,
        offset: u64,
    ) -> Result<Tensor, RequestError> {
        read_client_tensor(self, name, dtype, shape, offset)
    }
}

/// Client memory that a region is registered from (a system shared memory
/// object, or a device allocation exported for CUDA shared memory): where
/// a client writes its inputs and reads its outputs.
pub trait ClientMemory: Send + Sync {
    /// Size, bytes.
    fn byte_size(&self) -> u64;
    /// Writes `bytes` at `offset`.
    fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
    /// Fills `buf` from `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// What the memory is, for errors.
    fn describe(&self) -> String;
}

impl ClientMemory for ClientRegion {
    fn byte_size(&self) -> u64 {
        self.byte_size
    }
    fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.write(offset, bytes)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn describe(&self) -> String {
        format!("shared memory '{}'", self.key)
    }
}

/// Reads a tensor of type `dtype` and shape `shape` at `offset` of client
/// memory (straight into its buffer).
pub fn read_client_tensor(
    mem: &dyn ClientMemory,
    name: &str,
    dtype: DType,
    shape: Vec<usize>,
    offset: u64,
) -> Result<Tensor, RequestError> {
    let len = reef_model::tensor::numel(&shape).saturating_mul(dtype.size());
    tensor_from_reader(None, name, dtype, shape, len, |buf| {
        mem.read_at(offset, buf)
            .map_err(|e| RequestError::bad(format!("tensor '{name}': {}: {e}", mem.describe())))
    })
}

impl Drop for ClientRegion {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(key_path("/a").unwrap(), PathBuf::from("/dev/shm/a"));
        assert_eq!(key_path("b").unwrap(), PathBuf::from("/dev/shm/b"));
        for bad in ["", "/", "..", "/..", ".", "a/b", "//a", "/a/"] {
            let e = key_path(bad).unwrap_err();
            assert!(e.message.contains(&format!("'{bad}'")), "{bad}: {e:?}");
        }
    }

    #[test]
    fn disabled_registry_refuses_everything() {
        let r = ShmRegistry::new(false);
        let e = r.register("x", "/x", 0, 4).unwrap_err();
        assert!(e.message.contains("--allow-client-shm"));
        assert!(r.status(None).is_err());
        assert!(r.unregister(Kind::System, None).is_err());
        let params = |k: &str| match k {
            REGION_PARAM => Some(ParamValue::Str("x".into())),
            BYTE_SIZE_PARAM => Some(ParamValue::Int(4)),
            _ => None,
        };
        let e = r.target("input 'a'", params).unwrap_err();
        assert!(e.message.contains("--allow-client-shm"));
        assert!(r.target("input 'a'", |_| None).unwrap().is_none());
    }

    #[test]
    fn round_trip_through_a_region() {
        let key = format!("/reef-shm-unit-{}", std::process::id());
        let client = ClientRegion::create(&key, 64).unwrap();
        let r = ShmRegistry::new(true);
        r.register("in", &key, 8, 32).unwrap();
        assert!(r
            .register("in", &key, 0, 8)
            .unwrap_err()
            .message
            .contains("already"));
        let v = [1.5f32, -2.0, 3.25, 7.0];
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        client.write(8 + 4, &bytes).unwrap();
        let params = |k: &str| match k {
            REGION_PARAM => Some(ParamValue::Str("in".into())),
            BYTE_SIZE_PARAM => Some(ParamValue::Int(16)),
            OFFSET_PARAM => Some(ParamValue::Uint(4)),
            _ => None,
        };
        let t = r.target("input 'x'", params).unwrap().unwrap();
        let x = t.read_input(None, "x", DType::F32, vec![2, 2]).unwrap();
        let x = x.host().expect("a system region reads to host memory");
        assert_eq!(x.as_f32().unwrap(), &v);
        let y = Tensor::f32(vec![4], v.iter().map(|a| a * 2.0).collect()).unwrap();
        assert_eq!(t.write_tensor("y", &y).unwrap(), 16);
        let back = client.read_tensor("y", DType::F32, vec![4], 12).unwrap();
        assert_eq!(back.as_f32().unwrap(), y.as_f32().unwrap());
        assert!(t.read_input(None, "x", DType::F32, vec![3]).is_err());
        client.file.set_len(10).unwrap();
        let e = t.read_input(None, "x", DType::F32, vec![4]).unwrap_err();
        assert!(e.message.contains("truncated"), "{e:?}");
        assert_eq!(r.status(None).unwrap().len(), 1);
        r.unregister(Kind::Cuda, Some("in")).unwrap();
        assert_eq!(
            r.status(None).unwrap().len(),
            1,
            "a CUDA unregister spares system regions"
        );
        r.unregister(Kind::System, Some("in")).unwrap();
        assert!(r.status(Some("in")).is_err());
    }
}
