//! [`CudaModel`]: a plan with its weights resident on the GPU.

use crate::context::CudaTaskContext;
use crate::device::DeviceShared;
use crate::error::CudaCall;
use crate::launch::{Addresses, Builder};
use crate::memory::DeviceBuffer;
use crate::precision::Precision;
use crate::tf32_weights;
use cudarc::driver::result;
use reef_exec::{Context, ExecError, ModelHandle, Plan};
use reef_plan::plan::BufferId;
use std::any::Any;
use std::collections::HashSet;
use std::sync::{Arc, Weak};

/// A model loaded on a CUDA device.
pub struct CudaModel {
    pub(crate) shared: Arc<DeviceShared>,
    plan: Arc<Plan>,
    weights: DeviceBuffer,
    /// Split-K scratch every context needs: (workspace bytes, tile counters).
    scratch: (u64, u32),
    /// Weight buffers stored rounded to TF32 (`tf32` precision only).
    tf32_weights: Arc<HashSet<BufferId>>,
    this: Weak<CudaModel>,
}

impl CudaModel {
    /// Validates every kernel of `plan` and uploads its weights.
    pub(crate) fn load(shared: Arc<DeviceShared>, plan: Arc<Plan>) -> Result<Arc<Self>, ExecError> {
        // Validate all launches up front (with placeholder addresses), so a
        // bad plan fails here and not on a context or a launch.
        let probe = Addresses {
            weights: 1 << 40,
            arena: 2 << 40,
            counters: 3 << 40,
            progress: 4 << 40,
            table: 5 << 40,
            tile_counters: 6 << 40,
            workspace: 7 << 40,
        };
        let tf32_weights = Arc::new(
            if shared.precision == Precision::Tf32 && shared.tf32_weights {
                tf32_weights::choose(&plan)
            } else {
                HashSet::new()
            },
        );
        let built = Builder::new(&plan, probe, shared.precision)?
            .sms(shared.sms)
            .wgmma(shared.wgmma)
            .split_waves(shared.split_waves)
            .gather_table(shared.gather_table)
            .tall_tiles(shared.tall_tiles)
            .tf32_weights(tf32_weights.clone())
            .build_all()?;
        let scratch = (
            built.workspace_bytes,
            built.counter_start.last().copied().unwrap_or(0),
        );
        let weights = DeviceBuffer::alloc(&shared.ctx, plan.weights.len())?;
        let rounded;
        let blob: &[u8] = if tf32_weights.is_empty() {
            &plan.weights
        } else {
            rounded = tf32_weights::rounded_blob(&plan, &tf32_weights);
            &rounded
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
            weights = plan.weights.len(),
            tf32_weights = tf32_weights.len(),
            "model loaded on CUDA"
        );
        Ok(Arc::new_cyclic(|this| CudaModel {
            shared,
            plan,
            weights,
            scratch,
            tf32_weights,
            this: this.clone(),
        }))
    }

    /// Device address of the weight blob.
    pub(crate) fn weights_ptr(&self) -> u64 {
        self.weights.ptr()
    }

    /// Split-K scratch of one context: (workspace bytes, tile counters).
    pub(crate) fn scratch(&self) -> (u64, u32) {
        self.scratch
    }

    /// The weight buffers stored rounded to TF32.
    pub(crate) fn tf32_weights(&self) -> Arc<HashSet<BufferId>> {
        self.tf32_weights.clone()
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
