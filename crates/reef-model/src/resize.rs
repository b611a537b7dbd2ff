//! ONNX Resize's coordinate arithmetic: where an output element reads from
//! along one axis. Every backend uses these definitions (the CUDA kernel
//! mirrors them line by line, in f64 like ONNX's reference implementation,
//! so that nearest-neighbour picks agree at exact ties).

use serde::{Deserialize, Serialize};

/// How an output coordinate maps to an input one (ONNX
/// `coordinate_transformation_mode`; `tf_crop_and_resize` is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordMode {
    /// (y + 0.5) / scale - 0.5 (the default).
    HalfPixel,
    /// half_pixel, shifted so that the scaled image stays centred when the
    /// output size was rounded.
    HalfPixelSymmetric,
    /// half_pixel, but 0 when the output has length 1 (PyTorch's
    /// `align_corners=False`).
    PytorchHalfPixel,
    /// y (in - 1) / (out - 1).
    AlignCorners,
    /// y / scale.
    Asymmetric,
}

impl CoordMode {
    /// Every mode with its ONNX name.
    pub const NAMES: [(CoordMode, &'static str); 5] = [
        (CoordMode::HalfPixel, "half_pixel"),
        (CoordMode::HalfPixelSymmetric, "half_pixel_symmetric"),
        (CoordMode::PytorchHalfPixel, "pytorch_half_pixel"),
        (CoordMode::AlignCorners, "align_corners"),
        (CoordMode::Asymmetric, "asymmetric"),
    ];

    /// The ONNX attribute value.
    pub fn onnx_name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("", |(_, n)| n)
    }

    /// The input coordinate of output index `y` along an axis of input
    /// length `len_in`, output length `len_out` and scale `scale`. As in
    /// ONNX's reference, align_corners and pytorch_half_pixel use the
    /// unrounded resized length `scale * len_in`.
    pub fn source(self, y: usize, len_in: usize, len_out: usize, scale: f64) -> f64 {
        let (y, li, s) = (y as f64, len_in as f64, scale);
        let resized = s * li;
        match self {
            CoordMode::HalfPixel => (y + 0.5) / s - 0.5,
            CoordMode::HalfPixelSymmetric => {
                let adjustment = len_out as f64 / resized;
                let center = li / 2.0;
                center * (1.0 - adjustment) + (y + 0.5) / s - 0.5
            }
            CoordMode::PytorchHalfPixel => {
                if resized > 1.0 {
                    (y + 0.5) / s - 0.5
                } else {
                    0.0
                }
            }
            CoordMode::AlignCorners => {
                if resized == 1.0 {
                    0.0
                } else {
                    y * (li - 1.0) / (resized - 1.0)
                }
            }
            CoordMode::Asymmetric => y / s,
        }
    }
}

/// How a nearest-neighbour resize rounds a coordinate (ONNX `nearest_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NearestMode {
    /// Round, halves down (the default).
    RoundPreferFloor,
    /// Round, halves up.
    RoundPreferCeil,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
}

impl NearestMode {
    /// Every mode with its ONNX name.
    pub const NAMES: [(NearestMode, &'static str); 4] = [
        (NearestMode::RoundPreferFloor, "round_prefer_floor"),
        (NearestMode::RoundPreferCeil, "round_prefer_ceil"),
        (NearestMode::Floor, "floor"),
        (NearestMode::Ceil, "ceil"),
    ];

    /// The ONNX attribute value.
    pub fn onnx_name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("", |(_, n)| n)
    }

    /// The input index nearest to coordinate `x`, clamped to `[0, len)`.
    pub fn index(self, x: f64, len: usize) -> usize {
        let half = x == x.floor() + 0.5;
        let r = match self {
            NearestMode::RoundPreferFloor if half => x.floor(),
            NearestMode::RoundPreferCeil if half => x.ceil(),
            NearestMode::RoundPreferFloor | NearestMode::RoundPreferCeil => x.round(),
            NearestMode::Floor => x.floor(),
            NearestMode::Ceil => x.ceil(),
        };
        r.clamp(0.0, len.saturating_sub(1) as f64) as usize
    }
}

/// The two input indices a linear resize blends for coordinate `x` (edge
/// values beyond the ends) and their weights.
pub fn linear_taps(x: f64, len: usize) -> [(usize, f32); 2] {
    let k = x.floor();
    let r = x - k;
    let last = len.saturating_sub(1) as f64;
    let at = |v: f64| v.clamp(0.0, last) as usize;
    [(at(k), (1.0 - r) as f32), (at(k + 1.0), r as f32)]
}

/// Resize's interpolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    /// Nearest neighbour with the given rounding.
    Nearest(NearestMode),
    /// Linear along each resized axis (bilinear for two).
    Linear,
}

/// Resize / Upsample attributes, resolved at import: the scale and output
/// length of every axis (scale 1 and the input length on axes not resized).
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeAttrs {
    /// Interpolation.
    pub mode: ResizeMode,
    /// Coordinate transformation.
    pub coord: CoordMode,
    /// Scale per axis (output over input, as the coordinate map uses it; in
    /// f64 like ONNX's reference, which derives it from sizes in f64).
    pub scales: Vec<f64>,
    /// Output shape.
    pub sizes: Vec<usize>,
    /// The model gave output sizes (else scales); export writes the same.
    pub from_sizes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_upsampling_repeats_each_input() {
        // 2x nearest in the default modes and in PyTorch's export (asymmetric,
        // floor) both read input y / 2.
        for (c, n) in [
            (CoordMode::HalfPixel, NearestMode::RoundPreferFloor),
            (CoordMode::Asymmetric, NearestMode::Floor),
        ] {
            let got: Vec<usize> = (0..8).map(|y| n.index(c.source(y, 4, 8, 2.0), 4)).collect();
            assert_eq!(got, [0, 0, 1, 1, 2, 2, 3, 3], "{c:?} {n:?}");
        }
    }

    #[test]
    fn ties_and_clamping_follow_the_mode() {
        assert_eq!(NearestMode::RoundPreferFloor.index(1.5, 4), 1);
        assert_eq!(NearestMode::RoundPreferCeil.index(1.5, 4), 2);
        assert_eq!(NearestMode::Floor.index(1.9, 4), 1);
        assert_eq!(NearestMode::Ceil.index(1.1, 4), 2);
        assert_eq!(NearestMode::Ceil.index(3.5, 4), 3);
        assert_eq!(NearestMode::Floor.index(-0.7, 4), 0);
    }

    #[test]
    fn linear_taps_blend_neighbours_and_hold_the_edges() {
        assert_eq!(linear_taps(1.25, 4), [(1, 0.75), (2, 0.25)]);
        assert_eq!(linear_taps(-0.25, 4), [(0, 0.25), (0, 0.75)]);
        assert_eq!(linear_taps(3.0, 4), [(3, 1.0), (3, 0.0)]);
        let x = CoordMode::AlignCorners.source(3, 4, 7, 1.75);
        assert!((x - 3.0 * 3.0 / 6.0).abs() < 1e-12, "{x}");
    }
}
