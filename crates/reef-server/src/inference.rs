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

use crate::request_error::{ErrorKind, RequestError};
use crate::state::AppState;
use reef_model::Tensor;
use reef_sched::{InferRequest, InferResponse, ModelInfo, Priority};
use std::collections::HashSet;
use std::time::Instant;

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
}

/// Checks decoded inputs against the model and orders them as it expects.
///
/// `requested` names the outputs to return (`None`: all, in model order).
pub fn prepare(
    state: &AppState,
    info: ModelInfo,
    inputs: Vec<(String, Tensor)>,
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
    let mut slots: Vec<Option<Tensor>> = vec![None; info.inputs.len()];
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
        let fits = t.shape.len() == want.shape.len()
            && t.shape
                .iter()
                .zip(&want.shape)
                .all(|(&got, &w)| w < 0 || got as i64 == w);
        if !fits {
            return Err(RequestError::bad(format!(
                "input '{name}': shape {:?} does not match the model's {:?} (-1 is any size)",
                t.shape, want.shape
            )));
        }
        if want.shape.first() == Some(&-1) {
            let b = t.shape[0];
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
    })
}

/// Records the outcome of one request in the metrics; a request dropped
/// before [`Outcome::finish`] (client gone) is counted as `client_gone`.
pub struct Outcome<'a> {
    state: &'a AppState,
    model: String,
    priority: String,
    arrival: Instant,
    done: bool,
}

impl<'a> Outcome<'a> {
    /// Starts tracking a request that arrived at `arrival`.
    pub fn new(state: &'a AppState, arrival: Instant) -> Self {
        Outcome {
            state,
            model: "<unknown>".into(),
            priority: "unknown".into(),
            arrival,
            done: false,
        }
    }

    /// Labels the request with its (known) model and effective priority.
    pub fn label(&mut self, info: &ModelInfo, priority: Option<Priority>) {
        self.model = info.name.clone();
        self.priority = priority.unwrap_or(info.default_priority).to_string();
    }

    /// Counts the request and, on success, its latency.
    pub fn finish<T>(mut self, result: &Result<T, RequestError>) {
        self.done = true;
        match result {
            Ok(_) => {
                self.state
                    .metrics
                    .record(&self.model, &self.priority, "success");
                self.state
                    .metrics
                    .observe_latency(&self.priority, self.arrival.elapsed());
            }
            Err(e) => self
                .state
                .metrics
                .record(&self.model, &self.priority, e.kind.outcome()),
        }
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.state
                .metrics
                .record(&self.model, &self.priority, "client_gone");
        }
    }
}

/// Submits a prepared request and waits for its answer.
///
/// Cancellation: dropping this future drops the ticket, which cancels an
/// unfinished BE task (see the module documentation).
pub async fn execute(state: &AppState, prepared: &Prepared) -> Result<InferResponse, RequestError> {
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
    Ok(response)
}
