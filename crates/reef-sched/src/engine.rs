//! The scheduling thread: takes tasks from the submit channel and drives the
//! device's lanes according to the mode.
//!
//! - `seq`: one task at a time to completion, RT first.
//! - `stream`: the RT lane and every BE lane each run their queue's head task,
//!   all kernels launched at once, nobody preempted.
//! - `wait`: on RT arrival BE lanes get no more kernels (host-queue drop) and
//!   the scheduler waits for the BE kernels already launched (at most
//!   `be_depth` per lane) to finish; no flag is raised.
//! - `reset`: on RT arrival every busy BE lane's preemption flag is raised:
//!   queued BE kernels exit at entry, running ones at their next tile; BE
//!   tasks resume from their exact progress once no RT work is left.
//! - `reef`: reset plus dynamic kernel padding: the flags come down right
//!   after the drain, and RT kernels that leave compute units idle get BE
//!   kernels of the paused BE tasks launched beside them (see
//!   [`crate::padding`]); or, with `beside_lanes`, up to that many BE lanes
//!   resume right after the RT launch and run beside the RT work on their
//!   low-priority streams (RT work that arrives while RT work runs then
//!   queues behind it without a preemption).
//!
//! On RT arrival the scheduler raises the flags of every BE lane with
//! kernels in flight together ([`Device::raise_preempt`]).
//! By default ([`SchedConfig::early_rt`], `reset` and `reef` modes without
//! beside lanes) it then launches the RT kernels at once and watches the
//! lanes drain while they run; in REEF's order (`:drain`, and in `wait`
//! mode) it polls those lanes until all are drained, then launches the RT
//! kernels. Either way the drain, from noticing the RT work until every
//! flagged lane is drained (its kernels have left the device:
//! [`Lane::drained`]), is the recorded preemption latency. BE tasks stay
//! paused while RT work
//! remains; then each lane is synchronized, its task's exact progress read
//! back, and the task fed again from there (the device keeps the tiles a
//! preempted or padded kernel completed).

use crate::api::{Mode, Priority, SchedError};
use crate::be_io::BeIo;
use crate::config::{PollPause, SchedConfig};
use crate::padding;
use crate::stats::Stats;
use crate::step_clock::StepClock;
use crate::task::Task;
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use reef_exec::{Device, Lane, Variant};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages to the scheduling thread.
pub(crate) enum Msg {
    Task(Box<Task>),
    Shutdown,
}

pub(crate) struct Engine {
    device: Arc<dyn Device>,
    cfg: SchedConfig,
    stats: Arc<Stats>,
    rx: Receiver<Msg>,
    rt_queue: VecDeque<Task>,
    be_queues: Vec<VecDeque<Task>>,
    rt_lane: Box<dyn Lane>,
    be_lanes: Vec<Option<Box<dyn Lane>>>,
    rt_running: VecDeque<Task>,
    be_running: Vec<Option<Task>>,
    /// Lanes whose flag is raised.
    flagged: Vec<bool>,
    shutting_down: bool,
    last_tick: Instant,
    /// Next BE queue `seq` mode looks at first.
    seq_next: usize,
    /// Next BE queue the padding planner looks at first.
    pad_next: usize,
    /// BE lanes still draining after an RT arrival raised their flags.
    drain: Option<Drain>,
    /// BE lanes that run beside the current RT work (`reef` mode with
    /// `beside_lanes`).
    beside: Vec<bool>,
    /// How long to poll the queue after the work runs out
    /// ([`SchedConfig::idle_spin`] on this device).
    idle_spin: Duration,
    /// How the thread waits between looks ([`SchedConfig::poll_pause`] on
    /// this device).
    poll_pause: PollPause,
    /// Writes BE tasks' inputs and reads their outputs off this thread
    /// (`wait`, `reset` and `reef` modes, [`SchedConfig::be_io_thread`] on
    /// this device); `None`: this thread does.
    be_io: Option<BeIo>,
    /// BE queues whose next task is with `be_io`, starting.
    starting: Vec<bool>,
    /// Times the loop's current pass in phases (the slowest are kept).
    clock: StepClock,
}

/// A preemption in progress: the BE lanes that had kernels in flight when
/// the scheduler noticed RT work, and when it noticed.
struct Drain {
    lanes: Vec<usize>,
    noticed: Instant,
    /// What each flagged lane had in flight, described only if the drain is
    /// among the slowest ([`SchedStats::slowest_drains`]).
    work: Vec<InFlight>,
    /// Lanes whose drain is timed on the device
    /// ([`SchedConfig::time_drains`]).
    timed: Vec<usize>,
    /// From `noticed` to the raise handed over.
    raise: Duration,
    /// Looks at the lanes so far, the last one's time, and the longest
    /// time between two looks (a long one is the thread kept from its
    /// core, or a look that took long).
    polls: u32,
    last_poll: Instant,
    max_gap: Duration,
}

/// A flagged lane's BE task at a preemption: its model and the kernels
/// from `first` on that it had in flight.
struct InFlight {
    model: Arc<crate::registry::ModelEntry>,
    handle: Arc<dyn reef_exec::ModelHandle>,
    first: usize,
    in_flight: u64,
}

impl InFlight {
    fn describe(&self) -> crate::api::DrainedWork {
        let kernel = self.handle.plan().kernels.get(self.first);
        crate::api::DrainedWork {
            model: self.model.name.clone(),
            kernel: self.first,
            name: kernel.map(|k| k.name.clone()).unwrap_or_default(),
            op: kernel.map(|k| k.op.kind().to_string()).unwrap_or_default(),
            in_flight: self.in_flight,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> SchedError {
    SchedError::Internal(e.to_string())
}

impl Engine {
    pub fn new(
        device: Arc<dyn Device>,
        cfg: SchedConfig,
        stats: Arc<Stats>,
        rx: Receiver<Msg>,
    ) -> Result<Engine, SchedError> {
        let rt_lane = device.lane(reef_exec::Priority::High).map_err(internal)?;
        let n = cfg.be_queues;
        let idle_spin = cfg.idle_spin_on(device.kind());
        let poll_pause = cfg.poll_pause_on(device.kind());
        // Only the modes that feed BE lanes kernel by kernel use it.
        let be_io =
            if cfg.mode.preempts() && cfg.be_io_thread_on(device.kind()) {
                Some(BeIo::new(poll_pause, idle_spin).map_err(|e| {
                    SchedError::Internal(format!("starting the BE I/O thread: {e}"))
                })?)
            } else {
                None
            };
        Ok(Engine {
            device,
            stats,
            rx,
            rt_queue: VecDeque::new(),
            be_queues: (0..n).map(|_| VecDeque::new()).collect(),
            rt_lane,
            be_lanes: (0..n).map(|_| None).collect(),
            rt_running: VecDeque::new(),
            be_running: (0..n).map(|_| None).collect(),
            flagged: vec![false; n],
            shutting_down: false,
            cfg,
            last_tick: Instant::now(),
            seq_next: 0,
            pad_next: 0,
            drain: None,
            beside: vec![false; n],
            idle_spin,
            poll_pause,
            be_io,
            starting: vec![false; n],
            clock: StepClock::new(),
        })
    }

    fn be_lane(&mut self, q: usize) -> Result<&mut Box<dyn Lane>, SchedError> {
        if self.be_lanes[q].is_none() {
            let options = reef_exec::LaneOptions {
                quick_drain: self.cfg.quick_drain_on(),
            };
            self.be_lanes[q] = Some(
                self.device
                    .lane_with(reef_exec::Priority::Low, options)
                    .map_err(internal)?,
            );
        }
        Ok(self.be_lanes[q].as_mut().expect("lane just created"))
    }

    /// Out of work: polls the queue for [`SchedConfig::idle_spin`] (the
    /// device decides by default) before the caller sleeps on it, so that a
    /// request arriving soon after the last finds the thread awake. `None`
    /// when nothing came (or the senders are gone).
    fn poll_idle(&self) -> Option<Msg> {
        let spin = self.idle_spin;
        if spin.is_zero() {
            return None;
        }
        let t0 = Instant::now();
        loop {
            match self.rx.try_recv() {
                Ok(m) => return Some(m),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) if t0.elapsed() >= spin => return None,
                Err(TryRecvError::Empty) => self.poll_pause.pause(),
            }
        }
    }

    /// `reef` mode with BE lanes running beside RT work (instead of the
    /// planned padding).
    fn beside_mode(&self) -> bool {
        self.cfg.mode == Mode::Reef && self.cfg.beside_lanes > 0
    }

    fn busy(&self) -> bool {
        !self.rt_running.is_empty() || self.be_running.iter().any(|t| t.is_some())
    }

    fn has_work(&self) -> bool {
        self.busy()
            || self.is_starting()
            || !self.rt_queue.is_empty()
            || self.be_queues.iter().any(|q| !q.is_empty())
    }

    /// Whether a BE task is with the I/O worker, starting.
    fn is_starting(&self) -> bool {
        self.starting.iter().any(|&s| s)
    }

    /// Takes the BE tasks the I/O worker has started onto their lanes.
    fn collect_started(&mut self) {
        let Some(io) = &self.be_io else {
            return;
        };
        let started: Vec<_> = io.started().collect();
        for (q, t) in started {
            if t.as_ref().is_some_and(|t| t.made_context) {
                self.stats.contexts_made.fetch_add(1, Ordering::Relaxed);
            }
            self.starting[q] = false;
            self.be_running[q] = t;
        }
    }

    fn accept(&mut self, msg: Msg) {
        match msg {
            Msg::Task(t) => {
                let t = *t;
                if self.shutting_down {
                    self.dequeued(&t);
                    t.fail(
                        SchedError::Cancelled("server is shutting down".into()),
                        false,
                    );
                } else if t.priority == Priority::Rt {
                    self.rt_queue.push_back(t);
                } else {
                    let q = t.entry.be_queue;
                    self.be_queues[q].push_back(t);
                }
            }
            Msg::Shutdown => {
                self.shutting_down = true;
                for q in 0..self.be_queues.len() {
                    while let Some(t) = self.be_queues[q].pop_front() {
                        self.dequeued(&t);
                        t.fail(
                            SchedError::Cancelled("server is shutting down".into()),
                            false,
                        );
                    }
                }
            }
        }
    }

    fn dequeued(&self, t: &Task) {
        self.stats
            .depth(t.priority, t.entry.be_queue)
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Runs until shut down and drained.
    pub fn run(mut self) {
        // Polls once per idle spell: a thread that found nothing sleeps
        // until the next request, then polls again after its work.
        let mut poll = true;
        loop {
            if !self.has_work() {
                if self.shutting_down {
                    break;
                }
                if std::mem::take(&mut poll) {
                    if let Some(m) = self.poll_idle() {
                        self.accept(m);
                        continue;
                    }
                }
                match self.rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(m) => self.accept(m),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while let Ok(m) = self.rx.try_recv() {
                self.accept(m);
            }
            self.collect_started();
            poll = true;
            let now = Instant::now();
            if self.busy() {
                let d = now.duration_since(self.last_tick).as_nanos() as u64;
                self.stats.busy_ns.fetch_add(d, Ordering::Relaxed);
            }
            self.last_tick = now;
            if self.shutting_down {
                self.cancel_running_be();
            }
            self.clock.begin(self.rt_queue.len(), self.rt_running.len());
            let r = match self.cfg.mode {
                Mode::Seq => self.step_seq(),
                Mode::Stream => self.step_stream(),
                Mode::Wait | Mode::Reset | Mode::Reef => self.step_preemptive(),
            };
            // A `seq` pass runs a whole task: not a stall.
            if self.cfg.mode != Mode::Seq {
                self.clock.finish(&self.stats);
            }
            if let Err(e) = r {
                tracing::error!("scheduler step failed: {e}");
                self.fail_all(e);
            }
            if self.busy() || self.is_starting() {
                self.poll_pause.pause();
            }
        }
        // Every BE task handed to the I/O worker is answered before the
        // thread ends.
        if let Some(io) = self.be_io.as_mut() {
            io.shutdown();
        }
    }

    /// A device fault: answer everything in flight with the error.
    fn fail_all(&mut self, e: SchedError) {
        let _ = self.rt_lane.synchronize();
        for t in self.rt_running.drain(..) {
            t.fail(e.clone(), false);
        }
        for q in 0..self.be_running.len() {
            if let Some(t) = self.be_running[q].take() {
                if let Some(l) = self.be_lanes[q].as_mut() {
                    let _ = l.synchronize();
                }
                t.fail(e.clone(), false);
            }
        }
    }

    fn cancel_running_be(&mut self) {
        for q in 0..self.be_running.len() {
            if self.be_running[q].is_some() {
                // A task the I/O worker started may not have its lane yet.
                if let Some(lane) = self.be_lanes[q].as_mut() {
                    let _ = lane.set_preempt(true);
                    let _ = lane.synchronize();
                    let _ = lane.set_preempt(false);
                }
                self.flagged[q] = false;
                if let Some(t) = self.be_running[q].take() {
                    t.fail(
                        SchedError::Cancelled("server is shutting down".into()),
                        true,
                    );
                }
            }
        }
    }

    /// Counts the task complete, then answers it: a client that has its
    /// answer finds it in the statistics.
    fn complete(&self, t: Task) {
        let i = if t.priority == Priority::Rt { 0 } else { 1 };
        self.stats.completed[i].fetch_add(1, Ordering::Relaxed);
        t.finish();
    }

    /// Starts a dequeued task (context, inputs); answers and drops it on failure.
    fn start(&self, mut t: Task) -> Option<Task> {
        self.dequeued(&t);
        if t.cancelled() {
            return None;
        }
        match t.start() {
            Ok(()) => {
                if t.made_context {
                    self.stats.contexts_made.fetch_add(1, Ordering::Relaxed);
                }
                Some(t)
            }
            Err(e) => {
                t.fail(e, false);
                None
            }
        }
    }

    /// Enqueues every remaining kernel of `t` on `lane` as `variant`.
    fn launch_all(lane: &mut dyn Lane, t: &mut Task, variant: Variant) -> Result<(), SchedError> {
        let ctx = t.ctx.as_mut().expect("started task has a context");
        if t.needs_begin {
            lane.begin(ctx.as_mut(), t.next).map_err(internal)?;
            t.needs_begin = false;
        }
        for i in t.next..t.handle.plan().kernels.len() {
            lane.enqueue(ctx.as_mut(), i, variant).map_err(internal)?;
        }
        t.next = t.kernels();
        t.end_mark = lane.enqueued();
        Ok(())
    }

    fn step_seq(&mut self) -> Result<(), SchedError> {
        let next = if let Some(t) = self.rt_queue.pop_front() {
            Some(t)
        } else {
            // Round robin over the BE queues so that none starves.
            let n = self.be_queues.len();
            let q = (0..n)
                .map(|i| (self.seq_next + i) % n)
                .find(|&q| !self.be_queues[q].is_empty());
            q.and_then(|q| {
                self.seq_next = (q + 1) % n;
                self.be_queues[q].pop_front()
            })
        };
        let Some(t) = next else { return Ok(()) };
        let Some(mut t) = self.start(t) else {
            return Ok(());
        };
        let t0 = Instant::now();
        Self::launch_all(self.rt_lane.as_mut(), &mut t, Variant::Rt)?;
        self.rt_lane.synchronize().map_err(internal)?;
        // The task ran inside this step, so the loop's busy accounting missed it.
        self.stats
            .busy_ns
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.last_tick = Instant::now();
        self.complete(t);
        Ok(())
    }

    /// Launches every queued RT task on the RT lane (they run back to back),
    /// padded in `reef` mode.
    fn launch_rt(&mut self) -> Result<bool, SchedError> {
        let mut launched = false;
        while let Some(t) = self.rt_queue.pop_front() {
            let started = self.start(t);
            self.clock.mark("start_rt");
            if let Some(t) = started {
                self.launch_started_rt(t)?;
                launched = true;
            }
        }
        Ok(launched)
    }

    /// Starts every queued RT task (inputs written, context taken) without
    /// launching it: the tasks that started, in arrival order.
    fn start_queued_rt(&mut self) -> Vec<Task> {
        let queued: Vec<Task> = self.rt_queue.drain(..).collect();
        let started = queued.into_iter().filter_map(|t| self.start(t)).collect();
        self.clock.mark("start_rt");
        started
    }

    /// Launches a started RT task's kernels on the RT lane, padded in
    /// `reef` mode.
    fn launch_started_rt(&mut self, mut t: Task) -> Result<(), SchedError> {
        // On an idle RT lane the device reaches the task at once: time its
        // first kernel from there (TaskStats::first_kernel). A timer that
        // fails only costs the figure, not the task.
        t.timed = self.rt_running.is_empty();
        if t.timed {
            if let Err(e) = self.rt_lane.start_timer() {
                tracing::warn!("RT first-kernel timer not started: {e}");
                t.timed = false;
            }
        }
        // Pad only an RT task that starts on an idle RT lane: padding
        // launches are then matched with this task's kernels, and no
        // earlier padding can run late beside another RT kernel.
        if self.cfg.mode == Mode::Reef
            && !self.beside_mode()
            && t.profile.is_some()
            && self.rt_running.is_empty()
        {
            self.launch_rt_padded(&mut t)?;
        } else {
            self.launch_rt_plain(&mut t)?;
        }
        self.rt_running.push_back(t);
        self.clock.mark("launch_rt");
        Ok(())
    }

    /// Enqueues every remaining kernel of RT task `t` on the RT lane.
    fn launch_rt_plain(&mut self, t: &mut Task) -> Result<(), SchedError> {
        let ctx = t.ctx.as_mut().expect("started task has a context");
        if t.needs_begin {
            self.rt_lane.begin(ctx.as_mut(), t.next).map_err(internal)?;
            t.needs_begin = false;
        }
        let first = t.next;
        for i in t.next..t.handle.plan().kernels.len() {
            self.rt_lane
                .enqueue(ctx.as_mut(), i, Variant::Rt)
                .map_err(internal)?;
            if t.timed && i == first {
                Self::stop_timer(self.rt_lane.as_mut(), &mut t.timed);
            }
        }
        t.next = t.kernels();
        t.end_mark = self.rt_lane.enqueued();
        Ok(())
    }

    /// Stops a task's first-kernel timer on `lane` after its first kernel
    /// (a failure is logged and leaves the task untimed: `timed` false).
    fn stop_timer(lane: &mut dyn Lane, timed: &mut bool) {
        if let Err(e) = lane.stop_timer() {
            tracing::warn!("RT first-kernel timer not stopped: {e}");
            *timed = false;
        }
    }

    /// Launches an RT task's kernels, marking those worth padding, then the
    /// padding launches of the paused BE tasks beside them.
    fn launch_rt_padded(&mut self, t: &mut Task) -> Result<(), SchedError> {
        let units = self.device.compute_units();
        let prof = t.profile.clone().expect("checked by the caller");
        // BE tasks that may pad: paused and profiled (checked again below,
        // once the preemption settled).
        let nq = self.be_running.len();
        let any_be = self
            .be_running
            .iter()
            .any(|b| b.as_ref().is_some_and(|b| b.paused && b.profile.is_some()));
        let ctx = t.ctx.as_mut().expect("started task has a context");
        if t.needs_begin {
            self.rt_lane.begin(ctx.as_mut(), t.next).map_err(internal)?;
            t.needs_begin = false;
        }
        let mut slots = Vec::new();
        let first = t.next;
        for i in t.next..t.handle.plan().kernels.len() {
            if any_be {
                if let Some(free) = padding::idle_units(&prof, i, units) {
                    if let Some(slot) = self.rt_lane.pad_slot(ctx.as_mut(), i).map_err(internal)? {
                        slots.push((slot, free));
                    }
                }
            }
            self.rt_lane
                .enqueue(ctx.as_mut(), i, Variant::Rt)
                .map_err(internal)?;
            if t.timed && i == first {
                Self::stop_timer(self.rt_lane.as_mut(), &mut t.timed);
            }
        }
        t.next = t.kernels();
        t.end_mark = self.rt_lane.enqueued();
        // Padding launches go on lanes with no earlier padding still queued
        // (it could otherwise run late, beside another RT kernel).
        let mut eligible = vec![false; nq];
        for (q, e) in eligible.iter_mut().enumerate() {
            let ready = self.be_running[q]
                .as_ref()
                .is_some_and(|b| b.paused && b.profile.is_some());
            if let (true, Some(lane)) = (ready, self.be_lanes[q].as_mut()) {
                *e = lane.is_idle().map_err(internal)?;
            }
        }
        for (slot, free) in slots {
            let t0 = Instant::now();
            let d = prof.rt[slot.index];
            for off in 0..nq {
                let q = (self.pad_next + off) % nq;
                if !eligible[q] {
                    continue;
                }
                let b = self.be_running[q]
                    .as_mut()
                    .expect("eligible lanes run a task");
                let bprof = b.profile.as_ref().expect("eligible tasks are profiled");
                let lane = self.be_lanes[q].as_mut().expect("running task has a lane");
                let Some(choice) = padding::choose(d, free, units, bprof, b.pad_pos, b.pad_known)
                else {
                    continue;
                };
                let bctx = b.ctx.as_mut().expect("running");
                for l in &choice.launches {
                    lane.enqueue_pad(bctx.as_mut(), l.kernel, &slot, l.blocks, choice.budget)
                        .map_err(internal)?;
                }
                b.pad_pos = choice.new_pos;
                self.stats.padded_kernels.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .pad_launches
                    .fetch_add(choice.launches.len() as u64, Ordering::Relaxed);
                self.pad_next = (q + 1) % nq;
                break;
            }
            self.stats.record_padding(t0.elapsed());
        }
        Ok(())
    }

    fn poll_rt(&mut self) -> Result<(), SchedError> {
        if self.rt_running.is_empty() {
            return Ok(());
        }
        let done = self.rt_lane.retired().map_err(internal)?;
        while self.rt_running.front().is_some_and(|t| t.end_mark <= done) {
            let mut t = self.rt_running.pop_front().expect("checked front");
            if t.timed {
                t.first_kernel = self.rt_lane.read_timer().unwrap_or_else(|e| {
                    tracing::warn!("RT first-kernel timer not read: {e}");
                    None
                });
            }
            self.complete(t);
        }
        Ok(())
    }

    fn step_stream(&mut self) -> Result<(), SchedError> {
        self.launch_rt()?;
        self.poll_rt()?;
        self.clock.mark("poll_rt");
        for q in 0..self.be_queues.len() {
            if self.be_running[q].is_none() {
                if let Some(t) = self.be_queues[q].pop_front() {
                    if let Some(mut t) = self.start(t) {
                        Self::launch_all(self.be_lane(q)?.as_mut(), &mut t, Variant::Rt)?;
                        self.be_running[q] = Some(t);
                    }
                }
            }
            if let Some(t) = &self.be_running[q] {
                let mark = t.end_mark;
                let lane = self.be_lanes[q].as_mut().expect("running task has a lane");
                if lane.retired().map_err(internal)? >= mark {
                    let t = self.be_running[q].take().expect("checked");
                    self.complete(t);
                }
            }
        }
        Ok(())
    }

    /// Pauses every running BE task for RT work: lanes with BE kernels in
    /// flight get their flags raised together (not in `wait` mode) and a
    /// drain starts ([`Engine::settle_drain`] ends it). Nothing asks the
    /// device before the flags go up: a lane counts as busy unless every
    /// launch was already seen retired ([`Lane::retired_seen`]), so a lane
    /// that finished since is flagged too and simply drains at once.
    fn pause_be(&mut self) -> Result<(), SchedError> {
        let noticed = Instant::now();
        let mut busy = Vec::new();
        let mut flights = Vec::new();
        for q in 0..self.be_running.len() {
            let Some(t) = self.be_running[q].as_mut() else {
                continue;
            };
            // A task not begun on its lane since it started (the I/O
            // worker started it while RT work ran) has nothing in flight,
            // and its context's progress is still its last user's: resuming
            // it would read that as its own.
            if t.paused || t.needs_begin {
                continue;
            }
            let lane = self.be_lanes[q].as_ref().expect("running task has a lane");
            let in_flight = lane.enqueued() - lane.retired_seen();
            t.paused = true;
            t.preempted = in_flight > 0;
            // Every retired launch completed (no flag was up): the first
            // kernel that may be unfinished.
            t.pad_known = t.next.saturating_sub(in_flight as usize);
            t.pad_pos = t.pad_known as f64;
            if in_flight > 0 {
                busy.push(q);
                flights.push(in_flight);
            }
        }
        if busy.is_empty() {
            return Ok(());
        }
        if self.cfg.mode != Mode::Wait {
            let mut lanes: Vec<&mut dyn Lane> = self
                .be_lanes
                .iter_mut()
                .enumerate()
                .filter(|(q, _)| busy.contains(q))
                .filter_map(|(_, l)| l.as_mut().map(|l| l.as_mut() as &mut dyn Lane))
                .collect();
            self.device.raise_preempt(&mut lanes).map_err(internal)?;
            for &q in &busy {
                self.flagged[q] = true;
            }
        }
        let raise = noticed.elapsed();
        self.stats.record_raise(raise);
        // After the raise, off its path: what each flagged lane had in
        // flight when the flags went up, for the slowest drains.
        let work = busy
            .iter()
            .zip(&flights)
            .filter_map(|(&q, &in_flight)| {
                let t = self.be_running[q].as_ref()?;
                Some(InFlight {
                    model: t.entry.clone(),
                    handle: t.handle.clone(),
                    first: t.pad_known,
                    in_flight,
                })
            })
            .collect();
        let mut timed = Vec::new();
        if self.cfg.time_drains && self.cfg.mode != Mode::Wait {
            for &q in &busy {
                let lane = self.be_lanes[q].as_mut().expect("busy lane");
                match lane.start_drain_timer() {
                    Ok(()) => timed.push(q),
                    Err(e) => tracing::warn!(lane = q, "drain timer: {e}"),
                }
            }
        }
        self.drain = Some(Drain {
            lanes: busy,
            noticed,
            work,
            timed,
            raise,
            polls: 0,
            last_poll: noticed + raise,
            max_gap: Duration::ZERO,
        });
        Ok(())
    }

    /// Ends the preemption in progress, if any: polls its lanes until every
    /// one is drained (all of them at once, so the slowest sets the time) and
    /// records the time since the RT work was noticed. In `reef` mode the
    /// flags come down again at once (padding launches need them down; the
    /// lanes' later launches are ordered after the clear).
    fn settle_drain(&mut self) -> Result<(), SchedError> {
        let Some(mut d) = self.drain.take() else {
            return Ok(());
        };
        // Poll for up to SPIN (a GPU drain takes tens of microseconds),
        // pausing between polls (a yield where CPU workers share the
        // scheduler's cores), then block on each lane left: a long drain
        // (`wait` mode, or CPU workers) stops hogging a core.
        const SPIN: Duration = Duration::from_micros(300);
        while !self.drain_pass(&mut d)? {
            if d.noticed.elapsed() <= SPIN {
                self.poll_pause.pause();
            } else {
                for &q in &d.lanes {
                    let lane = self.be_lanes[q].as_mut().expect("busy lane");
                    lane.synchronize().map_err(internal)?;
                }
                d.lanes.clear();
            }
        }
        self.end_drain(d)
    }

    /// With [`SchedConfig::early_rt`], while RT work runs: one look at the
    /// draining lanes, ending the preemption if all are drained.
    fn poll_drain(&mut self) -> Result<(), SchedError> {
        let Some(mut d) = self.drain.take() else {
            return Ok(());
        };
        if self.drain_pass(&mut d)? {
            self.end_drain(d)
        } else {
            self.drain = Some(d);
            Ok(())
        }
    }

    /// Drops the drained lanes from `d` ([`Lane::drained`]: every kernel
    /// has left the device); true when none is left.
    fn drain_pass(&mut self, d: &mut Drain) -> Result<bool, SchedError> {
        let now = Instant::now();
        d.max_gap = d.max_gap.max(now.duration_since(d.last_poll));
        d.last_poll = now;
        d.polls += 1;
        let mut left = Vec::with_capacity(d.lanes.len());
        for &q in &d.lanes {
            let lane = self.be_lanes[q].as_mut().expect("busy lane");
            if !lane.drained().map_err(internal)? {
                left.push(q);
            }
        }
        d.lanes = left;
        Ok(d.lanes.is_empty())
    }

    /// Records a finished drain; in `reef` mode lowers the flags.
    fn end_drain(&mut self, d: Drain) -> Result<(), SchedError> {
        let latency = d.noticed.elapsed();
        self.stats.record_preemption(latency, 0);
        self.stats.record_poll_gap(d.max_gap);
        if self.stats.is_slow_drain(latency) {
            let us = |t: Duration| t.as_secs_f64() * 1e6;
            self.stats.record_slow_drain(crate::api::SlowDrain {
                us: us(latency),
                raise_us: us(d.raise),
                polls: d.polls,
                max_poll_gap_us: us(d.max_gap),
                lanes: d.work.iter().map(InFlight::describe).collect(),
            });
        }
        // Every lane is drained now: the device drain is the slowest lane's
        // (reading a lane's timer waits for its stop event).
        let mut device: Option<Duration> = None;
        for &q in &d.timed {
            let lane = self.be_lanes[q].as_mut().expect("busy lane");
            match lane.read_drain_timer() {
                Ok(Some(t)) => device = Some(device.map_or(t, |m| m.max(t))),
                Ok(None) => {}
                Err(e) => tracing::warn!(lane = q, "drain timer: {e}"),
            }
        }
        if let Some(t) = device {
            self.stats.record_drain_device(t);
        }
        if self.cfg.mode == Mode::Reef {
            for q in 0..self.flagged.len() {
                if self.flagged[q] {
                    if let Some(lane) = self.be_lanes[q].as_mut() {
                        lane.set_preempt(false).map_err(internal)?;
                    }
                    self.flagged[q] = false;
                }
            }
        }
        Ok(())
    }

    /// Once no RT work is left (or, with `only_beside`, for the lanes chosen
    /// to run beside it): lowers the flags, waits for padding launches and
    /// lets each paused task's lane resume it, which reads the task's exact
    /// progress in the same round trip. Returns
    /// whether a task was resumed.
    fn unpause_be(&mut self, only_beside: bool) -> Result<bool, SchedError> {
        let mut resumed = false;
        for q in 0..self.be_running.len() {
            if only_beside && !self.beside[q] {
                continue;
            }
            let Some(t) = self.be_running[q].as_mut() else {
                continue;
            };
            if !t.paused {
                continue;
            }
            let lane = self.be_lanes[q].as_mut().expect("running task has a lane");
            lane.synchronize().map_err(internal)?;
            if self.flagged[q] {
                lane.set_preempt(false).map_err(internal)?;
                self.flagged[q] = false;
            }
            let ctx = t.ctx.as_mut().expect("running");
            let p = lane.resume(ctx.as_mut()).map_err(internal)?;
            if t.preempted {
                let lost = t.next.saturating_sub(p);
                t.rerun += lost as u32;
                t.preemptions += 1;
                self.stats
                    .kernels_rerun
                    .fetch_add(lost as u64, Ordering::Relaxed);
            }
            t.next = p;
            t.paused = false;
            t.preempted = false;
            resumed = true;
        }
        Ok(resumed)
    }

    /// Whether lane `q` has BE work whose next kernel may run beside RT
    /// work: a running task with kernels left to launch, the next within the
    /// tile limit, if any (by the profile; a paused task's next kernel is an
    /// estimate until its progress is read back). Tasks are not started
    /// beside RT work ([`Engine::feed_be`]).
    fn fit_beside(&self, q: usize) -> bool {
        let Some(t) = &self.be_running[q] else {
            return false;
        };
        if t.next >= t.kernels() && !t.paused {
            return false;
        }
        padding::tile_within(t.profile.as_deref(), t.next, self.cfg.beside_max_tile)
    }

    /// Chooses the BE lanes that run beside the RT work, up to
    /// `beside_lanes`: lanes already chosen keep running while they have
    /// work that fits; free places go to other lanes whose work fits, round
    /// robin from `pad_next`. A lane dropped here keeps the kernels it has
    /// in flight; it gets no more until the RT work ends.
    fn refresh_beside(&mut self) {
        let n = self.be_queues.len();
        for q in 0..n {
            if self.beside[q] && !self.fit_beside(q) {
                self.beside[q] = false;
            }
        }
        let mut count = self.beside.iter().filter(|b| **b).count();
        for off in 0..n {
            if count >= self.cfg.beside_lanes {
                break;
            }
            let q = (self.pad_next + off) % n;
            if !self.beside[q] && self.fit_beside(q) {
                self.beside[q] = true;
                count += 1;
            }
        }
    }

    fn step_preemptive(&mut self) -> Result<(), SchedError> {
        if !self.rt_queue.is_empty() && self.beside_mode() && !self.rt_running.is_empty() {
            // RT work is running and BE lanes run beside it: the new RT
            // kernels queue behind it, so killing BE work would gain nothing.
            self.launch_rt()?;
        } else if !self.rt_queue.is_empty() && self.cfg.raises_after_inputs() {
            // The RT tasks' inputs first, while BE work keeps the device;
            // then the raise, and the RT kernels right behind it.
            let started = self.start_queued_rt();
            self.pause_be()?;
            self.clock.mark("pause_be");
            for t in started {
                self.launch_started_rt(t)?;
            }
        } else if !self.rt_queue.is_empty() {
            self.pause_be()?;
            self.clock.mark("pause_be");
            if self.cfg.launches_rt_early() {
                // RT first: its blocks take the SMs as the running BE blocks
                // leave at their next tile; the drain is watched while the
                // RT work runs and settled before BE work resumes.
                self.launch_rt()?;
            } else {
                // Preempt first, then launch: the RT kernels find the SMs
                // free. (Enqueueing only the first RT kernel before the drain
                // settles was measured worse on the H200, run 1 of session
                // 5: the queued BE kernels, which exit at entry, then wait
                // behind the higher-priority RT kernel, so the BE lanes go
                // idle only after it ends, p50 108-162 us, and the next RT
                // launches waited for the drain.)
                self.settle_drain()?;
                self.clock.mark("settle_drain");
                if self.beside_mode() {
                    // Every lane is paused now; the next RT work favours others.
                    self.beside.fill(false);
                    self.pad_next = (self.pad_next + 1) % self.be_queues.len();
                }
                self.launch_rt()?;
            }
        }
        self.poll_rt()?;
        self.clock.mark("poll_rt");
        // A drain left running by RT work launched first (none otherwise).
        self.poll_drain()?;
        self.clock.mark("poll_drain");
        if self.rt_running.is_empty() && self.rt_queue.is_empty() {
            self.beside.fill(false);
            self.settle_drain()?;
            self.clock.mark("settle_drain");
            self.unpause_be(false)?;
            self.clock.mark("unpause_be");
            self.feed_be(false)?;
            self.clock.mark("feed_be");
        } else if self.beside_mode() {
            let t0 = Instant::now();
            self.refresh_beside();
            let resumed = self.unpause_be(true)?;
            self.clock.mark("unpause_be");
            self.feed_be(true)?;
            self.clock.mark("feed_be");
            if resumed {
                self.stats.record_padding(t0.elapsed());
            }
        }
        Ok(())
    }

    /// Keeps every BE lane (with `only_beside`, every lane chosen to run
    /// beside RT work) at most `be_depth` kernels deep; hands new tasks and
    /// finished ones to the I/O worker ([`BeIo`]), which writes their
    /// inputs and reads their outputs off this thread. Beside RT work no BE
    /// task starts or is answered: their copies would share the host link
    /// with the RT work's; both wait for the RT work to end.
    fn feed_be(&mut self, only_beside: bool) -> Result<(), SchedError> {
        let depth = self.cfg.be_depth as u64;
        let max_tile = if only_beside {
            self.cfg.beside_max_tile
        } else {
            None
        };
        for q in 0..self.be_queues.len() {
            if only_beside && !self.beside[q] {
                continue;
            }
            if self.be_running[q].is_none() {
                if only_beside || self.starting[q] {
                    continue;
                }
                let Some(t) = self.be_queues[q].pop_front() else {
                    continue;
                };
                if let Some(io) = &self.be_io {
                    // The I/O worker writes its inputs; it runs once back
                    // (`collect_started`).
                    self.dequeued(&t);
                    self.starting[q] = true;
                    io.start(q, t);
                    continue;
                }
                self.be_running[q] = self.start(t);
                if self.be_running[q].is_none() {
                    continue;
                }
            }
            self.be_lane(q)?;
            let lane = self.be_lanes[q].as_mut().expect("created above");
            let t = self.be_running[q].as_mut().expect("checked");
            let in_flight = lane.enqueued() - lane.retired().map_err(internal)?;
            if t.cancelled() {
                if in_flight == 0 {
                    let t = self.be_running[q].take().expect("checked");
                    t.fail(SchedError::Cancelled("client went away".into()), true);
                }
                continue;
            }
            let n = t.kernels();
            if t.next < n {
                let ctx = t.ctx.as_mut().expect("running");
                if t.needs_begin {
                    lane.begin(ctx.as_mut(), t.next).map_err(internal)?;
                    t.needs_begin = false;
                }
                let mut room = depth.saturating_sub(in_flight);
                while room > 0
                    && t.next < n
                    && padding::tile_within(t.profile.as_deref(), t.next, max_tile)
                {
                    lane.enqueue(ctx.as_mut(), t.next, Variant::Be)
                        .map_err(internal)?;
                    if only_beside {
                        self.stats.pad_launches.fetch_add(1, Ordering::Relaxed);
                    }
                    t.next += 1;
                    room -= 1;
                }
            } else if in_flight == 0 && !only_beside {
                let p = t
                    .ctx
                    .as_mut()
                    .expect("running")
                    .progress()
                    .map_err(internal)?;
                if p >= n {
                    let t = self.be_running[q].take().expect("checked");
                    match &self.be_io {
                        Some(io) => {
                            // Counted here, answered by the I/O worker once
                            // it has read the outputs.
                            self.stats.completed[1].fetch_add(1, Ordering::Relaxed);
                            io.finish(t);
                        }
                        None => self.complete(t),
                    }
                } else {
                    // A kernel exited early without a preemption we know of.
                    let t = self.be_running[q].as_mut().expect("checked");
                    tracing::warn!(model = %t.entry.name, progress = p, "BE task incomplete; resuming");
                    t.rerun += (t.next - p) as u32;
                    t.next = p;
                    t.needs_begin = true;
                }
            }
        }
        Ok(())
    }
}
