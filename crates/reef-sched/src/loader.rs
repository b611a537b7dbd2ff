//! The model loader: a thread that compiles and loads a model for a batch
//! size it has not run yet, off the submitting thread (a server's request
//! handler, which must not stall for seconds), then hands the waiting
//! request to the scheduling thread. A first request at a new batch size
//! waits for its compile; other requests, of every model, do not.

use crate::api::{InferResponse, Input, Priority, SchedError};
use crate::engine::Msg;
use crate::registry::ModelEntry;
use crate::stats::Stats;
use crate::task::Task;
use crossbeam_channel::{Receiver, Sender};
use reef_exec::Device;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// A request waiting for its model to be compiled for its batch size. It
/// already counts in its queue's depth.
pub(crate) struct Job {
    pub entry: Arc<ModelEntry>,
    pub batch: usize,
    pub priority: Priority,
    pub inputs: Vec<Input>,
    pub arrival: Instant,
    pub tx: oneshot::Sender<Result<InferResponse, SchedError>>,
}

/// The loader thread and its queue of jobs.
pub(crate) struct Loader {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl Loader {
    /// Starts the thread; its tasks go to the scheduling thread on `sched`.
    pub fn start(
        device: Arc<dyn Device>,
        stats: Arc<Stats>,
        sched: Sender<Msg>,
    ) -> std::io::Result<Loader> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("reef-loader".into())
            .spawn(move || run(&device, &stats, &sched, &rx, &stop))?;
        Ok(Loader {
            jobs: Some(tx),
            thread: Some(thread),
            stopping,
        })
    }

    /// Queues a job; gives it back if the loader has stopped.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Makes every job not yet begun end in "shutting down" (without a
    /// compile).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Stops taking jobs and waits for the thread: a compile under way
    /// finishes and its request goes on; every job still queued is answered
    /// "shutting down" without a compile.
    pub fn shutdown(&mut self) {
        self.stop();
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    device: &Arc<dyn Device>,
    stats: &Stats,
    sched: &Sender<Msg>,
    jobs: &Receiver<Job>,
    stopping: &AtomicBool,
) {
    for job in jobs {
        let depth = stats.depth(job.priority, job.entry.be_queue);
        if stopping.load(Ordering::Acquire) {
            depth.fetch_sub(1, Ordering::AcqRel);
            let _ = job
                .tx
                .send(Err(SchedError::Cancelled("server is shutting down".into())));
            continue;
        }
        let t0 = Instant::now();
        let handle = match job.entry.handle(device, job.batch) {
            Ok(h) => h,
            Err(e) => {
                depth.fetch_sub(1, Ordering::AcqRel);
                let _ = job.tx.send(Err(e));
                continue;
            }
        };
        tracing::info!(
            model = %job.entry.name,
            batch = job.batch,
            ms = t0.elapsed().as_millis() as u64,
            "model compiled for a new batch size"
        );
        let task = Task::new(
            job.entry,
            handle,
            job.batch,
            job.priority,
            job.inputs,
            job.arrival,
            job.tx,
        );
        if let Err(e) = sched.send(Msg::Task(Box::new(task))) {
            depth.fetch_sub(1, Ordering::AcqRel);
            if let Msg::Task(t) = e.0 {
                t.fail(SchedError::Cancelled("scheduler stopped".into()), false);
            }
        }
    }
}
