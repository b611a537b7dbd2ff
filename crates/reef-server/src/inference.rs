//! Protocol-independent inference: checking decoded inputs against the
//! model, submitting to the scheduler, awaiting the ticket and recording
//! metrics. The HTTP and gRPC front ends only translate wire formats.
//!
//! # Client disconnects
//!
//! When a client goes away before its answer, hyper (HTTP) or tonic (gRPC)
//! drops the handler future. That drops the [`reef_sched::Ticket`] held in
//! [`execute`], and by the scheduler's contract a dropped ticket cancels a
//! best-effort task that has not finished (RT tasks run to completion; their
//! result is discarded). The request is then counted with outcome
//! `client_gone`. Nothing in this crate needs to do more than drop the ticket.

use crate::model_stats::Phases;
use crate::request_error::{ErrorKind, RequestError};
use crate::state::AppState;
use reef_sched::{InferRequest, InferResponse, Input, ModelInfo, Priority, TaskStats};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A request or tensor parameter value, whatever the wire format.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// Boolean.
    Bool(bool),
    /// Signed integer.
    Int(i64),
    /// Unsigned integer.
    Uint(u64),
    /// Floating point.
    Double(f64),
    /// String.
    Str(String),
}

/// Name of the request parameter that carries the priority.
pub const PRIORITY_PARAM: &str = "priority";

/// Reads the `priority` request parameter: "rt" / "be" (also "realtime",
/// "best-effort"), or Triton's integer priority level where 0 means the
/// model's default, 1 (the highest level) means RT and 2 or more means BE.
pub fn parse_priority(v: &ParamValue) -> Result<Option<Priority>, RequestError> {
    let level = match v {
        ParamValue::Str(s) => {
            return s
                .parse::<Priority>()
                .map(Some)
                .map_err(|e| RequestError::bad(format!("parameter 'priority': {e}")))
        }
        ParamValue::Int(i) => u64::try_from(*i).ok(),
        ParamValue::Uint(u) => Some(*u),
        _ => None,
    };
    match level {
        Some(0) => Ok(None),
        Some(1) => Ok(Some(Priority::Rt)),
        Some(_) => Ok(Some(Priority::Be)),
        None => Err(RequestError::bad(format!(
            "parameter 'priority': expected \"rt\", \"be\" or a non-negative integer, got {v:?}"
        ))),
    }
}

/// A checked request ready for the scheduler.
#[derive(Debug)]
pub struct Prepared {
    /// The model.
    pub info: ModelInfo,
    /// The scheduler request (inputs in model order).
    pub request: InferRequest,
    /// Indices into `info.outputs` of the outputs to return, in answer order.
    pub outputs: Vec<usize>,
    /// Samples in the request: its batch size (1 for a model without a
    /// batch dimension).
    pub batch: usize,
}

/// Checks decoded inputs against the model and orders them as it expects.
///
/// `requested` names the outputs to return (`None`: all, in model order).
pub fn prepare(
    state: &AppState,
    info: ModelInfo,
    inputs: Vec<(String, Input)>,
    requested: Option<&[String]>,
    priority: Option<Priority>,
    arrival: Instant,
) -> Result<Prepared, RequestError> {
    let model = &info.name;
    if !state.is_ready() {
        return Err(state.not_ready_error());
    }
    if !info.ready {
        return Err(RequestError::not_ready(format!(
            "model '{model}' is not ready"
        )));
    }
    let expected = || {
        info.inputs
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut slots: Vec<Option<Input>> = vec![None; info.inputs.len()];
    for (name, tensor) in inputs {
        let idx = info
            .inputs
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| {
                RequestError::bad(format!(
                    "model '{model}' has no input '{name}' (inputs: {})",
                    expected()
                ))
            })?;
        if slots[idx].is_some() {
            return Err(RequestError::bad(format!("input '{name}' is given twice")));
        }
        slots[idx] = Some(tensor);
    }
    let mut ordered = Vec::with_capacity(slots.len());
    let mut batch: Option<(usize, &str)> = None;
    for (slot, want) in slots.into_iter().zip(&info.inputs) {
        let name = want.name.as_str();
        let t = slot.ok_or_else(|| {
            RequestError::bad(format!("missing input '{name}' of model '{model}'"))
        })?;
        if t.dtype() != want.dtype {
            return Err(RequestError::bad(format!(
                "input '{name}': datatype {} does not match the model's {}",
                t.dtype().kserve_name(),
                want.dtype.kserve_name()
            )));
        }
        let shape = t.shape();
        let fits = shape.len() == want.shape.len()
            && shape
                .iter()
                .zip(&want.shape)
                .all(|(&got, &w)| w < 0 || got as i64 == w);
        if !fits {
            return Err(RequestError::bad(format!(
                "input '{name}': shape {:?} does not match the model's {:?} (-1 is any size)",
                shape, want.shape
            )));
        }
        if want.shape.first() == Some(&-1) {
            let b = shape[0];
            if b == 0 {
                return Err(RequestError::bad(format!(
                    "input '{name}': batch size is 0"
                )));
            }
            if let Some(max) = state.batch_limit(model) {
                if b > max {
                    return Err(RequestError::bad(format!(
                        "input '{name}': batch size {b} exceeds the model's max_batch {max}"
                    )));
                }
            }
            match batch {
                Some((other, other_name)) if other != b => {
                    return Err(RequestError::bad(format!(
                    "inputs disagree on batch size: '{other_name}' has {other}, '{name}' has {b}"
                )))
                }
                _ => batch = Some((b, name)),
            }
        }
        ordered.push(t);
    }
    let outputs = match requested {
        None => (0..info.outputs.len()).collect(),
        Some(names) => {
            let mut seen = HashSet::new();
            names
                .iter()
                .map(|n| {
                    if !seen.insert(n.as_str()) {
                        return Err(RequestError::bad(format!(
                            "output '{n}' is requested twice"
                        )));
                    }
                    info.outputs
                        .iter()
                        .position(|t| &t.name == n)
                        .ok_or_else(|| {
                            let known: Vec<_> =
                                info.outputs.iter().map(|t| t.name.as_str()).collect();
                            RequestError::bad(format!(
                                "model '{model}' has no output '{n}' (outputs: {})",
                                known.join(", ")
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let batch = batch.map_or(1, |(b, _)| b);
    let request = InferRequest {
        model: model.clone(),
        inputs: ordered,
        priority,
        arrival,
    };
    Ok(Prepared {
        info,
        request,
        outputs,
        batch,
    })
}

/// Records the outcome of one request in the metrics and the model's
/// statistics; a request dropped before [`Outcome::finish`] (client gone) is
/// counted as `client_gone` and, for a known model, as a failure.
pub struct Outcome<'a> {
    state: &'a AppState,
    /// The model, once the request named a served one.
    model: Option<String>,
    priority: String,
    arrival: Instant,
    ran: Option<Ran>,
    done: bool,
}

/// What [`execute`] learned of a request the scheduler answered.
struct Ran {
    /// Arrival to submission (the front end's decoding).
    decode: Duration,
    /// The scheduler's account.
    task: TaskStats,
    /// When the answer came.
    answered: Instant,
    /// Samples.
    batch: usize,
}

impl<'a> Outcome<'a> {
    /// Starts tracking a request that arrived at `arrival`.
    pub fn new(state: &'a AppState, arrival: Instant) -> Self {
        Outcome {
            state,
            model: None,
            priority: "unknown".into(),
            arrival,
            ran: None,
            done: false,
        }
    }

    /// Labels the request with its (known) model and effective priority.
    pub fn label(&mut self, info: &ModelInfo, priority: Option<Priority>) {
        self.model = Some(info.name.clone());
        self.priority = priority.unwrap_or(info.default_priority).to_string();
    }

    /// Counts the request and, on success, its latency and phases.
    pub fn finish<T>(mut self, result: &Result<T, RequestError>) {
        self.done = true;
        let now = Instant::now();
        let total = now - self.arrival;
        match (result, self.ran.take()) {
            (Ok(_), ran) => {
                self.state
                    .metrics
                    .record(self.label_model(), &self.priority, "success");
                self.state.metrics.observe_latency(&self.priority, total);
                if let Some(r) = ran {
                    let encode = now.saturating_duration_since(r.answered);
                    let phases = Phases::of(r.decode, &r.task, encode, total);
                    self.state
                        .model_stats
                        .success(self.label_model(), r.batch, &phases);
                }
            }
            (Err(e), _) => {
                self.state
                    .metrics
                    .record(self.label_model(), &self.priority, e.kind.outcome());
                self.failed(total);
            }
        }
    }

    fn failed(&self, elapsed: Duration) {
        if let Some(model) = &self.model {
            self.state.model_stats.failure(model, elapsed);
        }
    }

    /// The model's name as metrics label it.
    fn label_model(&self) -> &str {
        self.model.as_deref().unwrap_or("<unknown>")
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.state
                .metrics
                .record(self.label_model(), &self.priority, "client_gone");
            self.failed(self.arrival.elapsed());
        }
    }
}

/// Submits a prepared request and waits for its answer, noting its timing
/// in `outcome` for the model's statistics.
///
/// Cancellation: dropping this future drops the ticket, which cancels an
/// unfinished BE task (see the module documentation).
pub async fn execute(
    state: &AppState,
    prepared: &Prepared,
    outcome: &mut Outcome<'_>,
) -> Result<InferResponse, RequestError> {
    let decode = prepared.request.arrival.elapsed();
    let ticket = state.service.submit(prepared.request.clone())?;
    let response = match ticket.await {
        Ok(r) => r?,
        Err(_) => {
            return Err(RequestError {
                kind: ErrorKind::Cancelled,
                message: "the scheduler dropped the request without an answer".into(),
            })
        }
    };
    let want = prepared.info.outputs.len();
    if response.outputs.len() != want {
        return Err(RequestError::internal(format!(
            "model '{}' produced {} outputs, its metadata lists {want}",
            prepared.info.name,
            response.outputs.len()
        )));
    }
    outcome.ran = Some(Ran {
        decode,
        task: response.stats.clone(),
        answered: Instant::now(),
        batch: prepared.batch,
    });
    Ok(response)
}
