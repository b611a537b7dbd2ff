//! [`CudaModel`]: a plan with its weights resident on the GPU.

use crate::context::CudaTaskContext;
use crate::device::DeviceShared;
use crate::error::CudaCall;
use crate::launch::{Addresses, Builder};
use crate::memory::DeviceBuffer;
use cudarc::driver::result;
use reef_exec::{Context, ExecError, ModelHandle, Plan};
use std::any::Any;
use std::sync::{Arc, Weak};

/// A model loaded on a CUDA device.
pub struct CudaModel {
    pub(crate) shared: Arc<DeviceShared>,
    plan: Arc<Plan>,
    weights: DeviceBuffer,
    /// Split-K scratch every context needs: (workspace bytes, tile counters).
    scratch: (u64, u32),
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
        let built = Builder::new(&plan, probe, shared.precision)?
            .sms(shared.sms)
            .wgmma(shared.wgmma)
            .build_all()?;
        let scratch = (
            built.workspace_bytes,
            built.counter_start.last().copied().unwrap_or(0),
        );
        let weights = DeviceBuffer::alloc(&shared.ctx, plan.weights.len())?;
        if !plan.weights.is_empty() {
            // SAFETY: the destination holds at least `plan.weights.len()` bytes.
            unsafe { result::memcpy_htod_sync(weights.ptr(), &plan.weights) }
                .call("cuMemcpyHtoD(weights)")?;
        }
        // A pageable upload may still be in flight when cuMemcpyHtoD returns;
        // make it complete before any stream can read the weights.
        shared.ctx.synchronize().call("cuCtxSynchronize")?;
        tracing::info!(model = %plan.name, weights = plan.weights.len(), "model loaded on CUDA");
        Ok(Arc::new_cyclic(|this| CudaModel {
            shared,
            plan,
            weights,
            scratch,
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
