//! Lanes, contexts and preemption of the CPU backend: RT/BE bit-identity,
//! preempt-and-resume, queue counters, I/O validation and plan validation.

mod common;

use common::*;
use reef_exec::cpu::CpuDevice;
use reef_exec::run::run_to_end;
use reef_exec::{Context, Device, DeviceKind, ExecError, Lane, Priority, Variant};
use reef_model::{Act, DType};
use reef_plan::kernel::*;
use reef_plan::plan::Loc;
use reef_plan::Plan;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const C: usize = 16;
const HW: usize = 32;

/// A chain of `n` 3x3 convolutions (tanh) ping-ponging between two arena
/// buffers, then a softmax over channels.
fn chain(n: usize) -> Arc<Plan> {
    let mut r = rng(99);
    let mut b = PlanBuilder::new("chain");
    let x = b.input("x", DType::F32, &[1, C, HW, HW]);
    let ping = [
        b.arena("a", DType::F32, C * HW * HW),
        b.arena("b", DType::F32, C * HW * HW),
    ];
    let spec = ConvSpec {
        n: 1,
        c: C,
        h: HW,
        w: HW,
        k: C,
        r: 3,
        s: 3,
        oh: HW,
        ow: HW,
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
        groups: 1,
        has_bias: true,
        has_residual: false,
        act: Act::Tanh,
    };
    let mut cur = x;
    for i in 0..n {
        let w: Vec<f32> = randn(&mut r, C * C * 9).iter().map(|v| v * 0.3).collect();
        let wid = b.weight_f32(&format!("w{i}"), &w);
        let bid = b.weight_f32(&format!("b{i}"), &randn(&mut r, C));
        let out = ping[i % 2];
        b.kernel(KernelOp::Conv(spec.clone()), &[cur, wid, bid], out);
        cur = out;
    }
    let y = b.arena("y", DType::F32, C * HW * HW);
    b.kernel(
        KernelOp::Softmax {
            outer: 1,
            axis: C,
            inner: HW * HW,
            pre: Default::default(),
        },
        &[cur],
        y,
    );
    b.output(y, &[1, C, HW, HW]);
    b.build()
}

fn input() -> Vec<u8> {
    bytes(&randn(&mut rng(7), C * HW * HW))
}

#[test]
fn rt_and_be_are_bit_identical() {
    let plan = chain(6);
    let rt = run_plan(&plan, &[input()], Variant::Rt);
    let be = run_plan(&plan, &[input()], Variant::Be);
    assert_eq!(rt, be);
    assert!(f32s(&rt[0]).iter().all(|v| v.is_finite()));
}

#[test]
fn preempt_mid_run_then_resume_is_bit_identical() {
    let n_conv = 200;
    let plan = chain(n_conv);
    let n = plan.kernels.len();
    let reference = run_plan(&plan, &[input()], Variant::Be);

    let dev = device();
    let model = dev.load(plan.clone()).expect("load");
    let mut ctx = model.context().expect("context");
    ctx.poison().expect("poison");
    ctx.write_input(0, &input()).expect("input");
    let mut lane = dev.cpu_lane(Priority::Low).expect("lane");
    lane.begin(ctx.as_mut(), 0).expect("begin");
    for i in 0..n {
        lane.enqueue(ctx.as_mut(), i, Variant::Be).expect("enqueue");
    }
    assert_eq!(lane.enqueued(), n as u64);
    // Wait until a few kernels completed, then raise the flag from another thread.
    let start = Instant::now();
    while ctx.progress().expect("progress") < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "lane made no progress"
        );
        // The count read without a query never runs ahead of the queried one.
        let seen = lane.retired_seen();
        assert!(seen <= lane.retired().expect("retired") && seen < n as u64);
        std::thread::sleep(Duration::from_micros(200));
    }
    let flag = lane.preempt_flag();
    std::thread::spawn(move || flag.store(true, Ordering::Release))
        .join()
        .expect("raiser");
    lane.synchronize().expect("synchronize");
    assert_eq!(
        lane.retired().expect("retired"),
        n as u64,
        "every queued item retires"
    );
    assert_eq!(lane.retired_seen(), n as u64);
    let stopped = ctx.progress().expect("progress");
    println!("preempted at kernel {stopped} of {n}");
    assert!(
        (3..n).contains(&stopped),
        "progress {stopped} should be inside the run"
    );

    // Resume from the first unfinished kernel.
    lane.set_preempt(false).expect("clear");
    let done = run_to_end(&mut lane, ctx.as_mut(), stopped, Variant::Be).expect("resume");
    assert_eq!(done, n);
    assert_eq!(
        ctx.read_output(0).expect("output"),
        reference[0],
        "resumed run differs"
    );
}

#[test]
fn raised_flag_skips_be_but_not_rt() {
    let plan = chain(3);
    let n = plan.kernels.len();
    let dev = device();
    let model = dev.load(plan.clone()).expect("load");
    let mut ctx = model.context().expect("context");
    ctx.write_input(0, &input()).expect("input");
    let mut lane = dev.lane(Priority::High).expect("lane");
    assert_eq!(lane.priority(), Priority::High);
    lane.set_preempt(true).expect("raise");
    assert_eq!(
        run_to_end(lane.as_mut(), ctx.as_mut(), 1, Variant::Be).expect("be"),
        1
    );
    assert_eq!(lane.retired().expect("retired"), (n - 1) as u64);
    // A halted context stays halted until begin, even with the flag cleared.
    lane.set_preempt(false).expect("clear");
    lane.enqueue(ctx.as_mut(), 1, Variant::Be).expect("enqueue");
    lane.synchronize().expect("sync");
    assert_eq!(ctx.progress().expect("progress"), 1);
    lane.set_preempt(true).expect("raise");
    assert_eq!(
        run_to_end(lane.as_mut(), ctx.as_mut(), 0, Variant::Rt).expect("rt"),
        n
    );
    let rt = ctx.read_output(0).expect("out");
    assert_eq!(rt, run_plan(&plan, &[input()], Variant::Be)[0]);
}

#[test]
fn io_is_validated() {
    let plan = chain(1);
    let dev = device();
    let model = dev.load(plan).expect("load");
    let mut ctx = model.context().expect("context");
    let err = ctx.write_input(0, &[0u8; 12]).expect_err("short input");
    let msg = err.to_string();
    assert!(
        matches!(err, ExecError::Invalid(_)) && msg.contains("'x'") && msg.contains("12"),
        "{msg}"
    );
    assert!(
        ctx.write_input(1, &input()).is_err(),
        "input index out of range"
    );
    assert!(ctx.read_output(1).is_err(), "output index out of range");
    ctx.poison().expect("poison");
    let poisoned = f32s(&ctx.read_output(0).expect("read"));
    assert!(poisoned.iter().all(|v| v.is_nan()), "poison fills NaN");
    let mut lane = dev.lane(Priority::Low).expect("lane");
    assert!(
        lane.enqueue(ctx.as_mut(), 99, Variant::Rt).is_err(),
        "kernel index out of range"
    );
    assert!(lane.begin(ctx.as_mut(), 99).is_err());
}

#[test]
fn bad_plans_are_rejected_at_load() {
    let dev = device();
    let mut plan = (*chain(1)).clone();
    plan.buffers[1].loc = Loc::Arena(plan.arena_bytes); // past the arena
    assert!(dev.load(Arc::new(plan)).is_err());
    let mut plan = (*chain(1)).clone();
    plan.kernels[0].inputs.pop(); // conv without its bias
    assert!(dev.load(Arc::new(plan)).is_err());
    let mut plan = (*chain(1)).clone();
    if let KernelOp::Conv(c) = &mut plan.kernels[0].op {
        c.h = 64; // reads past its input
    }
    assert!(dev.load(Arc::new(plan)).is_err());
    let mut plan = (*chain(1)).clone();
    plan.kernels[0].output = plan.kernels[0].inputs[0]; // writes its own input
    assert!(dev.load(Arc::new(plan)).is_err());
}

#[test]
fn device_reports_itself() {
    let dev = CpuDevice::new(Some(3)).expect("device");
    assert_eq!(dev.compute_units(), 3);
    assert_eq!(dev.kind(), DeviceKind::Cpu);
    assert!(dev.name().contains('3'));
    assert!(CpuDevice::new(Some(0)).is_err());
    assert!(CpuDevice::new(None).expect("default").compute_units() >= 1);
}

#[test]
fn lanes_run_concurrently_on_separate_contexts() {
    let plan = chain(4);
    let reference = run_plan(&plan, &[input()], Variant::Rt);
    let dev = device();
    let model = dev.load(plan).expect("load");
    let mut ctxs: Vec<Box<dyn Context>> = (0..3).map(|_| model.context().expect("ctx")).collect();
    let mut lanes: Vec<Box<dyn Lane>> = (0..3)
        .map(|i| {
            dev.lane(if i == 0 {
                Priority::High
            } else {
                Priority::Low
            })
            .expect("lane")
        })
        .collect();
    let n = model.plan().kernels.len();
    for (ctx, lane) in ctxs.iter_mut().zip(&mut lanes) {
        ctx.write_input(0, &input()).expect("input");
        lane.begin(ctx.as_mut(), 0).expect("begin");
        for i in 0..n {
            lane.enqueue(ctx.as_mut(), i, Variant::Be).expect("enqueue");
        }
    }
    for (ctx, lane) in ctxs.iter_mut().zip(&mut lanes) {
        lane.synchronize().expect("sync");
        assert_eq!(ctx.progress().expect("progress"), n);
        assert_eq!(ctx.read_output(0).expect("out"), reference[0]);
    }
}

/// Padding launches: a BE kernel padded beside an RT kernel that never
/// completes runs in full; beside a completed RT kernel it does nothing; a
/// padding launch whose predecessor is unfinished does nothing; the task then
/// completes from its progress with the unpadded result.
#[test]
fn padding_launches_follow_the_rt_kernel_and_keep_results() {
    let plan = chain(4);
    let want = run_plan(&plan, &[input()], Variant::Rt);
    let dev = CpuDevice::new(Some(2)).unwrap().with_padding(true);
    let model = dev.load(plan.clone()).unwrap();
    let (mut rt_lane, mut be_lane) = (
        dev.lane(Priority::High).unwrap(),
        dev.lane(Priority::Low).unwrap(),
    );
    let mut rt_ctx = model.context().unwrap();
    let mut be_ctx = model.context().unwrap();
    be_ctx.write_input(0, &input()).unwrap();
    assert!(
        be_ctx.shape(0).is_some(),
        "padding emulation reports shapes"
    );
    rt_lane.begin(rt_ctx.as_mut(), 0).unwrap();
    be_lane.begin(be_ctx.as_mut(), 0).unwrap();
    // RT kernel 2 is never launched: the padded BE kernel 0 runs to its end.
    let open = rt_lane
        .pad_slot(rt_ctx.as_mut(), 2)
        .unwrap()
        .expect("CPU pads");
    be_lane
        .enqueue_pad(be_ctx.as_mut(), 0, &open, 1, Duration::ZERO)
        .unwrap();
    // Kernel 2 of the BE task before kernel 1 completed: nothing happens.
    be_lane
        .enqueue_pad(be_ctx.as_mut(), 2, &open, 1, Duration::ZERO)
        .unwrap();
    be_lane.synchronize().unwrap();
    assert_eq!(be_ctx.progress().unwrap(), 1);
    // Beside an RT kernel that already completed: nothing happens.
    let done = rt_lane.pad_slot(rt_ctx.as_mut(), 0).unwrap().unwrap();
    rt_lane.enqueue(rt_ctx.as_mut(), 0, Variant::Rt).unwrap();
    rt_lane.synchronize().unwrap();
    be_lane
        .enqueue_pad(be_ctx.as_mut(), 1, &done, 1, Duration::ZERO)
        .unwrap();
    be_lane.synchronize().unwrap();
    assert_eq!(be_ctx.progress().unwrap(), 1);
    // Resume and finish from the progress it reports: the unpadded result.
    assert_eq!(be_lane.resume(be_ctx.as_mut()).unwrap(), 1);
    for i in 1..plan.kernels.len() {
        be_lane.enqueue(be_ctx.as_mut(), i, Variant::Be).unwrap();
    }
    be_lane.synchronize().unwrap();
    assert_eq!(be_ctx.progress().unwrap(), plan.kernels.len());
    assert_eq!(be_ctx.read_output(0).unwrap(), want[0]);
}

/// The lane timer spans from the lane taking up the launch after the start
/// mark to the retirement of the last launch before the stop mark, also
/// when that launch retired before the stop was placed; a timing is read
/// once; a stop with nothing queued since the start times nothing.
#[test]
fn the_lane_timer_spans_the_launches_between_its_marks() {
    let plan = chain(12);
    let dev = device();
    let model = dev.load(plan).expect("load");
    let mut ctx = model.context().expect("ctx");
    ctx.write_input(0, &input()).expect("input");
    let mut lane = dev.lane(Priority::High).expect("lane");
    let n = model.plan().kernels.len();
    assert_eq!(lane.read_timer().expect("read"), None);
    let mut timed = |upto: usize, sleep_before_stop: bool| -> (Option<Duration>, Duration) {
        lane.start_timer().expect("start");
        lane.begin(ctx.as_mut(), 0).expect("begin");
        let t0 = Instant::now();
        for i in 0..n {
            lane.enqueue(ctx.as_mut(), i, Variant::Rt).expect("enqueue");
            if i + 1 == upto {
                if sleep_before_stop {
                    // Let the lane retire the launch before the stop is placed.
                    std::thread::sleep(Duration::from_millis(300));
                }
                lane.stop_timer().expect("stop");
            }
        }
        lane.synchronize().expect("sync");
        let host = t0.elapsed();
        let span = lane.read_timer().expect("read");
        assert_eq!(lane.read_timer().expect("read again"), None);
        (span, host)
    };
    let (one, host) = timed(1, false);
    let one = one.expect("the first kernel was timed");
    let (all, _) = timed(n, false);
    let all = all.expect("every kernel was timed");
    println!("first kernel {one:?}, all {n} {all:?}, host {host:?}");
    assert!(one > Duration::ZERO && one < all, "{one:?} against {all:?}");
    assert!(all <= host * 2, "{all:?} against the host's {host:?}");
    let (late, _) = timed(1, true);
    let late = late.expect("a stop placed after its launch retired still times it");
    assert!(
        late < Duration::from_millis(300),
        "{late:?} counts the host's sleep"
    );
    // A stop with no launch since the start: nothing to time.
    lane.start_timer().expect("start");
    lane.stop_timer().expect("stop");
    lane.synchronize().expect("sync");
    assert_eq!(lane.read_timer().expect("read"), None);
}
