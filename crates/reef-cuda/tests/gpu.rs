//! End-to-end tests on a real GPU (skipped, saying so, without one): kernels
//! against f64 references computed here, RT/BE bit-identity, preemption and
//! exact resumption. Run on the H100 with `cargo test -p reef-cuda --test gpu`.

mod common;

use common::P;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reef_cuda::{cuda_available, CudaDevice, CudaOptions, Precision};
use reef_exec::{Device, Priority, Variant};
use reef_model::{Act, DType};
use reef_plan::kernel::{ConvSpec, KernelOp, MatMulSpec, UnaryOp};
use std::sync::Arc;

fn device(precision: impl Into<Precision>) -> Option<CudaDevice> {
    device_with(CudaOptions {
        precision: precision.into(),
        ..CudaOptions::default()
    })
}

fn device_with(options: CudaOptions) -> Option<CudaDevice> {
    if !cuda_available() {
        println!("SKIP: no CUDA device");
        return None;
    }
    Some(CudaDevice::with_options(0, options).expect("device opens"))
}

/// Relative L2 tolerance of one GEMM kernel against an f64 reference.
fn gemm_tol(p: Precision) -> f64 {
    match p {
        Precision::Tf32 => 5e-3,
        Precision::Tf32x3 | Precision::F32 => 1e-5,
    }
}

fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-30)).sqrt()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Runs the plan once with `variant`; returns every output.
fn run(dev: &CudaDevice, p: &P, inputs: &[Vec<f32>], variant: Variant) -> Vec<Vec<f32>> {
    let model = dev.load(Arc::new(p.plan.clone())).expect("load");
    let mut ctx = model.context().expect("context");
    ctx.poison().unwrap();
    for (i, x) in inputs.iter().enumerate() {
        ctx.write_input(i, &bytes(x)).unwrap();
    }
    let mut lane = dev.lane(Priority::Low).unwrap();
    let done = reef_exec::run::run_to_end(lane.as_mut(), ctx.as_mut(), 0, variant).unwrap();
    assert_eq!(done, p.plan.kernels.len());
    assert_eq!(lane.retired().unwrap(), lane.enqueued());
    (0..p.plan.outputs.len())
        .map(|i| f32s(&ctx.read_output(i).unwrap()))
        .collect()
}

/// out = relu(conv(x, w) + bias + residual), direct f64 reference.
#[allow(clippy::too_many_arguments)]
fn conv_ref(c: &ConvSpec, x: &[f32], w: &[f32], b: &[f32], res: &[f32]) -> Vec<f64> {
    let (cg, kg) = (c.c / c.groups, c.k / c.groups);
    let mut out = vec![0f64; c.n * c.k * c.oh * c.ow];
    for n in 0..c.n {
        for k in 0..c.k {
            let g = k / kg;
            for y in 0..c.oh {
                for xx in 0..c.ow {
                    let mut acc = 0f64;
                    for ci in 0..cg {
                        for r in 0..c.r {
                            for s in 0..c.s {
                                let iy = (y * c.stride[0] + r * c.dilation[0]) as isize
                                    - c.pad[0] as isize;
                                let ix = (xx * c.stride[1] + s * c.dilation[1]) as isize
                                    - c.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= c.h as isize || ix >= c.w as isize {
                                    continue;
                                }
                                let xv = x[((n * c.c + g * cg + ci) * c.h + iy as usize) * c.w
                                    + ix as usize];
                                let wv = w[((k * cg + ci) * c.r + r) * c.s + s];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    let o = ((n * c.k + k) * c.oh + y) * c.ow + xx;
                    out[o] = (acc + b[k] as f64 + res[o] as f64).max(0.0);
                }
            }
        }
    }
    out
}

fn conv_case(rng: &mut StdRng, spec: ConvSpec) -> (P, Vec<Vec<f32>>, Vec<f64>) {
    let mut p = P::default();
    let xlen = spec.n * spec.c * spec.h * spec.w;
    let olen = spec.n * spec.k * spec.oh * spec.ow;
    let x = p.act(DType::F32, xlen);
    let res = p.act(DType::F32, olen);
    p.input(x);
    p.input(res);
    let wv = random(rng, spec.k * spec.c / spec.groups * spec.r * spec.s);
    let bv = random(rng, spec.k);
    let w = p.weight_f32(&wv);
    let b = p.weight_f32(&bv);
    let out = p.act(DType::F32, olen);
    p.output(out);
    p.kernel(KernelOp::Conv(spec.clone()), vec![x, w, b, res], out);
    let (xv, rv) = (random(rng, xlen), random(rng, olen));
    let want = conv_ref(&spec, &xv, &wv, &bv, &rv);
    (p, vec![xv, rv], want)
}

fn spec(
    n: usize,
    c: usize,
    k: usize,
    hw: usize,
    rs: usize,
    stride: usize,
    groups: usize,
) -> ConvSpec {
    let pad = rs / 2;
    let o = (hw + 2 * pad - rs) / stride + 1;
    ConvSpec {
        n,
        c,
        h: hw,
        w: hw,
        k,
        r: rs,
        s: rs,
        oh: o,
        ow: o,
        stride: [stride, stride],
        pad: [pad, pad],
        dilation: [1, 1],
        groups,
        has_bias: true,
        has_residual: true,
        act: Act::Relu,
    }
}

#[test]
fn convolutions_match_the_reference_and_rt_equals_be() {
    let mut rng = StdRng::seed_from_u64(7);
    for prec in Precision::ALL {
        let Some(dev) = device(prec) else { return };
        let tol = gemm_tol(prec);
        for s in [
            spec(2, 37, 70, 11, 3, 1, 1),   // ragged tiles
            spec(1, 64, 64, 9, 3, 2, 4),    // grouped, strided
            spec(2, 24, 24, 10, 3, 1, 24),  // depthwise
            spec(1, 20, 96, 7, 1, 1, 1),    // 1x1
            spec(1, 256, 70, 7, 3, 1, 1),   // split-K (K = 2304 over 2 tiles)
            spec(1, 128, 40, 9, 3, 2, 1),   // split-K, strided gather
            spec(2, 64, 96, 8, 1, 1, 1),    // 1x1, 16-byte B rows
            spec(1, 1024, 72, 14, 1, 1, 1), // 1x1, 16-byte B rows, split-K
            spec(1, 3, 64, 30, 7, 2, 1),    // 7x7 stem: K = 147, scalar A
        ] {
            let (p, inputs, want) = conv_case(&mut rng, s.clone());
            let rt = run(&dev, &p, &inputs, Variant::Rt);
            let be = run(&dev, &p, &inputs, Variant::Be);
            let err = rel_l2(&rt[0], &want);
            assert!(err < tol, "{prec} {s:?}: rel L2 {err}");
            assert_eq!(
                rt[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                be[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "RT and BE differ"
            );
        }
    }
}

#[test]
fn batched_matmul_matches_the_reference() {
    let mut rng = StdRng::seed_from_u64(11);
    for prec in Precision::ALL {
        let Some(dev) = device(prec) else { return };
        let (batch, m, n, k) = (3usize, 70usize, 45usize, 33usize);
        let mut p = P::default();
        // A stored as [batch, k, m] (read transposed), B shared [k, n].
        let a = p.act(DType::F32, batch * k * m);
        let res = p.act(DType::F32, batch * m * n);
        p.input(a);
        p.input(res);
        let bv = random(&mut rng, k * n);
        let biasv = random(&mut rng, n);
        let b = p.weight_f32(&bv);
        let bias = p.weight_f32(&biasv);
        let out = p.act(DType::F32, batch * m * n);
        p.output(out);
        let ms = MatMulSpec {
            batch: vec![batch],
            a_batch_strides: vec![k * m],
            b_batch_strides: vec![0],
            m,
            n,
            k,
            lda_m: 1,
            lda_k: m,
            ldb_k: n,
            ldb_n: 1,
            alpha: 0.5,
            beta: 2.0,
            has_bias: true,
            bias_stride_m: 0,
            bias_stride_n: 1,
            bias_stride_batch: 0,
            has_residual: true,
            act: Act::Tanh,
        };
        p.kernel(KernelOp::MatMul(ms), vec![a, b, bias, res], out);
        let (av, rv) = (
            random(&mut rng, batch * k * m),
            random(&mut rng, batch * m * n),
        );
        let mut want = vec![0f64; batch * m * n];
        for bi in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0f64;
                    for kk in 0..k {
                        acc += av[bi * k * m + kk * m + i] as f64 * bv[kk * n + j] as f64;
                    }
                    let o = (bi * m + i) * n + j;
                    want[o] = (0.5 * acc + 2.0 * biasv[j] as f64 + rv[o] as f64).tanh();
                }
            }
        }
        let got = run(&dev, &p, &[av, rv], Variant::Be);
        let err = rel_l2(&got[0], &want);
        let tol = gemm_tol(prec);
        assert!(err < tol, "{prec}: rel L2 {err}");
    }
}

#[test]
fn softmax_layernorm_and_concat_match_the_reference() {
    let Some(dev) = device(true) else { return };
    let mut rng = StdRng::seed_from_u64(3);
    let (rows, cols) = (37usize, 300usize);
    let mut p = P::default();
    let x = p.act(DType::F32, rows * cols);
    p.input(x);
    let g = random(&mut rng, cols);
    let bt = random(&mut rng, cols);
    let gamma = p.weight_f32(&g);
    let beta = p.weight_f32(&bt);
    let sm = p.act(DType::F32, rows * cols);
    let ln = p.act(DType::F32, rows * cols);
    let cat = p.act(DType::F32, 2 * rows * cols);
    p.output(sm);
    p.output(ln);
    p.output(cat);
    p.kernel(
        KernelOp::Softmax {
            outer: rows,
            axis: cols,
            inner: 1,
            pre: Default::default(),
        },
        vec![x],
        sm,
    );
    p.kernel(
        KernelOp::LayerNorm {
            rows,
            cols,
            eps: 1e-5,
        },
        vec![x, gamma, beta],
        ln,
    );
    // Concatenate along the columns: [rows, 2*cols].
    p.kernel(
        KernelOp::Concat {
            outer: rows,
            inner: 1,
            lens: vec![cols, cols],
            elem_size: 4,
        },
        vec![sm, ln],
        cat,
    );
    let xv: Vec<f32> = random(&mut rng, rows * cols)
        .iter()
        .map(|v| v * 4.0)
        .collect();
    let got = run(&dev, &p, std::slice::from_ref(&xv), Variant::Be);
    let (mut wsm, mut wln) = (vec![0f64; rows * cols], vec![0f64; rows * cols]);
    for r in 0..rows {
        let row: Vec<f64> = xv[r * cols..(r + 1) * cols]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let mx = row.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = row.iter().map(|v| (v - mx).exp()).sum();
        let mean = row.iter().sum::<f64>() / cols as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / cols as f64;
        for c in 0..cols {
            wsm[r * cols + c] = (row[c] - mx).exp() / sum;
            wln[r * cols + c] = (row[c] - mean) / (var + 1e-5).sqrt() * g[c] as f64 + bt[c] as f64;
        }
    }
    assert!(rel_l2(&got[0], &wsm) < 1e-5);
    assert!(rel_l2(&got[1], &wln) < 1e-5);
    for r in 0..rows {
        assert_eq!(
            got[2][r * 2 * cols..r * 2 * cols + cols],
            got[0][r * cols..(r + 1) * cols]
        );
        assert_eq!(
            got[2][r * 2 * cols + cols..(r + 1) * 2 * cols],
            got[1][r * cols..(r + 1) * cols]
        );
    }
}

/// A chain of `len` large element-wise kernels (each reads the previous output).
fn chain(len: usize, elems: usize) -> P {
    let mut p = P::default();
    let mut prev = p.act(DType::F32, elems);
    p.input(prev);
    for i in 0..len {
        let next = p.act(DType::F32, elems);
        let op = if i % 2 == 0 {
            UnaryOp::Act(Act::Tanh)
        } else {
            UnaryOp::Sqrt
        };
        p.kernel(KernelOp::Unary { op, n: elems }, vec![prev], next);
        prev = next;
    }
    p.output(prev);
    p
}

#[test]
fn preempted_lanes_report_exact_progress_and_resume() {
    let Some(dev) = device(true) else { return };
    let (len, elems) = (40usize, 1 << 22);
    let (mut ctx, xv, reference) = chain_with_reference(&dev, 5, len, elems);
    ctx.write_input(0, &bytes(&xv)).unwrap();
    let mut lane = dev.lane(Priority::Low).unwrap();

    // Flag raised before anything runs: every BE kernel exits, progress stays.
    lane.set_preempt(true).unwrap();
    lane.begin(ctx.as_mut(), 0).unwrap();
    for i in 0..len {
        lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
    }
    lane.synchronize().unwrap();
    assert_eq!(ctx.progress().unwrap(), 0);
    lane.set_preempt(false).unwrap();

    // Preempt mid-run, then resume from the reported progress.
    lane.begin(ctx.as_mut(), 0).unwrap();
    for i in 0..len {
        lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_micros(300));
    lane.set_preempt(true).unwrap();
    lane.synchronize().unwrap();
    let at = ctx.progress().unwrap();
    println!("preempted at kernel {at} of {len}");
    assert!(at <= len);
    lane.set_preempt(false).unwrap();
    lane.begin(ctx.as_mut(), at).unwrap();
    for i in at..len {
        lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
    }
    lane.synchronize().unwrap();
    assert_eq!(ctx.progress().unwrap(), len);
    assert_eq!(lane.retired().unwrap(), lane.enqueued());
    let got = f32s(&ctx.read_output(0).unwrap());
    assert!(got
        .iter()
        .zip(&reference)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// A task context of a [`chain`] of `len` kernels over `elems` elements,
/// loaded on `dev`, its input random and positive (from `seed`).
fn chain_context(
    dev: &CudaDevice,
    seed: u64,
    len: usize,
    elems: usize,
) -> Box<dyn reef_exec::Context> {
    let xv = positive_input(seed, elems);
    let model = dev.load(Arc::new(chain(len, elems).plan)).unwrap();
    let mut ctx = model.context().unwrap();
    ctx.write_input(0, &bytes(&xv)).unwrap();
    ctx
}

/// `elems` random positive values (from `seed`): a [`chain`]'s input.
fn positive_input(seed: u64, elems: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    random(&mut rng, elems)
        .iter()
        .map(|v| v.abs() + 0.1)
        .collect()
}

/// A [`chain`] of `len` kernels over `elems` elements loaded on `dev` (a
/// fresh task context, its input not yet written), a random positive input
/// (from `seed`) and the chain's RT result for it.
fn chain_with_reference(
    dev: &CudaDevice,
    seed: u64,
    len: usize,
    elems: usize,
) -> (Box<dyn reef_exec::Context>, Vec<f32>, Vec<f32>) {
    let p = chain(len, elems);
    let xv = positive_input(seed, elems);
    let reference = run(dev, &p, std::slice::from_ref(&xv), Variant::Rt).remove(0);
    let model = dev.load(Arc::new(p.plan)).unwrap();
    let ctx = model.context().unwrap();
    (ctx, xv, reference)
}

#[test]
fn the_lane_timer_times_the_kernels_between_its_marks() {
    let Some(dev) = device(true) else { return };
    let (len, elems) = (8usize, 1 << 22);
    let mut ctx = chain_context(&dev, 9, len, elems);
    let mut lane = dev.lane(Priority::High).unwrap();
    assert_eq!(lane.read_timer().unwrap(), None, "no timer started");
    let mut time = |upto: usize| {
        lane.start_timer().unwrap();
        lane.begin(ctx.as_mut(), 0).unwrap();
        for i in 0..len {
            lane.enqueue(ctx.as_mut(), i, Variant::Rt).unwrap();
            if i + 1 == upto {
                lane.stop_timer().unwrap();
            }
        }
        let t0 = std::time::Instant::now();
        lane.synchronize().unwrap();
        let host = t0.elapsed();
        let d = lane.read_timer().unwrap().expect("the stop was reached");
        assert_eq!(lane.read_timer().unwrap(), None, "a timing is read once");
        (d, host)
    };
    let _ = time(1); // warm-up
    let (one, _) = time(1);
    let (all, host) = time(len);
    println!("first kernel {one:?}, all {len} kernels {all:?} (host wait {host:?})");
    // Each kernel streams 32 MiB in and out: microseconds, not nothing.
    assert!(one > std::time::Duration::from_micros(2), "{one:?}");
    assert!(all > one * 3, "{all:?} against {one:?}");
    assert!(all < std::time::Duration::from_secs(1), "{all:?}");
}

#[test]
fn the_drain_timer_times_a_flagged_lane_to_its_end() {
    let Some(dev) = device(true) else { return };
    // 40 kernels of 64 MiB in and out: a millisecond and more to run, where
    // a flagged lane's drain (every queued kernel dispatched and leaving at
    // its entry check) takes tens of microseconds.
    let (len, elems) = (40usize, 1 << 24);
    let mut ctx = chain_context(&dev, 13, len, elems);
    let mut lane = dev.lane(Priority::Low).unwrap();
    assert_eq!(lane.read_drain_timer().unwrap(), None, "no drain timed");
    // The lane's remaining work, flagged (`raise`) or left to run.
    let mut drain = |raise: bool| {
        lane.begin(ctx.as_mut(), 0).unwrap();
        for i in 0..len {
            lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
        if raise {
            dev.raise_preempt(&mut [&mut *lane]).unwrap();
        }
        lane.start_drain_timer().unwrap();
        let t0 = std::time::Instant::now();
        lane.synchronize().unwrap();
        let host = t0.elapsed();
        let d = lane.read_drain_timer().unwrap().expect("the lane is idle");
        assert_eq!(lane.read_drain_timer().unwrap(), None, "read once");
        lane.set_preempt(false).unwrap();
        (d, host)
    };
    let _ = drain(true); // warm-up
    let (flagged, host) = drain(true);
    let (unflagged, _) = drain(false);
    println!("drain flagged {flagged:?} (host wait {host:?}), unflagged {unflagged:?}");
    // The flag cuts the kernels short (every flagged block is still
    // dispatched: 40 x 16384 of them took 468 us on the H100 against 2.09
    // ms unflagged, Session 21, and 880 us when each also counted itself
    // out for the told word, Session 23); the device's time lies within
    // the host's wait plus the flag's submission.
    assert!(flagged * 2 < unflagged, "{flagged:?} against {unflagged:?}");
    assert!(
        flagged < host + std::time::Duration::from_millis(1),
        "{flagged:?} against {host:?}"
    );
}

#[test]
fn the_told_word_says_when_a_lane_drained_and_never_early() {
    let Some(dev) = device_with(CudaOptions {
        be_told: true,
        ..CudaOptions::default()
    }) else {
        return;
    };
    // 40 kernels of 64 MiB in and out: milliseconds of work.
    let (len, elems) = (40usize, 1 << 24);
    let mut ctx = chain_context(&dev, 17, len, elems);
    let mut lane = dev.lane(Priority::Low).unwrap();
    let wait = |lane: &mut Box<dyn reef_exec::Lane>, drained: bool| {
        let t0 = std::time::Instant::now();
        loop {
            let done = if drained {
                lane.drained().unwrap()
            } else {
                lane.is_idle().unwrap()
            };
            if done {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(5),
                "never drained"
            );
        }
    };
    for raise in [false, true, false, true] {
        lane.begin(ctx.as_mut(), 0).unwrap();
        for i in 0..len {
            lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
        }
        assert!(!lane.drained().unwrap(), "drained with 40 kernels queued");
        if raise {
            std::thread::sleep(std::time::Duration::from_micros(200));
            dev.raise_preempt(&mut [&mut *lane]).unwrap();
        }
        let told = wait(&mut lane, true);
        // Drained means the last launch left the GPU: the stream has
        // nothing left to run but its own bookkeeping.
        let idle = wait(&mut lane, false);
        println!("raise {raise}: drained after {told:?}, stream idle {idle:?} later");
        assert!(
            idle < std::time::Duration::from_millis(1),
            "the stream ran on for {idle:?} after the lane drained"
        );
        lane.synchronize().unwrap();
        let at = ctx.progress().unwrap();
        if raise {
            assert!(at < len, "the flag stopped nothing ({at} of {len})");
            lane.set_preempt(false).unwrap();
        } else {
            assert_eq!(at, len, "drained before the last kernel completed");
        }
    }
}

#[test]
fn the_relay_raises_flags_and_never_after_their_clear() {
    relay_raises_flags_and_never_after_their_clear(reef_cuda::precision::RaiseOp::Relay);
}

#[test]
fn the_relay_run_once_raises_flags_and_never_after_their_clear() {
    relay_raises_flags_and_never_after_their_clear(reef_cuda::precision::RaiseOp::RelayOnce);
}

fn relay_raises_flags_and_never_after_their_clear(raise: reef_cuda::precision::RaiseOp) {
    let Some(dev) = device_with(CudaOptions {
        raise,
        ..CudaOptions::default()
    }) else {
        return;
    };
    // 40 kernels of 64 MiB in and out: milliseconds of work.
    let (len, elems) = (40usize, 1 << 24);
    let (mut ctx, xv, reference) = chain_with_reference(&dev, 23, len, elems);
    let mut lane = dev.lane(Priority::Low).unwrap();
    let before = dev.relay_counts().expect("the relay is on");

    // Preempted mid-run by relayed raises, resumed until complete: the
    // result is the unpreempted one's, bit for bit.
    let mut preempted = 0;
    for round in 0..20 {
        ctx.write_input(0, &bytes(&xv)).unwrap();
        let mut at = 0;
        lane.begin(ctx.as_mut(), 0).unwrap();
        for i in 0..len {
            lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_micros(100 + 37 * round));
        dev.raise_preempt(&mut [&mut *lane]).unwrap();
        lane.synchronize().unwrap();
        let stopped = ctx.progress().unwrap();
        preempted += usize::from(stopped < len);
        while at < len {
            at = ctx.progress().unwrap();
            lane.set_preempt(false).unwrap();
            lane.begin(ctx.as_mut(), at).unwrap();
            for i in at..len {
                lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
            }
            lane.synchronize().unwrap();
            at = ctx.progress().unwrap();
        }
        let got = f32s(&ctx.read_output(0).unwrap());
        assert!(
            got.iter()
                .zip(&reference)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "round {round}: the resumed result differs"
        );
    }
    let mid = dev.relay_counts().unwrap();
    println!(
        "{raise:?}, preempting: {before:?} -> {mid:?}; {preempted} of 20 rounds stopped early"
    );
    assert!(
        mid.relayed >= before.relayed + 10,
        "few raises were relayed: {mid:?}"
    );
    assert!(
        preempted >= 10,
        "relayed raises stopped {preempted} of 20 runs"
    );

    // Raise and clear at once, then run kernels behind the clear: a relayed
    // raise landing after the clear would stop them.
    for round in 0..300 {
        lane.begin(ctx.as_mut(), 0).unwrap();
        lane.enqueue(ctx.as_mut(), 0, Variant::Be).unwrap();
        dev.raise_preempt(&mut [&mut *lane]).unwrap();
        lane.set_preempt(false).unwrap();
        lane.begin(ctx.as_mut(), 0).unwrap();
        for i in 0..3 {
            lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
        }
        lane.synchronize().unwrap();
        assert_eq!(
            ctx.progress().unwrap(),
            3,
            "round {round}: a kernel behind the clear stopped"
        );
    }
    let end = dev.relay_counts().unwrap();
    println!("{raise:?}, raise then clear: {mid:?} -> {end:?}");
    // Run once, each raise meets an instance that the launch just before it
    // started, which is often not running yet (the driver raises then).
    let least = if raise.relay_once() == Some(true) {
        1
    } else {
        150
    };
    assert!(
        end.relayed >= mid.relayed + least,
        "few raises were relayed: {end:?}"
    );
}

/// A batched matmul case: A stored [batch, m, k] (or [batch, k, m] when
/// `a_t`), B shared [k, n] (or [n, k] when `b_t`, as nn.Linear weights);
/// out = A B + bias[n] (no activation).
fn matmul_case(
    rng: &mut StdRng,
    (batch, m, n, k): (usize, usize, usize, usize),
    (a_t, b_t): (bool, bool),
) -> (P, Vec<Vec<f32>>, Vec<f64>) {
    let mut p = P::default();
    let a = p.act(DType::F32, batch * m * k);
    p.input(a);
    let bv = random(rng, k * n);
    let biasv = random(rng, n);
    let b = p.weight_f32(&bv);
    let bias = p.weight_f32(&biasv);
    let out = p.act(DType::F32, batch * m * n);
    p.output(out);
    let (lda_m, lda_k) = if a_t { (1, m) } else { (k, 1) };
    let (ldb_k, ldb_n) = if b_t { (1, k) } else { (n, 1) };
    let ms = MatMulSpec {
        batch: vec![batch],
        a_batch_strides: vec![m * k],
        b_batch_strides: vec![0],
        m,
        n,
        k,
        lda_m,
        lda_k,
        ldb_k,
        ldb_n,
        alpha: 1.0,
        beta: 1.0,
        has_bias: true,
        bias_stride_m: 0,
        bias_stride_n: 1,
        bias_stride_batch: 0,
        has_residual: false,
        act: Act::None,
    };
    p.kernel(KernelOp::MatMul(ms), vec![a, b, bias], out);
    let av = random(rng, batch * m * k);
    let mut want = vec![0f64; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f64;
                for kk in 0..k {
                    let ai = if a_t { kk * m + i } else { i * k + kk };
                    acc += av[bi * m * k + ai] as f64 * bv[kk * ldb_k + j * ldb_n] as f64;
                }
                want[(bi * m + i) * n + j] = acc + biasv[j] as f64;
            }
        }
    }
    (p, vec![av], want)
}

#[test]
fn split_k_matmuls_match_and_rt_equals_be() {
    let mut rng = StdRng::seed_from_u64(13);
    for prec in Precision::ALL {
        let Some(dev) = device(prec) else { return };
        let tol = gemm_tol(prec);
        for (dims, t) in [
            ((1, 70, 45, 700), (false, false)), // split-K, ragged, scalar B tail
            ((2, 64, 96, 1000), (true, false)), // split-K, transposed A (scalar A)
            ((4, 130, 129, 20), (false, false)), // no split (short K), ragged edges
            ((1, 40, 72, 768), (false, true)),  // Linear: K-major B, 16-byte copies
            ((1, 33, 50, 301), (false, true)),  // K-major B, 4-byte copies
        ] {
            let (p, inputs, want) = matmul_case(&mut rng, dims, t);
            let rt = run(&dev, &p, &inputs, Variant::Rt);
            let be = run(&dev, &p, &inputs, Variant::Be);
            let err = rel_l2(&rt[0], &want);
            assert!(err < tol, "{prec} {dims:?}: rel L2 {err}");
            assert!(
                rt[0]
                    .iter()
                    .zip(&be[0])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "RT and BE differ for {dims:?}"
            );
            // Re-running gives the same bits (fixed reduction order).
            let again = run(&dev, &p, &inputs, Variant::Rt);
            assert!(rt[0]
                .iter()
                .zip(&again[0])
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}

/// A chain of `len` split-K convolutions (512 channels, 7x7, 3x3: 16 splits).
fn split_chain(rng: &mut StdRng, len: usize) -> P {
    let mut p = P::default();
    let c = 512;
    let mut prev = p.act(DType::F32, c * 49);
    p.input(prev);
    let scale = 1.0 / ((c * 9) as f32).sqrt();
    let wv: Vec<f32> = random(rng, c * c * 9)
        .iter()
        .map(|v| v * scale * 1.7)
        .collect();
    let w = p.weight_f32(&wv);
    for _ in 0..len {
        let next = p.act(DType::F32, c * 49);
        let mut s = spec(1, c, c, 7, 3, 1, 1);
        s.has_bias = false;
        s.has_residual = false;
        s.act = Act::Tanh;
        p.kernel(KernelOp::Conv(s), vec![prev, w], next);
        prev = next;
    }
    p.output(prev);
    p
}

#[test]
fn preempted_split_k_convs_resume_bit_identically() {
    let Some(dev) = device(true) else { return };
    let mut rng = StdRng::seed_from_u64(17);
    let len = 60;
    let p = split_chain(&mut rng, len);
    let xv = random(&mut rng, 512 * 49);
    let reference = run(&dev, &p, std::slice::from_ref(&xv), Variant::Rt);
    let model = dev.load(Arc::new(p.plan.clone())).unwrap();
    let mut ctx = model.context().unwrap();
    let mut lane = dev.lane(Priority::Low).unwrap();
    for delay_us in [20u64, 150, 400] {
        ctx.poison().unwrap();
        ctx.write_input(0, &bytes(&xv)).unwrap();
        lane.begin(ctx.as_mut(), 0).unwrap();
        for i in 0..len {
            lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        lane.set_preempt(true).unwrap();
        lane.synchronize().unwrap();
        let at = ctx.progress().unwrap();
        println!("delay {delay_us} us: preempted at kernel {at} of {len}");
        lane.set_preempt(false).unwrap();
        if delay_us == 150 {
            // Tile-level: the kernel keeps its completed tiles, or runs again
            // from its first tile when a block abandoned one midway.
            assert_eq!(
                lane.resume(ctx.as_mut()).unwrap(),
                at,
                "resume reports the progress"
            );
            for i in at..len {
                lane.enqueue(ctx.as_mut(), i, Variant::Be).unwrap();
            }
            lane.synchronize().unwrap();
            assert_eq!(ctx.progress().unwrap(), len, "tile-level resume from {at}");
        } else {
            let done =
                reef_exec::run::run_to_end(lane.as_mut(), ctx.as_mut(), at, Variant::Be).unwrap();
            assert_eq!(done, len);
        }
        let got = f32s(&ctx.read_output(0).unwrap());
        assert!(
            got.iter()
                .zip(&reference[0])
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "resumed result differs after preemption at {at}"
        );
    }
}

/// Runs `p` on the CPU backend (exact f32); returns output 0.
fn run_cpu(p: &P, inputs: &[Vec<f32>]) -> Vec<f32> {
    run_cpu_with(p, inputs, false)
}

/// Runs `p` on the CPU backend, with GEMM operands rounded to TF32 when
/// `tf32` (`CpuDevice::with_tf32`); returns output 0.
fn run_cpu_with(p: &P, inputs: &[Vec<f32>], tf32: bool) -> Vec<f32> {
    let cpu = reef_exec::cpu::CpuDevice::new(None)
        .expect("CPU device")
        .with_tf32(tf32);
    let model = cpu.load(Arc::new(p.plan.clone())).expect("CPU load");
    let mut ctx = model.context().expect("CPU context");
    for (i, x) in inputs.iter().enumerate() {
        ctx.write_input(i, &bytes(x)).unwrap();
    }
    let mut lane = cpu.lane(Priority::High).unwrap();
    reef_exec::run::run_to_end(lane.as_mut(), ctx.as_mut(), 0, Variant::Rt).unwrap();
    f32s(&ctx.read_output(0).unwrap())
}

/// Split TF32 against the CPU backend on random data with long K (where
/// plain TF32 drifts most): a 3x3 convolution with K = 512 * 9 = 4608
/// (split-K) and a Linear-style matmul with K = 3072 (K-major B). TF32 is
/// run too, to show the gap.
#[test]
fn tf32x3_conv_and_matmul_match_the_cpu_backend() {
    let mut rng = StdRng::seed_from_u64(17);
    let Some(x3) = device(Precision::Tf32x3) else {
        return;
    };
    let Some(tf32) = device(Precision::Tf32) else {
        return;
    };
    let conv = conv_case(&mut rng, spec(1, 512, 128, 14, 3, 1, 1));
    let mm = matmul_case(&mut rng, (2, 96, 160, 3072), (false, true));
    for (name, (p, inputs, _)) in [("conv K=4608", conv), ("matmul K=3072", mm)] {
        let cpu: Vec<f64> = run_cpu(&p, &inputs).iter().map(|&v| v as f64).collect();
        let err_x3 = rel_l2(&run(&x3, &p, &inputs, Variant::Rt)[0], &cpu);
        let be = run(&x3, &p, &inputs, Variant::Be);
        let err_be = rel_l2(&be[0], &cpu);
        let err_tf32 = rel_l2(&run(&tf32, &p, &inputs, Variant::Rt)[0], &cpu);
        println!("{name}: rel L2 vs CPU: tf32x3 {err_x3:.2e}, tf32 {err_tf32:.2e}");
        assert!(err_x3 <= 1e-5, "{name}: tf32x3 rel L2 {err_x3}");
        assert_eq!(err_x3, err_be, "{name}: RT and BE differ");
        assert!(
            err_x3 * 10.0 < err_tf32,
            "{name}: tf32x3 ({err_x3}) not clearly better than tf32 ({err_tf32})"
        );
    }
}

/// TF32 against the CPU backend in the same arithmetic
/// (`CpuDevice::with_tf32`: the same operands rounded the same way): only
/// the f32 accumulation differs (its order, split-K, and the tensor cores'
/// truncating adds, which a CPU emulation puts near 1e-6 at K = 288 and
/// 1.6e-5 at K = 4608), so the GPU is much closer to that reference than
/// to the plain-f32 one. Depthwise convolutions (direct f32 kernels) are
/// not rounded on either side.
#[test]
fn tf32_gemms_match_the_tf32_cpu_backend() {
    let mut rng = StdRng::seed_from_u64(19);
    let Some(dev) = device(Precision::Tf32) else {
        return;
    };
    let cases = [
        (
            "conv 3x3 K=288",
            conv_case(&mut rng, spec(2, 32, 64, 12, 3, 1, 1)),
        ),
        (
            "conv 3x3 K=4608 split-K",
            conv_case(&mut rng, spec(1, 512, 128, 14, 3, 1, 1)),
        ),
        ("conv 1x1", conv_case(&mut rng, spec(2, 64, 96, 8, 1, 1, 1))),
        (
            "conv grouped",
            conv_case(&mut rng, spec(1, 64, 64, 9, 3, 2, 4)),
        ),
        (
            "matmul K=3072",
            matmul_case(&mut rng, (2, 96, 160, 3072), (false, true)),
        ),
        (
            "matmul A^T",
            matmul_case(&mut rng, (3, 70, 45, 33), (true, false)),
        ),
    ];
    for (name, (p, inputs, _)) in cases {
        let gpu = &run(&dev, &p, &inputs, Variant::Rt)[0];
        let as_f64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
        let err_tf32 = rel_l2(gpu, &as_f64(run_cpu_with(&p, &inputs, true)));
        let err_f32 = rel_l2(gpu, &as_f64(run_cpu_with(&p, &inputs, false)));
        println!("{name}: rel L2 vs TF32 CPU {err_tf32:.2e}, vs f32 CPU {err_f32:.2e}");
        assert!(err_tf32 <= 5e-5, "{name}: vs TF32 CPU {err_tf32}");
        assert!(
            err_tf32 * 3.0 < err_f32,
            "{name}: not clearly closer to the TF32 CPU ({err_tf32}) than to f32 ({err_f32})"
        );
    }
    let (p, inputs, _) = conv_case(&mut rng, spec(2, 24, 24, 10, 3, 1, 24));
    let gpu = &run(&dev, &p, &inputs, Variant::Rt)[0];
    let (t, f) = (
        run_cpu_with(&p, &inputs, true),
        run_cpu_with(&p, &inputs, false),
    );
    assert_eq!(t, f, "depthwise: the TF32 CPU rounded a direct convolution");
    let err = rel_l2(gpu, &t.into_iter().map(f64::from).collect::<Vec<_>>());
    assert!(err <= 1e-5, "depthwise: vs CPU {err}");
}

/// GatherElements (rank 3, axis 1, indices shorter than the data off the
/// axis, negative and out-of-range indices) against a direct reference; RT
/// and BE bit-identical.
#[test]
fn gather_elements_matches_the_reference() {
    let Some(dev) = device(Precision::F32) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(29);
    let (ds, is, axis) = ([3usize, 7, 5], [2usize, 9, 4], 1usize);
    let n: usize = is.iter().product();
    let mut idx: Vec<i64> = (0..n).map(|_| rng.random_range(-7i64..7)).collect();
    idx[5] = 7; // past the end: 0
    idx[11] = -8; // before the start: 0
    let mut p = P::default();
    let x = p.act(DType::F32, ds.iter().product());
    p.input(x);
    let ib = p.weight(DType::I64, n);
    if let reef_plan::plan::Loc::Weight(off) = p.plan.buffers[ib].loc {
        for (i, v) in idx.iter().enumerate() {
            std::sync::Arc::make_mut(&mut p.plan.weights)[off + 8 * i..off + 8 * i + 8]
                .copy_from_slice(&v.to_le_bytes());
        }
    }
    let out = p.act(DType::F32, n);
    p.output(out);
    p.kernel(
        KernelOp::GatherElements {
            shape: is.to_vec(),
            data_shape: ds.to_vec(),
            axis,
            elem_size: 4,
        },
        vec![x, ib],
        out,
    );
    let xv = random(&mut rng, ds.iter().product());
    let mut want = Vec::with_capacity(n);
    for a in 0..is[0] {
        for b in 0..is[1] {
            for c in 0..is[2] {
                let i = idx[(a * is[1] + b) * is[2] + c];
                let i = if i < 0 { i + ds[1] as i64 } else { i };
                want.push(if (0..ds[1] as i64).contains(&i) {
                    xv[(a * ds[1] + i as usize) * ds[2] + c]
                } else {
                    0.0
                });
            }
        }
    }
    let rt = run(&dev, &p, std::slice::from_ref(&xv), Variant::Rt);
    let be = run(&dev, &p, std::slice::from_ref(&xv), Variant::Be);
    assert_eq!(rt, be, "RT and BE differ");
    assert_eq!(rt[0], want, "GatherElements differs from the reference");
}

/// The SM clock sampler reads GPU 0's clock through NVML at its period, and
/// hands back the samples of a window (none before it started).
#[test]
fn the_clock_sampler_reads_the_sm_clock() {
    if !cuda_available() {
        println!("SKIP: no CUDA device");
        return;
    }
    let before = std::time::Instant::now();
    let s = reef_cuda::clocks::ClockSampler::start(0, std::time::Duration::from_millis(2))
        .expect("NVML reads the clock");
    let from = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(60));
    let to = std::time::Instant::now();
    let got = s.between(from, to);
    assert!(got.len() >= 5, "{} samples in 60 ms at 2 ms", got.len());
    assert!(
        got.iter().all(|&mhz| (100..=4000).contains(&mhz)),
        "{got:?}"
    );
    assert!(s
        .between(before - std::time::Duration::from_secs(1), before)
        .is_empty());
}

/// The CUDA model behind a handle.
fn cuda_model(m: &Arc<dyn reef_exec::ModelHandle>) -> &reef_cuda::CudaModel {
    m.as_any()
        .downcast_ref::<reef_cuda::CudaModel>()
        .expect("a CUDA model")
}

/// Runs a loaded model on fresh `input`; returns its first output.
fn run_model(dev: &CudaDevice, model: &Arc<dyn reef_exec::ModelHandle>, input: &[f32]) -> Vec<f32> {
    let mut ctx = model.context().expect("context");
    ctx.poison().unwrap();
    ctx.write_input(0, &bytes(input)).unwrap();
    let mut lane = dev.lane(Priority::High).unwrap();
    let n = model.plan().kernels.len();
    let done = reef_exec::run::run_to_end(lane.as_mut(), ctx.as_mut(), 0, Variant::Rt).unwrap();
    assert_eq!(done, n);
    f32s(&ctx.read_output(0).unwrap())
}

#[test]
fn batch_sizes_share_one_device_copy_of_the_weights() {
    let Some(dev) = device(Precision::Tf32) else {
        return;
    };
    let plan = |b| reef_plan::compile(&reef_zoo::build("resnet_tiny", b, 0).unwrap()).unwrap();
    let p1 = plan(1);
    let mut p3 = plan(3);
    assert!(p3.share_weights(&p1));
    let (m1, m3) = (
        dev.load(Arc::new(p1)).expect("load b1"),
        dev.load(Arc::new(p3)).expect("load b3"),
    );
    assert!(
        cuda_model(&m3).shares_weights_with(cuda_model(&m1)),
        "one upload"
    );
    // A plan with its own copy of equal bytes is uploaded again.
    let m1b = dev.load(Arc::new(plan(1))).expect("load b1 again");
    assert!(!cuda_model(&m1b).shares_weights_with(cuda_model(&m1)));
    let mut rng = StdRng::seed_from_u64(rand::random());
    let per = m1.plan().inputs[0].shape.iter().product::<usize>();
    let images = random(&mut rng, 3 * per);
    let batched = run_model(&dev, &m3, &images);
    let classes = batched.len() / 3;
    for (i, image) in images.chunks(per).enumerate() {
        let alone: Vec<f64> = run_model(&dev, &m1, image)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let err = rel_l2(&batched[i * classes..(i + 1) * classes], &alone);
        assert!(err < 1e-3, "row {i}: relative error {err}");
    }
}
