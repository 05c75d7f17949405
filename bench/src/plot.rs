//! The SVG plot of a run: forwarded packets/s (top) and latency p50/p99 (bottom) per second.
//! Only draws; never measures.

use std::path::Path;

use plotters::prelude::*;

use crate::report::PerSecond;

pub fn write_svg(path: &Path, title: &str, series: &[PerSecond]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (top, bottom) = root.split_vertically(290);
    let seconds = series.len().max(2) as u32;

    let max_pps = series.iter().map(|s| s.packets).max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..seconds, 0f64..max_pps)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("forwarded packets/s")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|s| (s.second as u32, s.packets as f64)),
            &BLUE,
        ))?
        .label("packets/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart.configure_series_labels().border_style(BLACK).draw()?;

    let max_ms = series
        .iter()
        .map(|s| s.latency_p99_us)
        .max()
        .unwrap_or(0)
        .max(100) as f64
        / 1000.0
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..seconds, 0f64..max_ms)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("latency ms")
        .draw()?;
    let sampled = || series.iter().filter(|s| s.latency_p50_us > 0);
    chart
        .draw_series(LineSeries::new(
            sampled().map(|s| (s.second as u32, s.latency_p50_us as f64 / 1000.0)),
            &GREEN,
        ))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(
            sampled().map(|s| (s.second as u32, s.latency_p99_us as f64 / 1000.0)),
            &RED,
        ))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_both_charts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.svg");
        let series: Vec<PerSecond> = (0..10)
            .map(|second| PerSecond {
                second,
                packets: 1000 + second as u64 * 10,
                mbps: 9.6,
                latency_p50_us: 300,
                latency_p99_us: 900,
            })
            .collect();
        write_svg(&path, "test run", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for text in ["test run", "forwarded packets/s", "latency ms", "p99"] {
            assert!(svg.contains(text), "missing {text:?}");
        }
    }
}
