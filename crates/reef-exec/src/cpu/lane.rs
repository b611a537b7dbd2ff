//! Lanes: a dedicated OS thread per lane draining a FIFO of kernel launches
//! onto the shared pool, with a preemption flag that BE launches honour.

use super::cores::Cores;
use super::device::{CpuContext, CpuModel, CtxState};
use super::kernels;
use super::memory::bytes_of_mut;
use super::tiles::Stop;
use crate::{Context, ExecError, Lane, PadSlot, Priority, Result, Variant};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One queued launch.
struct Item {
    model: Arc<CpuModel>,
    ctx: Arc<CtxState>,
    index: usize,
    variant: Variant,
    /// Padding launches: the RT context whose progress must stay below the
    /// target (RT kernel not yet complete) for tiles to start.
    pad: Option<PadMark>,
}

/// The CPU's [`PadSlot`] payload: an RT kernel is running while its
/// context's progress is below `target` (its index + 1).
#[derive(Clone)]
struct PadMark {
    rt: Arc<CtxState>,
    target: usize,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    retired: u64,
    fault: Option<String>,
    shutdown: bool,
    /// An RT lane with work counts as busy on the device's slots from the
    /// launch that gave it work (set when it is queued, so BE tiles resumed
    /// right after an RT launch cannot slip in first) until its queue is
    /// empty and nothing runs, so BE tiles stay off the cores between its
    /// kernels too.
    rt_busy: bool,
    timer: Timer,
    drain: Option<DrainTimer>,
}

/// A drain being timed ([`Lane::start_drain_timer`]): from the flag's
/// raise to the retirement of launch `upto`.
struct DrainTimer {
    start: Instant,
    upto: u64,
    end: Option<Instant>,
}

/// The lane's timer ([`Lane::start_timer`]), in launch numbers (the count
/// of launches queued before the mark).
#[derive(Default)]
struct Timer {
    /// Starts when launch `start_at` begins to run.
    start_at: Option<u64>,
    /// Stops when `stop_at` launches have retired.
    stop_at: Option<u64>,
    started: Option<Instant>,
    /// The latest retirement since the start. The lane's thread may retire
    /// the stop's launch before the host places the stop; that launch is
    /// then the latest retired (no later one was queued yet).
    last_end: Option<Instant>,
    /// The timed span, until read.
    span: Option<Duration>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when an item is queued or the lane shuts down.
    work: Condvar,
    /// Signalled when an item retires.
    done: Condvar,
    preempt: Arc<AtomicBool>,
    pool: Arc<rayon::ThreadPool>,
    /// The device's slots; this lane's tiles take them as RT (a `High`
    /// lane) or BE.
    cores: Arc<Cores>,
    rt_class: bool,
}

/// A CPU lane. Launches run in order on the lane's thread, their tiles on the
/// device's pool for the lane's priority; lanes run concurrently. Each tile
/// holds one of the device's slots while it runs: a `High` lane's tiles
/// take them first, a `Low` lane's only while no `High` lane has work.
///
/// Preemption: while the flag is raised, a BE launch starts no further tiles
/// (running tiles finish) and does not complete; the context is then halted,
/// so its later queued BE launches retire without running until
/// [`Lane::begin`] resets it. RT launches ignore the flag. Every launch that
/// completes sets its context's progress to its index + 1.
pub struct CpuLane {
    priority: Priority,
    shared: Arc<Shared>,
    enqueued: u64,
    thread: Option<JoinHandle<()>>,
}

impl CpuLane {
    /// Starts a lane thread over `pool`.
    pub(crate) fn spawn(
        pool: Arc<rayon::ThreadPool>,
        cores: Arc<Cores>,
        priority: Priority,
        id: usize,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            preempt: Arc::new(AtomicBool::new(false)),
            pool,
            cores,
            rt_class: priority == Priority::High,
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("reef-lane-{id}"))
            .spawn(move || lane_main(&worker))
            .map_err(|e| ExecError::Unavailable(format!("cannot start a lane thread: {e}")))?;
        Ok(Self {
            priority,
            shared,
            enqueued: 0,
            thread: Some(thread),
        })
    }

    /// The lane's preemption flag (raising it is what `set_preempt(true)` does).
    pub fn preempt_flag(&self) -> Arc<AtomicBool> {
        self.shared.preempt.clone()
    }
}

fn cpu_context(ctx: &mut dyn Context) -> Result<&mut CpuContext> {
    ctx.as_any_mut()
        .downcast_mut::<CpuContext>()
        .ok_or_else(|| ExecError::Invalid("a CPU lane needs a CPU context".into()))
}

fn lane_main(shared: &Shared) {
    loop {
        let item = {
            let mut q = shared.queue.lock();
            loop {
                if !q.shutdown {
                    if let Some(item) = q.items.pop_front() {
                        if q.timer.start_at == Some(q.retired) && q.timer.started.is_none() {
                            q.timer.started = Some(Instant::now());
                        }
                        break item;
                    }
                }
                // Out of work (or shutting down): leave the RT lanes' count.
                if q.rt_busy {
                    shared.cores.rt_lane_busy(false);
                    q.rt_busy = false;
                }
                if q.shutdown {
                    return;
                }
                shared.work.wait(&mut q);
            }
        };
        let outcome =
            catch_unwind(AssertUnwindSafe(|| execute(shared, &item))).unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                Err(ExecError::Invalid(format!(
                    "kernel {} panicked: {msg}",
                    item.index
                )))
            });
        if let Err(e) = &outcome {
            item.ctx.halted.store(true, Ordering::Release);
            tracing::error!(kernel = item.index, "CPU kernel failed: {e}");
        }
        let mut q = shared.queue.lock();
        q.retired += 1;
        let retired = q.retired;
        if let Some(d) = &mut q.drain {
            if d.end.is_none() && retired >= d.upto {
                d.end = Some(Instant::now());
            }
        }
        let t = &mut q.timer;
        if t.stop_at == Some(retired) {
            let started = t.started;
            *t = Timer::default();
            t.span = started.map(|s| s.elapsed());
        } else if t.started.is_some() && t.stop_at.is_none() {
            t.last_end = Some(Instant::now());
        }
        if let Err(e) = outcome {
            q.fault.get_or_insert_with(|| e.to_string());
        }
        shared.done.notify_all();
    }
}

/// Runs one launch (or skips it when preempted).
fn execute(shared: &Shared, item: &Item) -> Result<()> {
    let be = item.variant == Variant::Be;
    if let Some(mark) = &item.pad {
        return execute_pad(shared, item, mark);
    }
    if be && (shared.preempt.load(Ordering::Acquire) || item.ctx.halted.load(Ordering::Acquire)) {
        item.ctx.halted.store(true, Ordering::Release);
        return Ok(());
    }
    // A BE launch of a kernel that already completed (padding finished it)
    // or whose predecessor has not does nothing, as on the GPU.
    if be && item.ctx.progress.load(Ordering::Acquire) != item.index {
        return Ok(());
    }
    let stop = Stop::new(be.then_some(&*shared.preempt)).with_slots(&shared.cores, shared.rt_class);
    if !run_item(shared, item, &stop)? {
        item.ctx.halted.store(true, Ordering::Release);
    }
    Ok(())
}

/// Runs the item's kernel on the pool under `stop`; a kernel that completes
/// moves its context's progress past it. Returns whether it completed.
fn run_item(shared: &Shared, item: &Item, stop: &Stop) -> Result<bool> {
    let plan = &item.model.plan_ref();
    let mut arena = item.ctx.arena.lock();
    let arena = bytes_of_mut(&mut arena, plan.arena_bytes);
    let weights = item.model.weight_bytes();
    let tf32 = item.model.tf32();
    let completed = shared
        .pool
        .install(|| kernels::run(plan, item.index, weights, arena, stop, tf32))?;
    if completed {
        item.ctx
            .progress
            .fetch_max(item.index + 1, Ordering::AcqRel);
    }
    Ok(completed)
}

/// Runs a padding launch: only after the task's previous kernel completed,
/// with tiles starting only while the padded RT kernel runs and the flag is
/// down. An unfinished padding launch leaves the context running (not
/// halted): a later launch of the same kernel does the whole kernel again.
fn execute_pad(shared: &Shared, item: &Item, mark: &PadMark) -> Result<()> {
    if item.ctx.halted.load(Ordering::Acquire)
        || item.ctx.progress.load(Ordering::Acquire) != item.index
    {
        return Ok(());
    }
    let stop = Stop::new(Some(&*shared.preempt))
        .with_guard(&mark.rt.progress, mark.target)
        .with_slots(&shared.cores, shared.rt_class);
    run_item(shared, item, &stop).map(|_| ())
}

impl CpuLane {
    /// Queues kernel `index` of `ctx` (checked against its plan).
    fn push(
        &mut self,
        ctx: &mut dyn Context,
        index: usize,
        variant: Variant,
        pad: Option<PadMark>,
    ) -> Result<()> {
        let ctx = cpu_context(ctx)?;
        let model = ctx.cpu_model().clone();
        let n = model.plan_ref().kernels.len();
        if index >= n {
            return Err(ExecError::Invalid(format!(
                "kernel index {index} out of range ({n} kernels)"
            )));
        }
        let item = Item {
            model,
            ctx: ctx.state().clone(),
            index,
            variant,
            pad,
        };
        let mut q = self.shared.queue.lock();
        if self.shared.rt_class && !q.rt_busy {
            self.shared.cores.rt_lane_busy(true);
            q.rt_busy = true;
        }
        q.items.push_back(item);
        drop(q);
        self.enqueued += 1;
        self.shared.work.notify_one();
        Ok(())
    }
}

impl Lane for CpuLane {
    fn priority(&self) -> Priority {
        self.priority
    }

    fn begin(&mut self, ctx: &mut dyn Context, from: usize) -> Result<()> {
        let ctx = cpu_context(ctx)?;
        let n = ctx.cpu_model().plan_ref().kernels.len();
        if from > n {
            return Err(ExecError::Invalid(format!(
                "begin at kernel {from}, plan has {n}"
            )));
        }
        ctx.state().progress.store(from, Ordering::Release);
        ctx.state().halted.store(false, Ordering::Release);
        Ok(())
    }

    fn enqueue(&mut self, ctx: &mut dyn Context, index: usize, variant: Variant) -> Result<()> {
        self.push(ctx, index, variant, None)
    }

    fn resume(&mut self, ctx: &mut dyn Context) -> Result<usize> {
        let p = ctx.progress()?;
        cpu_context(ctx)?
            .state()
            .halted
            .store(false, Ordering::Release);
        Ok(p)
    }

    fn pad_slot(&mut self, ctx: &mut dyn Context, index: usize) -> Result<Option<PadSlot>> {
        let ctx = cpu_context(ctx)?;
        let n = ctx.cpu_model().plan_ref().kernels.len();
        if index >= n {
            return Err(ExecError::Invalid(format!(
                "kernel index {index} out of range ({n} kernels)"
            )));
        }
        Ok(Some(PadSlot {
            inner: Box::new(PadMark {
                rt: ctx.state().clone(),
                target: index + 1,
            }),
            index,
        }))
    }

    fn enqueue_pad(
        &mut self,
        ctx: &mut dyn Context,
        index: usize,
        slot: &PadSlot,
        _blocks: u32,
        _budget: Duration,
    ) -> Result<()> {
        let mark = slot
            .inner
            .downcast_ref::<PadMark>()
            .ok_or_else(|| ExecError::Invalid("pad slot of another backend".into()))?
            .clone();
        self.push(ctx, index, Variant::Be, Some(mark))
    }

    fn retired(&mut self) -> Result<u64> {
        Ok(self.shared.queue.lock().retired)
    }

    fn retired_seen(&self) -> u64 {
        self.shared.queue.lock().retired
    }

    fn enqueued(&self) -> u64 {
        self.enqueued
    }

    fn synchronize(&mut self) -> Result<()> {
        let mut q = self.shared.queue.lock();
        while q.retired < self.enqueued {
            self.shared.done.wait(&mut q);
        }
        match q.fault.take() {
            Some(f) => Err(ExecError::Invalid(format!("CPU lane fault: {f}"))),
            None => Ok(()),
        }
    }

    fn set_preempt(&mut self, on: bool) -> Result<()> {
        self.shared.preempt.store(on, Ordering::Release);
        Ok(())
    }

    /// The flag is a host word: the drain runs from this call to the
    /// retirement of the last launch queued before it.
    fn start_drain_timer(&mut self) -> Result<()> {
        let mut q = self.shared.queue.lock();
        let start = Instant::now();
        let idle = q.retired >= self.enqueued;
        q.drain = Some(DrainTimer {
            start,
            upto: self.enqueued,
            end: idle.then_some(start),
        });
        Ok(())
    }

    fn read_drain_timer(&mut self) -> Result<Option<Duration>> {
        let mut q = self.shared.queue.lock();
        match &q.drain {
            Some(DrainTimer {
                start,
                end: Some(end),
                ..
            }) => {
                let span = end.saturating_duration_since(*start);
                q.drain = None;
                Ok(Some(span))
            }
            _ => Ok(None),
        }
    }

    /// The span runs from the lane's thread taking up the next launch to
    /// the retirement of the last launch queued before [`Lane::stop_timer`].
    fn start_timer(&mut self) -> Result<()> {
        self.shared.queue.lock().timer = Timer {
            start_at: Some(self.enqueued),
            ..Timer::default()
        };
        Ok(())
    }

    fn stop_timer(&mut self) -> Result<()> {
        let mut q = self.shared.queue.lock();
        let retired = q.retired;
        let t = &mut q.timer;
        match t.start_at {
            Some(start) if self.enqueued > start && t.stop_at.is_none() => {
                let stop = self.enqueued;
                if retired >= stop {
                    // Already retired: the span ends at that retirement.
                    let (started, end) = (t.started, t.last_end);
                    *t = Timer::default();
                    t.span = started
                        .zip(end)
                        .map(|(s, e)| e.saturating_duration_since(s));
                } else {
                    t.stop_at = Some(stop);
                }
            }
            // Nothing queued since the start, or stopped already.
            _ => {}
        }
        Ok(())
    }

    fn read_timer(&mut self) -> Result<Option<Duration>> {
        Ok(self.shared.queue.lock().timer.span.take())
    }
}

impl Drop for CpuLane {
    fn drop(&mut self) {
        self.shared.queue.lock().shutdown = true;
        self.shared.work.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("CPU lane thread panicked");
            }
        }
    }
}
