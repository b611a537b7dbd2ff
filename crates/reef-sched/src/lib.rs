//! reef's scheduler: one per device. It owns the models loaded on the device,
//! an RT queue and up to 32 BE queues, and drives the executor in one of five
//! modes (seq, stream, wait, reset, reef). Front ends use it through the
//! [`Service`] trait; [`Scheduler`] is the implementation.

pub mod api;
mod be_io;
pub mod config;
mod engine;
mod loader;
pub mod multi;
pub mod padding;
pub mod registry;
pub mod starting;
pub mod stats;
mod step_clock;
mod task;

pub use api::*;
pub use config::{
    ModeSpec, PollPause, SchedConfig, DEFAULT_CONTEXTS_AT_LOAD, DEFAULT_PINNED_INPUT_BYTES,
    MAX_POOLED_CONTEXTS,
};
pub use reef_exec::host_pool::{HostPool, NoPin};
pub use reef_exec::shared::{SharedRegion, IPC_HANDLE_BYTES};

use crate::engine::{Engine, Msg};
use crate::loader::{Job, Loader};
use crate::registry::ModelEntry;
use crate::stats::Stats;
use crate::task::Task;
use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};
use reef_exec::Device;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Pinned buffers made per FP32 model input at load (a few requests of the
/// model in flight at once find theirs ready).
const PREPARED_INPUT_BUFFERS: usize = 4;

/// Where [`Scheduler::submit_with`] compiles a model for a batch size it
/// has not run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewBatch {
    /// On the loader thread; the request waits there and `submit` returns
    /// at once (a load failure is the request's answer).
    Loader,
    /// On the submitting thread, so that a load failure is `submit`'s
    /// error ([`MultiScheduler`](multi::MultiScheduler) retries those on
    /// another device, from a routing thread of its own).
    Inline,
}

/// A scheduler for one device (implements [`Service`]).
pub struct Scheduler {
    device: Arc<dyn Device>,
    cfg: SchedConfig,
    models: RwLock<HashMap<String, Arc<ModelEntry>>>,
    next_queue: AtomicUsize,
    tx: Sender<Msg>,
    stats: Arc<Stats>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    /// The device's pinned input pool ([`SchedConfig::pinned_input_bytes`]).
    host_pool: Option<Arc<reef_exec::host_pool::HostPool>>,
    /// Compiles models for new batch sizes off the submitting thread
    /// (started with the first such request).
    loader: Mutex<Option<Loader>>,
}

impl Scheduler {
    /// Starts a scheduler (and its scheduling thread) on `device`.
    pub fn new(device: Arc<dyn Device>, cfg: SchedConfig) -> Result<Arc<Scheduler>, SchedError> {
        cfg.validate().map_err(SchedError::InvalidInput)?;
        let stats = Arc::new(Stats::new(
            device.name(),
            cfg.mode.to_string(),
            cfg.be_queues,
        ));
        let host_pool = (cfg.pinned_input_bytes > 0)
            .then(|| device.host_pool(cfg.pinned_input_bytes))
            .flatten();
        let (tx, rx) = crossbeam_channel::unbounded();
        let engine = Engine::new(device.clone(), cfg.clone(), stats.clone(), rx)?;
        let thread = std::thread::Builder::new()
            .name("reef-sched".into())
            .spawn(move || engine.run())
            .map_err(|e| SchedError::Internal(format!("spawning the scheduling thread: {e}")))?;
        Ok(Arc::new(Scheduler {
            device,
            cfg,
            models: RwLock::new(HashMap::new()),
            next_queue: AtomicUsize::new(0),
            tx,
            stats,
            thread: Mutex::new(Some(thread)),
            stopped: AtomicBool::new(false),
            host_pool,
            loader: Mutex::new(None),
        }))
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }

    /// The device it drives.
    pub fn device(&self) -> &Arc<dyn Device> {
        &self.device
    }

    /// [`Service::submit`], with a choice of where a batch size the model
    /// has not run yet is compiled.
    pub(crate) fn submit_with(
        &self,
        req: InferRequest,
        new_batch: NewBatch,
    ) -> Result<Ticket, SchedError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(SchedError::Cancelled("server is shutting down".into()));
        }
        let entry = self
            .models
            .read()
            .get(&req.model)
            .cloned()
            .ok_or_else(|| SchedError::UnknownModel(req.model.clone()))?;
        let batch = entry.check_inputs(&req.inputs, self.cfg.max_batch)?;
        let priority = req.priority.unwrap_or(entry.default_priority);
        let depth = self.stats.depth(priority, entry.be_queue);
        let capacity = match priority {
            Priority::Rt => self.cfg.rt_capacity,
            Priority::Be => self.cfg.be_capacity,
        };
        if depth.fetch_add(1, Ordering::AcqRel) >= capacity {
            depth.fetch_sub(1, Ordering::AcqRel);
            return Err(SchedError::Overloaded(format!(
                "{priority} queue of model '{}' is full ({capacity} waiting)",
                req.model
            )));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handle = match (entry.loaded_handle(batch), new_batch) {
            (Some(h), _) => h,
            (None, NewBatch::Inline) => match entry.handle(&self.device, batch) {
                Ok(h) => h,
                Err(e) => {
                    depth.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
            },
            (None, NewBatch::Loader) => {
                // A batch size not compiled yet: the loader compiles it (seconds
                // on a GPU) while this thread goes on.
                let job = Job {
                    entry,
                    batch,
                    priority,
                    inputs: req.inputs,
                    arrival: req.arrival,
                    tx,
                };
                return match self.load_later(job) {
                    Ok(()) => Ok(rx),
                    Err(e) => {
                        depth.fetch_sub(1, Ordering::AcqRel);
                        Err(e)
                    }
                };
            }
        };
        let task = Task::new(entry, handle, batch, priority, req.inputs, req.arrival, tx);
        if self.tx.send(Msg::Task(Box::new(task))).is_err() {
            depth.fetch_sub(1, Ordering::AcqRel);
            return Err(SchedError::Cancelled("scheduler stopped".into()));
        }
        Ok(rx)
    }

    /// Whether `req` can start without a compile: its model is compiled for
    /// its batch size (also true when the request is invalid, so that its
    /// submit fails at once).
    pub(crate) fn compiled_for(&self, req: &InferRequest) -> bool {
        let Some(entry) = self.models.read().get(&req.model).cloned() else {
            return true;
        };
        let batch = req
            .inputs
            .first()
            .and_then(|i| i.shape().first().copied())
            .unwrap_or(1);
        batch == 0 || batch > self.cfg.max_batch || entry.loaded_handle(batch).is_some()
    }

    /// Hands a request whose batch size is not compiled yet to the loader
    /// (started here the first time).
    fn load_later(&self, job: Job) -> Result<(), SchedError> {
        let mut loader = self.loader.lock();
        if self.stopped.load(Ordering::Acquire) {
            return Err(SchedError::Cancelled("server is shutting down".into()));
        }
        if loader.is_none() {
            let l = Loader::start(self.device.clone(), self.stats.clone(), self.tx.clone())
                .map_err(|e| SchedError::Internal(format!("starting the model loader: {e}")))?;
            *loader = Some(l);
        }
        let l = loader.as_ref().expect("started above");
        l.submit(job)
            .map_err(|_| SchedError::Cancelled("server is shutting down".into()))
    }

    /// Blocks until a request's result is available (for non-async callers).
    pub fn infer_blocking(&self, req: InferRequest) -> Result<InferResponse, SchedError> {
        let ticket = self.submit(req)?;
        ticket
            .blocking_recv()
            .map_err(|_| SchedError::Internal("scheduler dropped the request".into()))?
    }
}

impl Service for Scheduler {
    fn models(&self) -> Vec<ModelInfo> {
        let mut v: Vec<ModelInfo> = self
            .models
            .read()
            .values()
            .map(|e| e.info.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        self.submit_with(req, NewBatch::Loader)
    }

    fn load_model(
        &self,
        name: &str,
        source: GraphSource,
        default_priority: Priority,
    ) -> Result<(), SchedError> {
        if name.is_empty() || name.contains('/') {
            return Err(SchedError::InvalidInput(format!(
                "invalid model name '{name}'"
            )));
        }
        let q = self.next_queue.fetch_add(1, Ordering::Relaxed) % self.cfg.be_queues;
        let profiling = self.cfg.mode == Mode::Reef;
        let entry = ModelEntry::load(&self.device, name, source, default_priority, q, profiling)?;
        // The first tasks' contexts now, not on the scheduling thread when
        // they start.
        entry.prepare_contexts(&self.device, self.cfg.contexts_at_load)?;
        if let Some(pool) = &self.host_pool {
            // Pin buffers for its FP32 inputs at batch 1 now, not on the
            // first requests' path.
            for t in entry
                .info
                .inputs
                .iter()
                .filter(|t| t.dtype == reef_model::DType::F32)
            {
                let elems = t.shape.iter().map(|&d| d.max(1) as usize).product();
                pool.prepare(elems, PREPARED_INPUT_BUFFERS);
            }
        }
        self.models
            .write()
            .insert(name.to_string(), Arc::new(entry));
        Ok(())
    }

    fn unload_model(&self, name: &str) -> Result<(), SchedError> {
        self.models
            .write()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| SchedError::UnknownModel(name.to_string()))
    }

    fn stats(&self) -> SchedStats {
        self.stats.snapshot()
    }

    fn host_pool(&self) -> Option<Arc<reef_exec::host_pool::HostPool>> {
        self.host_pool.clone()
    }

    /// Device 0 is this scheduler's device.
    fn open_shared(
        &self,
        device: usize,
        raw_handle: &[u8],
        byte_size: usize,
    ) -> Result<Arc<dyn reef_exec::SharedRegion>, SchedError> {
        if device != 0 {
            return Err(SchedError::InvalidInput(format!(
                "device {device} does not exist (this service has one device, 0)"
            )));
        }
        self.device
            .open_shared(raw_handle, byte_size)
            .map_err(|e| SchedError::InvalidInput(e.to_string()))
    }

    fn shutdown(&self) {
        // The loader first: it stops taking jobs before `stopped` shows
        // (whoever sees the scheduler stopped sees the loader stopping), and
        // a compile under way hands its task over while the scheduling
        // thread still answers it.
        let loader = {
            let mut loader = self.loader.lock();
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            if let Some(l) = loader.as_ref() {
                l.stop();
            }
            self.stopped.store(true, Ordering::Release);
            loader.take()
        };
        if let Some(mut l) = loader {
            l.shutdown();
        }
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown();
    }
}
