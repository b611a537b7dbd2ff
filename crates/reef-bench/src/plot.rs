//! SVG plots: the RT latency CDF of every mode, and throughput per mode.

use crate::error::{BenchError, Result};
use crate::schema::WorkloadResult;
use plotters::prelude::*;
use reef_sched::Priority;
use std::path::Path;

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_err(path: &Path) -> impl Fn(String) -> BenchError + '_ {
    move |message| BenchError::Plot {
        path: path.to_path_buf(),
        message,
    }
}

fn ensure_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::Io {
            action: "creating plot folder",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// RT latency CDF (x: ms, y: fraction of requests), one line per mode, from
/// the per-request records of the measured RT requests. Modes without records
/// (e.g. loaded from a JSON written without them) are left out.
pub fn rt_latency_cdf(result: &WorkloadResult, path: &Path) -> Result<()> {
    ensure_dir(path)?;
    let err = plot_err(path);
    let curves: Vec<(String, Vec<f64>)> = result
        .modes
        .iter()
        .filter_map(|m| {
            let mut v: Vec<f64> = m
                .records
                .iter()
                .filter(|r| r.ok && !r.warmup && r.priority == Priority::Rt)
                .map(|r| r.latency_ms)
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| (m.mode.clone(), v))
        })
        .collect();
    let x_max = curves
        .iter()
        .filter_map(|(_, v)| v.last().copied())
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("DISB {}: RT latency CDF", result.workload.name),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..1.0)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("RT latency (ms, from scheduled arrival)")
        .y_desc("fraction of requests")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (name, v)) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let n = v.len() as f64;
        // Thin the curve to at most ~2000 points.
        let step = (v.len() / 2000).max(1);
        let points: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .filter(|(k, _)| k % step == 0 || *k + 1 == v.len())
            .map(|(k, &x)| (x, (k + 1) as f64 / n))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Throughput per mode: RT and BE req/s as side-by-side bars.
pub fn throughput_bars(result: &WorkloadResult, path: &Path) -> Result<()> {
    ensure_dir(path)?;
    let err = plot_err(path);
    let n = result.modes.len().max(1);
    let y_max = result
        .modes
        .iter()
        .map(|m| m.rt_throughput_rps.max(m.be_throughput_rps))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let names: Vec<String> = result.modes.iter().map(|m| m.mode.clone()).collect();
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("DISB {}: throughput per mode", result.workload.name),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let k = x.round();
            if (x - k).abs() < 1e-6 && k >= 0.0 {
                names.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("requests per second")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let series = [
        ("RT", PALETTE[0], -0.36, 0.0),
        ("BE", PALETTE[1], 0.0, 0.36),
    ];
    for (si, (label, color, lo, hi)) in series.into_iter().enumerate() {
        let bars = result.modes.iter().enumerate().map(move |(i, m)| {
            let v = if si == 0 {
                m.rt_throughput_rps
            } else {
                m.be_throughput_rps
            };
            Rectangle::new([(i as f64 + lo, 0.0), (i as f64 + hi, v)], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(|e| err(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
