//! Runs a workload against a [`Service`]: open-loop generators for periodic,
//! Poisson and trace loads (one OS thread per task, arrival times fixed in
//! advance, latency measured from the *scheduled* arrival so that a late
//! dispatch counts against the system), closed-loop clients for continuous
//! loads (one tokio task each), warm-up excluded from the figures, and a drain
//! at the end in which every submitted request's answer is awaited and counted.
//!
//! Two entry points:
//! - [`run_mode`] runs the workload once against one service (one mode);
//! - [`run_workload`] takes a factory `FnMut(M) -> Result<Arc<dyn Service>, E>`
//!   over setups `M` (a [`Mode`], or a [`reef_sched::ModeSpec`]: a mode with
//!   its padding policy), measures "rt-alone" (the workload without its BE
//!   tasks, in [`RunOptions::rt_alone`] mode), optionally "be-alone" (its RT
//!   tasks removed, [`RunOptions::be_alone`]) and then every requested setup,
//!   each on a fresh service that it shuts down after the run, labelled as
//!   the setup displays, and compares them.
//!
//! On a service of several devices ([`Service::device_stats`] lists more than
//! one), every record keeps the device that answered it
//! ([`reef_sched::TaskStats::device`]) and each mode's figures are broken down
//! per device, each device compared with the same device of "rt-alone".

use crate::ceiling::{exclusive_ceiling, BE_ALONE};
use crate::clock::{Clock, ClockFigures};
use crate::error::{BenchError, Result};
use crate::figures::{compare, compare_devices, per_device, summarize};
use crate::inputs::{input_pool, pin_inputs};
use crate::schema::{ModeResult, RequestRecord, SchedFigures, WorkloadResult, SCHEMA};
use crate::workload::Workload;
use indicatif::{ProgressBar, ProgressStyle};
use reef_exec::host_pool::HostPool;
use reef_model::Tensor;
use reef_sched::{InferRequest, InferResponse, Input, Mode, Priority, SchedError, Service, Ticket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Label of the RT-alone baseline.
pub const RT_ALONE: &str = "rt-alone";

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Warm-up excluded from the figures; `None` takes the workload's.
    pub warmup: Option<Duration>,
    /// Longest wait for outstanding answers after the end of the run.
    pub drain_timeout: Duration,
    /// Pre-generated input sets per task (requests cycle through them).
    pub input_pool: usize,
    /// Size given to non-batch dynamic dimensions (sequence length).
    pub dynamic_dim: usize,
    /// Open-loop threads sleep until this long before an arrival, then
    /// spin. A sleep that overshoots the arrival is dispatch lag, counted
    /// in RT latency; on virtual machines it reached 1-2 ms at p99 with
    /// 200 us here, so the default is 2 ms (a core's 20% at 100 req/s).
    pub spin: Duration,
    /// Delay between setup and the first arrival (lets threads start).
    pub start_delay: Duration,
    /// Pause of a closed-loop client after a failed submission.
    pub retry_backoff: Duration,
    /// Show a progress bar.
    pub progress: bool,
    /// Mode of the "rt-alone" baseline in [`run_workload`]; `None` skips it.
    pub rt_alone: Option<Mode>,
    /// Mode of the "be-alone" baseline (the workload's BE tasks alone,
    /// measured after rt-alone) in [`run_workload`]; with rt-alone it gives
    /// the throughput ceiling of exclusive RT ([`crate::ceiling`]). `None`
    /// (the default) skips it.
    pub be_alone: Option<Mode>,
    /// Put the tasks' f32 inputs in this pool's pinned buffers
    /// ([`crate::inputs::pin_inputs`]); `None` (the default): ordinary
    /// memory, as most clients hold their data.
    pub pinned_inputs: Option<PinnedInputs>,
    /// Sample the GPU's SM clock over each mode's measured window into
    /// [`ModeResult::sm_clock`](crate::ModeResult::sm_clock); `None` (the
    /// default): no samples.
    pub clock: Option<Clock>,
}

/// A pool of pinned host buffers for the benchmark's inputs
/// ([`RunOptions::pinned_inputs`]).
#[derive(Clone)]
pub struct PinnedInputs(pub Arc<HostPool>);

impl std::fmt::Debug for PinnedInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PinnedInputs({} buffers)", self.0.buffers())
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            warmup: None,
            drain_timeout: Duration::from_secs(30),
            input_pool: 4,
            dynamic_dim: 128,
            spin: Duration::from_millis(2),
            start_delay: Duration::from_millis(100),
            retry_backoff: Duration::from_millis(1),
            progress: true,
            rt_alone: Some(Mode::Reset),
            be_alone: None,
            pinned_inputs: None,
            clock: None,
        }
    }
}

/// The error kind recorded for a scheduler error (see [`crate::schema`]).
pub fn error_kind(e: &SchedError) -> &'static str {
    match e {
        SchedError::UnknownModel(_) => "unknown_model",
        SchedError::InvalidInput(_) => "invalid_input",
        SchedError::Overloaded(_) => "overloaded",
        SchedError::Cancelled(_) => "cancelled",
        SchedError::NotReady(_) => "not_ready",
        SchedError::Internal(_) => "internal",
    }
}

/// What every request of one task shares.
struct TaskCtx {
    index: usize,
    model: String,
    priority: Priority,
    pool: Vec<Vec<Tensor>>,
}

/// What all generators of one run share.
struct RunCtx {
    service: Arc<dyn Service>,
    t0: Instant,
    end: Instant,
    warmup: Duration,
    counters: Arc<Counters>,
    /// The service has several devices: records keep the answering device.
    multi: bool,
    /// Every holder of the context holds the sender: the collector ends when all are gone.
    tx: mpsc::UnboundedSender<RequestRecord>,
}

/// Progress counters, shared with the progress bar (which must not hold the sender).
#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
}

impl RunCtx {
    fn record(
        &self,
        task: &TaskCtx,
        scheduled: Instant,
        lag: Option<Duration>,
        outcome: std::result::Result<InferResponse, &'static str>,
    ) {
        let latency = Instant::now().saturating_duration_since(scheduled);
        let since = scheduled.saturating_duration_since(self.t0);
        let (ok, error, stats, remote) = match outcome {
            Ok(resp) => (true, None, Some(resp.stats), resp.remote),
            Err(kind) => (false, Some(kind.to_string()), None, None),
        };
        let now = scheduled + latency;
        let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1000.0;
        if !ok {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.answered.fetch_add(1, Ordering::Relaxed);
        let rec = RequestRecord {
            task: task.index,
            priority: task.priority,
            arrival_ms: since.as_secs_f64() * 1000.0,
            latency_ms: latency.as_secs_f64() * 1000.0,
            ok,
            error,
            warmup: since < self.warmup,
            queued_ms: stats.as_ref().map(|s| s.queued.as_secs_f64() * 1000.0),
            input_ms: stats.as_ref().map(|s| s.input.as_secs_f64() * 1000.0),
            output_ms: stats.as_ref().map(|s| s.output.as_secs_f64() * 1000.0),
            first_kernel_ms: stats
                .as_ref()
                .and_then(|s| s.first_kernel)
                .map(|d| d.as_secs_f64() * 1000.0),
            preemptions: stats.as_ref().map_or(0, |s| s.preemptions),
            kernels_rerun: stats.as_ref().map_or(0, |s| s.kernels_rerun),
            dispatch_lag_us: lag.map(|l| l.as_secs_f64() * 1e6),
            service_ms: stats
                .as_ref()
                .filter(|s| !s.latency.is_zero())
                .map(|s| s.latency.as_secs_f64() * 1000.0),
            client_ms: remote.map(|r| ms(scheduled, r.sent)),
            request_ms: remote.map(|r| ms(r.sent, r.handler_start)),
            response_ms: remote.map(|r| ms(r.handler_end, now)),
            readback_ms: remote.map(|r| ms(r.replied, now)),
            device: stats.as_ref().filter(|_| self.multi).map(|s| s.device),
        };
        // The collector only goes away after a drain timeout; nothing to do then.
        let _ = self.tx.send(rec);
    }

    fn submit(
        &self,
        task: &TaskCtx,
        k: usize,
        scheduled: Instant,
    ) -> std::result::Result<Ticket, SchedError> {
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        let inputs = task.pool[k % task.pool.len()].iter().cloned();
        self.service.submit(InferRequest {
            model: task.model.clone(),
            inputs: inputs.map(Input::from).collect(),
            priority: Some(task.priority),
            arrival: scheduled,
        })
    }
}

async fn await_ticket(ticket: Ticket) -> std::result::Result<InferResponse, &'static str> {
    match ticket.await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(error_kind(&e)),
        Err(_) => Err("dropped"),
    }
}

/// Sleeps until `spin` before `target`, then spins (precise to a few microseconds).
fn wait_until(target: Instant, spin: Duration) {
    loop {
        let now = Instant::now();
        if now >= target {
            return;
        }
        let left = target - now;
        if left > spin {
            std::thread::sleep(left - spin);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// One open-loop task: submits at the fixed arrival times, hands tickets to tokio.
fn open_loop(
    ctx: Arc<RunCtx>,
    task: Arc<TaskCtx>,
    arrivals: Vec<Duration>,
    spin: Duration,
    rt: tokio::runtime::Handle,
) {
    for (k, off) in arrivals.into_iter().enumerate() {
        let scheduled = ctx.t0 + off;
        wait_until(scheduled, spin);
        let lag = Some(Instant::now().saturating_duration_since(scheduled));
        match ctx.submit(&task, k, scheduled) {
            Ok(ticket) => {
                let (ctx, task) = (ctx.clone(), task.clone());
                rt.spawn(async move {
                    let out = await_ticket(ticket).await;
                    ctx.record(&task, scheduled, lag, out);
                });
            }
            Err(e) => ctx.record(&task, scheduled, lag, Err(error_kind(&e))),
        }
    }
}

/// One closed-loop client: the next request as soon as the last returns.
async fn closed_loop(ctx: Arc<RunCtx>, task: Arc<TaskCtx>, backoff: Duration) {
    tokio::time::sleep_until(ctx.t0.into()).await;
    let mut k = 0usize;
    loop {
        let sent = Instant::now();
        if sent >= ctx.end {
            return;
        }
        match ctx.submit(&task, k, sent) {
            Ok(ticket) => {
                let out = await_ticket(ticket).await;
                ctx.record(&task, sent, None, out);
            }
            Err(e) => {
                ctx.record(&task, sent, None, Err(error_kind(&e)));
                tokio::time::sleep(backoff).await;
            }
        }
        k += 1;
    }
}

fn progress_bar(label: &str, duration: Duration, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(duration.as_millis() as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>12} [{bar:40}] {elapsed:>4} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label.to_string());
    pb
}

/// Runs `workload` once against `service` and labels the figures `label`.
///
/// Checks that every task's model is served, pre-generates inputs, fixes the
/// open-loop arrivals, runs until the workload's duration, then waits up to
/// `opts.drain_timeout` for every outstanding answer. Requests still
/// unanswered then are counted as `drain_timeout` errors. The service is not
/// shut down. Must run inside a multi-threaded tokio runtime.
pub async fn run_mode(
    workload: &Workload,
    label: &str,
    service: Arc<dyn Service>,
    opts: &RunOptions,
) -> Result<ModeResult> {
    workload.validate()?;
    let served = service.models();
    let mut tasks = Vec::with_capacity(workload.tasks.len());
    for (i, t) in workload.tasks.iter().enumerate() {
        let info =
            served
                .iter()
                .find(|m| m.name == t.model)
                .ok_or_else(|| BenchError::UnknownModel {
                    task: i,
                    model: t.model.clone(),
                    available: served
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        let mut pool = input_pool(
            info,
            t.batch_size,
            opts.dynamic_dim,
            opts.input_pool,
            workload.seed_for(i),
        )?;
        if let Some(PinnedInputs(host)) = &opts.pinned_inputs {
            let (_, stayed) = pin_inputs(&mut pool, host);
            if stayed > 0 {
                tracing::warn!(task = i, model = %t.model, stayed, "inputs left in ordinary memory: the pinned pool is full or they are small");
            }
        }
        tasks.push(Arc::new(TaskCtx {
            index: i,
            model: t.model.clone(),
            priority: t.priority,
            pool,
        }));
    }
    let duration = workload.duration();
    let warmup = opts
        .warmup
        .unwrap_or_else(|| workload.warmup())
        .min(duration);
    let schedules: Vec<_> = workload
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| crate::arrivals::schedule(&t.load, duration, workload.seed_for(i)))
        .collect();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = Instant::now() + opts.start_delay;
    let end = t0 + duration;
    let counters = Arc::new(Counters::default());
    let devices = service.device_stats().len();
    let ctx = Arc::new(RunCtx {
        service: service.clone(),
        t0,
        end,
        warmup,
        counters: counters.clone(),
        multi: devices > 1,
        tx,
    });
    tracing::info!(workload = %workload.name, mode = label, tasks = tasks.len(), "run starts");

    let handle = tokio::runtime::Handle::current();
    let mut threads = Vec::new();
    let mut clients = Vec::new();
    for (task, sched) in tasks.iter().zip(schedules) {
        match sched {
            Some(arrivals) => {
                let (c, t, h, spin) = (ctx.clone(), task.clone(), handle.clone(), opts.spin);
                let th = std::thread::Builder::new()
                    .name(format!("disb-task-{}", task.index))
                    .spawn(move || open_loop(c, t, arrivals, spin, h))
                    .map_err(|e| BenchError::Generator(format!("starting a client thread: {e}")))?;
                threads.push(th);
            }
            None => clients.push(tokio::spawn(closed_loop(
                ctx.clone(),
                task.clone(),
                opts.retry_backoff,
            ))),
        }
    }

    let pb = progress_bar(label, duration, opts.progress);
    let running = Arc::new(AtomicBool::new(true));
    let ticker = {
        let (counters, pb, running) = (counters.clone(), pb.clone(), running.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = Instant::now();
                pb.set_position(now.saturating_duration_since(t0).min(duration).as_millis() as u64);
                let phase = if now >= end { "draining" } else { "running" };
                pb.set_message(format!(
                    "{phase}: {} answered, {} failed",
                    counters.answered.load(Ordering::Relaxed),
                    counters.failed.load(Ordering::Relaxed)
                ));
            }
        })
    };

    // The collector ends when every sender is gone: all generators finished
    // and every outstanding ticket answered.
    drop(ctx);
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::from_std(end + opts.drain_timeout);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) => records.push(r),
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    mode = label,
                    "drain timeout: some requests were not answered"
                );
                break;
            }
        }
    }
    running.store(false, Ordering::Relaxed);
    let _ = ticker.await;
    for c in &clients {
        c.abort();
    }
    let joined = tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
        .await
        .unwrap_or(false);
    if !joined {
        return Err(BenchError::Generator(
            "an open-loop client thread panicked".into(),
        ));
    }
    let submitted = counters.submitted.load(Ordering::Relaxed);
    let drain_timeouts = submitted.saturating_sub(records.len() as u64);
    pb.finish_with_message(format!(
        "done: {} requests, {} unanswered",
        records.len(),
        drain_timeouts
    ));

    let stats = service.stats();
    let mut result = summarize(
        label,
        workload,
        warmup.as_secs_f64(),
        records,
        drain_timeouts,
    );
    result.sched = Some(SchedFigures::from(&stats));
    result.sm_clock = opts
        .clock
        .as_ref()
        .and_then(|Clock(c)| ClockFigures::of(&c.sm_mhz_between(t0 + warmup, end)));
    result.scheduler = (!stats.mode.is_empty()).then(|| stats.mode.clone());
    result.device = (!stats.device.is_empty()).then(|| stats.device.clone());
    if devices > 1 {
        let per = service.device_stats();
        result.devices = per_device(&result, devices);
        for d in &mut result.devices {
            if let Some(ds) = per.iter().find(|x| x.index == d.device) {
                d.name = Some(ds.device.clone());
                d.sched = Some(SchedFigures::from(&ds.stats));
            }
        }
    }
    tracing::info!(
        mode = label,
        rt_mean_ms = result.rt.mean_ms,
        rt_p99_ms = result.rt.p99_ms,
        be_rps = result.be_throughput_rps,
        "run done"
    );
    Ok(result)
}

/// Puts mode results together with their comparison against "rt-alone"
/// (per mode, and per device for modes with per-device figures).
pub fn assemble(
    workload: &Workload,
    generator: &str,
    started: SystemTime,
    modes: Vec<ModeResult>,
) -> WorkloadResult {
    let comparison = compare(&modes, RT_ALONE);
    let device_comparison = compare_devices(&modes, RT_ALONE);
    let ceiling = exclusive_ceiling(&modes, RT_ALONE);
    WorkloadResult {
        schema: SCHEMA.to_string(),
        generator: generator.to_string(),
        device: modes.iter().find_map(|m| m.device.clone()),
        started_unix_s: started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        workload: workload.clone(),
        modes,
        comparison,
        device_comparison,
        ceiling,
    }
}

/// Runs "rt-alone" (when `opts.rt_alone` is set and the workload has RT tasks),
/// "be-alone" (when `opts.be_alone` is set and it has BE tasks) and then each
/// of `modes`, each on a fresh service from `factory`, which is
/// shut down after its run. The factory is called on the async task; wrap
/// long blocking work in `tokio::task::block_in_place`.
pub async fn run_workload<M, F, E>(
    workload: &Workload,
    modes: &[M],
    mut factory: F,
    opts: &RunOptions,
) -> Result<WorkloadResult>
where
    M: Copy + std::fmt::Display + From<Mode>,
    F: FnMut(M) -> std::result::Result<Arc<dyn Service>, E>,
    E: std::fmt::Display,
{
    workload.validate()?;
    let started = SystemTime::now();
    let mut plan: Vec<(String, M, Workload)> = Vec::new();
    let baselines = [
        (RT_ALONE, opts.rt_alone, workload.rt_only(), "RT"),
        (BE_ALONE, opts.be_alone, workload.be_only(), "BE"),
    ];
    for (label, mode, alone, kind) in baselines {
        match (mode, alone) {
            (Some(mode), Some(alone)) => plan.push((label.to_string(), M::from(mode), alone)),
            (Some(_), None) => {
                tracing::warn!(workload = %workload.name, "no {kind} task: {label} skipped")
            }
            (None, _) => {}
        }
    }
    plan.extend(modes.iter().map(|m| (m.to_string(), *m, workload.clone())));
    let mut results = Vec::with_capacity(plan.len());
    for (label, mode, w) in plan {
        let service = factory(mode).map_err(|e| BenchError::Factory {
            mode: label.clone(),
            message: e.to_string(),
        })?;
        let out = run_mode(&w, &label, service.clone(), opts).await;
        service.shutdown();
        results.push(out?);
    }
    Ok(assemble(
        workload,
        &format!("reef-bench {}", env!("CARGO_PKG_VERSION")),
        started,
        results,
    ))
}
