//! One SVG line chart per [`Plot`], written by hand like the bar charts:
//! labelled axes with units (linear or log), one coloured polyline with
//! point markers per series, a dashed horizontal line per target or limit,
//! and a legend. The x ticks are the measured x values themselves (the
//! chart's sizes are chosen, not sampled).

use std::fmt::Write as _;

use super::chart::escape;
use super::figure::number;
use super::plot::Plot;

const WIDTH: f64 = 680.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
const LEVEL_COLORS: &[&str] = &["#555555", "#8c564b", "#e377c2"];

/// Maps values of one axis onto `[from, to]` pixels.
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Scale {
    fn new(values: &[f64], log: bool, from: f64, to: f64) -> Self {
        let usable: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .collect();
        let max = usable.iter().copied().fold(f64::MIN, f64::max);
        let min = usable.iter().copied().fold(f64::MAX, f64::min);
        let (lo, hi) = if usable.is_empty() {
            (if log { 1.0 } else { 0.0 }, 1.0)
        } else if log {
            let (lo, hi) = (min.log10().floor(), max.log10().ceil());
            (
                10f64.powf(lo),
                10f64.powf(if hi > lo { hi } else { lo + 1.0 }),
            )
        } else {
            let hi = nice_step(max.max(0.0) / 5.0) * 5.0;
            (0.0_f64.min(min), if hi > 0.0 { hi } else { 1.0 })
        };
        Self {
            lo,
            hi,
            log,
            from,
            to,
        }
    }

    fn at(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.from + (self.to - self.from) * f.clamp(0.0, 1.0)
    }

    /// Tick values on a y axis: powers of ten (log) or five nice steps.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else {
            let step = (self.hi - self.lo) / 5.0;
            (0..=5).map(|i| self.lo + step * f64::from(i)).collect()
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// Tick labels: thin spaces group the thousands of large round numbers.
fn tick_label(v: f64) -> String {
    if v >= 10_000.0 && v.fract() == 0.0 {
        let digits = format!("{v:.0}");
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push('\u{2009}');
            }
            out.push(c);
        }
        out
    } else {
        number(v)
    }
}

pub fn svg(plot: &Plot) -> String {
    let xs = plot.xs();
    let ys: Vec<f64> = plot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(plot.levels.iter().map(|l| l.value))
        .collect();
    let plot_right = WIDTH - RIGHT;
    let sx = Scale::new(&xs, plot.x.log, LEFT + 20.0, plot_right - 20.0);
    let sy = Scale::new(&ys, plot.y.log, HEIGHT - BOTTOM, TOP);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(&plot.title)
    );
    // Axes, ticks and grid.
    let base = HEIGHT - BOTTOM;
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{base}" x2="{plot_right}" y2="{base}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="black"/>"#
    );
    for x in &xs {
        let px = sx.at(*x);
        let _ = writeln!(
            s,
            r#"<line x1="{px:.1}" y1="{base}" x2="{px:.1}" y2="{:.1}" stroke="black"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            base + 5.0,
            base + 18.0,
            tick_label(*x)
        );
    }
    for y in sy.ticks() {
        let py = sy.at(y);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{plot_right}" y2="{py:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            py + 4.0,
            tick_label(y)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (LEFT + plot_right) / 2.0,
        HEIGHT - 18.0,
        escape(&plot.x.caption())
    );
    let mid = (TOP + base) / 2.0;
    let _ = writeln!(
        s,
        r#"<text x="18" y="{mid:.1}" text-anchor="middle" transform="rotate(-90 18 {mid:.1})">{}</text>"#,
        escape(&plot.y.caption())
    );
    // Legend entries: (colour, dashed, text).
    let mut legend: Vec<(&str, bool, String)> = Vec::new();
    for (i, level) in plot.levels.iter().enumerate() {
        let color = LEVEL_COLORS[i % LEVEL_COLORS.len()];
        let py = sy.at(level.value);
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{py:.1}" x2="{plot_right}" y2="{py:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/>"#
        );
        legend.push((
            color,
            true,
            format!("{} {}", level.name, number(level.value)),
        ));
    }
    for (i, series) in plot.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = series
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx.at(*x), sy.at(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            points.join(" ")
        );
        for (x, y) in &series.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{}: {}</title></circle>"#,
                sx.at(*x),
                sy.at(*y),
                tick_label(*x),
                number(*y)
            );
        }
        legend.push((color, false, series.name.clone()));
    }
    for (i, (color, dashed, text)) in legend.iter().enumerate() {
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = plot_right + 12.0;
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(text)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plot::{Axis, Level, Series};

    fn plot(log: bool) -> Plot {
        Plot {
            id: "relist-seconds".into(),
            title: "relist <time>".into(),
            x: Axis::new("sessions", "", log),
            y: Axis::new("time to all reconciled", "s", false),
            series: vec![
                Series {
                    name: "control plane".into(),
                    points: vec![(1e3, 0.2), (1e4, 1.0), (1e5, 9.0)],
                },
                Series {
                    name: "other".into(),
                    points: vec![(1e3, 0.3), (1e4, 2.0)],
                },
            ],
            levels: vec![Level {
                name: "target at 100 000".into(),
                value: 10.0,
            }],
        }
    }

    #[test]
    fn a_line_per_series_a_dashed_line_per_level_and_labelled_axes() {
        let svg = svg(&plot(true));
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("relist &lt;time&gt;"));
        assert!(svg.contains("sessions, log scale"));
        assert!(svg.contains("time to all reconciled (s)"));
        assert!(svg.contains("target at 100 000 10"));
        assert!(svg.contains("100\u{2009}000") && svg.contains(">1000<"));
        assert!(svg.contains("stroke-dasharray") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn log_x_spaces_decades_evenly_and_linear_x_does_not() {
        let log = Scale::new(&[1e3, 1e4, 1e5], true, 0.0, 100.0);
        assert!((log.at(1e4) - 50.0).abs() < 1e-9);
        assert!((log.at(1e3)).abs() < 1e-9 && (log.at(1e5) - 100.0).abs() < 1e-9);
        let lin = Scale::new(&[1.0, 5.0, 20.0, 50.0], false, 0.0, 100.0);
        assert_eq!(lin.hi, 50.0);
        assert!((lin.at(5.0) - 10.0).abs() < 1e-9);
        // y grows upwards: pixels run from the bottom to the top.
        let y = Scale::new(&[0.0, 8.0], false, 300.0, 50.0);
        assert_eq!(y.hi, 10.0);
        assert!(y.at(10.0) < y.at(0.0));
    }

    #[test]
    fn y_ticks_are_round_numbers_covering_every_value() {
        let lin = Scale::new(&[3.2, 17.0], false, 0.0, 1.0);
        assert_eq!(lin.ticks(), vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        let log = Scale::new(&[0.3, 42.0], true, 0.0, 1.0);
        assert_eq!(log.ticks(), vec![0.1, 1.0, 10.0, 100.0]);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(20.0), 20.0);
    }
}
