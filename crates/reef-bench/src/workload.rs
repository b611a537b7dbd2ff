//! DISB workload files: what runs, at which priority, under which load.
//!
//! A workload is JSON:
//! ```json
//! { "name": "A", "notes": "...", "duration_s": 60, "warmup_s": 5,
//!   "tasks": [
//!     { "model": "vgg19", "priority": "rt", "load": { "type": "periodic", "frequency": 100 } },
//!     { "model": "resnet152", "priority": "be", "load": { "type": "continuous" }, "batch_size": 1, "seed": 7 }
//!   ] }
//! ```
//! Load types: `periodic` (`frequency`, Hz), `poisson` (`rate`, Hz), `continuous`
//! (closed loop: the next request as soon as the last returns) and `trace`
//! (`arrivals_ms`, offsets from the start in milliseconds, or `path`, a file
//! holding them: a JSON array, a JSON object with `arrivals_ms`, or one number
//! per line; a relative path is taken from the workload file's folder).

use crate::error::{BenchError, Result};
use reef_sched::Priority;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A DISB workload: tasks that run together for `duration_s` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Name (A..E, trace, ...).
    pub name: String,
    /// Free text: where the workload comes from, how it departs from DISB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Length of the run in seconds (arrivals stop here; in-flight requests drain).
    pub duration_s: f64,
    /// Requests arriving in the first `warmup_s` seconds are excluded from the
    /// figures. Default: a tenth of the duration, at most 5 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_s: Option<f64>,
    /// The tasks.
    pub tasks: Vec<TaskSpec>,
}

/// One client of the workload: a model, a priority and a load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Label in reports; default `<priority>-<model>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Model name as the service knows it (a zoo name).
    pub model: String,
    /// `rt` or `be`.
    pub priority: Priority,
    /// How requests arrive.
    pub load: Load,
    /// Batch size of every request.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seed of the task's arrivals (Poisson) and inputs; default derived from the task index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_batch() -> usize {
    1
}

/// How a task's requests arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Load {
    /// Open loop, one request every `1/frequency` seconds, starting at 0.
    Periodic {
        /// Requests per second.
        frequency: f64,
    },
    /// Open loop, exponential inter-arrival times of mean `1/rate` seconds.
    Poisson {
        /// Mean requests per second.
        rate: f64,
    },
    /// Closed loop: the next request is sent as soon as the previous one returns.
    Continuous,
    /// Open loop, arrivals at given offsets from the start.
    Trace {
        /// Arrival offsets in milliseconds (filled from `path` by [`Workload::load`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arrivals_ms: Option<Vec<f64>>,
        /// A file holding the offsets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
}

impl Load {
    /// The load type's name as written in workload files.
    pub fn kind(&self) -> &'static str {
        match self {
            Load::Periodic { .. } => "periodic",
            Load::Poisson { .. } => "poisson",
            Load::Continuous => "continuous",
            Load::Trace { .. } => "trace",
        }
    }

    /// Whether requests arrive at times fixed in advance (everything but `continuous`).
    pub fn is_open_loop(&self) -> bool {
        !matches!(self, Load::Continuous)
    }
}

impl TaskSpec {
    /// The task's label in reports.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.priority, self.model))
    }
}

impl Workload {
    /// Parses and validates a workload from JSON text. Trace `path`s are not
    /// read (use [`Workload::load`] for files); `origin` names the text in errors.
    pub fn from_json_str(text: &str, origin: &Path) -> Result<Workload> {
        let w: Workload = serde_json::from_str(text).map_err(|source| BenchError::Parse {
            what: "workload",
            path: origin.to_path_buf(),
            source,
        })?;
        w.validate()?;
        Ok(w)
    }

    /// Reads a workload file, loads its trace files (relative to the workload's
    /// folder) into `arrivals_ms`, and validates it.
    pub fn load(path: impl AsRef<Path>) -> Result<Workload> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            action: "reading workload",
            path: path.to_path_buf(),
            source,
        })?;
        let mut w: Workload = serde_json::from_str(&text).map_err(|source| BenchError::Parse {
            what: "workload",
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for task in &mut w.tasks {
            if let Load::Trace {
                arrivals_ms,
                path: Some(p),
            } = &mut task.load
            {
                if arrivals_ms.is_none() {
                    let file = resolve(&base, p);
                    *arrivals_ms = Some(crate::trace::read_trace_file(&file)?);
                }
            }
        }
        w.validate()?;
        Ok(w)
    }

    fn invalid(&self, message: String) -> BenchError {
        BenchError::Invalid {
            workload: self.name.clone(),
            message,
        }
    }

    /// Checks that the workload can run: tasks present, rates positive and
    /// finite, batch sizes at least 1, trace offsets finite and non-negative,
    /// warm-up shorter than the run.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(self.invalid("the workload has no name".into()));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err(self.invalid(format!("duration_s must be > 0, got {}", self.duration_s)));
        }
        if let Some(w) = self.warmup_s {
            if !(w.is_finite() && w >= 0.0 && w < self.duration_s) {
                return Err(self.invalid(format!(
                    "warmup_s must be in [0, duration_s = {}), got {w}",
                    self.duration_s
                )));
            }
        }
        if self.tasks.is_empty() {
            return Err(self.invalid("the workload has no tasks".into()));
        }
        for (i, t) in self.tasks.iter().enumerate() {
            let at = |m: String| self.invalid(format!("task {i} ({}): {m}", t.label()));
            if t.model.trim().is_empty() {
                return Err(at("model is empty".into()));
            }
            if t.batch_size == 0 {
                return Err(at("batch_size must be at least 1".into()));
            }
            match &t.load {
                Load::Periodic { frequency: r } | Load::Poisson { rate: r } => {
                    if !(r.is_finite() && *r > 0.0) {
                        return Err(at(format!(
                            "{} rate must be > 0 Hz, got {r}",
                            t.load.kind()
                        )));
                    }
                }
                Load::Continuous => {}
                Load::Trace {
                    arrivals_ms: Some(a),
                    ..
                } => {
                    if let Some((k, v)) = a
                        .iter()
                        .enumerate()
                        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
                    {
                        return Err(at(format!(
                            "trace arrival {k} is {v}; offsets must be finite and >= 0 ms"
                        )));
                    }
                    if a.is_empty() {
                        return Err(at("trace has no arrivals".into()));
                    }
                }
                Load::Trace {
                    arrivals_ms: None,
                    path: Some(p),
                } => {
                    return Err(at(format!(
                        "trace file '{p}' not loaded (read the workload with Workload::load)"
                    )));
                }
                Load::Trace {
                    arrivals_ms: None,
                    path: None,
                } => {
                    return Err(at("trace load needs 'arrivals_ms' or 'path'".into()));
                }
            }
        }
        Ok(())
    }

    /// The run length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    /// The warm-up: `warmup_s`, or a tenth of the duration capped at 5 s.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_s.unwrap_or((self.duration_s / 10.0).min(5.0)))
    }

    /// The same workload with the BE tasks removed ("rt-alone" baseline).
    /// `None` when it has no RT task.
    pub fn rt_only(&self) -> Option<Workload> {
        self.only(Priority::Rt)
    }

    /// The same workload with the RT tasks removed ("be-alone" baseline).
    /// `None` when it has no BE task.
    pub fn be_only(&self) -> Option<Workload> {
        self.only(Priority::Be)
    }

    /// The tasks of one priority, `None` when there are none. Seeds are
    /// pinned so that the tasks keep their arrivals and inputs.
    fn only(&self, priority: Priority) -> Option<Workload> {
        let tasks: Vec<TaskSpec> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.priority == priority)
            .map(|(i, t)| TaskSpec {
                seed: Some(self.seed_for(i)),
                ..t.clone()
            })
            .collect();
        if tasks.is_empty() {
            return None;
        }
        Some(Workload {
            tasks,
            ..self.clone()
        })
    }

    /// Seed of task `i`: its own, or one derived from the index.
    pub fn seed_for(&self, i: usize) -> u64 {
        self.tasks
            .get(i)
            .and_then(|t| t.seed)
            .unwrap_or(0x5eed_0000_u64 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Names of the models the workload uses, each once, in task order.
    pub fn models(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.tasks {
            if !out.contains(&t.model) {
                out.push(t.model.clone());
            }
        }
        out
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Workload> {
        Workload::from_json_str(text, Path::new("<test>"))
    }

    fn one_task(load: &str, priority: &str) -> String {
        format!(
            r#"{{"name":"t","duration_s":2,"tasks":[{{"model":"resnet_tiny","priority":"{priority}","load":{load}}}]}}"#
        )
    }

    fn message(r: Result<Workload>) -> String {
        match r {
            Ok(w) => panic!("expected an error, parsed {w:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_every_load_type() {
        for load in [
            r#"{"type":"periodic","frequency":100}"#,
            r#"{"type":"poisson","rate":20.5}"#,
            r#"{"type":"continuous"}"#,
            r#"{"type":"trace","arrivals_ms":[0,1.5,30]}"#,
        ] {
            let w = parse(&one_task(load, "rt")).expect(load);
            assert_eq!(w.tasks[0].batch_size, 1);
        }
    }

    #[test]
    fn unknown_load_type_is_named() {
        let m = message(parse(&one_task(r#"{"type":"bursty","rate":3}"#, "rt")));
        assert!(m.contains("bursty") && m.contains("periodic"), "{m}");
    }

    #[test]
    fn non_positive_rates_are_refused() {
        for load in [
            r#"{"type":"periodic","frequency":0}"#,
            r#"{"type":"poisson","rate":-1}"#,
        ] {
            let m = message(parse(&one_task(load, "be")));
            assert!(m.contains("rate must be > 0"), "{m}");
            assert!(m.contains("task 0"), "{m}");
        }
    }

    #[test]
    fn unknown_priority_is_named() {
        let m = message(parse(&one_task(r#"{"type":"continuous"}"#, "urgent")));
        assert!(m.contains("urgent"), "{m}");
    }

    #[test]
    fn empty_tasks_and_bad_fields_are_refused() {
        let m = message(parse(r#"{"name":"x","duration_s":1,"tasks":[]}"#));
        assert!(m.contains("no tasks"), "{m}");
        let m = message(parse(r#"{"name":"x","duration_s":0,"tasks":[]}"#));
        assert!(m.contains("duration_s"), "{m}");
        let m = message(parse(&one_task(r#"{"type":"trace"}"#, "rt")));
        assert!(m.contains("arrivals_ms"), "{m}");
        let m = message(parse(&one_task(
            r#"{"type":"trace","arrivals_ms":[1,-2]}"#,
            "rt",
        )));
        assert!(m.contains("-2"), "{m}");
        let m = message(parse(
            r#"{"name":"x","duration_s":1,"warmup_s":1,"tasks":[{"model":"m","priority":"rt","load":{"type":"continuous"}}]}"#,
        ));
        assert!(m.contains("warmup_s"), "{m}");
        let m = message(parse(
            r#"{"name":"x","duration_s":1,"tasks":[{"model":"m","priority":"rt","load":{"type":"continuous"},"batch":2}]}"#,
        ));
        assert!(m.contains("batch"), "{m}");
    }

    #[test]
    fn rt_only_keeps_rt_tasks_and_their_seeds() {
        let w = parse(
            r#"{"name":"x","duration_s":3,"tasks":[
                {"model":"a","priority":"be","load":{"type":"continuous"}},
                {"model":"b","priority":"rt","load":{"type":"poisson","rate":5}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let alone = w.rt_only().unwrap_or_else(|| panic!("has an RT task"));
        assert_eq!(alone.tasks.len(), 1);
        assert_eq!(alone.tasks[0].model, "b");
        assert_eq!(alone.seed_for(0), w.seed_for(1));
        assert_eq!(w.models(), vec!["a".to_string(), "b".to_string()]);
    }

    fn shipped(name: &str) -> Workload {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../workloads")
            .join(name);
        Workload::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn shipped_workloads_match_disb() {
        let rate = |t: &TaskSpec| match t.load {
            Load::Periodic { frequency } => frequency,
            Load::Poisson { rate } => rate,
            _ => 0.0,
        };
        let a = shipped("A.json");
        assert_eq!(
            (a.tasks[0].model.as_str(), rate(&a.tasks[0])),
            ("vgg19", 100.0)
        );
        assert_eq!(a.tasks[1].load, Load::Continuous);
        let b = shipped("B.json");
        assert_eq!(rate(&b.tasks[0]), 220.0);
        assert!(b.notes.as_deref().unwrap_or("").contains("closed loop"));
        let c = shipped("C.json");
        assert_eq!(
            c.tasks
                .iter()
                .filter(|t| t.priority == Priority::Be)
                .count(),
            5
        );
        for (name, kind) in [("D.json", "periodic"), ("E.json", "poisson")] {
            let w = shipped(name);
            let rt: Vec<_> = w
                .tasks
                .iter()
                .filter(|t| t.priority == Priority::Rt)
                .collect();
            assert_eq!(rt.len(), 5);
            assert!(rt.iter().all(|t| t.load.kind() == kind && rate(t) == 20.0));
            assert_eq!(w.models().len(), 5);
        }
        for name in ["tiny-A.json", "tiny-E.json", "tiny-trace.json"] {
            let w = shipped(name);
            assert!(
                w.duration_s <= 3.0 && w.models().iter().all(|m| m.ends_with("_tiny")),
                "{name}"
            );
        }
        let tt = shipped("tiny-trace.json");
        assert!(
            matches!(&tt.tasks[0].load, Load::Trace { arrivals_ms: Some(a), .. } if a.len() == 60)
        );
    }

    #[test]
    fn shipped_trace_is_bursty_at_about_44_per_second() {
        let w = shipped("trace.json");
        assert!(w.notes.as_deref().unwrap_or("").contains("ynthetic"));
        let mut all: Vec<f64> = Vec::new();
        for t in w.tasks.iter().filter(|t| t.priority == Priority::Rt) {
            if let Load::Trace {
                arrivals_ms: Some(a),
                ..
            } = &t.load
            {
                all.extend(a);
            }
        }
        all.sort_by(f64::total_cmp);
        let rate = all.len() as f64 / w.duration_s;
        assert!((40.0..48.0).contains(&rate), "rate {rate}");
        // Bursty: inter-arrival coefficient of variation well above a Poisson's 1.
        let gaps: Vec<f64> = all.windows(2).map(|p| p[1] - p[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!(sd / mean > 1.5, "cv {}", sd / mean);
    }
}
