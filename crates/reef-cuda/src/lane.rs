//! [`CudaLane`]: a prioritized CUDA stream with its preemption flag (an i32
//! in device memory, never host-mapped), a high-priority control stream that
//! writes the flag, and a pool of events that tracks retired launches.

use crate::context::CudaTaskContext;
use crate::device::DeviceShared;
use crate::error::CudaCall;
use crate::memory::DeviceBuffer;
use cudarc::driver::{result, sys, CudaStream};
use reef_exec::{Context, ExecError, Lane, Priority, Variant};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::Arc;

/// A lane on a CUDA device.
pub struct CudaLane {
    shared: Arc<DeviceShared>,
    priority: Priority,
    stream: Arc<CudaStream>,
    control: Arc<CudaStream>,
    flag: DeviceBuffer,
    /// Events recorded after each launch, oldest first (None: recording failed,
    /// the launch is known retired only after a synchronize).
    in_flight: VecDeque<Option<sys::CUevent>>,
    free: Vec<sys::CUevent>,
    enqueued: u64,
    retired: u64,
}

// SAFETY: CUevent handles are plain driver handles usable from any thread
// once the owning context is bound (every method binds it first); the lane is
// only ever used from one thread at a time (&mut self).
unsafe impl Send for CudaLane {}

impl CudaLane {
    pub(crate) fn new(shared: Arc<DeviceShared>, priority: Priority) -> Result<Self, ExecError> {
        let ctx = &shared.ctx;
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let (least, greatest) = shared.priorities;
        let prio = match priority {
            Priority::High => greatest,
            Priority::Low => least,
        };
        let stream = ctx
            .new_stream_with_priority(prio)
            .call("cuStreamCreateWithPriority(lane)")?;
        let control = ctx
            .new_stream_with_priority(greatest)
            .call("cuStreamCreateWithPriority(control)")?;
        let flag = DeviceBuffer::alloc(ctx, 4)?;
        // SAFETY: the flag allocation holds at least one u32.
        unsafe { sys::cuMemsetD32Async(flag.ptr(), 0, 1, control.cu_stream()).result() }
            .call("cuMemsetD32Async(flag)")?;
        control.synchronize().call("cuStreamSynchronize(control)")?;
        Ok(CudaLane {
            shared,
            priority,
            stream,
            control,
            flag,
            in_flight: VecDeque::new(),
            free: Vec::new(),
            enqueued: 0,
            retired: 0,
        })
    }

    fn task<'c>(&self, ctx: &'c mut dyn Context) -> Result<&'c mut CudaTaskContext, ExecError> {
        let task = ctx
            .as_any_mut()
            .downcast_mut::<CudaTaskContext>()
            .ok_or_else(|| ExecError::Invalid("context is not a CUDA context".into()))?;
        if !Arc::ptr_eq(&task.shared, &self.shared) {
            return Err(ExecError::Invalid(
                "context belongs to another CUDA device".into(),
            ));
        }
        Ok(task)
    }

    /// Records a completion event after the last launch.
    fn record(&mut self) -> Result<(), ExecError> {
        let ev = match self.free.pop() {
            Some(ev) => ev,
            None => match result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING) {
                Ok(ev) => ev,
                Err(e) => {
                    self.in_flight.push_back(None);
                    return Err(ExecError::Cuda(format!("cuEventCreate: {e}")));
                }
            },
        };
        // SAFETY: `ev` is a live event of this context; the stream is live.
        match unsafe { result::event::record(ev, self.stream.cu_stream()) } {
            Ok(()) => {
                self.in_flight.push_back(Some(ev));
                Ok(())
            }
            Err(e) => {
                self.free.push(ev);
                self.in_flight.push_back(None);
                Err(ExecError::Cuda(format!("cuEventRecord: {e}")))
            }
        }
    }

    /// Marks everything retired after a successful synchronize.
    fn retire_all(&mut self) {
        self.free.extend(self.in_flight.drain(..).flatten());
        self.retired = self.enqueued;
    }
}

impl Lane for CudaLane {
    fn priority(&self) -> Priority {
        self.priority
    }

    fn begin(&mut self, ctx: &mut dyn Context, from: usize) -> reef_exec::Result<()> {
        let task = self.task(ctx)?;
        let n = task.kernel_count();
        if from > n {
            return Err(ExecError::Invalid(format!(
                "begin at {from} of {n} kernels"
            )));
        }
        let (counters, progress) = (task.counter_ptr(from), task.progress_ptr());
        let (tiles, ntiles) = task.tile_counters_from(from);
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let s = self.stream.cu_stream();
        // SAFETY: counters[from..n], the split-K tile counters of kernels
        // from.. (a suffix of the tile counters) and the progress word lie
        // inside the context's state buffer, which outlives the stream's work
        // (its drop frees with cuMemFree, which waits for the device).
        unsafe {
            if n > from {
                sys::cuMemsetD32Async(counters, 0, n - from, s)
                    .result()
                    .call("cuMemsetD32Async(done counters)")?;
            }
            // A preempted split-K kernel leaves partial arrivals behind.
            if ntiles > 0 {
                sys::cuMemsetD32Async(tiles, 0, ntiles, s)
                    .result()
                    .call("cuMemsetD32Async(tile counters)")?;
            }
            sys::cuMemsetD32Async(progress, from as u32, 1, s)
                .result()
                .call("cuMemsetD32Async(progress)")?;
        }
        Ok(())
    }

    fn enqueue(
        &mut self,
        ctx: &mut dyn Context,
        index: usize,
        variant: Variant,
    ) -> reef_exec::Result<()> {
        let task = self.task(ctx)?;
        let launch = *task.launch(index).ok_or_else(|| {
            ExecError::Invalid(format!("kernel {index} of {}", task.kernel_count()))
        })?;
        let family = launch.family;
        let mut params = launch.params;
        params.hdr_mut().flag = self.flag.ptr();
        let grid = launch.grid(variant, self.shared.resident(family));
        let func = self.shared.func(family, variant);
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let bytes = params.bytes();
        let mut args = [bytes.as_ptr() as *mut c_void];
        // SAFETY: the function takes exactly one by-value parameter whose C
        // layout `params` mirrors (see params.rs); cuLaunchKernel copies the
        // bytes before returning. Every address inside was validated against
        // the plan's buffers and points into live allocations of this context
        // and model. Grid >= 1 and the block size matches __launch_bounds__.
        unsafe {
            result::launch_kernel(
                func.cu_function(),
                (grid, 1, 1),
                (family.threads(), 1, 1),
                0,
                self.stream.cu_stream(),
                &mut args,
            )
        }
        .map_err(|e| ExecError::Cuda(format!("cuLaunchKernel({}): {e}", family.entry(variant))))?;
        self.enqueued += 1;
        self.record()
    }

    fn retired(&mut self) -> reef_exec::Result<u64> {
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        while let Some(&Some(ev)) = self.in_flight.front() {
            // SAFETY: `ev` is a live event of this context.
            match unsafe { result::event::query(ev) } {
                Ok(()) => {
                    self.in_flight.pop_front();
                    self.free.push(ev);
                    self.retired += 1;
                }
                Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NOT_READY => break,
                Err(e) => return Err(ExecError::Cuda(format!("cuEventQuery: {e}"))),
            }
        }
        Ok(self.retired)
    }

    fn enqueued(&self) -> u64 {
        self.enqueued
    }

    fn synchronize(&mut self) -> reef_exec::Result<()> {
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        self.stream
            .synchronize()
            .call("cuStreamSynchronize(lane)")?;
        self.retire_all();
        Ok(())
    }

    fn set_preempt(&mut self, on: bool) -> reef_exec::Result<()> {
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: the flag allocation holds at least one u32.
        unsafe {
            sys::cuMemsetD32Async(self.flag.ptr(), on as u32, 1, self.control.cu_stream()).result()
        }
        .call("cuMemsetD32Async(preemption flag)")?;
        self.control
            .synchronize()
            .call("cuStreamSynchronize(control)")
    }
}

impl Drop for CudaLane {
    fn drop(&mut self) {
        if self.shared.ctx.bind_to_thread().is_err() {
            return;
        }
        if let Err(e) = self.stream.synchronize() {
            tracing::error!(error = %e, "lane synchronize on drop failed");
        }
        for ev in self
            .free
            .drain(..)
            .chain(self.in_flight.drain(..).flatten())
        {
            // SAFETY: each event was created by this lane and is destroyed once.
            if let Err(e) = unsafe { result::event::destroy(ev) } {
                tracing::error!(error = %e, "cuEventDestroy failed");
            }
        }
    }
}
