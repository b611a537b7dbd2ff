//! MobileNet V3 (torchvision `mobilenetv3.py`, width 1.0, no dilation):
//! `features.0` is conv-BN-Hardswish, then inverted residual blocks
//! `features.N.block.*`: an expanding 1×1 conv-BN-activation when the
//! expanded width differs from the input's, a depthwise k×k conv-BN-activation,
//! squeeze-and-excitation where the block asks for it (global average
//! pool, `fc1` 1×1 conv + ReLU, `fc2` 1×1 conv + Hardsigmoid, times the
//! block's activations), a linear 1×1 projection + BN, and an identity
//! shortcut when the stride is 1 and the widths match. Then a 1×1
//! conv-BN-Hardswish to six times the last width, global average pool,
//! `classifier.0` + Hardswish and `classifier.3` (Dropout between them is the
//! identity in eval). Batch norms use eps 0.001. The activations are ReLU or
//! Hardswish per block; Hardsigmoid is `HardSigmoid(1/6, 1/2)`, torch's
//! `relu6(x + 3) / 6`.

use crate::nn::{Conv, Gain, Net};
use reef_model::{Act, DType, Op, Result, ValueId};

const EPS: f32 = 1e-3;

/// One inverted residual block (torchvision's `InvertedResidualConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bneck {
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Expanded width.
    pub expanded: usize,
    /// Output width.
    pub out: usize,
    /// Squeeze-and-excitation.
    pub se: bool,
    /// Hardswish (else ReLU).
    pub hs: bool,
    /// Depthwise stride.
    pub stride: usize,
}

const fn b(kernel: usize, expanded: usize, out: usize, se: bool, hs: bool, stride: usize) -> Bneck {
    Bneck {
        kernel,
        expanded,
        out,
        se,
        hs,
        stride,
    }
}

/// A MobileNet V3 configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileNetV3Config {
    /// Stem output width, the first block's input (torchvision large: 16).
    pub stem: usize,
    /// The blocks in order.
    pub blocks: Vec<Bneck>,
    /// Width of the classifier's hidden layer (torchvision large: 1280).
    pub hidden: usize,
    /// Classes.
    pub classes: usize,
    /// Input height and width.
    pub image: usize,
}

impl MobileNetV3Config {
    /// torchvision's `mobilenet_v3_large`.
    pub fn large() -> Self {
        let (re, hs) = (false, true);
        MobileNetV3Config {
            stem: 16,
            blocks: vec![
                b(3, 16, 16, false, re, 1),
                b(3, 64, 24, false, re, 2),
                b(3, 72, 24, false, re, 1),
                b(5, 72, 40, true, re, 2),
                b(5, 120, 40, true, re, 1),
                b(5, 120, 40, true, re, 1),
                b(3, 240, 80, false, hs, 2),
                b(3, 200, 80, false, hs, 1),
                b(3, 184, 80, false, hs, 1),
                b(3, 184, 80, false, hs, 1),
                b(3, 480, 112, true, hs, 1),
                b(3, 672, 112, true, hs, 1),
                b(5, 672, 160, true, hs, 2),
                b(5, 960, 160, true, hs, 1),
                b(5, 960, 160, true, hs, 1),
            ],
            hidden: 1280,
            classes: 1000,
            image: 224,
        }
    }

    /// A small configuration with every kind of block (with and without
    /// expansion, SE, either activation, shortcuts), 32×32, 10 classes.
    pub fn tiny() -> Self {
        MobileNetV3Config {
            stem: 16,
            blocks: vec![
                b(3, 16, 16, true, false, 2),
                b(3, 64, 24, false, false, 2),
                b(3, 72, 24, false, false, 1),
                b(5, 96, 40, true, true, 2),
                b(5, 120, 40, true, true, 1),
            ],
            hidden: 128,
            classes: 10,
            image: 32,
        }
    }
}

/// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, at
/// least 8 and never more than 10% below `v`.
fn make_divisible(v: usize) -> usize {
    let r = ((v + 4) / 8 * 8).max(8);
    if (r as f64) < 0.9 * v as f64 {
        r + 8
    } else {
        r
    }
}

fn hardswish(n: &mut Net, x: ValueId, name: &str) -> Result<ValueId> {
    n.b.node(name, Op::Act(Act::HardSwish), &[x])
}

/// `Conv2dNormActivation` named `{p}.0` / `{p}.1`, then ReLU or Hardswish
/// (`act`: None for a linear one).
fn cna(n: &mut Net, x: ValueId, p: &str, c: Conv, act: Option<bool>) -> Result<ValueId> {
    let gain = if act.is_some() {
        Gain::Relu
    } else {
        Gain::Linear(1.0)
    };
    let y = n.conv(x, &format!("{p}.0"), c, gain)?;
    let y = n.bn(y, &format!("{p}.1"), EPS)?;
    match act {
        None => Ok(y),
        Some(true) => hardswish(n, y, &format!("{p}.2")),
        Some(false) => n.relu(y, &format!("{p}.2")),
    }
}

/// `SqueezeExcitation` with a Hardsigmoid scale, named `{p}.fc1` / `{p}.fc2`.
fn squeeze_excite(n: &mut Net, x: ValueId, p: &str, c: usize) -> Result<ValueId> {
    let sq = make_divisible(c / 4);
    let fc = |cin, cout| Conv {
        bias: true,
        ..Conv::square(cin, cout, 1, 1, 0)
    };
    let s = n.adaptive_avg_pool(x, &format!("{p}.avgpool"), 1)?;
    let s = n.conv(s, &format!("{p}.fc1"), fc(c, sq), Gain::Relu)?;
    let s = n.relu(s, &format!("{p}.relu"))?;
    let s = n.conv(s, &format!("{p}.fc2"), fc(sq, c), Gain::Linear(1.0))?;
    let s = n.b.node(
        &format!("{p}.hardsigmoid"),
        Op::Act(Act::HardSigmoid(1.0 / 6.0, 0.5)),
        &[s],
    )?;
    n.b.node(&format!("{p}.scale"), Op::Mul, &[s, x])
}

fn block(n: &mut Net, x: ValueId, p: &str, cin: usize, k: &Bneck) -> Result<ValueId> {
    let mut y = x;
    let mut j = 0;
    if k.expanded != cin {
        let c = Conv::square(cin, k.expanded, 1, 1, 0);
        y = cna(n, y, &format!("{p}.block.{j}"), c, Some(k.hs))?;
        j += 1;
    }
    let dw = Conv {
        groups: k.expanded,
        ..Conv::square(
            k.expanded,
            k.expanded,
            k.kernel,
            k.stride,
            (k.kernel - 1) / 2,
        )
    };
    y = cna(n, y, &format!("{p}.block.{j}"), dw, Some(k.hs))?;
    j += 1;
    if k.se {
        y = squeeze_excite(n, y, &format!("{p}.block.{j}"), k.expanded)?;
        j += 1;
    }
    let proj = Conv::square(k.expanded, k.out, 1, 1, 0);
    y = cna(n, y, &format!("{p}.block.{j}"), proj, None)?;
    if k.stride == 1 && cin == k.out {
        y = n.add(y, x, &format!("{p}.add"))?;
    }
    Ok(y)
}

/// Builds the MobileNet V3 graph: input `input` `[batch, 3, image, image]`,
/// output `logits` `[batch, classes]`.
pub fn build(n: &mut Net, cfg: &MobileNetV3Config, batch: usize) -> Result<()> {
    let x = n.input("input", DType::F32, vec![batch, 3, cfg.image, cfg.image])?;
    let stem = Conv::square(3, cfg.stem, 3, 2, 1);
    let mut y = cna(n, x, "features.0", stem, Some(true))?;
    let mut c = cfg.stem;
    for (i, k) in cfg.blocks.iter().enumerate() {
        y = block(n, y, &format!("features.{}", i + 1), c, k)?;
        c = k.out;
    }
    let last = 6 * c;
    let p = format!("features.{}", cfg.blocks.len() + 1);
    let y = cna(n, y, &p, Conv::square(c, last, 1, 1, 0), Some(true))?;
    let y = n.adaptive_avg_pool(y, "avgpool", 1)?;
    let y = n.flatten(y, "flatten")?;
    let y = n.linear(y, "classifier.0", last, cfg.hidden, Gain::Relu, None)?;
    let y = hardswish(n, y, "classifier.1")?;
    let logits = n.linear(
        y,
        "classifier.3",
        cfg.hidden,
        cfg.classes,
        Gain::Linear(1.0),
        Some("logits"),
    )?;
    n.output(logits);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::make_divisible;

    #[test]
    fn squeeze_widths_follow_torchvision() {
        // torchvision's SE widths for expanded 16, 72, 120, 480, 672 and 960.
        for (c, want) in [
            (16, 8),
            (72, 24),
            (120, 32),
            (480, 120),
            (672, 168),
            (960, 240),
        ] {
            assert_eq!(make_divisible(c / 4), want, "{c}");
        }
    }
}
