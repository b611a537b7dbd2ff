//! [`CudaLane`]: a prioritized CUDA stream with its preemption flag (an i32
//! in device memory, written on the device's high-priority control stream),
//! a pool of events that tracks retired launches, and (with
//! [`CudaOptions::be_told`](crate::CudaOptions::be_told), or for a quick
//! drain, [`LaneOptions::quick_drain`]) a [`ToldWord`] that says when the
//! last BE launch has left the GPU. The flag is never
//! host-mapped: a raise would then be a mere host store, but the BE blocks'
//! reads of it cross PCIe one after another (about 1 us each across the
//! whole GPU), which made BE models 36-228x slower on the H100
//! (docs/PERF.md, Session 22).

use crate::context::CudaTaskContext;
use crate::device::DeviceShared;
use crate::error::CudaCall;
use crate::launch::{Launch, ABORTED_BIT, COUNTER_BYTES};
use crate::memory::DeviceBuffer;
use crate::params::Hdr;
use crate::told::ToldWord;
use cudarc::driver::{result, sys, CudaStream};
use reef_exec::{Context, ExecError, Lane, LaneOptions, PadSlot, Priority, Variant};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

/// A lane on a CUDA device.
pub struct CudaLane {
    shared: Arc<DeviceShared>,
    priority: Priority,
    stream: Arc<CudaStream>,
    flag: DeviceBuffer,
    /// Set by `pad_slot(i)`: the next RT launch (kernel `i`) is tracked
    /// (counts its blocks done), since padding launches watch its counter.
    guard_next: Option<usize>,
    /// Events recorded after each launch, oldest first (None: recording failed,
    /// the launch is known retired only after a synchronize).
    in_flight: VecDeque<Option<sys::CUevent>>,
    free: Vec<sys::CUevent>,
    enqueued: u64,
    retired: u64,
    /// Made on the first [`Lane::start_timer`].
    timer: Option<crate::timer::StreamTimer>,
    /// Made on the first [`Lane::start_drain_timer`].
    drain_timer: Option<crate::timer::StreamTimer>,
    /// Written by the last block of each direct BE launch to leave
    /// ([`CudaOptions::be_told`](crate::CudaOptions::be_told) or
    /// [`LaneOptions::quick_drain`]).
    told: Option<ToldWord>,
    /// Whether the preemption relay raises this lane's flag (its flag is
    /// registered with it, and its BE launches keep an instance running).
    relayed: bool,
    /// The number the told word will hold once the lane's last stream
    /// operation, a direct BE launch, has left the GPU; None when the last
    /// operation was anything else (the lane then answers
    /// [`Lane::drained`] from its stream).
    told_last: Option<u32>,
}

// SAFETY: CUevent handles are plain driver handles usable from any thread
// once the owning context is bound (every method binds it first); the lane is
// only ever used from one thread at a time (&mut self).
unsafe impl Send for CudaLane {}

impl CudaLane {
    pub(crate) fn new(
        shared: Arc<DeviceShared>,
        priority: Priority,
        options: LaneOptions,
    ) -> Result<Self, ExecError> {
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
        let flag = DeviceBuffer::alloc(ctx, 4)?;
        let control = &shared.control;
        // SAFETY: the flag allocation holds at least one u32.
        unsafe { sys::cuMemsetD32Async(flag.ptr(), 0, 1, control.cu_stream()).result() }
            .call("cuMemsetD32Async(flag)")?;
        control.synchronize().call("cuStreamSynchronize(control)")?;
        let be = priority == Priority::Low;
        let told = if be && (shared.be_told || options.quick_drain) {
            Some(ToldWord::new(&shared)?)
        } else {
            None
        };
        let relayed = be && (shared.relay_all || options.quick_drain);
        if relayed {
            shared.relay.lock().register(flag.ptr());
        }
        Ok(CudaLane {
            shared,
            priority,
            stream,
            flag,
            guard_next: None,
            in_flight: VecDeque::new(),
            free: Vec::new(),
            enqueued: 0,
            retired: 0,
            timer: None,
            drain_timer: None,
            told,
            told_last: None,
            relayed,
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

    /// Zeroes, on the lane's stream, the done counters and claim cursors of
    /// kernels `from..` and their split-K tile counters (a preempted kernel
    /// leaves partial arrivals behind).
    fn zero_counters(&mut self, task: &CudaTaskContext, from: usize) -> Result<(), ExecError> {
        self.told_last = None;
        let n = task.kernel_count();
        let counters = task.counter_ptr(from);
        let (tiles, ntiles) = task.tile_counters_from(from);
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let s = self.stream.cu_stream();
        // SAFETY: counters[from..n] and the split-K tile counters of kernels
        // from.. (a suffix of the tile counters) lie inside the context's
        // state buffer, which outlives the stream's work (its drop frees
        // with cuMemFree, which waits for the device).
        unsafe {
            if n > from {
                let words = (n - from) * (COUNTER_BYTES as usize / 4);
                sys::cuMemsetD32Async(counters, 0, words, s)
                    .result()
                    .call("cuMemsetD32Async(done counters)")?;
            }
            if ntiles > 0 {
                sys::cuMemsetD32Async(tiles, 0, ntiles, s)
                    .result()
                    .call("cuMemsetD32Async(tile counters)")?;
            }
        }
        Ok(())
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
        if let Some(copied) = task.take_pending_inputs() {
            self.stream.wait(copied).call("cuStreamWaitEvent(inputs)")?;
        }
        self.zero_counters(task, from)?;
        task.clear_marks(from);
        let progress = task.progress_ptr();
        let s = self.stream.cu_stream();
        // SAFETY: the progress word lies inside the context's state buffer,
        // which outlives the stream's work (its drop frees with cuMemFree,
        // which waits for the device).
        unsafe { sys::cuMemsetD32Async(progress, from as u32, 1, s) }
            .result()
            .call("cuMemsetD32Async(progress)")?;
        Ok(())
    }

    fn enqueue(
        &mut self,
        ctx: &mut dyn Context,
        index: usize,
        variant: Variant,
    ) -> reef_exec::Result<()> {
        let task = self.task(ctx)?;
        let last = index + 1 == task.kernel_count();
        let cursor = task.cursor_marked(index);
        let launch = task.launch_checked(index)?;
        let resident = self.shared.resident(launch.family);
        match variant {
            Variant::Rt => {
                let guarded = self.guard_next.take() == Some(index);
                let track = !self.shared.rt_lean || last || guarded;
                let grid = launch.grid(variant, resident);
                self.launch(launch, variant, grid, |h| {
                    if !track {
                        h.done = 0;
                    }
                })
            }
            Variant::Be => {
                if self.relayed {
                    self.shared.relay.lock().keep()?;
                }
                // Direct: every tile has its block on the GPU at once, and
                // no padding launch used the kernel's cursor since `begin`
                // (its later launches finish from the cursor).
                // With `be_direct_all`, multi-wave kernels too: one block
                // per tile.
                let direct = self.shared.be_direct
                    && (launch.tiles <= resident || self.shared.be_direct_all)
                    && !cursor;
                if direct {
                    task.mark_direct(index);
                    let grid = launch.grid(Variant::Rt, resident);
                    // The launch's number on this lane, as `launch` counts.
                    let seq = self.enqueued.wrapping_add(1) as u32;
                    let told = self.told.as_ref().map(ToldWord::device_ptr);
                    self.launch(launch, variant, grid, |h| {
                        h.guard_tiles = DIRECT_MODE;
                        if let Some(addr) = told {
                            h.told = addr;
                            h.seq = seq;
                        }
                    })?;
                    if told.is_some() {
                        self.told_last = Some(seq);
                    }
                    Ok(())
                } else {
                    let grid = launch.grid(variant, resident);
                    self.launch(launch, variant, grid, |_| {})
                }
            }
        }
    }

    /// The start is an event on the control stream, right behind the flag
    /// write [`Device::raise_preempt`](reef_exec::Device::raise_preempt)
    /// put there; the stop an event on this lane's stream, behind its last
    /// launch.
    fn start_drain_timer(&mut self) -> reef_exec::Result<()> {
        let timer = match &mut self.drain_timer {
            Some(t) => t,
            None => self
                .drain_timer
                .insert(crate::timer::StreamTimer::new(self.shared.clone())?),
        };
        timer.start(self.shared.control.cu_stream())?;
        timer.stop(self.stream.cu_stream())
    }

    /// Waits for the stop event first: a lane drained by its told word may
    /// not have reached it yet.
    fn read_drain_timer(&mut self) -> reef_exec::Result<Option<Duration>> {
        match &mut self.drain_timer {
            Some(t) => {
                t.wait()?;
                t.read()
            }
            None => Ok(None),
        }
    }

    fn start_timer(&mut self) -> reef_exec::Result<()> {
        let stream = self.stream.cu_stream();
        let timer = match &mut self.timer {
            Some(t) => t,
            None => self
                .timer
                .insert(crate::timer::StreamTimer::new(self.shared.clone())?),
        };
        timer.start(stream)
    }

    fn stop_timer(&mut self) -> reef_exec::Result<()> {
        let stream = self.stream.cu_stream();
        match &mut self.timer {
            Some(t) => t.stop(stream),
            None => Ok(()),
        }
    }

    fn read_timer(&mut self) -> reef_exec::Result<Option<Duration>> {
        match &mut self.timer {
            Some(t) => t.read(),
            None => Ok(None),
        }
    }

    fn pad_slot(
        &mut self,
        ctx: &mut dyn Context,
        index: usize,
    ) -> reef_exec::Result<Option<PadSlot>> {
        let task = self.task(ctx)?;
        let launch = task.launch_checked(index)?;
        let guard = task.counter_ptr(index);
        let guard_tiles = launch.grid(Variant::Rt, self.shared.resident(launch.family));
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let event = result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .call("cuEventCreate(pad slot)")?;
        let mark = PadMark {
            shared: self.shared.clone(),
            event,
            guard,
            guard_tiles,
        };
        // SAFETY: `event` is a live event of this context; the stream is live.
        unsafe { result::event::record(event, self.stream.cu_stream()) }
            .call("cuEventRecord(pad slot)")?;
        self.guard_next = Some(index);
        Ok(Some(PadSlot {
            inner: Box::new(mark),
            index,
        }))
    }

    fn enqueue_pad(
        &mut self,
        ctx: &mut dyn Context,
        index: usize,
        slot: &PadSlot,
        blocks: u32,
        budget: Duration,
    ) -> reef_exec::Result<()> {
        let mark = slot
            .inner
            .downcast_ref::<PadMark>()
            .ok_or_else(|| ExecError::Invalid("pad slot of another backend".into()))?;
        if !Arc::ptr_eq(&mark.shared, &self.shared) {
            return Err(ExecError::Invalid(
                "pad slot belongs to another CUDA device".into(),
            ));
        }
        let task = self.task(ctx)?;
        let launch = task.launch_checked(index)?;
        // The kernel's later launches go on from its cursor (not direct).
        task.mark_cursor(index);
        let resident = self.shared.resident(launch.family);
        let grid = blocks.clamp(1, launch.grid(Variant::Be, resident));
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: the stream and the slot's event are live (the slot owns the
        // event until it is dropped, after this call returns).
        unsafe {
            result::stream::wait_event(
                self.stream.cu_stream(),
                mark.event,
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
        }
        .call("cuStreamWaitEvent(pad slot)")?;
        let budget_ns = u32::try_from(budget.as_nanos()).unwrap_or(u32::MAX);
        self.launch(launch, Variant::Be, grid, |h| {
            h.guard = mark.guard;
            h.guard_tiles = mark.guard_tiles;
            h.budget_ns = budget_ns;
        })
    }

    /// Tile-level resume: the next launch of the first unfinished kernel
    /// claims the tiles its earlier launches did not. When a block abandoned
    /// a tile midway (GEMM tiles stop between K steps once the flag is up;
    /// the kernel's done counter carries `ABORTED_BIT`), that tile is lost to
    /// the cursor, so the kernel runs again from its first tile (`begin`).
    /// Waits for the lane to be idle; the progress word and counters come
    /// back in one copy ([`CudaTaskContext::read_state`]).
    fn resume(&mut self, ctx: &mut dyn Context) -> reef_exec::Result<usize> {
        self.synchronize()?;
        let task = self.task(ctx)?;
        let n = task.kernel_count();
        let state = task.read_state()?;
        let word = state.progress_word();
        let p = task.exact_progress_in(&state);
        if p >= n {
            return Ok(p);
        }
        if state.done(p) & ABORTED_BIT != 0 {
            tracing::debug!(
                kernel = p,
                "a tile was abandoned midway: the kernel runs again"
            );
            self.begin(ctx, p)?;
            return Ok(p);
        }
        // The kernels after the first unfinished one ran no tile (it was cut
        // short only while the flag was up, so they met the flag at entry),
        // but direct ones marked themselves aborted on the way out: start
        // them clean. The first unfinished kernel keeps its tiles.
        self.zero_counters(task, p + 1)?;
        task.clear_marks(p + 1);
        if word != p {
            // A direct kernel completed behind the word: bring the word up
            // (padding launches check it).
            self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
            let progress = task.progress_ptr();
            // SAFETY: the progress word lies inside the context's state
            // buffer, which outlives the stream's work.
            unsafe { sys::cuMemsetD32Async(progress, p as u32, 1, self.stream.cu_stream()) }
                .result()
                .call("cuMemsetD32Async(progress)")?;
        }
        Ok(p)
    }

    fn profile(&mut self, ctx: &mut dyn Context, reps: usize) -> reef_exec::Result<Vec<Duration>> {
        self.profile_events(ctx, reps)
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

    fn retired_seen(&self) -> u64 {
        self.retired
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

    /// One `cuStreamQuery`: exact, and independent of the event pool.
    fn is_idle(&mut self) -> reef_exec::Result<bool> {
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: the stream is live.
        match unsafe { sys::cuStreamQuery(self.stream.cu_stream()) } {
            sys::CUresult::CUDA_SUCCESS => {
                self.retire_all();
                Ok(true)
            }
            sys::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            e => Err(ExecError::Cuda(format!("cuStreamQuery(lane): {e:?}"))),
        }
    }

    /// With a told word, and a direct BE launch as the lane's last stream
    /// operation: whether the word holds that launch's number (a load of
    /// host memory); otherwise [`Lane::is_idle`].
    fn drained(&mut self) -> reef_exec::Result<bool> {
        match (&self.told, self.told_last) {
            (Some(word), Some(seq)) => Ok(word.load() == seq || self.enqueued == self.retired),
            _ => self.is_idle(),
        }
    }

    fn flag_address(&self) -> Option<u64> {
        Some(self.flag.ptr())
    }

    fn run_device_timed(
        &mut self,
        ctx: &mut dyn Context,
        variant: Variant,
    ) -> reef_exec::Result<Option<Duration>> {
        Ok(self
            .device_timed(ctx, variant, false)?
            .map(|t| t.into_iter().sum()))
    }

    fn run_device_timed_kernels(
        &mut self,
        ctx: &mut dyn Context,
        variant: Variant,
    ) -> reef_exec::Result<Option<Vec<Duration>>> {
        self.device_timed(ctx, variant, true)
    }

    /// Raising writes the flag on the device's high-priority control stream
    /// and returns at once (the lane's kernels see it when it lands; a
    /// synchronize of the lane waits for them). Clearing writes it on the
    /// control stream too, after any raise (one stream keeps them in order),
    /// and makes the lane's stream wait for that write, so every later
    /// launch of the lane sees the flag down, without a host wait. With the
    /// relay, clearing first waits until no relayed raise is left to land
    /// ([`crate::relay`]).
    fn set_preempt(&mut self, on: bool) -> reef_exec::Result<()> {
        if !on {
            self.shared.relay.lock().settle()?;
        }
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let control = &self.shared.control;
        // SAFETY: the flag allocation holds at least one u32.
        unsafe {
            sys::cuMemsetD32Async(self.flag.ptr(), on as u32, 1, control.cu_stream()).result()
        }
        .call("cuMemsetD32Async(preemption flag)")?;
        if !on {
            self.stream
                .wait(
                    &control
                        .record_event(None)
                        .call("cuEventRecord(flag clear)")?,
                )
                .call("cuStreamWaitEvent(flag clear)")?;
        }
        Ok(())
    }
}

/// `Hdr::guard_tiles` of a direct BE launch (`REEF_DIRECT` in common.cu).
const DIRECT_MODE: u32 = 1;

impl CudaLane {
    /// [`Lane::run_device_timed`]: a `reef_hold` launch keeps the stream
    /// busy while every kernel is enqueued behind it, then events time the
    /// run alone. Nothing is reported if enqueueing outlasted the hold (the
    /// device would have waited for the host after all).
    fn device_timed(
        &mut self,
        ctx: &mut dyn Context,
        variant: Variant,
        per_kernel: bool,
    ) -> reef_exec::Result<Option<Vec<Duration>>> {
        let n = self.task(ctx)?.kernel_count();
        self.begin(ctx, 0)?;
        // Generous: launches cost a few microseconds of host time each.
        let hold = Duration::from_micros(2_000 + 30 * n as u64);
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let count = if per_kernel { n + 1 } else { 2 };
        let mut events = Vec::with_capacity(count);
        let mut out = Ok(None);
        for _ in 0..count {
            match result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT) {
                Ok(e) => events.push(e),
                Err(e) => {
                    out = Err(ExecError::Cuda(format!(
                        "cuEventCreate(device timing): {e}"
                    )));
                    break;
                }
            }
        }
        if events.len() == count {
            out = self.device_timed_with(ctx, variant, n, hold, &events);
        }
        for e in events {
            // SAFETY: created above; the stream synchronized in
            // device_timed_with (or the event is unused); destroyed once.
            let _ = unsafe { result::event::destroy(e) };
        }
        out
    }

    /// Records `events[0]` before the first kernel and, with `n + 1`
    /// events, `events[i + 1]` after kernel `i` (else only `events[1]` after
    /// the last); returns the intervals between consecutive events.
    fn device_timed_with(
        &mut self,
        ctx: &mut dyn Context,
        variant: Variant,
        n: usize,
        hold: Duration,
        events: &[sys::CUevent],
    ) -> reef_exec::Result<Option<Vec<Duration>>> {
        let per_kernel = events.len() == n + 1;
        let ns = hold.as_nanos() as u64;
        let mut args = [(&ns as *const u64).cast_mut().cast::<c_void>()];
        let t0 = std::time::Instant::now();
        // SAFETY: reef_hold takes one u64 by value (`ns` outlives the call,
        // which copies it); one block of one thread.
        unsafe {
            result::launch_kernel(
                self.shared.hold.cu_function(),
                (1, 1, 1),
                (1, 1, 1),
                0,
                self.stream.cu_stream(),
                &mut args,
            )
        }
        .map_err(|e| ExecError::Cuda(format!("cuLaunchKernel(reef_hold): {e}")))?;
        // SAFETY: live events of this context, live stream.
        unsafe { result::event::record(events[0], self.stream.cu_stream()) }
            .call("cuEventRecord(device timing)")?;
        for i in 0..n {
            self.enqueue(ctx, i, variant)?;
            if per_kernel || i + 1 == n {
                let e = events[if per_kernel { i + 1 } else { events.len() - 1 }];
                // SAFETY: as above.
                unsafe { result::event::record(e, self.stream.cu_stream()) }
                    .call("cuEventRecord(device timing)")?;
            }
        }
        if n == 0 {
            // SAFETY: as above (an empty plan: the run is the empty interval).
            unsafe { result::event::record(events[events.len() - 1], self.stream.cu_stream()) }
                .call("cuEventRecord(device timing)")?;
        }
        let enqueued_in = t0.elapsed();
        self.synchronize()?;
        if enqueued_in >= hold {
            tracing::warn!(
                ?enqueued_in,
                ?hold,
                "enqueueing outlasted the hold: no device time"
            );
            return Ok(None);
        }
        let mut times = Vec::with_capacity(events.len() - 1);
        for w in events.windows(2) {
            // SAFETY: both events completed (the stream synchronized).
            let ms = unsafe { result::event::elapsed(w[0], w[1]) }.call("cuEventElapsedTime")?;
            times.push(Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1e3));
        }
        Ok(Some(times))
    }

    /// Launches `launch` as `variant` on `grid` blocks, with `hdr` adjusting
    /// the header (the lane's flag is filled in first), and records its event.
    fn launch(
        &mut self,
        launch: Launch,
        variant: Variant,
        grid: u32,
        hdr: impl FnOnce(&mut Hdr),
    ) -> reef_exec::Result<()> {
        let family = launch.family;
        let mut params = launch.params;
        self.told_last = None;
        params.hdr_mut().flag = self.flag.ptr();
        hdr(params.hdr_mut());
        let func = self.shared.func(family, variant)?;
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let bytes = params.bytes();
        let mut args = [bytes.as_ptr() as *mut c_void];
        // SAFETY: the function takes exactly one by-value parameter whose C
        // layout `params` mirrors (see params.rs); cuLaunchKernel copies the
        // bytes before returning. Every address inside was validated against
        // the plan's buffers and points into live allocations of this context
        // and model. Grid >= 1, the block size matches __launch_bounds__ and
        // the dynamic shared memory is what the device allowed the function.
        unsafe {
            result::launch_kernel(
                func.cu_function(),
                (grid, 1, 1),
                (family.threads(), 1, 1),
                family.dynamic_smem(),
                self.stream.cu_stream(),
                &mut args,
            )
        }
        .map_err(|e| ExecError::Cuda(format!("cuLaunchKernel({}): {e}", family.entry(variant))))?;
        self.enqueued += 1;
        self.record()
    }

    /// Times each kernel's RT variant with device events: `reps` launches of
    /// the kernel back to back between two events (kernels are idempotent),
    /// the mean per launch; the median over three such groups.
    fn profile_events(
        &mut self,
        ctx: &mut dyn Context,
        reps: usize,
    ) -> reef_exec::Result<Vec<Duration>> {
        let n = self.task(ctx)?.kernel_count();
        let all: Vec<usize> = (0..n).collect();
        self.time_listed(ctx, &all, reps)
    }

    /// Times the RT variants of `kernels` (indices of `ctx`'s kernels) as
    /// [`Lane::profile`] does: per kernel, the median over three groups of
    /// `reps` back-to-back launches of the mean per launch.
    pub(crate) fn time_listed(
        &mut self,
        ctx: &mut dyn Context,
        kernels: &[usize],
        reps: usize,
    ) -> reef_exec::Result<Vec<Duration>> {
        let n = self.task(ctx)?.kernel_count();
        if let Some(&bad) = kernels.iter().find(|&&i| i >= n) {
            return Err(ExecError::Invalid(format!("kernel {bad} of {n}")));
        }
        self.begin(ctx, 0)?;
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let start = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .call("cuEventCreate(profile)")?;
        let end = match result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT) {
            Ok(e) => e,
            Err(e) => {
                // SAFETY: `start` was created above and is destroyed once.
                let _ = unsafe { result::event::destroy(start) };
                return Err(ExecError::Cuda(format!("cuEventCreate(profile): {e}")));
            }
        };
        let out = self.time_kernels(ctx, kernels, reps.max(1), start, end);
        // SAFETY: both events were created above, are idle after the
        // synchronizes in time_kernels (or unused on error), destroyed once.
        unsafe {
            let _ = result::event::destroy(start);
            let _ = result::event::destroy(end);
        }
        out
    }

    fn time_kernels(
        &mut self,
        ctx: &mut dyn Context,
        kernels: &[usize],
        reps: usize,
        start: sys::CUevent,
        end: sys::CUevent,
    ) -> reef_exec::Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(kernels.len());
        for &i in kernels {
            let mut groups = [0f32; 3];
            for g in &mut groups {
                // SAFETY: the events are live events of this context.
                unsafe { result::event::record(start, self.stream.cu_stream()) }
                    .call("cuEventRecord(profile)")?;
                for _ in 0..reps {
                    self.enqueue(ctx, i, Variant::Rt)?;
                }
                // SAFETY: as above.
                unsafe { result::event::record(end, self.stream.cu_stream()) }
                    .call("cuEventRecord(profile)")?;
                self.synchronize()?;
                // SAFETY: both events completed (the stream synchronized).
                *g = unsafe { result::event::elapsed(start, end) }
                    .call("cuEventElapsedTime(profile)")?
                    / reps as f32;
            }
            groups.sort_by(f32::total_cmp);
            times.push(Duration::from_secs_f64(f64::from(groups[1].max(0.0)) / 1e3));
        }
        Ok(times)
    }
}

/// The CUDA payload of a [`PadSlot`]: an event recorded on the RT stream
/// right before the RT kernel, and the RT kernel's done counter.
struct PadMark {
    shared: Arc<DeviceShared>,
    event: sys::CUevent,
    guard: u64,
    guard_tiles: u32,
}

// SAFETY: the event is a plain driver handle, used only with its context
// bound; the mark is moved between threads but used by one at a time.
unsafe impl Send for PadMark {}

impl Drop for PadMark {
    fn drop(&mut self) {
        if self.shared.ctx.bind_to_thread().is_ok() {
            // SAFETY: created in pad_slot and destroyed once; destroying an
            // event with pending waits is allowed (resources are freed when
            // the recorded work completes).
            if let Err(e) = unsafe { result::event::destroy(self.event) } {
                tracing::error!(error = %e, "cuEventDestroy(pad slot) failed");
            }
        }
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
        if self.relayed {
            // No relayed raise may land on the flag once it is freed.
            let mut relay = self.shared.relay.lock();
            if let Err(e) = relay.settle() {
                tracing::error!(error = %e, "relay settle on lane drop failed");
            }
            relay.unregister(self.flag.ptr());
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
