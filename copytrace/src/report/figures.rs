//! Figures, drawn with plotters into SVG and PNG from the same code.
//!
//! PNG text needs a font: DejaVu Sans from the system (Debian: fonts-dejavu-core), or the file
//! named by `COPYTRACE_FONT`. SVG text is left to the viewer's fonts.
use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use plotters::{
    coord::{Shift, ranged1d::ValueFormatter},
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

/// One point: x, mean y, and the 95 % interval (low, high) when known.
#[derive(Clone, Debug)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
    pub band: Option<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: usize,
    pub points: Vec<Pt>,
    /// Dashed-looking (hollow markers) series, e.g. p99 next to p50.
    pub hollow: bool,
}

#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    /// Format x tick values (they are in the data's units).
    pub x_fmt: fn(f64) -> String,
    pub series: Vec<Series>,
}

/// Stacked bars: one bar per group, one segment per component.
#[derive(Clone, Debug)]
pub struct StackedBars {
    pub title: String,
    pub y_label: String,
    pub components: Vec<String>,
    /// (group label, value per component)
    pub groups: Vec<(String, Vec<f64>)>,
    /// Titles written above runs of consecutive groups: (title, number of groups). Empty for
    /// none; the comparison page names each run's bars this way.
    pub sections: Vec<(String, usize)>,
}

pub enum Figure {
    Lines(LineChart),
    /// Small multiples, `cols` per row.
    Panels {
        charts: Vec<LineChart>,
        cols: usize,
    },
    Bars(StackedBars),
}

pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
];

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

/// Register a font for plotters' ab_glyph text rendering, once.
fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("COPYTRACE_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        let path = candidates.iter().find(|p| p.exists()).ok_or_else(|| {
            format!(
                "no TrueType font for PNG figures (looked for {}); install fonts-dejavu-core \
                 or set COPYTRACE_FONT",
                FONT_PATHS[0]
            )
        })?;
        let bytes: &'static [u8] = Box::leak(
            std::fs::read(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .into_boxed_slice(),
        );
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a usable font", path.display()))
    })
    .clone()
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn bounds(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let v: Vec<f64> = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.05).max(1e-9);
        // Non-negative data starts at zero (no negative throughput on the axis).
        (if lo >= 0.0 { 0.0 } else { lo - pad }, hi + pad)
    }
}

fn draw_lines_in<DB: DrawingBackend, X, Y>(
    area: &DrawingArea<DB, Shift>,
    c: &LineChart,
    xr: X,
    yr: Y,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&c.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)
        .map_err(err)?;
    let xf = c.x_fmt;
    chart
        .configure_mesh()
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        // Few x labels: a log axis spanning one or two decades otherwise labels every
        // 100k step, and the labels run into each other.
        .x_labels(6)
        .x_label_formatter(&|v| xf(*v))
        .y_label_formatter(&|v| short_number(*v))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    for s in &c.series {
        let color = PALETTE[s.color % PALETTE.len()];
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.y.is_finite() && (!c.log_y || p.y > 0.0))
            .map(|p| (p.x, p.y))
            .collect();
        let line_style = if s.hollow {
            color.stroke_width(1)
        } else {
            color.stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), line_style))
            .map_err(err)?
            .label(&s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        let hollow = s.hollow;
        chart
            .draw_series(pts.iter().map(|&(x, y)| {
                if hollow {
                    Circle::new((x, y), 4, color.stroke_width(1))
                } else {
                    Circle::new((x, y), 3, color.filled())
                }
            }))
            .map_err(err)?;
        chart
            .draw_series(s.points.iter().filter_map(|p| {
                let (lo, hi) = p.band?;
                let lo = if c.log_y { lo.max(p.y / 1e3) } else { lo };
                (hi > lo)
                    .then(|| ErrorBar::new_vertical(p.x, lo, p.y, hi, color.stroke_width(1), 8))
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    c: &LineChart,
) -> Result<(), String> {
    let xs = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.x));
    let (x0, x1) = bounds(xs, true);
    let ys = c.series.iter().flat_map(|s| {
        s.points
            .iter()
            .flat_map(|p| [Some(p.y), p.band.map(|b| b.1)].into_iter().flatten())
    });
    let (y0, y1) = bounds(ys, c.log_y);
    if c.log_y {
        draw_lines_in(area, c, (x0..x1).log_scale(), (y0..y1).log_scale())
    } else {
        draw_lines_in(area, c, (x0..x1).log_scale(), y0..y1)
    }
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    b: &StackedBars,
) -> Result<(), String> {
    let n = b.groups.len().max(1);
    let top = b
        .groups
        .iter()
        .map(|g| g.1.iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1e-9)
        * if b.sections.is_empty() { 1.3 } else { 1.5 };
    let labels: Vec<String> = b.groups.iter().map(|g| g.0.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&b.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        // n bars are the segments of 0..n-1 (segmented ranges include their end).
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc(&b.y_label)
        .y_label_formatter(&|v| short_number(*v))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    for (ci, comp) in b.components.iter().enumerate() {
        let color = PALETTE[ci % PALETTE.len()];
        let rects: Vec<Rectangle<(SegmentValue<usize>, f64)>> = b
            .groups
            .iter()
            .enumerate()
            .map(|(gi, (_, vals))| {
                let base: f64 = vals[..ci].iter().sum();
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(gi), base),
                        (SegmentValue::Exact(gi + 1), base + vals[ci]),
                    ],
                    color.filled(),
                );
                r.set_margin(0, 0, 12, 12);
                r
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(comp)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    let mut first = 0;
    for (title, len) in &b.sections {
        let (lo, hi) = (first, first + len);
        // A bracket over the section's bars, its title centred above it.
        let y = top / 1.5 * 1.08;
        let mut lines = vec![PathElement::new(
            vec![(SegmentValue::Exact(lo), y), (SegmentValue::Exact(hi), y)],
            BLACK.mix(0.6).stroke_width(1),
        )];
        if lo > 0 {
            // A separator between this section and the one before.
            lines.push(PathElement::new(
                vec![
                    (SegmentValue::Exact(lo), 0.0),
                    (SegmentValue::Exact(lo), top),
                ],
                BLACK.mix(0.6).stroke_width(2),
            ));
        }
        chart.draw_series(lines).map_err(err)?;
        let mid = (lo + hi) / 2;
        let at = if (hi - lo) % 2 == 0 {
            SegmentValue::Exact(mid)
        } else {
            SegmentValue::CenterOf(mid)
        };
        let style = TextStyle::from(("sans-serif", 14).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(std::iter::once(Text::new(
                title.clone(),
                (at, y * 1.01),
                style,
            )))
            .map_err(err)?;
        first = hi;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, f: &Figure) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    match f {
        Figure::Lines(c) => draw_lines(&root, c)?,
        Figure::Bars(b) => draw_bars(&root, b)?,
        Figure::Panels { charts, cols } => {
            let rows = charts.len().div_ceil(*cols).max(1);
            let areas = root.split_evenly((rows, *cols));
            for (a, c) in areas.iter().zip(charts) {
                draw_lines(a, c)?;
            }
        }
    }
    root.present().map_err(err)
}

/// Pixel size of a figure.
pub fn size_of(f: &Figure) -> (u32, u32) {
    match f {
        Figure::Panels { charts, cols } => {
            let rows = charts.len().div_ceil(*cols).max(1) as u32;
            (420 * *cols as u32, 320 * rows)
        }
        // Room for a "zero-copy 256 KiB" label under every bar.
        Figure::Bars(b) => ((160 + 120 * b.groups.len() as u32).max(640), 480),
        Figure::Lines(_) => (800, 480),
    }
}

/// Write `<stem>.svg` and `<stem>.png`; returns the SVG text (for inlining in HTML).
pub fn render(stem: &Path, f: &Figure) -> Result<String, String> {
    ensure_font()?;
    let (w, h) = size_of(f);
    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area(),
        f,
    )?;
    let svg_path = stem.with_extension("svg");
    std::fs::write(&svg_path, &svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    let png_path = stem.with_extension("png");
    draw(BitMapBackend::new(&png_path, (w, h)).into_drawing_area(), f)?;
    Ok(svg)
}

/// 1234567 → "1.235M", for axis labels (trailing zeros dropped).
pub fn short_number(v: f64) -> String {
    let s = short_number_raw(v);
    match s.find(|c: char| c.is_ascii_alphabetic()) {
        _ if !s.contains('.') || s.contains('e') => s,
        Some(i) => format!("{}{}", trim_zeros(&s[..i]), &s[i..]),
        None => trim_zeros(&s).to_string(),
    }
}

fn trim_zeros(s: &str) -> &str {
    s.trim_end_matches('0').trim_end_matches('.')
}

fn short_number_raw(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.3}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.3}k", v / 1e3)
    } else if a >= 1.0 || a == 0.0 {
        format!("{v:.3}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(1_500_000.0), "1.5M");
        assert_eq!(short_number(2000.0), "2k");
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(12.5), "12.5");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(0.001), "1.0e-3");
    }
}
