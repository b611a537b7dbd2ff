//! The throughput ceiling of exclusive RT.
//!
//! A mode that runs no BE work while RT work is on the device (`wait`,
//! `reset`, and `reef` where padding finds nothing) can at best run BE work
//! at its unshared rate in the time RT work leaves free. With two baselines
//! of the same workload, "rt-alone" (its RT tasks only) and "be-alone" (its
//! BE tasks only), that bound is
//!
//! ```text
//! total <= rt_rps + be_alone_rps * (1 - rt_occupancy)
//! ```
//!
//! where `rt_occupancy` is the fraction of rt-alone's measured window in
//! which RT work held the device: the union over its RT requests of the
//! spans from the first kernel's launch to the outputs being read (the
//! scheduler's `service - queued - output`, ending where the scheduler
//! answered), clipped to the window. The union matters: the scheduler
//! launches an RT task while the one before it still runs, so their spans
//! overlap. "be-alone" runs in `stream` mode, BE work held back by nothing,
//! so `be_alone_rps` is the most the device gives the BE tasks. Set beside
//! `stream` (BE work beside RT work, without preemption), the ceiling says
//! how much of `stream`'s throughput any exclusive mode can keep; the rest
//! needs BE work beside RT work (padding).

use crate::schema::{ExclusiveCeiling, ModeResult, RequestRecord};
use reef_sched::Priority;

/// Label of the BE-alone baseline.
pub const BE_ALONE: &str = "be-alone";

/// The span in which one RT request held the device, ms from the run's
/// start: it ends where the scheduler answered less the output read (in
/// process the service's time runs from the scheduled arrival; through a
/// server, the handler's answer is `response_ms` before the runner's) and
/// lasts `service - queued - output`. `None` when the service did not
/// report its phases.
fn device_span(r: &RequestRecord) -> Option<(f64, f64)> {
    let service = r.service_ms?;
    let queued = r.queued_ms?;
    let output = r.output_ms.unwrap_or(0.0);
    let answered = match r.response_ms {
        Some(response) => r.arrival_ms + r.latency_ms - response,
        None => r.arrival_ms + service,
    };
    let end = answered - output;
    Some((end - (service - queued - output).max(0.0), end))
}

/// Total length of the union of `spans` clipped to `[lo, hi]`.
fn union_length(mut spans: Vec<(f64, f64)>, lo: f64, hi: f64) -> f64 {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut reach = lo;
    for (start, end) in spans {
        let (start, end) = (start.max(reach), end.min(hi));
        if end > start {
            total += end - start;
            reach = end;
        }
    }
    total
}

/// The fraction of `mode`'s measured window in which its RT requests held
/// the device (see the module documentation); `None` when no RT request
/// completed or one of them lacks the service's phases.
pub fn rt_occupancy(mode: &ModeResult) -> Option<f64> {
    let (warmup_ms, duration_ms) = (mode.warmup_s * 1000.0, mode.duration_s * 1000.0);
    let spans: Option<Vec<(f64, f64)>> = mode
        .records
        .iter()
        .filter(|r| r.ok && r.priority == Priority::Rt)
        .map(device_span)
        .collect();
    let spans = spans?;
    if spans.is_empty() || duration_ms <= warmup_ms {
        return None;
    }
    Some(union_length(spans, warmup_ms, duration_ms) / (duration_ms - warmup_ms))
}

/// The ceiling from the modes labelled `rt_alone` and [`BE_ALONE`]; `None`
/// when either is missing, rt-alone's occupancy is unknown, or rt-alone ran
/// on several devices (one device's occupancy says nothing of the others').
pub fn exclusive_ceiling(modes: &[ModeResult], rt_alone: &str) -> Option<ExclusiveCeiling> {
    let rt = modes.iter().find(|m| m.mode == rt_alone)?;
    let be = modes.iter().find(|m| m.mode == BE_ALONE)?;
    if !rt.devices.is_empty() {
        return None;
    }
    let occ = rt_occupancy(rt)?;
    Some(ExclusiveCeiling {
        rt_occupancy: occ,
        rt_rps: rt.rt_throughput_rps,
        be_alone_rps: be.be_throughput_rps,
        total_rps: rt.rt_throughput_rps + be.be_throughput_rps * (1.0 - occ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::summarize;
    use crate::test_support::{one_rt_task, record};

    fn workload(duration_s: f64) -> crate::workload::Workload {
        one_rt_task(duration_s, 0.0)
    }

    fn rec(p: Priority, arrival: f64, service: f64, queued: f64, output: f64) -> RequestRecord {
        RequestRecord {
            warmup: false,
            queued_ms: Some(queued),
            output_ms: Some(output),
            service_ms: Some(service),
            ..record(p, arrival, service)
        }
    }

    #[test]
    fn occupancy_sums_the_device_spans_in_the_window() {
        // 1 s window; RT requests every 100 ms, each 4 ms in service of which
        // 0.5 queued and 0.5 reading outputs: 3 ms on the device.
        let records: Vec<RequestRecord> = (0..10)
            .map(|i| rec(Priority::Rt, i as f64 * 100.0, 4.0, 0.5, 0.5))
            .collect();
        let m = summarize("rt-alone", &workload(1.0), 0.0, records, 0);
        let occ = rt_occupancy(&m).unwrap_or(f64::NAN);
        assert!((occ - 0.03).abs() < 1e-12, "{occ}");
    }

    #[test]
    fn overlapping_spans_count_once_and_the_window_clips() {
        // Two requests at 100 ms: one on the device 100.5..103.5, the other
        // launched behind it, 100.5..106.5; union 6 ms. One more at 998 ms
        // runs past the 1 s end (998.5..1001.5): 1.5 ms of it counts.
        let records = vec![
            rec(Priority::Rt, 100.0, 4.0, 0.5, 0.5),
            rec(Priority::Rt, 100.0, 7.0, 0.5, 0.5),
            rec(Priority::Rt, 998.0, 4.0, 0.5, 0.5),
            rec(Priority::Be, 0.0, 900.0, 0.0, 0.0),
        ];
        let m = summarize("rt-alone", &workload(1.0), 0.0, records, 0);
        let occ = rt_occupancy(&m).unwrap_or(f64::NAN);
        assert!((occ - 0.0075).abs() < 1e-12, "{occ}");
    }

    #[test]
    fn a_remote_span_ends_at_the_handlers_answer() {
        // Through a server: 1 ms to reach it, 3 ms inside (0.5 queued,
        // 0.5 output), 1 ms back: on the device from 101.5 to 103.5 ms.
        let mut r = rec(Priority::Rt, 100.0, 5.0, 0.5, 0.5);
        r.service_ms = Some(3.0);
        r.response_ms = Some(1.0);
        assert_eq!(device_span(&r), Some((101.5, 103.5)));
        assert_eq!(
            union_length(vec![(1.0, 3.0), (2.0, 4.0), (0.0, 0.5)], 0.0, 10.0),
            3.5
        );
    }

    #[test]
    fn occupancy_needs_the_phases_of_every_request() {
        let mut records: Vec<RequestRecord> = (0..3)
            .map(|i| rec(Priority::Rt, i as f64 * 100.0, 4.0, 0.5, 0.5))
            .collect();
        records[1].queued_ms = None;
        let m = summarize("rt-alone", &workload(1.0), 0.0, records, 0);
        assert_eq!(rt_occupancy(&m), None);
    }

    #[test]
    fn ceiling_adds_be_alone_in_the_time_rt_leaves() {
        // rt-alone: 10 RT req/s, 50 ms each on the device: occupancy 0.5.
        let rt: Vec<RequestRecord> = (0..10)
            .map(|i| rec(Priority::Rt, i as f64 * 100.0, 50.0, 0.0, 0.0))
            .collect();
        // be-alone: 40 BE answers in the 1 s window.
        let be: Vec<RequestRecord> = (0..40)
            .map(|i| rec(Priority::Be, i as f64 * 24.0, 10.0, 0.0, 0.0))
            .collect();
        let modes = vec![
            summarize("rt-alone", &workload(1.0), 0.0, rt, 0),
            summarize(BE_ALONE, &workload(1.0), 0.0, be, 0),
        ];
        let c = exclusive_ceiling(&modes, "rt-alone").unwrap_or_else(|| panic!("both baselines"));
        assert!((c.rt_occupancy - 0.5).abs() < 1e-12, "{c:?}");
        assert!((c.rt_rps - 10.0).abs() < 1e-12, "{c:?}");
        assert!((c.be_alone_rps - 40.0).abs() < 1e-12, "{c:?}");
        assert!((c.total_rps - 30.0).abs() < 1e-12, "{c:?}");
        assert_eq!(exclusive_ceiling(&modes[..1], "rt-alone"), None);
        // Several devices: no ceiling from one device's occupancy.
        let mut multi = modes.clone();
        multi[0].devices = vec![crate::schema::DeviceResult::default(); 2];
        assert_eq!(exclusive_ceiling(&multi, "rt-alone"), None);
    }
}
