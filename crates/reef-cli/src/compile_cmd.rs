//! `reef compile`: the GPU architecture argument of the kernel precompile.

use anyhow::{bail, Result};

/// Compute capability `(major, minor)` from `9.0`, `90` or `sm_90` (an `a`
/// suffix, as in `sm_90a`, is accepted: reef picks the architecture-specific
/// target itself where it has one).
pub fn parse_arch(s: &str) -> Result<(i32, i32)> {
    let t = s.trim();
    let t = t.strip_prefix("sm_").unwrap_or(t);
    let t = t.strip_suffix('a').unwrap_or(t);
    let parsed = match t.split_once('.') {
        Some((a, b)) => a.parse::<i32>().ok().zip(b.parse::<i32>().ok()),
        None if t.len() >= 2 && t.chars().all(|c| c.is_ascii_digit()) => {
            let (a, b) = t.split_at(t.len() - 1);
            a.parse::<i32>().ok().zip(b.parse::<i32>().ok())
        }
        None => None,
    };
    match parsed {
        Some((major, minor)) if (5..=12).contains(&major) && (0..=9).contains(&minor) => {
            Ok((major, minor))
        }
        _ => bail!(
            "--arch {s:?} is not a compute capability of a supported GPU: give it as 9.0, 90 or sm_90"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_arch;

    #[test]
    fn arch_forms_parse() {
        for s in ["9.0", "90", "sm_90", "sm_90a", " 9.0 "] {
            assert_eq!(parse_arch(s).unwrap(), (9, 0), "{s}");
        }
        assert_eq!(parse_arch("8.6").unwrap(), (8, 6));
        assert_eq!(parse_arch("120").unwrap(), (12, 0));
    }

    #[test]
    fn bad_arch_is_named() {
        for s in ["", "9", "sm_", "nine", "9.x", "4.0", "99.0", "9.10"] {
            let e = parse_arch(s).unwrap_err().to_string();
            assert!(e.contains("--arch") && e.contains("9.0"), "{s}: {e}");
        }
    }
}
