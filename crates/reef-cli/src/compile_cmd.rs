//! `reef compile`: the GPU architecture argument of the kernel precompile
//! and its report.

use anyhow::{bail, Result};
use reef_cuda::SetCubin;
use std::time::Duration;

/// What `reef compile` prints: one line per kernel set (size, compiled or
/// already cached), then the total.
pub fn report(major: i32, minor: i32, sets: &[SetCubin], dir: &str, took: Duration) -> String {
    let mut out = String::new();
    for s in sets {
        out.push_str(&format!(
            "kernel set {:<10} {:>10} bytes{}\n",
            s.set.name(),
            s.cubin.len(),
            if s.cached { " (already cached)" } else { "" }
        ));
    }
    let total: usize = sets.iter().map(|s| s.cubin.len()).sum();
    out.push_str(&format!(
        "kernel modules for compute capability {major}.{minor}: {} sets, {total} bytes, in {dir} ({:.1} s)",
        sets.len(),
        took.as_secs_f64()
    ));
    out
}

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
    use super::{parse_arch, report};
    use reef_cuda::{KernelSet, SetCubin};

    #[test]
    fn the_report_lists_each_set_and_the_total() {
        let sets = [
            SetCubin {
                set: KernelSet::Base,
                cubin: vec![0; 10],
                key: "a".into(),
                cached: true,
            },
            SetCubin {
                set: KernelSet::Tf32,
                cubin: vec![0; 32],
                key: "b".into(),
                cached: false,
            },
        ];
        let r = report(9, 0, &sets, "/c", std::time::Duration::from_millis(1500));
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines.len(), 3, "{r}");
        assert!(
            lines[0].starts_with("kernel set base")
                && lines[0].contains("10 bytes (already cached)")
        );
        assert!(lines[1].starts_with("kernel set tf32") && !lines[1].contains("cached"));
        assert!(lines[2].contains("2 sets, 42 bytes, in /c (1.5 s)"), "{r}");
    }

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
