//! Several devices in one server: [`MultiScheduler`] serves one [`Service`]
//! over one [`Scheduler`] per device. It places models on all devices or on a
//! chosen subset, routes each request to the least-loaded healthy device that
//! holds its model (ties broken round-robin), takes a device that faults out of
//! rotation and retries the request elsewhere, and aggregates statistics
//! ([`Service::stats`]) while also reporting them per device
//! ([`Service::device_stats`], with each device's health).
//!
//! Load is measured per priority class, RT first: every request goes where the
//! fewest RT requests are waiting or running, then where the fewest BE ones are
//! (an RT request there preempts no BE work; a BE request there is not
//! preempted).
//! "Waiting or running" is the larger of the device's queue depth (which also
//! sees requests submitted to the device's scheduler directly) and the number
//! of requests this router sent there whose tickets have not resolved yet.
//!
//! Every answer carries the index of the device that gave it
//! ([`crate::TaskStats::device`]; a request retried on another device after a
//! fault names the device that answered), so clients can break their figures
//! down per device.
//!
//! In-flight counting wraps each device ticket: a small forwarding task on a
//! private one-thread tokio runtime (independent of any runtime the caller
//! runs in) waits for the device's answer, passes it on and then decrements the
//! counter. Dropping the returned ticket drops the device ticket too, so the
//! device scheduler's cancellation of unfinished BE work still applies.

use crate::api::{
    DeviceStats, GraphSource, InferRequest, InferResponse, LatencySummary, ModelInfo, Priority,
    SchedError, SchedStats, Service, Ticket,
};
use crate::{NewBatch, Scheduler};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Index of a priority class in per-class arrays.
fn class(p: Priority) -> usize {
    match p {
        Priority::Rt => 0,
        Priority::Be => 1,
    }
}

/// One device as the router sees it.
struct Slot {
    sched: Arc<Scheduler>,
    healthy: AtomicBool,
    /// Requests routed here whose tickets have not resolved, by class (rt, be).
    in_flight: [AtomicUsize; 2],
}

/// Where a model lives and how its requests are classed by default.
#[derive(Clone)]
struct Placement {
    devices: Vec<usize>,
    default_priority: Priority,
}

/// Decrements a device's in-flight counter when the request resolves (or is
/// dropped unresolved).
struct InFlight {
    slots: Arc<Vec<Slot>>,
    device: usize,
    class: usize,
    pending: Arc<AtomicUsize>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slots[self.device].in_flight[self.class].fetch_sub(1, Ordering::AcqRel);
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A [`Service`] over several device schedulers (one per GPU of a server).
pub struct MultiScheduler {
    slots: Arc<Vec<Slot>>,
    placement: RwLock<HashMap<String, Placement>>,
    /// Serializes placement changes (loads and unloads) with each other.
    placing: Mutex<()>,
    rr: AtomicUsize,
    /// Forwarding tasks still running, summed over devices.
    pending: Arc<AtomicUsize>,
    forwarder: tokio::runtime::Handle,
    /// Dropping it tells the forwarding thread to exit once `pending` is zero.
    _stop: tokio::sync::oneshot::Sender<()>,
    /// Itself, for the threads that route requests needing a compile.
    me: std::sync::Weak<MultiScheduler>,
}

/// Rewrites an error of device `device` so that its message names the device,
/// keeping its kind.
fn on_device(device: usize, e: SchedError) -> SchedError {
    match e {
        SchedError::UnknownModel(m) => SchedError::UnknownModel(m),
        SchedError::NotReady(m) => SchedError::NotReady(m),
        SchedError::InvalidInput(m) => SchedError::InvalidInput(format!("device {device}: {m}")),
        SchedError::Overloaded(m) => SchedError::Overloaded(format!("device {device}: {m}")),
        SchedError::Cancelled(m) => SchedError::Cancelled(format!("device {device}: {m}")),
        SchedError::Internal(m) => SchedError::Internal(format!("device {device}: {m}")),
    }
}

impl MultiScheduler {
    /// Serves over `schedulers` (device `i` is `schedulers[i]`). Models the
    /// schedulers already hold are adopted where they are. Fails without any
    /// scheduler, or when the forwarding thread cannot start.
    pub fn new(schedulers: Vec<Arc<Scheduler>>) -> Result<Arc<MultiScheduler>, SchedError> {
        if schedulers.is_empty() {
            return Err(SchedError::InvalidInput(
                "a multi-device scheduler needs at least one device".into(),
            ));
        }
        let mut placement: HashMap<String, Placement> = HashMap::new();
        for (i, s) in schedulers.iter().enumerate() {
            for m in s.models() {
                placement
                    .entry(m.name)
                    .or_insert_with(|| Placement {
                        devices: vec![],
                        default_priority: m.default_priority,
                    })
                    .devices
                    .push(i);
            }
        }
        let slots: Vec<Slot> = schedulers
            .into_iter()
            .map(|sched| Slot {
                sched,
                healthy: AtomicBool::new(true),
                in_flight: [AtomicUsize::new(0), AtomicUsize::new(0)],
            })
            .collect();
        let pending = Arc::new(AtomicUsize::new(0));
        let (forwarder, stop) = start_forwarder(pending.clone())?;
        Ok(Arc::new_cyclic(|me| MultiScheduler {
            slots: Arc::new(slots),
            placement: RwLock::new(placement),
            placing: Mutex::new(()),
            rr: AtomicUsize::new(0),
            pending,
            forwarder,
            _stop: stop,
            me: me.clone(),
        }))
    }

    /// Number of devices.
    pub fn devices(&self) -> usize {
        self.slots.len()
    }

    /// The scheduler of device `device`, if there is one.
    pub fn scheduler(&self, device: usize) -> Option<&Arc<Scheduler>> {
        self.slots.get(device).map(|s| &s.sched)
    }

    /// Loads (or reloads) a model on the devices listed (duplicates ignored)
    /// and unloads it from the others that held it. Fails naming a device
    /// index that is out of range (before anything is loaded) or the device
    /// whose load failed (the model then stays where it was loaded so far).
    pub fn load_model_on(
        &self,
        name: &str,
        source: GraphSource,
        default_priority: Priority,
        devices: &[usize],
    ) -> Result<(), SchedError> {
        if devices.is_empty() {
            return Err(SchedError::InvalidInput(format!(
                "model '{name}' must be placed on at least one device"
            )));
        }
        if let Some(&d) = devices.iter().find(|&&d| d >= self.slots.len()) {
            return Err(SchedError::InvalidInput(format!(
                "device {d} does not exist (devices are 0..{})",
                self.slots.len()
            )));
        }
        let mut want = devices.to_vec();
        want.sort_unstable();
        want.dedup();
        let _placing = self.placing.lock();
        let before = self
            .placement
            .read()
            .get(name)
            .map(|p| p.devices.clone())
            .unwrap_or_default();
        let mut loaded = vec![];
        for &d in &want {
            if let Err(e) = self.slots[d]
                .sched
                .load_model(name, source.clone(), default_priority)
            {
                let mut now: Vec<usize> = before.iter().chain(&loaded).copied().collect();
                now.sort_unstable();
                now.dedup();
                self.set_placement(name, now, default_priority);
                return Err(on_device(d, e));
            }
            loaded.push(d);
        }
        // Route to the new placement before unloading from the old one.
        self.set_placement(name, want.clone(), default_priority);
        for d in before.into_iter().filter(|d| !want.contains(d)) {
            if let Err(e) = self.slots[d].sched.unload_model(name) {
                tracing::warn!(model = name, device = d, "unloading: {e}");
            }
        }
        tracing::info!(model = name, devices = ?want, "model placed");
        Ok(())
    }

    fn set_placement(&self, name: &str, devices: Vec<usize>, default_priority: Priority) {
        let mut p = self.placement.write();
        if devices.is_empty() {
            p.remove(name);
        } else {
            p.insert(
                name.to_string(),
                Placement {
                    devices,
                    default_priority,
                },
            );
        }
    }

    /// Puts a device into rotation or takes it out (operators, tests). A
    /// device taken out keeps its models and finishes the work it has.
    pub fn set_healthy(&self, device: usize, healthy: bool) -> Result<(), SchedError> {
        let slot = self.slots.get(device).ok_or_else(|| {
            SchedError::InvalidInput(format!(
                "device {device} does not exist (devices are 0..{})",
                self.slots.len()
            ))
        })?;
        slot.healthy.store(healthy, Ordering::Release);
        tracing::info!(device, healthy, "device health set");
        Ok(())
    }

    /// The load key of a device (smaller is less loaded): its RT work, then
    /// its BE work.
    fn load(&self, device: usize) -> (usize, usize) {
        let slot = &self.slots[device];
        let st = slot.sched.stats();
        let rt = st
            .rt_queue_depth
            .max(slot.in_flight[0].load(Ordering::Acquire));
        let be = st
            .be_queue_depth
            .max(slot.in_flight[1].load(Ordering::Acquire));
        // Both classes go where the fewest RT requests are, then where the
        // fewest BE ones are: an RT request on a device without BE work
        // preempts nothing, and a BE request there is not preempted.
        (rt, be)
    }

    /// The healthy devices holding the model, least loaded first; equally
    /// loaded ones in round-robin order.
    fn candidates(&self, devices: &[usize]) -> Vec<usize> {
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let n = devices.len();
        let mut c: Vec<((usize, usize), usize, usize)> = (0..n)
            .map(|k| devices[(start + k) % n])
            .filter(|&d| self.slots[d].healthy.load(Ordering::Acquire))
            .enumerate()
            .map(|(order, d)| (self.load(d), order, d))
            .collect();
        c.sort_unstable();
        c.into_iter().map(|(_, _, d)| d).collect()
    }

    /// Submits to the first of `candidates` that takes the request and
    /// returns the device's ticket with the device and the request's class
    /// (counted in flight there: [`MultiScheduler::forward`] passes it on). A
    /// device whose submit fails with [`SchedError::Internal`] is taken out
    /// of rotation and the next candidate tried; a full device
    /// ([`SchedError::Overloaded`]) is skipped for this request only. A batch
    /// size new to a device is compiled here, on this thread, so that a
    /// device fault at its load moves the request on.
    fn route(
        &self,
        req: InferRequest,
        place: &Placement,
        candidates: Vec<usize>,
    ) -> Result<(Ticket, usize, usize), SchedError> {
        let c = class(req.priority.unwrap_or(place.default_priority));
        let n = candidates.len();
        let model = req.model.clone();
        let mut req = Some(req);
        let mut last = None;
        for (k, d) in candidates.into_iter().enumerate() {
            // Copy the inputs only while another device may need them.
            let attempt = match (k + 1 == n, req.take()) {
                (true, Some(r)) => r,
                (false, Some(r)) => {
                    let a = r.clone();
                    req = Some(r);
                    a
                }
                (_, None) => break,
            };
            let slot = &self.slots[d];
            // Count it before submitting so that concurrent submits see it.
            slot.in_flight[c].fetch_add(1, Ordering::AcqRel);
            self.pending.fetch_add(1, Ordering::AcqRel);
            match slot.sched.submit_with(attempt, NewBatch::Inline) {
                Ok(t) => return Ok((t, d, c)),
                Err(e) => {
                    slot.in_flight[c].fetch_sub(1, Ordering::AcqRel);
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    match e {
                        SchedError::Internal(ref m) => {
                            tracing::error!(device = d, "device fault, out of rotation: {m}");
                            slot.healthy.store(false, Ordering::Release);
                            last = Some(on_device(d, e));
                        }
                        SchedError::Overloaded(_) => last = Some(on_device(d, e)),
                        e => return Err(on_device(d, e)),
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            SchedError::Internal(format!(
                "no healthy device holds model '{model}' (placed on devices {:?})",
                place.devices
            ))
        }))
    }

    /// [`MultiScheduler::route`] on a thread of its own, for a request whose
    /// first device must compile its model for the request's batch size
    /// (seconds on a GPU): the caller gets its ticket at once, and the
    /// answer, or the routing's error, comes through it.
    fn route_later(
        self: Arc<Self>,
        req: InferRequest,
        place: Placement,
        candidates: Vec<usize>,
    ) -> Result<Ticket, SchedError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("reef-multi-route".into())
            .spawn(move || match self.route(req, &place, candidates) {
                Ok((ticket, d, c)) => self.forward_into(ticket, d, c, tx),
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| SchedError::Internal(format!("starting a routing thread: {e}")))?;
        Ok(rx)
    }

    /// Wraps a device ticket so that the device's in-flight count drops when
    /// it resolves.
    fn forward(&self, inner: Ticket, device: usize, class: usize) -> Ticket {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.forward_into(inner, device, class, tx);
        rx
    }

    /// [`MultiScheduler::forward`] into the client's end `tx`.
    fn forward_into(
        &self,
        inner: Ticket,
        device: usize,
        class: usize,
        mut tx: tokio::sync::oneshot::Sender<Result<InferResponse, SchedError>>,
    ) {
        let guard = InFlight {
            slots: self.slots.clone(),
            device,
            class,
            pending: self.pending.clone(),
        };
        self.forwarder.spawn(async move {
            let _guard = guard;
            let mut inner = inner;
            let res = tokio::select! {
                r = &mut inner => Some(r),
                // The client dropped its ticket: dropping `inner` cancels.
                _ = tx.closed() => None,
            };
            if let Some(r) = res {
                let r: Result<InferResponse, SchedError> = r.unwrap_or_else(|_| {
                    Err(SchedError::Internal(format!(
                        "device {device}: scheduler dropped the request"
                    )))
                });
                // The answer names the device that gave it.
                let _ = tx.send(r.map(|mut resp| {
                    resp.stats.device = device;
                    resp
                }));
            }
        });
    }

    /// Blocks until a request's result is available (for non-async callers).
    pub fn infer_blocking(&self, req: InferRequest) -> Result<InferResponse, SchedError> {
        let ticket = self.submit(req)?;
        ticket
            .blocking_recv()
            .map_err(|_| SchedError::Internal("scheduler dropped the request".into()))?
    }
}

/// Starts the one-thread runtime that runs ticket forwarders. The thread ends
/// once the returned sender is dropped and no forwarder is left.
fn start_forwarder(
    pending: Arc<AtomicUsize>,
) -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>), SchedError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| SchedError::Internal(format!("starting the ticket forwarder: {e}")))?;
    let handle = rt.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("reef-multi-fwd".into())
        .spawn(move || {
            rt.block_on(async move {
                let _ = stop_rx.await;
                while pending.load(Ordering::Acquire) > 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .map_err(|e| SchedError::Internal(format!("spawning the ticket forwarder: {e}")))?;
    Ok((handle, stop_tx))
}

impl Service for MultiScheduler {
    /// Each model once, as the lowest-numbered device holding it describes it.
    fn models(&self) -> Vec<ModelInfo> {
        let mut seen: HashMap<String, ModelInfo> = HashMap::new();
        for s in self.slots.iter() {
            for m in s.sched.models() {
                seen.entry(m.name.clone()).or_insert(m);
            }
        }
        let mut v: Vec<ModelInfo> = seen.into_values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Routes to the least-loaded healthy device holding the model. A device
    /// whose submit fails with [`SchedError::Internal`] is taken out of
    /// rotation and the next candidate tried; a full device
    /// ([`SchedError::Overloaded`]) is skipped for this request only.
    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        let place = self
            .placement
            .read()
            .get(&req.model)
            .cloned()
            .ok_or_else(|| SchedError::UnknownModel(req.model.clone()))?;
        let candidates = self.candidates(&place.devices);
        let needs_compile = candidates
            .first()
            .is_some_and(|&d| !self.slots[d].sched.compiled_for(&req));
        match (needs_compile, self.me.upgrade()) {
            (true, Some(me)) => me.route_later(req, place, candidates),
            _ => self
                .route(req, &place, candidates)
                .map(|(t, d, c)| self.forward(t, d, c)),
        }
    }

    /// Loads (or reloads) the model on every device.
    fn load_model(
        &self,
        name: &str,
        source: GraphSource,
        default_priority: Priority,
    ) -> Result<(), SchedError> {
        let all: Vec<usize> = (0..self.slots.len()).collect();
        self.load_model_on(name, source, default_priority, &all)
    }

    /// Unloads the model from every device holding it.
    fn unload_model(&self, name: &str) -> Result<(), SchedError> {
        let _placing = self.placing.lock();
        let place = self
            .placement
            .write()
            .remove(name)
            .ok_or_else(|| SchedError::UnknownModel(name.to_string()))?;
        let mut first_err = None;
        for d in place.devices {
            if let Err(e) = self.slots[d].sched.unload_model(name) {
                tracing::warn!(model = name, device = d, "unloading: {e}");
                first_err.get_or_insert(on_device(d, e));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The sum over devices of queue depths, completions, preemptions and
    /// re-run kernels and contexts made; `busy_fraction` is the mean over
    /// devices; the latency summaries are those of the device with the most
    /// samples (summaries of different histograms cannot be merged exactly);
    /// the slowest drains and scheduling passes are the slowest of all
    /// devices. `device` lists the devices; `mode` is
    /// the first device's mode.
    fn stats(&self) -> SchedStats {
        let all: Vec<SchedStats> = self.slots.iter().map(|s| s.sched.stats()).collect();
        let most = |f: fn(&SchedStats) -> LatencySummary| {
            all.iter()
                .map(f)
                .max_by_key(|l| l.count)
                .unwrap_or_default()
        };
        SchedStats {
            device: all
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{i}: {}", s.device))
                .collect::<Vec<_>>()
                .join("; "),
            mode: all.first().map(|s| s.mode.clone()).unwrap_or_default(),
            rt_queue_depth: all.iter().map(|s| s.rt_queue_depth).sum(),
            be_queue_depth: all.iter().map(|s| s.be_queue_depth).sum(),
            completed: [
                all.iter().map(|s| s.completed[0]).sum(),
                all.iter().map(|s| s.completed[1]).sum(),
            ],
            preemptions: all.iter().map(|s| s.preemptions).sum(),
            kernels_rerun: all.iter().map(|s| s.kernels_rerun).sum(),
            preempt_latency_us: most(|s| s.preempt_latency_us),
            preempt_raise_us: most(|s| s.preempt_raise_us),
            drain_device_us: most(|s| s.drain_device_us),
            drain_poll_gap_us: most(|s| s.drain_poll_gap_us),
            padding_latency_us: most(|s| s.padding_latency_us),
            padded_kernels: all.iter().map(|s| s.padded_kernels).sum(),
            pad_launches: all.iter().map(|s| s.pad_launches).sum(),
            busy_fraction: all.iter().map(|s| s.busy_fraction).sum::<f64>()
                / all.len().max(1) as f64,
            slowest_drains: {
                let mut v: Vec<_> = all.iter().flat_map(|s| s.slowest_drains.clone()).collect();
                v.sort_by(|a, b| b.us.total_cmp(&a.us));
                v.truncate(crate::api::SLOWEST_DRAINS);
                v
            },
            contexts_made: all.iter().map(|s| s.contexts_made).sum(),
            slowest_steps: {
                let mut v: Vec<_> = all.iter().flat_map(|s| s.slowest_steps.clone()).collect();
                v.sort_by(|a, b| b.us.total_cmp(&a.us));
                v.truncate(crate::api::SLOWEST_STEPS);
                v
            },
        }
    }

    /// One entry per device, by index: its scheduler's statistics and whether
    /// it is in rotation (see [`MultiScheduler::set_healthy`]; a device whose
    /// submit faulted reports `healthy = false`).
    fn device_stats(&self) -> Vec<DeviceStats> {
        self.slots
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let stats = s.sched.stats();
                DeviceStats {
                    index,
                    device: stats.device.clone(),
                    healthy: s.healthy.load(Ordering::Acquire),
                    stats,
                }
            })
            .collect()
    }

    /// The first device's pool: its buffers are pinned for every device
    /// of the process.
    fn host_pool(&self) -> Option<Arc<reef_exec::host_pool::HostPool>> {
        self.slots.first().and_then(|s| s.sched.host_pool())
    }

    /// Maps the region on device `device`'s scheduler; a request routed to
    /// another device copies from it peer to peer.
    fn open_shared(
        &self,
        device: usize,
        raw_handle: &[u8],
        byte_size: usize,
    ) -> Result<Arc<dyn reef_exec::SharedRegion>, SchedError> {
        let slot = self.slots.get(device).ok_or_else(|| {
            SchedError::InvalidInput(format!(
                "device {device} does not exist (this service has {} devices, numbered from 0)",
                self.slots.len()
            ))
        })?;
        slot.sched.open_shared(0, raw_handle, byte_size)
    }

    /// Shuts every device down (each answers everything it has queued).
    fn shutdown(&self) {
        for s in self.slots.iter() {
            s.sched.shutdown();
        }
    }
}
