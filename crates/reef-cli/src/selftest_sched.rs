//! `reef selftest`'s scheduler check: RT and BE requests through a real
//! [`Scheduler`] at once, in a preemptive mode, every answer compared bit for
//! bit with the same request answered with the device to itself. It covers
//! what the lane-level checks do not: the scheduling thread's preemptions
//! and resumes, the BE I/O worker that writes BE inputs and reads BE
//! outputs on its own thread, and (in the drain-first order) the BE lanes
//! made for quick drains.

use crate::bench_preempt::{request, source};
use crate::cases::random_inputs;
use crate::selftest::Row;
use anyhow::{Context as _, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use reef_exec::Device;
use reef_model::tensor::rel_l2;
use reef_model::Tensor;
use reef_sched::{ModeSpec, Priority, SchedConfig, Scheduler, Service};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Distinct inputs per model.
const INPUTS: usize = 3;

/// How a batch of answers compared with the references.
#[derive(Default)]
struct Tally {
    answers: u64,
    wrong: u64,
    /// The largest relative L2 error of a wrong answer.
    worst: f64,
}

impl Tally {
    fn add(&mut self, got: &[Tensor], want: &[Tensor]) {
        self.answers += 1;
        let same =
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.bytes() == w.bytes());
        if !same {
            self.wrong += 1;
            let err = got
                .iter()
                .zip(want)
                .map(|(g, w)| match (g.as_f32(), w.as_f32()) {
                    (Some(g), Some(w)) if g.len() == w.len() => rel_l2(g, w),
                    _ => f64::INFINITY,
                })
                .fold(
                    if got.len() == want.len() {
                        0.0
                    } else {
                        f64::INFINITY
                    },
                    f64::max,
                );
            self.worst = self.worst.max(err);
        }
    }
}

/// What one scheduler check saw.
struct Outcome {
    rt: Tally,
    be: Tally,
    preemptions: u64,
}

impl Outcome {
    /// Every answer as the device alone gave it, and some under preemption.
    fn ok(&self) -> bool {
        self.rt.wrong == 0 && self.be.wrong == 0 && self.preemptions > 0
    }
}

/// `rt` requests of RT model `rt_model` at random gaps of up to `max_gap`
/// while one client keeps BE model `be_model` busy, in `mode`.
pub(crate) fn check_scheduler(
    dut: &Arc<dyn Device>,
    mode: ModeSpec,
    models: (&str, &str),
    rt: usize,
    max_gap: Duration,
    rng: &mut ChaCha8Rng,
) -> Result<Row> {
    let o = run_check(dut, mode, models, rt, max_gap, rng)?;
    Ok(Row {
        what: format!("scheduler {mode}: RT {}, BE {}", models.0, models.1),
        err: o.rt.worst.max(o.be.worst),
        ok: o.ok(),
        note: format!(
            "{} RT and {} BE answers, {} and {} differ from the device alone's; {} preemptions{}",
            o.rt.answers,
            o.be.answers,
            o.rt.wrong,
            o.be.wrong,
            o.preemptions,
            if o.preemptions == 0 {
                " (none: nothing was checked under preemption)"
            } else {
                ""
            }
        ),
    })
}

fn run_check(
    dut: &Arc<dyn Device>,
    mode: ModeSpec,
    (rt_model, be_model): (&str, &str),
    rt: usize,
    max_gap: Duration,
    rng: &mut ChaCha8Rng,
) -> Result<Outcome> {
    let s = Scheduler::new(
        dut.clone(),
        mode.apply(SchedConfig {
            be_queues: 1,
            ..SchedConfig::default()
        }),
    )?;
    s.load_model(rt_model, source(rt_model), Priority::Rt)?;
    s.load_model(be_model, source(be_model), Priority::Be)?;
    let graph = |m: &str| reef_zoo::build(m, 1, 7).with_context(|| format!("building {m}"));
    let (rt_graph, be_graph) = (graph(rt_model)?, graph(be_model)?);
    let rt_in: Vec<Vec<Tensor>> = (0..INPUTS).map(|_| random_inputs(&rt_graph, rng)).collect();
    let be_in: Vec<Vec<Tensor>> = (0..INPUTS).map(|_| random_inputs(&be_graph, rng)).collect();
    // The references: each request with the device to itself.
    let answer = |m: &str, inputs: &[Tensor], p: Priority| -> Result<Vec<Tensor>> {
        Ok(s.infer_blocking(request(m, inputs, p))
            .with_context(|| format!("{p:?} request to {m}"))?
            .outputs)
    };
    let rt_ref = rt_in
        .iter()
        .map(|i| answer(rt_model, i, Priority::Rt))
        .collect::<Result<Vec<_>>>()?;
    let be_ref = be_in
        .iter()
        .map(|i| answer(be_model, i, Priority::Be))
        .collect::<Result<Vec<_>>>()?;
    let before = s.stats().preemptions;
    let stop = AtomicBool::new(false);
    let be_sent = AtomicU64::new(0);
    let gaps: Vec<Duration> = (0..rt)
        .map(|_| max_gap.mul_f64(rng.random_range(0.25..=1.0)))
        .collect();
    let picks: Vec<usize> = (0..rt).map(|_| rng.random_range(0..INPUTS)).collect();
    let (rt_tally, be_tally) = std::thread::scope(|scope| -> Result<(Tally, Tally)> {
        let client = scope.spawn(|| -> Result<Tally> {
            let mut t = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let i = (be_sent.fetch_add(1, Ordering::Relaxed) as usize) % INPUTS;
                t.add(&answer(be_model, &be_in[i], Priority::Be)?, &be_ref[i]);
            }
            Ok(t)
        });
        // The BE work first, then the RT requests into it.
        std::thread::sleep(max_gap);
        let mut t = Tally::default();
        let mut run = || -> Result<()> {
            for (gap, &i) in gaps.iter().zip(&picks) {
                std::thread::sleep(*gap);
                t.add(&answer(rt_model, &rt_in[i], Priority::Rt)?, &rt_ref[i]);
            }
            Ok(())
        };
        let r = run();
        stop.store(true, Ordering::Relaxed);
        let be = client
            .join()
            .map_err(|_| anyhow::anyhow!("BE client panicked"))?;
        r?;
        Ok((t, be?))
    })?;
    let preemptions = s.stats().preemptions - before;
    s.shutdown();
    Ok(Outcome {
        rt: rt_tally,
        be: be_tally,
        preemptions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use reef_exec::cpu::CpuDevice;

    /// On the CPU backend the scheduler's answers under preemption equal
    /// the device-alone answers bit for bit in every preemptive mode. (Its
    /// first version caught BE tasks started by the I/O worker while RT
    /// work ran being paused before they had begun, and resumed from their
    /// context's last user's progress: an earlier request's outputs, in
    /// about one run of three.)
    #[test]
    fn scheduler_check_passes_on_the_cpu() {
        let dev: Arc<dyn Device> = Arc::new(CpuDevice::new(Some(2)).unwrap());
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        // `io`: the BE I/O thread, which the CPU backend leaves off.
        for mode in ["reset:io", "reset:drain:io", "reef:io", "wait:io", "reset"] {
            // Every answer of every run must be right; on a busy 2-core
            // box an RT request may find no BE kernel in flight, so a mode
            // gets up to eight runs to preempt at least three times.
            let mut preempted = 0;
            for _ in 0..8 {
                let o = run_check(
                    &dev,
                    mode.parse().unwrap(),
                    ("resnet_tiny", "vgg_tiny"),
                    30,
                    Duration::from_millis(4),
                    &mut rng,
                )
                .unwrap();
                assert_eq!(o.rt.answers, 30, "{mode}");
                assert!(o.be.answers > 0, "{mode}");
                assert_eq!(
                    (o.rt.wrong, o.be.wrong),
                    (0, 0),
                    "{mode}: answers differ from the device alone's (worst {:.2e})",
                    o.rt.worst.max(o.be.worst)
                );
                preempted += u64::from(o.preemptions > 0);
                if preempted == 3 {
                    break;
                }
            }
            assert_eq!(preempted, 3, "{mode}: too few runs preempted anything");
        }
    }
}
