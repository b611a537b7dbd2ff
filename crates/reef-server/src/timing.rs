//! The server's own account of one inference, answered in the response's
//! parameters when the request asks for it with `reef_timing: true` (gRPC and
//! HTTP). A client then splits its latency into the time inside the server
//! and the rest (its own work and the transport) request by request; clients
//! that do not ask see the standard response.
//!
//! Response parameters (all int64): `reef_server_us` (the handler's start,
//! after the transport delivered the request, to the answer ready for
//! encoding),
//! `reef_scheduler_us` (the handler's start to the scheduler's answer: the
//! scheduler counts from the request's arrival, which the server sets there),
//! `reef_queue_us`, `reef_input_us` and `reef_output_us` (the scheduler's
//! phases, [`TaskStats`]), `reef_preemptions` and `reef_kernels_rerun`,
//! `reef_first_kernel_ns` (where the scheduler timed the task's first
//! kernel on the device, [`TaskStats::first_kernel`]), and
//! `reef_start_unix_ns` (the handler's start on the server's wall clock, so
//! that a client on the same host can place the handler on its own clock
//! and split the rest into the request's way in and the answer's way back).

use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::InferParameter;
use reef_sched::TaskStats;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The request parameter (bool) that asks for the timing parameters.
pub const TIMING_PARAM: &str = "reef_timing";

/// Adds `reef_timing: true` to a gRPC request's parameters: the server
/// then answers its [`Timing`] ([`Timing::from_grpc`] reads it back).
pub fn ask(params: &mut HashMap<String, InferParameter>) {
    params.insert(
        TIMING_PARAM.to_string(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(true)),
        },
    );
}

const SERVER: &str = "reef_server_us";
const SCHEDULER: &str = "reef_scheduler_us";
const QUEUE: &str = "reef_queue_us";
const INPUT: &str = "reef_input_us";
const OUTPUT: &str = "reef_output_us";
const PREEMPTIONS: &str = "reef_preemptions";
const RERUN: &str = "reef_kernels_rerun";
const START: &str = "reef_start_unix_ns";
const FIRST_KERNEL: &str = "reef_first_kernel_ns";

/// One request's timing as the server saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timing {
    /// Handler start to the answer ready for encoding.
    pub server: Duration,
    /// The scheduler's account ([`TaskStats::latency`] runs from the
    /// handler's start, the request's arrival, to the scheduler's answer).
    pub task: TaskStats,
    /// The handler's start, nanoseconds since the Unix epoch on the
    /// server's wall clock; `None` from a server that does not send it.
    pub start_unix_ns: Option<i64>,
}

/// Nanoseconds since the Unix epoch at `at` (an instant in the past), on
/// this host's wall clock; 0 for a clock set before 1970.
pub fn unix_ns_at(at: Instant) -> i64 {
    let now = SystemTime::now();
    let then = now.checked_sub(at.elapsed()).unwrap_or(now);
    then.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The instant on this host's monotonic clock that was `unix_ns` on its
/// wall clock, through the pair (`at`, `at_unix_ns`) read together.
pub fn instant_at(unix_ns: i64, at: Instant, at_unix_ns: i64) -> Instant {
    let delta = unix_ns.saturating_sub(at_unix_ns);
    let d = Duration::from_nanos(delta.unsigned_abs());
    if delta >= 0 {
        at.checked_add(d).unwrap_or(at)
    } else {
        at.checked_sub(d).unwrap_or(at)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Timing {
    /// The timing of a handler that started at `start` and has its answer
    /// ready now, with the scheduler's account `task`.
    pub fn of_handler(start: Instant, task: TaskStats) -> Timing {
        Timing {
            server: start.elapsed(),
            task,
            start_unix_ns: Some(unix_ns_at(start)),
        }
    }

    /// The parameters, name and value.
    fn entries(&self) -> Vec<(&'static str, i64)> {
        let t = &self.task;
        let mut e = vec![
            (SERVER, micros(self.server)),
            (SCHEDULER, micros(t.latency)),
            (QUEUE, micros(t.queued)),
            (INPUT, micros(t.input)),
            (OUTPUT, micros(t.output)),
            (PREEMPTIONS, i64::from(t.preemptions)),
            (RERUN, i64::from(t.kernels_rerun)),
        ];
        e.extend(self.start_unix_ns.map(|ns| (START, ns)));
        e.extend(t.first_kernel.map(|d| {
            (
                FIRST_KERNEL,
                i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            )
        }));
        e
    }

    /// As gRPC response parameters.
    pub fn to_grpc(&self) -> HashMap<String, InferParameter> {
        self.entries()
            .into_iter()
            .map(|(k, v)| {
                let p = InferParameter {
                    parameter_choice: Some(ParameterChoice::Int64Param(v)),
                };
                (k.to_string(), p)
            })
            .collect()
    }

    /// As the JSON `parameters` object of an HTTP response.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.entries()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect()
    }

    /// Reads the timing back from gRPC response parameters; `None` when the
    /// server sent none (it was not asked, or does not know the parameter).
    pub fn from_grpc(params: &HashMap<String, InferParameter>) -> Option<Timing> {
        Timing::from_params(|k| match params.get(k)?.parameter_choice.as_ref()? {
            ParameterChoice::Int64Param(v) => Some(*v),
            _ => None,
        })
    }

    /// Reads the timing back from an HTTP response's JSON `parameters`;
    /// `None` when the server sent none.
    pub fn from_json(params: &serde_json::Map<String, serde_json::Value>) -> Option<Timing> {
        Timing::from_params(|k| params.get(k)?.as_i64())
    }

    /// The timing from its parameters, read by name with `get`.
    fn from_params(get: impl Fn(&str) -> Option<i64>) -> Option<Timing> {
        let us = |k: &str| get(k).map(|v| Duration::from_micros(v.max(0) as u64));
        let count = |k: &str| get(k).map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX));
        Some(Timing {
            server: us(SERVER)?,
            task: TaskStats {
                latency: us(SCHEDULER)?,
                queued: us(QUEUE)?,
                input: us(INPUT)?,
                output: us(OUTPUT)?,
                preemptions: count(PREEMPTIONS)?,
                kernels_rerun: count(RERUN)?,
                first_kernel: get(FIRST_KERNEL).map(|v| Duration::from_nanos(v.max(0) as u64)),
                device: 0,
            },
            start_unix_ns: get(START),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_survives_the_grpc_parameters_and_names_every_field_in_json() {
        let t = Timing {
            server: Duration::from_micros(1234),
            task: TaskStats {
                latency: Duration::from_micros(1100),
                queued: Duration::from_micros(70),
                input: Duration::from_micros(30),
                output: Duration::from_micros(12),
                preemptions: 2,
                kernels_rerun: 5,
                first_kernel: Some(Duration::from_nanos(41_250)),
                device: 0,
            },
            start_unix_ns: Some(1_796_000_000_123_456_789),
        };
        assert_eq!(Timing::from_grpc(&t.to_grpc()), Some(t.clone()));
        let json = t.to_json();
        assert_eq!(Timing::from_json(&json), Some(t.clone()));
        assert_eq!(Timing::from_json(&serde_json::Map::new()), None);
        assert_eq!(json["reef_server_us"], 1234);
        assert_eq!(json["reef_scheduler_us"], 1100);
        assert_eq!(json["reef_kernels_rerun"], 5);
        assert_eq!(json["reef_start_unix_ns"], 1_796_000_000_123_456_789_i64);
        assert_eq!(json["reef_first_kernel_ns"], 41_250);
        assert_eq!(json.len(), 9);
        // Without a timed first kernel the parameter is left out.
        let untimed = Timing {
            task: TaskStats {
                first_kernel: None,
                ..t.task.clone()
            },
            ..t.clone()
        };
        assert!(!untimed.to_json().contains_key("reef_first_kernel_ns"));
        assert_eq!(Timing::from_grpc(&untimed.to_grpc()), Some(untimed));
        // An older server's answer, without the start, still reads.
        let mut old = t.to_grpc();
        old.remove(START);
        let read = Timing::from_grpc(&old).expect("timing without the start");
        assert_eq!((read.server, read.start_unix_ns), (t.server, None));
    }

    #[test]
    fn a_handler_start_maps_back_onto_the_monotonic_clock() {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(3));
        let t = Timing::of_handler(start, TaskStats::default());
        assert!(t.server >= Duration::from_millis(3));
        let at = Instant::now();
        let mapped = instant_at(t.start_unix_ns.unwrap(), at, unix_ns_at(at));
        // Two wall-clock reads apart: well under a millisecond either way.
        let off = if mapped > start {
            mapped - start
        } else {
            start - mapped
        };
        assert!(off < Duration::from_millis(1), "{off:?}");
        let later = instant_at(unix_ns_at(at) + 2_000_000, at, unix_ns_at(at));
        assert!(later > at && later - at <= Duration::from_millis(3));
    }

    #[test]
    fn a_response_without_timing_reads_as_none() {
        assert_eq!(Timing::from_grpc(&HashMap::new()), None);
        let mut partial = Timing::default().to_grpc();
        partial.remove(QUEUE);
        assert_eq!(Timing::from_grpc(&partial), None);
    }
}
