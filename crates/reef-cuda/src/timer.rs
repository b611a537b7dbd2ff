//! [`StreamTimer`]: two timing events on one stream, for the device's time
//! between two points of a lane's work ([`reef_exec::Lane::start_timer`]):
//! how long an RT task's first kernel took to run, from the moment the
//! device reached the task on an idle stream, waiting for BE blocks to
//! leave the SMs included.

use crate::device::DeviceShared;
use crate::error::CudaCall;
use cudarc::driver::{result, sys};
use reef_exec::ExecError;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Started,
    Stopped,
}

/// A start and a stop event with timing, recorded on a lane's stream.
pub(crate) struct StreamTimer {
    shared: Arc<DeviceShared>,
    start: sys::CUevent,
    stop: sys::CUevent,
    state: State,
}

// SAFETY: CUevent handles are plain driver handles usable from any thread
// once the owning context is bound (every method binds it first); the timer
// is used by one lane, from one thread at a time (&mut self).
unsafe impl Send for StreamTimer {}

impl StreamTimer {
    pub(crate) fn new(shared: Arc<DeviceShared>) -> Result<Self, ExecError> {
        shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let start = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .call("cuEventCreate(timer start)")?;
        let stop = match result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT) {
            Ok(e) => e,
            Err(e) => {
                // SAFETY: created just above, never recorded, destroyed once.
                let _ = unsafe { result::event::destroy(start) };
                return Err(ExecError::Cuda(format!("cuEventCreate(timer stop): {e}")));
            }
        };
        Ok(StreamTimer {
            shared,
            start,
            stop,
            state: State::Idle,
        })
    }

    fn record(&self, ev: sys::CUevent, stream: sys::CUstream, what: &str) -> Result<(), ExecError> {
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: `ev` is a live event of this context and `stream` a live
        // stream of it (the lane's, which outlives its timer's use).
        unsafe { result::event::record(ev, stream) }.call(what)
    }

    /// Records the start on `stream` (a timing still unread is dropped).
    pub(crate) fn start(&mut self, stream: sys::CUstream) -> Result<(), ExecError> {
        self.state = State::Idle;
        self.record(self.start, stream, "cuEventRecord(timer start)")?;
        self.state = State::Started;
        Ok(())
    }

    /// Records the stop on `stream`, after a start.
    pub(crate) fn stop(&mut self, stream: sys::CUstream) -> Result<(), ExecError> {
        if self.state != State::Started {
            return Ok(());
        }
        self.record(self.stop, stream, "cuEventRecord(timer stop)")?;
        self.state = State::Stopped;
        Ok(())
    }

    /// Blocks until a recorded stop has been reached on the device (no-op
    /// otherwise).
    pub(crate) fn wait(&mut self) -> Result<(), ExecError> {
        if self.state != State::Stopped {
            return Ok(());
        }
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: `stop` is a live, recorded event of this context.
        unsafe { result::event::synchronize(self.stop) }.call("cuEventSynchronize(timer stop)")
    }

    /// The time from start to stop once the stop has been reached on the
    /// device (then the timer is idle again); `None` before, or without a
    /// stop.
    pub(crate) fn read(&mut self) -> Result<Option<Duration>, ExecError> {
        if self.state != State::Stopped {
            return Ok(None);
        }
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: `stop` is a live event of this context.
        match unsafe { result::event::query(self.stop) } {
            Ok(()) => {}
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NOT_READY => return Ok(None),
            Err(e) => return Err(ExecError::Cuda(format!("cuEventQuery(timer stop): {e}"))),
        }
        self.state = State::Idle;
        // SAFETY: both events are live, recorded with timing, and complete.
        let ms = unsafe { result::event::elapsed(self.start, self.stop) }
            .call("cuEventElapsedTime(timer)")?;
        Ok(Some(Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1e3)))
    }
}

impl Drop for StreamTimer {
    fn drop(&mut self) {
        if self.shared.ctx.bind_to_thread().is_err() {
            return;
        }
        for ev in [self.start, self.stop] {
            // SAFETY: created in `new` and destroyed once; destroying an
            // event with pending work is allowed (it is freed when the work
            // completes).
            if let Err(e) = unsafe { result::event::destroy(ev) } {
                tracing::error!(error = %e, "cuEventDestroy(timer) failed");
            }
        }
    }
}
