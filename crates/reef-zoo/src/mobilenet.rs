//! MobileNet V2 (torchvision `mobilenetv2.py`, width 1.0): `features.0` is
//! conv-BN-ReLU6 (`features.0.0`, `features.0.1`), then inverted residual
//! blocks `features.N.conv.*` (expand 1×1 conv-BN-ReLU6 when the expansion
//! ratio is not 1, depthwise 3×3 conv-BN-ReLU6, linear 1×1 projection + BN,
//! identity shortcut when the stride is 1 and channels match), a final
//! 1×1 conv-BN-ReLU6, global average pool and `classifier.1` (after
//! Dropout). ReLU6 is `Clip(x, 0, 6)`.

use crate::nn::{Conv, Gain, Net};
use reef_model::{DType, Result, ValueId};

const EPS: f32 = 1e-5;

/// A MobileNet V2 configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileNetConfig {
    /// Stem output channels (torchvision: 32).
    pub stem: usize,
    /// Inverted residual settings `[t, c, n, s]` (expansion, channels,
    /// repeats, first stride), exact channel counts.
    pub settings: Vec<[usize; 4]>,
    /// Channels of the last 1×1 conv (torchvision: 1280).
    pub last: usize,
    /// Classes.
    pub classes: usize,
    /// Input height and width.
    pub image: usize,
}

impl MobileNetConfig {
    /// torchvision's MobileNet V2 at width 1.0.
    pub fn mobilenet_v2() -> Self {
        let settings = vec![
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ];
        MobileNetConfig {
            stem: 32,
            settings,
            last: 1280,
            classes: 1000,
            image: 224,
        }
    }
}

/// Conv-BN-ReLU6 (`Conv2dNormActivation`) named `{p}.0` / `{p}.1`.
fn cna(n: &mut Net, x: ValueId, p: &str, c: Conv) -> Result<ValueId> {
    let y = n.conv(x, &format!("{p}.0"), c, Gain::Relu)?;
    let y = n.bn(y, &format!("{p}.1"), EPS)?;
    n.relu6(y, &format!("{p}.relu6"))
}

fn inverted_residual(
    n: &mut Net,
    x: ValueId,
    p: &str,
    inp: usize,
    oup: usize,
    stride: usize,
    t: usize,
) -> Result<ValueId> {
    let hidden = inp * t;
    let mut y = x;
    let mut i = 0;
    if t != 1 {
        y = cna(
            n,
            y,
            &format!("{p}.conv.0"),
            Conv::square(inp, hidden, 1, 1, 0),
        )?;
        i = 1;
    }
    let dw = Conv {
        groups: hidden,
        ..Conv::square(hidden, hidden, 3, stride, 1)
    };
    y = cna(n, y, &format!("{p}.conv.{i}"), dw)?;
    y = n.conv(
        y,
        &format!("{p}.conv.{}", i + 1),
        Conv::square(hidden, oup, 1, 1, 0),
        Gain::Linear(1.0),
    )?;
    y = n.bn(y, &format!("{p}.conv.{}", i + 2), EPS)?;
    if stride == 1 && inp == oup {
        y = n.add(x, y, &format!("{p}.add"))?;
    }
    Ok(y)
}

/// Builds the MobileNet V2 graph: input `input` `[batch, 3, image, image]`,
/// output `logits` `[batch, classes]`.
pub fn build(n: &mut Net, cfg: &MobileNetConfig, batch: usize) -> Result<()> {
    let x = n.input("input", DType::F32, vec![batch, 3, cfg.image, cfg.image])?;
    let mut y = cna(n, x, "features.0", Conv::square(3, cfg.stem, 3, 2, 1))?;
    let mut c = cfg.stem;
    let mut idx = 1;
    for &[t, out, reps, s] in &cfg.settings {
        for r in 0..reps {
            let stride = if r == 0 { s } else { 1 };
            y = inverted_residual(n, y, &format!("features.{idx}"), c, out, stride, t)?;
            c = out;
            idx += 1;
        }
    }
    let y = cna(
        n,
        y,
        &format!("features.{idx}"),
        Conv::square(c, cfg.last, 1, 1, 0),
    )?;
    let y = n.adaptive_avg_pool(y, "avgpool", 1)?;
    let y = n.flatten(y, "flatten")?;
    let logits = n.linear(
        y,
        "classifier.1",
        cfg.last,
        cfg.classes,
        Gain::Linear(1.0),
        Some("logits"),
    )?;
    n.output(logits);
    Ok(())
}
