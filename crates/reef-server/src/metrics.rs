//! Prometheus metrics: request counters and latency histograms kept by the
//! server, plus scheduler gauges and counters read at every scrape: the
//! aggregate from [`Service::stats`](reef_sched::Service::stats) (series
//! without a `device` label) and, from
//! [`Service::device_stats`](reef_sched::Service::device_stats), the same
//! facts per device (`reef_device_*` series labelled `device="<index>"`).

use crate::model_stats::ModelStatsRegistry;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use reef_sched::{DeviceStats, LatencySummary, Service};
use std::sync::Arc;
use std::time::Duration;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    priority: String,
    outcome: String,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabels {
    priority: String,
}

type HistogramFamily = Family<PriorityLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 250 us .. ~8 s, doubling.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// The server's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry with the request metrics, a collector over `service`'s
    /// stats and one over the per-model statistics.
    pub fn new(service: Arc<dyn Service>, models: Arc<ModelStatsRegistry>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "reef_requests",
            "Inference requests by model, priority and outcome",
            requests.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "reef_request_duration_seconds",
            "Inference latency seen by the server (arrival to answer) of successful requests",
            latency.clone(),
        );
        registry.register_collector(Box::new(SchedCollector { service }));
        registry.register_collector(Box::new(ModelCollector { models }));
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    /// Counts one finished request.
    pub fn record(&self, model: &str, priority: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                model: model.to_string(),
                priority: priority.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Records the latency of a successful request.
    pub fn observe_latency(&self, priority: &str, latency: Duration) {
        self.latency
            .get_or_create(&PriorityLabels {
                priority: priority.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Reads the scheduler's counters at scrape time.
struct SchedCollector {
    service: Arc<dyn Service>,
}

impl std::fmt::Debug for SchedCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchedCollector")
    }
}

fn gauge_by<V: prometheus_client::encoding::EncodeGaugeValue + Copy + 'static>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(&str, V)],
) -> Result<(), std::fmt::Error> {
    let probe = ConstGauge::new(values[0].1);
    let mut metric = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
    for (key, v) in values {
        let labels = [(label, *key)];
        let family = metric.encode_family(&labels)?;
        ConstGauge::new(*v).encode(family)?;
    }
    Ok(())
}

fn summary(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    s: &LatencySummary,
) -> Result<(), std::fmt::Error> {
    gauge_by(
        encoder,
        &format!("{name}_microseconds"),
        help,
        "stat",
        &[
            ("mean", s.mean),
            ("p50", s.p50),
            ("p99", s.p99),
            ("max", s.max),
        ],
    )?;
    let count = ConstCounter::new(s.count);
    let samples = format!("{name}_samples");
    let m = encoder.encode_descriptor(
        &samples,
        &format!("Samples behind {name}_microseconds"),
        None,
        count.metric_type(),
    )?;
    count.encode(m)
}

impl Collector for SchedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.service.stats();
        let info = ConstGauge::new(1i64);
        let mut m = encoder.encode_descriptor(
            "reef_scheduler_info",
            "Device and scheduling mode (value is always 1)",
            None,
            info.metric_type(),
        )?;
        let labels = [("device", s.device.as_str()), ("mode", s.mode.as_str())];
        info.encode(m.encode_family(&labels)?)?;

        gauge_by(
            &mut encoder,
            "reef_queue_depth",
            "Tasks waiting, by priority",
            "priority",
            &[
                ("rt", s.rt_queue_depth as i64),
                ("be", s.be_queue_depth as i64),
            ],
        )?;
        {
            let probe = ConstCounter::new(0u64);
            let mut m = encoder.encode_descriptor(
                "reef_tasks_completed",
                "Tasks finished by the scheduler, by priority",
                None,
                probe.metric_type(),
            )?;
            for (p, v) in [("rt", s.completed[0]), ("be", s.completed[1])] {
                let labels = [("priority", p)];
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, v) in [
            (
                "reef_preemptions",
                "BE preemptions performed",
                s.preemptions,
            ),
            (
                "reef_kernels_rerun",
                "Kernels run again after a preemption",
                s.kernels_rerun,
            ),
            (
                "reef_padded_rt_kernels",
                "RT kernels given planned padding (reef mode)",
                s.padded_kernels,
            ),
            (
                "reef_pad_launches",
                "BE kernels launched as padding: planned, or beside RT work (reef mode)",
                s.pad_launches,
            ),
            (
                "reef_task_contexts_made",
                "Task contexts (a model's device memory for one task in flight) made while serving because the model's pool had none free",
                s.contexts_made,
            ),
        ] {
            let c = ConstCounter::new(v);
            let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        summary(
            &mut encoder,
            "reef_preemption_latency",
            "Preemption latency (RT arrival to every flagged BE lane drained; with RT launched before the drain, the default, it includes the BE kernels queued behind the RT work)",
            &s.preempt_latency_us,
        )?;
        summary(
            &mut encoder,
            "reef_preemption_raise_latency",
            "The scheduler's part of each preemption before the drain: RT arrival to the BE flags' raise handed to the driver",
            &s.preempt_raise_us,
        )?;
        summary(
            &mut encoder,
            "reef_padding_latency",
            "Dynamic kernel padding selection latency",
            &s.padding_latency_us,
        )?;
        let devices = self.service.device_stats();
        // One family: the aggregate sample (no labels, as ever) and a sample
        // per device; a second family of the same name would be invalid.
        let mut busy: Vec<Sample<ConstGauge<f64>>> = devices
            .iter()
            .map(|d| {
                (
                    vec![("device", d.index.to_string())],
                    ConstGauge::new(d.stats.busy_fraction),
                )
            })
            .collect();
        busy.push((vec![], ConstGauge::new(s.busy_fraction)));
        samples(
            &mut encoder,
            "reef_device_busy_fraction",
            "Fraction of wall time since start the device had a task running \
             (labelled by device index; without labels, the scheduler's aggregate)",
            &busy,
        )?;
        encode_devices(&mut encoder, &devices)
    }
}

/// Reads the per-model statistics at scrape time: the figures of Triton's
/// statistics extension as counters labelled by model (as Triton's own
/// `nv_inference_*` metrics are).
struct ModelCollector {
    models: Arc<ModelStatsRegistry>,
}

impl std::fmt::Debug for ModelCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelCollector")
    }
}

impl Collector for ModelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.models.all();
        let model = |m: &crate::model_stats::ModelStat| vec![("model", m.name.clone())];
        let counts =
            |v: fn(&crate::model_stats::ModelStat) -> u64| -> Vec<Sample<ConstCounter<u64>>> {
                all.iter()
                    .map(|m| (model(m), ConstCounter::new(v(m))))
                    .collect()
            };
        samples(
            &mut encoder,
            "reef_model_inferences",
            "Samples inferred by model (a request of batch 8 counts 8)",
            &counts(|m| m.inference_count),
        )?;
        samples(
            &mut encoder,
            "reef_model_executions",
            "Successful model executions (requests) by model",
            &counts(|m| m.execution_count),
        )?;
        let mut phases: Vec<Sample<ConstCounter<f64>>> = Vec::new();
        for m in &all {
            for (phase, d) in [
                ("queue", m.queue),
                ("compute_input", m.compute_input),
                ("compute_infer", m.compute_infer),
                ("compute_output", m.compute_output),
            ] {
                phases.push((
                    vec![("model", m.name.clone()), ("phase", phase.to_string())],
                    ConstCounter::new(d.ns as f64 * 1e-9),
                ));
            }
        }
        samples(
            &mut encoder,
            "reef_model_phase_seconds",
            "Time successful requests spent in each phase, by model: queue, compute_input \
             (decoding and writing inputs), compute_infer, compute_output (reading and encoding outputs)",
            &phases,
        )
    }
}

/// One sample of a series: its labels and its value.
type Sample<M> = (Vec<(&'static str, String)>, M);

/// Writes one metric family: a descriptor, then every sample.
fn samples<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[Sample<M>],
) -> Result<(), std::fmt::Error> {
    let Some((_, probe)) = samples.first() else {
        return Ok(());
    };
    let mut m = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
    for (labels, v) in samples {
        v.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// A gauge per device, labelled with the device index.
fn device_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    devices: &[DeviceStats],
    value: fn(&DeviceStats) -> i64,
) -> Result<(), std::fmt::Error> {
    let v: Vec<Sample<ConstGauge<i64>>> = devices
        .iter()
        .map(|d| {
            (
                vec![("device", d.index.to_string())],
                ConstGauge::new(value(d)),
            )
        })
        .collect();
    samples(encoder, name, help, &v)
}

/// The per-device series (besides `reef_device_busy_fraction`), each
/// labelled with the device index.
fn encode_devices(
    encoder: &mut DescriptorEncoder,
    devices: &[DeviceStats],
) -> Result<(), std::fmt::Error> {
    let healthy: Vec<Sample<ConstGauge<i64>>> = devices
        .iter()
        .map(|d| {
            (
                vec![("device", d.index.to_string()), ("name", d.device.clone())],
                ConstGauge::new(i64::from(d.healthy)),
            )
        })
        .collect();
    samples(
        encoder,
        "reef_device_healthy",
        "Whether the device is in rotation (1) or taken out after a fault or by an operator (0), \
         by device index and name",
        &healthy,
    )?;
    device_gauge(
        encoder,
        "reef_device_rt_queue_depth",
        "RT tasks waiting, by device",
        devices,
        |d| d.stats.rt_queue_depth as i64,
    )?;
    device_gauge(
        encoder,
        "reef_device_be_queue_depth",
        "BE tasks waiting, by device",
        devices,
        |d| d.stats.be_queue_depth as i64,
    )?;
    let completed: Vec<Sample<ConstCounter<u64>>> = devices
        .iter()
        .flat_map(|d| {
            [("rt", d.stats.completed[0]), ("be", d.stats.completed[1])].map(|(p, v)| {
                (
                    vec![("device", d.index.to_string()), ("priority", p.to_string())],
                    ConstCounter::new(v),
                )
            })
        })
        .collect();
    samples(
        encoder,
        "reef_device_completed",
        "Tasks finished, by device and priority",
        &completed,
    )?;
    let preemptions: Vec<Sample<ConstCounter<u64>>> = devices
        .iter()
        .map(|d| {
            (
                vec![("device", d.index.to_string())],
                ConstCounter::new(d.stats.preemptions),
            )
        })
        .collect();
    samples(
        encoder,
        "reef_device_preemptions",
        "BE preemptions performed, by device",
        &preemptions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reef_sched::{GraphSource, InferRequest, ModelInfo, Priority, SchedError, SchedStats};

    /// A service of one device that keeps the provided `device_stats`.
    struct OneDevice;

    impl Service for OneDevice {
        fn models(&self) -> Vec<ModelInfo> {
            vec![]
        }
        fn submit(&self, req: InferRequest) -> Result<reef_sched::Ticket, SchedError> {
            Err(SchedError::UnknownModel(req.model))
        }
        fn load_model(&self, name: &str, _: GraphSource, _: Priority) -> Result<(), SchedError> {
            Err(SchedError::Internal(format!("cannot load '{name}'")))
        }
        fn unload_model(&self, name: &str) -> Result<(), SchedError> {
            Err(SchedError::UnknownModel(name.into()))
        }
        fn stats(&self) -> SchedStats {
            SchedStats {
                device: "cpu (2 threads)".into(),
                mode: "reset".into(),
                rt_queue_depth: 3,
                be_queue_depth: 4,
                completed: [9, 6],
                preemptions: 2,
                busy_fraction: 0.5,
                ..SchedStats::default()
            }
        }
        fn shutdown(&self) {}
    }

    #[test]
    fn a_single_device_service_is_device_0() {
        let text = Metrics::new(Arc::new(OneDevice), Arc::default())
            .render()
            .expect("render");
        for want in [
            r#"reef_device_healthy{device="0",name="cpu (2 threads)"} 1"#,
            r#"reef_device_busy_fraction{device="0"} 0.5"#,
            "reef_device_busy_fraction 0.5",
            r#"reef_device_rt_queue_depth{device="0"} 3"#,
            r#"reef_device_be_queue_depth{device="0"} 4"#,
            r#"reef_device_completed_total{device="0",priority="rt"} 9"#,
            r#"reef_device_completed_total{device="0",priority="be"} 6"#,
            r#"reef_device_preemptions_total{device="0"} 2"#,
            r#"reef_tasks_completed_total{priority="rt"} 9"#,
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
        assert!(!text.contains(r#"device="1""#), "{text}");
    }
}
