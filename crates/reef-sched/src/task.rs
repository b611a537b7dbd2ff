//! A task: one request on its way through the scheduler.

use crate::api::{InferResponse, Input, Priority, SchedError, TaskStats};
use crate::padding::Profile;
use crate::registry::ModelEntry;
use reef_exec::{Context, ModelHandle};
use reef_model::Tensor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One request being scheduled.
pub(crate) struct Task {
    pub entry: Arc<ModelEntry>,
    pub handle: Arc<dyn ModelHandle>,
    pub batch: usize,
    pub priority: Priority,
    pub inputs: Vec<Input>,
    pub tx: oneshot::Sender<Result<InferResponse, SchedError>>,
    pub arrival: Instant,
    pub started: Option<Instant>,
    /// Time spent writing the inputs in [`Task::start`].
    pub input_time: Duration,
    /// [`Task::start`] made the task's context (the model's pool had
    /// none free).
    pub made_context: bool,
    pub ctx: Option<Box<dyn Context>>,
    /// Next kernel to enqueue.
    pub next: usize,
    /// Lane's enqueued count after this task's last kernel (whole-task launches).
    pub end_mark: u64,
    /// The lane must `begin` again before the next enqueue (fresh or resumed).
    pub needs_begin: bool,
    pub preemptions: u32,
    pub rerun: u32,
    /// Kernel profile (reef mode: padding decisions).
    pub profile: Option<Arc<Profile>>,
    /// A running BE task held back while RT work runs (preempted, or just
    /// not fed); it may be padded. Its exact progress is read back before
    /// it is fed again.
    pub paused: bool,
    /// It was paused by a preemption (kernels were in flight).
    pub preempted: bool,
    /// Padding planner's estimate of its position (kernel index + fraction).
    pub pad_pos: f64,
    /// Kernels known complete when it was paused.
    pub pad_known: usize,
    /// Its first kernel is timed on the RT lane ([`TaskStats::first_kernel`]).
    pub timed: bool,
    /// The timed span, read when the task completed.
    pub first_kernel: Option<Duration>,
}

impl Task {
    /// A task for a request of `batch` rows of `entry`, on `handle` (the
    /// model compiled for that batch size), answering on `tx`.
    pub fn new(
        entry: Arc<ModelEntry>,
        handle: Arc<dyn ModelHandle>,
        batch: usize,
        priority: Priority,
        inputs: Vec<Input>,
        arrival: Instant,
        tx: oneshot::Sender<Result<InferResponse, SchedError>>,
    ) -> Task {
        Task {
            profile: entry.profile(batch),
            paused: false,
            preempted: false,
            pad_pos: 0.0,
            pad_known: 0,
            timed: false,
            first_kernel: None,
            made_context: false,
            entry,
            handle,
            batch,
            priority,
            inputs,
            tx,
            arrival,
            started: None,
            input_time: Duration::ZERO,
            ctx: None,
            next: 0,
            end_mark: 0,
            needs_begin: true,
            preemptions: 0,
            rerun: 0,
        }
    }

    pub fn kernels(&self) -> usize {
        self.handle.plan().kernels.len()
    }

    /// The client went away (ticket dropped).
    pub fn cancelled(&self) -> bool {
        self.tx.is_closed()
    }

    /// Takes a context and writes the inputs.
    pub fn start(&mut self) -> Result<(), SchedError> {
        let (mut ctx, made) = self.entry.take_context(&self.handle, self.batch)?;
        self.made_context = made;
        let writing = Instant::now();
        for (i, input) in self.inputs.iter().enumerate() {
            match input {
                Input::Host(t) => ctx.write_input(i, &t.bytes()),
                Input::Shared(s) => {
                    ctx.write_input_shared(i, s.region.as_ref(), s.offset, s.byte_len())
                }
            }
            .map_err(|e| SchedError::Internal(format!("writing input {i}: {e}")))?;
        }
        self.inputs = Vec::new();
        self.ctx = Some(ctx);
        let now = Instant::now();
        self.input_time = now - writing;
        self.started = Some(now);
        self.next = 0;
        self.needs_begin = true;
        Ok(())
    }

    /// Reads the outputs, returns the context to the pool and answers.
    pub fn finish(mut self) -> Priority {
        let prio = self.priority;
        let reading = Instant::now();
        let result = self.read_outputs();
        let output = reading.elapsed();
        if let Some(ctx) = self.ctx.take() {
            self.entry.give_context(self.batch, ctx);
        }
        let stats = TaskStats {
            queued: self
                .started
                .unwrap_or(self.arrival)
                .saturating_duration_since(self.arrival),
            input: self.input_time,
            output,
            latency: self.arrival.elapsed(),
            preemptions: self.preemptions,
            kernels_rerun: self.rerun,
            first_kernel: self.first_kernel,
            // A scheduler drives one device; a multi-device router renumbers.
            device: 0,
        };
        let _ = self.tx.send(result.map(|outputs| InferResponse {
            outputs,
            priority: prio,
            stats,
            remote: None,
        }));
        prio
    }

    fn read_outputs(&mut self) -> Result<Vec<Tensor>, SchedError> {
        let ctx = self
            .ctx
            .as_mut()
            .ok_or_else(|| SchedError::Internal("task finished without a context".into()))?;
        let plan = self.handle.plan().clone();
        plan.outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let bytes = ctx.read_output(i).map_err(|e| {
                    SchedError::Internal(format!("reading output '{}': {e}", o.name))
                })?;
                Tensor::from_bytes(o.dtype, o.shape.clone(), &bytes)
                    .map_err(|e| SchedError::Internal(e.to_string()))
            })
            .collect()
    }

    /// Answers with an error, recycling the context if the device is done with it.
    pub fn fail(mut self, err: SchedError, recycle: bool) {
        if let (true, Some(ctx)) = (recycle, self.ctx.take()) {
            self.entry.give_context(self.batch, ctx);
        }
        let _ = self.tx.send(Err(err));
    }
}
