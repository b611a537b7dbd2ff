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
}

fn median_and_p90(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[(v.len() * 9 / 10).min(v.len() - 1)])
}

/// Measures the models; `iters` timed runs per variant after 3 warm-ups.
pub fn run(
    dev: Arc<dyn Device>,
    models: &[String],
    batches: &[usize],
    iters: usize,
) -> Result<Vec<ModelTiming>> {
    let mut out = vec![];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    println!("device: {}", dev.name());
    if dev.kind() == reef_exec::DeviceKind::Cuda {
        // What CudaDevice::new read from the environment.
        let p = reef_cuda::CudaOptions::from_env()?.precision;
        println!("GEMM precision: {p} (REEF_PRECISION = tf32 | tf32x3 | f32)");
    }
    println!(
        "{:<16} {:>5} {:>7} {:>10} {:>10} {:>8}",
        "model", "batch", "kernels", "RT ms", "BE ms", "BE/RT"
    );
    for m in models {
        for &b in batches {
            let g = reef_zoo::build(m, b, 0)?;
            let h = dev.load(Arc::new(reef_plan::compile(&g)?))?;
            let inputs = random_inputs(&g, &mut rng);
            let mut ctx = h.context()?;
            for (i, t) in inputs.iter().enumerate() {
                ctx.write_input(i, &t.to_bytes())?;
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
            println!(
                "{:<16} {:>5} {:>7} {:>10.3} {:>10.3} {:>8.3}",
                m,
                b,
                h.plan().kernels.len(),
                rt,
                be,
                be / rt
            );
            out.push(ModelTiming {
                model: m.clone(),
                batch: b,
                kernels: h.plan().kernels.len(),
                rt_ms: rt,
                be_ms: be,
                rt_p90_ms: rt90,
            });
        }
    }
    Ok(out)
}
