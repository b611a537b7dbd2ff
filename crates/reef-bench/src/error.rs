//! Errors of the benchmark: workload files, runs and report writing.

use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong in `reef-bench`.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A file could not be read or written.
    #[error("{action} '{path}': {source}")]
    Io {
        /// What was attempted ("reading workload", "writing report", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A workload or trace file is not valid JSON of the expected form.
    #[error("parsing {what} '{path}': {source}")]
    Parse {
        /// "workload", "trace" or "result".
        what: &'static str,
        /// The file (or `<string>`).
        path: PathBuf,
        /// The cause, with line and column.
        source: serde_json::Error,
    },
    /// The workload parsed but makes no sense (names the task and field).
    #[error("invalid workload '{workload}': {message}")]
    Invalid {
        /// Workload name.
        workload: String,
        /// What is wrong.
        message: String,
    },
    /// A task names a model the service does not serve.
    #[error("task {task} uses model '{model}', which the service does not serve (it serves: {available})")]
    UnknownModel {
        /// Task index.
        task: usize,
        /// The model.
        model: String,
        /// Comma-separated model names served.
        available: String,
    },
    /// Random inputs cannot be made for a model input.
    #[error("model '{model}' input '{input}': {message}")]
    Inputs {
        /// The model.
        model: String,
        /// The input.
        input: String,
        /// What is wrong.
        message: String,
    },
    /// The service factory failed for a mode.
    #[error("creating the service for mode '{mode}': {message}")]
    Factory {
        /// The mode label.
        mode: String,
        /// The factory's error.
        message: String,
    },
    /// The load generator failed (a thread panicked or could not start).
    #[error("load generator: {0}")]
    Generator(String),
    /// A plot could not be drawn.
    #[error("plotting '{path}': {message}")]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// JSON serialization failed.
    #[error("serializing results: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Result alias of this crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
