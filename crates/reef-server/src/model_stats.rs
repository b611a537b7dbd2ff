//! Per-model inference statistics, Triton's statistics extension
//! (`GET /v2/models[/{name}[/versions/{v}]]/stats`, gRPC `ModelStatistics`):
//! counts and cumulative durations of the requests each model answered,
//! since the server started, split into the phases Triton reports.
//!
//! How reef's timings map onto Triton's phases (every duration is measured
//! from the request's arrival at the front end):
//! - `queue`: waiting in the scheduler's RT or BE queue, until the task took
//!   a context;
//! - `compute_input`: decoding the request's tensors (wire format or shared
//!   memory) plus writing them to the device;
//! - `compute_infer`: the task's kernels, from its start until its outputs
//!   are ready, preemptions and re-runs included;
//! - `compute_output`: reading the outputs back plus encoding the answer;
//! - `success` / `fail`: whole requests, arrival to answer.
//!
//! reef does not batch requests together, so every successful request is one
//! execution; `inference_count` counts the batch's samples as Triton does.

use crate::proto;
use crate::state::{AppState, MODEL_VERSION};
use reef_sched::TaskStats;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count and the total of its durations (Triton's `StatisticDuration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationStat {
    /// Times the phase was measured.
    pub count: u64,
    /// Their total duration, nanoseconds.
    pub ns: u64,
}

impl DurationStat {
    fn add(&mut self, d: Duration) {
        self.count += 1;
        self.ns = self
            .ns
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// Phase durations of one batch size (Triton's `InferBatchStatistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStat {
    /// The batch size.
    pub batch_size: u64,
    /// Decoding and writing the inputs.
    pub compute_input: DurationStat,
    /// Running the model.
    pub compute_infer: DurationStat,
    /// Reading and encoding the outputs.
    pub compute_output: DurationStat,
}

/// Statistics of one model (Triton's `ModelStatistics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelStat {
    /// Model name.
    pub name: String,
    /// Last successful inference, milliseconds since the Unix epoch (0: none).
    pub last_inference_ms: u64,
    /// Samples inferred (a request of batch 8 counts 8).
    pub inference_count: u64,
    /// Model executions (one per successful request).
    pub execution_count: u64,
    /// Successful requests, arrival to answer.
    pub success: DurationStat,
    /// Failed requests (the model was known), arrival to answer.
    pub fail: DurationStat,
    /// Waiting in the scheduler's queue.
    pub queue: DurationStat,
    /// Decoding and writing the inputs.
    pub compute_input: DurationStat,
    /// Running the model.
    pub compute_infer: DurationStat,
    /// Reading and encoding the outputs.
    pub compute_output: DurationStat,
    /// Per batch size, smallest first.
    pub batches: Vec<BatchStat>,
}

/// The phases of one successful request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Waiting in the scheduler's queue.
    pub queue: Duration,
    /// Decoding and writing the inputs.
    pub compute_input: Duration,
    /// Running the model.
    pub compute_infer: Duration,
    /// Reading and encoding the outputs.
    pub compute_output: Duration,
    /// Arrival to answer.
    pub total: Duration,
}

impl Phases {
    /// Splits a request's time: `decode` (arrival to submission) and
    /// `encode` (answer to encoded response) are the front end's; `task` is
    /// the scheduler's account, from the same arrival; `total` is arrival
    /// to encoded response.
    pub fn of(decode: Duration, task: &TaskStats, encode: Duration, total: Duration) -> Self {
        let started = task.queued.max(decode + task.input);
        Phases {
            queue: started.saturating_sub(decode + task.input),
            compute_input: decode + task.input,
            compute_infer: task.latency.saturating_sub(started + task.output),
            compute_output: task.output + encode,
            total,
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    stat: ModelStat,
    batches: BTreeMap<u64, BatchStat>,
}

impl Entry {
    fn snapshot(&self) -> ModelStat {
        ModelStat {
            batches: self.batches.values().copied().collect(),
            ..self.stat.clone()
        }
    }
}

/// Statistics of every model that has answered a request.
#[derive(Debug, Default)]
pub struct ModelStatsRegistry {
    models: Mutex<HashMap<String, Entry>>,
}

impl ModelStatsRegistry {
    /// Records a successful request of `batch` samples.
    pub fn success(&self, model: &str, batch: usize, p: &Phases) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let batch = batch as u64;
        self.with(model, |e| {
            let s = &mut e.stat;
            s.last_inference_ms = now_ms;
            s.inference_count += batch;
            s.execution_count += 1;
            s.success.add(p.total);
            s.queue.add(p.queue);
            s.compute_input.add(p.compute_input);
            s.compute_infer.add(p.compute_infer);
            s.compute_output.add(p.compute_output);
            let b = e.batches.entry(batch).or_insert_with(|| BatchStat {
                batch_size: batch,
                ..BatchStat::default()
            });
            b.compute_input.add(p.compute_input);
            b.compute_infer.add(p.compute_infer);
            b.compute_output.add(p.compute_output);
        });
    }

    /// Records a failed request of a known model that took `elapsed`.
    pub fn failure(&self, model: &str, elapsed: Duration) {
        self.with(model, |e| e.stat.fail.add(elapsed));
    }

    /// The statistics of `model` (all zero if it answered nothing yet).
    pub fn get(&self, model: &str) -> ModelStat {
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models
            .get(model)
            .map(Entry::snapshot)
            .unwrap_or_else(|| ModelStat {
                name: model.to_string(),
                ..ModelStat::default()
            })
    }

    /// The statistics of every model that has answered or failed a
    /// request, by name.
    pub fn all(&self) -> Vec<ModelStat> {
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<ModelStat> = models.values().map(Entry::snapshot).collect();
        drop(models);
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn with(&self, model: &str, f: impl FnOnce(&mut Entry)) {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let e = models.entry(model.to_string()).or_insert_with(|| Entry {
            stat: ModelStat {
                name: model.to_string(),
                ..ModelStat::default()
            },
            batches: BTreeMap::new(),
        });
        f(e);
    }
}

/// The statistics a request asks for: every served model (`name` empty), or
/// one model at `version` ("" for the latest); 404 for an unknown model or
/// version.
pub fn select(
    state: &AppState,
    name: &str,
    version: &str,
) -> Result<Vec<ModelStat>, crate::RequestError> {
    if name.is_empty() {
        if !version.is_empty() {
            return Err(crate::RequestError::bad(
                "a model version was given without a model name",
            ));
        }
        let mut names: Vec<String> = state.service.models().into_iter().map(|m| m.name).collect();
        names.sort();
        return Ok(names.iter().map(|n| state.model_stats.get(n)).collect());
    }
    let info = state.model_version(name, version)?;
    Ok(vec![state.model_stats.get(&info.name)])
}

fn duration_proto(d: DurationStat) -> Option<proto::StatisticDuration> {
    Some(proto::StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

impl ModelStat {
    /// The gRPC `ModelStatistics` message (no response cache, so its
    /// counters are zero; no memory usage reported).
    pub(crate) fn to_proto(&self) -> proto::ModelStatistics {
        let zero = DurationStat::default();
        proto::ModelStatistics {
            name: self.name.clone(),
            version: MODEL_VERSION.into(),
            last_inference: self.last_inference_ms,
            inference_count: self.inference_count,
            execution_count: self.execution_count,
            inference_stats: Some(proto::InferStatistics {
                success: duration_proto(self.success),
                fail: duration_proto(self.fail),
                queue: duration_proto(self.queue),
                compute_input: duration_proto(self.compute_input),
                compute_infer: duration_proto(self.compute_infer),
                compute_output: duration_proto(self.compute_output),
                cache_hit: duration_proto(zero),
                cache_miss: duration_proto(zero),
            }),
            batch_stats: self
                .batches
                .iter()
                .map(|b| proto::InferBatchStatistics {
                    batch_size: b.batch_size,
                    compute_input: duration_proto(b.compute_input),
                    compute_infer: duration_proto(b.compute_infer),
                    compute_output: duration_proto(b.compute_output),
                })
                .collect(),
            memory_usage: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn phases_partition_the_request() {
        // Arrival at 0: submitted at 1 ms, inputs written 3..4 ms (queued 4),
        // outputs read 9..10 ms (latency 10), answer encoded at 12 ms.
        let task = TaskStats {
            queued: ms(4),
            input: ms(1),
            output: ms(1),
            latency: ms(10),
            ..TaskStats::default()
        };
        let p = Phases::of(ms(1), &task, ms(2), ms(12));
        assert_eq!(p.queue, ms(2));
        assert_eq!(p.compute_input, ms(2));
        assert_eq!(p.compute_infer, ms(5));
        assert_eq!(p.compute_output, ms(3));
        assert_eq!(
            p.queue + p.compute_input + p.compute_infer + p.compute_output,
            p.total
        );
    }

    #[test]
    fn phases_never_underflow() {
        // A service that reports no queueing or I/O (a stub, a remote device).
        let task = TaskStats {
            latency: ms(3),
            ..TaskStats::default()
        };
        let p = Phases::of(ms(5), &task, ms(1), ms(9));
        assert_eq!(p.queue, Duration::ZERO);
        assert_eq!(p.compute_input, ms(5));
        assert_eq!(p.compute_infer, Duration::ZERO);
        assert_eq!(p.compute_output, ms(1));
    }

    #[test]
    fn registry_accumulates_per_model_and_batch() {
        let r = ModelStatsRegistry::default();
        let p = Phases {
            queue: ms(1),
            compute_input: ms(2),
            compute_infer: ms(3),
            compute_output: ms(4),
            total: ms(10),
        };
        r.success("a", 8, &p);
        r.success("a", 1, &p);
        r.success("a", 8, &p);
        r.failure("a", ms(7));
        r.success("b", 1, &p);
        let a = r.get("a");
        assert_eq!(a.name, "a");
        assert_eq!(a.inference_count, 17);
        assert_eq!(a.execution_count, 3);
        assert_eq!(
            a.success,
            DurationStat {
                count: 3,
                ns: 30_000_000
            }
        );
        assert_eq!(
            a.fail,
            DurationStat {
                count: 1,
                ns: 7_000_000
            }
        );
        assert_eq!(a.compute_infer.ns, 9_000_000);
        assert!(a.last_inference_ms > 0);
        let sizes: Vec<_> = a
            .batches
            .iter()
            .map(|b| (b.batch_size, b.compute_infer.count))
            .collect();
        assert_eq!(sizes, vec![(1, 1), (8, 2)]);
        assert_eq!(r.get("b").execution_count, 1);
        let none = r.get("c");
        assert_eq!((none.name.as_str(), none.execution_count), ("c", 0));
        assert!(none.batches.is_empty());
    }
}
