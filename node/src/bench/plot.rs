//! `--plot F.svg`: throughput and p99 latency per second, one above the other, so that an event
//! during the run (a node killed, a compaction, a GC pause) is seen where it happened. Errors per
//! second are drawn on the throughput chart too, in red, when there were any.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::stats::Second;

/// Writes the SVG for `series` to `path`; `title` goes on top.
pub fn write_svg(path: &Path, title: &str, series: &[Second]) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(360);

    let t_max = series.last().map_or(1.0, |s| s.t_s).max(1.0);
    let ops_max = series
        .iter()
        .map(|s| s.ops_per_s.max(s.errors as f64))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..t_max, 0.0..ops_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ops/s")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|s| (s.t_s, s.ops_per_s)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("throughput (ops/s)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    if series.iter().any(|s| s.errors > 0) {
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|s| (s.t_s, s.errors as f64)),
                RED.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label("errors per second")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let p99_max = series
        .iter()
        .map(|s| s.p99_ms)
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..t_max, 0.0..p99_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("p99 latency (ms)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|s| (s.t_s, s.p99_ms)),
            MAGENTA.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("p99 latency (ms)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], MAGENTA.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_the_two_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.svg");
        let series: Vec<Second> = (1..=5)
            .map(|i| Second {
                t_s: i as f64,
                ops_per_s: 1000.0 * i as f64,
                ops: 1000 * i,
                errors: if i == 3 { 7 } else { 0 },
                p50_ms: 0.5,
                p99_ms: i as f64,
                max_ms: 10.0,
            })
            .collect();
        write_svg(&path, "test", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.matches("<polyline").count() >= 3, "{svg}");
    }
}
