//! Layer helpers over [`GraphBuilder`]: each PyTorch module becomes the IR
//! nodes it computes in eval mode, with its parameters as initializers named
//! exactly like the module's `state_dict` keys (`{prefix}.weight`, ...).
//!
//! Weight scales: a conv or linear layer whose output feeds a ReLU gets
//! Kaiming-uniform weights with gain √2 (bound √(6/fan_in)); one without
//! (classifier heads, residual-branch ends, projections) gets gain 1
//! (bound √(3/fan_in)), times an extra `scale` where the model asks for one.
//! Both keep the second moment of activations near 1 through deep nets.
//! Biases follow PyTorch's default U(±1/√fan_in); batch-norm statistics are
//! drawn so eval-mode normalisation is non-trivial but stable.

use crate::init::{generate, Init};
use reef_model::op::{ConvAttrs, PoolAttrs};
use reef_model::{DType, GraphBuilder, ModelError, Op, PadMode, PoolKind, Result, Tensor, ValueId};
use std::collections::HashMap;

/// Weight gain of a conv or linear layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gain {
    /// The layer feeds a ReLU (or GELU / ReLU6): gain √2.
    Relu,
    /// Linear output, scaled by the factor (1.0 for a plain head).
    Linear(f32),
}

impl Gain {
    fn bound(self, fan_in: usize) -> f32 {
        let base = (3.0 / fan_in as f32).sqrt();
        match self {
            Gain::Relu => base * std::f32::consts::SQRT_2,
            Gain::Linear(s) => base * s,
        }
    }
}

/// Geometry of one convolution (PyTorch `Conv2d` arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conv {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel (height, width).
    pub kernel: [usize; 2],
    /// Stride (both axes).
    pub stride: usize,
    /// Padding (height, width), symmetric.
    pub pad: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// Whether the conv has a bias.
    pub bias: bool,
}

impl Conv {
    /// A square `k`×`k` conv without bias, padding `pad`, one group.
    pub fn square(cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Conv {
        Conv {
            cin,
            cout,
            kernel: [k, k],
            stride,
            pad: [pad, pad],
            groups: 1,
            bias: false,
        }
    }
}

/// A model under construction: the graph builder plus the seed its
/// parameters are drawn from.
pub struct Net {
    /// The graph so far.
    pub b: GraphBuilder,
    seed: u64,
    scalars: HashMap<String, ValueId>,
}

impl Net {
    /// Starts the graph of model `name` with parameters seeded by `seed`.
    pub fn new(name: &str, seed: u64) -> Net {
        Net {
            b: GraphBuilder::new(name),
            seed,
            scalars: HashMap::new(),
        }
    }

    /// A seeded f32 parameter called `name`.
    pub fn param(&mut self, name: &str, shape: Vec<usize>, init: Init) -> Result<ValueId> {
        let n = shape.iter().product();
        let t = Tensor::f32(shape, generate(self.seed, name, n, init))?;
        self.b.initializer(name, t)
    }

    /// A shared rank-0 f32 constant (created once per value name).
    pub fn scalar(&mut self, name: &str, v: f32) -> Result<ValueId> {
        if let Some(&id) = self.scalars.get(name) {
            return Ok(id);
        }
        let id = self.b.initializer(name, Tensor::scalar_f32(v))?;
        self.scalars.insert(name.to_string(), id);
        Ok(id)
    }

    /// An i64 constant (shapes, pads, indices).
    pub fn ints(&mut self, name: &str, v: &[i64]) -> Result<ValueId> {
        self.b.initializer(name, Tensor::i64_vec(v))
    }

    /// `nn.Conv2d` as `{prefix}.weight` (and `{prefix}.bias`).
    pub fn conv(&mut self, x: ValueId, prefix: &str, c: Conv, gain: Gain) -> Result<ValueId> {
        let fan_in = c.cin / c.groups * c.kernel[0] * c.kernel[1];
        let bound = gain.bound(fan_in);
        let shape = vec![c.cout, c.cin / c.groups, c.kernel[0], c.kernel[1]];
        let w = self.param(
            &format!("{prefix}.weight"),
            shape,
            Init::Uniform(-bound, bound),
        )?;
        let mut ins = vec![x, w];
        if c.bias {
            let bb = 1.0 / (fan_in as f32).sqrt();
            ins.push(self.param(
                &format!("{prefix}.bias"),
                vec![c.cout],
                Init::Uniform(-bb, bb),
            )?);
        }
        let attrs = ConvAttrs {
            kernel: c.kernel,
            stride: [c.stride, c.stride],
            pads: [c.pad[0], c.pad[1], c.pad[0], c.pad[1]],
            dilation: [1, 1],
            groups: c.groups,
        };
        self.b.node(prefix, Op::Conv(attrs), &ins)
    }

    /// `nn.BatchNorm2d` (eval) as `{prefix}.weight`, `.bias`, `.running_mean`, `.running_var`.
    pub fn bn(&mut self, x: ValueId, prefix: &str, eps: f32) -> Result<ValueId> {
        let c = self.channels(x, prefix)?;
        let gamma = self.param(
            &format!("{prefix}.weight"),
            vec![c],
            Init::Uniform(0.8, 1.2),
        )?;
        let beta = self.param(&format!("{prefix}.bias"), vec![c], Init::Uniform(-0.1, 0.1))?;
        let mean = self.param(
            &format!("{prefix}.running_mean"),
            vec![c],
            Init::Uniform(-0.1, 0.1),
        )?;
        let var = self.param(
            &format!("{prefix}.running_var"),
            vec![c],
            Init::Uniform(0.5, 1.5),
        )?;
        self.b.node(
            prefix,
            Op::BatchNorm { epsilon: eps },
            &[x, gamma, beta, mean, var],
        )
    }

    fn channels(&self, x: ValueId, what: &str) -> Result<usize> {
        self.b.shape(x).get(1).copied().ok_or_else(|| {
            ModelError::node(what, "BatchNormalization", "input has no channel axis")
        })
    }

    /// ReLU.
    pub fn relu(&mut self, x: ValueId, name: &str) -> Result<ValueId> {
        self.b.node(name, Op::Relu, &[x])
    }

    /// ReLU6 as `Clip(x, 0, 6)` with shared bound constants.
    pub fn relu6(&mut self, x: ValueId, name: &str) -> Result<ValueId> {
        let lo = self.scalar("relu6.min", 0.0)?;
        let hi = self.scalar("relu6.max", 6.0)?;
        let out = format!("{name}_out");
        Ok(self.b.node_named(
            name,
            Op::Clip {
                min: None,
                max: None,
            },
            vec![Some(x), Some(lo), Some(hi)],
            &[&out],
        )?[0])
    }

    /// Conv, batch norm (eps `eps`) and ReLU, named `{prefix}.{conv}`, `{prefix}.{bn}`.
    pub fn conv_bn_relu(
        &mut self,
        x: ValueId,
        prefix: &str,
        names: [&str; 2],
        c: Conv,
        eps: f32,
    ) -> Result<ValueId> {
        let y = self.conv(x, &format!("{prefix}{}", names[0]), c, Gain::Relu)?;
        let y = self.bn(y, &format!("{prefix}{}", names[1]), eps)?;
        self.relu(y, &format!("{prefix}.relu"))
    }

    /// `nn.Linear` on a 2-D input as `Gemm(x, W, b, trans_b=1)`; the weight
    /// stays in PyTorch's `[out, in]` layout.
    /// The output value is called `out` when given.
    pub fn linear(
        &mut self,
        x: ValueId,
        prefix: &str,
        cin: usize,
        cout: usize,
        gain: Gain,
        out: Option<&str>,
    ) -> Result<ValueId> {
        let bound = gain.bound(cin);
        let w = self.param(
            &format!("{prefix}.weight"),
            vec![cout, cin],
            Init::Uniform(-bound, bound),
        )?;
        let bb = 1.0 / (cin as f32).sqrt();
        let bias = self.param(
            &format!("{prefix}.bias"),
            vec![cout],
            Init::Uniform(-bb, bb),
        )?;
        self.gemm(x, w, bias, prefix, out)
    }

    /// `x · Wᵀ + bias` for an existing weight and bias.
    pub fn gemm(
        &mut self,
        x: ValueId,
        w: ValueId,
        bias: ValueId,
        name: &str,
        out: Option<&str>,
    ) -> Result<ValueId> {
        let op = Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        };
        match out {
            Some(o) => self.named(name, op, &[x, w, bias], o),
            None => self.b.node(name, op, &[x, w, bias]),
        }
    }

    /// Max or average pooling (floor mode).
    #[allow(clippy::too_many_arguments)]
    pub fn pool(
        &mut self,
        x: ValueId,
        name: &str,
        kind: PoolKind,
        k: usize,
        stride: usize,
        pad: usize,
        count_include_pad: bool,
    ) -> Result<ValueId> {
        let attrs = PoolAttrs {
            kind,
            kernel: [k, k],
            stride: [stride, stride],
            pads: [pad; 4],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad,
        };
        self.b.node(name, Op::Pool(attrs), &[x])
    }

    /// `nn.MaxPool2d(k, stride, pad)`.
    pub fn max_pool(
        &mut self,
        x: ValueId,
        name: &str,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<ValueId> {
        self.pool(x, name, PoolKind::Max, k, stride, pad, false)
    }

    /// `nn.AdaptiveAvgPool2d(out)`. Identity (no node) when the input is
    /// already `out`×`out`, a global average for 1×1, and a plain average
    /// pool when the input size is a multiple of `out` (then every adaptive
    /// window has the same size and stride); other sizes are unsupported.
    pub fn adaptive_avg_pool(&mut self, x: ValueId, name: &str, out: usize) -> Result<ValueId> {
        let s = self.b.shape(x).to_vec();
        if s.len() != 4 || s[2] != s[3] {
            return Err(ModelError::node(
                name,
                "AdaptiveAvgPool2d",
                format!("expected a square NCHW input, got {s:?}"),
            ));
        }
        let h = s[2];
        if h == out {
            Ok(x)
        } else if out == 1 {
            self.b.node(name, Op::GlobalAvgPool, &[x])
        } else if out > 0 && h.is_multiple_of(out) {
            self.pool(x, name, PoolKind::Avg, h / out, h / out, 0, false)
        } else {
            Err(ModelError::Unsupported {
                node: name.to_string(),
                op: "AdaptiveAvgPool2d".into(),
                reason: format!("input {h}x{h} is not a multiple of the output {out}x{out}"),
            })
        }
    }

    /// `torch.flatten(x, 1)`.
    pub fn flatten(&mut self, x: ValueId, name: &str) -> Result<ValueId> {
        self.b.node(name, Op::Flatten { axis: 1 }, &[x])
    }

    /// Concatenation along channels.
    pub fn concat(&mut self, xs: &[ValueId], name: &str) -> Result<ValueId> {
        self.b.node(name, Op::Concat { axis: 1 }, xs)
    }

    /// Elementwise sum.
    pub fn add(&mut self, a: ValueId, bb: ValueId, name: &str) -> Result<ValueId> {
        self.b.node(name, Op::Add, &[a, bb])
    }

    /// Reshape to a constant target (0 copies, -1 infers).
    pub fn reshape(&mut self, x: ValueId, name: &str, target: &[i64]) -> Result<ValueId> {
        let s = self.ints(&format!("{name}.shape"), target)?;
        self.b.node(name, Op::Reshape { allowzero: false }, &[x, s])
    }

    /// Transpose by `perm`.
    pub fn transpose(&mut self, x: ValueId, name: &str, perm: &[usize]) -> Result<ValueId> {
        self.b.node(
            name,
            Op::Transpose {
                perm: Some(perm.to_vec()),
            },
            &[x],
        )
    }

    /// Constant-mode Pad with ONNX `pads` (negative values crop).
    pub fn pad(&mut self, x: ValueId, name: &str, pads: &[i64]) -> Result<ValueId> {
        let p = self.ints(&format!("{name}.pads"), pads)?;
        self.b.node(
            name,
            Op::Pad {
                mode: PadMode::Constant,
                pads: None,
                value: 0.0,
            },
            &[x, p],
        )
    }

    /// A single-output node whose output value is called `out`.
    pub fn named(&mut self, name: &str, op: Op, ins: &[ValueId], out: &str) -> Result<ValueId> {
        Ok(self
            .b
            .node_named(name, op, ins.iter().map(|&i| Some(i)).collect(), &[out])?[0])
    }

    /// Marks a graph output.
    pub fn output(&mut self, v: ValueId) {
        self.b.output(v);
    }

    /// Declares an input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: Vec<usize>) -> Result<ValueId> {
        self.b.input(name, dtype, shape)
    }
}
