//! The HTML report's plots, drawn with `plotters` on its SVG backend: axes with ticks and
//! units, legends in the series' own colours, and the scenario's phases (publish, approve,
//! restore...) as labelled vertical markers on every plot over virtual time. Each plot is an
//! inline `<svg>` inside a `<figure>` with a stable id, so the page stays self-contained.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// The series colours (Tableau 10), distinct from the grey of axes and phase markers.
pub const BLUE: RGBColor = RGBColor(0x4e, 0x79, 0xa7);
pub const GREEN: RGBColor = RGBColor(0x59, 0xa1, 0x4f);
pub const ORANGE: RGBColor = RGBColor(0xf2, 0x8e, 0x2b);
pub const RED: RGBColor = RGBColor(0xe1, 0x57, 0x59);
pub const PURPLE: RGBColor = RGBColor(0xb0, 0x7a, 0xa1);
const MARKER: RGBColor = RGBColor(0x99, 0x99, 0x99);

const SIZE: (u32, u32) = (760, 280);

/// A named, coloured line of (x, y) points.
pub struct Line<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

fn figure(id: &str, title: &str, svg: Result<String, String>) -> String {
    match svg {
        Ok(svg) => format!(
            r#"<figure id="{id}" class="plot" aria-label="{title}">{svg}</figure>"#,
            title = super::esc(title)
        ),
        Err(e) => format!(
            r#"<figure id="{id}" class="plot"><p>plot failed: {}</p></figure>"#,
            super::esc(&e)
        ),
    }
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Drawn = Result<(), Box<dyn std::error::Error>>;

/// One plot's canvas: an SVG chart with a caption and the shared margins, `draw` filling
/// it in, then the legend at `legend` and the figure around it.
fn plot(
    id: &str,
    title: &str,
    (x_max, y_max): (f64, f64),
    legend: SeriesLabelPosition,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Drawn,
) -> String {
    let svg = (|| -> Result<String, Box<dyn std::error::Error>> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
            draw(&mut chart)?;
            chart
                .configure_series_labels()
                .position(legend)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(0xcc, 0xcc, 0xcc))
                .label_font(("sans-serif", 12))
                .draw()?;
            root.present()?;
        }
        Ok(svg)
    })()
    .map_err(|e| e.to_string());
    figure(id, title, svg)
}

/// A legend entry's swatch: a small filled box in the series' colour.
fn swatch(color: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], color.filled())
}

/// Lines over virtual hours, with the phases (virtual ms, name) as markers.
pub fn over_time(
    id: &str,
    title: &str,
    y_desc: &str,
    lines: &[Line<'_>],
    phases: &[(u64, String)],
    hours: f64,
) -> String {
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let x_max = hours.max(1.0 / 60.0);
    plot(
        id,
        title,
        (x_max, y_max),
        SeriesLabelPosition::UpperRight,
        |chart| {
            chart
                .configure_mesh()
                .x_desc("virtual time (hours)")
                .y_desc(y_desc)
                .x_labels(12)
                .y_labels(6)
                .light_line_style(RGBColor(0xee, 0xee, 0xee))
                .draw()?;
            for (i, (at, name)) in phases.iter().enumerate() {
                let x = *at as f64 / 3_600_000.0;
                chart.draw_series(LineSeries::new(
                    [(x, 0.0), (x, y_max)],
                    MARKER.stroke_width(1),
                ))?;
                // Staggered, so that phases close together keep readable labels.
                let y = y_max * (0.98 - 0.07 * (i % 4) as f64);
                chart.draw_series(std::iter::once(Text::new(
                    name.clone(),
                    (x, y),
                    ("sans-serif", 11).into_font().color(&MARKER),
                )))?;
            }
            for line in lines {
                chart
                    .draw_series(LineSeries::new(
                        line.points.iter().copied(),
                        line.color.stroke_width(2),
                    ))?
                    .label(line.name)
                    .legend(swatch(line.color));
            }
            Ok(())
        },
    )
}

/// Grouped bars: for each group (an endpoint) one bar per (label, colour), values in ms.
pub fn grouped_bars(
    id: &str,
    title: &str,
    groups: &[(String, Vec<f64>)],
    bars: &[(&str, RGBColor)],
) -> String {
    let y_max = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.15;
    let n = groups.len().max(1);
    let names: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
    let label = move |x: &f64| -> String {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-9 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    plot(
        id,
        title,
        (n as f64, y_max),
        SeriesLabelPosition::UpperLeft,
        |chart| {
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_label_formatter(&label)
                .x_labels(2 * n + 1)
                .y_desc("ms")
                .y_labels(6)
                .light_line_style(RGBColor(0xee, 0xee, 0xee))
                .draw()?;
            let width = 0.8 / bars.len().max(1) as f64;
            for (b, (name, color)) in bars.iter().enumerate() {
                chart
                    .draw_series(groups.iter().enumerate().filter_map(|(g, (_, values))| {
                        let v = *values.get(b)?;
                        let x0 = g as f64 + 0.1 + b as f64 * width;
                        Some(Rectangle::new(
                            [(x0, 0.0), (x0 + width * 0.9, v)],
                            color.filled(),
                        ))
                    }))?
                    .label(*name)
                    .legend(swatch(*color));
            }
            Ok(())
        },
    )
}
