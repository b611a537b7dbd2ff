//! Launch descriptors built from synthetic plans: families, tile counts,
//! grid sizes, resolved addresses and validation (no GPU needed).

use reef_cuda::kernels::Family;
use reef_cuda::launch::{table_words, Addresses, Builder, Launch};
use reef_cuda::params::Params;
use reef_cuda::Precision;
use reef_exec::{ExecError, Variant};
use reef_model::{Act, DType};
use reef_plan::kernel::{AttentionSpec, ConvSpec, KernelOp, MatMulSpec, SoftmaxPre};
mod common;

use common::P;

trait Addr {
    fn addr(&self, id: usize) -> u64;
}

impl Addr for P {
    fn addr(&self, id: usize) -> u64 {
        self.addr_at(id, ADDR.weights, ADDR.arena)
    }
}

const ADDR: Addresses = Addresses {
    weights: 0x1000_0000,
    arena: 0x2000_0000,
    counters: 0x3000_0000,
    progress: 0x4000_0000,
    table: 0x5000_0000,
    tile_counters: 0x6000_0000,
    workspace: 0x7000_0000,
};

/// Builds every launch of `plan` (H100 SM count); returns launches and table.
fn build(plan: &reef_plan::Plan, tf32: bool) -> (Vec<Launch>, Vec<u64>) {
    let b = Builder::new(plan, ADDR, tf32).unwrap().build_all().unwrap();
    (b.launches, b.table)
}

fn conv(n: usize, c: usize, k: usize, hw: usize, groups: usize, bias: bool) -> ConvSpec {
    ConvSpec {
        n,
        c,
        h: hw,
        w: hw,
        k,
        r: 3,
        s: 3,
        oh: hw,
        ow: hw,
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
        groups,
        has_bias: bias,
        has_residual: false,
        act: Act::Relu,
    }
}

fn conv_plan(spec: ConvSpec) -> P {
    let mut p = P::default();
    let x = p.act(DType::F32, spec.n * spec.c * spec.h * spec.w);
    let w = p.weight(DType::F32, spec.k * spec.c / spec.groups * spec.r * spec.s);
    let mut inputs = vec![x, w];
    if spec.has_bias {
        inputs.push(p.weight(DType::F32, spec.k));
    }
    let out = p.act(DType::F32, spec.n * spec.k * spec.oh * spec.ow);
    p.kernel(KernelOp::Conv(spec), inputs, out);
    p
}

#[test]
fn conv_resolves_addresses_and_counts_tiles() {
    let spec = conv(2, 64, 100, 14, 1, true);
    let p = conv_plan(spec.clone());
    let built = Builder::new(&p.plan, ADDR, true)
        .unwrap()
        .build_all()
        .unwrap();
    // The 3x3 conv gathers its input: its K-index table (576 entries, two
    // to a word) leads the context's table, within what table_words reserves.
    assert_eq!(built.table, reef_cuda::gather::gather_table(&spec));
    assert_eq!(built.table.len(), 288);
    assert_eq!(table_words(&p.plan), 289);
    let l = &built.launches[0];
    assert_eq!(l.family, Family::ConvTc);
    // M = 100 -> 2 tiles of 64; N = 2*14*14 = 392 -> 7 tiles of 64: 14
    // tiles, far below four blocks per SM, so K = 576 (36 steps of 16) is
    // split in four ranges of 144 (no split may own fewer than 128).
    assert_eq!(l.tiles, 56);
    let Params::Conv(c) = l.params else {
        panic!("not conv params")
    };
    assert_eq!((c.m_tiles, c.n_tiles), (2, 7));
    assert_eq!((c.splits, c.ksplit), (4, 144));
    assert_eq!(c.crs, 64 * 9);
    assert_eq!(c.npix, 196);
    assert_eq!(c.x, p.addr(0));
    assert_eq!(c.w, p.addr(1));
    assert_eq!(c.bias, p.addr(2));
    assert_eq!(c.out, p.addr(3));
    assert_eq!(c.residual, 0);
    assert_eq!(c.ws, ADDR.workspace);
    assert_eq!(c.cnt, ADDR.tile_counters);
    // 3x3 padded conv: gathered B; 576 % 4 == 0: 16-byte weight rows.
    assert_eq!((c.a_vec, c.b_vec), (1, 0));
    assert_eq!(c.hdr.done, ADDR.counters);
    assert_eq!(c.hdr.progress, ADDR.progress);
    assert_eq!(c.hdr.tiles, 56);
    assert_eq!(c.act, 1);
    assert_eq!(c.ktab, ADDR.table);
    // With the table off, the kernel steps (c, r, s) itself.
    let off = Builder::new(&p.plan, ADDR, true)
        .unwrap()
        .gather_table(false)
        .build_all()
        .unwrap();
    let Params::Conv(c_off) = off.launches[0].params else {
        panic!("not conv params")
    };
    assert_eq!((c_off.ktab, off.table.len()), (0, 0));
    // One partial 64x64 f32 tile per work item; one counter per output tile.
    assert_eq!(built.workspace_bytes, 56 * 64 * 64 * 4);
    assert_eq!(built.counter_start, vec![0, 14]);
    // Grids: RT one block per work item, BE bounded by residency.
    assert_eq!(l.grid(Variant::Rt, 4), 56);
    assert_eq!(l.grid(Variant::Be, 4), 4);
    assert_eq!(l.grid(Variant::Be, 1000), 56);

    let (ffma, _) = build(&p.plan, false);
    assert_eq!(ffma[0].family, Family::ConvFfma);
    assert_eq!(ffma[0].tiles, 56);

    // On a GPU with few SMs (14 tiles fill 3 SMs four blocks deep) the
    // same conv needs no split.
    let built = Builder::new(&p.plan, ADDR, true)
        .unwrap()
        .sms(3)
        .build_all()
        .unwrap();
    assert_eq!(built.launches[0].tiles, 14);
    assert_eq!(built.workspace_bytes, 0);
    assert_eq!(built.counter_start, vec![0, 0]);
    let Params::Conv(c) = built.launches[0].params else {
        panic!()
    };
    assert_eq!((c.splits, c.ws, c.cnt), (1, 0, 0));
}

#[test]
fn split_kernels_get_disjoint_counters_and_share_the_workspace() {
    let mut p = P::default();
    // Two late-ResNet-like 3x3 convs (K = 512*9) and one large 1x1 conv.
    let x = p.act(DType::F32, 512 * 7 * 7);
    let w = p.weight(DType::F32, 512 * 512 * 9);
    let y = p.act(DType::F32, 512 * 7 * 7);
    let z = p.act(DType::F32, 512 * 7 * 7);
    let mut s = conv(1, 512, 512, 7, 1, false);
    s.act = Act::None;
    p.kernel(KernelOp::Conv(s.clone()), vec![x, w], y);
    let big_in = p.act(DType::F32, 8 * 64 * 56 * 56);
    let big_w = p.weight(DType::F32, 256 * 64);
    let big_out = p.act(DType::F32, 8 * 256 * 56 * 56);
    let big = ConvSpec {
        n: 8,
        c: 64,
        h: 56,
        w: 56,
        k: 256,
        r: 1,
        s: 1,
        oh: 56,
        ow: 56,
        stride: [1, 1],
        pad: [0, 0],
        dilation: [1, 1],
        groups: 1,
        has_bias: false,
        has_residual: false,
        act: Act::None,
    };
    p.kernel(KernelOp::Conv(big), vec![big_in, big_w], big_out);
    p.kernel(KernelOp::Conv(s), vec![y, w], z);
    let built = Builder::new(&p.plan, ADDR, true)
        .unwrap()
        .build_all()
        .unwrap();
    let conv_of = |i: usize| match built.launches[i].params {
        Params::Conv(c) => c,
        _ => panic!("not conv"),
    };
    // 8 output tiles, split 32 ways (K = 4608: 144 per split).
    let (a, b, c) = (conv_of(0), conv_of(1), conv_of(2));
    assert_eq!(built.launches[0].family, Family::ConvTc);
    assert_eq!(
        (a.splits, a.ksplit, built.launches[0].tiles),
        (32, 144, 256)
    );
    // The big 1x1 conv: 128x128 tiles, no split, 16-byte loads of both operands.
    assert_eq!(built.launches[1].family, Family::ConvTcL);
    assert_eq!(built.launches[1].family.threads(), 256);
    assert_eq!((b.m_tiles, b.n_tiles, b.splits), (2, 196, 1));
    assert_eq!(built.launches[1].tiles, 392);
    assert_eq!((b.a_vec, b.b_vec, b.ws, b.cnt), (1, 1, 0, 0));
    // Counters: kernel 0 owns 0..8, kernel 1 none, kernel 2 owns 8..16.
    assert_eq!(built.counter_start, vec![0, 8, 8, 16]);
    assert_eq!(a.cnt, ADDR.tile_counters);
    assert_eq!(c.cnt, ADDR.tile_counters + 8 * 4);
    assert_eq!((a.ws, c.ws), (ADDR.workspace, ADDR.workspace));
    assert_eq!(built.workspace_bytes, 256 * 64 * 64 * 4);

    // Split TF32: the x3 families, 64 x 64 tiles only (no 128 x 128 x3).
    let x3 = Builder::new(&p.plan, ADDR, Precision::Tf32x3)
        .unwrap()
        .build_all()
        .unwrap();
    let fams: Vec<Family> = x3.launches.iter().map(|l| l.family).collect();
    assert_eq!(
        fams,
        vec![Family::ConvTcX3, Family::ConvTcX3, Family::ConvTcX3]
    );
    let Params::Conv(bx) = x3.launches[1].params else {
        panic!("not conv")
    };
    assert_eq!((bx.m_tiles, bx.n_tiles), (4, 392));
    assert_eq!(x3.launches[1].family.threads(), 128);
}

#[test]
fn matmul_geometry_and_vector_loads() {
    let mut p = P::default();
    // BERT-like projection: [128, 768] x [768, 768] (B row-major, unit N stride).
    let (m, n, k) = (128usize, 768usize, 768usize);
    let a = p.act(DType::F32, m * k);
    let b = p.weight(DType::F32, k * n);
    let out = p.act(DType::F32, m * n);
    let spec = MatMulSpec::row_major(m, n, k);
    p.kernel(KernelOp::MatMul(spec), vec![a, b], out);
    let built = Builder::new(&p.plan, ADDR, true)
        .unwrap()
        .build_all()
        .unwrap();
    let Params::MatMul(mm) = built.launches[0].params else {
        panic!()
    };
    assert_eq!(built.launches[0].family, Family::MatMulTc);
    let x3 = Builder::new(&p.plan, ADDR, Precision::Tf32x3)
        .unwrap()
        .build_all()
        .unwrap();
    assert_eq!(x3.launches[0].family, Family::MatMulTcX3);
    assert_eq!(x3.launches[0].tiles, built.launches[0].tiles);
    // 2 x 12 = 24 tiles; K = 768 = 48 steps: 6 splits of 128.
    assert_eq!(
        (mm.m_tiles, mm.n_tiles, mm.splits, mm.ksplit),
        (2, 12, 6, 128)
    );
    assert_eq!(built.launches[0].tiles, 144);
    assert_eq!((mm.a_vec, mm.b_vec), (1, 1));
    assert_eq!(built.counter_start, vec![0, 24]);

    // The same weight read as nn.Linear (trans_b: unit K stride): K-major B.
    if let KernelOp::MatMul(s) = &mut p.plan.kernels[0].op {
        (s.ldb_k, s.ldb_n) = (1, k);
    }
    let (l, _) = build(&p.plan, true);
    let Params::MatMul(mm) = l[0].params else {
        panic!()
    };
    assert_eq!(mm.b_vec, 3);
    // An odd row pitch: K-major with 4-byte copies, scalar A.
    if let KernelOp::MatMul(s) = &mut p.plan.kernels[0].op {
        (s.k, s.ldb_n, s.lda_m) = (767, 767, 767);
    }
    let (l, _) = build(&p.plan, true);
    let Params::MatMul(mm) = l[0].params else {
        panic!()
    };
    assert_eq!((mm.a_vec, mm.b_vec), (0, 2));
}

#[test]
fn depthwise_and_grouped_convs_pick_their_kernels() {
    let dw = conv_plan(conv(1, 32, 32, 10, 32, false));
    let (l, _) = build(&dw.plan, true);
    assert_eq!(l[0].family, Family::ConvDw);
    assert_eq!(l[0].tiles, (32u32 * 100).div_ceil(1024));

    let grouped = conv_plan(conv(1, 32, 64, 10, 4, false));
    let (l, _) = build(&grouped.plan, true);
    assert_eq!(l[0].family, Family::ConvTc);
    // 4 groups x 1 m-tile (16 channels) x 2 n-tiles (100 pixels).
    assert_eq!(l[0].tiles, 8);
}

#[test]
fn undersized_buffers_and_in_place_kernels_are_rejected() {
    let mut p = conv_plan(conv(1, 8, 8, 4, 1, false));
    p.plan.buffers[1].len -= 1; // weight too small
    assert!(matches!(
        Builder::new(&p.plan, ADDR, true)
            .unwrap()
            .build_all()
            .map(|b| b.launches),
        Err(ExecError::Invalid(_))
    ));

    let mut p = conv_plan(conv(1, 8, 8, 4, 1, false));
    p.plan.kernels[0].output = 0; // writes its input
    assert!(matches!(
        Builder::new(&p.plan, ADDR, true)
            .unwrap()
            .build_all()
            .map(|b| b.launches),
        Err(ExecError::Invalid(_))
    ));

    let mut p = conv_plan(conv(1, 8, 8, 4, 1, false));
    p.plan.buffers[0].dtype = DType::I64;
    assert!(matches!(
        Builder::new(&p.plan, ADDR, true)
            .unwrap()
            .build_all()
            .map(|b| b.launches),
        Err(ExecError::Invalid(_))
    ));

    let mut p = conv_plan(conv(1, 8, 8, 4, 1, false));
    p.plan.arena_bytes = 16; // buffers outside the arena
    assert!(matches!(
        Builder::new(&p.plan, ADDR, true),
        Err(ExecError::Invalid(_))
    ));
}

#[test]
fn matmul_checks_strided_extents() {
    let mut p = P::default();
    // A = [3, 5, 7] read transposed from a [3, 7, 5] buffer; B broadcast over the batch.
    let a = p.act(DType::F32, 3 * 7 * 5);
    let b = p.weight(DType::F32, 7 * 9);
    let out = p.act(DType::F32, 3 * 5 * 9);
    let spec = MatMulSpec {
        batch: vec![3],
        a_batch_strides: vec![35],
        b_batch_strides: vec![0],
        lda_m: 1,
        lda_k: 5,
        alpha: 0.5,
        ..MatMulSpec::row_major(5, 9, 7)
    };
    p.kernel(KernelOp::MatMul(spec.clone()), vec![a, b], out);
    let (l, _) = build(&p.plan, true);
    assert_eq!(l[0].family, Family::MatMulTc);
    assert_eq!(l[0].tiles, 3);
    let Params::MatMul(m) = l[0].params else {
        panic!()
    };
    assert_eq!((m.nbatch, m.batch[0], m.a_bs[0], m.b_bs[0]), (1, 3, 35, 0));
    assert_eq!(m.alpha, 0.5);

    // One element short of the last strided read of A.
    p.plan.buffers[a].len = 3 * 35 - 1;
    assert!(Builder::new(&p.plan, ADDR, true)
        .unwrap()
        .build_all()
        .is_err());
}

#[test]
fn attention_checks_strided_extents_and_picks_its_tiles() {
    let mut p = P::default();
    // BERT's layout: Q, K and V heads read from [b, s, h, d] buffers, the
    // output written merged; b = 2, h = 3, s = 40, d = 8.
    let (b, h, s, d) = (2, 3, 40, 8);
    let bufs: Vec<usize> = (0..4).map(|_| p.act(DType::F32, b * s * h * d)).collect();
    let st = [s * h * d, d, h * d, 1];
    let spec = AttentionSpec {
        batch: b,
        heads: h,
        sq: s,
        sk: s,
        d,
        dv: d,
        q_strides: st,
        k_strides: st,
        v_strides: st,
        out_strides: st,
        pre: SoftmaxPre::default(),
    };
    p.kernel(KernelOp::Attention(spec), bufs[..3].to_vec(), bufs[3]);
    let (l, _) = build(&p.plan, true);
    assert_eq!(l[0].family, Family::Attention);
    // 6 problems of 40 rows: 12 full tiles would not fill 132 SMs twice,
    // so 16-row tiles (3 per problem).
    assert_eq!(l[0].tiles, 18);
    let Params::Attention(a) = l[0].params else {
        panic!()
    };
    assert_eq!(
        (a.row_blocks, a.tile_rows, a.qs[2], a.os[1]),
        (3, 16, 24, 8)
    );

    // One element short of the last strided read of V.
    p.plan.buffers[bufs[2]].len -= 1;
    assert!(Builder::new(&p.plan, ADDR, true)
        .unwrap()
        .build_all()
        .is_err());
}

#[test]
fn concat_table_holds_parts_and_starts() {
    let mut p = P::default();
    let parts: Vec<usize> = [2usize, 3, 1]
        .iter()
        .map(|&l| p.act(DType::F32, 4 * l * 5))
        .collect();
    let out = p.act(DType::F32, 4 * 6 * 5);
    p.kernel(
        KernelOp::Concat {
            outer: 4,
            inner: 5,
            lens: vec![2, 3, 1],
            elem_size: 4,
        },
        parts.clone(),
        out,
    );
    let out2 = p.act(DType::F32, 4 * 6 * 5);
    let parts2 = vec![parts[2], out, parts[0]];
    let out3 = p.act(DType::F32, 4 * 9 * 5);
    let _ = out2;
    p.kernel(
        KernelOp::Concat {
            outer: 4,
            inner: 5,
            lens: vec![1, 6, 2],
            elem_size: 4,
        },
        parts2.clone(),
        out3,
    );
    assert_eq!(table_words(&p.plan), 14);
    let (l, table) = build(&p.plan, true);
    assert_eq!(table.len(), 14);
    assert_eq!(
        &table[..3],
        &[p.addr(parts[0]), p.addr(parts[1]), p.addr(parts[2])]
    );
    assert_eq!(&table[3..7], &[0, 2, 5, 6]);
    assert_eq!(
        &table[7..10],
        &[p.addr(parts2[0]), p.addr(parts2[1]), p.addr(parts2[2])]
    );
    assert_eq!(&table[10..14], &[0, 1, 7, 9]);
    let Params::Concat(c0) = l[0].params else {
        panic!()
    };
    let Params::Concat(c1) = l[1].params else {
        panic!()
    };
    assert_eq!(c0.table, ADDR.table);
    assert_eq!(c1.table, ADDR.table + 7 * 8);
    assert_eq!((c1.nparts, c1.total_len, c1.total), (3, 9, 180));
    assert_eq!(
        c1.hdr.done,
        ADDR.counters + reef_cuda::launch::COUNTER_BYTES
    );
    assert_eq!(c1.hdr.kernel_index, 1);
}

#[test]
fn copy_bounds_follow_signed_strides() {
    let mut p = P::default();
    let x = p.act(DType::I64, 12);
    let out = p.act(DType::I64, 12);
    // Reverse both axes of a [3, 4] view: start at 11, strides -4, -1.
    p.kernel(
        KernelOp::Copy {
            shape: vec![3, 4],
            offset: 11,
            strides: vec![-4, -1],
            elem_size: 8,
        },
        vec![x],
        out,
    );
    let (l, _) = build(&p.plan, true);
    let Params::Copy(c) = l[0].params else {
        panic!()
    };
    assert_eq!(c.shape, [1, 1, 1, 1, 3, 4]);
    assert_eq!(c.strides, [0, 0, 0, 0, -4, -1]);
    assert_eq!((c.offset, c.esz, c.total), (11, 8, 12));

    // Offset 10 would read element -1.
    if let KernelOp::Copy { offset, .. } = &mut p.plan.kernels[0].op {
        *offset = 10;
    }
    assert!(Builder::new(&p.plan, ADDR, true)
        .unwrap()
        .build_all()
        .is_err());
}

#[test]
fn broadcasts_are_right_aligned_and_where_keeps_operand_order() {
    let mut p = P::default();
    let cond = p.act(DType::Bool, 3);
    let a = p.act(DType::F32, 2 * 3);
    let b = p.weight(DType::F32, 1);
    let out = p.act(DType::F32, 2 * 3);
    p.kernel(
        KernelOp::Where {
            shape: vec![2, 3],
            c_strides: vec![0, 1],
            a_strides: vec![3, 1],
            b_strides: vec![0, 0],
        },
        vec![cond, a, b],
        out,
    );
    let (l, _) = build(&p.plan, true);
    assert_eq!(l[0].family, Family::Where);
    let Params::Bcast(w) = l[0].params else {
        panic!()
    };
    assert_eq!(
        (w.c, w.a, w.b, w.out),
        (p.addr(cond), p.addr(a), p.addr(b), p.addr(out))
    );
    assert_eq!(w.shape, [1, 1, 1, 1, 2, 3]);
    assert_eq!(w.sc, [0, 0, 0, 0, 0, 1]);
    assert_eq!(w.sa, [0, 0, 0, 0, 3, 1]);
    assert_eq!(w.sb, [0; 6]);
    assert_eq!(w.total, 6);
}

#[test]
fn kernels_without_work_become_no_ops() {
    let mut p = P::default();
    let x = p.act(DType::F32, 8);
    let out = p.act(DType::F32, 8);
    p.kernel(
        KernelOp::Softmax {
            outer: 0,
            axis: 8,
            inner: 1,
            pre: Default::default(),
        },
        vec![x],
        out,
    );
    let (l, _) = build(&p.plan, true);
    assert_eq!(l[0].family, Family::Copy);
    assert_eq!(l[0].tiles, 1);
    let Params::Copy(c) = l[0].params else {
        panic!()
    };
    assert_eq!(c.total, 0);
    assert_eq!(c.hdr.tiles, 1);
}

#[test]
fn unsupported_types_are_reported() {
    let mut p = P::default();
    let x = p.act(DType::F16, 8);
    let out = p.act(DType::F32, 8);
    p.kernel(
        KernelOp::Cast {
            from: DType::F16,
            to: DType::F32,
            n: 8,
        },
        vec![x],
        out,
    );
    assert!(matches!(
        Builder::new(&p.plan, ADDR, true)
            .unwrap()
            .build_all()
            .map(|b| b.launches),
        Err(ExecError::Unsupported(_))
    ));
}

#[test]
fn gather_elements_params_are_right_aligned_and_bounds_checked() {
    let ge = |shape: Vec<usize>| KernelOp::GatherElements {
        shape,
        data_shape: vec![3, 7, 5],
        axis: 1,
        elem_size: 8,
    };
    let mut p = P::default();
    let x = p.act(DType::I64, 3 * 7 * 5);
    let idx = p.act(DType::I64, 2 * 9 * 4);
    let out = p.act(DType::I64, 2 * 9 * 4);
    p.kernel(ge(vec![2, 9, 4]), vec![x, idx], out);
    let (l, _) = build(&p.plan, false);
    assert_eq!(l[0].family, Family::GatherElements);
    let Params::GatherElements(g) = l[0].params else {
        panic!("not gather_elements")
    };
    assert_eq!((g.x, g.idx, g.out), (p.addr(x), p.addr(idx), p.addr(out)));
    assert_eq!(g.shape, [1, 1, 1, 2, 9, 4]);
    assert_eq!(g.strides, [0, 0, 0, 35, 5, 1]);
    assert_eq!((g.axis, g.axis_len, g.esz, g.total), (4, 7, 8, 72));
    // Indices longer than the data off the axis, or an undersized index
    // buffer, are errors.
    let mut q = P::default();
    let x = q.act(DType::I64, 3 * 7 * 5);
    let idx = q.act(DType::I64, 4 * 9 * 4);
    let out = q.act(DType::I64, 4 * 9 * 4);
    q.kernel(ge(vec![4, 9, 4]), vec![x, idx], out);
    assert!(Builder::new(&q.plan, ADDR, false)
        .unwrap()
        .build_all()
        .is_err());
    let mut q = P::default();
    let x = q.act(DType::I64, 3 * 7 * 5);
    let idx = q.act(DType::I64, 10);
    let out = q.act(DType::I64, 2 * 9 * 4);
    q.kernel(ge(vec![2, 9, 4]), vec![x, idx], out);
    assert!(Builder::new(&q.plan, ADDR, false)
        .unwrap()
        .build_all()
        .is_err());
}
