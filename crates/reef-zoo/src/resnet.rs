//! ResNet (torchvision `resnet.py`, v1.5: the stride sits on the 3×3 conv of
//! a bottleneck). Parameter names match torchvision's `state_dict`.
//!
//! Seeded weights: the last conv of every residual branch is scaled by
//! 1/√(number of blocks), so the residual sums do not grow with depth
//! (eval-mode batch norm does not renormalise them).

use crate::nn::{Conv, Gain, Net};
use reef_model::{DType, Result, ValueId};

const EPS: f32 = 1e-5;

/// Residual block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Two 3×3 convs (expansion 1).
    Basic,
    /// 1×1, 3×3, 1×1 convs (expansion 4).
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// A ResNet configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    /// Block type.
    pub block: Block,
    /// Blocks per stage (four stages).
    pub layers: [usize; 4],
    /// Stem width and per-stage widths (torchvision: 64 and 64, 128, 256, 512).
    pub stem: usize,
    /// Stage widths (before expansion).
    pub widths: [usize; 4],
    /// Classes.
    pub classes: usize,
    /// Input height and width.
    pub image: usize,
}

impl ResNetConfig {
    /// torchvision's ResNet with `block` and `layers` (1000 classes, 224×224).
    pub fn torchvision(block: Block, layers: [usize; 4]) -> Self {
        ResNetConfig {
            block,
            layers,
            stem: 64,
            widths: [64, 128, 256, 512],
            classes: 1000,
            image: 224,
        }
    }
}

struct Ctx {
    inplanes: usize,
    branch_scale: f32,
}

fn block(
    n: &mut Net,
    x: ValueId,
    p: &str,
    cfg: &ResNetConfig,
    ctx: &mut Ctx,
    planes: usize,
    stride: usize,
) -> Result<ValueId> {
    let exp = cfg.block.expansion();
    let inp = ctx.inplanes;
    let last = Gain::Linear(ctx.branch_scale);
    let y = match cfg.block {
        Block::Basic => {
            let y = n.conv(
                x,
                &format!("{p}.conv1"),
                Conv::square(inp, planes, 3, stride, 1),
                Gain::Relu,
            )?;
            let y = n.bn(y, &format!("{p}.bn1"), EPS)?;
            let y = n.relu(y, &format!("{p}.relu1"))?;
            let y = n.conv(
                y,
                &format!("{p}.conv2"),
                Conv::square(planes, planes, 3, 1, 1),
                last,
            )?;
            n.bn(y, &format!("{p}.bn2"), EPS)?
        }
        Block::Bottleneck => {
            let y = n.conv(
                x,
                &format!("{p}.conv1"),
                Conv::square(inp, planes, 1, 1, 0),
                Gain::Relu,
            )?;
            let y = n.bn(y, &format!("{p}.bn1"), EPS)?;
            let y = n.relu(y, &format!("{p}.relu1"))?;
            let y = n.conv(
                y,
                &format!("{p}.conv2"),
                Conv::square(planes, planes, 3, stride, 1),
                Gain::Relu,
            )?;
            let y = n.bn(y, &format!("{p}.bn2"), EPS)?;
            let y = n.relu(y, &format!("{p}.relu2"))?;
            let y = n.conv(
                y,
                &format!("{p}.conv3"),
                Conv::square(planes, planes * exp, 1, 1, 0),
                last,
            )?;
            n.bn(y, &format!("{p}.bn3"), EPS)?
        }
    };
    let identity = if stride != 1 || inp != planes * exp {
        let d = n.conv(
            x,
            &format!("{p}.downsample.0"),
            Conv::square(inp, planes * exp, 1, stride, 0),
            Gain::Linear(1.0),
        )?;
        n.bn(d, &format!("{p}.downsample.1"), EPS)?
    } else {
        x
    };
    ctx.inplanes = planes * exp;
    let s = n.add(y, identity, &format!("{p}.add"))?;
    n.relu(s, &format!("{p}.relu"))
}

/// Builds the ResNet graph: input `input` `[batch, 3, image, image]`, output
/// `logits` `[batch, classes]`.
pub fn build(n: &mut Net, cfg: &ResNetConfig, batch: usize) -> Result<()> {
    let x = n.input("input", DType::F32, vec![batch, 3, cfg.image, cfg.image])?;
    let y = n.conv(x, "conv1", Conv::square(3, cfg.stem, 7, 2, 3), Gain::Relu)?;
    let y = n.bn(y, "bn1", EPS)?;
    let y = n.relu(y, "relu")?;
    let mut y = n.max_pool(y, "maxpool", 3, 2, 1)?;
    let total: usize = cfg.layers.iter().sum();
    let mut ctx = Ctx {
        inplanes: cfg.stem,
        branch_scale: 1.0 / (total as f32).sqrt(),
    };
    for (stage, (&count, &planes)) in cfg.layers.iter().zip(&cfg.widths).enumerate() {
        for i in 0..count {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            y = block(
                n,
                y,
                &format!("layer{}.{i}", stage + 1),
                cfg,
                &mut ctx,
                planes,
                stride,
            )?;
        }
    }
    let y = n.adaptive_avg_pool(y, "avgpool", 1)?;
    let y = n.flatten(y, "flatten")?;
    let c = cfg.widths[3] * cfg.block.expansion();
    let logits = n.linear(y, "fc", c, cfg.classes, Gain::Linear(1.0), Some("logits"))?;
    n.output(logits);
    Ok(())
}
