//! [`CudaDevice`]: driver and NVRTC discovery, the kernel sets its options
//! use (compiled once per architecture, cached on disk), per-family
//! functions and the persistent-grid size of every BE kernel.

use crate::compile;
use crate::error::CudaCall;
use crate::kernels::{Family, KernelSet};
use crate::lane::CudaLane;
use crate::model::CudaModel;
use crate::precision::{Precision, PrecisionError};
use crate::tactic_cache::{scope_key, TacticCache};
use crate::tactics::TacticMode;
use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use reef_exec::{Device, DeviceKind, ExecError, ModelHandle, Plan, Priority, Variant};
use std::sync::Arc;

/// Options of a [`CudaDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaOptions {
    /// The arithmetic of convolutions and matmuls: TF32 tensor cores (the
    /// default; relative L2 error around 1e-3 against f32), split TF32 on
    /// tensor cores (close to f32) or exact f32 FFMA.
    pub precision: Precision,
    /// Run TF32 convolutions, and matmuls of 128 or more rows and columns,
    /// on the experimental wgmma kernels where the GPU has wgmma (sm_90);
    /// `REEF_WGMMA=1` sets it. Off by default: the convolutions are slower
    /// than the `mma.sync` kernels on most layers, and the matmuls are not
    /// measured yet (docs/PERF.md).
    pub wgmma: bool,
    /// Lean RT launches (default on; `REEF_RT_LEAN=0` turns them off): RT
    /// kernels skip the per-block done count and progress publication unless
    /// something reads them (the task's last kernel, and RT kernels that
    /// padding follows).
    pub rt_lean: bool,
    /// Direct BE launches (default on; `REEF_BE_DIRECT=0` turns them off): a
    /// BE kernel whose tiles all fit on the GPU at once runs one block per
    /// tile instead of persistent blocks claiming tiles from a cursor.
    pub be_direct: bool,
    /// Direct BE launches for multi-wave kernels too (default on;
    /// `REEF_BE_DIRECT_ALL=0` turns it off): one block per tile, however
    /// many waves, instead of persistent blocks claiming tiles.
    pub be_direct_all: bool,
    /// The told word (default off; `REEF_BE_TOLD=1` turns it on): every
    /// BE lane has a host-mapped word, and the last block of each direct
    /// BE launch to leave the GPU writes the launch's number there, so the
    /// host sees a drained lane with a load instead of a stream query
    /// ([`reef_exec::Lane::drained`]). On the H100 it took 1-6 us off the
    /// preemption p50 in REEF's order (`:drain`), and cost BE models
    /// 0.3-4% of their latency and DISB A 2-5% of its BE throughput
    /// (docs/PERF.md, Session 23), so it is for users who drain first and
    /// want the shortest drain. Lanes made for quick drains
    /// ([`reef_exec::LaneOptions::quick_drain`], which the scheduler asks
    /// for where RT work waits for the drain) have one either way.
    pub be_told: bool,
    /// The driver call that raises the flags (`REEF_RAISE`, default one
    /// `cuMemsetD32Async` per flag on the control stream).
    pub raise: crate::precision::RaiseOp,
    /// How often BE GEMM tiles check the preemption flag, in K steps
    /// (`REEF_FLAG_CHUNK`, 1..=64, default 1): 1 at every step; N between
    /// chunks of N steps, which makes BE GEMMs faster and the drain slower.
    pub flag_chunk: u32,
    /// TF32-rounded weights (default on; `REEF_TF32_WEIGHTS=0` turns them
    /// off): in `tf32` precision, weights that only TF32 GEMMs read are
    /// stored rounded to TF32, and those kernels skip converting them.
    pub tf32_weights: bool,
    /// K-major matmul weights (default on; `REEF_K_MAJOR_WEIGHTS=0` turns
    /// them off): with [`CudaOptions::tf32_weights`], a matmul weight stored
    /// row-major along N is stored transposed, so both GEMM operands load
    /// along K.
    pub k_major_weights: bool,
    /// Wave-aware K splits (default on; `REEF_SPLIT_WAVES=0` turns them off,
    /// see [`crate::geometry::split_k`]).
    pub split_waves: bool,
    /// The convolutions' K-index gather table (default on;
    /// `REEF_GATHER_TABLE=0` turns it off).
    pub gather_table: bool,
    /// 128 x 64 tiles for TF32 convolutions of 128 or more channels
    /// (experimental, off by default until measured on a GPU;
    /// `REEF_TALL_TILES=1` turns them on).
    pub tall_tiles: bool,
    /// How each convolution's and matmul's tile and K split are chosen
    /// (`REEF_TACTICS`): timed on the GPU at model load and cached (`tune`,
    /// the default), the load-time rules (`rules`), or drawn at random
    /// (`random:SEED`, testing).
    pub tactics: TacticMode,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            precision: Precision::default(),
            wgmma: false,
            rt_lean: true,
            be_direct: true,
            be_direct_all: true,
            be_told: false,
            raise: crate::precision::RaiseOp::Memset,
            flag_chunk: 1,
            tf32_weights: true,
            k_major_weights: true,
            split_waves: true,
            gather_table: true,
            tall_tiles: false,
            tactics: TacticMode::Tune,
        }
    }
}

impl CudaOptions {
    /// The defaults, with the precision from `REEF_PRECISION` (`tf32`,
    /// `tf32x3` or `f32`; `REEF_TF32=0` is an alias of `f32`) and the
    /// switches `REEF_WGMMA`, `REEF_RT_LEAN`, `REEF_BE_DIRECT`,
    /// `REEF_BE_DIRECT_ALL`, `REEF_BE_TOLD`, `REEF_TF32_WEIGHTS`,
    /// `REEF_K_MAJOR_WEIGHTS`, `REEF_SPLIT_WAVES`, `REEF_GATHER_TABLE`,
    /// `REEF_TALL_TILES`, and the settings `REEF_RAISE`, `REEF_FLAG_CHUNK`
    /// and `REEF_TACTICS`. A value that does not parse is an error naming
    /// the variable.
    pub fn from_env() -> Result<Self, PrecisionError> {
        use crate::precision::{
            flag_chunk_from_var, switch_from_var, BE_DIRECT_ALL_VAR, BE_DIRECT_VAR, BE_TOLD_VAR,
            FLAG_CHUNK_VAR, GATHER_TABLE_VAR, K_MAJOR_WEIGHTS_VAR, RAISE_VAR, RT_LEAN_VAR,
            SPLIT_WAVES_VAR, TALL_TILES_VAR, TF32_WEIGHTS_VAR, WGMMA_VAR,
        };
        use crate::tactics::TACTICS_VAR;
        let var = |name: &str| std::env::var(name).ok();
        let d = CudaOptions::default();
        Ok(CudaOptions {
            precision: Precision::from_env()?,
            wgmma: switch_from_var(WGMMA_VAR, var(WGMMA_VAR).as_deref(), d.wgmma)?,
            rt_lean: switch_from_var(RT_LEAN_VAR, var(RT_LEAN_VAR).as_deref(), d.rt_lean)?,
            be_direct: switch_from_var(BE_DIRECT_VAR, var(BE_DIRECT_VAR).as_deref(), d.be_direct)?,
            be_direct_all: switch_from_var(
                BE_DIRECT_ALL_VAR,
                var(BE_DIRECT_ALL_VAR).as_deref(),
                d.be_direct_all,
            )?,
            be_told: switch_from_var(BE_TOLD_VAR, var(BE_TOLD_VAR).as_deref(), d.be_told)?,
            raise: crate::precision::raise_from_var(var(RAISE_VAR).as_deref())?,
            flag_chunk: flag_chunk_from_var(var(FLAG_CHUNK_VAR).as_deref())?,
            tf32_weights: switch_from_var(
                TF32_WEIGHTS_VAR,
                var(TF32_WEIGHTS_VAR).as_deref(),
                d.tf32_weights,
            )?,
            k_major_weights: switch_from_var(
                K_MAJOR_WEIGHTS_VAR,
                var(K_MAJOR_WEIGHTS_VAR).as_deref(),
                d.k_major_weights,
            )?,
            split_waves: switch_from_var(
                SPLIT_WAVES_VAR,
                var(SPLIT_WAVES_VAR).as_deref(),
                d.split_waves,
            )?,
            gather_table: switch_from_var(
                GATHER_TABLE_VAR,
                var(GATHER_TABLE_VAR).as_deref(),
                d.gather_table,
            )?,
            tall_tiles: switch_from_var(
                TALL_TILES_VAR,
                var(TALL_TILES_VAR).as_deref(),
                d.tall_tiles,
            )?,
            tactics: TacticMode::from_var(var(TACTICS_VAR).as_deref())?,
        })
    }

    /// The kernel sets a device with these options launches from on a GPU
    /// of compute capability `major.minor`, in [`KernelSet::ALL`] order:
    /// the base set, the GEMM set of the precision, in TF32 the wide tiles
    /// where tactics other than the rules or `tall_tiles` may pick them,
    /// and the wgmma set where `wgmma` is on and the GPU has wgmma.
    pub fn kernel_sets(&self, major: i32, minor: i32) -> Vec<KernelSet> {
        let mut sets = vec![KernelSet::Base];
        match self.precision {
            Precision::Tf32 => {
                sets.push(KernelSet::Tf32);
                if self.tall_tiles || self.tactics != TacticMode::Rules {
                    sets.push(KernelSet::Tf32Wide);
                }
                if self.wgmma && crate::kernels::has_wgmma(major, minor) {
                    sets.push(KernelSet::Wgmma);
                }
            }
            Precision::Tf32x3 => sets.push(KernelSet::SplitTf32),
            Precision::F32 => sets.push(KernelSet::F32),
        }
        sets
    }
}

/// Whether libcuda and libnvrtc load and at least one GPU is visible. Never panics.
pub fn cuda_available() -> bool {
    driver_ready().map(|n| n > 0).unwrap_or(false)
}

/// Loads the driver (if present) and returns the device count.
pub(crate) fn driver_ready() -> Result<usize, ExecError> {
    // SAFETY: only tries to dlopen the library by name.
    if !unsafe { sys::is_culib_present() } {
        return Err(ExecError::Unavailable("libcuda not found".into()));
    }
    if !compile::nvrtc_available() {
        return Err(ExecError::Unavailable("libnvrtc not found".into()));
    }
    result::init().map_err(|e| ExecError::Unavailable(format!("cuInit: {e}")))?;
    let n = result::device::get_count()
        .map_err(|e| ExecError::Unavailable(format!("cuDeviceGetCount: {e}")))?;
    Ok(n.max(0) as usize)
}

/// State shared by a device, its models, contexts and lanes.
pub(crate) struct DeviceShared {
    /// The preemption relay: every BE lane's with `REEF_RAISE=relay` or
    /// `relay-once` ([`DeviceShared::relay_all`]), otherwise the lanes made
    /// for quick drains ([`reef_exec::LaneOptions::quick_drain`]), run once
    /// per raise. Nothing runs until a lane's BE launch starts an instance.
    /// First, so that it drops first: its drop waits for its kernels while
    /// the module is loaded.
    pub relay: parking_lot::Mutex<crate::relay::CudaRelay>,
    /// Whether every BE lane's flag is raised through the relay
    /// (`REEF_RAISE=relay` or `relay-once`).
    pub relay_all: bool,
    /// The drain probe, when the kernels were compiled with it
    /// (`REEF_DRAIN_PROBE`).
    probe: Option<crate::probe::DrainProbe>,
    pub ctx: Arc<CudaContext>,
    /// The loaded kernel modules, one per kernel set.
    _modules: Vec<Arc<CudaModule>>,
    /// The kernel sets loaded.
    sets: Vec<KernelSet>,
    /// Per family (by [`Family::index`]): the RT and BE functions, for the
    /// families of the loaded sets.
    funcs: Vec<Option<[CudaFunction; 2]>>,
    /// Per family: SMs x resident blocks per SM of the BE function (0 for
    /// families not loaded).
    resident: Vec<u32>,
    pub name: String,
    pub sms: u32,
    /// The GEMM precision. (Named `tf32` for `context.rs`, which another
    /// change owns; rename to `precision` together with its one reader there.)
    pub precision: Precision,
    /// (least, greatest) stream priority.
    pub priorities: (i32, i32),
    /// Whether TF32 convolutions use the wgmma families (sm_90 and
    /// [`CudaOptions::wgmma`]).
    pub wgmma: bool,
    /// [`CudaOptions::rt_lean`].
    pub rt_lean: bool,
    /// [`CudaOptions::be_direct`].
    pub be_direct: bool,
    /// [`CudaOptions::be_direct_all`].
    pub be_direct_all: bool,
    /// [`CudaOptions::be_told`].
    pub be_told: bool,
    /// [`CudaOptions::raise`].
    pub raise: crate::precision::RaiseOp,
    /// [`CudaOptions::tf32_weights`].
    pub tf32_weights: bool,
    /// [`CudaOptions::k_major_weights`].
    pub k_major_weights: bool,
    /// [`CudaOptions::split_waves`].
    pub split_waves: bool,
    /// [`CudaOptions::gather_table`].
    pub gather_table: bool,
    /// [`CudaOptions::tall_tiles`].
    pub tall_tiles: bool,
    /// [`CudaOptions::tactics`].
    pub tactics: TacticMode,
    /// Tuned tactics of this GPU, kernel module and options, by kernel.
    pub tactic_cache: TacticCache,
    /// The cache's scope (GPU, module, options), part of every kernel key.
    pub tactic_scope: String,
    /// The high-priority stream that writes every lane's preemption flag
    /// (raising and clearing on one stream keeps the writes in order).
    pub control: Arc<CudaStream>,
    /// `reef_hold`: holds a stream for a given time (device timing runs).
    pub hold: CudaFunction,
    /// Weight blobs on the device, shared by the models of one plan blob
    /// (one model at several batch sizes).
    pub resident_weights: crate::resident::ResidentWeights<crate::memory::DeviceBuffer>,
}

impl DeviceShared {
    /// The function of `family` for `variant`; an error names the kernel
    /// set that holds it when this device did not load that set.
    pub fn func(&self, family: Family, variant: Variant) -> Result<&CudaFunction, ExecError> {
        match &self.funcs[family.index()] {
            Some(f) => Ok(&f[variant as usize]),
            None => Err(self.not_loaded(family)),
        }
    }

    /// Checks that `family`'s kernel set is loaded.
    pub fn check_loaded(&self, family: Family) -> Result<(), ExecError> {
        match self.funcs[family.index()] {
            Some(_) => Ok(()),
            None => Err(self.not_loaded(family)),
        }
    }

    fn not_loaded(&self, family: Family) -> ExecError {
        let loaded: Vec<&str> = self.sets.iter().map(|s| s.name()).collect();
        ExecError::Invalid(format!(
            "kernel {} is in the {} kernel set, which this device's options do not load \
             (loaded: {})",
            family.base_name(),
            family.set(),
            loaded.join(", ")
        ))
    }

    /// Persistent grid limit of `family`'s BE kernel (0 when its kernel set
    /// is not loaded).
    pub fn resident(&self, family: Family) -> u32 {
        self.resident[family.index()]
    }
}

/// An NVIDIA GPU driven through the CUDA driver API.
pub struct CudaDevice {
    shared: Arc<DeviceShared>,
}

/// The process's pinned input pool, made by the first device asked for it:
/// its buffers are registered for every context (portable), so all devices
/// share it, and a model loaded on several devices prepares its buffers
/// once.
static HOST_POOL: std::sync::OnceLock<Arc<reef_exec::host_pool::HostPool>> =
    std::sync::OnceLock::new();

impl CudaDevice {
    /// Opens GPU `ordinal` with options from the environment
    /// (`REEF_PRECISION`, `REEF_TF32`). Returns [`ExecError::Invalid`] when
    /// they do not parse and [`ExecError::Unavailable`] when libcuda,
    /// libnvrtc or the GPU is missing.
    pub fn new(ordinal: usize) -> Result<Self, ExecError> {
        let options = CudaOptions::from_env().map_err(|e| ExecError::Invalid(e.to_string()))?;
        Self::with_options(ordinal, options)
    }

    /// Opens GPU `ordinal` with explicit options.
    pub fn with_options(ordinal: usize, options: CudaOptions) -> Result<Self, ExecError> {
        let count = driver_ready()?;
        if ordinal >= count {
            return Err(ExecError::Unavailable(format!(
                "no CUDA device {ordinal} ({count} visible)"
            )));
        }
        let ctx = CudaContext::new(ordinal).call("cuDevicePrimaryCtxRetain")?;
        // SAFETY: reef orders all its work explicitly (streams, synchronize);
        // cudarc's per-buffer event tracking is not used by this crate.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().call("cuDeviceGetName")?;
        let (major, minor) = ctx.compute_capability().call("cuDeviceGetAttribute")?;
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .call("cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)")?
            .max(1) as u32;
        let priorities =
            result::stream::get_priority_range().call("cuCtxGetStreamPriorityRange")?;

        let sets = options.kernel_sets(major, minor);
        let (modules, module_key) = match load_modules(&ctx, major, minor, &sets, false, &options) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cached kernel modules failed to load; recompiling");
                load_modules(&ctx, major, minor, &sets, true, &options)?
            }
        };
        let mut funcs = Vec::with_capacity(Family::ALL.len());
        let mut resident = Vec::with_capacity(Family::ALL.len());
        for family in Family::ALL {
            let Some(pos) = sets.iter().position(|&s| s == family.set()) else {
                funcs.push(None);
                resident.push(0);
                continue;
            };
            let module = &modules[pos];
            let rt = load_function(module, family, Variant::Rt)?;
            let be = load_function(module, family, Variant::Be)?;
            let threads = family.threads();
            let dynamic = family.dynamic_smem();
            for (f, v) in [(&rt, Variant::Rt), (&be, Variant::Be)] {
                check_function(f, family, v, threads)?;
                if dynamic > 0 {
                    f.set_attribute(
                        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        dynamic as i32,
                    )
                    .call(&format!(
                        "cuFuncSetAttribute({}, MAX_DYNAMIC_SHARED_SIZE_BYTES = {dynamic})",
                        family.entry(v)
                    ))?;
                    // All of the unified L1 as shared memory, so that as
                    // many blocks as the registers allow fit beside each
                    // other (two of the wgmma matmul's RT blocks).
                    f.set_attribute(
                        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
                        100,
                    )
                    .call(&format!(
                        "cuFuncSetAttribute({}, PREFERRED_SHARED_MEMORY_CARVEOUT = 100)",
                        family.entry(v)
                    ))?;
                }
            }
            let per_sm = be
                .occupancy_max_active_blocks_per_multiprocessor(threads, dynamic as usize, None)
                .call("cuOccupancyMaxActiveBlocksPerMultiprocessor")?;
            if per_sm == 0 {
                return Err(ExecError::Cuda(format!(
                    "{} cannot be resident with {threads} threads",
                    family.entry(Variant::Be)
                )));
            }
            resident.push(sms * per_sm);
            funcs.push(Some([rt, be]));
        }
        let wgmma = crate::kernels::has_wgmma(major, minor) && options.wgmma;
        // The base set is always first (CudaOptions::kernel_sets).
        let hold = modules[0]
            .load_function("reef_hold")
            .call("cuModuleGetFunction(reef_hold)")?;
        let control = ctx
            .new_stream_with_priority(priorities.1)
            .call("cuStreamCreateWithPriority(control)")?;
        // Quick-drain lanes use the relay run once (`relay-once` cost BE
        // half of what `relay` did on the H100, Session 25).
        let relay_all = options.raise.relay_once().is_some();
        let relay = {
            let func = modules[0]
                .load_function("reef_relay")
                .call("cuModuleGetFunction(reef_relay)")?;
            parking_lot::Mutex::new(crate::relay::CudaRelay::new(
                crate::relay::relay_words(&ctx)?,
                crate::relay::CudaSpawn::new(&ctx, func, priorities.1)?,
                crate::relay::Timing {
                    once: options.raise.relay_once().unwrap_or(true),
                    ..crate::relay::Timing::GPU
                },
            ))
        };
        let probe = crate::probe::DrainProbe::attach(&ctx, &modules, &control)?;
        // What changes a kernel's launch beyond its plan: the GPU, the
        // compiled module and the options the launch builder reads.
        let tactic_scope = scope_key(&[
            &name,
            &sms.to_string(),
            &module_key,
            &format!(
                "{} wgmma={wgmma} tf32_weights={} k_major_weights={} split_waves={} gather_table={} tall_tiles={}",
                options.precision,
                options.tf32_weights,
                options.k_major_weights,
                options.split_waves,
                options.gather_table,
                options.tall_tiles
            ),
        ]);
        let tactic_cache = if options.tactics == TacticMode::Tune {
            TacticCache::open(compile::cache_dir().as_deref(), &tactic_scope)
        } else {
            TacticCache::open(None, &tactic_scope)
        };
        tracing::info!(
            device = %name, sms, arch = format!("sm_{major}{minor}"), precision = %options.precision,
            wgmma, rt_lean = options.rt_lean, be_direct = options.be_direct,
            be_direct_all = options.be_direct_all, be_told = options.be_told,
            raise = ?options.raise,
            flag_chunk = options.flag_chunk,
            tf32_weights = options.tf32_weights, k_major_weights = options.k_major_weights,
            split_waves = options.split_waves,
            gather_table = options.gather_table, tall_tiles = options.tall_tiles,
            tactics = %options.tactics, "CUDA device ready"
        );
        Ok(CudaDevice {
            shared: Arc::new(DeviceShared {
                relay,
                relay_all,
                probe,
                ctx,
                _modules: modules,
                sets,
                funcs,
                resident,
                name,
                sms,
                precision: options.precision,
                priorities,
                wgmma,
                rt_lean: options.rt_lean,
                be_direct: options.be_direct,
                be_direct_all: options.be_direct_all,
                be_told: options.be_told,
                raise: options.raise,
                tf32_weights: options.tf32_weights,
                k_major_weights: options.k_major_weights,
                split_waves: options.split_waves,
                gather_table: options.gather_table,
                tall_tiles: options.tall_tiles,
                tactics: options.tactics,
                tactic_cache,
                tactic_scope,
                control,
                hold,
                resident_weights: Default::default(),
            }),
        })
    }

    /// How the preemption relay's raises went so far; `None` while it is
    /// unused (`REEF_RAISE` other than `relay` or `relay-once`, and no lane
    /// made for quick drains has started an instance).
    pub fn relay_counts(&self) -> Option<crate::relay::RelayCounts> {
        let c = self.shared.relay.lock().counts();
        (self.shared.relay_all || c.launched > 0).then_some(c)
    }

    /// The arithmetic of convolutions and matmuls on this device.
    pub fn precision(&self) -> Precision {
        self.shared.precision
    }

    /// Whether convolutions and matmuls use tensor cores (TF32 or split
    /// TF32); false for exact f32.
    pub fn tf32(&self) -> bool {
        self.shared.precision.tensor_cores()
    }

    /// Persistent grid size of a BE kernel of the given family name (e.g. "conv_tc").
    pub fn be_grid_limit(&self, family_name: &str) -> Option<u32> {
        Family::ALL
            .iter()
            .find(|f| f.base_name() == family_name)
            .filter(|&&f| self.shared.check_loaded(f).is_ok())
            .map(|&f| self.shared.resident(f))
    }
}

/// The `-D` options that `options` add to the kernel module's compile.
fn module_defines(options: &CudaOptions) -> Vec<String> {
    if options.flag_chunk != 1 {
        vec![format!("-DREEF_FLAG_CHUNK={}", options.flag_chunk)]
    } else {
        vec![]
    }
}

/// Compiles the kernel modules for compute capability `major.minor` into
/// the kernel cache (`REEF_CACHE_DIR`), as a device with `options` would at
/// its first use, or every kernel set with `all`: NVRTC only, no GPU needed
/// (e.g. to ship the compiled modules in a container image). Returns what
/// each set came to.
pub fn precompile(
    major: i32,
    minor: i32,
    options: &CudaOptions,
    all: bool,
) -> Result<Vec<compile::SetCubin>, ExecError> {
    if compile::cache_dir().is_none() {
        return Err(ExecError::Invalid(
            "no kernel cache folder: set REEF_CACHE_DIR".into(),
        ));
    }
    let sets = if all {
        KernelSet::ALL
            .into_iter()
            .filter(|&s| s != KernelSet::Wgmma || crate::kernels::has_wgmma(major, minor))
            .collect()
    } else {
        options.kernel_sets(major, minor)
    };
    compile::module_cubins(major, minor, &sets, false, &module_defines(options))
}

/// The kernel modules of `sets`, loaded in that order, and one key for them
/// all (the sets' cache keys joined).
fn load_modules(
    ctx: &Arc<CudaContext>,
    major: i32,
    minor: i32,
    sets: &[KernelSet],
    fresh: bool,
    options: &CudaOptions,
) -> Result<(Vec<Arc<CudaModule>>, String), ExecError> {
    let cubins = compile::module_cubins(major, minor, sets, fresh, &module_defines(options))?;
    let mut modules = Vec::with_capacity(cubins.len());
    let mut keys = Vec::with_capacity(cubins.len());
    for c in cubins {
        let module = ctx
            .load_module(Ptx::from_binary(c.cubin))
            .call(&format!("cuModuleLoadData(kernel set {})", c.set))?;
        modules.push(module);
        keys.push(c.key);
    }
    Ok((modules, keys.join("+")))
}

fn load_function(
    module: &Arc<CudaModule>,
    family: Family,
    variant: Variant,
) -> Result<CudaFunction, ExecError> {
    let name = family.entry(variant);
    module
        .load_function(&name)
        .call(&format!("cuModuleGetFunction({name})"))
}

/// Checks the launch limits of a function: block size and static shared memory.
fn check_function(
    f: &CudaFunction,
    family: Family,
    variant: Variant,
    threads: u32,
) -> Result<(), ExecError> {
    let name = family.entry(variant);
    let attr = |a: sys::CUfunction_attribute, what: &str| -> Result<i32, ExecError> {
        // SAFETY: `f` is a live function of a loaded module.
        unsafe { result::function::get_function_attribute(f.cu_function(), a) }
            .call(&format!("cuFuncGetAttribute({name}, {what})"))
    };
    let max_threads = attr(
        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
        "MAX_THREADS_PER_BLOCK",
    )?;
    let smem = attr(
        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
        "SHARED_SIZE_BYTES",
    )?;
    if threads > 1024 || (max_threads as u32) < threads {
        return Err(ExecError::Cuda(format!(
            "{name}: {threads} threads per block exceed its limit {max_threads}"
        )));
    }
    if smem > 48 * 1024 {
        return Err(ExecError::Cuda(format!(
            "{name}: {smem} bytes of static shared memory exceed 48 KB"
        )));
    }
    Ok(())
}

impl Device for CudaDevice {
    fn name(&self) -> String {
        format!("{}, {} SMs", self.shared.name, self.shared.sms)
    }

    fn kind(&self) -> DeviceKind {
        DeviceKind::Cuda
    }

    fn compute_units(&self) -> usize {
        self.shared.sms as usize
    }

    fn load(&self, plan: Arc<Plan>) -> reef_exec::Result<Arc<dyn ModelHandle>> {
        let model = CudaModel::load(self.shared.clone(), plan)?;
        let model: Arc<dyn ModelHandle> = match self.shared.tactics {
            TacticMode::Rules => model,
            TacticMode::Tune => crate::tune::tune(model)?.0,
            TacticMode::Random(seed) => crate::tune::randomize(model, seed)?,
            TacticMode::Round(r) => crate::tune::round(model, r)?,
        };
        Ok(model)
    }

    fn lane(&self, priority: Priority) -> reef_exec::Result<Box<dyn reef_exec::Lane>> {
        self.lane_with(priority, reef_exec::LaneOptions::default())
    }

    /// A BE lane made for quick drains gets a told word and has its flag
    /// raised through the preemption relay, run once per raise.
    fn lane_with(
        &self,
        priority: Priority,
        options: reef_exec::LaneOptions,
    ) -> reef_exec::Result<Box<dyn reef_exec::Lane>> {
        Ok(Box::new(CudaLane::new(
            self.shared.clone(),
            priority,
            options,
        )?))
    }

    /// One pool for the process ([`HOST_POOL`]), made by the first call
    /// (whose `max_bytes` holds); tensors of 64 KiB and up.
    fn host_pool(&self, max_bytes: usize) -> Option<Arc<reef_exec::host_pool::HostPool>> {
        (max_bytes > 0).then(|| {
            HOST_POOL
                .get_or_init(|| {
                    let pinner = crate::pinned::CudaPinner {
                        ctx: self.shared.ctx.clone(),
                    };
                    Arc::new(reef_exec::host_pool::HostPool::new(
                        Box::new(pinner),
                        max_bytes,
                        crate::pinned::MIN_PINNED_BYTES,
                    ))
                })
                .clone()
        })
    }

    /// With the drain probe compiled in (`REEF_DRAIN_PROBE`): its
    /// histograms ([`crate::probe`]).
    fn histograms(&self) -> reef_exec::Result<Vec<reef_exec::DeviceHistogram>> {
        match &self.shared.probe {
            Some(p) => p.read(&self.shared.ctx),
            None => Ok(Vec::new()),
        }
    }

    /// With the relay (`REEF_RAISE=relay` or `relay-once`): its instances
    /// launched and its raises relayed, made by the driver, and posted
    /// late.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.relay_counts().map_or_else(Vec::new, |c| {
            vec![
                ("relay_launched", c.launched),
                ("relay_relayed", c.relayed),
                ("relay_driver", c.driver),
                ("relay_late", c.late),
            ]
        })
    }

    /// Maps the client's allocation into this device's primary context
    /// ([`crate::ipc::CudaIpcRegion`]).
    fn open_shared(
        &self,
        raw_handle: &[u8],
        byte_size: usize,
    ) -> reef_exec::Result<Arc<dyn reef_exec::SharedRegion>> {
        Ok(Arc::new(crate::ipc::CudaIpcRegion::open(
            self.shared.ctx.clone(),
            raw_handle,
            byte_size,
        )?))
    }

    /// By default each lane's flag is written by one `cuMemsetD32Async` on
    /// the control stream ([`Lane::set_preempt`](reef_exec::Lane::set_preempt));
    /// with `REEF_RAISE=batch` one `cuStreamBatchMemOp` writes them all,
    /// with `write` one `cuStreamWriteValue32` each; where any lane's flag
    /// is the relay's (`relay`, `relay-once`, or a lane made for quick
    /// drains) a host store asks the running relay kernel to write them
    /// ([`crate::relay`]), and the lanes it cannot raise get the memset.
    /// Lanes without a device flag are always raised one by one.
    fn raise_preempt(&self, lanes: &mut [&mut dyn reef_exec::Lane]) -> reef_exec::Result<()> {
        use crate::precision::RaiseOp;
        let flags: Vec<u64> = lanes
            .iter()
            .map(|l| l.flag_address().unwrap_or(0))
            .collect();
        let relayed = {
            let mut relay = self.shared.relay.lock();
            relay.serves_any(&flags).then(|| relay.raise(&flags))
        };
        if let Some(raised) = relayed {
            for (l, done) in lanes.iter_mut().zip(raised) {
                if !done {
                    l.set_preempt(true)?;
                }
            }
            return Ok(());
        }
        let flags: Option<Vec<u64>> = match self.shared.raise {
            RaiseOp::Memset | RaiseOp::Relay | RaiseOp::RelayOnce => None,
            RaiseOp::Batch | RaiseOp::Write => lanes.iter().map(|l| l.flag_address()).collect(),
        };
        let Some(flags) = flags else {
            for l in lanes.iter_mut() {
                l.set_preempt(true)?;
            }
            return Ok(());
        };
        if flags.is_empty() {
            return Ok(());
        }
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        if self.shared.raise == RaiseOp::Write {
            for &addr in &flags {
                // SAFETY: `addr` is a live 4-byte flag allocation of this
                // context (its lane is borrowed for the call).
                unsafe {
                    sys::cuStreamWriteValue32_v2(
                        self.shared.control.cu_stream(),
                        addr,
                        1,
                        sys::CUstreamWriteValue_flags::CU_STREAM_WRITE_VALUE_DEFAULT as u32,
                    )
                }
                .result()
                .call("cuStreamWriteValue32(preemption flag)")?;
            }
            return Ok(());
        }
        let mut ops: Vec<sys::CUstreamBatchMemOpParams> = flags
            .iter()
            .map(|&addr| {
                // SAFETY: an all-zero bit pattern is a valid value of this
                // plain-data C union; the write-value member is filled next.
                let mut op: sys::CUstreamBatchMemOpParams = unsafe { std::mem::zeroed() };
                op.writeValue.operation =
                    sys::CUstreamBatchMemOpType::CU_STREAM_MEM_OP_WRITE_VALUE_32;
                op.writeValue.address = addr;
                op.writeValue.__bindgen_anon_1.value = 1;
                op.writeValue.flags =
                    sys::CUstreamWriteValue_flags::CU_STREAM_WRITE_VALUE_DEFAULT as u32;
                op
            })
            .collect();
        // SAFETY: `ops` holds `ops.len()` initialised write operations, each
        // to a live 4-byte flag allocation of this context (the lanes own
        // them and are borrowed for the call); the driver copies the array
        // before returning.
        unsafe {
            sys::cuStreamBatchMemOp_v2(
                self.shared.control.cu_stream(),
                ops.len() as u32,
                ops.as_mut_ptr(),
                0,
            )
        }
        .result()
        .call("cuStreamBatchMemOp(preemption flags)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_pick_the_kernel_sets_they_launch_from() {
        use KernelSet::*;
        let d = CudaOptions::default();
        // The default tunes tactics, whose candidates include the wide tiles.
        assert_eq!(d.kernel_sets(9, 0), vec![Base, Tf32, Tf32Wide]);
        let rules = CudaOptions {
            tactics: TacticMode::Rules,
            ..d
        };
        assert_eq!(rules.kernel_sets(9, 0), vec![Base, Tf32]);
        let tall = CudaOptions {
            tall_tiles: true,
            ..rules
        };
        assert_eq!(tall.kernel_sets(9, 0), vec![Base, Tf32, Tf32Wide]);
        for t in [
            TacticMode::Tune,
            TacticMode::Round(1),
            TacticMode::Random(3),
        ] {
            let o = CudaOptions { tactics: t, ..d };
            assert_eq!(o.kernel_sets(8, 0), vec![Base, Tf32, Tf32Wide], "{t}");
        }
        let wg = CudaOptions {
            wgmma: true,
            ..rules
        };
        assert_eq!(wg.kernel_sets(9, 0), vec![Base, Tf32, Wgmma]);
        // No wgmma off sm_90: the option is ignored there.
        assert_eq!(wg.kernel_sets(8, 9), vec![Base, Tf32]);
        for (p, set) in [(Precision::F32, F32), (Precision::Tf32x3, SplitTf32)] {
            let o = CudaOptions {
                precision: p,
                wgmma: true,
                tall_tiles: true,
                tactics: TacticMode::Tune,
                ..d
            };
            assert_eq!(o.kernel_sets(9, 0), vec![Base, set], "{p}");
        }
        // Every family a device's launch builder can pick for an option set
        // is in one of its sets: the GEMM families of each precision.
        for p in [Precision::Tf32, Precision::Tf32x3, Precision::F32] {
            let o = CudaOptions { precision: p, ..d };
            let sets = o.kernel_sets(9, 0);
            for tile in [
                crate::geometry::GemmTile::Medium,
                crate::geometry::GemmTile::Large,
            ] {
                let conv = tile.conv_family(p);
                assert!(sets.contains(&conv.set()), "{conv:?} for {p}");
            }
            let mm = crate::geometry::GemmTile::Medium.matmul_family(p);
            assert!(sets.contains(&mm.set()), "{mm:?} for {p}");
            assert!(sets.contains(&mm.with_tf32_weights().set()));
        }
    }
}
