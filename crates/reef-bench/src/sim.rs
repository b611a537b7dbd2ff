//! A simulated [`Service`] for tests and dry runs: every request takes a fixed
//! time on a tokio task (RT and BE times set separately), requests run side by
//! side, inputs are checked against the declared shapes and types, and every
//! n-th submission can be refused as overloaded. It never preempts; its stats
//! carry a fixed made-up preemption-latency summary (10/30/40 us) so that
//! reports have something to show.

use reef_model::DType;
use reef_sched::{
    GraphSource, InferRequest, InferResponse, LatencySummary, ModelInfo, Priority, SchedError,
    SchedStats, Service, TaskStats, TensorInfo, Ticket,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The simulated service.
pub struct SimService {
    models: Vec<ModelInfo>,
    rt_time: Duration,
    be_time: Duration,
    refuse_every: Option<u64>,
    runtime: tokio::runtime::Handle,
    submitted: AtomicU64,
    completed: [std::sync::Arc<AtomicU64>; 2],
}

impl SimService {
    /// A service for `models` whose RT requests take `rt_time` and BE requests
    /// `be_time`; it spawns on `runtime`.
    pub fn new(
        models: Vec<ModelInfo>,
        rt_time: Duration,
        be_time: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        SimService {
            models,
            rt_time,
            be_time,
            refuse_every: None,
            runtime,
            submitted: AtomicU64::new(0),
            completed: Default::default(),
        }
    }

    /// Refuses every `n`-th submission (n >= 1) with `Overloaded`.
    pub fn refusing_every(mut self, n: u64) -> Self {
        self.refuse_every = Some(n.max(1));
        self
    }

    /// A model description: inputs as (name, dtype, shape with -1 for the batch), one f32 output.
    pub fn model(name: &str, inputs: &[(&str, DType, &[i64])]) -> ModelInfo {
        ModelInfo {
            name: name.to_string(),
            default_priority: Priority::Be,
            inputs: inputs
                .iter()
                .map(|(n, d, s)| TensorInfo {
                    name: n.to_string(),
                    dtype: *d,
                    shape: s.to_vec(),
                })
                .collect(),
            outputs: vec![TensorInfo {
                name: "out".into(),
                dtype: DType::F32,
                shape: vec![-1, 10],
            }],
            ready: true,
        }
    }

    fn check(&self, req: &InferRequest) -> Result<(), SchedError> {
        let m = self
            .models
            .iter()
            .find(|m| m.name == req.model)
            .ok_or_else(|| SchedError::UnknownModel(req.model.clone()))?;
        if req.inputs.len() != m.inputs.len() {
            return Err(SchedError::InvalidInput(format!(
                "{} inputs, expected {}",
                req.inputs.len(),
                m.inputs.len()
            )));
        }
        for (t, info) in req.inputs.iter().zip(&m.inputs) {
            let fits = t.shape().len() == info.shape.len()
                && t.shape()
                    .iter()
                    .zip(&info.shape)
                    .all(|(&a, &b)| b < 0 || a as i64 == b);
            if t.dtype() != info.dtype || !fits {
                return Err(SchedError::InvalidInput(format!(
                    "input '{}': got {} {:?}, expected {} {:?}",
                    info.name,
                    t.dtype(),
                    t.shape(),
                    info.dtype,
                    info.shape
                )));
            }
        }
        Ok(())
    }
}

impl Service for SimService {
    fn models(&self) -> Vec<ModelInfo> {
        self.models.clone()
    }

    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        let n = self.submitted.fetch_add(1, Ordering::Relaxed) + 1;
        if self
            .refuse_every
            .is_some_and(|k| n.checked_rem(k) == Some(0))
        {
            return Err(SchedError::Overloaded("simulated refusal".into()));
        }
        self.check(&req)?;
        let priority = req.priority.unwrap_or(Priority::Be);
        let (time, slot) = match priority {
            Priority::Rt => (self.rt_time, 0),
            Priority::Be => (self.be_time, 1),
        };
        let done = self.completed[slot].clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        self.runtime.spawn(async move {
            tokio::time::sleep(time).await;
            done.fetch_add(1, Ordering::Relaxed);
            let stats = TaskStats {
                queued: started.saturating_duration_since(req.arrival),
                latency: req.arrival.elapsed(),
                ..TaskStats::default()
            };
            let _ = tx.send(Ok(InferResponse {
                outputs: Vec::new(),
                priority,
                stats,
                remote: None,
            }));
        });
        Ok(rx)
    }

    fn load_model(&self, name: &str, _source: GraphSource, _p: Priority) -> Result<(), SchedError> {
        Err(SchedError::Internal(format!(
            "the simulated service cannot load '{name}'"
        )))
    }

    fn unload_model(&self, name: &str) -> Result<(), SchedError> {
        Err(SchedError::Internal(format!(
            "the simulated service cannot unload '{name}'"
        )))
    }

    fn stats(&self) -> SchedStats {
        let rt = self.completed[0].load(Ordering::Relaxed);
        SchedStats {
            device: "simulated".into(),
            mode: "sim".into(),
            completed: [rt, self.completed[1].load(Ordering::Relaxed)],
            preempt_latency_us: LatencySummary {
                count: rt,
                mean: 12.0,
                p50: 10.0,
                p99: 30.0,
                max: 40.0,
            },
            ..SchedStats::default()
        }
    }

    fn shutdown(&self) {}
}
