//! Seeded parameter initialisation.
//!
//! Every tensor's values depend only on the model seed and the tensor's name,
//! never on construction order, so a parameter keeps its values when the same
//! model is built at another batch size. Large tensors are generated in
//! parallel chunks (ChaCha8, one stream per chunk): the biggest zoo models
//! (VGG-19, BERT-base) hold 110-145 M floats and build at server start.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Elements per independently seeded chunk.
const CHUNK: usize = 1 << 16;

/// How to fill one parameter tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform on `[lo, hi)`.
    Uniform(f32, f32),
    /// Normal with mean 0 and this standard deviation.
    Normal(f32),
}

/// A 64-bit mix of the model seed and a tensor name (FNV-1a, then SplitMix64
/// finalisation), so neighbouring seeds and similar names decorrelate.
fn tensor_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 24 random bits of a u32 as a float in [0, 1).
#[inline]
fn unit(bits: u32) -> f32 {
    (bits >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

fn fill_chunk(out: &mut [f32], mut rng: ChaCha8Rng, init: Init) {
    rng.fill_bytes(bytemuck::cast_slice_mut(out));
    match init {
        Init::Uniform(lo, hi) => {
            let span = hi - lo;
            for x in out.iter_mut() {
                *x = lo + span * unit(x.to_bits());
            }
        }
        Init::Normal(std) => {
            // Box-Muller on pairs; u1 in (0, 1] keeps the logarithm finite.
            for pair in out.chunks_mut(2) {
                let u1 = unit(pair[0].to_bits()) + 1.0 / (1u32 << 24) as f32;
                let u2 = pair.get(1).map_or(0.25, |v| unit(v.to_bits()));
                let r = std * (-2.0 * u1.ln()).sqrt();
                let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
                pair[0] = r * c;
                if let Some(v) = pair.get_mut(1) {
                    *v = r * s;
                }
            }
        }
    }
}

/// `n` values for the tensor called `name` of a model seeded with `seed`.
pub fn generate(seed: u64, name: &str, n: usize, init: Init) -> Vec<f32> {
    let base = tensor_seed(seed, name);
    let mut out = vec![0.0f32; n];
    let work = |(i, chunk): (usize, &mut [f32])| {
        let mut rng = ChaCha8Rng::seed_from_u64(base);
        rng.set_stream(i as u64);
        fill_chunk(chunk, rng, init);
    };
    if n > CHUNK {
        out.par_chunks_mut(CHUNK).enumerate().for_each(work);
    } else if n > 0 {
        work((0, &mut out[..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var)
    }

    #[test]
    fn uniform_has_the_right_range_and_moments() {
        let v = generate(3, "layer.weight", 300_001, Init::Uniform(-0.5, 1.5));
        assert!(v.iter().all(|&x| (-0.5..1.5).contains(&x)));
        let (m, var) = moments(&v);
        assert!((m - 0.5).abs() < 0.01, "mean {m}");
        assert!((var - 4.0 / 12.0).abs() < 0.01, "var {var}");
    }

    #[test]
    fn normal_has_the_right_moments() {
        let v = generate(3, "emb.weight", 200_003, Init::Normal(0.02));
        let (m, var) = moments(&v);
        assert!(m.abs() < 2e-4, "mean {m}");
        assert!((var.sqrt() - 0.02).abs() < 4e-4, "std {}", var.sqrt());
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn values_depend_on_seed_and_name_only() {
        let a = generate(1, "a", 1000, Init::Uniform(0.0, 1.0));
        assert_eq!(a, generate(1, "a", 1000, Init::Uniform(0.0, 1.0)));
        assert_ne!(a, generate(2, "a", 1000, Init::Uniform(0.0, 1.0)));
        assert_ne!(a, generate(1, "b", 1000, Init::Uniform(0.0, 1.0)));
        // Chunks are distinct streams, not repeats of the first one.
        let big = generate(1, "a", 3 * CHUNK, Init::Uniform(0.0, 1.0));
        assert_ne!(big[..CHUNK], big[CHUNK..2 * CHUNK]);
    }
}
