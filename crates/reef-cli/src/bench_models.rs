//! `reef bench models`: latency of every zoo model on one device, RT and BE
//! variants, at the requested batch sizes (median of repeated runs after
//! warm-up). The table goes to stdout, full figures to a JSON file.

use crate::cases::random_inputs;
use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use reef_exec::{run::run_to_end, Device, Priority, Variant};
use std::sync::Arc;
use std::time::Instant;

/// One measured configuration.
#[derive(Debug, serde::Serialize)]
pub struct ModelTiming {
    /// Model.
    pub model: String,
    /// Batch size.
    pub batch: usize,
    /// Kernels in the plan.
    pub kernels: usize,
    /// RT variant median latency, ms.
    pub rt_ms: f64,
    /// BE variant median latency, ms.
    pub be_ms: f64,
    /// RT p90 latency, ms.
    pub rt_p90_ms: f64,
    /// RT variant median device time with every kernel queued ahead (no
    /// host launch rate in it), ms; None where the backend has no device timer.
    pub rt_device_ms: Option<f64>,
    /// BE variant median device time with every kernel queued ahead, ms.
    pub be_device_ms: Option<f64>,
    /// Model load time (plan to device, including tactic tuning), ms.
    pub load_ms: f64,
    /// What the load-time tactic tuner found (`REEF_TACTICS=tune`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
    /// Per-kernel RT device times (with `--kernels`), in plan order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_profile: Vec<KernelTime>,
}

/// The tuner's findings for one model ([`reef_cuda::TuneReport`]).
#[derive(Debug, serde::Serialize)]
pub struct Tuning {
    /// GEMM kernels with more than one candidate tactic.
    pub tuned: usize,
    /// Kernels whose tactic changed from the rules' choice.
    pub changed: usize,
    /// Kernels whose choice came from the tactic cache.
    pub cached: usize,
    /// Sum of the tuned kernels' times with the rules' tactics, us.
    pub rule_us: f64,
    /// The same sum with the chosen tactics, us.
    pub chosen_us: f64,
    /// Wall time of the tuning, ms.
    pub tune_ms: f64,
}

/// What tuning found for `h`, when it is a tuned CUDA model.
fn tuning_of(h: &Arc<dyn reef_exec::ModelHandle>) -> Option<Tuning> {
    let r = h
        .as_any()
        .downcast_ref::<reef_cuda::CudaModel>()?
        .tune_report()?;
    Some(Tuning {
        tuned: r.tuned,
        changed: r.changed,
        cached: r.cached,
        rule_us: r.rule_us,
        chosen_us: r.chosen_us,
        tune_ms: r.elapsed.as_secs_f64() * 1e3,
    })
}

/// One kernel's RT device time from [`reef_exec::Lane::profile`].
#[derive(Debug, serde::Serialize)]
pub struct KernelTime {
    /// Index in the plan.
    pub index: usize,
    /// The graph nodes it came from.
    pub name: String,
    /// The op and its sizes.
    pub op: String,
    /// RT launch blocks (when the backend reports launch shapes).
    pub blocks: Option<u32>,
    /// Mean device time of one launch, microseconds.
    pub us: f64,
    /// How the backend launches it (CUDA: family, "multi-wave").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A CUDA GEMM's tactic (tile and K splits), marked `*` where it is not
    /// the rules' choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tactic: Option<String>,
    /// Its share of a whole RT run queued ahead (median over runs), us.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rt_run_us: Option<f64>,
    /// Its share of a whole BE run queued ahead (median over runs), us.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub be_run_us: Option<f64>,
}

fn median_and_p90(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[(v.len() * 9 / 10).min(v.len() - 1)])
}

/// Times every kernel of `h` alone (RT variant, device events) and prints
/// the `top` slowest with their share, plus the sum of all kernels against
/// the end-to-end median `rt_ms` (the difference is launch gaps and host
/// overhead).
fn profile_kernels(
    dev: &dyn Device,
    h: &Arc<dyn reef_exec::ModelHandle>,
    ctx: &mut dyn reef_exec::Context,
    rt_ms: f64,
    top: usize,
) -> Result<Vec<KernelTime>> {
    let mut lane = dev.lane(Priority::High)?;
    let times = lane.profile(ctx, 10)?;
    let plan = h.plan();
    let gemms = h
        .as_any()
        .downcast_ref::<reef_cuda::CudaModel>()
        .map(|m| m.gemms().to_vec())
        .unwrap_or_default();
    let tactic = |i: usize| {
        gemms.get(i).copied().flatten().map(|g| {
            let mark = if g.used == g.rule { "" } else { "*" };
            format!("{}{mark}", g.used)
        })
    };
    let mut ks: Vec<KernelTime> = plan
        .kernels
        .iter()
        .zip(&times)
        .enumerate()
        .map(|(i, (k, t))| KernelTime {
            index: i,
            name: k.name.clone(),
            op: k.op.describe(),
            blocks: ctx.shape(i).map(|s| s.rt_blocks),
            us: t.as_secs_f64() * 1e6,
            label: ctx.launch_label(i),
            tactic: tactic(i),
            rt_run_us: None,
            be_run_us: None,
        })
        .collect();
    let sum: f64 = ks.iter().map(|k| k.us).sum();
    let mut order: Vec<&KernelTime> = ks.iter().collect();
    order.sort_by(|a, b| b.us.total_cmp(&a.us));
    println!(
        "  kernels alone sum to {:.3} ms of {rt_ms:.3} ms end to end ({:.0}% in kernels); slowest:",
        sum / 1e3,
        100.0 * sum / (rt_ms * 1e3)
    );
    for k in order.iter().take(top) {
        let blocks = k.blocks.map_or("-".to_string(), |b| b.to_string());
        println!(
            "  {:>4} {:>9.1} us {:>5.1}% {:>6} blocks  {:<40} {:<22} {}",
            k.index,
            k.us,
            100.0 * k.us / sum,
            blocks,
            k.op,
            k.tactic.as_deref().unwrap_or(""),
            k.name
        );
    }
    let rt_runs = kernel_shares(dev, ctx, Variant::Rt)?;
    let be_runs = kernel_shares(dev, ctx, Variant::Be)?;
    if let (Some(rt), Some(be)) = (rt_runs, be_runs) {
        for (k, (r, b)) in ks.iter_mut().zip(rt.iter().zip(&be)) {
            k.rt_run_us = Some(*r);
            k.be_run_us = Some(*b);
        }
        print_be_cost(&ks, top);
    }
    Ok(ks)
}

/// Each kernel's share of a whole run queued ahead, as `variant`: the
/// median over 7 runs, microseconds. None without a device timer.
fn kernel_shares(
    dev: &dyn Device,
    ctx: &mut dyn reef_exec::Context,
    variant: Variant,
) -> Result<Option<Vec<f64>>> {
    let mut lane = dev.lane(if variant == Variant::Rt {
        Priority::High
    } else {
        Priority::Low
    })?;
    let mut runs = vec![];
    for _ in 0..7 {
        match lane.run_device_timed_kernels(ctx, variant)? {
            Some(t) => runs.push(t),
            None => return Ok(None),
        }
    }
    let n = runs[0].len();
    Ok(Some(
        (0..n)
            .map(|i| {
                let v: Vec<f64> = runs.iter().map(|r| r[i].as_secs_f64() * 1e6).collect();
                median_and_p90(v).0
            })
            .collect(),
    ))
}

/// One launch label's share of the queued-ahead RT and BE runs.
#[derive(Debug, Clone, PartialEq)]
struct LabelCost {
    label: String,
    kernels: usize,
    rt_us: f64,
    be_us: f64,
}

/// The kernels with both run shares, summed per launch label ("-" where the
/// backend gives none), the label whose BE time exceeds its RT time most
/// first.
fn be_cost_by_label(ks: &[KernelTime]) -> Vec<LabelCost> {
    let mut by: std::collections::BTreeMap<String, LabelCost> = Default::default();
    for k in ks {
        let (Some(r), Some(b)) = (k.rt_run_us, k.be_run_us) else {
            continue;
        };
        let label = k.label.clone().unwrap_or_else(|| "-".into());
        let e = by.entry(label.clone()).or_insert(LabelCost {
            label,
            kernels: 0,
            rt_us: 0.0,
            be_us: 0.0,
        });
        e.kernels += 1;
        e.rt_us += r;
        e.be_us += b;
    }
    let mut rows: Vec<LabelCost> = by.into_values().collect();
    rows.sort_by(|a, b| (b.be_us - b.rt_us).total_cmp(&(a.be_us - a.rt_us)));
    rows
}

/// Where the BE variant's time over RT goes: per launch label (family and
/// waves), then the `top` kernels that cost the most.
fn print_be_cost(ks: &[KernelTime], top: usize) {
    let rows = be_cost_by_label(ks);
    let rt_sum: f64 = rows.iter().map(|e| e.rt_us).sum();
    let be_sum: f64 = rows.iter().map(|e| e.be_us).sum();
    println!(
        "  queued-ahead runs: RT {:.1} us, BE {:.1} us (BE - RT {:+.1} us); by launch:",
        rt_sum,
        be_sum,
        be_sum - rt_sum
    );
    for LabelCost {
        label,
        kernels,
        rt_us: r,
        be_us: b,
    } in rows
    {
        println!(
            "    {label:<28} {kernels:>4} kernels  RT {r:>9.1} us  BE {b:>9.1} us  {:+8.1} us ({:+.1}%)",
            b - r,
            100.0 * (b - r) / r.max(1e-9)
        );
    }
    let mut order: Vec<&KernelTime> = ks.iter().filter(|k| k.be_run_us.is_some()).collect();
    order.sort_by(|a, b| {
        let d = |k: &KernelTime| k.be_run_us.unwrap_or(0.0) - k.rt_run_us.unwrap_or(0.0);
        d(b).total_cmp(&d(a))
    });
    for k in order.iter().take(top) {
        let (r, b) = (k.rt_run_us.unwrap_or(0.0), k.be_run_us.unwrap_or(0.0));
        println!(
            "    {:>4} RT {r:>8.1} us BE {b:>8.1} us {:+7.1} us {:<24} {}",
            k.index,
            b - r,
            k.label.as_deref().unwrap_or("-"),
            k.op
        );
    }
}

/// Measures the models; `iters` timed runs per variant after 3 warm-ups.
/// With `top_kernels > 0`, also profiles each kernel alone and prints the
/// slowest `top_kernels`.
pub fn run(
    dev: Arc<dyn Device>,
    models: &[String],
    batches: &[usize],
    iters: usize,
    top_kernels: usize,
) -> Result<Vec<ModelTiming>> {
    let mut out = vec![];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    println!("device: {}", dev.name());
    if dev.kind() == reef_exec::DeviceKind::Cuda {
        // What CudaDevice::new read from the environment.
        let o = reef_cuda::CudaOptions::from_env()?;
        println!(
            "GEMM precision: {} (REEF_PRECISION = tf32 | tf32x3 | f32), tactics: {} \
             (REEF_TACTICS = rules | tune | random:SEED)",
            o.precision, o.tactics
        );
    }
    println!(
        "{:<16} {:>5} {:>7} {:>10} {:>10} {:>8} {:>10} {:>10}",
        "model", "batch", "kernels", "RT ms", "BE ms", "BE/RT", "RT dev ms", "BE dev ms"
    );
    for m in models {
        for &b in batches {
            let g = reef_zoo::build(m, b, 0)?;
            let plan = Arc::new(reef_plan::compile(&g)?);
            let t_load = Instant::now();
            let h = dev.load(plan)?;
            let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
            let tuning = tuning_of(&h);
            let inputs = random_inputs(&g, &mut rng);
            let mut ctx = h.context()?;
            for (i, t) in inputs.iter().enumerate() {
                ctx.write_input(i, &t.bytes())?;
            }
            let mut times = |variant: Variant| -> Result<Vec<f64>> {
                let mut lane = dev.lane(if variant == Variant::Rt {
                    Priority::High
                } else {
                    Priority::Low
                })?;
                for _ in 0..3 {
                    run_to_end(lane.as_mut(), ctx.as_mut(), 0, variant)?;
                }
                (0..iters)
                    .map(|_| {
                        let t0 = Instant::now();
                        run_to_end(lane.as_mut(), ctx.as_mut(), 0, variant)?;
                        Ok(t0.elapsed().as_secs_f64() * 1e3)
                    })
                    .collect()
            };
            let (rt, rt90) = median_and_p90(times(Variant::Rt)?);
            let (be, _) = median_and_p90(times(Variant::Be)?);
            let mut device_time = |variant: Variant| -> Result<Option<f64>> {
                let mut lane = dev.lane(if variant == Variant::Rt {
                    Priority::High
                } else {
                    Priority::Low
                })?;
                let mut v = Vec::with_capacity(iters.max(1));
                for _ in 0..iters.max(1) {
                    match lane.run_device_timed(ctx.as_mut(), variant)? {
                        Some(d) => v.push(d.as_secs_f64() * 1e3),
                        None => return Ok(None),
                    }
                }
                Ok(Some(median_and_p90(v).0))
            };
            let rt_dev = device_time(Variant::Rt)?;
            let be_dev = device_time(Variant::Be)?;
            let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
            println!(
                "{:<16} {:>5} {:>7} {:>10.3} {:>10.3} {:>8.3} {:>10} {:>10}",
                m,
                b,
                h.plan().kernels.len(),
                rt,
                be,
                be / rt,
                show(rt_dev),
                show(be_dev)
            );
            if let Some(t) = &tuning {
                println!(
                    "  tactics tuned: {} GEMMs ({} from the cache), {} changed, kernels alone \
                     {:.1} -> {:.1} us ({:+.1}%), tuning {:.0} ms of a {load_ms:.0} ms load",
                    t.tuned,
                    t.cached,
                    t.changed,
                    t.rule_us,
                    t.chosen_us,
                    100.0 * (t.chosen_us - t.rule_us) / t.rule_us.max(1e-9),
                    t.tune_ms
                );
            }
            let kernel_profile = if top_kernels > 0 {
                profile_kernels(dev.as_ref(), &h, ctx.as_mut(), rt, top_kernels)?
            } else {
                vec![]
            };
            out.push(ModelTiming {
                model: m.clone(),
                batch: b,
                kernels: h.plan().kernels.len(),
                rt_ms: rt,
                be_ms: be,
                rt_p90_ms: rt90,
                rt_device_ms: rt_dev,
                be_device_ms: be_dev,
                load_ms,
                tuning,
                kernel_profile,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kt(index: usize, label: Option<&str>, rt: Option<f64>, be: Option<f64>) -> KernelTime {
        KernelTime {
            index,
            name: format!("k{index}"),
            op: "op".into(),
            blocks: None,
            us: 1.0,
            label: label.map(str::to_string),
            tactic: None,
            rt_run_us: rt,
            be_run_us: be,
        }
    }

    #[test]
    fn be_cost_sums_per_label_and_puts_the_costliest_first() {
        let ks = [
            kt(0, Some("conv_tc_w"), Some(10.0), Some(11.0)),
            kt(1, Some("softmax multi-wave"), Some(4.0), Some(7.5)),
            kt(2, Some("conv_tc_w"), Some(20.0), Some(21.5)),
            kt(3, None, Some(2.0), Some(2.25)),
            // Without both shares a kernel is left out.
            kt(4, Some("pool"), Some(3.0), None),
        ];
        let rows = be_cost_by_label(&ks);
        let got: Vec<(&str, usize, f64, f64)> = rows
            .iter()
            .map(|r| (r.label.as_str(), r.kernels, r.rt_us, r.be_us))
            .collect();
        assert_eq!(
            got,
            vec![
                ("softmax multi-wave", 1, 4.0, 7.5),
                ("conv_tc_w", 2, 30.0, 32.5),
                ("-", 1, 2.0, 2.25),
            ]
        );
    }

    #[test]
    fn kernel_profiles_cover_every_kernel_of_the_plan() {
        let dev: Arc<dyn Device> =
            Arc::new(reef_exec::cpu::CpuDevice::new(Some(2)).expect("cpu device"));
        let res = run(dev, &["resnet_tiny".to_string()], &[1], 2, 3).expect("bench");
        assert_eq!(res.len(), 1);
        let t = &res[0];
        assert!(t.rt_ms > 0.0 && t.be_ms > 0.0, "{t:?}");
        // The CPU backend has no device timer.
        assert!(t.rt_device_ms.is_none() && t.be_device_ms.is_none());
        assert_eq!(t.kernel_profile.len(), t.kernels);
        for (i, k) in t.kernel_profile.iter().enumerate() {
            assert_eq!(k.index, i);
            assert!(k.us > 0.0, "kernel {i} timed at {} us", k.us);
            assert!(!k.op.is_empty() && !k.name.is_empty());
            // No device timer on the CPU: no queued-ahead shares.
            assert!(k.rt_run_us.is_none() && k.be_run_us.is_none(), "{k:?}");
        }
        // The first kernel of resnet_tiny is its stem convolution.
        assert!(
            t.kernel_profile[0].op.starts_with("conv 7x7/2"),
            "{:?}",
            t.kernel_profile[0]
        );
        // Without --kernels the JSON carries no profile.
        let dev: Arc<dyn Device> =
            Arc::new(reef_exec::cpu::CpuDevice::new(Some(2)).expect("cpu device"));
        let res = run(dev, &["resnet_tiny".to_string()], &[1], 1, 0).expect("bench");
        assert!(res[0].kernel_profile.is_empty());
    }
}
