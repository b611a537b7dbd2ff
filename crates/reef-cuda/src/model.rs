//! [`CudaModel`]: a plan with its weights resident on the GPU.

use crate::context::CudaTaskContext;
use crate::device::DeviceShared;
use crate::error::CudaCall;
use crate::launch::{Addresses, Builder, Built, GemmChoice};
use crate::memory::DeviceBuffer;
use crate::precision::Precision;
use crate::tactics::Tactic;
use crate::tune::TuneReport;
use crate::weight_layout::WeightLayout;
use cudarc::driver::result;
use reef_exec::{Context, ExecError, ModelHandle, Plan};
use std::any::Any;
use std::sync::{Arc, Weak};

/// A model loaded on a CUDA device.
pub struct CudaModel {
    pub(crate) shared: Arc<DeviceShared>,
    plan: Arc<Plan>,
    /// The weight blob, shared with the models loaded from the same host
    /// blob in the same layout ([`crate::resident`]).
    weights: Arc<DeviceBuffer>,
    /// Split-K scratch every context needs: (workspace bytes, tile counters).
    scratch: (u64, u32),
    /// How the weights are stored (rounded to TF32, K-major; `tf32`
    /// precision only).
    layout: Arc<WeightLayout>,
    /// Per-kernel GEMM tactics that replace the rules' ([`crate::tactics`]).
    tactics: Arc<Vec<Option<Tactic>>>,
    /// Per kernel, the GEMM problem and tactics of the probe build.
    gemms: Vec<Option<GemmChoice>>,
    /// What tuning found, when the tactics were tuned.
    tune_report: Option<TuneReport>,
    this: Weak<CudaModel>,
}

/// Builds every launch of `plan` at `addr` with the device's options, the
/// model's weight `layout` and `tactics`.
pub(crate) fn build_with(
    shared: &DeviceShared,
    plan: &Plan,
    addr: Addresses,
    layout: Arc<WeightLayout>,
    tactics: Arc<Vec<Option<Tactic>>>,
) -> Result<Built, ExecError> {
    Builder::new(plan, addr, shared.precision)?
        .sms(shared.sms)
        .wgmma(shared.wgmma)
        .split_waves(shared.split_waves)
        .gather_table(shared.gather_table)
        .tall_tiles(shared.tall_tiles)
        .weight_layout(layout)
        .tactics(tactics)
        .build_all()
}

/// Validates every launch of `plan` with placeholder addresses and sizes
/// its split-K scratch: (workspace bytes, tile counters).
pub(crate) fn probe(
    shared: &DeviceShared,
    plan: &Plan,
    layout: Arc<WeightLayout>,
    tactics: Arc<Vec<Option<Tactic>>>,
) -> Result<((u64, u32), Built), ExecError> {
    let built = build_with(shared, plan, Addresses::PROBE, layout, tactics)?;
    for l in &built.launches {
        shared.check_loaded(l.family)?;
    }
    let scratch = (
        built.workspace_bytes,
        built.counter_start.last().copied().unwrap_or(0),
    );
    Ok((scratch, built))
}

impl CudaModel {
    /// Validates every kernel of `plan` and uploads its weights.
    pub(crate) fn load(shared: Arc<DeviceShared>, plan: Arc<Plan>) -> Result<Arc<Self>, ExecError> {
        let layout = Arc::new(
            if shared.precision == Precision::Tf32 && shared.tf32_weights {
                WeightLayout::choose(&plan, shared.k_major_weights)
            } else {
                WeightLayout::default()
            },
        );
        // Validate all launches up front (with placeholder addresses), so a
        // bad plan fails here, before its weights are uploaded, and not on
        // a context or a launch.
        let tactics = Arc::<Vec<Option<Tactic>>>::default();
        let probed = probe(&shared, &plan, layout.clone(), tactics.clone())?;
        let key = layout.key(&plan);
        if let Some(weights) = shared.resident_weights.find(&plan.weights, &key) {
            tracing::info!(
                model = %plan.name,
                batch = plan.batch,
                weights = plan.weights.len(),
                "model loaded on CUDA, its weights already resident"
            );
            return Self::assemble(shared, plan, weights, layout, tactics, probed, None);
        }
        let weights = DeviceBuffer::alloc(&shared.ctx, plan.weights.len())?;
        let laid_out;
        let blob: &[u8] = if layout.is_empty() {
            &plan.weights
        } else {
            laid_out = layout.blob(&plan);
            &laid_out
        };
        if !blob.is_empty() {
            // SAFETY: the destination holds `plan.weights.len()` bytes, the
            // length of `blob`.
            unsafe { result::memcpy_htod_sync(weights.ptr(), blob) }
                .call("cuMemcpyHtoD(weights)")?;
        }
        // A pageable upload may still be in flight when cuMemcpyHtoD returns;
        // make it complete before any stream can read the weights.
        shared.ctx.synchronize().call("cuCtxSynchronize")?;
        tracing::info!(
            model = %plan.name,
            batch = plan.batch,
            weights = plan.weights.len(),
            tf32_weights = layout.rounded.len(),
            k_major_weights = layout.k_major.len(),
            "model loaded on CUDA"
        );
        let weights = Arc::new(weights);
        shared.resident_weights.insert(&plan.weights, key, &weights);
        Self::assemble(shared, plan, weights, layout, tactics, probed, None)
    }

    /// The model over resident `weights` with GEMM `tactics`, sized by
    /// `probed`, the probe build of those tactics.
    fn assemble(
        shared: Arc<DeviceShared>,
        plan: Arc<Plan>,
        weights: Arc<DeviceBuffer>,
        layout: Arc<WeightLayout>,
        tactics: Arc<Vec<Option<Tactic>>>,
        (scratch, built): ((u64, u32), Built),
        tune_report: Option<TuneReport>,
    ) -> Result<Arc<Self>, ExecError> {
        Ok(Arc::new_cyclic(|this| CudaModel {
            shared,
            plan,
            weights,
            scratch,
            layout,
            tactics,
            gemms: built.gemms,
            tune_report,
            this: this.clone(),
        }))
    }

    /// This model with `tactics` in place of its own (checked and sized by
    /// a probe build; a tactic a kernel cannot run fails it). Needs the only
    /// reference to the model: no context of it may be alive.
    pub(crate) fn with_tactics(
        self: Arc<Self>,
        tactics: Vec<Option<Tactic>>,
        tune_report: Option<TuneReport>,
    ) -> Result<Arc<Self>, ExecError> {
        let tactics = Arc::new(tactics);
        let probed = probe(
            &self.shared,
            &self.plan,
            self.layout.clone(),
            tactics.clone(),
        )?;
        let me = Arc::try_unwrap(self).map_err(|_| {
            ExecError::Invalid("model tactics changed while a context of it is alive".into())
        })?;
        let CudaModel {
            shared,
            plan,
            weights,
            layout,
            ..
        } = me;
        Self::assemble(shared, plan, weights, layout, tactics, probed, tune_report)
    }

    /// What the load-time tuner found (`REEF_TACTICS=tune`; None otherwise).
    pub fn tune_report(&self) -> Option<TuneReport> {
        self.tune_report
    }

    /// The per-kernel tactic overrides contexts are built with.
    pub(crate) fn tactics(&self) -> Arc<Vec<Option<Tactic>>> {
        self.tactics.clone()
    }

    /// Per kernel, the GEMM problem with the rules' tactic and the one used.
    pub fn gemms(&self) -> &[Option<GemmChoice>] {
        &self.gemms
    }

    /// Whether this model and `other` read one device copy of their weights
    /// (loaded from plans that share a blob, [`reef_plan::Plan::share_weights`],
    /// in the same layout).
    pub fn shares_weights_with(&self, other: &CudaModel) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
    }

    /// Device address of the weight blob.
    pub(crate) fn weights_ptr(&self) -> u64 {
        self.weights.ptr()
    }

    /// Split-K scratch of one context: (workspace bytes, tile counters).
    pub(crate) fn scratch(&self) -> (u64, u32) {
        self.scratch
    }

    /// How the weights are stored.
    pub(crate) fn weight_layout(&self) -> Arc<WeightLayout> {
        self.layout.clone()
    }
}

impl ModelHandle for CudaModel {
    fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    fn context(&self) -> reef_exec::Result<Box<dyn Context>> {
        let me = self
            .this
            .upgrade()
            .ok_or_else(|| ExecError::Invalid("model is being dropped".into()))?;
        Ok(Box::new(CudaTaskContext::new(me)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
