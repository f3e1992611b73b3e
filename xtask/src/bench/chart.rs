//! One SVG bar chart per benchmark, written by hand (a few dozen lines of
//! SVG text instead of a plotting crate in the xtask every CI run builds).
//! Figures of different units share a chart, so each bar is drawn as a
//! fraction of its target: the dashed line at 1 is every bar's target,
//! labels carry the real values. A figure without a target is drawn against
//! the target of a figure of the same unit in the chart (e.g. every image
//! against the 20 MiB bar of ambient-mcp), or left out when there is none.

use std::fmt::Write as _;

use super::figure::{Figure, number};

const BAR: f64 = 56.0;
const SLOT: f64 = 150.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 50.0;
const PLOT: f64 = 240.0;

/// Labels go into SVG text: escape what XML needs escaped.
pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The target a figure is drawn against, if any.
fn scale(f: &Figure, all: &[Figure]) -> Option<f64> {
    f.target
        .or_else(|| {
            all.iter()
                .find(|o| o.unit == f.unit && o.target.is_some())
                .and_then(|o| o.target)
        })
        .filter(|t| *t > 0.0)
}

pub fn svg(bench: &str, figures: &[Figure]) -> String {
    let bars: Vec<(&Figure, f64)> = figures
        .iter()
        .filter_map(|f| scale(f, figures).map(|t| (f, f.value / t)))
        .collect();
    let top = bars
        .iter()
        .map(|(_, r)| *r)
        .fold(1.5_f64, f64::max)
        .min(4.0)
        * 1.1;
    let width = LEFT + SLOT * bars.len().max(1) as f64 + 20.0;
    let height = TOP + PLOT + 90.0;
    let y = |ratio: f64| TOP + PLOT - PLOT * ratio.min(top) / top;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}: value / target</text>"#,
        escape(bench)
    );
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        TOP + PLOT,
        width - 10.0,
        TOP + PLOT
    );
    for (i, (f, ratio)) in bars.iter().enumerate() {
        let x = LEFT + SLOT * i as f64 + (SLOT - BAR) / 2.0;
        let color = match f.pass() {
            Some(true) => "#2e8b57",
            Some(false) => "#c0392b",
            None => "#95a5a6",
        };
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="{BAR}" height="{:.1}" fill="{color}"/>"#,
            y(*ratio),
            TOP + PLOT - y(*ratio)
        );
        let cx = x + BAR / 2.0;
        let clipped = if *ratio > top { " ↑" } else { "" };
        let _ = writeln!(
            s,
            r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{} {}{clipped}</text>"#,
            y(*ratio) - 5.0,
            number(f.value),
            escape(&f.unit)
        );
        for (line, text) in [
            escape(&f.name),
            format!("target {}", escape(&f.target_text())),
        ]
        .iter()
        .enumerate()
        {
            let _ = writeln!(
                s,
                r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="11">{text}</text>"#,
                TOP + PLOT + 18.0 + 15.0 * line as f64
            );
        }
    }
    let line = y(1.0);
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{line:.1}" x2="{}" y2="{line:.1}" stroke="black" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">target</text>"#,
        width - 10.0,
        LEFT - 6.0,
        line + 4.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figure::Better;

    fn fig(name: &str, value: f64, unit: &str, target: Option<f64>) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit: unit.into(),
            target,
            better: Better::Lower,
        }
    }

    #[test]
    fn a_bar_per_figure_with_a_scale_and_the_target_line() {
        let figures = [
            fig("ambient-mcp", 9.0, "MiB", Some(20.0)),
            fig("devserver <x>", 12.0, "MiB", None),
            fig("exchanges/s", 300.0, "/s", None),
            fig("p99", 40.0, "ms", Some(25.0)),
        ];
        let svg = svg("demo", &figures);
        // The unscaled /s figure is left out; the others are bars.
        assert_eq!(svg.matches("<rect x=").count(), 3, "{svg}");
        assert!(!svg.contains("exchanges/s"));
        assert!(svg.contains("devserver &lt;x&gt;"));
        assert!(svg.contains("#2e8b57") && svg.contains("#c0392b"));
        assert!(svg.contains("stroke-dasharray") && svg.ends_with("</svg>\n"));
        // The 12 MiB image is drawn against the 20 MiB bar: 0.6 of the target.
        assert_eq!(scale(&figures[1], &figures), Some(20.0));
    }
}
