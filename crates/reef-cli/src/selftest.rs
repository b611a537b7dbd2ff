//! `reef selftest`: every kernel family and every zoo model on the device
//! under test against the CPU backend, RT against BE variants bit for bit,
//! and BE runs killed at random points and resumed, compared bit for bit with
//! unpreempted runs.
//!
//! In the GPU's default `tf32` precision the CPU reference rounds the
//! operands of exactly the GEMMs that run on TF32 tensor cores to TF32
//! ([`CpuDevice::with_tf32`]), so kernels and whole models are judged in the
//! GPU's own arithmetic: kernel cases within `--tf32-tol`, whole models
//! within that or a multiple of the model's own TF32-vs-f32 error on the
//! CPU ([`tf32_model_bound`] says why), and each whole model's error against
//! the plain-f32 CPU run is printed beside it, for information. `tf32x3`
//! and `f32` are judged against the plain-f32 CPU.

use crate::cases::{self, random_inputs};
use anyhow::{Context as _, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_exec::cpu::CpuDevice;
use reef_exec::{run::run_to_end, Device, DeviceKind, ModelHandle, Priority, Variant};
use reef_model::tensor::rel_l2;
use reef_model::{Graph, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of a self-test run.
pub struct Options {
    /// Zoo models to check (empty = all).
    pub models: Vec<String>,
    /// Random preemptions per model.
    pub preemptions: usize,
    /// Seed for inputs and preemption points.
    pub seed: u64,
    /// Tolerance (relative L2) of whole models on the GPU against the
    /// plain-f32 CPU, stated for TF32 arithmetic and scaled down for the
    /// precisions judged against f32 (tf32x3 and f32, see `model_tol`); not
    /// used in `tf32` precision, where `tf32_tol` applies.
    pub model_tol: f64,
    /// Tolerance (relative L2), in `tf32` precision on the GPU, of the
    /// tensor-core kernel cases against the CPU backend that rounds the same
    /// GEMM operands to TF32, and the least bound of whole models there.
    pub tf32_tol: f64,
    /// Whole models in `tf32` precision also pass within this multiple of
    /// the CPU's own TF32-vs-f32 error of the model (see
    /// [`tf32_model_bound`]); 0 judges them by `tf32_tol` alone.
    pub tf32_model_factor: f64,
}

/// One line of the self-test's table.
pub(crate) struct Row {
    pub what: String,
    pub err: f64,
    pub ok: bool,
    pub note: String,
}

fn run_plan(
    h: &Arc<dyn ModelHandle>,
    dev: &dyn Device,
    inputs: &[Tensor],
    variant: Variant,
) -> Result<(Vec<Vec<u8>>, Duration)> {
    let mut lane = dev.lane(if variant == Variant::Rt {
        Priority::High
    } else {
        Priority::Low
    })?;
    let mut ctx = h.context()?;
    fresh(ctx.as_mut(), inputs)?;
    let t0 = Instant::now();
    let p = run_to_end(lane.as_mut(), ctx.as_mut(), 0, variant)?;
    let dt = t0.elapsed();
    let n = h.plan().kernels.len();
    if variant == Variant::Be && p != n {
        anyhow::bail!("BE run finished with progress {p} of {n}");
    }
    Ok((outputs_of(h, ctx.as_mut())?, dt))
}

fn compare(plan: &reef_plan::Plan, got: &[Vec<u8>], want: &[Vec<u8>]) -> f64 {
    let mut worst = 0.0f64;
    for (o, (g, w)) in plan.outputs.iter().zip(got.iter().zip(want)) {
        let e = if o.dtype == reef_model::DType::F32 {
            rel_l2(bytemuck::cast_slice(g), bytemuck::cast_slice(w))
        } else if g == w {
            0.0
        } else {
            f64::INFINITY
        };
        worst = worst.max(e);
    }
    worst
}

fn load_both(
    g: &Graph,
    dut: &dyn Device,
    cpu: &dyn Device,
) -> Result<(Arc<dyn ModelHandle>, Arc<dyn ModelHandle>)> {
    let plan = Arc::new(reef_plan::compile(g)?);
    Ok((dut.load(plan.clone())?, cpu.load(plan)?))
}

/// How whole models are judged in `tf32` precision: against the
/// TF32-rounding CPU (the `cpu` of [`check_graph`]), with the plain-f32 CPU
/// beside it.
pub(crate) struct Tf32Models<'a> {
    /// The plain-f32 CPU backend.
    f32: &'a dyn Device,
    /// `--tf32-model-factor`: see [`tf32_model_bound`].
    factor: f64,
}

/// The bound of a whole model in `tf32` precision against the TF32-rounding
/// CPU: `--tf32-tol`, or `factor` times `noise`, the CPU's own TF32-vs-f32
/// error on this model and these inputs, whichever is larger (a non-finite
/// `noise` raises nothing).
///
/// Why not `--tf32-tol` alone: the GPU and the CPU accumulate in different
/// orders (and the tensor cores' accumulation truncates), so their f32
/// results differ in the last bits; each such difference that straddles a
/// TF32 rounding boundary rounds the next layer's operand one whole TF32
/// unit (2^-11..2^-10 relative) the other way, and those differences grow
/// the same way through every later layer. After a few layers the two TF32
/// runs differ by about as much as TF32 differs from f32. On the CPU, with
/// every GEMM result jittered by a few ulps, whole zoo models moved by
/// 0.33..0.93 of their TF32-vs-f32 error (resnet50 1.7e-4, vgg19 9.0e-4,
/// mobilenet_v2 9.9e-4, bert_base 5.8e-4) against under 1.3e-6 in f32;
/// two fully independent TF32 roundings would differ by about sqrt(2)
/// times it. The default factor 2 passes that, and a real bug (a wrong
/// tile, split or epilogue) is far above it.
fn tf32_model_bound(tol: f64, factor: f64, noise: f64) -> f64 {
    if noise.is_finite() {
        tol.max(factor * noise)
    } else {
        tol
    }
}

/// Checks one graph: DUT RT vs CPU (within `tol`), DUT BE vs DUT RT
/// (bitwise). With `tf32` (whole models in `tf32` precision, `cpu` rounding
/// GEMM operands to TF32), the model also runs on the plain-f32 CPU: the
/// bound becomes [`tf32_model_bound`], and the DUT's error against f32 is
/// added to the note, for information only.
pub(crate) fn check_graph(
    name: &str,
    g: &Graph,
    dut: &dyn Device,
    cpu: &dyn Device,
    tf32: Option<&Tf32Models>,
    tol: f64,
    rng: &mut ChaCha8Rng,
) -> Result<Row> {
    let (hd, hc) = load_both(g, dut, cpu)?;
    let inputs = random_inputs(g, rng);
    let (want, _) = run_plan(&hc, cpu, &inputs, Variant::Rt)?;
    let (rt, t_rt) = run_plan(&hd, dut, &inputs, Variant::Rt)?;
    let (be, _) = run_plan(&hd, dut, &inputs, Variant::Be)?;
    let err = compare(hd.plan(), &rt, &want);
    let mut bound = tol;
    let mut f32_note = String::new();
    if let Some(t) = tf32 {
        let h = t.f32.load(hd.plan().clone())?;
        let (plain, _) = run_plan(&h, t.f32, &inputs, Variant::Rt)?;
        let vs_f32 = compare(hd.plan(), &rt, &plain);
        let noise = compare(hd.plan(), &want, &plain);
        bound = tf32_model_bound(tol, t.factor, noise);
        f32_note =
            format!(", vs f32: {vs_f32:.1e}, bound {bound:.1e} (CPU TF32 vs f32: {noise:.1e})");
    }
    let same = rt == be;
    let finite = hd.plan().outputs.iter().zip(&rt).all(|(o, b)| {
        o.dtype != reef_model::DType::F32
            || bytemuck::cast_slice::<u8, f32>(b)
                .iter()
                .all(|v| v.is_finite())
    });
    let ok = err <= bound && same && finite;
    let mut note = format!(
        "{} kernels, {:.2} ms",
        hd.plan().kernels.len(),
        t_rt.as_secs_f64() * 1e3
    );
    note.push_str(&f32_note);
    if !same {
        note.push_str(", RT and BE differ");
    }
    if !finite {
        note.push_str(", non-finite output");
    }
    Ok(Row {
        what: name.to_string(),
        err,
        ok,
        note,
    })
}

/// Poisons `ctx` and writes `inputs`.
fn fresh(ctx: &mut dyn reef_exec::Context, inputs: &[Tensor]) -> Result<()> {
    ctx.poison()?;
    for (i, t) in inputs.iter().enumerate() {
        ctx.write_input(i, &t.bytes())?;
    }
    Ok(())
}

/// Starts a whole BE run of `ctx` on `lane` and raises its preemption flag
/// at a random point within 80 % of `full` (the run's time alone), as the
/// scheduler does (`Device::raise_preempt`); runs `then` (an RT launch, or
/// nothing), waits for the BE lane and lowers the flag. Returns the BE
/// progress, the first kernel not complete (the kernel count when the point
/// fell after the run's end).
fn cut_at_random(
    dut: &dyn Device,
    lane: &mut dyn reef_exec::Lane,
    ctx: &mut dyn reef_exec::Context,
    (n, full): (usize, Duration),
    rng: &mut ChaCha8Rng,
    then: impl FnOnce() -> Result<()>,
) -> Result<usize> {
    // The random point is measured from the first launch; spin (sleep
    // overshoots short waits) until it.
    let wait = Duration::from_secs_f64(rng.random_range(0.0..0.8) * full.as_secs_f64());
    let t0 = Instant::now();
    launch_whole(lane, ctx, n, Variant::Be)?;
    while t0.elapsed() < wait {
        std::hint::spin_loop();
    }
    dut.raise_preempt(&mut [&mut *lane])?;
    then()?;
    lane.synchronize()?;
    let p = ctx.progress()?;
    lane.set_preempt(false)?;
    Ok(p)
}

fn outputs_of(h: &Arc<dyn ModelHandle>, ctx: &mut dyn reef_exec::Context) -> Result<Vec<Vec<u8>>> {
    Ok((0..h.plan().outputs.len())
        .map(|i| ctx.read_output(i))
        .collect::<Result<Vec<_>, _>>()?)
}

/// A model loaded on the device under test, fresh random inputs, and its
/// BE run alone: the result and the time it took.
struct Subject {
    h: Arc<dyn ModelHandle>,
    inputs: Vec<Tensor>,
    golden: Vec<Vec<u8>>,
    full: Duration,
    n: usize,
}

impl Subject {
    fn new(g: &Graph, dut: &dyn Device, rng: &mut ChaCha8Rng) -> Result<Subject> {
        let h = dut.load(Arc::new(reef_plan::compile(g)?))?;
        let inputs = random_inputs(g, rng);
        let (golden, full) = run_plan(&h, dut, &inputs, Variant::Be)?;
        let n = h.plan().kernels.len();
        Ok(Subject {
            h,
            inputs,
            golden,
            full,
            n,
        })
    }

    /// The RT run's result alone.
    fn rt_golden(&self, dut: &dyn Device) -> Result<Vec<Vec<u8>>> {
        Ok(run_plan(&self.h, dut, &self.inputs, Variant::Rt)?.0)
    }
}

/// Kills a BE run at random points and resumes it; every result must equal
/// the unpreempted BE run bit for bit.
fn check_preemption(
    name: &str,
    g: &Graph,
    dut: &dyn Device,
    trials: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Row> {
    let s = Subject::new(g, dut, rng)?;
    let (h, inputs, golden, full, n) = (s.h, s.inputs, s.golden, s.full, s.n);
    let mut lane = dut.lane(Priority::Low)?;
    let mut ctx = h.context()?;
    let (mut preempted, mut mismatches, mut runs) = (0, 0, 0);
    // A random point can fall after the run's end (short models, where
    // enqueueing is most of the run); such a run still counts for the
    // comparison, and another one is tried, up to 4x the trials.
    while preempted < trials && runs < 4 * trials.max(1) {
        runs += 1;
        fresh(ctx.as_mut(), &inputs)?;
        let p = cut_at_random(dut, lane.as_mut(), ctx.as_mut(), (n, full), rng, || Ok(()))?;
        if p < n {
            preempted += 1;
            if preempted % 2 == 0 {
                // Kernel-level: kernel p runs again from its first tile.
                run_to_end(lane.as_mut(), ctx.as_mut(), p, Variant::Be)?;
            } else {
                // Tile-level: kernel p keeps the tiles it completed.
                let r = lane.resume(ctx.as_mut())?;
                anyhow::ensure!(r == p, "resume reported kernel {r}, the progress {p}");
                for i in p..n {
                    lane.enqueue(ctx.as_mut(), i, Variant::Be)?;
                }
                lane.synchronize()?;
                let q = ctx.progress()?;
                anyhow::ensure!(q == n, "resumed run ended at progress {q} of {n}");
            }
        }
        if outputs_of(&h, ctx.as_mut())? != golden {
            mismatches += 1;
        }
    }
    Ok(Row {
        what: format!("preempt {name}"),
        err: if mismatches == 0 { 0.0 } else { f64::INFINITY },
        ok: mismatches == 0 && preempted > 0,
        note: format!("{runs} runs, {preempted} preempted mid-run, {mismatches} mismatches"),
    })
}

/// BE work beside RT work, as `reef` mode's beside lanes run it: a BE run is
/// killed at a random point, then an RT run of the model is launched on a
/// high-priority lane and the BE run resumed beside it on its low-priority
/// lane. Both results must equal their runs alone bit for bit.
fn check_beside(
    name: &str,
    g: &Graph,
    dut: &dyn Device,
    trials: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Row> {
    let cut = |l: Lanes<'_>, rng: &mut ChaCha8Rng| -> Result<usize> {
        let p = cut_at_random(dut, l.be_lane, l.be_ctx, (l.n, l.full), rng, || Ok(()))?;
        launch_whole(l.rt_lane, l.rt_ctx, l.n, Variant::Rt)?;
        Ok(p)
    };
    let how = "killed mid-run, then resumed beside RT";
    check_with_rt(format!("beside {name}"), how, g, dut, trials, rng, cut)
}

/// The scheduler's default preemption order (`SchedConfig::early_rt`): a
/// BE run's flag is raised at a random point and an RT run of the model is
/// launched at once, before the BE lane has drained; then the BE run is
/// resumed from its progress. Both results must equal their runs alone bit
/// for bit.
fn check_early(
    name: &str,
    g: &Graph,
    dut: &dyn Device,
    trials: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Row> {
    let cut = |l: Lanes<'_>, rng: &mut ChaCha8Rng| -> Result<usize> {
        let (rt_lane, rt_ctx, n) = (l.rt_lane, l.rt_ctx, l.n);
        let launch_rt = || launch_whole(rt_lane, rt_ctx, n, Variant::Rt);
        cut_at_random(dut, l.be_lane, l.be_ctx, (n, l.full), rng, launch_rt)
    };
    let how = "flagged mid-run with RT launched before the drain";
    check_with_rt(format!("early {name}"), how, g, dut, trials, rng, cut)
}

/// What a cut of a BE run works on: both lanes and contexts of one model,
/// its kernel count and its BE run's time alone.
struct Lanes<'a> {
    rt_lane: &'a mut dyn reef_exec::Lane,
    rt_ctx: &'a mut dyn reef_exec::Context,
    be_lane: &'a mut dyn reef_exec::Lane,
    be_ctx: &'a mut dyn reef_exec::Context,
    n: usize,
    full: Duration,
}

/// Begins a run of `ctx` on `lane` and enqueues all `n` kernels as `variant`.
fn launch_whole(
    lane: &mut dyn reef_exec::Lane,
    ctx: &mut dyn reef_exec::Context,
    n: usize,
    variant: Variant,
) -> Result<()> {
    lane.begin(ctx, 0)?;
    for i in 0..n {
        lane.enqueue(ctx, i, variant)?;
    }
    Ok(())
}

/// `trials` times: fresh inputs in an RT and a BE context of the model,
/// `cut` stops the BE run at a random point with an RT run launched and
/// returns the BE progress; the BE run is resumed from it beside the RT run.
/// Both results must equal their runs alone bit for bit. The row is `what`,
/// its note says how many runs were cut (`how`).
fn check_with_rt(
    what: String,
    how: &str,
    g: &Graph,
    dut: &dyn Device,
    trials: usize,
    rng: &mut ChaCha8Rng,
    mut cut: impl FnMut(Lanes<'_>, &mut ChaCha8Rng) -> Result<usize>,
) -> Result<Row> {
    let s = Subject::new(g, dut, rng)?;
    let rt_golden = s.rt_golden(dut)?;
    let (h, inputs, golden, full, n) = (s.h, s.inputs, s.golden, s.full, s.n);
    let mut rt_lane = dut.lane(Priority::High)?;
    let mut be_lane = dut.lane(Priority::Low)?;
    let (mut rt_ctx, mut be_ctx) = (h.context()?, h.context()?);
    let runs = trials.max(1);
    let (mut cuts, mut mismatches) = (0, 0);
    for _ in 0..runs {
        fresh(rt_ctx.as_mut(), &inputs)?;
        fresh(be_ctx.as_mut(), &inputs)?;
        let lanes = Lanes {
            rt_lane: rt_lane.as_mut(),
            rt_ctx: rt_ctx.as_mut(),
            be_lane: be_lane.as_mut(),
            be_ctx: be_ctx.as_mut(),
            n,
            full,
        };
        let p = cut(lanes, rng)?;
        cuts += usize::from(p < n);
        let r = be_lane.resume(be_ctx.as_mut())?;
        anyhow::ensure!(
            r == p,
            "resume beside RT reported kernel {r}, the progress {p}"
        );
        for i in p..n {
            be_lane.enqueue(be_ctx.as_mut(), i, Variant::Be)?;
        }
        rt_lane.synchronize()?;
        be_lane.synchronize()?;
        let q = be_ctx.progress()?;
        anyhow::ensure!(q == n, "BE run beside RT ended at progress {q} of {n}");
        if outputs_of(&h, be_ctx.as_mut())? != golden
            || outputs_of(&h, rt_ctx.as_mut())? != rt_golden
        {
            mismatches += 1;
        }
    }
    Ok(Row {
        what,
        err: if mismatches == 0 { 0.0 } else { f64::INFINITY },
        ok: mismatches == 0,
        note: format!("{runs} runs, {cuts} {how}; {mismatches} mismatches"),
    })
}

/// Pads an RT run of the model with its own BE kernels (kernel `i` of the BE
/// task beside RT kernel `i`, on a few blocks, so most stop part-done), then
/// finishes the BE task from its progress: the result must equal the
/// unpadded BE run bit for bit, and the RT run the unpadded RT run.
fn check_padding(name: &str, g: &Graph, dut: &dyn Device, rng: &mut ChaCha8Rng) -> Result<Row> {
    let s = Subject::new(g, dut, rng)?;
    let rt_golden = s.rt_golden(dut)?;
    let (h, inputs, golden, n) = (s.h, s.inputs, s.golden, s.n);
    let mut rt_lane = dut.lane(Priority::High)?;
    let mut be_lane = dut.lane(Priority::Low)?;
    let (mut rt_ctx, mut be_ctx) = (h.context()?, h.context()?);
    fresh(rt_ctx.as_mut(), &inputs)?;
    fresh(be_ctx.as_mut(), &inputs)?;
    rt_lane.begin(rt_ctx.as_mut(), 0)?;
    be_lane.begin(be_ctx.as_mut(), 0)?;
    let mut slots = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(s) = rt_lane.pad_slot(rt_ctx.as_mut(), i)? {
            slots.push(s);
        }
        rt_lane.enqueue(rt_ctx.as_mut(), i, Variant::Rt)?;
    }
    anyhow::ensure!(!slots.is_empty(), "the device offers no padding");
    for s in &slots {
        let blocks = rng.random_range(1..=8);
        be_lane.enqueue_pad(be_ctx.as_mut(), s.index, s, blocks, Duration::ZERO)?;
    }
    rt_lane.synchronize()?;
    be_lane.synchronize()?;
    let padded = be_ctx.progress()?;
    let r = be_lane.resume(be_ctx.as_mut())?;
    anyhow::ensure!(
        r == padded,
        "resume after padding reported kernel {r}, the progress {padded}"
    );
    for i in padded..n {
        be_lane.enqueue(be_ctx.as_mut(), i, Variant::Be)?;
    }
    be_lane.synchronize()?;
    let q = be_ctx.progress()?;
    let (be_out, rt_out) = (
        outputs_of(&h, be_ctx.as_mut())?,
        outputs_of(&h, rt_ctx.as_mut())?,
    );
    let ok = q == n && be_out == golden && rt_out == rt_golden;
    Ok(Row {
        what: format!("pad {name}"),
        err: if ok { 0.0 } else { f64::INFINITY },
        ok,
        note: format!(
            "{} RT kernels padded, padding completed {padded} of {n} BE kernels, then resumed to {q}",
            slots.len()
        ),
    })
}

/// Whole-model tolerance on the GPU against the plain-f32 CPU:
/// `--model-tol` is stated for TF32 arithmetic and scaled by each
/// precision's own tolerance (1e-3 -> 1e-4 for tf32x3, 1e-5 for f32). In
/// `tf32` precision models are judged against the TF32-rounding CPU with
/// `--tf32-tol` instead.
fn model_tol(opts: &Options, precision: reef_cuda::Precision) -> f64 {
    opts.model_tol * precision.tolerance() / reef_cuda::Precision::Tf32.tolerance()
}

/// Runs the self-test; returns true when everything passed.
pub fn run(dut: Arc<dyn Device>, opts: &Options) -> Result<bool> {
    for (name, v) in [
        ("--model-tol", opts.model_tol),
        ("--tf32-tol", opts.tf32_tol),
        ("--tf32-model-factor", opts.tf32_model_factor),
    ] {
        anyhow::ensure!(
            v.is_finite() && v >= 0.0,
            "{name} must be a finite number >= 0, got {v}"
        );
    }
    let gpu = dut.kind() == DeviceKind::Cuda;
    println!("device under test: {}", dut.name());
    // The GPU's GEMM precision, as CudaDevice::new read it from the
    // environment; its tolerance applies to tensor-core kernels and models.
    let precision = if gpu {
        let o = reef_cuda::CudaOptions::from_env()?;
        println!(
            "GEMM tactics: {} (REEF_TACTICS = rules | tune | random:SEED; random mixes every \
             kernel's candidate tiles and K splits)",
            o.tactics
        );
        o.precision
    } else {
        reef_cuda::Precision::F32
    };
    // In tf32 the reference is the CPU in the GPU's arithmetic (GEMM
    // operands rounded to TF32); the plain-f32 CPU is kept to report each
    // model's error against f32.
    let tf32 = gpu && precision == reef_cuda::Precision::Tf32;
    let cpu: Arc<dyn Device> = Arc::new(CpuDevice::new(None)?.with_tf32(tf32));
    let f32_cpu = if tf32 {
        Some(CpuDevice::new(None)?)
    } else {
        None
    };
    let tf32_models = f32_cpu.as_ref().map(|d| Tf32Models {
        f32: d,
        factor: opts.tf32_model_factor,
    });
    if tf32 {
        println!(
            "GEMM precision: {precision}: tensor-core kernels and whole models against the CPU \
             with TF32-rounded GEMM operands; kernels within {:.0e} (--tf32-tol), models within \
             that or {} x the CPU's own TF32-vs-f32 error (--tf32-model-factor), whichever is \
             larger; `vs f32` is each model's error against the plain-f32 CPU, for information \
             (REEF_PRECISION = tf32 | tf32x3 | f32)",
            opts.tf32_tol, opts.tf32_model_factor
        );
    } else if gpu {
        println!(
            "GEMM precision: {precision} (tolerance {:.0e} on tensor-core kernels, {:.0e} on \
             whole models, against the f32 CPU; REEF_PRECISION = tf32 | tf32x3 | f32)",
            precision.tolerance(),
            model_tol(opts, precision)
        );
    } else {
        println!("no GPU: checking the CPU backend against itself (RT vs BE, preemption); kernel references run in `cargo test`");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut rows = vec![];
    let mut push = |r: Result<Row>, what: &str| {
        let r = r.unwrap_or_else(|e| Row {
            what: what.to_string(),
            err: f64::INFINITY,
            ok: false,
            note: format!("error: {e:#}"),
        });
        println!(
            "{:<40} {:>10.2e} {:<5} {}",
            r.what,
            r.err,
            if r.ok { "ok" } else { "FAIL" },
            r.note
        );
        rows.push(r);
    };
    println!("{:<40} {:>10} {:<5} note", "check", "rel L2", "ok");
    let case_tol = |c: &cases::Case| match (gpu && c.tf32, tf32) {
        (true, true) => opts.tf32_tol,
        (true, false) => precision.tolerance(),
        (false, _) => 1e-5,
    };
    let all_cases = cases::all(opts.seed)?;
    for c in &all_cases {
        let tol = case_tol(c);
        push(
            check_graph(
                &c.name,
                &c.graph,
                dut.as_ref(),
                cpu.as_ref(),
                None,
                tol,
                &mut rng,
            ),
            &c.name,
        );
    }
    if gpu {
        for row in crate::tactic_sweep::run(&all_cases, cpu.as_ref(), &case_tol, &mut rng) {
            push(row, "tactic sweep");
        }
    }
    let names: Vec<String> = if opts.models.is_empty() {
        reef_zoo::names().iter().map(|s| s.to_string()).collect()
    } else {
        opts.models.clone()
    };
    let tol = match (gpu, tf32) {
        (true, true) => opts.tf32_tol,
        (true, false) => model_tol(opts, precision),
        (false, _) => 1e-5,
    };
    for m in &names {
        let g = reef_zoo::build(m, 1, opts.seed).with_context(|| format!("building {m}"));
        match g {
            Ok(g) => {
                push(
                    check_graph(
                        m,
                        &g,
                        dut.as_ref(),
                        cpu.as_ref(),
                        tf32_models.as_ref(),
                        tol,
                        &mut rng,
                    ),
                    m,
                );
                if opts.preemptions > 0 {
                    push(
                        check_preemption(m, &g, dut.as_ref(), opts.preemptions, &mut rng),
                        m,
                    );
                    push(
                        check_beside(m, &g, dut.as_ref(), opts.preemptions, &mut rng),
                        m,
                    );
                    push(
                        check_early(m, &g, dut.as_ref(), opts.preemptions, &mut rng),
                        m,
                    );
                }
                if gpu {
                    push(check_padding(m, &g, dut.as_ref(), &mut rng), m);
                }
            }
            Err(e) => push(Err(e), m),
        }
    }
    if let Some(first) = names.first() {
        // A batch of three through the scheduler, its model compiled for
        // it beside batch 1 with the same weights.
        let m = names
            .iter()
            .find(|n| n.as_str() == "resnet50")
            .unwrap_or(first);
        push(
            crate::selftest_batch::check_batches(&dut, m, 3, tol, &mut rng),
            &format!("{m} batch 3"),
        );
    }
    if opts.preemptions > 0 && !names.is_empty() {
        // RT and BE through the scheduler: a CNN as RT, BERT (the largest
        // BE outputs) as BE where the list has them.
        let pick = |want: &str, or: &String| {
            names
                .iter()
                .find(|n| n.as_str() == want)
                .unwrap_or(or)
                .clone()
        };
        let rt = pick("resnet50", &names[0]);
        let be = pick("bert_base", &names[names.len() - 1]);
        for mode in ["reset", "reset:drain", "reef", "wait"] {
            let what = format!("scheduler {mode}");
            let spec = mode.parse().map_err(anyhow::Error::msg)?;
            push(
                crate::selftest_sched::check_scheduler(
                    &dut,
                    spec,
                    (&rt, &be),
                    20,
                    Duration::from_millis(4),
                    &mut rng,
                ),
                &what,
            );
        }
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    println!(
        "selftest: {} passed, {} failed",
        rows.len() - failed,
        failed
    );
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The beside and early checks on the CPU backend: BE runs cut (killed,
    /// or flagged with RT launched at once) and resumed beside an RT run (on
    /// the two pools) come out bit-identical.
    #[test]
    fn beside_and_early_checks_pass_on_the_cpu() {
        type Check = fn(&str, &Graph, &dyn Device, usize, &mut ChaCha8Rng) -> Result<Row>;
        let dev = CpuDevice::new(Some(2)).unwrap();
        let g = reef_zoo::build("resnet_tiny", 1, 3).unwrap();
        let checks: [(Check, &str, usize); 2] =
            [(check_beside, "beside", 4), (check_early, "early", 6)];
        for (check, kind, runs) in checks {
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let row = check("resnet_tiny", &g, &dev, runs, &mut rng).unwrap();
            assert!(row.ok, "{kind}: {}", row.note);
            assert_eq!(row.what, format!("{kind} resnet_tiny"));
            assert!(
                row.note.starts_with(&format!("{runs} runs")),
                "{}",
                row.note
            );
        }
    }

    /// The tf32 whole-model path on the CPU: a device in the reference's
    /// arithmetic matches it exactly and gets the f32 comparison in its
    /// note; a device that does not round is off by the CPU's TF32-vs-f32
    /// error itself, which fails once the factor is below 1.
    #[test]
    fn tf32_whole_model_check_runs_on_the_cpu() {
        let tf32 = CpuDevice::new(Some(2)).unwrap().with_tf32(true);
        let plain = CpuDevice::new(Some(2)).unwrap();
        let g = reef_zoo::build("resnet_tiny", 1, 1).unwrap();
        let judge = |factor| Tf32Models {
            f32: &plain,
            factor,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let r = check_graph("m", &g, &tf32, &tf32, Some(&judge(2.0)), 1e-4, &mut rng).unwrap();
        assert!(r.ok && r.err == 0.0, "{}: {}", r.err, r.note);
        assert!(r.note.contains("vs f32: "), "{}", r.note);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let r = check_graph("m", &g, &plain, &tf32, Some(&judge(0.5)), 1e-4, &mut rng).unwrap();
        assert!(!r.ok && r.err > 1e-4, "{}: {}", r.err, r.note);
    }

    #[test]
    fn tf32_model_bound_is_the_larger_of_the_floor_and_the_scaled_noise() {
        assert_eq!(tf32_model_bound(1e-4, 2.0, 1e-3), 2e-3);
        assert_eq!(tf32_model_bound(1e-4, 2.0, 1e-6), 1e-4);
        // Factor 0: the floor alone.
        assert_eq!(tf32_model_bound(1e-4, 0.0, 1e-3), 1e-4);
        // A non-finite CPU comparison (an integer output that differs, a NaN)
        // must not open the bound.
        assert_eq!(tf32_model_bound(1e-4, 2.0, f64::INFINITY), 1e-4);
        assert_eq!(tf32_model_bound(1e-4, 2.0, f64::NAN), 1e-4);
    }
}
