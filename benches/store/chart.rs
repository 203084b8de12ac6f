//! The store benchmark's chart: one bar a system, its median, a line over its range; throughput on
//! the left, CPU seconds per GiB on the right. An SVG, so the README shows it as it is.

use plotters::prelude::*;
use std::path::Path;

/// A system's figures, one a round.
pub struct Bar {
    pub name: &'static str,
    pub rates: Vec<f64>,
    pub cpu: Vec<f64>,
}

pub fn draw(path: &Path, blob_mib: usize, bars: &[Bar]) {
    let root = SVGBackend::new(path, (1100, 60 + 52 * bars.len() as u32)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let (left, right) = root.split_horizontally(700);
    let names: Vec<&str> = bars.iter().map(|b| b.name).collect();
    panel(
        &left,
        &format!("GB/s, a {blob_mib} MiB blob (higher is better)"),
        &names,
        &bars.iter().map(|b| b.rates.clone()).collect::<Vec<_>>(),
        300,
        &BLUE,
    );
    panel(
        &right,
        "CPU s/GiB of the server (lower is better)",
        &[],
        &bars.iter().map(|b| b.cpu.clone()).collect::<Vec<_>>(),
        10,
        &RED,
    );
    root.present().unwrap();
}

/// Horizontal bars, one for each set of `values`, labelled with `names` (none when empty).
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    names: &[&str],
    values: &[Vec<f64>],
    label_width: u32,
    color: &RGBColor,
) {
    let highest = values.iter().flatten().cloned().fold(0.0, f64::max) * 1.1;
    let rows = values.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(label_width)
        .build_cartesian_2d(0f64..highest.max(0.01), (0..rows).into_segmented())
        .unwrap();
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < names.len() => names[*i].to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_label_formatter(&label)
        .y_labels(rows)
        .label_style(("sans-serif", 13))
        .draw()
        .unwrap();
    let median = |v: &Vec<f64>| {
        let mut sorted = v.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        sorted[sorted.len() / 2]
    };
    chart
        .draw_series(values.iter().enumerate().map(|(i, v)| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (median(v), SegmentValue::Exact(i + 1)),
                ],
                color.mix(0.6).filled(),
            );
            bar.set_margin(8, 8, 0, 0);
            bar
        }))
        .unwrap();
    // The range of the rounds: a black line from the lowest to the highest.
    chart
        .draw_series(values.iter().enumerate().map(|(i, v)| {
            let low = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let high = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            PathElement::new(
                vec![
                    (low, SegmentValue::CenterOf(i)),
                    (high, SegmentValue::CenterOf(i)),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .unwrap();
    chart
        .draw_series(values.iter().enumerate().map(|(i, v)| {
            Text::new(
                format!("{:.2}", median(v)),
                (median(v), SegmentValue::Exact(i)),
                ("sans-serif", 12),
            )
        }))
        .unwrap();
}
